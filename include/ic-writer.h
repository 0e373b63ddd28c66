/* The index writer: a thread that makes fills durable in batches (group
 * commit).  Order per batch: fdatasync every data file touched, then commit
 * the rows in one transaction -- so the index never claims a block whose
 * bytes are not on disk.  Nothing on the read path waits for it.
 *
 * All functions are thread-safe. */
#ifndef IC_WRITER_H
#define IC_WRITER_H

#include "ic-index.h"

struct writer;

/* Takes over use of ix (the caller must not use it while the writer runs). */
int writer_start(struct index *ix, struct writer **out);
/* Flush everything queued, stop the thread.  ix stays open (caller closes). */
void writer_stop(struct writer *w);

/* Queue a block record; data_fd is the data file holding its bytes (ADD):
 * the writer dup()s it, so the caller may close its own fd at any time. */
void writer_add(struct writer *w, const struct index_rec *rec, int data_fd);
/* Queue a template row update (new generation, size...). */
void writer_tmpl(struct writer *w, const struct index_tmpl *t);
/* Queue removal of every block row of tid not in keep_gen. */
void writer_drop_gens(struct writer *w, int64_t tid, uint64_t keep_gen);
/* Queue an event row. */
void writer_event(struct writer *w, int64_t tid, const char *kind,
                  uint64_t blocks, uint64_t bytes, const char *detail);
/* Queue a save of a template's cumulative counters. */
void writer_counters(struct writer *w, int64_t tid,
                     const struct index_counters *c);
/* Queue replacing a template's pinned ranges.  0 or -ENOMEM. */
int writer_pins(struct writer *w, int64_t tid, const struct byte_range *r,
                size_t n);
/* Block until everything queued before the call is committed.  -EIO when a
 * commit of block records failed meanwhile (the caller's among them,
 * perhaps), else 0.  Removals (INDEX_DEL) are synced to disk at commit. */
int writer_flush(struct writer *w);
/* For a caller that must know whether *its* records were committed: take a
 * mark before queueing them, then flush since the mark (a commit that
 * failed between the queueing and the flush counts too).  -EIO or 0. */
uint64_t writer_mark(struct writer *w);
int writer_flush_since(struct writer *w, uint64_t mark);

#endif
