/* Internals of the local-directory repository, shared by catalog.c (the handle,
 * SQLite, versions, leases, audit, manifests) and store.c (packs, the object
 * index, gc).  Private to those two files.
 *
 * Locking: every handle holds a shared flock on REPO/lock for its whole
 * lifetime, and gc converts its own handle's lock to exclusive.  So gc runs only
 * when no other handle is open anywhere, and an object that a check-in found
 * with vms_repo_has cannot vanish before that check-in's add_version.  A
 * handle is not thread-safe; use one per thread. */
#ifndef VMS_REPO_LOCAL_H
#define VMS_REPO_LOCAL_H

#include "fileio.h"
#include "repo.h"

#include <sqlite3.h>
#include <sys/types.h>
#include <zstd.h>

#define VMS_OBJECT_MAX (64u << 20)  /* bigger objects are refused, bigger records corrupt */
#define VMS_PACK_TARGET (64u << 20) /* the open pack is committed at about this size */
#define VMS_PACK_MAGIC "VMSPACK1"
#define VMS_PACK_HEADER_LEN 8
#define VMS_RECORD_HEADER_LEN (FSP_SHA256_LEN + 4 + 4 + 1) /* hash, len, stored_len, codec */
#define VMS_CODEC_RAW 0
#define VMS_CODEC_ZSTD 1
#define VMS_PACK_FD_CACHE 16

/* A set of SHA-256 keys, each with a dense index (its insertion order). */
struct vms_keyset {
    uint8_t (*keys)[FSP_SHA256_LEN];
    size_t n, cap;
    uint32_t *slots; /* 0 = empty, else index + 1 */
    size_t mask;     /* slot count - 1 */
    uint64_t seed;
};

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

struct vms_repo {
    char *path;
    char user[128], host[256];
    sqlite3 *db;
    int lock_fd;
    dev_t lock_dev; /* identify the repository among this process's handles */
    ino_t lock_ino;
    struct vms_repo *next_open; /* this process's open handles (see catalog.c) */

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

/* ---- catalog.c ---- */
/* Fails with the SQLite error RC of the last call on R's connection. */
int vms_repo_db_fail(vms_repo *r, int rc, const char *what, fsp_error *err);
int vms_repo_exec(vms_repo *r, const char *sql, fsp_error *err);
int vms_repo_prepare(vms_repo *r, const char *sql, sqlite3_stmt **st, fsp_error *err);
/* Runs SQL, a statement with one integer parameter ?1 and no result rows. */
int vms_repo_exec_id(vms_repo *r, const char *sql, int64_t id, fsp_error *err);
/* BEGIN IMMEDIATE: the write lock up front, so read-then-write never deadlocks. */
int vms_repo_begin(vms_repo *r, fsp_error *err);
int vms_repo_commit(vms_repo *r, fsp_error *err);
void vms_repo_rollback(vms_repo *r);
/* True when another handle of this process has the same repository open. */
bool vms_repo_shared_in_process(const vms_repo *r);
/* REPO/manifests/<hex>.vmsm, malloc'd (NULL when out of memory). */
char *vms_repo_manifest_path(const vms_repo *r, const uint8_t id[FSP_SHA256_LEN]);

/* ---- store.c ---- */
int vms_store_open(vms_repo *r, fsp_error *err);
/* Drops the open pack (its temporary file too) and frees the store's state. */
void vms_store_close(vms_repo *r);

/* ---- small helpers (store.c) ---- */
char *vms_local_join(const vms_repo *r, const char *rel); /* malloc'd "PATH/REL" */
/* -EIO on a short read (the file ended). */

void vms_keyset_free(struct vms_keyset *ks);
/* Adds KEY if absent; *INDEX gets its index either way. */
int vms_keyset_add(struct vms_keyset *ks, const uint8_t key[FSP_SHA256_LEN], size_t *index,
                   bool *added);
bool vms_keyset_find(const struct vms_keyset *ks, const uint8_t key[FSP_SHA256_LEN], size_t *index);

#endif
