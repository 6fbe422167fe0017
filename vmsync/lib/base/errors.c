/* The names of error kinds, fsparse's and libvmsync's. */
#include "vmsync.h"

const char *vms_error_kind_name(int kind)
{
    static const char *const fsparse_kinds[FSP_EK_END] = {
        [FSP_EK_NONE] = "none",         [FSP_EK_USAGE] = "usage",
        [FSP_EK_OPEN] = "open",         [FSP_EK_FORMAT] = "format",
        [FSP_EK_CORRUPT] = "corrupt",   [FSP_EK_IO] = "io",
        [FSP_EK_NOMEM] = "out of memory", [FSP_EK_CANCELLED] = "cancelled",
        [FSP_EK_INTERNAL] = "internal",
    };
    static const char *const vmsync_kinds[VMS_EK_END - FSP_EK_LIBRARY] = {
        [VMS_EK_CONFLICT - FSP_EK_LIBRARY] = "conflict",
        [VMS_EK_NOTFOUND - FSP_EK_LIBRARY] = "not found",
        [VMS_EK_NETWORK - FSP_EK_LIBRARY] = "network",
        [VMS_EK_DENIED - FSP_EK_LIBRARY] = "denied",
        [VMS_EK_UNTRUSTED - FSP_EK_LIBRARY] = "untrusted",
    };
    if (kind >= 0 && kind < FSP_EK_END)
        return fsparse_kinds[kind];
    if (kind >= FSP_EK_LIBRARY && kind < VMS_EK_END)
        return vmsync_kinds[kind - FSP_EK_LIBRARY];
    return NULL;
}
