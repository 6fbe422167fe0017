/* Error reporting and small helpers shared by every fsparse module. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fsp_vfail(fsp_error *err, int kind, int code, const char *fmt, va_list ap)
{
    if (code >= 0)
        code = -EINVAL;
    if (err) {
        err->code = code;
        err->kind = kind;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

int fsp_fail(fsp_error *err, int kind, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    code = fsp_vfail(err, kind, code, fmt, ap);
    va_end(ap);
    return code;
}

char *fsp_strdup_bounded(const char *s, size_t max)
{
    if (!s)
        return NULL;
    size_t n = strnlen(s, max);
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

void fsp_hex(const uint8_t *bytes, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = 0;
}

const char *fsp_entry_type_name(uint8_t type)
{
    static const char *const names[] = {"?", "file", "dir", "symlink", "chr", "blk", "fifo", "sock"};
    return type < sizeof names / sizeof names[0] ? names[type] : "?";
}

const char *fsp_layout_kind_name(uint8_t kind)
{
    static const char *const names[] = {"?", "file", "raw", "zero"};
    return kind < sizeof names / sizeof names[0] ? names[kind] : "?";
}

const char *fsp_fs_kind_name(uint8_t kind)
{
    static const char *const names[] = {"none", "ext", "ntfs"};
    return kind < sizeof names / sizeof names[0] ? names[kind] : "?";
}
