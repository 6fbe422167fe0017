/* The transfer pipeline (see xfer.h).
 *
 * Segments are cut from the list up front.  Worker threads build them (read,
 * compress, or take them from the cache) into a ring of QUEUE slots; the
 * calling thread sends them in order.  The level follows the bottleneck: the
 * sender measures how fast the link takes bytes, the workers how fast they
 * compress, and each segment gets the highest level of a short ladder whose
 * compression still outpaces the link.  At the store's own level or below,
 * the agent sends stored frames as they are and compresses nothing, so a link
 * faster than compression (loopback, a LAN) stays there. */
#include "wire/xfer.h"

#include "base/cancel.h"
#include "base/fileio.h"
#include "wire/linkmeter.h"

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
    bool cached, stored, compressed;
    int level;  /* the level of the bytes in MSG */
    double cpu; /* the CPU seconds compressing them took */
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
    int rungs[8], n_rungs, rung; /* the levels to choose from, the current one */
    int n_workers;
    struct vms_link_meter link; /* how fast the link takes wire bytes */
    double ratio;        /* wire bytes per raw byte of the recent segments */
    double speed_factor; /* compression here against LEVEL_SPEED's reference machine */
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

/* Whether G may be CHAINED: a segment after the first, for a receiver that
 * decodes CHAINED ones.  Such a segment is cached under its prefix too, so
 * that one cache file serves such receivers at every level, chained or not. */
static bool chainable(const struct pipeline *p, const struct seg *g)
{
    return p->o->chain && g != p->segs;
}

/* Whether segment G at LEVEL is compressed with the segment before it as its
 * prefix: on a narrow link, for a receiver that decodes it. */
static bool chained_segment(const struct pipeline *p, const struct seg *g, int level)
{
    bool stored = p->src->read_stored && level <= VMS_STORE_LEVEL;
    return chainable(p, g) && level >= VMS_CHAIN_LEVEL && !stored;
}

/* The objects G's compressed bytes may depend on: its own, and a chainable
 * segment's prefix after a marker (which no list of hashes alone can end
 * with: its length is no multiple of a hash's). */
static void put_key_objects(struct vms_wbuf *b, const struct pipeline *p, const struct seg *g)
{
    vms_put_raw(b, p->src->hashes[g->first], g->n * FSP_SHA256_LEN);
    if (!chainable(p, g))
        return;
    vms_put_raw(b, "CHAIN", 5);
    vms_put_varint(b, g[-1].n);
    vms_put_raw(b, p->src->hashes[g[-1].first], g[-1].n * FSP_SHA256_LEN);
}

/* ---- the segment cache ------------------------------------------------------------ */

/* A cache file holds one SOLID or CHAINED segment, whatever its level:
 *   8 bytes CACHE_MAGIC, u8 level, the body's SHA-256, the body (the SEGMENT
 *   message, whose own header names the same level).
 * Its name is the hash of the segment's objects alone (and, for a receiver
 * of CHAINED segments, its prefix's: put_key_objects), so one lookup finds
 * the best level cached, and a segment compressed at L serves every request
 * whose floor is L or less, whatever level its link would pick.  Files of
 * the first format (named by objects and level) are never looked up again;
 * the agent's LRU trim removes them. */
#define CACHE_MAGIC "VMSSEG2\n"
#define CACHE_HEAD (8 + 1 + FSP_SHA256_LEN)

/* False when out of memory: a key of a cut-short buffer could name another segment. */
static bool cache_key(const struct pipeline *p, const struct seg *g, char hex[65])
{
    uint8_t key[FSP_SHA256_LEN];
    struct vms_wbuf b = {0};
    vms_put_raw(&b, CACHE_MAGIC, 8);
    put_key_objects(&b, p, g);
    bool ok = !b.failed && vms_sha256(b.p, b.len, key) == 0;
    vms_wbuf_free(&b);
    fsp_hex(key, FSP_SHA256_LEN, hex);
    return ok;
}

/* The body must be the SOLID or CHAINED segment its header says (the key
 * tells which): codec and level are one-byte varints at its start. */
static bool cache_body_ok(const uint8_t *head, const uint8_t *body, size_t len)
{
    uint8_t sum[FSP_SHA256_LEN];
    return len > 2 && (body[0] == VMS_SEG_SOLID || body[0] == VMS_SEG_CHAINED) && body[1] == head[8] &&
           vms_sha256(body, len, sum) == 0 && !memcmp(sum, head + 9, FSP_SHA256_LEN);
}

/* Loads the segment cached at PATH into MSG when its level is at least
 * MIN_LEVEL, and sets *LEVEL; false when absent, lower or damaged. */
static bool cache_load(const char *path, int min_level, struct vms_wbuf *msg, int *level)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    uint8_t head[CACHE_HEAD];
    bool ok = fstat(fd, &st) == 0 && st.st_size > (off_t)sizeof head &&
              st.st_size < (off_t)(sizeof head + VMS_MSG_MAX) &&
              vms_pread_all(fd, head, sizeof head, 0) == 0 && !memcmp(head, CACHE_MAGIC, 8) &&
              head[8] >= min_level && head[8] <= VMS_LEVEL_MAX;
    size_t body = ok ? (size_t)st.st_size - sizeof head : 0;
    uint8_t *tmp = ok ? malloc(body) : NULL;
    ok = tmp && vms_pread_all(fd, tmp, body, sizeof head) == 0 && cache_body_ok(head, tmp, body);
    msg->len = 0;
    if (ok) {
        vms_put_raw(msg, tmp, body);
        *level = head[8];
        futimens(fd, NULL); /* recently used: the agent evicts the oldest first */
    }
    free(tmp);
    close(fd);
    return ok;
}

/* Writes MSG, a SOLID or CHAINED segment at LEVEL, over whatever PATH held: the caller
 * found nothing there at its floor or above, which LEVEL is. */
static void cache_store(const char *path, int level, const struct vms_wbuf *msg)
{
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    int fd = msg->failed ? -1 : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    uint8_t head[CACHE_HEAD];
    memcpy(head, CACHE_MAGIC, 8);
    head[8] = (uint8_t)level;
    vms_sha256(msg->p, msg->len, head + 9);
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

/* From CHAIN_TAIL_LEVEL up, a chained segment's compressor takes only the last
 * CHAIN_TAIL bytes of its prefix: the receiver holds the whole prefix, and an
 * offset into its tail is the same offset.  Those levels' binary-tree search
 * indexes each byte of a prefix as it does the segment's, so the whole 4 MiB
 * costs 80 % more CPU than no prefix for 2.2 % fewer bytes, its last MiB
 * 17 % for 0.7 % (level 19, 4 MiB segments of a Debian tree, zstd 1.5.4;
 * level 17 alike).  Level 12's search is cheap: it keeps the whole prefix. */
#define CHAIN_TAIL_LEVEL 17
#define CHAIN_TAIL (1u << 20)

static uint64_t prefix_used(uint64_t prefix, int level)
{
    return level >= CHAIN_TAIL_LEVEL && prefix > CHAIN_TAIL ? CHAIN_TAIL : prefix;
}

/* Level 19 is zstd's level 19 with the search of its level 18: on a 4 MiB
 * segment of a Debian tree, 17 % fewer instructions for 0.09 % more bytes
 * (callgrind, zstd 1.5.4).  The other levels are zstd's own. */
static void set_level(ZSTD_CCtx *zc, int level)
{
    ZSTD_CCtx_setParameter(zc, ZSTD_c_compressionLevel, level);
    if (level < VMS_LEVEL_MAX)
        return;
    ZSTD_CCtx_setParameter(zc, ZSTD_c_chainLog, 23);
    ZSTD_CCtx_setParameter(zc, ZSTD_c_searchLog, 6);
    ZSTD_CCtx_setParameter(zc, ZSTD_c_targetLength, 64);
    ZSTD_CCtx_setParameter(zc, ZSTD_c_strategy, ZSTD_btultra);
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
    set_level(w->zc, level);
    ZSTD_CCtx_setParameter(w->zc, ZSTD_c_checksumFlag, 0);
    if (prefix) {
        uint64_t used = prefix_used(prefix, level);
        ZSTD_CCtx_setParameter(w->zc, ZSTD_c_windowLog, chain_window_log(used + g->raw));
        ZSTD_CCtx_refPrefix(w->zc, w->raw + (prefix - used), used);
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

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Compresses G at LEVEL into SLOT, counting the CPU it takes. */
static int compress_segment(struct worker *w, const struct seg *g, int level, struct slot *slot,
                            fsp_error *err)
{
    double t0 = thread_cpu();
    slot->msg.len = 0;
    int rc = build_solid(w, g, level, &slot->msg, err);
    slot->cpu = thread_cpu() - t0;
    slot->compressed = rc == 0;
    slot->level = level;
    return rc;
}

/* Builds segment G at LEVEL into SLOT, through the cache when there is one.
 * A cached segment at ACCEPT or above serves (ACCEPT <= LEVEL), whatever its
 * level, and the receiver decodes any.  Two agents wanting the same segment
 * take turns on its lock, so the second finds what the first compressed. */
static int build(struct worker *w, const struct seg *g, int level, int accept, struct slot *slot,
                 fsp_error *err)
{
    struct pipeline *p = w->p;
    slot->msg.len = 0;
    slot->level = level;
    slot->stored = p->src->read_stored && level <= VMS_STORE_LEVEL;
    slot->cached = slot->compressed = false;
    slot->cpu = 0;
    char hex[65], path[PATH_MAX], lock[PATH_MAX + 8];
    bool keyed = p->o->cache && cache_key(p, g, hex);
    if (keyed)
        snprintf(path, sizeof path, "%s/%s.seg", p->o->cache, hex);
    if (slot->stored) { /* pass-through costs nothing: no lock to wait on */
        slot->cached = keyed && cache_load(path, accept, &slot->msg, &slot->level);
        slot->stored = !slot->cached;
        if (slot->stored)
            slot->level = VMS_STORE_LEVEL;
        return slot->cached ? 0 : build_stored(w, g, &slot->msg, err);
    }
    if (!keyed)
        return compress_segment(w, g, level, slot, err);
    snprintf(lock, sizeof lock, "%s.lock", path);
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd >= 0)
        flock(lfd, LOCK_EX);
    int rc = 0;
    slot->cached = cache_load(path, accept, &slot->msg, &slot->level);
    if (!slot->cached) {
        rc = compress_segment(w, g, level, slot, err);
        if (!rc)
            cache_store(path, level, &slot->msg);
    }
    if (lfd >= 0) {
        unlink(lock); /* holders of the old inode finish; newcomers see the segment */
        close(lfd);
    }
    return rc;
}

/* ---- the controller ------------------------------------------------------------------ */

/* One worker's raw bytes per second at each zstd level on 4 MiB segments of a
 * Debian tree, measured on the reference machine; the controller scales them
 * by what it measures here.  The store's level is pass-through for an agent. */
static const double LEVEL_SPEED[VMS_LEVEL_MAX + 1] = {
    0, 330e6, 250e6, 190e6, 160e6, 110e6, 90e6, 70e6, 60e6, 52e6, 40e6,
    32e6, 23e6, 12e6, 9e6, 6e6, 4.5e6, 3.2e6, 2.35e6, 2.0e6};
#define PASS_THROUGH_SPEED 1e9

/* The levels adaptation moves between, above the floor.  Few and far apart,
 * so that clients of one version on similar links pick the same ones and
 * share cached segments.  On the reference tree 15 costs 4 times 12 for 0.5 %
 * fewer bytes; 17 saves 7 % and 19 11 %. */
static const int LADDER[] = {3, VMS_STORE_LEVEL, 12, 17, VMS_LEVEL_MAX};
_Static_assert(sizeof LADDER / sizeof *LADDER < 8, "the floor and the ladder fit a pipeline's rungs");

#define EWMA_KEEP 0.7   /* the weight of the past in each running estimate */
#define MARGIN_STAY 1.1 /* the CPU must outpace the link by this much to stay */
#define MARGIN_UP 1.5   /* and by this much to climb */

/* The ladder from FLOOR up: FLOOR itself, then the rungs above it. */
static void ladder_from(struct pipeline *p, int floor)
{
    p->rungs[p->n_rungs++] = floor;
    for (size_t i = 0; i < sizeof LADDER / sizeof *LADDER; i++)
        if (LADDER[i] > floor)
            p->rungs[p->n_rungs++] = LADDER[i];
}

static double ewma(double old, double sample)
{
    return old > 0 ? EWMA_KEEP * old + (1 - EWMA_KEEP) * sample : sample;
}

/* Wire bytes per second the workers produce at LEVEL, by the estimates. */
static double output_rate(const struct pipeline *p, int level)
{
    double speed = p->src->read_stored && level <= VMS_STORE_LEVEL
                       ? PASS_THROUGH_SPEED
                       : LEVEL_SPEED[level] * p->speed_factor;
    return p->n_workers * speed * p->ratio;
}

/* The link rate a climb to a higher rung must beat: the fastest recent
 * span, so that one slow spell of the receiver (a disk busy writing, a
 * loaded machine) does not buy compression that a fast link does not need. */
static double climb_rate(const struct pipeline *p) { return vms_link_meter_fastest(&p->link); }

/* The highest rung whose compression keeps ahead of the link (the floor
 * until the link has been measured), and in *ACCEPT the lowest level a cached
 * segment may have to serve instead: the floor.  A cached segment costs
 * nothing, compressing it again a few CPU seconds for a few per cent of its
 * bytes, and an agent serves many clients: so clients whose links differ, or
 * whose estimates wander, share one compression of each segment. */
static int choose_level(struct pipeline *p, int *accept)
{
    int r = 0;
    double link_rate = vms_link_meter_rate(&p->link);
    while (link_rate > 0 && r + 1 < p->n_rungs &&
           (r + 1 > p->rung ? output_rate(p, p->rungs[r + 1]) >= climb_rate(p) * MARGIN_UP
                            : output_rate(p, p->rungs[r + 1]) >= link_rate * MARGIN_STAY))
        r++;
    p->rung = r;
    *accept = p->rungs[0];
    return p->rungs[r];
}

/* A segment compressed at LEVEL took SECONDS: how fast this machine is. */
static void learn_speed(struct pipeline *p, const struct seg *g, int level, double seconds)
{
    if (seconds > 0 && g->raw >= VMS_SEG_TARGET / 4)
        p->speed_factor = ewma(p->speed_factor, (double)g->raw / seconds / LEVEL_SPEED[level]);
}

/* Segment G took SECONDS on the link, after the link had idled IDLE seconds
 * waiting for it (linkmeter.h says why neither alone is a measure: a link
 * that looked fast would send the controller down to pass-through, segments
 * that no cache keeps, and back). */
static void learn_link(struct pipeline *p, const struct seg *g, size_t wire, double seconds,
                       double idle)
{
    if (g->raw)
        p->ratio = ewma(p->ratio, (double)wire / (double)g->raw);
    vms_link_meter_add(&p->link, wire, seconds, idle);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct pipeline *p = w->p;
    pthread_mutex_lock(&p->mu);
    while (!p->stop && p->next_build < p->n_segs) {
        size_t s = p->next_build;
        while (!p->stop && s - p->next_send >= QUEUE)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop || s != p->next_build)
            continue;
        p->next_build++;
        struct slot *slot = &p->slots[s % QUEUE];
        slot->state = SLOT_BUSY;
        int accept, level = choose_level(p, &accept);
        pthread_mutex_unlock(&p->mu);

        fsp_error err = {0};
        double t1 = now();
        int rc = build(w, &p->segs[s], level, accept, slot, &err);
        double built = now() - t1;

        pthread_mutex_lock(&p->mu);
        if (slot->compressed)
            learn_speed(p, &p->segs[s], slot->level, built);
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
    rep->compressed += slot->compressed;
    rep->raw_compressed += slot->compressed ? g->raw : 0;
    rep->compress_cpu += slot->cpu;
    rep->at_level[slot->level]++;
    rep->raw_bytes += g->raw;
    rep->wire_bytes += slot->msg.len;
    rep->level_last = slot->level;
    rep->level_min = slot->level < rep->level_min ? slot->level : rep->level_min;
    rep->level_max = slot->level > rep->level_max ? slot->level : rep->level_max;
}

/* A segment under way: its share of raw bytes in proportion to what of its
 * message is written.  A cancel asked for meanwhile waits for the message's
 * end, so that the stream stays whole. */
struct segment_watch {
    struct pipeline *p;
    uint64_t raw_before, raw;
    size_t msg_len;
    bool cancelled;
};

static void segment_written(void *ctx, size_t n)
{
    struct segment_watch *w = ctx;
    uint64_t done = w->raw_before + (uint64_t)((double)w->raw * n / w->msg_len);
    const struct vms_xfer_opts *o = w->p->o;
    if (n < w->msg_len && o->progress(o->progress_ctx, done, w->p->raw_total))
        w->cancelled = true;
}

static int send_segment(struct pipeline *p, struct vms_conn *c, const struct slot *slot,
                        const struct seg *g, uint64_t raw_before, fsp_error *err)
{
    struct segment_watch w = {p, raw_before, g->raw, slot->msg.len, false};
    int rc = vms_conn_send_watched(c, VMS_M_SEGMENT, &slot->msg,
                                   p->o->progress ? segment_written : NULL, &w, err);
    if (!rc && w.cancelled)
        rc = vms_cancel_fail(err, "while sending");
    return rc;
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
        double wanted = now();
        while (!p->rc && !(s < p->next_build && slot->state == SLOT_READY))
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->rc) {
            rc = p->rc;
            *err = p->err;
            break;
        }
        double ready = now();
        pthread_mutex_unlock(&p->mu);
        rc = send_segment(p, c, slot, &p->segs[s], rep->raw_bytes, err);
        sent += slot->msg.len;
        report_segment(rep, slot, &p->segs[s]);
        if (!rc && (pace(p->o->bwlimit, start, sent, p->o->cancel) ||
                    (p->o->progress && p->o->progress(p->o->progress_ctx, rep->raw_bytes, p->raw_total))))
            rc = vms_cancel_fail(err, "while sending");
        double done = now();
        pthread_mutex_lock(&p->mu);
        learn_link(p, &p->segs[s], slot->msg.len, done - ready, s ? ready - wanted : 0);
        slot->state = SLOT_FREE;
        p->next_send = s + 1;
        pthread_cond_broadcast(&p->cv);
    }
    p->stop = true;
    rep->link_rate = vms_link_meter_rate(&p->link);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int vms_xfer_send(const struct vms_xfer_source *src, const struct vms_xfer_opts *o,
                  struct vms_conn *c, struct vms_xfer_report *rep, fsp_error *err)
{
    struct pipeline p = {.src = src, .o = o};
    memset(rep, 0, sizeof *rep);
    int floor = o->level > 0 ? o->level : LADDER[0];
    if (src->read_stored && floor < VMS_STORE_LEVEL)
        floor = VMS_STORE_LEVEL; /* the stored frames are at least as good, for free */
    ladder_from(&p, floor > VMS_LEVEL_MAX ? VMS_LEVEL_MAX : floor);
    p.speed_factor = 1;
    int rc = cut_segments(&p, err);
    if (rc)
        return rc;
    pthread_mutex_init(&p.mu, NULL);
    pthread_mutex_init(&p.read_mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    int n_workers = o->workers > 0 ? o->workers : 2;
    p.n_workers = n_workers < 8 ? n_workers : 8;
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
    uint64_t level = vms_get_bounded(body, VMS_LEVEL_MAX + 3); /* statistics only */
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
    if (!rc) {
        end_segment(r);
        r->at_level[level < VMS_LEVEL_MAX ? level : VMS_LEVEL_MAX]++;
    }
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
