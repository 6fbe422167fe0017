/* The manifest file: a writer that is an fsp_sink, and a reader that replays a
 * file into any fsp_sink after checking every record (see vmsync.h).
 *
 * Payloads, field by field:
 *   image:   size, format, table, n_volumes
 *   volume:  index, start, length, fs_kind, block_size, fs_length, fs_type,
 *            fs_label, fs_uuid, part_type, part_name, part_uuid
 *   entry:   volume, ino, path, type, flags, mode, uid, gid, nlink, size,
 *            atime, mtime, ctime, btime, attributes,
 *            generation, rdev, symlink, reparse_tag, reparse, security
 *            (the number of a security record, 0 for none), dos_name, xattrs (count; name, value), streams (count; name, size,
 *            valid_size, flags, sha256, extents (count; logical, physical, length, flags),
 *            chunks (count; length, sha256; offsets follow from the lengths))
 *   warning: volume, path, message
 *   layout:  offset, length, kind, volume; file: entry_seq, stream,
 *            stream_offset (the stream's hash and size come from its entry);
 *            raw: count, hashes
 *   end:     entries, allocated, file, raw, zero, warnings, digest,
 *            body_sha256 (of all body bytes before this record)
 *   Entries are numbered 0, 1, ... in file order.  Three fields are coded
 *   against the previous entry, which keeps NTFS's 100 ns times and long paths
 *   small: ino as an svarint difference; path as the length of the prefix it
 *   shares with the previous path, then the rest as a string; each time as the
 *   svarint differences of its seconds and nanoseconds from the same time of
 *   the previous entry.  Extent physical offsets are svarint differences from
 *   the end of the previous extent in the file; layout run offsets are the gap
 *   after the previous run (runs are sorted and never overlap, so gaps are
 *   never negative), and a FILE run's entry is an svarint difference from the
 *   previous FILE run's.
 *   security: number (1, 2, ... in order), descriptor bytes.  NTFS volumes
 *            share a few descriptors among all their files, so each is written
 *            once, before the first entry that uses it.
 */
#include "base/codec.h"
#include "base/fileio.h"
#include "manifest/delta.h"
#include "manifest/loaded.h"
#include "vmsync.h"
#include "manifest/written.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

enum tag { TAG_IMAGE = 1, TAG_VOLUME, TAG_ENTRY, TAG_WARNING, TAG_LAYOUT, TAG_END, TAG_SECURITY };

#define HEADER_LEN 16
#define MAX_PAYLOAD (64u << 20)
#define MAX_STR 4096
#define MAX_BLOB (1u << 20)
#define MAX_SECURITY_BYTES (64u << 20) /* all descriptors of one manifest */
#define ZSTD_LEVEL 6

/* ---- writer ------------------------------------------------------------ */

/* What the previous entry's fields were: the base of the delta coding. */
struct entry_base {
    uint64_t ino;
    uint64_t extent_end;  /* physical end of the previous extent written */
    uint64_t run_end;     /* end of the previous layout run */
    uint64_t run_entry;   /* entry of the previous FILE run */
    struct fsp_time times[4]; /* atime, mtime, ctime, btime */
    char *path;
};

struct vms_manifest_writer {
    struct fsp_sink sink;
    char *path, *tmp_path;
    int fd;
    ZSTD_CCtx *zc;
    EVP_MD_CTX *body_hash;
    struct vms_wbuf rec, out;
    struct vms_hashmap security_ids; /* descriptor SHA-256 -> its number */
    struct entry_base base;
    fsp_error err; /* first write failure, reported at commit */
    bool failed;
};

static int compress_out(vms_manifest_writer *w, const void *src, size_t len, ZSTD_EndDirective end)
{
    ZSTD_inBuffer in = {src, len, 0};
    for (;;) {
        if (w->out.cap < ZSTD_CStreamOutSize()) {
            vms_wbuf_free(&w->out);
            w->out.p = malloc(ZSTD_CStreamOutSize());
            if (!w->out.p)
                return -ENOMEM;
            w->out.cap = ZSTD_CStreamOutSize();
        }
        ZSTD_outBuffer out = {w->out.p, w->out.cap, 0};
        size_t left = ZSTD_compressStream2(w->zc, &out, &in, end);
        if (ZSTD_isError(left))
            return -EIO;
        int rc = vms_write_all(w->fd, w->out.p, out.pos);
        if (rc < 0)
            return rc;
        if (end == ZSTD_e_end ? left == 0 : in.pos == in.size)
            return 0;
    }
}

/* Frames the record in w->rec and sends it through the compressor. */
static int put_record(vms_manifest_writer *w, enum tag tag)
{
    if (w->failed)
        return -EIO;
    if (w->rec.failed) {
        w->failed = true;
        return fsp_fail(&w->err, FSP_EK_NOMEM, -ENOMEM, "%s: out of memory", w->tmp_path);
    }
    uint8_t head[5] = {(uint8_t)tag};
    uint32_t len = (uint32_t)w->rec.len;
    for (int i = 0; i < 4; i++)
        head[1 + i] = (uint8_t)(len >> (8 * i));
    EVP_DigestUpdate(w->body_hash, head, sizeof head);
    EVP_DigestUpdate(w->body_hash, w->rec.p, w->rec.len);
    int rc = w->rec.len > MAX_PAYLOAD ? -EFBIG : compress_out(w, head, sizeof head, ZSTD_e_continue);
    if (!rc)
        rc = compress_out(w, w->rec.p, w->rec.len, ZSTD_e_continue);
    w->rec.len = 0;
    if (rc < 0) {
        w->failed = true;
        fsp_fail(&w->err, FSP_EK_IO, rc, "%s: cannot write: %s", w->tmp_path, strerror(-rc));
    }
    return rc;
}

static int w_image(void *ctx, const struct fsp_image_info *i)
{
    vms_manifest_writer *w = ctx;
    vms_put_varint(&w->rec, i->size);
    vms_put_str(&w->rec, i->format);
    vms_put_str(&w->rec, i->table);
    vms_put_varint(&w->rec, i->n_volumes);
    return put_record(w, TAG_IMAGE);
}

static int w_volume(void *ctx, const struct fsp_volume_info *v)
{
    vms_manifest_writer *w = ctx;
    struct vms_wbuf *b = &w->rec;
    vms_put_varint(b, v->index);
    vms_put_varint(b, v->start);
    vms_put_varint(b, v->length);
    vms_put_varint(b, v->fs_kind);
    vms_put_varint(b, v->block_size);
    vms_put_varint(b, v->fs_length);
    const char *strs[] = {v->fs_type, v->fs_label, v->fs_uuid, v->part_type, v->part_name, v->part_uuid};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        vms_put_str(b, strs[i]);
    return put_record(w, TAG_VOLUME);
}

static void put_time(struct vms_wbuf *b, const struct fsp_time *t, struct fsp_time *base)
{
    /* Differences wrap in unsigned arithmetic, so no value can overflow. */
    vms_put_svarint(b, (int64_t)((uint64_t)t->sec - (uint64_t)base->sec));
    vms_put_svarint(b, (int64_t)t->nsec - (int64_t)base->nsec);
    *base = *t;
}

static size_t shared_prefix(const char *a, const char *b)
{
    size_t n = 0;
    while (a && a[n] && a[n] == b[n])
        n++;
    return n;
}

static int put_entry_keys(struct vms_wbuf *b, const struct fsp_entry *e, struct entry_base *base)
{
    vms_put_svarint(b, (int64_t)(e->ino - base->ino));
    base->ino = e->ino;
    size_t shared = shared_prefix(base->path, e->path);
    vms_put_varint(b, shared);
    vms_put_str(b, e->path + shared);
    char *copy = strdup(e->path);
    if (!copy)
        return -ENOMEM;
    free(base->path);
    base->path = copy;
    return 0;
}

static void put_stream(struct vms_wbuf *b, const struct fsp_stream *st, struct entry_base *base)
{
    vms_put_str(b, st->name);
    vms_put_varint(b, st->size);
    vms_put_varint(b, st->valid_size);
    vms_put_varint(b, st->flags);
    vms_put_raw(b, st->sha256, FSP_SHA256_LEN);
    vms_put_varint(b, st->n_extents);
    for (uint32_t i = 0; i < st->n_extents; i++) {
        const struct fsp_extent *x = &st->extents[i];
        vms_put_varint(b, x->logical);
        vms_put_svarint(b, (int64_t)(x->physical - base->extent_end));
        vms_put_varint(b, x->length);
        base->extent_end = x->physical + x->length;
        vms_put_varint(b, x->flags);
    }
    vms_put_varint(b, st->n_chunks);
    for (uint32_t i = 0; i < st->n_chunks; i++) {
        vms_put_varint(b, st->chunks[i].length);
        vms_put_raw(b, st->chunks[i].sha256, FSP_SHA256_LEN);
    }
}

/* The number of E's security descriptor, writing its record the first time. */
static int security_number(vms_manifest_writer *w, const struct fsp_entry *e, uint64_t *number)
{
    *number = 0;
    if (!e->security_len)
        return 0;
    uint8_t id[FSP_SHA256_LEN];
    vms_sha256(e->security, e->security_len, id);
    int rc = vms_hashmap_put(&w->security_ids, id, w->security_ids.keys.n + 1);
    if (rc < 0)
        return rc;
    *number = *vms_hashmap_get(&w->security_ids, id);
    if (rc == 0)
        return 0;
    vms_put_varint(&w->rec, *number);
    vms_put_bytes(&w->rec, e->security, e->security_len);
    return put_record(w, TAG_SECURITY);
}

static int w_entry(void *ctx, uint64_t seq, const struct fsp_entry *e)
{
    vms_manifest_writer *w = ctx;
    struct vms_wbuf *b = &w->rec;
    uint64_t security;
    int rc = security_number(w, e, &security);
    if (rc)
        return rc;
    vms_put_varint(b, e->volume);
    if (put_entry_keys(b, e, &w->base))
        return -ENOMEM;
    vms_put_varint(b, e->type);
    vms_put_varint(b, e->flags);
    vms_put_varint(b, e->mode);
    vms_put_varint(b, e->uid);
    vms_put_varint(b, e->gid);
    vms_put_varint(b, e->nlink);
    vms_put_varint(b, e->size);
    put_time(b, &e->atime, &w->base.times[0]);
    put_time(b, &e->mtime, &w->base.times[1]);
    put_time(b, &e->ctime, &w->base.times[2]);
    put_time(b, &e->btime, &w->base.times[3]);
    vms_put_varint(b, e->attributes);
    vms_put_varint(b, e->generation);
    vms_put_varint(b, e->rdev);
    vms_put_str(b, e->symlink);
    vms_put_varint(b, e->reparse_tag);
    vms_put_bytes(b, e->reparse, e->reparse_len);
    vms_put_varint(b, security);
    vms_put_str(b, e->dos_name);
    vms_put_varint(b, e->n_xattrs);
    for (uint32_t i = 0; i < e->n_xattrs; i++) {
        vms_put_str(b, e->xattrs[i].name);
        vms_put_bytes(b, e->xattrs[i].value ? e->xattrs[i].value : (const uint8_t *)"",
                      e->xattrs[i].len);
    }
    vms_put_varint(b, e->n_streams);
    for (uint32_t i = 0; i < e->n_streams; i++)
        put_stream(b, &e->streams[i], &w->base);
    return put_record(w, TAG_ENTRY);
}

static int w_warning(void *ctx, uint32_t volume, const char *path, const char *msg)
{
    vms_manifest_writer *w = ctx;
    vms_put_varint(&w->rec, volume);
    vms_put_str(&w->rec, path);
    vms_put_str(&w->rec, msg);
    return put_record(w, TAG_WARNING);
}

static int w_layout(void *ctx, const struct fsp_layout_run *run)
{
    vms_manifest_writer *w = ctx;
    struct vms_wbuf *b = &w->rec;
    vms_put_varint(b, run->offset - w->base.run_end);
    vms_put_varint(b, run->length);
    vms_put_varint(b, run->kind);
    vms_put_varint(b, run->volume);
    w->base.run_end = run->offset + run->length;
    if (run->kind == FSP_L_FILE) {
        vms_put_svarint(b, (int64_t)(run->entry_seq - w->base.run_entry));
        w->base.run_entry = run->entry_seq;
        vms_put_varint(b, run->stream);
        vms_put_varint(b, run->stream_offset);
    } else if (run->kind == FSP_L_RAW) {
        vms_put_varint(b, run->n_hashes);
        vms_put_raw(b, run->hashes, (size_t)run->n_hashes * FSP_SHA256_LEN);
    }
    return put_record(w, TAG_LAYOUT);
}

static int w_done(void *ctx, const struct fsp_summary *sum)
{
    vms_manifest_writer *w = ctx;
    struct vms_wbuf *b = &w->rec;
    vms_put_varint(b, sum->entries);
    vms_put_varint(b, sum->allocated_bytes);
    vms_put_varint(b, sum->file_bytes);
    vms_put_varint(b, sum->raw_bytes);
    vms_put_varint(b, sum->zero_bytes);
    vms_put_varint(b, sum->warnings);
    vms_put_raw(b, sum->digest, FSP_SHA256_LEN);
    /* The body hash covers everything before this record, so it is computed
     * before the record itself goes into it. */
    EVP_MD_CTX *copy = EVP_MD_CTX_new();
    uint8_t body[FSP_SHA256_LEN];
    unsigned int len = sizeof body;
    if (!copy || !EVP_MD_CTX_copy_ex(copy, w->body_hash) || !EVP_DigestFinal_ex(copy, body, &len)) {
        EVP_MD_CTX_free(copy);
        return -ENOMEM;
    }
    EVP_MD_CTX_free(copy);
    vms_put_raw(b, body, sizeof body);
    return put_record(w, TAG_END);
}

static char *temp_path_for(const char *path)
{
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (tmp)
        snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    return tmp;
}

static void fill_header(uint8_t header[HEADER_LEN])
{
    memset(header, 0, HEADER_LEN);
    memcpy(header, VMS_MANIFEST_MAGIC, 8);
    header[8] = VMS_MANIFEST_VERSION;
    header[10] = HEADER_LEN;
}

int vms_manifest_writer_open(const char *path, vms_manifest_writer **out, fsp_error *err)
{
    vms_manifest_writer *w = calloc(1, sizeof *w);
    if (!w)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    w->fd = -1;
    w->path = strdup(path);
    w->tmp_path = temp_path_for(path);
    w->zc = ZSTD_createCCtx();
    w->body_hash = EVP_MD_CTX_new();
    if (!w->path || !w->tmp_path || !w->zc || !w->body_hash ||
        !EVP_DigestInit_ex(w->body_hash, EVP_sha256(), NULL)) {
        vms_manifest_writer_abort(w);
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    }
    ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel, ZSTD_LEVEL);
    /* Compress on the second core while the scan hashes on the first.  A zstd
     * built without threads refuses; then it compresses inline. */
    ZSTD_CCtx_setParameter(w->zc, ZSTD_c_nbWorkers, 1);
    /* Small jobs keep the worker's buffers, and so the scan's memory, flat. */
    ZSTD_CCtx_setParameter(w->zc, ZSTD_c_jobSize, 2 << 20);
    w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        int rc = -errno;
        fsp_fail(err, FSP_EK_OPEN, rc, "%s: cannot create: %s", w->tmp_path, strerror(errno));
        vms_manifest_writer_abort(w);
        return rc;
    }
    uint8_t header[HEADER_LEN];
    fill_header(header);
    int rc = vms_write_all(w->fd, header, sizeof header);
    if (rc < 0) {
        fsp_fail(err, FSP_EK_IO, rc, "%s: cannot write: %s", w->tmp_path, strerror(-rc));
        vms_manifest_writer_abort(w);
        return rc;
    }
    w->sink = (struct fsp_sink){.image = w_image, .volume = w_volume, .entry = w_entry,
                                .warning = w_warning, .layout = w_layout, .done = w_done, .ctx = w};
    *out = w;
    return 0;
}

const struct fsp_sink *vms_manifest_writer_sink(vms_manifest_writer *w) { return &w->sink; }

int vms_manifest_writer_commit(vms_manifest_writer *w, fsp_error *err)
{
    int rc = w->failed ? w->err.code : compress_out(w, NULL, 0, ZSTD_e_end);
    if (w->failed)
        *err = w->err;
    else if (rc < 0 || fsync(w->fd) < 0 || close(w->fd) < 0) {
        rc = rc < 0 ? rc : -errno;
        fsp_fail(err, FSP_EK_IO, rc, "%s: cannot write: %s", w->tmp_path, strerror(-rc));
    } else {
        w->fd = -1;
        if (rename(w->tmp_path, w->path) < 0 || vms_fsync_parent(w->path) < 0) {
            rc = -errno;
            fsp_fail(err, FSP_EK_IO, rc, "%s: cannot rename into place: %s", w->path,
                     strerror(errno));
        }
    }
    vms_manifest_writer_abort(w);
    return rc;
}

void vms_manifest_writer_abort(vms_manifest_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0) {
        close(w->fd);
        unlink(w->tmp_path);
    }
    ZSTD_freeCCtx(w->zc);
    EVP_MD_CTX_free(w->body_hash);
    vms_hashmap_free(&w->security_ids);
    free(w->base.path);
    vms_wbuf_free(&w->rec);
    vms_wbuf_free(&w->out);
    free(w->path);
    free(w->tmp_path);
    free(w);
}

int vms_manifest_encode(const uint8_t *decoded, size_t len, const char *path, fsp_error *err)
{
    uint8_t header[HEADER_LEN];
    fill_header(header);
    if (len < HEADER_LEN || memcmp(decoded, header, HEADER_LEN))
        return fsp_fail(err, FSP_EK_FORMAT, -EPROTO, "%s: not a manifest of version %u",
                        path, VMS_MANIFEST_VERSION);
    vms_manifest_writer *w;
    int rc = vms_manifest_writer_open(path, &w, err);
    if (rc)
        return rc;
    /* Fed as the writer's records are, through the same compressor: the
     * file comes out byte for byte as the scan wrote it, with this zstd. */
    rc = compress_out(w, decoded + HEADER_LEN, len - HEADER_LEN, ZSTD_e_continue);
    if (rc < 0) {
        w->failed = true;
        fsp_fail(&w->err, FSP_EK_IO, rc, "%s: cannot write: %s", w->tmp_path, strerror(-rc));
    }
    return vms_manifest_writer_commit(w, err);
}

/* ---- reader ------------------------------------------------------------ */

struct stream_ref {
    uint64_t size;
    uint8_t sha256[FSP_SHA256_LEN];
};

struct reader {
    const char *path;
    FILE *f;
    ZSTD_DCtx *dz;
    uint8_t *in;
    ZSTD_inBuffer zin;
    bool input_done;
    EVP_MD_CTX *body_hash;
    const struct fsp_sink *sink;
    fsp_error *err;
    uint64_t record_no;
    uint64_t image_size;
    bool seen_image, seen_end;
    uint32_t n_volumes;
    struct fsp_volume_info *volumes;
    /* per entry: index of its first stream in STREAMS, so layout runs can be
     * checked against the stream they name and carry its hash */
    uint64_t n_entries;
    uint32_t *first_stream;
    uint32_t *entry_streams;
    struct stream_ref *streams;
    size_t n_streams, cap_streams, cap_entries;
    uint64_t layout_end;
    struct entry_base base;
    struct fsp_entry security; /* descriptors by number: xattrs[i] holds number i+1 */
    size_t security_bytes;
    fsp_digest *digest;
    struct fsp_summary computed;
};

static int corrupt(struct reader *r, const char *what)
{
    return fsp_fail(r->err, FSP_EK_CORRUPT, -EBADMSG, "%s: record %llu: %s", r->path,
                    (unsigned long long)r->record_no, what);
}

/* Reads exactly LEN decompressed bytes; returns 1, 0 at a clean end, or <0. */
static int read_body(struct reader *r, uint8_t *out, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ZSTD_outBuffer zout = {out + got, len - got, 0};
        if (r->zin.pos == r->zin.size && !r->input_done) {
            size_t n = fread(r->in, 1, ZSTD_DStreamInSize(), r->f);
            if (ferror(r->f))
                return fsp_fail(r->err, FSP_EK_IO, -EIO, "%s: read error", r->path);
            r->input_done = n == 0;
            r->zin = (ZSTD_inBuffer){r->in, n, 0};
        }
        size_t ret = ZSTD_decompressStream(r->dz, &zout, &r->zin);
        if (ZSTD_isError(ret))
            return fsp_fail(r->err, FSP_EK_CORRUPT, -EBADMSG, "%s: compressed body is corrupt: %s",
                            r->path, ZSTD_getErrorName(ret));
        got += zout.pos;
        if (!zout.pos && r->input_done && r->zin.pos == r->zin.size) {
            if (!got)
                return 0;
            return fsp_fail(r->err, FSP_EK_CORRUPT, -EBADMSG, "%s: truncated in record %llu",
                            r->path, (unsigned long long)r->record_no);
        }
    }
    return 1;
}

static struct fsp_time get_time(struct vms_rbuf *b, struct fsp_time *base)
{
    struct fsp_time t;
    t.sec = (int64_t)((uint64_t)base->sec + (uint64_t)vms_get_svarint(b));
    int64_t ns = (int64_t)base->nsec + vms_get_svarint(b);
    if (ns < 0 || ns >= 1000000000)
        b->bad = true;
    t.nsec = b->bad ? 0 : (uint32_t)ns;
    *base = t;
    return t;
}

/* The inverse of put_entry_keys; the path is checked by the caller. */
static void get_entry_keys(struct vms_rbuf *b, struct fsp_entry *e, struct entry_base *base)
{
    e->ino = base->ino + (uint64_t)vms_get_svarint(b);
    base->ino = e->ino;
    uint64_t shared = vms_get_varint(b);
    char *rest = vms_get_str(b, MAX_STR);
    size_t base_len = base->path ? strlen(base->path) : 0;
    if (!rest || shared > base_len || shared + strlen(rest) > MAX_STR) {
        b->bad = true;
        free(rest);
        return;
    }
    e->path = malloc(shared + strlen(rest) + 1);
    if (!e->path) {
        b->bad = true;
        free(rest);
        return;
    }
    if (shared) /* the first entry has no base path */
        memcpy(e->path, base->path, shared);
    strcpy(e->path + shared, rest);
    free(rest);
    free(base->path);
    base->path = strdup(e->path);
    if (!base->path)
        b->bad = true;
}

/* Entry paths are absolute, and no component is empty, "." or "..": a manifest
 * must never lead a rebuild outside its volume. */
static bool path_is_safe(const char *p)
{
    if (!p || p[0] != '/')
        return false;
    if (!p[1])
        return true;
    for (const char *c = p + 1;;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (!n || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return false;
        if (!slash)
            return true;
        c = slash + 1;
    }
}

static void free_entry(struct fsp_entry *e)
{
    free(e->path);
    free(e->symlink);
    free(e->reparse);
    free(e->security);
    free(e->dos_name);
    for (uint32_t i = 0; i < e->n_xattrs; i++) {
        free(e->xattrs[i].name);
        free(e->xattrs[i].value);
    }
    free(e->xattrs);
    for (uint32_t i = 0; i < e->n_streams; i++) {
        free(e->streams[i].name);
        free(e->streams[i].extents);
        free(e->streams[i].chunks);
    }
    free(e->streams);
}

static const char *get_extents(struct vms_rbuf *b, struct fsp_stream *st, uint64_t image_size,
                               struct entry_base *base)
{
    st->n_extents = (uint32_t)vms_get_count(b, 4);
    st->extents = calloc(st->n_extents ? st->n_extents : 1, sizeof *st->extents);
    if (!st->extents)
        return "out of memory";
    uint64_t next_logical = 0;
    for (uint32_t i = 0; i < st->n_extents && !b->bad; i++) {
        struct fsp_extent *x = &st->extents[i];
        x->logical = vms_get_varint(b);
        x->physical = base->extent_end + (uint64_t)vms_get_svarint(b);
        x->length = vms_get_varint(b);
        base->extent_end = x->physical + x->length;
        x->flags = (uint32_t)vms_get_varint(b);
        if (x->logical < next_logical || x->length > image_size ||
            x->physical > image_size - x->length || x->logical + x->length < x->logical)
            return "an extent overlaps another or lies outside the image";
        next_logical = x->logical + x->length;
    }
    return NULL;
}

static const char *get_chunks(struct vms_rbuf *b, struct fsp_stream *st)
{
    st->n_chunks = (uint32_t)vms_get_count(b, 1 + FSP_SHA256_LEN);
    st->chunks = calloc(st->n_chunks ? st->n_chunks : 1, sizeof *st->chunks);
    if (!st->chunks)
        return "out of memory";
    uint64_t off = 0;
    for (uint32_t i = 0; i < st->n_chunks && !b->bad; i++) {
        uint64_t len = vms_get_varint(b);
        if (!len || len > (1u << 24))
            return "a chunk length is out of range";
        st->chunks[i].offset = off;
        st->chunks[i].length = (uint32_t)len;
        vms_get_raw(b, st->chunks[i].sha256, FSP_SHA256_LEN);
        off += len;
    }
    if (st->n_chunks && off != st->size)
        return "the chunks do not add up to the stream size";
    return NULL;
}

static const char *get_streams(struct vms_rbuf *b, struct fsp_entry *e, uint64_t image_size,
                               struct entry_base *base)
{
    e->n_streams = (uint32_t)vms_get_count(b, 3 + FSP_SHA256_LEN);
    e->streams = calloc(e->n_streams ? e->n_streams : 1, sizeof *e->streams);
    if (!e->streams)
        return "out of memory";
    for (uint32_t i = 0; i < e->n_streams && !b->bad; i++) {
        struct fsp_stream *st = &e->streams[i];
        st->name = vms_get_str(b, MAX_STR);
        st->size = vms_get_varint(b);
        st->valid_size = vms_get_varint(b);
        st->flags = (uint32_t)vms_get_varint(b);
        if (st->valid_size > st->size)
            return "a stream's valid size is larger than its size";
        vms_get_raw(b, st->sha256, FSP_SHA256_LEN);
        const char *problem = get_extents(b, st, image_size, base);
        if (!problem)
            problem = get_chunks(b, st);
        if (problem)
            return problem;
    }
    return NULL;
}

static const char *get_entry_fields(struct reader *r, struct vms_rbuf *b, struct fsp_entry *e)
{
    e->volume = (uint32_t)vms_get_varint(b);
    get_entry_keys(b, e, &r->base);
    e->type = (uint8_t)vms_get_varint(b);
    e->flags = (uint32_t)vms_get_varint(b);
    e->mode = (uint32_t)vms_get_varint(b);
    e->uid = (uint32_t)vms_get_varint(b);
    e->gid = (uint32_t)vms_get_varint(b);
    e->nlink = (uint32_t)vms_get_varint(b);
    e->size = vms_get_varint(b);
    e->atime = get_time(b, &r->base.times[0]);
    e->mtime = get_time(b, &r->base.times[1]);
    e->ctime = get_time(b, &r->base.times[2]);
    e->btime = get_time(b, &r->base.times[3]);
    e->attributes = (uint32_t)vms_get_varint(b);
    e->generation = vms_get_varint(b);
    e->rdev = vms_get_varint(b);
    e->symlink = vms_get_str(b, MAX_STR);
    e->reparse_tag = (uint32_t)vms_get_varint(b);
    e->reparse = vms_get_bytes(b, MAX_BLOB, &e->reparse_len);
    uint64_t security = vms_get_varint(b);
    e->dos_name = vms_get_str(b, MAX_STR);
    e->n_xattrs = (uint32_t)vms_get_count(b, 2);
    e->xattrs = calloc(e->n_xattrs ? e->n_xattrs : 1, sizeof *e->xattrs);
    if (!e->xattrs)
        return "out of memory";
    for (uint32_t i = 0; i < e->n_xattrs && !b->bad; i++) {
        e->xattrs[i].name = vms_get_str(b, MAX_STR);
        e->xattrs[i].value = vms_get_bytes(b, MAX_BLOB, &e->xattrs[i].len);
    }
    if (b->bad)
        return "malformed entry";
    if (!path_is_safe(e->path))
        return "an entry path is not a clean absolute path";
    if (e->type < FSP_T_REG || e->type > FSP_T_SOCK)
        return "unknown entry type";
    if (security > r->security.n_xattrs)
        return "an entry names a security descriptor that was not defined";
    if (security) {
        /* Shared with the reader's table: detached again before the entry is freed. */
        e->security = r->security.xattrs[security - 1].value;
        e->security_len = r->security.xattrs[security - 1].len;
    }
    return NULL;
}

static bool known_volume(const struct reader *r, uint32_t index)
{
    for (uint32_t i = 0; i < r->n_volumes; i++)
        if (r->volumes[i].index == index)
            return true;
    return false;
}

static int remember_streams(struct reader *r, const struct fsp_entry *e)
{
    if (r->n_entries == r->cap_entries) {
        size_t cap = r->cap_entries ? r->cap_entries * 2 : 1024;
        uint32_t *f = realloc(r->first_stream, cap * sizeof *f);
        if (f)
            r->first_stream = f;
        uint32_t *n = realloc(r->entry_streams, cap * sizeof *n);
        if (n)
            r->entry_streams = n;
        if (!f || !n)
            return -ENOMEM;
        r->cap_entries = cap;
    }
    if (r->n_streams + e->n_streams > r->cap_streams) {
        size_t cap = r->cap_streams ? r->cap_streams : 1024;
        while (cap < r->n_streams + e->n_streams)
            cap *= 2;
        struct stream_ref *s = realloc(r->streams, cap * sizeof *s);
        if (!s)
            return -ENOMEM;
        r->streams = s;
        r->cap_streams = cap;
    }
    r->first_stream[r->n_entries] = (uint32_t)r->n_streams;
    r->entry_streams[r->n_entries] = e->n_streams;
    for (uint32_t i = 0; i < e->n_streams; i++) {
        r->streams[r->n_streams].size = e->streams[i].size;
        memcpy(r->streams[r->n_streams++].sha256, e->streams[i].sha256, FSP_SHA256_LEN);
    }
    r->n_entries++;
    return 0;
}

static int sink_says(struct reader *r, int rc)
{
    if (!rc)
        return 0;
    if (r->err && !r->err->msg[0])
        fsp_fail(r->err, FSP_EK_CANCELLED, -ECANCELED, "%s: reading stopped", r->path);
    return rc < 0 ? rc : -ECANCELED;
}

static int read_entry(struct reader *r, struct vms_rbuf *b)
{
    struct fsp_entry e = {0};
    uint64_t seq = r->n_entries;
    const char *problem = get_entry_fields(r, b, &e);
    if (!problem)
        problem = get_streams(b, &e, r->image_size, &r->base);
    if (!problem && (b->bad || b->p != b->end))
        problem = "malformed entry";
    if (!problem && !known_volume(r, e.volume))
        problem = "an entry names an unknown volume";
    int rc = problem ? corrupt(r, problem) : remember_streams(r, &e);
    if (!rc && r->sink->entry)
        rc = sink_says(r, r->sink->entry(r->sink->ctx, seq, &e));
    e.security = NULL;
    free_entry(&e);
    return rc;
}

static int read_security(struct reader *r, struct vms_rbuf *b)
{
    struct fsp_entry *table = &r->security;
    uint64_t number = vms_get_varint(b);
    uint32_t len;
    uint8_t *sd = vms_get_bytes(b, MAX_BLOB, &len);
    const char *problem = NULL;
    if (b->bad || b->p != b->end || !sd)
        problem = "malformed security record";
    else if (number != (uint64_t)table->n_xattrs + 1)
        problem = "security records are out of sequence";
    else if (r->security_bytes + len > MAX_SECURITY_BYTES)
        problem = "the security descriptors exceed 64 MiB";
    struct fsp_xattr *grown = problem ? NULL : realloc(table->xattrs, (table->n_xattrs + 1) * sizeof *grown);
    if (!problem && !grown)
        problem = "out of memory";
    if (problem) {
        free(sd);
        return corrupt(r, problem);
    }
    table->xattrs = grown;
    table->xattrs[table->n_xattrs++] = (struct fsp_xattr){.name = NULL, .value = sd, .len = len};
    r->security_bytes += len;
    return 0;
}

static int read_image(struct reader *r, struct vms_rbuf *b)
{
    struct fsp_image_info i = {0};
    i.size = vms_get_varint(b);
    char *format = vms_get_str(b, 32), *table = vms_get_str(b, 32);
    i.format = format ? format : "";
    i.table = table ? table : "";
    uint64_t n_volumes = vms_get_varint(b);
    i.n_volumes = (uint32_t)n_volumes;
    int rc = 0;
    if (b->bad || b->p != b->end || r->seen_image || n_volumes > 4096)
        rc = corrupt(r, "malformed image record");
    r->seen_image = true;
    r->image_size = i.size;
    if (!rc && fsp_digest_new(i.size, &r->digest) < 0)
        rc = fsp_fail(r->err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    if (!rc && r->sink->image)
        rc = sink_says(r, r->sink->image(r->sink->ctx, &i));
    free(format);
    free(table);
    return rc;
}

static void copy_str(char *dst, size_t cap, char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
    free(src);
}

static int read_volume(struct reader *r, struct vms_rbuf *b)
{
    struct fsp_volume_info v = {0};
    v.index = (uint32_t)vms_get_varint(b);
    v.start = vms_get_varint(b);
    v.length = vms_get_varint(b);
    v.fs_kind = (uint8_t)vms_get_varint(b);
    v.block_size = (uint32_t)vms_get_varint(b);
    v.fs_length = vms_get_varint(b);
    copy_str(v.fs_type, sizeof v.fs_type, vms_get_str(b, MAX_STR));
    copy_str(v.fs_label, sizeof v.fs_label, vms_get_str(b, MAX_STR));
    copy_str(v.fs_uuid, sizeof v.fs_uuid, vms_get_str(b, MAX_STR));
    copy_str(v.part_type, sizeof v.part_type, vms_get_str(b, MAX_STR));
    copy_str(v.part_name, sizeof v.part_name, vms_get_str(b, MAX_STR));
    copy_str(v.part_uuid, sizeof v.part_uuid, vms_get_str(b, MAX_STR));
    if (b->bad || b->p != b->end || v.fs_kind > FSP_FS_NTFS)
        return corrupt(r, "malformed volume record");
    if (v.start > r->image_size || v.length > r->image_size - v.start || v.fs_length > v.length)
        return corrupt(r, "a volume lies outside the image");
    if (r->n_volumes >= 4096 || known_volume(r, v.index))
        return corrupt(r, "too many volumes, or a volume listed twice");
    struct fsp_volume_info *grown = realloc(r->volumes, (r->n_volumes + 1) * sizeof *grown);
    if (!grown)
        return fsp_fail(r->err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    r->volumes = grown;
    r->volumes[r->n_volumes++] = v;
    return r->sink->volume ? sink_says(r, r->sink->volume(r->sink->ctx, &v)) : 0;
}

static int read_warning(struct reader *r, struct vms_rbuf *b)
{
    uint32_t volume = (uint32_t)vms_get_varint(b);
    char *path = vms_get_str(b, MAX_STR), *msg = vms_get_str(b, MAX_STR);
    int rc = b->bad || b->p != b->end || !msg ? corrupt(r, "malformed warning record") : 0;
    r->computed.warnings++;
    if (!rc && r->sink->warning)
        rc = sink_says(r, r->sink->warning(r->sink->ctx, volume, path, msg));
    free(path);
    free(msg);
    return rc;
}

static const char *check_file_run(struct reader *r, struct fsp_layout_run *run)
{
    if (run->entry_seq >= r->n_entries || run->stream >= r->entry_streams[run->entry_seq])
        return "a layout run names an entry or stream that does not exist";
    const struct stream_ref *ref = &r->streams[r->first_stream[run->entry_seq] + run->stream];
    run->stream_size = ref->size;
    memcpy(run->stream_sha256, ref->sha256, FSP_SHA256_LEN);
    return NULL;
}

static void count_run(struct fsp_summary *sum, const struct fsp_layout_run *run)
{
    sum->allocated_bytes += run->length;
    if (run->kind == FSP_L_FILE)
        sum->file_bytes += run->length;
    else if (run->kind == FSP_L_RAW)
        sum->raw_bytes += run->length;
    else
        sum->zero_bytes += run->length;
}

static int read_layout(struct reader *r, struct vms_rbuf *b)
{
    struct fsp_layout_run run = {0};
    uint64_t gap = vms_get_varint(b);
    run.offset = r->layout_end + gap;
    run.length = vms_get_varint(b);
    run.kind = (uint8_t)vms_get_varint(b);
    run.volume = (uint32_t)vms_get_varint(b);
    uint8_t(*hashes)[FSP_SHA256_LEN] = NULL;
    const char *problem = NULL;
    if (run.kind == FSP_L_FILE) {
        run.entry_seq = r->base.run_entry + (uint64_t)vms_get_svarint(b);
        r->base.run_entry = run.entry_seq;
        run.stream = (uint32_t)vms_get_varint(b);
        run.stream_offset = vms_get_varint(b);
        problem = b->bad ? NULL : check_file_run(r, &run);
    } else if (run.kind == FSP_L_RAW) {
        run.n_hashes = (uint32_t)vms_get_count(b, FSP_SHA256_LEN);
        hashes = malloc(((size_t)run.n_hashes + 1) * FSP_SHA256_LEN);
        if (hashes)
            vms_get_raw(b, hashes, (size_t)run.n_hashes * FSP_SHA256_LEN);
        run.hashes = (const uint8_t(*)[FSP_SHA256_LEN])hashes;
        if (run.n_hashes != (run.length + FSP_PIECE_SIZE - 1) / FSP_PIECE_SIZE)
            problem = "a raw run's hash count does not match its length";
    } else if (run.kind != FSP_L_ZERO) {
        problem = "unknown layout kind";
    }
    if (!problem && (b->bad || b->p != b->end || (run.kind == FSP_L_RAW && !hashes)))
        problem = "malformed layout record";
    if (!problem && (!run.length || run.offset < gap || run.offset > r->image_size ||
                     run.length > r->image_size - run.offset))
        problem = "layout runs overlap, are out of order, or lie outside the image";
    int rc = problem ? corrupt(r, problem) : 0;
    if (!rc) {
        r->layout_end = run.offset + run.length;
        fsp_digest_add_run(r->digest, &run);
        count_run(&r->computed, &run);
        if (r->sink->layout)
            rc = sink_says(r, r->sink->layout(r->sink->ctx, &run));
    }
    free(hashes);
    return rc;
}

static int read_end(struct reader *r, struct vms_rbuf *b, const uint8_t body_hash[FSP_SHA256_LEN])
{
    struct fsp_summary sum = {0};
    uint8_t stored_body[FSP_SHA256_LEN];
    sum.entries = vms_get_varint(b);
    sum.allocated_bytes = vms_get_varint(b);
    sum.file_bytes = vms_get_varint(b);
    sum.raw_bytes = vms_get_varint(b);
    sum.zero_bytes = vms_get_varint(b);
    sum.warnings = vms_get_varint(b);
    vms_get_raw(b, sum.digest, FSP_SHA256_LEN);
    vms_get_raw(b, stored_body, FSP_SHA256_LEN);
    if (b->bad || b->p != b->end)
        return corrupt(r, "malformed end record");
    if (memcmp(stored_body, body_hash, FSP_SHA256_LEN))
        return corrupt(r, "the body checksum does not match: the file is damaged");
    if (sum.entries != r->n_entries || sum.allocated_bytes != r->computed.allocated_bytes)
        return corrupt(r, "the summary does not match the records");
    uint8_t digest[FSP_SHA256_LEN];
    fsp_digest_final(r->digest, digest);
    bool has_layout = r->computed.allocated_bytes != 0;
    if (has_layout && memcmp(digest, sum.digest, FSP_SHA256_LEN))
        return corrupt(r, "the canonical digest does not match the layout");
    r->seen_end = true;
    return r->sink->done ? sink_says(r, r->sink->done(r->sink->ctx, &sum)) : 0;
}

static int dispatch(struct reader *r, uint8_t tag, struct vms_rbuf *b, const uint8_t *body_hash)
{
    if (tag != TAG_IMAGE && !r->seen_image)
        return corrupt(r, "the first record is not the image record");
    switch (tag) {
    case TAG_IMAGE:
        return read_image(r, b);
    case TAG_VOLUME:
        return read_volume(r, b);
    case TAG_ENTRY:
        return read_entry(r, b);
    case TAG_WARNING:
        return read_warning(r, b);
    case TAG_LAYOUT:
        return read_layout(r, b);
    case TAG_END:
        return read_end(r, b, body_hash);
    case TAG_SECURITY:
        return read_security(r, b);
    default:
        return corrupt(r, "unknown record tag");
    }
}

static int read_records(struct reader *r)
{
    uint8_t *payload = NULL;
    int rc = 0;
    for (;;) {
        uint8_t head[5];
        rc = read_body(r, head, sizeof head);
        if (rc <= 0) {
            if (!rc && !r->seen_end)
                rc = fsp_fail(r->err, FSP_EK_CORRUPT, -EBADMSG,
                              "%s: the manifest ends without its end record (truncated?)", r->path);
            break;
        }
        if (r->seen_end) {
            rc = corrupt(r, "data after the end record");
            break;
        }
        uint32_t len = head[1] | head[2] << 8 | head[3] << 16 | (uint32_t)head[4] << 24;
        if (len > MAX_PAYLOAD) {
            rc = corrupt(r, "a record is larger than the 64 MiB limit");
            break;
        }
        uint8_t body_hash[FSP_SHA256_LEN];
        unsigned int hl = sizeof body_hash;
        EVP_MD_CTX *copy = EVP_MD_CTX_new();
        if (!copy || !EVP_MD_CTX_copy_ex(copy, r->body_hash) || !EVP_DigestFinal_ex(copy, body_hash, &hl)) {
            EVP_MD_CTX_free(copy);
            rc = fsp_fail(r->err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
            break;
        }
        EVP_MD_CTX_free(copy);
        free(payload);
        payload = malloc(len ? len : 1);
        if (!payload) {
            rc = fsp_fail(r->err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
            break;
        }
        if (len && (rc = read_body(r, payload, len)) <= 0) {
            if (!rc)
                rc = fsp_fail(r->err, FSP_EK_CORRUPT, -EBADMSG, "%s: truncated", r->path);
            break;
        }
        EVP_DigestUpdate(r->body_hash, head, sizeof head);
        EVP_DigestUpdate(r->body_hash, payload, len);
        struct vms_rbuf b = {payload, payload + len, false};
        if ((rc = dispatch(r, head[0], &b, body_hash)))
            break;
        r->record_no++;
    }
    free(payload);
    return rc;
}

static int check_header(struct reader *r)
{
    uint8_t h[HEADER_LEN];
    if (fread(h, 1, sizeof h, r->f) != sizeof h || memcmp(h, VMS_MANIFEST_MAGIC, 8))
        return fsp_fail(r->err, FSP_EK_FORMAT, -EBADMSG, "%s: not a vmsync manifest", r->path);
    unsigned version = h[8] | h[9] << 8, header_len = h[10] | h[11] << 8;
    if (version != VMS_MANIFEST_VERSION || header_len != HEADER_LEN)
        return fsp_fail(r->err, FSP_EK_FORMAT, -EPROTO,
                        "%s: manifest version %u is not supported (this vmsync reads %u)",
                        r->path, version, VMS_MANIFEST_VERSION);
    return 0;
}

int vms_manifest_read(const char *path, const struct fsp_sink *sink, fsp_error *err)
{
    struct reader r = {.path = path, .sink = sink, .err = err};
    if (!(r.f = fopen(path, "rbe")))
        return fsp_fail(err, FSP_EK_OPEN, -errno, "%s: cannot open: %s", path, strerror(errno));
    r.dz = ZSTD_createDCtx();
    r.in = malloc(ZSTD_DStreamInSize());
    r.body_hash = EVP_MD_CTX_new();
    int rc;
    if (!r.dz || !r.in || !r.body_hash || !EVP_DigestInit_ex(r.body_hash, EVP_sha256(), NULL))
        rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    else
        rc = check_header(&r);
    if (!rc)
        rc = read_records(&r);
    fclose(r.f);
    ZSTD_freeDCtx(r.dz);
    free(r.in);
    EVP_MD_CTX_free(r.body_hash);
    fsp_digest_free(r.digest);
    free_entry(&r.security);
    free(r.base.path);
    free(r.volumes);
    free(r.first_stream);
    free(r.entry_streams);
    free(r.streams);
    return rc;
}

/* Decompresses what is left of R's file after its header onto OUT, which
 * must stay within MAX bytes. */
static int decode_body(struct reader *r, size_t max, struct vms_wbuf *out)
{
    for (;;) {
        if (r->zin.pos == r->zin.size) {
            size_t n = fread(r->in, 1, ZSTD_DStreamInSize(), r->f);
            if (ferror(r->f))
                return fsp_fail(r->err, FSP_EK_IO, -EIO, "%s: read error", r->path);
            if (n == 0)
                return 0;
            r->zin = (ZSTD_inBuffer){r->in, n, 0};
        }
        uint8_t buf[1 << 16];
        ZSTD_outBuffer zout = {buf, sizeof buf, 0};
        size_t ret = ZSTD_decompressStream(r->dz, &zout, &r->zin);
        if (ZSTD_isError(ret))
            return fsp_fail(r->err, FSP_EK_CORRUPT, -EBADMSG, "%s: compressed body is corrupt: %s",
                            r->path, ZSTD_getErrorName(ret));
        if (out->len + zout.pos > max)
            return fsp_fail(r->err, FSP_EK_FORMAT, -EFBIG, "%s: decodes to more than %zu bytes",
                            r->path, max);
        vms_put_raw(out, buf, zout.pos);
    }
}

int vms_manifest_decode(const char *path, size_t max, struct vms_wbuf *out, fsp_error *err)
{
    struct reader r = {.path = path, .err = err};
    if (!(r.f = fopen(path, "rbe")))
        return fsp_fail(err, FSP_EK_OPEN, -errno, "%s: cannot open: %s", path, strerror(errno));
    r.dz = ZSTD_createDCtx();
    r.in = malloc(ZSTD_DStreamInSize());
    int rc = r.dz && r.in ? check_header(&r) : fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    if (!rc) {
        uint8_t header[HEADER_LEN];
        fill_header(header);
        vms_put_raw(out, header, sizeof header); /* check_header accepts only this one */
        rc = decode_body(&r, max, out);
    }
    if (!rc && out->failed)
        rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "%s: out of memory", path);
    fclose(r.f);
    ZSTD_freeDCtx(r.dz);
    free(r.in);
    return rc;
}

bool vms_is_manifest(const char *path)
{
    FILE *f = fopen(path, "rbe");
    char magic[8];
    bool yes = f && fread(magic, 1, sizeof magic, f) == sizeof magic &&
               !memcmp(magic, VMS_MANIFEST_MAGIC, sizeof magic);
    if (f)
        fclose(f);
    return yes;
}

int vms_load(const char *path, uint32_t scan_flags, const struct fsp_sink *sink, fsp_error *err)
{
    if (vms_is_manifest(path))
        return vms_manifest_read(path, sink, err);
    fsp_source *src;
    int rc = vms_written_open(path, &src, err);
    if (rc < 0)
        return rc;
    struct fsp_scan_opts opts = {.flags = scan_flags};
    rc = fsp_scan(src, &opts, sink, err);
    fsp_source_close(src);
    return rc;
}
