/* Sets of SHA-256 keys, and maps from SHA-256 keys to 64-bit values built on
 * them. */
#include "base/keyset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ---- key sets ------------------------------------------------------------
 * Open addressing over SHA-256 keys.  The keys of a live set come from
 * manifests, which may be crafted, so buckets mix all 32 bytes with a random
 * seed rather than trusting the first bytes to be uniform. */

static uint64_t keyset_bucket(const struct vms_keyset *ks, const uint8_t *key)
{
    uint64_t h = ks->seed;
    for (int i = 0; i < 4; i++) {
        uint64_t w;
        memcpy(&w, key + 8 * i, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
    }
    return h;
}

/* The slot holding KEY, or the empty slot where it would go. */
static size_t keyset_probe(const struct vms_keyset *ks, const uint8_t *key)
{
    size_t s = keyset_bucket(ks, key) & ks->mask;
    while (ks->slots[s] && memcmp(ks->keys[ks->slots[s] - 1], key, FSP_SHA256_LEN) != 0)
        s = (s + 1) & ks->mask;
    return s;
}

static int keyset_grow_slots(struct vms_keyset *ks)
{
    size_t n_slots = ks->slots ? (ks->mask + 1) * 2 : 1024;
    uint32_t *slots = calloc(n_slots, sizeof *slots);
    if (!slots)
        return -ENOMEM;
    if (!ks->slots && getrandom(&ks->seed, sizeof ks->seed, GRND_NONBLOCK) != sizeof ks->seed)
        ks->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)ks;
    free(ks->slots);
    ks->slots = slots;
    ks->mask = n_slots - 1;
    for (size_t i = 0; i < ks->n; i++)
        ks->slots[keyset_probe(ks, ks->keys[i])] = (uint32_t)(i + 1);
    return 0;
}

bool vms_keyset_find(const struct vms_keyset *ks, const uint8_t key[FSP_SHA256_LEN], size_t *index)
{
    if (!ks->slots)
        return false;
    uint32_t slot = ks->slots[keyset_probe(ks, key)];
    if (slot && index)
        *index = slot - 1;
    return slot != 0;
}

int vms_keyset_add(struct vms_keyset *ks, const uint8_t key[FSP_SHA256_LEN], size_t *index,
                   bool *added)
{
    if (added)
        *added = false;
    if (vms_keyset_find(ks, key, index))
        return 0;
    if (ks->n >= UINT32_MAX - 1)
        return -ENOMEM;
    if (!ks->slots || (ks->n + 1) * 2 > ks->mask + 1) {
        int rc = keyset_grow_slots(ks);
        if (rc)
            return rc;
    }
    if (ks->n == ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 256;
        void *keys = realloc(ks->keys, cap * sizeof *ks->keys);
        if (!keys)
            return -ENOMEM;
        ks->keys = keys;
        ks->cap = cap;
    }
    memcpy(ks->keys[ks->n], key, FSP_SHA256_LEN);
    ks->slots[keyset_probe(ks, key)] = (uint32_t)(ks->n + 1);
    if (index)
        *index = ks->n;
    ks->n++;
    if (added)
        *added = true;
    return 0;
}

void vms_keyset_free(struct vms_keyset *ks)
{
    free(ks->keys);
    free(ks->slots);
    memset(ks, 0, sizeof *ks);
}

/* ---- maps ------------------------------------------------------------------ */

int vms_hashmap_put(struct vms_hashmap *h, const uint8_t key[FSP_SHA256_LEN], uint64_t value)
{
    /* room for the value first, so a key never goes in without one */
    int rc = vms_grow(&h->values, &h->cap, h->keys.n + 1, sizeof *h->values);
    size_t index;
    bool added = false;
    if (!rc)
        rc = vms_keyset_add(&h->keys, key, &index, &added);
    if (rc || !added)
        return rc;
    h->values[index] = value;
    return 1;
}

uint64_t *vms_hashmap_get(const struct vms_hashmap *h, const uint8_t key[FSP_SHA256_LEN])
{
    size_t index;
    return vms_keyset_find(&h->keys, key, &index) ? &h->values[index] : NULL;
}

void vms_hashmap_free(struct vms_hashmap *h)
{
    vms_keyset_free(&h->keys);
    free(h->values);
    memset(h, 0, sizeof *h);
}

int vms_grow(void *p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap : 64;
    while (cap2 < need)
        cap2 *= 2;
    void **pp = p;
    void *grown = realloc(*pp, cap2 * size);
    if (!grown)
        return -ENOMEM;
    *pp = grown;
    *cap = cap2;
    return 0;
}
