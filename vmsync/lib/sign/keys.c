/* Public keys as people handle them: key lines, fingerprints, key files. */
#include "base/fileio.h"
#include "sign/sign.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_TYPE "vmsync-ed25519"
#define KEY_B64_LEN 44 /* 32 bytes, base64 with its padding */

void vms_fingerprint_text(const uint8_t fingerprint[FSP_SHA256_LEN],
                          char out[VMS_FINGERPRINT_TEXT_LEN])
{
    memcpy(out, "SHA256:", 7);
    int n = EVP_EncodeBlock((unsigned char *)out + 7, fingerprint, FSP_SHA256_LEN);
    while (n > 0 && out[7 + n - 1] == '=')
        n--;
    out[7 + n] = 0;
}

void vms_public_key_line(const struct vms_public_key *k, char out[VMS_KEY_LINE_MAX])
{
    char b64[KEY_B64_LEN + 1];
    EVP_EncodeBlock((unsigned char *)b64, k->key, VMS_PUBLIC_KEY_LEN);
    snprintf(out, VMS_KEY_LINE_MAX, "%s %s%s%s", KEY_TYPE, b64, k->comment[0] ? " " : "",
             k->comment);
}

static int bad_line(const char *where, const char *what, fsp_error *err)
{
    return fsp_fail(err, FSP_EK_FORMAT, -EINVAL, "%s: not a vmsync public key: %s", where, what);
}

static int decode_key(const char *b64, size_t len, const char *where, uint8_t key[VMS_PUBLIC_KEY_LEN],
                      fsp_error *err)
{
    /* Decoded, then encoded again: only the one spelling of 32 bytes passes. */
    unsigned char raw[KEY_B64_LEN];
    char again[KEY_B64_LEN + 1];
    if (len != KEY_B64_LEN || EVP_DecodeBlock(raw, (const unsigned char *)b64, KEY_B64_LEN) < 0)
        return bad_line(where, "the key is not 32 bytes of base64", err);
    EVP_EncodeBlock((unsigned char *)again, raw, VMS_PUBLIC_KEY_LEN);
    if (memcmp(again, b64, KEY_B64_LEN))
        return bad_line(where, "the key is not 32 bytes of base64", err);
    memcpy(key, raw, VMS_PUBLIC_KEY_LEN);
    return 0;
}

/* The comment: the rest of the line, blanks at either end dropped. */
static int take_comment(const char *s, const char *where, char *out, size_t cap, fsp_error *err)
{
    s += strspn(s, " \t");
    size_t n = strcspn(s, "\r\n");
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (s[n] && strspn(s + n, "\r\n") != strlen(s + n))
        return bad_line(where, "it is more than one line", err);
    if (n >= cap)
        return bad_line(where, "the comment is too long", err);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return bad_line(where, "the comment holds a control character", err);
    memcpy(out, s, n);
    out[n] = 0;
    return 0;
}

int vms_public_key_parse(const char *line, const char *where, struct vms_public_key *out,
                         fsp_error *err)
{
    memset(out, 0, sizeof *out);
    size_t type_len = strlen(KEY_TYPE);
    if (strncmp(line, KEY_TYPE, type_len) || (line[type_len] != ' ' && line[type_len] != '\t'))
        return bad_line(where, "it does not start with \"" KEY_TYPE " \"", err);
    const char *b64 = line + type_len + strspn(line + type_len, " \t");
    size_t b64_len = strcspn(b64, " \t\r\n");
    int rc = decode_key(b64, b64_len, where, out->key, err);
    if (!rc)
        rc = take_comment(b64 + b64_len, where, out->comment, sizeof out->comment, err);
    if (!rc)
        rc = vms_sha256(out->key, VMS_PUBLIC_KEY_LEN, out->fingerprint)
                 ? fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory")
                 : 0;
    return rc;
}

static bool is_blank_or_comment(const char *line)
{
    line += strspn(line, " \t");
    return *line == '#' || *line == '\n' || *line == '\r' || *line == 0;
}

int vms_public_key_load(const char *path, struct vms_public_key *out, fsp_error *err)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return fsp_fail(err, FSP_EK_OPEN, -errno, "%s: cannot open: %s", path, strerror(errno));
    char line[VMS_KEY_LINE_MAX + 2];
    int rc = bad_line(path, "the file holds no key line", err);
    while (fgets(line, sizeof line, f)) {
        if (!strchr(line, '\n') && !feof(f)) {
            rc = bad_line(path, "a line is too long", err);
            break;
        }
        if (!is_blank_or_comment(line)) {
            rc = vms_public_key_parse(line, path, out, err);
            break;
        }
    }
    if (ferror(f))
        rc = fsp_fail(err, FSP_EK_IO, -EIO, "%s: cannot read", path);
    fclose(f);
    return rc;
}
