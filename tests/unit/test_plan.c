/* The checkout planner, through the public API only: real ext4 images made
 * with mke2fs -d from trees written here, a real local repository, and
 * plans checked against what their run then does.  Every test works in its
 * own scratch directory under /tmp. */
#include "check.h"
#include "vmsync.h"

#include <errno.h>
#include <limits.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK_OK(call, err)                                                                        \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        CHECK(rc_ == 0);                                                                           \
        if (rc_)                                                                                   \
            fprintf(stderr, "  %s\n", (err).msg);                                                  \
    } while (0)

static bool same_files(const char *a, const char *b)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

/* ---- trees and images ------------------------------------------------------ */

/* Deterministic incompressible bytes: the same SEED gives the same content. */
static uint8_t *make_data(size_t len, uint64_t seed)
{
    uint8_t *d = malloc(len ? len : 1);
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        d[i] = (uint8_t)x;
    }
    return d;
}

static void sha256(const void *data, size_t len, uint8_t out[FSP_SHA256_LEN])
{
    unsigned n;
    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

/* Writes DIR/NAME (making DIR/SUB directories on the way). */
static void put_file(const char *dir, const char *name, const uint8_t *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    for (char *slash = strchr(path + strlen(dir) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = 0;
        mkdir(path, 0755);
        *slash = '/';
    }
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, len, f) == len);
    if (f)
        fclose(f);
}

static void put_random(const char *dir, const char *name, size_t len, uint64_t seed)
{
    uint8_t *d = make_data(len, seed);
    put_file(dir, name, d, len);
    free(d);
}

/* A 64 MiB ext4 image of TREE, returned in a new scratch path. */
static char *make_image(const char *tree)
{
    char *img = scratch("disk.ext4");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mke2fs -q -F -t ext4 -b 4096 -d '%s' '%s' 64M >/dev/null 2>&1", tree, img);
    CHECK(system(cmd) == 0);
    return img;
}

static char *new_tree(void)
{
    char *t = scratch("tree");
    CHECK(mkdir(t, 0755) == 0);
    return t;
}

/* ---- a repository ---------------------------------------------------------- */

struct repo {
    char *dir, *cache;
    struct vms_client_opts o;
    vms_client *c;
};

static void repo_new(struct repo *r)
{
    fsp_error err = {0};
    r->dir = scratch("repo");
    r->cache = scratch("cache");
    r->o = (struct vms_client_opts){.cache_dir = r->cache, .user = "tester", .host = "planner"};
    CHECK_OK(vms_init_repo(r->dir, &err), err);
    CHECK_OK(vms_client_open(r->dir, &r->o, &r->c, &err), err);
}

static void repo_free(struct repo *r)
{
    vms_client_close(r->c);
    free(r->dir);
    free(r->cache);
}

static void import(struct repo *r, const char *image, const char *name)
{
    struct vms_import_opts o = {.image = image, .name = name, .message = "test"};
    struct vms_stats st;
    fsp_error err = {0};
    CHECK_OK(vms_import(r->c, &o, &st, &err), err);
}

static vms_plan *plan_with(struct repo *r, const char *name, const char *out, const char *seed)
{
    const char *seeds[] = {seed};
    struct vms_checkout_opts o = {.name = name, .out = out, .seeds = seeds, .n_seeds = seed ? 1 : 0};
    vms_plan *p = NULL;
    fsp_error err = {0};
    CHECK_OK(vms_checkout_plan(r->c, &o, &p, &err), err);
    return p;
}

/* ---- the objects a plan fetches -------------------------------------------- */

struct fetched {
    uint64_t n, raw, stored;
    uint64_t over_piece;           /* objects larger than a metadata piece */
    uint64_t over_piece_bytes;
    const uint8_t *wanted;         /* a hash to look for, or NULL */
    bool found;
};

static int count_object(void *ctx, const struct vms_plan_object *obj)
{
    struct fetched *f = ctx;
    f->n++;
    f->raw += obj->length;
    f->stored += obj->stored;
    if (obj->length > FSP_PIECE_SIZE) {
        f->over_piece++;
        f->over_piece_bytes += obj->length;
    }
    if (f->wanted && !memcmp(obj->hash, f->wanted, FSP_SHA256_LEN))
        f->found = true;
    return 0;
}

static struct fetched walk(const vms_plan *p, const uint8_t *wanted)
{
    struct fetched f = {.wanted = wanted};
    CHECK(vms_plan_objects(p, count_object, &f) == 0);
    const struct vms_plan_figures *fig = vms_plan_figures(p);
    CHECK(f.n == fig->objects_to_fetch);
    CHECK(f.raw == fig->bytes_to_fetch_raw);
    CHECK(f.stored == fig->bytes_to_fetch_stored);
    return f;
}

static int stop_at_first(void *ctx, const struct vms_plan_object *obj)
{
    ++*(int *)ctx;
    return 42;
}

/* ---- the tests ----------------------------------------------------------------- */

/* A file the seed holds at another path, under another name, still comes
 * from the seed; the files the seed lacks are fetched. */
static void test_seeds_matched_by_content(void)
{
    struct repo r;
    repo_new(&r);
    char *t = new_tree(), *s = new_tree();
    uint8_t *moved = make_data(300000, 1), moved_hash[FSP_SHA256_LEN];
    sha256(moved, 300000, moved_hash);
    put_file(t, "home/user/report.odt", moved, 300000);
    put_random(t, "etc/only-in-target", 120000, 2);
    uint8_t *only = make_data(120000, 2), only_hash[FSP_SHA256_LEN];
    sha256(only, 120000, only_hash);
    put_file(s, "archive/2026/old-report-copy", moved, 300000);
    put_random(s, "unrelated", 50000, 3);
    char *timg = make_image(t), *simg = make_image(s);
    import(&r, timg, "t");

    vms_plan *alone = plan_with(&r, "t", NULL, NULL);
    vms_plan *seeded = plan_with(&r, "t", NULL, simg);
    if (alone && seeded) {
        const struct vms_plan_figures *a = vms_plan_figures(alone), *b = vms_plan_figures(seeded);
        CHECK(a->bytes_from_seeds == 0 && a->objects_from_seeds == 0);
        CHECK(walk(alone, moved_hash).found);
        CHECK(!walk(seeded, moved_hash).found);
        CHECK(walk(seeded, only_hash).found);
        CHECK(b->bytes_from_seeds >= 300000);
        CHECK(b->bytes_to_fetch_raw + 300000 <= a->bytes_to_fetch_raw);
        /* the same objects, supplied either way */
        CHECK(a->bytes_to_fetch_raw == b->bytes_to_fetch_raw + b->bytes_from_seeds);
        CHECK(a->objects_to_fetch == b->objects_to_fetch + b->objects_from_seeds);
        CHECK(a->version == 1 && a->image_size == 64u << 20);
        CHECK(a->bytes_zero > 0 && a->bytes_zero < a->image_size);
    }
    vms_plan_free(alone);
    vms_plan_free(seeded);
    free(moved);
    free(only);
    free(t), free(s), free(timg), free(simg);
    repo_free(&r);
}

/* Hashes of objects larger than a metadata piece (file contents and chunks). */
struct hashes {
    uint8_t (*h)[FSP_SHA256_LEN];
    size_t n, cap;
    uint64_t bytes;
};

static bool holds(const struct hashes *l, const uint8_t *hash)
{
    for (size_t i = 0; i < l->n; i++)
        if (!memcmp(l->h[i], hash, FSP_SHA256_LEN))
            return true;
    return false;
}

static int add_hash(void *ctx, const uint8_t hash[FSP_SHA256_LEN], uint64_t len)
{
    struct hashes *l = ctx;
    if (len <= FSP_PIECE_SIZE || holds(l, hash))
        return 0;
    if (l->n == l->cap && !(l->h = realloc(l->h, (l->cap = 2 * l->cap + 16) * FSP_SHA256_LEN)))
        abort();
    memcpy(l->h[l->n++], hash, FSP_SHA256_LEN);
    l->bytes += len;
    return 0;
}

static int add_fetched(void *ctx, const struct vms_plan_object *obj)
{
    return add_hash(ctx, obj->hash, obj->length);
}

static void version_objects(struct repo *r, const char *name, uint32_t version, struct hashes *l)
{
    char *m = scratch("v.vmsm");
    fsp_error err = {0};
    CHECK_OK(vms_fetch_manifest(r->c, name, version, m, &err), err);
    CHECK_OK(vms_manifest_objects(m, add_hash, l, &err), err);
    free(m);
}

/* A large file changed in one place: the seed holding the old version
 * supplies every chunk but those the change made new, and those exactly are
 * fetched (what the manifests of the two versions say). */
static void test_only_the_changed_chunk_is_fetched(void)
{
    struct repo r;
    repo_new(&r);
    const size_t size = 8u << 20;
    char *t1 = new_tree(), *t2 = new_tree();
    uint8_t *data = make_data(size, 7);
    put_file(t1, "var/lib/big.db", data, size);
    memset(data + size / 2, 0xa5, 4096);
    put_file(t2, "var/lib/big.db", data, size);
    free(data);
    char *v1 = make_image(t1), *v2 = make_image(t2);
    import(&r, v1, "db");
    import(&r, v2, "db");

    struct hashes old = {0}, new = {0}, fetched = {0}, changed = {0};
    version_objects(&r, "db", 1, &old);
    version_objects(&r, "db", 2, &new);
    for (size_t i = 0; i < new.n; i++)
        if (!holds(&old, new.h[i]))
            add_hash(&changed, new.h[i], FSP_PIECE_SIZE + 1);
    vms_plan *seeded = plan_with(&r, "db", NULL, v1);
    if (seeded) {
        CHECK(vms_plan_figures(seeded)->version == 2);
        CHECK(vms_plan_objects(seeded, add_fetched, &fetched) == 0);
        CHECK(changed.n >= 1 && fetched.n == changed.n);
        for (size_t i = 0; i < changed.n; i++)
            CHECK(holds(&fetched, changed.h[i]));
        CHECK(fetched.bytes < size / 8);
        CHECK(vms_plan_figures(seeded)->bytes_from_seeds >= size - fetched.bytes);
    }
    vms_plan_free(seeded);
    free(old.h), free(new.h), free(fetched.h), free(changed.h);
    free(t1), free(t2), free(v1), free(v2);
    repo_free(&r);
}

/* Metadata blocks (the layout's raw runs) are planned as 4 KiB pieces: a
 * seed made from the same tree by another mke2fs run supplies every file,
 * and only pieces of metadata are fetched; the image itself as its own seed
 * supplies everything. */
static void test_metadata_blocks_are_pieces(void)
{
    struct repo r;
    repo_new(&r);
    char *t = new_tree();
    for (int i = 0; i < 12; i++) {
        char name[64];
        snprintf(name, sizeof name, "data/file-%02d", i);
        put_random(t, name, 9000 + 7000 * (size_t)i, 100 + (uint64_t)i);
    }
    char *img = make_image(t), *twin = make_image(t);
    import(&r, img, "meta");

    vms_plan *alone = plan_with(&r, "meta", NULL, NULL);
    vms_plan *by_twin = plan_with(&r, "meta", NULL, twin);
    vms_plan *by_self = plan_with(&r, "meta", NULL, img);
    if (alone && by_twin && by_self) {
        struct fetched a = walk(alone, NULL), b = walk(by_twin, NULL);
        CHECK(a.n > a.over_piece); /* metadata pieces are among the objects */
        CHECK(a.over_piece == 12);
        CHECK(b.over_piece == 0);  /* every file from the twin ... */
        CHECK(b.n > 0);            /* ... but not its superblock and inode tables */
        CHECK(vms_plan_figures(by_twin)->bytes_from_seeds >= 12 * 9000);
        CHECK(vms_plan_figures(by_self)->objects_to_fetch == 0);
        CHECK(vms_plan_figures(by_self)->objects_from_seeds == a.n);
        CHECK(vms_plan_figures(by_self)->bytes_from_seeds == a.raw);
    }
    vms_plan_free(alone);
    vms_plan_free(by_twin);
    vms_plan_free(by_self);
    free(t), free(img), free(twin);
    repo_free(&r);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Whether this process holds PATH open. */
static bool is_open(const char *path)
{
    char real[PATH_MAX], link[64], target[PATH_MAX];
    bool found = false;
    if (!realpath(path, real))
        return false;
    for (int fd = 0; fd < 1024 && !found; fd++) {
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof target - 1);
        found = n > 0 && (target[n] = 0, !strcmp(target, real));
    }
    return found;
}

static void check_stats_are_figures(const struct vms_stats *st, const struct vms_plan_figures *f)
{
    CHECK(st->version == f->version);
    CHECK(st->image_size == f->image_size);
    CHECK(st->bytes_from_seeds == f->bytes_from_seeds);
    CHECK(st->objects_from_seeds == f->objects_from_seeds);
    CHECK(st->bytes_fetched_raw == f->bytes_to_fetch_raw);
    CHECK(st->bytes_fetched_compressed == f->bytes_to_fetch_stored);
    CHECK(st->objects_fetched == f->objects_to_fetch);
    CHECK(st->bytes_zero == f->bytes_zero);
    CHECK(st->bytes_resumed == f->bytes_resumed);
    CHECK(!memcmp(st->canonical_digest, f->canonical_digest, FSP_SHA256_LEN));
}

/* A plan writes nothing; its run moves what it said, and the image equals
 * an export of the version. */
static void test_plan_then_run(void)
{
    struct repo r;
    repo_new(&r);
    char *t = new_tree(), *s = new_tree();
    put_random(t, "shared/a", 200000, 11);
    put_random(t, "shared/b", 2u << 20, 12);
    put_random(t, "mine/c", 70000, 13);
    put_random(s, "elsewhere/a", 200000, 11);
    put_random(s, "elsewhere/b", 2u << 20, 12);
    char *timg = make_image(t), *simg = make_image(s);
    import(&r, timg, "vm");
    char *out = scratch("out.img"), *exported = scratch("export.img");
    char part[600];
    snprintf(part, sizeof part, "%s.vmsync-part", out);

    vms_plan *p = plan_with(&r, "vm", out, simg);
    CHECK(p != NULL);
    if (!p)
        goto done;
    const struct vms_plan_figures *f = vms_plan_figures(p);
    CHECK(!exists(out) && !exists(part));
    CHECK(!f->in_place && f->bytes_from_seeds > 0 && f->objects_to_fetch > 0);
    CHECK(vms_plan_seconds(p, 0) == 0);
    CHECK(vms_plan_seconds(p, 1000) == f->bytes_to_fetch_stored / 1000.0);
    int calls = 0;
    CHECK(vms_plan_objects(p, stop_at_first, &calls) == 42 && calls == 1);

    struct vms_stats st;
    fsp_error err = {0};
    CHECK_OK(vms_checkout_run(r.c, p, &st, &err), err);
    check_stats_are_figures(&st, f);
    CHECK(exists(out) && !exists(part));
    CHECK(!is_open(simg)); /* the plan lives on, its seeds closed */

    struct vms_checkout_opts eo = {.name = "vm", .out = exported, .export_only = true};
    struct vms_stats est;
    CHECK_OK(vms_checkout(r.c, &eo, &est, &err), err);
    CHECK(est.bytes_from_seeds == 0);
    CHECK(same_files(out, exported));

    /* run again: OUT holds the version now, and nothing moves */
    CHECK_OK(vms_checkout_run(r.c, p, &st, &err), err);
    CHECK(st.in_place && st.bytes_fetched_raw == 0 && st.bytes_from_seeds == 0);

    /* a new plan knows OUT holds it */
    vms_plan *again = plan_with(&r, "vm", out, simg);
    CHECK(again && vms_plan_figures(again)->in_place);
    CHECK(again && vms_plan_figures(again)->objects_to_fetch == 0);
    vms_plan_free(again);
done:
    vms_plan_free(p);
    free(t), free(s), free(timg), free(simg), free(out), free(exported);
    repo_free(&r);
}

/* Cancels a run once it has fetched AFTER objects. */
struct canceller {
    int fetched, after;
};

static int cancel_after(void *ctx, const struct vms_event *ev)
{
    struct canceller *k = ctx;
    return ev->phase == VMS_PHASE_FETCH && ++k->fetched >= k->after;
}

/* A run stopped half-way keeps what it wrote: a new plan counts it as
 * resumed and fetches only the rest, and the stopped plan itself, run
 * again, resumes too. */
static void test_an_interrupted_run_resumes(void)
{
    struct repo r;
    repo_new(&r);
    char *t = new_tree();
    for (int i = 0; i < 20; i++) {
        char name[64];
        snprintf(name, sizeof name, "f%02d", i);
        put_random(t, name, 30000 + 1000 * (size_t)i, 300 + (uint64_t)i);
    }
    char *img = make_image(t), *out = scratch("resumed.img"), *exported = scratch("whole.img");
    import(&r, img, "r");
    struct canceller k = {0, 10};
    struct vms_client_opts stopping_opts = r.o;
    stopping_opts.event = cancel_after;
    stopping_opts.ctx = &k;
    vms_client *stopping = NULL;
    fsp_error open_err = {0};
    CHECK_OK(vms_client_open(r.dir, &stopping_opts, &stopping, &open_err), open_err);

    vms_plan *first = plan_with(&r, "r", out, NULL), *second = NULL;
    struct vms_stats st;
    fsp_error err = {0};
    CHECK(first && vms_checkout_run(stopping, first, &st, &err) == -ECANCELED);
    vms_client_close(stopping);
    CHECK(err.kind == FSP_EK_CANCELLED && !exists(out));
    second = plan_with(&r, "r", out, NULL);
    if (first && second) {
        const struct vms_plan_figures *a = vms_plan_figures(first), *b = vms_plan_figures(second);
        CHECK(a->bytes_resumed == 0 && b->bytes_resumed > 0);
        CHECK(b->objects_to_fetch + 10 == a->objects_to_fetch);
        CHECK(b->bytes_to_fetch_raw + b->bytes_resumed == a->bytes_to_fetch_raw);
        CHECK(walk(second, NULL).n == b->objects_to_fetch);
        CHECK_OK(vms_checkout_run(r.c, first, &st, &err), err);
        CHECK(st.bytes_resumed == b->bytes_resumed && st.objects_fetched == b->objects_to_fetch);
    }
    struct vms_checkout_opts eo = {.name = "r", .out = exported, .export_only = true};
    CHECK_OK(vms_checkout(r.c, &eo, &st, &err), err);
    CHECK(same_files(out, exported));
    vms_plan_free(first);
    vms_plan_free(second);
    free(t), free(img), free(out), free(exported);
    repo_free(&r);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(text, f) >= 0);
    if (f)
        fclose(f);
}

static bool holds_text(const char *path, const char *text)
{
    char buf[256] = {0};
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    return n == strlen(text) && !memcmp(buf, text, n);
}

/* OUT changed between the plan and its run is judged again: a file the
 * user put there is not replaced, and an OUT that held the version when
 * planned but no longer does asks for a new plan. */
static void test_out_changed_since_the_plan(void)
{
    struct repo r;
    repo_new(&r);
    char *t = new_tree();
    put_random(t, "f", 40000, 31);
    char *img = make_image(t), *out = scratch("o.img");
    import(&r, img, "g");
    struct vms_stats st;
    fsp_error err = {0};

    vms_plan *p = plan_with(&r, "g", out, NULL);
    write_text(out, "the user's work\n");
    CHECK(p && vms_checkout_run(r.c, p, &st, &err) == -EEXIST && err.kind == VMS_EK_CONFLICT);
    CHECK(holds_text(out, "the user's work\n"));
    CHECK(unlink(out) == 0);
    if (p)
        CHECK_OK(vms_checkout_run(r.c, p, &st, &err), err);
    vms_plan_free(p);

    p = plan_with(&r, "g", out, NULL);
    CHECK(p && vms_plan_figures(p)->in_place);
    CHECK(unlink(out) == 0);
    memset(&err, 0, sizeof err);
    CHECK(p && vms_checkout_run(r.c, p, &st, &err) < 0 && err.kind == VMS_EK_CONFLICT);
    CHECK(strstr(err.msg, "plan again") != NULL);
    CHECK(!exists(out));
    vms_plan_free(p);
    free(t), free(img), free(out);
    repo_free(&r);
}

/* The plan copies its options: the caller's strings may go at once. */
static void test_plan_keeps_its_own_options(void)
{
    struct repo r;
    repo_new(&r);
    char *t = new_tree();
    put_random(t, "f", 50000, 21);
    char *img = make_image(t);
    import(&r, img, "copyme");
    char *name = strdup("copyme"), *out = scratch("o.img"), *seed = strdup(img);
    const char *seeds[] = {seed};
    struct vms_checkout_opts o = {.name = name, .out = out, .seeds = seeds, .n_seeds = 1};
    vms_plan *p = NULL;
    fsp_error err = {0};
    CHECK_OK(vms_checkout_plan(r.c, &o, &p, &err), err);
    char *out_kept = strdup(out);
    memset(name, 'x', strlen(name));
    memset(out, 'x', strlen(out));
    memset(seed, 'x', strlen(seed));
    free(name), free(out), free(seed);
    struct vms_stats st;
    if (p)
        CHECK_OK(vms_checkout_run(r.c, p, &st, &err), err);
    CHECK(exists(out_kept));
    CHECK(p && st.objects_fetched == 0 && st.bytes_from_seeds == vms_plan_figures(p)->bytes_from_seeds);
    vms_plan_free(p);
    vms_plan_free(NULL);
    free(out_kept), free(t), free(img);
    repo_free(&r);
}

int main(void)
{
    if (scratch_begin("plan"))
        return 1;
    RUN(test_seeds_matched_by_content);
    RUN(test_only_the_changed_chunk_is_fetched);
    RUN(test_metadata_blocks_are_pieces);
    RUN(test_plan_then_run);
    RUN(test_an_interrupted_run_resumes);
    RUN(test_out_changed_since_the_plan);
    RUN(test_plan_keeps_its_own_options);
    scratch_end();
    return check_failures ? 1 : 0;
}
