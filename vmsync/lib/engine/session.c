/* The engine's context: identity, cache, repository, progress and warnings. */
#include "base/fileio.h"
#include "engine/engine.h"
#include "manifest/written.h"

#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void resolve_identity(struct vms_client *cl)
{
    const struct vms_client_opts *o = &cl->o;
    const char *host = o->host ? o->host : getenv("VMSYNC_HOST");
    if (host && *host)
        snprintf(cl->host, sizeof cl->host, "%s", host);
    else if (gethostname(cl->host, sizeof cl->host - 1) < 0)
        snprintf(cl->host, sizeof cl->host, "unknown");
    const char *user = o->user ? o->user : getenv("USER");
    struct passwd *pw = user && *user ? NULL : getpwuid(getuid());
    snprintf(cl->user, sizeof cl->user, "%s", user && *user ? user : pw ? pw->pw_name : "unknown");
}

static int make_dirs(const char *path, fsp_error *err)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
            return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot create: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot create: %s", tmp, strerror(errno));
    return 0;
}

static int resolve_cache(struct vms_client *cl, fsp_error *err)
{
    const char *dir = cl->o.cache_dir ? cl->o.cache_dir : getenv("VMSYNC_CACHE");
    const char *home = getenv("HOME");
    if (dir && *dir)
        snprintf(cl->cache, sizeof cl->cache, "%s", dir);
    else if (getenv("XDG_CACHE_HOME"))
        snprintf(cl->cache, sizeof cl->cache, "%s/vmsync", getenv("XDG_CACHE_HOME"));
    else
        snprintf(cl->cache, sizeof cl->cache, "%s/.cache/vmsync", home ? home : "/tmp");
    return make_dirs(cl->cache, err);
}

/* ---- the client handle ---------------------------------------------------- */

int vms_client_emit(vms_client *cl, const struct vms_event *ev)
{
    int stop = cl->o.event ? cl->o.event(cl->o.ctx, ev) : 0;
    return stop || vms_cancel_fired(cl->cancel);
}

static int backend_progress(void *ctx, enum vms_phase phase, uint64_t done, uint64_t total)
{
    struct vms_event ev = {.phase = phase, .done = done, .total = total};
    return vms_client_emit(ctx, &ev);
}

static void backend_arriving(void *ctx, uint64_t got)
{
    const struct vms_client *cl = ctx;
    if (cl->arriving)
        cl->arriving(cl->arriving_ctx, got);
}

static int connect_repo(struct vms_client *cl, fsp_error *err)
{
    if (cl->repo)
        return 0;
    /* Over plain http:// only the signature vouches for what arrives. */
    if (!strncmp(cl->path, "http://", 7) && !cl->n_anchors)
        return fsp_fail(err, FSP_EK_USAGE, -EPERM,
                        "%s: plain http:// needs a trusted signing key (--trust); use https://",
                        cl->path);
    struct vms_repo_progress progress = {backend_progress, cl, cl->cancel, backend_arriving};
    return vms_repo_open_reporting(cl->path, cl->user, cl->host, &cl->remote, &progress,
                                   &cl->repo, err);
}

int vms_client_open(const char *repo, const struct vms_client_opts *o, vms_client **out,
                    fsp_error *err)
{
    *out = NULL;
    struct vms_client *cl = calloc(1, sizeof *cl);
    if (!cl || !(cl->path = strdup(repo))) {
        free(cl);
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    }
    if (o)
        cl->o = *o;
    if (o && o->remote)
        cl->remote = *o->remote;
    cl->o.remote = &cl->remote;
    resolve_identity(cl);
    int rc = resolve_cache(cl, err);
    if (!rc)
        rc = vms_client_load_anchors(cl, err);
    if (!rc)
        rc = vms_cancel_new(&cl->cancel, err);
    if (rc)
        vms_client_close(cl);
    else
        *out = cl;
    return rc;
}

void vms_client_close(vms_client *cl)
{
    if (!cl)
        return;
    vms_cancel_reset(cl->cancel); /* a cancel with nothing running must not cut the close short */
    vms_repo_close(cl->repo);
    vms_cancel_free(cl->cancel);
    free(cl->anchors);
    free(cl->path);
    free(cl);
}

void vms_client_cancel(vms_client *cl) { vms_cancel_fire(cl->cancel); }

const char *vms_client_repo(const vms_client *cl) { return cl->path; }

/* ---- one operation's context ------------------------------------------------ */

void vms_ctx_begin(struct vms_ctx *c, vms_client *cl, struct vms_stats *stats)
{
    memset(c, 0, sizeof *c);
    c->client = cl;
    c->s = &cl->o;
    c->user = cl->user;
    c->host = cl->host;
    c->cache = cl->cache;
    c->stats = stats;
    c->started = now_seconds();
    c->scan.phase = VMS_PHASE_SCAN_IMAGE;
    vms_cancel_reset(cl->cancel);
}

int vms_ctx_connect(struct vms_ctx *c, fsp_error *err)
{
    int rc = connect_repo(c->client, err);
    if (!rc) {
        c->repo = c->client->repo;
        vms_repo_traffic(c->repo, &c->traffic_at_start);
    }
    return rc;
}

int vms_ctx_open(struct vms_ctx *c, vms_client *cl, struct vms_stats *stats, fsp_error *err)
{
    vms_ctx_begin(c, cl, stats);
    return vms_ctx_connect(c, err);
}

void vms_ctx_hang_up(struct vms_ctx *c)
{
    if (c->repo && c->s->one_operation)
        vms_repo_hang_up(c->repo);
}

int vms_ctx_close(struct vms_ctx *c, int rc, fsp_error *err)
{
    if (!rc && c->repo) {
        vms_ctx_hang_up(c);
        rc = vms_repo_settle(c->repo, err);
    }
    if (c->repo && c->stats) {
        struct vms_traffic t;
        vms_repo_traffic(c->repo, &t);
        c->stats->wire_in = t.wire_in - c->traffic_at_start.wire_in;
        c->stats->wire_out = t.wire_out - c->traffic_at_start.wire_out;
        c->stats->segments_fetched = t.segments_received - c->traffic_at_start.segments_received;
        c->stats->segments_chained = t.segments_chained - c->traffic_at_start.segments_chained;
        c->stats->round_trips = t.round_trips - c->traffic_at_start.round_trips;
        for (int l = 0; l < VMS_STATS_LEVELS; l++)
            c->stats->segments_at_level[l] =
                t.segments_at_level[l] - c->traffic_at_start.segments_at_level[l];
    }
    /* A failed operation may leave the handle in no state to reuse: a link
     * that broke, a request cut short, objects put but not flushed.  The next
     * operation opens a new one.  The fired token tells the close not to wait
     * for an agent that may never answer. */
    if ((rc || c->s->one_operation) && c->client->repo) {
        if (rc < 0 && (err->kind == VMS_EK_NETWORK || err->kind == FSP_EK_CANCELLED))
            vms_cancel_fire(c->client->cancel);
        vms_repo_close(c->client->repo);
        c->client->repo = NULL;
    }
    c->repo = NULL;
    /* a callback's own stop value may come back positive, with ERR unset */
    struct vms_event done = {.phase = VMS_PHASE_DONE, .result = rc, .error = rc < 0 ? err : NULL};
    vms_client_emit(c->client, &done);
    return rc;
}

double vms_ctx_elapsed(const struct vms_ctx *c) { return now_seconds() - c->started; }

int vms_ctx_progress(struct vms_ctx *c, enum vms_phase phase, uint64_t done, uint64_t total,
                     fsp_error *err)
{
    struct vms_repo_progress p = {backend_progress, c->client, c->client->cancel, NULL};
    return vms_repo_report(&p, phase, done, total, err);
}

int vms_ctx_cancelled(struct vms_ctx *c, fsp_error *err)
{
    return vms_cancel_fired(c->client->cancel) ? vms_cancel_fail(err, NULL) : 0;
}

void vms_ctx_watch_arrivals(struct vms_ctx *c, void (*fn)(void *ctx, uint64_t got), void *ctx)
{
    c->client->arriving = fn;
    c->client->arriving_ctx = ctx;
}

void vms_ctx_scanning(struct vms_ctx *c, enum vms_phase phase, uint32_t index, uint32_t count)
{
    c->scan = (struct vms_event){.phase = phase, .index = index, .count = count};
}

static void warn_at(struct vms_ctx *c, uint32_t volume, const char *path, const char *msg)
{
    struct vms_warning w = {.volume = volume, .path = path, .message = msg};
    if (c->s->warning)
        c->s->warning(c->s->ctx, &w);
}

void vms_ctx_warn(struct vms_ctx *c, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    warn_at(c, 0, NULL, msg);
}

int vms_ctx_cache_path(struct vms_ctx *c, const char *sub, const char *name, char *out,
                       size_t len, fsp_error *err)
{
    snprintf(out, len, "%s/%s", c->cache, sub);
    int rc = make_dirs(out, err);
    if (!rc && (size_t)snprintf(out, len, "%s/%s/%s", c->cache, sub, name) >= len)
        rc = fsp_fail(err, FSP_EK_USAGE, -ENAMETOOLONG, "%s: cache path too long", c->cache);
    return rc;
}

/* The fetch checks what it brings against ID; a cached copy is checked
 * again when a signature vouches for ID, the last link of the chain. */
static bool cached_copy_is(const char *path, const uint8_t id[FSP_SHA256_LEN])
{
    uint8_t actual[FSP_SHA256_LEN];
    return vms_sha256_file(path, actual) == 0 && !memcmp(actual, id, FSP_SHA256_LEN);
}

int vms_ctx_manifest(struct vms_ctx *c, const uint8_t id[FSP_SHA256_LEN], char *path, size_t len,
                     fsp_error *err)
{
    char hex[2 * FSP_SHA256_LEN + 8];
    fsp_hex(id, FSP_SHA256_LEN, hex);
    strcat(hex, ".vmsm");
    int rc = vms_ctx_cache_path(c, "manifests", hex, path, len, err);
    if (rc)
        return rc;
    if (access(path, R_OK) == 0 && (!c->client->n_anchors || cached_copy_is(path, id)))
        return 0;
    unlink(path); /* a cached copy that is not the signed manifest: fetched again, checked */
    return vms_repo_get_manifest(c->repo, id, path, err);
}

/* fsparse's phases of a scan ("metadata", "files") count one figure: the
 * engine's event says which scan it is instead. */
int vms_ctx_scan_progress(struct vms_ctx *c, uint64_t done, uint64_t total)
{
    fsp_error ignored; /* a lost link fails the next request, with its own message */
    if (c->repo)
        vms_repo_keep_alive(c->repo, &ignored); /* scans run between requests */
    c->scan.done = done;
    c->scan.total = total;
    return vms_client_emit(c->client, &c->scan);
}

static int h_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    (void)phase;
    return vms_ctx_scan_progress(((struct vms_scan_hooks *)ctx)->c, done, total);
}

void vms_ctx_warn_at(struct vms_ctx *c, uint32_t volume, const char *path, const char *msg)
{
    warn_at(c, path ? volume : 0, path, msg);
}

static int h_warning(void *ctx, uint32_t volume, const char *path, const char *msg)
{
    struct vms_scan_hooks *h = ctx;
    warn_at(h->c, path ? volume : 0, path, msg);
    const struct fsp_sink *inner = h->fwd.inner;
    return inner->warning ? inner->warning(inner->ctx, volume, path, msg) : 0;
}

void vms_scan_hooks_init(struct vms_scan_hooks *h, struct vms_ctx *c, const struct fsp_sink *inner)
{
    vms_forward_init(&h->fwd, inner);
    h->c = c;
    h->fwd.sink.progress = h_progress;
    h->fwd.sink.warning = h_warning;
}

int vms_parse_size(const char *s, unsigned bare_shift, uint64_t *out, fsp_error *err)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = bare_shift;
    const char *units = "KkMmGg", *u = end != s && *end ? strchr(units, *end) : NULL;
    if (u) {
        shift = 10u * (unsigned)(1 + (u - units) / 2);
        end++;
    }
    if (end == s || *end || *s == '-' || *s == '+' || isspace((unsigned char)*s))
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL,
                        "'%s' is not a size: expected digits and an optional K, M or G", s);
    if (errno == ERANGE || v > (UINT64_MAX >> shift))
        return fsp_fail(err, FSP_EK_USAGE, -ERANGE, "'%s' is too large a size", s);
    *out = (uint64_t)v << shift;
    return 0;
}

int vms_parse_ref(const char *ref, char *name, size_t len, uint32_t *version, fsp_error *err)
{
    const char *at = strrchr(ref, '@');
    size_t n = at ? (size_t)(at - ref) : strlen(ref);
    *version = 0;
    if (!n || n >= len)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "'%s' is not an image name", ref);
    memcpy(name, ref, n);
    name[n] = 0;
    if (at) {
        char *end;
        unsigned long v = strtoul(at + 1, &end, 10);
        if (!at[1] || *end || !v || v > UINT32_MAX)
            return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "'%s': the version after @ must be a number from 1", ref);
        *version = (uint32_t)v;
    }
    return 0;
}

static int report_scan(struct vms_ctx *c, fsp_error *err)
{
    if (!vms_client_emit(c->client, &c->scan))
        return 0;
    return fsp_fail(err, FSP_EK_CANCELLED, -ECANCELED, "cancelled during %s",
                    vms_phase_name(c->scan.phase));
}

/* Names IMAGE in the scan's events, and says the scan began. */
int vms_ctx_scan_started(struct vms_ctx *c, const char *image, fsp_error *err)
{
    c->scan.subject = image;
    c->scan.done = c->scan.total = 0;
    return report_scan(c, err);
}

/* fsparse reports as it reads, not at the end: say the scan read it all. */
int vms_ctx_scan_finished(struct vms_ctx *c, int rc, fsp_error *err)
{
    c->scan.done = c->scan.total;
    return rc ? rc : report_scan(c, err);
}

struct summary_only {
    struct vms_scan_hooks hooks; /* first: the sink callbacks' ctx */
    struct fsp_summary *out;
};

static int so_done(void *ctx, const struct fsp_summary *s)
{
    *((struct summary_only *)ctx)->out = *s;
    return 0;
}

static int scan_summary(struct vms_ctx *c, const char *image, bool as_raw, struct fsp_summary *out,
                        fsp_error *err)
{
    fsp_source *src;
    int rc = as_raw ? fsp_source_open_raw(image, &src, err) : vms_written_open(image, &src, err);
    if (rc)
        return rc;
    static const struct fsp_sink nothing = {0};
    struct summary_only so = {.out = out};
    vms_scan_hooks_init(&so.hooks, c, &nothing);
    so.hooks.fwd.sink.done = so_done;
    memset(out, 0, sizeof *out);
    rc = vms_ctx_scan_started(c, image, err);
    if (!rc)
        rc = vms_ctx_scan_finished(c, fsp_scan(src, NULL, &so.hooks.fwd.sink, err), err);
    fsp_source_close(src);
    return rc;
}

int vms_ctx_scan_summary(struct vms_ctx *c, const char *image, struct fsp_summary *out, fsp_error *err)
{
    return scan_summary(c, image, false, out, err);
}

int vms_ctx_scan_summary_raw(struct vms_ctx *c, const char *image, struct fsp_summary *out,
                             fsp_error *err)
{
    return scan_summary(c, image, true, out, err);
}

int vms_ctx_scan_into(struct vms_ctx *c, const char *image, const char *manifest, uint32_t flags,
                      struct vms_scan_hooks *h, const struct fsp_sink *extra, fsp_error *err)
{
    static const struct fsp_sink nothing = {0}; /* vms_manifest_create feeds the writer */
    vms_scan_hooks_init(h, c, &nothing);
    struct fsp_sink hooks = {.volume = extra->volume, .object = extra->object,
                             .want_stream = extra->want_stream, .reuse_stream = extra->reuse_stream,
                             .ctx = h};
    struct vms_manifest_create_opts o = {.scan_flags = flags, .progress = h->fwd.sink.progress,
                                         .warning = h->fwd.sink.warning, .hooks = &hooks, .ctx = h};
    int rc = vms_ctx_scan_started(c, image, err);
    return rc ? rc : vms_ctx_scan_finished(c, vms_manifest_create(image, manifest, &o, err), err);
}
