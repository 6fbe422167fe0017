/* A cancel token: an atomic flag for the checks between steps, and an
 * eventfd for the waits, so that a poll on the network wakes at once.  Each
 * client handle owns one (vms_client_cancel fires it).  Private to libvmsync.
 *
 * A fired token stays fired until it is reset: its eventfd stays readable,
 * and every wait on it returns at once. */
#ifndef VMS_CANCEL_H
#define VMS_CANCEL_H

#include "fsparse.h"

#include <stdbool.h>

typedef struct vms_cancel vms_cancel;

int vms_cancel_new(vms_cancel **out, fsp_error *err);
void vms_cancel_free(vms_cancel *c); /* accepts NULL; no wait may still use it */
/* Any thread, or a signal handler (one atomic store and one write(2)). */
void vms_cancel_fire(vms_cancel *c);
/* Unfired again, for the next operation: only the thread that waits on it. */
void vms_cancel_reset(vms_cancel *c);

/* False for NULL (no token: nothing can cancel). */
bool vms_cancel_fired(const vms_cancel *c);
/* FSP_EK_CANCELLED "cancelled" (WHILE: what was being done, or NULL). */
int vms_cancel_fail(fsp_error *err, const char *where);
/* Waits up to MS milliseconds (-1: no limit) for EVENTS on FD, or for the
 * token: 1 when FD is ready, 0 at the time limit, -ECANCELED when the token
 * fired (first), or another negative errno from poll. */
int vms_cancel_poll(const vms_cancel *c, int fd, short events, int ms);
/* Sleeps SECONDS unless the token fires first (-ECANCELED). */
int vms_cancel_sleep(const vms_cancel *c, double seconds);

#endif
