/* libFuzzer target: manifest file bytes in; the reader must refuse or accept
 * without crashing, and never hand a sink an unsafe path.  The entries go on
 * to the JSON printer, and every name they hold must print as text with no
 * control byte and as valid UTF-8, whatever its bytes. */
#include "vmsync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_printed_name(const char *name)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return;
    vms_put_name(f, name);
    fclose(f);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
            abort();
    if (!vms_utf8_valid(text) || (vms_name_is_plain(name) && strcmp(text, name)))
        abort();
    free(text);
}

static int check_entry(void *ctx, uint64_t seq, const struct fsp_entry *e)
{
    if (!e->path || e->path[0] != '/')
        abort();
    check_printed_name(e->path);
    if (e->symlink)
        check_printed_name(e->symlink);
    for (uint32_t i = 0; i < e->n_xattrs; i++)
        check_printed_name(e->xattrs[i].name);
    const struct fsp_sink *json = ((struct vms_forward *)ctx)->inner;
    return json->entry(json->ctx, seq, e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz-manifest-%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    FILE *devnull = fopen("/dev/null", "w");
    vms_json *j = NULL;
    fsp_error ignored;
    if (devnull)
        vms_json_new(devnull, VMS_JSON_LAYOUT, &j, &ignored);
    if (!f || !j) {
        if (f)
            fclose(f);
        vms_json_free(j);
        if (devnull)
            fclose(devnull);
        return 0;
    }
    fwrite(data, 1, size, f);
    fclose(f);
    struct vms_forward fwd;
    vms_forward_init(&fwd, vms_json_sink(j));
    fwd.sink.entry = check_entry;
    fsp_error err;
    vms_manifest_read(path, &fwd.sink, &err);
    unlink(path);
    vms_json_free(j);
    fclose(devnull);
    return 0;
}
