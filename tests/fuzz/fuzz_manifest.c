/* libFuzzer target: manifest file bytes in; the reader must refuse or accept
 * without crashing, and never hand a sink an unsafe path. */
#include "vmsync.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check_entry(void *ctx, uint64_t seq, const struct fsp_entry *e)
{
    if (!e->path || e->path[0] != '/')
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz-manifest-%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    struct fsp_sink sink = {.entry = check_entry};
    fsp_error err;
    vms_manifest_read(path, &sink, &err);
    unlink(path);
    return 0;
}
