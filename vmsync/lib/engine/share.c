/* Sharing a seed's blocks with the output (see share.h).
 *
 * A shared range is a copy-on-write copy: a later write to the seed leaves
 * the output as it was.  The bytes were checked against their hash when the
 * seed was read just before; a write to the seed in between shows in the
 * verification of the whole output (and the checkout then rebuilds). */
#include "engine/share.h"

#include <errno.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define BY_HAND_BUFFER (1u << 16)

void vms_share_init(struct vms_share *sh, int out_fd, const char *path)
{
    struct statvfs vfs;
    memset(sh, 0, sizeof *sh);
    sh->out_fd = out_fd;
    sh->out_path = path;
    sh->block = fstatvfs(out_fd, &vfs) == 0 && vfs.f_bsize ? vfs.f_bsize : 4096;
}

static int share_error(const struct vms_share *sh, const struct vms_share_source *from, int code,
                       const char *what, fsp_error *err)
{
    return fsp_fail(err, FSP_EK_IO, code, "%s: cannot %s from seed %s: %s", sh->out_path, what,
                    from->path, strerror(-code));
}

/* Errors that say these files cannot share blocks at all, rather than that
 * the call failed. */
static bool unsupported(int e)
{
    return e == EOPNOTSUPP || e == EXDEV || e == EINVAL || e == ENOTTY || e == ENOSYS ||
           e == EPERM || e == ETXTBSY;
}

static int copy_by_hand(struct vms_share *sh, const struct vms_share_source *from, uint64_t src,
                        uint64_t dst, uint64_t len, fsp_error *err)
{
    uint8_t buf[BY_HAND_BUFFER];
    while (len) {
        ssize_t n = pread(from->fd, buf, len < sizeof buf ? len : sizeof buf, (off_t)src);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return share_error(sh, from, n < 0 ? -errno : -EIO, "read", err);
        for (ssize_t done = 0; done < n;) {
            ssize_t w = pwrite(sh->out_fd, buf + done, (size_t)(n - done), (off_t)(dst + (uint64_t)done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return share_error(sh, from, w < 0 ? -errno : -ENOSPC, "copy", err);
            done += w;
        }
        src += (uint64_t)n;
        dst += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

/* Shares the whole blocks of the range and copies its ragged ends by hand.
 * Returns 1 when nothing was done: the blocks do not line up, or the
 * filesystem shares none (the seed is then written from now on). */
static int share_blocks(struct vms_share *sh, struct vms_share_source *from, uint64_t src,
                        uint64_t dst, uint64_t len, fsp_error *err)
{
    uint64_t b = sh->block, head = (b - dst % b) % b;
    if (src % b != dst % b || head + b > len)
        return 1;
    uint64_t core = (len - head) / b * b;
    struct file_clone_range r = {.src_fd = from->fd, .src_offset = src + head, .src_length = core,
                                 .dest_offset = dst + head};
    if (ioctl(sh->out_fd, FICLONERANGE, &r) < 0) {
        if (!unsupported(errno))
            return share_error(sh, from, -errno, "share blocks", err);
        from->mode = VMS_SHARE_WRITE;
        return 1;
    }
    sh->bytes_shared += core;
    int rc = copy_by_hand(sh, from, src, dst, head, err);
    uint64_t tail = head + core;
    return rc ? rc : copy_by_hand(sh, from, src + tail, dst + tail, len - tail, err);
}

static int place(struct vms_share *sh, struct vms_share_source *from, uint64_t src, uint64_t dst,
                 uint64_t len, fsp_error *err)
{
    int rc = from->mode == VMS_SHARE_CLONE ? share_blocks(sh, from, src, dst, len, err) : 1;
    return rc == 1 ? copy_by_hand(sh, from, src, dst, len, err) : rc;
}

int vms_share_flush(struct vms_share *sh, fsp_error *err)
{
    struct vms_share_source *from = sh->pending;
    sh->pending = NULL;
    if (!from)
        return 0;
    sh->bytes_placed += sh->len;
    return place(sh, from, sh->src, sh->dst, sh->len, err);
}

int vms_share_range(struct vms_share *sh, struct vms_share_source *from, uint64_t src,
                    uint64_t dst, uint64_t len, fsp_error *err)
{
    if (from->fd < 0 || from->mode == VMS_SHARE_WRITE || src % sh->block != dst % sh->block)
        return 1; /* unaligned: the checked bytes are written, never the file's */
    if (sh->pending == from && sh->src + sh->len == src && sh->dst + sh->len == dst) {
        sh->len += len;
        return 0;
    }
    if (len < sh->block)
        return 1;
    int rc = vms_share_flush(sh, err);
    if (rc || from->mode == VMS_SHARE_WRITE)
        return rc ? rc : 1;
    sh->pending = from;
    sh->src = src;
    sh->dst = dst;
    sh->len = len;
    return 0;
}
