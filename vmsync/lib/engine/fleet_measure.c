/* What each laptop of a fleet lacks, measured by the checkout's own plan: the
 * seeds are the manifests of what the laptop holds (versions of the
 * repository, fetched once each, and manifest files), so the figures are
 * those a real checkout from the images behind them moves. */
#include "engine/fleet.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct measuring {
    struct vms_fleet *f;
    vms_client *c;
    char tmp[PATH_MAX - 64];         /* the fetched manifests' folder; "" until made */
    char (*refs)[320];               /* the versions fetched, by ref; file i is tmp/i */
    size_t n_refs;
    struct vms_fleet_site *site;     /* the reflector whose union plan_object adds to */
};

static int nomem(fsp_error *err) { return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

static int make_tmp(struct measuring *m, fsp_error *err)
{
    const char *t = getenv("TMPDIR");
    if (m->tmp[0])
        return 0;
    snprintf(m->tmp, sizeof m->tmp, "%s/vmsync-fleet.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(m->tmp))
        return m->tmp[0] = 0, fsp_fail(err, FSP_EK_IO, -errno, "cannot make a temporary folder: %s",
                                      strerror(errno));
    return 0;
}

/* REF's manifest in OUT: fetched on first use. */
static int version_manifest(struct measuring *m, const char *ref, char *out, size_t len, fsp_error *err)
{
    char name[256];
    uint32_t version;
    size_t i = 0;
    int rc = vms_parse_ref(ref, name, sizeof name, &version, err);
    while (!rc && i < m->n_refs && strcmp(m->refs[i], ref))
        i++;
    if (!rc)
        snprintf(out, len, "%s/%zu.vmsm", m->tmp, i);
    if (rc || i < m->n_refs)
        return rc;
    void *grown = realloc(m->refs, (m->n_refs + 1) * sizeof *m->refs);
    if (!grown)
        return nomem(err);
    m->refs = grown;
    snprintf(m->refs[m->n_refs++], sizeof *m->refs, "%s", ref);
    rc = vms_fetch_manifest(m->c, name, version, out, err);
    if (rc) {
        unlink(out); /* remove_tmp forgets it: the folder must come out empty */
        m->n_refs--;
    }
    return rc;
}

static int manifest_path(const struct vms_fleet *f, const char *path, char *out, size_t len,
                         fsp_error *err)
{
    int n = path[0] == '/' ? snprintf(out, len, "%s", path) : snprintf(out, len, "%s/%s", f->dir, path);
    if (n < 0 || (size_t)n >= len)
        return fsp_fail(err, FSP_EK_USAGE, -ENAMETOOLONG, "%s: path too long", path);
    if (!vms_is_manifest(out))
        return fsp_fail(err, FSP_EK_FORMAT, -EINVAL, "%s: not a manifest file (vmsync manifest "
                        "IMAGE -o FILE makes one)", out);
    return 0;
}

static int plan_object(void *ctx, const struct vms_plan_object *o)
{
    struct vms_fleet_site *s = ctx;
    size_t index;
    bool added;
    if (vms_keyset_add(s->held, o->hash, &index, &added))
        return -ENOMEM;
    s->union_bytes += added ? o->stored : 0;
    return 0;
}

static int add_to_union(struct vms_fleet_site *s, const vms_plan *plan, fsp_error *err)
{
    if (!s->held && !(s->held = calloc(1, sizeof *s->held)))
        return nomem(err);
    return vms_plan_objects(plan, plan_object, s) ? nomem(err) : 0;
}

static void take_figures(struct vms_fleet_node *n, const vms_plan *plan)
{
    const struct vms_plan_figures *fig = vms_plan_figures(plan);
    n->out.bytes = fig->bytes_to_fetch_stored;
    n->out.bytes_raw = fig->bytes_to_fetch_raw;
    n->out.objects = fig->objects_to_fetch;
    n->out.bytes_from_seeds = fig->bytes_from_seeds;
}

static int measure_laptop(struct measuring *m, struct vms_fleet_node *n, fsp_error *err)
{
    char paths[2 * VMS_FLEET_SEEDS_MAX][PATH_MAX];
    const char *seeds[2 * VMS_FLEET_SEEDS_MAX];
    size_t k = 0;
    int rc = n->n_versions ? make_tmp(m, err) : 0;
    for (size_t i = 0; !rc && i < n->n_versions; i++, k++)
        rc = version_manifest(m, n->versions[i], paths[k], PATH_MAX, err);
    for (size_t i = 0; !rc && i < n->n_manifests; i++, k++)
        rc = manifest_path(m->f, n->manifests[i], paths[k], PATH_MAX, err);
    for (size_t i = 0; i < k; i++)
        seeds[i] = paths[i];
    struct vms_checkout_opts o = {.name = m->f->image, .version = m->f->version, .seeds = seeds,
                                  .n_seeds = k};
    vms_plan *plan = NULL;
    if (!rc)
        rc = vms_checkout_plan(m->c, &o, &plan, err);
    if (!rc)
        take_figures(n, plan);
    struct vms_fleet_site *s = &m->f->sites[n->branch];
    if (!rc && (s->out.reflector || s->out.offline))
        rc = add_to_union(s, plan, err);
    vms_plan_free(plan);
    return rc;
}

static void remove_tmp(struct measuring *m)
{
    char path[PATH_MAX + 32];
    for (size_t i = 0; i < m->n_refs; i++) {
        snprintf(path, sizeof path, "%s/%zu.vmsm", m->tmp, i);
        unlink(path);
    }
    if (m->tmp[0])
        rmdir(m->tmp);
    free(m->refs);
}

int vms_fleet_measure(vms_fleet *f, vms_client *c, fsp_error *err)
{
    struct measuring m = {.f = f, .c = c};
    struct vms_version v;
    int rc = vms_version_lookup(c, f->image, f->version, &v, err);
    if (!rc)
        f->version = v.number;
    for (size_t i = 0; !rc && i < f->n_nodes; i++)
        if (f->nodes[i].out.measured)
            rc = measure_laptop(&m, &f->nodes[i], err);
    remove_tmp(&m);
    f->measured = !rc;
    return rc;
}

/* ---- an offline branch's bundle ------------------------------------------------------- */

/* Whether every laptop of BRANCH lists ITEM among its versions (or its
 * manifest files): only then may the branch's one bundle leave it out. */
static bool all_hold(const struct vms_fleet *f, size_t branch, const char *item, bool version)
{
    for (size_t i = 0; i < f->n_nodes; i++) {
        const struct vms_fleet_node *n = &f->nodes[i];
        char **list = version ? n->versions : n->manifests;
        size_t count = version ? n->n_versions : n->n_manifests, k = 0;
        while (n->branch == branch && k < count && strcmp(list[k], item))
            k++;
        if (n->branch == branch && k == count)
            return false;
    }
    return true;
}

static const struct vms_fleet_node *first_of(const struct vms_fleet *f, size_t branch)
{
    for (size_t i = 0; i < f->n_nodes; i++)
        if (f->nodes[i].branch == branch)
            return &f->nodes[i];
    return NULL;
}

/* The manifests of what every laptop of BRANCH holds, into PATHS. */
static int common_holdings(struct measuring *m, size_t branch, char (*paths)[PATH_MAX], size_t *k,
                           fsp_error *err)
{
    const struct vms_fleet_node *n = first_of(m->f, branch);
    int rc = 0;
    for (size_t i = 0; !rc && n && i < n->n_versions; i++)
        if (all_hold(m->f, branch, n->versions[i], true)) {
            rc = make_tmp(m, err);
            if (!rc)
                rc = version_manifest(m, n->versions[i], paths[*k], PATH_MAX, err);
            *k += !rc;
        }
    for (size_t i = 0; !rc && n && i < n->n_manifests; i++)
        if (all_hold(m->f, branch, n->manifests[i], false)) {
            rc = manifest_path(m->f, n->manifests[i], paths[*k], PATH_MAX, err);
            *k += !rc;
        }
    return rc;
}

int vms_fleet_bundle(vms_fleet *f, vms_client *c, size_t branch, const char *out,
                     struct vms_bundle_stats *stats, fsp_error *err)
{
    struct measuring m = {.f = f, .c = c};
    char paths[2 * VMS_FLEET_SEEDS_MAX][PATH_MAX];
    const char *have[2 * VMS_FLEET_SEEDS_MAX];
    size_t k = 0;
    if (branch >= f->n_sites || !f->sites[branch].out.offline)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "branch %zu is not an offline branch", branch);
    int rc = common_holdings(&m, branch, paths, &k, err);
    for (size_t i = 0; i < k; i++)
        have[i] = paths[i];
    struct vms_bundle_create_opts o = {.name = f->image, .version = f->version, .out = out,
                                       .have = have, .n_have = k, .force = true};
    if (!rc)
        rc = vms_bundle_create(c, &o, stats, err);
    remove_tmp(&m);
    return rc;
}
