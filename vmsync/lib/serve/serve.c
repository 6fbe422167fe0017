/* The server side of the agent protocol (docs/protocol.md): vms_serve, one
 * handler per request, for vmsync-agent.
 *
 * A handler returns 0, or fails with ERR, which the loop sends to the client
 * as ERROR.  Most failures leave the session usable (an unknown image, a
 * lease held elsewhere); a malformed request, or a failure in the middle of a
 * stream, sets FATAL, and the session ends after the ERROR. */
#include "base/fileio.h"
#include "manifest/delta.h"
#include "wire/proto.h"
#include "repo/repo.h"
#include "wire/xfer.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One client's session. */
struct agent {
    const struct vms_serve_opts *o;
    char root[PATH_MAX];     /* realpath of o->root */
    struct vms_conn conn;
    int in_fd, out_fd;
    vms_repo *repo;          /* after OPEN */
    char client_host[256];
    char client_user[128];
    char path[PATH_MAX];     /* the repository, as the client named it */
    char released[256];      /* the image whose lease this session last gave back */
    uint32_t released_version;
    char cache[PATH_MAX];    /* segment cache directory ("" without) */
    bool hello;
    uint32_t proto; /* the protocol version the client asked for */
    struct vms_serve_stats *stats;
};

struct request {
    struct agent *a;
    struct vms_rbuf *body;
    fsp_error *err;
    bool fatal;
};

static int malformed(struct request *q, uint8_t type)
{
    char what[64];
    snprintf(what, sizeof what, "a malformed %s request", vms_msg_name(type));
    q->fatal = true;
    return vms_proto_fail(&q->a->conn, q->err, what);
}

static int reply(struct request *q, uint8_t type, struct vms_wbuf *b)
{
    int rc = vms_conn_send(&q->a->conn, type, b, q->err);
    if (b)
        vms_wbuf_free(b);
    if (rc)
        q->fatal = true;
    return rc;
}

static int denied_read_only(struct request *q)
{
    return fsp_fail(q->err, VMS_EK_DENIED, -EACCES,
                    "%s: this key may only read: export, log, manifests (the agent runs with "
                    "--read-only)", q->a->path);
}

/* The host the repository handle was opened as: what leases record. */
static const char *client_host(const struct agent *a)
{
    return a->client_host[0] ? a->client_host : "unknown";
}

/* The audit log holds what the agent saw, in its own words: the user is its
 * --user, and no text the client sends becomes part of an entry. */
static int record(struct request *q, const char *action, const char *image, uint32_t version,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int record(struct request *q, const char *action, const char *image, uint32_t version,
                  const char *fmt, ...)
{
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return vms_repo_audit(q->a->repo, action, image, version, detail, q->err);
}

/* A temporary file in the repository's cache: PATH gets its name. */
static int temp_file(struct agent *a, char *path, size_t len, fsp_error *err)
{
    char dir[PATH_MAX - 16];
    int rc = vms_repo_cache_dir(a->repo, "tmp", dir, sizeof dir, err);
    if (rc)
        return rc;
    snprintf(path, len, "%s/agent-XXXXXX", dir);
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot create: %s", path, strerror(errno));
    return fd;
}

/* ---- session set-up ------------------------------------------------------------ */

static int on_hello(struct request *q)
{
    struct agent *a = q->a;
    uint64_t magic = vms_get_varint(q->body), version = vms_get_varint(q->body);
    char software[256];
    vms_get_strbuf(q->body, a->client_user, sizeof a->client_user);
    vms_get_strbuf(q->body, a->client_host, sizeof a->client_host);
    vms_get_strbuf(q->body, software, sizeof software);
    if (!vms_get_done(q->body) || magic != VMS_PROTO_MAGIC)
        return malformed(q, VMS_M_HELLO);
    unsigned newest = a->o->max_protocol && a->o->max_protocol < VMS_PROTO_VERSION
                          ? a->o->max_protocol : VMS_PROTO_VERSION;
    if (version < VMS_PROTO_VERSION_MIN || version > newest) {
        q->fatal = true;
        return fsp_fail(q->err, FSP_EK_USAGE, -EPROTONOSUPPORT,
                        "vmsync-agent %s speaks protocols %d to %u, the client (%s) %llu",
                        VMSYNC_VERSION, VMS_PROTO_VERSION_MIN, newest, software,
                        (unsigned long long)version);
    }
    a->hello = true;
    a->proto = (uint32_t)version;
    struct vms_wbuf b = {0};
    vms_put_varint(&b, version);
    vms_put_str(&b, "vmsync-agent " VMSYNC_VERSION);
    return reply(q, VMS_M_HELLO_OK, &b);
}

/* ROOT/PATH, which must exist and stay under ROOT once symlinks are
 * resolved. */
static int resolve(struct request *q, const char *path, char *out)
{
    const struct agent *a = q->a;
    char joined[2 * PATH_MAX];
    const char *p = path;
    while (*p == '/')
        p++;
    for (const char *c = p; *c;) {
        size_t n = strcspn(c, "/");
        if (n == 2 && c[0] == '.' && c[1] == '.')
            goto outside;
        c += n + (c[n] == '/');
    }
    snprintf(joined, sizeof joined, "%s/%s", a->root, p);
    if (!realpath(joined, out))
        return fsp_fail(q->err, FSP_EK_OPEN, -errno, "%s: no repository there: %s", path,
                        strerror(errno));
    size_t rl = strlen(a->root);
    if (strcmp(out, a->root) == 0 || (strncmp(out, a->root, rl) == 0 && out[rl] == '/') ||
        strcmp(a->root, "/") == 0)
        return 0;
outside:
    return fsp_fail(q->err, VMS_EK_DENIED, -EACCES,
                    "%s: outside the agent's root: this key serves only repositories under its "
                    "--root", path);
}

/* A reflector's repository: upstream's of the same name, through the cache
 * (one for every repository: objects are named by their content). */
static int open_reflected(struct request *q)
{
    const struct vms_serve_opts *o = q->a->o;
    const char *p = q->a->path;
    while (*p == '/')
        p++;
    char url[2 * PATH_MAX], host[512];
    if (!*p || strstr(p, "..") || strlen(o->upstream) + strlen(p) + 2 > PATH_MAX)
        return fsp_fail(q->err, FSP_EK_USAGE, -EINVAL, "%s: not a repository name", q->a->path);
    snprintf(url, sizeof url, "%s/%s", o->upstream, p);
    snprintf(host, sizeof host, "%s@%s", o->user, client_host(q->a));
    struct vms_reflect_opts ro = {.upstream = url, .name = q->a->path, .dir = o->reflect_dir,
                                  .max = o->reflect_max, .user = o->user, .host = host,
                                  .remote = o->upstream_opts, .trusted = o->trusted,
                                  .n_trusted = o->n_trusted};
    return vms_repo_open_reflector(&ro, &q->a->repo, q->err);
}

static int on_open(struct request *q)
{
    struct agent *a = q->a;
    char full[PATH_MAX];
    vms_get_strbuf(q->body, a->path, sizeof a->path);
    if (!vms_get_done(q->body) || a->repo)
        return malformed(q, VMS_M_OPEN);
    int rc = a->o->upstream ? open_reflected(q) : resolve(q, a->path, full);
    if (!rc && !a->o->upstream)
        rc = vms_repo_open(full, a->o->user, client_host(a), NULL, &a->repo, q->err);
    if (!rc && a->o->cache_max &&
        vms_repo_cache_dir(a->repo, "segments", a->cache, sizeof a->cache, q->err))
        a->cache[0] = 0; /* no cache is slower, not wrong */
    return rc ? rc : reply(q, VMS_M_OK, NULL);
}

/* ---- the catalog ------------------------------------------------------------------ */

/* A client older than signatures reads a VERSION_INFO with one for a
 * malformed reply: it gets the version unsigned. */
static int send_version(void *ctx, const struct vms_version *v)
{
    struct request *q = ctx;
    struct vms_wbuf b = {0};
    struct vms_version shown = *v;
    if (q->a->proto < VMS_PROTO_VERSION_SIGNED)
        shown.is_signed = false;
    vms_put_version(&b, &shown);
    return reply(q, VMS_M_VERSION_INFO, &b);
}

static int on_version(struct request *q)
{
    char image[256];
    vms_get_strbuf(q->body, image, sizeof image);
    uint32_t number = (uint32_t)vms_get_bounded(q->body, UINT32_MAX);
    if (!vms_get_done(q->body))
        return malformed(q, VMS_M_VERSION);
    struct vms_version v;
    int rc = vms_repo_version(q->a->repo, image, number, &v, q->err);
    if (rc)
        return rc;
    return send_version(q, &v);
}

static int on_list(struct request *q)
{
    char image[256];
    bool all = vms_get_u8(q->body) != 0;
    vms_get_strbuf(q->body, image, sizeof image);
    if (!vms_get_done(q->body))
        return malformed(q, VMS_M_LIST);
    int rc = vms_repo_list(q->a->repo, all ? NULL : image, send_version, q, q->err);
    if (rc)
        q->fatal = true; /* some versions may be out already */
    return rc ? rc : reply(q, VMS_M_END, NULL);
}

static int on_lease_take(struct request *q)
{
    char image[256];
    vms_get_strbuf(q->body, image, sizeof image);
    uint32_t version = (uint32_t)vms_get_bounded(q->body, UINT32_MAX);
    bool steal = vms_get_u8(q->body) != 0;
    if (!vms_get_done(q->body))
        return malformed(q, VMS_M_LEASE_TAKE);
    if (q->a->o->read_only)
        return fsp_fail(q->err, VMS_EK_DENIED, -EACCES,
                        "%s: this key may only read, and a checkout takes a lease: use vmsync "
                        "export (the agent runs with --read-only)", q->a->path);
    int rc = vms_repo_lease_take(q->a->repo, image, version, steal, q->err);
    if (!rc)
        rc = record(q, "checkout", image, version, "lease taken");
    return rc ? rc : reply(q, VMS_M_OK, NULL);
}

static int on_lease_get(struct request *q)
{
    char image[256];
    vms_get_strbuf(q->body, image, sizeof image);
    if (!vms_get_done(q->body))
        return malformed(q, VMS_M_LEASE_GET);
    struct vms_lease l = {0};
    bool found = false;
    int rc = vms_repo_lease_get(q->a->repo, image, &l, &found, q->err);
    if (rc)
        return rc;
    struct vms_wbuf b = {0};
    vms_put_u8(&b, found);
    vms_put_str(&b, l.image);
    vms_put_varint(&b, l.version);
    vms_put_str(&b, l.user);
    vms_put_str(&b, l.host);
    vms_put_svarint(&b, l.since);
    return reply(q, VMS_M_LEASE_INFO, &b);
}

static int on_lease_release(struct request *q)
{
    char image[256];
    vms_get_strbuf(q->body, image, sizeof image);
    if (!vms_get_done(q->body))
        return malformed(q, VMS_M_LEASE_RELEASE);
    if (q->a->o->read_only)
        return denied_read_only(q);
    struct vms_lease held;
    bool found = false;
    int rc = vms_repo_lease_get(q->a->repo, image, &held, &found, q->err);
    if (!rc)
        rc = vms_repo_lease_release(q->a->repo, image, q->err); /* the holder's only */
    if (!rc && found) { /* an AUDIT "release" may now say so */
        snprintf(q->a->released, sizeof q->a->released, "%s", image);
        q->a->released_version = held.version;
    }
    return rc ? rc : reply(q, VMS_M_OK, NULL);
}

/* A release is news once this session gave that lease back (a check-in's
 * release sends no AUDIT "release"): the agent writes the entry. */
static int on_audit_release(struct request *q, const char *image)
{
    struct agent *a = q->a;
    int rc = 0;
    if (a->released[0] && !strcmp(image, a->released))
        rc = record(q, "release", image, a->released_version, "lease given back");
    a->released[0] = 0;
    return rc ? rc : reply(q, VMS_M_OK, NULL);
}

/* The entry is in the agent's words: this session applied the bundle, and
 * the catalog says as whom the version was recorded. */
static int record_apply(struct request *q, const struct vms_version *v)
{
    return record(q, "apply", v->image, v->number, "on behalf of %s@%s, %llu objects received", v->user,
                  v->host, (unsigned long long)q->a->stats->objects_received);
}

static int on_audit(struct request *q)
{
    char action[64], image[256], detail[1024];
    vms_get_strbuf(q->body, action, sizeof action);
    vms_get_strbuf(q->body, image, sizeof image);
    uint32_t version = (uint32_t)vms_get_bounded(q->body, UINT32_MAX);
    vms_get_strbuf(q->body, detail, sizeof detail);
    if (!vms_get_done(q->body))
        return malformed(q, VMS_M_AUDIT);
    static const char *const known[] = {"checkout", "checkin", "import", "export", "release", "apply"};
    size_t i = 0;
    while (i < sizeof known / sizeof *known && strcmp(action, known[i]))
        i++;
    if (i == sizeof known / sizeof *known)
        return fsp_fail(q->err, FSP_EK_USAGE, -EINVAL, "%s: no audit action named '%s'",
                        q->a->path, action);
    /* Checkouts, check-ins and imports were recorded as they happened; an
     * export is news, and so is a bundle's version applied (its check-in
     * was recorded through the author's own session), but only once the
     * version is known to exist.  A read-only key leaves the catalog as it
     * was. */
    if (!strcmp(action, "release"))
        return on_audit_release(q, image);
    bool exported = !strcmp(action, "export"), applied = !strcmp(action, "apply");
    bool news = (exported || applied) && !q->a->o->read_only;
    struct vms_version v;
    int rc = news ? vms_repo_version(q->a->repo, image, version, &v, q->err) : 0;
    if (!rc && news && exported)
        rc = record(q, "export", v.image, v.number, "%llu objects sent",
                    (unsigned long long)q->a->stats->objects_sent);
    if (!rc && news && applied)
        rc = record_apply(q, &v);
    return rc ? rc : reply(q, VMS_M_OK, NULL);
}

/* ---- queries: read-only, so served to every key ------------------------------------- */

/* Ends a stream of rows: END, or, once some rows may be out, a fatal ERROR. */
static int end_rows(struct request *q, int rc)
{
    if (rc)
        q->fatal = true;
    return rc ? rc : reply(q, VMS_M_END, NULL);
}

static void put_lease_fields(struct vms_wbuf *b, const struct vms_lease_info *l)
{
    vms_put_varint(b, l ? l->version : 0);
    vms_put_str(b, l ? l->user : "");
    vms_put_str(b, l ? l->host : "");
    vms_put_svarint(b, l ? l->since : 0);
}

static int send_image(void *ctx, const struct vms_image_info *i)
{
    struct vms_wbuf b = {0};
    vms_put_str(&b, i->name);
    vms_put_varint(&b, i->latest);
    vms_put_varint(&b, i->size);
    vms_put_svarint(&b, i->created);
    vms_put_u8(&b, i->lease != NULL);
    put_lease_fields(&b, i->lease);
    return reply(ctx, VMS_M_IMAGE_INFO, &b);
}

static int on_images(struct request *q)
{
    if (!vms_get_done(q->body))
        return malformed(q, VMS_M_IMAGES);
    return end_rows(q, vms_repo_images(q->a->repo, send_image, q, q->err));
}

static int send_lease(void *ctx, const struct vms_lease_info *l)
{
    struct vms_wbuf b = {0};
    vms_put_u8(&b, 1);
    vms_put_str(&b, l->image);
    put_lease_fields(&b, l);
    return reply(ctx, VMS_M_LEASE_INFO, &b);
}

static int on_leases(struct request *q)
{
    char image[256];
    bool all = vms_get_u8(q->body) != 0;
    vms_get_strbuf(q->body, image, sizeof image);
    if (!vms_get_done(q->body))
        return malformed(q, VMS_M_LEASES);
    return end_rows(q, vms_repo_leases(q->a->repo, all ? NULL : image, send_lease, q, q->err));
}

/* The agent answers with names of files, never the directories they were in:
 * a detail's first field ("PATH" of an import, "PATH; ..." of a local
 * checkout) keeps only what follows its last '/'. */
static void detail_for_client(const char *detail, char *out, size_t cap)
{
    size_t first = strcspn(detail, ";");
    const char *cut = memrchr(detail, '/', first);
    snprintf(out, cap, "%s", cut ? cut + 1 : detail);
}

static int send_audit(void *ctx, const struct vms_audit_entry *e)
{
    char detail[VMS_AUDIT_DETAIL_MAX];
    detail_for_client(e->detail, detail, sizeof detail);
    struct vms_wbuf b = {0};
    vms_put_svarint(&b, e->at);
    vms_put_str(&b, e->user);
    vms_put_str(&b, e->host);
    vms_put_str(&b, e->action);
    vms_put_str(&b, e->image ? e->image : "");
    vms_put_varint(&b, e->version);
    vms_put_str(&b, detail);
    return reply(ctx, VMS_M_AUDIT_ENTRY, &b);
}

static int on_audit_log(struct request *q)
{
    char image[256];
    bool all = vms_get_u8(q->body) != 0;
    vms_get_strbuf(q->body, image, sizeof image);
    int64_t since = vms_get_svarint(q->body);
    if (!vms_get_done(q->body))
        return malformed(q, VMS_M_AUDIT_LOG);
    int rc = vms_repo_audit_log(q->a->repo, all ? NULL : image, since, send_audit, q, q->err);
    return end_rows(q, rc);
}

/* ---- the signing key ------------------------------------------------------------------ */

/* The public half only; the comment is the last part of the path the client
 * named, so that no name of the server's own shows. */
static int on_key(struct request *q)
{
    if (!vms_get_done(q->body))
        return malformed(q, VMS_M_KEY);
    struct vms_public_key k;
    int rc = vms_repo_key_public(q->a->repo, &k, q->err);
    if (rc)
        return rc;
    const char *slash = strrchr(q->a->path, '/');
    struct vms_wbuf b = {0};
    vms_put_raw(&b, k.key, VMS_PUBLIC_KEY_LEN);
    vms_put_str(&b, slash ? slash + 1 : q->a->path);
    return reply(q, VMS_M_KEY_INFO, &b);
}

/* ---- manifests ---------------------------------------------------------------------- */

static int send_file(struct request *q, int fd)
{
    uint8_t *buf = malloc(VMS_DATA_MAX);
    if (!buf)
        return fsp_fail(q->err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf, VMS_DATA_MAX);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? fsp_fail(q->err, FSP_EK_IO, -errno, "cannot read a manifest: %s",
                                  strerror(errno))
                       : 0;
            break;
        }
        struct vms_wbuf chunk = {.p = buf, .len = (size_t)n};
        if ((rc = vms_conn_send(&q->a->conn, VMS_M_DATA, &chunk, q->err)) != 0)
            break;
    }
    free(buf);
    if (rc)
        q->fatal = true;
    return rc ? rc : reply(q, VMS_M_END, NULL);
}

static int on_get_manifest(struct request *q)
{
    uint8_t id[FSP_SHA256_LEN];
    vms_get_hash(q->body, id);
    if (!vms_get_done(q->body))
        return malformed(q, VMS_M_GET_MANIFEST);
    char tmp[PATH_MAX];
    int fd = temp_file(q->a, tmp, sizeof tmp, q->err);
    if (fd < 0)
        return fd;
    close(fd);
    int rc = vms_repo_get_manifest(q->a->repo, id, tmp, q->err);
    fd = rc ? -1 : open(tmp, O_RDONLY | O_CLOEXEC);
    unlink(tmp);
    if (!rc && fd < 0)
        rc = fsp_fail(q->err, FSP_EK_IO, -errno, "%s: %s", tmp, strerror(errno));
    if (!rc)
        rc = send_file(q, fd);
    if (fd >= 0)
        close(fd);
    return rc;
}

typedef int data_put_fn(void *ctx, const uint8_t *p, size_t n);

static int put_in_file(void *ctx, const uint8_t *p, size_t n)
{
    return vms_write_all(*(int *)ctx, p, n);
}

static int put_in_buffer(void *ctx, const uint8_t *p, size_t n)
{
    struct vms_wbuf *b = ctx;
    vms_put_raw(b, p, n);
    return b->failed ? -ENOMEM : 0;
}

/* Reads the DATA frames of request TYPE up to END into PUT: SIZE bytes, as
 * announced. */
static int receive_data(struct request *q, uint8_t type, uint64_t size, data_put_fn *put, void *ctx)
{
    uint64_t got = 0;
    for (;;) {
        uint8_t t;
        struct vms_rbuf body;
        int rc = vms_conn_recv(&q->a->conn, &t, &body, q->err);
        if (rc) {
            q->fatal = true;
            return rc;
        }
        if (t == VMS_M_END)
            break;
        size_t n = (size_t)(body.end - body.p);
        if (t != VMS_M_DATA || n == 0 || n > VMS_DATA_MAX || got + n > size)
            return malformed(q, type);
        if ((rc = put(ctx, body.p, n)) != 0) {
            q->fatal = true; /* the rest of the stream is still coming */
            return fsp_fail(q->err, FSP_EK_IO, rc, "cannot store a manifest: %s", strerror(-rc));
        }
        got += n;
    }
    return got == size ? 0 : malformed(q, type);
}

static int on_put_manifest(struct request *q)
{
    uint64_t size = vms_get_bounded(q->body, VMS_MANIFEST_MAX);
    if (!vms_get_done(q->body))
        return malformed(q, VMS_M_PUT_MANIFEST);
    if (q->a->o->read_only) {
        q->fatal = true; /* the manifest's bytes follow */
        return denied_read_only(q);
    }
    char tmp[PATH_MAX];
    int fd = temp_file(q->a, tmp, sizeof tmp, q->err);
    if (fd < 0) {
        q->fatal = true;
        return fd;
    }
    int rc = receive_data(q, VMS_M_PUT_MANIFEST, size, put_in_file, &fd);
    close(fd);
    uint8_t id[FSP_SHA256_LEN];
    if (!rc)
        rc = vms_repo_put_manifest(q->a->repo, tmp, id, q->err); /* reads it: a bad one is refused */
    unlink(tmp);
    if (rc)
        return rc;
    q->a->stats->manifests_whole++;
    q->a->stats->manifest_bytes_in += size;
    struct vms_wbuf b = {0};
    vms_put_hash(&b, id);
    return reply(q, VMS_M_MANIFEST_ID, &b);
}

/* A temp file's name under the agent's cache, the file itself closed. */
static int temp_name(struct request *q, char *path, size_t len)
{
    int fd = temp_file(q->a, path, len, q->err);
    if (fd < 0)
        return fd;
    close(fd);
    return 0;
}

/* The stored manifest BASE's decoded form onto OUT. */
static int decode_stored(struct request *q, const uint8_t base[FSP_SHA256_LEN], struct vms_wbuf *out)
{
    char path[PATH_MAX];
    int rc = temp_name(q, path, sizeof path);
    if (rc)
        return rc;
    rc = vms_repo_get_manifest(q->a->repo, base, path, q->err);
    if (!rc)
        rc = vms_manifest_decode(path, VMS_MANIFEST_MAX, out, q->err);
    unlink(path);
    return rc;
}

/* The manifest file that DELTA against BASE decodes to, at PATH. */
static int rebuild_manifest(struct request *q, const uint8_t base[FSP_SHA256_LEN],
                            const struct vms_wbuf *delta, const char *path)
{
    struct vms_wbuf ref = {0}, decoded = {0};
    int rc = decode_stored(q, base, &ref);
    if (!rc)
        rc = vms_delta_apply(&ref, delta->p, delta->len, VMS_MANIFEST_MAX, "a manifest delta",
                             &decoded, q->err);
    vms_wbuf_free(&ref);
    if (!rc)
        rc = vms_manifest_encode(decoded.p, decoded.len, path, q->err);
    vms_wbuf_free(&decoded);
    return rc;
}

/* Whether the failure ERR is the delta's, not the agent's: BASE unknown or
 * damaged here, a delta that does not decode or decodes to no manifest,
 * another file than the client's (a zstd of another version there or here).
 * A read or write failure of the repository or the cache, or no memory, is
 * the agent's own, and sending the manifest whole would not mend it. */
static bool delta_unusable(const fsp_error *err)
{
    return err->code == -ESTALE || err->kind == FSP_EK_CORRUPT || err->kind == FSP_EK_FORMAT ||
           err->kind == VMS_EK_NOTFOUND;
}

/* Stores the manifest that DELTA against BASE decodes to, when its id is ID.
 * A delta that cannot be used is -ESTALE, which tells the client to send
 * the manifest whole; the agent's own failures stay what they are. */
static int store_from_delta(struct request *q, const uint8_t base[FSP_SHA256_LEN],
                            const uint8_t id[FSP_SHA256_LEN], const struct vms_wbuf *delta)
{
    char path[PATH_MAX];
    uint8_t rebuilt[FSP_SHA256_LEN];
    int rc = temp_name(q, path, sizeof path);
    if (!rc)
        rc = rebuild_manifest(q, base, delta, path);
    if (!rc && (rc = vms_sha256_file(path, rebuilt)) < 0)
        fsp_fail(q->err, FSP_EK_IO, rc, "cannot read a rebuilt manifest: %s", strerror(-rc));
    if (!rc && memcmp(rebuilt, id, FSP_SHA256_LEN))
        rc = fsp_fail(q->err, FSP_EK_CORRUPT, -ESTALE, "the manifest rebuilt from the delta "
                      "is not the one the client named");
    if (!rc)
        rc = vms_repo_put_manifest_from(q->a->repo, path, base, NULL, rebuilt, q->err); /* read: checked */
    unlink(path);
    if (rc && delta_unusable(q->err))
        q->err->code = rc = -ESTALE;
    return rc;
}

static int on_put_manifest_delta(struct request *q)
{
    uint8_t base[FSP_SHA256_LEN], id[FSP_SHA256_LEN];
    vms_get_hash(q->body, base);
    vms_get_hash(q->body, id);
    uint64_t size = vms_get_bounded(q->body, VMS_MANIFEST_DELTA_MAX);
    if (!vms_get_done(q->body) || q->a->proto < VMS_PROTO_VERSION_DELTA)
        return malformed(q, VMS_M_PUT_MANIFEST_DELTA);
    if (q->a->o->read_only) {
        q->fatal = true; /* the delta's bytes follow */
        return denied_read_only(q);
    }
    struct vms_wbuf delta = {0};
    int rc = receive_data(q, VMS_M_PUT_MANIFEST_DELTA, size, put_in_buffer, &delta);
    if (!rc)
        rc = store_from_delta(q, base, id, &delta);
    vms_wbuf_free(&delta);
    if (rc)
        return rc;
    q->a->stats->manifests_delta++;
    q->a->stats->manifest_bytes_in += size;
    struct vms_wbuf b = {0};
    vms_put_hash(&b, id);
    return reply(q, VMS_M_MANIFEST_ID, &b);
}

/* ---- objects ------------------------------------------------------------------------- */

/* A list of hashes in place in the request: u32 n, then n hashes. */
static const uint8_t (*hash_list(struct request *q, size_t *n))[FSP_SHA256_LEN]
{
    *n = (size_t)vms_get_bounded(q->body, VMS_LIST_MAX);
    return (const uint8_t(*)[FSP_SHA256_LEN])vms_get_span(q->body, *n * FSP_SHA256_LEN);
}

static int on_has(struct request *q)
{
    size_t n;
    const uint8_t(*hashes)[FSP_SHA256_LEN] = hash_list(q, &n);
    if (!vms_get_done(q->body))
        return malformed(q, VMS_M_HAS);
    uint8_t *present = malloc(n + 1);
    struct vms_object_size *sizes = malloc((n + 1) * sizeof *sizes);
    int rc = present && sizes ? vms_repo_has(q->a->repo, hashes, n, present, sizes, q->err)
                              : fsp_fail(q->err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    struct vms_wbuf b = {0};
    if (!rc) {
        vms_put_varint(&b, n);
        for (size_t i = 0; i < n; i++) {
            vms_put_varint(&b, present[i] ? (uint64_t)sizes[i].stored + 1 : 0);
            vms_put_varint(&b, present[i] ? sizes[i].len : 0);
        }
    }
    free(present);
    free(sizes);
    return rc ? rc : reply(q, VMS_M_HAVE, &b);
}

struct serving {
    struct agent *a;
    const uint8_t (*hashes)[FSP_SHA256_LEN];
    uint8_t *out; /* where read_object copies */
};

static int copy_object(void *ctx, size_t index, const uint8_t *data, size_t len, size_t stored)
{
    (void)index;
    (void)stored;
    struct serving *s = ctx;
    memcpy(s->out, data, len);
    return 0;
}

static int read_object(void *ctx, size_t i, uint8_t *out, fsp_error *err)
{
    struct serving *s = ctx;
    s->out = out;
    return vms_repo_get(s->a->repo, s->hashes + i, 1, copy_object, s, err);
}

static int read_stored(void *ctx, size_t i, vms_stored_cb cb, void *cb_ctx, fsp_error *err)
{
    struct serving *s = ctx;
    return vms_repo_get_stored(s->a->repo, s->hashes + i, 1, cb, cb_ctx, err);
}

/* The raw sizes of HASHES, all of which must be stored. */
static int sizes_of(struct request *q, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                    uint32_t *lens)
{
    uint8_t *present = malloc(n + 1);
    struct vms_object_size *sizes = malloc((n + 1) * sizeof *sizes);
    int rc = present && sizes ? vms_repo_has(q->a->repo, hashes, n, present, sizes, q->err)
                              : fsp_fail(q->err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        lens[i] = sizes[i].len;
        if (!present[i]) {
            char hex[2 * FSP_SHA256_LEN + 1];
            fsp_hex(hashes[i], FSP_SHA256_LEN, hex);
            rc = fsp_fail(q->err, FSP_EK_CORRUPT, -ENOENT, "%s: object %s is not in the repository",
                          q->a->path, hex);
        }
    }
    free(present);
    free(sizes);
    return rc;
}

static int on_get(struct request *q)
{
    struct agent *a = q->a;
    int level = (int)vms_get_bounded(q->body, VMS_LEVEL_MAX);
    uint64_t bwlimit = vms_get_varint(q->body);
    size_t n;
    const uint8_t(*hashes)[FSP_SHA256_LEN] = hash_list(q, &n);
    if (!vms_get_done(q->body))
        return malformed(q, VMS_M_GET);
    if (bwlimit && bwlimit < VMS_BWLIMIT_MIN)
        return fsp_fail(q->err, FSP_EK_USAGE, -EINVAL, "a bandwidth limit of %llu bytes/s: at least %u",
                        (unsigned long long)bwlimit, VMS_BWLIMIT_MIN);
    a->stats->last_bwlimit = bwlimit;
    uint32_t *lens = malloc((n + 1) * sizeof *lens);
    int rc = vms_repo_prefetch(a->repo, hashes, n, q->err); /* a reflector fetches ahead */
    rc = rc ? rc : lens ? sizes_of(q, hashes, n, lens)
                  : fsp_fail(q->err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    struct serving s = {a, hashes, NULL};
    struct vms_xfer_source src = {.hashes = hashes, .lens = lens, .n = n, .read = read_object,
                                  .read_stored = read_stored, .ctx = &s};
    struct vms_xfer_opts xo = {.level = level, .bwlimit = bwlimit,
                               .cache = a->cache[0] ? a->cache : NULL,
                               .chain = a->proto >= VMS_PROTO_VERSION_CHAINED};
    struct vms_xfer_report rep;
    if (!rc) {
        rc = vms_xfer_send(&src, &xo, &a->conn, &rep, q->err);
        q->fatal = rc != 0; /* the client is in the middle of a stream */
    }
    if (!rc) {
        a->stats->objects_sent += n;
        a->stats->segments += rep.segments;
        a->stats->segments_cached += rep.cached;
        a->stats->segments_stored += rep.stored_segments;
        a->stats->segments_chained += rep.chained;
        a->stats->raw_bytes_sent += rep.raw_bytes;
        a->stats->segment_bytes_sent += rep.wire_bytes;
        a->stats->segments_compressed += rep.compressed;
        a->stats->raw_bytes_compressed += rep.raw_compressed;
        a->stats->compress_cpu += rep.compress_cpu;
        a->stats->link_rate = rep.link_rate;
        for (int l = 0; l <= VMS_LEVEL_MAX; l++)
            a->stats->segments_at_level[l] += rep.at_level[l];
        a->stats->last_level = rep.level_last;
    }
    free(lens);
    fsp_error ignored;
    vms_repo_prefetch(a->repo, NULL, 0, &ignored); /* HASHES lives in this request only */
    return rc;
}

struct receiving {
    struct agent *a;
    const uint8_t (*hashes)[FSP_SHA256_LEN]; /* the wanted list */
    fsp_error put_err; /* the first failure to store; the stream is drained anyway */
    int put_rc;
    uint64_t stored;
};

static int store_object(void *ctx, size_t index, const uint8_t *data, size_t len, size_t wire)
{
    (void)wire;
    struct receiving *r = ctx;
    if (!r->put_rc)
        r->put_rc = vms_repo_put(r->a->repo, r->hashes[index], data, len, &r->put_err);
    r->stored++;
    return 0;
}

/* The WANT bitmap for HASHES, and the wanted hashes in order into WANTED. */
static int answer_offer(struct request *q, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                        uint8_t (*wanted)[FSP_SHA256_LEN], size_t *n_wanted)
{
    uint8_t *present = malloc(n + 1);
    int rc = present ? vms_repo_has(q->a->repo, hashes, n, present, NULL, q->err)
                     : fsp_fail(q->err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    struct vms_wbuf b = {0};
    vms_put_varint(&b, n);
    uint8_t *bits = calloc(1, (n + 7) / 8 + 1);
    *n_wanted = 0;
    for (size_t i = 0; !rc && bits && i < n; i++) {
        if (present[i])
            continue;
        bits[i / 8] |= (uint8_t)(1u << (i % 8));
        memcpy(wanted[(*n_wanted)++], hashes[i], FSP_SHA256_LEN);
    }
    if (!rc && !bits)
        rc = fsp_fail(q->err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    if (!rc)
        vms_put_raw(&b, bits, (n + 7) / 8);
    free(present);
    free(bits);
    if (rc) {
        vms_wbuf_free(&b);
        return rc;
    }
    return reply(q, VMS_M_WANT, &b);
}

/* SEGMENTs up to PUT_END.  When the link drops half way, what arrived whole
 * is made durable, so the same check-in run again sends only the rest. */
static int receive_objects(struct request *q, struct vms_xfer_receiver *rx, struct receiving *r)
{
    for (;;) {
        uint8_t type;
        struct vms_rbuf body;
        int rc = vms_conn_recv(&q->a->conn, &type, &body, q->err);
        if (rc) {
            fsp_error ignored;
            vms_repo_flush(q->a->repo, &ignored);
            q->fatal = true;
            return rc;
        }
        if (type == VMS_M_PUT_END) {
            uint64_t count = vms_get_varint(&body);
            if (!vms_get_done(&body) || count != rx->next || rx->next != rx->n)
                return malformed(q, VMS_M_PUT_END);
            return 0;
        }
        if (type != VMS_M_SEGMENT)
            return malformed(q, VMS_M_OFFER);
        if ((rc = vms_xfer_receive(rx, &body, q->err)) != 0) {
            q->fatal = true;
            return rc;
        }
    }
}

static int on_offer(struct request *q)
{
    size_t n;
    const uint8_t(*offered)[FSP_SHA256_LEN] = hash_list(q, &n);
    if (!vms_get_done(q->body))
        return malformed(q, VMS_M_OFFER);
    if (q->a->o->read_only) {
        q->fatal = true; /* the client does not wait for WANT before failing */
        return denied_read_only(q);
    }
    uint8_t(*wanted)[FSP_SHA256_LEN] = malloc((n + 1) * FSP_SHA256_LEN);
    size_t n_wanted = 0;
    struct receiving r = {.a = q->a};
    struct vms_xfer_receiver rx = {.cb = store_object, .ctx = &r, .peer = "the client"};
    int rc = wanted ? answer_offer(q, offered, n, wanted, &n_wanted)
                    : fsp_fail(q->err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    rx.hashes = r.hashes = (const uint8_t(*)[FSP_SHA256_LEN])wanted;
    rx.n = n_wanted;
    if (!rc)
        rc = receive_objects(q, &rx, &r);
    if (!rc && r.put_rc) {
        *q->err = r.put_err;
        rc = r.put_rc;
    }
    if (!rc)
        rc = vms_repo_flush(q->a->repo, q->err);
    vms_xfer_receiver_free(&rx);
    free(wanted);
    if (rc)
        return rc;
    q->a->stats->objects_received += r.stored;
    struct vms_wbuf b = {0};
    vms_put_varint(&b, r.stored);
    return reply(q, VMS_M_PUT_OK, &b);
}

/* ---- versions ------------------------------------------------------------------------ */

struct needed {
    uint8_t (*hashes)[FSP_SHA256_LEN];
    size_t n, cap;
};

static int collect_needed(void *ctx, const uint8_t hash[FSP_SHA256_LEN], uint64_t len)
{
    (void)len;
    struct needed *nd = ctx;
    if (nd->n == nd->cap) {
        size_t cap = nd->cap ? 2 * nd->cap : 4096;
        void *p = realloc(nd->hashes, cap * FSP_SHA256_LEN);
        if (!p)
            return -ENOMEM;
        nd->hashes = p;
        nd->cap = cap;
    }
    memcpy(nd->hashes[nd->n++], hash, FSP_SHA256_LEN);
    return 0;
}

/* A version is recorded only when the repository holds every object it
 * needs: a client that lost its link, or lies, cannot leave a version that
 * does not check out. */
static int check_complete(struct request *q, const uint8_t manifest[FSP_SHA256_LEN])
{
    char tmp[PATH_MAX];
    struct needed nd = {0};
    int fd = temp_file(q->a, tmp, sizeof tmp, q->err);
    if (fd < 0)
        return fd;
    close(fd);
    int rc = vms_repo_get_manifest(q->a->repo, manifest, tmp, q->err);
    if (!rc)
        rc = vms_manifest_needed(tmp, collect_needed, &nd, q->err);
    unlink(tmp);
    uint8_t *present = rc ? NULL : malloc(nd.n + 1);
    if (!rc && !present)
        rc = fsp_fail(q->err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    if (!rc)
        rc = vms_repo_has(q->a->repo, (const uint8_t(*)[FSP_SHA256_LEN])nd.hashes, nd.n, present,
                          NULL, q->err);
    size_t missing = 0, first = 0;
    for (size_t i = 0; !rc && i < nd.n; i++) {
        if (!present[i] && !missing++)
            first = i;
    }
    if (!rc && missing) {
        char hex[2 * FSP_SHA256_LEN + 1];
        fsp_hex(nd.hashes[first], FSP_SHA256_LEN, hex);
        rc = fsp_fail(q->err, FSP_EK_CORRUPT, -ENOENT,
                      "%s: version refused: the repository lacks %zu of the objects it needs "
                      "(%s first); nothing was recorded",
                      q->a->path, missing, hex);
    }
    free(present);
    free(nd.hashes);
    return rc;
}

/* Recording a check-in ends its lease, so nobody records one over a lease
 * someone else holds.  No lease at all is add_version's to judge: a check-in
 * that lost a race hears which version won. */
static int check_holder(struct request *q, const char *image)
{
    struct vms_lease l;
    bool found = false;
    const struct agent *a = q->a;
    int rc = vms_repo_lease_get(a->repo, image, &l, &found, q->err);
    if (!rc && found && (strcmp(l.user, a->o->user) || strcmp(l.host, client_host(a))))
        rc = fsp_fail(q->err, VMS_EK_CONFLICT, -EPERM,
                      "%s is checked out by %s@%s (version %u), not by %s@%s; nothing was "
                      "recorded", image, l.user, l.host, l.version, a->o->user, client_host(a));
    return rc;
}

static int on_add_version(struct request *q)
{
    char image[256], message[1024];
    uint8_t manifest[FSP_SHA256_LEN], digest[FSP_SHA256_LEN];
    vms_get_strbuf(q->body, image, sizeof image);
    uint32_t parent = (uint32_t)vms_get_bounded(q->body, UINT32_MAX);
    vms_get_hash(q->body, manifest);
    vms_get_hash(q->body, digest);
    uint64_t size = vms_get_varint(q->body);
    vms_get_strbuf(q->body, message, sizeof message);
    if (!vms_get_done(q->body))
        return malformed(q, VMS_M_ADD_VERSION);
    if (q->a->o->read_only)
        return denied_read_only(q);
    uint32_t number = 0;
    int rc = parent ? check_holder(q, image) : 0;
    if (!rc)
        rc = check_complete(q, manifest);
    if (!rc)
        rc = vms_repo_add_version(q->a->repo, image, parent, manifest, digest, size, message,
                                  &number, q->err);
    if (rc)
        return rc;
    /* The version stands whatever happens to its audit entry: the client
     * must hear its number. */
    fsp_error audit_err;
    struct request noted = *q;
    noted.err = &audit_err;
    record(&noted, parent ? "checkin" : "import", image, number, "parent %u, %llu objects received",
           parent, (unsigned long long)q->a->stats->objects_received);
    struct vms_wbuf b = {0};
    vms_put_varint(&b, number);
    return reply(q, VMS_M_NUMBER, &b);
}

/* ---- the loop ---------------------------------------------------------------------------- */

/* Replaces ROOT in MSG by the path relative to it ("ROOT/a/b" is "a/b",
 * "ROOT" alone is "."): where the repositories live is not the client's
 * business.  A longer name that merely starts like ROOT is left alone. */
static void hide_root(char *msg, size_t cap, const char *root)
{
    size_t rl = strlen(root);
    while (rl > 1 && root[rl - 1] == '/')
        rl--;
    if (rl <= 1)
        return; /* root "/": every path is already relative to it */
    char out[sizeof ((fsp_error *)0)->msg];
    size_t o = 0;
    for (const char *p = msg; *p && o + 2 < sizeof out;) {
        char next = p[rl];
        bool name_goes_on = next && next != '/' && (isalnum((unsigned char)next) ||
                                                   strchr("._-+~", next));
        if (strncmp(p, root, rl) != 0 || name_goes_on) {
            out[o++] = *p++;
            continue;
        }
        p += rl;
        if (*p == '/')
            p++;
        else
            out[o++] = '.';
    }
    out[o] = 0;
    snprintf(msg, cap, "%s", out);
}

/* Every error text that leaves the agent (as ERROR, or on its standard error,
 * which the client shows) goes through here. */
static void hide_roots(const struct agent *a, fsp_error *err)
{
    hide_root(err->msg, sizeof err->msg, a->root);
    if (a->o->root && a->o->root[0] == '/')
        hide_root(err->msg, sizeof err->msg, a->o->root); /* as given, symlinks and all */
    if (a->o->upstream) /* "UPSTREAM/NAME: ..." is "NAME: ...", as the client named it */
        hide_root(err->msg, sizeof err->msg, a->o->upstream);
}

/* A key that adds must not take away: --append-only (and --read-only) refuse
 * even a dry run, which would tell such a key nothing it may act on. */
static int on_forget(struct request *q)
{
    char image[256];
    vms_get_strbuf(q->body, image, sizeof image);
    uint32_t version = (uint32_t)vms_get_bounded(q->body, UINT32_MAX);
    bool dry_run = vms_get_u8(q->body) != 0;
    if (!vms_get_done(q->body))
        return malformed(q, VMS_M_FORGET);
    if (q->a->o->read_only)
        return denied_read_only(q);
    if (q->a->o->append_only)
        return fsp_fail(q->err, VMS_EK_DENIED, -EACCES,
                        "%s: this key may add versions but never forget one (the agent runs "
                        "with --append-only)",
                        q->a->path);
    if (version == 0) /* "the latest" elsewhere, which is never forgotten anyway */
        return fsp_fail(q->err, VMS_EK_NOTFOUND, -ENOENT,
                        "%s: there is no version %s@0: forget names a version's number",
                        q->a->path, image);
    int rc = vms_repo_forget(q->a->repo, image, version, dry_run, q->err);
    return rc ? rc : reply(q, VMS_M_OK, NULL);
}

static int send_usage(void *ctx, const struct vms_image_usage *u)
{
    struct vms_wbuf b = {0};
    vms_put_str(&b, u->name);
    vms_put_varint(&b, u->versions);
    const uint64_t fields[] = {u->unique_objects, u->unique_raw, u->unique_stored,
                               u->shared_objects, u->shared_raw};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        vms_put_varint(&b, fields[i]);
    return reply(ctx, VMS_M_IMAGE_USAGE, &b);
}

static int send_stats(struct request *q, const struct vms_repo_stats *s)
{
    struct vms_wbuf b = {0};
    const struct vms_gc_stats *g = &s->gc;
    const uint64_t fields[] = {s->images, s->versions, s->objects, s->raw_bytes,
                               s->stored_bytes, s->packs, s->pack_bytes, s->referenced_bytes,
                               g->objects_before, g->objects_dropped, g->packs_before,
                               g->packs_rewritten, g->packs_removed, g->bytes_before,
                               g->bytes_freed};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        vms_put_varint(&b, fields[i]);
    return reply(q, VMS_M_STATS_INFO, &b);
}

/* Reading only: served to --read-only and --append-only keys alike. */
static int on_stats(struct request *q)
{
    if (!vms_get_done(q->body))
        return malformed(q, VMS_M_STATS);
    struct vms_repo_stats s = {0};
    int rc = end_rows(q, vms_repo_stats(q->a->repo, &s, send_usage, q, q->err));
    return rc ? rc : send_stats(q, &s);
}

typedef int (*handler)(struct request *q);

static handler handler_for(const struct agent *a, uint8_t type)
{
    if (!a->hello)
        return type == VMS_M_HELLO ? on_hello : NULL;
    if (!a->repo)
        return type == VMS_M_OPEN ? on_open : NULL;
    switch (type) {
    case VMS_M_VERSION: return on_version;
    case VMS_M_LIST: return on_list;
    case VMS_M_LEASE_TAKE: return on_lease_take;
    case VMS_M_LEASE_GET: return on_lease_get;
    case VMS_M_LEASE_RELEASE: return on_lease_release;
    case VMS_M_AUDIT: return on_audit;
    case VMS_M_GET_MANIFEST: return on_get_manifest;
    case VMS_M_PUT_MANIFEST: return on_put_manifest;
    case VMS_M_HAS: return on_has;
    case VMS_M_GET: return on_get;
    case VMS_M_OFFER: return on_offer;
    case VMS_M_ADD_VERSION: return on_add_version;
    case VMS_M_IMAGES: return on_images;
    case VMS_M_LEASES: return on_leases;
    case VMS_M_AUDIT_LOG: return on_audit_log;
    case VMS_M_KEY: return on_key;
    case VMS_M_FORGET: return on_forget;
    case VMS_M_STATS: return on_stats;
    case VMS_M_PUT_MANIFEST_DELTA: return on_put_manifest_delta;
    default: return NULL;
    }
}

static int serve_loop(struct agent *a, fsp_error *err)
{
    for (;;) {
        uint8_t type;
        struct vms_rbuf body;
        int rc = vms_conn_recv(&a->conn, &type, &body, err);
        if (rc == -ETIMEDOUT) { /* idle: a client that comes back hears why */
            fsp_error ignored;
            vms_conn_send_error(&a->conn, err, &ignored);
        }
        if (rc)
            return rc == -ENODATA ? 0 : rc; /* -ENODATA: the client hung up between requests */
        a->stats->requests++;
        struct request q = {a, &body, err, false};
        if (type == VMS_M_PING) {
            fsp_error later; /* a link upstream that is gone fails the next request */
            if (a->repo)
                vms_repo_keep_alive(a->repo, &later); /* a reflector's upstream session too */
            rc = reply(&q, VMS_M_PONG, NULL);
        } else {
            handler h = handler_for(a, type);
            rc = h ? h(&q) : malformed(&q, type);
        }
        if (!rc)
            continue;
        hide_roots(a, err);
        fsp_error send_err; /* when even this fails, the session is over anyway */
        if (vms_conn_send_error(&a->conn, err, &send_err) || q.fatal)
            return rc;
    }
}

/* ---- the session ----------------------------------------------------------------------- */

/* Waits until the client has something to say, or the idle timeout ends the
 * session: an idle session holds the repository open, and gc waits for it. */
static int wait_for_client(const struct agent *a, fsp_error *err)
{
    struct pollfd p = {.fd = a->in_fd, .events = POLLIN};
    int ms = a->o->idle_timeout ? (int)(a->o->idle_timeout * 1000) : -1;
    int n;
    while ((n = poll(&p, 1, ms)) < 0 && errno == EINTR)
        ;
    if (n == 0)
        return fsp_fail(err, VMS_EK_NETWORK, -ETIMEDOUT,
                        "the client sent nothing for %u s: session closed (the agent's "
                        "--idle-timeout)", a->o->idle_timeout);
    return 0; /* ready, or an error that read will report */
}

static int fd_recv(void *io, void *buf, size_t n, fsp_error *err)
{
    const struct agent *a = io;
    size_t done = 0;
    while (done < n) {
        int rc = wait_for_client(a, err);
        if (rc)
            return rc;
        ssize_t got = read(a->in_fd, (uint8_t *)buf + done, n - done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return fsp_fail(err, VMS_EK_NETWORK, -errno, "reading from the client: %s",
                            strerror(errno));
        if (got == 0)
            return done == 0 ? -ENODATA /* the client hung up between messages */
                             : fsp_fail(err, VMS_EK_NETWORK, -ECONNRESET,
                                        "the client went away in the middle of a message");
        done += (size_t)got;
    }
    return 0;
}

static int fd_send(void *io, const void *buf, size_t n, fsp_error *err)
{
    const struct agent *a = io;
    int rc = vms_write_all(a->out_fd, buf, n);
    return rc ? fsp_fail(err, VMS_EK_NETWORK, rc, "writing to the client: %s", strerror(-rc)) : 0;
}

struct cached {
    char name[80];
    time_t used;
    off_t size;
};

static int by_age(const void *a, const void *b)
{
    const struct cached *x = a, *y = b;
    return (x->used > y->used) - (x->used < y->used);
}

/* Removes the least recently used segments until the cache holds at most
 * MAX bytes.  Runs after a session, off the client's clock. */
static void trim_cache(const char *dir, uint64_t max)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct cached *all = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat st;
        size_t len = strlen(de->d_name);
        if (len < 5 || len >= sizeof all->name || strcmp(de->d_name + len - 4, ".seg") ||
            fstatat(dirfd(d), de->d_name, &st, 0) < 0)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            struct cached *p = realloc(all, cap * sizeof *all);
            if (!p)
                break;
            all = p;
        }
        memcpy(all[n].name, de->d_name, len + 1);
        all[n].used = st.st_mtime;
        all[n++].size = st.st_size;
        total += (uint64_t)st.st_size;
    }
    if (n > 1)
        qsort(all, n, sizeof *all, by_age);
    for (size_t i = 0; i < n && total > max; i++) {
        if (unlinkat(dirfd(d), all[i].name, 0) == 0)
            total -= (uint64_t)all[i].size;
    }
    closedir(d);
    free(all);
}

int vms_serve(const struct vms_serve_opts *o, int in_fd, int out_fd, struct vms_serve_stats *stats,
              fsp_error *err)
{
    struct agent a = {.o = o, .in_fd = in_fd, .out_fd = out_fd, .stats = stats};
    memset(stats, 0, sizeof *stats);
    const char *root = o->upstream ? o->reflect_dir : o->root; /* a reflector hides its cache */
    if (o->upstream)
        mkdir(o->reflect_dir, 0700); /* else realpath says why; store.c says why 0700 */
    if (!realpath(root, a.root)) /* the client sees this: no path */
        return fsp_fail(err, FSP_EK_OPEN, -errno, "the agent's %s: %s",
                        o->upstream ? "--cache-dir" : "--root", strerror(errno));
    a.conn = (struct vms_conn){.send = fd_send, .recv = fd_recv, .io = &a, .peer = "the client"};
    int rc = serve_loop(&a, err);
    if (a.repo)
        vms_repo_close(a.repo);
    if (a.cache[0])
        trim_cache(a.cache, o->cache_max);
    snprintf(stats->client_host, sizeof stats->client_host, "%s", a.client_host);
    stats->wire_in = a.conn.wire_in;
    stats->wire_out = a.conn.wire_out;
    vms_conn_free(&a.conn);
    if (rc)
        hide_roots(&a, err);
    return rc;
}
