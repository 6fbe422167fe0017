/* The history's view models (gui-gtk/model.c, "history"), without a
 * display: a version's title and message, the files changed between two
 * versions, and the release's words. */
#include "check.h"
#include "../../gui-gtk/model.h"

#include <string.h>

/* Frees GOT. */
static void expect_text(char *got, const char *want)
{
    CHECK(got && !strcmp(got, want));
    if (got && strcmp(got, want))
        fprintf(stderr, "  got '%s'\n  want '%s'\n", got, want);
    free(got);
}

static struct vms_version version(uint32_t number, uint32_t parent, const char *message)
{
    struct vms_version v = {.number = number, .parent = parent,
                            .created = 1764583200}; /* 2025-12-01 10:00 UTC */
    snprintf(v.user, sizeof v.user, "alice");
    snprintf(v.host, sizeof v.host, "laptop");
    snprintf(v.message, sizeof v.message, "%s", message);
    return v;
}

static void test_versions(void)
{
    struct vms_version v = version(3, 2, "fix conf");
    expect_text(version_title_text(&v), "version 3 · 2025-12-01 10:00 UTC · alice@laptop");
    expect_text(version_message_text(&v), "fix conf");
    v = version(1, 0, "");
    expect_text(version_title_text(&v), "version 1 · 2025-12-01 10:00 UTC · alice@laptop");
    expect_text(version_message_text(&v), "(no message)");
    /* the parent is named when it is not the version before */
    v = version(4, 2, "from 2");
    expect_text(version_title_text(&v),
                "version 4 · 2025-12-01 10:00 UTC · alice@laptop · parent 2");
}

/* Messages, users and hosts are the catalog's bytes: quoted as the CLI
 * quotes them, so a newline or a byte that is not UTF-8 shows as an escape. */
static void test_quoting(void)
{
    struct vms_version v = version(2, 1, "first line\nsecond \xff byte");
    snprintf(v.host, sizeof v.host, "lab\tbox");
    expect_text(version_message_text(&v), "first line\\nsecond \\377 byte");
    expect_text(version_title_text(&v),
                "version 2 · 2025-12-01 10:00 UTC · alice@\"lab\\tbox\"");
}

static void add(struct diff_list *l, enum vms_change change, const char *path,
                const char *old_path, uint32_t what)
{
    struct vms_diff_item item = {.change = change, .path = path, .old_path = old_path,
                                 .what = what};
    CHECK(diff_list_add(l, &item) == 0);
}

static void test_diff(void)
{
    struct diff_list l = {0};
    expect_text(diff_counts_text(&l, 2, 3), "version 2 → version 3: no file changed");
    add(&l, VMS_ADDED, "/data/new", NULL, 0);
    add(&l, VMS_REMOVED, "/data/b", NULL, 0);
    add(&l, VMS_CHANGED, "/etc/conf", NULL, VMS_WHAT_CONTENT | VMS_WHAT_SIZE);
    add(&l, VMS_MOVED, "/data/c2", "/data/c", 0);
    add(&l, VMS_MOVED, "/x -> y", "/a\nb", 0);
    CHECK(l.n == 5);
    expect_text(diff_counts_text(&l, 1, 3),
                "version 1 → version 3: 1 added, 1 removed, 1 changed, 2 moved");
    expect_text(diff_entry_text(&l.items[0]), "added /data/new");
    expect_text(diff_entry_text(&l.items[1]), "removed /data/b");
    expect_text(diff_entry_text(&l.items[2]), "changed /etc/conf (content, size)");
    expect_text(diff_entry_text(&l.items[3]), "moved /data/c -> /data/c2");
    /* quoted as the CLI does: control bytes, and " -> " inside a move */
    expect_text(diff_entry_text(&l.items[4]), "moved \"/a\\nb\" -> \"/x -> y\"");
    diff_list_clear(&l);
    CHECK(l.n == 0 && l.items == NULL);
}

/* Enough entries to grow the list more than once. */
static void test_diff_grows(void)
{
    struct diff_list l = {0};
    char path[32];
    for (int i = 0; i < 300; i++) {
        snprintf(path, sizeof path, "/f%d", i);
        add(&l, i % 2 ? VMS_ADDED : VMS_REMOVED, path, NULL, 0);
    }
    CHECK(l.n == 300 && l.counts.added == 150 && l.counts.removed == 150);
    CHECK(!strcmp(l.items[299].path, "/f299"));
    diff_list_clear(&l);
}

/* The history and the check-in show CHANGES_SHOWN rows and one line for
 * the rest (diff_more_text), none when all fit. */
static void test_diff_more(void)
{
    struct diff_list l = {0};
    char path[32];
    for (int i = 0; i < CHANGES_SHOWN; i++) {
        snprintf(path, sizeof path, "/f%d", i);
        add(&l, VMS_ADDED, path, NULL, 0);
    }
    CHECK(diff_more_text(&l) == NULL);
    add(&l, VMS_REMOVED, "/gone", NULL, 0);
    add(&l, VMS_REMOVED, "/gone2", NULL, 0);
    expect_text(diff_more_text(&l), "and 2 more: vmsync diff lists them all");
    diff_list_clear(&l);
}

/* Each state in words, with the signer's fingerprint as `vmsync key show`
 * prints it (32 zero bytes: 43 base64 A's). */
static void test_signatures(void)
{
    struct vms_version v = version(2, 1, "signed");
    v.is_signed = true;
    char fp[64];
    snprintf(fp, sizeof fp, "SHA256:%s", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    char want[160];
    expect_text(signature_text(VMS_SIGNATURE_NONE, &v), "not signed");
    snprintf(want, sizeof want, "signed by a trusted key (%s)", fp);
    expect_text(signature_text(VMS_SIGNATURE_TRUSTED, &v), want);
    snprintf(want, sizeof want, "signed by %s, a key not trusted here", fp);
    expect_text(signature_text(VMS_SIGNATURE_UNTRUSTED, &v), want);
    snprintf(want, sizeof want, "BAD SIGNATURE: it does not verify with the trusted key %s", fp);
    expect_text(signature_text(VMS_SIGNATURE_BAD, &v), want);
    expect_text(signature_text((enum vms_signature_state)99, &v), "unknown");
}

static void test_release(void)
{
    expect_text(release_question_text("desk"), "Release desk?");
    char *body = release_body_text("desk", 3);
    CHECK(body && strstr(body, "lease on desk@3"));
    CHECK(body && strstr(body, "stays where it is"));
    CHECK(body && strstr(body, "needs a new checkout"));
    CHECK(body && strstr(body, "audit log"));
    free(body);
    expect_text(release_done_text("desk", true), "desk is released");
    expect_text(release_done_text("desk", false), "desk had no lease to release");
    expect_text(release_done_text("a\nb", true), "\"a\\nb\" is released");
}

static void test_snooze(void)
{
    const int64_t now = 1796287500; /* 2026-12-03 08:45 UTC */
    expect_text(snooze_state_text(0, now), "Downloads ahead run on their schedule");
    expect_text(snooze_state_text(now, now), "Downloads ahead run on their schedule");
    expect_text(snooze_state_text(now + 3600, now),
                "Downloads ahead are paused until 2026-12-03 09:45 UTC");
}

int main(void)
{
    RUN(test_versions);
    RUN(test_quoting);
    RUN(test_diff);
    RUN(test_diff_grows);
    RUN(test_diff_more);
    RUN(test_signatures);
    RUN(test_release);
    RUN(test_snooze);
    return check_failures;
}
