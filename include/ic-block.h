/* Block maths: a template of `size` bytes is cut into blocks of `bs` bytes
 * (bs a power of two); block N covers [N*bs, min((N+1)*bs, size)). */
#ifndef IC_BLOCK_H
#define IC_BLOCK_H

#include <stdint.h>

#define IC_BS_MIN (4u * 1024)
#define IC_BS_MAX (16u * 1024 * 1024)
#define IC_BS_DEFAULT (64u * 1024)

static inline int block_size_valid(uint64_t bs)
{
    return bs >= IC_BS_MIN && bs <= IC_BS_MAX && (bs & (bs - 1)) == 0;
}
static inline uint64_t block_count(uint64_t size, uint32_t bs)
{
    return size / bs + (size % bs != 0);
}
static inline uint64_t block_of(uint64_t off, uint32_t bs) { return off / bs; }
static inline uint64_t block_start(uint64_t blk, uint32_t bs) { return blk * bs; }
/* Length of block blk (the last one may be short; 0 past the end). */
static inline uint32_t block_len(uint64_t blk, uint64_t size, uint32_t bs)
{
    uint64_t s = blk * bs;
    if (s >= size)
        return 0;
    return size - s < bs ? (uint32_t)(size - s) : bs;
}
/* Clamp a read of len at off to the file size; returns the clamped length. */
static inline uint64_t block_clamp(uint64_t off, uint64_t len, uint64_t size)
{
    if (off >= size)
        return 0;
    return size - off < len ? size - off : len;
}

#endif
