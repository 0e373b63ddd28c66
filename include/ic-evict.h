/* Eviction: keep each template under its quota, the whole cache under
 * cache_max and the cache filesystem above min_free.
 *
 * Victims are present, non-zero blocks, taken in tiers: unpinned blocks
 * first, then those of pin class low, then high (ic-pinspec.h), least
 * recently used first within a tier (the global access counter in struct
 * blk.atime, as CVMFS orders by a counter rather than wall-clock time);
 * boot blocks never.  A fill takes from the tiers up to its own class (a
 * fetched run makes room per stretch of blocks of one class, the
 * strongest first; a boot fill up to high): a fill may
 * displace blocks of a weaker class, never of a stronger one, and blocks
 * of its own class (LRU) only of other templates: a pinned set larger
 * than its room stays partly resident rather than churning.  Under
 * cache_max and min_free the tiers span the templates: every template's
 * unpinned blocks go before any template's low blocks.  A victim is claimed like a fill
 * (FILLING) while its hole is punched, so no reader can refill it and lose
 * the new bytes to the punch; readers that copied its bytes meanwhile see
 * its seq change and retry.
 *
 * Locking: called with no engine lock held (tmpl.cfgpin_lock excepted: a
 * config pin's read fills too).  Victims are chosen and marked under
 * gen.lock, their removals committed (writer_flush_since, up to 30 s) with
 * no lock held, their holes punched under gen.evict_rw taken exclusively
 * with no other lock; see fs/engine/cache-priv.h for the order. */
#ifndef IC_EVICT_H
#define IC_EVICT_H

#include <stdint.h>

struct gen;
struct cache;

/* Make room for `need` more bytes in g's template before a fill.  Returns
 * 0 when the fill may be stored, -ENOSPC when it may not (pinned blocks
 * fill the quota): the caller then serves the bytes without caching them.
 * On 0 the room is reserved -- it counts as used under the quota and
 * cache_max and is kept free above min_free, so fills running at once
 * cannot overshoot together -- until the caller, its blocks published (or
 * given up), calls evict_unreserve(g, need).
 * `cls` is the fill's pin class (enum pin_class, PIN_NONE for unpinned
 * blocks): what it may displace (above).  A fill of pinned blocks tries
 * many more eviction rounds (64, against 4), so concurrent fills of
 * unpinned blocks cannot starve it. */
int evict_make_room(struct gen *g, uint64_t need, int cls);
/* Or'd into cls: a background fill (the daemon's own pre-warm, struct
 * origin_req.background).  It takes only free room and blocks of tiers
 * strictly weaker than its class (an unpinned one only free room): two
 * templates whose pins of one class do not fit together are warmed up to
 * what fits, not in turns at every pass, each evicting the other's. */
#define EVICT_BACKGROUND 0x10
/* Whether `need` more bytes of class cls (EVICT_BACKGROUND allowed) in g's
 * template could be given room now: free room under the quota, cache_max
 * and min_free, or blocks a fill of that class may displace.  A hint for
 * a background pre-warm, taken before it fetches anything (it would
 * otherwise fetch bytes only to serve them uncached); scans the block
 * tables.  Called with no engine lock held. */
int evict_may_fit(struct gen *g, uint64_t need, int cls);
void evict_unreserve(struct gen *g, uint64_t need);

/* Evict up to `bytes` bytes from template generation g, the tiers a fill
 * of g's template of class cls may take (PIN_NONE: unpinned blocks only),
 * weakest tier first, LRU first within one.  Returns the bytes freed. */
uint64_t evict_from_gen(struct gen *g, uint64_t bytes, int cls);

/* Bytes of cached data over all templates' current and previous
 * generations, their stored manifests included (gen.mf_bytes: they count
 * under cache_max and each template's quota like its blocks), and the
 * room fills have reserved (any generation). */
uint64_t evict_cache_used(struct cache *c);

#endif
