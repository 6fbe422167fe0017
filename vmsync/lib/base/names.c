/* Names in output.  A hostile image chooses its file names, labels and link
 * targets, and a hostile repository its image names and messages: printed raw,
 * a newline in a name forges a line and an escape sequence drives the
 * terminal.  These writers show such bytes as C escapes instead (see the
 * README, "Names in output"). */
#include "vmsync.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

size_t vms_utf8_len(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3
             : (p[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (!p[0] || !n || (n == 2 && p[0] < 0xc2) || (n == 4 && p[0] > 0xf4))
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if (n == 3 && ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0)))
        return 0; /* overlong, or a UTF-16 surrogate */
    if (n == 4 && ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90)))
        return 0;
    return n;
}

bool vms_utf8_valid(const char *s)
{
    for (size_t n; *s; s += n)
        if (!(n = vms_utf8_len(s)))
            return false;
    return true;
}

/* C0 and DEL, and C1 (U+0080 to U+009F, which some terminals obey as
 * controls too): the sequences that must never reach a terminal raw. */
static bool is_control(const unsigned char *p, size_t n)
{
    return (n == 1 && (*p < 0x20 || *p == 0x7f)) || (n == 2 && p[0] == 0xc2 && p[1] < 0xa0);
}

bool vms_name_is_plain(const char *s)
{
    for (size_t n; *s; s += n) {
        n = vms_utf8_len(s);
        if (!n || is_control((const unsigned char *)s, n) || *s == '"' || *s == '\\')
            return false;
    }
    return true;
}

static void put_escaped_byte(FILE *out, unsigned char c)
{
    static const char letters[] = "abtnvfr"; /* \a (7) to \r (13) */
    if (c >= '\a' && c <= '\r')
        fprintf(out, "\\%c", letters[c - '\a']);
    else
        fprintf(out, "\\%03o", c);
}

/* Writes S with control characters and bytes that are not UTF-8 escaped,
 * and quotes and backslashes too when QUOTING. */
static void put_escaped(FILE *out, const char *s, bool quoting)
{
    for (size_t n; *s; s += n ? n : 1) {
        const unsigned char *p = (const unsigned char *)s;
        n = vms_utf8_len(s);
        if (quoting && (*p == '"' || *p == '\\'))
            fprintf(out, "\\%c", *p);
        else if (n && !is_control(p, n))
            fwrite(p, 1, n, out);
        else
            for (size_t i = 0; i < (n ? n : 1); i++)
                put_escaped_byte(out, p[i]);
    }
}

void vms_put_quoted(FILE *out, const char *s)
{
    putc('"', out);
    put_escaped(out, s, true);
    putc('"', out);
}

void vms_put_name(FILE *out, const char *s)
{
    if (vms_name_is_plain(s))
        fputs(s, out);
    else
        vms_put_quoted(out, s);
}

void vms_put_text(FILE *out, const char *s) { put_escaped(out, s, false); }

/* The characters a new image name may hold: safe in a shell word, a file
 * name and a URL, and free of '@', which NAME@VERSION splits at. */
static bool name_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

int vms_image_name_check(const char *name, fsp_error *err)
{
    size_t len = strlen(name);
    if (!len || len > 255)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "an image name must be 1 to 255 characters");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (name_char_ok(c))
            continue;
        char shown[16];
        snprintf(shown, sizeof shown, c >= ' ' && c < 0x7f ? "'%c'" : "byte 0x%02x", c);
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL,
                        "bad image name '%s': %s is not allowed (use letters, digits, '.', '_' "
                        "and '-')",
                        name, shown);
    }
    if (name[0] == '-' || name[0] == '.')
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL,
                        "bad image name '%s': it may not start with '%c' (a leading '-' reads "
                        "as an option, a leading '.' as a hidden file)",
                        name, name[0]);
    return 0;
}
