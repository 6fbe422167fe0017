/* vmsync publish REPO DIR: the repository as a static tree for web servers
 * (docs/web.md), which `vmsync checkout https://host/path NAME` reads. */
#include "cli.h"

#include <getopt.h>

static const char *const usage =
    "usage: vmsync publish REPO DIR [--json] [-q]\n"
    "\n"
    "Writes every version of REPO (a local folder: run it on the server) into DIR\n"
    "as a static, read-only tree that any web server or CDN can serve: the versions\n"
    "with their signatures, the manifests, and packs of objects with their indexes.\n"
    "Clients check out with vmsync checkout https://HOST/PATH NAME -o OUT; plain\n"
    "http:// only with a trusted key (--trust).  Publishing again adds only new files\n"
    "(the new manifests, one new pack and its index) and leaves every old file as it\n"
    "was, so caches keep them; the top-level index, DIR/vmsync-web, is replaced last.\n"
    "\n"
    "      --json             one JSON document: what was written\n"
    "  -q, --quiet            print nothing on success\n"
    "  -h, --help             this help\n";

static void print_stats(const struct vms_publish_stats *s, bool json)
{
    if (json) {
        printf("{\"versions\":%llu,\"manifests_written\":%llu,\"packs_written\":%llu,"
               "\"objects_written\":%llu,\"bytes_written\":%llu,\"seconds\":%.3f}\n",
               (unsigned long long)s->versions, (unsigned long long)s->manifests_written,
               (unsigned long long)s->packs_written, (unsigned long long)s->objects_written,
               (unsigned long long)s->bytes_written, s->seconds);
        return;
    }
    printf("published %llu versions: %llu new manifests, %llu new objects (%llu bytes) in %llu "
           "new pack%s\n",
           (unsigned long long)s->versions, (unsigned long long)s->manifests_written,
           (unsigned long long)s->objects_written, (unsigned long long)s->bytes_written,
           (unsigned long long)s->packs_written, s->packs_written == 1 ? "" : "s");
}

int cmd_publish(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    bool json = false, quiet = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "hq", opts, NULL)) != -1) {
        if (opt == 'h')
            return fputs(usage, stdout), 0;
        if (opt == 'j')
            json = true;
        else if (opt == 'q')
            quiet = true;
        else
            return cli_bad_option(usage, argv);
    }
    int took = cli_take_repo(argc, argv, 0, 2, 2, usage);
    if (took >= 0)
        return took;
    if (argc - optind != 2)
        return cli_usage_error(usage, "%s", "publish needs REPO and DIR");
    fsp_error err = {0};
    vms_client *c = NULL;
    struct vms_publish_stats st;
    int rc = cli_client_open(argv[optind], &(struct vms_client_opts){0}, &c, &err);
    if (!rc)
        rc = vms_publish(c, argv[optind + 1], &st, &err);
    cli_client_close(&c);
    if (rc)
        return cli_report(&err);
    if (!quiet || json)
        print_stats(&st, json);
    return 0;
}
