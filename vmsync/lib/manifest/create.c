/* vms_manifest_create: an image scanned into a manifest file.  The CLI and
 * the engine's scans (import, check-in, seeds) all go through this chain. */
#include "manifest/written.h"

struct creator {
    struct vms_forward fwd; /* first: the callbacks' ctx; its inner is the writer's sink */
    const struct vms_manifest_create_opts *o;
};

static int c_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    const struct vms_manifest_create_opts *o = ((struct creator *)ctx)->o;
    return o->progress ? o->progress(o->ctx, phase, done, total) : 0;
}

static int c_warning(void *ctx, uint32_t volume, const char *path, const char *msg)
{
    struct creator *c = ctx;
    const struct fsp_sink *writer = c->fwd.inner;
    int rc = c->o->warning ? c->o->warning(c->o->ctx, volume, path, msg) : 0;
    return rc ? rc : writer->warning(writer->ctx, volume, path, msg);
}

/* The hooks see a volume before its entries, so they can tell which
 * filesystem the entries they are asked to trust belong to. */
static int c_volume(void *ctx, const struct fsp_volume_info *v)
{
    struct creator *c = ctx;
    const struct fsp_sink *h = c->o->hooks, *writer = c->fwd.inner;
    int rc = h->volume(h->ctx, v);
    return rc ? rc : writer->volume(writer->ctx, v);
}

static int c_object(void *ctx, const uint8_t hash[FSP_SHA256_LEN], const void *data, size_t len)
{
    const struct fsp_sink *h = ((struct creator *)ctx)->o->hooks;
    return h->object(h->ctx, hash, data, len);
}

static bool c_want(void *ctx, const struct fsp_entry *e, uint32_t idx)
{
    const struct fsp_sink *h = ((struct creator *)ctx)->o->hooks;
    return h->want_stream(h->ctx, e, idx);
}

static bool c_reuse(void *ctx, const struct fsp_entry *e, uint32_t idx, struct fsp_stream *st)
{
    const struct fsp_sink *h = ((struct creator *)ctx)->o->hooks;
    return h->reuse_stream(h->ctx, e, idx, st);
}

static int scan_to_writer(fsp_source *src, vms_manifest_writer *w,
                          const struct vms_manifest_create_opts *o, fsp_error *err)
{
    struct creator c = {.o = o};
    const struct fsp_sink *h = o->hooks;
    vms_forward_init(&c.fwd, vms_manifest_writer_sink(w));
    c.fwd.sink.progress = c_progress;
    c.fwd.sink.warning = c_warning;
    c.fwd.sink.volume = h && h->volume ? c_volume : c.fwd.sink.volume;
    c.fwd.sink.object = h && h->object ? c_object : NULL;
    c.fwd.sink.want_stream = h && h->want_stream ? c_want : NULL;
    c.fwd.sink.reuse_stream = h && h->reuse_stream ? c_reuse : NULL;
    struct fsp_scan_opts so = {.flags = o->scan_flags};
    return fsp_scan(src, &so, &c.fwd.sink, err);
}

int vms_manifest_create(const char *image, const char *path,
                        const struct vms_manifest_create_opts *o, fsp_error *err)
{
    static const struct vms_manifest_create_opts defaults = {0};
    fsp_source *src;
    vms_manifest_writer *w = NULL;
    int rc = vms_written_open(image, &src, err);
    if (rc)
        return rc;
    rc = vms_manifest_writer_open(path, &w, err);
    if (!rc)
        rc = scan_to_writer(src, w, o ? o : &defaults, err);
    fsp_source_close(src);
    if (rc && w)
        vms_manifest_writer_abort(w);
    else if (!rc)
        rc = vms_manifest_writer_commit(w, err);
    return rc;
}
