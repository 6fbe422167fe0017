/* What vmsync wrote: a checkout or export leaves OUT.vmsync-record beside
 * OUT, naming the version OUT received and the file's identity then (device,
 * inode, size, times), so that a later checkout can tell its own unchanged
 * output from a file someone else made or changed, and a check-in whose lease
 * is gone which version it started from.  Private to libvmsync. */
#ifndef VMS_WRITTEN_H
#define VMS_WRITTEN_H

#include "vmsync.h"

#include <sys/stat.h>

struct vms_written {
    char image[256];
    uint32_t version;
    char format[16];                /* "raw" or "qcow2" */
    uint8_t digest[FSP_SHA256_LEN]; /* the version's canonical digest */
    char holder[128];               /* the lease holder's user as the repository
                                     * records it; "" for an export */
    uint64_t dev, ino, size;
    int64_t mtime_s, mtime_ns, ctime_s, ctime_ns;
};

/* Records that PATH now holds what W names (image, version, format, digest,
 * holder); the identity fields are taken from PATH itself. */
int vms_written_save(const char *path, const struct vms_written *w, fsp_error *err);

/* Reads PATH's record into *W; false when there is none, it does not parse,
 * or it describes another file (ST, PATH's lstat, has another inode). */
bool vms_written_load(const char *path, const struct stat *st, struct vms_written *w);

/* Fills W's identity fields (device, inode, size, times) from ST. */
void vms_written_identity(struct vms_written *w, const struct stat *st);

/* Whether ST (the file the record describes) still has the recorded size and
 * times, so it holds what vmsync wrote, as git's index trusts a file. */
bool vms_written_unchanged(const struct vms_written *w, const struct stat *st);

/* Opens PATH as raw when vmsync wrote it raw and it is still that file (its
 * record names raw, the same device and inode, the same size); otherwise as
 * its bytes show, so a raw disk that starts like a qcow2 header or ends like
 * a vpc footer reads as the disk it is. */
int vms_written_open(const char *path, fsp_source **out, fsp_error *err);

#endif
