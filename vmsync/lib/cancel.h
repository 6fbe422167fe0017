/* The cancel token's waits, for the engine's blocking calls.  Private to
 * libvmsync; the token itself is public (vms_cancel_new in vmsync.h).
 *
 * A fired token stays fired: its eventfd is never read, so it stays readable
 * and every later wait on it returns at once. */
#ifndef VMS_CANCEL_H
#define VMS_CANCEL_H

#include "vmsync.h"

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
