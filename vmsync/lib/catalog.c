/* The catalog of a local repository (SQLite in WAL mode): creating and
 * opening repositories, images and versions, leases, the audit log, and the
 * manifest files.  The object store is store.c.
 *
 * Every transaction that reads and then writes starts with BEGIN IMMEDIATE,
 * so two processes racing for the same image serialise on SQLite's write
 * lock (waiting up to BUSY_TIMEOUT_MS) instead of failing with SQLITE_BUSY
 * when one of them tries to upgrade a read transaction.  synchronous=FULL:
 * commits are few (a pack, a version, a lease), and a lease or version that a
 * client was told about must survive a power cut. */
#include "repo_local.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MARKER_NAME "vmsync-repo"
#define MARKER_TEXT "vmsync-repo 1\n"
#define FORMAT_VERSION 1
#define SCHEMA_VERSION "1"
#define BUSY_TIMEOUT_MS 30000
#define HEX_LEN (2 * FSP_SHA256_LEN + 1)
#define COPY_BUF (256u << 10)

static const char SCHEMA[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE images(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " created INTEGER NOT NULL);"
    "CREATE TABLE versions(id INTEGER PRIMARY KEY,"
    " image_id INTEGER NOT NULL REFERENCES images(id), number INTEGER NOT NULL,"
    " parent INTEGER NOT NULL, manifest BLOB NOT NULL, digest BLOB NOT NULL, size INTEGER NOT NULL,"
    " created INTEGER NOT NULL, message TEXT NOT NULL, user TEXT NOT NULL, host TEXT NOT NULL,"
    " UNIQUE(image_id, number));"
    "CREATE TABLE leases(image_id INTEGER PRIMARY KEY REFERENCES images(id),"
    " version INTEGER NOT NULL, user TEXT NOT NULL, host TEXT NOT NULL, since INTEGER NOT NULL);"
    "CREATE TABLE audit(id INTEGER PRIMARY KEY, at INTEGER NOT NULL, user TEXT NOT NULL,"
    " host TEXT NOT NULL, action TEXT NOT NULL, image TEXT, version INTEGER, detail TEXT);"
    /* AUTOINCREMENT: a pack id is never reused, so cached file descriptors
     * keyed by id cannot point at another pack. */
    "CREATE TABLE packs(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,"
    " bytes INTEGER NOT NULL);"
    "CREATE TABLE objects(hash BLOB PRIMARY KEY, pack_id INTEGER NOT NULL REFERENCES packs(id),"
    " pos INTEGER NOT NULL, stored_len INTEGER NOT NULL, len INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX objects_by_pack ON objects(pack_id);"
    "INSERT INTO meta VALUES('schema', '" SCHEMA_VERSION "');";

/* ---- SQLite helpers ------------------------------------------------------- */

static int db_fail(sqlite3 *db, const char *where, int rc, const char *what, fsp_error *err)
{
    enum fsp_error_kind kind = FSP_EK_IO;
    int code = -EIO;
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        code = -EBUSY;
        break;
    case SQLITE_NOMEM:
        kind = FSP_EK_NOMEM;
        code = -ENOMEM;
        break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        kind = FSP_EK_CORRUPT;
        code = -EUCLEAN;
        break;
    }
    return fsp_fail(err, kind, code, "%s: catalog: %s: %s", where, what,
                    db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

int vms_repo_db_fail(vms_local *r, int rc, const char *what, fsp_error *err)
{
    return db_fail(r->db, r->path, rc, what, err);
}

int vms_repo_exec(vms_local *r, const char *sql, fsp_error *err)
{
    int rc = sqlite3_exec(r->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : vms_repo_db_fail(r, rc, sql, err);
}

int vms_repo_prepare(vms_local *r, const char *sql, sqlite3_stmt **st, fsp_error *err)
{
    int rc = sqlite3_prepare_v2(r->db, sql, -1, st, NULL);
    return rc == SQLITE_OK ? 0 : vms_repo_db_fail(r, rc, "preparing a query", err);
}

int vms_repo_exec_id(vms_local *r, const char *sql, int64_t id, fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(r, sql, &st, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    return s == SQLITE_DONE ? 0 : vms_repo_db_fail(r, s, sql, err);
}

int vms_repo_count(vms_local *r, const char *sql, uint64_t *out, fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(r, sql, &st, err);
    if (rc)
        return rc;
    int s = sqlite3_step(st);
    *out = s == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return s == SQLITE_ROW ? 0 : vms_repo_db_fail(r, s, sql, err);
}

/* Steps a statement that returns no rows, then finalizes it. */
static int run_once(vms_local *r, sqlite3_stmt *st, const char *what, fsp_error *err)
{
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    return s == SQLITE_DONE ? 0 : vms_repo_db_fail(r, s, what, err);
}

int vms_repo_begin(vms_local *r, fsp_error *err) { return vms_repo_exec(r, "BEGIN IMMEDIATE", err); }

int vms_repo_commit(vms_local *r, fsp_error *err)
{
    int rc = vms_repo_exec(r, "COMMIT", err);
    if (rc)
        vms_repo_rollback(r);
    return rc;
}

void vms_repo_rollback(vms_local *r)
{
    if (!sqlite3_get_autocommit(r->db))
        sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Ends the transaction: commit when RC is 0, else roll back and keep RC. */
static int finish(vms_local *r, int rc, fsp_error *err)
{
    if (!rc)
        return vms_repo_commit(r, err);
    vms_repo_rollback(r);
    return rc;
}

static void column_text(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    snprintf(dst, cap, "%s", s ? (const char *)s : "");
}

/* ---- the handles of this process ------------------------------------------ */

static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static vms_local *open_handles;

static void register_handle(vms_local *r)
{
    pthread_mutex_lock(&open_lock);
    r->next_open = open_handles;
    open_handles = r;
    pthread_mutex_unlock(&open_lock);
}

static void unregister_handle(vms_local *r)
{
    pthread_mutex_lock(&open_lock);
    for (vms_local **p = &open_handles; *p; p = &(*p)->next_open)
        if (*p == r) {
            *p = r->next_open;
            break;
        }
    pthread_mutex_unlock(&open_lock);
}

bool vms_repo_shared_in_process(const vms_local *r)
{
    bool shared = false;
    pthread_mutex_lock(&open_lock);
    for (const vms_local *h = open_handles; h && !shared; h = h->next_open)
        shared = h != r && h->lock_dev == r->lock_dev && h->lock_ino == r->lock_ino;
    pthread_mutex_unlock(&open_lock);
    return shared;
}

/* ---- paths and files ---------------------------------------------------- */

static char *join2(const char *dir, const char *name)
{
    char *p;
    return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

char *vms_repo_manifest_path(const vms_local *r, const uint8_t id[FSP_SHA256_LEN])
{
    char hex[HEX_LEN], *p;
    fsp_hex(id, FSP_SHA256_LEN, hex);
    return asprintf(&p, "%s/manifests/%s.vmsm", r->path, hex) < 0 ? NULL : p;
}

static int nomem(fsp_error *err) { return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

int vms_local_cache_dir(vms_local *r, const char *sub, char *path, size_t len, fsp_error *err)
{
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

/* mkostemp, but readable by all like any other file: the repository may be
 * shared by several users. */
static int mkostemp_readable(char *template)
{
    int fd = mkostemp(template, O_CLOEXEC);
    if (fd >= 0 && fchmod(fd, 0644) < 0) {
        int e = errno;
        close(fd);
        unlink(template);
        errno = e;
        return -1;
    }
    return fd;
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

/* Makes TMP (written through FD, which this closes) durable as DEST. */
static int commit_file(int fd, const char *tmp, const char *dest, fsp_error *err)
{
    if (fsync(fd) < 0) {
        int e = errno;
        close(fd);
        return fsp_fail(err, FSP_EK_IO, -e, "%s: cannot write: %s", tmp, strerror(e));
    }
    if (close(fd) < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot write: %s", tmp, strerror(errno));
    if (rename(tmp, dest) < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot rename into place: %s", dest,
                        strerror(errno));
    int rc = vms_fsync_parent(dest);
    return rc ? fsp_fail(err, FSP_EK_IO, rc, "%s: cannot sync its directory: %s", dest,
                         strerror(-rc))
              : 0;
}

/* ---- creating and opening ------------------------------------------------ */

static int make_empty_dir(const char *path, fsp_error *err)
{
    if (mkdir(path, 0777) == 0)
        return 0;
    if (errno != EEXIST)
        return fsp_fail(err, FSP_EK_OPEN, -errno, "%s: cannot create: %s", path, strerror(errno));
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
        return fsp_fail(err, FSP_EK_USAGE, -ENOTDIR, "%s: exists and is not a directory", path);
    char *marker = join2(path, MARKER_NAME);
    if (!marker)
        return nomem(err);
    bool is_repo = access(marker, F_OK) == 0;
    free(marker);
    if (is_repo)
        return fsp_fail(err, FSP_EK_USAGE, -EEXIST, "%s: already a vmsync repository", path);
    DIR *d = opendir(path);
    if (!d)
        return fsp_fail(err, FSP_EK_OPEN, -errno, "%s: cannot list: %s", path, strerror(errno));
    struct dirent *de;
    bool empty = true;
    while (empty && (de = readdir(d)))
        empty = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
    closedir(d);
    return empty ? 0 : fsp_fail(err, FSP_EK_USAGE, -ENOTEMPTY, "%s: directory is not empty", path);
}

static int make_layout(const char *path, fsp_error *err)
{
    static const char *const dirs[] = {"packs", "manifests", "tmp"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        char *p = join2(path, dirs[i]);
        if (!p)
            return nomem(err);
        int rc = mkdir(p, 0777) < 0 ? -errno : 0;
        if (rc)
            fsp_fail(err, FSP_EK_IO, rc, "%s: cannot create: %s", p, strerror(-rc));
        free(p);
        if (rc)
            return rc;
    }
    char *lock = join2(path, "lock");
    if (!lock)
        return nomem(err);
    int fd = open(lock, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
    int rc = fd < 0
                 ? fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot create: %s", lock, strerror(errno))
                 : 0;
    if (fd >= 0)
        close(fd);
    free(lock);
    return rc;
}

static int create_catalog(const char *path, fsp_error *err)
{
    char *file = join2(path, "catalog.db");
    if (!file)
        return nomem(err);
    sqlite3 *db = NULL;
    int s = sqlite3_open_v2(file, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    const char *step = "creating";
    if (s == SQLITE_OK) {
        step = "setting WAL mode";
        s = sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    }
    if (s == SQLITE_OK) {
        step = "creating the schema";
        s = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    }
    if (s == SQLITE_OK)
        s = sqlite3_exec(db, SCHEMA, NULL, NULL, NULL);
    if (s == SQLITE_OK)
        s = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    int rc = s == SQLITE_OK ? 0 : db_fail(db, path, s, step, err);
    sqlite3_close(db);
    free(file);
    return rc;
}

/* Written last, through a temporary name: a directory is a repository only
 * once everything else is in place. */
static int write_marker(const char *path, fsp_error *err)
{
    char *tmp = join2(path, "tmp/marker-XXXXXX"), *marker = join2(path, MARKER_NAME);
    int rc = 0;
    int fd = tmp && marker ? mkostemp_readable(tmp) : -1;
    if (!tmp || !marker)
        rc = nomem(err);
    else if (fd < 0)
        rc = fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot create: %s", tmp, strerror(errno));
    else if ((rc = vms_write_all(fd, MARKER_TEXT, strlen(MARKER_TEXT))) < 0) {
        close(fd);
        fsp_fail(err, FSP_EK_IO, rc, "%s: cannot write: %s", tmp, strerror(-rc));
    } else
        rc = commit_file(fd, tmp, marker, err);
    if (rc && tmp && fd >= 0)
        unlink(tmp);
    free(tmp);
    free(marker);
    return rc;
}

int vms_local_init(const char *path, fsp_error *err)
{
    int rc = make_empty_dir(path, err);
    if (!rc)
        rc = make_layout(path, err);
    if (!rc)
        rc = create_catalog(path, err);
    if (!rc)
        rc = write_marker(path, err);
    return rc;
}

static int check_marker(const char *path, fsp_error *err)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return fsp_fail(err, FSP_EK_OPEN, -errno, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return fsp_fail(err, FSP_EK_FORMAT, -ENOTDIR, "%s: not a vmsync repository", path);
    char *marker = join2(path, MARKER_NAME);
    if (!marker)
        return nomem(err);
    int fd = open(marker, O_RDONLY | O_CLOEXEC);
    int e = errno;
    free(marker);
    if (fd < 0 && e == ENOENT)
        return fsp_fail(err, FSP_EK_FORMAT, -ENOENT, "%s: not a vmsync repository", path);
    if (fd < 0)
        return fsp_fail(err, FSP_EK_OPEN, -e, "%s: cannot open: %s", path, strerror(e));
    char buf[64];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    unsigned version;
    if (!strcmp(buf, MARKER_TEXT))
        return 0;
    if (sscanf(buf, MARKER_NAME " %u", &version) == 1 && version != FORMAT_VERSION)
        return fsp_fail(err, FSP_EK_FORMAT, -ENOTSUP,
                        "%s: repository format %u is not supported (this vmsync reads format %d)",
                        path, version, FORMAT_VERSION);
    return fsp_fail(err, FSP_EK_FORMAT, -EINVAL, "%s: not a vmsync repository (bad marker)", path);
}

static int set_identity(vms_local *r, const char *user, const char *host, fsp_error *err)
{
    if (!user || !*user || strlen(user) >= sizeof r->user)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: the user name must be 1 to %zu bytes",
                        r->path, sizeof r->user - 1);
    if (!host || !*host || strlen(host) >= sizeof r->host)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: the host name must be 1 to %zu bytes",
                        r->path, sizeof r->host - 1);
    snprintf(r->user, sizeof r->user, "%s", user);
    snprintf(r->host, sizeof r->host, "%s", host);
    return 0;
}

/* Held shared for the handle's lifetime; blocks while a gc runs. */
static int take_shared_lock(vms_local *r, fsp_error *err)
{
    char *lock = vms_local_join(r, "lock");
    if (!lock)
        return nomem(err);
    r->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    int rc = r->lock_fd < 0 ? -errno : 0;
    while (!rc && flock(r->lock_fd, LOCK_SH) < 0)
        if (errno != EINTR)
            rc = -errno;
    struct stat st;
    if (!rc && fstat(r->lock_fd, &st) < 0)
        rc = -errno;
    if (rc)
        fsp_fail(err, FSP_EK_IO, rc, "%s: cannot lock: %s", lock, strerror(-rc));
    else {
        r->lock_dev = st.st_dev;
        r->lock_ino = st.st_ino;
    }
    free(lock);
    return rc;
}

static int check_schema(vms_local *r, fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(r, "SELECT value FROM meta WHERE key = 'schema'", &st, err);
    if (rc)
        return rc;
    int s = sqlite3_step(st);
    char version[32] = "";
    if (s == SQLITE_ROW)
        column_text(version, sizeof version, st, 0);
    sqlite3_finalize(st);
    if (s != SQLITE_ROW && s != SQLITE_DONE)
        return vms_repo_db_fail(r, s, "reading the schema version", err);
    if (strcmp(version, SCHEMA_VERSION) != 0)
        return fsp_fail(err, FSP_EK_FORMAT, -ENOTSUP,
                        "%s: catalog schema \"%s\" is not supported (this vmsync reads %s)",
                        r->path, version, SCHEMA_VERSION);
    return 0;
}

static int open_catalog(vms_local *r, fsp_error *err)
{
    char *file = vms_local_join(r, "catalog.db");
    if (!file)
        return nomem(err);
    int s = sqlite3_open_v2(file, &r->db, SQLITE_OPEN_READWRITE, NULL);
    free(file);
    if (s != SQLITE_OK)
        return vms_repo_db_fail(r, s, "opening", err);
    sqlite3_busy_timeout(r->db, BUSY_TIMEOUT_MS);
    int rc = vms_repo_exec(
        r, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", err);
    return rc ? rc : check_schema(r, err);
}

int vms_local_open(const char *path, const char *user, const char *host, vms_local **out,
                  fsp_error *err)
{
    *out = NULL;
    vms_local *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return nomem(err);
    }
    r->lock_fd = -1;
    r->pack.fd = -1;
    int rc = set_identity(r, user, host, err);
    if (!rc)
        rc = check_marker(path, err);
    if (!rc)
        rc = take_shared_lock(r, err);
    if (!rc)
        rc = open_catalog(r, err);
    if (!rc)
        rc = vms_store_open(r, err);
    if (rc) {
        vms_local_close(r);
        return rc;
    }
    register_handle(r);
    *out = r;
    return 0;
}

void vms_local_close(vms_local *r)
{
    if (!r)
        return;
    unregister_handle(r);
    vms_store_close(r);
    sqlite3_close(r->db);
    if (r->lock_fd >= 0)
        close(r->lock_fd);
    free(r->path);
    free(r);
}

const char *vms_local_path(const vms_local *r) { return r->path; }

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
    "v.user, v.host FROM versions v JOIN images i ON i.id = v.image_id "

static int row_to_version(vms_local *r, sqlite3_stmt *st, struct vms_version *v, fsp_error *err)
{
    memset(v, 0, sizeof *v);
    column_text(v->image, sizeof v->image, st, 0);
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
    column_text(v->message, sizeof v->message, st, 7);
    column_text(v->user, sizeof v->user, st, 8);
    column_text(v->host, sizeof v->host, st, 9);
    return 0;
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

static int no_such_image(vms_local *r, const char *image, fsp_error *err)
{
    return fsp_fail(err, FSP_EK_NOTFOUND, -ENOENT, "%s: no image named %s", r->path, image);
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
    return fsp_fail(err, FSP_EK_NOTFOUND, -ENOENT, "%s: %s has no version %u (latest is %u)",
                    r->path, image, version, latest);
}

int vms_local_version(vms_local *r, const char *image, uint32_t version, struct vms_version *out,
                     fsp_error *err)
{
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
            err, FSP_EK_CONFLICT, -EEXIST,
            "%s: already exists (version %u was checked in by %s@%s at %s); check out %u first",
            image, latest, v.user, v.host, when, latest);
    return fsp_fail(
        err, FSP_EK_CONFLICT, -EAGAIN,
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
        return fsp_fail(err, FSP_EK_NOTFOUND, -ENOENT, "%s: %s has no version %u (latest is %u)",
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
    rc = run_once(r, st, "adding an image", err);
    *image_id = sqlite3_last_insert_rowid(r->db);
    return rc;
}

static int insert_version(vms_local *r, int64_t image_id, uint32_t number, uint32_t parent,
                          const uint8_t *manifest, const uint8_t *digest, uint64_t size,
                          const char *message, fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(
        r,
        "INSERT INTO versions(image_id, number, parent, manifest, digest, size, "
        "created, message, user, host) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        &st, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, image_id);
    sqlite3_bind_int64(st, 2, number);
    sqlite3_bind_int64(st, 3, parent);
    sqlite3_bind_blob(st, 4, manifest, FSP_SHA256_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, digest, FSP_SHA256_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (int64_t)size);
    sqlite3_bind_int64(st, 7, (int64_t)time(NULL));
    sqlite3_bind_text(st, 8, message, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, r->user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, r->host, -1, SQLITE_STATIC);
    return run_once(r, st, "adding a version", err);
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

int vms_local_add_version(vms_local *r, const char *image, uint32_t parent,
                         const uint8_t manifest[FSP_SHA256_LEN],
                         const uint8_t digest[FSP_SHA256_LEN], uint64_t size, const char *message,
                         uint32_t *number, fsp_error *err)
{
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
    if (!rc)
        rc = vms_repo_begin(r, err);
    if (rc)
        return rc;
    int64_t image_id;
    rc = claim_next_number(r, image, parent, &image_id, err);
    if (!rc)
        rc = insert_version(r, image_id, parent + 1, parent, manifest, digest, size, message, err);
    rc = finish(r, rc, err);
    if (!rc)
        *number = parent + 1;
    return rc;
}

int vms_local_list(vms_local *r, const char *image, vms_version_cb cb, void *ctx, fsp_error *err)
{
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
        column_text(l->user, sizeof l->user, st, 1);
        column_text(l->host, sizeof l->host, st, 2);
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
    return vms_local_audit(r, "steal", held->image, version, detail, err);
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
    return run_once(r, st, "taking a lease", err);
}

/* The image's row id, or FSP_EK_NOTFOUND. */
static int existing_image(vms_local *r, const char *image, int64_t *id, fsp_error *err)
{
    uint32_t latest;
    bool exists;
    int rc = image_state(r, image, id, &latest, &exists, err);
    return rc || exists ? rc : no_such_image(r, image, err);
}

/* Opens the transaction of a lease change and reads the lease.  *OPEN tells
 * whether a transaction was opened, which the caller must then finish(). */
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

int vms_local_lease_take(vms_local *r, const char *image, uint32_t version, bool steal,
                        fsp_error *err)
{
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
            rc = fsp_fail(err, FSP_EK_CONFLICT, -EBUSY,
                          "%s is checked out by %s", image, holder);
    }
    if (!rc)
        rc = store_lease(r, id, version, err);
    return finish(r, rc, err);
}

int vms_local_lease_get(vms_local *r, const char *image, struct vms_lease *out, bool *found,
                       fsp_error *err)
{
    *found = false;
    int rc = check_image_name(r, image, err);
    return rc ? rc : query_lease(r, image, out, found, err);
}

/* Only the holder's lease goes (same user, same host); nobody's lease is not
 * an error. */
int vms_local_lease_release(vms_local *r, const char *image, fsp_error *err)
{
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
        rc = fsp_fail(err, FSP_EK_CONFLICT, -EPERM, "%s is checked out by %s, not by %s@%s",
                      image, holder, r->user, r->host);
    } else if (!rc && found)
        rc = vms_repo_exec_id(r, "DELETE FROM leases WHERE image_id = ?1", id, err);
    return finish(r, rc, err);
}

/* ---- audit log -------------------------------------------------------------------- */

int vms_local_audit(vms_local *r, const char *action, const char *image, uint32_t version,
                   const char *detail, fsp_error *err)
{
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
    return run_once(r, st, "writing the audit log", err);
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
    int out = mkostemp_readable(*tmp);
    if (out < 0) {
        int rc = fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot create: %s", *tmp, strerror(errno));
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
int vms_local_put_manifest(vms_local *r, const char *path, uint8_t id[FSP_SHA256_LEN], fsp_error *err)
{
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

int vms_local_get_manifest(vms_local *r, const uint8_t id[FSP_SHA256_LEN], const char *dest,
                          fsp_error *err)
{
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
    else if ((out = mkostemp_readable(tmp)) < 0)
        rc = fsp_fail(err, FSP_EK_OPEN, -errno, "%s: cannot create: %s", tmp, strerror(errno));
    uint8_t actual[FSP_SHA256_LEN];
    if (!rc)
        rc = copy_hashing(in, src, out, tmp, actual, err);
    if (!rc && memcmp(actual, id, FSP_SHA256_LEN) != 0)
        rc = fsp_fail(err, FSP_EK_CORRUPT, -EUCLEAN,
                      "%s: manifest %s is corrupt (checksum mismatch)", r->path, hex);
    bool created = out >= 0;
    if (!rc) {
        rc = commit_file(out, tmp, dest, err);
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
