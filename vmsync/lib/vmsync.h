/* libvmsync: manifests, image comparison, and (later) the repository engine.
 * Errors follow fsparse's convention: 0 or a negative errno, with the message
 * in the caller's fsp_error.  Nothing here prints except the JSON printer,
 * which writes where it is told. */
#ifndef VMSYNC_H
#define VMSYNC_H

#include "fsparse.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- manifest files -----------------------------------------------------
 * Format (version 1), all integers little-endian:
 *   header, 16 bytes, not compressed:
 *     magic "VMSYNCMF", u16 version, u16 header length (16), u32 flags (0)
 *   body: one zstd stream holding records, each
 *     u8 tag, u32 payload length, payload
 *   Payload integers are unsigned LEB128 varints (signed ones zigzag-encoded);
 *   strings and byte strings are a varint N then N-1 bytes, N = 0 marking an
 *   absent one; hashes are 32 raw bytes.  Tags: 1 image, 2 volume, 3 entry, 4 warning, 5 layout run,
 *   6 end (summary, digest, and the SHA-256 of every byte of the body before
 *   it).  The field order of each payload is in manifest.c; readers reject
 *   unknown tags, oversized payloads, trailing bytes and a missing end record.
 */
#define VMS_MANIFEST_MAGIC "VMSYNCMF"
#define VMS_MANIFEST_VERSION 1

typedef struct vms_manifest_writer vms_manifest_writer;

/* Writes to a temporary file beside PATH; commit makes it PATH atomically
 * (fsync, rename, fsync of the directory).  Abort removes the temporary. */
int vms_manifest_writer_open(const char *path, vms_manifest_writer **out, fsp_error *err);
const struct fsp_sink *vms_manifest_writer_sink(vms_manifest_writer *w);
int vms_manifest_writer_commit(vms_manifest_writer *w, fsp_error *err);
void vms_manifest_writer_abort(vms_manifest_writer *w);

/* Streams a manifest file into SINK, checking every record. */
int vms_manifest_read(const char *path, const struct fsp_sink *sink, fsp_error *err);
/* True when PATH starts with the manifest magic. */
bool vms_is_manifest(const char *path);

/* Reads an image (scanning it) or a manifest file into SINK. */
int vms_load(const char *path, uint32_t scan_flags, const struct fsp_sink *sink, fsp_error *err);

/* ---- JSON ---------------------------------------------------------------- */

#define VMS_JSON_LAYOUT 0x1u /* include the layout map */

typedef struct vms_json vms_json;
vms_json *vms_json_new(FILE *out, uint32_t flags);
const struct fsp_sink *vms_json_sink(vms_json *j);
void vms_json_free(vms_json *j);
/* JSON string escaping for other printers; writes "..." to OUT. */
void vms_json_string(FILE *out, const char *s);

/* ---- comparing two images or manifests --------------------------------- */

enum vms_change {
    VMS_ADDED = 1,
    VMS_REMOVED,
    VMS_CHANGED,
    VMS_MOVED,
};

#define VMS_WHAT_CONTENT 0x01u
#define VMS_WHAT_TYPE 0x02u
#define VMS_WHAT_MODE 0x04u
#define VMS_WHAT_OWNER 0x08u
#define VMS_WHAT_SYMLINK 0x10u
#define VMS_WHAT_SIZE 0x20u
#define VMS_WHAT_STREAMS 0x40u

struct vms_diff_item {
    enum vms_change change;
    uint32_t volume;
    const char *path;     /* the new path for moves */
    const char *old_path; /* moves only */
    uint32_t what;        /* VMS_WHAT_* for changes */
};

typedef int (*vms_diff_cb)(void *ctx, const struct vms_diff_item *item);

/* Compares A and B (images or manifests) and calls CB for every difference,
 * sorted by volume then path with the same comparison the merge uses. */
int vms_diff(const char *a, const char *b, vms_diff_cb cb, void *ctx, fsp_error *err);
const char *vms_what_name(uint32_t bit);

#ifdef __cplusplus
}
#endif
#endif
