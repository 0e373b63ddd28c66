/* Unit tests for fs/engine/evict.c: which blocks eviction takes, and the room
 * fills reserve.
 *
 * The real engine runs on a config in the test's directory (ck-engine.h):
 * 4K blocks, file origins of a few blocks, reads through cache_read() to
 * fill them.  What is cached is read back two ways that must agree: the
 * block table and the data file's extents (SEEK_DATA). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "../fs/engine/cache-priv.h" /* white-box: the engine's fields */
#include "ic-engine.h"
#include "ic-evict.h"
#include "ic-log.h"
#include "ic-manifest.h"
#include "ic-pin.h"
#include "ic-store.h"

#include "ck-tmpdir.h"

CK_TMPDIR_FIXTURES("check_evict")

#include "ck-engine.h"

/* One template "a.img" of nblk blocks with the given extra lines. */
static void start_one(struct ck_engine *e, const char *global, int nblk,
                      const char *extra)
{
    char path[PATH_MAX];
    ck_origin_write("a.img", (uint64_t)nblk * CK_BS, 1, path, sizeof path);
    ck_engine_start(e, global, "[template a.img]\norigin = %s\n%s\n", path,
                    extra);
}

static void pin_range(struct tmpl *t, uint64_t off, uint64_t len)
{
    struct byte_range r = {off, len};
    char err[256] = "";
    ck_assert_msg(pin_change(t, &r, 1, PIN_BOOT, 0, err, sizeof err) == 0, "pin: %s",
                  err);
}

static void pin_cls(struct tmpl *t, uint64_t blk, int cls)
{
    struct byte_range r = {blk * CK_BS, CK_BS};
    char err[256] = "";
    ck_assert_msg(pin_change(t, &r, 1, cls, 0, err, sizeof err) == 0,
                  "pin: %s", err);
}

/* Over its quota, a template loses its least recently used blocks: read
 * 0,1,2,3 (the quota), use 0 again, then read 4.  The room wanted is one
 * block plus the slack (quota/32), so the two oldest go: 1 and 2.  A
 * policy ordering by block number or by fill time would take 0. */
START_TEST(test_quota_lru)
{
    struct ck_engine e;
    start_one(&e, NULL, 8, "quota = 16K");
    struct gen *g = ck_gen(&e, "a.img");
    for (uint64_t b = 0; b < 4; b++)
        ck_read_blk(g, b, 1);
    ck_read_blk(g, 0, 1); /* a hit: 0 is now the most recently used */
    ck_assert_uint_eq(ck_stat(&g->t->st.hits), 1);
    ck_read_blk(g, 4, 1);
    ck_assert(ck_cached(g, 0));
    ck_assert(!ck_cached(g, 1));
    ck_assert(!ck_cached(g, 2));
    ck_assert(ck_cached(g, 3));
    ck_assert(ck_cached(g, 4));
    ck_assert_uint_eq(ck_stat(&g->t->st.evictions), 2);
    ck_assert_uint_eq(ck_stat(&g->t->st.evicted_bytes), 2 * CK_BS);
    ck_assert_uint_le(g->bm.present_bytes, g->t->quota);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* A pinned block is never a victim, even when it is the oldest: pin 0,
 * fill 0..3, read 4: 1 and 2 go, 0 stays. */
START_TEST(test_pinned_not_chosen)
{
    struct ck_engine e;
    start_one(&e, NULL, 8, "quota = 16K");
    struct gen *g = ck_gen(&e, "a.img");
    pin_range(g->t, 0, 1);
    for (uint64_t b = 0; b < 4; b++)
        ck_read_blk(g, b, 1);
    ck_read_blk(g, 4, 1);
    ck_assert(ck_cached(g, 0));
    ck_assert(!ck_cached(g, 1));
    ck_assert(!ck_cached(g, 2));
    ck_assert(ck_cached(g, 3) && ck_cached(g, 4));
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* When pins fill the quota, nothing can be evicted: a read of an unpinned
 * block is served from the origin and not stored (serve-through), and the
 * pinned blocks stay. */
START_TEST(test_pins_fill_quota)
{
    struct ck_engine e;
    start_one(&e, NULL, 8, "quota = 16K");
    struct gen *g = ck_gen(&e, "a.img");
    pin_range(g->t, 0, 4 * CK_BS);
    for (uint64_t b = 0; b < 4; b++)
        ck_read_blk(g, b, 1);
    ck_read_blk(g, 4, 1);
    ck_assert(!ck_cached(g, 4));
    for (uint64_t b = 0; b < 4; b++)
        ck_assert(ck_cached(g, b));
    ck_assert_uint_eq(ck_stat(&g->t->st.uncached), 1);
    ck_assert_uint_eq(ck_stat(&g->t->st.evictions), 0);
    ck_assert_uint_eq(g->reserved, 0); /* the refused fill took nothing */
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* cache_max spans templates: the victims come from the template holding
 * the least recently used block, which is b.img's B0 although a.img is
 * listed first.  Fill B0 A0 A1 B1 B2 B3 (cache_max), then read A2: B's
 * two oldest (B0, B1) make the room and slack; A's blocks all stay. */
START_TEST(test_global_lru)
{
    struct ck_engine e;
    char pa[PATH_MAX], pb[PATH_MAX];
    ck_origin_write("a.img", 8 * CK_BS, 1, pa, sizeof pa);
    ck_origin_write("b.img", 8 * CK_BS, 2, pb, sizeof pb);
    ck_engine_start(&e, "readahead = 0\ncache_max = 24K\n",
                    "[template a.img]\norigin = %s\n"
                    "[template b.img]\norigin = %s\n", pa, pb);
    struct gen *a = ck_gen(&e, "a.img"), *b = ck_gen(&e, "b.img");
    ck_read_blk(b, 0, 2);
    ck_read_blk(a, 0, 1);
    ck_read_blk(a, 1, 1);
    ck_read_blk(b, 1, 2);
    ck_read_blk(b, 2, 2);
    ck_read_blk(b, 3, 2);
    ck_assert_uint_eq(evict_cache_used(e.c), 6 * CK_BS);
    ck_read_blk(a, 2, 1);
    ck_assert(ck_cached(a, 0) && ck_cached(a, 1) && ck_cached(a, 2));
    ck_assert(!ck_cached(b, 0));
    ck_assert(!ck_cached(b, 1));
    ck_assert(ck_cached(b, 2) && ck_cached(b, 3));
    ck_assert_uint_eq(ck_stat(&a->t->st.evictions), 0);
    ck_assert_uint_eq(ck_stat(&b->t->st.evictions), 2);
    ck_assert_uint_le(evict_cache_used(e.c), 24 * 1024);
    cache_gen_put(a);
    cache_gen_put(b);
    ck_engine_stop(&e);
}
END_TEST

/* Room reserved for a fill counts under the quota until unreserved: with
 * 12K of a 16K quota reserved, one block fits; a second one makes the
 * first go, though only 4K are stored.  A refusal keeps the reservation
 * as it was; evict_unreserve gives the room back. */
START_TEST(test_reserve_quota)
{
    struct ck_engine e;
    start_one(&e, NULL, 8, "quota = 16K");
    struct gen *g = ck_gen(&e, "a.img");
    ck_assert_int_eq(evict_make_room(g, 3 * CK_BS, 0), 0);
    ck_assert_uint_eq(g->reserved, 3 * CK_BS);
    ck_assert_uint_eq(evict_cache_used(e.c), 3 * CK_BS);
    ck_assert_int_eq(evict_make_room(g, 2 * CK_BS, 0), -ENOSPC);
    ck_assert_uint_eq(g->reserved, 3 * CK_BS);
    ck_read_blk(g, 0, 1);
    ck_assert(ck_cached(g, 0));
    ck_read_blk(g, 1, 1);
    ck_assert(!ck_cached(g, 0));
    ck_assert(ck_cached(g, 1));
    ck_assert_uint_eq(ck_stat(&g->t->st.evictions), 1);
    evict_unreserve(g, 3 * CK_BS);
    ck_assert_uint_eq(g->reserved, 0);
    ck_assert_uint_eq(evict_cache_used(e.c), CK_BS);
    ck_read_blk(g, 2, 1);
    ck_read_blk(g, 3, 1);
    ck_assert(ck_cached(g, 1) && ck_cached(g, 2) && ck_cached(g, 3));
    ck_assert_uint_eq(ck_stat(&g->t->st.evictions), 1);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* The same under cache_max: a reservation holding all of it leaves a fill
 * no room (nothing to evict), the fill is served uncached and gives its
 * own reservation back; after evict_unreserve the block is stored. */
START_TEST(test_reserve_cache_max)
{
    struct ck_engine e;
    start_one(&e, "readahead = 0\ncache_max = 16K\n", 8, "");
    struct gen *g = ck_gen(&e, "a.img");
    ck_assert_int_eq(evict_make_room(g, 4 * CK_BS, 0), 0);
    ck_assert_uint_eq(e.c->reserved, 4 * CK_BS);
    ck_read_blk(g, 0, 1);
    ck_assert(!ck_cached(g, 0));
    ck_assert_uint_eq(ck_stat(&g->t->st.uncached), 1);
    ck_assert_uint_eq(g->reserved, 4 * CK_BS);
    ck_assert_uint_eq(e.c->reserved, 4 * CK_BS);
    evict_unreserve(g, 4 * CK_BS);
    ck_assert_uint_eq(e.c->reserved, 0);
    ck_read_blk(g, 0, 1);
    ck_assert(ck_cached(g, 0));
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* evict_from_gen frees at least what is asked, oldest first, counts it,
 * never touches pinned blocks, and its removals are in the index: after a
 * restart the evicted blocks are missing and the others still present. */
START_TEST(test_from_gen)
{
    struct ck_engine e;
    start_one(&e, NULL, 8, "");
    struct gen *g = ck_gen(&e, "a.img");
    const uint64_t order[] = {3, 1, 0, 2, 5};
    for (size_t i = 0; i < 5; i++)
        ck_read_blk(g, order[i], 1);
    ck_assert_uint_eq(evict_from_gen(g, 1, PIN_NONE), CK_BS);
    ck_assert(!ck_cached(g, 3));
    ck_assert(ck_cached(g, 1));
    ck_assert_uint_eq(evict_from_gen(g, CK_BS + 1, PIN_NONE), 2 * CK_BS);
    ck_assert(!ck_cached(g, 1) && !ck_cached(g, 0));
    ck_assert(ck_cached(g, 2) && ck_cached(g, 5));
    ck_assert_uint_eq(ck_stat(&g->t->st.evictions), 3);
    ck_assert_uint_eq(ck_stat(&g->t->st.evicted_bytes), 3 * CK_BS);
    pin_range(g->t, 2 * CK_BS, CK_BS);
    ck_assert_uint_eq(evict_from_gen(g, CK_BS, PIN_NONE), CK_BS); /* 5, not 2 */
    ck_assert(ck_cached(g, 2) && !ck_cached(g, 5));
    ck_assert_uint_eq(evict_from_gen(g, 1 << 20, PIN_NONE), 0);
    ck_assert(ck_cached(g, 2));
    cache_gen_put(g);
    ck_engine_stop(&e);

    ck_engine_start(&e, NULL, "[template a.img]\norigin = %s/origin/a.img\n",
                    tmpdir);
    g = ck_gen(&e, "a.img");
    for (uint64_t b = 0; b < 8; b++)
        ck_assert_msg(ck_cached(g, b) == (b == 2), "block %llu after restart",
                      (unsigned long long)b);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* min_free: a cache filesystem (a 1 MiB tmpfs) must keep 75% of it free.
 * Reading 200 blocks (800K) through it evicts, oldest first, and what
 * stays cached is under the quarter the data may use (less: the index's
 * WAL takes its share of the same filesystem).  Without the min_free
 * check the blocks would fill the tmpfs up to ENOSPC (some 500K). */
START_TEST(test_min_free)
{
    struct ck_engine e;
    char cache[PATH_MAX];
    snprintf(cache, sizeof cache, "%s/cache", tmpdir);
    ck_assert_int_eq(mkdir(cache, 0700), 0);
    int r = ck_tmpfs_mount(cache, 1 << 20);
    if (r < 0) {
        fprintf(stderr, "test_min_free: cannot mount a tmpfs (%s): skipped\n",
                strerror(-r));
        return;
    }
    start_one(&e, "readahead = 0\nmin_free = 75%\n", 200, "");
    struct gen *g = ck_gen(&e, "a.img");
    for (uint64_t b = 0; b < 200; b++)
        ck_read_blk(g, b, 1);
    ck_assert_uint_gt(ck_stat(&g->t->st.evictions), 0);
    ck_assert_uint_le(g->bm.present_bytes, 256 * 1024);
    ck_assert(!ck_cached(g, 0));
    cache_gen_put(g);
    ck_engine_stop(&e);
    umount2(cache, MNT_DETACH);
}
END_TEST


/* Under a quota the tiers go in order, whatever the blocks' ages: blocks
 * 0 low, 1 high, 2 boot, 3 unpinned, filled in that order (0 the oldest).
 * A boot fill of 4 takes the unpinned 3 (the slack never reaches into a
 * stronger tier), one of 5 the low 0, one of 6 the high 1, not the
 * oldest blocks by LRU.  Then only boot blocks are left and an unpinned
 * read is served uncached: boot is never a victim. */
START_TEST(test_class_tiers)
{
    struct ck_engine e;
    start_one(&e, NULL, 8, "quota = 16K");
    struct gen *g = ck_gen(&e, "a.img");
    pin_cls(g->t, 0, PIN_LOW);
    pin_cls(g->t, 1, PIN_HIGH);
    pin_cls(g->t, 2, PIN_BOOT);
    pin_cls(g->t, 4, PIN_BOOT);
    pin_cls(g->t, 5, PIN_BOOT);
    pin_cls(g->t, 6, PIN_BOOT);
    for (uint64_t b = 0; b < 4; b++)
        ck_read_blk(g, b, 1);
    ck_read_blk(g, 4, 1);
    ck_assert(!ck_cached(g, 3));
    ck_assert(ck_cached(g, 0) && ck_cached(g, 1) && ck_cached(g, 2) &&
              ck_cached(g, 4));
    ck_assert_uint_eq(ck_stat(&g->t->st.evictions), 1);
    ck_read_blk(g, 5, 1);
    ck_assert(!ck_cached(g, 0));
    ck_assert(ck_cached(g, 1) && ck_cached(g, 5));
    ck_assert_uint_eq(ck_stat(&g->t->st.evicted_class[PIN_LOW]), 1);
    ck_assert_uint_eq(ck_stat(&g->t->st.evicted_class[PIN_HIGH]), 0);
    ck_read_blk(g, 6, 1);
    ck_assert(!ck_cached(g, 1));
    ck_assert_uint_eq(ck_stat(&g->t->st.evicted_class[PIN_HIGH]), 1);
    ck_read_blk(g, 7, 1); /* all boot now: no victim */
    ck_assert(!ck_cached(g, 7));
    ck_assert(ck_cached(g, 2) && ck_cached(g, 4) && ck_cached(g, 5) &&
              ck_cached(g, 6));
    ck_assert_uint_eq(ck_stat(&g->t->st.evictions), 3);
    ck_assert_uint_eq(ck_stat(&g->t->st.uncached), 1);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* Never the reverse: with the quota full of high blocks, a low fill (and
 * an unpinned one) finds no victim and is served uncached; so is a high
 * fill: its own template's blocks of its own class are not its victims
 * (a set larger than its room stays partly resident, no churn). */
START_TEST(test_class_no_reverse)
{
    struct ck_engine e;
    start_one(&e, NULL, 8, "quota = 16K");
    struct gen *g = ck_gen(&e, "a.img");
    for (uint64_t b = 0; b < 4; b++) {
        pin_cls(g->t, b, PIN_HIGH);
        ck_read_blk(g, b, 1);
    }
    pin_cls(g->t, 4, PIN_LOW);
    pin_cls(g->t, 5, PIN_HIGH);
    ck_read_blk(g, 4, 1);
    ck_read_blk(g, 6, 1);
    ck_read_blk(g, 5, 1);
    ck_assert(!ck_cached(g, 4) && !ck_cached(g, 5) && !ck_cached(g, 6));
    for (uint64_t b = 0; b < 4; b++)
        ck_assert(ck_cached(g, b));
    ck_assert_uint_eq(ck_stat(&g->t->st.uncached), 3);
    ck_assert_uint_eq(ck_stat(&g->t->st.evictions), 0);
    /* A boot fill may take them, the least recently used first (the
     * slack, inside the tier, takes a second one). */
    pin_cls(g->t, 7, PIN_BOOT);
    ck_read_blk(g, 7, 1);
    ck_assert(ck_cached(g, 7));
    ck_assert(!ck_cached(g, 0) && !ck_cached(g, 1));
    ck_assert(ck_cached(g, 2) && ck_cached(g, 3));
    ck_assert_uint_eq(ck_stat(&g->t->st.evicted_class[PIN_HIGH]), 2);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* Under cache_max the tiers span templates: a's low block is the least
 * recently used of all, yet b's unpinned blocks go first; a boot fill of
 * b then takes a's low block before b's high one. */
START_TEST(test_class_global)
{
    struct ck_engine e;
    char pa[PATH_MAX], pb[PATH_MAX];
    ck_origin_write("a.img", 8 * CK_BS, 1, pa, sizeof pa);
    ck_origin_write("b.img", 8 * CK_BS, 2, pb, sizeof pb);
    ck_engine_start(&e, "readahead = 0\ncache_max = 16K\n",
                    "[template a.img]\norigin = %s\n"
                    "[template b.img]\norigin = %s\n", pa, pb);
    struct gen *a = ck_gen(&e, "a.img"), *b = ck_gen(&e, "b.img");
    pin_cls(a->t, 0, PIN_LOW);
    pin_cls(b->t, 0, PIN_HIGH);
    pin_cls(b->t, 3, PIN_BOOT);
    pin_cls(b->t, 4, PIN_BOOT);
    pin_cls(b->t, 5, PIN_BOOT);
    ck_read_blk(a, 0, 1);
    ck_read_blk(b, 0, 2);
    ck_read_blk(b, 1, 2);
    ck_read_blk(b, 2, 2);
    ck_read_blk(b, 3, 2); /* boot: b's unpinned 1 and 2 make the room */
    ck_assert(ck_cached(a, 0) && ck_cached(b, 0) && ck_cached(b, 3));
    ck_assert(!ck_cached(b, 1) && !ck_cached(b, 2));
    ck_read_blk(b, 4, 2); /* fits: 16K */
    ck_read_blk(b, 5, 2); /* boot again: a's low block, not b's high */
    ck_assert(!ck_cached(a, 0));
    ck_assert(ck_cached(b, 0) && ck_cached(b, 3) && ck_cached(b, 4) &&
              ck_cached(b, 5));
    ck_assert_uint_eq(ck_stat(&a->t->st.evicted_class[PIN_LOW]), 1);
    ck_assert_uint_le(evict_cache_used(e.c), 16 * 1024);
    /* A high fill of a may take b's high block (another template's, LRU
     * within the class), and nothing of b's boot. */
    pin_cls(a->t, 1, PIN_HIGH);
    ck_read_blk(a, 1, 1);
    ck_assert(ck_cached(a, 1));
    ck_assert(!ck_cached(b, 0));
    ck_assert(ck_cached(b, 3) && ck_cached(b, 4) && ck_cached(b, 5));
    ck_assert_uint_eq(ck_stat(&b->t->st.evicted_class[PIN_HIGH]), 1);
    cache_gen_put(a);
    cache_gen_put(b);
    ck_engine_stop(&e);
}
END_TEST

/* A fill run is split at class boundaries: one read of blocks 4 (boot),
 * 5 and 6 (unpinned) under a quota holding a low block 0 and a high
 * block 1 with room for one more block.  The boot block takes the free
 * room; the unpinned blocks may displace only unpinned ones, so they are
 * served uncached and the low and high blocks stay (a run counted whole
 * as boot would have evicted them). */
START_TEST(test_run_split_by_class)
{
    struct ck_engine e;
    char buf[3 * CK_BS];
    start_one(&e, "readahead = 0\n", 8, "quota = 16K");
    struct gen *g = ck_gen(&e, "a.img");
    pin_cls(g->t, 0, PIN_LOW);
    pin_cls(g->t, 1, PIN_HIGH);
    pin_cls(g->t, 4, PIN_BOOT);
    ck_read_blk(g, 0, 1);
    ck_read_blk(g, 1, 1);
    ck_assert_int_eq(cache_read(g, buf, 4 * CK_BS, sizeof buf, NULL),
                     (ssize_t)sizeof buf);
    ck_assert(ck_cached(g, 4));
    ck_assert(ck_cached(g, 0) && ck_cached(g, 1));
    ck_assert(!ck_cached(g, 5) && !ck_cached(g, 6));
    ck_assert_uint_eq(ck_stat(&g->t->st.evictions), 0);
    ck_assert_uint_eq(ck_stat(&g->t->st.evicted_class[PIN_LOW]), 0);
    ck_assert_uint_eq(g->reserved, 0);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* "a.img" of 8 blocks with its manifest (4K blocks: 352 bytes, a page or
 * two on disk with its validator xattr) beside it at the origin, written
 * first unless again (a restart: the same version). */
static void start_with_manifest(struct ck_engine *e, const char *global,
                                const char *extra, int again)
{
    char path[PATH_MAX], mpath[PATH_MAX + 32], err[256] = "";
    snprintf(path, sizeof path, "%s/origin/a.img", tmpdir);
    if (!again) {
        ck_origin_write("a.img", 8 * CK_BS, 1, path, sizeof path);
        snprintf(mpath, sizeof mpath, "%s" MANIFEST_SUFFIX, path);
        int fd = open(path, O_RDONLY);
        ck_assert_int_ge(fd, 0);
        ck_assert_msg(manifest_build(fd, CK_BS, 1, mpath, NULL, err,
                                     sizeof err) == 0, "manifest: %s", err);
        close(fd);
    }
    ck_engine_start(e, global, "[template a.img]\norigin = %s\n%s\n", path,
                    extra);
}

/* Disk the stored manifest of g takes (asserted there). */
static uint64_t stored_manifest(struct ck_engine *e, struct gen *g)
{
    char p[PATH_MAX];
    struct stat st;
    ck_assert_int_eq(store_manifest_path(p, sizeof p, e->cache_dir, "a.img",
                                         g->number), 0);
    ck_assert_msg(stat(p, &st) == 0, "no stored manifest %s", p);
    ck_assert_int_gt(st.st_blocks, 0);
    return (uint64_t)st.st_blocks * 512;
}

/* A stored manifest takes disk like blocks: evict_cache_used counts it,
 * so cache_max 16K does not hold four blocks beside it (without it, they
 * fit exactly: nothing would be evicted); a restart counts the stored one
 * before any read. */
START_TEST(test_manifest_cache_max)
{
    struct ck_engine e;
    start_with_manifest(&e, "readahead = 0\ncache_max = 16K\n", "", 0);
    struct gen *g = ck_gen(&e, "a.img");
    ck_read_blk(g, 0, 1);
    uint64_t mf = stored_manifest(&e, g);
    ck_assert_uint_eq(evict_cache_used(e.c), CK_BS + mf);
    for (uint64_t b = 1; b < 4; b++)
        ck_read_blk(g, b, 1);
    ck_assert(ck_cached(g, 3));
    ck_assert_uint_gt(ck_stat(&g->t->st.evictions), 0);
    uint64_t used = g->bm.present_bytes + mf;
    ck_assert_uint_eq(evict_cache_used(e.c), used);
    ck_assert_uint_le(used, 16 * 1024);
    cache_gen_put(g);
    ck_engine_stop(&e);
    start_with_manifest(&e, "readahead = 0\ncache_max = 16K\n", "", 1);
    g = ck_gen(&e, "a.img");
    ck_assert_uint_eq(stored_manifest(&e, g), mf);
    ck_assert_uint_eq(evict_cache_used(e.c), used);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* The same under a template's quota: 8K does not hold two blocks beside
 * the manifest. */
START_TEST(test_manifest_quota)
{
    struct ck_engine e;
    start_with_manifest(&e, NULL, "quota = 8K", 0);
    struct gen *g = ck_gen(&e, "a.img");
    ck_read_blk(g, 0, 1);
    ck_read_blk(g, 1, 1);
    uint64_t mf = stored_manifest(&e, g);
    ck_assert(!(ck_cached(g, 0) && ck_cached(g, 1)));
    ck_assert_uint_le(g->bm.present_bytes + mf, 8 * 1024);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

static Suite *evict_suite(void)
{
    const TTest *tests[] = {test_quota_lru,        test_pinned_not_chosen,
                            test_pins_fill_quota,  test_global_lru,
                            test_reserve_quota,    test_reserve_cache_max,
                            test_from_gen,         test_min_free,
                            test_class_tiers,      test_class_no_reverse,
                            test_class_global,     test_run_split_by_class,
                            test_manifest_cache_max, test_manifest_quota};
    return ck_suite("evict", tests, CK_NTESTS(tests), setup, teardown, 60);
}

int main(void)
{
    log_init("check_evict", 0);
    return ck_run(evict_suite());
}
