/* The repository commands: init, import, checkout, export, prefetch,
 * checkin, log, verify, gc, check (and the repository form of diff, in diff_cmd.c). */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Options every repository command shares. */
struct common {
    const char *repo;
    struct vms_client_opts s;
    struct vms_remote_opts remote;
    vms_client *client;
    const char *stats_json;
    enum cli_progress_mode progress;
    bool quiet, json;
    struct cli_progress bar;
    bool takes_trust;    /* checkout, export, verify and log */
    const char **trust;  /* --trust files, then the settings' [trust] keys */
    size_t n_trust;
};

enum { OPT_HOST = 1000, OPT_CACHE, OPT_STATS, OPT_PROGRESS, OPT_JSON, OPT_TRUST };

#define COMMON_OPTIONS                                                                        \
    {"host", required_argument, 0, OPT_HOST}, {"cache", required_argument, 0, OPT_CACHE},     \
        {"stats-json", required_argument, 0, OPT_STATS},                                      \
        {"progress", required_argument, 0, OPT_PROGRESS}, {"json", no_argument, 0, OPT_JSON}, \
        {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'},                       \
        {"trust", required_argument, 0, OPT_TRUST}, CLI_REMOTE_OPTIONS,                       \
        CLI_IMAGE_OPTIONS

#define COMMON_HELP                                                                            \
    "      --host NAME        this client's name in leases and the audit log\n"               \
    "                         (default: $VMSYNC_HOST, else the hostname)\n"                   \
    "      --cache DIR        local cache of manifests and seed indexes\n"                    \
    "                         (default: $VMSYNC_CACHE, else ~/.cache/vmsync)\n"               \
    "      --stats-json FILE  write the figures of the run to FILE as JSON\n"                 \
    "      --progress=MODE    auto (a bar on a terminal), none, or json lines on stderr\n"     \
    "      --json             the result as JSON on stdout (import, checkout, export,\n"     \
    "                         checkin: the figures of --stats-json), and an error as\n"      \
    "                         one line on stderr: {\"error\":{\"message\",\"kind\",\"exit\",\n"  \
    "                         \"hint\"}} (stdout keeps what came before it)\n"                \
    "  -q, --quiet            no progress, no summary\n"                                      \
    "  -h, --help             this help\n" CLI_IMAGE_HELP                                \
    "\n" CLI_REMOTE_HELP

#define TRUST_HELP                                                                             \
    "      --trust KEYFILE    trust the key in KEYFILE (a line of vmsync key show;\n"         \
    "                         repeatable; [trust] key = FILE in ~/.config/vmsync/config\n"  \
    "                         adds more): checkout and export then refuse a version\n"       \
    "                         no trusted key signed, or signed badly (exit 13)\n"

static int add_trust(struct common *c, const char *file)
{
    const char **grown = realloc(c->trust, (c->n_trust + 1) * sizeof *grown);
    if (!grown)
        return fputs("vmsync: out of memory\n", stderr), 2;
    c->trust = grown;
    c->trust[c->n_trust++] = file;
    return 0;
}

/* Handles a common option; 0 when handled, 1 when not one, 2 on a bad value. */
static int common_option(struct common *c, int opt, const char *usage)
{
    switch (opt) {
    case OPT_HOST: c->s.host = optarg; return 0;
    case OPT_CACHE: c->s.cache_dir = optarg; return 0;
    case OPT_STATS: c->stats_json = optarg; return 0;
    case OPT_JSON: c->json = true; return 0;
    case OPT_TRUST:
        if (!c->takes_trust)
            return cli_usage_error(usage, "%s",
                                   "only checkout, export, verify, log and bundle apply take --trust"),
                   2;
        return add_trust(c, optarg);
    case 'q': c->quiet = true; return 0;
    case OPT_PROGRESS:
        if (cli_parse_progress(optarg, &c->progress))
            return cli_usage_error(usage, "bad --progress value '%s'", optarg), 2;
        return 0;
    default: {
        int why = cli_remote_option(&c->remote, opt, usage);
        return why == 1 ? cli_image_option(opt, usage) : why;
    }
    }
}

/* The exit status for an option common_option did not take: WHY 2 is a bad
 * value (already reported), 1 an unknown option. */
static int option_failed(int why, const char *usage, char **argv)
{
    return why == 2 ? 2 : cli_bad_option(usage, argv);
}

/* Parses a command that takes only the common options and between MIN and MAX
 * operands.  Returns -1 to go on (operands from optind), else an exit status. */
static int parse_common_only(int argc, char **argv, const char *usage, struct common *c,
                             int min, int max, const char *what)
{
    static const struct option opts[] = {COMMON_OPTIONS, {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "qhi:", opts, NULL)) != -1) {
        if (opt == 'h')
            return fputs(usage, stdout), 0;
        int why = common_option(c, opt, usage);
        if (why)
            return option_failed(why, usage, argv);
    }
    int took = cli_take_repo(argc, argv, 0, min, max, usage);
    if (took >= 0)
        return took;
    int operands = argc - optind;
    if (operands < min || operands > max)
        return cli_usage_error(usage, "%s", what);
    return -1;
}

static void session_warning(void *ctx, const struct vms_warning *w)
{
    struct common *c = ctx;
    cli_progress_warning(&c->bar, w);
}

static int session_event(void *ctx, const struct vms_event *ev)
{
    struct common *c = ctx;
    cli_progress_event(&c->bar, ev);
    return cli_interrupted(); /* a local phase ends at the next event too */
}

static void common_start(struct common *c, const char *repo)
{
    c->repo = repo;
    c->s.remote = &c->remote;
    c->s.ctx = c;
    c->s.warning = session_warning;
    c->s.event = session_event;
    cli_remote_init(&c->remote);
    cli_progress_init(&c->bar, c->quiet ? CLI_PROGRESS_NONE : c->progress);
}

/* The trusted keys: --trust's, then the settings'. */
static int gather_trust(struct common *c, fsp_error *err)
{
    char *const *keys;
    size_t n;
    int rc = c->takes_trust ? cli_settings_trusted_keys(&keys, &n, err) : 0;
    for (size_t i = 0; !rc && c->takes_trust && i < n; i++)
        if (add_trust(c, keys[i]))
            rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    c->s.trusted_keys = c->trust;
    c->s.n_trusted_keys = c->n_trust;
    return rc;
}

/* The handle the command's one operation runs on; closed right after it. */
static int common_open(struct common *c, fsp_error *err)
{
    int rc = gather_trust(c, err);
    return rc ? rc : cli_client_open(c->repo, &c->s, &c->client, err);
}

static void common_close(struct common *c)
{
    cli_client_close(&c->client);
    free(c->trust); /* the handle, which read the files, is gone */
    c->trust = NULL;
    c->n_trust = 0;
}

static void print_hex(FILE *f, const uint8_t *h)
{
    char hex[2 * FSP_SHA256_LEN + 1];
    fsp_hex(h, FSP_SHA256_LEN, hex);
    fputs(hex, f);
}

static void write_stats(FILE *f, const struct vms_stats *st)
{
    fprintf(f,
            "{\"version\":%u,\"image_size\":%llu,\"bytes_from_seeds\":%llu,\"objects_from_seeds\":%llu,"
            "\"bytes_shared\":%llu,\"bytes_fetched_raw\":%llu,\"bytes_fetched_compressed\":%llu,\"objects_fetched\":%llu,"
            "\"bytes_sent_raw\":%llu,\"bytes_sent_compressed\":%llu,\"objects_sent\":%llu,"
            "\"bytes_resumed\":%llu,\"bytes_zero\":%llu,\"files_rehashed\":%llu,\"files_trusted\":%llu,"
            "\"wire_in\":%llu,\"wire_out\":%llu,\"segments_fetched\":%llu,\"segments_chained\":%llu,"
            "\"round_trips\":%llu,\"seconds\":%.3f,\"in_place\":%s,\"already_recorded\":%s,"
            "\"canonical_digest\":\"",
            st->version, (unsigned long long)st->image_size, (unsigned long long)st->bytes_from_seeds,
            (unsigned long long)st->objects_from_seeds, (unsigned long long)st->bytes_shared,
            (unsigned long long)st->bytes_fetched_raw,
            (unsigned long long)st->bytes_fetched_compressed, (unsigned long long)st->objects_fetched,
            (unsigned long long)st->bytes_sent_raw, (unsigned long long)st->bytes_sent_compressed,
            (unsigned long long)st->objects_sent, (unsigned long long)st->bytes_resumed,
            (unsigned long long)st->bytes_zero, (unsigned long long)st->files_rehashed,
            (unsigned long long)st->files_trusted, (unsigned long long)st->wire_in,
            (unsigned long long)st->wire_out, (unsigned long long)st->segments_fetched,
            (unsigned long long)st->segments_chained, (unsigned long long)st->round_trips, st->seconds,
            st->in_place ? "true" : "false",
            st->already_recorded ? "true" : "false");
    print_hex(f, st->canonical_digest);
    fprintf(f, "\",\"bytes_verified_while_writing\":%llu,\"bytes_rescanned\":%llu,",
            (unsigned long long)st->bytes_verified_while_writing,
            (unsigned long long)st->bytes_rescanned);
    vms_json_levels(f, st->segments_at_level);
    fputs("}\n", f);
}

/* Prints the outcome and writes --stats-json; returns the exit status. */
static int finish(struct common *c, int rc, const fsp_error *err, const struct vms_stats *st,
                  const char *summary)
{
    cli_progress_clear(&c->bar);
    if (rc)
        return cli_report(err);
    if (c->stats_json) {
        FILE *f = strcmp(c->stats_json, "-") ? fopen(c->stats_json, "w") : stdout;
        if (!f)
            return perror(c->stats_json), 6;
        write_stats(f, st);
        if (f != stdout)
            fclose(f);
    }
    if (!c->quiet && summary && c->json)
        write_stats(stdout, st); /* the figures of the run, as --stats-json writes them */
    else if (!c->quiet && summary) {
        vms_put_text(stdout, summary); /* it embeds names and paths */
        putchar('\n');
    }
    return 0;
}

static const char *mib(uint64_t bytes, char *buf)
{
    snprintf(buf, 32, "%.1f MiB", bytes / 1048576.0);
    return buf;
}

/* ---- init ------------------------------------------------------------------- */

int cmd_init(int argc, char **argv)
{
    static const char *const usage =
        "usage: vmsync init REPO [--json]\n\nCreates an empty repository in the directory REPO;\n"
        "--json says so as {\"repository\":REPO}.\n";
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    bool json = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (opt == 'h')
            return fputs(usage, stdout), 0;
        if (opt != 'j')
            return cli_bad_option(usage, argv);
        json = true;
    }
    if (optind + 1 != argc)
        return cli_usage_error(usage, "%s", "init needs exactly one REPO");
    const char *repo = argv[optind];
    fsp_error err = {0};
    if (vms_init_repo(repo, &err))
        return cli_report(&err);
    if (json) {
        putchar('{');
        vms_json_member(stdout, "repository", repo);
        puts("}");
        return 0;
    }
    fputs("initialised an empty vmsync repository in ", stdout);
    vms_put_name(stdout, repo);
    putchar('\n');
    return 0;
}

/* ---- import ----------------------------------------------------------------- */

/* import IMAGE REPO, swapped: the first a file, the second a directory or
 * nothing.  Only a hint for a failed import: a bundle FILE is a REPO too. */
static void hint_swapped(const char *repo, const char *image)
{
    static char hint[8192];
    struct stat r, i;
    bool swapped = strncmp(repo, "ssh://", 6) && !stat(repo, &r) && S_ISREG(r.st_mode) &&
                   (stat(image, &i) ? errno == ENOENT : S_ISDIR(i.st_mode));
    if (swapped && strlen(repo) < 4000 && strlen(image) < 4000) {
        snprintf(hint, sizeof hint, "did you mean: vmsync import %.4000s %.4000s ...?", image, repo);
        cli_hint(hint);
    }
}

int cmd_import(int argc, char **argv)
{
    static const char *const usage =
        "usage: vmsync import REPO IMAGE --name NAME [--message M] [--new] [options]\n"
        "\n"
        "Reads IMAGE, stores the objects the repository lacks, and records it as the\n"
        "next version of NAME (version 1 for a new name).\n"
        "\n"
        "  -n, --name NAME        the image's name in the repository: letters, digits,\n"
        "                         '.', '_' and '-', not starting with '-' or '.'\n"
        "  -m, --message M        a note for the log\n"
        "      --keep-volatile    store pagefile, hiberfil and swap contents too, so that\n"
        "                         checkout --keep-volatile can restore them\n"
        "      --new              NAME must be new: refused (exit 8) when it exists\n" COMMON_HELP;
    enum { OPT_KEEP = 2000, OPT_NEW };
    static const struct option opts[] = {{"name", required_argument, 0, 'n'},
                                         {"message", required_argument, 0, 'm'},
                                         {"keep-volatile", no_argument, 0, OPT_KEEP},
                                         {"new", no_argument, 0, OPT_NEW},
                                         COMMON_OPTIONS, {0, 0, 0, 0}};
    struct common c = {0};
    struct vms_import_opts o = {0};
    int opt, why;
    while ((opt = getopt_long(argc, argv, "n:m:qhi:", opts, NULL)) != -1) {
        if (opt == 'n')
            o.name = optarg;
        else if (opt == 'm')
            o.message = optarg;
        else if (opt == OPT_KEEP)
            o.keep_volatile = true;
        else if (opt == OPT_NEW)
            o.new_image = true;
        else if (opt == 'h')
            return fputs(usage, stdout), 0;
        else if ((why = common_option(&c, opt, usage)) != 0)
            return option_failed(why, usage, argv);
    }
    int took = cli_take_repo(argc, argv, 0, 2, 2, usage);
    if (took >= 0)
        return took;
    if (optind + 2 != argc || !o.name)
        return cli_usage_error(usage, "%s", "import needs REPO, IMAGE and --name");
    o.image = argv[optind + 1];
    common_start(&c, argv[optind]);
    struct vms_stats st = {0};
    fsp_error err = {0};
    int rc = common_open(&c, &err);
    if (!rc)
        rc = vms_import(c.client, &o, &st, &err);
    if (rc)
        hint_swapped(argv[optind], o.image);
    common_close(&c);
    char summary[256], a[32], b[32];
    snprintf(summary, sizeof summary, "imported %s as %s@%u: %llu new objects, %s (%s stored) in %.1f s",
             o.image, o.name, st.version, (unsigned long long)st.objects_sent,
             mib(st.bytes_sent_raw, a), mib(st.bytes_sent_compressed, b), st.seconds);
    return finish(&c, rc, &err, &st, summary);
}

/* ---- checkout and export ----------------------------------------------------- */

/* The options checkout and export share. */
#define OUTPUT_HELP                                                                            \
    "  -o, --output OUT       the image to write\n"                                           \
    "      --format F         raw (default) or qcow2\n"                                       \
    "      --seed IMAGE       a local image to take content from (repeatable); a raw\n"       \
    "                         seed on OUT's filesystem shares its blocks with OUT\n"        \
    "                         where the filesystem can (XFS, btrfs)\n"                     \
    "      --force            replace OUT even if vmsync did not write it, or if it\n"        \
    "                         holds work that no version has (the work is lost)\n"      \
    "      --full-verify      read the whole rebuilt image back to check it, not only\n"   \
    "                         what was not written from checked data\n"                  \
    TRUST_HELP

static const char *const checkout_usage =
    "usage: vmsync checkout REPO NAME[@VERSION] -o OUT [--format raw|qcow2] [--seed IMAGE]...\n"
    "                       [-n|--estimate [--rate RATE]] [--steal] [--keep-volatile] [options]\n"
    "\n"
    "Builds OUT, the image NAME at VERSION (default: the latest), taking every byte\n"
    "it can from the seed images (any format; matched by content, not by path) and\n"
    "fetching the rest.  OUT is written as OUT.vmsync-part, checked against the\n"
    "version's canonical digest, and only then renamed; an interrupted checkout\n"
    "resumes when run again.  Takes the lease on NAME for this host.  An existing\n"
    "OUT is replaced only when vmsync wrote it and a version holds what it holds\n"
    "(else: check it in first, or --force); when it holds VERSION already, nothing\n"
    "is rebuilt.\n"
    "\n"
    OUTPUT_HELP
    "  -n, --dry-run, --estimate\n"
    "                         print the plan, and write nothing: what would come from\n"
    "                         seeds, what would be fetched, and the time that takes\n"
    "                         at --rate (--json: every figure of the plan)\n"
    "      --rate RATE        the link's rate for --estimate, in --bwlimit's form\n"
    "                         (default: --bwlimit when given)\n"
    "      --steal            take the lease even if another host holds it (logged)\n"
    "      --keep-volatile    restore pagefile, hiberfil and swap contents when the\n"
    "                         repository holds them (import --keep-volatile); by\n"
    "                         default they are zero-filled\n" COMMON_HELP;
static const char *const export_usage =
    "usage: vmsync export REPO NAME[@VERSION] -o OUT [--format raw|qcow2] [--seed IMAGE]...\n"
    "                     [options]\n"
    "\n"
    "Materialises an image version without taking a lease: from the repository,\n"
    "and from seed images when given, as checkout does.  An existing OUT is\n"
    "replaced only as checkout replaces it.\n"
    "\n"
    OUTPUT_HELP COMMON_HELP;

static void checkout_summary(const struct vms_checkout_opts *o, const struct vms_stats *st,
                             char *summary, size_t len)
{
    char a[32], b[32], d[32];
    if (st->in_place)
        snprintf(summary, len, "%s already holds %s@%u, as vmsync wrote it: nothing to do%s",
                 o->out, o->name, st->version, o->export_only ? "" : " (lease taken)");
    else
        snprintf(summary, len, "%s %s@%u to %s: %s from seeds, %s fetched (%s compressed) in %.1f s",
                 o->export_only ? "exported" : "checked out", o->name, st->version, o->out,
                 mib(st->bytes_from_seeds, a), mib(st->bytes_fetched_raw, b),
                 mib(st->bytes_fetched_compressed, d), st->seconds);
}

/* What a checkout's --estimate and its parsing share. */
struct checkout_args {
    struct common c;
    struct vms_checkout_opts o;
    char name[256];
    bool estimate, steal;
    uint64_t rate; /* --rate, else --bwlimit; 0: unknown */
};

/* The library refuses an OUT that may hold work (-EEXIST); the option that
 * overrides it is the CLI's to name. */
static void hint_force(int rc, const fsp_error *err)
{
    if (rc == -EEXIST && err->kind == VMS_EK_CONFLICT)
        cli_hint("add --force to replace it");
}

/* The library asks whether to take over another's lease: --steal says yes;
 * without it the refusal tells how. */
static int answer_steal(void *ctx, const struct vms_lease_info *held)
{
    (void)held; /* the library's refusal names the holder */
    bool steal = *(const bool *)ctx;
    if (!steal)
        cli_hint("use --steal to take it over");
    return steal;
}

static void plan_summary(const struct checkout_args *a, const vms_plan *p, char *summary, size_t len)
{
    const struct vms_plan_figures *f = vms_plan_figures(p);
    char s[32], r[32], d[32], rate[32];
    int n = f->in_place
                ? snprintf(summary, len, "%s already holds %s@%u, as vmsync wrote it: nothing to fetch",
                           a->o.out, a->o.name, f->version)
                : snprintf(summary, len,
                           "%s@%u: %s from seeds (%llu objects), %s to fetch (%llu objects, %s compressed)",
                           a->o.name, f->version, mib(f->bytes_from_seeds, s),
                           (unsigned long long)f->objects_from_seeds, mib(f->bytes_to_fetch_raw, r),
                           (unsigned long long)f->objects_to_fetch, mib(f->bytes_to_fetch_stored, d));
    if (n > 0 && (size_t)n < len && f->bytes_resumed)
        n += snprintf(summary + n, len - (size_t)n, ", %s in place from an interrupted checkout",
                      mib(f->bytes_resumed, s));
    if (n > 0 && (size_t)n < len && a->rate && !f->in_place)
        snprintf(summary + n, len - (size_t)n, ", about %.0f s at %s/s",
                 ceil(vms_plan_seconds(p, a->rate)), mib(a->rate, rate));
}

static void print_plan_json(const struct checkout_args *a, const vms_plan *p)
{
    const struct vms_plan_figures *f = vms_plan_figures(p);
    putchar('{');
    vms_json_member(stdout, "image", a->o.name);
    printf(",\"version\":%u,\"image_size\":%llu,\"in_place\":%s,\"bytes_from_seeds\":%llu,"
           "\"objects_from_seeds\":%llu,\"bytes_resumed\":%llu,\"bytes_zero\":%llu,"
           "\"bytes_to_fetch_raw\":%llu,\"bytes_to_fetch_stored\":%llu,\"objects_to_fetch\":%llu,"
           "\"planning_seconds\":%.3f,",
           f->version, (unsigned long long)f->image_size, f->in_place ? "true" : "false",
           (unsigned long long)f->bytes_from_seeds, (unsigned long long)f->objects_from_seeds,
           (unsigned long long)f->bytes_resumed, (unsigned long long)f->bytes_zero,
           (unsigned long long)f->bytes_to_fetch_raw, (unsigned long long)f->bytes_to_fetch_stored,
           (unsigned long long)f->objects_to_fetch, f->seconds);
    if (a->rate)
        printf("\"rate\":%llu,\"seconds_at_rate\":%.3f", (unsigned long long)a->rate,
               vms_plan_seconds(p, a->rate));
    else
        fputs("\"rate\":null,\"seconds_at_rate\":null", stdout);
    fputs(",\"canonical_digest\":\"", stdout);
    print_hex(stdout, f->canonical_digest);
    fputs("\"}\n", stdout);
}

/* --stats-json of an estimate: the figures under the names a run fills. */
static void plan_stats(const struct vms_plan_figures *f, struct vms_stats *st)
{
    *st = (struct vms_stats){
        .version = f->version, .image_size = f->image_size,
        .bytes_from_seeds = f->bytes_from_seeds, .objects_from_seeds = f->objects_from_seeds,
        .bytes_fetched_raw = f->bytes_to_fetch_raw, .bytes_fetched_compressed = f->bytes_to_fetch_stored,
        .objects_fetched = f->objects_to_fetch, .bytes_resumed = f->bytes_resumed,
        .bytes_zero = f->bytes_zero, .seconds = f->seconds, .in_place = f->in_place,
    };
    memcpy(st->canonical_digest, f->canonical_digest, FSP_SHA256_LEN);
}

static int estimate_checkout(struct checkout_args *a)
{
    vms_plan *p = NULL;
    struct vms_stats st = {0};
    fsp_error err = {0};
    char summary[512];
    int rc = common_open(&a->c, &err);
    if (!rc)
        rc = vms_checkout_plan(a->c.client, &a->o, &p, &err);
    hint_force(rc, &err);
    common_close(&a->c);
    if (!rc) {
        plan_stats(vms_plan_figures(p), &st);
        plan_summary(a, p, summary, sizeof summary);
    }
    int status = finish(&a->c, rc, &err, &st, a->c.json ? NULL : summary);
    if (!status && a->c.json && !a->c.quiet)
        print_plan_json(a, p);
    vms_plan_free(p);
    return status;
}

static int run_checkout(struct checkout_args *a)
{
    struct vms_stats st = {0};
    fsp_error err = {0};
    a->c.s.one_operation = true;
    int rc = common_open(&a->c, &err);
    if (!rc)
        rc = vms_checkout(a->c.client, &a->o, &st, &err);
    hint_force(rc, &err);
    common_close(&a->c);
    char summary[512];
    checkout_summary(&a->o, &st, summary, sizeof summary);
    return finish(&a->c, rc, &err, &st, summary);
}

/* Returns -1 to go on, else the exit status. */
static int parse_checkout(int argc, char **argv, const char *usage, const char **seeds,
                          struct checkout_args *a)
{
    enum { OPT_FORMAT = 2000, OPT_SEED, OPT_ESTIMATE, OPT_RATE, OPT_STEAL, OPT_KEEP, OPT_FORCE,
           OPT_FULL_VERIFY };
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"force", no_argument, 0, OPT_FORCE},
                                         {"format", required_argument, 0, OPT_FORMAT},
                                         {"seed", required_argument, 0, OPT_SEED},
                                         {"estimate", no_argument, 0, OPT_ESTIMATE},
                                         {"dry-run", no_argument, 0, OPT_ESTIMATE},
                                         {"rate", required_argument, 0, OPT_RATE},
                                         {"steal", no_argument, 0, OPT_STEAL},
                                         {"keep-volatile", no_argument, 0, OPT_KEEP},
                                         {"full-verify", no_argument, 0, OPT_FULL_VERIFY},
                                         COMMON_OPTIONS, {0, 0, 0, 0}};
    struct vms_checkout_opts *o = &a->o;
    int opt, why;
    while ((opt = getopt_long(argc, argv, "o:nqhi:", opts, NULL)) != -1) {
        switch (opt) {
        case 'o': o->out = optarg; break;
        case 'n': a->estimate = true; break;
        case OPT_FORMAT: o->format = optarg; break;
        case OPT_SEED: seeds[o->n_seeds++] = optarg; break;
        case OPT_ESTIMATE: a->estimate = true; break;
        case OPT_RATE: {
            fsp_error err = {0};
            if (vms_parse_size(optarg, 10, &a->rate, &err))
                return cli_usage_error(usage, "bad --rate: %s (bytes/s, e.g. 500K or 2M)", err.msg);
            break;
        }
        case OPT_STEAL: a->steal = true; break;
        case OPT_KEEP: o->keep_volatile = true; break;
        case OPT_FORCE: o->force = true; break;
        case OPT_FULL_VERIFY: o->full_verify = true; break;
        case 'h': return fputs(usage, stdout), 0;
        default:
            if ((why = common_option(&a->c, opt, usage)) != 0)
                return option_failed(why, usage, argv);
        }
    }
    o->seeds = seeds;
    o->steal = answer_steal;
    o->steal_ctx = &a->steal;
    int took = cli_take_repo(argc, argv, 0, 2, 2, usage);
    if (took >= 0)
        return took;
    if (optind + 2 != argc || (!o->out && !a->estimate) ||
        (strcmp(o->format, "raw") && strcmp(o->format, "qcow2")))
        return cli_usage_error(usage, "%s", "needs REPO, NAME[@VERSION] and -o OUT (format raw or qcow2)");
    fsp_error err = {0};
    if (vms_parse_ref(argv[optind + 1], a->name, sizeof a->name, &o->version, &err))
        return cli_report(&err);
    o->name = a->name;
    if (!a->rate)
        a->rate = a->c.remote.bwlimit;
    return -1;
}

static int checkout_like(int argc, char **argv, bool export_only)
{
    const char *usage = export_only ? export_usage : checkout_usage;
    struct checkout_args a = {.o = {.export_only = export_only, .format = "raw"},
                              .c = {.takes_trust = true}};
    const char **seeds = calloc((size_t)argc + 1, sizeof *seeds);
    if (!seeds)
        return fputs("vmsync: out of memory\n", stderr), 6;
    int status = parse_checkout(argc, argv, usage, seeds, &a);
    if (status < 0) {
        common_start(&a.c, argv[optind]);
        status = a.estimate ? estimate_checkout(&a) : run_checkout(&a);
    }
    free(seeds);
    return status;
}

int cmd_checkout(int argc, char **argv) { return checkout_like(argc, argv, false); }
int cmd_export(int argc, char **argv) { return checkout_like(argc, argv, true); }

/* ---- prefetch ------------------------------------------------------------------ */

static const char *const prefetch_usage =
    "usage: vmsync prefetch REPO NAME [--seed IMAGE]... [--retries N] [--ignore-metered]\n"
    "                       [options]\n"
    "       vmsync prefetch --snooze DURATION|off [--cache DIR]\n"
    "\n"
    "Fetches NAME's latest version ahead of time, while the laptop is online: it\n"
    "is rebuilt into the cache (CACHE/prefetch/), from the seeds and from the last\n"
    "prefetch, without a lease.  Every later checkout or export of NAME from REPO\n"
    "takes it as a seed, so only what came since travels then.  It runs at the\n"
    "lowest CPU priority and a low I/O priority, within --bwlimit and the\n"
    "settings' bandwidth windows; a link that drops is tried again, and what\n"
    "arrived is kept.  One prefetch of NAME runs at a time.\n"
    "\n"
    "      --seed IMAGE       a local image to take content from (repeatable)\n"
    "      --retries N        when the link drops, try again N times (default 5),\n"
    "                         waiting 1, 2, 4... s (at most 60 s) in between\n"
    "      --ignore-metered   fetch even when NetworkManager says the link is\n"
    "                         metered (by default nothing is fetched then, exit 0)\n"
    "      --snooze DURATION  no prefetch does anything for DURATION (s, m, h or d,\n"
    "                         e.g. 90m), then they go on; off ends a snooze\n"
    TRUST_HELP COMMON_HELP;

struct prefetch_args {
    struct common c;
    struct vms_prefetch_opts o;
    unsigned retries;
    bool ignore_metered;
    const char *snooze;
};

/* NetworkManager's Metered property: 1 yes, 3 guessed yes.  No NetworkManager
 * (or no busctl) means no one says the link is metered. */
static bool link_metered(void)
{
    FILE *p = popen("busctl --system get-property org.freedesktop.NetworkManager "
                    "/org/freedesktop/NetworkManager org.freedesktop.NetworkManager Metered "
                    "2>/dev/null", "r");
    char line[64] = "";
    if (!p)
        return false;
    bool read = fgets(line, sizeof line, p) != NULL;
    pclose(p);
    return read && (!strcmp(line, "u 1\n") || !strcmp(line, "u 3\n"));
}

/* A background job yields the CPU and the disk to the user's work. */
static void lower_priority(void)
{
    /* the lowest best-effort level, not the idle class: that one can starve
     * for as long as anything else reads (the user unit asks for idle) */
    enum { IOPRIO_WHO_PROCESS = 1, IOPRIO_CLASS_BE = 2, IOPRIO_CLASS_SHIFT = 13, LOWEST = 7 };
    /* best effort: a container may refuse either */
    (void)setpriority(PRIO_PROCESS, 0, 19);
    (void)syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT | LOWEST);
}

/* "90", "90s", "30m", "2h", "1d" as seconds; -1 when malformed. */
static int64_t parse_duration(const char *s)
{
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    static const char units[] = "smhd";
    static const int64_t scale[] = {1, 60, 3600, 86400};
    const char *u = *end ? strchr(units, *end) : units;
    if (errno || end == s || n < 0 || !u || !*u || (*end && end[1]))
        return -1;
    int64_t secs = n * scale[u - units];
    return n > 366 * 86400 || secs > 366 * 86400 ? -1 : secs; /* a year, at most */
}

static const char *when_text(int64_t t);

static int run_snooze(struct prefetch_args *a)
{
    bool off = !strcmp(a->snooze, "off");
    int64_t secs = off ? 0 : parse_duration(a->snooze);
    if (secs < 0)
        return cli_usage_error(prefetch_usage, "bad --snooze: %s (e.g. 90m, 2h, at most 366d, or off)",
                               a->snooze);
    fsp_error err = {0};
    int64_t until = off ? 0 : (int64_t)time(NULL) + secs;
    /* the snooze is the cache's: the handle's repository is never opened */
    int rc = vms_client_open(".", &a->c.s, &a->c.client, &err);
    if (!rc)
        rc = vms_prefetch_snooze(a->c.client, until, &err);
    vms_client_close(a->c.client);
    if (rc)
        return cli_report(&err);
    if (a->c.quiet)
        return 0;
    if (a->c.json)
        printf("{\"snoozed_until\":%lld}\n", (long long)until);
    else if (off)
        puts("prefetching goes on: the snooze is over");
    else
        printf("prefetching is snoozed until %s\n", when_text(until));
    return 0;
}

static const char *when_text(int64_t t)
{
    static char buf[64];
    time_t tt = (time_t)t;
    struct tm tm;
    if (!localtime_r(&tt, &tm) || !strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %Z", &tm))
        snprintf(buf, sizeof buf, "%lld (seconds since 1970)", (long long)t);
    return buf;
}

/* Nothing to do now: snoozed, on a metered link, or another prefetch runs. */
static int report_skipped(const struct prefetch_args *a, const struct vms_prefetch_result *r)
{
    if (a->c.quiet)
        return 0;
    const char *why = r->snoozed_until ? "snoozed" : r->running_elsewhere ? "running" : "metered";
    if (a->c.json && r->snoozed_until)
        printf("{\"skipped\":\"snoozed\",\"snoozed_until\":%lld}\n", (long long)r->snoozed_until);
    else if (a->c.json)
        printf("{\"skipped\":\"%s\"}\n", why);
    else if (r->snoozed_until)
        printf("prefetching is snoozed until %s: nothing fetched\n", when_text(r->snoozed_until));
    else if (r->running_elsewhere)
        printf("another prefetch of %s is running: nothing to do\n", a->o.name);
    else
        puts("the link is metered: nothing fetched (--ignore-metered fetches anyway)");
    return 0;
}

/* A try cut short still moved bytes: the figures are those of every try. */
static void add_tries(struct vms_stats *total, const struct vms_stats *last)
{
    struct vms_stats sum = *last;
    sum.bytes_fetched_raw += total->bytes_fetched_raw;
    sum.bytes_fetched_compressed += total->bytes_fetched_compressed;
    sum.objects_fetched += total->objects_fetched;
    sum.wire_in += total->wire_in;
    sum.wire_out += total->wire_out;
    sum.round_trips += total->round_trips;
    sum.seconds += total->seconds;
    *total = sum;
}

/* Waits before the next try; false when interrupted meanwhile (ERR then
 * says so). */
static bool back_off(struct prefetch_args *a, unsigned attempt, fsp_error *err)
{
    unsigned wait = attempt < 6 ? 1u << attempt : 60;
    if (!a->c.quiet) {
        cli_progress_clear(&a->c.bar);
        fputs("vmsync: ", stderr);
        vms_put_text(stderr, err->msg);
        fprintf(stderr, "; trying again in %u s (%u of %u)\n", wait, attempt + 1, a->retries);
    }
    for (unsigned i = 0; i < wait * 10 && !cli_interrupted(); i++)
        usleep(100000);
    if (cli_interrupted())
        fsp_fail(err, FSP_EK_CANCELLED, -ECANCELED, "cancelled");
    return !cli_interrupted();
}

static int run_prefetch(struct prefetch_args *a)
{
    struct vms_stats st = {0}, last;
    struct vms_prefetch_result r = {0};
    fsp_error err = {0};
    if (!a->ignore_metered && link_metered())
        return report_skipped(a, &r);
    lower_priority();
    a->c.s.one_operation = true;
    int rc = common_open(&a->c, &err);
    for (unsigned attempt = 0; !rc; attempt++) {
        rc = vms_prefetch(a->c.client, &a->o, &r, &last, &err);
        add_tries(&st, &last);
        if (!rc || err.kind != VMS_EK_NETWORK || attempt >= a->retries)
            break;
        rc = back_off(a, attempt, &err) ? 0 : -ECANCELED;
    }
    common_close(&a->c);
    if (!rc && (r.snoozed_until || r.running_elsewhere))
        return report_skipped(a, &r);
    char summary[PATH_MAX + 256], x[32], y[32], z[32];
    if (!rc && st.in_place)
        snprintf(summary, sizeof summary, "%s already holds %s@%u: nothing to fetch", r.image,
                 a->o.name, st.version);
    else if (!rc)
        snprintf(summary, sizeof summary, "prefetched %s@%u into %s: %s from seeds, %s fetched (%s "
                 "compressed) in %.1f s", a->o.name, st.version, r.image, mib(st.bytes_from_seeds, x),
                 mib(st.bytes_fetched_raw, y), mib(st.bytes_fetched_compressed, z), st.seconds);
    return finish(&a->c, rc, &err, &st, summary);
}

/* Returns -1 to go on, else the exit status. */
static int parse_prefetch(int argc, char **argv, const char **seeds, struct prefetch_args *a)
{
    enum { OPT_SEED = 2000, OPT_RETRIES, OPT_METERED, OPT_SNOOZE };
    static const struct option opts[] = {{"seed", required_argument, 0, OPT_SEED},
                                         {"retries", required_argument, 0, OPT_RETRIES},
                                         {"ignore-metered", no_argument, 0, OPT_METERED},
                                         {"snooze", required_argument, 0, OPT_SNOOZE},
                                         COMMON_OPTIONS, {0, 0, 0, 0}};
    int opt, why;
    char *end;
    while ((opt = getopt_long(argc, argv, "qhi:", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_SEED: seeds[a->o.n_seeds++] = optarg; break;
        case OPT_RETRIES:
            a->retries = (unsigned)strtoul(optarg, &end, 10);
            if (*end || end == optarg || a->retries > 1000)
                return cli_usage_error(prefetch_usage, "bad --retries: %s (0 to 1000)", optarg);
            break;
        case OPT_METERED: a->ignore_metered = true; break;
        case OPT_SNOOZE: a->snooze = optarg; break;
        case 'h': return fputs(prefetch_usage, stdout), 0;
        default:
            if ((why = common_option(&a->c, opt, prefetch_usage)) != 0)
                return option_failed(why, prefetch_usage, argv);
        }
    }
    a->o.seeds = seeds;
    if (a->snooze)
        return optind == argc ? -1 : cli_usage_error(prefetch_usage, "%s", "--snooze takes no REPO or NAME");
    int took = cli_take_repo(argc, argv, 0, 2, 2, prefetch_usage);
    if (took >= 0)
        return took;
    if (optind + 2 != argc)
        return cli_usage_error(prefetch_usage, "%s", "needs REPO and NAME");
    a->o.name = argv[optind + 1];
    return -1;
}

int cmd_prefetch(int argc, char **argv)
{
    struct prefetch_args a = {.c = {.takes_trust = true}, .retries = 5};
    const char **seeds = calloc((size_t)argc + 1, sizeof *seeds);
    if (!seeds)
        return fputs("vmsync: out of memory\n", stderr), 6;
    int status = parse_prefetch(argc, argv, seeds, &a);
    if (status < 0 && a.snooze) {
        common_start(&a.c, ".");
        status = run_snooze(&a);
    } else if (status < 0) {
        common_start(&a.c, argv[optind]);
        status = run_prefetch(&a);
    }
    free(seeds);
    return status;
}

/* ---- checkin ------------------------------------------------------------------ */

static void checkin_summary(const struct vms_checkin_opts *o, const struct vms_stats *st, char *out,
                            size_t len)
{
    char a[32], b[32];
    if (o->dry_run)
        snprintf(out, len,
                 "dry run: checking in %s as %s would send %llu objects, %s before compression; "
                 "%llu files reread, %llu trusted; nothing was sent, the lease is kept",
                 o->image, o->name, (unsigned long long)st->objects_sent, mib(st->bytes_sent_raw, a),
                 (unsigned long long)st->files_rehashed, (unsigned long long)st->files_trusted);
    else if (st->already_recorded)
        snprintf(out, len, "%s is already recorded as %s@%u (an interrupted check-in recorded it); lease released",
                 o->image, o->name, st->version);
    else
        snprintf(out, len,
                 "checked in %s as %s@%u: %llu files reread, %llu trusted; sent %llu objects, %s (%s compressed) in %.1f s",
                 o->image, o->name, st->version, (unsigned long long)st->files_rehashed,
                 (unsigned long long)st->files_trusted, (unsigned long long)st->objects_sent,
                 mib(st->bytes_sent_raw, a), mib(st->bytes_sent_compressed, b), st->seconds);
}

/* checkin --to-bundle FILE NAME IMAGE: no repository, a bundle instead. */
static int checkin_to_bundle(struct common *c, const char *file, const char *name, const char *image,
                             const char *message)
{
    struct vms_checkin_bundle_opts o = {name, image, message, file};
    struct vms_stats st = {0};
    fsp_error err = {0};
    char summary[512], a[32], b[32];
    common_start(c, file);
    int rc = common_open(c, &err);
    if (!rc)
        rc = vms_checkin_to_bundle(c->client, &o, &st, &err);
    if (rc == -EEXIST && err.kind == VMS_EK_CONFLICT)
        cli_hint("remove it, or name another file");
    common_close(c);
    snprintf(summary, sizeof summary,
             "wrote %s@%u (parent %u) to %s: %llu new objects, %s, a bundle of %s; apply it with "
             "vmsync bundle apply REPO %s", name, st.version, st.version ? st.version - 1 : 0, file,
             (unsigned long long)st.objects_sent, mib(st.bytes_sent_raw, a), mib(st.bytes_sent_compressed, b),
             file);
    return finish(c, rc, &err, &st, summary);
}

static const char *const checkin_usage =
        "usage: vmsync checkin REPO NAME IMAGE [--message M] [--full-rescan] [-n] [options]\n"
        "       vmsync checkin --to-bundle FILE NAME IMAGE [--message M] [options]\n"
        "\n"
        "Sends what changed in IMAGE since this host checked NAME out, records it as\n"
        "the next version (its parent: the version checked out) and releases the lease.\n"
        "Files whose inode, size and times are unchanged are trusted without being read.\n"
        "Run again after an interruption that came once the version was recorded, it\n"
        "says so (NAME@N) and exits 0.\n"
        "\n"
        "With --to-bundle, on a laptop that cannot reach REPO: writes FILE, a bundle\n"
        "of the next version (IMAGE's manifest, and the objects that the version it\n"
        "was checked out as lacks), for 'vmsync bundle apply REPO FILE' at the server,\n"
        "which records it as this check-in would, or refuses it if another won.\n"
        "\n"
        "  -m, --message M        a note for the log\n"
        "      --full-rescan      reread every file\n"
        "  -n, --dry-run          scan IMAGE and ask REPO what it lacks, then stop: print\n"
        "                         what would be sent (objects, bytes before compression,\n"
        "                         files reread); nothing is sent or recorded, the lease\n"
        "                         stays\n"
        "      --to-bundle FILE   write the check-in to the bundle FILE (no REPO)\n" COMMON_HELP;

int cmd_checkin(int argc, char **argv)
{
    const char *usage = checkin_usage;
    enum { OPT_FULL = 2000, OPT_TO_BUNDLE };
    static const struct option opts[] = {{"message", required_argument, 0, 'm'},
                                         {"full-rescan", no_argument, 0, OPT_FULL},
                                         {"dry-run", no_argument, 0, 'n'},
                                         {"to-bundle", required_argument, 0, OPT_TO_BUNDLE},
                                         COMMON_OPTIONS, {0, 0, 0, 0}};
    struct common c = {0};
    struct vms_checkin_opts o = {0};
    const char *to_bundle = NULL;
    int opt, why;
    while ((opt = getopt_long(argc, argv, "m:nqhi:", opts, NULL)) != -1) {
        if (opt == 'm')
            o.message = optarg;
        else if (opt == 'n')
            o.dry_run = true;
        else if (opt == OPT_FULL)
            o.full_rescan = true;
        else if (opt == OPT_TO_BUNDLE)
            to_bundle = optarg;
        else if (opt == 'h')
            return fputs(usage, stdout), 0;
        else if ((why = common_option(&c, opt, usage)) != 0)
            return option_failed(why, usage, argv);
    }
    if (to_bundle && o.dry_run)
        return cli_usage_error(usage, "%s", "--dry-run is for a check-in to REPO, not --to-bundle");
    int took = to_bundle ? -1 : cli_take_repo(argc, argv, 0, 3, 3, usage);
    if (took >= 0)
        return took;
    if (to_bundle && optind + 2 == argc)
        return checkin_to_bundle(&c, to_bundle, argv[optind], argv[optind + 1], o.message);
    if (to_bundle || optind + 3 != argc)
        return cli_usage_error(usage, "%s", "checkin needs REPO, NAME and IMAGE (or --to-bundle FILE, NAME and IMAGE)");
    o.name = argv[optind + 1];
    o.image = argv[optind + 2];
    common_start(&c, argv[optind]);
    c.s.one_operation = true;
    struct vms_stats st = {0};
    fsp_error err = {0};
    int rc = common_open(&c, &err);
    if (!rc)
        rc = vms_checkin(c.client, &o, &st, &err);
    common_close(&c);
    char summary[512];
    checkin_summary(&o, &st, summary, sizeof summary);
    return finish(&c, rc, &err, &st, summary);
}

/* ---- log -------------------------------------------------------------------------- */

/* ,"signature":STATE,"signer":"SHA256:..." (null when unsigned) */
static void json_signature(vms_client *cl, const struct vms_version *v)
{
    char fp[VMS_FINGERPRINT_TEXT_LEN];
    vms_fingerprint_text(v->signer, fp);
    printf(",\"signature\":\"%s\",\"signer\":", vms_signature_state_name(vms_signature_state(cl, v)));
    printf(v->is_signed ? "\"%s\"" : "null", fp);
}

/* "unsigned", or "signed by SHA256:... (trusted)" and the like. */
static void describe_signature(vms_client *cl, const struct vms_version *v, char *out, size_t len)
{
    enum vms_signature_state state = vms_signature_state(cl, v);
    char fp[VMS_FINGERPRINT_TEXT_LEN];
    vms_fingerprint_text(v->signer, fp);
    if (state == VMS_SIGNATURE_NONE)
        snprintf(out, len, "unsigned");
    else
        snprintf(out, len, "signed by %s (%s)", fp,
                 state == VMS_SIGNATURE_TRUSTED ? "trusted"
                 : state == VMS_SIGNATURE_BAD   ? "BAD SIGNATURE"
                                                : "not trusted");
}

static void print_version_json(vms_client *cl, const struct vms_version *v)
{
    putchar('{');
    vms_json_member(stdout, "image", v->image);
    printf(",\"version\":%u,\"parent\":%u,\"created\":%lld,\"size\":%llu,", v->number,
           v->parent, (long long)v->created, (unsigned long long)v->size);
    vms_json_member(stdout, "user", v->user);
    putchar(',');
    vms_json_member(stdout, "host", v->host);
    putchar(',');
    vms_json_member(stdout, "message", v->message);
    fputs(",\"digest\":\"", stdout);
    print_hex(stdout, v->digest);
    putchar('"');
    json_signature(cl, v);
    fputs("}\n", stdout);
}

/* Names, users, hosts and messages come from the catalog: data, not text. */
static int print_version(void *ctx, const struct vms_version *v)
{
    struct common *c = ctx;
    if (c->json) {
        print_version_json(c->client, v);
        return 0;
    }
    char when[32];
    time_t t = (time_t)v->created;
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", gmtime(&t));
    vms_put_name(stdout, v->image);
    printf("@%u  %s UTC  ", v->number, when);
    vms_put_name(stdout, v->user);
    putchar('@');
    vms_put_name(stdout, v->host);
    printf("  parent %u  %.1f MiB  ", v->parent, v->size / 1048576.0);
    char signature[160];
    describe_signature(c->client, v, signature, sizeof signature);
    puts(signature);
    if (v->message[0]) {
        fputs("    ", stdout);
        vms_put_text(stdout, v->message);
        putchar('\n');
    }
    return 0;
}

int cmd_log(int argc, char **argv)
{
    static const char *const usage =
        "usage: vmsync log REPO [NAME] [--json]\n"
        "\n"
        "Lists the versions of NAME (or of every image), oldest first, each with its\n"
        "signature: unsigned, or signed by a key's fingerprint, trusted or\n"
        "not trusted, or BAD SIGNATURE; --json prints one JSON object per line\n"
        "(signature: unsigned, untrusted, trusted or bad; signer).\n"
        "\n" TRUST_HELP COMMON_HELP;
    struct common c = {.takes_trust = true};
    int status = parse_common_only(argc, argv, usage, &c, 1, 2, "log needs REPO and optionally NAME");
    if (status >= 0)
        return status;
    common_start(&c, argv[optind]);
    fsp_error err = {0};
    int rc = common_open(&c, &err);
    if (!rc)
        rc = vms_log(c.client, optind + 2 == argc ? argv[optind + 1] : NULL, print_version, &c, &err);
    common_close(&c);
    return rc ? cli_report(&err) : 0;
}

/* ---- verify ------------------------------------------------------------------------ */

static void print_verify_json(const char *image, const struct vms_version *v, bool same,
                              const uint8_t *expected, const uint8_t *actual, const char *state)
{
    char fp[VMS_FINGERPRINT_TEXT_LEN];
    vms_fingerprint_text(v->signer, fp);
    putchar('{');
    vms_json_member(stdout, "file", image);
    putchar(',');
    vms_json_member(stdout, "image", v->image);
    printf(",\"version\":%u,\"matches\":%s,\"expected\":\"", v->number, same ? "true" : "false");
    print_hex(stdout, expected);
    fputs("\",\"actual\":\"", stdout);
    print_hex(stdout, actual);
    printf("\",\"signature\":\"%s\",\"signer\":", state);
    printf(v->is_signed ? "\"%s\"}\n" : "null}\n", fp);
}

int cmd_verify(int argc, char **argv)
{
    static const char *const usage =
        "usage: vmsync verify REPO NAME[@VERSION] IMAGE [--json]\n"
        "\n"
        "Scans IMAGE and compares its canonical digest with the version's, and shows\n"
        "the version's signature.  Exit status 0 when they match, 10 when they differ;\n"
        "with -q that is all it says; --json says it as one object.  With a trusted key,\n"
        "a version that no trusted key signed, or signed badly, is refused before IMAGE\n"
        "is read (exit 13).\n"
        "\n" TRUST_HELP COMMON_HELP;
    struct common c = {.takes_trust = true};
    int status = parse_common_only(argc, argv, usage, &c, 3, 3, "verify needs REPO, NAME[@VERSION] and IMAGE");
    if (status >= 0)
        return status;
    char name[256];
    uint32_t version;
    fsp_error err = {0};
    if (vms_parse_ref(argv[optind + 1], name, sizeof name, &version, &err))
        return cli_report(&err);
    common_start(&c, argv[optind]);
    bool same;
    uint8_t expected[FSP_SHA256_LEN], actual[FSP_SHA256_LEN];
    struct vms_version v;
    char signature[160] = "";
    const char *state = NULL;
    int rc = common_open(&c, &err);
    if (!rc) /* the number first: the latest may move on between the two calls */
        rc = vms_version_lookup(c.client, name, version, &v, &err);
    if (!rc)
        rc = vms_verify(c.client, name, v.number, argv[optind + 2], &same, expected, actual, &err);
    if (!rc) {
        describe_signature(c.client, &v, signature, sizeof signature);
        state = vms_signature_state_name(vms_signature_state(c.client, &v));
    }
    common_close(&c);
    cli_progress_clear(&c.bar);
    if (rc)
        return cli_report(&err);
    if (c.quiet)
        return same ? 0 : 10;
    if (c.json) {
        print_verify_json(argv[optind + 2], &v, same, expected, actual, state);
        return same ? 0 : 10;
    }
    vms_put_name(stdout, argv[optind + 2]);
    printf(": %s\n  expected ", same ? "matches" : "DIFFERS");
    print_hex(stdout, expected);
    fputs("\n  actual   ", stdout);
    print_hex(stdout, actual);
    printf("\n  %s@%u %s\n", name, v.number, signature);
    return same ? 0 : 10;
}

/* ---- gc ---------------------------------------------------------------------------- */

static void write_gc_json(FILE *f, const struct vms_gc_stats *st)
{
    fprintf(f,
            "{\"objects_before\":%llu,\"objects_kept\":%llu,\"objects_dropped\":%llu,"
            "\"packs_before\":%llu,\"packs_kept\":%llu,\"packs_rewritten\":%llu,"
            "\"packs_removed\":%llu,\"bytes_before\":%llu,\"bytes_kept\":%llu,"
            "\"bytes_freed\":%llu}\n",
            (unsigned long long)st->objects_before, (unsigned long long)st->objects_kept,
            (unsigned long long)st->objects_dropped, (unsigned long long)st->packs_before,
            (unsigned long long)st->packs_kept, (unsigned long long)st->packs_rewritten,
            (unsigned long long)st->packs_removed, (unsigned long long)st->bytes_before,
            (unsigned long long)st->bytes_kept, (unsigned long long)st->bytes_freed);
}

static uint64_t tenths_of_mib(uint64_t bytes) { return (bytes * 10 + (1u << 19)) >> 20; }

/* Freed is shown as before minus kept, rounded alike, so the line adds up. */
static void print_gc_summary(const struct vms_gc_stats *st, bool dry_run)
{
    uint64_t before = tenths_of_mib(st->bytes_before), kept = tenths_of_mib(st->bytes_kept);
    uint64_t freed = before > kept ? before - kept : 0;
    printf("gc%s: %llu objects: %llu kept, %llu dropped; %llu packs: %llu kept, %llu rewritten, "
           "%llu removed; %llu.%llu MiB: %llu.%llu MiB kept, %llu.%llu MiB freed\n",
           dry_run ? " (dry run: nothing changed)" : "",
           (unsigned long long)st->objects_before, (unsigned long long)st->objects_kept,
           (unsigned long long)st->objects_dropped, (unsigned long long)st->packs_before,
           (unsigned long long)st->packs_kept, (unsigned long long)st->packs_rewritten,
           (unsigned long long)st->packs_removed, (unsigned long long)(before / 10),
           (unsigned long long)(before % 10), (unsigned long long)(kept / 10),
           (unsigned long long)(kept % 10), (unsigned long long)(freed / 10),
           (unsigned long long)(freed % 10));
}

/* gc's figures: --stats-json FILE, then the summary (--json: the same as JSON). */
static int report_gc(const struct common *c, const struct vms_gc_stats *st, bool dry_run)
{
    if (c->stats_json) {
        FILE *f = strcmp(c->stats_json, "-") ? fopen(c->stats_json, "w") : stdout;
        if (!f)
            return perror(c->stats_json), 6;
        write_gc_json(f, st);
        if (f != stdout)
            fclose(f);
    }
    if (c->quiet)
        return 0;
    if (c->json)
        write_gc_json(stdout, st);
    else
        print_gc_summary(st, dry_run);
    return 0;
}

int cmd_gc(int argc, char **argv)
{
    static const char *const usage =
        "usage: vmsync gc REPO [--wait SECONDS] [-n|--dry-run] [--json] [-q]\n"
        "\n"
        "Drops the objects that no version uses and rewrites the packs that held them.\n"
        "Waits for other vmsync processes using the repository (agents' sessions too)\n"
        "to finish; when they are still there after --wait, gc removes nothing and\n"
        "exits 8, naming them.  Refuses a repository that fails the quick check\n"
        "(vmsync check REPO lists the problems).  The summary counts objects, pack\n"
        "files and bytes (packs, manifests, temporary files and caches) before, kept\n"
        "and removed; --json prints the same figures, exact, as JSON.\n"
        "\n"
        "      --wait SECONDS     how long to wait for them (default 60)\n"
        "  -n, --dry-run          what gc would drop and free now, changing nothing and\n"
        "                         waiting for no one (freed: the stored bytes of the\n"
        "                         objects it would drop, unused manifests, temporary\n"
        "                         files and caches)\n" COMMON_HELP;
    enum { OPT_WAIT = 2000 };
    static const struct option opts[] = {{"wait", required_argument, 0, OPT_WAIT},
                                         {"dry-run", no_argument, 0, 'n'}, COMMON_OPTIONS,
                                         {0, 0, 0, 0}};
    bool dry_run = false;
    struct common c = {0};
    int opt, why, wait;
    while ((opt = getopt_long(argc, argv, "nqhi:", opts, NULL)) != -1) {
        if (opt == 'n')
            dry_run = true;
        else if (opt == OPT_WAIT) {
            if (cli_parse_int(optarg, 1, 86400, &wait))
                return cli_usage_error(usage, "--wait: not a number of seconds from 1 to 86400: '%s'",
                                       optarg);
            c.s.gc_wait = (unsigned)wait;
        } else if (opt == 'h')
            return fputs(usage, stdout), 0;
        else if ((why = common_option(&c, opt, usage)) != 0)
            return option_failed(why, usage, argv);
    }
    int took = cli_take_repo(argc, argv, 0, 1, 1, usage);
    if (took >= 0)
        return took;
    if (optind + 1 != argc)
        return cli_usage_error(usage, "%s", "gc needs REPO");
    common_start(&c, argv[optind]);
    struct vms_gc_stats st = {0};
    fsp_error err = {0};
    int rc = common_open(&c, &err);
    if (!rc)
        rc = dry_run ? vms_gc_dry_run(c.client, &st, &err) : vms_gc(c.client, &st, &err);
    if (rc == -EBUSY && err.kind == VMS_EK_CONFLICT)
        cli_hint("--wait sets how long gc waits");
    common_close(&c);
    cli_progress_clear(&c.bar);
    return rc ? cli_report(&err) : report_gc(&c, &st, dry_run);
}

/* ---- check ------------------------------------------------------------------------- */

struct check_out {
    struct common *c;
    uint64_t shown;
};

static void print_problem_json(const struct vms_problem *p)
{
    printf("{\"kind\":\"%s\"", vms_problem_name(p->kind));
    if (p->image) {
        putchar(',');
        vms_json_member(stdout, "image", p->image);
        printf(",\"version\":%u", p->version);
    }
    if (p->object) {
        fputs(",\"object\":\"", stdout);
        print_hex(stdout, p->object);
        putchar('"');
    }
    if (p->pack) {
        putchar(',');
        vms_json_member(stdout, "pack", p->pack);
    }
    fputs(",\"detail\":", stdout);
    vms_json_string(stdout, p->detail);
    putchar('}');
}

static int show_problem(void *ctx, const struct vms_problem *p)
{
    struct check_out *o = ctx;
    cli_progress_clear(&o->c->bar);
    if (o->c->json) {
        fputs(o->shown ? ",\n  " : "\n  ", stdout);
        print_problem_json(p);
    } else {
        char line[1600];
        vms_problem_describe(p, line, sizeof line);
        vms_put_text(stdout, line); /* names from a damaged catalog are data */
        putchar('\n');
    }
    o->shown++;
    return 0;
}

static void print_check_json_end(const struct vms_check_stats *st, uint64_t shown,
                                 const fsp_error *err, int rc)
{
    printf("%s],\n \"healthy\":%s,\"images\":%llu,\"versions\":%llu,\"manifests_read\":%llu,"
           "\"objects_needed\":%llu,\"objects_indexed\":%llu,\"packs\":%llu,"
           "\"objects_read\":%llu,\"bytes_read\":%llu,\"problems_found\":%llu,\"seconds\":%.3f",
           shown ? "\n " : "", !rc && !st->problems ? "true" : "false",
           (unsigned long long)st->images, (unsigned long long)st->versions,
           (unsigned long long)st->manifests_read, (unsigned long long)st->objects_needed,
           (unsigned long long)st->objects_indexed, (unsigned long long)st->packs,
           (unsigned long long)st->objects_read, (unsigned long long)st->bytes_read,
           (unsigned long long)st->problems, st->seconds);
    if (rc) {
        fputs(",\"error\":", stdout);
        vms_json_string(stdout, err->msg);
    }
    puts("}");
}

static void print_check_summary(const char *repo, const struct vms_check_stats *st, bool objects)
{
    char verdict[64] = "healthy";
    if (st->problems)
        snprintf(verdict, sizeof verdict, "%llu problem%s", (unsigned long long)st->problems,
                 st->problems == 1 ? "" : "s");
    fputs("check: ", stdout);
    vms_put_name(stdout, repo);
    printf(": %s: %llu images, %llu versions, %llu manifests read, %llu objects "
           "needed, %llu indexed in %llu packs",
           verdict, (unsigned long long)st->images, (unsigned long long)st->versions,
           (unsigned long long)st->manifests_read, (unsigned long long)st->objects_needed,
           (unsigned long long)st->objects_indexed, (unsigned long long)st->packs);
    if (objects)
        printf(", %llu objects read (%.1f MiB)", (unsigned long long)st->objects_read,
               st->bytes_read / 1048576.0);
    printf(" in %.1f s\n", st->seconds);
}

int cmd_check(int argc, char **argv)
{
    static const char *const usage =
        "usage: vmsync check REPO [--objects] [--json] [-q]\n"
        "\n"
        "Checks the repository: the catalog (SQLite's quick check and the catalog's own\n"
        "rules), the pack files, every version's manifest (there, intact, readable) and\n"
        "that every object a version needs is indexed.  Prints each problem, naming the\n"
        "version, object and pack, then a summary.  Exit status 0 when healthy, 5 when\n"
        "a problem was found; with -q it prints the problems only.  Runs beside other\n"
        "vmsync processes; over ssh:// run it on the server.\n"
        "\n"
        "      --objects          also read, decompress and hash every stored object\n"
        "                         (and run SQLite's full integrity check)\n"
        "      --json             one JSON object: the problems and the figures\n" COMMON_HELP;
    enum { OPT_OBJECTS = 2000 };
    static const struct option opts[] = {{"objects", no_argument, 0, OPT_OBJECTS}, COMMON_OPTIONS,
                                         {0, 0, 0, 0}};
    struct common c = {0};
    struct vms_check_opts o = {0};
    int opt, why;
    while ((opt = getopt_long(argc, argv, "qhi:", opts, NULL)) != -1) {
        if (opt == OPT_OBJECTS)
            o.objects = true;
        else if (opt == 'h')
            return fputs(usage, stdout), 0;
        else if ((why = common_option(&c, opt, usage)) != 0)
            return option_failed(why, usage, argv);
    }
    int took = cli_take_repo(argc, argv, 0, 1, 1, usage);
    if (took >= 0)
        return took;
    if (optind + 1 != argc)
        return cli_usage_error(usage, "%s", "check needs REPO");
    common_start(&c, argv[optind]);
    struct check_out out = {&c, 0};
    struct vms_check_stats st = {0};
    fsp_error err = {0};
    if (c.json) {
        putchar('{');
        vms_json_member(stdout, "repository", argv[optind]);
        fputs(",\"problems\":[", stdout);
    }
    int rc = common_open(&c, &err);
    if (!rc)
        rc = vms_check(c.client, &o, show_problem, &out, &st, &err);
    common_close(&c);
    cli_progress_clear(&c.bar);
    if (c.json)
        print_check_json_end(&st, out.shown, &err, rc);
    else if (!rc && !c.quiet)
        print_check_summary(argv[optind], &st, o.objects);
    if (rc)
        return cli_report(&err);
    return st.problems ? 5 : 0;
}
