/* vmsync fleet run: the plan made from now, carried out.  Each laptop's
 * "run" command (a checkout over ssh, say) is started in the schedule's
 * order, at most the schedule's number of a branch at once, and only in the
 * laptop's online hours; a reflector's "warm" command starts when the
 * schedule fills it; an offline branch's bundle is written first, for
 * someone to carry there.  Each command's output goes to LOGS/NAME.log.  The
 * report sets each start and end, and the makespan, against the prediction:
 * the simulation's model is only worth what it predicts. */
#include "fleet.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define POLL_SECONDS 0.1

/* One command: a laptop's "run", or a reflector branch's "warm". */
struct job {
    const char *name;          /* the laptop's, or the branch's */
    const char *const *argv;
    const struct vms_fleet_laptop *laptop; /* NULL: a branch's warm */
    size_t index;              /* a laptop's, in the report (vms_fleet_until_online) */
    size_t branch;             /* in the report */
    pid_t pid;                 /* > 0 while it runs */
    bool started, done, cancelled;
    int exit;                  /* its status; 128 + N when signal N ended it */
    double start, ready;       /* seconds after the run's start: its first start, its end */
    double start_predicted, ready_predicted;
    unsigned attempts;         /* the times it started */
    double not_before;         /* a retry waits until then */
    char *log;
};

/* An offline branch's bundle, in LOGS/branch@NAME.bundle. */
struct bundle {
    size_t branch;             /* in the report */
    char *path;
    struct vms_bundle_stats stats;
};

struct runner {
    vms_fleet *f;
    const struct vms_fleet_report *r;
    struct job *jobs;          /* the laptops in the schedule's order, then the warms */
    size_t n_laptops, n, done, failed;
    size_t *running;           /* laptops, per branch */
    struct bundle *bundles;
    size_t n_bundles, by_bundle; /* bundles, and the laptops they carry to */
    bool fill_ahead;           /* the schedule fills reflectors from the start */
    struct timespec t0;
    const char *logs;
    int retries, retry_after;  /* a command that lost its link (exit 11) runs again */
    bool cancelled;
};

static double since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (now.tv_nsec - t0->tv_nsec) / 1e9;
}

static double local_second_now(void)
{
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    localtime_r(&now.tv_sec, &tm);
    return tm.tm_hour * 3600.0 + tm.tm_min * 60.0 + tm.tm_sec + now.tv_nsec / 1e9;
}

static int nomem(fsp_error *err) { return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

/* ---- setting up ------------------------------------------------------------------ */

static int need_commands(const struct vms_fleet_report *r, const char *path, fsp_error *err)
{
    for (size_t i = 0; i < r->n_laptops; i++)
        if (!r->laptops[i].run && !r->laptops[i].via_bundle)
            return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: laptop \"%.64s\" has no \"run\" "
                            "command: fleet run starts each laptop's", path, r->laptops[i].name);
    return 0;
}

static size_t branch_of(const struct vms_fleet_report *r, const char *name)
{
    size_t k = 0;
    while (k + 1 < r->n_branches && strcmp(r->branches[k].name, name))
        k++;
    return k;
}

/* A file in LOGS named after a name that is data: [A-Za-z0-9._-] kept,
 * every other byte and a leading "." as %XX, so that two names never share
 * a file; a branch's gets "branch@" before it, which no laptop's can have. */
static char *file_for(const char *logs, const char *prefix, const char *name, const char *suffix)
{
    static const char keep[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    size_t n = strlen(name), at = 0;
    char *safe = malloc(3 * n + 1), *path = NULL;
    if (!safe)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (strchr(keep, c) && !(i == 0 && c == '.'))
            safe[at++] = (char)c;
        else
            at += (size_t)sprintf(safe + at, "%%%02X", c);
    }
    safe[at] = 0;
    if (asprintf(&path, "%s/%s%s%s", logs, prefix, safe, suffix) < 0)
        path = NULL;
    free(safe);
    return path;
}

static void laptop_job(struct runner *x, struct job *j, const struct vms_fleet_laptop *l)
{
    j->name = l->name;
    j->argv = l->run;
    j->laptop = l;
    j->index = (size_t)(l - x->r->laptops);
    j->branch = branch_of(x->r, l->branch);
    j->start_predicted = l->start;
    j->ready_predicted = l->ready;
}

/* The branch's first laptop's predicted start: when a reflector fills
 * without the schedule's fill ahead of time. */
static double first_start(const struct runner *x, size_t branch)
{
    for (size_t k = 0; k < x->n_laptops; k++)
        if (x->jobs[k].branch == branch)
            return x->jobs[k].start_predicted;
    return 0;
}

static void warm_job(struct runner *x, struct job *j, size_t branch)
{
    const struct vms_fleet_branch *b = &x->r->branches[branch];
    j->name = b->name;
    j->argv = b->warm;
    j->branch = branch;
    j->start_predicted = x->fill_ahead ? 0 : first_start(x, branch);
    j->ready_predicted = b->reflector_ready;
}

static int add_jobs(struct runner *x, const struct vms_fleet_laptop **sorted, fsp_error *err)
{
    for (size_t k = 0; k < x->r->n_laptops; k++)
        if (sorted[k]->via_bundle)
            x->by_bundle++;
        else
            laptop_job(x, &x->jobs[x->n++], sorted[k]);
    x->n_laptops = x->n;
    for (size_t k = 0; k < x->r->n_branches; k++)
        if (x->r->branches[k].warm)
            warm_job(x, &x->jobs[x->n++], k);
    for (size_t k = 0; k < x->n; k++) {
        struct job *j = &x->jobs[k];
        if (!(j->log = file_for(x->logs, j->laptop ? "" : "branch@", j->name, ".log")))
            return nomem(err);
    }
    return 0;
}

static int runner_init(struct runner *x, fsp_error *err)
{
    const struct vms_fleet_laptop **sorted = calloc(x->r->n_laptops, sizeof *sorted);
    x->jobs = calloc(x->r->n_laptops + x->r->n_branches, sizeof *x->jobs);
    x->running = calloc(x->r->n_branches, sizeof *x->running);
    x->fill_ahead = strcmp(x->r->ranking, "all-at-once") != 0;
    int rc = sorted && x->jobs && x->running ? 0 : nomem(err);
    for (size_t i = 0; !rc && i < x->r->n_laptops; i++)
        sorted[i] = &x->r->laptops[i];
    if (!rc)
        qsort(sorted, x->r->n_laptops, sizeof *sorted, fleet_by_order);
    if (!rc)
        rc = add_jobs(x, sorted, err);
    free(sorted);
    return rc;
}

static void runner_free(struct runner *x)
{
    for (size_t k = 0; x->jobs && k < x->n; k++)
        free(x->jobs[k].log);
    free(x->jobs);
    free(x->running);
    for (size_t k = 0; k < x->n_bundles; k++)
        free(x->bundles[k].path);
    free(x->bundles);
}

static int make_logs(const char *logs, fsp_error *err)
{
    if (mkdir(logs, 0755) && errno != EEXIST)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot make the logs' folder: %s", logs,
                        strerror(errno));
    return 0;
}

/* ---- offline branches' bundles --------------------------------------------------- */

static int make_bundle(struct runner *x, vms_client *c, struct bundle *b, fsp_error *err)
{
    const char *name = x->r->branches[b->branch].name;
    if (!(b->path = file_for(x->logs, "branch@", name, ".bundle")))
        return nomem(err);
    fprintf(stderr, "vmsync: fleet run: writing the bundle for offline branch ");
    vms_put_name(stderr, name);
    fprintf(stderr, ": %s\n", b->path);
    int rc = vms_fleet_bundle(x->f, c, b->branch, b->path, &b->stats, err);
    if (!rc)
        fprintf(stderr, "vmsync: fleet run: %s: %llu bytes, %llu objects\n", b->path,
                (unsigned long long)b->stats.bytes_written, (unsigned long long)b->stats.objects);
    return rc;
}

/* Every offline branch's bundle, before any command starts: they need the
 * repository, which the laptops' commands reach by themselves. */
static int make_bundles(struct runner *x, struct fleet_cmd *q, const char *path, fsp_error *err)
{
    int rc = 0;
    for (size_t k = 0; !rc && k < x->r->n_branches; k++) {
        if (!x->r->branches[k].offline)
            continue;
        if (!q->client && !vms_fleet_repository(x->f))
            return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: an offline branch's bundle needs the "
                            "repository, and the file names none", path);
        if (!q->client)
            rc = fleet_client_open(q, vms_fleet_repository(x->f), err);
        if (!rc && !x->bundles && !(x->bundles = calloc(x->r->n_branches, sizeof *x->bundles)))
            rc = nomem(err);
        if (!rc) {
            x->bundles[x->n_bundles].branch = k;
            rc = make_bundle(x, q->client, &x->bundles[x->n_bundles++], err);
        }
    }
    return rc;
}

/* ---- starting and reaping ------------------------------------------------------------ */

/* The child: its own process group (so that a cancel reaches what it starts),
 * no terminal input, its output in its log (after the earlier attempts'). */
static void exec_job(const struct job *j)
{
    setpgid(0, 0);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    int log = open(j->log, O_WRONLY | O_CREAT | (j->attempts ? O_APPEND : O_TRUNC) | O_CLOEXEC, 0644);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log < 0 || null < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0)
        _exit(126);
    execvp(j->argv[0], (char *const *)j->argv);
    fprintf(stderr, "vmsync fleet run: %s: cannot run: %s\n", j->argv[0], strerror(errno));
    _exit(127);
}

static void say(const struct runner *x, const struct job *j, const char *what)
{
    fprintf(stderr, "vmsync: fleet run: %.1f s: %s", since(&x->t0), j->laptop ? "" : "reflector of ");
    vms_put_name(stderr, j->name);
    fprintf(stderr, " %s", what);
}

static int start_job(struct runner *x, struct job *j, fsp_error *err)
{
    pid_t pid = fork();
    if (pid < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "cannot start a command: %s", strerror(errno));
    if (!pid)
        exec_job(j);
    setpgid(pid, pid); /* both sides, so that no kill can come before it */
    j->pid = pid;
    j->start = j->attempts++ ? j->start : since(&x->t0);
    j->started = true;
    if (j->laptop)
        x->running[j->branch]++;
    say(x, j, "started");
    fprintf(stderr, " (predicted at %.1f s", j->start_predicted);
    if (j->laptop) {
        fputs("; ", stderr);
        vms_put_name(stderr, x->r->branches[j->branch].name);
        fprintf(stderr, ": %zu running", x->running[j->branch]);
    }
    fputs(")\n", stderr);
    return 0;
}

static bool branch_started(const struct runner *x, size_t branch)
{
    for (size_t k = 0; k < x->n_laptops; k++)
        if (x->jobs[k].branch == branch && x->jobs[k].started)
            return true;
    return false;
}

static bool may_start(const struct runner *x, const struct job *j, double t)
{
    if (j->started || t < j->not_before)
        return false;
    if (!j->laptop) /* the reflector fills ahead, or when its first laptop asks */
        return x->fill_ahead || branch_started(x, j->branch);
    uint32_t limit = x->r->branches[j->branch].concurrency;
    return (!limit || x->running[j->branch] < limit) && vms_fleet_until_online(x->f, j->index, t) == 0;
}

static int start_due(struct runner *x, fsp_error *err)
{
    double t = since(&x->t0);
    int rc = 0;
    for (size_t k = 0; !rc && k < x->n; k++)
        if (may_start(x, &x->jobs[k], t))
            rc = start_job(x, &x->jobs[k], err);
    return rc;
}

/* The link was lost (vmsync's exit 11): the command runs again, later, and a
 * checkout resumes where it stopped. */
static bool retry(struct runner *x, struct job *j)
{
    if (j->exit != 11 || j->cancelled || j->attempts > (unsigned)x->retries)
        return false;
    j->started = false;
    j->not_before = since(&x->t0) + x->retry_after;
    say(x, j, "lost its link (exit 11)");
    fprintf(stderr, ": again in %d s, once online (attempt %u of %d); see %s\n", x->retry_after,
            j->attempts + 1, x->retries + 1, j->log);
    return true;
}

static void finish(struct runner *x, struct job *j, int status)
{
    j->pid = 0;
    j->exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (j->laptop)
        x->running[j->branch]--;
    if (retry(x, j))
        return;
    j->done = true;
    j->ready = since(&x->t0);
    x->done++;
    x->failed += j->exit != 0 && !j->cancelled;
    say(x, j, j->cancelled ? "cancelled" : j->exit ? "failed" : j->laptop ? "ready" : "filled");
    if (j->cancelled)
        fputc('\n', stderr);
    else if (j->exit)
        fprintf(stderr, ": exit %d, see %s\n", j->exit, j->log);
    else
        fprintf(stderr, " (predicted at %.1f s)\n", j->ready_predicted);
}

static void reap(struct runner *x, bool block)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, block ? 0 : WNOHANG)) > 0) {
        for (size_t k = 0; k < x->n; k++)
            if (x->jobs[k].pid == pid)
                finish(x, &x->jobs[k], status);
        block = false;
    }
}

static size_t running_now(const struct runner *x)
{
    size_t n = 0;
    for (size_t k = 0; k < x->n; k++)
        n += x->jobs[k].pid > 0;
    return n;
}

static void stop_all(struct runner *x)
{
    x->cancelled = true;
    for (size_t k = 0; k < x->n; k++)
        if (x->jobs[k].pid > 0) {
            x->jobs[k].cancelled = true;
            kill(-x->jobs[k].pid, SIGTERM);
        }
    while (running_now(x))
        reap(x, true);
}

/* Every command, until each has ended, or a signal cancels the rest. */
static int carry_out(struct runner *x, fsp_error *err)
{
    int rc = 0;
    cli_cancel_on_signals(NULL);
    clock_gettime(CLOCK_MONOTONIC, &x->t0);
    while (!rc && x->done < x->n) {
        if (cli_interrupted()) {
            stop_all(x);
            break;
        }
        rc = start_due(x, err);
        reap(x, false);
        struct timespec nap = {0, (long)(POLL_SECONDS * 1e9)};
        if (!rc && x->done < x->n)
            nanosleep(&nap, NULL);
    }
    if (rc && running_now(x))
        stop_all(x);
    return rc;
}

/* ---- the report ------------------------------------------------------------------ */

static bool ready(const struct job *j) { return j->done && !j->exit; }

static double makespan(const struct runner *x)
{
    double m = 0;
    for (size_t k = 0; k < x->n_laptops; k++)
        m = ready(&x->jobs[k]) && x->jobs[k].ready > m ? x->jobs[k].ready : m;
    return m;
}

static size_t ready_count(const struct runner *x)
{
    size_t n = 0;
    for (size_t k = 0; k < x->n_laptops; k++)
        n += ready(&x->jobs[k]);
    return n;
}

static void put_job_text(const struct job *j)
{
    if (j->laptop)
        printf("  %5u  ", j->laptop->order);
    else
        printf("  reflector of ");
    vms_put_name(stdout, j->name);
    if (!j->started) {
        printf(": not started\n");
        return;
    }
    printf(": started at %.1f s (%.1f s), ", j->start, j->start_predicted);
    if (j->attempts > 1)
        printf("%u attempts, ", j->attempts);
    if (j->cancelled)
        printf("cancelled, log %s\n", j->log);
    else if (j->exit)
        printf("failed: exit %d, log %s\n", j->exit, j->log);
    else
        printf("%s at %.1f s (%.1f s)\n", j->laptop ? "ready" : "filled", j->ready, j->ready_predicted);
}

static void put_bundle_text(const struct runner *x, const struct bundle *b)
{
    printf("  bundle for ");
    vms_put_name(stdout, x->r->branches[b->branch].name);
    printf(" (%zu laptops): %s, %llu bytes; on each laptop: vmsync checkout %s ",
           x->r->branches[b->branch].laptops, b->path, (unsigned long long)b->stats.bytes_written,
           b->path);
    vms_put_name(stdout, x->r->image);
    printf("@%u -o IMAGE --seed SEED\n", b->stats.version);
}

static void put_text(const struct runner *x)
{
    double m = makespan(x);
    printf("rollout of ");
    vms_put_name(stdout, x->r->image);
    printf(x->r->version ? "@%u" : " (its latest version)", x->r->version);
    printf(" to %zu laptops: %zu ready, %zu failed%s", x->r->n_laptops, ready_count(x), x->failed,
           x->cancelled ? ", the rest cancelled" : "");
    printf(x->by_bundle ? ", %zu by bundle; makespan " : "; makespan ", x->by_bundle);
    fleet_put_duration(stdout, m);
    printf(", predicted ");
    fleet_put_duration(stdout, x->r->makespan);
    printf(x->r->makespan > 0 ? " (actual/predicted %.2f)\n" : "\n", m / x->r->makespan);
    printf("  order  laptop: started at (predicted), ready at (predicted)\n");
    for (size_t k = 0; k < x->n; k++)
        put_job_text(&x->jobs[k]);
    for (size_t k = 0; k < x->n_bundles; k++)
        put_bundle_text(x, &x->bundles[k]);
}

static void put_time_or_null(const char *key, bool known, double t)
{
    if (known)
        printf("\"%s\":%.3f,", key, t);
    else
        printf("\"%s\":null,", key);
}

static void put_job_json(const struct job *j, bool first)
{
    fputs(first ? "\n  {" : ",\n  {", stdout);
    vms_json_member(stdout, j->laptop ? "name" : "branch", j->name);
    if (j->laptop) {
        fputc(',', stdout);
        vms_json_member(stdout, "branch", j->laptop->branch);
        printf(",\"order\":%u", j->laptop->order);
    }
    printf(",\"start_predicted\":%.3f,\"ready_predicted\":%.3f,", j->start_predicted,
           j->ready_predicted);
    put_time_or_null("start", j->started, j->start);
    put_time_or_null("ready", ready(j), j->ready);
    printf(j->done ? "\"exit\":%d," : "\"exit\":null,", j->exit);
    printf("\"cancelled\":%s,\"attempts\":%u,", j->cancelled ? "true" : "false", j->attempts);
    vms_json_member(stdout, "log", j->log);
    fputc('}', stdout);
}

static void put_bundle_json(const struct runner *x, const struct bundle *b, bool first)
{
    const struct vms_fleet_branch *br = &x->r->branches[b->branch];
    fputs(first ? "\n  {" : ",\n  {", stdout);
    vms_json_member(stdout, "branch", br->name);
    printf(",\"laptops\":%zu,\"version\":%u,\"bytes\":%llu,\"objects\":%llu,\"objects_held\":%llu,",
           br->laptops, b->stats.version, (unsigned long long)b->stats.bytes_written,
           (unsigned long long)b->stats.objects, (unsigned long long)b->stats.objects_held);
    vms_json_member(stdout, "path", b->path);
    fputc('}', stdout);
}

static void put_json(const struct runner *x)
{
    double m = makespan(x);
    fputc('{', stdout);
    vms_json_member(stdout, "image", x->r->image);
    printf(",\"version\":%u,\"laptops_ready\":%zu,\"failed\":%zu,\"cancelled\":%s,"
           "\"makespan\":%.3f,\"makespan_predicted\":%.3f,\"ratio\":%.4f,\"laptops\":[",
           x->r->version, ready_count(x), x->failed, x->cancelled ? "true" : "false", m,
           x->r->makespan, x->r->makespan > 0 ? m / x->r->makespan : 0.0);
    for (size_t k = 0; k < x->n_laptops; k++)
        put_job_json(&x->jobs[k], !k);
    fputs("],\"reflectors\":[", stdout);
    for (size_t k = x->n_laptops; k < x->n; k++)
        put_job_json(&x->jobs[k], k == x->n_laptops);
    fputs("],\"bundles\":[", stdout);
    for (size_t k = 0; k < x->n_bundles; k++)
        put_bundle_json(x, &x->bundles[k], !k);
    fputs("]}\n", stdout);
}

/* 0 when every command exited 0; else 7 when cancelled, or the first failed
 * command's status (laptops in the schedule's order, then the reflectors;
 * the commands are vmsync's, whose statuses say what kind). */
static int run_status(const struct runner *x)
{
    if (x->cancelled)
        return 7;
    for (size_t k = 0; k < x->n; k++)
        if (x->jobs[k].done && x->jobs[k].exit)
            return x->jobs[k].exit < 128 ? x->jobs[k].exit : 1;
    return 0;
}

static char *default_logs(const char *path)
{
    size_t n = strlen(path);
    if (n > 5 && !strcmp(path + n - 5, ".json"))
        n -= 5;
    char *logs = NULL;
    return asprintf(&logs, "%.*s.logs", (int)n, path) < 0 ? NULL : logs;
}

static int run_fleet(struct runner *x, struct fleet_cmd *q, const char *path, fsp_error *err)
{
    int rc = fleet_prepare(q, path, local_second_now(), &x->f, &x->r, err);
    if (!rc)
        rc = need_commands(x->r, path, err);
    if (!rc)
        rc = make_logs(x->logs, err);
    if (!rc)
        rc = runner_init(x, err);
    if (!rc)
        rc = make_bundles(x, q, path, err);
    cli_client_close(&q->client);
    if (!rc)
        rc = carry_out(x, err);
    if (!rc && q->json)
        put_json(x);
    else if (!rc)
        put_text(x);
    return rc;
}

int fleet_run(int argc, char **argv)
{
    struct fleet_cmd q = {.is_run = true, .retries = 3, .retry_after = 60};
    int status = fleet_parse(argc, argv, &q);
    if (status >= 0)
        return status;
    if (argc - optind != 1)
        return fleet_usage_error("fleet run needs FLEET.json");
    fsp_error err = {0};
    char *logs = q.logs ? NULL : default_logs(argv[optind]);
    struct runner x = {.logs = q.logs ? q.logs : logs, .retries = q.retries, .retry_after = q.retry_after};
    int rc = x.logs ? run_fleet(&x, &q, argv[optind], &err) : nomem(&err);
    status = rc ? cli_report(&err) : run_status(&x);
    runner_free(&x);
    vms_fleet_free(x.f);
    free(logs);
    return status;
}
