/* Templates and their generations: the template list, generations and
 * their references, inode numbers, the LRU clock, and revalidation against
 * the origin (a changed validator starts a new generation).  The bottom
 * layer of the engine; its contract is in ic-cache.h and cache-priv.h. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache-priv.h"
#include "ic-block.h"
#include "ic-http-check.h"
#include "ic-log.h"
#include "ic-manifest.h"
#include "ic-verify.h"
#include "ic-pin.h"
#include "ic-stage.h"
#include "ic-store.h"
#include "ic-util.h"
#include "ic-writer.h"

uint32_t cache_tick(struct cache *c)
{
    return (uint32_t)__atomic_add_fetch(&c->clock, 1, __ATOMIC_RELAXED);
}

int cache_fills_direct(const struct conf *conf)
{
    return conf->direct_fill || conf->data_direct_io;
}

/* The data file opened O_DIRECT, or -1 (not an error: a value for
 * gen.dfd): then all I/O goes through the page cache (a filesystem
 * without O_DIRECT, or fills that do not bypass it). */
static int open_direct_fd(const struct tmpl *t, uint64_t number)
{
    const struct conf *conf = cache_conf(t->c);
    if (!cache_fills_direct(conf))
        return -1;
    int fd = store_open_direct(conf->cache_dir, t->name, number);
    if (fd < 0)
        log_info("template %s: the cache's filesystem refuses O_DIRECT (%s): "
                 "its data file goes through the page cache", t->name,
                 strerror(-fd));
    return fd < 0 ? -1 : fd;
}

struct gen *cache_gen_new(struct tmpl *t, uint64_t number,
                          const struct origin_info *info)
{
    struct gen *g = calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    g->t = t;
    g->number = number;
    g->info = *info;
    g->bs = t->bs;
    g->refs = 1;
    static uint64_t next_uid;
    g->uid = __atomic_add_fetch(&next_uid, 1, __ATOMIC_RELAXED);
    int fd = store_open(cache_conf(t->c)->cache_dir, t->name, number, info->size);
    if (fd < 0 || blockmap_init(&g->bm, block_count(info->size, g->bs)) < 0) {
        if (fd >= 0)
            close(fd);
        free(g);
        return NULL;
    }
    g->fd = fd;
    g->mf_bytes = store_manifest_bytes(cache_conf(t->c)->cache_dir, t->name,
                                       number);
    g->dfd = open_direct_fd(t, number);
    g->direct_reads = g->dfd >= 0 && cache_conf(t->c)->data_direct_io;
    pthread_mutex_init(&g->lock, NULL);
    cond_init_mono(&g->filled);
    pthread_rwlock_init(&g->evict_rw, NULL);
    return g;
}

/* Make g the template's current generation, with its inode (tmpl.lock
 * held, t->tid final). */
void cache_gen_link(struct tmpl *t, struct gen *g)
{
    g->ino = cache_gen_ino(t->tid, g->number);
    g->next_live = t->live;
    t->live = g;
    t->cur = g;
}

/* Take g off the live list; whether it was superseded (tmpl.lock held).
 * One never linked (a failed start) was not: its data file may hold the
 * blocks the index lists for that generation. */
static int gen_unlink(struct tmpl *t, struct gen *g)
{
    for (struct gen **pp = &t->live; *pp != NULL; pp = &(*pp)->next_live)
        if (*pp == g) {
            *pp = g->next_live;
            return t->cur != g;
        }
    return 0;
}

static void gen_destroy(struct gen *g)
{
    struct tmpl *t = g->t;
    pthread_mutex_lock(&t->lock);
    int superseded = gen_unlink(t, g);
    pthread_mutex_unlock(&t->lock);
    if (t->c->stage)
        stage_forget(t->c->stage, g->uid);
    vmf_release(g->mf); /* the generation's reference: the last */
    close(g->fd);
    if (g->dfd >= 0)
        close(g->dfd);
    /* A superseded generation's bytes are of no further use. */
    if (superseded && t->c->w != NULL)
        store_unlink(cache_conf(t->c)->cache_dir, t->name, g->number);
    blockmap_free(&g->bm);
    qmap_free(g->qmap);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->filled);
    pthread_rwlock_destroy(&g->evict_rw);
    free(g);
}

/* A generation whose count reached 0 stays on the live list until
 * gen_destroy takes it off; cache_gen_get_ino skips it meanwhile, so it is
 * never revived. */
void cache_gen_put(struct gen *g)
{
    pthread_mutex_lock(&g->lock);
    int last = --g->refs == 0;
    pthread_mutex_unlock(&g->lock);
    if (last)
        gen_destroy(g);
}

static void gen_get(struct gen *g)
{
    pthread_mutex_lock(&g->lock);
    g->refs++;
    pthread_mutex_unlock(&g->lock);
}

void cache_gen_ref(struct gen *g) { gen_get(g); }

uint64_t cache_tmpl_ino(struct tmpl *t)
{
    pthread_mutex_lock(&t->lock);
    uint64_t ino = t->cur->ino;
    pthread_mutex_unlock(&t->lock);
    return ino;
}

struct gen *cache_gen_get_ino(struct cache *c, uint64_t ino)
{
    struct tmpl *t = cache_find_ino(c, ino);
    struct gen *found = NULL;
    if (t == NULL)
        return NULL;
    pthread_mutex_lock(&t->lock);
    for (struct gen *g = t->live; g != NULL && !found; g = g->next_live) {
        if (g->ino != ino)
            continue;
        pthread_mutex_lock(&g->lock);
        /* The previous generation, kept only for delta fills (its one
         * reference the template's), is as gone for its inode. */
        int kept_only = g == t->prev && g->refs == 1;
        if (g->refs > 0 && !kept_only) { /* else on its way out */
            g->refs++;
            found = g;
        }
        pthread_mutex_unlock(&g->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return found;
}

struct gen *cache_cur_gen(struct tmpl *t)
{
    pthread_mutex_lock(&t->lock);
    struct gen *g = t->cur;
    gen_get(g);
    pthread_mutex_unlock(&t->lock);
    return g;
}

void cache_tmpl_row(const struct tmpl *t, const struct gen *g,
                    struct index_tmpl *row)
{
    memset(row, 0, sizeof *row);
    row->id = t->tid;
    snprintf(row->name, sizeof row->name, "%s", t->name);
    snprintf(row->origin, sizeof row->origin, "%s", t->location);
    row->size = g->info.size;
    row->mtime_ns = g->info.mtime_ns;
    snprintf(row->validator, sizeof row->validator, "%s", g->info.validator);
    row->generation = g->number;
    row->block_size = t->bs;
    row->quota = __atomic_load_n(&t->quota, __ATOMIC_RELAXED);
}

/* What an HTTP origin without a strong ETag cannot tell us: the warning
 * (once per template) or, with require_strong_etag, the refusal.  File
 * origins' validators (device, inode, size, mtime and ctime) always are
 * strong enough.  1 when refused. */
int cache_validator_refused(struct tmpl *t, const char *validator)
{
    if (!conf_origin_is_http(t->location) || httpc_validator_strong(validator))
        return 0;
    const char *what = strncmp(validator, "etag:", 5) == 0
                           ? "only a weak ETag"
                       : strncmp(validator, "lm:", 3) == 0
                           ? "no ETag, only Last-Modified"
                           : "neither ETag nor Last-Modified";
    if (__atomic_load_n(&t->net.require_strong_etag, __ATOMIC_RELAXED)) {
        if (!t->quiet && !t->refuse_logged)
            log_err("template %s: origin %s gives %s, and "
                    "require_strong_etag = yes: refusing the template",
                    t->name, t->origin->display, what);
        t->refuse_logged = 1;
        return 1;
    }
    if (!t->weak_warned)
        log_warn("template %s: origin %s gives no strong ETag (%s): a "
                 "change that keeps the size and the Last-Modified date "
                 "(second resolution) goes undetected, and reads could mix "
                 "the two versions; see require_strong_etag in "
                 "imgcache.conf(5)", t->name, t->origin->display, what);
    t->weak_warned = 1;
    return 0;
}

size_t cache_snapshot(struct cache *c, struct tmpl ***arr)
{
    /* nt is published after t (release), so an array read after nt has at
     * least nt entries; old arrays are never freed while we run. */
    size_t n = __atomic_load_n(&c->nt, __ATOMIC_ACQUIRE);
    *arr = __atomic_load_n(&c->t, __ATOMIC_ACQUIRE);
    return n;
}

struct tmpl *cache_find_any(struct cache *c, const char *name)
{
    struct tmpl **v;
    size_t n = cache_snapshot(c, &v);
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i]->name, name) == 0)
            return v[i];
    return NULL;
}

struct tmpl *cache_find(struct cache *c, const char *name)
{
    struct tmpl *t = cache_find_any(c, name);
    return t && !__atomic_load_n(&t->removed, __ATOMIC_RELAXED) ? t : NULL;
}

/* Removed templates are still found by inode: handles opened before the
 * removal keep working (the kernel revalidates their attributes). */
struct tmpl *cache_find_ino(struct cache *c, uint64_t ino)
{
    struct tmpl **v;
    size_t n = cache_snapshot(c, &v);
    int64_t tid = (int64_t)(ino >> 32);
    for (size_t i = 0; i < n; i++)
        if (v[i]->tid == tid)
            return v[i];
    return NULL;
}

void cache_tmpl_attr(struct tmpl *t, uint64_t *size, int64_t *mtime_ns)
{
    pthread_mutex_lock(&t->lock);
    *size = t->cur->info.size;
    *mtime_ns = t->cur->info.mtime_ns;
    pthread_mutex_unlock(&t->lock);
}

/* ---------------------------------------------------------- revalidate */

/* Switch the template to a new generation for changed origin content
 * (t->lock held).  Returns the template's reference on the old one, for
 * the caller to put once t->lock is released (NULL if none). */
static struct gen *tmpl_new_gen(struct tmpl *t, const struct origin_info *info)
{
    struct gen *old = t->cur;
    struct gen *g = cache_gen_new(t, old->number + 1, info);
    if (g == NULL) {
        /* Not marked stale: the next check tries again, and if the
         * origin turns out not to have changed, nothing was lost. */
        log_err("template %s: cannot start a new generation; the old "
                "content is kept, its fills fail while the origin differs",
                t->name);
        return NULL;
    }
    pthread_mutex_lock(&old->lock);
    old->stale = 1;
    pthread_cond_broadcast(&old->filled);
    pthread_mutex_unlock(&old->lock);
    log_info("template %s: origin changed; new generation %llu", t->name,
             (unsigned long long)g->number);
    pin_mark_gen(t, g);
    cache_gen_link(t, g);
    struct index_tmpl row;
    cache_tmpl_row(t, g, &row);
    /* Records the writer could not queue (logged there) cost nothing
     * wrong: without the row, the next start sees the origin differ from
     * the index and makes this same generation number again; without the
     * drop, the next start drops the other generations itself. */
    (void)writer_tmpl(t->c->w, &row);
    /* The old generation stays, with its rows, for delta fills to copy
     * from (cache_drop_prev); the one before it goes. */
    (void)writer_drop_gens(t->c->w, t->tid, g->number, old->number);
    (void)writer_event(t->c->w, t->tid, "generation", 0, 0, NULL);
    pin_retarget(t);
    struct gen *drop = t->prev;
    t->prev = old; /* the template's reference moves there */
    return drop;
}

/* Ask the origin for the template's validator, by the deadline and at
 * most for connect_timeout; a new one starts a new generation.  Checks
 * run concurrently (opens, lookups, rechecks): an answer older than one
 * already applied is dropped, so a slow reply cannot undo a newer one.
 * 0 or the stat's -errno. */
static int tmpl_revalidate(struct tmpl *t, uint64_t deadline)
{
    struct origin_info info;
    uint64_t now = mono_ms();
    if (deadline > now + t->origin->connect_timeout_ms)
        deadline = now + t->origin->connect_timeout_ms;
    pthread_mutex_lock(&t->lock);
    uint64_t seq = ++t->check_seq;
    pthread_mutex_unlock(&t->lock);

    int r = origin_stat(t->origin, &info, deadline);
    /* A web server's 404/410 is a template withdrawn on purpose; a file
     * origin that vanished is more likely an unmounted share: keep
     * serving what is cached there. */
    if (conf_origin_is_http(t->location) && (r == 0 || r == -ENOENT)) {
        if (r == -ENOENT && !__atomic_load_n(&t->gone, __ATOMIC_RELAXED))
            log_warn("template %s: origin %s is gone (404/410); hiding it",
                     t->name, t->origin->display);
        __atomic_store_n(&t->gone, r == -ENOENT, __ATOMIC_RELAXED);
    }
    struct gen *old = NULL;
    int made = 0;
    pthread_mutex_lock(&t->lock);
    int newest = seq > t->check_applied;
    if (newest && (r == 0 || r == -ENOENT)) {
        t->check_applied = seq;
        /* When the answer came: an open right after it needs no other
         * (see cache_gen_open). */
        t->last_check_ms = mono_ms();
    }
    /* The size too: a server may keep an ETag across a change of length
     * (the reads' Content-Range totals would all fail). */
    if (r == 0 && newest &&
        (!origin_validator_eq(info.validator, t->cur->info.validator) ||
         info.size != t->cur->info.size)) {
        if (cache_validator_refused(t, info.validator)) {
            /* The new content cannot be trusted to stay one version:
             * keep the old one's cached blocks, fetch nothing more. */
            pthread_mutex_lock(&t->cur->lock);
            t->cur->stale = 1;
            pthread_cond_broadcast(&t->cur->filled);
            pthread_mutex_unlock(&t->cur->lock);
        } else {
            old = tmpl_new_gen(t, &info);
            made = t->cur != NULL && t->cur->info.size == info.size &&
                   strcmp(t->cur->info.validator, info.validator) == 0;
        }
    } else if (r != 0 && r != -ENOENT) {
        log_debug("template %s: cannot revalidate origin: %s", t->name,
                  strerror(-r));
    }
    pthread_mutex_unlock(&t->lock);
    if (old != NULL)
        cache_gen_put(old);
    /* The pins moved to the new generation (pin_retarget): warm them
     * there, mostly from local copies of the previous one (prewarm = yes,
     * imgcache.conf(5)). */
    if (made)
        cache_warm_due(t->c);
    return r;
}

int cache_tmpl_visible(struct tmpl *t)
{
    if (!__atomic_load_n(&t->gone, __ATOMIC_RELAXED))
        return 1;
    pthread_mutex_lock(&t->lock);
    int due = mono_ms() - t->last_check_ms >= t->revalidate_ms;
    pthread_mutex_unlock(&t->lock);
    if (due)
        tmpl_revalidate(t, UINT64_MAX); /* it may be back */
    return !__atomic_load_n(&t->gone, __ATOMIC_RELAXED);
}

/* The kernel retries an open that failed with ESTALE once, on the inode
 * a new lookup gives.  The first open of the then current inode within
 * this long does not ask the origin again, even with revalidate = 0: the
 * check that failed the first try is this open's check, and asking again
 * could find yet another change and fail the retry too (the application
 * would then see ESTALE).  Single use: every other open asks as usual. */
#define OPEN_RETRY_MS 500

/* An open is about to fail with ESTALE: let its retry through (t->lock). */
static void expect_retry(struct tmpl *t)
{
    t->retry_ino = t->cur->ino;
    t->retry_until_ms = mono_ms() + OPEN_RETRY_MS;
}

int cache_gen_open(struct tmpl *t, uint64_t ino, struct gen **out)
{
    pthread_mutex_lock(&t->lock);
    uint64_t now = mono_ms();
    /* A superseded generation's inode: never a new handle on it. */
    int estale = ino != 0 && t->cur->ino != ino;
    int retry = !estale && ino != 0 && ino == t->retry_ino &&
                now < t->retry_until_ms;
    if (retry)
        t->retry_ino = 0;
    /* cur is stale only when its content changed and no successor could
     * be made or accepted: ask again. */
    int due = !estale && !retry &&
              (t->cur->stale || now - t->last_check_ms >= t->revalidate_ms);
    if (estale)
        expect_retry(t);
    pthread_mutex_unlock(&t->lock);
    if (estale)
        return -ESTALE;
    if (due)
        tmpl_revalidate(t, UINT64_MAX);
    pthread_mutex_lock(&t->lock);
    struct gen *g = t->cur;
    if (ino != 0 && g->ino != ino) {
        expect_retry(t); /* it changed just now */
        pthread_mutex_unlock(&t->lock);
        return -ESTALE;
    }
    gen_get(g);
    pthread_mutex_unlock(&t->lock);
    *out = g;
    return 0;
}

/* Rechecks of one template are at most this often: a burst of "changed"
 * answers (every reader of a booting VM meets the same stale node) costs
 * one request to the origin. */
#define RECHECK_MIN_MS 1000

int cache_gen_recheck(struct gen *g, uint64_t deadline)
{
    struct tmpl *t = g->t;
    struct timespec ts = ms_timespec(deadline);
    pthread_mutex_lock(&t->lock);
    while (t->checking && !g->stale)
        if (pthread_cond_timedwait(&t->checked, &t->lock, &ts) == ETIMEDOUT)
            break;
    uint64_t now = mono_ms();
    int fresh = t->recheck_ms != 0 && now - t->recheck_ms < RECHECK_MIN_MS;
    int ask = !g->stale && !t->checking && !fresh && t->cur == g;
    if (ask)
        t->checking = 1;
    pthread_mutex_unlock(&t->lock);
    if (ask) {
        tmpl_revalidate(t, deadline); /* a failed check changes nothing */
        pthread_mutex_lock(&t->lock);
        t->checking = 0;
        t->recheck_ms = mono_ms(); /* failed or not: the rate holds */
        pthread_cond_broadcast(&t->checked);
        pthread_mutex_unlock(&t->lock);
    }
    pthread_mutex_lock(&g->lock);
    int stale = g->stale;
    pthread_mutex_unlock(&g->lock);
    if (stale)
        return -ESTALE;
    return __atomic_load_n(&t->gone, __ATOMIC_RELAXED) ? -ENOENT : 0;
}

void cache_warm_due(struct cache *c)
{
    /* The warmer's flags (engine.c's warm_due_locked, hk_lock a leaf). */
    pthread_mutex_lock(&c->hk_lock);
    if (c->warm_running) {
        c->warm_due = 1;
        pthread_cond_signal(&c->warm_wake);
    }
    pthread_mutex_unlock(&c->hk_lock);
}

/* ------------------------------------------------------- previous gen */

/* What a kept previous generation takes on disk: its blocks and its
 * stored manifest. */
static uint64_t prev_disk_bytes(struct gen *p)
{
    return cache_gen_cached_bytes(p) +
           __atomic_load_n(&p->mf_bytes, __ATOMIC_RELAXED);
}

uint64_t cache_drop_prev(struct tmpl *t)
{
    pthread_mutex_lock(&t->lock);
    struct gen *p = t->prev;
    t->prev = NULL;
    uint64_t cur = t->cur ? t->cur->number : INDEX_NO_GEN;
    pthread_mutex_unlock(&t->lock);
    if (p == NULL)
        return 0;
    uint64_t bytes = prev_disk_bytes(p);
    log_info("template %s: dropping generation %llu (%llu bytes), kept for "
             "delta fills: its room is needed", t->name,
             (unsigned long long)p->number, (unsigned long long)bytes);
    if (t->c->w != NULL)
        (void)writer_drop_gens(t->c->w, t->tid, cur, INDEX_NO_GEN);
    cache_gen_put(p); /* unlinked once a handle still on it closes */
    return bytes;
}

uint64_t cache_prev_bytes(struct tmpl *t)
{
    pthread_mutex_lock(&t->lock);
    struct gen *p = t->prev;
    if (p != NULL)
        gen_get(p);
    pthread_mutex_unlock(&t->lock);
    if (p == NULL)
        return 0;
    uint64_t bytes = prev_disk_bytes(p);
    cache_gen_put(p);
    return bytes;
}

struct gen *cache_gen_find(struct cache *c, int64_t tid, uint64_t number)
{
    struct tmpl **v;
    size_t n = cache_snapshot(c, &v);
    for (size_t i = 0; i < n; i++) {
        struct tmpl *t = v[i];
        if (t->tid != tid)
            continue;
        struct gen *found = NULL;
        pthread_mutex_lock(&t->lock);
        if (t->cur != NULL && t->cur->number == number)
            found = t->cur;
        else if (t->prev != NULL && t->prev->number == number)
            found = t->prev;
        if (found != NULL)
            gen_get(found);
        pthread_mutex_unlock(&t->lock);
        return found;
    }
    return NULL;
}

/* ------------------------------------------------------------ accessors */

const char *cache_tmpl_name(const struct tmpl *t) { return t->name; }

uint32_t cache_tmpl_bs(const struct tmpl *t) { return t->bs; }

int cache_tmpl_removed(const struct tmpl *t)
{
    return __atomic_load_n(&t->removed, __ATOMIC_RELAXED);
}

struct origin *cache_tmpl_origin(const struct tmpl *t) { return t->origin; }

uint64_t cache_tmpl_quota(const struct tmpl *t)
{
    return __atomic_load_n(&t->quota, __ATOMIC_RELAXED);
}

int cache_tmpl_verify_failures(const struct tmpl *t, uint64_t *n, int max)
{
    int ns = origin_nsources(t->origin);
    ns = ns < max ? ns : max;
    ns = ns < VERIFY_MAX_SOURCES ? ns : VERIFY_MAX_SOURCES;
    for (int i = 0; i < ns; i++)
        n[i] = __atomic_load_n(&t->vfail[i], __ATOMIC_RELAXED);
    return ns;
}

void cache_tmpl_stats(const struct tmpl *t, struct tmpl_stats *out)
{
    const struct tmpl_stats *st = &t->st;
    out->hits = __atomic_load_n(&st->hits, __ATOMIC_RELAXED);
    out->misses = __atomic_load_n(&st->misses, __ATOMIC_RELAXED);
    out->origin_bytes = __atomic_load_n(&st->origin_bytes, __ATOMIC_RELAXED);
    out->origin_reads = __atomic_load_n(&st->origin_reads, __ATOMIC_RELAXED);
    out->fill_errors = __atomic_load_n(&st->fill_errors, __ATOMIC_RELAXED);
    out->evictions = __atomic_load_n(&st->evictions, __ATOMIC_RELAXED);
    out->evicted_bytes =
        __atomic_load_n(&st->evicted_bytes, __ATOMIC_RELAXED);
    for (int k = 0; k < 4; k++)
        out->evicted_class[k] =
            __atomic_load_n(&st->evicted_class[k], __ATOMIC_RELAXED);
    out->uncached = __atomic_load_n(&st->uncached, __ATOMIC_RELAXED);
    out->ra_skipped = __atomic_load_n(&st->ra_skipped, __ATOMIC_RELAXED);
    out->joined = __atomic_load_n(&st->joined, __ATOMIC_RELAXED);
    out->ra_fetched = __atomic_load_n(&st->ra_fetched, __ATOMIC_RELAXED);
    out->ra_used = __atomic_load_n(&st->ra_used, __ATOMIC_RELAXED);
    out->local_blocks = __atomic_load_n(&st->local_blocks, __ATOMIC_RELAXED);
    out->local_bytes = __atomic_load_n(&st->local_bytes, __ATOMIC_RELAXED);
    out->verified = __atomic_load_n(&st->verified, __ATOMIC_RELAXED);
    out->verify_failed =
        __atomic_load_n(&st->verify_failed, __ATOMIC_RELAXED);
    out->zero_skipped = __atomic_load_n(&st->zero_skipped, __ATOMIC_RELAXED);
    out->last_used = __atomic_load_n(&st->last_used, __ATOMIC_RELAXED);
}

void cache_gen_readahead(const struct gen *g, uint64_t *fetched,
                         uint64_t *used)
{
    *fetched = __atomic_load_n(&g->ra_fetched, __ATOMIC_RELAXED);
    *used = __atomic_load_n(&g->ra_used, __ATOMIC_RELAXED);
}

struct tmpl *cache_gen_tmpl(const struct gen *g) { return g->t; }

void cache_gen_attr(const struct gen *g, struct cache_gen_attr *a)
{
    a->ino = g->ino;
    a->number = g->number;
    a->size = g->info.size;
    a->mtime_ns = g->info.mtime_ns;
    a->bs = g->bs;
}

uint64_t cache_gen_cached_bytes(struct gen *g)
{
    pthread_mutex_lock(&g->lock);
    uint64_t cached = g->bm.present_bytes;
    pthread_mutex_unlock(&g->lock);
    return cached;
}

struct readahead *cache_readahead(struct cache *c) { return c->ra; }

const struct conf *cache_conf(struct cache *c)
{
    return __atomic_load_n(&c->conf, __ATOMIC_ACQUIRE);
}
