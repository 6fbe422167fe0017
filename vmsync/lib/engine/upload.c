/* Import and check-in: scan an image once, storing each object the repository
 * lacks as the scan hands it over, then record the manifest as a new version.
 *
 * Check-in trusts unchanged files the way git's index does: a file whose inode,
 * generation (NTFS: MFT sequence number), size, mtime, ctime and extents equal
 * those in the checked-out version's manifest, on the same filesystem (its
 * UUID), keeps its hashes without being read, so the cost follows the change,
 * not the image.  Metadata blocks are always reread: they are small, and they
 * are where a change shows first. */
#include "engine/engine.h"
#include "base/keyset.h"
#include "manifest/written.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct upload {
    struct vms_scan_hooks hooks; /* first: the sink callbacks' ctx */
    struct vms_ctx *c;
    struct vms_stats *stats;
    fsp_error repo_err;          /* why the repository refused an object */
    struct vms_trust trust;      /* check-in: the version checked out */
    bool trusting;
    struct vms_keyset in_parent; /* check-in: objects the checked-out version has */
    uint8_t parent_manifest[FSP_SHA256_LEN]; /* check-in: the checked-out version's, */
    char parent_manifest_path[PATH_MAX];     /* held here ("" when not) */
    bool dry_run;                /* check-in -n: count what is missing, send nothing */
    bool piped;                  /* the scan runs on a thread, objects go out as it reads on */
    uint64_t unsent;             /* piped: bytes put since the last round went out */
    struct vms_keyset asked;     /* dry run: each object once */
    uint8_t pending[256][FSP_SHA256_LEN]; /* dry run: asked in one round */
    uint32_t pending_len[256];
    size_t n_pending;
};

/* Dry run: which of the pending objects the repository lacks, counted as
 * the ones a check-in would send. */
static int ask_pending(struct upload *u)
{
    uint8_t present[256];
    int rc = u->n_pending ? vms_repo_has(u->c->repo, u->pending, u->n_pending, present, NULL,
                                         &u->repo_err) : 0;
    for (size_t i = 0; !rc && i < u->n_pending; i++) {
        u->stats->objects_sent += !present[i];
        u->stats->bytes_sent_raw += present[i] ? 0 : u->pending_len[i];
    }
    u->n_pending = 0;
    return rc;
}

static int count_missing(struct upload *u, const uint8_t hash[FSP_SHA256_LEN], size_t len)
{
    bool added;
    int rc = vms_keyset_add(&u->asked, hash, NULL, &added);
    if (rc < 0)
        return fsp_fail(&u->repo_err, FSP_EK_NOMEM, rc, "out of memory");
    if (!added)
        return 0;
    memcpy(u->pending[u->n_pending], hash, FSP_SHA256_LEN);
    u->pending_len[u->n_pending++] = (uint32_t)len;
    return u->n_pending == 256 ? ask_pending(u) : 0;
}

static bool u_reuse(void *ctx, const struct fsp_entry *e, uint32_t idx, struct fsp_stream *st)
{
    struct upload *u = ctx;
    bool trusted = u->trusting && vms_trust_fill(&u->trust, e, idx, st);
    if (idx == 0 && e->type == FSP_T_REG) {
        u->stats->files_trusted += trusted;
        u->stats->files_rehashed += !trusted;
    }
    return trusted;
}

static int u_volume(void *ctx, const struct fsp_volume_info *v)
{
    struct upload *u = ctx;
    if (u->trusting)
        vms_trust_volume(&u->trust, v);
    return 0;
}

static int u_object(void *ctx, const uint8_t hash[FSP_SHA256_LEN], const void *data, size_t len)
{
    struct upload *u = ctx;
    /* The repository holds every object of a recorded version: no need to
     * ask it, which over a narrow link saves a hash per metadata block. */
    if (vms_keyset_find(&u->in_parent, hash, NULL))
        return 0;
    if (u->dry_run)
        return count_missing(u, hash, len);
    return vms_repo_put(u->c->repo, hash, data, len, &u->repo_err);
}

/* What the repository took: counted by the repository, which alone knows
 * what it already had. */
static void count_sent(struct upload *u)
{
    struct vms_traffic t;
    const struct vms_traffic *before = &u->c->traffic_at_start; /* the handle outlives us */
    vms_repo_traffic(u->c->repo, &t);
    u->stats->objects_sent = t.objects_sent - before->objects_sent;
    u->stats->bytes_sent_raw = t.bytes_sent_raw - before->bytes_sent_raw;
    u->stats->bytes_sent_compressed = t.bytes_sent - before->bytes_sent;
}

/* Piped: the objects that the checked-out version lacks go to the calling thread. */
static bool u_keep(void *ctx, const uint8_t hash[FSP_SHA256_LEN])
{
    return !vms_keyset_find(&((struct upload *)ctx)->in_parent, hash, NULL);
}

static int u_put(void *ctx, const uint8_t hash[FSP_SHA256_LEN], const void *data, size_t len)
{
    struct upload *u = ctx;
    u->unsent += len;
    return vms_repo_put(u->c->repo, hash, data, len, &u->repo_err);
}

/* The scan has nothing new for now: what it found goes out, so the link
 * works while the scan reads on.  Not a few objects at a time: each round
 * waits a round trip for the agent's answer. */
#define EARLY_ROUND (4u << 20)
static int u_idle(void *ctx)
{
    struct upload *u = ctx;
    if (u->unsent < EARLY_ROUND)
        return 0;
    u->unsent = 0;
    return vms_repo_flush(u->c->repo, &u->repo_err);
}

/* Scans IMAGE into a manifest at MANIFEST, storing missing objects. */
static int scan_and_store(struct upload *u, const char *image, const char *manifest,
                          uint32_t flags, fsp_error *err)
{
    static const struct fsp_sink storing = {.volume = u_volume, .object = u_object,
                                         .reuse_stream = u_reuse};
    const struct vms_pipe_sink piping = {.ctx = u, .keep = u_keep, .volume = u_volume,
                                         .reuse_stream = u_reuse, .object = u_put, .idle = u_idle};
    int rc = u->piped ? vms_ctx_scan_piped(u->c, image, manifest, flags, &piping, err)
                      : vms_ctx_scan_into(u->c, image, manifest, flags, &u->hooks, &storing, err);
    if (rc && u->repo_err.msg[0])
        *err = u->repo_err; /* the repository's reason, not the scan's "cancelled" */
    return rc;
}

/* The latest version number of NAME, 0 when it has none. */
static uint32_t latest_version(struct vms_ctx *c, const char *name)
{
    struct vms_version latest;
    fsp_error ignored;
    return vms_repo_version(c->repo, name, 0, &latest, &ignored) == 0 ? latest.number : 0;
}

/* Stores the manifest and records the version; the last, atomic step.
 * PARENT_IS_LATEST (import) means "whatever version is latest when recording",
 * so imports racing under one name each get the next number; a check-in's
 * parent is fixed, and a race is refused. */
static int record_version(struct upload *u, const char *name, uint32_t parent, bool parent_is_latest,
                          const char *manifest, const char *message, fsp_error *err)
{
    struct vms_loaded *m;
    uint8_t id[FSP_SHA256_LEN];
    int rc = vms_repo_flush(u->c->repo, err);
    count_sent(u);
    if (!rc && u->parent_manifest_path[0])
        rc = vms_repo_put_manifest_from(u->c->repo, manifest, u->parent_manifest,
                                        u->parent_manifest_path, id, err);
    else if (!rc)
        rc = vms_repo_put_manifest(u->c->repo, manifest, id, err);
    if (!rc)
        rc = vms_loaded_read(manifest, &m, err);
    if (rc)
        return rc;
    memcpy(u->stats->canonical_digest, m->summary.digest, FSP_SHA256_LEN);
    u->stats->image_size = m->image_size;
    for (int attempt = 0;; attempt++) {
        if (parent_is_latest)
            parent = latest_version(u->c, name);
        rc = vms_repo_add_version(u->c->repo, name, parent, id, m->summary.digest, m->image_size,
                                  message ? message : "", &u->stats->version, err);
        if (!rc || !parent_is_latest || err->kind != VMS_EK_CONFLICT || attempt == 8)
            break;
    }
    vms_loaded_free(m);
    return rc;
}

static int temp_manifest(struct vms_ctx *c, const char *what, char *path, size_t len, fsp_error *err)
{
    char name[64];
    snprintf(name, sizeof name, "%s-%ld.vmsm", what, (long)getpid());
    return vms_ctx_cache_path(c, "tmp", name, path, len, err);
}

/* A read-only repository (a bundle) is refused before any scan. */
static int writable(struct vms_ctx *c, const char *what, fsp_error *err)
{
    return vms_repo_writable(c->repo) ? 0 : vms_repo_read_only(c->repo, what, err);
}

int vms_import(vms_client *cl, const struct vms_import_opts *o,
               struct vms_stats *stats, fsp_error *err)
{
    const char *name = o->name;
    struct vms_ctx c;
    struct upload u = {.c = &c, .stats = stats};
    memset(stats, 0, sizeof *stats);
    char manifest[PATH_MAX] = "";
    int rc = vms_image_name_check(name, err);
    if (rc)
        return rc; /* before any connection: a usage error */
    rc = vms_ctx_open(&c, cl, stats, err);
    if (!rc)
        rc = writable(&c, "import", err);
    if (!rc)
        rc = temp_manifest(&c, "import", manifest, sizeof manifest, err);
    if (!rc)
        rc = scan_and_store(&u, o->image, manifest,
                            o->keep_volatile ? FSP_SCAN_VOLATILE_OBJECTS : 0, err);
    if (!rc)
        rc = record_version(&u, name, 0, !o->new_image, manifest, o->message, err);
    if (!rc)
        rc = vms_repo_audit(c.repo, "import", name, stats->version, o->image, err);
    if (manifest[0])
        unlink(manifest);
    stats->seconds = vms_ctx_elapsed(&c);
    return vms_ctx_close(&c, rc, err);
}

/* The lease this host holds on NAME: its version is the check-in's parent. */
static int checked_out_version(struct vms_ctx *c, const char *name, struct vms_lease *lease, fsp_error *err)
{
    bool found;
    int rc = vms_repo_lease_get(c->repo, name, lease, &found, err);
    if (rc)
        return rc;
    if (!found)
        return fsp_fail(err, VMS_EK_CONFLICT, -EPERM,
                        "%s is not checked out (no lease): check it out before checking it in", name);
    /* Remotely the agent names the user (its --user) and checks it itself. */
    bool remote = vms_repo_is_remote(c->client->path);
    if (strcmp(lease->host, c->host) || (!remote && strcmp(lease->user, c->user)))
        return fsp_fail(err, VMS_EK_CONFLICT, -EPERM,
                        "%s is checked out by %s@%s (version %u), not by %s (%s)", name,
                        lease->user, lease->host, lease->version, remote ? "this host" : c->user,
                        c->host);
    return 0;
}

/* Whether version PARENT + 1 of NAME is this very image (the scanned digest
 * and size), recorded by USER on HOST: a check-in killed after the repository
 * recorded it, run again.  Check-ins are numbered parent + 1, so that is the
 * only version to look at. */
static bool recorded_before(struct upload *u, const char *name, uint32_t parent, const char *user,
                            const char *host)
{
    struct vms_version next;
    fsp_error ignored;
    if (vms_repo_version(u->c->repo, name, parent + 1, &next, &ignored))
        return false;
    return next.parent == parent && next.size == u->stats->image_size &&
           !memcmp(next.digest, u->stats->canonical_digest, FSP_SHA256_LEN) &&
           !strcmp(next.user, user) && !strcmp(next.host, host);
}

static int add_parent_object(void *ctx, const uint8_t hash[FSP_SHA256_LEN], uint64_t len)
{
    (void)len;
    struct upload *u = ctx;
    return vms_keyset_add(&u->in_parent, hash, NULL, NULL);
}

static int load_reference(struct upload *u, const char *name, uint32_t parent, fsp_error *err)
{
    struct vms_version v;
    char path[PATH_MAX];
    struct vms_loaded *ref;
    int rc = vms_repo_version(u->c->repo, name, parent, &v, err);
    if (!rc)
        rc = vms_ctx_manifest(u->c, v.manifest, path, sizeof path, err);
    if (!rc)
        rc = vms_manifest_needed(path, add_parent_object, u, err);
    if (!rc) {
        memcpy(u->parent_manifest, v.manifest, FSP_SHA256_LEN);
        snprintf(u->parent_manifest_path, sizeof u->parent_manifest_path, "%s", path);
        rc = vms_loaded_read(path, &ref, err);
    }
    if (!rc && (rc = vms_trust_init(&u->trust, ref)) < 0)
        rc = fsp_fail(err, FSP_EK_NOMEM, rc, "out of memory");
    u->trusting = !rc;
    return rc;
}

/* IMAGE is a checkout's output (its record says so) as it was before the scan. */
static bool written_before(const char *image, struct vms_written *w)
{
    struct stat st;
    if (lstat(image, &st) < 0 || !vms_written_load(image, &st, w))
        return false;
    vms_written_identity(w, &st);
    return true;
}

/* A checkout's output just checked in holds the new version: its record says
 * so, and a later checkout to it needs no scan to tell that nothing is lost.
 * Only when the file did not change while it was read. */
static void note_checked_in(const char *image, const char *name, const struct vms_written *before,
                            const char *holder, const struct vms_stats *st)
{
    struct vms_written w = *before;
    struct stat now;
    fsp_error ignored;
    w.version = st->version;
    memcpy(w.digest, st->canonical_digest, FSP_SHA256_LEN);
    snprintf(w.image, sizeof w.image, "%s", name);
    snprintf(w.holder, sizeof w.holder, "%s", holder);
    if (lstat(image, &now) == 0 && vms_written_unchanged(before, &now))
        vms_written_save(image, &w, &ignored);
}

static int audit_checkin(struct upload *u, const char *name, uint32_t parent, const char *note,
                         fsp_error *err)
{
    char detail[512];
    snprintf(detail, sizeof detail, "parent %u, %llu objects sent%s%s", parent,
             (unsigned long long)u->stats->objects_sent, note ? ", " : "", note ? note : "");
    return vms_repo_audit(u->c->repo, "checkin", name, u->stats->version, detail, err);
}

/* The check-in under this host's lease: scan and store IMAGE, record it as
 * the lease's version + 1, release the lease.  When recording is refused,
 * the version may be this very one, recorded by a run killed before it
 * released the lease: then only the release is left to do. */
static int checkin_leased(struct upload *u, const struct vms_checkin_opts *o, const struct vms_lease *lease,
                          char *manifest, size_t len, fsp_error *err)
{
    int rc = o->full_rescan ? 0 : load_reference(u, o->name, lease->version, err);
    /* over ssh:// the link works while the scan reads on */
    u->piped = !u->dry_run && vms_repo_is_remote(u->c->client->path);
    if (!rc)
        rc = temp_manifest(u->c, "checkin", manifest, len, err);
    if (!rc)
        rc = scan_and_store(u, o->image, manifest, 0, err);
    if (u->dry_run)
        return rc ? rc : ask_pending(u) ? (*err = u->repo_err, u->repo_err.code) : 0;
    if (!rc)
        rc = record_version(u, o->name, lease->version, false, manifest, o->message, err);
    if (rc && err->kind == VMS_EK_CONFLICT &&
        recorded_before(u, o->name, lease->version, lease->user, lease->host)) {
        u->stats->version = lease->version + 1;
        u->stats->already_recorded = true;
        rc = 0;
    }
    if (!rc)
        rc = vms_repo_lease_release(u->c->repo, o->name, err);
    if (!rc)
        rc = audit_checkin(u, o->name, lease->version,
                           u->stats->already_recorded ? "recorded by an interrupted run" : NULL, err);
    if (!rc)
        vms_ctx_hang_up(u->c); /* the release and the audit entry were the last requests */
    return rc ? rc : vms_repo_settle(u->c->repo, err); /* before the image's record says so */
}

/* IMAGE's canonical digest and size into the stats, storing nothing. */
static int read_identity(struct upload *u, const char *image, fsp_error *err)
{
    struct fsp_summary sum;
    fsp_source *src;
    int rc = vms_ctx_scan_summary(u->c, image, &sum, err);
    if (!rc)
        rc = vms_written_open(image, &src, err);
    if (rc)
        return rc;
    memcpy(u->stats->canonical_digest, sum.digest, FSP_SHA256_LEN);
    u->stats->image_size = fsp_source_size(src);
    fsp_source_close(src);
    return 0;
}

/* A check-in refused for want of this host's lease may be the re-run of one
 * killed after it released the lease, before it finished.  Provably so when
 * IMAGE is a checkout's output whose record (W) names version P of this
 * image and the lease's holder then, and version P + 1, recorded by that
 * holder on this host, has IMAGE's digest and size.  Nothing is sent.
 * Otherwise the refusal (REFUSED, in ERR) stands. */
static int recorded_unleased(struct upload *u, const struct vms_checkin_opts *o, const struct vms_written *w,
                             int refused, fsp_error *err)
{
    fsp_error ignored;
    if (strcmp(w->image, o->name) || !w->holder[0] || read_identity(u, o->image, &ignored) ||
        !recorded_before(u, o->name, w->version, w->holder, u->c->host))
        return refused;
    u->stats->version = w->version + 1;
    u->stats->already_recorded = true;
    return audit_checkin(u, o->name, w->version, "recorded by an interrupted run that released its lease", err);
}

int vms_checkin(vms_client *cl, const struct vms_checkin_opts *o,
                struct vms_stats *stats, fsp_error *err)
{
    struct vms_ctx c;
    struct upload u = {.c = &c, .stats = stats, .dry_run = o->dry_run};
    memset(stats, 0, sizeof *stats);
    char manifest[PATH_MAX] = "";
    struct vms_lease lease = {0};
    struct vms_written written;
    bool was_written = written_before(o->image, &written);
    int rc = vms_ctx_open(&c, cl, stats, err);
    if (!rc)
        rc = writable(&c, "check-in", err);
    if (!rc) {
        rc = checked_out_version(&c, o->name, &lease, err);
        if (!rc)
            rc = checkin_leased(&u, o, &lease, manifest, sizeof manifest, err);
        else if (err->kind == VMS_EK_CONFLICT && was_written && !o->dry_run)
            rc = recorded_unleased(&u, o, &written, rc, err);
    }
    if (!rc && was_written && !o->dry_run)
        note_checked_in(o->image, o->name, &written, lease.user[0] ? lease.user : written.holder, stats);
    if (manifest[0])
        unlink(manifest);
    vms_trust_free(&u.trust);
    vms_keyset_free(&u.in_parent);
    vms_keyset_free(&u.asked);
    stats->seconds = vms_ctx_elapsed(&c);
    return vms_ctx_close(&c, rc, err);
}
