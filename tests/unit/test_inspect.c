/* Unit tests of the library calls that the CLI only prints: vms_inspect, on
 * real images made here with mke2fs and sfdisk. */
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
    sh("rm -rf '%.4000s'", dir);
    return check_failures;
}
