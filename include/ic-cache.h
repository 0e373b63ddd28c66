/* The cache engine: templates, their generations, and the read path.
 *
 * Objects:
 *   struct cache  one per daemon: config, index writer, templates.
 *   struct tmpl   one per template name; stable for the daemon's life.
 *   struct gen    one generation of a template's content: origin validator,
 *                 data file and block table.  Reference counted: each open
 *                 file handle holds one, the template holds one on its
 *                 current generation.  A superseded generation is deleted
 *                 (data file unlinked) when its last reference goes.
 *
 * One inode per generation.  The kernel keeps a page cache per FUSE inode,
 * shared by every handle of that inode; so each generation is its own
 * inode (gen.ino, see cache_gen_ino()), a handle of inode I reads only I's
 * generation, and no page of one generation can ever be read through a
 * handle of another: the pages of an inode are immutable.  A lookup names
 * the current generation's inode; an open of a superseded one fails with
 * ESTALE, which makes the kernel look the name up again (LOOKUP_REVAL) and
 * open the new inode.
 *
 * A generation is superseded (stale) only when the origin's validator is
 * seen to change.  A read that the origin answers as if it had changed
 * (412, 416, another size or validator) makes the engine ask the origin
 * (cache_gen_recheck): a new validator starts a new generation; the same
 * one means the answer was a fluke (a stale node behind a balancer), and
 * reads go on after a bounded backoff.
 *
 * Locking order: tmpl.lock before gen.lock.  No lock is held across origin
 * I/O or data-file I/O.  cache_gen_put() may take tmpl.lock: never call it
 * with tmpl.lock held. */
#ifndef IC_CACHE_H
#define IC_CACHE_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "ic-blockmap.h"
#include "ic-conf.h"
#include "ic-index.h"
#include "ic-origin.h"
#include "ic-pinspec.h"

struct conf;
struct conf_source;
struct index;
struct writer;

struct tmpl_stats { /* updated with __atomic builtins, no lock */
    uint64_t hits;         /* blocks served from the cache */
    uint64_t misses;       /* blocks fetched from the origin */
    uint64_t origin_bytes; /* bytes fetched from the origin */
    uint64_t origin_reads; /* origin read requests */
    uint64_t fill_errors;  /* failed fills */
    uint64_t evictions;    /* blocks evicted */
    uint64_t evicted_bytes;
    uint64_t uncached;     /* blocks served without caching (no room) */
};

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
    pthread_mutex_t lock;    /* protects bm, refs, stale, heal_* */
    pthread_cond_t filled;   /* broadcast when a fill ends (either way) */
    struct blockmap bm;
    int refs;
    int stale;               /* superseded: the origin changed; no fills
                                (written under tmpl.lock and gen.lock) */
    /* After an answer "changed" that a recheck found false: no fill starts
     * before heal_until_ms; heal_ms is the backoff (doubles while it
     * happens again, reset by a fill that works). */
    uint64_t heal_until_ms, heal_ms;
    /* The last failed fill (blocks fail_first..fail_last): a read of them
     * within FAIL_MEMORY_MS fails at once instead of waiting a second full
     * origin_timeout (the kernel retries a failed readahead page). */
    uint64_t fail_first, fail_last, fail_until_ms;
    /* Held shared while bytes are handed to the kernel straight from the
     * data file, exclusively while a hole is punched: an eviction cannot
     * zero bytes in the middle of a zero-copy reply. */
    pthread_rwlock_t evict_rw;
    uint64_t evicting; /* bytes marked for eviction, not yet punched (lock) */
    uint64_t reserved; /* room taken by fills not yet published (lock) */
};

struct tmpl {
    struct cache *c;
    char *name;
    char *location;          /* origin path or URL (may hold secrets) */
    char *pin_spec;          /* the config's "pin =" value (cfg_lock) */
    struct byte_range *cfg_pins; /* what pin_spec last resolved to (cfg_lock) */
    size_t ncfg_pins;
    struct conf_net net;     /* src's settings, mirrors resolved for us */
    struct origin *origin;
    int64_t tid;             /* index row id */
    uint64_t quota;
    uint32_t bs;
    int link_rule;           /* 0 [template], 1 [directory], 2 ditto with
                                follow_symlinks: fixed with the origin */
    uint64_t timeout_ms;     /* origin_timeout */
    uint64_t revalidate_ms;  /* 0: check the origin at every open */
    pthread_mutex_t lock;    /* protects cur, live, last_check_ms,
                                checking, recheck_ms, check_*,
                                retry_* */
    struct gen *cur;
    struct gen *live;        /* cur and every older one still referenced */
    uint64_t last_check_ms;
    int checking;            /* a recheck is asking the origin */
    uint64_t recheck_ms;     /* when the last recheck ended */
    uint64_t check_seq;      /* origin checks started */
    uint64_t check_applied;  /* the newest check whose answer was applied */
    uint64_t retry_ino;      /* the inode an ESTALE open will retry on */
    uint64_t retry_until_ms; /* ... if it comes before this */
    pthread_cond_t checked;  /* broadcast when a recheck ends */
    int weak_warned;         /* "no strong ETag" said (tmpl.lock) */
    int refuse_logged;       /* require_strong_etag's refusal said (ditto) */
    uint64_t uncached_log_ms; /* last serve-through log line (atomic) */
    struct byte_range *pins; /* pin set, normalized (tmpl.lock) */
    size_t npins;
    uint64_t pinned_bytes;   /* bytes of the blocks pins cover (tmpl.lock) */
    pthread_mutex_t rec_lock; /* protects rec, nrec, rec_cap */
    int recording;           /* atomic: readers note their ranges */
    struct byte_range *rec;
    size_t nrec, rec_cap;
    int gone;                /* atomic: origin says the template is gone */
    int removed;             /* atomic: no longer in the configuration */
    int start_rc, start_done, quiet; /* origin check before publishing */
    struct origin_info start_info;
    uint64_t epoch;          /* config load that last named it */
    struct tmpl_stats st;
    struct index_counters saved; /* figures last queued for the index */
};

/* Something a config load could not resolve yet: a template whose origin
 * did not answer (t), or a [directory] that could not be listed or (a
 * path) listed nothing (dir): it is listed again in the background while
 * the templates it listed last are served from the cache. */
struct pending {
    struct tmpl *t;
    const struct conf_source *dir;
};

#define CACHE_OLD_ARRAYS 1024

/* A config replaced by a reload, freed after a grace period. */
struct old_conf {
    struct conf *conf;
    uint64_t retired_ms;
};

struct cache {
    struct conf *conf;       /* current config (replaced on reload) */
    struct index *ix;
    struct writer *w;
    struct tmpl **t;         /* append-only; read via cache_snapshot */
    size_t nt;
    uint64_t epoch;          /* config loads so far */
    struct tmpl **old_arrays[CACHE_OLD_ARRAYS]; /* freed at exit */
    size_t old_arrays_n;
    struct conf *first_conf;     /* the caller's: never freed by us */
    struct old_conf *old_confs;  /* replaced configs (cfg_lock) */
    size_t old_confs_n, old_confs_cap;
    uint64_t clock;          /* access counter for LRU (atomic) */
    pthread_t hk;            /* housekeeping thread */
    pthread_mutex_t hk_lock; /* protects hk_stop */
    pthread_cond_t hk_wake;
    int hk_stop, hk_running;
    struct readahead *ra;    /* sequential readahead fetchers */
    struct stage *stage;     /* recent readahead fills (direct_fill) */
    uint64_t reserved;       /* room reserved by fills, all gens (atomic) */
    pthread_mutex_t cfg_lock; /* serialises reloads and pending retries */
    pthread_mutex_t pend_lock; /* protects pend, npend */
    struct pending *pend;
    size_t npend;
};

/* Start the engine: create cache_dir, open the index, stat every origin,
 * pick each template's generation and load its present blocks, start the
 * index writer.  Templates whose origin is unreachable and unknown to the
 * index are left out with a warning; a [directory] that cannot be listed
 * keeps the templates it listed last.  0 or -errno (logged). */
int cache_open(struct conf *conf, struct cache **out);
/* Start background work once the mount is up: config pins, periodic
 * saving of counters.  0 or -errno. */
int cache_start_housekeeping(struct cache *c);
/* Commit what is queued for the index and _exit(status) without freeing
 * (threads that cannot be stopped still use the templates). */
void cache_flush_and_exit(struct cache *c, int status)
    __attribute__((noreturn));
/* Commit the index and free everything. */
void cache_close(struct cache *c);

/* Re-read the config (SIGHUP): add new templates, hide removed ones
 * (open handles keep working), apply new quotas and pins.  An invalid
 * config is logged with FILE:LINE and the running one kept.  Called from
 * one thread at a time.  0 or -1. */
int cache_reload(struct cache *c, const char *path);

/* The templates (including removed ones); lock-free, see cache.c. */
size_t cache_snapshot(struct cache *c, struct tmpl ***arr);
struct tmpl *cache_find(struct cache *c, const char *name);
/* The template of an inode (of any of its generations), or NULL. */
struct tmpl *cache_find_ino(struct cache *c, uint64_t ino);

/* Inode numbers: the template's index row id in the high 32 bits, the
 * generation number's low 32 bits below (stable across restarts, readable
 * with ls -i, never 1, the root's). */
static inline uint64_t cache_gen_ino(int64_t tid, uint64_t number)
{
    return ((uint64_t)tid << 32) | (number & 0xffffffffu);
}
/* The inode a lookup of the template gives now: its current generation's. */
uint64_t cache_tmpl_ino(struct tmpl *t);
/* A reference to the live generation of inode ino, or NULL (none: it was
 * superseded and its last handle closed). */
struct gen *cache_gen_get_ino(struct cache *c, uint64_t ino);

/* 0 while an http origin answers 404/410 for the template (rechecked at
 * most every `revalidate`), else 1. */
int cache_tmpl_visible(struct tmpl *t);

/* Size and mtime of the template's current generation. */
void cache_tmpl_attr(struct tmpl *t, uint64_t *size, int64_t *mtime_ns);

/* Open the template for reading: revalidate the origin if due (a changed
 * validator starts a new generation) and return a reference to the current
 * generation.  With ino nonzero, the open is of that inode: -ESTALE unless
 * it is the current generation's (the kernel then looks the name up again).
 * 0 or -errno. */
int cache_gen_open(struct tmpl *t, uint64_t ino, struct gen **out);
void cache_gen_put(struct gen *g);

/* The origin answered a read of g as if the template had changed.  Ask it
 * (single-flight per template, at most once per second, bounded by the
 * deadline and connect_timeout): -ESTALE when g was superseded (now or
 * before), -ENOENT when the origin says the template is gone, else 0 (the
 * answer was a fluke, or the origin could not be asked: the caller backs
 * off and retries, see read.c). */
int cache_gen_recheck(struct gen *g, uint64_t deadline);
/* A reference to the template's current generation (no revalidation). */
struct gen *cache_cur_gen(struct tmpl *t);

/* Read len bytes at off of generation g into buf.  Returns bytes read
 * (short only at end of file) or -errno (-EIO when the origin cannot supply
 * a missing block within origin_timeout). */
ssize_t cache_read(struct gen *g, char *buf, uint64_t off, size_t len);

/* Zero-copy reads: if every block of the read is present and verified,
 * returns 1 with *len set (clamped to the file) and eviction held off
 * until cache_read_fd_end(); the caller replies from g->fd.  0 otherwise
 * (use cache_read). */
int cache_read_fd_begin(struct gen *g, uint64_t off, size_t size,
                        size_t *len);
void cache_read_fd_end(struct gen *g);
/* Bytes of present blocks: from the stage (recent fills, see ic-stage.h)
 * where it holds them, else from g->fd.  0 or -EIO. */
int cache_pread_present(struct gen *g, char *buf, uint64_t off, size_t len);
/* Whether one staged fill holds all of [off, off+len): then *data points
 * at the bytes until cache_stage_unref(g, *ref). */
int cache_stage_peek(struct gen *g, uint64_t off, size_t len,
                     const char **data, void **ref);
void cache_stage_unref(struct gen *g, void *ref);

/* Fetch the missing blocks of a range that nobody is fetching yet, for
 * readahead; no copy, no waiting on other fills. */
void cache_prefetch(struct gen *g, uint64_t off, uint64_t len);
void cache_gen_ref(struct gen *g);

/* Internal, shared by cache.c and read.c. */
uint32_t cache_tick(struct cache *c);

#endif
