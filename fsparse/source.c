/* Block sources: the bytes of a disk image, whatever its container format.
 *
 * Raw images (regular files and block devices) are read with pread.  Every
 * other supported format is served by a qemu-nbd child that libnbd starts by
 * systemd socket activation, so fsparse never parses qcow2, vmdk, vhdx, vdi or
 * vpc itself.  The format is decided here from magic bytes and passed to
 * qemu-nbd with -f: qemu must never probe a raw file, since a guest could write
 * a qcow2 header into its own disk and make the host read other files. */
#include "internal.h"
#include "source_private.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libnbd.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <limits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define SECTOR 512u
#define NBD_MAX_PIECE (4u << 20)        /* bytes per nbd_pread request */
#define NBD_MAX_STATUS (1u << 30)       /* bytes per block-status query */
#define QEMU_LOG_MAX 4096               /* bytes of qemu-nbd stderr we look at */
#define QEMU_STOP_GRACE_MS 1000         /* SIGTERM to SIGKILL */
#define NBD_MAX_MIN_BLOCK (64u << 10)

enum source_kind { SOURCE_RAW, SOURCE_NBD, SOURCE_MEM };

struct fsp_source {
    enum source_kind kind;
    const char *format;        /* static string */
    char *path;
    uint64_t size;
    int fd;                    /* SOURCE_RAW */
    struct nbd_handle *nbd;    /* SOURCE_NBD */
    bool nbd_has_allocation;   /* the server answers base:allocation queries */
    uint32_t nbd_min_block;    /* reads are whole blocks of this many bytes */
    pid_t qemu_pid;            /* our qemu-nbd child, 0 when none */
    const uint8_t *mem;        /* SOURCE_MEM */
};

/* ---- format detection ---------------------------------------------------- */

static bool has_magic(const uint8_t *buf, size_t len, size_t off, const char *magic, size_t n)
{
    return off + n <= len && memcmp(buf + off, magic, n) == 0;
}

/* Reads up to LEN bytes at OFF; returns the count read or a negative errno. */
ssize_t fsp_read_some(int fd, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

/* The qemu format name for the container, or "raw".  HEAD holds the first
 * HEAD_LEN bytes of the file and TAIL its last 512 bytes (when SIZE >= 512). */
static const char *format_from_magic(const uint8_t *head, size_t head_len, const uint8_t *tail,
                                     uint64_t size)
{
    static const uint8_t vdi_magic[4] = { 0x7f, 0x10, 0xda, 0xbe }; /* 0xbeda107f LE */

    if (has_magic(head, head_len, 0, "QFI\xfb", 4))
        return "qcow2";
    if (has_magic(head, head_len, 0, "KDMV", 4) ||
        has_magic(head, head_len, 0, "# Disk DescriptorFile", 21))
        return "vmdk";
    if (has_magic(head, head_len, 0, "vhdxfile", 8))
        return "vhdx";
    if (has_magic(head, head_len, 0x40, (const char *)vdi_magic, 4))
        return "vdi";
    /* A dynamic VHD starts with a copy of its footer; a fixed VHD is the raw
     * disk followed by the footer alone.  Both are served as "vpc" so the
     * footer never shows up as the last sector of the disk. */
    if (has_magic(head, head_len, 0, "conectix", 8))
        return "vpc";
    if (size >= SECTOR && has_magic(tail, SECTOR, 0, "conectix", 8))
        return "vpc";
    return "raw";
}

int fsp_detect_format(int fd, const char *path, uint64_t size, const char **format,
                         fsp_error *err)
{
    uint8_t head[SECTOR], tail[SECTOR];
    ssize_t n = fsp_read_some(fd, head, sizeof head, 0);
    if (n < 0)
        return fsp_fail(err, FSP_EK_OPEN, (int)n, "%s: cannot read: %s", path, strerror((int)-n));
    /* A VMDK text descriptor can be shorter than a sector; check it first. */
    if (has_magic(head, (size_t)n, 0, "# Disk DescriptorFile", 21)) {
        *format = "vmdk";
        return 0;
    }
    if (size < SECTOR || (size_t)n < SECTOR)
        return fsp_fail(err, FSP_EK_FORMAT, -EINVAL, "%s: not a disk image (%" PRIu64 " bytes)",
                        path, size);
    n = fsp_read_some(fd, tail, sizeof tail, size - SECTOR);
    if (n < 0)
        return fsp_fail(err, FSP_EK_OPEN, (int)n, "%s: cannot read: %s", path, strerror((int)-n));
    if ((size_t)n < SECTOR)
        memset(tail, 0, sizeof tail);
    *format = format_from_magic(head, sizeof head, tail, size);
    return 0;
}

/* libnbd's message for the last failed call in this thread. */
static const char *nbd_why(void)
{
    const char *msg = nbd_get_error();
    return msg ? msg : "unknown error";
}

/* ---- opening ------------------------------------------------------------- */

static int new_source(enum source_kind kind, const char *path, fsp_source **out, fsp_error *err)
{
    fsp_source *src = calloc(1, sizeof *src);
    if (src)
        src->path = strdup(path);
    if (!src || !src->path) {
        free(src);
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "%s: out of memory", path);
    }
    src->kind = kind;
    src->fd = -1;
    *out = src;
    return 0;
}

/* Opens without blocking (a FIFO would wait for a writer), then accepts only
 * regular files and block devices. */
static int open_image_fd(const char *path, uint64_t *size, fsp_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return fsp_fail(err, FSP_EK_OPEN, -errno, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0) {
        rc = fsp_fail(err, FSP_EK_OPEN, -errno, "%s: cannot open: %s", path, strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        rc = fsp_fail(err, FSP_EK_OPEN, -EISDIR, "%s: cannot open: %s", path, strerror(EISDIR));
    } else if (S_ISREG(st.st_mode)) {
        *size = (uint64_t)st.st_size;
    } else if (S_ISBLK(st.st_mode)) {
        if (ioctl(fd, BLKGETSIZE64, size) < 0)
            rc = fsp_fail(err, FSP_EK_OPEN, -errno, "%s: cannot get the device size: %s", path,
                          strerror(errno));
    } else {
        rc = fsp_fail(err, FSP_EK_OPEN, -EINVAL,
                      "%s: cannot open: not a regular file or block device", path);
    }
    if (rc == 0 && fcntl(fd, F_SETFL, 0) < 0)
        rc = fsp_fail(err, FSP_EK_OPEN, -errno, "%s: cannot open: %s", path, strerror(errno));
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* ---- qemu-nbd ------------------------------------------------------------ */

/* The first line qemu-nbd wrote to LOG_FD that is not a warning, without the
 * "qemu-nbd: " and "Failed to blk_new_open 'NAME': " prefixes; "" when none. */
static void qemu_first_error(int log_fd, const char *qname, char *out, size_t out_len)
{
    static const char open_prefix[] = "Failed to blk_new_open '";
    char buf[QEMU_LOG_MAX + 1];
    ssize_t n = log_fd >= 0 ? fsp_read_some(log_fd, buf, QEMU_LOG_MAX, 0) : -1;
    out[0] = '\0';
    if (n <= 0)
        return;
    buf[n] = '\0';
    size_t qlen = strlen(qname);
    for (char *line = buf, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (strncmp(line, "qemu-nbd: ", 10) == 0)
            line += 10;
        if (*line == '\0' || strncmp(line, "warning: ", 9) == 0)
            continue;
        char *name = line + sizeof open_prefix - 1;
        if (strncmp(line, open_prefix, sizeof open_prefix - 1) == 0 &&
            strncmp(name, qname, qlen) == 0 && strncmp(name + qlen, "': ", 3) == 0)
            line = name + qlen + 3;
        size_t n_copy = strnlen(line, out_len - 1);
        memcpy(out, line, n_copy);
        out[n_copy] = '\0';
        return;
    }
}

/* A listening socket for qemu-nbd and our connection to it.  The socket's
 * name lives only in a private folder and only until we are connected, so
 * nobody else can reach the export. */
static int listen_private(int *listen_fd, int *client_fd)
{
    const char *tmp = getenv("TMPDIR");
    char dir[PATH_MAX], name[PATH_MAX + 8];
    if (snprintf(dir, sizeof dir, "%s/fsparse-nbd-XXXXXX", tmp && *tmp ? tmp : "/tmp") >=
            (int)sizeof dir ||
        !mkdtemp(dir))
        return -errno;
    snprintf(name, sizeof name, "%s/s", dir);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int rc = strlen(name) < sizeof sa.sun_path ? 0 : -ENAMETOOLONG;
    if (rc == 0)
        memcpy(sa.sun_path, name, strlen(name) + 1);
    *listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    *client_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rc == 0 && (*listen_fd < 0 || *client_fd < 0 ||
                    bind(*listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
                    listen(*listen_fd, 1) < 0 ||
                    connect(*client_fd, (struct sockaddr *)&sa, sizeof sa) < 0))
        rc = -errno;
    unlink(name);
    rmdir(dir);
    return rc;
}

/* "LISTEN_PID=" with room for the child's pid, "LISTEN_FDS=1", then our
 * environment without any socket activation of its own; malloc'd. */
static char **activation_env(char pid_var[32])
{
    extern char **environ;
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 3, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    env[k++] = pid_var;
    env[k++] = "LISTEN_FDS=1";
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LISTEN_", 7) != 0)
            env[k++] = environ[i];
    env[k] = NULL;
    return env;
}

/* Writes "LISTEN_PID=<pid>" without stdio: this runs between fork and exec. */
static void put_listen_pid(char *out, pid_t pid)
{
    char digits[24];
    int n = 0;
    do
        digits[n++] = (char)('0' + pid % 10);
    while ((pid /= 10) > 0);
    memcpy(out, "LISTEN_PID=", 11);
    for (int i = 0; i < n; i++)
        out[11 + i] = digits[n - 1 - i];
    out[11 + n] = '\0';
}

/* dup2 that also clears close-on-exec when FROM is already TO. */
static int move_fd(int from, int to)
{
    return from == to ? fcntl(to, F_SETFD, 0) : dup2(from, to);
}

/* The child, between fork and exec (async-signal-safe calls only).  It dies
 * with the thread that started it; the getppid check closes the window in
 * which that thread died before the prctl.  LISTEN_FD is 3 or more, so
 * placing the log first cannot clobber it. */
static _Noreturn void exec_qemu_nbd(char *const argv[], char **env, pid_t parent, int listen_fd,
                                    int log_fd, const struct fsp_chain *chain)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(127);
    if (move_fd(log_fd, STDERR_FILENO) < 0 || move_fd(listen_fd, 3) < 0)
        _exit(127);
    for (unsigned i = 0; i < chain->n; i++)
        if (chain->link[i].fd >= 0 && move_fd(chain->link[i].fd, chain->link[i].fd) < 0)
            _exit(127);
    put_listen_pid(env[0], getpid());
    execvpe(argv[0], argv, env);
    _exit(127);
}

/* Starts qemu-nbd by socket activation on a socket of ours, with its stderr
 * in LOG_FD; *CLIENT_FD is our end.  No shell: the name QNAME is one argv
 * word. */
static int spawn_qemu_nbd(const struct fsp_chain *chain, const char *qname, int log_fd, pid_t *pid,
                          int *client_fd)
{
    char *argv[] = {
        "qemu-nbd", "--read-only",
        /* the page cache gives sequential scans readahead; reads only */
        "--cache=writeback",
        "--", (char *)qname, NULL,
    };
    char pid_var[32];
    char **env = activation_env(pid_var);
    int listen_fd = -1, rc = env ? listen_private(&listen_fd, client_fd) : -ENOMEM;
    if (rc == 0 && listen_fd < 3) { /* only when stdio was closed */
        int high = fcntl(listen_fd, F_DUPFD_CLOEXEC, 3);
        close(listen_fd);
        listen_fd = high;
        rc = high < 0 ? -errno : 0;
    }
    pid_t parent = getpid();
    if (rc == 0 && (*pid = fork()) < 0)
        rc = -errno;
    if (rc == 0 && *pid == 0)
        exec_qemu_nbd(argv, env, parent, listen_fd, log_fd, chain);
    if (listen_fd >= 0)
        close(listen_fd);
    free(env);
    return rc;
}

/* Ends qemu-nbd: asks, then kills it when it has not gone within the grace,
 * and reaps it.  Never waits without bound. */
static void stop_qemu_nbd(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int waited_ms = 0; waited_ms < QEMU_STOP_GRACE_MS; waited_ms += 10) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return;
        usleep(10 * 1000);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

static int nbd_fail_open(fsp_source *src, int log_fd, const char *qname, fsp_error *err)
{
    char why[512];
    qemu_first_error(log_fd, qname, why, sizeof why);
    if (why[0] == '\0')
        snprintf(why, sizeof why, "%s", nbd_why());
    return fsp_fail(err, FSP_EK_FORMAT, -EINVAL, "%s: qemu-nbd cannot open the image: %s",
                    src->path, why);
}

/* Starts qemu-nbd on the checked CHAIN, named QNAME, and connects to it. */
static int start_nbd(fsp_source *src, const struct fsp_chain *chain, const char *qname,
                     int log_fd, fsp_error *err)
{
    int client_fd = -1;
    int rc = spawn_qemu_nbd(chain, qname, log_fd, &src->qemu_pid, &client_fd);
    if (rc < 0) {
        if (client_fd >= 0)
            close(client_fd);
        return fsp_fail(err, FSP_EK_IO, rc, "%s: cannot start qemu-nbd: %s", src->path,
                        strerror(-rc));
    }
    /* the handle owns the socket from here on */
    if (nbd_connect_socket(src->nbd, client_fd) < 0) {
        /* qemu-nbd has written its reason once it is gone */
        stop_qemu_nbd(src->qemu_pid);
        src->qemu_pid = 0;
        return nbd_fail_open(src, log_fd, qname, err);
    }
    return 0;
}

/* The size and the smallest block qemu-nbd serves. */
static int read_export_geometry(fsp_source *src, fsp_error *err)
{
    int64_t size = nbd_get_size(src->nbd);
    if (size < 0)
        return fsp_fail(err, FSP_EK_FORMAT, -EINVAL, "%s: qemu-nbd reports no size: %s",
                        src->path, nbd_why());
    src->size = (uint64_t)size;
    src->nbd_has_allocation = nbd_can_meta_context(src->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) > 0;
    int64_t min_block = nbd_get_block_size(src->nbd, LIBNBD_SIZE_MINIMUM);
    /* a power of two up to 64 KiB by the protocol; anything else is ignored */
    src->nbd_min_block = 1;
    if (min_block > 1 && min_block <= NBD_MAX_MIN_BLOCK && (min_block & (min_block - 1)) == 0)
        src->nbd_min_block = (uint32_t)min_block;
    if (src->size < SECTOR)
        return fsp_fail(err, FSP_EK_FORMAT, -EINVAL,
                        "%s: not a disk image (virtual size %" PRIu64 " bytes)", src->path,
                        src->size);
    return 0;
}

static int connect_nbd(fsp_source *src, fsp_error *err)
{
    struct fsp_chain chain;
    int rc = fsp_chain_check(src->path, src->format, &chain, err);
    if (rc < 0)
        return rc;
    char *qname = fsp_chain_json(&chain);
    int log_fd = memfd_create("fsparse-qemu-nbd-stderr", MFD_CLOEXEC);
    if (!qname)
        rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "%s: out of memory", src->path);
    else if (log_fd < 0)
        rc = fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot create a memfd: %s", src->path,
                      strerror(errno));
    else if (!(src->nbd = nbd_create()))
        rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "%s: cannot create an NBD handle: %s",
                      src->path, nbd_why());
    if (rc == 0) {
        /* Zeroing each buffer before a read is wasted work: errors are checked. */
        nbd_set_pread_initialize(src->nbd, false);
        if (nbd_add_meta_context(src->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0)
            rc = fsp_fail(err, FSP_EK_INTERNAL, -EINVAL, "%s: libnbd: %s", src->path, nbd_why());
    }
    if (rc == 0)
        rc = start_nbd(src, &chain, qname, log_fd, err);
    fsp_chain_free(&chain);
    if (rc == 0)
        rc = read_export_geometry(src, err);
    if (log_fd >= 0)
        close(log_fd);
    free(qname);
    return rc;
}

/* Opens PATH as the format its bytes show, or as raw when AS_RAW. */
static int source_open(const char *path, bool as_raw, fsp_source **out, fsp_error *err)
{
    *out = NULL;
    if (!path || !*path)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "no image path given");
    uint64_t size = 0;
    int fd = open_image_fd(path, &size, err);
    if (fd < 0)
        return fd;
    const char *format = "raw";
    int rc = as_raw ? 0 : fsp_detect_format(fd, path, size, &format, err);
    fsp_source *src = NULL;
    if (rc == 0)
        rc = new_source(strcmp(format, "raw") == 0 ? SOURCE_RAW : SOURCE_NBD, path, &src, err);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    src->format = format;
    if (src->kind == SOURCE_RAW) {
        src->fd = fd;
        src->size = size;
    } else {
        close(fd); /* qemu-nbd opens the image (and its checked backing files) itself */
        rc = connect_nbd(src, err);
        if (rc < 0) {
            fsp_source_close(src);
            return rc;
        }
    }
    *out = src;
    return 0;
}

int fsp_source_open(const char *path, fsp_source **out, fsp_error *err)
{
    return source_open(path, false, out, err);
}

int fsp_source_open_raw(const char *path, fsp_source **out, fsp_error *err)
{
    return source_open(path, true, out, err);
}

int fsp_source_open_mem(const void *data, size_t len, fsp_source **out, fsp_error *err)
{
    *out = NULL;
    if (!data && len > 0)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "memory source: no data");
    fsp_source *src;
    int rc = new_source(SOURCE_MEM, "<memory>", &src, err);
    if (rc < 0)
        return rc;
    src->format = "mem";
    src->mem = data;
    src->size = len;
    *out = src;
    return 0;
}

void fsp_source_close(fsp_source *src)
{
    if (!src)
        return;
    if (src->nbd) {
        /* The disconnect alone makes a healthy qemu-nbd exit */
        nbd_shutdown(src->nbd, 0);
        nbd_close(src->nbd);
    }
    stop_qemu_nbd(src->qemu_pid);
    if (src->fd >= 0)
        close(src->fd);
    free(src->path);
    free(src);
}

uint64_t fsp_source_size(const fsp_source *src) { return src->size; }
const char *fsp_source_format(const fsp_source *src) { return src->format; }
const char *fsp_source_path(const fsp_source *src) { return src->path; }

int fsp_source_reopen_fd(const fsp_source *src)
{
    if (src->kind != SOURCE_RAW)
        return -EOPNOTSUPP;
    char proc_path[64];
    snprintf(proc_path, sizeof proc_path, "/proc/self/fd/%d", src->fd);
    int fd = open(proc_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    return fd;
}

/* ---- reading ------------------------------------------------------------- */

static int fail_past_end(fsp_source *src, size_t len, uint64_t off, fsp_error *err)
{
    return fsp_fail(err, FSP_EK_FORMAT, -EIO,
                    "%s: read of %zu bytes at offset %" PRIu64
                    " is past the end of the image (truncated?)",
                    src->path, len, off);
}

static int pread_raw(fsp_source *src, void *buf, size_t len, uint64_t off, fsp_error *err)
{
    ssize_t n = fsp_read_some(src->fd, buf, len, off);
    if (n < 0)
        return fsp_fail(err, FSP_EK_IO, (int)n, "%s: read of %zu bytes at offset %" PRIu64
                        " failed: %s", src->path, len, off, strerror((int)-n));
    if ((size_t)n < len) /* the file shrank under us */
        return fail_past_end(src, len, off, err);
    return 0;
}

static int nbd_read(fsp_source *src, void *buf, size_t len, uint64_t off, fsp_error *err)
{
    if (nbd_pread(src->nbd, buf, len, off, 0) < 0) {
        int e = nbd_get_errno();
        return fsp_fail(err, FSP_EK_IO, e > 0 ? -e : -EIO,
                        "%s: read of %zu bytes at offset %" PRIu64 " failed: %s", src->path, len,
                        off, nbd_why());
    }
    return 0;
}

/* A part of a block (vhdx serves whole 4 KiB blocks only): the block is read
 * into BOUNCE and the part copied out. */
static int nbd_read_part(fsp_source *src, uint8_t *bounce, void *buf, size_t len, uint64_t off,
                         fsp_error *err)
{
    uint64_t block = off - off % src->nbd_min_block;
    size_t n = src->size - block < src->nbd_min_block ? (size_t)(src->size - block)
                                                       : src->nbd_min_block;
    int rc = nbd_read(src, bounce, n, block, err);
    if (rc == 0)
        memcpy(buf, bounce + (off - block), len);
    return rc;
}

static int pread_nbd(fsp_source *src, void *buf, size_t len, uint64_t off, fsp_error *err)
{
    const uint32_t mb = src->nbd_min_block;
    uint8_t *bounce = NULL;
    int rc = 0;
    for (size_t done = 0; rc == 0 && done < len;) {
        uint64_t pos = off + done;
        size_t piece = len - done < NBD_MAX_PIECE ? len - done : NBD_MAX_PIECE;
        if (pos % mb == 0 && piece >= mb) {
            piece -= piece % mb;
            rc = nbd_read(src, (uint8_t *)buf + done, piece, pos, err);
        } else {
            piece = mb - pos % mb < piece ? mb - pos % mb : piece;
            if (!bounce && !(bounce = malloc(mb)))
                rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "%s: out of memory", src->path);
            if (rc == 0)
                rc = nbd_read_part(src, bounce, (uint8_t *)buf + done, piece, pos, err);
        }
        done += piece;
    }
    free(bounce);
    return rc;
}

bool fsp_source_reads_concurrently(const fsp_source *src)
{
    return src->kind == SOURCE_RAW || src->kind == SOURCE_MEM;
}

int fsp_source_pread(fsp_source *src, void *buf, size_t len, uint64_t off, fsp_error *err)
{
    if (off > src->size || len > src->size - off)
        return fail_past_end(src, len, off, err);
    if (len == 0)
        return 0;
    switch (src->kind) {
    case SOURCE_RAW:
        return pread_raw(src, buf, len, off, err);
    case SOURCE_NBD:
        return pread_nbd(src, buf, len, off, err);
    case SOURCE_MEM:
        memcpy(buf, src->mem + off, len);
        return 0;
    }
    return fsp_fail(err, FSP_EK_INTERNAL, -EINVAL, "%s: bad source kind", src->path);
}

/* ---- holes --------------------------------------------------------------- */

static int next_data_raw(fsp_source *src, uint64_t off, uint64_t *data_off, fsp_error *err)
{
    off_t pos = lseek(src->fd, (off_t)off, SEEK_DATA);
    if (pos >= 0) {
        *data_off = (uint64_t)pos < src->size ? (uint64_t)pos : src->size;
        return 0;
    }
    if (errno == ENXIO) { /* only a hole up to the end */
        *data_off = src->size;
        return 0;
    }
    if (errno == EINVAL || errno == EOPNOTSUPP || errno == ESPIPE) { /* cannot tell */
        *data_off = off;
        return 0;
    }
    return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot look for data at offset %" PRIu64 ": %s",
                    src->path, off, strerror(errno));
}

struct hole_walk {
    uint64_t pos;    /* first byte not yet known to be a hole */
    bool found_data; /* POS starts a range that may hold data */
};

/* Only ranges both unallocated and reading as zeros are skipped: a hole alone
 * may read through to something, and allocated zeros are still allocated. */
static int walk_extents(void *user_data, const char *metacontext, uint64_t offset,
                        uint32_t *entries, size_t nr_entries, int *error)
{
    struct hole_walk *w = user_data;
    const uint32_t hole = LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO;
    if (strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0 || w->found_data)
        return 0;
    w->pos = offset;
    for (size_t i = 0; i + 1 < nr_entries; i += 2) {
        if ((entries[i + 1] & hole) != hole) {
            w->found_data = true;
            return 0;
        }
        w->pos += entries[i];
    }
    return 0;
}

static int next_data_nbd(fsp_source *src, uint64_t off, uint64_t *data_off, fsp_error *err)
{
    *data_off = off;
    if (!src->nbd_has_allocation)
        return 0;
    uint64_t pos = off;
    while (pos < src->size) {
        uint64_t count = src->size - pos < NBD_MAX_STATUS ? src->size - pos : NBD_MAX_STATUS;
        struct hole_walk w = { .pos = pos, .found_data = false };
        nbd_extent_callback cb = { .callback = walk_extents, .user_data = &w };
        if (nbd_block_status(src->nbd, count, pos, cb, 0) < 0) {
            int e = nbd_get_errno();
            return fsp_fail(err, FSP_EK_IO, e > 0 ? -e : -EIO,
                            "%s: cannot query allocation at offset %" PRIu64 ": %s", src->path,
                            pos, nbd_why());
        }
        if (w.found_data) {
            *data_off = w.pos > off ? w.pos : off;
            return 0;
        }
        if (w.pos <= pos) /* no progress: the server cannot tell */
            return 0;
        pos = w.pos;
    }
    *data_off = src->size;
    return 0;
}

int fsp_source_next_data(fsp_source *src, uint64_t off, uint64_t *data_off, fsp_error *err)
{
    if (off >= src->size) {
        *data_off = src->size;
        return 0;
    }
    switch (src->kind) {
    case SOURCE_RAW:
        return next_data_raw(src, off, data_off, err);
    case SOURCE_NBD:
        return next_data_nbd(src, off, data_off, err);
    case SOURCE_MEM:
        *data_off = off;
        return 0;
    }
    return fsp_fail(err, FSP_EK_INTERNAL, -EINVAL, "%s: bad source kind", src->path);
}
