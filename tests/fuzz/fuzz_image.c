/* libFuzzer target: raw image bytes in, probed for a partition table and filesystems. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_scan(data, size, FSP_FS_NONE);
    return 0;
}
