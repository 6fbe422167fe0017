/* vmsync fleet: plan a rollout to many laptops (vms_fleet_*), and show where
 * a repository's laptops stand (leases, audit log and images).  Names come
 * from FLEET.json and the catalog: data, printed with vms_put_name and kept
 * lossless in JSON. */
#include "fleet.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const fleet_usage =
    "usage: vmsync fleet plan FLEET.json [--json]\n"
    "       vmsync fleet run FLEET.json [--logs DIR] [--retries N] [--retry-after S] [--json]\n"
    "       vmsync fleet status REPO [--json]\n"
    "\n"
    "plan: what each laptop of FLEET.json (docs/fleet.md) lacks of the version to roll\n"
    "out, measured by the checkout's plan of what it holds; per branch and in all,\n"
    "the bytes on each link; a simulation of the links; and a schedule (reflectors\n"
    "filled ahead of time, the order of the laptops, how many of a branch at once)\n"
    "against everyone at once.  Nothing is written.\n"
    "run: plans from now, then carries the schedule out: starts each laptop's \"run\"\n"
    "command in the schedule's order, as many of a branch at once as it says, in\n"
    "the laptop's online hours; reports each laptop's start and ready time, and the\n"
    "makespan, against the prediction.\n"
    "status: per laptop (user and host), the version it holds, its lease, its last\n"
    "check-in and what is pending, from the repository's leases and audit log.\n"
    "\n"
    "Options:\n"
    "      --json             one JSON document\n"
    "      --logs DIR         run: each laptop's output in DIR/NAME.log (default: FLEET.logs)\n"
    "      --retries N        run: a command that lost its link (exit 11) runs again, up to\n"
    "                         N more times (default 3), once its laptop is online\n"
    "      --retry-after S    run: waiting S seconds first (default 60)\n"
    "      --host NAME        this client's name (default: $VMSYNC_HOST, else the hostname)\n"
    "      --cache DIR        local cache (default: $VMSYNC_CACHE, else ~/.cache/vmsync)\n"
    "  -h, --help             this help\n"
    "\n" CLI_REMOTE_HELP;

enum { OPT_HOST = 1000, OPT_CACHE, OPT_JSON, OPT_LOGS, OPT_RETRIES, OPT_RETRY_AFTER };

/* run's own options: 0, or 2 (the usage error said why) */
static int run_option(struct fleet_cmd *q, int opt)
{
    if (!q->is_run)
        return cli_usage_error(fleet_usage, "%s", "--logs, --retries and --retry-after are fleet "
                               "run's options");
    if (opt == OPT_LOGS)
        return q->logs = optarg, 0;
    if (opt == OPT_RETRIES)
        return cli_parse_int(optarg, 0, 1000, &q->retries) ? cli_usage_error(fleet_usage, "--retries "
               "takes a count from 0 to 1000, not %s", optarg) : 0;
    return cli_parse_int(optarg, 0, 86400, &q->retry_after) ? cli_usage_error(fleet_usage,
           "--retry-after takes seconds from 0 to 86400, not %s", optarg) : 0;
}

int fleet_parse(int argc, char **argv, struct fleet_cmd *q)
{
    static const struct option opts[] = {
        {"host", required_argument, 0, OPT_HOST}, {"cache", required_argument, 0, OPT_CACHE},
        {"json", no_argument, 0, OPT_JSON},       {"logs", required_argument, 0, OPT_LOGS},
        {"retries", required_argument, 0, OPT_RETRIES},
        {"retry-after", required_argument, 0, OPT_RETRY_AFTER},
        {"help", no_argument, 0, 'h'},            CLI_REMOTE_OPTIONS,
        {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "hi:", opts, NULL)) != -1) {
        int why = 0;
        if (opt == 'h')
            return fputs(fleet_usage, stdout), 0;
        else if (opt == OPT_HOST)
            q->s.host = optarg;
        else if (opt == OPT_CACHE)
            q->s.cache_dir = optarg;
        else if (opt == OPT_JSON)
            q->json = true;
        else if (opt == OPT_LOGS || opt == OPT_RETRIES || opt == OPT_RETRY_AFTER)
            why = run_option(q, opt);
        else
            why = cli_remote_option(&q->remote, opt, fleet_usage);
        if (why)
            return why == 2 ? 2 : cli_bad_option(fleet_usage, argv);
    }
    q->s.remote = &q->remote;
    return -1;
}

int fleet_client_open(struct fleet_cmd *q, const char *repo, fsp_error *err)
{
    cli_remote_init(&q->remote);
    return cli_client_open(repo, &q->s, &q->client, err);
}

/* ---- figures for people ------------------------------------------------------------ */

static void put_bytes(FILE *out, uint64_t n)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4)
        v /= 1024, u++;
    fprintf(out, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

void fleet_put_duration(FILE *out, double s)
{
    if (s < 0)
        fputs("never", out);
    else if (s < 60)
        fprintf(out, "%.0f s", s);
    else if (s < 3600)
        fprintf(out, "%ld min %02ld s", (long)s / 60, (long)s % 60);
    else
        fprintf(out, "%ld h %02ld min", (long)(s / 3600), (long)(s / 60) % 60);
}

/* ---- plan: text ------------------------------------------------------------------ */

static void put_branch_line(const struct vms_fleet_branch *b)
{
    printf("  ");
    vms_put_name(stdout, b->name);
    if (b->offline) {
        printf(": %zu laptops, offline: a bundle of ", b->laptops);
        put_bytes(stdout, b->bundle_bytes);
        printf(" carries the version there\n");
        return;
    }
    printf(": %zu laptops, %s, upstream ", b->laptops, b->reflector ? "reflector" : "direct");
    put_bytes(stdout, b->upstream_bytes);
    if (b->reflector) {
        printf(" (filled in ");
        fleet_put_duration(stdout, b->reflector_ready);
        printf("), LAN ");
        put_bytes(stdout, b->lan_bytes);
    }
    printf(b->concurrency ? ", %u at once" : ", all at once", b->concurrency);
    printf("; ready in ");
    fleet_put_duration(stdout, b->ready);
    printf(" (everyone at once: ");
    fleet_put_duration(stdout, b->ready_all_at_once);
    printf(")\n");
}

static void put_laptop_line(const struct vms_fleet_laptop *l)
{
    printf("  %5u  ", l->order);
    vms_put_name(stdout, l->name);
    printf(" (");
    vms_put_name(stdout, l->branch);
    printf("): ");
    put_bytes(stdout, l->bytes);
    if (l->measured) {
        printf(" to fetch (%llu objects), ", (unsigned long long)l->objects);
        put_bytes(stdout, l->bytes_from_seeds);
        printf(" from its seeds");
    }
    if (l->via_bundle) {
        printf("; by its branch's bundle\n");
        return;
    }
    printf("; starts at ");
    fleet_put_duration(stdout, l->start);
    printf(", ready in ");
    fleet_put_duration(stdout, l->ready);
    printf(" (everyone at once: ");
    fleet_put_duration(stdout, l->ready_all_at_once);
    printf(")\n");
}

int fleet_by_order(const void *a, const void *b)
{
    const struct vms_fleet_laptop *x = *(const struct vms_fleet_laptop *const *)a,
                                  *y = *(const struct vms_fleet_laptop *const *)b;
    return (x->order > y->order) - (x->order < y->order);
}

static int print_plan_text(const struct vms_fleet_report *r)
{
    const struct vms_fleet_laptop **sorted = malloc((r->n_laptops + 1) * sizeof *sorted);
    if (!sorted)
        return perror("vmsync"), 6;
    printf("rollout of ");
    vms_put_name(stdout, r->image);
    printf(r->version ? "@%u" : " (its latest version)", r->version);
    printf(" to %zu laptops in %zu branches: ", r->n_laptops, r->n_branches);
    put_bytes(stdout, r->server_bytes);
    printf(" over the server's uplink\nschedule (%s, %u simulations): all ready in ", r->ranking,
           r->simulations);
    fleet_put_duration(stdout, r->makespan);
    printf("; everyone at once: ");
    fleet_put_duration(stdout, r->makespan_all_at_once);
    printf("\nbranches:\n");
    for (size_t k = 0; k < r->n_branches; k++)
        put_branch_line(&r->branches[k]);
    printf("laptops, in the order they start:\n");
    for (size_t i = 0; i < r->n_laptops; i++)
        sorted[i] = &r->laptops[i];
    qsort(sorted, r->n_laptops, sizeof *sorted, fleet_by_order);
    for (size_t i = 0; i < r->n_laptops; i++)
        put_laptop_line(sorted[i]);
    free(sorted);
    return 0;
}

/* ---- plan: JSON --------------------------------------------------------------------- */

static void put_branch_json(const struct vms_fleet_branch *b, bool first)
{
    fputs(first ? "\n  {" : ",\n  {", stdout);
    vms_json_member(stdout, "name", b->name);
    printf(",\"laptops\":%zu,\"reflector\":%s,\"offline\":%s,\"bundle_bytes\":%llu,"
           "\"upstream_bytes\":%llu,\"lan_bytes\":%llu,"
           "\"concurrency\":%u,\"reflector_ready\":%.3f,\"ready\":%.3f,\"ready_all_at_once\":%.3f}",
           b->laptops, b->reflector ? "true" : "false", b->offline ? "true" : "false",
           (unsigned long long)b->bundle_bytes, (unsigned long long)b->upstream_bytes,
           (unsigned long long)b->lan_bytes, b->concurrency, b->reflector_ready, b->ready,
           b->ready_all_at_once);
}

static void put_laptop_json(const struct vms_fleet_laptop *l, bool first)
{
    fputs(first ? "\n  {" : ",\n  {", stdout);
    vms_json_member(stdout, "name", l->name);
    fputc(',', stdout);
    vms_json_member(stdout, "branch", l->branch);
    printf(",\"measured\":%s,\"via_reflector\":%s,\"via_bundle\":%s,\"bytes\":%llu,\"bytes_raw\":%llu,"
           "\"objects\":%llu,\"bytes_from_seeds\":%llu,\"order\":%u,\"start\":%.3f,"
           "\"ready\":%.3f,\"ready_all_at_once\":%.3f}",
           l->measured ? "true" : "false", l->via_reflector ? "true" : "false",
           l->via_bundle ? "true" : "false",
           (unsigned long long)l->bytes, (unsigned long long)l->bytes_raw,
           (unsigned long long)l->objects, (unsigned long long)l->bytes_from_seeds, l->order,
           l->start, l->ready, l->ready_all_at_once);
}

static void print_plan_json(const struct vms_fleet_report *r)
{
    fputc('{', stdout);
    vms_json_member(stdout, "image", r->image);
    printf(",\"version\":%u,\"server_bytes\":%llu,\"makespan\":%.3f,\"makespan_all_at_once\":%.3f,"
           "\"ranking\":\"%s\",\"simulations\":%u,\"branches\":[",
           r->version, (unsigned long long)r->server_bytes, r->makespan, r->makespan_all_at_once,
           r->ranking, r->simulations);
    for (size_t k = 0; k < r->n_branches; k++)
        put_branch_json(&r->branches[k], !k);
    fputs("],\"laptops\":[", stdout);
    for (size_t i = 0; i < r->n_laptops; i++)
        put_laptop_json(&r->laptops[i], !i);
    fputs("]}\n", stdout);
}

int fleet_prepare(struct fleet_cmd *q, const char *path, double start_second, vms_fleet **f,
                  const struct vms_fleet_report **r, fsp_error *err)
{
    int rc = vms_fleet_load(path, f, err);
    if (!rc && vms_fleet_needs_repository(*f) && !vms_fleet_repository(*f))
        rc = fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: its laptops hold seeds, and it names no "
                      "repository to measure them on", path);
    if (!rc && vms_fleet_needs_repository(*f))
        rc = fleet_client_open(q, vms_fleet_repository(*f), err);
    if (!rc && q->client)
        rc = vms_fleet_measure(*f, q->client, err);
    if (!rc && start_second >= 0)
        vms_fleet_start_at(*f, start_second);
    if (!rc)
        rc = vms_fleet_plan(*f, r, err);
    return rc;
}

int fleet_usage_error(const char *what) { return cli_usage_error(fleet_usage, "%s", what); }

static int fleet_plan(int argc, char **argv)
{
    struct fleet_cmd q = {0};
    int status = fleet_parse(argc, argv, &q);
    if (status >= 0)
        return status;
    if (argc - optind != 1)
        return fleet_usage_error("fleet plan needs FLEET.json");
    fsp_error err = {0};
    vms_fleet *f = NULL;
    const struct vms_fleet_report *r = NULL;
    int rc = fleet_prepare(&q, argv[optind], -1, &f, &r, &err);
    if (!rc && q.json)
        print_plan_json(r);
    else if (!rc)
        status = print_plan_text(r);
    cli_client_close(&q.client);
    vms_fleet_free(f);
    return rc ? cli_report(&err) : status > 0 ? status : 0;
}

/* ---- status ------------------------------------------------------------------------- */

/* One laptop's standing with one image: its newest checkout or check-in says
 * which version it holds, its lease whether it holds one now. */
struct standing {
    char *user, *host, *image;
    uint32_t version, latest;
    int64_t last_seen, last_checkin; /* 0: never */
    struct vms_lease_info lease;     /* image NULL: none */
    char *lease_user, *lease_host;
};

struct status {
    struct standing *rows;
    size_t n, cap;
    char **latest_names;
    uint32_t *latest;
    size_t n_images;
};


static struct standing *row_for(struct status *st, const char *user, const char *host, const char *image)
{
    for (size_t i = 0; i < st->n; i++)
        if (!strcmp(st->rows[i].user, user) && !strcmp(st->rows[i].host, host) &&
            !strcmp(st->rows[i].image, image))
            return &st->rows[i];
    if (st->n == st->cap) {
        size_t cap = st->cap ? 2 * st->cap : 16;
        struct standing *grown = realloc(st->rows, cap * sizeof *grown);
        if (!grown)
            return NULL;
        st->rows = grown;
        st->cap = cap;
    }
    struct standing *r = &st->rows[st->n];
    memset(r, 0, sizeof *r);
    r->user = strdup(user);
    r->host = strdup(host);
    r->image = strdup(image);
    if (!r->user || !r->host || !r->image)
        return free(r->user), free(r->host), free(r->image), NULL;
    st->n++;
    return r;
}

static bool holds_after(const char *action)
{
    return !strcmp(action, "checkout") || !strcmp(action, "checkin") || !strcmp(action, "apply") ||
           !strcmp(action, "steal");
}

static int on_entry(void *ctx, const struct vms_audit_entry *e)
{
    struct status *st = ctx;
    if (!e->image || !strcmp(e->action, "import") || !strcmp(e->action, "export") ||
        !strcmp(e->action, "forget"))
        return 0; /* an admin's work on the server, not a laptop's */
    struct standing *r = row_for(st, e->user, e->host, e->image);
    if (!r)
        return -ENOMEM;
    r->last_seen = e->at;
    if (holds_after(e->action))
        r->version = e->version;
    if (!strcmp(e->action, "checkin") || !strcmp(e->action, "apply"))
        r->last_checkin = e->at;
    return 0;
}

static int on_lease(void *ctx, const struct vms_lease_info *l)
{
    struct status *st = ctx;
    struct standing *r = row_for(st, l->user, l->host, l->image);
    if (!r || !(r->lease_user = strdup(l->user)) || !(r->lease_host = strdup(l->host)))
        return -ENOMEM;
    r->lease = *l;
    r->lease.image = r->image;
    r->lease.user = r->lease_user;
    r->lease.host = r->lease_host;
    r->version = l->version; /* the catalog's word beats the log's */
    return 0;
}

static int on_image(void *ctx, const struct vms_image_info *i)
{
    struct status *st = ctx;
    char **names = realloc(st->latest_names, (st->n_images + 1) * sizeof *names);
    if (names)
        st->latest_names = names;
    uint32_t *latest = names ? realloc(st->latest, (st->n_images + 1) * sizeof *latest) : NULL;
    if (!latest || !(names[st->n_images] = strdup(i->name)))
        return -ENOMEM;
    st->latest = latest;
    st->latest[st->n_images++] = i->latest;
    return 0;
}

static void fill_latest(struct status *st)
{
    for (size_t i = 0; i < st->n; i++)
        for (size_t k = 0; k < st->n_images; k++)
            if (!strcmp(st->rows[i].image, st->latest_names[k]))
                st->rows[i].latest = st->latest[k];
}

static void status_free(struct status *st)
{
    for (size_t i = 0; i < st->n; i++) {
        free(st->rows[i].user), free(st->rows[i].host), free(st->rows[i].image);
        free(st->rows[i].lease_user), free(st->rows[i].lease_host);
    }
    for (size_t k = 0; k < st->n_images; k++)
        free(st->latest_names[k]);
    free(st->rows);
    free(st->latest_names);
    free(st->latest);
}

/* What the laptop still has to do: take the latest version, or give back a
 * lease held on an older one. */
static const char *pending(const struct standing *r)
{
    if (r->version && r->latest > r->version)
        return r->lease.image ? "update (checked out, behind the latest)" : "update";
    return NULL;
}

static void put_time(FILE *out, int64_t t)
{
    char when[40] = "never";
    time_t tt = (time_t)t;
    struct tm tm;
    if (t && gmtime_r(&tt, &tm))
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
    fputs(when, out);
}

static void put_row_text(const struct standing *r)
{
    vms_put_name(stdout, r->user);
    putchar('@');
    vms_put_name(stdout, r->host);
    fputs("  ", stdout);
    vms_put_name(stdout, r->image);
    if (r->version)
        printf("@%u (latest @%u)", r->version, r->latest);
    else
        printf(" (holds no version)");
    fputs("  lease: ", stdout);
    if (r->lease.image)
        printf("@%u since ", r->lease.version), put_time(stdout, r->lease.since);
    else
        fputs("none", stdout);
    fputs("  last check-in: ", stdout);
    put_time(stdout, r->last_checkin);
    fputs("  last seen: ", stdout);
    put_time(stdout, r->last_seen);
    printf("  pending: %s\n", pending(r) ? pending(r) : "nothing");
}

static void put_row_json(const struct standing *r, bool first)
{
    fputs(first ? "\n {" : ",\n {", stdout);
    vms_json_member(stdout, "user", r->user);
    fputc(',', stdout);
    vms_json_member(stdout, "host", r->host);
    fputc(',', stdout);
    vms_json_member(stdout, "image", r->image);
    printf(",\"version\":%u,\"latest\":%u,\"lease\":", r->version, r->latest);
    if (r->lease.image)
        printf("{\"version\":%u,\"since\":%lld}", r->lease.version, (long long)r->lease.since);
    else
        fputs("null", stdout);
    printf(",\"last_checkin\":%lld,\"last_seen\":%lld,\"pending\":", (long long)r->last_checkin,
           (long long)r->last_seen);
    vms_json_string(stdout, pending(r));
    fputc('}', stdout);
}

static void print_status(const struct status *st, const char *repo, bool json)
{
    if (json) {
        fputc('{', stdout);
        vms_json_member(stdout, "repository", repo);
        fputs(",\"laptops\":[", stdout);
    }
    for (size_t i = 0; i < st->n; i++)
        json ? put_row_json(&st->rows[i], !i) : put_row_text(&st->rows[i]);
    if (json)
        fputs(st->n ? "\n]}\n" : "]}\n", stdout);
}

static int nomem_or(int rc, fsp_error *err)
{
    return rc == -ENOMEM && !err->kind ? fsp_fail(err, FSP_EK_NOMEM, rc, "out of memory") : rc;
}

static int fleet_status(int argc, char **argv)
{
    struct fleet_cmd q = {0};
    struct status st = {0};
    int status = fleet_parse(argc, argv, &q);
    if (status < 0)
        status = cli_take_repo(argc, argv, 0, 1, 1, fleet_usage);
    if (status >= 0)
        return status;
    if (argc - optind != 1)
        return cli_usage_error(fleet_usage, "%s", "fleet status needs REPO");
    fsp_error err = {0};
    const char *repo = argv[optind];
    int rc = fleet_client_open(&q, repo, &err);
    if (!rc)
        rc = nomem_or(vms_audit_log(q.client, NULL, 0, on_entry, &st, &err), &err);
    if (!rc)
        rc = nomem_or(vms_leases(q.client, NULL, on_lease, &st, &err), &err);
    if (!rc)
        rc = nomem_or(vms_images(q.client, on_image, &st, &err), &err);
    if (!rc) {
        fill_latest(&st);
        print_status(&st, repo, q.json);
    }
    cli_client_close(&q.client);
    status_free(&st);
    return rc ? cli_report(&err) : 0;
}

int cmd_fleet(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "plan"))
        return fleet_plan(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "status"))
        return fleet_status(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "run"))
        return fleet_run(argc - 1, argv + 1);
    if (cli_wants_help(argc, argv))
        return fputs(fleet_usage, stdout), 0;
    return cli_usage_error(fleet_usage, "%s", argc < 2 ? "fleet needs plan, run or status"
                                                        : "fleet takes plan, run or status");
}
