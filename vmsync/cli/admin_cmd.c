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
    int took = cli_take_repo(argc, argv, 0, min, max, usage);
    if (took >= 0)
        return took;
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
        "    holds (its holder checks in or runs vmsync release first).\n"
        "Later versions do not need it: each version stands alone.  But a bundle of a\n"
        "later version names its parent, and applies only to a repository that holds\n"
        "the image: to move an image whose first versions are forgotten to a new\n"
        "repository, export and import it.  An agent started with --append-only or\n"
        "--read-only refuses (exit 12).\n"
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
        "usage: vmsync prune REPO [NAME] --keep-last N [--keep-daily N]\n"
        "                    [--keep-monthly N] [-n|--dry-run] [--json]\n"
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

/* ---- stats ------------------------------------------------------------------------- */

static void put_mib(FILE *out, const char *what, uint64_t bytes)
{
    fprintf(out, "%s%.1f MiB", what, bytes / 1048576.0);
}

static int show_image(void *ctx, const struct vms_image_usage *u)
{
    struct admin *a = ctx;
    if (a->json) {
        fputs(a->rows++ ? ",{" : "{", a->out);
        vms_json_member(a->out, "image", u->name);
        fprintf(a->out,
                ",\"versions\":%u,\"unique_objects\":%llu,\"unique_raw\":%llu,"
                "\"unique_stored\":%llu,\"shared_objects\":%llu,\"shared_raw\":%llu}",
                u->versions, (unsigned long long)u->unique_objects,
                (unsigned long long)u->unique_raw, (unsigned long long)u->unique_stored,
                (unsigned long long)u->shared_objects, (unsigned long long)u->shared_raw);
        return 0;
    }
    fputs("  ", a->out);
    vms_put_name(a->out, u->name);
    fprintf(a->out, "  %u version%s", u->versions, u->versions == 1 ? "" : "s");
    put_mib(a->out, ", its own: ", u->unique_raw);
    put_mib(a->out, " (", u->unique_stored);
    put_mib(a->out, " stored), shared: ", u->shared_raw);
    fputc('\n', a->out);
    return 0;
}

static double dedup_ratio(const struct vms_repo_stats *s)
{
    return s->raw_bytes ? (double)s->referenced_bytes / (double)s->raw_bytes : 0.0;
}

static void print_stats_json(FILE *out, const struct vms_repo_stats *s)
{
    fprintf(out,
            "],\"images_count\":%llu,\"versions\":%llu,\"objects\":%llu,\"raw_bytes\":%llu,"
            "\"stored_bytes\":%llu,\"packs\":%llu,\"pack_bytes\":%llu,\"referenced_bytes\":%llu,"
            "\"dedup_ratio\":%.3f,\"gc_objects\":%llu,\"gc_bytes\":%llu}\n",
            (unsigned long long)s->images, (unsigned long long)s->versions,
            (unsigned long long)s->objects, (unsigned long long)s->raw_bytes,
            (unsigned long long)s->stored_bytes, (unsigned long long)s->packs,
            (unsigned long long)s->pack_bytes, (unsigned long long)s->referenced_bytes,
            dedup_ratio(s), (unsigned long long)s->gc.objects_dropped,
            (unsigned long long)s->gc.bytes_freed);
}

static void print_stats_text(FILE *out, const struct vms_repo_stats *s)
{
    fprintf(out, "%llu images, %llu versions, %llu objects: ", (unsigned long long)s->images,
            (unsigned long long)s->versions, (unsigned long long)s->objects);
    put_mib(out, "", s->raw_bytes);
    put_mib(out, " raw, ", s->stored_bytes);
    fprintf(out, " stored in %llu packs", (unsigned long long)s->packs);
    put_mib(out, " of ", s->pack_bytes);
    fputc('\n', out);
    put_mib(out, "versions name ", s->referenced_bytes);
    fprintf(out, ": dedup ratio %.2f\n", dedup_ratio(s));
    fprintf(out, "gc would drop %llu objects", (unsigned long long)s->gc.objects_dropped);
    put_mib(out, " and free ", s->gc.bytes_freed);
    fputc('\n', out);
}

int cmd_stats(int argc, char **argv)
{
    static const char *const usage =
        "usage: vmsync stats REPO [--json]\n"
        "\n"
        "What the repository holds, from its catalog, object index and manifests (no\n"
        "pack is read): images, versions, unique objects, their raw bytes and the\n"
        "bytes they take stored (compressed), the pack files; the dedup ratio, the raw\n"
        "bytes all versions' manifests name (repeats included; zeros and free space\n"
        "are no objects) divided by the raw bytes stored; and what gc would free now\n"
        "(see gc --dry-run).  Per image: its versions, the objects no other image\n"
        "uses (raw and stored bytes: what forgetting the whole image would free),\n"
        "and the raw bytes of the objects it shares with others.  Over ssh:// the\n"
        "agent counts.\n"
        "\n"
        "      --json             one JSON document\n"
        "      --host NAME        this client's name (default: $VMSYNC_HOST, else the\n"
        "                         hostname)\n"
        "      --cache DIR        local cache (default: $VMSYNC_CACHE, else ~/.cache/vmsync)\n"
        "  -h, --help             this help\n"
        "\n" CLI_REMOTE_HELP;
    struct admin a = {0};
    int status = parse(argc, argv, usage, false, &a, 1, 1, "stats needs REPO");
    if (status >= 0)
        return status;
    if (a.dry_run)
        return finish(&a, 0, &(fsp_error){0}), cli_usage_error(usage, "%s", "stats changes nothing: no --dry-run");
    fsp_error err = {0};
    struct vms_repo_stats s;
    if (a.json)
        fputs("{\"images\":[", a.out);
    else
        a.out = open_memstream(&a.buf, &a.buf_len); /* the images go after the totals */
    if (!a.out)
        return perror("vmsync"), 6;
    int rc = admin_open(&a, &err);
    if (!rc)
        rc = vms_stats(a.client, &s, show_image, &a, &err);
    if (!rc && a.json)
        print_stats_json(a.out, &s);
    else if (!rc)
        print_stats_text(stdout, &s);
    if (!a.json && !rc)
        fputs("per image:\n", stdout);
    a.json = true; /* print the buffer as finish prints a JSON document */
    return finish(&a, rc, &err);
}
