/* The settings file: see vmsync.h ("the settings file") for its format. */
#include "vmsync.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum section { SEC_NONE, SEC_REPOSITORY, SEC_SEEDS, SEC_CHECKOUT, SEC_TRUST, SEC_DEFAULTS, SEC_BANDWIDTH };

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

const char *vms_config_system_path(void)
{
    const char *over = getenv("VMSYNC_SYSTEM_CONFIG");
    return over && *over ? over : "/etc/vmsync/vmsync.conf";
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
    if (!strcmp(name, "bandwidth")) {
        p->section = SEC_BANDWIDTH;
        return 0;
    }
    if (!strcmp(name, "defaults")) {
        p->section = SEC_DEFAULTS;
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

/* A remote's name is a word that can never be a path or a URL. */
static bool remote_name_ok(const char *s)
{
    if (!*s || !strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == strlen(s);
}

static int set_rate(struct parser *p, struct vms_config_repo *r, const char *value)
{
    fsp_error why = {0};
    if (r->bwlimit)
        return parse_error(p, "key given twice in one section:", "bwlimit");
    if (vms_parse_size(value, 10, &r->bwlimit, &why) || r->bwlimit < VMS_BWLIMIT_MIN)
        return parse_error(p, "bwlimit is not a rate of at least 8K:", value);
    return 0;
}

static int set_timeout(struct parser *p, struct vms_config_repo *r, const char *value)
{
    char *end;
    long v = strtol(value, &end, 10);
    if (r->timeout)
        return parse_error(p, "key given twice in one section:", "timeout");
    if (end == value || *end || v < 1 || v > 86400)
        return parse_error(p, "timeout is not seconds from 1 to 86400:", value);
    r->timeout = (int)v;
    return 0;
}

static int set_repo_key(struct parser *p, const char *key, const char *value)
{
    struct vms_config_repo *r = &p->cfg->repos[p->cfg->n_repos - 1];
    if (!strcmp(key, "url"))
        return set_once(p, &r->url, key, value);
    if (!strcmp(key, "identity"))
        return set_once(p, &r->identity, key, value);
    if (!strcmp(key, "name") && !remote_name_ok(value))
        return parse_error(p, "a name is letters, digits, '.', '_' and '-', not", value);
    if (!strcmp(key, "name"))
        return set_once(p, &r->name, key, value);
    if (!strcmp(key, "bwlimit"))
        return set_rate(p, r, value);
    if (!strcmp(key, "timeout"))
        return set_timeout(p, r, value);
    return parse_error(p, "unknown key", key);
}

static int add_bw_limit(struct parser *p, const char *value)
{
    struct vms_bw_window w;
    fsp_error why = {0};
    if (vms_bw_window_parse(value, &w, &why))
        return fsp_fail(p->err, FSP_EK_USAGE, -EINVAL, "%s:%u: %s", p->path, p->line, why.msg);
    return push_string(&p->cfg->bw_limits, &p->cfg->n_bw_limits, value, p->err);
}

static int set_key(struct parser *p, const char *key, const char *value)
{
    struct vms_config *c = p->cfg;
    if (p->section == SEC_CHECKOUT)
        return set_checkout_key(p, key, value);
    if (p->section == SEC_REPOSITORY)
        return set_repo_key(p, key, value);
    if (p->section == SEC_BANDWIDTH && !strcmp(key, "limit"))
        return add_bw_limit(p, value);
    if (p->section == SEC_DEFAULTS && !strcmp(key, "repository"))
        return set_once(p, &c->default_repo, key, value);
    if (p->section == SEC_SEEDS && !strcmp(key, "folder"))
        return push_string(&c->seed_folders, &c->n_seed_folders, value, p->err);
    if (p->section == SEC_TRUST && !strcmp(key, "key"))
        return push_string(&c->trusted_keys, &c->n_trusted_keys, value, p->err);
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

/* Every [repository] needs its url, and a name names one of them. */
static int check_repos(struct parser *p)
{
    const struct vms_config *c = p->cfg;
    for (size_t i = 0; i < c->n_repos; i++) {
        if (!c->repos[i].url)
            return fsp_fail(p->err, FSP_EK_USAGE, -EINVAL, "%s: repository %zu of %zu has no url",
                            p->path, i + 1, c->n_repos);
        for (size_t j = 0; c->repos[i].name && j < i; j++)
            if (c->repos[j].name && !strcmp(c->repos[i].name, c->repos[j].name))
                return fsp_fail(p->err, FSP_EK_USAGE, -EINVAL,
                                "%s: two repositories are named '%s'", p->path, c->repos[i].name);
    }
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

static bool listed(char *const *items, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(items[i], s))
            return true;
    return false;
}

static int dup_or_null(char **to, const char *from, fsp_error *err)
{
    if (from && !(*to = strdup(from)))
        return out_of_memory(err);
    return 0;
}

/* Appends a copy of the system file's repository R to C, marked as the system's. */
static int take_system_repo(struct vms_config *c, const struct vms_config_repo *r, fsp_error *err)
{
    int rc = push_repo(c, err);
    struct vms_config_repo *to = rc ? NULL : &c->repos[c->n_repos - 1];
    if (to) {
        *to = (struct vms_config_repo){.bwlimit = r->bwlimit, .timeout = r->timeout, .system = true};
        rc = dup_or_null(&to->url, r->url, err);
    }
    if (!rc)
        rc = dup_or_null(&to->name, r->name, err);
    if (!rc)
        rc = dup_or_null(&to->identity, r->identity, err);
    return rc;
}

/* One of the user's N_USER repositories of R's name, or else of its url,
 * shadows R. */
static bool shadowed(const struct vms_config *user, size_t n_user, const struct vms_config_repo *r)
{
    for (size_t i = 0; i < n_user; i++) {
        const struct vms_config_repo *u = &user->repos[i];
        if ((r->name && u->name && !strcmp(r->name, u->name)) || !strcmp(r->url, u->url))
            return true;
    }
    return false;
}

static int take_system_list(char ***items, size_t *n, char *const *sys, size_t n_sys,
                            fsp_error *err)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < n_sys; i++)
        if (!listed(*items, *n, sys[i]))
            rc = push_string(items, n, sys[i], err);
    return rc;
}

/* Adds to U (the user's file) what the system file S says and U does not.
 * The system's [checkout] records are not taken: they belong to a user. */
static int merge_system(struct vms_config *u, const struct vms_config *s, fsp_error *err)
{
    size_t n_user = u->n_repos;
    int rc = 0;
    if (!u->default_repo && s->default_repo) {
        rc = dup_or_null(&u->default_repo, s->default_repo, err);
        u->default_repo_system = true;
    }
    for (size_t i = 0; !rc && i < s->n_repos; i++)
        if (!shadowed(u, n_user, &s->repos[i]))
            rc = take_system_repo(u, &s->repos[i], err);
    if (!rc)
        rc = take_system_list(&u->seed_folders, &u->n_seed_folders, s->seed_folders,
                              s->n_seed_folders, err);
    if (!rc)
        rc = take_system_list(&u->bw_limits, &u->n_bw_limits, s->bw_limits, s->n_bw_limits, err);
    if (!rc)
        rc = take_system_list(&u->trusted_keys, &u->n_trusted_keys, s->trusted_keys,
                              s->n_trusted_keys, err);
    return rc;
}

int vms_config_load_all(const char *system_path, const char *user_path, struct vms_config **out,
                        fsp_error *err)
{
    struct vms_config *sys = NULL, *user = NULL;
    int rc = vms_config_load(system_path, &sys, err);
    if (!rc)
        rc = vms_config_load(user_path, &user, err);
    if (!rc)
        rc = merge_system(user, sys, err);
    if (!rc) {
        user->system = sys;
        *out = user;
        return 0;
    }
    vms_config_free(sys);
    vms_config_free(user);
    return rc;
}

const struct vms_config_repo *vms_config_find_repo(const struct vms_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_repos; i++)
        if (c->repos[i].name && !strcmp(c->repos[i].name, name))
            return &c->repos[i];
    return NULL;
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

static void write_repo(FILE *f, const struct vms_config_repo *r)
{
    fputs("\n[repository]\n", f);
    if (r->name)
        fprintf(f, "name = %s\n", r->name);
    fprintf(f, "url = %s\n", r->url);
    if (r->identity)
        fprintf(f, "identity = %s\n", r->identity);
    if (r->bwlimit)
        fprintf(f, "bwlimit = %" PRIu64 "\n", r->bwlimit >> 10);
    if (r->timeout)
        fprintf(f, "timeout = %d\n", r->timeout);
}

/* Writes the ITEMS the system file S does not list, under [SECTION] as KEY. */
static void write_list(FILE *f, const char *section, const char *key, char *const *items,
                       size_t n, char *const *sys, size_t n_sys)
{
    bool opened = false;
    for (size_t i = 0; i < n; i++) {
        if (listed(sys, n_sys, items[i]))
            continue;
        if (!opened)
            fprintf(f, "\n[%s]\n", section);
        opened = true;
        fprintf(f, "%s = %s\n", key, items[i]);
    }
}

/* Only the user's own entries: the system file's stay in it. */
static void write_cfg(FILE *f, const struct vms_config *c)
{
    static const struct vms_config none;
    const struct vms_config *sys = c->system ? c->system : &none;
    fputs("# vmsync settings: written by vmsync-gtk, read by vmsync-gtk and vmsync.\n", f);
    if (c->default_repo && !c->default_repo_system)
        fprintf(f, "\n[defaults]\nrepository = %s\n", c->default_repo);
    for (size_t i = 0; i < c->n_repos; i++)
        if (!c->repos[i].system)
            write_repo(f, &c->repos[i]);
    write_list(f, "seeds", "folder", c->seed_folders, c->n_seed_folders, sys->seed_folders,
               sys->n_seed_folders);
    write_list(f, "bandwidth", "limit", c->bw_limits, c->n_bw_limits, sys->bw_limits,
               sys->n_bw_limits);
    write_list(f, "trust", "key", c->trusted_keys, c->n_trusted_keys, sys->trusted_keys,
               sys->n_trusted_keys);
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
        free(c->repos[i].name);
        free(c->repos[i].url);
        free(c->repos[i].identity);
    }
    for (size_t i = 0; i < c->n_bw_limits; i++)
        free(c->bw_limits[i]);
    free(c->bw_limits);
    free(c->default_repo);
    vms_config_free(c->system);
    for (size_t i = 0; i < c->n_seed_folders; i++)
        free(c->seed_folders[i]);
    for (size_t i = 0; i < c->n_trusted_keys; i++)
        free(c->trusted_keys[i]);
    free(c->repos);
    free(c->seed_folders);
    free(c->trusted_keys);
    free(c);
}
