/* Content-defined chunking and the external sort. */
#include "check.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static uint8_t *random_bytes(size_t n, uint32_t seed)
{
    uint8_t *p = malloc(n);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
    return p;
}

/* Chunk boundaries as end offsets; returns the count. */
static size_t cut_all(const uint8_t *data, size_t len, size_t *ends, size_t max)
{
    size_t n = 0, pos = 0;
    while (pos < len && n < max) {
        size_t c = fsp_cdc_next(data + pos, len - pos, true);
        pos += c;
        ends[n++] = pos;
    }
    return n;
}

static void test_cdc_bounds_and_average(void)
{
    size_t len = 64u << 20;
    uint8_t *data = random_bytes(len, 1);
    static size_t ends[8192];
    size_t n = cut_all(data, len, ends, 8192);
    size_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        size_t size = ends[i] - prev;
        CHECK(size <= FSP_CDC_MAX);
        CHECK(size >= FSP_CDC_MIN || i == n - 1);
        prev = ends[i];
    }
    CHECK(prev == len);
    double avg = (double)len / (double)n;
    CHECK(avg > 48e3 && avg < 96e3); /* about 64 KiB */
    free(data);
}

static void test_cdc_resynchronises_after_insert(void)
{
    size_t len = 8u << 20;
    uint8_t *a = random_bytes(len, 7);
    uint8_t *b = malloc(len + 100);
    memcpy(b, a, 1000);
    memset(b + 1000, 0x55, 100);
    memcpy(b + 1100, a + 1000, len - 1000);
    static size_t ea[1024], eb[1024];
    size_t na = cut_all(a, len, ea, 1024), nb = cut_all(b, len + 100, eb, 1024);
    size_t shared = 0;
    for (size_t i = 0, j = 0; i < na && j < nb;) {
        if (ea[i] + 100 == eb[j]) {
            shared++;
            i++;
            j++;
        } else if (ea[i] + 100 < eb[j]) {
            i++;
        } else {
            j++;
        }
    }
    CHECK(shared + 2 >= na); /* all but the edited chunk line up */
    free(a);
    free(b);
}

static void test_cdc_needs_more_without_eof(void)
{
    uint8_t *data = random_bytes(FSP_CDC_MIN, 3);
    CHECK(fsp_cdc_next(data, FSP_CDC_MIN, false) == 0);
    CHECK(fsp_cdc_next(data, FSP_CDC_MIN, true) == FSP_CDC_MIN);
    free(data);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The chunk format, written out the plain way: the gear table from its seed
 * and a byte-at-a-time scan.  fsp_cdc_next must cut exactly where this does,
 * whatever it does to go faster. */
static uint64_t ref_gear[256];

static void ref_gear_init(void)
{
    uint64_t state = 0x766d73796e63ULL;
    for (int i = 0; i < 256; i++) {
        uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        ref_gear[i] = z ^ (z >> 31);
    }
}

static size_t ref_cdc_next(const uint8_t *buf, size_t len, bool eof)
{
    const uint64_t small = ((1ULL << 18) - 1) << 46, large = ((1ULL << 14) - 1) << 50;
    if (len <= FSP_CDC_MIN)
        return eof ? len : 0;
    uint64_t h = 0;
    for (size_t i = FSP_CDC_MIN; i < len && i < FSP_CDC_MAX; i++) {
        h = (h << 1) + ref_gear[buf[i]];
        if (!(h & (i < FSP_CDC_AVG ? small : large)))
            return i + 1;
    }
    return len >= FSP_CDC_MAX ? FSP_CDC_MAX : eof ? len : 0;
}

/* Random bytes, runs of zeros and a short repeating pattern, cut from every
 * length remainder, with and without the end of the stream. */
static void test_cdc_matches_reference(void)
{
    ref_gear_init();
    size_t len = 24u << 20;
    uint8_t *data = random_bytes(len, 7);
    memset(data + (3u << 20), 0, 1u << 20);
    for (size_t i = 9u << 20; i < (10u << 20); i++)
        data[i] = (uint8_t)(i % 7);
    size_t mismatches = 0, n = 0;
    for (size_t pos = 0; pos < len; n++) {
        size_t avail = len - pos;
        bool eof = n % 3 != 1;
        if (n % 5 == 2 && avail > 70000 + n % 4)
            avail = 70000 + n % 4; /* ends before the cut, at varied alignments */
        size_t cut = fsp_cdc_next(data + pos, avail, eof);
        mismatches += cut != ref_cdc_next(data + pos, avail, eof);
        pos += cut ? cut : FSP_CDC_MIN;
    }
    CHECK(mismatches == 0);
    CHECK(n > 300);
    free(data);
}

static void sort_and_check(size_t count, size_t budget)
{
    fsp_xsort *xs;
    CHECK(fsp_xsort_new(sizeof(uint64_t), budget, cmp_u64, &xs) == 0);
    uint64_t sum_in = 0, sum_out = 0, x = 12345;
    for (size_t i = 0; i < count; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t v = x >> 20;
        sum_in += v;
        CHECK(fsp_xsort_add(xs, &v) == 0);
    }
    uint64_t v, prev = 0;
    size_t seen = 0;
    int rc;
    while ((rc = fsp_xsort_next(xs, &v)) == 1) {
        CHECK(v >= prev);
        prev = v;
        sum_out += v;
        seen++;
    }
    CHECK(rc == 0);
    CHECK(seen == count);
    CHECK(sum_in == sum_out);
    fsp_xsort_free(xs);
}

static void test_xsort_in_memory(void) { sort_and_check(1000, 1 << 20); }
static void test_xsort_spills_and_merges(void) { sort_and_check(300000, 64 << 10); }
static void test_xsort_empty(void) { sort_and_check(0, 1024); }

int main(void)
{
    RUN(test_cdc_bounds_and_average);
    RUN(test_cdc_resynchronises_after_insert);
    RUN(test_cdc_needs_more_without_eof);
    RUN(test_cdc_matches_reference);
    RUN(test_xsort_in_memory);
    RUN(test_xsort_spills_and_merges);
    RUN(test_xsort_empty);
    return check_failures ? 1 : 0;
}
