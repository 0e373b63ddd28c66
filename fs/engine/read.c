/* The read path: split a read into blocks; serve present blocks from the
 * data file; fill missing ones from the origin, single-flight, a run of
 * adjacent missing blocks in one origin read.
 *
 * A reader claims MISSING blocks by setting them FILLING (under gen.lock),
 * fetches them with no lock held, writes them to the data file, then marks
 * them PRESENT and wakes the waiters.  Readers that find a block FILLING wait
 * for it, bounded by the read's deadline.
 *
 * Each origin read says what it is for (struct origin_req, ic-sched.h):
 * the caller's class and flow, the template as its group.  A prefetch is
 * FETCH_READAHEAD and never waits for a transfer slot: refused (-EAGAIN),
 * its blocks go back to missing, quietly, and it counts in ra_skipped.
 * A pre-warm or readahead run a demand reader comes to wait for becomes
 * urgent (its ticket's flag, origin_req.urgent): that run only. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic-block.h"
#include "cache-priv.h"
#include "ic-checksum.h"
#include "ic-conf.h"
#include "ic-evict.h"
#include "ic-fillbuf.h"
#include "ic-index.h"
#include "ic-log.h"
#include "ic-manifest.h"
#include "ic-pin.h"
#include "ic-stage.h"
#include "ic-store.h"
#include "ic-util.h"
#include "ic-verify.h"
#include "ic-writer.h"

/* Largest single origin read: large enough to stream, small enough that a
 * slow origin still delivers within the deadline. */
#define FILL_MAX_BYTES (4u << 20)
/* Fill buffers are page-aligned, for O_DIRECT writes. */
#define FILL_ALIGN 4096u
/* How long a failed fill is remembered (BLK_FAILED, ic-blockmap.h). */
#define FAIL_MEMORY_MS 500

struct rq {
    struct gen *g;
    char *buf;
    uint64_t off, len;      /* the request, clamped to the file size */
    uint64_t first, last;   /* its block range */
    uint8_t *done;          /* per block of the range: bytes copied */
    uint64_t ndone;
    uint64_t deadline;
    struct origin_req oreq; /* what its origin reads are for */
    struct vmf *mf;         /* during a fill with a manifest: the one it
                               checks against (a reference) */
    struct fill_ticket *tk; /* during a pre-warm's or readahead's fill: the
                               run's ticket (NULL: a demand read's) */
};

struct run {
    uint64_t start, n;
};

/* Copy the part of block-aligned data at data_off that the request wants. */
static void rq_copy(struct rq *rq, const char *data, uint64_t data_off,
                    uint64_t data_len)
{
    if (rq->buf == NULL)
        return; /* a prefetch: nobody to copy to */
    uint64_t s = rq->off > data_off ? rq->off : data_off;
    uint64_t e1 = rq->off + rq->len, e2 = data_off + data_len;
    uint64_t e = e1 < e2 ? e1 : e2;
    if (s < e)
        memcpy(rq->buf + (s - rq->off), data + (s - data_off), e - s);
}

static void rq_mark_done(struct rq *rq, uint64_t blk)
{
    if (blk < rq->first || blk > rq->last)
        return; /* a block a widened fill published beside the request */
    if (!rq->done[blk - rq->first]) {
        rq->done[blk - rq->first] = 1;
        rq->ndone++;
    }
}

static void stat_add(uint64_t *counter, uint64_t v)
{
    __atomic_add_fetch(counter, v, __ATOMIC_RELAXED);
}

/* A reader's first read of a block readahead fetched (gen.lock held):
 * counted as readahead used, once. */
static void note_ra_used(struct gen *g, struct blk *b, uint64_t blk)
{
    if (!(b->flags & BLK_RA))
        return;
    b->flags &= (uint8_t)~BLK_RA;
    uint32_t len = block_len(blk, g->info.size, g->bs);
    stat_add(&g->ra_used, len);
    stat_add(&g->t->st.ra_used, len);
}

/* A reader used t now (tmpl_stats.last_used, which the index keeps: the
 * pre-warm's order after a restart).  Pre-warm and readahead reads are
 * not uses. */
static void note_used(struct tmpl *t)
{
    uint64_t now = (uint64_t)time(NULL);
    if (__atomic_load_n(&t->st.last_used, __ATOMIC_RELAXED) != now)
        __atomic_store_n(&t->st.last_used, now, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ claiming */

/* Claim runs of MISSING blocks not yet done (gen.lock held).  Returns the
 * number of runs stored in runs[] (at most max). */
static size_t claim_runs(struct rq *rq, struct run *runs, size_t max)
{
    struct gen *g = rq->g;
    uint64_t max_blocks = FILL_MAX_BYTES / g->bs ? FILL_MAX_BYTES / g->bs : 1;
    size_t nr = 0;

    if (g->stale)
        return 0;
    for (uint64_t b = rq->first; b <= rq->last && nr < max; b++) {
        if (rq->done[b - rq->first] || g->bm.v[b].state != BLK_MISSING)
            continue;
        uint64_t lim = rq->last - b + 1;
        uint64_t n = blockmap_missing_run(&g->bm, b, lim < max_blocks
                                                         ? lim : max_blocks);
        for (uint64_t i = 0; i < n; i++)
            g->bm.v[b + i].state = BLK_FILLING;
        runs[nr++] = (struct run){b, n};
        b += n - 1;
    }
    return nr;
}

static void release_runs(struct gen *g, const struct run *runs, size_t n)
{
    pthread_mutex_lock(&g->lock);
    for (size_t r = 0; r < n; r++)
        for (uint64_t i = 0; i < runs[r].n; i++)
            if (g->bm.v[runs[r].start + i].state == BLK_FILLING)
                blockmap_set_missing(&g->bm, runs[r].start + i,
                                     block_len(runs[r].start + i,
                                               g->info.size, g->bs));
    pthread_cond_broadcast(&g->filled);
    pthread_mutex_unlock(&g->lock);
}

/* ------------------------------------------------------------- tickets */

/* A pre-warm's or readahead's run in flight (gen.tickets, gen.lock): its
 * urgent flag is its origin request's origin_req.urgent. */
struct fill_ticket {
    uint64_t start, n;
    int urgent; /* raised by a demand reader waiting for the run (atomic) */
    struct fill_ticket *next;
};

/* Register the runs just claimed (gen.lock held, the same hold as the
 * claim: a reader that finds their blocks FILLING finds their tickets). */
static void tickets_add(struct gen *g, struct fill_ticket *tk,
                        const struct run *runs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tk[i] = (struct fill_ticket){runs[i].start, runs[i].n, 0, g->tickets};
        g->tickets = &tk[i];
    }
}

static void tickets_drop(struct gen *g, struct fill_ticket *tk, size_t n)
{
    if (n == 0)
        return;
    pthread_mutex_lock(&g->lock);
    for (struct fill_ticket **p = &g->tickets; *p != NULL;)
        if (*p >= tk && *p < tk + n)
            *p = (*p)->next;
        else
            p = &(*p)->next;
    pthread_mutex_unlock(&g->lock);
}

/* ------------------------------------------------------------- filling */

/* Log serve-through at most once per template per minute. */
static void note_uncached(struct gen *g, const char *why)
{
    struct tmpl *t = g->t;
    uint64_t now = mono_ms();
    uint64_t last = __atomic_load_n(&t->uncached_log_ms, __ATOMIC_RELAXED);
    __atomic_add_fetch(&t->st.uncached, 1, __ATOMIC_RELAXED);
    if (last != 0 && now - last < 60000)
        return;
    if (__atomic_compare_exchange_n(&t->uncached_log_ms, &last, now, 0,
                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        log_warn("template %s: %s; serving blocks from the origin without "
                 "caching them", t->name, why);
}

/* Bytes at the start of [off, off+len) that may go through the O_DIRECT
 * descriptor: the whole 4K pages, when buffer and offset are aligned (the
 * short end of a last block goes through the page cache); 0 for none. */
static uint64_t direct_part(const struct gen *g, const void *buf,
                            uint64_t off, uint64_t len)
{
    if (g->dfd < 0 || off % FILL_ALIGN || (uintptr_t)buf % FILL_ALIGN)
        return 0;
    return len & ~(uint64_t)(FILL_ALIGN - 1);
}

/* Fills go O_DIRECT where they can (direct): the kernel keeps the
 * reader's copy in the FUSE file's page cache, a second one in the data
 * file's would only cost memory and a copy.  A filesystem refusing
 * O_DIRECT (EINVAL) gets everything through the page cache. */
static ssize_t pwrite_span(struct gen *g, const char *data, uint64_t len,
                           uint64_t off, int direct)
{
    uint64_t head = direct ? direct_part(g, data, off, len) : 0;
    ssize_t w = head ? pwrite_full(g->dfd, data, head, off) : 0;
    if (w == -EINVAL)
        head = w = 0;
    if (w >= 0 && head < len)
        w = pwrite_full(g->fd, data + head, len - head, off + head);
    return w < 0 ? w : (ssize_t)len;
}

static ssize_t write_span(struct gen *g, const char *data, uint64_t len,
                          uint64_t off, int direct)
{
    ssize_t w = pwrite_span(g, data, len, off, direct);
    if (w == -ENOSPC || w == -EDQUOT) {
        /* The disk filled under us: free some of ours and retry once. */
        evict_from_gen(g, 16u * g->bs, PIN_NONE);
        w = pwrite_span(g, data, len, off, direct);
    }
    return w;
}

/* Zero blocks of a fetched run become holes (they cost no disk; the data
 * file reads zeros there): flags[i] = BLK_ZERO for those, else 0.
 * Returns the disk bytes the other blocks will cost (whole 4K pages). */
static uint64_t punch_zeros(struct gen *g, const struct run *run,
                            const char *data, int *flags)
{
    uint64_t cost = 0;
    for (uint64_t i = 0; i < run->n; i++) {
        uint64_t blk = run->start + i;
        uint32_t blen = block_len(blk, g->info.size, g->bs);
        flags[i] = 0;
        if (buf_is_zero(data + i * g->bs, blen) &&
            store_punch(g->fd, block_start(blk, g->bs), blen) == 0)
            flags[i] = BLK_ZERO;
        else
            cost += (blen + 4095) & ~4095u;
    }
    return cost;
}

/* A block's pin class, the fill's class for eviction (a racy peek at
 * the flags is enough: a pin changing meanwhile only changes how hard
 * the fill tries and whom it may displace). */
static int blk_class(struct gen *g, uint64_t blk)
{
    return BLK_CLASS(__atomic_load_n(&g->bm.v[blk].flags, __ATOMIC_RELAXED));
}

/* Write blocks i..j-1 of a fetched run in one write; when the disk is
 * full, block by block, so that what fits is kept.  Blocks not stored get
 * flags[k] = -1.  0, or the last error. */
static int store_span(struct gen *g, const struct run *run, const char *data,
                      uint64_t i, uint64_t j, int *flags, int direct)
{
    uint64_t off = block_start(run->start + i, g->bs);
    uint64_t end = block_start(run->start + j, g->bs);
    end = end < g->info.size ? end : g->info.size;
    ssize_t w = write_span(g, data + i * g->bs, end - off, off, direct);
    if (w >= 0)
        return 0;
    store_punch(g->fd, off, end - off); /* what it left allocated */
    if (j - i > 1 && (w == -ENOSPC || w == -EDQUOT)) {
        int err = 0;
        for (uint64_t k = i; k < j; k++) {
            int e = store_span(g, run, data, k, k + 1, flags, direct);
            err = e < 0 ? e : err;
        }
        return err;
    }
    for (uint64_t k = i; k < j; k++)
        flags[k] = -1;
    return (int)w;
}

/* Store the blocks [i, j) of a fetched run whose flags are 0 (data to
 * write), each span in one write, or give them up (flags -1) when there
 * is no room. */
static void store_segment(struct gen *g, const struct run *run,
                          const char *data, int *flags, uint64_t i0,
                          uint64_t j0, int room, int direct)
{
    for (uint64_t i = i0, j; i < j0; i = j) {
        for (j = i; j < j0 && flags[j] == 0; j++)
            ;
        if (j == i) {
            j++;
            continue;
        }
        if (room >= 0) {
            int e = store_span(g, run, data, i, j, flags, direct);
            if (e < 0)
                note_uncached(g, strerror(-e));
            continue;
        }
        note_uncached(g, "no room under quota, cache_max or min_free");
        for (uint64_t k = i; k < j; k++)
            flags[k] = -1;
    }
}

/* Store a fetched run in the data file, each span of data blocks in one
 * write.  flags[i] gets the BLK_ flags to record for block i, or -1 when
 * it could not be stored (its readers are still served from memory:
 * serve-through).  A block is never recorded present unless its write
 * succeeded.  Room is made per stretch of blocks of one pin class, the
 * strongest first: the unpinned blocks of a run that touches one boot
 * block displace only what an unpinned fill may.  Returns the room
 * reserved, to give back once its blocks are published. */
static uint64_t store_run(struct gen *g, const struct run *run,
                          const char *data, int *flags, int background,
                          int direct)
{
    uint64_t reserved = 0;
    punch_zeros(g, run, data, flags);
    int cls[FILL_MAX_BYTES / IC_BS_MIN];
    for (uint64_t i = 0; i < run->n; i++)
        cls[i] = blk_class(g, run->start + i);
    for (int k = PIN_BOOT; k >= PIN_NONE; k--)
        for (uint64_t i = 0, j; i < run->n; i = j) {
            for (j = i; j < run->n && cls[j] == cls[i]; j++)
                ;
            if (cls[i] != k)
                continue;
            uint64_t cost = 0;
            for (uint64_t m = i; m < j; m++)
                if (flags[m] == 0)
                    cost += (block_len(run->start + m, g->info.size, g->bs) +
                             4095) & ~4095u;
            int room = cost ? evict_make_room(g, cost,
                                              k | (background
                                                       ? EVICT_BACKGROUND
                                                       : 0))
                            : 0;
            store_segment(g, run, data, flags, i, j, room, direct);
            reserved += room == 0 ? cost : 0;
        }
    return reserved;
}

static void publish_block(struct gen *g, uint64_t blk, const char *data,
                          uint32_t len, int flags, const uint8_t *sha)
{
    uint64_t csum = checksum_block(data, len);
    struct cache *c = g->t->c;
    uint32_t atime = 0;

    pthread_mutex_lock(&g->lock);
    if (flags < 0) {
        blockmap_set_missing(&g->bm, blk, len);
    } else {
        blockmap_set_present(&g->bm, blk, csum, (uint8_t)(flags | BLK_VERIFIED),
                             len);
        atime = g->bm.v[blk].atime = cache_tick(c);
    }
    pthread_mutex_unlock(&g->lock);
    if (flags < 0)
        return;
    struct index_rec rec = {
        .op = INDEX_ADD, .tid = g->t->tid, .gen = g->number, .blk = blk,
        .csum = csum, .atime = atime,
        .flags = (flags & BLK_ZERO) ? INDEX_BLK_ZERO : 0,
    };
    /* A hash the manifest vouched for: delta fills find the block by it
     * (never a zero block's: those are not copied). */
    if (sha != NULL && !(flags & BLK_ZERO)) {
        memcpy(rec.sha, sha, INDEX_SHA_LEN);
        rec.has_sha = 1;
    }
    /* Not queued (logged by the writer): the index does not claim the
     * block, and the next start frees it as unclaimed. */
    (void)writer_add(c->w, &rec, g->fd);
}

/* Returns -EIO, or -ESTALE when the origin answered as if the template
 * had changed: that is a question for the origin (see heal()), not yet a
 * verdict on the generation. */
static int fill_failed(struct rq *rq, const struct run *run, int err)
{
    struct gen *g = rq->g;
    stat_add(&g->t->st.fill_errors, 1);
    char what[96];
    pthread_mutex_lock(&g->lock);
    int first = g->heal_ms == 0;
    if (err != -ESTALE && err != -ENOENT) {
        /* Remembered per block, so that each of many concurrent failures
         * is: the kernel retries a failed read (a readahead's pages one by
         * one), and a retry that asked the origin again would wait a
         * second origin_timeout. */
        uint64_t until = mono_ms() + FAIL_MEMORY_MS;
        for (uint64_t i = 0; i < run->n; i++)
            if (g->bm.v[run->start + i].state == BLK_FILLING)
                blockmap_set_failed(&g->bm, run->start + i,
                                    block_len(run->start + i, g->info.size,
                                              g->bs),
                                    until);
        pthread_cond_broadcast(&g->filled);
    }
    pthread_mutex_unlock(&g->lock);
    snprintf(what, sizeof what, "origin read failed: %s", strerror(-err));
    (void)writer_event(g->t->c->w, g->t->tid, "error", run->n,
                       run->n * (uint64_t)g->bs, what);
    /* A 404 or 410 to one range is asked about like a change (heal()):
     * one bad node must not hide the template. */
    if (err == -ENOENT && conf_origin_is_http(g->t->location))
        err = -ESTALE;
    if (err == -ESTALE) {
        if (first) /* one line per series, not per reader */
            log_warn("template %s: the origin answered a read of generation "
                     "%llu as if the template had changed; asking it",
                     g->t->name, (unsigned long long)g->number);
        return -ESTALE;
    } else if (err != -EHOSTDOWN) { /* the host's down line said it */
        log_warn("template %s: origin read of %llu bytes at %llu failed: %s",
                 g->t->name,
                 (unsigned long long)run->n * g->bs,
                 (unsigned long long)block_start(run->start, g->bs),
                 strerror(-err));
    }
    return -EIO;
}

/* Store and publish the blocks of a fetched run, with the manifest's
 * hash of each when it has them. */
static void publish_run(struct rq *rq, const struct run *run, const char *data)
{
    struct gen *g = rq->g;
    int flags[FILL_MAX_BYTES / IC_BS_MIN];
    /* A reader waits on a demand fill until it is stored: its write goes
     * through the page cache.  O_DIRECT, it waited for the disk, behind a
     * pre-warm's 1 MiB writes (first touch p50 during a pre-warm 2.7 ms,
     * 0.64 ms through the page cache, 0.33-0.59 ms idle), and the other
     * readers of the block read it back from the disk. */
    uint64_t reserved = store_run(g, run, data, flags, rq->oreq.background,
                                  rq->oreq.cls != FETCH_DEMAND);
    int ra = rq->oreq.cls == FETCH_READAHEAD ? BLK_RA : 0;
    for (uint64_t i = 0; i < run->n; i++) {
        uint64_t blk = run->start + i;
        uint32_t blen = block_len(blk, g->info.size, g->bs);
        const char *p = data + i * g->bs;
        uint8_t sha[MANIFEST_HASH_LEN];
        int have = verify_block_sha(g, rq->mf, blk, sha);
        publish_block(g, blk, p, blen, flags[i] < 0 ? flags[i]
                                                    : flags[i] | ra,
                      have ? sha : NULL);
        rq_copy(rq, p, block_start(blk, g->bs), blen);
        rq_mark_done(rq, blk);
    }
    if (reserved) /* now counted as present (or not stored) */
        evict_unreserve(g, reserved);
}

/* The origin answered a fill as it should: end a heal backoff. */
static void fill_worked(struct gen *g)
{
    pthread_mutex_lock(&g->lock);
    if (g->heal_ms != 0) /* the origin answers as it should again */
        log_info("template %s: the origin answers reads of generation %llu "
                 "again", g->t->name, (unsigned long long)g->number);
    g->heal_ms = 0;
    g->heal_until_ms = 0;
    pthread_cond_broadcast(&g->filled);
    pthread_mutex_unlock(&g->lock);
}

static int fill_plain(struct rq *rq, const struct run *run)
{
    struct gen *g = rq->g;
    struct origin_req oreq = rq->oreq;
    uint64_t off = block_start(run->start, g->bs);
    uint64_t end = block_start(run->start + run->n, g->bs);
    if (end > g->info.size)
        end = g->info.size;
    uint64_t len = end - off;
    char *data = fillbuf_get(len);
    if (data == NULL)
        return -ENOMEM;
    int r = origin_read(g->t->origin, data, off, len, &g->info, &oreq,
                        rq->deadline);
    if (r == -EAGAIN && rq->oreq.cls != FETCH_DEMAND) {
        /* No slot for readahead now, or none for a pre-warm before its
         * deadline: not a failure of the origin (no failed-fill memory,
         * not in fill_errors); the caller gives the blocks back. */
        fillbuf_put(data);
        if (rq->oreq.cls == FETCH_READAHEAD)
            stat_add(&g->t->st.ra_skipped, 1);
        else
            log_debug("template %s: pre-warm of %llu bytes at %llu found "
                      "no origin slot before its deadline; left missing",
                      g->t->name, (unsigned long long)len,
                      (unsigned long long)off);
        return r;
    }
    stat_add(&g->t->st.origin_reads, 1);
    if (r < 0) {
        fillbuf_put(data);
        return fill_failed(rq, run, r);
    }
    stat_add(&g->t->st.origin_bytes, len);
    stat_add(&g->t->st.misses, run->n);
    if (rq->oreq.cls == FETCH_READAHEAD) {
        stat_add(&g->ra_fetched, len);
        stat_add(&g->t->st.ra_fetched, len);
    }
    /* Written with O_DIRECT, the bytes will be in no page cache: a
     * readahead fill's are staged, before any block is published, for the
     * reader it runs ahead of.  (A reader's own fill has served it.) */
    struct stage *st = g->t->c->stage;
    void *ref = g->dfd >= 0 && rq->buf == NULL
                    ? stage_put(st, g->uid, off, data, len)
                    : NULL;
    publish_run(rq, run, data);
    if (ref)
        stage_unref(st, ref);
    else
        fillbuf_put(data);
    fill_worked(g);
    return 0;
}

/* ------------------------------------------------- fills with a manifest */

/* Fetch [foff, foff+flen) into data from a source not in avoid; the
 * source's index in *src.  0 or -errno (counted as fill_plain does). */
static int fetch_from(struct rq *rq, char *data, uint64_t foff,
                      uint64_t flen, uint32_t avoid, int *src)
{
    struct gen *g = rq->g;
    struct origin_req oreq = rq->oreq;
    oreq.avoid = avoid;
    oreq.source = src;
    *src = 0;
    int r = origin_read(g->t->origin, data, foff, flen, &g->info, &oreq,
                        rq->deadline);
    if (r == -EAGAIN && rq->oreq.cls != FETCH_DEMAND) {
        /* no slot: a skip, not an origin failure (as in fill_plain) */
        if (rq->oreq.cls == FETCH_READAHEAD)
            stat_add(&g->t->st.ra_skipped, 1);
        return r;
    }
    stat_add(&g->t->st.origin_reads, 1);
    if (r == 0)
        stat_add(&g->t->st.origin_bytes, flen);
    if (r == 0 && rq->oreq.cls == FETCH_READAHEAD) {
        stat_add(&g->ra_fetched, flen);
        stat_add(&g->t->st.ra_fetched, flen);
    }
    return r;
}

/* Blocks of a fetched span that failed their check: ask another source
 * once for each run of them (the next mirror, or the origin), copying
 * what matches now into data.  Returns the blocks still bad. */
static uint64_t refetch_bad(struct rq *rq, const struct run *run, char *data,
                            uint64_t foff, uint8_t *bad, int src,
                            int *skipped)
{
    struct gen *g = rq->g;
    uint64_t left = 0;
    *skipped = 0;
    for (uint64_t i = 0, j; i < run->n; i = j) {
        for (; i < run->n && !bad[i]; i++)
            ;
        for (j = i; j < run->n && bad[j]; j++)
            ;
        if (i == j)
            break;
        struct run sub = {run->start + i, j - i};
        uint64_t off = block_start(sub.start, g->bs);
        uint64_t end = block_start(sub.start + sub.n, g->bs);
        end = end < g->info.size ? end : g->info.size;
        uint64_t soff = off, slen = end - off;
        verify_span(g, rq->mf, &soff, &slen);
        char *again = fillbuf_get(slen);
        uint8_t sbad[FILL_MAX_BYTES / IC_BS_MIN];
        int src2 = src;
        int r = again ? fetch_from(rq, again, soff, slen, 1u << src, &src2)
                      : -ENOMEM;
        if (r == -EAGAIN && rq->oreq.cls != FETCH_DEMAND)
            *skipped = 1; /* no slot: not a verdict on these blocks */
        uint64_t nb = r == 0 ? verify_check(g, rq->mf, again, soff, slen,
                                            sub.start, sub.n, sbad)
                             : sub.n;
        for (uint64_t k = 0; k < sub.n; k++) {
            if (r == 0 && !sbad[k]) {
                uint64_t b = sub.start + k;
                memcpy(data + (block_start(b, g->bs) - foff),
                       again + (block_start(b, g->bs) - soff),
                       block_len(b, g->info.size, g->bs));
                bad[i + k] = 0;
            } else if (r == 0) {
                verify_note_failure(g, src2, sub.start + k, 1);
            }
        }
        if (r == 0)
            stat_add(&g->t->st.verified, sub.n - nb);
        left += nb;
        if (again)
            fillbuf_put(again);
    }
    return left;
}

/* A fetch widened to whole manifest blocks (larger than ours) brings
 * checked bytes of blocks beside the run: claim those still missing
 * before the fetch (a reader of one waits for it instead of fetching the
 * same manifest block again), publish them after it (else the next read
 * of each fetches the whole manifest block again), or give them back.
 * mine[i] for block foff/bs + i; NULL when there is nothing to claim. */
static uint8_t *claim_widened(struct rq *rq, uint64_t foff, uint64_t flen,
                              const struct run *run)
{
    struct gen *g = rq->g;
    uint64_t first = foff / g->bs, last = (foff + flen - 1) / g->bs;
    if (first == run->start && last + 1 == run->start + run->n)
        return NULL;
    uint8_t *mine = calloc(last + 1 - first, 1);
    if (mine == NULL)
        return NULL; /* only a saving lost */
    pthread_mutex_lock(&g->lock);
    /* The run's ticket covers the neighbours too, in the same hold as
     * their claim: a demand reader waiting for one of them makes this
     * fill urgent, as for the run's own blocks (else a pre-warm's fetch
     * queued behind demand reads held that reader until its deadline).
     * Widened, never narrowed: the run's other parts may still be in
     * flight (fill_with_manifest); a block between them claimed by
     * another fill can only make this one urgent for nothing. */
    if (rq->tk != NULL) {
        uint64_t a = rq->tk->start < first ? rq->tk->start : first;
        uint64_t e = rq->tk->start + rq->tk->n > last + 1
                         ? rq->tk->start + rq->tk->n : last + 1;
        rq->tk->start = a;
        rq->tk->n = e - a;
    }
    for (uint64_t b = first; !g->stale && b <= last; b++) {
        if (b >= run->start && b < run->start + run->n)
            continue; /* the run's own */
        if (g->bm.v[b].state == BLK_MISSING) {
            g->bm.v[b].state = BLK_FILLING;
            mine[b - first] = 1;
        }
    }
    pthread_mutex_unlock(&g->lock);
    return mine;
}

static void end_widened(struct rq *rq, uint8_t *mine, const char *data,
                        uint64_t foff, uint64_t flen, int publish)
{
    struct gen *g = rq->g;
    if (mine == NULL)
        return;
    uint64_t first = foff / g->bs, n = (foff + flen - 1) / g->bs + 1 - first;
    /* In runs publish_run can take (FILL_MAX_BYTES at most, as fills). */
    uint64_t max = FILL_MAX_BYTES / g->bs ? FILL_MAX_BYTES / g->bs : 1;
    for (uint64_t i = 0, j; i < n; i = j) {
        for (j = i; j < n && j - i < max && mine[j] == mine[i]; j++)
            ;
        struct run part = {first + i, j - i};
        if (mine[i] && publish)
            publish_run(rq, &part, data + (block_start(part.start, g->bs) -
                                           foff));
        else if (mine[i])
            release_runs(g, &part, 1);
    }
    free(mine);
}

/* Fetch a run of blocks the manifest has hashes for, check every block
 * before anything is stored or served, and publish the good ones.  The
 * blocks no source gives right have the manifest fetched again (once per
 * fill, may_refresh) and, if a newer one came, are fetched and checked
 * against it: a stale manifest heals without a restart. */
static int fill_checked(struct rq *rq, const struct run *run, int may_refresh)
{
    struct gen *g = rq->g;
    uint64_t off = block_start(run->start, g->bs);
    uint64_t end = block_start(run->start + run->n, g->bs);
    end = end < g->info.size ? end : g->info.size;
    uint64_t foff = off, flen = end - off;
    verify_span(g, rq->mf, &foff, &flen);
    char *data = fillbuf_get(flen);
    if (data == NULL)
        return -ENOMEM;
    uint8_t *mine = claim_widened(rq, foff, flen, run);
    int src;
    int r = fetch_from(rq, data, foff, flen, 0, &src);
    if (r < 0)
        end_widened(rq, mine, data, foff, flen, 0);
    if (r == -EAGAIN && rq->oreq.cls != FETCH_DEMAND) {
        fillbuf_put(data);
        return r;
    }
    if (r < 0) {
        fillbuf_put(data);
        return fill_failed(rq, run, r);
    }
    stat_add(&g->t->st.misses, run->n);
    uint8_t bad[FILL_MAX_BYTES / IC_BS_MIN];
    uint64_t nbad = verify_check(g, rq->mf, data, foff, flen, run->start,
                                 run->n, bad);
    stat_add(&g->t->st.verified, run->n - nbad);
    for (uint64_t i = 0; i < run->n; i++)
        if (bad[i])
            verify_note_failure(g, src, run->start + i, 0);
    /* The widened blocks beside the run were checked by the first fetch
     * only: a refetch repairs the run's own blocks, not them, so they are
     * published (and the span staged) only when the first fetch was
     * clean; else they are given back, to be fetched again. */
    int first_clean = nbad == 0, skipped = 0;
    if (nbad)
        nbad = refetch_bad(rq, run, data, foff, bad, src, &skipped);
    /* Only checked bytes are staged, stored or served. */
    const char *base = data + (off - foff);
    struct stage *st = g->t->c->stage;
    void *ref = first_clean && foff == off && g->dfd >= 0 && rq->buf == NULL
                    ? stage_put(st, g->uid, off, data, flen)
                    : NULL;
    for (uint64_t i = 0, j; i < run->n; i = j) {
        for (j = i; j < run->n && bad[j] == bad[i]; j++)
            ;
        struct run part = {run->start + i, j - i};
        if (!bad[i])
            publish_run(rq, &part, base + i * g->bs);
    }
    end_widened(rq, mine, data, foff, flen, first_clean);
    if (ref)
        stage_unref(st, ref);
    else
        fillbuf_put(data);
    if (nbad == 0) {
        fill_worked(g);
        return 0;
    }
    if (skipped) {
        /* A pre-warm or readahead found no slot to ask another source:
         * its bad blocks go back to missing, with no failed-fill memory
         * (a reader asks again at once), as a first fetch's -EAGAIN. */
        for (uint64_t i = 0, j; i < run->n; i = j) {
            for (j = i; j < run->n && bad[j] == bad[i]; j++)
                ;
            struct run part = {run->start + i, j - i};
            if (bad[i])
                release_runs(g, &part, 1);
        }
        return -EAGAIN;
    }
    /* Published with the hashes they were checked against: now a newer
     * manifest may replace rq->mf for the rest. */
    struct vmf *fresh = NULL;
    int rr = may_refresh ? verify_refresh(g, rq->mf, rq->deadline, &fresh)
                         : -EAGAIN;
    if (rr == 0 || rr == -ENOENT) { /* -ENOENT: withdrawn, rq->mf NULL */
        verify_put(g, rq->mf);
        rq->mf = fresh;
    }
    /* The blocks no source could give right: their readers get EIO. */
    int err = 0;
    for (uint64_t i = 0, j; i < run->n; i = j) {
        for (j = i; j < run->n && bad[j] == bad[i]; j++)
            ;
        struct run part = {run->start + i, j - i};
        if (!bad[i])
            continue;
        int e = rr == 0 ? fill_checked(rq, &part, 0)
                : rr == -ENOENT ? fill_plain(rq, &part)
                                : fill_failed(rq, &part, -EIO);
        err = e < 0 && err == 0 ? e : err;
    }
    return err;
}

/* A block the manifest knows: all zeros (never fetched: a hole), or one
 * with a twin present somewhere in the cache (copied).  1 when done. */
static int fill_known(struct rq *rq, uint64_t blk, char *tmp)
{
    struct gen *g = rq->g;
    uint32_t len = block_len(blk, g->info.size, g->bs);
    uint64_t reserved = 0;
    if (verify_zero(g, rq->mf, blk)) {
        memset(tmp, 0, len);
        int flags = store_punch(g->fd, block_start(blk, g->bs), len) == 0
                        ? BLK_ZERO : 0;
        if (!flags) /* no holes here: store the zeros */
            flags = write_span(g, tmp, len, block_start(blk, g->bs), 1) ==
                            (ssize_t)len ? 0 : -1;
        publish_block(g, blk, tmp, len, flags, NULL);
        stat_add(&g->t->st.zero_skipped, 1);
    } else if (verify_copy_local(g, rq->mf, blk, tmp, &reserved)) {
        uint8_t sha[MANIFEST_HASH_LEN];
        verify_block_sha(g, rq->mf, blk, sha);
        publish_block(g, blk, tmp, len, 0, sha);
        evict_unreserve(g, reserved);
    } else {
        return 0;
    }
    rq_copy(rq, tmp, block_start(blk, g->bs), len);
    rq_mark_done(rq, blk);
    return 1;
}

static int fill_with_manifest(struct rq *rq, const struct run *run)
{
    struct gen *g = rq->g;
    uint8_t need[FILL_MAX_BYTES / IC_BS_MIN];
    char *tmp = fillbuf_get(g->bs);
    if (tmp == NULL)
        return -ENOMEM;
    int known = 0;
    for (uint64_t i = 0; i < run->n; i++) {
        need[i] = !fill_known(rq, run->start + i, tmp);
        known += !need[i];
    }
    fillbuf_put(tmp);
    if (known) {
        /* Readers waiting for these blocks (a readahead claimed them, or
         * another reader) are woken by this, as fill_worked() wakes them
         * for fetched ones: without it they slept until another fill's
         * wake-up, or their deadline. */
        pthread_mutex_lock(&g->lock);
        pthread_cond_broadcast(&g->filled);
        pthread_mutex_unlock(&g->lock);
    }
    int err = 0;
    for (uint64_t i = 0, j; i < run->n; i = j) {
        for (j = i; j < run->n && need[j] == need[i]; j++)
            ;
        struct run part = {run->start + i, j - i};
        /* A readahead does not wait on a manifest refetch (as it does not
         * settle one, gen_manifest): its reader will. */
        /* rq->mf is NULL once a refresh found the manifest withdrawn. */
        int r = !need[i] ? 0
                : rq->mf == NULL ? fill_plain(rq, &part)
                                 : fill_checked(rq, &part,
                                                rq->oreq.cls != FETCH_READAHEAD);
        if (r < 0 && err == 0)
            err = r;
        if (r < 0) /* give back what this run has not filled */
            release_runs(g, &part, 1);
    }
    return err;
}

/* g's manifest, settled first, a reference in rq->mf (NULL: none).
 * -EIO when it could not be settled by the read's deadline: never fill
 * unchecked then.  A readahead does not settle it (-EAGAIN: skipped):
 * the fetch may take up to origin_timeout, and readahead threads serve
 * every template; the reader it runs ahead of will. */
static int gen_manifest(struct rq *rq)
{
    struct gen *g = rq->g;
    if (__atomic_load_n(&g->mf_state, __ATOMIC_ACQUIRE) != MF_SETTLED) {
        /* manifest = none settles at once, with no fetch */
        if (rq->oreq.cls == FETCH_READAHEAD &&
            g->t->manifest_mode != CONF_MANIFEST_NONE) {
            stat_add(&g->t->st.ra_skipped, 1);
            return -EAGAIN;
        }
        verify_settle(g, rq->deadline);
    }
    if (__atomic_load_n(&g->mf_state, __ATOMIC_ACQUIRE) != MF_SETTLED)
        return -EIO;
    rq->mf = verify_get(g);
    return 0;
}

static int fill_run(struct rq *rq, const struct run *run)
{
    int r = gen_manifest(rq);
    if (r == -EAGAIN)
        return r; /* the caller gives the blocks back */
    if (r < 0)
        return fill_failed(rq, run, r);
    if (rq->mf == NULL)
        return fill_plain(rq, run);
    r = fill_with_manifest(rq, run);
    verify_put(rq->g, rq->mf);
    rq->mf = NULL;
    return r;
}

/* Fill the claimed runs; tk: their tickets (a pre-warm or readahead), or
 * NULL (a demand read, urgent anyway). */
static int fill_claimed(struct rq *rq, struct run *runs,
                        struct fill_ticket *tk, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        /* rq is this caller's own: its runs are filled one after another */
        rq->oreq.urgent = tk ? &tk[i].urgent : NULL;
        rq->tk = tk ? &tk[i] : NULL;
        int r = fill_run(rq, &runs[i]);
        rq->oreq.urgent = NULL; /* tk lives only as long as this fill */
        rq->tk = NULL;
        if (r < 0) {
            /* Nothing of run i was published: give back it and the rest. */
            release_runs(rq->g, runs + i, n - i);
            return r;
        }
    }
    return 0;
}

/* ------------------------------------------------------------- healing */

/* Backoff of fills after an answer "changed" that the origin then denied
 * (documented in imgcache.conf(5), HTTP ORIGINS).  While it runs, readers
 * of missing blocks wait for it; when it ends, one reader (the probe) asks
 * again and the others wait for its answer.  It starts at HEAL_FIRST_MS
 * and doubles while the answers stay wrong; once at HEAL_MAX_MS the
 * disagreement is taken as lasting: readers fail at once instead of
 * waiting (no FUSE thread is held by it), and only the probe, one per
 * HEAL_MAX_MS, reaches the origin. */
#define HEAL_FIRST_MS 250
#define HEAL_MAX_MS 4000

/* After a fill got -ESTALE: ask the origin.  -EIO when g is superseded or
 * the template is gone (g can never fill again); else 0, with g's fills
 * held off (a stale node behind a balancer, a proxy that had not caught
 * up: the next answers may well be right).  The backoff grows once per
 * failed probe, not once per reader that failed with it. */
static int heal(struct gen *g, uint64_t deadline, int probe)
{
    int r = cache_gen_recheck(g, deadline);
    if (r == -ESTALE || r == -ENOENT)
        return -EIO;
    pthread_mutex_lock(&g->lock);
    uint64_t now = mono_ms();
    if (probe || g->heal_until_ms <= now) {
        g->heal_ms = g->heal_ms == 0 ? HEAL_FIRST_MS
                     : g->heal_ms * 2 > HEAL_MAX_MS ? HEAL_MAX_MS
                                                    : g->heal_ms * 2;
        g->heal_until_ms = now + g->heal_ms;
        if (g->heal_ms == HEAL_FIRST_MS || g->heal_ms == HEAL_MAX_MS)
            log_info("template %s: the origin still has generation %llu "
                     "but answered otherwise; reads of missing blocks %s",
                     g->t->name, (unsigned long long)g->number,
                     g->heal_ms == HEAL_MAX_MS
                         ? "fail until one every 4 s succeeds"
                         : "back off");
    }
    pthread_mutex_unlock(&g->lock);
    return 0;
}

/* Wait out g's backoff (or its probe's answer), or until the deadline: 0,
 * or -EIO at the deadline or if g was superseded meanwhile. */
static int wait_heal(struct gen *g, uint64_t deadline)
{
    pthread_mutex_lock(&g->lock);
    struct timespec ts = ms_timespec(deadline);
    while (!g->stale && mono_ms() < deadline && g->heal_until_ms > mono_ms()) {
        uint64_t until = g->heal_until_ms < deadline ? g->heal_until_ms
                                                     : deadline;
        ts = ms_timespec(until);
        if (pthread_cond_timedwait(&g->filled, &g->lock, &ts) == ETIMEDOUT &&
            mono_ms() >= until)
            break;
    }
    int r = g->stale || mono_ms() >= deadline ? -EIO : 0;
    pthread_mutex_unlock(&g->lock);
    return r;
}

/* ------------------------------------------------------------- copying */

/* Discard a present block whose bytes do not match its checksum. */
static void discard_block(struct gen *g, uint64_t blk, const char *why)
{
    log_warn("template %s: cached block %llu of generation %llu %s; "
             "discarding and refetching", g->t->name,
             (unsigned long long)blk, (unsigned long long)g->number, why);
    blockmap_set_missing(&g->bm, blk, block_len(blk, g->info.size, g->bs));
    struct index_rec rec = {.op = INDEX_DEL, .tid = g->t->tid,
                            .gen = g->number, .blk = blk};
    /* A DEL not queued leaves the index claiming bytes that fail their
     * checksum: the first read after the next start discards them. */
    (void)writer_add(g->t->c->w, &rec, -1);
}

/* Read present block blk into tmp (whole block), verifying its checksum
 * when it has not been verified since start.  0, -EIO when it cannot be
 * read, -EBADMSG when its bytes do not match the checksum. */
static int read_block(struct gen *g, uint64_t blk, char *tmp,
                      struct blk snap, int *verified_now)
{
    uint32_t len = block_len(blk, g->info.size, g->bs);
    *verified_now = 0;
    if (snap.flags & BLK_ZERO)
        memset(tmp, 0, len);
    else if (cache_pread_present(g, tmp, block_start(blk, g->bs), len) < 0)
        return -EIO;
    if (snap.flags & BLK_VERIFIED)
        return 0;
    if (checksum_block(tmp, len) != snap.csum)
        return -EBADMSG;
    *verified_now = 1;
    return 0;
}

/* Serve one present block; returns 1 if served, 0 if it must be refilled
 * or re-examined. */
static int copy_block(struct rq *rq, uint64_t blk, char *tmp)
{
    struct gen *g = rq->g;
    pthread_mutex_lock(&g->lock);
    struct blk snap = g->bm.v[blk];
    pthread_mutex_unlock(&g->lock);
    if (snap.state != BLK_PRESENT)
        return 0;

    int verified_now;
    int r = read_block(g, blk, tmp, snap, &verified_now);

    pthread_mutex_lock(&g->lock);
    struct blk *b = &g->bm.v[blk];
    int same = b->state == BLK_PRESENT && b->seq == snap.seq;
    if (same && r < 0)
        discard_block(g, blk, "failed its checksum or could not be read");
    else if (same) {
        if (verified_now)
            b->flags |= BLK_VERIFIED;
        b->atime = cache_tick(g->t->c);
        if (rq->oreq.cls == FETCH_DEMAND)
            note_ra_used(g, b, blk);
    }
    pthread_mutex_unlock(&g->lock);
    if (!same || r < 0)
        return 0;
    rq_copy(rq, tmp, block_start(blk, g->bs),
            block_len(blk, g->info.size, g->bs));
    rq_mark_done(rq, blk);
    stat_add(&g->t->st.hits, 1);
    return 1;
}

static int copy_present(struct rq *rq)
{
    char *tmp = fillbuf_get(rq->g->bs); /* aligned, for data_direct_io */
    if (tmp == NULL)
        return -ENOMEM;
    for (uint64_t b = rq->first; b <= rq->last; b++)
        if (!rq->done[b - rq->first])
            copy_block(rq, b, tmp);
    fillbuf_put(tmp);
    return 0;
}

/* ------------------------------------------------------------- waiting */

static int any_filling(struct rq *rq)
{
    for (uint64_t b = rq->first; b <= rq->last; b++)
        if (!rq->done[b - rq->first] && rq->g->bm.v[b].state == BLK_FILLING)
            return 1;
    return 0;
}

/* A demand reader waits for the blocks it still needs that are FILLING:
 * make the pre-warm or readahead fills that claimed them urgent (gen.lock
 * held).  Only those: a generation's other pre-warm fetches stay behind
 * the demand reads of every template.  The flag stays up until the fill
 * ends (a reader that gave up meanwhile leaves it raised: bounded by that
 * one fill). */
static void raise_urgent(struct rq *rq)
{
    for (struct fill_ticket *t = rq->g->tickets; t != NULL; t = t->next) {
        uint64_t a = t->start > rq->first ? t->start : rq->first;
        uint64_t e = t->start + t->n - 1;
        uint64_t b = e < rq->last ? e : rq->last;
        for (uint64_t k = a; k <= b && a <= b; k++)
            if (!rq->done[k - rq->first] &&
                rq->g->bm.v[k].state == BLK_FILLING) {
                __atomic_store_n(&t->urgent, 1, __ATOMIC_RELAXED);
                break;
            }
    }
}

/* Wait until no block we still need is being filled by someone else.
 * Each wake-up looks for new tickets: a fill of several runs registers
 * them all at its claim, but a reader may start waiting at any time. */
static int wait_fills(struct rq *rq)
{
    struct gen *g = rq->g;
    struct timespec ts = ms_timespec(rq->deadline);
    int demand = rq->oreq.cls == FETCH_DEMAND;
    int r = 0;
    pthread_mutex_lock(&g->lock);
    while (r == 0 && any_filling(rq)) {
        if (demand)
            raise_urgent(rq);
        if (pthread_cond_timedwait(&g->filled, &g->lock, &ts) == ETIMEDOUT)
            r = any_filling(rq) ? -EIO : 0;
    }
    pthread_mutex_unlock(&g->lock);
    return r;
}

/* ---------------------------------------------------------------- read */

/* Whether a block the request still needs failed to fill just now, and is
 * still missing (gen.lock held). */
static int recently_failed(const struct rq *rq)
{
    const struct gen *g = rq->g;
    uint64_t now = mono_ms();
    for (uint64_t b = rq->first; b <= rq->last; b++)
        if (!rq->done[b - rq->first] && blockmap_failed(&g->bm, b, now))
            return 1;
    return 0;
}

static int read_round(struct rq *rq)
{
    struct run runs[16];
    struct gen *g = rq->g;

    pthread_mutex_lock(&g->lock);
    if (recently_failed(rq)) {
        pthread_mutex_unlock(&g->lock);
        return -EIO;
    }
    uint64_t now = mono_ms();
    int healing = g->heal_until_ms > now;
    if (now >= rq->deadline || (healing && (g->heal_ms >= HEAL_MAX_MS ||
                                            g->heal_until_ms >=
                                                rq->deadline))) {
        /* Out of time (a fill waited for gave its blocks back at the
         * deadline: a fetch now would fail and mark them failed for the
         * next readers), a lasting disagreement, or a wait longer than
         * this read has: fail now rather than hold a thread for nothing. */
        pthread_mutex_unlock(&g->lock);
        return copy_present(rq) < 0 || rq->ndone < rq->last - rq->first + 1
                   ? -EIO : 0;
    }
    int probe = !healing && g->heal_ms != 0;
    size_t nr = healing ? 0 : claim_runs(rq, runs, 16);
    if (probe && nr > 0) /* the others wait for this reader's answer */
        g->heal_until_ms = now + g->heal_ms;
    struct fill_ticket tk[16], *tkp = NULL;
    if (rq->oreq.cls != FETCH_DEMAND) {
        tickets_add(g, tk, runs, nr);
        tkp = tk;
    }
    int stale = g->stale;
    pthread_mutex_unlock(&g->lock);
    int r = fill_claimed(rq, runs, tkp, nr);
    if (tkp != NULL)
        tickets_drop(g, tk, nr);
    if (r == -ESTALE)
        return heal(g, rq->deadline, probe && nr > 0);
    if (r < 0)
        return r;
    r = copy_present(rq);
    if (r < 0 || rq->ndone == rq->last - rq->first + 1)
        return r;
    if (nr == 0 && stale)
        return -EIO; /* the origin moved on: this generation cannot fill */
    if (mono_ms() >= rq->deadline)
        return -EIO;
    if (healing)
        return wait_heal(g, rq->deadline);
    return wait_fills(rq);
}

/* The request's class and flow from the caller (NULL: a demand read),
 * its group the template. */
static struct origin_req req_of(const struct gen *g,
                                const struct origin_req *who)
{
    struct origin_req r = {.cls = FETCH_DEMAND};
    if (who != NULL)
        r = *who;
    r.group = (uint64_t)g->t->tid;
    r.urgent = NULL; /* per run: fill_claimed */
    return r;
}

uint64_t cache_read_deadline(const struct gen *g)
{
    return mono_ms() + __atomic_load_n(&g->t->timeout_ms, __ATOMIC_RELAXED);
}

/* Blocks of a request up to this many have their done flags on the
 * stack (one FUSE request of 1 MiB in 16K blocks), more on the heap. */
#define DONE_ON_STACK 64

ssize_t cache_read_until(struct gen *g, char *buf, uint64_t off, size_t size,
                         const struct origin_req *who, uint64_t deadline)
{
    struct rq rq = {.g = g, .buf = buf, .off = off, .oreq = req_of(g, who)};

    rq.len = block_clamp(off, size, g->info.size);
    if (rq.len == 0)
        return 0;
    /* A recording is of what readers asked for; a pre-warm or a qcow2
     * walk reading through here is the cache's own work (and no use). */
    if (rq.oreq.cls == FETCH_DEMAND) {
        pin_record_note(g->t, off, rq.len);
        note_used(g->t);
    }
    rq.first = block_of(off, g->bs);
    rq.last = block_of(off + rq.len - 1, g->bs);
    rq.deadline = deadline ? deadline : cache_read_deadline(g);
    uint8_t done[DONE_ON_STACK] = {0};
    uint64_t nb = rq.last - rq.first + 1;
    rq.done = nb <= DONE_ON_STACK ? done : calloc(nb, 1);
    if (rq.done == NULL)
        return -ENOMEM;
    int r = 0;
    while (r == 0 && rq.ndone < nb)
        r = read_round(&rq);
    if (rq.done != done)
        free(rq.done);
    return r < 0 ? r : (ssize_t)rq.len;
}

ssize_t cache_read(struct gen *g, char *buf, uint64_t off, size_t size,
                   const struct origin_req *who)
{
    return cache_read_until(g, buf, off, size, who, 0);
}

int cache_wait_filling(struct gen *g, uint64_t off, size_t size,
                       uint64_t deadline)
{
    struct rq rq = {.g = g, .off = off, .oreq = req_of(g, NULL),
                    .deadline = deadline};
    rq.len = block_clamp(off, size, g->info.size);
    if (rq.len == 0)
        return 0;
    rq.first = block_of(off, g->bs);
    rq.last = block_of(off + rq.len - 1, g->bs);
    uint8_t done[DONE_ON_STACK] = {0};
    uint64_t nb = rq.last - rq.first + 1;
    rq.done = nb <= DONE_ON_STACK ? done : calloc(nb, 1);
    if (rq.done == NULL)
        return 0; /* the caller's read path waits instead */
    /* Only a read whose blocks are all there or being filled joins: one
     * with a missing block claims it at once on the read path (fetched
     * beside the fills it then waits for, not after them), and a stale,
     * failing or healing generation's readers get the read path's answer
     * at once (read_round), not after the fills in flight. */
    pthread_mutex_lock(&g->lock);
    int filling = 0, missing = 0;
    for (uint64_t b = rq.first; !missing && b <= rq.last; b++) {
        int st = g->bm.v[b].state;
        filling |= st == BLK_FILLING;
        missing = st != BLK_FILLING && st != BLK_PRESENT;
    }
    if (missing || g->stale || recently_failed(&rq) ||
        g->heal_until_ms > mono_ms())
        filling = 0;
    pthread_mutex_unlock(&g->lock);
    int r = filling ? wait_fills(&rq) : 0;
    if (filling && r == 0)
        stat_add(&g->t->st.joined, 1);
    if (rq.done != done)
        free(rq.done);
    return r < 0 ? r : filling;
}

/* ------------------------------------------------------------ prefetch */

void cache_prefetch(struct gen *g, uint64_t off, uint64_t len)
{
    const struct origin_req ra = {.cls = FETCH_READAHEAD};
    struct rq rq = {.g = g, .off = off, .oreq = req_of(g, &ra)};
    struct run runs[16];

    rq.len = block_clamp(off, len, g->info.size);
    if (rq.len == 0)
        return;
    rq.first = block_of(off, g->bs);
    rq.last = block_of(off + rq.len - 1, g->bs);
    rq.deadline = cache_read_deadline(g);
    rq.done = calloc(rq.last - rq.first + 1, 1);
    if (rq.done == NULL)
        return;
    /* Claim only what nobody is fetching; never wait for others. */
    pthread_mutex_lock(&g->lock);
    int skip = recently_failed(&rq) || g->heal_until_ms > mono_ms();
    size_t nr = skip ? 0 : claim_runs(&rq, runs, 16);
    struct fill_ticket tk[16];
    tickets_add(g, tk, runs, nr);
    pthread_mutex_unlock(&g->lock);
    /* A -ESTALE is left to the readers to ask about (heal()): readahead
     * threads are shared by every template and must not wait on one. */
    fill_claimed(&rq, runs, tk, nr);
    tickets_drop(g, tk, nr);
    free(rq.done);
}

/* ------------------------------------------------------ zero-copy path */

int cache_read_fd_begin(struct gen *g, uint64_t off, size_t size,
                        size_t *len)
{
    uint64_t n = block_clamp(off, size, g->info.size);
    if (n == 0 || g->direct_reads)
        return 0; /* unaligned requests cannot go O_DIRECT */
    uint64_t first = block_of(off, g->bs), last = block_of(off + n - 1, g->bs);
    pthread_rwlock_rdlock(&g->evict_rw);
    pthread_mutex_lock(&g->lock);
    int ok = 1;
    for (uint64_t b = first; ok && b <= last; b++) {
        const struct blk *k = &g->bm.v[b];
        ok = k->state == BLK_PRESENT && (k->flags & BLK_VERIFIED);
    }
    if (ok) {
        uint32_t now = cache_tick(g->t->c);
        for (uint64_t b = first; b <= last; b++) {
            g->bm.v[b].atime = now;
            note_ra_used(g, &g->bm.v[b], b);
        }
    }
    pthread_mutex_unlock(&g->lock);
    if (!ok) {
        pthread_rwlock_unlock(&g->evict_rw);
        return 0;
    }
    stat_add(&g->t->st.hits, last - first + 1);
    pin_record_note(g->t, off, n);
    note_used(g->t);
    *len = (size_t)n;
    return 1;
}

void cache_read_fd_end(struct gen *g) { pthread_rwlock_unlock(&g->evict_rw); }

/* With data_direct_io, reads go O_DIRECT where they can (blocks are
 * aligned; so are their buffers, from fillbuf), the rest, or all of it
 * after a failure, through the page cache. */
static int pread_gap(void *arg, char *dst, uint64_t off, uint64_t len)
{
    struct gen *g = arg;
    uint64_t head = g->direct_reads ? direct_part(g, dst, off, len) : 0;
    if (head && pread_full(g->dfd, dst, head, off) != (ssize_t)head)
        head = 0;
    ssize_t r = pread_full(g->fd, dst + head, len - head, off + head);
    return r < 0 ? (int)r : (size_t)r == len - head ? 0 : -EIO;
}

int cache_pread_present(struct gen *g, char *buf, uint64_t off, size_t len)
{
    if (stage_read(g->t->c->stage, g->uid, buf, off, len, pread_gap, g) < 0)
        return -EIO;
    return 0;
}

int cache_stage_peek(struct gen *g, uint64_t off, size_t len,
                     const char **data, void **ref)
{
    return stage_peek(g->t->c->stage, g->uid, off, len, data, ref);
}

void cache_stage_unref(struct gen *g, void *ref)
{
    stage_unref(g->t->c->stage, ref);
}

int cache_splice_fd(struct gen *g)
{
    return stage_empty(g->t->c->stage) ? g->fd : -1;
}
