#include "manifest/loaded.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- loading a manifest ----------------------------------------------------- */

struct loader {
    struct vms_loaded *m;
    size_t cap_entries, cap_streams, cap_chunks, cap_extents, cap_runs, cap_hashes, cap_names,
        cap_volumes;
};

static int l_image(void *ctx, const struct fsp_image_info *i)
{
    struct loader *l = ctx;
    l->m->image_size = i->size;
    snprintf(l->m->format, sizeof l->m->format, "%s", i->format);
    snprintf(l->m->table, sizeof l->m->table, "%s", i->table);
    return 0;
}

static int l_volume(void *ctx, const struct fsp_volume_info *v)
{
    struct loader *l = ctx;
    struct vms_loaded *m = l->m;
    if (vms_grow(&m->volumes, &l->cap_volumes, m->n_volumes + 1, sizeof *m->volumes))
        return -ENOMEM;
    m->volumes[m->n_volumes++] = *v;
    return 0;
}

static uint32_t pool_name(struct loader *l, const char *name)
{
    struct vms_loaded *m = l->m;
    if (!name)
        return 0;
    size_t n = strlen(name) + 1;
    if (vms_grow(&m->names, &l->cap_names, m->names_len + n, 1))
        return UINT32_MAX;
    memcpy(m->names + m->names_len, name, n);
    m->names_len += n;
    return (uint32_t)(m->names_len - n);
}

static int add_stream(struct loader *l, uint64_t seq, const struct fsp_entry *e,
                      const struct fsp_stream *st)
{
    struct vms_loaded *m = l->m;
    if (vms_grow(&m->streams, &l->cap_streams, m->n_streams + 1, sizeof *m->streams) ||
        vms_grow(&m->chunks, &l->cap_chunks, m->n_chunks + st->n_chunks, sizeof *m->chunks) ||
        vms_grow(&m->extents, &l->cap_extents, m->n_extents + st->n_extents, sizeof *m->extents))
        return -ENOMEM;
    struct vms_lstream *ls = &m->streams[m->n_streams++];
    *ls = (struct vms_lstream){.entry_seq = seq, .size = st->size, .valid_size = st->valid_size,
                               .flags = st->flags, .entry_flags = e->flags,
                               .first_chunk = m->n_chunks, .n_chunks = st->n_chunks,
                               .first_extent = m->n_extents, .n_extents = st->n_extents};
    memcpy(ls->sha256, st->sha256, FSP_SHA256_LEN);
    if ((ls->name = pool_name(l, st->name)) == UINT32_MAX)
        return -ENOMEM;
    if (st->n_chunks) /* empty arrays may be NULL, and memcpy must not see NULL */
        memcpy(m->chunks + m->n_chunks, st->chunks, st->n_chunks * sizeof *st->chunks);
    m->n_chunks += st->n_chunks;
    if (st->n_extents)
        memcpy(m->extents + m->n_extents, st->extents, st->n_extents * sizeof *st->extents);
    m->n_extents += st->n_extents;
    return 0;
}

static int l_entry(void *ctx, uint64_t seq, const struct fsp_entry *e)
{
    struct loader *l = ctx;
    struct vms_loaded *m = l->m;
    if (vms_grow(&m->entries, &l->cap_entries, m->n_entries + 1, sizeof *m->entries))
        return -ENOMEM;
    m->entries[m->n_entries++] = (struct vms_lentry){
        .volume = e->volume, .type = e->type, .flags = e->flags, .ino = e->ino,
        .generation = e->generation, .size = e->size, .mtime = e->mtime, .ctime = e->ctime,
        .first_stream = m->n_streams, .n_streams = e->n_streams};
    for (uint32_t i = 0; i < e->n_streams; i++) {
        int rc = add_stream(l, seq, e, &e->streams[i]);
        if (rc)
            return rc;
    }
    return 0;
}

static int l_layout(void *ctx, const struct fsp_layout_run *r)
{
    struct loader *l = ctx;
    struct vms_loaded *m = l->m;
    if (vms_grow(&m->runs, &l->cap_runs, m->n_runs + 1, sizeof *m->runs) ||
        vms_grow(&m->hashes, &l->cap_hashes, m->n_hashes + r->n_hashes, sizeof *m->hashes))
        return -ENOMEM;
    struct vms_lrun *lr = &m->runs[m->n_runs++];
    *lr = (struct vms_lrun){.offset = r->offset, .length = r->length, .kind = r->kind,
                            .volume = r->volume, .stream_offset = r->stream_offset,
                            .first_hash = m->n_hashes, .n_hashes = r->n_hashes};
    if (r->kind == FSP_L_FILE)
        lr->stream = m->entries[r->entry_seq].first_stream + r->stream;
    if (r->n_hashes)
        memcpy(m->hashes + m->n_hashes, r->hashes, (size_t)r->n_hashes * FSP_SHA256_LEN);
    m->n_hashes += r->n_hashes;
    return 0;
}

static int l_done(void *ctx, const struct fsp_summary *s)
{
    ((struct loader *)ctx)->m->summary = *s;
    return 0;
}

int vms_loaded_read(const char *path, struct vms_loaded **out, fsp_error *err)
{
    struct loader l = {.m = calloc(1, sizeof *l.m)};
    if (!l.m || vms_grow(&l.m->names, &l.cap_names, 1, 1)) {
        vms_loaded_free(l.m);
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    }
    l.m->names[0] = 0;
    l.m->names_len = 1;
    struct fsp_sink sink = {.image = l_image, .volume = l_volume, .entry = l_entry,
                            .layout = l_layout, .done = l_done, .ctx = &l};
    memset(err, 0, sizeof *err);
    int rc = vms_manifest_read(path, &sink, err);
    if (rc) {
        if (!err->msg[0])
            fsp_fail(err, FSP_EK_NOMEM, rc, "%s: out of memory loading the manifest", path);
        vms_loaded_free(l.m);
        return rc;
    }
    *out = l.m;
    return 0;
}

void vms_loaded_free(struct vms_loaded *m)
{
    if (!m)
        return;
    free(m->volumes);
    free(m->entries);
    free(m->streams);
    free(m->chunks);
    free(m->extents);
    free(m->runs);
    free(m->hashes);
    free(m->names);
    free(m);
}
