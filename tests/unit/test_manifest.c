/* Manifest files: a round trip, and hostile manifests that must be refused. */
#include "check.h"
#include "vmsync.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IMAGE_SIZE (1u << 20)

struct recipe {
    const char *path;         /* of the second entry */
    uint64_t extent_length;   /* of the second entry's stream */
    uint64_t run2_offset;     /* where the raw run starts */
    uint64_t file_run_entry;  /* entry the file run names */
};

static const struct recipe good = {"/dir/file", 8192, 16384, 1};

static void fill_hash(uint8_t *h, uint8_t v) { memset(h, v, FSP_SHA256_LEN); }

/* Writes a manifest by driving the writer sink as a scan would. */
static void write_manifest(const char *path, const struct recipe *r)
{
    vms_manifest_writer *w;
    fsp_error err;
    CHECK(vms_manifest_writer_open(path, &w, &err) == 0);
    const struct fsp_sink *s = vms_manifest_writer_sink(w);
    struct fsp_image_info image = {.size = IMAGE_SIZE, .format = "raw", .table = "none", .n_volumes = 1};
    s->image(s->ctx, &image);
    struct fsp_volume_info vol = {.index = 0, .start = 0, .length = IMAGE_SIZE, .fs_kind = FSP_FS_EXT,
                                  .block_size = 4096, .fs_length = IMAGE_SIZE};
    strcpy(vol.fs_type, "ext4");
    s->volume(s->ctx, &vol);
    struct fsp_entry root = {.path = "/", .type = FSP_T_DIR, .nlink = 2, .mode = 040755};
    s->entry(s->ctx, 0, &root);
    struct fsp_extent x = {.logical = 0, .physical = 8192, .length = r->extent_length};
    struct fsp_stream st = {.size = 5000, .n_extents = 1, .extents = &x};
    fill_hash(st.sha256, 0xab);
    struct fsp_entry file = {.path = (char *)r->path, .type = FSP_T_REG, .nlink = 1, .size = 5000,
                             .n_streams = 1, .streams = &st, .mode = 0100644};
    s->entry(s->ctx, 1, &file);
    s->warning(s->ctx, 0, "/dir/file", "a test warning");

    fsp_digest *d;
    fsp_digest_new(IMAGE_SIZE, &d);
    struct fsp_layout_run file_run = {.offset = 8192, .length = 8192, .kind = FSP_L_FILE,
                                      .entry_seq = r->file_run_entry, .stream_size = 5000};
    fill_hash(file_run.stream_sha256, 0xab);
    uint8_t hashes[2][FSP_SHA256_LEN];
    fill_hash(hashes[0], 1);
    fill_hash(hashes[1], 2);
    struct fsp_layout_run raw_run = {.offset = r->run2_offset, .length = 8192, .kind = FSP_L_RAW,
                                     .n_hashes = 2, .hashes = (const uint8_t(*)[32])hashes};
    struct fsp_layout_run zero_run = {.offset = 65536, .length = 4096, .kind = FSP_L_ZERO};
    struct fsp_summary sum = {.entries = 2, .allocated_bytes = 8192 * 2 + 4096, .warnings = 1};
    const struct fsp_layout_run *runs[] = {&file_run, &raw_run, &zero_run};
    for (int i = 0; i < 3; i++) {
        s->layout(s->ctx, runs[i]);
        fsp_digest_add_run(d, runs[i]);
    }
    fsp_digest_final(d, sum.digest);
    fsp_digest_free(d);
    s->done(s->ctx, &sum);
    CHECK(vms_manifest_writer_commit(w, &err) == 0);
}

struct counts {
    int entries, runs, warnings, done;
};

static int c_entry(void *ctx, uint64_t seq, const struct fsp_entry *e) { ((struct counts *)ctx)->entries++; return 0; }
static int c_layout(void *ctx, const struct fsp_layout_run *r) { ((struct counts *)ctx)->runs++; return 0; }
static int c_warning(void *ctx, uint32_t v, const char *p, const char *m) { ((struct counts *)ctx)->warnings++; return 0; }
static int c_done(void *ctx, const struct fsp_summary *s) { ((struct counts *)ctx)->done++; return 0; }

static int read_back(const char *path, struct counts *c, fsp_error *err)
{
    memset(c, 0, sizeof *c);
    struct fsp_sink sink = {.entry = c_entry, .layout = c_layout, .warning = c_warning, .done = c_done, .ctx = c};
    memset(err, 0, sizeof *err);
    return vms_manifest_read(path, &sink, err);
}

static char tmp_path[64];

static void test_round_trip(void)
{
    write_manifest(tmp_path, &good);
    struct counts c;
    fsp_error err;
    CHECK(read_back(tmp_path, &c, &err) == 0);
    CHECK(c.entries == 2 && c.runs == 3 && c.warnings == 1 && c.done == 1);
    CHECK(vms_is_manifest(tmp_path));
}

static void expect_refused(const struct recipe *r, const char *why)
{
    write_manifest(tmp_path, r);
    struct counts c;
    fsp_error err;
    int rc = read_back(tmp_path, &c, &err);
    CHECK(rc < 0);
    CHECK(err.kind == FSP_EK_CORRUPT);
    CHECK(strstr(err.msg, why) != NULL);
    if (!strstr(err.msg, why))
        fprintf(stderr, "  got: %s\n", err.msg);
    CHECK(c.done == 0);
}

static void test_path_traversal_refused(void)
{
    struct recipe r = good;
    r.path = "/dir/../../etc/passwd";
    expect_refused(&r, "not a clean absolute path");
    r.path = "relative/path";
    expect_refused(&r, "not a clean absolute path");
    r.path = "/a//b";
    expect_refused(&r, "not a clean absolute path");
}

static void test_absurd_extent_refused(void)
{
    struct recipe r = good;
    r.extent_length = 1ULL << 62;
    expect_refused(&r, "outside the image");
}

static void test_overlapping_runs_refused(void)
{
    struct recipe r = good;
    r.run2_offset = 12288; /* inside the file run */
    expect_refused(&r, "overlap");
}

static void test_dangling_file_run_refused(void)
{
    struct recipe r = good;
    r.file_run_entry = 7;
    expect_refused(&r, "does not exist");
}

static void test_damaged_file_refused(void)
{
    write_manifest(tmp_path, &good);
    FILE *f = fopen(tmp_path, "r+b");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    CHECK(ftruncate(fileno(f), size - 7) == 0);
    fclose(f);
    struct counts c;
    fsp_error err;
    CHECK(read_back(tmp_path, &c, &err) < 0);
    CHECK(err.kind == FSP_EK_CORRUPT);

    write_manifest(tmp_path, &good);
    f = fopen(tmp_path, "r+b");
    fseek(f, 40, SEEK_SET);
    int byte = fgetc(f);
    fseek(f, 40, SEEK_SET);
    fputc(byte ^ 0x40, f);
    fclose(f);
    CHECK(read_back(tmp_path, &c, &err) < 0);
    CHECK(c.done == 0);
}

static void test_not_a_manifest(void)
{
    FILE *f = fopen(tmp_path, "wb");
    fputs("hello, this is not a manifest at all\n", f);
    fclose(f);
    struct counts c;
    fsp_error err;
    CHECK(read_back(tmp_path, &c, &err) < 0);
    CHECK(err.kind == FSP_EK_FORMAT);
    CHECK(!vms_is_manifest(tmp_path));
}

int main(void)
{
    snprintf(tmp_path, sizeof tmp_path, "/tmp/vmsync-test-manifest-%d", (int)getpid());
    RUN(test_round_trip);
    RUN(test_path_traversal_refused);
    RUN(test_absurd_extent_refused);
    RUN(test_overlapping_runs_refused);
    RUN(test_dangling_file_run_refused);
    RUN(test_damaged_file_refused);
    RUN(test_not_a_manifest);
    unlink(tmp_path);
    return check_failures ? 1 : 0;
}
