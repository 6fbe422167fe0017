/* The handle of a local repository: creating the directory and its catalog,
 * opening both, the shared lock, and the list of this process's handles.
 *
 * Every transaction that reads and then writes starts with BEGIN IMMEDIATE,
 * so two processes racing for the same image serialise on SQLite's write
 * lock (waiting up to BUSY_TIMEOUT_MS) instead of failing with SQLITE_BUSY
 * when one of them tries to upgrade a read transaction.  synchronous=FULL:
 * commits are few (a pack, a version, a lease), and a lease or version that a
 * client was told about must survive a power cut. */
#include "repo/local/local.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MARKER_NAME "vmsync-repo"
#define MARKER_TEXT "vmsync-repo 1\n"
#define FORMAT_VERSION 1
/* Schema 2 gave versions their signature and signer (NULL: unsigned); a
 * catalog of schema 1 is brought to 2 when it is opened (migrate_schema). */
#define SCHEMA_VERSION "2"
#define BUSY_TIMEOUT_MS 30000

static const char SCHEMA[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE images(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " created INTEGER NOT NULL);"
    "CREATE TABLE versions(id INTEGER PRIMARY KEY,"
    " image_id INTEGER NOT NULL REFERENCES images(id), number INTEGER NOT NULL,"
    " parent INTEGER NOT NULL, manifest BLOB NOT NULL, digest BLOB NOT NULL, size INTEGER NOT NULL,"
    " created INTEGER NOT NULL, message TEXT NOT NULL, user TEXT NOT NULL, host TEXT NOT NULL,"
    " signature BLOB, signer BLOB, UNIQUE(image_id, number));"
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

static int nomem(fsp_error *err) { return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

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
    char *marker = vms_path_join(path, MARKER_NAME);
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
        char *p = vms_path_join(path, dirs[i]);
        if (!p)
            return nomem(err);
        int rc = mkdir(p, 0777) < 0 ? -errno : 0;
        if (rc)
            fsp_fail(err, FSP_EK_IO, rc, "%s: cannot create: %s", p, strerror(-rc));
        free(p);
        if (rc)
            return rc;
    }
    char *lock = vms_path_join(path, "lock");
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
    char *file = vms_path_join(path, "catalog.db");
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
    int rc = s == SQLITE_OK ? 0 : vms_db_fail(db, path, s, step, err);
    sqlite3_close(db);
    free(file);
    return rc;
}

/* Written last, through a temporary name: a directory is a repository only
 * once everything else is in place. */
static int write_marker(const char *path, fsp_error *err)
{
    char *tmp = vms_path_join(path, "tmp/marker-XXXXXX"), *marker = vms_path_join(path, MARKER_NAME);
    int rc = 0;
    int fd = tmp && marker ? vms_mkostemp_readable(tmp) : -1;
    if (!tmp || !marker)
        rc = nomem(err);
    else if (fd < 0)
        rc = fsp_fail(err, FSP_EK_IO, fd, "%s: cannot create: %s", tmp, strerror(-fd));
    else if ((rc = vms_write_all(fd, MARKER_TEXT, strlen(MARKER_TEXT))) < 0) {
        close(fd);
        fsp_fail(err, FSP_EK_IO, rc, "%s: cannot write: %s", tmp, strerror(-rc));
    } else
        rc = vms_commit_file(fd, tmp, marker, err);
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
    char *marker = vms_path_join(path, MARKER_NAME);
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

static int read_schema(vms_local *r, char version[32], fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(r, "SELECT value FROM meta WHERE key = 'schema'", &st, err);
    if (rc)
        return rc;
    int s = sqlite3_step(st);
    version[0] = 0;
    if (s == SQLITE_ROW)
        vms_repo_column_text(version, 32, st, 0);
    sqlite3_finalize(st);
    return s == SQLITE_ROW || s == SQLITE_DONE
               ? 0
               : vms_repo_db_fail(r, s, "reading the schema version", err);
}

/* Schema 1 to 2: the columns of signed versions.  Under the write lock, and
 * read again there, so two handles opening an old catalog migrate it once. */
static int migrate_schema(vms_local *r, char version[32], fsp_error *err)
{
    int rc = vms_repo_begin(r, err);
    if (!rc)
        rc = read_schema(r, version, err);
    if (!rc && !strcmp(version, "1"))
        rc = vms_repo_exec(r,
                           "ALTER TABLE versions ADD COLUMN signature BLOB;"
                           "ALTER TABLE versions ADD COLUMN signer BLOB;"
                           "UPDATE meta SET value = '2' WHERE key = 'schema'",
                           err);
    rc = vms_repo_finish(r, rc, err);
    return rc ? rc : read_schema(r, version, err);
}

static int check_schema(vms_local *r, fsp_error *err)
{
    char version[32];
    int rc = read_schema(r, version, err);
    if (!rc && !strcmp(version, "1"))
        rc = migrate_schema(r, version, err);
    if (rc)
        return rc;
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

static const struct vms_repo_ops local_ops = {
    .kind = "local",
    .close = vms_local_close,
    .path = vms_local_path,
    .traffic = vms_local_traffic,
    .has = vms_local_has,
    .put = vms_local_put,
    .flush = vms_local_flush,
    .get = vms_local_get,
    .get_stored = vms_local_get_stored,
    .put_manifest = vms_local_put_manifest,
    .get_manifest = vms_local_get_manifest,
    .version = vms_local_version,
    .add_version = vms_local_add_version,
    .list = vms_local_list,
    .lease_take = vms_local_lease_take,
    .lease_get = vms_local_lease_get,
    .lease_release = vms_local_lease_release,
    .forget = vms_local_forget,
    .gc_estimate = vms_local_gc_estimate,
    .stats = vms_local_stats,
    .audit = vms_local_audit,
    .images = vms_local_images,
    .leases = vms_local_leases,
    .audit_log = vms_local_audit_log,
    .gc = vms_local_gc,
    .gc_wait = vms_local_gc_wait,
    .check = vms_local_check,
    .cache_dir = vms_local_cache_dir,
    .key_generate = vms_local_key_generate,
    .key_public = vms_local_key_public,
};

int vms_local_open(const char *path, const char *user, const char *host,
                   const struct vms_repo_progress *progress, vms_repo **out, fsp_error *err)
{
    *out = NULL;
    vms_local *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return nomem(err);
    }
    r->base.ops = &local_ops;
    r->lock_fd = -1;
    r->pack.fd = -1;
    r->progress = *progress;
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
        vms_local_close(&r->base);
        return rc;
    }
    register_handle(r);
    *out = &r->base;
    return 0;
}

void vms_local_close(vms_repo *repo)
{
    vms_local *r = (vms_local *)repo;
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

const char *vms_local_path(const vms_repo *repo) { return ((const vms_local *)repo)->path; }

void vms_local_traffic(const vms_repo *repo, struct vms_traffic *out)
{
    *out = ((const vms_local *)repo)->traffic;
}
