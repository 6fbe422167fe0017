/* OUT.vmsync-record: one text line,
 *   vmsync-record 1 VERSION FORMAT DIGEST DEV INO SIZE MTIME.NS CTIME.NS NAME
 * written to a temporary name and renamed, so it is whole or absent.  A lost
 * or damaged record errs on the safe side: the checkout refuses to replace
 * OUT without --force. */
#include "written.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define RECORD_SUFFIX ".vmsync-record"
#define RECORD_MAGIC "vmsync-record 1"

static void record_path(const char *path, char *out, size_t len)
{
    snprintf(out, len, "%s" RECORD_SUFFIX, path);
}

static int write_record(FILE *f, const struct vms_written *w)
{
    char hex[2 * FSP_SHA256_LEN + 1];
    fsp_hex(w->digest, FSP_SHA256_LEN, hex);
    fprintf(f, RECORD_MAGIC " %u %s %s %llu %llu %llu %lld.%09lld %lld.%09lld %s\n", w->version,
            w->format, hex, (unsigned long long)w->dev, (unsigned long long)w->ino,
            (unsigned long long)w->size, (long long)w->mtime_s, (long long)w->mtime_ns,
            (long long)w->ctime_s, (long long)w->ctime_ns, w->image);
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

int vms_written_save(const char *path, const char *image, uint32_t version, const char *format,
                     const uint8_t digest[FSP_SHA256_LEN], fsp_error *err)
{
    struct vms_written w = {.version = version};
    struct stat st;
    char rec[PATH_MAX + 32], tmp[PATH_MAX + 40];
    record_path(path, rec, sizeof rec);
    snprintf(tmp, sizeof tmp, "%s.tmp", rec);
    snprintf(w.image, sizeof w.image, "%s", image);
    snprintf(w.format, sizeof w.format, "%s", format ? format : "raw");
    memcpy(w.digest, digest, FSP_SHA256_LEN);
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

bool vms_written_load(const char *path, const struct stat *st, struct vms_written *w)
{
    char rec[PATH_MAX + 32], line[1024], hex[2 * FSP_SHA256_LEN + 1];
    unsigned long long dev, ino, size;
    long long ms, mns, cs, cns;
    record_path(path, rec, sizeof rec);
    memset(w, 0, sizeof *w);
    FILE *f = fopen(rec, "re");
    bool ok = f && fgets(line, sizeof line, f);
    if (f)
        fclose(f);
    ok = ok && sscanf(line, RECORD_MAGIC " %u %15s %64s %llu %llu %llu %lld.%lld %lld.%lld %255[^\n]",
                      &w->version, w->format, hex, &dev, &ino, &size, &ms, &mns, &cs, &cns,
                      w->image) == 11;
    if (!ok || !parse_hex(hex, w->digest, FSP_SHA256_LEN))
        return false;
    w->dev = dev;
    w->ino = ino;
    w->size = size;
    w->mtime_s = ms;
    w->mtime_ns = mns;
    w->ctime_s = cs;
    w->ctime_ns = cns;
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
