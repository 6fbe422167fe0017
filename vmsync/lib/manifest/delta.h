/* A manifest sent as a delta against another that the receiver holds.
 * Private to libvmsync.
 *
 * A manifest file's decoded form is its header followed by its records as
 * they were before compression.  The sender compresses the new manifest's
 * decoded form with the base's decoded form as a zstd reference prefix (one
 * frame, its content size in its header); the receiver decompresses it
 * against the same base and encodes the result as the manifest writer
 * would.  The file it gets is the sender's byte for byte when both run the
 * same zstd, and the receiver checks that by the file's SHA-256, the
 * manifest's id, before it keeps anything. */
#ifndef VMS_MANIFEST_DELTA_H
#define VMS_MANIFEST_DELTA_H

#include "base/codec.h"
#include "fsparse.h"

#include <stddef.h>
#include <stdint.h>

/* PATH's decoded form onto OUT; a file that decodes to more than MAX bytes
 * is FSP_EK_FORMAT -EFBIG. */
int vms_manifest_decode(const char *path, size_t max, struct vms_wbuf *out, fsp_error *err);
/* Writes DECODED[0..LEN) to PATH (temp file, fsync, rename) compressed as the
 * manifest writer compresses a scan.  A header of another manifest version
 * is FSP_EK_FORMAT -EPROTO. */
int vms_manifest_encode(const uint8_t *decoded, size_t len, const char *path, fsp_error *err);

/* TARGET as one zstd frame at LEVEL that refers back to BASE, onto DELTA. */
int vms_delta_make(const struct vms_wbuf *base, const struct vms_wbuf *target, int level,
                   struct vms_wbuf *delta, fsp_error *err);
/* The frame DELTA[0..LEN) decompressed against BASE onto OUT.  Anything but
 * one frame that states its content size, of at most MAX bytes, and decodes
 * to exactly that is FSP_EK_CORRUPT -EBADMSG naming WHAT. */
int vms_delta_apply(const struct vms_wbuf *base, const uint8_t *delta, size_t len, size_t max,
                    const char *what, struct vms_wbuf *out, fsp_error *err);

#endif
