/* vmsync inspect IMAGE: prints what vms_inspect found (partitions, filesystems,
 * file counts, allocated bytes and the operating system). */
#include "cli.h"

#include <getopt.h>

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

/* The label and the OS name are the image's words: quoted when not plain. */
static void print_text_volume(const struct vms_inspect_volume *v)
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
               (unsigned long long)v->other, v->os ? "; os: " : "", v->os ? v->os : "");
}

static void print_text(const struct vms_inspect_result *in)
{
    printf("image: %s, %llu bytes, partition table %s\n", in->format,
           (unsigned long long)in->size, in->table);
    for (uint32_t i = 0; i < in->n_volumes; i++)
        print_text_volume(&in->volumes[i]);
    printf("allocated in filesystems: %llu bytes\n", (unsigned long long)in->allocated_bytes);
    if (in->warnings)
        printf("warnings: %llu\n", (unsigned long long)in->warnings);
    if (in->guestfs_os) {
        fputs("libguestfs: ", stdout);
        vms_put_name(stdout, in->guestfs_os);
        putchar('\n');
    }
}

static void print_json(const struct vms_inspect_result *in)
{
    printf("{\"format\":");
    vms_json_string(stdout, in->format);
    printf(",\"size\":%llu,\"table\":", (unsigned long long)in->size);
    vms_json_string(stdout, in->table);
    printf(",\"allocated_bytes\":%llu,\"warnings\":%llu,\"volumes\":[",
           (unsigned long long)in->allocated_bytes, (unsigned long long)in->warnings);
    for (uint32_t i = 0; i < in->n_volumes; i++) {
        const struct vms_inspect_volume *v = &in->volumes[i];
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
        vms_json_string(stdout, v->os);
        putchar('}');
    }
    printf("],");
    vms_json_member(stdout, "guestfs_os", in->guestfs_os);
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
    struct vms_inspect_opts o = {.guestfs = guestfs};
    struct vms_inspect_result *in;
    fsp_error err = {0};
    if (vms_inspect(argv[optind], &o, &in, &err))
        return cli_report(&err);
    if (guestfs && !in->guestfs_os)
        fprintf(stderr, "vmsync: libguestfs inspection unavailable: %s\n", in->guestfs_note);
    if (json)
        print_json(in);
    else
        print_text(in);
    vms_inspect_free(in);
    return 0;
}
