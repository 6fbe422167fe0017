/* One vms_client across several operations on a real local repository (a
 * small ext4 image made with mke2fs -d): each operation reports its own
 * figures, a failed one leaves the handle usable, a cancel with nothing
 * running does not cancel the next operation, and every operation ends with
 * one DONE event. */
#include "check.h"
#include "vmsync.h"

#include <errno.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct events {
    unsigned done;  /* DONE events seen */
    int last_result;
};

static vms_client *client;
static struct events seen;

static int on_event(void *ctx, const struct vms_event *ev)
{
    struct events *e = ctx;
    if (ev->phase == VMS_PHASE_DONE) {
        e->done++;
        e->last_result = ev->result;
    }
    return 0;
}

static char *make_image(const char *name, const char *text)
{
    char *tree = scratch_path("tree"), *image = scratch_path(name), cmd[1024];
    snprintf(cmd, sizeof cmd,
             "rm -rf %s && mkdir -p %s/etc && echo %s >%s/etc/motd && "
             "head -c 300000 /dev/urandom >%s/blob && "
             "mke2fs -q -F -t ext4 -d %s %s 8M >/dev/null 2>&1",
             tree, tree, text, tree, tree, tree, image);
    CHECK(system(cmd) == 0);
    free(tree);
    return image;
}

static int import(vms_client *c, const char *image, struct vms_stats *st, fsp_error *err)
{
    struct vms_import_opts o = {.image = image, .name = "desk", .message = "test"};
    return vms_import(c, &o, st, err);
}

/* A second import on the same handle counts its own objects only (the
 * handle's running totals include the first). */
static void test_each_operation_reports_its_own_figures(void)
{
    vms_client *c = client;
    struct events *ev = &seen;
    char *a = make_image("a.ext4", "one"), *b = make_image("b.ext4", "two");
    struct vms_stats first, again, other;
    fsp_error err = {0};
    CHECK(import(c, a, &first, &err) == 0);
    CHECK(import(c, a, &again, &err) == 0);
    CHECK(import(c, b, &other, &err) == 0);
    CHECK(first.objects_sent > 0);
    CHECK(again.objects_sent == 0 && again.bytes_sent_raw == 0); /* all there already */
    CHECK(other.objects_sent > 0 && other.bytes_sent_raw < first.bytes_sent_raw + other.bytes_sent_raw);
    CHECK(ev->done == 3 && ev->last_result == 0);
    free(a);
    free(b);
}

/* A failed operation ends with DONE carrying its error, and the handle
 * serves the next one. */
static void test_a_failure_leaves_the_handle_usable(void)
{
    vms_client *c = client;
    struct events *ev = &seen;
    char *missing = scratch_path("no-such.img"), *out = scratch_path("out.img");
    struct vms_stats st;
    fsp_error err = {0};
    unsigned before = ev->done;
    CHECK(import(c, missing, &st, &err) < 0 && err.kind == FSP_EK_OPEN);
    CHECK(ev->done == before + 1 && ev->last_result < 0);
    struct vms_checkout_opts o = {.name = "desk", .out = out, .export_only = true};
    memset(&err, 0, sizeof err);
    CHECK(vms_checkout(c, &o, &st, &err) == 0);
    CHECK(access(out, R_OK) == 0 && st.version == 3);
    free(missing);
    free(out);
}

/* A cancel when nothing runs is forgotten when the next operation starts. */
static void test_a_cancel_between_operations_is_forgotten(void)
{
    vms_client *c = client;
    char *out = scratch_path("out2.img");
    struct vms_stats st;
    fsp_error err = {0};
    vms_client_cancel(c);
    struct vms_checkout_opts o = {.name = "desk", .out = out, .export_only = true};
    CHECK(vms_checkout(c, &o, &st, &err) == 0);
    if (err.msg[0])
        fprintf(stderr, "  %s\n", err.msg);
    free(out);
}

int main(void)
{
    if (scratch_begin("client"))
        return 1;
    char *repo = scratch_path("repo"), *cache = scratch_path("cache");
    struct vms_client_opts o = {.cache_dir = cache, .user = "tester", .host = "one", .event = on_event,
                                .ctx = &seen};
    fsp_error err = {0};
    CHECK(vms_init_repo(repo, &err) == 0);
    CHECK(vms_client_open(repo, &o, &client, &err) == 0);
    if (client) {
        RUN(test_each_operation_reports_its_own_figures);
        RUN(test_a_failure_leaves_the_handle_usable);
        RUN(test_a_cancel_between_operations_is_forgotten);
    }
    vms_client_close(client);
    free(repo);
    free(cache);
    scratch_end();
    return check_failures ? 1 : 0;
}
