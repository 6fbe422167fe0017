/* Pre-copy: while the laptop is online, the latest version of an image is
 * rebuilt into the client's cache, as an export (no lease).  Each checkout or
 * export of that image from the same repository then takes it as one more
 * seed (checkout.c), so that only what came since travels then.  The next
 * prefetch builds the new version from the last one, and an interrupted one
 * resumes as any checkout does. */
#include "engine/prefetch.h"
#include "base/fileio.h"
#include "engine/seeds.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

static bool default_port(const char *scheme, size_t len, const char *port, size_t n)
{
    static const char *const defaults[][2] = {{"ssh", "22"}, {"https", "443"}, {"http", "80"}};
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        if (strlen(defaults[i][0]) == len && !strncasecmp(scheme, defaults[i][0], len))
            return strlen(defaults[i][1]) == n && !strncmp(port, defaults[i][1], n);
    return false;
}

static size_t put_lower(char *out, size_t n, size_t cap, const char *from, const char *to)
{
    for (const char *p = from; p < to && n + 1 < cap; p++)
        out[n++] = (char)tolower((unsigned char)*p);
    return n;
}

/* URL's scheme and host in lower case, without the user (the same repository
 * whoever reads it), a default port or trailing slashes: ssh://me@Host:22/repo/
 * is ssh://host/repo.  Other slashes stay: on an agent, //srv is not /srv. */
static void canonical_url(const char *url, char *out, size_t cap)
{
    const char *scheme_end = strstr(url, "://"), *auth = scheme_end + 3;
    const char *path = auth + strcspn(auth, "/"), *at = memrchr(auth, '@', (size_t)(path - auth));
    const char *host = at ? at + 1 : auth, *v6_end = NULL;
    if (*host == '[')
        v6_end = memchr(host, ']', (size_t)(path - host));
    const char *after_host = v6_end ? v6_end : host;
    const char *colon = memchr(after_host, ':', (size_t)(path - after_host));
    size_t n = put_lower(out, 0, cap, url, auth);
    n = put_lower(out, n, cap, host, colon ? colon : path);
    if (colon && !default_port(url, (size_t)(scheme_end - url), colon + 1, (size_t)(path - colon - 1)))
        n = put_lower(out, n, cap, colon, path);
    size_t path_len = strlen(path);
    while (path_len && path[path_len - 1] == '/')
        path_len--;
    n += (size_t)snprintf(out + n, cap - n, "%.*s", (int)path_len, path);
    out[n < cap ? n : cap - 1] = 0;
}

/* The repository as this client names it: a local one by its real path, so
 * that ./repo and /srv/repo share one prefetch, a URL in its canonical form. */
static void repository_key(const struct vms_ctx *c, char hex[17])
{
    const char *given = c->client->path, *name = given;
    char url[4096], *real = NULL;
    if (strstr(given, "://")) {
        canonical_url(given, url, sizeof url);
        name = url;
    } else if ((real = realpath(given, NULL))) {
        name = real;
    }
    uint8_t h[FSP_SHA256_LEN];
    vms_sha256(name, strlen(name), h);
    fsp_hex(h, 8, hex);
    free(real);
}

int vms_prefetch_path(struct vms_ctx *c, const char *name, char *out, size_t len, fsp_error *err)
{
    char key[17];
    repository_key(c, key);
    if ((size_t)snprintf(out, len, "%s/prefetch/%s-%s.img", c->cache, key, name) >= len)
        return fsp_fail(err, FSP_EK_USAGE, -ENAMETOOLONG, "%s: cache path too long", c->cache);
    return 0;
}

/* The checkout that follows reads the image as it reads any seed: noting the
 * version's manifest as its scan spares it reading the whole image first. */
static int remember_scan(struct vms_ctx *c, const char *name, const char *image,
                         const struct vms_stats *st, fsp_error *err)
{
    struct vms_version v;
    char manifest[PATH_MAX];
    int rc = vms_repo_version(c->repo, name, st->version, &v, err);
    if (!rc)
        rc = vms_ctx_manifest(c, v.manifest, manifest, sizeof manifest, err);
    return rc ? rc : vms_seed_remember(c, image, manifest, err);
}

/* Builds and checks the image.  The file is the cache's own: no work of the
 * user's lives there, so one that vmsync no longer recognises (its record
 * lost, say) is rebuilt rather than refused at every run. */
static int build(struct vms_ctx *c, const struct vms_prefetch_opts *o,
                 struct vms_prefetch_result *r, struct vms_stats *stats, fsp_error *err)
{
    struct vms_checkout_opts co = {.name = o->name, .out = r->image, .format = "raw",
                                   .seeds = o->seeds, .n_seeds = o->n_seeds,
                                   .export_only = true};
    int rc = vms_ctx_checkout(c, &co, true, stats, err);
    if (rc == -EEXIST && err->kind == VMS_EK_CONFLICT) {
        vms_ctx_warn(c, "%s; it is the cache's own copy, so it is built again", err->msg);
        co.force = true;
        rc = vms_ctx_checkout(c, &co, true, stats, err);
    }
    if (!rc && !stats->in_place) {
        fsp_error why;
        if (remember_scan(c, o->name, r->image, stats, &why))
            vms_ctx_warn(c, "%s; the next checkout reads the prefetched image first", why.msg);
    }
    return rc;
}

static double mib(uint64_t bytes) { return (double)bytes / 1048576.0; }

int vms_prefetch_room(const char *out, const char *name, const struct vms_plan_figures *f,
                      fsp_error *err)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", out);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    struct statvfs vfs;
    if (statvfs(slash ? dir : ".", &vfs) < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot tell its free space: %s", dir,
                        strerror(errno));
    uint64_t size = (uint64_t)vfs.f_blocks * vfs.f_frsize, avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    uint64_t need = f->bytes_to_fetch_raw + f->bytes_from_seeds;
    uint64_t keep = size / 100 * PREFETCH_RESERVE_PERCENT;
    if (need + keep <= avail)
        return 0;
    return fsp_fail(err, FSP_EK_IO, -ENOSPC,
                    "%s: prefetching %s@%u writes %.1f MiB, and %.1f MiB of %.1f MiB are free: "
                    "a prefetch leaves %d%% of the disk free; free space or check out instead",
                    dir, name, f->version, mib(need), mib(avail), mib(size), PREFETCH_RESERVE_PERCENT);
}

/* One prefetch of NAME at a time (a timer's and the user's would race on
 * the part and its journal): IMAGE.lock, held while it runs. */
static int lock_image(const char *image, int *fd, fsp_error *err)
{
    char path[PATH_MAX + 8];
    snprintf(path, sizeof path, "%s.lock", image);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot open: %s", path, strerror(errno));
    if (flock(*fd, LOCK_EX | LOCK_NB) == 0)
        return 0;
    int e = errno;
    close(*fd);
    *fd = -1;
    return e == EWOULDBLOCK ? 0 : fsp_fail(err, FSP_EK_IO, -e, "%s: cannot lock: %s", path, strerror(e));
}

static int prefetch_into(struct vms_ctx *c, const struct vms_prefetch_opts *o,
                         struct vms_prefetch_result *r, struct vms_stats *stats, fsp_error *err)
{
    char dir[PATH_MAX];
    int lock = -1;
    int rc = vms_ctx_cache_path(c, "prefetch", "", dir, sizeof dir, err);
    if (!rc)
        rc = vms_prefetch_path(c, o->name, r->image, sizeof r->image, err);
    if (!rc)
        rc = lock_image(r->image, &lock, err);
    r->running_elsewhere = !rc && lock < 0;
    if (!rc && lock >= 0) /* connected only now: one that holds off costs no session */
        rc = vms_ctx_connect(c, err);
    if (!rc && lock >= 0)
        rc = build(c, o, r, stats, err);
    if (lock >= 0)
        close(lock);
    return rc;
}

/* CACHE/prefetch/snooze holds the time until which prefetching sleeps. */
static int snooze_path(struct vms_ctx *c, char *out, size_t len, fsp_error *err)
{
    return vms_ctx_cache_path(c, "prefetch", "snooze", out, len, err);
}

static int64_t snoozed_until(struct vms_ctx *c)
{
    char path[PATH_MAX], text[32] = "";
    fsp_error ignored;
    FILE *f = snooze_path(c, path, sizeof path, &ignored) ? NULL : fopen(path, "re");
    if (!f)
        return 0;
    bool read = fgets(text, sizeof text, f) != NULL;
    fclose(f);
    long long until = read ? strtoll(text, NULL, 10) : 0;
    return until > (long long)time(NULL) ? until : 0;
}

int64_t vms_prefetch_snoozed_until(vms_client *cl)
{
    struct vms_ctx c = {.client = cl, .cache = cl->cache}; /* no operation begins */
    return snoozed_until(&c);
}

int vms_prefetch_snooze(vms_client *cl, int64_t until, fsp_error *err)
{
    struct vms_ctx c;
    char path[PATH_MAX], text[32];
    vms_ctx_begin(&c, cl, NULL);
    int rc = snooze_path(&c, path, sizeof path, err);
    if (rc)
        return rc;
    if (until <= (int64_t)time(NULL)) {
        if (unlink(path) < 0 && errno != ENOENT)
            return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot remove: %s", path, strerror(errno));
        return 0;
    }
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    int n = snprintf(text, sizeof text, "%lld\n", (long long)until);
    return vms_write_file_durably(tmp, path, text, (size_t)n, err);
}

int vms_prefetch(vms_client *cl, const struct vms_prefetch_opts *o, struct vms_prefetch_result *r,
                 struct vms_stats *stats, fsp_error *err)
{
    struct vms_ctx c;
    memset(stats, 0, sizeof *stats);
    memset(r, 0, sizeof *r);
    if (!o->name)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "a prefetch needs the image's name");
    vms_ctx_begin(&c, cl, stats);
    int rc = 0;
    if ((r->snoozed_until = snoozed_until(&c)) == 0)
        rc = prefetch_into(&c, o, r, stats, err);
    stats->seconds = vms_ctx_elapsed(&c);
    return vms_ctx_close(&c, rc, err);
}
