/* The window's view models (gui-gtk/model.c), without a display: an image's
 * state from its lease, and the texts its row shows. */
#include "check.h"
#include "../../gui-gtk/model.h"

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

int main(void)
{
    RUN(test_states);
    RUN(test_quoting);
    return check_failures;
}
