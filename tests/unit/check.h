/* A minimal unit-test harness: CHECK records a failure and goes on, so one run
 * reports every broken expectation; the exit status is the failure count. */
#ifndef VMSYNC_CHECK_H
#define VMSYNC_CHECK_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* ---- a scratch folder for a test's files ----
 * scratch_begin makes /tmp/vmsync-test-NAME-PID, scratch_end removes it and
 * all it holds. */
static inline char *scratch_root(void)
{
    static char root[64];
    return root;
}

static inline int scratch_begin(const char *name)
{
    snprintf(scratch_root(), 64, "/tmp/vmsync-test-%s-%d", name, (int)getpid());
    if (mkdir(scratch_root(), 0755) == 0)
        return 0;
    perror(scratch_root());
    return -1;
}

/* NAME under the scratch folder, malloc'd. */
static inline char *scratch_path(const char *name)
{
    char *p;
    if (asprintf(&p, "%s/%s", scratch_root(), name) < 0)
        abort();
    return p;
}

/* A new, not yet existing path under the scratch folder, malloc'd. */
static inline char *scratch(const char *what)
{
    static int count;
    char *p;
    if (asprintf(&p, "%s/%d-%s", scratch_root(), ++count, what) < 0)
        abort();
    return p;
}

static inline int scratch_rm_entry(const char *path, const struct stat *st, int flag,
                                   struct FTW *ftw)
{
    return remove(path);
}

static inline void rm_rf(const char *path)
{
    nftw(path, scratch_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void scratch_end(void) { rm_rf(scratch_root()); }

#endif
