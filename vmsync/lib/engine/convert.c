/* Converting a rebuilt raw image to qcow2 with qemu-img, with progress:
 * qemu-img -p writes "(12.34/100%)" to its stdout as it goes. */
#include "engine/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t start_qemu_img(const char *from, const char *to, int out_fd)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (dup2(out_fd, STDOUT_FILENO) < 0)
            _exit(127);
        execlp("qemu-img", "qemu-img", "convert", "-p", "-f", "raw", "-O", "qcow2", from, to,
               (char *)NULL);
        _exit(127);
    }
    return pid;
}

#define FOLLOW_BUF 256

/* Reports the last whole "(P/100%)" in BUF and keeps what follows it, a
 * percentage still being written; returns the bytes kept. */
static size_t report_last(struct vms_ctx *c, char *buf, size_t len, uint64_t size, int *rc,
                          fsp_error *err)
{
    char *end = memrchr(buf, ')', len);
    if (!end)
        return len < FOLLOW_BUF - 1 ? len : 0; /* no percentage in a full buffer: drop it */
    char *open = memrchr(buf, '(', (size_t)(end - buf));
    double percent;
    if (open && sscanf(open, "(%lf/100%%)", &percent) == 1 && percent >= 0 && percent <= 100)
        *rc = vms_ctx_progress(c, VMS_PHASE_CONVERT, (uint64_t)(percent / 100 * (double)size),
                               size, err);
    size_t kept = len - (size_t)(end + 1 - buf);
    memmove(buf, end + 1, kept);
    return kept;
}

/* Reports each percentage qemu-img prints as bytes of SIZE, until it closes
 * its output or the client cancels: the wait polls the cancel token, so a
 * cancel ends it at once, between two percentages too. */
static int follow(struct vms_ctx *c, int fd, uint64_t size, fsp_error *err)
{
    char buf[FOLLOW_BUF];
    size_t have = 0;
    int rc = vms_ctx_progress(c, VMS_PHASE_CONVERT, 0, size, err);
    while (!rc) {
        int ready = vms_cancel_poll(c->client->cancel, fd, POLLIN, -1);
        if (ready < 0) {
            rc = ready == -ECANCELED ? vms_cancel_fail(err, "while converting to qcow2")
                                     : fsp_fail(err, FSP_EK_IO, ready, "qemu-img: %s", strerror(-ready));
            break;
        }
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* qemu-img closed its output: waitpid tells how it ended */
        have = report_last(c, buf, have + (size_t)n, size, &rc, err);
    }
    return rc;
}

int vms_convert_qcow2(struct vms_ctx *c, const char *from, const char *to, uint64_t size,
                      fsp_error *err)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "cannot start qemu-img: %s", strerror(errno));
    pid_t pid = start_qemu_img(from, to, fds[1]);
    close(fds[1]);
    int rc = pid > 0 ? follow(c, fds[0], size, err) : 0;
    if (rc && pid > 0) /* cancelled: the output is a temporary the caller removes */
        kill(pid, SIGTERM);
    close(fds[0]);
    int status;
    bool ok = pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && !WEXITSTATUS(status);
    if (!rc && !ok)
        rc = fsp_fail(err, FSP_EK_IO, -EIO, "%s: qemu-img convert to qcow2 failed", to);
    return rc ? rc : vms_ctx_progress(c, VMS_PHASE_CONVERT, size, size, err);
}
