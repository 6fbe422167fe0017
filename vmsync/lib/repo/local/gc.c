/* Garbage collection of a local repository: objects no version's manifest
 * uses, packs that hold them, and leftovers of crashed writers. */
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

static int flock_retry(int fd, int op)
{
    while (flock(fd, op) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
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
        rc = vms_repo_report(&r->progress, VMS_PHASE_GC_MARK, i, manifests->n, err);
        if (!rc)
            rc = path ? vms_manifest_objects(path, add_live, &c, err)
                      : fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
        free(path);
    }
    return rc ? rc : vms_repo_report(&r->progress, VMS_PHASE_GC_MARK, manifests->n, manifests->n, err);
}

struct pack_row {
    int64_t id;
    char name[VMS_PACK_NAME_LEN + 1];
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
    char rel[VMS_PACK_NAME_LEN + 8];
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
    struct vms_location loc = {
        .fd = fd, .offset = o->offset, .len = o->len, .stored_len = o->stored_len};
    snprintf(loc.pack, sizeof loc.pack, "%s", pack);
    int rc = vms_pack_read_record(r, o->hash, &loc, err);
    return rc ? rc : vms_pack_append(r, r->rec, VMS_RECORD_HEADER_LEN + o->stored_len, err);
}

/* Some objects are garbage: copy the live ones to a new pack, index them
 * there and forget the old pack in one transaction, then delete its file.  A
 * crash in between leaves an unindexed pack for the next gc. */
static int rewrite_pack(vms_local *r, const struct pack_row *p, const struct object_row *objs,
                        size_t n, struct vms_gc_stats *stats, fsp_error *err)
{
    int fd;
    int rc = vms_pack_fd(r, p->id, p->name, NULL, &fd, err);
    if (!rc)
        rc = vms_pack_start(r, err);
    for (size_t i = 0; !rc && i < n; i++)
        if (objs[i].live)
            rc = copy_record(r, fd, p->name, &objs[i], err);
    char name[VMS_PACK_NAME_LEN + 1];
    if (!rc)
        rc = vms_pack_publish(r, name, err);
    if (!rc)
        rc = vms_pack_index(r, name, p->id, err);
    vms_pack_discard(r);
    vms_pack_fds_close(r);
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
    for (size_t i = 0; !rc && i < n; i++) {
        rc = vms_repo_report(&r->progress, VMS_PHASE_GC_SWEEP, i, n, err);
        if (!rc)
            rc = sweep_pack(r, &packs[i], live, stats, err);
    }
    if (!rc)
        rc = vms_repo_report(&r->progress, VMS_PHASE_GC_SWEEP, n, n, err);
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

/* A dangling lease or a bad signature does not change what gc would keep. */
static int note_blocker(void *ctx, const struct vms_problem *p)
{
    struct gc_blockers *b = ctx;
    if (p->kind == VMS_PROBLEM_LEASE || p->kind == VMS_PROBLEM_SIGNATURE)
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
    int rc = vms_local_check(&r->base, &quick, &h, &cs, err);
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
        if (vms_cancel_sleep(r->progress.cancel, 0.1))
            return vms_cancel_fail(err, "while gc waited for the repository's other users");
    }
    char who[512];
    lock_holders(r, who, sizeof who);
    return fsp_fail(err, VMS_EK_CONFLICT, -EBUSY,
                    "%s: gc waited %u s for the repository's other users to finish, and it is "
                    "still open by %s; nothing was removed: run gc when they are done",
                    r->path, wait, who);
}

void vms_local_gc_wait(vms_repo *repo, unsigned seconds) { ((vms_local *)repo)->gc_wait = seconds; }

int vms_local_gc(vms_repo *repo, struct vms_gc_stats *stats, fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
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
        vms_pack_fds_close(r);
        rc = checked_gc(r, stats, err);
    }
    int relock = flock_retry(r->lock_fd, LOCK_SH);
    if (!rc && relock)
        rc = fsp_fail(err, FSP_EK_IO, relock, "%s: cannot lock: %s", r->path, strerror(-relock));
    return rc;
}

/* ---- the dry run ------------------------------------------------------------------
 * gc's figures without gc: which indexed objects are dead (by the index, not
 * the packs), and the files gc would remove.  Under the shared lock only, so a
 * check-in running meanwhile makes the figures a moment's picture. */

struct dead_pack {
    int64_t id;
    uint64_t objects, dead;
};

static void close_dead_pack(const struct dead_pack *p, struct vms_gc_stats *stats)
{
    if (p->dead && p->dead == p->objects)
        stats->packs_removed++;
    else if (p->dead)
        stats->packs_rewritten++;
}

static void count_dead_row(sqlite3_stmt *st, const struct vms_keyset *live, struct dead_pack *p,
                           struct vms_gc_stats *stats)
{
    int64_t pack = sqlite3_column_int64(st, 0);
    if (p->objects && pack != p->id) {
        close_dead_pack(p, stats);
        *p = (struct dead_pack){0};
    }
    p->id = pack;
    p->objects++;
    if (sqlite3_column_bytes(st, 1) == FSP_SHA256_LEN &&
        !vms_keyset_find(live, sqlite3_column_blob(st, 1), NULL)) {
        p->dead++;
        stats->objects_dropped++;
        stats->bytes_freed += (uint64_t)sqlite3_column_int64(st, 2);
    }
}

static int count_dead_objects(vms_local *r, const struct vms_keyset *live,
                              struct vms_gc_stats *stats, fsp_error *err)
{
    sqlite3_stmt *st;
    struct dead_pack p = {0};
    int rc = vms_repo_prepare(r, "SELECT pack_id, hash, stored_len FROM objects ORDER BY pack_id",
                              &st, err);
    int s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW)
        count_dead_row(st, live, &p, stats);
    if (!rc && s != SQLITE_DONE)
        rc = vms_repo_db_fail(r, s, "listing objects", err);
    if (!rc)
        close_dead_pack(&p, stats);
    sqlite3_finalize(st);
    return rc;
}

static int count_if_unused(vms_local *r, int dir, const char *name, const struct stat *st,
                           void *ctx, struct vms_gc_stats *stats, fsp_error *err)
{
    const struct vms_keyset *used = ctx;
    uint8_t id[FSP_SHA256_LEN];
    if (parse_manifest_name(name, id) && !vms_keyset_find(used, id, NULL))
        stats->bytes_freed += (uint64_t)st->st_size;
    return 0;
}

int vms_local_gc_estimate(vms_repo *repo, struct vms_gc_stats *stats, fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    struct store_count before, leftovers = {0};
    struct vms_keyset manifests = {0}, live = {0};
    memset(stats, 0, sizeof *stats);
    int rc = refuse_unless_healthy(r, err);
    if (!rc)
        rc = count_store(r, &before, err);
    if (!rc)
        rc = collect_live(r, &manifests, &live, err);
    if (!rc)
        rc = count_dead_objects(r, &live, stats, err);
    if (!rc)
        rc = for_each_file(r, "manifests", count_if_unused, &manifests, stats, err);
    static const char *const emptied[] = {"tmp", "cache/segments", "cache/tmp"};
    for (size_t i = 0; !rc && i < sizeof emptied / sizeof *emptied; i++)
        add_dir_usage(r, emptied[i], &leftovers);
    vms_keyset_free(&manifests);
    vms_keyset_free(&live);
    stats->bytes_freed += leftovers.bytes;
    stats->objects_before = before.objects;
    stats->objects_kept = less(before.objects, stats->objects_dropped);
    stats->packs_before = before.packs;
    stats->packs_kept = less(before.packs, stats->packs_rewritten + stats->packs_removed);
    stats->bytes_before = before.bytes;
    stats->bytes_kept = less(before.bytes, stats->bytes_freed);
    return rc;
}
