/* The retention rules of vmsync prune: which of an image's versions a policy
 * keeps, and why (vms_retention_select, a pure function). */
#include "check.h"
#include "vmsync.h"

#include <string.h>

#define DAY 86400
#define T0 1767225600 /* 2026-01-01 00:00:00 UTC */

/* Whether the kept bits of WHY[0..n) are WANT, a string of digits, one per
 * version: 0 forgotten, else the VMS_KEEP_* bits as a decimal digit (1..9), or
 * '+' for any non-zero. */
static bool keeps(const struct vms_retention *p, const int64_t *t, size_t n, const char *want)
{
    unsigned why[32];
    char got[33];
    vms_retention_select(p, t, n, why);
    for (size_t i = 0; i < n; i++)
        got[i] = why[i] ? (why[i] < 10 ? (char)('0' + why[i]) : '+') : '0';
    got[n] = 0;
    bool same = !strcmp(got, want);
    if (!same)
        fprintf(stderr, "kept %s, expected %s\n", got, want);
    return same;
}

static void test_keep_last_keeps_the_newest(void)
{
    int64_t t[] = {T0, T0 + 1, T0 + 2, T0 + 3};
    struct vms_retention p = {.keep_last = 2};
    CHECK(keeps(&p, t, 4, "0019")); /* 9: LAST | LATEST */
    p.keep_last = 10;
    CHECK(keeps(&p, t, 4, "1119"));
}

static void test_the_latest_stays_whatever_the_policy(void)
{
    int64_t t[] = {T0};
    struct vms_retention none = {0};
    CHECK(keeps(&none, t, 1, "8"));
    CHECK(keeps(&none, NULL, 0, ""));
    int64_t two[] = {T0, T0 + DAY};
    CHECK(keeps(&none, two, 2, "08"));
}

static void test_daily_keeps_the_newest_of_each_day(void)
{
    /* two on day 0, none on day 1, three on day 2, one on day 5 */
    int64_t t[] = {T0 + 10, T0 + 20, 2 * DAY + T0, 2 * DAY + T0 + 5, 2 * DAY + T0 + 9, 5 * DAY + T0};
    struct vms_retention p = {.keep_daily = 2};
    CHECK(keeps(&p, t, 6, "00002+")); /* day 5, then day 2's newest */
    p.keep_daily = 3;
    CHECK(keeps(&p, t, 6, "02002+")); /* days without versions do not count */
    p.keep_daily = 100;
    CHECK(keeps(&p, t, 6, "02002+"));
}

static void test_a_day_ends_at_midnight_utc(void)
{
    int64_t t[] = {T0 + DAY - 1, T0 + DAY};
    struct vms_retention p = {.keep_daily = 2};
    CHECK(keeps(&p, t, 2, "2+"));
    int64_t same[] = {T0, T0 + DAY - 1};
    CHECK(keeps(&p, same, 2, "0+"));
}

static void test_monthly_keeps_the_newest_of_each_month(void)
{
    int64_t jan = T0, feb = T0 + 31 * DAY, mar = T0 + 59 * DAY; /* 1 Jan, 1 Feb, 1 Mar */
    int64_t t[] = {jan, jan + 9 * DAY, feb, feb + 27 * DAY, mar - 1, mar};
    struct vms_retention p = {.keep_monthly = 2};
    CHECK(keeps(&p, t, 6, "00004+")); /* March, then February's newest (28 Feb 23:59:59) */
    p.keep_monthly = 5;
    CHECK(keeps(&p, t, 6, "04004+"));
}

static void test_rules_add_up(void)
{
    int64_t t[] = {T0, T0 + 1, T0 + DAY, T0 + 40 * DAY};
    struct vms_retention p = {.keep_last = 1, .keep_daily = 2, .keep_monthly = 2};
    /* last: v4; daily: v4, v3; monthly: v4 (Feb), v3 (Jan) */
    CHECK(keeps(&p, t, 4, "006+"));
}

static void test_a_clock_that_stepped_back_counts_a_day_once(void)
{
    /* version 3 was recorded "before" version 2, on day 0 again */
    int64_t t[] = {T0, T0 + DAY, T0 + 5, T0 + 2 * DAY};
    struct vms_retention p = {.keep_daily = 3};
    CHECK(keeps(&p, t, 4, "022+")); /* day 2, day 0 (newest: v3), day 1 */
    p.keep_daily = 2;
    CHECK(keeps(&p, t, 4, "002+"));
}

int main(void)
{
    RUN(test_keep_last_keeps_the_newest);
    RUN(test_the_latest_stays_whatever_the_policy);
    RUN(test_daily_keeps_the_newest_of_each_day);
    RUN(test_a_day_ends_at_midnight_utc);
    RUN(test_monthly_keeps_the_newest_of_each_month);
    RUN(test_rules_add_up);
    RUN(test_a_clock_that_stepped_back_counts_a_day_once);
    return check_failures ? 1 : 0;
}
