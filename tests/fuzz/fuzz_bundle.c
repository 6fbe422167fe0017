/* libFuzzer target: bundle file bytes in (docs/bundle.md).  Opening must
 * refuse or accept without crashing; an accepted bundle must hand over every
 * object it lists, once, with the bytes its hash names, whatever the order
 * asked (here the reverse of the bundle's: it answers in its own), and
 * its manifest must be the one its version record names, and its version
 * signed exactly when its header says so. */
#include "base/fileio.h"
#include "repo/bundle/bundle.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct order {
    const uint8_t (*hashes)[FSP_SHA256_LEN];
    bool *seen;
    size_t n, handed;
};

static int check_object(void *ctx, size_t index, const uint8_t *p, size_t len, size_t stored)
{
    struct order *o = ctx;
    uint8_t actual[FSP_SHA256_LEN];
    (void)stored;
    vms_sha256(p, len, actual);
    if (index >= o->n || o->seen[index] || memcmp(actual, o->hashes[index], FSP_SHA256_LEN))
        abort();
    o->seen[index] = true;
    o->handed++;
    return 0;
}

static void check_contents(const char *path, const struct vms_bundle_contents *c)
{
    size_t n = c->ids.n;
    uint8_t(*wanted)[FSP_SHA256_LEN] = malloc((n ? n : 1) * FSP_SHA256_LEN);
    bool *seen = calloc(n ? n : 1, sizeof *seen);
    uint8_t id[FSP_SHA256_LEN];
    fsp_error err;
    if (!wanted || !seen) {
        free(wanted);
        free(seen);
        return;
    }
    for (size_t i = 0; i < n; i++)
        memcpy(wanted[i], c->ids.keys[n - 1 - i], FSP_SHA256_LEN);
    struct order o = {(const uint8_t(*)[FSP_SHA256_LEN])wanted, seen, n, 0};
    if (vms_bundle_fetch(path, c, o.hashes, n, check_object, &o, &err) == 0 && o.handed != n)
        abort();
    vms_sha256(c->manifest, c->manifest_len, id);
    if (memcmp(id, c->version.manifest, FSP_SHA256_LEN))
        abort();
    /* the version carries a signature exactly when the header announces one */
    if (c->version.is_signed != ((c->header.flags & VMS_BUNDLE_FLAG_SIGNED) != 0))
        abort();
    free(wanted);
    free(seen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz-bundle-%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    struct vms_bundle_contents c;
    fsp_error err;
    if (vms_bundle_read(path, NULL, &c, &err) == 0) {
        check_contents(path, &c);
        vms_bundle_contents_free(&c);
    }
    unlink(path);
    return 0;
}
