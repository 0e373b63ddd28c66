/* Unit tests for fs/engine/engine.c: start-up on a configuration
 * ([template] and [directory] sections, an origin that is missing), a
 * reload (a template added, one removed, a config that does not load),
 * and what a restart keeps (cached blocks, counters).
 *
 * The real engine on a config in the test's directory (ck-engine.h), file
 * origins; a reload reads a second config file written by the test. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fs/engine/cache-priv.h" /* white-box: the engine's fields */
#include "ic-engine.h"
#include "ic-log.h"

#include "ck-tmpdir.h"

CK_TMPDIR_FIXTURES("check_engine")

#include "ck-engine.h"

/* tmpdir/NAME for a reload: the [global] of ck_engine_start, then the
 * sections. */
static void conf_write(const struct ck_engine *e, const char *name,
                       char *path, size_t len, const char *fmt, ...)
{
    va_list ap;
    snprintf(path, len, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "[global]\ncache_dir = %s\nblock_size = 4K\nrevalidate = 1h\n"
               "readahead = 0\n", e->cache_dir);
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    ck_assert_int_eq(fclose(f), 0);
}

static size_t ntemplates(struct ck_engine *e)
{
    struct tmpl **v;
    return cache_snapshot(e->c, &v);
}

/* The origin's bytes through the engine: size and block 0. */
static void serves(struct ck_engine *e, const char *name, uint64_t size,
                   unsigned salt)
{
    struct gen *g = ck_gen(e, name);
    ck_assert_uint_eq(g->info.size, size);
    ck_read_blk(g, 0, salt);
    cache_gen_put(g);
}

/* Two [template]s and a [directory] of two files make four templates;
 * a [template] whose origin is missing, and that the index has never
 * seen, is left out (the others are served). */
START_TEST(test_open)
{
    struct ck_engine e;
    char pa[PATH_MAX], pb[PATH_MAX], pc[PATH_MAX], dir[PATH_MAX];
    ck_origin_write("a.img", 4 * CK_BS, 1, pa, sizeof pa);
    ck_origin_write("b.img", 5 * CK_BS, 2, pb, sizeof pb);
    snprintf(dir, sizeof dir, "%s/dir", tmpdir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    ck_origin_write("../dir/c.img", 6 * CK_BS, 3, pc, sizeof pc);
    ck_origin_write("../dir/d.img", 7 * CK_BS, 4, pc, sizeof pc);
    ck_engine_start(&e, NULL,
                    "[template a.img]\norigin = %s\n"
                    "[template b.img]\norigin = %s\n"
                    "[template lost.img]\norigin = %s/origin/lost.img\n"
                    "[directory d]\norigin = %s\n",
                    pa, pb, tmpdir, dir);
    ck_assert_uint_eq(ntemplates(&e), 4);
    serves(&e, "a.img", 4 * CK_BS, 1);
    serves(&e, "b.img", 5 * CK_BS, 2);
    serves(&e, "c.img", 6 * CK_BS, 3);
    serves(&e, "d.img", 7 * CK_BS, 4);
    ck_assert_ptr_null(cache_find(e.c, "lost.img"));
    ck_assert_ptr_null(cache_find(e.c, "d"));
    ck_engine_stop(&e);
}
END_TEST

/* An origin missing at start but known to the index (cached before):
 * the template is served from the cache, its generation kept, its cached
 * block read with no origin read. */
START_TEST(test_open_origin_away)
{
    struct ck_engine e;
    char pa[PATH_MAX];
    ck_origin_write("a.img", 4 * CK_BS, 1, pa, sizeof pa);
    ck_engine_start(&e, NULL, "[template a.img]\norigin = %s\n", pa);
    struct gen *g = ck_gen(&e, "a.img");
    ck_read_blk(g, 0, 1);
    uint64_t number = g->number;
    cache_gen_put(g);
    ck_engine_stop(&e);

    ck_assert_int_eq(unlink(pa), 0);
    ck_engine_start(&e, NULL, "[template a.img]\norigin = %s\n", pa);
    g = ck_gen(&e, "a.img");
    ck_assert_uint_eq(g->number, number);
    ck_assert_uint_eq(g->info.size, 4 * CK_BS);
    uint64_t reads = ck_stat(&g->t->st.origin_reads);
    ck_read_blk(g, 0, 1);
    ck_assert_uint_eq(ck_stat(&g->t->st.origin_reads), reads);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* A reload adds b.img, takes a new quota for c.img and removes a.img:
 * not found by name any more, still by inode, and a reference taken
 * before reads on.  A config that does not load is -EINVAL and changes
 * nothing: the running config and templates stay. */
START_TEST(test_reload)
{
    struct ck_engine e;
    char pa[PATH_MAX], pb[PATH_MAX], pc[PATH_MAX], path[PATH_MAX];
    ck_origin_write("a.img", 4 * CK_BS, 1, pa, sizeof pa);
    ck_origin_write("b.img", 5 * CK_BS, 2, pb, sizeof pb);
    ck_origin_write("c.img", 6 * CK_BS, 3, pc, sizeof pc);
    ck_engine_start(&e, NULL, "[template a.img]\norigin = %s\n"
                    "[template c.img]\norigin = %s\nquota = 1M\n", pa, pc);
    ck_assert_uint_eq(ntemplates(&e), 2);
    struct tmpl *a = ck_tmpl(&e, "a.img"), *cc = ck_tmpl(&e, "c.img");
    struct gen *ga = ck_gen(&e, "a.img");
    uint64_t ino = ga->ino;
    ck_assert_ptr_null(cache_find(e.c, "b.img"));

    conf_write(&e, "reload.conf", path, sizeof path,
               "[template b.img]\norigin = %s\n"
               "[template c.img]\norigin = %s\nquota = 2M\n", pb, pc);
    ck_assert_int_eq(engine_reload(e.c, path), 0);
    serves(&e, "b.img", 5 * CK_BS, 2);
    ck_assert_ptr_eq(ck_tmpl(&e, "c.img"), cc);
    ck_assert_uint_eq(cache_tmpl_quota(cc), 2 << 20);
    ck_assert_ptr_null(cache_find(e.c, "a.img"));
    ck_assert_int_eq(cache_tmpl_removed(a), 1);
    ck_assert_ptr_eq(cache_find_ino(e.c, ino), a);
    ck_read_blk(ga, 1, 1);
    ck_assert_uint_eq(ntemplates(&e), 3); /* a.img kept in memory */

    const struct conf *running = cache_conf(e.c);
    conf_write(&e, "bad.conf", path, sizeof path,
               "[template a.img]\norigin = %s\nquota = lots\n", pa);
    ck_assert_int_eq(engine_reload(e.c, path), -EINVAL);
    ck_assert_ptr_eq(cache_conf(e.c), running);
    ck_assert_ptr_null(cache_find(e.c, "a.img"));
    ck_assert_ptr_nonnull(cache_find(e.c, "b.img"));
    ck_assert_uint_eq(cache_tmpl_quota(cc), 2 << 20);

    /* Named again: back, the same template. */
    conf_write(&e, "back.conf", path, sizeof path,
               "[template a.img]\norigin = %s\n", pa);
    ck_assert_int_eq(engine_reload(e.c, path), 0);
    ck_assert_ptr_eq(cache_find(e.c, "a.img"), a);
    ck_assert_int_eq(cache_tmpl_removed(a), 0);
    ck_assert_ptr_null(cache_find(e.c, "b.img"));
    cache_gen_put(ga);
    ck_engine_stop(&e);
}
END_TEST

/* The counters are cumulative across engine_close and engine_open, and
 * go on counting from there. */
START_TEST(test_counters_persist)
{
    struct ck_engine e;
    char pa[PATH_MAX];
    ck_origin_write("a.img", 8 * CK_BS, 1, pa, sizeof pa);
    ck_engine_start(&e, NULL, "[template a.img]\norigin = %s\n", pa);
    struct gen *g = ck_gen(&e, "a.img");
    for (uint64_t b = 0; b < 3; b++)
        ck_read_blk(g, b, 1);
    ck_read_blk(g, 0, 1);
    ck_read_blk(g, 1, 1);
    char buf[CK_BS];
    ck_assert_int_eq(cache_read(g, buf, 8 * CK_BS, CK_BS, NULL), 0);
    struct tmpl_stats before, after;
    cache_tmpl_stats(g->t, &before);
    ck_assert_uint_eq(before.hits, 2);
    ck_assert_uint_eq(before.misses, 3);
    cache_gen_put(g);
    ck_engine_stop(&e);

    ck_engine_start(&e, NULL, "[template a.img]\norigin = %s\n", pa);
    struct tmpl *t = ck_tmpl(&e, "a.img");
    cache_tmpl_stats(t, &after);
    ck_assert_mem_eq(&after, &before, sizeof before);
    g = ck_gen(&e, "a.img");
    ck_read_blk(g, 2, 1);
    ck_read_blk(g, 3, 1);
    cache_gen_put(g);
    cache_tmpl_stats(t, &after);
    ck_assert_uint_eq(after.hits, before.hits + 1);
    ck_assert_uint_eq(after.misses, before.misses + 1);
    ck_assert_uint_eq(after.origin_bytes, before.origin_bytes + CK_BS);
    ck_engine_stop(&e);
}
END_TEST

static Suite *engine_suite(void)
{
    const TTest *tests[] = {test_open, test_open_origin_away, test_reload,
                            test_counters_persist};
    return ck_suite("engine", tests, CK_NTESTS(tests), setup, teardown, 60);
}

int main(void)
{
    log_init("check_engine", 0);
    return ck_run(engine_suite());
}
