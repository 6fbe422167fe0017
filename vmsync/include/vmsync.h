/* libvmsync: manifests, image comparison and inspection, and the repository
 * engine (import, checkout, checkin, gc, check, and the agent's side of
 * ssh://).  Nothing here prints except the JSON printer and the name writers
 * (vms_put_*), which write where they are told.
 *
 * Errors, one rule for every call: a call that can fail returns 0 or a
 * negative errno and fills the caller's fsp_error (ERR, never NULL) with a
 * kind (FSP_EK_* or VMS_EK_*, see vms_error_kind_name) and a message that
 * names what is wrong; messages hold names raw, so print them with
 * vms_put_text.  Out of memory is -ENOMEM with FSP_EK_NOMEM, never NULL and
 * never an abort.  A call that returns a pointer, a bool or void cannot fail:
 * a bool answers a question (vms_is_manifest, vms_utf8_valid), a pointer is
 * one the caller already owns or a static string.
 *
 * Ownership, one rule too: what a caller passes in stays the caller's, and no
 * call keeps a pointer to it past its return, except where it says so (the
 * strings of struct vms_client_opts, which must outlive the handle).  What a
 * call hands out through OUT (a vms_client, vms_plan, vms_json, manifest
 * writer, inspect result) is the caller's, freed by its own close or free
 * call, each of which takes NULL.  What a callback receives (a struct and the
 * strings it points to) lives during that call only: copy what you keep.
 *
 * Threads: calls on different handles, or on none, run on any threads at
 * once.  The one setting shared by a whole process is libfsparse's list of
 * folders allowed to hold backing files (fsp_allow_backing_dir), set before
 * the work starts.
 * One handle serves one call at a time; the one exception is
 * vms_client_cancel, which any thread may call while another runs an
 * operation.  Callbacks run on the thread of the call that invokes them. */
#ifndef VMSYNC_H
#define VMSYNC_H

#include "fsparse.h"

#define VMSYNC_VERSION "0.2.0"

#include <stdio.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- error kinds ---------------------------------------------------------
 * fsp_error.kind is one of fsparse's FSP_EK_* or one of these, raised only by
 * libvmsync; they start at FSP_EK_LIBRARY so that neither list collides with
 * the other as they grow.  The kind picks the CLI's exit status, and travels
 * over ssh:// (docs/protocol.md numbers them on the wire). */
enum vms_error_kind {
    VMS_EK_CONFLICT = FSP_EK_LIBRARY, /* refused: a lease held elsewhere, another check-in
                                        * won, or replacing an output could lose work */
    VMS_EK_NOTFOUND,  /* no such image or version in a repository */
    VMS_EK_NETWORK,   /* a remote repository: cannot connect, link lost, timed out */
    VMS_EK_DENIED,    /* refused: host key, authentication, or the agent's rules */
    VMS_EK_UNTRUSTED, /* refused: a version a trusted key did not sign, or signed badly */
    VMS_EK_END,       /* one past the last */
};
/* The kind's name ("usage", "not found", ...), a static string; NULL for a
 * number that is no kind.  Every kind of either list has its own name. */
const char *vms_error_kind_name(int kind);

/* ---- library versions ----------------------------------------------------
 * The libraries vmsync is linked with, for --version and bug reports.  NAME
 * is the library ("ext2fs", "openssl", ...); BUILT the version its headers
 * (or pkg-config) gave at build time, RUNNING the one loaded now; either is
 * NULL when unknown.  The strings live only during the callback. */
struct vms_library_version {
    const char *name, *built, *running;
};
typedef void vms_library_version_fn(void *ctx, const struct vms_library_version *v);
/* Calls EACH once per library, in a fixed order, on the calling thread. */
void vms_library_versions(vms_library_version_fn *each, void *ctx);

/* ---- manifest files -----------------------------------------------------
 * Format (version 1), all integers little-endian:
 *   header, 16 bytes, not compressed:
 *     magic "VMSYNCMF", u16 version, u16 header length (16), u32 flags (0)
 *   body: one zstd stream holding records, each
 *     u8 tag, u32 payload length, payload
 *   Payload integers are unsigned LEB128 varints (signed ones zigzag-encoded);
 *   strings and byte strings are a varint N then N-1 bytes, N = 0 marking an
 *   absent one; hashes are 32 raw bytes.  Tags: 1 image, 2 volume, 3 entry, 4 warning, 5 layout run,
 *   6 end (summary, digest, and the SHA-256 of every byte of the body before
 *   it).  The field order of each payload is in manifest.c; readers reject
 *   unknown tags, oversized payloads, trailing bytes and a missing end record.
 */
#define VMS_MANIFEST_MAGIC "VMSYNCMF"
#define VMS_MANIFEST_VERSION 1

typedef struct vms_manifest_writer vms_manifest_writer;

/* Writes to a temporary file beside PATH; commit makes it PATH atomically
 * (fsync, rename, fsync of the directory).  Abort removes the temporary. */
int vms_manifest_writer_open(const char *path, vms_manifest_writer **out, fsp_error *err);
const struct fsp_sink *vms_manifest_writer_sink(vms_manifest_writer *w);
int vms_manifest_writer_commit(vms_manifest_writer *w, fsp_error *err);
void vms_manifest_writer_abort(vms_manifest_writer *w);

/* Scans IMAGE into a manifest at PATH (O may be NULL): the writer's
 * temporary becomes PATH (vms_manifest_writer_commit) only when the whole
 * scan succeeds, and is removed otherwise.  A raw image vmsync wrote is read
 * as raw while its record names it, any other image as its bytes show.  The
 * callbacks get CTX and run on the calling thread, during the call only;
 * their arguments live for the callback only.  A non-zero return from
 * progress or warning cancels the scan (FSP_EK_CANCELLED). */
struct vms_manifest_create_opts {
    uint32_t scan_flags; /* FSP_SCAN_* */
    int (*progress)(void *ctx, const char *phase, uint64_t done, uint64_t total);
    /* A damaged file or structure; the manifest records it too. */
    int (*warning)(void *ctx, uint32_t volume, const char *path, const char *msg);
    /* Content hooks for engines: only HOOKS' volume (each volume before its
     * entries), object, want_stream and reuse_stream are used, each called
     * with HOOKS->ctx (see fsp_sink). */
    const struct fsp_sink *hooks;
    void *ctx;
};
int vms_manifest_create(const char *image, const char *path,
                        const struct vms_manifest_create_opts *o, fsp_error *err);

/* Streams a manifest file into SINK, checking every record. */
int vms_manifest_read(const char *path, const struct fsp_sink *sink, fsp_error *err);
/* True when PATH starts with the manifest magic; false too when PATH cannot
 * be read (opening it then says why). */
bool vms_is_manifest(const char *path);

/* Reads an image (scanning it) or a manifest file into SINK. */
int vms_load(const char *path, uint32_t scan_flags, const struct fsp_sink *sink, fsp_error *err);

/* Calls CB for every object a manifest's image is made of, as the scan hands
 * them to fsp_sink.object: each hashed stream under FSP_CHUNK_MIN_STREAM whole,
 * each chunk of larger streams, each RAW piece; volatile streams included,
 * though a repository holds their objects only when imported keeping them
 * (vms_import_opts.keep_volatile).  The same hash may come more than once. */
typedef int (*vms_hash_cb)(void *ctx, const uint8_t hash[FSP_SHA256_LEN], uint64_t len);
int vms_manifest_objects(const char *path, vms_hash_cb cb, void *ctx, fsp_error *err);
/* The same without volatile streams: what a repository must hold before it
 * records a version made of this manifest. */
int vms_manifest_needed(const char *path, vms_hash_cb cb, void *ctx, fsp_error *err);

/* A sink that passes everything on to INNER; embed it first in a struct and
 * override callbacks to add behaviour (their ctx is the struct vms_forward). */
struct vms_forward {
    struct fsp_sink sink;
    const struct fsp_sink *inner;
};
void vms_forward_init(struct vms_forward *f, const struct fsp_sink *inner);

/* ---- JSON ---------------------------------------------------------------- */

#define VMS_JSON_LAYOUT 0x1u /* include the layout map */

typedef struct vms_json vms_json;
/* A sink that prints what it receives to OUT (the caller's, not closed) as
 * one JSON document; free it after the scan or read ends. */
int vms_json_new(FILE *out, uint32_t flags, vms_json **j, fsp_error *err);
const struct fsp_sink *vms_json_sink(vms_json *j);
void vms_json_free(vms_json *j);
/* JSON string escaping for other printers; writes "..." to OUT (null for
 * NULL).  Bytes that are not UTF-8 become U+FFFD: lossy, see vms_json_member. */
void vms_json_string(FILE *out, const char *s);
/* Writes "KEY":VALUE and, only when VALUE is not valid UTF-8, also
 * ,"KEY_bytes":"HEX" with VALUE's bytes in lowercase hex, so that two names
 * that differ only in bytes that are not UTF-8 stay two names. */
void vms_json_member(FILE *out, const char *key, const char *value);
/* Writes "level_min":MIN,"level_max":MAX,"segments_at_level":{"LEVEL":N,...}
 * for the levels of COUNTS (VMS_STATS_LEVELS entries, defined below) that
 * have segments; MIN and MAX are 0 when none has. */
void vms_json_levels(FILE *out, const uint64_t *counts);

/* ---- names in text output ------------------------------------------------
 * A name (a path, a link target, a label, an image name) is printed as it is
 * when it is plain: valid UTF-8 with no control character (C0, DEL, C1), no
 * double quote and no backslash.  Otherwise it is quoted as git quotes paths:
 * "..." with \a \b \t \n \v \f \r \" \\, and \ooo (three octal digits) for
 * every other control byte and every byte that is not UTF-8.  S is never NULL. */

/* Length of the valid UTF-8 sequence at S (1 to 4), or 0 when S starts with
 * a byte that begins none (or with its terminating NUL). */
size_t vms_utf8_len(const char *s);
bool vms_utf8_valid(const char *s);
bool vms_name_is_plain(const char *s);
/* S as is when plain, else quoted. */
void vms_put_name(FILE *out, const char *s);
/* S always quoted (for a name among other words, like a label). */
void vms_put_quoted(FILE *out, const char *s);
/* Free text (a message that may embed names): control characters and bytes
 * that are not UTF-8 escaped as in a quoted name, nothing else changed. */
void vms_put_text(FILE *out, const char *s);

/* ---- comparing two images or manifests --------------------------------- */

enum vms_change {
    VMS_ADDED = 1,
    VMS_REMOVED,
    VMS_CHANGED,
    VMS_MOVED,
};

#define VMS_WHAT_CONTENT 0x01u
#define VMS_WHAT_TYPE 0x02u
#define VMS_WHAT_MODE 0x04u
#define VMS_WHAT_OWNER 0x08u
#define VMS_WHAT_SYMLINK 0x10u
#define VMS_WHAT_SIZE 0x20u
#define VMS_WHAT_STREAMS 0x40u

struct vms_diff_item {
    enum vms_change change;
    uint32_t volume;
    const char *path;     /* the new path for moves */
    const char *old_path; /* moves only */
    uint32_t what;        /* VMS_WHAT_* for changes */
};

typedef int (*vms_diff_cb)(void *ctx, const struct vms_diff_item *item);

/* Compares A and B (images or manifests) and calls CB for every difference,
 * sorted by volume then path with the same comparison the merge uses. */
int vms_diff(const char *a, const char *b, vms_diff_cb cb, void *ctx, fsp_error *err);
const char *vms_what_name(uint32_t bit);

/* ---- inspecting an image ---------------------------------------------------
 * What IMAGE (an image, or a manifest file) holds, from a metadata-only scan:
 * no file data is read. */

struct vms_inspect_volume {
    struct fsp_volume_info info;
    uint64_t files, dirs, symlinks, other;
    uint64_t file_bytes;  /* sizes of the regular files, each hard-linked one once */
    const char *os;       /* a static string ("windows", "linux (debian family)",
                           * ...) from files only that system has; NULL: none found */
};

struct vms_inspect_result {
    uint64_t size;                 /* bytes of the disk */
    char format[32];               /* "raw", "qcow2", ... */
    char table[8];                 /* "gpt", "dos" or "none" */
    uint64_t allocated_bytes;      /* in the filesystems' layout */
    uint64_t warnings;             /* damaged files and structures met */
    uint32_t n_volumes;
    struct vms_inspect_volume *volumes;
    char *guestfs_os;              /* GUESTFS: libguestfs's product name, else NULL */
    const char *guestfs_note;      /* GUESTFS without a name: why (a static string) */
};

struct vms_inspect_opts {
    bool guestfs;   /* also ask virt-inspector (libguestfs); slow: it boots an appliance */
};

/* Fills *OUT (the caller's, freed with vms_inspect_free; NULL on failure)
 * with what IMAGE holds; O may be NULL.  It runs on the calling thread and
 * keeps nothing between calls.  A libguestfs that is missing or finds nothing
 * is no error: the result says why in guestfs_note. */
int vms_inspect(const char *image, const struct vms_inspect_opts *o,
                struct vms_inspect_result **out, fsp_error *err);
void vms_inspect_free(struct vms_inspect_result *r);

/* ---- the sync engine -------------------------------------------------------
 * One engine for the CLI, the GUI and the agent.  A client opens a handle on
 * one repository, a directory or an ssh://[user@]host[:port]/path URL served
 * by vmsync-agent, and runs operations on it: the handle keeps the
 * repository open, and over ssh:// keeps its one SSH connection, from
 * operation to operation.  Each operation takes options, reports progress
 * through the handle's callbacks and fills statistics.
 * Threads and ownership follow the rules at the top of this file. */

/* ---- events: what an operation is doing ----------------------------------
 * An operation reports each phase it goes through as events: DONE of TOTAL
 * in the phase's unit, as the work goes.  TOTAL may grow while a phase learns
 * more (a scan finds volumes as it goes).  Phases may repeat (one scan
 * per seed) and are skipped when there is nothing to do. */
enum vms_phase {
    VMS_PHASE_CONNECT = 1,     /* ssh://: the SSH connection, in 5 steps: connected, host key
                                * checked, authenticated, agent started, agent's hello */
    VMS_PHASE_SCAN_SEED,       /* checkout (bundle create: a --have image): a seed scanned
                                * (SUBJECT its path, INDEX of COUNT);
                                * bytes read of those to read.  A seed whose scan is
                                * cached is not scanned */
    VMS_PHASE_SCAN_IMAGE,      /* import, check-in: the image (SUBJECT) scanned; bytes */
    VMS_PHASE_SCAN_OUTPUT,     /* checkout: OUT (SUBJECT), changed since vmsync wrote it,
                                * scanned to see which version it holds; bytes */
    VMS_PHASE_SEED_COPY,       /* checkout: objects copied from the seeds; bytes of the
                                * image in place, of all it needs (as FETCH, which follows) */
    VMS_PHASE_FETCH,           /* checkout: objects fetched from the repository; same unit.
                                * bundle create: objects read into the bundle; raw bytes */
    VMS_PHASE_SEND,            /* import, check-in over ssh://: objects sent; raw bytes,
                                * counted from the session's first round: a check-in
                                * sends while it scans, and its TOTAL grows as it finds
                                * more; SCAN_IMAGE events come between the rounds */
    VMS_PHASE_VERIFY,          /* checkout: the rebuilt image (SUBJECT: its temporary,
                                * OUT.vmsync-part), verify: the image named (SUBJECT),
                                * scanned to compare its digest; bytes */
    VMS_PHASE_CONVERT,         /* checkout to qcow2: qemu-img converting; bytes of the image */
    VMS_PHASE_GC_MARK,         /* gc of a local repository: manifests read, of all the
                                * versions use */
    VMS_PHASE_GC_SWEEP,        /* gc of a local repository: pack files swept, of all */
    VMS_PHASE_CHECK_MANIFESTS, /* check: bytes of manifest files read */
    VMS_PHASE_CHECK_OBJECTS,   /* check with objects: stored bytes read; a bundle opened:
                                * bytes of its members read and checked */
    VMS_PHASE_DONE,            /* the last event of every operation on a client, whether it
                                * succeeded or not: RESULT is what it returns */
};
/* "connect", "scan-seed", "scan-image", "scan-output", "seed-copy", "fetch",
 * "send", "verify", "convert", "gc-mark", "gc-sweep", "check-manifests",
 * "check-objects", "done"; "unknown" for a value not in the enum. */
const char *vms_phase_name(enum vms_phase phase);

struct vms_event {
    enum vms_phase phase;
    uint64_t done, total;    /* 0 and 0 for DONE */
    const char *subject;     /* the path of the image the phase reads (the phases that say
                              * so above); NULL otherwise */
    uint32_t index, count;   /* SCAN_SEED: the seed's place among the checkout's seeds,
                              * INDEX from 1 to COUNT; 0 and 0 otherwise */
    int result;              /* DONE: the operation's return value (0 or a negative errno) */
    const fsp_error *error;  /* DONE when RESULT is not 0: the operation's error; else NULL */
};
/* Runs on the operation's thread.  EV and all it points to live during the
 * call only.  A non-zero return cancels the operation (FSP_EK_CANCELLED); the
 * return of the DONE event is ignored. */
typedef int (*vms_event_cb)(void *ctx, const struct vms_event *ev);

/* A warning: about a file of a scanned image (PATH the file, VOLUME its
 * partition as fsp_volume_info.index numbers it), or about the operation or
 * the image as a whole (PATH NULL, VOLUME 0).  W and its strings live during the call only; names are raw:
 * print PATH with vms_put_name and MESSAGE with vms_put_text. */
struct vms_warning {
    uint32_t volume;
    const char *path;
    const char *message;
};
typedef void (*vms_warning_cb)(void *ctx, const struct vms_warning *w);

/* A server's host key that the known hosts file does not vouch for. */
enum vms_host_key_state {
    VMS_HOST_KEY_UNKNOWN = 1, /* the file has no key for the host */
    VMS_HOST_KEY_CHANGED,     /* the file has another key for it: always refused */
    VMS_HOST_KEY_OTHER_TYPE,  /* the file has a key of another type: always refused */
};
struct vms_host_key {
    enum vms_host_key_state state;
    const char *host;         /* as the URL names it */
    const char *type;         /* "ssh-ed25519", ... */
    const char *fingerprint;  /* "SHA256:..." */
    const char *known_hosts;  /* the file that was consulted */
};
enum vms_host_key_answer {
    VMS_HOST_KEY_REFUSE = 0,
    VMS_HOST_KEY_ACCEPT_ONCE, /* connect this time, write nothing */
    VMS_HOST_KEY_REMEMBER,    /* connect, and add the key to the known hosts file */
};
/* Asked about an UNKNOWN key, whose answer decides; told about a CHANGED or
 * OTHER_TYPE key, which is refused (VMS_EK_DENIED) whatever the answer.  K
 * and its strings live during the call only.  Runs on the thread of the
 * operation that connects; it may block (a dialog, a prompt). */
typedef enum vms_host_key_answer (*vms_host_key_cb)(void *ctx, const struct vms_host_key *k);

/* How to reach an ssh:// repository.  Zero values mean the defaults. */
struct vms_remote_opts {
    const char *known_hosts;  /* NULL: ~/.ssh/known_hosts */
    vms_host_key_cb host_key; /* NULL: every key the file does not vouch for is refused */
    void *host_key_ctx;
    const char *identity;     /* a private key file; NULL: ssh-agent, then ~/.ssh/id_* */
    uint64_t bwlimit;         /* bytes per second each way (at least VMS_BWLIMIT_MIN,
                               * else the agent refuses it); 0: no limit */
    int level;                /* zstd level of transfers, 1..19; 0: adapt to the link */
    int timeout;              /* seconds without a byte from the server; 0: 60 */
    const char *agent;        /* the agent command when authorized_keys does not force one */
    /* When bwlimit is 0 and this is set, the rate in force now (0: none; a
     * lower one is raised to VMS_BWLIMIT_MIN), asked before each GET and PUT
     * request on the thread that runs the operation, so that a limit follows
     * the clock during a long transfer (vms_bw_rate_at). */
    uint64_t (*bwlimit_now)(void *ctx);
    void *bwlimit_ctx;
};

/* What a handle is opened with.  vms_client_open copies the struct and the
 * remote options, but not the strings they point to: those must outlive the
 * handle. */
struct vms_client_opts {
    const struct vms_remote_opts *remote; /* NULL: the defaults */
    const char *user, *host;  /* NULL: from the environment ($VMSYNC_HOST, hostname) */
    const char *cache_dir;    /* NULL: $VMSYNC_CACHE, else ~/.cache/vmsync */
    unsigned gc_wait;         /* seconds gc waits for the repository's other users, then
                               * fails naming them (exit 8); 0: 60 */
    vms_event_cb event;       /* may be NULL */
    vms_warning_cb warning;   /* may be NULL */
    void *ctx;                /* passed to both */
    /* Files of public keys this client trusts (vms_public_key_load), read by
     * vms_client_open, which fails naming a file that is not one.  With one
     * or more, checkout, export and bundle apply refuse (VMS_EK_UNTRUSTED) a
     * version that is unsigned, signed by a key not among them, or badly
     * signed, before they write anything; see vms_signature_state. */
    const char *const *trusted_keys;
    size_t n_trusted_keys;
    /* The handle serves one operation (a command line's): over ssh:// its
     * last requests end the session too, which saves the close's round
     * trip.  An operation that follows opens the repository again. */
    bool one_operation;
};

typedef struct vms_client vms_client;

/* Makes a handle on REPO (a directory or an ssh:// URL; O may be NULL for the
 * defaults): resolves this client's user, host and cache, and touches no
 * repository yet, so it is quick and fails only on those.  The first
 * operation opens the repository (over ssh://: connects, checks the host key
 * and authenticates, reporting CONNECT events), and the handle keeps it open
 * for the next ones.  After a lost link or a cancel, the next operation opens
 * it again.  *OUT is the caller's, to close with vms_client_close. */
int vms_client_open(const char *repo, const struct vms_client_opts *o, vms_client **out,
                    fsp_error *err);
void vms_client_close(vms_client *c);
/* Cancels the operation running on C: it returns FSP_EK_CANCELLED
 * ("cancelled") within a second, whatever it waits for (an SSH link gone
 * silent, a scan, a copy, gc's wait for other users).  Any thread may call
 * it, and so may a signal handler (it is async-signal-safe).  An operation
 * that starts afterwards runs normally; with none running, it does nothing
 * that lasts.  The cancelled operation's SSH connection is closed (the next
 * operation opens a new one), and a checkout or check-in run again resumes
 * where it stopped. */
void vms_client_cancel(vms_client *c);
/* The REPO it was opened with; lives as long as the handle. */
const char *vms_client_repo(const vms_client *c);

/* Zstd levels 0 to 19: the size of the per-level segment counts below. */
#define VMS_STATS_LEVELS 20

struct vms_stats {
    uint32_t version;
    uint64_t image_size;
    uint64_t bytes_from_seeds, objects_from_seeds;
    uint64_t bytes_shared;     /* of those, blocks shared with a seed on the same
                                * filesystem (FICLONERANGE): not written */
    uint64_t bytes_fetched_raw, bytes_fetched_compressed, objects_fetched;
    uint64_t bytes_sent_raw, bytes_sent_compressed, objects_sent;
    uint64_t bytes_resumed;    /* already in place from an interrupted run */
    uint64_t bytes_zero;       /* zero or unallocated: nothing moved */
    /* checkout: image bytes the verification took on the writer's hash (it
     * wrote them from checked data), and those it read back from the image */
    uint64_t bytes_verified_while_writing, bytes_rescanned;
    uint64_t files_rehashed, files_trusted;
    uint64_t wire_in, wire_out; /* protocol bytes from and to a remote repository */
    /* SEGMENTs a remote repository sent, and those of them compressed with the
     * segment before as their prefix (a narrow link's choice) */
    uint64_t segments_fetched, segments_chained;
    uint64_t round_trips;      /* remote: the times the client waited for an answer */
    /* segments from or to a remote repository at each zstd level (the stored
     * frames count at their own level, VMS_STORE_LEVEL) */
    uint64_t segments_at_level[VMS_STATS_LEVELS];
    double seconds;
    uint8_t canonical_digest[FSP_SHA256_LEN];
    bool in_place;             /* checkout: OUT already held the version; nothing moved */
    bool already_recorded;     /* check-in: an interrupted run had recorded this very
                                * version; only its lease was left to release */
};

/* ---- serving a repository (vmsync-agent) -------------------------------------
 * Answers one client's requests (docs/protocol.md) read from IN_FD, replies
 * on OUT_FD, until the client hangs up.  Only repositories under ROOT are
 * served, and no error text shows ROOT.  USER stands for the client in leases
 * and the audit log: a lease is the client's only when it holds USER and the
 * host the client names. */
struct vms_serve_opts {
    const char *root;
    const char *user;
    bool read_only;     /* checkouts only */
    bool append_only;   /* adds versions, never forgets one */
    uint64_t cache_max; /* bytes of cached compressed segments; 0: no cache */
    unsigned idle_timeout; /* seconds without a word from the client that end the
                            * session (an idle one holds the repository open); 0: none */
    unsigned max_protocol; /* the newest protocol version spoken; 0: this library's */
    /* A reflector: when UPSTREAM (ssh://[user@]host[:port][/prefix]) is set,
     * ROOT is unused and the client's repository NAME is UPSTREAM/NAME,
     * served through a cache in REFLECT_DIR of at most REFLECT_MAX bytes
     * (objects and manifests, least recently used evicted).  Upstream
     * records this agent's key as the user, and "USER@CLIENT_HOST" as the
     * host.  With N_TRUSTED keys, versions they did not sign are refused. */
    const char *upstream;
    const char *reflect_dir;
    uint64_t reflect_max;
    const struct vms_remote_opts *upstream_opts; /* NULL: the defaults */
    const struct vms_public_key *trusted;
    size_t n_trusted;
};
struct vms_serve_stats {
    uint64_t requests, objects_sent, objects_received;
    uint64_t segments, segments_cached, segments_stored, raw_bytes_sent, segment_bytes_sent;
    uint64_t segments_chained; /* compressed with the segment before as their prefix */
    uint64_t segments_compressed, raw_bytes_compressed; /* compressed for this session */
    double compress_cpu; /* the CPU seconds those took */
    double link_rate;    /* the last GET's estimate of the link, wire bytes/s; 0: none */
    uint64_t segments_at_level[VMS_STATS_LEVELS]; /* segments sent at each zstd level */
    uint64_t wire_in, wire_out;
    uint64_t manifests_whole, manifests_delta; /* stored from PUT_MANIFEST, from a delta */
    uint64_t manifest_bytes_in; /* their DATA bytes, whole or delta */
    int last_level;
    uint64_t last_bwlimit; /* the rate the last GET asked, bytes/s; 0: none */
    char client_host[256];
};
int vms_serve(const struct vms_serve_opts *o, int in_fd, int out_fd, struct vms_serve_stats *stats,
              fsp_error *err);

/* Parses a size or rate: digits and an optional K, M or G (binary, either
 * case); a bare number is shifted by BARE_SHIFT (10: KiB, as rsync's
 * --bwlimit).  Not one: -EINVAL; too large for 64 bits: -ERANGE (FSP_EK_USAGE,
 * the message quoting S). */
int vms_parse_size(const char *s, unsigned bare_shift, uint64_t *out, fsp_error *err);
/* The lowest bandwidth limit: a 64 kbit/s line.  Slower, a segment outlasts
 * any sensible timeout, and a client could hold an agent pacing for days. */
#define VMS_BWLIMIT_MIN 8192u

/* ---- bandwidth windows -------------------------------------------------------
 * A window is "RATE [DAYS] [HH:MM-HH:MM]": RATE as --bwlimit takes it (at
 * least VMS_BWLIMIT_MIN) or "unlimited"; DAYS a comma-separated list of mon,
 * tue, ..., sun, ranges of them (mon-fri, sat-mon), weekdays, weekends or
 * daily (the default); the span in local time, FROM included and TO not,
 * crossing midnight when TO is earlier (22:00-06:00 on fri holds Friday night
 * and Saturday's small hours); the default is the whole day.  In a list the
 * first window that holds the time wins; none: unlimited. */
struct vms_bw_window {
    uint8_t days;       /* bit 0 Monday .. bit 6 Sunday */
    uint16_t from, to;  /* minutes after midnight, 0..1440 */
    uint64_t rate;      /* bytes/s; 0: unlimited */
};
/* Parses S into *OUT; not one: -EINVAL (FSP_EK_USAGE, quoting S). */
int vms_bw_window_parse(const char *s, struct vms_bw_window *out, fsp_error *err);
/* The rate of the first of the N windows W that holds WHEN (in the local time
 * zone, TZ); 0 when none does. */
uint64_t vms_bw_rate_at(const struct vms_bw_window *w, size_t n, time_t when);

/* Checks the name of an image about to be created: 1 to 255 of A-Z, a-z,
 * 0-9, '.', '_' and '-', not starting with '-' or '.'.  A bad one: -EINVAL
 * (FSP_EK_USAGE, the message naming the first bad character).  Names that
 * older versions stored stay readable: only import, and bundle apply of a
 * first version, check. */
int vms_image_name_check(const char *name, fsp_error *err);
/* Parses "NAME" or "NAME@N" (NAME shorter than LEN); VERSION 0 when absent.
 * A bad one: -EINVAL (FSP_EK_USAGE, the message quoting REF). */
int vms_parse_ref(const char *ref, char *name, size_t len, uint32_t *version, fsp_error *err);

int vms_init_repo(const char *path, fsp_error *err);

#define VMS_PUBLIC_KEY_LEN 32 /* an Ed25519 public key */
#define VMS_SIGNATURE_LEN 64  /* an Ed25519 signature */

/* A version of an image in a repository. */
struct vms_version {
    char image[256];
    uint32_t number;       /* 1, 2, ... within the image */
    uint32_t parent;       /* 0 for the first version */
    uint8_t manifest[FSP_SHA256_LEN];
    uint8_t digest[FSP_SHA256_LEN]; /* canonical image digest */
    uint64_t size;         /* image size */
    int64_t created;       /* Unix seconds */
    char message[1024];
    char user[128], host[256];
    bool is_signed;        /* false: recorded where the repository had no signing key */
    uint8_t signer[FSP_SHA256_LEN];      /* is_signed: the key's fingerprint */
    uint8_t signature[VMS_SIGNATURE_LEN]; /* is_signed: Ed25519 over vms_version_message */
};
typedef int (*vms_version_cb)(void *ctx, const struct vms_version *v);
/* Every version of NAME (of every image when NULL), oldest first. */
int vms_log(vms_client *c, const char *name, vms_version_cb cb, void *ctx, fsp_error *err);

/* ---- signed versions -----------------------------------------------------------
 * A repository may hold a signing key (Ed25519), made by vms_key_generate.
 * Where it does, every version recorded from then on is signed where it is
 * recorded (locally by the local backend, over ssh:// by the agent), and the
 * signature travels with the version.  The key's private half never leaves
 * the repository's folder.
 *
 * The signed message of a version, version 1 of its layout, all integers
 * little-endian and of fixed width:
 *   the 24 bytes "vmsync signed version 1\n",
 *   u16 length of the image name (1 to 255), then the name's bytes,
 *   u32 number, u32 parent (0 for a first version),
 *   the manifest id (32 bytes: the SHA-256 of the manifest file),
 *   the canonical image digest (32 bytes).
 * So a signature vouches for the manifest, the manifest for every object, and
 * the digest for the image rebuilt from them.  docs/signing.md says the same. */
#define VMS_VERSION_MESSAGE_MAX (24 + 2 + 255 + 4 + 4 + 2 * FSP_SHA256_LEN)

/* A public key as `vmsync key show` prints it and --trust reads it: one line
 * "vmsync-ed25519 BASE64 [COMMENT]", BASE64 the 32 raw bytes of the key. */
struct vms_public_key {
    uint8_t key[VMS_PUBLIC_KEY_LEN];
    uint8_t fingerprint[FSP_SHA256_LEN]; /* SHA-256 of KEY */
    char comment[256];                    /* "" when none */
};
#define VMS_KEY_LINE_MAX 400
#define VMS_FINGERPRINT_TEXT_LEN 52 /* "SHA256:" + 43 base64 digits + NUL, as OpenSSH writes */

/* V's signed message into OUT (at least VMS_VERSION_MESSAGE_MAX bytes); its
 * length, or 0 when V's image name is empty or over 255 bytes. */
size_t vms_version_message(const struct vms_version *v, uint8_t *out);
/* Whether SIGNATURE is KEY's signature of V's signed message (V's own
 * is_signed, signer and signature fields are not read). */
bool vms_signature_valid(const struct vms_public_key *key, const struct vms_version *v,
                         const uint8_t signature[VMS_SIGNATURE_LEN]);
/* "SHA256:..." into OUT, as OpenSSH writes fingerprints (base64, no padding). */
void vms_fingerprint_text(const uint8_t fingerprint[FSP_SHA256_LEN],
                          char out[VMS_FINGERPRINT_TEXT_LEN]);
/* The key line of K into OUT (VMS_KEY_LINE_MAX bytes), without a newline. */
void vms_public_key_line(const struct vms_public_key *k, char out[VMS_KEY_LINE_MAX]);
/* Parses a key line (a trailing newline allowed); a bad one is
 * FSP_EK_FORMAT, the message naming WHERE (a file name) and what is wrong. */
int vms_public_key_parse(const char *line, const char *where, struct vms_public_key *out,
                         fsp_error *err);
/* Reads PATH, a file whose first line that is not blank or a # comment is
 * a key line. */
int vms_public_key_load(const char *path, struct vms_public_key *out, fsp_error *err);

/* What a client can say of a version's signature. */
enum vms_signature_state {
    VMS_SIGNATURE_NONE = 0,   /* unsigned */
    VMS_SIGNATURE_UNTRUSTED,  /* signed by a key the client does not trust: not checked */
    VMS_SIGNATURE_TRUSTED,    /* signed by a trusted key, and the signature holds */
    VMS_SIGNATURE_BAD,        /* names a trusted key, and does not verify with it */
};
/* "unsigned", "untrusted", "trusted", "bad"; "unknown" for a value not in the enum. */
const char *vms_signature_state_name(enum vms_signature_state state);
/* Judges V's signature by C's trusted keys (struct vms_client_opts).  It
 * reads C's settings only, so any thread may call it while C runs an
 * operation. */
enum vms_signature_state vms_signature_state(const vms_client *c, const struct vms_version *v);

/* Makes C's repository's signing key, refusing (VMS_EK_CONFLICT) to replace
 * one unless FORCE; fills *OUT with its public half (the comment names the
 * repository's folder).  Local repositories only: a key is made on the server. */
int vms_key_generate(vms_client *c, bool force, struct vms_public_key *out, fsp_error *err);
/* The public half of C's repository's key; none is VMS_EK_NOTFOUND.  Over
 * ssh:// the agent sends it (the comment then names the repository as the
 * URL does); an agent older than keys ends the session as for a malformed
 * request. */
int vms_key_show(vms_client *c, struct vms_public_key *out, fsp_error *err);

/* ---- queries: images, leases, the audit log --------------------------------
 * Each calls CB once per row, in the order said, with a struct that, like
 * every string it points to, lives during the callback only: copy what you
 * keep.  A non-zero return from CB stops the query and is returned.  Names
 * are the catalog's bytes (print them with vms_put_name).  Each is one
 * operation on the client, over its connection; CB runs on the caller's
 * thread. */
struct vms_lease_info {
    const char *image;
    uint32_t version;        /* the version checked out */
    const char *user, *host; /* the holder: both together */
    int64_t since;           /* Unix seconds */
};
struct vms_image_info {
    const char *name;
    uint32_t latest;         /* the latest version's number */
    uint64_t size;           /* and its image size */
    int64_t created;         /* and when it was recorded */
    const struct vms_lease_info *lease; /* NULL when nobody holds it */
};
struct vms_audit_entry {
    int64_t at;              /* Unix seconds */
    const char *user, *host;
    const char *action;      /* "import", "checkout", "checkin", "export", "steal", "release",
                              * "apply" (a bundle's version, vms_bundle_apply; over
                              * ssh:// the agent records it as the check-in it is) */
    const char *image;       /* NULL when the entry names none */
    uint32_t version;
    const char *detail;      /* free text ("" when none); over ssh:// the agent keeps the
                              * last component of a path in it, never its directories */
};
typedef int (*vms_image_cb)(void *ctx, const struct vms_image_info *image);
typedef int (*vms_lease_cb)(void *ctx, const struct vms_lease_info *lease);
typedef int (*vms_audit_cb)(void *ctx, const struct vms_audit_entry *entry);
/* Every image, by name (bytewise), with its latest version and its lease. */
int vms_images(vms_client *c, vms_image_cb cb, void *ctx, fsp_error *err);
/* Every lease, by image name; NAME (may be NULL) keeps that image's lease
 * only, so CB is not called when nobody holds it (an unknown NAME is
 * VMS_EK_NOTFOUND). */
int vms_leases(vms_client *c, const char *name, vms_lease_cb cb, void *ctx,
               fsp_error *err);
/* The audit log, oldest first: entries about NAME only (NULL: all), from
 * SINCE on (Unix seconds; 0: from the start). */
int vms_audit_log(vms_client *c, const char *name, int64_t since, vms_audit_cb cb,
                  void *ctx, fsp_error *err);
/* Gives NAME's lease back when this session's user and host hold it, and
 * records "release" in the audit log; *RELEASED says whether there was one
 * (nobody's lease: 0 and false, nothing recorded).  Another holder's lease is
 * VMS_EK_CONFLICT naming that holder; an unknown NAME VMS_EK_NOTFOUND. */
int vms_release(vms_client *c, const char *name, bool *released, fsp_error *err);
/* "1700000000" (Unix seconds), "2026-12-01", "2026-12-01T10:00:00" (or with a
 * space for the T), or the same with "Z": all UTC, into *OUT (for SINCE
 * above); FSP_EK_USAGE when S is none of these. */
int vms_parse_time(const char *s, int64_t *out, fsp_error *err);

/* gc's figures add up: kept + dropped = before for objects (rows of the
 * index), kept + rewritten + removed = before for pack files, and kept + freed
 * = before for bytes (every file under packs/, manifests/, tmp/ and the caches
 * gc empties), each counted in the store before and after. */
struct vms_gc_stats {
    uint64_t objects_before, objects_kept, objects_dropped;
    uint64_t packs_before, packs_kept, packs_rewritten, packs_removed;
    uint64_t bytes_before, bytes_kept, bytes_freed;
};
/* Refuses (FSP_EK_CORRUPT) a repository that fails the quick check
 * (vms_check without objects; VMS_PROBLEM_LEASE and _SIGNATURE aside): deleting by an
 * incomplete picture loses data. */
int vms_gc(vms_client *c, struct vms_gc_stats *stats, fsp_error *err);
/* What vms_gc would do now, changing nothing: the same figures, counted from
 * the index and the live set (bytes_freed: the stored bytes of the objects it
 * would drop, the manifests no version uses, temporary files and caches; pack
 * headers aside).  Under the repository's shared lock, so it waits for no one.
 * Local repositories only, as gc. */
int vms_gc_dry_run(vms_client *c, struct vms_gc_stats *stats, fsp_error *err);

/* ---- what a repository holds (vmsync stats) ------------------------------------
 * From the catalog, the object index and the manifests; no pack is read.
 * Local and ssh:// repositories (the agent counts). */
struct vms_repo_stats {
    uint64_t images, versions;
    uint64_t objects, raw_bytes, stored_bytes; /* the index: unique objects */
    uint64_t packs, pack_bytes;                /* pack files, as the catalog records them */
    uint64_t referenced_bytes; /* the raw bytes all versions' manifests name, repeats
                                * included (zeros and free space are not objects) */
    struct vms_gc_stats gc;    /* what gc would do now (vms_gc_dry_run) */
};
/* One image's part.  NAME lives for the call. */
struct vms_image_usage {
    const char *name;
    uint32_t versions;
    uint64_t unique_objects, unique_raw, unique_stored; /* stored objects no other image uses */
    uint64_t shared_objects, shared_raw; /* stored objects it uses that another image uses too */
};
typedef int (*vms_image_usage_cb)(void *ctx, const struct vms_image_usage *u);
/* Fills *OUT and calls CB (may be NULL) once per image, by name. */
int vms_stats(vms_client *c, struct vms_repo_stats *out, vms_image_usage_cb cb, void *ctx,
              fsp_error *err);

/* ---- forgetting versions ----------------------------------------------------
 * A forgotten version's record goes from the catalog at once; its manifest and
 * the objects no other version uses go at the next gc.  Two versions always
 * stay: an image's latest (the next check-in's parent; it also keeps version
 * numbers from being given twice, so an image is never forgotten whole), and a
 * leased one (its holder's cached manifest names objects gc would drop).  Those
 * are refused with VMS_EK_CONFLICT naming why and who.  Signatures are per
 * version: nothing else is re-signed.  An agent started with --read-only or
 * --append-only refuses (VMS_EK_DENIED). */

/* Forgets NAME@VERSION and writes "forget" to the audit log; DRY_RUN makes
 * the same checks and changes nothing.  Unknown: VMS_EK_NOTFOUND. */
int vms_forget(vms_client *c, const char *name, uint32_t version, bool dry_run, fsp_error *err);

/* A retention policy: each image keeps its KEEP_LAST newest versions, the
 * newest version of each of the KEEP_DAILY newest days that have versions,
 * and the newest of each of the KEEP_MONTHLY newest months likewise (days and
 * months in UTC, as vmsync prints times); 0 keeps none by that rule. */
struct vms_retention {
    uint32_t keep_last, keep_daily, keep_monthly;
};
/* Why a version is kept: any of these bits, or 0 when it is forgotten. */
enum {
    VMS_KEEP_LAST = 1u << 0,
    VMS_KEEP_DAILY = 1u << 1,
    VMS_KEEP_MONTHLY = 1u << 2,
    VMS_KEEP_LATEST = 1u << 3, /* the image's latest: always */
    VMS_KEEP_LEASED = 1u << 4, /* checked out: always */
};
/* The rules of P over one image's versions, CREATED[0..n) (Unix seconds,
 * oldest version first): sets WHY[i] to the VMS_KEEP_* bits that keep version
 * i (VMS_KEEP_LATEST for the last), 0 for one the policy forgets.  Pure. */
void vms_retention_select(const struct vms_retention *p, const int64_t *created, size_t n,
                          unsigned *why);
/* One version prune looked at: KEPT the VMS_KEEP_* bits, 0 when forgotten (or,
 * in a dry run, when it would be).  V lives for the call. */
typedef int (*vms_prune_cb)(void *ctx, const struct vms_version *v, unsigned kept);
/* Applies P to NAME's versions (every image's when NULL), oldest first per
 * image, calling CB (may be NULL) for each; DRY_RUN forgets nothing.  Stops at
 * the first refusal, with what went before it forgotten. */
int vms_prune(vms_client *c, const char *name, const struct vms_retention *p, bool dry_run,
              vms_prune_cb cb, void *ctx, fsp_error *err);

/* ---- checking a repository (fsck) --------------------------------------------
 * The quick check: the catalog (SQLite's quick_check, and its own rules:
 * versions numbered 1, 2, ... each with its parent, leases on existing
 * versions, index rows in existing packs of the size the catalog records),
 * every version's manifest (present, its SHA-256 its name, every record
 * readable), every object a version needs (vms_manifest_needed) indexed, and
 * the signature of every version the repository's key signed.
 * With OBJECTS, SQLite's full integrity_check, and every indexed object is
 * read, decompressed and hashed.  Local repositories only: over ssh:// it is
 * refused (run it on the server). */
enum vms_problem_kind {
    VMS_PROBLEM_CATALOG = 1, /* SQLite's check, or a row that breaks the catalog's rules */
    VMS_PROBLEM_MANIFEST,    /* a version's manifest is missing, damaged or unreadable */
    VMS_PROBLEM_MISSING,     /* an object a version needs is not in the index */
    VMS_PROBLEM_PACK,        /* a pack file is missing, or not the size the catalog says */
    VMS_PROBLEM_OBJECT,      /* a stored object does not read back (OBJECTS only) */
    VMS_PROBLEM_VERSION,     /* a version that cannot be exported, after its other problems */
    VMS_PROBLEM_LEASE,       /* a lease on an image or version that does not exist: reported,
                              * but harmless to the content, so gc goes on */
    VMS_PROBLEM_SIGNATURE,   /* a version whose signature does not verify with the
                              * repository's key, or a signature record of the wrong
                              * shape: reported, and gc goes on, since what it keeps is
                              * the same; a trusting client refuses that version */
};
const char *vms_problem_name(enum vms_problem_kind kind); /* "catalog", "manifest", ...,
                                                          * "lease", "signature" */

/* One problem; the pointers are valid during the callback only, and are NULL
 * when the problem concerns no version, object or pack. */
struct vms_problem {
    enum vms_problem_kind kind;
    const char *image;     /* with VERSION */
    uint32_t version;
    const uint8_t *object; /* FSP_SHA256_LEN bytes */
    const char *pack;      /* a pack file's name */
    const char *detail;    /* what is wrong, one line */
};
typedef int (*vms_problem_cb)(void *ctx, const struct vms_problem *p);
/* One line: "KIND: IMAGE@VERSION, object HEX, PACK: DETAIL" (the parts there
 * are), names as they are: print it with vms_put_text. */
void vms_problem_describe(const struct vms_problem *p, char *out, size_t len);

struct vms_check_opts {
    bool objects;          /* read and hash every stored object too */
};
struct vms_check_stats {
    uint64_t images, versions, manifests_read, objects_needed, objects_indexed, packs;
    uint64_t objects_read, bytes_read; /* OBJECTS: as stored */
    uint64_t problems;
    double seconds;
};
/* Calls CB (may be NULL) for each problem found, and returns 0 when the check
 * ran, whatever it found (STATS->problems counts it; a catalog SQLite cannot
 * read is one, and ends the check).  An error (I/O, memory, a cancel from the
 * client's event callback) stops the check after the problems reported so
 * far.  A non-zero return from CB stops it too, and is returned. */
int vms_check(vms_client *c, const struct vms_check_opts *o, vms_problem_cb cb,
              void *ctx, struct vms_check_stats *stats, fsp_error *err);

struct vms_import_opts {
    const char *image, *name, *message;
    bool keep_volatile; /* store pagefile, hiberfil and swap contents too */
    bool new_image;     /* NAME must not exist: recorded as version 1, or refused
                         * (VMS_EK_CONFLICT) in the same step that records, so two
                         * clients racing for one new name cannot both win */
};
int vms_import(vms_client *c, const struct vms_import_opts *o,
               struct vms_stats *stats, fsp_error *err);

/* Asked when someone else holds the lease a checkout needs.  HELD lives
 * during the call only; it runs on the checkout's thread and may block (a
 * dialog).  Non-zero takes the lease over, which the audit log records; 0
 * refuses, and the checkout fails with VMS_EK_CONFLICT naming the holder. */
typedef int (*vms_steal_cb)(void *ctx, const struct vms_lease_info *held);

struct vms_checkout_opts {
    const char *name;          /* image name */
    uint32_t version;          /* 0: the latest */
    const char *out;
    const char *format;        /* "raw" or "qcow2" */
    const char *const *seeds;  /* images; for a plan only, also manifest files
                                * (vms_manifest_create) of images another laptop holds,
                                * which a run refuses (FSP_EK_USAGE) */
    size_t n_seeds;
    bool keep_volatile;        /* write pagefile/swap contents the repository holds
                                * (see import), instead of zeros */
    bool export_only;          /* no lease, no audit of a checkout */
    bool force;                /* replace OUT even when vmsync did not write it, or it
                                * holds changes that no version has */
    bool full_verify;          /* scan the whole rebuilt image, rather than only what
                                * was not written from checked data */
    vms_steal_cb steal;        /* NULL: another's lease is refused */
    void *steal_ctx;
};
/* vms_checkout_plan then vms_checkout_run. */
int vms_checkout(vms_client *c, const struct vms_checkout_opts *o,
                 struct vms_stats *stats, fsp_error *err);

/* ---- pre-copy ------------------------------------------------------------------
 * While the laptop is online, NAME's latest version is rebuilt into the
 * client's cache (CACHE/prefetch/), as an export: no lease, and audited as
 * one only when it brought the version (not when it had it already).  Every
 * later checkout or export of NAME from the same repository takes that image
 * as one more seed, so that only what came since travels then.  The next
 * prefetch builds the new version from the last one; an interrupted one
 * resumes.  While the user snoozes prefetching (vms_prefetch_snooze), or
 * while another prefetch of NAME runs, it does nothing and says so.  Fails as
 * an export fails, and before writing with FSP_EK_IO -ENOSPC when it would
 * leave less than a tenth of the cache's filesystem free.  The repository is
 * known by its canonical URL: no user, no default port, no trailing slash. */
struct vms_prefetch_opts {
    const char *name;
    const char *const *seeds; /* images, as vms_checkout_opts's */
    size_t n_seeds;
};
struct vms_prefetch_result {
    char image[4096];      /* the prefetched image's path */
    int64_t snoozed_until; /* not 0: snoozed until then (seconds since the epoch),
                            * and nothing was done */
    bool running_elsewhere; /* another prefetch of NAME runs: nothing was done */
};
int vms_prefetch(vms_client *c, const struct vms_prefetch_opts *o, struct vms_prefetch_result *r,
                 struct vms_stats *stats, fsp_error *err);
/* No prefetch of this client's does anything before UNTIL (seconds since the
 * epoch; 0 or a time gone by: from now on again).  Touches no repository. */
int vms_prefetch_snooze(vms_client *c, int64_t until, fsp_error *err);
/* Until when this client's prefetching is snoozed (seconds since the epoch),
 * or 0.  Touches no repository, and may run beside the handle's operation. */
int64_t vms_prefetch_snoozed_until(vms_client *c);

/* ---- a checkout as a plan, then a run of it ------------------------------------
 * The plan does all a checkout learns before it writes: it loads the version's
 * manifest and the seeds (scanning those not cached), matches the seeds'
 * objects by content, counts what an interrupted checkout to OUT left in
 * place, judges an existing OUT (refused as the run would refuse it, or
 * already holding the version), and asks the repository, in one request,
 * for the stored size of every object left to fetch.  It writes nothing and
 * takes no lease.  A client shows the plan, then runs it or frees it.
 *
 * The plan copies what it needs of O (names, paths, seeds): O may go once
 * vms_checkout_plan returns.  Between calls a plan holds no image open, so
 * it may be made on one thread and run on another, on the same client (one
 * operation at a time, as always); the client's connection carries both. */
typedef struct vms_plan vms_plan;

struct vms_plan_figures {
    uint32_t version;
    uint64_t image_size;
    uint8_t canonical_digest[FSP_SHA256_LEN];
    uint64_t bytes_from_seeds, objects_from_seeds; /* read from seeds, each object once */
    uint64_t bytes_resumed;        /* left in place by an interrupted checkout to OUT */
    uint64_t bytes_zero;           /* zero or unallocated: nothing moves */
    uint64_t bytes_to_fetch_raw;   /* from the repository, as written to OUT */
    uint64_t bytes_to_fetch_stored; /* the same objects as the repository stores them */
    uint64_t objects_to_fetch;
    bool in_place;                 /* OUT holds the version already: nothing moves */
    double seconds;                /* planning took */
};

/* *OUT is the caller's, for vms_plan_free.  Fails as vms_checkout fails
 * before writing: no such version, an OUT that may not be replaced, a seed
 * that cannot be read, an object the repository lacks (FSP_EK_CORRUPT). */
int vms_checkout_plan(vms_client *c, const struct vms_checkout_opts *o,
                      vms_plan **out, fsp_error *err);
/* Owned by the plan, valid until vms_plan_free; a run does not change it. */
const struct vms_plan_figures *vms_plan_figures(const vms_plan *p);

/* An object the run fetches from the repository; HASH (FSP_SHA256_LEN bytes)
 * is valid during the callback only. */
struct vms_plan_object {
    const uint8_t *hash;
    uint32_t length, stored; /* raw, and as the repository stores it */
};
typedef int (*vms_plan_object_cb)(void *ctx, const struct vms_plan_object *obj);
/* Calls CB for each object to fetch, each once; a non-zero return from CB
 * stops the walk and is returned, else 0. */
int vms_plan_objects(const vms_plan *p, vms_plan_object_cb cb, void *ctx);

/* Seconds to fetch the plan at BYTES_PER_SECOND: its stored bytes over the
 * rate.  Not counted: the protocol's framing, a transfer recompressed at
 * another level, reading seeds, writing OUT and the final verify scan.
 * 0 when nothing is to fetch or the rate is 0. */
double vms_plan_seconds(const vms_plan *p, uint64_t bytes_per_second);

/* Runs the plan without planning again: takes the lease, judges OUT again
 * when it changed since the plan, copies from the seeds, fetches the rest,
 * verifies, installs OUT, writes the audit log, and records OUT.  STATS
 * counts what actually moved: what the figures say, unless a seed changed
 * since the plan (its objects are fetched instead) or OUT did.  The version
 * is the plan's, even when a newer one was recorded since.  A plan that
 * failed in its run may be run again, and resumes; one whose OUT held the
 * version and no longer does fails (VMS_EK_CONFLICT): make a new plan. */
int vms_checkout_run(vms_client *c, vms_plan *p, struct vms_stats *stats,
                     fsp_error *err);
void vms_plan_free(vms_plan *p); /* NULL is fine */

/* With DRY_RUN the check-in scans IMAGE under this host's lease and asks the
 * repository which of its objects it lacks, and stops there: nothing is
 * sent or recorded, and the lease stays.  STATS then counts what a real run
 * would send: objects_sent and bytes_sent_raw (before compression; the
 * compressed figure stays 0), files_rehashed the files it had to read. */
struct vms_checkin_opts {
    const char *name;
    const char *image;
    const char *message;
    bool full_rescan;          /* reread every file, trust nothing */
    bool dry_run;
};
int vms_checkin(vms_client *c, const struct vms_checkin_opts *o,
                struct vms_stats *stats, fsp_error *err);

/* Scans IMAGE and compares its canonical digest with NAME@VERSION's; *SAME
 * tells.  The digests are returned for the caller to show. */
int vms_verify(vms_client *c, const char *name, uint32_t version, const char *image,
               bool *same, uint8_t expected[FSP_SHA256_LEN], uint8_t actual[FSP_SHA256_LEN],
               fsp_error *err);

/* NAME@VERSION's record into *OUT (VERSION 0: the latest), as the repository
 * has it: judge its signature with vms_signature_state. */
int vms_version_lookup(vms_client *c, const char *name, uint32_t version, struct vms_version *out,
                       fsp_error *err);

/* Copies NAME@VERSION's manifest to DEST. */
int vms_fetch_manifest(vms_client *c, const char *name, uint32_t version,
                       const char *dest, fsp_error *err);

/* ---- bundles: a version in one file, for laptops off the network ------------
 * A bundle (docs/bundle.md) holds one version of an image, its manifest and
 * the objects its receiver lacks.  vms_client_open on a bundle file (known by
 * its content, whatever its name), or on "-" for one read from standard input
 * (spooled to an unnamed temporary file as it is read), gives a read-only
 * repository: checkout
 * (which then takes no lease and writes no audit entry, like an export),
 * verify, log, images and vms_bundle_show work on it; an operation that
 * writes fails with FSP_EK_USAGE "FILE: ...: the repository is read-only".
 * Opening it reads the whole file once and checks every member and every
 * object's hash (FSP_EK_CORRUPT or FSP_EK_FORMAT naming the member). */
#define VMS_BUNDLE_SPLIT_MAX 0xffffffffull /* 4 GiB less a byte: the most a FAT32 file holds */
struct vms_bundle_create_opts {
    const char *name;          /* the image */
    uint32_t version;          /* 0: the latest */
    const char *out;           /* the bundle file, written whole or not at all; "-": stdout */
    const char *const *have;   /* what the receiver holds: images, or manifest files that
                                * vms_manifest_create wrote; their objects are left out */
    size_t n_have;
    uint32_t base;             /* a version of NAME the receiver holds (0: none): its
                                * objects are left out too */
    int level;                 /* zstd level 1..19 of the objects; 0: 19 */
    bool force;                /* replace an existing OUT and OUT.002, ... (else
                                * VMS_EK_CONFLICT, nothing written) */
    uint64_t split;            /* write parts of at most this many bytes (1 MiB to
                                * VMS_BUNDLE_SPLIT_MAX): OUT, OUT.002, OUT.003, ...; a
                                * reader given OUT takes them all.  0: one file */
};
struct vms_bundle_stats {
    uint32_t version;
    uint64_t objects, bytes_raw;       /* objects written, and their bytes */
    uint64_t objects_held, bytes_held; /* left out: the receiver holds them */
    uint64_t bytes_written;            /* the bundle's size */
    double seconds;
};
/* Writes NAME@VERSION of C's repository (any kind) as a bundle: the version,
 * its manifest, and every object its image needs that no HAVE image or BASE
 * version holds.  HAVE images are scanned as a checkout scans its seeds
 * (VMS_PHASE_SCAN_SEED; the same cache), and the objects are read from the
 * repository (VMS_PHASE_FETCH, bytes). */
int vms_bundle_create(vms_client *c, const struct vms_bundle_create_opts *o,
                      struct vms_bundle_stats *stats, fsp_error *err);

/* ---- publishing for web servers (docs/web.md) ----------------------------------
 * vms_publish writes every version of C's repository (a local folder: run it
 * on the server) into DIR as a static tree that any web server or CDN can
 * serve read-only; `vmsync checkout https://host/path NAME` reads it.  DIR
 * may hold an earlier publish: only new files are added (manifests, one new
 * pack and its index), every old one is left byte for byte, and the
 * top-level index is renamed into place last, so a reader sees the old tree
 * or the new one.  Versions keep their signatures. */
struct vms_publish_stats {
    uint64_t versions;           /* in the tree */
    uint64_t manifests_written;  /* new manifest files */
    uint64_t packs_written;      /* 0 or 1 */
    uint64_t objects_written, bytes_written; /* in the new pack, as stored */
    double seconds;
};
int vms_publish(vms_client *c, const char *dir, struct vms_publish_stats *stats, fsp_error *err);

struct vms_bundle_info {
    uint32_t format;                   /* docs/bundle.md's format version */
    const struct vms_version *version; /* the version it carries */
    bool is_signed;                    /* VERSION carries its signature */
    uint32_t base;                     /* the receiver must hold NAME@BASE (0: none) */
    const uint8_t (*held)[FSP_SHA256_LEN]; /* and images of these canonical digests */
    size_t n_held;
    uint64_t objects, bytes_raw;       /* the objects it holds */
    uint64_t object_members, bytes_stored; /* in how many members, of how many bytes */
    uint64_t manifest_bytes;
    uint64_t file_bytes;               /* the bundle's size */
};
/* INFO and all it points to live during the call only. */
typedef int (*vms_bundle_info_cb)(void *ctx, const struct vms_bundle_info *info);
/* Calls CB once with what C's bundle holds and needs; C opened on anything
 * but a bundle: FSP_EK_USAGE "REPO: not a bundle". */
int vms_bundle_show(vms_client *c, vms_bundle_info_cb cb, void *ctx, fsp_error *err);

/* Adds the version that BUNDLE (a bundle file) carries to C's repository (a
 * branch server, a second site; local or ssh://), with check-in's rule: the
 * version's parent must be the image's latest version (0: a new image), else
 * VMS_EK_CONFLICT names the newer one and nothing is recorded.  The objects
 * the repository lacks come from the bundle, and one that neither holds is
 * FSP_EK_CORRUPT naming it, before anything is stored.  With trusted keys
 * (vms_client_opts.trusted_keys), a bundle whose version they did not sign
 * well is VMS_EK_UNTRUSTED naming BUNDLE, before anything is written (see
 * vms_signature_state); without, any bundle that is whole is taken.  The
 * repository signs the version it records with its own key, when it has
 * one.  STATS: the version recorded, objects_sent and bytes_sent_raw (what
 * the bundle added), the digest; already_recorded when the repository holds
 * that very version.
 * The version's digest and size must be its manifest's, else FSP_EK_CORRUPT
 * naming the bundle's version member.  It is recorded as the check-in of the
 * user and host the bundle's record names, through a second handle opened
 * as them (over ssh://, the agent's user at that host): a lease on the image
 * held by anyone else is VMS_EK_CONFLICT, theirs is released once the
 * version is recorded.  The audit entry is C's, naming them
 * (docs/bundle.md, "Applying a bundle"). */
int vms_bundle_apply(vms_client *c, const char *bundle, struct vms_stats *stats, fsp_error *err);

/* A check-in on a laptop that cannot reach its repository: scans IMAGE (which
 * vmsync checked out, so that its record names NAME and the version it
 * holds) and writes to OUT (a file, written whole or not at all; an
 * existing one is VMS_EK_CONFLICT) a bundle of the next version: its parent
 * that version, IMAGE's manifest, and the objects the parent's manifest
 * lacks, read back from IMAGE.  The parent's manifest is taken from C's
 * cache, where the checkout left it; C opens no repository (any REPO will
 * do for vms_client_open).  At the repository, vms_bundle_apply records it,
 * refused if another check-in won.  STATS: the version it carries,
 * objects_sent and bytes_sent_raw (its objects), bytes_sent_compressed (the
 * bundle's size), the digest.  The lease stays as it is. */
struct vms_checkin_bundle_opts {
    const char *name, *image, *message;
    const char *out;
};
int vms_checkin_to_bundle(vms_client *c, const struct vms_checkin_bundle_opts *o,
                          struct vms_stats *stats, fsp_error *err);

/* ---- fleets: predicting and scheduling a rollout -------------------------------
 * A fleet file (FLEET.json, docs/fleet.md) names the repository and the
 * version to roll out, the server's uplink, the branches (their link to the
 * server, a reflector or not, its LAN) and the laptops (their branch, link,
 * online hours, and what they hold: versions of the repository, manifest
 * files of their images, or for a simulation the bytes they lack).  The
 * planner measures what each laptop lacks with the checkout's own plan
 * (vms_checkout_plan, its seeds the manifests of what it holds), simulates
 * the links (a flow model: shared links divide their rate fairly among the
 * transfers on them; each transfer first pays VMS_FLEET_HANDSHAKE_RTTS round
 * trips; a laptop moves bytes only in its online hours) and searches a
 * schedule: reflectors filled ahead of time, laptops ranked, and how many of
 * a branch at once; it is never worse than everyone at once, which it
 * simulates too.  The file is hostile input: bounded, strictly parsed, an
 * unknown key refused, the message naming the file, line and what. */
#define VMS_FLEET_LAPTOPS_MAX 20000
#define VMS_FLEET_BRANCHES_MAX 1000
#define VMS_FLEET_SEEDS_MAX 16      /* versions and manifests one laptop holds */
typedef struct vms_fleet vms_fleet;

struct vms_fleet_laptop {
    const char *name, *branch;
    bool measured;            /* its bytes come from the plan of its seeds, not from the file */
    bool via_reflector;       /* its branch has a reflector: it fetches over the LAN */
    bool via_bundle;          /* its branch is offline: no link carries it, and its
                               * start and ready are 0 */
    uint64_t bytes;           /* what travels to it, as the repository stores it */
    uint64_t bytes_raw, objects, bytes_from_seeds; /* measured only, else 0 */
    uint32_t order;           /* the schedule's rank: 1 starts first */
    double start, ready;      /* the schedule: seconds from the rollout's start */
    double ready_all_at_once; /* everyone at once */
    const char *const *run;   /* the command that rolls it out ("run"), NULL-terminated; NULL: none */
};
struct vms_fleet_branch {
    const char *name;
    bool reflector;
    bool offline;             /* no link: a bundle carries the version there */
    uint64_t bundle_bytes;    /* offline: its laptops' objects, each once, as stored */
    size_t laptops;
    uint64_t upstream_bytes;  /* over its link: a reflector's union of its laptops' needs,
                               * once; else the sum of its laptops' */
    uint64_t lan_bytes;       /* a reflector's to its laptops */
    uint32_t concurrency;     /* the schedule's laptops at once; 0: all of them */
    double reflector_ready;   /* a reflector holds the union (the schedule); else 0 */
    double ready, ready_all_at_once; /* its last laptop is ready */
    const char *const *warm;  /* the command that fills its reflector ("warm"), NULL-terminated;
                               * NULL: none */
};
struct vms_fleet_report {
    const char *image;
    uint32_t version;         /* the version rolled out (resolved when 0 was asked) */
    const struct vms_fleet_laptop *laptops;
    size_t n_laptops;
    const struct vms_fleet_branch *branches;
    size_t n_branches;
    uint64_t server_bytes;    /* over the server's uplink (the same either way) */
    double makespan, makespan_all_at_once; /* until every laptop is ready, in seconds */
    const char *ranking;      /* "window-first" (shortest online hours, then largest),
                               * "largest-first", or "all-at-once" when nothing beat it */
    unsigned simulations;     /* the schedules tried */
};
/* Reads PATH (vms_fleet_parse); *OUT is the caller's, for vms_fleet_free. */
int vms_fleet_load(const char *path, vms_fleet **out, fsp_error *err);
/* TEXT (LEN bytes) as FLEET.json; WHERE names it in messages, and its folder
 * is where relative manifest paths start (NULL: the current one). */
int vms_fleet_parse(const char *text, size_t len, const char *where, const char *dir,
                    vms_fleet **out, fsp_error *err);
/* The file's "repository" (NULL: none), and whether a laptop needs it: one
 * whose seeds are to be measured. */
const char *vms_fleet_repository(const vms_fleet *f);
bool vms_fleet_needs_repository(const vms_fleet *f);
/* Measures, on C's repository, each laptop given by its seeds: the version's
 * record, then a checkout plan per laptop whose seeds are the manifests of
 * the versions it holds (fetched once each into a temporary folder, removed
 * after) and its manifest files; and per reflector the union of its
 * laptops' objects.  Nothing is written to the repository. */
int vms_fleet_measure(vms_fleet *f, vms_client *c, fsp_error *err);
/* Simulates and schedules F (measured first, when a laptop needs it); the
 * report lives until vms_fleet_free. */
int vms_fleet_plan(vms_fleet *f, const struct vms_fleet_report **out, fsp_error *err);
/* The rollout starts SECOND seconds after local midnight (0 to 86399), not
 * at the file's "start": vmsync fleet run plans from now. */
void vms_fleet_start_at(vms_fleet *f, double second);
/* Seconds from T (seconds after the rollout's start) until laptop I of the
 * report comes online: 0 when it is online then. */
double vms_fleet_until_online(const vms_fleet *f, size_t i, double t);
/* Writes the bundle (vms_bundle_create) that carries the version to offline
 * branch BRANCH (its index in the report) into OUT: every object that not
 * all of its laptops hold, the versions and manifest files held by every one
 * of them being left out (the versions' manifests fetched into a temporary
 * folder, removed after). */
int vms_fleet_bundle(vms_fleet *f, vms_client *c, size_t branch, const char *out,
                     struct vms_bundle_stats *stats, fsp_error *err);
void vms_fleet_free(vms_fleet *f); /* NULL is fine */

/* ---- the settings file ------------------------------------------------------
 * ~/.config/vmsync/config ($XDG_CONFIG_HOME/vmsync/config when set), the file
 * that vmsync-gtk writes, and /etc/vmsync/vmsync.conf, the system file (see
 * vms_config_load_all); both it and the vmsync command read them.  Format:
 *
 *   # comments and blank lines are ignored
 *   [repository]
 *   url = /srv/vmsync                  a directory or ssh://[user@]host[:port]/path
 *   identity = /home/me/.ssh/id_vmsync optional: the key file for ssh://
 *   name = office                      optional: REPO may then be written "office"
 *   bwlimit = 2M                       optional: as --bwlimit, unless it is given
 *   timeout = 120                      optional: as --timeout, unless it is given
 *
 *   [seeds]
 *   folder = /var/lib/images           folders where local images are looked for
 *
 *   [trust]                            keys whose signatures a client trusts (as
 *   key = /etc/vmsync/office.pub       --trust does): checkout and export then
 *                                      refuse versions they did not sign
 *
 *   [defaults]
 *   repository = office                the REPO of commands that leave it out
 *                                      (after -R and $VMSYNC_REPO)
 *
 *   [bandwidth]                        windows of the rate (vms_bw_window_parse),
 *   limit = 2M weekdays 08:00-18:00    first match wins, none: unlimited; a
 *   limit = unlimited                  repository's bwlimit and --bwlimit beat them
 *
 *   [checkout]                         a checkout the window made, for its check-in
 *   repository = /srv/vmsync           the url of its [repository]
 *   image = desk
 *   file = /home/me/desk.img           the file that holds it (an absolute path)
 *
 * Each [repository] section is one repository; keys are `name = value`, the
 * value running to the end of the line, blanks around it dropped.  An
 * unknown section or key is an error naming the file and line, so that a
 * typo is never silently ignored.  Values may not hold a newline.  A
 * [checkout] needs all three keys; one repository and image has one record,
 * the newest checkout's. */
struct vms_config_repo {
    char *name;     /* NULL: none; else [A-Za-z0-9._-], not "." nor "..", one per file */
    char *url;
    char *identity; /* NULL: ssh-agent, then ~/.ssh/id_* */
    uint64_t bwlimit; /* bytes/s, at least VMS_BWLIMIT_MIN; 0: none given */
    int timeout;      /* seconds, 1..86400; 0: none given */
    bool system;      /* from the system file: vms_config_save leaves it out */
};

struct vms_config_checkout {
    char *repo, *image, *file;
};

struct vms_config {
    struct vms_config_repo *repos;
    size_t n_repos;
    char **seed_folders;
    size_t n_seed_folders;
    struct vms_config_checkout *checkouts;
    size_t n_checkouts;
    char **trusted_keys; /* [trust] key: public key files (vms_public_key_load) */
    size_t n_trusted_keys;
    char **bw_limits;         /* [bandwidth] limit: windows, checked, in order */
    size_t n_bw_limits;
    char *default_repo;       /* [defaults] repository: a name or a location; NULL: none */
    bool default_repo_system; /* it came from the system file */
    struct vms_config *system; /* vms_config_load_all: the system file as read, whose
                                * seeds and keys vms_config_save leaves out; else NULL */
};

/* The file's path into BUF: $XDG_CONFIG_HOME/vmsync/config, else
 * $HOME/.config/vmsync/config.  Neither set, or too long: -ENOENT. */
int vms_config_default_path(char *buf, size_t len, fsp_error *err);
/* Reads PATH into *OUT (the caller's, for vms_config_free).  A missing file is an
 * empty configuration, not an error. */
int vms_config_load(const char *path, struct vms_config **out, fsp_error *err);
/* The system file: $VMSYNC_SYSTEM_CONFIG when set (for tests), else
 * /etc/vmsync/vmsync.conf.  A static string or the environment's. */
const char *vms_config_system_path(void);
/* Reads the system file SYSTEM_PATH and the user's USER_PATH (either may be
 * missing) into one view *OUT: the user's default repository wins; a user's
 * [repository] of the same name, or else of the same url, replaces the
 * system's whole; seeds, keys and other repositories are the union, the
 * user's first.  Entries from the system file are marked so that
 * vms_config_save, writing the user's file, leaves them out.  A file that
 * does not parse is an error naming it and its line. */
int vms_config_load_all(const char *system_path, const char *user_path, struct vms_config **out,
                        fsp_error *err);
/* The repository named NAME (its `name` key); NULL when none is. */
const struct vms_config_repo *vms_config_find_repo(const struct vms_config *c, const char *name);
/* Writes C to PATH atomically (a temporary file renamed over it), creating
 * its folder.  Comments of the old file are not kept.  Entries that came
 * from the system file (vms_config_load_all) are left out: a repository
 * marked system, the system's default, and the seed folders, windows and
 * keys that the system file lists. */
int vms_config_save(const struct vms_config *c, const char *path, fsp_error *err);
/* Adds URL (with IDENTITY, may be NULL) unless a repository with that URL is
 * there; *ADDED says which.  A value holding a newline is -EINVAL. */
int vms_config_add_repo(struct vms_config *c, const char *url, const char *identity, bool *added,
                 fsp_error *err);
int vms_config_add_seed_folder(struct vms_config *c, const char *folder, fsp_error *err);
/* Records that IMAGE of the repository at REPO is checked out to FILE,
 * replacing an older record of the same REPO and IMAGE.  A value holding a
 * newline, or a blank at either end, is -EINVAL. */
int vms_config_set_checkout(struct vms_config *c, const char *repo, const char *image, const char *file,
                     fsp_error *err);
/* The record of IMAGE of REPO; NULL when there is none. */
const struct vms_config_checkout *vms_config_find_checkout(const struct vms_config *c, const char *repo,
                                             const char *image);
void vms_config_free(struct vms_config *c); /* NULL is fine */


#ifdef __cplusplus
}
#endif
#endif
