/* The stage: buffers of recent fills, kept in memory a little while so that
 * the reader a readahead fill was made for gets the bytes from memory.
 *
 * Why: fills write the data file with O_DIRECT (no second copy of every
 * fetched byte in the host page cache, next to the one the kernel keeps for
 * the FUSE file), so a reader arriving just after its readahead would
 * otherwise read the block back from disk.  The stage holds what was fetched
 * ahead of the reader; an entry goes once all its bytes were handed to
 * readers, and the stage is bounded in bytes (the oldest entries go first)
 * and in age (stage_age).  A fill is staged before its blocks are
 * published, and stays staged if storing some of them failed: callers
 * consult it only for blocks they have seen present, whose bytes (those of
 * one generation, which never change) are the staged ones.
 *
 * Entries are keyed by a generation's unique id (struct gen.uid), never by
 * a pointer, so bytes of one generation cannot be served for another.
 *
 * Locking: stage.lock (stage.c) protects the list of entries, each
 * entry's references and counts, and the stage's bytes and bound; an
 * entry's key, range and bytes are fixed once put.  A leaf: gap reads,
 * copies and release() all run with it released (a release may unmap
 * 4 MiB).  Callers may hold any engine lock (the zero-copy read path
 * holds gen.evict_rw). */
#ifndef IC_STAGE_H
#define IC_STAGE_H

#include <stdint.h>

struct stage;

/* A stage holding at most cap bytes (0: every put is refused); buffers
 * it is done with go to release.  NULL on allocation failure. */
struct stage *stage_new(uint64_t cap, void (*release)(char *buf));
/* Only once no reference is held (every reader and filler is done). */
void stage_free(struct stage *s);
/* Change the bound (a reload); entries over it are dropped. */
void stage_set_cap(struct stage *s, uint64_t cap);

/* Hand over buf, a buffer holding bytes [off, off+len) of
 * generation key.  Returns a reference (buf stays valid until
 * stage_unref), the stage then releases buf; or NULL when the stage cannot
 * keep it, and buf is still the caller's. */
void *stage_put(struct stage *s, uint64_t key, uint64_t off, char *buf,
                uint64_t len);

/* Bytes of [off, off+len) of key not held by the stage are read by
 * gap(arg, dst, off, len), which returns 0 or -errno. */
typedef int (*stage_gap_fn)(void *arg, char *dst, uint64_t off,
                            uint64_t len);

/* Fill dst with [off, off+len) of key: what the stage holds is copied from
 * it, the rest read by gap.  Returns the bytes copied from the stage, or
 * the -errno of the gap read that failed. */
int64_t stage_read(struct stage *s, uint64_t key, char *dst, uint64_t off,
                   uint64_t len, stage_gap_fn gap, void *arg);

/* Whether one entry holds all of [off, off+len) of key: then *data points
 * at those bytes, valid until stage_unref(s, *ref). */
int stage_peek(struct stage *s, uint64_t key, uint64_t off, uint64_t len,
               const char **data, void **ref);
void stage_unref(struct stage *s, void *ref);
/* Whether the stage holds nothing at all (a racy hint: what it means for
 * a caller is in ic-cache.h, cache_splice_fd). */
int stage_empty(struct stage *s);

/* Drop every entry of key (its generation is going away). */
void stage_forget(struct stage *s, uint64_t key);
/* Drop entries staged more than max_age_ms before now_ms. */
void stage_age(struct stage *s, uint64_t now_ms, uint64_t max_age_ms);
/* Bytes held (for tests and the report). */
uint64_t stage_bytes(struct stage *s);

#endif
