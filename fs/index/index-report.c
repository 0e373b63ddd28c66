/* The index's read side for imgcache-report: usage per template, events
 * in a window, the report cursor.  Shares the index's handle and helpers
 * (index-priv.h); the daemon never calls these. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ic-index.h"
#include "ic-index-report.h"
#include "index-priv.h"
#include "ic-log.h"

/* ------------------------------------------------------------ report
 * Queries for imgcache-report.  They run once per template per report, on
 * a read-only handle beside a running daemon, so they are prepared per
 * call; index_snapshot_begin() makes them all see one committed state. */

/* Step a one-row query (aggregates always yield a row). */
static int rp_step_row(struct index *ix, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? -ENOENT : ix_db_fail(ix, what);
}

/* A deferred BEGIN on a read-only connection starts a read transaction at
 * the first SELECT: every later query sees the same WAL snapshot, so the
 * event sums, the cursor's upper bound and the block counts agree even
 * while the writer commits. */
int index_snapshot_begin(struct index *ix)
{
    if (sqlite3_exec(ix->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return ix_db_fail(ix, "snapshot begin");
    return 0;
}

void index_snapshot_end(struct index *ix)
{
    if (!sqlite3_get_autocommit(ix->db) &&
        sqlite3_exec(ix->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        ix_db_fail(ix, "snapshot end");
}

/* Bytes of block blk is min(bs, size - blk*bs): the last block may be
 * short.  max(0, ...) guards a row past the end (a stale or foreign row
 * must not subtract). */
#define RP_BLEN "max(0, min(?3, ?4 - blk * ?3))"

static int bind_tmpl_gen(sqlite3_stmt *st, const struct index_tmpl *t)
{
    return ix_bind_i64(st, 1, t->id) || ix_bind_u64(st, 2, t->generation) ||
           ix_bind_u64(st, 3, t->block_size) || ix_bind_u64(st, 4, t->size);
}

static int usage_cached(struct index *ix, const struct index_tmpl *t,
                        struct index_usage *u)
{
    sqlite3_stmt *st = ix_prepare(
        ix, "SELECT coalesce(sum((flags & 1) = 0), 0),"
            " coalesce(sum(CASE WHEN flags & 1 THEN 0 ELSE " RP_BLEN
            " END), 0), coalesce(sum((flags & 1) <> 0), 0)"
            " FROM blocks WHERE tid = ?1 AND gen = ?2");
    int ret;

    if (st == NULL)
        return -EIO;
    if (bind_tmpl_gen(st, t))
        ret = ix_db_fail(ix, "usage bind");
    else
        ret = rp_step_row(ix, st, "usage");
    if (ret == 0) {
        u->cached_blocks = ix_col_u64(st, 0);
        u->cached_bytes = ix_col_u64(st, 1);
        u->zero_blocks = ix_col_u64(st, 2);
    }
    sqlite3_finalize(st);
    return ret;
}

/* Present blocks (zero ones included: they need no origin read) in the
 * block interval [b0, b1], added to u's pinned_present figures. */
static int usage_pin_present(struct index *ix, sqlite3_stmt *st,
                             uint64_t b0, uint64_t b1, struct index_usage *u)
{
    int ret;

    if (ix_bind_u64(st, 5, b0) || ix_bind_u64(st, 6, b1))
        ret = ix_db_fail(ix, "pinned bind");
    else
        ret = rp_step_row(ix, st, "pinned");
    if (ret == 0) {
        u->pinned_present_blocks += ix_col_u64(st, 0);
        u->pinned_present_bytes += ix_col_u64(st, 1);
    }
    sqlite3_reset(st);
    return ret;
}

/* Bytes of blocks [b0, b1] of a file of `size` bytes. */
static uint64_t blocks_bytes(uint64_t b0, uint64_t b1, uint32_t bs,
                             uint64_t size)
{
    uint64_t end = (b1 + 1) * bs;

    return (end < size ? end : size) - b0 * bs;
}

/* Walk the pin ranges as block intervals (ranges are sorted by
 * ranges_normalize, so two ranges sharing a block give overlapping or
 * touching intervals, merged here so that block is counted once). */
static int usage_pinned(struct index *ix, const struct index_tmpl *t,
                        const struct byte_range *r, size_t n,
                        struct index_usage *u)
{
    uint64_t bs = t->block_size, nblk = (t->size + bs - 1) / bs;
    sqlite3_stmt *st = ix_prepare(
        ix, "SELECT count(*), coalesce(sum(" RP_BLEN "), 0) FROM blocks"
            " WHERE tid = ?1 AND gen = ?2 AND blk BETWEEN ?5 AND ?6");
    int ret = 0, have = 0;
    uint64_t c0 = 0, c1 = 0;

    if (st == NULL)
        return -EIO;
    if (bind_tmpl_gen(st, t))
        ret = ix_db_fail(ix, "pinned bind");
    for (size_t i = 0; ret == 0 && i <= n; i++) {
        uint64_t b0 = 0, b1 = 0;
        int last = i == n;
        if (!last) {
            if (r[i].len == 0 || r[i].off / bs >= nblk)
                continue;
            b0 = r[i].off / bs;
            b1 = (r[i].off + r[i].len - 1) / bs;
            b1 = b1 < nblk ? b1 : nblk - 1;
            if (have && b0 <= c1 + 1) {
                c1 = b1 > c1 ? b1 : c1;
                continue;
            }
        }
        if (have) {
            u->pinned_blocks += c1 - c0 + 1;
            u->pinned_bytes += blocks_bytes(c0, c1, t->block_size, t->size);
            ret = usage_pin_present(ix, st, c0, c1, u);
        }
        c0 = b0;
        c1 = b1;
        have = !last;
    }
    sqlite3_finalize(st);
    return ret;
}

/* Per class: the figures of the ranges of that class and every stronger
 * one, less those of the stronger ones (a block shared by two classes is
 * the stronger's, as in the daemon); then all classes together. */
static int usage_classes(struct index *ix, const struct index_tmpl *t,
                         const struct class_range *cr, size_t ncr,
                         struct index_usage *out)
{
    struct byte_range *r = malloc((ncr + 1) * sizeof *r);
    size_t n = 0;
    struct index_usage above = {0};
    int ret = 0;

    if (r == NULL)
        return -ENOMEM;
    for (int k = PIN_BOOT; k >= PIN_LOW && ret == 0; k--) {
        for (size_t i = 0; i < ncr; i++)
            if (cr[i].cls == k)
                r[n++] = (struct byte_range){cr[i].off, cr[i].len};
        /* Stored normalized, but a hand-edited table need not be. */
        ranges_normalize(r, &n);
        struct index_usage cum = {0};
        ret = usage_pinned(ix, t, r, n, &cum);
        out->class_pinned_bytes[k] = cum.pinned_bytes - above.pinned_bytes;
        out->class_present_bytes[k] =
            cum.pinned_present_bytes - above.pinned_present_bytes;
        above = cum;
    }
    out->pinned_blocks = above.pinned_blocks;
    out->pinned_bytes = above.pinned_bytes;
    out->pinned_present_blocks = above.pinned_present_blocks;
    out->pinned_present_bytes = above.pinned_present_bytes;
    free(r);
    return ret;
}

int index_usage_get(struct index *ix, const struct index_tmpl *t,
                    struct index_usage *out)
{
    struct class_range *r = NULL;
    size_t n = 0;

    memset(out, 0, sizeof *out);
    if (t->block_size == 0) {
        log_err("index: template %s has block size 0", t->name);
        return -EIO;
    }
    int ret = usage_cached(ix, t, out);
    if (ret == 0)
        ret = index_pins_load(ix, t->id, &r, &n);
    if (ret == 0)
        ret = usage_classes(ix, t, r, n, out);
    free(r);
    return ret;
}

int index_events_last_id(struct index *ix, int64_t *id)
{
    sqlite3_stmt *st = ix_prepare(ix, "SELECT coalesce(max(id), 0) FROM events");
    int ret;

    *id = 0;
    if (st == NULL)
        return -EIO;
    ret = rp_step_row(ix, st, "events last id");
    if (ret == 0)
        *id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return ret;
}

/* One aggregate row per kind; the last error's text comes from a second
 * query so the aggregate stays a plain GROUP BY. */
static int events_kinds(struct index *ix, sqlite3_stmt *st,
                        struct index_event_sum *s)
{
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *kind = (const char *)sqlite3_column_text(st, 0);
        uint64_t cnt = ix_col_u64(st, 1), blk = ix_col_u64(st, 2);
        uint64_t bytes = ix_col_u64(st, 3);
        if (kind == NULL)
            continue;
        if (strcmp(kind, "evict") == 0) {
            s->evict_events = cnt;
            s->evicted_blocks = blk;
            s->evicted_bytes = bytes;
        } else if (strcmp(kind, "error") == 0) {
            s->error_events = cnt;
            s->error_blocks = blk;
            s->error_bytes = bytes;
        } else if (strcmp(kind, "generation") == 0) {
            s->generations = cnt;
        } else if (strcmp(kind, "verify") == 0) {
            s->verify_events = cnt;
            s->verify_blocks = blk;
        }
    }
    return rc == SQLITE_DONE ? 0 : ix_db_fail(ix, "events sum");
}

static int bind_window(sqlite3_stmt *st, int64_t tid,
                       const struct index_window *w)
{
    return ix_bind_i64(st, 1, tid) || ix_bind_i64(st, 2, w->after_id) ||
           ix_bind_i64(st, 3, w->upto_id) || ix_bind_i64(st, 4, w->since_ts);
}

#define RP_WINDOW "tid = ?1 AND id > ?2 AND id <= ?3 AND ts >= ?4"

static int events_last_error(struct index *ix, int64_t tid,
                             const struct index_window *w,
                             struct index_event_sum *s)
{
    sqlite3_stmt *st = ix_prepare(
        ix, "SELECT ts, detail FROM events WHERE " RP_WINDOW
            " AND kind = 'error' ORDER BY id DESC LIMIT 1");
    int ret = 0;

    if (st == NULL)
        return -EIO;
    if (bind_window(st, tid, w))
        ret = ix_db_fail(ix, "last error bind");
    else
        ret = rp_step_row(ix, st, "last error");
    if (ret == 0) {
        s->last_error_ts = sqlite3_column_int64(st, 0);
        ix_col_str(st, 1, s->last_error, sizeof s->last_error);
    }
    sqlite3_finalize(st);
    return ret == -ENOENT ? 0 : ret;
}

static int events_verify(struct index *ix, int64_t tid,
                         const struct index_window *w,
                         struct index_event_sum *s)
{
    sqlite3_stmt *st = ix_prepare(
        ix, "SELECT coalesce(detail, '?'), sum(blocks) FROM events WHERE "
            RP_WINDOW " AND kind = 'verify' GROUP BY detail"
            " ORDER BY sum(blocks) DESC LIMIT 8");
    int rc;

    if (st == NULL)
        return -EIO;
    if (bind_window(st, tid, w)) {
        sqlite3_finalize(st);
        return ix_db_fail(ix, "verify sources bind");
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW &&
           s->nverify < INDEX_VERIFY_SOURCES) {
        ix_col_str(st, 0, s->verify[s->nverify].source,
                   sizeof s->verify[0].source);
        s->verify[s->nverify++].count = ix_col_u64(st, 1);
    }
    int ret = rc == SQLITE_DONE || rc == SQLITE_ROW
                  ? 0 : ix_db_fail(ix, "verify sources");
    sqlite3_finalize(st);
    return ret;
}

int index_events_sum(struct index *ix, int64_t tid,
                     const struct index_window *w, struct index_event_sum *out)
{
    sqlite3_stmt *st = ix_prepare(
        ix, "SELECT kind, count(*), coalesce(sum(blocks), 0),"
            " coalesce(sum(bytes), 0) FROM events WHERE " RP_WINDOW
            " GROUP BY kind");
    int ret;

    memset(out, 0, sizeof *out);
    if (st == NULL)
        return -EIO;
    if (bind_window(st, tid, w))
        ret = ix_db_fail(ix, "events sum bind");
    else
        ret = events_kinds(ix, st, out);
    sqlite3_finalize(st);
    if (ret == 0 && out->error_events)
        ret = events_last_error(ix, tid, w, out);
    if (ret == 0 && out->verify_events)
        ret = events_verify(ix, tid, w, out);
    return ret;
}

/* meta values are TEXT; a missing or non-numeric one reads as 0. */
static int meta_i64(struct index *ix, const char *key, int64_t *v)
{
    sqlite3_stmt *st = ix_prepare(
        ix, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?1");
    int ret;

    *v = 0;
    if (st == NULL)
        return -EIO;
    if (ix_bind_cstr(st, 1, key))
        ret = ix_db_fail(ix, "meta bind");
    else
        ret = rp_step_row(ix, st, "meta");
    if (ret == 0)
        *v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return ret == -ENOENT ? 0 : ret;
}

int index_report_cursor(struct index *ix, int64_t *id, int64_t *ts)
{
    int ret = meta_i64(ix, INDEX_META_CURSOR, id);

    if (ret == 0)
        ret = meta_i64(ix, INDEX_META_CURSOR_TS, ts);
    return ret;
}

/* The cursor never moves back: two reports finishing out of order must not
 * make the next one repeat events. */
static const char advance_sql[] =
    "BEGIN IMMEDIATE;"
    "INSERT INTO meta (key, value) VALUES ('" INDEX_META_CURSOR "', ?1)"
    " ON CONFLICT(key) DO UPDATE SET value ="
    " max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER));"
    "INSERT OR REPLACE INTO meta (key, value)"
    " VALUES ('" INDEX_META_CURSOR_TS "', ?2);"
    /* Keep the newest row whatever its age: event ids are rowids, and an
     * emptied table would hand out ids from 1 again, below the cursor. */
    "DELETE FROM events WHERE ts < ?3"
    " AND id < (SELECT max(id) FROM events);"
    "COMMIT;";

/* Run each statement of a multi-statement string, binding ?1..?3 by
 * position where a statement uses them.  SQLITE_OK, or the SQLite code of
 * the call that failed (SQLITE_ERROR for a parameter out of args). */
static int run_script(sqlite3 *db, const char *sql, const int64_t *args,
                      int nargs)
{
    const char *tail = sql;

    while (tail && *tail) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db, tail, -1, &st, &tail);
        if (rc != SQLITE_OK)
            return rc;
        if (st == NULL)
            break;
        int bad = 0;
        /* ?N numbers parameters up to N, so unused slots have no name. */
        for (int i = 1; i <= sqlite3_bind_parameter_count(st) && !bad; i++) {
            const char *nm = sqlite3_bind_parameter_name(st, i);
            if (nm == NULL)
                continue;
            int k = atoi(nm + 1);
            bad = k < 1 || k > nargs ||
                  sqlite3_bind_int64(st, i, args[k - 1]) != SQLITE_OK;
        }
        rc = bad ? SQLITE_ERROR : sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
            return rc;
    }
    return SQLITE_OK;
}

int index_report_advance(const char *cache_dir, int64_t id, int64_t now,
                         int64_t prune_before)
{
    char path[PATH_MAX];
    struct stat sb;
    struct index ix = {0};
    int rc = ix_open_existing(cache_dir, SQLITE_OPEN_READWRITE, &ix, &sb, path);

    if (rc < 0)
        return rc;
    int64_t args[3] = {id, now, prune_before};
    if (run_script(ix.db, advance_sql, args, 3) != SQLITE_OK) {
        rc = ix_db_fail(&ix, "report cursor");
        if (!sqlite3_get_autocommit(ix.db))
            sqlite3_exec(ix.db, "ROLLBACK", NULL, NULL, NULL);
    }
    ix_close_db(&ix);
    return rc;
}
