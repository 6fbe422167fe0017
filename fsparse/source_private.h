/* Private helpers between source.c and partition.c.  internal.h is shared by
 * the whole core; these two files need a little more of each other, so the
 * contract lives here instead. */
#ifndef FSPARSE_SOURCE_PRIVATE_H
#define FSPARSE_SOURCE_PRIVATE_H

#include "fsparse.h"

#include <sys/types.h>

/* For a raw source (a regular file or a block device): opens a new read-only
 * descriptor (O_CLOEXEC) of the same image, with a file offset of its own, and
 * returns it; the caller closes it.  libblkid reads with lseek + read, so it
 * must not share the offset of the source's descriptor.
 * Returns -EOPNOTSUPP for sources with no descriptor (qemu-nbd, memory), or
 * another negative errno. */
int fsp_source_reopen_fd(const fsp_source *src);

/* Reads up to LEN bytes at OFF; returns the count read or a negative errno. */
ssize_t fsp_read_some(int fd, void *buf, size_t len, uint64_t off);

/* The qemu format name of the image open as FD (SIZE bytes): "qcow2", "vmdk",
 * "vhdx", "vdi", "vpc" from magic bytes, else "raw" (a static string). */
int fsp_detect_format(int fd, const char *path, uint64_t size, const char **format,
                      fsp_error *err);

/* ---- backing.c: the files an image names ---- */

#define FSP_MAX_CHAIN 16 /* backing files below an image; extents count too */

/* An image and its backing files, top first: realpaths and pinned formats. */
struct fsp_chain_link {
    char *path;
    const char *format; /* static string */
    int fd;             /* -1, or (a path that is not UTF-8) qemu-nbd inherits it */
};
struct fsp_chain {
    struct fsp_chain_link link[FSP_MAX_CHAIN + 1];
    unsigned n;
};

/* Checks every file that qemu would open for PATH (of FORMAT): backing files,
 * vmdk extents and parents must be regular files inside PATH's folder (after
 * realpath) or a folder given to fsp_allow_backing_dir; protocols, json:
 * names, loops and chains deeper than FSP_MAX_CHAIN are refused (FSP_EK_FORMAT,
 * the message names the image and the reference).  Fills CHAIN, which the
 * caller frees with fsp_chain_free (also after a failure). */
int fsp_chain_check(const char *path, const char *format, struct fsp_chain *chain,
                    fsp_error *err);
void fsp_chain_free(struct fsp_chain *chain);
/* CHAIN as a qemu "json:" file name with every format pinned and no backing
 * past the last link, so qemu opens exactly the checked files; malloc'd, NULL
 * when out of memory.  A link with a descriptor is named /proc/self/fd/N:
 * qemu-nbd must inherit it (it is close-on-exec here). */
char *fsp_chain_json(const struct fsp_chain *chain);

#endif
