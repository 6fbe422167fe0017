/* Shared plumbing of the engine's operations.  Private to libvmsync. */
#ifndef VMS_ENGINE_H
#define VMS_ENGINE_H

#include "base/cancel.h"
#include "manifest/loaded.h"
#include "repo/repo.h"

#include <limits.h>

/* The client handle (vmsync.h): who and where this client is, its cache, and
 * the open repository. */
struct vms_client {
    char *path;                    /* the repository, as given */
    struct vms_client_opts o;      /* o.remote points at remote */
    struct vms_remote_opts remote;
    char user[128], host[256];
    char cache[PATH_MAX];
    vms_repo *repo;                /* NULL after a broken link, until the next operation */
    vms_cancel *cancel;            /* fired by vms_client_cancel, reset as an operation starts */
    struct vms_public_key *anchors; /* the trusted keys (signature.c) */
    size_t n_anchors;
    /* hears of the repository's replies while they arrive (vms_ctx_watch_arrivals) */
    void (*arriving)(void *ctx, uint64_t got);
    void *arriving_ctx;
};

/* One operation on a client. */
struct vms_ctx {
    vms_client *client;
    const struct vms_client_opts *s;
    const char *user, *host, *cache; /* the client's */
    vms_repo *repo;                  /* the client's, for this operation */
    struct vms_stats *stats;         /* when set, closing fills its wire counts */
    struct vms_traffic traffic_at_start;
    double started;
    struct vms_event scan;           /* what the scan under way reports as (vms_ctx_scanning) */
};

/* Starts an operation on CL: opens the repository again if the last
 * operation left the link broken.  STATS (may be NULL) gets the operation's
 * wire counts when closing. */
int vms_ctx_open(struct vms_ctx *c, vms_client *cl, struct vms_stats *stats, fsp_error *err);
/* The two halves of vms_ctx_open, for an operation that may refuse before it
 * needs the repository. */
void vms_ctx_begin(struct vms_ctx *c, vms_client *cl, struct vms_stats *stats);
int vms_ctx_connect(struct vms_ctx *c, fsp_error *err);
/* Ends the operation that returned RC (with ERR), and returns RC, or when RC
 * is 0 the failure of an answer the repository still owed (vms_repo_settle),
 * in ERR.  After a lost link or a cancel the client's repository is closed,
 * to be opened again by the next operation. */
int vms_ctx_close(struct vms_ctx *c, int rc, fsp_error *err);
/* With a handle of one operation, tells the repository that no request
 * follows those sent (vms_repo_hang_up); vms_ctx_close does it otherwise. */
void vms_ctx_hang_up(struct vms_ctx *c);
/* Reads the files of CL->o.trusted_keys into CL->anchors (signature.c). */
int vms_client_load_anchors(vms_client *cl, fsp_error *err);
/* With trusted keys, V must be signed by one of them, and the signature must
 * hold: else VMS_EK_UNTRUSTED naming the version and why.  Without, 0. */
int vms_ctx_require_signature(struct vms_ctx *c, const struct vms_version *v, fsp_error *err);
/* The same for a version read from WHERE (a bundle), which the message names. */
int vms_ctx_require_signature_from(struct vms_ctx *c, const char *where, const struct vms_version *v,
                                   fsp_error *err);
/* Sends EV to CL's event callback; returns what the callback does (0 without one). */
int vms_client_emit(vms_client *cl, const struct vms_event *ev);
/* FSP_EK_CANCELLED once vms_client_cancel fired, else 0: for long loops
 * that report no progress. */
int vms_ctx_cancelled(struct vms_ctx *c, fsp_error *err);
/* Reports progress; a cancel from the callback or from vms_client_cancel
 * becomes FSP_EK_CANCELLED. */
int vms_ctx_progress(struct vms_ctx *c, enum vms_phase phase, uint64_t done, uint64_t total,
                     fsp_error *err);
/* The next scans report as PHASE (a VMS_PHASE_SCAN_* or VERIFY), the image
 * scanned as their subject, with INDEX of COUNT (0 and 0 but for seeds). */
void vms_ctx_scanning(struct vms_ctx *c, enum vms_phase phase, uint32_t index, uint32_t count);
/* FN (NULL for none) hears of each reply to the operation's gets while it
 * arrives over the network (vms_repo_progress.arriving), until set again. */
void vms_ctx_watch_arrivals(struct vms_ctx *c, void (*fn)(void *ctx, uint64_t got), void *ctx);
/* A warning about the operation (no volume, no path). */
void vms_ctx_warn(struct vms_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double vms_ctx_elapsed(const struct vms_ctx *c);
/* A path in the cache: cache/SUB/NAME (SUB created). */
int vms_ctx_cache_path(struct vms_ctx *c, const char *sub, const char *name, char *out,
                       size_t len, fsp_error *err);
/* vms_checkout on an open context (checkout.c): STATS are filled but for the
 * time.  PREFETCH: into the cache ahead of time, audited as an export only
 * when it brought the version (a timer's idle runs are no news). */
int vms_ctx_checkout(struct vms_ctx *c, const struct vms_checkout_opts *o, bool prefetch,
                     struct vms_stats *stats, fsp_error *err);
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

/* Scans IMAGE (with FSP_SCAN_* FLAGS) into the manifest file MANIFEST by
 * vms_manifest_create, progress and warnings going to the session through
 * hooks H, with the volume, object, want_stream and reuse_stream callbacks of EXTRA
 * (their ctx is H). */
int vms_ctx_scan_into(struct vms_ctx *c, const char *image, const char *manifest, uint32_t flags,
                      struct vms_scan_hooks *h, const struct fsp_sink *extra, fsp_error *err);

/* The pieces of a scan's reports, for a scan that runs on another thread
 * (scanpipe.c): the scan of IMAGE begins, has read DONE of TOTAL (a
 * keep-alive, then the event; non-zero: stop), warns, ends with RC. */
int vms_ctx_scan_started(struct vms_ctx *c, const char *image, fsp_error *err);
int vms_ctx_scan_progress(struct vms_ctx *c, uint64_t done, uint64_t total);
void vms_ctx_warn_at(struct vms_ctx *c, uint32_t volume, const char *path, const char *msg);
int vms_ctx_scan_finished(struct vms_ctx *c, int rc, fsp_error *err);

/* A scan on a thread of its own (scanpipe.c): the calling thread takes the
 * objects it hands over, in order, and may send them while the scan reads on;
 * the client's callbacks (events, warnings) and every request to the
 * repository still run on the calling thread.  KEEP, VOLUME and REUSE_STREAM
 * run on the scan's thread (which alone touches what they touch while it
 * runs); OBJECT (the objects KEEP kept, with their bytes) and IDLE (nothing
 * handed over right now: a moment to send what it has) on the calling one.
 * Non-zero from OBJECT or IDLE stops the scan; their message is theirs to
 * keep (ERR gets the scan's). */
struct vms_pipe_sink {
    void *ctx;
    bool (*keep)(void *ctx, const uint8_t hash[FSP_SHA256_LEN]);
    int (*volume)(void *ctx, const struct fsp_volume_info *v);
    bool (*reuse_stream)(void *ctx, const struct fsp_entry *e, uint32_t idx, struct fsp_stream *st);
    int (*object)(void *ctx, const uint8_t hash[FSP_SHA256_LEN], const void *data, size_t len);
    int (*idle)(void *ctx);
};
int vms_ctx_scan_piped(struct vms_ctx *c, const char *image, const char *manifest, uint32_t flags,
                       const struct vms_pipe_sink *sink, fsp_error *err);

/* Converts the raw image FROM (SIZE bytes) to the qcow2 file TO with qemu-img,
 * reporting VMS_PHASE_CONVERT; a cancel stops qemu-img, and leaves TO for the
 * caller to remove. */
int vms_convert_qcow2(struct vms_ctx *c, const char *from, const char *to, uint64_t size,
                      fsp_error *err);

/* Trusting unchanged files the way git's index does: a stream of an entry
 * whose inode, generation (NTFS: MFT sequence number), type, size, mtime,
 * ctime and extents equal those in REF keeps REF's hashes without being read.
 * Only on REF's own filesystems: another mke2fs or mkntfs gives its files the
 * same inode numbers and times from the same tree, so the scanned volume must
 * have REF's volume's UUID (NTFS: serial number), kind, place and size; a
 * volume without a UUID is never trusted. */
struct vms_trust {
    struct vms_loaded *ref;       /* owned */
    struct vms_hashmap by_inode;  /* (volume, ino) -> index in ref->entries */
    bool *same_fs;                /* per ref->volumes: the scan's is that filesystem */
};
int vms_trust_init(struct vms_trust *t, struct vms_loaded *ref);
/* A volume of the scan, before its entries: trusted when it is REF's. */
void vms_trust_volume(struct vms_trust *t, const struct fsp_volume_info *v);
/* Fills ST's sha256 and chunks (malloc'd) from REF when trusted. */
bool vms_trust_fill(struct vms_trust *t, const struct fsp_entry *e, uint32_t idx, struct fsp_stream *st);
void vms_trust_free(struct vms_trust *t);


#endif
