/* A check-in into a bundle, on a laptop that cannot reach its repository:
 * the image is scanned into a new manifest, and the bundle carries the next
 * version (its parent the version the image was checked out as, which the
 * image's record names), that manifest, and the objects the parent's
 * manifest lacks, read back from the image and checked.  The repository
 * holds the parent, so `vmsync bundle apply` there records it with
 * check-in's rule.  The parent's manifest is the one the checkout left in
 * the client's cache (found by the version's digest): no repository is
 * opened. */
#include "base/fileio.h"
#include "engine/seeds.h"
#include "manifest/written.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct to_bundle {
    struct vms_ctx *c;
    const struct vms_checkin_bundle_opts *o;
    struct vms_written parent;     /* the image's record */
    char parent_manifest[PATH_MAX], manifest[PATH_MAX];
    struct vms_keyset in_parent, seen;
    struct vms_seed_index image;   /* the new manifest's objects, in the image */
    uint8_t (*to_write)[FSP_SHA256_LEN];
    size_t n_write, cap_write;
    uint64_t write_bytes;
    struct vms_version v;
};

static int nomem(fsp_error *err) { return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

static int read_record(struct to_bundle *t, fsp_error *err)
{
    struct stat st;
    if (lstat(t->o->image, &st) < 0 || !vms_written_load(t->o->image, &st, &t->parent))
        return fsp_fail(err, VMS_EK_CONFLICT, -ENOENT,
                        "%s: vmsync did not check it out, so its parent version is unknown", t->o->image);
    if (strcmp(t->parent.image, t->o->name))
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s holds %s@%u, not %s", t->o->image,
                        t->parent.image, t->parent.version, t->o->name);
    return 0;
}

/* Whether the cached manifest NAME is the parent's (its digest). */
static bool is_parent(struct to_bundle *t, const char *dir, const char *name)
{
    struct vms_loaded *m = NULL;
    fsp_error ignored;
    size_t len = strlen(name);
    if (len < 5 || strcmp(name + len - 5, ".vmsm") ||
        snprintf(t->parent_manifest, sizeof t->parent_manifest, "%s/%s", dir, name) >=
            (int)sizeof t->parent_manifest ||
        vms_loaded_read(t->parent_manifest, &m, &ignored))
        return false;
    bool same = !memcmp(m->summary.digest, t->parent.digest, FSP_SHA256_LEN);
    vms_loaded_free(m);
    return same;
}

static int find_parent(struct to_bundle *t, fsp_error *err)
{
    char dir[PATH_MAX];
    int rc = vms_ctx_cache_path(t->c, "manifests", ".", dir, sizeof dir, err);
    DIR *d = rc ? NULL : opendir(dir);
    struct dirent *de;
    bool found = false;
    while (d && !found && (de = readdir(d)))
        found = is_parent(t, dir, de->d_name);
    if (d)
        closedir(d);
    if (!rc && !found)
        rc = fsp_fail(err, FSP_EK_OPEN, -ENOENT,
                      "%s@%u: its manifest is not in the cache %s (check out with this cache first)",
                      t->parent.image, t->parent.version, t->c->cache);
    return rc;
}

static int note_parent(void *ctx, const uint8_t hash[FSP_SHA256_LEN], uint64_t len)
{
    struct to_bundle *t = ctx;
    size_t i;
    bool added;
    (void)len;
    return vms_keyset_add(&t->in_parent, hash, &i, &added) ? -ENOMEM : 0;
}

static int choose(void *ctx, const uint8_t hash[FSP_SHA256_LEN], uint64_t len)
{
    struct to_bundle *t = ctx;
    size_t i;
    bool added;
    if (vms_keyset_add(&t->seen, hash, &i, &added))
        return -ENOMEM;
    if (!added || vms_keyset_find(&t->in_parent, hash, &i))
        return 0;
    if (vms_grow(&t->to_write, &t->cap_write, t->n_write + 1, sizeof *t->to_write))
        return -ENOMEM;
    memcpy(t->to_write[t->n_write++], hash, FSP_SHA256_LEN);
    t->write_bytes += len;
    return 0;
}

static int scan_image(struct to_bundle *t, fsp_error *err)
{
    static const struct fsp_sink none = {0};
    struct vms_scan_hooks hooks;
    struct vms_loaded *m = NULL;
    char name[64];
    snprintf(name, sizeof name, "to-bundle-%ld.vmsm", (long)getpid());
    int rc = vms_ctx_cache_path(t->c, "tmp", name, t->manifest, sizeof t->manifest, err);
    vms_ctx_scanning(t->c, VMS_PHASE_SCAN_IMAGE, 0, 0);
    if (!rc)
        rc = vms_ctx_scan_into(t->c, t->o->image, t->manifest, 0, &hooks, &none, err);
    if (!rc)
        rc = vms_loaded_read(t->manifest, &m, err);
    if (rc)
        return rc;
    t->v.size = m->image_size;
    memcpy(t->v.digest, m->summary.digest, FSP_SHA256_LEN);
    if (vms_seed_index_add(&t->image, t->o->image, m)) {
        if (!t->image.n_seeds)
            vms_loaded_free(m); /* not in the index, so still ours */
        return nomem(err);
    }
    return 0;
}

/* The manifest's id, as a repository names it: the SHA-256 of the file. */
static int manifest_id(const char *path, uint8_t id[FSP_SHA256_LEN], fsp_error *err)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    uint8_t *p = NULL;
    int rc = !f || fstat(fileno(f), &st) < 0 || !(p = malloc((size_t)st.st_size + 1)) ||
                     fread(p, 1, (size_t)st.st_size, f) != (size_t)st.st_size
                 ? fsp_fail(err, FSP_EK_IO, -EIO, "%s: cannot read back", path)
                 : vms_sha256(p, (size_t)st.st_size, id);
    free(p);
    if (f)
        fclose(f);
    return rc;
}

static int describe(struct to_bundle *t, fsp_error *err)
{
    struct vms_version *v = &t->v;
    snprintf(v->image, sizeof v->image, "%s", t->o->name);
    v->parent = t->parent.version;
    v->number = t->parent.version + 1;
    v->created = (int64_t)time(NULL);
    snprintf(v->message, sizeof v->message, "%s", t->o->message ? t->o->message : "");
    snprintf(v->user, sizeof v->user, "%s", t->c->user);
    snprintf(v->host, sizeof v->host, "%s", t->c->host);
    return manifest_id(t->manifest, v->manifest, err);
}

static int write_objects(struct to_bundle *t, vms_bundle_writer *w, fsp_error *err)
{
    uint8_t *buf = malloc(VMS_OBJECT_MAX);
    int rc = buf ? 0 : nomem(err);
    for (size_t i = 0; !rc && i < t->n_write; i++) {
        const struct vms_seed_loc *loc = vms_seed_find(&t->image, t->to_write[i]);
        rc = loc ? vms_seed_read(&t->image, loc, t->to_write[i], buf, err)
                 : fsp_fail(err, FSP_EK_CORRUPT, -ENOENT, "%s: an object of its manifest is not in it",
                            t->o->image);
        if (!rc)
            rc = vms_bundle_add_object(w, t->to_write[i], buf, loc->len, err);
        if (!rc)
            rc = vms_ctx_progress(t->c, VMS_PHASE_SEND, i + 1, t->n_write, err);
    }
    free(buf);
    return rc;
}

static int write_bundle(struct to_bundle *t, struct vms_stats *st, fsp_error *err)
{
    struct vms_bundle_plan plan = {
        .version = &t->v, .manifest = t->manifest, .base = t->v.parent,
        .objects = t->n_write, .object_bytes = t->write_bytes, .level = 19,
    };
    vms_bundle_writer *w = NULL;
    uint64_t written = 0;
    int rc = vms_bundle_writer_open(t->o->out, &plan, &w, err);
    if (!rc && (rc = write_objects(t, w, err)) != 0)
        vms_bundle_writer_abort(w);
    else if (!rc)
        rc = vms_bundle_writer_commit(w, &written, err);
    st->objects_sent = t->n_write;
    st->bytes_sent_raw = t->write_bytes;
    st->bytes_sent_compressed = written;
    return rc;
}

static int run(struct to_bundle *t, struct vms_stats *st, fsp_error *err)
{
    struct stat ignored;
    int rc = read_record(t, err);
    if (!rc && !strcmp(t->o->out, "-"))
        rc = fsp_fail(err, FSP_EK_USAGE, -EINVAL, "a check-in bundle is written to a file");
    if (!rc && lstat(t->o->out, &ignored) == 0)
        rc = fsp_fail(err, VMS_EK_CONFLICT, -EEXIST, "%s: already exists", t->o->out);
    if (!rc)
        rc = find_parent(t, err);
    if (!rc && (rc = vms_manifest_needed(t->parent_manifest, note_parent, t, err)) == -ENOMEM)
        rc = nomem(err);
    if (!rc)
        rc = scan_image(t, err);
    if (!rc && (rc = vms_manifest_needed(t->manifest, choose, t, err)) == -ENOMEM)
        rc = nomem(err);
    if (!rc)
        rc = describe(t, err);
    if (!rc)
        rc = write_bundle(t, st, err);
    st->version = t->v.number;
    st->image_size = t->v.size;
    memcpy(st->canonical_digest, t->v.digest, FSP_SHA256_LEN);
    return rc;
}

int vms_checkin_to_bundle(vms_client *cl, const struct vms_checkin_bundle_opts *o,
                          struct vms_stats *stats, fsp_error *err)
{
    struct vms_ctx c;
    struct to_bundle t = {.c = &c, .o = o};
    memset(stats, 0, sizeof *stats);
    vms_ctx_begin(&c, cl, NULL); /* no repository: the laptop cannot reach it */
    int rc = o->name && o->image && o->out
                 ? run(&t, stats, err)
                 : fsp_fail(err, FSP_EK_USAGE, -EINVAL, "a check-in bundle needs NAME, IMAGE and FILE");
    if (t.manifest[0])
        unlink(t.manifest);
    vms_keyset_free(&t.in_parent);
    vms_keyset_free(&t.seen);
    vms_seed_index_free(&t.image);
    free(t.to_write);
    stats->seconds = vms_ctx_elapsed(&c);
    return vms_ctx_close(&c, rc, err);
}
