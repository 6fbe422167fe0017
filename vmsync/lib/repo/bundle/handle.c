/* A bundle as a read-only repository: opening reads and checks the whole
 * file (reader.c) and keeps what it learnt, the version, its manifest and
 * where each object is; objects are read again from the file when fetched.
 * Every operation that writes is NULL in the table, so repo.h answers it
 * "read-only"; a bundle holds no leases and no audit log. */
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

typedef struct vms_bundle_repo {
    struct vms_repo base; /* first: a vms_repo * is this handle */
    char *path;
    struct vms_bundle_contents c;
    struct vms_traffic traffic;
} vms_bundle_repo;

static vms_bundle_repo *of(vms_repo *r) { return (vms_bundle_repo *)r; }

static void bundle_close(vms_repo *r)
{
    vms_bundle_repo *b = of(r);
    vms_bundle_contents_free(&b->c);
    free(b->path);
    free(b);
}

static const char *bundle_path(const vms_repo *r) { return ((const vms_bundle_repo *)r)->path; }

static void bundle_traffic(const vms_repo *r, struct vms_traffic *out)
{
    *out = ((const vms_bundle_repo *)r)->traffic;
}

/* ---- objects ------------------------------------------------------------------ */

static int bundle_has(vms_repo *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, uint8_t *present,
                      struct vms_object_size *sizes, fsp_error *err)
{
    const struct vms_bundle_contents *c = &of(r)->c;
    (void)err;
    for (size_t k = 0; k < n; k++) {
        size_t i;
        present[k] = vms_keyset_find(&c->ids, hashes[k], &i);
        if (sizes)
            sizes[k] = present[k] ? (struct vms_object_size){c->locs[i].len,
                                                             (uint32_t)vms_bundle_stored_share(c, &c->locs[i])}
                                  : (struct vms_object_size){0, 0};
    }
    return 0;
}

struct counting {
    vms_bundle_repo *b;
    vms_object_cb cb;
    void *ctx;
};

static int count_object(void *ctx, size_t index, const uint8_t *data, size_t len, size_t stored)
{
    struct counting *k = ctx;
    k->b->traffic.objects_received++;
    k->b->traffic.bytes_received_raw += len;
    k->b->traffic.bytes_received += stored;
    return k->cb(k->ctx, index, data, len, stored);
}

static int bundle_get(vms_repo *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, vms_object_cb cb,
                      void *ctx, fsp_error *err)
{
    struct counting k = {of(r), cb, ctx};
    return vms_bundle_fetch(of(r)->path, &of(r)->c, hashes, n, count_object, &k, err);
}

/* ---- the manifest and the version ---------------------------------------------- */

static int bundle_get_manifest(vms_repo *r, const uint8_t id[FSP_SHA256_LEN], const char *dest,
                               fsp_error *err)
{
    const vms_bundle_repo *b = of(r);
    char hex[2 * FSP_SHA256_LEN + 1], tmp[PATH_MAX];
    if (memcmp(id, b->c.version.manifest, FSP_SHA256_LEN)) {
        fsp_hex(id, FSP_SHA256_LEN, hex);
        return fsp_fail(err, VMS_EK_NOTFOUND, -ENOENT, "%s: the bundle has no manifest %s", b->path, hex);
    }
    if (snprintf(tmp, sizeof tmp, "%s.XXXXXX", dest) >= (int)sizeof tmp)
        return fsp_fail(err, FSP_EK_USAGE, -ENAMETOOLONG, "%s: path too long", dest);
    return vms_write_file_durably(tmp, dest, b->c.manifest, b->c.manifest_len, err);
}

/* IMAGE is the bundle's image; VMS_EK_NOTFOUND naming it otherwise. */
static int own_image(const vms_bundle_repo *b, const char *image, fsp_error *err)
{
    const struct vms_version *v = &b->c.version;
    if (!image || !strcmp(image, v->image))
        return 0;
    return fsp_fail(err, VMS_EK_NOTFOUND, -ENOENT, "%s: no image named %s in the bundle (it holds %s@%u)",
                    b->path, image, v->image, v->number);
}

static int bundle_version(vms_repo *r, const char *image, uint32_t version, struct vms_version *out,
                          fsp_error *err)
{
    const vms_bundle_repo *b = of(r);
    const struct vms_version *v = &b->c.version;
    int rc = own_image(b, image, err);
    if (!rc && version && version != v->number)
        rc = fsp_fail(err, VMS_EK_NOTFOUND, -ENOENT, "%s: the bundle holds %s@%u, not version %u",
                      b->path, v->image, v->number, version);
    if (!rc)
        *out = *v;
    return rc;
}

static int bundle_list(vms_repo *r, const char *image, vms_version_cb cb, void *ctx, fsp_error *err)
{
    int rc = own_image(of(r), image, err);
    return rc ? rc : cb(ctx, &of(r)->c.version);
}

/* ---- queries: one image, no lease, no audit log -------------------------------- */

static int bundle_lease_get(vms_repo *r, const char *image, struct vms_lease *out, bool *found,
                            fsp_error *err)
{
    (void)out;
    *found = false;
    return own_image(of(r), image, err);
}

static int bundle_images(vms_repo *r, vms_image_cb cb, void *ctx, fsp_error *err)
{
    const struct vms_version *v = &of(r)->c.version;
    struct vms_image_info info = {v->image, v->number, v->size, v->created, NULL};
    (void)err;
    return cb(ctx, &info);
}

static int bundle_leases(vms_repo *r, const char *image, vms_lease_cb cb, void *ctx, fsp_error *err)
{
    (void)cb;
    (void)ctx;
    return own_image(of(r), image, err);
}

static int bundle_audit_log(vms_repo *r, const char *image, int64_t since, vms_audit_cb cb, void *ctx,
                            fsp_error *err)
{
    (void)r;
    (void)image;
    (void)since;
    (void)cb;
    (void)ctx;
    (void)err;
    return 0;
}

static int bundle_info(vms_repo *r, vms_bundle_info_cb cb, void *ctx, fsp_error *err)
{
    const struct vms_bundle_contents *c = &of(r)->c;
    struct vms_bundle_info info = {
        .format = c->header.format, .version = &c->version,
        .is_signed = (c->header.flags & VMS_BUNDLE_FLAG_SIGNED) != 0, .base = c->header.base,
        .held = (const uint8_t(*)[FSP_SHA256_LEN])c->header.held, .n_held = c->header.n_held,
        .objects = c->ids.n, .bytes_raw = c->header.object_bytes,
        .object_members = c->n_members, .manifest_bytes = c->manifest_len,
        .file_bytes = c->file_bytes,
    };
    (void)err;
    for (size_t m = 1; m <= c->n_members; m++)
        info.bytes_stored += c->members[m].stored;
    return cb(ctx, &info);
}

static const struct vms_repo_ops bundle_ops = {
    .kind = "bundle",
    .close = bundle_close,
    .path = bundle_path,
    .traffic = bundle_traffic,
    .has = bundle_has,
    .get = bundle_get,
    .get_manifest = bundle_get_manifest,
    .version = bundle_version,
    .list = bundle_list,
    .lease_get = bundle_lease_get,
    .images = bundle_images,
    .leases = bundle_leases,
    .audit_log = bundle_audit_log,
    .bundle_info = bundle_info,
};

/* ---- opening ---------------------------------------------------------------------- */

bool vms_bundle_sniff(const char *path)
{
    struct stat st;
    char block[512];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    bool tar = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
               vms_pread_all(fd, block, sizeof block, 0) == 0 && !memcmp(block + 257, "ustar", 5);
    if (fd >= 0)
        close(fd);
    return tar;
}

int vms_bundle_open(const char *path, const struct vms_repo_progress *progress, vms_repo **out,
                    fsp_error *err)
{
    vms_bundle_repo *b = calloc(1, sizeof *b);
    if (!b || !(b->path = strdup(path))) {
        free(b);
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    }
    b->base.ops = &bundle_ops;
    int rc = vms_bundle_read(path, progress, &b->c, err);
    if (rc) {
        bundle_close(&b->base);
        return rc;
    }
    *out = &b->base;
    return 0;
}
