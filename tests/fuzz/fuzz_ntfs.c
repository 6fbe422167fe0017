/* libFuzzer target: raw image bytes in, read as a bare ntfs filesystem. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_scan(data, size, FSP_FS_NTFS);
    return 0;
}
