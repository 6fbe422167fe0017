/* Progress on stderr (a bar on a terminal, or JSON lines), and the callbacks
 * that show a scan's progress and print its warnings. */
#include "cli.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int cli_parse_progress(const char *arg, enum cli_progress_mode *mode)
{
    if (!strcmp(arg, "auto") || !strcmp(arg, "bar"))
        *mode = CLI_PROGRESS_AUTO;
    else if (!strcmp(arg, "none"))
        *mode = CLI_PROGRESS_NONE;
    else if (!strcmp(arg, "json"))
        *mode = CLI_PROGRESS_JSON;
    else
        return -1;
    return 0;
}

void cli_progress_init(struct cli_progress *p, enum cli_progress_mode mode)
{
    memset(p, 0, sizeof *p);
    p->mode = mode == CLI_PROGRESS_AUTO && !isatty(STDERR_FILENO) ? CLI_PROGRESS_NONE : mode;
}

/* ---- the one bar ---------------------------------------------------------
 * An operation goes through phases, each with its own total, and learns the
 * next phase's total only when it starts.  The bar is one for the whole
 * operation: each phase, as it starts, takes a slice of what is left of the
 * bar, in proportion to its bytes against the bytes known to follow it, and
 * fills its slice as its bytes go.  So the bar never goes back, and the last
 * phase ends it at 100%.  A phase with nothing known to follow takes all that
 * is left.  Phases that come before the size of the job is known (a seed's
 * scan, the connection) show a counter, no percentage. */

/* The bytes known to follow PHASE, of TOTAL bytes: a checkout reads back for
 * its verify about what it wrote, and a check's objects follow its
 * manifests. */
static uint64_t bytes_after(const char *phase, uint64_t total)
{
    if (!strcmp(phase, "seed-copy") || !strcmp(phase, "fetch") || !strcmp(phase, "check-manifests"))
        return total;
    return 0;
}

/* Phases that run before the job's size is known: a counter, no percentage. */
static bool counts_only(const char *phase, uint64_t total)
{
    return !total || !strcmp(phase, "connect") || !strcmp(phase, "scan-seed") ||
           !strcmp(phase, "scan-output");
}

/* Phases that count one figure share a slice: seed-copy and fetch (the
 * image in place, of all it needs), and a scan's "metadata" and "files". */
static int slice_group(const char *phase)
{
    if (!strcmp(phase, "seed-copy") || !strcmp(phase, "fetch"))
        return 1;
    if (!strcmp(phase, "metadata") || !strcmp(phase, "files"))
        return 2;
    return 0;
}

static bool same_slice(const char *a, const char *b)
{
    return !strcmp(a, b) || (slice_group(a) && slice_group(a) == slice_group(b));
}

/* A phase started: it takes its slice of what is left of the bar once it
 * knows its total (a scan starts at 0 of 0). */
static void start_slice(struct cli_progress *p)
{
    p->slice_from = p->fraction;
    p->slice = 0;
    p->sliced = false;
}

static void take_slice(struct cli_progress *p, const char *phase, uint64_t total)
{
    if (p->sliced || counts_only(phase, total))
        return;
    p->sliced = true;
    double after = (double)bytes_after(phase, total);
    p->slice = (1 - p->fraction) * (double)total / ((double)total + after);
}

static void advance(struct cli_progress *p, uint64_t done, uint64_t total)
{
    if (!p->slice || !total)
        return;
    double in_phase = done >= total ? 1 : (double)done / (double)total;
    double f = p->slice_from + p->slice * in_phase;
    if (f > p->fraction) /* a total that grew does not move the bar back */
        p->fraction = f > 1 ? 1 : f;
}

static void put_eta(char *out, size_t len, double eta, bool finished)
{
    snprintf(out, len, "unknown"); /* no rate yet, or no total to reach */
    if (finished)
        snprintf(out, len, "0s");
    else if (eta > 0) /* under a second left is not none left */
        snprintf(out, len, "%.0fs", eta < 1 ? 1 : eta);
}

/* A phase with no slice of the bar: its bytes, and its total when it has one
 * (the connection counts steps). */
static void draw_counter(const char *phase, int width, uint64_t done, uint64_t total, double rate)
{
    char figures[64];
    if (!strcmp(phase, "connect"))
        snprintf(figures, sizeof figures, "step %llu of %llu", (unsigned long long)done,
                 (unsigned long long)total);
    else if (total)
        snprintf(figures, sizeof figures, "%8.1f / %.1f MiB  %7.1f MiB/s", done / 1048576.0,
                 total / 1048576.0, rate / 1048576.0);
    else
        snprintf(figures, sizeof figures, "%8.1f MiB  %7.1f MiB/s", done / 1048576.0,
                 rate / 1048576.0);
    fprintf(stderr, "\r%-15s [%-*s] %s  ETA unknown ", phase, width,
            counts_only(phase, total) ? "size not known yet" : "", figures);
}

/* A phase that has no slice yet draws the bar where it is; before any phase
 * had one, or after the last filled it, a counter. */
static bool shows_counter(const struct cli_progress *p)
{
    return !p->sliced && !p->full && (p->fraction == 0 || p->fraction >= 1);
}

static void draw_bar(struct cli_progress *p, const char *phase, uint64_t done, uint64_t total,
                     double rate, double eta)
{
    const int width = 30;
    p->drawn = true;
    p->total = total;
    if (shows_counter(p)) {
        draw_counter(phase, width, done, total, rate);
        return;
    }
    char bar[64], left[16];
    int filled = (int)(p->fraction * width);
    memset(bar, '#', (size_t)filled);
    memset(bar + filled, '.', (size_t)(width - filled));
    bar[width] = 0;
    if (rate > 0) /* the bar's ETA: the bytes known to follow too */
        eta += bytes_after(phase, total) / rate;
    put_eta(left, sizeof left, eta, p->full || p->fraction >= 1);
    fprintf(stderr, "\r%-15s [%s] %5.1f%% %8.1f / %.1f MiB  %7.1f MiB/s  ETA %-7s ", phase, bar,
            p->fraction * 100, done / 1048576.0, total / 1048576.0, rate / 1048576.0, left);
}

/* A success ends the bar full: the throttle may have skipped the phase's last
 * figures, and a scan's total is its estimate (the blocks allocated) of the
 * bytes it reads. */
static void draw_full(struct cli_progress *p)
{
    double t = now_seconds();
    double rate = t > p->phase_started ? p->total / (t - p->phase_started) : 0;
    p->fraction = 1;
    p->full = true;
    draw_bar(p, p->phase, p->total, p->total, rate, 0);
}

static void draw_finished(struct cli_progress *p, const struct vms_event *ev)
{
    if (p->mode == CLI_PROGRESS_JSON || !p->drawn || ev->result)
        return;
    draw_full(p);
}

/* Whether to show a phase's progress now: at most five times a second, but
 * every phase's start (a seed's scan is a start of its own) and end.  Fills
 * the rate and ETA, which are per phase; advances the bar. */
static bool due(struct cli_progress *p, const char *phase, uint32_t index, uint64_t done,
                uint64_t total, double *rate, double *eta)
{
    double t = now_seconds();
    bool new_phase = !same_slice(p->phase, phase) || p->index != index;
    if (new_phase) {
        p->phase_started = t;
        start_slice(p);
    }
    take_slice(p, phase, total);
    snprintf(p->phase, sizeof p->phase, "%s", phase);
    p->index = index;
    advance(p, done, total);
    if (!new_phase && done != total && t - p->last_shown < 0.2)
        return false;
    p->last_shown = t;
    *rate = t > p->phase_started ? done / (t - p->phase_started) : 0;
    *eta = *rate > 0 && total > done ? (total - done) / *rate : 0;
    return true;
}

static void json_figures(const char *phase, uint64_t done, uint64_t total, double rate, double eta)
{
    fprintf(stderr, "{\"phase\":\"%s\",\"done\":%llu,\"total\":%llu,\"rate\":%.0f,\"eta\":%.1f",
            phase, (unsigned long long)done, (unsigned long long)total, rate, eta);
}

void cli_progress_show(struct cli_progress *p, const char *phase, uint64_t done, uint64_t total)
{
    double rate, eta;
    if (p->mode == CLI_PROGRESS_NONE || !due(p, phase, 0, done, total, &rate, &eta))
        return;
    if (p->mode == CLI_PROGRESS_JSON) {
        json_figures(phase, done, total, rate, eta);
        fputs("}\n", stderr);
    } else {
        draw_bar(p, phase, done, total, rate, eta);
    }
}

/* The last line of --progress=json: the operation's return. */
static void json_done(const struct vms_event *ev)
{
    fprintf(stderr, "{\"phase\":\"%s\",\"result\":%d}\n", vms_phase_name(ev->phase), ev->result);
}

void cli_progress_event(struct cli_progress *p, const struct vms_event *ev)
{
    const char *phase = vms_phase_name(ev->phase);
    double rate, eta;
    if (p->mode == CLI_PROGRESS_JSON && ev->phase == VMS_PHASE_DONE)
        json_done(ev);
    if (ev->phase == VMS_PHASE_DONE)
        draw_finished(p, ev);
    if (p->mode == CLI_PROGRESS_NONE || ev->phase == VMS_PHASE_DONE ||
        !due(p, phase, ev->index, ev->done, ev->total, &rate, &eta))
        return;
    if (p->mode != CLI_PROGRESS_JSON) {
        draw_bar(p, phase, ev->done, ev->total, rate, eta);
        return;
    }
    json_figures(phase, ev->done, ev->total, rate, eta);
    if (ev->subject) {
        fputc(',', stderr);
        vms_json_member(stderr, "subject", ev->subject);
    }
    if (ev->count)
        fprintf(stderr, ",\"index\":%u,\"count\":%u", ev->index, ev->count);
    fputs("}\n", stderr);
}

void cli_progress_clear(struct cli_progress *p)
{
    if (p->drawn)
        fputc('\n', stderr);
    p->drawn = false;
}

static int c_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    cli_progress_show(&((struct cli_scan *)ctx)->bar, phase, done, total);
    return cli_interrupted(); /* non-zero: the scan ends as cancelled */
}

void cli_progress_warning(struct cli_progress *p, const struct vms_warning *w)
{
    cli_progress_clear(p);
    fputs("vmsync: warning: ", stderr);
    if (w->path) {
        fprintf(stderr, "partition %u: ", w->volume);
        vms_put_name(stderr, w->path);
        fputs(": ", stderr);
    }
    vms_put_text(stderr, w->message);
    fputc('\n', stderr);
}

static int c_warning(void *ctx, uint32_t volume, const char *path, const char *msg)
{
    struct cli_scan *c = ctx;
    cli_progress_clear(&c->bar);
    fputs("vmsync: warning: ", stderr);
    vms_put_name(stderr, c->image);
    if (path) {
        fprintf(stderr, ": partition %u: ", volume);
        vms_put_name(stderr, path);
    }
    fputs(": ", stderr);
    vms_put_text(stderr, msg);
    fputc('\n', stderr);
    return 0;
}

void cli_scan_init(struct cli_scan *c, const char *image, enum cli_progress_mode progress,
                   struct vms_manifest_create_opts *o)
{
    memset(c, 0, sizeof *c);
    c->image = image;
    cli_progress_init(&c->bar, progress);
    o->progress = c_progress;
    o->warning = c_warning;
    o->ctx = c;
}

void cli_scan_finish(struct cli_scan *c, int rc)
{
    if (!rc && c->bar.drawn && c->bar.mode != CLI_PROGRESS_JSON)
        draw_full(&c->bar);
    cli_progress_clear(&c->bar);
}
