/* Partition tables and filesystem signatures, read with libblkid.
 *
 * libblkid reads through a file descriptor.  A raw image has one; a qcow2,
 * vmdk, vhdx, vdi or vpc image is only reachable through qemu-nbd (the kernel
 * nbd driver is not available here, and would need root anyway), and a memory
 * source has none.  For those, libblkid reads a mirror instead: a sparse memfd
 * as large as the virtual disk, into which we copy only the regions libblkid
 * looks at.  Bytes never copied read as zeros, which to libblkid is "no
 * signature here", so the mirror must hold every region a prober needs:
 *
 *  - the first and last 1 MiB of the disk: MBR, GPT header and entries, and
 *    the backup GPT;
 *  - the first 1 MiB of every partition found, and for an MBR logical the
 *    1 MiB after its end, where partitioners put the next EBR.  Each probe can
 *    reveal partitions whose metadata is not copied yet, so the table is
 *    probed again until a round copies nothing new;
 *  - for the filesystem probe of a partition: its first 1 MiB and last
 *    64 KiB, plus the NTFS MFT records (blkid reads $MFT and $Volume wherever
 *    the boot sector puts them, 3 GiB in on Windows) and the first cluster of
 *    a FAT32 root directory (the volume label).
 *
 * Raw images are probed in place through a descriptor of their own. */
#include "internal.h"
#include "source_private.h"

#include <blkid/blkid.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SECTOR 512u
#define META_SPAN (1u << 20)     /* bytes copied per metadata region */
#define FS_TAIL_SPAN (64u << 10) /* end-of-volume signatures (md, some swap) */
#define MAX_TABLE_ROUNDS (FSP_MAX_VOLUMES + 8)

/* ---- the descriptor libblkid reads --------------------------------------- */

struct range {
    uint64_t start, end;
};

struct blk_view {
    fsp_source *src;
    const char *path;
    uint64_t size;
    int fd;
    unsigned sector_size; /* logical sector size for the table; 0 = blkid's */
    bool mirrored;      /* fd is a sparse memfd filled on demand */
    bool grew;          /* a region was copied since the flag was cleared */
    struct range *copied;
    size_t n_copied, cap_copied;
    uint8_t *buf;
};

static int view_open(struct blk_view *v, fsp_source *src, fsp_error *err)
{
    *v = (struct blk_view){ .src = src, .path = fsp_source_path(src),
                            .size = fsp_source_size(src), .fd = -1 };
    int fd = fsp_source_reopen_fd(src);
    if (fd >= 0) {
        v->fd = fd;
        return 0;
    }
    if (fd != -EOPNOTSUPP)
        return fsp_fail(err, FSP_EK_OPEN, fd, "%s: cannot open for libblkid: %s", v->path,
                        strerror(-fd));
    v->mirrored = true;
    v->fd = memfd_create("fsparse-blkid-mirror", MFD_CLOEXEC);
    if (v->fd < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot create a memfd: %s", v->path,
                        strerror(errno));
    if (ftruncate(v->fd, (off_t)v->size) < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot size the blkid mirror: %s",
                        v->path, strerror(errno));
    v->buf = malloc(META_SPAN);
    if (!v->buf)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "%s: out of memory", v->path);
    return 0;
}

static void view_close(struct blk_view *v)
{
    if (v->fd >= 0)
        close(v->fd);
    free(v->copied);
    free(v->buf);
}

static bool view_has(const struct blk_view *v, uint64_t start, uint64_t end)
{
    for (size_t i = 0; i < v->n_copied; i++)
        if (v->copied[i].start <= start && end <= v->copied[i].end)
            return true;
    return false;
}

static int view_remember(struct blk_view *v, uint64_t start, uint64_t end, fsp_error *err)
{
    if (v->n_copied == v->cap_copied) {
        size_t cap = v->cap_copied ? 2 * v->cap_copied : 16;
        struct range *r = realloc(v->copied, cap * sizeof *r);
        if (!r)
            return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "%s: out of memory", v->path);
        v->copied = r;
        v->cap_copied = cap;
    }
    v->copied[v->n_copied++] = (struct range){ start, end };
    v->grew = true;
    return 0;
}

static int write_all(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Makes bytes [OFF, OFF+LEN) of the image (clipped to its size) readable
 * through v->fd.  A no-op for raw images. */
static int view_need(struct blk_view *v, uint64_t off, uint64_t len, fsp_error *err)
{
    if (!v->mirrored || off >= v->size || len == 0)
        return 0;
    uint64_t end = len > v->size - off ? v->size : off + len;
    if (view_has(v, off, end))
        return 0;
    for (uint64_t pos = off; pos < end;) {
        size_t n = end - pos < META_SPAN ? (size_t)(end - pos) : META_SPAN;
        int rc = fsp_source_pread(v->src, v->buf, n, pos, err);
        if (rc < 0)
            return rc;
        rc = write_all(v->fd, v->buf, n, pos);
        if (rc < 0)
            return fsp_fail(err, FSP_EK_IO, rc, "%s: cannot fill the blkid mirror: %s",
                            v->path, strerror(-rc));
        pos += n;
    }
    return view_remember(v, off, end, err);
}

/* ---- the partition table ------------------------------------------------- */

static void copy_str(char *dst, size_t cap, const char *s)
{
    size_t n = s ? strnlen(s, cap - 1) : 0;
    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
}

/* Partitions of a table nested in another partition (a BSD disklabel in an
 * MBR slice) lie inside their parent; the parent is the volume. */
static bool is_listed(blkid_partition par)
{
    if (blkid_partition_is_extended(par))
        return false;
    blkid_parttable tab = blkid_partition_get_table(par);
    return !tab || !blkid_parttable_get_parent(tab);
}

/* blkid_probe_get_partitions answers NULL both for "no table" and for an
 * error; a safe probe of the partitions chain tells them apart.  Returns 0
 * (no table), 1 (a protective MBR but no GPT blkid accepts), or an error. */
static int explain_no_table(struct blk_view *v, blkid_probe pr, fsp_error *err)
{
    errno = 0;
    int rc = blkid_do_safeprobe(pr);
    const char *pttype = NULL;
    if (rc == 1)
        return 0;
    if (rc == 0 && blkid_probe_lookup_value(pr, "PTTYPE", &pttype, NULL) == 0 &&
        strcmp(pttype, "PMBR") == 0)
        return 1;
    if (rc == 0)
        return fsp_fail(err, FSP_EK_FORMAT, -EINVAL,
                        "%s: libblkid finds a %s partition table but cannot list it", v->path,
                        pttype ? pttype : "unknown");
    if (rc == -2)
        return fsp_fail(err, FSP_EK_CORRUPT, -EINVAL,
                        "%s: conflicting partition table signatures", v->path);
    int e = errno > 0 ? errno : EIO;
    return fsp_fail(err, FSP_EK_IO, -e, "%s: libblkid cannot read the partition table: %s",
                    v->path, strerror(e));
}

/* Sets *LS_OUT to the partition list, or NULL when the image has no table.
 * The list belongs to *PR_OUT.  Returns 1 for a protective MBR whose GPT
 * blkid rejects at this sector size. */
static int probe_table(struct blk_view *v, blkid_probe *pr_out, blkid_partlist *ls_out,
                       fsp_error *err)
{
    blkid_probe pr = blkid_new_probe();
    if (!pr)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "%s: cannot create a blkid probe", v->path);
    if (blkid_probe_set_device(pr, v->fd, 0, (blkid_loff_t)v->size) != 0) {
        blkid_free_probe(pr);
        return fsp_fail(err, FSP_EK_IO, -EIO, "%s: libblkid cannot use the image", v->path);
    }
    if (v->sector_size)
        blkid_probe_set_sectorsize(pr, v->sector_size);
    blkid_probe_enable_superblocks(pr, 0);
    blkid_probe_enable_partitions(pr, 1);
    blkid_probe_set_partitions_flags(pr, BLKID_PARTS_ENTRY_DETAILS);
    blkid_partlist ls = blkid_probe_get_partitions(pr);
    int rc = 0;
    if (!ls || !blkid_partlist_get_table(ls)) {
        ls = NULL;
        rc = explain_no_table(v, pr, err);
        if (rc < 0) {
            blkid_free_probe(pr);
            return rc;
        }
    }
    *pr_out = pr;
    *ls_out = ls;
    return rc;
}

/* Copies into the mirror the regions that may hold more of the table. */
static int mirror_table_metadata(struct blk_view *v, blkid_partlist ls, fsp_error *err)
{
    int n = ls ? blkid_partlist_numof_partitions(ls) : 0;
    for (int i = 0; i < n; i++) {
        blkid_partition par = blkid_partlist_get_partition(ls, i);
        uint64_t start = (uint64_t)blkid_partition_get_start(par) * SECTOR;
        uint64_t len = (uint64_t)blkid_partition_get_size(par) * SECTOR;
        int rc = view_need(v, start, META_SPAN, err);
        if (rc == 0 && blkid_partition_is_logical(par))
            rc = view_need(v, start + len, META_SPAN, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int part_from_blkid(struct blk_view *v, blkid_partition par, struct fsp_part *p,
                           fsp_error *err)
{
    int partno = blkid_partition_get_partno(par);
    blkid_loff_t start = blkid_partition_get_start(par), len = blkid_partition_get_size(par);
    if (partno < 0 || start < 0 || len < 0)
        return fsp_fail(err, FSP_EK_CORRUPT, -EINVAL, "%s: libblkid returned a bad partition",
                        v->path);
    memset(p, 0, sizeof *p);
    p->index = (uint32_t)partno;
    /* blkid counts in 512-byte sectors whatever the table's sector size;
     * saturate so that absurd values fail the end-of-image check. */
    p->start = (uint64_t)start > UINT64_MAX / SECTOR ? UINT64_MAX : (uint64_t)start * SECTOR;
    p->length = (uint64_t)len > UINT64_MAX / SECTOR ? UINT64_MAX : (uint64_t)len * SECTOR;
    const char *type = blkid_partition_get_type_string(par);
    if (type)
        copy_str(p->type, sizeof p->type, type);
    else
        snprintf(p->type, sizeof p->type, "0x%02x", (unsigned)blkid_partition_get_type(par));
    copy_str(p->name, sizeof p->name, blkid_partition_get_name(par));
    copy_str(p->uuid, sizeof p->uuid, blkid_partition_get_uuid(par));
    return 0;
}

static int collect_parts(struct blk_view *v, blkid_partlist ls, char table[8],
                         struct fsp_part **parts, uint32_t *n_parts, fsp_error *err)
{
    blkid_parttable tab = ls ? blkid_partlist_get_table(ls) : NULL;
    int n = tab ? blkid_partlist_numof_partitions(ls) : 0;
    if (!tab || n <= 0) {
        copy_str(table, 8, tab ? blkid_parttable_get_type(tab) : "none");
        return 0;
    }
    copy_str(table, 8, blkid_parttable_get_type(tab));
    struct fsp_part *out = calloc((size_t)n, sizeof *out);
    if (!out)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "%s: out of memory", v->path);
    uint32_t count = 0;
    for (int i = 0; i < n; i++) {
        blkid_partition par = blkid_partlist_get_partition(ls, i);
        if (!par || !is_listed(par))
            continue;
        int rc = count >= FSP_MAX_VOLUMES
                     ? fsp_fail(err, FSP_EK_CORRUPT, -E2BIG,
                                "%s: more than %d partitions", v->path, FSP_MAX_VOLUMES)
                     : part_from_blkid(v, par, &out[count], err);
        if (rc < 0) {
            free(out);
            return rc;
        }
        count++;
    }
    *parts = out;
    *n_parts = count;
    return 0;
}

/* An image file has no sector size of its own and blkid assumes 512 bytes;
 * a disk with 4096-byte sectors then shows only its protective MBR. */
static int retry_with_4k_sectors(struct blk_view *v, fsp_error *err)
{
    if (v->sector_size == 4096)
        /* A cut-off image has lost its backup GPT header, and the primary's
         * usable range now exceeds the image, so blkid rejects both. */
        return fsp_fail(err, FSP_EK_FORMAT, -EINVAL,
                        "%s: protective MBR but no valid GPT for an image of %" PRIu64
                        " bytes: truncated image or bad partition table", v->path, v->size);
    v->sector_size = 4096;
    return 0;
}

/* Probes the table, growing the mirror until it holds all its metadata. */
static int read_table(struct blk_view *v, char table[8], struct fsp_part **parts,
                      uint32_t *n_parts, fsp_error *err)
{
    int rc = view_need(v, 0, META_SPAN, err);
    if (rc == 0 && v->size > META_SPAN)
        rc = view_need(v, v->size - META_SPAN, META_SPAN, err);
    for (int round = 0; rc == 0; round++) {
        blkid_probe pr = NULL;
        blkid_partlist ls = NULL;
        rc = probe_table(v, &pr, &ls, err);
        if (rc == 1) {
            blkid_free_probe(pr);
            rc = retry_with_4k_sectors(v, err);
            continue;
        }
        if (rc < 0)
            break;
        v->grew = false;
        rc = mirror_table_metadata(v, ls, err);
        bool settled = !v->grew || round + 1 >= MAX_TABLE_ROUNDS;
        if (rc == 0 && settled)
            rc = collect_parts(v, ls, table, parts, n_parts, err);
        blkid_free_probe(pr);
        if (settled)
            break;
    }
    return rc;
}

/* ---- checks -------------------------------------------------------------- */

static int cmp_part_start(const void *a, const void *b)
{
    const struct fsp_part *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static uint64_t part_end(const struct fsp_part *p)
{
    return p->length > UINT64_MAX - p->start ? UINT64_MAX : p->start + p->length;
}

/* Clipping would hide a truncated download or a damaged table, and the
 * backends would then read garbage: refuse instead. */
static int check_parts(const char *path, uint64_t size, struct fsp_part *parts, uint32_t n,
                       fsp_error *err)
{
    for (uint32_t i = 0; i < n; i++) {
        if (part_end(&parts[i]) > size)
            return fsp_fail(err, FSP_EK_FORMAT, -EINVAL,
                            "%s: partition %" PRIu32 " (%" PRIu64 "..%" PRIu64
                            ") extends past the end of the image (%" PRIu64
                            " bytes): truncated image or bad partition table",
                            path, parts[i].index, parts[i].start, part_end(&parts[i]), size);
    }
    if (n > 1)
        qsort(parts, n, sizeof *parts, cmp_part_start);
    for (uint32_t i = 1; i < n; i++) {
        const struct fsp_part *a = &parts[i - 1], *b = &parts[i];
        if (b->start < part_end(a))
            return fsp_fail(err, FSP_EK_CORRUPT, -EINVAL,
                            "%s: partitions %" PRIu32 " (%" PRIu64 "..%" PRIu64
                            ") and %" PRIu32 " (%" PRIu64 "..%" PRIu64 ") overlap",
                            path, a->index, a->start, part_end(a), b->index, b->start,
                            part_end(b));
    }
    return 0;
}

/* ---- filesystems --------------------------------------------------------- */

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return (uint32_t)le16(p) | (uint32_t)le16(p + 2) << 16; }
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

/* blkid's NTFS prober rejects the volume unless MFT records 0 and 3 read
 * back as "FILE" records; copy records 0..3. */
static int mirror_ntfs_mft(struct blk_view *v, uint64_t start, uint64_t len,
                           const uint8_t *boot, fsp_error *err)
{
    if (memcmp(boot + 3, "NTFS    ", 8) != 0)
        return 0;
    uint32_t sector = le16(boot + 0x0b), spc = boot[0x0d];
    if (spc > 0x80 && 256 - spc <= 16)
        spc = 1u << (256 - spc);
    int8_t per_record = (int8_t)boot[0x40];
    if (sector < 256 || sector > 4096 || spc == 0 || spc > (1u << 16))
        return 0;
    uint64_t cluster = (uint64_t)sector * spc;
    uint64_t record = per_record > 0 ? (uint64_t)per_record * cluster
                    : per_record < 0 && per_record > -24 ? 1ull << -per_record : 0;
    uint64_t mft_lcn = le64(boot + 0x30);
    if (record == 0 || record > META_SPAN || mft_lcn >= len / cluster)
        return 0;
    return view_need(v, start + mft_lcn * cluster, 4 * record, err);
}

/* The FAT32 volume label lives in the root directory, wherever the FATs end. */
static int mirror_fat32_root(struct blk_view *v, uint64_t start, uint64_t len,
                             const uint8_t *boot, fsp_error *err)
{
    uint32_t sector = le16(boot + 0x0b), spc = boot[0x0d], reserved = le16(boot + 0x0e);
    uint32_t fats = boot[0x10], fat32_len = le32(boot + 0x24), root = le32(boot + 0x2c);
    if (le16(boot + 0x16) != 0 || fat32_len == 0 || sector < 512 || sector > 4096 || spc == 0 ||
        root < 2 || le16(boot + 0x1fe) != 0xaa55)
        return 0;
    uint64_t data = ((uint64_t)reserved + (uint64_t)fats * fat32_len) * sector;
    uint64_t off = data + (uint64_t)(root - 2) * spc * sector;
    if (off >= len)
        return 0;
    return view_need(v, start + off, (uint64_t)spc * sector, err);
}

static int mirror_fs_metadata(struct blk_view *v, uint64_t start, uint64_t len, fsp_error *err)
{
    if (!v->mirrored || len < SECTOR)
        return 0;
    uint64_t tail = len < FS_TAIL_SPAN ? len : FS_TAIL_SPAN;
    int rc = view_need(v, start, META_SPAN < len ? META_SPAN : len, err);
    if (rc == 0)
        rc = view_need(v, start + len - tail, tail, err);
    uint8_t boot[SECTOR];
    if (rc == 0)
        rc = fsp_source_pread(v->src, boot, sizeof boot, start, err);
    if (rc == 0)
        rc = mirror_ntfs_mft(v, start, len, boot, err);
    if (rc == 0)
        rc = mirror_fat32_root(v, start, len, boot, err);
    return rc;
}

static void lookup(blkid_probe pr, const char *name, char *dst, size_t cap)
{
    const char *val = NULL;
    if (blkid_probe_lookup_value(pr, name, &val, NULL) == 0)
        copy_str(dst, cap, val);
}

/* Fills fs_type, fs_label and fs_uuid of P from the signatures in its range;
 * they stay "" when blkid finds none, or more than one (ambivalent). */
static int probe_fs(struct blk_view *v, struct fsp_part *p, fsp_error *err)
{
    int rc = mirror_fs_metadata(v, p->start, p->length, err);
    if (rc < 0 || p->length == 0)
        return rc;
    blkid_probe pr = blkid_new_probe();
    if (!pr)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "%s: cannot create a blkid probe", v->path);
    if (blkid_probe_set_device(pr, v->fd, (blkid_loff_t)p->start, (blkid_loff_t)p->length)) {
        blkid_free_probe(pr);
        return fsp_fail(err, FSP_EK_IO, -EIO, "%s: libblkid cannot use partition %" PRIu32,
                        v->path, p->index);
    }
    blkid_probe_enable_partitions(pr, 0);
    blkid_probe_enable_superblocks(pr, 1);
    blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_LABEL |
                                              BLKID_SUBLKS_UUID);
    errno = 0;
    int found = blkid_do_safeprobe(pr);
    if (found == 0) {
        lookup(pr, "TYPE", p->fs_type, sizeof p->fs_type);
        lookup(pr, "LABEL", p->fs_label, sizeof p->fs_label);
        lookup(pr, "UUID", p->fs_uuid, sizeof p->fs_uuid);
    } else if (found == -1) {
        int e = errno > 0 ? errno : EIO;
        rc = fsp_fail(err, FSP_EK_IO, -e,
                      "%s: libblkid cannot probe partition %" PRIu32 " for a filesystem: %s",
                      v->path, p->index, strerror(e));
    }
    blkid_free_probe(pr);
    return rc;
}

/* No partitions: the whole image may be one bare filesystem.  A boot sector
 * with its 0x55AA signature but an empty table (GRUB's stage 1 in front of a
 * bare ext filesystem) looks like an MBR to blkid, and is one only when no
 * filesystem starts at offset 0. */
static int probe_bare_fs(struct blk_view *v, char table[8], struct fsp_part **parts,
                         uint32_t *n_parts, fsp_error *err)
{
    struct fsp_part bare = { .index = 0, .start = 0, .length = v->size };
    int rc = probe_fs(v, &bare, err);
    if (rc < 0 || bare.fs_type[0] == '\0')
        return rc;
    copy_str(table, 8, "none");
    *parts = malloc(sizeof bare);
    if (!*parts)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "%s: out of memory", v->path);
    **parts = bare;
    *n_parts = 1;
    return 0;
}

int fsp_partitions(fsp_source *src, char table[8], struct fsp_part **parts, uint32_t *n_parts,
                   fsp_error *err)
{
    struct fsp_part *list = NULL;
    uint32_t n = 0;
    copy_str(table, 8, "none");
    *parts = NULL;
    *n_parts = 0;
    if (fsp_source_size(src) == 0)
        return 0;
    struct blk_view v;
    int rc = view_open(&v, src, err);
    if (rc == 0)
        rc = read_table(&v, table, &list, &n, err);
    if (rc == 0)
        rc = check_parts(v.path, v.size, list, n, err);
    for (uint32_t i = 0; rc == 0 && i < n; i++)
        rc = probe_fs(&v, &list[i], err);
    if (rc == 0 && n == 0)
        rc = probe_bare_fs(&v, table, &list, &n, err);
    view_close(&v);
    if (rc < 0) {
        free(list);
        copy_str(table, 8, "none");
        return rc;
    }
    *parts = list;
    *n_parts = n;
    return 0;
}
