/* The bundle's records (docs/bundle.md): the header, the version record, its
 * signature and the trailer, in the manifest format's varints.  Decoders take hostile
 * bytes: every count and string is bounded, and a record must end where its
 * member ends. */
#include "base/fileio.h"
#include "repo/bundle/bundle.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bad_record(const char *path, const char *member, const char *what, fsp_error *err)
{
    return fsp_fail(err, FSP_EK_FORMAT, -EBADMSG, "%s: member %s: %s", path, member, what);
}

/* Starts reading a record: its magic, then the fields. */
static bool open_record(struct vms_rbuf *r, const uint8_t *p, size_t len, const char *magic)
{
    *r = (struct vms_rbuf){p, p + len, false};
    if (len < VMS_BUNDLE_MAGIC_LEN || memcmp(p, magic, VMS_BUNDLE_MAGIC_LEN))
        return false;
    r->p += VMS_BUNDLE_MAGIC_LEN;
    return true;
}

/* A string field into OUT (LEN bytes with its NUL); absent is "" when
 * OPTIONAL, else bad. */
static void get_text(struct vms_rbuf *r, char *out, size_t len, bool optional)
{
    char *s = vms_get_str(r, len - 1);
    if (!s && !optional)
        r->bad = true;
    snprintf(out, len, "%s", s ? s : "");
    free(s);
}

static uint32_t get_u32(struct vms_rbuf *r)
{
    uint64_t v = vms_get_varint(r);
    if (v > UINT32_MAX)
        r->bad = true;
    return (uint32_t)v;
}

void vms_bundle_encode_header(struct vms_wbuf *b, const struct vms_bundle_header *h)
{
    vms_put_raw(b, VMS_BUNDLE_HEADER_MAGIC, VMS_BUNDLE_MAGIC_LEN);
    vms_put_varint(b, h->format);
    vms_put_varint(b, h->flags);
    vms_put_str(b, h->image);
    vms_put_varint(b, h->version);
    vms_put_varint(b, h->parent);
    vms_put_varint(b, h->base);
    vms_put_varint(b, h->n_held);
    for (size_t i = 0; i < h->n_held; i++)
        vms_put_raw(b, h->held[i], FSP_SHA256_LEN);
    vms_put_varint(b, h->objects);
    vms_put_varint(b, h->object_bytes);
}

static void get_held(struct vms_rbuf *r, struct vms_bundle_header *h)
{
    h->n_held = (size_t)vms_get_count(r, FSP_SHA256_LEN);
    if (h->n_held > VMS_BUNDLE_HELD_MAX)
        r->bad = true;
    if (r->bad || !h->n_held)
        return;
    if (!(h->held = malloc(h->n_held * FSP_SHA256_LEN))) {
        r->bad = true;
        return;
    }
    for (size_t i = 0; i < h->n_held; i++)
        vms_get_raw(r, h->held[i], FSP_SHA256_LEN);
}

int vms_bundle_decode_header(const uint8_t *p, size_t len, struct vms_bundle_header *h,
                             const char *path, fsp_error *err)
{
    struct vms_rbuf r;
    memset(h, 0, sizeof *h);
    if (!open_record(&r, p, len, VMS_BUNDLE_HEADER_MAGIC))
        return bad_record(path, VMS_BUNDLE_HEADER_MEMBER, "not a vmsync bundle header", err);
    h->format = get_u32(&r);
    if (!r.bad && h->format != VMS_BUNDLE_FORMAT)
        return fsp_fail(err, FSP_EK_FORMAT, -ENOTSUP, "%s: member %s: bundle format %u, this vmsync reads %u",
                        path, VMS_BUNDLE_HEADER_MEMBER, h->format, VMS_BUNDLE_FORMAT);
    h->flags = get_u32(&r);
    get_text(&r, h->image, sizeof h->image, false);
    h->version = get_u32(&r);
    h->parent = get_u32(&r);
    h->base = get_u32(&r);
    get_held(&r, h);
    h->objects = vms_get_varint(&r);
    h->object_bytes = vms_get_varint(&r);
    if (r.bad || r.p != r.end || !h->image[0] || !h->version || h->parent >= h->version ||
        h->base >= h->version || h->objects > VMS_BUNDLE_OBJECTS_MAX ||
        h->object_bytes > h->objects * (uint64_t)VMS_OBJECT_MAX)
        return bad_record(path, VMS_BUNDLE_HEADER_MEMBER, "a malformed header", err);
    if (h->flags & ~VMS_BUNDLE_FLAG_SIGNED)
        return bad_record(path, VMS_BUNDLE_HEADER_MEMBER, "unknown flags", err);
    return 0;
}

void vms_bundle_encode_version(struct vms_wbuf *b, const struct vms_version *v)
{
    vms_put_raw(b, VMS_BUNDLE_VERSION_MAGIC, VMS_BUNDLE_MAGIC_LEN);
    vms_put_str(b, v->image);
    vms_put_varint(b, v->number);
    vms_put_varint(b, v->parent);
    vms_put_raw(b, v->manifest, FSP_SHA256_LEN);
    vms_put_raw(b, v->digest, FSP_SHA256_LEN);
    vms_put_varint(b, v->size);
    vms_put_svarint(b, v->created);
    vms_put_str(b, v->message);
    vms_put_str(b, v->user);
    vms_put_str(b, v->host);
}

int vms_bundle_decode_version(const uint8_t *p, size_t len, struct vms_version *v,
                              const char *path, fsp_error *err)
{
    struct vms_rbuf r;
    memset(v, 0, sizeof *v);
    if (!open_record(&r, p, len, VMS_BUNDLE_VERSION_MAGIC))
        return bad_record(path, VMS_BUNDLE_VERSION_MEMBER, "not a version record", err);
    get_text(&r, v->image, sizeof v->image, false);
    v->number = get_u32(&r);
    v->parent = get_u32(&r);
    vms_get_raw(&r, v->manifest, FSP_SHA256_LEN);
    vms_get_raw(&r, v->digest, FSP_SHA256_LEN);
    v->size = vms_get_varint(&r);
    v->created = vms_get_svarint(&r);
    get_text(&r, v->message, sizeof v->message, true);
    get_text(&r, v->user, sizeof v->user, true);
    get_text(&r, v->host, sizeof v->host, true);
    if (r.bad || r.p != r.end)
        return bad_record(path, VMS_BUNDLE_VERSION_MEMBER, "a malformed version record", err);
    return 0;
}

void vms_bundle_encode_signature(struct vms_wbuf *b, const struct vms_version *v)
{
    vms_put_raw(b, VMS_BUNDLE_SIGNATURE_MAGIC, VMS_BUNDLE_MAGIC_LEN);
    vms_put_raw(b, v->signer, FSP_SHA256_LEN);
    vms_put_raw(b, v->signature, VMS_SIGNATURE_LEN);
}

int vms_bundle_decode_signature(const uint8_t *p, size_t len, struct vms_version *v,
                                const char *path, fsp_error *err)
{
    struct vms_rbuf r;
    if (!open_record(&r, p, len, VMS_BUNDLE_SIGNATURE_MAGIC))
        return bad_record(path, VMS_BUNDLE_SIGNATURE_MEMBER, "not a signature record", err);
    vms_get_raw(&r, v->signer, FSP_SHA256_LEN);
    vms_get_raw(&r, v->signature, VMS_SIGNATURE_LEN);
    if (r.bad || r.p != r.end)
        return bad_record(path, VMS_BUNDLE_SIGNATURE_MEMBER, "a malformed signature record", err);
    v->is_signed = true;
    return 0;
}

int vms_bundle_seal_add(struct vms_bundle_seals *s, const char *name, const uint8_t hash[FSP_SHA256_LEN])
{
    if (strlen(name) >= VMS_BUNDLE_NAME_MAX || vms_grow(&s->v, &s->cap, s->n + 1, sizeof *s->v))
        return -ENOMEM;
    snprintf(s->v[s->n].name, VMS_BUNDLE_NAME_MAX, "%s", name);
    memcpy(s->v[s->n++].hash, hash, FSP_SHA256_LEN);
    return 0;
}

void vms_bundle_encode_end(struct vms_wbuf *b, const struct vms_bundle_end *e)
{
    uint8_t self[FSP_SHA256_LEN];
    vms_put_raw(b, VMS_BUNDLE_END_MAGIC, VMS_BUNDLE_MAGIC_LEN);
    vms_put_varint(b, e->members);
    vms_put_varint(b, e->objects);
    vms_put_varint(b, e->seals.n);
    for (size_t i = 0; i < e->seals.n; i++) {
        vms_put_str(b, e->seals.v[i].name);
        vms_put_raw(b, e->seals.v[i].hash, FSP_SHA256_LEN);
    }
    if (!b->failed) {
        vms_sha256(b->p, b->len, self);
        vms_put_raw(b, self, FSP_SHA256_LEN);
    }
}

static void get_seals(struct vms_rbuf *r, struct vms_bundle_seals *s)
{
    uint64_t n = vms_get_count(r, 2 + FSP_SHA256_LEN);
    for (uint64_t i = 0; i < n && !r->bad; i++) {
        uint8_t hash[FSP_SHA256_LEN];
        char *name = vms_get_str(r, VMS_BUNDLE_NAME_MAX - 1);
        vms_get_raw(r, hash, FSP_SHA256_LEN);
        if (!name || r->bad || vms_bundle_seal_add(s, name, hash))
            r->bad = true;
        free(name);
    }
}

int vms_bundle_decode_end(const uint8_t *p, size_t len, struct vms_bundle_end *e, const char *path,
                          fsp_error *err)
{
    struct vms_rbuf r;
    uint8_t self[FSP_SHA256_LEN];
    memset(e, 0, sizeof *e);
    if (len < VMS_BUNDLE_MAGIC_LEN + FSP_SHA256_LEN ||
        !open_record(&r, p, len - FSP_SHA256_LEN, VMS_BUNDLE_END_MAGIC))
        return bad_record(path, VMS_BUNDLE_END_MEMBER, "not a bundle trailer", err);
    vms_sha256(p, len - FSP_SHA256_LEN, self);
    if (memcmp(self, p + len - FSP_SHA256_LEN, FSP_SHA256_LEN))
        return fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG, "%s: member %s is damaged (its own SHA-256 does not match)",
                        path, VMS_BUNDLE_END_MEMBER);
    e->members = vms_get_varint(&r);
    e->objects = vms_get_varint(&r);
    get_seals(&r, &e->seals);
    if (r.bad || r.p != r.end) {
        free(e->seals.v);
        e->seals = (struct vms_bundle_seals){0};
        return bad_record(path, VMS_BUNDLE_END_MEMBER, "a malformed trailer", err);
    }
    return 0;
}
