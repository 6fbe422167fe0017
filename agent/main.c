/* vmsync-agent: the server end of ssh:// repositories.  sshd starts it for
 * each connection (command= in authorized_keys, or ForceCommand); it parses
 * its options and hands standard input and output to libvmsync's vms_serve. */
#include "vmsync.h"

#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static const char usage[] =
    "usage: vmsync-agent --root DIR [options]\n"
    "       vmsync-agent --upstream ssh://[USER@]HOST[:PORT][/PREFIX] [options]\n"
    "\n"
    "Serves the vmsync repositories under DIR on standard input and output, for\n"
    "one client.  sshd starts it for each connection; put it in authorized_keys:\n"
    "\n"
    "  command=\"vmsync-agent --root /srv/vmsync --user alice\",restrict ssh-ed25519 AAAA...\n"
    "\n"
    "or in sshd_config as ForceCommand.  Clients name a repository as\n"
    "ssh://host/NAME, a path under DIR; anything outside DIR is refused.\n"
    "\n"
    "options:\n"
    "  --root DIR         the directory whose repositories this key may reach\n"
    "  --user NAME        who the key stands for, in leases and the audit log\n"
    "                     (default: the login user)\n"
    "  --read-only        reading only: exports, logs and manifests; refuses\n"
    "                     check-ins, imports and leases (so checkouts: use export),\n"
    "                     and changes nothing in the catalog\n"
    "  --append-only      adding only: check-ins, imports, bundle applies and\n"
    "                     leases, as without it; refuses forget and prune (gc\n"
    "                     runs on the server only, never through an agent)\n"
    "  --cache-size SIZE  keep up to SIZE bytes of compressed segments, so a second\n"
    "                     client of the same version costs no compression\n"
    "                     (default 2G; 0 turns the cache off; suffixes K M G);\n"
    "                     with --upstream, the bytes of objects and manifests the\n"
    "                     reflector keeps (default 20G)\n"
    "\n"
    "a branch reflector (a cache in front of another agent):\n"
    "  --upstream URL     serve ssh://this-host/NAME as URL/NAME: checkouts from the\n"
    "                     cache, each missing object fetched from URL once for all\n"
    "                     sessions; versions, leases, check-ins and queries pass\n"
    "                     through.  Upstream sees this agent's key as the user and\n"
    "                     USER@CLIENT-HOST as the host\n"
    "  --cache-dir DIR    the reflector's cache (default ~/.cache/vmsync-reflector);\n"
    "                     it survives restarts, the least recently used goes first\n"
    "  --upstream-identity FILE\n"
    "                     the private key for upstream (default: ssh-agent, then\n"
    "                     ~/.ssh/id_*)\n"
    "  --upstream-known-hosts FILE\n"
    "                     upstream's host key (default ~/.ssh/known_hosts)\n"
    "  --trust FILE       serve only versions signed by this public key (repeat for\n"
    "                     more keys)\n"
    "\n"
    "  --idle-timeout SECONDS\n"
    "                     end a session when the client has sent nothing for this\n"
    "                     long (default 600; 0: never); an open session holds the\n"
    "                     repository, and gc waits for it.  Clients ping every 60 s\n"
    "                     while they scan: keep it above that\n"
    "  --stats-file FILE  append one JSON line per session: requests, objects and\n"
    "                     bytes moved, manifests stored whole or from a delta,\n"
    "                     CPU seconds, the rate the last GET asked,\n"
    "                     segments cached, stored and compressed, the levels sent\n"
    "  --max-protocol N   speak protocol versions up to N only, as an older agent\n"
    "                     would (default: the newest this agent knows); newer\n"
    "                     clients then speak N: version 2 sends manifests whole\n"
    "  -h, --help         this text\n"
    "  -V, --version      the version, and those of the libraries (built, running)\n"
    "\n"
    "Errors name repositories by their path under DIR, never DIR itself.\n"
    "\n"
    "exit status: 0 when the session ended normally, 1 on a failure or an idle\n"
    "timeout (written to standard error, which the client shows), 2 on bad options.\n";

/* ---- options ------------------------------------------------------------------------ */

static int bad_usage(const char *what, const char *arg)
{
    fprintf(stderr, "vmsync-agent: %s%s\n%s", what, arg, usage);
    return 2;
}

enum { OPT_ROOT = 256, OPT_USER, OPT_READ_ONLY, OPT_APPEND_ONLY, OPT_CACHE, OPT_IDLE, OPT_STATS, OPT_VERSION,
       OPT_MAX_PROTOCOL, OPT_UPSTREAM, OPT_CACHE_DIR, OPT_UP_IDENTITY, OPT_UP_KNOWN, OPT_TRUST };

#define IDLE_DEFAULT 600
#define IDLE_MAX 2000000u /* seconds; poll's milliseconds must fit an int */

static int parse_seconds(const char *s, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v > IDLE_MAX)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* 0 to go on, else the exit status. */
#define TRUSTED_MAX 16

struct options {
    struct vms_serve_opts serve;
    const char *stats_file;
    bool cache_size_given;
    struct vms_remote_opts upstream;
    struct vms_public_key trusted[TRUSTED_MAX];
    char cache_dir[4096];
};

static void put_library(void *ctx, const struct vms_library_version *v)
{
    (void)ctx;
    printf("  %-11s built %-28s running %s\n", v->name, v->built ? v->built : "unknown",
           v->running ? v->running : "unknown");
}

static void print_version(void)
{
    printf("vmsync-agent %s\nlibraries:\n", VMSYNC_VERSION);
    vms_library_versions(put_library, NULL);
}

/* The options of --upstream: 0, else the exit status. */
static int reflector_option(int opt, const char *arg, struct options *options)
{
    struct vms_serve_opts *o = &options->serve;
    fsp_error err = {0};
    switch (opt) {
    case OPT_UPSTREAM: o->upstream = arg; break;
    case OPT_CACHE_DIR: o->reflect_dir = arg; break;
    case OPT_UP_IDENTITY: options->upstream.identity = arg; break;
    case OPT_UP_KNOWN: options->upstream.known_hosts = arg; break;
    case OPT_TRUST:
        if (o->n_trusted == TRUSTED_MAX)
            return bad_usage("--trust: at most 16 keys", "");
        if (vms_public_key_load(arg, &options->trusted[o->n_trusted++], &err))
            return bad_usage("--trust: ", err.msg);
        break;
    }
    return 0;
}

#define REFLECT_CACHE_DEFAULT (20ull << 30)

/* --upstream: the cache's place and size, the key for upstream. */
static int reflector_options(struct options *options)
{
    struct vms_serve_opts *o = &options->serve;
    if (strncmp(o->upstream, "ssh://", 6))
        return bad_usage("--upstream: not an ssh:// URL: ", o->upstream);
    if (o->root)
        return bad_usage("--upstream and --root: choose one", "");
    if (!o->reflect_dir) {
        const char *home = getenv("HOME");
        snprintf(options->cache_dir, sizeof options->cache_dir, "%s/.cache/vmsync-reflector",
                 home && *home ? home : ".");
        o->reflect_dir = options->cache_dir;
    }
    o->reflect_max = options->cache_size_given ? o->cache_max : REFLECT_CACHE_DEFAULT;
    o->cache_max = 0; /* the objects are cached: no segment cache besides */
    o->upstream_opts = &options->upstream;
    o->trusted = options->trusted;
    return 0;
}

/* What the command line left out: the user, and --root or the reflector's own. */
static int complete_options(struct options *options)
{
    struct vms_serve_opts *o = &options->serve;
    if (!o->user) {
        struct passwd *pw = getpwuid(getuid());
        o->user = pw ? pw->pw_name : "unknown";
    }
    if (o->upstream)
        return reflector_options(options);
    if (!o->root)
        return bad_usage("--root is required", "");
    return 0;
}

static int parse_options(int argc, char **argv, struct options *options)
{
    static const struct option opts[] = {
        {"root", required_argument, 0, OPT_ROOT},         {"user", required_argument, 0, OPT_USER},
        {"read-only", no_argument, 0, OPT_READ_ONLY},     {"cache-size", required_argument, 0, OPT_CACHE},
        {"append-only", no_argument, 0, OPT_APPEND_ONLY},
        {"stats-file", required_argument, 0, OPT_STATS},  {"help", no_argument, 0, 'h'},
        {"idle-timeout", required_argument, 0, OPT_IDLE}, {"version", no_argument, 0, OPT_VERSION},
        {"max-protocol", required_argument, 0, OPT_MAX_PROTOCOL},
        {"upstream", required_argument, 0, OPT_UPSTREAM},
        {"cache-dir", required_argument, 0, OPT_CACHE_DIR},
        {"upstream-identity", required_argument, 0, OPT_UP_IDENTITY},
        {"upstream-known-hosts", required_argument, 0, OPT_UP_KNOWN},
        {"trust", required_argument, 0, OPT_TRUST},
        {0, 0, 0, 0}};
    struct vms_serve_opts *o = &options->serve;
    int opt;
    opterr = 0;
    o->cache_max = 2ull << 30;
    o->idle_timeout = IDLE_DEFAULT;
    while ((opt = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_ROOT: o->root = optarg; break;
        case OPT_USER: o->user = optarg; break;
        case OPT_READ_ONLY: o->read_only = true; break;
        case OPT_APPEND_ONLY: o->append_only = true; break;
        case OPT_STATS: options->stats_file = optarg; break;
        case OPT_CACHE: {
            fsp_error err = {0};
            if (vms_parse_size(optarg, 0, &o->cache_max, &err))
                return bad_usage("--cache-size: ", err.msg);
            options->cache_size_given = true;
            break;
        }
        case OPT_UPSTREAM ... OPT_TRUST: {
            int rc = reflector_option(opt, optarg, options);
            if (rc)
                return rc;
            break;
        }
        case OPT_IDLE:
            if (parse_seconds(optarg, &o->idle_timeout))
                return bad_usage("--idle-timeout: not a number of seconds (0 to 2000000): ", optarg);
            break;
        case OPT_MAX_PROTOCOL:
            if (parse_seconds(optarg, &o->max_protocol) || o->max_protocol == 0)
                return bad_usage("--max-protocol: not a protocol version: ", optarg);
            break;
        case 'h': fputs(usage, stdout); return -1;
        case 'V':
        case OPT_VERSION: print_version(); return -1;
        default: return bad_usage("unknown option ", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad_usage("unexpected argument ", argv[optind]);
    return complete_options(options);
}

/* ---- statistics ------------------------------------------------------------------------ */

static double seconds(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec / 1e6; }

/* What compressing cost, and the levels sent: a range, not the last one. */
static void put_compression(FILE *f, const struct vms_serve_stats *s)
{
    double share = s->raw_bytes_sent ? (double)s->raw_bytes_compressed / (double)s->raw_bytes_sent : 0;
    fprintf(f,
            "\"segments_compressed\": %llu, \"raw_bytes_compressed\": %llu, "
            "\"compress_cpu\": %.3f, \"recompressed\": %.4f, \"link_rate\": %.0f, ",
            (unsigned long long)s->segments_compressed, (unsigned long long)s->raw_bytes_compressed,
            s->compress_cpu, share, s->link_rate);
    vms_json_levels(f, s->segments_at_level);
}

static void write_stats(const char *file, const struct options *o, const struct vms_serve_stats *s,
                        int status)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    FILE *f = fopen(file, "a");
    if (!f)
        return;
    /* the client names its host: JSON-escaped, like the user */
    fprintf(f, "{\"pid\": %ld, ", (long)getpid());
    vms_json_member(f, "user", o->serve.user);
    fputs(", ", f);
    vms_json_member(f, "client_host", s->client_host);
    fprintf(f,
            ", \"status\": %d, "
            "\"requests\": %llu, \"objects_sent\": %llu, \"objects_received\": %llu, "
            "\"segments\": %llu, \"segments_cached\": %llu, \"segments_stored\": %llu, "
            "\"segments_chained\": %llu, "
            "\"raw_bytes_sent\": %llu, \"segment_bytes_sent\": %llu, \"wire_in\": %llu, "
            "\"wire_out\": %llu, \"last_level\": %d, \"cpu_user\": %.3f, \"cpu_system\": %.3f, "
            "\"max_rss_kib\": %ld, \"last_bwlimit\": %llu, \"manifests_whole\": %llu, "
            "\"manifests_delta\": %llu, \"manifest_bytes_in\": %llu, ",
            status, (unsigned long long)s->requests,
            (unsigned long long)s->objects_sent, (unsigned long long)s->objects_received,
            (unsigned long long)s->segments, (unsigned long long)s->segments_cached,
            (unsigned long long)s->segments_stored, (unsigned long long)s->segments_chained,
            (unsigned long long)s->raw_bytes_sent,
            (unsigned long long)s->segment_bytes_sent, (unsigned long long)s->wire_in,
            (unsigned long long)s->wire_out, s->last_level, seconds(ru.ru_utime),
            seconds(ru.ru_stime), ru.ru_maxrss, (unsigned long long)s->last_bwlimit,
            (unsigned long long)s->manifests_whole, (unsigned long long)s->manifests_delta,
            (unsigned long long)s->manifest_bytes_in);
    put_compression(f, s);
    fputs("}\n", f);
    fclose(f);
}

int main(int argc, char **argv)
{
    struct options o = {0};
    int status = parse_options(argc, argv, &o);
    if (status)
        return status < 0 ? 0 : status;
    signal(SIGPIPE, SIG_IGN); /* a vanished client is an error from write, not a signal */
    signal(SIGHUP, SIG_IGN);  /* a dropped link ends our input: commit what arrived, then go */
    struct vms_serve_stats stats;
    fsp_error err = {0};
    int rc = vms_serve(&o.serve, STDIN_FILENO, STDOUT_FILENO, &stats, &err);
    if (rc) { /* the client shows it: names in it are data */
        fputs("vmsync-agent: ", stderr);
        vms_put_text(stderr, err.msg);
        fputc('\n', stderr);
    }
    if (o.stats_file)
        write_stats(o.stats_file, &o, &stats, rc ? 1 : 0);
    return rc ? 1 : 0;
}
