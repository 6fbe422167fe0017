/* Varint record encoding shared by the manifest file and, later, the protocol.
 * Private to libvmsync. */
#ifndef VMS_CODEC_H
#define VMS_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A growable output buffer.  When it cannot grow, FAILED is set and every
 * later put is dropped, so encoders need no check per field: whoever sends
 * or writes the buffer checks FAILED once and reports -ENOMEM. */
struct vms_wbuf {
    uint8_t *p;
    size_t len, cap;
    bool failed;
};

void vms_put_u8(struct vms_wbuf *b, uint8_t v);
void vms_put_varint(struct vms_wbuf *b, uint64_t v);
void vms_put_svarint(struct vms_wbuf *b, int64_t v);
void vms_put_bytes(struct vms_wbuf *b, const void *p, size_t len); /* N+1, bytes */
void vms_put_str(struct vms_wbuf *b, const char *s);               /* NULL allowed */
void vms_put_raw(struct vms_wbuf *b, const void *p, size_t len);   /* no length */
void vms_wbuf_free(struct vms_wbuf *b);

/* A bounded reader over one record.  Any overrun sets BAD and yields zeros,
 * so decoders check once at the end instead of after every field. */
struct vms_rbuf {
    const uint8_t *p, *end;
    bool bad;
};

uint8_t vms_get_u8(struct vms_rbuf *r);
uint64_t vms_get_varint(struct vms_rbuf *r);
int64_t vms_get_svarint(struct vms_rbuf *r);
/* A string of at most MAX bytes with no NUL inside, copied to a new
 * NUL-terminated buffer (NULL when absent or bad). */
char *vms_get_str(struct vms_rbuf *r, size_t max);
/* A byte string of at most MAX bytes, copied; *LEN gets its length. */
uint8_t *vms_get_bytes(struct vms_rbuf *r, size_t max, uint32_t *len);
void vms_get_raw(struct vms_rbuf *r, void *out, size_t len);
/* A count of elements each at least MIN_SIZE bytes long: bounded by what is left. */
uint64_t vms_get_count(struct vms_rbuf *r, size_t min_size);

#endif
