/* Byte ranges over HTTP(S) with libcurl's multi interface: several requests
 * in flight on reused connections, each resumed from its last byte after a
 * dropped link, with a backoff between tries.  The server is hostile: every
 * body is bounded by what was asked for, and a status other than the one
 * expected ends the transfer, naming the URL. */
#include "base/keyset.h"
#include "repo/web/web.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WEB_IN_FLIGHT 4
#define WEB_TRIES 6          /* failures in a row without a byte of progress */
#define WEB_BACKOFF_FIRST 0.2 /* seconds, doubled each try */

struct vms_web_http {
    CURLM *multi;
    struct vms_repo_progress progress;
    struct vms_traffic *traffic;
    long timeout;
    const char *ca_file;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* curl_global_init is not thread-safe: the first handle of any thread starts it. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_start_error;
static void start_curl(void) { curl_start_error = curl_global_init(CURL_GLOBAL_DEFAULT); }

int vms_web_http_new(const struct vms_remote_opts *remote, const struct vms_repo_progress *progress,
                     struct vms_traffic *traffic, vms_web_http **out, fsp_error *err)
{
    pthread_once(&curl_once, start_curl);
    if (curl_start_error)
        return fsp_fail(err, FSP_EK_IO, -EIO, "libcurl cannot start");
    vms_web_http *h = calloc(1, sizeof *h);
    if (!h || !(h->multi = curl_multi_init())) {
        free(h);
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    }
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)WEB_IN_FLIGHT);
    h->progress = *progress;
    h->traffic = traffic;
    h->timeout = remote && remote->timeout > 0 ? remote->timeout : 60;
    h->ca_file = getenv("CURL_CA_BUNDLE");
    *out = h;
    return 0;
}

void vms_web_http_free(vms_web_http *h)
{
    if (!h)
        return;
    curl_multi_cleanup(h->multi);
    free(h);
}

static long expected_status(const struct vms_web_range *r) { return r->len ? 206 : 200; }

/* A body's bytes; refusing a status not expected (an error page is no
 * body) and more bytes than asked for. */
static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
    struct vms_web_range *r = ctx;
    size_t k = size * n;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->status != expected_status(r))
        return 0;
    uint64_t room = r->len ? r->len - r->got : r->max - r->got;
    if (k > room) {
        r->overrun = true;
        return 0;
    }
    if (!r->len && vms_grow(&r->buf, &r->cap, r->got + k, 1))
        return 0;
    memcpy(r->buf + r->got, p, k);
    r->got += k;
    return k;
}

static void set_range(struct vms_web_range *r, char *range, size_t len)
{
    if (r->len)
        snprintf(range, len, "%" PRIu64 "-%" PRIu64, r->start + r->got, r->start + r->len - 1);
    else if (r->got)
        snprintf(range, len, "%" PRIu64 "-", r->got);
    else
        range[0] = 0;
}

static int start(vms_web_http *h, struct vms_web_range *r, fsp_error *err)
{
    char range[64];
    CURL *e = curl_easy_init();
    if (!e)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    if (!r->len && r->got) /* a whole file is asked again from its start */
        r->got = 0;
    if (r->len && !r->buf && !(r->buf = malloc(r->len))) {
        curl_easy_cleanup(e);
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    }
    set_range(r, range, sizeof range);
    r->tried_from = r->got;
    r->easy = e;
    r->status = 0;
    r->curl_error[0] = 0;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    /* a CDN or an object store may redirect, but never from https:// down */
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR,
                     strncmp(r->url, "https://", 8) ? "http,https" : "https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_RANGE, range[0] ? range : NULL);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curl_error);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, h->timeout);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, h->timeout);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "vmsync");
    if (h->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
    h->traffic->round_trips++;
    curl_multi_add_handle(h->multi, e);
    return 0;
}

static void stop(vms_web_http *h, struct vms_web_range *r)
{
    if (!r->easy)
        return;
    curl_multi_remove_handle(h->multi, r->easy);
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
}

/* A failure that a new try cannot mend. */
static bool final_failure(CURLcode rc, const struct vms_web_range *r)
{
    if (r->overrun || (r->status >= 300 && r->status < 500) ||
        (r->status && r->status < 300 && r->status != expected_status(r)))
        return true;
    return rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
           rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT ||
           rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_OUT_OF_MEMORY;
}

static int failed(const struct vms_web_range *r, CURLcode rc, fsp_error *err)
{
    if (r->overrun)
        return fsp_fail(err, FSP_EK_FORMAT, -EFBIG,
                        "%s: the server sent more than the %" PRIu64 " bytes asked for", r->url,
                        r->len ? r->len : r->max);
    if (r->status == 404 || r->status == 410)
        return fsp_fail(err, FSP_EK_FORMAT, -ENOENT, "%s: not on the server (HTTP %ld)", r->url,
                        r->status);
    if (r->status == 401 || r->status == 403)
        return fsp_fail(err, VMS_EK_DENIED, -EACCES, "%s: the server refused it (HTTP %ld)", r->url,
                        r->status);
    if (r->status == 206 || r->status == 200 || r->status >= 300)
        return fsp_fail(err, VMS_EK_NETWORK, -EPROTO, "%s: the server answered HTTP %ld%s", r->url,
                        r->status, r->status == 200 ? ", not the byte range asked for" : "");
    if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE)
        return fsp_fail(err, VMS_EK_DENIED, -EPERM, "%s: %s", r->url, r->curl_error);
    return fsp_fail(err, VMS_EK_NETWORK, -EIO, "%s: %s (after %d tries)", r->url,
                    r->curl_error[0] ? r->curl_error : curl_easy_strerror(rc), r->tries);
}

/* A fetch runs the transfers on a thread of its own, so that the link keeps
 * moving while the caller's DONE decompresses, checks and writes what came:
 * whole ranges wait in READY (at most WEB_READY_MAX, bounding memory) for
 * the calling thread, which alone calls DONE. */
#define WEB_READY_MAX 8

struct run {
    vms_web_http *h;
    struct vms_web_range *r;
    size_t n, next, in_flight; /* the transfer thread's */
    struct vms_web_range *retry[WEB_IN_FLIGHT];
    size_t n_retry;
    pthread_mutex_t mu; /* guards the rest */
    pthread_cond_t changed;
    struct vms_web_range **ready;
    size_t head, tail;
    bool ended, stop; /* the transfer thread ended; the caller wants it to */
    int rc;           /* the transfer thread's result, its message in ERR */
    fsp_error err;
    uint64_t body;      /* bytes received, ranges delivered or not (atomic) */
    uint64_t delivered; /* the caller's: those of the ranges it was given */
};

static size_t waiting(struct run *x)
{
    pthread_mutex_lock(&x->mu);
    size_t k = x->tail - x->head;
    pthread_mutex_unlock(&x->mu);
    return k;
}

static bool stopping(struct run *x)
{
    pthread_mutex_lock(&x->mu);
    bool stop = x->stop;
    pthread_mutex_unlock(&x->mu);
    return stop;
}

static void hand_over(struct run *x, struct vms_web_range *r)
{
    pthread_mutex_lock(&x->mu);
    x->ready[x->tail++] = r;
    pthread_cond_signal(&x->changed);
    pthread_mutex_unlock(&x->mu);
}

/* A transfer ended: whole, to be tried again, or failed. */
static int finished(struct run *x, struct vms_web_range *r, CURLcode rc, fsp_error *err)
{
    if (rc == CURLE_OK)
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
    stop(x->h, r);
    x->in_flight--;
    if (rc == CURLE_OK && r->status == expected_status(r) && (!r->len || r->got == r->len)) {
        hand_over(x, r);
        return 0;
    }
    if (r->got > r->tried_from)
        r->tries = 0; /* progress: the link works, it just dropped */
    /* a server silent for the whole timeout is gone, as an agent would be */
    bool silent = rc == CURLE_OPERATION_TIMEDOUT && r->got == r->tried_from;
    r->tries++;
    if (final_failure(rc, r) || silent || r->tries >= WEB_TRIES)
        return failed(r, rc, err);
    r->not_before = now() + WEB_BACKOFF_FIRST * (1 << r->tries);
    x->retry[x->n_retry++] = r;
    return 0;
}

/* Starts what may start: retries whose backoff is over, then new ranges
 * while the caller keeps up. */
static int fill(struct run *x, fsp_error *err)
{
    int rc = 0;
    double t = now();
    for (size_t i = 0; !rc && i < x->n_retry;) {
        if (x->retry[i]->not_before > t) {
            i++;
            continue;
        }
        rc = start(x->h, x->retry[i], err);
        x->in_flight++;
        x->retry[i] = x->retry[--x->n_retry];
    }
    while (!rc && x->in_flight + x->n_retry < WEB_IN_FLIGHT && x->next < x->n &&
           waiting(x) < WEB_READY_MAX) {
        rc = start(x->h, &x->r[x->next++], err);
        x->in_flight++;
    }
    return rc;
}

static int reap(struct run *x, fsp_error *err)
{
    CURLMsg *m;
    int left, rc = 0;
    while (!rc && (m = curl_multi_info_read(x->h->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct vms_web_range *r;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        rc = finished(x, r, m->data.result, err);
    }
    return rc;
}

static uint64_t body_bytes(const struct run *x)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < x->n; i++)
        sum += x->r[i].got;
    return sum;
}

static void *transfers(void *arg)
{
    struct run *x = arg;
    vms_web_http *h = x->h;
    int rc = 0, running = 0;
    uint64_t wire_at_start = h->traffic->wire_in;
    while (!rc && !stopping(x) && (x->next < x->n || x->in_flight || x->n_retry)) {
        rc = fill(x, &x->err);
        if (!rc && curl_multi_perform(h->multi, &running) != CURLM_OK)
            rc = fsp_fail(&x->err, FSP_EK_IO, -EIO, "libcurl failed");
        uint64_t body = body_bytes(x);
        h->traffic->wire_in = wire_at_start + body;
        __atomic_store_n(&x->body, body, __ATOMIC_RELAXED);
        if (!rc)
            rc = reap(x, &x->err);
        if (!rc && vms_cancel_fired(h->progress.cancel))
            rc = vms_cancel_fail(&x->err, "fetching from a web repository");
        if (!rc && (x->in_flight || x->n_retry || x->next < x->n))
            curl_multi_poll(h->multi, NULL, 0, x->in_flight ? 200 : 50, NULL);
    }
    pthread_mutex_lock(&x->mu);
    x->rc = rc;
    x->ended = true;
    pthread_cond_signal(&x->changed);
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

/* Four ranges of up to 4 MiB arrive together: on a narrow link the first
 * is whole only after a minute.  Meanwhile the caller's thread hears of the
 * bytes that came (vms_repo_progress.arriving), a few times a second. */
enum { ARRIVING_EVERY_NS = 250 * 1000 * 1000 };

static void report_arriving(struct run *x)
{
    const struct vms_repo_progress *p = &x->h->progress;
    uint64_t body = __atomic_load_n(&x->body, __ATOMIC_RELAXED);
    if (p->arriving && body > x->delivered)
        p->arriving(p->ctx, body - x->delivered);
}

static void wait_changed(struct run *x)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += ARRIVING_EVERY_NS;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    if (pthread_cond_timedwait(&x->changed, &x->mu, &until) == ETIMEDOUT) {
        pthread_mutex_unlock(&x->mu);
        report_arriving(x);
        pthread_mutex_lock(&x->mu);
    }
}

/* The next whole range, or NULL once the transfer thread has ended. */
static struct vms_web_range *next_ready(struct run *x)
{
    struct vms_web_range *r = NULL;
    pthread_mutex_lock(&x->mu);
    while (x->head == x->tail && !x->ended)
        wait_changed(x);
    if (x->head < x->tail)
        r = x->ready[x->head++];
    pthread_mutex_unlock(&x->mu);
    curl_multi_wakeup(x->h->multi); /* room for another range */
    return r;
}

static void ask_stop(struct run *x)
{
    pthread_mutex_lock(&x->mu);
    x->stop = true;
    pthread_mutex_unlock(&x->mu);
    curl_multi_wakeup(x->h->multi);
}

static int deliver(struct run *x, vms_web_done_fn *done, void *ctx, fsp_error *err)
{
    int rc = 0;
    for (struct vms_web_range *r; (r = next_ready(x));) {
        x->delivered += r->got;
        if (!rc && (rc = done(ctx, r, err)))
            ask_stop(x);
        free(r->buf);
        r->buf = NULL;
        r->cap = 0;
    }
    return rc;
}

int vms_web_fetch(vms_web_http *h, struct vms_web_range *r, size_t n, vms_web_done_fn *done,
                  void *ctx, fsp_error *err)
{
    struct run x = {.h = h, .r = r, .n = n, .ready = calloc(n ? n : 1, sizeof *x.ready)};
    pthread_t thread;
    if (!x.ready)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    pthread_mutex_init(&x.mu, NULL);
    pthread_cond_init(&x.changed, NULL);
    int rc = pthread_create(&thread, NULL, transfers, &x);
    if (rc)
        rc = fsp_fail(err, FSP_EK_IO, -rc, "cannot start a thread: %s", strerror(rc));
    else {
        rc = deliver(&x, done, ctx, err);
        pthread_join(thread, NULL);
    }
    if (!rc && x.rc) {
        *err = x.err;
        rc = x.rc;
    }
    for (size_t i = 0; i < n; i++) {
        stop(h, &r[i]);
        free(r[i].buf);
        r[i].buf = NULL;
        r[i].cap = 0;
    }
    pthread_cond_destroy(&x.changed);
    pthread_mutex_destroy(&x.mu);
    free(x.ready);
    return rc;
}
