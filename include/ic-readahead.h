/* Asynchronous sequential readahead that earns its bytes.
 *
 * Each open handle carries a detector (a stream).  A read that continues
 * where the previous one ended, or lands between the run's start and the
 * end of its readahead (the kernel's readahead requests arrive out of
 * order), extends the stream's run; from the run's
 * second read on, the blocks ahead of it are fetched in the background
 * (RA_RUN_BYTES per job, several jobs in flight), topped up once the
 * reader is half a window from the readahead's end.  The window:
 *   - starts small: the stream's first window (RA_FIRST at open), and
 *     never more than the run has read so far, nor than the config's
 *     readahead;
 *   - doubles only when the reader has read all that was fetched when it
 *     last grew (the previous readahead was consumed), up to readahead;
 *   - a run that ends (a read elsewhere) with more readahead left unread
 *     than it read halves the stream's first window; at one block it
 *     stops: the next run gets readahead only once it has read RA_PROVE
 *     blocks; a run that left at most a fifth of it unread doubles it.
 * On a long sequential read the window still reaches readahead within a
 * few windows.  For a qcow2 template readahead never crosses into a
 * cluster the image's L2 tables do not map as the continuation of the
 * read's guest region (qmap_limit, fs/engine/cache-priv.h): an
 * unallocated or metadata cluster, or another guest region.
 * Readahead only fills missing blocks; it never evicts pinned ones.
 * Its origin reads are FETCH_READAHEAD (ic-sched.h): one that would wait
 * for an origin slot is dropped instead (its blocks stay missing; the
 * template's ra_skipped counts it), so fetchers never sit behind, or in
 * front of, reads that a reader or a pre-warm waits for.
 *
 * Figures: the generation and the template count the bytes readahead
 * fetched and, of those, the bytes readers then read (read.c, BLK_RA);
 * each stream counts the readahead it asked for and the part of it it
 * read (ra_state.issued, .read: positions, whether or not a fetcher got
 * a slot), logged at debug level when the handle is closed.
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

/* A stream's first window, at open. */
#define RA_FIRST (256u << 10)
/* Blocks a run must read before readahead, once the stream's readahead
 * stopped (its first window shrank to one block and was left unread). */
#define RA_PROVE 4
/* One job = one origin read at most this big; jobs run on RA_THREADS. */
#define RA_RUN_BYTES (2u << 20)
#define RA_THREADS 4

struct gen;
struct readahead;

struct ra_state {
    pthread_mutex_t lock; /* protects the fields below: reads of one
                             handle may run concurrently */
    uint64_t next_off;    /* where a sequential read would start */
    uint64_t run_start;   /* where the current run started */
    uint64_t run;         /* bytes of the current run, up to next_off */
    uint64_t ra_lo, ra_end; /* readahead asked for and not read yet */
    uint64_t window;      /* this run's window, 0: none asked for yet */
    uint64_t grow_at;     /* the window doubles once the reader gets here */
    uint64_t run_read;    /* readahead bytes the current run read */
    uint64_t first;       /* a run's first window; 0: stopped */
    uint64_t issued, read; /* the stream's readahead, and what it read */
};

int ra_start(unsigned threads, struct readahead **out);
/* Drop queued jobs, wait for running ones, free. */
void ra_stop(struct readahead *ra);

void ra_state_init(struct ra_state *s);
void ra_state_destroy(struct ra_state *s);
/* The stream's figures: readahead bytes asked for, and read by it. */
void ra_state_figures(struct ra_state *s, uint64_t *issued, uint64_t *read);
/* Note a read of [off, off+len) on a handle of g; may queue prefetches. */
void ra_note(struct readahead *ra, struct ra_state *s, struct gen *g,
             uint64_t off, uint64_t len);

#endif
