/* Comparing two images or manifests.  Both sides are sorted with entry_cmp and
 * merged with the same entry_cmp: sorting with one comparison and merging with
 * another is how virt-diff reports phantom changes.  Files that disappear at
 * one path and appear with the same content at another are moves, and a
 * directory whose files all moved to one new directory moved with them. */
#include "vmsync.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

struct item {
    uint32_t volume;
    uint8_t type;
    bool has_sha;
    uint32_t mode, uid, gid;
    uint64_t size;
    uint8_t sha256[FSP_SHA256_LEN];  /* unnamed data stream */
    uint8_t streams[FSP_SHA256_LEN]; /* hash over the named streams */
    char *path;
    char *symlink;
};

struct side {
    struct item *items;
    size_t n, cap;
    int oom;
};

/* Named streams (NTFS ADS) are rare; one hash over their names and contents
 * is enough to tell whether they changed. */
static void hash_named_streams(const struct fsp_entry *e, uint8_t out[FSP_SHA256_LEN])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int len = FSP_SHA256_LEN;
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        return;
    }
    for (uint32_t i = 0; i < e->n_streams; i++) {
        const struct fsp_stream *st = &e->streams[i];
        if (!st->name)
            continue;
        EVP_DigestUpdate(md, st->name, strlen(st->name) + 1);
        EVP_DigestUpdate(md, st->sha256, FSP_SHA256_LEN);
    }
    EVP_DigestFinal_ex(md, out, &len);
    EVP_MD_CTX_free(md);
}

static int collect_entry(void *ctx, uint64_t seq, const struct fsp_entry *e)
{
    struct side *s = ctx;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        struct item *grown = realloc(s->items, cap * sizeof *grown);
        if (!grown)
            return s->oom = -ENOMEM;
        s->items = grown;
        s->cap = cap;
    }
    struct item *it = &s->items[s->n];
    memset(it, 0, sizeof *it);
    it->volume = e->volume;
    it->type = e->type;
    it->mode = e->mode;
    it->uid = e->uid;
    it->gid = e->gid;
    it->size = e->size;
    it->path = strdup(e->path);
    it->symlink = e->symlink ? strdup(e->symlink) : NULL;
    if (!it->path || (e->symlink && !it->symlink)) {
        free(it->path);
        free(it->symlink);
        return s->oom = -ENOMEM;
    }
    for (uint32_t i = 0; i < e->n_streams; i++) {
        const struct fsp_stream *st = &e->streams[i];
        if (!st->name) {
            it->has_sha = !(st->flags & (FSP_STREAM_UNREADABLE | FSP_STREAM_NOT_HASHED));
            memcpy(it->sha256, st->sha256, FSP_SHA256_LEN);
        }
    }
    hash_named_streams(e, it->streams);
    s->n++;
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    const struct item *x = a, *y = b;
    if (x->volume != y->volume)
        return x->volume < y->volume ? -1 : 1;
    return strcmp(x->path, y->path); /* bytewise: no locale */
}

static void side_free(struct side *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->items[i].path);
        free(s->items[i].symlink);
    }
    free(s->items);
}

static int load_side(const char *path, struct side *s, fsp_error *err)
{
    struct fsp_sink sink = {.entry = collect_entry, .ctx = s};
    int rc = vms_load(path, 0, &sink, err);
    if (!rc && s->oom)
        rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory reading %s", path);
    if (!rc && s->n) /* an empty side has no array, and qsort must not see NULL */
        qsort(s->items, s->n, sizeof *s->items, entry_cmp);
    return rc;
}

static uint32_t what_changed(const struct item *a, const struct item *b)
{
    uint32_t what = 0;
    if (a->type != b->type)
        return VMS_WHAT_TYPE;
    if (a->type == FSP_T_REG && (a->has_sha != b->has_sha || memcmp(a->sha256, b->sha256, FSP_SHA256_LEN)))
        what |= VMS_WHAT_CONTENT;
    if (a->type == FSP_T_REG && a->size != b->size)
        what |= VMS_WHAT_SIZE;
    if ((a->mode & 07777) != (b->mode & 07777))
        what |= VMS_WHAT_MODE;
    if (a->uid != b->uid || a->gid != b->gid)
        what |= VMS_WHAT_OWNER;
    if ((a->symlink || b->symlink) && (!a->symlink || !b->symlink || strcmp(a->symlink, b->symlink)))
        what |= VMS_WHAT_SYMLINK;
    if (memcmp(a->streams, b->streams, FSP_SHA256_LEN))
        what |= VMS_WHAT_STREAMS;
    return what;
}

struct result {
    struct vms_diff_item *items;
    size_t n, cap;
};

static int push(struct result *r, struct vms_diff_item it)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        struct vms_diff_item *grown = realloc(r->items, cap * sizeof *grown);
        if (!grown)
            return -ENOMEM;
        r->items = grown;
        r->cap = cap;
    }
    r->items[r->n++] = it;
    return 0;
}

static bool movable(const struct item *it)
{
    return it->type == FSP_T_REG && it->has_sha && it->size > 0;
}

static int cmp_by_sha(const void *a, const void *b)
{
    const struct item *x = *(struct item *const *)a, *y = *(struct item *const *)b;
    int c = memcmp(x->sha256, y->sha256, FSP_SHA256_LEN);
    if (c)
        return c;
    if (x->volume != y->volume)
        return x->volume < y->volume ? -1 : 1;
    return strcmp(x->path, y->path);
}

/* Pairs removed and added files of equal content, in path order, as moves.
 * MOVED_TO[i] gets the added file that removed[i] became, and that added slot
 * is cleared. */
static void pair_moves(struct item **removed, size_t n_rem, struct item **added, size_t n_add,
                       struct item **moved_to)
{
    qsort(removed, n_rem, sizeof *removed, cmp_by_sha);
    qsort(added, n_add, sizeof *added, cmp_by_sha);
    size_t i = 0, j = 0;
    while (i < n_rem && j < n_add) {
        int c = memcmp(removed[i]->sha256, added[j]->sha256, FSP_SHA256_LEN);
        if (!c && removed[i]->volume != added[j]->volume)
            c = removed[i]->volume < added[j]->volume ? -1 : 1;
        if (c < 0) {
            i++;
        } else if (c > 0) {
            j++;
        } else {
            moved_to[i] = added[j];
            added[j] = NULL;
            i++;
            j++;
        }
    }
}

/* Where a removed directory went: to E when some moved file went from DIR/X to
 * E/X (at any depth, so a directory holding only subdirectories moves too).
 * Returns a malloc'd E, or NULL. */
static char *dir_moved_to(const struct item *dir, struct item **removed, size_t n_rem,
                          struct item **moved_to)
{
    size_t dlen = strlen(dir->path);
    for (size_t i = 0; i < n_rem; i++) {
        if (!moved_to[i] || removed[i]->volume != dir->volume)
            continue;
        const char *from = removed[i]->path, *to = moved_to[i]->path;
        if (strncmp(from, dir->path, dlen) || from[dlen] != '/')
            continue;
        const char *rest = from + dlen; /* "/X" */
        size_t tlen = strlen(to), rlen = strlen(rest);
        if (tlen > rlen && !strcmp(to + tlen - rlen, rest))
            return strndup(to, tlen - rlen);
    }
    return NULL;
}

static int cmp_result(const void *a, const void *b)
{
    const struct vms_diff_item *x = a, *y = b;
    if (x->volume != y->volume)
        return x->volume < y->volume ? -1 : 1;
    int c = strcmp(x->path, y->path);
    return c ? c : (int)x->change - (int)y->change;
}

struct lists {
    struct item **removed, **added, **moved_to;
    size_t n_rem, n_add;
    struct item **removed_dirs, **added_dirs;
    size_t n_rdirs, n_adirs;
};

static int classify(struct side *a, struct side *b, struct lists *l, struct result *res)
{
    size_t i = 0, j = 0;
    l->removed = calloc(a->n + 1, sizeof *l->removed);
    l->added = calloc(b->n + 1, sizeof *l->added);
    l->moved_to = calloc(a->n + 1, sizeof *l->moved_to);
    l->removed_dirs = calloc(a->n + 1, sizeof *l->removed_dirs);
    l->added_dirs = calloc(b->n + 1, sizeof *l->added_dirs);
    if (!l->removed || !l->added || !l->moved_to || !l->removed_dirs || !l->added_dirs)
        return -ENOMEM;
    while (i < a->n || j < b->n) {
        int c = i == a->n ? 1 : j == b->n ? -1 : entry_cmp(&a->items[i], &b->items[j]);
        if (c < 0) {
            struct item *it = &a->items[i++];
            if (movable(it))
                l->removed[l->n_rem++] = it;
            else if (it->type == FSP_T_DIR)
                l->removed_dirs[l->n_rdirs++] = it;
            else if (push(res, (struct vms_diff_item){VMS_REMOVED, it->volume, it->path, NULL, 0}))
                return -ENOMEM;
        } else if (c > 0) {
            struct item *it = &b->items[j++];
            if (movable(it))
                l->added[l->n_add++] = it;
            else if (it->type == FSP_T_DIR)
                l->added_dirs[l->n_adirs++] = it;
            else if (push(res, (struct vms_diff_item){VMS_ADDED, it->volume, it->path, NULL, 0}))
                return -ENOMEM;
        } else {
            uint32_t what = what_changed(&a->items[i], &b->items[j]);
            if (what && push(res, (struct vms_diff_item){VMS_CHANGED, b->items[j].volume,
                                                         b->items[j].path, NULL, what}))
                return -ENOMEM;
            i++;
            j++;
        }
    }
    return 0;
}

static int report_moves(struct lists *l, struct result *res)
{
    pair_moves(l->removed, l->n_rem, l->added, l->n_add, l->moved_to);
    for (size_t i = 0; i < l->n_rem; i++) {
        struct item *it = l->removed[i];
        struct vms_diff_item d = {VMS_REMOVED, it->volume, it->path, NULL, 0};
        if (l->moved_to[i])
            d = (struct vms_diff_item){VMS_MOVED, it->volume, l->moved_to[i]->path, it->path, 0};
        if (push(res, d))
            return -ENOMEM;
    }
    for (size_t j = 0; j < l->n_add; j++)
        if (l->added[j] && push(res, (struct vms_diff_item){VMS_ADDED, l->added[j]->volume,
                                                            l->added[j]->path, NULL, 0}))
            return -ENOMEM;
    for (size_t i = 0; i < l->n_rdirs; i++) {
        struct item *dir = l->removed_dirs[i];
        char *to = dir_moved_to(dir, l->removed, l->n_rem, l->moved_to);
        struct vms_diff_item d = {VMS_REMOVED, dir->volume, dir->path, NULL, 0};
        for (size_t k = 0; to && k < l->n_adirs; k++) {
            if (l->added_dirs[k] && l->added_dirs[k]->volume == dir->volume &&
                !strcmp(l->added_dirs[k]->path, to)) {
                d = (struct vms_diff_item){VMS_MOVED, dir->volume, l->added_dirs[k]->path, dir->path, 0};
                l->added_dirs[k] = NULL;
                break;
            }
        }
        free(to);
        if (push(res, d))
            return -ENOMEM;
    }
    for (size_t k = 0; k < l->n_adirs; k++)
        if (l->added_dirs[k] && push(res, (struct vms_diff_item){VMS_ADDED, l->added_dirs[k]->volume,
                                                                 l->added_dirs[k]->path, NULL, 0}))
            return -ENOMEM;
    return 0;
}

int vms_diff(const char *a_path, const char *b_path, vms_diff_cb cb, void *ctx, fsp_error *err)
{
    struct side a = {0}, b = {0};
    struct lists l = {0};
    struct result res = {0};
    int rc = load_side(a_path, &a, err);
    if (!rc)
        rc = load_side(b_path, &b, err);
    if (!rc && (classify(&a, &b, &l, &res) || report_moves(&l, &res)))
        rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory comparing %s and %s", a_path, b_path);
    if (!rc) {
        if (res.n)
            qsort(res.items, res.n, sizeof *res.items, cmp_result);
        for (size_t i = 0; i < res.n && !rc; i++)
            rc = cb(ctx, &res.items[i]);
    }
    free(res.items);
    free(l.removed);
    free(l.added);
    free(l.moved_to);
    free(l.removed_dirs);
    free(l.added_dirs);
    side_free(&a);
    side_free(&b);
    return rc;
}

const char *vms_what_name(uint32_t bit)
{
    switch (bit) {
    case VMS_WHAT_CONTENT: return "content";
    case VMS_WHAT_TYPE: return "type";
    case VMS_WHAT_MODE: return "mode";
    case VMS_WHAT_OWNER: return "owner";
    case VMS_WHAT_SYMLINK: return "symlink";
    case VMS_WHAT_SIZE: return "size";
    case VMS_WHAT_STREAMS: return "streams";
    default: return "?";
    }
}
