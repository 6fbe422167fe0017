/* A bundle split into parts that a FAT32 stick holds (under 4 GiB each):
 * FILE, FILE.002, FILE.003, ..., the bytes of one tar cut at the same size.
 * Every part is written to a temporary name and renamed only once the whole
 * bundle is written, the later parts first, so that FILE names a complete
 * bundle whenever it exists; a reader given FILE takes the parts after it. */
#include "base/fileio.h"
#include "repo/bundle/bundle.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PARTS_MAX 9999

bool vms_bundle_part_name(const char *path, uint32_t k, char *out, size_t len)
{
    int n = k <= 1 ? snprintf(out, len, "%s", path) : snprintf(out, len, "%s.%03u", path, k);
    return n >= 0 && (size_t)n < len;
}

/* ---- writing --------------------------------------------------------------------- */

static int next_part(struct vms_bundle_out *o)
{
    if (o->fd >= 0 && (fsync(o->fd) < 0 || close(o->fd) < 0))
        return o->fd = -1, -errno;
    o->fd = -1;
    if (o->n == PARTS_MAX)
        return -EFBIG;
    if (vms_grow(&o->tmps, &o->cap, o->n + 1, sizeof *o->tmps))
        return -ENOMEM;
    char name[PATH_MAX];
    if (!vms_bundle_part_name(o->path, o->n + 1, name, sizeof name) ||
        snprintf(o->tmps[o->n], sizeof *o->tmps, "%s.XXXXXX", name) >= (int)sizeof *o->tmps)
        return -ENAMETOOLONG;
    int fd = vms_mkostemp_readable(o->tmps[o->n]);
    if (fd < 0)
        return fd;
    o->n++;
    o->fd = fd;
    o->in_part = 0;
    return 0;
}

int vms_bundle_out_open(struct vms_bundle_out *o, const char *path, uint64_t limit, bool replace,
                        fsp_error *err)
{
    memset(o, 0, sizeof *o);
    o->fd = -1;
    o->limit = limit;
    o->replace = replace;
    snprintf(o->path, sizeof o->path, "%s", path);
    if ((o->to_stdout = !strcmp(path, "-"))) {
        o->fd = STDOUT_FILENO;
        return 0;
    }
    int rc = next_part(o);
    return rc ? fsp_fail(err, FSP_EK_IO, rc, "%s: cannot create: %s", path, strerror(-rc)) : 0;
}

int vms_bundle_out_write(struct vms_bundle_out *o, const void *p, size_t len)
{
    const uint8_t *at = p;
    while (len) {
        int rc = o->limit && o->in_part == o->limit ? next_part(o) : 0;
        size_t n = o->limit && len > o->limit - o->in_part ? (size_t)(o->limit - o->in_part) : len;
        if (rc || (rc = vms_write_all(o->fd, at, n)) != 0)
            return rc;
        at += n;
        len -= n;
        o->in_part += n;
    }
    return 0;
}

/* Parts of an older, longer bundle of the same name would read as this one's. */
static void remove_stale_parts(const struct vms_bundle_out *o)
{
    char name[PATH_MAX];
    struct stat st;
    for (uint32_t k = o->n + 1; k <= PARTS_MAX; k++) {
        if (!vms_bundle_part_name(o->path, k, name, sizeof name) || lstat(name, &st) < 0 || !S_ISREG(st.st_mode) || unlink(name) < 0)
            break;
    }
}

/* Part K from its temporary name into place: over an existing file only
 * when the writer may replace it. */
static int rename_part(struct vms_bundle_out *o, uint32_t k, fsp_error *err)
{
    char name[PATH_MAX];
    if (!vms_bundle_part_name(o->path, k, name, sizeof name))
        return fsp_fail(err, FSP_EK_USAGE, -ENAMETOOLONG, "%s: name too long for its parts", o->path);
    if (renameat2(AT_FDCWD, o->tmps[k - 1], AT_FDCWD, name, o->replace ? 0 : RENAME_NOREPLACE) < 0)
        return errno == EEXIST ? fsp_fail(err, VMS_EK_CONFLICT, -EEXIST, "%s: already exists", name)
                               : fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot rename into place: %s",
                                          name, strerror(errno));
    o->tmps[k - 1][0] = 0; /* no longer ours to remove */
    return 0;
}

/* Removes parts FROM.. that commit renamed into place before it failed. */
static void unrename_parts(const struct vms_bundle_out *o, uint32_t from)
{
    char name[PATH_MAX];
    for (uint32_t k = from; k <= o->n; k++)
        if (vms_bundle_part_name(o->path, k, name, sizeof name))
            unlink(name);
}

int vms_bundle_out_commit(struct vms_bundle_out *o, fsp_error *err)
{
    if (o->to_stdout)
        return 0;
    if (fsync(o->fd) < 0 || close(o->fd) < 0) {
        o->fd = -1;
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot write: %s", o->tmps[o->n - 1], strerror(errno));
    }
    o->fd = -1;
    uint32_t k = o->n;
    int rc = 0;
    for (; k >= 1 && !rc; k--)
        rc = rename_part(o, k, err);
    if (rc)
        unrename_parts(o, k + 2); /* part K + 1 failed: the later ones are ours */
    if (!rc && o->replace)
        remove_stale_parts(o);
    if (!rc)
        rc = vms_fsync_parent(o->path);
    return rc ? fsp_fail(err, FSP_EK_IO, rc, "%s: cannot sync its directory: %s", o->path, strerror(-rc)) : 0;
}

void vms_bundle_out_free(struct vms_bundle_out *o)
{
    if (!o->to_stdout && o->fd >= 0)
        close(o->fd);
    for (size_t k = 0; k < o->n; k++)
        if (o->tmps[k][0])
            unlink(o->tmps[k]);
    free(o->tmps);
    memset(o, 0, sizeof *o);
    o->fd = -1;
}

/* ---- reading ---------------------------------------------------------------------- */

int vms_bundle_parts(const char *path, char ***parts, uint64_t *bytes, fsp_error *err)
{
    char name[PATH_MAX];
    struct stat st;
    size_t n = 0, cap = 0;
    *parts = NULL;
    *bytes = 0;
    for (uint32_t k = 1; k <= PARTS_MAX; k++) {
        if (!vms_bundle_part_name(path, k, name, sizeof name) || stat(name, &st) < 0 ||
            !S_ISREG(st.st_mode))
            break;
        if (vms_grow(parts, &cap, n + 2, sizeof **parts) || !((*parts)[n] = strdup(name))) {
            vms_bundle_parts_free(*parts);
            return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
        }
        (*parts)[++n] = NULL;
        *bytes += (uint64_t)st.st_size;
    }
    if (!n)
        return fsp_fail(err, FSP_EK_OPEN, -ENOENT, "%s: cannot open: %s", path, strerror(ENOENT));
    return 0;
}

void vms_bundle_parts_free(char **parts)
{
    for (size_t i = 0; parts && parts[i]; i++)
        free(parts[i]);
    free(parts);
}
