#include "wire/proto.h"

#include "vmsync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *vms_msg_name(int type)
{
    static const char *const names[] = {
        [VMS_M_HELLO] = "HELLO", [VMS_M_OPEN] = "OPEN", [VMS_M_VERSION] = "VERSION",
        [VMS_M_LIST] = "LIST", [VMS_M_LEASE_TAKE] = "LEASE_TAKE", [VMS_M_LEASE_GET] = "LEASE_GET",
        [VMS_M_LEASE_RELEASE] = "LEASE_RELEASE", [VMS_M_AUDIT] = "AUDIT",
        [VMS_M_GET_MANIFEST] = "GET_MANIFEST", [VMS_M_PUT_MANIFEST] = "PUT_MANIFEST",
        [VMS_M_HAS] = "HAS", [VMS_M_GET] = "GET", [VMS_M_OFFER] = "OFFER",
        [VMS_M_PUT_END] = "PUT_END", [VMS_M_ADD_VERSION] = "ADD_VERSION", [VMS_M_PING] = "PING",
        [VMS_M_OK] = "OK", [VMS_M_ERROR] = "ERROR", [VMS_M_HELLO_OK] = "HELLO_OK",
        [VMS_M_VERSION_INFO] = "VERSION_INFO", [VMS_M_END] = "END",
        [VMS_M_LEASE_INFO] = "LEASE_INFO", [VMS_M_DATA] = "DATA",
        [VMS_M_MANIFEST_ID] = "MANIFEST_ID", [VMS_M_HAVE] = "HAVE", [VMS_M_WANT] = "WANT",
        [VMS_M_SEGMENT] = "SEGMENT", [VMS_M_PUT_OK] = "PUT_OK", [VMS_M_NUMBER] = "NUMBER",
        [VMS_M_PONG] = "PONG", [VMS_M_IMAGES] = "IMAGES", [VMS_M_LEASES] = "LEASES",
        [VMS_M_AUDIT_LOG] = "AUDIT_LOG", [VMS_M_IMAGE_INFO] = "IMAGE_INFO",
        [VMS_M_AUDIT_ENTRY] = "AUDIT_ENTRY", [VMS_M_KEY] = "KEY", [VMS_M_KEY_INFO] = "KEY_INFO",
        [VMS_M_FORGET] = "FORGET", [VMS_M_STATS] = "STATS",
        [VMS_M_PUT_MANIFEST_DELTA] = "PUT_MANIFEST_DELTA",
        [VMS_M_IMAGE_USAGE] = "IMAGE_USAGE", [VMS_M_STATS_INFO] = "STATS_INFO",
    };
    const char *n = type >= 0 && (size_t)type < sizeof names / sizeof *names ? names[type] : NULL;
    return n ? n : "unknown";
}

/* ---- payload helpers ---------------------------------------------------------- */

void vms_put_hash(struct vms_wbuf *b, const uint8_t hash[FSP_SHA256_LEN])
{
    vms_put_raw(b, hash, FSP_SHA256_LEN);
}

void vms_get_hash(struct vms_rbuf *r, uint8_t hash[FSP_SHA256_LEN])
{
    vms_get_raw(r, hash, FSP_SHA256_LEN);
}

uint64_t vms_get_bounded(struct vms_rbuf *r, uint64_t max)
{
    uint64_t v = vms_get_varint(r);
    if (v > max) {
        r->bad = true;
        return 0;
    }
    return v;
}

/* A string into OUT; CONTROLS says whether control characters may be in it. */
static void get_into(struct vms_rbuf *r, char *out, size_t cap, bool controls)
{
    out[0] = 0;
    uint64_t n = vms_get_varint(r);
    if (r->bad || n == 0 || n - 1 >= cap || n - 1 > (uint64_t)(r->end - r->p)) {
        r->bad = true;
        return;
    }
    for (size_t i = 0; i < n - 1; i++) {
        if (r->p[i] == 0 || (!controls && (r->p[i] < 0x20 || r->p[i] == 0x7f))) {
            r->bad = true;
            return;
        }
    }
    memcpy(out, r->p, n - 1);
    out[n - 1] = 0;
    r->p += n - 1;
}

void vms_get_strbuf(struct vms_rbuf *r, char *out, size_t cap) { get_into(r, out, cap, false); }

void vms_get_textbuf(struct vms_rbuf *r, char *out, size_t cap) { get_into(r, out, cap, true); }

const uint8_t *vms_get_span(struct vms_rbuf *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}

bool vms_get_done(const struct vms_rbuf *r) { return !r->bad && r->p == r->end; }

void vms_put_version(struct vms_wbuf *b, const struct vms_version *v)
{
    vms_put_str(b, v->image);
    vms_put_varint(b, v->number);
    vms_put_varint(b, v->parent);
    vms_put_hash(b, v->manifest);
    vms_put_hash(b, v->digest);
    vms_put_varint(b, v->size);
    vms_put_svarint(b, v->created);
    vms_put_str(b, v->message);
    vms_put_str(b, v->user);
    vms_put_str(b, v->host);
    if (v->is_signed) { /* absent for an unsigned version: what an older agent sends */
        vms_put_hash(b, v->signer);
        vms_put_raw(b, v->signature, VMS_SIGNATURE_LEN);
    }
}

void vms_get_version(struct vms_rbuf *r, struct vms_version *v)
{
    memset(v, 0, sizeof *v);
    vms_get_strbuf(r, v->image, sizeof v->image);
    v->number = (uint32_t)vms_get_bounded(r, UINT32_MAX);
    v->parent = (uint32_t)vms_get_bounded(r, UINT32_MAX);
    vms_get_hash(r, v->manifest);
    vms_get_hash(r, v->digest);
    v->size = vms_get_varint(r);
    v->created = vms_get_svarint(r);
    vms_get_textbuf(r, v->message, sizeof v->message); /* as a local client wrote them */
    vms_get_textbuf(r, v->user, sizeof v->user);
    vms_get_textbuf(r, v->host, sizeof v->host);
    if (r->bad || r->p == r->end)
        return; /* unsigned, or an agent that signs nothing */
    vms_get_hash(r, v->signer);
    vms_get_raw(r, v->signature, VMS_SIGNATURE_LEN);
    v->is_signed = !r->bad;
}

/* ---- the connection ------------------------------------------------------------- */

int vms_proto_fail(const struct vms_conn *c, fsp_error *err, const char *what)
{
    return fsp_fail(err, FSP_EK_CORRUPT, -EPROTO, "%s: protocol error: %s", c->peer, what);
}

int vms_conn_send(struct vms_conn *c, uint8_t type, const struct vms_wbuf *p, fsp_error *err)
{
    return vms_conn_send_watched(c, type, p, NULL, NULL, err);
}

/* A big message on a narrow link takes seconds: WRITTEN (or GOT) hears of
 * each piece so that progress moves while it goes. */
enum { WATCHED_PIECE = 256 << 10 };

static int send_payload(struct vms_conn *c, const struct vms_wbuf *p,
                        void (*written)(void *ctx, size_t n), void *ctx, fsp_error *err)
{
    size_t off = 0;
    int rc = 0;
    while (!rc && off < p->len) {
        size_t n = p->len - off;
        if (written && n > WATCHED_PIECE)
            n = WATCHED_PIECE;
        rc = c->send(c->io, p->p + off, n, err);
        off += n;
        if (!rc && written)
            written(ctx, off);
    }
    return rc;
}

int vms_conn_send_watched(struct vms_conn *c, uint8_t type, const struct vms_wbuf *p,
                          void (*written)(void *ctx, size_t n), void *ctx, fsp_error *err)
{
    size_t plen = p ? p->len : 0;
    if (p && p->failed)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory for a %s message",
                        vms_msg_name(type));
    if (plen + 1 > VMS_MSG_MAX)
        return fsp_fail(err, FSP_EK_INTERNAL, -EMSGSIZE, "%s: a %s message of %zu bytes is too big",
                        c->peer, vms_msg_name(type), plen);
    uint8_t head[5];
    uint32_t len = (uint32_t)plen + 1;
    for (int i = 0; i < 4; i++)
        head[i] = (uint8_t)(len >> (8 * i));
    head[4] = type;
    int rc = c->send(c->io, head, sizeof head, err);
    if (!rc && plen)
        rc = send_payload(c, p, written, ctx, err);
    if (!rc) {
        c->wire_out += sizeof head + plen;
        c->sent_last = true;
    }
    return rc;
}

static int recv_payload(struct vms_conn *c, uint32_t len, void (*got)(void *ctx, size_t n),
                        void *ctx, fsp_error *err)
{
    size_t off = 0;
    int rc = 0;
    while (!rc && off < len) {
        size_t n = len - off;
        if (got && n > WATCHED_PIECE)
            n = WATCHED_PIECE;
        rc = c->recv(c->io, c->in + off, n, err);
        off += n;
        if (!rc && got)
            got(ctx, off);
    }
    return rc;
}

static int recv_message(struct vms_conn *c, uint8_t *type, struct vms_rbuf *body,
                        void (*got)(void *ctx, size_t n), void *ctx, fsp_error *err)
{
    uint8_t head[4];
    int rc = c->recv(c->io, head, sizeof head, err);
    if (rc)
        return rc;
    uint32_t len = (uint32_t)head[0] | (uint32_t)head[1] << 8 | (uint32_t)head[2] << 16 |
                   (uint32_t)head[3] << 24;
    if (len < 1 || len > VMS_MSG_MAX)
        return vms_proto_fail(c, err, "a frame length is out of bounds");
    if (len > c->in_cap) {
        uint8_t *p = realloc(c->in, len);
        if (!p)
            return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
        c->in = p;
        c->in_cap = len;
    }
    rc = recv_payload(c, len, got, ctx, err);
    if (rc)
        return rc;
    c->wire_in += sizeof head + len;
    c->round_trips += c->sent_last;
    c->sent_last = false;
    *type = c->in[0];
    *body = (struct vms_rbuf){.p = c->in + 1, .end = c->in + len};
    return 0;
}

int vms_conn_recv(struct vms_conn *c, uint8_t *type, struct vms_rbuf *body, fsp_error *err)
{
    return recv_message(c, type, body, NULL, NULL, err);
}

/* Error kinds by their number on the wire (docs/protocol.md): the enums may
 * be renumbered, the wire may not. */
static const int wire_kinds[] = {
    FSP_EK_NONE,     FSP_EK_USAGE,     FSP_EK_OPEN,      FSP_EK_FORMAT,
    FSP_EK_CORRUPT,  FSP_EK_IO,        FSP_EK_NOMEM,     FSP_EK_CANCELLED,
    FSP_EK_INTERNAL, VMS_EK_CONFLICT,  VMS_EK_NOTFOUND,  VMS_EK_NETWORK,
    VMS_EK_DENIED,   VMS_EK_UNTRUSTED,
};
#define N_WIRE_KINDS (sizeof wire_kinds / sizeof wire_kinds[0])

static uint64_t wire_kind(int kind)
{
    for (size_t i = 1; i < N_WIRE_KINDS; i++)
        if (wire_kinds[i] == kind)
            return i;
    return 8; /* FSP_EK_INTERNAL's */
}

bool vms_decode_error(struct vms_rbuf *b, fsp_error *e)
{
    uint64_t kind = vms_get_bounded(b, N_WIRE_KINDS - 1);
    int64_t code = vms_get_svarint(b);
    char msg[sizeof e->msg];
    vms_get_textbuf(b, msg, sizeof msg); /* it may quote a host or a detail */
    if (!vms_get_done(b) || kind == FSP_EK_NONE || code >= 0 || code < -4095)
        return false;
    fsp_fail(e, wire_kinds[kind], (int)code, "%s", msg);
    return true;
}

int vms_conn_error(const struct vms_conn *c, struct vms_rbuf *body, fsp_error *err)
{
    fsp_error e;
    if (!vms_decode_error(body, &e))
        return vms_proto_fail(c, err, "a malformed ERROR");
    return fsp_fail(err, e.kind, e.code, "%s: %s", c->peer, e.msg);
}

int vms_conn_expect_watched(struct vms_conn *c, uint8_t want, struct vms_rbuf *body,
                            void (*got)(void *ctx, size_t n), void *ctx, fsp_error *err)
{
    uint8_t type;
    int rc = recv_message(c, &type, body, got, ctx, err);
    if (rc || type == want)
        return rc;
    if (type == VMS_M_ERROR)
        return vms_conn_error(c, body, err);
    char what[96];
    snprintf(what, sizeof what, "expected %s, got %s", vms_msg_name(want), vms_msg_name(type));
    return vms_proto_fail(c, err, what);
}

int vms_conn_expect(struct vms_conn *c, uint8_t want, struct vms_rbuf *body, fsp_error *err)
{
    return vms_conn_expect_watched(c, want, body, NULL, NULL, err);
}

int vms_conn_send_error(struct vms_conn *c, const fsp_error *e, fsp_error *err)
{
    struct vms_wbuf b = {0};
    vms_put_varint(&b, wire_kind(e->kind));
    vms_put_svarint(&b, e->code < 0 ? e->code : -EIO);
    vms_put_str(&b, e->msg);
    int rc = vms_conn_send(c, VMS_M_ERROR, &b, err);
    vms_wbuf_free(&b);
    return rc;
}

void vms_conn_free(struct vms_conn *c)
{
    free(c->in);
    c->in = NULL;
    c->in_cap = 0;
}
