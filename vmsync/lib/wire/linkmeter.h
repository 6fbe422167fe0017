/* How fast a link takes bytes, from how long each message took to write.
 *
 * One message's time is no measure on its own.  Between the writer and the
 * link lie buffers of several MiB (the pipe to sshd, the channel's window,
 * the kernel's sockets), and they open in bursts: a message that fits in
 * what is free is written in a millisecond, at an apparent gigabyte per
 * second.  So a sample spans consecutive messages, at least
 * VMS_LINK_SPAN_BYTES and VMS_LINK_SPAN_SECONDS of them, and the estimate
 * averages the time per byte, which such a burst can lower only by its share
 * of the bytes.  A message the link had to wait for (the writer was idle)
 * starts a new span: the buffers drained meanwhile. */
#ifndef VMS_LINKMETER_H
#define VMS_LINKMETER_H

#include <stddef.h>

#define VMS_LINK_SPAN_BYTES (1u << 20)
#define VMS_LINK_SPAN_SECONDS 0.5
#define VMS_LINK_RECENT 4

struct vms_link_meter {
    double cost;                     /* seconds per wire byte, averaged; 0: not measured */
    double recent[VMS_LINK_RECENT];  /* the last spans' rates, bytes per second */
    unsigned n_spans;
    double span_bytes, span_seconds; /* the span under way */
};

/* A message of WIRE bytes took SECONDS to write, after the link had waited
 * IDLE seconds for it. */
void vms_link_meter_add(struct vms_link_meter *m, size_t wire, double seconds, double idle);
/* Bytes per second; 0 until a span has been measured. */
double vms_link_meter_rate(const struct vms_link_meter *m);
/* The fastest of the recent spans and the average: what a climb must beat. */
double vms_link_meter_fastest(const struct vms_link_meter *m);

#endif
