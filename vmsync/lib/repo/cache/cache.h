/* A branch reflector's repository (vmsync-agent --upstream): a bounded,
 * persistent cache of objects and manifests in front of an ssh:// upstream.
 * Private to libvmsync.
 *
 * Reads (objects, manifests) come from the cache; what it lacks is fetched
 * from upstream once, verified against its hash, and kept.  Everything else
 * (versions, leases, check-ins, queries) passes through to upstream, which
 * holds the users and leases.  The cache directory holds:
 *   DIR/objects/XX/HASH   one object: codec (1 byte), raw length (u32 LE),
 *                         then the body (raw, or one zstd frame)
 *   DIR/manifests/HASH    a manifest file, named by its SHA-256
 *   DIR/tmp/              files being written
 *   DIR/fetching          the agents' byte-range locks: one per object or
 *                         manifest a process is fetching, so that concurrent
 *                         sessions (one process each) share one fetch
 * Files are used least recently by their mtime, which every read renews;
 * as each session ends the oldest go until the cache holds at most MAX bytes. */
#ifndef VMS_CACHE_H
#define VMS_CACHE_H

#include "repo/repo.h"

/* The backend behind vms_repo_open_reflector (repo.h). */
int vms_reflect_open(const struct vms_reflect_opts *o, vms_repo **out, fsp_error *err);

#endif
