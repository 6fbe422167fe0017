/* vmsync fleet run: the plan made from now, carried out.  Each laptop's
 * "run" command (a checkout over ssh, say) is started in the schedule's
 * order, at most the schedule's number of a branch at once, and only in the
 * laptop's online hours; its output goes to LOGS/NAME.log.  The report sets
 * each laptop's start and ready time, and the makespan, against the
 * prediction: the simulation's model is only worth what it predicts. */
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

struct runner_laptop {
    const struct vms_fleet_laptop *l;
    size_t index;              /* in the report, for vms_fleet_until_online */
    size_t branch;             /* in the report */
    pid_t pid;                 /* > 0 while it runs */
    bool started, done, cancelled;
    int exit;                  /* its status; 128 + N when signal N ended it */
    double start, ready;       /* seconds after the run's start */
    char *log;
};

struct runner {
    vms_fleet *f;
    const struct vms_fleet_report *r;
    struct runner_laptop *laps; /* in the schedule's order */
    size_t n, done, failed;
    size_t *running;           /* per branch */
    struct timespec t0;
    const char *logs;
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

/* ---- setting up ------------------------------------------------------------------ */

static int need_commands(const struct vms_fleet_report *r, const char *path, fsp_error *err)
{
    for (size_t i = 0; i < r->n_laptops; i++)
        if (!r->laptops[i].run)
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

/* A file name from a laptop's name, which is data: only [A-Za-z0-9._-],
 * never "." or "..". */
static char *log_path(const char *logs, const char *name)
{
    size_t n = strlen(name);
    char *safe = malloc(n + 2), *path = NULL;
    if (!safe)
        return NULL;
    for (size_t i = 0; i < n; i++)
        safe[i] = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", name[i])
                      ? name[i] : '_';
    safe[n] = 0;
    if (safe[0] == '.')
        safe[0] = '_';
    if (asprintf(&path, "%s/%s.log", logs, safe) < 0)
        path = NULL;
    free(safe);
    return path;
}

static int runner_init(struct runner *x, fsp_error *err)
{
    const struct vms_fleet_laptop **sorted = calloc(x->r->n_laptops, sizeof *sorted);
    x->laps = calloc(x->r->n_laptops, sizeof *x->laps);
    x->running = calloc(x->r->n_branches, sizeof *x->running);
    int rc = sorted && x->laps && x->running ? 0 : fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < x->r->n_laptops; i++)
        sorted[i] = &x->r->laptops[i];
    if (!rc)
        qsort(sorted, x->r->n_laptops, sizeof *sorted, fleet_by_order);
    for (size_t k = 0; !rc && k < x->r->n_laptops; k++) {
        struct runner_laptop *l = &x->laps[k];
        l->l = sorted[k];
        l->index = (size_t)(sorted[k] - x->r->laptops);
        l->branch = branch_of(x->r, sorted[k]->branch);
        if (!(l->log = log_path(x->logs, sorted[k]->name)))
            rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
        x->n = k + 1;
    }
    free(sorted);
    return rc;
}

static void runner_free(struct runner *x)
{
    for (size_t k = 0; x->laps && k < x->n; k++)
        free(x->laps[k].log);
    free(x->laps);
    free(x->running);
}

static int make_logs(const char *logs, fsp_error *err)
{
    if (mkdir(logs, 0755) && errno != EEXIST)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot make the logs' folder: %s", logs,
                        strerror(errno));
    return 0;
}

/* ---- starting and reaping ------------------------------------------------------------ */

/* The child: its own process group (so that a cancel reaches what it starts),
 * no terminal input, its output in its log. */
static void exec_laptop(const struct runner_laptop *l)
{
    setpgid(0, 0);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    int log = open(l->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log < 0 || null < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0)
        _exit(126);
    execvp(l->l->run[0], (char *const *)l->l->run);
    fprintf(stderr, "vmsync fleet run: %s: cannot run: %s\n", l->l->run[0], strerror(errno));
    _exit(127);
}

static void say(const struct runner *x, const struct runner_laptop *l, const char *what)
{
    fprintf(stderr, "vmsync: fleet run: %.1f s: ", since(&x->t0));
    vms_put_name(stderr, l->l->name);
    fprintf(stderr, " %s", what);
}

static int start_laptop(struct runner *x, struct runner_laptop *l, fsp_error *err)
{
    pid_t pid = fork();
    if (pid < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "cannot start a laptop's command: %s", strerror(errno));
    if (!pid)
        exec_laptop(l);
    setpgid(pid, pid); /* both sides, so that no kill can come before it */
    l->pid = pid;
    l->started = true;
    l->start = since(&x->t0);
    x->running[l->branch]++;
    say(x, l, "started");
    fprintf(stderr, " (predicted at %.1f s; ", l->l->start);
    vms_put_name(stderr, x->r->branches[l->branch].name);
    fprintf(stderr, ": %zu running)\n", x->running[l->branch]);
    return 0;
}

static bool may_start(const struct runner *x, const struct runner_laptop *l, double t)
{
    uint32_t limit = x->r->branches[l->branch].concurrency;
    return !l->started && (!limit || x->running[l->branch] < limit) &&
           vms_fleet_until_online(x->f, l->index, t) == 0;
}

static int start_due(struct runner *x, fsp_error *err)
{
    double t = since(&x->t0);
    int rc = 0;
    for (size_t k = 0; !rc && k < x->n; k++)
        if (may_start(x, &x->laps[k], t))
            rc = start_laptop(x, &x->laps[k], err);
    return rc;
}

static void finish(struct runner *x, struct runner_laptop *l, int status)
{
    l->pid = 0;
    l->done = true;
    l->ready = since(&x->t0);
    l->exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    x->running[l->branch]--;
    x->done++;
    x->failed += l->exit != 0 && !l->cancelled;
    say(x, l, l->cancelled ? "cancelled" : l->exit ? "failed" : "ready");
    if (l->cancelled)
        fputc('\n', stderr);
    else if (l->exit)
        fprintf(stderr, ": exit %d, see %s\n", l->exit, l->log);
    else
        fprintf(stderr, " (predicted at %.1f s)\n", l->l->ready);
}

static void reap(struct runner *x, bool block)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, block ? 0 : WNOHANG)) > 0) {
        for (size_t k = 0; k < x->n; k++)
            if (x->laps[k].pid == pid)
                finish(x, &x->laps[k], status);
        block = false;
    }
}

static void stop_all(struct runner *x)
{
    x->cancelled = true;
    for (size_t k = 0; k < x->n; k++)
        if (x->laps[k].pid > 0) {
            x->laps[k].cancelled = true;
            kill(-x->laps[k].pid, SIGTERM);
        }
    for (size_t k = 0; k < x->n; k++)
        while (x->laps[k].pid > 0)
            reap(x, true);
}

static size_t running_total(const struct runner *x)
{
    size_t n = 0;
    for (size_t k = 0; k < x->r->n_branches; k++)
        n += x->running[k];
    return n;
}

/* Every laptop, until each is ready or failed, or a signal cancels the rest. */
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
    if (rc && running_total(x))
        stop_all(x);
    return rc;
}

/* ---- the report ------------------------------------------------------------------ */

static double makespan(const struct runner *x)
{
    double m = 0;
    for (size_t k = 0; k < x->n; k++)
        m = x->laps[k].done && x->laps[k].ready > m ? x->laps[k].ready : m;
    return m;
}

static size_t ready_count(const struct runner *x)
{
    size_t n = 0;
    for (size_t k = 0; k < x->n; k++)
        n += x->laps[k].done && !x->laps[k].exit;
    return n;
}

static void put_text(const struct runner *x)
{
    double m = makespan(x);
    printf("rollout of ");
    vms_put_name(stdout, x->r->image);
    printf(x->r->version ? "@%u" : " (its latest version)", x->r->version);
    printf(" to %zu laptops: %zu ready, %zu failed%s; makespan ", x->n, ready_count(x), x->failed,
           x->cancelled ? ", the rest cancelled" : "");
    fleet_put_duration(stdout, m);
    printf(", predicted ");
    fleet_put_duration(stdout, x->r->makespan);
    printf(x->r->makespan > 0 ? " (actual/predicted %.2f)\n" : "\n", m / x->r->makespan);
    printf("  order  laptop: started at (predicted), ready at (predicted)\n");
    for (size_t k = 0; k < x->n; k++) {
        const struct runner_laptop *l = &x->laps[k];
        printf("  %5u  ", l->l->order);
        vms_put_name(stdout, l->l->name);
        if (!l->started)
            printf(": not started\n");
        else if (l->cancelled)
            printf(": started at %.1f s (%.1f s), cancelled, log %s\n", l->start, l->l->start, l->log);
        else if (l->exit)
            printf(": started at %.1f s (%.1f s), failed: exit %d, log %s\n", l->start, l->l->start,
                   l->exit, l->log);
        else
            printf(": started at %.1f s (%.1f s), ready at %.1f s (%.1f s)\n", l->start, l->l->start,
                   l->ready, l->l->ready);
    }
}

static void put_laptop_json(const struct runner_laptop *l, bool first)
{
    fputs(first ? "\n  {" : ",\n  {", stdout);
    vms_json_member(stdout, "name", l->l->name);
    fputc(',', stdout);
    vms_json_member(stdout, "branch", l->l->branch);
    printf(",\"order\":%u,\"start_predicted\":%.3f,\"ready_predicted\":%.3f,", l->l->order,
           l->l->start, l->l->ready);
    if (l->started)
        printf("\"start\":%.3f,", l->start);
    else
        printf("\"start\":null,");
    if (l->done && !l->exit)
        printf("\"ready\":%.3f,", l->ready);
    else
        printf("\"ready\":null,");
    printf(l->done ? "\"exit\":%d," : "\"exit\":null,", l->exit);
    printf("\"cancelled\":%s,", l->cancelled ? "true" : "false");
    vms_json_member(stdout, "log", l->log);
    fputc('}', stdout);
}

static void put_json(const struct runner *x)
{
    double m = makespan(x);
    fputc('{', stdout);
    vms_json_member(stdout, "image", x->r->image);
    printf(",\"version\":%u,\"laptops_ready\":%zu,\"laptops_failed\":%zu,\"cancelled\":%s,"
           "\"makespan\":%.3f,\"makespan_predicted\":%.3f,\"ratio\":%.4f,\"laptops\":[",
           x->r->version, ready_count(x), x->failed, x->cancelled ? "true" : "false", m,
           x->r->makespan, x->r->makespan > 0 ? m / x->r->makespan : 0.0);
    for (size_t k = 0; k < x->n; k++)
        put_laptop_json(&x->laps[k], !k);
    fputs("]}\n", stdout);
}

/* 0 when every laptop is ready; else 7 when cancelled, or the first failed
 * laptop's status (its command is vmsync's, whose statuses say what kind). */
static int run_status(const struct runner *x)
{
    if (x->cancelled)
        return 7;
    for (size_t k = 0; k < x->n; k++)
        if (x->laps[k].done && x->laps[k].exit)
            return x->laps[k].exit < 128 ? x->laps[k].exit : 1;
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
        rc = carry_out(x, err);
    if (!rc && q->json)
        put_json(x);
    else if (!rc)
        put_text(x);
    return rc;
}

int fleet_run(int argc, char **argv)
{
    struct fleet_cmd q = {.takes_logs = true};
    int status = fleet_parse(argc, argv, &q);
    if (status >= 0)
        return status;
    if (argc - optind != 1)
        return fleet_usage_error("fleet run needs FLEET.json");
    fsp_error err = {0};
    char *logs = q.logs ? NULL : default_logs(argv[optind]);
    struct runner x = {.logs = q.logs ? q.logs : logs};
    int rc = x.logs ? run_fleet(&x, &q, argv[optind], &err)
                    : fsp_fail(&err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    status = rc ? cli_report(&err) : run_status(&x);
    runner_free(&x);
    vms_fleet_free(x.f);
    free(logs);
    return status;
}
