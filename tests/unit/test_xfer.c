/* The transfer pipeline end to end in memory: segments built by vms_xfer_send
 * and read back by a receiver, CHAINED ones included. */
#include "check.h"
#include "base/fileio.h"
#include "wire/xfer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define N_OBJS 8
#define OBJ_LEN (1u << 20)

/* Objects 4..7 repeat 0..3 with one byte changed: random bytes that only a
 * match into the segment before (objects 0..3) can compress. */
struct objects {
    uint8_t *data[N_OBJS];
    uint8_t hashes[N_OBJS][FSP_SHA256_LEN];
    uint32_t lens[N_OBJS];
};

static void make_objects(struct objects *o)
{
    uint32_t seed = 7;
    for (size_t i = 0; i < N_OBJS; i++) {
        o->data[i] = malloc(OBJ_LEN);
        o->lens[i] = OBJ_LEN;
        for (size_t k = 0; k < OBJ_LEN; k++) {
            seed = seed * 1103515245u + 12345u;
            o->data[i][k] = i < N_OBJS / 2 ? (uint8_t)(seed >> 16) : o->data[i - N_OBJS / 2][k];
        }
        if (i >= N_OBJS / 2)
            o->data[i][i * 1000] ^= 0x55;
        vms_sha256(o->data[i], OBJ_LEN, o->hashes[i]);
    }
}

static int read_object(void *ctx, size_t i, uint8_t *out, fsp_error *err)
{
    struct objects *o = ctx;
    memcpy(out, o->data[i], OBJ_LEN);
    return 0;
}

/* The messages a sender wrote, as frames one after another. */
static int collect(void *io, const void *buf, size_t n, fsp_error *err)
{
    vms_put_raw(io, buf, n);
    return 0;
}

/* Sends objects FIRST.. of O (as a resumed transfer asks for what is left)
 * from LEVEL up. */
static struct vms_wbuf send_at(struct objects *o, size_t first, bool chain, const char *cache,
                               int level, struct vms_xfer_report *rep)
{
    struct vms_wbuf out = {0};
    struct vms_conn c = {.send = collect, .io = &out, .peer = "test"};
    struct vms_xfer_source src = {.hashes = (const uint8_t(*)[FSP_SHA256_LEN])o->hashes + first,
                                  .lens = o->lens + first, .n = N_OBJS - first,
                                  .read = read_object};
    struct vms_xfer_opts opts = {.level = level, .chain = chain, .cache = cache};
    fsp_error err;
    /* read_object's index counts from the list's start */
    struct objects view = *o;
    for (size_t i = first; i < N_OBJS; i++)
        view.data[i - first] = o->data[i];
    src.ctx = &view;
    CHECK(vms_xfer_send(&src, &opts, &c, rep, &err) == 0);
    return out;
}

static struct vms_wbuf send_objects(struct objects *o, size_t first, bool chain, const char *cache,
                                    struct vms_xfer_report *rep)
{
    return send_at(o, first, chain, cache, VMS_CHAIN_LEVEL, rep);
}

/* The payload of the K-th frame of OUT (0 first). */
static struct vms_rbuf frame(const struct vms_wbuf *out, size_t k)
{
    size_t at = 0;
    for (;;) {
        uint32_t len;
        memcpy(&len, out->p + at, 4);
        if (!k--)
            return (struct vms_rbuf){out->p + at + 5, out->p + at + 4 + len, false};
        at += 4 + len;
    }
}

struct delivered {
    size_t n;
};

static int count_object(void *ctx, size_t index, const uint8_t *data, size_t len, size_t wire)
{
    ((struct delivered *)ctx)->n++;
    return 0;
}

static struct vms_xfer_receiver receiver(const struct objects *o, size_t first, bool chain,
                                         struct delivered *d)
{
    return (struct vms_xfer_receiver){.hashes = (const uint8_t(*)[FSP_SHA256_LEN])o->hashes + first,
                                      .n = N_OBJS - first, .cb = count_object, .ctx = d,
                                      .peer = "the agent", .chain = chain};
}

/* Receives every frame of OUT; the first failure's code. */
static int receive_all(struct vms_xfer_receiver *rx, const struct vms_wbuf *out, size_t frames,
                       fsp_error *err)
{
    int rc = 0;
    for (size_t k = 0; !rc && k < frames; k++) {
        struct vms_rbuf b = frame(out, k);
        rc = vms_xfer_receive(rx, &b, err);
    }
    return rc;
}

static struct objects objs;

static void test_chained_round_trip(void)
{
    fsp_error err;
    struct vms_xfer_report chained, solid;
    struct vms_wbuf a = send_objects(&objs, 0, true, NULL, &chained);
    struct vms_wbuf b = send_objects(&objs, 0, false, NULL, &solid);
    CHECK(chained.segments == 2 && chained.chained == 1);
    CHECK(solid.segments == 2 && solid.chained == 0);
    /* the second segment is a near copy of the first: chained, it costs bytes only */
    CHECK(chained.wire_bytes < solid.wire_bytes * 6 / 10);
    struct delivered d = {0};
    struct vms_xfer_receiver rx = receiver(&objs, 0, true, &d);
    CHECK(receive_all(&rx, &a, 2, &err) == 0);
    CHECK(d.n == N_OBJS && rx.segments == 2 && rx.chained == 1);
    vms_xfer_receiver_free(&rx);
    vms_wbuf_free(&a);
    vms_wbuf_free(&b);
}

/* At level 19 the compressor takes the prefix's last MiB alone (object 3,
 * which object 7 repeats), the receiver the whole prefix: the offsets agree,
 * and objects 4..6, whose matches lie further back, cost their size. */
static void test_slow_levels_chain_the_prefix_tail(void)
{
    fsp_error err;
    struct vms_xfer_report tail, whole;
    struct vms_wbuf a = send_at(&objs, 0, true, NULL, VMS_LEVEL_MAX, &tail);
    struct vms_wbuf b = send_objects(&objs, 0, true, NULL, &whole);
    CHECK(tail.segments == 2 && tail.chained == 1 && tail.level_max == VMS_LEVEL_MAX);
    CHECK(tail.wire_bytes > whole.wire_bytes + 2 * OBJ_LEN);
    CHECK(tail.wire_bytes < 7 * OBJ_LEN + OBJ_LEN / 2);
    struct delivered d = {0};
    struct vms_xfer_receiver rx = receiver(&objs, 0, true, &d);
    CHECK(receive_all(&rx, &a, 2, &err) == 0);
    CHECK(d.n == N_OBJS && rx.chained == 1);
    vms_xfer_receiver_free(&rx);
    vms_wbuf_free(&a);
    vms_wbuf_free(&b);
}

/* A transfer that resumes at object 4 starts a new chain: its first segment
 * decodes alone. */
static void test_resumed_transfer_starts_a_chain(void)
{
    fsp_error err;
    struct vms_xfer_report rep;
    struct vms_wbuf a = send_objects(&objs, N_OBJS / 2, true, NULL, &rep);
    CHECK(rep.segments == 1 && rep.chained == 0);
    struct delivered d = {0};
    struct vms_xfer_receiver rx = receiver(&objs, N_OBJS / 2, true, &d);
    CHECK(receive_all(&rx, &a, 1, &err) == 0 && d.n == N_OBJS / 2);
    vms_xfer_receiver_free(&rx);
    vms_wbuf_free(&a);
}

/* A chained segment needs the segment before: as a first segment or to a
 * receiver of protocol 2 it is refused and delivers nothing; damaged, its
 * damaged object is never delivered. */
static void test_crafted_chained_segment_refused(void)
{
    struct vms_xfer_report rep;
    struct vms_wbuf a = send_objects(&objs, 0, true, NULL, &rep);
    struct delivered d = {0};
    fsp_error err;
    struct vms_xfer_receiver first = receiver(&objs, N_OBJS / 2, true, &d);
    struct vms_rbuf b = frame(&a, 1);
    CHECK(vms_xfer_receive(&first, &b, &err) == -EPROTO && d.n == 0);
    CHECK(strstr(err.msg, "a segment before the first") != NULL);
    vms_xfer_receiver_free(&first);

    struct vms_xfer_receiver old = receiver(&objs, 0, false, &d);
    CHECK(receive_all(&old, &a, 2, &err) == -EPROTO && d.n == N_OBJS / 2);
    CHECK(strstr(err.msg, "SEGMENT") != NULL);
    vms_xfer_receiver_free(&old);

    d.n = 0;
    b = frame(&a, 1);
    ((uint8_t *)b.end)[-20] ^= 0x01; /* inside the frame's compressed bytes */
    struct vms_xfer_receiver rx = receiver(&objs, 0, true, &d);
    CHECK(receive_all(&rx, &a, 2, &err) != 0 && d.n < N_OBJS); /* the damaged one never */
    vms_xfer_receiver_free(&rx);
    vms_wbuf_free(&a);
}

/* The agent's cache keys a chained segment by its prefix too: a receiver of
 * protocol 2 never gets a chained segment from the cache, and the segment
 * both transfers share comes from it. */
static void test_cache_keys_the_chain(void)
{
    fsp_error err;
    char *cache = scratch_path("segments");
    CHECK(mkdir(cache, 0755) == 0);
    struct vms_xfer_report chained, solid;
    struct vms_wbuf a = send_objects(&objs, 0, true, cache, &chained);
    struct vms_wbuf b = send_objects(&objs, 0, false, cache, &solid);
    CHECK(chained.cached == 0 && chained.chained == 1);
    CHECK(solid.cached == 1 && solid.chained == 0);
    struct delivered d = {0};
    struct vms_xfer_receiver rx = receiver(&objs, 0, false, &d);
    CHECK(receive_all(&rx, &b, 2, &err) == 0 && d.n == N_OBJS);
    vms_xfer_receiver_free(&rx);
    struct vms_xfer_report again;
    struct vms_wbuf c = send_objects(&objs, 0, true, cache, &again);
    CHECK(again.cached == 2 && again.chained == 1 && again.wire_bytes == chained.wire_bytes);
    vms_wbuf_free(&a);
    vms_wbuf_free(&b);
    vms_wbuf_free(&c);
    free(cache);
}

int main(void)
{
    if (scratch_begin("xfer"))
        return 1;
    make_objects(&objs);
    RUN(test_chained_round_trip);
    RUN(test_slow_levels_chain_the_prefix_tail);
    RUN(test_resumed_transfer_starts_a_chain);
    RUN(test_crafted_chained_segment_refused);
    RUN(test_cache_keys_the_chain);
    for (size_t i = 0; i < N_OBJS; i++)
        free(objs.data[i]);
    scratch_end();
    return check_failures != 0;
}
