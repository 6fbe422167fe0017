/* Version signatures: the signed message, signing with a repository's
 * private key, and checking a signature with a public key. */
#include "base/fileio.h"
#include "sign/sign.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MESSAGE_CONTEXT "vmsync signed version 1\n"

struct vms_signer {
    EVP_PKEY *key;
};

static int nomem(fsp_error *err) { return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

static uint8_t *put_le(uint8_t *p, uint64_t v, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

size_t vms_version_message(const struct vms_version *v, uint8_t *out)
{
    size_t name_len = strnlen(v->image, sizeof v->image);
    if (name_len == 0 || name_len > 255)
        return 0;
    uint8_t *p = out;
    memcpy(p, MESSAGE_CONTEXT, 24);
    p = put_le(p + 24, name_len, 2);
    memcpy(p, v->image, name_len);
    p = put_le(p + name_len, v->number, 4);
    p = put_le(p, v->parent, 4);
    memcpy(p, v->manifest, FSP_SHA256_LEN);
    memcpy(p + FSP_SHA256_LEN, v->digest, FSP_SHA256_LEN);
    return (size_t)(p + 2 * FSP_SHA256_LEN - out);
}

bool vms_signature_valid(const struct vms_public_key *key, const struct vms_version *v,
                         const uint8_t signature[VMS_SIGNATURE_LEN])
{
    uint8_t msg[VMS_VERSION_MESSAGE_MAX];
    size_t len = vms_version_message(v, msg);
    EVP_PKEY *pk = len ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key->key,
                                                     VMS_PUBLIC_KEY_LEN)
                       : NULL;
    EVP_MD_CTX *md = pk ? EVP_MD_CTX_new() : NULL;
    bool valid = md && EVP_DigestVerifyInit(md, NULL, NULL, NULL, pk) == 1 &&
                 EVP_DigestVerify(md, signature, VMS_SIGNATURE_LEN, msg, len) == 1;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pk);
    return valid;
}

/* ---- the private key -------------------------------------------------------- */

int vms_signer_generate(vms_signer **out, fsp_error *err)
{
    *out = calloc(1, sizeof **out);
    EVP_PKEY_CTX *ctx = *out ? EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL) : NULL;
    int rc = ctx && EVP_PKEY_keygen_init(ctx) == 1 && EVP_PKEY_keygen(ctx, &(*out)->key) == 1
                 ? 0
                 : fsp_fail(err, FSP_EK_INTERNAL, -EIO, "cannot make an Ed25519 key (OpenSSL)");
    EVP_PKEY_CTX_free(ctx);
    if (rc) {
        vms_signer_free(*out);
        *out = NULL;
    }
    return rc;
}

int vms_signer_load(const char *path, vms_signer **out, fsp_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "re");
    if (!f && errno == ENOENT)
        return 0;
    if (!f)
        return fsp_fail(err, FSP_EK_OPEN, -errno, "%s: cannot open: %s", path, strerror(errno));
    EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!key || EVP_PKEY_id(key) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(key);
        return fsp_fail(err, FSP_EK_FORMAT, -EINVAL, "%s: not an Ed25519 private key", path);
    }
    if (!(*out = calloc(1, sizeof **out))) {
        EVP_PKEY_free(key);
        return nomem(err);
    }
    (*out)->key = key;
    return 0;
}

/* The key as PEM, in memory: written to the file in one go. */
static int pem_bytes(const vms_signer *s, char **pem, size_t *len, fsp_error *err)
{
    FILE *m = open_memstream(pem, len);
    if (!m)
        return nomem(err);
    int ok = PEM_write_PrivateKey(m, s->key, NULL, NULL, 0, NULL, NULL);
    fclose(m);
    if (ok == 1)
        return 0;
    free(*pem);
    *pem = NULL;
    return fsp_fail(err, FSP_EK_INTERNAL, -EIO, "cannot encode the private key (OpenSSL)");
}

/* Links TMP (already durable) to PATH: renamed over it when REPLACE, else
 * linked, which fails when PATH exists, so a key is never lost to a race. */
static int place_key(const char *tmp, const char *path, bool replace, fsp_error *err)
{
    int rc = replace ? rename(tmp, path) : link(tmp, path);
    if (rc < 0 && errno == EEXIST)
        return fsp_fail(err, VMS_EK_CONFLICT, -EEXIST, "%s: a signing key is there already", path);
    if (rc < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot put the key in place: %s", path,
                        strerror(errno));
    rc = vms_fsync_parent(path);
    return rc ? fsp_fail(err, FSP_EK_IO, rc, "%s: cannot sync its directory: %s", path,
                         strerror(-rc))
              : 0;
}

static int write_durable(int fd, const char *tmp, const char *pem, size_t len, fsp_error *err)
{
    int rc = vms_write_all(fd, pem, len);
    if (!rc && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && !rc)
        rc = -errno;
    return rc ? fsp_fail(err, FSP_EK_IO, rc, "%s: cannot write: %s", tmp, strerror(-rc)) : 0;
}

int vms_signer_save(const vms_signer *s, const char *path, const char *tmp_dir, bool replace,
                    fsp_error *err)
{
    char *pem = NULL, *tmp = vms_path_join(tmp_dir, "key-XXXXXX");
    size_t len = 0;
    int rc = tmp ? pem_bytes(s, &pem, &len, err) : nomem(err);
    int fd = rc ? -1 : mkostemp(tmp, O_CLOEXEC); /* mode 0600 */
    if (!rc && fd < 0)
        rc = fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot create: %s", tmp, strerror(errno));
    if (!rc)
        rc = write_durable(fd, tmp, pem, len, err);
    if (!rc)
        rc = place_key(tmp, path, replace, err);
    if (fd >= 0)
        unlink(tmp); /* gone after a rename; the extra name after a link */
    if (pem)
        OPENSSL_cleanse(pem, len);
    free(pem);
    free(tmp);
    return rc;
}

void vms_signer_public(const vms_signer *s, const char *comment, struct vms_public_key *out)
{
    memset(out, 0, sizeof *out);
    size_t len = VMS_PUBLIC_KEY_LEN;
    EVP_PKEY_get_raw_public_key(s->key, out->key, &len);
    vms_sha256(out->key, VMS_PUBLIC_KEY_LEN, out->fingerprint);
    snprintf(out->comment, sizeof out->comment, "%s", comment ? comment : "");
}

int vms_signer_sign(const vms_signer *s, struct vms_version *v, fsp_error *err)
{
    uint8_t msg[VMS_VERSION_MESSAGE_MAX];
    size_t len = vms_version_message(v, msg), sig_len = VMS_SIGNATURE_LEN;
    if (!len)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "a version to sign needs an image name");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestSignInit(md, NULL, NULL, NULL, s->key) == 1 &&
              EVP_DigestSign(md, v->signature, &sig_len, msg, len) == 1 &&
              sig_len == VMS_SIGNATURE_LEN;
    EVP_MD_CTX_free(md);
    if (!ok)
        return fsp_fail(err, FSP_EK_INTERNAL, -EIO, "%s@%u: cannot sign (OpenSSL)", v->image,
                        v->number);
    struct vms_public_key pub;
    vms_signer_public(s, NULL, &pub);
    memcpy(v->signer, pub.fingerprint, FSP_SHA256_LEN);
    v->is_signed = true;
    return 0;
}

void vms_signer_free(vms_signer *s)
{
    if (!s)
        return;
    EVP_PKEY_free(s->key);
    free(s);
}
