/* Fill buffers: page-aligned, recycled (see ic-fillbuf.h). */
#include "config.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "ic-fillbuf.h"
#include "ic-util.h"

/* Enough for the readahead fetchers' fills and a few replies in flight;
 * more than that are unmapped when given back (an idle buffer costs the
 * RSS of what it last held, up to FILLBUF_SIZE). */
#define POOL_MAX 4
#define HDR 4096u /* one page before the buffer: its header */

struct hdr {
    uint64_t size; /* bytes after the header */
    uint64_t idle_since_ms; /* these two: pool_lock, while in the pool */
    struct hdr *next;
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
/* Most recently used first (its pages are warm); pool_lock. */
static struct hdr *pool;
static unsigned pool_n; /* pool_lock */

static struct hdr *map_buf(uint64_t size)
{
    void *p = mmap(NULL, HDR + size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    struct hdr *h = p;
    h->size = size;
    return h;
}

static void unmap_buf(struct hdr *h) { munmap(h, HDR + h->size); }

/* Small buffers (4K random reads, small blocks) come from malloc's heap:
 * mapping one per request, at QD16, cost an mmap, a fault and a TLB
 * shootdown each. */
static struct hdr *heap_buf(uint64_t size)
{
    void *p;
    if (posix_memalign(&p, HDR, HDR + size) != 0)
        return NULL;
    struct hdr *h = p;
    h->size = size;
    return h;
}

char *fillbuf_get(uint64_t len)
{
    struct hdr *h = NULL;
    if (len <= FILLBUF_SMALL) {
        h = heap_buf(len ? len : 1);
        return h ? (char *)h + HDR : NULL;
    }
    if (len <= FILLBUF_SIZE) {
        pthread_mutex_lock(&pool_lock);
        h = pool;
        if (h) {
            pool = h->next;
            pool_n--;
        }
        pthread_mutex_unlock(&pool_lock);
    }
    if (h == NULL)
        h = map_buf(len <= FILLBUF_SIZE ? FILLBUF_SIZE
                                        : (len + HDR - 1) / HDR * HDR);
    return h ? (char *)h + HDR : NULL;
}

void fillbuf_put(char *buf)
{
    if (buf == NULL)
        return;
    struct hdr *h = (struct hdr *)(buf - HDR);
    if (h->size <= FILLBUF_SMALL) {
        free(h);
        return;
    }
    if (h->size == FILLBUF_SIZE) {
        pthread_mutex_lock(&pool_lock);
        int keep = pool_n < POOL_MAX;
        if (keep) {
            h->idle_since_ms = mono_ms();
            h->next = pool;
            pool = h;
            pool_n++;
        }
        pthread_mutex_unlock(&pool_lock);
        if (keep)
            return;
    }
    unmap_buf(h);
}

void fillbuf_trim(uint64_t now_ms, uint64_t max_idle_ms)
{
    struct hdr *old = NULL;
    pthread_mutex_lock(&pool_lock);
    /* Most recently used first: the idle ones are a tail. */
    struct hdr **pp = &pool;
    while (*pp && !(now_ms > (*pp)->idle_since_ms &&
                    now_ms - (*pp)->idle_since_ms > max_idle_ms))
        pp = &(*pp)->next;
    old = *pp;
    *pp = NULL;
    for (struct hdr *h = old; h; h = h->next)
        pool_n--;
    pthread_mutex_unlock(&pool_lock);
    while (old) {
        struct hdr *next = old->next;
        unmap_buf(old);
        old = next;
    }
}

unsigned fillbuf_idle(void)
{
    pthread_mutex_lock(&pool_lock);
    unsigned n = pool_n;
    pthread_mutex_unlock(&pool_lock);
    return n;
}
