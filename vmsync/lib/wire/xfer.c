/* The transfer pipeline (see xfer.h).
 *
 * Segments are cut from the list up front.  Worker threads build them (read,
 * compress, or take them from the cache) into a ring of QUEUE slots; the
 * calling thread sends them in order.  The level follows the bottleneck: a
 * worker that finds the ring full has outrun the link, so the next segments
 * get a higher level; a sender that finds its next segment unready is waiting
 * on the CPU, so they get a lower one.  At the store's own level or below,
 * the agent sends stored frames as they are and compresses nothing. */
#include "wire/xfer.h"

#include "base/cancel.h"
#include "base/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#define QUEUE 4
#define START_LEVEL 6
#define STALL_MIN 0.010 /* seconds of waiting that count as a signal */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct seg {
    size_t first, n;
    uint64_t raw;
};

enum { SLOT_FREE, SLOT_BUSY, SLOT_READY };

struct slot {
    int state;
    struct vms_wbuf msg;
    bool cached, stored;
    int level;
};

struct pipeline {
    const struct vms_xfer_source *src;
    const struct vms_xfer_opts *o;
    struct seg *segs;
    size_t n_segs, next_build, next_send;
    uint64_t raw_total;
    struct slot slots[QUEUE];
    pthread_mutex_t mu, read_mu;
    pthread_cond_t cv;
    int level, level_lo, level_hi;
    bool stop;
    int rc;
    fsp_error err;
};

/* ---- cutting ---------------------------------------------------------------- */

static int cut_segments(struct pipeline *p, fsp_error *err)
{
    const struct vms_xfer_source *s = p->src;
    p->segs = calloc(s->n ? s->n : 1, sizeof *p->segs);
    if (!p->segs)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    for (size_t i = 0; i < s->n; i++) {
        struct seg *g = p->n_segs ? &p->segs[p->n_segs - 1] : NULL;
        if (!g || g->raw >= VMS_SEG_TARGET || g->n >= VMS_SEG_OBJECTS ||
            g->raw + s->lens[i] > VMS_SEG_RAW_MAX) {
            g = &p->segs[p->n_segs++];
            g->first = i;
        }
        g->n++;
        g->raw += s->lens[i];
        p->raw_total += s->lens[i];
    }
    return 0;
}

/* Whether segment G at LEVEL is compressed with the segment before it as its
 * prefix: on a narrow link, for a receiver that decodes it. */
static bool chained_segment(const struct pipeline *p, const struct seg *g, int level)
{
    bool stored = p->src->read_stored && level <= VMS_STORE_LEVEL;
    return p->o->chain && g != p->segs && level >= VMS_CHAIN_LEVEL && !stored;
}

/* The objects G's compressed bytes depend on: its own, and a chained
 * segment's prefix after a marker (which no list of hashes alone can end
 * with: its length is no multiple of a hash's). */
static void put_key_objects(struct vms_wbuf *b, const struct pipeline *p, const struct seg *g,
                            int level)
{
    vms_put_raw(b, p->src->hashes[g->first], g->n * FSP_SHA256_LEN);
    if (!chained_segment(p, g, level))
        return;
    vms_put_raw(b, "CHAIN", 5);
    vms_put_varint(b, g[-1].n);
    vms_put_raw(b, p->src->hashes[g[-1].first], g[-1].n * FSP_SHA256_LEN);
}

/* ---- the segment cache ------------------------------------------------------------ */

#define CACHE_MAGIC "VMSSEG1\n"

/* False when out of memory: a key of a cut-short buffer could name another segment. */
static bool cache_key(const struct pipeline *p, const struct seg *g, int level, char hex[65])
{
    uint8_t key[FSP_SHA256_LEN];
    struct vms_wbuf b = {0};
    vms_put_raw(&b, CACHE_MAGIC, 8);
    vms_put_varint(&b, (uint64_t)level);
    put_key_objects(&b, p, g, level);
    bool ok = !b.failed && vms_sha256(b.p, b.len, key) == 0;
    vms_wbuf_free(&b);
    fsp_hex(key, FSP_SHA256_LEN, hex);
    return ok;
}

/* Loads a cached segment into MSG; false when absent or damaged. */
static bool cache_load(const char *path, struct vms_wbuf *msg)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    uint8_t head[8 + FSP_SHA256_LEN], sum[FSP_SHA256_LEN];
    bool ok = fstat(fd, &st) == 0 && st.st_size > (off_t)sizeof head &&
              st.st_size < (off_t)(sizeof head + VMS_MSG_MAX);
    size_t body = ok ? (size_t)st.st_size - sizeof head : 0;
    uint8_t *tmp = ok ? malloc(body) : NULL;
    ok = tmp && vms_pread_all(fd, head, sizeof head, 0) == 0 && !memcmp(head, CACHE_MAGIC, 8) &&
         vms_pread_all(fd, tmp, body, sizeof head) == 0 && vms_sha256(tmp, body, sum) == 0 &&
         !memcmp(sum, head + 8, FSP_SHA256_LEN);
    msg->len = 0;
    if (ok) {
        vms_put_raw(msg, tmp, body);
        futimens(fd, NULL); /* recently used: the agent evicts the oldest first */
    }
    free(tmp);
    close(fd);
    return ok;
}

static void cache_store(const char *path, const struct vms_wbuf *msg)
{
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    int fd = msg->failed ? -1 : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    uint8_t head[8 + FSP_SHA256_LEN];
    memcpy(head, CACHE_MAGIC, 8);
    vms_sha256(msg->p, msg->len, head + 8);
    bool ok = vms_write_all(fd, head, sizeof head) == 0 && vms_write_all(fd, msg->p, msg->len) == 0;
    close(fd);
    if (!ok || rename(tmp, path) < 0)
        unlink(tmp); /* a cache: failing to fill it only costs time later */
}

/* ---- building ------------------------------------------------------------------------ */

struct worker {
    struct pipeline *p;
    ZSTD_CCtx *zc;
    uint8_t *raw, *out;
    size_t raw_cap, out_cap;
};

static int grow(uint8_t **buf, size_t *cap, size_t need, fsp_error *err)
{
    if (need <= *cap)
        return 0;
    uint8_t *b = realloc(*buf, need);
    if (!b)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    *buf = b;
    *cap = need;
    return 0;
}

/* Reads N objects from FIRST, BYTES in all, into w->raw. */
static int read_raw(struct worker *w, size_t first, size_t n, uint64_t bytes, fsp_error *err)
{
    const struct vms_xfer_source *s = w->p->src;
    int rc = grow(&w->raw, &w->raw_cap, bytes ? bytes : 1, err);
    uint64_t off = 0;
    pthread_mutex_lock(&w->p->read_mu);
    for (size_t i = 0; !rc && i < n; i++) {
        rc = s->read(s->ctx, first + i, w->raw + off, err);
        off += s->lens[first + i];
    }
    pthread_mutex_unlock(&w->p->read_mu);
    return rc;
}

/* A window that holds a chained segment and its prefix, within what a
 * receiver allows (VMS_CHAIN_WINDOW_LOG); never below the level's own. */
static int chain_window_log(uint64_t bytes)
{
    int log = 23;
    while (log < VMS_CHAIN_WINDOW_LOG && (1ull << log) < bytes)
        log++;
    return log;
}

static int build_solid(struct worker *w, const struct seg *g, int level, struct vms_wbuf *msg,
                       fsp_error *err)
{
    const struct seg *from = chained_segment(w->p, g, level) ? g - 1 : g;
    uint64_t prefix = from == g ? 0 : from->raw;
    int rc = read_raw(w, from->first, g->first + g->n - from->first, prefix + g->raw, err);
    size_t bound = ZSTD_compressBound(g->raw);
    if (!rc)
        rc = grow(&w->out, &w->out_cap, bound, err);
    if (rc)
        return rc;
    ZSTD_CCtx_reset(w->zc, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(w->zc, ZSTD_c_checksumFlag, 0);
    if (prefix) {
        ZSTD_CCtx_setParameter(w->zc, ZSTD_c_windowLog, chain_window_log(prefix + g->raw));
        ZSTD_CCtx_refPrefix(w->zc, w->raw, prefix);
    }
    size_t z = ZSTD_compress2(w->zc, w->out, bound, w->raw + prefix, g->raw);
    if (ZSTD_isError(z))
        return fsp_fail(err, FSP_EK_INTERNAL, -EIO, "zstd: %s", ZSTD_getErrorName(z));
    vms_put_varint(msg, prefix ? VMS_SEG_CHAINED : VMS_SEG_SOLID);
    vms_put_varint(msg, (uint64_t)level);
    vms_put_varint(msg, g->n);
    for (size_t i = 0; i < g->n; i++)
        vms_put_varint(msg, w->p->src->lens[g->first + i]);
    vms_put_varint(msg, z);
    vms_put_raw(msg, w->out, z);
    return 0;
}

struct stored_build {
    struct vms_wbuf *head, *bodies;
};

static int on_stored(void *ctx, size_t index, uint8_t codec, const uint8_t *body, size_t stored_len,
                     size_t len)
{
    (void)index;
    struct stored_build *b = ctx;
    vms_put_varint(b->head, len);
    vms_put_varint(b->head, stored_len);
    vms_put_u8(b->head, codec);
    vms_put_raw(b->bodies, body, stored_len);
    return 0;
}

static int build_stored(struct worker *w, const struct seg *g, struct vms_wbuf *msg, fsp_error *err)
{
    const struct vms_xfer_source *s = w->p->src;
    struct vms_wbuf bodies = {0};
    struct stored_build b = {msg, &bodies};
    vms_put_varint(msg, VMS_SEG_STORED);
    vms_put_varint(msg, VMS_STORE_LEVEL);
    vms_put_varint(msg, g->n);
    int rc = 0;
    pthread_mutex_lock(&w->p->read_mu);
    for (size_t i = 0; !rc && i < g->n; i++)
        rc = s->read_stored(s->ctx, g->first + i, on_stored, &b, err);
    pthread_mutex_unlock(&w->p->read_mu);
    if (!rc)
        vms_put_raw(msg, bodies.p, bodies.len);
    vms_wbuf_free(&bodies);
    return rc;
}

/* Builds segment G at LEVEL into SLOT, through the cache when there is one.
 * Two agents wanting the same segment take turns on its lock, so the second
 * finds what the first compressed. */
static int build(struct worker *w, const struct seg *g, int level, struct slot *slot, fsp_error *err)
{
    struct pipeline *p = w->p;
    slot->msg.len = 0;
    slot->level = level;
    slot->stored = p->src->read_stored && level <= VMS_STORE_LEVEL;
    slot->cached = false;
    if (slot->stored)
        return build_stored(w, g, &slot->msg, err);
    char hex[65], path[PATH_MAX], lock[PATH_MAX + 8];
    if (!p->o->cache || !cache_key(p, g, level, hex))
        return build_solid(w, g, level, &slot->msg, err);
    snprintf(path, sizeof path, "%s/%s.seg", p->o->cache, hex);
    snprintf(lock, sizeof lock, "%s.lock", path);
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd >= 0)
        flock(lfd, LOCK_EX);
    int rc = 0;
    slot->cached = cache_load(path, &slot->msg);
    if (!slot->cached) {
        slot->msg.len = 0;
        rc = build_solid(w, g, level, &slot->msg, err);
        if (!rc)
            cache_store(path, &slot->msg);
    }
    if (lfd >= 0) {
        unlink(lock); /* holders of the old inode finish; newcomers see the segment */
        close(lfd);
    }
    return rc;
}

/* ---- the controller ------------------------------------------------------------------ */

static void level_up(struct pipeline *p)
{
    if (p->level < p->level_hi)
        p->level++;
}

static void level_down(struct pipeline *p, int steps)
{
    p->level = p->level - steps < p->level_lo ? p->level_lo : p->level - steps;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct pipeline *p = w->p;
    double built = 0; /* how long this worker's last segment took */
    pthread_mutex_lock(&p->mu);
    while (!p->stop && p->next_build < p->n_segs) {
        size_t s = p->next_build;
        double t0 = now();
        while (!p->stop && s - p->next_send >= QUEUE)
            pthread_cond_wait(&p->cv, &p->mu);
        double stalled = now() - t0;
        if (p->stop || s != p->next_build) {
            continue;
        }
        if (stalled > STALL_MIN && stalled > 2 * built)
            level_up(p); /* the link is the bottleneck: spend CPU to save bytes */
        p->next_build++;
        struct slot *slot = &p->slots[s % QUEUE];
        slot->state = SLOT_BUSY;
        int level = p->level;
        pthread_mutex_unlock(&p->mu);

        fsp_error err = {0};
        double t1 = now();
        int rc = build(w, &p->segs[s], level, slot, &err);
        built = slot->cached ? 0 : now() - t1;

        pthread_mutex_lock(&p->mu);
        if (rc && !p->rc) {
            p->rc = rc;
            p->err = err;
            p->stop = true;
        }
        slot->state = SLOT_READY;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- sending --------------------------------------------------------------------------- */

/* Sleeps as long as it takes to keep SENT bytes since START at or under LIMIT
 * bytes per second; -ECANCELED when CANCEL fires meanwhile. */
static int pace(uint64_t limit, double start, uint64_t sent, const vms_cancel *cancel)
{
    if (!limit)
        return 0;
    return vms_cancel_sleep(cancel, start + (double)sent / (double)limit - now());
}

static void report_segment(struct vms_xfer_report *rep, const struct slot *slot, const struct seg *g)
{
    if (!rep->segments) {
        rep->level_first = rep->level_min = rep->level_max = slot->level;
    }
    rep->segments++;
    rep->cached += slot->cached;
    rep->stored_segments += slot->stored;
    rep->chained += slot->msg.len && slot->msg.p[0] == VMS_SEG_CHAINED; /* the codec's varint */
    rep->raw_bytes += g->raw;
    rep->wire_bytes += slot->msg.len;
    rep->level_last = slot->level;
    rep->level_min = slot->level < rep->level_min ? slot->level : rep->level_min;
    rep->level_max = slot->level > rep->level_max ? slot->level : rep->level_max;
}

static int send_all(struct pipeline *p, struct vms_conn *c, struct vms_xfer_report *rep,
                    fsp_error *err)
{
    double start = now();
    uint64_t sent = 0;
    int rc = 0;
    pthread_mutex_lock(&p->mu);
    for (size_t s = 0; s < p->n_segs && !rc; s++) {
        struct slot *slot = &p->slots[s % QUEUE];
        double t0 = now();
        while (!p->rc && !(s < p->next_build && slot->state == SLOT_READY))
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->rc) {
            rc = p->rc;
            *err = p->err;
            break;
        }
        double starved = now() - t0;
        if (s > 0 && starved > STALL_MIN)
            level_down(p, starved > 0.25 ? 2 : 1); /* the CPU is the bottleneck */
        pthread_mutex_unlock(&p->mu);
        rc = vms_conn_send(c, VMS_M_SEGMENT, &slot->msg, err);
        sent += slot->msg.len;
        report_segment(rep, slot, &p->segs[s]);
        if (!rc && (pace(p->o->bwlimit, start, sent, p->o->cancel) ||
                    (p->o->progress && p->o->progress(p->o->progress_ctx, rep->raw_bytes, p->raw_total))))
            rc = vms_cancel_fail(err, "while sending");
        pthread_mutex_lock(&p->mu);
        slot->state = SLOT_FREE;
        p->next_send = s + 1;
        pthread_cond_broadcast(&p->cv);
    }
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int vms_xfer_send(const struct vms_xfer_source *src, const struct vms_xfer_opts *o,
                  struct vms_conn *c, struct vms_xfer_report *rep, fsp_error *err)
{
    struct pipeline p = {.src = src, .o = o};
    memset(rep, 0, sizeof *rep);
    p.level_lo = o->level ? o->level : 1;
    p.level_hi = o->level ? o->level : VMS_LEVEL_MAX;
    p.level = o->level ? o->level : START_LEVEL;
    int rc = cut_segments(&p, err);
    if (rc)
        return rc;
    pthread_mutex_init(&p.mu, NULL);
    pthread_mutex_init(&p.read_mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    int n_workers = o->workers > 0 ? o->workers : 2;
    struct worker w[8] = {0};
    pthread_t th[8];
    int started = 0;
    for (; started < n_workers && started < 8; started++) {
        w[started].p = &p;
        w[started].zc = ZSTD_createCCtx();
        if (!w[started].zc || pthread_create(&th[started], NULL, worker_main, &w[started])) {
            ZSTD_freeCCtx(w[started].zc);
            break;
        }
    }
    rc = started ? send_all(&p, c, rep, err)
                 : fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "cannot start compression threads");
    if (!started) {
        pthread_mutex_lock(&p.mu);
        p.stop = true;
        pthread_mutex_unlock(&p.mu);
    }
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        ZSTD_freeCCtx(w[i].zc);
        free(w[i].raw);
        free(w[i].out);
    }
    for (int i = 0; i < QUEUE; i++)
        vms_wbuf_free(&p.slots[i].msg);
    pthread_cond_destroy(&p.cv);
    pthread_mutex_destroy(&p.mu);
    pthread_mutex_destroy(&p.read_mu);
    free(p.segs);
    return rc;
}

/* ---- receiving --------------------------------------------------------------------------- */

static int deliver(struct vms_xfer_receiver *r, const uint8_t *data, size_t len, size_t wire,
                   fsp_error *err)
{
    uint8_t actual[FSP_SHA256_LEN];
    if (vms_sha256(data, len, actual))
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    if (memcmp(actual, r->hashes[r->next], FSP_SHA256_LEN) != 0) {
        char hex[2 * FSP_SHA256_LEN + 1];
        fsp_hex(r->hashes[r->next], FSP_SHA256_LEN, hex);
        return fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG,
                        "%s: object %s arrived damaged (its content does not match its hash)",
                        r->peer, hex);
    }
    r->raw_bytes += len;
    if (r->chain) { /* the next segment's prefix */
        if (grow(&r->seg, &r->seg_cap, r->seg_len + len, err))
            return -ENOMEM;
        memcpy(r->seg + r->seg_len, data, len);
        r->seg_len += len;
    }
    size_t i = r->next++;
    return r->cb(r->ctx, i, data, len, wire);
}

/* The segment just received becomes the prefix of the next. */
static void end_segment(struct vms_xfer_receiver *r)
{
    uint8_t *b = r->prev;
    size_t cap = r->prev_cap;
    r->prev = r->seg;
    r->prev_cap = r->seg_cap;
    r->prev_len = r->seg_len;
    r->seg = b;
    r->seg_cap = cap;
    r->seg_len = 0;
    r->segments++;
}

static int bad_segment(const struct vms_xfer_receiver *r, const char *why, fsp_error *err)
{
    return fsp_fail(err, FSP_EK_CORRUPT, -EPROTO, "%s: protocol error: a SEGMENT %s", r->peer, why);
}

/* One zstd frame of SRC into r->plain, exactly LEN bytes; with PREFIX_LEN
 * bytes of PREFIX as its dictionary (a chained segment's). */
static int decompress(struct vms_xfer_receiver *r, const uint8_t *src, size_t zlen, size_t len,
                      const uint8_t *prefix, size_t prefix_len, fsp_error *err)
{
    if (!r->zd && !(r->zd = ZSTD_createDCtx()))
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    if (grow(&r->plain, &r->plain_cap, len ? len : 1, err))
        return -ENOMEM;
    if (ZSTD_findFrameCompressedSize(src, zlen) != zlen)
        return bad_segment(r, "does not hold exactly one zstd frame", err);
    ZSTD_DCtx_reset(r->zd, ZSTD_reset_session_and_parameters);
    ZSTD_DCtx_setParameter(r->zd, ZSTD_d_windowLogMax, VMS_CHAIN_WINDOW_LOG);
    if (prefix && ZSTD_isError(ZSTD_DCtx_refPrefix(r->zd, prefix, prefix_len)))
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    size_t got = ZSTD_decompressDCtx(r->zd, r->plain, len, src, zlen);
    if (ZSTD_isError(got) || got != len)
        return bad_segment(r, "does not decompress to its announced size", err);
    return 0;
}

static int receive_solid(struct vms_xfer_receiver *r, struct vms_rbuf *b, size_t n, bool chained,
                         fsp_error *err)
{
    uint32_t lens[256];
    uint32_t *l = n <= 256 ? lens : malloc(n * sizeof *l);
    if (!l)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        l[i] = (uint32_t)vms_get_bounded(b, VMS_OBJECT_MAX);
        total += l[i];
    }
    size_t zlen = (size_t)vms_get_bounded(b, VMS_MSG_MAX);
    const uint8_t *z = vms_get_span(b, zlen);
    int rc = 0;
    if (!vms_get_done(b) || total > VMS_SEG_RAW_MAX)
        rc = bad_segment(r, "is malformed or too big", err);
    if (!rc)
        rc = decompress(r, z, zlen, (size_t)total, chained ? r->prev : NULL, r->prev_len, err);
    r->wire_bytes += zlen;
    uint64_t off = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        size_t wire = total ? (size_t)((uint64_t)zlen * l[i] / total) : 0;
        rc = deliver(r, r->plain + off, l[i], wire, err);
        off += l[i];
    }
    if (l != lens)
        free(l);
    return rc;
}

struct stored_item {
    uint32_t len, stored;
    uint8_t codec;
};

static int receive_stored(struct vms_xfer_receiver *r, struct vms_rbuf *b, size_t n, fsp_error *err)
{
    struct stored_item *items = calloc(n, sizeof *items);
    if (!items)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    uint64_t total = 0, bodies = 0;
    for (size_t i = 0; i < n; i++) {
        items[i].len = (uint32_t)vms_get_bounded(b, VMS_OBJECT_MAX);
        items[i].stored = (uint32_t)vms_get_bounded(b, VMS_MSG_MAX);
        items[i].codec = vms_get_u8(b);
        total += items[i].len;
        bodies += items[i].stored;
        if (items[i].codec > VMS_CODEC_ZSTD ||
            (items[i].codec == VMS_CODEC_RAW && items[i].stored != items[i].len))
            b->bad = true;
    }
    int rc = 0;
    if (b->bad || total > VMS_SEG_RAW_MAX || bodies != (uint64_t)(b->end - b->p))
        rc = bad_segment(r, "is malformed or too big", err);
    for (size_t i = 0; !rc && i < n; i++) {
        const uint8_t *body = vms_get_span(b, items[i].stored);
        r->wire_bytes += items[i].stored;
        if (items[i].codec == VMS_CODEC_RAW) {
            rc = deliver(r, body, items[i].len, items[i].stored, err);
        } else {
            rc = decompress(r, body, items[i].stored, items[i].len, NULL, 0, err);
            if (!rc)
                rc = deliver(r, r->plain, items[i].len, items[i].stored, err);
        }
    }
    free(items);
    return rc;
}

int vms_xfer_receive(struct vms_xfer_receiver *r, struct vms_rbuf *body, fsp_error *err)
{
    uint64_t codec = vms_get_varint(body);
    vms_get_bounded(body, VMS_LEVEL_MAX + 3); /* level: statistics only */
    size_t n = (size_t)vms_get_bounded(body, VMS_SEG_OBJECTS);
    if (body->bad || n == 0 || n > r->n - r->next)
        return bad_segment(r, "has a bad header or more objects than were asked for", err);
    bool chained = r->chain && codec == VMS_SEG_CHAINED;
    r->seg_len = 0; /* what a refused segment delivered is no prefix */
    if (chained && !r->segments)
        return bad_segment(r, "refers to a segment before the first", err);
    int rc;
    if (codec == VMS_SEG_SOLID || chained)
        rc = receive_solid(r, body, n, chained, err);
    else if (codec == VMS_SEG_STORED)
        rc = receive_stored(r, body, n, err);
    else
        return bad_segment(r, "has an unknown codec", err);
    r->chained += chained && !rc;
    if (!rc)
        end_segment(r);
    return rc;
}

void vms_xfer_receiver_free(struct vms_xfer_receiver *r)
{
    ZSTD_freeDCtx(r->zd);
    free(r->plain);
    free(r->prev);
    free(r->seg);
    r->zd = NULL;
    r->plain = r->prev = r->seg = NULL;
    r->plain_cap = r->prev_cap = r->seg_cap = r->prev_len = r->seg_len = 0;
}
