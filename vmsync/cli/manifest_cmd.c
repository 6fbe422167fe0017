/* vmsync manifest IMAGE / vmsync manifest show FILE */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const usage =
    "usage: vmsync manifest IMAGE [-o FILE] [--json] [--layout] [--progress=auto|none|json]\n"
    "       vmsync manifest show FILE [--json] [--layout]\n"
    "\n"
    "Reads the partitions and the ext2/3/4 and NTFS filesystems of IMAGE into a\n"
    "manifest: every file with its SHA-256, chunk hashes for files of 1 MiB and more,\n"
    "physical extents, and a layout map of every allocated byte with the canonical\n"
    "image digest.  The image is opened read-only.\n"
    "\n"
    "  -o, --output FILE   write the binary manifest to FILE (atomically)\n"
    "      --json          print the manifest as JSON on stdout (a name that is not\n"
    "                      UTF-8 also comes as NAME_bytes in hex: path_bytes, ...)\n"
    "      --layout        include the layout map in the JSON\n"
    "      --progress=M    auto (a bar when stderr is a terminal), none, or json lines\n"
    "  -q, --quiet         no summary and no progress\n"
    "      --allow-backing DIR  IMAGE may name backing files and extents under DIR\n"
    "                      too, not only in its own folder (repeatable)\n"
    "  -h, --help          this help\n"
    "\n"
    "Without -o and --json a summary is printed.  Damaged files produce warnings on\n"
    "stderr and in the manifest; the exit status is still 0.  A saved manifest is\n"
    "checked whole before anything is printed: a damaged one prints nothing on\n"
    "stdout, one error on stderr, and exits 5.\n"
    "\n"
    "Files are hashed on every online CPU (at most 8); VMSYNC_HASH_THREADS=N sets\n"
    "the number (1: one thread).  The manifest is the same whatever the number.\n";

struct summary_printer {
    struct fsp_sink sink;
    FILE *out;
    uint32_t volumes;
};

static int sp_volume(void *ctx, const struct fsp_volume_info *v)
{
    struct summary_printer *p = ctx;
    p->volumes++;
    fprintf(p->out, "volume %u: %s ", v->index, fsp_fs_kind_name(v->fs_kind));
    vms_put_name(p->out, v->fs_type[0] ? v->fs_type : "-");
    fprintf(p->out, ", %llu bytes at %llu", (unsigned long long)v->length,
            (unsigned long long)v->start);
    if (v->fs_label[0]) {
        fputs(", label ", p->out);
        vms_put_quoted(p->out, v->fs_label);
    }
    putc('\n', p->out);
    return 0;
}

static int sp_done(void *ctx, const struct fsp_summary *s)
{
    struct summary_printer *p = ctx;
    char hex[2 * FSP_SHA256_LEN + 1];
    fsp_hex(s->digest, FSP_SHA256_LEN, hex);
    fprintf(p->out, "entries: %llu\nallocated: %llu bytes (files %llu, metadata %llu, zero %llu)\n"
                    "warnings: %llu\ndigest: %s\n",
            (unsigned long long)s->entries, (unsigned long long)s->allocated_bytes,
            (unsigned long long)s->file_bytes, (unsigned long long)s->raw_bytes,
            (unsigned long long)s->zero_bytes, (unsigned long long)s->warnings, hex);
    return 0;
}

/* Prints the manifest at PATH to OUT as JSON or as a summary. */
static int read_printed(const char *path, FILE *out, bool json, bool layout, fsp_error *err)
{
    if (json) {
        vms_json *j;
        int rc = vms_json_new(out, layout ? VMS_JSON_LAYOUT : 0, &j, err);
        if (!rc)
            rc = vms_manifest_read(path, vms_json_sink(j), err);
        vms_json_free(j);
        return rc;
    }
    struct summary_printer p = {.sink = {.volume = sp_volume, .done = sp_done}, .out = out};
    p.sink.ctx = &p;
    return vms_manifest_read(path, &p.sink, err);
}

static int copy_to_stdout(FILE *spool, fsp_error *err)
{
    char buf[65536];
    size_t n;
    rewind(spool);
    while ((n = fread(buf, 1, sizeof buf, spool)) > 0)
        if (fwrite(buf, 1, n, stdout) != n)
            return fsp_fail(err, FSP_EK_IO, -errno, "cannot write the output: %s", strerror(errno));
    if (ferror(spool))
        return fsp_fail(err, FSP_EK_IO, -EIO, "cannot read back the output");
    return 0;
}

/* The output goes to an unlinked temporary file first and reaches stdout only
 * once the whole manifest has been read and its checksum matches: a damaged
 * manifest prints nothing but its error.  A file, not memory, so a manifest of
 * millions of entries needs no more memory than one entry. */
static int print_manifest(const char *path, bool json, bool layout, fsp_error *err)
{
    FILE *spool = tmpfile();
    if (!spool)
        return fsp_fail(err, FSP_EK_IO, -errno, "cannot create a temporary file in %s: %s", P_tmpdir,
                        strerror(errno));
    int rc = read_printed(path, spool, json, layout, err);
    if (!rc && (fflush(spool) || ferror(spool)))
        rc = fsp_fail(err, FSP_EK_IO, -errno, "cannot write a temporary file in %s: %s", P_tmpdir,
                     strerror(errno));
    if (!rc)
        rc = copy_to_stdout(spool, err);
    fclose(spool);
    return rc;
}

static int show(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                         {"layout", no_argument, 0, 'l'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    bool json = false, layout = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'j')
            json = true;
        else if (c == 'l')
            layout = true;
        else if (c == 'h')
            return fputs(usage, stdout), 0;
        else
            return cli_bad_option(usage, argv);
    }
    if (optind + 1 != argc)
        return cli_usage_error(usage, "%s", "manifest show needs exactly one FILE");
    fsp_error err = {0};
    int rc = print_manifest(argv[optind], json, layout, &err);
    return rc ? cli_report(&err) : 0;
}

static int scan_to_file(const char *image, const char *out, enum cli_progress_mode progress,
                        fsp_error *err)
{
    struct vms_manifest_create_opts o = {0};
    struct cli_scan cs;
    cli_scan_init(&cs, image, progress, &o);
    int rc = vms_manifest_create(image, out, &o, err);
    cli_scan_finish(&cs, rc);
    return rc;
}

int cmd_manifest(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "show"))
        return show(argc - 1, argv + 1);
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"json", no_argument, 0, 'j'},
                                         {"layout", no_argument, 0, 'l'},
                                         {"progress", required_argument, 0, 'p'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         CLI_IMAGE_OPTIONS,
                                         {0, 0, 0, 0}};
    const char *out = NULL;
    bool json = false, layout = false, quiet = false;
    enum cli_progress_mode progress = CLI_PROGRESS_AUTO;
    int c;
    while ((c = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'j': json = true; break;
        case 'l': layout = true; break;
        case 'q': quiet = true; break;
        case 'p':
            if (cli_parse_progress(optarg, &progress))
                return cli_usage_error(usage, "bad --progress value '%s'", optarg);
            break;
        case 'h': return fputs(usage, stdout), 0;
        default: {
            int why = cli_image_option(c, usage);
            if (why)
                return why == 2 ? 2 : cli_bad_option(usage, argv);
        }
        }
    }
    if (optind + 1 != argc)
        return cli_usage_error(usage, "%s", "manifest needs exactly one IMAGE");
    if (quiet)
        progress = CLI_PROGRESS_NONE;
    const char *image = argv[optind];
    char tmp[] = "/tmp/vmsync-manifest-XXXXXX";
    if (!out) {
        int fd = mkstemp(tmp);
        if (fd < 0)
            return perror("vmsync: mkstemp"), 6;
        close(fd);
    }
    fsp_error err = {0};
    int rc = scan_to_file(image, out ? out : tmp, progress, &err);
    if (!rc && (json || (!out && !quiet)))
        rc = print_manifest(out ? out : tmp, json, layout, &err);
    if (!out)
        unlink(tmp);
    return rc ? cli_report(&err) : 0;
}
