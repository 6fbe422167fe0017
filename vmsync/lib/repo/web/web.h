/* A web-served repository (docs/web.md): the static tree `vmsync publish`
 * writes, read over https:// (or http:// with a trusted key) with libcurl.
 * The records' encodings (format.c) are shared by the writer (publish.c in
 * the engine, through repo.h) and the reader (handle.c, http.c).  Private to
 * repo/web/ and repo.c. */
#ifndef VMS_WEB_H
#define VMS_WEB_H

#include "base/codec.h"
#include "repo/repo.h"

#define VMS_WEB_FORMAT 1
#define VMS_WEB_INDEX_FILE "vmsync-web"
#define VMS_WEB_INDEX_MAGIC "VMSYNCWI"
#define VMS_WEB_PACK_MAGIC "VMSWPACK"
#define VMS_WEB_IDX_MAGIC "VMSWPIDX"
#define VMS_WEB_MAGIC_LEN 8

/* Bounds a reader holds every tree to. */
#define VMS_WEB_INDEX_MAX (64u << 20)
#define VMS_WEB_PACKS_MAX (1u << 16)
#define VMS_WEB_VERSIONS_MAX (1u << 20)
#define VMS_WEB_RECORD_MAX (64u << 10)
#define VMS_WEB_MANIFEST_MAX (256u << 20)
#define VMS_WEB_PACK_OBJECTS_MAX (1u << 24)
#define VMS_WEB_OBJECTS_MAX (1u << 25) /* all packs together: what a client holds the index of */
#define VMS_WEB_PACK_BYTES_MAX (1ull << 40)
#define VMS_WEB_PACK_NAME_LEN 21 /* "pack-" and 16 hex digits */

/* A pack index: magic, u32 format, u32 count, 256 u32 fanout counts (how
 * many records have a first hash byte <= i), the records sorted by hash,
 * then the SHA-256 of everything before it.  Little-endian throughout. */
#define VMS_WEB_IDX_RECORD 48 /* hash, u64 offset, u32 stored, u32 len | codec << 28 */
#define VMS_WEB_IDX_HEAD (VMS_WEB_MAGIC_LEN + 8 + 256 * 4)
#define VMS_WEB_IDX_SIZE(n) (VMS_WEB_IDX_HEAD + (uint64_t)(n) * VMS_WEB_IDX_RECORD + FSP_SHA256_LEN)
#define VMS_WEB_LEN_MASK 0x0fffffffu

struct vms_web_object {
    uint8_t hash[FSP_SHA256_LEN];
    uint64_t offset; /* of its stored bytes in the pack */
    uint32_t stored, len;
    uint8_t codec;   /* VMS_CODEC_RAW or VMS_CODEC_ZSTD */
};

struct vms_web_pack {
    char name[VMS_WEB_PACK_NAME_LEN + 1];
    uint64_t objects, bytes;            /* its records, and the .pack file's size */
    uint8_t idx_hash[FSP_SHA256_LEN];   /* the SHA-256 of its .idx file */
};

struct vms_web_version {
    struct vms_version v;
    uint64_t manifest_bytes;
};

/* The top-level index, decoded (malloc'd arrays, the caller's). */
struct vms_web_index {
    struct vms_web_pack *packs;
    size_t n_packs;
    struct vms_web_version *versions;
    size_t n_versions;
};
void vms_web_index_free(struct vms_web_index *x);

/* Encoders fill B (its FAILED says whether they could); decoders take hostile
 * bytes and fail with FSP_EK_FORMAT (FSP_EK_CORRUPT for a damaged hash)
 * naming WHERE. */
void vms_web_encode_index(struct vms_wbuf *b, const struct vms_web_index *x);
int vms_web_decode_index(const uint8_t *p, size_t len, struct vms_web_index *x, const char *where,
                         fsp_error *err);
/* OBJS[0..n) must be sorted by hash. */
void vms_web_encode_idx(struct vms_wbuf *b, const struct vms_web_object *objs, size_t n);
/* The records of an index file of PACK (its size and bounds checked against
 * PACK's entry), into *OUT (malloc'd, N of them). */
int vms_web_decode_idx(const uint8_t *p, size_t len, const struct vms_web_pack *pack,
                       struct vms_web_object **out, size_t *n, const char *where, fsp_error *err);
int vms_web_object_cmp(const void *a, const void *b);

int vms_web_open(const char *url, const struct vms_remote_opts *remote,
                 const struct vms_repo_progress *progress, vms_repo **out, fsp_error *err);

#endif

/* ---- http.c: fetching byte ranges with libcurl --------------------------------
 * One transfer asks for LEN bytes of URL from START (a Range request, answered
 * 206), or, with LEN 0, the whole file of at most MAX bytes (answered 200).
 * A dropped or short transfer is asked again for what is missing, after a
 * backoff; a run of failures without progress ends it.  Bodies larger than
 * asked for are refused, naming the URL. */
struct vms_web_range {
    const char *url;      /* the caller's */
    uint64_t start, len, max;
    uint8_t *buf;         /* the body so far (malloc'd; DONE may take it) */
    uint64_t got;
    size_t cap;           /* of BUF, when growing (LEN 0) */
    void *user;           /* the caller's */
    /* the transfer's own */
    void *easy;
    int tries;
    uint64_t tried_from; /* GOT when this try started */
    double not_before;
    long status;
    bool overrun;
    char curl_error[256];
};
typedef struct vms_web_http vms_web_http;
int vms_web_http_new(const struct vms_remote_opts *remote, const struct vms_repo_progress *progress,
                     struct vms_traffic *traffic, vms_web_http **out, fsp_error *err);
void vms_web_http_free(vms_web_http *h);
/* Runs R[0..n), up to a few at once, calling DONE for each as it completes
 * whole (in completion order); DONE's failure, or a transfer's, stops the
 * rest and is returned.  Each range's buffer is freed after its DONE. */
typedef int vms_web_done_fn(void *ctx, struct vms_web_range *r, fsp_error *err);
int vms_web_fetch(vms_web_http *h, struct vms_web_range *r, size_t n, vms_web_done_fn *done,
                  void *ctx, fsp_error *err);
