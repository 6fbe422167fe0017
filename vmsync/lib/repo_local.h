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

#include "fileio.h"
#include "keyset.h"
#include "repo.h"

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
    char *path;
    struct vms_traffic traffic;
    char user[128], host[256];
    sqlite3 *db;
    int lock_fd;
    dev_t lock_dev; /* identify the repository among this process's handles */
    ino_t lock_ino;
    struct vms_local *next_open; /* this process's open handles (see catalog.c) */
    unsigned gc_wait;            /* seconds; 0: VMS_GC_WAIT_DEFAULT */
    const vms_cancel *cancel;    /* ends gc's wait; may be NULL */

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

/* ---- the backend: each vms_repo_X of repo.h, for a local directory ---- */
int vms_local_init(const char *path, fsp_error *err);
int vms_local_open(const char *path, const char *user, const char *host, vms_local **out,
                   fsp_error *err);
void vms_local_close(vms_local *r);
const char *vms_local_path(const vms_local *r);
int vms_local_has(vms_local *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, uint8_t *present,
                  struct vms_object_size *sizes, fsp_error *err);
int vms_local_put(vms_local *r, const uint8_t hash[FSP_SHA256_LEN], const void *data, size_t len,
                  fsp_error *err);
int vms_local_flush(vms_local *r, fsp_error *err);
int vms_local_get(vms_local *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, vms_object_cb cb,
                  void *ctx, fsp_error *err);
int vms_local_get_stored(vms_local *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                         vms_stored_cb cb, void *ctx, fsp_error *err);
int vms_local_put_manifest(vms_local *r, const char *path, uint8_t id[FSP_SHA256_LEN], fsp_error *err);
int vms_local_get_manifest(vms_local *r, const uint8_t id[FSP_SHA256_LEN], const char *dest,
                           fsp_error *err);
int vms_local_version(vms_local *r, const char *image, uint32_t version, struct vms_version *out,
                      fsp_error *err);
int vms_local_add_version(vms_local *r, const char *image, uint32_t parent,
                          const uint8_t manifest[FSP_SHA256_LEN], const uint8_t digest[FSP_SHA256_LEN],
                          uint64_t size, const char *message, uint32_t *number, fsp_error *err);
int vms_local_list(vms_local *r, const char *image, vms_version_cb cb, void *ctx, fsp_error *err);
int vms_local_lease_take(vms_local *r, const char *image, uint32_t version, bool steal, fsp_error *err);
int vms_local_lease_get(vms_local *r, const char *image, struct vms_lease *out, bool *found,
                        fsp_error *err);
int vms_local_lease_release(vms_local *r, const char *image, fsp_error *err);
int vms_local_audit(vms_local *r, const char *action, const char *image, uint32_t version,
                    const char *detail, fsp_error *err);
int vms_local_gc(vms_local *r, struct vms_gc_stats *stats, fsp_error *err);
int vms_local_check(vms_local *r, const struct vms_check_opts *o, const struct vms_check_hooks *h,
                    struct vms_check_stats *stats, fsp_error *err);
void vms_local_gc_wait(vms_local *r, unsigned seconds);
void vms_local_on_cancel(vms_local *r, const vms_cancel *cancel);
int vms_local_cache_dir(vms_local *r, const char *sub, char *path, size_t len, fsp_error *err);

/* ---- catalog.c ---- */
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
/* True when another handle of this process has the same repository open. */
bool vms_repo_shared_in_process(const vms_local *r);
/* REPO/manifests/<hex>.vmsm, malloc'd (NULL when out of memory). */
char *vms_repo_manifest_path(const vms_local *r, const uint8_t id[FSP_SHA256_LEN]);

/* ---- store.c ---- */
int vms_store_open(vms_local *r, fsp_error *err);
/* Drops the open pack (its temporary file too) and frees the store's state. */
void vms_store_close(vms_local *r);

/* ---- small helpers (store.c) ---- */
char *vms_local_join(const vms_local *r, const char *rel); /* malloc'd "PATH/REL" */
/* "pack-" 32 lowercase hex digits ".pack": the only names a pack row may hold. */
bool vms_is_pack_name(const char *name);
/* -EIO on a short read (the file ended). */

#endif
