/* A strict, bounded JSON reader (RFC 8259): recursive descent over the whole
 * text, every string copied out NUL-terminated.  The tree is one allocation
 * per value list, so freeing it walks it once. */
#include "base/jsonread.h"
#include "vmsync.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct reader {
    const char *p, *end, *line_start;
    unsigned line;
    const char *where;
    size_t values;
    fsp_error *err;
};

static int bad(struct reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(struct reader *r, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return fsp_fail(r->err, FSP_EK_FORMAT, -EINVAL, "%s: line %u, column %u: %s", r->where, r->line,
                    (unsigned)(r->p - r->line_start) + 1, what);
}

static int nomem(struct reader *r) { return fsp_fail(r->err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

static void skip_blanks(struct reader *r)
{
    while (r->p < r->end && strchr(" \t\r\n", *r->p) && *r->p) {
        if (*r->p == '\n') {
            r->line++;
            r->line_start = r->p + 1;
        }
        r->p++;
    }
}

static int expect_word(struct reader *r, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n))
        return bad(r, "expected a value");
    r->p += n;
    return 0;
}

static int hex4(struct reader *r, unsigned *out)
{
    *out = 0;
    for (int i = 0; i < 4; i++, r->p++) {
        char c = r->p < r->end ? *r->p : 0;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return bad(r, "\\u needs four hex digits");
        *out = *out << 4 | (unsigned)d;
    }
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80)
        return o[0] = (char)cp, 1;
    if (cp < 0x800)
        return o[0] = (char)(0xc0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3f)), 2;
    if (cp < 0x10000)
        return o[0] = (char)(0xe0 | cp >> 12), o[1] = (char)(0x80 | (cp >> 6 & 0x3f)),
               o[2] = (char)(0x80 | (cp & 0x3f)), 3;
    return o[0] = (char)(0xf0 | cp >> 18), o[1] = (char)(0x80 | (cp >> 12 & 0x3f)),
           o[2] = (char)(0x80 | (cp >> 6 & 0x3f)), o[3] = (char)(0x80 | (cp & 0x3f)), 4;
}

/* \uXXXX, a surrogate pair taken whole; U+0000 is refused (strings are C's). */
static int unicode_escape(struct reader *r, char *o, size_t *n)
{
    unsigned cp, lo;
    int rc = hex4(r, &cp);
    if (!rc && cp >= 0xdc00 && cp < 0xe000)
        return bad(r, "a lone low surrogate");
    if (!rc && cp >= 0xd800 && cp < 0xdc00) {
        if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u')
            return bad(r, "a high surrogate without its low one");
        r->p += 2;
        rc = hex4(r, &lo);
        if (!rc && (lo < 0xdc00 || lo >= 0xe000))
            return bad(r, "a high surrogate without its low one");
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    if (!rc && !cp)
        return bad(r, "\\u0000 in a string");
    if (!rc)
        *n += put_utf8(o + *n, cp);
    return rc;
}

static int escape(struct reader *r, char *o, size_t *n)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    char c = r->p < r->end ? *r->p++ : 0;
    const char *k = c ? strchr(from, c) : NULL;
    if (c == 'u')
        return unicode_escape(r, o, n);
    if (!k)
        return bad(r, "a bad escape in a string");
    o[(*n)++] = to[k - from];
    return 0;
}

static int string(struct reader *r, char **out)
{
    char buf[VMS_JR_STRING_MAX + 8];
    size_t n = 0;
    r->p++; /* the opening quote */
    while (r->p < r->end && *r->p != '"') {
        unsigned char c = (unsigned char)*r->p;
        if (n >= VMS_JR_STRING_MAX)
            return bad(r, "a string longer than %u bytes", VMS_JR_STRING_MAX);
        if (c < 0x20)
            return bad(r, "a control character in a string");
        int rc = c == '\\' ? (r->p++, escape(r, buf, &n)) : (buf[n++] = (char)c, r->p++, 0);
        if (rc)
            return rc;
    }
    if (r->p >= r->end)
        return bad(r, "a string without its closing quote");
    r->p++;
    buf[n] = 0;
    if (!vms_utf8_valid(buf))
        return bad(r, "a string that is not UTF-8");
    return (*out = strdup(buf)) ? 0 : nomem(r);
}

static size_t digits(const char *p, const char *end)
{
    size_t n = 0;
    while (p + n < end && p[n] >= '0' && p[n] <= '9')
        n++;
    return n;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int number(struct reader *r, double *out)
{
    const char *s = r->p, *q = s + (s < r->end && *s == '-');
    size_t d = digits(q, r->end);
    if (!d || (d > 1 && *q == '0'))
        return bad(r, "a number JSON does not allow");
    q += d;
    if (q < r->end && *q == '.') {
        if (!(d = digits(++q, r->end)))
            return bad(r, "a number JSON does not allow");
        q += d;
    }
    if (q < r->end && (*q == 'e' || *q == 'E')) {
        q++;
        q += q < r->end && (*q == '+' || *q == '-');
        if (!(d = digits(q, r->end)))
            return bad(r, "a number JSON does not allow");
        q += d;
    }
    char buf[64];
    if ((size_t)(q - s) >= sizeof buf)
        return bad(r, "a number of more than %zu characters", sizeof buf - 1);
    memcpy(buf, s, (size_t)(q - s));
    buf[q - s] = 0;
    *out = strtod(buf, NULL);
    r->p = q;
    return 0;
}

static int value(struct reader *r, struct vms_jr *v, unsigned depth);

static int add_kid(struct reader *r, struct vms_jr *v, size_t *cap, struct vms_jr **kid)
{
    if (++r->values > VMS_JR_VALUES_MAX)
        return bad(r, "more than %u values", VMS_JR_VALUES_MAX);
    if (v->n_kids == *cap) {
        size_t grown = *cap ? *cap * 2 : 4;
        struct vms_jr *k = realloc(v->kids, grown * sizeof *k);
        if (!k)
            return nomem(r);
        v->kids = k;
        *cap = grown;
    }
    *kid = &v->kids[v->n_kids++];
    memset(*kid, 0, sizeof **kid);
    return 0;
}

static int member_key(struct reader *r, const struct vms_jr *obj, struct vms_jr *kid)
{
    skip_blanks(r);
    if (r->p >= r->end || *r->p != '"')
        return bad(r, "expected a member's key");
    if (obj->n_kids > VMS_JR_MEMBERS_MAX)
        return bad(r, "an object of more than %u members", VMS_JR_MEMBERS_MAX);
    int rc = string(r, (char **)&kid->key);
    for (size_t i = 0; !rc && i + 1 < obj->n_kids; i++)
        if (!strcmp(obj->kids[i].key, kid->key))
            return bad(r, "the key \"%.64s\" twice", kid->key);
    skip_blanks(r);
    if (!rc && (r->p >= r->end || *r->p++ != ':'))
        return bad(r, "expected ':' after a member's key");
    return rc;
}

/* An array or an object: items (members) separated by commas. */
static int list(struct reader *r, struct vms_jr *v, unsigned depth)
{
    bool object = *r->p == '{';
    char close = object ? '}' : ']';
    size_t cap = 0;
    v->type = object ? VMS_JR_OBJECT : VMS_JR_ARRAY;
    if (depth >= VMS_JR_DEPTH_MAX)
        return bad(r, "nested deeper than %u", VMS_JR_DEPTH_MAX);
    r->p++;
    skip_blanks(r);
    if (r->p < r->end && *r->p == close)
        return r->p++, 0;
    for (;;) {
        struct vms_jr *kid = NULL;
        int rc = add_kid(r, v, &cap, &kid);
        if (!rc && object)
            rc = member_key(r, v, kid);
        if (!rc)
            rc = value(r, kid, depth + 1);
        if (rc)
            return rc;
        skip_blanks(r);
        char c = r->p < r->end ? *r->p++ : 0;
        if (c == close)
            return 0;
        if (c != ',')
            return r->p -= c != 0, bad(r, "expected ',' or '%c'", close);
    }
}

static int value(struct reader *r, struct vms_jr *v, unsigned depth)
{
    skip_blanks(r);
    v->line = r->line;
    v->column = (unsigned)(r->p - r->line_start) + 1;
    char c = r->p < r->end ? *r->p : 0;
    if (c == '{' || c == '[')
        return list(r, v, depth);
    if (c == '"')
        return v->type = VMS_JR_STRING, string(r, (char **)&v->str);
    if (c == '-' || (c >= '0' && c <= '9'))
        return v->type = VMS_JR_NUMBER, number(r, &v->num);
    v->type = c == 'n' ? VMS_JR_NULL : VMS_JR_BOOL;
    v->flag = c == 't';
    return expect_word(r, c == 'n' ? "null" : c == 't' ? "true" : "false");
}

static void free_value(struct vms_jr *v)
{
    for (size_t i = 0; i < v->n_kids; i++)
        free_value(&v->kids[i]);
    free(v->kids);
    free((char *)v->key);
    free((char *)v->str);
}

void vms_jr_free(struct vms_jr *root)
{
    if (root)
        free_value(root);
    free(root);
}

int vms_jr_parse(const char *text, size_t len, const char *where, struct vms_jr **out, fsp_error *err)
{
    struct reader r = {text, text + len, text, 1, where, 0, err};
    *out = NULL;
    if (len > VMS_JR_TEXT_MAX)
        return fsp_fail(err, FSP_EK_FORMAT, -E2BIG, "%s: more than %u bytes", where, VMS_JR_TEXT_MAX);
    struct vms_jr *root = calloc(1, sizeof *root);
    int rc = root ? value(&r, root, 0) : nomem(&r);
    if (!rc) {
        skip_blanks(&r);
        if (r.p < r.end)
            rc = bad(&r, "bytes after the document");
    }
    if (rc)
        vms_jr_free(root);
    else
        *out = root;
    return rc;
}

const struct vms_jr *vms_jr_get(const struct vms_jr *obj, const char *key)
{
    for (size_t i = 0; obj && obj->type == VMS_JR_OBJECT && i < obj->n_kids; i++)
        if (!strcmp(obj->kids[i].key, key))
            return &obj->kids[i];
    return NULL;
}

const char *vms_jr_type_name(enum vms_jr_type type)
{
    static const char *const names[] = {"null", "a boolean", "a number", "a string", "an array",
                                        "an object"};
    return (unsigned)type < 6 ? names[type] : "a value";
}
