/* Pre-copy: an image's latest version rebuilt into the client's cache ahead
 * of the checkout that needs it (prefetch.c). */
#ifndef VMS_ENGINE_PREFETCH_H
#define VMS_ENGINE_PREFETCH_H

#include "engine/engine.h"

/* Where a prefetch of NAME from C's repository keeps its image, whether one
 * is there or not: CACHE/prefetch/KEY-NAME.img, KEY naming the repository. */
int vms_prefetch_path(struct vms_ctx *c, const char *name, char *out, size_t len, fsp_error *err);

#endif
