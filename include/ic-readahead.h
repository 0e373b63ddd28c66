/* Asynchronous sequential readahead.
 *
 * Each open handle carries a small detector: two reads in a row that
 * continue where the previous one ended make the stream sequential, and the
 * blocks ahead of it are fetched in the background, in runs large enough to
 * keep the origin busy (several Range GETs in flight for HTTP), the window
 * doubling from RA_MIN to the config's readahead.  Readahead only fills
 * missing blocks; it never evicts pinned ones (eviction never does).
 * Its origin reads are FETCH_READAHEAD (ic-sched.h): one that would wait
 * for an origin slot is dropped instead (its blocks stay missing; the
 * template's ra_skipped counts it), so fetchers never sit behind, or in
 * front of, reads that a reader or a pre-warm waits for.
 *
 * Locking, outermost first (ra_note is called with no lock held):
 *   ra_state.lock   one handle's detector; a leaf, released before any
 *                   job is queued.
 *   readahead.lock  (readahead.c) the job queue, its length and stop;
 *                   each queued job's generation reference is taken under
 *                   it (gen.lock, see fs/engine/cache-priv.h), nothing
 *                   else.  Fetchers run jobs (origin reads, data-file
 *                   writes) and drop their references with no lock held. */
#ifndef IC_READAHEAD_H
#define IC_READAHEAD_H

#include <pthread.h>
#include <stdint.h>

/* A stream's first window. */
#define RA_MIN (512u << 10)
/* One job = one origin read at most this big; jobs run on RA_THREADS. */
#define RA_RUN_BYTES (2u << 20)
#define RA_THREADS 4

struct gen;
struct readahead;

struct ra_state {
    pthread_mutex_t lock; /* protects the fields below: reads of one
                             handle may run concurrently */
    uint64_t next_off;    /* where a sequential read would start */
    uint64_t ra_end;      /* readahead issued up to here */
    uint64_t window;      /* current window, 0 = not sequential */
};

int ra_start(unsigned threads, struct readahead **out);
/* Drop queued jobs, wait for running ones, free. */
void ra_stop(struct readahead *ra);

void ra_state_init(struct ra_state *s);
void ra_state_destroy(struct ra_state *s);
/* Note a read of [off, off+len) on a handle of g; may queue prefetches. */
void ra_note(struct readahead *ra, struct ra_state *s, struct gen *g,
             uint64_t off, uint64_t len);

#endif
