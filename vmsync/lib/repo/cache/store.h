/* The reflector's cache on disk: see cache.h for its layout.  Private to
 * repo/cache. */
#ifndef VMS_CACHE_STORE_H
#define VMS_CACHE_STORE_H

#include "repo/repo.h"

#include <limits.h>
#include <stdbool.h>
#include <zstd.h>

enum vms_cache_kind { VMS_CACHE_OBJECT = 0, VMS_CACHE_MANIFEST = 1 };

struct vms_cache_store {
    char dir[PATH_MAX / 2]; /* room for the names below it */
    uint64_t max;   /* bytes */
    uint64_t added; /* bytes stored since the last eviction */
    uint64_t stored; /* bytes stored by this handle */
    int lock_fd;    /* DIR/fetching */
    ZSTD_CCtx *zc;
    ZSTD_DCtx *zd;
    uint8_t *buf, *plain;
    size_t buf_cap, plain_cap;
};

/* An object as the cache holds it; BODY lives in the store's buffer until
 * its next read or store. */
struct vms_cached_object {
    uint8_t codec;
    uint32_t len;
    const uint8_t *body;
    size_t stored;
};

int vms_cache_store_open(struct vms_cache_store *s, const char *dir, uint64_t max, fsp_error *err);
void vms_cache_store_close(struct vms_cache_store *s);
void vms_cache_path(const struct vms_cache_store *s, enum vms_cache_kind kind,
                    const uint8_t hash[FSP_SHA256_LEN], char *out, size_t cap);

/* The fetch locks: whoever holds HASH's fetches it; the others wait, then
 * look in the cache again.  Per process (fcntl), so one session's many
 * locks cost one descriptor. */
bool vms_cache_try_lock(struct vms_cache_store *s, enum vms_cache_kind kind,
                        const uint8_t hash[FSP_SHA256_LEN]);
void vms_cache_wait_unlocked(struct vms_cache_store *s, enum vms_cache_kind kind,
                             const uint8_t hash[FSP_SHA256_LEN]);
void vms_cache_unlock(struct vms_cache_store *s, enum vms_cache_kind kind,
                      const uint8_t hash[FSP_SHA256_LEN]);

/* Whether the cache holds HASH, with its sizes (objects). */
bool vms_cache_has(const struct vms_cache_store *s, enum vms_cache_kind kind,
                   const uint8_t hash[FSP_SHA256_LEN], struct vms_object_size *size);
/* The object as stored, its use renewed; -ENOENT (no message) when absent. */
int vms_cache_read(struct vms_cache_store *s, const uint8_t hash[FSP_SHA256_LEN],
                   struct vms_cached_object *o, fsp_error *err);
/* O's bytes, decompressed and checked against HASH (FSP_EK_CORRUPT). */
int vms_cache_plain(struct vms_cache_store *s, const uint8_t hash[FSP_SHA256_LEN],
                    const struct vms_cached_object *o, const uint8_t **data, fsp_error *err);
/* Stores DATA, already checked against HASH: temp file, fdatasync, rename. */
int vms_cache_store(struct vms_cache_store *s, const uint8_t hash[FSP_SHA256_LEN],
                    const uint8_t *data, size_t len, fsp_error *err);
/* A new empty file in DIR/tmp, its name in TMP. */
int vms_cache_temp(struct vms_cache_store *s, char *tmp, size_t cap, fsp_error *err);
/* Bytes of objects and manifests held. */
uint64_t vms_cache_size(const struct vms_cache_store *s);
/* Removes the least recently used files until at most MAX bytes remain. */
void vms_cache_evict(struct vms_cache_store *s);

#endif
