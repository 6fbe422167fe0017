/* The files a container image names (qcow2 backing files, vmdk extents and
 * parents), checked before qemu-nbd opens anything.
 *
 * Images are hostile: a header may name any host file, a protocol
 * ("nbd://host/x") or a "json:" blockdev, and a chain may loop.  Every name
 * qemu would follow is read here with qemu's own rules, resolved with realpath
 * and accepted only when it is a regular file inside the image's folder or a
 * folder the user allowed.  The checked chain is then handed to qemu-nbd as an
 * explicit blockdev (fsp_chain_json) with every format pinned and the last
 * link's backing set to null, so qemu neither probes a format nor follows a
 * name we did not check.  vhdx, vdi and vpc name no other file that qemu 7.2
 * opens (it refuses differencing vhdx and vpc images). */
#include "internal.h"
#include "source_private.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECTOR 512u
#define QCOW2_NAME_MAX 1023u          /* qemu refuses longer backing names */
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_INCOMPAT_DATA_FILE (1u << 2)
#define VMDK_DESC_MAX ((1u << 20) - 1) /* qemu reads at most this much descriptor */
#define VMDK_NAME_MAX 511u
/* Extents may name extents: without a bound on the whole walk, twenty lines
 * in each of sixteen nested descriptors are 20^16 files to check.  Legitimate
 * chains read two descriptors a link, and split disks have thousands of
 * extents. */
#define VMDK_DESCS_MAX 64u
#define VMDK_EXTENTS_MAX 65536u
#define MAX_ALLOWED 64

/* ---- the folders the user allowed --------------------------------------- */

static pthread_mutex_t allowed_lock = PTHREAD_MUTEX_INITIALIZER;
static char *allowed[MAX_ALLOWED];
static unsigned n_allowed;

int fsp_allow_backing_dir(const char *dir, fsp_error *err)
{
    char *real = realpath(dir, NULL);
    struct stat st;
    if (!real || stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
        int e = real ? (errno ? errno : ENOTDIR) : errno;
        free(real);
        return fsp_fail(err, FSP_EK_USAGE, -e, "%s: not a folder: %s", dir,
                        strerror(e));
    }
    pthread_mutex_lock(&allowed_lock);
    int rc = 0;
    if (n_allowed < MAX_ALLOWED)
        allowed[n_allowed++] = real;
    else
        rc = fsp_fail(err, FSP_EK_USAGE, -E2BIG, "%s: more than %d folders allowed for backing files",
                      dir, MAX_ALLOWED);
    pthread_mutex_unlock(&allowed_lock);
    if (rc < 0)
        free(real);
    return rc;
}

static bool is_under(const char *real, const char *dir)
{
    size_t n = strlen(dir);
    if (n == 1 && dir[0] == '/')
        return true;
    return strncmp(real, dir, n) == 0 && (real[n] == '/' || real[n] == '\0');
}

static bool is_allowed(const char *real, const char *image_dir)
{
    if (is_under(real, image_dir))
        return true;
    pthread_mutex_lock(&allowed_lock);
    bool ok = false;
    for (unsigned i = 0; i < n_allowed && !ok; i++)
        ok = is_under(real, allowed[i]);
    pthread_mutex_unlock(&allowed_lock);
    return ok;
}

/* ---- the walk ------------------------------------------------------------ */

struct walk {
    const char *image;      /* as the user named it, for messages */
    const char *image_real; /* its realpath */
    char *image_dir;        /* realpath of its folder */
    const char *stack[FSP_MAX_CHAIN + 2]; /* files being checked, to see loops */
    unsigned depth;
    unsigned extents;       /* extents seen so far */
    unsigned descs;         /* vmdk descriptors read so far */
    const char *link;       /* the chain file being checked: qemu finds every
                               extent, nested ones too, beside it */
    struct fsp_chain *chain;
    fsp_error *err;
};

/* Refuses the reference NAME (a WHAT, e.g. "backing file") found in REFERRER.
 * NAME goes into the message as it is, like every path in it: whoever shows
 * the message escapes what is not text (as the CLI does), and a long name is
 * cut so that the reason still fits. */
static int refuse(struct walk *w, int code, const char *referrer, const char *what,
                  const char *name, const char *why)
{
    if (strcmp(referrer, w->image_real) == 0)
        return fsp_fail(w->err, FSP_EK_FORMAT, code, "%s: %s '%.255s' refused: %s", w->image,
                        what, name, why);
    return fsp_fail(w->err, FSP_EK_FORMAT, code, "%s: %s '%.255s' (named by %s) refused: %s",
                    w->image, what, name, referrer, why);
}

/* qemu parses "proto:rest" (no '/' before the colon) as a protocol. */
static bool names_protocol(const char *name)
{
    return name[strcspn(name, ":/")] == ':';
}

/* NAME (found in REFERRER, a realpath, and relative to BASE's folder) as the
 * realpath of a regular file the image may use; *OUT is malloc'd. */
static int resolve_reference(struct walk *w, const char *referrer, const char *base,
                             const char *what, const char *name, char **out)
{
    *out = NULL;
    if (!*name)
        return refuse(w, -EINVAL, referrer, what, name, "an empty name");
    if (names_protocol(name))
        return refuse(w, -EPROTONOSUPPORT, referrer, what, name,
                      "protocols and json: names are never followed");
    char *joined = NULL;
    if (name[0] == '/')
        joined = strdup(name);
    else if (asprintf(&joined, "%.*s/%s", (int)(strrchr(base, '/') - base), base, name) < 0)
        joined = NULL;
    if (!joined)
        return fsp_fail(w->err, FSP_EK_NOMEM, -ENOMEM, "%s: out of memory", w->image);
    char *real = realpath(joined, NULL);
    int e = errno;
    free(joined);
    struct stat st;
    int rc = 0;
    if (!real)
        rc = refuse(w, -e, referrer, what, name, e == ENOENT ? "missing" : strerror(e));
    else if (!is_allowed(real, w->image_dir))
        rc = refuse(w, -EACCES, referrer, what, name,
                    "outside the image's folder and the folders allowed for backing files");
    else if (stat(real, &st) < 0 || !S_ISREG(st.st_mode))
        rc = refuse(w, -EINVAL, referrer, what, name, "not a regular file");
    for (unsigned i = 0; rc == 0 && i < w->depth; i++)
        if (strcmp(w->stack[i], real) == 0)
            rc = refuse(w, -ELOOP, referrer, what, name, "the chain loops");
    if (rc < 0) {
        free(real);
        return rc;
    }
    *out = real;
    return 0;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t be64(const uint8_t *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }
static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int check_file(struct walk *w, const char *real, const char *format, bool in_chain,
                      bool is_extent);

/* Reads LEN bytes at OFF of PATH's descriptor FD into BUF; short reads fail. */
static int read_exact(struct walk *w, int fd, const char *path, void *buf, size_t len,
                      uint64_t off)
{
    ssize_t n = fsp_read_some(fd, buf, len, off);
    if (n < 0)
        return fsp_fail(w->err, FSP_EK_OPEN, (int)n, "%s: cannot read %s: %s", w->image, path,
                        strerror((int)-n));
    if ((size_t)n < len)
        return fsp_fail(w->err, FSP_EK_FORMAT, -EINVAL, "%s: %s: truncated header", w->image,
                        path);
    return 0;
}

/* The qemu format of a backing file: as the header declares it (DECLARED, or
 * "" when it says none), else from its magic, as qemu would probe it. */
static int backing_format(struct walk *w, const char *real, const char *declared,
                          const char **format)
{
    if (*declared) {
        *format = NULL;
        static const char *const formats[] = { "raw", "qcow2", "vmdk", "vhdx", "vdi", "vpc" };
        for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
            if (strcmp(declared, formats[i]) == 0)
                *format = formats[i];
        if (!*format)
            return refuse(w, -EPROTONOSUPPORT, real, "backing format", declared,
                          "not one of raw, qcow2, vmdk, vhdx, vdi, vpc");
        return 0;
    }
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return fsp_fail(w->err, FSP_EK_OPEN, -errno, "%s: cannot open %s: %s", w->image, real,
                        strerror(errno));
    struct stat st;
    int rc = fstat(fd, &st) < 0 ? -errno : 0;
    if (rc == 0)
        rc = fsp_detect_format(fd, real, (uint64_t)st.st_size, format, w->err);
    close(fd);
    return rc;
}

/* The backing format named by a qcow2 header extension, or "" when none. */
static int qcow2_declared_format(struct walk *w, int fd, const char *path, uint64_t ext_off,
                                 uint64_t cluster_size, char out[32])
{
    out[0] = '\0';
    while (ext_off + 8 <= cluster_size) {
        uint8_t eh[8];
        int rc = read_exact(w, fd, path, eh, sizeof eh, ext_off);
        if (rc < 0)
            return rc;
        uint32_t type = be32(eh), len = be32(eh + 4);
        if (type == 0)
            return 0;
        if (type == QCOW2_EXT_BACKING_FORMAT) {
            if (len == 0 || len >= 32)
                return refuse(w, -EINVAL, path, "backing format", "?", "a bad name length");
            rc = read_exact(w, fd, path, out, len, ext_off + 8);
            out[len] = '\0';
            return rc;
        }
        ext_off += 8 + (((uint64_t)len + 7) & ~(uint64_t)7);
    }
    return 0;
}

static int check_qcow2(struct walk *w, int fd, const char *path)
{
    uint8_t h[104];
    int rc = read_exact(w, fd, path, h, 72, 0);
    uint32_t version = rc == 0 ? be32(h + 4) : 0;
    if (rc == 0 && version == 3)
        rc = read_exact(w, fd, path, h + 72, sizeof h - 72, 72);
    if (rc < 0)
        return rc;
    uint64_t name_off = be64(h + 8);
    uint32_t name_len = be32(h + 16), cluster_bits = be32(h + 20);
    if ((version != 2 && version != 3) || cluster_bits < 9 || cluster_bits > 21)
        return fsp_fail(w->err, FSP_EK_FORMAT, -EINVAL, "%s: %s: not a qcow2 header qemu reads",
                        w->image, path);
    if (version == 3 && (be64(h + 72) & QCOW2_INCOMPAT_DATA_FILE))
        return refuse(w, -EPROTONOSUPPORT, path, "external data file", "", "not supported");
    if (name_off == 0 || name_len == 0)
        return 0;
    if (name_len > QCOW2_NAME_MAX)
        return refuse(w, -ENAMETOOLONG, path, "backing file", "", "the name is too long");
    char declared[32], name[QCOW2_NAME_MAX + 1];
    rc = qcow2_declared_format(w, fd, path, version == 2 ? 72 : be32(h + 100),
                               (uint64_t)1 << cluster_bits, declared);
    if (rc == 0)
        rc = read_exact(w, fd, path, name, name_len, name_off);
    if (rc < 0)
        return rc;
    name[name_len] = '\0';
    if (strlen(name) != name_len)
        return refuse(w, -EINVAL, path, "backing file", name, "the name holds a NUL byte");
    char *real;
    const char *format;
    rc = resolve_reference(w, path, path, "backing file", name, &real);
    if (rc == 0)
        rc = backing_format(w, real, declared, &format);
    if (rc == 0)
        rc = check_file(w, real, format, true, false);
    free(real);
    return rc;
}

/* ---- vmdk ---------------------------------------------------------------- */

/* The descriptor text at OFF (up to NUL or VMDK_DESC_MAX bytes); malloc'd. */
static int read_descriptor(struct walk *w, int fd, const char *path, uint64_t off, char **out)
{
    *out = NULL;
    if (++w->descs > VMDK_DESCS_MAX)
        return fsp_fail(w->err, FSP_EK_FORMAT, -E2BIG,
                        "%s: refused: more than %u vmdk descriptors in all (at %s)", w->image,
                        VMDK_DESCS_MAX, path);
    *out = malloc(VMDK_DESC_MAX + 1);
    if (!*out)
        return fsp_fail(w->err, FSP_EK_NOMEM, -ENOMEM, "%s: out of memory", w->image);
    ssize_t n = fsp_read_some(fd, *out, VMDK_DESC_MAX, off);
    if (n < 0) {
        free(*out);
        *out = NULL;
        return fsp_fail(w->err, FSP_EK_OPEN, (int)n, "%s: cannot read %s: %s", w->image, path,
                        strerror((int)-n));
    }
    (*out)[n] = '\0';
    return 0;
}

/* One extent line ("RW 2048 SPARSE \"name\" ...") as qemu reads it: its type
 * and file name, or false when the line is no extent or names no file.  The
 * widths are qemu's: with any other, a line such as 'RW 1 VMFSSPARSE"/x"'
 * names a file to qemu and none to us. */
static bool parse_extent(const char *line, char type[11], char name[VMDK_NAME_MAX + 1])
{
    char access[11];
    long long sectors;
    if (sscanf(line, "%10s %lld %10s \"%511[^\n\r\"]\"", access, &sectors, type, name) < 4)
        return false;
    if (strcmp(access, "RW") && strcmp(access, "RDONLY") && strcmp(access, "NOACCESS"))
        return false;
    return strcmp(type, "ZERO") != 0;
}

static int check_extents(struct walk *w, const char *path, const char *desc)
{
    int rc = 0;
    for (const char *line = desc; rc == 0 && line && *line;) {
        line += strspn(line, " \t");
        char type[11], name[VMDK_NAME_MAX + 1];
        if (parse_extent(line, type, name)) {
            bool sparse = strstr(type, "SPARSE") != NULL; /* SPARSE, VMFSSPARSE, SESPARSE */
            char *real;
            if (++w->extents > VMDK_EXTENTS_MAX)
                return fsp_fail(w->err, FSP_EK_FORMAT, -E2BIG,
                                "%s: refused: more than %u vmdk extents in all (at %s)", w->image,
                                VMDK_EXTENTS_MAX, path);
            rc = resolve_reference(w, path, w->link, "extent", name, &real);
            if (rc == 0 && sparse)
                rc = check_file(w, real, "vmdk", false, true);
            free(real);
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return rc;
}

/* The parent of a delta disk, found the way qemu finds it. */
static int check_vmdk_parent(struct walk *w, const char *path, const char *desc)
{
    static const char key[] = "parentFileNameHint";
    const char *p = strstr(desc, key);
    if (!p)
        return 0;
    /* qemu skips the key, '=' and '"' unseen */
    const char *end = strlen(p) > sizeof key ? strchr(p += sizeof key + 1, '"') : NULL;
    if (!end || end - p > VMDK_NAME_MAX)
        return refuse(w, -EINVAL, path, "parent", key, "a bad parentFileNameHint");
    char name[VMDK_NAME_MAX + 1];
    memcpy(name, p, (size_t)(end - p));
    name[end - p] = '\0';
    char *real;
    const char *format;
    int rc = resolve_reference(w, path, path, "parent", name, &real);
    if (rc == 0)
        rc = backing_format(w, real, "", &format);
    if (rc == 0)
        rc = check_file(w, real, format, true, false);
    free(real);
    return rc;
}

/* A text descriptor lists extents and a parent.  A sparse (KDMV) file is one
 * extent, unless its capacity is 0 and it embeds a descriptor; qemu looks for
 * a parent in the text at sector 1.  An extent never has a parent. */
static int check_vmdk(struct walk *w, int fd, const char *path, bool is_extent)
{
    uint8_t h[SECTOR];
    ssize_t n = fsp_read_some(fd, h, sizeof h, 0);
    if (n < 0)
        return fsp_fail(w->err, FSP_EK_OPEN, (int)n, "%s: cannot read %s", w->image, path);
    char *desc = NULL;
    int rc = 0;
    bool text = (size_t)n >= 21 && memcmp(h, "# Disk DescriptorFile", 21) == 0;
    if (text && !is_extent) {
        rc = read_descriptor(w, fd, path, 0, &desc);
        if (rc == 0)
            rc = check_extents(w, path, desc);
    } else if ((size_t)n >= 44 && memcmp(h, "KDMV", 4) == 0) {
        uint64_t capacity = le64(h + 12), desc_sector = le64(h + 28);
        if (capacity == 0 && desc_sector != 0 && desc_sector < (UINT64_MAX >> 9))
            rc = read_descriptor(w, fd, path, desc_sector << 9, &desc);
        if (rc == 0 && desc)
            rc = check_extents(w, path, desc);
        free(desc);
        desc = NULL;
        if (rc == 0 && !is_extent)
            rc = read_descriptor(w, fd, path, SECTOR, &desc);
    }
    if (rc == 0 && desc && !is_extent)
        rc = check_vmdk_parent(w, path, desc);
    free(desc);
    return rc;
}

/* ---- one file of the chain ----------------------------------------------- */

static int check_contents(struct walk *w, const char *real, const char *format, bool is_extent)
{
    if (strcmp(format, "qcow2") != 0 && strcmp(format, "vmdk") != 0)
        return 0;
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return fsp_fail(w->err, FSP_EK_OPEN, -errno, "%s: cannot open %s: %s", w->image, real,
                        strerror(errno));
    int rc = strcmp(format, "qcow2") == 0 ? check_qcow2(w, fd, real)
                                          : check_vmdk(w, fd, real, is_extent);
    close(fd);
    return rc;
}

/* qemu parses the chain as JSON, and its parser takes strict UTF-8 only: no
 * overlong form, no surrogate, no noncharacter, nothing past U+10FFFF.  Other
 * names are handed over as descriptors. */
static bool qemu_takes_utf8(const char *s)
{
    static const uint32_t least[] = {0, 0x80, 0x800, 0x10000}; /* by continuation bytes */
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        unsigned n = *p < 0x80 ? 0 : *p >= 0xc2 && *p < 0xe0 ? 1 : (*p & 0xf0) == 0xe0 ? 2
                   : *p >= 0xf0 && *p < 0xf5 ? 3 : 4;
        if (n > 3)
            return false;
        uint32_t cp = *p & (n ? 0x3fu >> n : 0x7fu);
        for (unsigned i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i] & 0x3fu);
        }
        if (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000) ||
            (cp >= 0xfdd0 && cp < 0xfdf0) || (cp & 0xfffe) == 0xfffe)
            return false;
        p += n + 1;
    }
    return true;
}

/* qemu finds a vmdk's extents beside the name it was given, which a
 * descriptor's name is not. */
static int pass_by_descriptor(struct walk *w, struct fsp_chain_link *l, bool names_extents)
{
    if (names_extents)
        return fsp_fail(w->err, FSP_EK_OPEN, -EILSEQ,
                        "%s: a vmdk with extents must have a UTF-8 path; rename it or its folder",
                        w->image);
    int fd = open(l->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    /* above the descriptors qemu-nbd's start moves (stderr, 3) */
    l->fd = fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 10);
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (l->fd < 0)
        return fsp_fail(w->err, FSP_EK_OPEN, -e, "%s: cannot open %s: %s", w->image, l->path,
                        strerror(e));
    return 0;
}

static int check_file(struct walk *w, const char *real, const char *format, bool in_chain,
                      bool is_extent)
{
    if (w->depth > FSP_MAX_CHAIN)
        return fsp_fail(w->err, FSP_EK_FORMAT, -ELOOP,
                        "%s: refused: the chain of backing files and extents is deeper than %d "
                        "(at %s)", w->image, FSP_MAX_CHAIN, real);
    struct fsp_chain_link *l = in_chain ? &w->chain->link[w->chain->n] : NULL;
    if (l) {
        l->path = strdup(real);
        l->format = format;
        l->fd = -1;
        if (!l->path)
            return fsp_fail(w->err, FSP_EK_NOMEM, -ENOMEM, "%s: out of memory", w->image);
        w->chain->n++;
    }
    unsigned extents = w->extents;
    const char *link = w->link;
    if (in_chain)
        w->link = real;
    w->stack[w->depth++] = real;
    int rc = check_contents(w, real, format, is_extent);
    w->depth--;
    w->link = link;
    if (rc == 0 && l && !qemu_takes_utf8(real))
        rc = pass_by_descriptor(w, l, w->extents != extents);
    return rc;
}

int fsp_chain_check(const char *path, const char *format, struct fsp_chain *chain,
                    fsp_error *err)
{
    memset(chain, 0, sizeof *chain);
    char *real = realpath(path, NULL);
    if (!real)
        return fsp_fail(err, FSP_EK_OPEN, -errno, "%s: cannot open: %s", path, strerror(errno));
    struct walk w = { .image = path, .image_real = real, .image_dir = strdup(real), .chain = chain, .err = err };
    int rc = 0;
    if (!w.image_dir)
        rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "%s: out of memory", path);
    else
        *strrchr(w.image_dir, '/') = '\0';
    if (rc == 0 && !w.image_dir[0])
        strcpy(w.image_dir, "/");
    if (rc == 0)
        rc = check_file(&w, real, format, true, false);
    free(w.image_dir);
    free(real);
    if (rc < 0)
        fsp_chain_free(chain);
    return rc;
}

void fsp_chain_free(struct fsp_chain *chain)
{
    for (unsigned i = 0; i < chain->n; i++) {
        free(chain->link[i].path);
        if (chain->link[i].fd >= 0)
            close(chain->link[i].fd);
    }
    chain->n = 0;
}

/* ---- the blockdev qemu-nbd opens ----------------------------------------- */

static void put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void put_link(FILE *f, const struct fsp_chain *chain, unsigned i)
{
    const struct fsp_chain_link *l = &chain->link[i];
    fprintf(f, "{\"driver\":\"%s\",\"file\":{\"driver\":\"file\",\"filename\":", l->format);
    if (l->fd >= 0)
        fprintf(f, "\"/proc/self/fd/%d\"", l->fd);
    else
        put_json_string(f, l->path);
    fputc('}', f);
    if (strcmp(l->format, "raw") != 0) { /* raw has no backing to pin */
        fputs(",\"backing\":", f);
        if (i + 1 < chain->n)
            put_link(f, chain, i + 1);
        else
            fputs("null", f);
    }
    fputc('}', f);
}

char *fsp_chain_json(const struct fsp_chain *chain)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f)
        return NULL;
    fputs("json:", f);
    put_link(f, chain, 0);
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}
