/* libFuzzer target: the web tree's records (docs/web.md), the top-level index
 * and a pack index.  The first byte chooses which; the target appends the
 * trailing SHA-256 itself, so that the fuzzer explores the records rather
 * than the hash.  Decoding must refuse or accept without crashing; what it
 * accepts must encode to bytes that decode to the same (a fixpoint after one
 * round), every record of a pack index sorted and inside its pack. */
#include "base/fileio.h"
#include "repo/web/web.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *sealed(const uint8_t *p, size_t len)
{
    uint8_t *b = malloc(len + FSP_SHA256_LEN);
    if (!b)
        abort();
    memcpy(b, p, len);
    vms_sha256(p, len, b + len);
    return b;
}

static void index_round_trip(const uint8_t *p, size_t len)
{
    struct vms_web_index x, y;
    struct vms_wbuf one = {0}, two = {0};
    fsp_error err = {0};
    uint8_t *b = sealed(p, len);
    if (vms_web_decode_index(b, len + FSP_SHA256_LEN, &x, "fuzz", &err)) {
        free(b);
        return;
    }
    vms_web_encode_index(&one, &x);
    if (one.failed || vms_web_decode_index(one.p, one.len, &y, "fuzz", &err))
        abort();
    vms_web_encode_index(&two, &y);
    if (x.n_packs != y.n_packs || x.n_versions != y.n_versions || one.len != two.len ||
        memcmp(one.p, two.p, one.len))
        abort();
    vms_wbuf_free(&one);
    vms_wbuf_free(&two);
    vms_web_index_free(&x);
    vms_web_index_free(&y);
    free(b);
}

static void idx_round_trip(const uint8_t *p, size_t len)
{
    struct vms_web_pack pack = {.bytes = 1u << 20};
    struct vms_web_object *objs = NULL, *again = NULL;
    size_t n = 0, m = 0;
    fsp_error err = {0};
    if (len >= VMS_WEB_IDX_HEAD)
        pack.objects = (len - VMS_WEB_IDX_HEAD) / VMS_WEB_IDX_RECORD;
    uint8_t *b = sealed(p, len);
    if (!vms_web_decode_idx(b, len + FSP_SHA256_LEN, &pack, &objs, &n, "fuzz", &err)) {
        struct vms_wbuf w = {0};
        for (size_t i = 0; i < n; i++)
            if ((i && memcmp(objs[i - 1].hash, objs[i].hash, FSP_SHA256_LEN) >= 0) ||
                objs[i].offset + objs[i].stored > pack.bytes)
                abort();
        vms_web_encode_idx(&w, objs, n);
        if (w.failed || vms_web_decode_idx(w.p, w.len, &pack, &again, &m, "fuzz", &err) || m != n ||
            (n && memcmp(objs, again, n * sizeof *objs)))
            abort();
        vms_wbuf_free(&w);
    }
    free(objs);
    free(again);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        idx_round_trip(data + 1, size - 1);
    else
        index_round_trip(data + 1, size - 1);
    return 0;
}
