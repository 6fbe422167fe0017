/* A set of SHA-256 keys, each with a dense index (its insertion order): the
 * open pack's objects, a spool's objects; and a map from such keys to 64-bit
 * values, built on a set.  Keys may come from crafted manifests, so no
 * choice of keys degrades them (see keyset.c).  Private to libvmsync. */
#ifndef VMS_KEYSET_H
#define VMS_KEYSET_H

#include "fsparse.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vms_keyset {
    uint8_t (*keys)[FSP_SHA256_LEN];
    size_t n, cap;
    uint32_t *slots; /* 0 = empty, else index + 1 */
    size_t mask;     /* slot count - 1 */
    uint64_t seed;
};

void vms_keyset_free(struct vms_keyset *ks);
/* Adds KEY if absent; *INDEX gets its index either way. */
int vms_keyset_add(struct vms_keyset *ks, const uint8_t key[FSP_SHA256_LEN], size_t *index,
                   bool *added);
bool vms_keyset_find(const struct vms_keyset *ks, const uint8_t key[FSP_SHA256_LEN], size_t *index);

/* ---- a map from SHA-256 to a 64-bit value ---- */

struct vms_hashmap {
    struct vms_keyset keys;
    uint64_t *values; /* parallel to keys.keys */
    size_t cap;
};

/* Inserts KEY with VALUE unless present; returns 1 when inserted, 0 when it was
 * there (VALUE untouched), negative errno on failure. */
int vms_hashmap_put(struct vms_hashmap *h, const uint8_t key[FSP_SHA256_LEN], uint64_t value);
/* Returns a pointer to KEY's value or NULL. */
uint64_t *vms_hashmap_get(const struct vms_hashmap *h, const uint8_t key[FSP_SHA256_LEN]);
void vms_hashmap_free(struct vms_hashmap *h);

/* Grows *P (of *CAP elements of SIZE bytes) to hold at least NEED. */
int vms_grow(void *p, size_t *cap, size_t need, size_t size);

#endif
