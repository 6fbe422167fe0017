/* Operations on a repository as a whole: creating it, its history, gc and
 * the check. */
#include "engine/engine.h"

#include <errno.h>
#include <string.h>

int vms_init_repo(const char *path, fsp_error *err) { return vms_repo_init(path, err); }

int vms_log(vms_client *cl, const char *name, vms_version_cb cb, void *ctx, fsp_error *err)
{
    struct vms_ctx c;
    int rc = vms_ctx_open(&c, cl, NULL, err);
    if (!rc)
        rc = vms_repo_list(c.repo, name, cb, ctx, err);
    return vms_ctx_close(&c, rc, err);
}

int vms_gc(vms_client *cl, struct vms_gc_stats *stats, fsp_error *err)
{
    struct vms_ctx c;
    memset(stats, 0, sizeof *stats);
    int rc = vms_ctx_open(&c, cl, NULL, err);
    if (!rc) {
        vms_repo_gc_wait(c.repo, cl->o.gc_wait);
        rc = vms_repo_gc(c.repo, stats, err);
    }
    return vms_ctx_close(&c, rc, err);
}

int vms_check(vms_client *cl, const struct vms_check_opts *o, vms_problem_cb cb,
              void *ctx, struct vms_check_stats *stats, fsp_error *err)
{
    memset(stats, 0, sizeof *stats);
    struct vms_ctx c;
    struct vms_check_hooks h = {cb, ctx};
    int rc = 0;
    vms_ctx_begin(&c, cl, NULL); /* even to refuse: the refusal ends in DONE */
    if (vms_repo_is_remote(cl->path))
        rc = fsp_fail(err, FSP_EK_USAGE, -ENOTSUP,
                      "%s: check runs on the server itself: vmsync check /path/to/repository",
                      cl->path);
    if (!rc)
        rc = vms_ctx_connect(&c, err);
    if (!rc)
        rc = vms_repo_check(c.repo, o, &h, stats, err);
    stats->seconds = vms_ctx_elapsed(&c);
    return vms_ctx_close(&c, rc, err);
}

/* The key is made on the server: a remote client is refused before it connects. */
static int open_for_generate(struct vms_ctx *c, vms_client *cl, fsp_error *err)
{
    vms_ctx_begin(c, cl, NULL); /* even to refuse: the refusal ends in DONE */
    if (vms_repo_is_remote(cl->path))
        return fsp_fail(err, FSP_EK_USAGE, -ENOTSUP,
                        "%s: the signing key stays on the server: run vmsync key there, on the "
                        "repository's folder",
                        cl->path);
    return vms_ctx_connect(c, err);
}

int vms_key_generate(vms_client *cl, bool force, struct vms_public_key *out, fsp_error *err)
{
    struct vms_ctx c;
    int rc = open_for_generate(&c, cl, err);
    if (!rc)
        rc = vms_repo_key_generate(c.repo, force, out, err);
    return vms_ctx_close(&c, rc, err);
}

int vms_key_show(vms_client *cl, struct vms_public_key *out, fsp_error *err)
{
    struct vms_ctx c;
    int rc = vms_ctx_open(&c, cl, NULL, err);
    if (!rc)
        rc = vms_repo_key_public(c.repo, out, err);
    return vms_ctx_close(&c, rc, err);
}

int vms_gc_dry_run(vms_client *cl, struct vms_gc_stats *stats, fsp_error *err)
{
    struct vms_ctx c;
    memset(stats, 0, sizeof *stats);
    int rc = vms_ctx_open(&c, cl, NULL, err);
    if (!rc)
        rc = vms_repo_gc_estimate(c.repo, stats, err);
    return vms_ctx_close(&c, rc, err);
}

int vms_stats(vms_client *cl, struct vms_repo_stats *out, vms_image_usage_cb cb, void *ctx,
              fsp_error *err)
{
    struct vms_ctx c;
    memset(out, 0, sizeof *out);
    int rc = vms_ctx_open(&c, cl, NULL, err);
    if (!rc)
        rc = vms_repo_stats(c.repo, out, cb, ctx, err);
    return vms_ctx_close(&c, rc, err);
}
