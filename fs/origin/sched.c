/* The fetch scheduler (policy and locking rules in include/ic-sched.h).
 *
 * Waiters are few (one per thread blocked on a host: FUSE workers and
 * warm workers), so the choice of the next one is a scan of the highest
 * non-empty class's queue, comparing (group stamp, flow stamp, arrival).
 * A slot freed while someone waits is handed to the chosen waiter, never
 * put back: `active` does not drop, so nobody can take it in between. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "ic-conf.h"
#include "ic-sched.h"
#include "ic-util.h"

struct sched_waiter {
    struct origin_req rq;
    uint64_t since;           /* the grant counter when it was queued */
    int granted;              /* (sched.lock) the slot is ours */
    pthread_cond_t wake;
    struct sched_waiter *prev, *next;
};

static const struct origin_req default_req = {.cls = FETCH_DEMAND};

void sched_init(struct sched *s, unsigned cap)
{
    *s = (struct sched){.cap = cap ? cap : 1};
    pthread_mutex_init(&s->lock, NULL);
}

void sched_destroy(struct sched *s) { pthread_mutex_destroy(&s->lock); }

void sched_lower_cap(struct sched *s, unsigned cap)
{
    pthread_mutex_lock(&s->lock);
    if (cap >= 1 && cap < s->cap)
        s->cap = cap;
    pthread_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------ stamps */

static uint64_t stamp_of(const struct sched *s, uint64_t group, uint64_t flow)
{
    for (unsigned i = 0; i < SCHED_STAMPS; i++)
        if (s->stamps[i].served != 0 && s->stamps[i].group == group &&
            s->stamps[i].flow == flow)
            return s->stamps[i].served;
    return 0;
}

/* Note (group, flow) as served now, in place of the least recently
 * served entry when it is new. */
static void stamp_set(struct sched *s, uint64_t group, uint64_t flow,
                      uint64_t now)
{
    unsigned victim = 0;
    for (unsigned i = 0; i < SCHED_STAMPS; i++) {
        struct sched_stamp *e = &s->stamps[i];
        if (e->served != 0 && e->group == group && e->flow == flow) {
            e->served = now;
            return;
        }
        if (e->served < s->stamps[victim].served)
            victim = i;
    }
    s->stamps[victim] = (struct sched_stamp){group, flow, now};
}

/* The flow key of a group's own stamp. */
#define GROUP_FLOW UINT64_MAX

static void note_served(struct sched *s, const struct origin_req *rq)
{
    uint64_t now = ++s->grants;
    stamp_set(s, rq->group, GROUP_FLOW, now);
    stamp_set(s, rq->group, rq->flow == GROUP_FLOW ? 0 : rq->flow, now);
}

/* ------------------------------------------------------------ queues */

static void enqueue(struct sched *s, struct sched_waiter *w)
{
    unsigned c = w->rq.cls;
    w->next = NULL;
    w->prev = s->tail[c];
    if (s->tail[c])
        s->tail[c]->next = w;
    else
        s->head[c] = w;
    s->tail[c] = w;
    s->st.waiting[c]++;
}

static void dequeue(struct sched *s, struct sched_waiter *w)
{
    unsigned c = w->rq.cls;
    if (w->prev)
        w->prev->next = w->next;
    else
        s->head[c] = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        s->tail[c] = w->prev;
    w->prev = w->next = NULL;
    s->st.waiting[c]--;
}

/* The class a waiter is chosen as now: its own, or demand while urgent. */
static unsigned class_now(const struct sched_waiter *w)
{
    if (w->rq.urgent != NULL &&
        __atomic_load_n(w->rq.urgent, __ATOMIC_RELAXED) > 0)
        return FETCH_DEMAND;
    return w->rq.cls;
}

struct choice {
    struct sched_waiter *best;
    uint64_t group_stamp, flow_stamp;
};

/* Keep w if it was served less recently than the choice so far; arrival
 * order breaks ties (each queue is in that order).  A flow's stamp counts
 * from no earlier than its waiter's arrival: flows are short-lived
 * (handles, warm runs) and their keys come back (a handle's address), so
 * a flow served long ago, forgotten, new or reusing a key is no older
 * than the waiters queued before it, and never passes them.  Groups
 * (templates) are few and lasting: a quiet one goes first. */
static void consider(const struct sched *s, struct sched_waiter *w,
                     struct choice *ch)
{
    uint64_t flow = w->rq.flow == GROUP_FLOW ? 0 : w->rq.flow;
    uint64_t g = stamp_of(s, w->rq.group, GROUP_FLOW);
    uint64_t f = stamp_of(s, w->rq.group, flow);
    if (f < w->since)
        f = w->since;
    if (ch->best == NULL || g < ch->group_stamp ||
        (g == ch->group_stamp && f < ch->flow_stamp))
        *ch = (struct choice){w, g, f};
}

/* Whether a pre-warm's transfer may start now (lock held). */
static int warm_may_start(const struct sched *s, uint64_t now)
{
    return s->demand_active == 0 && now >= s->demand_quiet_ms;
}

static void note_granted(struct sched *s, const struct origin_req *rq)
{
    s->active++;
    s->st.granted[rq->cls]++;
    if (rq->cls == FETCH_DEMAND)
        s->demand_active++;
    note_served(s, rq);
}

/* The next owner of a slot: the highest class's least recently served
 * group, its least recently served flow, its oldest waiter; or NULL.
 * Urgent waiters are in their own class's queue but count as demand, so
 * a class is looked for in its own queue and those below it. */
static struct sched_waiter *pick(const struct sched *s)
{
    int warm_ok = warm_may_start(s, mono_ms());
    for (unsigned c = 0; c < FETCH_CLASSES; c++) {
        if (c == FETCH_WARM && !warm_ok)
            continue; /* its waiters wait for the readers to pause */
        struct choice ch = {NULL, 0, 0};
        for (unsigned q = c; q < FETCH_CLASSES; q++)
            for (struct sched_waiter *w = s->head[q]; w; w = w->next)
                if (class_now(w) == c)
                    consider(s, w, &ch);
        if (ch.best != NULL)
            return ch.best;
    }
    return NULL;
}

/* Hand free slots to waiters (lock held). */
static void hand_over(struct sched *s)
{
    while (s->active < s->cap) {
        struct sched_waiter *w = pick(s);
        if (w == NULL)
            return;
        dequeue(s, w);
        w->granted = 1;
        note_granted(s, &w->rq);
        pthread_cond_signal(&w->wake);
    }
}

static int any_waiting(const struct sched *s)
{
    for (unsigned c = 0; c < FETCH_CLASSES; c++)
        if (s->head[c] != NULL)
            return 1;
    return 0;
}

int sched_acquire(struct sched *s, const struct origin_req *rq,
                  uint64_t deadline)
{
    struct sched_waiter w = {.rq = rq ? *rq : default_req};
    if ((unsigned)w.rq.cls >= FETCH_CLASSES)
        w.rq.cls = FETCH_DEMAND;

    pthread_mutex_lock(&s->lock);
    /* Free, and owed to nobody: a warm held back by the readers is owed
     * nothing yet, except that readahead never passes a waiting warm
     * (the classes are strict). */
    if (s->active < s->cap &&
        (w.rq.cls == FETCH_READAHEAD ? !any_waiting(s) : pick(s) == NULL) &&
        (class_now(&w) != FETCH_WARM || warm_may_start(s, mono_ms()))) {
        note_granted(s, &w.rq);
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    if (w.rq.cls == FETCH_READAHEAD) {
        s->st.skipped++;
        pthread_mutex_unlock(&s->lock);
        return -EAGAIN;
    }
    cond_init_mono(&w.wake);
    w.since = s->grants;
    enqueue(s, &w);
    /* A cap raised under the waiters (never today) or a race with a
     * release that found nobody: hand out what is free. */
    hand_over(s);
    int err = 0;
    while (!w.granted) {
        uint64_t now = mono_ms();
        if (now >= deadline) {
            dequeue(s, &w);
            s->st.timeouts++;
            err = -ETIMEDOUT;
            break;
        }
        /* A warm held back by the readers may wait with slots free, so
         * nobody's release need come to hand it one: it looks again when
         * they have paused (sched_release wakes it when the last one
         * ends), and every SCHED_DEMAND_QUIET_MS meanwhile, for a reader
         * may have made it urgent (read.c raises the flag and waits: a
         * demand waiter then, which passes the hold). */
        uint64_t until = deadline;
        if (w.rq.cls == FETCH_WARM && !warm_may_start(s, now)) {
            uint64_t look = s->demand_active == 0 ? s->demand_quiet_ms
                                                  : now + SCHED_DEMAND_QUIET_MS;
            if (look < until)
                until = look;
        }
        struct timespec ts = ms_timespec(until);
        pthread_cond_timedwait(&w.wake, &s->lock, &ts);
        if (!w.granted && (class_now(&w) == FETCH_DEMAND ||
                           warm_may_start(s, mono_ms())))
            hand_over(s);
    }
    pthread_mutex_unlock(&s->lock);
    pthread_cond_destroy(&w.wake);
    return err;
}

void sched_release(struct sched *s, const struct origin_req *rq)
{
    const struct origin_req *r = rq ? rq : &default_req;
    /* As sched_acquire counted it: an unknown class is demand. */
    unsigned cls = (unsigned)r->cls < FETCH_CLASSES ? (unsigned)r->cls
                                                    : FETCH_DEMAND;
    pthread_mutex_lock(&s->lock);
    if (s->active > 0)
        s->active--;
    if (cls == FETCH_DEMAND && s->demand_active > 0 &&
        --s->demand_active == 0) {
        s->demand_quiet_ms = mono_ms() + SCHED_DEMAND_QUIET_MS;
        /* Its waiters time their wait by demand_quiet_ms now. */
        for (struct sched_waiter *w = s->head[FETCH_WARM]; w; w = w->next)
            pthread_cond_signal(&w->wake);
    }
    hand_over(s);
    pthread_mutex_unlock(&s->lock);
}

void sched_get_stats(struct sched *s, struct sched_stats *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->st;
    out->cap = s->cap;
    out->active = s->active;
    pthread_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------ pacing */

#define BUCKET_MIN_BURST (64u << 10)

void sched_bucket_init(struct sched_bucket *b, uint64_t rate, uint64_t now_ms)
{
    /* The parsers stop at WARM_RATE_MAX; more could overflow below. */
    if (rate > WARM_RATE_MAX)
        rate = WARM_RATE_MAX;
    *b = (struct sched_bucket){.rate = rate, .last_ms = now_ms};
    b->burst = rate > BUCKET_MIN_BURST ? rate : BUCKET_MIN_BURST;
    b->tokens = (int64_t)b->burst;
    pthread_mutex_init(&b->lock, NULL);
}

void sched_bucket_destroy(struct sched_bucket *b)
{
    pthread_mutex_destroy(&b->lock);
}

uint64_t sched_bucket_try(struct sched_bucket *b, uint64_t bytes,
                          uint64_t now_ms)
{
    if (b->rate == 0)
        return 0;
    uint64_t wait = 0;
    pthread_mutex_lock(&b->lock);
    if (now_ms > b->last_ms) {
        /* Whole milliseconds' worth only, so that no fraction is lost. */
        uint64_t ms = now_ms - b->last_ms;
        /* A minute refills any bucket (burst: a second; debt: a chunk,
         * 16 s at the lowest rate), and keeps ms * rate in range. */
        if (ms > 60000)
            ms = 60000;
        uint64_t add = ms * b->rate / 1000;
        if (add > 0) {
            int64_t t = b->tokens + (int64_t)add;
            b->tokens = t > (int64_t)b->burst ? (int64_t)b->burst : t;
            b->last_ms = now_ms;
        }
    }
    if (b->tokens >= 0) {
        b->tokens -= (int64_t)bytes;
    } else {
        uint64_t debt = (uint64_t)-b->tokens;
        wait = (debt * 1000 + b->rate - 1) / b->rate;
        wait = wait ? wait : 1;
    }
    pthread_mutex_unlock(&b->lock);
    return wait;
}

void sched_bucket_take(struct sched_bucket *b, uint64_t bytes)
{
    uint64_t wait;
    while ((wait = sched_bucket_try(b, bytes, mono_ms())) != 0) {
        struct timespec ts = {.tv_sec = (time_t)(wait / 1000),
                              .tv_nsec = (long)(wait % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
}
