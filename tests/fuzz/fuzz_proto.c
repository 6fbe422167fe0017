/* libFuzzer target: the agent protocol's decoders.  The first byte picks a
 * side:
 *   even: the rest is what a client sends, fed to a real agent session on a
 *         real repository (made once per process, holding a few objects and a
 *         version), whose replies are discarded;
 *   odd:  the rest is one message payload, decoded the ways a client decodes
 *         replies: as a SEGMENT for a list of known objects, a version record
 *         and an ERROR;
 *   odd with bits 1 and 2 set as well (7 mod 8): the rest is first a run
 *         of SEGMENT payloads, each after its u32 length (little-endian),
 *         to one receiver (CHAINED ones refer to the segment before), then
 *         decoded as a client decodes replies;
 *   odd with bit 1 set and bit 2 clear (3 mod 8): the rest is a
 *         PUT_MANIFEST_DELTA's delta, applied to a fixed base and, when it
 *         decodes, rebuilt into a manifest file and read as the agent does.
 * Nothing may crash, leak, deliver an object that is not what was asked, or
 * decode a delta past its bound. */
#include "base/fileio.h"
#include "manifest/delta.h"
#include "repo/repo.h"
#include "wire/xfer.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_KNOWN 4
static uint8_t known[N_KNOWN][FSP_SHA256_LEN];
static char root[64];

/* The objects are 'A' x 1000, 'B' x 2000, ... so seeds can be built anywhere. */
static void make_repo(void)
{
    snprintf(root, sizeof root, "/tmp/fuzz-proto-%d", (int)getpid());
    char repo[128];
    snprintf(repo, sizeof repo, "%s/repo", root);
    mkdir(root, 0700);
    fsp_error err;
    vms_repo *r;
    if (vms_repo_init(repo, &err) || vms_repo_open(repo, "fuzz", "fuzz", NULL, &r, &err))
        abort();
    for (int i = 0; i < N_KNOWN; i++) {
        size_t len = 1000u * (i + 1);
        uint8_t *b = malloc(len);
        memset(b, 'A' + i, len);
        vms_sha256(b, len, known[i]);
        if (vms_repo_put(r, known[i], b, len, &err))
            abort();
        free(b);
    }
    if (vms_repo_flush(r, &err))
        abort();
    vms_repo_close(r);
}

static int expect_known(void *ctx, size_t index, const uint8_t *data, size_t len, size_t wire)
{
    uint8_t h[FSP_SHA256_LEN];
    vms_sha256(data, len, h);
    if (index >= N_KNOWN || memcmp(h, known[index], FSP_SHA256_LEN))
        abort(); /* the receiver must verify before it delivers */
    return 0;
}

static void client_side(const uint8_t *data, size_t size)
{
    struct vms_xfer_receiver rx = {.hashes = (const uint8_t(*)[FSP_SHA256_LEN])known, .n = N_KNOWN,
                                   .cb = expect_known, .peer = "fuzz", .chain = true};
    fsp_error err;
    struct vms_rbuf b = {data, data + size, false};
    while (vms_xfer_receive(&rx, &b, &err) == 0 && rx.next < N_KNOWN && b.p < b.end)
        ;
    vms_xfer_receiver_free(&rx);
    struct vms_version v;
    b = (struct vms_rbuf){data, data + size, false};
    vms_get_version(&b, &v);
    b = (struct vms_rbuf){data, data + size, false};
    vms_decode_error(&b, &err);
}

#define DELTA_MAX (1u << 20)

/* The base is a manifest header and the alphabet, so seeds can be built
 * anywhere (tests/fuzz/seeds-fuzz_proto.py). */
static void delta_side(const uint8_t *data, size_t size)
{
    uint8_t base[16 + 26] = VMS_MANIFEST_MAGIC;
    base[8] = VMS_MANIFEST_VERSION;
    base[10] = 16;
    for (int i = 0; i < 26; i++)
        base[16 + i] = (uint8_t)('a' + i);
    struct vms_wbuf ref = {.p = base, .len = sizeof base}, out = {0};
    fsp_error err;
    if (vms_delta_apply(&ref, data, size, DELTA_MAX, "fuzz", &out, &err) == 0) {
        if (out.len > DELTA_MAX)
            abort();
        char path[96];
        snprintf(path, sizeof path, "%s/rebuilt.vmsm", root);
        struct fsp_sink check_only = {0};
        if (vms_manifest_encode(out.p, out.len, path, &err) == 0)
            vms_manifest_read(path, &check_only, &err);
        unlink(path);
    }
    vms_wbuf_free(&out);
}

static void segment_run(const uint8_t *data, size_t size)
{
    struct vms_xfer_receiver rx = {.hashes = (const uint8_t(*)[FSP_SHA256_LEN])known, .n = N_KNOWN,
                                   .cb = expect_known, .peer = "fuzz", .chain = true};
    fsp_error err;
    uint32_t len;
    while (size >= 4 && rx.next < N_KNOWN && (memcpy(&len, data, 4), len <= size - 4)) {
        struct vms_rbuf b = {data + 4, data + 4 + len, false};
        if (vms_xfer_receive(&rx, &b, &err))
            break;
        data += 4 + len;
        size -= 4 + len;
    }
    vms_xfer_receiver_free(&rx);
}

/* The input through a pipe would block on big inputs; a memfd reads the same. */
static void agent_side(const uint8_t *data, size_t size)
{
    int in = memfd_create("fuzz-proto-in", MFD_CLOEXEC);
    int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (in < 0 || out < 0 || vms_write_all(in, data, size) || lseek(in, 0, SEEK_SET) < 0)
        abort();
    struct vms_serve_opts o = {.root = root, .user = "fuzz", .cache_max = 0};
    struct vms_serve_stats stats;
    fsp_error err;
    vms_serve(&o, in, out, &stats, &err);
    close(in);
    close(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root[0])
        make_repo();
    if (size < 1)
        return 0;
    if ((data[0] & 7) == 3) {
        delta_side(data + 1, size - 1);
        return 0;
    }
    if ((data[0] & 7) == 7)
        segment_run(data + 1, size - 1);
    if (data[0] & 1)
        client_side(data + 1, size - 1);
    else
        agent_side(data + 1, size - 1);
    return 0;
}
