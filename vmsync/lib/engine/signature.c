/* A client's judgement of version signatures: the keys it trusts, and what
 * they say of a version. */
#include "engine/engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *vms_signature_state_name(enum vms_signature_state state)
{
    switch (state) {
    case VMS_SIGNATURE_NONE: return "unsigned";
    case VMS_SIGNATURE_UNTRUSTED: return "untrusted";
    case VMS_SIGNATURE_TRUSTED: return "trusted";
    case VMS_SIGNATURE_BAD: return "bad";
    }
    return "unknown";
}

static const struct vms_public_key *anchor_for(const vms_client *c,
                                               const uint8_t fingerprint[FSP_SHA256_LEN])
{
    for (size_t i = 0; i < c->n_anchors; i++)
        if (!memcmp(c->anchors[i].fingerprint, fingerprint, FSP_SHA256_LEN))
            return &c->anchors[i];
    return NULL;
}

enum vms_signature_state vms_signature_state(const vms_client *c, const struct vms_version *v)
{
    if (!v->is_signed)
        return VMS_SIGNATURE_NONE;
    const struct vms_public_key *key = anchor_for(c, v->signer);
    if (!key)
        return VMS_SIGNATURE_UNTRUSTED;
    return vms_signature_valid(key, v, v->signature) ? VMS_SIGNATURE_TRUSTED : VMS_SIGNATURE_BAD;
}

int vms_client_load_anchors(vms_client *cl, fsp_error *err)
{
    size_t n = cl->o.n_trusted_keys;
    if (!n)
        return 0;
    if (!cl->o.trusted_keys)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%zu trusted keys, but no list of them", n);
    if (!(cl->anchors = calloc(n, sizeof *cl->anchors)))
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++)
        rc = vms_public_key_load(cl->o.trusted_keys[i], &cl->anchors[i], err);
    cl->n_anchors = rc ? 0 : n;
    return rc;
}

int vms_ctx_require_signature(struct vms_ctx *c, const struct vms_version *v, fsp_error *err)
{
    return vms_ctx_require_signature_from(c, c->client->path, v, err);
}

int vms_ctx_require_signature_from(struct vms_ctx *c, const char *where, const struct vms_version *v,
                                   fsp_error *err)
{
    const vms_client *cl = c->client;
    if (!cl->n_anchors)
        return 0;
    char fp[VMS_FINGERPRINT_TEXT_LEN];
    vms_fingerprint_text(v->signer, fp);
    switch (vms_signature_state(cl, v)) {
    case VMS_SIGNATURE_TRUSTED: return 0;
    case VMS_SIGNATURE_NONE:
        return fsp_fail(err, VMS_EK_UNTRUSTED, -EPERM,
                        "%s: %s@%u is unsigned, and only versions signed by a trusted key are taken",
                        where, v->image, v->number);
    case VMS_SIGNATURE_UNTRUSTED:
        return fsp_fail(err, VMS_EK_UNTRUSTED, -EPERM,
                        "%s: %s@%u is signed by %s, which is not a trusted key", where, v->image,
                        v->number, fp);
    default:
        return fsp_fail(err, VMS_EK_UNTRUSTED, -EBADMSG,
                        "%s: %s@%u has a bad signature: it does not verify with the trusted key %s",
                        where, v->image, v->number, fp);
    }
}
