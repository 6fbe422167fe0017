/* The reflector's cache on disk (cache.h): object and manifest files, the
 * fetch locks, and eviction of the least recently used. */
#include "repo/cache/store.h"

#include "base/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#define HEADER_LEN 5 /* codec, raw length */

static int cache_fail(const struct vms_cache_store *s, int rc, const char *what, fsp_error *err)
{
    (void)s; /* the client sees this: no path */
    return fsp_fail(err, FSP_EK_IO, rc, "the reflector's cache: %s: %s", what, strerror(-rc));
}

static int make_dir(const struct vms_cache_store *s, const char *sub, fsp_error *err)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", s->dir, sub);
    if (mkdir(p, 0755) < 0 && errno != EEXIST)
        return cache_fail(s, -errno, sub, err);
    return 0;
}

/* Temporary files of sessions that ended without renaming them. */
static void drop_stale_temps(const struct vms_cache_store *s)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/tmp", s->dir);
    DIR *d = opendir(p);
    struct dirent *de;
    time_t old = time(NULL) - 3600;
    struct stat st;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.' && !fstatat(dirfd(d), de->d_name, &st, 0) && st.st_mtime < old)
            unlinkat(dirfd(d), de->d_name, 0);
    if (d)
        closedir(d);
}

int vms_cache_store_open(struct vms_cache_store *s, const char *dir, uint64_t max, fsp_error *err)
{
    s->max = max;
    s->lock_fd = -1;
    if (strlen(dir) >= sizeof s->dir)
        return fsp_fail(err, FSP_EK_USAGE, -ENAMETOOLONG, "the reflector's --cache-dir: too long");
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    /* the images are the office's: the branch server's other users read none */
    int rc = mkdir(dir, 0700) < 0 && errno != EEXIST ? cache_fail(s, -errno, "--cache-dir", err) : 0;
    if (!rc)
        rc = make_dir(s, "objects", err);
    if (!rc)
        rc = make_dir(s, "manifests", err);
    if (!rc)
        rc = make_dir(s, "tmp", err);
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/fetching", dir);
    if (!rc && (s->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
        rc = cache_fail(s, -errno, "fetching", err);
    s->zc = rc ? NULL : ZSTD_createCCtx();
    s->zd = rc ? NULL : ZSTD_createDCtx();
    if (!rc && (!s->zc || !s->zd))
        rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    if (!rc)
        drop_stale_temps(s);
    return rc;
}

void vms_cache_store_close(struct vms_cache_store *s)
{
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    s->lock_fd = -1;
    ZSTD_freeCCtx(s->zc);
    ZSTD_freeDCtx(s->zd);
    free(s->buf);
    free(s->plain);
    s->buf = s->plain = NULL;
}

void vms_cache_path(const struct vms_cache_store *s, enum vms_cache_kind kind,
                    const uint8_t hash[FSP_SHA256_LEN], char *out, size_t cap)
{
    char hex[2 * FSP_SHA256_LEN + 1];
    fsp_hex(hash, FSP_SHA256_LEN, hex);
    if (kind == VMS_CACHE_OBJECT)
        snprintf(out, cap, "%s/objects/%.2s/%s", s->dir, hex, hex);
    else
        snprintf(out, cap, "%s/manifests/%s", s->dir, hex);
}

/* ---- locks: one byte of DIR/fetching per hash ------------------------------------- */

static off_t lock_offset(enum vms_cache_kind kind, const uint8_t hash[FSP_SHA256_LEN])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | hash[i];
    return (off_t)((v >> 2) | (uint64_t)kind << 61); /* positive, and kinds apart */
}

static int lock_op(struct vms_cache_store *s, enum vms_cache_kind kind,
                   const uint8_t hash[FSP_SHA256_LEN], int cmd, short type)
{
    struct flock l = {.l_type = type, .l_whence = SEEK_SET, .l_start = lock_offset(kind, hash),
                      .l_len = 1};
    int rc;
    while ((rc = fcntl(s->lock_fd, cmd, &l)) < 0 && errno == EINTR)
        ;
    return rc < 0 ? -errno : 0;
}

bool vms_cache_try_lock(struct vms_cache_store *s, enum vms_cache_kind kind,
                        const uint8_t hash[FSP_SHA256_LEN])
{
    return lock_op(s, kind, hash, F_SETLK, F_WRLCK) == 0;
}

void vms_cache_wait_unlocked(struct vms_cache_store *s, enum vms_cache_kind kind,
                             const uint8_t hash[FSP_SHA256_LEN])
{
    if (lock_op(s, kind, hash, F_SETLKW, F_WRLCK) == 0)
        vms_cache_unlock(s, kind, hash);
}

void vms_cache_unlock(struct vms_cache_store *s, enum vms_cache_kind kind,
                      const uint8_t hash[FSP_SHA256_LEN])
{
    lock_op(s, kind, hash, F_SETLK, F_UNLCK);
}

/* ---- objects ----------------------------------------------------------------------- */

bool vms_cache_has(const struct vms_cache_store *s, enum vms_cache_kind kind,
                   const uint8_t hash[FSP_SHA256_LEN], struct vms_object_size *size)
{
    char p[PATH_MAX];
    vms_cache_path(s, kind, hash, p, sizeof p);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    uint8_t h[HEADER_LEN];
    struct stat st;
    bool ok = fd >= 0 && !fstat(fd, &st) &&
              (kind == VMS_CACHE_MANIFEST ||
               (st.st_size >= HEADER_LEN && !vms_pread_all(fd, h, sizeof h, 0)));
    if (ok && size && kind == VMS_CACHE_OBJECT) {
        size->len = (uint32_t)h[1] | (uint32_t)h[2] << 8 | (uint32_t)h[3] << 16 | (uint32_t)h[4] << 24;
        size->stored = (uint32_t)(st.st_size - HEADER_LEN);
    }
    if (fd >= 0)
        close(fd);
    return ok;
}

static int grow(uint8_t **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    uint8_t *q = realloc(*p, need);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = need;
    return 0;
}

/* The object's body into s->buf: -ENOENT when the cache lacks it (or lost it
 * to eviction a moment ago). */
int vms_cache_read(struct vms_cache_store *s, const uint8_t hash[FSP_SHA256_LEN],
                   struct vms_cached_object *o, fsp_error *err)
{
    char p[PATH_MAX];
    vms_cache_path(s, VMS_CACHE_OBJECT, hash, p, sizeof p);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ENOENT : cache_fail(s, -errno, "reading an object", err);
    struct stat st;
    int rc = fstat(fd, &st) < 0 ? -errno : 0;
    if (!rc && (st.st_size < HEADER_LEN || st.st_size > VMS_OBJECT_MAX + HEADER_LEN))
        rc = -EBADMSG;
    if (!rc)
        rc = grow(&s->buf, &s->buf_cap, (size_t)st.st_size);
    if (!rc)
        rc = vms_pread_all(fd, s->buf, (size_t)st.st_size, 0);
    if (!rc)
        futimens(fd, NULL); /* used now: the last to be evicted */
    close(fd);
    if (rc == -EBADMSG || rc == -ENODATA) {
        unlink(p); /* damaged: fetched again */
        return -ENOENT;
    }
    if (rc)
        return cache_fail(s, rc, "reading an object", err);
    o->codec = s->buf[0];
    o->len = (uint32_t)s->buf[1] | (uint32_t)s->buf[2] << 8 | (uint32_t)s->buf[3] << 16 |
             (uint32_t)s->buf[4] << 24;
    o->body = s->buf + HEADER_LEN;
    o->stored = (size_t)st.st_size - HEADER_LEN;
    if (o->len > VMS_OBJECT_MAX || (o->codec != VMS_CODEC_ZSTD && o->codec != VMS_CODEC_RAW)) {
        unlink(p); /* a damaged header: fetched again */
        return -ENOENT;
    }
    return 0;
}

/* Removes the damaged file, so that the next request fetches the object again. */
static int corrupt_cached(struct vms_cache_store *s, const uint8_t hash[FSP_SHA256_LEN], fsp_error *err)
{
    char hex[2 * FSP_SHA256_LEN + 1], p[PATH_MAX];
    fsp_hex(hash, FSP_SHA256_LEN, hex);
    vms_cache_path(s, VMS_CACHE_OBJECT, hash, p, sizeof p);
    unlink(p);
    return fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG,
                    "object %s was damaged in the reflector's cache (removed: try again)", hex);
}

int vms_cache_plain(struct vms_cache_store *s, const uint8_t hash[FSP_SHA256_LEN],
                    const struct vms_cached_object *o, const uint8_t **data, fsp_error *err)
{
    *data = o->body;
    if (o->codec == VMS_CODEC_ZSTD) {
        if (grow(&s->plain, &s->plain_cap, o->len + 1))
            return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
        size_t got = ZSTD_decompressDCtx(s->zd, s->plain, o->len, o->body, o->stored);
        if (ZSTD_isError(got) || got != o->len)
            return corrupt_cached(s, hash, err);
        *data = s->plain;
    } else if (o->codec != VMS_CODEC_RAW || o->stored != o->len) {
        return corrupt_cached(s, hash, err);
    }
    uint8_t got[FSP_SHA256_LEN];
    vms_sha256(*data, o->len, got);
    return memcmp(got, hash, FSP_SHA256_LEN) ? corrupt_cached(s, hash, err) : 0;
}

static int write_temp(struct vms_cache_store *s, const uint8_t *body, size_t n, char *tmp,
                      size_t cap, fsp_error *err)
{
    snprintf(tmp, cap, "%s/tmp/objXXXXXX", s->dir);
    int fd = vms_mkostemp_readable(tmp);
    int rc = fd < 0 ? fd : vms_write_all(fd, body, n);
    if (!rc && fdatasync(fd) < 0)
        rc = -errno;
    if (fd >= 0)
        close(fd);
    if (rc && fd >= 0)
        unlink(tmp);
    return rc ? cache_fail(s, rc, "writing an object", err) : 0;
}

static int move_in(struct vms_cache_store *s, const char *tmp, const char *dest, fsp_error *err)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", dest);
    *strrchr(dir, '/') = 0;
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return cache_fail(s, -errno, "objects", err);
    if (rename(tmp, dest) < 0) {
        int rc = -errno;
        unlink(tmp);
        return cache_fail(s, rc, "storing an object", err);
    }
    return 0;
}

int vms_cache_store(struct vms_cache_store *s, const uint8_t hash[FSP_SHA256_LEN],
                    const uint8_t *data, size_t len, fsp_error *err)
{
    size_t bound = ZSTD_compressBound(len) + HEADER_LEN;
    if (grow(&s->buf, &s->buf_cap, bound > len + HEADER_LEN ? bound : len + HEADER_LEN))
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    size_t z = len ? ZSTD_compressCCtx(s->zc, s->buf + HEADER_LEN, bound - HEADER_LEN, data, len,
                                       VMS_STORE_LEVEL) : 0;
    s->buf[0] = VMS_CODEC_ZSTD;
    if (!len || ZSTD_isError(z) || z >= len) {
        s->buf[0] = VMS_CODEC_RAW;
        memcpy(s->buf + HEADER_LEN, data, len);
        z = len;
    }
    for (int i = 0; i < 4; i++)
        s->buf[1 + i] = (uint8_t)(len >> (8 * i));
    char tmp[PATH_MAX], dest[PATH_MAX];
    vms_cache_path(s, VMS_CACHE_OBJECT, hash, dest, sizeof dest);
    int rc = write_temp(s, s->buf, z + HEADER_LEN, tmp, sizeof tmp, err);
    if (!rc)
        rc = move_in(s, tmp, dest, err);
    if (!rc)
        s->added += z + HEADER_LEN;
    if (!rc)
        s->stored += z + HEADER_LEN;
    return rc;
}

int vms_cache_temp(struct vms_cache_store *s, char *tmp, size_t cap, fsp_error *err)
{
    snprintf(tmp, cap, "%s/tmp/mfXXXXXX", s->dir);
    int fd = vms_mkostemp_readable(tmp);
    if (fd < 0)
        return cache_fail(s, fd, "a temporary file", err);
    close(fd);
    return 0;
}

/* ---- eviction ----------------------------------------------------------------------- */

struct cached_file {
    char *path;
    struct timespec used;
    uint64_t size;
};

struct file_list {
    struct cached_file *f;
    size_t n, cap;
    uint64_t total;
};

static void list_add(struct file_list *l, const char *dir, const char *name, const struct stat *st)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        struct cached_file *p = realloc(l->f, cap * sizeof *p);
        if (!p)
            return;
        l->f = p;
        l->cap = cap;
    }
    char *path = vms_path_join(dir, name);
    if (!path)
        return;
    l->f[l->n++] = (struct cached_file){path, st->st_mtim, (uint64_t)st->st_size};
    l->total += (uint64_t)st->st_size;
}

static void list_dir(struct file_list *l, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    struct stat st;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW))
            continue;
        if (S_ISDIR(st.st_mode) && depth > 0) {
            char *sub = vms_path_join(dir, de->d_name);
            if (sub)
                list_dir(l, sub, depth - 1);
            free(sub);
        } else if (S_ISREG(st.st_mode)) {
            list_add(l, dir, de->d_name, &st);
        }
    }
    if (d)
        closedir(d);
}

static int by_use(const void *a, const void *b)
{
    const struct cached_file *x = a, *y = b;
    if (x->used.tv_sec != y->used.tv_sec)
        return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
    return (x->used.tv_nsec > y->used.tv_nsec) - (x->used.tv_nsec < y->used.tv_nsec);
}

/* Every file the cache holds: objects (one level of fan-out) and manifests. */
static void list_cache(const struct vms_cache_store *s, struct file_list *l)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/objects", s->dir);
    list_dir(l, p, 1);
    snprintf(p, sizeof p, "%s/manifests", s->dir);
    list_dir(l, p, 0);
}

uint64_t vms_cache_size(const struct vms_cache_store *s)
{
    struct file_list l = {0};
    list_cache(s, &l);
    for (size_t i = 0; i < l.n; i++)
        free(l.f[i].path);
    free(l.f);
    return l.total;
}

void vms_cache_evict(struct vms_cache_store *s)
{
    struct file_list l = {0};
    list_cache(s, &l);
    if (l.total > s->max && l.n > 1)
        qsort(l.f, l.n, sizeof *l.f, by_use);
    for (size_t i = 0; i < l.n; i++) {
        if (l.total > s->max && unlink(l.f[i].path) == 0)
            l.total -= l.f[i].size;
        free(l.f[i].path);
    }
    free(l.f);
    s->added = 0;
}
