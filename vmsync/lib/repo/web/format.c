/* The web tree's records (docs/web.md): the top-level index and the pack
 * indexes.  A version travels as the bundle's version and signature records
 * (repo.h), so a signature means the same in both.  Decoders
 * take hostile bytes: every count and size is bounded, and a record must
 * end where its file ends. */
#include "base/fileio.h"
#include "repo/web/web.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int malformed(const char *where, const char *what, fsp_error *err)
{
    return fsp_fail(err, FSP_EK_FORMAT, -EBADMSG, "%s: %s", where, what);
}

static void put_le(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

int vms_web_object_cmp(const void *a, const void *b)
{
    return memcmp(((const struct vms_web_object *)a)->hash, ((const struct vms_web_object *)b)->hash,
                  FSP_SHA256_LEN);
}

void vms_web_index_free(struct vms_web_index *x)
{
    free(x->packs);
    free(x->versions);
    memset(x, 0, sizeof *x);
}

/* ---- the top-level index ----------------------------------------------------- */

static void encode_version(struct vms_wbuf *b, const struct vms_web_version *wv)
{
    struct vms_wbuf rec = {0}, sig = {0};
    vms_bundle_encode_version(&rec, &wv->v);
    if (wv->v.is_signed)
        vms_bundle_encode_signature(&sig, &wv->v);
    b->failed |= rec.failed || sig.failed;
    vms_put_bytes(b, rec.p, rec.len);
    if (wv->v.is_signed)
        vms_put_bytes(b, sig.p, sig.len);
    else
        vms_put_varint(b, 0);
    vms_put_varint(b, wv->manifest_bytes);
    vms_wbuf_free(&rec);
    vms_wbuf_free(&sig);
}

void vms_web_encode_index(struct vms_wbuf *b, const struct vms_web_index *x)
{
    uint8_t self[FSP_SHA256_LEN];
    vms_put_raw(b, VMS_WEB_INDEX_MAGIC, VMS_WEB_MAGIC_LEN);
    vms_put_varint(b, VMS_WEB_FORMAT);
    vms_put_varint(b, x->n_packs);
    for (size_t i = 0; i < x->n_packs; i++) {
        vms_put_str(b, x->packs[i].name);
        vms_put_varint(b, x->packs[i].objects);
        vms_put_varint(b, x->packs[i].bytes);
        vms_put_raw(b, x->packs[i].idx_hash, FSP_SHA256_LEN);
    }
    vms_put_varint(b, x->n_versions);
    for (size_t i = 0; i < x->n_versions; i++)
        encode_version(b, &x->versions[i]);
    if (!b->failed) {
        vms_sha256(b->p, b->len, self);
        vms_put_raw(b, self, FSP_SHA256_LEN);
    }
}

/* A pack's name is "pack-" and 16 lowercase hex digits: it becomes part of a URL. */
static bool good_pack_name(const char *s)
{
    if (!s || strlen(s) != VMS_WEB_PACK_NAME_LEN || strncmp(s, "pack-", 5))
        return false;
    for (const char *c = s + 5; *c; c++)
        if (!strchr("0123456789abcdef", *c))
            return false;
    return true;
}

static void get_pack(struct vms_rbuf *r, struct vms_web_pack *pk)
{
    char *name = vms_get_str(r, VMS_WEB_PACK_NAME_LEN);
    if (!good_pack_name(name))
        r->bad = true;
    else
        memcpy(pk->name, name, VMS_WEB_PACK_NAME_LEN + 1);
    free(name);
    pk->objects = vms_get_varint(r);
    pk->bytes = vms_get_varint(r);
    vms_get_raw(r, pk->idx_hash, FSP_SHA256_LEN);
    if (pk->objects > VMS_WEB_PACK_OBJECTS_MAX || pk->bytes > VMS_WEB_PACK_BYTES_MAX)
        r->bad = true;
}

/* One embedded record (a varint N+1 and N bytes, at most the record bound). */
static int get_record(struct vms_rbuf *r, uint8_t **out, uint32_t *len)
{
    *out = vms_get_bytes(r, VMS_WEB_RECORD_MAX, len);
    return r->bad ? -EBADMSG : 0;
}

static int get_version(struct vms_rbuf *r, struct vms_web_version *wv, const char *where,
                       fsp_error *err)
{
    uint8_t *rec = NULL, *sig = NULL;
    uint32_t rec_len = 0, sig_len = 0;
    int rc = get_record(r, &rec, &rec_len);
    if (!rc)
        rc = get_record(r, &sig, &sig_len);
    if (rc || !rec)
        rc = malformed(where, "a malformed version entry", err);
    if (!rc)
        rc = vms_bundle_decode_version(rec, rec_len, &wv->v, where, err);
    if (!rc && sig)
        rc = vms_bundle_decode_signature(sig, sig_len, &wv->v, where, err);
    wv->manifest_bytes = vms_get_varint(r);
    if (!rc && (r->bad || wv->manifest_bytes > VMS_WEB_MANIFEST_MAX || !wv->v.image[0] ||
                !wv->v.number))
        rc = malformed(where, "a malformed version entry", err);
    free(rec);
    free(sig);
    return rc;
}

static int get_packs(struct vms_rbuf *r, struct vms_web_index *x, const char *where, fsp_error *err)
{
    uint64_t n = vms_get_count(r, 2 + VMS_WEB_PACK_NAME_LEN + FSP_SHA256_LEN);
    if (r->bad || n > VMS_WEB_PACKS_MAX)
        return malformed(where, "a malformed count of packs", err);
    if (n && !(x->packs = calloc(n, sizeof *x->packs)))
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    uint64_t objects = 0;
    for (x->n_packs = 0; x->n_packs < n && !r->bad; x->n_packs++) {
        get_pack(r, &x->packs[x->n_packs]);
        objects += x->packs[x->n_packs].objects;
    }
    if (!r->bad && objects > VMS_WEB_OBJECTS_MAX)
        return malformed(where, "more objects in its packs than a client takes", err);
    return r->bad ? malformed(where, "a malformed pack entry", err) : 0;
}

static int get_versions(struct vms_rbuf *r, struct vms_web_index *x, const char *where, fsp_error *err)
{
    uint64_t n = vms_get_count(r, 3);
    if (r->bad || n > VMS_WEB_VERSIONS_MAX)
        return malformed(where, "a malformed count of versions", err);
    if (n && !(x->versions = calloc(n, sizeof *x->versions)))
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    int rc = 0;
    for (x->n_versions = 0; !rc && x->n_versions < n; x->n_versions++)
        rc = get_version(r, &x->versions[x->n_versions], where, err);
    return rc;
}

static int check_self(const uint8_t *p, size_t len, const char *where, fsp_error *err)
{
    uint8_t self[FSP_SHA256_LEN];
    if (len < VMS_WEB_MAGIC_LEN + FSP_SHA256_LEN)
        return malformed(where, "truncated", err);
    vms_sha256(p, len - FSP_SHA256_LEN, self);
    if (memcmp(self, p + len - FSP_SHA256_LEN, FSP_SHA256_LEN))
        return fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG,
                        "%s: truncated or damaged (its own SHA-256 does not match)", where);
    return 0;
}

int vms_web_decode_index(const uint8_t *p, size_t len, struct vms_web_index *x, const char *where,
                         fsp_error *err)
{
    memset(x, 0, sizeof *x);
    if (len < VMS_WEB_MAGIC_LEN || memcmp(p, VMS_WEB_INDEX_MAGIC, VMS_WEB_MAGIC_LEN))
        return malformed(where, "not a vmsync web index", err);
    int rc = check_self(p, len, where, err);
    struct vms_rbuf r = {p + VMS_WEB_MAGIC_LEN, p + len - FSP_SHA256_LEN, false};
    uint64_t format = rc ? 0 : vms_get_varint(&r);
    if (!rc && format != VMS_WEB_FORMAT)
        rc = fsp_fail(err, FSP_EK_FORMAT, -ENOTSUP, "%s: web format %llu, this vmsync reads %u",
                      where, (unsigned long long)format, VMS_WEB_FORMAT);
    if (!rc)
        rc = get_packs(&r, x, where, err);
    if (!rc)
        rc = get_versions(&r, x, where, err);
    if (!rc && (r.bad || r.p != r.end))
        rc = malformed(where, "trailing bytes after the versions", err);
    if (rc)
        vms_web_index_free(x);
    return rc;
}

/* ---- pack indexes ---------------------------------------------------------------- */

static void put_record(uint8_t *p, const struct vms_web_object *o)
{
    memcpy(p, o->hash, FSP_SHA256_LEN);
    put_le(p + 32, o->offset, 8);
    put_le(p + 40, o->stored, 4);
    put_le(p + 44, o->len | (uint32_t)o->codec << 28, 4);
}

void vms_web_encode_idx(struct vms_wbuf *b, const struct vms_web_object *objs, size_t n)
{
    uint8_t head[VMS_WEB_IDX_HEAD] = {0}, rec[VMS_WEB_IDX_RECORD], self[FSP_SHA256_LEN];
    memcpy(head, VMS_WEB_IDX_MAGIC, VMS_WEB_MAGIC_LEN);
    put_le(head + 8, VMS_WEB_FORMAT, 4);
    put_le(head + 12, n, 4);
    for (size_t i = 0; i < n; i++)
        for (unsigned byte = objs[i].hash[0]; byte < 256; byte++)
            put_le(head + 16 + 4 * byte, get_le(head + 16 + 4 * byte, 4) + 1, 4);
    vms_put_raw(b, head, sizeof head);
    for (size_t i = 0; i < n; i++) {
        put_record(rec, &objs[i]);
        vms_put_raw(b, rec, sizeof rec);
    }
    if (!b->failed) {
        vms_sha256(b->p, b->len, self);
        vms_put_raw(b, self, FSP_SHA256_LEN);
    }
}

/* Record I, checked: sorted after the one before, its codec known, its
 * bytes inside the pack. */
static bool get_object(const uint8_t *p, const struct vms_web_pack *pack, struct vms_web_object *o,
                       const struct vms_web_object *prev)
{
    memcpy(o->hash, p, FSP_SHA256_LEN);
    o->offset = get_le(p + 32, 8);
    o->stored = (uint32_t)get_le(p + 40, 4);
    uint32_t len_codec = (uint32_t)get_le(p + 44, 4);
    o->len = len_codec & VMS_WEB_LEN_MASK;
    o->codec = (uint8_t)(len_codec >> 28);
    bool sorted = !prev || memcmp(prev->hash, o->hash, FSP_SHA256_LEN) < 0;
    return sorted && o->codec <= VMS_CODEC_ZSTD && o->len <= VMS_OBJECT_MAX &&
           o->stored <= VMS_OBJECT_MAX + (VMS_OBJECT_MAX >> 7) + 4096 &&
           (o->codec != VMS_CODEC_RAW || o->stored == o->len) && o->offset >= VMS_WEB_MAGIC_LEN &&
           o->offset <= pack->bytes && o->stored <= pack->bytes - o->offset;
}

int vms_web_decode_idx(const uint8_t *p, size_t len, const struct vms_web_pack *pack,
                       struct vms_web_object **out, size_t *n, const char *where, fsp_error *err)
{
    *out = NULL;
    *n = 0;
    if (len != VMS_WEB_IDX_SIZE(pack->objects))
        return malformed(where, "truncated, or not the size the index says", err);
    if (memcmp(p, VMS_WEB_IDX_MAGIC, VMS_WEB_MAGIC_LEN) || get_le(p + 8, 4) != VMS_WEB_FORMAT ||
        get_le(p + 12, 4) != pack->objects)
        return malformed(where, "not a pack index of this format and count", err);
    int rc = check_self(p, len, where, err);
    struct vms_web_object *objs = pack->objects ? calloc(pack->objects, sizeof *objs) : NULL;
    if (!rc && pack->objects && !objs)
        rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    for (uint64_t i = 0; !rc && i < pack->objects; i++)
        if (!get_object(p + VMS_WEB_IDX_HEAD + i * VMS_WEB_IDX_RECORD, pack, &objs[i],
                        i ? &objs[i - 1] : NULL))
            rc = fsp_fail(err, FSP_EK_FORMAT, -EBADMSG,
                          "%s: record %llu is out of order, or out of bounds", where,
                          (unsigned long long)i);
    if (rc) {
        free(objs);
        return rc;
    }
    *out = objs;
    *n = (size_t)pack->objects;
    return 0;
}
