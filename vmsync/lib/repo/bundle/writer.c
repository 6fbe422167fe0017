/* Writing a bundle (docs/bundle.md) with libarchive: the members in the
 * format's order, the objects compressed as solid zstd members.  A tar
 * member's size goes before its data, so each objects member is compressed
 * into an unnamed temporary file first, then copied into the archive. */
#include "base/fileio.h"
#include "repo/bundle/bundle.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <openssl/evp.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define COPY_CHUNK (1u << 16)

struct vms_bundle_writer {
    char path[PATH_MAX];
    struct vms_bundle_out out; /* the parts, or standard output */
    struct archive *a;
    int64_t mtime;          /* every member's: the version's, so a bundle is reproducible */
    uint64_t planned_objects, planned_bytes;
    int level, window_log;
    FILE *member;           /* the objects member being compressed */
    ZSTD_CCtx *z;
    uint32_t members;
    uint64_t member_raw, objects, bytes;
    EVP_MD_CTX *member_hash; /* of the member being written */
    struct vms_bundle_seals seals;
    uint8_t buf[COPY_CHUNK];
};

static int nomem(fsp_error *err) { return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

static int archive_failed(vms_bundle_writer *w, const char *member, fsp_error *err)
{
    const char *why = archive_error_string(w->a);
    return fsp_fail(err, FSP_EK_IO, -EIO, "%s: cannot write member %s: %s", w->path, member,
                    why ? why : "libarchive failed");
}

static int begin_member(vms_bundle_writer *w, const char *name, uint64_t size, fsp_error *err)
{
    struct archive_entry *e = archive_entry_new();
    if (!e)
        return nomem(err);
    archive_entry_set_pathname(e, name);
    archive_entry_set_size(e, (la_int64_t)size);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, w->mtime, 0);
    int rc = archive_write_header(w->a, e) == ARCHIVE_OK ? 0 : archive_failed(w, name, err);
    archive_entry_free(e);
    if (!rc && !EVP_DigestInit_ex(w->member_hash, EVP_sha256(), NULL))
        rc = nomem(err);
    return rc;
}

/* The member NAME is written whole: its hash goes to the trailer. */
static int seal_member(vms_bundle_writer *w, const char *name, fsp_error *err)
{
    uint8_t hash[FSP_SHA256_LEN];
    unsigned int len = sizeof hash;
    if (!EVP_DigestFinal_ex(w->member_hash, hash, &len) || vms_bundle_seal_add(&w->seals, name, hash))
        return nomem(err);
    return 0;
}

static int write_data(vms_bundle_writer *w, const char *name, const void *p, size_t len,
                      fsp_error *err)
{
    const uint8_t *at = p;
    while (len) {
        la_ssize_t n = archive_write_data(w->a, at, len);
        if (n <= 0)
            return archive_failed(w, name, err);
        EVP_DigestUpdate(w->member_hash, at, (size_t)n);
        at += n;
        len -= (size_t)n;
    }
    return 0;
}

static int put_member(vms_bundle_writer *w, const char *name, const struct vms_wbuf *b,
                      fsp_error *err)
{
    if (b->failed)
        return nomem(err);
    int rc = begin_member(w, name, b->len, err);
    if (!rc)
        rc = write_data(w, name, b->p, b->len, err);
    return rc ? rc : seal_member(w, name, err);
}

/* Copies SIZE bytes of F (from its start) as the data of member NAME. */
static int copy_member(vms_bundle_writer *w, const char *name, FILE *f, uint64_t size,
                       fsp_error *err)
{
    int rc = begin_member(w, name, size, err);
    rewind(f);
    while (!rc && size) {
        size_t want = size < sizeof w->buf ? (size_t)size : sizeof w->buf;
        if (fread(w->buf, 1, want, f) != want)
            return fsp_fail(err, FSP_EK_IO, -EIO, "%s: cannot read back member %s", w->path, name);
        rc = write_data(w, name, w->buf, want, err);
        size -= want;
    }
    return rc ? rc : seal_member(w, name, err);
}

/* ---- the records ------------------------------------------------------------ */

static int put_header(vms_bundle_writer *w, const struct vms_bundle_plan *p, fsp_error *err)
{
    struct vms_bundle_header h = {
        .format = VMS_BUNDLE_FORMAT, .version = p->version->number,
        .parent = p->version->parent, .base = p->base,
        .held = (uint8_t(*)[FSP_SHA256_LEN])p->held, .n_held = p->n_held,
        .objects = p->objects, .object_bytes = p->object_bytes,
        .flags = p->version->is_signed ? VMS_BUNDLE_FLAG_SIGNED : 0,
    };
    snprintf(h.image, sizeof h.image, "%s", p->version->image);
    struct vms_wbuf b = {0};
    vms_bundle_encode_header(&b, &h);
    int rc = put_member(w, VMS_BUNDLE_HEADER_MEMBER, &b, err);
    vms_wbuf_free(&b);
    return rc;
}

static int put_version(vms_bundle_writer *w, const struct vms_version *v, fsp_error *err)
{
    struct vms_wbuf b = {0};
    vms_bundle_encode_version(&b, v);
    int rc = put_member(w, VMS_BUNDLE_VERSION_MEMBER, &b, err);
    vms_wbuf_free(&b);
    return rc;
}

/* A signed version's signature travels as the catalog holds it: the bundle
 * vouches for nothing itself, the receiver judges it by its trusted keys. */
static int put_signature(vms_bundle_writer *w, const struct vms_version *v, fsp_error *err)
{
    struct vms_wbuf b = {0};
    if (!v->is_signed)
        return 0;
    vms_bundle_encode_signature(&b, v);
    int rc = put_member(w, VMS_BUNDLE_SIGNATURE_MEMBER, &b, err);
    vms_wbuf_free(&b);
    return rc;
}

static int put_manifest(vms_bundle_writer *w, const char *path, fsp_error *err)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) < 0) {
        int e = errno;
        if (f)
            fclose(f);
        return fsp_fail(err, FSP_EK_OPEN, -e, "%s: cannot read: %s", path, strerror(e));
    }
    int rc = (uint64_t)st.st_size > VMS_BUNDLE_MANIFEST_MAX
                 ? fsp_fail(err, FSP_EK_USAGE, -EFBIG, "%s: too large for a bundle", path)
                 : copy_member(w, VMS_BUNDLE_MANIFEST_MEMBER, f, (uint64_t)st.st_size, err);
    fclose(f);
    return rc;
}

/* ---- the objects -------------------------------------------------------------- */

/* The smallest window that spans all the objects, within the format's bound:
 * long-range matching then reaches across the whole member. */
static int window_for(uint64_t bytes)
{
    int log = 20;
    while (log < VMS_BUNDLE_WINDOW_LOG && (1ull << log) < bytes)
        log++;
    return log;
}

static int start_objects(vms_bundle_writer *w, fsp_error *err)
{
    if (!(w->member = tmpfile()))
        return fsp_fail(err, FSP_EK_IO, -errno, "cannot create a temporary file: %s", strerror(errno));
    if (!w->z && !(w->z = ZSTD_createCCtx()))
        return nomem(err);
    ZSTD_CCtx_reset(w->z, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(w->z, ZSTD_c_compressionLevel, w->level);
    ZSTD_CCtx_setParameter(w->z, ZSTD_c_windowLog, w->window_log);
    ZSTD_CCtx_setParameter(w->z, ZSTD_c_enableLongDistanceMatching, 1);
    ZSTD_CCtx_setParameter(w->z, ZSTD_c_checksumFlag, 1);
    w->members++;
    w->member_raw = 0;
    return 0;
}

static int compress(vms_bundle_writer *w, const void *p, size_t len, ZSTD_EndDirective how,
                    fsp_error *err)
{
    ZSTD_inBuffer in = {p, len, 0};
    size_t left;
    do {
        ZSTD_outBuffer out = {w->buf, sizeof w->buf, 0};
        left = ZSTD_compressStream2(w->z, &out, &in, how);
        if (ZSTD_isError(left))
            return fsp_fail(err, FSP_EK_IO, -EIO, "%s: zstd: %s", w->path, ZSTD_getErrorName(left));
        if (out.pos && fwrite(w->buf, 1, out.pos, w->member) != out.pos)
            return fsp_fail(err, FSP_EK_IO, -EIO, "%s: cannot write a temporary file", w->path);
    } while (how == ZSTD_e_end ? left != 0 : in.pos < in.size);
    return 0;
}

static int finish_objects(vms_bundle_writer *w, fsp_error *err)
{
    char name[64];
    snprintf(name, sizeof name, VMS_BUNDLE_OBJECTS_MEMBER, w->members);
    int rc = compress(w, NULL, 0, ZSTD_e_end, err);
    if (!rc && fflush(w->member))
        rc = fsp_fail(err, FSP_EK_IO, -EIO, "%s: cannot write a temporary file", w->path);
    if (!rc)
        rc = copy_member(w, name, w->member, (uint64_t)ftello(w->member), err);
    fclose(w->member);
    w->member = NULL;
    return rc;
}

int vms_bundle_add_object(vms_bundle_writer *w, const uint8_t hash[FSP_SHA256_LEN],
                          const void *data, size_t len, fsp_error *err)
{
    uint8_t head[VMS_BUNDLE_FRAME_HEAD];
    if (len > VMS_OBJECT_MAX || w->objects == w->planned_objects)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: an object the bundle's plan does not hold",
                        w->path);
    memcpy(head, hash, FSP_SHA256_LEN);
    for (int i = 0; i < 4; i++)
        head[FSP_SHA256_LEN + i] = (uint8_t)(len >> (8 * i));
    int rc = w->member ? 0 : start_objects(w, err);
    if (!rc)
        rc = compress(w, head, sizeof head, ZSTD_e_continue, err);
    if (!rc)
        rc = compress(w, data, len, ZSTD_e_continue, err);
    w->objects++;
    w->bytes += len;
    w->member_raw += sizeof head + len;
    if (!rc && w->member_raw >= VMS_BUNDLE_MEMBER_TARGET)
        rc = finish_objects(w, err);
    return rc;
}

/* ---- opening and closing ------------------------------------------------------- */

static la_ssize_t to_parts(struct archive *a, void *ctx, const void *buf, size_t len)
{
    vms_bundle_writer *w = ctx;
    int rc = vms_bundle_out_write(&w->out, buf, len);
    if (!rc)
        return (la_ssize_t)len;
    archive_set_error(a, -rc, "%s", strerror(-rc));
    return -1;
}

static int open_archive(vms_bundle_writer *w, fsp_error *err)
{
    if (!(w->a = archive_write_new()))
        return nomem(err);
    /* No padding of the last block, to a file or a pipe alike: the same
     * bundle is the same bytes wherever it goes, split or not. */
    if (archive_write_set_format_pax_restricted(w->a) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(w->a, 1) != ARCHIVE_OK ||
        archive_write_open(w->a, w, NULL, to_parts, NULL) != ARCHIVE_OK)
        return archive_failed(w, VMS_BUNDLE_HEADER_MEMBER, err);
    return 0;
}

int vms_bundle_writer_open(const char *path, const struct vms_bundle_plan *plan,
                           vms_bundle_writer **out, fsp_error *err)
{
    vms_bundle_writer *w = calloc(1, sizeof *w);
    if (!w)
        return nomem(err);
    w->out.fd = -1;
    snprintf(w->path, sizeof w->path, "%s", path);
    if (!(w->member_hash = EVP_MD_CTX_new())) {
        free(w);
        return nomem(err);
    }
    w->mtime = plan->version->created;
    w->planned_objects = plan->objects;
    w->planned_bytes = plan->object_bytes;
    w->level = plan->level;
    w->window_log = window_for(plan->object_bytes);
    int rc = vms_bundle_out_open(&w->out, path, plan->split, plan->replace, err);
    if (!rc)
        rc = open_archive(w, err);
    if (!rc)
        rc = put_header(w, plan, err);
    if (!rc)
        rc = put_version(w, plan->version, err);
    if (!rc)
        rc = put_signature(w, plan->version, err);
    if (!rc)
        rc = put_manifest(w, plan->manifest, err);
    if (rc)
        vms_bundle_writer_abort(w);
    else
        *out = w;
    return rc;
}

static uint64_t bytes_written(const vms_bundle_writer *w)
{
    la_int64_t n = archive_filter_bytes(w->a, -1);
    return n > 0 ? (uint64_t)n : 0;
}

static int put_end(vms_bundle_writer *w, fsp_error *err)
{
    if (w->objects != w->planned_objects || w->bytes != w->planned_bytes)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: %llu objects added, the plan said %llu",
                        w->path, (unsigned long long)w->objects,
                        (unsigned long long)w->planned_objects);
    struct vms_wbuf b = {0};
    struct vms_bundle_end e = {w->members, w->objects, w->seals};
    vms_bundle_encode_end(&b, &e);
    int rc = put_member(w, VMS_BUNDLE_END_MEMBER, &b, err);
    vms_wbuf_free(&b);
    if (!rc && archive_write_close(w->a) != ARCHIVE_OK)
        rc = archive_failed(w, VMS_BUNDLE_END_MEMBER, err);
    return rc;
}

static void free_writer(vms_bundle_writer *w)
{
    if (w->a)
        archive_write_free(w->a);
    if (w->member)
        fclose(w->member);
    ZSTD_freeCCtx(w->z);
    vms_bundle_out_free(&w->out);
    EVP_MD_CTX_free(w->member_hash);
    free(w->seals.v);
    free(w);
}

int vms_bundle_writer_commit(vms_bundle_writer *w, uint64_t *written, fsp_error *err)
{
    int rc = w->member ? finish_objects(w, err) : 0;
    if (!rc)
        rc = put_end(w, err);
    if (!rc)
        *written = bytes_written(w);
    if (rc) {
        vms_bundle_writer_abort(w);
        return rc;
    }
    rc = vms_bundle_out_commit(&w->out, err);
    free_writer(w);
    return rc;
}

void vms_bundle_writer_abort(vms_bundle_writer *w)
{
    if (w)
        free_writer(w); /* the parts written so far are removed */
}
