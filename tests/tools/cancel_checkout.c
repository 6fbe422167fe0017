/* cancel_checkout: a checkout over ssh:// on a second thread, cancelled from
 * the main thread once the link is silent.  For tests/e2e/remote_cancel.sh.
 *
 *   cancel_checkout URL NAME OUT KNOWN_HOSTS IDENTITY RELAY_STATS
 *
 * Waits until tests/lib/relay.py --stall-after reports the stall in
 * RELAY_STATS ("stalled": 1), lets the checkout wait on the silent link a
 * moment, cancels it from the main thread (vms_client_cancel) and times the
 * return.  Exit 0 when
 * the checkout returned FSP_EK_CANCELLED within a second of the fire, 1
 * otherwise (the reason on stderr).  Identity and cache from the environment
 * ($VMSYNC_HOST, $VMSYNC_CACHE), as for the CLI.  Uses the public API only. */
#include "vmsync.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct run {
    vms_client *c;
    struct vms_checkout_opts o;
    struct vms_stats st;
    fsp_error err;
    int rc;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *checkout_thread(void *arg)
{
    struct run *r = arg;
    r->rc = vms_checkout(r->c, &r->o, &r->st, &r->err);
    return NULL;
}

/* True once the relay's stats file counts a stalled connection. */
static bool relay_stalled(const char *stats)
{
    char buf[512] = {0};
    FILE *f = fopen(stats, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strstr(buf, "\"stalled\":");
    return p && atoi(p + strlen("\"stalled\":")) > 0;
}

static bool wait_for_stall(const char *stats, double seconds)
{
    for (double end = now() + seconds; now() < end; usleep(20000))
        if (relay_stalled(stats))
            return true;
    return false;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s URL NAME OUT KNOWN_HOSTS IDENTITY RELAY_STATS\n", argv[0]);
        return 2;
    }
    struct vms_remote_opts ro = {.known_hosts = argv[4], .identity = argv[5]};
    struct vms_client_opts co = {.remote = &ro};
    struct run r = {.o = {.name = argv[2], .out = argv[3]}};
    if (vms_client_open(argv[1], &co, &r.c, &r.err))
        return fprintf(stderr, "FAIL: %s\n", r.err.msg), 1;
    pthread_t th;
    if (pthread_create(&th, NULL, checkout_thread, &r))
        return fprintf(stderr, "FAIL: cannot start a thread\n"), 1;
    bool stalled = wait_for_stall(argv[6], 120);
    usleep(500000); /* the checkout is now deep in its wait on the silent link */
    double fired = now();
    vms_client_cancel(r.c);
    pthread_join(th, NULL);
    double took = now() - fired;
    vms_client_close(r.c);
    printf("the checkout returned %.3f s after the cancel: rc %d, kind %s: %s\n", took, r.rc,
           r.rc ? vms_error_kind_name(r.err.kind) : "none", r.rc ? r.err.msg : "(success)");
    if (!stalled)
        return fprintf(stderr, "FAIL: the relay never stalled\n"), 1;
    if (r.rc == 0 || r.err.kind != FSP_EK_CANCELLED)
        return fprintf(stderr, "FAIL: the checkout did not end as cancelled: %s\n", r.err.msg), 1;
    if (took >= 1.0)
        return fprintf(stderr, "FAIL: the cancel took %.3f s (more than a second)\n", took), 1;
    return 0;
}
