/* vms_publish: a local repository written as a static web tree; the work
 * is repo/web's writer, on the client's open repository. */
#include "engine/engine.h"

#include <errno.h>
#include <string.h>

int vms_publish(vms_client *cl, const char *dir, struct vms_publish_stats *stats, fsp_error *err)
{
    struct vms_ctx c;
    memset(stats, 0, sizeof *stats);
    if (vms_repo_is_remote(cl->path) || vms_repo_is_web(cl->path))
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL,
                        "%s: publish reads a local repository: run it on the server", cl->path);
    int rc = vms_ctx_open(&c, cl, NULL, err);
    if (rc)
        return rc;
    rc = vms_web_publish(c.repo, dir, stats, err);
    stats->seconds = vms_ctx_elapsed(&c);
    return vms_ctx_close(&c, rc, err);
}
