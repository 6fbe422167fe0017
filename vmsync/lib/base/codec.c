#include "base/codec.h"

#include <stdlib.h>
#include <string.h>

static bool reserve(struct vms_wbuf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return true;
    if (more > SIZE_MAX / 2 - b->len)
        return false; /* the doubling below would wrap */
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return false;
    b->p = p;
    b->cap = cap;
    return true;
}

void vms_put_raw(struct vms_wbuf *b, const void *p, size_t len)
{
    if (!len || b->failed)
        return;
    if (!reserve(b, len)) {
        b->failed = true;
        return;
    }
    memcpy(b->p + b->len, p, len);
    b->len += len;
}

void vms_put_u8(struct vms_wbuf *b, uint8_t v) { vms_put_raw(b, &v, 1); }

void vms_put_varint(struct vms_wbuf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            tmp[n] |= 0x80;
        n++;
    } while (v);
    vms_put_raw(b, tmp, n);
}

void vms_put_svarint(struct vms_wbuf *b, int64_t v)
{
    vms_put_varint(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

void vms_put_bytes(struct vms_wbuf *b, const void *p, size_t len)
{
    if (!p) {
        vms_put_varint(b, 0);
        return;
    }
    vms_put_varint(b, (uint64_t)len + 1);
    vms_put_raw(b, p, len);
}

void vms_put_str(struct vms_wbuf *b, const char *s) { vms_put_bytes(b, s, s ? strlen(s) : 0); }

void vms_wbuf_free(struct vms_wbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}

uint8_t vms_get_u8(struct vms_rbuf *r)
{
    if (r->p >= r->end) {
        r->bad = true;
        return 0;
    }
    return *r->p++;
}

uint64_t vms_get_varint(struct vms_rbuf *r)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        uint8_t byte = vms_get_u8(r);
        if (r->bad)
            return 0;
        if (shift == 63 && byte > 1) {
            r->bad = true;
            return 0;
        }
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80))
            return v;
    }
    r->bad = true;
    return 0;
}

int64_t vms_get_svarint(struct vms_rbuf *r)
{
    uint64_t u = vms_get_varint(r);
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

void vms_get_raw(struct vms_rbuf *r, void *out, size_t len)
{
    if ((size_t)(r->end - r->p) < len) {
        r->bad = true;
        memset(out, 0, len);
        return;
    }
    memcpy(out, r->p, len);
    r->p += len;
}

uint8_t *vms_get_bytes(struct vms_rbuf *r, size_t max, uint32_t *len)
{
    *len = 0;
    uint64_t n = vms_get_varint(r);
    if (!n || r->bad)
        return NULL;
    n--;
    if (n > max || n > (uint64_t)(r->end - r->p)) {
        r->bad = true;
        return NULL;
    }
    uint8_t *out = malloc(n + 1);
    if (!out) {
        r->bad = true;
        return NULL;
    }
    vms_get_raw(r, out, n);
    out[n] = 0;
    *len = (uint32_t)n;
    return out;
}

char *vms_get_str(struct vms_rbuf *r, size_t max)
{
    uint32_t len;
    char *s = (char *)vms_get_bytes(r, max, &len);
    if (s && memchr(s, 0, len)) {
        free(s);
        r->bad = true;
        return NULL;
    }
    return s;
}

uint64_t vms_get_count(struct vms_rbuf *r, size_t min_size)
{
    uint64_t n = vms_get_varint(r);
    if (min_size && n > (uint64_t)(r->end - r->p) / min_size) {
        r->bad = true;
        return 0;
    }
    return n;
}
