/* The ext2/3/4 backend.  libext2fs reads the filesystem through an io_manager
 * of our own that serves blocks with fsp_vol_pread, so the partition is never
 * copied and nothing can be written.  libext2fs parses the superblock, group
 * descriptors, bitmaps, inodes, extent nodes and xattrs; block maps and
 * directory blocks are walked here, so every walk has a bound derived from the
 * filesystem's own size and a hostile image cannot make it loop. */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <et/com_err.h>
#include <ext2fs/ext2fs.h>

#define EXT_IO_NAME_FMT "fspvol:%p"
#define EXT_IO_CACHE_BYTES (1u << 20)
#define EXT_IO_CACHE_MIN_SLOTS 16u
#define EXT_IO_CACHE_MAX_SLOTS 256u
#define EXT_MAX_DIR_ENTRIES (1u << 22)
#define EXT_MAX_DIR_WARNINGS 16u
#define EXT_MAX_SYMLINK 4095u   /* longest target symlink(2) accepts */
#define EXT_IBLOCK_BYTES (sizeof(((struct ext2_inode *)0)->i_block))
#define EXT_INDIRECT_LEVELS 3
#define EXT_ERR_MAX 256
#define EXT_NSEC_PER_SEC 1000000000u

/* ---- library setup ------------------------------------------------------ */

/* libext2fs reports some problems (bad bitmap ranges) through com_err, which
 * prints to stderr by default; fsparse never prints. */
static void ext_silent_com_err(const char *whoami, long code, const char *fmt, va_list args)
{
}

static pthread_once_t ext_lib_once = PTHREAD_ONCE_INIT;

static void ext_lib_init(void)
{
    initialize_ext2_error_table();
    set_com_err_hook(ext_silent_com_err);
}

/* ---- the io_manager ----------------------------------------------------- */

/* A small direct-mapped cache of single-block reads: libext2fs rereads the
 * same inode table, extent and xattr blocks many times, and a read may cost a
 * round trip to qemu-nbd. */
struct ext_io {
    struct fsp_vol *vol;
    uint32_t n_slots;
    uint8_t *slot_data;
    uint64_t *slot_tag; /* block + 1; 0 marks an empty slot */
};

static struct struct_io_manager ext_io_manager;

static void ext_io_drop_cache(struct ext_io *io)
{
    free(io->slot_data);
    free(io->slot_tag);
    io->slot_data = NULL;
    io->slot_tag = NULL;
    io->n_slots = 0;
}

/* The cache is an optimisation: without memory for it, reads go straight through. */
static void ext_io_alloc_cache(struct ext_io *io, uint32_t block_size)
{
    uint32_t n = EXT_IO_CACHE_BYTES / block_size;
    if (n < EXT_IO_CACHE_MIN_SLOTS)
        n = EXT_IO_CACHE_MIN_SLOTS;
    if (n > EXT_IO_CACHE_MAX_SLOTS)
        n = EXT_IO_CACHE_MAX_SLOTS;
    io->slot_data = malloc((size_t)n * block_size);
    io->slot_tag = calloc(n, sizeof *io->slot_tag);
    if (io->slot_data && io->slot_tag)
        io->n_slots = n;
    else
        ext_io_drop_cache(io);
}

static errcode_t ext_io_open(const char *name, int flags, io_channel *channel)
{
    void *vol = NULL;
    if (!name || sscanf(name, EXT_IO_NAME_FMT, &vol) != 1 || !vol)
        return EXT2_ET_BAD_DEVICE_NAME;
    if (flags & IO_FLAG_RW)
        return EXT2_ET_RO_FILSYS;
    io_channel ch = calloc(1, sizeof *ch);
    struct ext_io *io = calloc(1, sizeof *io);
    char *copy = strdup(name);
    if (!ch || !io || !copy) {
        free(ch);
        free(io);
        free(copy);
        return EXT2_ET_NO_MEMORY;
    }
    io->vol = vol;
    ch->magic = EXT2_ET_MAGIC_IO_CHANNEL;
    ch->manager = &ext_io_manager;
    ch->name = copy;
    ch->block_size = 1024;
    ch->refcount = 1;
    ch->private_data = io;
    *channel = ch;
    return 0;
}

static errcode_t ext_io_close(io_channel ch)
{
    if (--ch->refcount > 0)
        return 0;
    struct ext_io *io = ch->private_data;
    ext_io_drop_cache(io);
    free(io);
    free(ch->name);
    free(ch);
    return 0;
}

static errcode_t ext_io_set_blksize(io_channel ch, int blksize)
{
    if (blksize <= 0)
        return EXT2_ET_INVALID_ARGUMENT;
    if (ch->block_size != blksize) {
        ext_io_drop_cache(ch->private_data);
        ch->block_size = blksize;
    }
    return 0;
}

static errcode_t ext_io_pread(struct ext_io *io, void *buf, uint64_t len, uint64_t off)
{
    return fsp_vol_pread(io->vol, buf, (size_t)len, off) < 0 ? EXT2_ET_SHORT_READ : 0;
}

static errcode_t ext_io_read_one(struct ext_io *io, uint64_t block, uint32_t bs, void *data)
{
    if (!io->n_slots)
        ext_io_alloc_cache(io, bs);
    if (!io->n_slots)
        return ext_io_pread(io, data, bs, block * bs);
    uint32_t slot = (uint32_t)(block % io->n_slots);
    uint8_t *cached = io->slot_data + (size_t)slot * bs;
    if (io->slot_tag[slot] != block + 1) {
        io->slot_tag[slot] = 0;
        errcode_t err = ext_io_pread(io, cached, bs, block * bs);
        if (err)
            return err;
        io->slot_tag[slot] = block + 1;
    }
    memcpy(data, cached, bs);
    return 0;
}

/* COUNT < 0 asks for -COUNT bytes rather than blocks (superblock reads). */
static errcode_t ext_io_read_blk64(io_channel ch, unsigned long long block, int count, void *data)
{
    struct ext_io *io = ch->private_data;
    uint64_t bs = (uint64_t)ch->block_size;
    uint64_t len = count < 0 ? (uint64_t)(-(int64_t)count) : (uint64_t)count * bs;
    uint64_t vol_len = fsp_vol_length(io->vol);
    if (len == 0)
        return 0;
    if (block > vol_len / bs || len > vol_len - block * bs || len > SIZE_MAX)
        return EXT2_ET_SHORT_READ;
    errcode_t err = count == 1 ? ext_io_read_one(io, block, (uint32_t)bs, data)
                               : ext_io_pread(io, data, len, block * bs);
    /* What libext2fs reads is the filesystem's structure (file data is read by
     * the core): those blocks must come back, whatever the bitmap says. */
    if (!err)
        fsp_vol_mark_in_use(io->vol, block * bs, len, true);
    return err;
}

static errcode_t ext_io_read_blk(io_channel ch, unsigned long block, int count, void *data)
{
    return ext_io_read_blk64(ch, block, count, data);
}

static errcode_t ext_io_write_blk(io_channel ch, unsigned long block, int count,
                                  const void *data)
{
    return EXT2_ET_RO_FILSYS;
}

static errcode_t ext_io_write_blk64(io_channel ch, unsigned long long block, int count,
                                    const void *data)
{
    return EXT2_ET_RO_FILSYS;
}

static errcode_t ext_io_write_byte(io_channel ch, unsigned long offset, int count,
                                   const void *data)
{
    return EXT2_ET_RO_FILSYS;
}

static errcode_t ext_io_flush(io_channel ch)
{
    return 0;
}

static errcode_t ext_io_set_option(io_channel ch, const char *option, const char *arg)
{
    return EXT2_ET_INVALID_ARGUMENT;
}

static errcode_t ext_io_discard(io_channel ch, unsigned long long block,
                                unsigned long long count)
{
    return EXT2_ET_RO_FILSYS;
}

static errcode_t ext_io_readahead(io_channel ch, unsigned long long block,
                                  unsigned long long count)
{
    return 0;
}

static struct struct_io_manager ext_io_manager = {
    .magic = EXT2_ET_MAGIC_IO_MANAGER,
    .name = "fsparse volume",
    .open = ext_io_open,
    .close = ext_io_close,
    .set_blksize = ext_io_set_blksize,
    .read_blk = ext_io_read_blk,
    .write_blk = ext_io_write_blk,
    .flush = ext_io_flush,
    .write_byte = ext_io_write_byte,
    .set_option = ext_io_set_option,
    .read_blk64 = ext_io_read_blk64,
    .write_blk64 = ext_io_write_blk64,
    .discard = ext_io_discard,
    .cache_readahead = ext_io_readahead,
    .zeroout = ext_io_discard,
};

/* ---- scan state --------------------------------------------------------- */

struct ext_child {
    uint32_t ino;
    uint32_t name_len;
    size_t name_off;
};

/* A directory being walked: its sorted entries and the next one to visit. */
struct ext_dir {
    ext2_ino_t ino;
    uint32_t depth;
    char *path;
    size_t path_len;
    struct ext_child *kids;
    uint32_t n_kids, cap_kids, next;
    char *names;
    size_t names_len, names_cap;
    bool seen_dot, seen_dotdot, truncated;
    uint32_t warnings;
};

struct ext_scan {
    struct fsp_vol *v;
    ext2_filsys fs;
    uint32_t bs;
    uint64_t blocks;      /* blocks in the filesystem */
    uint64_t first_valid; /* lowest block number that can hold file data */
    bool want_data;
    ext2fs_inode_bitmap visited_dirs;
    struct ext_dir *stack; /* FSP_MAX_DEPTH frames */
    uint32_t depth;
    uint8_t *block_buf;
    uint32_t *ind_buf[EXT_INDIRECT_LEVELS];
    char path[FSP_MAX_PATH];
};

static int ext_errno(errcode_t err)
{
    return err == EXT2_ET_SHORT_READ || err == EXT2_ET_SHORT_WRITE ? -EIO : -EINVAL;
}

/* ---- block maps ---------------------------------------------------------- */

/* The blocks of one inode, in logical order, as byte extents. */
struct ext_map {
    struct fsp_extent *ext;
    uint32_t n, cap;
    uint64_t next_lblk;     /* logical blocks below this are already mapped */
    uint64_t mapped_blocks;
    bool failed;
    char why[EXT_ERR_MAX];
};

static bool ext_map_fail(struct ext_map *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static bool ext_map_fail(struct ext_map *m, const char *fmt, ...)
{
    if (!m->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(m->why, sizeof m->why, fmt, ap);
        va_end(ap);
        m->failed = true;
    }
    return false;
}

static bool ext_map_grow(struct ext_map *m)
{
    uint32_t cap = m->cap ? m->cap * 2 : 8;
    if (cap > FSP_MAX_EXTENTS)
        cap = FSP_MAX_EXTENTS;
    struct fsp_extent *ext = realloc(m->ext, (size_t)cap * sizeof *ext);
    if (!ext)
        return ext_map_fail(m, "out of memory for %u extents", cap);
    m->ext = ext;
    m->cap = cap;
    return true;
}

static bool ext_map_add(const struct ext_scan *s, struct ext_map *m, uint64_t lblk, uint64_t pblk,
                        uint64_t len, uint32_t flags)
{
    if (len == 0)
        return ext_map_fail(m, "empty extent at logical block %" PRIu64, lblk);
    if (pblk < s->first_valid || pblk >= s->blocks || len > s->blocks - pblk)
        return ext_map_fail(m, "extent at block %" PRIu64 " (+%" PRIu64
                            ") lies outside the filesystem of %" PRIu64 " blocks",
                            pblk, len, s->blocks);
    if (lblk < m->next_lblk)
        return ext_map_fail(m, "extents overlap or are out of order at logical block %" PRIu64,
                            lblk);
    if (len > s->blocks - m->mapped_blocks)
        return ext_map_fail(m, "maps more blocks than the filesystem holds");
    m->next_lblk = lblk + len;
    m->mapped_blocks += len;
    uint64_t logical = lblk * s->bs, physical = pblk * s->bs, length = len * s->bs;
    struct fsp_extent *last = m->n ? &m->ext[m->n - 1] : NULL;
    if (last && last->flags == flags && last->logical + last->length == logical &&
        last->physical + last->length == physical) {
        last->length += length;
        return true;
    }
    if (m->n == FSP_MAX_EXTENTS)
        return ext_map_fail(m, "more than %u extents", FSP_MAX_EXTENTS);
    if (m->n == m->cap && !ext_map_grow(m))
        return false;
    m->ext[m->n++] = (struct fsp_extent){logical, physical, length, flags};
    return true;
}

/* Leaves plus two visits per index node; a legitimate tree of a filesystem of
 * N blocks cannot need more than 4N steps, nor a stream more than the extent cap. */
static uint64_t ext_tree_budget(const struct ext_scan *s)
{
    uint64_t by_size = s->blocks * 4 + 64, by_cap = (uint64_t)FSP_MAX_EXTENTS * 4 + 64;
    return by_size < by_cap ? by_size : by_cap;
}

static void ext_map_extent_tree(struct ext_scan *s, ext2_ino_t ino,
                                const struct ext2_inode_large *in, struct ext_map *m)
{
    /* extent_open2 keeps this pointer and may rewrite an all-zero i_block. */
    struct ext2_inode copy;
    memcpy(&copy, in, sizeof copy);
    ext2_extent_handle_t h;
    errcode_t err = ext2fs_extent_open2(s->fs, ino, &copy, &h);
    if (err) {
        ext_map_fail(m, "cannot open the extent tree: %s", error_message(err));
        return;
    }
    uint64_t budget = ext_tree_budget(s);
    struct ext2fs_extent ex;
    for (err = ext2fs_extent_get(h, EXT2_EXTENT_ROOT, &ex); !err;
         err = ext2fs_extent_get(h, EXT2_EXTENT_NEXT, &ex)) {
        if (budget-- == 0) {
            ext_map_fail(m, "the extent tree has more nodes than the filesystem can hold");
            break;
        }
        if (!(ex.e_flags & EXT2_EXTENT_FLAGS_LEAF))
            continue;
        uint32_t flags = (ex.e_flags & EXT2_EXTENT_FLAGS_UNINIT) ? FSP_EXT_UNWRITTEN : 0;
        if (!ext_map_add(s, m, ex.e_lblk, ex.e_pblk, ex.e_len, flags))
            break;
    }
    if (err && err != EXT2_ET_EXTENT_NO_NEXT)
        ext_map_fail(m, "corrupt extent tree: %s", error_message(err));
    ext2fs_extent_free(h);
}

struct ext_ind_walk {
    struct ext_scan *s;
    struct ext_map *m;
    uint64_t reads_left; /* a file cannot have more indirect blocks than the fs */
};

/* LEVEL 1 holds data block pointers, 2 and 3 point to the level below. */
static bool ext_map_indirect_block(struct ext_ind_walk *w, uint64_t blk, unsigned level,
                                   uint64_t first_lblk)
{
    struct ext_scan *s = w->s;
    if (blk < s->first_valid || blk >= s->blocks)
        return ext_map_fail(w->m, "indirect block %" PRIu64 " lies outside the filesystem", blk);
    if (w->reads_left == 0)
        return ext_map_fail(w->m, "more indirect blocks than the filesystem holds");
    w->reads_left--;
    uint32_t *ptrs = s->ind_buf[level - 1];
    errcode_t err = io_channel_read_blk64(s->fs->io, blk, 1, ptrs);
    if (err)
        return ext_map_fail(w->m, "cannot read indirect block %" PRIu64 ": %s", blk,
                            error_message(err));
    uint32_t per = s->bs / 4;
    uint64_t span = 1;
    for (unsigned i = 1; i < level; i++)
        span *= per;
    for (uint32_t i = 0; i < per; i++) {
        uint32_t p = ext2fs_le32_to_cpu(ptrs[i]);
        if (!p)
            continue;
        uint64_t lblk = first_lblk + i * span;
        bool ok = level == 1 ? ext_map_add(s, w->m, lblk, p, 1, 0)
                             : ext_map_indirect_block(w, p, level - 1, lblk);
        if (!ok)
            return false;
    }
    return true;
}

static void ext_map_indirect(struct ext_scan *s, const struct ext2_inode_large *in,
                             struct ext_map *m)
{
    for (uint64_t i = 0; i < EXT2_NDIR_BLOCKS; i++)
        if (in->i_block[i] && !ext_map_add(s, m, i, in->i_block[i], 1, 0))
            return;
    struct ext_ind_walk w = {s, m, s->blocks};
    uint64_t per = s->bs / 4, span = 1, first = EXT2_NDIR_BLOCKS;
    for (unsigned level = 1; level <= EXT_INDIRECT_LEVELS; level++) {
        span *= per;
        uint32_t blk = in->i_block[EXT2_IND_BLOCK + level - 1];
        if (blk && !ext_map_indirect_block(&w, blk, level, first))
            return;
        first += span;
    }
}

static void ext_map_inode(struct ext_scan *s, ext2_ino_t ino, const struct ext2_inode_large *in,
                          struct ext_map *m)
{
    if (in->i_flags & EXT4_EXTENTS_FL)
        ext_map_extent_tree(s, ino, in, m);
    else
        ext_map_indirect(s, in, m);
}

/* Blocks an inode maps are in use even where the bitmap says free, and even
 * past its size (the parts the core does not claim). */
static void ext_mark_map(struct ext_scan *s, const struct ext_map *m, bool is_metadata)
{
    for (uint32_t i = 0; i < m->n; i++)
        fsp_vol_mark_in_use(s->v, m->ext[i].physical, m->ext[i].length, is_metadata);
}

/* Reads the first LEN bytes of a mapped inode; holes and unwritten extents are zeros. */
static errcode_t ext_read_mapped(struct ext_scan *s, const struct ext_map *m, uint8_t *buf,
                                 size_t len)
{
    memset(buf, 0, len);
    for (uint32_t i = 0; i < m->n; i++) {
        const struct fsp_extent *x = &m->ext[i];
        if (x->logical >= len)
            break;
        if (x->flags & FSP_EXT_UNWRITTEN)
            continue;
        for (uint64_t at = 0; at < x->length && x->logical + at < len; at += s->bs) {
            errcode_t err = io_channel_read_blk64(s->fs->io, (x->physical + at) / s->bs, 1,
                                                  s->block_buf);
            if (err)
                return err;
            size_t n = len - (x->logical + at) < s->bs ? len - (x->logical + at) : s->bs;
            memcpy(buf + x->logical + at, s->block_buf, n);
        }
    }
    return 0;
}

/* ---- one inode as an entry ----------------------------------------------- */

struct ext_bytes {
    uint8_t *data;
    size_t len;
};

struct ext_node {
    struct ext_scan *s;
    ext2_ino_t ino;
    struct ext2_inode_large in;
    struct ext2_xattr_handle *xh;
    uint32_t xattr_cap;
    struct fsp_entry e;
    struct fsp_stream stream;
    struct fsp_stream_src src;
    struct ext_bytes inline_data;
};

static void ext_node_warn(struct ext_node *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void ext_node_warn(struct ext_node *n, const char *fmt, ...)
{
    char msg[EXT_ERR_MAX * 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fsp_vol_warn(n->s->v, n->e.path, "ext4: inode %u: %s", n->ino, msg);
    n->e.flags |= FSP_ENTRY_DAMAGED;
}

static uint8_t ext_entry_type(uint16_t mode)
{
    switch (mode & LINUX_S_IFMT) {
    case LINUX_S_IFREG: return FSP_T_REG;
    case LINUX_S_IFDIR: return FSP_T_DIR;
    case LINUX_S_IFLNK: return FSP_T_SYMLINK;
    case LINUX_S_IFCHR: return FSP_T_CHR;
    case LINUX_S_IFBLK: return FSP_T_BLK;
    case LINUX_S_IFIFO: return FSP_T_FIFO;
    case LINUX_S_IFSOCK: return FSP_T_SOCK;
    default: return 0;
    }
}

/* Bytes of the inode that are really on disk; the extra fields (nanoseconds,
 * creation time) exist only when they fit. */
static size_t ext_inode_bytes(const struct ext_scan *s, const struct ext2_inode_large *in)
{
    size_t inode_size = EXT2_INODE_SIZE(s->fs->super);
    if (inode_size <= EXT2_GOOD_OLD_INODE_SIZE ||
        in->i_extra_isize > inode_size - EXT2_GOOD_OLD_INODE_SIZE)
        return EXT2_GOOD_OLD_INODE_SIZE;
    return EXT2_GOOD_OLD_INODE_SIZE + in->i_extra_isize;
}

/* The low two bits of an extra field extend the signed 32-bit seconds past
 * 2038; the upper 30 bits are nanoseconds. */
static struct fsp_time ext_time(uint32_t sec, bool has_extra, uint32_t extra)
{
    struct fsp_time t = {.sec = (int32_t)sec, .nsec = 0};
    if (has_extra) {
        t.sec += (int64_t)(extra & EXT4_EPOCH_MASK) << 32;
        t.nsec = extra >> EXT4_EPOCH_BITS;
    }
    return t;
}

static void ext_fill_times(struct ext_node *n)
{
    const struct ext2_inode_large *in = &n->in;
    size_t size = ext_inode_bytes(n->s, in);
    n->e.atime = ext_time(in->i_atime, inode_includes(size, i_atime_extra), in->i_atime_extra);
    n->e.mtime = ext_time(in->i_mtime, inode_includes(size, i_mtime_extra), in->i_mtime_extra);
    n->e.ctime = ext_time(in->i_ctime, inode_includes(size, i_ctime_extra), in->i_ctime_extra);
    if (inode_includes(size, i_crtime))
        n->e.btime = ext_time(in->i_crtime, inode_includes(size, i_crtime_extra),
                              in->i_crtime_extra);
    struct fsp_time *times[] = {&n->e.atime, &n->e.mtime, &n->e.ctime, &n->e.btime};
    bool clamped = false;
    for (size_t i = 0; i < sizeof times / sizeof *times; i++) {
        if (times[i]->nsec >= EXT_NSEC_PER_SEC) {
            times[i]->nsec = 0;
            clamped = true;
        }
    }
    if (clamped)
        ext_node_warn(n, "timestamp nanoseconds out of range; set to 0");
}

/* Old encoding (8-bit major and minor) in i_block[0], else the new one in i_block[1]. */
static uint64_t ext_rdev(const struct ext2_inode_large *in)
{
    uint32_t old = ext2fs_le32_to_cpu(in->i_block[0]);
    uint32_t dev = ext2fs_le32_to_cpu(in->i_block[1]);
    uint64_t major, minor;
    if (old) {
        major = (old >> 8) & 0xff;
        minor = old & 0xff;
    } else {
        major = (dev & 0xfff00) >> 8;
        minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    }
    return major << 32 | minor;
}

static void ext_fill_entry(struct ext_node *n, const char *path, uint8_t type)
{
    const struct ext2_inode_large *in = &n->in;
    struct fsp_entry *e = &n->e;
    e->volume = fsp_vol_index(n->s->v);
    e->ino = n->ino;
    e->path = (char *)path;
    e->type = type;
    e->mode = in->i_mode;
    e->uid = inode_uid(*in);
    e->gid = inode_gid(*in);
    e->nlink = in->i_links_count;
    e->size = EXT2_I_SIZE(in);
    e->attributes = in->i_flags;
    e->generation = in->i_generation;
    if (type == FSP_T_CHR || type == FSP_T_BLK)
        e->rdev = ext_rdev(in);
    ext_fill_times(n);
}

/* ---- extended attributes ------------------------------------------------- */

static int ext_collect_xattr(char *name, char *value, size_t value_len, void *priv)
{
    struct ext_node *n = priv;
    /* system.data is where inline data lives; the kernel does not list it. */
    if (strcmp(name, "system.data") == 0)
        return 0;
    if (value_len > FSP_MAX_XATTR_VALUE) {
        ext_node_warn(n, "extended attribute %.200s of %zu bytes exceeds %u; skipped", name,
                      value_len, FSP_MAX_XATTR_VALUE);
        return 0;
    }
    if (n->e.n_xattrs == n->xattr_cap) {
        uint32_t cap = n->xattr_cap ? n->xattr_cap * 2 : 4;
        struct fsp_xattr *x = realloc(n->e.xattrs, cap * sizeof *x);
        if (!x)
            goto nomem;
        n->e.xattrs = x;
        n->xattr_cap = cap;
    }
    struct fsp_xattr *x = &n->e.xattrs[n->e.n_xattrs];
    x->name = strdup(name);
    x->value = malloc(value_len ? value_len : 1);
    if (!x->name || !x->value) {
        free(x->name);
        free(x->value);
        goto nomem;
    }
    if (value_len)
        memcpy(x->value, value, value_len);
    x->len = (uint32_t)value_len;
    n->e.n_xattrs++;
    return 0;
nomem:
    ext_node_warn(n, "out of memory reading extended attributes");
    return XATTR_ABORT;
}

static int ext_xattr_cmp(const void *a, const void *b)
{
    return strcmp(((const struct fsp_xattr *)a)->name, ((const struct fsp_xattr *)b)->name);
}

/* Keeps the handle open in N->xh: inline data is read from it too. */
static void ext_load_xattrs(struct ext_node *n)
{
    errcode_t err = ext2fs_xattrs_open(n->s->fs, n->ino, &n->xh);
    if (err) {
        n->xh = NULL;
        if (err != EXT2_ET_MISSING_EA_FEATURE)
            ext_node_warn(n, "cannot open extended attributes: %s", error_message(err));
        return;
    }
    err = ext2fs_xattrs_read(n->xh);
    if (err)
        ext_node_warn(n, "cannot read extended attributes: %s", error_message(err));
    ext2fs_xattrs_iterate(n->xh, ext_collect_xattr, n);
    if (n->e.n_xattrs > 1)
        qsort(n->e.xattrs, n->e.n_xattrs, sizeof *n->e.xattrs, ext_xattr_cmp);
}

/* Inline data is i_block followed by the value of system.data. */
static errcode_t ext_load_inline(struct ext_node *n)
{
    void *ea = NULL;
    size_t ea_len = 0;
    errcode_t err = EXT2_ET_EA_KEY_NOT_FOUND;
    if (n->xh)
        err = ext2fs_xattr_get(n->xh, "system.data", &ea, &ea_len);
    if (err == EXT2_ET_EA_KEY_NOT_FOUND)
        ea_len = 0;
    else if (err)
        return err;
    uint8_t *buf = malloc(EXT_IBLOCK_BYTES + ea_len);
    if (!buf) {
        ext2fs_free_mem(&ea);
        return EXT2_ET_NO_MEMORY;
    }
    memcpy(buf, n->in.i_block, EXT_IBLOCK_BYTES);
    if (ea_len)
        memcpy(buf + EXT_IBLOCK_BYTES, ea, ea_len);
    ext2fs_free_mem(&ea);
    n->inline_data = (struct ext_bytes){buf, EXT_IBLOCK_BYTES + ea_len};
    return 0;
}

/* ---- symlinks ------------------------------------------------------------ */

/* On failure WHY says what went wrong. */
static bool ext_read_slow_symlink(struct ext_node *n, uint8_t *buf, size_t len, char *why)
{
    struct ext_map m = {0};
    ext_map_inode(n->s, n->ino, &n->in, &m);
    ext_mark_map(n->s, &m, true);
    errcode_t err = m.failed ? 0 : ext_read_mapped(n->s, &m, buf, len);
    if (m.failed)
        snprintf(why, EXT_ERR_MAX, "%s", m.why);
    else if (err)
        snprintf(why, EXT_ERR_MAX, "%s", error_message(err));
    free(m.ext);
    return !m.failed && !err;
}

static bool ext_read_symlink_bytes(struct ext_node *n, uint8_t *buf, size_t len, char *why)
{
    if (n->in.i_flags & EXT4_INLINE_DATA_FL) {
        errcode_t err = ext_load_inline(n);
        if (err || n->inline_data.len < len) {
            snprintf(why, EXT_ERR_MAX, "%s",
                     err ? error_message(err) : "inline data is shorter than the target");
            return false;
        }
        memcpy(buf, n->inline_data.data, len);
        return true;
    }
    /* Like the kernel and e2fsprogs: a target shorter than i_block lives in it. */
    if (len < EXT_IBLOCK_BYTES) {
        memcpy(buf, n->in.i_block, len);
        return true;
    }
    return ext_read_slow_symlink(n, buf, len, why);
}

static void ext_read_symlink(struct ext_node *n)
{
    uint64_t size = EXT2_I_SIZE(&n->in);
    if (n->in.i_flags & EXT4_ENCRYPT_FL) {
        ext_node_warn(n, "encrypted symlink target is not decoded");
        return;
    }
    if (size == 0 || size > EXT_MAX_SYMLINK) {
        ext_node_warn(n, "symlink target of %" PRIu64 " bytes is out of range", size);
        return;
    }
    char *target = calloc(1, (size_t)size + 1);
    if (!target) {
        ext_node_warn(n, "out of memory reading the symlink target");
        return;
    }
    char why[EXT_ERR_MAX];
    if (!ext_read_symlink_bytes(n, (uint8_t *)target, (size_t)size, why)) {
        ext_node_warn(n, "cannot read the symlink target: %s", why);
        free(target);
        return;
    }
    if (strlen(target) != size)
        ext_node_warn(n, "symlink target holds a NUL byte; truncated there");
    n->e.symlink = target;
}

/* ---- regular file data --------------------------------------------------- */

static int ext_inline_read(void *ctx, void *buf, size_t len, uint64_t off)
{
    const struct ext_bytes *b = ctx;
    memset(buf, 0, len);
    if (off < b->len) {
        size_t n = b->len - off < len ? (size_t)(b->len - off) : len;
        memcpy(buf, b->data + off, n);
    }
    return 0;
}

static void ext_stream_unreadable(struct ext_node *n)
{
    n->stream.flags |= FSP_STREAM_UNREADABLE;
    n->e.flags |= FSP_ENTRY_DAMAGED;
}

static void ext_attach_inline(struct ext_node *n)
{
    errcode_t err = ext_load_inline(n);
    if (err) {
        ext_node_warn(n, "cannot read inline data: %s", error_message(err));
        ext_stream_unreadable(n);
        return;
    }
    if (n->stream.size > n->inline_data.len)
        ext_node_warn(n, "inline data holds %zu bytes but the size is %" PRIu64
                      "; the rest reads as zeros",
                      n->inline_data.len, n->stream.size);
    n->src.read = ext_inline_read;
    n->src.ctx = &n->inline_data;
}

static bool ext_has_holes(const struct fsp_stream *st, uint32_t bs)
{
    uint64_t want = st->size / bs + (st->size % bs != 0), covered = 0;
    for (uint32_t i = 0; i < st->n_extents; i++) {
        uint64_t first = st->extents[i].logical / bs;
        uint64_t end = first + st->extents[i].length / bs;
        if (first >= want)
            break;
        covered += (end < want ? end : want) - first;
    }
    return covered < want;
}

static void ext_attach_extents(struct ext_node *n)
{
    struct ext_map m = {0};
    ext_map_inode(n->s, n->ino, &n->in, &m);
    if (m.failed) {
        ext_node_warn(n, "%s; data not read", m.why);
        ext_stream_unreadable(n);
        ext_mark_map(n->s, &m, false);
        free(m.ext);
        return;
    }
    n->stream.extents = m.ext;
    n->stream.n_extents = m.n;
    if (ext_has_holes(&n->stream, n->s->bs))
        n->stream.flags |= FSP_STREAM_SPARSE;
}

static void ext_build_stream(struct ext_node *n)
{
    bool is_inline = n->in.i_flags & EXT4_INLINE_DATA_FL;
    n->stream.size = EXT2_I_SIZE(&n->in);
    n->src.valid_size = UINT64_MAX;
    n->e.streams = &n->stream;
    n->e.n_streams = 1;
    /* No key here: ciphertext is what the blocks hold, and what a sync moves. */
    if (n->in.i_flags & EXT4_ENCRYPT_FL)
        n->stream.flags |= FSP_STREAM_ENCRYPTED;
    if (is_inline)
        n->stream.flags |= FSP_STREAM_RESIDENT;
    if (!n->s->want_data)
        return;
    if (is_inline)
        ext_attach_inline(n);
    else
        ext_attach_extents(n);
}

static void ext_node_free(struct ext_node *n)
{
    for (uint32_t i = 0; i < n->e.n_xattrs; i++) {
        free(n->e.xattrs[i].name);
        free(n->e.xattrs[i].value);
    }
    free(n->e.xattrs);
    free(n->e.symlink);
    free(n->stream.extents);
    free(n->inline_data.data);
    if (n->xh)
        ext2fs_xattrs_close(&n->xh);
}

static int ext_emit(struct ext_scan *s, ext2_ino_t ino, const struct ext2_inode_large *in,
                    const char *path, uint8_t type)
{
    struct ext_node n = {.s = s, .ino = ino, .in = *in};
    ext_fill_entry(&n, path, type);
    bool hardlink = n.e.nlink > 1 && fsp_vol_inode_seen(s->v, ino);
    if (hardlink)
        n.e.flags |= FSP_ENTRY_HARDLINK;
    ext_load_xattrs(&n);
    if (type == FSP_T_SYMLINK)
        ext_read_symlink(&n);
    if (type == FSP_T_REG && !hardlink)
        ext_build_stream(&n);
    int rc = fsp_vol_emit(s->v, &n.e, &n.src);
    ext_node_free(&n);
    return rc;
}

/* ---- directories --------------------------------------------------------- */

static void ext_dir_warn(struct ext_scan *s, struct ext_dir *d, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A corrupt directory can hold millions of bad entries; past a few, count them. */
static void ext_dir_warn(struct ext_scan *s, struct ext_dir *d, const char *fmt, ...)
{
    if (d->warnings++ >= EXT_MAX_DIR_WARNINGS)
        return;
    char msg[EXT_ERR_MAX * 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fsp_vol_warn(s->v, d->path, "ext4: directory inode %u: %s", d->ino, msg);
}

/* Raw name bytes for a message: printable ASCII as is, the rest as \xNN. */
static void ext_quote_name(const char *name, size_t len, char *out, size_t out_size)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < out_size; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, out_size - o, "\\x%02x", c);
    }
    out[o] = '\0';
}

static bool ext_is_dot(const char *name, size_t len)
{
    return len == 1 && name[0] == '.';
}

static bool ext_is_dotdot(const char *name, size_t len)
{
    return len == 2 && name[0] == '.' && name[1] == '.';
}

static bool ext_dir_grow(struct ext_dir *d, size_t name_len)
{
    if (d->n_kids == d->cap_kids) {
        uint32_t cap = d->cap_kids ? d->cap_kids * 2 : 16;
        struct ext_child *k = realloc(d->kids, cap * sizeof *k);
        if (!k)
            return false;
        d->kids = k;
        d->cap_kids = cap;
    }
    if (!d->names || d->names_len + name_len > d->names_cap) {
        size_t cap = d->names_cap ? d->names_cap * 2 : 256;
        while (cap < d->names_len + name_len)
            cap *= 2;
        char *names = realloc(d->names, cap);
        if (!names)
            return false;
        d->names = names;
        d->names_cap = cap;
    }
    return true;
}

/* Returns false when the directory must not be read further. */
static bool ext_dir_add(struct ext_scan *s, struct ext_dir *d, uint32_t ino, const char *name,
                        size_t len)
{
    if (ino == 0)
        return true;
    /* The first "." and ".." are the links every directory has; later ones are
     * reported when the entries are visited. */
    if (ext_is_dot(name, len) && !d->seen_dot) {
        d->seen_dot = true;
        return true;
    }
    if (ext_is_dotdot(name, len) && !d->seen_dotdot) {
        d->seen_dotdot = true;
        return true;
    }
    if (d->n_kids >= EXT_MAX_DIR_ENTRIES) {
        d->truncated = true;
        return false;
    }
    if (!ext_dir_grow(d, len)) {
        ext_dir_warn(s, d, "out of memory after %u entries", d->n_kids);
        d->truncated = true;
        return false;
    }
    memcpy(d->names + d->names_len, name, len);
    d->kids[d->n_kids++] = (struct ext_child){ino, (uint32_t)len, d->names_len};
    d->names_len += len;
    return true;
}

/* Like the kernel, a bad entry costs the rest of its block, not the directory. */
static bool ext_collect_dir_block(struct ext_scan *s, struct ext_dir *d, uint64_t pblk,
                                  uint64_t lblk)
{
    errcode_t err = ext2fs_read_dir_block4(s->fs, pblk, s->block_buf, 0, d->ino);
    if (err) {
        ext_dir_warn(s, d, "cannot read block %" PRIu64 ": %s", lblk, error_message(err));
        return true;
    }
    uint32_t off = 0;
    while (off + 8 <= s->bs) {
        struct ext2_dir_entry *de = (struct ext2_dir_entry *)(s->block_buf + off);
        unsigned int rec_len = 0;
        size_t name_len = (size_t)ext2fs_dirent_name_len(de);
        if (ext2fs_get_rec_len(s->fs, de, &rec_len) || rec_len < 8 || rec_len % 4 ||
            rec_len > s->bs - off || name_len + 8 > rec_len) {
            ext_dir_warn(s, d, "corrupt entry in block %" PRIu64 " at offset %u; rest of the "
                         "block skipped", lblk, off);
            return true;
        }
        if (!ext_dir_add(s, d, de->inode, de->name, name_len))
            return false;
        off += rec_len;
    }
    return true;
}

/* Blocks past i_size are not part of the directory (the kernel stops there too). */
static void ext_collect_block_dir(struct ext_scan *s, struct ext_dir *d,
                                  const struct ext2_inode_large *in)
{
    struct ext_map m = {0};
    ext_map_inode(s, d->ino, in, &m);
    ext_mark_map(s, &m, true);
    if (m.failed)
        ext_dir_warn(s, d, "%s; later blocks skipped", m.why);
    uint64_t size = EXT2_I_SIZE(in);
    uint64_t size_blocks = size / s->bs + (size % s->bs != 0);
    bool more = true;
    for (uint32_t i = 0; i < m.n && more; i++) {
        const struct fsp_extent *x = &m.ext[i];
        if (x->flags & FSP_EXT_UNWRITTEN)
            continue;
        uint64_t lblk = x->logical / s->bs, pblk = x->physical / s->bs;
        for (uint64_t b = 0; b < x->length / s->bs && more; b++) {
            if (lblk + b >= size_blocks)
                more = false;
            else
                more = ext_collect_dir_block(s, d, pblk + b, lblk + b);
        }
    }
    free(m.ext);
}

struct ext_inline_dir {
    struct ext_scan *s;
    struct ext_dir *d;
};

static int ext_collect_inline_dirent(ext2_ino_t dir, int entry, struct ext2_dir_entry *de,
                                     int offset, int blocksize, char *buf, void *priv)
{
    struct ext_inline_dir *c = priv;
    size_t len = (size_t)ext2fs_dirent_name_len(de);
    return ext_dir_add(c->s, c->d, de->inode, de->name, len) ? 0 : DIRENT_ABORT;
}

/* Inline directories are small and bounded; libext2fs parses them. */
static void ext_collect_inline_dir(struct ext_scan *s, struct ext_dir *d)
{
    struct ext_inline_dir c = {s, d};
    errcode_t err = ext2fs_dir_iterate2(s->fs, d->ino, 0, NULL, ext_collect_inline_dirent, &c);
    if (err)
        ext_dir_warn(s, d, "cannot read inline directory: %s", error_message(err));
}

static int ext_child_cmp(const void *a, const void *b, void *names)
{
    const struct ext_child *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp((char *)names + x->name_off, (char *)names + y->name_off, n);
    if (c)
        return c;
    return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

static int ext_push_dir(struct ext_scan *s, ext2_ino_t ino, const struct ext2_inode_large *in,
                        const char *path, uint32_t depth)
{
    struct ext_dir *d = &s->stack[s->depth];
    memset(d, 0, sizeof *d);
    d->ino = ino;
    d->depth = depth;
    d->path = strdup(path);
    if (!d->path)
        return fsp_vol_fail(s->v, -ENOMEM, "ext4: out of memory");
    d->path_len = strlen(path);
    s->depth++;
    if (in->i_flags & EXT4_INLINE_DATA_FL)
        ext_collect_inline_dir(s, d);
    else
        ext_collect_block_dir(s, d, in);
    if (d->truncated && d->n_kids >= EXT_MAX_DIR_ENTRIES)
        ext_dir_warn(s, d, "more than %u entries; the rest are skipped", EXT_MAX_DIR_ENTRIES);
    /* Name order makes the manifest independent of hash order and layout. */
    if (d->n_kids > 1)
        qsort_r(d->kids, d->n_kids, sizeof *d->kids, ext_child_cmp, d->names);
    return 0;
}

static void ext_pop_dir(struct ext_scan *s)
{
    struct ext_dir *d = &s->stack[--s->depth];
    if (d->warnings > EXT_MAX_DIR_WARNINGS)
        fsp_vol_warn(s->v, d->path, "ext4: directory inode %u: %u more problems not listed",
                     d->ino, d->warnings - EXT_MAX_DIR_WARNINGS);
    free(d->kids);
    free(d->names);
    free(d->path);
}

static bool ext_name_ok(struct ext_scan *s, struct ext_dir *d, const char *name, size_t len)
{
    char quoted[256];
    ext_quote_name(name, len, quoted, sizeof quoted);
    if (len == 0)
        ext_dir_warn(s, d, "entry with an empty name skipped");
    else if (memchr(name, '/', len) || memchr(name, '\0', len))
        ext_dir_warn(s, d, "name \"%s\" holds '/' or NUL; skipped", quoted);
    else if (ext_is_dot(name, len) || ext_is_dotdot(name, len))
        ext_dir_warn(s, d, "extra \"%s\" entry skipped", quoted);
    else
        return true;
    return false;
}

static bool ext_build_path(struct ext_scan *s, struct ext_dir *d, const char *name, size_t len)
{
    size_t base = d->path_len == 1 ? 0 : d->path_len; /* the root is "/" */
    if (base + 1 + len >= FSP_MAX_PATH) {
        char quoted[256];
        ext_quote_name(name, len, quoted, sizeof quoted);
        ext_dir_warn(s, d, "path to \"%s\" exceeds %d bytes; skipped", quoted, FSP_MAX_PATH);
        return false;
    }
    memcpy(s->path, d->path, base);
    s->path[base] = '/';
    memcpy(s->path + base + 1, name, len);
    s->path[base + 1 + len] = '\0';
    return true;
}

static bool ext_ino_ok(struct ext_scan *s, struct ext_dir *d, uint32_t ino)
{
    const struct ext2_super_block *sb = s->fs->super;
    if (ino > sb->s_inodes_count)
        ext_dir_warn(s, d, "%s refers to inode %u beyond the last (%u); skipped", s->path, ino,
                     sb->s_inodes_count);
    else if (ino < EXT2_FIRST_INO(sb) && ino != EXT2_ROOT_INO)
        ext_dir_warn(s, d, "%s refers to reserved inode %u; skipped", s->path, ino);
    else
        return true;
    return false;
}

/* What the kernel would refuse to open through a directory entry. */
static bool ext_inode_usable(struct ext_scan *s, const char *path, ext2_ino_t ino,
                             const struct ext2_inode_large *in, uint8_t *type)
{
    *type = ext_entry_type(in->i_mode);
    if (in->i_links_count == 0)
        fsp_vol_warn(s->v, path, "ext4: inode %u is deleted (no links); skipped", ino);
    else if (in->i_flags & EXT4_EA_INODE_FL)
        fsp_vol_warn(s->v, path, "ext4: inode %u holds an extended attribute value; skipped",
                     ino);
    else if (!*type)
        fsp_vol_warn(s->v, path, "ext4: inode %u has unknown file type (mode 0%o); skipped",
                     ino, in->i_mode);
    else
        return true;
    return false;
}

static errcode_t ext_read_inode(struct ext_scan *s, ext2_ino_t ino, struct ext2_inode_large *in)
{
    memset(in, 0, sizeof *in);
    return ext2fs_read_inode_full(s->fs, ino, (struct ext2_inode *)in, (int)sizeof *in);
}

static int ext_enter_dir(struct ext_scan *s, struct ext_dir *parent, ext2_ino_t ino,
                         const struct ext2_inode_large *in)
{
    if (ext2fs_test_inode_bitmap2(s->visited_dirs, ino)) {
        fsp_vol_warn(s->v, s->path,
                     "ext4: directory inode %u is linked more than once or forms a loop; "
                     "skipped", ino);
        return 0;
    }
    ext2fs_mark_inode_bitmap2(s->visited_dirs, ino);
    int rc = ext_emit(s, ino, in, s->path, FSP_T_DIR);
    if (rc < 0)
        return rc;
    if (parent->depth + 1 >= FSP_MAX_DEPTH) {
        fsp_vol_warn(s->v, s->path, "ext4: directories nest deeper than %d; contents skipped",
                     FSP_MAX_DEPTH);
        return 0;
    }
    return ext_push_dir(s, ino, in, s->path, parent->depth + 1);
}

static bool ext_same_name(const struct ext_dir *d, const struct ext_child *a,
                          const struct ext_child *b)
{
    return a->name_len == b->name_len &&
           memcmp(d->names + a->name_off, d->names + b->name_off, a->name_len) == 0;
}

static int ext_visit_child(struct ext_scan *s, struct ext_dir *d, const struct ext_child *k,
                           const struct ext_child *prev)
{
    const char *name = d->names + k->name_off;
    if (!ext_name_ok(s, d, name, k->name_len) || !ext_build_path(s, d, name, k->name_len))
        return 0;
    if (prev && ext_same_name(d, k, prev)) {
        ext_dir_warn(s, d, "duplicate entry %s skipped", s->path);
        return 0;
    }
    if (!ext_ino_ok(s, d, k->ino))
        return 0;
    struct ext2_inode_large in;
    errcode_t err = ext_read_inode(s, k->ino, &in);
    if (err) {
        fsp_vol_warn(s->v, s->path, "ext4: cannot read inode %u: %s", k->ino,
                     error_message(err));
        return 0;
    }
    uint8_t type;
    if (!ext_inode_usable(s, s->path, k->ino, &in, &type))
        return 0;
    if (type == FSP_T_DIR)
        return ext_enter_dir(s, d, k->ino, &in);
    return ext_emit(s, k->ino, &in, s->path, type);
}

/* Depth first with an explicit stack, so nesting costs heap, not C stack. */
static int ext_walk_dirs(struct ext_scan *s)
{
    while (s->depth > 0) {
        struct ext_dir *d = &s->stack[s->depth - 1];
        if (d->next == d->n_kids) {
            ext_pop_dir(s);
            continue;
        }
        const struct ext_child *k = &d->kids[d->next];
        const struct ext_child *prev = d->next ? k - 1 : NULL;
        d->next++;
        int rc = ext_visit_child(s, d, k, prev);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int ext_walk_tree(struct ext_scan *s)
{
    errcode_t err = ext2fs_allocate_inode_bitmap(s->fs, "visited directories", &s->visited_dirs);
    if (err)
        return fsp_vol_fail(s->v, -ENOMEM, "ext4: cannot track directories: %s",
                            error_message(err));
    struct ext2_inode_large in;
    err = ext_read_inode(s, EXT2_ROOT_INO, &in);
    if (err)
        return fsp_vol_fail(s->v, ext_errno(err), "ext4: cannot read the root inode: %s",
                            error_message(err));
    if (!LINUX_S_ISDIR(in.i_mode))
        return fsp_vol_fail(s->v, -EINVAL, "ext4: the root inode is not a directory (mode 0%o)",
                            in.i_mode);
    ext2fs_mark_inode_bitmap2(s->visited_dirs, EXT2_ROOT_INO);
    int rc = ext_emit(s, EXT2_ROOT_INO, &in, "/", FSP_T_DIR);
    if (rc < 0)
        return rc;
    rc = ext_push_dir(s, EXT2_ROOT_INO, &in, "/", 0);
    return rc < 0 ? rc : ext_walk_dirs(s);
}

/* ---- opening and the allocation bitmap ----------------------------------- */

static int ext_open(struct ext_scan *s)
{
    char name[64];
    snprintf(name, sizeof name, EXT_IO_NAME_FMT, (void *)s->v);
    errcode_t err = ext2fs_open2(name, NULL, EXT2_FLAG_64BITS | EXT2_FLAG_IGNORE_CSUM_ERRORS, 0,
                                 0, &ext_io_manager, &s->fs);
    if (err) {
        s->fs = NULL;
        return fsp_vol_fail(s->v, ext_errno(err), "ext4: cannot open the filesystem: %s",
                            error_message(err));
    }
    /* Bitmaps as extent trees: memory follows fragmentation, not size. */
    s->fs->default_bitmap_type = EXT2FS_BMAP64_RBTREE;
    s->bs = s->fs->blocksize;
    s->blocks = ext2fs_blocks_count(s->fs->super);
    s->first_valid = s->fs->super->s_first_data_block ? s->fs->super->s_first_data_block : 1;
    s->want_data = fsp_vol_wants_data(s->v);
    s->stack = calloc(FSP_MAX_DEPTH, sizeof *s->stack);
    s->block_buf = malloc(s->bs);
    bool ok = s->stack && s->block_buf;
    for (int i = 0; i < EXT_INDIRECT_LEVELS; i++)
        ok = (s->ind_buf[i] = malloc(s->bs)) && ok;
    return ok ? 0 : fsp_vol_fail(s->v, -ENOMEM, "ext4: out of memory");
}

static void ext_note_state(struct ext_scan *s)
{
    struct ext2_super_block *sb = s->fs->super;
    if (ext2fs_has_feature_journal_needs_recovery(sb))
        fsp_vol_warn(s->v, NULL, "ext4: the journal needs recovery; recent changes may be "
                     "missing from the manifest");
    if (sb->s_state & EXT2_ERROR_FS)
        fsp_vol_warn(s->v, NULL, "ext4: the filesystem is marked as having errors");
}

static int ext_report_geometry(struct ext_scan *s)
{
    if (s->blocks == 0 || s->blocks > fsp_vol_length(s->v) / s->bs)
        return fsp_vol_fail(s->v, -EINVAL,
                            "ext4: %" PRIu64 " blocks of %u bytes do not fit in the volume of "
                            "%" PRIu64 " bytes", s->blocks, s->bs, fsp_vol_length(s->v));
    return fsp_vol_set_geometry(s->v, s->bs, s->blocks);
}

static int ext_mark_run(struct ext_scan *s, uint64_t first, uint64_t count)
{
    int rc = fsp_vol_mark_allocated(s->v, first, count);
    return rc < 0 ? rc : 0;
}

/* Blocks below s_first_data_block (block 0 of 1 KiB filesystems) hold the boot
 * sector and are not in the bitmap, but they are in use. */
static int ext_report_allocation(struct ext_scan *s)
{
    errcode_t err = ext2fs_read_block_bitmap(s->fs);
    if (err) {
        fsp_vol_warn(s->v, NULL, "ext4: cannot read the block bitmap (%s); the whole "
                     "filesystem is covered as raw blocks", error_message(err));
        return ext_mark_run(s, 0, s->blocks);
    }
    ext2fs_block_bitmap map = s->fs->block_map;
    uint64_t first = s->fs->super->s_first_data_block, last = s->blocks - 1;
    int rc = first ? ext_mark_run(s, 0, first < s->blocks ? first : s->blocks) : 0;
    for (uint64_t pos = first; !rc && pos <= last;) {
        blk64_t start, end;
        if (ext2fs_find_first_set_block_bitmap2(map, pos, last, &start))
            break;
        if (start < pos)
            start = pos; /* bigalloc rounds to a cluster */
        if (ext2fs_find_first_zero_block_bitmap2(map, start, last, &end) || end > last)
            end = last + 1;
        if (end <= start)
            break;
        rc = ext_mark_run(s, start, end - start);
        pos = end;
    }
    ext2fs_free_block_bitmap(s->fs->block_map);
    s->fs->block_map = NULL;
    return rc;
}

/* A group's bitmaps and inode table; a damaged descriptor may point anywhere,
 * and the core keeps only what lies inside the filesystem. */
static void ext_mark_group_tables(struct ext_scan *s, dgrp_t g)
{
    ext2_filsys fs = s->fs;
    fsp_vol_mark_in_use(s->v, ext2fs_block_bitmap_loc(fs, g) * s->bs, s->bs, true);
    fsp_vol_mark_in_use(s->v, ext2fs_inode_bitmap_loc(fs, g) * s->bs, s->bs, true);
    uint64_t table = ext2fs_inode_table_loc(fs, g);
    if (table && table < s->blocks)
        fsp_vol_mark_in_use(s->v, table * s->bs, (uint64_t)fs->inode_blocks_per_group * s->bs,
                            true);
}

/* Superblock copies, group descriptors (with the blocks reserved for their
 * growth), bitmaps and inode tables, as the superblock lays them out: they
 * are used whatever the block bitmap says. */
static int ext_mark_group_structures(struct ext_scan *s)
{
    ext2fs_block_bitmap map;
    errcode_t err = ext2fs_allocate_block_bitmap(s->fs, "group structures", &map);
    if (err)
        return fsp_vol_fail(s->v, -ENOMEM, "ext4: out of memory: %s", error_message(err));
    for (dgrp_t g = 0; g < s->fs->group_desc_count; g++) {
        ext2fs_reserve_super_and_bgd(s->fs, g, map);
        ext_mark_group_tables(s, g);
    }
    uint64_t last = s->blocks - 1;
    /* The bitmap starts at the first data block (1 with 1 KiB blocks). */
    for (blk64_t pos = s->fs->super->s_first_data_block, start, end; pos <= last; pos = end) {
        if (ext2fs_find_first_set_block_bitmap2(map, pos, last, &start))
            break;
        if (ext2fs_find_first_zero_block_bitmap2(map, start, last, &end) || end > last)
            end = last + 1;
        if (end <= start)
            break;
        fsp_vol_mark_in_use(s->v, start * s->bs, (end - start) * s->bs, true);
    }
    ext2fs_free_block_bitmap(map);
    return 0;
}

struct ext_hidden_walk {
    struct ext_scan *s;
    uint64_t budget; /* a hostile tree could list the same blocks forever */
};

static int ext_mark_hidden_block(ext2_filsys fs, blk64_t *blocknr, e2_blkcnt_t blockcnt,
                                 blk64_t ref_blk, int ref_offset, void *priv)
{
    struct ext_hidden_walk *w = priv;
    if (w->budget-- == 0)
        return BLOCK_ABORT;
    fsp_vol_mark_in_use(w->s->v, *blocknr * w->s->bs, w->s->bs, true);
    return 0;
}

/* The inodes no directory names: reserved ones (the journal, the resize
 * inode, quotas) and those the superblock points to.  Their blocks, extent
 * nodes and xattr blocks are the filesystem's own.  libext2fs walks them: the
 * resize inode's map is not in logical order, which the file walk refuses. */
static void ext_mark_hidden_inode(struct ext_scan *s, ext2_ino_t ino)
{
    struct ext2_inode_large in;
    if (!ino || ino > s->fs->super->s_inodes_count || ext_read_inode(s, ino, &in))
        return;
    blk64_t acl = ext2fs_file_acl_block(s->fs, (struct ext2_inode *)&in);
    if (acl)
        fsp_vol_mark_in_use(s->v, acl * s->bs, s->bs, true);
    /* An unused reserved inode maps nothing; the bad-blocks inode has no mode. */
    if ((!in.i_blocks && !in.osd2.linux2.l_i_blocks_hi) || (in.i_flags & EXT4_INLINE_DATA_FL))
        return;
    struct ext_hidden_walk w = {s, ext_tree_budget(s)};
    ext2fs_block_iterate3(s->fs, ino, BLOCK_FLAG_READ_ONLY, NULL, ext_mark_hidden_block, &w);
}

static void ext_mark_hidden_inodes(struct ext_scan *s)
{
    const struct ext2_super_block *sb = s->fs->super;
    for (ext2_ino_t ino = 1; ino < EXT2_FIRST_INO(sb) && ino <= sb->s_inodes_count; ino++)
        if (ino != EXT2_ROOT_INO)
            ext_mark_hidden_inode(s, ino);
    const uint32_t named[] = {sb->s_journal_inum, sb->s_usr_quota_inum, sb->s_grp_quota_inum,
                              sb->s_prj_quota_inum, sb->s_orphan_file_inum};
    for (size_t i = 0; i < sizeof named / sizeof *named; i++)
        if (named[i] >= EXT2_FIRST_INO(sb))
            ext_mark_hidden_inode(s, named[i]);
}

static void ext_close(struct ext_scan *s)
{
    while (s->depth > 0)
        ext_pop_dir(s);
    free(s->stack);
    free(s->block_buf);
    for (int i = 0; i < EXT_INDIRECT_LEVELS; i++)
        free(s->ind_buf[i]);
    if (s->visited_dirs)
        ext2fs_free_inode_bitmap(s->visited_dirs);
    if (s->fs)
        ext2fs_free(s->fs);
}

int fsp_ext_scan(struct fsp_vol *v)
{
    pthread_once(&ext_lib_once, ext_lib_init);
    struct ext_scan s = {.v = v};
    int rc = ext_open(&s);
    if (!rc)
        rc = ext_report_geometry(&s);
    if (!rc)
        rc = ext_report_allocation(&s);
    if (!rc)
        rc = ext_mark_group_structures(&s);
    if (!rc) {
        ext_note_state(&s);
        ext_mark_hidden_inodes(&s);
        rc = ext_walk_tree(&s);
    }
    ext_close(&s);
    return rc;
}
