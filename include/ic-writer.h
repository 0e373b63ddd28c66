/* The index writer: a thread that makes fills durable in batches (group
 * commit).  Order per batch: fdatasync every data file touched, then commit
 * the rows in one transaction -- so the index never claims a block whose
 * bytes are not on disk.  Nothing on the read path waits for it.
 *
 * Jobs are applied in the order they were queued, except that a block
 * record replaces a still-pending record of the same block, and counters
 * the pending counters of the same template (only the last one matters).
 *
 * A locked index (another process holding a write transaction: an sqlite3
 * shell, a backup) delays commits and loses nothing: the refused jobs wait,
 * newer ones join them, and the thread retries with backoff (250 ms
 * doubling to 2 s, each attempt waiting 1 s for the lock), logging once
 * when the index becomes busy and once when commits resume.  What waits is
 * bounded: past 131072 block records (after coalescing) new ADDs and events
 * are dropped, with one log line (the block table in memory still serves
 * those blocks; they are fetched again after a restart); DELs, template
 * rows and pins are never dropped.  Any other failure of a commit (I/O
 * error, disk full, corruption) drops that commit's records, logged:
 * those blocks are fetched again after a restart.  At stop a locked index
 * is retried for 5 s, then what waits is given up (logged).
 *
 * Locking: writer.lock (writer.c) protects the pending batch and the
 * writer's counters and state; the thread runs a batch (fdatasync, SQLite)
 * with it released.  A leaf: callers may hold any other lock (gen.lock and
 * tmpl.lock queue records under it), and nothing is taken under it; it is
 * held only for memory, a dup() and fstat() of an ADD's data file, and log
 * lines.  writer_flush() and writer_flush_since() wait, up to 30 s: call
 * them with no engine lock held (tmpl.cfgpin_lock excepted, which is held
 * across whole reads; see fs/engine/cache-priv.h). */
#ifndef IC_WRITER_H
#define IC_WRITER_H

#include "ic-index.h"

struct writer;

/* Takes over use of ix (the caller must not use it while the writer runs). */
int writer_start(struct index *ix, struct writer **out);
/* Flush everything queued, stop the thread.  ix stays open (caller closes). */
void writer_stop(struct writer *w);

/* Queueing.  Each function copies what it is given (the caller keeps its
 * own) and returns 0 when the job is queued (or replaced a pending one),
 * else -errno with nothing queued, already logged here:
 *   -ENOMEM    out of memory;
 *   -ENOBUFS   past the bound above (an ADD or an event only; logged once
 *              until the writer catches up);
 *   -errno     writer_add: fstat or dup of data_fd failed.
 * A caller that must not lose the job (a template row, a DEL) checks the
 * status; nothing is retried here. */

/* A block record; data_fd is the data file holding its bytes (ADD): the
 * writer dup()s it, so the caller may close its own fd at any time. */
int writer_add(struct writer *w, const struct index_rec *rec, int data_fd);
/* A template row update (new generation, size...). */
int writer_tmpl(struct writer *w, const struct index_tmpl *t);
/* Removal of every block row of tid in neither keep_gen nor keep_also
 * (INDEX_NO_GEN: none). */
int writer_drop_gens(struct writer *w, int64_t tid, uint64_t keep_gen,
                     uint64_t keep_also);
/* An event row (detail may be NULL). */
int writer_event(struct writer *w, int64_t tid, const char *kind,
                 uint64_t blocks, uint64_t bytes, const char *detail);
/* A save of a template's cumulative counters. */
int writer_counters(struct writer *w, int64_t tid,
                    const struct index_counters *c);
/* Replacing a template's pinned ranges (n may be 0: no pins). */
int writer_pins(struct writer *w, int64_t tid, const struct class_range *r,
                size_t n);
/* Block until everything queued before the call is committed.  -EIO when a
 * commit of block records failed meanwhile (the caller's among them,
 * perhaps), else 0.  Removals (INDEX_DEL) are synced to disk at commit.
 * The wait is bounded: -EBUSY once the index has been locked by another
 * process for 1 s of the wait, -ETIMEDOUT after 30 s in any case.  On
 * -EBUSY/-ETIMEDOUT the caller's records are still queued and will be
 * committed later: a caller that gives up on a removal must queue the
 * block again (INDEX_ADD) if it keeps it. */
int writer_flush(struct writer *w);
/* For a caller that must know whether *its* records were committed: take a
 * mark before queueing them, then flush since the mark (a commit that
 * failed between the queueing and the flush counts too).  0, -EIO, -EBUSY
 * or -ETIMEDOUT as writer_flush. */
uint64_t writer_mark(struct writer *w);
int writer_flush_since(struct writer *w, uint64_t mark);
/* Tests: the bound on waiting block records (default 131072). */
void writer_set_max_pending(struct writer *w, size_t recs);

#endif
