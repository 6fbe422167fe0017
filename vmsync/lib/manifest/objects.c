/* Which objects a manifest's image is made of (see vms_manifest_objects). */
#include "vmsync.h"

struct walk {
    vms_hash_cb cb;
    void *ctx;
    bool skip_volatile;
};

/* Volatile streams count: their objects are stored only on request (import
 * --keep-volatile), but when they are, gc must keep them. */
static bool stream_is_object_source(const struct fsp_entry *e, const struct fsp_stream *st)
{
    return !(e->flags & FSP_ENTRY_HARDLINK) &&
           !(st->flags & (FSP_STREAM_UNREADABLE | FSP_STREAM_NOT_HASHED));
}

static int walk_entry(void *ctx, uint64_t seq, const struct fsp_entry *e)
{
    struct walk *w = ctx;
    for (uint32_t i = 0; i < e->n_streams; i++) {
        const struct fsp_stream *st = &e->streams[i];
        if (!stream_is_object_source(e, st) || (w->skip_volatile && (e->flags & FSP_ENTRY_VOLATILE)))
            continue;
        int rc = 0;
        if (st->size < FSP_CHUNK_MIN_STREAM)
            rc = w->cb(w->ctx, st->sha256, st->size);
        for (uint32_t c = 0; c < st->n_chunks && !rc; c++)
            rc = w->cb(w->ctx, st->chunks[c].sha256, st->chunks[c].length);
        if (rc)
            return rc;
    }
    return 0;
}

static int walk_run(void *ctx, const struct fsp_layout_run *run)
{
    struct walk *w = ctx;
    for (uint32_t i = 0; i < run->n_hashes; i++) {
        uint64_t left = run->length - (uint64_t)i * FSP_PIECE_SIZE;
        int rc = w->cb(w->ctx, run->hashes[i], left < FSP_PIECE_SIZE ? left : FSP_PIECE_SIZE);
        if (rc)
            return rc;
    }
    return 0;
}

static int walk_manifest(const char *path, bool skip_volatile, vms_hash_cb cb, void *ctx,
                         fsp_error *err)
{
    struct walk w = {cb, ctx, skip_volatile};
    struct fsp_sink sink = {.entry = walk_entry, .layout = walk_run, .ctx = &w};
    return vms_manifest_read(path, &sink, err);
}

int vms_manifest_objects(const char *path, vms_hash_cb cb, void *ctx, fsp_error *err)
{
    return walk_manifest(path, false, cb, ctx, err);
}

int vms_manifest_needed(const char *path, vms_hash_cb cb, void *ctx, fsp_error *err)
{
    return walk_manifest(path, true, cb, ctx, err);
}
