/* vmsync inspect IMAGE: partitions, filesystems, file counts, allocated bytes and
 * the operating system, from a metadata-only scan (no file data is read). */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const usage =
    "usage: vmsync inspect IMAGE [--json] [--guestfs]\n"
    "\n"
    "Prints the partition table, each partition's filesystem, its file count and\n"
    "allocated bytes, and the operating system found on it.  Only metadata is read.\n"
    "\n"
    "  --json      machine-readable output\n"
    "  --guestfs   also ask libguestfs (virt-inspector) for the OS; slow: it boots an\n"
    "              appliance (set LIBGUESTFS_BACKEND_SETTINGS=force_tcg without KVM)\n"
    "  --allow-backing DIR  IMAGE may name backing files and extents under DIR too,\n"
    "              not only in its own folder (repeatable)\n"
    "  -h, --help  this help\n";

#define MAX_VOLS 256

struct vol_stats {
    struct fsp_volume_info info;
    uint64_t files, dirs, symlinks, other, file_bytes;
    char os[64];
};

struct inspector {
    struct fsp_image_info image;
    char format[32], table[8];
    struct vol_stats vols[MAX_VOLS];
    uint32_t n;
    uint64_t allocated, warnings;
};

static int i_image(void *ctx, const struct fsp_image_info *info)
{
    struct inspector *in = ctx;
    in->image = *info;
    snprintf(in->format, sizeof in->format, "%s", info->format);
    snprintf(in->table, sizeof in->table, "%s", info->table);
    return 0;
}

static int i_volume(void *ctx, const struct fsp_volume_info *v)
{
    struct inspector *in = ctx;
    if (in->n < MAX_VOLS)
        in->vols[in->n++].info = *v;
    return 0;
}

/* The OS is recognised by files that only it has. */
static const char *os_hint(const struct fsp_entry *e)
{
    static const struct { const char *path, *os; } marks[] = {
        {"/Windows/System32/ntoskrnl.exe", "windows"},
        {"/etc/debian_version", "linux (debian family)"},
        {"/etc/redhat-release", "linux (red hat family)"},
        {"/etc/alpine-release", "linux (alpine)"},
        {"/etc/os-release", "linux"},
    };
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
        if (!strcasecmp(e->path, marks[i].path))
            return marks[i].os;
    return NULL;
}

static int i_entry(void *ctx, uint64_t seq, const struct fsp_entry *e)
{
    struct inspector *in = ctx;
    struct vol_stats *v = NULL;
    for (uint32_t i = 0; i < in->n; i++)
        if (in->vols[i].info.index == e->volume)
            v = &in->vols[i];
    if (!v)
        return 0;
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
    const char *os = os_hint(e);
    /* os-release is the weakest hint: a distribution marker found later wins. */
    if (os && (!v->os[0] || !strcmp(v->os, "linux")))
        snprintf(v->os, sizeof v->os, "%s", os);
    return 0;
}

static int i_warning(void *ctx, uint32_t volume, const char *path, const char *msg)
{
    ((struct inspector *)ctx)->warnings++;
    return 0;
}

static int i_done(void *ctx, const struct fsp_summary *s)
{
    ((struct inspector *)ctx)->allocated = s->allocated_bytes;
    return 0;
}

/* Runs virt-inspector and returns its product name, or NULL with a reason. */
static char *guestfs_os(const char *image, const char **why)
{
    char cmd[4600];
    snprintf(cmd, sizeof cmd, "virt-inspector --no-applications --no-icon -a '%s' 2>/dev/null", image);
    if (strchr(image, '\'')) {
        *why = "the image path contains a quote";
        return NULL;
    }
    if (system("command -v virt-inspector >/dev/null 2>&1") != 0) {
        *why = "virt-inspector (libguestfs-tools) is not installed";
        return NULL;
    }
    FILE *p = popen(cmd, "r");
    char line[1024], *found = NULL;
    while (p && fgets(line, sizeof line, p)) {
        char *start = strstr(line, "<product_name>");
        char *end = start ? strstr(start, "</product_name>") : NULL;
        if (start && end && !found)
            found = strndup(start + 14, (size_t)(end - start - 14));
    }
    if (p)
        pclose(p);
    if (!found)
        *why = "libguestfs found no operating system";
    return found;
}

/* The label and the OS name are the image's words: quoted when not plain. */
static void print_text_volume(const struct vol_stats *v)
{
    printf("  volume %u: start %llu, %llu bytes, ", v->info.index, (unsigned long long)v->info.start,
           (unsigned long long)v->info.length);
    vms_put_name(stdout, v->info.fs_type[0] ? v->info.fs_type : "no filesystem");
    if (v->info.fs_kind == FSP_FS_NONE && v->info.fs_type[0])
        fputs(" (not parsed)", stdout);
    if (v->info.fs_label[0]) {
        fputs(", label ", stdout);
        vms_put_quoted(stdout, v->info.fs_label);
    }
    putchar('\n');
    if (v->info.fs_kind != FSP_FS_NONE)
        printf("    %llu files (%llu bytes), %llu directories, %llu symlinks, %llu other%s%s\n",
               (unsigned long long)v->files, (unsigned long long)v->file_bytes,
               (unsigned long long)v->dirs, (unsigned long long)v->symlinks,
               (unsigned long long)v->other, v->os[0] ? "; os: " : "", v->os);
}

static void print_text(const struct inspector *in, const char *guest_os)
{
    printf("image: %s, %llu bytes, partition table %s\n", in->format,
           (unsigned long long)in->image.size, in->table);
    for (uint32_t i = 0; i < in->n; i++)
        print_text_volume(&in->vols[i]);
    printf("allocated in filesystems: %llu bytes\n", (unsigned long long)in->allocated);
    if (in->warnings)
        printf("warnings: %llu\n", (unsigned long long)in->warnings);
    if (guest_os) {
        fputs("libguestfs: ", stdout);
        vms_put_name(stdout, guest_os);
        putchar('\n');
    }
}

static void print_json(const struct inspector *in, const char *guest_os)
{
    printf("{\"format\":");
    vms_json_string(stdout, in->format);
    printf(",\"size\":%llu,\"table\":", (unsigned long long)in->image.size);
    vms_json_string(stdout, in->table);
    printf(",\"allocated_bytes\":%llu,\"warnings\":%llu,\"volumes\":[",
           (unsigned long long)in->allocated, (unsigned long long)in->warnings);
    for (uint32_t i = 0; i < in->n; i++) {
        const struct vol_stats *v = &in->vols[i];
        printf("%s{\"index\":%u,\"start\":%llu,\"length\":%llu,\"fs\":\"%s\",", i ? "," : "",
               v->info.index, (unsigned long long)v->info.start, (unsigned long long)v->info.length,
               fsp_fs_kind_name(v->info.fs_kind));
        vms_json_member(stdout, "fs_type", v->info.fs_type);
        putchar(',');
        vms_json_member(stdout, "label", v->info.fs_label);
        printf(",\"files\":%llu,\"file_bytes\":%llu,\"dirs\":%llu,\"symlinks\":%llu,\"other\":%llu,\"os\":",
               (unsigned long long)v->files, (unsigned long long)v->file_bytes,
               (unsigned long long)v->dirs, (unsigned long long)v->symlinks,
               (unsigned long long)v->other);
        vms_json_string(stdout, v->os[0] ? v->os : NULL);
        putchar('}');
    }
    printf("],");
    vms_json_member(stdout, "guestfs_os", guest_os);
    puts("}");
}

int cmd_inspect(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                         {"guestfs", no_argument, 0, 'g'},
                                         {"help", no_argument, 0, 'h'},
                                         CLI_IMAGE_OPTIONS,
                                         {0, 0, 0, 0}};
    bool json = false, guestfs = false;
    int c, bad;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'j')
            json = true;
        else if (c == 'g')
            guestfs = true;
        else if (c == 'h')
            return fputs(usage, stdout), 0;
        else if ((bad = cli_image_option(c, usage)) != 0)
            return bad == 2 ? 2 : cli_bad_option(usage, argv);
    }
    if (optind + 1 != argc)
        return cli_usage_error(usage, "%s", "inspect needs exactly one IMAGE");
    struct inspector *in = calloc(1, sizeof *in);
    if (!in)
        return 6;
    struct fsp_sink sink = {.image = i_image, .volume = i_volume, .entry = i_entry,
                            .warning = i_warning, .done = i_done, .ctx = in};
    fsp_error err = {0};
    int rc = vms_load(argv[optind], FSP_SCAN_NO_DATA, &sink, &err);
    if (rc) {
        free(in);
        return cli_report(&err);
    }
    const char *why = NULL;
    char *guest_os = guestfs ? guestfs_os(argv[optind], &why) : NULL;
    if (guestfs && !guest_os)
        fprintf(stderr, "vmsync: libguestfs inspection unavailable: %s\n", why);
    if (json)
        print_json(in, guest_os);
    else
        print_text(in, guest_os);
    free(guest_os);
    free(in);
    return 0;
}
