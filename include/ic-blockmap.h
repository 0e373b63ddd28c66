/* The in-memory block table of one template generation: authoritative at
 * run time.  A flat array, one 16-byte entry per block.
 *
 * Locking: the owner (struct gen, fs/engine/cache-priv.h) holds gen.lock
 * around every access to entries; blockmap functions take no locks.
 *
 * State of a block:
 *   MISSING  -> FILLING   a reader claimed it and is fetching it (only the
 *                         claimer changes it next)
 *   FILLING  -> PRESENT   bytes written to the data file (or a zero block)
 *   FILLING  -> MISSING   the fill failed; waiters retry or give up (with
 *                         BLK_FAILED: they give up for a while)
 *   PRESENT  -> MISSING   checksum mismatch, eviction (seq is bumped so a
 *                         reader that copied the bytes meanwhile retries)
 */
#ifndef IC_BLOCKMAP_H
#define IC_BLOCKMAP_H

#include <stdint.h>

enum blk_state { BLK_MISSING = 0, BLK_FILLING = 1, BLK_PRESENT = 2 };

#define BLK_VERIFIED 0x1 /* checksum checked (or filled) during this run */
#define BLK_ZERO 0x2     /* all-zero block, stored as a hole */
/* Bits 2-3: the block's pin class (enum pin_class, ic-pinspec.h: 0
 * unpinned, 1 low, 2 high, 3 boot), the strongest of the pins covering
 * it.  BLK_PINNED is the mask: flags & BLK_PINNED is true for a pinned
 * block of any class. */
#define BLK_CLASS_SHIFT 2
#define BLK_PINNED 0xc
#define BLK_CLASS(flags) (((flags) & BLK_PINNED) >> BLK_CLASS_SHIFT)
/* A MISSING block whose last fill failed: fail_until_ms says until when a
 * read of it fails at once rather than asking the origin again (read.c:
 * the kernel retries a failed read, and every concurrent failure must be
 * remembered, not only the last one). */
#define BLK_FAILED 0x10
/* A PRESENT block that readahead fetched and no reader has read yet: the
 * first read counts it as readahead used (read.c), once. */
#define BLK_RA 0x20

struct blk {
    union {
        uint64_t csum;          /* XXH3-64 of the block's bytes (PRESENT) */
        uint64_t fail_until_ms; /* mono_ms() (MISSING with BLK_FAILED) */
    };
    uint32_t atime; /* access counter value at last use (LRU order) */
    uint8_t state;  /* enum blk_state */
    uint8_t flags;  /* BLK_* */
    uint16_t seq;   /* bumped whenever a PRESENT block is taken away */
};

struct blockmap {
    uint64_t nblocks;
    uint64_t present;       /* blocks in PRESENT state */
    uint64_t present_bytes; /* their bytes, zero blocks excluded */
    struct blk *v;
};

/* Allocate a table of n MISSING blocks.  0 or -ENOMEM. */
int blockmap_init(struct blockmap *bm, uint64_t n);
void blockmap_free(struct blockmap *bm);

/* Transitions that keep the counters right; `len` is the block's length. */
void blockmap_set_present(struct blockmap *bm, uint64_t i, uint64_t csum,
                          uint8_t flags, uint32_t len);
void blockmap_set_missing(struct blockmap *bm, uint64_t i, uint32_t len);

/* Mark a MISSING (or FILLING) block MISSING with BLK_FAILED until
 * until_ms; the next set_present or set_missing clears it. */
void blockmap_set_failed(struct blockmap *bm, uint64_t i, uint32_t len,
                         uint64_t until_ms);
/* Whether block i is MISSING with a failure remembered past now_ms. */
int blockmap_failed(const struct blockmap *bm, uint64_t i, uint64_t now_ms);
/* Length of the run of MISSING blocks starting at i, at most max. */
uint64_t blockmap_missing_run(const struct blockmap *bm, uint64_t i,
                              uint64_t max);

#endif
