/* Shared body of the image fuzzers: scan the input bytes as an image and check
 * what the scan promises: it returns, every layout run is in order, inside the
 * image and never overlaps the previous one. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include "fsparse.h"

#include <stdlib.h>

struct fuzz_state {
    uint64_t size, layout_end;
};

static int fuzz_layout(void *ctx, const struct fsp_layout_run *run)
{
    struct fuzz_state *st = ctx;
    if (run->offset < st->layout_end || run->offset + run->length > st->size || !run->length)
        abort();
    st->layout_end = run->offset + run->length;
    return 0;
}

static int fuzz_entry(void *ctx, uint64_t seq, const struct fsp_entry *e)
{
    if (!e->path || e->path[0] != '/')
        abort();
    return 0;
}

static void fuzz_scan(const uint8_t *data, size_t size, uint8_t force_fs)
{
    fsp_source *src;
    fsp_error err;
    if (fsp_source_open_mem(data, size, &src, &err))
        return;
    struct fuzz_state st = {.size = size};
    struct fsp_sink sink = {.layout = fuzz_layout, .entry = fuzz_entry, .ctx = &st};
    struct fsp_scan_opts opts = {.force_fs = force_fs};
    fsp_scan(src, &opts, &sink, &err);
    fsp_source_close(src);
}

#endif
