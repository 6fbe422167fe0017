/* A manifest loaded into flat arrays, for the engine's planning: the target of
 * a checkout, a seed's index, the reference of a check-in.  Private to
 * libvmsync. */
#ifndef VMS_LOADED_H
#define VMS_LOADED_H

#include "base/keyset.h"
#include "vmsync.h"

struct vms_lstream {
    uint64_t entry_seq;
    uint64_t size, valid_size;
    uint32_t flags;       /* FSP_STREAM_* */
    uint32_t entry_flags; /* FSP_ENTRY_* of its entry */
    uint8_t sha256[FSP_SHA256_LEN];
    uint32_t name;        /* offset in the name pool; 0 for the unnamed stream */
    size_t first_chunk, n_chunks;
    size_t first_extent, n_extents;
};

struct vms_lentry {
    uint32_t volume;
    uint8_t type;
    uint32_t flags;
    uint64_t ino, generation, size;
    struct fsp_time mtime, ctime;
    size_t first_stream, n_streams;
};

struct vms_lrun {
    uint64_t offset, length;
    uint8_t kind;
    uint32_t volume;
    size_t stream;        /* FILE: index in streams */
    uint64_t stream_offset;
    size_t first_hash, n_hashes; /* RAW */
};

struct vms_loaded {
    uint64_t image_size;
    char format[16], table[8];
    struct fsp_summary summary;
    struct fsp_volume_info *volumes;
    size_t n_volumes;
    struct vms_lentry *entries;
    size_t n_entries;
    struct vms_lstream *streams;
    size_t n_streams;
    struct fsp_chunk *chunks;
    size_t n_chunks;
    struct fsp_extent *extents;
    size_t n_extents;
    struct vms_lrun *runs;
    size_t n_runs;
    uint8_t (*hashes)[FSP_SHA256_LEN];
    size_t n_hashes;
    char *names; /* pool of stream names, starting with one NUL */
    size_t names_len;
};

int vms_loaded_read(const char *path, struct vms_loaded **out, fsp_error *err);
void vms_loaded_free(struct vms_loaded *m);
static inline const char *vms_lstream_name(const struct vms_loaded *m, const struct vms_lstream *s)
{
    return s->name ? m->names + s->name : NULL;
}

#endif
