/* The client side of an ssh:// repository: the operations of repo.h spoken
 * to a vmsync-agent over an SSH channel (docs/protocol.md).  Private to
 * libvmsync. */
#ifndef VMS_REMOTE_H
#define VMS_REMOTE_H

#include "repo/repo.h"

int vms_remote_open(const char *url, const char *user, const char *host,
                    const struct vms_remote_opts *opts, const struct vms_repo_progress *progress,
                    vms_repo **out, fsp_error *err);

#endif
