/* The engine's own view of its objects: struct cache, struct tmpl and
 * struct gen, for the files of fs/engine/ only (everyone else goes through
 * ic-cache.h and ic-engine.h).
 *
 * Layers, bottom first; each file calls only the ones above it in this
 * list (test/t-layers.sh checks it from the objects' symbols):
 *   blockmap.c, store.c, stage.c   block table, data files, recent fills
 *   qmap.c       a qcow2 template's host-to-guest cluster map, from the
 *                cached tables (readahead's guide)
 *   pin.c        pin sets per class: range algebra, class marks
 *                (BLK_CLASS) in a block table, the quota check, recording
 *   cache.c      templates, generations, references, inodes, the LRU
 *                clock, revalidation (a new validator: a new generation,
 *                its blocks marked from the pin set)
 *   evict.c      quotas, cache_max, min_free: victims and reservations
 *   read.c       the read path: hits, single-flight fills, prefetch
 *   readahead.c  sequential readahead (prefetches)
 *   prewarm.c    pins that read the template: qcow2-metadata, config
 *                pins, pre-warming
 *   engine.c     start-up, configuration (templates, directories,
 *                pending retries), housekeeping, reload, shutdown
 *
 * LOCKS, outermost first; a thread holding one may take only those after
 * it in this list:
 *   cache.cfg_lock   serialises config loads (start, reload, pending
 *                    retries).  Held across the origin checks of templates
 *                    being added (each bounded by connect_timeout), the
 *                    listings of [directory] sources (a local one walked
 *                    away from at connect_timeout, an HTTP one bounded by
 *                    origin_timeout), the config file, a second index
 *                    connection, and the data files of templates not yet
 *                    published (created, unclaimed blocks punched, other
 *                    generations unlinked); never across reads of template
 *                    data (config pins are resolved after it, pin_job).
 *   tmpl.cfgpin_lock serialises applying one template's config pins; held
 *                    across the reads they need (origin_timeout each) and
 *                    everything a read and a pin change take (all below).
 *   qmap.lock        one generation's qcow2 map (qmap.c): held across
 *                    reads of its cached tables (evict_rw, gen.lock).
 *   gen.evict_rw     the read path's one lock held across data-file I/O:
 *                    shared while bytes are copied from the data file
 *                    (stage.lock, fillbuf and tmpl.rec_lock are taken
 *                    under it), exclusive while holes are punched.
 *   tmpl.lock        also held while a new generation's data file is
 *                    created (open, ftruncate: its name is the generation
 *                    number, which tmpl.lock hands out); never across
 *                    reads or writes of data, nor origin I/O.  Waits on
 *                    tmpl.checked (a recheck in flight, bounded by the
 *                    caller's deadline).
 *   readahead.lock   the fetchers' queue (readahead.c): a queued job's
 *                    reference is taken under it (gen.lock).
 *   gen.lock         block table, references, fills' bookkeeping; only
 *                    leaves under it (the writer's: records queued).
 *                    Waits on gen.filled, bounded (the read's deadline).
 * Leaves, taken last (nothing is taken under them): tmpl.rec_lock,
 * cache.pend_lock, cache.hk_lock (the housekeeping and warmer threads'
 * flags; both drop it across their work), engine.c's checker.lock, and the locks
 * of the modules below the engine (writer, stage, fillbuf, health,
 * origin and its fetch scheduler; each header has its own rule, and none
 * takes an engine lock).  A fill waits for an origin slot (ic-sched.h)
 * and a pre-warm for its rate with no engine lock held, but cfgpin_lock
 * for config pins' reads.
 * prewarm.c's warm.lock is held only around its caller's progress
 * callback, which must take nothing but a leaf of its own (ctl.c's), and
 * in the timed wait (100 ms at most) of a warm waiting for its rate.
 * Only cfg_lock and cfgpin_lock are held across origin I/O.
 * cache_gen_put() may take tmpl.lock: never call it with tmpl.lock held. */
#ifndef IC_CACHE_PRIV_H
#define IC_CACHE_PRIV_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "ic-blockmap.h"
#include "ic-cache.h"
#include "ic-conf.h"
#include "ic-index.h"
#include "ic-origin.h"
#include "ic-pinspec.h"
#include "ic-util.h"
#include "ic-verify.h"

struct conf_source;
struct writer;

/* t, number, info, uid, bs, fd, dfd, direct_reads and ino are fixed before
 * the generation is shared (ino as it is linked, under tmpl.lock). */
struct gen {
    struct tmpl *t;
    uint64_t number;
    struct origin_info info;
    uint64_t uid;            /* unique in this process: the stage's key */
    uint32_t bs;
    int fd;                  /* data file */
    int dfd;                 /* the data file opened O_DIRECT, or -1 */
    int direct_reads;        /* data_direct_io: reads use dfd too */
    uint64_t ino;            /* its inode number (cache_gen_ino) */
    struct gen *next_live;   /* the template's live generations (tmpl.lock) */
    pthread_mutex_t lock;    /* protects bm (with its failed fills:
                                BLK_FAILED, read.c), refs, stale, heal_*,
                                evicting, reserved */
    pthread_cond_t filled;   /* broadcast when a fill ends (either way) */
    struct blockmap bm;      /* (lock); a block's state and flags are also
                                peeked at with atomic loads, as hints */
    int refs;
    int stale;               /* superseded: the origin changed; no fills
                                (written under tmpl.lock and gen.lock) */
    /* After an answer "changed" that a recheck found false: no fill starts
     * before heal_until_ms; heal_ms is the backoff (doubles while it
     * happens again, reset by a fill that works). */
    uint64_t heal_until_ms, heal_ms;  /* (lock) */
    /* Held shared while bytes are handed to the kernel straight from the
     * data file, exclusively while a hole is punched: an eviction cannot
     * zero bytes in the middle of a zero-copy reply. */
    pthread_rwlock_t evict_rw;
    uint64_t evicting; /* bytes marked for eviction, not yet punched (lock) */
    uint64_t reserved; /* room taken by fills not yet published (lock) */
    /* Its block manifest (verify.c): mf_state MF_UNSET until a fill first
     * needs it, MF_FETCHING while one fetches or opens it (the others wait
     * on filled), MF_SETTLED after; mf then holds it with a reference
     * (NULL: none, or refused), replaced only by a fresher one
     * (verify_refresh, mf_refreshing while one fetches).  mf_state, mf,
     * mf_refreshing (lock). */
    int mf_state;
    int mf_refreshing;
    struct vmf *mf;
    /* Disk its stored manifest takes (atomic; 0: none): counted with its
     * blocks under the quota and cache_max (evict.c).  Set when the
     * generation is made (a copy stored by an earlier run) and whenever
     * verify.c stores or removes one. */
    uint64_t mf_bytes;
    /* Pre-warm and readahead fills in progress, each with the blocks it
     * claimed (read.c, lock): a demand reader that waits for one of those
     * blocks raises that fill's urgent flag, so that its origin request
     * counts as a demand read (origin_req.urgent, ic-sched.h) while the
     * fill's other requests, and every other pre-warm fill, keep their
     * class. */
    struct fill_ticket *tickets;
    /* Readahead's bytes (atomic): fetched from the origin, and those of
     * them a reader has read since (each block once: BLK_RA). */
    uint64_t ra_fetched, ra_used;
    struct qmap *qmap;       /* set once (compare-and-swap), qmap.c */
};

struct tmpl {
    struct cache *c;
    char *name;
    char *location;          /* origin path or URL (may hold secrets) */
    char *pin_spec;          /* the config's "pin =" value (cfg_lock) */
    uint64_t pin_seq;        /* config loads that set pin_spec (cfg_lock) */
    pthread_mutex_t cfgpin_lock; /* protects cfg_applied */
    uint64_t cfg_applied;    /* the pin_seq whose pins the config source
                                holds (src_pins[PIN_SRC_CONFIG]) */
    struct conf_net net;     /* src's settings, mirrors resolved for us;
                                fixed but require_strong_etag (atomic,
                                written under cfg_lock by a reload) */
    struct origin *origin;
    int64_t tid;             /* index row id */
    uint64_t quota;          /* atomic (a reload sets it, cfg_lock) */
    uint32_t bs;
    int link_rule;           /* 0 [template], 1 [directory], 2 ditto with
                                follow_symlinks: fixed with the origin */
    uint64_t timeout_ms;     /* origin_timeout (atomic: a reload sets it
                                under cfg_lock, readers take no lock) */
    uint64_t revalidate_ms;  /* 0: check the origin at every open */
    pthread_mutex_t lock;    /* protects cur, live, last_check_ms,
                                checking, recheck_ms, check_*,
                                retry_* */
    struct gen *cur;
    struct gen *live;        /* cur and every older one still referenced */
    /* The generation before cur, kept (its data file and index rows) for
     * delta fills to copy from until an eviction wants its room, or the
     * next generation replaces it (verify.c); NULL when none.  Holds a
     * reference. */
    struct gen *prev;
    uint64_t last_check_ms;
    int checking;            /* a recheck is asking the origin */
    uint64_t recheck_ms;     /* when the last recheck ended */
    uint64_t check_seq;      /* origin checks started */
    uint64_t check_applied;  /* the newest check whose answer was applied */
    uint64_t retry_ino;      /* the inode an ESTALE open will retry on */
    uint64_t retry_until_ms; /* ... if it comes before this */
    pthread_cond_t checked;  /* broadcast when a recheck ends */
    int weak_warned;         /* "no strong ETag" said (tmpl.lock) */
    int manifest_mode;       /* CONF_MANIFEST_*, and its location: fixed */
    uint64_t mf_refresh_ms;  /* last verify_refresh fetch (atomic) */
    char *manifest_loc;      /* CONF_MANIFEST_URL's (may hold secrets) */
    int refuse_logged;       /* require_strong_etag's refusal said (ditto) */
    uint64_t uncached_log_ms; /* last serve-through log line (atomic) */
    /* Pin sets per source and class (ic-pin.h), [PIN_LOW..PIN_BOOT]:
     * within a source each normalized, pairwise disjoint (tmpl.lock). */
    struct byte_range *src_pins[PIN_NSRC][PIN_NCLASS];
    size_t nsrc_pins[PIN_NSRC][PIN_NCLASS];
    /* What they make together, a range in the strongest class any source
     * gives it: each normalized, pairwise disjoint (tmpl.lock).  What
     * blocks are marked with, warmed and listed from. */
    struct byte_range *pins[PIN_NCLASS];
    size_t npins[PIN_NCLASS];
    /* Bytes of the blocks whose strongest pin is of each class, [PIN_NONE]
     * all pinned blocks (tmpl.lock). */
    uint64_t pinned_bytes[PIN_NCLASS];
    pthread_mutex_t rec_lock; /* protects rec*, trace* */
    int recording;           /* atomic: 0, or PIN_REC_PROFILE / _TRACE */
    struct byte_range *rec;
    size_t nrec, rec_cap;
    struct trace_read *trace; /* PIN_REC_TRACE: every read, in order */
    size_t ntrace, trace_cap;
    uint64_t trace_dropped;  /* reads past PIN_TRACE_MAX */
    int gone;                /* atomic: origin says the template is gone */
    int removed;             /* atomic: no longer in the configuration */
    /* The origin check before publishing: written by one checker thread,
     * read after it is joined (cfg_lock held throughout). */
    int start_rc, start_done, quiet;
    struct origin_info start_info;
    uint64_t epoch;          /* config load that last named it (cfg_lock) */
    struct tmpl_stats st;
    uint64_t vfail[VERIFY_MAX_SOURCES]; /* verification failures per source
                                           (origin_source_name; atomic) */
    struct ratelimit vfail_log; /* verify_note_failure's lines */
    uint64_t vfail_noted[VERIFY_MAX_SOURCES]; /* ... of them in "verify"
                                    events (the savers of saved, below) */
    struct index_counters saved; /* figures last queued for the index
                                    (the housekeeping thread's, then
                                    engine_close's) */
};

/* Something a config load could not resolve yet: a template whose origin
 * did not answer (t), or a [directory] that could not be listed or (a
 * path) listed nothing (dir): it is listed again in the background while
 * the templates it listed last are served from the cache. */
struct pending {
    struct tmpl *t;
    const struct conf_source *dir;
};

enum { MF_UNSET = 0, MF_FETCHING = 1, MF_SETTLED = 2 };

#define CACHE_OLD_ARRAYS 1024

/* A config replaced by a reload, freed after a grace period. */
struct old_conf {
    struct conf *conf;
    uint64_t retired_ms;
};

struct cache {
    struct conf *conf;       /* current config: replaced under cfg_lock
                                (release store), read without a lock
                                (see retire_conf) */
    struct index *ix;
    struct writer *w;
    struct tmpl **t;         /* append-only, under cfg_lock (release
                                stores); read via cache_snapshot */
    size_t nt;
    uint64_t epoch;          /* config loads so far (cfg_lock) */
    struct tmpl **old_arrays[CACHE_OLD_ARRAYS]; /* freed at exit (cfg_lock) */
    size_t old_arrays_n;
    struct conf *first_conf;     /* the caller's: never freed by us */
    struct old_conf *old_confs;  /* replaced configs (cfg_lock) */
    size_t old_confs_n, old_confs_cap;
    uint64_t clock;          /* access counter for LRU (atomic) */
    pthread_t hk;            /* housekeeping thread */
    pthread_mutex_t hk_lock; /* protects hk_stop, pins_due, warm_due */
    pthread_cond_t hk_wake;
    int hk_stop;             /* (hk_lock; the warmer also loads it atomically
                                between chunks) */
    pthread_t warmer;        /* the background pre-warm (prewarm = yes) */
    pthread_cond_t warm_wake;
    int warm_due;            /* a pass of prewarm_pending to run */
    int warm_running;        /* the warmer thread exists */
    int hk_running;          /* set before the reload thread starts,
                                cleared after it is joined */
    int pins_due;            /* config pins to apply (hk_lock) */
    struct readahead *ra;    /* sequential readahead fetchers */
    struct stage *stage;     /* recent readahead fills (direct_fill) */
    uint64_t reserved;       /* room reserved by fills, all gens (atomic) */
    pthread_mutex_t cfg_lock; /* serialises config loads (start, reload,
                                 pending retries); protects conf's and
                                 t's replacement, epoch, old_* */
    /* A second index connection for delta fills' lookups (verify.c),
     * NULL if it could not be opened; lookup_lock (a leaf, held across
     * one query) serialises its users. */
    struct index *lookup_ix;
    pthread_mutex_t lookup_lock;
    int no_reflink;          /* FICLONERANGE refused once: copy instead
                                (atomic) */
    pthread_mutex_t pend_lock; /* protects pend, npend */
    struct pending *pend;
    size_t npend;
};

/* ------------------------------------------- shared by the engine's files */

/* The LRU clock: the next access count. */
uint32_t cache_tick(struct cache *c);
/* Whether fills bypass the page cache (direct_fill or data_direct_io). */
int cache_fills_direct(const struct conf *conf);
/* A new generation of t, not yet linked (its data file created), or NULL
 * (logged by the caller). */
struct gen *cache_gen_new(struct tmpl *t, uint64_t number,
                          const struct origin_info *info);
/* Make g the template's current generation (tmpl.lock held, t->tid
 * final). */
void cache_gen_link(struct tmpl *t, struct gen *g);
/* The index row of t at generation g. */
void cache_tmpl_row(const struct tmpl *t, const struct gen *g,
                    struct index_tmpl *row);
/* The "no strong ETag" warning or, with require_strong_etag, the refusal
 * (1).  tmpl.lock held, or t not yet published. */
int cache_validator_refused(struct tmpl *t, const char *validator);
/* Drop t's previous generation (kept for delta fills): its index rows
 * and, once nothing references it, its data file.  Its bytes, 0 when
 * there was none.  No engine lock held. */
uint64_t cache_drop_prev(struct tmpl *t);
/* Bytes of t's previous generation's present blocks and stored manifest
 * (0: none); cache_drop_prev's count them the same way. */
uint64_t cache_prev_bytes(struct tmpl *t);
/* A reference to generation `number` of the template whose index row is
 * tid, if it is that template's current or previous one; else NULL. */
struct gen *cache_gen_find(struct cache *c, int64_t tid, uint64_t number);
/* Have the warmer (prewarm = yes) fetch the pinned blocks that are
 * missing, e.g. in a new generation (no engine lock held). */
void cache_warm_due(struct cache *c);
/* Find a template by name, removed ones included. */
struct tmpl *cache_find_any(struct cache *c, const char *name);

/* qmap.c.  How far readahead after a read ending at host offset `end`
 * may go, looking at most `want` bytes on: the end of the run of host
 * clusters that continue the guest region of the read's last cluster (end
 * itself when that cluster maps no guest data: metadata, unallocated), or
 * UINT64_MAX when g has no qcow2 map (not qcow2, not cached yet). */
struct qmap;
uint64_t qmap_limit(struct gen *g, uint64_t end, uint64_t want);
void qmap_free(struct qmap *q);

/* read.c: fetch the missing blocks of a range that nobody is fetching yet,
 * for readahead; no copy, no waiting on other fills. */
void cache_prefetch(struct gen *g, uint64_t off, uint64_t len);

#endif
