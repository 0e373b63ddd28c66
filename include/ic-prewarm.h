/* Pins that read the template through the cache: resolving pin specs,
 * the config's pins, pre-warming.  Called with no engine lock held; they
 * read the origin (bounded by origin_timeout per read).
 *
 * Locking: prewarm_config() serialises one template's runs with
 * tmpl.cfgpin_lock, held across the resolution's reads and the pin
 * changes that follow (fs/engine/cache-priv.h).  prewarm_run()'s workers
 * share a lock of the run's (the next chunk, the bytes done), held while
 * the progress callback runs: the callback must not block, and may take
 * only a leaf lock of its own. */
#ifndef IC_PREWARM_H
#define IC_PREWARM_H

#include <stddef.h>
#include <stdint.h>

#include "ic-pinspec.h"

struct tmpl;

/* Turn a pin spec (comma list: [CLASS:] and START-END, START+LENGTH,
 * profile:PATH, qcow2-metadata) into one normalized range set per class:
 * sets[k] for the items of class k, those without a class in sets[dflt]
 * (dflt may be PIN_NONE: "any class", for unpinning).  qcow2-metadata
 * reads the template's header and tables through the cache (fetching
 * them if needed).  sets and n have PIN_NCLASS entries (free the sets
 * with prewarm_sets_free).  0, or -errno with a one-line message in err
 * (and no sets). */
int prewarm_resolve(struct tmpl *t, const char *spec, int dflt,
                    struct byte_range **sets, size_t *n, char *err,
                    size_t errlen);
void prewarm_sets_free(struct byte_range **sets, size_t *n);

/* After the mount is up: make the template's config pins those of `spec`
 * (the `pin =` value of config load `seq`, NULL for none): resolve it (it
 * may need origin reads, e.g. qcow2-metadata), pin what it names, unpin
 * what the previous one named and this one does not.  Nothing happens when
 * this load's or a later one's were applied already.  Called with no
 * engine lock held (engine.c copies spec and seq under cfg_lock, then
 * calls this).  1 when applied, 0 when there was nothing to do, -errno
 * when the spec could not be resolved or pinned (logged; the pins kept
 * are as they were, and the next config load tries again). */
int prewarm_config(struct tmpl *t, const char *spec, uint64_t seq);
/* Fill every missing pinned block of class cls (PIN_NONE: of every
 * class, boot ranges first, then high, then low; the figures and the
 * result count that class's blocks only), `parallel` fetches at a
 * time (1..16),
 * as one flow of class FETCH_WARM (ic-sched.h: behind every demand read
 * of the same origin host), at most `rate` bytes per second or the
 * config's warm_rate, the lower of the two (0: unlimited; a token bucket
 * taken before each chunk's read, so a paced warm holds no transfer slot
 * while it waits).  progress (may be NULL) is called from any thread,
 * serialised (under the run's lock), with bytes done and total.  Returns
 * 0 when every pinned block is present, -EIO when some could not be
 * fetched (*failed = their bytes). */
typedef void (*prewarm_progress_fn)(void *ctx, uint64_t done,
                                    uint64_t total);
/* cancelled (may be NULL) is asked, from any thread and with no lock
 * held, between chunks and every 100 ms while the warm waits for its
 * rate: non-zero stops the warm before its next read (the reads in
 * flight end, each bounded by origin_timeout), and prewarm_run then
 * returns -ECANCELED if blocks are missing.  It must not block. */
typedef int (*prewarm_cancel_fn)(void *ctx);
int prewarm_run(struct tmpl *t, int cls, unsigned parallel, uint64_t rate,
                prewarm_progress_fn progress, prewarm_cancel_fn cancelled,
                void *ctx, uint64_t *failed);

struct cache;
/* The daemon's own pre-warm (config "prewarm", after start-up and each
 * reload): every template's missing boot blocks, then every template's
 * high, then low; within a class the most recently used template first
 * (below).  Each template and
 * class is one prewarm_run-like warm (FETCH_WARM, warm_rate) that reads
 * only chunks with something missing, so present blocks' hits and ages
 * are left alone.  Its fills are background fills (EVICT_BACKGROUND,
 * ic-evict.h): free room or weaker classes' blocks only, and a template's
 * warm of a class stops, before fetching, at the first chunk that would
 * not fit (evict_may_fit).  "Most recently used" is tmpl_stats.last_used
 * (demand reads, hits included; kept in the index), then the newest
 * access count.  Stops between chunks, and within 100 ms of a wait for
 * warm_rate, once *stop (atomic) is set.
 * Returns the bytes that could not be fetched (logged per template). */
uint64_t prewarm_pending(struct cache *c, unsigned parallel, const int *stop);

#endif
