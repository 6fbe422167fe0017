/* The link's rate (see linkmeter.h). */
#include "wire/linkmeter.h"

#define KEEP 0.7       /* the weight of the past in the average */
#define IDLE_SHARE 0.1 /* a link idle this share of a message's time had drained its buffers */

static void close_span(struct vms_link_meter *m)
{
    double cost = m->span_seconds / m->span_bytes;
    m->cost = m->cost > 0 ? KEEP * m->cost + (1 - KEEP) * cost : cost;
    m->recent[m->n_spans++ % VMS_LINK_RECENT] = 1 / cost;
    m->span_bytes = m->span_seconds = 0;
}

void vms_link_meter_add(struct vms_link_meter *m, size_t wire, double seconds, double idle)
{
    if (idle > IDLE_SHARE * seconds) {
        m->span_bytes = m->span_seconds = 0;
        return;
    }
    m->span_bytes += (double)wire;
    m->span_seconds += seconds > 0 ? seconds : 0;
    if (m->span_bytes >= VMS_LINK_SPAN_BYTES && m->span_seconds >= VMS_LINK_SPAN_SECONDS)
        close_span(m);
}

double vms_link_meter_rate(const struct vms_link_meter *m) { return m->cost > 0 ? 1 / m->cost : 0; }

double vms_link_meter_fastest(const struct vms_link_meter *m)
{
    double fastest = vms_link_meter_rate(m);
    for (int i = 0; i < VMS_LINK_RECENT; i++)
        fastest = m->recent[i] > fastest ? m->recent[i] : fastest;
    return fastest;
}
