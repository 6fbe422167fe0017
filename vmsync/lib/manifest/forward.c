/* vms_forward: the identity sink wrapper (see vmsync.h). */
#include "vmsync.h"

#define INNER(ctx) (((struct vms_forward *)(ctx))->inner)

static int f_image(void *ctx, const struct fsp_image_info *i)
{
    return INNER(ctx)->image ? INNER(ctx)->image(INNER(ctx)->ctx, i) : 0;
}
static int f_volume(void *ctx, const struct fsp_volume_info *v)
{
    return INNER(ctx)->volume ? INNER(ctx)->volume(INNER(ctx)->ctx, v) : 0;
}
static int f_entry(void *ctx, uint64_t seq, const struct fsp_entry *e)
{
    return INNER(ctx)->entry ? INNER(ctx)->entry(INNER(ctx)->ctx, seq, e) : 0;
}
static int f_warning(void *ctx, uint32_t volume, const char *path, const char *msg)
{
    return INNER(ctx)->warning ? INNER(ctx)->warning(INNER(ctx)->ctx, volume, path, msg) : 0;
}
static int f_layout(void *ctx, const struct fsp_layout_run *r)
{
    return INNER(ctx)->layout ? INNER(ctx)->layout(INNER(ctx)->ctx, r) : 0;
}
static int f_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    return INNER(ctx)->progress ? INNER(ctx)->progress(INNER(ctx)->ctx, phase, done, total) : 0;
}
static int f_done(void *ctx, const struct fsp_summary *s)
{
    return INNER(ctx)->done ? INNER(ctx)->done(INNER(ctx)->ctx, s) : 0;
}
static int f_object(void *ctx, const uint8_t hash[FSP_SHA256_LEN], const void *data, size_t len)
{
    return INNER(ctx)->object(INNER(ctx)->ctx, hash, data, len);
}
static bool f_want(void *ctx, const struct fsp_entry *e, uint32_t idx)
{
    return INNER(ctx)->want_stream(INNER(ctx)->ctx, e, idx);
}
static bool f_reuse(void *ctx, const struct fsp_entry *e, uint32_t idx, struct fsp_stream *st)
{
    return INNER(ctx)->reuse_stream(INNER(ctx)->ctx, e, idx, st);
}

void vms_forward_init(struct vms_forward *f, const struct fsp_sink *inner)
{
    f->inner = inner;
    f->sink = (struct fsp_sink){
        .image = f_image, .volume = f_volume, .entry = f_entry, .warning = f_warning,
        .layout = f_layout, .progress = f_progress, .done = f_done,
        .object = inner->object ? f_object : NULL,
        .want_stream = inner->want_stream ? f_want : NULL,
        .reuse_stream = inner->reuse_stream ? f_reuse : NULL,
        .ctx = f};
}
