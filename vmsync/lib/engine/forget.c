/* Forgetting versions: one by name (vms_forget), or by a retention policy
 * (vms_prune, whose choice is the pure vms_retention_select). */
#include "engine/engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int vms_forget(vms_client *cl, const char *name, uint32_t version, bool dry_run, fsp_error *err)
{
    struct vms_ctx c;
    int rc = vms_ctx_open(&c, cl, NULL, err);
    if (!rc && version == 0)
        rc = fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: forget needs NAME@VERSION", cl->path);
    if (!rc)
        rc = vms_repo_forget(c.repo, name, version, dry_run, err);
    return vms_ctx_close(&c, rc, err);
}

/* ---- the retention rules ------------------------------------------------------ */

static int64_t day_of(int64_t t) { return t >= 0 ? t / 86400 : (t - 86399) / 86400; }

static int64_t month_of(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    return gmtime_r(&tt, &tm) ? (int64_t)tm.tm_year * 12 + tm.tm_mon : day_of(t);
}

/* Whether a version newer than I already keeps I's period by BIT: clocks may
 * step back, so a period is not always one run of versions. */
static bool period_kept(int64_t (*period)(int64_t), const int64_t *created, size_t i, size_t n,
                        const unsigned *why, unsigned bit)
{
    for (size_t j = i + 1; j < n; j++)
        if ((why[j] & bit) && period(created[j]) == period(created[i]))
            return true;
    return false;
}

/* Walking from the newest version, the first of each period, COUNT periods. */
static void keep_newest_per(int64_t (*period)(int64_t), uint32_t count, const int64_t *created,
                            size_t n, unsigned *why, unsigned bit)
{
    uint32_t kept = 0;
    for (size_t i = n; i-- > 0 && kept < count;)
        if (!period_kept(period, created, i, n, why, bit)) {
            why[i] |= bit;
            kept++;
        }
}

void vms_retention_select(const struct vms_retention *p, const int64_t *created, size_t n,
                          unsigned *why)
{
    memset(why, 0, n * sizeof *why);
    for (size_t i = n > p->keep_last ? n - p->keep_last : 0; i < n; i++)
        why[i] |= VMS_KEEP_LAST;
    keep_newest_per(day_of, p->keep_daily, created, n, why, VMS_KEEP_DAILY);
    keep_newest_per(month_of, p->keep_monthly, created, n, why, VMS_KEEP_MONTHLY);
    if (n)
        why[n - 1] |= VMS_KEEP_LATEST;
}

/* ---- prune ---------------------------------------------------------------------- */

struct prune_work {
    struct vms_version *v; /* sorted by image, then number */
    size_t n, cap;
    struct vms_lease_info *leases; /* image names owned (strdup) */
    size_t n_leases, cap_leases;
};

static int nomem(fsp_error *err) { return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

static int grow(void **p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t want = *cap ? *cap * 2 : 64;
    void *q = realloc(*p, want * size);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = want;
    return 0;
}

static int add_version(void *ctx, const struct vms_version *v)
{
    struct prune_work *w = ctx;
    if (grow((void **)&w->v, &w->cap, w->n, sizeof *w->v))
        return -ENOMEM;
    w->v[w->n++] = *v;
    return 0;
}

static int add_lease(void *ctx, const struct vms_lease_info *l)
{
    struct prune_work *w = ctx;
    if (grow((void **)&w->leases, &w->cap_leases, w->n_leases, sizeof *w->leases))
        return -ENOMEM;
    char *image = strdup(l->image);
    if (!image)
        return -ENOMEM;
    w->leases[w->n_leases++] = (struct vms_lease_info){.image = image, .version = l->version};
    return 0;
}

static void free_work(struct prune_work *w)
{
    for (size_t i = 0; i < w->n_leases; i++)
        free((char *)w->leases[i].image);
    free(w->leases);
    free(w->v);
}

static int by_image_then_number(const void *a, const void *b)
{
    const struct vms_version *x = a, *y = b;
    int c = strcmp(x->image, y->image);
    return c ? c : (x->number > y->number) - (x->number < y->number);
}

static bool is_leased(const struct prune_work *w, const struct vms_version *v)
{
    for (size_t i = 0; i < w->n_leases; i++)
        if (w->leases[i].version == v->number && !strcmp(w->leases[i].image, v->image))
            return true;
    return false;
}

/* A callback's -ENOMEM into a message; its other failures are the callback's. */
static int collected(int rc, fsp_error *err) { return rc == -ENOMEM && !err->kind ? nomem(err) : rc; }

static int gather(struct vms_ctx *c, const char *name, struct prune_work *w, fsp_error *err)
{
    int rc = collected(vms_repo_list(c->repo, name, add_version, w, err), err);
    if (!rc)
        rc = collected(vms_repo_leases(c->repo, name, add_lease, w, err), err);
    if (!rc && w->n)
        qsort(w->v, w->n, sizeof *w->v, by_image_then_number);
    return rc;
}

struct prune_run {
    struct vms_ctx *c;
    const struct vms_retention *p;
    bool dry_run;
    vms_prune_cb cb;
    void *ctx;
};

/* One image's versions, V[0..n), oldest first. */
static int prune_image(struct prune_run *run, const struct prune_work *w, const struct vms_version *v,
                       size_t n, fsp_error *err)
{
    int64_t *created = malloc(n * sizeof *created);
    unsigned *why = malloc(n * sizeof *why);
    int rc = created && why ? 0 : nomem(err);
    for (size_t i = 0; !rc && i < n; i++)
        created[i] = v[i].created;
    if (!rc)
        vms_retention_select(run->p, created, n, why);
    for (size_t i = 0; !rc && i < n; i++) {
        if (is_leased(w, &v[i]))
            why[i] |= VMS_KEEP_LEASED;
        if (!why[i])
            rc = vms_repo_forget(run->c->repo, v[i].image, v[i].number, run->dry_run, err);
        if (!rc && run->cb)
            rc = run->cb(run->ctx, &v[i], why[i]);
    }
    free(created);
    free(why);
    return rc;
}

int vms_prune(vms_client *cl, const char *name, const struct vms_retention *p, bool dry_run,
              vms_prune_cb cb, void *ctx, fsp_error *err)
{
    struct vms_ctx c;
    struct prune_work w = {0};
    struct prune_run run = {&c, p, dry_run, cb, ctx};
    int rc = vms_ctx_open(&c, cl, NULL, err);
    if (!rc && !p->keep_last && !p->keep_daily && !p->keep_monthly)
        rc = fsp_fail(err, FSP_EK_USAGE, -EINVAL,
                      "%s: prune needs a policy: --keep-last, --keep-daily or --keep-monthly",
                      cl->path);
    if (!rc && !c.repo->ops->forget) /* refused even when it would forget nothing */
        rc = vms_repo_read_only(c.repo, "prune", err);
    if (!rc)
        rc = gather(&c, name, &w, err);
    for (size_t i = 0, j; !rc && i < w.n; i = j) {
        for (j = i + 1; j < w.n && !strcmp(w.v[j].image, w.v[i].image); j++)
            ;
        rc = prune_image(&run, &w, w.v + i, j - i, err);
    }
    free_work(&w);
    return vms_ctx_close(&c, rc, err);
}
