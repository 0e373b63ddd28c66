/* Unit tests for fs/engine/blockmap.c: the block table's transitions keep its
 * counters right. */
#include "config.h"

#include <check.h>
#include <stdlib.h>

#include "ic-blockmap.h"

#include "ck-tmpdir.h"

START_TEST(blockmap_counts)
{
    struct blockmap bm;
    ck_assert_int_eq(blockmap_init(&bm, 10), 0);
    ck_assert_uint_eq(blockmap_missing_run(&bm, 0, 100), 10);
    ck_assert_uint_eq(blockmap_missing_run(&bm, 8, 100), 2);
    ck_assert_uint_eq(blockmap_missing_run(&bm, 0, 4), 4);
    blockmap_set_present(&bm, 3, 42, 0, 100);
    blockmap_set_present(&bm, 4, 43, BLK_ZERO, 100);
    ck_assert_uint_eq(bm.present, 2);
    ck_assert_uint_eq(bm.present_bytes, 100); /* zero blocks cost nothing */
    ck_assert_uint_eq(blockmap_missing_run(&bm, 0, 100), 3);
    uint16_t seq = bm.v[3].seq;
    blockmap_set_missing(&bm, 3, 100);
    ck_assert_uint_eq(bm.v[3].seq, (uint16_t)(seq + 1));
    ck_assert_uint_eq(bm.present, 1);
    ck_assert_uint_eq(bm.present_bytes, 0);
    /* Setting present twice must not double count. */
    blockmap_set_present(&bm, 4, 43, BLK_ZERO, 100);
    ck_assert_uint_eq(bm.present, 1);
    blockmap_free(&bm);
}
END_TEST

/* A FILLING block ends a missing run (somebody is fetching it), a
 * missing block set missing again changes nothing, and pins stay. */
START_TEST(blockmap_runs)
{
    struct blockmap bm;
    ck_assert_int_eq(blockmap_init(&bm, 8), 0);
    bm.v[2].state = BLK_FILLING;
    ck_assert_uint_eq(blockmap_missing_run(&bm, 0, 8), 2);
    ck_assert_uint_eq(blockmap_missing_run(&bm, 2, 8), 0);
    ck_assert_uint_eq(blockmap_missing_run(&bm, 3, 8), 5);
    blockmap_set_missing(&bm, 5, 4096);
    ck_assert_uint_eq(bm.present, 0);
    ck_assert_uint_eq(bm.present_bytes, 0);
    blockmap_set_present(&bm, 7, 1, 0, 100); /* a short last block */
    ck_assert_uint_eq(bm.present_bytes, 100);
    ck_assert_uint_eq(blockmap_missing_run(&bm, 3, 8), 4);
    /* A pin outlives the block's bytes; other flags go with them. */
    bm.v[6].flags = BLK_PINNED;
    blockmap_set_present(&bm, 6, 9, BLK_VERIFIED, 4096);
    ck_assert_uint_eq(bm.v[6].flags, BLK_PINNED | BLK_VERIFIED);
    blockmap_set_missing(&bm, 6, 4096);
    ck_assert_uint_eq(bm.v[6].flags, BLK_PINNED);
    ck_assert_uint_eq(bm.v[6].csum, 0);
    blockmap_free(&bm);
}
END_TEST

/* A failed fill is remembered per block until its time, is still a
 * missing block (a run, claimable), keeps a pin, and is forgotten by the
 * block's next transition. */
START_TEST(blockmap_failed_fills)
{
    struct blockmap bm;
    ck_assert_int_eq(blockmap_init(&bm, 4), 0);
    bm.v[1].flags = BLK_PINNED;
    bm.v[1].state = BLK_FILLING;
    bm.v[2].state = BLK_FILLING;
    blockmap_set_failed(&bm, 1, 4096, 1000);
    blockmap_set_failed(&bm, 2, 4096, 2000);
    ck_assert(!blockmap_failed(&bm, 0, 0));
    ck_assert(blockmap_failed(&bm, 1, 999));
    ck_assert(!blockmap_failed(&bm, 1, 1000));
    ck_assert(blockmap_failed(&bm, 2, 1500)); /* each its own time */
    ck_assert_uint_eq(bm.v[1].flags, BLK_PINNED | BLK_FAILED);
    ck_assert_uint_eq(blockmap_missing_run(&bm, 0, 4), 4);
    bm.v[2].state = BLK_FILLING; /* claimed again: not failed meanwhile */
    ck_assert(!blockmap_failed(&bm, 2, 1500));
    blockmap_set_present(&bm, 2, 7, BLK_VERIFIED, 4096);
    ck_assert_uint_eq(bm.v[2].flags, BLK_VERIFIED);
    ck_assert_uint_eq(bm.v[2].csum, 7);
    blockmap_set_missing(&bm, 1, 4096);
    ck_assert_uint_eq(bm.v[1].flags, BLK_PINNED);
    ck_assert(!blockmap_failed(&bm, 1, 0));
    ck_assert_uint_eq(bm.present, 1);
    blockmap_free(&bm);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("blockmap");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, blockmap_counts);
    tcase_add_test(tc, blockmap_runs);
    tcase_add_test(tc, blockmap_failed_fills);
    suite_add_tcase(s, tc);
    return ck_run(s);
}
