/* What every layer agrees an object is: a byte string keyed by the SHA-256 of
 * its content, stored raw or as one zstd frame, and the callbacks that hand
 * objects over.  Private to libvmsync. */
#ifndef VMS_OBJECT_H
#define VMS_OBJECT_H

#include "fsparse.h"

#include <stddef.h>
#include <stdint.h>

/* Called for each object fetched, in the order asked, with the verified,
 * decompressed bytes (valid until the callback returns) and the size it had
 * in the store.  A non-zero return stops the fetch and is returned. */
typedef int (*vms_object_cb)(void *ctx, size_t index, const uint8_t *data, size_t len,
                             size_t stored_len);
/* An object as it sits in its pack: CODEC VMS_CODEC_RAW or VMS_CODEC_ZSTD
 * (one zstd frame).  Not verified: the receiver checks every object against
 * its hash. */
typedef int (*vms_stored_cb)(void *ctx, size_t index, uint8_t codec, const uint8_t *body,
                             size_t stored_len, size_t len);
#define VMS_CODEC_RAW 0
#define VMS_CODEC_ZSTD 1
/* Level at which the store compresses each object alone. */
#define VMS_STORE_LEVEL 9
/* Objects bigger than this are refused (chunks are about 64 KiB). */
#define VMS_OBJECT_MAX (64u << 20)

#endif
