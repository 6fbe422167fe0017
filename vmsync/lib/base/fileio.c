/* Small file helpers shared by the manifest writer, the store and the engine. */
#include "base/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int vms_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int vms_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int vms_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ENODATA; /* the file ends early: damage, not an I/O error */
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int vms_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int vms_sha256(const void *data, size_t len, uint8_t out[FSP_SHA256_LEN])
{
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 ? 0 : -ENOMEM;
}

int vms_sha256_file(const char *path, uint8_t out[FSP_SHA256_LEN])
{
    enum { CHUNK = 256 << 10 };
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    uint8_t *buf = fd < 0 ? NULL : malloc(CHUNK);
    EVP_MD_CTX *md = buf ? EVP_MD_CTX_new() : NULL;
    int rc = fd < 0 ? -errno : !md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL) ? -ENOMEM : 0;
    ssize_t n = 0;
    while (!rc && (n = read(fd, buf, CHUNK)) != 0) {
        if (n < 0 && errno != EINTR)
            rc = -errno;
        else if (n > 0)
            EVP_DigestUpdate(md, buf, (size_t)n);
    }
    unsigned int len = 0;
    if (!rc && EVP_DigestFinal_ex(md, out, &len) != 1)
        rc = -ENOMEM;
    EVP_MD_CTX_free(md);
    free(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

int vms_fsync_parent(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    int rc = vms_fsync_dir(dirname(copy));
    free(copy);
    return rc;
}

char *vms_path_join(const char *dir, const char *name)
{
    char *p;
    return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

/* mkostemp, but readable by all like any other file: the repository may be
 * shared by several users. */
int vms_mkostemp_readable(char *template)
{
    int fd = mkostemp(template, O_CLOEXEC);
    if (fd >= 0 && fchmod(fd, 0644) < 0) {
        int e = errno;
        close(fd);
        unlink(template);
        return -e;
    }
    return fd < 0 ? -errno : fd;
}

int vms_write_file_durably(char *template, const char *dest, const void *data, size_t len,
                           fsp_error *err)
{
    int fd = vms_mkostemp_readable(template);
    if (fd < 0)
        return fsp_fail(err, FSP_EK_IO, fd, "%s: cannot create: %s", template, strerror(-fd));
    int rc = vms_write_all(fd, data, len);
    if (rc) {
        close(fd);
        unlink(template);
        return fsp_fail(err, FSP_EK_IO, rc, "%s: cannot write: %s", template, strerror(-rc));
    }
    rc = vms_commit_file(fd, template, dest, err);
    if (rc)
        unlink(template);
    return rc;
}

/* Makes TMP (written through FD, which this closes) durable as DEST. */
int vms_commit_file(int fd, const char *tmp, const char *dest, fsp_error *err)
{
    if (fsync(fd) < 0) {
        int e = errno;
        close(fd);
        return fsp_fail(err, FSP_EK_IO, -e, "%s: cannot write: %s", tmp, strerror(e));
    }
    if (close(fd) < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot write: %s", tmp, strerror(errno));
    if (rename(tmp, dest) < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot rename into place: %s", dest,
                        strerror(errno));
    int rc = vms_fsync_parent(dest);
    return rc ? fsp_fail(err, FSP_EK_IO, rc, "%s: cannot sync its directory: %s", dest,
                         strerror(-rc))
              : 0;
}
