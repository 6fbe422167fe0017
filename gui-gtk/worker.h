/* Engine work off the main loop.  A repository slot owns one vms_client,
 * opened on the first job and kept, so an ssh:// repository keeps its one
 * connection; it runs one job at a time (the handle's rule).  A job's RUN
 * runs on a worker thread (GTask); its DONE, and its EVENT for the
 * operation's progress, run on the main loop, where every widget lives.
 *
 * Progress events are coalesced: the worker keeps the newest one and has at
 * most one g_idle_add pending, so a fast operation cannot flood the main
 * loop, and the window always shows the latest figures. */
#ifndef VMSYNC_GTK_WORKER_H
#define VMSYNC_GTK_WORKER_H

#include <gio/gio.h>
#include <stdbool.h>

#include "model.h"

struct job;
struct repo_slot;
struct question;

/* On the worker thread; returns 0 or a negative errno with ERR filled. */
typedef int (*job_run_fn)(struct job *j, vms_client *c, fsp_error *err);
/* On the main loop, once; RC and ERR are RUN's (or vms_client_open's). */
typedef void (*job_done_fn)(struct job *j, int rc, const fsp_error *err);
/* On the main loop: the newest event since the last call. */
typedef void (*job_event_fn)(struct job *j, const struct vms_event *ev);

struct job {
    struct repo_slot *slot;
    job_run_fn run;
    job_done_fn done;
    job_event_fn event; /* may be NULL */
    void *data;         /* the caller's */
};

/* The public key files whose signatures the slot's handle trusts (the
 * settings' [trust] keys): with any, a checkout of a version none of them
 * signed is refused (VMS_EK_UNTRUSTED), and a file that holds no key fails
 * the handle's opening, naming it. */
struct repo_trust {
    char *const *keys;
    size_t n_keys;
};
/* URL, IDENTITY (may be NULL) and TRUST's files are copied; ME stays the
 * caller's and must outlive the slot. */
struct repo_slot *repo_slot_new(const char *url, const char *identity,
                                const struct repo_trust *trust, const struct who *me);
/* The repository's own BWLIMIT and TIMEOUT (0: none); without a BWLIMIT,
 * RATE_NOW(CTX) gives the rate in force before each request (NULL: none),
 * called on the job's thread.  Before the slot's first job. */
void repo_slot_set_limits(struct repo_slot *s, uint64_t bwlimit, int timeout,
                          uint64_t (*rate_now)(void *ctx), void *ctx);
/* Closes the slot's handle; no job may be running (each holds the
 * application, so none is once g_application_run has returned). */
void repo_slot_free(struct repo_slot *s);
const char *repo_slot_url(const struct repo_slot *s);
bool repo_slot_remote(const struct repo_slot *s);
bool repo_slot_busy(const struct repo_slot *s);
/* The fetch rate (bytes per second) the last checkout measured on this
 * repository, for the next plan's estimate; 0 before any. */
double repo_slot_rate(const struct repo_slot *s);
void repo_slot_set_rate(struct repo_slot *s, double rate);

/* Starts J (the caller's, alive until its DONE has run) on S.  false when S
 * is busy with another job, or shut: nothing starts. */
bool job_start(struct repo_slot *s, struct job *j);
/* On J's worker, for work that is no operation of the client (a scan by
 * vms_manifest_create): reports EV to J's EVENT as the client's events are,
 * coalesced the same way. */
void job_post_event(struct job *j, const struct vms_event *ev);
/* On a worker: a new private folder (mode 0700: what goes there may list
 * every path of an image) under $TMPDIR, named PREFIX-XXXXXX; NULL with ERR
 * filled when it cannot be made.  private_dir_remove empties and removes it,
 * whatever a failed step left, and frees DIR. */
char *private_dir_make(const char *prefix, fsp_error *err);
void private_dir_remove(char *dir);
/* On the main loop: asks the running job to stop (vms_client_cancel): it
 * ends soon with FSP_EK_CANCELLED through its DONE.  A question it waits on
 * (ask.h) gets its refusal, and so does any it asks later. */
void repo_slot_cancel(struct repo_slot *s);
/* On the main loop, as the window closes: cancels the running job, and
 * job_start refuses every later one (a job started then, over a stalled
 * link, would keep the process alive with no window). */
void repo_slot_shut(struct repo_slot *s);
/* On the job's worker: asks the user Q in a dialog and waits (ask_wait).
 * The host-key question of an ssh:// slot is asked this way. */
const char *repo_slot_ask(struct repo_slot *s, const struct question *q);

#endif
