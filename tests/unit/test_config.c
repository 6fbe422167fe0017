/* The settings file (vmsync/lib/config), which the window writes: parsing,
 * errors that name the file and line, adding, and a save that reads back. */
#include "check.h"
#include "vmsync.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *write_file(const char *name, const char *text)
{
    char *p = scratch(name);
    FILE *f = fopen(p, "w");
    if (!f)
        abort();
    fputs(text, f);
    fclose(f);
    return p;
}

static void test_missing_file_is_empty(void)
{
    struct vms_config *c = NULL;
    fsp_error err = {0};
    char *p = scratch("absent");
    CHECK(vms_config_load(p, &c, &err) == 0);
    CHECK(c && c->n_repos == 0 && c->n_seed_folders == 0);
    vms_config_free(c);
    free(p);
}

static void test_parse(void)
{
    char *p = write_file("full", "# a comment\n\n[repository]\n  url =  /srv/a  \n"
                                 "[repository]\nurl=ssh://me@host:2222/golden\n"
                                 "identity = /k/id_ed25519\n; another\n[seeds]\n"
                                 "folder = /var/lib/images\nfolder = /b b\n");
    struct vms_config *c = NULL;
    fsp_error err = {0};
    CHECK(vms_config_load(p, &c, &err) == 0);
    CHECK(c && c->n_repos == 2 && c->n_seed_folders == 2);
    if (c && c->n_repos == 2 && c->n_seed_folders == 2) {
        CHECK(!strcmp(c->repos[0].url, "/srv/a") && !c->repos[0].identity);
        CHECK(!strcmp(c->repos[1].url, "ssh://me@host:2222/golden"));
        CHECK(!strcmp(c->repos[1].identity, "/k/id_ed25519"));
        CHECK(!strcmp(c->seed_folders[1], "/b b"));
    }
    vms_config_free(c);
    free(p);
}

/* TEXT fails to load with a message holding WANT. */
static void expect_error(const char *text, const char *want)
{
    char *p = write_file("bad", text);
    struct vms_config *c = NULL;
    fsp_error err = {0};
    CHECK(vms_config_load(p, &c, &err) == -EINVAL);
    CHECK(strstr(err.msg, p) && strstr(err.msg, want));
    if (!strstr(err.msg, want))
        fprintf(stderr, "  message: %s\n", err.msg);
    CHECK(c == NULL);
    free(p);
}

static void test_errors(void)
{
    expect_error("[repository]\nurl = /a\nurk = /b\n", ":3: unknown key 'urk'");
    expect_error("url = /a\n", ":1: a key before any section: 'url'");
    expect_error("[repo]\n", ":1: unknown section 'repo'");
    expect_error("[seeds\n", ":1: a section name without its ']'");
    expect_error("[repository]\nurl = /a\nurl = /b\n", ":3: key given twice");
    expect_error("[repository]\nidentity = /k\n", "repository 1 of 1 has no url");
    expect_error("[seeds]\njust words\n", ":2: not 'key = value'");
    expect_error("[checkout]\nrepository = /a\nimage = d\nfile = /f\nfile = /g\n",
                 ":5: key given twice");
    expect_error("[checkout]\nrepository = /a\nimage = d\nversion = 2\n",
                 ":4: unknown key 'version'");
    expect_error("[checkout]\nrepository = /a\nfile = /f\n", "checkout 1 of 1 has no image");
    expect_error("[checkout]\nimage = d\nfile = /f\n", "checkout 1 of 1 has no repository");
    expect_error("[repository]\nname = off/ice\nurl = /a\n", ":2: a name is letters");
    expect_error("[repository]\nname = ..\nurl = /a\n", ":2: a name is letters");
    expect_error("[repository]\nname = a\nurl = /a\n[repository]\nname = a\nurl = /b\n",
                 "two repositories are named 'a'");
    expect_error("[repository]\nurl = /a\nbwlimit = 1K\n", ":3: bwlimit is not a rate");
    expect_error("[repository]\nurl = /a\ntimeout = 0\n", ":3: timeout is not seconds");
    expect_error("[defaults]\nrepository = a\nrepository = b\n", ":3: key given twice");
    expect_error("[defaults]\nrepo = a\n", ":2: unknown key 'repo'");
}

/* A named remote with its rate and timeout, and a default, survive a save. */
static void test_named_remote(void)
{
    char *p = write_file("named", "[defaults]\nrepository = office\n[repository]\nname = office\n"
                                  "url = ssh://h/r\nidentity = /k\nbwlimit = 2M\ntimeout = 30\n");
    struct vms_config *c = NULL, *back = NULL;
    fsp_error err = {0};
    CHECK(vms_config_load(p, &c, &err) == 0);
    const struct vms_config_repo *r = c ? vms_config_find_repo(c, "office") : NULL;
    CHECK(r && !strcmp(r->url, "ssh://h/r") && r->bwlimit == 2u << 20 && r->timeout == 30);
    CHECK(c && !strcmp(c->default_repo, "office") && !vms_config_find_repo(c, "ssh://h/r"));
    CHECK(c && vms_config_save(c, p, &err) == 0);
    CHECK(vms_config_load(p, &back, &err) == 0);
    r = back ? vms_config_find_repo(back, "office") : NULL;
    CHECK(r && r->bwlimit == 2u << 20 && r->timeout == 30 && !strcmp(r->identity, "/k"));
    CHECK(back && back->default_repo && !strcmp(back->default_repo, "office"));
    vms_config_free(c);
    vms_config_free(back);
    free(p);
}

static const char system_text[] =
    "[defaults]\nrepository = office\n"
    "[repository]\nname = office\nurl = ssh://sys/office\nbwlimit = 1M\n"
    "[repository]\nname = lab\nurl = /srv/lab\n"
    "[repository]\nurl = /srv/shared\n"
    "[seeds]\nfolder = /var/lib/images\nfolder = /both\n[trust]\nkey = /etc/vmsync/office.pub\n"
    "[bandwidth]\nlimit = 2M weekdays 08:00-18:00\n";

/* The user's file wins one thing, a repository of the same name or url
 * whole; lists are the union; a save writes back only the user's part. */
static void test_merge(void)
{
    char *sys = write_file("sys.conf", system_text);
    char *user = write_file("user.conf", "[repository]\nname = office\nurl = ssh://me/office\n"
                                         "[repository]\nurl = /srv/shared\nidentity = /k\n"
                                         "[seeds]\nfolder = /both\nfolder = /mine\n"
                                         "[bandwidth]\nlimit = 1M mon\n");
    struct vms_config *c = NULL, *back = NULL;
    fsp_error err = {0};
    CHECK(vms_config_load_all(sys, user, &c, &err) == 0);
    if (!c)
        return;
    const struct vms_config_repo *office = vms_config_find_repo(c, "office");
    const struct vms_config_repo *lab = vms_config_find_repo(c, "lab");
    CHECK(office && !strcmp(office->url, "ssh://me/office") && !office->bwlimit && !office->system);
    CHECK(lab && lab->system && !strcmp(lab->url, "/srv/lab"));
    CHECK(c->n_repos == 3 && !strcmp(c->repos[1].identity, "/k"));
    CHECK(c->default_repo && !strcmp(c->default_repo, "office") && c->default_repo_system);
    CHECK(c->n_seed_folders == 3 && !strcmp(c->seed_folders[2], "/var/lib/images"));
    CHECK(c->n_trusted_keys == 1 && c->n_bw_limits == 2 && !strcmp(c->bw_limits[0], "1M mon"));
    bool added = false;
    CHECK(vms_config_add_repo(c, "/srv/new", NULL, &added, &err) == 0 && added);
    CHECK(vms_config_save(c, user, &err) == 0);
    CHECK(vms_config_load(user, &back, &err) == 0);
    CHECK(back && back->n_repos == 3 && !vms_config_find_repo(back, "lab"));
    CHECK(back && !back->default_repo && back->n_trusted_keys == 0);
    CHECK(back && back->n_seed_folders == 1 && !strcmp(back->seed_folders[0], "/mine"));
    CHECK(back && back->n_bw_limits == 1 && !strcmp(back->bw_limits[0], "1M mon"));
    vms_config_free(c);
    vms_config_free(back);
    free(sys);
    free(user);
}

/* The user's default beats the system's; either file broken is an error
 * naming it and its line; either missing is fine. */
static void test_merge_precedence(void)
{
    char *sys = write_file("sys2.conf", system_text);
    char *user = write_file("user2.conf", "[defaults]\nrepository = /srv/mine\n");
    char *absent = scratch("absent2");
    struct vms_config *c = NULL;
    fsp_error err = {0};
    CHECK(vms_config_load_all(sys, user, &c, &err) == 0);
    CHECK(c && !strcmp(c->default_repo, "/srv/mine") && !c->default_repo_system);
    vms_config_free(c);
    c = NULL;
    CHECK(vms_config_load_all(absent, user, &c, &err) == 0 && c && c->n_repos == 0);
    vms_config_free(c);
    c = NULL;
    CHECK(vms_config_load_all(sys, absent, &c, &err) == 0 && c && c->n_repos == 3);
    vms_config_free(c);
    c = NULL;
    char *bad = write_file("sys3.conf", "[repository]\nurl = /a\nspeed = 2M\n");
    CHECK(vms_config_load_all(bad, user, &c, &err) == -EINVAL && !c);
    CHECK(strstr(err.msg, bad) && strstr(err.msg, ":3: unknown key 'speed'"));
    free(sys);
    free(user);
    free(absent);
    free(bad);
}

/* One record per repository and image, the newest checkout's; it survives a
 * save and a load. */
static void test_checkouts(void)
{
    struct vms_config *c = NULL, *back = NULL;
    fsp_error err = {0};
    char *p = scratch_path("checkouts/config");
    CHECK(vms_config_load(p, &c, &err) == 0);
    CHECK(!vms_config_find_checkout(c, "/srv/a", "desk"));
    CHECK(vms_config_set_checkout(c, "/srv/a", "desk", "/home/me/desk.img", &err) == 0);
    CHECK(vms_config_set_checkout(c, "/srv/b", "desk", "/home/me/b-desk.img", &err) == 0);
    CHECK(vms_config_set_checkout(c, "/srv/a", "desk", "/home/me/new desk.img", &err) == 0);
    CHECK(vms_config_set_checkout(c, "/srv/a", "lab\n", "/f", &err) == -EINVAL);
    CHECK(vms_config_set_checkout(c, "/srv/a", "lab", " /f", &err) == -EINVAL);
    CHECK(c->n_checkouts == 2);
    CHECK(vms_config_save(c, p, &err) == 0);
    CHECK(vms_config_load(p, &back, &err) == 0);
    const struct vms_config_checkout *k = back ? vms_config_find_checkout(back, "/srv/a", "desk") : NULL;
    CHECK(k && !strcmp(k->file, "/home/me/new desk.img"));
    k = back ? vms_config_find_checkout(back, "/srv/b", "desk") : NULL;
    CHECK(k && !strcmp(k->file, "/home/me/b-desk.img"));
    CHECK(back && back->n_checkouts == 2 && !vms_config_find_checkout(back, "/srv/b", "lab"));
    vms_config_free(c);
    vms_config_free(back);
    free(p);
}

static void test_add_and_save(void)
{
    struct vms_config *c = NULL, *back = NULL;
    fsp_error err = {0};
    bool added = false;
    char *p = scratch_path("deep/er/config");
    CHECK(vms_config_load(p, &c, &err) == 0);
    CHECK(vms_config_add_repo(c, "/srv/one", NULL, &added, &err) == 0 && added);
    CHECK(vms_config_add_repo(c, "/srv/one", NULL, &added, &err) == 0 && !added);
    CHECK(vms_config_add_repo(c, "ssh://h/x", "/k", &added, &err) == 0 && added);
    CHECK(vms_config_add_repo(c, "/a\nb", NULL, &added, &err) == -EINVAL && !added);
    CHECK(vms_config_add_repo(c, " /a", NULL, &added, &err) == -EINVAL && !added);
    CHECK(vms_config_add_seed_folder(c, "/images", &err) == 0);
    CHECK(vms_config_save(c, p, &err) == 0);
    CHECK(vms_config_load(p, &back, &err) == 0);
    CHECK(back && back->n_repos == 2 && back->n_seed_folders == 1);
    if (back && back->n_repos == 2)
        CHECK(!strcmp(back->repos[1].identity, "/k") && !back->repos[0].identity);
    vms_config_free(c);
    vms_config_free(back);
    free(p);
}

/* [trust] lists key files, kept in order, and a save writes them back (the
 * window saves the file, and must not drop what only the command line uses). */
static void test_trust(void)
{
    char *p = write_file("trust", "[trust]\nkey = /etc/vmsync/office.pub\nkey = /k/two.pub\n"
                                  "[repository]\nurl = /srv/a\n");
    struct vms_config *c = NULL, *back = NULL;
    fsp_error err = {0};
    CHECK(vms_config_load(p, &c, &err) == 0);
    CHECK(c && c->n_trusted_keys == 2);
    if (c && c->n_trusted_keys == 2) {
        CHECK(!strcmp(c->trusted_keys[0], "/etc/vmsync/office.pub"));
        CHECK(!strcmp(c->trusted_keys[1], "/k/two.pub"));
    }
    CHECK(c && vms_config_save(c, p, &err) == 0);
    CHECK(vms_config_load(p, &back, &err) == 0);
    CHECK(back && back->n_trusted_keys == 2 && back->n_repos == 1);
    if (back && back->n_trusted_keys == 2)
        CHECK(!strcmp(back->trusted_keys[1], "/k/two.pub"));
    vms_config_free(c);
    vms_config_free(back);
    free(p);
    expect_error("[trust]\nfile = /k.pub\n", ":2: unknown key 'file'");
}

/* The time DAY days after Monday 2026-11-30, at HH:MM (UTC, so no DST). */
static time_t at(int day, int hh, int mm)
{
    return (time_t)1795996800 + day * 86400 + hh * 3600 + mm * 60;
}

static uint64_t rate(const char *const *lines, size_t n, time_t t)
{
    struct vms_bw_window w[8];
    fsp_error err = {0};
    for (size_t i = 0; i < n; i++)
        if (vms_bw_window_parse(lines[i], &w[i], &err)) {
            fprintf(stderr, "  %s\n", err.msg);
            return UINT64_MAX;
        }
    return vms_bw_rate_at(w, n, t);
}

/* First match wins; weekdays and weekends; a span across midnight belongs
 * to the evening of its day and the next morning; nothing matching is
 * unlimited. */
static void test_bw_windows(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
    static const char *const office[] = {"2M weekdays 08:00-18:00", "unlimited"};
    CHECK(rate(office, 2, at(0, 7, 59)) == 0);
    CHECK(rate(office, 2, at(0, 8, 0)) == 2u << 20);
    CHECK(rate(office, 2, at(4, 17, 59)) == 2u << 20);
    CHECK(rate(office, 2, at(4, 18, 0)) == 0);
    CHECK(rate(office, 2, at(5, 12, 0)) == 0); /* Saturday */
    static const char *const night[] = {"512K fri 22:00-06:00", "1M weekends", "64K"};
    CHECK(rate(night, 3, at(4, 21, 59)) == 64u << 10);
    CHECK(rate(night, 3, at(4, 22, 0)) == 512u << 10);
    CHECK(rate(night, 3, at(5, 5, 59)) == 512u << 10); /* Saturday, before 06:00 */
    CHECK(rate(night, 3, at(5, 6, 0)) == 1u << 20);
    CHECK(rate(night, 3, at(6, 23, 0)) == 1u << 20);
    CHECK(rate(night, 3, at(0, 3, 0)) == 64u << 10); /* not Friday's night */
    static const char *const ranges[] = {"8K sat-mon 00:00-24:00", "16K tue,thu"};
    CHECK(rate(ranges, 2, at(0, 12, 0)) == 8192 && rate(ranges, 2, at(6, 0, 0)) == 8192);
    CHECK(rate(ranges, 2, at(1, 12, 0)) == 16384 && rate(ranges, 2, at(2, 12, 0)) == 0);
    struct vms_bw_window w;
    fsp_error err = {0};
    static const char *const bad[] = {"", "1K", "fast", "2M someday", "2M mon 8-18",
                                      "2M mon 08:00-08:00", "2M mon 08:00-25:00",
                                      "2M 08:00-18:00 mon", "2M mon 08:00-18:00 x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(vms_bw_window_parse(bad[i], &w, &err) == -EINVAL);
        CHECK(strstr(err.msg, "bad bandwidth window"));
    }
    expect_error("[bandwidth]\nlimit = 2M weekdays 08:00-18:00\nlimit = 2M noon\n",
                 ":3: bad bandwidth window '2M noon'");
}

int main(void)
{
    if (scratch_begin("gui-config"))
        return 1;
    RUN(test_missing_file_is_empty);
    RUN(test_parse);
    RUN(test_errors);
    RUN(test_add_and_save);
    RUN(test_checkouts);
    RUN(test_trust);
    RUN(test_named_remote);
    RUN(test_merge);
    RUN(test_merge_precedence);
    RUN(test_bw_windows);
    scratch_end();
    return check_failures;
}
