/* Pins that read the template: resolving pin specs (qcow2-metadata reads
 * the image's tables through the cache), applying the config's pins, and
 * pre-warming (fetching every missing pinned block).  Above the read path;
 * the pin sets themselves are pin.c's. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache-priv.h"
#include "ic-block.h"
#include "ic-evict.h"
#include "ic-log.h"
#include "ic-pin.h"
#include "ic-prewarm.h"
#include "ic-qcow2.h"
#include "ic-sched.h"
#include "ic-util.h"

/* ------------------------------------------------------ resolving */

/* Pin work, not a reader: fetched as a pre-warm would be (unpaced). */
static int qcow2_rd(void *ctx, void *buf, uint64_t off, size_t len)
{
    const struct origin_req who = {.cls = FETCH_WARM, .flow = 0};
    ssize_t r = cache_read(ctx, buf, off, len, &who);
    if (r < 0)
        return (int)r;
    return (size_t)r == len ? 0 : -EIO;
}

static int resolve_qcow2(struct tmpl *t, struct byte_range **out, size_t *n,
                         char *err, size_t errlen)
{
    struct gen *g;
    int r = cache_gen_open(t, 0, &g);
    if (r < 0) {
        snprintf(err, errlen, "template %s: %s", t->name, strerror(-r));
        return r;
    }
    char why[256] = "";
    r = qcow2_metadata_ranges(qcow2_rd, g, g->info.size, out, n, why,
                              sizeof why);
    cache_gen_put(g);
    if (r < 0)
        snprintf(err, errlen, "template %s: qcow2-metadata: %s", t->name,
                 why[0] ? why : strerror(-r));
    return r;
}

static int resolve_item(struct tmpl *t, const struct pin_item *it, int dflt,
                        struct byte_range **sets, size_t *ns, char *err,
                        size_t errlen)
{
    int cls = it->cls != PIN_NONE ? it->cls : dflt;
    struct byte_range **acc = &sets[cls];
    size_t *nacc = &ns[cls];
    struct byte_range *v = NULL, one = {it->off, it->len};
    size_t n = 1;
    int r = 0;
    if (it->kind == PIN_PROFILE)
        r = profile_load(it->path, &v, &n, err, errlen);
    else if (it->kind == PIN_QCOW2)
        r = resolve_qcow2(t, &v, &n, err, errlen);
    if (r < 0)
        return r;
    struct byte_range *u;
    size_t nu;
    r = pin_set_union(*acc, *nacc, v ? v : &one, n, &u, &nu);
    free(v);
    if (r < 0)
        return r;
    free(*acc);
    *acc = u;
    *nacc = nu;
    return 0;
}

void prewarm_sets_free(struct byte_range **sets, size_t *n)
{
    for (int k = 0; k < PIN_NCLASS; k++) {
        free(sets[k]);
        sets[k] = NULL;
        n[k] = 0;
    }
}

int prewarm_resolve(struct tmpl *t, const char *spec, int dflt,
                    struct byte_range **sets, size_t *n, char *err,
                    size_t errlen)
{
    struct pin_item *items;
    size_t ni;
    for (int k = 0; k < PIN_NCLASS; k++) {
        sets[k] = NULL;
        n[k] = 0;
    }
    if (dflt < PIN_NONE || dflt >= PIN_NCLASS) {
        snprintf(err, errlen, "bad pin class %d", dflt);
        return -EINVAL;
    }
    if (pinspec_parse(spec, &items, &ni, err, errlen) < 0)
        return -EINVAL;
    int r = 0;
    for (size_t i = 0; i < ni && r == 0; i++)
        r = resolve_item(t, &items[i], dflt, sets, n, err, errlen);
    pinspec_free(items, ni);
    if (r < 0)
        prewarm_sets_free(sets, n);
    return r;
}

/* The config's pins are the config's source (ic-pin.h): each load
 * replaces them whole, so a range it named before and names no more loses
 * its config pin (a pin the tool made of it stays), and editing "pin ="
 * and reloading does what it says.  cfgpin_lock keeps the config source
 * and cfg_applied together (only the housekeeping thread applies config
 * pins today, one template at a time; the lock makes that a rule rather
 * than a habit). */
int prewarm_config(struct tmpl *t, const char *spec, uint64_t seq)
{
    struct byte_range *r[PIN_NCLASS] = {0};
    size_t n[PIN_NCLASS] = {0};
    char err[512];
    int rc = 0;
    pthread_mutex_lock(&t->cfgpin_lock);
    if (seq <= t->cfg_applied)
        goto out;
    /* One attempt per config load, failed or not (a failure is logged;
     * the next reload tries again). */
    t->cfg_applied = seq;
    /* Items without a class are boot: what "pin =" meant before classes. */
    if (spec != NULL && (rc = prewarm_resolve(t, spec, PIN_BOOT, r, n, err,
                                              sizeof err)) < 0) {
        log_err("%s: [%s] pin: %s", cache_conf(t->c)->path, t->name, err);
        goto out; /* keep the pins we have rather than guess */
    }
    /* All or nothing: boot ranges over the quota leave the config's pins
     * as they were, every class of them. */
    rc = pin_apply(t, PIN_SRC_CONFIG, PIN_OP_REPLACE, r, n, err, sizeof err);
    if (rc < 0)
        log_err("%s: [%s] pin: %s", cache_conf(t->c)->path, t->name, err);
    prewarm_sets_free(r, n);
    rc = rc < 0 ? rc : 1;
out:
    pthread_mutex_unlock(&t->cfgpin_lock);
    return rc;
}

/* ------------------------------------------------------ warming */

#define WARM_CHUNK (1u << 20)

/* t, g, chunks, nchunks, total and who are fixed before the workers
 * start. */
struct warm {
    struct tmpl *t;
    struct gen *g;
    struct byte_range *chunks;
    size_t nchunks, next;
    uint64_t done, total;
    struct origin_req who;   /* FETCH_WARM, this run's own flow */
    const int *stop;         /* atomic, may be NULL: stop taking chunks */
    int skip_present;        /* chunks with nothing missing are not read */
    int background;          /* the daemon's own pre-warm: its fills take
                                only free room or weaker classes' blocks
                                (EVICT_BACKGROUND), and it stops at the
                                first chunk that would not fit */
    int cls;                 /* the class warmed (PIN_NONE: every class) */
    int no_room;             /* a chunk did not fit: stop (atomic) */
    struct sched_bucket pace; /* warm_rate / the caller's rate */
    pthread_mutex_t lock; /* protects next, done, progress calls: held
                             across the callback (ic-prewarm.h) */
    pthread_cond_t paced; /* waited on (timed, under lock) for the rate */
    prewarm_progress_fn progress;
    prewarm_cancel_fn cancelled; /* may be NULL; asked between chunks and
                                    while waiting for the rate */
    void *ctx;
};

/* Cut the pin sets of class cls (PIN_NONE: every class, strongest first)
 * into block-aligned chunks of at most WARM_CHUNK, in the order they are
 * to be fetched. */
static int warm_chunks(struct warm *w, int cls)
{
    struct tmpl *t = w->t;
    uint64_t size = w->g->info.size, bs = w->g->bs, b0, b1;
    size_t cap = 0;
    for (int k = PIN_BOOT; k >= PIN_LOW; k--)
    for (size_t i = 0; i < t->npins[k] && (cls == PIN_NONE || cls == k);
         i++) {
        if (!pin_range_blocks(&t->pins[k][i], size, (uint32_t)bs, &b0, &b1))
            continue;
        for (uint64_t off = b0 * bs; off < b1 * bs && off < size;
             off += WARM_CHUNK) {
            if (w->nchunks == cap) {
                cap = cap ? cap * 2 : 64;
                void *nv = realloc(w->chunks, cap * sizeof *w->chunks);
                if (nv == NULL)
                    return -ENOMEM;
                w->chunks = nv;
            }
            uint64_t end = off + WARM_CHUNK;
            end = end > b1 * bs ? b1 * bs : end;
            end = end > size ? size : end;
            w->chunks[w->nchunks++] = (struct byte_range){off, end - off};
        }
    }
    return 0;
}

static uint64_t chunk_missing(const struct warm *w,
                              const struct byte_range *c);
static int warm_stopped(const struct warm *w);

/* How often a warm waiting for its rate looks at the stop flag and the
 * caller's cancel: shutdown, or a client that went away, is not kept
 * waiting for a bucket that refills at 64 KiB/s. */
#define PACE_SLICE_MS 100

/* Wait until `bytes` may be taken from the warm's bucket and take them:
 * 0, or -ECANCELED when the warm was stopped meanwhile. */
static int warm_pace(struct warm *w, uint64_t bytes)
{
    uint64_t wait;
    while ((wait = sched_bucket_try(&w->pace, bytes, mono_ms())) != 0) {
        if (warm_stopped(w))
            return -ECANCELED;
        struct timespec ts =
            ms_timespec(mono_ms() + (wait < PACE_SLICE_MS ? wait
                                                          : PACE_SLICE_MS));
        pthread_mutex_lock(&w->lock);
        pthread_cond_timedwait(&w->paced, &w->lock, &ts);
        pthread_mutex_unlock(&w->lock);
    }
    return 0;
}

/* Read one chunk as this warm's, after taking the bytes it will fetch
 * from the bucket: the wait is over before the read starts, so it holds
 * no transfer slot and eats none of the read's origin_timeout. */
static void warm_read(struct warm *w, char *buf, const struct byte_range *c)
{
    if (w->background) {
        /* Fetched bytes that no room can be made for would only be served
         * to nobody: a pass after a pass would fetch them again. */
        uint64_t missing = chunk_missing(w, c);
        if (missing > 0 && !evict_may_fit(w->g, missing,
                                          w->cls | EVICT_BACKGROUND)) {
            __atomic_store_n(&w->no_room, 1, __ATOMIC_RELAXED);
            return;
        }
    }
    if (w->pace.rate != 0) {
        uint64_t missing = chunk_missing(w, c);
        if (missing > 0 && warm_pace(w, missing) < 0)
            return; /* stopped: the read is not started */
    }
    /* A failure leaves the blocks missing; the final count says so. */
    (void)cache_read(w->g, buf, c->off, c->len, &w->who);
}

static int warm_stopped(const struct warm *w)
{
    return (w->stop != NULL && __atomic_load_n(w->stop, __ATOMIC_RELAXED)) ||
           __atomic_load_n(&w->no_room, __ATOMIC_RELAXED) ||
           (w->cancelled != NULL && w->cancelled(w->ctx));
}

static void *warm_worker(void *arg)
{
    struct warm *w = arg;
    char *buf = malloc(WARM_CHUNK);
    if (buf == NULL)
        return NULL;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        size_t i = w->next++;
        pthread_mutex_unlock(&w->lock);
        if (i >= w->nchunks || warm_stopped(w))
            break;
        /* The background pre-warm reads only what is missing: a read of
         * present blocks would count as hits and refresh their LRU age
         * though nobody used them. */
        if (!w->skip_present || chunk_missing(w, &w->chunks[i]) > 0)
            warm_read(w, buf, &w->chunks[i]);
        pthread_mutex_lock(&w->lock);
        w->done += w->chunks[i].len;
        if (w->progress)
            w->progress(w->ctx, w->done, w->total);
        pthread_mutex_unlock(&w->lock);
    }
    free(buf);
    return NULL;
}

/* Bytes of the blocks of one chunk that are pinned (of the warm's class,
 * when it has one) and not present.  Only this warm's chunks count: a pin
 * added meanwhile by someone else is that caller's to fetch. */
static uint64_t chunk_missing(const struct warm *w, const struct byte_range *c)
{
    struct gen *g = w->g;
    uint64_t missing = 0;
    pthread_mutex_lock(&g->lock);
    for (uint64_t i = c->off / g->bs; i < g->bm.nblocks &&
                                      block_start(i, g->bs) < c->off + c->len;
         i++) {
        uint8_t f = g->bm.v[i].flags;
        if ((f & BLK_PINNED) && g->bm.v[i].state != BLK_PRESENT &&
            (w->cls == PIN_NONE || (int)BLK_CLASS(f) == w->cls))
            missing += block_len(i, g->info.size, g->bs);
    }
    pthread_mutex_unlock(&g->lock);
    return missing;
}

/* A pinned block can still be missing after its chunk was read: the read
 * joined a reader's fill of it that found no room (no pin on that run when
 * it started).  One more read of such chunks, then count. */
static uint64_t warm_retry(struct warm *w)
{
    uint64_t missing = 0;
    char *buf = NULL;
    for (size_t i = 0; i < w->nchunks && !warm_stopped(w); i++) {
        if (chunk_missing(w, &w->chunks[i]) == 0)
            continue;
        if (buf == NULL && (buf = malloc(WARM_CHUNK)) == NULL)
            return chunk_missing(w, &w->chunks[i]);
        warm_read(w, buf, &w->chunks[i]);
    }
    free(buf);
    /* Counted after all the reads: a later chunk's fill may have taken
     * an earlier chunk's blocks (another template's stronger pins, or a
     * reader's fill). */
    for (size_t i = 0; i < w->nchunks; i++)
        missing += chunk_missing(w, &w->chunks[i]);
    return missing;
}

static int warm_run(struct warm *w0, int cls, unsigned parallel,
                    uint64_t rate, uint64_t *failed);

int prewarm_run(struct tmpl *t, int cls, unsigned parallel, uint64_t rate,
                prewarm_progress_fn progress, prewarm_cancel_fn cancelled,
                void *ctx, uint64_t *failed)
{
    struct warm w = {.t = t, .progress = progress, .cancelled = cancelled,
                     .ctx = ctx};
    return warm_run(&w, cls, parallel, rate, failed);
}

static int warm_run(struct warm *w0, int cls, unsigned parallel,
                    uint64_t rate, uint64_t *failed)
{
    struct warm w = *w0;
    struct tmpl *t = w.t;
    pthread_t th[16];
    int r = cache_gen_open(t, 0, &w.g);
    if (r < 0)
        return r;
    w.who = (struct origin_req){.cls = FETCH_WARM,
                                .flow = (uint64_t)(uintptr_t)&w,
                                .background = w.background};
    w.cls = cls;
    sched_bucket_init(&w.pace,
                      sched_rate_min(cache_conf(t->c)->warm_rate, rate),
                      mono_ms());
    pthread_mutex_init(&w.lock, NULL);
    cond_init_mono(&w.paced);
    pthread_mutex_lock(&t->lock);
    r = warm_chunks(&w, cls);
    pthread_mutex_unlock(&t->lock);
    for (size_t i = 0; i < w.nchunks; i++)
        w.total += w.chunks[i].len;
    parallel = parallel < 1 ? 1 : parallel > 16 ? 16 : parallel;
    unsigned started = 0;
    for (; r == 0 && started < parallel; started++)
        if (pthread_create(&th[started], NULL, warm_worker, &w) != 0)
            break;
    if (r == 0 && started == 0)
        warm_worker(&w);
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    *failed = r == 0 ? warm_retry(&w) : 0;
    w0->no_room = w.no_room;
    int stopped = warm_stopped(&w) && !w.no_room;
    cache_gen_put(w.g);
    free(w.chunks);
    pthread_cond_destroy(&w.paced);
    pthread_mutex_destroy(&w.lock);
    sched_bucket_destroy(&w.pace);
    if (r < 0)
        return r;
    if (*failed && stopped)
        return -ECANCELED;
    return *failed ? -EIO : 0;
}

/* ------------------------------------------------------ pending pins */

/* When t was last used, by its newest access count among its present
 * blocks (the LRU clock; the index keeps each block's as of its fill). */
static uint32_t newest_atime(struct tmpl *t)
{
    uint32_t newest = 0;
    struct gen *g = cache_cur_gen(t);
    pthread_mutex_lock(&g->lock);
    for (uint64_t i = 0; i < g->bm.nblocks; i++)
        if (g->bm.v[i].state == BLK_PRESENT && g->bm.v[i].atime > newest)
            newest = g->bm.v[i].atime;
    pthread_mutex_unlock(&g->lock);
    cache_gen_put(g);
    return newest;
}

/* Bytes of t's blocks of class cls that are not present. */
static uint64_t class_missing(struct tmpl *t, int cls)
{
    uint64_t missing = 0;
    struct gen *g = cache_cur_gen(t);
    pthread_mutex_lock(&g->lock);
    for (uint64_t i = 0; i < g->bm.nblocks; i++) {
        const struct blk *b = &g->bm.v[i];
        if ((int)BLK_CLASS(b->flags) == cls && b->state != BLK_PRESENT)
            missing += block_len(i, g->info.size, g->bs);
    }
    pthread_mutex_unlock(&g->lock);
    cache_gen_put(g);
    return missing;
}

struct pending_warm {
    struct tmpl *t;
    uint64_t used;    /* tmpl_stats.last_used: the newest demand read,
                         hits too, kept across restarts (seconds) */
    uint32_t atime;   /* the newest fill or hit (the LRU clock), for
                         templates used in the same second */
};

static int by_recency(const void *a, const void *b)
{
    const struct pending_warm *x = a, *y = b;
    if (x->used != y->used)
        return x->used > y->used ? -1 : 1;
    return x->atime > y->atime ? -1 : x->atime < y->atime;
}

uint64_t prewarm_pending(struct cache *c, unsigned parallel, const int *stop)
{
    struct tmpl **v;
    size_t nt = cache_snapshot(c, &v);
    uint64_t failed_all = 0;
    size_t warmed = 0;
    struct pending_warm *p = calloc(nt + 1, sizeof *p);
    if (p == NULL)
        return 0;
    /* The order is taken once, before anything is warmed: the warm's own
     * fills make a template look used. */
    size_t np = 0;
    for (size_t i = 0; i < nt; i++)
        if (!__atomic_load_n(&v[i]->removed, __ATOMIC_RELAXED) &&
            !__atomic_load_n(&v[i]->gone, __ATOMIC_RELAXED))
            p[np++] = (struct pending_warm){
                v[i], __atomic_load_n(&v[i]->st.last_used, __ATOMIC_RELAXED),
                newest_atime(v[i])};
    qsort(p, np, sizeof *p, by_recency);
    for (int cls = PIN_BOOT; cls >= PIN_LOW; cls--) {
        for (size_t i = 0; i < np; i++) {
            if (class_missing(p[i].t, cls) == 0)
                continue;
            if (stop && __atomic_load_n(stop, __ATOMIC_RELAXED))
                goto out;
            struct warm w = {.t = p[i].t, .stop = stop, .skip_present = 1,
                             .background = 1};
            uint64_t failed = 0;
            log_info("template %s: pre-warming its %s pins", p[i].t->name,
                     pin_class_name(cls));
            int r = warm_run(&w, cls, parallel, 0, &failed);
            if (r == -ECANCELED)
                goto out; /* shutdown */
            if (r < 0 && r != -EIO)
                log_warn("template %s: pre-warm of its %s pins: %s",
                         p[i].t->name, pin_class_name(cls), strerror(-r));
            else if (failed)
                log_warn("template %s: pre-warm of its %s pins: %llu bytes "
                         "not fetched%s", p[i].t->name, pin_class_name(cls),
                         (unsigned long long)failed,
                         w.no_room ? " (no room without evicting pins of "
                                     "this class or a stronger one)"
                                   : "");
            failed_all += failed;
            warmed++;
        }
    }
out:
    /* What a test (or an operator) waits for after a reload. */
    if (warmed)
        log_info("pre-warm: pass done, %zu template warms", warmed);
    free(p);
    return failed_all;
}
