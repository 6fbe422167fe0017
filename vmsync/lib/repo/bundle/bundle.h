/* A bundle file (docs/bundle.md): a pax tar of fixed members, read and
 * written with libarchive.  The writer is declared in repo.h (the engine
 * writes bundles from any repository); the reader and the backend that
 * serves a bundle as a read-only repository are here.  Private to
 * repo/bundle/ and repo.c. */
#ifndef VMS_BUNDLE_H
#define VMS_BUNDLE_H

#include "base/codec.h"
#include "base/keyset.h"
#include "repo/repo.h"

#include <limits.h>

#define VMS_BUNDLE_FORMAT 1
#define VMS_BUNDLE_HEADER_MAGIC "VMSYNCBH"
#define VMS_BUNDLE_VERSION_MAGIC "VMSYNCVR"
#define VMS_BUNDLE_SIGNATURE_MAGIC "VMSYNCSG"
#define VMS_BUNDLE_END_MAGIC "VMSYNCEN"
#define VMS_BUNDLE_MAGIC_LEN 8

#define VMS_BUNDLE_HEADER_MEMBER "vmsync-bundle"
#define VMS_BUNDLE_VERSION_MEMBER "version"
/* The version's signature: the one place it is written and checked. */
#define VMS_BUNDLE_SIGNATURE_MEMBER "version.sig"
#define VMS_BUNDLE_MANIFEST_MEMBER "manifest"
#define VMS_BUNDLE_OBJECTS_MEMBER "objects-%06u.zst"
#define VMS_BUNDLE_END_MEMBER "end"

#define VMS_BUNDLE_FLAG_SIGNED 0x1u /* version.sig follows version */

/* Bounds a reader holds every bundle to. */
#define VMS_BUNDLE_HEADER_MAX (1u << 20)
#define VMS_BUNDLE_RECORD_MAX (64u << 10)
#define VMS_BUNDLE_MANIFEST_MAX (256u << 20)
#define VMS_BUNDLE_MEMBER_MAX (2ull << 30) /* an objects member, stored or decompressed */
#define VMS_BUNDLE_WINDOW_LOG 27           /* zstd window: 128 MiB */
#define VMS_BUNDLE_OBJECTS_MAX (1u << 28)
#define VMS_BUNDLE_FRAME_HEAD (FSP_SHA256_LEN + 4) /* an object's hash and length */
/* A writer starts a new objects member after this many raw bytes. */
#define VMS_BUNDLE_MEMBER_TARGET (256u << 20)

/* The header record, as written and read. */
struct vms_bundle_header {
    uint32_t format, flags;
    char image[256];
    uint32_t version, parent, base;
    uint8_t (*held)[FSP_SHA256_LEN]; /* malloc'd */
    size_t n_held;
    uint64_t objects, object_bytes;
};

/* The records' encodings (bundle.c); decoders fail with FSP_EK_FORMAT naming
 * PATH and the member. */
void vms_bundle_encode_header(struct vms_wbuf *b, const struct vms_bundle_header *h);
int vms_bundle_decode_header(const uint8_t *p, size_t len, struct vms_bundle_header *h,
                             const char *path, fsp_error *err);
/* The version and signature records are declared in repo.h: web trees
 * carry them too. */

/* The SHA-256 of a member's data, by name: the trailer lists one for every
 * member before it, so that a changed byte anywhere is found, and named. */
#define VMS_BUNDLE_NAME_MAX 64
struct vms_bundle_seal {
    char name[VMS_BUNDLE_NAME_MAX];
    uint8_t hash[FSP_SHA256_LEN];
};
struct vms_bundle_seals {
    struct vms_bundle_seal *v;
    size_t n, cap;
};
int vms_bundle_seal_add(struct vms_bundle_seals *s, const char *name, const uint8_t hash[FSP_SHA256_LEN]);

/* The trailer: the counts, the seals, and the SHA-256 of the record's bytes
 * before it (so that damage to the trailer itself is told apart). */
struct vms_bundle_end {
    uint64_t members, objects;
    struct vms_bundle_seals seals; /* decoded: malloc'd, the caller's */
};
void vms_bundle_encode_end(struct vms_wbuf *b, const struct vms_bundle_end *e);
int vms_bundle_decode_end(const uint8_t *p, size_t len, struct vms_bundle_end *e, const char *path,
                          fsp_error *err);

/* Where an object is: its member (from 1) and its frame's offset in the
 * member's decompressed bytes. */
struct vms_bundle_loc {
    uint32_t member, len;
    uint64_t offset;
};
struct vms_bundle_member {
    uint64_t raw, stored;
};

/* What reading a whole bundle learnt, every member checked. */
struct vms_bundle_contents {
    struct vms_bundle_header header;
    struct vms_version version;
    uint8_t *manifest; /* the manifest file's bytes */
    size_t manifest_len;
    struct vms_keyset ids;          /* the objects, in the bundle's order */
    struct vms_bundle_loc *locs;    /* parallel to ids */
    size_t cap_locs;
    struct vms_bundle_member *members; /* [0] unused: members count from 1 */
    size_t n_members, cap_members;
    uint64_t file_bytes;
    int spool; /* read from standard input: the unnamed copy later passes read; else -1 */
    char **parts; /* else the files it is read from, NULL-terminated */
};

/* The stored bytes an object stands for: its member's, shared by raw size. */
size_t vms_bundle_stored_share(const struct vms_bundle_contents *c, const struct vms_bundle_loc *l);

/* Reads PATH ("-": standard input, spooled to an unnamed temporary file)
 * whole into C, checking every member and object (docs/bundle.md); PROGRESS
 * hears VMS_PHASE_CHECK_OBJECTS in bytes of the file. */
int vms_bundle_read(const char *path, const struct vms_repo_progress *progress,
                    struct vms_bundle_contents *c, fsp_error *err);
void vms_bundle_contents_free(struct vms_bundle_contents *c);
/* Objects HASHES[0..n) of C (every one in C->ids), read again from PATH
 * (or C's spool) in one pass and checked, to CB in the bundle's order (CB's
 * INDEX says which was asked for; an object asked for twice comes twice). */
int vms_bundle_fetch(const char *path, const struct vms_bundle_contents *c,
                     const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, vms_object_cb cb,
                     void *ctx, fsp_error *err);

/* ---- parts (parts.c) ---------------------------------------------------------
 * A bundle of several parts is FILE, FILE.002, FILE.003, ...: one tar's
 * bytes cut every LIMIT bytes.  Part K's name (K from 1) into OUT; false
 * when it does not fit. */
bool vms_bundle_part_name(const char *path, uint32_t k, char *out, size_t len);
/* Where a writer's bytes go: standard output for "-", else parts written
 * under temporary names (one part when LIMIT is 0), renamed by commit: over
 * what is there when REPLACE (and the parts of an older, longer bundle
 * removed), else never over a file. */
struct vms_bundle_out {
    char path[PATH_MAX];
    bool to_stdout, replace;
    uint64_t limit, in_part;
    char (*tmps)[PATH_MAX + 16];
    size_t n, cap;
    int fd;
};
int vms_bundle_out_open(struct vms_bundle_out *o, const char *path, uint64_t limit, bool replace,
                        fsp_error *err);
int vms_bundle_out_write(struct vms_bundle_out *o, const void *p, size_t len); /* 0 or -errno */
int vms_bundle_out_commit(struct vms_bundle_out *o, fsp_error *err);
/* Removes the temporaries that commit did not rename. */
void vms_bundle_out_free(struct vms_bundle_out *o);
/* The parts of the bundle whose first part is PATH, NULL-terminated, and
 * their bytes together. */
int vms_bundle_parts(const char *path, char ***parts, uint64_t *bytes, fsp_error *err);
void vms_bundle_parts_free(char **parts);

/* True when PATH is a regular file that starts as a tar does: repo.c opens
 * it as a bundle, which then says whether it is one. */
bool vms_bundle_sniff(const char *path);
int vms_bundle_open(const char *path, const struct vms_repo_progress *progress, vms_repo **out,
                    fsp_error *err);

#endif
