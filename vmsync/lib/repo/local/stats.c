/* What a local repository holds (vmsync stats): totals by SQL over the
 * catalog and the object index, and each image's part by its manifests.  No
 * pack is read. */
#include "base/keyset.h"
#include "repo/local/local.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NO_OWNER UINT32_MAX
#define SHARED (UINT32_MAX - 1)

/* The object index, with who uses each object (an image's index, SHARED, or
 * NO_OWNER), parallel to the set's dense indexes. */
struct index_map {
    struct vms_keyset objects;
    uint32_t *len, *stored, *owner;
    size_t cap;
};

static int nomem(fsp_error *err) { return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

static int grow_index(struct index_map *m)
{
    size_t want = m->cap ? m->cap * 2 : 1024;
    uint32_t *l = realloc(m->len, want * sizeof *l), *s = l ? realloc(m->stored, want * sizeof *s) : NULL;
    if (l)
        m->len = l;
    if (s)
        m->stored = s;
    uint32_t *o = s ? realloc(m->owner, want * sizeof *o) : NULL;
    if (!o)
        return -ENOMEM;
    m->owner = o;
    m->cap = want;
    return 0;
}

static int add_indexed(struct index_map *m, sqlite3_stmt *st)
{
    size_t i;
    bool added;
    if (sqlite3_column_bytes(st, 0) != FSP_SHA256_LEN)
        return -EUCLEAN;
    if (m->objects.n == m->cap && grow_index(m))
        return -ENOMEM;
    if (vms_keyset_add(&m->objects, sqlite3_column_blob(st, 0), &i, &added))
        return -ENOMEM;
    m->len[i] = (uint32_t)sqlite3_column_int64(st, 1);
    m->stored[i] = (uint32_t)sqlite3_column_int64(st, 2);
    m->owner[i] = NO_OWNER;
    return 0;
}

static int load_index(vms_local *r, struct index_map *m, fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(r, "SELECT hash, len, stored_len FROM objects", &st, err);
    int s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
        int why = add_indexed(m, st);
        if (why == -ENOMEM)
            rc = nomem(err);
        else if (why)
            rc = fsp_fail(err, FSP_EK_CORRUPT, -EUCLEAN, "%s: catalog: an object has a bad hash",
                          r->path);
    }
    if (!rc && s != SQLITE_DONE)
        rc = vms_repo_db_fail(r, s, "listing objects", err);
    sqlite3_finalize(st);
    return rc;
}

static void free_index(struct index_map *m)
{
    vms_keyset_free(&m->objects);
    free(m->len);
    free(m->stored);
    free(m->owner);
}

/* ---- each image's objects ---- */

struct image_walk {
    struct index_map *m;
    struct vms_repo_stats *out;
    struct vms_image_usage *u;
    struct vms_keyset mine; /* the stored objects this image uses, each once */
    uint32_t image;
    uint64_t used_raw;
};

static int note_object(void *ctx, const uint8_t hash[FSP_SHA256_LEN], uint64_t len)
{
    struct image_walk *w = ctx;
    size_t k, unused;
    bool added;
    w->out->referenced_bytes += len;
    if (!vms_keyset_find(&w->m->objects, hash, &k))
        return 0; /* a volatile file's, not kept */
    if (vms_keyset_add(&w->mine, hash, &unused, &added))
        return -ENOMEM;
    if (!added)
        return 0;
    w->u->shared_objects++; /* until it proves unique, below */
    w->used_raw += w->m->len[k];
    uint32_t *o = &w->m->owner[k];
    *o = *o == NO_OWNER || *o == w->image ? w->image : SHARED;
    return 0;
}

static int walk_version(vms_local *r, sqlite3_stmt *st, struct image_walk *w, fsp_error *err)
{
    if (sqlite3_column_bytes(st, 0) != FSP_SHA256_LEN)
        return fsp_fail(err, FSP_EK_CORRUPT, -EUCLEAN, "%s: catalog: a version has a bad manifest id",
                        r->path);
    char *path = vms_repo_manifest_path(r, sqlite3_column_blob(st, 0));
    int rc = path ? vms_manifest_objects(path, note_object, w, err) : nomem(err);
    free(path);
    return rc == -ENOMEM && !err->kind ? nomem(err) : rc;
}

static int walk_image(vms_local *r, int64_t id, struct image_walk *w, fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(r, "SELECT manifest FROM versions WHERE image_id = ?1", &st, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    int s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
        w->u->versions++;
        rc = walk_version(r, st, w, err);
    }
    if (!rc && s != SQLITE_DONE)
        rc = vms_repo_db_fail(r, s, "listing versions", err);
    sqlite3_finalize(st);
    return rc;
}

/* ---- the images ---- */

struct image_row {
    char *name;
    struct vms_image_usage u;
};

static int walk_images(vms_local *r, struct index_map *m, struct vms_repo_stats *out,
                       struct image_row **rows, size_t *n, fsp_error *err)
{
    sqlite3_stmt *st;
    size_t cap = 0;
    int rc = vms_repo_prepare(r, "SELECT id, name FROM images ORDER BY name", &st, err);
    int s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            struct image_row *p = realloc(*rows, cap * sizeof *p);
            if (!p) {
                rc = nomem(err);
                break;
            }
            *rows = p;
        }
        struct image_row *row = &(*rows)[*n];
        const unsigned char *name = sqlite3_column_text(st, 1);
        *row = (struct image_row){.name = strdup(name ? (const char *)name : "")};
        (*n)++;
        struct image_walk w = {.m = m, .out = out, .u = &row->u, .image = (uint32_t)(*n - 1)};
        rc = row->name ? walk_image(r, sqlite3_column_int64(st, 0), &w, err) : nomem(err);
        vms_keyset_free(&w.mine);
        row->u.shared_raw = w.used_raw; /* less the unique part, below */
    }
    if (!rc && s != SQLITE_DONE)
        rc = vms_repo_db_fail(r, s, "listing images", err);
    sqlite3_finalize(st);
    return rc;
}

static void settle_owners(const struct index_map *m, struct image_row *rows, size_t n)
{
    for (size_t k = 0; k < m->objects.n; k++) {
        uint32_t o = m->owner[k];
        if (o >= n)
            continue;
        struct vms_image_usage *u = &rows[o].u;
        u->unique_objects++;
        u->unique_raw += m->len[k];
        u->unique_stored += m->stored[k];
        u->shared_objects--;
        u->shared_raw -= m->len[k];
    }
}

static int totals(vms_local *r, struct vms_repo_stats *out, fsp_error *err)
{
    int rc = vms_repo_count(r, "SELECT COUNT(*) FROM images", &out->images, err);
    if (!rc)
        rc = vms_repo_count(r, "SELECT COUNT(*) FROM versions", &out->versions, err);
    if (!rc)
        rc = vms_repo_count(r, "SELECT COUNT(*) FROM objects", &out->objects, err);
    if (!rc)
        rc = vms_repo_count(r, "SELECT COALESCE(SUM(len), 0) FROM objects", &out->raw_bytes, err);
    if (!rc)
        rc = vms_repo_count(r, "SELECT COALESCE(SUM(stored_len), 0) FROM objects",
                            &out->stored_bytes, err);
    if (!rc)
        rc = vms_repo_count(r, "SELECT COUNT(*) FROM packs", &out->packs, err);
    if (!rc)
        rc = vms_repo_count(r, "SELECT COALESCE(SUM(bytes), 0) FROM packs", &out->pack_bytes, err);
    return rc;
}

int vms_local_stats(vms_repo *repo, struct vms_repo_stats *out, vms_image_usage_cb cb, void *ctx,
                    fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    struct index_map m = {0};
    struct image_row *rows = NULL;
    size_t n = 0;
    int rc = totals(r, out, err);
    if (!rc)
        rc = load_index(r, &m, err);
    if (!rc)
        rc = walk_images(r, &m, out, &rows, &n, err);
    if (!rc)
        settle_owners(&m, rows, n);
    if (!rc)
        rc = vms_local_gc_estimate(repo, &out->gc, err);
    for (size_t i = 0; !rc && cb && i < n; i++) {
        rows[i].u.name = rows[i].name;
        rc = cb(ctx, &rows[i].u);
    }
    for (size_t i = 0; i < n; i++)
        free(rows[i].name);
    free(rows);
    free_index(&m);
    return rc;
}
