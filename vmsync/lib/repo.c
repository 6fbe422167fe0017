/* vms_repo: one handle, two backends.  A local directory is served by
 * store.c and catalog.c; an ssh:// URL by remote.c.  Each call goes to the
 * handle's backend; the few that make sense for one backend only say so. */
#include "remote.h"
#include "repo_local.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct vms_repo {
    vms_local *local; /* exactly one of the two */
    vms_remote *remote;
};

#define DISPATCH(call, ...) \
    (r->remote ? vms_remote_##call(r->remote, __VA_ARGS__) : vms_local_##call(r->local, __VA_ARGS__))

bool vms_repo_is_remote(const char *path) { return strncmp(path, "ssh://", 6) == 0; }

int vms_repo_init(const char *path, fsp_error *err)
{
    if (vms_repo_is_remote(path))
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL,
                        "%s: init works on local paths only: run it on the server", path);
    return vms_local_init(path, err);
}

int vms_repo_open(const char *path, const char *user, const char *host,
                  const struct vms_remote_opts *remote, vms_repo **out, fsp_error *err)
{
    return vms_repo_open_cancellable(path, user, host, remote, NULL, out, err);
}

int vms_repo_open_cancellable(const char *path, const char *user, const char *host,
                              const struct vms_remote_opts *remote, const vms_cancel *cancel,
                              vms_repo **out, fsp_error *err)
{
    *out = NULL;
    vms_repo *r = calloc(1, sizeof *r);
    if (!r)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    int rc = vms_repo_is_remote(path) ? vms_remote_open(path, user, host, remote, cancel, &r->remote, err)
                                      : vms_local_open(path, user, host, &r->local, err);
    if (rc)
        free(r);
    else
        *out = r;
    return rc;
}

void vms_repo_close(vms_repo *r)
{
    if (!r)
        return;
    if (r->remote)
        vms_remote_close(r->remote);
    else
        vms_local_close(r->local);
    free(r);
}

const char *vms_repo_path(const vms_repo *r)
{
    return r->remote ? vms_remote_path(r->remote) : vms_local_path(r->local);
}

void vms_repo_traffic(const vms_repo *r, struct vms_traffic *out)
{
    if (r->remote)
        vms_remote_traffic(r->remote, out);
    else
        *out = r->local->traffic;
}

void vms_repo_on_progress(vms_repo *r, vms_progress_cb cb, void *ctx, const vms_cancel *cancel)
{
    if (r->remote)
        vms_remote_on_progress(r->remote, cb, ctx, cancel);
    else
        vms_local_on_cancel(r->local, cancel);
}

int vms_repo_has(vms_repo *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, uint8_t *present,
                 struct vms_object_size *sizes, fsp_error *err)
{
    return DISPATCH(has, hashes, n, present, sizes, err);
}

int vms_repo_put(vms_repo *r, const uint8_t hash[FSP_SHA256_LEN], const void *data, size_t len,
                 fsp_error *err)
{
    return DISPATCH(put, hash, data, len, err);
}

int vms_repo_flush(vms_repo *r, fsp_error *err) { return DISPATCH(flush, err); }

int vms_repo_get(vms_repo *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, vms_object_cb cb,
                 void *ctx, fsp_error *err)
{
    return DISPATCH(get, hashes, n, cb, ctx, err);
}

static int local_only(const vms_repo *r, const char *what, fsp_error *err)
{
    return fsp_fail(err, FSP_EK_USAGE, -ENOTSUP, "%s: %s needs a local repository",
                    vms_repo_path(r), what);
}

int vms_repo_get_stored(vms_repo *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                        vms_stored_cb cb, void *ctx, fsp_error *err)
{
    if (r->remote)
        return local_only(r, "reading stored objects", err);
    return vms_local_get_stored(r->local, hashes, n, cb, ctx, err);
}

int vms_repo_cache_dir(vms_repo *r, const char *sub, char *path, size_t len, fsp_error *err)
{
    if (r->remote)
        return local_only(r, "a repository cache", err);
    return vms_local_cache_dir(r->local, sub, path, len, err);
}

int vms_repo_put_manifest(vms_repo *r, const char *path, uint8_t id[FSP_SHA256_LEN], fsp_error *err)
{
    return DISPATCH(put_manifest, path, id, err);
}

int vms_repo_get_manifest(vms_repo *r, const uint8_t id[FSP_SHA256_LEN], const char *dest,
                          fsp_error *err)
{
    return DISPATCH(get_manifest, id, dest, err);
}

int vms_repo_version(vms_repo *r, const char *image, uint32_t version, struct vms_version *out,
                     fsp_error *err)
{
    return DISPATCH(version, image, version, out, err);
}

int vms_repo_add_version(vms_repo *r, const char *image, uint32_t parent,
                         const uint8_t manifest[FSP_SHA256_LEN], const uint8_t digest[FSP_SHA256_LEN],
                         uint64_t size, const char *message, uint32_t *number, fsp_error *err)
{
    return DISPATCH(add_version, image, parent, manifest, digest, size, message, number, err);
}

int vms_repo_list(vms_repo *r, const char *image, vms_version_cb cb, void *ctx, fsp_error *err)
{
    return DISPATCH(list, image, cb, ctx, err);
}

int vms_repo_lease_take(vms_repo *r, const char *image, uint32_t version, bool steal, fsp_error *err)
{
    return DISPATCH(lease_take, image, version, steal, err);
}

int vms_repo_lease_get(vms_repo *r, const char *image, struct vms_lease *out, bool *found,
                       fsp_error *err)
{
    return DISPATCH(lease_get, image, out, found, err);
}

int vms_repo_lease_release(vms_repo *r, const char *image, fsp_error *err)
{
    return DISPATCH(lease_release, image, err);
}

int vms_repo_audit(vms_repo *r, const char *action, const char *image, uint32_t version,
                   const char *detail, fsp_error *err)
{
    return DISPATCH(audit, action, image, version, detail, err);
}

int vms_repo_check(vms_repo *r, const struct vms_check_opts *o, const struct vms_check_hooks *h,
                   struct vms_check_stats *stats, fsp_error *err)
{
    if (r->remote)
        return local_only(r, "check", err);
    return vms_local_check(r->local, o, h, stats, err);
}

int vms_repo_gc(vms_repo *r, struct vms_gc_stats *stats, fsp_error *err)
{
    return DISPATCH(gc, stats, err);
}

int vms_repo_keep_alive(vms_repo *r, fsp_error *err)
{
    return r->remote ? vms_remote_keep_alive(r->remote, err) : 0;
}

void vms_repo_gc_wait(vms_repo *r, unsigned seconds)
{
    if (r->local)
        vms_local_gc_wait(r->local, seconds);
}
