/* XXH3-64 block checksums. */
#include "config.h"

#include <xxhash.h>

#include "ic-checksum.h"
#include "ic-error.h"

uint64_t checksum_block(const void *buf, size_t len)
{
    return XXH3_64bits(buf, len);
}
