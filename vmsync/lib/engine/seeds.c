/* Seeds: the images a laptop already holds.  Each is scanned lazily: a stream
 * is hashed only when the target needs a stream of its size (small files) or
 * has large files to match chunk by chunk.  The seed's manifest is cached under
 * the cache directory, keyed by the image's path, device, inode, size and mtime,
 * so an unchanged seed is not scanned again; when a later target wants streams
 * the cached scan skipped, the rescan trusts what was already hashed.
 *
 * Every byte taken from a seed is checked against the hash it should have
 * before it is used. */
#include "engine/seeds.h"
#include "manifest/written.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct want {
    struct vms_scan_hooks hooks; /* first: the sink callbacks' ctx */
    const struct vms_seed_needs *needs;
    struct vms_trust *trust;     /* from a stale cached scan, or NULL */
};

static bool size_needed(const struct vms_seed_needs *n, uint64_t size)
{
    if (size >= FSP_CHUNK_MIN_STREAM)
        return n->chunked;
    size_t lo = 0, hi = n->n_sizes;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (n->sizes[mid] < size)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n->n_sizes && n->sizes[lo] == size;
}

static bool w_want(void *ctx, const struct fsp_entry *e, uint32_t idx)
{
    struct want *w = ctx;
    return !(e->flags & FSP_ENTRY_VOLATILE) && size_needed(w->needs, e->streams[idx].size);
}

static int w_volume(void *ctx, const struct fsp_volume_info *v)
{
    struct want *w = ctx;
    if (w->trust)
        vms_trust_volume(w->trust, v);
    return 0;
}

static bool w_reuse(void *ctx, const struct fsp_entry *e, uint32_t idx, struct fsp_stream *st)
{
    struct want *w = ctx;
    return w->trust && vms_trust_fill(w->trust, e, idx, st);
}

/* The cache key: where the seed is and what its inode says about it. */
static int seed_cache_path(struct vms_ctx *c, const char *path, char *out, size_t len, fsp_error *err)
{
    struct stat st;
    char real[PATH_MAX];
    if (stat(path, &st) < 0 || !realpath(path, real))
        return fsp_fail(err, FSP_EK_OPEN, -errno, "%s: cannot open seed: %s", path, strerror(errno));
    char key[PATH_MAX + 128];
    int n = snprintf(key, sizeof key, "%s|%llu|%llu|%lld|%lld.%09ld", real,
                     (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
                     (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    uint8_t hash[FSP_SHA256_LEN];
    unsigned int hl = sizeof hash;
    EVP_Digest(key, (size_t)n, hash, &hl, EVP_sha256(), NULL);
    char name[2 * FSP_SHA256_LEN + 8];
    fsp_hex(hash, FSP_SHA256_LEN, name);
    strcat(name, ".vmsm");
    return vms_ctx_cache_path(c, "seeds", name, out, len, err);
}

int vms_seed_remember(struct vms_ctx *c, const char *image, const char *manifest, fsp_error *err)
{
    char cached[PATH_MAX];
    int rc = seed_cache_path(c, image, cached, sizeof cached, err);
    if (rc)
        return rc;
    unlink(cached); /* a link keeps the manifest should its own cache entry go */
    if (link(manifest, cached) < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot note the scan of %s: %s", cached,
                        image, strerror(errno));
    return 0;
}

/* True when a cached scan skipped a stream that the target now needs. */
static bool cached_scan_lacks(const struct vms_loaded *m, const struct vms_seed_needs *needs)
{
    for (size_t i = 0; i < m->n_streams; i++) {
        const struct vms_lstream *s = &m->streams[i];
        if ((s->flags & FSP_STREAM_NOT_HASHED) && !(s->entry_flags & FSP_ENTRY_VOLATILE) &&
            size_needed(needs, s->size))
            return true;
    }
    return false;
}

static int scan_seed(struct vms_ctx *c, const char *path, const char *manifest,
                     const struct vms_seed_needs *needs, struct vms_trust *trust, fsp_error *err)
{
    struct want want = {.needs = needs, .trust = trust};
    static const struct fsp_sink lazy = {.volume = w_volume, .want_stream = w_want,
                                      .reuse_stream = w_reuse};
    return vms_ctx_scan_into(c, path, manifest, 0, &want.hooks, &lazy, err);
}

int vms_seed_load(struct vms_ctx *c, const char *path, const struct vms_seed_needs *needs,
                  struct vms_loaded **out, bool *rescanned, fsp_error *err)
{
    char manifest[PATH_MAX];
    struct vms_loaded *cached = NULL;
    fsp_error ignored;
    *rescanned = false;
    int rc = seed_cache_path(c, path, manifest, sizeof manifest, err);
    if (rc)
        return rc;
    if (vms_loaded_read(manifest, &cached, &ignored) == 0 && !cached_scan_lacks(cached, needs)) {
        *out = cached;
        return 0;
    }
    struct vms_trust trust;
    bool trusting = cached && vms_trust_init(&trust, cached) == 0;
    if (cached && !trusting)
        vms_loaded_free(cached);
    *rescanned = true;
    rc = scan_seed(c, path, manifest, needs, trusting ? &trust : NULL, err);
    if (trusting)
        vms_trust_free(&trust);
    return rc ? rc : vms_loaded_read(manifest, out, err);
}

/* ---- the index -------------------------------------------------------------- */

static int add_loc(struct vms_seed_index *ix, const uint8_t hash[FSP_SHA256_LEN], struct vms_seed_loc loc)
{
    if (vms_grow(&ix->locs, &ix->cap_locs, ix->n_locs + 1, sizeof *ix->locs))
        return -ENOMEM;
    int rc = vms_hashmap_put(&ix->by_hash, hash, ix->n_locs);
    if (rc == 1)
        ix->locs[ix->n_locs++] = loc;
    return rc < 0 ? rc : 0;
}

static bool readable_stream(const struct vms_lstream *s)
{
    /* Streams without extents (resident, compressed) cannot be read from the
     * seed's blocks; holes and unwritten extents are fine. */
    return !(s->flags & (FSP_STREAM_UNREADABLE | FSP_STREAM_NOT_HASHED | FSP_STREAM_COMPRESSED |
                         FSP_STREAM_ENCRYPTED | FSP_STREAM_RESIDENT)) &&
           !(s->entry_flags & (FSP_ENTRY_VOLATILE | FSP_ENTRY_HARDLINK)) && s->size;
}

static int index_streams(struct vms_seed_index *ix, uint32_t seed, const struct vms_loaded *m)
{
    for (size_t i = 0; i < m->n_streams; i++) {
        const struct vms_lstream *s = &m->streams[i];
        if (!readable_stream(s))
            continue;
        int rc = 0;
        if (s->size < FSP_CHUNK_MIN_STREAM)
            rc = add_loc(ix, s->sha256, (struct vms_seed_loc){seed, VMS_LOC_STREAM, i, 0, s->size});
        for (size_t k = 0; k < s->n_chunks && !rc; k++) {
            const struct fsp_chunk *ch = &m->chunks[s->first_chunk + k];
            rc = add_loc(ix, ch->sha256,
                         (struct vms_seed_loc){seed, VMS_LOC_STREAM, i, ch->offset, ch->length});
        }
        if (rc)
            return rc;
    }
    return 0;
}

static int index_pieces(struct vms_seed_index *ix, uint32_t seed, const struct vms_loaded *m)
{
    for (size_t r = 0; r < m->n_runs; r++) {
        const struct vms_lrun *run = &m->runs[r];
        for (size_t p = 0; p < run->n_hashes; p++) {
            uint64_t off = (uint64_t)p * FSP_PIECE_SIZE;
            uint64_t len = run->length - off < FSP_PIECE_SIZE ? run->length - off : FSP_PIECE_SIZE;
            int rc = add_loc(ix, m->hashes[run->first_hash + p],
                             (struct vms_seed_loc){seed, VMS_LOC_IMAGE, 0, run->offset + off, len});
            if (rc)
                return rc;
        }
    }
    return 0;
}

int vms_seed_index_add(struct vms_seed_index *ix, const char *path, struct vms_loaded *m)
{
    if (vms_grow(&ix->seeds, &ix->cap_seeds, ix->n_seeds + 1, sizeof *ix->seeds))
        return -ENOMEM;
    uint32_t seed = (uint32_t)ix->n_seeds++;
    ix->seeds[seed] = (struct vms_seed){.path = path, .m = m, .share = {.path = path, .fd = -1}};
    int rc = index_streams(ix, seed, m);
    return rc ? rc : index_pieces(ix, seed, m);
}

const struct vms_seed_loc *vms_seed_find(const struct vms_seed_index *ix, const uint8_t hash[FSP_SHA256_LEN])
{
    uint64_t *i = vms_hashmap_get(&ix->by_hash, hash);
    return i ? &ix->locs[*i] : NULL;
}

static void close_seed(struct vms_seed *seed)
{
    fsp_source_close(seed->src);
    seed->src = NULL;
    if (seed->share.fd >= 0)
        close(seed->share.fd);
    seed->share.fd = -1;
}

void vms_seed_index_close_images(struct vms_seed_index *ix)
{
    for (size_t i = 0; i < ix->n_seeds; i++)
        close_seed(&ix->seeds[i]);
}

void vms_seed_index_free(struct vms_seed_index *ix)
{
    for (size_t i = 0; i < ix->n_seeds; i++) {
        close_seed(&ix->seeds[i]);
        vms_loaded_free(ix->seeds[i].m);
    }
    free(ix->seeds);
    free(ix->locs);
    vms_hashmap_free(&ix->by_hash);
    memset(ix, 0, sizeof *ix);
}

/* ---- reading from a seed ------------------------------------------------------ */

/* The part [*LO, *HI) of stream bytes [OFF, END) that extent X holds as
 * written data (within S's valid size); false when there is none. */
static bool clip_extent(const struct vms_lstream *s, const struct fsp_extent *x, uint64_t off,
                        uint64_t end, uint64_t *lo, uint64_t *hi)
{
    *lo = x->logical > off ? x->logical : off;
    *hi = x->logical + x->length < end ? x->logical + x->length : end;
    if (*hi > s->valid_size)
        *hi = s->valid_size;
    return *lo < *hi && !(x->flags & FSP_EXT_UNWRITTEN);
}

int vms_stream_pread(fsp_source *src, const struct vms_loaded *m, const struct vms_lstream *s,
                     uint64_t off, uint64_t len, uint8_t *out, fsp_error *err)
{
    memset(out, 0, len);
    uint64_t end = off + len;
    for (size_t i = 0; i < s->n_extents; i++) {
        const struct fsp_extent *x = &m->extents[s->first_extent + i];
        uint64_t lo, hi;
        if (!clip_extent(s, x, off, end, &lo, &hi))
            continue;
        int rc = fsp_source_pread(src, out + (lo - off), hi - lo, x->physical + (lo - x->logical), err);
        if (rc)
            return rc;
    }
    return 0;
}

/* Opens the seed's image and, when it is a raw regular file, the file
 * itself too, for sharing its blocks (a failure there only means copying). */
static int open_seed(struct vms_seed *seed, fsp_error *err)
{
    struct stat st;
    int rc = vms_written_open(seed->path, &seed->src, err);
    if (rc || strcmp(fsp_source_format(seed->src), "raw"))
        return rc;
    seed->share.fd = open(seed->path, O_RDONLY | O_CLOEXEC);
    if (seed->share.fd >= 0 && (fstat(seed->share.fd, &st) < 0 || !S_ISREG(st.st_mode))) {
        close(seed->share.fd);
        seed->share.fd = -1;
    }
    return 0;
}

int vms_seed_read(struct vms_seed_index *ix, const struct vms_seed_loc *loc,
                  const uint8_t hash[FSP_SHA256_LEN], uint8_t *out, fsp_error *err)
{
    struct vms_seed *seed = &ix->seeds[loc->seed];
    int rc = seed->src ? 0 : open_seed(seed, err);
    if (rc)
        return rc;
    if (loc->kind == VMS_LOC_IMAGE)
        rc = fsp_source_pread(seed->src, out, loc->len, loc->offset, err);
    else
        rc = vms_stream_pread(seed->src, seed->m, &seed->m->streams[loc->stream], loc->offset,
                              loc->len, out, err);
    if (rc)
        return rc;
    uint8_t actual[FSP_SHA256_LEN];
    unsigned int hl = sizeof actual;
    EVP_Digest(out, loc->len, actual, &hl, EVP_sha256(), NULL);
    if (memcmp(actual, hash, FSP_SHA256_LEN))
        return fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG, "%s: seed content changed since it was indexed",
                        seed->path);
    return 0;
}

/* The seed's file offset of image bytes [OFF, OFF+LEN), or -1. */
static int64_t file_offset(const struct vms_seed *seed, uint64_t off, uint64_t len)
{
    return seed->share.fd >= 0 && off + len <= fsp_source_size(seed->src) ? (int64_t)off : -1;
}

/* Stream bytes [BASE+OFF, BASE+OFF+LEN) of S, the piece's offsets counted
 * from BASE (where the object starts in the stream). */
static int stream_pieces(struct vms_seed *seed, const struct vms_lstream *s, uint64_t base,
                         uint64_t off, uint64_t len, vms_seed_piece_cb piece, void *ctx)
{
    uint64_t at = base + off, end = at + len;
    int rc = 0;
    for (size_t i = 0; i < s->n_extents && !rc; i++) {
        const struct fsp_extent *x = &seed->m->extents[s->first_extent + i];
        uint64_t lo, hi;
        if (!clip_extent(s, x, at, end, &lo, &hi))
            continue;
        if (lo > at)
            rc = piece(ctx, seed, at - base, -1, lo - at);
        if (!rc)
            rc = piece(ctx, seed, lo - base,
                       file_offset(seed, x->physical + (lo - x->logical), hi - lo), hi - lo);
        at = hi;
    }
    return !rc && at < end ? piece(ctx, seed, at - base, -1, end - at) : rc;
}

int vms_seed_pieces(struct vms_seed_index *ix, const struct vms_seed_loc *loc, uint64_t off,
                    uint64_t len, vms_seed_piece_cb piece, void *ctx)
{
    struct vms_seed *seed = &ix->seeds[loc->seed];
    if (loc->kind == VMS_LOC_IMAGE)
        return piece(ctx, seed, off, file_offset(seed, loc->offset + off, len), len);
    return stream_pieces(seed, &seed->m->streams[loc->stream], loc->offset, off, len, piece, ctx);
}

/* ---- what a target needs ----------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int vms_seed_needs_of(const struct vms_loaded *t, struct vms_seed_needs *needs, uint64_t **sizes)
{
    size_t n = 0;
    *sizes = malloc((t->n_streams + 1) * sizeof **sizes);
    if (!*sizes)
        return -ENOMEM;
    for (size_t i = 0; i < t->n_streams; i++) {
        const struct vms_lstream *s = &t->streams[i];
        if (s->n_chunks)
            needs->chunked = true;
        else if (s->size)
            (*sizes)[n++] = s->size;
    }
    qsort(*sizes, n, sizeof **sizes, cmp_u64);
    size_t unique = 0;
    for (size_t i = 0; i < n; i++)
        if (!unique || (*sizes)[unique - 1] != (*sizes)[i])
            (*sizes)[unique++] = (*sizes)[i];
    needs->sizes = *sizes;
    needs->n_sizes = unique;
    return 0;
}
