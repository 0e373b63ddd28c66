/* Pin sets: normalized range sets, their marks in the block tables, the
 * quota check, and recording.  No reads: what needs the read path is in
 * prewarm.c. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    for (size_t i = 0; i < t->npins; i++)
        if (pin_range_blocks(&t->pins[i], g->info.size, g->bs, &b0, &b1))
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
    t->pinned_bytes = pin_set_bytes(v, n, t->cur->info.size, t->bs);
    pin_mark_gen(t, t->cur);
}

void pin_retarget(struct tmpl *t)
{
    t->pinned_bytes =
        pin_set_bytes(t->pins, t->npins, t->cur->info.size, t->bs);
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
    int rc = unpin ? pin_set_subtract(t->pins, t->npins, r, n, &v, &nv)
                   : pin_set_union(t->pins, t->npins, r, n, &v, &nv);
    if (rc < 0) {
        pthread_mutex_unlock(&t->lock);
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    uint64_t after = pin_set_bytes(v, nv, t->cur->info.size, t->bs);
    uint64_t quota = __atomic_load_n(&t->quota, __ATOMIC_RELAXED);
    if (!unpin && quota != 0 && after > quota) {
        snprintf(err, errlen,
                 "pin of template %s refused: asks %llu bytes, %llu already "
                 "pinned, quota %llu", t->name,
                 (unsigned long long)ranges_bytes(r, n),
                 (unsigned long long)t->pinned_bytes,
                 (unsigned long long)quota);
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
        if (!pin_range_blocks(&t->pins[i], g->info.size, g->bs, &b0, &b1))
            continue;
        v[i].bytes = pin_set_bytes(&t->pins[i], 1, g->info.size, g->bs);
        v[i].present = present_in(g, b0, b1);
    }
    pthread_mutex_unlock(&g->lock);
    *n = t->npins;
    pthread_mutex_unlock(&t->lock);
    *out = v;
    return 0;
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
