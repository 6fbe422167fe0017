/* Seeds: local images whose content a checkout reuses.  Private to libvmsync. */
#ifndef VMS_SEEDS_H
#define VMS_SEEDS_H

#include "engine/engine.h"
#include "engine/share.h"

/* What the target needs, so a seed scan hashes only what can match. */
struct vms_seed_needs {
    const uint64_t *sizes; /* sorted sizes of the small streams the target needs */
    size_t n_sizes;
    bool chunked;          /* the target has streams matched chunk by chunk */
};

/* The needs of target T: the sizes of the small streams it needs, sorted
 * and unique, in *SIZES (malloc'd, the caller's; NEEDS points into it). */
int vms_seed_needs_of(const struct vms_loaded *t, struct vms_seed_needs *needs, uint64_t **sizes);

/* Notes MANIFEST (a file) as the cached scan of IMAGE, which holds exactly
 * what it describes (vmsync rebuilt it and checked it): the image is not read
 * when it is first used as a seed. */
int vms_seed_remember(struct vms_ctx *c, const char *image, const char *manifest, fsp_error *err);

/* Loads the seed's manifest from the cache, or scans it (lazily, per NEEDS)
 * and caches it.  *RESCANNED tells whether the image was read. */
int vms_seed_load(struct vms_ctx *c, const char *path, const struct vms_seed_needs *needs,
                  struct vms_loaded **out, bool *rescanned, fsp_error *err);

/* Copies bytes [OFF, OFF+LEN) of M's stream S, as image SRC holds them,
 * through the stream's extents: holes, unwritten extents and bytes past the
 * valid size are zeros. */
int vms_stream_pread(fsp_source *src, const struct vms_loaded *m, const struct vms_lstream *s,
                     uint64_t off, uint64_t len, uint8_t *out, fsp_error *err);

enum vms_loc_kind { VMS_LOC_STREAM, VMS_LOC_IMAGE };

/* Where an object's bytes are in a seed: a stream range, or image bytes. */
struct vms_seed_loc {
    uint32_t seed;
    uint8_t kind;      /* enum vms_loc_kind */
    size_t stream;     /* VMS_LOC_STREAM: index in the seed's streams */
    uint64_t offset;   /* in the stream, or in the image */
    uint64_t len;
};

struct vms_seed {
    const char *path;
    struct vms_loaded *m;
    fsp_source *src; /* opened on first read */
    struct vms_share_source share; /* a raw seed's file, opened with SRC */
};

struct vms_seed_index {
    struct vms_seed *seeds;
    size_t n_seeds, cap_seeds;
    struct vms_seed_loc *locs;
    size_t n_locs, cap_locs;
    struct vms_hashmap by_hash; /* object hash -> index in locs */
};

/* Indexes every object of M (whose ownership passes to the index). */
int vms_seed_index_add(struct vms_seed_index *ix, const char *path, struct vms_loaded *m);
const struct vms_seed_loc *vms_seed_find(const struct vms_seed_index *ix,
                                         const uint8_t hash[FSP_SHA256_LEN]);
/* Reads LOC's bytes into OUT (LOC->len bytes) and checks they hash to HASH:
 * FSP_EK_CORRUPT when the seed no longer holds them. */
int vms_seed_read(struct vms_seed_index *ix, const struct vms_seed_loc *loc,
                  const uint8_t hash[FSP_SHA256_LEN], uint8_t *out, fsp_error *err);
/* Calls PIECE for each run of LOC's bytes [OFF, OFF+LEN), in order, with
 * where the run lies in the seed's file (FILE_OFF), or -1 when the run is not
 * the plain file's own bytes (a hole, zeros past the valid size, a seed read
 * through a format).  Only after a vms_seed_read of LOC. */
typedef int (*vms_seed_piece_cb)(void *ctx, struct vms_seed *seed, uint64_t off, int64_t file_off,
                                 uint64_t len);
int vms_seed_pieces(struct vms_seed_index *ix, const struct vms_seed_loc *loc, uint64_t off,
                    uint64_t len, vms_seed_piece_cb piece, void *ctx);
/* Closes the seed images vms_seed_read opened; a later read opens them again. */
void vms_seed_index_close_images(struct vms_seed_index *ix);
void vms_seed_index_free(struct vms_seed_index *ix);

#endif
