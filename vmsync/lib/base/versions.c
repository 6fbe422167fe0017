/* The libraries vmsync was built with, and the ones it runs with: a bug
 * report needs both, since a distribution upgrades a shared library under a
 * binary that was built against an older one. */
#include "vmsync.h"

#include <archive.h>
#include <ext2fs/ext2fs.h>
#include <libnbd.h>
#include <libssh/libssh.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <sqlite3.h>
#include <zstd.h>

/* The headers of ext2fs, ntfs-3g and libnbd carry no version: the build
 * passes pkg-config's (the Makefile); a build without them says unknown. */
#ifndef VMS_BUILT_EXT2FS
#define VMS_BUILT_EXT2FS NULL
#endif
#ifndef VMS_BUILT_NTFS3G
#define VMS_BUILT_NTFS3G NULL
#endif
#ifndef VMS_BUILT_LIBNBD
#define VMS_BUILT_LIBNBD NULL
#endif

static const char *ext2fs_running(void)
{
    const char *version = NULL, *date = NULL;
    ext2fs_get_library_version(&version, &date);
    return version;
}

void vms_library_versions(vms_library_version_fn *each, void *ctx)
{
    struct nbd_handle *nbd = nbd_create(); /* libnbd tells its version through a handle */
    const struct vms_library_version list[] = {
        {"ext2fs", VMS_BUILT_EXT2FS, ext2fs_running()},
        {"ntfs-3g", VMS_BUILT_NTFS3G, NULL}, /* libntfs-3g has no call for it */
        {"libnbd", VMS_BUILT_LIBNBD, nbd ? nbd_get_version(nbd) : NULL},
        {"openssl", OPENSSL_VERSION_TEXT, OpenSSL_version(OPENSSL_VERSION)},
        {"zstd", ZSTD_VERSION_STRING, ZSTD_versionString()},
        {"sqlite", SQLITE_VERSION, sqlite3_libversion()},
        {"libssh", SSH_STRINGIFY(LIBSSH_VERSION), ssh_version(0)},
        {"libarchive", ARCHIVE_VERSION_ONLY_STRING, archive_version_details()},
    };
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        each(ctx, &list[i]);
    if (nbd)
        nbd_close(nbd);
}
