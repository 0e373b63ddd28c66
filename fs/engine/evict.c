/* Quotas, cache_max and min_free: victim selection and hole punching. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "ic-block.h"
#include "cache-priv.h"
#include "ic-conf.h"
#include "ic-evict.h"
#include "ic-index.h"
#include "ic-log.h"
#include "ic-pinspec.h"
#include "ic-store.h"
#include "ic-util.h"
#include "ic-writer.h"

/* Evict a little more than asked so the next fills do not each pay for a
 * scan of the block table (hysteresis, as nbdkit's reclaim does). */
#define EVICT_SLACK_DIV 32

struct victim {
    uint64_t blk;
    uint32_t atime;
};

/* Max-heap on atime of the k oldest candidates seen so far. */
struct heap {
    struct victim *v;
    size_t n, k;
};

static void heap_sift_down(struct heap *h, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && h->v[l].atime > h->v[m].atime)
            m = l;
        if (r < h->n && h->v[r].atime > h->v[m].atime)
            m = r;
        if (m == i)
            return;
        struct victim t = h->v[i];
        h->v[i] = h->v[m];
        h->v[m] = t;
        i = m;
    }
}

static void heap_offer(struct heap *h, uint64_t blk, uint32_t atime)
{
    if (h->n < h->k) {
        size_t i = h->n++;
        h->v[i] = (struct victim){.blk = blk, .atime = atime};
        while (i > 0 && h->v[(i - 1) / 2].atime < h->v[i].atime) {
            struct victim t = h->v[i];
            h->v[i] = h->v[(i - 1) / 2];
            h->v[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
        return;
    }
    if (atime >= h->v[0].atime)
        return;
    h->v[0] = (struct victim){.blk = blk, .atime = atime};
    heap_sift_down(h, 0);
}

/* A victim of eviction tier `cls`: present, not a hole, of exactly that
 * pin class (PIN_BOOT is never a tier). */
static int evictable(const struct blk *b, int cls)
{
    return b->state == BLK_PRESENT && !(b->flags & BLK_ZERO) &&
           (int)BLK_CLASS(b->flags) == cls && cls != PIN_BOOT;
}

/* Collect the k least recently used evictable blocks of tier cls
 * (gen.lock held). */
static void collect(struct gen *g, struct heap *h, int cls)
{
    for (uint64_t i = 0; i < g->bm.nblocks; i++)
        if (evictable(&g->bm.v[i], cls))
            heap_offer(h, i, g->bm.v[i].atime);
}

/* The strongest tier a fill of class `cls` may take from: unpinned
 * blocks and blocks of weaker classes, and of its own class (least
 * recently used first) but boot; never a stronger class. */
static int tier_max(int cls)
{
    return cls >= PIN_BOOT ? PIN_HIGH : cls < PIN_NONE ? PIN_NONE : cls;
}

/* Whether a pinned fill of template t, class cls, may take the blocks of
 * tier k from template u: not its own template's blocks of its own class.
 * A pin set larger than its room then stays partly resident instead of
 * a warm evicting its own first chunks to fetch its last ones (and a
 * retry the reverse).  Unpinned fills take their own template's blocks
 * (the quota's plain LRU). */
static int may_take(const struct tmpl *t, int cls, const struct tmpl *u,
                    int k)
{
    return cls == PIN_NONE || k != cls || t != u;
}

/* Take a chosen block out of service if it is still the block we chose:
 * missing in the table, FILLING so no fill races the punch.  Its bytes, or
 * 0 when it was used again since (then v->blk is set to UINT64_MAX). */
static uint32_t evict_mark(struct gen *g, struct victim *v, int cls)
{
    uint32_t len = block_len(v->blk, g->info.size, g->bs);
    struct blk *b = &g->bm.v[v->blk];

    pthread_mutex_lock(&g->lock);
    if (!evictable(b, cls) || b->atime != v->atime) {
        pthread_mutex_unlock(&g->lock);
        v->blk = UINT64_MAX;
        return 0;
    }
    /* Ours until the hole is punched; its bytes still count as used until
     * then, so concurrent fills do not take room that is not free yet.
     * seq moves so a reader of the data file rechecks the block. */
    b->state = BLK_FILLING;
    b->seq++;
    g->evicting += len;
    pthread_mutex_unlock(&g->lock);
    return len;
}

/* Punch the marked blocks (or, when their removal could not be made
 * durable, put them back) and release them.  A block put back is queued
 * again: its DEL may still be waiting for a locked index and commit later,
 * and the ADD after it keeps the index claiming a block we keep. */
static void evict_finish(struct gen *g, struct victim *v, size_t n, int keep)
{
    if (!keep) {
        pthread_rwlock_wrlock(&g->evict_rw);
        for (size_t i = 0; i < n; i++) {
            if (v[i].blk == UINT64_MAX)
                continue;
            uint32_t len = block_len(v[i].blk, g->info.size, g->bs);
            int r = store_punch(g->fd, block_start(v[i].blk, g->bs), len);
            if (r < 0)
                log_warn("template %s: cannot punch block %llu: %s",
                         g->t->name, (unsigned long long)v[i].blk,
                         strerror(-r));
        }
        pthread_rwlock_unlock(&g->evict_rw);
    }
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < n; i++) {
        if (v[i].blk == UINT64_MAX)
            continue;
        struct blk *b = &g->bm.v[v[i].blk];
        b->state = BLK_PRESENT;
        g->evicting -= block_len(v[i].blk, g->info.size, g->bs);
        if (!keep) {
            blockmap_set_missing(&g->bm, v[i].blk,
                                 block_len(v[i].blk, g->info.size, g->bs));
            continue;
        }
        struct index_rec rec = {.op = INDEX_ADD, .tid = g->t->tid,
                                .gen = g->number, .blk = v[i].blk,
                                .csum = b->csum, .atime = b->atime};
        (void)writer_add(g->t->c->w, &rec, g->fd); /* as read.c's ADDs */
    }
    pthread_cond_broadcast(&g->filled);
    pthread_mutex_unlock(&g->lock);
}

static int victim_cmp(const void *a, const void *b)
{
    const struct victim *x = a, *y = b;
    return x->atime < y->atime ? -1 : x->atime > y->atime;
}

/* Order matters for power cuts: the removals are committed durably before
 * any hole is punched, so the index never claims a punched block. */
static uint64_t evict_victims(struct gen *g, struct victim *v, size_t n,
                              uint64_t bytes, int cls, uint64_t *nblk)
{
    uint64_t freed = 0;
    size_t used = 0;
    uint64_t mark = writer_mark(g->t->c->w); /* before our DELs are queued */
    int lost = 0;
    for (; used < n && freed < bytes; used++) {
        uint32_t len = evict_mark(g, &v[used], cls);
        if (len == 0)
            continue;
        freed += len;
        (*nblk)++;
        struct index_rec rec = {.op = INDEX_DEL, .tid = g->t->tid,
                                .gen = g->number, .blk = v[used].blk};
        lost |= writer_add(g->t->c->w, &rec, -1) < 0;
    }
    if (*nblk == 0)
        return 0;
    /* A DEL the writer could not queue is one not made durable either. */
    int keep = writer_flush_since(g->t->c->w, mark) < 0 || lost;
    if (keep)
        log_warn("template %s: could not record %llu evictions; keeping "
                 "those blocks", g->t->name, (unsigned long long)*nblk);
    evict_finish(g, v, used, keep);
    if (keep)
        *nblk = 0;
    return keep ? 0 : freed;
}

/* Evict up to `bytes` from tier cls of g, least recently used first. */
static uint64_t evict_tier(struct gen *g, uint64_t bytes, int cls)
{
    struct heap h = {.k = bytes / g->bs + 1};
    uint64_t freed, nblk = 0;

    if (h.k > g->bm.nblocks)
        h.k = g->bm.nblocks ? g->bm.nblocks : 1;
    h.v = malloc(h.k * sizeof *h.v);
    if (h.v == NULL)
        return 0;
    pthread_mutex_lock(&g->lock);
    collect(g, &h, cls);
    pthread_mutex_unlock(&g->lock);
    qsort(h.v, h.n, sizeof *h.v, victim_cmp);
    freed = evict_victims(g, h.v, h.n, bytes, cls, &nblk);
    free(h.v);
    if (nblk) {
        __atomic_add_fetch(&g->t->st.evictions, nblk, __ATOMIC_RELAXED);
        __atomic_add_fetch(&g->t->st.evicted_bytes, freed, __ATOMIC_RELAXED);
        if (cls != PIN_NONE)
            __atomic_add_fetch(&g->t->st.evicted_class[cls], nblk,
                               __ATOMIC_RELAXED);
    }
    return freed;
}

/* Unpinned blocks first, then each tier up to max, weakest first, until
 * `need` bytes are free; up to `want` (need and the slack) from a tier
 * already being taken.  The slack never reaches into the next tier: it
 * would cost blocks of a stronger class for a fill that did not need
 * them. */
static uint64_t evict_tiers(struct gen *g, uint64_t need, uint64_t want,
                            int max)
{
    uint64_t freed = 0;
    for (int cls = PIN_NONE; cls <= max && freed < need; cls++)
        freed += evict_tier(g, want - freed, cls);
    return freed;
}

/* The strongest tier a fill of class cls may take from its own
 * template (may_take). */
static int self_tier_max(int cls)
{
    int max = tier_max(cls);
    return may_take(NULL, cls, NULL, max) ? max : max - 1;
}

/* A fill's strongest tier: from its own template (self) or from every
 * template.  A background fill's is strictly weaker than its class
 * (PIN_NONE - 1 for an unpinned one: free room only). */
static int fill_tier_max(int cls, int self)
{
    if (cls & EVICT_BACKGROUND) {
        cls &= ~EVICT_BACKGROUND;
        return cls >= PIN_BOOT ? PIN_HIGH : cls - 1;
    }
    return self ? self_tier_max(cls) : tier_max(cls);
}

uint64_t evict_from_gen(struct gen *g, uint64_t bytes, int cls)
{
    return evict_tiers(g, bytes, bytes, self_tier_max(cls));
}

/* Disk the generation's blocks take, a short last block a whole 4K page,
 * and its stored manifest (a 100 GiB template's is ~50 MB; it cannot be
 * evicted, but it takes room like the blocks) (gen.lock held). */
static uint64_t used_locked(struct gen *g)
{
    uint64_t u = g->bm.present_bytes +
                 __atomic_load_n(&g->mf_bytes, __ATOMIC_RELAXED);
    uint64_t nb = g->bm.nblocks;
    uint32_t tail = nb ? block_len(nb - 1, g->info.size, g->bs) : 0;
    const struct blk *t = nb ? &g->bm.v[nb - 1] : NULL;
    if (t && tail % 4096 && t->state != BLK_MISSING && !(t->flags & BLK_ZERO))
        u += 4096 - tail % 4096;
    return u;
}

/* The same, plus, with `reserved`, the room reserved by fills not yet
 * published: what counts against the quota. */
static uint64_t gen_used(struct gen *g, int reserved)
{
    pthread_mutex_lock(&g->lock);
    uint64_t u = used_locked(g) + (reserved ? g->reserved : 0);
    pthread_mutex_unlock(&g->lock);
    return u;
}

/* Reserve `need` bytes if they fit under the quota, in one step with the
 * check: fills running at once cannot all take the same room. */
static int reserve_in_quota(struct gen *g, uint64_t need, uint64_t quota)
{
    pthread_mutex_lock(&g->lock);
    int ok = quota == 0 || used_locked(g) + g->reserved + need <= quota;
    if (ok) {
        g->reserved += need;
        __atomic_add_fetch(&g->t->c->reserved, need, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&g->lock);
    return ok;
}

void evict_unreserve(struct gen *g, uint64_t need)
{
    pthread_mutex_lock(&g->lock);
    g->reserved -= need;
    __atomic_sub_fetch(&g->t->c->reserved, need, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&g->lock);
}

uint64_t evict_cache_used(struct cache *c)
{
    uint64_t total = 0;
    struct tmpl **v;
    size_t nt = cache_snapshot(c, &v);
    for (size_t i = 0; i < nt; i++) {
        struct gen *g = cache_cur_gen(v[i]);
        total += gen_used(g, 0) + cache_prev_bytes(v[i]);
        cache_gen_put(g);
    }
    return total + __atomic_load_n(&c->reserved, __ATOMIC_RELAXED);
}

/* Previous generations kept for delta fills (cache.c) are the first to
 * go when room is short: whole, before any block of a current one.
 * Whether one was dropped. */
static int drop_one_prev(struct cache *c)
{
    struct tmpl **v;
    size_t nt = cache_snapshot(c, &v);
    for (size_t i = 0; i < nt; i++)
        if (cache_drop_prev(v[i]) > 0)
            return 1;
    return 0;
}

/* Oldest evictable block's atime of a generation in tier cls, UINT32_MAX
 * if none. */
static uint32_t oldest_atime(struct gen *g, int cls)
{
    uint32_t best = UINT32_MAX;
    pthread_mutex_lock(&g->lock);
    for (uint64_t i = 0; i < g->bm.nblocks; i++)
        if (evictable(&g->bm.v[i], cls) && g->bm.v[i].atime < best)
            best = g->bm.v[i].atime;
    pthread_mutex_unlock(&g->lock);
    return best;
}

/* Free `bytes` across templates from tier cls: repeatedly from the
 * template holding its least recently used block, in chunks,
 * approximating a global LRU. */
static uint64_t evict_global_tier(struct cache *c, uint64_t bytes, int cls,
                                  const struct tmpl *skip)
{
    uint64_t freed = 0;
    while (freed < bytes) {
        struct gen *best = NULL;
        uint32_t best_at = UINT32_MAX;
        struct tmpl **v;
        size_t nt = cache_snapshot(c, &v);
        for (size_t i = 0; i < nt; i++) {
            if (v[i] == skip)
                continue;
            struct gen *g = cache_cur_gen(v[i]);
            uint32_t at = oldest_atime(g, cls);
            if (at < best_at) {
                if (best)
                    cache_gen_put(best);
                best_at = at;
                best = g;
            } else {
                cache_gen_put(g);
            }
        }
        if (best == NULL)
            break;
        uint64_t chunk = bytes - freed;
        if (chunk > 64u * best->bs)
            chunk = 64u * best->bs;
        uint64_t n = evict_tier(best, chunk, cls);
        cache_gen_put(best);
        if (n == 0)
            break;
        freed += n;
    }
    return freed;
}

/* Across templates: every template's unpinned blocks before any low
 * block, every low before any high, up to the fill's tier; need and want
 * as in evict_tiers. */
static uint64_t evict_global(struct cache *c, const struct tmpl *t,
                             uint64_t need, uint64_t want, int cls)
{
    uint64_t freed = 0;
    int max = fill_tier_max(cls, 0);
    cls &= ~EVICT_BACKGROUND; /* below max: may_take is true */
    for (int k = PIN_NONE; k <= max && freed < need; k++)
        freed += evict_global_tier(c, want - freed, k,
                                   may_take(t, cls, t, k) ? NULL : t);
    return freed;
}

static uint64_t fs_free_shortfall(struct cache *c, uint64_t need)
{
    const struct conf *cf = cache_conf(c);
    struct statvfs sv;
    if (cf->min_free == 0 || statvfs(cf->cache_dir, &sv) < 0)
        return 0;
    uint64_t total = (uint64_t)sv.f_blocks * sv.f_frsize;
    uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    uint64_t want = cf->min_free_pct ? total / 100 * cf->min_free : cf->min_free;
    return avail >= want + need ? 0 : want + need - avail;
}

/* Wait (200 ms at most) for evictions in flight in other threads to punch
 * their blocks: their bytes count as used until then.  Whether there were
 * any. */
static int wait_evictions(struct gen *g)
{
    struct timespec ts = ms_timespec(mono_ms() + 200);
    pthread_mutex_lock(&g->lock);
    int had = g->evicting > 0;
    while (g->evicting > 0)
        if (pthread_cond_timedwait(&g->filled, &g->lock, &ts) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&g->lock);
    return had;
}

/* Room under the quota, reserved (see evict_make_room). */
static int room_in_quota(struct gen *g, uint64_t need, int cls)
{
    uint64_t quota = __atomic_load_n(&g->t->quota, __ATOMIC_RELAXED);
    /* The previous generation counts against the quota too. */
    uint64_t prev = quota ? cache_prev_bytes(g->t) : 0;
    if (prev && gen_used(g, 1) + prev + need > quota)
        cache_drop_prev(g->t);
    /* Concurrent fills may take the room we free, and victims used again
     * since they were chosen are kept: try again while eviction helps. */
    for (int tries = 0; tries < ((cls & ~EVICT_BACKGROUND) != PIN_NONE ? 64 : 4);
         tries++) {
        if (reserve_in_quota(g, need, quota))
            return 0;
        uint64_t used = gen_used(g, 1);
        if (used + need <= quota)
            continue; /* freed meanwhile */
        uint64_t over = used + need - quota;
        if (evict_tiers(g, over, over + quota / EVICT_SLACK_DIV,
                        fill_tier_max(cls, 1)) == 0 &&
            !wait_evictions(g))
            break;
    }
    return reserve_in_quota(g, need, quota) ? 0 : -ENOSPC;
}

/* cache_max and min_free.  The caller's room is reserved already: it
 * counts in evict_cache_used, and every reservation not yet written must
 * find its disk space above min_free. */
static int room_in_cache(struct cache *c, const struct tmpl *t, int cls)
{
    uint64_t max = cache_conf(c)->cache_max;
    if (max != 0) {
        uint64_t used = evict_cache_used(c);
        while (used > max && drop_one_prev(c))
            used = evict_cache_used(c);
        if (used > max)
            evict_global(c, t, used - max,
                         used - max + max / EVICT_SLACK_DIV, cls);
        if (evict_cache_used(c) > max)
            return -ENOSPC;
    }
    uint64_t pending = __atomic_load_n(&c->reserved, __ATOMIC_RELAXED);
    uint64_t short_by = fs_free_shortfall(c, pending);
    while (short_by && drop_one_prev(c))
        short_by = fs_free_shortfall(c, pending);
    if (short_by) {
        evict_global(c, t, short_by, short_by, cls);
        if (fs_free_shortfall(c, pending))
            return -ENOSPC;
    }
    return 0;
}

/* Bytes of g's blocks a fill of class cls of template t may displace:
 * tiers up to max, its own class only from other templates. */
static uint64_t displaceable(struct gen *g, const struct tmpl *t, int cls,
                             int max)
{
    uint64_t bytes = 0;
    pthread_mutex_lock(&g->lock);
    for (uint64_t i = 0; i < g->bm.nblocks; i++)
        for (int k = PIN_NONE; k <= max; k++)
            if (evictable(&g->bm.v[i], k) && may_take(t, cls, g->t, k))
                bytes += block_len(i, g->info.size, g->bs);
    pthread_mutex_unlock(&g->lock);
    return bytes;
}

/* The same over every template's current generation. */
static uint64_t displaceable_all(struct cache *c, const struct tmpl *t,
                                 int cls, int max)
{
    uint64_t bytes = 0;
    struct tmpl **v;
    size_t nt = cache_snapshot(c, &v);
    for (size_t i = 0; i < nt; i++) {
        struct gen *g = cache_cur_gen(v[i]);
        bytes += displaceable(g, t, cls, max);
        cache_gen_put(g);
    }
    return bytes;
}

int evict_may_fit(struct gen *g, uint64_t need, int cls)
{
    struct cache *c = g->t->c;
    const struct conf *cf = cache_conf(c);
    int plain = cls & ~EVICT_BACKGROUND;
    uint64_t quota = __atomic_load_n(&g->t->quota, __ATOMIC_RELAXED);
    if (quota != 0) {
        uint64_t used = gen_used(g, 1);
        if (used + need > quota &&
            used + need - quota >
                displaceable(g, g->t, plain, fill_tier_max(cls, 1)))
            return 0;
    }
    uint64_t all = 0; /* computed once, for cache_max and min_free */
    int have_all = 0;
    if (cf->cache_max != 0) {
        uint64_t used = evict_cache_used(c);
        if (used + need > cf->cache_max) {
            all = displaceable_all(c, g->t, plain, fill_tier_max(cls, 0));
            have_all = 1;
            if (used + need - cf->cache_max > all)
                return 0;
        }
    }
    uint64_t pending = __atomic_load_n(&c->reserved, __ATOMIC_RELAXED);
    uint64_t short_by = fs_free_shortfall(c, pending + need);
    if (short_by) {
        if (!have_all)
            all = displaceable_all(c, g->t, plain, fill_tier_max(cls, 0));
        if (short_by > all)
            return 0;
    }
    return 1;
}

int evict_make_room(struct gen *g, uint64_t need, int cls)
{
    int r = room_in_quota(g, need, cls);
    if (r == 0 && (r = room_in_cache(g->t->c, g->t, cls)) < 0)
        evict_unreserve(g, need);
    return r;
}
