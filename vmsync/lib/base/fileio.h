/* Small file helpers: whole reads and writes that retry, and durable renames.
 * They return 0 or a negative errno.  Private to libvmsync. */
#ifndef VMS_FILEIO_H
#define VMS_FILEIO_H

#include "fsparse.h"

#include <stddef.h>
#include <stdint.h>

int vms_write_all(int fd, const void *buf, size_t len);
int vms_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);
/* A file that ends early is -ENODATA: damage, not an I/O error. */
int vms_pread_all(int fd, void *buf, size_t len, uint64_t off);
int vms_fsync_dir(const char *path);
/* fsyncs the directory holding PATH, so a rename into it survives a crash. */
int vms_fsync_parent(const char *path);
int vms_sha256(const void *data, size_t len, uint8_t out[FSP_SHA256_LEN]);
/* The SHA-256 of the file at PATH, read whole. */
int vms_sha256_file(const char *path, uint8_t out[FSP_SHA256_LEN]);

/* "DIR/NAME", malloc'd; NULL when out of memory. */
char *vms_path_join(const char *dir, const char *name);
/* mkostemp (O_CLOEXEC) with mode 0644: a descriptor, or a negative errno. */
int vms_mkostemp_readable(char *template);
/* Makes TMP (written through FD, which this closes) durable as DEST: fsync,
 * rename, fsync of the directory. */
int vms_commit_file(int fd, const char *tmp, const char *dest, fsp_error *err);
/* Writes DATA durably as DEST through a temporary made from TEMPLATE (a
 * mkostemp template, rewritten in place), which is gone again on failure. */
int vms_write_file_durably(char *template, const char *dest, const void *data, size_t len,
                           fsp_error *err);

#endif
