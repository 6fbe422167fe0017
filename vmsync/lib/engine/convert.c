/* Converting a rebuilt raw image to qcow2 with qemu-img, with progress:
 * qemu-img -p writes "(12.34/100%)" to its stdout as it goes. */
#include "engine/engine.h"

#include <errno.h>
#include <fcntl.h>
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

/* Reports each percentage qemu-img prints as bytes of SIZE, until it closes
 * its output or the client cancels. */
static int follow(struct vms_ctx *c, FILE *f, uint64_t size, fsp_error *err)
{
    int rc = vms_ctx_progress(c, VMS_PHASE_CONVERT, 0, size, err);
    double percent;
    while (!rc && fscanf(f, " (%lf/100%%)", &percent) == 1)
        if (percent >= 0 && percent <= 100)
            rc = vms_ctx_progress(c, VMS_PHASE_CONVERT, (uint64_t)(percent / 100 * (double)size),
                                  size, err);
    while (!rc && getc(f) != EOF) /* output it does not say that way: let it finish */
        ;
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
    FILE *f = pid > 0 ? fdopen(fds[0], "r") : NULL;
    int rc = f ? follow(c, f, size, err) : 0;
    if (rc) /* cancelled: the output is a temporary the caller removes */
        kill(pid, SIGTERM);
    if (f)
        fclose(f);
    else
        close(fds[0]);
    int status;
    bool ok = pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && !WEXITSTATUS(status);
    if (!rc && !ok)
        rc = fsp_fail(err, FSP_EK_IO, -EIO, "%s: qemu-img convert to qcow2 failed", to);
    return rc ? rc : vms_ctx_progress(c, VMS_PHASE_CONVERT, size, size, err);
}
