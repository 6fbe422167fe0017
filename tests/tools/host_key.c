/* host_key: how a client answers a host key the known hosts file does not
 * vouch for.  For tests/e2e/remote_host_key.sh.
 *
 *   host_key URL KNOWN_HOSTS IDENTITY refuse|once|remember
 *
 * Lists the repository's versions (vms_log) with a host-key callback that
 * gives the answer named, and prints one line per question ("asked: STATE
 * TYPE FINGERPRINT FILE"), then "ok" or "error KIND: MESSAGE".  Exit 0 when
 * the log ran, 1 when it failed, 2 on bad usage.  Uses the public API only. */
#include "vmsync.h"

#include <stdio.h>
#include <string.h>

static const char *state_name(enum vms_host_key_state s)
{
    switch (s) {
    case VMS_HOST_KEY_UNKNOWN: return "unknown";
    case VMS_HOST_KEY_CHANGED: return "changed";
    case VMS_HOST_KEY_OTHER_TYPE: return "other-type";
    }
    return "?";
}

static enum vms_host_key_answer answer(void *ctx, const struct vms_host_key *k)
{
    printf("asked: %s %s %s %s\n", state_name(k->state), k->type, k->fingerprint, k->known_hosts);
    return *(enum vms_host_key_answer *)ctx;
}

static int ignore_version(void *ctx, const struct vms_version *v) { return 0; }

int main(int argc, char **argv)
{
    static const char *const answers[] = {"refuse", "once", "remember"};
    enum vms_host_key_answer a = 3;
    for (unsigned i = 0; argc == 5 && i < 3; i++)
        if (!strcmp(argv[4], answers[i]))
            a = (enum vms_host_key_answer)i;
    if (a == 3) {
        fprintf(stderr, "usage: %s URL KNOWN_HOSTS IDENTITY refuse|once|remember\n", argv[0]);
        return 2;
    }
    struct vms_remote_opts ro = {.known_hosts = argv[2], .identity = argv[3], .host_key = answer,
                                 .host_key_ctx = &a};
    struct vms_client_opts o = {.remote = &ro};
    vms_client *c = NULL;
    fsp_error err = {0};
    int rc = vms_client_open(argv[1], &o, &c, &err);
    if (!rc)
        rc = vms_log(c, NULL, ignore_version, NULL, &err);
    vms_client_close(c);
    if (rc) {
        printf("error %s: %s\n", vms_error_kind_name(err.kind), err.msg);
        return 1;
    }
    printf("ok\n");
    return 0;
}
