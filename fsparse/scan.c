/* The scan engine: splits the image into volumes, runs the filesystem backends,
 * hashes streams, and builds the layout map from the backends' allocation
 * bitmaps and the streams' extents.
 *
 * Memory stays flat in the number of files: entries go to the sink as they are
 * hashed, and the extents that become FILE runs are kept in an external sort
 * (fsp_xsort) until the layout pass.  What grows is the allocation bitmap (one
 * bit per filesystem block) and the hard-link table (inodes with several links). */
#include "internal.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define READ_BUF (4u << 20)
#define CLAIM_SORT_BUDGET (4u << 20)
#define RUN_MAX_PIECES 256
#define HASH_THREADS_MAX 8
#define PENDING_MAX 4096 /* entries waiting for their hashes */

enum { CLAIM_ZERO = 1, CLAIM_ZERO_IF_ZERO = 2 };

/* A piece of the image claimed by a stream extent; sorted by offset. */
struct claim {
    uint64_t offset, length;
    uint64_t stream_offset, stream_size;
    uint64_t entry_seq;
    uint32_t stream, volume;
    uint8_t kind; /* FSP_L_FILE or FSP_L_ZERO */
    bool check_zero; /* a ZERO claim whose blocks must be read to prove it */
    uint8_t sha256[FSP_SHA256_LEN];
};

struct link_streams {
    uint64_t ino;
    uint32_t n;
    struct fsp_stream *streams; /* name, size, flags, sha256 only */
    struct link_streams *next;
};

#define LINK_BUCKETS 4096

struct scan {
    fsp_source *src;
    const struct fsp_sink *sink;
    fsp_error *err;
    uint32_t flags;
    uint64_t image_size;
    uint64_t next_seq;
    fsp_xsort *claims;
    uint8_t *buf;
    fsp_digest *digest;
    struct fsp_summary sum;
    uint64_t progress_done, progress_total;
    uint64_t holes_hashed; /* zeros hashed for bytes not on disk, see hole_budget */
    int fatal; /* set once: the scan must stop */
    fsp_pool *pool; /* NULL: streams are hashed in the scan thread */
    bool workers_read; /* the workers read file data themselves (see feed_from_image) */
    struct pending *pending, *pending_tail; /* emitted, waiting for hashes, in order */
    unsigned n_pending;
};

struct fsp_vol {
    struct scan *scan;
    struct fsp_volume_info info;
    bool announced;     /* volume record sent to the sink */
    bool geometry_set;
    uint64_t block_count;
    uint8_t *allocated; /* bitmap, one bit per block */
    uint8_t *in_use;    /* blocks a parsed structure references */
    uint8_t *metadata;  /* the part of those that are the filesystem's own structures */
    struct link_streams *links[LINK_BUCKETS];
    char fail_msg[512];
};

/* ---- sink plumbing ----------------------------------------------------- */

static int stop_scan(struct scan *s, int rc)
{
    if (!s->fatal)
        s->fatal = rc;
    return s->fatal;
}

static int report_progress(struct scan *s, const char *phase)
{
    if (!s->sink->progress)
        return 0;
    int rc = s->sink->progress(s->sink->ctx, phase, s->progress_done, s->progress_total);
    if (rc)
        return stop_scan(s, fsp_fail(s->err, FSP_EK_CANCELLED, -ECANCELED, "cancelled"));
    return 0;
}

static int sink_result(struct scan *s, int rc)
{
    if (rc)
        return stop_scan(s, fsp_fail(s->err, FSP_EK_CANCELLED, rc < 0 ? rc : -ECANCELED,
                                     "cancelled by the output: %s", s->err ? s->err->msg : ""));
    return 0;
}

static int announce_volume(struct fsp_vol *v)
{
    if (v->announced)
        return 0;
    v->announced = true;
    struct scan *s = v->scan;
    return s->sink->volume ? sink_result(s, s->sink->volume(s->sink->ctx, &v->info)) : 0;
}

static void warn_to_sink(struct scan *s, uint32_t volume, const char *path, const char *msg)
{
    s->sum.warnings++;
    if (s->sink->warning && s->sink->warning(s->sink->ctx, volume, path, msg))
        stop_scan(s, fsp_fail(s->err, FSP_EK_CANCELLED, -ECANCELED, "cancelled"));
}

/* ---- the volume interface for backends -------------------------------- */

uint64_t fsp_vol_length(const struct fsp_vol *v) { return v->info.length; }
uint64_t fsp_vol_start(const struct fsp_vol *v) { return v->info.start; }
uint32_t fsp_vol_index(const struct fsp_vol *v) { return v->info.index; }
const char *fsp_vol_image_path(const struct fsp_vol *v) { return fsp_source_path(v->scan->src); }
bool fsp_vol_wants_data(const struct fsp_vol *v) { return !(v->scan->flags & FSP_SCAN_NO_DATA); }

static bool inside_volume(const struct fsp_vol *v, size_t len, uint64_t off)
{
    return off <= v->info.length && len <= v->info.length - off;
}

int fsp_vol_pread(struct fsp_vol *v, void *buf, size_t len, uint64_t off)
{
    if (!inside_volume(v, len, off))
        return -EIO; /* a filesystem pointing outside its partition: content, not I/O */
    fsp_error e;
    int rc = fsp_source_pread(v->scan->src, buf, len, v->info.start + off, &e);
    if (rc < 0) {
        /* The image itself failed us; no backend can recover from that. */
        stop_scan(v->scan, fsp_fail(v->scan->err, e.kind, rc, "%s", e.msg));
    }
    return rc;
}

void fsp_vol_warn(struct fsp_vol *v, const char *path, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    warn_to_sink(v->scan, v->info.index, path, msg);
}

int fsp_vol_fail(struct fsp_vol *v, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->fail_msg, sizeof v->fail_msg, fmt, ap);
    va_end(ap);
    return code < 0 ? code : -EINVAL;
}

int fsp_vol_set_geometry(struct fsp_vol *v, uint32_t block_size, uint64_t block_count)
{
    if (v->geometry_set)
        return fsp_vol_fail(v, -EINVAL, "geometry set twice");
    if (block_size < 512 || block_size > (2u << 20) || (block_size & (block_size - 1)))
        return fsp_vol_fail(v, -EINVAL, "block size %u is not a power of two in 512..2M",
                            block_size);
    if (!block_count || block_count > v->info.length / block_size)
        return fsp_vol_fail(v, -EINVAL,
                            "%llu blocks of %u bytes do not fit in the partition (%llu bytes)",
                            (unsigned long long)block_count, block_size,
                            (unsigned long long)v->info.length);
    v->allocated = calloc((size_t)(block_count + 7) / 8, 1);
    v->in_use = calloc((size_t)(block_count + 7) / 8, 1);
    v->metadata = calloc((size_t)(block_count + 7) / 8, 1);
    if (!v->allocated || !v->in_use || !v->metadata)
        return fsp_vol_fail(v, -ENOMEM, "no memory for a bitmap of %llu blocks",
                            (unsigned long long)block_count);
    v->geometry_set = true;
    v->block_count = block_count;
    v->info.block_size = block_size;
    v->info.fs_length = block_count * block_size;
    return announce_volume(v);
}

int fsp_vol_mark_allocated(struct fsp_vol *v, uint64_t first, uint64_t count)
{
    if (!v->geometry_set || first > v->block_count || count > v->block_count - first)
        return fsp_vol_fail(v, -EINVAL, "allocated blocks %llu+%llu lie outside the filesystem",
                            (unsigned long long)first, (unsigned long long)count);
    for (uint64_t b = first; b < first + count; b++) {
        if (!(b & 7) && first + count - b >= 8) {
            size_t bytes = (size_t)((first + count - b) / 8);
            memset(v->allocated + b / 8, 0xff, bytes);
            b += (uint64_t)bytes * 8 - 1;
            continue;
        }
        v->allocated[b / 8] |= (uint8_t)(1u << (b & 7));
    }
    v->scan->progress_total += count * v->info.block_size;
    return 0;
}

static void set_bit(uint8_t *map, uint64_t b) { map[b / 8] |= (uint8_t)(1u << (b & 7)); }
static bool test_bit(const uint8_t *map, uint64_t b) { return map[b / 8] >> (b & 7) & 1; }

/* Finds the end of the run of blocks from B with the same state in MAP. */
static uint64_t same_bit_end(const uint8_t *map, uint64_t b, uint64_t limit)
{
    bool state = test_bit(map, b);
    uint8_t skip = state ? 0xff : 0x00;
    while (b < limit) {
        if (!(b & 7) && b + 8 <= limit && map[b / 8] == skip) {
            b += 8;
            continue;
        }
        if (test_bit(map, b) != state)
            break;
        b++;
    }
    return b;
}

/* Clips the byte range to the filesystem: a structure may point anywhere. */
static bool in_use_blocks(const struct fsp_vol *v, uint64_t off, uint64_t len, uint64_t *first,
                          uint64_t *end)
{
    if (!v->geometry_set || !len || off >= v->info.fs_length)
        return false;
    uint64_t stop = len > v->info.fs_length - off ? v->info.fs_length : off + len;
    *first = off / v->info.block_size;
    *end = (stop + v->info.block_size - 1) / v->info.block_size;
    return true;
}

void fsp_vol_mark_in_use(struct fsp_vol *v, uint64_t off, uint64_t len, bool is_metadata)
{
    uint64_t first, end;
    if (!in_use_blocks(v, off, len, &first, &end))
        return;
    for (uint64_t b = first; b < end; b++) {
        set_bit(v->in_use, b);
        if (is_metadata)
            set_bit(v->metadata, b);
    }
}

/* Adds the blocks in use that the bitmap calls free; returns how many. */
static uint64_t merge_in_use(struct fsp_vol *v)
{
    uint64_t rescued = 0;
    for (uint64_t b = 0; v->geometry_set && b < v->block_count;) {
        uint64_t next = same_bit_end(v->in_use, b, v->block_count);
        for (; b < next && test_bit(v->in_use, b); b++) {
            if (!test_bit(v->allocated, b)) {
                set_bit(v->allocated, b);
                rescued++;
            }
        }
        b = next;
    }
    v->scan->progress_total += rescued * v->info.block_size;
    return rescued;
}

/* ---- hard links ------------------------------------------------------- */

static struct link_streams **link_bucket(struct fsp_vol *v, uint64_t ino)
{
    return &v->links[(ino * 0x9e3779b97f4a7c15ULL) >> 52 & (LINK_BUCKETS - 1)];
}

static struct link_streams *link_find(struct fsp_vol *v, uint64_t ino)
{
    for (struct link_streams *l = *link_bucket(v, ino); l; l = l->next)
        if (l->ino == ino)
            return l;
    return NULL;
}

bool fsp_vol_inode_seen(struct fsp_vol *v, uint64_t ino) { return link_find(v, ino) != NULL; }

/* *OUT keeps the record: the hashes may come later (link_update). */
static int link_remember(struct fsp_vol *v, const struct fsp_entry *e, struct link_streams **out)
{
    struct link_streams *l = calloc(1, sizeof *l);
    struct fsp_stream *streams = calloc(e->n_streams ? e->n_streams : 1, sizeof *streams);
    if (!l || !streams) {
        free(l);
        free(streams);
        return fsp_fail(v->scan->err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    }
    l->ino = e->ino;
    l->n = e->n_streams;
    l->streams = streams;
    for (uint32_t i = 0; i < e->n_streams; i++) {
        const struct fsp_stream *from = &e->streams[i];
        struct fsp_stream *to = &l->streams[i];
        to->name = fsp_strdup_bounded(from->name, FSP_MAX_PATH);
        to->size = from->size;
        to->valid_size = from->valid_size;
        to->flags = from->flags;
        memcpy(to->sha256, from->sha256, FSP_SHA256_LEN);
    }
    struct link_streams **b = link_bucket(v, e->ino);
    l->next = *b;
    *b = l;
    *out = l;
    return 0;
}

static void link_update(struct link_streams *l, const struct fsp_entry *e)
{
    for (uint32_t i = 0; l && i < l->n && i < e->n_streams; i++)
        memcpy(l->streams[i].sha256, e->streams[i].sha256, FSP_SHA256_LEN);
}

static void links_free(struct fsp_vol *v)
{
    for (size_t i = 0; i < LINK_BUCKETS; i++) {
        while (v->links[i]) {
            struct link_streams *l = v->links[i];
            v->links[i] = l->next;
            for (uint32_t j = 0; j < l->n; j++)
                free(l->streams[j].name);
            free(l->streams);
            free(l);
        }
    }
}

/* ---- stream hashing --------------------------------------------------- */

struct chunk_list {
    struct fsp_chunk *items;
    uint32_t n, cap;
};

/* Hashes a stream's bytes as they arrive: the whole-stream SHA-256 and, for
 * large streams, the content-defined chunks. */
struct stream_hasher {
    const struct fsp_sink *sink; /* gets objects when it has an object callback */
    uint8_t *whole_copy;         /* small streams, kept whole for the object callback */
    size_t whole_len;
    EVP_MD_CTX *whole;
    bool chunked;
    uint8_t *pending; /* bytes not yet cut into a chunk, at most FSP_CDC_MAX */
    size_t pending_len;
    uint64_t pending_offset;
    struct chunk_list chunks;
    int sink_rc;            /* the object callback failed: the scan must stop */
    bool pending_zero;      /* every pending byte is zero (see feed_zeros) */
};

enum { HASH_WHOLE = 1, HASH_CHUNKS = 2, HASH_BOTH = 3 };

/* PARTS: the whole-stream hash, the chunks (for a stream that has them), or both. */
static int hasher_init_parts(struct stream_hasher *h, uint64_t size, int parts,
                             const struct fsp_sink *objects)
{
    memset(h, 0, sizeof *h);
    if ((parts & HASH_WHOLE) && (!(h->whole = EVP_MD_CTX_new()) ||
                                 !EVP_DigestInit_ex(h->whole, EVP_sha256(), NULL)))
        return -ENOMEM;
    h->chunked = (parts & HASH_CHUNKS) && size >= FSP_CHUNK_MIN_STREAM;
    h->pending_zero = true;
    if (h->chunked && !(h->pending = malloc(FSP_CDC_MAX)))
        return -ENOMEM;
    h->sink = objects && objects->object ? objects : NULL;
    if (h->sink && !h->chunked && !(h->whole_copy = malloc(size ? size : 1)))
        return -ENOMEM;
    return 0;
}

static int hasher_init(struct stream_hasher *h, uint64_t size, const struct fsp_sink *objects)
{
    return hasher_init_parts(h, size, HASH_BOTH, objects);
}

static int add_chunk(struct stream_hasher *h, const uint8_t *data, size_t len)
{
    struct chunk_list *c = &h->chunks;
    if (c->n == c->cap) {
        uint32_t cap = c->cap ? c->cap * 2 : 64;
        struct fsp_chunk *grown = realloc(c->items, cap * sizeof *grown);
        if (!grown)
            return -ENOMEM;
        c->items = grown;
        c->cap = cap;
    }
    struct fsp_chunk *ch = &c->items[c->n++];
    ch->offset = h->pending_offset;
    ch->length = (uint32_t)len;
    unsigned int md_len = FSP_SHA256_LEN;
    EVP_Digest(data, len, ch->sha256, &md_len, EVP_sha256(), NULL);
    h->pending_offset += len;
    return h->sink ? (h->sink_rc = h->sink->object(h->sink->ctx, ch->sha256, data, len)) : 0;
}

/* Completes the pending bytes with *DATA up to a cut, if there is one.  The
 * bytes after the cut that came from *DATA go back to it rather than being
 * moved down in PENDING: copying them at every cut would cost more than the
 * chunk scan itself. */
static int chunk_pending(struct stream_hasher *h, const uint8_t **data, size_t *len, bool eof)
{
    size_t had = h->pending_len;
    size_t take = FSP_CDC_MAX - had < *len ? FSP_CDC_MAX - had : *len;
    if (take) /* DATA is NULL at the end of the stream */
        memcpy(h->pending + had, *data, take);
    h->pending_len += take;
    *data += take;
    *len -= take;
    size_t cut = fsp_cdc_next(h->pending, h->pending_len, eof && !*len);
    if (!cut)
        return 0;
    int rc = add_chunk(h, h->pending, cut);
    size_t rest = h->pending_len - cut;
    if (cut >= had && rest) {
        *data -= rest;
        *len += rest;
    } else if (rest) {
        memmove(h->pending, h->pending + cut, rest);
    }
    h->pending_len = cut >= had ? 0 : rest;
    return rc;
}

/* Cuts chunks from the pending bytes followed by DATA; keeps the tail pending. */
static int chunk_feed(struct stream_hasher *h, const uint8_t *data, size_t len, bool eof)
{
    while (len || (eof && h->pending_len)) {
        if (h->pending_len) {
            int rc = chunk_pending(h, &data, &len, eof);
            if (rc < 0)
                return rc;
            continue;
        }
        size_t cut = fsp_cdc_next(data, len, eof);
        if (!cut) {
            memcpy(h->pending, data, len);
            h->pending_len = len;
            return 0;
        }
        int rc = add_chunk(h, data, cut);
        if (rc < 0)
            return rc;
        data += cut;
        len -= cut;
    }
    return 0;
}

/* DATA_IS_ZERO says the caller knows every byte is zero, which keeps the
 * zero fast path of feed_zeros open. */
static int hasher_update(struct stream_hasher *h, const uint8_t *data, size_t len, bool data_is_zero)
{
    if (h->whole)
        EVP_DigestUpdate(h->whole, data, len);
    if (h->whole_copy) {
        memcpy(h->whole_copy + h->whole_len, data, len);
        h->whole_len += len;
    }
    if (!h->chunked)
        return 0;
    h->pending_zero &= data_is_zero;
    int rc = chunk_feed(h, data, len, false);
    if (!h->pending_len)
        h->pending_zero = true;
    return rc;
}

static int hasher_final(struct stream_hasher *h, struct fsp_stream *st)
{
    unsigned int md_len = FSP_SHA256_LEN;
    if (h->whole)
        EVP_DigestFinal_ex(h->whole, st->sha256, &md_len);
    int rc = h->chunked ? chunk_feed(h, NULL, 0, true) : 0;
    if (!rc && h->whole_copy)
        rc = h->sink_rc = h->sink->object(h->sink->ctx, st->sha256, h->whole_copy, h->whole_len);
    if (rc < 0)
        return rc;
    st->chunks = h->chunks.items;
    st->n_chunks = h->chunks.n;
    h->chunks.items = NULL;
    return 0;
}

static void hasher_free(struct stream_hasher *h)
{
    free(h->whole_copy);
    EVP_MD_CTX_free(h->whole);
    free(h->pending);
    free(h->chunks.items);
}

/* Holes are hashed as zeros, so a sparse stream costs its logical size.  A
 * hostile image, or a sparse 1 TB disk image, can claim terabytes of holes; the
 * whole scan hashes at most as many bytes that are not on disk as its
 * filesystems allocate, plus 256 MiB.  Streams past that are left unhashed, with a
 * warning, and their blocks are covered as raw blocks, which still sync. */
static uint64_t hole_budget(const struct scan *s) { return s->progress_total + (256ULL << 20); }

/* The bytes of ST that are not read from the image: holes, unwritten extents,
 * and everything past the initialized size. */
static uint64_t stream_hole_bytes(const struct fsp_stream *st, const struct fsp_stream_src *src)
{
    if (src->read)
        return 0;
    uint64_t on_disk = 0;
    for (uint32_t i = 0; i < st->n_extents; i++) {
        const struct fsp_extent *x = &st->extents[i];
        uint64_t end = x->logical + x->length;
        end = end < st->size ? end : st->size;
        end = end < src->valid_size ? end : src->valid_size;
        if (!(x->flags & FSP_EXT_UNWRITTEN) && end > x->logical)
            on_disk += end - x->logical;
    }
    return st->size > on_disk ? st->size - on_disk : 0;
}

static bool all_zero(const uint8_t *p, size_t len)
{
    static const uint8_t zeros[FSP_PIECE_SIZE];
    for (; len >= sizeof zeros; p += sizeof zeros, len -= sizeof zeros)
        if (memcmp(p, zeros, sizeof zeros))
            return false;
    return !len || !memcmp(p, zeros, len);
}

/* Chunking restarts at every cut, so a chunk that starts in a run of zeros
 * and stays in it always has the same length and hash: work them out once. */
static const uint8_t zero_chunk_data[FSP_CDC_MAX];
static size_t zero_chunk_len;
static uint8_t zero_chunk_sha[FSP_SHA256_LEN];
static pthread_once_t zero_chunk_once = PTHREAD_ONCE_INIT;

static void zero_chunk_init(void)
{
    zero_chunk_len = fsp_cdc_next(zero_chunk_data, FSP_CDC_MAX, false);
    if (!zero_chunk_len)
        zero_chunk_len = FSP_CDC_MAX;
    unsigned int md_len = FSP_SHA256_LEN;
    EVP_Digest(zero_chunk_data, zero_chunk_len, zero_chunk_sha, &md_len, EVP_sha256(), NULL);
}

/* Completes the pending zeros to a whole zero chunk without scanning or
 * hashing it; returns the zero bytes it consumed. */
static size_t add_zero_chunk(struct stream_hasher *h, int *rc)
{
    size_t take = zero_chunk_len - h->pending_len;
    if (h->whole)
        EVP_DigestUpdate(h->whole, zero_chunk_data, take);
    h->pending_len = 0;
    struct chunk_list *c = &h->chunks;
    if (c->n == c->cap) {
        uint32_t cap = c->cap ? c->cap * 2 : 64;
        struct fsp_chunk *grown = realloc(c->items, cap * sizeof *grown);
        if (!grown) {
            *rc = -ENOMEM;
            return take;
        }
        c->items = grown;
        c->cap = cap;
    }
    struct fsp_chunk *ch = &c->items[c->n++];
    ch->offset = h->pending_offset;
    ch->length = (uint32_t)zero_chunk_len;
    memcpy(ch->sha256, zero_chunk_sha, FSP_SHA256_LEN);
    h->pending_offset += zero_chunk_len;
    *rc = h->sink ? (h->sink_rc = h->sink->object(h->sink->ctx, ch->sha256, zero_chunk_data,
                                                   zero_chunk_len))
                  : 0;
    return take;
}

/* Holes, unwritten extents and zero blocks: whole zero chunks skip the chunk
 * scan and their hash (only the stream hash sees their bytes). */
static int feed_zeros(struct stream_hasher *h, uint64_t len)
{
    pthread_once(&zero_chunk_once, zero_chunk_init);
    while (len) {
        int rc = 0;
        if (h->chunked && h->pending_zero && h->pending_len + len >= FSP_CDC_MAX) {
            len -= add_zero_chunk(h, &rc);
            if (rc)
                return rc;
            continue;
        }
        size_t n = len < sizeof zero_chunk_data ? (size_t)len : sizeof zero_chunk_data;
        if ((rc = hasher_update(h, zero_chunk_data, n, true)) < 0)
            return rc;
        len -= n;
    }
    return 0;
}

/* Where a stream's bytes go: its hasher here, or its jobs on the workers. */
struct feed {
    struct stream_hasher *h;
    fsp_pool_job *jobs[FSP_POOL_SHARE_MAX];
    unsigned n_jobs;
};

static int feed_zero_bytes(struct scan *s, struct feed *f, uint64_t len)
{
    if (!f->n_jobs)
        return feed_zeros(f->h, len);
    return len ? fsp_pool_push(s->pool, f->jobs, f->n_jobs, NULL, len, FSP_SEG_ZEROS) : 0;
}

/* The buffer to read the next N bytes into, and how many fit. */
static uint8_t *feed_buffer(struct scan *s, struct feed *f, uint64_t len, size_t *n)
{
    /* One size with and without workers, so that a failed read names the
     * same bytes; small enough that the bytes read are still in the cache
     * when a worker hashes them. */
    *n = len < FSP_POOL_SEG ? (size_t)len : FSP_POOL_SEG;
    return f->n_jobs ? fsp_pool_buffer(s->pool, *n) : s->buf;
}

/* Hands over BUF filled by feed_buffer; KIND says whether it may be all zeros. */
static int feed_bytes(struct scan *s, struct feed *f, uint8_t *buf, size_t n, int kind)
{
    if (f->n_jobs)
        return fsp_pool_push(s->pool, f->jobs, f->n_jobs, buf, n, kind);
    /* Zero blocks are common in sparse image files: a cheap test opens the fast path. */
    if (kind == FSP_SEG_IMAGE && all_zero(buf, n))
        return feed_zeros(f->h, n);
    return hasher_update(f->h, buf, n, false);
}

/* Reads N bytes at PHYS into BUF and hands them over, or, where the workers
 * read, hands over the range: the scan thread then only walks metadata. */
static int feed_image_range(struct fsp_vol *v, struct feed *f, uint8_t *buf, size_t n,
                            uint64_t phys)
{
    struct scan *s = v->scan;
    if (f->n_jobs && s->workers_read && inside_volume(v, n, phys))
        return fsp_pool_push_range(s->pool, f->jobs, f->n_jobs, buf, n, v->info.start + phys);
    int rc = fsp_vol_pread(v, buf, n, phys);
    if (rc < 0 && f->n_jobs)
        fsp_pool_unused(s->pool, buf, n);
    return rc < 0 ? rc : feed_bytes(s, f, buf, n, FSP_SEG_IMAGE);
}

static int feed_from_image(struct fsp_vol *v, struct feed *f, uint64_t phys, uint64_t len)
{
    struct scan *s = v->scan;
    while (len) {
        size_t n;
        uint8_t *buf = feed_buffer(s, f, len, &n);
        if (!buf)
            return -ENOMEM;
        int rc = feed_image_range(v, f, buf, n, phys);
        if (rc < 0)
            return rc;
        s->progress_done += n;
        phys += n;
        len -= n;
    }
    return report_progress(s, "files");
}

/* Bytes [from, to) of the stream within one extent: image data up to the
 * initialized size, zeros after it and in unwritten extents. */
static int feed_extent_part(struct fsp_vol *v, struct feed *f, const struct fsp_extent *x,
                            uint64_t from, uint64_t to, uint64_t valid_size)
{
    uint64_t data_end = to;
    if (x->flags & FSP_EXT_UNWRITTEN)
        data_end = from;
    else if (valid_size < data_end)
        data_end = valid_size > from ? valid_size : from;
    int rc = 0;
    if (data_end > from)
        rc = feed_from_image(v, f, x->physical + (from - x->logical), data_end - from);
    if (!rc && to > data_end)
        rc = feed_zero_bytes(v->scan, f, to - data_end);
    return rc;
}

static int hash_through_extents(struct fsp_vol *v, const struct fsp_stream *st,
                                const struct fsp_stream_src *src, struct feed *f)
{
    uint64_t pos = 0;
    for (uint32_t i = 0; i < st->n_extents && pos < st->size; i++) {
        const struct fsp_extent *x = &st->extents[i];
        if (x->logical >= st->size)
            break;
        int rc = x->logical > pos ? feed_zero_bytes(v->scan, f, x->logical - pos) : 0;
        uint64_t end = x->logical + x->length < st->size ? x->logical + x->length : st->size;
        if (!rc)
            rc = feed_extent_part(v, f, x, x->logical, end, src->valid_size);
        if (rc < 0)
            return rc;
        pos = end;
    }
    return pos < st->size ? feed_zero_bytes(v->scan, f, st->size - pos) : 0;
}

static int hash_through_reader(struct fsp_vol *v, const struct fsp_stream *st,
                               const struct fsp_stream_src *src, struct feed *f)
{
    struct scan *s = v->scan;
    for (uint64_t pos = 0; pos < st->size;) {
        size_t n;
        uint8_t *buf = feed_buffer(s, f, st->size - pos, &n);
        if (!buf)
            return -ENOMEM;
        int rc = 0;
        if (pos >= src->valid_size)
            memset(buf, 0, n);
        else
            rc = src->read(src->ctx, buf, n, pos);
        if (rc < 0 && f->n_jobs)
            fsp_pool_unused(s->pool, buf, n);
        if (rc >= 0)
            rc = feed_bytes(s, f, buf, n, FSP_SEG_BYTES);
        if (rc < 0)
            return rc;
        pos += n;
    }
    return 0;
}

/* ---- stream jobs on the workers --------------------------------------- */

/* One job's share of a stream: a hasher and what it found. */
struct hash_part {
    struct stream_hasher h;
    struct fsp_stream out;
    fsp_pool_job *job;
    fsp_source *src;   /* where the workers read the stream's ranges */
    fsp_error read_err; /* why this job's read failed */
    bool read_failed;
};

/* A stream on the workers.  A chunked stream is two jobs over the same bytes,
 * its whole-stream hash and its chunks, so that one large file keeps two
 * workers busy; any other stream is one job. */
struct stream_job {
    struct hash_part part[FSP_POOL_SHARE_MAX];
    unsigned n_parts;
    bool abandoned; /* reading failed: the stream is unreadable, the result unused */
};

static int job_segment(void *ctx, const uint8_t *data, size_t len, int kind)
{
    struct hash_part *part = ctx;
    if (kind == FSP_SEG_ZEROS || (kind == FSP_SEG_IMAGE && all_zero(data, len)))
        return feed_zeros(&part->h, len);
    return hasher_update(&part->h, data, len, false);
}

static int job_finish(void *ctx)
{
    struct hash_part *part = ctx;
    return hasher_final(&part->h, &part->out);
}

static int job_read(void *ctx, uint8_t *buf, size_t len, uint64_t off)
{
    struct hash_part *part = ctx;
    int rc = fsp_source_pread(part->src, buf, len, off, &part->read_err);
    part->read_failed = rc < 0;
    return rc;
}

static const struct fsp_pool_ops stream_job_ops = {job_segment, job_finish, job_read};

/* A worker failed to read the image: that stops the scan, as it does when
 * the scan thread reads (fsp_vol_pread). */
static int read_failure(struct scan *s, const struct stream_job *j, int rc)
{
    for (unsigned i = 0; i < j->n_parts; i++) {
        const fsp_error *e = &j->part[i].read_err;
        if (j->part[i].read_failed)
            return stop_scan(s, s->fatal ? s->fatal : fsp_fail(s->err, e->kind, rc, "%s", e->msg));
    }
    return rc;
}

static bool stream_job_done(struct scan *s, const struct stream_job *j)
{
    for (unsigned i = 0; i < j->n_parts; i++)
        if (j->part[i].job && !fsp_pool_done(s->pool, j->part[i].job))
            return false;
    return true;
}

/* Waits for the jobs and frees them; on success ST gets the hashes. */
static int stream_job_collect(struct scan *s, struct stream_job *j, struct fsp_stream *st)
{
    int rc = j->n_parts ? 0 : -ENOMEM;
    for (unsigned i = 0; i < j->n_parts; i++) {
        int part_rc = j->part[i].job ? fsp_pool_wait(s->pool, j->part[i].job) : -ENOMEM;
        rc = rc ? rc : part_rc;
    }
    if (rc < 0)
        rc = read_failure(s, j, rc);
    struct hash_part *chunks = &j->part[j->n_parts - (j->n_parts > 0)];
    if (!rc && !j->abandoned) {
        memcpy(st->sha256, j->part[0].out.sha256, FSP_SHA256_LEN);
        st->chunks = chunks->out.chunks;
        st->n_chunks = chunks->out.n_chunks;
        chunks->out.chunks = NULL;
    }
    for (unsigned i = 0; i < FSP_POOL_SHARE_MAX; i++) {
        free(j->part[i].out.chunks);
        hasher_free(&j->part[i].h);
    }
    if (j->abandoned)
        rc = 0;
    free(j);
    return rc;
}

static int open_parts(struct scan *s, struct stream_job *j, uint64_t size)
{
    bool split = size >= FSP_CHUNK_MIN_STREAM;
    static const int parts[2][FSP_POOL_SHARE_MAX] = {{HASH_BOTH}, {HASH_WHOLE, HASH_CHUNKS}};
    for (unsigned i = 0; i < (split ? 2u : 1u); i++) {
        struct hash_part *part = &j->part[i];
        int rc = hasher_init_parts(&part->h, size, parts[split][i], NULL);
        part->src = s->src;
        if (!rc)
            rc = fsp_pool_open(s->pool, &stream_job_ops, part, &part->job);
        j->n_parts++;
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Reads stream ST into new jobs *OUT; the workers hash it. */
static int queue_stream(struct fsp_vol *v, struct fsp_stream *st, const struct fsp_stream_src *src,
                        struct stream_job **out)
{
    struct scan *s = v->scan;
    struct stream_job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    *out = j;
    struct feed f = {0};
    int rc = open_parts(s, j, st->size);
    for (unsigned i = 0; i < j->n_parts; i++)
        if (j->part[i].job)
            f.jobs[f.n_jobs++] = j->part[i].job;
    if (!rc)
        rc = src->read ? hash_through_reader(v, st, src, &f)
                       : hash_through_extents(v, st, src, &f);
    for (unsigned i = 0; i < f.n_jobs; i++)
        fsp_pool_close(s->pool, f.jobs[i]);
    j->abandoned = rc < 0;
    return rc;
}

/* Checks that extents are in logical order, do not overlap, and lie inside the
 * filesystem; returns a description of the first problem or NULL. */
static const char *extents_problem(const struct fsp_vol *v, const struct fsp_stream *st)
{
    if (st->n_extents > FSP_MAX_EXTENTS)
        return "too many extents";
    uint64_t next_logical = 0;
    for (uint32_t i = 0; i < st->n_extents; i++) {
        const struct fsp_extent *x = &st->extents[i];
        if (!x->length || x->logical < next_logical)
            return "extents overlap or are out of order";
        if (x->physical > v->info.fs_length || x->length > v->info.fs_length - x->physical)
            return "an extent points outside the filesystem";
        if (x->logical + x->length < x->logical)
            return "an extent overflows";
        next_logical = x->logical + x->length;
    }
    return NULL;
}

/* LOGICAL..+LENGTH of stream IDX at PHYSICAL, as one claim. */
static int add_claim(struct fsp_vol *v, uint64_t seq, uint32_t idx, const struct fsp_stream *st,
                     uint64_t logical, uint64_t physical, uint64_t length, uint8_t zero_kind)
{
    struct claim c = {
        .offset = v->info.start + physical,
        .length = length,
        .stream_offset = logical,
        .stream_size = st->size,
        .entry_seq = seq,
        .stream = idx,
        .volume = v->info.index,
        .kind = zero_kind ? FSP_L_ZERO : FSP_L_FILE,
        .check_zero = zero_kind == CLAIM_ZERO_IF_ZERO,
    };
    memcpy(c.sha256, st->sha256, FSP_SHA256_LEN);
    return fsp_xsort_add(v->scan->claims, &c);
}

/* Volatile streams (pagefile, swap) claim their extents as zeros: their
 * canonical content is empty, so neither the digest nor a transfer cares what
 * they held.  Unwritten extents and whole blocks past the end of the stream
 * (fs-verity trees, blocks written past EOF) read as zeros through the file but
 * may hold bytes: they are zero only if the image says so. */
static int add_claims(struct fsp_vol *v, uint64_t seq, uint32_t idx, const struct fsp_entry *e)
{
    const struct fsp_stream *st = &e->streams[idx];
    uint32_t bs = v->info.block_size;
    uint64_t blocks_end = st->size / bs * bs + (st->size % bs ? bs : 0);
    int rc = 0;
    for (uint32_t i = 0; !rc && i < st->n_extents; i++) {
        const struct fsp_extent *x = &st->extents[i];
        fsp_vol_mark_in_use(v, x->physical, x->length, false);
        uint64_t in_file = x->logical >= blocks_end ? 0 : blocks_end - x->logical;
        if (in_file > x->length)
            in_file = x->length;
        if (e->flags & FSP_ENTRY_VOLATILE)
            rc = add_claim(v, seq, idx, st, x->logical, x->physical, x->length, CLAIM_ZERO);
        else if (x->flags & FSP_EXT_UNWRITTEN)
            in_file = 0;
        else if (in_file)
            rc = add_claim(v, seq, idx, st, x->logical, x->physical, in_file, 0);
        if (!rc && !(e->flags & FSP_ENTRY_VOLATILE) && in_file < x->length)
            rc = add_claim(v, seq, idx, st, x->logical + in_file, x->physical + in_file,
                           x->length - in_file, CLAIM_ZERO_IF_ZERO);
    }
    return rc;
}

/* The blocks of a stream that cannot be claimed still hold its bytes: they
 * stay covered, as raw blocks, whatever the bitmap says. */
static void mark_unreadable(struct fsp_vol *v, const struct fsp_entry *e, struct fsp_stream *st,
                            const char *why)
{
    for (uint32_t i = 0; i < st->n_extents && i < FSP_MAX_EXTENTS; i++)
        fsp_vol_mark_in_use(v, st->extents[i].physical, st->extents[i].length, false);
    st->flags |= FSP_STREAM_UNREADABLE;
    st->n_extents = 0;
    memset(st->sha256, 0, FSP_SHA256_LEN);
    fsp_vol_warn(v, e->path, "stream %s: %s; its blocks are kept as raw blocks",
                 st->name ? st->name : "(data)", why);
}

/* Asks the sink whether to hash stream IDX at all, or whether it already
 * knows the hashes; true when the stream needs no reading. */
static bool stream_settled_by_sink(struct scan *s, const struct fsp_entry *e, uint32_t idx)
{
    struct fsp_stream *st = &e->streams[idx];
    if (s->sink->want_stream && !s->sink->want_stream(s->sink->ctx, e, idx)) {
        st->flags |= FSP_STREAM_NOT_HASHED;
        return true;
    }
    return s->sink->reuse_stream && s->sink->reuse_stream(s->sink->ctx, e, idx, st);
}

/* Hashes ST in this thread; *SINK_RC gets what the object callback failed with. */
static int hash_here(struct fsp_vol *v, const struct fsp_entry *e, struct fsp_stream *st,
                     const struct fsp_stream_src *src, int *sink_rc)
{
    struct scan *s = v->scan;
    struct stream_hasher h;
    bool store = !(e->flags & FSP_ENTRY_VOLATILE) || (s->flags & FSP_SCAN_VOLATILE_OBJECTS);
    int rc = hasher_init(&h, st->size, store ? s->sink : NULL);
    struct feed f = {.h = &h};
    if (!rc)
        rc = src->read ? hash_through_reader(v, st, src, &f) : hash_through_extents(v, st, src, &f);
    if (!rc)
        rc = hasher_final(&h, st);
    *sink_rc = h.sink_rc;
    hasher_free(&h);
    return rc;
}

/* Hashes stream IDX of E, here or, with workers, in a new job *JOB whose
 * result stream_job_collect fills in.  Content problems mark the stream
 * unreadable; the return value is negative only when the whole scan must stop. */
static int hash_stream(struct fsp_vol *v, struct fsp_entry *e, uint32_t idx,
                       const struct fsp_stream_src *src, struct stream_job **job)
{
    struct fsp_stream *st = &e->streams[idx];
    struct scan *s = v->scan;
    if (st->flags & FSP_STREAM_UNREADABLE) {
        st->n_extents = 0;
        return 0;
    }
    const char *problem = src->read ? NULL : extents_problem(v, st);
    uint64_t holes = problem ? 0 : stream_hole_bytes(st, src);
    if (holes > hole_budget(s) - s->holes_hashed)
        problem = "its holes are larger than this image's budget for hashing zeros";
    if (problem) {
        mark_unreadable(v, e, st, problem);
        return 0;
    }
    if (src->read)
        st->n_extents = 0; /* informational only: never claimed */
    st->valid_size = src->valid_size < st->size ? src->valid_size : st->size;
    if (stream_settled_by_sink(s, e, idx))
        return 0;
    s->holes_hashed += holes;
    int sink_rc = 0;
    int rc = s->pool ? queue_stream(v, st, src, job) : hash_here(v, e, st, src, &sink_rc);
    if (sink_rc)
        return sink_result(s, sink_rc);
    if (rc < 0 && !s->fatal && rc != -ENOMEM) {
        mark_unreadable(v, e, st, strerror(-rc));
        return 0;
    }
    return rc;
}

/* Volatility goes by name only: a rule that looked at the content would see a
 * zero-filled copy differently from its original. */
static bool is_volatile_name(const struct fsp_entry *e)
{
    static const char *const names[] = {"/pagefile.sys", "/hiberfil.sys", "/swapfile.sys",
                                        "/swapfile", "/swap.img"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (e->path && !strcasecmp(e->path, names[i]))
            return true;
    return false;
}

/* Frees the chunks, and gives the backend its extents back (SAVED: NULL when
 * they were never swapped). */
static void free_stream_results(struct fsp_entry *e, struct fsp_extent **saved)
{
    for (uint32_t i = 0; i < e->n_streams; i++) {
        free(e->streams[i].chunks);
        e->streams[i].chunks = NULL;
        e->streams[i].n_chunks = 0;
        if (saved) {
            free(e->streams[i].extents);
            e->streams[i].extents = saved[i];
        }
    }
    free(saved);
}

/* The sink sees absolute extents; the backend keeps its own array in *SAVED.
 * Out of memory fails the scan: an entry without its extents would lose its
 * bytes from the layout. */
static int absolutise_extents(struct fsp_vol *v, struct fsp_entry *e, struct fsp_extent ***saved)
{
    struct fsp_extent **own = calloc(e->n_streams ? e->n_streams : 1, sizeof *own);
    int rc = own ? 0 : -ENOMEM;
    for (uint32_t i = 0; own && i < e->n_streams; i++) {
        struct fsp_stream *st = &e->streams[i];
        own[i] = st->extents;
        st->extents = st->n_extents ? malloc(sizeof *st->extents * st->n_extents) : NULL;
        if (st->n_extents && !st->extents)
            rc = -ENOMEM;
        for (uint32_t j = 0; st->extents && j < st->n_extents; j++) {
            st->extents[j] = own[i][j];
            st->extents[j].physical += v->info.start;
        }
    }
    *saved = own;
    return rc ? fsp_fail(v->scan->err, FSP_EK_NOMEM, rc, "out of memory") : 0;
}

/* ---- entries waiting for their hashes --------------------------------- */

struct stream_slot {
    struct stream_job *job; /* hashing on the workers, or NULL */
    bool claim;             /* read through extents: claim its blocks */
};

/* An entry emitted while earlier ones still wait: the backend owns its E, so
 * this is a deep copy, handed to the sink once every earlier entry was. */
struct pending {
    struct fsp_entry e;
    uint64_t seq;
    struct stream_slot *slots;
    struct link_streams *link;
    struct pending *next;
};

static int copy_bytes(void *dst, const void *src, size_t len)
{
    void **to = dst;
    *to = NULL;
    if (!src)
        return 0;
    if (!(*to = malloc(len ? len : 1)))
        return -ENOMEM;
    memcpy(*to, src, len);
    return 0;
}

static int copy_string(char **dst, const char *src)
{
    return copy_bytes(dst, src, src ? strlen(src) + 1 : 0);
}

/* The chunks move to the copy (a sink's reuse_stream may have set them). */
static int copy_streams(struct fsp_entry *to, struct fsp_entry *from)
{
    to->n_streams = 0;
    if (!(to->streams = calloc(from->n_streams ? from->n_streams : 1, sizeof *to->streams)))
        return -ENOMEM;
    to->n_streams = from->n_streams;
    int rc = 0;
    for (uint32_t i = 0; i < from->n_streams; i++) {
        struct fsp_stream *d = &to->streams[i], *f = &from->streams[i];
        *d = *f;
        f->chunks = NULL;
        rc |= copy_string(&d->name, f->name);
        rc |= copy_bytes(&d->extents, f->extents, (size_t)f->n_extents * sizeof *f->extents);
    }
    return rc ? -ENOMEM : 0;
}

static int copy_xattrs(struct fsp_entry *to, const struct fsp_entry *from)
{
    to->n_xattrs = 0;
    if (!(to->xattrs = calloc(from->n_xattrs ? from->n_xattrs : 1, sizeof *to->xattrs)))
        return -ENOMEM;
    to->n_xattrs = from->n_xattrs;
    int rc = 0;
    for (uint32_t i = 0; i < from->n_xattrs; i++) {
        to->xattrs[i].len = from->xattrs[i].len;
        rc |= copy_string(&to->xattrs[i].name, from->xattrs[i].name);
        rc |= copy_bytes(&to->xattrs[i].value, from->xattrs[i].value, from->xattrs[i].len);
    }
    return rc ? -ENOMEM : 0;
}

static void entry_copy_free(struct fsp_entry *e)
{
    free(e->path);
    free(e->symlink);
    free(e->dos_name);
    free(e->reparse);
    free(e->security);
    for (uint32_t i = 0; e->xattrs && i < e->n_xattrs; i++) {
        free(e->xattrs[i].name);
        free(e->xattrs[i].value);
    }
    free(e->xattrs);
    for (uint32_t i = 0; e->streams && i < e->n_streams; i++) {
        free(e->streams[i].name);
        free(e->streams[i].extents);
        free(e->streams[i].chunks);
    }
    free(e->streams);
}

/* On failure TO is still safe to pass to entry_copy_free. */
static int entry_copy(struct fsp_entry *to, struct fsp_entry *from)
{
    *to = *from;
    to->xattrs = NULL;
    to->streams = NULL;
    int rc = copy_string(&to->path, from->path);
    rc |= copy_string(&to->symlink, from->symlink);
    rc |= copy_string(&to->dos_name, from->dos_name);
    rc |= copy_bytes(&to->reparse, from->reparse, from->reparse_len);
    rc |= copy_bytes(&to->security, from->security, from->security_len);
    rc |= copy_xattrs(to, from);
    rc |= copy_streams(to, from);
    return rc ? -ENOMEM : 0;
}

/* Waits for the entry's jobs and fills in their hashes; the first failure wins. */
static int collect_jobs(struct scan *s, struct fsp_entry *e, struct stream_slot *slots)
{
    int rc = 0;
    for (uint32_t i = 0; i < e->n_streams; i++) {
        int job_rc = slots[i].job ? stream_job_collect(s, slots[i].job, &e->streams[i]) : 0;
        slots[i].job = NULL;
        rc = rc ? rc : job_rc;
    }
    return rc;
}

static bool jobs_done(struct scan *s, const struct pending *p)
{
    for (uint32_t i = 0; i < p->e.n_streams; i++)
        if (p->slots[i].job && !stream_job_done(s, p->slots[i].job))
            return false;
    return true;
}

/* The part of an emit that needs the hashes: claims, hard links, the sink. */
static int finish_entry(struct fsp_vol *v, uint64_t seq, struct fsp_entry *e,
                        struct stream_slot *slots, struct link_streams *link)
{
    struct scan *s = v->scan;
    int rc = collect_jobs(s, e, slots);
    for (uint32_t i = 0; !rc && i < e->n_streams; i++)
        if (slots[i].claim && !(e->streams[i].flags & FSP_STREAM_UNREADABLE))
            rc = add_claims(v, seq, i, e);
    free(slots);
    link_update(link, e);
    struct fsp_extent **saved = NULL;
    if (!rc)
        rc = absolutise_extents(v, e, &saved);
    if (rc) {
        free_stream_results(e, saved);
        return stop_scan(s, rc);
    }
    rc = s->sink->entry ? s->sink->entry(s->sink->ctx, seq, e) : 0;
    free_stream_results(e, saved);
    return sink_result(s, rc);
}

/* Once the scan must stop, waiting entries only wait for their jobs. */
static int deliver_oldest(struct fsp_vol *v)
{
    struct scan *s = v->scan;
    struct pending *p = s->pending;
    if (!(s->pending = p->next))
        s->pending_tail = NULL;
    s->n_pending--;
    int rc = s->fatal;
    if (rc) {
        collect_jobs(s, &p->e, p->slots);
        free(p->slots);
    } else {
        rc = finish_entry(v, p->seq, &p->e, p->slots, p->link);
    }
    entry_copy_free(&p->e);
    free(p);
    return rc;
}

/* Hands the sink the waiting entries whose hashes are done, in order; with
 * WAIT, the oldest one even if it must wait for its hashes. */
static int deliver_ready(struct fsp_vol *v, bool wait)
{
    struct scan *s = v->scan;
    int rc = 0;
    while (!rc && s->pending && (wait || jobs_done(s, s->pending))) {
        rc = deliver_oldest(v);
        wait = false;
    }
    return rc;
}

static int drain_pending(struct fsp_vol *v)
{
    int rc = 0;
    while (v->scan->pending)
        rc = deliver_oldest(v) ? v->scan->fatal : rc;
    return rc;
}

static int defer_entry(struct fsp_vol *v, uint64_t seq, struct fsp_entry *e,
                       struct stream_slot *slots, struct link_streams *link)
{
    struct scan *s = v->scan;
    struct pending *p = calloc(1, sizeof *p);
    if (!p || entry_copy(&p->e, e) < 0) {
        if (p)
            entry_copy_free(&p->e);
        free(p);
        collect_jobs(s, e, slots);
        free(slots);
        free_stream_results(e, NULL);
        return stop_scan(s, fsp_fail(s->err, FSP_EK_NOMEM, -ENOMEM, "out of memory"));
    }
    p->seq = seq;
    p->slots = slots;
    p->link = link;
    if (s->pending_tail)
        s->pending_tail->next = p;
    else
        s->pending = p;
    s->pending_tail = p;
    s->n_pending++;
    return deliver_ready(v, s->n_pending > PENDING_MAX);
}

/* ---- emitting entries -------------------------------------------------- */

static int emit_hardlink(struct fsp_vol *v, uint64_t seq, struct fsp_entry *e)
{
    int rc = drain_pending(v); /* the first path's hashes */
    if (rc)
        return rc;
    struct link_streams *l = link_find(v, e->ino);
    struct fsp_entry copy = *e;
    if (l) {
        copy.n_streams = l->n;
        copy.streams = l->streams;
    } else {
        copy.flags &= ~FSP_ENTRY_HARDLINK;
        copy.n_streams = 0;
    }
    struct scan *s = v->scan;
    return sink_result(s, s->sink->entry ? s->sink->entry(s->sink->ctx, seq, &copy) : 0);
}

static int hash_streams(struct fsp_vol *v, struct fsp_entry *e, const struct fsp_stream_src *srcs,
                        struct stream_slot *slots)
{
    bool with_data = fsp_vol_wants_data(v) && v->geometry_set;
    for (uint32_t i = 0; i < e->n_streams; i++)
        e->streams[i].valid_size = e->streams[i].size; /* until the source says less */
    int rc = 0;
    for (uint32_t i = 0; with_data && i < e->n_streams && !rc; i++) {
        rc = hash_stream(v, e, i, &srcs[i], &slots[i].job);
        slots[i].claim = !srcs[i].read;
        if (e->streams[i].flags & FSP_STREAM_UNREADABLE)
            e->flags |= FSP_ENTRY_DAMAGED;
    }
    return rc;
}

static bool has_jobs(const struct fsp_entry *e, const struct stream_slot *slots)
{
    for (uint32_t i = 0; i < e->n_streams; i++)
        if (slots[i].job)
            return true;
    return false;
}

int fsp_vol_emit(struct fsp_vol *v, struct fsp_entry *e, const struct fsp_stream_src *srcs)
{
    struct scan *s = v->scan;
    if (s->fatal)
        return s->fatal;
    int rc = announce_volume(v);
    if (rc)
        return rc;
    uint64_t seq = s->next_seq++;
    s->sum.entries++;
    e->volume = v->info.index;
    if (e->type == FSP_T_REG && is_volatile_name(e))
        e->flags |= FSP_ENTRY_VOLATILE;
    if (e->flags & FSP_ENTRY_HARDLINK)
        return emit_hardlink(v, seq, e);
    if (e->n_streams > FSP_MAX_STREAMS) {
        fsp_vol_warn(v, e->path, "%u streams is more than %u; streams dropped", e->n_streams,
                     FSP_MAX_STREAMS);
        e->n_streams = 0;
        e->flags |= FSP_ENTRY_DAMAGED;
    }
    struct stream_slot *slots = calloc(e->n_streams ? e->n_streams : 1, sizeof *slots);
    if (!slots)
        return stop_scan(s, fsp_fail(s->err, FSP_EK_NOMEM, -ENOMEM, "out of memory"));
    rc = hash_streams(v, e, srcs, slots);
    struct link_streams *link = NULL;
    if (!rc && e->nlink > 1 && e->type != FSP_T_DIR) /* directories count subdirectories */
        rc = link_remember(v, e, &link);
    if (rc) {
        collect_jobs(s, e, slots);
        free(slots);
        free_stream_results(e, NULL);
        return stop_scan(s, rc);
    }
    if (s->pending || has_jobs(e, slots))
        return defer_entry(v, seq, e, slots, link);
    return finish_entry(v, seq, e, slots, link);
}

/* ---- the layout pass --------------------------------------------------- */

/* Collects consecutive pieces into runs and hands them to the digest and sink. */
struct run_builder {
    struct scan *s;
    struct fsp_layout_run run;
    uint8_t (*hashes)[FSP_SHA256_LEN];
    bool open;
};

static int flush_run(struct run_builder *b)
{
    if (!b->open)
        return 0;
    b->open = false;
    struct scan *s = b->s;
    b->run.hashes = (const uint8_t(*)[FSP_SHA256_LEN])b->hashes;
    fsp_digest_add_run(s->digest, &b->run);
    s->sum.allocated_bytes += b->run.length;
    if (b->run.kind == FSP_L_FILE)
        s->sum.file_bytes += b->run.length;
    else if (b->run.kind == FSP_L_RAW)
        s->sum.raw_bytes += b->run.length;
    else
        s->sum.zero_bytes += b->run.length;
    return sink_result(s, s->sink->layout ? s->sink->layout(s->sink->ctx, &b->run) : 0);
}

static int add_piece(struct run_builder *b, uint32_t volume, uint64_t off, uint64_t len,
                     const uint8_t *hash)
{
    uint8_t kind = hash ? FSP_L_RAW : FSP_L_ZERO;
    /* A raw run holds one hash per 4 KiB from its start: only its last piece
     * may be shorter, or a reader could not place the pieces. */
    bool extends = b->open && b->run.kind == kind && b->run.volume == volume &&
                   b->run.offset + b->run.length == off &&
                   (kind == FSP_L_ZERO ||
                    (b->run.n_hashes < RUN_MAX_PIECES && b->run.length % FSP_PIECE_SIZE == 0));
    if (!extends) {
        int rc = flush_run(b);
        if (rc)
            return rc;
        memset(&b->run, 0, sizeof b->run);
        b->run.offset = off;
        b->run.kind = kind;
        b->run.volume = volume;
        b->open = true;
    }
    b->run.length += len;
    if (hash)
        memcpy(b->hashes[b->run.n_hashes++], hash, FSP_SHA256_LEN);
    return 0;
}


static int add_raw_pieces(struct run_builder *b, uint32_t volume, uint64_t off, size_t n,
                          bool zero_is_free)
{
    const uint8_t *buf = b->s->buf;
    for (size_t p = 0; p < n; p += FSP_PIECE_SIZE) {
        size_t plen = n - p < FSP_PIECE_SIZE ? n - p : FSP_PIECE_SIZE;
        bool zero = all_zero(buf + p, plen);
        if (zero && zero_is_free)
            continue;
        uint8_t hash[FSP_SHA256_LEN];
        unsigned int md_len = FSP_SHA256_LEN;
        if (!zero)
            EVP_Digest(buf + p, plen, hash, &md_len, EVP_sha256(), NULL);
        int rc = add_piece(b, volume, off + p, plen, zero ? NULL : hash);
        if (!rc && !zero && b->s->sink->object)
            rc = sink_result(b->s, b->s->sink->object(b->s->sink->ctx, hash, buf + p, plen));
        if (rc)
            return rc;
    }
    return 0;
}

/* Hashes [start, start+len) as raw pieces of 4 KiB counted from START, so the
 * grid does not depend on how the source reports holes.  In filesystems every
 * piece is allocated (zero ones become ZERO runs); outside them zero pieces are
 * simply free. */
static int add_raw_range(struct run_builder *b, uint32_t volume, uint64_t start, uint64_t len,
                         bool zero_is_free)
{
    struct scan *s = b->s;
    uint64_t pos = 0;
    while (pos < len) {
        uint64_t data_off;
        int rc = fsp_source_next_data(s->src, start + pos, &data_off, s->err);
        if (rc < 0)
            return stop_scan(s, rc);
        uint64_t hole = data_off - (start + pos);
        hole = hole < len - pos ? hole - hole % FSP_PIECE_SIZE : len - pos;
        if (hole) {
            if (!zero_is_free && (rc = add_piece(b, volume, start + pos, hole, NULL)))
                return rc;
            pos += hole;
            continue;
        }
        size_t n = len - pos < READ_BUF ? (size_t)(len - pos) : READ_BUF;
        if ((rc = fsp_source_pread(s->src, s->buf, n, start + pos, s->err)) < 0)
            return stop_scan(s, rc);
        if ((rc = add_raw_pieces(b, volume, start + pos, n, zero_is_free)))
            return rc;
        s->progress_done += n;
        pos += n;
        if ((rc = report_progress(s, "metadata")))
            return rc;
    }
    return 0;
}

static bool block_allocated(const struct fsp_vol *v, uint64_t b)
{
    return test_bit(v->allocated, b);
}

static uint64_t same_state_end(const struct fsp_vol *v, uint64_t b, uint64_t limit)
{
    return same_bit_end(v->allocated, b, limit);
}

/* Covers the allocated blocks of V in [from, to) (byte offsets in the image)
 * that no stream claimed. */
static int add_unclaimed(struct run_builder *b, struct fsp_vol *v, uint64_t from, uint64_t to)
{
    uint32_t bs = v->info.block_size;
    uint64_t end_block = (to - v->info.start + bs - 1) / bs;
    if (end_block > v->block_count)
        end_block = v->block_count;
    for (uint64_t blk = (from - v->info.start) / bs; blk < end_block;) {
        uint64_t next = same_state_end(v, blk, end_block);
        if (block_allocated(v, blk)) {
            uint64_t lo = v->info.start + blk * bs, hi = v->info.start + next * bs;
            lo = lo < from ? from : lo;
            hi = hi > to ? to : hi;
            int rc = add_raw_range(b, v->info.index, lo, hi - lo, false);
            if (rc)
                return rc;
        }
        blk = next;
    }
    return 0;
}

static int add_claim_run(struct run_builder *b, const struct claim *c, uint64_t from, uint64_t to)
{
    if (c->kind == FSP_L_ZERO && c->check_zero)
        return add_raw_range(b, c->volume, from, to - from, false);
    if (c->kind == FSP_L_ZERO)
        return add_piece(b, c->volume, from, to - from, NULL);
    int rc = flush_run(b);
    if (rc)
        return rc;
    memset(&b->run, 0, sizeof b->run);
    b->run = (struct fsp_layout_run){
        .offset = from,
        .length = to - from,
        .kind = FSP_L_FILE,
        .volume = c->volume,
        .entry_seq = c->entry_seq,
        .stream = c->stream,
        .stream_offset = c->stream_offset + (from - c->offset),
        .stream_size = c->stream_size,
    };
    memcpy(b->run.stream_sha256, c->sha256, FSP_SHA256_LEN);
    b->open = true;
    return flush_run(b);
}

/* Where [FROM, TO) first changes between metadata and not; *IS_META says which it starts as. */
static uint64_t metadata_span_end(const struct fsp_vol *v, uint64_t from, uint64_t to, bool *is_meta)
{
    uint32_t bs = v->info.block_size;
    uint64_t blk = (from - v->info.start) / bs;
    uint64_t end_block = (to - v->info.start + bs - 1) / bs;
    *is_meta = test_bit(v->metadata, blk);
    uint64_t next = v->info.start + same_bit_end(v->metadata, blk, end_block) * bs;
    return next < to ? next : to;
}

/* Where a stream claims the filesystem's own structures (a damaged volume),
 * the structures win: those blocks are covered as raw. */
static int add_claim_parts(struct run_builder *b, const struct fsp_vol *v, const struct claim *c,
                           uint64_t from, uint64_t to)
{
    int rc = 0;
    while (!rc && from < to) {
        bool is_meta;
        uint64_t next = metadata_span_end(v, from, to, &is_meta);
        rc = is_meta ? add_raw_range(b, c->volume, from, next - from, false)
                     : add_claim_run(b, c, from, next);
        from = next;
    }
    return rc;
}

struct claim_cursor {
    fsp_xsort *xs;
    struct claim cur;
    bool have;
};

static int cursor_advance(struct claim_cursor *cc)
{
    int rc = fsp_xsort_next(cc->xs, &cc->cur);
    cc->have = rc == 1;
    return rc < 0 ? rc : 0;
}

/* Covers the filesystem of V: claimed extents as FILE or ZERO runs in offset
 * order, the rest of its allocated blocks as raw.  A claim that overlaps an
 * earlier one (blocks shared by two files on a damaged volume) keeps the first. */
static int layout_filesystem(struct run_builder *b, struct fsp_vol *v, struct claim_cursor *cc)
{
    uint64_t pos = v->info.start, end = v->info.start + v->info.fs_length;
    int rc = 0;
    while (!rc && cc->have && cc->cur.offset < end) {
        struct claim c = cc->cur;
        uint64_t c_end = c.offset + c.length;
        if (c_end > pos) {
            uint64_t from = c.offset > pos ? c.offset : pos;
            if (from > pos)
                rc = add_unclaimed(b, v, pos, from);
            if (!rc)
                rc = add_claim_parts(b, v, &c, from, c_end < end ? c_end : end);
            pos = c_end < end ? c_end : end;
        }
        if (!rc)
            rc = cursor_advance(cc) < 0 ? stop_scan(b->s, -EIO) : 0;
    }
    if (!rc && pos < end)
        rc = add_unclaimed(b, v, pos, end);
    return rc;
}

static int cmp_vol_start(const void *a, const void *b)
{
    const struct fsp_vol *x = *(struct fsp_vol *const *)a, *y = *(struct fsp_vol *const *)b;
    return x->info.start < y->info.start ? -1 : x->info.start > y->info.start;
}

static int build_layout(struct scan *s, struct fsp_vol **vols, uint32_t n_vols)
{
    struct run_builder b = {.s = s};
    b.hashes = malloc((size_t)RUN_MAX_PIECES * FSP_SHA256_LEN);
    struct claim_cursor cc = {.xs = s->claims};
    if (!b.hashes || cursor_advance(&cc) < 0) {
        free(b.hashes);
        return stop_scan(s, fsp_fail(s->err, FSP_EK_IO, -EIO, "cannot read back the extents"));
    }
    qsort(vols, n_vols, sizeof *vols, cmp_vol_start);
    uint64_t pos = 0;
    int rc = 0;
    for (uint32_t i = 0; i < n_vols && !rc; i++) {
        struct fsp_vol *v = vols[i];
        if (!v->geometry_set)
            continue; /* covered as raw with the gaps */
        if (v->info.start > pos)
            rc = add_raw_range(&b, 0, pos, v->info.start - pos, true);
        if (!rc)
            rc = layout_filesystem(&b, v, &cc);
        pos = v->info.start + v->info.fs_length;
    }
    if (!rc && pos < s->image_size)
        rc = add_raw_range(&b, 0, pos, s->image_size - pos, true);
    if (!rc)
        rc = flush_run(&b);
    free(b.hashes);
    return rc;
}

/* ---- volumes and the scan --------------------------------------------- */

static uint8_t fs_kind_of(const char *fs_type)
{
    if (!strcmp(fs_type, "ext2") || !strcmp(fs_type, "ext3") || !strcmp(fs_type, "ext4"))
        return FSP_FS_EXT;
    if (!strcmp(fs_type, "ntfs"))
        return FSP_FS_NTFS;
    return FSP_FS_NONE;
}

static struct fsp_vol *vol_new(struct scan *s, const struct fsp_part *p)
{
    struct fsp_vol *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->scan = s;
    struct fsp_volume_info *i = &v->info;
    i->index = p->index;
    i->start = p->start;
    i->length = p->length;
    i->fs_kind = fs_kind_of(p->fs_type);
    i->block_size = FSP_PIECE_SIZE;
    snprintf(i->fs_type, sizeof i->fs_type, "%s", p->fs_type);
    snprintf(i->fs_label, sizeof i->fs_label, "%s", p->fs_label);
    snprintf(i->fs_uuid, sizeof i->fs_uuid, "%s", p->fs_uuid);
    snprintf(i->part_type, sizeof i->part_type, "%s", p->type);
    snprintf(i->part_name, sizeof i->part_name, "%s", p->name);
    snprintf(i->part_uuid, sizeof i->part_uuid, "%s", p->uuid);
    return v;
}

static void vol_free(struct fsp_vol *v)
{
    if (!v)
        return;
    links_free(v);
    free(v->allocated);
    free(v->in_use);
    free(v->metadata);
    free(v);
}

static const char *vol_name(const struct fsp_vol *v, char *buf, size_t len)
{
    if (v->info.index)
        snprintf(buf, len, "partition %u (%s)", v->info.index, v->info.fs_type);
    else
        snprintf(buf, len, "filesystem (%s)", v->info.fs_type);
    return buf;
}

/* A backend that gave up after the geometry cannot vouch for its bitmap: the
 * whole filesystem is covered as raw blocks, the entries it read are kept. */
static void backend_failed(struct fsp_vol *v, int rc)
{
    char name[64];
    const char *what = v->geometry_set ? "entries read before the failure are kept, and the "
                                         "whole filesystem is covered as raw blocks"
                                       : "it is covered as raw blocks";
    fsp_vol_warn(v, NULL, "%s: %s; %s", vol_name(v, name, sizeof name),
                 v->fail_msg[0] ? v->fail_msg : strerror(-rc), what);
    if (v->geometry_set)
        fsp_vol_mark_allocated(v, 0, v->block_count);
    else
        v->info.fs_kind = FSP_FS_NONE;
}

/* Runs the backend; a backend that gives up costs a warning, not the scan. */
static int scan_volume(struct scan *s, struct fsp_vol *v)
{
    int rc = 0;
    if (v->info.fs_kind == FSP_FS_EXT)
        rc = fsp_ext_scan(v);
    else if (v->info.fs_kind == FSP_FS_NTFS)
        rc = fsp_ntfs_scan(v);
    drain_pending(v);
    if (s->fatal)
        return s->fatal;
    if (rc < 0)
        backend_failed(v, rc);
    uint64_t rescued = merge_in_use(v);
    if (rescued) {
        char name[64];
        fsp_vol_warn(v, NULL, "%s: %llu blocks that its own structures use are marked free in "
                     "its bitmap; they are kept", vol_name(v, name, sizeof name),
                     (unsigned long long)rescued);
    }
    if (!v->geometry_set)
        v->scan->progress_total += v->info.length;
    return s->fatal ? s->fatal : announce_volume(v);
}

static int cmp_claim(const void *a, const void *b)
{
    const struct claim *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->entry_seq < y->entry_seq ? -1 : x->entry_seq > y->entry_seq;
}

/* VMSYNC_HASH_THREADS=N forces N threads (1: hash in the scan thread, as
 * tests and comparisons want); else one per online CPU, capped. */
static unsigned hash_threads(void)
{
    const char *env = getenv("VMSYNC_HASH_THREADS");
    long n = env ? strtol(env, NULL, 10) : 0;
    if (n <= 0)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > HASH_THREADS_MAX ? HASH_THREADS_MAX : (unsigned)n;
}

/* Workers only where nothing needs the bytes after hashing: a sink that
 * stores objects gets them in order from the scan thread, as before. */
static void start_pool(struct scan *s)
{
    unsigned n = hash_threads();
    if (n > 1 && !s->sink->object && !(s->flags & FSP_SCAN_NO_DATA) &&
        fsp_pool_new(n, 8 * n, &s->pool) < 0)
        s->pool = NULL; /* hashing in this thread still works */
    s->workers_read = s->pool && fsp_source_reads_concurrently(s->src);
}

static int scan_init(struct scan *s, fsp_source *src, const struct fsp_scan_opts *opts,
                     const struct fsp_sink *sink, fsp_error *err)
{
    memset(s, 0, sizeof *s);
    s->src = src;
    s->sink = sink;
    s->err = err;
    s->flags = opts ? opts->flags : 0;
    s->image_size = fsp_source_size(src);
    s->buf = malloc(READ_BUF);
    if (!s->buf || fsp_digest_new(s->image_size, &s->digest) < 0 ||
        fsp_xsort_new(sizeof(struct claim), CLAIM_SORT_BUDGET, cmp_claim, &s->claims) < 0)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    start_pool(s);
    return 0;
}

/* Without a layout pass the allocated bytes come straight from the bitmaps. */
static uint64_t bitmap_bytes(struct fsp_vol **vols, uint32_t n_vols)
{
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < n_vols; i++) {
        const struct fsp_vol *v = vols[i];
        for (uint64_t b = 0; v->geometry_set && b < v->block_count;) {
            uint64_t next = same_state_end(v, b, v->block_count);
            if (block_allocated(v, b))
                bytes += (next - b) * v->info.block_size;
            b = next;
        }
    }
    return bytes;
}

static int scan_finish(struct scan *s, struct fsp_vol **vols, uint32_t n_vols)
{
    if (s->flags & FSP_SCAN_NO_DATA) {
        s->sum.allocated_bytes = bitmap_bytes(vols, n_vols);
    } else {
        int rc = build_layout(s, vols, n_vols);
        if (rc)
            return rc;
        fsp_digest_final(s->digest, s->sum.digest);
    }
    return s->sink->done ? sink_result(s, s->sink->done(s->sink->ctx, &s->sum)) : 0;
}

/* One bare volume over the whole image, of the kind the caller names. */
static int forced_volume(struct scan *s, uint8_t kind, struct fsp_part **parts, uint32_t *n)
{
    if (kind != FSP_FS_EXT && kind != FSP_FS_NTFS)
        return fsp_fail(s->err, FSP_EK_USAGE, -EINVAL, "unknown filesystem kind %u", kind);
    *parts = calloc(1, sizeof **parts);
    if (!*parts)
        return fsp_fail(s->err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    (*parts)->length = s->image_size;
    snprintf((*parts)->fs_type, sizeof (*parts)->fs_type, "%s", kind == FSP_FS_EXT ? "ext4" : "ntfs");
    *n = 1;
    return 0;
}

int fsp_scan(fsp_source *src, const struct fsp_scan_opts *opts, const struct fsp_sink *sink,
             fsp_error *err)
{
    struct scan s;
    struct fsp_part *parts = NULL;
    uint32_t n_parts = 0;
    struct fsp_vol **vols = NULL;
    char table[8] = "none";
    int rc = scan_init(&s, src, opts, sink, err);
    if (!rc && opts && opts->force_fs)
        rc = forced_volume(&s, opts->force_fs, &parts, &n_parts);
    else if (!rc)
        rc = fsp_partitions(src, table, &parts, &n_parts, err);
    if (!rc && !n_parts && !(opts && opts->force_fs))
        rc = fsp_fail(err, FSP_EK_FORMAT, -EINVAL,
                      "%s: not a disk image: no partition table and no filesystem found",
                      fsp_source_path(src));
    if (!rc && !(vols = calloc(n_parts ? n_parts : 1, sizeof *vols)))
        rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    if (!rc) {
        struct fsp_image_info info = {.size = s.image_size, .format = fsp_source_format(src),
                                      .table = table, .n_volumes = n_parts};
        rc = sink->image ? sink_result(&s, sink->image(sink->ctx, &info)) : 0;
    }
    uint32_t n_vols = 0;
    for (uint32_t i = 0; !rc && i < n_parts; i++) {
        if (!(vols[n_vols] = vol_new(&s, &parts[i])))
            rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
        else
            rc = scan_volume(&s, vols[n_vols++]);
    }
    if (!rc)
        rc = scan_finish(&s, vols, n_vols);
    for (uint32_t i = 0; i < n_vols; i++)
        vol_free(vols[i]);
    free(vols);
    free(parts);
    fsp_pool_free(s.pool);
    fsp_xsort_free(s.claims);
    fsp_digest_free(s.digest);
    free(s.buf);
    return rc;
}
