/* The reflector's cache on disk (repo/cache/store.c): objects stored and read
 * back verified, damage found, least recently used evicted, and the fetch
 * locks across processes. */
#include "check.h"
#include "base/fileio.h"
#include "repo/cache/store.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void object(uint8_t *buf, size_t len, unsigned seed, uint8_t hash[FSP_SHA256_LEN], bool random)
{
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        buf[i] = random ? (uint8_t)(seed >> 16) : (uint8_t)(i % 7);
    }
    vms_sha256(buf, len, hash);
}

static void open_store(struct vms_cache_store *s, const char *name, uint64_t max)
{
    fsp_error err = {0};
    char *dir = scratch_path(name);
    CHECK(vms_cache_store_open(s, dir, max, &err) == 0);
    free(dir);
}

static void test_round_trip(void)
{
    struct vms_cache_store s = {0};
    open_store(&s, "round", 1 << 20);
    static uint8_t a[100000], b[5000];
    uint8_t ha[FSP_SHA256_LEN], hb[FSP_SHA256_LEN];
    object(a, sizeof a, 1, ha, false);
    object(b, sizeof b, 2, hb, true);
    fsp_error err = {0};
    CHECK(vms_cache_store(&s, ha, a, sizeof a, &err) == 0);
    CHECK(vms_cache_store(&s, hb, b, sizeof b, &err) == 0);
    struct vms_object_size sz;
    CHECK(vms_cache_has(&s, VMS_CACHE_OBJECT, ha, &sz) && sz.len == sizeof a && sz.stored < sz.len);
    CHECK(vms_cache_has(&s, VMS_CACHE_OBJECT, hb, &sz) && sz.len == sizeof b && sz.stored == sz.len);
    struct vms_cached_object o;
    const uint8_t *data;
    CHECK(vms_cache_read(&s, ha, &o, &err) == 0 && o.codec == VMS_CODEC_ZSTD);
    CHECK(vms_cache_plain(&s, ha, &o, &data, &err) == 0 && !memcmp(data, a, sizeof a));
    CHECK(vms_cache_read(&s, hb, &o, &err) == 0 && o.codec == VMS_CODEC_RAW);
    CHECK(vms_cache_plain(&s, hb, &o, &data, &err) == 0 && !memcmp(data, b, sizeof b));
    uint8_t absent[FSP_SHA256_LEN] = {1};
    CHECK(!vms_cache_has(&s, VMS_CACHE_OBJECT, absent, NULL));
    CHECK(vms_cache_read(&s, absent, &o, &err) == -ENOENT);
    vms_cache_store_close(&s);
}

static void test_damage(void)
{
    struct vms_cache_store s = {0};
    open_store(&s, "damage", 1 << 20);
    static uint8_t a[3000];
    uint8_t h[FSP_SHA256_LEN];
    object(a, sizeof a, 3, h, true);
    fsp_error err = {0};
    CHECK(vms_cache_store(&s, h, a, sizeof a, &err) == 0);
    char path[PATH_MAX];
    vms_cache_path(&s, VMS_CACHE_OBJECT, h, path, sizeof path);
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, "X", 1, 100) == 1);
    close(fd);
    struct vms_cached_object o;
    const uint8_t *data;
    CHECK(vms_cache_read(&s, h, &o, &err) == 0);
    memset(&err, 0, sizeof err);
    CHECK(vms_cache_plain(&s, h, &o, &data, &err) < 0 && err.kind == FSP_EK_CORRUPT);
    CHECK(access(path, F_OK) < 0); /* dropped, to be fetched again */
    CHECK(!strstr(err.msg, s.dir)); /* a laptop reads this: no path of the reflector's */
    CHECK(vms_cache_store(&s, h, a, sizeof a, &err) == 0);
    fd = open(path, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, "\xff\xff\xff\xff", 4, 1) == 4); /* a length of 4 GiB */
    close(fd);
    CHECK(vms_cache_read(&s, h, &o, &err) == -ENOENT);
    CHECK(access(path, F_OK) < 0);
    CHECK(vms_cache_store(&s, h, a, sizeof a, &err) == 0);
    CHECK(truncate(path, 3) == 0); /* shorter than its header: dropped too */
    CHECK(vms_cache_read(&s, h, &o, &err) == -ENOENT);
    CHECK(access(path, F_OK) < 0);
    vms_cache_store_close(&s);
}

static void set_age(const struct vms_cache_store *s, const uint8_t h[FSP_SHA256_LEN], time_t t)
{
    char path[PATH_MAX];
    vms_cache_path(s, VMS_CACHE_OBJECT, h, path, sizeof path);
    struct timespec ts[2] = {{t, 0}, {t, 0}};
    CHECK(utimensat(AT_FDCWD, path, ts, 0) == 0);
}

static void test_least_recently_used(void)
{
    struct vms_cache_store s = {0};
    open_store(&s, "lru", 0);
    static uint8_t buf[3][10000];
    uint8_t h[3][FSP_SHA256_LEN];
    fsp_error err = {0};
    for (int i = 0; i < 3; i++) {
        object(buf[i], sizeof buf[i], 10 + (unsigned)i, h[i], true);
        CHECK(vms_cache_store(&s, h[i], buf[i], sizeof buf[i], &err) == 0);
        set_age(&s, h[i], 1000000 + i);
    }
    struct vms_cached_object o;
    CHECK(vms_cache_read(&s, h[0], &o, &err) == 0); /* the oldest, used now */
    uint64_t all = vms_cache_size(&s);
    s.max = all - 1; /* one must go: the least recently used, h[1] */
    vms_cache_evict(&s);
    CHECK(vms_cache_has(&s, VMS_CACHE_OBJECT, h[0], NULL));
    CHECK(!vms_cache_has(&s, VMS_CACHE_OBJECT, h[1], NULL));
    CHECK(vms_cache_has(&s, VMS_CACHE_OBJECT, h[2], NULL));
    CHECK(vms_cache_size(&s) <= s.max);
    vms_cache_store_close(&s);
}

static void test_locks_across_processes(void)
{
    struct vms_cache_store s = {0};
    open_store(&s, "locks", 1 << 20);
    uint8_t mine[FSP_SHA256_LEN] = {7}, other[FSP_SHA256_LEN] = {8};
    CHECK(vms_cache_try_lock(&s, VMS_CACHE_OBJECT, mine));
    int to_child[2];
    CHECK(pipe(to_child) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        struct vms_cache_store c = {0};
        open_store(&c, "locks", 1 << 20);
        int bad = vms_cache_try_lock(&c, VMS_CACHE_OBJECT, mine) ? 1 : 0; /* the parent's */
        bad |= vms_cache_try_lock(&c, VMS_CACHE_MANIFEST, mine) ? 0 : 2; /* another kind */
        bad |= vms_cache_try_lock(&c, VMS_CACHE_OBJECT, other) ? 0 : 4;
        char go;
        bad |= read(to_child[0], &go, 1) == 1 ? 0 : 8;
        vms_cache_wait_unlocked(&c, VMS_CACHE_OBJECT, mine); /* returns once released */
        bad |= vms_cache_try_lock(&c, VMS_CACHE_OBJECT, mine) ? 0 : 16;
        _exit(bad);
    }
    CHECK(pid > 0);
    CHECK(write(to_child[1], "g", 1) == 1);
    usleep(100000); /* the child waits for the lock meanwhile */
    vms_cache_unlock(&s, VMS_CACHE_OBJECT, mine);
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st))
        fprintf(stderr, "  the child's checks: %d\n", WEXITSTATUS(st));
    close(to_child[0]);
    close(to_child[1]);
    vms_cache_store_close(&s);
}

int main(void)
{
    if (scratch_begin("reflect-store"))
        return 1;
    RUN(test_round_trip);
    RUN(test_damage);
    RUN(test_least_recently_used);
    RUN(test_locks_across_processes);
    scratch_end();
    return check_failures;
}
