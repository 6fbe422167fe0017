/* vmsync bundle: create a bundle from a repository, show what one holds and
 * needs, and apply one to a repository.  A bundle file is a read-only repository too: checkout, export,
 * verify and log take it as REPO. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const bundle_usage =
    "usage: vmsync bundle create REPO NAME[@VERSION] -o FILE|- [--have MANIFEST|IMAGE]...\n"
    "                            [--base NAME@V] [--split SIZE] [--level N] [--json] [options]\n"
    "       vmsync bundle show FILE|- [--json]\n"
    "       vmsync bundle apply REPO FILE|- [--trust KEYFILE]... [--json] [options]\n"
    "\n"
    "create writes one file that carries NAME at VERSION (default: the latest) to a\n"
    "laptop off the network: the version, its manifest, and the objects the laptop\n"
    "lacks.  Without --have, all of them; with --have, only those that no held image\n"
    "or manifest (from vmsync manifest, made on the laptop) holds.  On the laptop,\n"
    "'vmsync checkout FILE NAME -o OUT --seed IMAGE' rebuilds the version from the\n"
    "bundle and its seeds, with no repository and no network.\n"
    "show prints what a bundle holds and what its receiver must hold; it reads\n"
    "the whole file and checks every object.  A FILE of - is read from standard\n"
    "input, here and wherever a bundle is a REPO (checkout - NAME -o OUT ...).\n"
    "apply adds the bundle's version to REPO (a branch server, a second site) as\n"
    "check-in records one: its parent must be the latest version there, or it is\n"
    "refused (exit 8); the objects REPO lacks come from the bundle.  With a trusted\n"
    "key, a bundle whose version that key did not sign is refused (exit 13) before\n"
    "REPO changes.  REPO signs what it records with its own key, when it has one.\n"
    "\n"
    "  -o, --output FILE      the bundle to write, whole or not at all; - for stdout\n"
    "      --force            replace FILE (and FILE.002, ...) when it exists\n"
    "      --split SIZE       write parts of at most SIZE bytes, under 4G (suffix K, M, G;\n"
    "                         e.g. 3900M for FAT32): FILE, FILE.002, ...; give FILE to read\n"
    "      --have PATH        an image or a manifest the receiver holds (repeatable)\n"
    "      --base NAME@V      the receiver holds that version of NAME\n"
    "      --level N          zstd level 1-19 of the objects (default 19: smallest)\n"
    "      --trust KEYFILE    apply: trust the key in KEYFILE (a line of vmsync key\n"
    "                         show; repeatable; [trust] key = FILE in the settings\n"
    "                         adds more)\n"
    "      --json             the figures (create, apply) or the contents (show) as JSON\n"
    "      --cache DIR        local cache of manifests and seed indexes\n"
    "                         (default: $VMSYNC_CACHE, else ~/.cache/vmsync)\n"
    "      --progress=MODE    auto (a bar on a terminal), none, or json lines on stderr\n"
    "  -q, --quiet            no progress, no summary\n"
    "  -h, --help             this help\n" CLI_IMAGE_HELP "\n" CLI_REMOTE_HELP;

struct bundle_args {
    struct vms_client_opts s;
    struct vms_remote_opts remote;
    struct vms_bundle_create_opts o;
    char name[256];
    bool json, quiet;
    enum cli_progress_mode progress;
    struct cli_progress bar;
    const char **trust; /* apply: --trust files, then the settings' [trust] keys */
    size_t n_trust;
};

static int on_event(void *ctx, const struct vms_event *ev)
{
    struct bundle_args *a = ctx;
    cli_progress_event(&a->bar, ev);
    return 0;
}

static void on_warning(void *ctx, const struct vms_warning *w)
{
    struct bundle_args *a = ctx;
    cli_progress_warning(&a->bar, w);
}

static void start(struct bundle_args *a)
{
    a->s.remote = &a->remote;
    a->s.ctx = a;
    a->s.event = on_event;
    a->s.warning = on_warning;
    cli_progress_init(&a->bar, a->quiet ? CLI_PROGRESS_NONE : a->progress);
}

static void print_hex(FILE *f, const uint8_t *h)
{
    char hex[2 * FSP_SHA256_LEN + 1];
    fsp_hex(h, FSP_SHA256_LEN, hex);
    fputs(hex, f);
}

/* ---- create --------------------------------------------------------------------- */

static void print_created(const struct bundle_args *a, const struct vms_bundle_stats *st)
{
    /* with -o -, stdout is the bundle */
    FILE *f = strcmp(a->o.out, "-") ? stdout : stderr;
    if (a->json) {
        fprintf(f, "{");
        vms_json_member(f, "image", a->o.name);
        fprintf(f, ",\"version\":%u,\"objects\":%llu,\"bytes_raw\":%llu,\"objects_held\":%llu,"
                   "\"bytes_held\":%llu,\"bytes_written\":%llu,\"seconds\":%.3f}\n",
                st->version, (unsigned long long)st->objects, (unsigned long long)st->bytes_raw,
                (unsigned long long)st->objects_held, (unsigned long long)st->bytes_held,
                (unsigned long long)st->bytes_written, st->seconds);
        return;
    }
    fputs("bundled ", f);
    vms_put_name(f, a->o.name);
    fprintf(f, "@%u to ", st->version);
    vms_put_name(f, a->o.out);
    fprintf(f, ": %llu objects, %.1f MiB (%llu held by the receiver left out), %.1f MiB written in %.1f s\n",
            (unsigned long long)st->objects, st->bytes_raw / 1048576.0,
            (unsigned long long)st->objects_held, st->bytes_written / 1048576.0, st->seconds);
}

static int parse_base(struct bundle_args *a, const char *ref)
{
    char name[256];
    fsp_error err = {0};
    if (vms_parse_ref(ref, name, sizeof name, &a->o.base, &err))
        return cli_report(&err);
    if (strcmp(name, a->name) || !a->o.base)
        return cli_usage_error(bundle_usage, "--base %s: expected %s@VERSION", ref, a->name);
    return -1;
}

enum { OPT_HAVE = 3000, OPT_BASE, OPT_LEVEL, OPT_JSON, OPT_PROGRESS, OPT_CACHE, OPT_FORCE, OPT_SPLIT,
       OPT_TRUST };

static int create_option(struct bundle_args *a, int opt, const char **haves, const char **base)
{
    switch (opt) {
    case 'o': a->o.out = optarg; return -1;
    case OPT_HAVE: haves[a->o.n_have++] = optarg; return -1;
    case OPT_BASE: *base = optarg; return -1;
    case OPT_JSON: a->json = true; return -1;
    case OPT_FORCE: a->o.force = true; return -1;
    case OPT_SPLIT: {
        fsp_error err = {0};
        return vms_parse_size(optarg, 0, &a->o.split, &err)
                   ? cli_usage_error(bundle_usage, "bad --split: %s (bytes, e.g. 3900M)", err.msg)
                   : -1;
    }
    case OPT_CACHE: a->s.cache_dir = optarg; return -1;
    case 'q': a->quiet = true; return -1;
    case 'h': return fputs(bundle_usage, stdout), 0;
    case OPT_LEVEL:
        return cli_parse_int(optarg, 1, 19, &a->o.level)
                   ? cli_usage_error(bundle_usage, "bad --level '%s': expected 1 to 19", optarg)
                   : -1;
    case OPT_PROGRESS:
        return cli_parse_progress(optarg, &a->progress)
                   ? cli_usage_error(bundle_usage, "bad --progress value '%s'", optarg)
                   : -1;
    default: {
        int why = cli_remote_option(&a->remote, opt, bundle_usage);
        if (why == 1)
            why = cli_image_option(opt, bundle_usage);
        return why == 0 ? -1 : why; /* 1: not an option of ours, 2: a bad value, reported */
    }
    }
}

static int parse_create(int argc, char **argv, struct bundle_args *a, const char **haves)
{
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'}, {"have", required_argument, 0, OPT_HAVE},
        {"force", no_argument, 0, OPT_FORCE}, {"split", required_argument, 0, OPT_SPLIT},
        {"base", required_argument, 0, OPT_BASE}, {"level", required_argument, 0, OPT_LEVEL},
        {"json", no_argument, 0, OPT_JSON}, {"progress", required_argument, 0, OPT_PROGRESS},
        {"cache", required_argument, 0, OPT_CACHE}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'}, CLI_REMOTE_OPTIONS, CLI_IMAGE_OPTIONS, {0, 0, 0, 0}};
    const char *base = NULL;
    int opt, status;
    while ((opt = getopt_long(argc, argv, "o:qhi:", opts, NULL)) != -1)
        if ((status = create_option(a, opt, haves, &base)) >= 0)
            return status == 1 ? cli_bad_option(bundle_usage, argv) : status;
    if ((status = cli_take_repo(argc, argv, 0, 2, 2, bundle_usage)) >= 0)
        return status;
    if (optind + 2 != argc || !a->o.out)
        return cli_usage_error(bundle_usage, "%s", "bundle create needs REPO, NAME[@VERSION] and -o FILE");
    fsp_error err = {0};
    if (vms_parse_ref(argv[optind + 1], a->name, sizeof a->name, &a->o.version, &err))
        return cli_report(&err);
    a->o.name = a->name;
    a->o.have = haves;
    return base ? parse_base(a, base) : -1;
}

static int bundle_create(int argc, char **argv)
{
    struct bundle_args a = {0};
    const char **haves = calloc((size_t)argc + 1, sizeof *haves);
    if (!haves)
        return fputs("vmsync: out of memory\n", stderr), 6;
    cli_remote_init(&a.remote);
    int status = parse_create(argc, argv, &a, haves);
    if (status < 0) {
        vms_client *c = NULL;
        struct vms_bundle_stats st;
        fsp_error err = {0};
        start(&a);
        int rc = cli_client_open(argv[optind], &a.s, &c, &err);
        if (!rc)
            rc = vms_bundle_create(c, &a.o, &st, &err);
        if (rc == -EEXIST && err.kind == VMS_EK_CONFLICT)
            cli_hint("add --force to replace it");
        cli_client_close(&c);
        cli_progress_clear(&a.bar);
        status = rc ? cli_report(&err) : 0;
        if (!rc && !a.quiet)
            print_created(&a, &st);
    }
    free(haves);
    return status;
}

/* ---- show ---------------------------------------------------------------------- */

static void show_json(const struct vms_bundle_info *b)
{
    const struct vms_version *v = b->version;
    printf("{\"format\":%u,", b->format);
    vms_json_member(stdout, "image", v->image);
    printf(",\"version\":%u,\"parent\":%u,\"size\":%llu,\"created\":%lld,", v->number, v->parent,
           (unsigned long long)v->size, (long long)v->created);
    vms_json_member(stdout, "message", v->message);
    putchar(',');
    vms_json_member(stdout, "user", v->user);
    putchar(',');
    vms_json_member(stdout, "host", v->host);
    fputs(",\"manifest\":\"", stdout);
    print_hex(stdout, v->manifest);
    fputs("\",\"canonical_digest\":\"", stdout);
    print_hex(stdout, v->digest);
    printf("\",\"signed\":%s,\"needs\":{\"base\":", b->is_signed ? "true" : "false");
    if (b->base)
        printf("%u", b->base);
    else
        fputs("null", stdout);
    fputs(",\"held\":[", stdout);
    for (size_t i = 0; i < b->n_held; i++) {
        fputs(i ? ",\"" : "\"", stdout);
        print_hex(stdout, b->held[i]);
        putchar('"');
    }
    printf("]},\"objects\":%llu,\"bytes_raw\":%llu,\"object_members\":%llu,\"bytes_stored\":%llu,"
           "\"manifest_bytes\":%llu,\"file_bytes\":%llu}\n",
           (unsigned long long)b->objects, (unsigned long long)b->bytes_raw,
           (unsigned long long)b->object_members, (unsigned long long)b->bytes_stored,
           (unsigned long long)b->manifest_bytes, (unsigned long long)b->file_bytes);
}

static void show_needs(const struct vms_bundle_info *b)
{
    const struct vms_version *v = b->version;
    fputs("needs:    ", stdout);
    if (!b->base && !b->n_held)
        fputs("nothing: it holds every object of the version", stdout);
    if (b->base) {
        vms_put_name(stdout, v->image);
        printf("@%u%s", b->base, b->n_held ? "; " : "");
    }
    for (size_t i = 0; i < b->n_held; i++) {
        fputs(i ? ", " : "images of canonical digest ", stdout);
        print_hex(stdout, b->held[i]);
    }
    fputs(b->base || b->n_held ? " (as seeds)\n" : "\n", stdout);
}

static void show_text(const struct vms_bundle_info *b)
{
    const struct vms_version *v = b->version;
    char when[32];
    time_t t = (time_t)v->created;
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", gmtime_r(&t, &tm));
    fputs("version:  ", stdout);
    vms_put_name(stdout, v->image);
    printf("@%u (parent %u), %.1f MiB image, recorded %s UTC by ", v->number, v->parent,
           v->size / 1048576.0, when);
    vms_put_text(stdout, v->user);
    putchar('@');
    vms_put_text(stdout, v->host);
    fputs("\nmessage:  ", stdout);
    vms_put_text(stdout, v->message);
    fputs("\ndigest:   ", stdout);
    print_hex(stdout, v->digest);
    fputs("\nmanifest: ", stdout);
    print_hex(stdout, v->manifest);
    printf(" (%llu bytes)\nsigned:   %s\n", (unsigned long long)b->manifest_bytes,
           b->is_signed ? "yes" : "no");
    printf("objects:  %llu, %.1f MiB, compressed to %.1f MiB in %llu member%s (format %u, %.1f MiB "
           "in all)\n",
           (unsigned long long)b->objects, b->bytes_raw / 1048576.0, b->bytes_stored / 1048576.0,
           (unsigned long long)b->object_members, b->object_members == 1 ? "" : "s", b->format,
           b->file_bytes / 1048576.0);
    show_needs(b);
}

static int on_info(void *ctx, const struct vms_bundle_info *info)
{
    const struct bundle_args *a = ctx;
    if (a->json)
        show_json(info);
    else
        show_text(info);
    return 0;
}

static int bundle_show(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, 0, OPT_JSON}, {"progress", required_argument, 0, OPT_PROGRESS},
        {"cache", required_argument, 0, OPT_CACHE}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    struct bundle_args a = {0};
    int opt, status;
    while ((opt = getopt_long(argc, argv, "qh", opts, NULL)) != -1)
        if ((status = create_option(&a, opt, NULL, NULL)) >= 0)
            return status == 1 ? cli_bad_option(bundle_usage, argv) : status;
    if (optind + 1 != argc)
        return cli_usage_error(bundle_usage, "%s", "bundle show needs FILE");
    vms_client *c = NULL;
    fsp_error err = {0};
    start(&a);
    int rc = cli_client_open(argv[optind], &a.s, &c, &err);
    if (!rc)
        rc = vms_bundle_show(c, on_info, &a, &err);
    cli_client_close(&c);
    cli_progress_clear(&a.bar);
    return rc ? cli_report(&err) : 0;
}

/* ---- apply ---------------------------------------------------------------------- */

static void print_applied(const struct bundle_args *a, const char *repo, const struct vms_stats *st)
{
    if (a->json) {
        printf("{\"version\":%u,\"objects_added\":%llu,\"bytes_added\":%llu,\"already_recorded\":%s,"
               "\"seconds\":%.3f,\"canonical_digest\":\"",
               st->version, (unsigned long long)st->objects_sent,
               (unsigned long long)st->bytes_sent_raw, st->already_recorded ? "true" : "false",
               st->seconds);
        print_hex(stdout, st->canonical_digest);
        fputs("\"}\n", stdout);
        return;
    }
    fputs(st->already_recorded ? "already recorded in " : "applied to ", stdout);
    vms_put_name(stdout, repo);
    printf(" as version %u: %llu objects added, %.1f MiB, in %.1f s\n", st->version,
           (unsigned long long)st->objects_sent, st->bytes_sent_raw / 1048576.0, st->seconds);
}

static int add_trust(struct bundle_args *a, const char *file)
{
    const char **grown = realloc(a->trust, (a->n_trust + 1) * sizeof *grown);
    if (!grown)
        return -ENOMEM;
    a->trust = grown;
    a->trust[a->n_trust++] = file;
    return 0;
}

/* The keys an apply trusts: --trust's, then the settings'. */
static int gather_trust(struct bundle_args *a, fsp_error *err)
{
    char *const *keys;
    size_t n;
    int rc = cli_settings_trusted_keys(&keys, &n, err);
    for (size_t i = 0; !rc && i < n; i++)
        if (add_trust(a, keys[i]))
            rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    a->s.trusted_keys = a->trust;
    a->s.n_trusted_keys = a->n_trust;
    return rc;
}

static int parse_apply(int argc, char **argv, struct bundle_args *a)
{
    static const struct option opts[] = {
        {"json", no_argument, 0, OPT_JSON}, {"progress", required_argument, 0, OPT_PROGRESS},
        {"cache", required_argument, 0, OPT_CACHE}, {"quiet", no_argument, 0, 'q'},
        {"trust", required_argument, 0, OPT_TRUST}, {"help", no_argument, 0, 'h'},
        CLI_REMOTE_OPTIONS, {0, 0, 0, 0}};
    int opt, status;
    while ((opt = getopt_long(argc, argv, "qhi:", opts, NULL)) != -1) {
        if (opt == OPT_TRUST && add_trust(a, optarg))
            return fputs("vmsync: out of memory\n", stderr), 6;
        if (opt != OPT_TRUST && (status = create_option(a, opt, NULL, NULL)) >= 0)
            return status == 1 ? cli_bad_option(bundle_usage, argv) : status;
    }
    if ((status = cli_take_repo(argc, argv, 0, 2, 2, bundle_usage)) >= 0)
        return status;
    if (optind + 2 != argc)
        return cli_usage_error(bundle_usage, "%s", "bundle apply needs REPO and FILE");
    return -1;
}

static int bundle_apply(int argc, char **argv)
{
    struct bundle_args a = {0};
    cli_remote_init(&a.remote);
    int status = parse_apply(argc, argv, &a);
    if (status >= 0) {
        free(a.trust);
        return status;
    }
    vms_client *c = NULL;
    struct vms_stats st;
    fsp_error err = {0};
    start(&a);
    int rc = gather_trust(&a, &err);
    if (!rc)
        rc = cli_client_open(argv[optind], &a.s, &c, &err);
    if (!rc)
        rc = vms_bundle_apply(c, argv[optind + 1], &st, &err);
    cli_client_close(&c);
    free(a.trust); /* the handle, which read the files, is gone */
    cli_progress_clear(&a.bar);
    if (rc)
        return cli_report(&err);
    if (!a.quiet)
        print_applied(&a, argv[optind], &st);
    return 0;
}

int cmd_bundle(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return argc < 2 ? cli_usage_error(bundle_usage, "%s", "bundle needs create, show or apply")
                        : (fputs(bundle_usage, stdout), 0);
    if (!strcmp(argv[1], "create"))
        return bundle_create(argc - 1, argv + 1);
    if (!strcmp(argv[1], "show"))
        return bundle_show(argc - 1, argv + 1);
    if (!strcmp(argv[1], "apply"))
        return bundle_apply(argc - 1, argv + 1);
    return cli_usage_error(bundle_usage, "unknown bundle command '%s'", argv[1]);
}
