/* In-memory block table (see ic-blockmap.h for states and locking). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "ic-blockmap.h"

int blockmap_init(struct blockmap *bm, uint64_t n)
{
    bm->nblocks = n;
    bm->present = 0;
    bm->present_bytes = 0;
    /* calloc: MISSING is 0, and untouched pages of a huge sparse template
     * cost no memory until their blocks are used. */
    bm->v = calloc(n ? n : 1, sizeof *bm->v);
    return bm->v ? 0 : -ENOMEM;
}

void blockmap_free(struct blockmap *bm)
{
    free(bm->v);
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

uint64_t blockmap_missing_run(const struct blockmap *bm, uint64_t i,
                              uint64_t max)
{
    uint64_t n = 0;
    while (i + n < bm->nblocks && n < max && bm->v[i + n].state == BLK_MISSING)
        n++;
    return n;
}
