/* NTFS backend: walks an NTFS volume with libntfs-3g, mounted read-only over
 * fsp_vol_pread, and emits one entry per path.
 *
 * Only the tree below the root is walked; the metafiles ($MFT, $LogFile,
 * $Extend, ...) are left unclaimed so the core covers them as raw blocks.  The
 * allocated clusters are those of $Bitmap and every cluster that an MFT record
 * in use refers to, decoded from the raw records before the walk.
 * libntfs-3g trusts its input more than we can, so everything it hands back
 * (names, runlists, sizes, reparse data) is checked again before use. */
#include "internal.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NTFS_UNDER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define NTFS_UNDER_ASAN 1
#endif
#ifdef NTFS_UNDER_ASAN
#include <sanitizer/lsan_interface.h>
#endif

#include <ntfs-3g/types.h>
#include <ntfs-3g/layout.h>
#include <ntfs-3g/attrib.h>
#include <ntfs-3g/device.h>
#include <ntfs-3g/dir.h>
#include <ntfs-3g/endians.h>
#include <ntfs-3g/inode.h>
#include <ntfs-3g/logging.h>
#include <ntfs-3g/mst.h>
#include <ntfs-3g/security.h>
#include <ntfs-3g/unistr.h>
#include <ntfs-3g/volume.h>

#define NTFS_MAX_DIR_NAMES (10u * 1000u * 1000u) /* a corrupt index cannot grow memory further */
#define NTFS_MAX_SD (64u << 10)
#define NTFS_MAX_REPARSE (16u << 10)          /* MAXIMUM_REPARSE_DATA_BUFFER_SIZE */
#define NTFS_MAX_DATA_RECORDS 65536u          /* $DATA records looked at per inode */
#define NTFS_BITMAP_CHUNK (1u << 20)
#define NT_TICKS_PER_SEC 10000000LL
#define NT_EPOCH_TO_UNIX 11644473600LL        /* seconds from 1601 to 1970 */

/* ---- libntfs-3g logging ------------------------------------------------ */

/* libntfs-3g reports why a call failed only through its log.  The first error
 * of a call (usually the cause) and the last (usually the consequence) are
 * kept per thread so our own messages can quote them. */
static _Thread_local struct {
    unsigned errors;
    bool have_text;
    char first[160], last[160];
} ntfs_log_capture;

#define NTFS_DETAIL_LEN (2 * 160 + 32)

/* Formats one message as a single line: libntfs-3g's advice texts run over
 * several lines and end in newlines or dots. */
__attribute__((format(printf, 3, 0))) static void
format_log_line(char *out, size_t len, const char *format, va_list args, u32 level, int err)
{
    size_t n;

    vsnprintf(out, len, format, args);
    out[strcspn(out, "\n")] = '\0';
    n = strlen(out);
    while (n && (out[n - 1] == '.' || out[n - 1] == ' '))
        out[--n] = '\0';
    if ((level & NTFS_LOG_LEVEL_PERROR) && n + 3 < len)
        snprintf(out + n, len - n, ": %s", strerror(err));
}

__attribute__((format(printf, 6, 0))) static int
capture_ntfs_log(const char *function, const char *file, int line, u32 level, void *data,
                 const char *format, va_list args)
{
    int saved = errno;
    char msg[sizeof ntfs_log_capture.last];

    ntfs_log_capture.errors++;
    format_log_line(msg, sizeof msg, format, args, level, saved);
    if (msg[0] && strncmp(msg, "HINTS", 5)) {
        if (!ntfs_log_capture.have_text)
            memcpy(ntfs_log_capture.first, msg, sizeof msg);
        memcpy(ntfs_log_capture.last, msg, sizeof msg);
        ntfs_log_capture.have_text = true;
    }
    errno = saved;
    return 0;
}

static void install_log_capture(void)
{
    ntfs_log_set_handler(capture_ntfs_log);
    ntfs_log_clear_levels(UINT32_MAX);
    ntfs_log_set_levels(NTFS_LOG_LEVEL_ERROR | NTFS_LOG_LEVEL_PERROR | NTFS_LOG_LEVEL_CRITICAL);
}

static void silence_libntfs(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install_log_capture);
}

static void reset_log_capture(void)
{
    ntfs_log_capture.errors = 0;
    ntfs_log_capture.have_text = false;
}

/* " (libntfs-3g: <first error>[; <last error>])", or "" when it said nothing. */
static const char *ntfs_detail(char *buf, size_t len)
{
    if (!ntfs_log_capture.have_text)
        return "";
    if (!strcmp(ntfs_log_capture.first, ntfs_log_capture.last))
        snprintf(buf, len, " (libntfs-3g: %s)", ntfs_log_capture.first);
    else
        snprintf(buf, len, " (libntfs-3g: %s; %s)", ntfs_log_capture.first,
                 ntfs_log_capture.last);
    return buf;
}

static int errno_or(int fallback)
{
    return errno > 0 ? errno : fallback;
}

/* ---- the device: reads go to the volume -------------------------------- */

struct dev_ctx {
    struct fsp_vol *v;
    s64 pos;
};

static int dev_open(struct ntfs_device *dev, int flags)
{
    if ((flags & O_ACCMODE) != O_RDONLY) {
        errno = EROFS;
        return -1;
    }
    NDevSetOpen(dev);
    NDevSetReadOnly(dev);
    return 0;
}

static int dev_close(struct ntfs_device *dev)
{
    NDevClearOpen(dev);
    return 0;
}

static s64 dev_seek(struct ntfs_device *dev, s64 offset, int whence)
{
    struct dev_ctx *d = dev->d_private;
    s64 len = (s64)fsp_vol_length(d->v), base;

    switch (whence) {
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = d->pos; break;
    case SEEK_END: base = len; break;
    default: errno = EINVAL; return -1;
    }
    /* Failing past the end is what makes libntfs-3g reject a volume whose
     * sector count exceeds the partition. */
    if ((offset < 0 && -offset > base) || (offset > 0 && offset > len - base)) {
        errno = EINVAL;
        return -1;
    }
    d->pos = base + offset;
    return d->pos;
}

static s64 dev_pread(struct ntfs_device *dev, void *buf, s64 count, s64 offset)
{
    struct dev_ctx *d = dev->d_private;
    uint64_t len = fsp_vol_length(d->v);
    int ret;

    if (count < 0 || offset < 0) {
        errno = EINVAL;
        return -1;
    }
    if ((uint64_t)offset >= len || count == 0)
        return 0;
    if ((uint64_t)count > len - (uint64_t)offset)
        count = (s64)(len - (uint64_t)offset);
    ret = fsp_vol_pread(d->v, buf, (size_t)count, (uint64_t)offset);
    if (ret < 0) {
        errno = -ret;
        return -1;
    }
    return count;
}

static s64 dev_read(struct ntfs_device *dev, void *buf, s64 count)
{
    struct dev_ctx *d = dev->d_private;
    s64 n = dev_pread(dev, buf, count, d->pos);

    if (n > 0)
        d->pos += n;
    return n;
}

static s64 dev_write(struct ntfs_device *dev, const void *buf, s64 count)
{
    errno = EROFS;
    return -1;
}

static s64 dev_pwrite(struct ntfs_device *dev, const void *buf, s64 count, s64 offset)
{
    errno = EROFS;
    return -1;
}

static int dev_sync(struct ntfs_device *dev)
{
    return 0;
}

static int dev_stat(struct ntfs_device *dev, struct stat *st)
{
    struct dev_ctx *d = dev->d_private;

    memset(st, 0, sizeof *st);
    st->st_mode = S_IFREG | 0444;
    st->st_size = (off_t)fsp_vol_length(d->v);
    return 0;
}

static int dev_ioctl(struct ntfs_device *dev, unsigned long request, void *argp)
{
    errno = ENOTTY;
    return -1;
}

static struct ntfs_device_operations dev_ops = {
    .open = dev_open,
    .close = dev_close,
    .seek = dev_seek,
    .read = dev_read,
    .write = dev_write,
    .pread = dev_pread,
    .pwrite = dev_pwrite,
    .sync = dev_sync,
    .stat = dev_stat,
    .ioctl = dev_ioctl,
};

/* ntfs_device_mount leaks the $AttrDef inode when that file is damaged
 * (libntfs-3g 2022.10.3).  The leak is small and once per volume, but would fail
 * every leak-checked run on such an image, so the mount's own allocations are
 * not leak-checked. */
static ntfs_volume *mount_device(struct ntfs_device *dev)
{
    ntfs_volume *vol;

#ifdef NTFS_UNDER_ASAN
    __lsan_disable();
#endif
    /* Hibernated or unclean volumes are fine: nothing is ever written. */
    vol = ntfs_device_mount(dev, NTFS_MNT_RDONLY | NTFS_MNT_IGNORE_HIBERFILE);
#ifdef NTFS_UNDER_ASAN
    int saved = errno;
    __lsan_enable();
    errno = saved;
#endif
    return vol;
}

/* Mounts read-only; on failure records why and frees the device, which
 * ntfs_device_mount leaves to its caller. */
static int mount_volume(struct fsp_vol *v, struct dev_ctx *dctx, ntfs_volume **out)
{
    struct ntfs_device *dev;
    ntfs_volume *vol;
    char detail[NTFS_DETAIL_LEN];
    int err;

    dev = ntfs_device_alloc("vmsync", 0, &dev_ops, dctx);
    if (!dev)
        return fsp_vol_fail(v, -ENOMEM, "ntfs: cannot mount: %s", strerror(ENOMEM));
    reset_log_capture();
    vol = mount_device(dev);
    if (!vol) {
        err = errno_or(EIO);
        if (NDevOpen(dev))
            dev_close(dev);
        ntfs_device_free(dev);
        return fsp_vol_fail(v, -err, "ntfs: cannot mount: %s%s", strerror(err),
                            ntfs_detail(detail, sizeof detail));
    }
    /* Encrypted streams are hashed as the ciphertext stored on disk. */
    vol->efs_raw = TRUE;
    *out = vol;
    return 0;
}

/* ---- a set of MFT record numbers (directories already walked) --------- */

struct mft_set {
    uint64_t *slots; /* key + 1; 0 is empty */
    size_t cap, count;
};

static size_t mft_set_slot(const uint64_t *slots, size_t cap, uint64_t key)
{
    size_t i = (size_t)((key * 0x9e3779b97f4a7c15ull) >> 17) & (cap - 1);

    while (slots[i] && slots[i] != key + 1)
        i = (i + 1) & (cap - 1);
    return i;
}

static int mft_set_grow(struct mft_set *s)
{
    size_t cap = s->cap ? s->cap * 2 : 1024;
    uint64_t *slots = calloc(cap, sizeof *slots);

    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i])
            slots[mft_set_slot(slots, cap, s->slots[i] - 1)] = s->slots[i];
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
    return 0;
}

/* Returns 1 when KEY is new, 0 when already present, or -ENOMEM. */
static int mft_set_add(struct mft_set *s, uint64_t key)
{
    size_t i;

    if ((s->count + 1) * 2 > s->cap && mft_set_grow(s) < 0)
        return -ENOMEM;
    i = mft_set_slot(s->slots, s->cap, key);
    if (s->slots[i])
        return 0;
    s->slots[i] = key + 1;
    s->count++;
    return 1;
}

/* ---- scan state ---------------------------------------------------------- */

struct ntfs_scan {
    struct fsp_vol *v;
    ntfs_volume *vol;
    struct SECURITY_CONTEXT scx;
    struct mft_set walked_dirs;
    char *sd_buf;            /* NTFS_MAX_SD bytes, reused for every entry */
    uint64_t vol_bytes;      /* nr_clusters * cluster_size */
    uint8_t *referenced;     /* clusters a record in use refers to; freed once marked */
    uint8_t *metadata;       /* of those, the ones that hold no user file's data */
    char distrust[NTFS_DETAIL_LEN + 128]; /* why the MFT cannot be walked; "" when it can */
    bool wants_data;
    char path[FSP_MAX_PATH];
    size_t path_len;
};

/* Appends "/NAME" to the current path; false when it would not fit. */
static bool path_push(struct ntfs_scan *s, const char *name)
{
    size_t n = strlen(name), sep = s->path_len > 1 ? 1 : 0;

    if (s->path_len + sep + n >= sizeof s->path)
        return false;
    if (sep)
        s->path[s->path_len++] = '/';
    memcpy(s->path + s->path_len, name, n + 1);
    s->path_len += n;
    return true;
}

static void path_pop(struct ntfs_scan *s, size_t len)
{
    s->path_len = len;
    s->path[len] = '\0';
}

/* ---- names --------------------------------------------------------------- */

/* UTF-16LE from disk to UTF-8.  A path COMPONENT may not contain '/'.
 * Returns NULL and sets *why for names we cannot represent. */
static char *utf16_to_utf8(const void *name, size_t len, bool component, const char **why)
{
    ntfschar *aligned;
    char *out = NULL;

    if (len == 0 || len > 0xffff) {
        *why = len ? "name too long" : "empty name";
        return NULL;
    }
    /* On-disk names may sit at odd offsets. */
    aligned = malloc(len * sizeof *aligned);
    if (!aligned) {
        *why = "out of memory";
        return NULL;
    }
    memcpy(aligned, name, len * sizeof *aligned);
    if (ntfs_ucsnlen(aligned, (u32)len) != len) {
        *why = "name contains NUL";
    } else if (ntfs_ucstombs(aligned, (int)len, &out, 0) < 0) {
        *why = "name is not valid UTF-16 or too long";
        out = NULL;
    } else if (component && strchr(out, '/')) {
        *why = "name contains '/'";
        free(out);
        out = NULL;
    }
    free(aligned);
    return out;
}

/* ---- geometry and the cluster bitmap ------------------------------------ */

struct bitmap_runs {
    struct fsp_vol *v;
    uint64_t nr_clusters;
    uint64_t run_start;
    bool in_run;
};

static int end_run(struct bitmap_runs *b, uint64_t end)
{
    b->in_run = false;
    if (end > b->nr_clusters)
        end = b->nr_clusters;
    if (b->run_start >= end)
        return 0;
    return fsp_vol_mark_allocated(b->v, b->run_start, end - b->run_start);
}

/* LEN is a multiple of 8; bit k of the bitmap is cluster k. */
static int scan_bitmap_words(struct bitmap_runs *b, const uint8_t *buf, size_t len,
                             uint64_t first_cluster)
{
    for (size_t i = 0; i < len; i += 8) {
        uint64_t w, base = first_cluster + (uint64_t)i * 8;
        unsigned k = 0;

        memcpy(&w, buf + i, 8);
        w = le64toh(w);
        if (w == (b->in_run ? UINT64_MAX : 0))
            continue;
        for (;;) {
            uint64_t flips = (b->in_run ? ~w : w) & (UINT64_MAX << k);
            int ret;

            if (!flips)
                break;
            k = (unsigned)__builtin_ctzll(flips);
            if (b->in_run) {
                ret = end_run(b, base + k);
                if (ret < 0)
                    return ret;
            } else {
                b->in_run = true;
                b->run_start = base + k;
            }
        }
    }
    return 0;
}

/* Reads exactly LEN bytes of an attribute; 0 or a negative errno. */
static int read_attr_exact(ntfs_attr *na, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;

    while (done < len) {
        s64 n;

        if (off + done > (uint64_t)INT64_MAX)
            return -EINVAL;
        n = ntfs_attr_pread(na, (s64)(off + done), (s64)(len - done), (char *)buf + done);
        if (n < 0)
            return -errno_or(EIO);
        if (n == 0)
            return -EIO;
        done += (size_t)n;
    }
    return 0;
}

/* A warning about the whole volume names it, as the core's own warnings do. */
static void warn_volume(struct ntfs_scan *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void warn_volume(struct ntfs_scan *s, const char *fmt, ...)
{
    char msg[640];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (fsp_vol_index(s->v))
        fsp_vol_warn(s->v, NULL, "partition %u (ntfs): %s", fsp_vol_index(s->v), msg);
    else
        fsp_vol_warn(s->v, NULL, "filesystem (ntfs): %s", msg);
}

/* ---- clusters the MFT's records use -------------------------------------- */

/* $Bitmap only records what the MFT's records say: on a damaged volume it can
 * call a cluster free that a directory's index blocks or a file still use.  The
 * clusters kept are the union of $Bitmap and every run of every attribute of
 * every record in use.  The runs are decoded here from the raw records, so
 * records that the tree walk never reaches (orphans, $Extend, extension
 * records) count too. */

#define NTFS_MFT_CHUNK (1u << 20) /* bytes of $MFT read at a time */
#define NTFS_BOOT_BYTES 8192u     /* $Boot: the boot sector and the boot code */

static uint8_t *cluster_map_new(const struct ntfs_scan *s)
{
    return calloc(((uint64_t)s->vol->nr_clusters + 7) / 8, 1);
}

static void set_bits(uint8_t *map, uint64_t first, uint64_t count)
{
    for (uint64_t b = first; b < first + count; b++) {
        if (!(b & 7) && first + count - b >= 8) {
            size_t bytes = (size_t)((first + count - b) / 8);

            memset(map + b / 8, 0xff, bytes);
            b += (uint64_t)bytes * 8 - 1;
            continue;
        }
        map[b / 8] |= (uint8_t)(1u << (b & 7));
    }
}

static bool any_bit_set(const uint8_t *map, uint64_t first, uint64_t count)
{
    for (uint64_t b = first; b < first + count; b++) {
        if (!(b & 7) && first + count - b >= 8) {
            if (map[b / 8])
                return true;
            b += 7;
            continue;
        }
        if (map[b / 8] >> (b & 7) & 1)
            return true;
    }
    return false;
}

/* Notes clusters [LCN, LCN+COUNT) as used; false when they do not all lie
 * inside the volume (the part inside is noted all the same). */
static bool note_run(struct ntfs_scan *s, int64_t lcn, uint64_t count, bool metadata)
{
    uint64_t nr = (uint64_t)s->vol->nr_clusters, inside;

    if (lcn < 0 || (uint64_t)lcn >= nr)
        return !count;
    inside = count < nr - (uint64_t)lcn ? count : nr - (uint64_t)lcn;
    set_bits(s->referenced, (uint64_t)lcn, inside);
    if (metadata)
        set_bits(s->metadata, (uint64_t)lcn, inside);
    return inside == count;
}

/* N (1..8) bytes little-endian at P, sign-extended when IS_SIGNED. */
static uint64_t get_le_bytes(const uint8_t *p, unsigned n, bool is_signed)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    if (is_signed && n < 8 && (p[n - 1] & 0x80))
        v |= UINT64_MAX << (8 * n);
    return v;
}

/* Notes every run of the non-resident attribute A, LEN bytes long inside its
 * record.  NULL, or why its runs cannot be known. */
static const char *note_mapping_pairs(struct ntfs_scan *s, const ATTR_RECORD *a, uint32_t len,
                                      bool metadata)
{
    const uint8_t *p = (const uint8_t *)a;
    uint32_t pos = le16_to_cpu(a->mapping_pairs_offset);
    int64_t lcn = 0;

    if (len < offsetof(ATTR_RECORD, compressed_size) ||
        pos < offsetof(ATTR_RECORD, compressed_size) || pos >= len)
        return "its mapping pairs lie outside the attribute";
    while (p[pos]) {
        unsigned len_bytes = p[pos] & 0xf, lcn_bytes = p[pos] >> 4;
        uint64_t count;
        int64_t delta;

        /* The pair and the header byte after it must lie inside the attribute. */
        if (!len_bytes || len_bytes > 8 || lcn_bytes > 8 ||
            len - pos - 1 < len_bytes + lcn_bytes + 1)
            return "a mapping pair is malformed";
        count = get_le_bytes(p + pos + 1, len_bytes, false);
        if (lcn_bytes) {
            delta = (int64_t)get_le_bytes(p + pos + 1 + len_bytes, lcn_bytes, true);
            if (__builtin_add_overflow(lcn, delta, &lcn))
                return "a mapping pair is malformed";
            if (!note_run(s, lcn, count, metadata))
                return "a run lies outside the volume";
        }
        pos += 1 + len_bytes + lcn_bytes;
    }
    return NULL;
}

/* User files' data may be claimed as file runs; everything else (the
 * metafiles, indexes, attribute lists, ...) is metadata, which no file run may
 * cover. */
static bool is_metadata_attr(const MFT_RECORD *m, uint64_t no, const ATTR_RECORD *a)
{
    uint64_t owner = m->base_mft_record ? MREF_LE(m->base_mft_record) : no;

    return a->type != AT_DATA || owner < FILE_first_user;
}

/* Notes the runs of every attribute of record NO (fixed up). */
static const char *note_record_runs(struct ntfs_scan *s, const MFT_RECORD *m, uint64_t no)
{
    uint32_t end = le32_to_cpu(m->bytes_in_use), pos = le16_to_cpu(m->attrs_offset);

    if (end > s->vol->mft_record_size || pos >= end)
        return "its header is inconsistent";
    for (;;) {
        const ATTR_RECORD *a = (const ATTR_RECORD *)((const uint8_t *)m + pos);
        uint32_t len;
        const char *why;

        if (end - pos < sizeof a->type)
            return "its attributes run past its end";
        if (a->type == AT_END)
            return NULL;
        if (end - pos < offsetof(ATTR_RECORD, value_offset) + sizeof a->value_offset)
            return "its attributes run past its end";
        len = le32_to_cpu(a->length);
        if (len < offsetof(ATTR_RECORD, value_offset) + sizeof a->value_offset || len > end - pos)
            return "an attribute has an invalid length";
        if (a->non_resident && (why = note_mapping_pairs(s, a, len, is_metadata_attr(m, no, a))))
            return why;
        pos += len;
    }
}

/* Notes the runs of record NO, which is in use when its header says so or
 * $MFT's bitmap does (IN_BITMAP).  NULL, or why a record in use cannot be read. */
static const char *note_record(struct ntfs_scan *s, MFT_RECORD *m, uint64_t no, bool in_bitmap)
{
    bool is_file = ntfs_is_file_record(m->magic);
    bool says_in_use = (is_file || ntfs_is_baad_record(m->magic)) && (m->flags & MFT_RECORD_IN_USE);
    const char *why;

    if (!in_bitmap && !says_in_use)
        return NULL;
    if (!is_file)
        return "it is in use but is not a valid file record";
    if (ntfs_mst_post_read_fixup_warn((NTFS_RECORD *)m, s->vol->mft_record_size, FALSE) < 0)
        why = "its update sequence does not match (an interrupted write)";
    else
        why = note_record_runs(s, m, no);
    /* A record whose header says it is free, where $MFT's bitmap says
     * otherwise, was deleted: the runs it still names are kept, but nothing
     * relies on it, so its damage does not count against the volume. */
    return says_in_use ? why : NULL;
}

static void distrust_mft(struct ntfs_scan *s, uint64_t no, const char *why)
{
    if (!s->distrust[0])
        snprintf(s->distrust, sizeof s->distrust, "MFT record %llu: %s", (unsigned long long)no,
                 why);
}

/* $MFT's bitmap bits for records [FIRST, FIRST+COUNT), FIRST a multiple of 8;
 * records past the end of the bitmap read as not in use. */
static int read_mft_bitmap(struct ntfs_scan *s, uint8_t *bits, uint64_t first, uint64_t count)
{
    ntfs_attr *na = s->vol->mftbmp_na;
    uint64_t have = na && na->data_size > 0 ? (uint64_t)na->data_size : 0;
    uint64_t off = first / 8, len = (count + 7) / 8;

    memset(bits, 0, len);
    if (off >= have)
        return 0;
    return read_attr_exact(na, bits, len < have - off ? len : have - off, off);
}

/* Notes the runs of the records [FIRST, FIRST+COUNT), read into BUF. */
static void note_records(struct ntfs_scan *s, uint8_t *buf, uint8_t *bits, uint64_t first,
                         uint64_t count)
{
    uint32_t size = s->vol->mft_record_size;
    char detail[NTFS_DETAIL_LEN];
    int ret;

    reset_log_capture();
    ret = read_attr_exact(s->vol->mft_na, buf, count * size, first * size);
    if (!ret)
        ret = read_mft_bitmap(s, bits, first, count);
    if (ret < 0) {
        snprintf(s->distrust, sizeof s->distrust, "$MFT cannot be read at record %llu: %s%s",
                 (unsigned long long)first, strerror(-ret), ntfs_detail(detail, sizeof detail));
        return;
    }
    for (uint64_t i = 0; i < count && !s->distrust[0]; i++) {
        const char *why = note_record(s, (MFT_RECORD *)(buf + i * size), first + i,
                                      bits[i / 8] >> (i % 8) & 1);

        if (why)
            distrust_mft(s, first + i, why);
    }
}

/* Reads LEN bytes of $MFT at byte OFF straight from its clusters, also past
 * its initialized size, where libntfs-3g would read zeros.  What no run maps
 * reads as zeros. */
static int read_mft_clusters(struct ntfs_scan *s, uint8_t *buf, uint64_t len, uint64_t off)
{
    uint64_t cs = s->vol->cluster_size, end_vcn = (off + len + cs - 1) / cs;
    uint64_t nr = (uint64_t)s->vol->nr_clusters;

    memset(buf, 0, len);
    for (const runlist_element *rl = s->vol->mft_na->rl; rl && rl->length > 0; rl++) {
        uint64_t vcn = (uint64_t)rl->vcn, n, from, to, lo, hi;
        int ret;

        if (rl->vcn < 0 || rl->lcn < 0 || (uint64_t)rl->lcn >= nr || vcn >= end_vcn)
            continue;
        n = (uint64_t)rl->length < end_vcn - vcn ? (uint64_t)rl->length : end_vcn - vcn;
        from = vcn * cs;
        to = from + n * cs;
        lo = from > off ? from : off;
        hi = to < off + len ? to : off + len;
        if (lo >= hi)
            continue;
        ret = fsp_vol_pread(s->v, buf + (lo - off), hi - lo, (uint64_t)rl->lcn * cs + (lo - from));
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* The clusters of $MFT past the end of its data hold no records for NTFS, but
 * on a damaged volume a file's record (or an extension record of one) can lie
 * there and name clusters that the file still uses: the runs of the records in
 * use found there are kept too.  Nothing in that stale space counts against
 * the volume. */
static void note_records_past_end(struct ntfs_scan *s, uint8_t *buf, uint64_t first,
                                  uint64_t end)
{
    uint32_t size = s->vol->mft_record_size;
    uint64_t per_chunk = NTFS_MFT_CHUNK / size;

    for (; first < end; first += per_chunk) {
        uint64_t count = end - first < per_chunk ? end - first : per_chunk;

        if (read_mft_clusters(s, buf, count * size, first * size) < 0)
            return;
        for (uint64_t i = 0; i < count; i++) {
            MFT_RECORD *m = (MFT_RECORD *)(buf + i * size);

            if (ntfs_is_file_record(m->magic) && (m->flags & MFT_RECORD_IN_USE) &&
                ntfs_mst_post_read_fixup_warn((NTFS_RECORD *)m, size, FALSE) == 0)
                note_record_runs(s, m, first + i);
        }
    }
}

/* The boot sectors, $MFT as libntfs-3g mapped it and $MFTMirr are used
 * whatever their records say. */
static void note_fixed_metadata(struct ntfs_scan *s)
{
    ntfs_volume *vol = s->vol;
    uint64_t cs = vol->cluster_size;

    note_run(s, 0, (NTFS_BOOT_BYTES + cs - 1) / cs, true);
    for (const runlist_element *rl = vol->mft_na->rl; rl && rl->length > 0; rl++)
        if (rl->lcn >= 0)
            note_run(s, rl->lcn, (uint64_t)rl->length, true);
    if (vol->mftmirr_size > 0)
        note_run(s, vol->mftmirr_lcn,
                 ((uint64_t)vol->mftmirr_size * vol->mft_record_size + cs - 1) / cs, true);
}

/* Fills s->referenced and s->metadata from every record of $MFT; sets
 * s->distrust when a record in use cannot be read. */
static int note_mft_runs(struct ntfs_scan *s)
{
    ntfs_volume *vol = s->vol;
    uint32_t size = vol->mft_record_size;
    uint64_t init = vol->mft_na->initialized_size > 0 ? (uint64_t)vol->mft_na->initialized_size : 0;
    uint64_t alloc = vol->mft_na->allocated_size > 0 ? (uint64_t)vol->mft_na->allocated_size : 0;
    uint64_t n = size ? init / size : 0, per_chunk = size ? NTFS_MFT_CHUNK / size : 0;
    uint8_t *buf = NULL, *bits = NULL;

    s->referenced = cluster_map_new(s);
    s->metadata = cluster_map_new(s);
    if (s->referenced && s->metadata)
        buf = malloc(NTFS_MFT_CHUNK);
    if (buf)
        bits = malloc(NTFS_MFT_CHUNK / 8);
    if (!bits) {
        free(buf);
        return fsp_vol_fail(s->v, -ENOMEM, "ntfs: cannot walk $MFT: %s", strerror(ENOMEM));
    }
    note_fixed_metadata(s);
    if (per_chunk < 8 || init > s->vol_bytes)
        snprintf(s->distrust, sizeof s->distrust, "$MFT has %llu bytes in records of %u",
                 (unsigned long long)init, size);
    for (uint64_t first = 0; first < n && !s->distrust[0]; first += per_chunk)
        note_records(s, buf, bits, first, n - first < per_chunk ? n - first : per_chunk);
    if (!s->distrust[0] && alloc <= s->vol_bytes)
        note_records_past_end(s, buf, n, alloc / size);
    free(buf);
    free(bits);
    if (s->distrust[0])
        warn_volume(s, "the MFT cannot be walked (%s); every cluster of the volume is kept",
                    s->distrust);
    return 0;
}

/* Adds the clusters the records use to N bytes of $Bitmap at byte OFF,
 * counting those that $Bitmap calls free. */
static void add_referenced(struct ntfs_scan *s, uint8_t *buf, size_t n, uint64_t off,
                           uint64_t *missed, uint64_t *first_missed)
{
    if (s->distrust[0]) {
        memset(buf, 0xff, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t extra = s->referenced[off + i] & (uint8_t)~buf[i];

        if (!extra)
            continue;
        if (!*missed)
            *first_missed = (off + i) * 8 + (uint64_t)__builtin_ctz(extra);
        *missed += (uint64_t)__builtin_popcount(extra);
        buf[i] |= extra;
    }
}

static int mark_allocated_clusters(struct ntfs_scan *s)
{
    ntfs_attr *na = s->vol->lcnbmp_na;
    struct bitmap_runs b = { .v = s->v, .nr_clusters = (uint64_t)s->vol->nr_clusters };
    uint64_t need = (b.nr_clusters + 7) / 8;
    uint64_t have = na->data_size > 0 ? (uint64_t)na->data_size : 0;
    uint64_t limit = have < need ? have : need;
    uint8_t *buf = malloc(NTFS_BITMAP_CHUNK);
    uint64_t missed = 0, first_missed = 0;
    char detail[NTFS_DETAIL_LEN];
    int ret = 0;

    if (!buf)
        return fsp_vol_fail(s->v, -ENOMEM, "ntfs: cannot read $Bitmap: %s", strerror(ENOMEM));
    for (uint64_t off = 0; off < limit && ret == 0; off += NTFS_BITMAP_CHUNK) {
        size_t n = limit - off < NTFS_BITMAP_CHUNK ? (size_t)(limit - off) : NTFS_BITMAP_CHUNK;
        size_t padded = (n + 7) & ~(size_t)7;

        reset_log_capture();
        ret = read_attr_exact(na, buf, n, off);
        if (ret < 0) {
            ret = fsp_vol_fail(s->v, ret, "ntfs: cannot read $Bitmap at byte %llu: %s%s",
                               (unsigned long long)off, strerror(-ret),
                               ntfs_detail(detail, sizeof detail));
            break;
        }
        add_referenced(s, buf, n, off, &missed, &first_missed);
        memset(buf + n, 0, padded - n);
        ret = scan_bitmap_words(&b, buf, padded, off * 8);
    }
    free(buf);
    if (ret < 0)
        return ret;
    if (missed)
        warn_volume(s, "$Bitmap marks %llu clusters free that the MFT's records use (the first "
                    "is cluster %llu); they are kept", (unsigned long long)missed,
                    (unsigned long long)first_missed);
    if (have < need) {
        /* Clusters the bitmap does not describe may hold anything: keep them. */
        warn_volume(s, "$Bitmap covers %llu of %llu clusters; the rest is treated as allocated",
                    (unsigned long long)have * 8, (unsigned long long)b.nr_clusters);
        if (!b.in_run) {
            b.in_run = true;
            b.run_start = have * 8;
        }
    }
    return b.in_run ? end_run(&b, b.nr_clusters) : 0;
}

static int set_geometry(struct ntfs_scan *s)
{
    ntfs_volume *vol = s->vol;
    int ret;

    if (vol->nr_clusters <= 0 || !vol->cluster_size)
        return fsp_vol_fail(s->v, -EINVAL, "ntfs: volume has no clusters");
    s->vol_bytes = (uint64_t)vol->nr_clusters * vol->cluster_size;
    ret = fsp_vol_set_geometry(s->v, vol->cluster_size, (uint64_t)vol->nr_clusters);
    if (ret < 0)
        return fsp_vol_fail(s->v, ret, "ntfs: %llu clusters of %u bytes do not fit the volume",
                            (unsigned long long)vol->nr_clusters, vol->cluster_size);
    ret = note_mft_runs(s);
    if (ret == 0)
        ret = mark_allocated_clusters(s);
    free(s->referenced);
    s->referenced = NULL;
    return ret;
}

/* ---- entries ------------------------------------------------------------- */

/* What the directory index says about one child. */
struct child {
    char *name;
    MFT_REF mref;
    uint8_t name_type;
};

/* An entry under construction with the open attributes its readers use. */
struct built_entry {
    struct fsp_entry e;
    struct fsp_stream_src *srcs;
    ntfs_attr **attrs;
};

static void built_entry_free(struct built_entry *b)
{
    for (uint32_t i = 0; i < b->e.n_streams; i++) {
        free(b->e.streams[i].name);
        free(b->e.streams[i].extents);
        if (b->attrs && b->attrs[i])
            ntfs_attr_close(b->attrs[i]);
    }
    free(b->e.streams);
    free(b->srcs);
    free(b->attrs);
    free(b->e.symlink);
    free(b->e.reparse);
    free(b->e.security);
    free(b->e.dos_name);
}

static struct fsp_time nt_time_to_unix(ntfs_time t)
{
    int64_t ticks = sle64_to_cpu(t);
    int64_t sec = ticks / NT_TICKS_PER_SEC, rem = ticks % NT_TICKS_PER_SEC;

    if (rem < 0) {
        rem += NT_TICKS_PER_SEC;
        sec--;
    }
    return (struct fsp_time){ .sec = sec - NT_EPOCH_TO_UNIX, .nsec = (uint32_t)rem * 100 };
}

static void fill_identity(struct ntfs_scan *s, ntfs_inode *ni, struct fsp_entry *e)
{
    e->volume = fsp_vol_index(s->v);
    e->ino = ni->mft_no;
    e->path = s->path;
    e->generation = le16_to_cpu(ni->mrec->sequence_number);
    e->attributes = le32_to_cpu(ni->flags);
    e->btime = nt_time_to_unix(ni->creation_time);
    e->mtime = nt_time_to_unix(ni->last_data_change_time);
    e->ctime = nt_time_to_unix(ni->last_mft_change_time);
    e->atime = nt_time_to_unix(ni->last_access_time);
}

static void warn_damaged(struct ntfs_scan *s, struct fsp_entry *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void warn_damaged(struct ntfs_scan *s, struct fsp_entry *e, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fsp_vol_warn(s->v, s->path, "ntfs: %s", msg);
    e->flags |= FSP_ENTRY_DAMAGED;
}

/* The FILE_NAME value of the current attribute, or NULL when it is malformed. */
static const FILE_NAME_ATTR *file_name_value(const ATTR_RECORD *a)
{
    uint32_t len = le32_to_cpu(a->value_length), off = le16_to_cpu(a->value_offset);
    const FILE_NAME_ATTR *fn;

    if (a->non_resident || off > le32_to_cpu(a->length) ||
        len > le32_to_cpu(a->length) - off || len < offsetof(FILE_NAME_ATTR, file_name))
        return NULL;
    fn = (const FILE_NAME_ATTR *)((const uint8_t *)a + off);
    if (offsetof(FILE_NAME_ATTR, file_name) + fn->file_name_length * sizeof(ntfschar) > len)
        return NULL;
    return fn;
}

/* Counts the links (FILE_NAME attributes other than DOS-only ones: NTFS's own
 * link_count also counts 8.3 names) and finds the 8.3 name paired with a
 * Win32 name in directory PARENT_NO. */
static void scan_file_names(struct ntfs_scan *s, ntfs_inode *ni, const struct child *c,
                            uint64_t parent_no, struct fsp_entry *e)
{
    ntfs_attr_search_ctx *ctx = ntfs_attr_get_search_ctx(ni, NULL);
    bool want_dos = c && c->name_type == FILE_NAME_WIN32;
    uint32_t links = 0, seen = 0;

    if (!ctx) {
        e->nlink = 1;
        return;
    }
    while (seen++ < NTFS_MAX_DATA_RECORDS &&
           !ntfs_attr_lookup(AT_FILE_NAME, AT_UNNAMED, 0, CASE_SENSITIVE, 0, NULL, 0, ctx)) {
        const FILE_NAME_ATTR *fn = file_name_value(ctx->attr);
        const char *why;

        if (!fn)
            continue;
        if (fn->file_name_type != FILE_NAME_DOS) {
            links++;
            continue;
        }
        if (!want_dos || e->dos_name || MREF_LE(fn->parent_directory) != parent_no)
            continue;
        e->dos_name = utf16_to_utf8((const uint8_t *)fn + offsetof(FILE_NAME_ATTR, file_name),
                                    fn->file_name_length, true, &why);
        if (e->dos_name && !strcmp(e->dos_name, c->name)) {
            free(e->dos_name);
            e->dos_name = NULL;
        }
    }
    ntfs_attr_put_search_ctx(ctx);
    if (!links && c)
        warn_damaged(s, e, "MFT record %llu has no FILE_NAME attribute",
                     (unsigned long long)ni->mft_no);
    e->nlink = links ? links : 1;
}

/* ---- reparse points ------------------------------------------------------ */

static uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)get_le16(p) | (uint32_t)get_le16(p + 2) << 16;
}

static bool is_link_tag(uint32_t tag)
{
    return tag == le32_to_cpu(IO_REPARSE_TAG_SYMLINK) ||
           tag == le32_to_cpu(IO_REPARSE_TAG_MOUNT_POINT);
}

/* The target of a symlink or junction: the print name when there is one (what
 * Windows shows), else the substitute name without its NT "\??\" prefix. */
static char *reparse_link_target(const uint8_t *buf, uint32_t len, uint32_t tag, const char **why)
{
    static const uint8_t nt_prefix[8] = { '\\', 0, '?', 0, '?', 0, '\\', 0 };
    uint32_t data_end, names_at = tag == le32_to_cpu(IO_REPARSE_TAG_SYMLINK) ? 20 : 16;
    uint32_t off, n;
    bool substitute;

    data_end = 8u + get_le16(buf + 4);
    if (data_end > len || names_at > data_end) {
        *why = "reparse data too short";
        return NULL;
    }
    substitute = get_le16(buf + 14) == 0;
    off = get_le16(buf + (substitute ? 8 : 12));
    n = get_le16(buf + (substitute ? 10 : 14));
    if (n % 2 || off > data_end - names_at || n > data_end - names_at - off) {
        *why = "link target lies outside the reparse data";
        return NULL;
    }
    buf += names_at + off;
    if (substitute && n >= sizeof nt_prefix && !memcmp(buf, nt_prefix, sizeof nt_prefix)) {
        buf += sizeof nt_prefix;
        n -= sizeof nt_prefix;
    }
    return utf16_to_utf8(buf, n / 2, false, why);
}

static void read_reparse(struct ntfs_scan *s, ntfs_inode *ni, struct fsp_entry *e)
{
    char detail[NTFS_DETAIL_LEN];
    ntfs_attr *na;
    uint8_t *buf;
    const char *why;
    int ret;

    reset_log_capture();
    na = ntfs_attr_open(ni, AT_REPARSE_POINT, AT_UNNAMED, 0);
    if (!na) {
        if (errno != ENOENT)
            warn_damaged(s, e, "cannot open the reparse point: %s%s", strerror(errno_or(EIO)),
                         ntfs_detail(detail, sizeof detail));
        return;
    }
    if (na->data_size < 8 || na->data_size > NTFS_MAX_REPARSE) {
        warn_damaged(s, e, "reparse point of %lld bytes ignored", (long long)na->data_size);
        ntfs_attr_close(na);
        return;
    }
    buf = malloc((size_t)na->data_size);
    ret = buf ? read_attr_exact(na, buf, (size_t)na->data_size, 0) : -ENOMEM;
    if (ret < 0) {
        warn_damaged(s, e, "cannot read the reparse point: %s%s", strerror(-ret),
                     ntfs_detail(detail, sizeof detail));
        free(buf);
        ntfs_attr_close(na);
        return;
    }
    e->reparse = buf;
    e->reparse_len = (uint32_t)na->data_size;
    e->reparse_tag = get_le32(buf);
    ntfs_attr_close(na);
    if (is_link_tag(e->reparse_tag)) {
        e->symlink = reparse_link_target(buf, e->reparse_len, e->reparse_tag, &why);
        if (!e->symlink)
            warn_damaged(s, e, "reparse tag 0x%08x: %s; not treated as a link",
                         e->reparse_tag, why);
    }
}

/* ---- security descriptors ------------------------------------------------ */

static void read_security(struct ntfs_scan *s, ntfs_inode *ni, struct fsp_entry *e)
{
    char detail[NTFS_DETAIL_LEN];
    int n;

    reset_log_capture();
    n = ntfs_get_ntfs_acl(&s->scx, ni, s->sd_buf, NTFS_MAX_SD);
    /* When the descriptor is missing or invalid, libntfs-3g makes one up and
     * says so only in its log. */
    if (n <= 0 || ntfs_log_capture.errors) {
        warn_damaged(s, e, "no valid security descriptor%s", ntfs_detail(detail, sizeof detail));
        return;
    }
    if ((unsigned)n > NTFS_MAX_SD) {
        warn_damaged(s, e, "security descriptor of %d bytes exceeds %u; dropped", n, NTFS_MAX_SD);
        return;
    }
    e->security = malloc((size_t)n);
    if (!e->security) {
        warn_damaged(s, e, "security descriptor dropped: %s", strerror(ENOMEM));
        return;
    }
    memcpy(e->security, s->sd_buf, (size_t)n);
    e->security_len = (uint32_t)n;
}

/* ---- data streams -------------------------------------------------------- */

struct data_name {
    ntfschar *name; /* NULL for the unnamed stream */
    uint32_t len;
};

static void data_names_free(struct data_name *names, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        free(names[i].name);
    free(names);
}

static bool data_name_known(const struct data_name *names, uint32_t n, const uint8_t *name,
                            uint32_t len)
{
    for (uint32_t i = 0; i < n; i++)
        if (names[i].len == len && (!len || !memcmp(names[i].name, name, len * 2)))
            return true;
    return false;
}

/* Adds the name of the $DATA record A unless it is a duplicate.  Returns 1 when
 * added, 0 when skipped, -ENOMEM. */
static int add_data_name(struct ntfs_scan *s, struct fsp_entry *e, const ATTR_RECORD *a,
                         struct data_name *names, uint32_t *n)
{
    uint32_t len = a->name_length, off = le16_to_cpu(a->name_offset);
    const uint8_t *name = (const uint8_t *)a + off;
    struct data_name *dn = &names[*n];

    if (len && off + len * 2 > le32_to_cpu(a->length)) {
        warn_damaged(s, e, "data stream with a corrupt name skipped");
        return 0;
    }
    if (data_name_known(names, *n, name, len)) {
        warn_damaged(s, e, "duplicate data stream skipped");
        return 0;
    }
    dn->len = len;
    dn->name = NULL;
    if (len) {
        dn->name = malloc(len * 2);
        if (!dn->name)
            return -ENOMEM;
        memcpy(dn->name, name, len * 2);
    }
    (*n)++;
    return 1;
}

/* Lists the distinct $DATA attributes of NI, the unnamed one first. */
static int list_data_names(struct ntfs_scan *s, ntfs_inode *ni, struct fsp_entry *e,
                           struct data_name **out, uint32_t *count)
{
    ntfs_attr_search_ctx *ctx = ntfs_attr_get_search_ctx(ni, NULL);
    struct data_name *names = calloc(FSP_MAX_STREAMS, sizeof *names);
    uint32_t n = 0, records = 0;
    char detail[NTFS_DETAIL_LEN];
    int ret = 0;

    if (!ctx || !names) {
        if (ctx)
            ntfs_attr_put_search_ctx(ctx);
        free(names);
        return -ENOMEM;
    }
    reset_log_capture();
    for (;;) {
        const ATTR_RECORD *a;

        if (ntfs_attr_lookup(AT_DATA, NULL, 0, CASE_SENSITIVE, 0, NULL, 0, ctx)) {
            if (errno != ENOENT)
                warn_damaged(s, e, "cannot list the data streams: %s%s",
                             strerror(errno_or(EIO)), ntfs_detail(detail, sizeof detail));
            break;
        }
        a = ctx->attr;
        /* Later pieces of a fragmented attribute are not streams of their own. */
        if (a->non_resident && sle64_to_cpu(a->lowest_vcn) != 0)
            continue;
        if (n == FSP_MAX_STREAMS || ++records > NTFS_MAX_DATA_RECORDS) {
            warn_damaged(s, e, "more than %u data streams; the rest are skipped", n);
            break;
        }
        ret = add_data_name(s, e, a, names, &n);
        if (ret < 0)
            break;
    }
    ntfs_attr_put_search_ctx(ctx);
    if (ret < 0) {
        data_names_free(names, n);
        return ret;
    }
    for (uint32_t i = 1; i < n; i++) {
        if (!names[i].len) {
            struct data_name t = names[0];
            names[0] = names[i];
            names[i] = t;
        }
    }
    *out = names;
    *count = n;
    return 0;
}

static int read_stream(void *ctx, void *buf, size_t len, uint64_t off)
{
    return read_attr_exact(ctx, buf, len, off);
}

/* Appends an extent, merging it into the previous one when they touch. */
static const char *add_extent(struct fsp_stream *st, uint32_t *cap, uint64_t logical,
                              uint64_t physical, uint64_t length)
{
    struct fsp_extent *last = st->n_extents ? &st->extents[st->n_extents - 1] : NULL;

    if (last && last->logical + last->length == logical &&
        last->physical + last->length == physical) {
        last->length += length;
        return NULL;
    }
    if (st->n_extents == FSP_MAX_EXTENTS)
        return "too many extents";
    if (st->n_extents == *cap) {
        uint32_t ncap = *cap ? *cap * 2 : 8;
        struct fsp_extent *ext = realloc(st->extents, ncap * sizeof *ext);

        if (!ext)
            return "out of memory";
        st->extents = ext;
        *cap = ncap;
    }
    st->extents[st->n_extents++] = (struct fsp_extent){
        .logical = logical, .physical = physical, .length = length };
    return NULL;
}

/* Lists the clusters holding the data as extents (volume-relative bytes), up to
 * the cluster that holds the last initialized byte: the clusters after it read
 * as zeros in the stream but keep their own bytes as raw blocks.  Returns NULL,
 * or why the runlist cannot be trusted. */
static const char *map_extents(struct ntfs_scan *s, ntfs_attr *na, struct fsp_stream *st,
                               uint64_t valid_size)
{
    uint64_t cs = s->vol->cluster_size, nr = (uint64_t)s->vol->nr_clusters;
    uint64_t need = ((uint64_t)na->data_size + cs - 1) / cs, vcn = 0;
    uint64_t keep = (valid_size + cs - 1) / cs;
    uint32_t cap = 0;
    const char *why;

    if (!need)
        return NULL;
    if (ntfs_attr_map_whole_runlist(na) < 0)
        return "cannot map the runlist";
    for (const runlist_element *rl = na->rl; rl && rl->length && vcn < need; rl++) {
        uint64_t len;

        if (rl->vcn != (s64)vcn || rl->length < 0)
            return "runlist is not contiguous";
        len = (uint64_t)rl->length < need - vcn ? (uint64_t)rl->length : need - vcn;
        if (rl->lcn == LCN_HOLE) {
            st->flags |= FSP_STREAM_SPARSE;
        } else if (rl->lcn < 0) {
            return "runlist has an invalid cluster number";
        } else if ((uint64_t)rl->lcn > nr || len > nr - (uint64_t)rl->lcn) {
            return "a run lies outside the volume";
        } else if (vcn < keep) {
            uint64_t kept = len < keep - vcn ? len : keep - vcn;

            why = add_extent(st, &cap, vcn * cs, (uint64_t)rl->lcn * cs, kept * cs);
            if (why)
                return why;
        }
        vcn += len;
    }
    if (vcn < need)
        return "runlist is shorter than the data";
    return NULL;
}

/* True when an extent of ST covers a cluster of the volume's metadata. */
static bool extents_touch_metadata(const struct ntfs_scan *s, const struct fsp_stream *st)
{
    uint64_t cs = s->vol->cluster_size;

    for (uint32_t i = 0; i < st->n_extents; i++)
        if (any_bit_set(s->metadata, st->extents[i].physical / cs, st->extents[i].length / cs))
            return true;
    return false;
}

/* Streams stored as plain clusters are read through their extents, which the
 * core claims as file runs; the others through libntfs-3g.  So is a stream
 * whose clusters the volume's metadata also uses (a damaged volume): the
 * metadata's bytes must win, and they stay raw blocks. */
static const char *describe_stream_data(struct ntfs_scan *s, struct fsp_entry *e, ntfs_attr *na,
                                        struct fsp_stream *st, struct fsp_stream_src *src)
{
    bool compressed = NAttrNonResident(na) && (na->data_flags & ATTR_COMPRESSION_MASK);
    const char *why;

    if (na->data_size < 0 || na->initialized_size < 0)
        return "negative size";
    src->valid_size = (uint64_t)(na->initialized_size < na->data_size ? na->initialized_size
                                                                      : na->data_size);
    if (NAttrNonResident(na) && !compressed && !NAttrEncrypted(na)) {
        why = map_extents(s, na, st, src->valid_size);
        if (why || !extents_touch_metadata(s, st))
            return why;
        warn_damaged(s, e, "data stream %s shares clusters with the volume's metadata; read "
                     "through the filesystem, its clusters kept as they are",
                     st->name ? st->name : "(unnamed)");
    }
    src->read = read_stream;
    src->ctx = na;
    return NULL;
}

static void describe_stream(struct ntfs_scan *s, struct built_entry *b, uint32_t i)
{
    ntfs_attr *na = b->attrs[i];
    struct fsp_stream *st = &b->e.streams[i];
    char detail[NTFS_DETAIL_LEN];
    const char *why = NULL;

    st->size = na->data_size > 0 ? (uint64_t)na->data_size : 0;
    if (!NAttrNonResident(na))
        st->flags |= FSP_STREAM_RESIDENT;
    else if (na->data_flags & ATTR_COMPRESSION_MASK)
        st->flags |= FSP_STREAM_COMPRESSED;
    if (NAttrEncrypted(na))
        st->flags |= FSP_STREAM_ENCRYPTED;
    if (NAttrSparse(na))
        st->flags |= FSP_STREAM_SPARSE;
    reset_log_capture();
    if (s->wants_data)
        why = describe_stream_data(s, &b->e, na, st, &b->srcs[i]);
    else if (na->data_size < 0)
        why = "negative size";
    if (!why)
        return;
    warn_damaged(s, &b->e, "data stream %s: %s%s; not read", st->name ? st->name : "(unnamed)",
                 why, ntfs_detail(detail, sizeof detail));
    st->flags |= FSP_STREAM_UNREADABLE;
    free(st->extents);
    st->extents = NULL;
    st->n_extents = 0;
    b->srcs[i] = (struct fsp_stream_src){ 0 };
}

static void add_stream(struct ntfs_scan *s, ntfs_inode *ni, struct built_entry *b,
                       const struct data_name *dn)
{
    uint32_t i = b->e.n_streams;
    struct fsp_stream *st = &b->e.streams[i];
    char detail[NTFS_DETAIL_LEN], *name = NULL;
    const char *why;
    ntfs_attr *na;

    if (dn->len) {
        name = utf16_to_utf8(dn->name, dn->len, false, &why);
        if (!name) {
            warn_damaged(s, &b->e, "data stream skipped: %s", why);
            return;
        }
    }
    reset_log_capture();
    na = ntfs_attr_open(ni, AT_DATA, dn->len ? dn->name : AT_UNNAMED, dn->len);
    if (!na) {
        warn_damaged(s, &b->e, "cannot open data stream %s: %s%s", name ? name : "(unnamed)",
                     strerror(errno_or(EIO)), ntfs_detail(detail, sizeof detail));
        st->name = name;
        st->flags = FSP_STREAM_UNREADABLE;
        b->e.n_streams++;
        return;
    }
    /* Links and directories carry data only in named streams. */
    if (!dn->len && b->e.type != FSP_T_REG && na->data_size == 0) {
        ntfs_attr_close(na);
        return;
    }
    st->name = name;
    b->attrs[i] = na;
    b->e.n_streams++;
    describe_stream(s, b, i);
}

static int collect_streams(struct ntfs_scan *s, ntfs_inode *ni, struct built_entry *b)
{
    struct data_name *names = NULL;
    uint32_t n = 0;
    int ret = list_data_names(s, ni, &b->e, &names, &n);

    if (ret < 0)
        return ret;
    if (b->e.type == FSP_T_REG && (!n || names[0].len))
        warn_damaged(s, &b->e, "file has no unnamed data stream");
    if (n) {
        b->e.streams = calloc(n, sizeof *b->e.streams);
        b->srcs = calloc(n, sizeof *b->srcs);
        b->attrs = calloc(n, sizeof *b->attrs);
        if (!b->e.streams || !b->srcs || !b->attrs) {
            data_names_free(names, n);
            return -ENOMEM;
        }
    }
    for (uint32_t i = 0; i < n; i++)
        add_stream(s, ni, b, &names[i]);
    data_names_free(names, n);
    return 0;
}

/* ---- one entry ----------------------------------------------------------- */

static bool is_volatile_name(const char *name)
{
    return !strcasecmp(name, "pagefile.sys") || !strcasecmp(name, "hiberfil.sys") ||
           !strcasecmp(name, "swapfile.sys");
}

static void set_type(struct fsp_entry *e, ntfs_inode *ni, bool is_root)
{
    bool is_dir = ni->mrec->flags & MFT_RECORD_IS_DIRECTORY;

    if (e->symlink && is_root) {
        /* The root is walked whatever it claims to be. */
        free(e->symlink);
        e->symlink = NULL;
    }
    if (e->symlink) {
        e->type = FSP_T_SYMLINK;
        e->mode = 0120777;
        e->size = strlen(e->symlink);
    } else if (is_dir) {
        e->type = FSP_T_DIR;
        e->mode = 0040755;
    } else {
        e->type = FSP_T_REG;
        e->mode = 0100644;
        e->size = ni->data_size > 0 ? (uint64_t)ni->data_size : 0;
    }
}

/* Fills B for NI, reached through C (NULL for the root) in directory PARENT_NO.
 * Returns 0 or a negative errno that must stop the scan. */
static int build_entry(struct ntfs_scan *s, ntfs_inode *ni, const struct child *c,
                       uint64_t parent_no, unsigned depth, struct built_entry *b)
{
    memset(b, 0, sizeof *b);
    fill_identity(s, ni, &b->e);
    scan_file_names(s, ni, c, parent_no, &b->e);
    read_reparse(s, ni, &b->e);
    set_type(&b->e, ni, !c);
    read_security(s, ni, &b->e);
    if (depth == 1 && b->e.type == FSP_T_REG && is_volatile_name(c->name))
        b->e.flags |= FSP_ENTRY_VOLATILE;
    if (!(ni->mrec->flags & MFT_RECORD_IS_DIRECTORY) && fsp_vol_inode_seen(s->v, ni->mft_no)) {
        b->e.flags |= FSP_ENTRY_HARDLINK;
        if (b->e.nlink < 2)
            fsp_vol_warn(s->v, s->path, "ntfs: MFT record %llu has more paths than links",
                         (unsigned long long)ni->mft_no);
        return 0;
    }
    return collect_streams(s, ni, b);
}

/* ---- the tree ------------------------------------------------------------ */

struct child_list {
    struct ntfs_scan *s;
    struct child *items;
    size_t count, cap;
    bool truncated, oom;
};

static void child_list_free(struct child_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i].name);
    free(l->items);
}

/* ntfs_readdir callback: only collects, the walk happens once it returns. */
static int collect_child(void *ctx, const ntfschar *name, const int name_len, const int name_type,
                         const s64 pos, const MFT_REF mref, const unsigned dt_type)
{
    struct child_list *l = ctx;
    const char *why;
    char *utf8;

    /* An 8.3 name is reported as the dos_name of its Win32 twin. */
    if (name_type == FILE_NAME_DOS)
        return 0;
    if (l->count >= NTFS_MAX_DIR_NAMES) {
        l->truncated = true;
        return -1;
    }
    utf8 = utf16_to_utf8(name, name_len > 0 ? (size_t)name_len : 0, true, &why);
    if (!utf8 || !strcmp(utf8, ".") || !strcmp(utf8, "..")) {
        fsp_vol_warn(l->s->v, l->s->path, "ntfs: entry for MFT record %llu skipped: %s",
                     (unsigned long long)MREF(mref), utf8 ? "reserved name" : why);
        free(utf8);
        return 0;
    }
    if (l->count == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        struct child *items = realloc(l->items, ncap * sizeof *items);

        if (!items) {
            free(utf8);
            l->oom = true;
            return -1;
        }
        l->items = items;
        l->cap = ncap;
    }
    l->items[l->count++] = (struct child){ .name = utf8, .mref = mref, .name_type = (uint8_t)name_type };
    return 0;
}

/* ntfs_readdir walks every bit of the index bitmap, so a corrupt, huge bitmap
 * or index allocation would keep it busy for hours. */
static bool index_is_plausible(struct ntfs_scan *s, ntfs_inode *dir_ni)
{
    ntfs_attr *ia = ntfs_attr_open(dir_ni, AT_INDEX_ALLOCATION, NTFS_INDEX_I30, 4), *bmp;
    bool ok;

    if (!ia)
        return true; /* small directory, or ntfs_readdir reports the error */
    bmp = ntfs_attr_open(dir_ni, AT_BITMAP, NTFS_INDEX_I30, 4);
    ok = ia->data_size >= 0 && (uint64_t)ia->data_size <= s->vol_bytes;
    if (ok && bmp)
        ok = bmp->data_size >= 0 &&
             (uint64_t)bmp->data_size <= (uint64_t)ia->data_size / (NTFS_BLOCK_SIZE * 8) + 8;
    if (bmp)
        ntfs_attr_close(bmp);
    ntfs_attr_close(ia);
    return ok;
}

static int list_children(struct ntfs_scan *s, ntfs_inode *dir_ni, unsigned depth,
                         struct child_list *l, struct fsp_entry *e)
{
    /* Start past the "." and ".." that ntfs_readdir makes up: making up ".."
     * fails when the directory has lost its FILE_NAME. */
    s64 pos = 2;
    char detail[NTFS_DETAIL_LEN];
    int ret, err;

    l->s = s;
    if (depth + 1 > FSP_MAX_DEPTH) {
        warn_damaged(s, e, "directory nesting exceeds %u levels; contents skipped",
                     FSP_MAX_DEPTH);
        return 0;
    }
    if (!index_is_plausible(s, dir_ni)) {
        warn_damaged(s, e, "directory index has an implausible size; contents skipped");
        return 0;
    }
    reset_log_capture();
    ret = ntfs_readdir(dir_ni, &pos, l, collect_child);
    err = errno_or(EIO);
    if (l->oom)
        return fsp_vol_fail(s->v, -ENOMEM, "ntfs: %s: %s", s->path, strerror(ENOMEM));
    if (l->truncated)
        warn_damaged(s, e, "more than %u names in the directory; the rest are skipped",
                     NTFS_MAX_DIR_NAMES);
    else if (ret < 0)
        warn_damaged(s, e, "cannot read the directory index: %s%s; %zu names listed",
                     strerror(err), ntfs_detail(detail, sizeof detail), l->count);
    return 0;
}

static int visit_child(struct ntfs_scan *s, const struct child *c, unsigned depth,
                       uint64_t parent_no);

static int walk_children(struct ntfs_scan *s, const struct child_list *l, unsigned depth,
                         uint64_t parent_no)
{
    for (size_t i = 0; i < l->count; i++) {
        int ret = visit_child(s, &l->items[i], depth, parent_no);

        if (ret < 0)
            return ret;
    }
    return 0;
}

/* Emits NI (closing it) and then walks its children.  DEPTH is 0 for the root. */
static int visit_inode(struct ntfs_scan *s, ntfs_inode *ni, const struct child *c,
                       uint64_t parent_no, unsigned depth)
{
    struct child_list kids = { 0 };
    struct built_entry b;
    uint64_t self = ni->mft_no;
    int ret;

    ret = build_entry(s, ni, c, parent_no, depth, &b);
    if (ret == -ENOMEM)
        ret = fsp_vol_fail(s->v, ret, "ntfs: %s: %s", s->path, strerror(ENOMEM));
    if (ret == 0 && b.e.type == FSP_T_DIR)
        ret = list_children(s, ni, depth, &kids, &b.e);
    if (ret == 0)
        ret = fsp_vol_emit(s->v, &b.e, b.srcs);
    built_entry_free(&b);
    ntfs_inode_close(ni);
    if (ret == 0)
        ret = walk_children(s, &kids, depth + 1, self);
    child_list_free(&kids);
    return ret;
}

/* False (after a warning) when NI must not be walked: an extent record, or a
 * directory already walked through another path. */
static bool inode_is_walkable(struct ntfs_scan *s, ntfs_inode *ni, int *err)
{
    int added;

    if (ni->mrec->base_mft_record) {
        fsp_vol_warn(s->v, s->path, "ntfs: MFT record %llu is an extension record; skipped",
                     (unsigned long long)ni->mft_no);
        return false;
    }
    if (!(ni->mrec->flags & MFT_RECORD_IS_DIRECTORY))
        return true;
    added = mft_set_add(&s->walked_dirs, ni->mft_no);
    if (added < 0)
        *err = fsp_vol_fail(s->v, added, "ntfs: %s: %s", s->path, strerror(-added));
    else if (!added)
        fsp_vol_warn(s->v, s->path, "ntfs: directory MFT record %llu is reached twice; skipped",
                     (unsigned long long)ni->mft_no);
    return added > 0;
}

static int open_and_visit(struct ntfs_scan *s, const struct child *c, unsigned depth,
                          uint64_t parent_no)
{
    char detail[NTFS_DETAIL_LEN];
    ntfs_inode *ni;
    int err = 0;

    reset_log_capture();
    ni = ntfs_inode_open(s->vol, c->mref);
    if (!ni) {
        err = errno_or(EIO);
        if (err == ENOENT)
            fsp_vol_warn(s->v, s->path, "ntfs: MFT record %llu is not in use; stale directory "
                         "entry skipped", (unsigned long long)MREF(c->mref));
        else
            fsp_vol_warn(s->v, s->path, "ntfs: cannot open MFT record %llu: %s%s",
                         (unsigned long long)MREF(c->mref), strerror(err),
                         ntfs_detail(detail, sizeof detail));
        return 0;
    }
    if (!inode_is_walkable(s, ni, &err)) {
        ntfs_inode_close(ni);
        return err;
    }
    return visit_inode(s, ni, c, parent_no, depth);
}

static int visit_child(struct ntfs_scan *s, const struct child *c, unsigned depth,
                       uint64_t parent_no)
{
    uint64_t no = MREF(c->mref);
    size_t saved = s->path_len;
    int ret;

    /* The metafiles live in the root; their clusters stay raw metadata. */
    if (no < FILE_first_user) {
        if (depth != 1)
            fsp_vol_warn(s->v, s->path, "ntfs: entry %s refers to metafile record %llu; "
                         "skipped", c->name, (unsigned long long)no);
        return 0;
    }
    if (!path_push(s, c->name)) {
        fsp_vol_warn(s->v, s->path, "ntfs: entry %s: path longer than %u bytes; skipped",
                     c->name, FSP_MAX_PATH - 1);
        return 0;
    }
    ret = open_and_visit(s, c, depth, parent_no);
    path_pop(s, saved);
    return ret;
}

static int walk_root(struct ntfs_scan *s)
{
    char detail[NTFS_DETAIL_LEN];
    ntfs_inode *ni;
    int ret;

    strcpy(s->path, "/");
    s->path_len = 1;
    reset_log_capture();
    ni = ntfs_inode_open(s->vol, FILE_root);
    if (!ni) {
        ret = errno_or(EIO);
        return fsp_vol_fail(s->v, -ret, "ntfs: cannot open the root directory: %s%s",
                            strerror(ret), ntfs_detail(detail, sizeof detail));
    }
    if (!(ni->mrec->flags & MFT_RECORD_IS_DIRECTORY)) {
        ntfs_inode_close(ni);
        return fsp_vol_fail(s->v, -ENOTDIR, "ntfs: the root (MFT record 5) is not a directory");
    }
    ret = mft_set_add(&s->walked_dirs, FILE_root);
    if (ret < 0) {
        ntfs_inode_close(ni);
        return fsp_vol_fail(s->v, ret, "ntfs: %s", strerror(-ret));
    }
    return visit_inode(s, ni, NULL, FILE_root, 0);
}

int fsp_ntfs_scan(struct fsp_vol *v)
{
    struct dev_ctx dctx = { .v = v };
    struct ntfs_scan *s;
    int ret;

    silence_libntfs();
    s = calloc(1, sizeof *s);
    if (!s)
        return fsp_vol_fail(v, -ENOMEM, "ntfs: %s", strerror(ENOMEM));
    s->v = v;
    s->wants_data = fsp_vol_wants_data(v);
    ret = mount_volume(v, &dctx, &s->vol);
    if (ret < 0) {
        free(s);
        return ret;
    }
    s->scx.vol = s->vol;
    s->sd_buf = malloc(NTFS_MAX_SD);
    if (!s->sd_buf)
        ret = fsp_vol_fail(v, -ENOMEM, "ntfs: %s", strerror(ENOMEM));
    else
        ret = set_geometry(s);
    if (ret == 0)
        ret = walk_root(s);
    ntfs_umount(s->vol, FALSE);
    free(s->sd_buf);
    free(s->referenced);
    free(s->metadata);
    free(s->walked_dirs.slots);
    free(s);
    return ret;
}
