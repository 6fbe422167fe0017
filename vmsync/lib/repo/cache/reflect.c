/* A branch reflector's repository (cache.h): struct vms_repo_ops over the
 * cache (store.c) and a remote handle on upstream. */
#include "repo/cache/cache.h"
#include "repo/cache/store.h"

#include "base/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct vms_reflect {
    struct vms_repo base;
    vms_repo *up;
    char name[PATH_MAX];
    struct vms_cache_store store;
    const struct vms_public_key *trusted;
    size_t n_trusted;
    /* the list of the GET being served (vms_repo_prefetch), read in order */
    const uint8_t (*wanted)[FSP_SHA256_LEN];
    size_t n_wanted, next;
    size_t window; /* objects fetched ahead at once */
} vms_reflect;

/* A window takes a few seconds on the line: the laptop, whose bytes wait
 * for it, hears nothing meanwhile, and gives up after its --timeout. */
#define WINDOW_FIRST 64
#define WINDOW_MAX 256 /* about 16 MiB of chunks: a window of big objects after small ones
                        * must not outlast the laptop's --timeout before it is timed */
#define WINDOW_SECONDS 3.0

static const struct vms_repo_ops reflect_ops;

#define R(repo) ((vms_reflect *)(repo))

/* ---- fetching what the cache lacks, once ------------------------------------------------ */

struct fetching {
    vms_reflect *r;
    const uint8_t (*hashes)[FSP_SHA256_LEN];
    int rc;
    fsp_error err;
};

static int keep_object(void *ctx, size_t i, const uint8_t *data, size_t len, size_t stored)
{
    (void)stored;
    struct fetching *f = ctx;
    uint8_t got[FSP_SHA256_LEN];
    vms_sha256(data, len, got); /* the remote handle checked it too: the cache trusts only itself */
    if (memcmp(got, f->hashes[i], FSP_SHA256_LEN)) {
        char hex[2 * FSP_SHA256_LEN + 1];
        fsp_hex(f->hashes[i], FSP_SHA256_LEN, hex);
        return fsp_fail(&f->err, FSP_EK_CORRUPT, -EBADMSG,
                        "%s: upstream sent object %s with other content: refused", f->r->name, hex);
    }
    return vms_cache_store(&f->r->store, f->hashes[i], data, len, &f->err);
}

/* One upstream GET for MINE, whose locks this process holds. */
static int fetch_mine(vms_reflect *r, const uint8_t (*mine)[FSP_SHA256_LEN], size_t n, fsp_error *err)
{
    struct fetching f = {r, mine, 0, {0}};
    int rc = n ? vms_repo_get(r->up, mine, n, keep_object, &f, err) : 0;
    if (rc && f.err.msg[0])
        *err = f.err; /* the cache's refusal, not the stop it caused */
    for (size_t i = 0; i < n; i++)
        vms_cache_unlock(&r->store, VMS_CACHE_OBJECT, mine[i]);
    return rc;
}

/* Splits the misses among LIST into those this process fetches (locked) and
 * those another one is fetching right now. */
static size_t claim(vms_reflect *r, const uint8_t (*list)[FSP_SHA256_LEN], size_t n,
                    uint8_t (*mine)[FSP_SHA256_LEN], uint8_t (*theirs)[FSP_SHA256_LEN], size_t *n_theirs)
{
    size_t n_mine = 0;
    *n_theirs = 0;
    for (size_t i = 0; i < n; i++) {
        if (vms_cache_has(&r->store, VMS_CACHE_OBJECT, list[i], NULL))
            continue;
        if (!vms_cache_try_lock(&r->store, VMS_CACHE_OBJECT, list[i])) {
            memmove(theirs[(*n_theirs)++], list[i], FSP_SHA256_LEN); /* may be LIST */
        } else if (vms_cache_has(&r->store, VMS_CACHE_OBJECT, list[i], NULL)) {
            vms_cache_unlock(&r->store, VMS_CACHE_OBJECT, list[i]); /* stored meanwhile */
        } else {
            memcpy(mine[n_mine++], list[i], FSP_SHA256_LEN);
        }
    }
    return n_mine;
}

/* Fetches what the cache lacks among LIST: each object once, whichever
 * session asks first; the others wait for it and find it cached.  When
 * that fetcher failed, the next round fetches it here. */
static int fill(vms_reflect *r, const uint8_t (*list)[FSP_SHA256_LEN], size_t n, fsp_error *err)
{
    uint8_t(*mine)[FSP_SHA256_LEN] = malloc((n + 1) * FSP_SHA256_LEN);
    uint8_t(*theirs)[FSP_SHA256_LEN] = malloc((n + 1) * FSP_SHA256_LEN);
    int rc = mine && theirs ? 0 : fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    for (int round = 0; !rc && n && round < 3; round++) {
        size_t n_theirs, n_mine = claim(r, list, n, mine, theirs, &n_theirs);
        rc = fetch_mine(r, (const uint8_t(*)[FSP_SHA256_LEN])mine, n_mine, err);
        for (size_t i = 0; !rc && i < n_theirs; i++)
            vms_cache_wait_unlocked(&r->store, VMS_CACHE_OBJECT, theirs[i]);
        list = (const uint8_t(*)[FSP_SHA256_LEN])theirs; /* claim compacts it in place */
        n = n_theirs;
    }
    free(mine);
    free(theirs);
    if (r->store.added > r->store.max) /* this session alone outgrew the cache */
        vms_cache_evict(&r->store);
    return rc;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Fills the window of the wanted list from K on, and sizes the next one to
 * the line. */
static int fill_window(vms_reflect *r, size_t k, fsp_error *err)
{
    size_t n = r->n_wanted - k < r->window ? r->n_wanted - k : r->window;
    double start = now();
    uint64_t before = r->store.stored;
    int rc = fill(r, r->wanted + k, n, err);
    double took = now() - start;
    bool too_big = r->store.stored - before > r->store.max / 4; /* would evict itself */
    if (!too_big && took < WINDOW_SECONDS / 2 && r->window < WINDOW_MAX)
        r->window *= 2;
    else if ((too_big || took > WINDOW_SECONDS * 2) && r->window > 16)
        r->window /= 2;
    r->next = k + n;
    return rc;
}

/* Where HASH is in the wanted list: after the last window, as a reader in
 * order finds it, else anywhere; N_WANTED when not there. */
static size_t wanted_at(const vms_reflect *r, const uint8_t hash[FSP_SHA256_LEN])
{
    size_t from = r->next > 0 ? r->next - 1 : 0;
    for (size_t i = from; i < r->n_wanted; i++)
        if (!memcmp(r->wanted[i], hash, FSP_SHA256_LEN))
            return i;
    for (size_t i = 0; i < from && i < r->n_wanted; i++)
        if (!memcmp(r->wanted[i], hash, FSP_SHA256_LEN))
            return i;
    return r->n_wanted;
}

/* HASHES (valid until the next call; NULL ends it) is what a GET reads next,
 * in order: the first window now, each later one when the reader reaches
 * it, so the laptop's bytes flow while the rest is on its way. */
static int vms_reflect_prefetch(vms_repo *repo, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                                fsp_error *err)
{
    vms_reflect *r = R(repo);
    r->wanted = hashes;
    r->n_wanted = hashes ? n : 0;
    r->next = 0;
    r->window = WINDOW_FIRST;
    return r->n_wanted ? fill_window(r, 0, err) : 0;
}

/* ---- objects ------------------------------------------------------------------------------ */

/* HASH as cached, fetched first when it is not (or no longer: evicted). */
static int read_cached(vms_reflect *r, const uint8_t hash[FSP_SHA256_LEN], struct vms_cached_object *o,
                       fsp_error *err)
{
    int rc = vms_cache_read(&r->store, hash, o, err);
    if (rc != -ENOENT)
        return rc;
    size_t k = wanted_at(r, hash);
    if (k < r->n_wanted && !(rc = fill_window(r, k, err)))
        rc = vms_cache_read(&r->store, hash, o, err);
    if (rc != -ENOENT) /* else not wanted, or a window bigger than the cache evicted it */
        return rc;
    rc = fill(r, (const uint8_t(*)[FSP_SHA256_LEN])hash, 1, err);
    if (!rc && (rc = vms_cache_read(&r->store, hash, o, err)) == -ENOENT) {
        char hex[2 * FSP_SHA256_LEN + 1];
        fsp_hex(hash, FSP_SHA256_LEN, hex);
        rc = fsp_fail(err, FSP_EK_IO, -ENOSPC, "%s: object %s left the reflector's cache as soon "
                      "as it came: its --cache-size is too small", r->name, hex);
    }
    return rc;
}

static int vms_reflect_get(vms_repo *repo, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                           vms_object_cb cb, void *ctx, fsp_error *err)
{
    vms_reflect *r = R(repo);
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        struct vms_cached_object o;
        const uint8_t *data;
        rc = read_cached(r, hashes[i], &o, err);
        if (!rc)
            rc = vms_cache_plain(&r->store, hashes[i], &o, &data, err);
        if (!rc)
            rc = cb(ctx, i, data, o.len, o.stored);
    }
    return rc;
}

static int vms_reflect_get_stored(vms_repo *repo, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                                  vms_stored_cb cb, void *ctx, fsp_error *err)
{
    vms_reflect *r = R(repo);
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        struct vms_cached_object o;
        rc = read_cached(r, hashes[i], &o, err);
        if (!rc)
            rc = cb(ctx, i, o.codec, o.body, o.stored, o.len);
    }
    return rc;
}

/* The cache answers for what it holds, upstream for the rest (a check-in's
 * offer asks for objects nobody has yet). */
static int vms_reflect_has(vms_repo *repo, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                           uint8_t *present, struct vms_object_size *sizes, fsp_error *err)
{
    vms_reflect *r = R(repo);
    size_t *ask = malloc((n + 1) * sizeof *ask), m = 0;
    uint8_t(*list)[FSP_SHA256_LEN] = malloc((n + 1) * FSP_SHA256_LEN);
    uint8_t *up_present = malloc(n + 1);
    struct vms_object_size *up_sizes = malloc((n + 1) * sizeof *up_sizes);
    int rc = ask && list && up_present && up_sizes ? 0
             : fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        struct vms_object_size sz = {0};
        present[i] = vms_cache_has(&r->store, VMS_CACHE_OBJECT, hashes[i], &sz);
        if (sizes)
            sizes[i] = sz;
        if (!present[i]) {
            memcpy(list[m], hashes[i], FSP_SHA256_LEN);
            ask[m++] = i;
        }
    }
    if (!rc && m)
        rc = vms_repo_has(r->up, (const uint8_t(*)[FSP_SHA256_LEN])list, m, up_present, up_sizes, err);
    for (size_t j = 0; !rc && j < m; j++) {
        present[ask[j]] = up_present[j];
        if (sizes)
            sizes[ask[j]] = up_sizes[j];
    }
    free(ask);
    free(list);
    free(up_present);
    free(up_sizes);
    return rc;
}

/* ---- manifests ---------------------------------------------------------------------------- */

static int manifest_in(vms_reflect *r, const uint8_t id[FSP_SHA256_LEN], const char *dest, fsp_error *err)
{
    char tmp[PATH_MAX];
    uint8_t got[FSP_SHA256_LEN];
    int rc = vms_cache_temp(&r->store, tmp, sizeof tmp, err);
    if (!rc)
        rc = vms_repo_get_manifest(r->up, id, tmp, err);
    if (!rc && (vms_sha256_file(tmp, got) || memcmp(got, id, FSP_SHA256_LEN))) {
        char hex[2 * FSP_SHA256_LEN + 1];
        fsp_hex(id, FSP_SHA256_LEN, hex);
        rc = fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG,
                      "%s: upstream sent manifest %s with other content: refused", r->name, hex);
    }
    if (!rc && rename(tmp, dest) < 0)
        rc = fsp_fail(err, FSP_EK_IO, -errno, "the reflector's cache: storing a manifest: %s",
                      strerror(errno));
    if (rc)
        unlink(tmp);
    else
        r->store.added += 1; /* a session that fetched only a manifest trims too */
    return rc;
}

/* The cached manifest's path in PATH, fetched first when need be. */
static int cached_manifest(vms_reflect *r, const uint8_t id[FSP_SHA256_LEN], char *path, size_t cap,
                           fsp_error *err)
{
    vms_cache_path(&r->store, VMS_CACHE_MANIFEST, id, path, cap);
    if (vms_cache_has(&r->store, VMS_CACHE_MANIFEST, id, NULL))
        return 0;
    while (!vms_cache_try_lock(&r->store, VMS_CACHE_MANIFEST, id))
        vms_cache_wait_unlocked(&r->store, VMS_CACHE_MANIFEST, id);
    int rc = vms_cache_has(&r->store, VMS_CACHE_MANIFEST, id, NULL) ? 0 : manifest_in(r, id, path, err);
    vms_cache_unlock(&r->store, VMS_CACHE_MANIFEST, id);
    return rc;
}

static int copy_file(const char *src, const char *dest, fsp_error *err)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", dest);
    int in = open(src, O_RDONLY | O_CLOEXEC), out = in < 0 ? -1 : vms_mkostemp_readable(tmp);
    int rc = in < 0 ? -errno : out < 0 ? out : 0;
    char buf[65536];
    ssize_t got;
    while (!rc && (got = read(in, buf, sizeof buf)) != 0)
        rc = got < 0 ? -errno : vms_write_all(out, buf, (size_t)got);
    if (in >= 0)
        futimens(in, NULL); /* used now */
    if (in >= 0)
        close(in);
    if (rc) {
        if (out >= 0)
            close(out), unlink(tmp);
        return fsp_fail(err, FSP_EK_IO, rc, "copying a cached manifest: %s", strerror(-rc));
    }
    return vms_commit_file(out, tmp, dest, err);
}

static int vms_reflect_get_manifest(vms_repo *repo, const uint8_t id[FSP_SHA256_LEN], const char *dest,
                                    fsp_error *err)
{
    char path[PATH_MAX];
    int rc = cached_manifest(R(repo), id, path, sizeof path, err);
    if (!rc && (rc = copy_file(path, dest, err)) == -ENOENT) /* evicted meanwhile */
        rc = vms_repo_get_manifest(R(repo)->up, id, dest, err);
    return rc;
}

/* ---- versions: upstream's, judged by the trusted keys --------------------------------------- */

static int judge(const vms_reflect *r, const struct vms_version *v, fsp_error *err)
{
    if (!r->n_trusted)
        return 0;
    for (size_t i = 0; v->is_signed && i < r->n_trusted; i++)
        if (!memcmp(r->trusted[i].fingerprint, v->signer, FSP_SHA256_LEN))
            return vms_signature_valid(&r->trusted[i], v, v->signature) ? 0
                   : fsp_fail(err, VMS_EK_UNTRUSTED, -EPERM, "%s: %s@%u is badly signed: the "
                              "reflector refuses it", r->name, v->image, v->number);
    return fsp_fail(err, VMS_EK_UNTRUSTED, -EPERM, "%s: %s@%u is %s: the reflector trusts only "
                    "versions its keys signed", r->name, v->image, v->number,
                    v->is_signed ? "signed by a key it does not trust" : "unsigned");
}

static int vms_reflect_version(vms_repo *repo, const char *image, uint32_t version,
                               struct vms_version *out, fsp_error *err)
{
    int rc = vms_repo_version(R(repo)->up, image, version, out, err);
    return rc ? rc : judge(R(repo), out, err);
}

struct listing {
    vms_reflect *r;
    vms_version_cb cb;
    void *ctx;
    fsp_error err;
};

static int judged(void *ctx, const struct vms_version *v)
{
    struct listing *l = ctx;
    int rc = judge(l->r, v, &l->err);
    return rc ? rc : l->cb(l->ctx, v);
}

static int vms_reflect_list(vms_repo *repo, const char *image, vms_version_cb cb, void *ctx,
                            fsp_error *err)
{
    struct listing l = {R(repo), cb, ctx, {0}};
    int rc = vms_repo_list(R(repo)->up, image, judged, &l, err);
    if (rc && l.err.msg[0])
        *err = l.err;
    return rc;
}

/* ---- leases: upstream's, recorded as USER@HOST on the reflector's key ---------------------- */

/* Upstream's holder "alice@laptop" (the reflector's own client) reads here
 * as user alice at host laptop, as the serving side compares them. */
static void as_seen_here(struct vms_lease *l)
{
    char *at = strchr(l->host, '@');
    if (!at || (size_t)(at - l->host) >= sizeof l->user)
        return;
    memcpy(l->user, l->host, (size_t)(at - l->host));
    l->user[at - l->host] = 0;
    memmove(l->host, at + 1, strlen(at + 1) + 1);
}

static int vms_reflect_lease_get(vms_repo *repo, const char *image, struct vms_lease *out, bool *found,
                                 fsp_error *err)
{
    int rc = vms_repo_lease_get(R(repo)->up, image, out, found, err);
    if (!rc && *found)
        as_seen_here(out);
    return rc;
}

/* ---- the rest: upstream's ---------------------------------------------------------------- */

static const char *vms_reflect_path(const vms_repo *repo) { return ((const vms_reflect *)repo)->name; }
static void vms_reflect_traffic(const vms_repo *repo, struct vms_traffic *out)
{
    vms_repo_traffic(((const vms_reflect *)repo)->up, out);
}
static int vms_reflect_keep_alive(vms_repo *repo, fsp_error *err) { return vms_repo_keep_alive(R(repo)->up, err); }
static int vms_reflect_settle(vms_repo *repo, fsp_error *err) { return vms_repo_settle(R(repo)->up, err); }
static int vms_reflect_flush(vms_repo *repo, fsp_error *err) { return vms_repo_flush(R(repo)->up, err); }
static int vms_reflect_put(vms_repo *repo, const uint8_t hash[FSP_SHA256_LEN], const void *data, size_t len,
                           fsp_error *err)
{
    return vms_repo_put(R(repo)->up, hash, data, len, err);
}
static int vms_reflect_put_manifest(vms_repo *repo, const char *path, uint8_t id[FSP_SHA256_LEN], fsp_error *err)
{
    return vms_repo_put_manifest(R(repo)->up, path, id, err);
}
/* Upstream holds BASE: with BASE in the cache the line carries the delta.
 * Fetching BASE for it would cost the line more than the manifest itself. */
static int vms_reflect_put_manifest_delta(vms_repo *repo, const char *path, const uint8_t base[FSP_SHA256_LEN],
                                          const char *base_path, uint8_t id[FSP_SHA256_LEN], fsp_error *err)
{
    (void)base_path;
    char cached[PATH_MAX];
    if (!vms_cache_has(&R(repo)->store, VMS_CACHE_MANIFEST, base, NULL) ||
        cached_manifest(R(repo), base, cached, sizeof cached, err))
        return vms_repo_put_manifest(R(repo)->up, path, id, err);
    return vms_repo_put_manifest_from(R(repo)->up, path, base, cached, id, err);
}
static int vms_reflect_add_version(vms_repo *repo, const char *image, uint32_t parent,
                                   const uint8_t manifest[FSP_SHA256_LEN], const uint8_t digest[FSP_SHA256_LEN],
                                   uint64_t size, const char *message, uint32_t *number, fsp_error *err)
{
    return vms_repo_add_version(R(repo)->up, image, parent, manifest, digest, size, message, number, err);
}
static int vms_reflect_forget(vms_repo *repo, const char *image, uint32_t version, bool dry_run, fsp_error *err)
{
    return vms_repo_forget(R(repo)->up, image, version, dry_run, err);
}
static int vms_reflect_lease_take(vms_repo *repo, const char *image, uint32_t version, bool steal, fsp_error *err)
{
    return vms_repo_lease_take(R(repo)->up, image, version, steal, err);
}
static int vms_reflect_lease_release(vms_repo *repo, const char *image, fsp_error *err)
{
    return vms_repo_lease_release(R(repo)->up, image, err);
}
static int vms_reflect_audit(vms_repo *repo, const char *action, const char *image, uint32_t version,
                             const char *detail, fsp_error *err)
{
    return vms_repo_audit(R(repo)->up, action, image, version, detail, err);
}
static int vms_reflect_images(vms_repo *repo, vms_image_cb cb, void *ctx, fsp_error *err)
{
    return vms_repo_images(R(repo)->up, cb, ctx, err);
}
static int vms_reflect_leases(vms_repo *repo, const char *image, vms_lease_cb cb, void *ctx, fsp_error *err)
{
    return vms_repo_leases(R(repo)->up, image, cb, ctx, err);
}
static int vms_reflect_audit_log(vms_repo *repo, const char *image, int64_t since, vms_audit_cb cb, void *ctx,
                                 fsp_error *err)
{
    return vms_repo_audit_log(R(repo)->up, image, since, cb, ctx, err);
}
static int vms_reflect_stats(vms_repo *repo, struct vms_repo_stats *out, vms_image_usage_cb cb, void *ctx,
                             fsp_error *err)
{
    return vms_repo_stats(R(repo)->up, out, cb, ctx, err);
}
static int vms_reflect_key_public(vms_repo *repo, struct vms_public_key *out, fsp_error *err)
{
    return vms_repo_key_public(R(repo)->up, out, err);
}

/* The serving side's temporary files go in the cache; it gets no segment
 * cache (the objects are cached, in stored frames). */
static int vms_reflect_cache_dir(vms_repo *repo, const char *sub, char *path, size_t len, fsp_error *err)
{
    if (strcmp(sub, "tmp"))
        return fsp_fail(err, FSP_EK_USAGE, -ENOTSUP, "%s: a reflector keeps no %s cache", R(repo)->name, sub);
    snprintf(path, len, "%s/tmp", R(repo)->store.dir);
    return 0;
}

/* ---- open and close ---------------------------------------------------------------------- */

/* The cache is trimmed as a session ends, so that what a request fetched
 * stays until it is served (the cache may hold one session's fetch more
 * than its size meanwhile). */
static void vms_reflect_close(vms_repo *repo)
{
    vms_reflect *r = R(repo);
    if (r->store.added)
        vms_cache_evict(&r->store);
    vms_repo_close(r->up);
    vms_cache_store_close(&r->store);
    free(r);
}

int vms_reflect_open(const struct vms_reflect_opts *o, vms_repo **out, fsp_error *err)
{
    if (!vms_repo_is_remote(o->upstream))
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: upstream is not an ssh:// URL", o->name);
    vms_reflect *r = calloc(1, sizeof *r);
    if (!r)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    r->base.ops = &reflect_ops;
    snprintf(r->name, sizeof r->name, "%s", o->name);
    r->trusted = o->trusted;
    r->n_trusted = o->n_trusted;
    int rc = vms_cache_store_open(&r->store, o->dir, o->max, err);
    if (!rc)
        rc = vms_repo_open(o->upstream, o->user, o->host, o->remote, &r->up, err);
    if (rc) {
        vms_reflect_close(&r->base);
        return rc;
    }
    *out = &r->base;
    return 0;
}

static const struct vms_repo_ops reflect_ops = {
    .kind = "reflector",
    .close = vms_reflect_close,
    .path = vms_reflect_path,
    .traffic = vms_reflect_traffic,
    .keep_alive = vms_reflect_keep_alive,
    .has = vms_reflect_has,
    .put = vms_reflect_put,
    .flush = vms_reflect_flush,
    .settle = vms_reflect_settle,
    .get = vms_reflect_get,
    .get_stored = vms_reflect_get_stored,
    .put_manifest = vms_reflect_put_manifest,
    .put_manifest_delta = vms_reflect_put_manifest_delta,
    .get_manifest = vms_reflect_get_manifest,
    .version = vms_reflect_version,
    .add_version = vms_reflect_add_version,
    .list = vms_reflect_list,
    .forget = vms_reflect_forget,
    .lease_take = vms_reflect_lease_take,
    .lease_get = vms_reflect_lease_get,
    .lease_release = vms_reflect_lease_release,
    .audit = vms_reflect_audit,
    .images = vms_reflect_images,
    .leases = vms_reflect_leases,
    .audit_log = vms_reflect_audit_log,
    .stats = vms_reflect_stats,
    .cache_dir = vms_reflect_cache_dir,
    .key_public = vms_reflect_key_public,
    .prefetch = vms_reflect_prefetch,
};
