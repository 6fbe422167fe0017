/* Opening a repository: a directory is the local backend (repo/local), an
 * ssh:// URL the agent's client (repo/remote), a file that reads as a tar or
 * "-" (standard input) a bundle (repo/bundle, read-only), an https:// or
 * http:// URL a published tree (repo/web, read-only).  After that, every call goes
 * through the handle's table of operations (repo.h). */
#include "repo/bundle/bundle.h"
#include "repo/cache/cache.h"
#include "repo/local/local.h"
#include "repo/remote/remote.h"
#include "repo/web/web.h"

#include <errno.h>
#include <string.h>

bool vms_repo_is_remote(const char *path) { return strncmp(path, "ssh://", 6) == 0; }

bool vms_repo_is_web(const char *path)
{
    return !strncmp(path, "https://", 8) || !strncmp(path, "http://", 7);
}

int vms_repo_init(const char *path, fsp_error *err)
{
    if (vms_repo_is_remote(path) || vms_repo_is_web(path))
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL,
                        "%s: init works on local paths only: run it on the server", path);
    return vms_local_init(path, err);
}

int vms_repo_open(const char *path, const char *user, const char *host,
                  const struct vms_remote_opts *remote, vms_repo **out, fsp_error *err)
{
    return vms_repo_open_reporting(path, user, host, remote, NULL, out, err);
}

int vms_repo_open_reporting(const char *path, const char *user, const char *host,
                            const struct vms_remote_opts *remote,
                            const struct vms_repo_progress *progress, vms_repo **out,
                            fsp_error *err)
{
    static const struct vms_repo_progress silent = {0};
    if (!progress)
        progress = &silent;
    if (vms_repo_is_remote(path))
        return vms_remote_open(path, user, host, remote, progress, out, err);
    if (vms_repo_is_web(path))
        return vms_web_open(path, remote, progress, out, err);
    if (!strcmp(path, "-") || vms_bundle_sniff(path))
        return vms_bundle_open(path, progress, out, err);
    return vms_local_open(path, user, host, progress, out, err);
}

int vms_repo_open_reflector(const struct vms_reflect_opts *o, vms_repo **out, fsp_error *err)
{
    return vms_reflect_open(o, out, err);
}

int vms_repo_report(const struct vms_repo_progress *p, enum vms_phase phase, uint64_t done,
                    uint64_t total, fsp_error *err)
{
    if (!p || (!vms_cancel_fired(p->cancel) && (!p->fn || !p->fn(p->ctx, phase, done, total))))
        return 0;
    return fsp_fail(err, FSP_EK_CANCELLED, -ECANCELED, "cancelled during %s", vms_phase_name(phase));
}

int vms_repo_local_only(const vms_repo *r, const char *what, fsp_error *err)
{
    return fsp_fail(err, FSP_EK_USAGE, -ENOTSUP, "%s: %s needs a local repository",
                    vms_repo_path(r), what);
}

int vms_repo_read_only(const vms_repo *r, const char *what, fsp_error *err)
{
    if (!strcmp(r->ops->kind, "web"))
        return fsp_fail(err, FSP_EK_USAGE, -EROFS,
                        "%s: %s: a web-served repository is read-only (check in through ssh://)",
                        vms_repo_path(r), what);
    return fsp_fail(err, FSP_EK_USAGE, -EROFS, "%s: %s: the repository is read-only", vms_repo_path(r),
                    what);
}

int vms_repo_not_bundle(const vms_repo *r, fsp_error *err)
{
    return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: not a bundle", vms_repo_path(r));
}
