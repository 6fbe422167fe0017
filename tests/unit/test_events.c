/* Typed events: every phase has its documented name, and every operation on
 * a client ends with one DONE event carrying its result, a cancel's too. */
#include "check.h"
#include "vmsync.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The names --progress=json prints: scripts depend on them. */
static const char *const documented[] = {
    [VMS_PHASE_CONNECT] = "connect",
    [VMS_PHASE_SCAN_SEED] = "scan-seed",
    [VMS_PHASE_SCAN_IMAGE] = "scan-image",
    [VMS_PHASE_SCAN_OUTPUT] = "scan-output",
    [VMS_PHASE_SEED_COPY] = "seed-copy",
    [VMS_PHASE_FETCH] = "fetch",
    [VMS_PHASE_SEND] = "send",
    [VMS_PHASE_VERIFY] = "verify",
    [VMS_PHASE_CONVERT] = "convert",
    [VMS_PHASE_GC_MARK] = "gc-mark",
    [VMS_PHASE_GC_SWEEP] = "gc-sweep",
    [VMS_PHASE_CHECK_MANIFESTS] = "check-manifests",
    [VMS_PHASE_CHECK_OBJECTS] = "check-objects",
    [VMS_PHASE_DONE] = "done",
};

static void test_every_phase_has_its_name(void)
{
    for (int p = VMS_PHASE_CONNECT; p <= VMS_PHASE_DONE; p++) {
        const char *name = vms_phase_name((enum vms_phase)p);
        CHECK(documented[p] != NULL);
        if (documented[p] && strcmp(name, documented[p]))
            fprintf(stderr, "phase %d is named %s, not %s\n", p, name, documented[p]);
        CHECK(documented[p] && !strcmp(name, documented[p]));
        for (int q = VMS_PHASE_CONNECT; q < p; q++)
            CHECK(strcmp(name, vms_phase_name((enum vms_phase)q)) != 0);
    }
}

static void test_values_outside_the_enum_are_unknown(void)
{
    CHECK(!strcmp(vms_phase_name((enum vms_phase)0), "unknown"));
    CHECK(!strcmp(vms_phase_name((enum vms_phase)(VMS_PHASE_DONE + 1)), "unknown"));
    CHECK(!strcmp(vms_phase_name((enum vms_phase)-1), "unknown"));
    CHECK(!strcmp(vms_phase_name((enum vms_phase)1000), "unknown"));
}

/* What an operation told its client. */
struct heard {
    int events, dones, result;
    enum vms_phase last;
    bool error_set;
    enum vms_phase cancel_at; /* cancel at this phase's first event; 0: never */
};

static int on_event(void *ctx, const struct vms_event *ev)
{
    struct heard *h = ctx;
    h->events++;
    h->last = ev->phase;
    if (ev->phase == VMS_PHASE_DONE) {
        h->dones++;
        h->result = ev->result;
        h->error_set = ev->error != NULL;
    }
    return h->cancel_at && ev->phase == h->cancel_at;
}

static int count_version(void *ctx, const struct vms_version *v)
{
    (*(int *)ctx)++;
    return 0;
}

/* A new repository in a temporary directory, and a client on it. */
static vms_client *open_on_new_repo(char *dir, struct heard *h)
{
    fsp_error err;
    char repo[300];
    snprintf(repo, sizeof repo, "%s/repo", dir);
    struct vms_client_opts o = {.event = on_event, .ctx = h, .cache_dir = dir};
    vms_client *c = NULL;
    CHECK(vms_init_repo(repo, &err) == 0);
    CHECK(vms_client_open(repo, &o, &c, &err) == 0);
    CHECK(h->dones == 0); /* opening is no operation */
    return c;
}

static void test_each_operation_ends_with_one_done(void)
{
    char dir[] = "/tmp/vmsync-events-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    struct heard h = {0};
    vms_client *c = open_on_new_repo(dir, &h);
    fsp_error err;
    int n = 0;
    CHECK(c && vms_log(c, NULL, count_version, &n, &err) == 0);
    CHECK(h.dones == 1 && h.result == 0 && !h.error_set && h.last == VMS_PHASE_DONE);

    char dest[300];
    snprintf(dest, sizeof dest, "%s/m.vmsm", dir);
    int rc = c ? vms_fetch_manifest(c, "no-such-image", 0, dest, &err) : 0;
    CHECK(rc < 0);
    CHECK(h.dones == 2 && h.result == rc && h.error_set && h.last == VMS_PHASE_DONE);

    struct vms_gc_stats gs;
    h.cancel_at = VMS_PHASE_GC_MARK;
    rc = c ? vms_gc(c, &gs, &err) : 0;
    CHECK(rc == -ECANCELED && err.kind == FSP_EK_CANCELLED);
    CHECK(h.dones == 3 && h.result == rc && h.last == VMS_PHASE_DONE);

    h.cancel_at = 0;
    CHECK(c && vms_gc(c, &gs, &err) == 0); /* the handle works after a cancel */
    CHECK(h.dones == 4 && h.result == 0);
    vms_client_close(c);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    RUN(test_every_phase_has_its_name);
    RUN(test_values_outside_the_enum_are_unknown);
    RUN(test_each_operation_ends_with_one_done);
    return check_failures ? 1 : 0;
}
