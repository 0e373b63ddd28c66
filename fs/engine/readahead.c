/* Sequential readahead: detector per handle, a small pool of fetchers. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "cache-priv.h"
#include "ic-conf.h"
#include "ic-log.h"
#include "ic-readahead.h"

#define RA_QUEUE_MAX 64

struct ra_job {
    struct gen *g;
    uint64_t off, len;
    struct ra_job *next;
};

struct readahead {
    pthread_mutex_t lock; /* protects head, tail, queued, stop; see
                             ic-readahead.h for what is taken under it */
    pthread_cond_t work;  /* a job was queued, or stop */
    struct ra_job *head, *tail;
    unsigned queued;
    int stop;
    unsigned nthreads;    /* fixed once started */
    pthread_t th[16];
};

static void *ra_main(void *arg)
{
    struct readahead *ra = arg;
    pthread_mutex_lock(&ra->lock);
    for (;;) {
        while (ra->head == NULL && !ra->stop)
            pthread_cond_wait(&ra->work, &ra->lock);
        if (ra->stop)
            break;
        struct ra_job *j = ra->head;
        ra->head = j->next;
        if (ra->head == NULL)
            ra->tail = NULL;
        ra->queued--;
        pthread_mutex_unlock(&ra->lock);
        cache_prefetch(j->g, j->off, j->len);
        cache_gen_put(j->g);
        free(j);
        pthread_mutex_lock(&ra->lock);
    }
    pthread_mutex_unlock(&ra->lock);
    return NULL;
}

int ra_start(unsigned threads, struct readahead **out)
{
    struct readahead *ra = calloc(1, sizeof *ra);
    if (ra == NULL)
        return -ENOMEM;
    pthread_mutex_init(&ra->lock, NULL);
    pthread_cond_init(&ra->work, NULL);
    threads = threads > 16 ? 16 : threads;
    for (; ra->nthreads < threads; ra->nthreads++)
        if (pthread_create(&ra->th[ra->nthreads], NULL, ra_main, ra) != 0)
            break;
    *out = ra;
    return 0;
}

void ra_stop(struct readahead *ra)
{
    if (ra == NULL)
        return;
    pthread_mutex_lock(&ra->lock);
    ra->stop = 1;
    pthread_cond_broadcast(&ra->work);
    pthread_mutex_unlock(&ra->lock);
    for (unsigned i = 0; i < ra->nthreads; i++)
        pthread_join(ra->th[i], NULL);
    while (ra->head) {
        struct ra_job *j = ra->head;
        ra->head = j->next;
        cache_gen_put(j->g);
        free(j);
    }
    pthread_mutex_destroy(&ra->lock);
    pthread_cond_destroy(&ra->work);
    free(ra);
}

void ra_state_init(struct ra_state *s)
{
    pthread_mutex_init(&s->lock, NULL);
    s->next_off = 0;
    s->ra_end = 0;
    s->window = 0;
}

void ra_state_destroy(struct ra_state *s) { pthread_mutex_destroy(&s->lock); }

/* Queue [off, off+len) in RA_RUN_BYTES pieces; a full queue drops the rest
 * (readahead is only a hint). */
static void ra_queue(struct readahead *ra, struct gen *g, uint64_t off,
                     uint64_t len)
{
    pthread_mutex_lock(&ra->lock);
    for (uint64_t o = off; o < off + len && !ra->stop; o += RA_RUN_BYTES) {
        if (ra->queued >= RA_QUEUE_MAX)
            break;
        struct ra_job *j = malloc(sizeof *j);
        if (j == NULL)
            break;
        uint64_t l = off + len - o;
        l = l < RA_RUN_BYTES ? l : RA_RUN_BYTES;
        *j = (struct ra_job){.g = g, .off = o, .len = l};
        cache_gen_ref(g);
        if (ra->tail)
            ra->tail->next = j;
        else
            ra->head = j;
        ra->tail = j;
        ra->queued++;
        pthread_cond_signal(&ra->work);
    }
    pthread_mutex_unlock(&ra->lock);
}

/* A warm stream needs no readahead: a racy peek at both ends of the range
 * is a good enough hint (the fetcher rechecks under the lock). */
static int ends_present(struct gen *g, uint64_t off, uint64_t len)
{
    uint64_t a = off / g->bs, b = (off + len - 1) / g->bs;
    return __atomic_load_n(&g->bm.v[a].state, __ATOMIC_RELAXED) ==
               BLK_PRESENT &&
           __atomic_load_n(&g->bm.v[b].state, __ATOMIC_RELAXED) ==
               BLK_PRESENT;
}

void ra_note(struct readahead *ra, struct ra_state *s, struct gen *g,
             uint64_t off, uint64_t len)
{
    uint64_t q_off = 0, q_len = 0, end = off + len;
    uint64_t max = cache_conf(g->t->c)->readahead;
    if (ra == NULL || ra->nthreads == 0 || max == 0)
        return;
    pthread_mutex_lock(&s->lock);
    if (off == s->next_off && off != 0) {
        s->window = s->window ? s->window * 2 : RA_MIN;
        if (s->window > max)
            s->window = max;
        uint64_t target = end + s->window;
        if (target > g->info.size)
            target = g->info.size;
        /* Top up once half the window is consumed. */
        uint64_t from = s->ra_end > end ? s->ra_end : end;
        if (target > from && s->ra_end < end + s->window / 2) {
            q_off = from;
            q_len = target - from;
            s->ra_end = target;
        }
    } else if (off != s->next_off) {
        s->window = 0;
        s->ra_end = 0;
    }
    s->next_off = end;
    pthread_mutex_unlock(&s->lock);
    if (q_len && !ends_present(g, q_off, q_len))
        ra_queue(ra, g, q_off, q_len);
}
