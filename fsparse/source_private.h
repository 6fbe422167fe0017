/* Private helpers between source.c and partition.c.  internal.h is shared by
 * the whole core; these two files need a little more of each other, so the
 * contract lives here instead. */
#ifndef FSPARSE_SOURCE_PRIVATE_H
#define FSPARSE_SOURCE_PRIVATE_H

#include "fsparse.h"

/* For a raw source (a regular file or a block device): opens a new read-only
 * descriptor (O_CLOEXEC) of the same image, with a file offset of its own, and
 * returns it; the caller closes it.  libblkid reads with lseek + read, so it
 * must not share the offset of the source's descriptor.
 * Returns -EOPNOTSUPP for sources with no descriptor (qemu-nbd, memory), or
 * another negative errno. */
int fsp_source_reopen_fd(const fsp_source *src);

#endif
