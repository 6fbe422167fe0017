/* The queries (vms_images, vms_leases, vms_audit_log), vms_release and
 * vms_parse_time on a real local repository: a small ext4 image made with
 * mke2fs -d is imported under three names by two hosts, then leased, listed,
 * released and read back from the audit log. */
#include "check.h"
#include "repo/repo.h"

#include <errno.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A client of USER on HOST; NULL when it cannot open REPO. */
static vms_client *session(const char *repo, const char *user, const char *host)
{
    static char *cache;
    if (!cache)
        cache = scratch_path("cache");
    struct vms_client_opts o = {.user = user, .host = host, .cache_dir = cache};
    vms_client *c = NULL;
    fsp_error err = {0};
    if (vms_client_open(repo, &o, &c, &err))
        fprintf(stderr, "cannot open %s: %s\n", repo, err.msg);
    return c;
}

/* ---- what the callbacks saw: copies, since the rows live during the call only ---- */

struct seen {
    size_t n;
    char names[8][256];
    uint32_t versions[8];
    uint64_t sizes[8];
    char holders[8][400]; /* "user@host", or "" without a lease */
    char actions[8][64];
    int64_t times[8];
    int stop_after; /* return 7 once this many rows were seen; 0: never */
};

static int seen_row(struct seen *s, const char *name, uint32_t version, const char *user,
                    const char *host)
{
    if (s->n < 8) {
        snprintf(s->names[s->n], sizeof s->names[0], "%s", name ? name : "(none)");
        s->versions[s->n] = version;
        snprintf(s->holders[s->n], sizeof s->holders[0], "%s%s%s", user ? user : "",
                 user ? "@" : "", user ? host : "");
    }
    s->n++;
    return s->stop_after && s->n >= (size_t)s->stop_after ? 7 : 0;
}

static int on_image(void *ctx, const struct vms_image_info *i)
{
    struct seen *s = ctx;
    if (s->n < 8)
        s->sizes[s->n] = i->size;
    return seen_row(s, i->name, i->latest, i->lease ? i->lease->user : NULL,
                    i->lease ? i->lease->host : NULL);
}

static int on_lease(void *ctx, const struct vms_lease_info *l)
{
    return seen_row(ctx, l->image, l->version, l->user, l->host);
}

static int on_entry(void *ctx, const struct vms_audit_entry *e)
{
    struct seen *s = ctx;
    if (s->n < 8) {
        snprintf(s->actions[s->n], sizeof s->actions[0], "%s", e->action);
        s->times[s->n] = e->at;
    }
    return seen_row(s, e->image, e->version, e->user, e->host);
}

/* ---- the repository under test ---- */

static char *repo, *image;

static void report(int rc, const fsp_error *err, const char *what)
{
    CHECK(rc == 0);
    if (rc)
        fprintf(stderr, "  %s: %s\n", what, err->msg);
}

static void import_as(const char *name, const char *host)
{
    vms_client *s = session(repo, "builder", host);
    struct vms_import_opts o = {.image = image, .name = name, .message = "test"};
    struct vms_stats st;
    fsp_error err = {0};
    report(vms_import(s, &o, &st, &err), &err, name);
    vms_client_close(s);
}

/* What an older vmsync could store and import now refuses: the catalog's
 * name of image FROM becomes TO. */
static void rename_in_catalog(const char *from, const char *to)
{
    char *path = scratch_path("repo/catalog.db");
    sqlite3 *db = NULL;
    int rc = sqlite3_open(path, &db);
    const char *sql[] = {"UPDATE images SET name = ?2 WHERE name = ?1",
                         "UPDATE audit SET image = ?2 WHERE image = ?1"};
    for (size_t i = 0; rc == SQLITE_OK && i < 2; i++) {
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(db, sql[i], -1, &st, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_text(st, 1, from, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, to, -1, SQLITE_STATIC);
            rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
        }
        sqlite3_finalize(st);
    }
    CHECK(rc == SQLITE_OK);
    sqlite3_close(db);
    free(path);
}

/* beta gets two versions; "gamma\xff" a name that is not UTF-8, which import
 * refuses: it is renamed in the catalog, as an older vmsync left it. */
static bool make_repository(void)
{
    char *tree = scratch_path("tree"), cmd[512];
    image = scratch_path("small.ext4");
    repo = scratch_path("repo");
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s/etc && echo hello >%s/etc/motd && "
             "mke2fs -q -F -t ext4 -d %s %s 4M >/dev/null 2>&1",
             tree, tree, tree, image);
    free(tree);
    fsp_error err = {0};
    if (system(cmd) != 0 || vms_init_repo(repo, &err)) {
        fprintf(stderr, "cannot make the image or the repository: %s\n", err.msg);
        return false;
    }
    import_as("beta", "h2");
    import_as("alpha", "h1");
    import_as("beta", "h2"); /* import adds the next version */
    import_as("gamma", "h1");
    rename_in_catalog("gamma", "gamma\xff");
    return check_failures == 0;
}

static void take_lease(const char *name, uint32_t version, const char *host)
{
    vms_repo *r;
    fsp_error err = {0};
    int rc = vms_repo_open(repo, "alice", host, NULL, &r, &err);
    if (!rc)
        rc = vms_repo_lease_take(r, name, version, false, &err);
    report(rc, &err, "taking a lease");
    vms_repo_close(r);
}

/* ---- the tests ---- */

static void test_images(void)
{
    vms_client *s = session(repo, "anyone", "anywhere");
    struct seen seen = {0};
    fsp_error err = {0};
    report(vms_images(s, on_image, &seen, &err), &err, "images");
    CHECK(seen.n == 3);
    CHECK(!strcmp(seen.names[0], "alpha") && seen.versions[0] == 1);
    CHECK(!strcmp(seen.names[1], "beta") && seen.versions[1] == 2);
    CHECK(!strcmp(seen.names[2], "gamma\xff"));
    CHECK(seen.sizes[1] == 4u << 20);
    CHECK(!seen.holders[0][0] && !seen.holders[1][0]);

    take_lease("beta", 1, "laptop");
    memset(&seen, 0, sizeof seen);
    report(vms_images(s, on_image, &seen, &err), &err, "images");
    CHECK(seen.n == 3 && !strcmp(seen.holders[1], "alice@laptop") && !seen.holders[0][0]);

    memset(&seen, 0, sizeof seen);
    seen.stop_after = 1; /* the callback's return ends the query and is returned */
    CHECK(vms_images(s, on_image, &seen, &err) == 7 && seen.n == 1);
    vms_client_close(s);
}

static void test_leases(void)
{
    vms_client *s = session(repo, "anyone", "anywhere");
    struct seen seen = {0};
    fsp_error err = {0};
    take_lease("alpha", 1, "desk");
    report(vms_leases(s, NULL, on_lease, &seen, &err), &err, "leases");
    CHECK(seen.n == 2);
    CHECK(!strcmp(seen.names[0], "alpha") && !strcmp(seen.holders[0], "alice@desk"));
    CHECK(!strcmp(seen.names[1], "beta") && seen.versions[1] == 1);

    memset(&seen, 0, sizeof seen);
    report(vms_leases(s, "beta", on_lease, &seen, &err), &err, "leases beta");
    CHECK(seen.n == 1 && !strcmp(seen.holders[0], "alice@laptop"));
    memset(&seen, 0, sizeof seen);
    report(vms_leases(s, "gamma\xff", on_lease, &seen, &err), &err, "leases gamma");
    CHECK(seen.n == 0);
    CHECK(vms_leases(s, "nosuch", on_lease, &seen, &err) == -ENOENT &&
          err.kind == VMS_EK_NOTFOUND);
    vms_client_close(s);
}

static void test_release(void)
{
    fsp_error err = {0};
    bool released = true;
    vms_client *other = session(repo, "alice", "elsewhere");
    CHECK(vms_release(other, "beta", &released, &err) < 0);
    CHECK(err.kind == VMS_EK_CONFLICT && strstr(err.msg, "alice@laptop") && !released);

    vms_client *holder = session(repo, "alice", "laptop");
    report(vms_release(holder, "beta", &released, &err), &err, "release");
    CHECK(released);
    report(vms_release(holder, "beta", &released, &err), &err, "release again");
    CHECK(!released); /* nobody's lease: no error, nothing done */
    CHECK(vms_release(holder, "nosuch", &released, &err) < 0 && err.kind == VMS_EK_NOTFOUND);

    struct seen seen = {0};
    report(vms_leases(holder, NULL, on_lease, &seen, &err), &err, "leases");
    CHECK(seen.n == 1 && !strcmp(seen.names[0], "alpha"));
    vms_client_close(other);
    vms_client_close(holder);
}

/* Moves the first audit entry to Unix time AT, for --since. */
static void backdate_first_entry(int64_t at)
{
    char *db = scratch_path("repo/catalog.db"), sql[128];
    sqlite3 *h;
    snprintf(sql, sizeof sql, "UPDATE audit SET at = %lld WHERE id = (SELECT MIN(id) FROM audit)",
             (long long)at);
    CHECK(sqlite3_open(db, &h) == SQLITE_OK && sqlite3_exec(h, sql, 0, 0, 0) == SQLITE_OK);
    sqlite3_close(h);
    free(db);
}

static void test_audit(void)
{
    vms_client *s = session(repo, "anyone", "anywhere");
    struct seen seen = {0};
    fsp_error err = {0};
    report(vms_audit_log(s, NULL, 0, on_entry, &seen, &err), &err, "audit");
    CHECK(seen.n == 5); /* four imports, one release: the lease takes were no checkouts */
    CHECK(!strcmp(seen.actions[0], "import") && !strcmp(seen.names[0], "beta"));
    CHECK(!strcmp(seen.actions[1], "import") && !strcmp(seen.names[1], "alpha"));
    CHECK(!strcmp(seen.holders[1], "builder@h1") && seen.versions[2] == 2);
    CHECK(!strcmp(seen.actions[4], "release") && !strcmp(seen.names[4], "beta") &&
          seen.versions[4] == 1 && !strcmp(seen.holders[4], "alice@laptop"));
    for (size_t i = 1; i < 5 && i < seen.n; i++)
        CHECK(seen.times[i] >= seen.times[i - 1]);

    memset(&seen, 0, sizeof seen);
    report(vms_audit_log(s, "beta", 0, on_entry, &seen, &err), &err, "audit beta");
    CHECK(seen.n == 3);

    backdate_first_entry(1000);
    memset(&seen, 0, sizeof seen);
    report(vms_audit_log(s, "beta", 1000, on_entry, &seen, &err), &err, "since 1000");
    CHECK(seen.n == 3 && seen.times[0] == 1000);
    memset(&seen, 0, sizeof seen);
    report(vms_audit_log(s, "beta", 1001, on_entry, &seen, &err), &err, "since 1001");
    CHECK(seen.n == 2 && seen.versions[0] == 2);
    CHECK(vms_audit_log(s, "nosuch", 0, on_entry, &seen, &err) < 0 &&
          err.kind == VMS_EK_NOTFOUND);
    vms_client_close(s);
}

static void test_parse_time(void)
{
    int64_t t = -1;
    fsp_error err = {0};
    CHECK(vms_parse_time("1700000000", &t, &err) == 0 && t == 1700000000);
    CHECK(vms_parse_time("2026-12-01", &t, &err) == 0 && t == 1796083200);
    CHECK(vms_parse_time("2026-12-01T10:00:00Z", &t, &err) == 0 && t == 1796083200 + 36000);
    CHECK(vms_parse_time("2026-12-01T10:00:00", &t, &err) == 0 && t == 1796083200 + 36000);
    CHECK(vms_parse_time("2026-12-01 10:00:01", &t, &err) == 0 && t == 1796083200 + 36001);
    static const char *const bad[] = {"", "-5", "yesterday", "2026-13-01", "2026-12-01T25:00:00Z",
                                      "2026-12-01Tx", "17e9"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memset(&err, 0, sizeof err);
        CHECK(vms_parse_time(bad[i], &t, &err) == -EINVAL && err.kind == FSP_EK_USAGE);
    }
}

int main(void)
{
    if (scratch_begin("queries"))
        return 1;
    if (make_repository()) {
        RUN(test_images);
        RUN(test_leases);
        RUN(test_release);
        RUN(test_audit);
    }
    RUN(test_parse_time);
    scratch_end();
    return check_failures ? 1 : 0;
}
