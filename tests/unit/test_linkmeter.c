/* The link meter (wire/linkmeter.h) on a recorded link: what the agent saw
 * writing its first 70 segments of a checkout through a relay throttled to
 * 10 Mbit/s with a 50 ms round trip (tests/lib/relay.py behind sshd): each
 * segment's wire bytes, the seconds its write took, and the seconds the
 * link waited for it.  Buffers opened in bursts of about 650 KB every half
 * second, so some segments went in a millisecond. */
#include "check.h"
#include "wire/linkmeter.h"

#include <math.h>

struct sample {
    double wire, seconds, idle;
};

static const struct sample relay_10mbit[] = {
    {338250, 0.001, 0.003}, {309212, 0.001, 0.002}, {2600615, 1.575, 0.003}, {2683890, 2.623, 
    0.000}, {2847086, 2.104, 0.000}, {2749992, 2.102, 0.000}, {2903704, 2.633, 0.000}, {2594905, 
    1.572, 0.000}, {2705577, 2.633, 0.000}, {2850490, 2.104, 0.000}, {2779299, 2.102, 0.000}, 
    {2800437, 2.107, 0.000}, {2645519, 2.103, 0.000}, {2675945, 2.618, 0.000}, {2641473, 2.102, 
    0.000}, {2695230, 2.103, 0.000}, {2734873, 2.102, 0.000}, {2706068, 2.103, 0.000}, {2717911, 
    2.102, 0.000}, {2714886, 2.102, 0.000}, {2833087, 2.640, 0.000}, {2694076, 2.102, 0.000}, 
    {2776939, 2.104, 0.000}, {2684141, 2.102, 0.000}, {2571973, 2.101, 0.000}, {2861442, 2.103, 
    0.000}, {3426860, 3.156, 0.000}, {2100134, 1.565, 0.000}, {1669551, 1.055, 0.000}, {1149150, 
    1.049, 0.000}, {1067822, 1.052, 0.000}, {1566045, 1.054, 0.000}, {1361524, 1.049, 0.000}, 
    {825542, 0.537, 0.000}, {758108, 1.049, 0.000}, {751640, 0.516, 0.000}, {884720, 0.555, 0.000}, 
    {889066, 0.500, 0.000}, {1156946, 1.048, 0.000}, {1358033, 1.053, 0.000}, {1617365, 1.585, 
    0.000}, {2081187, 1.566, 0.000}, {766691, 0.535, 0.000}, {408704, 0.517, 0.000}, {1280300, 
    1.049, 0.000}, {501761, 0.001, 0.000}, {503689, 0.533, 0.002}, {1211013, 1.051, 0.000}, 
    {1888170, 1.569, 0.000}, {1886538, 1.586, 0.000}, {1903948, 1.570, 0.000}, {2064568, 1.586, 
    0.000}, {1923597, 1.564, 0.000}, {1662975, 1.055, 0.000}, {1932423, 1.586, 0.000}, {1847874, 
    1.564, 0.000}, {1842556, 1.586, 0.000}, {1827946, 1.569, 0.000}, {1334345, 1.054, 0.000}, 
    {1523855, 1.049, 0.000}, {833076, 0.532, 0.000}, {1536384, 1.053, 0.000}, {1417440, 1.571, 
    0.000}, {2166063, 1.585, 0.000}, {1174613, 1.049, 0.000}, {1551333, 1.055, 0.000}, {1782908, 
    1.569, 0.000}, {1780966, 1.580, 0.000}, {1629318, 1.055, 0.000}, {1381909, 1.052, 0.000},
};
#define N_SAMPLES (sizeof relay_10mbit / sizeof *relay_10mbit)
#define LINK_RATE 1.25e6 /* 10 Mbit/s in bytes */

/* Once measured, the rate stays within a factor of 2 of the link's, through
 * the bursts (segments 0, 1, 45 went in a millisecond each: a per-segment
 * average read 509 MB/s at the first and 224 MB/s at the 45th, and took 15
 * and 10 segments to come back down). */
static void test_bursts_do_not_inflate_the_rate(void)
{
    struct vms_link_meter m = {0};
    int measured = 0, outside = 0;
    for (size_t i = 0; i < N_SAMPLES; i++) {
        const struct sample *x = &relay_10mbit[i];
        vms_link_meter_add(&m, (size_t)x->wire, x->seconds, x->idle);
        double rate = vms_link_meter_rate(&m);
        if (rate > 0 && !measured)
            measured = (int)i + 1;
        if (rate > 0 && (rate > 2 * LINK_RATE || rate < LINK_RATE / 2))
            outside++;
        if (rate > 0 && vms_link_meter_fastest(&m) > 3 * LINK_RATE)
            outside++;
    }
    CHECK(measured > 0 && measured <= 3);
    CHECK(outside == 0);
}

/* A span needs both its bytes and its seconds: a fast link is measured
 * over many segments, none alone. */
static void test_a_span_needs_bytes_and_time(void)
{
    struct vms_link_meter m = {0};
    vms_link_meter_add(&m, 4u << 20, 0.01, 0);
    CHECK(vms_link_meter_rate(&m) == 0);
    for (int i = 0; i < 49; i++)
        vms_link_meter_add(&m, 4u << 20, 0.01, 0);
    CHECK(fabs(vms_link_meter_rate(&m) - (4u << 20) / 0.01) < 1);
    struct vms_link_meter slow = {0};
    vms_link_meter_add(&slow, 100000, 1.0, 0);
    CHECK(vms_link_meter_rate(&slow) == 0);
}

/* The link waited for a segment: its buffers had drained, so the bytes
 * before it do not count with those after. */
static void test_idle_starts_a_new_span(void)
{
    struct vms_link_meter m = {0};
    vms_link_meter_add(&m, 900000, 0.7, 0);
    vms_link_meter_add(&m, 900000, 0.001, 0.5);
    CHECK(vms_link_meter_rate(&m) == 0);
    vms_link_meter_add(&m, 1100000, 0.4, 0);
    CHECK(vms_link_meter_rate(&m) == 0);
    vms_link_meter_add(&m, 1100000, 0.9, 0);
    CHECK(fabs(vms_link_meter_rate(&m) - 2200000 / 1.3) < 1);
}

int main(void)
{
    RUN(test_bursts_do_not_inflate_the_rate);
    RUN(test_a_span_needs_bytes_and_time);
    RUN(test_idle_starts_a_new_span);
    return check_failures != 0;
}
