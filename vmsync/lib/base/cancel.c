/* The cancel token (see cancel.h).  Firing is one atomic store and one
 * write(2): both async-signal-safe. */
#include "base/cancel.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct vms_cancel {
    atomic_bool fired;
    int fd;
};

int vms_cancel_new(vms_cancel **out, fsp_error *err)
{
    *out = NULL;
    vms_cancel *c = calloc(1, sizeof *c);
    if (!c)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    atomic_init(&c->fired, false);
    c->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->fd < 0) {
        int e = errno;
        free(c);
        return fsp_fail(err, FSP_EK_IO, -e, "cannot make a cancel token: %s", strerror(e));
    }
    *out = c;
    return 0;
}

void vms_cancel_fire(vms_cancel *c)
{
    if (!c || atomic_exchange(&c->fired, true))
        return;
    uint64_t one = 1;
    ssize_t n = write(c->fd, &one, sizeof one);
    (void)n; /* cannot fail short of a closed fd: the flag holds either way */
}

void vms_cancel_reset(vms_cancel *c)
{
    uint64_t count;
    if (!c || !atomic_exchange(&c->fired, false))
        return;
    ssize_t n = read(c->fd, &count, sizeof count); /* nonblocking: empty is fine */
    (void)n;
}

void vms_cancel_free(vms_cancel *c)
{
    if (!c)
        return;
    close(c->fd);
    free(c);
}

bool vms_cancel_fired(const vms_cancel *c) { return c && atomic_load(&c->fired); }

int vms_cancel_fail(fsp_error *err, const char *where)
{
    if (where)
        return fsp_fail(err, FSP_EK_CANCELLED, -ECANCELED, "cancelled %s", where);
    return fsp_fail(err, FSP_EK_CANCELLED, -ECANCELED, "cancelled");
}

/* The token's eventfd was readable while its flag was clear: a fire that
 * raced a reset.  Drains it, so that it stops waking the waits. */
static void drain(const vms_cancel *c)
{
    uint64_t count;
    ssize_t n = read(c->fd, &count, sizeof count); /* nonblocking */
    (void)n;
}

int vms_cancel_poll(const vms_cancel *c, int fd, short events, int ms)
{
    struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = c ? c->fd : -1, .events = POLLIN}};
    for (;;) {
        if (vms_cancel_fired(c))
            return -ECANCELED;
        int n = poll(p, 2, ms);
        if (vms_cancel_fired(c))
            return -ECANCELED;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0 || p[0].revents)
            return n > 0;
        drain(c); /* only the token woke us, and it is not fired: wait again */
    }
}

int vms_cancel_sleep(const vms_cancel *c, double seconds)
{
    int ms = seconds > 0 ? (int)(seconds * 1000 + 0.5) : 0;
    int rc = vms_cancel_poll(c, -1, 0, ms);
    return rc < 0 ? rc : 0;
}
