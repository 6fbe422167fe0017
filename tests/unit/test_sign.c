/* Version signatures (vmsync/lib/sign): the signed message byte for byte,
 * signing and checking, every signed field tampered with in turn refused,
 * key lines that read back, and bad key lines refused by name. */
#include "check.h"
#include "sign/sign.h"
#include "wire/proto.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static struct vms_version sample(void)
{
    struct vms_version v = {.number = 7, .parent = 6, .size = 1 << 20};
    snprintf(v.image, sizeof v.image, "desk");
    for (int i = 0; i < FSP_SHA256_LEN; i++) {
        v.manifest[i] = (uint8_t)i;
        v.digest[i] = (uint8_t)(0xa0 + i);
    }
    return v;
}

/* The layout vmsync.h documents, written out by hand. */
static void test_message_layout(void)
{
    struct vms_version v = sample();
    uint8_t msg[VMS_VERSION_MESSAGE_MAX], want[VMS_VERSION_MESSAGE_MAX];
    size_t n = 0;
    memcpy(want, "vmsync signed version 1\n", 24);
    n = 24;
    want[n++] = 4, want[n++] = 0;
    memcpy(want + n, "desk", 4), n += 4;
    want[n++] = 7, want[n++] = 0, want[n++] = 0, want[n++] = 0;
    want[n++] = 6, want[n++] = 0, want[n++] = 0, want[n++] = 0;
    memcpy(want + n, v.manifest, 32), n += 32;
    memcpy(want + n, v.digest, 32), n += 32;
    CHECK(vms_version_message(&v, msg) == n);
    CHECK(!memcmp(msg, want, n));
    v.image[0] = 0;
    CHECK(vms_version_message(&v, msg) == 0);
    memset(v.image, 'x', 255);
    v.image[255] = 0;
    CHECK(vms_version_message(&v, msg) == VMS_VERSION_MESSAGE_MAX);
}

/* What the message leaves out (size, message, who, when) is not signed. */
static void test_sign_and_tamper(void)
{
    vms_signer *s = NULL;
    fsp_error err = {0};
    CHECK(vms_signer_generate(&s, &err) == 0);
    if (!s)
        return;
    struct vms_public_key pub;
    vms_signer_public(s, "office", &pub);
    struct vms_version v = sample();
    CHECK(vms_signer_sign(s, &v, &err) == 0);
    CHECK(v.is_signed && !memcmp(v.signer, pub.fingerprint, FSP_SHA256_LEN));
    CHECK(vms_signature_valid(&pub, &v, v.signature));
    struct vms_version t = v;
    t.size++, t.created = 5, snprintf(t.message, sizeof t.message, "other");
    CHECK(vms_signature_valid(&pub, &t, v.signature));

    t = v, t.image[0] = 'D';
    CHECK(!vms_signature_valid(&pub, &t, v.signature));
    t = v, t.number++;
    CHECK(!vms_signature_valid(&pub, &t, v.signature));
    t = v, t.parent--;
    CHECK(!vms_signature_valid(&pub, &t, v.signature));
    t = v, t.manifest[31] ^= 1;
    CHECK(!vms_signature_valid(&pub, &t, v.signature));
    t = v, t.digest[0] ^= 0x80;
    CHECK(!vms_signature_valid(&pub, &t, v.signature));
    for (int i = 0; i < VMS_SIGNATURE_LEN; i += 9) {
        uint8_t sig[VMS_SIGNATURE_LEN];
        memcpy(sig, v.signature, sizeof sig);
        sig[i] ^= 0x01;
        CHECK(!vms_signature_valid(&pub, &v, sig));
    }

    vms_signer *other = NULL;
    CHECK(vms_signer_generate(&other, &err) == 0);
    struct vms_public_key other_pub;
    if (other) {
        vms_signer_public(other, NULL, &other_pub);
        CHECK(memcmp(other_pub.fingerprint, pub.fingerprint, FSP_SHA256_LEN));
        CHECK(!vms_signature_valid(&other_pub, &v, v.signature));
    }
    vms_signer_free(other);
    vms_signer_free(s);
}

static void test_key_line_round_trip(void)
{
    vms_signer *s = NULL;
    fsp_error err = {0};
    CHECK(vms_signer_generate(&s, &err) == 0);
    if (!s)
        return;
    struct vms_public_key pub, back;
    vms_signer_public(s, "office repo", &pub);
    char line[VMS_KEY_LINE_MAX], fp[VMS_FINGERPRINT_TEXT_LEN];
    vms_public_key_line(&pub, line);
    CHECK(!strncmp(line, "vmsync-ed25519 ", 15) && strstr(line, " office repo"));
    strcat(line, "\n");
    CHECK(vms_public_key_parse(line, "x.pub", &back, &err) == 0);
    CHECK(!memcmp(&back, &pub, sizeof pub));
    vms_fingerprint_text(pub.fingerprint, fp);
    CHECK(!strncmp(fp, "SHA256:", 7) && strlen(fp) == 7 + 43);
    vms_signer_free(s);
}

static void expect_bad_line(const char *line, const char *want)
{
    struct vms_public_key k;
    fsp_error err = {0};
    CHECK(vms_public_key_parse(line, "office.pub", &k, &err) == -EINVAL);
    CHECK(err.kind == FSP_EK_FORMAT && strstr(err.msg, "office.pub") && strstr(err.msg, want));
    if (!strstr(err.msg, want))
        fprintf(stderr, "  message: %s\n", err.msg);
}

static void test_bad_key_lines(void)
{
    const char *b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    char line[200];
    expect_bad_line("ssh-ed25519 AAAA", "does not start with");
    expect_bad_line("vmsync-ed25519 AAECAwQF", "not 32 bytes");
    expect_bad_line("vmsync-ed25519 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh==", "not 32 bytes");
    expect_bad_line("vmsync-ed25519 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh!=", "not 32 bytes");
    snprintf(line, sizeof line, "vmsync-ed25519 %s a\x01" "b", b64);
    expect_bad_line(line, "control character");
    snprintf(line, sizeof line, "vmsync-ed25519 %s a\nvmsync-ed25519 %s", b64, b64);
    expect_bad_line(line, "more than one line");
    struct vms_public_key k;
    fsp_error err = {0};
    snprintf(line, sizeof line, "vmsync-ed25519 %s\r\n", b64);
    CHECK(vms_public_key_parse(line, "ok.pub", &k, &err) == 0 && k.key[31] == 31 && !k.comment[0]);
}

static void test_key_files(void)
{
    vms_signer *s = NULL, *back = NULL;
    fsp_error err = {0};
    char *path = scratch_path("signing-key");
    CHECK(vms_signer_load(path, &back, &err) == 0 && !back); /* none yet */
    CHECK(vms_signer_generate(&s, &err) == 0);
    CHECK(s && vms_signer_save(s, path, scratch_root(), false, &err) == 0);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(s && vms_signer_save(s, path, scratch_root(), false, &err) == -EEXIST);
    CHECK(err.kind == VMS_EK_CONFLICT);
    CHECK(s && vms_signer_save(s, path, scratch_root(), true, &err) == 0);
    CHECK(vms_signer_load(path, &back, &err) == 0 && back);
    if (s && back) {
        struct vms_public_key a, b;
        vms_signer_public(s, NULL, &a);
        vms_signer_public(back, NULL, &b);
        CHECK(!memcmp(&a, &b, sizeof a));
    }
    vms_signer_free(back);
    back = NULL;
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("-----BEGIN PRIVATE KEY-----\nnot a key\n", f);
        fclose(f);
    }
    CHECK(vms_signer_load(path, &back, &err) == -EINVAL && !back && strstr(err.msg, path));
    vms_signer_free(s);
    free(path);
}

/* VERSION_INFO: a signed version carries its signer and signature, an
 * unsigned one (and an agent older than signatures) nothing more; a
 * signature cut short is malformed. */
static void test_version_on_the_wire(void)
{
    struct vms_version v = sample(), back;
    snprintf(v.user, sizeof v.user, "alice");
    snprintf(v.host, sizeof v.host, "srv");
    struct vms_wbuf unsigned_b = {0}, signed_b = {0};
    vms_put_version(&unsigned_b, &v);
    v.is_signed = true;
    memset(v.signer, 0x5a, sizeof v.signer);
    memset(v.signature, 0xc3, sizeof v.signature);
    vms_put_version(&signed_b, &v);
    CHECK(signed_b.len == unsigned_b.len + FSP_SHA256_LEN + VMS_SIGNATURE_LEN);

    struct vms_rbuf r = {unsigned_b.p, unsigned_b.p + unsigned_b.len, false};
    vms_get_version(&r, &back);
    CHECK(vms_get_done(&r) && !back.is_signed && back.number == 7 && !strcmp(back.host, "srv"));
    r = (struct vms_rbuf){signed_b.p, signed_b.p + signed_b.len, false};
    vms_get_version(&r, &back);
    CHECK(vms_get_done(&r) && back.is_signed);
    CHECK(!memcmp(back.signer, v.signer, FSP_SHA256_LEN));
    CHECK(!memcmp(back.signature, v.signature, VMS_SIGNATURE_LEN));
    for (size_t cut = 1; cut < FSP_SHA256_LEN + VMS_SIGNATURE_LEN; cut += 19) {
        r = (struct vms_rbuf){signed_b.p, signed_b.p + signed_b.len - cut, false};
        vms_get_version(&r, &back);
        CHECK(!vms_get_done(&r) && !back.is_signed);
    }
    vms_wbuf_free(&unsigned_b);
    vms_wbuf_free(&signed_b);
}

int main(void)
{
    if (scratch_begin("sign"))
        return 1;
    RUN(test_message_layout);
    RUN(test_sign_and_tamper);
    RUN(test_key_line_round_trip);
    RUN(test_bad_key_lines);
    RUN(test_key_files);
    RUN(test_version_on_the_wire);
    scratch_end();
    return check_failures;
}
