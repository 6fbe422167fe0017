/* libvmsync: manifests, image comparison, and the repository engine (import,
 * checkout, checkin, gc, check, and the agent's side of ssh://).  Errors
 * follow fsparse's convention: 0 or a negative errno, with the message in the
 * caller's fsp_error; messages hold names raw, so print them with
 * vms_put_text.  Nothing here prints except the JSON printer and the name
 * writers (vms_put_*), which write where they are told. */
#ifndef VMSYNC_H
#define VMSYNC_H

#include "fsparse.h"

#define VMSYNC_VERSION "0.2.0"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

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

/* Streams a manifest file into SINK, checking every record. */
int vms_manifest_read(const char *path, const struct fsp_sink *sink, fsp_error *err);
/* True when PATH starts with the manifest magic. */
bool vms_is_manifest(const char *path);

/* Reads an image (scanning it) or a manifest file into SINK. */
int vms_load(const char *path, uint32_t scan_flags, const struct fsp_sink *sink, fsp_error *err);

/* Calls CB for every object a manifest's image is made of, as the scan hands
 * them to fsp_sink.object: each hashed stream under FSP_CHUNK_MIN_STREAM whole,
 * each chunk of larger streams, each RAW piece; volatile streams included,
 * though a repository holds their objects only when imported with
 * --keep-volatile.  The same hash may come more than once. */
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
vms_json *vms_json_new(FILE *out, uint32_t flags);
const struct fsp_sink *vms_json_sink(vms_json *j);
void vms_json_free(vms_json *j);
/* JSON string escaping for other printers; writes "..." to OUT (null for
 * NULL).  Bytes that are not UTF-8 become U+FFFD: lossy, see vms_json_member. */
void vms_json_string(FILE *out, const char *s);
/* Writes "KEY":VALUE and, only when VALUE is not valid UTF-8, also
 * ,"KEY_bytes":"HEX" with VALUE's bytes in lowercase hex, so that two names
 * that differ only in bytes that are not UTF-8 stay two names. */
void vms_json_member(FILE *out, const char *key, const char *value);

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

/* ---- the sync engine -------------------------------------------------------
 * One engine for the CLI, the GUI and the agent: each operation takes options,
 * reports progress through a callback that can cancel (non-zero return), and
 * fills statistics.  REPO is a repository directory or an
 * ssh://[user@]host[:port]/path URL served by vmsync-agent. */

typedef int (*vms_progress_cb)(void *ctx, const char *phase, uint64_t done, uint64_t total);
typedef void (*vms_warning_cb)(void *ctx, const char *msg);

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
 * OTHER_TYPE key, which is refused (FSP_EK_DENIED) whatever the answer.  K
 * and its strings live during the call only.  Runs on the thread that opens
 * the connection, during the open; it may block (a dialog, a prompt). */
typedef enum vms_host_key_answer (*vms_host_key_cb)(void *ctx, const struct vms_host_key *k);

/* How to reach an ssh:// repository.  Zero values mean the defaults. */
struct vms_remote_opts {
    const char *known_hosts;  /* NULL: ~/.ssh/known_hosts */
    vms_host_key_cb host_key; /* NULL: every key the file does not vouch for is refused */
    void *host_key_ctx;
    const char *identity;     /* a private key file; NULL: ssh-agent, then ~/.ssh/id_* */
    uint64_t bwlimit;         /* bytes per second each way; 0: no limit */
    int level;                /* zstd level of transfers, 1..19; 0: adapt to the link */
    int timeout;              /* seconds without a byte from the server; 0: 60 */
    const char *agent;        /* the agent command when authorized_keys does not force one */
};

/* A cancel token.  vms_cancel_fire may be called from any thread, and from a
 * signal handler (it is async-signal-safe), at any time between new and free;
 * the operation running with the token returns FSP_EK_CANCELLED ("cancelled")
 * within a second, whatever it is waiting for: the network (an SSH link that
 * went silent), a scan, a copy.  A token stays fired: later operations with
 * it end as cancelled too.  After a cancel the operation's SSH connection is unusable
 * (it is closed); a checkout or check-in run again resumes where it stopped. */
typedef struct vms_cancel vms_cancel;
int vms_cancel_new(vms_cancel **out, fsp_error *err);
void vms_cancel_fire(vms_cancel *c);
void vms_cancel_free(vms_cancel *c); /* accepts NULL; no operation may still use it */

struct vms_session {
    const char *repo;
    const struct vms_remote_opts *remote; /* NULL: the defaults */
    const char *user, *host;  /* NULL: from the environment ($VMSYNC_HOST, hostname) */
    const char *cache_dir;    /* NULL: $VMSYNC_CACHE, else ~/.cache/vmsync */
    unsigned gc_wait;         /* seconds gc waits for the repository's other users, then
                               * fails naming them (exit 8); 0: 60 */
    vms_progress_cb progress;
    vms_warning_cb warning;
    void *ctx;
    vms_cancel *cancel;       /* NULL: only PROGRESS can cancel; not owned */
};

struct vms_stats {
    uint32_t version;
    uint64_t image_size;
    uint64_t bytes_from_seeds, objects_from_seeds;
    uint64_t bytes_fetched_raw, bytes_fetched_compressed, objects_fetched;
    uint64_t bytes_sent_raw, bytes_sent_compressed, objects_sent;
    uint64_t bytes_resumed;    /* already in place from an interrupted run */
    uint64_t bytes_zero;       /* zero or unallocated: nothing moved */
    uint64_t files_rehashed, files_trusted;
    uint64_t wire_in, wire_out; /* protocol bytes from and to a remote repository */
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
    uint64_t cache_max; /* bytes of cached compressed segments; 0: no cache */
    unsigned idle_timeout; /* seconds without a word from the client that end the
                            * session (an idle one holds the repository open); 0: none */
};
struct vms_serve_stats {
    uint64_t requests, objects_sent, objects_received;
    uint64_t segments, segments_cached, segments_stored, raw_bytes_sent, segment_bytes_sent;
    uint64_t wire_in, wire_out;
    int last_level;
    char client_host[256];
};
int vms_serve(const struct vms_serve_opts *o, int in_fd, int out_fd, struct vms_serve_stats *stats,
              fsp_error *err);

/* Parses a size or rate: digits and an optional K, M or G (binary, either
 * case); a bare number is shifted by BARE_SHIFT (10: KiB, as rsync's
 * --bwlimit).  0, or -1 when S is not one. */
int vms_parse_size(const char *s, unsigned bare_shift, uint64_t *out);

/* Parses "NAME" or "NAME@N"; VERSION 0 when absent. */
int vms_parse_ref(const char *ref, char *name, size_t len, uint32_t *version, fsp_error *err);

int vms_init_repo(const char *path, fsp_error *err);

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
};
typedef int (*vms_version_cb)(void *ctx, const struct vms_version *v);
/* Every version of NAME (of every image when NULL), oldest first. */
int vms_log(const struct vms_session *s, const char *name, vms_version_cb cb, void *ctx, fsp_error *err);

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
 * (vms_check without objects; VMS_PROBLEM_LEASE aside): deleting by an
 * incomplete picture loses data. */
int vms_gc(const struct vms_session *s, struct vms_gc_stats *stats, fsp_error *err);

/* ---- checking a repository (fsck) --------------------------------------------
 * The quick check: the catalog (SQLite's quick_check, and its own rules:
 * versions numbered 1, 2, ... each with its parent, leases on existing
 * versions, index rows in existing packs of the size the catalog records),
 * every version's manifest (present, its SHA-256 its name, every record
 * readable), and every object a version needs (vms_manifest_needed) indexed.
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
};
const char *vms_problem_name(enum vms_problem_kind kind); /* "catalog", "manifest", ... */

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
 * session's progress callback) stops the check after the problems reported so
 * far.  A non-zero return from CB stops it too, and is returned. */
int vms_check(const struct vms_session *s, const struct vms_check_opts *o, vms_problem_cb cb,
              void *ctx, struct vms_check_stats *stats, fsp_error *err);

struct vms_import_opts {
    const char *image, *name, *message;
    bool keep_volatile; /* store pagefile, hiberfil and swap contents too */
};
int vms_import(const struct vms_session *s, const struct vms_import_opts *o,
               struct vms_stats *stats, fsp_error *err);

/* Who has an image checked out: a user and a host together. */
struct vms_lease {
    char image[256];
    uint32_t version;
    char user[128], host[256];
    int64_t since;             /* Unix seconds */
};
/* Asked when someone else holds the lease a checkout needs.  HELD lives
 * during the call only; it runs on the checkout's thread and may block (a
 * dialog).  Non-zero takes the lease over, which the audit log records; 0
 * refuses, and the checkout fails with FSP_EK_CONFLICT naming the holder. */
typedef int (*vms_steal_cb)(void *ctx, const struct vms_lease *held);

struct vms_checkout_opts {
    const char *name;          /* image name */
    uint32_t version;          /* 0: the latest */
    const char *out;
    const char *format;        /* "raw" or "qcow2" */
    const char *const *seeds;
    size_t n_seeds;
    bool estimate;             /* plan and count only */
    bool keep_volatile;        /* write pagefile/swap contents the repository holds
                                * (see import), instead of zeros */
    bool export_only;          /* no lease, no audit of a checkout */
    bool force;                /* replace OUT even when vmsync did not write it, or it
                                * holds changes that no version has */
    vms_steal_cb steal;        /* NULL: another's lease is refused */
    void *steal_ctx;
};
int vms_checkout(const struct vms_session *s, const struct vms_checkout_opts *o,
                 struct vms_stats *stats, fsp_error *err);

struct vms_checkin_opts {
    const char *name;
    const char *image;
    const char *message;
    bool full_rescan;          /* reread every file, trust nothing */
};
int vms_checkin(const struct vms_session *s, const struct vms_checkin_opts *o,
                struct vms_stats *stats, fsp_error *err);

/* Scans IMAGE and compares its canonical digest with NAME@VERSION's; *SAME
 * tells.  The digests are returned for the caller to show. */
int vms_verify(const struct vms_session *s, const char *name, uint32_t version, const char *image,
               bool *same, uint8_t expected[FSP_SHA256_LEN], uint8_t actual[FSP_SHA256_LEN],
               fsp_error *err);

/* Copies NAME@VERSION's manifest to DEST. */
int vms_fetch_manifest(const struct vms_session *s, const char *name, uint32_t version,
                       const char *dest, fsp_error *err);

#ifdef __cplusplus
}
#endif
#endif
