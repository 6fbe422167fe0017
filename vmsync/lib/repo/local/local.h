/* Internals of the local-directory repository, shared by catalog.c (the handle,
 * SQLite, versions, leases, audit, manifests), store.c (packs, the object
 * index, gc) and check.c (the repository check).  Private to those files.
 *
 * Locking: every handle holds a shared flock on REPO/lock for its whole
 * lifetime, and gc converts its own handle's lock to exclusive.  So gc runs only
 * when no other handle is open anywhere, and an object that a check-in found
 * with vms_repo_has cannot vanish before that check-in's add_version.  gc
 * waits for the other handles at most gc_wait seconds, then fails naming the
 * processes that hold them.  A
 * handle is not thread-safe; use one per thread. */
#ifndef VMS_REPO_LOCAL_H
#define VMS_REPO_LOCAL_H

#include "base/fileio.h"
#include "base/keyset.h"
#include "repo/repo.h"

#include <sqlite3.h>
#include <sys/types.h>
#include <zstd.h>

#define VMS_PACK_TARGET (64u << 20) /* the open pack is committed at about this size */
#define VMS_PACK_MAGIC "VMSPACK1"
#define VMS_PACK_HEADER_LEN 8
#define VMS_RECORD_HEADER_LEN (FSP_SHA256_LEN + 4 + 4 + 1) /* hash, len, stored_len, codec */
#define VMS_PACK_FD_CACHE 16

/* Where an object of the open pack sits in its temporary file. */
struct vms_pending {
    uint64_t offset; /* of the record header */
    uint32_t len, stored_len;
};

struct vms_open_pack {
    int fd;         /* -1 when there is no open pack */
    char *tmp_path; /* REPO/tmp/pack-XXXXXX */
    uint64_t size;  /* bytes written so far; records go at this offset */
    struct vms_keyset keys;
    struct vms_pending *objs; /* parallel to keys */
    size_t objs_cap;
};

struct vms_pack_fd {
    int64_t id; /* 0 = unused slot */
    int fd;
};

typedef struct vms_local vms_local;

struct vms_local {
    struct vms_repo base; /* first: a vms_repo * is a vms_local * */
    char *path;
    struct vms_traffic traffic;
    char user[128], host[256];
    sqlite3 *db;
    int lock_fd;
    dev_t lock_dev; /* identify the repository among this process's handles */
    ino_t lock_ino;
    struct vms_local *next_open; /* this process's open handles (see catalog.c) */
    unsigned gc_wait;            /* seconds; 0: VMS_GC_WAIT_DEFAULT */
    struct vms_repo_progress progress; /* gc's and check's */

    sqlite3_stmt *find_object;   /* hash -> pack id, pack name, offset, stored_len, len */
    sqlite3_stmt *object_exists; /* hash -> 1 */
    struct vms_open_pack pack;
    struct vms_pack_fd pack_fds[VMS_PACK_FD_CACHE];
    unsigned next_pack_fd;
    ZSTD_CCtx *zc;
    ZSTD_DCtx *zd;
    uint8_t *rec; /* one record: header and stored bytes */
    size_t rec_cap;
    uint8_t *plain; /* one decompressed object */
    size_t plain_cap;
};

/* ---- the backend: its operations (repo.h), filled into the table in handle.c ---- */
int vms_local_init(const char *path, fsp_error *err);
int vms_local_open(const char *path, const char *user, const char *host,
                   const struct vms_repo_progress *progress, vms_repo **out, fsp_error *err);
/* handle.c */
vms_repo_close_fn vms_local_close;
vms_repo_path_fn vms_local_path;
vms_repo_traffic_fn vms_local_traffic;
/* store.c */
vms_repo_has_fn vms_local_has;
vms_repo_put_fn vms_local_put;
vms_repo_flush_fn vms_local_flush;
vms_repo_get_fn vms_local_get;
vms_repo_get_stored_fn vms_local_get_stored;
/* catalog.c */
vms_repo_put_manifest_fn vms_local_put_manifest;
vms_repo_get_manifest_fn vms_local_get_manifest;
vms_repo_version_fn vms_local_version;
vms_repo_add_version_fn vms_local_add_version;
vms_repo_list_fn vms_local_list;
vms_repo_lease_take_fn vms_local_lease_take;
vms_repo_lease_get_fn vms_local_lease_get;
vms_repo_lease_release_fn vms_local_lease_release;
vms_repo_forget_fn vms_local_forget;
vms_repo_gc_estimate_fn vms_local_gc_estimate;
vms_repo_stats_fn vms_local_stats;
vms_repo_audit_fn vms_local_audit;
vms_repo_images_fn vms_local_images;
vms_repo_leases_fn vms_local_leases;
vms_repo_audit_log_fn vms_local_audit_log;
vms_repo_cache_dir_fn vms_local_cache_dir;
/* keys.c */
vms_repo_key_generate_fn vms_local_key_generate;
vms_repo_key_public_fn vms_local_key_public;
/* gc.c */
vms_repo_gc_fn vms_local_gc;
vms_repo_gc_wait_fn vms_local_gc_wait;
/* check.c */
vms_repo_check_fn vms_local_check;

/* ---- db.c: SQLite helpers ---- */
/* Fails with the SQLite error RC of DB (NULL: of a connection that did not
 * open), naming WHERE (the repository) and WHAT it was doing. */
int vms_db_fail(sqlite3 *db, const char *where, int rc, const char *what, fsp_error *err);
/* Fails with the SQLite error RC of the last call on R's connection. */
int vms_repo_db_fail(vms_local *r, int rc, const char *what, fsp_error *err);
int vms_repo_exec(vms_local *r, const char *sql, fsp_error *err);
int vms_repo_prepare(vms_local *r, const char *sql, sqlite3_stmt **st, fsp_error *err);
/* Runs SQL, a statement with one integer parameter ?1 and no result rows. */
int vms_repo_exec_id(vms_local *r, const char *sql, int64_t id, fsp_error *err);
/* Runs SQL, a query of one row, and gives its first column as a count. */
int vms_repo_count(vms_local *r, const char *sql, uint64_t *out, fsp_error *err);
/* BEGIN IMMEDIATE: the write lock up front, so read-then-write never deadlocks. */
int vms_repo_begin(vms_local *r, fsp_error *err);
int vms_repo_commit(vms_local *r, fsp_error *err);
void vms_repo_rollback(vms_local *r);
/* Steps ST, a statement with no result rows, once, and finalizes it. */
int vms_repo_run_once(vms_local *r, sqlite3_stmt *st, const char *what, fsp_error *err);
/* Commits when RC is 0, else rolls back; returns RC or the commit's failure. */
int vms_repo_finish(vms_local *r, int rc, fsp_error *err);
/* Copies text column COL of ST's row into DST ("" when NULL), truncated to CAP. */
void vms_repo_column_text(char *dst, size_t cap, sqlite3_stmt *st, int col);

/* ---- handle.c ---- */
/* True when another handle of this process has the same repository open. */
bool vms_repo_shared_in_process(const vms_local *r);

/* ---- catalog.c ---- */
/* REPO/manifests/<hex>.vmsm, malloc'd (NULL when out of memory). */
char *vms_repo_manifest_path(const vms_local *r, const uint8_t id[FSP_SHA256_LEN]);

/* ---- keys.c ---- */
struct vms_signer;
/* The repository's signing key (sign/sign.h), or *OUT NULL when it has none. */
int vms_local_signer(vms_local *r, struct vms_signer **out, fsp_error *err);

/* ---- store.c ---- */
int vms_store_open(vms_local *r, fsp_error *err);
/* Drops the open pack (its temporary file too) and frees the store's state. */
void vms_store_close(vms_local *r);

/* ---- store.c: the pack machinery gc.c rewrites packs with ---- */
#define VMS_PACK_NAME_LEN 42 /* "pack-" 32 hex ".pack" */

/* Where a record sits: a pack's descriptor, or the open pack's. */
struct vms_location {
    int fd;
    char pack[64]; /* for messages */
    uint64_t offset;
    uint32_t len, stored_len;
};

/* Starts the handle's open pack (a temporary file in REPO/tmp). */
int vms_pack_start(vms_local *r, fsp_error *err);
/* Drops the open pack and removes its temporary file if still there. */
void vms_pack_discard(vms_local *r);
/* Appends one record (header and stored bytes) to the open pack. */
int vms_pack_append(vms_local *r, const uint8_t *rec, size_t rec_len, fsp_error *err);
/* Makes the open pack durable under packs/NAME.  The caller discards the open
 * pack afterwards either way. */
int vms_pack_publish(vms_local *r, char name[VMS_PACK_NAME_LEN + 1], fsp_error *err);
/* One transaction: the pack row, then its objects (new ones, or moved from
 * pack REPLACES when gc rewrites it; 0: none). */
int vms_pack_index(vms_local *r, const char *name, int64_t replaces, fsp_error *err);
/* Pack ID's descriptor, from a small cache the handle owns (closed by
 * vms_pack_fds_close).  HASH, when known, is the object wanted, for the message. */
int vms_pack_fd(vms_local *r, int64_t id, const char *name, const uint8_t *hash, int *fd,
                fsp_error *err);
void vms_pack_fds_close(vms_local *r);
/* Reads the whole record at LOC into r->rec and checks that its header is
 * the one the index promised. */
int vms_pack_read_record(vms_local *r, const uint8_t *hash, const struct vms_location *loc,
                         fsp_error *err);

/* ---- small helpers (store.c) ---- */
char *vms_local_join(const vms_local *r, const char *rel); /* malloc'd "PATH/REL" */
/* "pack-" 32 lowercase hex digits ".pack": the only names a pack row may hold. */
bool vms_is_pack_name(const char *name);
/* -EIO on a short read (the file ended). */

#endif
