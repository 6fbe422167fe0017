/* Bandwidth windows: the rate in force by day of the week and time of day
 * (see vmsync.h, "bandwidth windows"). */
#include "vmsync.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum { ALL_DAYS = 0x7f, WEEKDAYS = 0x1f, WEEKENDS = 0x60 };

static int bad_window(const char *s, const char *why, fsp_error *err)
{
    return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "bad bandwidth window '%s': %s", s, why);
}

/* One day name, or a group of them, as a mask (bit 0 Monday); 0: none. */
static unsigned day_mask(const char *w)
{
    static const char *const names[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
    for (unsigned i = 0; i < 7; i++)
        if (!strcmp(w, names[i]))
            return 1u << i;
    return !strcmp(w, "daily")      ? ALL_DAYS
           : !strcmp(w, "weekdays") ? WEEKDAYS
           : !strcmp(w, "weekends") ? WEEKENDS
                                    : 0;
}

/* "mon,wed-fri" style: names and ranges of names, comma separated. */
static unsigned parse_days(char *w)
{
    unsigned mask = 0;
    for (char *save = NULL, *part = strtok_r(w, ",", &save); part; part = strtok_r(NULL, ",", &save)) {
        char *dash = strchr(part, '-');
        unsigned from, to;
        if (dash)
            *dash = 0;
        from = day_mask(part);
        to = dash ? day_mask(dash + 1) : from;
        if (!from || !to || (dash && (__builtin_popcount(from) != 1 || __builtin_popcount(to) != 1)))
            return 0;
        for (unsigned d = from; dash && d != to; d = d == 0x40 ? 1 : d << 1)
            mask |= d; /* a range may wrap past Sunday: sat-mon */
        mask |= from | to;
    }
    return mask;
}

/* "HH:MM-HH:MM" into minutes since midnight. */
static bool parse_span(const char *w, uint16_t *from, uint16_t *to)
{
    unsigned h1, m1, h2, m2;
    int end = 0;
    if (sscanf(w, "%2u:%2u-%2u:%2u%n", &h1, &m1, &h2, &m2, &end) != 4 || w[end])
        return false;
    if (h1 > 24 || h2 > 24 || m1 > 59 || m2 > 59 || (h1 == 24 && m1) || (h2 == 24 && m2))
        return false;
    *from = (uint16_t)(h1 * 60 + m1);
    *to = (uint16_t)(h2 * 60 + m2);
    return *from != *to;
}

static int parse_rate(const char *w, const char *s, uint64_t *rate, fsp_error *err)
{
    fsp_error why = {0};
    *rate = 0;
    if (!strcmp(w, "unlimited"))
        return 0;
    if (vms_parse_size(w, 10, rate, &why) || *rate < VMS_BWLIMIT_MIN)
        return bad_window(s, "the rate is 'unlimited' or at least 8K (as --bwlimit)", err);
    return 0;
}

int vms_bw_window_parse(const char *s, struct vms_bw_window *out, fsp_error *err)
{
    char buf[128], *save = NULL;
    if (snprintf(buf, sizeof buf, "%s", s) >= (int)sizeof buf)
        return bad_window(s, "too long", err);
    char *rate = strtok_r(buf, " \t", &save), *w2 = strtok_r(NULL, " \t", &save);
    char *w3 = strtok_r(NULL, " \t", &save);
    *out = (struct vms_bw_window){.days = ALL_DAYS, .from = 0, .to = 24 * 60};
    int rc = rate ? parse_rate(rate, s, &out->rate, err) : bad_window(s, "no rate", err);
    if (!rc && strtok_r(NULL, " \t", &save))
        rc = bad_window(s, "expected RATE [DAYS] [HH:MM-HH:MM]", err);
    /* DAYS, then the span; either may be left out */
    char *days = w2 && !strchr(w2, ':') ? w2 : NULL, *span = days ? w3 : w2;
    if (!rc && !days && w3)
        rc = bad_window(s, "expected RATE [DAYS] [HH:MM-HH:MM]", err);
    if (!rc && days && !(out->days = (uint8_t)parse_days(days)))
        rc = bad_window(s, "days are mon..sun, ranges (mon-fri), weekdays, weekends or daily", err);
    if (!rc && span && !parse_span(span, &out->from, &out->to))
        rc = bad_window(s, "the time is HH:MM-HH:MM, two different times of day", err);
    return rc;
}

/* Does W hold day DAY (0 Monday) at minute MIN of it? */
static bool window_holds(const struct vms_bw_window *w, unsigned day, unsigned min)
{
    if (w->from < w->to)
        return (w->days >> day & 1) && min >= w->from && min < w->to;
    /* crosses midnight: the evening of a listed day, or the morning after one */
    unsigned yesterday = (day + 6) % 7;
    return ((w->days >> day & 1) && min >= w->from) || ((w->days >> yesterday & 1) && min < w->to);
}

uint64_t vms_bw_rate_at(const struct vms_bw_window *w, size_t n, time_t when)
{
    struct tm tm;
    if (!localtime_r(&when, &tm))
        return 0;
    unsigned day = (unsigned)(tm.tm_wday + 6) % 7, min = (unsigned)(tm.tm_hour * 60 + tm.tm_min);
    for (size_t i = 0; i < n; i++)
        if (window_holds(&w[i], day, min))
            return w[i].rate;
    return 0;
}
