/* The settings file: see vmsync.h ("the settings file") for its format. */
#include "vmsync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum section { SEC_NONE, SEC_REPOSITORY, SEC_SEEDS, SEC_CHECKOUT, SEC_TRUST };

struct parser {
    const char *path;
    unsigned line;
    enum section section;
    struct vms_config *cfg;
    fsp_error *err;
};

int vms_config_default_path(char *buf, size_t len, fsp_error *err)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    int n = -1;
    if (xdg && *xdg == '/')
        n = snprintf(buf, len, "%s/vmsync/config", xdg);
    else if (home && *home)
        n = snprintf(buf, len, "%s/.config/vmsync/config", home);
    if (n < 0 || (size_t)n >= len)
        return fsp_fail(err, FSP_EK_USAGE, -ENOENT,
                        "cannot find the configuration: neither XDG_CONFIG_HOME nor HOME is set");
    return 0;
}

static int out_of_memory(fsp_error *err)
{
    return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
}

/* Appends a copy of S to the array *ITEMS of *N strings. */
static int push_string(char ***items, size_t *n, const char *s, fsp_error *err)
{
    char **grown = realloc(*items, (*n + 1) * sizeof *grown);
    if (!grown)
        return out_of_memory(err);
    *items = grown;
    if (!(grown[*n] = strdup(s)))
        return out_of_memory(err);
    (*n)++;
    return 0;
}

static int push_repo(struct vms_config *c, fsp_error *err)
{
    struct vms_config_repo *grown = realloc(c->repos, (c->n_repos + 1) * sizeof *grown);
    if (!grown)
        return out_of_memory(err);
    c->repos = grown;
    grown[c->n_repos++] = (struct vms_config_repo){0};
    return 0;
}

static int push_checkout(struct vms_config *c, fsp_error *err)
{
    struct vms_config_checkout *grown = realloc(c->checkouts, (c->n_checkouts + 1) * sizeof *grown);
    if (!grown)
        return out_of_memory(err);
    c->checkouts = grown;
    grown[c->n_checkouts++] = (struct vms_config_checkout){0};
    return 0;
}

static int parse_error(struct parser *p, const char *what, const char *s)
{
    return fsp_fail(p->err, FSP_EK_USAGE, -EINVAL, "%s:%u: %s '%s'", p->path, p->line, what, s);
}

static int open_section(struct parser *p, const char *name)
{
    if (!strcmp(name, "seeds")) {
        p->section = SEC_SEEDS;
        return 0;
    }
    if (!strcmp(name, "trust")) {
        p->section = SEC_TRUST;
        return 0;
    }
    if (!strcmp(name, "checkout")) {
        p->section = SEC_CHECKOUT;
        return push_checkout(p->cfg, p->err);
    }
    if (strcmp(name, "repository"))
        return parse_error(p, "unknown section", name);
    p->section = SEC_REPOSITORY;
    return push_repo(p->cfg, p->err);
}

/* Sets *SLOT (NULL so far) to a copy of VALUE; a key given twice is an error. */
static int set_once(struct parser *p, char **slot, const char *key, const char *value)
{
    if (*slot)
        return parse_error(p, "key given twice in one section:", key);
    if (!(*slot = strdup(value)))
        return out_of_memory(p->err);
    return 0;
}

static int set_checkout_key(struct parser *p, const char *key, const char *value)
{
    struct vms_config_checkout *k = &p->cfg->checkouts[p->cfg->n_checkouts - 1];
    if (!strcmp(key, "repository"))
        return set_once(p, &k->repo, key, value);
    if (!strcmp(key, "image"))
        return set_once(p, &k->image, key, value);
    if (!strcmp(key, "file"))
        return set_once(p, &k->file, key, value);
    return parse_error(p, "unknown key", key);
}

static int set_key(struct parser *p, const char *key, const char *value)
{
    struct vms_config *c = p->cfg;
    if (p->section == SEC_CHECKOUT)
        return set_checkout_key(p, key, value);
    if (p->section == SEC_SEEDS && !strcmp(key, "folder"))
        return push_string(&c->seed_folders, &c->n_seed_folders, value, p->err);
    if (p->section == SEC_TRUST && !strcmp(key, "key"))
        return push_string(&c->trusted_keys, &c->n_trusted_keys, value, p->err);
    if (p->section == SEC_REPOSITORY && !strcmp(key, "url"))
        return set_once(p, &c->repos[c->n_repos - 1].url, key, value);
    if (p->section == SEC_REPOSITORY && !strcmp(key, "identity"))
        return set_once(p, &c->repos[c->n_repos - 1].identity, key, value);
    if (p->section == SEC_NONE)
        return parse_error(p, "a key before any section:", key);
    return parse_error(p, "unknown key", key);
}

/* S without the blanks at either end (in place). */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = 0;
    return s;
}

static int parse_line(struct parser *p, char *raw)
{
    char *s = trim(raw);
    if (!*s || *s == '#' || *s == ';')
        return 0;
    size_t n = strlen(s);
    if (*s == '[') {
        if (s[n - 1] != ']')
            return parse_error(p, "a section name without its ']':", s);
        s[n - 1] = 0;
        return open_section(p, trim(s + 1));
    }
    char *eq = strchr(s, '=');
    if (!eq)
        return parse_error(p, "not 'key = value':", s);
    *eq = 0;
    return set_key(p, trim(s), trim(eq + 1));
}

/* Every [repository] needs its url. */
static int check_repos(struct parser *p)
{
    for (size_t i = 0; i < p->cfg->n_repos; i++)
        if (!p->cfg->repos[i].url)
            return fsp_fail(p->err, FSP_EK_USAGE, -EINVAL,
                            "%s: repository %zu of %zu has no url", p->path, i + 1,
                            p->cfg->n_repos);
    return 0;
}

/* Every [checkout] needs its three keys. */
static int check_checkouts(struct parser *p)
{
    for (size_t i = 0; i < p->cfg->n_checkouts; i++) {
        const struct vms_config_checkout *k = &p->cfg->checkouts[i];
        const char *missing = !k->repo    ? "repository"
                              : !k->image ? "image"
                              : !k->file  ? "file"
                                          : NULL;
        if (missing)
            return fsp_fail(p->err, FSP_EK_USAGE, -EINVAL, "%s: checkout %zu of %zu has no %s",
                            p->path, i + 1, p->cfg->n_checkouts, missing);
    }
    return 0;
}

static int parse_file(struct parser *p, FILE *f)
{
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (!rc && getline(&line, &cap, f) >= 0) {
        p->line++;
        rc = parse_line(p, line);
    }
    if (!rc && ferror(f))
        rc = fsp_fail(p->err, FSP_EK_IO, -EIO, "%s: cannot read", p->path);
    free(line);
    if (!rc)
        rc = check_repos(p);
    return rc ? rc : check_checkouts(p);
}

int vms_config_load(const char *path, struct vms_config **out, fsp_error *err)
{
    struct vms_config *c = calloc(1, sizeof *c);
    if (!c)
        return out_of_memory(err);
    struct parser p = {.path = path, .cfg = c, .err = err};
    int rc = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        rc = parse_file(&p, f);
        fclose(f);
    } else if (errno != ENOENT)
        rc = fsp_fail(err, FSP_EK_OPEN, -errno, "%s: cannot open: %s", path, strerror(errno));
    if (rc) {
        vms_config_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* Creates the folders above PATH, as mkdir -p of its dirname. */
static int make_parents(const char *path, fsp_error *err)
{
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return fsp_fail(err, FSP_EK_USAGE, -ENAMETOOLONG, "%s: name too long", path);
    for (char *s = strchr(dir + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = 0;
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
            return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot create: %s", dir, strerror(errno));
        *s = '/';
    }
    return 0;
}

static void write_cfg(FILE *f, const struct vms_config *c)
{
    fputs("# vmsync settings: written by vmsync-gtk, read by vmsync-gtk and vmsync.\n", f);
    for (size_t i = 0; i < c->n_repos; i++) {
        fprintf(f, "\n[repository]\nurl = %s\n", c->repos[i].url);
        if (c->repos[i].identity)
            fprintf(f, "identity = %s\n", c->repos[i].identity);
    }
    if (c->n_seed_folders)
        fputs("\n[seeds]\n", f);
    for (size_t i = 0; i < c->n_seed_folders; i++)
        fprintf(f, "folder = %s\n", c->seed_folders[i]);
    if (c->n_trusted_keys)
        fputs("\n[trust]\n", f);
    for (size_t i = 0; i < c->n_trusted_keys; i++)
        fprintf(f, "key = %s\n", c->trusted_keys[i]);
    for (size_t i = 0; i < c->n_checkouts; i++)
        fprintf(f, "\n[checkout]\nrepository = %s\nimage = %s\nfile = %s\n",
                c->checkouts[i].repo, c->checkouts[i].image, c->checkouts[i].file);
}

static int write_error(const char *path, fsp_error *err)
{
    return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot write: %s", path, strerror(errno));
}

int vms_config_save(const struct vms_config *c, const char *path, fsp_error *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int rc = make_parents(path, err);
    if (rc)
        return rc;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return write_error(tmp, err);
    write_cfg(f, c);
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0)
        ok = false;
    if (ok && rename(tmp, path) == 0)
        return 0;
    rc = write_error(ok ? path : tmp, err);
    unlink(tmp);
    return rc;
}

/* A value goes on one line of the file: no newline, and no blank at its ends
 * (the parser would drop it). */
static int check_value(const char *what, const char *v, fsp_error *err)
{
    size_t n = strlen(v);
    if (!n || strchr(v, '\n') || strchr(v, '\r'))
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: empty or holds a line break", what);
    if (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t')
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: begins or ends with a blank", what);
    return 0;
}

int vms_config_add_repo(struct vms_config *c, const char *url, const char *identity, bool *added,
                 fsp_error *err)
{
    *added = false;
    int rc = check_value("the repository's location", url, err);
    if (!rc && identity)
        rc = check_value("the key file", identity, err);
    for (size_t i = 0; !rc && i < c->n_repos; i++)
        if (!strcmp(c->repos[i].url, url))
            return 0;
    if (!rc)
        rc = push_repo(c, err);
    struct vms_config_repo *r = rc ? NULL : &c->repos[c->n_repos - 1];
    if (r && (!(r->url = strdup(url)) || (identity && !(r->identity = strdup(identity)))))
        rc = out_of_memory(err);
    *added = !rc;
    return rc;
}

int vms_config_add_seed_folder(struct vms_config *c, const char *folder, fsp_error *err)
{
    int rc = check_value("the seed folder", folder, err);
    return rc ? rc : push_string(&c->seed_folders, &c->n_seed_folders, folder, err);
}

const struct vms_config_checkout *vms_config_find_checkout(const struct vms_config *c, const char *repo,
                                             const char *image)
{
    for (size_t i = 0; i < c->n_checkouts; i++)
        if (!strcmp(c->checkouts[i].repo, repo) && !strcmp(c->checkouts[i].image, image))
            return &c->checkouts[i];
    return NULL;
}

static void checkout_clear(struct vms_config_checkout *k)
{
    free(k->repo);
    free(k->image);
    free(k->file);
    *k = (struct vms_config_checkout){0};
}

/* Fills the record K (empty) with copies; on failure leaves it empty. */
static int checkout_fill(struct vms_config_checkout *k, const char *repo, const char *image,
                         const char *file, fsp_error *err)
{
    k->repo = strdup(repo);
    k->image = strdup(image);
    k->file = strdup(file);
    if (k->repo && k->image && k->file)
        return 0;
    checkout_clear(k);
    return out_of_memory(err);
}

int vms_config_set_checkout(struct vms_config *c, const char *repo, const char *image, const char *file,
                     fsp_error *err)
{
    int rc = check_value("the repository's location", repo, err);
    if (!rc)
        rc = check_value("the image name", image, err);
    if (!rc)
        rc = check_value("the checked-out file", file, err);
    if (rc)
        return rc;
    struct vms_config_checkout *k = (struct vms_config_checkout *)vms_config_find_checkout(c, repo, image), fresh = {0};
    /* filled apart first, so that a failure leaves the old record whole */
    rc = checkout_fill(&fresh, repo, image, file, err);
    if (!rc && !k && !(rc = push_checkout(c, err)))
        k = &c->checkouts[c->n_checkouts - 1];
    if (rc) {
        checkout_clear(&fresh);
        return rc;
    }
    checkout_clear(k);
    *k = fresh;
    return 0;
}

void vms_config_free(struct vms_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_checkouts; i++)
        checkout_clear(&c->checkouts[i]);
    free(c->checkouts);
    for (size_t i = 0; i < c->n_repos; i++) {
        free(c->repos[i].url);
        free(c->repos[i].identity);
    }
    for (size_t i = 0; i < c->n_seed_folders; i++)
        free(c->seed_folders[i]);
    for (size_t i = 0; i < c->n_trusted_keys; i++)
        free(c->trusted_keys[i]);
    free(c->repos);
    free(c->seed_folders);
    free(c->trusted_keys);
    free(c);
}
