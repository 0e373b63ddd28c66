/* Unit tests for fs/index/index.c (the SQLite index).
 *
 * Each test runs in its own mkdtemp directory under /tmp, removed afterwards
 * (also when an assertion fails).
 * sqlite3.h is used here only to build fixtures (foreign databases,
 * triggers) and to look at what index.c wrote; the product code keeps it
 * confined to fs/index/index.c. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ic-index.h"
#include "ic-log.h"

#include "ck-tmpdir.h"

/* ------------------------------------------------------------ fixtures */

CK_TMPDIR_FIXTURES("check_index")

/* Path of a file in the test directory (rotating static buffers). */
static const char *tpath(const char *name)
{
    static char buf[4][PATH_MAX];
    static int n;
    char *p = buf[n++ % 4];

    snprintf(p, PATH_MAX, "%s/%s", tmpdir, name);
    return p;
}

static struct index *open_ok(void)
{
    struct index *ix = NULL;

    ck_assert_int_eq(index_open(tmpdir, &ix), 0);
    ck_assert_ptr_nonnull(ix);
    return ix;
}

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void write_file(const char *p, const void *buf, size_t len)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
    close(fd);
}

/* Run SQL on a database file directly, bypassing index.c. */
static void sql_exec(const char *db_path, const char *sql)
{
    sqlite3 *db = NULL;

    ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, err ? err : "?");
    sqlite3_close(db);
}

/* First column of the first row as text, "" if no row. */
static void sql_text(const char *db_path, const char *sql, char *out,
                     size_t len)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    ck_assert_int_eq(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK,
                  "%s: %s", sql, sqlite3_errmsg(db));
    out[0] = '\0';
    int rc = sqlite3_step(st);
    ck_assert(rc == SQLITE_ROW || rc == SQLITE_DONE);
    if (rc == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, len, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static long long sql_int(const char *db_path, const char *sql)
{
    char buf[64];

    sql_text(db_path, sql, buf, sizeof buf);
    return atoll(buf);
}

/* Collects loaded records. */
struct collect {
    struct index_rec *recs;
    size_t n, cap;
    size_t stop_after; /* 0: never stop */
};

static int collect_cb(void *ctx, const struct index_rec *rec)
{
    struct collect *c = ctx;

    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->recs = realloc(c->recs, c->cap * sizeof *c->recs);
        ck_assert_ptr_nonnull(c->recs);
    }
    c->recs[c->n++] = *rec;
    if (c->stop_after && c->n == c->stop_after)
        return 42;
    return 0;
}

static size_t count_blocks(struct index *ix, int64_t tid, uint64_t gen)
{
    struct collect c = {0};

    ck_assert_int_eq(index_blocks_load(ix, tid, gen, collect_cb, &c), 0);
    free(c.recs);
    return c.n;
}

static struct index_rec add_rec(int64_t tid, uint64_t gen, uint64_t blk)
{
    return (struct index_rec){.op = INDEX_ADD, .tid = tid, .gen = gen,
                              .blk = blk,
                              .csum = blk * 0x9E3779B97F4A7C15ULL,
                              .atime = 1000 + blk, .flags = blk % 4};
}

/* n ADDs for blocks 0..n-1 of (tid, gen). */
static void apply_adds(struct index *ix, int64_t tid, uint64_t gen, size_t n)
{
    struct index_rec *r = calloc(n, sizeof *r);

    ck_assert_ptr_nonnull(r);
    for (size_t i = 0; i < n; i++)
        r[i] = add_rec(tid, gen, i);
    ck_assert_int_eq(index_apply(ix, r, n), 0);
    free(r);
}

static struct index_tmpl sample_tmpl(const char *name)
{
    struct index_tmpl t = {0};

    snprintf(t.name, sizeof t.name, "%s", name);
    snprintf(t.origin, sizeof t.origin, "https://mirror.example/%s.qcow2",
             name);
    t.size = 10ULL << 30;
    t.mtime_ns = 1700000000123456789LL;
    snprintf(t.validator, sizeof t.validator, "\"etag-%s\"", name);
    t.generation = 3;
    t.block_size = 65536;
    t.quota = UINT64_MAX - 5;
    return t;
}

/* Asserts index_open moved the file aside and returns the new path. */
static const char *assert_moved_aside(struct index *ix)
{
    const char *bad = index_moved_aside(ix);
    char prefix[PATH_MAX];

    ck_assert_ptr_nonnull(bad);
    snprintf(prefix, sizeof prefix, "%s.bad-", tpath(INDEX_FILE));
    ck_assert_msg(strncmp(bad, prefix, strlen(prefix)) == 0, "bad path %s",
                  bad);
    ck_assert(file_exists(bad));
    return bad;
}

/* A freshly created index: no templates, usable. */
static void assert_fresh_and_usable(struct index *ix)
{
    struct index_tmpl t = sample_tmpl("after");

    ck_assert_int_eq(count_blocks(ix, 1, 1), 0);
    ck_assert_int_eq(index_tmpl_put(ix, &t), 0);
    ck_assert_int_eq(t.id, 1);
    ck_assert_int_eq(sql_int(tpath(INDEX_FILE),
                             "SELECT value FROM meta "
                             "WHERE key = 'schema_version'"),
                     INDEX_SCHEMA_VERSION);
}

/* ------------------------------------------------------------ open */

START_TEST(open_creates_schema)
{
    struct index *ix = open_ok();
    char buf[64];

    ck_assert_ptr_null(index_moved_aside(ix));
    ck_assert(file_exists(tpath(INDEX_FILE)));
    const char *db = tpath(INDEX_FILE);
    ck_assert_int_eq(sql_int(db, "SELECT value FROM meta "
                                 "WHERE key = 'schema_version'"),
                     INDEX_SCHEMA_VERSION);
    sql_text(db, "PRAGMA journal_mode", buf, sizeof buf);
    ck_assert_str_eq(buf, "wal");
    ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM sqlite_master WHERE "
                                 "type = 'table' AND name IN ('meta', "
                                 "'templates', 'blocks', 'pins', 'events')"),
                     5);
    ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM "
                                 "pragma_index_list('events') AS l, "
                                 "pragma_index_info(l.name) AS i "
                                 "WHERE i.name = 'ts'"),
                     1);
    ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM "
                                 "pragma_index_list('pins') AS l, "
                                 "pragma_index_info(l.name) AS i "
                                 "WHERE i.name = 'tid'"),
                     1);
    index_close(ix);
}
END_TEST

START_TEST(open_missing_dir_fails)
{
    struct index *ix = NULL;
    char dir[PATH_MAX];

    snprintf(dir, sizeof dir, "%s/nonexistent", tmpdir);
    ck_assert_int_eq(index_open(dir, &ix), -ENOENT);
    ck_assert_ptr_null(ix);
}
END_TEST

START_TEST(reopen_persists)
{
    struct index *ix = open_ok();
    struct index_tmpl t = sample_tmpl("deb12"), got;

    ck_assert_int_eq(index_tmpl_put(ix, &t), 0);
    apply_adds(ix, t.id, 3, 500);
    ck_assert_int_eq(index_event(ix, t.id, "fill", 500, 500 * 65536, NULL),
                     0);
    index_close(ix);

    ix = open_ok();
    ck_assert_ptr_null(index_moved_aside(ix));
    ck_assert_int_eq(index_tmpl_get(ix, "deb12", &got), 0);
    ck_assert_int_eq(got.id, t.id);
    ck_assert_int_eq(count_blocks(ix, t.id, 3), 500);
    index_close(ix);
    ck_assert_int_eq(sql_int(tpath(INDEX_FILE), "SELECT count(*) FROM events"),
                     1);
}
END_TEST

/* ------------------------------------------------------------ templates */

START_TEST(tmpl_roundtrip_and_update)
{
    struct index *ix = open_ok();
    struct index_tmpl t = sample_tmpl("debian-12"), got;

    t.id = 999; /* ignored: assigned by put */
    ck_assert_int_eq(index_tmpl_put(ix, &t), 0);
    ck_assert_int_gt(t.id, 0);
    int64_t id = t.id;

    memset(&got, 0xa5, sizeof got);
    ck_assert_int_eq(index_tmpl_get(ix, "debian-12", &got), 0);
    ck_assert_int_eq(got.id, id);
    ck_assert_str_eq(got.name, t.name);
    ck_assert_str_eq(got.origin, t.origin);
    ck_assert_uint_eq(got.size, t.size);
    ck_assert_int_eq(got.mtime_ns, t.mtime_ns);
    ck_assert_str_eq(got.validator, t.validator);
    ck_assert_uint_eq(got.generation, t.generation);
    ck_assert_uint_eq(got.block_size, t.block_size);
    ck_assert_uint_eq(got.quota, t.quota); /* > INT64_MAX */

    /* Update keeps the id. */
    t.generation = 4;
    t.size = 12345;
    snprintf(t.validator, sizeof t.validator, "W/\"new\"");
    t.id = 0;
    ck_assert_int_eq(index_tmpl_put(ix, &t), 0);
    ck_assert_int_eq(t.id, id);
    ck_assert_int_eq(index_tmpl_get(ix, "debian-12", &got), 0);
    ck_assert_int_eq(got.id, id);
    ck_assert_uint_eq(got.generation, 4);
    ck_assert_uint_eq(got.size, 12345);
    ck_assert_str_eq(got.validator, "W/\"new\"");

    /* A second template gets its own id. */
    struct index_tmpl u = sample_tmpl("ubuntu-24.04");
    ck_assert_int_eq(index_tmpl_put(ix, &u), 0);
    ck_assert_int_ne(u.id, id);
    ck_assert_int_eq(sql_int(tpath(INDEX_FILE),
                             "SELECT count(*) FROM templates"),
                     2);
    index_close(ix);
}
END_TEST

START_TEST(tmpl_long_strings_truncated)
{
    struct index *ix = open_ok();
    struct index_tmpl t = sample_tmpl("x"), got;

    /* Fill the arrays completely, without a terminator: index.c must
     * bound its reads and terminate on the way back. */
    memset(t.origin, 'o', sizeof t.origin);
    memset(t.validator, 'v', sizeof t.validator);
    ck_assert_int_eq(index_tmpl_put(ix, &t), 0);
    ck_assert_int_eq(index_tmpl_get(ix, "x", &got), 0);
    ck_assert_uint_eq(strlen(got.origin), sizeof got.origin - 1);
    ck_assert_uint_eq(strlen(got.validator), sizeof got.validator - 1);
    index_close(ix);
}
END_TEST

START_TEST(tmpl_get_unknown_enoent)
{
    struct index *ix = open_ok();
    struct index_tmpl got;

    ck_assert_int_eq(index_tmpl_get(ix, "nope", &got), -ENOENT);
    struct index_tmpl t = sample_tmpl("yes");
    ck_assert_int_eq(index_tmpl_put(ix, &t), 0);
    ck_assert_int_eq(index_tmpl_get(ix, "nope", &got), -ENOENT);
    ck_assert_int_eq(index_tmpl_get(ix, "YES", &got), -ENOENT);
    index_close(ix);
}
END_TEST

/* A directory's last listing: a meta text row, replaced, kept across a
 * reopen. */
START_TEST(meta_text_roundtrip)
{
    struct index *ix = open_ok();
    char *v = (char *)&v;

    ck_assert_int_eq(index_meta_get(ix, "dir-listing:/d", &v), -ENOENT);
    ck_assert_ptr_null(v);
    ck_assert_int_eq(index_meta_put(ix, "dir-listing:/d", "a\nb\n"), 0);
    ck_assert_int_eq(index_meta_put(ix, "dir-listing:/d", "a\nc\n"), 0);
    ck_assert_int_eq(index_meta_put(ix, "dir-listing:/e", ""), 0);
    index_close(ix);
    ix = open_ok();
    ck_assert_int_eq(index_meta_get(ix, "dir-listing:/d", &v), 0);
    ck_assert_str_eq(v, "a\nc\n");
    free(v);
    ck_assert_int_eq(index_meta_get(ix, "dir-listing:/e", &v), 0);
    ck_assert_str_eq(v, "");
    free(v);
    index_close(ix);
}
END_TEST

/* ------------------------------------------------------------ blocks */

START_TEST(apply_and_load_in_order)
{
    enum { N = 10000 };
    struct index *ix = open_ok();
    struct index_rec *r = calloc(N + 4, sizeof *r);

    ck_assert_ptr_nonnull(r);
    /* Reverse order, so ORDER BY blk is what sorts them. */
    for (size_t i = 0; i < N; i++)
        r[i] = add_rec(7, 2, N - 1 - i);
    r[0].csum = UINT64_MAX;     /* blk N-1 */
    r[1].csum = 1ULL << 63;     /* blk N-2 */
    r[2].flags = INDEX_BLK_ZERO | INDEX_BLK_PINNED | 0x80000000u;
    r[2].atime = UINT64_MAX;
    /* Rows of other generations and templates must not be loaded. */
    r[N] = add_rec(7, 1, 5);
    r[N + 1] = add_rec(7, 3, 5);
    r[N + 2] = add_rec(8, 2, 5);
    r[N + 3] = add_rec(6, 2, N + 10);
    ck_assert_int_eq(index_apply(ix, r, N + 4), 0);

    struct collect c = {0};
    ck_assert_int_eq(index_blocks_load(ix, 7, 2, collect_cb, &c), 0);
    ck_assert_uint_eq(c.n, N);
    for (size_t i = 0; i < N; i++) {
        const struct index_rec *g = &c.recs[i];
        const struct index_rec *w = &r[N - 1 - i];
        ck_assert_int_eq(g->op, INDEX_ADD);
        ck_assert_int_eq(g->tid, 7);
        ck_assert_uint_eq(g->gen, 2);
        ck_assert_uint_eq(g->blk, i);
        ck_assert_uint_eq(g->csum, w->csum);
        ck_assert_uint_eq(g->atime, w->atime);
        ck_assert_uint_eq(g->flags, w->flags);
    }
    ck_assert_uint_eq(c.recs[N - 1].csum, UINT64_MAX);
    ck_assert_uint_eq(c.recs[N - 2].csum, 1ULL << 63);
    ck_assert_uint_eq(c.recs[N - 3].flags, 0x80000003u);
    free(c.recs);
    free(r);
    index_close(ix);
}
END_TEST

START_TEST(apply_empty_batch)
{
    struct index *ix = open_ok();

    ck_assert_int_eq(index_apply(ix, NULL, 0), 0);
    index_close(ix);
}
END_TEST

START_TEST(apply_del_and_replace)
{
    struct index *ix = open_ok();
    struct index_rec r[100];

    apply_adds(ix, 1, 1, 100);
    for (size_t i = 0; i < 50; i++)
        r[i] = (struct index_rec){.op = INDEX_DEL, .tid = 1, .gen = 1,
                                  .blk = 2 * i};
    /* ADD over an existing row replaces it. */
    for (size_t i = 50; i < 100; i++) {
        r[i] = add_rec(1, 1, 2 * (i - 50) + 1);
        r[i].csum = 0xfeedfacecafebeefULL;
        r[i].flags = INDEX_BLK_PINNED;
    }
    ck_assert_int_eq(index_apply(ix, r, 100), 0);

    struct collect c = {0};
    ck_assert_int_eq(index_blocks_load(ix, 1, 1, collect_cb, &c), 0);
    ck_assert_uint_eq(c.n, 50);
    for (size_t i = 0; i < c.n; i++) {
        ck_assert_uint_eq(c.recs[i].blk, 2 * i + 1);
        ck_assert_uint_eq(c.recs[i].csum, 0xfeedfacecafebeefULL);
        ck_assert_uint_eq(c.recs[i].flags, INDEX_BLK_PINNED);
    }
    free(c.recs);

    /* Deleting a row that is not there is not an error. */
    r[0] = (struct index_rec){.op = INDEX_DEL, .tid = 1, .gen = 1, .blk = 0};
    ck_assert_int_eq(index_apply(ix, r, 1), 0);
    index_close(ix);
}
END_TEST

START_TEST(load_cb_stops_walk)
{
    struct index *ix = open_ok();
    struct collect c = {.stop_after = 3};

    apply_adds(ix, 1, 1, 10);
    ck_assert_int_eq(index_blocks_load(ix, 1, 1, collect_cb, &c), 42);
    ck_assert_uint_eq(c.n, 3);
    free(c.recs);
    /* The statement was reset: a second walk starts from the beginning. */
    ck_assert_int_eq(count_blocks(ix, 1, 1), 10);
    index_close(ix);
}
END_TEST

/* A batch with an invalid record partway is rejected as a whole. */
START_TEST(apply_atomic_bad_record)
{
    enum { N = 1000 };
    struct index *ix = open_ok();
    struct index_rec r[N];

    apply_adds(ix, 1, 1, 10);
    for (size_t i = 0; i < N; i++)
        r[i] = add_rec(1, 1, 100 + i);
    r[0] = (struct index_rec){.op = INDEX_DEL, .tid = 1, .gen = 1, .blk = 0};
    r[N / 2].op = 77;
    ck_assert_int_eq(index_apply(ix, r, N), -EIO);
    ck_assert_int_eq(count_blocks(ix, 1, 1), 10); /* DEL undone too */

    /* The handle is still usable. */
    r[N / 2].op = INDEX_ADD;
    ck_assert_int_eq(index_apply(ix, r, N), 0);
    ck_assert_int_eq(count_blocks(ix, 1, 1), 9 + (N - 1));
    index_close(ix);
}
END_TEST

/* A real SQLite failure partway (a trigger aborting one insert) rolls the
 * whole batch back, also as seen by another connection after reopen. */
START_TEST(apply_atomic_sqlite_failure)
{
    enum { N = 10000 };
    struct index *ix = open_ok();

    apply_adds(ix, 1, 1, 10);
    sql_exec(tpath(INDEX_FILE),
             "CREATE TRIGGER fail_5000 BEFORE INSERT ON blocks "
             "WHEN NEW.blk = 5000 BEGIN SELECT RAISE(ABORT, 'injected'); END");

    struct index_rec *r = calloc(N, sizeof *r);
    ck_assert_ptr_nonnull(r);
    for (size_t i = 0; i < N; i++)
        r[i] = add_rec(1, 1, 10 + i);
    ck_assert_int_eq(index_apply(ix, r, N), -EIO);
    ck_assert_int_eq(count_blocks(ix, 1, 1), 10);
    ck_assert_int_eq(sql_int(tpath(INDEX_FILE),
                             "SELECT count(*) FROM blocks"),
                     10);

    /* Without the failing record the same handle commits. */
    ck_assert_int_eq(index_apply(ix, r, 4990 - 10), 0);
    index_close(ix);
    ix = open_ok();
    ck_assert_int_eq(count_blocks(ix, 1, 1), 4990);
    index_close(ix);
    free(r);
}
END_TEST

START_TEST(apply_100k)
{
    enum { N = 100000 };
    struct index *ix = open_ok();
    struct timespec a, b;

    clock_gettime(CLOCK_MONOTONIC, &a);
    apply_adds(ix, 1, 1, N);
    clock_gettime(CLOCK_MONOTONIC, &b);
    ck_assert_int_eq(count_blocks(ix, 1, 1), N);
    /* Reported, not asserted: timings belong to benchmarks. */
    fprintf(stderr, "apply_100k: %.0f ms\n",
            (double)(b.tv_sec - a.tv_sec) * 1e3 +
                (double)(b.tv_nsec - a.tv_nsec) / 1e6);
    index_close(ix);
}
END_TEST

START_TEST(drop_other_gens)
{
    struct index *ix = open_ok();

    apply_adds(ix, 1, 1, 10);
    apply_adds(ix, 1, 2, 20);
    apply_adds(ix, 1, 3, 30);
    apply_adds(ix, 2, 1, 40);
    ck_assert_int_eq(index_drop_other_gens(ix, 1, 2, INDEX_NO_GEN), 0);
    ck_assert_int_eq(count_blocks(ix, 1, 1), 0);
    ck_assert_int_eq(count_blocks(ix, 1, 2), 20);
    ck_assert_int_eq(count_blocks(ix, 1, 3), 0);
    ck_assert_int_eq(count_blocks(ix, 2, 1), 40);
    /* Idempotent, and a generation beyond INT64_MAX is compared exactly. */
    ck_assert_int_eq(index_drop_other_gens(ix, 1, 2, INDEX_NO_GEN), 0);
    apply_adds(ix, 3, UINT64_MAX, 5);
    apply_adds(ix, 3, 1, 5);
    ck_assert_int_eq(index_drop_other_gens(ix, 3, UINT64_MAX, INDEX_NO_GEN), 0);
    ck_assert_int_eq(count_blocks(ix, 3, UINT64_MAX), 5);
    ck_assert_int_eq(count_blocks(ix, 3, 1), 0);
    index_close(ix);
}
END_TEST

/* An ADD with a hash: every byte of sha is `fill`. */
static struct index_rec sha_rec(int64_t tid, uint64_t gen, uint64_t blk,
                                uint8_t fill)
{
    struct index_rec r = add_rec(tid, gen, blk);
    memset(r.sha, fill, sizeof r.sha);
    r.has_sha = 1;
    return r;
}

/* Whether (tid, gen, blk) is among the n found. */
static int found(const struct index_rec *f, int n, int64_t tid, uint64_t gen,
                 uint64_t blk)
{
    for (int i = 0; i < n; i++)
        if (f[i].tid == tid && f[i].gen == gen && f[i].blk == blk)
            return 1;
    return 0;
}

START_TEST(sha_find)
{
    struct index *ix = open_ok();
    struct index_rec r[6] = {
        sha_rec(1, 1, 3, 0xaa), sha_rec(2, 5, 7, 0xaa), sha_rec(1, 1, 4, 0xbb),
        sha_rec(1, 2, 3, 0xcc), add_rec(1, 1, 5), sha_rec(3, 1, 0, 0xaa),
    };
    ck_assert_int_eq(index_apply(ix, r, 6), 0);
    struct index_rec f[4];
    uint8_t sha[INDEX_SHA_LEN];

    /* Every template and generation; the hash comes back with each. */
    memset(sha, 0xaa, sizeof sha);
    ck_assert_int_eq(index_sha_find(ix, sha, f, 4), 3);
    ck_assert(found(f, 3, 1, 1, 3) && found(f, 3, 2, 5, 7) &&
              found(f, 3, 3, 1, 0));
    ck_assert(f[0].has_sha && memcmp(f[0].sha, sha, sizeof sha) == 0);
    /* At most max. */
    ck_assert_int_eq(index_sha_find(ix, sha, f, 2), 2);
    memset(sha, 0xdd, sizeof sha);
    ck_assert_int_eq(index_sha_find(ix, sha, f, 4), 0);

    /* The same block again without a hash (an eviction that kept it): the
     * hash stays while the checksum says the same bytes, goes with other
     * bytes (a fill without a manifest). */
    struct index_rec same = add_rec(1, 1, 4), other = add_rec(1, 2, 3);
    other.csum ^= 1;
    ck_assert_int_eq(index_apply(ix, &same, 1), 0);
    ck_assert_int_eq(index_apply(ix, &other, 1), 0);
    memset(sha, 0xbb, sizeof sha);
    ck_assert_int_eq(index_sha_find(ix, sha, f, 4), 1);
    memset(sha, 0xcc, sizeof sha);
    ck_assert_int_eq(index_sha_find(ix, sha, f, 4), 0);

    /* A deleted block, a dropped generation are found no more; the kept
     * previous generation (keep_also) is. */
    struct index_rec del = {.op = INDEX_DEL, .tid = 2, .gen = 5, .blk = 7};
    ck_assert_int_eq(index_apply(ix, &del, 1), 0);
    struct index_rec g2 = sha_rec(1, 2, 9, 0xaa), g3 = sha_rec(1, 3, 1, 0xaa);
    ck_assert_int_eq(index_apply(ix, &g2, 1), 0);
    ck_assert_int_eq(index_apply(ix, &g3, 1), 0);
    ck_assert_int_eq(index_drop_other_gens(ix, 1, 3, 2), 0);
    memset(sha, 0xaa, sizeof sha);
    int n = index_sha_find(ix, sha, f, 4);
    ck_assert_int_eq(n, 3);
    ck_assert(found(f, n, 1, 2, 9) && found(f, n, 1, 3, 1) &&
              found(f, n, 3, 1, 0));

    /* One query on the partial index, not a scan. */
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_open(tpath("index.db"), &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "EXPLAIN QUERY PLAN SELECT tid, "
                                            "gen, blk FROM blocks WHERE "
                                            "sha = ?1 LIMIT 4",
                                        -1, &st, NULL),
                     SQLITE_OK);
    int indexed = 0;
    while (sqlite3_step(st) == SQLITE_ROW)
        indexed |= strstr((const char *)sqlite3_column_text(st, 3),
                          "blocks_sha") != NULL;
    sqlite3_finalize(st);
    sqlite3_close(db);
    ck_assert_msg(indexed, "the lookup does not use blocks_sha");

    /* A second connection (the daemon's lookups) sees committed rows. */
    struct index *look = NULL;
    ck_assert_int_eq(index_reopen(tmpdir, &look), 0);
    index_retry_busy(look, 20);
    ck_assert_int_eq(index_sha_find(look, sha, f, 4), 3);
    struct index_rec late = sha_rec(4, 1, 2, 0xaa);
    ck_assert_int_eq(index_apply(ix, &late, 1), 0);
    ck_assert_int_eq(index_sha_find(look, sha, f, 4), 4);
    index_close(look);
    index_close(ix);
}
END_TEST

START_TEST(event_row)
{
    struct index *ix = open_ok();
    time_t before = time(NULL);
    char buf[256];

    ck_assert_int_eq(index_event(ix, 4, "evict", 3, UINT64_MAX, "quota"), 0);
    ck_assert_int_eq(index_event(ix, 4, "error", 0, 0, NULL), 0);
    index_close(ix);
    const char *db = tpath(INDEX_FILE);
    ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM events"), 2);
    sql_text(db, "SELECT kind || ',' || tid || ',' || blocks || ',' || "
                 "bytes || ',' || detail FROM events WHERE kind = 'evict'",
             buf, sizeof buf);
    ck_assert_str_eq(buf, "evict,4,3,-1,quota"); /* bytes: bit pattern */
    long long ts = sql_int(db, "SELECT ts FROM events WHERE kind = 'evict'");
    ck_assert_int_ge(ts, (long long)before);
    ck_assert_int_le(ts, (long long)time(NULL));
    ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM events WHERE "
                                 "kind = 'error' AND detail IS NULL"),
                     1);
}
END_TEST

/* ------------------------------------------------------------ damage */

START_TEST(corrupt_garbage_moved_aside)
{
    unsigned char junk[8192];

    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)(i * 131 + 7);
    write_file(tpath(INDEX_FILE), junk, sizeof junk);
    write_file(tpath(INDEX_FILE "-wal"), junk, 100);

    struct index *ix = open_ok();
    const char *bad = assert_moved_aside(ix);
    char badwal[PATH_MAX];
    struct stat sb;
    ck_assert_int_eq(stat(bad, &sb), 0);
    ck_assert_int_eq(sb.st_size, sizeof junk);
    snprintf(badwal, sizeof badwal, "%s-wal", bad);
    ck_assert_int_eq(stat(badwal, &sb), 0);
    ck_assert_int_eq(sb.st_size, 100);
    assert_fresh_and_usable(ix);
    index_close(ix);

    /* No crash loop: the next open keeps the fresh index. */
    ix = open_ok();
    ck_assert_ptr_null(index_moved_aside(ix));
    struct index_tmpl got;
    ck_assert_int_eq(index_tmpl_get(ix, "after", &got), 0);
    index_close(ix);
}
END_TEST

/* A valid index cut to half its size must be detected: SQLite sees the
 * header's page count exceed the file (SQLITE_CORRUPT) or quick_check
 * finds missing pages; either way it is moved aside. */
START_TEST(corrupt_truncated_moved_aside)
{
    struct index *ix = open_ok();
    struct index_tmpl t = sample_tmpl("big");

    ck_assert_int_eq(index_tmpl_put(ix, &t), 0);
    apply_adds(ix, t.id, 1, 20000);
    index_close(ix);

    struct stat sb;
    ck_assert_int_eq(stat(tpath(INDEX_FILE), &sb), 0);
    ck_assert(!file_exists(tpath(INDEX_FILE "-wal"))); /* checkpointed */
    ck_assert_int_gt(sb.st_size, 256 * 1024);
    ck_assert_int_eq(truncate(tpath(INDEX_FILE), sb.st_size / 2), 0);

    ix = open_ok();
    assert_moved_aside(ix);
    struct index_tmpl got;
    ck_assert_int_eq(index_tmpl_get(ix, "big", &got), -ENOENT);
    assert_fresh_and_usable(ix);
    index_close(ix);
}
END_TEST

START_TEST(foreign_schema_moved_aside)
{
    sql_exec(tpath(INDEX_FILE),
             "CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT);"
             "INSERT INTO photos (path) VALUES ('cat.jpg');");

    struct index *ix = open_ok();
    const char *bad = assert_moved_aside(ix);
    ck_assert_int_eq(sql_int(bad, "SELECT count(*) FROM photos"), 1);
    ck_assert_int_eq(sql_int(tpath(INDEX_FILE),
                             "SELECT count(*) FROM sqlite_master "
                             "WHERE name = 'photos'"),
                     0);
    assert_fresh_and_usable(ix);
    index_close(ix);
}
END_TEST

START_TEST(meta_without_version_moved_aside)
{
    sql_exec(tpath(INDEX_FILE),
             "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);");

    struct index *ix = open_ok();
    assert_moved_aside(ix);
    assert_fresh_and_usable(ix);
    index_close(ix);
}
END_TEST

START_TEST(unknown_version_moved_aside)
{
    struct index *ix = open_ok();
    index_close(ix);
    sql_exec(tpath(INDEX_FILE),
             "UPDATE meta SET value = '99' WHERE key = 'schema_version'");

    ix = open_ok();
    const char *bad = assert_moved_aside(ix);
    ck_assert_int_eq(sql_int(bad, "SELECT value FROM meta"), 99);
    assert_fresh_and_usable(ix);
    index_close(ix);
}
END_TEST

/* Our version number but a table missing: statements cannot compile. */
START_TEST(tampered_schema_moved_aside)
{
    struct index *ix = open_ok();
    index_close(ix);
    sql_exec(tpath(INDEX_FILE), "DROP TABLE blocks");

    ix = open_ok();
    assert_moved_aside(ix);
    assert_fresh_and_usable(ix);
    index_close(ix);
}
END_TEST

/* Our version number but a table dropped that only a later statement
 * needs (counters: the housekeeping's save; pins: a pin load): unusable
 * at open, moved aside, not opened to fail hours later.  Each table. */
START_TEST(missing_table_moved_aside)
{
    static const char *const tables[] = {"templates", "blocks", "pins",
                                         "events", "counters"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        char sql[64];
        struct index *ix = open_ok();
        index_close(ix);
        snprintf(sql, sizeof sql, "DROP TABLE %s", tables[i]);
        sql_exec(tpath(INDEX_FILE), sql);

        ix = NULL;
        ck_assert_int_eq(index_open_ro(tmpdir, &ix), -EIO);
        ck_assert_ptr_null(ix);
        ix = open_ok();
        ck_assert_msg(index_moved_aside(ix) != NULL,
                      "an index without %s was not moved aside", tables[i]);
        assert_moved_aside(ix);
        assert_fresh_and_usable(ix);
        index_close(ix);
        ck_assert_int_eq(unlink(tpath(INDEX_FILE)), 0);
    }
}
END_TEST

/* A pins table without its class column (dropped by hand): the pin load
 * cannot compile, so the index is unusable at open. */
START_TEST(missing_column_moved_aside)
{
    struct index *ix = open_ok();
    index_close(ix);
    sql_exec(tpath(INDEX_FILE), "ALTER TABLE pins DROP COLUMN class");

    ix = open_ok();
    assert_moved_aside(ix);
    assert_fresh_and_usable(ix);
    index_close(ix);
}
END_TEST

/* A zero-length file (crash right after creation) is a new database. */
START_TEST(empty_file_initialised)
{
    write_file(tpath(INDEX_FILE), "", 0);

    struct index *ix = open_ok();
    ck_assert_ptr_null(index_moved_aside(ix));
    assert_fresh_and_usable(ix);
    index_close(ix);
}
END_TEST

/* A garbage -wal or -shm beside a good database is not damage: SQLite
 * ignores a WAL whose header does not check out and rebuilds the -shm. */
START_TEST(garbage_wal_and_shm_ignored)
{
    struct index *ix = open_ok();
    struct index_tmpl t = sample_tmpl("keep");
    ck_assert_int_eq(index_tmpl_put(ix, &t), 0);
    apply_adds(ix, t.id, 1, 300);
    index_close(ix);

    unsigned char junk[32768];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)(i * 7 + 3);
    write_file(tpath(INDEX_FILE "-wal"), junk, sizeof junk);
    write_file(tpath(INDEX_FILE "-shm"), junk, sizeof junk);

    ix = open_ok();
    ck_assert_ptr_null(index_moved_aside(ix));
    struct index_tmpl got;
    ck_assert_int_eq(index_tmpl_get(ix, "keep", &got), 0);
    ck_assert_int_eq(count_blocks(ix, t.id, 1), 300);
    apply_adds(ix, t.id, 2, 10);
    index_close(ix);
    ix = open_ok();
    ck_assert_int_eq(count_blocks(ix, t.id, 2), 10);
    index_close(ix);
}
END_TEST

/* ------------------------------------------------------------ read-only */

START_TEST(ro_missing)
{
    struct index *ix = NULL;
    char dir[PATH_MAX];

    snprintf(dir, sizeof dir, "%s/nonexistent", tmpdir);
    ck_assert_int_eq(index_open_ro(dir, &ix), -ENOENT);
    ck_assert_int_eq(index_open_ro(tmpdir, &ix), -ENOENT);
    ck_assert_ptr_null(ix);
    ck_assert(!file_exists(tpath(INDEX_FILE)));
}
END_TEST

START_TEST(ro_sees_rw_rows)
{
    struct index *rw = open_ok(), *ro = NULL;
    struct index_tmpl t = sample_tmpl("shared"), got;

    ck_assert_int_eq(index_tmpl_put(rw, &t), 0);
    apply_adds(rw, t.id, 1, 1000);
    /* Both handles open at once, as with the daemon and a tool. */
    ck_assert_int_eq(index_open_ro(tmpdir, &ro), 0);
    ck_assert_ptr_null(index_moved_aside(ro));
    ck_assert_int_eq(index_tmpl_get(ro, "shared", &got), 0);
    ck_assert_int_eq(got.id, t.id);
    ck_assert_int_eq(count_blocks(ro, t.id, 1), 1000);

    /* Later commits are visible to the open read-only handle. */
    apply_adds(rw, t.id, 2, 5);
    ck_assert_int_eq(count_blocks(ro, t.id, 2), 5);

    /* Writes through the read-only handle fail cleanly. */
    struct index_rec r = add_rec(t.id, 9, 1);
    ck_assert_int_eq(index_apply(ro, &r, 1), -EIO);
    ck_assert_int_eq(index_tmpl_put(ro, &t), -EIO);
    ck_assert_int_eq(count_blocks(rw, t.id, 9), 0);
    index_close(ro);
    index_close(rw);

    /* And after the writer has gone. */
    ck_assert_int_eq(index_open_ro(tmpdir, &ro), 0);
    ck_assert_int_eq(count_blocks(ro, t.id, 1), 1000);
    index_close(ro);
}
END_TEST

START_TEST(ro_never_moves_aside)
{
    struct index *ix = NULL;
    unsigned char junk[4096];

    memset(junk, 'Z', sizeof junk);
    write_file(tpath(INDEX_FILE), junk, sizeof junk);
    ck_assert_int_eq(index_open_ro(tmpdir, &ix), -EIO);
    ck_assert_ptr_null(ix);

    sql_exec(tpath("other.db"), "CREATE TABLE foo (x)");
    ck_assert_int_eq(rename(tpath("other.db"), tpath(INDEX_FILE)), 0);
    ck_assert_int_eq(index_open_ro(tmpdir, &ix), -EIO);
    ck_assert(file_exists(tpath(INDEX_FILE)));
    ck_assert_int_eq(sql_int(tpath(INDEX_FILE), "SELECT count(*) FROM "
                                                "sqlite_master"),
                     1);
}
END_TEST

/* ------------------------------------------------------------ main */

/* ------------------------------------------------------------ migration */

/* Schema version 1 exactly as released before pin classes. */
static const char v1_schema[] =
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
    "CREATE TABLE templates (id INTEGER PRIMARY KEY,"
    " name TEXT UNIQUE NOT NULL, origin TEXT, size INTEGER,"
    " mtime_ns INTEGER, validator TEXT, generation INTEGER,"
    " block_size INTEGER, quota INTEGER);"
    "CREATE TABLE blocks (tid INTEGER, gen INTEGER,"
    " blk INTEGER, csum INTEGER, atime INTEGER, flags INTEGER,"
    " PRIMARY KEY (tid, gen, blk)) WITHOUT ROWID;"
    "CREATE TABLE pins (tid INTEGER, start INTEGER,"
    " len INTEGER, source TEXT);"
    "CREATE TABLE events (id INTEGER PRIMARY KEY, ts INTEGER,"
    " tid INTEGER, kind TEXT, blocks INTEGER, bytes INTEGER, detail TEXT);"
    "CREATE TABLE counters (tid INTEGER PRIMARY KEY,"
    " hits INTEGER, misses INTEGER, origin_bytes INTEGER,"
    " origin_reads INTEGER, fill_errors INTEGER, evictions INTEGER,"
    " evicted_bytes INTEGER, uncached INTEGER);"
    "CREATE INDEX events_ts ON events (ts);"
    "CREATE INDEX pins_tid ON pins (tid);"
    "INSERT INTO meta VALUES ('schema_version', '1');"
    "INSERT INTO templates (id, name, size, generation, block_size)"
    " VALUES (1, 'old.img', 1048576, 1, 4096);"
    "INSERT INTO blocks VALUES (1, 1, 3, 7, 1, 0);"
    "INSERT INTO pins VALUES (1, 0, 65536, ''), (1, 131072, 4096, '');"
    "INSERT INTO counters VALUES (1, 5, 6, 7, 8, 0, 9, 36864, 0);";

static void assert_old_pins_boot(struct index *ix)
{
    struct class_range *r;
    size_t n;
    struct index_counters c;
    ck_assert_int_eq(index_pins_load(ix, 1, &r, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(r[0].off, 0);
    ck_assert_uint_eq(r[0].len, 65536);
    ck_assert_int_eq(r[0].cls, PIN_BOOT);
    ck_assert_uint_eq(r[1].off, 131072);
    ck_assert_int_eq(r[1].cls, PIN_BOOT);
    free(r);
    ck_assert_int_eq(index_counters_get(ix, 1, &c), 0);
    ck_assert_uint_eq(c.evictions, 9);
    ck_assert_uint_eq(c.evicted_low, 0);
    ck_assert_uint_eq(c.evicted_high, 0);
}

/* An index from before pin classes: read as it is by a read-only open
 * (its pins boot), migrated in place by a read-write one, nothing moved
 * aside or lost; the new columns then take classes. */
START_TEST(v1_index_migrated)
{
    const char *db = tpath(INDEX_FILE);
    sql_exec(db, v1_schema);
    struct index *ix = NULL;
    ck_assert_int_eq(index_open_ro(tmpdir, &ix), 0);
    assert_old_pins_boot(ix);
    index_close(ix);
    ck_assert_int_eq(sql_int(db, "SELECT value FROM meta "
                                 "WHERE key = 'schema_version'"), 1);

    ix = open_ok();
    ck_assert_ptr_null(index_moved_aside(ix));
    ck_assert_int_eq(sql_int(db, "SELECT value FROM meta "
                                 "WHERE key = 'schema_version'"),
                     INDEX_SCHEMA_VERSION);
    ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM pins "
                                 "WHERE class = 'boot'"), 2);
    ck_assert_int_eq(count_blocks(ix, 1, 1), 1);
    assert_old_pins_boot(ix);
    struct class_range w[2] = {{0, 4096, PIN_LOW}, {8192, 4096, PIN_HIGH}};
    ck_assert_int_eq(index_pins_replace(ix, 1, w, 2), 0);
    struct index_counters c = {.evictions = 3, .evicted_low = 2,
                               .evicted_high = 1};
    ck_assert_int_eq(index_counters_put(ix, 1, &c), 0);
    index_close(ix);

    ix = open_ok(); /* reopened: version 2 as it is */
    struct class_range *r;
    size_t n;
    ck_assert_int_eq(index_pins_load(ix, 1, &r, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert(r[0].cls != r[1].cls);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(r[i].cls, r[i].off == 0 ? PIN_LOW : PIN_HIGH);
    free(r);
    struct index_counters got;
    ck_assert_int_eq(index_counters_get(ix, 1, &got), 0);
    ck_assert_uint_eq(got.evicted_low, 2);
    ck_assert_uint_eq(got.evicted_high, 1);
    index_close(ix);
}
END_TEST

/* Schema 2 as the session before counters.last_used and pin sources
 * wrote it: the v1 tables with the classes' columns. */
static const char v2_alters[] =
    "ALTER TABLE pins ADD COLUMN class TEXT NOT NULL DEFAULT 'boot';"
    "ALTER TABLE counters ADD COLUMN evicted_low INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE counters ADD COLUMN evicted_high INTEGER NOT NULL DEFAULT 0;"
    "UPDATE meta SET value = '2' WHERE key = 'schema_version';";

/* Columns added within schema 2 (rule: no version bump): a read-only
 * open of an index without counters.last_used reads it as 0; a
 * read-write one adds it (the version stays 2) and keeps it; pins keep
 * their source, an empty one (from before sources) reading as legacy. */
START_TEST(v2_columns_added)
{
    const char *db = tpath(INDEX_FILE);
    sql_exec(db, v1_schema);
    sql_exec(db, v2_alters);
    struct index *ix = NULL;
    struct index_counters c;
    ck_assert_int_eq(index_open_ro(tmpdir, &ix), 0);
    ck_assert_int_eq(index_counters_get(ix, 1, &c), 0);
    ck_assert_uint_eq(c.evictions, 9);
    ck_assert_uint_eq(c.last_used, 0);
    index_close(ix);

    ix = open_ok();
    ck_assert_ptr_null(index_moved_aside(ix));
    ck_assert_int_eq(sql_int(db, "SELECT value FROM meta "
                                 "WHERE key = 'schema_version'"), 2);
    ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM pragma_table_info("
                                 "'counters') WHERE name = 'last_used'"), 1);
    struct class_range *r;
    size_t n;
    ck_assert_int_eq(index_pins_load(ix, 1, &r, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(r[0].src, PIN_SRC_LEGACY);
    free(r);
    c.last_used = 1700000000;
    ck_assert_int_eq(index_counters_put(ix, 1, &c), 0);
    struct class_range w[2] = {{0, 4096, PIN_LOW, PIN_SRC_CONFIG},
                               {0, 4096, PIN_BOOT, PIN_SRC_TOOL}};
    ck_assert_int_eq(index_pins_replace(ix, 1, w, 2), 0);
    index_close(ix);

    ck_assert_int_eq(index_open_ro(tmpdir, &ix), 0);
    ck_assert_int_eq(index_counters_get(ix, 1, &c), 0);
    ck_assert_uint_eq(c.last_used, 1700000000);
    ck_assert_uint_eq(c.evictions, 9);
    ck_assert_int_eq(index_pins_load(ix, 1, &r, &n), 0);
    ck_assert_uint_eq(n, 2);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(r[i].src, r[i].cls == PIN_LOW ? PIN_SRC_CONFIG
                                                       : PIN_SRC_TOOL);
    free(r);
    index_close(ix);
    ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM pins "
                                 "WHERE source = 'config'"), 1);
}
END_TEST

static Suite *index_suite(void)
{
    Suite *s = suite_create("index");
    struct {
        const char *name;
        const TTest *tests[16];
    } groups[] = {
        {"open", {open_creates_schema, open_missing_dir_fails,
                  reopen_persists}},
        {"templates", {tmpl_roundtrip_and_update, tmpl_long_strings_truncated,
                       tmpl_get_unknown_enoent, meta_text_roundtrip}},
        {"blocks", {apply_and_load_in_order, apply_empty_batch,
                    apply_del_and_replace, load_cb_stops_walk,
                    apply_atomic_bad_record, apply_atomic_sqlite_failure,
                    apply_100k, drop_other_gens, sha_find, event_row}},
        {"damage", {corrupt_garbage_moved_aside,
                    corrupt_truncated_moved_aside, foreign_schema_moved_aside,
                    meta_without_version_moved_aside,
                    unknown_version_moved_aside, tampered_schema_moved_aside,
                    missing_table_moved_aside, missing_column_moved_aside,
                    empty_file_initialised, garbage_wal_and_shm_ignored}},
        {"readonly", {ro_missing, ro_sees_rw_rows, ro_never_moves_aside}},
        {"migration", {v1_index_migrated, v2_columns_added}},
    };

    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        for (size_t i = 0; groups[g].tests[i]; i++) {
            TCase *tc = tcase_create(groups[g].name);
            tcase_add_unchecked_fixture(tc, setup, teardown);
            tcase_set_timeout(tc, 60);
            tcase_add_test(tc, groups[g].tests[i]);
            suite_add_tcase(s, tc);
        }
    }
    return s;
}

int main(void)
{
    log_init("check_index", 0);
    return ck_run(index_suite());
}
