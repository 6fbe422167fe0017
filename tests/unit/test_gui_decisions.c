/* The texts of the window's decisions (gui-gtk/model.c), without a display:
 * the host-key dialog in each state the engine reports, and the
 * confirmation before another host's lease is taken over. */
#include "check.h"
#include "../../gui-gtk/model.h"

#include <string.h>

#define FP "SHA256:q0Yv1R8Zk8m5mK7c3YwJ0o3xkHk0l0v3S3t0q0Yv1R8"

static struct vms_host_key key(enum vms_host_key_state st)
{
    return (struct vms_host_key){.state = st, .host = "127.0.0.1", .type = "ssh-ed25519",
                                 .fingerprint = FP, .known_hosts = "/home/a/.ssh/known_hosts"};
}

/* GOT (freed here) is WANT. */
static void expect_text(char *got, const char *want)
{
    CHECK(got && !strcmp(got, want));
    if (got && strcmp(got, want))
        fprintf(stderr, "  got '%s'\n  want '%s'\n", got, want);
    free(got);
}

/* GOT (freed here) holds each of the NULL-ended WANTs. */
static void expect_parts(char *got, const char *const *want)
{
    CHECK(got != NULL);
    for (; got && *want; want++) {
        CHECK(strstr(got, *want));
        if (!strstr(got, *want))
            fprintf(stderr, "  '%s'\n  lacks '%s'\n", got, *want);
    }
    free(got);
}

static void test_unknown_key(void)
{
    struct vms_host_key k = key(VMS_HOST_KEY_UNKNOWN);
    CHECK(host_key_askable(&k));
    expect_text(host_key_heading(&k), "Trust the host key of 127.0.0.1?");
    expect_text(host_key_body(&k),
                "127.0.0.1 offers the host key ssh-ed25519 " FP ", which "
                "/home/a/.ssh/known_hosts does not hold.\n\nCheck the fingerprint with the "
                "server's administrator before you trust it. Accept once connects this time "
                "only; Remember also adds the key to /home/a/.ssh/known_hosts.");
}

/* Refused whatever the answer: the dialog says so and why. */
static void test_refused_keys(void)
{
    struct vms_host_key changed = key(VMS_HOST_KEY_CHANGED), other = key(VMS_HOST_KEY_OTHER_TYPE),
                        later = key((enum vms_host_key_state)99);
    CHECK(!host_key_askable(&changed) && !host_key_askable(&other) && !host_key_askable(&later));
    expect_text(host_key_heading(&changed), "The host key of 127.0.0.1 has changed");
    expect_parts(host_key_body(&changed),
                 (const char *const[]){"now offers the host key ssh-ed25519 " FP,
                                       "The connection is refused: someone may be intercepting",
                                       "remove its old line from /home/a/.ssh/known_hosts",
                                       NULL});
    expect_text(host_key_heading(&other), "127.0.0.1 offers a key of another type");
    expect_parts(host_key_body(&other),
                 (const char *const[]){"of another type than the one /home/a/.ssh/known_hosts",
                                       "The connection is refused", NULL});
    /* a state this window does not know is refused too */
    expect_text(host_key_heading(&later), "The host key of 127.0.0.1 is refused");
    expect_parts(host_key_body(&later), (const char *const[]){FP, "The connection is refused.",
                                                              NULL});
}

/* Names and paths come quoted as the CLI prints them. */
static void test_key_quoting(void)
{
    struct vms_host_key k = key(VMS_HOST_KEY_UNKNOWN);
    k.host = "evil\nhost";
    k.known_hosts = "/tmp/kh\033[2J";
    char *body = host_key_body(&k);
    CHECK(body && !strchr(body, '\033') && strstr(body, "evil\\nhost offers"));
    free(body);
}

static void test_steal(void)
{
    struct vms_lease_info held = {.image = "desk", .version = 3, .user = "bob", .host = "lab",
                                  .since = 1764583200}; /* 2025-12-01 10:00 UTC */
    expect_text(steal_heading(&held), "Take over the lease of desk?");
    expect_text(steal_body(&held),
                "desk is checked out by bob@lab since 2025-12-01 10:00 UTC (version 3).\n\n"
                "If you take it over, the lease becomes yours: their copy stays on their "
                "machine, but they can no longer check it in. The take-over is recorded in the "
                "repository's audit log.");
    held.host = "lab\tbox";
    expect_parts(steal_body(&held), (const char *const[]){"by bob@\"lab\\tbox\" since", NULL});
}

int main(void)
{
    RUN(test_unknown_key);
    RUN(test_refused_keys);
    RUN(test_key_quoting);
    RUN(test_steal);
    return check_failures;
}
