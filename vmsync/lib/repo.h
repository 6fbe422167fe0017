/* The repository: an object store and a catalog behind one interface, so the
 * sync engine does not care whether the repository is a local directory or a
 * vmsync-agent at the end of an SSH connection (ssh://[user@]host[:port]/path,
 * remote.c).  Private to libvmsync; errors follow the fsp_error convention (0
 * or negative errno, the message naming the repository and what is wrong).
 *
 * The engine talks to both alike, so every call here is written for a narrow,
 * high-latency link: lookups and fetches take whole lists, and puts may be
 * deferred until the next flush.
 *
 * A local repository is a directory:
 *   REPO/vmsync-repo     marker: "vmsync-repo 1\n"
 *   REPO/catalog.db      SQLite (WAL): images, versions, leases, audit, the
 *                        object index, packs
 *   REPO/packs/          pack files of zstd-compressed objects
 *   REPO/manifests/      one manifest file per version, named by its SHA-256
 *   REPO/tmp/            temporary files (packs and manifests being written)
 *   REPO/lock            every handle's shared flock; gc's exclusive one
 *   REPO/cache/          what gc may empty: the agent's segments and temporary files
 */
#ifndef VMS_REPO_H
#define VMS_REPO_H

#include "vmsync.h"

#include <stdint.h>

typedef struct vms_repo vms_repo;

/* Creates an empty repository at PATH (the directory may exist but must be
 * empty).  Refuses to touch an existing repository.  Local paths only. */
int vms_repo_init(const char *path, fsp_error *err);
/* Opens an existing repository: a directory, or an ssh:// URL (then REMOTE
 * holds the connection's options; NULL means the defaults).  USER and HOST
 * identify this client in leases and the audit log (an agent records the
 * user its SSH key stands for instead). */
int vms_repo_open(const char *path, const char *user, const char *host,
                  const struct vms_remote_opts *remote, vms_repo **out, fsp_error *err);
/* The same, with a token (may be NULL, not owned) that cuts short the
 * connection's handshake too. */
int vms_repo_open_cancellable(const char *path, const char *user, const char *host,
                              const struct vms_remote_opts *remote, const vms_cancel *cancel,
                              vms_repo **out, fsp_error *err);
void vms_repo_close(vms_repo *r);
const char *vms_repo_path(const vms_repo *r);
bool vms_repo_is_remote(const char *path);

/* What crossed to and from the repository through this handle: objects and
 * their raw bytes, the bytes they took on the way (stored size locally,
 * compressed segment bytes remotely), and every protocol byte. */
struct vms_traffic {
    uint64_t objects_sent, bytes_sent_raw, bytes_sent;
    uint64_t objects_received, bytes_received_raw, bytes_received;
    uint64_t wire_out, wire_in;
};
void vms_repo_traffic(const vms_repo *r, struct vms_traffic *out);
/* Where a remote handle reports the progress of sending objects (phase
 * "send"), and the token that ends its waits on the network or, locally,
 * gc's wait for the other users (may be NULL; not owned). */
void vms_repo_on_progress(vms_repo *r, vms_progress_cb cb, void *ctx, const vms_cancel *cancel);
/* Long local work between requests calls this now and then: a remote handle
 * keeps the link and the agent's session alive (the agent ends a session
 * that says nothing for its --idle-timeout).  Never during a request. */
int vms_repo_keep_alive(vms_repo *r, fsp_error *err);

/* ---- objects --------------------------------------------------------------
 * Objects are byte strings keyed by the SHA-256 of their content.  They are
 * stored zstd-compressed in pack files; a pack is written to tmp/, fsync'd,
 * renamed into packs/, and only then are its objects entered in the index, so
 * a crash leaves at worst an unindexed pack (removed by gc), never an index
 * entry without its bytes.  Every object is verified when read: a mismatch is
 * FSP_EK_CORRUPT with a message naming the object and its pack. */

struct vms_object_size {
    uint32_t len;    /* raw */
    uint32_t stored; /* as stored: compressed, or raw when zstd could not shrink it */
};
/* Sets PRESENT[i] to 1 when object HASHES[i] is stored (or pending in this
 * handle's open pack), else 0; SIZES (may be NULL) gets its sizes (zeros
 * when absent).  One round trip for the whole list. */
int vms_repo_has(vms_repo *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, uint8_t *present,
                 struct vms_object_size *sizes, fsp_error *err);

/* Adds an object unless it is already stored or pending.  Locally, objects
 * collect in an open pack that is committed by vms_repo_flush, or
 * automatically once it holds about 64 MiB.  Remotely, objects are spooled
 * and offered to the agent in rounds; only those it lacks are sent. */
int vms_repo_put(vms_repo *r, const uint8_t hash[FSP_SHA256_LEN], const void *data, size_t len,
                 fsp_error *err);
/* Makes every put durable in the repository: the bytes, then the index rows. */
int vms_repo_flush(vms_repo *r, fsp_error *err);

/* Called for each object fetched, in the order asked, with the verified,
 * decompressed bytes (valid until the callback returns) and the size it had
 * in the store.  A non-zero return stops the fetch and is returned. */
typedef int (*vms_object_cb)(void *ctx, size_t index, const uint8_t *data, size_t len,
                             size_t stored_len);
/* Fetches objects HASHES[0..n), verified against their hashes.  A missing
 * object is FSP_EK_CORRUPT "object X is not in the repository"; a damaged one
 * is FSP_EK_CORRUPT "object X in pack P is corrupt".  Remotely the whole list
 * is one request, answered by a stream. */
int vms_repo_get(vms_repo *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, vms_object_cb cb,
                 void *ctx, fsp_error *err);

/* Local repositories only (the agent's side of a transfer): objects as they
 * sit in their packs, CODEC VMS_CODEC_RAW or VMS_CODEC_ZSTD (one zstd frame),
 * so a stored frame can travel without being decompressed and recompressed.
 * Not verified here: the receiver checks every object against its hash. */
typedef int (*vms_stored_cb)(void *ctx, size_t index, uint8_t codec, const uint8_t *body,
                             size_t stored_len, size_t len);
int vms_repo_get_stored(vms_repo *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                        vms_stored_cb cb, void *ctx, fsp_error *err);
#define VMS_CODEC_RAW 0
#define VMS_CODEC_ZSTD 1
/* Level at which the store compresses each object alone. */
#define VMS_STORE_LEVEL 9
/* Objects bigger than this are refused (chunks are about 64 KiB). */
#define VMS_OBJECT_MAX (64u << 20)

/* ---- manifests ------------------------------------------------------------ */

/* Copies the manifest file at PATH into the repository (checked by reading it
 * first) and returns its id: the SHA-256 of the file. */
int vms_repo_put_manifest(vms_repo *r, const char *path, uint8_t id[FSP_SHA256_LEN], fsp_error *err);
/* Copies manifest ID to DEST (atomically: temp file, fsync, rename). */
int vms_repo_get_manifest(vms_repo *r, const uint8_t id[FSP_SHA256_LEN], const char *dest,
                          fsp_error *err);

/* ---- catalog -------------------------------------------------------------- */


/* VERSION 0 means the latest.  Unknown image or version: FSP_EK_NOTFOUND naming it. */
int vms_repo_version(vms_repo *r, const char *image, uint32_t version, struct vms_version *out,
                     fsp_error *err);

/* Records a new version of IMAGE (creating the image on its first version).
 * PARENT must be the image's latest version number (0 for a new image): when
 * another check-in got there first this fails with FSP_EK_CONFLICT and a
 * message naming the newer version, and records nothing.
 * The new number is returned in *NUMBER.  Atomic. */
int vms_repo_add_version(vms_repo *r, const char *image, uint32_t parent,
                         const uint8_t manifest[FSP_SHA256_LEN], const uint8_t digest[FSP_SHA256_LEN],
                         uint64_t size, const char *message, uint32_t *number, fsp_error *err);

/* Every version of IMAGE (or of every image when IMAGE is NULL), oldest first. */
int vms_repo_list(vms_repo *r, const char *image, vms_version_cb cb, void *ctx, fsp_error *err);

/* ---- leases: who has which image checked out ---------------------------- */

/* struct vms_lease is public: vmsync.h. */

/* Takes the lease on IMAGE for this client at VERSION.  The holder is a user
 * and a host together.  Held by anyone else: refused (FSP_EK_CONFLICT, naming
 * the holder, host and since when) unless STEAL, which takes it over and
 * writes the theft to the audit log.  Held by this user and host already:
 * updated. */
int vms_repo_lease_take(vms_repo *r, const char *image, uint32_t version, bool steal, fsp_error *err);
/* *FOUND is false when nobody holds IMAGE. */
int vms_repo_lease_get(vms_repo *r, const char *image, struct vms_lease *out, bool *found,
                       fsp_error *err);
/* Only the holder releases: anyone else's lease is FSP_EK_CONFLICT. */
int vms_repo_lease_release(vms_repo *r, const char *image, fsp_error *err);

/* ---- audit log ------------------------------------------------------------ */

/* Appends "ACTION IMAGE@VERSION DETAIL" by this client's user and host. */
int vms_repo_audit(vms_repo *r, const char *action, const char *image, uint32_t version,
                   const char *detail, fsp_error *err);

/* ---- garbage collection --------------------------------------------------- */

/* Drops objects that no version's manifest uses (vms_manifest_objects), rewriting packs that hold
 * garbage.  Takes the repository's exclusive lock; every other handle holds it
 * shared, so gc waits for them and they wait for gc.  gc waits at most the
 * handle's gc wait (vms_repo_gc_wait), then fails with FSP_EK_CONFLICT naming
 * the processes that hold the repository open, having changed nothing.  Under
 * that lock it first runs the quick check, and refuses (FSP_EK_CORRUPT) when
 * it finds a problem. */
int vms_repo_gc(vms_repo *r, struct vms_gc_stats *stats, fsp_error *err);
#define VMS_GC_WAIT_DEFAULT 60
/* Seconds gc waits for other handles (local repositories); 0: the default. */
void vms_repo_gc_wait(vms_repo *r, unsigned seconds);

/* ---- checking ---------------------------------------------------------------- */

/* Local repositories: vms_check's work (see vmsync.h) on an open handle.
 * PROGRESS (may be NULL) hears the phases "manifests" (bytes of manifest
 * files) and "objects" (stored bytes); a non-zero return cancels. */
struct vms_check_hooks {
    vms_problem_cb problem;
    void *problem_ctx;
    vms_progress_cb progress;
    void *progress_ctx;
};
int vms_repo_check(vms_repo *r, const struct vms_check_opts *o, const struct vms_check_hooks *h,
                   struct vms_check_stats *stats, fsp_error *err);

/* Local repositories: a directory for caches that gc may empty at any time
 * (REPO/cache/SUB, created), written to PATH. */
int vms_repo_cache_dir(vms_repo *r, const char *sub, char *path, size_t len, fsp_error *err);

#endif
