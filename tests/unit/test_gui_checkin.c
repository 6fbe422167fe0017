/* The check-in dialog's texts (gui-gtk/model.c, "checkin"), without a
 * display: the diff's lines as `vmsync diff` prints them, the counts and the
 * bytes to travel, and the conflict told in plain words. */
#include "check.h"
#include "../../gui-gtk/model.h"

#include <string.h>

/* GOT (freed here) is WANT. */
static void expect_text(char *got, const char *want)
{
    CHECK(got && !strcmp(got, want));
    if (got && strcmp(got, want))
        fprintf(stderr, "  got  '%s'\n  want '%s'\n", got, want);
    free(got);
}

static void expect_item(enum vms_change change, const char *old_path, const char *path,
                        uint32_t what, const char *want)
{
    struct vms_diff_item d = {.change = change, .volume = 1, .path = path,
                              .old_path = old_path, .what = what};
    expect_text(diff_item_text(&d), want);
}

static void test_diff_lines(void)
{
    expect_item(VMS_ADDED, NULL, "/data/new", 0, "added /data/new");
    expect_item(VMS_REMOVED, NULL, "/data/f0", 0, "removed /data/f0");
    expect_item(VMS_CHANGED, NULL, "/data/f1", VMS_WHAT_CONTENT | VMS_WHAT_SIZE,
                "changed /data/f1 (content, size)");
    expect_item(VMS_MOVED, "/data/f2", "/data/moved", 0, "moved /data/f2 -> /data/moved");
    /* quoted as the CLI quotes: control bytes escaped, " -> " in a move quoted */
    expect_item(VMS_ADDED, NULL, "/a\nb", 0, "added \"/a\\nb\"");
    expect_item(VMS_MOVED, "/x -> y", "/z", 0, "moved \"/x -> y\" -> /z");
    expect_item(VMS_ADDED, NULL, "/x -> y", 0, "added /x -> y");
}

static void test_counts(void)
{
    struct change_counts n = {0};
    enum vms_change seen[] = {VMS_ADDED, VMS_ADDED, VMS_REMOVED, VMS_CHANGED, VMS_MOVED,
                              VMS_ADDED};
    for (size_t i = 0; i < sizeof seen / sizeof seen[0]; i++)
        change_counts_add(&n, &(struct vms_diff_item){.change = seen[i], .path = "/p"});
    CHECK(n.added == 3 && n.removed == 1 && n.changed == 1 && n.moved == 1);
    expect_text(changes_text(&n, 3 << 20),
                "3 added, 1 removed, 1 changed, 1 moved · about 3.0 MiB of new data (before "
                "compression)");
    expect_text(changes_text(&(struct change_counts){0}, 0),
                "0 added, 0 removed, 0 changed, 0 moved · about 0.0 MiB of new data (before "
                "compression)");
    expect_text(checked_in_text("desk", 2), "desk@2 is checked in");
    expect_text(checked_in_text("de\tsk", 2), "\"de\\tsk\"@2 is checked in");
    expect_text(saved_as_text("desk-mine", 1), "desk-mine@1 is saved as a new image");
}

static struct rate_meter at(enum vms_phase phase, uint64_t done, uint64_t total)
{
    struct rate_meter m = {0};
    rate_meter_update(&m, &(struct vms_event){.phase = phase, .done = done, .total = total}, 1);
    return m;
}

/* One bar: the scan, then over ssh:// the send; never past either end. */
static void test_fraction(void)
{
    struct rate_meter half_scan = at(VMS_PHASE_SCAN_IMAGE, 5, 10);
    struct rate_meter half_send = at(VMS_PHASE_SEND, 5, 10);
    struct rate_meter over = at(VMS_PHASE_SEND, 12, 10), none = at(VMS_PHASE_SEND, 0, 0);
    CHECK(checkin_fraction(&half_scan, false) == 0.5);
    CHECK(checkin_fraction(&half_scan, true) > 0.25 && checkin_fraction(&half_scan, true) < 0.5);
    CHECK(checkin_fraction(&half_send, true) == 0.75);
    CHECK(checkin_fraction(&over, true) == 1);
    CHECK(checkin_fraction(&none, true) == 0.5);
}

static const char untouched[] = "Nothing was recorded and nothing was lost: your file "
                                "/home/me/desk.img is untouched. You can save it as a new "
                                "image, or keep your file as it is.";

/* 2025-12-01 10:00 UTC and an hour later */
#define AT_10 1764583200
#define AT_11 (AT_10 + 3600)

static void test_conflict_newer(void)
{
    struct vms_version v = {.image = "desk", .number = 3, .parent = 2, .created = AT_10,
                            .user = "bob", .host = "lab"};
    struct vms_lease_info held = {.image = "desk", .version = 3, .user = "carol",
                                  .host = "pc\n2", .since = AT_11};
    struct checkin_conflict k = {.name = "desk", .file = "/home/me/desk.img", .parent = 1,
                                 .newer = &v};
    expect_text(conflict_heading(&k), "Someone else checked desk in first");
    char want[1024];
    snprintf(want, sizeof want, "bob@lab checked in desk@3 on 2025-12-01 10:00 UTC, after the "
             "version 1 you checked out. Nobody holds it now. %s", untouched);
    expect_text(conflict_text(&k), want);
    k.holder = &held;
    snprintf(want, sizeof want, "bob@lab checked in desk@3 on 2025-12-01 10:00 UTC, after the "
             "version 1 you checked out. carol@\"pc\\n2\" holds it now, since 2025-12-01 11:00 "
             "UTC (version 3). %s", untouched);
    expect_text(conflict_text(&k), want);
}

static void test_conflict_lease(void)
{
    struct vms_lease_info held = {.image = "desk", .version = 1, .user = "bob", .host = "lab",
                                  .since = AT_11};
    struct checkin_conflict k = {.name = "desk", .file = "/home/me/desk.img", .parent = 1,
                                 .holder = &held};
    expect_text(conflict_heading(&k), "desk is no longer checked out to you");
    char want[1024];
    snprintf(want, sizeof want, "bob@lab took it over on 2025-12-01 11:00 UTC (version 1): the "
             "lease is no longer yours. %s", untouched);
    expect_text(conflict_text(&k), want);
    k.holder = NULL;
    snprintf(want, sizeof want, "Its lease was given back: nobody holds it now. %s", untouched);
    expect_text(conflict_text(&k), want);
}

int main(void)
{
    RUN(test_diff_lines);
    RUN(test_counts);
    RUN(test_fraction);
    RUN(test_conflict_newer);
    RUN(test_conflict_lease);
    return check_failures;
}
