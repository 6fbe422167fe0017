/* FastCDC content-defined chunking with normalised chunking (level 2).
 *
 * The gear hash shifts left, so its high bits depend on the most bytes; the cut
 * masks therefore test high bits.  Before the average size a mask with more bits
 * makes cuts rarer, after it a mask with fewer bits makes them likelier, which
 * narrows the spread of chunk sizes around the average.  Hashing restarts at the
 * minimum size of every chunk (cut-point skipping), so boundaries depend only on
 * the bytes of the chunk itself and resynchronise after an edit. */
#include "internal.h"

static uint64_t gear[256];

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The table is part of the chunk format: changing the seed changes every chunk. */
__attribute__((constructor)) static void gear_init(void)
{
    uint64_t state = 0x766d73796e63ULL; /* "vmsync" */
    for (int i = 0; i < 256; i++)
        gear[i] = splitmix64(&state);
}

#define MASK_BITS(n) (((1ULL << (n)) - 1) << (64 - (n)))
static const uint64_t mask_small_chunks = MASK_BITS(18); /* avg 2^16 + 2 bits */
static const uint64_t mask_large_chunks = MASK_BITS(14); /* avg 2^16 - 2 bits */

/* The first cut in [i, end) with MASK, or 0; *HP is the hash before I and
 * gets the hash before END.  Four bytes a round: with one, the loop's own
 * counting costs as much as the hash. */
static size_t find_cut(const uint8_t *buf, size_t i, size_t end, uint64_t mask, uint64_t *hp)
{
    uint64_t h = *hp;
#define STEP(k)                                                                                \
    do {                                                                                       \
        h = (h << 1) + gear[buf[i + (k)]];                                                     \
        if (!(h & mask))                                                                       \
            return i + (k) + 1;                                                                \
    } while (0)
    for (; end - i >= 4; i += 4) {
        STEP(0);
        STEP(1);
        STEP(2);
        STEP(3);
    }
    for (; i < end; i++)
        STEP(0);
#undef STEP
    *hp = h;
    return 0;
}

size_t fsp_cdc_next(const uint8_t *buf, size_t len, bool eof)
{
    if (len <= FSP_CDC_MIN)
        return eof ? len : 0;
    size_t normal_end = len < FSP_CDC_AVG ? len : FSP_CDC_AVG;
    size_t hard_end = len < FSP_CDC_MAX ? len : FSP_CDC_MAX;
    uint64_t h = 0;
    size_t cut = find_cut(buf, FSP_CDC_MIN, normal_end, mask_small_chunks, &h);
    if (!cut)
        cut = find_cut(buf, normal_end, hard_end, mask_large_chunks, &h);
    if (cut)
        return cut;
    if (hard_end == FSP_CDC_MAX)
        return FSP_CDC_MAX;
    return eof ? len : 0;
}
