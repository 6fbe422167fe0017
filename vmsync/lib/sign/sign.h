/* Signing keys and version signatures: Ed25519 through OpenSSL's EVP API.
 * The public half (key lines, fingerprints, the signed message, checking a
 * signature) is in vmsync.h; this is the private half, which only the place
 * that records versions (a local repository) uses.  Private to libvmsync. */
#ifndef VMS_SIGN_H
#define VMS_SIGN_H

#include "vmsync.h"

typedef struct vms_signer vms_signer;

/* A new random key; *OUT is the caller's, for vms_signer_free. */
int vms_signer_generate(vms_signer **out, fsp_error *err);
/* Reads the PEM (PKCS#8) private key at PATH; *OUT NULL and 0 when there is
 * no such file.  Any other key type, or a damaged file, is FSP_EK_FORMAT. */
int vms_signer_load(const char *path, vms_signer **out, fsp_error *err);
/* Writes S to PATH, mode 0600, through a temporary file in TMP_DIR: fsync,
 * then into place, then the directory's fsync.  Without REPLACE an existing
 * PATH is kept and the call fails (VMS_EK_CONFLICT). */
int vms_signer_save(const vms_signer *s, const char *path, const char *tmp_dir, bool replace,
                    fsp_error *err);
/* The public key of S, with COMMENT (may be NULL; truncated to fit). */
void vms_signer_public(const vms_signer *s, const char *comment, struct vms_public_key *out);
/* Signs V's canonical message (vms_version_message) into V: its signature,
 * its signer's fingerprint and is_signed. */
int vms_signer_sign(const vms_signer *s, struct vms_version *v, fsp_error *err);
void vms_signer_free(vms_signer *s); /* NULL is fine */

#endif
