/* Reading a bundle (docs/bundle.md).  A bundle is hostile: every member must
 * be a regular file with the name its place in the order gives it, within its
 * bound; every record decodes whole; every object's hash is checked, each
 * time it is read.  Nothing is extracted: member data is read into memory or
 * decompressed and hashed as it streams, so no member name becomes a path. */
#include "base/fileio.h"
#include "repo/bundle/bundle.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define READ_CHUNK (1u << 16)

/* One pass over a bundle's members. */
struct cursor {
    const char *path;
    struct archive *a;
    char member[128];     /* the current member's name, for messages */
    uint64_t size;        /* its size */
    bool size_known;      /* a member's header was read whole */
    uint64_t consumed;    /* bytes of member data read in the whole pass */
    const struct vms_repo_progress *progress;
    uint64_t file_bytes;
    EVP_MD_CTX *member_hash; /* when set, of the current member's data: its seal */
    bool in_member;
    struct vms_bundle_seals seals; /* of every member read so far */
};

static int nomem(fsp_error *err) { return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

static int tar_failed(struct cursor *k, const char *where, fsp_error *err)
{
    const char *why = archive_error_string(k->a);
    return fsp_fail(err, FSP_EK_FORMAT, -EBADMSG, "%s: %s %s: %s", k->path, where, k->member,
                    why ? why : "unreadable");
}

/* Standard input, read once: what is read is also spooled to an unnamed
 * temporary file, from which later passes read. */
struct tee {
    int in, spool;
    uint8_t buf[READ_CHUNK];
};

static la_ssize_t tee_read(struct archive *a, void *ctx, const void **buf)
{
    struct tee *t = ctx;
    ssize_t n;
    do
        n = read(t->in, t->buf, sizeof t->buf);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        archive_set_error(a, errno, "cannot read standard input: %s", strerror(errno));
    else if (n > 0 && vms_write_all(t->spool, t->buf, (size_t)n))
        archive_set_error(a, EIO, "cannot spool standard input: %s", strerror(errno));
    else
        return *buf = t->buf, n;
    return -1;
}

/* Opens K on PATH's PARTS; on SPOOL from its start when it is a descriptor;
 * on standard input, spooling to TEE->spool, when TEE is set. */
static int open_cursor(struct cursor *k, const char *path, char **parts, int spool, struct tee *tee,
                       fsp_error *err)
{
    memset(k, 0, sizeof *k);
    k->path = path;
    snprintf(k->member, sizeof k->member, "(the first member)");
    if (!(k->a = archive_read_new()))
        return nomem(err);
    archive_read_support_format_tar(k->a);
    int r = tee ? archive_read_open(k->a, tee, NULL, tee_read, NULL)
            : spool >= 0 ? (lseek(spool, 0, SEEK_SET) < 0 ? ARCHIVE_FATAL
                                                            : archive_read_open_fd(k->a, spool, READ_CHUNK))
                         : archive_read_open_filenames(k->a, (const char **)parts, READ_CHUNK);
    if (r != ARCHIVE_OK)
        return fsp_fail(err, FSP_EK_OPEN, -EIO, "%s: cannot open: %s", path,
                        archive_error_string(k->a) ? archive_error_string(k->a) : "unreadable");
    return 0;
}

/* An unnamed temporary file for a bundle read from standard input. */
static int open_spool(const char *path, int *fd, fsp_error *err)
{
    const char *dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    *fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (*fd < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot make a temporary file in %s: %s", path,
                        dir, strerror(errno));
    return 0;
}

static void close_cursor(struct cursor *k)
{
    if (k->a)
        archive_read_free(k->a);
    k->a = NULL;
    EVP_MD_CTX_free(k->member_hash);
    k->member_hash = NULL;
    free(k->seals.v);
    k->seals = (struct vms_bundle_seals){0};
}

static void hash_data(struct cursor *k, const void *p, size_t n)
{
    if (k->member_hash)
        EVP_DigestUpdate(k->member_hash, p, n);
}

/* Ends the current member's seal, and starts the next one's. */
static int seal_member(struct cursor *k, fsp_error *err)
{
    uint8_t hash[FSP_SHA256_LEN];
    unsigned int len = sizeof hash;
    if (!k->member_hash)
        return 0;
    if (k->in_member && (!EVP_DigestFinal_ex(k->member_hash, hash, &len) ||
                         vms_bundle_seal_add(&k->seals, k->member, hash)))
        return nomem(err);
    k->in_member = true;
    return EVP_DigestInit_ex(k->member_hash, EVP_sha256(), NULL) ? 0 : nomem(err);
}

/* A member must be a plain file: no link, no sparse map, a known size. */
static int check_entry(struct cursor *k, struct archive_entry *e, fsp_error *err)
{
    la_int64_t size = archive_entry_size(e);
    if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e) ||
        archive_entry_symlink(e) || archive_entry_sparse_count(e) > 0)
        return fsp_fail(err, FSP_EK_FORMAT, -EBADMSG, "%s: member %s is not a plain file", k->path,
                        k->member);
    if (!archive_entry_size_is_set(e) || size < 0)
        return fsp_fail(err, FSP_EK_FORMAT, -EBADMSG, "%s: member %s has no size", k->path,
                        k->member);
    k->size = (uint64_t)size;
    k->size_known = true;
    if (k->file_bytes && k->size > k->file_bytes) /* before any buffer is sized by it */
        return fsp_fail(err, FSP_EK_FORMAT, -ENODATA, "%s: member %s: %llu bytes, more than the file holds",
                        k->path, k->member, (unsigned long long)k->size);
    return 0;
}

/* The next member's header into K; *END when the archive ends. */
static int next_member(struct cursor *k, bool *end, fsp_error *err)
{
    struct archive_entry *e;
    int rc = seal_member(k, err);
    if (rc)
        return rc;
    int r = archive_read_next_header(k->a, &e);
    *end = r == ARCHIVE_EOF;
    if (*end)
        return 0;
    if (r != ARCHIVE_OK)
        return tar_failed(k, "the tar header is damaged after member", err);
    const char *name = archive_entry_pathname(e);
    snprintf(k->member, sizeof k->member, "%s", name ? name : "(unnamed)");
    if (!name || strlen(name) >= sizeof k->member)
        return fsp_fail(err, FSP_EK_FORMAT, -EBADMSG, "%s: a member with a name too long, after %s",
                        k->path, name ? "the last one" : "an unnamed one");
    return check_entry(k, e, err);
}

/* The next member, which must be EXPECTED (or ALSO, when not NULL): *WHICH
 * says which one came (0 or 1). */
static int expect_member(struct cursor *k, const char *expected, const char *also, int *which,
                         fsp_error *err)
{
    bool end;
    char before[sizeof k->member];
    snprintf(before, sizeof before, "%s", k->member);
    int rc = next_member(k, &end, err);
    if (!rc && end)
        return fsp_fail(err, FSP_EK_FORMAT, -ENODATA, "%s: truncated: no member %s after %s",
                        k->path, expected, before);
    if (rc)
        return rc;
    if (!strcmp(k->member, expected))
        return *which = 0, 0;
    if (also && !strcmp(k->member, also))
        return *which = 1, 0;
    return fsp_fail(err, FSP_EK_FORMAT, -EBADMSG, "%s: member %s where %s%s%s was expected",
                    k->path, k->member, expected, also ? " or " : "", also ? also : "");
}

static int report(struct cursor *k, size_t n, fsp_error *err)
{
    k->consumed += n;
    return vms_repo_report(k->progress, VMS_PHASE_CHECK_OBJECTS, k->consumed, k->file_bytes, err);
}

/* The current member's data, whole, into a new buffer; at most MAX bytes. */
static int read_member(struct cursor *k, uint64_t max, uint8_t **out, size_t *len, fsp_error *err)
{
    *out = NULL;
    if (k->size > max)
        return fsp_fail(err, FSP_EK_FORMAT, -EFBIG, "%s: member %s: %llu bytes, more than %llu",
                        k->path, k->member, (unsigned long long)k->size, (unsigned long long)max);
    uint8_t *p = malloc(k->size ? k->size : 1);
    if (!p)
        return nomem(err);
    size_t got = 0;
    int rc = 0;
    while (!rc && got < k->size) {
        la_ssize_t n = archive_read_data(k->a, p + got, k->size - got);
        if (n <= 0)
            rc = n ? tar_failed(k, "member", err)
                   : fsp_fail(err, FSP_EK_FORMAT, -ENODATA, "%s: member %s is truncated", k->path,
                              k->member);
        else if (!(rc = report(k, (size_t)n, err))) {
            hash_data(k, p + got, (size_t)n);
            got += (size_t)n;
        }
    }
    if (rc)
        free(p);
    else
        *out = p, *len = got;
    return rc;
}

/* ---- objects members ----------------------------------------------------------- */

/* Decompressing the current member. */
struct zin {
    struct cursor *k;
    ZSTD_DStream *ds;
    uint8_t in[READ_CHUNK];
    ZSTD_inBuffer ib;
    bool in_end;
    size_t last;          /* the last ZSTD_decompressStream's answer: 0 at a frame's end */
    uint64_t raw;         /* decompressed so far */
    uint8_t *obj;         /* the object being read */
    size_t obj_cap;
};

static int zin_start(struct zin *z, struct cursor *k, fsp_error *err)
{
    z->k = k;
    if (!z->ds && !(z->ds = ZSTD_createDStream()))
        return nomem(err);
    ZSTD_DCtx_reset(z->ds, ZSTD_reset_session_and_parameters);
    ZSTD_DCtx_setParameter(z->ds, ZSTD_d_windowLogMax, VMS_BUNDLE_WINDOW_LOG);
    z->ib = (ZSTD_inBuffer){z->in, 0, 0};
    z->in_end = false;
    z->last = 0;
    z->raw = 0;
    return 0;
}

static int zin_refill(struct zin *z, fsp_error *err)
{
    la_ssize_t n = archive_read_data(z->k->a, z->in, sizeof z->in);
    if (n < 0)
        return tar_failed(z->k, "member", err);
    z->ib = (ZSTD_inBuffer){z->in, (size_t)n, 0};
    z->in_end = n == 0;
    hash_data(z->k, z->in, (size_t)n);
    return report(z->k, (size_t)n, err);
}

/* Up to LEN decompressed bytes into OUT; *GOT less than LEN only at the end
 * of the member's data. */
static int zin_read(struct zin *z, uint8_t *out, size_t len, size_t *got, fsp_error *err)
{
    int rc = 0;
    *got = 0;
    while (!rc && *got < len) {
        if (z->ib.pos == z->ib.size && !z->in_end && (rc = zin_refill(z, err)) != 0)
            break;
        ZSTD_outBuffer ob = {out + *got, len - *got, 0};
        size_t in_before = z->ib.pos;
        size_t r = ZSTD_decompressStream(z->ds, &ob, &z->ib);
        if (ZSTD_isError(r))
            return fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG, "%s: member %s: %s", z->k->path,
                            z->k->member, ZSTD_getErrorName(r));
        *got += ob.pos;
        if (!ob.pos && z->ib.pos == in_before && z->in_end)
            break; /* a call that moved nothing does not end a frame: keep the last answer */
        z->last = r;
    }
    z->raw += *got;
    if (!rc && z->raw > VMS_BUNDLE_MEMBER_MAX)
        rc = fsp_fail(err, FSP_EK_FORMAT, -EFBIG, "%s: member %s decompresses to more than %llu bytes",
                      z->k->path, z->k->member, (unsigned long long)VMS_BUNDLE_MEMBER_MAX);
    return rc;
}

static int cut_short(struct zin *z, fsp_error *err)
{
    return fsp_fail(err, FSP_EK_FORMAT, -ENODATA, "%s: member %s is truncated", z->k->path,
                    z->k->member);
}

/* What each object of a member goes to. */
typedef int object_fn(void *ctx, uint32_t member, uint64_t offset, const uint8_t hash[FSP_SHA256_LEN],
                      const uint8_t *data, uint32_t len, fsp_error *err);

/* The next object of the member, its hash checked: *END at a clean end. */
static int next_object(struct zin *z, uint8_t hash[FSP_SHA256_LEN], uint32_t *len, bool *end,
                       fsp_error *err)
{
    uint8_t head[VMS_BUNDLE_FRAME_HEAD], actual[FSP_SHA256_LEN];
    size_t got;
    int rc = zin_read(z, head, sizeof head, &got, err);
    *end = !rc && got == 0 && z->last == 0;
    if (rc || *end)
        return rc;
    if (got < sizeof head)
        return cut_short(z, err);
    memcpy(hash, head, FSP_SHA256_LEN);
    *len = 0;
    for (int i = 3; i >= 0; i--)
        *len = *len << 8 | head[FSP_SHA256_LEN + i];
    if (*len > VMS_OBJECT_MAX)
        return fsp_fail(err, FSP_EK_FORMAT, -EFBIG, "%s: member %s: an object of %u bytes",
                        z->k->path, z->k->member, *len);
    if (vms_grow(&z->obj, &z->obj_cap, *len + 1, 1))
        return nomem(err);
    if ((rc = zin_read(z, z->obj, *len, &got, err)) != 0 || got < *len)
        return rc ? rc : cut_short(z, err);
    vms_sha256(z->obj, *len, actual);
    if (memcmp(actual, hash, FSP_SHA256_LEN)) {
        char hex[2 * FSP_SHA256_LEN + 1];
        fsp_hex(hash, FSP_SHA256_LEN, hex);
        return fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG, "%s: member %s: object %s is corrupt",
                        z->k->path, z->k->member, hex);
    }
    return 0;
}

/* Every object of the current member (number MEMBER) to FN. */
static int walk_objects(struct zin *z, uint32_t member, object_fn *fn, void *ctx, fsp_error *err)
{
    uint8_t hash[FSP_SHA256_LEN];
    uint32_t len = 0;
    bool end = false;
    int rc = 0;
    while (!rc && !end) {
        uint64_t offset = z->raw;
        rc = next_object(z, hash, &len, &end, err);
        if (!rc && !end)
            rc = fn(ctx, member, offset, hash, z->obj, len, err);
    }
    return rc;
}

/* ---- reading a whole bundle ------------------------------------------------------ */

struct reading {
    struct cursor k;
    struct vms_bundle_contents *c;
    struct zin z;
};

static int read_header(struct reading *r, fsp_error *err)
{
    uint8_t *p = NULL;
    size_t len = 0;
    int which;
    int rc = expect_member(&r->k, VMS_BUNDLE_HEADER_MEMBER, NULL, &which, err);
    if (rc && err->kind == FSP_EK_FORMAT && r->k.size_known && strcmp(r->k.member, VMS_BUNDLE_HEADER_MEMBER))
        rc = fsp_fail(err, FSP_EK_FORMAT, rc, "%s: not a vmsync bundle: its first member is %s, not %s",
                      r->k.path, r->k.member, VMS_BUNDLE_HEADER_MEMBER);
    if (!rc)
        rc = read_member(&r->k, VMS_BUNDLE_HEADER_MAX, &p, &len, err);
    if (!rc)
        rc = vms_bundle_decode_header(p, len, &r->c->header, r->k.path, err);
    free(p);
    return rc;
}

static int read_version(struct reading *r, fsp_error *err)
{
    uint8_t *p = NULL;
    size_t len = 0;
    int which;
    int rc = expect_member(&r->k, VMS_BUNDLE_VERSION_MEMBER, NULL, &which, err);
    if (!rc)
        rc = read_member(&r->k, VMS_BUNDLE_RECORD_MAX, &p, &len, err);
    if (!rc)
        rc = vms_bundle_decode_version(p, len, &r->c->version, r->k.path, err);
    free(p);
    return rc;
}

/* The signature the header announces; judged later, by the client's keys. */
static int read_signature(struct reading *r, fsp_error *err)
{
    uint8_t *p = NULL;
    size_t len = 0;
    int which;
    if (!(r->c->header.flags & VMS_BUNDLE_FLAG_SIGNED))
        return 0;
    int rc = expect_member(&r->k, VMS_BUNDLE_SIGNATURE_MEMBER, NULL, &which, err);
    if (!rc)
        rc = read_member(&r->k, VMS_BUNDLE_RECORD_MAX, &p, &len, err);
    if (!rc)
        rc = vms_bundle_decode_signature(p, len, &r->c->version, r->k.path, err);
    free(p);
    return rc;
}

static int read_manifest(struct reading *r, fsp_error *err)
{
    struct vms_bundle_contents *c = r->c;
    int which;
    int rc = expect_member(&r->k, VMS_BUNDLE_MANIFEST_MEMBER, NULL, &which, err);
    return rc ? rc : read_member(&r->k, VMS_BUNDLE_MANIFEST_MAX, &c->manifest, &c->manifest_len, err);
}

/* Once every member is known unchanged (the trailer's seals): the records
 * agree with each other, so that a crafted bundle is refused too. */
static int check_records(const char *path, const struct vms_bundle_contents *c, fsp_error *err)
{
    const struct vms_bundle_header *h = &c->header;
    const struct vms_version *v = &c->version;
    uint8_t id[FSP_SHA256_LEN];
    uint64_t bytes = 0;
    if (strcmp(v->image, h->image) || v->number != h->version || v->parent != h->parent)
        return fsp_fail(err, FSP_EK_FORMAT, -EBADMSG, "%s: member %s: not the version the header names",
                        path, VMS_BUNDLE_VERSION_MEMBER);
    vms_sha256(c->manifest, c->manifest_len, id);
    if (memcmp(id, v->manifest, FSP_SHA256_LEN))
        return fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG,
                        "%s: member %s: not the manifest the version record names", path,
                        VMS_BUNDLE_MANIFEST_MEMBER);
    for (size_t i = 0; i < c->ids.n; i++)
        bytes += c->locs[i].len;
    if (bytes != h->object_bytes)
        return fsp_fail(err, FSP_EK_FORMAT, -EBADMSG, "%s: member %s: the objects' bytes are not the header's",
                        path, VMS_BUNDLE_HEADER_MEMBER);
    return 0;
}

static int index_object(void *ctx, uint32_t member, uint64_t offset, const uint8_t hash[FSP_SHA256_LEN],
                        const uint8_t *data, uint32_t len, fsp_error *err)
{
    struct reading *r = ctx;
    struct vms_bundle_contents *c = r->c;
    size_t i;
    bool added;
    char hex[2 * FSP_SHA256_LEN + 1];
    (void)data;
    if (c->ids.n >= c->header.objects)
        return fsp_fail(err, FSP_EK_FORMAT, -EBADMSG, "%s: member %s: more objects than the header's %llu",
                        r->k.path, r->k.member, (unsigned long long)c->header.objects);
    if (vms_keyset_add(&c->ids, hash, &i, &added) ||
        vms_grow(&c->locs, &c->cap_locs, c->ids.n, sizeof *c->locs))
        return nomem(err);
    if (!added) {
        fsp_hex(hash, FSP_SHA256_LEN, hex);
        return fsp_fail(err, FSP_EK_FORMAT, -EBADMSG, "%s: member %s: object %s comes twice",
                        r->k.path, r->k.member, hex);
    }
    c->locs[i] = (struct vms_bundle_loc){member, len, offset};
    c->members[member].raw += VMS_BUNDLE_FRAME_HEAD + (uint64_t)len;
    return 0;
}

static int read_objects_member(struct reading *r, fsp_error *err)
{
    struct vms_bundle_contents *c = r->c;
    uint32_t m = (uint32_t)++c->n_members;
    if (r->k.size > VMS_BUNDLE_MEMBER_MAX)
        return fsp_fail(err, FSP_EK_FORMAT, -EFBIG, "%s: member %s: %llu bytes, more than %llu",
                        r->k.path, r->k.member, (unsigned long long)r->k.size,
                        (unsigned long long)VMS_BUNDLE_MEMBER_MAX);
    if (vms_grow(&c->members, &c->cap_members, m + 1, sizeof *c->members))
        return nomem(err);
    c->members[m] = (struct vms_bundle_member){0, r->k.size};
    int rc = zin_start(&r->z, &r->k, err);
    if (!rc)
        rc = walk_objects(&r->z, m, index_object, r, err);
    /* Each member holds an object, so the header's count bounds them: a
     * stream of empty members would otherwise grow without end. */
    if (!rc && !c->members[m].raw)
        rc = fsp_fail(err, FSP_EK_FORMAT, -EBADMSG, "%s: member %s holds no object", r->k.path,
                      r->k.member);
    return rc;
}

/* Every member before the trailer is the one the trailer sealed. */
static int check_seals(struct reading *r, const struct vms_bundle_seals *want, fsp_error *err)
{
    const struct vms_bundle_seals *got = &r->k.seals;
    for (size_t i = 0; i < got->n; i++) {
        const struct vms_bundle_seal *g = &got->v[i];
        if (i >= want->n || strcmp(g->name, want->v[i].name))
            return fsp_fail(err, FSP_EK_FORMAT, -EBADMSG, "%s: member %s: not in member %s's list",
                            r->k.path, g->name, VMS_BUNDLE_END_MEMBER);
        if (memcmp(g->hash, want->v[i].hash, FSP_SHA256_LEN))
            return fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG,
                            "%s: member %s was changed: its SHA-256 is not the one member %s holds",
                            r->k.path, g->name, VMS_BUNDLE_END_MEMBER);
    }
    if (want->n != got->n)
        return fsp_fail(err, FSP_EK_FORMAT, -EBADMSG, "%s: member %s lists %zu members, %zu came before it",
                        r->k.path, VMS_BUNDLE_END_MEMBER, want->n, got->n);
    return 0;
}

static int check_end(struct reading *r, const struct vms_bundle_end *e, fsp_error *err)
{
    const struct vms_bundle_contents *c = r->c;
    int rc = check_seals(r, &e->seals, err);
    if (!rc && (e->members != c->n_members || e->objects != c->ids.n || e->objects != c->header.objects))
        rc = fsp_fail(err, FSP_EK_FORMAT, -EBADMSG,
                      "%s: member %s: %llu objects in %llu members, read %zu in %zu", r->k.path,
                      VMS_BUNDLE_END_MEMBER, (unsigned long long)e->objects,
                      (unsigned long long)e->members, c->ids.n, c->n_members);
    return rc;
}

static int read_end(struct reading *r, fsp_error *err)
{
    uint8_t *p = NULL;
    size_t len = 0;
    struct vms_bundle_end e = {0};
    bool end;
    int rc = read_member(&r->k, VMS_BUNDLE_RECORD_MAX, &p, &len, err);
    if (!rc)
        rc = vms_bundle_decode_end(p, len, &e, r->k.path, err);
    free(p);
    if (!rc)
        rc = check_end(r, &e, err);
    free(e.seals.v);
    if (!rc)
        rc = next_member(&r->k, &end, err);
    if (!rc && !end)
        rc = fsp_fail(err, FSP_EK_FORMAT, -EBADMSG, "%s: member %s after the end", r->k.path,
                      r->k.member);
    return rc;
}

/* The objects members, then the trailer. */
static int read_rest(struct reading *r, fsp_error *err)
{
    int rc = 0, which = 0;
    while (!rc && which == 0) {
        char next[64];
        snprintf(next, sizeof next, VMS_BUNDLE_OBJECTS_MEMBER, (unsigned)r->c->n_members + 1);
        rc = expect_member(&r->k, next, VMS_BUNDLE_END_MEMBER, &which, err);
        if (!rc && which == 0)
            rc = read_objects_member(r, err);
    }
    return rc ? rc : read_end(r, err);
}

/* Where the bundle is read from: PATH, or standard input through a spool. */
static int open_source(struct reading *r, const char *path, struct tee **tee, fsp_error *err)
{
    *tee = NULL;
    r->c->spool = -1;
    if (strcmp(path, "-")) {
        int rc = vms_bundle_parts(path, &r->c->parts, &r->c->file_bytes, err);
        r->k.file_bytes = r->c->file_bytes;
        return rc ? rc : open_cursor(&r->k, path, r->c->parts, -1, NULL, err);
    }
    if (!(*tee = malloc(sizeof **tee)))
        return nomem(err);
    (*tee)->in = STDIN_FILENO;
    int rc = open_spool(path, &r->c->spool, err);
    (*tee)->spool = r->c->spool;
    return rc ? rc : open_cursor(&r->k, path, NULL, -1, *tee, err);
}

int vms_bundle_read(const char *path, const struct vms_repo_progress *progress,
                    struct vms_bundle_contents *c, fsp_error *err)
{
    struct reading r = {.c = c};
    struct tee *tee;
    memset(c, 0, sizeof *c);
    int rc = open_source(&r, path, &tee, err);
    r.k.progress = progress;
    if (!rc && !(r.k.member_hash = EVP_MD_CTX_new()))
        rc = nomem(err);
    if (!rc)
        rc = read_header(&r, err);
    if (!rc)
        rc = read_version(&r, err);
    if (!rc)
        rc = read_signature(&r, err);
    if (!rc)
        rc = read_manifest(&r, err);
    if (!rc)
        rc = read_rest(&r, err);
    if (!rc)
        rc = check_records(path, c, err);
    close_cursor(&r.k);
    free(tee);
    ZSTD_freeDStream(r.z.ds);
    free(r.z.obj);
    if (!rc && c->spool >= 0)
        c->file_bytes = (uint64_t)lseek(c->spool, 0, SEEK_END);
    if (rc)
        vms_bundle_contents_free(c);
    return rc;
}

void vms_bundle_contents_free(struct vms_bundle_contents *c)
{
    if (c->spool >= 0)
        close(c->spool);
    vms_bundle_parts_free(c->parts);
    free(c->header.held);
    free(c->manifest);
    vms_keyset_free(&c->ids);
    free(c->locs);
    free(c->members);
    memset(c, 0, sizeof *c);
    c->spool = -1;
}

/* ---- fetching objects ------------------------------------------------------------ */

/* The objects asked for, by where the bundle holds them: WANTED[i] is the
 * first K with HASHES[K] the bundle's object I (SIZE_MAX: not asked for),
 * SAME[K] the next K asking for the same object. */
struct fetching {
    const char *path;
    const struct vms_bundle_contents *c;
    size_t *wanted, *same;
    bool *member_wanted; /* by member, from 1 */
    size_t left;         /* objects asked for and not handed over yet */
    vms_object_cb cb;
    void *ctx;
};

size_t vms_bundle_stored_share(const struct vms_bundle_contents *c, const struct vms_bundle_loc *l)
{
    const struct vms_bundle_member *m = &c->members[l->member];
    return m->raw ? (size_t)((double)m->stored * (VMS_BUNDLE_FRAME_HEAD + l->len) / m->raw) : l->len;
}

static int not_in_bundle(const char *path, const uint8_t hash[FSP_SHA256_LEN], fsp_error *err)
{
    char hex[2 * FSP_SHA256_LEN + 1];
    fsp_hex(hash, FSP_SHA256_LEN, hex);
    return fsp_fail(err, FSP_EK_CORRUPT, -ENOENT, "object %s is not in bundle %s", hex, path);
}

static int plan_fetch(struct fetching *f, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                      fsp_error *err)
{
    const struct vms_bundle_contents *c = f->c;
    f->wanted = malloc((c->ids.n ? c->ids.n : 1) * sizeof *f->wanted);
    f->same = malloc((n ? n : 1) * sizeof *f->same);
    f->member_wanted = calloc(c->n_members + 1, sizeof *f->member_wanted);
    if (!f->wanted || !f->same || !f->member_wanted)
        return nomem(err);
    for (size_t i = 0; i < c->ids.n; i++)
        f->wanted[i] = SIZE_MAX;
    for (size_t k = n; k-- > 0;) {
        size_t i;
        if (!vms_keyset_find(&c->ids, hashes[k], &i))
            return not_in_bundle(f->path, hashes[k], err);
        f->same[k] = f->wanted[i];
        f->wanted[i] = k;
        f->member_wanted[c->locs[i].member] = true;
    }
    f->left = n;
    return 0;
}

/* An object as the bundle holds it, to every K that asked for it: the
 * frame's hash (checked against its data) must be one the bundle was opened
 * with, at the place it was then, so a file changed since is found. */
static int hand_over(void *ctx, uint32_t member, uint64_t offset, const uint8_t hash[FSP_SHA256_LEN],
                     const uint8_t *data, uint32_t len, fsp_error *err)
{
    struct fetching *f = ctx;
    size_t i;
    if (!vms_keyset_find(&f->c->ids, hash, &i) || f->c->locs[i].member != member ||
        f->c->locs[i].offset != offset || f->c->locs[i].len != len)
        return fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG, "%s: member " VMS_BUNDLE_OBJECTS_MEMBER
                        ": changed since it was opened", f->path, (unsigned)member);
    int rc = 0;
    for (size_t k = f->wanted[i]; !rc && k != SIZE_MAX; k = f->same[k]) {
        f->left--;
        rc = f->cb(f->ctx, k, data, len, vms_bundle_stored_share(f->c, &f->c->locs[i]));
    }
    f->wanted[i] = SIZE_MAX;
    return rc;
}

/* One pass over the members that hold an object asked for. */
static int fetch_pass(const char *path, struct fetching *f, struct zin *z, fsp_error *err)
{
    struct cursor k;
    bool end = false;
    int rc = open_cursor(&k, path, f->c->parts, f->c->spool, NULL, err);
    for (uint32_t m = 0; !rc && f->left;) {
        rc = next_member(&k, &end, err);
        if (rc || end)
            break;
        if (strncmp(k.member, "objects-", 8))
            continue;
        if (++m > f->c->n_members || !f->member_wanted[m])
            continue; /* libarchive skips the unread data */
        rc = zin_start(z, &k, err);
        if (!rc)
            rc = walk_objects(z, m, hand_over, f, err);
    }
    close_cursor(&k);
    return rc;
}

int vms_bundle_fetch(const char *path, const struct vms_bundle_contents *c,
                     const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, vms_object_cb cb,
                     void *ctx, fsp_error *err)
{
    struct fetching f = {.path = path, .c = c, .cb = cb, .ctx = ctx};
    struct zin z = {0};
    int rc = plan_fetch(&f, hashes, n, err);
    if (!rc && n)
        rc = fetch_pass(path, &f, &z, err);
    if (!rc && f.left)
        rc = fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG, "%s: changed since it was opened", path);
    free(f.wanted);
    free(f.same);
    free(f.member_wanted);
    ZSTD_freeDStream(z.ds);
    free(z.obj);
    return rc;
}
