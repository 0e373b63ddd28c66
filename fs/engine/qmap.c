/* A qcow2 template's host-to-guest cluster map, readahead's guide: QEMU
 * reads a backing file's data clusters in the order of the guest's reads,
 * so a run of host clusters is one stream only while the clusters map
 * consecutive guest clusters.  Beyond it lie another guest region, an
 * unallocated cluster or metadata, which the stream will not read next.
 *
 * Built from the cache only, never from the origin: the header and the
 * L1 table once their blocks are present (QEMU reads them at open), each
 * L2 table once its cluster is (QEMU reads it before the data it maps, so
 * a data cluster a guest read reached is mapped by a cached table).  Tables
 * not yet cached are looked at again when more blocks have become present.
 * A template that is not qcow2 (or whose map would be too big) gets no
 * limit from here, and readahead works as for a raw file.
 *
 * Locking: qmap.lock is taken with no engine lock held (ra_note's
 * caller holds none) and is held across the reads of cached tables, which
 * take gen.evict_rw (shared) and gen.lock under it: it comes before both
 * in the engine's order (cache-priv.h).  The map is created once per
 * generation (a compare-and-swap on gen.qmap) and freed with it. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache-priv.h"
#include "ic-block.h"
#include "ic-qcow2.h"
#include "ic-log.h"
#include "ic-util.h"

/* Host clusters a map may have: 64 MiB of table at most (1 TiB of 64K
 * clusters); a bigger image gets no map. */
#define QMAP_MAX_CLUSTERS (16u << 20)
/* Allocated L2 tables a map follows (32 TiB of guest with 64K clusters):
 * a refresh looks at each one not read yet, so more (a garbage L1 from
 * the origin) gets no map rather than a slow reader. */
#define QMAP_MAX_L2 65536u

enum { QM_PENDING, QM_READY, QM_NONE };

struct qmap {
    pthread_mutex_t lock; /* protects everything below */
    int state;
    uint64_t stamp;       /* present blocks when last (re)built */
    struct qcow2_map m;
    uint32_t *l2_todo;    /* L1 indices whose table is not in rev yet */
    uint64_t l2_left;     /* how many */
    uint64_t l2_cap;      /* room in l2_todo: QMAP_MAX_L2 at most */
    uint32_t *rev;        /* per host cluster: guest cluster + 1, 0 none */
    uint64_t nclusters;
};

/* Read [off, off+len) from the data file if every block of it is
 * present: 0, -EAGAIN when one is not (yet), -EIO. */
static int cached_read(void *ctx, void *buf, uint64_t off, size_t len)
{
    struct gen *g = ctx;
    if (len == 0)
        return 0;
    uint64_t a = block_of(off, g->bs), b = block_of(off + len - 1, g->bs);
    pthread_rwlock_rdlock(&g->evict_rw);
    pthread_mutex_lock(&g->lock);
    int ok = 1;
    for (uint64_t i = a; ok && i <= b; i++)
        ok = g->bm.v[i].state == BLK_PRESENT;
    pthread_mutex_unlock(&g->lock);
    /* Under evict_rw no hole is punched meanwhile; bytes not checked
     * against their checksum are fine for a hint. */
    ssize_t r = ok ? pread_full(g->fd, buf, len, off) : 0;
    pthread_rwlock_unlock(&g->evict_rw);
    return !ok ? -EAGAIN : r == (ssize_t)len ? 0 : -EIO;
}

static uint64_t present_now(struct gen *g)
{
    return __atomic_load_n(&g->bm.present, __ATOMIC_RELAXED);
}

/* The L1 entries worth following, in q->l2_todo: an L2 table is read at
 * most once, so one named by two entries (no valid image has that, and a
 * hostile one could name one cluster four million times) is dropped, and
 * so are tables of guest clusters beyond what rev holds.  0, or -E2BIG /
 * -ENOMEM: no map. */
static int qm_todo(struct qmap *q)
{
    unsigned bits = q->m.cluster_bits;
    uint64_t *seen = calloc((q->nclusters + 63) / 64, sizeof *seen);
    if (seen == NULL)
        return -ENOMEM;
    int rc = 0;
    for (uint64_t i = 0; i < q->m.l1_size && rc == 0; i++) {
        uint64_t hc = q->m.l1[i] >> bits;
        if (q->m.l1[i] == 0)
            continue;
        if (hc >= q->nclusters || (seen[hc / 64] >> (hc % 64) & 1) ||
            i * q->m.l2_entries >= UINT32_MAX - 1) {
            q->m.l1[i] = 0;
            continue;
        }
        seen[hc / 64] |= 1ull << (hc % 64);
        if (q->l2_left == q->l2_cap)
            rc = -E2BIG;
        else
            q->l2_todo[q->l2_left++] = (uint32_t)i;
    }
    free(seen);
    return rc;
}

/* Header and L1 (qmap.lock held).  Whatever is wrong with them (the
 * bytes are the origin's) only leaves the template without a map. */
static void qm_open(struct gen *g, struct qmap *q)
{
    char err[160];
    q->stamp = present_now(g);
    int r = qcow2_map_open(cached_read, g, g->info.size, &q->m, err,
                           sizeof err);
    if (r == -EAGAIN)
        return; /* not cached yet: again once more blocks are */
    if (r == 0) {
        uint64_t cs = (uint64_t)1 << q->m.cluster_bits;
        q->nclusters = g->info.size / cs + (g->info.size % cs != 0);
        if (q->nclusters <= QMAP_MAX_CLUSTERS) {
            q->l2_cap = q->m.l1_size < QMAP_MAX_L2 ? q->m.l1_size
                                                   : QMAP_MAX_L2;
            q->rev = calloc(q->nclusters, sizeof *q->rev);
            q->l2_todo = calloc(q->l2_cap ? q->l2_cap : 1,
                                sizeof *q->l2_todo);
        }
        if (q->rev == NULL || q->l2_todo == NULL)
            snprintf(err, sizeof err, "%" PRIu64 " clusters: too many, or "
                     "out of memory", q->nclusters);
        else if (qm_todo(q) != 0)
            snprintf(err, sizeof err, "more than %u L2 tables, or out of "
                     "memory", QMAP_MAX_L2);
        else
            r = 1;
    }
    if (r != 1) {
        log_debug("template %s: no qcow2 map for readahead: %s",
                  g->t->name, err);
        free(q->rev);
        free(q->l2_todo);
        q->rev = NULL;
        q->l2_todo = NULL;
        q->l2_left = 0;
        qcow2_map_close(&q->m);
        q->state = QM_NONE;
        return;
    }
    q->stamp = 0; /* read the L2 tables already cached */
    q->state = QM_READY;
}

/* Add the L2 tables cached since the last look (qmap.lock held): each
 * read once, so all refreshes together read at most the file once. */
static void qm_refresh(struct gen *g, struct qmap *q)
{
    uint64_t now = present_now(g);
    if (q->l2_left == 0 || now == q->stamp)
        return;
    q->stamp = now;
    size_t cs = (size_t)1 << q->m.cluster_bits;
    char *buf = malloc(cs);
    if (buf == NULL)
        return;
    for (uint64_t k = 0; k < q->l2_left;) {
        uint32_t i = q->l2_todo[k];
        if (cached_read(g, buf, q->m.l1[i], cs) != 0) {
            k++;
            continue;
        }
        qcow2_l2_reverse(&q->m, i, buf, q->rev, q->nclusters);
        q->l2_todo[k] = q->l2_todo[--q->l2_left];
    }
    free(buf);
}

static struct qmap *qm_get(struct gen *g)
{
    struct qmap *q = __atomic_load_n(&g->qmap, __ATOMIC_ACQUIRE);
    if (q != NULL)
        return q;
    struct qmap *n = calloc(1, sizeof *n);
    if (n == NULL)
        return NULL;
    pthread_mutex_init(&n->lock, NULL);
    n->state = QM_PENDING;
    n->stamp = UINT64_MAX;
    if (__atomic_compare_exchange_n(&g->qmap, &q, n, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        return n;
    qmap_free(n); /* another reader's won */
    return q;
}

uint64_t qmap_limit(struct gen *g, uint64_t end, uint64_t want)
{
    struct qmap *q = qm_get(g);
    if (q == NULL || end == 0)
        return UINT64_MAX;
    pthread_mutex_lock(&q->lock);
    if (q->state == QM_PENDING && present_now(g) != q->stamp)
        qm_open(g, q);
    if (q->state != QM_READY) {
        pthread_mutex_unlock(&q->lock);
        return UINT64_MAX;
    }
    unsigned bits = q->m.cluster_bits;
    uint64_t last = (end - 1) >> bits, lim = end;
    if (last < q->nclusters && q->rev[last] == 0)
        qm_refresh(g, q);
    if (last < q->nclusters && q->rev[last] != 0) {
        /* Clusters after the read's last one, while they continue its
         * guest region; as far as `want` asks at most. */
        uint64_t k = last + 1, stop = (end + want) >> bits;
        int refreshed = 0;
        while (k < q->nclusters && k <= stop) {
            if (q->rev[k] == 0 && !refreshed) {
                qm_refresh(g, q);
                refreshed = 1;
            }
            if (q->rev[k] != q->rev[last] + (k - last))
                break;
            k++;
        }
        lim = k << bits;
    }
    pthread_mutex_unlock(&q->lock);
    return lim > end ? lim : end;
}

void qmap_free(struct qmap *q)
{
    if (q == NULL)
        return;
    free(q->rev);
    free(q->l2_todo);
    qcow2_map_close(&q->m);
    pthread_mutex_destroy(&q->lock);
    free(q);
}
