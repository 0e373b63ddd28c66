/* Pin sets: normalized range sets, their marks in the block tables, the
 * quota check, and recording.  No reads: what needs the read path is in
 * prewarm.c. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic-block.h"
#include "cache-priv.h"
#include "ic-conf.h"
#include "ic-index.h"
#include "ic-log.h"
#include "ic-pin.h"
#include "ic-writer.h"

/* ------------------------------------------------------- range sets */

/* Block interval [*b0, *b1) touched by a range, clipped to the file. */
int pin_range_blocks(const struct byte_range *r, uint64_t size,
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
uint64_t pin_set_bytes(const struct byte_range *r, size_t n, uint64_t size,
                       uint32_t bs)
{
    uint64_t bytes = 0, last_end = 0, b0, b1;
    for (size_t i = 0; i < n; i++) {
        if (!pin_range_blocks(&r[i], size, bs, &b0, &b1))
            continue;
        if (b0 < last_end)
            b0 = last_end; /* the block shared with the previous range */
        for (; b0 < b1; b0++)
            bytes += block_len(b0, size, bs);
        last_end = b1 > last_end ? b1 : last_end;
    }
    return bytes;
}

int pin_set_union(const struct byte_range *a, size_t na,
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
int pin_set_subtract(const struct byte_range *a, size_t na,
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
    /* Weakest first, each class only raising a block's: a block shared
     * by two classes' ranges gets the stronger. */
    for (int k = PIN_LOW; k < PIN_NCLASS; k++)
        for (size_t i = 0; i < t->npins[k]; i++)
            if (pin_range_blocks(&t->pins[k][i], g->info.size, g->bs, &b0,
                                 &b1))
                for (; b0 < b1; b0++) {
                    uint8_t *f = &g->bm.v[b0].flags;
                    if ((int)BLK_CLASS(*f) < k)
                        *f = (uint8_t)((*f & ~BLK_PINNED) |
                                       (k << BLK_CLASS_SHIFT));
                }
    pthread_mutex_unlock(&g->lock);
}

/* Bytes per class of a template's sets, a block counted once, in the
 * strongest class covering it; out[PIN_NONE] is all classes together. */
static void class_bytes(struct byte_range *const *sets, const size_t *ns,
                        uint64_t size, uint32_t bs, uint64_t *out)
{
    struct byte_range *acc = NULL;
    size_t nacc = 0;
    uint64_t below = 0;
    memset(out, 0, PIN_NCLASS * sizeof *out);
    for (int k = PIN_BOOT; k >= PIN_LOW; k--) {
        struct byte_range *u;
        size_t nu;
        if (pin_set_union(acc, nacc, sets[k], ns[k], &u, &nu) < 0) {
            /* Out of memory: an overestimate (shared blocks twice). */
            out[k] = pin_set_bytes(sets[k], ns[k], size, bs);
            below += out[k];
            continue;
        }
        free(acc);
        acc = u;
        nacc = nu;
        uint64_t all = pin_set_bytes(acc, nacc, size, bs);
        out[k] = all > below ? all - below : 0;
        below = all > below ? all : below;
    }
    free(acc);
    out[PIN_NONE] = below;
}

void pin_retarget(struct tmpl *t)
{
    class_bytes(t->pins, t->npins, t->cur->info.size, t->bs,
                t->pinned_bytes);
    pin_mark_gen(t, t->cur);
}

/* Make the sets disjoint, a range kept in the strongest class naming it
 * (sets normalized; on failure they stay as they were). */
static int make_disjoint(struct byte_range **v, size_t *n)
{
    for (int hi = PIN_BOOT; hi > PIN_LOW; hi--)
        for (int lo = hi - 1; lo >= PIN_LOW; lo--) {
            struct byte_range *d;
            size_t nd;
            if (n[hi] == 0 || n[lo] == 0)
                continue;
            if (pin_set_subtract(v[lo], n[lo], v[hi], n[hi], &d, &nd) < 0)
                return -ENOMEM;
            free(v[lo]);
            v[lo] = d;
            n[lo] = nd;
        }
    return 0;
}

/* Every source's sets: a template's, or a change being prepared. */
struct pin_state {
    struct byte_range *v[PIN_NSRC][PIN_NCLASS];
    size_t n[PIN_NSRC][PIN_NCLASS];
};

static void state_free(struct pin_state *p)
{
    for (int s = 0; s < PIN_NSRC; s++)
        for (int k = 0; k < PIN_NCLASS; k++) {
            free(p->v[s][k]);
            p->v[s][k] = NULL;
            p->n[s][k] = 0;
        }
}

/* Replace *a by *a op b (op: union, or subtract when sub). */
static int set_op(struct byte_range **a, size_t *na,
                  const struct byte_range *b, size_t nb, int sub)
{
    struct byte_range *r;
    size_t nr;
    if (nb == 0)
        return 0;
    int e = sub ? pin_set_subtract(*a, *na, b, nb, &r, &nr)
                : pin_set_union(*a, *na, b, nb, &r, &nr);
    if (e < 0)
        return e;
    free(*a);
    *a = r;
    *na = nr;
    return 0;
}

/* A copy of t's sources (t->lock held). */
static int state_copy(struct tmpl *t, struct pin_state *p)
{
    memset(p, 0, sizeof *p);
    for (int s = 0; s < PIN_NSRC; s++)
        for (int k = PIN_LOW; k < PIN_NCLASS; k++)
            if (pin_set_union(t->src_pins[s][k], t->nsrc_pins[s][k], NULL,
                              0, &p->v[s][k], &p->n[s][k]) < 0) {
                state_free(p);
                return -ENOMEM;
            }
    return 0;
}

/* What the sources make together: per class the union of every source's,
 * then each range in the strongest class naming it.  v[1..] malloc'd. */
static int state_effective(const struct pin_state *p, struct byte_range **v,
                           size_t *n)
{
    memset(v, 0, PIN_NCLASS * sizeof *v);
    memset(n, 0, PIN_NCLASS * sizeof *n);
    int e = 0;
    for (int k = PIN_LOW; k < PIN_NCLASS && e == 0; k++) {
        e = pin_set_union(NULL, 0, NULL, 0, &v[k], &n[k]);
        for (int s = 0; s < PIN_NSRC && e == 0; s++)
            e = set_op(&v[k], &n[k], p->v[s][k], p->n[s][k], 0);
    }
    if (e == 0)
        e = make_disjoint(v, n);
    if (e < 0)
        for (int k = PIN_LOW; k < PIN_NCLASS; k++)
            free(v[k]);
    return e;
}

/* The sources as one list of class ranges for the index (*out malloc'd). */
static int flatten(const struct pin_state *p, struct class_range **out,
                   size_t *nout)
{
    size_t total = 0, k = 0;
    for (int s = 0; s < PIN_NSRC; s++)
        for (int c = PIN_LOW; c < PIN_NCLASS; c++)
            total += p->n[s][c];
    struct class_range *r = malloc((total + 1) * sizeof *r);
    if (r == NULL)
        return -ENOMEM;
    for (int s = 0; s < PIN_NSRC; s++)
        for (int c = PIN_BOOT; c >= PIN_LOW; c--)
            for (size_t i = 0; i < p->n[s][c]; i++)
                r[k++] = (struct class_range){p->v[s][c][i].off,
                                              p->v[s][c][i].len, c, s};
    *out = r;
    *nout = k;
    return 0;
}

/* Install new sources and the sets they make (t->lock held); takes
 * ownership of both. */
static void state_install(struct tmpl *t, struct pin_state *p,
                          struct byte_range **eff, size_t *neff)
{
    for (int s = 0; s < PIN_NSRC; s++)
        for (int k = PIN_LOW; k < PIN_NCLASS; k++) {
            free(t->src_pins[s][k]);
            t->src_pins[s][k] = p->v[s][k];
            t->nsrc_pins[s][k] = p->n[s][k];
            p->v[s][k] = NULL;
            p->n[s][k] = 0;
        }
    for (int k = PIN_LOW; k < PIN_NCLASS; k++) {
        free(t->pins[k]);
        t->pins[k] = eff[k];
        t->npins[k] = neff[k];
    }
    pin_retarget(t);
}

void pin_load(struct tmpl *t, struct index *ix)
{
    struct class_range *r;
    size_t nr;
    struct pin_state p = {0};
    struct byte_range *eff[PIN_NCLASS];
    size_t neff[PIN_NCLASS];
    if (index_pins_load(ix, t->tid, &r, &nr) < 0) {
        log_err("template %s: cannot load its pins from the index", t->name);
        return;
    }
    for (int s = 0; s < PIN_NSRC; s++)
        for (int k = PIN_LOW; k < PIN_NCLASS; k++) {
            p.v[s][k] = malloc((nr + 1) * sizeof *p.v[s][k]);
            if (p.v[s][k] == NULL)
                goto oom;
            for (size_t i = 0; i < nr; i++)
                if (r[i].cls == k && r[i].src == s)
                    p.v[s][k][p.n[s][k]++] =
                        (struct byte_range){r[i].off, r[i].len};
            ranges_normalize(p.v[s][k], &p.n[s][k]);
        }
    for (int s = 0; s < PIN_NSRC; s++)
        if (make_disjoint(p.v[s], p.n[s]) < 0)
            goto oom;
    if (state_effective(&p, eff, neff) < 0)
        goto oom;
    free(r);
    pthread_mutex_lock(&t->lock);
    state_install(t, &p, eff, neff);
    pthread_mutex_unlock(&t->lock);
    return;
oom:
    log_err("template %s: out of memory loading its pins", t->name);
    state_free(&p);
    free(r);
}

static uint64_t ranges_bytes(const struct byte_range *r, size_t n)
{
    uint64_t b = 0;
    for (size_t i = 0; i < n; i++)
        b += r[i].len;
    return b;
}

/* Add sets[k] to class k of source src, each moved out of the source's
 * other classes, weakest class first (a range named in two ends in the
 * stronger).  The tool owns the legacy pins: what it names leaves them. */
static int state_add(struct pin_state *p, int src,
                     struct byte_range *const *sets, const size_t *n)
{
    int e = 0;
    for (int k = PIN_LOW; k < PIN_NCLASS && e == 0; k++) {
        if (n[k] == 0)
            continue;
        for (int j = PIN_LOW; j < PIN_NCLASS && e == 0; j++) {
            e = set_op(&p->v[src][j], &p->n[src][j], sets[k], n[k], j != k);
            if (e == 0 && src == PIN_SRC_TOOL)
                e = set_op(&p->v[PIN_SRC_LEGACY][j],
                           &p->n[PIN_SRC_LEGACY][j], sets[k], n[k], 1);
        }
    }
    return e;
}

/* Take sets[k] out of class k of source src, sets[PIN_NONE] out of every
 * class (and, for the tool, out of the legacy pins too). */
static int state_remove(struct pin_state *p, int src,
                        struct byte_range *const *sets, const size_t *n)
{
    int e = 0;
    for (int k = PIN_NONE; k < PIN_NCLASS && e == 0; k++)
        for (int j = PIN_LOW; j < PIN_NCLASS && e == 0; j++) {
            if (k != PIN_NONE && k != j)
                continue;
            e = set_op(&p->v[src][j], &p->n[src][j], sets[k], n[k], 1);
            if (e == 0 && src == PIN_SRC_TOOL)
                e = set_op(&p->v[PIN_SRC_LEGACY][j],
                           &p->n[PIN_SRC_LEGACY][j], sets[k], n[k], 1);
        }
    return e;
}

/* Make source src's sets exactly sets (a range in two classes kept in the
 * stronger).  Replacing the config's also settles the legacy pins: those
 * it names are its own from now on, the others become the tool's. */
static int state_replace(struct pin_state *p, int src,
                         struct byte_range *const *sets, const size_t *n)
{
    int e = 0;
    for (int k = PIN_LOW; k < PIN_NCLASS && e == 0; k++) {
        free(p->v[src][k]);
        p->v[src][k] = NULL;
        p->n[src][k] = 0;
        e = pin_set_union(sets[k], n[k], NULL, 0, &p->v[src][k],
                          &p->n[src][k]);
    }
    if (e == 0)
        e = make_disjoint(p->v[src], p->n[src]);
    if (e < 0 || src != PIN_SRC_CONFIG)
        return e;
    struct byte_range *named = NULL;
    size_t nnamed = 0;
    for (int k = PIN_LOW; k < PIN_NCLASS && e == 0; k++)
        e = set_op(&named, &nnamed, p->v[src][k], p->n[src][k], 0);
    for (int k = PIN_LOW; k < PIN_NCLASS && e == 0; k++) {
        struct byte_range **lv = &p->v[PIN_SRC_LEGACY][k];
        size_t *ln = &p->n[PIN_SRC_LEGACY][k];
        e = set_op(lv, ln, named, nnamed, 1);
        if (e == 0)
            e = set_op(&p->v[PIN_SRC_TOOL][k], &p->n[PIN_SRC_TOOL][k], *lv,
                       *ln, 0);
        if (e == 0) {
            free(*lv);
            *lv = NULL;
            *ln = 0;
        }
    }
    free(named);
    if (e == 0)
        e = make_disjoint(p->v[PIN_SRC_TOOL], p->n[PIN_SRC_TOOL]);
    return e;
}

/* p's sets made normalized copies of the caller's (the set algebra needs
 * it): in[k] for class k. */
static int sets_normalized(struct byte_range *const *sets, const size_t *n,
                           struct byte_range **in, size_t *nin)
{
    for (int k = 0; k < PIN_NCLASS; k++) {
        in[k] = NULL;
        nin[k] = 0;
        if (n[k] > 0 && pin_set_union(sets[k], n[k], NULL, 0, &in[k],
                                      &nin[k]) < 0) {
            while (--k >= 0)
                free(in[k]);
            return -ENOMEM;
        }
    }
    return 0;
}

int pin_apply(struct tmpl *t, int src, int op, struct byte_range *const *sets,
              const size_t *n, char *err, size_t errlen)
{
    struct byte_range *in[PIN_NCLASS], *eff[PIN_NCLASS] = {0};
    size_t nin[PIN_NCLASS], neff[PIN_NCLASS] = {0};
    struct pin_state p;
    uint64_t after[PIN_NCLASS];

    if (src < 0 || src >= PIN_NSRC || op < PIN_OP_ADD ||
        op > PIN_OP_REPLACE) {
        snprintf(err, errlen, "bad pin source %d or operation %d", src, op);
        return -EINVAL;
    }
    if (sets_normalized(sets, n, in, nin) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_lock(&t->lock);
    int rc = state_copy(t, &p);
    if (rc == 0) {
        rc = op == PIN_OP_ADD      ? state_add(&p, src, in, nin)
             : op == PIN_OP_REMOVE ? state_remove(&p, src, in, nin)
                                   : state_replace(&p, src, in, nin);
        if (rc == 0)
            rc = state_effective(&p, eff, neff);
        if (rc < 0)
            state_free(&p);
    }
    if (rc < 0) {
        pthread_mutex_unlock(&t->lock);
        for (int k = 0; k < PIN_NCLASS; k++)
            free(in[k]);
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    class_bytes(eff, neff, t->cur->info.size, t->bs, after);
    uint64_t quota = __atomic_load_n(&t->quota, __ATOMIC_RELAXED);
    /* Only boot blocks are reserved inside the quota: softer classes
     * compete for it (and for cache_max) by eviction order instead.  A
     * change asking for boot pins that would not fit is refused whole,
     * every class of it. */
    if (op != PIN_OP_REMOVE && nin[PIN_BOOT] > 0 && quota != 0 &&
        after[PIN_BOOT] > quota && after[PIN_BOOT] > t->pinned_bytes[PIN_BOOT]) {
        snprintf(err, errlen,
                 "pin of template %s refused: asks %llu bytes, %llu already "
                 "pinned, quota %llu", t->name,
                 (unsigned long long)ranges_bytes(in[PIN_BOOT],
                                                  nin[PIN_BOOT]),
                 (unsigned long long)t->pinned_bytes[PIN_BOOT],
                 (unsigned long long)quota);
        pthread_mutex_unlock(&t->lock);
        state_free(&p);
        for (int k = 0; k < PIN_NCLASS; k++) {
            free(eff[k]);
            free(in[k]);
        }
        return -EDQUOT;
    }
    for (int k = 0; k < PIN_NCLASS; k++)
        free(in[k]);
    struct class_range *flat;
    size_t nflat;
    rc = flatten(&p, &flat, &nflat);
    state_install(t, &p, eff, neff);
    if (rc == 0) {
        rc = writer_pins(t->c->w, t->tid, flat, nflat);
        free(flat);
    }
    pthread_mutex_unlock(&t->lock);
    if (rc < 0)
        snprintf(err, errlen, "out of memory");
    return rc;
}

int pin_change(struct tmpl *t, const struct byte_range *r, size_t n, int cls,
               int unpin, char *err, size_t errlen)
{
    struct byte_range *sets[PIN_NCLASS] = {0};
    size_t ns[PIN_NCLASS] = {0};

    if (cls < PIN_NONE || cls >= PIN_NCLASS || (!unpin && cls == PIN_NONE)) {
        snprintf(err, errlen, "bad pin class %d", cls);
        return -EINVAL;
    }
    sets[cls] = (struct byte_range *)r;
    ns[cls] = n;
    return pin_apply(t, PIN_SRC_TOOL, unpin ? PIN_OP_REMOVE : PIN_OP_ADD,
                     sets, ns, err, errlen);
}

uint64_t pin_bytes(struct tmpl *t)
{
    pthread_mutex_lock(&t->lock);
    uint64_t b = t->pinned_bytes[PIN_NONE];
    pthread_mutex_unlock(&t->lock);
    return b;
}

void pin_class_bytes(struct tmpl *t, struct pin_class_figures *f)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_lock(&t->lock);
    memcpy(f->pinned, t->pinned_bytes, sizeof f->pinned);
    struct gen *g = t->cur;
    pthread_mutex_lock(&g->lock);
    /* A pass over the block table: the classes are in the flags. */
    for (uint64_t i = 0; i < g->bm.nblocks; i++) {
        const struct blk *b = &g->bm.v[i];
        if (!(b->flags & BLK_PINNED) || b->state != BLK_PRESENT)
            continue;
        uint32_t len = block_len(i, g->info.size, g->bs);
        f->present[BLK_CLASS(b->flags)] += len;
        f->present[PIN_NONE] += len;
    }
    pthread_mutex_unlock(&g->lock);
    pthread_mutex_unlock(&t->lock);
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
    size_t total = 0, k = 0;
    for (int c = PIN_LOW; c < PIN_NCLASS; c++)
        total += t->npins[c];
    struct pin_status *v = calloc(total + 1, sizeof *v);
    if (v == NULL) {
        pthread_mutex_unlock(&t->lock);
        return -ENOMEM;
    }
    pthread_mutex_lock(&g->lock);
    for (int c = PIN_BOOT; c >= PIN_LOW; c--)
        for (size_t i = 0; i < t->npins[c]; i++, k++) {
            uint64_t b0, b1;
            const struct byte_range *r = &t->pins[c][i];
            v[k].off = r->off;
            v[k].len = r->len;
            v[k].cls = c;
            if (!pin_range_blocks(r, g->info.size, g->bs, &b0, &b1))
                continue;
            v[k].bytes = pin_set_bytes(r, 1, g->info.size, g->bs);
            v[k].present = present_in(g, b0, b1);
        }
    pthread_mutex_unlock(&g->lock);
    *n = total;
    pthread_mutex_unlock(&t->lock);
    *out = v;
    return 0;
}

/* ------------------------------------------------------ recording */

int pin_record_begin(struct tmpl *t, int mode)
{
    if (mode != PIN_REC_PROFILE && mode != PIN_REC_TRACE)
        return -EINVAL;
    pthread_mutex_lock(&t->rec_lock);
    int busy = t->recording;
    if (!busy) {
        t->nrec = 0;
        t->ntrace = 0;
        t->trace_dropped = 0;
        __atomic_store_n(&t->recording, mode, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&t->rec_lock);
    return busy ? -EBUSY : 0;
}

/* Ends either kind of recording and hands over both lists (one is empty). */
static void record_stop(struct tmpl *t, struct byte_range **r, size_t *nr,
                        struct trace_read **tr, size_t *ntr,
                        uint64_t *dropped)
{
    pthread_mutex_lock(&t->rec_lock);
    __atomic_store_n(&t->recording, 0, __ATOMIC_RELEASE);
    *r = t->rec;
    *nr = t->nrec;
    *tr = t->trace;
    *ntr = t->ntrace;
    *dropped = t->trace_dropped;
    t->rec = NULL;
    t->nrec = t->rec_cap = 0;
    t->trace = NULL;
    t->ntrace = t->trace_cap = 0;
    t->trace_dropped = 0;
    pthread_mutex_unlock(&t->rec_lock);
}

int pin_record_end(struct tmpl *t, struct byte_range **out, size_t *n)
{
    struct trace_read *tr;
    size_t ntr;
    uint64_t dropped;

    record_stop(t, out, n, &tr, &ntr, &dropped);
    free(tr);
    if (*out)
        ranges_normalize(*out, n);
    return 0;
}

int pin_trace_end(struct tmpl *t, struct trace_read **out, size_t *n,
                  uint64_t *dropped)
{
    struct byte_range *r;
    size_t nr;

    record_stop(t, &r, &nr, out, n, dropped);
    free(r);
    /* Times were taken as absolute clock readings: make them relative to
     * the first read, the trace's zero. */
    for (size_t i = *n; i-- > 0;)
        (*out)[i].t_us -= (*out)[0].t_us;
    return 0;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Trace: the arrival order is the order readers took rec_lock, and the
 * time is read under it, so times never go backwards in the list. */
static void trace_note(struct tmpl *t, uint64_t off, uint64_t len)
{
    if (t->ntrace == t->trace_cap && t->trace_cap < PIN_TRACE_MAX) {
        size_t cap = t->trace_cap ? t->trace_cap * 2 : 1024;
        if (cap > PIN_TRACE_MAX)
            cap = PIN_TRACE_MAX;
        void *nv = realloc(t->trace, cap * sizeof *t->trace);
        if (nv != NULL) {
            t->trace = nv;
            t->trace_cap = cap;
        }
    }
    if (t->ntrace < t->trace_cap)
        t->trace[t->ntrace++] = (struct trace_read){mono_us(), off, len};
    else
        t->trace_dropped++;
}

/* Profile: adjacent sequential reads are merged on the fly so a long boot
 * does not grow the list by one entry per request. */
void pin_record_note(struct tmpl *t, uint64_t off, uint64_t len)
{
    int mode = __atomic_load_n(&t->recording, __ATOMIC_ACQUIRE);
    if (!mode || len == 0)
        return;
    pthread_mutex_lock(&t->rec_lock);
    if (t->recording == PIN_REC_TRACE) {
        trace_note(t, off, len);
        pthread_mutex_unlock(&t->rec_lock);
        return;
    }
    if (t->recording != PIN_REC_PROFILE) { /* ended meanwhile */
        pthread_mutex_unlock(&t->rec_lock);
        return;
    }
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
