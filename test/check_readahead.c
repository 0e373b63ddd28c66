/* Unit tests for fs/engine/readahead.c: ra_note()'s window (include/ic-readahead.h)
 * and what its background fetches fill.
 *
 * A handle's detector (struct ra_state) is driven directly with the reads
 * a handle would note, against a real generation of the engine
 * (ck-engine.h) whose readahead threads fetch from a file origin. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../fs/engine/cache-priv.h" /* white-box: the engine's fields */
#include "ic-engine.h"
#include "ic-log.h"
#include "ic-readahead.h"

#include "ck-tmpdir.h"

CK_TMPDIR_FIXTURES("check_readahead")

#include "ck-engine.h"

#define KiB 1024ull
#define MiB (1024 * KiB)
#define FILE_SIZE (16 * MiB)

static struct gen *start(struct ck_engine *e, const char *readahead)
{
    char path[PATH_MAX], global[64];
    ck_origin_write("a.img", FILE_SIZE, 1, path, sizeof path);
    snprintf(global, sizeof global, "readahead = %s\n", readahead);
    ck_engine_start(e, global, "[template a.img]\norigin = %s\n", path);
    return ck_gen(e, "a.img");
}

/* Wait (10 s at most) until block blk is present; whether it is. */
static int wait_present(struct gen *g, uint64_t blk)
{
    uint64_t end = mono_ms() + 10000;
    while (ck_state(g, blk) != BLK_PRESENT && mono_ms() < end)
        usleep(10000);
    return ck_state(g, blk) == BLK_PRESENT;
}

static void note(struct ck_engine *e, struct ra_state *s, struct gen *g,
                 uint64_t off, uint64_t len)
{
    ra_note(e->c->ra, s, g, off, len);
}

/* Two reads in a row make a stream sequential; the window starts at
 * RA_MIN and doubles per read up to the config's readahead (2M); the
 * fetch is topped up only once half the window is consumed; a read
 * elsewhere resets it, and the next stream starts small again.  The
 * fetched blocks are those up to ra_end, and none past it. */
START_TEST(test_window)
{
    struct ck_engine e;
    struct ra_state s;
    struct gen *g = start(&e, "2M");
    const uint64_t r = 64 * KiB;

    ra_state_init(&s);
    note(&e, &s, g, 0, r); /* the first read of a file says nothing yet */
    ck_assert_uint_eq(s.window, 0);
    ck_assert_uint_eq(s.ra_end, 0);
    ck_assert_uint_eq(s.next_off, r);
    note(&e, &s, g, r, r);
    ck_assert_uint_eq(s.window, RA_MIN);
    ck_assert_uint_eq(s.ra_end, 2 * r + RA_MIN);
    note(&e, &s, g, 2 * r, r);
    ck_assert_uint_eq(s.window, 2 * RA_MIN);
    ck_assert_uint_eq(s.ra_end, 3 * r + 2 * RA_MIN);
    note(&e, &s, g, 3 * r, r);
    ck_assert_uint_eq(s.window, 2 * MiB);
    ck_assert_uint_eq(s.ra_end, 4 * r + 2 * MiB);
    /* At the cap; less than half the window consumed: no new fetch. */
    note(&e, &s, g, 4 * r, r);
    ck_assert_uint_eq(s.window, 2 * MiB);
    ck_assert_uint_eq(s.ra_end, 4 * r + 2 * MiB);
    uint64_t fetched_to = s.ra_end;

    /* Everything up to ra_end arrives; past it, nothing is fetched. */
    ck_assert(wait_present(g, (fetched_to - 1) / CK_BS));
    ck_assert(wait_present(g, (2 * r) / CK_BS));
    ck_assert_int_eq(ck_state(g, fetched_to / CK_BS), BLK_MISSING);
    ck_assert_int_eq(ck_state(g, 0), BLK_MISSING); /* nobody read it */

    /* A random read resets the detector ... */
    note(&e, &s, g, 10 * MiB, r);
    ck_assert_uint_eq(s.window, 0);
    ck_assert_uint_eq(s.ra_end, 0);
    ck_assert_uint_eq(s.next_off, 10 * MiB + r);
    /* ... and a stream from there starts at the first window again. */
    note(&e, &s, g, 10 * MiB + r, r);
    ck_assert_uint_eq(s.window, RA_MIN);
    ck_assert_uint_eq(s.ra_end, 10 * MiB + 2 * r + RA_MIN);
    ck_assert(wait_present(g, (s.ra_end - 1) / CK_BS));
    ra_state_destroy(&s);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* The window never reaches past the end of the file, and a config
 * readahead below RA_MIN caps even the first window. */
START_TEST(test_caps)
{
    struct ck_engine e;
    struct ra_state s;
    struct gen *g = start(&e, "256K");
    const uint64_t r = 64 * KiB;

    ra_state_init(&s);
    note(&e, &s, g, 0, r);
    note(&e, &s, g, r, r);
    ck_assert_uint_eq(s.window, 256 * KiB);
    ck_assert_uint_eq(s.ra_end, 2 * r + 256 * KiB);
    note(&e, &s, g, FILE_SIZE - 3 * r, r); /* elsewhere: reset */
    note(&e, &s, g, FILE_SIZE - 2 * r, r);
    ck_assert_uint_eq(s.ra_end, FILE_SIZE);
    ck_assert(wait_present(g, FILE_SIZE / CK_BS - 1));
    ra_state_destroy(&s);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* readahead = 0: no detector, no fetch. */
START_TEST(test_off)
{
    struct ck_engine e;
    struct ra_state s;
    struct gen *g = start(&e, "0");

    ra_state_init(&s);
    for (uint64_t i = 0; i < 8; i++)
        note(&e, &s, g, i * 64 * KiB, 64 * KiB);
    ck_assert_uint_eq(s.window, 0);
    ck_assert_uint_eq(s.ra_end, 0);
    ck_assert_uint_eq(ck_stat(&g->t->st.origin_reads), 0);
    ra_state_destroy(&s);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* A stream over blocks already cached moves its window but asks the
 * origin nothing. */
START_TEST(test_warm_stream)
{
    struct ck_engine e;
    struct ra_state s;
    struct gen *g = start(&e, "2M");
    const uint64_t r = 64 * KiB;

    ck_assert_int_eq(ck_read_salt(g, 0, 4 * MiB, 1), (ssize_t)(4 * MiB));
    uint64_t reads = ck_stat(&g->t->st.origin_reads);
    ra_state_init(&s);
    for (uint64_t i = 0; i < 6; i++)
        note(&e, &s, g, i * r, r);
    ck_assert_uint_eq(s.window, 2 * MiB);
    ck_assert_uint_eq(ck_stat(&g->t->st.origin_reads), reads);
    ra_state_destroy(&s);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

static Suite *readahead_suite(void)
{
    const TTest *tests[] = {test_window, test_caps, test_off,
                            test_warm_stream};
    return ck_suite("readahead", tests, CK_NTESTS(tests), setup, teardown, 60);
}

int main(void)
{
    log_init("check_readahead", 0);
    return ck_run(readahead_suite());
}
