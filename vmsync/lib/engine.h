/* Shared plumbing of the engine's operations.  Private to libvmsync. */
#ifndef VMS_ENGINE_H
#define VMS_ENGINE_H

#include "loaded.h"
#include "repo.h"

#include <limits.h>

struct vms_ctx {
    const struct vms_session *s;
    char user[128], host[256];
    char cache[PATH_MAX];
    vms_repo *repo;
    struct vms_stats *stats; /* when set, closing fills its wire counts */
    double started;
};

/* Resolves who and where we are, makes the cache directory, opens the
 * repository.  STATS (may be NULL) gets the wire counts when closing. */
int vms_ctx_open(struct vms_ctx *c, const struct vms_session *s, struct vms_stats *stats,
                 fsp_error *err);
void vms_ctx_close(struct vms_ctx *c);
/* FSP_EK_CANCELLED once the session's cancel token fired, else 0: for long
 * loops that report no progress. */
int vms_ctx_cancelled(struct vms_ctx *c, fsp_error *err);
/* Reports progress; a cancel from the callback or the token becomes
 * FSP_EK_CANCELLED. */
int vms_ctx_progress(struct vms_ctx *c, const char *phase, uint64_t done, uint64_t total,
                     fsp_error *err);
void vms_ctx_warn(struct vms_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double vms_ctx_elapsed(const struct vms_ctx *c);
/* A path in the cache: cache/SUB/NAME (SUB created). */
int vms_ctx_cache_path(struct vms_ctx *c, const char *sub, const char *name, char *out,
                       size_t len, fsp_error *err);
/* The local copy of manifest ID, fetched from the repository when missing. */
int vms_ctx_manifest(struct vms_ctx *c, const uint8_t id[FSP_SHA256_LEN], char *path, size_t len,
                     fsp_error *err);

/* Scans IMAGE (progress and warnings to the session) for its summary and digest. */
int vms_ctx_scan_summary(struct vms_ctx *c, const char *image, struct fsp_summary *out, fsp_error *err);
/* The same for an image vmsync wrote as raw, read as raw whatever its bytes. */
int vms_ctx_scan_summary_raw(struct vms_ctx *c, const char *image, struct fsp_summary *out,
                             fsp_error *err);

/* Sink hooks common to scans run by the engine: progress and warnings go to
 * the session. */
struct vms_scan_hooks {
    struct vms_forward fwd;
    struct vms_ctx *c;
};
void vms_scan_hooks_init(struct vms_scan_hooks *h, struct vms_ctx *c, const struct fsp_sink *inner);

/* Scans IMAGE (with FSP_SCAN_* FLAGS) into the manifest file MANIFEST through
 * hooks H, with the object, want_stream and reuse_stream callbacks of EXTRA
 * (their ctx is H). */
int vms_ctx_scan_into(struct vms_ctx *c, const char *image, const char *manifest, uint32_t flags,
                      struct vms_scan_hooks *h, const struct fsp_sink *extra, fsp_error *err);

/* Trusting unchanged files the way git's index does: a stream of an entry
 * whose inode, generation (NTFS: MFT sequence number), type, size, mtime and
 * ctime equal those in REF keeps REF's hashes without being read. */
struct vms_trust {
    struct vms_loaded *ref;       /* owned */
    struct vms_hashmap by_inode;  /* (volume, ino) -> index in ref->entries */
};
int vms_trust_init(struct vms_trust *t, struct vms_loaded *ref);
/* Fills ST's sha256 and chunks (malloc'd) from REF when trusted. */
bool vms_trust_fill(struct vms_trust *t, const struct fsp_entry *e, uint32_t idx, struct fsp_stream *st);
void vms_trust_free(struct vms_trust *t);


#endif
