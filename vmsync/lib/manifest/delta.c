/* zstd's patch-from for manifests: see delta.h. */
#include "manifest/delta.h"

#include <errno.h>
#include <stdlib.h>
#include <zstd.h>

/* The smallest window that covers the base and the target, so that the
 * target's every byte may refer to any byte of the base. */
static int window_log_for(size_t total)
{
    ZSTD_bounds b = ZSTD_cParam_getBounds(ZSTD_c_windowLog);
    int log = b.lowerBound;
    while (log < b.upperBound && ((size_t)1 << log) < total)
        log++;
    return log;
}

/* Room for N more bytes at the end of B; NULL (and B failed) when there is none. */
static uint8_t *reserve(struct vms_wbuf *b, size_t n)
{
    if (b->failed)
        return NULL;
    if (b->cap - b->len < n) {
        size_t cap = b->len + n;
        uint8_t *p = realloc(b->p, cap ? cap : 1);
        if (!p) {
            b->failed = true;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    return b->p + b->len;
}

int vms_delta_make(const struct vms_wbuf *base, const struct vms_wbuf *target, int level,
                   struct vms_wbuf *delta, fsp_error *err)
{
    size_t bound = ZSTD_compressBound(target->len);
    uint8_t *dst = reserve(delta, bound);
    ZSTD_CCtx *zc = ZSTD_createCCtx();
    if (!dst || !zc) {
        ZSTD_freeCCtx(zc);
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory for a manifest delta");
    }
    ZSTD_CCtx_setParameter(zc, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(zc, ZSTD_c_windowLog, window_log_for(base->len + target->len));
    ZSTD_CCtx_refPrefix(zc, base->p, base->len);
    size_t n = ZSTD_compress2(zc, dst, bound, target->p, target->len);
    ZSTD_freeCCtx(zc);
    if (ZSTD_isError(n))
        return fsp_fail(err, FSP_EK_IO, -EIO, "cannot compress a manifest delta: %s",
                        ZSTD_getErrorName(n));
    delta->len += n;
    return 0;
}

static int bad_delta(fsp_error *err, const char *what, const char *why)
{
    return fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG, "%s: %s", what, why);
}

int vms_delta_apply(const struct vms_wbuf *base, const uint8_t *delta, size_t len, size_t max,
                    const char *what, struct vms_wbuf *out, fsp_error *err)
{
    unsigned long long size = ZSTD_getFrameContentSize(delta, len);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
        return bad_delta(err, what, "not a zstd frame that states its size");
    if (size > max)
        return bad_delta(err, what, "it decodes to more than a manifest may hold");
    if (ZSTD_findFrameCompressedSize(delta, len) != len)
        return bad_delta(err, what, "not exactly one zstd frame");
    uint8_t *dst = reserve(out, (size_t)size);
    ZSTD_DCtx *dz = ZSTD_createDCtx();
    if (!dst || !dz) {
        ZSTD_freeDCtx(dz);
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "%s: out of memory", what);
    }
    /* One call into a buffer of the stated size: no window buffer is
     * allocated, so the frame's window log needs no bound of its own. */
    ZSTD_DCtx_setParameter(dz, ZSTD_d_windowLogMax, ZSTD_dParam_getBounds(ZSTD_d_windowLogMax).upperBound);
    ZSTD_DCtx_refPrefix(dz, base->p, base->len);
    size_t n = ZSTD_decompressDCtx(dz, dst, (size_t)size, delta, len);
    ZSTD_freeDCtx(dz);
    if (ZSTD_isError(n))
        return fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG, "%s: %s", what, ZSTD_getErrorName(n));
    if (n != size)
        return bad_delta(err, what, "it decodes to another size than it states");
    out->len += n;
    return 0;
}
