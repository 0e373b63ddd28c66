/* Unit tests for fs/engine/cache.c: templates and their generations.
 * Inode numbers, opens of the current and of a superseded inode (ESTALE)
 * and the one retry an ESTALE earns, a new generation when the origin
 * changes (the old one readable through its references, its data file
 * gone with the last one), rechecks after a read saw a "changed" answer,
 * a withdrawn (404) HTTP template, and the accessors.
 *
 * The real engine on a config in the test's directory (ck-engine.h).  A
 * file origin is checked at every open (revalidate 0 for files), so a
 * change is made by renaming another file over it (another inode and
 * size).  Origin checks are counted with the template's check_seq (one
 * per question to the origin), and for HTTP with ck-httpd's HEADs. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fs/engine/cache-priv.h" /* white-box: the engine's fields */
#include "ic-engine.h"
#include "ic-log.h"
#include "ic-store.h"
#include "ic-util.h"

#include "ck-tmpdir.h"

CK_TMPDIR_FIXTURES("check_cache")

#include "ck-engine.h"
#include "ck-httpd.h"

static void start_file(struct ck_engine *e, uint64_t size)
{
    char path[PATH_MAX];
    ck_origin_write("a.img", size, 1, path, sizeof path);
    ck_engine_start(e, NULL, "[template a.img]\norigin = %s\n", path);
}

/* Replace the origin a.img by a file of `size` bytes of `salt`: another
 * inode and size, so any validator sees the change. */
static void origin_replace(uint64_t size, unsigned salt)
{
    char tmp[PATH_MAX], dst[PATH_MAX];
    ck_origin_write("a.img.new", size, salt, tmp, sizeof tmp);
    snprintf(dst, sizeof dst, "%s/origin/a.img", tmpdir);
    ck_assert_int_eq(rename(tmp, dst), 0);
}

static uint64_t checks(struct tmpl *t)
{
    pthread_mutex_lock(&t->lock);
    uint64_t n = t->check_seq;
    pthread_mutex_unlock(&t->lock);
    return n;
}

static int data_file_exists(struct ck_engine *e, uint64_t number)
{
    char p[PATH_MAX];
    ck_assert_int_eq(store_path(p, sizeof p, e->cache_dir, "a.img", number),
                     0);
    return access(p, F_OK) == 0;
}

/* The template's row id above, the generation's low 32 bits below; never
 * 1 (the root), since row ids start at 1.  A template's generations have
 * distinct inodes, each its own, and a lookup names the current one. */
START_TEST(test_ino)
{
    ck_assert_uint_eq(cache_gen_ino(5, 7), (5ull << 32) | 7);
    ck_assert_uint_eq(cache_gen_ino(2, 0x100000003ull), (2ull << 32) | 3);
    ck_assert_uint_ne(cache_gen_ino(1, 1), 1);
    ck_assert_uint_ne(cache_gen_ino(1, 0x100000001ull), 1);

    struct ck_engine e;
    start_file(&e, 4 * CK_BS);
    struct tmpl *t = ck_tmpl(&e, "a.img");
    struct gen *g1 = ck_gen(&e, "a.img");
    ck_assert_int_ge(t->tid, 1);
    ck_assert_uint_eq(g1->ino, cache_gen_ino(t->tid, g1->number));
    ck_assert_uint_eq(cache_tmpl_ino(t), g1->ino);
    ck_assert_ptr_eq(cache_find_ino(e.c, g1->ino), t);
    origin_replace(5 * CK_BS, 2);
    struct gen *g2 = ck_gen(&e, "a.img");
    ck_assert_uint_eq(g2->number, g1->number + 1);
    ck_assert_uint_eq(g2->ino, cache_gen_ino(t->tid, g2->number));
    ck_assert_uint_ne(g2->ino, g1->ino);
    ck_assert_uint_eq(cache_tmpl_ino(t), g2->ino);
    ck_assert_ptr_eq(cache_find_ino(e.c, g1->ino), t); /* either gen */
    ck_assert_ptr_null(cache_find_ino(e.c, cache_gen_ino(t->tid + 1, 1)));
    cache_gen_put(g1);
    cache_gen_put(g2);
    ck_engine_stop(&e);
}
END_TEST

/* An open naming the current inode gets a reference to it; one naming a
 * superseded inode is -ESTALE without asking the origin, and lets exactly
 * one open of the then current inode through without a check: the origin
 * changes again before that retry, and the retry still opens the inode
 * the ESTALE pointed at (no check: check_seq unchanged); the open after it
 * asks again, finds the change and is -ESTALE in its turn. */
START_TEST(test_open_estale_retry)
{
    struct ck_engine e;
    struct gen *g;
    start_file(&e, 4 * CK_BS);
    struct tmpl *t = ck_tmpl(&e, "a.img");
    uint64_t ino1 = cache_tmpl_ino(t);
    uint64_t n0 = checks(t);
    ck_assert_int_eq(cache_gen_open(t, ino1, &g), 0);
    ck_assert_uint_eq(g->ino, ino1);
    ck_assert_uint_eq(checks(t), n0 + 1); /* revalidate 0: every open */
    cache_gen_put(g);

    origin_replace(5 * CK_BS, 2);
    g = ck_gen(&e, "a.img"); /* ino 0: a lookup's open, sees the change */
    uint64_t ino2 = g->ino;
    ck_assert_uint_ne(ino2, ino1);
    cache_gen_put(g);

    uint64_t n1 = checks(t);
    g = NULL;
    ck_assert_int_eq(cache_gen_open(t, ino1, &g), -ESTALE);
    ck_assert_ptr_null(g);
    ck_assert_uint_eq(checks(t), n1);

    origin_replace(6 * CK_BS, 3);
    ck_assert_int_eq(cache_gen_open(t, ino2, &g), 0); /* the retry */
    ck_assert_uint_eq(g->ino, ino2);
    ck_assert_uint_eq(g->info.size, 5 * CK_BS);
    ck_assert_uint_eq(checks(t), n1);
    cache_gen_put(g);

    g = NULL;
    ck_assert_int_eq(cache_gen_open(t, ino2, &g), -ESTALE); /* single use */
    ck_assert_ptr_null(g);
    ck_assert_uint_eq(checks(t), n1 + 1);
    ck_assert_uint_ne(cache_tmpl_ino(t), ino2);
    ck_engine_stop(&e);
}
END_TEST

/* A changed origin seen at an open starts generation N+1.  A reference
 * to generation N still reads it: its cached block with the old bytes,
 * and no new bytes ever (a missing block is -EIO: it cannot fill).  Its
 * inode finds it while referenced; the last reference unlinks its data
 * file and the inode finds nothing after. */
START_TEST(test_new_generation)
{
    struct ck_engine e;
    start_file(&e, 4 * CK_BS);
    struct gen *old = ck_gen(&e, "a.img");
    ck_read_blk(old, 0, 1);
    uint64_t n = old->number, ino = old->ino;
    ck_assert(data_file_exists(&e, n));

    origin_replace(6 * CK_BS, 2);
    struct gen *g = ck_gen(&e, "a.img");
    ck_assert_uint_eq(g->number, n + 1);
    ck_assert_uint_eq(g->info.size, 6 * CK_BS);
    ck_assert(old->stale);
    ck_assert(data_file_exists(&e, n + 1));
    ck_read_blk(g, 1, 2);

    ck_assert_int_eq(ck_read_salt(old, 0, CK_BS, 1), CK_BS);
    char buf[CK_BS];
    ck_assert_int_eq(cache_read(old, buf, CK_BS, CK_BS, NULL), -EIO);
    ck_assert(!ck_cached(old, 1));
    ck_assert_uint_eq(old->info.size, 4 * CK_BS);

    struct gen *again = cache_gen_get_ino(e.c, ino);
    ck_assert_ptr_eq(again, old);
    cache_gen_put(again);
    ck_assert(data_file_exists(&e, n));
    cache_gen_put(old); /* the last handle's: the template keeps it for
                           delta fills, but its inode is gone */
    ck_assert_ptr_null(cache_gen_get_ino(e.c, ino));
    ck_assert(data_file_exists(&e, n));
    ck_assert_uint_gt(cache_drop_prev(cache_gen_tmpl(g)), 0);
    ck_assert(!data_file_exists(&e, n));
    ck_assert(data_file_exists(&e, n + 1));

    struct gen *cur = cache_gen_get_ino(e.c, g->ino);
    ck_assert_ptr_eq(cur, g);
    cache_gen_put(cur);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* A recheck of an unchanged origin is 0 and asks once; a burst of them
 * within RECHECK_MIN_MS asks no more; the window ends (polled, 5 s at
 * most) and the next one asks again. */
START_TEST(test_recheck_same)
{
    struct ck_engine e;
    start_file(&e, 4 * CK_BS);
    struct gen *g = ck_gen(&e, "a.img");
    struct tmpl *t = g->t;
    uint64_t n0 = checks(t);
    ck_assert_int_eq(cache_gen_recheck(g, mono_ms() + 5000), 0);
    ck_assert_uint_eq(checks(t), n0 + 1);
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(cache_gen_recheck(g, mono_ms() + 5000), 0);
    ck_assert_uint_eq(checks(t), n0 + 1);
    ck_assert(!g->stale);
    ck_assert_ptr_eq(t->cur, g);
    uint64_t until = mono_ms() + 5000;
    while (checks(t) == n0 + 1 && mono_ms() < until) {
        ck_assert_int_eq(cache_gen_recheck(g, mono_ms() + 5000), 0);
        usleep(20000);
    }
    ck_assert_uint_eq(checks(t), n0 + 2);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* A recheck that finds the origin changed is -ESTALE, and the template
 * has moved to a new generation; a later recheck of the old one is
 * -ESTALE at once, without asking. */
START_TEST(test_recheck_changed)
{
    struct ck_engine e;
    start_file(&e, 4 * CK_BS);
    struct gen *g = ck_gen(&e, "a.img");
    struct tmpl *t = g->t;
    origin_replace(4 * CK_BS, 2); /* same size, another inode */
    uint64_t n0 = checks(t);
    ck_assert_int_eq(cache_gen_recheck(g, mono_ms() + 5000), -ESTALE);
    ck_assert_uint_eq(checks(t), n0 + 1);
    ck_assert(g->stale);
    struct gen *cur = cache_cur_gen(t);
    ck_assert_uint_eq(cur->number, g->number + 1);
    ck_read_blk(cur, 0, 2);
    cache_gen_put(cur);
    ck_assert_int_eq(cache_gen_recheck(g, mono_ms() + 5000), -ESTALE);
    ck_assert_uint_eq(checks(t), n0 + 1);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* An HTTP template withdrawn by its server (404): a recheck is -ENOENT
 * and the template is hidden.  Two templates on the same URL: a.img with
 * revalidate 1h stays hidden without asking again after the server has
 * it back; b.img with revalidate 0 asks at each look and is visible as
 * soon as the server has it back. */
START_TEST(test_http_gone)
{
    struct ck_httpd h;
    struct ck_engine e;
    ck_httpd_start(&h, 4 * CK_BS, 1);
    ck_engine_start(&e, NULL, "[template a.img]\n"
                    "origin = http://127.0.0.1:%d/a.img\n"
                    "[template b.img]\n"
                    "origin = http://127.0.0.1:%d/a.img\nrevalidate = 0\n",
                    h.port, h.port);
    struct tmpl *a = ck_tmpl(&e, "a.img"), *b = ck_tmpl(&e, "b.img");
    struct gen *g = ck_gen(&e, "a.img");
    ck_assert_int_eq(cache_tmpl_visible(a), 1);
    ck_assert_int_eq(cache_tmpl_visible(b), 1);

    pthread_mutex_lock(&h.lock);
    h.gone = 1;
    pthread_mutex_unlock(&h.lock);
    int heads = ck_httpd_count(&h, &h.heads);
    ck_assert_int_eq(cache_gen_recheck(g, mono_ms() + 5000), -ENOENT);
    ck_assert_int_eq(ck_httpd_count(&h, &h.heads), heads + 1);
    ck_assert_int_eq(cache_tmpl_visible(a), 0);
    ck_assert_int_eq(cache_tmpl_visible(b), 1); /* not asked yet: gone 0 */
    struct gen *gb = ck_gen(&e, "b.img"); /* its open asks: the 404 */
    cache_gen_put(gb);
    ck_assert_int_eq(cache_tmpl_visible(b), 0);
    ck_assert_int_eq(ck_httpd_count(&h, &h.heads), heads + 3);

    pthread_mutex_lock(&h.lock);
    h.gone = 0;
    pthread_mutex_unlock(&h.lock);
    ck_assert_int_eq(cache_tmpl_visible(a), 0); /* not due for 1h */
    ck_assert_int_eq(ck_httpd_count(&h, &h.heads), heads + 3);
    ck_assert_int_eq(cache_tmpl_visible(b), 1);
    ck_assert_int_eq(ck_httpd_count(&h, &h.heads), heads + 4);
    cache_gen_put(g);
    ck_engine_stop(&e);
    ck_httpd_stop(&h);
}
END_TEST

/* The accessors say what the engine holds: the generation's inode,
 * number, the origin's size and mtime, the block size and the bytes
 * cached now (a short last block counted by its length); the template's
 * name, quota, and a copy of its counters. */
START_TEST(test_accessors)
{
    struct ck_engine e;
    char path[PATH_MAX];
    const uint64_t size = 3 * CK_BS + 100;
    ck_origin_write("a.img", size, 1, path, sizeof path);
    ck_engine_start(&e, NULL, "[template a.img]\norigin = %s\nquota = 1M\n",
                    path);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    struct gen *g = ck_gen(&e, "a.img");
    struct tmpl *t = g->t;
    ck_assert_ptr_eq(cache_gen_tmpl(g), t);
    ck_assert_str_eq(cache_tmpl_name(t), "a.img");
    ck_assert_uint_eq(cache_tmpl_quota(t), 1 << 20);
    ck_assert_int_eq(cache_tmpl_removed(t), 0);
    ck_assert_ptr_nonnull(cache_tmpl_origin(t));

    ck_read_blk(g, 0, 1);
    ck_read_blk(g, 3, 1);
    ck_read_blk(g, 0, 1);
    struct cache_gen_attr a;
    cache_gen_attr(g, &a);
    ck_assert_uint_eq(a.ino, g->ino);
    ck_assert_uint_eq(a.number, g->number);
    ck_assert_uint_eq(a.size, size);
    ck_assert_int_eq(a.mtime_ns, (int64_t)st.st_mtim.tv_sec * 1000000000 +
                                     st.st_mtim.tv_nsec);
    ck_assert_uint_eq(a.bs, CK_BS);
    ck_assert_uint_eq(cache_gen_cached_bytes(g), CK_BS + 100);
    uint64_t tsize;
    int64_t tmtime;
    cache_tmpl_attr(t, &tsize, &tmtime);
    ck_assert_uint_eq(tsize, size);
    ck_assert_int_eq(tmtime, a.mtime_ns);

    struct tmpl_stats s;
    cache_tmpl_stats(t, &s);
    ck_assert_uint_eq(s.hits, 1);
    ck_assert_uint_eq(s.misses, 2);
    ck_assert_uint_eq(s.origin_reads, 2);
    ck_assert_uint_eq(s.origin_bytes, CK_BS + 100);
    ck_assert_uint_eq(s.fill_errors, 0);
    ck_assert_uint_eq(s.evictions, 0);
    ck_assert_uint_eq(s.evicted_bytes, 0);
    ck_assert_uint_eq(s.uncached, 0);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

static Suite *cache_suite(void)
{
    const TTest *tests[] = {test_ino,           test_open_estale_retry,
                            test_new_generation, test_recheck_same,
                            test_recheck_changed, test_http_gone,
                            test_accessors};
    return ck_suite("cache", tests, CK_NTESTS(tests), setup, teardown, 60);
}

int main(void)
{
    log_init("check_cache", 0);
    ck_httpd_no_proxy();
    return ck_run(cache_suite());
}
