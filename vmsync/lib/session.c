/* The engine's context: identity, cache, repository, progress and warnings. */
#include "cancel.h"
#include "engine.h"
#include "written.h"

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

static void resolve_identity(struct vms_ctx *c)
{
    const struct vms_session *s = c->s;
    const char *host = s->host ? s->host : getenv("VMSYNC_HOST");
    if (host && *host)
        snprintf(c->host, sizeof c->host, "%s", host);
    else if (gethostname(c->host, sizeof c->host - 1) < 0)
        snprintf(c->host, sizeof c->host, "unknown");
    const char *user = s->user ? s->user : getenv("USER");
    struct passwd *pw = user && *user ? NULL : getpwuid(getuid());
    snprintf(c->user, sizeof c->user, "%s", user && *user ? user : pw ? pw->pw_name : "unknown");
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

static int resolve_cache(struct vms_ctx *c, fsp_error *err)
{
    const char *dir = c->s->cache_dir ? c->s->cache_dir : getenv("VMSYNC_CACHE");
    const char *home = getenv("HOME");
    if (dir && *dir)
        snprintf(c->cache, sizeof c->cache, "%s", dir);
    else if (getenv("XDG_CACHE_HOME"))
        snprintf(c->cache, sizeof c->cache, "%s/vmsync", getenv("XDG_CACHE_HOME"));
    else
        snprintf(c->cache, sizeof c->cache, "%s/.cache/vmsync", home ? home : "/tmp");
    return make_dirs(c->cache, err);
}

int vms_ctx_open(struct vms_ctx *c, const struct vms_session *s, struct vms_stats *stats,
                 fsp_error *err)
{
    memset(c, 0, sizeof *c);
    c->s = s;
    c->stats = stats;
    c->started = now_seconds();
    resolve_identity(c);
    int rc = resolve_cache(c, err);
    if (!rc)
        rc = vms_repo_open_cancellable(s->repo, c->user, c->host, s->remote, s->cancel, &c->repo,
                                       err);
    if (!rc)
        vms_repo_on_progress(c->repo, s->progress, s->ctx, s->cancel);
    return rc;
}

void vms_ctx_close(struct vms_ctx *c)
{
    if (c->repo && c->stats) {
        struct vms_traffic t;
        vms_repo_traffic(c->repo, &t);
        c->stats->wire_in = t.wire_in;
        c->stats->wire_out = t.wire_out;
    }
    vms_repo_close(c->repo);
    c->repo = NULL;
}

double vms_ctx_elapsed(const struct vms_ctx *c) { return now_seconds() - c->started; }

int vms_ctx_cancelled(struct vms_ctx *c, fsp_error *err)
{
    return vms_cancel_fired(c->s->cancel) ? vms_cancel_fail(err, NULL) : 0;
}

int vms_ctx_progress(struct vms_ctx *c, const char *phase, uint64_t done, uint64_t total,
                     fsp_error *err)
{
    int rc = vms_ctx_cancelled(c, err);
    if (rc)
        return rc;
    if (!c->s->progress || !c->s->progress(c->s->ctx, phase, done, total))
        return 0;
    return fsp_fail(err, FSP_EK_CANCELLED, -ECANCELED, "cancelled during %s", phase);
}

void vms_ctx_warn(struct vms_ctx *c, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->s->warning)
        c->s->warning(c->s->ctx, msg);
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

int vms_ctx_manifest(struct vms_ctx *c, const uint8_t id[FSP_SHA256_LEN], char *path, size_t len,
                     fsp_error *err)
{
    char hex[2 * FSP_SHA256_LEN + 8];
    fsp_hex(id, FSP_SHA256_LEN, hex);
    strcat(hex, ".vmsm");
    int rc = vms_ctx_cache_path(c, "manifests", hex, path, len, err);
    if (rc || access(path, R_OK) == 0)
        return rc;
    return vms_repo_get_manifest(c->repo, id, path, err);
}

static int h_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    struct vms_scan_hooks *h = ctx;
    const struct vms_session *s = h->c->s;
    fsp_error ignored; /* a lost link fails the next request, with its own message */
    if (h->c->repo)
        vms_repo_keep_alive(h->c->repo, &ignored); /* scans run between requests */
    if (vms_cancel_fired(s->cancel))
        return 1; /* the scan stops as cancelled */
    return s->progress ? s->progress(s->ctx, phase, done, total) : 0;
}

static int h_warning(void *ctx, uint32_t volume, const char *path, const char *msg)
{
    struct vms_scan_hooks *h = ctx;
    if (path)
        vms_ctx_warn(h->c, "partition %u: %s: %s", volume, path, msg);
    else
        vms_ctx_warn(h->c, "%s", msg);
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

int vms_parse_size(const char *s, unsigned bare_shift, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-')
        return -1;
    unsigned shift = bare_shift;
    const char *units = "KkMmGg", *u = *end ? strchr(units, *end) : NULL;
    if (u) {
        shift = 10u * (unsigned)(1 + (u - units) / 2);
        end++;
    }
    if (*end || v > (UINT64_MAX >> shift))
        return -1;
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
    rc = fsp_scan(src, NULL, &so.hooks.fwd.sink, err);
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
    fsp_source *src;
    int rc = vms_written_open(image, &src, err);
    if (rc)
        return rc;
    vms_manifest_writer *w;
    if ((rc = vms_manifest_writer_open(manifest, &w, err))) {
        fsp_source_close(src);
        return rc;
    }
    vms_scan_hooks_init(h, c, vms_manifest_writer_sink(w));
    h->fwd.sink.object = extra->object;
    h->fwd.sink.want_stream = extra->want_stream;
    h->fwd.sink.reuse_stream = extra->reuse_stream;
    struct fsp_scan_opts opts = {.flags = flags};
    rc = fsp_scan(src, &opts, &h->fwd.sink, err);
    fsp_source_close(src);
    if (rc) {
        vms_manifest_writer_abort(w);
        return rc;
    }
    return vms_manifest_writer_commit(w, err);
}
