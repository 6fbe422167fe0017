/* The catalog of a local repository (SQLite in WAL mode, opened by
 * handle.c): images and versions, leases, the audit log, and the manifest
 * files.  The object store is store.c. */
#include "repo/local/local.h"
#include "sign/sign.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HEX_LEN (2 * FSP_SHA256_LEN + 1)
#define COPY_BUF (256u << 10)

/* ---- paths and files ---------------------------------------------------- */

char *vms_repo_manifest_path(const vms_local *r, const uint8_t id[FSP_SHA256_LEN])
{
    char hex[HEX_LEN], *p;
    fsp_hex(id, FSP_SHA256_LEN, hex);
    return asprintf(&p, "%s/manifests/%s.vmsm", r->path, hex) < 0 ? NULL : p;
}

static int nomem(fsp_error *err) { return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

int vms_local_cache_dir(vms_repo *repo, const char *sub, char *path, size_t len, fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    const char *parts[] = {"cache", sub};
    int n = snprintf(path, len, "%s", r->path);
    for (size_t i = 0; i < 2; i++) {
        n += snprintf(path + n, len - (size_t)n, "/%s", parts[i]);
        if ((size_t)n >= len)
            return fsp_fail(err, FSP_EK_USAGE, -ENAMETOOLONG, "%s: path too long", r->path);
        if (mkdir(path, 0777) < 0 && errno != EEXIST)
            return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot create: %s", path, strerror(errno));
    }
    return 0;
}

/* Copies IN to OUT whole, hashing the bytes on the way. */
static int copy_hashing(int in, const char *in_name, int out, const char *out_name,
                        uint8_t hash[FSP_SHA256_LEN], fsp_error *err)
{
    uint8_t *buf = malloc(COPY_BUF);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = 0;
    if (!buf || !md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
        rc = nomem(err);
    for (;;) {
        if (rc)
            break;
        ssize_t n = read(in, buf, COPY_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot read: %s", in_name, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        EVP_DigestUpdate(md, buf, (size_t)n);
        rc = vms_write_all(out, buf, (size_t)n);
        if (rc)
            fsp_fail(err, FSP_EK_IO, rc, "%s: cannot write: %s", out_name, strerror(-rc));
    }
    unsigned int len = 0;
    if (!rc && !EVP_DigestFinal_ex(md, hash, &len))
        rc = nomem(err);
    EVP_MD_CTX_free(md);
    free(buf);
    return rc;
}

/* ---- images and versions ---------------------------------------------------- */

static void format_time(int64_t t, char out[40])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm))
        strftime(out, 40, "%Y-%m-%d %H:%M:%S UTC", &tm);
    else
        snprintf(out, 40, "@%lld", (long long)t);
}

static int check_image_name(const vms_local *r, const char *image, fsp_error *err)
{
    size_t n = image ? strnlen(image, sizeof((struct vms_version *)0)->image) : 0;
    if (n == 0 || n >= sizeof((struct vms_version *)0)->image)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: an image name must be 1 to 255 bytes",
                        r->path);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)image[i] < 0x20 || image[i] == 0x7f)
            return fsp_fail(err, FSP_EK_USAGE, -EINVAL,
                            "%s: an image name may not contain control characters", r->path);
    return 0;
}

/* The image's row id and latest version number; *EXISTS false when unknown. */
static int image_state(vms_local *r, const char *image, int64_t *id, uint32_t *latest, bool *exists,
                       fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(
        r,
        "SELECT i.id, COALESCE(MAX(v.number), 0) FROM images i "
        "LEFT JOIN versions v ON v.image_id = i.id WHERE i.name = ?1 GROUP BY i.id",
        &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, image, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    *exists = s == SQLITE_ROW;
    if (*exists) {
        *id = sqlite3_column_int64(st, 0);
        *latest = (uint32_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    return s == SQLITE_ROW || s == SQLITE_DONE ? 0
                                               : vms_repo_db_fail(r, s, "looking up an image", err);
}

#define VERSION_QUERY                                                                              \
    "SELECT i.name, v.number, v.parent, v.manifest, v.digest, v.size, v.created, v.message, "      \
    "v.user, v.host, v.signature, v.signer FROM versions v JOIN images i ON i.id = v.image_id "

/* Columns 10 and 11: NULL for a version recorded without a key. */
static int row_signature(vms_local *r, sqlite3_stmt *st, struct vms_version *v, fsp_error *err)
{
    bool has_sig = sqlite3_column_type(st, 10) != SQLITE_NULL;
    bool has_signer = sqlite3_column_type(st, 11) != SQLITE_NULL;
    if (!has_sig && !has_signer)
        return 0;
    if (sqlite3_column_bytes(st, 10) != VMS_SIGNATURE_LEN ||
        sqlite3_column_bytes(st, 11) != FSP_SHA256_LEN)
        return fsp_fail(err, FSP_EK_CORRUPT, -EUCLEAN,
                        "%s: catalog: version %s@%u has a bad signature record", r->path, v->image,
                        v->number);
    memcpy(v->signature, sqlite3_column_blob(st, 10), VMS_SIGNATURE_LEN);
    memcpy(v->signer, sqlite3_column_blob(st, 11), FSP_SHA256_LEN);
    v->is_signed = true;
    return 0;
}

static int row_to_version(vms_local *r, sqlite3_stmt *st, struct vms_version *v, fsp_error *err)
{
    memset(v, 0, sizeof *v);
    vms_repo_column_text(v->image, sizeof v->image, st, 0);
    v->number = (uint32_t)sqlite3_column_int64(st, 1);
    v->parent = (uint32_t)sqlite3_column_int64(st, 2);
    if (sqlite3_column_bytes(st, 3) != FSP_SHA256_LEN ||
        sqlite3_column_bytes(st, 4) != FSP_SHA256_LEN)
        return fsp_fail(err, FSP_EK_CORRUPT, -EUCLEAN, "%s: catalog: version %s@%u has a bad hash",
                        r->path, v->image, v->number);
    memcpy(v->manifest, sqlite3_column_blob(st, 3), FSP_SHA256_LEN);
    memcpy(v->digest, sqlite3_column_blob(st, 4), FSP_SHA256_LEN);
    v->size = (uint64_t)sqlite3_column_int64(st, 5);
    v->created = sqlite3_column_int64(st, 6);
    vms_repo_column_text(v->message, sizeof v->message, st, 7);
    vms_repo_column_text(v->user, sizeof v->user, st, 8);
    vms_repo_column_text(v->host, sizeof v->host, st, 9);
    return row_signature(r, st, v, err);
}

/* NUMBER 0 is the latest. */
static int query_version(vms_local *r, const char *image, uint32_t number, struct vms_version *out,
                         bool *found, fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(r,
                              VERSION_QUERY "WHERE i.name = ?1 AND (?2 = 0 OR v.number = ?2) "
                                            "ORDER BY v.number DESC LIMIT 1",
                              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, image, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, number);
    int s = sqlite3_step(st);
    *found = s == SQLITE_ROW;
    if (*found)
        rc = row_to_version(r, st, out, err);
    else if (s != SQLITE_DONE)
        rc = vms_repo_db_fail(r, s, "reading a version", err);
    sqlite3_finalize(st);
    return rc;
}

/* Levenshtein distance, a letter's case aside; names are at most 255 bytes
 * (longer ones are never close). */
static size_t name_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[256];
    if (la > 255 || lb > 255)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            bool same = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]);
            size_t best = diag + !same;
            best = up + 1 < best ? up + 1 : best;
            row[j] = row[j - 1] + 1 < best ? row[j - 1] + 1 : best;
            diag = up;
        }
    }
    return row[lb];
}

/* The image whose name is nearest IMAGE, into OUT ("" when none is close:
 * a third of IMAGE's letters changed at most, one for a short name, and
 * never all of them). */
static void closest_image(vms_local *r, const char *image, char *out, size_t len)
{
    sqlite3_stmt *st;
    fsp_error ignored = {0};
    size_t n = strlen(image), best = n / 3 > 0 ? n / 3 : 1;
    out[0] = 0;
    if (vms_repo_prepare(r, "SELECT name FROM images", &st, &ignored))
        return;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        size_t d = name ? name_distance(image, name) : SIZE_MAX;
        if (d <= best && d < n && strlen(name) < len) {
            best = d;
            strcpy(out, name);
        }
    }
    sqlite3_finalize(st);
}

static int no_such_image(vms_local *r, const char *image, fsp_error *err)
{
    char near[256];
    closest_image(r, image, near, sizeof near);
    if (near[0])
        return fsp_fail(err, VMS_EK_NOTFOUND, -ENOENT, "%s: no image named %s; did you mean '%s'?",
                        r->path, image, near);
    return fsp_fail(err, VMS_EK_NOTFOUND, -ENOENT, "%s: no image named %s", r->path, image);
}

static int no_such_version(vms_local *r, const char *image, uint32_t version, fsp_error *err)
{
    int64_t id;
    uint32_t latest;
    bool exists;
    int rc = image_state(r, image, &id, &latest, &exists, err);
    if (rc)
        return rc;
    if (!exists)
        return no_such_image(r, image, err);
    return fsp_fail(err, VMS_EK_NOTFOUND, -ENOENT, "%s: %s has no version %u (latest is %u)",
                    r->path, image, version, latest);
}

int vms_local_version(vms_repo *repo, const char *image, uint32_t version, struct vms_version *out,
                      fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    int rc = check_image_name(r, image, err);
    bool found = false;
    if (!rc)
        rc = query_version(r, image, version, out, &found, err);
    return rc || found ? rc : no_such_version(r, image, version, err);
}

/* Someone else recorded LATEST after the caller's PARENT. */
static int version_conflict(vms_local *r, const char *image, uint32_t parent, uint32_t latest,
                            fsp_error *err)
{
    struct vms_version v;
    bool found;
    int rc = query_version(r, image, latest, &v, &found, err);
    if (rc)
        return rc;
    char when[40];
    format_time(v.created, when);
    if (parent == 0)
        return fsp_fail(
            err, VMS_EK_CONFLICT, -EEXIST,
            "%s: already exists (version %u was checked in by %s@%s at %s); check out %u first",
            image, latest, v.user, v.host, when, latest);
    return fsp_fail(
        err, VMS_EK_CONFLICT, -EAGAIN,
        "%s: version %u was checked in by %s@%s at %s since version %u; check out %u first", image,
        latest, v.user, v.host, when, parent, latest);
}

/* PARENT must be the latest version: checks it, creating a new image's row. */
static int claim_next_number(vms_local *r, const char *image, uint32_t parent, int64_t *image_id,
                             fsp_error *err)
{
    uint32_t latest = 0;
    bool exists;
    int rc = image_state(r, image, image_id, &latest, &exists, err);
    if (rc)
        return rc;
    if (exists && parent < latest)
        return version_conflict(r, image, parent, latest, err);
    if (exists && parent > latest)
        return fsp_fail(err, VMS_EK_NOTFOUND, -ENOENT, "%s: %s has no version %u (latest is %u)",
                        r->path, image, parent, latest);
    if (!exists && parent != 0)
        return no_such_image(r, image, err);
    if (exists)
        return 0;
    sqlite3_stmt *st;
    rc = vms_repo_prepare(r, "INSERT INTO images(name, created) VALUES(?1, ?2)", &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, image, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)time(NULL));
    rc = vms_repo_run_once(r, st, "adding an image", err);
    *image_id = sqlite3_last_insert_rowid(r->db);
    return rc;
}

/* V (image, number, parent, manifest, digest, size, message) as a new row,
 * signed when SIGNER is not NULL. */
static int insert_version(vms_local *r, int64_t image_id, struct vms_version *v,
                          const vms_signer *signer, fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = signer ? vms_signer_sign(signer, v, err) : 0;
    if (!rc)
        rc = vms_repo_prepare(
            r,
            "INSERT INTO versions(image_id, number, parent, manifest, digest, size, created, "
            "message, user, host, signature, signer) "
            "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            &st, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, image_id);
    sqlite3_bind_int64(st, 2, v->number);
    sqlite3_bind_int64(st, 3, v->parent);
    sqlite3_bind_blob(st, 4, v->manifest, FSP_SHA256_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, v->digest, FSP_SHA256_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (int64_t)v->size);
    sqlite3_bind_int64(st, 7, (int64_t)time(NULL));
    sqlite3_bind_text(st, 8, v->message, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, r->user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, r->host, -1, SQLITE_STATIC);
    if (v->is_signed) {
        sqlite3_bind_blob(st, 11, v->signature, VMS_SIGNATURE_LEN, SQLITE_STATIC);
        sqlite3_bind_blob(st, 12, v->signer, FSP_SHA256_LEN, SQLITE_STATIC);
    }
    return vms_repo_run_once(r, st, "adding a version", err);
}

/* What add_version records, before it knows whether PARENT is still the latest. */
static void new_version(struct vms_version *v, const char *image, uint32_t parent,
                        const uint8_t *manifest, const uint8_t *digest, uint64_t size,
                        const char *message)
{
    memset(v, 0, sizeof *v);
    snprintf(v->image, sizeof v->image, "%s", image);
    v->number = parent + 1;
    v->parent = parent;
    memcpy(v->manifest, manifest, FSP_SHA256_LEN);
    memcpy(v->digest, digest, FSP_SHA256_LEN);
    v->size = size;
    snprintf(v->message, sizeof v->message, "%s", message);
}

/* A version must name a manifest gc can read, or gc would stop for good. */
static int check_manifest_stored(vms_local *r, const uint8_t *id, fsp_error *err)
{
    char *path = vms_repo_manifest_path(r, id);
    if (!path)
        return nomem(err);
    bool stored = access(path, F_OK) == 0;
    free(path);
    if (stored)
        return 0;
    char hex[HEX_LEN];
    fsp_hex(id, FSP_SHA256_LEN, hex);
    return fsp_fail(err, FSP_EK_USAGE, -ENOENT,
                    "%s: manifest %s is not in the repository; put it before adding a version",
                    r->path, hex);
}

int vms_local_add_version(vms_repo *repo, const char *image, uint32_t parent,
                          const uint8_t manifest[FSP_SHA256_LEN],
                          const uint8_t digest[FSP_SHA256_LEN], uint64_t size, const char *message,
                          uint32_t *number, fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    if (!message)
        message = "";
    int rc = check_image_name(r, image, err);
    if (!rc && strlen(message) >= sizeof((struct vms_version *)0)->message)
        rc = fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: the message is over %zu bytes", r->path,
                      sizeof((struct vms_version *)0)->message - 1);
    if (!rc && size > INT64_MAX)
        rc = fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: image size %llu is too large", r->path,
                      (unsigned long long)size);
    if (!rc)
        rc = check_manifest_stored(r, manifest, err);
    vms_signer *signer = NULL; /* read for each version: a key made since is used at once */
    if (!rc)
        rc = vms_local_signer(r, &signer, err);
    if (!rc)
        rc = vms_repo_begin(r, err);
    if (rc) {
        vms_signer_free(signer);
        return rc;
    }
    int64_t image_id;
    struct vms_version v;
    new_version(&v, image, parent, manifest, digest, size, message);
    rc = claim_next_number(r, image, parent, &image_id, err);
    if (!rc)
        rc = insert_version(r, image_id, &v, signer, err);
    rc = vms_repo_finish(r, rc, err);
    vms_signer_free(signer);
    if (!rc)
        *number = parent + 1;
    return rc;
}

int vms_local_list(vms_repo *repo, const char *image, vms_version_cb cb, void *ctx, fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    int rc = image ? check_image_name(r, image, err) : 0;
    sqlite3_stmt *st;
    if (!rc)
        rc = vms_repo_prepare(r,
                              image ? VERSION_QUERY "WHERE i.name = ?1 ORDER BY v.id"
                                    : VERSION_QUERY "ORDER BY v.id",
                              &st, err);
    if (rc)
        return rc;
    if (image)
        sqlite3_bind_text(st, 1, image, -1, SQLITE_STATIC);
    size_t n = 0;
    int s;
    while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
        struct vms_version v;
        rc = row_to_version(r, st, &v, err);
        if (!rc)
            rc = cb(ctx, &v);
        n++;
    }
    if (!rc && s != SQLITE_DONE)
        rc = vms_repo_db_fail(r, s, "listing versions", err);
    sqlite3_finalize(st);
    if (!rc && image && n == 0)
        rc = no_such_version(r, image, 0, err);
    return rc;
}

/* ---- leases --------------------------------------------------------------------- */

static int query_lease(vms_local *r, const char *image, struct vms_lease *l, bool *found,
                       fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(r,
                              "SELECT l.version, l.user, l.host, l.since FROM leases l "
                              "JOIN images i ON i.id = l.image_id WHERE i.name = ?1",
                              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, image, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    *found = s == SQLITE_ROW;
    if (*found) {
        memset(l, 0, sizeof *l);
        snprintf(l->image, sizeof l->image, "%s", image);
        l->version = (uint32_t)sqlite3_column_int64(st, 0);
        vms_repo_column_text(l->user, sizeof l->user, st, 1);
        vms_repo_column_text(l->host, sizeof l->host, st, 2);
        l->since = sqlite3_column_int64(st, 3);
    }
    sqlite3_finalize(st);
    return s == SQLITE_ROW || s == SQLITE_DONE ? 0 : vms_repo_db_fail(r, s, "reading a lease", err);
}

/* A lease belongs to a user on a host: an agent's --user first (what the key
 * stands for), then the host the client named. */
static bool held_by_us(const vms_local *r, const struct vms_lease *l)
{
    return strcmp(l->user, r->user) == 0 && strcmp(l->host, r->host) == 0;
}

static void describe_holder(const struct vms_lease *l, char *out, size_t cap)
{
    char since[40];
    format_time(l->since, since);
    snprintf(out, cap, "%s@%s since %s (version %u)", l->user, l->host, since, l->version);
}

static int steal_lease(vms_local *r, const struct vms_lease *held, uint32_t version, fsp_error *err)
{
    char holder[512], detail[600];
    describe_holder(held, holder, sizeof holder);
    snprintf(detail, sizeof detail, "taken from %s", holder);
    return vms_local_audit(&r->base, "steal", held->image, version, detail, err);
}

static int store_lease(vms_local *r, int64_t image_id, uint32_t version, fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(r,
                              "INSERT OR REPLACE INTO leases(image_id, version, user, host, since) "
                              "VALUES(?1, ?2, ?3, ?4, ?5)",
                              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, image_id);
    sqlite3_bind_int64(st, 2, version);
    sqlite3_bind_text(st, 3, r->user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, r->host, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (int64_t)time(NULL));
    return vms_repo_run_once(r, st, "taking a lease", err);
}

/* The image's row id, or VMS_EK_NOTFOUND. */
static int existing_image(vms_local *r, const char *image, int64_t *id, fsp_error *err)
{
    uint32_t latest;
    bool exists;
    int rc = image_state(r, image, id, &latest, &exists, err);
    return rc || exists ? rc : no_such_image(r, image, err);
}

/* VERSION of IMAGE as given, never the latest that 0 stands for elsewhere: a
 * lease or a forget of a version that is not there (never was, or forgotten
 * since a checkout found it) would leave a row that check calls corrupt and
 * gc stops at, or a false "forget" in the audit log. */
static int require_version(vms_local *r, const char *image, uint32_t version, fsp_error *err)
{
    struct vms_version v;
    bool found = false;
    int rc = version ? query_version(r, image, version, &v, &found, err) : 0;
    if (rc || found)
        return rc;
    int64_t id;
    uint32_t latest = 0;
    bool exists;
    rc = image_state(r, image, &id, &latest, &exists, err);
    return rc ? rc
              : fsp_fail(err, VMS_EK_NOTFOUND, -ENOENT,
                         "%s: there is no version %s@%u (latest is %u; forgotten, or never "
                         "checked in)",
                         r->path, image, version, latest);
}

/* Opens the transaction of a lease change and reads the lease.  *OPEN tells
 * whether a transaction was opened, which the caller must then vms_repo_finish(). */
static int lease_transaction(vms_local *r, const char *image, int64_t *id, struct vms_lease *held,
                             bool *found, bool *open, fsp_error *err)
{
    int rc = check_image_name(r, image, err);
    if (!rc)
        rc = vms_repo_begin(r, err);
    *open = !rc;
    if (!rc)
        rc = existing_image(r, image, id, err);
    if (!rc)
        rc = query_lease(r, image, held, found, err);
    return rc;
}

int vms_local_lease_take(vms_repo *repo, const char *image, uint32_t version, bool steal,
                         fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    int64_t id;
    struct vms_lease held;
    bool found = false;
    bool open;
    int rc = lease_transaction(r, image, &id, &held, &found, &open, err);
    if (!open)
        return rc;
    if (!rc && found && !held_by_us(r, &held)) {
        char holder[512];
        describe_holder(&held, holder, sizeof holder);
        if (steal)
            rc = steal_lease(r, &held, version, err);
        else
            rc = fsp_fail(err, VMS_EK_CONFLICT, -EBUSY,
                          "%s is checked out by %s", image, holder);
    }
    if (!rc)
        rc = require_version(r, image, version, err);
    if (!rc)
        rc = store_lease(r, id, version, err);
    return vms_repo_finish(r, rc, err);
}

int vms_local_lease_get(vms_repo *repo, const char *image, struct vms_lease *out, bool *found,
                        fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    *found = false;
    int rc = check_image_name(r, image, err);
    return rc ? rc : query_lease(r, image, out, found, err);
}

/* Only the holder's lease goes (same user, same host); nobody's lease is not
 * an error. */
int vms_local_lease_release(vms_repo *repo, const char *image, fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    int64_t id;
    struct vms_lease held;
    bool found = false;
    bool open;
    int rc = lease_transaction(r, image, &id, &held, &found, &open, err);
    if (!open)
        return rc;
    if (!rc && found && !held_by_us(r, &held)) {
        char holder[512];
        describe_holder(&held, holder, sizeof holder);
        rc = fsp_fail(err, VMS_EK_CONFLICT, -EPERM, "%s is checked out by %s, not by %s@%s",
                      image, holder, r->user, r->host);
    } else if (!rc && found)
        rc = vms_repo_exec_id(r, "DELETE FROM leases WHERE image_id = ?1", id, err);
    return vms_repo_finish(r, rc, err);
}

/* ---- audit log -------------------------------------------------------------------- */

int vms_local_audit(vms_repo *repo, const char *action, const char *image, uint32_t version,
                    const char *detail, fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    if (!action || !*action)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: an audit entry needs an action", r->path);
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(r,
                              "INSERT INTO audit(at, user, host, action, image, version, detail) "
                              "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, (int64_t)time(NULL));
    sqlite3_bind_text(st, 2, r->user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->host, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, action, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, image, -1, SQLITE_STATIC); /* NULL binds NULL */
    sqlite3_bind_int64(st, 6, version);
    sqlite3_bind_text(st, 7, detail, -1, SQLITE_STATIC);
    return vms_repo_run_once(r, st, "writing the audit log", err);
}

/* ---- queries -------------------------------------------------------------------------- */

/* Text of a column, "" for NULL; valid until the statement steps again. */
static const char *text_at(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? (const char *)t : "";
}

struct query_rows {
    int (*row)(struct query_rows *q, sqlite3_stmt *st);
    union { /* the caller's callback: the one ROW knows */
        vms_image_cb image;
        vms_lease_cb lease;
        vms_audit_cb audit;
    } cb;
    void *ctx;
};

/* Steps ST to its end, handing each row to Q->row, then finalizes it. */
static int each_row(vms_local *r, sqlite3_stmt *st, struct query_rows *q, const char *what,
                    fsp_error *err)
{
    int rc = 0, s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW)
        rc = q->row(q, st);
    if (!rc && s != SQLITE_DONE)
        rc = vms_repo_db_fail(r, s, what, err);
    sqlite3_finalize(st);
    return rc;
}

/* Columns FIRST.. of a lease: version, user, host, since (the image apart). */
static struct vms_lease_info lease_at(sqlite3_stmt *st, const char *image, int first)
{
    return (struct vms_lease_info){.image = image,
                                   .version = (uint32_t)sqlite3_column_int64(st, first),
                                   .user = text_at(st, first + 1),
                                   .host = text_at(st, first + 2),
                                   .since = sqlite3_column_int64(st, first + 3)};
}

static int image_row(struct query_rows *q, sqlite3_stmt *st)
{
    bool leased = sqlite3_column_type(st, 4) != SQLITE_NULL; /* before any conversion */
    const char *name = text_at(st, 0);
    struct vms_lease_info lease = lease_at(st, name, 4);
    struct vms_image_info i = {.name = name,
                               .latest = (uint32_t)sqlite3_column_int64(st, 1),
                               .size = (uint64_t)sqlite3_column_int64(st, 2),
                               .created = sqlite3_column_int64(st, 3),
                               .lease = leased ? &lease : NULL};
    return q->cb.image(q->ctx, &i);
}

int vms_local_images(vms_repo *repo, vms_image_cb cb, void *ctx, fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(
        r,
        "SELECT i.name, COALESCE(v.number, 0), COALESCE(v.size, 0), COALESCE(v.created, i.created),"
        " l.version, l.user, l.host, l.since FROM images i"
        " LEFT JOIN versions v ON v.image_id = i.id"
        "  AND v.number = (SELECT MAX(number) FROM versions WHERE image_id = i.id)"
        " LEFT JOIN leases l ON l.image_id = i.id ORDER BY i.name",
        &st, err);
    struct query_rows q = {image_row, {.image = cb}, ctx};
    return rc ? rc : each_row(r, st, &q, "listing images", err);
}

/* IMAGE, which must be a name the catalog knows. */
static int named_image(vms_local *r, const char *image, fsp_error *err)
{
    int64_t id;
    int rc = check_image_name(r, image, err);
    return rc ? rc : existing_image(r, image, &id, err);
}

static int lease_row(struct query_rows *q, sqlite3_stmt *st)
{
    struct vms_lease_info l = lease_at(st, text_at(st, 0), 1);
    return q->cb.lease(q->ctx, &l);
}

int vms_local_leases(vms_repo *repo, const char *image, vms_lease_cb cb, void *ctx, fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    int rc = image ? named_image(r, image, err) : 0;
    sqlite3_stmt *st;
    if (!rc)
        rc = vms_repo_prepare(r,
                              "SELECT i.name, l.version, l.user, l.host, l.since FROM leases l"
                              " JOIN images i ON i.id = l.image_id"
                              " WHERE ?1 IS NULL OR i.name = ?1 ORDER BY i.name",
                              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, image, -1, SQLITE_STATIC); /* NULL binds NULL */
    struct query_rows q = {lease_row, {.lease = cb}, ctx};
    return each_row(r, st, &q, "listing leases", err);
}

static int audit_row(struct query_rows *q, sqlite3_stmt *st)
{
    struct vms_audit_entry e = {
        .at = sqlite3_column_int64(st, 0),
        .user = text_at(st, 1),
        .host = text_at(st, 2),
        .action = text_at(st, 3),
        .image = sqlite3_column_type(st, 4) == SQLITE_NULL ? NULL : text_at(st, 4),
        .version = (uint32_t)sqlite3_column_int64(st, 5),
        .detail = text_at(st, 6),
    };
    return q->cb.audit(q->ctx, &e);
}

int vms_local_audit_log(vms_repo *repo, const char *image, int64_t since, vms_audit_cb cb, void *ctx,
                        fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    int rc = image ? named_image(r, image, err) : 0;
    sqlite3_stmt *st;
    if (!rc)
        rc = vms_repo_prepare(r,
                              "SELECT at, user, host, action, image, version, detail FROM audit"
                              " WHERE (?1 IS NULL OR image = ?1) AND at >= ?2 ORDER BY id",
                              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, image, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, since);
    struct query_rows q = {audit_row, {.audit = cb}, ctx};
    return each_row(r, st, &q, "reading the audit log", err);
}

/* ---- manifests ------------------------------------------------------------------------ */

/* Messages about the copy in tmp/ should name the file the caller gave. */
static void rename_in_message(fsp_error *err, const char *from, const char *to)
{
    size_t n = strlen(from);
    if (!err || strncmp(err->msg, from, n) != 0)
        return;
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s%s", to, err->msg + n);
    memcpy(err->msg, msg, sizeof msg);
}

/* Copies PATH to a temporary file in tmp/, hashing it; *TMP is malloc'd. */
static int copy_to_tmp(vms_local *r, const char *path, char **tmp, uint8_t id[FSP_SHA256_LEN],
                       fsp_error *err)
{
    *tmp = vms_local_join(r, "tmp/manifest-XXXXXX");
    if (!*tmp)
        return nomem(err);
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        free(*tmp);
        *tmp = NULL;
        return fsp_fail(err, FSP_EK_OPEN, -errno, "%s: cannot open: %s", path, strerror(errno));
    }
    int out = vms_mkostemp_readable(*tmp);
    if (out < 0) {
        int rc = fsp_fail(err, FSP_EK_IO, out, "%s: cannot create: %s", *tmp, strerror(-out));
        close(in);
        free(*tmp);
        *tmp = NULL;
        return rc;
    }
    int rc = copy_hashing(in, path, out, *tmp, id, err);
    close(in);
    if (!rc && fsync(out) < 0)
        rc = fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot write: %s", *tmp, strerror(errno));
    close(out);
    return rc;
}

/* The copy, not the original, is checked: what is stored is what was read. */
int vms_local_put_manifest(vms_repo *repo, const char *path, uint8_t id[FSP_SHA256_LEN], fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    char *tmp, *dest = NULL;
    int rc = copy_to_tmp(r, path, &tmp, id, err);
    struct fsp_sink check_only = {0};
    if (!rc) {
        rc = vms_manifest_read(tmp, &check_only, err);
        if (rc)
            rename_in_message(err, tmp, path);
    }
    if (!rc && !(dest = vms_repo_manifest_path(r, id)))
        rc = nomem(err);
    bool renamed = false;
    if (!rc && access(dest, F_OK) != 0) { /* else stored already: same bytes, same name */
        renamed = rename(tmp, dest) == 0;
        if (!renamed)
            rc = fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot rename into place: %s", dest,
                          strerror(errno));
        else if ((rc = vms_fsync_parent(dest)) < 0)
            fsp_fail(err, FSP_EK_IO, rc, "%s: cannot sync its directory: %s", dest, strerror(-rc));
    }
    if (tmp && !renamed)
        unlink(tmp);
    free(tmp);
    free(dest);
    return rc;
}

int vms_local_get_manifest(vms_repo *repo, const uint8_t id[FSP_SHA256_LEN], const char *dest,
                           fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    char hex[HEX_LEN], *src = vms_repo_manifest_path(r, id), *tmp = NULL;
    fsp_hex(id, FSP_SHA256_LEN, hex);
    if (!src || asprintf(&tmp, "%s.tmp-XXXXXX", dest) < 0) {
        free(src);
        return nomem(err);
    }
    int rc = 0, in = open(src, O_RDONLY | O_CLOEXEC), out = -1;
    if (in < 0 && errno == ENOENT)
        rc = fsp_fail(err, FSP_EK_CORRUPT, -ENOENT, "%s: manifest %s is not in the repository",
                      r->path, hex);
    else if (in < 0)
        rc = fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot open: %s", src, strerror(errno));
    else if ((out = vms_mkostemp_readable(tmp)) < 0)
        rc = fsp_fail(err, FSP_EK_OPEN, out, "%s: cannot create: %s", tmp, strerror(-out));
    uint8_t actual[FSP_SHA256_LEN];
    if (!rc)
        rc = copy_hashing(in, src, out, tmp, actual, err);
    if (!rc && memcmp(actual, id, FSP_SHA256_LEN) != 0)
        rc = fsp_fail(err, FSP_EK_CORRUPT, -EUCLEAN,
                      "%s: manifest %s is corrupt (checksum mismatch)", r->path, hex);
    bool created = out >= 0;
    if (!rc) {
        rc = vms_commit_file(out, tmp, dest, err);
        out = -1;
    }
    if (out >= 0)
        close(out);
    if (in >= 0)
        close(in);
    if (rc && created)
        unlink(tmp);
    free(tmp);
    free(src);
    return rc;
}

/* ---- forgetting a version ------------------------------------------------------ */

/* Why VERSION of IMAGE must stay, or 0.  The latest stays because a check-in's
 * parent must be the latest (and numbers must never be given twice); a leased
 * version stays because its holder's cached manifest names objects that gc
 * would otherwise drop before the holder checks in. */
static int refuse_needed(vms_local *r, const char *image, uint32_t version, uint32_t latest,
                         fsp_error *err)
{
    struct vms_lease held;
    bool leased = false;
    int rc = query_lease(r, image, &held, &leased, err);
    if (!rc && version == latest)
        rc = fsp_fail(err, VMS_EK_CONFLICT, -EBUSY,
                      "%s: %s@%u is the image's latest version, which the next check-in needs "
                      "as its parent: it is never forgotten",
                      r->path, image, version);
    if (!rc && leased && held.version == version) {
        char holder[512];
        describe_holder(&held, holder, sizeof holder);
        rc = fsp_fail(err, VMS_EK_CONFLICT, -EBUSY, "%s: %s@%u is checked out by %s", r->path,
                      image, version, holder);
    }
    return rc;
}

static int delete_version(vms_local *r, int64_t image_id, uint32_t version, fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(r, "DELETE FROM versions WHERE image_id = ?1 AND number = ?2", &st,
                              err);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, image_id);
    sqlite3_bind_int64(st, 2, version);
    return vms_repo_run_once(r, st, "forgetting a version", err);
}

int vms_local_forget(vms_repo *repo, const char *image, uint32_t version, bool dry_run,
                     fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    int64_t id;
    uint32_t latest;
    int rc = check_image_name(r, image, err);
    if (!rc)
        rc = vms_repo_begin(r, err);
    if (rc)
        return rc;
    rc = existing_image(r, image, &id, err);
    if (!rc)
        rc = require_version(r, image, version, err);
    bool exists;
    if (!rc)
        rc = image_state(r, image, &id, &latest, &exists, err);
    if (!rc)
        rc = refuse_needed(r, image, version, latest, err);
    if (!rc && !dry_run)
        rc = delete_version(r, id, version, err);
    if (!rc && !dry_run)
        rc = vms_local_audit(repo, "forget", image, version, "", err);
    return vms_repo_finish(r, rc, err); /* a dry run wrote nothing to commit */
}
