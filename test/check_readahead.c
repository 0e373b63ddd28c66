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
    /* No manifest: readahead waits for none (it skips while a generation's
     * manifest is unsettled, and these tests make no demand read that
     * would settle it), and no manifest fetch counts as an origin read. */
    ck_engine_start(e, global,
                    "[template a.img]\norigin = %s\nmanifest = none\n",
                    path);
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

/* Two reads in a row make a stream sequential; the window starts small
 * (no more than the run has read), doubles only once all it had asked for
 * is read, up to the config's readahead (2M), never above the run; the
 * fetch is topped up only once half the window is consumed.  The fetched
 * blocks are those up to ra_end, and none past it; the stream counts what
 * it asked for and read. */
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
    note(&e, &s, g, r, r); /* RA_FIRST, but no more than the run */
    ck_assert_uint_eq(s.window, 2 * r);
    ck_assert_uint_eq(s.ra_end, 4 * r);
    note(&e, &s, g, 2 * r, r); /* not all read yet: no growth, no top-up */
    ck_assert_uint_eq(s.window, 2 * r);
    ck_assert_uint_eq(s.ra_end, 4 * r);
    note(&e, &s, g, 3 * r, r); /* all read: doubles */
    ck_assert_uint_eq(s.window, 4 * r);
    ck_assert_uint_eq(s.ra_end, 8 * r);
    uint64_t off = 4 * r;
    for (; off < 6 * MiB; off += r) {
        note(&e, &s, g, off, r);
        ck_assert_uint_le(s.window, off + r);
        ck_assert_uint_le(s.window, 2 * MiB);
    }
    ck_assert_uint_eq(s.window, 2 * MiB);
    ck_assert_uint_ge(s.ra_end, off + MiB);
    ck_assert_uint_le(s.ra_end, off + 2 * MiB);
    uint64_t fetched_to = s.ra_end;
    ck_assert_uint_eq(s.issued, fetched_to - 2 * r);
    ck_assert_uint_eq(s.read, off - 2 * r);

    /* Everything up to ra_end arrives; past it, nothing is fetched. */
    ck_assert(wait_present(g, (fetched_to - 1) / CK_BS));
    ck_assert(wait_present(g, (2 * r) / CK_BS));
    ck_assert_int_eq(ck_state(g, fetched_to / CK_BS), BLK_MISSING);
    ck_assert_int_eq(ck_state(g, 0), BLK_MISSING); /* nobody read it */

    /* A read elsewhere resets the detector. */
    note(&e, &s, g, 10 * MiB, r);
    ck_assert_uint_eq(s.window, 0);
    ck_assert_uint_eq(s.ra_end, 0);
    ck_assert_uint_eq(s.next_off, 10 * MiB + r);
    ra_state_destroy(&s);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* Runs that leave more readahead unread than they read halve the first
 * window, down to none: then a run gets readahead only after RA_PROVE
 * blocks; a run that reads (nearly) all of its readahead doubles it. */
START_TEST(test_shrink)
{
    struct ck_engine e;
    struct ra_state s;
    struct gen *g = start(&e, "2M");
    const uint64_t r = 4 * KiB;
    uint64_t base = 0, want = RA_FIRST;

    ra_state_init(&s);
    ck_assert_uint_eq(s.first, RA_FIRST);
    while (want != 0) {
        /* A run of two blocks, then a read elsewhere: none of its
         * readahead read. */
        for (uint64_t i = 0; i < 2; i++)
            note(&e, &s, g, base + i * r, r);
        ck_assert_uint_gt(s.ra_end, base + 2 * r);
        base += 512 * KiB;
        note(&e, &s, g, base + 256 * KiB, r); /* elsewhere */
        want = want > CK_BS ? want / 2 : 0;
        ck_assert_uint_eq(s.first, want);
    }
    /* Stopped: two reads ask for nothing, RA_PROVE blocks do. */
    note(&e, &s, g, base, r);
    note(&e, &s, g, base + r, r);
    ck_assert_uint_eq(s.ra_end, 0);
    for (uint64_t i = 2; i < RA_PROVE; i++)
        note(&e, &s, g, base + i * r, r);
    ck_assert_uint_eq(s.window, CK_BS);
    ck_assert_uint_eq(s.ra_end, base + (RA_PROVE + 1) * r);
    /* It reads that block and the run ends there: a whole block read, none
     * unread (the next top-up is only asked after this read's). */
    uint64_t end = s.ra_end;
    note(&e, &s, g, base + RA_PROVE * r, r);
    ck_assert_uint_eq(s.run_read, CK_BS);
    s.ra_end = end; /* as if the top-up had not been asked for */
    s.ra_lo = end;
    note(&e, &s, g, 14 * MiB, r);
    ck_assert_uint_eq(s.first, CK_BS);
    ra_state_destroy(&s);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* The generation and the template count readahead's bytes fetched and,
 * at a reader's first read of each block, used. */
START_TEST(test_accounting)
{
    struct ck_engine e;
    struct ra_state s;
    struct gen *g = start(&e, "2M");
    const uint64_t r = 64 * KiB;

    ra_state_init(&s);
    note(&e, &s, g, 0, r);
    note(&e, &s, g, r, r);
    uint64_t to = s.ra_end;
    ck_assert(wait_present(g, (to - 1) / CK_BS));
    uint64_t want = to - 2 * r;
    uint64_t end = mono_ms() + 10000;
    while (ck_stat(&g->ra_fetched) < want && mono_ms() < end)
        usleep(10000);
    ck_assert_uint_eq(ck_stat(&g->ra_fetched), want);
    ck_assert_uint_eq(ck_stat(&g->t->st.ra_fetched), want);
    ck_assert_uint_eq(ck_stat(&g->ra_used), 0);
    ck_assert_int_eq(ck_read_salt(g, 2 * r, r, 1), (ssize_t)r);
    ck_assert_uint_eq(ck_stat(&g->ra_used), r);
    ck_assert_int_eq(ck_read_salt(g, 2 * r, r, 1), (ssize_t)r); /* again */
    ck_assert_uint_eq(ck_stat(&g->ra_used), r);
    ck_assert_uint_eq(ck_stat(&g->t->st.ra_used), r);
    ra_state_destroy(&s);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* The window never reaches past the end of the file, and a config
 * readahead below RA_FIRST caps even the first window. */
START_TEST(test_caps)
{
    struct ck_engine e;
    struct ra_state s;
    struct gen *g = start(&e, "256K");
    const uint64_t r = 64 * KiB;

    ra_state_init(&s);
    for (uint64_t i = 0; i < 8; i++)
        note(&e, &s, g, i * r, r);
    ck_assert_uint_eq(s.window, 256 * KiB);
    ck_assert_uint_le(s.ra_end, 8 * r + 256 * KiB);
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
    for (uint64_t i = 0; i < 64; i++)
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
    const TTest *tests[] = {test_window, test_shrink, test_accounting,
                            test_caps, test_off, test_warm_stream};
    return ck_suite("readahead", tests, CK_NTESTS(tests), setup, teardown, 60);
}

int main(void)
{
    log_init("check_readahead", 0);
    return ck_run(readahead_suite());
}
