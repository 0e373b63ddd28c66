/* Unit tests for fs/engine/read.c, the read path behind cache_read(): hits and
 * misses, single-flight fills, checksums of cached blocks, the end of the
 * file, and an origin that goes away.
 *
 * The real engine on a config in the test's directory (ck-engine.h); the
 * origin is a file, or, where a fill must be seen in flight, the tiny HTTP
 * server of ck-httpd.h, which holds its answers until told. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../fs/engine/cache-priv.h" /* white-box: the engine's fields */
#include "ic-engine.h"
#include "ic-log.h"
#include "ic-store.h"

#include "ck-tmpdir.h"

CK_TMPDIR_FIXTURES("check_read")

#include "ck-engine.h"
#include "ck-httpd.h"

static void start_file(struct ck_engine *e, uint64_t size, const char *extra)
{
    char path[PATH_MAX];
    ck_origin_write("a.img", size, 1, path, sizeof path);
    ck_engine_start(e, NULL, "[template a.img]\norigin = %s\n%s\n", path,
                    extra);
}

/* A miss fetches, a second read of the same block is a hit with no origin
 * read; adjacent missing blocks of one read are one origin read. */
START_TEST(test_hit_miss)
{
    struct ck_engine e;
    start_file(&e, 8 * CK_BS, "");
    struct gen *g = ck_gen(&e, "a.img");
    struct tmpl_stats *st = &g->t->st;
    ck_read_blk(g, 0, 1);
    ck_assert_uint_eq(ck_stat(&st->misses), 1);
    ck_assert_uint_eq(ck_stat(&st->hits), 0);
    ck_assert_uint_eq(ck_stat(&st->origin_reads), 1);
    ck_assert_uint_eq(ck_stat(&st->origin_bytes), CK_BS);
    ck_read_blk(g, 0, 1);
    ck_assert_uint_eq(ck_stat(&st->hits), 1);
    ck_assert_uint_eq(ck_stat(&st->origin_reads), 1);
    /* Blocks 1..3 in one read (it starts and ends inside a block). */
    ck_assert_int_eq(ck_read_salt(g, CK_BS + 100, 3 * CK_BS - 200, 1),
                     3 * CK_BS - 200);
    ck_assert_uint_eq(ck_stat(&st->origin_reads), 2);
    ck_assert_uint_eq(ck_stat(&st->misses), 4);
    /* 0..3 present, 4 missing: the hits and one more origin read. */
    ck_assert_int_eq(ck_read_salt(g, 0, 5 * CK_BS, 1), 5 * CK_BS);
    ck_assert_uint_eq(ck_stat(&st->hits), 5);
    ck_assert_uint_eq(ck_stat(&st->origin_reads), 3);
    for (uint64_t b = 0; b < 5; b++)
        ck_assert(ck_cached(g, b));
    ck_assert(!ck_cached(g, 5));
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

struct reader {
    struct gen *g;
    uint64_t off, len;
    ssize_t r;
};

static void *reader_main(void *arg)
{
    struct reader *rd = arg;
    rd->r = ck_read_salt(rd->g, rd->off, rd->len, 1);
    return NULL;
}

/* Single-flight: while reader 1's fill of block 0 is held at the origin,
 * reader 2 asks for blocks 0 and 1.  It must fetch only block 1 (its GET
 * names bytes 4096-8191) and wait for reader 1's block 0: two GETs in
 * all, and two origin reads.  A read path that fetched every block not
 * yet present would send bytes=0-8191. */
START_TEST(test_single_flight)
{
    struct ck_httpd h;
    struct ck_engine e;
    ck_httpd_start(&h, 8 * CK_BS, 1);
    ck_engine_start(&e, NULL, "[template a.img]\n"
                    "origin = http://127.0.0.1:%d/a.img\n", h.port);
    struct gen *g = ck_gen(&e, "a.img");
    pthread_mutex_lock(&h.lock);
    h.hold = 1;
    pthread_mutex_unlock(&h.lock);
    struct reader r1 = {.g = g, .off = 0, .len = CK_BS};
    struct reader r2 = {.g = g, .off = 0, .len = 2 * CK_BS};
    pthread_t t1, t2;
    ck_assert_int_eq(pthread_create(&t1, NULL, reader_main, &r1), 0);
    ck_assert_int_eq(ck_httpd_wait_gets(&h, 1), 1);
    ck_assert_int_eq(ck_state(g, 0), BLK_FILLING);
    ck_assert_int_eq(pthread_create(&t2, NULL, reader_main, &r2), 0);
    ck_assert_int_eq(ck_httpd_wait_gets(&h, 2), 2);
    ck_httpd_release(&h);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    ck_assert_int_eq(r1.r, CK_BS);
    ck_assert_int_eq(r2.r, 2 * CK_BS);
    ck_assert_int_eq(ck_httpd_count(&h, &h.gets), 2);
    ck_assert_str_eq(h.ranges[0], "bytes=0-4095");
    ck_assert_str_eq(h.ranges[1], "bytes=4096-8191");
    ck_assert_uint_eq(ck_stat(&g->t->st.origin_reads), 2);
    ck_assert_uint_eq(ck_stat(&g->t->st.misses), 2);
    ck_assert(ck_cached(g, 0) && ck_cached(g, 1));
    cache_gen_put(g);
    ck_engine_stop(&e);
    ck_httpd_stop(&h);
}
END_TEST

/* Blocks loaded from the index at start are checked before they are
 * served: a byte changed in block 0 of the data file while the engine was
 * down makes the read fetch block 0 again (the origin's bytes are served,
 * and stored again); block 1, intact, is a hit. */
START_TEST(test_checksum_refetch)
{
    struct ck_engine e;
    char data[PATH_MAX];
    start_file(&e, 4 * CK_BS, "");
    struct gen *g = ck_gen(&e, "a.img");
    ck_read_blk(g, 0, 1);
    ck_read_blk(g, 1, 1);
    ck_assert_int_eq(store_path(data, sizeof data, e.cache_dir, "a.img",
                                g->number), 0);
    cache_gen_put(g);
    ck_engine_stop(&e);

    int fd = open(data, O_RDWR);
    ck_assert_int_ge(fd, 0);
    char c;
    ck_assert_int_eq(pread(fd, &c, 1, 100), 1);
    c ^= 0x40;
    ck_assert_int_eq(pwrite(fd, &c, 1, 100), 1);
    close(fd);

    ck_engine_start(&e, NULL, "[template a.img]\norigin = %s/origin/a.img\n",
                    tmpdir);
    g = ck_gen(&e, "a.img");
    ck_assert(ck_cached(g, 0) && ck_cached(g, 1)); /* not yet looked at */
    uint64_t reads0 = ck_stat(&g->t->st.origin_reads);
    uint64_t hits0 = ck_stat(&g->t->st.hits);
    ck_read_blk(g, 0, 1);
    ck_assert_uint_eq(ck_stat(&g->t->st.origin_reads), reads0 + 1);
    ck_read_blk(g, 1, 1);
    ck_assert_uint_eq(ck_stat(&g->t->st.origin_reads), reads0 + 1);
    ck_assert_uint_eq(ck_stat(&g->t->st.hits), hits0 + 1);
    ck_assert(ck_cached(g, 0));
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* A file of 3 blocks and 100 bytes: reads are cut at the end, a read at
 * or past it returns 0, and the short last block is stored with its
 * length (a second read of it is a hit with the same bytes). */
START_TEST(test_eof)
{
    struct ck_engine e;
    const uint64_t size = 3 * CK_BS + 100;
    start_file(&e, size, "");
    struct gen *g = ck_gen(&e, "a.img");
    ck_assert_uint_eq(g->info.size, size);
    ck_assert_int_eq(ck_read_salt(g, size - 388, 8192, 1), 388);
    ck_assert_int_eq(ck_read_salt(g, 2 * CK_BS, 10000, 1), CK_BS + 100);
    ck_assert_int_eq(ck_read_salt(g, size, 4096, 1), 0);
    ck_assert_int_eq(ck_read_salt(g, size + 5000, 4096, 1), 0);
    ck_assert_int_eq(ck_read_salt(g, size - 1, 1, 1), 1);
    ck_assert(ck_cached(g, 3));
    uint64_t reads = ck_stat(&g->t->st.origin_reads);
    ck_assert_int_eq(ck_read_salt(g, 3 * CK_BS, CK_BS, 1), 100);
    ck_assert_uint_eq(ck_stat(&g->t->st.origin_reads), reads);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* An origin file that vanishes: a missing block fails with -EIO, well
 * within origin_timeout (no wait for a file that is not there), again on
 * the next read (which asks the origin again: it may be back), the block
 * stays missing, and cached blocks are still served. */
START_TEST(test_origin_gone)
{
    struct ck_engine e;
    char path[PATH_MAX];
    start_file(&e, 4 * CK_BS, "origin_timeout = 3s");
    struct gen *g = ck_gen(&e, "a.img");
    ck_read_blk(g, 0, 1);
    snprintf(path, sizeof path, "%s/origin/a.img", tmpdir);
    ck_assert_int_eq(unlink(path), 0);
    char buf[CK_BS];
    uint64_t t0 = mono_ms();
    ck_assert_int_eq(cache_read(g, buf, CK_BS, CK_BS, NULL), -EIO);
    uint64_t took = mono_ms() - t0;
    ck_assert_msg(took < 2000, "a failed read took %llu ms",
                  (unsigned long long)took);
    ck_assert_uint_ge(ck_stat(&g->t->st.fill_errors), 1);
    uint64_t errors = ck_stat(&g->t->st.fill_errors);
    ck_assert_int_eq(cache_read(g, buf, CK_BS, CK_BS, NULL), -EIO);
    ck_assert_uint_eq(ck_stat(&g->t->st.fill_errors), errors + 1);
    ck_assert(!ck_cached(g, 1));
    ck_assert_int_eq(ck_state(g, 1), BLK_MISSING);
    ck_read_blk(g, 0, 1);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

static Suite *read_suite(void)
{
    const TTest *tests[] = {test_hit_miss, test_single_flight,
                            test_checksum_refetch, test_eof,
                            test_origin_gone};
    return ck_suite("read", tests, CK_NTESTS(tests), setup, teardown, 60);
}

int main(void)
{
    log_init("check_read", 0);
    ck_httpd_no_proxy();
    return ck_run(read_suite());
}
