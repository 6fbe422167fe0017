/* The canonical digest of a rebuilt image, computed from the target's
 * layout with the hashes its writer already checked, and the rest rehashed
 * from the image.  Private to libvmsync. */
#ifndef VMS_OUTDIGEST_H
#define VMS_OUTDIGEST_H

#include "engine/engine.h"

/* What the writer vouches for: every byte the target's FILE runs hold of
 * stream I (STREAM_OK[I]), or RAW piece H (PIECE_OK[H], indexed as the
 * target's hashes), was written by this process from bytes that hash to the
 * manifest's hash.  Everything else is read back from the image. */
struct vms_out_marks {
    const bool *stream_ok;
    const bool *piece_ok;
};

/* Byte counts: those taken on the writer's word, and those read back from
 * the image (ZERO runs included, checked to read as zeros). */
struct vms_out_counts {
    uint64_t recorded, rescanned;
    bool zeros_differ; /* a ZERO run holds something else: not the version */
};

/* A chunked stream's own hash, computed as its chunks are written when they
 * come in stream order (a fetch of the whole stream, a seed holding it all):
 * then the writer vouches for the stream too. */
struct vms_order_hash;
int vms_order_hash_new(const struct vms_loaded *t, struct vms_order_hash **out);
/* Chunk K of T's stream I was written from checked DATA (the chunk's length). */
void vms_order_hash_chunk(struct vms_order_hash *h, size_t i, size_t k, const uint8_t *data);
/* Stream I will not be vouched for: a chunk came out of order or unchecked. */
void vms_order_hash_break(struct vms_order_hash *h, size_t i);
/* Whether every chunk of stream I came in order and they hash to its SHA-256. */
bool vms_order_hash_ok(const struct vms_order_hash *h, size_t i);
void vms_order_hash_free(struct vms_order_hash *h);

/* The digest of the raw image at PATH read through T's layout, into DIGEST. */
int vms_out_digest(struct vms_ctx *c, const struct vms_loaded *t, const char *path,
                   const struct vms_out_marks *marks, uint8_t digest[FSP_SHA256_LEN],
                   struct vms_out_counts *counts, fsp_error *err);

#endif
