/* A client's judgement of version signatures: the keys it trusts, and what
 * they say of a version. */
#include "engine/engine.h"

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
