/* vmsync diff A B */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const usage =
    "usage: vmsync diff A B [--json]\n"
    "       vmsync diff REPO NAME@V1 NAME@V2 [--json]\n"
    "\n"
    "Compares two disk images or two manifests (or one of each), or two versions in\n"
    "a repository, file by file and\n"
    "lists what was added (A), deleted (D), changed (M, with what changed) and moved\n"
    "or renamed (R: same content at a new path), sorted by volume and path.  A path\n"
    "with control characters, quotes, backslashes or bytes that are not UTF-8 is\n"
    "quoted as git quotes it (\"...\" with C escapes).\n"
    "\n"
    "  --json      print {\"added\":[],\"removed\":[],\"changed\":[],\"moved\":[]}; a\n"
    "              path that is not UTF-8 also comes as path_bytes (from_bytes,\n"
    "              to_bytes) in hex\n"
    "  -h, --help  this help\n" CLI_IMAGE_HELP
    "\n" CLI_REMOTE_HELP;

struct printer {
    bool json;
    FILE *lists[4]; /* added, removed, changed, moved: JSON arrays built apart */
    char *bufs[4];
    size_t lens[4];
    size_t counts[4];
};

static void print_what(FILE *out, uint32_t what, bool json)
{
    bool first = true;
    for (uint32_t bit = 1; bit <= VMS_WHAT_STREAMS; bit <<= 1) {
        if (!(what & bit))
            continue;
        fprintf(out, json ? "%s\"%s\"" : "%s%s", first ? "" : ",", vms_what_name(bit));
        first = false;
    }
}

/* Paths print as vms_put_name does; in a move line a path that holds " -> "
 * is quoted too, so that the line splits one way only. */
static void put_path(const char *path, bool in_move)
{
    if (in_move && strstr(path, " -> "))
        vms_put_quoted(stdout, path);
    else
        vms_put_name(stdout, path);
}

static void print_text_item(const struct vms_diff_item *d)
{
    static const char letters[] = "?ADMR";
    printf("%c ", letters[d->change]);
    if (d->change == VMS_MOVED) {
        put_path(d->old_path, true);
        fputs(" -> ", stdout);
    }
    put_path(d->path, d->change == VMS_MOVED);
    if (d->change == VMS_CHANGED) {
        fputs(" (", stdout);
        print_what(stdout, d->what, false);
        putchar(')');
    }
    putchar('\n');
}

static int print_item(void *ctx, const struct vms_diff_item *d)
{
    struct printer *p = ctx;
    if (!p->json) {
        print_text_item(d);
        return 0;
    }
    int k = d->change - 1;
    FILE *out = p->lists[k];
    fprintf(out, "%s\n{\"volume\":%u,", p->counts[k]++ ? "," : "", d->volume);
    if (d->change == VMS_MOVED) {
        vms_json_member(out, "from", d->old_path);
        putc(',', out);
        vms_json_member(out, "to", d->path);
    } else {
        vms_json_member(out, "path", d->path);
    }
    if (d->change == VMS_CHANGED) {
        fputs(",\"what\":[", out);
        print_what(out, d->what, true);
        putc(']', out);
    }
    putc('}', out);
    return 0;
}

/* Copies the manifest of REF to a temporary file, named in TMP. */
static int fetch_version(vms_client *c, const char *ref, char tmp[64], fsp_error *err)
{
    char name[256];
    uint32_t version;
    snprintf(tmp, 64, "/tmp/vmsync-diff-XXXXXX");
    int fd = mkstemp(tmp);
    if (fd < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "cannot create a temporary file: %s",
                        strerror(errno));
    close(fd);
    int rc = vms_parse_ref(ref, name, sizeof name, &version, err);
    return rc ? rc : vms_fetch_manifest(c, name, version, tmp, err);
}

/* Copies the manifests of two versions to temporary files, over one handle. */
static int fetch_versions(const char *repo, const struct vms_remote_opts *remote, const char *ref_a,
                          const char *ref_b, char tmp[2][64], fsp_error *err)
{
    struct vms_client_opts o = {.remote = remote};
    vms_client *c;
    int rc = cli_client_open(repo, &o, &c, err);
    if (!rc)
        rc = fetch_version(c, ref_a, tmp[0], err);
    if (!rc)
        rc = fetch_version(c, ref_b, tmp[1], err);
    cli_client_close(&c);
    return rc;
}

int cmd_diff(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         CLI_REMOTE_OPTIONS,
                                         CLI_IMAGE_OPTIONS,
                                         {0, 0, 0, 0}};
    struct printer p = {0};
    struct vms_remote_opts remote = {0};
    cli_remote_init(&remote);
    int c, why;
    while ((c = getopt_long(argc, argv, "hi:", opts, NULL)) != -1) {
        if (c == 'j')
            p.json = true;
        else if (c == 'h')
            return fputs(usage, stdout), 0;
        else if ((why = cli_remote_option(&remote, c, usage)) == 1 &&
                 (why = cli_image_option(c, usage)) == 1)
            return cli_bad_option(usage, argv);
        else if (why == 2)
            return 2;
    }
    int took = cli_take_repo(argc, argv, -1, 3, 3, usage);
    if (took >= 0)
        return took;
    if (optind + 2 != argc && optind + 3 != argc)
        return cli_usage_error(usage, "%s", "diff needs two images or manifests, or REPO and two versions");
    for (int k = 0; k < 4 && p.json; k++)
        if (!(p.lists[k] = open_memstream(&p.bufs[k], &p.lens[k])))
            return perror("vmsync"), 1;
    fsp_error err = {0};
    char tmp[2][64] = {"", ""};
    const char *a = argv[optind], *b = argv[optind + 1];
    int rc = 0;
    if (optind + 3 == argc) {
        rc = fetch_versions(argv[optind], &remote, argv[optind + 1], argv[optind + 2], tmp, &err);
        a = tmp[0];
        b = tmp[1];
    }
    if (!rc)
        rc = vms_diff(a, b, print_item, &p, &err);
    for (int k = 0; k < 2; k++)
        if (tmp[k][0])
            unlink(tmp[k]);
    if (p.json) {
        static const char *const keys[] = {"added", "removed", "changed", "moved"};
        for (int k = 0; k < 4; k++)
            fclose(p.lists[k]);
        if (!rc) {
            for (int k = 0; k < 4; k++)
                printf("%s\"%s\":[%s]", k ? ",\n" : "{", keys[k], p.bufs[k]);
            puts("}");
        }
        for (int k = 0; k < 4; k++)
            free(p.bufs[k]);
    }
    return rc ? cli_report(&err) : 0;
}
