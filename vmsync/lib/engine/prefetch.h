/* Pre-copy: an image's latest version rebuilt into the client's cache ahead
 * of the checkout that needs it (prefetch.c). */
#ifndef VMS_ENGINE_PREFETCH_H
#define VMS_ENGINE_PREFETCH_H

#include "engine/engine.h"

/* Where a prefetch of NAME from C's repository keeps its image, whether one
 * is there or not: CACHE/prefetch/KEY-NAME.img, KEY naming the repository. */
int vms_prefetch_path(struct vms_ctx *c, const char *name, char *out, size_t len, fsp_error *err);

/* A prefetch runs unasked, so it never takes the disk's last space: 0 when
 * writing what figures F plan to OUT leaves PREFETCH_RESERVE_PERCENT of
 * OUT's filesystem free, else FSP_EK_IO -ENOSPC with the figures. */
enum { PREFETCH_RESERVE_PERCENT = 10 };
int vms_prefetch_room(const char *out, const char *name, const struct vms_plan_figures *f,
                      fsp_error *err);

#endif
