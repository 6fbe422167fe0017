/* vmsync command line: a thin client of libvmsync.  Errors from the library
 * arrive as fsp_error and are printed here, once, as "vmsync: MESSAGE"; the
 * exit status follows the error kind (see usage()). */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const main_usage =
    "usage: vmsync COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  manifest IMAGE [-o FILE] [--json] [--layout]   per-file manifest of a disk image\n"
    "  manifest show FILE [--json] [--layout]          print a saved manifest\n"
    "  diff A B [--json]                               what changed between two images or manifests\n"
    "  inspect IMAGE [--json] [--guestfs]              partitions, filesystems, files, OS\n"
    "\n"
    "Repository commands.  REPO is a directory, an ssh://[user@]host[:port]/path URL,\n"
    "or, for checkout, export, verify and log, a bundle FILE:\n"
    "  init REPO                                       create an empty repository\n"
    "  import REPO IMAGE --name NAME [-m MSG]          store an image as NAME's next version\n"
    "  checkout REPO NAME[@V] -o OUT [--seed IMG]...   rebuild a version from seeds + repository\n"
    "  checkin REPO NAME IMAGE [-m MSG]                send what changed; record a new version\n"
    "  checkin --to-bundle FILE NAME IMAGE             the same, offline: into a bundle\n"
    "  export REPO NAME[@V] -o OUT                     materialise a version (no lease)\n"
    "  prefetch REPO NAME [--seed IMG]...              fetch the latest version ahead of time\n"
    "  log REPO [NAME] [--json]                        versions, oldest first\n"
    "  diff REPO NAME@V1 NAME@V2 [--json]              what changed between two versions\n"
    "  verify REPO NAME[@V] IMAGE                      does IMAGE match the version?\n"
    "  gc REPO [--wait SECONDS] [-n]                   drop objects no version uses\n"
    "  forget REPO NAME@V [-n]                         remove a version (gc frees it)\n"
    "  prune REPO [NAME] --keep-last N [-n]            forget by a retention policy\n"
    "  stats REPO [--json]                             bytes stored, dedup, per image\n"
    "  check REPO [--objects] [--json]                 check the repository's health\n"
    "  images REPO [--json]                            images, latest versions, leases\n"
    "  leases REPO [NAME] [--json]                     who holds which image, since when\n"
    "  release REPO NAME [--json]                      give back this host's lease\n"
    "  audit REPO [NAME] [--since T] [--json]          the audit log, oldest first\n"
    "  key generate|show REPO [--force] [--json]       the repository's signing key\n"
    "  bundle create REPO NAME[@V] -o FILE [--have IMG]...  a version in one file, for\n"
    "                                                  laptops off the network\n"
    "  bundle show FILE [--json]                       what a bundle holds and needs\n"
    "  bundle apply REPO FILE                          record a bundle's version in REPO\n"
    "  fleet plan FLEET.json [--json]                  predict and schedule a rollout\n"
    "  fleet run FLEET.json [--logs DIR] [--json]      carry the schedule out, against the prediction\n"
    "  fleet status REPO [--json]                      which laptop holds what, pending work\n"
    "  publish REPO DIR                                REPO as a static tree for web servers\n"
    "\n"
    "A bundle FILE is a read-only REPO: checkout, export, verify and log read it.\n"
    "So is https://host/path, a tree that publish wrote, served by any web server.\n"
    "REPO may be a repository named in /etc/vmsync/vmsync.conf or ~/.config/vmsync/config,\n"
    "or left out: -R REPO (--repo) names it, else $VMSYNC_REPO, else the files'\n"
    "[defaults] repository (see vmsync.conf(5)).  One word that could be REPO or\n"
    "NAME (log, leases, audit) is refused when it names a file, folder or\n"
    "configured repository: write -R REPO or ./DIR.\n"
    "\n"
    "Images may be raw, qcow2, vmdk, vhdx, vdi or vpc; they are only ever read.\n"
    "With --json a command prints its result as JSON, and an error (a usage error\n"
    "too) as one line on stderr: {\"error\":{\"message\":M,\"kind\":K,\"exit\":N,\"hint\":H}}.\n"
    "Run 'vmsync COMMAND --help' for a command's options; 'vmsync --version' (-V)\n"
    "prints the version and the libraries' (--json: as JSON).\n"
    "\n"
    "Exit status: 0 success; 1 internal error; 2 bad usage; 3 cannot open an input;\n"
    "4 not a disk image, truncated, or a missing or refused backing file;\n"
    "5 corrupt content (check found a problem, or gc refused a repository that\n"
    "fails it); 6 I/O error; 7 cancelled (Ctrl-C); 8 refused (lease held elsewhere, another\n"
    "check-in won, OUT would be replaced (see --force), or gc found the repository\n"
    "in use); 9 no such image or version; 10 verify found a difference; 11 ssh:// or\n"
    "https://: cannot connect, or the link was lost or went silent; 12 ssh://: refused\n"
    "(host key, login, a path outside the agent's root, a --read-only key, no\n"
    "vmsync-agent on the server), https://: refused (the certificate, HTTP 401 or\n"
    "403); 13 a trusted key (--trust) did not sign the version, or it is badly\n"
    "signed.\n";

int cli_exit_status(const fsp_error *err)
{
    switch (err->kind) {
    case FSP_EK_NONE: return 0;
    case FSP_EK_USAGE: return 2;
    case FSP_EK_OPEN: return 3;
    case FSP_EK_FORMAT: return 4;
    case FSP_EK_CORRUPT: return 5;
    case FSP_EK_IO: return 6;
    case FSP_EK_NOMEM: return 6;
    case FSP_EK_CANCELLED: return 7;
    case VMS_EK_CONFLICT: return 8;
    case VMS_EK_NOTFOUND: return 9;
    case VMS_EK_NETWORK: return 11;
    case VMS_EK_DENIED: return 12;
    case VMS_EK_UNTRUSTED: return 13;
    default: return 1;
    }
}

/* What the user can do about the error to be reported: the library knows no
 * option names, the CLI adds them (cli_hint). */
static const char *report_hint;

void cli_hint(const char *hint) { report_hint = hint; }

/* --json anywhere among the words (before a "--"): errors are JSON too.  The
 * words are scanned, not parsed, so that a usage error is JSON as well. */
static bool json_errors;

static void scan_for_json(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--json"))
            json_errors = true;
}

/* One line on stderr: {"error":{"message":M,"kind":K,"exit":N,"hint":H}}. */
static void put_json_error(const char *msg, int kind, int status, const char *hint)
{
    fputs("{\"error\":{", stderr);
    vms_json_member(stderr, "message", msg);
    fputs(",\"kind\":", stderr);
    vms_json_string(stderr, vms_error_kind_name(kind));
    fprintf(stderr, ",\"exit\":%d,\"hint\":", status);
    vms_json_string(stderr, hint);
    fputs("}}\n", stderr);
}

int cli_report(const fsp_error *err)
{
    if (err->code == -ENOENT && err->kind == VMS_EK_DENIED && !report_hint)
        report_hint = "or give its path there with --agent"; /* the server has no such agent */
    int status = cli_exit_status(err);
    status = status ? status : 1;
    const char *msg = err->msg[0] ? err->msg : "unknown error";
    if (json_errors)
        return put_json_error(msg, err->kind, status, report_hint), status;
    /* messages embed names from images and from servers */
    fputs("vmsync: ", stderr);
    vms_put_text(stderr, msg);
    if (report_hint)
        fprintf(stderr, "; %s", report_hint);
    fputc('\n', stderr);
    return status;
}

int cli_usage_error(const char *usage, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* The synopsis only: the usage up to its first blank line. */
    const char *end = strstr(usage, "\n\n");
    size_t synopsis = end ? (size_t)(end - usage) + 1 : strlen(usage);
    if (json_errors) {
        char hint[1024];
        snprintf(hint, sizeof hint, "%.*s", (int)strcspn(usage, "\n"), usage);
        return put_json_error(msg, FSP_EK_USAGE, 2, hint), 2;
    }
    fprintf(stderr, "vmsync: %s\n", msg);
    fwrite(usage, 1, synopsis, stderr);
    return 2;
}

int cli_bad_option(const char *usage, char **argv)
{
    /* getopt leaves the offending word just before optind, and says the same
     * of an unknown option and of one whose value is missing: only the last
     * word can lack its value */
    const char *word = optind > 0 ? argv[optind - 1] : "?";
    if (optind > 0 && argv[optind])
        return cli_usage_error(usage, "unknown option '%s'", word);
    if (optopt && optopt != '?' && strchr("abcdefghijklmnopqrstuvwxyz", optopt))
        return cli_usage_error(usage, "option -%c needs a value, or is unknown", optopt);
    return cli_usage_error(usage, "unknown option, or an option without its value: '%s'", word);
}

bool cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            return false;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return true;
    }
    return false;
}

static bool cli_repo_option_refused(const char *cmd, const char *sub);
static void put_library_text(void *ctx, const struct vms_library_version *v)
{
    (void)ctx;
    printf("  %-11s built %-28s running %s\n", v->name, v->built ? v->built : "unknown",
           v->running ? v->running : "unknown");
}

static void put_library_json(void *ctx, const struct vms_library_version *v)
{
    bool *first = ctx;
    fputs(*first ? "{" : ",{", stdout);
    *first = false;
    vms_json_member(stdout, "name", v->name);
    fputs(",\"built\":", stdout);
    vms_json_string(stdout, v->built);
    fputs(",\"running\":", stdout);
    vms_json_string(stdout, v->running);
    putchar('}');
}

/* vmsync's version, then the libraries' as built and as loaded. */
static int print_version(bool json)
{
    bool first = true;
    if (json) {
        printf("{\"version\":\"%s\",\"libraries\":[", VMSYNC_VERSION);
        vms_library_versions(put_library_json, &first);
        puts("]}");
    } else {
        printf("vmsync %s\nlibraries:\n", VMSYNC_VERSION);
        vms_library_versions(put_library_text, NULL);
    }
    return 0;
}

int main(int argc, char **argv)
{
    opterr = 0; /* errors are reported the vmsync way, by cli_bad_option */
    scan_for_json(argc, argv);
    cli_cancel_on_signals(NULL); /* Ctrl-C cancels every command: exit 7 */
    if ((argc = cli_take_repo_option(argc, argv)) < 0) /* anywhere: vmsync -R REPO log */
        return cli_usage_error(main_usage, "%s", "-R/--repo needs a REPO, and is given once");
    if (argc < 2)
        return cli_usage_error(main_usage, "%s", "missing command");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(main_usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V"))
        return print_version(argc > 2 && !strcmp(argv[2], "--json"));
    if (cli_repo_option_refused(cmd, argc > 2 ? argv[2] : ""))
        return cli_usage_error(main_usage, "%s takes no -R/--repo%s", cmd,
                               strcmp(cmd, "init") ? "" : ": write its REPO");
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
    } commands[] = {
        {"manifest", cmd_manifest}, {"diff", cmd_diff},         {"inspect", cmd_inspect},
        {"init", cmd_init},         {"import", cmd_import},     {"checkout", cmd_checkout},
        {"export", cmd_export},     {"prefetch", cmd_prefetch}, {"checkin", cmd_checkin},
        {"log", cmd_log},
        {"verify", cmd_verify},     {"gc", cmd_gc},             {"check", cmd_check},
        {"images", cmd_images},     {"leases", cmd_leases},     {"release", cmd_release},
        {"forget", cmd_forget},     {"prune", cmd_prune},       {"stats", cmd_stats},
        {"audit", cmd_audit},       {"bundle", cmd_bundle},
        {"key", cmd_key},
        {"fleet", cmd_fleet},
        {"publish", cmd_publish},
    };
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(cmd, commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    return cli_usage_error(main_usage, "unknown command '%s'", cmd);
}

static vms_client *volatile interrupt_client;
static volatile sig_atomic_t interrupted;

bool cli_interrupted(void) { return interrupted; }

/* All a handler may do: flag it, and fire the open client's token; the
 * operation then ends itself (the scans that run without a client see the
 * flag in their progress callback).  A second signal ends the process,
 * whatever it waits for. */
static void on_interrupt(int sig)
{
    interrupted = 1;
    vms_client *c = interrupt_client;
    if (c)
        vms_client_cancel(c);
    signal(sig, SIG_DFL);
}

void cli_cancel_on_signals(vms_client *c)
{
    interrupt_client = c;
    if (c && interrupted) /* the signal came before the handle */
        vms_client_cancel(c);
    if (interrupted)
        return; /* the second signal keeps its default */
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* The settings, the system file's and the user's in one view, read once:
 * their strings must outlive every handle, so they stay loaded until the
 * process ends. */
static struct vms_config *settings;

static int load_settings(fsp_error *err)
{
    char path[4096] = "";
    fsp_error no_home = {0};
    if (settings)
        return 0;
    /* without a home there is no user's file, but there is the system's */
    if (vms_config_default_path(path, sizeof path, &no_home))
        path[0] = 0;
    return vms_config_load_all(vms_config_system_path(), path, &settings, err);
}

int cli_settings_trusted_keys(char *const **keys, size_t *n, fsp_error *err)
{
    int rc = load_settings(err);
    *keys = !rc && settings ? settings->trusted_keys : NULL;
    *n = !rc && settings ? settings->n_trusted_keys : 0;
    return rc;
}

static const char *repo_option; /* -R/--repo, which main took out of argv */

/* Commands that would ignore -R: those without a REPO, and init, which
 * creates one and so is always told where. */
static bool cli_repo_option_refused(const char *cmd, const char *sub)
{
    return repo_option && (!strcmp(cmd, "manifest") || !strcmp(cmd, "inspect") ||
                           !strcmp(cmd, "init") || (!strcmp(cmd, "bundle") && !strcmp(sub, "show")) ||
                           (!strcmp(cmd, "fleet") && (!strcmp(sub, "plan") || !strcmp(sub, "run"))));
}

int cli_take_repo_option(int argc, char **argv)
{
    int kept = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool is_opt = !strcmp(a, "-R") || !strcmp(a, "--repo");
        bool done = !strcmp(a, "--");
        if (done || (!is_opt && strncmp(a, "--repo=", 7))) {
            argv[kept++] = argv[i];
            if (done)
                while (++i < argc)
                    argv[kept++] = argv[i];
            continue;
        }
        if (repo_option || (is_opt && i + 1 >= argc))
            return -1;
        repo_option = is_opt ? argv[++i] : a + 7;
    }
    argv[kept] = NULL;
    return kept;
}

/* A word with neither '/' nor ':' may name a configured repository. */
static bool plain_word(const char *s) { return !strchr(s, '/') && !strchr(s, ':'); }

static bool path_exists(const char *s)
{
    struct stat st;
    return stat(s, &st) == 0;
}

/* The repository a command uses when none is written: VMSYNC_REPO, else the
 * files' [defaults]; NULL when neither says. */
static int default_repo(const char **repo, fsp_error *err)
{
    const char *env = getenv("VMSYNC_REPO");
    *repo = env && *env ? env : NULL;
    int rc = *repo ? 0 : load_settings(err);
    if (!*repo && !rc)
        *repo = settings->default_repo;
    return rc;
}

/* Puts REPO among the operands at AT, in the slot before optind (the last
 * option word, or the command's name, which nothing reads again). */
static void insert_operand(char **argv, int at, const char *repo)
{
    optind--;
    for (int k = 0; k < at; k++)
        argv[optind + k] = argv[optind + k + 1];
    argv[optind + at] = (char *)repo;
}

/* WORD would be REPO in the place of an image's NAME: does it name one? */
static int word_names_repo(const char *word, bool *names, fsp_error *err)
{
    int rc = load_settings(err);
    *names = !plain_word(word) || path_exists(word) ||
             (!rc && vms_config_find_repo(settings, word));
    return rc;
}

int cli_take_repo(int argc, char **argv, int at, int min, int max, const char *usage)
{
    int n = argc - optind;
    bool missing = n + 1 >= min && n + 1 <= max, written = n >= min && n <= max;
    const char *repo = repo_option;
    fsp_error err = {0};
    if (repo) {
        insert_operand(argv, at < 0 ? 0 : at, repo);
        return -1;
    }
    if (at < 0 || !missing || (written && !plain_word(argv[optind + at])))
        return -1;
    bool names = false;
    int rc = default_repo(&repo, &err);
    if (!rc && repo && written)
        rc = word_names_repo(argv[optind + at], &names, &err);
    if (rc)
        return cli_report(&err);
    if (names)
        return cli_usage_error(usage, "'%s' could be REPO or a NAME: write -R REPO for the "
                               "repository (./%s for a folder here)", argv[optind + at],
                               argv[optind + at]);
    if (repo)
        insert_operand(argv, at, repo);
    return -1;
}

/* The settings' entry for REPO: by name for a plain word, else by url. */
static int settings_repo(const char *repo, const struct vms_config_repo **out, fsp_error *err)
{
    int rc = load_settings(err);
    *out = NULL;
    if (!rc && plain_word(repo))
        *out = vms_config_find_repo(settings, repo);
    for (size_t i = 0; !rc && !*out && i < settings->n_repos; i++)
        if (!strcmp(settings->repos[i].url, repo))
            *out = &settings->repos[i];
    if (!rc && *out && plain_word(repo) && path_exists(repo))
        rc = fsp_fail(err, FSP_EK_USAGE, -EINVAL,
                      "'%s' is both a folder here and a repository of the settings: write "
                      "./%s for the folder, or its url", repo, repo);
    return rc;
}

/* The settings' [bandwidth] windows, parsed once (checked when read). */
static struct vms_bw_window *windows;
static size_t n_windows;

static uint64_t rate_by_clock(void *ctx)
{
    (void)ctx;
    return vms_bw_rate_at(windows, n_windows, time(NULL));
}

/* --bwlimit, even 0 (no limit), beats the settings' rates. */
static bool bwlimit_given;

/* Below --bwlimit and a repository's bwlimit: the windows follow the clock,
 * consulted by the library before each request. */
static int apply_windows(struct vms_remote_opts *r, fsp_error *err)
{
    int rc = 0;
    if (!windows && settings->n_bw_limits &&
        !(windows = calloc(settings->n_bw_limits, sizeof *windows)))
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    for (; !rc && n_windows < settings->n_bw_limits; n_windows++)
        rc = vms_bw_window_parse(settings->bw_limits[n_windows], &windows[n_windows], err);
    if (!rc && !r->bwlimit && !bwlimit_given && n_windows)
        r->bwlimit_now = rate_by_clock;
    return rc;
}

/* A repository that the settings list (by url or name) lends its key file,
 * rate and timeout where the command line gives none: the window and the
 * command line log in the same way.  A local repository never reads them. */
static int apply_settings(const char **repo, struct vms_remote_opts *r, fsp_error *err)
{
    if (!plain_word(*repo) && strncmp(*repo, "ssh://", 6))
        return 0;
    const struct vms_config_repo *s = NULL;
    int rc = settings_repo(*repo, &s, err);
    if (!rc && s) {
        *repo = s->url;
        if (!r->identity)
            r->identity = s->identity;
        if (!bwlimit_given)
            r->bwlimit = s->bwlimit;
        if (!r->timeout)
            r->timeout = s->timeout;
    }
    return rc ? rc : apply_windows(r, err);
}

int cli_client_open(const char *repo, const struct vms_client_opts *o, vms_client **out,
                    fsp_error *err)
{
    struct vms_client_opts opts = *o;
    struct vms_remote_opts remote = o->remote ? *o->remote : (struct vms_remote_opts){0};
    int rc = apply_settings(&repo, &remote, err);
    opts.remote = &remote;
    if (!rc)
        rc = vms_client_open(repo, &opts, out, err);
    if (!rc)
        cli_cancel_on_signals(*out);
    return rc;
}

void cli_client_close(vms_client **c)
{
    cli_cancel_on_signals(NULL);
    vms_client_close(*c);
    *c = NULL;
}

int cli_parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

int cli_image_option(int opt, const char *usage)
{
    if (opt != CLI_OPT_ALLOW_BACKING)
        return 1;
    fsp_error err = {0};
    if (fsp_allow_backing_dir(optarg, &err))
        return cli_usage_error(usage, "--allow-backing %s", err.msg);
    return 0;
}

static bool accept_new; /* --accept-new */

/* y or yes on the terminal to "trust this key?"; no without a terminal. */
static bool user_trusts(const struct vms_host_key *k)
{
    if (!isatty(STDIN_FILENO) || !isatty(STDERR_FILENO))
        return false;
    fputs("vmsync: ", stderr);
    vms_put_text(stderr, k->host);
    fprintf(stderr, " offers the host key %s %s, which ", k->type, k->fingerprint);
    vms_put_text(stderr, k->known_hosts);
    fputs(" does not hold.\nvmsync: trust it and add it there? [y/N] ", stderr);
    char line[16];
    return fgets(line, sizeof line, stdin) && (!strcmp(line, "y\n") || !strcmp(line, "yes\n"));
}

static enum vms_host_key_answer cli_host_key(void *ctx, const struct vms_host_key *k)
{
    (void)ctx;
    if (k->state != VMS_HOST_KEY_UNKNOWN)
        return VMS_HOST_KEY_REFUSE; /* always; the library says why */
    if (!accept_new && !user_trusts(k)) {
        cli_hint("then run again with --accept-new");
        return VMS_HOST_KEY_REFUSE;
    }
    fputs("vmsync: adding ", stderr);
    vms_put_text(stderr, k->host);
    fprintf(stderr, " (%s %s) to ", k->type, k->fingerprint);
    vms_put_text(stderr, k->known_hosts);
    fputc('\n', stderr);
    return VMS_HOST_KEY_REMEMBER;
}

void cli_remote_init(struct vms_remote_opts *o) { o->host_key = cli_host_key; }

int cli_remote_option(struct vms_remote_opts *o, int opt, const char *usage)
{
    switch (opt) {
    case CLI_OPT_KNOWN_HOSTS: o->known_hosts = optarg; return 0;
    case CLI_OPT_ACCEPT_NEW: accept_new = true; return 0;
    case 'i': o->identity = optarg; return 0;
    case CLI_OPT_AGENT: o->agent = optarg; return 0;
    case CLI_OPT_BWLIMIT: {
        fsp_error err = {0};
        bwlimit_given = true;
        if (vms_parse_size(optarg, 10, &o->bwlimit, &err))
            return cli_usage_error(usage, "bad --bwlimit: %s (bytes/s, e.g. 500K or 2M)", err.msg);
        if (o->bwlimit && o->bwlimit < VMS_BWLIMIT_MIN)
            return cli_usage_error(usage, "bad --bwlimit: %s: at least %uK", optarg, VMS_BWLIMIT_MIN >> 10);
        return 0;
    }
    case CLI_OPT_LEVEL:
        if (cli_parse_int(optarg, 1, 19, &o->level))
            return cli_usage_error(usage, "bad --compress-level '%s': expected 1 to 19", optarg);
        return 0;
    case CLI_OPT_TIMEOUT:
        if (cli_parse_int(optarg, 1, 86400, &o->timeout))
            return cli_usage_error(usage, "bad --timeout '%s': expected seconds", optarg);
        return 0;
    default: return 1;
    }
}
