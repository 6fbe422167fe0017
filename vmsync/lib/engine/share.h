/* Sharing a seed's blocks with the output: a rebuild on one host need not
 * copy what a seed on the same filesystem already holds.  Private to
 * libvmsync. */
#ifndef VMS_SHARE_H
#define VMS_SHARE_H

#include "engine/engine.h"

/* How a seed's ranges reach the output, decided per seed at its first
 * failure and kept: blocks shared (FICLONERANGE), or written by the caller
 * from what it read.  (copy_file_range in between cost time on ext4, where it
 * copies, for nothing that FICLONERANGE does not already give.) */
enum vms_share_mode { VMS_SHARE_CLONE, VMS_SHARE_WRITE };

struct vms_share_source {
    const char *path; /* the seed, for errors */
    int fd;           /* the seed as a plain file, read-only; -1: not open, or not one */
    uint8_t mode;     /* enum vms_share_mode */
};

/* Adjacent ranges are merged into one pending call, made when a range does
 * not extend it or at vms_share_flush. */
struct vms_share {
    int out_fd;
    const char *out_path;
    uint64_t block;                   /* the output filesystem's block size */
    struct vms_share_source *pending; /* NULL: nothing pending */
    uint64_t src, dst, len;
    uint64_t bytes_placed;            /* every byte placed from a seed's file */
    uint64_t bytes_shared;            /* of those, the blocks FICLONERANGE shared */
};

/* Starts sharing into OUT_FD (PATH names it in errors). */
void vms_share_init(struct vms_share *sh, int out_fd, const char *path);

/* Bytes [SRC, SRC+LEN) of the seed go to [DST, DST+LEN) of the output.
 * Returns 1 when the caller must write them itself (the seed's mode is
 * VMS_SHARE_WRITE, or the range is too small or unaligned to share), else 0 or a
 * negative errno.  The bytes may be placed only at the next flush. */
int vms_share_range(struct vms_share *sh, struct vms_share_source *from, uint64_t src,
                    uint64_t dst, uint64_t len, fsp_error *err);

/* Makes the pending call: before the output is synced or closed. */
int vms_share_flush(struct vms_share *sh, fsp_error *err);

#endif
