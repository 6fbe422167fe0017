/* A minimal unit-test harness: CHECK records a failure and goes on, so one run
 * reports every broken expectation; the exit status is the failure count. */
#ifndef VMSYNC_CHECK_H
#define VMSYNC_CHECK_H

#include <stdio.h>

static int check_failures;

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);           \
            check_failures++;                                                                  \
        }                                                                                      \
    } while (0)

#define RUN(test)                                                                              \
    do {                                                                                       \
        int before = check_failures;                                                           \
        test();                                                                                \
        printf("%s %s\n", check_failures == before ? "ok" : "FAILED", #test);                  \
    } while (0)

#endif
