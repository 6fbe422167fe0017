/* The repository check (vmsync check, and the guard gc runs first): the
 * catalog, the packs, every version's manifest and the objects it needs, and
 * on request every stored object.  A problem is reported and the check goes
 * on, so one run lists them all; only what stops the check itself (an I/O
 * error, no memory, a catalog SQLite cannot read, a cancel) is an error.
 *
 * The check holds the repository's shared lock like any reader, so it runs
 * beside check-ins: a version is recorded only after its objects are
 * indexed, and only gc (exclusive) deletes, so what it reads stays true. */
#include "repo/local/local.h"
#include "sign/sign.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEX_LEN (2 * FSP_SHA256_LEN + 1)
#define SQLITE_REPORT_MAX 100 /* lines of quick_check or integrity_check shown */
#define HASH_BUF (256u << 10)

struct check {
    vms_local *r;
    const struct vms_check_opts *o;
    const struct vms_check_hooks *h;
    struct vms_check_stats *st;
    fsp_error *err;
    struct vms_keyset present, missing; /* needed objects looked up so far */
    uint64_t done, total;               /* the current phase's progress */
};

/* A version as the check needs it. */
struct version_ref {
    char image[256];
    uint32_t number;
    uint8_t manifest[FSP_SHA256_LEN];
    uint64_t manifest_size;
};

struct pack_ref {
    int64_t id;
    char name[64];
    bool readable; /* the file is there: its objects can be read */
};

static int nomem(fsp_error *err) { return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

static const char *const problem_names[] = {
    [VMS_PROBLEM_CATALOG] = "catalog", [VMS_PROBLEM_MANIFEST] = "manifest",
    [VMS_PROBLEM_MISSING] = "missing", [VMS_PROBLEM_PACK] = "pack",
    [VMS_PROBLEM_OBJECT] = "object",   [VMS_PROBLEM_VERSION] = "version",
    [VMS_PROBLEM_LEASE] = "lease",     [VMS_PROBLEM_SIGNATURE] = "signature",
};

const char *vms_problem_name(enum vms_problem_kind kind)
{
    return kind >= VMS_PROBLEM_CATALOG && kind <= VMS_PROBLEM_SIGNATURE ? problem_names[kind] : "?";
}

void vms_problem_describe(const struct vms_problem *p, char *out, size_t len)
{
    char where[600] = "", hex[HEX_LEN];
    size_t n = 0;
    if (p->image)
        n += (size_t)snprintf(where + n, sizeof where - n, "%s@%u", p->image, p->version);
    if (p->object && n < sizeof where) {
        fsp_hex(p->object, FSP_SHA256_LEN, hex);
        n += (size_t)snprintf(where + n, sizeof where - n, "%sobject %s", n ? ", " : "", hex);
    }
    if (p->pack && n < sizeof where)
        snprintf(where + n, sizeof where - n, "%s%s", n ? ", " : "", p->pack);
    snprintf(out, len, "%s: %s%s%s", vms_problem_name(p->kind), where, where[0] ? ": " : "",
             p->detail);
}

/* Counts one problem and hands it to the caller. */
static int report(struct check *c, const struct vms_problem *p)
{
    c->st->problems++;
    if (!c->h->problem)
        return 0;
    int rc = c->h->problem(c->h->problem_ctx, p);
    if (rc && !c->err->msg[0])
        fsp_fail(c->err, FSP_EK_CANCELLED, -ECANCELED, "%s: check stopped", c->r->path);
    return rc < 0 ? rc : rc ? -ECANCELED : 0;
}

static int reportf(struct check *c, enum vms_problem_kind kind, const char *image,
                   uint32_t version, const uint8_t *object, const char *pack, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static int reportf(struct check *c, enum vms_problem_kind kind, const char *image,
                   uint32_t version, const uint8_t *object, const char *pack, const char *fmt, ...)
{
    char detail[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    struct vms_problem p = {kind, image, version, object, pack, detail};
    return report(c, &p);
}

static int progress(struct check *c, enum vms_phase phase, uint64_t step)
{
    c->done += step;
    const struct vms_repo_progress *p = &c->r->progress;
    if (!p->fn || !p->fn(p->ctx, phase, c->done, c->total))
        return 0;
    return fsp_fail(c->err, FSP_EK_CANCELLED, -ECANCELED, "%s: check cancelled during %s",
                    c->r->path, vms_phase_name(phase));
}

static void start_phase(struct check *c, uint64_t total)
{
    c->done = 0;
    c->total = total;
}

/* ---- the catalog ---------------------------------------------------------------
 * SQLite's own check first, then the rules the catalog's writers keep.  Each
 * rule is a query whose rows are the problems: image, version, object, pack,
 * and what is wrong.  ?1 is the largest object, ?2 the most it may take
 * stored, ?3 the length of a record's header. */

/* A row of SQLite's report may hold several lines: one problem each. */
static int sqlite_report(struct check *c, const char *pragma, const char *text)
{
    int rc = 0;
    while (!rc && text && *text) {
        size_t n = strcspn(text, "\n");
        if (n && strncmp(text, "ok", n) != 0 && strncmp(text, "*** in database", 15) != 0)
            rc = reportf(c, VMS_PROBLEM_CATALOG, NULL, 0, NULL, NULL, "SQLite %s: %.*s", pragma,
                         (int)n, text);
        text += n + (text[n] == '\n');
    }
    return rc;
}

static int sqlite_check(struct check *c)
{
    char sql[64];
    const char *pragma = c->o->objects ? "integrity_check" : "quick_check";
    snprintf(sql, sizeof sql, "PRAGMA %s(%d)", pragma, SQLITE_REPORT_MAX);
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(c->r, sql, &st, c->err);
    int s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW)
        rc = sqlite_report(c, pragma, (const char *)sqlite3_column_text(st, 0));
    if (!rc && s != SQLITE_DONE)
        rc = vms_repo_db_fail(c->r, s, pragma, c->err);
    sqlite3_finalize(st);
    return rc;
}

struct rule {
    enum vms_problem_kind kind;
    const char *sql;
};

#define IMAGE_OF(alias) "(SELECT name FROM images WHERE id = " alias ".image_id)"

static const struct rule rules[] = {
    {VMS_PROBLEM_CATALOG,
     "SELECT NULL, 0, NULL, NULL, 'version ' || v.number || ' of image id ' || v.image_id ||"
     " ', which does not exist' FROM versions v"
     " WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.id = v.image_id)"},
    /* a version is recorded only on top of the latest: its parent is the one before it */
    {VMS_PROBLEM_CATALOG,
     "SELECT " IMAGE_OF("v") ", v.number, NULL, NULL, 'its parent is version ' || v.parent ||"
     " ', not version ' || (v.number - 1) FROM versions v"
     " WHERE v.number < 1 OR v.parent <> v.number - 1"},
    {VMS_PROBLEM_CATALOG,
     "SELECT " IMAGE_OF("v") ", v.number, NULL, NULL, 'its parent, version ' || v.parent ||"
     " ', does not exist' FROM versions v WHERE v.parent > 0 AND NOT EXISTS"
     " (SELECT 1 FROM versions p WHERE p.image_id = v.image_id AND p.number = v.parent)"
     /* vmsync forget removes a version and says so in the audit log */
     " AND NOT EXISTS (SELECT 1 FROM audit a WHERE a.action = 'forget'"
     " AND a.image = " IMAGE_OF("v") " AND a.version = v.parent)"},
    {VMS_PROBLEM_CATALOG,
     "SELECT " IMAGE_OF("v") ", v.number, NULL, NULL, 'its manifest id or digest is not a SHA-256'"
     " FROM versions v WHERE typeof(v.manifest) <> 'blob' OR length(v.manifest) <> 32"
     " OR typeof(v.digest) <> 'blob' OR length(v.digest) <> 32"},
    /* signed (both blobs, of their sizes) or not (both NULL), nothing between */
    {VMS_PROBLEM_SIGNATURE,
     "SELECT " IMAGE_OF("v") ", v.number, NULL, NULL, 'its signature record is not a 64-byte'"
     " || ' signature and a 32-byte signer' FROM versions v"
     " WHERE NOT ((v.signature IS NULL AND v.signer IS NULL) OR (typeof(v.signature) = 'blob'"
     " AND length(v.signature) = 64 AND typeof(v.signer) = 'blob' AND length(v.signer) = 32))"},
    /* the agent takes leases for clients: a dangling one says nothing of the content */
    {VMS_PROBLEM_LEASE,
     "SELECT NULL, 0, NULL, NULL, 'a lease on image id ' || l.image_id || ', which does not exist'"
     " FROM leases l WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.id = l.image_id)"},
    {VMS_PROBLEM_LEASE,
     "SELECT i.name, l.version, NULL, NULL, 'leased by ' || l.user || '@' || l.host ||"
     " ', but there is no such version' FROM leases l JOIN images i ON i.id = l.image_id"
     " WHERE NOT EXISTS (SELECT 1 FROM versions v WHERE v.image_id = l.image_id"
     " AND v.number = l.version)"},
    {VMS_PROBLEM_CATALOG,
     "SELECT NULL, 0, o.hash, NULL, 'indexed in pack id ' || o.pack_id || ', which does not"
     " exist' FROM objects o WHERE NOT EXISTS (SELECT 1 FROM packs p WHERE p.id = o.pack_id)"},
    {VMS_PROBLEM_CATALOG,
     "SELECT NULL, 0, CASE WHEN length(o.hash) = 32 THEN o.hash END, p.name,"
     " 'a bad index entry (offset ' || o.pos || ', ' || o.len || ' bytes, ' || o.stored_len ||"
     " ' stored)' FROM objects o JOIN packs p ON p.id = o.pack_id WHERE typeof(o.hash) <> 'blob'"
     " OR length(o.hash) <> 32 OR o.pos < 8 OR o.len < 0 OR o.len > ?1 OR o.stored_len < 0"
     " OR o.stored_len > ?2"},
    {VMS_PROBLEM_PACK,
     "SELECT NULL, 0, o.hash, p.name, 'its record at offset ' || o.pos || ' ends past the'"
     " || ' pack''s ' || p.bytes || ' bytes' FROM objects o JOIN packs p ON p.id = o.pack_id"
     " WHERE o.pos + ?3 + o.stored_len > p.bytes AND length(o.hash) = 32"},
};

static int rule_row(struct check *c, enum vms_problem_kind kind, sqlite3_stmt *st)
{
    const char *image = (const char *)sqlite3_column_text(st, 0);
    const uint8_t *object = sqlite3_column_bytes(st, 2) == FSP_SHA256_LEN
                                ? sqlite3_column_blob(st, 2)
                                : NULL;
    const char *pack = (const char *)sqlite3_column_text(st, 3);
    const char *detail = (const char *)sqlite3_column_text(st, 4);
    struct vms_problem p = {kind,
                            image,
                            image ? (uint32_t)sqlite3_column_int64(st, 1) : 0,
                            object,
                            pack && vms_is_pack_name(pack) ? pack : NULL,
                            detail ? detail : "breaks the catalog's rules"};
    return report(c, &p);
}

static int run_rule(struct check *c, const struct rule *rule)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(c->r, rule->sql, &st, c->err);
    if (rc)
        return rc;
    const int64_t params[] = {VMS_OBJECT_MAX, (int64_t)ZSTD_compressBound(VMS_OBJECT_MAX),
                              VMS_RECORD_HEADER_LEN};
    for (int i = 1; i <= sqlite3_bind_parameter_count(st) && i <= 3; i++)
        sqlite3_bind_int64(st, i, params[i - 1]);
    int s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW)
        rc = rule_row(c, rule->kind, st);
    if (!rc && s != SQLITE_DONE)
        rc = vms_repo_db_fail(c->r, s, "checking the catalog", c->err);
    sqlite3_finalize(st);
    return rc;
}

static int check_catalog(struct check *c)
{
    int rc = sqlite_check(c);
    for (size_t i = 0; !rc && i < sizeof rules / sizeof *rules; i++)
        rc = run_rule(c, &rules[i]);
    if (!rc)
        rc = vms_repo_count(c->r, "SELECT COUNT(*) FROM images", &c->st->images, c->err);
    if (!rc)
        rc = vms_repo_count(c->r, "SELECT COUNT(*) FROM objects", &c->st->objects_indexed,
                            c->err);
    return rc;
}

/* ---- packs -------------------------------------------------------------------- */

/* The file must be there, and as long as the catalog says it was written. */
static int check_pack_file(struct check *c, struct pack_ref *p, int64_t bytes)
{
    if (!vms_is_pack_name(p->name))
        return reportf(c, VMS_PROBLEM_CATALOG, NULL, 0, NULL, NULL, "pack id %lld has a bad name",
                       (long long)p->id);
    char rel[80];
    snprintf(rel, sizeof rel, "packs/%s", p->name);
    char *path = vms_local_join(c->r, rel);
    if (!path)
        return nomem(c->err);
    struct stat st;
    int e = stat(path, &st) < 0 ? errno : 0;
    free(path);
    c->st->packs++;
    if (e == ENOENT)
        return reportf(c, VMS_PROBLEM_PACK, NULL, 0, NULL, p->name, "the file is missing");
    if (e)
        return fsp_fail(c->err, FSP_EK_IO, -e, "%s: cannot stat pack %s: %s", c->r->path,
                        p->name, strerror(e));
    p->readable = true;
    if ((int64_t)st.st_size == bytes)
        return 0;
    return reportf(c, VMS_PROBLEM_PACK, NULL, 0, NULL, p->name,
                   "the file has %lld bytes, the catalog says %lld", (long long)st.st_size,
                   (long long)bytes);
}

static int add_pack(struct check *c, sqlite3_stmt *st, struct pack_ref **packs, size_t *n,
                    size_t *cap)
{
    if (vms_grow(packs, cap, *n + 1, sizeof **packs))
        return nomem(c->err);
    struct pack_ref *p = &(*packs)[(*n)++];
    const char *name = (const char *)sqlite3_column_text(st, 1);
    *p = (struct pack_ref){.id = sqlite3_column_int64(st, 0)};
    snprintf(p->name, sizeof p->name, "%s", name ? name : "");
    return check_pack_file(c, p, sqlite3_column_int64(st, 2));
}

static int check_packs(struct check *c, struct pack_ref **packs, size_t *n)
{
    sqlite3_stmt *st;
    size_t cap = 0;
    *packs = NULL;
    *n = 0;
    int rc = vms_repo_prepare(c->r, "SELECT id, name, bytes FROM packs ORDER BY id", &st, c->err);
    int s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW)
        rc = add_pack(c, st, packs, n, &cap);
    if (!rc && s != SQLITE_DONE)
        rc = vms_repo_db_fail(c->r, s, "listing packs", c->err);
    sqlite3_finalize(st);
    return rc;
}

/* ---- versions: their manifests and the objects they need ------------------------ */

static int add_version(struct check *c, sqlite3_stmt *st, struct version_ref **vs, size_t *n,
                       size_t *cap)
{
    if (sqlite3_column_bytes(st, 2) != FSP_SHA256_LEN)
        return 0; /* a rule reports it */
    if (vms_grow(vs, cap, *n + 1, sizeof **vs))
        return nomem(c->err);
    struct version_ref *v = &(*vs)[(*n)++];
    const char *image = (const char *)sqlite3_column_text(st, 0);
    snprintf(v->image, sizeof v->image, "%s", image ? image : "");
    v->number = (uint32_t)sqlite3_column_int64(st, 1);
    memcpy(v->manifest, sqlite3_column_blob(st, 2), FSP_SHA256_LEN);
    char *path = vms_repo_manifest_path(c->r, v->manifest);
    if (!path)
        return nomem(c->err);
    struct stat sb;
    v->manifest_size = stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    c->total += v->manifest_size;
    free(path);
    return 0;
}

static int load_versions(struct check *c, struct version_ref **vs, size_t *n)
{
    sqlite3_stmt *st;
    size_t cap = 0;
    *vs = NULL;
    *n = 0;
    start_phase(c, 0);
    int rc = vms_repo_prepare(c->r,
                              "SELECT i.name, v.number, v.manifest FROM versions v "
                              "JOIN images i ON i.id = v.image_id ORDER BY i.name, v.number",
                              &st, c->err);
    int s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW)
        rc = add_version(c, st, vs, n, &cap);
    if (!rc && s != SQLITE_DONE)
        rc = vms_repo_db_fail(c->r, s, "listing versions", c->err);
    sqlite3_finalize(st);
    c->st->versions = *n;
    return rc;
}

static int hash_file(struct check *c, int fd, const char *path, uint8_t hash[FSP_SHA256_LEN])
{
    uint8_t *buf = malloc(HASH_BUF);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = !buf || !md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL) ? nomem(c->err) : 0;
    ssize_t got = 1;
    while (!rc && got > 0) {
        got = read(fd, buf, HASH_BUF);
        if (got > 0)
            EVP_DigestUpdate(md, buf, (size_t)got);
        else if (got < 0 && errno != EINTR)
            rc = fsp_fail(c->err, FSP_EK_IO, -errno, "%s: cannot read: %s", path, strerror(errno));
        else if (got < 0)
            got = 1;
    }
    unsigned int len = 0;
    if (!rc && !EVP_DigestFinal_ex(md, hash, &len))
        rc = nomem(c->err);
    EVP_MD_CTX_free(md);
    free(buf);
    return rc;
}

/* The manifest is there and is what its name says; *WHY, when not, for the
 * version's own report. */
static int check_manifest_file(struct check *c, const struct version_ref *v, const char *path,
                               const char **why)
{
    char hex[HEX_LEN], actual_hex[HEX_LEN];
    fsp_hex(v->manifest, FSP_SHA256_LEN, hex);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *why = "its manifest is missing";
        return reportf(c, VMS_PROBLEM_MANIFEST, v->image, v->number, NULL, NULL,
                       "manifest %s: %s", hex, errno == ENOENT ? "missing" : strerror(errno));
    }
    uint8_t actual[FSP_SHA256_LEN];
    int rc = hash_file(c, fd, path, actual);
    close(fd);
    if (rc || !memcmp(actual, v->manifest, FSP_SHA256_LEN))
        return rc;
    *why = "its manifest is damaged";
    fsp_hex(actual, FSP_SHA256_LEN, actual_hex);
    return reportf(c, VMS_PROBLEM_MANIFEST, v->image, v->number, NULL, NULL,
                   "manifest %s is damaged: its SHA-256 is %s", hex, actual_hex);
}

/* The objects a version needs that are not indexed: each reported once, with
 * the first version that needs it, and counted once for each version. */
struct needed {
    struct check *c;
    const struct version_ref *v;
    uint64_t seq;        /* of the version, from 1 */
    uint64_t *last_seen; /* per missing object: the seq of the last version that counted it */
    size_t last_seen_cap;
    uint64_t missing;    /* this version's */
    bool failed;         /* the error is ours, not the manifest's: c->err has it */
};

static int object_indexed(struct check *c, const uint8_t *hash, bool *found)
{
    sqlite3_stmt *st = c->r->object_exists;
    sqlite3_bind_blob(st, 1, hash, FSP_SHA256_LEN, SQLITE_STATIC);
    int s = sqlite3_step(st);
    sqlite3_reset(st);
    *found = s == SQLITE_ROW;
    return s == SQLITE_ROW || s == SQLITE_DONE
               ? 0
               : vms_repo_db_fail(c->r, s, "looking up an object", c->err);
}

static int note_missing(struct needed *n, const uint8_t *hash)
{
    struct check *c = n->c;
    size_t index;
    bool added;
    if (vms_keyset_add(&c->missing, hash, &index, &added))
        return nomem(c->err);
    if (vms_grow(&n->last_seen, &n->last_seen_cap, index + 1, sizeof *n->last_seen))
        return nomem(c->err);
    if (added)
        n->last_seen[index] = 0;
    if (n->last_seen[index] == n->seq)
        return 0;
    n->last_seen[index] = n->seq;
    n->missing++;
    if (!added)
        return 0;
    return reportf(c, VMS_PROBLEM_MISSING, n->v->image, n->v->number, hash, NULL,
                   "needed, but not in the object index");
}

static int on_needed(void *ctx, const uint8_t hash[FSP_SHA256_LEN], uint64_t len)
{
    struct needed *n = ctx;
    struct check *c = n->c;
    if (vms_keyset_find(&c->present, hash, NULL))
        return 0;
    bool found = false;
    int rc = vms_keyset_find(&c->missing, hash, NULL) ? 0 : object_indexed(c, hash, &found);
    if (!rc && found && vms_keyset_add(&c->present, hash, NULL, NULL))
        rc = nomem(c->err);
    else if (!rc && !found)
        rc = note_missing(n, hash);
    n->failed = rc != 0;
    return rc;
}

/* A message about PATH, without PATH: the version names the manifest. */
static const char *without_path(const char *msg, const char *path)
{
    size_t n = strlen(path);
    return !strncmp(msg, path, n) && !strncmp(msg + n, ": ", 2) ? msg + n + 2 : msg;
}

/* Reads the manifest through vms_manifest_needed, which checks every record. */
static int check_needed(struct needed *n, const char *path, const char **why)
{
    struct check *c = n->c;
    fsp_error merr = {0};
    int rc = vms_repo_exec(c->r, "BEGIN", c->err); /* one snapshot, no per-lookup locking */
    if (rc)
        return rc;
    rc = vms_manifest_needed(path, on_needed, n, &merr);
    sqlite3_exec(c->r->db, "COMMIT", NULL, NULL, NULL);
    if (!rc)
        c->st->manifests_read++;
    if (!rc || n->failed)
        return rc;
    if (merr.kind != FSP_EK_CORRUPT && merr.kind != FSP_EK_FORMAT && merr.kind != FSP_EK_OPEN) {
        *c->err = merr;
        return rc;
    }
    char hex[HEX_LEN];
    fsp_hex(n->v->manifest, FSP_SHA256_LEN, hex);
    *why = "its manifest does not read back";
    return reportf(c, VMS_PROBLEM_MANIFEST, n->v->image, n->v->number, NULL, NULL,
                   "manifest %s does not read back: %s", hex, without_path(merr.msg, path));
}

static int check_version(struct check *c, const struct version_ref *v, struct needed *n)
{
    char *path = vms_repo_manifest_path(c->r, v->manifest);
    if (!path)
        return nomem(c->err);
    const char *why = NULL;
    n->v = v;
    n->seq++;
    n->missing = 0;
    int rc = check_manifest_file(c, v, path, &why);
    if (!rc && !why)
        rc = check_needed(n, path, &why);
    free(path);
    if (!rc && why)
        rc = reportf(c, VMS_PROBLEM_VERSION, v->image, v->number, NULL, NULL,
                     "cannot be exported: %s", why);
    else if (!rc && n->missing)
        rc = reportf(c, VMS_PROBLEM_VERSION, v->image, v->number, NULL, NULL,
                     "cannot be exported: %llu of the objects it needs are missing",
                     (unsigned long long)n->missing);
    return rc ? rc : progress(c, VMS_PHASE_CHECK_MANIFESTS, v->manifest_size);
}

static int check_versions(struct check *c)
{
    struct version_ref *vs;
    size_t n;
    struct needed needed = {.c = c};
    int rc = load_versions(c, &vs, &n);
    if (!rc)
        rc = progress(c, VMS_PHASE_CHECK_MANIFESTS, 0);
    for (size_t i = 0; !rc && i < n; i++)
        rc = check_version(c, &vs[i], &needed);
    c->st->objects_needed = c->present.n + c->missing.n;
    free(needed.last_seen);
    free(vs);
    return rc;
}

/* ---- signatures ------------------------------------------------------------------ */

/* A row of signed_query as the version it signs. */
static void signed_row(sqlite3_stmt *st, struct vms_version *v)
{
    memset(v, 0, sizeof *v);
    vms_repo_column_text(v->image, sizeof v->image, st, 0);
    v->number = (uint32_t)sqlite3_column_int64(st, 1);
    v->parent = (uint32_t)sqlite3_column_int64(st, 2);
    memcpy(v->manifest, sqlite3_column_blob(st, 3), FSP_SHA256_LEN);
    memcpy(v->digest, sqlite3_column_blob(st, 4), FSP_SHA256_LEN);
    memcpy(v->signature, sqlite3_column_blob(st, 5), VMS_SIGNATURE_LEN);
}

static const char signed_query[] =
    "SELECT i.name, v.number, v.parent, v.manifest, v.digest, v.signature FROM versions v"
    " JOIN images i ON i.id = v.image_id WHERE v.signer = ?1 AND length(v.signature) = 64"
    " AND length(v.manifest) = 32 AND length(v.digest) = 32 ORDER BY i.name, v.number";

/* Versions signed by the repository's key verify with it.  Those that a key
 * it had before signed (replaced with --force) cannot be checked here. */
static int check_signatures_by(struct check *c, const struct vms_public_key *key)
{
    char fp[VMS_FINGERPRINT_TEXT_LEN];
    vms_fingerprint_text(key->fingerprint, fp);
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(c->r, signed_query, &st, c->err);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, key->fingerprint, FSP_SHA256_LEN, SQLITE_STATIC);
    int s = SQLITE_DONE;
    struct vms_version v;
    while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
        signed_row(st, &v);
        if (!vms_signature_valid(key, &v, v.signature))
            rc = reportf(c, VMS_PROBLEM_SIGNATURE, v.image, v.number, NULL, NULL,
                         "its signature does not verify with the repository's key %s", fp);
    }
    if (!rc && s != SQLITE_DONE)
        rc = vms_repo_db_fail(c->r, s, "checking signatures", c->err);
    sqlite3_finalize(st);
    return rc;
}

static int check_signatures(struct check *c)
{
    vms_signer *signer = NULL;
    int rc = vms_local_signer(c->r, &signer, c->err);
    if (rc || !signer)
        return rc;
    struct vms_public_key key;
    vms_signer_public(signer, NULL, &key);
    vms_signer_free(signer);
    return check_signatures_by(c, &key);
}

/* ---- every stored object (--objects) ------------------------------------------ */

static int count_object(void *ctx, size_t index, const uint8_t *data, size_t len,
                        size_t stored_len)
{
    struct check *c = ctx;
    c->st->objects_read++;
    c->st->bytes_read += stored_len;
    return 0;
}

/* vms_local_get reads, decompresses and hashes it; damage is a problem, any
 * other failure stops the check. */
static int check_object(struct check *c, const uint8_t *hash, const char *pack, uint64_t stored)
{
    fsp_error oerr = {0};
    uint8_t key[1][FSP_SHA256_LEN];
    memcpy(key[0], hash, FSP_SHA256_LEN);
    int rc = vms_local_get(&c->r->base, (const uint8_t(*)[FSP_SHA256_LEN])key, 1, count_object, c, &oerr);
    if (rc && oerr.kind != FSP_EK_CORRUPT) {
        *c->err = oerr;
        return rc;
    }
    /* the problem names the object and its pack already */
    const char *where = strstr(oerr.msg, " at offset ");
    if (rc)
        rc = reportf(c, VMS_PROBLEM_OBJECT, NULL, 0, key[0], pack, "%s",
                     where ? where + 1 : without_path(oerr.msg, c->r->path));
    return rc ? rc : progress(c, VMS_PHASE_CHECK_OBJECTS, stored);
}

static int check_pack_objects(struct check *c, const struct pack_ref *p)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(
        c->r, "SELECT hash, stored_len FROM objects WHERE pack_id = ?1 ORDER BY pos", &st, c->err);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, p->id);
    int s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW)
        if (sqlite3_column_bytes(st, 0) == FSP_SHA256_LEN) /* else a rule reported it */
            rc = check_object(c, sqlite3_column_blob(st, 0), p->name,
                              (uint64_t)sqlite3_column_int64(st, 1));
    if (!rc && s != SQLITE_DONE)
        rc = vms_repo_db_fail(c->r, s, "listing objects", c->err);
    sqlite3_finalize(st);
    return rc;
}

/* Objects of a missing pack are not read: the pack's problem covers them. */
static int check_objects(struct check *c, const struct pack_ref *packs, size_t n)
{
    uint64_t total;
    int rc = vms_repo_count(c->r, "SELECT COALESCE(SUM(stored_len), 0) FROM objects", &total,
                            c->err);
    start_phase(c, total);
    if (!rc)
        rc = progress(c, VMS_PHASE_CHECK_OBJECTS, 0);
    for (size_t i = 0; !rc && i < n; i++)
        if (packs[i].readable)
            rc = check_pack_objects(c, &packs[i]);
    return rc;
}

/* ---- the whole check -------------------------------------------------------------- */

int vms_local_check(vms_repo *repo, const struct vms_check_opts *o, const struct vms_check_hooks *h,
                    struct vms_check_stats *stats, fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    memset(stats, 0, sizeof *stats);
    struct check c = {.r = r, .o = o, .h = h, .st = stats, .err = err};
    struct pack_ref *packs = NULL;
    size_t n_packs = 0;
    int rc = check_catalog(&c);
    if (!rc)
        rc = check_packs(&c, &packs, &n_packs);
    if (!rc)
        rc = check_versions(&c);
    if (!rc)
        rc = check_signatures(&c);
    if (!rc && o->objects)
        rc = check_objects(&c, packs, n_packs);
    /* only SQLite fails this way here (the rest is reported): a damaged
     * catalog is a finding, and the end of what can be checked */
    if (rc && err->kind == FSP_EK_CORRUPT) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", without_path(err->msg, r->path));
        memset(err, 0, sizeof *err);
        rc = reportf(&c, VMS_PROBLEM_CATALOG, NULL, 0, NULL, NULL, "the check stopped: %s", msg);
    }
    free(packs);
    vms_keyset_free(&c.present);
    vms_keyset_free(&c.missing);
    return rc;
}
