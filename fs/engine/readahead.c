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
    s->next_off = s->run = s->run_start = s->ra_lo = s->ra_end = 0;
    s->window = s->grow_at = s->run_read = 0;
    s->first = RA_FIRST;
    s->issued = s->read = 0;
}

void ra_state_destroy(struct ra_state *s) { pthread_mutex_destroy(&s->lock); }

void ra_state_figures(struct ra_state *s, uint64_t *issued, uint64_t *read)
{
    pthread_mutex_lock(&s->lock);
    *issued = s->issued;
    *read = s->read;
    pthread_mutex_unlock(&s->lock);
}

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

/* The run that ended at next_off: did its readahead earn its bytes?
 * (ra_state.lock held.) */
static void run_ended(struct ra_state *s, uint64_t bs, uint64_t max)
{
    if (s->window == 0)
        return; /* it asked for none */
    uint64_t unread = s->ra_end > s->ra_lo ? s->ra_end - s->ra_lo : 0;
    if (unread > s->run_read) /* it cost more than it served */
        s->first = s->first > bs ? s->first / 2 : 0;
    else if (unread * 4 <= s->run_read) /* at most a fifth of it unread */
        s->first = s->first == 0 ? bs : s->first * 2 < max ? s->first * 2
                                                           : max;
}

void ra_note(struct readahead *ra, struct ra_state *s, struct gen *g,
             uint64_t off, uint64_t len)
{
    uint64_t q_off = 0, q_len = 0, end = off + len;
    uint64_t max = cache_conf(g->t->c)->readahead, bs = g->bs;
    if (ra == NULL || ra->nthreads == 0 || max == 0 || len == 0)
        return;
    pthread_mutex_lock(&s->lock);
    /* Sequential: where the last read ended, or (the kernel's concurrent
     * readahead requests arrive out of order) anywhere between the run's
     * start and the end of its readahead. */
    uint64_t reach = s->ra_end > s->next_off ? s->ra_end : s->next_off;
    int seq = s->run > 0 && (off == s->next_off ||
                             (off >= s->run_start && off <= reach));
    if (!seq) {
        run_ended(s, bs, max);
        s->run = s->run_read = s->window = s->grow_at = 0;
        s->ra_lo = s->ra_end = 0;
        s->run_start = off;
    } else if (s->ra_end > s->ra_lo && end > s->ra_lo) {
        uint64_t e = end < s->ra_end ? end : s->ra_end;
        s->read += e - s->ra_lo;
        s->run_read += e - s->ra_lo;
        s->ra_lo = e;
    }
    if (end > s->next_off || !seq)
        s->next_off = end;
    s->run = s->next_off - s->run_start;
    end = s->next_off; /* readahead runs from the stream's front */
    if (seq && (s->first != 0 || s->run >= RA_PROVE * bs)) {
        if (s->window == 0)
            s->window = s->first ? s->first : bs;
        else if (end >= s->grow_at)
            s->window *= 2; /* all it had asked for is read */
        uint64_t cap = s->run > bs ? s->run : bs;
        cap = cap < max ? cap : max;
        s->window = s->window < cap ? s->window : cap;
        uint64_t target = end + s->window;
        if (target > g->info.size)
            target = g->info.size;
        uint64_t from = s->ra_end > end ? s->ra_end : end;
        if (target > from && s->ra_end < end + s->window / 2) {
            q_off = from;
            q_len = target - from;
            if (s->ra_end <= end)
                s->ra_lo = end;
            s->ra_end = target;
            if (end >= s->grow_at)
                s->grow_at = target;
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (q_len == 0)
        return;
    /* A qcow2 image: not past the read's guest region (no lock held). */
    uint64_t lim = qmap_limit(g, end, q_off + q_len - end);
    if (lim < q_off + q_len) {
        uint64_t cut = lim > q_off ? lim : q_off;
        pthread_mutex_lock(&s->lock);
        if (s->ra_end == q_off + q_len)
            s->ra_end = cut;
        if (s->grow_at == q_off + q_len)
            s->grow_at = cut;
        pthread_mutex_unlock(&s->lock);
        q_len = cut - q_off;
    }
    if (q_len == 0)
        return;
    pthread_mutex_lock(&s->lock);
    s->issued += q_len;
    pthread_mutex_unlock(&s->lock);
    if (!ends_present(g, q_off, q_len))
        ra_queue(ra, g, q_off, q_len);
}
