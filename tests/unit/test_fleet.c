/* The fleet planner's simulation on fleets whose answer is known by hand,
 * and the strict JSON reader under it.  No repository: every laptop is
 * given as bytes. */
#include "base/jsonread.h"
#include "check.h"
#include "vmsync.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MIB (1024.0 * 1024.0)

static const struct vms_fleet_report *plan(const char *text, vms_fleet **f)
{
    fsp_error err = {0};
    const struct vms_fleet_report *r = NULL;
    *f = NULL;
    if (vms_fleet_parse(text, strlen(text), "test.json", NULL, f, &err) ||
        vms_fleet_plan(*f, &r, &err))
        fprintf(stderr, "  %s\n", err.msg);
    return r;
}

static bool near(double a, double b) { return fabs(a - b) <= 1e-6 * (fabs(b) > 1 ? fabs(b) : 1); }

static const struct vms_fleet_laptop *laptop(const struct vms_fleet_report *r, const char *name)
{
    for (size_t i = 0; i < r->n_laptops; i++)
        if (!strcmp(r->laptops[i].name, name))
            return &r->laptops[i];
    return NULL;
}

static void test_one_laptop_takes_bytes_over_rate(void)
{
    vms_fleet *f;
    const struct vms_fleet_report *r = plan(
        "{\"image\":\"d\",\"server\":{\"uplink\":1048576},\"branches\":[{\"name\":\"hq\"}],"
        "\"laptops\":[{\"name\":\"a\",\"branch\":\"hq\",\"bytes\":\"10M\"}]}", &f);
    CHECK(r && near(r->makespan, 10) && near(r->makespan_all_at_once, 10));
    CHECK(r && r->server_bytes == 10u << 20);
    vms_fleet_free(f);
}

static void test_each_transfer_pays_its_round_trips(void)
{
    vms_fleet *f;
    const struct vms_fleet_report *r = plan(
        "{\"image\":\"d\",\"server\":{\"uplink\":\"1M\"},\"branches\":[{\"name\":\"b\","
        "\"link\":{\"rate\":\"2M\",\"rtt_ms\":40}}],\"laptops\":[{\"name\":\"a\",\"branch\":\"b\","
        "\"bytes\":\"10M\",\"link\":{\"rate\":\"80Mbit\",\"rtt_ms\":60}}]}", &f);
    CHECK(r && near(r->makespan, 10 + 8 * 0.1));
    vms_fleet_free(f);
}

static void test_a_shared_uplink_is_shared_fairly(void)
{
    vms_fleet *f;
    const struct vms_fleet_report *r = plan(
        "{\"image\":\"d\",\"server\":{\"uplink\":\"1M\"},\"branches\":[{\"name\":\"hq\"}],"
        "\"laptops\":[{\"name\":\"a\",\"branch\":\"hq\",\"bytes\":\"10M\"},"
        "{\"name\":\"b\",\"branch\":\"hq\",\"bytes\":\"10M\"}]}", &f);
    CHECK(r && near(laptop(r, "a")->ready_all_at_once, 20) && near(r->makespan_all_at_once, 20));
    CHECK(r && r->makespan <= 20 + 1e-6);
    vms_fleet_free(f);
}

static void test_online_hours_wait_for_the_window(void)
{
    vms_fleet *f;
    const struct vms_fleet_report *r = plan(
        "{\"image\":\"d\",\"start\":\"00:00\",\"server\":{\"uplink\":\"1M\"},\"branches\":[{\"name\":\"hq\"}],"
        "\"laptops\":[{\"name\":\"a\",\"branch\":\"hq\",\"bytes\":\"1M\",\"online\":[\"01:00-02:00\"]}]}", &f);
    CHECK(r && near(r->makespan, 3601) && near(laptop(r, "a")->start, 3600));
    vms_fleet_free(f);
}

/* A laptop online ten minutes a day needs the whole link then: the schedule
 * runs it alone, everyone at once leaves it half and a day's wait. */
static void test_a_short_window_goes_first(void)
{
    vms_fleet *f;
    const struct vms_fleet_report *r = plan(
        "{\"image\":\"d\",\"start\":\"00:00\",\"server\":{\"uplink\":\"1M\"},\"branches\":[{\"name\":\"b\"}],"
        "\"laptops\":[{\"name\":\"short\",\"branch\":\"b\",\"bytes\":\"400M\",\"online\":[\"00:00-00:10\"]},"
        "{\"name\":\"always\",\"branch\":\"b\",\"bytes\":\"600M\"}]}", &f);
    CHECK(r && r->makespan_all_at_once > 86400);
    CHECK(r && near(r->makespan, 1000) && near(laptop(r, "short")->ready, 400));
    CHECK(r && laptop(r, "short")->order == 1 && r->branches[0].concurrency == 1);
    vms_fleet_free(f);
}

/* A window's end must end the laptop's transfer whatever the start's
 * fraction of a second (fleet run starts now, not at a whole minute): the
 * clock adds that fraction to every event's time, and a boundary a hair
 * ahead was once skipped for a day. */
static void test_a_window_ends_at_any_start_second(void)
{
    static const char *const fleet =
        "{\"image\":\"d\",\"server\":{\"uplink\":\"1M\"},\"branches\":[{\"name\":\"b\"}],"
        "\"laptops\":[{\"name\":\"w\",\"branch\":\"b\",\"bytes\":\"3600M\",\"online\":[\"12:58-14:58\"]},"
        "{\"name\":\"x\",\"branch\":\"b\",\"bytes\":\"3600M\"}]}";
    for (double start = 46680.3; start < 46700; start += 0.7) {
        vms_fleet *f = NULL;
        fsp_error err = {0};
        const struct vms_fleet_report *r = NULL;
        CHECK(!vms_fleet_parse(fleet, strlen(fleet), "test.json", NULL, &f, &err));
        vms_fleet_start_at(f, start);
        CHECK(f && !vms_fleet_plan(f, &r, &err));
        CHECK(r && r->makespan_all_at_once > 80000 && near(r->makespan, 7200));
        CHECK(r && laptop(r, "w")->order == 1 && r->branches[0].concurrency == 1);
        CHECK(f && vms_fleet_until_online(f, 0, 0) == 0 && vms_fleet_until_online(f, 0, 8000) > 70000);
        vms_fleet_free(f);
    }
}

/* An offline branch's bytes go by bundle: no link carries them, and its
 * laptops wait for nothing in the simulation. */
static void test_an_offline_branch_takes_no_link(void)
{
    vms_fleet *f;
    const struct vms_fleet_report *r = plan(
        "{\"image\":\"d\",\"server\":{\"uplink\":\"1M\"},\"branches\":[{\"name\":\"hq\"},"
        "{\"name\":\"ship\",\"offline\":true}],\"laptops\":[{\"name\":\"a\",\"branch\":\"hq\","
        "\"bytes\":\"10M\"},{\"name\":\"s\",\"branch\":\"ship\",\"bytes\":\"100M\"}]}", &f);
    CHECK(r && near(r->makespan, 10) && r->server_bytes == 10u << 20);
    CHECK(r && r->branches[1].offline && r->branches[1].bundle_bytes == 100u << 20 &&
          r->branches[1].upstream_bytes == 0);
    CHECK(r && laptop(r, "s")->via_bundle && laptop(r, "s")->ready == 0 && !laptop(r, "a")->via_bundle);
    vms_fleet_free(f);
}

static void test_a_reflector_carries_the_union_once(void)
{
    vms_fleet *f;
    const struct vms_fleet_report *r = plan(
        "{\"image\":\"d\",\"server\":{\"uplink\":\"10M\"},\"branches\":[{\"name\":\"b\",\"reflector\":true,"
        "\"link\":{\"rate\":\"1M\"},\"lan\":\"100M\",\"upstream_bytes\":\"150M\"}],"
        "\"laptops\":[{\"name\":\"a\",\"branch\":\"b\",\"bytes\":\"100M\"},"
        "{\"name\":\"c\",\"branch\":\"b\",\"bytes\":\"100M\"}]}", &f);
    CHECK(r && r->server_bytes == 150u << 20 && r->branches[0].lan_bytes == 200u << 20);
    CHECK(r && near(r->branches[0].reflector_ready, 150) && near(r->makespan, 150));
    CHECK(r && laptop(r, "a")->via_reflector);
    vms_fleet_free(f);
}

static int parses(const char *text)
{
    struct vms_jr *root = NULL;
    fsp_error err = {0};
    int rc = vms_jr_parse(text, strlen(text), "t", &root, &err);
    vms_jr_free(root);
    return rc;
}

static void test_the_reader_is_strict(void)
{
    const char *good[] = {"{}", "[]", "[1, -0.5, 2e3, 1E-2]", "\"\\u00e9\\ud83d\\ude00\"",
                          "{\"a\":[true,false,null]}", " 7 "};
    const char *bad[] = {"", "01", "1.", ".5", "+1", "[1,]", "{\"a\":1,}", "{\"a\":1 \"b\":2}",
                         "\"\\ud800\"", "\"\\udc00x\"", "\"a\tb\"", "\"\\u0000\"", "\"\\x\"",
                         "[1] 2", "{\"a\":1,\"a\":2}", "tru", "\"\xff\"", "[", "\"abc",
                         "NaN", "{1:2}"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CHECK(parses(good[i]) == 0);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (parses(bad[i]) == 0) {
            fprintf(stderr, "  accepted: %s\n", bad[i]);
            CHECK(!"a bad document accepted");
        }
    char deep[200];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = 0;
    CHECK(parses(deep) != 0);
}

int main(void)
{
    RUN(test_one_laptop_takes_bytes_over_rate);
    RUN(test_each_transfer_pays_its_round_trips);
    RUN(test_a_shared_uplink_is_shared_fairly);
    RUN(test_online_hours_wait_for_the_window);
    RUN(test_a_short_window_goes_first);
    RUN(test_a_window_ends_at_any_start_second);
    RUN(test_an_offline_branch_takes_no_link);
    RUN(test_a_reflector_carries_the_union_once);
    RUN(test_the_reader_is_strict);
    return check_failures ? 1 : 0;
}
