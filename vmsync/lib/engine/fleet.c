/* Reading a fleet file and measuring what each laptop lacks.  The file is
 * hostile: base/jsonread.c parses it strictly; here every key is known, every
 * number in range, every name unique, else the message names the file, the
 * line and the key.  A laptop's needs are the checkout's own plan, with the
 * manifests of what it holds as seeds. */
#include "base/jsonread.h"
#include "engine/fleet.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VMS_FLEET_TEXT_READ VMS_JR_TEXT_MAX

struct parsing {
    struct vms_fleet *f;
    const char *where;
    fsp_error *err;
};

static int nomem(fsp_error *err) { return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

static int bad(struct parsing *p, const struct vms_jr *v, const char *key, const char *what)
{
    return fsp_fail(p->err, FSP_EK_FORMAT, -EINVAL, "%s: line %u, column %u: %s: %s", p->where,
                    v->line, v->column, key, what);
}

/* Refuses a key of OBJ not among KEYS (a typo is never silently ignored). */
static int known_keys(struct parsing *p, const struct vms_jr *obj, const char *const *keys)
{
    for (size_t i = 0; i < obj->n_kids; i++) {
        size_t k = 0;
        while (keys[k] && strcmp(keys[k], obj->kids[i].key))
            k++;
        if (!keys[k])
            return bad(p, &obj->kids[i], obj->kids[i].key, "unknown key");
    }
    return 0;
}

static int want_type(struct parsing *p, const struct vms_jr *v, const char *key, enum vms_jr_type t)
{
    if (v->type == t)
        return 0;
    char what[64];
    snprintf(what, sizeof what, "expected %s", vms_jr_type_name(t));
    return bad(p, v, key, what);
}

static int get_string(struct parsing *p, const struct vms_jr *obj, const char *key, bool required,
                      const char **out)
{
    const struct vms_jr *v = vms_jr_get(obj, key);
    *out = NULL;
    if (!v)
        return required ? bad(p, obj, key, "missing") : 0;
    int rc = want_type(p, v, key, VMS_JR_STRING);
    if (!rc && !v->str[0])
        return bad(p, v, key, "empty");
    if (!rc)
        *out = v->str;
    return rc;
}

/* A whole number from LO to HI, or a size with K, M or G (binary). */
static int get_count(struct parsing *p, const struct vms_jr *v, const char *key, double hi,
                     uint64_t *out)
{
    fsp_error ignored;
    if (v->type == VMS_JR_STRING && !vms_parse_size(v->str, 0, out, &ignored) && (double)*out <= hi)
        return 0;
    if (v->type == VMS_JR_NUMBER && v->num >= 0 && v->num <= hi && v->num == floor(v->num)) {
        *out = (uint64_t)v->num;
        return 0;
    }
    return bad(p, v, key, "expected a whole number of bytes (a number, or a string with K, M or G)");
}

/* A rate: bytes/s as a number or "N[KMG]" (binary, as --bwlimit), or bits/s
 * as "N[kMG]bit" (decimal, as line rates are sold). */
static int parse_rate(struct parsing *p, const struct vms_jr *v, const char *key, double *out)
{
    uint64_t bytes;
    if (v->type == VMS_JR_STRING) {
        char *end;
        double n = strtod(v->str, &end);
        double scale = !strcmp(end, "bit") ? 1 : !strcmp(end, "kbit") ? 1e3 : !strcmp(end, "Mbit") ? 1e6
                     : !strcmp(end, "Gbit") ? 1e9 : 0;
        if (scale && end != v->str && isfinite(n) && n > 0 && n * scale / 8 <= 1e12)
            return *out = n * scale / 8, 0;
    }
    int rc = get_count(p, v, key, 1e12, &bytes);
    if (!rc && !bytes)
        return bad(p, v, key, "a rate of 0");
    if (rc)
        return bad(p, v, key, "expected a rate: bytes/s (a number, or \"10M\") or \"10Mbit\"");
    *out = (double)bytes;
    return 0;
}

static int parse_link(struct parsing *p, const struct vms_jr *obj, struct vms_fleet_link *link)
{
    static const char *const keys[] = {"rate", "rtt_ms", NULL};
    const struct vms_jr *v = vms_jr_get(obj, "link");
    int rc = 0;
    if (!v)
        return 0;
    rc = want_type(p, v, "link", VMS_JR_OBJECT);
    if (!rc)
        rc = known_keys(p, v, keys);
    const struct vms_jr *rate = vms_jr_get(v, "rate"), *rtt = vms_jr_get(v, "rtt_ms");
    if (!rc && !rate)
        return bad(p, v, "link", "no rate");
    if (!rc)
        rc = parse_rate(p, rate, "rate", &link->rate);
    if (!rc && rtt && (rtt->type != VMS_JR_NUMBER || !(rtt->num >= 0 && rtt->num <= 60000)))
        return bad(p, rtt, "rtt_ms", "expected milliseconds from 0 to 60000");
    if (!rc && rtt)
        link->rtt = rtt->num / 1000;
    return rc;
}

/* "HH:MM" into minutes; 24:00 only as an end. */
static bool parse_clock(const char *s, bool end, unsigned *out)
{
    unsigned h, m;
    int n = -1;
    if (sscanf(s, "%2u:%2u%n", &h, &m, &n) != 2 || n != 5 || m > 59 || h > 24 || (h == 24 && (m || !end)))
        return false;
    *out = h * 60 + m;
    return true;
}

static bool parse_window(const char *s, struct vms_fleet_window *w)
{
    char from[8], to[8];
    if (strlen(s) != 11 || s[5] != '-')
        return false;
    memcpy(from, s, 5), from[5] = 0;
    memcpy(to, s + 6, 5), to[5] = 0;
    return parse_clock(from, false, &w->from) && parse_clock(to, true, &w->to) && w->from != w->to;
}

static double window_seconds(const struct vms_fleet_window *w)
{
    return 60.0 * (w->to > w->from ? w->to - w->from : 1440 - w->from + w->to);
}

static int parse_online(struct parsing *p, const struct vms_jr *obj, struct vms_fleet_node *n)
{
    const struct vms_jr *v = vms_jr_get(obj, "online");
    n->online_per_day = 86400;
    if (!v)
        return 0;
    int rc = want_type(p, v, "online", VMS_JR_ARRAY);
    if (!rc && (!v->n_kids || v->n_kids > VMS_FLEET_WINDOWS_MAX))
        return bad(p, v, "online", "expected 1 to 8 windows \"HH:MM-HH:MM\" (leave it out: always)");
    n->online_per_day = 0;
    for (size_t i = 0; !rc && i < v->n_kids; i++) {
        const struct vms_jr *w = &v->kids[i];
        if (w->type != VMS_JR_STRING || !parse_window(w->str, &n->windows[i]))
            return bad(p, w, "online", "expected a window \"HH:MM-HH:MM\" (local time, daily)");
        n->online_per_day += window_seconds(&n->windows[i]);
    }
    n->n_windows = v->n_kids;
    if (n->online_per_day > 86400)
        n->online_per_day = 86400;
    return rc;
}

static int string_list(struct parsing *p, const struct vms_jr *obj, const char *key, char ***out,
                       size_t *n)
{
    const struct vms_jr *v = vms_jr_get(obj, key);
    if (!v)
        return 0;
    int rc = want_type(p, v, key, VMS_JR_ARRAY);
    if (!rc && v->n_kids > VMS_FLEET_SEEDS_MAX)
        return bad(p, v, key, "more than 16 seeds");
    if (!rc && !(*out = calloc(v->n_kids + 1, sizeof **out)))
        return nomem(p->err);
    for (size_t i = 0; !rc && i < v->n_kids; i++) {
        rc = want_type(p, &v->kids[i], key, VMS_JR_STRING);
        if (!rc && !((*out)[i] = strdup(v->kids[i].str)))
            rc = nomem(p->err);
        *n = i + !rc;
    }
    return rc;
}

/* A command, word by word ("run", "warm"; vmsync fleet run): no shell reads
 * it.  Its words point into the tree. */
static int parse_words(struct parsing *p, const struct vms_jr *obj, const char *key, const char ***out)
{
    const struct vms_jr *v = vms_jr_get(obj, key);
    if (!v)
        return 0;
    int rc = want_type(p, v, key, VMS_JR_ARRAY);
    if (!rc && (!v->n_kids || v->n_kids > VMS_FLEET_RUN_ARGS_MAX))
        return bad(p, v, key, "expected a command of 1 to 256 words: [\"ssh\", \"host\", \"vmsync\", ...]");
    if (!rc && !(*out = calloc(v->n_kids + 1, sizeof **out)))
        return nomem(p->err);
    for (size_t i = 0; !rc && i < v->n_kids; i++) {
        rc = want_type(p, &v->kids[i], key, VMS_JR_STRING);
        if (!rc && !v->kids[i].str[0])
            rc = bad(p, &v->kids[i], key, "an empty word");
        if (!rc)
            (*out)[i] = v->kids[i].str;
    }
    return rc;
}

/* ---- branches and laptops ---------------------------------------------------------- */

static int find_site(const struct vms_fleet *f, const char *name, size_t *at)
{
    for (size_t i = 0; i < f->n_sites; i++)
        if (!strcmp(f->sites[i].out.name, name))
            return *at = i, 0;
    return -ENOENT;
}

/* "offline": no link reaches the branch, a bundle does: none of the keys
 * about links goes with it. */
static int parse_offline(struct parsing *p, const struct vms_jr *b, struct vms_fleet_site *s)
{
    static const char *const linked[] = {"link", "reflector", "lan", "upstream_bytes", "warm", NULL};
    const struct vms_jr *v = vms_jr_get(b, "offline");
    int rc = v ? want_type(p, v, "offline", VMS_JR_BOOL) : 0;
    s->out.offline = v && v->flag;
    for (size_t i = 0; !rc && s->out.offline && linked[i]; i++)
        if (vms_jr_get(b, linked[i]))
            return bad(p, vms_jr_get(b, linked[i]), linked[i], "an offline branch has no link");
    return rc;
}

static int parse_branch(struct parsing *p, const struct vms_jr *b, struct vms_fleet_site *s)
{
    static const char *const keys[] = {"name", "link", "reflector", "lan", "upstream_bytes", "warm",
                                       "offline", NULL};
    const struct vms_jr *refl = vms_jr_get(b, "reflector"), *lan = vms_jr_get(b, "lan"),
                        *up = vms_jr_get(b, "upstream_bytes");
    size_t dup;
    int rc = want_type(p, b, "branches", VMS_JR_OBJECT);
    if (!rc)
        rc = known_keys(p, b, keys);
    if (!rc)
        rc = get_string(p, b, "name", true, &s->out.name);
    if (!rc && find_site(p->f, s->out.name, &dup) == 0)
        return bad(p, b, "name", "a second branch of this name");
    if (!rc)
        rc = parse_link(p, b, &s->link);
    if (!rc && refl)
        rc = want_type(p, refl, "reflector", VMS_JR_BOOL);
    s->out.reflector = refl && refl->flag;
    s->lan = 125e6; /* 1 Gbit/s */
    if (!rc && lan)
        rc = parse_rate(p, lan, "lan", &s->lan);
    if (!rc && up)
        rc = get_count(p, up, "upstream_bytes", 0x1p53, &s->upstream_given);
    s->has_upstream_given = up != NULL;
    if (!rc)
        rc = parse_words(p, b, "warm", &s->warm);
    if (!rc && s->warm && !s->out.reflector)
        return bad(p, vms_jr_get(b, "warm"), "warm", "only a branch with a reflector is warmed");
    s->out.warm = s->warm;
    return rc ? rc : parse_offline(p, b, s);
}

static int parse_branches(struct parsing *p, const struct vms_jr *root)
{
    const struct vms_jr *v = vms_jr_get(root, "branches");
    if (!v)
        return bad(p, root, "branches", "missing");
    int rc = want_type(p, v, "branches", VMS_JR_ARRAY);
    if (!rc && (!v->n_kids || v->n_kids > VMS_FLEET_BRANCHES_MAX))
        return bad(p, v, "branches", "expected 1 to 1000 branches");
    if (!rc && !(p->f->sites = calloc(v->n_kids, sizeof *p->f->sites)))
        return nomem(p->err);
    for (size_t i = 0; !rc && i < v->n_kids; i++) {
        rc = parse_branch(p, &v->kids[i], &p->f->sites[i]);
        p->f->n_sites = i + 1;
    }
    return rc;
}

static int parse_needs(struct parsing *p, const struct vms_jr *l, struct vms_fleet_node *n)
{
    const struct vms_jr *bytes = vms_jr_get(l, "bytes");
    int rc = string_list(p, l, "versions", &n->versions, &n->n_versions);
    if (!rc)
        rc = string_list(p, l, "manifests", &n->manifests, &n->n_manifests);
    if (!rc && bytes && (n->versions || n->manifests))
        return bad(p, bytes, "bytes", "give a laptop's bytes, or its seeds, not both");
    if (!rc && bytes)
        rc = get_count(p, bytes, "bytes", 0x1p53, &n->out.bytes);
    n->out.measured = !bytes;
    return rc;
}

static int parse_laptop(struct parsing *p, const struct vms_jr *l, struct vms_fleet_node *n)
{
    static const char *const keys[] = {"name", "branch", "link", "online", "versions", "manifests",
                                       "bytes", "run", NULL};
    int rc = want_type(p, l, "laptops", VMS_JR_OBJECT);
    if (!rc)
        rc = known_keys(p, l, keys);
    if (!rc)
        rc = get_string(p, l, "name", true, &n->out.name);
    if (!rc)
        rc = get_string(p, l, "branch", true, &n->out.branch);
    if (!rc && find_site(p->f, n->out.branch, &n->branch))
        return bad(p, vms_jr_get(l, "branch"), "branch", "no branch of this name");
    if (!rc)
        rc = parse_link(p, l, &n->link);
    if (!rc)
        rc = parse_online(p, l, n);
    if (!rc)
        rc = parse_needs(p, l, n);
    if (!rc)
        rc = parse_words(p, l, "run", &n->run);
    n->out.run = n->run;
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct vms_fleet_node *)a)->out.name, ((const struct vms_fleet_node *)b)->out.name);
}

/* Names are unique: sorted (the report lists laptops by name), then compared. */
static int unique_laptops(struct parsing *p)
{
    struct vms_fleet *f = p->f;
    qsort(f->nodes, f->n_nodes, sizeof *f->nodes, by_name);
    for (size_t i = 1; i < f->n_nodes; i++)
        if (!strcmp(f->nodes[i].out.name, f->nodes[i - 1].out.name))
            return fsp_fail(p->err, FSP_EK_FORMAT, -EINVAL, "%s: two laptops named \"%.64s\"",
                            p->where, f->nodes[i].out.name);
    return 0;
}

static int parse_laptops(struct parsing *p, const struct vms_jr *root)
{
    const struct vms_jr *v = vms_jr_get(root, "laptops");
    if (!v)
        return bad(p, root, "laptops", "missing");
    int rc = want_type(p, v, "laptops", VMS_JR_ARRAY);
    if (!rc && (!v->n_kids || v->n_kids > VMS_FLEET_LAPTOPS_MAX))
        return bad(p, v, "laptops", "expected 1 to 20000 laptops");
    if (!rc && !(p->f->nodes = calloc(v->n_kids, sizeof *p->f->nodes)))
        return nomem(p->err);
    for (size_t i = 0; !rc && i < v->n_kids; i++) {
        rc = parse_laptop(p, &v->kids[i], &p->f->nodes[i]);
        p->f->n_nodes = i + 1;
    }
    return rc ? rc : unique_laptops(p);
}

/* ---- the document ---------------------------------------------------------------- */

static int parse_rollout(struct parsing *p, const struct vms_jr *root)
{
    const struct vms_jr *ver = vms_jr_get(root, "version"), *server = vms_jr_get(root, "server");
    const struct vms_jr *uplink = server ? vms_jr_get(server, "uplink") : NULL;
    static const char *const server_keys[] = {"uplink", NULL};
    const char *s;
    int rc = get_string(p, root, "image", true, &s);
    if (!rc && !(p->f->image = strdup(s)))
        return nomem(p->err);
    if (!rc && ver && (ver->type != VMS_JR_NUMBER || ver->num < 1 || ver->num > UINT32_MAX ||
                       ver->num != floor(ver->num)))
        return bad(p, ver, "version", "expected a version number (leave it out: the latest)");
    p->f->version = ver && !rc ? (uint32_t)ver->num : 0;
    if (!rc)
        rc = get_string(p, root, "repository", false, &s);
    if (!rc && s && !(p->f->repository = strdup(s)))
        return nomem(p->err);
    if (!rc && !uplink)
        return bad(p, server ? server : root, "server", "needs its uplink");
    if (!rc)
        rc = want_type(p, server, "server", VMS_JR_OBJECT);
    if (!rc)
        rc = known_keys(p, server, server_keys);
    return rc ? rc : parse_rate(p, uplink, "uplink", &p->f->uplink);
}

static int parse_start(struct parsing *p, const struct vms_jr *root)
{
    const char *s;
    unsigned minute = 0;
    int rc = get_string(p, root, "start", false, &s);
    if (!rc && s && !parse_clock(s, false, &minute))
        return bad(p, vms_jr_get(root, "start"), "start", "expected \"HH:MM\" (local time)");
    p->f->start_second = minute * 60.0;
    return rc;
}

static int parse_fleet(struct parsing *p, const struct vms_jr *root)
{
    static const char *const keys[] = {"repository", "image", "version", "start", "server",
                                       "branches", "laptops", NULL};
    int rc = want_type(p, root, "the document", VMS_JR_OBJECT);
    if (!rc)
        rc = known_keys(p, root, keys);
    if (!rc)
        rc = parse_rollout(p, root);
    if (!rc)
        rc = parse_start(p, root);
    if (!rc)
        rc = parse_branches(p, root);
    if (!rc)
        rc = parse_laptops(p, root);
    return rc;
}

int vms_fleet_parse(const char *text, size_t len, const char *where, const char *dir,
                    vms_fleet **out, fsp_error *err)
{
    struct vms_fleet *f = calloc(1, sizeof *f);
    struct parsing p = {f, where, err};
    *out = NULL;
    if (!f)
        return nomem(err);
    int rc = (f->dir = strdup(dir ? dir : ".")) ? 0 : nomem(err);
    if (!rc)
        rc = vms_jr_parse(text, len, where, &f->tree, err);
    if (!rc)
        rc = parse_fleet(&p, f->tree);
    if (rc)
        vms_fleet_free(f);
    else
        *out = f;
    return rc;
}

int vms_fleet_load(const char *path, vms_fleet **out, fsp_error *err)
{
    char *text = NULL, dir[PATH_MAX];
    size_t len = 0;
    *out = NULL;
    FILE *in = fopen(path, "rb");
    if (!in)
        return fsp_fail(err, FSP_EK_OPEN, -errno, "%s: cannot open: %s", path, strerror(errno));
    text = malloc(VMS_FLEET_TEXT_READ + 1);
    if (text)
        len = fread(text, 1, VMS_FLEET_TEXT_READ + 1, in);
    int rc = !text ? nomem(err) : ferror(in) ? fsp_fail(err, FSP_EK_IO, -EIO, "%s: cannot read", path) : 0;
    fclose(in);
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    if (!rc)
        rc = vms_fleet_parse(text, len, path, slash == path ? "/" : dir, out, err);
    free(text);
    return rc;
}

const char *vms_fleet_repository(const vms_fleet *f) { return f->repository; }

bool vms_fleet_needs_repository(const vms_fleet *f)
{
    for (size_t i = 0; i < f->n_nodes; i++)
        if (f->nodes[i].out.measured)
            return true;
    return false;
}

void vms_fleet_free(vms_fleet *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_nodes; i++) {
        for (size_t k = 0; k < f->nodes[i].n_versions; k++)
            free(f->nodes[i].versions[k]);
        for (size_t k = 0; k < f->nodes[i].n_manifests; k++)
            free(f->nodes[i].manifests[k]);
        free(f->nodes[i].versions);
        free(f->nodes[i].manifests);
        free(f->nodes[i].run);
    }
    for (size_t i = 0; i < f->n_sites; i++)
        free(f->sites[i].warm);
    for (size_t i = 0; i < f->n_sites; i++)
        if (f->sites[i].held) {
            vms_keyset_free(f->sites[i].held);
            free(f->sites[i].held);
        }
    vms_jr_free(f->tree);
    free(f->nodes);
    free(f->sites);
    free(f->laptops);
    free(f->branches);
    free(f->dir);
    free(f->repository);
    free(f->image);
    free(f);
}
