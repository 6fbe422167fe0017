/* The canonical image digest (see fsparse.h for its definition). */
#include "internal.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>

struct fsp_digest {
    EVP_MD_CTX *md;
};

static void put_u64(EVP_MD_CTX *md, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    EVP_DigestUpdate(md, b, sizeof b);
}

int fsp_digest_new(uint64_t image_size, fsp_digest **out)
{
    fsp_digest *d = calloc(1, sizeof *d);
    if (!d || !(d->md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(d->md, EVP_sha256(), NULL)) {
        fsp_digest_free(d);
        return -ENOMEM;
    }
    static const char tag[] = "vmsync-canonical-v1";
    EVP_DigestUpdate(d->md, tag, sizeof tag - 1);
    put_u64(d->md, image_size);
    *out = d;
    return 0;
}

void fsp_digest_add_run(fsp_digest *d, const struct fsp_layout_run *run)
{
    uint8_t kind = run->kind;
    put_u64(d->md, run->offset);
    put_u64(d->md, run->length);
    EVP_DigestUpdate(d->md, &kind, 1);
    if (kind == FSP_L_FILE) {
        EVP_DigestUpdate(d->md, run->stream_sha256, FSP_SHA256_LEN);
        put_u64(d->md, run->stream_offset);
        put_u64(d->md, run->stream_size);
    } else if (kind == FSP_L_RAW) {
        EVP_DigestUpdate(d->md, run->hashes, (size_t)run->n_hashes * FSP_SHA256_LEN);
    }
}

void fsp_digest_final(fsp_digest *d, uint8_t out[FSP_SHA256_LEN])
{
    unsigned int len = FSP_SHA256_LEN;
    EVP_DigestFinal_ex(d->md, out, &len);
}

void fsp_digest_free(fsp_digest *d)
{
    if (!d)
        return;
    EVP_MD_CTX_free(d->md);
    free(d);
}
