/* The durable index: cache_dir/index.db (SQLite, WAL).  fs/index/ (index.c,
 * and the tools' queries in index-report.c and index-scrub.c) is the only
 * code that includes sqlite3.h.
 *
 * The index is derived data: at run time the in-memory block tables are
 * authoritative; the index is written in batches by the writer thread
 * (data fdatasync'd first, then the rows committed), so it never claims a
 * block whose bytes are not durable.  A corrupt or unreadable index, or one
 * of our version without a table of the schema or a column a statement
 * needs (dropped by hand: no table is added to an older file, only the
 * columns index.c's added_cols lists), is moved aside (index.db.bad-<unix
 * time>, with -wal/-shm) and a fresh one created; a read-only open of
 * such an index fails with -EIO.
 *
 * Schema (version 2, meta.schema_version; version 1, from before pin
 * classes, lacked pins.class and counters.evicted_low/high: a read-write
 * open migrates it in one transaction, its pins becoming boot pins, and a
 * read-only open reads it as such):
 *   meta(key TEXT PRIMARY KEY, value TEXT)   -- also see index_meta_get
 *   templates(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, origin TEXT,
 *             size INTEGER, mtime_ns INTEGER, validator TEXT,
 *             generation INTEGER, block_size INTEGER, quota INTEGER)
 *   blocks(tid INTEGER, gen INTEGER, blk INTEGER, csum INTEGER,
 *          atime INTEGER, flags INTEGER, sha BLOB,
 *          PRIMARY KEY(tid, gen, blk)) WITHOUT ROWID  -- present blocks;
 *          sha: the block's SHA-256 when a block manifest vouched for it
 *          (else NULL), indexed by blocks_sha (WHERE sha IS NOT NULL);
 *          added in place by a read-write open (ALTER TABLE, no version
 *          bump: an older binary ignores it)
 *   pins(tid INTEGER, start INTEGER, len INTEGER, source TEXT,
 *        class TEXT NOT NULL DEFAULT 'boot')   -- boot, high or low
 *   events(id INTEGER PRIMARY KEY, ts INTEGER, tid INTEGER, kind TEXT,
 *          blocks INTEGER, bytes INTEGER, detail TEXT)
 *   counters(tid INTEGER PRIMARY KEY, hits, misses, origin_bytes,
 *          origin_reads, fill_errors, evictions, evicted_bytes, uncached,
 *          evicted_low, evicted_high,        -- evictions: blocks, any class
 *          ra_fetched, ra_used,              -- readahead bytes
 *          local_blocks, local_bytes, verified, verify_failed,
 *          zero_skipped,                     -- manifests
 *          last_used)                        -- newest demand read (s)
 *          -- (the last eight, and blocks.sha, are added in place when
 *          -- missing, with defaults: an older schema 2 binary keeps
 *          -- working on the file; index.c added_cols)
 *          -- cumulative per template, saved by the daemon at each flush
 *
 * Errors: 0 or -errno; a failed statement is -EIO (logged), except one
 * refused because another connection holds the index locked beyond the
 * busy timeout (5 s), which is -EBUSY: nothing is wrong with the index, the
 * operation may be tried again.  A transaction that fails is rolled back
 * whole, so a retry starts from where the index was.
 *
 * Thread safety: one struct index is used by one thread at a time (the
 * caller serialises); the writer thread owns the daemon's handle. */
#ifndef IC_INDEX_H
#define IC_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "ic-pinspec.h"

#define INDEX_SCHEMA_VERSION 2
#define INDEX_FILE "index.db"

struct index;

struct index_tmpl {
    int64_t id;           /* assigned by index_tmpl_put on insert */
    char name[256];
    char origin[1024];
    uint64_t size;
    int64_t mtime_ns;
    char validator[256];
    uint64_t generation;
    uint32_t block_size;
    uint64_t quota;
};

/* Block flags stored in blocks.flags. */
#define INDEX_BLK_ZERO 0x1   /* all-zero block, kept as a hole */
#define INDEX_BLK_PINNED 0x2

enum index_op { INDEX_ADD = 1, INDEX_DEL = 2 };

#define INDEX_SHA_LEN 32

struct index_rec {
    enum index_op op;
    int64_t tid;
    uint64_t gen;
    uint64_t blk;
    uint64_t csum;
    uint64_t atime;
    uint32_t flags;
    int has_sha;                 /* ADD: sha holds the block's SHA-256 */
    uint8_t sha[INDEX_SHA_LEN];
};

/* Open (creating cache_dir/index.db if needed) read-write.  A file that is
 * not a database, fails integrity/quick check, or has an unknown schema
 * version is renamed aside with one log_err line and a fresh index created.
 * Returns 0 or -errno (only when even a fresh index cannot be made). */
int index_open(const char *cache_dir, struct index **out);
/* A second read-write connection to the index the daemon already opened
 * (reloads, retries): no quick_check, and never moves anything aside -- a
 * failure is only an error.  0 or -errno. */
int index_reopen(const char *cache_dir, struct index **out);
/* Open an existing index read-only (tools); never moves anything aside.
 * Returns 0 or -errno (-ENOENT if missing, -EIO if unreadable). */
int index_open_ro(const char *cache_dir, struct index **out);
void index_close(struct index *ix);
/* Path of the file the last index_open() moved aside, or NULL. */
const char *index_moved_aside(const struct index *ix);
/* For a caller that retries -EBUSY itself (the writer thread): wait only
 * wait_ms for a lock, and do not log busy failures (the caller says once
 * that the index is busy rather than once per attempt). */
void index_retry_busy(struct index *ix, int wait_ms);

/* Template rows, keyed by name.  get: 0 or -ENOENT/-EIO. */
int index_tmpl_get(struct index *ix, const char *name, struct index_tmpl *out);
/* Insert or update by name; fills t->id.  0 or -EIO. */
int index_tmpl_put(struct index *ix, struct index_tmpl *t);
/* Text rows of meta (any handle).  get: 0 with *out malloc'd, -ENOENT,
 * -ENOMEM or -EIO; put (insert or replace): 0 or -EIO.
 * Keys used: INDEX_META_DIR_PREFIX + a [directory] origin: the names it
 * listed last, one per line (the templates it holds while it cannot be
 * listed). */
#define INDEX_META_DIR_PREFIX "dir-listing:"
int index_meta_get(struct index *ix, const char *key, char **out);
int index_meta_put(struct index *ix, const char *key, const char *value);
/* Delete every block row of template tid whose gen is neither keep_gen
 * nor keep_also (INDEX_NO_GEN: none; a template's previous generation
 * is kept while delta fills may copy from it). */
#define INDEX_NO_GEN UINT64_MAX
int index_drop_other_gens(struct index *ix, int64_t tid, uint64_t keep_gen,
                          uint64_t keep_also);

/* Call cb for every present block of (tid, gen).  A non-zero return from cb
 * stops the walk and is returned.  Otherwise 0 or -EIO. */
typedef int (*index_block_cb)(void *ctx, const struct index_rec *rec);
int index_blocks_load(struct index *ix, int64_t tid, uint64_t gen,
                      index_block_cb cb, void *ctx);

/* Up to max present blocks (tid, gen, blk into out) whose SHA-256 is sha,
 * any template, any generation: one query on the partial index
 * blocks_sha.  Count, or -errno. */
int index_sha_find(struct index *ix, const uint8_t sha[INDEX_SHA_LEN],
                   struct index_rec *out, size_t max);

/* Apply add/delete records in one transaction (all or nothing).
 * ADD replaces an existing row.  0, -EBUSY or -EIO. */
int index_apply(struct index *ix, const struct index_rec *recs, size_t n);
/* The same, with the commit synced to disk before it returns (for removals
 * that precede a hole punch). */
int index_apply_durable(struct index *ix, const struct index_rec *recs,
                        size_t n);

/* Append an event row (kind: "fill", "evict", "error", "generation"). */
int index_event(struct index *ix, int64_t tid, const char *kind,
                uint64_t blocks, uint64_t bytes, const char *detail);

/* Cumulative per-template figures (the daemon adds to them at run time). */
struct index_counters {
    uint64_t hits, misses, origin_bytes, origin_reads, fill_errors;
    uint64_t evictions, evicted_bytes, uncached;
    uint64_t evicted_low, evicted_high; /* blocks of pin class low, high
                                           among the evictions */
    uint64_t ra_fetched, ra_used; /* readahead bytes fetched, and read */
    /* Block manifests: blocks (and bytes) filled from local copies,
     * fetched blocks that matched, that did not, zero blocks not
     * fetched. */
    uint64_t local_blocks, local_bytes, verified, verify_failed;
    uint64_t zero_skipped;
    uint64_t last_used; /* wall-clock seconds of the template's newest
                           demand read, 0 never (column counters.last_used,
                           added within schema 2) */
};
/* Zeros when the template has no row yet.  0 or -EIO. */
int index_counters_get(struct index *ix, int64_t tid,
                       struct index_counters *out);
int index_counters_put(struct index *ix, int64_t tid,
                       const struct index_counters *c);

/* Pinned byte ranges of a template with their classes and sources (the
 * source column: 'tool', 'config', '' for rows from before sources; per
 * source, each class's ranges a normalized set, the classes disjoint;
 * two sources may name the same range). */
int index_pins_replace(struct index *ix, int64_t tid,
                       const struct class_range *r, size_t n);
/* *out malloc'd (NULL when none), by class then offset; a row of an
 * unknown class is read as boot, of an unknown source as legacy.  0, -ENOMEM or -EIO. */
int index_pins_load(struct index *ix, int64_t tid, struct class_range **out,
                    size_t *n);

/* Every template row, by name.  *out malloc'd (NULL when *n is 0).  The
 * daemon uses it for the templates a [directory] held, the tools for
 * every template.  The tools' other queries are in ic-index-report.h and
 * ic-index-scrub.h. */
int index_tmpl_list(struct index *ix, struct index_tmpl **out, size_t *n);

#endif
