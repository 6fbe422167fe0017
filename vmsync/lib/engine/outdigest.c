/* The canonical digest of a rebuilt image from the target's layout.
 *
 * A stream whose every byte the writer put down from checked object data,
 * or a RAW piece written from checked bytes, is bound by the hash the
 * writer computed (a chunked stream's hashed in stream order as its chunks
 * were written, when they came in that order); the rest (blocks shared with
 * a seed, which the seed's owner could change after the check, chunked
 * streams whose chunks came in another order, what an earlier process wrote
 * before a resume) is read back
 * here: a stream through its extents, as a scan reads it, a piece as it
 * lies.  The digest is then the one fsp_digest computes from the layout. */
#include "engine/outdigest.h"
#include "engine/seeds.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK (4u << 20)

/* ---- chunked streams hashed in stream order ------------------------------- */

struct order_state {
    EVP_MD_CTX *md;  /* NULL until the first chunk, and again once finished */
    size_t next;     /* the chunk expected next */
    uint64_t offset; /* the stream bytes hashed so far */
    bool broken, ok;
};

struct vms_order_hash {
    const struct vms_loaded *t;
    struct order_state *s; /* per stream */
};

int vms_order_hash_new(const struct vms_loaded *t, struct vms_order_hash **out)
{
    struct vms_order_hash *h = calloc(1, sizeof *h);
    if (h && !(h->s = calloc(t->n_streams + 1, sizeof *h->s))) {
        free(h);
        h = NULL;
    }
    if (h)
        h->t = t;
    *out = h;
    return h ? 0 : -ENOMEM;
}

void vms_order_hash_break(struct vms_order_hash *h, size_t i)
{
    struct order_state *st = &h->s[i];
    st->broken = true;
    st->ok = false;
    EVP_MD_CTX_free(st->md);
    st->md = NULL;
}

/* The stream's last chunk is in: it is vouched for when all of it hashed to
 * the manifest's hash. */
static void order_finish(struct vms_order_hash *h, size_t i)
{
    struct order_state *st = &h->s[i];
    uint8_t got[FSP_SHA256_LEN];
    unsigned int hl = sizeof got;
    EVP_DigestFinal_ex(st->md, got, &hl);
    EVP_MD_CTX_free(st->md);
    st->md = NULL;
    st->ok = st->offset == h->t->streams[i].size && !memcmp(got, h->t->streams[i].sha256, hl);
}

void vms_order_hash_chunk(struct vms_order_hash *h, size_t i, size_t k, const uint8_t *data)
{
    const struct vms_lstream *s = &h->t->streams[i];
    struct order_state *st = &h->s[i];
    const struct fsp_chunk *ch = &h->t->chunks[s->first_chunk + k];
    if (st->broken || k != st->next || ch->offset != st->offset) {
        vms_order_hash_break(h, i); /* out of order, or the chunks do not tile the stream */
        return;
    }
    if (!st->md && (!(st->md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(st->md, EVP_sha256(), NULL))) {
        vms_order_hash_break(h, i);
        return;
    }
    EVP_DigestUpdate(st->md, data, ch->length);
    st->offset += ch->length;
    if (++st->next == s->n_chunks)
        order_finish(h, i);
}

bool vms_order_hash_ok(const struct vms_order_hash *h, size_t i)
{
    return h && h->s[i].ok;
}

void vms_order_hash_free(struct vms_order_hash *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->t->n_streams; i++)
        EVP_MD_CTX_free(h->s[i].md);
    free(h->s);
    free(h);
}

/* ---- the digest ------------------------------------------------------------ */

struct out_reader {
    struct vms_ctx *c;
    const struct vms_loaded *t;
    fsp_source *src;
    int fd; /* the image again, for finding its holes; -1: none */
    uint8_t *buf;
    struct vms_out_counts *counts;
    uint64_t done, total; /* bytes to read back, for progress */
    fsp_error *err;
};

static int account_read(struct out_reader *r, uint64_t len)
{
    r->done += len;
    r->counts->rescanned += len;
    uint64_t done = r->done < r->total ? r->done : r->total; /* streams count their slack */
    return vms_ctx_progress(r->c, VMS_PHASE_VERIFY, done, r->total, r->err);
}

/* The SHA-256 of stream S as the image holds it. */
static int rehash_stream(struct out_reader *r, const struct vms_lstream *s, uint8_t out[FSP_SHA256_LEN])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL)
                 ? 0 : fsp_fail(r->err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    for (uint64_t at = 0; !rc && at < s->size;) {
        uint64_t len = s->size - at < READ_CHUNK ? s->size - at : READ_CHUNK;
        rc = vms_stream_pread(r->src, r->t, s, at, len, r->buf, r->err);
        if (!rc)
            EVP_DigestUpdate(md, r->buf, len);
        at += len;
        if (!rc)
            rc = account_read(r, len);
    }
    unsigned int hl = FSP_SHA256_LEN;
    if (!rc)
        EVP_DigestFinal_ex(md, out, &hl);
    EVP_MD_CTX_free(md);
    return rc;
}

/* The hash of each stream a FILE run names, computed once per stream. */
static int stream_hash(struct out_reader *r, const struct vms_out_marks *marks, size_t i,
                       uint8_t (*hashes)[FSP_SHA256_LEN], bool *known)
{
    const struct vms_lstream *s = &r->t->streams[i];
    if (known[i])
        return 0;
    known[i] = true;
    if (marks->stream_ok[i]) {
        memcpy(hashes[i], s->sha256, FSP_SHA256_LEN);
        r->counts->recorded += s->size;
        r->done += s->size;
        return 0;
    }
    return rehash_stream(r, s, hashes[i]);
}

/* Where in RUN the image's data starts (holes read as zeros, unread); 0 when
 * the file cannot tell. */
static uint64_t data_from(const struct out_reader *r, const struct vms_lrun *run)
{
    off_t data = r->fd >= 0 ? lseek(r->fd, (off_t)run->offset, SEEK_DATA) : -1;
    if (data < 0)
        return errno == ENXIO ? run->length : 0; /* ENXIO: no data past OFFSET */
    uint64_t skip = (uint64_t)data - run->offset;
    return skip < run->length ? skip & ~(uint64_t)(FSP_PIECE_SIZE - 1) : run->length;
}

/* Whether RUN reads as zeros, as the layout says: a fresh output holds holes
 * there, but a resumed one holds what it holds. */
static int check_zero(struct out_reader *r, const struct vms_lrun *run)
{
    int rc = 0;
    uint64_t from = data_from(r, run);
    r->done += from; /* the holes count as checked, for progress */
    for (uint64_t at = from; !rc && at < run->length;) {
        uint64_t len = run->length - at < READ_CHUNK ? run->length - at : READ_CHUNK;
        rc = fsp_source_pread(r->src, r->buf, len, run->offset + at, r->err);
        if (!rc && (r->buf[0] || memcmp(r->buf, r->buf + 1, len - 1)))
            r->counts->zeros_differ = true;
        at += len;
        if (!rc)
            rc = account_read(r, len);
    }
    return rc;
}

/* RUN's piece hashes into OUT: the checked ones as recorded, the rest read. */
static int piece_hashes(struct out_reader *r, const struct vms_out_marks *marks,
                        const struct vms_lrun *run, uint8_t (*out)[FSP_SHA256_LEN])
{
    int rc = 0;
    for (size_t p = 0; p < run->n_hashes && !rc; p++) {
        uint64_t off = (uint64_t)p * FSP_PIECE_SIZE;
        uint64_t len = run->length - off < FSP_PIECE_SIZE ? run->length - off : FSP_PIECE_SIZE;
        if (marks->piece_ok[run->first_hash + p]) {
            memcpy(out[p], r->t->hashes[run->first_hash + p], FSP_SHA256_LEN);
            r->counts->recorded += len;
            r->done += len;
            continue;
        }
        rc = fsp_source_pread(r->src, r->buf, len, run->offset + off, r->err);
        unsigned int hl = FSP_SHA256_LEN;
        if (!rc)
            EVP_Digest(r->buf, len, out[p], &hl, EVP_sha256(), NULL);
        if (!rc)
            rc = account_read(r, len);
    }
    return rc;
}

static int add_run(struct out_reader *r, const struct vms_out_marks *marks, const struct vms_lrun *lr,
                   fsp_digest *d, uint8_t (*streams)[FSP_SHA256_LEN], bool *known,
                   uint8_t (*pieces)[FSP_SHA256_LEN])
{
    struct fsp_layout_run run = {.offset = lr->offset, .length = lr->length, .kind = lr->kind};
    int rc = 0;
    if (lr->kind == FSP_L_FILE) {
        rc = stream_hash(r, marks, lr->stream, streams, known);
        memcpy(run.stream_sha256, streams[lr->stream], FSP_SHA256_LEN);
        run.stream_offset = lr->stream_offset;
        run.stream_size = r->t->streams[lr->stream].size;
    } else if (lr->kind == FSP_L_RAW) {
        rc = piece_hashes(r, marks, lr, pieces);
        run.n_hashes = (uint32_t)lr->n_hashes;
        run.hashes = (const uint8_t(*)[FSP_SHA256_LEN])pieces;
    } else {
        rc = check_zero(r, lr);
    }
    if (!rc)
        fsp_digest_add_run(d, &run);
    return rc;
}

/* The bytes of the layout's runs, for progress: those taken on the writer's
 * word count as done at once. */
static uint64_t allocated(const struct vms_loaded *t)
{
    uint64_t total = 0;
    for (size_t i = 0; i < t->n_runs; i++)
        total += t->runs[i].length;
    return total;
}

static size_t most_pieces(const struct vms_loaded *t)
{
    size_t most = 1;
    for (size_t i = 0; i < t->n_runs; i++)
        if (t->runs[i].kind == FSP_L_RAW && t->runs[i].n_hashes > most)
            most = t->runs[i].n_hashes;
    return most;
}

static int digest_runs(struct out_reader *r, const struct vms_out_marks *marks, fsp_digest *d)
{
    const struct vms_loaded *t = r->t;
    uint8_t(*streams)[FSP_SHA256_LEN] = malloc((t->n_streams + 1) * FSP_SHA256_LEN);
    bool *known = calloc(t->n_streams + 1, sizeof *known);
    uint8_t(*pieces)[FSP_SHA256_LEN] = malloc(most_pieces(t) * FSP_SHA256_LEN);
    int rc = streams && known && pieces ? 0 : fsp_fail(r->err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    for (size_t i = 0; i < t->n_runs && !rc; i++)
        rc = add_run(r, marks, &t->runs[i], d, streams, known, pieces);
    free(streams);
    free(known);
    free(pieces);
    return rc;
}

int vms_out_digest(struct vms_ctx *c, const struct vms_loaded *t, const char *path,
                   const struct vms_out_marks *marks, uint8_t digest[FSP_SHA256_LEN],
                   struct vms_out_counts *counts, fsp_error *err)
{
    struct out_reader r = {c, t, NULL, open(path, O_RDONLY | O_CLOEXEC), malloc(READ_CHUNK), counts,
                           0, allocated(t), err};
    fsp_digest *d = NULL;
    memset(counts, 0, sizeof *counts);
    int rc = r.buf && !fsp_digest_new(t->image_size, &d)
                 ? fsp_source_open_raw(path, &r.src, err)
                 : fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    if (!rc)
        rc = digest_runs(&r, marks, d);
    if (!rc)
        rc = vms_ctx_progress(c, VMS_PHASE_VERIFY, r.total, r.total, err);
    if (!rc)
        fsp_digest_final(d, digest);
    fsp_digest_free(d);
    fsp_source_close(r.src);
    if (r.fd >= 0)
        close(r.fd);
    free(r.buf);
    return rc;
}
