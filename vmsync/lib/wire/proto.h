/* The vmsync agent protocol, version 1: framing, message types, and the
 * bounds-checked builders and readers both ends use.  docs/protocol.md is
 * the full description; this header is its source of truth for numbers.
 *
 * A frame is a little-endian u32 length L (1 <= L <= VMS_MSG_MAX), then L
 * bytes: a u8 message type and its payload.  Payload fields use codec.h's
 * encoding, as the manifest does: integers are varints ("u32" below is a
 * varint that must fit 32 bits), strings and byte strings carry their length
 * plus one, a hash is 32 raw bytes.  Every reader checks every length against
 * what is left of the frame and against the bounds below before using it. */
#ifndef VMS_PROTO_H
#define VMS_PROTO_H

#include "base/codec.h"
#include "fsparse.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMS_PROTO_MAGIC 0x31534d56u /* "VMS1" */
/* 2: a signed version's VERSION_INFO carries its signature.  3: the
 * client may send a manifest as a delta (PUT_MANIFEST_DELTA), and a GET's
 * SEGMENTs may be CHAINED (xfer.h).  An agent speaks every version from
 * VMS_PROTO_VERSION_MIN, as the client asks, so that clients older than
 * the agent go on working. */
#define VMS_PROTO_VERSION 3
#define VMS_PROTO_VERSION_MIN 1
#define VMS_PROTO_VERSION_SIGNED 2
#define VMS_PROTO_VERSION_DELTA 3
#define VMS_PROTO_VERSION_CHAINED 3
#define VMS_MSG_MAX (72u << 20)      /* a frame, type included */
#define VMS_LIST_MAX (1u << 20)      /* hashes in one HAS, GET or OFFER */
#define VMS_DATA_MAX (1u << 20)      /* bytes in one DATA frame */
#define VMS_MANIFEST_MAX (1ull << 31) /* a manifest sent to the agent */
/* A manifest's delta, which the agent holds in memory; a bigger one goes whole. */
#define VMS_MANIFEST_DELTA_MAX (64ull << 20)
#define VMS_AUDIT_DETAIL_MAX 1024    /* bytes of an AUDIT_ENTRY's detail, NUL included */

enum vms_msg {
    /* requests, client to agent */
    VMS_M_HELLO = 1,      /* u32 magic, u32 version, str user, str host, str software */
    VMS_M_OPEN,           /* str path (under the agent's root) */
    VMS_M_VERSION,        /* str image, u32 version (0: latest) -> VERSION_INFO */
    VMS_M_LIST,           /* u8 all, str image -> VERSION_INFO*, END */
    VMS_M_LEASE_TAKE,     /* str image, u32 version, u8 steal -> OK */
    VMS_M_LEASE_GET,      /* str image -> LEASE_INFO */
    VMS_M_LEASE_RELEASE,  /* str image -> OK */
    VMS_M_AUDIT,          /* str action, str image, u32 version, str detail -> OK */
    VMS_M_GET_MANIFEST,   /* hash id -> DATA*, END */
    VMS_M_PUT_MANIFEST,   /* u64 size; then DATA*, END from the client -> MANIFEST_ID */
    VMS_M_HAS,            /* u32 n, n hashes -> HAVE */
    VMS_M_GET,            /* u32 level, u64 bwlimit, u32 n, n hashes -> SEGMENT* */
    VMS_M_OFFER,          /* u32 n, n hashes -> WANT; then SEGMENT*, PUT_END from the client */
    VMS_M_PUT_END,        /* u32 objects sent -> PUT_OK */
    VMS_M_ADD_VERSION,    /* str image, u32 parent, hash manifest, hash digest, u64 size,
                             str message -> NUMBER */
    VMS_M_PING,           /* -> PONG */
    VMS_M_IMAGES,         /* (empty) -> IMAGE_INFO*, END */
    VMS_M_LEASES,         /* u8 all, str image -> LEASE_INFO* (found 1), END */
    VMS_M_AUDIT_LOG,      /* u8 all, str image, i64 since -> AUDIT_ENTRY*, END */
    VMS_M_KEY,            /* (empty) -> KEY_INFO */
    VMS_M_FORGET,         /* str image, u32 version, u8 dry_run -> OK */
    VMS_M_STATS,          /* (empty) -> IMAGE_USAGE*, END, STATS_INFO */
    VMS_M_PUT_MANIFEST_DELTA, /* hash base, hash id, u64 size; then DATA*, END from the
                                 client: the manifest ID as a zstd frame against the
                                 stored manifest BASE (see manifest/delta.h) -> MANIFEST_ID,
                                 or ERROR with code -ESTALE: send it whole (protocol 3) */
    VMS_M_REQUEST_LAST = VMS_M_PUT_MANIFEST_DELTA,

    /* replies and streamed data */
    VMS_M_OK = 64,        /* (empty) */
    VMS_M_ERROR,          /* u32 kind, svarint code (negative errno), str message */
    VMS_M_HELLO_OK,       /* u32 version, str software */
    VMS_M_VERSION_INFO,   /* str image, u32 number, u32 parent, hash manifest, hash digest,
                             u64 size, i64 created, str message, str user, str host; and
                             for a signed version only: hash signer, 64 bytes signature */
    VMS_M_END,            /* (empty) */
    VMS_M_LEASE_INFO,     /* u8 found, str image, u32 version, str user, str host, i64 since */
    VMS_M_DATA,           /* bytes (1..VMS_DATA_MAX) */
    VMS_M_MANIFEST_ID,    /* hash */
    VMS_M_HAVE,           /* u32 n, n x (u64 stored_len + 1 or 0 when absent, u32 len) */
    VMS_M_WANT,           /* u32 n, bytes: ceil(n/8) of bitmap, bit i = byte i/8, bit i%8 */
    VMS_M_SEGMENT,        /* see xfer.h */
    VMS_M_PUT_OK,         /* u64 objects stored */
    VMS_M_NUMBER,         /* u32 */
    VMS_M_PONG,           /* (empty) */
    VMS_M_IMAGE_INFO,     /* str image, u32 latest, u64 size, i64 created, u8 leased,
                             u32 version, str user, str host, i64 since (the lease) */
    VMS_M_AUDIT_ENTRY,    /* i64 at, str user, str host, str action, str image ("": none),
                             u32 version, str detail */
    VMS_M_KEY_INFO,       /* 32 bytes: the public signing key; str comment */
    VMS_M_IMAGE_USAGE,    /* str image, u32 versions, u64 unique_objects, unique_raw,
                             unique_stored, shared_objects, shared_raw */
    VMS_M_STATS_INFO,     /* u64 images, versions, objects, raw_bytes, stored_bytes, packs,
                             pack_bytes, referenced_bytes; then gc's dry run: u64
                             objects_before, objects_dropped, packs_before, packs_rewritten,
                             packs_removed, bytes_before, bytes_freed */
};
const char *vms_msg_name(int type);

/* ---- a connection ------------------------------------------------------------ */
struct vms_conn {
    /* Move exactly N bytes or fail with an fsp_error (0 / negative errno);
     * RECV may instead return -ENODATA, ERR untouched, when the peer hung up
     * cleanly before the first byte. */
    int (*send)(void *io, const void *buf, size_t n, fsp_error *err);
    int (*recv)(void *io, void *buf, size_t n, fsp_error *err);
    void *io;
    const char *peer; /* names the other end in messages */
    uint64_t wire_in, wire_out;
    /* Receives that followed a send: the times this end waited for the
     * other, which on a slow link is what requests sent back to back save. */
    uint64_t round_trips;
    bool sent_last;
    uint8_t *in; /* the last message received */
    size_t in_cap;
};
/* Sends a message of TYPE with payload P (may be NULL for none). */
int vms_conn_send(struct vms_conn *c, uint8_t type, const struct vms_wbuf *p, fsp_error *err);
/* The same, calling WRITTEN (when not NULL) with the payload bytes written
 * so far after each piece of it. */
int vms_conn_send_watched(struct vms_conn *c, uint8_t type, const struct vms_wbuf *p,
                          void (*written)(void *ctx, size_t n), void *ctx, fsp_error *err);
/* Receives one message: *TYPE and its payload in BODY (valid until the next
 * receive). */
int vms_conn_recv(struct vms_conn *c, uint8_t *type, struct vms_rbuf *body, fsp_error *err);
/* Receives a message that must be WANT; an ERROR reply becomes ERR (its kind,
 * code and message) and its code is returned. */
int vms_conn_expect(struct vms_conn *c, uint8_t want, struct vms_rbuf *body, fsp_error *err);
/* The same, calling GOT (when not NULL) with the payload bytes received so
 * far after each piece of it. */
int vms_conn_expect_watched(struct vms_conn *c, uint8_t want, struct vms_rbuf *body,
                            void (*got)(void *ctx, size_t n), void *ctx, fsp_error *err);
/* The ERROR payload BODY as ERR, its message prefixed with the peer's name;
 * returns its code. */
int vms_conn_error(const struct vms_conn *c, struct vms_rbuf *body, fsp_error *err);
/* ERROR <- ERR */
int vms_conn_send_error(struct vms_conn *c, const fsp_error *e, fsp_error *err);
/* FSP_EK_CORRUPT "PEER: protocol error: WHAT" */
int vms_proto_fail(const struct vms_conn *c, fsp_error *err, const char *what);
/* Decodes an ERROR payload into E (kind checked); false when malformed. */
bool vms_decode_error(struct vms_rbuf *b, fsp_error *e);
void vms_conn_free(struct vms_conn *c);

/* Version records travel the same way in both directions. */
struct vms_version;
void vms_put_version(struct vms_wbuf *b, const struct vms_version *v);
void vms_get_version(struct vms_rbuf *b, struct vms_version *v);

/* Payload helpers on top of codec.h. */
void vms_put_hash(struct vms_wbuf *b, const uint8_t hash[FSP_SHA256_LEN]);
void vms_get_hash(struct vms_rbuf *r, uint8_t hash[FSP_SHA256_LEN]);
/* A varint that must be at most MAX; bad otherwise. */
uint64_t vms_get_bounded(struct vms_rbuf *r, uint64_t max);
/* A string into a fixed buffer (NUL-terminated); bad when it does not fit,
 * holds a NUL or a control character, or is absent. */
void vms_get_strbuf(struct vms_rbuf *r, char *out, size_t cap);
/* The same for free text from the catalog (a host, a detail): control
 * characters are allowed, a NUL is not. */
void vms_get_textbuf(struct vms_rbuf *r, char *out, size_t cap);
/* N bytes in place (NULL and bad when fewer are left). */
const uint8_t *vms_get_span(struct vms_rbuf *r, size_t n);
/* True when the payload was read to its end without a fault. */
bool vms_get_done(const struct vms_rbuf *r);

#endif
