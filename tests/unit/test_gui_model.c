/* The window's view models (gui-gtk/model.c), without a display: an image's
 * state from its lease, and the texts its row shows. */
#include "check.h"
#include "../../gui-gtk/model.h"

#include <errno.h>
#include <string.h>

static const struct who me = {.user = "alice", .host = "laptop"};

static struct image_row row(const char *user, const char *host)
{
    struct vms_lease_info lease = {.image = "desk", .version = 2, .user = user, .host = host,
                                   .since = 1764583200}; /* 2025-12-01 10:00 UTC */
    struct vms_image_info info = {.name = "desk", .latest = 3, .size = 11744051,
                                  .lease = user ? &lease : NULL};
    struct image_row r;
    if (image_row_copy(&info, &r))
        abort();
    return r;
}

/* R's summary in state S is WANT. */
static void expect_summary(const struct image_row *r, enum image_state s, const char *want)
{
    char *got = image_summary_text(r, s);
    CHECK(got && !strcmp(got, want));
    if (got && strcmp(got, want))
        fprintf(stderr, "  got '%s'\n  want '%s'\n", got, want);
    free(got);
}

static void test_states(void)
{
    struct image_row none = row(NULL, NULL), mine = row("alice", "laptop"),
                     other_host = row("alice", "lab"), other_user = row("bob", "laptop");
    CHECK(image_state(&none, &me, false, false) == IMAGE_NOT_HERE);
    CHECK(image_state(&mine, &me, false, false) == IMAGE_CHECKED_OUT);
    CHECK(image_state(&other_host, &me, false, false) == IMAGE_HELD_ELSEWHERE);
    CHECK(image_state(&other_user, &me, false, false) == IMAGE_HELD_ELSEWHERE);
    /* over ssh:// the lease names the agent's user: the host decides */
    CHECK(image_state(&other_user, &me, true, false) == IMAGE_CHECKED_OUT);
    CHECK(image_state(&none, &me, false, true) == IMAGE_DOWNLOADING);
    expect_summary(&none, IMAGE_NOT_HERE, "version 3 · 11.2 MiB · not here");
    expect_summary(&mine, IMAGE_CHECKED_OUT, "version 3 · 11.2 MiB · checked out here (version 2)");
    expect_summary(&other_host, IMAGE_HELD_ELSEWHERE,
                   "version 3 · 11.2 MiB · held by alice@lab since 2025-12-01 10:00 UTC (version 2)");
    expect_summary(&none, IMAGE_DOWNLOADING, "version 3 · 11.2 MiB · being downloaded");
    image_row_clear(&none);
    image_row_clear(&mine);
    image_row_clear(&other_host);
    image_row_clear(&other_user);
}

/* Names reach the toolkit quoted as the CLI prints them. */
static void test_quoting(void)
{
    struct image_row r = row("eve", "lab\nbox");
    char *s = image_state_text(&r, IMAGE_HELD_ELSEWHERE);
    CHECK(s && strstr(s, "held by eve@\"lab\\nbox\" since "));
    free(s);
    s = quoted_name("caf\xe9");
    CHECK(s && !strcmp(s, "\"caf\\351\""));
    free(s);
    fsp_error err = {.msg = "/a\x1b[31m: cannot open"};
    s = error_text(&err);
    CHECK(s && !strchr(s, '\x1b'));
    free(s);
    image_row_clear(&r);
}

static void expect_text(char *got, const char *want)
{
    CHECK(got && !strcmp(got, want));
    if (got && strcmp(got, want))
        fprintf(stderr, "  got '%s'\n  want '%s'\n", got, want);
    free(got);
}

static void test_plan_text(void)
{
    struct vms_plan_figures f = {.version = 2, .bytes_from_seeds = 19 << 20,
                                 .bytes_to_fetch_raw = 11 << 20};
    expect_text(plan_text(&f, 1.25 * 1048576),
                "19.0 MiB from your disk, 11.0 MiB to download, about 9 s at the measured "
                "rate (1.2 MiB/s)");
    expect_text(plan_text(&f, 0), "19.0 MiB from your disk, 11.0 MiB to download; the time "
                                  "is unknown: no rate has been measured yet");
    f.in_place = true;
    expect_text(plan_text(&f, 0), "The file already holds version 2: nothing to move.");
}

static void feed(struct rate_meter *m, enum vms_phase p, uint64_t done, uint64_t total,
                 double now)
{
    struct vms_event ev = {.phase = p, .done = done, .total = total};
    rate_meter_update(m, &ev, now);
}

static void test_rate_meter(void)
{
    struct rate_meter m = {0};
    feed(&m, VMS_PHASE_FETCH, 0, 10 << 20, 100.0);
    /* one sample: no rate, and the text says unknown, never 0 s */
    CHECK(rate_meter_rate(&m) == 0 && rate_meter_eta(&m) < 0);
    expect_text(progress_text(&m), "Fetching: 0.0 MiB of 10.0 MiB · rate unknown · time left unknown");
    feed(&m, VMS_PHASE_FETCH, 1 << 20, 10 << 20, 100.2);
    CHECK(rate_meter_rate(&m) == 0); /* under half a second: still unknown */
    feed(&m, VMS_PHASE_FETCH, 2 << 20, 10 << 20, 101.0);
    CHECK(rate_meter_rate(&m) == 2 << 20);
    CHECK(rate_meter_eta(&m) == 4);
    expect_text(progress_text(&m), "Fetching: 2.0 MiB of 10.0 MiB · 2.0 MiB/s · 4 s left");
    CHECK(checkout_fraction(&m) > 0.1 && checkout_fraction(&m) < 0.85);
    /* a new phase measures anew */
    feed(&m, VMS_PHASE_VERIFY, 0, 10 << 20, 101.5);
    CHECK(rate_meter_rate(&m) == 0 && checkout_fraction(&m) == 0.85);
    feed(&m, VMS_PHASE_DONE, 0, 0, 102);
    CHECK(checkout_fraction(&m) == 1);
}

/* A refused checkout says why, that nothing was written, and what decides;
 * the engine's message is quoted as the CLI quotes it. */
static void test_untrusted(void)
{
    fsp_error err = {.kind = VMS_EK_UNTRUSTED, .code = -EPERM};
    snprintf(err.msg, sizeof err.msg, "/srv/r: desk@1 is unsigned, and only versions signed by a "
                                      "trusted key are taken");
    expect_text(untrusted_heading("desk"), "desk was not checked out");
    expect_text(untrusted_heading("a\nb"), "\"a\\nb\" was not checked out");
    expect_text(untrusted_text(&err),
                "/srv/r: desk@1 is unsigned, and only versions signed by a "
                "trusted key are taken. Nothing was written. The keys that the settings trust "
                "([trust]) decide which versions are taken.");
    snprintf(err.msg, sizeof err.msg, "/srv/r: a\nb@1 is unsigned");
    char *text = untrusted_text(&err);
    CHECK(text && strstr(text, "a\\nb@1") && !strchr(text, '\n'));
    free(text);
}

/* A toast is replaced only once it has slid in (libadwaita 1.2 crashes on a
 * toast dismissed before its show ends): the wait left, in milliseconds. */
static void test_toast_wait(void)
{
    const int64_t shown = 5000000; /* µs */
    CHECK(toast_wait_ms(shown, shown) == TOAST_SETTLE_MS);
    CHECK(toast_wait_ms(shown, shown + 14000) == TOAST_SETTLE_MS - 14); /* the refusal's 14 ms */
    CHECK(toast_wait_ms(shown, shown + 1) == TOAST_SETTLE_MS); /* rounded up, never early */
    CHECK(toast_wait_ms(shown, shown + TOAST_SETTLE_MS * 1000 - 1) == 1);
    CHECK(toast_wait_ms(shown, shown + TOAST_SETTLE_MS * 1000) == 0);
    CHECK(toast_wait_ms(shown, shown + 60 * 1000000) == 0);
    /* a clock that went back waits the whole time, not a huge one */
    CHECK(toast_wait_ms(shown, shown - 10 * 1000000) == TOAST_SETTLE_MS);
    /* more than a replacing toast's show (500 ms) after the hide's (300 ms) start */
    CHECK(TOAST_SETTLE_MS >= 500 + 100);
}

int main(void)
{
    RUN(test_states);
    RUN(test_quoting);
    RUN(test_plan_text);
    RUN(test_rate_meter);
    RUN(test_untrusted);
    RUN(test_toast_wait);
    return check_failures;
}
