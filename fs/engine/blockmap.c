/* In-memory block table (see ic-blockmap.h for states and locking). */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "ic-blockmap.h"
#include "ic-error.h"

/* Its own anonymous mapping, not calloc: the pages of a huge sparse
 * template's table must stay unbacked until their blocks are used, and
 * calloc may hand out (and clear) recycled heap memory instead. */
static size_t map_len(uint64_t n)
{
    return (size_t)(n ? n : 1) * sizeof(struct blk);
}

int blockmap_init(struct blockmap *bm, uint64_t n)
{
    bm->nblocks = n;
    bm->present = 0;
    bm->present_bytes = 0;
    if (n > SIZE_MAX / sizeof(struct blk))
        return -ENOMEM;
    void *p = mmap(NULL, map_len(n), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    bm->v = p == MAP_FAILED ? NULL : p; /* zero-filled: MISSING is 0 */
    return bm->v ? 0 : -ENOMEM;
}

void blockmap_free(struct blockmap *bm)
{
    if (bm->v != NULL)
        munmap(bm->v, map_len(bm->nblocks));
    bm->v = NULL;
    bm->nblocks = 0;
}

void blockmap_set_present(struct blockmap *bm, uint64_t i, uint64_t csum,
                          uint8_t flags, uint32_t len)
{
    struct blk *b = &bm->v[i];
    if (b->state != BLK_PRESENT) {
        bm->present++;
        if (!(flags & BLK_ZERO))
            bm->present_bytes += len;
    }
    b->state = BLK_PRESENT;
    b->csum = csum;
    b->flags = (uint8_t)(flags | (b->flags & BLK_PINNED)); /* pins stay */
}

void blockmap_set_missing(struct blockmap *bm, uint64_t i, uint32_t len)
{
    struct blk *b = &bm->v[i];
    if (b->state == BLK_PRESENT) {
        bm->present--;
        if (!(b->flags & BLK_ZERO))
            bm->present_bytes -= len;
        b->seq++;
    }
    b->state = BLK_MISSING;
    b->flags &= BLK_PINNED;
    b->csum = 0;
}

void blockmap_set_failed(struct blockmap *bm, uint64_t i, uint32_t len,
                         uint64_t until_ms)
{
    blockmap_set_missing(bm, i, len);
    bm->v[i].flags |= BLK_FAILED;
    bm->v[i].fail_until_ms = until_ms;
}

int blockmap_failed(const struct blockmap *bm, uint64_t i, uint64_t now_ms)
{
    const struct blk *b = &bm->v[i];
    return b->state == BLK_MISSING && (b->flags & BLK_FAILED) &&
           now_ms < b->fail_until_ms;
}

uint64_t blockmap_missing_run(const struct blockmap *bm, uint64_t i,
                              uint64_t max)
{
    uint64_t n = 0;
    while (i + n < bm->nblocks && n < max && bm->v[i + n].state == BLK_MISSING)
        n++;
    return n;
}
