/* The window's view models: what each screen shows, computed from the
 * engine's answers.  Plain C without GTK, so tests/unit/test_gui_model.c
 * checks them without a display.  Every string returned is malloc'd, the
 * caller's to free; NULL only when memory ran out. */
#ifndef VMSYNC_GTK_MODEL_H
#define VMSYNC_GTK_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "vmsync.h"

/* Who this window is in leases: the user and host it opens handles with. */
struct who {
    char user[128];
    char host[256];
};
/* The same user and host as libvmsync resolves when given none: $USER (else
 * the login name), $VMSYNC_HOST (else the hostname). */
void who_resolve(struct who *me);

/* One image of a repository's list, copied out of vms_images' callback. */
struct image_row {
    char *name;
    uint32_t latest;
    uint64_t size;
    int64_t created;
    bool leased;
    uint32_t lease_version;
    char *holder_user, *holder_host;
    int64_t since;
};
int image_row_copy(const struct vms_image_info *in, struct image_row *out);
void image_row_clear(struct image_row *r);

enum image_state {
    IMAGE_NOT_HERE,       /* nobody holds it */
    IMAGE_CHECKED_OUT,    /* this user and host hold it */
    IMAGE_HELD_ELSEWHERE, /* another holds it */
    IMAGE_DOWNLOADING,    /* this window is checking it out now */
};
/* REMOTE: over ssh:// the lease's user is the agent's --user, not ours, so
 * the host alone says "here". */
enum image_state image_state(const struct image_row *r, const struct who *me, bool remote,
                             bool downloading);
/* "not here", "checked out here (version 2)", "held by bob@lab since
 * 2026-12-01 10:00 UTC (version 1)", "being downloaded". */
char *image_state_text(const struct image_row *r, enum image_state s);
/* "version 3 · 11.2 MiB · not here": the row's subtitle. */
char *image_summary_text(const struct image_row *r, enum image_state s);

/* A name or message as the CLI prints it (vms_put_name, vms_put_text):
 * valid UTF-8 for the toolkit, control bytes escaped. */
char *quoted_name(const char *raw);
char *quoted_text(const char *raw);
/* What a job refused on a busy repository (worker.h: one job at a time) says. */
#define BUSY_TEXT "The repository is busy: try again when its operation ends."
/* The toast of a checkout the user cancelled. */
#define CHECKOUT_CANCELLED_TEXT "Checkout cancelled; checking out again resumes it"
/* The error as the CLI's "vmsync: ..." line says it, without the prefix. */
char *error_text(const fsp_error *err);

/* How long after SHOWN (when a toast was added, monotonic microseconds) it
 * must still stay at NOW before another replaces it: 0 when it may go now,
 * else milliseconds.  libadwaita 1.2 crashes when a toast is dismissed
 * while it still slides in (see window.c's show_toast). */
#define TOAST_SETTLE_MS 700
unsigned toast_wait_ms(int64_t shown, int64_t now);

/* "2026-12-01 10:00 UTC" */
void format_time(int64_t t, char *buf, size_t len);
/* "11.2 MiB" */
void format_mib(uint64_t bytes, char *buf, size_t len);


/* ---- a checkout's plan and progress ---- */

/* What a checkout's plan tells before anything moves: "19.0 MiB from your
 * disk, 11.0 MiB to download, about 9 s at the measured rate (1.2 MiB/s)".
 * RATE is bytes per second measured by an earlier fetch on this
 * repository; 0 when none was: the time is then said to be unknown. */
char *plan_text(const struct vms_plan_figures *f, double rate);

/* The true rate of the phase running, from the events' DONE over the clock:
 * the bytes of the last few seconds over their time, so that a stall shows
 * at once.  A new phase starts a new measurement. */
#define RATE_SAMPLES 32
struct rate_meter {
    enum vms_phase phase;
    uint64_t done, total;
    double times[RATE_SAMPLES];
    uint64_t dones[RATE_SAMPLES];
    unsigned n, head;          /* samples kept, the next slot to write */
};
void rate_meter_update(struct rate_meter *m, const struct vms_event *ev, double now);
/* Bytes per second over the window; 0 while there is none yet (fewer than
 * two samples, or less than half a second between them). */
double rate_meter_rate(const struct rate_meter *m);
/* Seconds left at that rate; negative when unknown. */
double rate_meter_eta(const struct rate_meter *m);
/* The one bar's fraction, 0..1, over the whole checkout: scanning seeds and
 * OUT, then copying and fetching (most of it), then the verify scan and a
 * qcow2 conversion. */
double checkout_fraction(const struct rate_meter *m);
/* "Fetching: 4.0 MiB of 11.0 MiB · 2.1 MiB/s · 3 s left", or with "rate
 * unknown · time left unknown" before there is a rate. */
char *progress_text(const struct rate_meter *m);

/* ---- decisions: a host key, another host's lease ---- */

/* Whether the user may answer about K (an unknown key); any other state is
 * refused whatever the answer, and the dialog only tells why. */
bool host_key_askable(const struct vms_host_key *k);
/* "Trust the host key of 127.0.0.1?", "The host key of 127.0.0.1 has
 * changed", ... */
char *host_key_heading(const struct vms_host_key *k);
/* The host, the key's type and fingerprint (as `ssh-keygen -lf` prints it),
 * the known hosts file, and what each answer does; for a refused state, the
 * reason and how to mend it. */
char *host_key_body(const struct vms_host_key *k);

/* "Take over the lease of desk?" */
char *steal_heading(const struct vms_lease_info *held);
/* Who holds it, since when and which version; what taking it over does to
 * the holder; that the repository's audit log records it. */
char *steal_body(const struct vms_lease_info *held);

/* ---- checkin ---- */

/* What changed since the checkout, counted by kind of vms_diff item. */
struct change_counts {
    uint64_t added, removed, changed, moved;
};
void change_counts_add(struct change_counts *n, const struct vms_diff_item *d);
/* One changed file in words: "added /data/new", "removed /data/f5",
 * "changed /data/f1 (content, size)", "moved /a -> /b"; paths quoted as the
 * CLI quotes them (in a move, a path holding " -> " in quotes). */
char *diff_item_text(const struct vms_diff_item *d);
/* "3 added, 1 removed, 1 changed, 1 moved · about 2.0 MiB of new data (before
 * compression)"; NEW_BYTES are the raw bytes of the objects the file needs
 * that the version checked out has not. */
char *changes_text(const struct change_counts *n, uint64_t new_bytes);
/* The check-in's one bar, 0..1: the image's scan, then (over ssh://, REMOTE)
 * the objects sent, which the scan spools and a round sends after it. */
double checkin_fraction(const struct rate_meter *m, bool remote);
/* "desk@2 is checked in" */
char *checked_in_text(const char *name, uint32_t version);
/* "desk-mine@1 is saved as a new image" */
char *saved_as_text(const char *name, uint32_t version);

/* What the window learnt after vms_checkin refused with VMS_EK_CONFLICT, to
 * tell it in plain words. */
struct checkin_conflict {
    const char *name, *file;
    uint32_t parent;                     /* the version checked out */
    const struct vms_version *newer;     /* the latest, recorded after PARENT; or NULL */
    const struct vms_lease_info *holder; /* who holds the lease now; NULL: nobody */
};
/* "Someone else checked desk in first", or "desk is no longer checked out
 * to you". */
char *conflict_heading(const struct checkin_conflict *k);
/* Who recorded what and when, who holds it now, and that the user's file is
 * untouched and nothing was lost. */
char *conflict_text(const struct checkin_conflict *k);

/* ---- history: versions, the files changed between two, releasing ---- */

/* "version 3 · 2026-12-01 10:00 UTC · alice@laptop", with " · parent 1"
 * when the parent is not the version before. */
char *version_title_text(const struct vms_version *v);
/* The message as the CLI prints it (newlines and bytes that are not UTF-8
 * escaped), or "(no message)". */
char *version_message_text(const struct vms_version *v);
/* A version's signature as the window's trusted keys judge it (STATE, from
 * vms_signature_state): "signed by a trusted key (SHA256:...)", "not
 * signed", "signed by SHA256:..., a key not trusted here", "BAD SIGNATURE:
 * ...". */
char *signature_text(enum vms_signature_state state, const struct vms_version *v);
/* A checkout of NAME refused because no trusted key signed the version
 * (VMS_EK_UNTRUSTED): "desk was not checked out", then the engine's
 * reason, that nothing was written, and that the settings' [trust] keys
 * decide. */
char *untrusted_heading(const char *name);
char *untrusted_text(const fsp_error *err);

/* The differences between two versions, copied out of vms_diff's callback. */
struct diff_entry {
    enum vms_change change;
    uint32_t what;           /* VMS_WHAT_* for changes */
    char *path, *old_path;   /* OLD_PATH for moves only */
};
struct diff_list {
    struct diff_entry *items;
    size_t n, cap;
    struct change_counts counts;
};
/* A vms_diff_cb: CTX is a struct diff_list; -ENOMEM when memory ran out. */
int diff_list_add(void *ctx, const struct vms_diff_item *item);
void diff_list_clear(struct diff_list *l);
/* "version 1 → version 3: 2 added, 1 removed, 3 changed, 0 moved", or
 * "... : no file changed". */
char *diff_counts_text(const struct diff_list *l, uint32_t from, uint32_t to);
/* diff_item_text of an entry. */
char *diff_entry_text(const struct diff_entry *e);
/* Changes shown as rows at most; the counts count them all. */
#define CHANGES_SHOWN 1000
/* "and N more: vmsync diff lists them all" for the entries past
 * CHANGES_SHOWN; NULL when all are shown (or memory ran out). */
char *diff_more_text(const struct diff_list *l);
/* The monotonic clock in seconds, for rate_meter_update. */
double now_seconds(void);

/* What the release's confirmation says: the lease goes back, the file stays,
 * checking that file in needs a new checkout, and the release is logged. */
char *release_question_text(const char *name);
char *release_body_text(const char *name, uint32_t version);
/* "desk is released", or "desk had no lease to release". */
char *release_done_text(const char *name, bool released);

/* Downloads ahead (vmsync prefetch) in words: "Downloads ahead are paused
 * until 2026-12-03 10:25 UTC" while snoozed until UNTIL (a time to come),
 * else "Downloads ahead run on their schedule". */
char *snooze_state_text(int64_t until, int64_t now);

#endif
