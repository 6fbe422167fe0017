/* Private interface between the fsparse core (scan.c) and its pieces: block
 * sources, the partition probe, and the filesystem backends.  Not installed;
 * libvmsync must not include it. */
#ifndef FSPARSE_INTERNAL_H
#define FSPARSE_INTERNAL_H

#include "fsparse.h"

#include <stdarg.h>

#define FSP_MAX_VOLUMES 256
#define FSP_MAX_PATH 4096        /* bytes in an entry path */
#define FSP_MAX_DEPTH 512        /* directory nesting */
#define FSP_MAX_XATTR_VALUE (64u << 10)
#define FSP_MAX_EXTENTS (1u << 20) /* per stream */
#define FSP_MAX_STREAMS 1024     /* per entry */

/* ---- sources (source.c) ------------------------------------------------ */

/* True when threads may call fsp_source_pread on SRC at the same time: raw
 * files and memory.  The reads of a qemu-nbd source stay in one thread. */
bool fsp_source_reads_concurrently(const fsp_source *src);

/* ---- partitions (partition.c) ---------------------------------------- */

struct fsp_part {
    uint32_t index;          /* 1-based partition number; 0 = bare filesystem */
    uint64_t start, length;  /* bytes */
    char type[64], name[128], uuid[64];
    char fs_type[16], fs_label[128], fs_uuid[64]; /* from blkid; "" when unknown */
};

/* Lists the partitions of SRC with libblkid.  TABLE gets "gpt", "dos" or "none".
 * With no table, a filesystem found at offset 0 is one part with index 0, and
 * an image with neither yields zero parts.  Extended-partition containers are
 * not listed (their logical partitions are).  *PARTS is malloc'd. */
int fsp_partitions(fsp_source *src, char table[8], struct fsp_part **parts, uint32_t *n_parts,
                   fsp_error *err);

/* ---- volumes (scan.c) -------------------------------------------------- */

struct fsp_vol;

/* I/O inside the volume: OFF is relative to the volume start.  Reads past the
 * volume end fail with -EIO and a message. */
int fsp_vol_pread(struct fsp_vol *v, void *buf, size_t len, uint64_t off);
uint64_t fsp_vol_length(const struct fsp_vol *v);
uint64_t fsp_vol_start(const struct fsp_vol *v);
uint32_t fsp_vol_index(const struct fsp_vol *v);
const char *fsp_vol_image_path(const struct fsp_vol *v);
/* False when the scan wants metadata only (FSP_SCAN_NO_DATA): backends may then
 * skip extent lists and stream readers. */
bool fsp_vol_wants_data(const struct fsp_vol *v);

/* A backend calls these once the filesystem is open and before any entry:
 * the block (cluster) size and count, then every allocated block range as the
 * filesystem's own bitmap says.  fs_length = block_size * block_count must fit
 * in the volume. */
int fsp_vol_set_geometry(struct fsp_vol *v, uint32_t block_size, uint64_t block_count);
int fsp_vol_mark_allocated(struct fsp_vol *v, uint64_t first_block, uint64_t count);

/* Bytes [OFF, OFF+LEN) of the volume hold something a parsed structure
 * references, whatever the bitmap says: the blocks they touch are covered (the
 * part inside the filesystem; the rest is ignored), and the core counts and
 * reports blocks the bitmap called free.  IS_METADATA marks the filesystem's own
 * structures: where a stream's extents claim such a block (a damaged volume),
 * the block is covered as raw, not as the stream's.  Call after the geometry;
 * before it, or with an empty range, it does nothing. */
void fsp_vol_mark_in_use(struct fsp_vol *v, uint64_t off, uint64_t len, bool is_metadata);

/* True when inode INO was already emitted in this volume (hard links): the
 * backend then emits the new path with only the entry fields, no streams. */
bool fsp_vol_inode_seen(struct fsp_vol *v, uint64_t ino);

/* How the core reads stream I of an entry. */
struct fsp_stream_src {
    /* NULL: read the stream through streams[i].extents, whose physical offsets
     * are relative to the volume start; the core claims those blocks as FILE runs.
     * Else: read through this callback (resident, inline, compressed or
     * encrypted data); any extents listed are informational and not claimed.
     * The core calls it only during fsp_vol_emit. */
    int (*read)(void *ctx, void *buf, size_t len, uint64_t off);
    void *ctx;
    /* Bytes at or past VALID_SIZE read as zeros (NTFS initialized size). */
    uint64_t valid_size;
};

/* Emits one entry.  The backend owns E and may free it afterwards.  For each
 * stream the backend sets name, size, flags and extents (volume-relative) or a
 * reader in SRCS[i]; the core computes hashes and chunks, checks the extents,
 * turns them into absolute offsets and records the claims.  A stream that cannot
 * be read becomes FSP_STREAM_UNREADABLE with a warning, not a failure.  Entries
 * with FSP_ENTRY_HARDLINK (set by the backend after fsp_vol_inode_seen) get the
 * stream hashes of the first path.  Returns 0 or a negative errno when the scan
 * must stop (cancelled, I/O failure on the image). */
int fsp_vol_emit(struct fsp_vol *v, struct fsp_entry *e, const struct fsp_stream_src *srcs);

/* A warning about PATH (or NULL for the volume) goes to the manifest and the
 * sink; the scan goes on. */
void fsp_vol_warn(struct fsp_vol *v, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records why the backend gave up on the volume and returns CODE (negative
 * errno).  The core then covers what the backend did not claim as raw blocks. */
int fsp_vol_fail(struct fsp_vol *v, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- filesystem backends ---------------------------------------------- */

/* Each walks the whole filesystem: geometry and bitmap first, then every entry
 * from the root.  Returns 0, or the value of fsp_vol_fail / fsp_vol_emit. */
int fsp_ext_scan(struct fsp_vol *v);
int fsp_ntfs_scan(struct fsp_vol *v);

/* ---- shared helpers (util.c, cdc.c, xsort.c) -------------------------- */

char *fsp_strdup_bounded(const char *s, size_t max);
int fsp_vfail(fsp_error *err, int kind, int code, const char *fmt, va_list ap);

/* Content-defined chunking (FastCDC with normalised chunking): min 16 KiB,
 * average 64 KiB, max 256 KiB. */
#define FSP_CDC_MIN (16u << 10)
#define FSP_CDC_AVG (64u << 10)
#define FSP_CDC_MAX (256u << 10)
/* Returns the length of the next chunk of BUF[0..len), or 0 when the data ends
 * before a cut point and EOF is false (the caller must supply more bytes). */
size_t fsp_cdc_next(const uint8_t *buf, size_t len, bool eof);

/* External sort of fixed-size records in bounded memory. */
typedef struct fsp_xsort fsp_xsort;
typedef int (*fsp_xsort_cmp)(const void *a, const void *b);
int fsp_xsort_new(size_t rec_size, size_t mem_budget, fsp_xsort_cmp cmp, fsp_xsort **out);
int fsp_xsort_add(fsp_xsort *xs, const void *rec);
/* After the last add: yields records in order; returns 1 per record, 0 at end,
 * negative errno on failure. */
int fsp_xsort_next(fsp_xsort *xs, void *rec);
uint64_t fsp_xsort_count(const fsp_xsort *xs);
void fsp_xsort_free(fsp_xsort *xs);

/* ---- hashing workers (hashpool.c) -------------------------------------- */

/* The scan thread opens a job per stream and pushes its bytes in segments;
 * workers run the jobs in the order they were opened, each job's segments in
 * order, on one worker, so a result never depends on the number of workers.
 * Segment buffers come from the pool, at most N_BUFS of FSP_POOL_SEG bytes and
 * N_BUFS * FSP_POOL_SEG / FSP_POOL_SMALL / 4 of FSP_POOL_SMALL, which bounds
 * the memory in flight: fsp_pool_buffer waits for a free one.
 * Jobs that share buffers must be open together with at least two workers,
 * or the buffers that one of them still needs could stall the other.
 * The callbacks run on a worker; they touch only their job's context. */
#define FSP_POOL_SEG (256u << 10)
#define FSP_POOL_SMALL (16u << 10)

enum { FSP_SEG_ZEROS, FSP_SEG_IMAGE /* may be all zeros: worth a test */, FSP_SEG_BYTES };

struct fsp_pool_ops {
    /* DATA is NULL for FSP_SEG_ZEROS.  A nonzero return skips the job's
     * remaining segments and its finish. */
    int (*segment)(void *ctx, const uint8_t *data, size_t len, int kind);
    int (*finish)(void *ctx);
    /* Fills BUF with the LEN image bytes at OFF for fsp_pool_push_range; NULL
     * when nothing is pushed that way.  A nonzero return fails every job that
     * shares the range, as a segment callback's would. */
    int (*read)(void *ctx, uint8_t *buf, size_t len, uint64_t off);
};

typedef struct fsp_pool fsp_pool;
typedef struct fsp_pool_job fsp_pool_job;
int fsp_pool_new(unsigned n_threads, unsigned n_bufs, fsp_pool **out);
/* Joins the workers; every job must have been closed and waited for. */
void fsp_pool_free(fsp_pool *p);
int fsp_pool_open(fsp_pool *p, const struct fsp_pool_ops *ops, void *ctx, fsp_pool_job **out);
/* A buffer for LEN bytes (at most FSP_POOL_SEG), or NULL when out of memory.
 * Give it back with fsp_pool_push of exactly LEN bytes (the pool owns it then,
 * even on failure) or fsp_pool_unused with LEN: the length names its size. */
uint8_t *fsp_pool_buffer(fsp_pool *p, size_t len);
void fsp_pool_unused(fsp_pool *p, uint8_t *buf, size_t len);
/* Queues the same bytes on each of N_JOBS jobs (at most FSP_POOL_SHARE_MAX):
 * several jobs may hash one stream in different ways on different workers.
 * The buffer comes back once all of them are done with it. */
#define FSP_POOL_SHARE_MAX 2
int fsp_pool_push(fsp_pool *p, fsp_pool_job *const *jobs, unsigned n_jobs, uint8_t *buf,
                  size_t len, int kind);
/* As fsp_pool_push with FSP_SEG_IMAGE, but BUF is still to be filled from
 * the image at OFF: the first worker that needs it reads it with its job's
 * read callback, so that reading runs on the workers, in parallel, and not in
 * the scan thread.  Only for sources that take concurrent reads. */
int fsp_pool_push_range(fsp_pool *p, fsp_pool_job *const *jobs, unsigned n_jobs, uint8_t *buf,
                        size_t len, uint64_t off);
/* No more segments: the job finishes once its worker has run them all. */
void fsp_pool_close(fsp_pool *p, fsp_pool_job *j);
bool fsp_pool_done(fsp_pool *p, const fsp_pool_job *j);
/* Waits for a closed job, frees it and returns its result. */
int fsp_pool_wait(fsp_pool *p, fsp_pool_job *j);

#endif
