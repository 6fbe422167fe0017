/* Unit tests of the library calls that the CLI only prints: vms_inspect and
 * vms_manifest_create, on real images made here with mke2fs and sfdisk. */
#include "check.h"
#include "vmsync.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[4096];

/* Runs a shell command (FMT with its arguments) in DIR; false when it fails. */
static bool sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool sh(const char *fmt, ...)
{
    char cmd[12288], inner[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(inner, sizeof inner, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd '%.4000s' && { %s; } >/dev/null 2>&1", dir, inner);
    return system(cmd) == 0;
}

static const char *in_dir(const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", dir, name);
    return buf;
}

/* A tree with a Debian marker, a file, its hard link and a symlink. */
static bool make_trees(void)
{
    return sh("mkdir -p deb/etc alp/etc && echo 12 >deb/etc/debian_version &&"
              " echo ID=x >deb/etc/os-release && head -c 5000 /dev/urandom >deb/data &&"
              " ln deb/data deb/hard && ln -s data deb/link && echo 3.19 >alp/etc/alpine-release");
}

static void test_inspect_bare(void)
{
    char img[4200];
    CHECK(sh("mke2fs -q -F -t ext4 -d deb %s 16M", "bare.img"));
    struct vms_inspect_result *r = NULL;
    fsp_error err = {0};
    CHECK(vms_inspect(in_dir("bare.img", img, sizeof img), NULL, &r, &err) == 0);
    if (!r)
        return;
    CHECK(!strcmp(r->format, "raw") && !strcmp(r->table, "none") && r->size == 16 << 20);
    CHECK(r->n_volumes == 1 && r->warnings == 0 && r->allocated_bytes > 0);
    const struct vms_inspect_volume *v = &r->volumes[0];
    CHECK(v->info.index == 0 && v->info.fs_kind == FSP_FS_EXT && !strcmp(v->info.fs_type, "ext4"));
    /* debian_version, os-release, data and its hard link; the link counted once in bytes */
    CHECK(v->files == 4 && v->file_bytes == 5000 + 3 + 5);
    CHECK(v->dirs == 3 && v->symlinks == 1 && v->other == 0); /* /, /etc, /lost+found */
    /* os-release is found too, but the distribution's own marker names it */
    CHECK(v->os && !strcmp(v->os, "linux (debian family)"));
    CHECK(!r->guestfs_os && !r->guestfs_note);
    vms_inspect_free(r);
}

static void test_inspect_gpt(void)
{
    char img[4200];
    CHECK(sh("truncate -s 40M gpt.img && printf 'label: gpt\\nstart=2048, size=16384, type=L\\n"
             "start=18432, size=40000, type=L\\n' | sfdisk -q %s", "gpt.img"));
    CHECK(sh("mke2fs -q -F -t ext4 -E offset=1048576 -d deb %s 8M", "gpt.img"));
    CHECK(sh("mke2fs -q -F -t ext4 -E offset=9437184 -L alpine -d alp %s 16M", "gpt.img"));
    struct vms_inspect_result *r = NULL;
    fsp_error err = {0};
    CHECK(vms_inspect(in_dir("gpt.img", img, sizeof img), NULL, &r, &err) == 0);
    if (!r)
        return;
    CHECK(!strcmp(r->table, "gpt") && r->n_volumes == 2);
    if (r->n_volumes == 2) {
        CHECK(r->volumes[0].info.index == 1 && r->volumes[0].info.start == 1 << 20);
        CHECK(r->volumes[0].os && !strcmp(r->volumes[0].os, "linux (debian family)"));
        CHECK(r->volumes[1].info.index == 2 && !strcmp(r->volumes[1].info.fs_label, "alpine"));
        CHECK(r->volumes[1].files == 1 && r->volumes[1].symlinks == 0);
        CHECK(r->volumes[1].os && !strcmp(r->volumes[1].os, "linux (alpine)"));
    }
    vms_inspect_free(r);
}

static void test_inspect_errors(void)
{
    char path[4200];
    struct vms_inspect_result *r = (void *)1;
    fsp_error err = {0};
    CHECK(vms_inspect(in_dir("missing.img", path, sizeof path), NULL, &r, &err) < 0);
    CHECK(r == NULL && err.kind == FSP_EK_OPEN && strstr(err.msg, "missing.img"));
    CHECK(sh("echo not a disk >%s", "notes.txt"));
    r = (void *)1;
    CHECK(vms_inspect(in_dir("notes.txt", path, sizeof path), NULL, &r, &err) < 0);
    CHECK(r == NULL && err.kind == FSP_EK_FORMAT);
    vms_inspect_free(NULL);
}

struct counts {
    uint64_t progress, warnings, objects, entries;
    bool cancel;
};

static int count_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    struct counts *c = ctx;
    c->progress++;
    return c->cancel;
}

static int count_object(void *ctx, const uint8_t hash[FSP_SHA256_LEN], const void *data, size_t len)
{
    ((struct counts *)ctx)->objects++;
    return 0;
}

static int count_entry(void *ctx, uint64_t seq, const struct fsp_entry *e)
{
    ((struct counts *)ctx)->entries++;
    return 0;
}

static void test_manifest_create(void)
{
    char img[4200], out[4200];
    struct counts c = {0}, hooked = {0}, read = {0};
    struct fsp_sink hooks = {.object = count_object, .ctx = &hooked};
    struct vms_manifest_create_opts o = {.progress = count_progress, .hooks = &hooks, .ctx = &c};
    fsp_error err = {0};
    CHECK(vms_manifest_create(in_dir("bare.img", img, sizeof img), in_dir("bare.vmsm", out, sizeof out),
                              &o, &err) == 0);
    CHECK(c.progress > 0 && hooked.objects > 0);
    struct fsp_sink counting = {.entry = count_entry, .ctx = &read};
    CHECK(vms_manifest_read(out, &counting, &err) == 0 && read.entries == 4 + 3 + 1);
    /* inspect reads the manifest as it reads the image */
    struct vms_inspect_result *r = NULL;
    CHECK(vms_inspect(out, NULL, &r, &err) == 0 && r && r->n_volumes == 1);
    if (r && r->n_volumes == 1)
        CHECK(r->volumes[0].files == 4 && r->volumes[0].os &&
              !strcmp(r->volumes[0].os, "linux (debian family)"));
    vms_inspect_free(r);
    /* a cancelled scan leaves neither the manifest nor its temporary */
    c.cancel = true;
    CHECK(vms_manifest_create(img, in_dir("cancelled.vmsm", out, sizeof out), &o, &err) < 0);
    CHECK(err.kind == FSP_EK_CANCELLED && access(out, F_OK) < 0);
    CHECK(sh("! ls -a | grep -q %s", "cancelled"));
}

int main(void)
{
    const char *work = getenv("VMSYNC_TEST_WORK");
    snprintf(dir, sizeof dir, "%s/test_inspect.XXXXXX", work ? work : "/tmp");
    if (!mkdtemp(dir) || !make_trees()) {
        fprintf(stderr, "cannot make the test trees in %s\n", dir);
        return 1;
    }
    RUN(test_inspect_bare);
    RUN(test_inspect_gpt);
    RUN(test_inspect_errors);
    RUN(test_manifest_create);
    sh("rm -rf '%.4000s'", dir);
    return check_failures;
}
