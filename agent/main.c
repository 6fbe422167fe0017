/* vmsync-agent: the server end of ssh:// repositories (see agent.h). */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "usage: vmsync-agent --root DIR [options]\n"
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
    "  --read-only        check-outs only: refuse check-ins and imports\n"
    "  --cache-size SIZE  keep up to SIZE bytes of compressed segments, so a second\n"
    "                     client of the same version costs no compression\n"
    "                     (default 2G; 0 turns the cache off; suffixes K M G)\n"
    "  --stats-file FILE  append one JSON line per session: requests, objects and\n"
    "                     bytes moved, CPU seconds\n"
    "  -h, --help         this text\n"
    "  --version\n"
    "\n"
    "exit status: 0 when the session ended normally, 1 on a failure (written to\n"
    "standard error, which the client shows), 2 on bad options.\n";

/* ---- standard input and output ---------------------------------------------- */

static int stdio_recv(void *io, void *buf, size_t n, fsp_error *err)
{
    (void)io;
    size_t done = 0;
    while (done < n) {
        ssize_t got = read(STDIN_FILENO, (uint8_t *)buf + done, n - done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return fsp_fail(err, FSP_EK_NETWORK, -errno, "reading from the client: %s",
                            strerror(errno));
        if (got == 0)
            return done == 0 ? -ENODATA
                             : fsp_fail(err, FSP_EK_NETWORK, -ECONNRESET,
                                        "the client went away in the middle of a message");
        done += (size_t)got;
    }
    return 0;
}

static int stdio_send(void *io, const void *buf, size_t n, fsp_error *err)
{
    (void)io;
    size_t done = 0;
    while (done < n) {
        ssize_t put = write(STDOUT_FILENO, (const uint8_t *)buf + done, n - done);
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0)
            return fsp_fail(err, FSP_EK_NETWORK, -errno, "writing to the client: %s",
                            strerror(errno));
        done += (size_t)put;
    }
    return 0;
}

/* ---- options ------------------------------------------------------------------------ */

static int bad_usage(const char *what, const char *arg)
{
    fprintf(stderr, "vmsync-agent: %s%s\n%s", what, arg, usage);
    return 2;
}

enum { OPT_ROOT = 256, OPT_USER, OPT_READ_ONLY, OPT_CACHE, OPT_STATS, OPT_VERSION };

/* 0 to go on, else the exit status. */
static int parse_options(int argc, char **argv, struct agent_opts *o)
{
    static const struct option opts[] = {
        {"root", required_argument, 0, OPT_ROOT},         {"user", required_argument, 0, OPT_USER},
        {"read-only", no_argument, 0, OPT_READ_ONLY},     {"cache-size", required_argument, 0, OPT_CACHE},
        {"stats-file", required_argument, 0, OPT_STATS},  {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, OPT_VERSION},         {0, 0, 0, 0}};
    const char *root = NULL;
    int opt;
    opterr = 0;
    o->cache_max = 2ull << 30;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_ROOT: root = optarg; break;
        case OPT_USER: o->user = optarg; break;
        case OPT_READ_ONLY: o->read_only = true; break;
        case OPT_STATS: o->stats_file = optarg; break;
        case OPT_CACHE:
            if (vms_parse_size(optarg, 0, &o->cache_max))
                return bad_usage("--cache-size: not a size: ", optarg);
            break;
        case 'h': fputs(usage, stdout); return -1;
        case OPT_VERSION: printf("vmsync-agent %s\n", VMSYNC_VERSION); return -1;
        default: return bad_usage("unknown option ", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad_usage("unexpected argument ", argv[optind]);
    if (!root)
        return bad_usage("--root is required", "");
    if (!realpath(root, o->root)) {
        fprintf(stderr, "vmsync-agent: --root %s: %s\n", root, strerror(errno));
        return 1;
    }
    if (!o->user) {
        struct passwd *pw = getpwuid(getuid());
        o->user = pw ? pw->pw_name : "unknown";
    }
    return 0;
}

/* ---- the segment cache's size -------------------------------------------------------- */

struct cached {
    char name[80];
    time_t used;
    off_t size;
};

static int by_age(const void *a, const void *b)
{
    const struct cached *x = a, *y = b;
    return (x->used > y->used) - (x->used < y->used);
}

/* Removes the least recently used segments until the cache holds at most
 * MAX bytes.  Runs after a session, off the client's clock. */
static void trim_cache(const char *dir, uint64_t max)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct cached *all = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat st;
        size_t len = strlen(de->d_name);
        if (len < 5 || len >= sizeof all->name || strcmp(de->d_name + len - 4, ".seg") ||
            fstatat(dirfd(d), de->d_name, &st, 0) < 0)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            struct cached *p = realloc(all, cap * sizeof *all);
            if (!p)
                break;
            all = p;
        }
        memcpy(all[n].name, de->d_name, len + 1);
        all[n].used = st.st_mtime;
        all[n++].size = st.st_size;
        total += (uint64_t)st.st_size;
    }
    if (n > 1)
        qsort(all, n, sizeof *all, by_age);
    for (size_t i = 0; i < n && total > max; i++) {
        if (unlinkat(dirfd(d), all[i].name, 0) == 0)
            total -= (uint64_t)all[i].size;
    }
    closedir(d);
    free(all);
}

/* ---- statistics ------------------------------------------------------------------------ */

static double seconds(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec / 1e6; }

static void write_stats(const struct agent *a, int rc)
{
    if (!a->o->stats_file)
        return;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    FILE *f = fopen(a->o->stats_file, "a");
    if (!f)
        return;
    const struct agent_stats *s = &a->stats;
    fprintf(f,
            "{\"pid\": %ld, \"user\": \"%s\", \"client_host\": \"%s\", \"status\": %d, "
            "\"requests\": %llu, \"objects_sent\": %llu, \"objects_received\": %llu, "
            "\"segments\": %llu, \"segments_cached\": %llu, \"segments_stored\": %llu, "
            "\"raw_bytes_sent\": %llu, \"segment_bytes_sent\": %llu, \"wire_in\": %llu, "
            "\"wire_out\": %llu, \"last_level\": %d, \"cpu_user\": %.3f, \"cpu_system\": %.3f, "
            "\"max_rss_kib\": %ld}\n",
            (long)getpid(), a->o->user, a->client_host, rc, (unsigned long long)s->requests,
            (unsigned long long)s->objects_sent, (unsigned long long)s->objects_received,
            (unsigned long long)s->sent.segments, (unsigned long long)s->sent.cached,
            (unsigned long long)s->sent.stored_segments, (unsigned long long)s->sent.raw_bytes,
            (unsigned long long)s->sent.wire_bytes, (unsigned long long)a->conn.wire_in,
            (unsigned long long)a->conn.wire_out, s->sent.level_last, seconds(ru.ru_utime),
            seconds(ru.ru_stime), ru.ru_maxrss);
    fclose(f);
}

int main(int argc, char **argv)
{
    struct agent_opts o = {0};
    int status = parse_options(argc, argv, &o);
    if (status)
        return status < 0 ? 0 : status;
    signal(SIGPIPE, SIG_IGN); /* a vanished client is an error from write, not a signal */
    signal(SIGHUP, SIG_IGN);  /* a dropped link ends our input: commit what arrived, then go */
    struct agent a = {.o = &o};
    a.conn = (struct vms_conn){.send = stdio_send, .recv = stdio_recv, .peer = "the client"};
    fsp_error err = {0};
    int rc = agent_serve(&a, &err);
    if (rc)
        fprintf(stderr, "vmsync-agent: %s\n", err.msg);
    if (a.repo)
        vms_repo_close(a.repo);
    if (a.cache[0])
        trim_cache(a.cache, o.cache_max);
    write_stats(&a, rc ? 1 : 0);
    vms_conn_free(&a.conn);
    return rc ? 1 : 0;
}
