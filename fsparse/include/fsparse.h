/* libfsparse: reads the filesystems inside VM disk images into one model.
 *
 * A block source (raw file, or any qemu format through qemu-nbd) is split into
 * volumes by its partition table.  Each volume holding ext2/3/4 or NTFS is walked
 * file by file; every other byte of the image is covered as 4 KiB blocks.  The
 * result is streamed to a sink: volumes, then entries, then a layout map that
 * covers every allocated byte of the image exactly once, then the canonical
 * image digest.
 *
 * Conventions: functions return 0 or a negative errno; on failure they fill the
 * caller's fsp_error with a message that names the object and what is wrong.
 * Nothing here prints.  Input images are only ever opened read-only.
 */
#ifndef FSPARSE_H
#define FSPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FSP_SHA256_LEN 32
#define FSP_PIECE_SIZE 4096u          /* RAW layout runs carry one hash per piece */
#define FSP_CHUNK_MIN_STREAM (1u << 20) /* streams this large get CDC chunk hashes */

/* Error classes; fsp_error.kind picks the CLI exit status.  Libraries built
 * on fsparse add kinds of their own from FSP_EK_LIBRARY up. */
enum fsp_error_kind {
    FSP_EK_NONE = 0,
    FSP_EK_USAGE,      /* bad arguments */
    FSP_EK_OPEN,       /* cannot open or read the input path */
    FSP_EK_FORMAT,     /* not an image, truncated, missing backing file */
    FSP_EK_CORRUPT,    /* hostile or damaged content */
    FSP_EK_IO,         /* read or write failure after open */
    FSP_EK_NOMEM,
    FSP_EK_CANCELLED,
    FSP_EK_INTERNAL,
    FSP_EK_END,        /* one past fsparse's last */
    FSP_EK_LIBRARY = 64,
};

typedef struct fsp_error {
    int code;                 /* negative errno */
    int kind;                 /* enum fsp_error_kind, or a library's own */
    char msg[768];
} fsp_error;

/* Sets err (if not NULL) and returns code (a negative errno). */
int fsp_fail(fsp_error *err, int kind, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- block sources ---------------------------------------------------- */

typedef struct fsp_source fsp_source;

/* Opens PATH read-only.  Raw files are read directly; qcow2, vmdk, vhdx, vdi
 * and vpc are served by a qemu-nbd child started by socket activation.  Before
 * qemu-nbd starts, every file the image names (qcow2 backing files, vmdk
 * extents and parents, down a chain of at most 16) must be a regular file in
 * the image's own folder, after realpath, or in a folder allowed by
 * fsp_allow_backing_dir; protocols and json: names are refused, and so are
 * loops (FSP_EK_FORMAT).  The qemu-nbd child is killed when the thread that
 * opened the source dies, so close the source before that thread exits. */
int fsp_source_open(const char *path, fsp_source **out, fsp_error *err);
/* Opens PATH as a raw image, whatever its first and last bytes look like: a
 * raw disk's contents may start as a qcow2 header, or end as a vhd footer. */
int fsp_source_open_raw(const char *path, fsp_source **out, fsp_error *err);
/* Lets images opened from now on name backing files and extents anywhere
 * under DIR (which must exist).  The setting is process-wide; make these calls
 * before opening images. */
int fsp_allow_backing_dir(const char *dir, fsp_error *err);
/* A source over caller memory (fuzzing, tests).  DATA must outlive the source. */
int fsp_source_open_mem(const void *data, size_t len, fsp_source **out, fsp_error *err);
void fsp_source_close(fsp_source *src);
uint64_t fsp_source_size(const fsp_source *src);
const char *fsp_source_format(const fsp_source *src); /* "raw", "qcow2", ... */
const char *fsp_source_path(const fsp_source *src);
/* Reads exactly LEN bytes at OFF; reading past the end is an error. */
int fsp_source_pread(fsp_source *src, void *buf, size_t len, uint64_t off, fsp_error *err);
/* Finds the next range at or after OFF that may hold data.  Sets *data_off to the
 * first such byte (or the source size when none).  Sources that cannot tell
 * report OFF itself. */
int fsp_source_next_data(fsp_source *src, uint64_t off, uint64_t *data_off, fsp_error *err);

/* ---- the model -------------------------------------------------------- */

enum fsp_entry_type {
    FSP_T_REG = 1,
    FSP_T_DIR,
    FSP_T_SYMLINK,
    FSP_T_CHR,
    FSP_T_BLK,
    FSP_T_FIFO,
    FSP_T_SOCK,
};

enum fsp_fs_kind {
    FSP_FS_NONE = 0, /* covered as raw blocks */
    FSP_FS_EXT = 1,
    FSP_FS_NTFS = 2,
};

struct fsp_time {
    int64_t sec;   /* Unix seconds */
    uint32_t nsec; /* below 1e9 */
};

struct fsp_chunk {
    uint64_t offset; /* in the stream */
    uint32_t length;
    uint8_t sha256[FSP_SHA256_LEN];
};

#define FSP_EXT_UNWRITTEN 0x1u /* allocated, reads as zeros */

struct fsp_extent {
    uint64_t logical;  /* byte offset in the stream */
    uint64_t physical; /* byte offset in the image (absolute; backends give it
                        * relative to their volume and the core converts) */
    uint64_t length;   /* bytes, a multiple of the volume block size */
    uint32_t flags;    /* FSP_EXT_* */
};

#define FSP_STREAM_SPARSE 0x01u
#define FSP_STREAM_COMPRESSED 0x02u
#define FSP_STREAM_RESIDENT 0x04u  /* NTFS resident or ext4 inline data */
#define FSP_STREAM_ENCRYPTED 0x08u
#define FSP_STREAM_UNREADABLE 0x10u /* could not be read: no hash */
#define FSP_STREAM_NOT_HASHED 0x20u /* skipped on purpose (lazy scan): no hash */

struct fsp_stream {
    char *name;      /* NULL for the unnamed data stream; else the ADS name, UTF-8 */
    uint64_t size;
    uint64_t valid_size; /* bytes from here on read as zeros (NTFS initialized size) */
    uint32_t flags;  /* FSP_STREAM_* */
    uint8_t sha256[FSP_SHA256_LEN];
    uint32_t n_extents;
    struct fsp_extent *extents; /* absolute physical offsets, logical order */
    uint32_t n_chunks;
    struct fsp_chunk *chunks;   /* only for streams of FSP_CHUNK_MIN_STREAM or more */
};

struct fsp_xattr {
    char *name;
    uint8_t *value;
    uint32_t len;
};

#define FSP_ENTRY_HARDLINK 0x01u /* same inode as an earlier entry of the volume */
#define FSP_ENTRY_VOLATILE 0x02u /* /pagefile.sys, /hiberfil.sys, /swapfile.sys, /swapfile,
                                  * /swap.img: their canonical content is zeros (ZERO runs),
                                  * so they travel only on request */
#define FSP_ENTRY_DAMAGED 0x04u  /* read with errors; see the manifest warnings */

struct fsp_entry {
    uint32_t volume;
    uint64_t ino;         /* inode number, or NTFS MFT record number */
    char *path;           /* "/dir/name" from the volume root: the name bytes as stored
                           * (UTF-8 on NTFS; any bytes but '/' and NUL on ext) */
    uint8_t type;         /* enum fsp_entry_type */
    uint32_t flags;       /* FSP_ENTRY_* */
    uint32_t mode, uid, gid;
    uint32_t nlink;
    uint64_t size;        /* size of the unnamed data stream (or symlink target) */
    struct fsp_time atime, mtime, ctime, btime;
    uint32_t attributes;  /* NTFS FILE_ATTRIBUTE_*; ext inode i_flags */
    uint64_t generation;  /* ext i_generation; NTFS MFT sequence number */
    uint64_t rdev;        /* device number (major << 32 | minor) */
    char *symlink;        /* symlink or junction target, else NULL */
    uint32_t reparse_tag; /* NTFS reparse tag, else 0 */
    uint8_t *reparse;     /* NTFS reparse data, raw */
    uint32_t reparse_len;
    uint8_t *security;    /* NTFS self-relative security descriptor */
    uint32_t security_len;
    char *dos_name;       /* NTFS 8.3 name when it differs from the long name */
    uint32_t n_xattrs;
    struct fsp_xattr *xattrs;
    uint32_t n_streams;
    struct fsp_stream *streams; /* the unnamed data stream first, when present */
};

struct fsp_image_info {
    uint64_t size;
    const char *format;      /* "raw", "qcow2", ... */
    const char *table;       /* "gpt", "dos" or "none" */
    uint32_t n_volumes;
};

struct fsp_volume_info {
    uint32_t index;          /* partition number (1-based); 0 for a bare filesystem */
    uint64_t start, length;  /* bytes in the image */
    uint8_t fs_kind;         /* enum fsp_fs_kind */
    uint32_t block_size;     /* filesystem block or cluster size; 4096 for raw */
    uint64_t fs_length;      /* bytes the filesystem covers from start */
    char fs_type[16];        /* "ext4", "ntfs", "vfat", "" ... (from blkid) */
    char fs_label[128];
    char fs_uuid[64];
    char part_type[64];      /* GPT type GUID or MBR type "0x83" */
    char part_name[128];
    char part_uuid[64];
};

enum fsp_layout_kind {
    FSP_L_FILE = 1, /* bytes of a file stream */
    FSP_L_RAW = 2,  /* metadata or unparsed blocks, one SHA-256 per 4 KiB piece */
    FSP_L_ZERO = 3, /* allocated, reads as zeros (all-zero blocks, unwritten extents) */
};

/* One run of the layout map.  Runs come in offset order and never overlap.  Bytes
 * in no run are unallocated: read as zeros and never transferred. */
struct fsp_layout_run {
    uint64_t offset, length;
    uint8_t kind;            /* enum fsp_layout_kind */
    uint32_t volume;
    /* FSP_L_FILE: the run holds stream bytes [stream_offset, stream_offset+length)
     * of entry ENTRY_SEQ; bytes past the stream's end (slack) are zeros. */
    uint64_t entry_seq;
    uint32_t stream;
    uint64_t stream_offset;
    uint64_t stream_size;
    uint8_t stream_sha256[FSP_SHA256_LEN];
    /* FSP_L_RAW: hashes of the 4 KiB pieces from OFFSET; the last may be short. */
    uint32_t n_hashes;
    const uint8_t (*hashes)[FSP_SHA256_LEN];
};

struct fsp_summary {
    uint64_t entries;
    uint64_t allocated_bytes;  /* bytes in FILE, RAW and ZERO runs */
    uint64_t file_bytes, raw_bytes, zero_bytes;
    uint64_t warnings;
    uint8_t digest[FSP_SHA256_LEN]; /* canonical image digest */
};

/* The sink receives, in order: image, every volume, the entries (volume by
 * volume, each with a sequence number counted from 0), warnings at any time,
 * the layout runs, then done.  A non-zero return cancels the scan, which then
 * returns that value. */
struct fsp_sink {
    int (*image)(void *ctx, const struct fsp_image_info *info);
    int (*volume)(void *ctx, const struct fsp_volume_info *vol);
    int (*entry)(void *ctx, uint64_t seq, const struct fsp_entry *e);
    int (*warning)(void *ctx, uint32_t volume, const char *path, const char *msg);
    int (*layout)(void *ctx, const struct fsp_layout_run *run);
    int (*progress)(void *ctx, const char *phase, uint64_t done, uint64_t total);
    int (*done)(void *ctx, const struct fsp_summary *sum);
    /* Optional, for engines that store or match content: */
    /* Receives the bytes of every object: each stream smaller than
     * FSP_CHUNK_MIN_STREAM whole, each chunk of a larger one, and each non-zero
     * RAW piece, keyed by their SHA-256.  Volatile streams produce none unless
     * the scan has FSP_SCAN_VOLATILE_OBJECTS. */
    int (*object)(void *ctx, const uint8_t hash[FSP_SHA256_LEN], const void *data, size_t len);
    /* Lazy hashing: false leaves stream IDX of E unhashed (FSP_STREAM_NOT_HASHED). */
    bool (*want_stream)(void *ctx, const struct fsp_entry *e, uint32_t idx);
    /* Trust: true when the sink filled ST's sha256 and chunks (malloc'd; the
     * scan frees them) from an earlier manifest, so the data is not read. */
    bool (*reuse_stream)(void *ctx, const struct fsp_entry *e, uint32_t idx, struct fsp_stream *st);
    void *ctx;
};

#define FSP_SCAN_NO_DATA 0x1u /* metadata only: no stream hashes, no layout */
#define FSP_SCAN_VOLATILE_OBJECTS 0x2u /* hand volatile streams to sink.object too */

struct fsp_scan_opts {
    uint32_t flags;   /* FSP_SCAN_* */
    uint8_t force_fs; /* FSP_FS_EXT or FSP_FS_NTFS: read the whole image as one bare
                       * filesystem of that kind without probing (fuzzing, damaged
                       * signatures); FSP_FS_NONE probes as usual */
};

int fsp_scan(fsp_source *src, const struct fsp_scan_opts *opts, const struct fsp_sink *sink,
             fsp_error *err);

/* ---- the canonical image digest ---------------------------------------
 * SHA-256 over "vmsync-canonical-v1", the image size, and each layout run in
 * offset order (offset, length, kind; FILE: stream SHA-256, stream offset and
 * size; RAW: the piece hashes).  Every allocated byte is bound through the hash
 * of the stream or piece that holds it, and every other byte is zero, so it is
 * a Merkle hash of the image read through the layout map.  It is computed from
 * the layout alone; a verifier rehashes streams and pieces from the image. */
typedef struct fsp_digest fsp_digest;
int fsp_digest_new(uint64_t image_size, fsp_digest **out);
void fsp_digest_add_run(fsp_digest *d, const struct fsp_layout_run *run);
void fsp_digest_final(fsp_digest *d, uint8_t out[FSP_SHA256_LEN]);
void fsp_digest_free(fsp_digest *d);

/* ---- helpers shared with libvmsync ------------------------------------ */

const char *fsp_entry_type_name(uint8_t type);       /* "file", "dir", ... */
const char *fsp_layout_kind_name(uint8_t kind);      /* "file", "raw", "zero" */
const char *fsp_fs_kind_name(uint8_t kind);          /* "ext", "ntfs", "none" */
void fsp_hex(const uint8_t *bytes, size_t len, char *out); /* out: 2*len+1 */

#ifdef __cplusplus
}
#endif
#endif
