/* Applying a bundle to a repository (a branch server, a second site): the
 * objects its version needs that the repository lacks come from the bundle,
 * then the manifest, then the version is recorded with check-in's rule: its
 * parent must be the image's latest version, or it is refused as a lost race
 * (VMS_EK_CONFLICT), recording nothing.  A version the repository already
 * holds (same number, manifest and digest) is said so, and not recorded
 * twice.  With trusted keys, the bundle's version must be signed by one of
 * them, as a checkout requires; the repository signs the version it records
 * with its own key.  Everything is checked before the first object is stored.
 *
 * The version is the check-in of the user and host its record names (the
 * laptop that wrote a check-in bundle, or the author of a version carried to
 * a second site): it is recorded through a second handle opened as them, so
 * that their lease rules as an online check-in's would (held by anyone else:
 * refused; theirs: released once the version is recorded), and the version
 * is theirs.  Over ssh:// the agent's key names the user, as for every
 * write, so only the host is theirs.  The audit entry is the applier's, and
 * names them. */
#include "engine/engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct applying {
    struct vms_ctx *c;
    const char *path;          /* the bundle */
    vms_repo *from;            /* the bundle, opened as a repository */
    vms_repo *author;          /* the repository, opened as the record's user and host */
    struct vms_version v;      /* the bundle's record, checked against its manifest */
    char manifest[PATH_MAX];
    struct vms_keyset needed;  /* what the version needs, once each */
    uint8_t (*missing)[FSP_SHA256_LEN]; /* of those, what the repository lacks */
    size_t n_missing, cap_missing;
    struct vms_stats *st;
    fsp_error *err;            /* the operation's, for the callbacks */
};

static int nomem(fsp_error *err) { return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

static int take_version(void *ctx, const struct vms_bundle_info *info)
{
    struct applying *a = ctx;
    a->v = *info->version;
    return 0;
}

static int open_bundle(struct applying *a, fsp_error *err)
{
    struct vms_ctx *c = a->c;
    char name[2 * FSP_SHA256_LEN + 8];
    int rc = vms_repo_open(a->path, c->user, c->host, NULL, &a->from, err);
    if (!rc)
        rc = vms_repo_bundle_info(a->from, take_version, a, err);
    if (!rc) /* before anything is written, in the cache or the repository */
        rc = vms_ctx_require_signature_from(c, a->path, &a->v, err);
    if (!rc) {
        fsp_hex(a->v.manifest, FSP_SHA256_LEN, name);
        strcat(name, ".vmsm");
        rc = vms_ctx_cache_path(c, "manifests", name, a->manifest, sizeof a->manifest, err);
    }
    if (!rc)
        rc = vms_repo_get_manifest(a->from, a->v.manifest, a->manifest, err);
    return rc;
}

/* The digest and size recorded and signed are the manifest's, as a check-in
 * records them: the record's copy is only a claim, and one that disagrees
 * (a resealed trailer) is refused before anything is stored. */
static int match_manifest(struct applying *a, fsp_error *err)
{
    struct vms_loaded *m;
    int rc = vms_loaded_read(a->manifest, &m, err);
    if (rc)
        return rc;
    if (memcmp(m->summary.digest, a->v.digest, FSP_SHA256_LEN) || m->image_size != a->v.size)
        rc = fsp_fail(err, FSP_EK_CORRUPT, -EINVAL,
                      "%s: member version: %s@%u's digest or size (%llu bytes) is not its manifest's "
                      "(%llu bytes); nothing was recorded",
                      a->path, a->v.image, a->v.number, (unsigned long long)a->v.size,
                      (unsigned long long)m->image_size);
    vms_loaded_free(m);
    return rc;
}

/* A record that names nobody (an older writer's) is the applier's own. */
static int open_author(struct applying *a, fsp_error *err)
{
    vms_client *cl = a->c->client;
    if (!a->v.user[0] || !a->v.host[0]) {
        snprintf(a->v.user, sizeof a->v.user, "%s", cl->user);
        snprintf(a->v.host, sizeof a->v.host, "%s", cl->host);
    }
    return vms_repo_open(cl->path, a->v.user, a->v.host, &cl->remote, &a->author, err);
}

/* Check-in's rule for the lease: nobody's, or the author's own. */
static int check_lease(struct applying *a, fsp_error *err)
{
    struct vms_lease l;
    bool found = false;
    const char *user = a->v.user;
    bool remote = vms_repo_is_remote(a->c->client->path);
    int rc = vms_repo_lease_get(a->author, a->v.image, &l, &found, err);
    if (!rc && found && (strcmp(l.host, a->v.host) || (!remote && strcmp(l.user, user))))
        rc = fsp_fail(err, VMS_EK_CONFLICT, -EPERM,
                      "%s: %s is checked out by %s@%s (version %u), not by %s@%s, whose check-in "
                      "the bundle carries; nothing was recorded",
                      a->path, a->v.image, l.user, l.host, l.version, user, a->v.host);
    return rc;
}

/* Whether the repository holds the bundle's very version already. */
static bool already_there(struct applying *a)
{
    struct vms_version have;
    fsp_error ignored;
    return !vms_repo_version(a->c->repo, a->v.image, a->v.number, &have, &ignored) &&
           !memcmp(have.manifest, a->v.manifest, FSP_SHA256_LEN) &&
           !memcmp(have.digest, a->v.digest, FSP_SHA256_LEN);
}

static int collect(void *ctx, const uint8_t hash[FSP_SHA256_LEN], uint64_t len)
{
    struct applying *a = ctx;
    size_t i;
    bool added;
    (void)len;
    return vms_keyset_add(&a->needed, hash, &i, &added) ? -ENOMEM : 0;
}

/* Which objects of HASHES R lacks, into PRESENT (0 or 1 each). */
static int presence(vms_repo *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n, uint8_t **present,
                    fsp_error *err)
{
    if (!(*present = malloc(n + 1)))
        return nomem(err);
    return n ? vms_repo_has(r, hashes, n, *present, NULL, err) : 0;
}

static int lacking(struct applying *a, const uint8_t hash[FSP_SHA256_LEN], size_t n, fsp_error *err)
{
    char hex[2 * FSP_SHA256_LEN + 1];
    fsp_hex(hash, FSP_SHA256_LEN, hex);
    return fsp_fail(err, FSP_EK_CORRUPT, -ENOENT,
                    "%s: %s@%u needs %zu objects that neither the bundle nor %s holds (the first: "
                    "object %s)", a->path, a->v.image, a->v.number, n, vms_client_repo(a->c->client), hex);
}

/* The objects the repository lacks, each of which the bundle must hold. */
static int find_missing(struct applying *a, fsp_error *err)
{
    uint8_t *in_repo = NULL, *in_bundle = NULL;
    size_t absent = 0, first = 0;
    int rc = vms_manifest_needed(a->manifest, collect, a, err);
    size_t n = a->needed.n;
    const uint8_t(*all)[FSP_SHA256_LEN] = (const uint8_t(*)[FSP_SHA256_LEN])a->needed.keys;
    if (rc == -ENOMEM)
        rc = nomem(err);
    if (!rc)
        rc = presence(a->c->repo, all, n, &in_repo, err);
    if (!rc)
        rc = presence(a->from, all, n, &in_bundle, err);
    for (size_t i = 0; !rc && i < n; i++) {
        if (in_repo[i])
            continue;
        if (!in_bundle[i] && !absent++)
            first = i;
        if (vms_grow(&a->missing, &a->cap_missing, a->n_missing + 1, sizeof *a->missing))
            rc = nomem(err);
        else
            memcpy(a->missing[a->n_missing++], all[i], FSP_SHA256_LEN);
    }
    if (!rc && absent)
        rc = lacking(a, all[first], absent, err);
    free(in_repo);
    free(in_bundle);
    return rc;
}

static int store_object(void *ctx, size_t index, const uint8_t *data, size_t len, size_t stored)
{
    struct applying *a = ctx;
    (void)stored;
    a->st->objects_sent++;
    a->st->bytes_sent_raw += len;
    int rc = vms_repo_put(a->c->repo, a->missing[index], data, len, a->err);
    return rc ? rc : vms_ctx_progress(a->c, VMS_PHASE_SEND, a->st->bytes_sent_raw, 0, a->err);
}

static int audit_apply(struct applying *a, fsp_error *err)
{
    char detail[PATH_MAX + 512];
    snprintf(detail, sizeof detail, "on behalf of %s@%s, parent %u, %llu objects from %s", a->v.user,
             a->v.host, a->v.parent, (unsigned long long)a->n_missing, a->path);
    return vms_repo_audit(a->c->repo, "apply", a->v.image, a->st->version, detail, err);
}

static int record(struct applying *a, fsp_error *err)
{
    uint8_t id[FSP_SHA256_LEN];
    const struct vms_version *v = &a->v;
    int rc = a->n_missing ? vms_repo_get(a->from, (const uint8_t(*)[FSP_SHA256_LEN])a->missing,
                                         a->n_missing, store_object, a, err)
                          : 0;
    if (!rc)
        rc = vms_repo_flush(a->c->repo, err);
    if (!rc)
        rc = vms_repo_put_manifest(a->c->repo, a->manifest, id, err);
    if (!rc) /* the author's handle records it: what this one sent must be stored first */
        rc = vms_repo_settle(a->c->repo, err);
    if (!rc) /* the record's digest and size, which match_manifest found the manifest's */
        rc = vms_repo_add_version(a->author, v->image, v->parent, id, v->digest, v->size, v->message,
                                  &a->st->version, err);
    if (!rc)
        rc = vms_repo_lease_release(a->author, v->image, err);
    if (!rc) /* no operation's end settles the author's handle */
        rc = vms_repo_settle(a->author, err);
    if (!rc)
        rc = audit_apply(a, err);
    return rc;
}

static int apply(struct applying *a, fsp_error *err)
{
    int rc = vms_repo_writable(a->c->repo) ? 0 : vms_repo_read_only(a->c->repo, "apply", err);
    if (!rc)
        rc = open_bundle(a, err);
    if (!rc)
        rc = match_manifest(a, err);
    if (rc)
        return rc;
    a->st->image_size = a->v.size;
    memcpy(a->st->canonical_digest, a->v.digest, FSP_SHA256_LEN);
    if (already_there(a)) {
        a->st->version = a->v.number;
        a->st->already_recorded = true;
        return 0;
    }
    /* a first version brings a new name in, as an import would: its rule */
    rc = a->v.parent == 0 ? vms_image_name_check(a->v.image, err) : 0;
    if (!rc)
        rc = open_author(a, err);
    if (!rc)
        rc = check_lease(a, err);
    if (!rc)
        rc = find_missing(a, err);
    return rc ? rc : record(a, err);
}

int vms_bundle_apply(vms_client *cl, const char *bundle, struct vms_stats *stats, fsp_error *err)
{
    struct vms_ctx c;
    struct applying a = {.c = &c, .path = bundle, .st = stats, .err = err};
    memset(stats, 0, sizeof *stats);
    int rc = vms_ctx_open(&c, cl, stats, err);
    if (!rc)
        rc = apply(&a, err);
    vms_repo_close(a.from);
    vms_repo_close(a.author);
    vms_keyset_free(&a.needed);
    free(a.missing);
    stats->seconds = vms_ctx_elapsed(&c);
    return vms_ctx_close(&c, rc, err);
}
