/* The signing key of a local repository: REPO/signing-key, made here and
 * read by add_version (catalog.c), which signs what it records with it. */
#include "repo/local/local.h"
#include "sign/sign.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_FILE "signing-key"

static int nomem(fsp_error *err) { return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory"); }

/* The repository's folder name: the comment of its key line. */
static void folder_name(const vms_local *r, char *out, size_t cap)
{
    size_t n = strlen(r->path);
    while (n > 1 && r->path[n - 1] == '/')
        n--;
    size_t start = n;
    while (start > 0 && r->path[start - 1] != '/')
        start--;
    snprintf(out, cap, "%.*s", (int)(n - start), r->path + start);
}

int vms_local_signer(vms_local *r, struct vms_signer **out, fsp_error *err)
{
    char *path = vms_local_join(r, KEY_FILE);
    int rc = path ? vms_signer_load(path, out, err) : nomem(err);
    free(path);
    return rc;
}

int vms_local_key_generate(vms_repo *repo, bool replace, struct vms_public_key *out,
                           fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    char *path = vms_local_join(r, KEY_FILE), *tmp = vms_local_join(r, "tmp");
    vms_signer *s = NULL;
    int rc = path && tmp ? vms_signer_generate(&s, err) : nomem(err);
    if (!rc)
        rc = vms_signer_save(s, path, tmp, replace, err);
    if (rc == -EEXIST)
        fsp_fail(err, VMS_EK_CONFLICT, rc, "%s: has a signing key already; --force replaces it",
                 r->path);
    if (!rc) {
        char name[256];
        folder_name(r, name, sizeof name);
        vms_signer_public(s, name, out);
    }
    vms_signer_free(s);
    free(path);
    free(tmp);
    return rc;
}

int vms_local_key_public(vms_repo *repo, struct vms_public_key *out, fsp_error *err)
{
    vms_local *r = (vms_local *)repo;
    vms_signer *s = NULL;
    int rc = vms_local_signer(r, &s, err);
    if (!rc && !s)
        rc = fsp_fail(err, VMS_EK_NOTFOUND, -ENOENT,
                      "%s: has no signing key (vmsync key generate makes one)", r->path);
    if (!rc) {
        char name[256];
        folder_name(r, name, sizeof name);
        vms_signer_public(s, name, out);
    }
    vms_signer_free(s);
    return rc;
}
