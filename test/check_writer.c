/* Unit tests for fs/index/writer.c (the index writer) against a real index.db,
 * with a second SQLite connection holding the write lock the way an
 * operator's sqlite3 shell does (BEGIN IMMEDIATE).
 *
 * Each test runs in its own mkdtemp directory under /tmp, removed
 * afterwards.  sqlite3.h is used here only to hold the lock and to look at
 * what the writer committed. */
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
#include <unistd.h>

#include "ic-index.h"
#include "ic-log.h"
#include "ic-util.h"
#include "ic-writer.h"

#include "ck-tmpdir.h"

CK_TMPDIR_FIXTURES("check_writer")

/* The index, one template row, a data file, a running writer. */
struct fixture {
    struct index *ix;
    struct writer *w;
    int64_t tid;
    int fd;
    char db[PATH_MAX];
};

static void fx_start(struct fixture *f)
{
    struct index_tmpl t = {.size = 1 << 20, .generation = 1,
                           .block_size = 65536};
    char data[PATH_MAX];

    snprintf(t.name, sizeof t.name, "t.img");
    snprintf(f->db, sizeof f->db, "%s/%s", tmpdir, INDEX_FILE);
    snprintf(data, sizeof data, "%s/data.1", tmpdir);
    ck_assert_int_eq(index_open(tmpdir, &f->ix), 0);
    ck_assert_int_eq(index_tmpl_put(f->ix, &t), 0);
    f->tid = t.id;
    f->fd = open(data, O_RDWR | O_CREAT, 0600);
    ck_assert_int_ge(f->fd, 0);
    ck_assert_int_eq(writer_start(f->ix, &f->w), 0);
}

static void fx_stop(struct fixture *f)
{
    writer_stop(f->w);
    index_close(f->ix);
    close(f->fd);
}

static void rec(struct fixture *f, enum index_op op, uint64_t blk)
{
    struct index_rec r = {.op = op, .tid = f->tid, .gen = 1, .blk = blk,
                          .csum = 1000 + blk};
    writer_add(f->w, &r, op == INDEX_ADD ? f->fd : -1);
}

/* Another process's write transaction on the index. */
static sqlite3 *lock_index(const char *db_path)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    ck_assert_int_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                     SQLITE_OK);
    return db;
}

static void unlock_index(sqlite3 *db)
{
    ck_assert_int_eq(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
}

static long long sql_int(const char *db_path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;

    ck_assert_int_eq(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Flush until it succeeds, within 10 s (the writer retries with backoff,
 * and a flush gives up after 1 s of a busy index). */
static int flush_ok(struct writer *w)
{
    uint64_t end = mono_ms() + 10000;
    int r;
    while ((r = writer_flush(w)) != 0 && mono_ms() < end)
        ;
    return r;
}

/* While the index is locked: a flush gives up quickly with -EBUSY, nothing
 * is lost, and once it is free every record is committed in order (a DEL
 * after an ADD of the same block stays after it). */
START_TEST(test_busy_keeps_records)
{
    struct fixture f = {0};
    fx_start(&f);
    sqlite3 *lk = lock_index(f.db);
    for (uint64_t b = 0; b < 10; b++)
        rec(&f, INDEX_ADD, b);
    rec(&f, INDEX_DEL, 5);
    rec(&f, INDEX_DEL, 6);
    rec(&f, INDEX_ADD, 6);
    struct index_counters c = {.hits = 42};
    writer_counters(f.w, f.tid, &c);
    writer_event(f.w, f.tid, "fill", 1, 2, NULL);
    uint64_t t0 = mono_ms();
    int r = writer_flush(f.w);
    uint64_t took = mono_ms() - t0;
    ck_assert_int_eq(r, -EBUSY);
    ck_assert_msg(took < 5000, "a flush on a locked index took %llu ms",
                  (unsigned long long)took);
    /* Twice the old busy timeout: nothing is given up meanwhile. */
    usleep(6 * 1000 * 1000);
    ck_assert_int_eq(writer_flush(f.w), -EBUSY);
    unlock_index(lk);
    ck_assert_int_eq(flush_ok(f.w), 0);
    ck_assert_int_eq(sql_int(f.db, "SELECT count(*) FROM blocks"), 9);
    ck_assert_int_eq(sql_int(f.db, "SELECT count(*) FROM blocks WHERE blk = 5"),
                     0);
    ck_assert_int_eq(sql_int(f.db, "SELECT csum FROM blocks WHERE blk = 6"),
                     1006);
    ck_assert_int_eq(sql_int(f.db, "SELECT hits FROM counters"), 42);
    ck_assert_int_eq(sql_int(f.db, "SELECT count(*) FROM events"), 1);
    fx_stop(&f);
}
END_TEST

/* What waits is bounded: past the bound new ADDs are dropped, but a
 * re-ADD of a waiting block coalesces and a DEL is always kept. */
START_TEST(test_bound)
{
    struct fixture f = {0};
    fx_start(&f);
    rec(&f, INDEX_ADD, 100);
    ck_assert_int_eq(writer_flush(f.w), 0);
    writer_set_max_pending(f.w, 8);
    sqlite3 *lk = lock_index(f.db);
    for (uint64_t b = 0; b < 20; b++)
        rec(&f, INDEX_ADD, b);
    rec(&f, INDEX_ADD, 0);    /* coalesces: no room needed */
    rec(&f, INDEX_DEL, 100);  /* past the bound: kept */
    unlock_index(lk);
    ck_assert_int_eq(flush_ok(f.w), 0);
    ck_assert_int_eq(sql_int(f.db, "SELECT count(*) FROM blocks"), 8);
    ck_assert_int_eq(sql_int(f.db, "SELECT max(blk) FROM blocks"), 7);
    fx_stop(&f);
}
END_TEST

/* Every enqueue says whether it queued: 0 for each kind, with the
 * caller's data copied (changing it afterwards changes nothing committed);
 * -ENOBUFS for an ADD past the bound, while a DEL is still queued; an
 * error for an ADD whose data file cannot be tracked, with nothing
 * queued. */
START_TEST(test_enqueue_status)
{
    struct fixture f = {0};
    fx_start(&f);
    struct index_tmpl t = {.id = f.tid, .size = 2 << 20, .generation = 2,
                           .block_size = 65536};
    snprintf(t.name, sizeof t.name, "t.img");
    struct index_counters c = {.hits = 42};
    struct class_range pins[2] = {{0, 65536, PIN_BOOT},
                                  {1 << 20, 65536, PIN_LOW}};
    char detail[] = "detail";
    struct index_rec add = {.op = INDEX_ADD, .tid = f.tid, .gen = 2,
                            .blk = 1, .csum = 7};

    ck_assert_int_eq(writer_tmpl(f.w, &t), 0);
    ck_assert_int_eq(writer_add(f.w, &add, f.fd), 0);
    ck_assert_int_eq(writer_drop_gens(f.w, f.tid, 2, INDEX_NO_GEN), 0);
    ck_assert_int_eq(writer_counters(f.w, f.tid, &c), 0);
    ck_assert_int_eq(writer_event(f.w, f.tid, "fill", 1, 2, detail), 0);
    ck_assert_int_eq(writer_event(f.w, f.tid, "fill", 1, 2, NULL), 0);
    ck_assert_int_eq(writer_pins(f.w, f.tid, pins, 2), 0);
    t.generation = 99;
    c.hits = 99;
    pins[0].len = 99;
    strcpy(detail, "XXXXXX");
    ck_assert_int_eq(writer_flush(f.w), 0);
    ck_assert_int_eq(sql_int(f.db, "SELECT generation FROM templates"), 2);
    ck_assert_int_eq(sql_int(f.db, "SELECT hits FROM counters"), 42);
    ck_assert_int_eq(sql_int(f.db, "SELECT sum(len) FROM pins"), 131072);
    ck_assert_int_eq(sql_int(f.db, "SELECT count(*) FROM events WHERE "
                                   "detail = 'detail'"), 1);
    ck_assert_int_eq(sql_int(f.db, "SELECT count(*) FROM blocks"), 1);
    ck_assert_int_eq(writer_pins(f.w, f.tid, NULL, 0), 0);

    int bad = dup(f.fd);
    close(bad);
    add.blk = 2;
    ck_assert_int_eq(writer_add(f.w, &add, bad), -EBADF);
    writer_set_max_pending(f.w, 0);
    add.blk = 3;
    ck_assert_int_eq(writer_add(f.w, &add, f.fd), -ENOBUFS);
    add.op = INDEX_DEL;
    add.blk = 1;
    ck_assert_int_eq(writer_add(f.w, &add, -1), 0);
    ck_assert_int_eq(writer_flush(f.w), 0);
    ck_assert_int_eq(sql_int(f.db, "SELECT count(*) FROM blocks"), 0);
    ck_assert_int_eq(sql_int(f.db, "SELECT count(*) FROM pins"), 0);
    fx_stop(&f);
}
END_TEST

/* Stopping while the index stays locked ends in bounded time. */
START_TEST(test_stop_bounded)
{
    struct fixture f = {0};
    fx_start(&f);
    sqlite3 *lk = lock_index(f.db);
    rec(&f, INDEX_ADD, 1);
    uint64_t t0 = mono_ms();
    writer_stop(f.w);
    uint64_t took = mono_ms() - t0;
    ck_assert_msg(took < 9000, "stop on a locked index took %llu ms",
                  (unsigned long long)took);
    unlock_index(lk);
    index_close(f.ix);
    close(f.fd);
}
END_TEST

/* index.c: a lock held by another connection is -EBUSY, not -EIO, and
 * leaves nothing half done. */
START_TEST(test_index_ebusy)
{
    struct index *ix = NULL;
    char db[PATH_MAX];
    struct index_rec r = {.op = INDEX_ADD, .tid = 1, .gen = 1, .blk = 3};

    snprintf(db, sizeof db, "%s/%s", tmpdir, INDEX_FILE);
    ck_assert_int_eq(index_open(tmpdir, &ix), 0);
    index_retry_busy(ix, 100);
    sqlite3 *lk = lock_index(db);
    ck_assert_int_eq(index_apply(ix, &r, 1), -EBUSY);
    ck_assert_int_eq(index_apply_durable(ix, &r, 1), -EBUSY);
    ck_assert_int_eq(index_event(ix, 1, "fill", 1, 1, NULL), -EBUSY);
    unlock_index(lk);
    ck_assert_int_eq(index_apply(ix, &r, 1), 0);
    ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM blocks"), 1);
    index_close(ix);
}
END_TEST

/* Jobs apply in the order they were queued: a removal of the old
 * generation's rows (a new generation started) takes the rows queued
 * before it, not a late fill of the old generation queued after it; and
 * of two records of one block the later one is what stays. */
START_TEST(test_order)
{
    struct fixture f = {0};
    fx_start(&f);
    rec(&f, INDEX_ADD, 1);
    writer_drop_gens(f.w, f.tid, 2, INDEX_NO_GEN);
    rec(&f, INDEX_ADD, 3); /* gen 1, after the drop */
    rec(&f, INDEX_ADD, 4);
    rec(&f, INDEX_DEL, 4); /* evicted: gone */
    rec(&f, INDEX_DEL, 5);
    rec(&f, INDEX_ADD, 5); /* refilled after an eviction: there */
    ck_assert_int_eq(flush_ok(f.w), 0);
    ck_assert_int_eq(sql_int(f.db, "SELECT count(*) FROM blocks"), 2);
    ck_assert_int_eq(sql_int(f.db, "SELECT count(*) FROM blocks "
                                   "WHERE blk IN (3, 5) AND gen = 1"), 2);
    fx_stop(&f);
}
END_TEST

/* writer_flush_since answers for what was queued after its mark: a commit
 * that fails (a trigger refuses block 666, as a full disk or an I/O error
 * would) is -EIO to a caller whose mark came before it, its records are
 * not committed, and a caller marking after it is not blamed. */
START_TEST(test_flush_since)
{
    struct fixture f = {0};
    fx_start(&f);
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(f.db, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "CREATE TRIGGER no666 BEFORE INSERT "
                                      "ON blocks WHEN NEW.blk = 666 BEGIN "
                                      "SELECT RAISE(ABORT, 'refused'); END",
                                  NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    uint64_t m1 = writer_mark(f.w);
    rec(&f, INDEX_ADD, 666);
    ck_assert_int_eq(writer_flush_since(f.w, m1), -EIO);
    ck_assert_int_eq(writer_flush_since(f.w, m1), -EIO); /* still */
    uint64_t m2 = writer_mark(f.w);
    ck_assert_uint_ne(m2, m1);
    rec(&f, INDEX_ADD, 7);
    ck_assert_int_eq(writer_flush_since(f.w, m2), 0);
    ck_assert_int_eq(writer_flush(f.w), 0);
    ck_assert_int_eq(sql_int(f.db, "SELECT count(*) FROM blocks "
                                   "WHERE blk = 666"), 0);
    ck_assert_int_eq(sql_int(f.db, "SELECT count(*) FROM blocks "
                                   "WHERE blk = 7"), 1);
    fx_stop(&f);
}
END_TEST

static Suite *writer_suite(void)
{
    const TTest *tests[] = {test_index_ebusy, test_busy_keeps_records,
                            test_bound, test_stop_bounded, test_order,
                            test_flush_since, test_enqueue_status};
    return ck_suite("writer", tests, CK_NTESTS(tests), setup, teardown, 60);
}

int main(void)
{
    log_init("check_writer", 0);
    return ck_run(writer_suite());
}
