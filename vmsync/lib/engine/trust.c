/* Trusting unchanged files: a stream keeps the hashes an earlier manifest
 * gave it when its inode looks untouched on the same filesystem (see
 * struct vms_trust). */
#include "engine/engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void inode_key(uint32_t volume, uint64_t ino, uint8_t key[FSP_SHA256_LEN])
{
    /* The map hashes by the first 8 bytes; mix them so inode runs spread. */
    uint64_t mixed = (ino ^ ((uint64_t)volume << 56)) * 0x9e3779b97f4a7c15ULL;
    memset(key, 0, FSP_SHA256_LEN);
    memcpy(key, &mixed, 8);
    memcpy(key + 8, &volume, 4);
    memcpy(key + 12, &ino, 8);
}

int vms_trust_init(struct vms_trust *t, struct vms_loaded *ref)
{
    memset(t, 0, sizeof *t);
    t->ref = ref;
    t->same_fs = calloc(ref->n_volumes ? ref->n_volumes : 1, sizeof *t->same_fs);
    if (!t->same_fs)
        return -ENOMEM;
    for (size_t i = 0; i < t->ref->n_entries; i++) {
        const struct vms_lentry *e = &t->ref->entries[i];
        if (e->flags & FSP_ENTRY_HARDLINK)
            continue;
        uint8_t key[FSP_SHA256_LEN];
        inode_key(e->volume, e->ino, key);
        if (vms_hashmap_put(&t->by_inode, key, i) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* The same filesystem, not one made alike: a fresh mke2fs or mkntfs of the
 * same tree repeats the inode numbers and times, never the UUID. */
static bool same_filesystem(const struct fsp_volume_info *a, const struct fsp_volume_info *b)
{
    return a->fs_uuid[0] && !strcmp(a->fs_uuid, b->fs_uuid) && a->fs_kind == b->fs_kind &&
           a->start == b->start && a->fs_length == b->fs_length && a->block_size == b->block_size;
}

void vms_trust_volume(struct vms_trust *t, const struct fsp_volume_info *v)
{
    for (size_t i = 0; t->ref && i < t->ref->n_volumes; i++)
        if (t->ref->volumes[i].index == v->index)
            t->same_fs[i] = same_filesystem(&t->ref->volumes[i], v);
}

/* REF's volume VOLUME when the scan's is the same filesystem, else NULL. */
static const struct fsp_volume_info *trusted_volume(const struct vms_trust *t, uint32_t volume)
{
    for (size_t i = 0; i < t->ref->n_volumes; i++)
        if (t->ref->volumes[i].index == volume)
            return t->same_fs[i] ? &t->ref->volumes[i] : NULL;
    return NULL;
}

/* A file moved to other blocks may hold other bytes whatever its times say.
 * The scan offers ST with extents relative to the volume (it makes them
 * absolute after), the manifest has them absolute. */
static bool same_extents(const struct vms_trust *t, const struct fsp_volume_info *vol,
                         const struct vms_lstream *rs, const struct fsp_stream *st)
{
    if (rs->n_extents != st->n_extents)
        return false;
    for (size_t i = 0; i < st->n_extents; i++) {
        const struct fsp_extent *a = &t->ref->extents[rs->first_extent + i], *b = &st->extents[i];
        if (a->logical != b->logical || a->physical != b->physical + vol->start ||
            a->length != b->length || a->flags != b->flags)
            return false;
    }
    return true;
}

static bool same_time(struct fsp_time a, struct fsp_time b) { return a.sec == b.sec && a.nsec == b.nsec; }

static const struct vms_lstream *trusted_stream(struct vms_trust *t, const struct fsp_entry *e,
                                                uint32_t idx, const struct fsp_stream *st)
{
    uint8_t key[FSP_SHA256_LEN];
    const struct fsp_volume_info *vol = trusted_volume(t, e->volume);
    if (!vol)
        return NULL;
    inode_key(e->volume, e->ino, key);
    uint64_t *i = vms_hashmap_get(&t->by_inode, key);
    if (!i)
        return NULL;
    const struct vms_lentry *r = &t->ref->entries[*i];
    if (r->type != e->type || r->generation != e->generation || r->size != e->size ||
        !same_time(r->mtime, e->mtime) || !same_time(r->ctime, e->ctime) || idx >= r->n_streams)
        return NULL;
    const struct vms_lstream *rs = &t->ref->streams[r->first_stream + idx];
    const char *name = vms_lstream_name(t->ref, rs);
    bool same_name = (!name && !st->name) || (name && st->name && !strcmp(name, st->name));
    if (!same_name || rs->size != st->size ||
        (rs->flags & (FSP_STREAM_UNREADABLE | FSP_STREAM_NOT_HASHED)) || !same_extents(t, vol, rs, st))
        return NULL;
    return rs;
}

bool vms_trust_fill(struct vms_trust *t, const struct fsp_entry *e, uint32_t idx, struct fsp_stream *st)
{
    const struct vms_lstream *rs = trusted_stream(t, e, idx, st);
    if (!rs)
        return false;
    struct fsp_chunk *chunks = NULL;
    if (rs->n_chunks) {
        chunks = malloc(rs->n_chunks * sizeof *chunks);
        if (!chunks)
            return false;
        memcpy(chunks, t->ref->chunks + rs->first_chunk, rs->n_chunks * sizeof *chunks);
    }
    memcpy(st->sha256, rs->sha256, FSP_SHA256_LEN);
    st->chunks = chunks;
    st->n_chunks = (uint32_t)rs->n_chunks;
    return true;
}

void vms_trust_free(struct vms_trust *t)
{
    vms_loaded_free(t->ref);
    vms_hashmap_free(&t->by_inode);
    free(t->same_fs);
    memset(t, 0, sizeof *t);
}
