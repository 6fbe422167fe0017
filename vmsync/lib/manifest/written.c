/* OUT.vmsync-record: one text line,
 *   vmsync-record 2 VERSION FORMAT DIGEST DEV INO SIZE MTIME.NS CTIME.NS HOLDER NAME
 * written to a temporary name and renamed, so it is whole or absent.  HOLDER
 * is "-" when there is none (an export) or it would not read back as one
 * word; version 1 records, from before HOLDER, read with none.  A lost or
 * damaged record errs on the safe side: the checkout refuses to replace OUT
 * without --force, and a check-in without its lease stays refused. */
#include "manifest/written.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define RECORD_SUFFIX ".vmsync-record"
#define RECORD_MAGIC "vmsync-record"
#define RECORD_FORMAT 2u
#define NO_HOLDER "-"

static void record_path(const char *path, char *out, size_t len)
{
    snprintf(out, len, "%s" RECORD_SUFFIX, path);
}

static int write_record(FILE *f, const struct vms_written *w)
{
    char hex[2 * FSP_SHA256_LEN + 1];
    bool one_word = w->holder[0] && !strpbrk(w->holder, " \t\n") && strcmp(w->holder, NO_HOLDER);
    fsp_hex(w->digest, FSP_SHA256_LEN, hex);
    fprintf(f, RECORD_MAGIC " %u %u %s %s %llu %llu %llu %lld.%09lld %lld.%09lld %s %s\n", RECORD_FORMAT,
            w->version, w->format, hex, (unsigned long long)w->dev, (unsigned long long)w->ino,
            (unsigned long long)w->size, (long long)w->mtime_s, (long long)w->mtime_ns,
            (long long)w->ctime_s, (long long)w->ctime_ns, one_word ? w->holder : NO_HOLDER, w->image);
    return fflush(f) || ferror(f) ? -EIO : 0;
}

void vms_written_identity(struct vms_written *w, const struct stat *st)
{
    w->dev = st->st_dev;
    w->ino = st->st_ino;
    w->size = (uint64_t)st->st_size;
    w->mtime_s = st->st_mtim.tv_sec;
    w->mtime_ns = st->st_mtim.tv_nsec;
    w->ctime_s = st->st_ctim.tv_sec;
    w->ctime_ns = st->st_ctim.tv_nsec;
}

int vms_written_save(const char *path, const struct vms_written *what, fsp_error *err)
{
    struct vms_written w = *what;
    struct stat st;
    char rec[PATH_MAX + 32], tmp[PATH_MAX + 40];
    record_path(path, rec, sizeof rec);
    snprintf(tmp, sizeof tmp, "%s.tmp", rec);
    if (lstat(path, &st) < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: %s", path, strerror(errno));
    vms_written_identity(&w, &st);
    FILE *f = fopen(tmp, "we");
    int rc = f ? write_record(f, &w) : -errno;
    if (f && fclose(f) && !rc)
        rc = -EIO;
    if (!rc && rename(tmp, rec) < 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc ? fsp_fail(err, FSP_EK_IO, rc, "%s: cannot write: %s", rec, strerror(-rc)) : 0;
}

static bool parse_hex(const char *hex, uint8_t *out, size_t len)
{
    if (strlen(hex) != 2 * len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (sscanf(hex + 2 * i, "%2hhx", &out[i]) != 1)
            return false;
    return true;
}

/* The fields after the magic and format number, up to HOLDER; *USED is how
 * many characters they took. */
static bool parse_fields(const char *line, struct vms_written *w, int *used)
{
    char hex[2 * FSP_SHA256_LEN + 1];
    unsigned long long dev, ino, size;
    long long ms, mns, cs, cns;
    if (sscanf(line, "%u %15s %64s %llu %llu %llu %lld.%lld %lld.%lld %n", &w->version, w->format,
               hex, &dev, &ino, &size, &ms, &mns, &cs, &cns, used) != 10 ||
        !parse_hex(hex, w->digest, FSP_SHA256_LEN))
        return false;
    w->dev = dev;
    w->ino = ino;
    w->size = size;
    w->mtime_s = ms;
    w->mtime_ns = mns;
    w->ctime_s = cs;
    w->ctime_ns = cns;
    return true;
}

static bool parse_record(const char *line, struct vms_written *w)
{
    unsigned format;
    int at = 0, used = 0;
    if (sscanf(line, RECORD_MAGIC " %u %n", &format, &at) != 1 || format < 1 || format > RECORD_FORMAT ||
        !parse_fields(line + at, w, &used))
        return false;
    line += at + used;
    if (format >= 2) {
        if (sscanf(line, "%127s %n", w->holder, &used) != 1)
            return false;
        if (!strcmp(w->holder, NO_HOLDER))
            w->holder[0] = 0;
        line += used;
    }
    return sscanf(line, "%255[^\n]", w->image) == 1;
}

bool vms_written_load(const char *path, const struct stat *st, struct vms_written *w)
{
    char rec[PATH_MAX + 32], line[1024];
    record_path(path, rec, sizeof rec);
    memset(w, 0, sizeof *w);
    FILE *f = fopen(rec, "re");
    bool ok = f && fgets(line, sizeof line, f);
    if (f)
        fclose(f);
    if (!ok || !parse_record(line, w))
        return false;
    return w->dev == (uint64_t)st->st_dev && w->ino == (uint64_t)st->st_ino;
}

bool vms_written_unchanged(const struct vms_written *w, const struct stat *st)
{
    struct vms_written now;
    vms_written_identity(&now, st);
    return now.dev == w->dev && now.ino == w->ino && now.size == w->size &&
           now.mtime_s == w->mtime_s && now.mtime_ns == w->mtime_ns &&
           now.ctime_s == w->ctime_s && now.ctime_ns == w->ctime_ns;
}

/* A guest writing to a raw disk never changes its size, and a file copied or
 * made anew over it, reusing its inode, almost always does; the times change
 * either way, so they cannot tell the two apart.  Reading a file as raw never
 * follows a reference out of it, so a wrong guess misreads but leaks nothing. */
static bool written_raw(const char *path)
{
    struct stat st;
    struct vms_written w;
    return lstat(path, &st) == 0 && S_ISREG(st.st_mode) && vms_written_load(path, &st, &w) &&
           !strcmp(w.format, "raw") && w.size == (uint64_t)st.st_size;
}

int vms_written_open(const char *path, fsp_source **out, fsp_error *err)
{
    return written_raw(path) ? fsp_source_open_raw(path, out, err) : fsp_source_open(path, out, err);
}
