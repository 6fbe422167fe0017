/* The settings file (vmsync/lib/config), which the window writes: parsing,
 * errors that name the file and line, adding, and a save that reads back. */
#include "check.h"
#include "vmsync.h"

#include <errno.h>
#include <string.h>

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
    scratch_end();
    return check_failures;
}
