/* Operations on a repository as a whole: creating it, its history, gc and
 * the check. */
#include "engine/engine.h"

#include <errno.h>
#include <string.h>

int vms_init_repo(const char *path, fsp_error *err) { return vms_repo_init(path, err); }

int vms_log(const struct vms_session *s, const char *name, vms_version_cb cb, void *ctx, fsp_error *err)
{
    struct vms_ctx c;
    int rc = vms_ctx_open(&c, s, NULL, err);
    if (!rc)
        rc = vms_repo_list(c.repo, name, cb, ctx, err);
    vms_ctx_close(&c);
    return rc;
}

int vms_gc(const struct vms_session *s, struct vms_gc_stats *stats, fsp_error *err)
{
    struct vms_ctx c;
    memset(stats, 0, sizeof *stats);
    int rc = vms_ctx_open(&c, s, NULL, err);
    if (!rc) {
        vms_repo_gc_wait(c.repo, s->gc_wait);
        rc = vms_repo_gc(c.repo, stats, err);
    }
    vms_ctx_close(&c);
    return rc;
}

int vms_check(const struct vms_session *s, const struct vms_check_opts *o, vms_problem_cb cb,
              void *ctx, struct vms_check_stats *stats, fsp_error *err)
{
    memset(stats, 0, sizeof *stats);
    if (vms_repo_is_remote(s->repo))
        return fsp_fail(err, FSP_EK_USAGE, -ENOTSUP,
                        "%s: check runs on the server itself: vmsync check /path/to/repository",
                        s->repo);
    struct vms_ctx c;
    struct vms_check_hooks h = {cb, ctx, s->progress, s->ctx};
    int rc = vms_ctx_open(&c, s, NULL, err);
    if (!rc)
        rc = vms_repo_check(c.repo, o, &h, stats, err);
    stats->seconds = vms_ctx_elapsed(&c);
    vms_ctx_close(&c);
    return rc;
}
