/* Publishing a repository as a static web tree (docs/web.md).  Every file
 * but the top-level index is named by what it holds and never changes:
 * manifests by their id, packs and their indexes by a random name, written
 * once.  A new publish adds the manifests and one pack of the objects not
 * yet published, each through a temporary and a rename, and renames the new
 * top-level index into place last; so a reader sees the old tree or the new
 * one, and a CDN keeps every file it cached. */
#include "base/fileio.h"
#include "base/keyset.h"
#include "repo/web/web.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define TMP_DIR ".vmsync-tmp"

struct publishing {
    vms_repo *src;
    const char *dir;
    struct vms_publish_stats *st;
    struct vms_web_index index;   /* what is published, then what will be */
    struct vms_keyset published;  /* objects in the packs already there */
    struct vms_keyset want;       /* objects to publish now */
    struct vms_web_object *objs;  /* the new pack's, parallel to want */
    size_t cap_versions;
    int pack_fd;
    uint64_t pack_size;
    fsp_error *err;
};

static int nomem(fsp_error *err) { return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

static int io_fail(const char *path, const char *what, int rc, fsp_error *err)
{
    return fsp_fail(err, FSP_EK_IO, rc, "%s: cannot %s: %s", path, what, strerror(-rc));
}

static int make_dir(const char *dir, const char *sub, fsp_error *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s%s%s", dir, sub ? "/" : "", sub ? sub : "");
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return io_fail(path, "create the folder", -errno, err);
    return 0;
}

/* Reads the local file PATH whole (at most MAX bytes). */
static int slurp(const char *path, size_t max, uint8_t **out, size_t *len, fsp_error *err)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno == -ENOENT ? -ENOENT : io_fail(path, "open", -errno, err);
    int rc = fstat(fd, &st) < 0 ? -errno : 0;
    if (!rc && (uint64_t)st.st_size > max)
        rc = -EFBIG;
    *len = rc ? 0 : (size_t)st.st_size;
    *out = rc ? NULL : malloc(*len ? *len : 1);
    if (!rc && !*out)
        rc = -ENOMEM;
    if (!rc)
        rc = vms_pread_all(fd, *out, *len, 0);
    close(fd);
    if (rc) {
        free(*out);
        *out = NULL;
        return io_fail(path, "read", rc, err);
    }
    return 0;
}

/* Writes DATA as DIR/REL through a temporary: fsync, rename, the folder's fsync. */
static int write_file(const char *dir, const char *rel, const void *data, size_t len, fsp_error *err)
{
    char tmp[PATH_MAX], dest[PATH_MAX];
    snprintf(dest, sizeof dest, "%s/%s", dir, rel);
    snprintf(tmp, sizeof tmp, "%s/" TMP_DIR "/file-XXXXXX", dir);
    return vms_write_file_durably(tmp, dest, data, len, err);
}

/* One publish at a time writes DIR: two would each rename an index that
 * lacks the other's pack.  Under the lock, what a publish that crashed
 * left in the temporary folder is removed. */
static int lock_dir(const char *dir, int *fd, fsp_error *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/" TMP_DIR "/lock", dir);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (*fd < 0)
        return io_fail(path, "open", -errno, err);
    if (flock(*fd, LOCK_EX | LOCK_NB) < 0)
        return fsp_fail(err, VMS_EK_CONFLICT, -EBUSY, "%s: another vmsync publish is writing it", dir);
    snprintf(path, sizeof path, "%s/" TMP_DIR, dir);
    DIR *d = opendir(path);
    for (struct dirent *e; d && (e = readdir(d));)
        if (!strncmp(e->d_name, "file-", 5) || !strncmp(e->d_name, "pack-", 5))
            unlinkat(dirfd(d), e->d_name, 0);
    if (d)
        closedir(d);
    return 0;
}

/* ---- what is published already ------------------------------------------------ */

static int read_pack_index(struct publishing *p, const struct vms_web_pack *pk)
{
    char path[PATH_MAX];
    uint8_t *buf, hash[FSP_SHA256_LEN];
    size_t len, n = 0;
    struct vms_web_object *objs = NULL;
    snprintf(path, sizeof path, "%s/packs/%s.idx", p->dir, pk->name);
    int rc = slurp(path, VMS_WEB_IDX_SIZE(VMS_WEB_PACK_OBJECTS_MAX), &buf, &len, p->err);
    if (rc == -ENOENT)
        rc = fsp_fail(p->err, FSP_EK_CORRUPT, -ENOENT, "%s: missing", path);
    if (!rc && (vms_sha256(buf, len, hash), memcmp(hash, pk->idx_hash, FSP_SHA256_LEN)))
        rc = fsp_fail(p->err, FSP_EK_CORRUPT, -EBADMSG, "%s: damaged (its SHA-256 is not the index's)",
                      path);
    if (!rc)
        rc = vms_web_decode_idx(buf, len, pk, &objs, &n, path, p->err);
    for (size_t i = 0; !rc && i < n; i++)
        if (vms_keyset_add(&p->published, objs[i].hash, &(size_t){0}, &(bool){0}))
            rc = nomem(p->err);
    free(objs);
    free(buf);
    return rc;
}

static int read_published(struct publishing *p)
{
    char path[PATH_MAX];
    uint8_t *buf = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/" VMS_WEB_INDEX_FILE, p->dir);
    int rc = slurp(path, VMS_WEB_INDEX_MAX, &buf, &len, p->err);
    if (rc == -ENOENT)
        return 0;
    if (!rc)
        rc = vms_web_decode_index(buf, len, &p->index, path, p->err);
    free(buf);
    free(p->index.versions); /* the repository's catalog says them anew */
    p->index.versions = NULL;
    p->index.n_versions = 0;
    for (size_t i = 0; !rc && i < p->index.n_packs; i++)
        rc = read_pack_index(p, &p->index.packs[i]);
    return rc;
}

/* ---- versions and manifests ------------------------------------------------------ */

static int want_object(void *ctx, const uint8_t hash[FSP_SHA256_LEN], uint64_t len)
{
    struct publishing *p = ctx;
    size_t i;
    bool added;
    (void)len;
    if (vms_keyset_find(&p->published, hash, &i))
        return 0;
    return vms_keyset_add(&p->want, hash, &i, &added) ? nomem(p->err) : 0;
}

static int publish_manifest(struct publishing *p, struct vms_web_version *wv)
{
    char hex[2 * FSP_SHA256_LEN + 1], path[PATH_MAX];
    struct stat st;
    fsp_hex(wv->v.manifest, FSP_SHA256_LEN, hex);
    snprintf(path, sizeof path, "%s/manifests/%s", p->dir, hex);
    int rc = 0;
    if (stat(path, &st) < 0) {
        rc = vms_repo_get_manifest(p->src, wv->v.manifest, path, p->err);
        if (!rc && stat(path, &st) < 0)
            rc = io_fail(path, "stat", -errno, p->err);
        p->st->manifests_written += !rc;
    }
    wv->manifest_bytes = rc ? 0 : (uint64_t)st.st_size;
    if (!rc)
        rc = vms_manifest_needed(path, want_object, p, p->err);
    return rc;
}

static int add_version(void *ctx, const struct vms_version *v)
{
    struct publishing *p = ctx;
    struct vms_web_index *x = &p->index;
    if (vms_grow(&x->versions, &p->cap_versions, x->n_versions + 1, sizeof *x->versions))
        return nomem(p->err);
    x->versions[x->n_versions] = (struct vms_web_version){.v = *v};
    int rc = publish_manifest(p, &x->versions[x->n_versions]);
    x->n_versions += !rc;
    p->st->versions += !rc;
    return rc;
}

/* ---- the new pack ------------------------------------------------------------------- */

static int add_object(void *ctx, size_t index, uint8_t codec, const uint8_t *body, size_t stored,
                      size_t len)
{
    struct publishing *p = ctx;
    struct vms_web_object *o = &p->objs[index];
    if (o->offset)
        return 0; /* asked for once; a second copy adds nothing */
    int rc = vms_write_all(p->pack_fd, body, stored);
    if (rc)
        return io_fail(p->dir, "write a pack", rc, p->err);
    *o = (struct vms_web_object){.offset = p->pack_size, .stored = (uint32_t)stored,
                                 .len = (uint32_t)len, .codec = codec};
    memcpy(o->hash, p->want.keys[index], FSP_SHA256_LEN);
    p->pack_size += stored;
    p->st->objects_written++;
    p->st->bytes_written += stored;
    return 0;
}

static void pack_name(char name[VMS_WEB_PACK_NAME_LEN + 1])
{
    uint8_t id[8] = {0};
    if (getrandom(id, sizeof id, 0) != sizeof id)
        for (size_t i = 0; i < sizeof id; i++)
            id[i] = (uint8_t)(rand() ^ getpid() >> i);
    memcpy(name, "pack-", 5);
    fsp_hex(id, sizeof id, name + 5);
}

/* The pack's index, then the pack and the index into packs/. */
static int commit_pack(struct publishing *p, const char *tmp, struct vms_web_pack *pk)
{
    char dest[PATH_MAX], rel[64];
    struct vms_wbuf b = {0};
    size_t n = p->want.n;
    qsort(p->objs, n, sizeof *p->objs, vms_web_object_cmp);
    vms_web_encode_idx(&b, p->objs, n);
    int rc = b.failed ? nomem(p->err) : 0;
    snprintf(dest, sizeof dest, "%s/packs/%s.pack", p->dir, pk->name);
    if (!rc)
        rc = vms_commit_file(p->pack_fd, tmp, dest, p->err);
    else
        close(p->pack_fd);
    p->pack_fd = -1;
    snprintf(rel, sizeof rel, "packs/%s.idx", pk->name);
    if (!rc) {
        vms_sha256(b.p, b.len, pk->idx_hash);
        rc = write_file(p->dir, rel, b.p, b.len, p->err);
    }
    vms_wbuf_free(&b);
    return rc;
}

static int missing_object(struct publishing *p)
{
    char hex[2 * FSP_SHA256_LEN + 1];
    for (size_t i = 0; i < p->want.n; i++)
        if (!p->objs[i].offset) {
            fsp_hex(p->want.keys[i], FSP_SHA256_LEN, hex);
            return fsp_fail(p->err, FSP_EK_CORRUPT, -ENOENT, "%s: object %s is not in the repository",
                            vms_repo_path(p->src), hex);
        }
    return 0;
}

static int write_pack(struct publishing *p)
{
    char tmp[PATH_MAX];
    struct vms_web_pack pk = {0};
    if (!p->want.n)
        return 0;
    if (!(p->objs = calloc(p->want.n, sizeof *p->objs)) ||
        vms_grow(&p->index.packs, &(size_t){p->index.n_packs}, p->index.n_packs + 1, sizeof pk))
        return nomem(p->err);
    pack_name(pk.name);
    snprintf(tmp, sizeof tmp, "%s/" TMP_DIR "/pack-XXXXXX", p->dir);
    if ((p->pack_fd = vms_mkostemp_readable(tmp)) < 0)
        return io_fail(tmp, "create", p->pack_fd, p->err);
    p->pack_size = VMS_WEB_MAGIC_LEN;
    int rc = vms_write_all(p->pack_fd, VMS_WEB_PACK_MAGIC, VMS_WEB_MAGIC_LEN);
    if (rc)
        rc = io_fail(tmp, "write", rc, p->err);
    if (!rc)
        rc = vms_repo_get_stored(p->src, (const uint8_t(*)[FSP_SHA256_LEN])p->want.keys, p->want.n,
                                 add_object, p, p->err);
    if (!rc)
        rc = missing_object(p);
    pk.objects = p->want.n;
    pk.bytes = p->pack_size;
    if (!rc)
        rc = commit_pack(p, tmp, &pk);
    if (p->pack_fd >= 0)
        close(p->pack_fd);
    if (rc)
        unlink(tmp);
    if (!rc) {
        p->index.packs[p->index.n_packs++] = pk;
        p->st->packs_written++;
    }
    return rc;
}

static int write_index(struct publishing *p)
{
    struct vms_wbuf b = {0};
    vms_web_encode_index(&b, &p->index);
    int rc = b.failed ? nomem(p->err) : write_file(p->dir, VMS_WEB_INDEX_FILE, b.p, b.len, p->err);
    vms_wbuf_free(&b);
    return rc;
}

int vms_web_publish(vms_repo *src, const char *dir, struct vms_publish_stats *st, fsp_error *err)
{
    struct publishing p = {.src = src, .dir = dir, .st = st, .pack_fd = -1, .err = err};
    int lock = -1;
    memset(st, 0, sizeof *st);
    int rc = make_dir(dir, NULL, err);
    if (!rc)
        rc = make_dir(dir, "manifests", err);
    if (!rc)
        rc = make_dir(dir, "packs", err);
    if (!rc)
        rc = make_dir(dir, TMP_DIR, err);
    if (!rc)
        rc = lock_dir(dir, &lock, err);
    if (!rc)
        rc = read_published(&p);
    if (!rc)
        rc = vms_repo_list(src, NULL, add_version, &p, err);
    if (!rc)
        rc = write_pack(&p);
    if (!rc)
        rc = write_index(&p);
    vms_web_index_free(&p.index);
    vms_keyset_free(&p.published);
    vms_keyset_free(&p.want);
    free(p.objs);
    if (lock >= 0)
        close(lock);
    return rc;
}
