/* vmsync-gtk: the window a laptop's user opens.  A thin client of
 * libvmsync's public header, as the CLI is: engine work runs on worker
 * threads (worker.c) and reaches the window through the main loop. */
#include "window.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: vmsync-gtk [REPO]\n"
    "Opens the vmsync window.  REPO, a directory, an ssh://[user@]host[:port]/path\n"
    "URL or an https:// one (a tree that vmsync publish wrote), is added to the\n"
    "repositories of ~/.config/vmsync/config (or\n"
    "$XDG_CONFIG_HOME/vmsync/config) when it is not there yet.\n"
    "  -h, --help     this help\n"
    "  -V, --version  the version, and those of the libraries (built, running)\n";

static void put_library(void *ctx, const struct vms_library_version *v)
{
    (void)ctx;
    printf("  %-11s built %-28s running %s\n", v->name, v->built ? v->built : "unknown",
           v->running ? v->running : "unknown");
}

/* Answers --help and --version before GTK parses anything, so that they work
 * without a display. */
static int answer_info_options(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-V")) {
            printf("vmsync-gtk %s\nlibraries:\n", VMSYNC_VERSION);
            vms_library_versions(put_library, NULL);
            return 0;
        }
    }
    return -1;
}

static int bad_usage(const char *why)
{
    fprintf(stderr, "vmsync-gtk: %s\n%s", why, usage);
    return 2;
}

int main(int argc, char **argv)
{
    int rc = answer_info_options(argc, argv);
    if (rc >= 0)
        return rc;
    if (argc > 2)
        return bad_usage("at most one repository");
    if (argc == 2 && argv[1][0] == '-')
        return bad_usage("unknown option");
    return app_run(argc == 2 ? argv[1] : NULL);
}
