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

static void draw_bar(struct cli_progress *p, const char *phase, uint64_t done, uint64_t total,
                     double rate, double eta)
{
    const int width = 30;
    int filled = total ? (int)((double)done / (double)total * width) : 0;
    if (filled > width)
        filled = width;
    char bar[64];
    memset(bar, '#', (size_t)filled);
    memset(bar + filled, '.', (size_t)(width - filled));
    bar[width] = 0;
    char left[16] = "unknown"; /* no rate yet, or no total to reach */
    if (done >= total && total)
        snprintf(left, sizeof left, "0s");
    else if (eta > 0)
        snprintf(left, sizeof left, "%.0fs", eta);
    fprintf(stderr, "\r%-10s [%s] %8.1f / %.1f MiB  %7.1f MiB/s  ETA %-7s ", phase, bar,
            done / 1048576.0, total / 1048576.0, rate / 1048576.0, left);
    p->drawn = true;
    p->total = total;
}

/* A success ends the bar full: the throttle may have skipped the phase's last
 * figures. */
static void draw_finished(struct cli_progress *p, const struct vms_event *ev)
{
    if (p->mode == CLI_PROGRESS_JSON || !p->drawn || ev->result)
        return;
    double t = now_seconds();
    double rate = t > p->phase_started ? p->total / (t - p->phase_started) : 0;
    draw_bar(p, p->phase, p->total, p->total, rate, 0);
}

/* Whether to show a phase's progress now: at most five times a second, but
 * every phase's start (a seed's scan is a start of its own) and end.  Fills
 * the rate and ETA, which are per phase. */
static bool due(struct cli_progress *p, const char *phase, uint32_t index, uint64_t done,
                uint64_t total, double *rate, double *eta)
{
    double t = now_seconds();
    bool new_phase = strncmp(p->phase, phase, sizeof p->phase - 1) != 0 || p->index != index;
    if (new_phase) {
        snprintf(p->phase, sizeof p->phase, "%s", phase);
        p->index = index;
        p->phase_started = t;
    }
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

void cli_scan_finish(struct cli_scan *c) { cli_progress_clear(&c->bar); }
