/* Sharing seed ranges into an output: whatever the filesystems can do, the
 * output gets the seed's bytes, adjacent ranges merge into one call, and a
 * seed whose blocks cannot be shared falls back once to writing and stays
 * there. */
#include "engine/share.h"
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEED_BYTES (4u << 20)

static uint8_t seed_bytes[SEED_BYTES];

static int make_seed(const char *path)
{
    for (size_t i = 0; i < SEED_BYTES; i++)
        seed_bytes[i] = (uint8_t)((i * 2654435761u) >> 13);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0 && pwrite(fd, seed_bytes, SEED_BYTES, 0) != (ssize_t)SEED_BYTES) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static bool holds(int out, uint64_t dst, uint64_t src, uint64_t len)
{
    static uint8_t got[SEED_BYTES];
    return pread(out, got, len, (off_t)dst) == (ssize_t)len && !memcmp(got, seed_bytes + src, len);
}

/* Ranges of every shape: block-aligned and adjacent (merged), ragged ends,
 * source and output out of step with the blocks, too small to share. */
static void place_ranges(struct vms_share *sh, struct vms_share_source *from, int out)
{
    static const uint64_t r[][3] = { /* src, dst, len */
        {0, 1u << 20, 256u << 10}, {256u << 10, (1u << 20) + (256u << 10), 512u << 10},
        {3 * 4096 + 100, (8u << 20) + 4096 + 100, 300000}, {5000, 12u << 20, 70000},
        {(2u << 20) + 17, 14u << 20, 1000}};
    fsp_error err;
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        int rc = vms_share_range(sh, from, r[i][0], r[i][1], r[i][2], &err);
        CHECK(rc == 0 || rc == 1);
        if (rc == 1)
            CHECK(pwrite(out, seed_bytes + r[i][0], r[i][2], (off_t)r[i][1]) == (ssize_t)r[i][2]);
    }
    CHECK(vms_share_flush(sh, &err) == 0 && sh->pending == NULL);
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        CHECK(holds(out, r[i][1], r[i][0], r[i][2]));
}

static void test_the_output_holds_the_seed_bytes(void)
{
    char *seed = scratch("seed"), *outp = scratch("out");
    int src = make_seed(seed), out = open(outp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    CHECK(src >= 0 && out >= 0 && ftruncate(out, 16u << 20) == 0);
    struct vms_share sh;
    struct vms_share_source from = {seed, src, VMS_SHARE_CLONE};
    vms_share_init(&sh, out, outp);
    CHECK(sh.block >= 512 && (sh.block & (sh.block - 1)) == 0);
    /* the first two ranges are contiguous on both sides: one pending call */
    fsp_error err;
    CHECK(vms_share_range(&sh, &from, 0, 1u << 20, 256u << 10, &err) == 0);
    CHECK(vms_share_range(&sh, &from, 256u << 10, (1u << 20) + (256u << 10), 4096, &err) == 0);
    CHECK(sh.pending == &from && sh.len == (256u << 10) + 4096);
    CHECK(vms_share_flush(&sh, &err) == 0);
    place_ranges(&sh, &from, out);
    /* only a filesystem that shares blocks keeps the first choice */
    CHECK(from.mode != VMS_SHARE_CLONE || sh.bytes_shared > 0);
    close(src);
    close(out);
    free(seed);
    free(outp);
}

/* A seed in /dev/shm (tmpfs) and the output elsewhere: no sharing across
 * them, so the first range is copied by hand and later ones go back to the
 * caller to write. */
static void test_a_seed_that_cannot_be_shared_falls_back_once(void)
{
    char seed[64], *outp = scratch("out");
    struct stat a, b;
    snprintf(seed, sizeof seed, "/dev/shm/vmsync-test-share-%d", (int)getpid());
    int src = make_seed(seed), out = open(outp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    CHECK(src >= 0 && out >= 0 && ftruncate(out, 16u << 20) == 0);
    if (src < 0 || fstat(src, &a) || fstat(out, &b) || a.st_dev == b.st_dev) {
        printf("skipped: /dev/shm is not another filesystem here\n");
    } else {
        struct vms_share sh;
        struct vms_share_source from = {seed, src, VMS_SHARE_CLONE};
        fsp_error err;
        vms_share_init(&sh, out, outp);
        CHECK(vms_share_range(&sh, &from, 0, 0, 1u << 20, &err) == 0);
        CHECK(vms_share_flush(&sh, &err) == 0 && holds(out, 0, 0, 1u << 20));
        CHECK(from.mode == VMS_SHARE_WRITE && sh.bytes_shared == 0);
        CHECK(vms_share_range(&sh, &from, 1u << 20, 1u << 20, 1u << 20, &err) == 1);
        CHECK(sh.pending == NULL);
    }
    unlink(seed);
    close(src);
    close(out);
    free(outp);
}

int main(void)
{
    if (scratch_begin("share"))
        return 1;
    RUN(test_the_output_holds_the_seed_bytes);
    RUN(test_a_seed_that_cannot_be_shared_falls_back_once);
    scratch_end();
    return check_failures;
}
