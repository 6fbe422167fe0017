/* A set of SHA-256 keys, each with a dense index (its insertion order): the
 * open pack's objects, a spool's objects.  Implemented in store.c.  Private
 * to libvmsync. */
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

#endif
