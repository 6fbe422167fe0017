/* A web-served tree (docs/web.md) as a read-only repository.  Opening reads
 * the top-level index (versions and packs); the first lookup of objects
 * reads the pack indexes, each checked against the top index's hash; a
 * fetch sorts the objects by pack and offset and asks for byte ranges,
 * neighbours coalesced, several in flight (http.c).  Every object is checked
 * against its hash, every manifest against its id.  Every operation that
 * writes is NULL in the table, so repo.h answers it "read-only". */
#include "base/fileio.h"
#include "base/keyset.h"
#include "repo/web/web.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#define WEB_GAP_MAX (64u << 10)    /* unwanted bytes a range may carry to save a request */
#define WEB_RANGE_TARGET (4u << 20) /* a range grows to about this many bytes */

typedef struct vms_web_repo {
    struct vms_repo base; /* first: a vms_repo * is this handle */
    char *url;            /* without a trailing slash */
    vms_web_http *http;
    struct vms_traffic traffic;
    struct vms_web_index index;
    bool loaded;                  /* the pack indexes are read */
    struct vms_web_object **objs; /* per pack */
    struct vms_hashmap where;     /* hash -> pack << 32 | record */
    ZSTD_DCtx *zd;
    uint8_t *plain;
    size_t plain_cap;
} vms_web_repo;

static vms_web_repo *of(vms_repo *r) { return (vms_web_repo *)r; }

static int nomem(fsp_error *err) { return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

static void web_close(vms_repo *r)
{
    vms_web_repo *w = of(r);
    for (size_t i = 0; w->objs && i < w->index.n_packs; i++)
        free(w->objs[i]);
    free(w->objs);
    vms_hashmap_free(&w->where);
    vms_web_index_free(&w->index);
    vms_web_http_free(w->http);
    ZSTD_freeDCtx(w->zd);
    free(w->plain);
    free(w->url);
    free(w);
}

static const char *web_path(const vms_repo *r) { return ((const vms_web_repo *)r)->url; }

static void web_traffic(const vms_repo *r, struct vms_traffic *out)
{
    *out = ((const vms_web_repo *)r)->traffic;
}

/* URL/PREFIX NAME SUFFIX, malloc'd. */
static char *url_of(const vms_web_repo *w, const char *prefix, const char *name, const char *suffix)
{
    char *u;
    return asprintf(&u, "%s/%s%s%s", w->url, prefix, name, suffix) < 0 ? NULL : u;
}

/* ---- the pack indexes ---------------------------------------------------------- */

static int index_pack(vms_web_repo *w, size_t pack, const struct vms_web_range *r, fsp_error *err)
{
    uint8_t hash[FSP_SHA256_LEN];
    size_t n;
    vms_sha256(r->buf, r->got, hash);
    if (memcmp(hash, w->index.packs[pack].idx_hash, FSP_SHA256_LEN))
        return fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG,
                        "%s: does not match the SHA-256 that %s gives it", r->url, VMS_WEB_INDEX_FILE);
    int rc = vms_web_decode_idx(r->buf, r->got, &w->index.packs[pack], &w->objs[pack], &n, r->url, err);
    for (size_t i = 0; !rc && i < n; i++)
        if (vms_hashmap_put(&w->where, w->objs[pack][i].hash, (uint64_t)pack << 32 | i) < 0)
            rc = nomem(err);
    return rc;
}

static int on_idx(void *ctx, struct vms_web_range *r, fsp_error *err)
{
    return index_pack(ctx, (size_t)(uintptr_t)r->user, r, err);
}

static int load_objects(vms_web_repo *w, fsp_error *err)
{
    size_t n = w->index.n_packs;
    if (w->loaded)
        return 0;
    struct vms_web_range *r = calloc(n ? n : 1, sizeof *r);
    if (!r || !(w->objs = calloc(n ? n : 1, sizeof *w->objs))) {
        free(r);
        return nomem(err);
    }
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        r[i] = (struct vms_web_range){.url = url_of(w, "packs/", w->index.packs[i].name, ".idx"),
                                      .len = VMS_WEB_IDX_SIZE(w->index.packs[i].objects),
                                      .user = (void *)(uintptr_t)i};
        if (!r[i].url)
            rc = nomem(err);
    }
    if (!rc)
        rc = vms_web_fetch(w->http, r, n, on_idx, w, err);
    for (size_t i = 0; i < n; i++)
        free((char *)r[i].url);
    free(r);
    w->loaded = !rc;
    return rc;
}

static const struct vms_web_object *find(const vms_web_repo *w, const uint8_t hash[FSP_SHA256_LEN],
                                         size_t *pack)
{
    const uint64_t *v = vms_hashmap_get(&w->where, hash);
    if (!v)
        return NULL;
    *pack = (size_t)(*v >> 32);
    return &w->objs[*pack][*v & 0xffffffffu];
}

/* ---- objects ---------------------------------------------------------------------- */

static int web_has(vms_repo *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, uint8_t *present,
                   struct vms_object_size *sizes, fsp_error *err)
{
    vms_web_repo *w = of(r);
    int rc = load_objects(w, err);
    for (size_t k = 0; !rc && k < n; k++) {
        size_t pack;
        const struct vms_web_object *o = find(w, hashes[k], &pack);
        present[k] = o != NULL;
        if (sizes)
            sizes[k] = o ? (struct vms_object_size){o->len, o->stored} : (struct vms_object_size){0, 0};
    }
    return rc;
}

struct wanted {
    size_t k;    /* its place in the request */
    size_t pack; /* where it is */
    const struct vms_web_object *o;
};

static int wanted_cmp(const void *a, const void *b)
{
    const struct wanted *x = a, *y = b;
    if (x->pack != y->pack)
        return x->pack < y->pack ? -1 : 1;
    return x->o->offset < y->o->offset ? -1 : x->o->offset > y->o->offset;
}

struct span {
    size_t first, count;
};

struct getting {
    vms_web_repo *w;
    struct wanted *want;
    vms_object_cb cb;
    void *ctx;
};

/* O's bytes, decompressed into the handle's buffer when they are a frame,
 * and checked against its hash. */
static int open_object(vms_web_repo *w, const struct vms_web_object *o, const uint8_t *body,
                       const char *url, const uint8_t **data, fsp_error *err)
{
    char hex[2 * FSP_SHA256_LEN + 1];
    uint8_t hash[FSP_SHA256_LEN];
    bool whole = true;
    *data = body;
    if (o->codec == VMS_CODEC_ZSTD) {
        if (vms_grow(&w->plain, &w->plain_cap, o->len ? o->len : 1, 1))
            return nomem(err);
        size_t got = ZSTD_decompressDCtx(w->zd, w->plain, o->len, body, o->stored);
        whole = !ZSTD_isError(got) && got == o->len;
        *data = w->plain;
    }
    if (whole)
        vms_sha256(*data, o->len, hash);
    if (whole && !memcmp(hash, o->hash, FSP_SHA256_LEN))
        return 0;
    fsp_hex(o->hash, FSP_SHA256_LEN, hex);
    return fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG,
                    "%s: object %s at offset %" PRIu64 ": its bytes do not match its hash", url, hex,
                    o->offset);
}

static int on_span(void *ctx, struct vms_web_range *r, fsp_error *err)
{
    struct getting *g = ctx;
    const struct span *s = r->user;
    int rc = 0;
    for (size_t i = s->first; !rc && i < s->first + s->count; i++) {
        const struct wanted *x = &g->want[i];
        const uint8_t *data;
        rc = open_object(g->w, x->o, r->buf + (x->o->offset - r->start), r->url, &data, err);
        g->w->traffic.objects_received++;
        g->w->traffic.bytes_received_raw += x->o->len;
        g->w->traffic.bytes_received += x->o->stored;
        if (!rc)
            rc = g->cb(g->ctx, x->k, data, x->o->len, x->o->stored);
    }
    return rc;
}

/* Cuts the sorted wanted list into spans of neighbours, each one range. */
static size_t make_spans(const struct wanted *want, size_t n, struct span *spans)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const struct wanted *a = &want[spans[m ? m - 1 : 0].first], *prev = &want[i ? i - 1 : 0];
        uint64_t end = prev->o->offset + prev->o->stored;
        bool joins = m && want[i].pack == a->pack && want[i].o->offset >= a->o->offset &&
                     want[i].o->offset <= end + WEB_GAP_MAX &&
                     want[i].o->offset + want[i].o->stored - a->o->offset <= WEB_RANGE_TARGET;
        if (joins)
            spans[m - 1].count = i - spans[m - 1].first + 1;
        else
            spans[m++] = (struct span){i, 1};
    }
    return m;
}

static int span_ranges(vms_web_repo *w, const struct wanted *want, const struct span *spans, size_t m,
                       struct vms_web_range *r, fsp_error *err)
{
    for (size_t i = 0; i < m; i++) {
        const struct wanted *a = &want[spans[i].first], *z = &want[spans[i].first + spans[i].count - 1];
        uint64_t end = z->o->offset + z->o->stored;
        for (size_t j = spans[i].first; j < spans[i].first + spans[i].count; j++)
            if (want[j].o->offset + want[j].o->stored > end)
                end = want[j].o->offset + want[j].o->stored;
        r[i] = (struct vms_web_range){.url = url_of(w, "packs/", w->index.packs[a->pack].name, ".pack"),
                                      .start = a->o->offset, .len = end - a->o->offset,
                                      .user = (void *)&spans[i]};
        if (!r[i].url)
            return nomem(err);
        if (!r[i].len) { /* empty objects: the byte before them keeps it a range */
            r[i].start--;
            r[i].len = 1;
        }
    }
    return 0;
}

static int locate(vms_web_repo *w, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                  struct wanted *want, fsp_error *err)
{
    char hex[2 * FSP_SHA256_LEN + 1];
    for (size_t k = 0; k < n; k++) {
        want[k].k = k;
        if (!(want[k].o = find(w, hashes[k], &want[k].pack))) {
            fsp_hex(hashes[k], FSP_SHA256_LEN, hex);
            return fsp_fail(err, FSP_EK_CORRUPT, -ENOENT, "%s: object %s is not in the repository",
                            w->url, hex);
        }
    }
    qsort(want, n, sizeof *want, wanted_cmp);
    return 0;
}

static int web_get(vms_repo *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, vms_object_cb cb,
                   void *ctx, fsp_error *err)
{
    vms_web_repo *w = of(r);
    struct wanted *want = calloc(n ? n : 1, sizeof *want);
    struct span *spans = calloc(n ? n : 1, sizeof *spans);
    struct vms_web_range *ranges = calloc(n ? n : 1, sizeof *ranges);
    int rc = want && spans && ranges ? load_objects(w, err) : nomem(err);
    size_t m = 0;
    if (!rc)
        rc = locate(w, hashes, n, want, err);
    if (!rc)
        m = make_spans(want, n, spans);
    if (!rc)
        rc = span_ranges(w, want, spans, m, ranges, err);
    struct getting g = {w, want, cb, ctx};
    if (!rc)
        rc = vms_web_fetch(w->http, ranges, m, on_span, &g, err);
    for (size_t i = 0; ranges && i < m; i++)
        free((char *)ranges[i].url);
    free(ranges);
    free(spans);
    free(want);
    return rc;
}

/* ---- manifests and versions ---------------------------------------------------------- */

struct manifest_to {
    const uint8_t *id;
    const char *dest;
};

static int write_manifest(const struct vms_web_range *r, const char *dest, fsp_error *err)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.XXXXXX", dest) >= (int)sizeof tmp)
        return fsp_fail(err, FSP_EK_USAGE, -ENAMETOOLONG, "%s: path too long", dest);
    return vms_write_file_durably(tmp, dest, r->buf, r->got, err);
}

static int on_manifest(void *ctx, struct vms_web_range *r, fsp_error *err)
{
    const struct manifest_to *m = ctx;
    uint8_t hash[FSP_SHA256_LEN];
    vms_sha256(r->buf, r->got, hash);
    if (memcmp(hash, m->id, FSP_SHA256_LEN))
        return fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG, "%s: does not match its name (its SHA-256)",
                        r->url);
    return write_manifest(r, m->dest, err);
}

static int web_get_manifest(vms_repo *r, const uint8_t id[FSP_SHA256_LEN], const char *dest,
                            fsp_error *err)
{
    vms_web_repo *w = of(r);
    char hex[2 * FSP_SHA256_LEN + 1];
    fsp_hex(id, FSP_SHA256_LEN, hex);
    const struct vms_web_version *wv = NULL;
    for (size_t i = 0; !wv && i < w->index.n_versions; i++)
        if (!memcmp(w->index.versions[i].v.manifest, id, FSP_SHA256_LEN))
            wv = &w->index.versions[i];
    if (!wv || !wv->manifest_bytes)
        return fsp_fail(err, VMS_EK_NOTFOUND, -ENOENT, "%s: no version has the manifest %s", w->url, hex);
    struct vms_web_range range = {.url = url_of(w, "manifests/", hex, ""), .len = wv->manifest_bytes};
    struct manifest_to m = {id, dest};
    int rc = range.url ? vms_web_fetch(w->http, &range, 1, on_manifest, &m, err) : nomem(err);
    free((char *)range.url);
    return rc;
}

/* The latest version of IMAGE (VERSION 0) or that one; NULL when none. */
static const struct vms_version *find_version(const vms_web_repo *w, const char *image, uint32_t version,
                                              bool *image_known)
{
    const struct vms_version *best = NULL;
    *image_known = false;
    for (size_t i = 0; i < w->index.n_versions; i++) {
        const struct vms_version *v = &w->index.versions[i].v;
        if (strcmp(v->image, image))
            continue;
        *image_known = true;
        if (version ? v->number == version : (!best || v->number > best->number))
            best = v;
    }
    return best;
}

static int web_version(vms_repo *r, const char *image, uint32_t version, struct vms_version *out,
                       fsp_error *err)
{
    bool known;
    const struct vms_version *v = find_version(of(r), image, version, &known);
    if (!known)
        return fsp_fail(err, VMS_EK_NOTFOUND, -ENOENT, "%s: no image named %s", of(r)->url, image);
    if (!v)
        return fsp_fail(err, VMS_EK_NOTFOUND, -ENOENT, "%s: %s has no version %u", of(r)->url, image,
                        version);
    *out = *v;
    return 0;
}

static int web_list(vms_repo *r, const char *image, vms_version_cb cb, void *ctx, fsp_error *err)
{
    const vms_web_repo *w = of(r);
    bool known = !image;
    int rc = 0;
    for (size_t i = 0; !rc && i < w->index.n_versions; i++)
        if (!image || !strcmp(image, w->index.versions[i].v.image)) {
            known = true;
            rc = cb(ctx, &w->index.versions[i].v);
        }
    if (!rc && !known)
        rc = fsp_fail(err, VMS_EK_NOTFOUND, -ENOENT, "%s: no image named %s", w->url, image);
    return rc;
}

/* ---- queries: no leases, no audit log ------------------------------------------------- */

static int known_image(vms_repo *r, const char *image, fsp_error *err)
{
    bool known;
    if (!image)
        return 0;
    find_version(of(r), image, 0, &known);
    return known ? 0 : fsp_fail(err, VMS_EK_NOTFOUND, -ENOENT, "%s: no image named %s", of(r)->url, image);
}

static int web_lease_get(vms_repo *r, const char *image, struct vms_lease *out, bool *found,
                         fsp_error *err)
{
    (void)out;
    *found = false;
    return known_image(r, image, err);
}

static int web_images(vms_repo *r, vms_image_cb cb, void *ctx, fsp_error *err)
{
    const vms_web_repo *w = of(r);
    int rc = 0;
    (void)err;
    for (size_t i = 0; !rc && i < w->index.n_versions; i++) {
        bool known, first = true;
        const struct vms_version *v = &w->index.versions[i].v;
        for (size_t j = 0; j < i; j++)
            first = first && strcmp(w->index.versions[j].v.image, v->image);
        const struct vms_version *latest = first ? find_version(w, v->image, 0, &known) : NULL;
        if (latest)
            rc = cb(ctx, &(struct vms_image_info){latest->image, latest->number, latest->size,
                                                  latest->created, NULL});
    }
    return rc;
}

static int web_leases(vms_repo *r, const char *image, vms_lease_cb cb, void *ctx, fsp_error *err)
{
    (void)cb;
    (void)ctx;
    return known_image(r, image, err);
}

static int web_audit_log(vms_repo *r, const char *image, int64_t since, vms_audit_cb cb, void *ctx,
                         fsp_error *err)
{
    (void)since;
    (void)cb;
    (void)ctx;
    return known_image(r, image, err);
}

static const struct vms_repo_ops web_ops = {
    .kind = "web",
    .close = web_close,
    .path = web_path,
    .traffic = web_traffic,
    .has = web_has,
    .get = web_get,
    .get_manifest = web_get_manifest,
    .version = web_version,
    .list = web_list,
    .lease_get = web_lease_get,
    .images = web_images,
    .leases = web_leases,
    .audit_log = web_audit_log,
};

/* ---- opening -------------------------------------------------------------------------- */

static int on_index(void *ctx, struct vms_web_range *r, fsp_error *err)
{
    vms_web_repo *w = ctx;
    return vms_web_decode_index(r->buf, r->got, &w->index, r->url, err);
}

static int read_index(vms_web_repo *w, fsp_error *err)
{
    struct vms_web_range r = {.url = url_of(w, "", VMS_WEB_INDEX_FILE, ""), .max = VMS_WEB_INDEX_MAX};
    int rc = r.url ? vms_web_fetch(w->http, &r, 1, on_index, w, err) : nomem(err);
    free((char *)r.url);
    return rc;
}

int vms_web_open(const char *url, const struct vms_remote_opts *remote,
                 const struct vms_repo_progress *progress, vms_repo **out, fsp_error *err)
{
    vms_web_repo *w = calloc(1, sizeof *w);
    if (!w || !(w->url = strdup(url)) || !(w->zd = ZSTD_createDCtx())) {
        if (w)
            free(w->url);
        free(w);
        return nomem(err);
    }
    w->base.ops = &web_ops;
    for (size_t n = strlen(w->url); n > 0 && w->url[n - 1] == '/'; n--)
        w->url[n - 1] = 0;
    ZSTD_DCtx_setParameter(w->zd, ZSTD_d_windowLogMax, 27);
    int rc = vms_web_http_new(remote, progress, &w->traffic, &w->http, err);
    if (!rc)
        rc = vms_repo_report(progress, VMS_PHASE_CONNECT, 0, 1, err);
    if (!rc)
        rc = read_index(w, err);
    if (!rc)
        rc = vms_repo_report(progress, VMS_PHASE_CONNECT, 1, 1, err);
    if (rc) {
        web_close(&w->base);
        return rc;
    }
    *out = &w->base;
    return 0;
}
