/* The index's private state, shared by index.c (the daemon's index),
 * index-report.c and index-scrub.c (the tools' queries).  The only files
 * that include sqlite3.h.
 *
 * Helpers (ix_*): SQLite results become -errno in ix_db_fail(), which logs
 * the failure once with sqlite3_errmsg; ix_bind_* return SQLite codes
 * (nonzero on failure), to be handed to ix_db_fail by the caller. */
#ifndef IC_INDEX_PRIV_H
#define IC_INDEX_PRIV_H

#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "ic-index.h"

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_TMPL_GET,
    ST_TMPL_PUT,
    ST_TMPL_ID,
    ST_DROP_GENS,
    ST_LOAD,
    ST_ADD,
    ST_DEL,
    ST_EVENT,
    ST_SHA_FIND, /* prepared only when blocks has its sha column */
    ST_COUNT
};

/* One handle is used by one thread at a time (see ic-index.h); the SQLite
 * connection is still opened FULLMUTEX, which is cheap insurance. */
struct index {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    int wal; /* journal_mode=WAL (then synchronous is NORMAL by default) */
    int version; /* its schema version: INDEX_SCHEMA_VERSION, or 1 (from
                    before pin classes) in a read-only open */
    int retry_busy; /* the caller retries -EBUSY: do not log it */
    int has_sha;    /* blocks.sha exists (added by a read-write open) */
    /* The counters statements for the columns this file has (index.c,
     * added_columns: a read-only open of an older file reads 0 for the
     * missing ones). */
    char counters_get_sql[640];
    char counters_put_sql[640];
    char *moved_aside; /* path of the file index_open() moved aside */
};

/* Log SQLite's message for `what` and return -EIO (-EBUSY for a lock held
 * by another connection). */
int ix_db_fail(struct index *ix, const char *what);
int ix_bind_u64(sqlite3_stmt *st, int i, uint64_t v);
int ix_bind_i64(sqlite3_stmt *st, int i, int64_t v);
int ix_bind_cstr(sqlite3_stmt *st, int i, const char *s);
uint64_t ix_col_u64(sqlite3_stmt *st, int i);
void ix_col_str(sqlite3_stmt *st, int i, char *out, size_t len);
/* Finalize every statement and close the connection. */
void ix_close_db(struct index *ix);
/* The first column of the first row of sql into out ("" when no row):
 * an SQLite code. */
int ix_query_text(sqlite3 *db, const char *sql, char *out, size_t len);
/* Open cache_dir/index.db as it is (never created or moved aside) with
 * SQLite open flags; *sb and path (PATH_MAX) are filled.  0 or -errno. */
int ix_open_existing(const char *cache_dir, int flags, struct index *ix,
                     struct stat *sb, char path[PATH_MAX]);
/* Prepare a statement run once (the tools' queries), or log and return
 * NULL. */
sqlite3_stmt *ix_prepare(struct index *ix, const char *sql);
/* A templates row (the columns of ST_TMPL_GET). */
void ix_tmpl_from_row(sqlite3_stmt *st, struct index_tmpl *t);

#endif
