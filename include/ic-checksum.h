/* Block checksums: XXH3-64 (libxxhash), fast enough to verify every block. */
#ifndef IC_CHECKSUM_H
#define IC_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

uint64_t checksum_block(const void *buf, size_t len);

#endif
