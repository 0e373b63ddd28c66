/* The engine's top layer: start-up (each template's generation and its
 * cached blocks), applying a configuration (templates, [directory]
 * listings, templates whose origin did not answer yet, retried in the
 * background), housekeeping, reload and shutdown.  Contract in
 * ic-engine.h; the objects and lock rules in cache-priv.h.
 *
 * Locking: cfg_lock is held by every config load but the first
 * (engine_open's runs before the engine's other threads exist), and
 * otherwise only to copy the config pins to apply (pin_jobs_take); what
 * it is held across is in cache-priv.h.  pend_lock, under it or alone,
 * only moves the pending list (a leaf); hk_lock only hands the
 * housekeeping thread its stop and pins_due flags (a leaf, released
 * across all of the thread's work). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ic-block.h"
#include "cache-priv.h"
#include "ic-engine.h"
#include "ic-conf.h"
#include "ic-fillbuf.h"
#include "ic-health.h"
#include "ic-http-check.h"
#include "ic-index.h"
#include "ic-log.h"
#include "ic-pin.h"
#include "ic-prewarm.h"
#include "ic-readahead.h"
#include "ic-stage.h"
#include "ic-store.h"
#include "ic-url.h"
#include "ic-util.h"
#include "ic-writer.h"

/* ---------------------------------------------------------------- stage */

/* How long a staged fill waits for its reader. */
#define STAGE_MAX_AGE_MS 2000

/* Bytes the stage may hold: a readahead window and the runs in flight
 * beyond it (with less, the oldest entries, the very next the reader
 * needs, were dropped and read back from disk); none unless fills bypass
 * the page cache (else the page cache serves the reader). */
static uint64_t stage_cap(const struct conf *conf)
{
    if (!cache_fills_direct(conf) || conf->readahead == 0)
        return 0;
    return conf->readahead + (uint64_t)RA_THREADS * RA_RUN_BYTES;
}

/* ------------------------------------------------------------ start-up */

struct load_ctx {
    struct gen *g;
    uint64_t loaded, bad;
};

static int load_block(void *arg, const struct index_rec *rec)
{
    struct load_ctx *lc = arg;
    struct gen *g = lc->g;
    uint32_t len = block_len(rec->blk, g->info.size, g->bs);
    if (len == 0) {
        lc->bad++;
        return 0;
    }
    uint8_t flags = (rec->flags & INDEX_BLK_ZERO) ? BLK_ZERO : 0;
    blockmap_set_present(&g->bm, rec->blk, rec->csum, flags, len);
    /* The LRU order survives a restart (as of each block's fill, what
     * the index records): eviction and the pre-warm's template order
     * start from it instead of every block being equally old. */
    g->bm.v[rec->blk].atime = rec->atime;
    uint64_t clock = __atomic_load_n(&g->t->c->clock, __ATOMIC_RELAXED);
    if (rec->atime > clock)
        __atomic_store_n(&g->t->c->clock, rec->atime, __ATOMIC_RELAXED);
    lc->loaded++;
    return 0;
}

static int origin_known(const struct index_tmpl *row, const struct tmpl *t)
{
    return strcmp(row->origin, t->location) == 0 && row->block_size == t->bs;
}

/* Choose the generation at start: the index's one when the origin still
 * matches it (or cannot be reached), else a new one. */
static int tmpl_pick_gen(struct tmpl *t, struct index *ix)
{
    struct origin_info info;
    struct index_tmpl row;
    int sr;
    if (t->start_done) {
        sr = t->start_rc;
        info = t->start_info;
        t->start_done = 0;
    } else {
        uint64_t deadline = mono_ms() + t->origin->connect_timeout_ms;
        sr = origin_stat(t->origin, &info, deadline);
    }
    int have = index_tmpl_get(ix, t->name, &row) == 0;
    int known = have && origin_known(&row, t);
    uint64_t number;

    if (sr == -ENOENT && conf_origin_is_http(t->location))
        t->gone = 1;
    if (sr < 0 && !known) {
        if (!t->quiet)
            log_warn("template %s: origin %s unavailable (%s) and nothing "
                     "cached; leaving it out until it answers", t->name,
                     t->origin->display, strerror(-sr));
        return sr;
    }
    if (sr < 0) {
        if (cache_validator_refused(t, row.validator))
            return -EPERM;
        log_warn("template %s: origin %s unavailable (%s); serving cached "
                 "blocks of generation %llu", t->name, t->origin->display,
                 strerror(-sr), (unsigned long long)row.generation);
        info.size = row.size;
        info.mtime_ns = row.mtime_ns;
        snprintf(info.validator, sizeof info.validator, "%s", row.validator);
        number = row.generation;
    } else if (cache_validator_refused(t, info.validator)) {
        return -EPERM;
    } else if (known && origin_validator_eq(row.validator, info.validator) &&
               row.size == info.size) {
        number = row.generation;
        t->last_check_ms = mono_ms();
    } else {
        number = have ? row.generation + 1 : 1;
        t->last_check_ms = mono_ms();
        if (have)
            log_info("template %s: origin changed; new generation %llu",
                     t->name, (unsigned long long)number);
    }
    if (have)
        t->tid = row.id;
    struct gen *g = cache_gen_new(t, number, &info);
    if (g == NULL)
        return -EIO;
    cache_tmpl_row(t, g, &row);
    if (index_tmpl_put(ix, &row) < 0) {
        cache_gen_put(g);
        return -EIO;
    }
    t->tid = row.id;
    pthread_mutex_lock(&t->lock);
    cache_gen_link(t, g);
    pthread_mutex_unlock(&t->lock);
    return 0;
}

/* tmpl_stats and index_counters hold the same figures, but ra_skipped
 * and joined (run-time figures of the scheduler's and the read path's:
 * not kept). */
static void stats_to_counters(struct tmpl *t, struct index_counters *c)
{
    struct tmpl_stats st;
    cache_tmpl_stats(t, &st);
    *c = (struct index_counters){.hits = st.hits, .misses = st.misses,
                                 .origin_bytes = st.origin_bytes,
                                 .origin_reads = st.origin_reads,
                                 .fill_errors = st.fill_errors,
                                 .evictions = st.evictions,
                                 .evicted_bytes = st.evicted_bytes,
                                 .uncached = st.uncached,
                                 .evicted_low = st.evicted_class[PIN_LOW],
                                 .evicted_high = st.evicted_class[PIN_HIGH],
                                 .ra_fetched = st.ra_fetched,
                                 .ra_used = st.ra_used,
                                 .local_blocks = st.local_blocks,
                                 .local_bytes = st.local_bytes,
                                 .verified = st.verified,
                                 .verify_failed = st.verify_failed,
                                 .zero_skipped = st.zero_skipped,
                                 .last_used = st.last_used};
}

/* The counters are cumulative across restarts: start from the index's. */
static void counters_load(struct tmpl *t, struct index *ix)
{
    struct index_counters c;
    if (index_counters_get(ix, t->tid, &c) < 0)
        return;
    t->st = (struct tmpl_stats){.hits = c.hits, .misses = c.misses,
                                .origin_bytes = c.origin_bytes,
                                .origin_reads = c.origin_reads,
                                .fill_errors = c.fill_errors,
                                .evictions = c.evictions,
                                .evicted_bytes = c.evicted_bytes,
                                .uncached = c.uncached,
                                .ra_fetched = c.ra_fetched,
                                .ra_used = c.ra_used,
                                .last_used = c.last_used};
    t->st.evicted_class[PIN_LOW] = c.evicted_low;
    t->st.evicted_class[PIN_HIGH] = c.evicted_high;
    t->st.local_blocks = c.local_blocks;
    t->st.local_bytes = c.local_bytes;
    t->st.verified = c.verified;
    t->st.verify_failed = c.verify_failed;
    t->st.zero_skipped = c.zero_skipped;
    t->saved = c;
}

/* Verification failures since the last save make one "verify" event per
 * source, with their count in blocks: as evictions, one row per interval,
 * not one per failed block (a mirror serving a wrong image fails every
 * block it sends).  The failures counted by vfail stay exact; a row the
 * writer did not queue is tried again at the next save. */
static void verify_events_save(struct tmpl *t)
{
    uint64_t n[VERIFY_MAX_SOURCES];
    int ns = cache_tmpl_verify_failures(t, n, VERIFY_MAX_SOURCES);

    for (int i = 0; i < ns; i++) {
        if (n[i] <= t->vfail_noted[i])
            continue;
        uint64_t d = n[i] - t->vfail_noted[i];
        if (writer_event(t->c->w, t->tid, "verify", d, d * t->bs,
                         origin_source_name(t->origin, i)) == 0)
            t->vfail_noted[i] = n[i];
    }
}

/* Queue a save of the counters if they moved since the last one. */
static void counters_save(struct tmpl *t)
{
    struct index_counters c;
    verify_events_save(t);
    stats_to_counters(t, &c);
    if (memcmp(&c, &t->saved, sizeof c) == 0)
        return;
    /* Not queued (out of memory, logged by the writer): the next save
     * tries again with the figures then. */
    if (writer_counters(t->c->w, t->tid, &c) < 0)
        return;
    /* Evictions since the last save make one event, not one per batch:
     * under a tight quota batches come by the thousand per second.  An
     * event the writer drops is only history (the counters have it). */
    if (c.evictions > t->saved.evictions)
        (void)writer_event(t->c->w, t->tid, "evict",
                           c.evictions - t->saved.evictions,
                           c.evicted_bytes - t->saved.evicted_bytes, NULL);
    t->saved = c;
}

/* A data file can hold blocks the index does not claim: the index was lost
 * or rebuilt, or a fill's row never committed before a crash.  Nothing
 * serves them, but they would count against the quota: free them. */
static void punch_unclaimed(struct gen *g)
{
    uint64_t punched = 0;
    off_t off = 0;
    while ((uint64_t)off < g->info.size) {
        off_t d = lseek(g->fd, off, SEEK_DATA);
        off_t e = d < 0 ? d : lseek(g->fd, d, SEEK_HOLE);
        if (e < 0)
            break; /* ENXIO: no data after off */
        for (uint64_t b = (uint64_t)d / g->bs;
             b < g->bm.nblocks && block_start(b, g->bs) < (uint64_t)e; b++) {
            const struct blk *k = &g->bm.v[b];
            if (k->state == BLK_PRESENT && !(k->flags & BLK_ZERO))
                continue;
            uint32_t len = block_len(b, g->info.size, g->bs);
            if (store_punch(g->fd, block_start(b, g->bs), len) == 0)
                punched += len;
        }
        off = e;
    }
    if (punched)
        log_info("template %s: freed %llu bytes of blocks the index does "
                 "not list", g->t->name, (unsigned long long)punched);
}

static int tmpl_load(struct tmpl *t, struct index *ix)
{
    struct gen *g = t->cur;
    struct load_ctx lc = {.g = g};

    index_drop_other_gens(ix, t->tid, g->number, INDEX_NO_GEN);
    store_unlink_others(t->c->conf->cache_dir, t->name, g->number);
    if (index_blocks_load(ix, t->tid, g->number, load_block, &lc) < 0)
        log_warn("template %s: cannot load cached block list; starting "
                 "empty", t->name);
    log_debug("template %s: generation %llu, %llu cached blocks", t->name,
              (unsigned long long)g->number, (unsigned long long)lc.loaded);
    punch_unclaimed(g);
    counters_load(t, ix);
    pin_load(t, ix);
    return 0;
}

/* A [directory] section's mirrors are directories too: a template's
 * mirror is the mirror directory joined with its file name. */
static int tmpl_net(struct tmpl *t, const struct conf_source *src,
                    const char *name)
{
    t->net = src->net;
    t->net.mirrors = NULL;
    t->net.nmirrors = 0;
    /* Our own copies: the config they come from is freed after reloads. */
    t->net.proxy = src->net.proxy ? strdup(src->net.proxy) : NULL;
    t->net.ca_file = src->net.ca_file ? strdup(src->net.ca_file) : NULL;
    t->net.netrc = src->net.netrc ? strdup(src->net.netrc) : NULL;
    if ((src->net.proxy && !t->net.proxy) ||
        (src->net.ca_file && !t->net.ca_file) ||
        (src->net.netrc && !t->net.netrc))
        return -ENOMEM;
    if (src->net.nmirrors == 0)
        return 0;
    t->net.mirrors = calloc(src->net.nmirrors, sizeof *t->net.mirrors);
    if (t->net.mirrors == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < src->net.nmirrors; i++) {
        const char *m = src->net.mirrors[i];
        t->net.mirrors[i] = src->kind == CONF_DIRECTORY ? url_join(m, name)
                                                        : strdup(m);
        if (t->net.mirrors[i] == NULL)
            return -ENOMEM;
        t->net.nmirrors++;
    }
    return 0;
}

static void tmpl_net_free(struct tmpl *t)
{
    for (size_t i = 0; i < t->net.nmirrors; i++)
        free(t->net.mirrors[i]);
    free(t->net.mirrors);
    free(t->net.proxy);
    free(t->net.ca_file);
    free(t->net.netrc);
}

static unsigned dir_flags(const struct conf_source *src, int quiet)
{
    return (src->follow_symlinks ? ORIGIN_FOLLOW_SYMLINKS : 0) |
           (quiet ? ORIGIN_QUIET : 0);
}

static struct tmpl *tmpl_new(struct cache *c, const struct conf_source *src,
                             const char *name, const char *location)
{
    char err[256];
    struct tmpl *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    if (tmpl_net(t, src, name) < 0) {
        tmpl_net_free(t);
        free(t);
        return NULL;
    }
    t->c = c;
    t->pin_spec = src->pin ? strdup(src->pin) : NULL;
    t->name = strdup(name);
    t->location = strdup(location);
    t->quota = src->quota;
    t->bs = src->block_size;
    t->manifest_mode = src->manifest_mode;
    if (src->manifest != NULL)
        t->manifest_loc = strdup(src->manifest);
    if (src->manifest != NULL && t->manifest_loc == NULL)
        t->manifest_mode = CONF_MANIFEST_NONE; /* out of memory */
    t->link_rule = src->kind == CONF_DIRECTORY ? 1 + src->follow_symlinks : 0;
    t->timeout_ms = src->net.origin_timeout_ms;
    /* A directory's file is opened beneath the directory (symlink rule). */
    t->origin = src->kind == CONF_DIRECTORY
                    ? origin_new_in_dir(src->origin, name, &t->net,
                                        dir_flags(src, 0), err, sizeof err)
                    : origin_new(location, &t->net, err, sizeof err);
    if (t->name == NULL || t->location == NULL || t->origin == NULL ||
        (src->pin && !t->pin_spec)) {
        if (t->origin == NULL)
            log_err("template %s: %s", name, err);
        origin_free(t->origin);
        tmpl_net_free(t);
        free(t->pin_spec);
        free(t->name);
        free(t->location);
        free(t);
        return NULL;
    }
    /* A local/NFS stat costs microseconds: check the file at every open. */
    t->revalidate_ms = conf_origin_is_http(location) ? src->net.revalidate_ms
                                                     : 0;
    pthread_mutex_init(&t->lock, NULL);
    pthread_mutex_init(&t->rec_lock, NULL);
    pthread_mutex_init(&t->cfgpin_lock, NULL);
    cond_init_mono(&t->checked);
    t->pin_seq = 1;
    return t;
}

static void tmpl_free(struct tmpl *t)
{
    if (t->prev)
        cache_gen_put(t->prev);
    if (t->cur)
        cache_gen_put(t->cur);
    free(t->manifest_loc);
    origin_free(t->origin);
    tmpl_net_free(t);
    for (int k = 0; k < PIN_NCLASS; k++) {
        free(t->pins[k]);
        for (int s = 0; s < PIN_NSRC; s++)
            free(t->src_pins[s][k]);
    }
    free(t->rec);
    free(t->trace);
    free(t->pin_spec);
    pthread_mutex_destroy(&t->lock);
    pthread_mutex_destroy(&t->rec_lock);
    pthread_mutex_destroy(&t->cfgpin_lock);
    pthread_cond_destroy(&t->checked);
    free(t->name);
    free(t->location);
    free(t);
}

/* Append a template; readers never lock (see cache_snapshot). */
static int publish(struct cache *c, struct tmpl *t)
{
    struct tmpl **v = malloc((c->nt + 1) * sizeof *v);
    if (v == NULL)
        return -ENOMEM;
    if (c->nt)
        memcpy(v, c->t, c->nt * sizeof *v);
    v[c->nt] = t;
    if (c->t != NULL && c->old_arrays_n < CACHE_OLD_ARRAYS)
        c->old_arrays[c->old_arrays_n++] = c->t;
    __atomic_store_n(&c->t, v, __ATOMIC_RELEASE);
    __atomic_store_n(&c->nt, c->nt + 1, __ATOMIC_RELEASE);
    return 0;
}

/* A template named again by a reloaded config: take its new settings. */
static void tmpl_update(struct tmpl *t, const struct conf_source *src,
                        const char *location)
{
    /* The origin object keeps its rule for symlinks: a [template] path
     * follows them, a [directory] file only as follow_symlinks said. */
    int rule = src->kind == CONF_DIRECTORY ? 1 + src->follow_symlinks : 0;
    if (strcmp(location, t->location) != 0 || src->block_size != t->bs ||
        rule != t->link_rule)
        log_warn("template %s: a new origin, block_size, section kind or "
                 "follow_symlinks takes effect at the next restart",
                 t->name);
    if (__atomic_load_n(&t->removed, __ATOMIC_RELAXED))
        log_info("template %s: back in the configuration", t->name);
    char *pin = src->pin ? strdup(src->pin) : NULL;
    if (src->pin && !pin)
        log_err("template %s: out of memory; keeping its old pin list",
                t->name);
    else {
        free(t->pin_spec);
        t->pin_spec = pin;
    }
    t->pin_seq++; /* re-resolved even when unchanged, as at start */
    __atomic_store_n(&t->quota, src->quota, __ATOMIC_RELAXED);
    __atomic_store_n(&t->timeout_ms, src->net.origin_timeout_ms,
                     __ATOMIC_RELAXED);
    /* Applies from the next change of the origin's content on. */
    __atomic_store_n(&t->net.require_strong_etag,
                     src->net.require_strong_etag, __ATOMIC_RELAXED);
    __atomic_store_n(&t->removed, 0, __ATOMIC_RELAXED);
}

/* Templates created by one config load, checked against their origins in
 * parallel before any is published. */
struct batch {
    struct tmpl **v;
    size_t n;
};

static struct tmpl *batch_find(const struct batch *b, const char *name)
{
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->v[i]->name, name) == 0)
            return b->v[i];
    return NULL;
}

static int batch_add(struct batch *b, struct tmpl *t)
{
    struct tmpl **v = realloc(b->v, (b->n + 1) * sizeof *v);
    if (v == NULL)
        return -ENOMEM;
    b->v = v;
    b->v[b->n++] = t;
    return 0;
}

static int cache_add(struct cache *c, struct batch *b,
                     const struct conf_source *src, const char *name,
                     const char *location)
{
    struct tmpl *t = cache_find_any(c, name);
    if ((t != NULL && t->epoch == c->epoch) || batch_find(b, name)) {
        log_warn("%s: template %s already defined; ignoring the one from "
                 "[%s %s]", c->conf->path, name,
                 src->kind == CONF_DIRECTORY ? "directory" : "template",
                 src->name);
        return 0;
    }
    if (t != NULL) {
        tmpl_update(t, src, location);
        t->epoch = c->epoch;
        return 0;
    }
    t = tmpl_new(c, src, name, location);
    if (t == NULL)
        return 0;
    if (batch_add(b, t) < 0) {
        tmpl_free(t);
        return -ENOMEM;
    }
    return 0;
}

/* Keep what could not be known yet (a template whose origin did not
 * answer and that nothing is cached for, or an unlistable directory) to
 * retry it in the background. */
static void pending_add(struct cache *c, struct tmpl *t,
                        const struct conf_source *dir)
{
    pthread_mutex_lock(&c->pend_lock);
    struct pending *p = realloc(c->pend, (c->npend + 1) * sizeof *p);
    if (p != NULL) {
        c->pend = p;
        c->pend[c->npend++] = (struct pending){t, dir};
        t = NULL;
    }
    pthread_mutex_unlock(&c->pend_lock);
    if (t != NULL)
        tmpl_free(t);
}

/* Whether `location` is file `name` of directory source src. */
static int in_dir(const struct conf_source *src, const char *name,
                  const char *location)
{
    char *loc = url_join(src->origin, name);
    int r = loc != NULL && strcmp(loc, location) == 0;
    free(loc);
    return r;
}

static int names_have(char **v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], name) == 0)
            return 1;
    return 0;
}

static int names_push(char ***v, size_t *n, const char *name)
{
    char **nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (nv == NULL)
        return -ENOMEM;
    *v = nv;
    if ((nv[*n] = strdup(name)) == NULL)
        return -ENOMEM;
    (*n)++;
    return 0;
}

/* The meta key under which the index keeps a directory's last listing. */
static char *listing_key(const struct conf_source *src)
{
    char *k;
    return asprintf(&k, "%s%s", INDEX_META_DIR_PREFIX, src->origin) < 0 ? NULL
                                                                        : k;
}

/* Keep what a directory listed, for the day it cannot be listed. */
static void listing_save(struct index *ix, const struct conf_source *src,
                         char **names, int n)
{
    char *key = listing_key(src), *old = NULL, *val = NULL;
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(names[i]) + 1;
    if (ix == NULL || key == NULL || (val = malloc(len)) == NULL)
        goto out;
    char *p = val;
    *p = '\0';
    for (int i = 0; i < n; i++)
        p += sprintf(p, "%s\n", names[i]);
    if (index_meta_get(ix, key, &old) == 0 && strcmp(old, val) == 0)
        goto out;
    if (index_meta_put(ix, key, val) < 0)
        log_warn("directory %s: cannot record its listing in the index",
                 src->name);
out:
    free(key);
    free(old);
    free(val);
}

/* The templates of a [directory] source known without listing it: the
 * names it listed last (kept in the index), or for an index older than
 * that record its template rows whose origin is the directory joined with
 * their name; and the running templates of that origin.  Count with *out
 * malloc'd, or -ENOMEM. */
static int known_names(struct cache *c, struct index *ix,
                       const struct conf_source *src, char ***out)
{
    char **v = NULL;
    size_t n = 0;
    char *key = listing_key(src), *last = NULL;
    int r = key == NULL ? -ENOMEM : 0;
    int have_last = r == 0 && ix != NULL &&
                    index_meta_get(ix, key, &last) == 0;
    free(key);
    for (char *s = last, *e; r == 0 && s != NULL && (e = strchr(s, '\n'));
         s = e + 1) {
        *e = '\0';
        if (conf_name_valid(s) && !names_have(v, n, s))
            r = names_push(&v, &n, s);
    }
    free(last);
    struct index_tmpl *rows = NULL;
    size_t nrows = 0;
    if (r == 0 && !have_last && ix != NULL &&
        index_tmpl_list(ix, &rows, &nrows) < 0)
        nrows = 0; /* logged; the running templates still count */
    for (size_t i = 0; r == 0 && i < nrows; i++)
        if (conf_name_valid(rows[i].name) &&
            in_dir(src, rows[i].name, rows[i].origin) &&
            !names_have(v, n, rows[i].name))
            r = names_push(&v, &n, rows[i].name);
    free(rows);
    struct tmpl **tv;
    size_t nt = cache_snapshot(c, &tv);
    for (size_t i = 0; r == 0 && i < nt; i++)
        if (!__atomic_load_n(&tv[i]->removed, __ATOMIC_RELAXED) &&
            in_dir(src, tv[i]->name, tv[i]->location) &&
            !names_have(v, n, tv[i]->name))
            r = names_push(&v, &n, tv[i]->name);
    if (r < 0) {
        for (size_t i = 0; i < n; i++)
            free(v[i]);
        free(v);
        return r;
    }
    *out = v;
    return (int)n;
}

#define RETRY_EVERY_S 30

static void warn_away(const struct conf_source *src, int listed, int known)
{
    char where[1024];
    url_mask(src->origin, where, sizeof where);
    if (listed < 0 && known > 0)
        log_warn("directory %s: cannot list %s: %s; serving the %d templates "
                 "the cache knows of it and listing it again every %d s",
                 src->name, where, strerror(-listed), known, RETRY_EVERY_S);
    else if (listed < 0)
        log_warn("directory %s: cannot list %s: %s; retrying in the "
                 "background", src->name, where, strerror(-listed));
    else if (known > 0)
        log_warn("directory %s: %s lists no files, but the cache knows %d "
                 "templates of it (a share not mounted?); serving them from "
                 "the cache and listing it again every %d s", src->name,
                 where, known, RETRY_EVERY_S);
    else
        log_info("directory %s: %s lists no files; listing it again every "
                 "%d s", src->name, where, RETRY_EVERY_S);
}

/* A directory listed again after an absence: the templates it no longer
 * names go, as at a reload (unless a [template] section names them). */
static void drop_unlisted(struct cache *c, const struct conf_source *src,
                          char **names, size_t n)
{
    struct tmpl **v;
    size_t nt = cache_snapshot(c, &v);
    for (size_t i = 0; i < nt; i++) {
        struct tmpl *t = v[i];
        if (t->epoch != c->epoch ||
            __atomic_load_n(&t->removed, __ATOMIC_RELAXED) ||
            !in_dir(src, t->name, t->location) || names_have(names, n, t->name))
            continue;
        int named = 0;
        for (size_t k = 0; k < c->conf->nsrc; k++)
            named |= c->conf->src[k].kind == CONF_TEMPLATE &&
                     strcmp(c->conf->src[k].name, t->name) == 0;
        if (named)
            continue;
        __atomic_store_n(&t->removed, 1, __ATOMIC_RELAXED);
        log_info("template %s: no longer in directory %s", t->name,
                 src->name);
    }
}

/* Add the files of a [directory] source.  A directory that cannot be
 * listed, or (a path) lists nothing, may only be away: an NFS share that
 * is down, or not mounted yet at boot (an empty mount point).  Then the
 * templates known of it stay, served from the cache, and the caller lists
 * it again later; a file removed from a directory that still lists files
 * goes.  retry: a background retry of such a directory (quiet, and the
 * templates served already are not duplicates).  0 when listed, else
 * -errno (list it again later). */
static int cache_add_dir(struct cache *c, struct index *ix, struct batch *b,
                         const struct conf_source *src, int retry)
{
    char **names;
    int listed = origin_list_dir(src->origin, &src->net, dir_flags(src, retry),
                                 &names);
    int away = listed < 0 || (listed == 0 && !conf_origin_is_http(src->origin));
    int n = listed;
    if (away) {
        if (listed == 0)
            free(names);
        n = known_names(c, ix, src, &names);
        if (n < 0)
            return n;
        if (!retry)
            warn_away(src, listed, n);
    } else {
        listing_save(ix, src, names, listed);
    }
    if (!away && retry) {
        char where[1024];
        url_mask(src->origin, where, sizeof where);
        log_info("directory %s: %s lists %d files again", src->name, where, n);
        drop_unlisted(c, src, names, (size_t)n);
    }
    int r = 0;
    for (int i = 0; i < n; i++) {
        char *loc = url_join(src->origin, names[i]);
        struct tmpl *t = retry ? batch_find(b, names[i]) : NULL;
        if (retry && t == NULL) {
            t = cache_find_any(c, names[i]);
            if (t != NULL && (t->epoch != c->epoch ||
                              __atomic_load_n(&t->removed, __ATOMIC_RELAXED)))
                t = NULL;
        }
        if (r == 0 && loc != NULL && t == NULL)
            r = cache_add(c, b, src, names[i], loc);
        free(loc);
        free(names[i]);
    }
    free(names);
    if (r < 0)
        return r;
    return !away ? 0 : listed < 0 ? listed : -ENOENT;
}

/* ---------------------------------------------- parallel origin checks */

#define CHECK_THREADS 16

struct checker {
    struct batch *b;      /* fixed; each template's start_* is written by
                             the one checker that took it */
    size_t next;
    pthread_mutex_t lock; /* protects next; a leaf */
};

static void *check_main(void *arg)
{
    struct checker *ck = arg;
    for (;;) {
        pthread_mutex_lock(&ck->lock);
        size_t i = ck->next++;
        pthread_mutex_unlock(&ck->lock);
        if (i >= ck->b->n)
            return NULL;
        struct tmpl *t = ck->b->v[i];
        uint64_t deadline = mono_ms() + t->origin->connect_timeout_ms;
        t->start_rc = origin_stat(t->origin, &t->start_info, deadline);
        t->start_done = 1;
    }
}

/* Stat every new template's origin, up to CHECK_THREADS at a time: with
 * unreachable origins, a mount of many templates still starts within
 * about one connect_timeout. */
static void check_all(struct batch *b)
{
    struct checker ck = {.b = b};
    pthread_t th[CHECK_THREADS];
    size_t nt = 0;
    pthread_mutex_init(&ck.lock, NULL);
    for (; nt < CHECK_THREADS && nt < b->n; nt++)
        if (pthread_create(&th[nt], NULL, check_main, &ck) != 0)
            break;
    if (nt == 0)
        check_main(&ck);
    for (size_t i = 0; i < nt; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&ck.lock);
}

/* Pick generations, load and publish a batch; templates whose origin did
 * not answer and that nothing is cached for wait in the pending list. */
static int batch_commit(struct cache *c, struct index *ix, struct batch *b)
{
    int r = 0;
    check_all(b);
    for (size_t i = 0; i < b->n; i++) {
        struct tmpl *t = b->v[i];
        if (r < 0) {
            tmpl_free(t);
            continue;
        }
        if (tmpl_pick_gen(t, ix) < 0) {
            pending_add(c, t, NULL);
            continue;
        }
        tmpl_load(t, ix);
        t->epoch = c->epoch;
        if (publish(c, t) < 0) {
            tmpl_free(t);
            r = -ENOMEM;
        }
    }
    free(b->v);
    b->v = NULL;
    b->n = 0;
    return r;
}

static int add_sources(struct cache *c, struct index *ix,
                       const struct conf *conf)
{
    struct batch b = {0};
    int r = 0;
    for (size_t i = 0; r == 0 && i < conf->nsrc; i++) {
        const struct conf_source *s = &conf->src[i];
        if (s->kind != CONF_DIRECTORY)
            r = cache_add(c, &b, s, s->name, s->origin);
        else if (cache_add_dir(c, ix, &b, s, 0) < 0)
            pending_add(c, NULL, s);
    }
    if (r < 0) {
        for (size_t i = 0; i < b.n; i++)
            tmpl_free(b.v[i]);
        free(b.v);
        return r;
    }
    return batch_commit(c, ix, &b);
}

/* ------------------------------------------------------------ retries */

/* Take the pending list (to retry it without holding the lock). */
static size_t pending_take(struct cache *c, struct pending **out)
{
    pthread_mutex_lock(&c->pend_lock);
    *out = c->pend;
    size_t n = c->npend;
    c->pend = NULL;
    c->npend = 0;
    pthread_mutex_unlock(&c->pend_lock);
    return n;
}

static void pending_free_all(struct cache *c)
{
    struct pending *p;
    size_t n = pending_take(c, &p);
    for (size_t i = 0; i < n; i++)
        if (p[i].t)
            tmpl_free(p[i].t);
    free(p);
}

/* Retry what was left out (called from housekeeping and never at the same
 * time as a reload: both hold c->cfg_lock). */
static size_t retry_pending(struct cache *c)
{
    struct pending *p;
    struct batch b = {0};
    struct index *ix;
    size_t n = pending_take(c, &p);
    if (n == 0)
        return c->nt;
    if (index_reopen(c->conf->cache_dir, &ix) < 0) {
        for (size_t i = 0; i < n; i++)
            pending_add(c, p[i].t, p[i].dir);
        free(p);
        return c->nt;
    }
    /* Templates first: a directory listed meanwhile names them too. */
    for (size_t i = 0; i < n; i++) {
        if (p[i].t) {
            p[i].t->quiet = 1;
            if (batch_add(&b, p[i].t) < 0)
                tmpl_free(p[i].t);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!p[i].t && cache_add_dir(c, ix, &b, p[i].dir, 1) < 0)
            pending_add(c, NULL, p[i].dir);
    free(p);
    size_t before = c->nt;
    batch_commit(c, ix, &b);
    index_close(ix);
    struct tmpl **v;
    size_t now = cache_snapshot(c, &v);
    for (size_t i = before; i < now; i++)
        log_info("template %s: origin answered; now served", v[i]->name);
    return before; /* their config pins are the caller's to apply */
}

/* Another user who can write into the cache could plant blocks that we
 * would serve to VMs: refuse such a directory rather than trust it. */
static int dir_safe(const char *dir)
{
    struct stat st;
    if (lstat(dir, &st) < 0) {
        log_err("cache directory %s: %s", dir, strerror(errno));
        return -errno;
    }
    if (S_ISLNK(st.st_mode)) {
        log_err("cache directory %s is a symbolic link; give the real path "
                "(a link could be changed to point elsewhere)", dir);
        return -ELOOP;
    }
    if (!S_ISDIR(st.st_mode)) {
        log_err("cache directory %s is not a directory", dir);
        return -ENOTDIR;
    }
    if (st.st_uid != geteuid()) {
        log_err("cache directory %s is owned by uid %u, not by us (uid %u); "
                "refusing it", dir, (unsigned)st.st_uid, (unsigned)geteuid());
        return -EPERM;
    }
    if (st.st_mode & 022) {
        log_err("cache directory %s is group/world-writable (mode %04o); "
                "run chmod go-w on it", dir, (unsigned)(st.st_mode & 07777));
        return -EPERM;
    }
    return 0;
}

/* Check cache_dir before creating anything inside it: data/ made through
 * a planted symlink would already be in another user's hands. */
static int cache_dir_check(const char *dir)
{
    char data[PATH_MAX];
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        log_err("cannot create cache directory %s: %s", dir, strerror(errno));
        return -errno;
    }
    int r = dir_safe(dir);
    if (r < 0)
        return r;
    r = store_init(dir);
    if (r < 0) {
        log_err("cannot create %s/data: %s", dir, strerror(-r));
        return r;
    }
    snprintf(data, sizeof data, "%s/data", dir);
    return dir_safe(data);
}

int engine_open(struct conf *conf, struct cache **out)
{
    struct cache *c = calloc(1, sizeof *c);
    int r;
    if (c == NULL)
        return -ENOMEM;
    c->conf = conf;
    c->first_conf = conf;
    pthread_mutex_init(&c->cfg_lock, NULL);
    pthread_mutex_init(&c->pend_lock, NULL);
    r = cache_dir_check(conf->cache_dir);
    pthread_mutex_init(&c->lookup_lock, NULL);
    if (r == 0)
        r = index_open(conf->cache_dir, &c->ix);
    /* Delta fills look hashes up on their own connection (the writer
     * owns the first one); without it they only fetch. */
    if (r == 0 && index_reopen(conf->cache_dir, &c->lookup_ix) < 0) {
        log_warn("index: no second connection for delta fills' lookups; "
                 "blocks are fetched instead of copied");
        c->lookup_ix = NULL;
    }
    /* A lookup runs on the fill path: an index locked by someone else
     * (a backup, an sqlite3 shell) means fetch, not wait 5 s per block. */
    if (c->lookup_ix != NULL)
        index_retry_busy(c->lookup_ix, 20);
    c->epoch = 1;
    if (r == 0)
        r = add_sources(c, c->ix, conf);
    if (r == 0)
        r = writer_start(c->ix, &c->w);
    if (r == 0)
        r = ra_start(RA_THREADS, &c->ra);
    if (r == 0 && (c->stage = stage_new(stage_cap(conf), fillbuf_put)) == NULL)
        r = -ENOMEM;
    if (r < 0) {
        engine_close(c);
        return r;
    }
    *out = c;
    return 0;
}

/* ---------------------------------------------------------- config pins */

/* A template's config pins to apply, copied under cfg_lock and applied by
 * the housekeeping thread after it is released: resolving them may read
 * the origin for up to origin_timeout per read, and neither a reload nor
 * the next one may wait for that. */
struct pin_job {
    struct tmpl *t;
    char *spec;
    uint64_t seq;
};

/* The jobs for every configured template (cfg_lock held).  A template
 * left out for lack of memory keeps its pins until the next reload
 * (logged). */
static size_t pin_jobs_take(struct cache *c, struct pin_job **out)
{
    struct tmpl **v;
    size_t n = cache_snapshot(c, &v), k = 0;
    *out = NULL;
    if (n == 0)
        return 0;
    struct pin_job *j = calloc(n, sizeof *j);
    if (j == NULL) {
        log_err("out of memory: config pins are not applied now");
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (__atomic_load_n(&v[i]->removed, __ATOMIC_RELAXED))
            continue;
        char *spec = v[i]->pin_spec ? strdup(v[i]->pin_spec) : NULL;
        if (v[i]->pin_spec && !spec) {
            log_err("template %s: out of memory; its config pins are not "
                    "applied now", v[i]->name);
            continue;
        }
        j[k++] = (struct pin_job){v[i], spec, v[i]->pin_seq};
    }
    *out = j;
    return k;
}

static int hk_stopping(struct cache *c)
{
    if (!c->hk_running)
        return 0;
    pthread_mutex_lock(&c->hk_lock);
    int stop = c->hk_stop;
    pthread_mutex_unlock(&c->hk_lock);
    return stop;
}

/* Apply the jobs in order; stops early when the engine is stopping (a
 * shutdown then waits for one resolution at most, not for all). */
static void pin_jobs_run(struct cache *c, struct pin_job *j, size_t n)
{
    size_t applied = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        int r = hk_stopping(c) ? 0 : prewarm_config(j[i].t, j[i].spec,
                                                    j[i].seq);
        applied += r > 0;
        failed += r < 0;
        free(j[i].spec);
    }
    free(j);
    /* What an operator waits for after a SIGHUP: the new pins in place. */
    if (applied || failed)
        log_info("config pins applied: %zu templates%s", applied,
                 failed ? " (some failed, see above)" : "");
}

#define HK_INTERVAL_S 2

/* Apply the config pins of every template whose pin = changed (or was
 * never applied); templates whose pins are current cost nothing. */
static void apply_config_pins(struct cache *c)
{
    struct pin_job *jobs;
    pthread_mutex_lock(&c->cfg_lock);
    size_t njobs = pin_jobs_take(c, &jobs);
    pthread_mutex_unlock(&c->cfg_lock);
    pin_jobs_run(c, jobs, njobs);
}

/* The pins may have changed: have the warmer fetch what is missing
 * (hk_lock held). */
static void warm_due_locked(struct cache *c)
{
    if (!c->warm_running)
        return;
    c->warm_due = 1;
    pthread_cond_signal(&c->warm_wake);
}

#define WARM_PARALLEL 2

/* The background pre-warm: a pass over every template's pins after the
 * config pins were applied (start-up, reloads, pending templates
 * published), in class order (prewarm_pending).  Its own thread: a pass
 * can take as long as the origin needs, and housekeeping must go on. */
static void *warmer(void *arg)
{
    struct cache *c = arg;
    pthread_mutex_lock(&c->hk_lock);
    while (!c->hk_stop) {
        if (!c->warm_due) {
            pthread_cond_wait(&c->warm_wake, &c->hk_lock);
            continue;
        }
        c->warm_due = 0;
        pthread_mutex_unlock(&c->hk_lock);
        /* The config of now: a reload may have turned it on or off. */
        uint64_t failed =
            cache_conf(c)->prewarm
                ? prewarm_pending(c, WARM_PARALLEL, &c->hk_stop)
                : 0;
        if (failed)
            log_warn("pre-warm: %llu bytes of pinned blocks could not be "
                     "fetched; tried again after the next reload",
                     (unsigned long long)failed);
        pthread_mutex_lock(&c->hk_lock);
    }
    pthread_mutex_unlock(&c->hk_lock);
    return NULL;
}

/* Ask housekeeping to apply the config pins (any thread). */
static void config_pins_due(struct cache *c)
{
    pthread_mutex_lock(&c->hk_lock);
    c->pins_due = 1;
    pthread_cond_signal(&c->hk_wake);
    pthread_mutex_unlock(&c->hk_lock);
}

static void *housekeeping(void *arg)
{
    struct cache *c = arg;
    struct tmpl **v;
    size_t n;
    unsigned ticks = 0;
    /* A fixed period, whatever wakes us in between (pins due). */
    uint64_t next_ms = mono_ms() + HK_INTERVAL_S * 1000;
    pthread_mutex_lock(&c->hk_lock);
    while (!c->hk_stop) {
        if (c->pins_due) {
            /* The first time: once mounted (qcow2-metadata reads through
             * the cache); then after each reload. */
            c->pins_due = 0;
            pthread_mutex_unlock(&c->hk_lock);
            apply_config_pins(c);
            pthread_mutex_lock(&c->hk_lock);
            warm_due_locked(c);
            continue;
        }
        if (mono_ms() < next_ms) {
            struct timespec ts = ms_timespec(next_ms);
            pthread_cond_timedwait(&c->hk_wake, &c->hk_lock, &ts);
            continue; /* stop, pins due, or time */
        }
        next_ms = mono_ms() + HK_INTERVAL_S * 1000;
        pthread_mutex_unlock(&c->hk_lock);
        n = cache_snapshot(c, &v);
        for (size_t i = 0; i < n; i++)
            counters_save(v[i]);
        /* Bursts of reads leave staged fills, idle buffers and freed
         * memory in malloc's arenas: give them back, so RSS follows the
         * load rather than its peak. */
        stage_age(c->stage, mono_ms(), STAGE_MAX_AGE_MS);
        fillbuf_trim(mono_ms(), STAGE_MAX_AGE_MS);
        malloc_trim(0);
        if (++ticks % (RETRY_EVERY_S / HK_INTERVAL_S) == 0) {
            pthread_mutex_lock(&c->cfg_lock);
            size_t before = retry_pending(c);
            pthread_mutex_unlock(&c->cfg_lock);
            if (before < cache_snapshot(c, &v)) {
                apply_config_pins(c); /* the templates it published */
                pthread_mutex_lock(&c->hk_lock);
                warm_due_locked(c);
                pthread_mutex_unlock(&c->hk_lock);
            }
        }
        pthread_mutex_lock(&c->hk_lock);
    }
    pthread_mutex_unlock(&c->hk_lock);
    return NULL;
}

static void stop_warmer(struct cache *c);

int engine_start_housekeeping(struct cache *c)
{
    cond_init_mono(&c->hk_wake);
    pthread_mutex_init(&c->hk_lock, NULL);
    c->pins_due = 1;
    cond_init_mono(&c->warm_wake);
    /* Started whatever prewarm says: a reload may turn it on. */
    if (pthread_create(&c->warmer, NULL, warmer, c) == 0)
        c->warm_running = 1;
    else
        log_warn("cannot start the pre-warm thread; pins are fetched only "
                 "when asked (imgcache-pin)");
    int e = pthread_create(&c->hk, NULL, housekeeping, c);
    if (e != 0) {
        stop_warmer(c);
        return -e;
    }
    c->hk_running = 1;
    return 0;
}

static void stop_warmer(struct cache *c)
{
    if (!c->warm_running)
        return;
    pthread_mutex_lock(&c->hk_lock);
    __atomic_store_n(&c->hk_stop, 1, __ATOMIC_RELAXED);
    pthread_cond_signal(&c->warm_wake);
    pthread_mutex_unlock(&c->hk_lock);
    /* A pass stops between chunks: this waits for the reads in flight,
     * each bounded by origin_timeout. */
    pthread_join(c->warmer, NULL);
    c->warm_running = 0;
}

static void stop_housekeeping(struct cache *c)
{
    stop_warmer(c);
    if (!c->hk_running)
        return;
    pthread_mutex_lock(&c->hk_lock);
    __atomic_store_n(&c->hk_stop, 1, __ATOMIC_RELAXED);
    pthread_cond_signal(&c->hk_wake);
    pthread_mutex_unlock(&c->hk_lock);
    pthread_join(c->hk, NULL);
    c->hk_running = 0;
}

void engine_flush_and_exit(struct cache *c, int status)
{
    stop_housekeeping(c);
    struct tmpl **v;
    size_t n = cache_snapshot(c, &v);
    for (size_t i = 0; i < n; i++)
        counters_save(v[i]);
    writer_flush(c->w);
    _exit(status);
}

void engine_close(struct cache *c)
{
    if (c == NULL)
        return;
    stop_housekeeping(c);
    health_stop(); /* its probes use origins freed below */
    pending_free_all(c);
    ra_stop(c->ra);
    c->ra = NULL;
    for (size_t i = 0; c->w != NULL && i < c->nt; i++)
        counters_save(c->t[i]);
    if (c->w != NULL)
        writer_stop(c->w);
    c->w = NULL;
    for (size_t i = 0; i < c->nt; i++)
        tmpl_free(c->t[i]);
    free(c->t);
    for (size_t i = 0; i < c->old_arrays_n; i++)
        free(c->old_arrays[i]);
    /* The first config belongs to the caller; reloaded ones are ours. */
    for (size_t i = 0; i < c->old_confs_n; i++)
        if (c->old_confs[i].conf != c->first_conf)
            conf_free(c->old_confs[i].conf);
    free(c->old_confs);
    if (c->conf != c->first_conf)
        conf_free(c->conf);
    if (c->lookup_ix)
        index_close(c->lookup_ix);
    if (c->ix)
        index_close(c->ix);
    stage_free(c->stage);
    free(c);
}

/* ------------------------------------------------------------ reload */

static void mark_removed(struct cache *c)
{
    struct tmpl **v;
    size_t n = cache_snapshot(c, &v);
    for (size_t i = 0; i < n; i++) {
        if (v[i]->epoch == c->epoch ||
            __atomic_load_n(&v[i]->removed, __ATOMIC_RELAXED))
            continue;
        /* Kept in memory: open handles still read through it. */
        __atomic_store_n(&v[i]->removed, 1, __ATOMIC_RELAXED);
        log_info("template %s: removed from the configuration", v[i]->name);
    }
}

static int reload_locked(struct cache *c, const char *path, int *applied);

/* Threads read c->conf without a reference (a few scalars, at once): a
 * replaced config is freed only after a grace period far longer than any
 * such use.  Templates hold copies of what they need from it. */
#define CONF_GRACE_MS (10 * 60 * 1000)

static void retire_conf(struct cache *c, struct conf *old)
{
    uint64_t now = mono_ms();
    size_t k = 0;
    for (size_t i = 0; i < c->old_confs_n; i++) {
        struct old_conf *o = &c->old_confs[i];
        if (o->conf != c->first_conf && now - o->retired_ms > CONF_GRACE_MS)
            conf_free(o->conf);
        else
            c->old_confs[k++] = *o;
    }
    c->old_confs_n = k;
    struct old_conf *v = c->old_confs;
    if (k == c->old_confs_cap) {
        size_t cap = k ? 2 * k : 8;
        v = realloc(c->old_confs, cap * sizeof *v);
        if (v == NULL) {
            log_warn("reload: out of memory; the old configuration leaks");
            return;
        }
        c->old_confs = v;
        c->old_confs_cap = cap;
    }
    v[c->old_confs_n++] = (struct old_conf){old, now};
}

int engine_reload(struct cache *c, const char *path)
{
    int applied = 0;
    pthread_mutex_lock(&c->cfg_lock);
    int r = reload_locked(c, path, &applied);
    pthread_mutex_unlock(&c->cfg_lock);
    if (applied && c->hk_running)
        config_pins_due(c);
    else if (applied) /* no housekeeping thread: apply them here */
        apply_config_pins(c);
    return r;
}

static int reload_locked(struct cache *c, const char *path, int *applied)
{
    struct conf *nc;
    struct index *ix;
    char err[1024];

    if (conf_load(path, &nc, err, sizeof err) < 0) {
        log_err("reload: %s; keeping the running configuration", err);
        return -EINVAL;
    }
    if (strcmp(nc->cache_dir, c->conf->cache_dir) != 0)
        log_warn("reload: cache_dir changes take effect at the next restart");
    if (nc->kernel_readahead != c->conf->kernel_readahead) {
        log_warn("reload: kernel_readahead changes take effect at the next "
                 "mount");
        nc->kernel_readahead = c->conf->kernel_readahead; /* the mount's */
    }
    int r = index_reopen(c->conf->cache_dir, &ix);
    if (r < 0) {
        log_err("reload: cannot apply %s now; keeping the running "
                "configuration", path);
        conf_free(nc);
        return r;
    }
    free(nc->cache_dir);
    nc->cache_dir = strdup(c->conf->cache_dir);
    pending_free_all(c); /* re-added below if still configured */
    c->epoch++;
    r = add_sources(c, ix, nc);
    index_close(ix);
    mark_removed(c);
    retire_conf(c, c->conf);
    __atomic_store_n(&c->conf, nc, __ATOMIC_RELEASE);
    stage_set_cap(c->stage, stage_cap(nc));
    struct tmpl **v;
    log_info("reloaded %s: %zu templates", path, cache_snapshot(c, &v));
    *applied = 1;
    return r;
}
