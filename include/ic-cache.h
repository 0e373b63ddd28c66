/* The engine's public face: templates, their generations, and the read
 * path, for the daemon's FUSE and control layers and the tools.  The
 * objects are opaque outside fs/engine/ (their fields and lock rules are
 * in fs/engine/cache-priv.h); the engine's start, stop and reload are in
 * ic-engine.h.
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
 * Locking: callers outside the engine hold none of its locks, with one
 * exception: a successful cache_read_fd_begin() returns with g's
 * evict_rw held shared until cache_read_fd_end(); in between call only
 * cache_pread_present(), cache_stage_peek(), cache_stage_unref() and
 * cache_splice_fd() on g (and a reply reading that fd),
 * and fillbuf: nothing that fills or evicts (an eviction from g takes
 * evict_rw exclusively: it would wait on the caller itself).
 */
#ifndef IC_CACHE_H
#define IC_CACHE_H

#include <stdint.h>
#include <sys/types.h>

struct cache;
struct conf;
struct gen;
struct origin;
struct origin_req;
struct readahead;
struct tmpl;

struct tmpl_stats { /* updated with __atomic builtins, no lock */
    uint64_t hits;         /* blocks served from the cache */
    uint64_t misses;       /* blocks fetched from the origin */
    uint64_t origin_bytes; /* bytes fetched from the origin */
    uint64_t origin_reads; /* origin read requests */
    uint64_t fill_errors;  /* failed fills */
    uint64_t evictions;    /* blocks evicted */
    uint64_t evicted_class[4]; /* ... of them, per pin class (PIN_LOW,
                                  PIN_HIGH; the others stay 0) */
    uint64_t evicted_bytes;
    uint64_t uncached;     /* blocks served without caching (no room) */
    uint64_t ra_skipped;   /* readahead fetches dropped: no free slot, or
                              demand reads waiting (not kept in the index) */
    uint64_t joined;       /* reads that waited for blocks another read
                              was filling, then served as hits
                              (single-flight; not kept in the index) */
    uint64_t ra_fetched;   /* bytes readahead fetched from the origin */
    uint64_t ra_used;      /* ... of them, bytes a reader read since (a
                              block counted at its first read) */
    /* Block manifests (ic-verify.h): */
    uint64_t local_blocks; /* blocks filled from local copies (delta) */
    uint64_t local_bytes;  /* ... their bytes */
    uint64_t verified;     /* fetched blocks that matched the manifest */
    uint64_t verify_failed; /* fetched blocks that did not (any source) */
    uint64_t zero_skipped; /* zero blocks the manifest spared a fetch */
    uint64_t last_used;    /* wall-clock seconds of the newest demand read
                              (hits too; 0: never), kept in the index */
};

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
 * a missing block within origin_timeout).  who: the class and flow of the
 * origin reads it needs (ic-sched.h; its group is set here, to the
 * template), NULL for a demand read of flow 0. */
ssize_t cache_read(struct gen *g, char *buf, uint64_t off, size_t len,
                   const struct origin_req *who);
/* The same, bounded by deadline (a mono_ms() time; 0: origin_timeout from
 * now), for a read that already waited with cache_wait_filling: one bound
 * for the whole read. */
ssize_t cache_read_until(struct gen *g, char *buf, uint64_t off, size_t len,
                         const struct origin_req *who, uint64_t deadline);
/* origin_timeout from now: the deadline of a read of g starting now. */
uint64_t cache_read_deadline(const struct gen *g);
/* Wait, as a demand read of [off, off+len) would (the fills it waits for
 * made urgent), until none of its blocks is being filled by another
 * caller, or until deadline.  1 when it waited and those fills ended:
 * try the zero-copy path first (cache_read_fd_begin says whether every
 * block is present and verified now), so that the many readers of one
 * cold block, VMs booting from one template, each get it spliced from
 * the data file instead of copied three times; then, or on 0, read it
 * with cache_read_until, same deadline.  -EIO at the deadline. */
int cache_wait_filling(struct gen *g, uint64_t off, size_t len,
                       uint64_t deadline);

/* Zero-copy reads: if every block of the read is present and verified,
 * returns 1 with *len set (clamped to the file) and eviction held off
 * until cache_read_fd_end(); the caller then copies the bytes with
 * cache_pread_present().  0 otherwise (use cache_read). */
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
/* Between cache_read_fd_begin and _end: g's data file, for a reply that
 * splices the range from it, when the stage holds nothing (what it holds
 * is on disk too, but reading it there would cost a disk read); else -1
 * (use cache_pread_present). */
int cache_splice_fd(struct gen *g);

void cache_gen_ref(struct gen *g);

/* ------------------------------------------------------------ accessors */

const char *cache_tmpl_name(const struct tmpl *t);
/* Its block size (fixed for the template's life). */
uint32_t cache_tmpl_bs(const struct tmpl *t);
/* No longer in the configuration (its open handles keep working). */
int cache_tmpl_removed(const struct tmpl *t);
struct origin *cache_tmpl_origin(const struct tmpl *t);
uint64_t cache_tmpl_quota(const struct tmpl *t);
/* Verification failures per source of its origin (origin_source_name's
 * index) into n[0..max): the number of sources filled. */
int cache_tmpl_verify_failures(const struct tmpl *t, uint64_t *n, int max);
/* A copy of the template's counters (each read atomically). */
void cache_tmpl_stats(const struct tmpl *t, struct tmpl_stats *out);

struct cache_gen_attr {
    uint64_t ino;        /* its inode number */
    uint64_t number;     /* generation number */
    uint64_t size;       /* the origin's size and mtime for it */
    int64_t mtime_ns;
    uint32_t bs;         /* block size */
};
struct tmpl *cache_gen_tmpl(const struct gen *g);
/* Fixed for the generation's life: no lock (lookups and getattr). */
void cache_gen_attr(const struct gen *g, struct cache_gen_attr *a);
/* Readahead's bytes of this generation: fetched, and read since. */
void cache_gen_readahead(const struct gen *g, uint64_t *fetched,
                         uint64_t *used);
/* Bytes of its present blocks, now (takes gen.lock). */
uint64_t cache_gen_cached_bytes(struct gen *g);

/* The engine's sequential readahead (see ic-readahead.h). */
struct readahead *cache_readahead(struct cache *c);
/* The running configuration (replaced by a reload; see ic-engine.h). */
const struct conf *cache_conf(struct cache *c);

#endif
