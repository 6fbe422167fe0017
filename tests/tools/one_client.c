/* A thin client of libvmsync, built with only the public headers on its
 * include path, as a window would be: one handle, then several operations
 * on it (the history of an image, who holds it, a checkout, and who holds
 * it then).  The tests count the SSH connections that this makes.
 *
 *   one_client REPO NAME OUT [--known-hosts F] [-i KEY] [--seed IMAGE]
 *
 * Prints one JSON object: the number of versions, the lease holder after the
 * checkout, and the checkout's figures.  An image held before is refused.  Exit status 0, or 1 with the error on stderr. */
#include "vmsync.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

struct run {
    const char *name;
    uint32_t versions;
    char holder[512]; /* user@host of the lease after the checkout, "" when none */
};

static int count_version(void *ctx, const struct vms_version *v)
{
    struct run *r = ctx;
    r->versions += strcmp(v->image, r->name) == 0;
    return 0;
}

static int note_holder(void *ctx, const struct vms_lease_info *l)
{
    struct run *r = ctx;
    snprintf(r->holder, sizeof r->holder, "%s@%s", l->user, l->host);
    return 0;
}

static int parse(int argc, char **argv, struct vms_remote_opts *remote, const char **seed)
{
    static const struct option opts[] = {{"known-hosts", required_argument, 0, 'k'},
                                         {"seed", required_argument, 0, 's'},
                                         {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "i:", opts, NULL)) != -1) {
        if (opt == 'k')
            remote->known_hosts = optarg;
        else if (opt == 'i')
            remote->identity = optarg;
        else if (opt == 's')
            *seed = optarg;
        else
            return -1;
    }
    return argc - optind == 3 ? 0 : -1;
}

static int run_all(vms_client *c, struct run *r, const char *out, const char *seed,
                   struct vms_stats *st, fsp_error *err)
{
    struct vms_checkout_opts co = {.name = r->name, .out = out, .format = "raw"};
    co.seeds = &seed;
    co.n_seeds = seed ? 1 : 0;
    int rc = vms_log(c, r->name, count_version, r, err);
    if (!rc)
        rc = vms_leases(c, r->name, note_holder, r, err);
    if (!rc && r->holder[0])
        return fsp_fail(err, VMS_EK_CONFLICT, -EBUSY, "%s is held by %s", r->name, r->holder);
    if (!rc)
        rc = vms_checkout(c, &co, st, err);
    if (!rc)
        rc = vms_leases(c, r->name, note_holder, r, err);
    return rc;
}

int main(int argc, char **argv)
{
    struct vms_remote_opts remote = {0};
    const char *seed = NULL;
    if (parse(argc, argv, &remote, &seed)) {
        fputs("usage: one_client REPO NAME OUT [--known-hosts F] [-i KEY] [--seed IMAGE]\n", stderr);
        return 2;
    }
    struct vms_client_opts o = {.remote = &remote};
    struct run r = {.name = argv[optind + 1]};
    struct vms_stats st = {0};
    fsp_error err = {0};
    vms_client *c;
    int rc = vms_client_open(argv[optind], &o, &c, &err);
    if (!rc)
        rc = run_all(c, &r, argv[optind + 2], seed, &st, &err);
    vms_client_close(c);
    if (rc) {
        fputs("one_client: ", stderr);
        vms_put_text(stderr, err.msg);
        fputc('\n', stderr);
        return 1;
    }
    printf("{\"versions\":%u,\"holder\":", r.versions);
    vms_json_string(stdout, r.holder);
    printf(",\"objects_fetched\":%llu,\"bytes_from_seeds\":%llu}\n",
           (unsigned long long)st.objects_fetched, (unsigned long long)st.bytes_from_seeds);
    return 0;
}
