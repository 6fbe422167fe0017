/* The local repository: objects, packs, manifests, versions, leases, gc, and
 * two processes sharing one repository.  Every test works in its own scratch
 * directory under /tmp. */
#include "check.h"
#include "repo/repo.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK_OK(call, err)                                                                        \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        CHECK(rc_ == 0);                                                                           \
        if (rc_)                                                                                   \
            fprintf(stderr, "  %s\n", (err).msg);                                                  \
    } while (0)

/* Checks that CALL failed with KIND and a message containing TEXT. */
#define CHECK_FAILS(call, err, want, text)                                                         \
    do {                                                                                           \
        memset(&(err), 0, sizeof(err));                                                            \
        int rc_ = (call);                                                                          \
        CHECK(rc_ < 0);                                                                            \
        CHECK((err).kind == (want));                                                               \
        CHECK(strstr((err).msg, (text)) != NULL);                                                  \
        if (rc_ >= 0 || (err).kind != (want) || !strstr((err).msg, (text)))                        \
            fprintf(stderr, "  rc %d kind %d, wanted \"%s\", got: %s\n", rc_, (int)(err).kind,     \
                    (text), (err).msg);                                                            \
    } while (0)

/* ---- objects for tests ---- */

struct object {
    uint8_t hash[FSP_SHA256_LEN];
    uint8_t *data;
    size_t len;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void sha256(const void *data, size_t len, uint8_t out[FSP_SHA256_LEN])
{
    unsigned n;
    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

/* Random bytes (incompressible) or repeated text (compressible). */
static struct object make_object(size_t len, bool compressible)
{
    struct object o = {.data = malloc(len ? len : 1), .len = len};
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = rng();
        for (size_t j = i; j < len && j < i + 8; j++)
            o.data[j] = compressible ? (uint8_t)("vmsync repository test "[j % 23])
                                     : (uint8_t)(v >> (8 * (j - i)));
    }
    if (compressible && len >= 8) /* distinct objects of the same length */
        memcpy(o.data, &(uint64_t){rng()}, 8);
    sha256(o.data, len, o.hash);
    return o;
}

static void free_objects(struct object *objs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(objs[i].data);
}

struct expect {
    const struct object *objs;
    size_t seen;
    bool ok;
};

static int check_object(void *ctx, size_t index, const uint8_t *data, size_t len, size_t stored_len)
{
    struct expect *e = ctx;
    const struct object *o = &e->objs[index];
    if (index != e->seen++ || len != o->len || (len && memcmp(data, o->data, len) != 0))
        e->ok = false;
    return 0;
}

/* Gets every object back and compares it with what was put. */
static bool get_all(vms_repo *r, const struct object *objs, size_t n, fsp_error *err)
{
    uint8_t(*hashes)[FSP_SHA256_LEN] = malloc(n * FSP_SHA256_LEN + 1);
    for (size_t i = 0; i < n; i++)
        memcpy(hashes[i], objs[i].hash, FSP_SHA256_LEN);
    struct expect e = {objs, 0, true};
    int rc = vms_repo_get(r, (const uint8_t(*)[FSP_SHA256_LEN])hashes, n, check_object, &e, err);
    free(hashes);
    return rc == 0 && e.ok && e.seen == n;
}

#define CHECK_GET(r, objs, n)                                                                      \
    do {                                                                                           \
        fsp_error e_ = {0};                                                                        \
        bool ok_ = get_all(r, objs, n, &e_);                                                       \
        CHECK(ok_);                                                                                \
        if (!ok_)                                                                                  \
            fprintf(stderr, "  get: %s\n", e_.msg);                                                \
    } while (0)

/* The stored size of one object, 0 when absent. */
static uint32_t stored_size(vms_repo *r, const uint8_t *hash)
{
    uint8_t present = 0;
    struct vms_object_size size = {0, 0};
    fsp_error err;
    if (vms_repo_has(r, (const uint8_t(*)[FSP_SHA256_LEN])hash, 1, &present, &size, &err))
        return 0;
    return present ? size.stored : 0;
}

static bool has_one(vms_repo *r, const uint8_t *hash)
{
    uint8_t present = 2;
    fsp_error err;
    int rc = vms_repo_has(r, (const uint8_t(*)[FSP_SHA256_LEN])hash, 1, &present, NULL, &err);
    return rc == 0 && present == 1;
}

static int put_all(vms_repo *r, const struct object *objs, size_t n, fsp_error *err)
{
    for (size_t i = 0; i < n; i++) {
        int rc = vms_repo_put(r, objs[i].hash, objs[i].data, objs[i].len, err);
        if (rc)
            return rc;
    }
    return 0;
}

static int count_files(const char *repo, const char *sub)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls -A '%s/%s' | wc -l", repo, sub);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1)
        n = -1;
    if (p)
        pclose(p);
    return n;
}

/* The first pack file's path and name, or false. */
static bool first_pack(const char *repo, char *path, size_t cap, char name[64])
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls '%s/packs' | head -1", repo);
    FILE *p = popen(cmd, "r");
    bool found = p && fgets(name, 64, p);
    if (p)
        pclose(p);
    if (found) {
        name[strcspn(name, "\n")] = 0;
        snprintf(path, cap, "%s/packs/%s", repo, name);
    }
    return found;
}

/* Runs a one-value query against the catalog directly (test-only peeking). */
static long long query_int(const char *repo, const char *sql)
{
    char path[256];
    snprintf(path, sizeof path, "%s/catalog.db", repo);
    sqlite3 *db;
    sqlite3_stmt *st;
    long long v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return v;
}

static char *new_repo(const char *what, fsp_error *err)
{
    char *path = scratch(what);
    CHECK_OK(vms_repo_init(path, err), *err);
    return path;
}

/* ---- manifests for tests ---- */

#define IMAGE_SIZE (1u << 20)

/* A valid manifest whose objects are the file stream FILE_HASH (5000 bytes)
 * and two 4 KiB RAW pieces. */
static void write_manifest(const char *path, const uint8_t *file_hash, const uint8_t *piece1,
                           const uint8_t *piece2)
{
    vms_manifest_writer *w;
    fsp_error err;
    CHECK_OK(vms_manifest_writer_open(path, &w, &err), err);
    const struct fsp_sink *s = vms_manifest_writer_sink(w);
    struct fsp_image_info image = {
        .size = IMAGE_SIZE, .format = "raw", .table = "none", .n_volumes = 1};
    s->image(s->ctx, &image);
    struct fsp_volume_info vol = {.index = 0,
                                  .start = 0,
                                  .length = IMAGE_SIZE,
                                  .fs_kind = FSP_FS_EXT,
                                  .block_size = 4096,
                                  .fs_length = IMAGE_SIZE};
    strcpy(vol.fs_type, "ext4");
    s->volume(s->ctx, &vol);
    struct fsp_entry root = {.path = "/", .type = FSP_T_DIR, .nlink = 2, .mode = 040755};
    s->entry(s->ctx, 0, &root);
    struct fsp_extent x = {.logical = 0, .physical = 8192, .length = 8192};
    struct fsp_stream st = {.size = 5000, .n_extents = 1, .extents = &x};
    memcpy(st.sha256, file_hash, FSP_SHA256_LEN);
    struct fsp_entry file = {.path = "/file",
                             .type = FSP_T_REG,
                             .nlink = 1,
                             .size = 5000,
                             .n_streams = 1,
                             .streams = &st,
                             .mode = 0100644};
    s->entry(s->ctx, 1, &file);

    fsp_digest *d;
    fsp_digest_new(IMAGE_SIZE, &d);
    struct fsp_layout_run file_run = {
        .offset = 8192, .length = 8192, .kind = FSP_L_FILE, .entry_seq = 1, .stream_size = 5000};
    memcpy(file_run.stream_sha256, file_hash, FSP_SHA256_LEN);
    uint8_t hashes[2][FSP_SHA256_LEN];
    memcpy(hashes[0], piece1, FSP_SHA256_LEN);
    memcpy(hashes[1], piece2, FSP_SHA256_LEN);
    struct fsp_layout_run raw_run = {.offset = 16384,
                                     .length = 8192,
                                     .kind = FSP_L_RAW,
                                     .n_hashes = 2,
                                     .hashes = (const uint8_t(*)[32])hashes};
    struct fsp_summary sum = {.entries = 2, .allocated_bytes = 16384};
    const struct fsp_layout_run *runs[] = {&file_run, &raw_run};
    for (int i = 0; i < 2; i++) {
        s->layout(s->ctx, runs[i]);
        fsp_digest_add_run(d, runs[i]);
    }
    fsp_digest_final(d, sum.digest);
    fsp_digest_free(d);
    s->done(s->ctx, &sum);
    CHECK_OK(vms_manifest_writer_commit(w, &err), err);
}

/* Puts a manifest made of arbitrary hashes; returns its id in ID. */
static void store_some_manifest(vms_repo *r, uint8_t seed, uint8_t id[FSP_SHA256_LEN])
{
    uint8_t h[3][FSP_SHA256_LEN];
    for (int i = 0; i < 3; i++)
        memset(h[i], seed + i, FSP_SHA256_LEN);
    char *path = scratch("manifest");
    write_manifest(path, h[0], h[1], h[2]);
    fsp_error err;
    CHECK_OK(vms_repo_put_manifest(r, path, id, &err), err);
    unlink(path);
    free(path);
}

/* ---- tests ---- */

static void test_init_open_refuse(void)
{
    fsp_error err;
    char *repo = new_repo("repo", &err);
    CHECK_FAILS(vms_repo_init(repo, &err), err, FSP_EK_USAGE, "already a vmsync repository");

    char *full = scratch("full");
    mkdir(full, 0755);
    char *file;
    CHECK(asprintf(&file, "%s/something", full) > 0);
    close(open(file, O_CREAT | O_WRONLY, 0644));
    CHECK_FAILS(vms_repo_init(full, &err), err, FSP_EK_USAGE, "directory is not empty");

    vms_repo *r = NULL;
    CHECK_FAILS(vms_repo_open(full, "u", "h", NULL, &r, &err), err, FSP_EK_FORMAT,
                "not a vmsync repository");
    CHECK(strstr(err.msg, full) == err.msg);
    CHECK(r == NULL);
    char *missing = scratch("missing");
    CHECK_FAILS(vms_repo_open(missing, "u", "h", NULL, &r, &err), err, FSP_EK_OPEN, missing);

    char *empty = scratch("empty");
    mkdir(empty, 0755);
    CHECK_OK(vms_repo_init(empty, &err), err); /* an existing empty directory is fine */

    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);
    CHECK(r && strcmp(vms_repo_path(r), repo) == 0);
    vms_repo_close(r);
    CHECK_FAILS(vms_repo_open(repo, "", "h", NULL, &r, &err), err, FSP_EK_USAGE, "user name");
    CHECK_FAILS(vms_repo_init(file, &err), err, FSP_EK_USAGE, "not a directory");

    /* a repository from a future vmsync */
    char *marker;
    CHECK(asprintf(&marker, "%s/vmsync-repo", repo) > 0);
    FILE *f = fopen(marker, "w");
    fputs("vmsync-repo 2\n", f);
    fclose(f);
    CHECK_FAILS(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err, FSP_EK_FORMAT,
                "repository format 2 is not supported");
    free(marker);

    rm_rf(repo);
    rm_rf(full);
    rm_rf(empty);
    free(repo);
    free(full);
    free(file);
    free(missing);
    free(empty);
}

#define N_OBJECTS 300

static void make_mixed_objects(struct object *objs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = i == 0 ? 0 : i == 1 ? (1u << 20) : i == 2 ? 1 : 1 + rng() % 70000;
        objs[i] = make_object(len, i % 2 == 1);
    }
}

static void test_objects_round_trip(void)
{
    fsp_error err;
    char *repo = new_repo("objects", &err);
    struct object objs[N_OBJECTS];
    make_mixed_objects(objs, N_OBJECTS);

    vms_repo *r;
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);
    CHECK_OK(put_all(r, objs, N_OBJECTS, &err), err);
    CHECK(count_files(repo, "tmp") == 1); /* the open pack */
    CHECK_GET(r, objs, N_OBJECTS);        /* readable while pending */
    uint8_t present[N_OBJECTS];
    uint8_t(*hashes)[FSP_SHA256_LEN] = malloc(sizeof(uint8_t[N_OBJECTS][FSP_SHA256_LEN]));
    for (int i = 0; i < N_OBJECTS; i++)
        memcpy(hashes[i], objs[i].hash, FSP_SHA256_LEN);
    CHECK_OK(vms_repo_has(r, (const uint8_t(*)[FSP_SHA256_LEN])hashes, N_OBJECTS, present, NULL, &err),
             err);
    CHECK(memchr(present, 0, N_OBJECTS) == NULL);
    CHECK_OK(vms_repo_flush(r, &err), err);
    CHECK(count_files(repo, "tmp") == 0);
    CHECK(count_files(repo, "packs") == 1);
    CHECK_GET(r, objs, N_OBJECTS);
    /* compressible objects shrink; random ones are stored as they are */
    CHECK(stored_size(r, objs[1].hash) < objs[1].len / 10);
    CHECK(stored_size(r, objs[4].hash) == objs[4].len);
    vms_repo_close(r);

    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);
    memset(present, 0, sizeof present);
    CHECK_OK(vms_repo_has(r, (const uint8_t(*)[FSP_SHA256_LEN])hashes, N_OBJECTS, present, NULL, &err),
             err);
    CHECK(memchr(present, 0, N_OBJECTS) == NULL);
    CHECK_GET(r, objs, N_OBJECTS);

    struct object stranger = make_object(100, false);
    CHECK(!has_one(r, stranger.hash));
    CHECK(stored_size(r, stranger.hash) == 0);
    CHECK_FAILS(get_all(r, &stranger, 1, &err) ? 0 : -1, err, FSP_EK_CORRUPT,
                "is not in the repository");

    vms_repo_close(r);

    /* an unflushed pack is dropped on close */
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);
    CHECK_OK(vms_repo_put(r, stranger.hash, stranger.data, stranger.len, &err), err);
    vms_repo_close(r);
    CHECK(count_files(repo, "tmp") == 0);
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);
    CHECK(!has_one(r, stranger.hash));
    vms_repo_close(r);

    free(hashes);
    free_objects(objs, N_OBJECTS);
    free_objects(&stranger, 1);
    rm_rf(repo);
    free(repo);
}

static int stop_at_two(void *ctx, size_t index, const uint8_t *data, size_t len, size_t stored)
{
    ++*(int *)ctx;
    return index == 1 ? 42 : 0;
}

static void test_get_stops(void)
{
    fsp_error err;
    char *repo = new_repo("stop", &err);
    struct object objs[3] = {make_object(10, false), make_object(20, false),
                             make_object(30, false)};
    vms_repo *r;
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);
    CHECK_OK(put_all(r, objs, 3, &err), err);
    uint8_t hashes[3][FSP_SHA256_LEN];
    for (int i = 0; i < 3; i++)
        memcpy(hashes[i], objs[i].hash, FSP_SHA256_LEN);
    int calls = 0;
    CHECK(vms_repo_get(r, (const uint8_t(*)[FSP_SHA256_LEN])hashes, 3, stop_at_two, &calls, &err) ==
          42);
    CHECK(calls == 2);
    vms_repo_close(r);
    free_objects(objs, 3);
    rm_rf(repo);
    free(repo);
}

static void test_dedup(void)
{
    fsp_error err;
    char *repo = new_repo("dedup", &err);
    struct object o = make_object(50000, true);
    vms_repo *r;
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);
    CHECK_OK(vms_repo_put(r, o.hash, o.data, o.len, &err), err);
    CHECK_OK(vms_repo_put(r, o.hash, o.data, o.len, &err), err); /* pending: ignored */
    CHECK_OK(vms_repo_flush(r, &err), err);
    CHECK(query_int(repo, "SELECT COUNT(*) FROM objects") == 1);
    CHECK_OK(vms_repo_put(r, o.hash, o.data, o.len, &err), err); /* indexed: ignored */
    CHECK(count_files(repo, "tmp") == 0);
    CHECK_OK(vms_repo_flush(r, &err), err); /* nothing to flush */
    CHECK(count_files(repo, "packs") == 1);
    CHECK(query_int(repo, "SELECT COUNT(*) FROM packs") == 1);
    vms_repo_close(r);
    free_objects(&o, 1);
    rm_rf(repo);
    free(repo);
}

static void test_put_checks_hash_and_size(void)
{
    fsp_error err;
    char *repo = new_repo("puthash", &err);
    struct object o = make_object(1000, false);
    vms_repo *r;
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);
    o.hash[0] ^= 1;
    CHECK_FAILS(vms_repo_put(r, o.hash, o.data, o.len, &err), err, FSP_EK_INTERNAL,
                "does not match its hash");
    CHECK(!has_one(r, o.hash));
    CHECK_FAILS(vms_repo_put(r, o.hash, o.data, (64u << 20) + 1, &err), err, FSP_EK_USAGE, "limit");
    vms_repo_close(r);
    free_objects(&o, 1);
    rm_rf(repo);
    free(repo);
}

static void flip_byte(const char *path, long from_end)
{
    int fd = open(path, O_RDWR);
    off_t at = lseek(fd, -from_end, SEEK_END);
    uint8_t b;
    CHECK(pread(fd, &b, 1, at) == 1);
    b ^= 0x5a;
    CHECK(pwrite(fd, &b, 1, at) == 1);
    close(fd);
}

/* Damage in a zstd record or in a raw one: FSP_EK_CORRUPT naming object and pack. */
static void check_damage_detected(bool compressible)
{
    fsp_error err;
    char *repo = new_repo("corrupt", &err);
    struct object o = make_object(40000, compressible);
    vms_repo *r;
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);
    CHECK_OK(vms_repo_put(r, o.hash, o.data, o.len, &err), err);
    CHECK_OK(vms_repo_flush(r, &err), err);
    vms_repo_close(r);

    char pack[512], name[64];
    CHECK(first_pack(repo, pack, sizeof pack, name));
    flip_byte(pack, 3); /* inside the stored bytes of the only record */
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);
    char hex[65];
    fsp_hex(o.hash, FSP_SHA256_LEN, hex);
    CHECK_FAILS(get_all(r, &o, 1, &err) ? 0 : -1, err, FSP_EK_CORRUPT, hex);
    CHECK(strstr(err.msg, name) != NULL);
    CHECK(strstr(err.msg, "at offset 8 is corrupt") != NULL);
    if (!compressible)
        CHECK(strstr(err.msg, "checksum mismatch") != NULL);

    /* a truncated pack */
    CHECK(truncate(pack, 30) == 0);
    CHECK_FAILS(get_all(r, &o, 1, &err) ? 0 : -1, err, FSP_EK_CORRUPT, "truncated");
    /* a missing pack */
    unlink(pack);
    vms_repo_close(r);
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);
    CHECK_FAILS(get_all(r, &o, 1, &err) ? 0 : -1, err, FSP_EK_CORRUPT, "is missing");
    vms_repo_close(r);
    free_objects(&o, 1);
    rm_rf(repo);
    free(repo);
}

static void test_corruption_detected(void)
{
    check_damage_detected(true);
    check_damage_detected(false);
}

/* 65 incompressible MiB: the open pack commits itself at 64 MiB. */
static void test_auto_flush(void)
{
    fsp_error err;
    char *repo = new_repo("autoflush", &err);
    vms_repo *r;
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);
    struct object first = make_object(1u << 20, false);
    CHECK_OK(vms_repo_put(r, first.hash, first.data, first.len, &err), err);
    for (int i = 1; i < 65; i++) {
        struct object o = make_object(1u << 20, false);
        CHECK_OK(vms_repo_put(r, o.hash, o.data, o.len, &err), err);
        free_objects(&o, 1);
    }
    CHECK(count_files(repo, "packs") == 1);
    CHECK(query_int(repo, "SELECT COUNT(*) FROM objects") >= 63);
    CHECK_GET(r, &first, 1);
    vms_repo_close(r);
    free_objects(&first, 1);
    rm_rf(repo);
    free(repo);
}

static void test_manifests(void)
{
    fsp_error err;
    char *repo = new_repo("manifests", &err);
    vms_repo *r;
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);
    uint8_t h[FSP_SHA256_LEN];
    memset(h, 7, sizeof h);
    char *src = scratch("m.vmsm"), *copy = scratch("copy.vmsm");
    write_manifest(src, h, h, h);
    uint8_t id[FSP_SHA256_LEN], again[FSP_SHA256_LEN];
    CHECK_OK(vms_repo_put_manifest(r, src, id, &err), err);
    CHECK_OK(vms_repo_put_manifest(r, src, again, &err), err);
    CHECK(memcmp(id, again, sizeof id) == 0);
    CHECK(count_files(repo, "manifests") == 1);
    CHECK(count_files(repo, "tmp") == 0);
    CHECK_OK(vms_repo_get_manifest(r, id, copy, &err), err);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", src, copy);
    CHECK(system(cmd) == 0);

    /* a damaged manifest is refused, and the message names the caller's file */
    flip_byte(src, 5);
    CHECK_FAILS(vms_repo_put_manifest(r, src, again, &err), err, FSP_EK_CORRUPT, src);
    CHECK(count_files(repo, "manifests") == 1);
    CHECK(count_files(repo, "tmp") == 0);

    uint8_t unknown[FSP_SHA256_LEN] = {1};
    CHECK_FAILS(vms_repo_get_manifest(r, unknown, copy, &err), err, FSP_EK_CORRUPT,
                "is not in the repository");

    char *stored = NULL;
    char hex[65];
    fsp_hex(id, FSP_SHA256_LEN, hex);
    CHECK(asprintf(&stored, "%s/manifests/%s.vmsm", repo, hex) > 0);
    flip_byte(stored, 1);
    unlink(copy);
    CHECK_FAILS(vms_repo_get_manifest(r, id, copy, &err), err, FSP_EK_CORRUPT, "checksum mismatch");
    CHECK(access(copy, F_OK) != 0);
    vms_repo_close(r);
    unlink(src);
    free(stored);
    free(src);
    free(copy);
    rm_rf(repo);
    free(repo);
}

static int collect_numbers(void *ctx, const struct vms_version *v)
{
    char *out = ctx;
    char one[300];
    snprintf(one, sizeof one, "%s@%u<%u ", v->image, v->number, v->parent);
    strcat(out, one);
    return 0;
}

static void test_versions(void)
{
    fsp_error err;
    char *repo = new_repo("versions", &err);
    vms_repo *a, *b;
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &a, &err), err);
    CHECK_OK(vms_repo_open(repo, "bob", "laptop-b", NULL, &b, &err), err);
    uint8_t m1[FSP_SHA256_LEN], m2[FSP_SHA256_LEN], digest[FSP_SHA256_LEN] = {9};
    store_some_manifest(a, 10, m1);
    store_some_manifest(a, 20, m2);
    uint32_t n = 0;

    uint8_t not_stored[FSP_SHA256_LEN] = {3};
    CHECK_FAILS(vms_repo_add_version(a, "win11", 0, not_stored, digest, 1, "x", &n, &err), err,
                FSP_EK_USAGE, "put it before");
    CHECK_OK(vms_repo_add_version(a, "win11", 0, m1, digest, 123456789, "first", &n, &err), err);
    CHECK(n == 1);
    CHECK_OK(vms_repo_add_version(b, "win11", 1, m2, digest, 123456789, "second", &n, &err), err);
    CHECK(n == 2);
    CHECK_FAILS(vms_repo_add_version(a, "win11", 1, m1, digest, 1, "late", &n, &err), err,
                VMS_EK_CONFLICT, "win11: version 2 was checked in by bob@laptop-b at ");
    CHECK(strstr(err.msg, "since version 1; check out 2 first") != NULL);
    CHECK_FAILS(vms_repo_add_version(a, "win11", 0, m1, digest, 1, "again", &n, &err), err,
                VMS_EK_CONFLICT, "already exists");
    CHECK_FAILS(vms_repo_add_version(a, "win11", 5, m1, digest, 1, "future", &n, &err), err,
                VMS_EK_NOTFOUND, "has no version 5 (latest is 2)");
    CHECK_FAILS(vms_repo_add_version(a, "nope", 3, m1, digest, 1, "", &n, &err), err,
                VMS_EK_NOTFOUND, "no image named nope");
    CHECK_OK(vms_repo_add_version(a, "debian", 0, m2, digest, 42, NULL, &n, &err), err);
    CHECK(n == 1);

    struct vms_version v;
    CHECK_OK(vms_repo_version(a, "win11", 0, &v, &err), err);
    CHECK(v.number == 2 && v.parent == 1 && !strcmp(v.user, "bob") && !strcmp(v.host, "laptop-b"));
    CHECK(!strcmp(v.message, "second") && v.size == 123456789 && !memcmp(v.manifest, m2, 32));
    CHECK(!memcmp(v.digest, digest, 32) && v.created > 0 && !strcmp(v.image, "win11"));
    CHECK_OK(vms_repo_version(a, "win11", 1, &v, &err), err);
    CHECK(v.number == 1 && !strcmp(v.message, "first") && !memcmp(v.manifest, m1, 32));
    CHECK_FAILS(vms_repo_version(a, "win11", 7, &v, &err), err, VMS_EK_NOTFOUND,
                "win11 has no version 7 (latest is 2)");
    CHECK_FAILS(vms_repo_version(a, "macos", 0, &v, &err), err, VMS_EK_NOTFOUND,
                "no image named macos");
    CHECK_FAILS(vms_repo_version(a, "", 0, &v, &err), err, FSP_EK_USAGE, "image name");

    char all[512] = "";
    CHECK_OK(vms_repo_list(a, NULL, collect_numbers, all, &err), err);
    CHECK(!strcmp(all, "win11@1<0 win11@2<1 debian@1<0 "));
    char one[512] = "";
    CHECK_OK(vms_repo_list(a, "win11", collect_numbers, one, &err), err);
    CHECK(!strcmp(one, "win11@1<0 win11@2<1 "));
    CHECK_FAILS(vms_repo_list(a, "macos", collect_numbers, one, &err), err, VMS_EK_NOTFOUND,
                "no image named macos");
    vms_repo_close(a);
    vms_repo_close(b);
    rm_rf(repo);
    free(repo);
}

static void test_leases(void)
{
    fsp_error err;
    char *repo = new_repo("leases", &err);
    vms_repo *a, *b;
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &a, &err), err);
    CHECK_OK(vms_repo_open(repo, "bob", "laptop-b", NULL, &b, &err), err);
    uint8_t m[FSP_SHA256_LEN], digest[FSP_SHA256_LEN] = {0};
    store_some_manifest(a, 30, m);
    uint32_t n;
    CHECK_OK(vms_repo_add_version(a, "win11", 0, m, digest, 1, "", &n, &err), err);
    CHECK_OK(vms_repo_add_version(a, "win11", 1, m, digest, 1, "", &n, &err), err);

    struct vms_lease l;
    bool found = true;
    CHECK_OK(vms_repo_lease_get(a, "win11", &l, &found, &err), err);
    CHECK(!found);
    CHECK_FAILS(vms_repo_lease_take(a, "macos", 1, false, &err), err, VMS_EK_NOTFOUND,
                "no image named");

    /* a version that is not there: a lease of it would fail check for good */
    CHECK_FAILS(vms_repo_lease_take(a, "win11", 3, false, &err), err, VMS_EK_NOTFOUND,
                "no version win11@3");
    CHECK_OK(vms_repo_lease_get(a, "win11", &l, &found, &err), err);
    CHECK(!found);
    CHECK_OK(vms_repo_lease_take(a, "win11", 1, false, &err), err);
    CHECK_OK(vms_repo_lease_take(a, "win11", 2, false, &err), err); /* same host: updated */
    CHECK_OK(vms_repo_lease_get(b, "win11", &l, &found, &err), err);
    CHECK(found && l.version == 2 && !strcmp(l.user, "alice") && !strcmp(l.host, "laptop-a"));
    CHECK(l.since > 0 && !strcmp(l.image, "win11"));

    CHECK_FAILS(vms_repo_lease_take(b, "win11", 1, false, &err), err, VMS_EK_CONFLICT,
                "win11 is checked out by alice@laptop-a since ");
    CHECK(strstr(err.msg, "(version 2)") != NULL && !strstr(err.msg, "--")); /* the client's hint */
    CHECK_FAILS(vms_repo_lease_release(b, "win11", &err), err, VMS_EK_CONFLICT, "alice@laptop-a");

    /* the holder is a user and a host: naming alice's host is not enough */
    vms_repo *other;
    CHECK_OK(vms_repo_open(repo, "mallory", "laptop-a", NULL, &other, &err), err);
    CHECK_FAILS(vms_repo_lease_take(other, "win11", 1, false, &err), err, VMS_EK_CONFLICT,
                "win11 is checked out by alice@laptop-a since ");
    CHECK_FAILS(vms_repo_lease_release(other, "win11", &err), err, VMS_EK_CONFLICT,
                "not by mallory@laptop-a");
    vms_repo_close(other);
    CHECK_OK(vms_repo_lease_get(b, "win11", &l, &found, &err), err);
    CHECK(found && !strcmp(l.user, "alice") && l.version == 2);

    CHECK_OK(vms_repo_lease_take(b, "win11", 1, true, &err), err);
    CHECK(query_int(repo, "SELECT COUNT(*) FROM audit WHERE action = 'steal' AND user = 'bob' "
                          "AND host = 'laptop-b' AND image = 'win11' AND version = 1 "
                          "AND detail LIKE '%alice@laptop-a%version 2%'") == 1);
    CHECK_OK(vms_repo_lease_get(a, "win11", &l, &found, &err), err);
    CHECK(found && !strcmp(l.host, "laptop-b") && l.version == 1);
    CHECK_FAILS(vms_repo_lease_release(a, "win11", &err), err, VMS_EK_CONFLICT, "bob@laptop-b");
    CHECK_OK(vms_repo_lease_release(b, "win11", &err), err);
    CHECK_OK(vms_repo_lease_get(a, "win11", &l, &found, &err), err);
    CHECK(!found);
    CHECK_OK(vms_repo_lease_release(b, "win11", &err), err); /* nothing held: fine */

    CHECK_OK(vms_repo_audit(a, "checkin", "win11", 1, "a note", &err), err);
    CHECK(query_int(repo, "SELECT COUNT(*) FROM audit WHERE action = 'checkin' AND user = 'alice' "
                          "AND detail = 'a note' AND at > 0") == 1);
    vms_repo_close(a);
    vms_repo_close(b);
    rm_rf(repo);
    free(repo);
}

static void touch(const char *repo, const char *rel, const char *content)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", repo, rel);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(content, f);
        fclose(f);
    }
}

static void test_gc(void)
{
    fsp_error err;
    char *repo = new_repo("gc", &err);
    vms_repo *r;
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);
    /* live: file (5000 bytes), piece1, piece2; garbage: g1, g2 beside them, g3 alone */
    struct object file = make_object(5000, true), p1 = make_object(4096, false),
                  p2 = make_object(4096, true), g1 = make_object(30000, false),
                  g2 = make_object(100, true), g3 = make_object(2000, false);
    struct object mixed[] = {g1, file, g2, p1};
    CHECK_OK(put_all(r, mixed, 4, &err), err);
    CHECK_OK(vms_repo_flush(r, &err), err);
    CHECK_OK(vms_repo_put(r, g3.hash, g3.data, g3.len, &err), err);
    CHECK_OK(vms_repo_flush(r, &err), err);
    CHECK_OK(vms_repo_put(r, p2.hash, p2.data, p2.len, &err), err);
    CHECK_OK(vms_repo_flush(r, &err), err);
    CHECK(count_files(repo, "packs") == 3);

    char *mpath = scratch("gc.vmsm");
    write_manifest(mpath, file.hash, p1.hash, p2.hash);
    uint8_t id[FSP_SHA256_LEN], unused[FSP_SHA256_LEN], digest[FSP_SHA256_LEN] = {0};
    CHECK_OK(vms_repo_put_manifest(r, mpath, id, &err), err);
    uint32_t n;
    CHECK_OK(vms_repo_add_version(r, "img", 0, id, digest, IMAGE_SIZE, "", &n, &err), err);
    store_some_manifest(r, 99, unused); /* put, never used by a version */
    CHECK(count_files(repo, "manifests") == 2);
    /* a crash leftover: a pack no row names, and a stale temporary file */
    touch(repo, "packs/pack-0123456789abcdef0123456789abcdef.pack", "VMSPACK1 leftover");
    touch(repo, "tmp/pack-abcdef", "VMSPACK1 half");
    struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, NULL);

    /* refused: a second handle in this process, or objects pending */
    vms_repo *other;
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &other, &err), err);
    struct vms_gc_stats s;
    CHECK_FAILS(vms_repo_gc(r, &s, &err), err, FSP_EK_USAGE, "only open handle");
    vms_repo_close(other);
    CHECK_OK(vms_repo_put(r, g3.hash, g3.data, g3.len, &err), err); /* indexed: nothing pending */
    struct object pending = make_object(10, false);
    CHECK_OK(vms_repo_put(r, pending.hash, pending.data, pending.len, &err), err);
    CHECK_FAILS(vms_repo_gc(r, &s, &err), err, FSP_EK_USAGE, "flush");
    vms_repo_close(r);
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);

    CHECK_OK(vms_repo_gc(r, &s, &err), err);
    CHECK(s.objects_before == 6);
    CHECK(s.objects_kept == 3);
    CHECK(s.objects_dropped == 3);
    CHECK(s.packs_before == 4);
    CHECK(s.packs_kept == 1);
    CHECK(s.packs_rewritten == 1);
    CHECK(s.packs_removed == 2); /* g3's pack and the leftover */
    CHECK(s.bytes_freed > 30000);
    CHECK(s.bytes_kept + s.bytes_freed == s.bytes_before);
    CHECK(count_files(repo, "packs") == 2);
    CHECK(count_files(repo, "tmp") == 0);
    CHECK(count_files(repo, "manifests") == 1);
    struct object live[] = {file, p1, p2};
    CHECK_GET(r, live, 3);
    CHECK(!has_one(r, g1.hash) && !has_one(r, g2.hash) && !has_one(r, g3.hash));
    CHECK(query_int(repo, "SELECT COUNT(*) FROM objects") == 3);

    /* nothing left to do; and the repository still works */
    CHECK_OK(vms_repo_gc(r, &s, &err), err);
    CHECK(s.objects_kept == 3 && s.objects_dropped == 0 && s.packs_rewritten == 0 &&
          s.packs_removed == 0);
    CHECK_OK(vms_repo_put(r, g1.hash, g1.data, g1.len, &err), err);
    CHECK_OK(vms_repo_flush(r, &err), err);
    CHECK_GET(r, &g1, 1);
    vms_repo_close(r);

    /* a manifest gc cannot read stops it before anything is deleted */
    char hex[65], *stored;
    fsp_hex(id, FSP_SHA256_LEN, hex);
    CHECK(asprintf(&stored, "%s/manifests/%s.vmsm", repo, hex) > 0);
    unlink(stored);
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);
    CHECK(vms_repo_gc(r, &s, &err) < 0);
    CHECK(strstr(err.msg, hex) != NULL);
    CHECK_GET(r, live, 3);
    CHECK_GET(r, &g1, 1);
    vms_repo_close(r);

    free(stored);
    unlink(mpath);
    free(mpath);
    struct object all[] = {file, p1, p2, g1, g2, g3, pending};
    free_objects(all, 7);
    rm_rf(repo);
    free(repo);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* A handle that stays open must not hold gc up for good: gc gives up after
 * its wait, names the process, and removes nothing. */
static void test_gc_gives_up(void)
{
    fsp_error err;
    char *repo = new_repo("gcgiveup", &err);
    int ready[2], done[2];
    CHECK(pipe(ready) == 0 && pipe(done) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        vms_repo *r;
        char c;
        if (vms_repo_open(repo, "bob", "laptop-b", NULL, &r, &err))
            _exit(1);
        CHECK(write(ready[1], "x", 1) == 1);
        CHECK(read(done[0], &c, 1) == 1); /* until the parent has seen gc give up */
        vms_repo_close(r);
        _exit(0);
    }
    char c, who[64];
    CHECK(read(ready[0], &c, 1) == 1);
    vms_repo *r;
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);
    vms_repo_gc_wait(r, 1);
    double start = now();
    struct vms_gc_stats s;
    snprintf(who, sizeof who, "still open by pid %ld (", (long)pid);
    CHECK_FAILS(vms_repo_gc(r, &s, &err), err, VMS_EK_CONFLICT, "gc waited 1 s");
    CHECK(strstr(err.msg, who) && strstr(err.msg, "nothing was removed"));
    CHECK(now() - start >= 0.9 && now() - start < 5);
    CHECK(write(done[1], "x", 1) == 1);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_OK(vms_repo_gc(r, &s, &err), err); /* alone now */
    vms_repo_close(r);
    close(ready[0]);
    close(ready[1]);
    close(done[0]);
    close(done[1]);
    rm_rf(repo);
    free(repo);
}

/* gc waits for another process's handle to close. */
static void test_gc_waits_for_writers(void)
{
    fsp_error err;
    char *repo = new_repo("gcwait", &err);
    int ready[2];
    CHECK(pipe(ready) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        vms_repo *r;
        if (vms_repo_open(repo, "bob", "laptop-b", NULL, &r, &err))
            _exit(1);
        CHECK(write(ready[1], "x", 1) == 1);
        struct timespec t = {0, 600 * 1000 * 1000};
        nanosleep(&t, NULL);
        vms_repo_close(r);
        _exit(0);
    }
    char c;
    CHECK(read(ready[0], &c, 1) == 1);
    vms_repo *r;
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);
    double start = now();
    struct vms_gc_stats s;
    CHECK_OK(vms_repo_gc(r, &s, &err), err);
    CHECK(now() - start > 0.3);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    vms_repo_close(r);
    close(ready[0]);
    close(ready[1]);
    rm_rf(repo);
    free(repo);
}

/* ---- two processes ---- */

#define RACE_SHARED 100
#define RACE_OWN 100
#define RACE_ROUNDS 20

enum { RACE_WON = 0, RACE_LOST = 10, RACE_BROKEN = 20 };

/* One side of the race: store objects, wait for the start, race for version 1
 * of "race", then keep checking in on top of the latest version. */
static int racer(const char *repo, const char *host, int start_fd, const struct object *shared,
                 const struct object *own, const char *manifest)
{
    fsp_error err;
    vms_repo *r;
    uint8_t id[FSP_SHA256_LEN], digest[FSP_SHA256_LEN] = {0};
    if (vms_repo_open(repo, "user", host, NULL, &r, &err) || put_all(r, shared, RACE_SHARED, &err) ||
        put_all(r, own, RACE_OWN, &err) || vms_repo_flush(r, &err) ||
        vms_repo_put_manifest(r, manifest, id, &err)) {
        fprintf(stderr, "%s: %s\n", host, err.msg);
        return RACE_BROKEN;
    }
    char c;
    if (read(start_fd, &c, 1) != 0) /* EOF is the start signal */
        return RACE_BROKEN;
    uint32_t n;
    int rc = vms_repo_add_version(r, "race", 0, id, digest, 1, host, &n, &err);
    int result = rc == 0 && n == 1                       ? RACE_WON
                 : rc < 0 && err.kind == VMS_EK_CONFLICT ? RACE_LOST
                                                         : RACE_BROKEN;
    for (int i = 0; i < RACE_ROUNDS && result != RACE_BROKEN; i++) {
        struct vms_version v;
        if (vms_repo_version(r, "race", 0, &v, &err))
            result = RACE_BROKEN;
        else if (vms_repo_add_version(r, "race", v.number, id, digest, 1, host, &n, &err) &&
                 err.kind != VMS_EK_CONFLICT)
            result = RACE_BROKEN;
    }
    if (result == RACE_BROKEN)
        fprintf(stderr, "%s: %s\n", host, err.msg);
    vms_repo_close(r);
    return result;
}

static int check_chain(void *ctx, const struct vms_version *v)
{
    uint32_t *expect = ctx;
    if (v->number != *expect + 1 || v->parent != *expect)
        return -1;
    *expect = v->number;
    return 0;
}

static void test_two_processes(void)
{
    fsp_error err;
    char *repo = new_repo("race", &err);
    struct object shared[RACE_SHARED], own[2][RACE_OWN];
    make_mixed_objects(shared, RACE_SHARED);
    make_mixed_objects(own[0], RACE_OWN);
    make_mixed_objects(own[1], RACE_OWN);
    char *manifest = scratch("race.vmsm");
    write_manifest(manifest, shared[5].hash, shared[6].hash, shared[7].hash);

    int start[2];
    CHECK(pipe(start) == 0);
    fflush(NULL);
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            close(start[1]);
            _exit(racer(repo, i ? "host-b" : "host-a", start[0], shared, own[i], manifest));
        }
    }
    close(start[0]);
    struct timespec t = {0, 300 * 1000 * 1000}; /* both are storing their objects */
    nanosleep(&t, NULL);
    close(start[1]);
    int results[2];
    for (int i = 0; i < 2; i++) {
        int status;
        CHECK(waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status));
        results[i] = WEXITSTATUS(status);
    }
    CHECK((results[0] == RACE_WON && results[1] == RACE_LOST) ||
          (results[0] == RACE_LOST && results[1] == RACE_WON));

    vms_repo *r;
    CHECK_OK(vms_repo_open(repo, "alice", "laptop-a", NULL, &r, &err), err);
    uint32_t last = 0;
    CHECK_OK(vms_repo_list(r, "race", check_chain, &last, &err), err);
    CHECK(last >= 1 + RACE_ROUNDS && last <= 1 + 2 * RACE_ROUNDS);
    CHECK_GET(r, shared, RACE_SHARED);
    CHECK_GET(r, own[0], RACE_OWN);
    CHECK_GET(r, own[1], RACE_OWN);
    /* both wrote the shared objects; the index keeps one copy of each */
    CHECK(query_int(repo, "SELECT COUNT(*) FROM objects") <= RACE_SHARED + 2 * RACE_OWN);
    struct vms_gc_stats s;
    CHECK_OK(vms_repo_gc(r, &s, &err), err);
    CHECK(s.objects_kept == 3);
    CHECK_GET(r, &shared[5], 3);
    vms_repo_close(r);

    free_objects(shared, RACE_SHARED);
    free_objects(own[0], RACE_OWN);
    free_objects(own[1], RACE_OWN);
    unlink(manifest);
    free(manifest);
    rm_rf(repo);
    free(repo);
}

/* Runs a test and says how long it took. */
#define TIMED(test)                                                                                \
    do {                                                                                           \
        double t0_ = now();                                                                        \
        RUN(test);                                                                                 \
        if (getenv("VMSYNC_TEST_TIMES"))                                                           \
            printf("  %.2f s\n", now() - t0_);                                                     \
    } while (0)

int main(void)
{
    if (scratch_begin("repo"))
        return 1;
    TIMED(test_init_open_refuse);
    TIMED(test_objects_round_trip);
    TIMED(test_get_stops);
    TIMED(test_dedup);
    TIMED(test_put_checks_hash_and_size);
    TIMED(test_corruption_detected);
    TIMED(test_auto_flush);
    TIMED(test_manifests);
    TIMED(test_versions);
    TIMED(test_leases);
    TIMED(test_gc);
    TIMED(test_gc_waits_for_writers);
    TIMED(test_gc_gives_up);
    TIMED(test_two_processes);
    scratch_end();
    return check_failures ? 1 : 0;
}
