/* The cancel token: fired from another thread or a signal handler, it wakes
 * a wait at once and stays fired until it is reset. */
#include "base/cancel.h"
#include "check.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *fire_later(void *arg)
{
    usleep(100000);
    vms_cancel_fire(arg);
    return NULL;
}

static void test_a_fire_from_another_thread_wakes_a_wait(void)
{
    vms_cancel *c;
    fsp_error err;
    CHECK(vms_cancel_new(&c, &err) == 0);
    int fds[2];
    CHECK(pipe(fds) == 0); /* a link that never speaks */
    CHECK(!vms_cancel_fired(c));
    CHECK(vms_cancel_poll(c, fds[0], POLLIN, 50) == 0); /* the time limit, not the token */
    pthread_t th;
    CHECK(pthread_create(&th, NULL, fire_later, c) == 0);
    double t0 = now();
    CHECK(vms_cancel_poll(c, fds[0], POLLIN, 10000) == -ECANCELED);
    CHECK(now() - t0 < 1.0);
    pthread_join(th, NULL);
    /* it stays fired: the next wait ends at once, and firing again is harmless */
    vms_cancel_fire(c);
    CHECK(vms_cancel_fired(c));
    t0 = now();
    CHECK(vms_cancel_sleep(c, 10) == -ECANCELED);
    CHECK(now() - t0 < 0.5);
    CHECK(vms_cancel_fail(&err, NULL) == -ECANCELED && err.kind == FSP_EK_CANCELLED);
    close(fds[0]);
    close(fds[1]);
    vms_cancel_free(c);
}

static void test_a_ready_fd_is_not_a_cancel(void)
{
    vms_cancel *c;
    fsp_error err;
    CHECK(vms_cancel_new(&c, &err) == 0);
    int fds[2];
    CHECK(pipe(fds) == 0);
    CHECK(write(fds[1], "x", 1) == 1);
    CHECK(vms_cancel_poll(c, fds[0], POLLIN, 1000) == 1);
    CHECK(vms_cancel_poll(NULL, fds[0], POLLIN, 1000) == 1); /* no token: a plain poll */
    CHECK(vms_cancel_sleep(NULL, 0.01) == 0);
    CHECK(!vms_cancel_fired(NULL));
    close(fds[0]);
    close(fds[1]);
    vms_cancel_free(c);
    vms_cancel_free(NULL);
}

static vms_cancel *signal_token;
static void on_signal(int sig) { vms_cancel_fire(signal_token); }

static void test_a_signal_handler_fires_it(void)
{
    fsp_error err;
    CHECK(vms_cancel_new(&signal_token, &err) == 0);
    signal(SIGUSR1, on_signal);
    raise(SIGUSR1);
    signal(SIGUSR1, SIG_DFL);
    CHECK(vms_cancel_fired(signal_token));
    CHECK(vms_cancel_poll(signal_token, -1, 0, 10000) == -ECANCELED);
    vms_cancel_free(signal_token);
}

/* A client's token is reset as its next operation starts: unfired, and its
 * waits wait again. */
static void test_a_reset_token_waits_again(void)
{
    vms_cancel *c;
    fsp_error err;
    CHECK(vms_cancel_new(&c, &err) == 0);
    int fds[2];
    CHECK(pipe(fds) == 0);
    vms_cancel_fire(c);
    CHECK(vms_cancel_poll(c, fds[0], POLLIN, 50) == -ECANCELED);
    vms_cancel_reset(c);
    CHECK(!vms_cancel_fired(c));
    CHECK(vms_cancel_poll(c, fds[0], POLLIN, 50) == 0);
    vms_cancel_fire(c); /* and it fires again */
    CHECK(vms_cancel_poll(c, fds[0], POLLIN, 50) == -ECANCELED);
    close(fds[0]);
    close(fds[1]);
    vms_cancel_free(c);
}

int main(void)
{
    RUN(test_a_fire_from_another_thread_wakes_a_wait);
    RUN(test_a_ready_fd_is_not_a_cancel);
    RUN(test_a_signal_handler_fires_it);
    RUN(test_a_reset_token_waits_again);
    return check_failures ? 1 : 0;
}
