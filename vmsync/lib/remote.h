/* The client side of an ssh:// repository: each vms_repo_X of repo.h spoken
 * to a vmsync-agent over an SSH channel (docs/protocol.md).  Private to
 * libvmsync. */
#ifndef VMS_REMOTE_H
#define VMS_REMOTE_H

#include "repo.h"

typedef struct vms_remote vms_remote;

/* CANCEL (may be NULL, not owned) ends the connection's waits, from the
 * handshake on. */
int vms_remote_open(const char *url, const char *user, const char *host,
                    const struct vms_remote_opts *opts, const vms_cancel *cancel, vms_remote **out,
                    fsp_error *err);
void vms_remote_close(vms_remote *r);
const char *vms_remote_path(const vms_remote *r);
void vms_remote_traffic(const vms_remote *r, struct vms_traffic *out);
void vms_remote_on_progress(vms_remote *r, vms_progress_cb cb, void *ctx, const vms_cancel *cancel);
int vms_remote_has(vms_remote *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                   uint8_t *present, struct vms_object_size *sizes, fsp_error *err);
int vms_remote_put(vms_remote *r, const uint8_t hash[FSP_SHA256_LEN], const void *data, size_t len,
                   fsp_error *err);
int vms_remote_flush(vms_remote *r, fsp_error *err);
int vms_remote_get(vms_remote *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                   vms_object_cb cb, void *ctx, fsp_error *err);
int vms_remote_put_manifest(vms_remote *r, const char *path, uint8_t id[FSP_SHA256_LEN],
                            fsp_error *err);
int vms_remote_get_manifest(vms_remote *r, const uint8_t id[FSP_SHA256_LEN], const char *dest,
                            fsp_error *err);
int vms_remote_version(vms_remote *r, const char *image, uint32_t version,
                       struct vms_version *out, fsp_error *err);
int vms_remote_add_version(vms_remote *r, const char *image, uint32_t parent,
                           const uint8_t manifest[FSP_SHA256_LEN],
                           const uint8_t digest[FSP_SHA256_LEN], uint64_t size,
                           const char *message, uint32_t *number, fsp_error *err);
int vms_remote_list(vms_remote *r, const char *image, vms_version_cb cb, void *ctx, fsp_error *err);
int vms_remote_lease_take(vms_remote *r, const char *image, uint32_t version, bool steal,
                          fsp_error *err);
int vms_remote_lease_get(vms_remote *r, const char *image, struct vms_lease *out, bool *found,
                         fsp_error *err);
int vms_remote_lease_release(vms_remote *r, const char *image, fsp_error *err);
int vms_remote_audit(vms_remote *r, const char *action, const char *image, uint32_t version,
                     const char *detail, fsp_error *err);
int vms_remote_gc(vms_remote *r, struct vms_gc_stats *stats, fsp_error *err);
int vms_remote_keep_alive(vms_remote *r, fsp_error *err);

#endif
