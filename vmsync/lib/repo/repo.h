/* The repository: an object store and a catalog behind one interface, so the
 * sync engine does not care whether the repository is a local directory or a
 * vmsync-agent at the end of an SSH connection (ssh://[user@]host[:port]/path,
 * remote.c).  Private to libvmsync; errors follow the fsp_error convention (0
 * or negative errno, the message naming the repository and what is wrong).
 *
 * Each backend fills one table of operations (struct vms_repo_ops).  The
 * engine talks to all alike, so every call here is written for a narrow,
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
 *   REPO/signing-key     the Ed25519 private key that signs versions (when made)
 */
#ifndef VMS_REPO_H
#define VMS_REPO_H

#include "base/cancel.h"
#include "base/object.h"
#include "vmsync.h"

#include <stdint.h>

typedef struct vms_repo vms_repo;
struct vms_repo_ops;

/* Every backend's handle starts with this, so a vms_repo * is the backend's
 * own handle: repo.c opens the backend, and each call goes to its table. */
struct vms_repo {
    const struct vms_repo_ops *ops;
};

/* Creates an empty repository at PATH (the directory may exist but must be
 * empty).  Refuses to touch an existing repository.  Local paths only. */
int vms_repo_init(const char *path, fsp_error *err);
/* Opens an existing repository: a directory, or an ssh:// URL (then REMOTE
 * holds the connection's options; NULL means the defaults).  USER and HOST
 * identify this client in leases and the audit log (an agent records the
 * user its SSH key stands for instead). */
/* Where a backend reports the progress of its long work (the phases of
 * vmsync.h: CONNECT and SEND remotely, GC_* and CHECK_* locally).  FN may be
 * NULL; a non-zero return cancels the work. */
struct vms_repo_progress {
    int (*fn)(void *ctx, enum vms_phase phase, uint64_t done, uint64_t total);
    void *ctx;
    const vms_cancel *cancel; /* ends the handle's waits (the network, gc's); may be NULL */
    /* May be NULL: hears of a get's reply while it arrives: GOT bytes on the
     * wire that hold objects not yet delivered. */
    void (*arriving)(void *ctx, uint64_t got);
};
/* Calls P (which may be NULL); a cancel, from P or its token, becomes
 * FSP_EK_CANCELLED "cancelled during PHASE". */
int vms_repo_report(const struct vms_repo_progress *p, enum vms_phase phase, uint64_t done,
                    uint64_t total, fsp_error *err);

int vms_repo_open(const char *path, const char *user, const char *host,
                  const struct vms_remote_opts *remote, vms_repo **out, fsp_error *err);
/* The same, with PROGRESS (copied; may be NULL) hearing the handle's long work
 * for as long as it is open, from the connection on. */
int vms_repo_open_reporting(const char *path, const char *user, const char *host,
                            const struct vms_remote_opts *remote,
                            const struct vms_repo_progress *progress, vms_repo **out,
                            fsp_error *err);
bool vms_repo_is_remote(const char *path);

/* A branch reflector's repository (vmsync-agent --upstream): the bounded cache
 * of objects and manifests in DIR in front of the ssh:// UPSTREAM, which keeps
 * everything else (repo/cache/cache.h has the details). */
struct vms_reflect_opts {
    const char *upstream;  /* the repository's ssh:// URL upstream */
    const char *name;      /* how the client named it: errors say this */
    const char *dir;       /* the cache directory (created) */
    uint64_t max;          /* bytes the cache may hold */
    const char *user, *host; /* who upstream records (see vms_serve_opts) */
    const struct vms_remote_opts *remote;
    const struct vms_public_key *trusted; /* with N_TRUSTED > 0, versions must be */
    size_t n_trusted;                     /* signed well by one of them */
};

int vms_repo_open_reflector(const struct vms_reflect_opts *o, vms_repo **out, fsp_error *err);
/* https:// or http://: a tree that vmsync publish wrote (repo/web). */
bool vms_repo_is_web(const char *path);

/* ---- the operations ----------------------------------------------------------
 * Each is a function type, written once here; a backend declares its own
 * functions with these types and fills struct vms_repo_ops (at the end) with
 * them.  The engine calls them as vms_repo_NAME(r, ...). */

typedef void vms_repo_close_fn(vms_repo *r);
typedef const char *vms_repo_path_fn(const vms_repo *r);

/* What crossed to and from the repository through this handle: objects and
 * their raw bytes, the bytes they took on the way (stored size locally,
 * compressed segment bytes remotely), and every protocol byte. */
struct vms_traffic {
    uint64_t objects_sent, bytes_sent_raw, bytes_sent;
    uint64_t objects_received, bytes_received_raw, bytes_received;
    uint64_t wire_out, wire_in;
    uint64_t segments_received, segments_chained; /* remotely: SEGMENTs, and CHAINED ones */
    uint64_t round_trips; /* remote: replies waited for after sending (vms_conn) */
    uint64_t segments_at_level[VMS_STATS_LEVELS]; /* remotely: segments each way, by level */
};
typedef void vms_repo_traffic_fn(const vms_repo *r, struct vms_traffic *out);
/* Long local work between requests calls this now and then: a remote handle
 * keeps the link and the agent's session alive (the agent ends a session
 * that says nothing for its --idle-timeout).  Never during a request. */
typedef int vms_repo_keep_alive_fn(vms_repo *r, fsp_error *err);

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
typedef int vms_repo_has_fn(vms_repo *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, uint8_t *present,
    struct vms_object_size *sizes, fsp_error *err);

/* Adds an object unless it is already stored or pending.  Locally, objects
 * collect in an open pack that is committed by vms_repo_flush, or
 * automatically once it holds about 64 MiB.  Remotely, objects are spooled
 * and offered to the agent in rounds; only those it lacks are sent. */
typedef int vms_repo_put_fn(vms_repo *r, const uint8_t hash[FSP_SHA256_LEN], const void *data, size_t len,
    fsp_error *err);
/* Makes every put durable in the repository: the bytes, then the index rows.
 * Remotely the agent's acknowledgement may still be on its way when this
 * returns (see settle): the next request, or settle, reads it, and a
 * version is recorded only once the agent holds every object it needs. */
typedef int vms_repo_flush_fn(vms_repo *r, fsp_error *err);
/* Reads every answer still owed: a remote handle sends requests whose
 * answers nothing waits for (the acknowledgements of puts, a manifest, a
 * lease release, an audit entry) without waiting for each, and reads those
 * answers before the next reply, or here.  The first that reports a failure
 * is returned, here and by every later call on the handle.  Each operation
 * ends with it (vms_ctx_close); NULL where nothing is ever owed. */
typedef int vms_repo_settle_fn(vms_repo *r, fsp_error *err);
/* Tells the server that no request follows those sent: the answers still
 * owed can be read (settle), and the close then waits for nothing more, as
 * the agent ends its session once it has answered them.  Remote only. */
typedef void vms_repo_hang_up_fn(vms_repo *r);

/* Fetches objects HASHES[0..n), verified against their hashes.  A missing
 * object is FSP_EK_CORRUPT "object X is not in the repository"; a damaged one
 * is FSP_EK_CORRUPT "object X in pack P is corrupt".  Remotely the whole list
 * is one request, answered by a stream. */
typedef int vms_repo_get_fn(vms_repo *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, vms_object_cb cb,
    void *ctx, fsp_error *err);

/* Local repositories only (the agent's side of a transfer): objects as they
 * sit in their packs (see vms_stored_cb), so a stored frame can travel
 * without being decompressed and recompressed. */
typedef int vms_repo_get_stored_fn(vms_repo *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
    vms_stored_cb cb, void *ctx, fsp_error *err);

/* ---- manifests ------------------------------------------------------------ */

/* Copies the manifest file at PATH into the repository (checked by reading it
 * first) and returns its id: the SHA-256 of the file. */
typedef int vms_repo_put_manifest_fn(vms_repo *r, const char *path, uint8_t id[FSP_SHA256_LEN], fsp_error *err);
/* Remote and reflector only: the same, sent as a delta against the manifest
 * BASE, which the repository holds and the caller has at BASE_PATH (a
 * reflector's cache has it: BASE_PATH may be NULL there).  Whole when no
 * delta can be made or the agent cannot rebuild this very file from it. */
typedef int vms_repo_put_manifest_delta_fn(vms_repo *r, const char *path,
    const uint8_t base[FSP_SHA256_LEN], const char *base_path, uint8_t id[FSP_SHA256_LEN],
    fsp_error *err);
/* Copies manifest ID to DEST (atomically: temp file, fsync, rename). */
typedef int vms_repo_get_manifest_fn(vms_repo *r, const uint8_t id[FSP_SHA256_LEN], const char *dest,
    fsp_error *err);

/* ---- catalog -------------------------------------------------------------- */


/* VERSION 0 means the latest.  Unknown image or version: VMS_EK_NOTFOUND naming it. */
typedef int vms_repo_version_fn(vms_repo *r, const char *image, uint32_t version, struct vms_version *out,
    fsp_error *err);

/* Records a new version of IMAGE (creating the image on its first version).
 * PARENT must be the image's latest version number (0 for a new image): when
 * another check-in got there first this fails with VMS_EK_CONFLICT and a
 * message naming the newer version, and records nothing.
 * The new number is returned in *NUMBER.  Atomic. */
typedef int vms_repo_add_version_fn(vms_repo *r, const char *image, uint32_t parent,
    const uint8_t manifest[FSP_SHA256_LEN], const uint8_t digest[FSP_SHA256_LEN],
    uint64_t size, const char *message, uint32_t *number, fsp_error *err);

/* Every version of IMAGE (or of every image when IMAGE is NULL), oldest first. */
typedef int vms_repo_list_fn(vms_repo *r, const char *image, vms_version_cb cb, void *ctx, fsp_error *err);

/* Removes version VERSION of IMAGE from the catalog and writes "forget" to
 * the audit log; its manifest file and objects stay until gc, which drops
 * what no version uses.  Refused (VMS_EK_CONFLICT, naming why) for the
 * image's latest version (the next check-in's parent) and for a leased one
 * (its holder's cached manifest names objects gc would drop).  Unknown:
 * VMS_EK_NOTFOUND.  DRY_RUN makes the same checks and changes nothing.
 * Atomic. */
typedef int vms_repo_forget_fn(vms_repo *r, const char *image, uint32_t version, bool dry_run,
                               fsp_error *err);

/* ---- leases: who has which image checked out ---------------------------- */

struct vms_lease {
    char image[256];
    uint32_t version;
    char user[128], host[256];
    int64_t since;
};

/* Takes the lease on IMAGE for this client at VERSION.  The holder is a user
 * and a host together.  Held by anyone else: refused (VMS_EK_CONFLICT, naming
 * the holder, host and since when) unless STEAL, which takes it over and
 * writes the theft to the audit log.  Held by this user and host already:
 * updated. */
typedef int vms_repo_lease_take_fn(vms_repo *r, const char *image, uint32_t version, bool steal, fsp_error *err);
/* *FOUND is false when nobody holds IMAGE. */
typedef int vms_repo_lease_get_fn(vms_repo *r, const char *image, struct vms_lease *out, bool *found,
    fsp_error *err);
/* Only the holder releases: anyone else's lease is VMS_EK_CONFLICT. */
typedef int vms_repo_lease_release_fn(vms_repo *r, const char *image, fsp_error *err);

/* ---- queries (see vms_images, vms_leases, vms_audit_log in vmsync.h) ------ */

/* Every image by name, with its latest version and lease. */
typedef int vms_repo_images_fn(vms_repo *r, vms_image_cb cb, void *ctx, fsp_error *err);
/* Every lease by image name, or IMAGE's only (unknown: VMS_EK_NOTFOUND). */
typedef int vms_repo_leases_fn(vms_repo *r, const char *image, vms_lease_cb cb, void *ctx,
                               fsp_error *err);
/* Audit entries oldest first, about IMAGE only unless NULL, from SINCE on. */
typedef int vms_repo_audit_log_fn(vms_repo *r, const char *image, int64_t since, vms_audit_cb cb,
                                  void *ctx, fsp_error *err);

/* ---- audit log ------------------------------------------------------------ */

/* Appends "ACTION IMAGE@VERSION DETAIL" by this client's user and host. */
typedef int vms_repo_audit_fn(vms_repo *r, const char *action, const char *image, uint32_t version,
    const char *detail, fsp_error *err);

/* ---- garbage collection --------------------------------------------------- */

/* Drops objects that no version's manifest uses (vms_manifest_objects), rewriting packs that hold
 * garbage.  Takes the repository's exclusive lock; every other handle holds it
 * shared, so gc waits for them and they wait for gc.  gc waits at most the
 * handle's gc wait (vms_repo_gc_wait), then fails with VMS_EK_CONFLICT naming
 * the processes that hold the repository open, having changed nothing.  Under
 * that lock it first runs the quick check, and refuses (FSP_EK_CORRUPT) when
 * it finds a problem. */
typedef int vms_repo_gc_fn(vms_repo *r, struct vms_gc_stats *stats, fsp_error *err);
/* Local repositories: what gc would do now (see vms_gc_dry_run), changing
 * nothing and taking no exclusive lock. */
typedef int vms_repo_gc_estimate_fn(vms_repo *r, struct vms_gc_stats *stats, fsp_error *err);
/* vms_stats's work (see vmsync.h), gc's dry run included.  Local and ssh://. */
typedef int vms_repo_stats_fn(vms_repo *r, struct vms_repo_stats *out, vms_image_usage_cb cb,
                              void *ctx, fsp_error *err);
#define VMS_GC_WAIT_DEFAULT 60
/* Seconds gc waits for other handles (local repositories); 0: the default. */
typedef void vms_repo_gc_wait_fn(vms_repo *r, unsigned seconds);

/* ---- checking ---------------------------------------------------------------- */

/* Local repositories: vms_check's work (see vmsync.h) on an open handle.
 * The handle's progress hears VMS_PHASE_CHECK_MANIFESTS and
 * VMS_PHASE_CHECK_OBJECTS. */
struct vms_check_hooks {
    vms_problem_cb problem;
    void *problem_ctx;
};
typedef int vms_repo_check_fn(vms_repo *r, const struct vms_check_opts *o, const struct vms_check_hooks *h,
    struct vms_check_stats *stats, fsp_error *err);

/* Local repositories: a directory for caches that gc may empty at any time
 * (REPO/cache/SUB, created), written to PATH. */
typedef int vms_repo_cache_dir_fn(vms_repo *r, const char *sub, char *path, size_t len, fsp_error *err);

/* ---- the signing key ----------------------------------------------------------
 * Local repositories: the key lives in REPO/signing-key (PEM, mode 0600), and
 * add_version signs every version it records while the key is there.  An
 * ssh:// repository shows the public half (KEY), and makes none. */

/* Makes a new key, refusing (VMS_EK_CONFLICT) to replace one unless REPLACE;
 * *OUT gets its public half. */
typedef int vms_repo_key_generate_fn(vms_repo *r, bool replace, struct vms_public_key *out,
                                     fsp_error *err);
/* The public half of the key; no key is VMS_EK_NOTFOUND. */
typedef int vms_repo_key_public_fn(vms_repo *r, struct vms_public_key *out, fsp_error *err);
/* Reflectors only: HASHES is the list a GET is about to read one by one, in
 * order, valid until the next call (NULL, 0 ends it).  What the cache lacks
 * of it is fetched ahead, a window of it per request upstream. */
typedef int vms_repo_prefetch_fn(vms_repo *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                                 fsp_error *err);
/* Bundles only: what the bundle holds and needs, to CB (see vmsync.h). */
typedef int vms_repo_bundle_info_fn(vms_repo *r, vms_bundle_info_cb cb, void *ctx, fsp_error *err);

/* ---- the table of operations ------------------------------------------------
 * A backend (a directory, an ssh:// agent, a bundle file; a web server
 * tomorrow) fills this table; the types above say what each operation does.
 * An operation that only one kind of repository offers is NULL in the
 * others, and the calls below answer for it.  A read-only backend (a bundle)
 * leaves every operation that writes NULL: put, flush, put_manifest,
 * add_version, forget, lease_take, lease_release, audit, gc. */
struct vms_repo_ops {
    const char *kind; /* "local", "ssh", "bundle", "web", "reflector" */
    vms_repo_close_fn *close;
    vms_repo_path_fn *path;
    vms_repo_traffic_fn *traffic;
    vms_repo_keep_alive_fn *keep_alive; /* remote only: NULL elsewhere */
    vms_repo_has_fn *has;
    vms_repo_put_fn *put;
    vms_repo_flush_fn *flush;
    vms_repo_settle_fn *settle; /* remote only: NULL elsewhere */
    vms_repo_hang_up_fn *hang_up; /* remote only: NULL elsewhere */
    vms_repo_get_fn *get;
    vms_repo_get_stored_fn *get_stored; /* local only: NULL elsewhere */
    vms_repo_put_manifest_fn *put_manifest;
    vms_repo_put_manifest_delta_fn *put_manifest_delta; /* remote, reflector: NULL elsewhere */
    vms_repo_get_manifest_fn *get_manifest;
    vms_repo_version_fn *version;
    vms_repo_add_version_fn *add_version;
    vms_repo_list_fn *list;
    vms_repo_forget_fn *forget;
    vms_repo_lease_take_fn *lease_take;
    vms_repo_lease_get_fn *lease_get;
    vms_repo_lease_release_fn *lease_release;
    vms_repo_audit_fn *audit;
    vms_repo_images_fn *images;
    vms_repo_leases_fn *leases;
    vms_repo_audit_log_fn *audit_log;
    vms_repo_gc_fn *gc;
    vms_repo_gc_wait_fn *gc_wait; /* local only: NULL elsewhere */
    vms_repo_gc_estimate_fn *gc_estimate; /* local only: NULL elsewhere */
    vms_repo_stats_fn *stats;             /* local and ssh:// */
    vms_repo_check_fn *check; /* local only: NULL elsewhere */
    vms_repo_cache_dir_fn *cache_dir; /* local only: NULL elsewhere */
    vms_repo_key_generate_fn *key_generate; /* local only: NULL elsewhere */
    vms_repo_key_public_fn *key_public;     /* local and ssh:// */
    vms_repo_bundle_info_fn *bundle_info; /* bundle only: NULL elsewhere */
    vms_repo_prefetch_fn *prefetch;       /* reflector only: NULL elsewhere */
};

/* Calls into the handle's table.  R is evaluated more than once, so it must
 * have no side effects. */
#define vms_repo_close(r) ((r) ? (r)->ops->close(r) : (void)0)
#define vms_repo_path(r) ((r)->ops->path(r))
#define vms_repo_traffic(r, ...) ((r)->ops->traffic((r), __VA_ARGS__))
#define vms_repo_has(r, ...) ((r)->ops->has((r), __VA_ARGS__))
#define vms_repo_get(r, ...) ((r)->ops->get((r), __VA_ARGS__))
#define vms_repo_get_manifest(r, ...) ((r)->ops->get_manifest((r), __VA_ARGS__))
#define vms_repo_version(r, ...) ((r)->ops->version((r), __VA_ARGS__))
#define vms_repo_list(r, ...) ((r)->ops->list((r), __VA_ARGS__))
#define vms_repo_lease_get(r, ...) ((r)->ops->lease_get((r), __VA_ARGS__))
#define vms_repo_images(r, ...) ((r)->ops->images((r), __VA_ARGS__))
#define vms_repo_leases(r, ...) ((r)->ops->leases((r), __VA_ARGS__))
#define vms_repo_audit_log(r, ...) ((r)->ops->audit_log((r), __VA_ARGS__))
#define vms_repo_keep_alive(r, err) ((r)->ops->keep_alive ? (r)->ops->keep_alive((r), (err)) : 0)
#define vms_repo_settle(r, err) ((r)->ops->settle ? (r)->ops->settle((r), (err)) : 0)
#define vms_repo_hang_up(r) ((r)->ops->hang_up ? (r)->ops->hang_up(r) : (void)0)
#define vms_repo_prefetch(r, hashes, n, err) \
    ((r)->ops->prefetch ? (r)->ops->prefetch((r), (hashes), (n), (err)) : 0)
#define vms_repo_gc_wait(r, seconds) ((r)->ops->gc_wait ? (r)->ops->gc_wait((r), (seconds)) : (void)0)

/* The operations that write fail on a read-only backend with FSP_EK_USAGE
 * "PATH: WHAT: the repository is read-only". */
int vms_repo_read_only(const vms_repo *r, const char *what, fsp_error *err);
/* Whether R records versions (a bundle does not): a checkout from a
 * read-only repository takes no lease and writes no audit entry. */
#define vms_repo_writable(r) ((r)->ops->add_version != NULL)
#define vms_repo_flush(r, err) \
    ((r)->ops->flush ? (r)->ops->flush((r), (err)) : vms_repo_read_only((r), "flush", (err)))
#define vms_repo_put(r, hash, data, len, err)                          \
    ((r)->ops->put ? (r)->ops->put((r), (hash), (data), (len), (err)) \
                   : vms_repo_read_only((r), "storing an object", (err)))
#define vms_repo_put_manifest(r, path, id, err)                          \
    ((r)->ops->put_manifest ? (r)->ops->put_manifest((r), (path), (id), (err)) \
                            : vms_repo_read_only((r), "storing a manifest", (err)))
/* put_manifest, as a delta against BASE (at BASE_PATH) where the backend
 * can send one. */
#define vms_repo_put_manifest_from(r, path, base, base_path, id, err)                      \
    ((r)->ops->put_manifest_delta                                                        \
         ? (r)->ops->put_manifest_delta((r), (path), (base), (base_path), (id), (err)) \
         : vms_repo_put_manifest((r), (path), (id), (err)))
#define vms_repo_add_version(r, image, parent, manifest, digest, size, message, number, err)       \
    ((r)->ops->add_version                                                                         \
         ? (r)->ops->add_version((r), (image), (parent), (manifest), (digest), (size), (message), \
                                 (number), (err))                                                  \
         : vms_repo_read_only((r), "recording a version", (err)))
#define vms_repo_forget(r, image, version, dry_run, err)                              \
    ((r)->ops->forget ? (r)->ops->forget((r), (image), (version), (dry_run), (err)) \
                      : vms_repo_read_only((r), "forgetting a version", (err)))
#define vms_repo_lease_take(r, image, version, steal, err)                           \
    ((r)->ops->lease_take ? (r)->ops->lease_take((r), (image), (version), (steal), (err)) \
                          : vms_repo_read_only((r), "taking a lease", (err)))
#define vms_repo_lease_release(r, image, err)                           \
    ((r)->ops->lease_release ? (r)->ops->lease_release((r), (image), (err)) \
                             : vms_repo_read_only((r), "releasing a lease", (err)))
#define vms_repo_audit(r, action, image, version, detail, err)                              \
    ((r)->ops->audit ? (r)->ops->audit((r), (action), (image), (version), (detail), (err)) \
                     : vms_repo_read_only((r), "writing the audit log", (err)))
#define vms_repo_gc(r, stats, err) \
    ((r)->ops->gc ? (r)->ops->gc((r), (stats), (err)) : vms_repo_read_only((r), "gc", (err)))
/* The operations only local repositories offer fail elsewhere with
 * FSP_EK_USAGE "PATH: WHAT needs a local repository". */
int vms_repo_local_only(const vms_repo *r, const char *what, fsp_error *err);
#define vms_repo_get_stored(r, hashes, n, cb, ctx, err)                                  \
    ((r)->ops->get_stored ? (r)->ops->get_stored((r), (hashes), (n), (cb), (ctx), (err)) \
                          : vms_repo_local_only((r), "reading stored objects", (err)))
#define vms_repo_gc_estimate(r, stats, err)                              \
    ((r)->ops->gc_estimate ? (r)->ops->gc_estimate((r), (stats), (err)) \
                           : vms_repo_local_only((r), "gc", (err)))
#define vms_repo_stats(r, out, cb, ctx, err)                              \
    ((r)->ops->stats ? (r)->ops->stats((r), (out), (cb), (ctx), (err)) \
                     : vms_repo_local_only((r), "stats", (err)))
#define vms_repo_check(r, o, hooks, stats, err)                              \
    ((r)->ops->check ? (r)->ops->check((r), (o), (hooks), (stats), (err)) \
                     : vms_repo_local_only((r), "check", (err)))
#define vms_repo_key_generate(r, replace, out, err)                              \
    ((r)->ops->key_generate ? (r)->ops->key_generate((r), (replace), (out), (err)) \
                            : vms_repo_local_only((r), "a signing key", (err)))
#define vms_repo_key_public(r, out, err)                              \
    ((r)->ops->key_public ? (r)->ops->key_public((r), (out), (err)) \
                          : vms_repo_local_only((r), "a signing key", (err)))
#define vms_repo_cache_dir(r, sub, path, len, err)                              \
    ((r)->ops->cache_dir ? (r)->ops->cache_dir((r), (sub), (path), (len), (err)) \
                         : vms_repo_local_only((r), "a repository cache", (err)))
/* Elsewhere FSP_EK_USAGE "PATH: not a bundle". */
int vms_repo_not_bundle(const vms_repo *r, fsp_error *err);
#define vms_repo_bundle_info(r, cb, ctx, err)                             \
    ((r)->ops->bundle_info ? (r)->ops->bundle_info((r), (cb), (ctx), (err)) \
                           : vms_repo_not_bundle((r), (err)))

/* ---- writing a bundle (repo/bundle; the format is docs/bundle.md) -----------
 * The members go out in the format's order: open (the header), the version
 * record, the manifest, the objects, and commit (the trailer).  The bundle is
 * written to temporary files beside PATH and renamed by commit; PATH "-" is
 * standard output, written as it goes.  Abort removes the temporary; it and
 * commit free W (NULL is fine for abort). */
typedef struct vms_bundle_writer vms_bundle_writer;
#define VMS_BUNDLE_HELD_MAX 4096 /* the most held images a header lists */
struct vms_bundle_plan {
    const struct vms_version *version;   /* carried; its manifest is MANIFEST */
    const char *manifest;                /* the manifest file's path */
    const uint8_t (*held)[FSP_SHA256_LEN]; /* canonical digests the receiver holds */
    size_t n_held;
    uint32_t base;                       /* a version of the image the receiver holds; 0: none */
    uint64_t objects, object_bytes;      /* exactly what vms_bundle_add_object will add */
    int level;                           /* zstd 1..19 */
    uint64_t split;                      /* bytes per part (parts.c); 0: one file */
    bool replace;                        /* replace PATH and the parts after it; else
                                          * commit refuses (VMS_EK_CONFLICT) to */
};
int vms_bundle_writer_open(const char *path, const struct vms_bundle_plan *plan,
                           vms_bundle_writer **out, fsp_error *err);
int vms_bundle_add_object(vms_bundle_writer *w, const uint8_t hash[FSP_SHA256_LEN],
                          const void *data, size_t len, fsp_error *err);
/* *WRITTEN gets the bundle's size in bytes. */
int vms_bundle_writer_commit(vms_bundle_writer *w, uint64_t *written, fsp_error *err);
void vms_bundle_writer_abort(vms_bundle_writer *w);

/* ---- the version record (repo/bundle/records.c; docs/bundle.md) ----------
 * One encoding of a version and its signature, carried by bundles and by
 * web trees alike; decoders fail with FSP_EK_FORMAT naming PATH and the
 * member. */
struct vms_wbuf;
void vms_bundle_encode_version(struct vms_wbuf *b, const struct vms_version *v);
int vms_bundle_decode_version(const uint8_t *p, size_t len, struct vms_version *v,
                              const char *path, fsp_error *err);
/* The signature record: V's signer and signature, as the catalog holds them.
 * Decoding fills V's and sets V->is_signed; it checks the record's shape, not
 * the signature, which is the client's to judge (vms_signature_state). */
void vms_bundle_encode_signature(struct vms_wbuf *b, const struct vms_version *v);
int vms_bundle_decode_signature(const uint8_t *p, size_t len, struct vms_version *v,
                                const char *path, fsp_error *err);

/* ---- publishing a web tree (repo/web; the layout is docs/web.md) -----------
 * Writes every version of SRC (a local repository: its stored objects are
 * copied as they are) into DIR as a static tree, adding to what an earlier
 * publish wrote there and changing no file of it but the top-level index,
 * which is renamed into place last. */
int vms_web_publish(vms_repo *src, const char *dir, struct vms_publish_stats *st, fsp_error *err);

#endif
