/* Bundles: writing one from any repository (the version, its manifest and
 * the objects its receiver lacks), and telling what one holds.  What the
 * receiver holds is learnt as a checkout learns its seeds: an image is
 * scanned lazily for what the target needs (and cached), a manifest file is
 * read; a base version's manifest comes from the repository.  The objects
 * are then read from the repository in the manifest's order, so that
 * neighbours in the image sit together in the solid members. */
#include "engine/seeds.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct bundling {
    struct vms_ctx *c;
    const struct vms_bundle_create_opts *o;
    struct vms_bundle_stats *st;
    struct vms_version version;
    char manifest[PATH_MAX];
    struct vms_loaded *target;
    struct vms_seed_index held;        /* every object the receiver holds */
    uint8_t (*digests)[FSP_SHA256_LEN]; /* the canonical digests of what it holds */
    size_t n_digests;
    struct vms_keyset needed;          /* every object the version needs, once */
    uint8_t (*to_write)[FSP_SHA256_LEN];
    size_t n_write, cap_write;
    uint64_t write_bytes, done_bytes;
    vms_bundle_writer *w;
    fsp_error *err;                    /* the operation's, for the fetch's callback */
};

static int nomem(fsp_error *err) { return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

/* Indexes M (whose ownership passes on) as held; its digest goes to the
 * header when LISTED (a base version is named by its number instead). */
static int hold(struct bundling *b, const char *path, struct vms_loaded *m, bool listed,
                fsp_error *err)
{
    void *grown = listed ? realloc(b->digests, (b->n_digests + 1) * sizeof *b->digests) : NULL;
    if (listed && !grown) {
        vms_loaded_free(m);
        return nomem(err);
    }
    if (listed) {
        b->digests = grown;
        memcpy(b->digests[b->n_digests++], m->summary.digest, FSP_SHA256_LEN);
    }
    size_t before = b->held.n_seeds;
    if (vms_seed_index_add(&b->held, path, m)) {
        if (b->held.n_seeds == before)
            vms_loaded_free(m); /* not in the index, so still ours */
        return nomem(err);
    }
    return 0;
}

static int load_have(struct bundling *b, const char *path, const struct vms_seed_needs *needs,
                     fsp_error *err)
{
    struct vms_loaded *m = NULL;
    bool rescanned;
    int rc = vms_is_manifest(path) ? vms_loaded_read(path, &m, err)
                                   : vms_seed_load(b->c, path, needs, &m, &rescanned, err);
    return rc ? rc : hold(b, path, m, true, err);
}

static int load_haves(struct bundling *b, fsp_error *err)
{
    struct vms_seed_needs needs = {0};
    uint64_t *sizes = NULL;
    int rc = b->o->n_have ? vms_seed_needs_of(b->target, &needs, &sizes) : 0;
    if (rc)
        return nomem(err);
    for (size_t i = 0; !rc && i < b->o->n_have; i++) {
        vms_ctx_scanning(b->c, VMS_PHASE_SCAN_SEED, (uint32_t)i + 1, (uint32_t)b->o->n_have);
        rc = load_have(b, b->o->have[i], &needs, err);
    }
    free(sizes);
    return rc;
}

static int load_base(struct bundling *b, fsp_error *err)
{
    struct vms_version base;
    char path[PATH_MAX];
    struct vms_loaded *m = NULL;
    if (!b->o->base)
        return 0;
    if (b->o->base >= b->version.number)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "the base %s@%u is not older than %s@%u",
                        b->o->name, b->o->base, b->o->name, b->version.number);
    int rc = vms_repo_version(b->c->repo, b->o->name, b->o->base, &base, err);
    if (!rc)
        rc = vms_ctx_manifest(b->c, base.manifest, path, sizeof path, err);
    if (!rc)
        rc = vms_loaded_read(path, &m, err);
    return rc ? rc : hold(b, path, m, false, err);
}

/* ---- what goes in ------------------------------------------------------------- */

static int consider(void *ctx, const uint8_t hash[FSP_SHA256_LEN], uint64_t len)
{
    struct bundling *b = ctx;
    size_t i;
    bool added;
    if (vms_keyset_add(&b->needed, hash, &i, &added))
        return -ENOMEM;
    if (!added)
        return 0;
    if (vms_seed_find(&b->held, hash)) {
        b->st->objects_held++;
        b->st->bytes_held += len;
        return 0;
    }
    if (vms_grow(&b->to_write, &b->cap_write, b->n_write + 1, sizeof *b->to_write))
        return -ENOMEM;
    memcpy(b->to_write[b->n_write++], hash, FSP_SHA256_LEN);
    b->write_bytes += len;
    return 0;
}

static int choose_objects(struct bundling *b, fsp_error *err)
{
    int rc = vms_manifest_needed(b->manifest, consider, b, err);
    return rc == -ENOMEM ? nomem(err) : rc;
}

static int on_object(void *ctx, size_t index, const uint8_t *data, size_t len, size_t stored)
{
    struct bundling *b = ctx;
    (void)stored;
    b->done_bytes += len;
    b->st->objects++;
    b->st->bytes_raw += len;
    int rc = vms_bundle_add_object(b->w, b->to_write[index], data, len, b->err);
    return rc ? rc : vms_ctx_progress(b->c, VMS_PHASE_FETCH, b->done_bytes, b->write_bytes, b->err);
}

static int write_bundle(struct bundling *b, fsp_error *err)
{
    struct vms_bundle_plan plan = {
        .version = &b->version, .manifest = b->manifest,
        .held = (const uint8_t(*)[FSP_SHA256_LEN])b->digests, .n_held = b->n_digests,
        .base = b->o->base, .objects = b->n_write, .object_bytes = b->write_bytes,
        .level = b->o->level ? b->o->level : 19, .split = b->o->split,
        .replace = b->o->force,
    };
    b->err = err;
    int rc = vms_bundle_writer_open(b->o->out, &plan, &b->w, err);
    if (!rc && b->n_write)
        rc = vms_repo_get(b->c->repo, (const uint8_t(*)[FSP_SHA256_LEN])b->to_write, b->n_write,
                          on_object, b, err);
    if (!rc)
        rc = vms_bundle_writer_commit(b->w, &b->st->bytes_written, err);
    else
        vms_bundle_writer_abort(b->w);
    b->w = NULL;
    return rc;
}

/* A bundle's first part, or a second one that would be read after it. */
static int refuse_existing_parts(const char *out, fsp_error *err)
{
    char second[PATH_MAX];
    struct stat st;
    if (lstat(out, &st) == 0)
        return fsp_fail(err, VMS_EK_CONFLICT, -EEXIST, "%s: already exists", out);
    if (snprintf(second, sizeof second, "%s.002", out) < (int)sizeof second && lstat(second, &st) == 0)
        return fsp_fail(err, VMS_EK_CONFLICT, -EEXIST,
                        "%s: already exists, and would be read as the second part of %s", second, out);
    return 0;
}

static int check_opts(const struct vms_bundle_create_opts *o, fsp_error *err)
{
    if (!o->name || !o->out)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "a bundle needs the image's name and an output");
    if (o->split && (o->split < (1u << 20) || o->split > VMS_BUNDLE_SPLIT_MAX || !strcmp(o->out, "-")))
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL,
                        "parts of 1 MiB to 4 GiB less a byte (the most a FAT32 file holds), "
                        "written to a file");
    if (o->level < 0 || o->level > 19)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "zstd level %d: expected 1 to 19", o->level);
    int rc = strcmp(o->out, "-") && !o->force ? refuse_existing_parts(o->out, err) : 0;
    if (rc)
        return rc;
    if (o->n_have > VMS_BUNDLE_HELD_MAX)
        return fsp_fail(err, FSP_EK_USAGE, -E2BIG, "%zu images held: at most %u", o->n_have,
                        VMS_BUNDLE_HELD_MAX);
    return 0;
}

static int load_target(struct bundling *b, fsp_error *err)
{
    int rc = vms_repo_version(b->c->repo, b->o->name, b->o->version, &b->version, err);
    if (!rc)
        rc = vms_ctx_manifest(b->c, b->version.manifest, b->manifest, sizeof b->manifest, err);
    if (!rc)
        rc = vms_loaded_read(b->manifest, &b->target, err);
    if (!rc)
        b->st->version = b->version.number;
    return rc;
}

int vms_bundle_create(vms_client *cl, const struct vms_bundle_create_opts *o,
                      struct vms_bundle_stats *stats, fsp_error *err)
{
    struct vms_ctx c;
    struct bundling b = {.c = &c, .o = o, .st = stats};
    memset(stats, 0, sizeof *stats);
    int rc = check_opts(o, err);
    if (rc)
        return rc;
    rc = vms_ctx_open(&c, cl, NULL, err);
    if (!rc)
        rc = load_target(&b, err);
    if (!rc)
        rc = load_haves(&b, err);
    if (!rc)
        rc = load_base(&b, err);
    if (!rc)
        rc = choose_objects(&b, err);
    if (!rc)
        rc = write_bundle(&b, err);
    stats->seconds = vms_ctx_elapsed(&c);
    vms_loaded_free(b.target);
    vms_seed_index_free(&b.held);
    vms_keyset_free(&b.needed);
    free(b.digests);
    free(b.to_write);
    return vms_ctx_close(&c, rc, err);
}

int vms_bundle_show(vms_client *cl, vms_bundle_info_cb cb, void *ctx, fsp_error *err)
{
    struct vms_ctx c;
    int rc = vms_ctx_open(&c, cl, NULL, err);
    if (!rc)
        rc = vms_repo_bundle_info(c.repo, cb, ctx, err);
    return vms_ctx_close(&c, rc, err);
}
