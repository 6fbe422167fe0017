/* vms_inspect: what an image holds (partitions, filesystems, file counts and
 * the operating system), from a metadata-only scan. */
#include "vmsync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct inspector {
    struct vms_inspect_result *r;
    size_t cap;
    struct vms_inspect_volume *last; /* the volume the entries arrive for */
    fsp_error *err;
};

static int i_image(void *ctx, const struct fsp_image_info *info)
{
    struct vms_inspect_result *r = ((struct inspector *)ctx)->r;
    r->size = info->size;
    snprintf(r->format, sizeof r->format, "%s", info->format);
    snprintf(r->table, sizeof r->table, "%s", info->table);
    return 0;
}

static int i_volume(void *ctx, const struct fsp_volume_info *v)
{
    struct inspector *in = ctx;
    struct vms_inspect_result *r = in->r;
    if (r->n_volumes == in->cap) {
        size_t cap = in->cap ? 2 * in->cap : 8;
        struct vms_inspect_volume *p = reallocarray(r->volumes, cap, sizeof *p);
        if (!p)
            return fsp_fail(in->err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
        r->volumes = p;
        in->cap = cap;
    }
    r->volumes[r->n_volumes] = (struct vms_inspect_volume){.info = *v};
    r->n_volumes++;
    in->last = NULL; /* the array may have moved */
    return 0;
}

/* The OS is recognised by files that only it has. */
static const char *os_hint(const char *path)
{
    static const struct { const char *path, *os; } marks[] = {
        {"/Windows/System32/ntoskrnl.exe", "windows"},
        {"/etc/debian_version", "linux (debian family)"},
        {"/etc/redhat-release", "linux (red hat family)"},
        {"/etc/alpine-release", "linux (alpine)"},
        {"/etc/os-release", "linux"},
    };
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
        if (!strcasecmp(path, marks[i].path))
            return marks[i].os;
    return NULL;
}

static struct vms_inspect_volume *volume_of(struct inspector *in, uint32_t index)
{
    if (in->last && in->last->info.index == index)
        return in->last;
    for (uint32_t i = 0; i < in->r->n_volumes; i++)
        if (in->r->volumes[i].info.index == index)
            return in->last = &in->r->volumes[i];
    return NULL;
}

static void count_entry(struct vms_inspect_volume *v, const struct fsp_entry *e)
{
    if (e->type == FSP_T_REG) {
        v->files++;
        if (!(e->flags & FSP_ENTRY_HARDLINK))
            v->file_bytes += e->size;
    } else if (e->type == FSP_T_DIR) {
        v->dirs++;
    } else if (e->type == FSP_T_SYMLINK) {
        v->symlinks++;
    } else {
        v->other++;
    }
}

static int i_entry(void *ctx, uint64_t seq, const struct fsp_entry *e)
{
    struct vms_inspect_volume *v = volume_of(ctx, e->volume);
    if (!v)
        return 0;
    count_entry(v, e);
    const char *os = os_hint(e->path);
    /* os-release is the weakest hint: a distribution marker found later wins. */
    if (os && (!v->os || !strcmp(v->os, "linux")))
        v->os = os;
    return 0;
}

static int i_warning(void *ctx, uint32_t volume, const char *path, const char *msg)
{
    ((struct inspector *)ctx)->r->warnings++;
    return 0;
}

static int i_done(void *ctx, const struct fsp_summary *s)
{
    ((struct inspector *)ctx)->r->allocated_bytes = s->allocated_bytes;
    return 0;
}

/* Asks virt-inspector for the product name; NULL with the reason in R->guestfs_note. */
static void ask_guestfs(const char *image, struct vms_inspect_result *r)
{
    char cmd[4600];
    if (strchr(image, '\'')) {
        r->guestfs_note = "the image path contains a quote";
        return;
    }
    if (system("command -v virt-inspector >/dev/null 2>&1") != 0) {
        r->guestfs_note = "virt-inspector (libguestfs-tools) is not installed";
        return;
    }
    snprintf(cmd, sizeof cmd, "virt-inspector --no-applications --no-icon -a '%s' 2>/dev/null", image);
    FILE *p = popen(cmd, "re");
    char line[1024];
    while (p && fgets(line, sizeof line, p)) {
        char *start = strstr(line, "<product_name>");
        char *end = start ? strstr(start, "</product_name>") : NULL;
        if (start && end && !r->guestfs_os)
            r->guestfs_os = strndup(start + 14, (size_t)(end - start - 14));
    }
    if (p)
        pclose(p);
    if (!r->guestfs_os)
        r->guestfs_note = "libguestfs found no operating system";
}

int vms_inspect(const char *image, const struct vms_inspect_opts *o,
                struct vms_inspect_result **out, fsp_error *err)
{
    struct inspector in = {.r = calloc(1, sizeof *in.r), .err = err};
    *out = NULL;
    if (!in.r)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    struct fsp_sink sink = {.image = i_image, .volume = i_volume, .entry = i_entry,
                            .warning = i_warning, .done = i_done, .ctx = &in};
    int rc = vms_load(image, FSP_SCAN_NO_DATA, &sink, err);
    if (!rc && o && o->guestfs)
        ask_guestfs(image, in.r);
    if (rc)
        vms_inspect_free(in.r);
    else
        *out = in.r;
    return rc;
}

void vms_inspect_free(struct vms_inspect_result *r)
{
    if (!r)
        return;
    free(r->volumes);
    free(r->guestfs_os);
    free(r);
}
