/* The object store of a local repository: pack files, the object index (a
 * catalog table), and garbage collection.
 *
 * A pack is "VMSPACK1" and then records, each
 *   32-byte SHA-256, u32 len, u32 stored_len (little-endian), u8 codec, stored bytes
 * with codec 0 = stored as is, 1 = one zstd frame.  Each handle appends to its
 * own open pack in REPO/tmp/, so concurrent writers never share a file.  A
 * flush makes the pack durable and renames it into packs/ before one catalog
 * transaction indexes its objects: a crash leaves at worst an unindexed pack,
 * which gc removes.  The record header repeats the index entry so a read can
 * tell a stale or damaged index from damaged bytes. */
#include "repo_local.h"

#include "cancel.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define PACK_NAME_LEN 42 /* "pack-" 32 hex ".pack" */
#define HEX_LEN (2 * FSP_SHA256_LEN + 1)

/* ---- small helpers ------------------------------------------------------ */

char *vms_local_join(const vms_local *r, const char *rel)
{
    char *p;
    return asprintf(&p, "%s/%s", r->path, rel) < 0 ? NULL : p;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Grows a scratch buffer whose old contents need not survive. */
static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap && *buf)
        return 0;
    size_t n = need < 65536 ? 65536 : need;
    uint8_t *p = malloc(n);
    if (!p)
        return -ENOMEM;
    free(*buf);
    *buf = p;
    *cap = n;
    return 0;
}

static int flock_retry(int fd, int op)
{
    while (flock(fd, op) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

/* ---- key sets ------------------------------------------------------------
 * Open addressing over SHA-256 keys.  The keys of a live set come from
 * manifests, which may be crafted, so buckets mix all 32 bytes with a random
 * seed rather than trusting the first bytes to be uniform. */

static uint64_t keyset_bucket(const struct vms_keyset *ks, const uint8_t *key)
{
    uint64_t h = ks->seed;
    for (int i = 0; i < 4; i++) {
        uint64_t w;
        memcpy(&w, key + 8 * i, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
    }
    return h;
}

/* The slot holding KEY, or the empty slot where it would go. */
static size_t keyset_probe(const struct vms_keyset *ks, const uint8_t *key)
{
    size_t s = keyset_bucket(ks, key) & ks->mask;
    while (ks->slots[s] && memcmp(ks->keys[ks->slots[s] - 1], key, FSP_SHA256_LEN) != 0)
        s = (s + 1) & ks->mask;
    return s;
}

static int keyset_grow_slots(struct vms_keyset *ks)
{
    size_t n_slots = ks->slots ? (ks->mask + 1) * 2 : 1024;
    uint32_t *slots = calloc(n_slots, sizeof *slots);
    if (!slots)
        return -ENOMEM;
    if (!ks->slots && getrandom(&ks->seed, sizeof ks->seed, GRND_NONBLOCK) != sizeof ks->seed)
        ks->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)ks;
    free(ks->slots);
    ks->slots = slots;
    ks->mask = n_slots - 1;
    for (size_t i = 0; i < ks->n; i++)
        ks->slots[keyset_probe(ks, ks->keys[i])] = (uint32_t)(i + 1);
    return 0;
}

bool vms_keyset_find(const struct vms_keyset *ks, const uint8_t key[FSP_SHA256_LEN], size_t *index)
{
    if (!ks->slots)
        return false;
    uint32_t slot = ks->slots[keyset_probe(ks, key)];
    if (slot && index)
        *index = slot - 1;
    return slot != 0;
}

int vms_keyset_add(struct vms_keyset *ks, const uint8_t key[FSP_SHA256_LEN], size_t *index,
                   bool *added)
{
    if (added)
        *added = false;
    if (vms_keyset_find(ks, key, index))
        return 0;
    if (ks->n >= UINT32_MAX - 1)
        return -ENOMEM;
    if (!ks->slots || (ks->n + 1) * 2 > ks->mask + 1) {
        int rc = keyset_grow_slots(ks);
        if (rc)
            return rc;
    }
    if (ks->n == ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 256;
        void *keys = realloc(ks->keys, cap * sizeof *ks->keys);
        if (!keys)
            return -ENOMEM;
        ks->keys = keys;
        ks->cap = cap;
    }
    memcpy(ks->keys[ks->n], key, FSP_SHA256_LEN);
    ks->slots[keyset_probe(ks, key)] = (uint32_t)(ks->n + 1);
    if (index)
        *index = ks->n;
    ks->n++;
    if (added)
        *added = true;
    return 0;
}

void vms_keyset_free(struct vms_keyset *ks)
{
    free(ks->keys);
    free(ks->slots);
    memset(ks, 0, sizeof *ks);
}

/* ---- the pack file descriptor cache -------------------------------------- */

bool vms_is_pack_name(const char *name)
{
    if (strlen(name) != PACK_NAME_LEN || strncmp(name, "pack-", 5) != 0 ||
        strcmp(name + PACK_NAME_LEN - 5, ".pack") != 0)
        return false;
    for (int i = 5; i < PACK_NAME_LEN - 5; i++)
        if (!strchr("0123456789abcdef", name[i]))
            return false;
    return true;
}

static void pack_fds_close(vms_local *r)
{
    for (int i = 0; i < VMS_PACK_FD_CACHE; i++) {
        if (r->pack_fds[i].id)
            close(r->pack_fds[i].fd);
        r->pack_fds[i].id = 0;
    }
}

/* Pack ids are never reused (AUTOINCREMENT), so an id names one file for good.
 * HASH, when known, is the object wanted, for the message. */
static int pack_fd(vms_local *r, int64_t id, const char *name, const uint8_t *hash, int *fd,
                   fsp_error *err)
{
    for (int i = 0; i < VMS_PACK_FD_CACHE; i++)
        if (r->pack_fds[i].id == id) {
            *fd = r->pack_fds[i].fd;
            return 0;
        }
    char rel[PACK_NAME_LEN + 8];
    snprintf(rel, sizeof rel, "packs/%s", name);
    char *path = vms_local_join(r, rel);
    if (!path)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    int f = open(path, O_RDONLY | O_CLOEXEC);
    int e = errno;
    free(path);
    char hex[HEX_LEN] = "";
    if (hash)
        fsp_hex(hash, FSP_SHA256_LEN, hex);
    if (f < 0 && e == ENOENT)
        return fsp_fail(err, FSP_EK_CORRUPT, -ENOENT, "%s: %s%s%spack %s is missing", r->path,
                        hash ? "object " : "", hex, hash ? ": " : "", name);
    if (f < 0)
        return fsp_fail(err, FSP_EK_IO, -e, "%s: cannot open pack %s: %s", r->path, name,
                        strerror(e));
    struct vms_pack_fd *slot = &r->pack_fds[r->next_pack_fd++ % VMS_PACK_FD_CACHE];
    if (slot->id)
        close(slot->fd);
    *slot = (struct vms_pack_fd){.id = id, .fd = f};
    *fd = f;
    return 0;
}

/* ---- the open pack -------------------------------------------------------- */

static int open_pack_start(vms_local *r, fsp_error *err)
{
    if (r->pack.fd >= 0)
        return 0;
    char *path = vms_local_join(r, "tmp/pack-XXXXXX");
    if (!path)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        free(path);
        return fsp_fail(err, FSP_EK_IO, rc, "%s: cannot create a pack in tmp/: %s", r->path,
                        strerror(-rc));
    }
    /* mkostemp makes 0600; packs are read by every user of the repository */
    int rc = fchmod(fd, 0644) < 0 ? -errno
                                  : vms_write_all(fd, VMS_PACK_MAGIC, VMS_PACK_HEADER_LEN);
    if (rc) {
        close(fd);
        unlink(path);
        fsp_fail(err, FSP_EK_IO, rc, "%s: cannot write: %s", path, strerror(-rc));
        free(path);
        return rc;
    }
    r->pack.fd = fd;
    r->pack.tmp_path = path;
    r->pack.size = VMS_PACK_HEADER_LEN;
    return 0;
}

/* Forgets the open pack, removing its file unless it was published. */
static void open_pack_discard(vms_local *r)
{
    if (r->pack.fd >= 0)
        close(r->pack.fd);
    if (r->pack.tmp_path)
        unlink(r->pack.tmp_path);
    free(r->pack.tmp_path);
    vms_keyset_free(&r->pack.keys);
    free(r->pack.objs);
    memset(&r->pack, 0, sizeof r->pack);
    r->pack.fd = -1;
}

/* Appends one encoded record (header included) to the open pack.  Records go
 * at pack.size with pwrite, so a failed write is simply overwritten by the
 * next one and trimmed before publishing. */
static int append_record(vms_local *r, const uint8_t *rec, size_t rec_len, fsp_error *err)
{
    struct vms_open_pack *p = &r->pack;
    if (p->keys.n == p->objs_cap) {
        size_t cap = p->objs_cap ? p->objs_cap * 2 : 256;
        void *objs = realloc(p->objs, cap * sizeof *p->objs);
        if (!objs)
            return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
        p->objs = objs;
        p->objs_cap = cap;
    }
    int rc = vms_pwrite_all(p->fd, rec, rec_len, p->size);
    if (rc)
        return fsp_fail(err, FSP_EK_IO, rc, "%s: cannot write: %s", p->tmp_path, strerror(-rc));
    size_t index;
    if (vms_keyset_add(&p->keys, rec, &index, NULL))
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    p->objs[index] = (struct vms_pending){.offset = p->size,
                                          .len = get_le32(rec + FSP_SHA256_LEN),
                                          .stored_len = get_le32(rec + FSP_SHA256_LEN + 4)};
    p->size += rec_len;
    return 0;
}

static void encode_header(uint8_t *rec, const uint8_t *hash, uint32_t len, uint32_t stored,
                          uint8_t codec)
{
    memcpy(rec, hash, FSP_SHA256_LEN);
    put_le32(rec + FSP_SHA256_LEN, len);
    put_le32(rec + FSP_SHA256_LEN + 4, stored);
    rec[FSP_SHA256_LEN + 8] = codec;
}

/* Compresses DATA into r->rec as a record and appends it.  Objects zstd cannot
 * shrink are stored as they are. */
static int append_object(vms_local *r, const uint8_t *hash, const void *data, size_t len,
                         fsp_error *err)
{
    size_t bound = ZSTD_compressBound(len);
    if (reserve(&r->rec, &r->rec_cap, VMS_RECORD_HEADER_LEN + bound))
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    uint8_t *body = r->rec + VMS_RECORD_HEADER_LEN;
    uint8_t codec = VMS_CODEC_ZSTD;
    size_t stored = len ? ZSTD_compressCCtx(r->zc, body, bound, data, len, VMS_STORE_LEVEL) : 0;
    if (!len || ZSTD_isError(stored) || stored >= len) {
        if (len)
            memcpy(body, data, len);
        stored = len;
        codec = VMS_CODEC_RAW;
    }
    encode_header(r->rec, hash, (uint32_t)len, (uint32_t)stored, codec);
    r->traffic.objects_sent++;
    r->traffic.bytes_sent_raw += len;
    r->traffic.bytes_sent += stored;
    return append_record(r, r->rec, VMS_RECORD_HEADER_LEN + stored, err);
}

/* Makes the open pack durable under packs/NAME.  The caller discards the open
 * pack afterwards either way (removing the temporary file if still there). */
static int publish_pack(vms_local *r, char name[PACK_NAME_LEN + 1], fsp_error *err)
{
    uint8_t rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: no randomness for a pack name", r->path);
    char hex[2 * sizeof rnd + 1];
    fsp_hex(rnd, sizeof rnd, hex);
    snprintf(name, PACK_NAME_LEN + 1, "pack-%s.pack", hex);

    struct vms_open_pack *p = &r->pack;
    if (ftruncate(p->fd, (off_t)p->size) < 0 || fsync(p->fd) < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot write: %s", p->tmp_path,
                        strerror(errno));
    char rel[PACK_NAME_LEN + 8];
    snprintf(rel, sizeof rel, "packs/%s", name);
    char *dest = vms_local_join(r, rel);
    char *dir = vms_local_join(r, "packs");
    int rc = 0;
    if (!dest || !dir)
        rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    else if (rename(p->tmp_path, dest) < 0)
        rc = fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot rename to %s: %s", p->tmp_path, dest,
                      strerror(errno));
    else {
        free(p->tmp_path);
        p->tmp_path = NULL;
        rc = vms_fsync_dir(dir);
        if (rc)
            fsp_fail(err, FSP_EK_IO, rc, "%s: cannot sync: %s", dir, strerror(-rc));
    }
    free(dest);
    free(dir);
    return rc;
}

static int step_done(vms_local *r, sqlite3_stmt *st, const char *what, fsp_error *err)
{
    int s = sqlite3_step(st);
    sqlite3_reset(st);
    return s == SQLITE_DONE ? 0 : vms_repo_db_fail(r, s, what, err);
}

static int insert_pack_row(vms_local *r, const char *name, uint64_t bytes, int64_t *id,
                           fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(r, "INSERT INTO packs(name, bytes) VALUES(?1, ?2)", &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)bytes);
    rc = step_done(r, st, "adding a pack", err);
    sqlite3_finalize(st);
    *id = sqlite3_last_insert_rowid(r->db);
    return rc;
}

/* A concurrent writer may have indexed the same object first: its copy wins
 * and ours becomes garbage for gc. */
static int index_new_objects(vms_local *r, int64_t pack_id, fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(r,
                              "INSERT OR IGNORE INTO objects(hash, pack_id, pos, stored_len, len) "
                              "VALUES(?1, ?2, ?3, ?4, ?5)",
                              &st, err);
    for (size_t i = 0; !rc && i < r->pack.keys.n; i++) {
        const struct vms_pending *o = &r->pack.objs[i];
        sqlite3_bind_blob(st, 1, r->pack.keys.keys[i], FSP_SHA256_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, pack_id);
        sqlite3_bind_int64(st, 3, (int64_t)o->offset);
        sqlite3_bind_int64(st, 4, o->stored_len);
        sqlite3_bind_int64(st, 5, o->len);
        rc = step_done(r, st, "indexing objects", err);
    }
    sqlite3_finalize(st);
    return rc;
}

/* gc: points the live objects of pack OLD_ID at their copies, then forgets OLD_ID. */
static int relocate_objects(vms_local *r, int64_t pack_id, int64_t old_id, fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(r,
                              "UPDATE objects SET pack_id = ?1, pos = ?2 "
                              "WHERE hash = ?3 AND pack_id = ?4",
                              &st, err);
    for (size_t i = 0; !rc && i < r->pack.keys.n; i++) {
        sqlite3_bind_int64(st, 1, pack_id);
        sqlite3_bind_int64(st, 2, (int64_t)r->pack.objs[i].offset);
        sqlite3_bind_blob(st, 3, r->pack.keys.keys[i], FSP_SHA256_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, old_id);
        rc = step_done(r, st, "moving objects", err);
    }
    sqlite3_finalize(st);
    if (!rc)
        rc = vms_repo_exec_id(r, "DELETE FROM objects WHERE pack_id = ?1", old_id, err);
    if (!rc)
        rc = vms_repo_exec_id(r, "DELETE FROM packs WHERE id = ?1", old_id, err);
    return rc;
}

/* One transaction: the pack row, then its objects (new ones, or moved from
 * pack REPLACES when gc rewrites it). */
static int index_pack(vms_local *r, const char *name, int64_t replaces, fsp_error *err)
{
    int rc = vms_repo_begin(r, err);
    if (rc)
        return rc;
    int64_t id;
    rc = insert_pack_row(r, name, r->pack.size, &id, err);
    if (!rc)
        rc = replaces ? relocate_objects(r, id, replaces, err) : index_new_objects(r, id, err);
    if (!rc)
        return vms_repo_commit(r, err);
    vms_repo_rollback(r);
    return rc;
}

/* ---- put, has, flush -------------------------------------------------------- */

static int index_has(vms_local *r, const uint8_t *hash, bool *present, fsp_error *err)
{
    sqlite3_stmt *st = r->object_exists;
    sqlite3_bind_blob(st, 1, hash, FSP_SHA256_LEN, SQLITE_STATIC);
    int s = sqlite3_step(st);
    sqlite3_reset(st);
    *present = s == SQLITE_ROW;
    return s == SQLITE_ROW || s == SQLITE_DONE
               ? 0
               : vms_repo_db_fail(r, s, "looking up an object", err);
}

static struct vms_object_size object_size(vms_local *r, const uint8_t hash[FSP_SHA256_LEN])
{
    size_t index;
    if (vms_keyset_find(&r->pack.keys, hash, &index))
        return (struct vms_object_size){r->pack.objs[index].len, r->pack.objs[index].stored_len};
    sqlite3_stmt *st = r->find_object;
    sqlite3_bind_blob(st, 1, hash, FSP_SHA256_LEN, SQLITE_STATIC);
    struct vms_object_size size = {0, 0};
    if (sqlite3_step(st) == SQLITE_ROW) {
        int64_t stored = sqlite3_column_int64(st, 3), len = sqlite3_column_int64(st, 4);
        if (stored >= 0 && stored <= UINT32_MAX && len >= 0 && len <= VMS_OBJECT_MAX)
            size = (struct vms_object_size){(uint32_t)len, (uint32_t)stored};
    }
    sqlite3_reset(st);
    return size;
}

int vms_local_has(vms_local *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, uint8_t *present,
                  struct vms_object_size *sizes, fsp_error *err)
{
    /* One read transaction: one snapshot, and no per-lookup locking. */
    bool batch = n > 1 && sqlite3_get_autocommit(r->db);
    int rc = batch ? vms_repo_exec(r, "BEGIN", err) : 0;
    for (size_t i = 0; !rc && i < n; i++) {
        bool stored = vms_keyset_find(&r->pack.keys, hashes[i], NULL);
        if (!stored)
            rc = index_has(r, hashes[i], &stored, err);
        present[i] = stored;
        if (sizes)
            sizes[i] = stored ? object_size(r, hashes[i]) : (struct vms_object_size){0, 0};
    }
    if (batch)
        sqlite3_exec(r->db, rc ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL);
    return rc;
}

/* The store must never hold bytes under the wrong name: they could not be
 * read back, and the mistake would surface long after the caller's bug. */
static int check_object_hash(vms_local *r, const uint8_t *hash, const void *data, size_t len,
                             fsp_error *err)
{
    uint8_t actual[FSP_SHA256_LEN];
    char hex[HEX_LEN];
    if (vms_sha256(data, len, actual))
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    if (memcmp(actual, hash, FSP_SHA256_LEN) == 0)
        return 0;
    fsp_hex(hash, FSP_SHA256_LEN, hex);
    return fsp_fail(err, FSP_EK_INTERNAL, -EINVAL,
                    "%s: object %s: the data does not match its hash", r->path, hex);
}

int vms_local_put(vms_local *r, const uint8_t hash[FSP_SHA256_LEN], const void *data, size_t len,
                 fsp_error *err)
{
    if (len > VMS_OBJECT_MAX) {
        char hex[HEX_LEN];
        fsp_hex(hash, FSP_SHA256_LEN, hex);
        return fsp_fail(err, FSP_EK_USAGE, -EFBIG,
                        "%s: object %s is %zu bytes, over the %u MiB limit", r->path, hex, len,
                        VMS_OBJECT_MAX >> 20);
    }
    if (vms_keyset_find(&r->pack.keys, hash, NULL))
        return 0;
    bool stored;
    int rc = index_has(r, hash, &stored, err);
    if (rc || stored)
        return rc;
    rc = check_object_hash(r, hash, data, len, err);
    if (!rc)
        rc = open_pack_start(r, err);
    if (!rc)
        rc = append_object(r, hash, data, len, err);
    if (!rc && r->pack.size >= VMS_PACK_TARGET)
        rc = vms_local_flush(r, err);
    return rc;
}

/* On failure the open pack is dropped: its objects are neither pending nor
 * stored, and vms_repo_has says so. */
int vms_local_flush(vms_local *r, fsp_error *err)
{
    if (r->pack.fd < 0)
        return 0;
    char name[PACK_NAME_LEN + 1];
    int rc = publish_pack(r, name, err);
    if (!rc)
        rc = index_pack(r, name, 0, err);
    open_pack_discard(r);
    return rc;
}

/* ---- get -------------------------------------------------------------------- */

struct location {
    int fd;
    char pack[64]; /* for messages */
    uint64_t offset;
    uint32_t len, stored_len;
};

static int locate_pending(vms_local *r, size_t index, struct location *loc)
{
    const struct vms_pending *o = &r->pack.objs[index];
    const char *slash = strrchr(r->pack.tmp_path, '/');
    *loc = (struct location){
        .fd = r->pack.fd, .offset = o->offset, .len = o->len, .stored_len = o->stored_len};
    snprintf(loc->pack, sizeof loc->pack, "tmp/%s (open)", slash ? slash + 1 : r->pack.tmp_path);
    return 0;
}

/* Reads an index row for HASH; *FOUND false when there is none.  Rows are
 * checked before use: their numbers size buffers and their name makes a path. */
static int locate_indexed(vms_local *r, const uint8_t *hash, struct location *loc, bool *found,
                          fsp_error *err)
{
    sqlite3_stmt *st = r->find_object;
    sqlite3_bind_blob(st, 1, hash, FSP_SHA256_LEN, SQLITE_STATIC);
    int s = sqlite3_step(st);
    *found = s == SQLITE_ROW;
    if (s != SQLITE_ROW) {
        sqlite3_reset(st);
        return s == SQLITE_DONE ? 0 : vms_repo_db_fail(r, s, "looking up an object", err);
    }
    int64_t id = sqlite3_column_int64(st, 0);
    const char *name = (const char *)sqlite3_column_text(st, 1);
    int64_t offset = sqlite3_column_int64(st, 2), stored = sqlite3_column_int64(st, 3),
            len = sqlite3_column_int64(st, 4);
    bool sane = id > 0 && name && vms_is_pack_name(name) && offset >= VMS_PACK_HEADER_LEN &&
                len >= 0 && len <= VMS_OBJECT_MAX && stored >= 0 &&
                (uint64_t)stored <= ZSTD_compressBound(VMS_OBJECT_MAX);
    int rc = 0;
    if (sane) {
        *loc = (struct location){
            .offset = (uint64_t)offset, .len = (uint32_t)len, .stored_len = (uint32_t)stored};
        snprintf(loc->pack, sizeof loc->pack, "%s", name);
        rc = pack_fd(r, id, name, hash, &loc->fd, err);
    } else {
        char hex[HEX_LEN];
        fsp_hex(hash, FSP_SHA256_LEN, hex);
        rc = fsp_fail(err, FSP_EK_CORRUPT, -EUCLEAN, "%s: catalog: bad index entry for object %s",
                      r->path, hex);
    }
    sqlite3_reset(st);
    return rc;
}

static int locate(vms_local *r, const uint8_t *hash, struct location *loc, fsp_error *err)
{
    size_t index;
    if (vms_keyset_find(&r->pack.keys, hash, &index))
        return locate_pending(r, index, loc);
    bool found;
    int rc = locate_indexed(r, hash, loc, &found, err);
    if (rc || found)
        return rc;
    char hex[HEX_LEN];
    fsp_hex(hash, FSP_SHA256_LEN, hex);
    return fsp_fail(err, FSP_EK_CORRUPT, -ENOENT, "%s: object %s is not in the repository", r->path,
                    hex);
}

static int corrupt(vms_local *r, const uint8_t *hash, const struct location *loc, const char *why,
                   fsp_error *err)
{
    char hex[HEX_LEN];
    fsp_hex(hash, FSP_SHA256_LEN, hex);
    return fsp_fail(err, FSP_EK_CORRUPT, -EUCLEAN,
                    "%s: object %s in pack %s at offset %llu is corrupt (%s)", r->path, hex,
                    loc->pack, (unsigned long long)loc->offset, why);
}

/* Reads the whole record at LOC into r->rec and checks that its header is
 * the one the index promised. */
static int read_record(vms_local *r, const uint8_t *hash, const struct location *loc, fsp_error *err)
{
    size_t rec_len = VMS_RECORD_HEADER_LEN + (size_t)loc->stored_len;
    if (reserve(&r->rec, &r->rec_cap, rec_len))
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    int rc = vms_pread_all(loc->fd, r->rec, rec_len, loc->offset);
    if (rc == -ENODATA)
        return corrupt(r, hash, loc, "truncated", err);
    if (rc)
        return fsp_fail(err, FSP_EK_IO, rc, "%s: cannot read pack %s: %s", r->path, loc->pack,
                        strerror(-rc));
    const uint8_t *h = r->rec;
    uint8_t codec = h[FSP_SHA256_LEN + 8];
    if (memcmp(h, hash, FSP_SHA256_LEN) != 0 || get_le32(h + FSP_SHA256_LEN) != loc->len ||
        get_le32(h + FSP_SHA256_LEN + 4) != loc->stored_len || codec > VMS_CODEC_ZSTD ||
        (codec == VMS_CODEC_RAW && loc->len != loc->stored_len))
        return corrupt(r, hash, loc, "record header does not match the index", err);
    return 0;
}

/* Decodes the record in r->rec and verifies its SHA-256. */
static int decode_record(vms_local *r, const uint8_t *hash, const struct location *loc,
                         const uint8_t **data, fsp_error *err)
{
    const uint8_t *body = r->rec + VMS_RECORD_HEADER_LEN;
    *data = body;
    if (r->rec[FSP_SHA256_LEN + 8] == VMS_CODEC_ZSTD) {
        if (reserve(&r->plain, &r->plain_cap, loc->len))
            return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
        size_t n = ZSTD_decompressDCtx(r->zd, r->plain, loc->len, body, loc->stored_len);
        if (ZSTD_isError(n) || n != loc->len)
            return corrupt(r, hash, loc, "cannot decompress", err);
        *data = r->plain;
    }
    uint8_t actual[FSP_SHA256_LEN];
    if (vms_sha256(*data, loc->len, actual))
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    if (memcmp(actual, hash, FSP_SHA256_LEN) != 0)
        return corrupt(r, hash, loc, "checksum mismatch", err);
    return 0;
}

int vms_local_get(vms_local *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, vms_object_cb cb,
                 void *ctx, fsp_error *err)
{
    for (size_t i = 0; i < n; i++) {
        struct location loc;
        const uint8_t *data;
        int rc = locate(r, hashes[i], &loc, err);
        if (!rc)
            rc = read_record(r, hashes[i], &loc, err);
        if (!rc)
            rc = decode_record(r, hashes[i], &loc, &data, err);
        if (!rc) {
            r->traffic.objects_received++;
            r->traffic.bytes_received_raw += loc.len;
            r->traffic.bytes_received += loc.stored_len;
            rc = cb(ctx, i, data, loc.len, loc.stored_len);
        }
        if (rc)
            return rc;
    }
    return 0;
}

int vms_local_get_stored(vms_local *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                         vms_stored_cb cb, void *ctx, fsp_error *err)
{
    for (size_t i = 0; i < n; i++) {
        struct location loc;
        int rc = locate(r, hashes[i], &loc, err);
        if (!rc)
            rc = read_record(r, hashes[i], &loc, err);
        if (!rc)
            rc = cb(ctx, i, r->rec[FSP_SHA256_LEN + 8], r->rec + VMS_RECORD_HEADER_LEN,
                    loc.stored_len, loc.len);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- open and close ------------------------------------------------------------ */

int vms_store_open(vms_local *r, fsp_error *err)
{
    r->zc = ZSTD_createCCtx();
    r->zd = ZSTD_createDCtx();
    if (!r->zc || !r->zd)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    int rc = vms_repo_prepare(r,
                              "SELECT o.pack_id, p.name, o.pos, o.stored_len, o.len "
                              "FROM objects o JOIN packs p ON p.id = o.pack_id WHERE o.hash = ?1",
                              &r->find_object, err);
    if (!rc)
        rc = vms_repo_prepare(r, "SELECT 1 FROM objects WHERE hash = ?1", &r->object_exists, err);
    return rc;
}

void vms_store_close(vms_local *r)
{
    open_pack_discard(r);
    pack_fds_close(r);
    sqlite3_finalize(r->find_object);
    sqlite3_finalize(r->object_exists);
    r->find_object = r->object_exists = NULL;
    ZSTD_freeCCtx(r->zc);
    ZSTD_freeDCtx(r->zd);
    free(r->rec);
    free(r->plain);
}

/* ---- garbage collection -----------------------------------------------------------
 * gc holds the repository's lock exclusively, so no other handle is open: no
 * check-in can be between vms_repo_has and vms_repo_add_version, every file in
 * tmp/ is a leftover, and every unindexed pack or unused manifest is garbage. */

struct live_ctx {
    struct vms_keyset *live;
    fsp_error *err;
};

static int add_live(void *ctx, const uint8_t hash[FSP_SHA256_LEN], uint64_t len)
{
    struct live_ctx *c = ctx;
    return vms_keyset_add(c->live, hash, NULL, NULL)
               ? fsp_fail(c->err, FSP_EK_NOMEM, -ENOMEM, "out of memory collecting live objects")
               : 0;
}

static int load_manifest_ids(vms_local *r, struct vms_keyset *manifests, fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(r, "SELECT DISTINCT manifest FROM versions", &st, err);
    int s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) != FSP_SHA256_LEN)
            rc = fsp_fail(err, FSP_EK_CORRUPT, -EUCLEAN,
                          "%s: catalog: a version has a bad manifest id", r->path);
        else if (vms_keyset_add(manifests, sqlite3_column_blob(st, 0), NULL, NULL))
            rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    }
    if (!rc && s != SQLITE_DONE)
        rc = vms_repo_db_fail(r, s, "listing manifests", err);
    sqlite3_finalize(st);
    return rc;
}

/* Any manifest that cannot be read stops gc: an incomplete live set would
 * delete objects that versions need. */
static int collect_live(vms_local *r, struct vms_keyset *manifests, struct vms_keyset *live,
                        fsp_error *err)
{
    int rc = load_manifest_ids(r, manifests, err);
    for (size_t i = 0; !rc && i < manifests->n; i++) {
        char *path = vms_repo_manifest_path(r, manifests->keys[i]);
        struct live_ctx c = {live, err};
        rc = path ? vms_manifest_objects(path, add_live, &c, err)
                  : fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
        free(path);
    }
    return rc;
}

struct pack_row {
    int64_t id;
    char name[PACK_NAME_LEN + 1];
};

struct object_row {
    uint8_t hash[FSP_SHA256_LEN];
    uint64_t offset;
    uint32_t len, stored_len;
    bool live;
};

static int load_packs(vms_local *r, struct pack_row **out, size_t *n, fsp_error *err)
{
    sqlite3_stmt *st;
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    int rc = vms_repo_prepare(r, "SELECT id, name FROM packs ORDER BY id", &st, err);
    int s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 1);
        if (!name || !vms_is_pack_name(name)) {
            rc = fsp_fail(err, FSP_EK_CORRUPT, -EUCLEAN, "%s: catalog: bad pack name", r->path);
            break;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            void *p = realloc(*out, cap * sizeof **out);
            if (!p) {
                rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
                break;
            }
            *out = p;
        }
        (*out)[*n].id = sqlite3_column_int64(st, 0);
        snprintf((*out)[*n].name, sizeof(*out)[*n].name, "%s", name);
        (*n)++;
    }
    if (!rc && s != SQLITE_DONE)
        rc = vms_repo_db_fail(r, s, "listing packs", err);
    sqlite3_finalize(st);
    return rc;
}

static int load_pack_objects(vms_local *r, int64_t pack_id, const struct vms_keyset *live,
                             struct object_row **out, size_t *n, size_t *n_live, fsp_error *err)
{
    sqlite3_stmt *st;
    size_t cap = 0;
    *out = NULL;
    *n = *n_live = 0;
    int rc = vms_repo_prepare(r,
                              "SELECT hash, pos, stored_len, len FROM objects "
                              "WHERE pack_id = ?1 ORDER BY pos",
                              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, pack_id);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t pos = sqlite3_column_int64(st, 1), stored = sqlite3_column_int64(st, 2),
                len = sqlite3_column_int64(st, 3);
        if (sqlite3_column_bytes(st, 0) != FSP_SHA256_LEN || pos < VMS_PACK_HEADER_LEN || len < 0 ||
            len > VMS_OBJECT_MAX || stored < 0 ||
            (uint64_t)stored > ZSTD_compressBound(VMS_OBJECT_MAX)) {
            rc = fsp_fail(err, FSP_EK_CORRUPT, -EUCLEAN,
                          "%s: catalog: bad index entry in pack %lld", r->path, (long long)pack_id);
            break;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 1024;
            void *p = realloc(*out, cap * sizeof **out);
            if (!p) {
                rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
                break;
            }
            *out = p;
        }
        struct object_row *o = &(*out)[(*n)++];
        *o = (struct object_row){.offset = (uint64_t)pos,
                                 .len = (uint32_t)len,
                                 .stored_len = (uint32_t)stored,
                                 .live = vms_keyset_find(live, sqlite3_column_blob(st, 0), NULL)};
        memcpy(o->hash, sqlite3_column_blob(st, 0), FSP_SHA256_LEN);
        *n_live += o->live;
    }
    if (!rc && s != SQLITE_DONE)
        rc = vms_repo_db_fail(r, s, "listing objects", err);
    sqlite3_finalize(st);
    return rc;
}

static void unlink_pack(vms_local *r, const char *name)
{
    char rel[PACK_NAME_LEN + 8];
    snprintf(rel, sizeof rel, "packs/%s", name);
    char *path = vms_local_join(r, rel);
    if (path)
        unlink(path);
    free(path);
}

/* Every object of the pack is garbage: forget it, then delete the file. */
static int drop_pack(vms_local *r, const struct pack_row *p, struct vms_gc_stats *stats,
                     fsp_error *err)
{
    int rc = vms_repo_begin(r, err);
    if (!rc)
        rc = vms_repo_exec_id(r, "DELETE FROM objects WHERE pack_id = ?1", p->id, err);
    if (!rc)
        rc = vms_repo_exec_id(r, "DELETE FROM packs WHERE id = ?1", p->id, err);
    if (rc) {
        vms_repo_rollback(r);
        return rc;
    }
    rc = vms_repo_commit(r, err);
    if (rc)
        return rc;
    unlink_pack(r, p->name);
    stats->packs_removed++;
    return 0;
}

/* Copies one record, compressed as it is, into the open pack. */
static int copy_record(vms_local *r, int fd, const char *pack, const struct object_row *o,
                       fsp_error *err)
{
    struct location loc = {
        .fd = fd, .offset = o->offset, .len = o->len, .stored_len = o->stored_len};
    snprintf(loc.pack, sizeof loc.pack, "%s", pack);
    int rc = read_record(r, o->hash, &loc, err);
    return rc ? rc : append_record(r, r->rec, VMS_RECORD_HEADER_LEN + o->stored_len, err);
}

/* Some objects are garbage: copy the live ones to a new pack, index them
 * there and forget the old pack in one transaction, then delete its file.  A
 * crash in between leaves an unindexed pack for the next gc. */
static int rewrite_pack(vms_local *r, const struct pack_row *p, const struct object_row *objs,
                        size_t n, struct vms_gc_stats *stats, fsp_error *err)
{
    int fd;
    int rc = pack_fd(r, p->id, p->name, NULL, &fd, err);
    if (!rc)
        rc = open_pack_start(r, err);
    for (size_t i = 0; !rc && i < n; i++)
        if (objs[i].live)
            rc = copy_record(r, fd, p->name, &objs[i], err);
    char name[PACK_NAME_LEN + 1];
    if (!rc)
        rc = publish_pack(r, name, err);
    if (!rc)
        rc = index_pack(r, name, p->id, err);
    open_pack_discard(r);
    pack_fds_close(r);
    if (rc)
        return rc;
    unlink_pack(r, p->name);
    stats->packs_rewritten++;
    return 0;
}

static int sweep_pack(vms_local *r, const struct pack_row *p, const struct vms_keyset *live,
                      struct vms_gc_stats *stats, fsp_error *err)
{
    struct object_row *objs;
    size_t n, n_live;
    int rc = load_pack_objects(r, p->id, live, &objs, &n, &n_live, err);
    bool kept_whole = n > 0 && n_live == n;
    if (!rc && !kept_whole)
        rc = n_live == 0 ? drop_pack(r, p, stats, err) : rewrite_pack(r, p, objs, n, stats, err);
    free(objs);
    return rc;
}

static int sweep_packs(vms_local *r, const struct vms_keyset *live, struct vms_gc_stats *stats,
                       fsp_error *err)
{
    struct pack_row *packs;
    size_t n;
    int rc = load_packs(r, &packs, &n, err);
    for (size_t i = 0; !rc && i < n; i++)
        rc = sweep_pack(r, &packs[i], live, stats, err);
    free(packs);
    return rc;
}

/* Calls FN for each regular file of REPO/SUB whose name does not start with a dot. */
typedef int (*file_fn)(vms_local *r, int dir, const char *name, const struct stat *st, void *ctx,
                       struct vms_gc_stats *stats, fsp_error *err);

static int for_each_file(vms_local *r, const char *sub, file_fn fn, void *ctx,
                         struct vms_gc_stats *stats, fsp_error *err)
{
    char *path = vms_local_join(r, sub);
    if (!path)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    DIR *d = opendir(path);
    if (!d) {
        int rc = fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot list: %s", path, strerror(errno));
        free(path);
        return rc;
    }
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        struct stat st;
        if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(st.st_mode))
            continue;
        rc = fn(r, dirfd(d), de->d_name, &st, ctx, stats, err);
    }
    closedir(d);
    free(path);
    return rc;
}

static bool older_than(const struct stat *st, const struct timespec *t)
{
    return st->st_mtim.tv_sec < t->tv_sec ||
           (st->st_mtim.tv_sec == t->tv_sec && st->st_mtim.tv_nsec <= t->tv_nsec);
}

static bool remove_file(int dir, const char *name) { return unlinkat(dir, name, 0) == 0; }

/* A pack that no catalog row names: a writer died between rename and index. */
static int remove_if_unindexed(vms_local *r, int dir, const char *name, const struct stat *st,
                               void *ctx, struct vms_gc_stats *stats, fsp_error *err)
{
    const struct timespec *start = ctx;
    if (!vms_is_pack_name(name) || !older_than(st, start))
        return 0;
    sqlite3_stmt *q;
    int rc = vms_repo_prepare(r, "SELECT 1 FROM packs WHERE name = ?1", &q, err);
    if (rc)
        return rc;
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    int s = sqlite3_step(q);
    sqlite3_finalize(q);
    if (s == SQLITE_DONE && remove_file(dir, name))
        stats->packs_removed++;
    return s == SQLITE_ROW || s == SQLITE_DONE ? 0
                                               : vms_repo_db_fail(r, s, "looking up a pack", err);
}

struct manifest_sweep {
    const struct vms_keyset *used;
    const struct timespec *start;
};

static bool parse_manifest_name(const char *name, uint8_t id[FSP_SHA256_LEN])
{
    if (strlen(name) != 2 * FSP_SHA256_LEN + 5 || strcmp(name + 2 * FSP_SHA256_LEN, ".vmsm") != 0)
        return false;
    for (int i = 0; i < FSP_SHA256_LEN; i++) {
        unsigned v;
        if (!strchr("0123456789abcdef", name[2 * i]) ||
            !strchr("0123456789abcdef", name[2 * i + 1]) || sscanf(name + 2 * i, "%2x", &v) != 1)
            return false;
        id[i] = (uint8_t)v;
    }
    return true;
}

/* A manifest put by a check-in that never recorded its version. */
static int remove_if_unused(vms_local *r, int dir, const char *name, const struct stat *st,
                            void *ctx, struct vms_gc_stats *stats, fsp_error *err)
{
    const struct manifest_sweep *m = ctx;
    uint8_t id[FSP_SHA256_LEN];
    if (parse_manifest_name(name, id) && !vms_keyset_find(m->used, id, NULL) &&
        older_than(st, m->start))
        remove_file(dir, name);
    return 0;
}

static int remove_leftover(vms_local *r, int dir, const char *name, const struct stat *st, void *ctx,
                           struct vms_gc_stats *stats, fsp_error *err)
{
    remove_file(dir, name);
    return 0;
}

static int collect_garbage(vms_local *r, struct vms_gc_stats *stats, fsp_error *err)
{
    struct timespec start;
    clock_gettime(CLOCK_REALTIME, &start);
    struct vms_keyset manifests = {0}, live = {0};
    int rc = collect_live(r, &manifests, &live, err);
    if (!rc)
        rc = sweep_packs(r, &live, stats, err);
    if (!rc)
        rc = for_each_file(r, "packs", remove_if_unindexed, &start, stats, err);
    struct manifest_sweep m = {&manifests, &start};
    if (!rc)
        rc = for_each_file(r, "manifests", remove_if_unused, &m, stats, err);
    if (!rc)
        rc = for_each_file(r, "tmp", remove_leftover, NULL, stats, err);
    vms_keyset_free(&manifests);
    vms_keyset_free(&live);
    if (!rc) /* give the freed catalog pages back too; failure is harmless */
        sqlite3_exec(r->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    return rc;
}

/* Empties REPO/cache/SUB (best effort: a cache).  Called with the exclusive
 * lock, so no agent is writing there. */
static void empty_cache(vms_local *r, const char *sub)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/cache/%s", r->path, sub);
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            unlinkat(dirfd(d), de->d_name, 0);
    closedir(d);
}

/* What gc's figures count, in the store itself rather than by gc's own tally,
 * so that they add up whatever gc met. */
struct store_count {
    uint64_t objects, packs, bytes;
};

static void add_dir_usage(vms_local *r, const char *sub, struct store_count *c)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", r->path, sub);
    DIR *d = opendir(path);
    if (!d)
        return; /* the caches may not exist */
    struct dirent *de;
    struct stat st;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' && fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode)) {
            c->bytes += (uint64_t)st.st_size;
            c->packs += !strcmp(sub, "packs") && vms_is_pack_name(de->d_name);
        }
    closedir(d);
}

static int count_store(vms_local *r, struct store_count *c, fsp_error *err)
{
    static const char *const dirs[] = {"packs", "manifests", "tmp", "cache/segments", "cache/tmp"};
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++)
        add_dir_usage(r, dirs[i], c);
    return vms_repo_count(r, "SELECT COUNT(*) FROM objects", &c->objects, err);
}

static uint64_t less(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

static void fill_gc_stats(struct vms_gc_stats *s, const struct store_count *before,
                          const struct store_count *after)
{
    s->objects_before = before->objects;
    s->objects_kept = after->objects;
    s->objects_dropped = less(before->objects, after->objects);
    s->packs_before = before->packs;
    s->packs_kept = less(before->packs, s->packs_rewritten + s->packs_removed);
    s->bytes_before = before->bytes;
    s->bytes_kept = after->bytes;
    s->bytes_freed = less(before->bytes, after->bytes);
}

/* The problems that make gc unsafe, and the first of them. */
struct gc_blockers {
    uint64_t n;
    char first[400];
};

/* A dangling lease does not change what gc would keep. */
static int note_blocker(void *ctx, const struct vms_problem *p)
{
    struct gc_blockers *b = ctx;
    if (p->kind == VMS_PROBLEM_LEASE)
        return 0;
    if (!b->n++)
        vms_problem_describe(p, b->first, sizeof b->first);
    return 0;
}

/* Deleting by the picture a damaged catalog gives would lose what it does
 * not show: gc runs only on a repository that passes the quick check. */
static int refuse_unless_healthy(vms_local *r, fsp_error *err)
{
    struct gc_blockers b = {0};
    struct vms_check_opts quick = {.objects = false};
    struct vms_check_hooks h = {.problem = note_blocker, .problem_ctx = &b};
    struct vms_check_stats cs;
    int rc = vms_local_check(r, &quick, &h, &cs, err);
    if (rc || !b.n)
        return rc;
    return fsp_fail(err, FSP_EK_CORRUPT, -EUCLEAN,
                    "%s: gc refused: the repository fails its check with %llu problem%s (%s); "
                    "run 'vmsync check %s' to see them all",
                    r->path, (unsigned long long)b.n, b.n == 1 ? "" : "s", b.first, r->path);
}

static int checked_gc(vms_local *r, struct vms_gc_stats *stats, fsp_error *err)
{
    struct store_count before, after;
    int rc = refuse_unless_healthy(r, err);
    if (!rc)
        rc = count_store(r, &before, err);
    if (!rc)
        rc = collect_garbage(r, stats, err);
    if (!rc) {
        empty_cache(r, "segments"); /* they may hold dropped objects */
        empty_cache(r, "tmp");
        rc = count_store(r, &after, err);
    }
    if (!rc)
        fill_gc_stats(stats, &before, &after);
    return rc;
}

/* "pid 12 (vmsync-agent), pid 34 (vmsync)": the other processes holding REPO/lock,
 * as /proc/locks tells (their flocks name the lock file's device and inode). */
static void lock_holders(const vms_local *r, char *out, size_t cap)
{
    FILE *f = fopen("/proc/locks", "re");
    char line[256], want[64];
    size_t n = 0, shown = 0;
    snprintf(want, sizeof want, "%02x:%02x:%llu", major(r->lock_dev), minor(r->lock_dev),
             (unsigned long long)r->lock_ino);
    out[0] = 0;
    while (f && fgets(line, sizeof line, f)) {
        long pid;
        char dev[64];
        /* "1: FLOCK  ADVISORY  READ  1234 08:01:5678 0 EOF"; waiters say "->" */
        if (strstr(line, "->") || sscanf(line, "%*s FLOCK %*s %*s %ld %63s", &pid, dev) != 2 ||
            strcmp(dev, want) || pid == (long)getpid())
            continue;
        char path[64], comm[64] = "?";
        snprintf(path, sizeof path, "/proc/%ld/comm", pid);
        FILE *c = fopen(path, "re");
        if (c && fgets(comm, sizeof comm, c))
            comm[strcspn(comm, "\n")] = 0;
        if (c)
            fclose(c);
        if (shown < 8 && n + 40 < cap)
            n += (size_t)snprintf(out + n, cap - n, "%spid %ld (%s)", shown++ ? ", " : "", pid, comm);
    }
    if (f)
        fclose(f);
    if (!shown)
        snprintf(out, cap, "another process");
}

/* The exclusive lock, waiting at most WAIT seconds for every other handle to
 * close: a reader that never goes must not hold gc up for good. */
static int lock_exclusive(vms_local *r, unsigned wait, fsp_error *err)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (flock(r->lock_fd, LOCK_EX | LOCK_NB) == 0)
            return 0;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot lock: %s", r->path,
                            strerror(errno));
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t waited_ms = (int64_t)(now.tv_sec - start.tv_sec) * 1000 +
                            (now.tv_nsec - start.tv_nsec) / 1000000;
        if (waited_ms >= (int64_t)wait * 1000)
            break;
        if (vms_cancel_sleep(r->cancel, 0.1))
            return vms_cancel_fail(err, "while gc waited for the repository's other users");
    }
    char who[512];
    lock_holders(r, who, sizeof who);
    return fsp_fail(err, FSP_EK_CONFLICT, -EBUSY,
                    "%s: gc waited %u s for the repository's other users to finish, and it is "
                    "still open by %s; nothing was removed: run gc when they are done (--wait "
                    "sets how long gc waits)",
                    r->path, wait, who);
}

void vms_local_gc_wait(vms_local *r, unsigned seconds) { r->gc_wait = seconds; }

void vms_local_on_cancel(vms_local *r, const vms_cancel *cancel) { r->cancel = cancel; }

int vms_local_gc(vms_local *r, struct vms_gc_stats *stats, fsp_error *err)
{
    memset(stats, 0, sizeof *stats);
    if (r->pack.fd >= 0)
        return fsp_fail(err, FSP_EK_USAGE, -EBUSY,
                        "%s: objects are pending in this handle; flush them before gc", r->path);
    /* Our own other handle would hold its shared lock forever: refuse, not hang. */
    if (vms_repo_shared_in_process(r))
        return fsp_fail(err, FSP_EK_USAGE, -EBUSY,
                        "%s: gc needs the only open handle on the repository in this process",
                        r->path);
    /* Converting a flock is not atomic (the shared lock goes first), which is
     * fine: nothing below relies on what was true before we got it. */
    int rc = lock_exclusive(r, r->gc_wait ? r->gc_wait : VMS_GC_WAIT_DEFAULT, err);
    if (!rc) {
        pack_fds_close(r);
        rc = checked_gc(r, stats, err);
    }
    int relock = flock_retry(r->lock_fd, LOCK_SH);
    if (!rc && relock)
        rc = fsp_fail(err, FSP_EK_IO, relock, "%s: cannot lock: %s", r->path, strerror(-relock));
    return rc;
}
