/* libFuzzer target: raw image bytes in, scanned as a bare ext filesystem into
 * the manifest writer, then read back.  Every manifest the writer commits must
 * read back cleanly with the same canonical digest: the writer never makes a
 * file its own reader rejects. */
#include "fsparse.h"
#include "vmsync.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts when a manifest the writer committed does not read back (the reader
 * checks the records, the summary and the canonical digest); a scan that
 * refuses the image is allowed. */
static void write_and_read(const uint8_t *data, size_t size, const char *path)
{
    fsp_source *src;
    fsp_error err;
    vms_manifest_writer *w;
    if (fsp_source_open_mem(data, size, &src, &err))
        return;
    bool ok = !vms_manifest_writer_open(path, &w, &err);
    struct fsp_scan_opts opts = {.force_fs = FSP_FS_EXT};
    if (ok && fsp_scan(src, &opts, vms_manifest_writer_sink(w), &err)) {
        vms_manifest_writer_abort(w);
        ok = false;
    }
    ok = ok && !vms_manifest_writer_commit(w, &err);
    fsp_source_close(src);
    struct fsp_sink nothing = {0};
    if (ok && vms_manifest_read(path, &nothing, &err))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz_manifest_roundtrip.%d.vmm", (int)getpid());
    write_and_read(data, size, path);
    unlink(path);
    return 0;
}
