/* A scan on a thread of its own, handing its objects to the calling thread.
 *
 * A check-in over a narrow link used to scan the whole image (the objects
 * going to a spool) before the first of them went out: under load that scan
 * took as long as a minute of the link.  Here the scan reads on while the
 * calling thread sends what it already found.  Only the calling thread
 * talks to the repository or the client's callbacks, as the public header
 * promises; the scan's thread reads the image, hashes, writes the manifest,
 * and queues objects, warnings and its latest progress figure. */
#include "engine/engine.h"
#include "manifest/written.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PIPE_BYTES (32u << 20) /* handed over, not yet taken: the scan waits beyond */

struct item {
    struct item *next;
    bool warning;
    uint8_t hash[FSP_SHA256_LEN];
    uint32_t volume;
    char *path, *msg; /* a warning's (path may be NULL) */
    size_t len;
    uint8_t data[];   /* an object's */
};

struct pipe {
    struct vms_ctx *c;
    const struct vms_pipe_sink *sink;
    const char *image, *manifest;
    uint32_t flags;
    pthread_mutex_t mu;
    pthread_cond_t changed; /* for the calling thread: something to take */
    pthread_cond_t room;    /* for the scan's thread: the queue shrank, or stop */
    struct item *head, **tail;
    size_t bytes;
    bool progressed, idled, ended, stop;
    uint64_t done, total;
    int scan_rc;
    fsp_error scan_err;
};

/* ---- the scan's thread -------------------------------------------------------- */

static int push(struct pipe *p, struct item *it)
{
    pthread_mutex_lock(&p->mu);
    while (!p->stop && p->head && p->bytes + it->len > PIPE_BYTES)
        pthread_cond_wait(&p->room, &p->mu);
    bool stop = p->stop;
    if (!stop) {
        *p->tail = it;
        p->tail = &it->next;
        p->bytes += it->len;
        pthread_cond_signal(&p->changed);
    }
    pthread_mutex_unlock(&p->mu);
    if (stop)
        free(it);
    return stop ? -ECANCELED : 0;
}

static int p_object(void *ctx, const uint8_t hash[FSP_SHA256_LEN], const void *data, size_t len)
{
    struct pipe *p = ctx;
    if (!p->sink->keep(p->sink->ctx, hash))
        return 0;
    struct item *it = malloc(sizeof *it + len);
    if (!it)
        return -ENOMEM;
    *it = (struct item){.len = len};
    memcpy(it->hash, hash, FSP_SHA256_LEN);
    memcpy(it->data, data, len);
    return push(p, it);
}

static int p_warning(void *ctx, uint32_t volume, const char *path, const char *msg)
{
    struct item *it = calloc(1, sizeof *it);
    if (!it || !(it->msg = strdup(msg)) || (path && !(it->path = strdup(path)))) {
        free(it ? it->msg : NULL);
        free(it);
        return -ENOMEM;
    }
    it->warning = true;
    it->volume = volume;
    it->len = strlen(msg) + (path ? strlen(path) : 0); /* counts against PIPE_BYTES too */
    return push(ctx, it);
}

/* Non-zero (stop) once the calling thread gave up or the user cancelled. */
static int p_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    (void)phase;
    struct pipe *p = ctx;
    pthread_mutex_lock(&p->mu);
    p->progressed = true;
    p->done = done;
    p->total = total;
    bool stop = p->stop;
    pthread_cond_signal(&p->changed);
    pthread_mutex_unlock(&p->mu);
    return stop || vms_cancel_fired(p->c->client->cancel);
}

static int p_volume(void *ctx, const struct fsp_volume_info *v)
{
    const struct vms_pipe_sink *s = ((struct pipe *)ctx)->sink;
    return s->volume(s->ctx, v);
}

static bool p_reuse(void *ctx, const struct fsp_entry *e, uint32_t idx, struct fsp_stream *st)
{
    const struct vms_pipe_sink *s = ((struct pipe *)ctx)->sink;
    return s->reuse_stream(s->ctx, e, idx, st);
}

static void *scan_thread(void *ctx)
{
    struct pipe *p = ctx;
    const struct vms_pipe_sink *s = p->sink;
    struct fsp_sink hooks = {.volume = s->volume ? p_volume : NULL, .object = p_object,
                             .reuse_stream = s->reuse_stream ? p_reuse : NULL, .ctx = p};
    struct vms_manifest_create_opts o = {.scan_flags = p->flags, .progress = p_progress,
                                         .warning = p_warning, .hooks = &hooks, .ctx = p};
    fsp_error err = {0};
    int rc = vms_manifest_create(p->image, p->manifest, &o, &err);
    pthread_mutex_lock(&p->mu);
    p->ended = true;
    p->scan_rc = rc;
    p->scan_err = err;
    pthread_cond_signal(&p->changed);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- the calling thread ------------------------------------------------------- */

enum took { TOOK_ITEM, TOOK_PROGRESS, TOOK_IDLE, TOOK_END };

/* The next thing to do: an item, a progress figure, a moment of idleness
 * (once each time the queue runs dry), or the scan's end. */
static enum took take(struct pipe *p, struct item **it, uint64_t *done, uint64_t *total)
{
    enum took t = TOOK_IDLE;
    pthread_mutex_lock(&p->mu);
    while (!p->head && !p->progressed && !p->ended && p->idled)
        pthread_cond_wait(&p->changed, &p->mu);
    if (p->progressed) {
        t = TOOK_PROGRESS;
        p->progressed = false;
        *done = p->done;
        *total = p->total;
    } else if (p->head) {
        t = TOOK_ITEM;
        *it = p->head;
        p->head = (*it)->next;
        p->tail = p->head ? p->tail : &p->head;
        p->bytes -= (*it)->len;
        p->idled = false;
        pthread_cond_signal(&p->room);
    } else if (p->ended) {
        t = TOOK_END;
    }
    p->idled = p->idled || t == TOOK_IDLE;
    pthread_mutex_unlock(&p->mu);
    return t;
}

static void stop_scan(struct pipe *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->room);
    pthread_mutex_unlock(&p->mu);
}

static int deliver(struct pipe *p, enum took t, const struct item *it, uint64_t done, uint64_t total)
{
    const struct vms_pipe_sink *s = p->sink;
    if (t == TOOK_PROGRESS)
        return vms_ctx_scan_progress(p->c, done, total);
    if (t == TOOK_IDLE)
        return s->idle ? s->idle(s->ctx) : 0;
    if (it->warning) {
        vms_ctx_warn_at(p->c, it->volume, it->path, it->msg);
        return 0;
    }
    return s->object(s->ctx, it->hash, it->data, it->len);
}

static void free_item(struct item *it)
{
    if (it && it->warning) {
        free(it->path);
        free(it->msg);
    }
    free(it);
}

/* Takes and delivers until the scan ends; after a failure, only drains.
 * Returns the first failure of a delivery. */
static int drive(struct pipe *p)
{
    int rc = 0;
    for (;;) {
        struct item *it = NULL;
        uint64_t done = 0, total = 0;
        enum took t = take(p, &it, &done, &total);
        if (t == TOOK_END)
            return rc;
        if (!rc && (rc = deliver(p, t, it, done, total)) != 0)
            stop_scan(p);
        free_item(it);
    }
}

/* The scan's own failure first (a cancel it saw is one); else the delivery's,
 * whose message its sink holds; a stop the scan did not live to see is a
 * cancel. */
static int outcome(struct pipe *p, int delivered, fsp_error *err)
{
    if (p->scan_rc) {
        *err = p->scan_err;
        return p->scan_rc;
    }
    if (delivered > 0)
        return fsp_fail(err, FSP_EK_CANCELLED, -ECANCELED, "cancelled during %s",
                        vms_phase_name(p->c->scan.phase));
    return delivered;
}

int vms_ctx_scan_piped(struct vms_ctx *c, const char *image, const char *manifest, uint32_t flags,
                       const struct vms_pipe_sink *sink, fsp_error *err)
{
    struct pipe p = {.c = c, .sink = sink, .image = image, .manifest = manifest, .flags = flags,
                     .mu = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER,
                     .room = PTHREAD_COND_INITIALIZER};
    p.tail = &p.head;
    pthread_t t;
    int rc = vms_ctx_scan_started(c, image, err);
    if (!rc && (rc = -pthread_create(&t, NULL, scan_thread, &p)) != 0)
        return fsp_fail(err, FSP_EK_NOMEM, rc, "cannot start a thread for the scan: %s", strerror(-rc));
    if (!rc) {
        int delivered = drive(&p);
        pthread_join(t, NULL);
        rc = outcome(&p, delivered, err);
    }
    return vms_ctx_scan_finished(c, rc, err);
}
