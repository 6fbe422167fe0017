/* Shared pieces of the vmsync command line. */
#ifndef VMSYNC_CLI_H
#define VMSYNC_CLI_H

#include "vmsync.h"

#include <stdio.h>


int cmd_manifest(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_checkout(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_prefetch(int argc, char **argv);
int cmd_checkin(int argc, char **argv);
int cmd_log(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_images(int argc, char **argv);
int cmd_leases(int argc, char **argv);
int cmd_release(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_bundle(int argc, char **argv);
int cmd_key(int argc, char **argv);
int cmd_publish(int argc, char **argv);
int cmd_forget(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_fleet(int argc, char **argv);

/* Prints ERR once and returns the exit status for it. */
int cli_report(const fsp_error *err);
int cli_exit_status(const fsp_error *err);
/* Prints "vmsync: " FMT (with ARG) and the usage to stderr; returns 2. */
int cli_usage_error(const char *usage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool cli_wants_help(int argc, char **argv);
/* Reports the option getopt just refused; returns 2. */
int cli_bad_option(const char *usage, char **argv);
/* A whole decimal number S from LO to HI into *OUT; -1 when it is not one. */
int cli_parse_int(const char *s, int lo, int hi, int *out);

/* SIGINT and SIGTERM cancel C's running operation from now on (it ends as
 * cancelled, exit 7; a second signal ends the process); NULL: no handle to
 * cancel, and a signal is only noted, for cli_interrupted. */
void cli_cancel_on_signals(vms_client *c);
/* Whether SIGINT or SIGTERM came: progress callbacks return it, so that the
 * scans run without a handle (manifest, diff, inspect) end as cancelled. */
bool cli_interrupted(void);
/* A command's handle: vms_client_open, and the signals cancel its operations
 * until cli_client_close (which takes *C NULL, and leaves it NULL). */
int cli_client_open(const char *repo, const struct vms_client_opts *o, vms_client **out,
                    fsp_error *err);
void cli_client_close(vms_client **c);
/* The [trust] keys of the settings file (read once; they live until the
 * process ends); none without a file. */
int cli_settings_trusted_keys(char *const **keys, size_t *n, fsp_error *err);

/* -R REPO, --repo REPO and --repo=REPO, taken out of ARGV (up to "--") for
 * cli_take_repo; the new argc, or -1 when one has no value or two are given. */
int cli_take_repo_option(int argc, char **argv);
/* After getopt, makes argv[optind..argc) hold the REPO of a command that
 * takes MIN to MAX operands, REPO the one at AT among them.  REPO comes from
 * -R; else the words as written, when their count needs one; else
 * VMSYNC_REPO, then the settings' default, put in.  When the count fits
 * both with and without REPO (log [NAME]), the word at AT is the NAME only
 * when a default is set and it is a plain word that is no file, folder or
 * configured repository; when it is one of those, the command is refused,
 * never guessed.  Returns -1 to go on, else an exit status (reported). */
int cli_take_repo(int argc, char **argv, int at, int min, int max, const char *usage);

/* Options of commands that reach a repository, which may be ssh://. */
enum { CLI_OPT_KNOWN_HOSTS = 900, CLI_OPT_ACCEPT_NEW, CLI_OPT_BWLIMIT, CLI_OPT_LEVEL, CLI_OPT_TIMEOUT,
       CLI_OPT_AGENT, CLI_OPT_ALLOW_BACKING };
#define CLI_REMOTE_OPTIONS                                                                    \
    {"known-hosts", required_argument, 0, CLI_OPT_KNOWN_HOSTS},                               \
        {"accept-new", no_argument, 0, CLI_OPT_ACCEPT_NEW}, {"identity", required_argument, 0, 'i'}, \
        {"bwlimit", required_argument, 0, CLI_OPT_BWLIMIT},                                   \
        {"compress-level", required_argument, 0, CLI_OPT_LEVEL},                              \
        {"timeout", required_argument, 0, CLI_OPT_TIMEOUT},                                   \
        {"agent-command", required_argument, 0, CLI_OPT_AGENT}
#define CLI_REMOTE_HELP                                                                        \
    "  -R, --repo REPO        the repository, for REPO left out (else $VMSYNC_REPO, then\n"  \
    "                         the settings' [defaults]; see vmsync.conf(5)); REPO may\n"     \
    "                         be a name the settings give a repository\n"                    \
    "\n"                                                                                      \
    "ssh:// repositories (REPO as ssh://[user@]host[:port]/path under the agent's root):\n"     \
    "  -i, --identity FILE    the private key to log in with (default: the identity\n"     \
    "                         the settings name for REPO, else ssh-agent,\n"                \
    "                         then ~/.ssh/id_*)\n"                                             \
    "      --known-hosts FILE host keys to trust (default ~/.ssh/known_hosts)\n"              \
    "      --accept-new       add an unknown host key to that file (on a terminal,\n"        \
    "                         vmsync asks); a changed key is always refused\n"                \
    "      --bwlimit RATE     cap the transfer at RATE bytes/s (suffix K, M, G; a bare\n"     \
    "                         number is KiB/s, as rsync's; 0: no cap, whatever the\n"     \
    "                         settings say)\n"                                             \
    "      --compress-level N zstd level 1-19 of transfers, at least (it adapts upwards\n"   \
    "                         to the link; default: from the stored frames' level)\n"      \
    "      --timeout SECONDS  give up when the server sends nothing for this long (60)\n"    \
    "      --agent-command C  the agent to start when authorized_keys forces none\n"          \
    "                         (e.g. 'vmsync-agent --root /srv/vmsync')\n"
/* The CLI's answers to the library's questions: a host key the known hosts
 * file does not vouch for is trusted with --accept-new, or when the user says
 * so on a terminal. */
void cli_remote_init(struct vms_remote_opts *o);
/* What cli_report adds to the next error it reports ("use --steal ..."). */
void cli_hint(const char *hint);
/* Handles one of CLI_REMOTE_OPTIONS: 0 when handled, 1 when not one, 2 (after
 * reporting) on a bad value. */
int cli_remote_option(struct vms_remote_opts *o, int opt, const char *usage);

/* Options of commands that open images. */
#define CLI_IMAGE_OPTIONS {"allow-backing", required_argument, 0, CLI_OPT_ALLOW_BACKING}
#define CLI_IMAGE_HELP                                                                         \
    "      --allow-backing DIR  images may name backing files and extents under DIR\n"       \
    "                         too, not only in their own folder (repeatable)\n"
/* Handles one of CLI_IMAGE_OPTIONS, as cli_remote_option does. */
int cli_image_option(int opt, const char *usage);

/* Progress on stderr: a bar on a terminal, JSON lines for scripts, or none. */
enum cli_progress_mode { CLI_PROGRESS_AUTO, CLI_PROGRESS_NONE, CLI_PROGRESS_JSON };
int cli_parse_progress(const char *arg, enum cli_progress_mode *mode);

struct cli_progress {
    enum cli_progress_mode mode; /* AUTO resolves to NONE when stderr is no terminal */
    char phase[32];
    uint32_t index; /* the seed whose scan is shown */
    double phase_started, last_shown;
    uint64_t total; /* the shown phase's, for the bar's last draw */
    /* The one bar, 0 to 1: how far it is, and the shown phase's slice of it
     * (from, width; width 0 until the phase knows its total). */
    double fraction, slice_from, slice;
    bool sliced; /* the shown phase has taken its slice */
    bool full;   /* the operation succeeded: the bar is drawn full */
    bool drawn;
};
void cli_progress_init(struct cli_progress *p, enum cli_progress_mode mode);
void cli_progress_show(struct cli_progress *p, const char *phase, uint64_t done, uint64_t total);
/* Shows an engine event; with JSON lines, the DONE event is the last line. */
void cli_progress_event(struct cli_progress *p, const struct vms_event *ev);
/* Ends a drawn bar's line, so other output starts on a line of its own. */
void cli_progress_clear(struct cli_progress *p);
/* Prints an engine warning on a line of its own. */
void cli_progress_warning(struct cli_progress *p, const struct vms_warning *w);

/* A scan's callbacks for vms_manifest_create: warnings are printed to stderr
 * (naming IMAGE) and progress is shown. */
struct cli_scan {
    const char *image;
    struct cli_progress bar;
};
/* Sets O's progress, warning and ctx to C's. */
void cli_scan_init(struct cli_scan *c, const char *image, enum cli_progress_mode progress,
                   struct vms_manifest_create_opts *o);
/* RC: the scan's return; a success draws the bar full. */
void cli_scan_finish(struct cli_scan *c, int rc);

#endif
