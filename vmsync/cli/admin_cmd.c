/* An admin's commands: forget a version, prune by a retention policy.  Names
 * come from the catalog: data, printed with vms_put_name. */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct admin {
    const char *repo;
    struct vms_client_opts s;
    struct vms_remote_opts remote;
    vms_client *client;
    bool json, dry_run;
    struct vms_retention keep;
    FILE *out; /* stdout, or with --json a buffer printed once the command succeeded */
    char *buf;
    size_t buf_len, rows;
};

enum { OPT_HOST = 1100, OPT_CACHE, OPT_JSON, OPT_LAST, OPT_DAILY, OPT_MONTHLY };

#define ADMIN_HELP                                                                             \
    "  -n, --dry-run          say what would be forgotten; change nothing\n"                 \
    "      --json             one JSON document\n"                                            \
    "      --host NAME        this client's name in the audit log\n"                          \
    "                         (default: $VMSYNC_HOST, else the hostname)\n"                   \
    "      --cache DIR        local cache (default: $VMSYNC_CACHE, else ~/.cache/vmsync)\n"   \
    "  -h, --help             this help\n"                                                    \
    "\n" CLI_REMOTE_HELP

static int keep_option(struct admin *a, int opt, const char *usage)
{
    int n;
    if (cli_parse_int(optarg, 0, 1000000, &n))
        return cli_usage_error(usage, "--keep-*: not a count from 0 to 1000000: '%s'", optarg);
    uint32_t *slot = opt == OPT_LAST    ? &a->keep.keep_last
                     : opt == OPT_DAILY ? &a->keep.keep_daily
                                        : &a->keep.keep_monthly;
    *slot = (uint32_t)n;
    return 0;
}

static int admin_option(struct admin *a, int opt, const char *usage, bool keeps, char **argv)
{
    switch (opt) {
    case 'n': a->dry_run = true; return 0;
    case OPT_HOST: a->s.host = optarg; return 0;
    case OPT_CACHE: a->s.cache_dir = optarg; return 0;
    case OPT_JSON: a->json = true; return 0;
    case OPT_LAST:
    case OPT_DAILY:
    case OPT_MONTHLY:
        return keeps ? keep_option(a, opt, usage) : cli_bad_option(usage, argv);
    default: {
        int why = cli_remote_option(&a->remote, opt, usage);
        return why == 2 ? 2 : why ? cli_bad_option(usage, argv) : 0;
    }
    }
}

/* Returns -1 to go on with operands from optind, else an exit status. */
static int parse(int argc, char **argv, const char *usage, bool keeps, struct admin *a, int min,
                 int max, const char *what)
{
    static const struct option opts[] = {
        {"host", required_argument, 0, OPT_HOST},
        {"cache", required_argument, 0, OPT_CACHE},
        {"json", no_argument, 0, OPT_JSON},
        {"dry-run", no_argument, 0, 'n'},
        {"keep-last", required_argument, 0, OPT_LAST},
        {"keep-daily", required_argument, 0, OPT_DAILY},
        {"keep-monthly", required_argument, 0, OPT_MONTHLY},
        {"help", no_argument, 0, 'h'},
        CLI_REMOTE_OPTIONS,
        {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "nhi:", opts, NULL)) != -1) {
        if (opt == 'h')
            return fputs(usage, stdout), 0;
        int status = admin_option(a, opt, usage, keeps, argv);
        if (status)
            return status;
    }
    int operands = argc - optind;
    if (operands < min || operands > max)
        return cli_usage_error(usage, "%s", what);
    a->repo = argv[optind];
    a->s.remote = &a->remote;
    a->out = a->json ? open_memstream(&a->buf, &a->buf_len) : stdout;
    return a->out ? -1 : (perror("vmsync"), 6);
}

static int admin_open(struct admin *a, fsp_error *err)
{
    cli_remote_init(&a->remote);
    return cli_client_open(a->repo, &a->s, &a->client, err);
}

/* Prints the buffered JSON document, or the error alone; the exit status. */
static int finish(struct admin *a, int rc, const fsp_error *err)
{
    cli_client_close(&a->client);
    if (a->json) {
        fclose(a->out);
        if (!rc)
            fwrite(a->buf, 1, a->buf_len, stdout);
        free(a->buf);
    }
    return rc ? cli_report(err) : 0;
}

/* ---- forget ------------------------------------------------------------------------ */

int cmd_forget(int argc, char **argv)
{
    static const char *const usage =
        "usage: vmsync forget REPO NAME@V [-n|--dry-run] [--json]\n"
        "\n"
        "Removes version V of NAME from the catalog and writes 'forget' to the audit\n"
        "log.  Its manifest and the objects no other version uses stay until the next\n"
        "vmsync gc, which frees their space.  Refused (exit 8), naming why:\n"
        "  - the image's latest version: the next check-in's parent (so an image always\n"
        "    keeps one version, and numbers are never given twice);\n"
        "  - a version someone has checked out: their check-in builds on what it\n"
        "    holds (release the lease first: vmsync release, or --steal it).\n"
        "Later versions do not need it: each version stands alone.  An agent started\n"
        "with --append-only or --read-only refuses (exit 12).\n"
        "\n" ADMIN_HELP;
    struct admin a = {0};
    int status = parse(argc, argv, usage, false, &a, 2, 2, "forget needs REPO and NAME@V");
    if (status >= 0)
        return status;
    char name[256];
    uint32_t version = 0;
    fsp_error err = {0};
    int rc = vms_parse_ref(argv[optind + 1], name, sizeof name, &version, &err);
    if (!rc && version == 0)
        return finish(&a, 0, &err), cli_usage_error(usage, "%s", "forget needs NAME@V, a version");
    if (!rc)
        rc = admin_open(&a, &err);
    if (!rc)
        rc = vms_forget(a.client, name, version, a.dry_run, &err);
    if (a.json) {
        fputc('{', a.out);
        vms_json_member(a.out, "image", name);
        fprintf(a.out, ",\"version\":%u,\"forgotten\":%s,\"dry_run\":%s}\n", version,
                a.dry_run ? "false" : "true", a.dry_run ? "true" : "false");
    } else if (!rc) {
        vms_put_name(a.out, name);
        fprintf(a.out, "@%u: %s\n", version, a.dry_run ? "would be forgotten" : "forgotten");
    }
    return finish(&a, rc, &err);
}

/* ---- prune ------------------------------------------------------------------------- */

static const char *const keep_names[] = {"last", "daily", "monthly", "latest", "leased"};

static void put_reasons(FILE *out, unsigned kept, bool json)
{
    size_t shown = 0;
    for (size_t i = 0; i < sizeof keep_names / sizeof *keep_names; i++)
        if (kept & (1u << i))
            fprintf(out, json ? "%s\"%s\"" : "%s%s", shown++ ? (json ? "," : ", ") : "",
                    keep_names[i]);
}

static int show_decision(void *ctx, const struct vms_version *v, unsigned kept)
{
    struct admin *a = ctx;
    char when[40] = "";
    time_t t = (time_t)v->created;
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
    if (a->json) {
        fputs(a->rows++ ? ",{" : "{", a->out);
        vms_json_member(a->out, "image", v->image);
        fprintf(a->out, ",\"version\":%u,\"created\":%lld,\"kept\":[", v->number,
                (long long)v->created);
        put_reasons(a->out, kept, true);
        fprintf(a->out, "],\"forgotten\":%s}", !kept && !a->dry_run ? "true" : "false");
        return 0;
    }
    vms_put_name(a->out, v->image);
    fprintf(a->out, "@%u  %s  ", v->number, when);
    if (kept) {
        fputs("kept: ", a->out);
        put_reasons(a->out, kept, false);
    } else
        fputs(a->dry_run ? "would be forgotten" : "forgotten", a->out);
    fputc('\n', a->out);
    return 0;
}

int cmd_prune(int argc, char **argv)
{
    static const char *const usage =
        "usage: vmsync prune REPO [NAME] --keep-last N [--keep-daily N] [--keep-monthly N]\n"
        "                    [-n|--dry-run] [--json]\n"
        "\n"
        "Applies a retention policy to NAME's versions (every image's without NAME)\n"
        "and forgets the versions it does not keep, as vmsync forget does; then\n"
        "vmsync gc frees their space.  Prints every version with why it is kept\n"
        "(last, daily, monthly, latest, leased) or that it is forgotten.  Days and\n"
        "months are UTC, as vmsync prints times.  At least one --keep-* is needed.\n"
        "Each image always keeps its latest version and every leased one.\n"
        "\n"
        "      --keep-last N      the N newest versions\n"
        "      --keep-daily N     the newest version of each of the N newest days that\n"
        "                         have versions\n"
        "      --keep-monthly N   the newest version of each of the N newest months that\n"
        "                         have versions\n" ADMIN_HELP;
    struct admin a = {0};
    int status = parse(argc, argv, usage, true, &a, 1, 2, "prune needs REPO and optionally NAME");
    if (status >= 0)
        return status;
    if (!a.keep.keep_last && !a.keep.keep_daily && !a.keep.keep_monthly) {
        fsp_error none = {0};
        finish(&a, 0, &none);
        return cli_usage_error(usage, "%s", "prune needs --keep-last, --keep-daily or --keep-monthly");
    }
    const char *name = optind + 2 == argc ? argv[optind + 1] : NULL;
    fsp_error err = {0};
    if (a.json)
        fprintf(a.out, "{\"dry_run\":%s,\"versions\":[", a.dry_run ? "true" : "false");
    int rc = admin_open(&a, &err);
    if (!rc)
        rc = vms_prune(a.client, name, &a.keep, a.dry_run, show_decision, &a, &err);
    if (a.json)
        fputs("]}\n", a.out);
    return finish(&a, rc, &err);
}
