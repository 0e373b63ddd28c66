/* The durable index in cache_dir/index.db; see ic-index.h for the contract.
 *
 * With index-report.c and index-scrub.c (the tools' queries, sharing
 * index-priv.h), the only files that include sqlite3.h.  Every statement
 * the daemon runs is prepared once at open and kept in the struct:
 * index_apply() runs on the writer thread's group-commit path, and
 * re-preparing per record would cost more than the insert itself.
 *
 * Errors: every SQLite failure is logged once here (with sqlite3_errmsg) and
 * reported to the caller as -EIO, except a lock held by another connection
 * (SQLITE_BUSY, SQLITE_LOCKED), which is -EBUSY: the index is fine, the
 * caller may try again (the writer does, and then logs it itself). */
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
#include "index-priv.h"
#include "ic-log.h"

/* How long a statement waits for another connection's lock before it fails
 * with -EBUSY: the daemon's commits take milliseconds, so this is only ever
 * reached when someone holds the index locked on purpose (an sqlite3 shell,
 * a backup).  The writer thread waits less and retries (index_retry_busy). */
#define INDEX_BUSY_MS 5000

/* open_rw() result meaning "the file is not a usable index: move it aside".
 * Positive so it never collides with a -errno. */
#define IX_UNUSABLE 1

#define IX_STR_(x) #x
#define IX_STR(x) IX_STR_(x)
/* meta.schema_version as stored (TEXT). */
#define IX_VERSION IX_STR(INDEX_SCHEMA_VERSION)


static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_TMPL_GET] = "SELECT id, name, origin, size, mtime_ns, validator, "
                    "generation, block_size, quota FROM templates "
                    "WHERE name = ?1",
    /* Upsert (SQLite >= 3.24) keeps the row's id stable across updates. */
    [ST_TMPL_PUT] = "INSERT INTO templates (name, origin, size, mtime_ns, "
                    "validator, generation, block_size, quota) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
                    "ON CONFLICT(name) DO UPDATE SET "
                    "origin = excluded.origin, size = excluded.size, "
                    "mtime_ns = excluded.mtime_ns, "
                    "validator = excluded.validator, "
                    "generation = excluded.generation, "
                    "block_size = excluded.block_size, "
                    "quota = excluded.quota",
    [ST_TMPL_ID] = "SELECT id FROM templates WHERE name = ?1",
    [ST_DROP_GENS] = "DELETE FROM blocks WHERE tid = ?1 AND gen <> ?2 "
                     "AND gen <> ?3",
    [ST_LOAD] = "SELECT blk, csum, atime, flags FROM blocks "
                "WHERE tid = ?1 AND gen = ?2 ORDER BY blk",
    [ST_ADD] = "INSERT OR REPLACE INTO blocks (tid, gen, blk, csum, atime, "
               "flags) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_DEL] = "DELETE FROM blocks WHERE tid = ?1 AND gen = ?2 AND blk = ?3",
    [ST_EVENT] = "INSERT INTO events (ts, tid, kind, blocks, bytes, detail) "
                 "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_SHA_FIND] = "SELECT tid, gen, blk FROM blocks WHERE sha = ?1 "
                    "LIMIT 4",
};

/* ST_ADD once blocks has its sha column.  A record without a hash (an
 * eviction that kept its block, a fill without a manifest) keeps the
 * row's hash as long as the block's checksum says it is the same bytes. */
static const char add_sha_sql[] =
    "INSERT INTO blocks (tid, gen, blk, csum, atime, flags, sha) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
    "ON CONFLICT (tid, gen, blk) DO UPDATE SET csum = excluded.csum, "
    "atime = excluded.atime, flags = excluded.flags, "
    "sha = CASE WHEN excluded.sha IS NOT NULL THEN excluded.sha "
    "WHEN blocks.csum = excluded.csum THEN blocks.sha END";

/* Columns added to schema 2 in place (ALTER TABLE ... ADD COLUMN, with
 * defaults: a binary that does not know them keeps working on the file,
 * and one that replaces a counters row leaves them at their defaults).
 * A read-write open adds the missing ones (added_columns); a read-only
 * open uses what is there and reads the rest as 0.
 *   counters.ra_fetched, ra_used      readahead bytes fetched, and read
 *   blocks.sha BLOB                   the SHA-256 of a present block, when
 *                                     the daemon knew it (a manifest
 *                                     verified it): delta fills look
 *                                     blocks up by it (index blocks_sha)
 *   counters.local_blocks, local_bytes, verified, verify_failed,
 *   zero_skipped                      the manifest figures
 *   counters.last_used                wall-clock seconds of the newest
 *                                     demand read (pre-warm order) */
struct added_col {
    const char *table, *col, *decl;
};
static const struct added_col added_cols[] = {
    {"counters", "ra_fetched", "INTEGER NOT NULL DEFAULT 0"},
    {"counters", "ra_used", "INTEGER NOT NULL DEFAULT 0"},
    {"blocks", "sha", "BLOB DEFAULT NULL"},
    {"counters", "local_blocks", "INTEGER NOT NULL DEFAULT 0"},
    {"counters", "local_bytes", "INTEGER NOT NULL DEFAULT 0"},
    {"counters", "verified", "INTEGER NOT NULL DEFAULT 0"},
    {"counters", "verify_failed", "INTEGER NOT NULL DEFAULT 0"},
    {"counters", "zero_skipped", "INTEGER NOT NULL DEFAULT 0"},
    {"counters", "last_used", "INTEGER NOT NULL DEFAULT 0"},
};
static const char sha_index_sql[] =
    "CREATE INDEX IF NOT EXISTS blocks_sha ON blocks (sha) "
    "WHERE sha IS NOT NULL";

/* The counters columns, in struct index_counters' order (counter_field);
 * evicted_low and evicted_high are missing only from a version 1 index. */
static const char *const counter_cols[] = {
    "hits", "misses", "origin_bytes", "origin_reads", "fill_errors",
    "evictions", "evicted_bytes", "uncached", "evicted_low", "evicted_high",
    "ra_fetched", "ra_used", "local_blocks", "local_bytes", "verified",
    "verify_failed", "zero_skipped", "last_used"};
#define N_COUNTERS (sizeof counter_cols / sizeof counter_cols[0])

static int has_column(struct index *ix, const char *table, const char *col);

/* The counters statements for the columns this file has: a missing one
 * reads as 0 (a read-only open of an older file).  0 or -EIO. */
static int counters_sql_build(struct index *ix)
{
    char *get = ix->counters_get_sql, *put = ix->counters_put_sql;
    size_t gl = 0, pl = 0, gz = sizeof ix->counters_get_sql,
           pz = sizeof ix->counters_put_sql;
    gl += (size_t)snprintf(get + gl, gz - gl, "SELECT");
    pl += (size_t)snprintf(put + pl, pz - pl,
                           "INSERT OR REPLACE INTO counters (tid");
    for (size_t i = 0; i < N_COUNTERS; i++) {
        int r = has_column(ix, "counters", counter_cols[i]);
        if (r < 0)
            return r;
        gl += (size_t)snprintf(get + gl, gz - gl, "%s %s", i ? "," : "",
                               r ? counter_cols[i] : "0");
        pl += (size_t)snprintf(put + pl, pz - pl, ", %s", counter_cols[i]);
    }
    gl += (size_t)snprintf(get + gl, gz - gl,
                           " FROM counters WHERE tid = ?1");
    pl += (size_t)snprintf(put + pl, pz - pl, ") VALUES (?1");
    for (size_t i = 0; i < N_COUNTERS; i++)
        pl += (size_t)snprintf(put + pl, pz - pl, ", ?%zu", i + 2);
    pl += (size_t)snprintf(put + pl, pz - pl, ")");
    return gl < gz && pl < pz ? 0 : -EIO; /* the buffers are sized for it */
}

/* Every table of schema_sql: an index carrying our version without one of
 * them was tampered with (an sqlite3 shell's DROP TABLE), and would open
 * only to fail at the first statement that needs it, perhaps hours later.
 * No table is added to an existing file (only columns, added_cols), so
 * every one is required of a file of either version. */
static const char *const required_tables[] = {"meta", "templates", "blocks",
                                              "pins", "events", "counters"};

/* The statements prepared per call (index_pins_*); prepare_all compiles
 * them once at open to find a table without their columns. */
#define PINS_INSERT_SQL                                                   \
    "INSERT INTO pins (tid, start, len, source, class)"                  \
    " VALUES (?1, ?2, ?3, ?5, ?4)"
#define PINS_LOAD_V1_SQL                                                  \
    "SELECT start, len, 'boot', source FROM pins WHERE tid = ?1 ORDER BY start"
#define PINS_LOAD_SQL                                                     \
    "SELECT start, len, class, source FROM pins WHERE tid = ?1"          \
    " ORDER BY class, start"

/* Created in one transaction so a crash never leaves half a schema (which
 * would later look like a foreign database). */
static const char schema_sql[] =
    "BEGIN IMMEDIATE;"
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);"
    "CREATE TABLE IF NOT EXISTS templates (id INTEGER PRIMARY KEY,"
    " name TEXT UNIQUE NOT NULL, origin TEXT, size INTEGER,"
    " mtime_ns INTEGER, validator TEXT, generation INTEGER,"
    " block_size INTEGER, quota INTEGER);"
    "CREATE TABLE IF NOT EXISTS blocks (tid INTEGER, gen INTEGER,"
    " blk INTEGER, csum INTEGER, atime INTEGER, flags INTEGER,"
    " PRIMARY KEY (tid, gen, blk)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS pins (tid INTEGER, start INTEGER,"
    " len INTEGER, source TEXT, class TEXT NOT NULL DEFAULT 'boot');"
    "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, ts INTEGER,"
    " tid INTEGER, kind TEXT, blocks INTEGER, bytes INTEGER, detail TEXT);"
    "CREATE TABLE IF NOT EXISTS counters (tid INTEGER PRIMARY KEY,"
    " hits INTEGER, misses INTEGER, origin_bytes INTEGER,"
    " origin_reads INTEGER, fill_errors INTEGER, evictions INTEGER,"
    " evicted_bytes INTEGER, uncached INTEGER,"
    " evicted_low INTEGER NOT NULL DEFAULT 0,"
    " evicted_high INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS events_ts ON events (ts);"
    "CREATE INDEX IF NOT EXISTS pins_tid ON pins (tid);"
    /* OR IGNORE: a second process initialising the same empty file at the
     * same moment (serialised by BEGIN IMMEDIATE) finds the row there. */
    "INSERT OR IGNORE INTO meta (key, value)"
    " VALUES ('schema_version', '" IX_VERSION "');"
    "COMMIT;";


/* ------------------------------------------------------------ helpers
 * The bind_* helpers, query_text and run_script hand on SQLite's result
 * codes (SQLITE_OK is 0); ix_db_fail() and open_fail() are where a failure
 * becomes the -errno every index_* function returns. */

/* Another connection holds a lock we need (primary or extended code). */
static int is_busy(int rc)
{
    rc &= 0xff;
    return rc == SQLITE_BUSY || rc == SQLITE_LOCKED;
}

int ix_db_fail(struct index *ix, const char *what)
{
    if (is_busy(sqlite3_errcode(ix->db))) {
        if (!ix->retry_busy)
            log_err("index: %s: %s (another process holds the index "
                    "locked)", what, sqlite3_errmsg(ix->db));
        return -EBUSY;
    }
    log_err("index: %s: %s", what, sqlite3_errmsg(ix->db));
    return -EIO;
}

/* Leave a statement reusable and free of borrowed pointers: bindings use
 * SQLITE_STATIC, so they must not outlive the caller's strings. */
static void st_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* SQLite integers are signed 64-bit; uint64 values (checksums can exceed
 * INT64_MAX) are stored as their bit pattern and cast back on load. */
int ix_bind_u64(sqlite3_stmt *st, int i, uint64_t v)
{
    return sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}

int ix_bind_i64(sqlite3_stmt *st, int i, int64_t v)
{
    return sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}

/* Bounded: the fixed arrays of struct index_tmpl need not be terminated. */
static int bind_str(sqlite3_stmt *st, int i, const char *s, size_t max)
{
    if (s == NULL)
        return sqlite3_bind_null(st, i);
    return sqlite3_bind_text(st, i, s, (int)strnlen(s, max), SQLITE_STATIC);
}

/* A caller's NUL-terminated string, whatever its length. */
int ix_bind_cstr(sqlite3_stmt *st, int i, const char *s)
{
    if (s == NULL)
        return sqlite3_bind_null(st, i);
    return sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

uint64_t ix_col_u64(sqlite3_stmt *st, int i)
{
    return (uint64_t)sqlite3_column_int64(st, i);
}

void ix_col_str(sqlite3_stmt *st, int i, char *out, size_t len)
{
    const unsigned char *s = sqlite3_column_text(st, i);

    snprintf(out, len, "%s", s ? (const char *)s : "");
}

/* Step a statement that returns no rows, then make it reusable. */
static int step_done(struct index *ix, enum stmt_id id, const char *what)
{
    int rc = sqlite3_step(ix->st[id]);
    int ret = rc == SQLITE_DONE ? 0 : ix_db_fail(ix, what);

    st_done(ix->st[id]);
    return ret;
}

/* Undo an open transaction.  SQLite rolls some errors back by itself
 * (SQLITE_FULL, SQLITE_IOERR, ...), hence the autocommit test. */
static void rollback(struct index *ix)
{
    if (!sqlite3_get_autocommit(ix->db))
        step_done(ix, ST_ROLLBACK, "rollback");
}

void ix_close_db(struct index *ix)
{
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(ix->st[i]);
        ix->st[i] = NULL;
    }
    /* With every statement finalized, close cannot return SQLITE_BUSY; the
     * last connection of a WAL database checkpoints and removes -wal here. */
    if (ix->db && sqlite3_close(ix->db) != SQLITE_OK)
        log_err("index: close: %s", sqlite3_errmsg(ix->db));
    ix->db = NULL;
}

/* Run one statement of fixed SQL that yields at most one text value.  Used
 * only while opening.  Returns the sqlite result code of the failing call
 * or SQLITE_OK; *out is "" when there was no row. */
int ix_query_text(sqlite3 *db, const char *sql, char *out, size_t len)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

    out[0] = '\0';
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        ix_col_str(st, 0, out, len);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Whether an error code means the bytes on disk are not a database we can
 * use, as opposed to a transient or environmental failure (busy, I/O, out of
 * memory) where moving the file aside would destroy a good index. */
static int is_damage(int rc)
{
    rc &= 0xff;
    return rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB;
}

/* Classify a failure during open: damage -> IX_UNUSABLE with a reason for
 * the move-aside log line; anything else is logged and -EIO. */
static int open_fail(struct index *ix, int rc, const char *what, char *why,
                     size_t whylen)
{
    if (is_damage(rc)) {
        snprintf(why, whylen, "%s: %s", what, sqlite3_errmsg(ix->db));
        return IX_UNUSABLE;
    }
    return ix_db_fail(ix, what);
}

/* ------------------------------------------------------------ opening */

/* quick_check walks every b-tree page (without integrity_check's costly
 * index cross-checks: ~0.1 s for a million blocks), so a truncated or
 * scribbled file is caught here rather than by a failing query hours
 * later. */
static int check_pages(struct index *ix, char *why, size_t whylen)
{
    char res[256];
    int rc = ix_query_text(ix->db, "PRAGMA quick_check", res, sizeof res);

    if (rc != SQLITE_OK)
        return open_fail(ix, rc, "quick_check", why, whylen);
    if (strcmp(res, "ok") != 0) {
        snprintf(why, whylen, "quick_check: %s", res);
        return IX_UNUSABLE;
    }
    return 0;
}

/* 0 with *empty set for a database without tables (new, or zero-length),
 * 0 for our schema version, IX_UNUSABLE for anything else. */
static int check_schema(struct index *ix, int *empty, char *why,
                        size_t whylen)
{
    char res[64];
    int rc = ix_query_text(ix->db, "SELECT count(*) FROM sqlite_master", res,
                        sizeof res);

    if (rc != SQLITE_OK)
        return open_fail(ix, rc, "reading schema", why, whylen);
    *empty = strcmp(res, "0") == 0;
    if (*empty)
        return 0;
    rc = ix_query_text(ix->db,
                    "SELECT value FROM meta WHERE key = 'schema_version'",
                    res, sizeof res);
    /* "no such table: meta" is SQLITE_ERROR: a database, but not ours. */
    if ((rc & 0xff) == SQLITE_ERROR || (rc == SQLITE_OK && res[0] == '\0')) {
        snprintf(why, whylen, "no schema version: not an imgcache index");
        return IX_UNUSABLE;
    }
    if (rc != SQLITE_OK)
        return open_fail(ix, rc, "reading schema version", why, whylen);
    if (strcmp(res, "1") == 0) {
        ix->version = 1; /* before pin classes: migrate_v1() */
    } else if (strcmp(res, IX_VERSION) == 0) {
        ix->version = INDEX_SCHEMA_VERSION;
    } else {
        snprintf(why, whylen, "unknown schema version %s", res);
        return IX_UNUSABLE;
    }
    for (size_t i = 0;
         i < sizeof required_tables / sizeof required_tables[0]; i++) {
        int r = has_column(ix, required_tables[i], NULL);
        if (r < 0)
            return r;
        if (r == 0) {
            snprintf(why, whylen, "schema: no table %s", required_tables[i]);
            return IX_UNUSABLE;
        }
    }
    return 0;
}

/* Version 1 to 2 (pin classes): every pin it holds was what is now a boot
 * pin (the column's default), no eviction was of a class.  Under BEGIN
 * IMMEDIATE, the version read again inside: of two processes opening the
 * same old index at once, the second finds it migrated. */
static const char migrate_v1_sql[] =
    "ALTER TABLE pins ADD COLUMN class TEXT NOT NULL DEFAULT 'boot';"
    "ALTER TABLE counters ADD COLUMN evicted_low INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE counters ADD COLUMN evicted_high INTEGER NOT NULL DEFAULT 0;"
    "UPDATE meta SET value = '2' WHERE key = 'schema_version';";

static int migrate_v1(struct index *ix)
{
    char res[64];
    if (sqlite3_exec(ix->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
        SQLITE_OK)
        return ix_db_fail(ix, "schema migration begin");
    int rc = ix_query_text(ix->db,
                           "SELECT value FROM meta WHERE key = "
                           "'schema_version'", res, sizeof res);
    if (rc == SQLITE_OK && strcmp(res, "1") == 0)
        rc = sqlite3_exec(ix->db, migrate_v1_sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(ix->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int ret = ix_db_fail(ix, "schema migration to version 2");
        if (!sqlite3_get_autocommit(ix->db))
            sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
        return ret;
    }
    log_info("index: migrated to schema version 2 (pin classes): its pins "
             "are boot pins");
    ix->version = INDEX_SCHEMA_VERSION;
    return 0;
}

/* Whether table has column col (PRAGMA table_info), or any column (col
 * NULL: whether the table exists): 1, 0 (also when there is no such
 * table), or -EIO. */
static int has_column(struct index *ix, const char *table, const char *col)
{
    char sql[128];
    sqlite3_stmt *st = NULL;
    int found = 0, rc;
    snprintf(sql, sizeof sql, "PRAGMA table_info(%s)", table);
    if (sqlite3_prepare_v2(ix->db, sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return ix_db_fail(ix, "table_info");
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 1);
        if (name != NULL && (col == NULL || strcmp(name, col) == 0))
            found = 1;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? found : ix_db_fail(ix, "table_info step");
}

/* Add the missing added_cols (add: a read-write open), under BEGIN
 * IMMEDIATE with the check inside: of two processes opening the index at
 * once, the second finds them there.  Then note which exist (has_sha,
 * counters_sql). */
static int added_columns(struct index *ix, int add)
{
    int rc = SQLITE_OK;
    int missing = 0; /* looked for first: a write lock only when needed */
    for (size_t i = 0; add && i < sizeof added_cols / sizeof added_cols[0];
         i++) {
        int t = has_column(ix, added_cols[i].table, NULL);
        int r = t > 0 ? has_column(ix, added_cols[i].table,
                                   added_cols[i].col)
                      : t;
        if (r < 0)
            return r;
        missing += t > 0 && r == 0;
    }
    if (add && missing) {
        rc = sqlite3_exec(ix->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        for (size_t i = 0;
             rc == SQLITE_OK && i < sizeof added_cols / sizeof added_cols[0];
             i++) {
            const struct added_col *a = &added_cols[i];
            int t = has_column(ix, a->table, NULL);
            int r = t > 0 ? has_column(ix, a->table, a->col) : t;
            if (r < 0) {
                rc = SQLITE_ERROR;
            } else if (t > 0 && r == 0) { /* no table: prepare_all says so */
                char sql[192];
                snprintf(sql, sizeof sql, "ALTER TABLE %s ADD COLUMN %s %s",
                         a->table, a->col, a->decl);
                rc = sqlite3_exec(ix->db, sql, NULL, NULL, NULL);
            }
        }
        if (rc == SQLITE_OK && has_column(ix, "blocks", "sha") > 0)
            rc = sqlite3_exec(ix->db, sha_index_sql, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(ix->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            int ret = ix_db_fail(ix, "adding columns");
            if (!sqlite3_get_autocommit(ix->db))
                sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
            return ret;
        }
    }
    int r = has_column(ix, "blocks", "sha");
    if (r < 0)
        return r;
    ix->has_sha = r;
    return counters_sql_build(ix);
}

/* WAL lets the tools read while the writer commits.  synchronous=NORMAL
 * does not sync the WAL at each commit, so a power loss may drop the last
 * commits; it never makes the index claim a block whose data is not durable,
 * because the writer fdatasyncs the data files before committing the rows.
 * A lost commit only means those blocks are fetched again.  Without WAL
 * (a filesystem lacking shared memory for -shm), NORMAL can in rare cases
 * corrupt a rollback-journal database on power loss, so FULL is used. */
static int set_journal(struct index *ix)
{
    char mode[32];
    int rc = ix_query_text(ix->db, "PRAGMA journal_mode=WAL", mode, sizeof mode);

    if (rc != SQLITE_OK)
        return ix_db_fail(ix, "journal_mode=WAL");
    int wal = strcmp(mode, "wal") == 0;
    ix->wal = wal;
    if (!wal)
        log_warn("index: WAL unavailable (journal mode %s); using "
                 "synchronous=FULL", mode);
    const char *sync = wal ? "PRAGMA synchronous=NORMAL"
                           : "PRAGMA synchronous=FULL";
    if (sqlite3_exec(ix->db, sync, NULL, NULL, NULL) != SQLITE_OK)
        return ix_db_fail(ix, "synchronous");
    return 0;
}

/* Runs before prepare_all(), so the cached ROLLBACK is not there yet. */
static int create_schema(struct index *ix)
{
    if (sqlite3_exec(ix->db, schema_sql, NULL, NULL, NULL) == SQLITE_OK)
        return 0;
    int ret = ix_db_fail(ix, "creating schema");
    if (!sqlite3_get_autocommit(ix->db))
        sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
    return ret;
}

/* Compile sql and throw it away: 0, or prepare_all's verdict. */
static int compiles(struct index *ix, const char *sql, char *why,
                    size_t whylen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(ix->db, sql, -1, &st, NULL);
    sqlite3_finalize(st);
    if (rc == SQLITE_OK)
        return 0;
    if ((rc & 0xff) == SQLITE_ERROR) {
        snprintf(why, whylen, "schema: %s", sqlite3_errmsg(ix->db));
        return IX_UNUSABLE;
    }
    return open_fail(ix, rc, "prepare", why, whylen);
}

/* A statement that does not compile against a database carrying our
 * schema version means the schema was tampered with (SQLITE_ERROR: no such
 * table/column): unusable.  Other failures are environmental.  rw: also
 * the writes prepared per call (a read-only open of an older file lacks
 * columns only a read-write open adds). */
static int prepare_all(struct index *ix, int rw, char *why, size_t whylen)
{
    for (int i = 0; i < ST_COUNT; i++) {
        const char *sql = stmt_sql[i];
        if (i == ST_ADD && ix->has_sha)
            sql = add_sha_sql;
        if (i == ST_SHA_FIND && !ix->has_sha)
            continue;
        int rc = sqlite3_prepare_v3(ix->db, sql, -1,
                                    SQLITE_PREPARE_PERSISTENT, &ix->st[i],
                                    NULL);
        if (rc == SQLITE_OK)
            continue;
        if ((rc & 0xff) == SQLITE_ERROR) {
            snprintf(why, whylen, "schema: %s", sqlite3_errmsg(ix->db));
            return IX_UNUSABLE;
        }
        return open_fail(ix, rc, "prepare", why, whylen);
    }
    int ret = compiles(ix, ix->counters_get_sql, why, whylen);
    if (ret == 0)
        ret = compiles(ix, ix->version == 1 ? PINS_LOAD_V1_SQL : PINS_LOAD_SQL,
                       why, whylen);
    if (ret == 0 && rw)
        ret = compiles(ix, ix->counters_put_sql, why, whylen);
    if (ret == 0 && rw)
        ret = compiles(ix, PINS_INSERT_SQL, why, whylen);
    return ret;
}

/* sqlite3_open_v2 reports the OS error of a failed open; pass it up when
 * there is one (e.g. ENOENT for a missing cache_dir). */
static int open_errno(struct index *ix, const char *path)
{
    int e = ix->db ? sqlite3_system_errno(ix->db) : 0;

    log_err("index: cannot open %s: %s", path,
            ix->db ? sqlite3_errmsg(ix->db) : "out of memory");
    return e > 0 ? -e : -EIO;
}

/* SQLITE_OPEN_NOFOLLOW covers index.db only; SQLite would follow a
 * symlink planted as its -wal or -shm and write through it. */
static int side_files_plain(const char *path, char *why, size_t whylen)
{
    static const char *const side[] = {"-wal", "-shm"};
    char p[PATH_MAX];
    struct stat sb;
    for (size_t i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s%s", path, side[i]);
        if (lstat(p, &sb) == 0 && !S_ISREG(sb.st_mode)) {
            snprintf(why, whylen, "%s is not a regular file", p);
            return -ELOOP;
        }
    }
    return 0;
}

/* Open read-write and validate (with quick_check unless `again`: the
 * daemon already holds the index open and checked it).  0, -errno, or
 * IX_UNUSABLE with why set. */
static int open_rw(struct index *ix, const char *path, int again, char *why,
                   size_t whylen)
{
    struct stat sb;
    int existed = lstat(path, &sb) == 0;
    if (side_files_plain(path, why, whylen) < 0)
        return IX_UNUSABLE;
    int rc = sqlite3_open_v2(path, &ix->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                 SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_NOFOLLOW,
                             NULL);

    if (rc != SQLITE_OK) {
        /* A file we cannot even open (a directory, unreadable) is moved
         * aside like a corrupt one; a failure to create one is not. */
        if (!existed)
            return open_errno(ix, path);
        snprintf(why, whylen, "open: %s",
                 ix->db ? sqlite3_errmsg(ix->db) : "out of memory");
        return IX_UNUSABLE;
    }
    sqlite3_busy_timeout(ix->db, INDEX_BUSY_MS);
    /* Start-up reads the whole index twice (quick_check, then the block
     * list): through a map, not 4K preads. */
    sqlite3_exec(ix->db, "PRAGMA mmap_size=268435456", NULL, NULL, NULL);
    int empty = 0;
    int ret = again ? 0 : check_pages(ix, why, whylen);
    if (ret == 0)
        ret = check_schema(ix, &empty, why, whylen);
    if (ret == 0)
        ret = set_journal(ix);
    if (ret == 0 && empty) {
        ret = create_schema(ix);
        ix->version = INDEX_SCHEMA_VERSION;
    }
    if (ret == 0 && ix->version == 1)
        ret = migrate_v1(ix);
    if (ret == 0)
        ret = added_columns(ix, 1);
    if (ret == 0)
        ret = prepare_all(ix, 1, why, whylen);
    return ret;
}

/* Rename one file aside, or remove it if it cannot be renamed.
 * 0 if it is gone from its place (1 if it had to be unlinked), -errno. */
static int aside_one(const char *from, const char *to)
{
    if (rename(from, to) == 0 || errno == ENOENT)
        return 0;
    if (unlink(from) == 0 || errno == ENOENT)
        return 1;
    return -errno;
}

/* Move index.db and its -wal/-shm to index.db.bad-<unix time>.  The -wal
 * goes first: a stale WAL left beside a fresh database would be replayed
 * into it.  Logs the one line that explains the empty cache. */
static int move_aside(struct index *ix, const char *path, const char *why)
{
    static const char *const side[] = {"-wal", "-shm"};
    /* Room for a suffix on any path that fits PATH_MAX. */
    char bad[PATH_MAX + 32], from[PATH_MAX + 8], to[sizeof bad + 8];
    long long now = (long long)time(NULL);

    /* Never overwrite an earlier bad index: it may be the evidence. */
    for (int n = 0;; n++) {
        int len = n ? snprintf(bad, sizeof bad, "%s.bad-%lld.%d", path, now, n)
                    : snprintf(bad, sizeof bad, "%s.bad-%lld", path, now);
        if ((size_t)len >= sizeof bad)
            return -ENAMETOOLONG;
        if (access(bad, F_OK) != 0)
            break;
    }
    for (size_t i = 0; i < sizeof side / sizeof side[0]; i++) {
        snprintf(from, sizeof from, "%s%s", path, side[i]);
        snprintf(to, sizeof to, "%s%s", bad, side[i]);
        int rc = aside_one(from, to);
        if (rc < 0) {
            log_err("index: %s is unreadable (%s); cannot remove %s: %s",
                    path, why, from, strerror(-rc));
            return rc;
        }
    }
    int rc = aside_one(path, bad);
    if (rc < 0) {
        log_err("index: %s is unreadable (%s); cannot move it aside: %s",
                path, why, strerror(-rc));
        return rc;
    }
    if (rc == 1) {
        log_err("index: %s is unreadable (%s); could not move it aside, "
                "removed it, starting with an empty cache", path, why);
        return 0;
    }
    log_err("index: %s is unreadable (%s); moved aside to %s, starting "
            "with an empty cache", path, why, bad);
    ix->moved_aside = strdup(bad);
    return ix->moved_aside ? 0 : -ENOMEM;
}

static int index_path(char *out, size_t len, const char *cache_dir)
{
    if ((size_t)snprintf(out, len, "%s/%s", cache_dir, INDEX_FILE) >= len)
        return -ENAMETOOLONG;
    return 0;
}

/* A damaged index: set it aside and start a fresh one in its place. */
static int replace_unusable(struct index *ix, const char *path, char *why,
                            size_t whylen)
{
    /* Close first: closing later would delete the fresh index's -wal by
     * name.  No checkpoint on this close, so the -wal is moved aside as
     * found rather than folded into (or deleted beside) a damaged file. */
    if (ix->db)
        sqlite3_db_config(ix->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    ix_close_db(ix);
    int rc = move_aside(ix, path, why);
    if (rc == 0)
        rc = open_rw(ix, path, 0, why, whylen);
    if (rc == IX_UNUSABLE) {
        log_err("index: fresh %s is unusable (%s)", path, why);
        rc = -EIO;
    }
    return rc;
}

/* The read-write opens: first at start (`again` 0: checked, a damaged
 * index replaced) or again while the daemon runs (no check, no move). */
static int open_index(const char *cache_dir, int again, struct index **out)
{
    char path[PATH_MAX], why[512];
    int rc = index_path(path, sizeof path, cache_dir);

    if (rc < 0)
        return rc;
    struct index *ix = calloc(1, sizeof *ix);
    if (ix == NULL)
        return -ENOMEM;
    rc = open_rw(ix, path, again, why, sizeof why);
    if (rc == IX_UNUSABLE && !again)
        rc = replace_unusable(ix, path, why, sizeof why);
    if (rc == IX_UNUSABLE) {
        log_err("index: cannot open %s again: %s", path, why);
        rc = -EIO;
    }
    if (rc < 0) {
        index_close(ix);
        return rc;
    }
    *out = ix;
    return 0;
}

int index_open(const char *cache_dir, struct index **out)
{
    return open_index(cache_dir, 0, out);
}

int index_reopen(const char *cache_dir, struct index **out)
{
    return open_index(cache_dir, 1, out);
}

/* Open an existing index.db without creating it: the tools' side doors.
 * 0; -ENOENT when missing (stat first: SQLite only says "cannot open");
 * -ELOOP for a symlinked -wal/-shm; else -errno/-EIO.  *sb and path
 * (the index's) are filled. */
int ix_open_existing(const char *cache_dir, int flags, struct index *ix,
                         struct stat *sb, char path[PATH_MAX])
{
    char why[PATH_MAX + 64];
    int rc = index_path(path, PATH_MAX, cache_dir);

    if (rc < 0)
        return rc;
    if (stat(path, sb) < 0)
        return -errno;
    if (side_files_plain(path, why, sizeof why) < 0) {
        log_err("index: %s", why);
        return -ELOOP;
    }
    if (sqlite3_open_v2(path, &ix->db,
                        flags | SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_NOFOLLOW,
                        NULL) != SQLITE_OK) {
        rc = open_errno(ix, path);
        ix_close_db(ix);
        return rc;
    }
    sqlite3_busy_timeout(ix->db, INDEX_BUSY_MS);
    return 0;
}

int index_open_ro(const char *cache_dir, struct index **out)
{
    char path[PATH_MAX], why[512];
    struct stat sb;
    struct index *ix = calloc(1, sizeof *ix);

    if (ix == NULL)
        return -ENOMEM;
    /* No journal_mode pragma: it would need a write.  A WAL database is
     * read as WAL regardless. */
    int rc = ix_open_existing(cache_dir, SQLITE_OPEN_READONLY, ix, &sb, path);
    if (rc < 0) {
        index_close(ix);
        return rc;
    }
    int empty = 0;
    rc = check_schema(ix, &empty, why, sizeof why);
    if (rc == 0 && empty) {
        snprintf(why, sizeof why, "no tables");
        rc = IX_UNUSABLE;
    }
    if (rc == 0)
        rc = added_columns(ix, 0);
    if (rc == 0)
        rc = prepare_all(ix, 0, why, sizeof why);
    if (rc == IX_UNUSABLE) {
        log_err("index: %s is unreadable (%s)", path, why);
        rc = -EIO;
    }
    if (rc < 0) {
        index_close(ix);
        return rc;
    }
    *out = ix;
    return 0;
}

void index_close(struct index *ix)
{
    if (ix == NULL)
        return;
    ix_close_db(ix);
    free(ix->moved_aside);
    free(ix);
}

const char *index_moved_aside(const struct index *ix)
{
    return ix->moved_aside;
}

void index_retry_busy(struct index *ix, int wait_ms)
{
    ix->retry_busy = 1;
    sqlite3_busy_timeout(ix->db, wait_ms);
}

/* ------------------------------------------------------------ templates */

void ix_tmpl_from_row(sqlite3_stmt *st, struct index_tmpl *t)
{
    t->id = sqlite3_column_int64(st, 0);
    ix_col_str(st, 1, t->name, sizeof t->name);
    ix_col_str(st, 2, t->origin, sizeof t->origin);
    t->size = ix_col_u64(st, 3);
    t->mtime_ns = sqlite3_column_int64(st, 4);
    ix_col_str(st, 5, t->validator, sizeof t->validator);
    t->generation = ix_col_u64(st, 6);
    t->block_size = (uint32_t)sqlite3_column_int64(st, 7);
    t->quota = ix_col_u64(st, 8);
}

int index_tmpl_get(struct index *ix, const char *name, struct index_tmpl *out)
{
    sqlite3_stmt *st = ix->st[ST_TMPL_GET];
    int ret;

    if (bind_str(st, 1, name, sizeof out->name) != SQLITE_OK) {
        ret = ix_db_fail(ix, "tmpl_get bind");
        goto out;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        ix_tmpl_from_row(st, out);
        ret = 0;
    } else {
        ret = rc == SQLITE_DONE ? -ENOENT : ix_db_fail(ix, "tmpl_get");
    }
out:
    st_done(st);
    return ret;
}

static int tmpl_bind(sqlite3_stmt *st, const struct index_tmpl *t)
{
    return bind_str(st, 1, t->name, sizeof t->name) ||
           bind_str(st, 2, t->origin, sizeof t->origin) ||
           ix_bind_u64(st, 3, t->size) || ix_bind_i64(st, 4, t->mtime_ns) ||
           bind_str(st, 5, t->validator, sizeof t->validator) ||
           ix_bind_u64(st, 6, t->generation) ||
           ix_bind_u64(st, 7, t->block_size) || ix_bind_u64(st, 8, t->quota);
}

/* Read back the id: an upsert that updated reports no usable rowid. */
static int tmpl_read_id(struct index *ix, struct index_tmpl *t)
{
    sqlite3_stmt *st = ix->st[ST_TMPL_ID];
    int ret = -EIO;

    if (bind_str(st, 1, t->name, sizeof t->name) != SQLITE_OK) {
        ret = ix_db_fail(ix, "tmpl_put id bind");
    } else if (sqlite3_step(st) == SQLITE_ROW) {
        t->id = sqlite3_column_int64(st, 0);
        ret = 0;
    } else {
        ret = ix_db_fail(ix, "tmpl_put id");
    }
    st_done(st);
    return ret;
}

/* Upsert and id read-back in one transaction, so the id returned is the one
 * of the row just written. */
int index_tmpl_put(struct index *ix, struct index_tmpl *t)
{
    sqlite3_stmt *st = ix->st[ST_TMPL_PUT];
    int ret = step_done(ix, ST_BEGIN, "tmpl_put begin");

    if (ret < 0)
        return ret;
    if (tmpl_bind(st, t) != SQLITE_OK)
        ret = ix_db_fail(ix, "tmpl_put bind");
    else if (sqlite3_step(st) != SQLITE_DONE)
        ret = ix_db_fail(ix, "tmpl_put");
    st_done(st);
    if (ret == 0)
        ret = tmpl_read_id(ix, t);
    if (ret == 0)
        ret = step_done(ix, ST_COMMIT, "tmpl_put commit");
    if (ret < 0)
        rollback(ix);
    return ret;
}

/* ------------------------------------------------------------ meta text */

/* Prepared per call: rare (a directory listing), and usable on any handle. */
int index_meta_get(struct index *ix, const char *key, char **out)
{
    sqlite3_stmt *st = NULL;
    int ret;

    *out = NULL;
    if (sqlite3_prepare_v2(ix->db, "SELECT value FROM meta WHERE key = ?1",
                           -1, &st, NULL) != SQLITE_OK) {
        ret = ix_db_fail(ix, "meta_get prepare");
    } else if (ix_bind_cstr(st, 1, key) != SQLITE_OK) {
        ret = ix_db_fail(ix, "meta_get bind");
    } else {
        int rc = sqlite3_step(st);
        const unsigned char *v = rc == SQLITE_ROW ? sqlite3_column_text(st, 0)
                                                  : NULL;
        if (rc == SQLITE_ROW)
            ret = (*out = strdup(v ? (const char *)v : "")) ? 0 : -ENOMEM;
        else
            ret = rc == SQLITE_DONE ? -ENOENT : ix_db_fail(ix, "meta_get");
    }
    sqlite3_finalize(st);
    return ret;
}

int index_meta_put(struct index *ix, const char *key, const char *value)
{
    sqlite3_stmt *st = NULL;
    int ret = 0;

    if (sqlite3_prepare_v2(ix->db,
                           "INSERT OR REPLACE INTO meta (key, value) "
                           "VALUES (?1, ?2)",
                           -1, &st, NULL) != SQLITE_OK)
        ret = ix_db_fail(ix, "meta_put prepare");
    else if (ix_bind_cstr(st, 1, key) != SQLITE_OK ||
             ix_bind_cstr(st, 2, value) != SQLITE_OK)
        ret = ix_db_fail(ix, "meta_put bind");
    else if (sqlite3_step(st) != SQLITE_DONE)
        ret = ix_db_fail(ix, "meta_put");
    sqlite3_finalize(st);
    return ret;
}

/* ------------------------------------------------------------ blocks */

int index_drop_other_gens(struct index *ix, int64_t tid, uint64_t keep_gen,
                          uint64_t keep_also)
{
    sqlite3_stmt *st = ix->st[ST_DROP_GENS];

    if (ix_bind_i64(st, 1, tid) || ix_bind_u64(st, 2, keep_gen) ||
        ix_bind_u64(st, 3, keep_also)) {
        int ret = ix_db_fail(ix, "drop_other_gens bind");
        st_done(st);
        return ret;
    }
    return step_done(ix, ST_DROP_GENS, "drop_other_gens");
}

/* The statement stays active while cb runs: cb must not use this handle. */
int index_blocks_load(struct index *ix, int64_t tid, uint64_t gen,
                      index_block_cb cb, void *ctx)
{
    sqlite3_stmt *st = ix->st[ST_LOAD];
    struct index_rec rec = {.op = INDEX_ADD, .tid = tid, .gen = gen};
    int ret = 0, rc;

    if (ix_bind_i64(st, 1, tid) || ix_bind_u64(st, 2, gen)) {
        ret = ix_db_fail(ix, "blocks_load bind");
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        rec.blk = ix_col_u64(st, 0);
        rec.csum = ix_col_u64(st, 1);
        rec.atime = ix_col_u64(st, 2);
        rec.flags = (uint32_t)sqlite3_column_int64(st, 3);
        ret = cb(ctx, &rec);
        if (ret != 0)
            goto out;
    }
    if (rc != SQLITE_DONE)
        ret = ix_db_fail(ix, "blocks_load");
out:
    /* Reset ends the read transaction, so checkpoints are not held back. */
    st_done(st);
    return ret;
}

int index_sha_find(struct index *ix, const uint8_t sha[INDEX_SHA_LEN],
                   struct index_rec *out, size_t max)
{
    sqlite3_stmt *st = ix->st[ST_SHA_FIND];
    size_t n = 0;
    int rc = SQLITE_DONE;

    if (st == NULL)
        return 0; /* an older file, read-only: no hashes */
    if (sqlite3_bind_blob(st, 1, sha, INDEX_SHA_LEN, SQLITE_STATIC)) {
        int ret = ix_db_fail(ix, "sha_find bind");
        st_done(st);
        return ret;
    }
    while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        out[n] = (struct index_rec){.op = INDEX_ADD};
        out[n].tid = sqlite3_column_int64(st, 0);
        out[n].gen = ix_col_u64(st, 1);
        out[n].blk = ix_col_u64(st, 2);
        memcpy(out[n].sha, sha, INDEX_SHA_LEN);
        out[n].has_sha = 1;
        n++;
    }
    int ret = n == max || rc == SQLITE_DONE ? (int)n
                                             : ix_db_fail(ix, "sha_find");
    st_done(st);
    return ret;
}

static int apply_one(struct index *ix, const struct index_rec *r)
{
    sqlite3_stmt *st;
    int bad;

    if (r->op == INDEX_ADD) {
        st = ix->st[ST_ADD];
        bad = ix_bind_i64(st, 1, r->tid) || ix_bind_u64(st, 2, r->gen) ||
              ix_bind_u64(st, 3, r->blk) || ix_bind_u64(st, 4, r->csum) ||
              ix_bind_u64(st, 5, r->atime) || ix_bind_u64(st, 6, r->flags);
        if (!bad && ix->has_sha)
            bad = r->has_sha ? sqlite3_bind_blob(st, 7, r->sha,
                                                 INDEX_SHA_LEN,
                                                 SQLITE_TRANSIENT)
                             : sqlite3_bind_null(st, 7);
    } else if (r->op == INDEX_DEL) {
        st = ix->st[ST_DEL];
        bad = ix_bind_i64(st, 1, r->tid) || ix_bind_u64(st, 2, r->gen) ||
              ix_bind_u64(st, 3, r->blk);
    } else {
        log_err("index: apply: unknown record op %d", (int)r->op);
        return -EIO;
    }
    int ret = 0;
    if (bad || sqlite3_step(st) != SQLITE_DONE)
        ret = ix_db_fail(ix, r->op == INDEX_ADD ? "apply add" : "apply del");
    st_done(st);
    return ret;
}

/* IMMEDIATE takes the write lock up front, so a concurrent writer makes us
 * wait (busy timeout) at BEGIN rather than fail halfway through. */
int index_apply(struct index *ix, const struct index_rec *recs, size_t n)
{
    if (n == 0)
        return 0;
    int ret = step_done(ix, ST_BEGIN, "apply begin");
    if (ret < 0)
        return ret;
    for (size_t i = 0; i < n && ret == 0; i++)
        ret = apply_one(ix, &recs[i]);
    if (ret == 0)
        ret = step_done(ix, ST_COMMIT, "apply commit");
    if (ret < 0)
        rollback(ix);
    return ret;
}

/* A removal must reach the disk before the hole is punched: were it lost
 * in a power cut (synchronous=NORMAL does not sync the WAL at commit), the
 * index would claim a block whose bytes are gone.  FULL for this one
 * transaction syncs the WAL at its commit. */
int index_apply_durable(struct index *ix, const struct index_rec *recs,
                        size_t n)
{
    if (!ix->wal)
        return index_apply(ix, recs, n); /* FULL already */
    if (sqlite3_exec(ix->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) !=
        SQLITE_OK)
        return ix_db_fail(ix, "synchronous=FULL");
    int ret = index_apply(ix, recs, n);
    if (sqlite3_exec(ix->db, "PRAGMA synchronous=NORMAL", NULL, NULL,
                     NULL) != SQLITE_OK)
        ix_db_fail(ix, "synchronous=NORMAL");
    return ret;
}

/* ------------------------------------------------------------ events */

int index_event(struct index *ix, int64_t tid, const char *kind,
                uint64_t blocks, uint64_t bytes, const char *detail)
{
    sqlite3_stmt *st = ix->st[ST_EVENT];

    if (ix_bind_i64(st, 1, (int64_t)time(NULL)) || ix_bind_i64(st, 2, tid) ||
        ix_bind_cstr(st, 3, kind) || ix_bind_u64(st, 4, blocks) ||
        ix_bind_u64(st, 5, bytes) || ix_bind_cstr(st, 6, detail)) {
        int ret = ix_db_fail(ix, "event bind");
        st_done(st);
        return ret;
    }
    return step_done(ix, ST_EVENT, "event");
}

/* ------------------------------------------------- counters and pins
 * Rare operations (once per flush or per pin change): statements are
 * prepared per call. */

static uint64_t *counter_field(struct index_counters *c, int i)
{
    uint64_t *f[N_COUNTERS] = {&c->hits, &c->misses, &c->origin_bytes,
                               &c->origin_reads, &c->fill_errors,
                               &c->evictions, &c->evicted_bytes,
                               &c->uncached, &c->evicted_low,
                               &c->evicted_high, &c->ra_fetched,
                               &c->ra_used, &c->local_blocks,
                               &c->local_bytes, &c->verified,
                               &c->verify_failed, &c->zero_skipped,
                               &c->last_used};
    return f[i];
}

int index_counters_get(struct index *ix, int64_t tid,
                       struct index_counters *out)
{
    sqlite3_stmt *st = NULL;
    memset(out, 0, sizeof *out);
    if (sqlite3_prepare_v2(ix->db,
                           ix->counters_get_sql,
                           -1, &st, NULL) !=
            SQLITE_OK ||
        ix_bind_i64(st, 1, tid)) {
        int ret = ix_db_fail(ix, "counters_get");
        sqlite3_finalize(st);
        return ret;
    }
    int rc = sqlite3_step(st);
    for (int i = 0; rc == SQLITE_ROW && i < (int)N_COUNTERS; i++)
        *counter_field(out, i) = ix_col_u64(st, i);
    int ret = rc == SQLITE_ROW || rc == SQLITE_DONE
                  ? 0 : ix_db_fail(ix, "counters_get step");
    sqlite3_finalize(st);
    return ret;
}

int index_counters_put(struct index *ix, int64_t tid,
                       const struct index_counters *in)
{
    struct index_counters c = *in;
    sqlite3_stmt *st = NULL;
    int bad = sqlite3_prepare_v2(ix->db, ix->counters_put_sql, -1, &st, NULL) !=
                  SQLITE_OK || ix_bind_i64(st, 1, tid);
    for (int i = 0; !bad && i < (int)N_COUNTERS; i++)
        bad = ix_bind_u64(st, i + 2, *counter_field(&c, i));
    int ret = 0;
    if (bad || sqlite3_step(st) != SQLITE_DONE)
        ret = ix_db_fail(ix, "counters_put");
    sqlite3_finalize(st);
    return ret;
}

static int exec_tid(struct index *ix, const char *sql, int64_t tid)
{
    sqlite3_stmt *st = NULL;
    int ret = 0;
    if (sqlite3_prepare_v2(ix->db, sql, -1, &st, NULL) != SQLITE_OK ||
        ix_bind_i64(st, 1, tid) || sqlite3_step(st) != SQLITE_DONE)
        ret = ix_db_fail(ix, sql);
    sqlite3_finalize(st);
    return ret;
}

/* The pins table's source column: 'tool', 'config', or, for rows from
 * before sources were told apart, '' (legacy). */
static const char *pin_source_col(int src)
{
    return src == PIN_SRC_TOOL ? "tool" : src == PIN_SRC_CONFIG ? "config"
                                                                : "";
}

static int pin_source_of(const char *s)
{
    return s == NULL ? PIN_SRC_LEGACY
           : strcmp(s, "tool") == 0 ? PIN_SRC_TOOL
           : strcmp(s, "config") == 0 ? PIN_SRC_CONFIG
                                      : PIN_SRC_LEGACY;
}

static int pins_insert(struct index *ix, int64_t tid,
                       const struct class_range *r, size_t n)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ix->db, PINS_INSERT_SQL, -1, &st, NULL) !=
        SQLITE_OK)
        return ix_db_fail(ix, "pins insert");
    int ret = 0;
    for (size_t i = 0; i < n && ret == 0; i++) {
        if (ix_bind_i64(st, 1, tid) || ix_bind_u64(st, 2, r[i].off) ||
            ix_bind_u64(st, 3, r[i].len) ||
            ix_bind_cstr(st, 4, pin_class_name(r[i].cls)) ||
            ix_bind_cstr(st, 5, pin_source_col(r[i].src)) ||
            sqlite3_step(st) != SQLITE_DONE)
            ret = ix_db_fail(ix, "pins insert");
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return ret;
}

int index_pins_replace(struct index *ix, int64_t tid,
                       const struct class_range *r, size_t n)
{
    int ret = step_done(ix, ST_BEGIN, "pins begin");
    if (ret < 0)
        return ret;
    ret = exec_tid(ix, "DELETE FROM pins WHERE tid = ?1", tid);
    if (ret == 0)
        ret = pins_insert(ix, tid, r, n);
    if (ret == 0)
        ret = step_done(ix, ST_COMMIT, "pins commit");
    if (ret < 0)
        rollback(ix);
    return ret;
}

int index_pins_load(struct index *ix, int64_t tid, struct class_range **out,
                    size_t *n)
{
    sqlite3_stmt *st = NULL;
    struct class_range *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc;

    *out = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(ix->db,
                           ix->version == 1 ? PINS_LOAD_V1_SQL
                                            : PINS_LOAD_SQL,
                           -1, &st, NULL) != SQLITE_OK ||
        ix_bind_i64(st, 1, tid)) {
        sqlite3_finalize(st);
        return ix_db_fail(ix, "pins load");
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            struct class_range *nv = realloc(v, cap * sizeof *v);
            if (nv == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            v = nv;
        }
        const char *cls = (const char *)sqlite3_column_text(st, 2);
        int c = cls ? pin_class_parse(cls, strlen(cls)) : -EINVAL;
        v[cnt].off = ix_col_u64(st, 0);
        v[cnt].len = ix_col_u64(st, 1);
        v[cnt].src = pin_source_of((const char *)sqlite3_column_text(st, 3));
        v[cnt++].cls = c < 0 ? PIN_BOOT : c;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(v);
        return rc == SQLITE_NOMEM ? -ENOMEM : ix_db_fail(ix, "pins load");
    }
    *out = v;
    *n = cnt;
    return 0;
}

/* ------------------------------------------------------------ template list */

/* Prepare sql, or log and return NULL. */
sqlite3_stmt *ix_prepare(struct index *ix, const char *sql)
{
    sqlite3_stmt *st = NULL;

    if (sqlite3_prepare_v2(ix->db, sql, -1, &st, NULL) != SQLITE_OK) {
        ix_db_fail(ix, sql);
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

static int tmpl_list_grow(struct index_tmpl **v, size_t *cap)
{
    size_t ncap = *cap ? *cap * 2 : 16;
    struct index_tmpl *nv = realloc(*v, ncap * sizeof *nv);

    if (nv == NULL)
        return -ENOMEM;
    *v = nv;
    *cap = ncap;
    return 0;
}

int index_tmpl_list(struct index *ix, struct index_tmpl **out, size_t *n)
{
    sqlite3_stmt *st = ix_prepare(
        ix, "SELECT id, name, origin, size, mtime_ns, validator, generation,"
            " block_size, quota FROM templates ORDER BY name");
    struct index_tmpl *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc, ret = 0;

    *out = NULL;
    *n = 0;
    if (st == NULL)
        return -EIO;
    while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap)
            ret = tmpl_list_grow(&v, &cap);
        if (ret == 0)
            ix_tmpl_from_row(st, &v[cnt++]);
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = ix_db_fail(ix, "tmpl_list");
    sqlite3_finalize(st);
    if (ret < 0) {
        free(v);
        return ret;
    }
    *out = v;
    *n = cnt;
    return 0;
}
