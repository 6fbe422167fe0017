/* The rollout's simulation and its schedule.  A flow model: each transfer is
 * a flow over the links it crosses (the laptop's own, then either its
 * branch's LAN from a reflector, or the branch's link and the server's
 * uplink); a link shares its rate max-min fairly among the flows on it.  A
 * flow first pays VMS_FLEET_HANDSHAKE_RTTS round trips, again after each
 * time its laptop was offline, and moves bytes only while its laptop is
 * online.  A laptop behind a reflector is ready when its own transfer is done
 * and the reflector holds what the branch needs (its fetch of the union).
 *
 * Everyone at once: every laptop starts as soon as it is online, and a
 * reflector fetches once its first laptop asks.  The schedule: reflectors
 * fetch from the start (ahead of time), laptops are ranked, and each branch
 * runs at most K of them at once, K chosen per branch by simulating the
 * candidates (coordinate descent); the best schedule found, or everyone at
 * once when nothing beats it, is the plan. */
#include "engine/fleet.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct flow {
    double bytes, left, latency, rate, start, end;
    size_t res[3], n_res;
    bool active, started, done, moving;
};

struct sim {
    const struct vms_fleet *f;
    size_t n_res;
    double *cap, *cap_left;
    size_t *users;
    struct flow *flows;      /* the laptops', then the reflectors' (one per branch) */
    const size_t *rank;      /* laptops by priority */
    const uint32_t *limit;   /* per branch, 0: all */
    size_t *running;         /* per branch, laptops active now */
    bool *asked;             /* per branch, a laptop has started: its reflector fetches */
    double work;             /* flow updates so far, of every run: the search's budget */
    bool preseed;
    double t, makespan;
    double *ready;           /* per laptop; < 0 until ready */
    size_t n_ready;
    unsigned runs;
};

static struct flow *reflector_flow(struct sim *s, size_t site) { return &s->flows[s->f->n_nodes + site]; }

/* ---- time of day -------------------------------------------------------------- */

static double day_second(const struct vms_fleet *f, double t)
{
    return fmod(f->start_second + t, 86400.0);
}

/* A boundary closer ahead than this counts as crossed, both here and in
 * until_boundary: the clock's sums of fractional seconds land a hair short
 * of the boundary they were aimed at, and a window's end must not wait a day. */
#define BOUNDARY_EPS 1e-6

static bool online(const struct vms_fleet *f, const struct vms_fleet_node *n, double t)
{
    double sec = fmod(day_second(f, t) + BOUNDARY_EPS, 86400.0);
    for (size_t i = 0; i < n->n_windows; i++) {
        double from = n->windows[i].from * 60.0, to = n->windows[i].to * 60.0;
        if (from < to ? sec >= from && sec < to : sec >= from || sec < to)
            return true;
    }
    return !n->n_windows;
}

static double until_boundary(const struct vms_fleet *f, const struct vms_fleet_node *n, double t)
{
    double sec = day_second(f, t), best = INFINITY;
    for (size_t i = 0; i < n->n_windows; i++) {
        double b[2] = {n->windows[i].from * 60.0, n->windows[i].to * 60.0};
        for (int k = 0; k < 2; k++) {
            double d = fmod(b[k] - sec + 2 * 86400.0, 86400.0);
            d = d < BOUNDARY_EPS ? 86400.0 : d;
            best = d < best ? d : best;
        }
    }
    return best;
}

void vms_fleet_start_at(vms_fleet *f, double second) { f->start_second = fmod(second, 86400.0); }

double vms_fleet_until_online(const vms_fleet *f, size_t i, double t)
{
    const struct vms_fleet_node *n = &f->nodes[i];
    return online(f, n, t) ? 0 : until_boundary(f, n, t);
}

/* ---- the links ------------------------------------------------------------------
 * Resource 0 is the server's uplink; then two per branch (its link, its LAN);
 * then one per laptop.  A capacity of 0 is no limit: no resource. */

static size_t site_link(size_t site) { return 1 + 2 * site; }
static size_t site_lan(size_t site) { return 2 + 2 * site; }

static void add_res(struct sim *s, struct flow *fl, size_t r)
{
    if (s->cap[r] > 0)
        fl->res[fl->n_res++] = r;
}

static void setup_flow(struct sim *s, struct flow *fl, double bytes, double rtt)
{
    fl->bytes = fl->left = bytes;
    fl->latency = VMS_FLEET_HANDSHAKE_RTTS * rtt;
    fl->done = bytes <= 0;
}

static void setup_laptop(struct sim *s, size_t i)
{
    const struct vms_fleet_node *n = &s->f->nodes[i];
    const struct vms_fleet_site *site = &s->f->sites[n->branch];
    struct flow *fl = &s->flows[i];
    size_t own = 1 + 2 * s->f->n_sites + i;
    memset(fl, 0, sizeof *fl);
    add_res(s, fl, own);
    if (site->out.reflector)
        add_res(s, fl, site_lan(n->branch));
    else {
        add_res(s, fl, site_link(n->branch));
        add_res(s, fl, 0);
    }
    setup_flow(s, fl, site->out.offline ? 0 : (double)n->out.bytes,
               n->link.rtt + (site->out.reflector ? 0 : site->link.rtt));
}

static void setup(struct sim *s)
{
    const struct vms_fleet *f = s->f;
    s->cap[0] = f->uplink;
    for (size_t k = 0; k < f->n_sites; k++) {
        s->cap[site_link(k)] = f->sites[k].link.rate;
        s->cap[site_lan(k)] = f->sites[k].out.reflector ? f->sites[k].lan : 0;
        s->running[k] = 0;
        s->asked[k] = false;
        struct flow *fl = reflector_flow(s, k);
        memset(fl, 0, sizeof *fl);
        add_res(s, fl, site_link(k));
        add_res(s, fl, 0);
        setup_flow(s, fl, f->sites[k].out.reflector ? (double)f->sites[k].out.upstream_bytes : 0,
                   f->sites[k].link.rtt);
    }
    for (size_t i = 0; i < f->n_nodes; i++) {
        s->cap[1 + 2 * f->n_sites + i] = f->nodes[i].link.rate;
        setup_laptop(s, i);
        s->ready[i] = -1;
    }
    s->t = 0;
    s->n_ready = 0;
    s->makespan = 0;
}

/* Max-min fair rates of the flows moving bytes now (progressive filling):
 * all rise together until a link is full, whose flows then stay. */
static void share_links(struct sim *s)
{
    size_t n = s->f->n_nodes + s->f->n_sites, moving = 0;
    memcpy(s->cap_left, s->cap, s->n_res * sizeof *s->cap);
    memset(s->users, 0, s->n_res * sizeof *s->users);
    for (size_t i = 0; i < n; i++) {
        struct flow *fl = &s->flows[i];
        fl->rate = 0;
        fl->moving = fl->active && !fl->done && fl->latency <= 0 && fl->n_res;
        for (size_t k = 0; fl->moving && k < fl->n_res; k++)
            s->users[fl->res[k]]++;
        moving += fl->moving;
    }
    while (moving) {
        double step = INFINITY;
        s->work += (double)(n + s->n_res);
        for (size_t r = 0; r < s->n_res; r++)
            if (s->users[r] && s->cap_left[r] / (double)s->users[r] < step)
                step = s->cap_left[r] / (double)s->users[r];
        for (size_t i = 0; i < n; i++) {
            struct flow *fl = &s->flows[i];
            for (size_t k = 0; fl->moving && k < fl->n_res; k++)
                s->cap_left[fl->res[k]] -= step;
            fl->rate += fl->moving ? step : 0;
        }
        for (size_t i = 0; i < n; i++) {
            struct flow *fl = &s->flows[i];
            bool full = false;
            for (size_t k = 0; fl->moving && k < fl->n_res; k++)
                full = full || s->cap_left[fl->res[k]] <= 1e-9 * s->cap[fl->res[k]];
            for (size_t k = 0; full && k < fl->n_res; k++)
                s->users[fl->res[k]]--;
            fl->moving = fl->moving && !full;
            moving -= full;
        }
    }
}

/* ---- who runs ---------------------------------------------------------------------- */

static void set_active(struct sim *s, size_t i, bool on)
{
    struct flow *fl = &s->flows[i];
    const struct vms_fleet_node *n = &s->f->nodes[i];
    if (fl->active && !on) /* offline: the next start connects again */
        fl->latency = VMS_FLEET_HANDSHAKE_RTTS *
                      (n->link.rtt + (s->f->sites[n->branch].out.reflector ? 0 : s->f->sites[n->branch].link.rtt));
    if (on && !fl->started) {
        fl->started = true;
        fl->start = s->t;
        s->asked[n->branch] = true;
    }
    if (on != fl->active)
        s->running[n->branch] += on ? 1 : (size_t)-1;
    fl->active = on;
}

static void choose(struct sim *s)
{
    const struct vms_fleet *f = s->f;
    for (size_t i = 0; i < f->n_nodes; i++) /* sticky: a running laptop keeps its place */
        if (s->flows[i].active && (s->flows[i].done || !online(f, &f->nodes[i], s->t)))
            set_active(s, i, false);
    for (size_t k = 0; k < f->n_nodes; k++) {
        size_t i = s->rank[k];
        const struct vms_fleet_node *n = &f->nodes[i];
        uint32_t limit = s->limit[n->branch];
        if (!s->flows[i].active && !s->flows[i].done && (!limit || s->running[n->branch] < limit) &&
            online(f, n, s->t))
            set_active(s, i, true);
    }
    for (size_t k = 0; k < f->n_sites; k++) {
        struct flow *fl = reflector_flow(s, k);
        if (!fl->done && (s->preseed || s->asked[k]) && !fl->active)
            fl->active = fl->started = true, fl->start = s->t;
    }
}

/* ---- the clock ----------------------------------------------------------------------- */

static double next_event(struct sim *s)
{
    double dt = INFINITY;
    for (size_t i = 0; i < s->f->n_nodes + s->f->n_sites; i++) {
        const struct flow *fl = &s->flows[i];
        double d = !fl->active || fl->done ? INFINITY : fl->latency > 0 ? fl->latency
                 : fl->rate > 0 ? fl->left / fl->rate : INFINITY;
        dt = d < dt ? d : dt;
    }
    for (size_t i = 0; i < s->f->n_nodes; i++) {
        double d = s->ready[i] < 0 ? until_boundary(s->f, &s->f->nodes[i], s->t) : INFINITY;
        dt = d < dt ? d : dt;
    }
    return dt;
}

static void advance(struct sim *s, double dt)
{
    s->t += dt;
    for (size_t i = 0; i < s->f->n_nodes + s->f->n_sites; i++) {
        struct flow *fl = &s->flows[i];
        if (!fl->active || fl->done)
            continue;
        if (fl->latency > 0)
            fl->latency = fl->latency - dt > 1e-9 ? fl->latency - dt : 0;
        else
            fl->left -= fl->rate * dt;
        if (fl->latency <= 0 && fl->left <= 1e-6 * (fl->bytes > 1 ? fl->bytes : 1))
            fl->done = true, fl->end = s->t, fl->left = 0;
    }
}

static void note_ready(struct sim *s)
{
    for (size_t i = 0; i < s->f->n_nodes; i++) {
        const struct flow *fl = &s->flows[i], *r = reflector_flow(s, s->f->nodes[i].branch);
        bool needs_reflector = s->f->sites[s->f->nodes[i].branch].out.reflector && fl->bytes > 0;
        if (s->ready[i] >= 0 || !fl->done || (needs_reflector && !r->done))
            continue;
        double at = fl->bytes > 0 ? fl->end : 0;
        at = needs_reflector && r->end > at ? r->end : at;
        s->ready[i] = at;
        s->n_ready++;
        s->makespan = at > s->makespan ? at : s->makespan;
    }
}

static int run(struct sim *s, fsp_error *err)
{
    size_t events = 0;
    double work_at_start = s->work;
    setup(s);
    s->runs++;
    note_ready(s);
    while (s->n_ready < s->f->n_nodes) {
        if (++events > VMS_FLEET_EVENTS_MAX || s->work - work_at_start > VMS_FLEET_RUN_WORK)
            return fsp_fail(err, FSP_EK_USAGE, -E2BIG, "the rollout is too large to simulate (more "
                            "than %u events or %.0e flow updates): fewer laptops or online windows",
                            VMS_FLEET_EVENTS_MAX, VMS_FLEET_RUN_WORK);
        s->work += (double)(s->f->n_nodes + s->f->n_sites);
        choose(s);
        share_links(s);
        double dt = next_event(s);
        if (!isfinite(dt) || s->t + dt > VMS_FLEET_HORIZON)
            return fsp_fail(err, FSP_EK_USAGE, -ERANGE, "the rollout does not end within %.0f days: "
                            "check the laptops' online hours and links", VMS_FLEET_HORIZON / 86400);
        advance(s, dt);
        note_ready(s);
    }
    return 0;
}

/* ---- the search ------------------------------------------------------------------------ */

static const struct vms_fleet *sort_fleet;

static int by_largest(const void *a, const void *b)
{
    const struct vms_fleet_node *x = &sort_fleet->nodes[*(const size_t *)a],
                                *y = &sort_fleet->nodes[*(const size_t *)b];
    return x->out.bytes != y->out.bytes ? (x->out.bytes < y->out.bytes ? 1 : -1)
                                        : strcmp(x->out.name, y->out.name);
}

static int by_window(const void *a, const void *b)
{
    const struct vms_fleet_node *x = &sort_fleet->nodes[*(const size_t *)a],
                                *y = &sort_fleet->nodes[*(const size_t *)b];
    if (x->online_per_day != y->online_per_day)
        return x->online_per_day < y->online_per_day ? -1 : 1;
    return by_largest(a, b);
}

/* One simulation thread at a time sorts: the comparison needs the fleet. */
static void rank_laptops(const struct vms_fleet *f, size_t *rank, bool window_first)
{
    for (size_t i = 0; i < f->n_nodes; i++)
        rank[i] = i;
    sort_fleet = f;
    qsort(rank, f->n_nodes, sizeof *rank, window_first ? by_window : by_largest);
}

static const uint32_t concurrency_choices[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64};

#define N_CHOICES (sizeof concurrency_choices / sizeof *concurrency_choices)

/* Tries each concurrency of branch K (the last choice, 0, is all of its
 * laptops), keeping in LIMIT[K] the one that shortens *BEST; stops early,
 * with the best so far, once the search's budget is spent. */
static int try_branch(struct sim *s, uint32_t *limit, size_t k, size_t laptops, double *best,
                      fsp_error *err)
{
    uint32_t kept = limit[k];
    int rc = 0;
    for (size_t c = 0; !rc && c <= N_CHOICES && s->work <= VMS_FLEET_SEARCH_WORK; c++) {
        uint32_t choice = c < N_CHOICES ? concurrency_choices[c] : 0;
        if ((choice && choice >= laptops) || choice == kept)
            continue;
        limit[k] = choice;
        rc = run(s, err);
        if (!rc && s->makespan < *best * (1 - 1e-9)) {
            *best = s->makespan;
            kept = choice;
        }
    }
    limit[k] = kept;
    return rc;
}

/* Coordinate descent over the branches' concurrencies, twice round; LIMIT
 * ends holding the best, *BEST its makespan. */
static int descend(struct sim *s, uint32_t *limit, const size_t *site_laptops, double *best,
                   fsp_error *err)
{
    int rc = run(s, err);
    *best = s->makespan;
    for (int pass = 0; !rc && pass < 2; pass++)
        for (size_t k = 0; !rc && k < s->f->n_sites; k++)
            rc = try_branch(s, limit, k, site_laptops[k], best, err);
    return rc;
}

/* What crosses each branch's link: a reflector's union once (measured, or
 * as the file gives it, else its largest laptop's: needs that nest), else
 * the sum of its laptops'. */
static void branch_bytes(struct vms_fleet *f)
{
    for (size_t k = 0; k < f->n_sites; k++) {
        struct vms_fleet_site *site = &f->sites[k];
        uint64_t sum = 0, largest = 0;
        site->out.laptops = 0;
        for (size_t i = 0; i < f->n_nodes; i++) {
            const struct vms_fleet_node *n = &f->nodes[i];
            if (n->branch != k)
                continue;
            site->out.laptops++;
            sum += n->out.bytes;
            largest = !n->out.measured && n->out.bytes > largest ? n->out.bytes : largest;
        }
        site->out.lan_bytes = site->out.reflector ? sum : 0;
        site->out.bundle_bytes = !site->out.offline ? 0 : site->union_bytes > largest ? site->union_bytes
                                                                                      : largest;
        site->out.upstream_bytes = site->out.offline ? 0 : !site->out.reflector ? sum
                                 : site->has_upstream_given ? site->upstream_given
                                 : site->union_bytes > largest ? site->union_bytes : largest;
        f->report.server_bytes += site->out.upstream_bytes;
    }
}

struct search {
    struct sim s;
    size_t *rank, *site_laptops;
    uint32_t *limit, *best_limit;
    bool best_window_first, best_preseed;
    double best;
};

static int search_alloc(struct search *x, const struct vms_fleet *f, fsp_error *err)
{
    size_t nr = 1 + 2 * f->n_sites + f->n_nodes, nf = f->n_nodes + f->n_sites;
    x->s.f = f;
    x->s.n_res = nr;
    x->s.cap = calloc(nr, sizeof *x->s.cap);
    x->s.cap_left = calloc(nr, sizeof *x->s.cap_left);
    x->s.users = calloc(nr, sizeof *x->s.users);
    x->s.flows = calloc(nf, sizeof *x->s.flows);
    x->s.running = calloc(f->n_sites, sizeof *x->s.running);
    x->s.asked = calloc(f->n_sites, sizeof *x->s.asked);
    x->s.ready = calloc(f->n_nodes, sizeof *x->s.ready);
    x->rank = calloc(f->n_nodes, sizeof *x->rank);
    x->site_laptops = calloc(f->n_sites, sizeof *x->site_laptops);
    x->limit = calloc(f->n_sites, sizeof *x->limit);
    x->best_limit = calloc(f->n_sites, sizeof *x->best_limit);
    bool ok = x->s.cap && x->s.cap_left && x->s.users && x->s.flows && x->s.running && x->s.asked && x->s.ready &&
              x->rank && x->site_laptops && x->limit && x->best_limit;
    for (size_t i = 0; ok && i < f->n_nodes; i++)
        x->site_laptops[f->nodes[i].branch]++;
    x->s.rank = x->rank;
    x->s.limit = x->limit;
    return ok ? 0 : fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
}

static void search_free(struct search *x)
{
    free(x->s.cap);
    free(x->s.cap_left);
    free(x->s.users);
    free(x->s.flows);
    free(x->s.running);
    free(x->s.asked);
    free(x->s.ready);
    free(x->rank);
    free(x->site_laptops);
    free(x->limit);
    free(x->best_limit);
}

/* Everyone at once: its makespan is the one to beat. */
static int all_at_once(struct search *x, struct vms_fleet *f, fsp_error *err)
{
    rank_laptops(f, x->rank, false);
    memset(x->limit, 0, f->n_sites * sizeof *x->limit);
    x->s.preseed = false;
    int rc = run(&x->s, err);
    for (size_t i = 0; !rc && i < f->n_nodes; i++)
        f->nodes[i].out.ready_all_at_once = x->s.ready[i];
    for (size_t k = 0; !rc && k < f->n_sites; k++)
        f->sites[k].out.ready_all_at_once = 0;
    for (size_t i = 0; !rc && i < f->n_nodes; i++) {
        struct vms_fleet_branch *b = &f->sites[f->nodes[i].branch].out;
        b->ready_all_at_once = x->s.ready[i] > b->ready_all_at_once ? x->s.ready[i] : b->ready_all_at_once;
    }
    f->report.makespan_all_at_once = x->s.makespan;
    x->best = x->s.makespan;
    return rc;
}

static int try_rankings(struct search *x, struct vms_fleet *f, fsp_error *err)
{
    int rc = 0;
    for (int window_first = 1; !rc && window_first >= 0; window_first--) {
        double m;
        rank_laptops(f, x->rank, window_first);
        memset(x->limit, 0, f->n_sites * sizeof *x->limit);
        x->s.preseed = true;
        rc = descend(&x->s, x->limit, x->site_laptops, &m, err);
        if (!rc && m < x->best * (1 - 1e-9)) {
            x->best = m;
            x->best_window_first = window_first;
            x->best_preseed = true;
            memcpy(x->best_limit, x->limit, f->n_sites * sizeof *x->limit);
        }
    }
    return rc;
}

static const struct sim *order_sim;

static int by_start(const void *a, const void *b)
{
    const struct flow *x = &order_sim->flows[*(const size_t *)a], *y = &order_sim->flows[*(const size_t *)b];
    double sx = x->started ? x->start : INFINITY, sy = y->started ? y->start : INFINITY;
    return sx != sy ? (sx < sy ? -1 : 1) : (*(const size_t *)a > *(const size_t *)b) - (*(const size_t *)a < *(const size_t *)b);
}

/* The chosen schedule run once more, into the report. */
static int final_run(struct search *x, struct vms_fleet *f, fsp_error *err)
{
    rank_laptops(f, x->rank, x->best_window_first);
    memcpy(x->limit, x->best_limit, f->n_sites * sizeof *x->limit);
    x->s.preseed = x->best_preseed;
    int rc = run(&x->s, err);
    for (size_t k = 0; !rc && k < f->n_nodes; k++) /* ties kept in rank order */
        x->rank[k] = k;
    order_sim = &x->s;
    qsort(x->rank, f->n_nodes, sizeof *x->rank, by_start);
    for (size_t k = 0; !rc && k < f->n_nodes; k++) {
        struct vms_fleet_node *n = &f->nodes[x->rank[k]];
        const struct flow *fl = &x->s.flows[x->rank[k]];
        struct vms_fleet_branch *b = &f->sites[n->branch].out;
        n->out.order = (uint32_t)k + 1;
        n->out.start = fl->started ? fl->start : 0;
        n->out.ready = x->s.ready[x->rank[k]];
        b->ready = n->out.ready > b->ready ? n->out.ready : b->ready;
    }
    for (size_t k = 0; !rc && k < f->n_sites; k++) {
        const struct flow *fl = reflector_flow(&x->s, k);
        f->sites[k].out.concurrency = x->best_limit[k];
        f->sites[k].out.reflector_ready = f->sites[k].out.reflector ? fl->end : 0;
    }
    f->report.makespan = x->s.makespan;
    f->report.simulations = x->s.runs;
    return rc;
}

static int fill_report(struct vms_fleet *f, fsp_error *err)
{
    struct vms_fleet_report *r = &f->report;
    free(f->laptops);
    free(f->branches);
    f->laptops = malloc(f->n_nodes * sizeof *f->laptops);
    f->branches = malloc(f->n_sites * sizeof *f->branches);
    if (!f->laptops || !f->branches)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    for (size_t i = 0; i < f->n_nodes; i++) {
        f->laptops[i] = f->nodes[i].out;
        f->laptops[i].via_reflector = f->sites[f->nodes[i].branch].out.reflector;
        f->laptops[i].via_bundle = f->sites[f->nodes[i].branch].out.offline;
    }
    for (size_t k = 0; k < f->n_sites; k++)
        f->branches[k] = f->sites[k].out;
    r->image = f->image;
    r->version = f->version;
    r->laptops = f->laptops;
    r->n_laptops = f->n_nodes;
    r->branches = f->branches;
    r->n_branches = f->n_sites;
    return 0;
}

int vms_fleet_schedule(struct vms_fleet *f, fsp_error *err)
{
    struct search x = {0};
    f->report.server_bytes = 0;
    branch_bytes(f);
    int rc = search_alloc(&x, f, err);
    if (!rc)
        rc = all_at_once(&x, f, err);
    if (!rc)
        rc = try_rankings(&x, f, err);
    if (!rc)
        rc = final_run(&x, f, err);
    f->report.ranking = !x.best_preseed ? "all-at-once" : x.best_window_first ? "window-first"
                                                                               : "largest-first";
    search_free(&x);
    return rc ? rc : fill_report(f, err);
}

int vms_fleet_plan(vms_fleet *f, const struct vms_fleet_report **out, fsp_error *err)
{
    *out = NULL;
    if (vms_fleet_needs_repository(f) && !f->measured)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "the fleet's laptops given by seeds are not "
                        "measured yet (vms_fleet_measure)");
    int rc = vms_fleet_schedule(f, err);
    if (!rc)
        *out = &f->report;
    return rc;
}
