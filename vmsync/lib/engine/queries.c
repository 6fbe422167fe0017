/* The engine's queries (images, leases, the audit log) and the giving back of
 * a lease: each asks the client's repository once. */
#include "engine/engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int vms_images(vms_client *cl, vms_image_cb cb, void *ctx, fsp_error *err)
{
    struct vms_ctx c;
    int rc = vms_ctx_open(&c, cl, NULL, err);
    if (!rc)
        rc = vms_repo_images(c.repo, cb, ctx, err);
    return vms_ctx_close(&c, rc, err);
}

int vms_leases(vms_client *cl, const char *name, vms_lease_cb cb, void *ctx,
               fsp_error *err)
{
    struct vms_ctx c;
    int rc = vms_ctx_open(&c, cl, NULL, err);
    if (!rc)
        rc = vms_repo_leases(c.repo, name, cb, ctx, err);
    return vms_ctx_close(&c, rc, err);
}

int vms_audit_log(vms_client *cl, const char *name, int64_t since, vms_audit_cb cb,
                  void *ctx, fsp_error *err)
{
    struct vms_ctx c;
    int rc = vms_ctx_open(&c, cl, NULL, err);
    if (!rc)
        rc = vms_repo_audit_log(c.repo, name, since, cb, ctx, err);
    return vms_ctx_close(&c, rc, err);
}

/* The lease is looked at first so that nobody's lease records nothing, and
 * the entry names the version that was checked out.  Without a lease, an
 * unknown NAME is still VMS_EK_NOTFOUND. */
static int release_leased(struct vms_ctx *c, const char *name, bool *released, fsp_error *err)
{
    struct vms_lease held;
    struct vms_version latest;
    int rc = vms_repo_lease_get(c->repo, name, &held, released, err);
    if (!rc && !*released)
        rc = vms_repo_version(c->repo, name, 0, &latest, err);
    if (!rc && *released)
        rc = vms_repo_lease_release(c->repo, name, err); /* refused unless ours */
    if (!rc && *released)
        rc = vms_repo_audit(c->repo, "release", name, held.version, "lease given back", err);
    return rc;
}

int vms_release(vms_client *cl, const char *name, bool *released, fsp_error *err)
{
    struct vms_ctx c;
    *released = false;
    int rc = vms_ctx_open(&c, cl, NULL, err);
    if (!rc)
        rc = release_leased(&c, name, released, err);
    if (rc)
        *released = false;
    return vms_ctx_close(&c, rc, err);
}

/* Digits only, into *OUT. */
static bool parse_seconds(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || *s < '0' || *s > '9')
        return false;
    *out = v;
    return true;
}

/* A date, optionally with a time and a "Z", all UTC. */
static bool parse_iso(const char *s, int64_t *out)
{
    static const char *const forms[] = {"%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S",
                                        "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"};
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        struct tm tm = {0};
        const char *end = strptime(s, forms[i], &tm);
        if (end && !*end) {
            *out = (int64_t)timegm(&tm);
            return true;
        }
    }
    return false;
}

int vms_parse_time(const char *s, int64_t *out, fsp_error *err)
{
    if (parse_seconds(s, out) || parse_iso(s, out))
        return 0;
    return fsp_fail(err, FSP_EK_USAGE, -EINVAL,
                    "'%s' is not a time: expected Unix seconds, or a date like 2026-12-01 or "
                    "2026-12-01T10:00:00Z (UTC)", s);
}
