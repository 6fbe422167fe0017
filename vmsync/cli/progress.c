/* The CLI's sink wrapper: prints warnings and progress, forwards the rest. */
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

static void draw_bar(struct cli_sink *c, const char *phase, uint64_t done, uint64_t total,
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
    fprintf(stderr, "\r%-8s [%s] %8.1f / %.1f MiB  %7.1f MiB/s  ETA %3.0fs ", phase, bar,
            done / 1048576.0, total / 1048576.0, rate / 1048576.0, eta);
    c->bar_drawn = true;
}

static int c_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    struct cli_sink *c = ctx;
    double t = now_seconds();
    if (c->progress != CLI_PROGRESS_NONE && t - c->last_shown >= 0.2) {
        c->last_shown = t;
        double rate = t > c->started ? done / (t - c->started) : 0;
        double eta = rate > 0 && total > done ? (total - done) / rate : 0;
        if (c->progress == CLI_PROGRESS_JSON)
            fprintf(stderr,
                    "{\"phase\":\"%s\",\"done\":%llu,\"total\":%llu,\"rate\":%.0f,\"eta\":%.1f}\n",
                    phase, (unsigned long long)done, (unsigned long long)total, rate, eta);
        else
            draw_bar(c, phase, done, total, rate, eta);
    }
    return c->inner->progress ? c->inner->progress(c->inner->ctx, phase, done, total) : 0;
}

static int c_warning(void *ctx, uint32_t volume, const char *path, const char *msg)
{
    struct cli_sink *c = ctx;
    if (c->bar_drawn) {
        fputc('\n', stderr);
        c->bar_drawn = false;
    }
    if (path)
        fprintf(stderr, "vmsync: warning: %s: partition %u: %s: %s\n", c->image, volume, path, msg);
    else
        fprintf(stderr, "vmsync: warning: %s: %s\n", c->image, msg);
    return c->inner->warning ? c->inner->warning(c->inner->ctx, volume, path, msg) : 0;
}

#define FORWARD(name, params, args)                                                            \
    static int c_##name params                                                                 \
    {                                                                                          \
        struct cli_sink *c = ctx;                                                              \
        return c->inner->name ? c->inner->name args : 0;                                       \
    }
FORWARD(image, (void *ctx, const struct fsp_image_info *i), (c->inner->ctx, i))
FORWARD(volume, (void *ctx, const struct fsp_volume_info *v), (c->inner->ctx, v))
FORWARD(entry, (void *ctx, uint64_t seq, const struct fsp_entry *e), (c->inner->ctx, seq, e))
FORWARD(layout, (void *ctx, const struct fsp_layout_run *r), (c->inner->ctx, r))
FORWARD(done, (void *ctx, const struct fsp_summary *s), (c->inner->ctx, s))

void cli_sink_init(struct cli_sink *c, const struct fsp_sink *inner, const char *image,
                   enum cli_progress_mode progress)
{
    memset(c, 0, sizeof *c);
    c->inner = inner;
    c->image = image;
    c->progress = progress;
    if (progress == CLI_PROGRESS_AUTO && !isatty(STDERR_FILENO))
        c->progress = CLI_PROGRESS_NONE;
    c->started = now_seconds();
    c->sink = (struct fsp_sink){.image = c_image, .volume = c_volume, .entry = c_entry,
                                .warning = c_warning, .layout = c_layout,
                                .progress = c_progress, .done = c_done, .ctx = c};
}

void cli_sink_finish(struct cli_sink *c)
{
    if (c->bar_drawn)
        fputc('\n', stderr);
    c->bar_drawn = false;
}
