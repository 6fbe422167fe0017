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
#include "repo/local/local.h"

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

/* ---- the pack file descriptor cache -------------------------------------- */

bool vms_is_pack_name(const char *name)
{
    if (strlen(name) != VMS_PACK_NAME_LEN || strncmp(name, "pack-", 5) != 0 ||
        strcmp(name + VMS_PACK_NAME_LEN - 5, ".pack") != 0)
        return false;
    for (int i = 5; i < VMS_PACK_NAME_LEN - 5; i++)
        if (!strchr("0123456789abcdef", name[i]))
            return false;
    return true;
}

void vms_pack_fds_close(vms_local *r)
{
    for (int i = 0; i < VMS_PACK_FD_CACHE; i++) {
        if (r->pack_fds[i].id)
            close(r->pack_fds[i].fd);
        r->pack_fds[i].id = 0;
    }
}

/* Pack ids are never reused (AUTOINCREMENT), so an id names one file for good.
 * HASH, when known, is the object wanted, for the message. */
int vms_pack_fd(vms_local *r, int64_t id, const char *name, const uint8_t *hash, int *fd,
                   fsp_error *err)
{
    for (int i = 0; i < VMS_PACK_FD_CACHE; i++)
        if (r->pack_fds[i].id == id) {
            *fd = r->pack_fds[i].fd;
            return 0;
        }
    char rel[VMS_PACK_NAME_LEN + 8];
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

int vms_pack_start(vms_local *r, fsp_error *err)
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
void vms_pack_discard(vms_local *r)
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
int vms_pack_append(vms_local *r, const uint8_t *rec, size_t rec_len, fsp_error *err)
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
    return vms_pack_append(r, r->rec, VMS_RECORD_HEADER_LEN + stored, err);
}

/* Makes the open pack durable under packs/NAME.  The caller discards the open
 * pack afterwards either way (removing the temporary file if still there). */
int vms_pack_publish(vms_local *r, char name[VMS_PACK_NAME_LEN + 1], fsp_error *err)
{
    uint8_t rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: no randomness for a pack name", r->path);
    char hex[2 * sizeof rnd + 1];
    fsp_hex(rnd, sizeof rnd, hex);
    snprintf(name, VMS_PACK_NAME_LEN + 1, "pack-%s.pack", hex);

    struct vms_open_pack *p = &r->pack;
    if (ftruncate(p->fd, (off_t)p->size) < 0 || fsync(p->fd) < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot write: %s", p->tmp_path,
                        strerror(errno));
    char rel[VMS_PACK_NAME_LEN + 8];
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
int vms_pack_index(vms_local *r, const char *name, int64_t replaces, fsp_error *err)
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

int vms_local_has(vms_repo *repo, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, uint8_t *present,
                  struct vms_object_size *sizes, fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
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

int vms_local_put(vms_repo *repo, const uint8_t hash[FSP_SHA256_LEN], const void *data, size_t len,
                  fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
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
        rc = vms_pack_start(r, err);
    if (!rc)
        rc = append_object(r, hash, data, len, err);
    if (!rc && r->pack.size >= VMS_PACK_TARGET)
        rc = vms_local_flush(&r->base, err);
    return rc;
}

/* On failure the open pack is dropped: its objects are neither pending nor
 * stored, and vms_repo_has says so. */
int vms_local_flush(vms_repo *repo, fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    if (r->pack.fd < 0)
        return 0;
    char name[VMS_PACK_NAME_LEN + 1];
    int rc = vms_pack_publish(r, name, err);
    if (!rc)
        rc = vms_pack_index(r, name, 0, err);
    vms_pack_discard(r);
    return rc;
}

/* ---- get -------------------------------------------------------------------- */

static int locate_pending(vms_local *r, size_t index, struct vms_location *loc)
{
    const struct vms_pending *o = &r->pack.objs[index];
    const char *slash = strrchr(r->pack.tmp_path, '/');
    *loc = (struct vms_location){
        .fd = r->pack.fd, .offset = o->offset, .len = o->len, .stored_len = o->stored_len};
    snprintf(loc->pack, sizeof loc->pack, "tmp/%s (open)", slash ? slash + 1 : r->pack.tmp_path);
    return 0;
}

/* Reads an index row for HASH; *FOUND false when there is none.  Rows are
 * checked before use: their numbers size buffers and their name makes a path. */
static int locate_indexed(vms_local *r, const uint8_t *hash, struct vms_location *loc, bool *found,
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
        *loc = (struct vms_location){
            .offset = (uint64_t)offset, .len = (uint32_t)len, .stored_len = (uint32_t)stored};
        snprintf(loc->pack, sizeof loc->pack, "%s", name);
        rc = vms_pack_fd(r, id, name, hash, &loc->fd, err);
    } else {
        char hex[HEX_LEN];
        fsp_hex(hash, FSP_SHA256_LEN, hex);
        rc = fsp_fail(err, FSP_EK_CORRUPT, -EUCLEAN, "%s: catalog: bad index entry for object %s",
                      r->path, hex);
    }
    sqlite3_reset(st);
    return rc;
}

static int locate(vms_local *r, const uint8_t *hash, struct vms_location *loc, fsp_error *err)
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

static int corrupt(vms_local *r, const uint8_t *hash, const struct vms_location *loc, const char *why,
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
int vms_pack_read_record(vms_local *r, const uint8_t *hash, const struct vms_location *loc, fsp_error *err)
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
static int decode_record(vms_local *r, const uint8_t *hash, const struct vms_location *loc,
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

int vms_local_get(vms_repo *repo, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, vms_object_cb cb,
                  void *ctx, fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    for (size_t i = 0; i < n; i++) {
        struct vms_location loc;
        const uint8_t *data;
        int rc = locate(r, hashes[i], &loc, err);
        if (!rc)
            rc = vms_pack_read_record(r, hashes[i], &loc, err);
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

int vms_local_get_stored(vms_repo *repo, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                         vms_stored_cb cb, void *ctx, fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    for (size_t i = 0; i < n; i++) {
        struct vms_location loc;
        int rc = locate(r, hashes[i], &loc, err);
        if (!rc)
            rc = vms_pack_read_record(r, hashes[i], &loc, err);
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
    vms_pack_discard(r);
    vms_pack_fds_close(r);
    sqlite3_finalize(r->find_object);
    sqlite3_finalize(r->object_exists);
    r->find_object = r->object_exists = NULL;
    ZSTD_freeCCtx(r->zc);
    ZSTD_freeDCtx(r->zd);
    free(r->rec);
    free(r->plain);
}
