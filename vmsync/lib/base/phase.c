/* The names of the engine's phases: what --progress=json prints, so they are
 * part of the command line's interface and do not change. */
#include "vmsync.h"

static const char *const phase_names[] = {
    [VMS_PHASE_CONNECT] = "connect",
    [VMS_PHASE_SCAN_SEED] = "scan-seed",
    [VMS_PHASE_SCAN_IMAGE] = "scan-image",
    [VMS_PHASE_SCAN_OUTPUT] = "scan-output",
    [VMS_PHASE_SEED_COPY] = "seed-copy",
    [VMS_PHASE_FETCH] = "fetch",
    [VMS_PHASE_SEND] = "send",
    [VMS_PHASE_VERIFY] = "verify",
    [VMS_PHASE_CONVERT] = "convert",
    [VMS_PHASE_GC_MARK] = "gc-mark",
    [VMS_PHASE_GC_SWEEP] = "gc-sweep",
    [VMS_PHASE_CHECK_MANIFESTS] = "check-manifests",
    [VMS_PHASE_CHECK_OBJECTS] = "check-objects",
    [VMS_PHASE_DONE] = "done",
};

const char *vms_phase_name(enum vms_phase phase)
{
    unsigned i = (unsigned)phase;
    return i < sizeof phase_names / sizeof *phase_names && phase_names[i] ? phase_names[i] : "unknown";
}
