/* Moving objects over a vms_conn: SEGMENT messages, the pipeline that builds
 * them, and the level that adapts to the link.  Both directions use it: the
 * agent sends what a checkout wants, a client sends what a check-in adds.
 *
 * A SEGMENT carries consecutive objects of the list both ends agreed on (the
 * GET's hashes, or the OFFER's hashes the WANT kept), in order:
 *
 *   u32 codec      1 SOLID: the objects' bytes, concatenated, as one zstd frame
 *                  2 STORED: each object as the store keeps it
 *                  3 CHAINED (protocol 3): as SOLID, but the frame was
 *                    compressed with the previous segment's objects,
 *                    concatenated, as its prefix (zstd's raw-content
 *                    dictionary); never the first segment of a transfer
 *   u32 level      the zstd level used (SOLID), for statistics
 *   u32 n          1 .. VMS_SEG_OBJECTS
 *   SOLID, CHAINED: n x u32 len, u32 zlen, zlen bytes
 *   STORED: n x (u32 len, u32 stored_len, u8 codec 0 raw / 1 zstd), then the
 *           n bodies, concatenated
 *
 * The objects of one segment total at most VMS_SEG_RAW_MAX bytes, and each at
 * most VMS_OBJECT_MAX.  The receiver decompresses into exactly the announced
 * size and checks every object against the hash it asked for.
 *
 * Segments are cut at VMS_SEG_TARGET raw bytes, so the same list always gives
 * the same segments: the agent caches SOLID and CHAINED segments by their
 * objects (and a CHAINED one's prefix), at the highest level it compressed
 * them, and serves one to any request whose floor (--compress-level) is that
 * level or less, whatever level the link would pick; a second client of the
 * same version costs it no compression.
 *
 * A narrow link (a level of VMS_CHAIN_LEVEL or more) gets CHAINED segments
 * when the receiver speaks protocol 3: matches reach into the segment before,
 * which 4 MiB frames alone lose.  Each transfer starts a new chain, so a
 * resumed checkout, which asks for what is left, decodes from its first
 * segment.  The receiver keeps one segment's bytes more. */
#ifndef VMS_XFER_H
#define VMS_XFER_H

#include "wire/proto.h"
#include "base/cancel.h"
#include "base/object.h"

#define VMS_SEG_SOLID 1
#define VMS_SEG_STORED 2
#define VMS_SEG_CHAINED 3
#define VMS_CHAIN_LEVEL 12
#define VMS_CHAIN_WINDOW_LOG 26 /* a chained frame's window: prefix and segment */
#define VMS_SEG_OBJECTS 65536
#define VMS_SEG_TARGET (4u << 20)
#define VMS_SEG_RAW_MAX VMS_OBJECT_MAX
#define VMS_LEVEL_MAX 19

/* Where a sender reads objects I of its list (under the pipeline's lock, so
 * one reader at a time).  READ_STORED may be NULL. */
struct vms_xfer_source {
    const uint8_t (*hashes)[FSP_SHA256_LEN];
    const uint32_t *lens; /* raw sizes, known up front: they cut the segments */
    size_t n;
    /* Copies object I's bytes into OUT (LEN bytes). */
    int (*read)(void *ctx, size_t i, uint8_t *out, fsp_error *err);
    /* Hands object I as stored to CB. */
    int (*read_stored)(void *ctx, size_t i, vms_stored_cb cb, void *cb_ctx, fsp_error *err);
    void *ctx;
};

struct vms_xfer_opts {
    int level;            /* the lowest zstd level (the stored frames count as
                           * VMS_STORE_LEVEL); the sender adapts upwards from it
                           * to the link.  0: from the bottom of its ladder */
    uint64_t bwlimit;     /* bytes per second; 0 unlimited */
    const char *cache;    /* directory of cached segments; NULL for none */
    int workers;          /* compressing threads; 0: 2 */
    bool chain;           /* the receiver accepts CHAINED segments */
    /* Called after each segment with the raw bytes sent so far; non-zero cancels. */
    int (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
    const vms_cancel *cancel; /* ends the pacing sleeps and the send; may be NULL */
};

struct vms_xfer_report {
    uint64_t segments, cached, stored_segments, chained;
    uint64_t compressed;     /* segments compressed for this send (not cached, not stored) */
    uint64_t raw_bytes, wire_bytes;
    uint64_t raw_compressed; /* the raw bytes of those */
    double compress_cpu;     /* the CPU seconds they took, reading included */
    uint64_t at_level[VMS_LEVEL_MAX + 1]; /* segments sent at each level */
    double link_rate;        /* the last estimate of the link's wire bytes per second */
    int level_first, level_last, level_min, level_max;
};

/* Sends every object of SRC as SEGMENT messages on C.  Compression runs on
 * worker threads, ahead of the link; C is used from the calling thread only. */
int vms_xfer_send(const struct vms_xfer_source *src, const struct vms_xfer_opts *o,
                  struct vms_conn *c, struct vms_xfer_report *rep, fsp_error *err);

/* Called for each object received, in list order, verified. */
typedef int (*vms_xfer_object_cb)(void *ctx, size_t index, const uint8_t *data, size_t len,
                                  size_t wire_len);

struct vms_xfer_receiver {
    const uint8_t (*hashes)[FSP_SHA256_LEN]; /* the list, in order */
    size_t n, next;                          /* objects received so far */
    vms_xfer_object_cb cb;
    void *ctx;
    const char *peer;
    bool chain;        /* accepts CHAINED segments (it asked in protocol 3) */
    void *zd;          /* ZSTD_DCtx */
    uint8_t *plain;
    size_t plain_cap;
    /* The last segment's objects, concatenated: a CHAINED segment's prefix.
     * SEG collects the segment being received. */
    uint8_t *prev, *seg;
    size_t prev_len, prev_cap, seg_len, seg_cap;
    uint64_t raw_bytes, wire_bytes, segments, chained;
    uint64_t at_level[VMS_LEVEL_MAX + 1]; /* segments received at each level */
};
/* Decodes one SEGMENT payload and delivers its objects. */
int vms_xfer_receive(struct vms_xfer_receiver *r, struct vms_rbuf *body, fsp_error *err);
void vms_xfer_receiver_free(struct vms_xfer_receiver *r);

#endif
