/* Pins: pinned range sets, quota check, pre-warming, recording. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic-block.h"
#include "ic-cache.h"
#include "ic-conf.h"
#include "ic-index.h"
#include "ic-log.h"
#include "ic-pin.h"
#include "ic-qcow2.h"
#include "ic-writer.h"

/* ------------------------------------------------------- range sets */

/* Block interval [*b0, *b1) touched by a range, clipped to the file. */
static int range_blocks(const struct byte_range *r, uint64_t size,
                        uint32_t bs, uint64_t *b0, uint64_t *b1)
{
    uint64_t end = r->off + r->len < r->off ? UINT64_MAX : r->off + r->len;
    if (end > size)
        end = size;
    if (r->off >= end)
        return 0;
    *b0 = r->off / bs;
    *b1 = block_count(end, bs);
    return 1;
}

/* Bytes of the distinct blocks a normalized set covers. */
static uint64_t set_bytes(const struct byte_range *r, size_t n, uint64_t size,
                          uint32_t bs)
{
    uint64_t bytes = 0, last_end = 0, b0, b1;
    for (size_t i = 0; i < n; i++) {
        if (!range_blocks(&r[i], size, bs, &b0, &b1))
            continue;
        if (b0 < last_end)
            b0 = last_end; /* the block shared with the previous range */
        for (; b0 < b1; b0++)
            bytes += block_len(b0, size, bs);
        last_end = b1 > last_end ? b1 : last_end;
    }
    return bytes;
}

static int set_union(const struct byte_range *a, size_t na,
                     const struct byte_range *b, size_t nb,
                     struct byte_range **out, size_t *n)
{
    struct byte_range *v = malloc((na + nb + 1) * sizeof *v);
    if (v == NULL)
        return -ENOMEM;
    if (na) /* an empty set may be NULL: memcpy must not see it */
        memcpy(v, a, na * sizeof *v);
    if (nb)
        memcpy(v + na, b, nb * sizeof *v);
    *n = na + nb;
    ranges_normalize(v, n);
    *out = v;
    return 0;
}

/* a minus b; both normalized.  A range can split in two, hence 2*na+nb. */
static int set_subtract(const struct byte_range *a, size_t na,
                        const struct byte_range *b, size_t nb,
                        struct byte_range **out, size_t *n)
{
    struct byte_range *v = malloc((2 * na + nb + 1) * sizeof *v);
    size_t k = 0, j = 0;
    if (v == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < na; i++) {
        uint64_t s = a[i].off, e = a[i].off + a[i].len;
        while (j < nb && b[j].off + b[j].len <= s)
            j++;
        for (size_t m = j; m < nb && b[m].off < e && s < e; m++) {
            if (b[m].off > s)
                v[k++] = (struct byte_range){s, b[m].off - s};
            uint64_t be = b[m].off + b[m].len;
            s = be > s ? be : s;
        }
        if (s < e)
            v[k++] = (struct byte_range){s, e - s};
    }
    *out = v;
    *n = k;
    return 0;
}

/* ------------------------------------------------------ marking */

void pin_mark_gen(struct tmpl *t, struct gen *g)
{
    uint64_t b0, b1;
    pthread_mutex_lock(&g->lock);
    /* Read before writing: a store to every entry would make the whole
     * table of a huge sparse template resident (its calloc'd pages cost
     * nothing until written). */
    for (uint64_t i = 0; i < g->bm.nblocks; i++)
        if (g->bm.v[i].flags & BLK_PINNED)
            g->bm.v[i].flags &= (uint8_t)~BLK_PINNED;
    for (size_t i = 0; i < t->npins; i++)
        if (range_blocks(&t->pins[i], g->info.size, g->bs, &b0, &b1))
            for (; b0 < b1; b0++)
                g->bm.v[b0].flags |= BLK_PINNED;
    pthread_mutex_unlock(&g->lock);
}

/* Install a new pin set (t->lock held); takes ownership of v. */
static void set_install(struct tmpl *t, struct byte_range *v, size_t n)
{
    free(t->pins);
    t->pins = v;
    t->npins = n;
    t->pinned_bytes = set_bytes(v, n, t->cur->info.size, t->bs);
    pin_mark_gen(t, t->cur);
}

void pin_retarget(struct tmpl *t)
{
    t->pinned_bytes = set_bytes(t->pins, t->npins, t->cur->info.size, t->bs);
    pin_mark_gen(t, t->cur);
}

void pin_load(struct tmpl *t, struct index *ix)
{
    struct byte_range *v;
    size_t n;
    if (index_pins_load(ix, t->tid, &v, &n) < 0) {
        log_err("template %s: cannot load its pins from the index", t->name);
        return;
    }
    ranges_normalize(v, &n);
    pthread_mutex_lock(&t->lock);
    set_install(t, v, n);
    pthread_mutex_unlock(&t->lock);
}

static uint64_t ranges_bytes(const struct byte_range *r, size_t n)
{
    uint64_t b = 0;
    for (size_t i = 0; i < n; i++)
        b += r[i].len;
    return b;
}

int pin_change(struct tmpl *t, const struct byte_range *r, size_t n,
               int unpin, char *err, size_t errlen)
{
    struct byte_range *v;
    size_t nv;

    pthread_mutex_lock(&t->lock);
    int rc = unpin ? set_subtract(t->pins, t->npins, r, n, &v, &nv)
                   : set_union(t->pins, t->npins, r, n, &v, &nv);
    if (rc < 0) {
        pthread_mutex_unlock(&t->lock);
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    uint64_t after = set_bytes(v, nv, t->cur->info.size, t->bs);
    if (!unpin && t->quota != 0 && after > t->quota) {
        snprintf(err, errlen,
                 "pin of template %s refused: asks %llu bytes, %llu already "
                 "pinned, quota %llu", t->name,
                 (unsigned long long)ranges_bytes(r, n),
                 (unsigned long long)t->pinned_bytes,
                 (unsigned long long)t->quota);
        pthread_mutex_unlock(&t->lock);
        free(v);
        return -EDQUOT;
    }
    set_install(t, v, nv);
    rc = writer_pins(t->c->w, t->tid, v, nv);
    pthread_mutex_unlock(&t->lock);
    if (rc < 0)
        snprintf(err, errlen, "out of memory");
    return rc;
}

uint64_t pin_bytes(struct tmpl *t)
{
    pthread_mutex_lock(&t->lock);
    uint64_t b = t->pinned_bytes;
    pthread_mutex_unlock(&t->lock);
    return b;
}

/* Bytes of present blocks in [b0, b1) (g->lock held). */
static uint64_t present_in(struct gen *g, uint64_t b0, uint64_t b1)
{
    uint64_t p = 0;
    for (; b0 < b1; b0++)
        if (g->bm.v[b0].state == BLK_PRESENT)
            p += block_len(b0, g->info.size, g->bs);
    return p;
}

int pin_list(struct tmpl *t, struct pin_status **out, size_t *n)
{
    pthread_mutex_lock(&t->lock);
    struct gen *g = t->cur;
    struct pin_status *v = calloc(t->npins + 1, sizeof *v);
    if (v == NULL) {
        pthread_mutex_unlock(&t->lock);
        return -ENOMEM;
    }
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < t->npins; i++) {
        uint64_t b0, b1;
        v[i].off = t->pins[i].off;
        v[i].len = t->pins[i].len;
        if (!range_blocks(&t->pins[i], g->info.size, g->bs, &b0, &b1))
            continue;
        v[i].bytes = set_bytes(&t->pins[i], 1, g->info.size, g->bs);
        v[i].present = present_in(g, b0, b1);
    }
    pthread_mutex_unlock(&g->lock);
    *n = t->npins;
    pthread_mutex_unlock(&t->lock);
    *out = v;
    return 0;
}

/* ------------------------------------------------------ resolving */

static int qcow2_rd(void *ctx, void *buf, uint64_t off, size_t len)
{
    ssize_t r = cache_read(ctx, buf, off, len);
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

static int resolve_item(struct tmpl *t, const struct pin_item *it,
                        struct byte_range **acc, size_t *nacc, char *err,
                        size_t errlen)
{
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
    r = set_union(*acc, *nacc, v ? v : &one, n, &u, &nu);
    free(v);
    if (r < 0)
        return r;
    free(*acc);
    *acc = u;
    *nacc = nu;
    return 0;
}

int pin_resolve(struct tmpl *t, const char *spec, struct byte_range **out,
                size_t *n, char *err, size_t errlen)
{
    struct pin_item *items;
    size_t ni;
    *out = NULL;
    *n = 0;
    if (pinspec_parse(spec, &items, &ni, err, errlen) < 0)
        return -EINVAL;
    int r = 0;
    for (size_t i = 0; i < ni && r == 0; i++)
        r = resolve_item(t, &items[i], out, n, err, errlen);
    pinspec_free(items, ni);
    if (r < 0) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return r;
}

/* The config's pins are the config's: ranges it named before (in this
 * run) and names no more are unpinned, so editing "pin =" and reloading
 * does what it says.  Called with cfg_lock held. */
void pin_config(struct tmpl *t)
{
    struct byte_range *r = NULL, *gone = NULL;
    size_t n = 0, ngone = 0;
    char err[512];
    if (t->pin_spec != NULL &&
        pin_resolve(t, t->pin_spec, &r, &n, err, sizeof err) < 0) {
        log_err("%s: [%s] pin: %s", t->c->conf->path, t->name, err);
        return; /* keep the pins we have rather than guess */
    }
    if (t->cfg_pins != NULL &&
        set_subtract(t->cfg_pins, t->ncfg_pins, r, n, &gone, &ngone) == 0 &&
        ngone > 0 && pin_change(t, gone, ngone, 1, err, sizeof err) < 0)
        log_err("[%s] unpinning ranges no longer in pin =: %s", t->name, err);
    free(gone);
    if (n > 0 && pin_change(t, r, n, 0, err, sizeof err) < 0)
        log_err("%s: [%s] pin: %s", t->c->conf->path, t->name, err);
    free(t->cfg_pins);
    t->cfg_pins = r;
    t->ncfg_pins = n;
}

/* ------------------------------------------------------ warming */

#define WARM_CHUNK (1u << 20)

struct warm {
    struct tmpl *t;
    struct gen *g;
    struct byte_range *chunks;
    size_t nchunks, next;
    uint64_t done, total;
    pthread_mutex_t lock; /* protects next, done, progress calls */
    pin_progress_fn progress;
    void *ctx;
};

/* Cut the pin set into block-aligned chunks of at most WARM_CHUNK. */
static int warm_chunks(struct warm *w)
{
    struct tmpl *t = w->t;
    uint64_t size = w->g->info.size, bs = w->g->bs, b0, b1;
    size_t cap = 0;
    for (size_t i = 0; i < t->npins; i++) {
        if (!range_blocks(&t->pins[i], size, (uint32_t)bs, &b0, &b1))
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
        if (i >= w->nchunks)
            break;
        /* A failure leaves the blocks missing; the final count says so. */
        (void)cache_read(w->g, buf, w->chunks[i].off, w->chunks[i].len);
        pthread_mutex_lock(&w->lock);
        w->done += w->chunks[i].len;
        if (w->progress)
            w->progress(w->ctx, w->done, w->total);
        pthread_mutex_unlock(&w->lock);
    }
    free(buf);
    return NULL;
}

/* Bytes of the blocks of one chunk that are pinned and not present.  Only
 * this warm's chunks count: a pin added meanwhile by someone else is that
 * caller's to fetch. */
static uint64_t chunk_missing(struct gen *g, const struct byte_range *c)
{
    uint64_t missing = 0;
    pthread_mutex_lock(&g->lock);
    for (uint64_t i = c->off / g->bs; i < g->bm.nblocks &&
                                      block_start(i, g->bs) < c->off + c->len;
         i++)
        if ((g->bm.v[i].flags & BLK_PINNED) &&
            g->bm.v[i].state != BLK_PRESENT)
            missing += block_len(i, g->info.size, g->bs);
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
    for (size_t i = 0; i < w->nchunks; i++) {
        if (chunk_missing(w->g, &w->chunks[i]) == 0)
            continue;
        if (buf == NULL && (buf = malloc(WARM_CHUNK)) == NULL)
            return chunk_missing(w->g, &w->chunks[i]);
        (void)cache_read(w->g, buf, w->chunks[i].off, w->chunks[i].len);
        missing += chunk_missing(w->g, &w->chunks[i]);
    }
    free(buf);
    return missing;
}

int pin_warm(struct tmpl *t, unsigned parallel, pin_progress_fn progress,
             void *ctx, uint64_t *failed)
{
    struct warm w = {.t = t, .progress = progress, .ctx = ctx};
    pthread_t th[16];
    int r = cache_gen_open(t, 0, &w.g);
    if (r < 0)
        return r;
    pthread_mutex_init(&w.lock, NULL);
    pthread_mutex_lock(&t->lock);
    r = warm_chunks(&w);
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
    cache_gen_put(w.g);
    free(w.chunks);
    pthread_mutex_destroy(&w.lock);
    if (r < 0)
        return r;
    return *failed ? -EIO : 0;
}

/* ------------------------------------------------------ recording */

int pin_record_begin(struct tmpl *t)
{
    pthread_mutex_lock(&t->rec_lock);
    int busy = t->recording;
    if (!busy) {
        t->nrec = 0;
        __atomic_store_n(&t->recording, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&t->rec_lock);
    return busy ? -EBUSY : 0;
}

int pin_record_end(struct tmpl *t, struct byte_range **out, size_t *n)
{
    pthread_mutex_lock(&t->rec_lock);
    __atomic_store_n(&t->recording, 0, __ATOMIC_RELEASE);
    *out = t->rec;
    *n = t->nrec;
    t->rec = NULL;
    t->nrec = t->rec_cap = 0;
    pthread_mutex_unlock(&t->rec_lock);
    if (*out)
        ranges_normalize(*out, n);
    return 0;
}

/* Adjacent sequential reads are merged on the fly so a long boot does not
 * grow the list by one entry per request. */
void pin_record_note(struct tmpl *t, uint64_t off, uint64_t len)
{
    if (!__atomic_load_n(&t->recording, __ATOMIC_ACQUIRE) || len == 0)
        return;
    pthread_mutex_lock(&t->rec_lock);
    struct byte_range *last = t->nrec ? &t->rec[t->nrec - 1] : NULL;
    if (last && last->off + last->len == off) {
        last->len += len;
    } else if (t->nrec < (1u << 20)) {
        if (t->nrec == t->rec_cap) {
            size_t cap = t->rec_cap ? t->rec_cap * 2 : 256;
            void *nv = realloc(t->rec, cap * sizeof *t->rec);
            if (nv != NULL) {
                t->rec = nv;
                t->rec_cap = cap;
            }
        }
        if (t->nrec < t->rec_cap)
            t->rec[t->nrec++] = (struct byte_range){off, len};
    }
    pthread_mutex_unlock(&t->rec_lock);
}
