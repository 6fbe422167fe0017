/* External sort of fixed-size records.  Records collect in a memory buffer of
 * at most the budget; a full buffer is sorted and written to an unlinked temp
 * file as one run, and reading merges the runs.  Memory stays bounded whatever
 * the record count: this is what keeps a scan flat over millions of files. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUN_READ_RECS 256

struct run {
    uint64_t start, count, taken; /* record index in the spill file */
    uint8_t *buf;                 /* RUN_READ_RECS records */
    size_t buf_len, buf_pos;
};

struct fsp_xsort {
    size_t rec_size, cap, len; /* cap and len in records */
    uint8_t *mem;
    fsp_xsort_cmp cmp;
    FILE *spill;
    struct run *runs;
    size_t n_runs;
    uint64_t total;
    bool reading;
    size_t mem_pos; /* when nothing spilled */
};

int fsp_xsort_new(size_t rec_size, size_t mem_budget, fsp_xsort_cmp cmp, fsp_xsort **out)
{
    fsp_xsort *xs = calloc(1, sizeof *xs);
    if (!xs)
        return -ENOMEM;
    xs->rec_size = rec_size;
    xs->cap = mem_budget / rec_size;
    if (xs->cap < 16)
        xs->cap = 16;
    xs->mem = malloc(xs->cap * rec_size);
    if (!xs->mem) {
        free(xs);
        return -ENOMEM;
    }
    xs->cmp = cmp;
    *out = xs;
    return 0;
}

static int spill_buffer(fsp_xsort *xs)
{
    if (!xs->spill && !(xs->spill = tmpfile()))
        return -errno;
    struct run *grown = realloc(xs->runs, (xs->n_runs + 1) * sizeof *grown);
    if (!grown)
        return -ENOMEM;
    xs->runs = grown;
    qsort(xs->mem, xs->len, xs->rec_size, xs->cmp);
    struct run *r = &xs->runs[xs->n_runs++];
    memset(r, 0, sizeof *r);
    r->start = xs->total - xs->len;
    r->count = xs->len;
    if (fwrite(xs->mem, xs->rec_size, xs->len, xs->spill) != xs->len)
        return errno ? -errno : -EIO;
    xs->len = 0;
    return 0;
}

int fsp_xsort_add(fsp_xsort *xs, const void *rec)
{
    if (xs->reading)
        return -EINVAL;
    if (xs->len == xs->cap) {
        int rc = spill_buffer(xs);
        if (rc < 0)
            return rc;
    }
    memcpy(xs->mem + xs->len * xs->rec_size, rec, xs->rec_size);
    xs->len++;
    xs->total++;
    return 0;
}

static int start_reading(fsp_xsort *xs)
{
    xs->reading = true;
    if (!xs->spill) {
        qsort(xs->mem, xs->len, xs->rec_size, xs->cmp);
        return 0;
    }
    if (xs->len) {
        int rc = spill_buffer(xs);
        if (rc < 0)
            return rc;
    }
    free(xs->mem);
    xs->mem = NULL;
    for (size_t i = 0; i < xs->n_runs; i++) {
        xs->runs[i].buf = malloc(RUN_READ_RECS * xs->rec_size);
        if (!xs->runs[i].buf)
            return -ENOMEM;
    }
    return 0;
}

/* Makes the run's next record available at buf + buf_pos; false when it is done. */
static int refill_run(fsp_xsort *xs, struct run *r)
{
    if (r->buf_pos < r->buf_len)
        return 1;
    uint64_t left = r->count - r->taken;
    if (!left)
        return 0;
    size_t n = left < RUN_READ_RECS ? (size_t)left : RUN_READ_RECS;
    if (fseeko(xs->spill, (off_t)((r->start + r->taken) * xs->rec_size), SEEK_SET) < 0)
        return -errno;
    if (fread(r->buf, xs->rec_size, n, xs->spill) != n)
        return -EIO;
    r->taken += n;
    r->buf_len = n * xs->rec_size;
    r->buf_pos = 0;
    return 1;
}

int fsp_xsort_next(fsp_xsort *xs, void *rec)
{
    if (!xs->reading) {
        int rc = start_reading(xs);
        if (rc < 0)
            return rc;
    }
    if (!xs->spill) {
        if (xs->mem_pos >= xs->len)
            return 0;
        memcpy(rec, xs->mem + xs->mem_pos++ * xs->rec_size, xs->rec_size);
        return 1;
    }
    struct run *best = NULL;
    for (size_t i = 0; i < xs->n_runs; i++) {
        struct run *r = &xs->runs[i];
        int rc = refill_run(xs, r);
        if (rc < 0)
            return rc;
        if (rc && (!best || xs->cmp(r->buf + r->buf_pos, best->buf + best->buf_pos) < 0))
            best = r;
    }
    if (!best)
        return 0;
    memcpy(rec, best->buf + best->buf_pos, xs->rec_size);
    best->buf_pos += xs->rec_size;
    return 1;
}

uint64_t fsp_xsort_count(const fsp_xsort *xs) { return xs->total; }

void fsp_xsort_free(fsp_xsort *xs)
{
    if (!xs)
        return;
    for (size_t i = 0; i < xs->n_runs; i++)
        free(xs->runs[i].buf);
    free(xs->runs);
    if (xs->spill)
        fclose(xs->spill);
    free(xs->mem);
    free(xs);
}
