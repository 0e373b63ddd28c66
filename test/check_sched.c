/* Unit tests for fs/origin/sched.c: the fetch scheduler's policy
 * (include/ic-sched.h).
 *
 * Grant order is observed with cap 1: the test holds the one slot, lines
 * up waiter threads one by one (each queued before the next starts), then
 * lets go; each waiter notes its name when it gets the slot and gives it
 * back at once, so the notes are the order in which the slot was handed
 * on.  The token bucket is driven with a clock the test gives. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ic-conf.h"
#include "ic-sched.h"
#include "ic-util.h"

struct waiter {
    struct sched *s;
    struct origin_req rq;
    uint64_t deadline;
    char name;
    int rc;
    pthread_t th;
};

static pthread_mutex_t order_lock = PTHREAD_MUTEX_INITIALIZER;
static char order[64];
static size_t norder;

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    w->rc = sched_acquire(w->s, &w->rq, w->deadline);
    if (w->rc == 0) {
        pthread_mutex_lock(&order_lock);
        order[norder++] = w->name;
        pthread_mutex_unlock(&order_lock);
        sched_release(w->s, &w->rq);
    }
    return NULL;
}

static unsigned waiting(struct sched *s)
{
    struct sched_stats st;
    sched_get_stats(s, &st);
    return st.waiting[0] + st.waiting[1] + st.waiting[2];
}

/* Start a waiter for rq and return once it is queued. */
static void line_up_req(struct waiter *w, struct sched *s,
                        struct origin_req rq, char name)
{
    unsigned before = waiting(s);
    *w = (struct waiter){.s = s, .rq = rq, .deadline = mono_ms() + 10000,
                         .name = name};
    ck_assert_int_eq(pthread_create(&w->th, NULL, waiter_main, w), 0);
    uint64_t end = mono_ms() + 5000;
    while (waiting(s) == before && mono_ms() < end)
        usleep(1000);
    ck_assert_uint_eq(waiting(s), before + 1);
}

static void line_up(struct waiter *w, struct sched *s, enum fetch_class cls,
                    uint64_t group, uint64_t flow, char name)
{
    line_up_req(w, s,
                (struct origin_req){.cls = cls, .group = group, .flow = flow},
                name);
}

static void reset_order(void)
{
    memset(order, 0, sizeof order);
    norder = 0;
}

/* Hold the only slot, line up `n` waiters described by cls/group/flow/
 * name, release, and return the grant order. */
struct spec {
    enum fetch_class cls;
    uint64_t group, flow;
    char name;
};

static const char *run_order(const struct spec *sp, size_t n)
{
    struct sched s;
    struct waiter w[32];
    sched_init(&s, 1);
    reset_order();
    ck_assert_int_eq(sched_acquire(&s, NULL, mono_ms() + 1000), 0);
    for (size_t i = 0; i < n; i++)
        line_up(&w[i], &s, sp[i].cls, sp[i].group, sp[i].flow, sp[i].name);
    sched_release(&s, NULL);
    for (size_t i = 0; i < n; i++) {
        pthread_join(w[i].th, NULL);
        ck_assert_int_eq(w[i].rc, 0);
    }
    struct sched_stats st;
    sched_get_stats(&s, &st);
    ck_assert_uint_eq(st.active, 0);
    sched_destroy(&s);
    return order;
}

/* Demand before warm, whatever the arrival order; FIFO within a flow. */
START_TEST(strict_priority)
{
    const struct spec sp[] = {
        {FETCH_WARM, 1, 1, 'a'},   {FETCH_WARM, 1, 1, 'b'},
        {FETCH_DEMAND, 2, 7, 'X'}, {FETCH_WARM, 1, 1, 'c'},
        {FETCH_DEMAND, 2, 7, 'Y'},
    };
    ck_assert_str_eq(run_order(sp, 5), "XYabc");
}
END_TEST

/* A warm waiter counts as demand while its urgent flag is up (a reader
 * waits for its fill); then fairness decides between it and the other
 * demand waiter, whose template (group 0, the test's own) was served
 * last. */
START_TEST(urgent)
{
    for (int up = 0; up <= 1; up++) {
        struct sched s;
        struct waiter w, d;
        int flag = 0;
        sched_init(&s, 1);
        reset_order();
        ck_assert_int_eq(sched_acquire(&s, NULL, mono_ms() + 1000), 0);
        line_up_req(&w, &s,
                    (struct origin_req){.cls = FETCH_WARM, .group = 5,
                                        .flow = 1, .urgent = &flag},
                    'W');
        line_up(&d, &s, FETCH_DEMAND, 0, 0, 'D');
        /* Raised while both wait: read at each pick. */
        __atomic_store_n(&flag, up, __ATOMIC_RELAXED);
        sched_release(&s, NULL);
        pthread_join(w.th, NULL);
        pthread_join(d.th, NULL);
        ck_assert_str_eq(order, up ? "WD" : "DW");
        sched_destroy(&s);
    }
}
END_TEST

/* Urgency is per request: of two warm fetches of one template (one
 * warm run), only the one whose flag a reader raised goes before the
 * demand read; the other keeps its class and goes after it.  (One flag
 * shared by the template's warm fetches, as before, moved both.) */
START_TEST(urgent_one)
{
    struct sched s;
    struct waiter w1, w2, d;
    int flag1 = 0, flag2 = 0;
    sched_init(&s, 1);
    reset_order();
    ck_assert_int_eq(sched_acquire(&s, NULL, mono_ms() + 1000), 0);
    line_up_req(&w1, &s,
                (struct origin_req){.cls = FETCH_WARM, .group = 5, .flow = 1,
                                    .urgent = &flag1},
                'A');
    line_up_req(&w2, &s,
                (struct origin_req){.cls = FETCH_WARM, .group = 5, .flow = 1,
                                    .urgent = &flag2},
                'B');
    line_up(&d, &s, FETCH_DEMAND, 0, 0, 'D');
    __atomic_store_n(&flag2, 1, __ATOMIC_RELAXED);
    sched_release(&s, NULL);
    pthread_join(w1.th, NULL);
    pthread_join(w2.th, NULL);
    pthread_join(d.th, NULL);
    ck_assert_str_eq(order, "BDA");
    sched_destroy(&s);
}
END_TEST

/* Two flows of one template take turns, however many waiters each has. */
START_TEST(fair_flows)
{
    const struct spec sp[] = {
        {FETCH_DEMAND, 1, 10, 'A'}, {FETCH_DEMAND, 1, 10, 'A'},
        {FETCH_DEMAND, 1, 10, 'A'}, {FETCH_DEMAND, 1, 10, 'A'},
        {FETCH_DEMAND, 1, 11, 'B'}, {FETCH_DEMAND, 1, 11, 'B'},
    };
    ck_assert_str_eq(run_order(sp, 6), "ABABAA");
}
END_TEST

/* A waiter is not passed by flows that came after it, whatever their
 * stamps: flow 5 was served last, then X of flow 5 queued, then Y and
 * Z of flows 1 and 2 (served before 5, as handles whose addresses come
 * back are).  Before, least recently served first handed the slot to Y
 * and Z, and to every such newcomer after them: three readers of one
 * template, each opening a handle per read, kept one of them waiting
 * past origin_timeout (t-sched (e)). */
START_TEST(no_overtaking)
{
    struct sched s;
    struct waiter w[3];
    sched_init(&s, 1);
    reset_order();
    const uint64_t served[] = {1, 2, 5};
    for (size_t i = 0; i < 3; i++) {
        struct origin_req rq = {.cls = FETCH_DEMAND, .group = 1,
                                .flow = served[i]};
        ck_assert_int_eq(sched_acquire(&s, &rq, mono_ms() + 1000), 0);
        sched_release(&s, &rq);
    }
    struct origin_req hold = {.cls = FETCH_DEMAND, .group = 1, .flow = 9};
    ck_assert_int_eq(sched_acquire(&s, &hold, mono_ms() + 1000), 0);
    line_up(&w[0], &s, FETCH_DEMAND, 1, 5, 'X');
    line_up(&w[1], &s, FETCH_DEMAND, 1, 1, 'Y');
    line_up(&w[2], &s, FETCH_DEMAND, 1, 2, 'Z');
    sched_release(&s, &hold);
    for (size_t i = 0; i < 3; i++) {
        pthread_join(w[i].th, NULL);
        ck_assert_int_eq(w[i].rc, 0);
    }
    ck_assert_str_eq(order, "XYZ");
    sched_destroy(&s);
}
END_TEST

/* Templates take turns first: one with three busy handles gets no more
 * than one with a single handle, and its own handles take turns. */
START_TEST(fair_groups)
{
    const struct spec sp[] = {
        {FETCH_WARM, 1, 1, 'a'}, {FETCH_WARM, 1, 1, 'a'},
        {FETCH_WARM, 1, 2, 'b'}, {FETCH_WARM, 1, 2, 'b'},
        {FETCH_WARM, 1, 3, 'c'}, {FETCH_WARM, 1, 3, 'c'},
        {FETCH_WARM, 2, 1, 'Y'}, {FETCH_WARM, 2, 1, 'Y'},
        {FETCH_WARM, 2, 1, 'Y'},
    };
    ck_assert_str_eq(run_order(sp, 9), "aYbYcYabc");
}
END_TEST

struct busy {
    struct sched *s;
    pthread_mutex_t lock;
    unsigned now, max;
};

static void *busy_main(void *arg)
{
    struct busy *b = arg;
    for (int i = 0; i < 5; i++) {
        struct origin_req rq = {.cls = FETCH_DEMAND,
                                .group = (uint64_t)i % 2};
        ck_assert_int_eq(sched_acquire(b->s, &rq, mono_ms() + 10000), 0);
        pthread_mutex_lock(&b->lock);
        if (++b->now > b->max)
            b->max = b->now;
        pthread_mutex_unlock(&b->lock);
        usleep(5000);
        pthread_mutex_lock(&b->lock);
        b->now--;
        pthread_mutex_unlock(&b->lock);
        sched_release(b->s, &rq);
    }
    return NULL;
}

/* Never more than cap in flight; a lowered cap holds from then on. */
START_TEST(cap)
{
    struct sched s;
    struct busy b = {.s = &s};
    pthread_t th[8];
    pthread_mutex_init(&b.lock, NULL);
    sched_init(&s, 3);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, busy_main, &b), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    ck_assert_uint_eq(b.max, 3);

    sched_lower_cap(&s, 2);
    sched_lower_cap(&s, 5); /* higher: ignored */
    b.max = 0;
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, busy_main, &b), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    ck_assert_uint_eq(b.max, 2);
    struct sched_stats st;
    sched_get_stats(&s, &st);
    ck_assert_uint_eq(st.cap, 2);
    ck_assert_uint_eq(st.active, 0);
    ck_assert_uint_eq(st.granted[FETCH_DEMAND], 80);
    sched_destroy(&s);
    pthread_mutex_destroy(&b.lock);
}
END_TEST

/* Readahead takes a free slot, never waits, and never takes one that a
 * demand (or warm) waiter is owed. */
START_TEST(readahead_skip)
{
    struct sched s;
    struct waiter d, wm;
    const struct origin_req ra = {.cls = FETCH_READAHEAD, .group = 1,
                                  .flow = 1};
    sched_init(&s, 2);
    reset_order();
    ck_assert_int_eq(sched_acquire(&s, NULL, mono_ms() + 1000), 0);
    ck_assert_int_eq(sched_acquire(&s, &ra, mono_ms() + 1000), 0);
    /* Both slots busy: refused at once, even with a long deadline. */
    uint64_t t0 = mono_ms();
    ck_assert_int_eq(sched_acquire(&s, &ra, mono_ms() + 5000), -EAGAIN);
    ck_assert_uint_lt(mono_ms() - t0, 4000); /* not the 5 s deadline */
    line_up(&d, &s, FETCH_DEMAND, 2, 1, 'D');
    line_up(&wm, &s, FETCH_WARM, 3, 1, 'W');
    ck_assert_int_eq(sched_acquire(&s, &ra, mono_ms() + 5000), -EAGAIN);
    /* The readahead's slot goes to the demand read, not back to
     * readahead; the next to the warm. */
    sched_release(&s, &ra);
    pthread_join(d.th, NULL);
    ck_assert_int_eq(d.rc, 0);
    sched_release(&s, NULL);
    pthread_join(wm.th, NULL);
    ck_assert_int_eq(wm.rc, 0);
    ck_assert_str_eq(order, "DW");
    /* Nobody waits and a slot is free: readahead goes. */
    ck_assert_int_eq(sched_acquire(&s, &ra, mono_ms() + 1000), 0);
    sched_release(&s, &ra);
    struct sched_stats st;
    sched_get_stats(&s, &st);
    ck_assert_uint_eq(st.skipped, 2);
    ck_assert_uint_eq(st.granted[FETCH_READAHEAD], 2);
    ck_assert_uint_eq(st.active, 0);
    sched_destroy(&s);
}
END_TEST

static void *short_main(void *arg)
{
    struct waiter *w = arg;
    w->rc = sched_acquire(w->s, &w->rq, w->deadline);
    if (w->rc == 0)
        sched_release(w->s, &w->rq);
    return NULL;
}

/* A warm does not start while a demand transfer is in flight, even with
 * a slot free, nor until SCHED_DEMAND_QUIET_MS after the last one ended;
 * an urgent one does; readahead does not pass the held warm. */
static uint64_t granted_at;
static void *stamp_main(void *arg)
{
    struct waiter *w = arg;
    w->rc = sched_acquire(w->s, &w->rq, w->deadline);
    __atomic_store_n(&granted_at, mono_ms(), __ATOMIC_RELAXED);
    if (w->rc == 0)
        sched_release(w->s, &w->rq);
    return NULL;
}

START_TEST(warm_yields)
{
    struct sched s;
    sched_init(&s, 2);
    ck_assert_int_eq(sched_acquire(&s, NULL, mono_ms() + 1000), 0);
    struct waiter w = {.s = &s,
                       .rq = {.cls = FETCH_WARM, .group = 2, .flow = 1},
                       .deadline = mono_ms() + 10000};
    ck_assert_int_eq(pthread_create(&w.th, NULL, stamp_main, &w), 0);
    uint64_t end = mono_ms() + 5000;
    while (waiting(&s) == 0 && mono_ms() < end)
        usleep(1000);
    ck_assert_uint_eq(waiting(&s), 1); /* queued, though a slot is free */
    struct sched_stats st;
    sched_get_stats(&s, &st);
    ck_assert_uint_eq(st.active, 1);
    ck_assert_uint_eq(st.granted[FETCH_WARM], 0);
    /* Readahead never passes a waiting warm, held back or not. */
    const struct origin_req ra = {.cls = FETCH_READAHEAD, .group = 3};
    ck_assert_int_eq(sched_acquire(&s, &ra, mono_ms() + 1000), -EAGAIN);
    /* An urgent warm is chosen as demand: it starts at once. */
    int flag = 1;
    const struct origin_req uw = {.cls = FETCH_WARM, .group = 4,
                                  .urgent = &flag};
    ck_assert_int_eq(sched_acquire(&s, &uw, mono_ms() + 1000), 0);
    sched_release(&s, &uw);
    ck_assert_uint_eq(waiting(&s), 1);
    uint64_t t0 = mono_ms();
    sched_release(&s, NULL); /* the last demand transfer ends */
    pthread_join(w.th, NULL);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_uint_ge(__atomic_load_n(&granted_at, __ATOMIC_RELAXED) - t0,
                      SCHED_DEMAND_QUIET_MS - 1);
    /* Quiet since: a warm starts at once. */
    ck_assert_int_eq(sched_acquire(&s, &w.rq, mono_ms() + 1000), 0);
    sched_release(&s, &w.rq);
    sched_get_stats(&s, &st);
    ck_assert_uint_eq(st.active, 0);
    sched_destroy(&s);
}
END_TEST

/* A warm held back by a demand transfer in flight, with a slot free,
 * starts once a reader makes it urgent, without waiting for that
 * transfer to end (nobody's release comes to hand it the slot). */
START_TEST(held_warm_urgent)
{
    struct sched s;
    sched_init(&s, 2);
    ck_assert_int_eq(sched_acquire(&s, NULL, mono_ms() + 1000), 0);
    int flag = 0;
    struct waiter w = {.s = &s,
                       .rq = {.cls = FETCH_WARM, .group = 2, .flow = 1,
                              .urgent = &flag},
                       .deadline = mono_ms() + 10000};
    __atomic_store_n(&granted_at, 0, __ATOMIC_RELAXED);
    ck_assert_int_eq(pthread_create(&w.th, NULL, stamp_main, &w), 0);
    uint64_t end = mono_ms() + 5000;
    while (waiting(&s) == 0 && mono_ms() < end)
        usleep(1000);
    ck_assert_uint_eq(waiting(&s), 1);
    __atomic_store_n(&flag, 1, __ATOMIC_RELAXED);
    /* Until it is granted, or 5 s: the demand slot is still held. */
    end = mono_ms() + 5000;
    while (__atomic_load_n(&granted_at, __ATOMIC_RELAXED) == 0 &&
           mono_ms() < end)
        usleep(1000);
    ck_assert_uint_ne(__atomic_load_n(&granted_at, __ATOMIC_RELAXED), 0);
    pthread_join(w.th, NULL);
    ck_assert_int_eq(w.rc, 0);
    sched_release(&s, NULL);
    sched_destroy(&s);
}
END_TEST

/* A waiter leaves at its deadline with -ETIMEDOUT; the slot then goes to
 * the next waiter, not to the one that left. */
START_TEST(deadline_leaves_queue)
{
    struct sched s;
    struct waiter quick = {0}, late;
    sched_init(&s, 1);
    reset_order();
    ck_assert_int_eq(sched_acquire(&s, NULL, mono_ms() + 1000), 0);
    uint64_t t0 = mono_ms();
    ck_assert_int_eq(sched_acquire(&s, NULL, t0 + 100), -ETIMEDOUT);
    ck_assert_uint_ge(mono_ms() - t0, 100);
    ck_assert_uint_eq(waiting(&s), 0);
    /* A demand waiter that gives up, ahead of a warm one. */
    quick = (struct waiter){.s = &s, .rq = {FETCH_DEMAND, 1, 1, NULL},
                            .deadline = mono_ms() + 150};
    ck_assert_int_eq(pthread_create(&quick.th, NULL, short_main, &quick), 0);
    uint64_t end = mono_ms() + 5000;
    while (waiting(&s) == 0 && mono_ms() < end)
        usleep(1000);
    line_up(&late, &s, FETCH_WARM, 2, 1, 'W');
    pthread_join(quick.th, NULL);
    ck_assert_int_eq(quick.rc, -ETIMEDOUT);
    ck_assert_uint_eq(waiting(&s), 1);
    sched_release(&s, NULL);
    pthread_join(late.th, NULL);
    ck_assert_int_eq(late.rc, 0);
    ck_assert_str_eq(order, "W");
    struct sched_stats st;
    sched_get_stats(&s, &st);
    ck_assert_uint_eq(st.timeouts, 2);
    ck_assert_uint_eq(st.active, 0);
    sched_destroy(&s);
}
END_TEST

/* The bucket, on the test's clock: a burst, then the rate. */
START_TEST(bucket)
{
    struct sched_bucket b;
    const uint64_t rate = 1u << 20; /* 1 MiB/s: the burst is 1 MiB */

    sched_bucket_init(&b, 0, 0);
    for (int i = 0; i < 100; i++)
        ck_assert_uint_eq(sched_bucket_try(&b, 1u << 30, 0), 0);
    sched_bucket_destroy(&b);

    sched_bucket_init(&b, rate, 1000);
    /* A take beyond the tokens is allowed, and leaves a debt ... */
    ck_assert_uint_eq(sched_bucket_try(&b, 3 * rate / 2, 1000), 0);
    /* ... that the next take waits out: half a second. */
    ck_assert_uint_eq(sched_bucket_try(&b, 4096, 1000), 500);
    ck_assert_uint_gt(sched_bucket_try(&b, 4096, 1400), 0);
    ck_assert_uint_eq(sched_bucket_try(&b, 4096, 1510), 0);
    /* Idle time refills up to the burst, no more. */
    ck_assert_uint_eq(sched_bucket_try(&b, rate, 100000), 0);
    ck_assert_uint_eq(sched_bucket_try(&b, 1, 100000), 0);
    ck_assert_uint_gt(sched_bucket_try(&b, 1, 100000), 0);
    sched_bucket_destroy(&b);

    /* Over 10 s, a greedy taker gets rate * 10 s, give or take a burst
     * and one take. */
    const uint64_t chunk = 256u << 10;
    uint64_t now = 0, got = 0;
    sched_bucket_init(&b, rate, 0);
    while (now < 10000) {
        uint64_t w = sched_bucket_try(&b, chunk, now);
        if (w == 0)
            got += chunk;
        else
            now += w;
    }
    ck_assert_uint_le(got, rate * 10 + rate + chunk);
    ck_assert_uint_ge(got, rate * 10 - 2 * chunk);
    sched_bucket_destroy(&b);
    ck_assert_uint_eq(sched_rate_min(0, 5), 5);
    ck_assert_uint_eq(sched_rate_min(7, 0), 7);
    ck_assert_uint_eq(sched_rate_min(7, 5), 5);
    ck_assert_uint_eq(sched_rate_min(0, 0), 0);

    /* Rates past what the parsers allow are clamped, not overflowed: at
     * 2^63 the bucket used to start in debt and never grant again; and a
     * long idle time does not wrap the refill. */
    sched_bucket_init(&b, UINT64_MAX, 0);
    ck_assert_uint_eq(sched_bucket_try(&b, 1u << 20, 0), 0);
    ck_assert_uint_eq(sched_bucket_try(&b, 1u << 20, 1), 0);
    sched_bucket_destroy(&b);
    sched_bucket_init(&b, WARM_RATE_MAX, 0);
    ck_assert_uint_eq(sched_bucket_try(&b, WARM_RATE_MAX + 4096, 0), 0);
    ck_assert_uint_gt(sched_bucket_try(&b, 1, 0), 0);
    ck_assert_uint_eq(sched_bucket_try(&b, 1, 40ull * 3600 * 1000), 0);
    sched_bucket_destroy(&b);
}
END_TEST

/* sched_bucket_take sleeps out the debt on the real clock. */
START_TEST(bucket_take)
{
    struct sched_bucket b;
    sched_bucket_init(&b, 1u << 20, mono_ms());
    uint64_t t0 = mono_ms();
    sched_bucket_take(&b, (1u << 20) + (200u << 10)); /* burst + 200K */
    sched_bucket_take(&b, 1);
    uint64_t ms = mono_ms() - t0;
    ck_assert_uint_ge(ms, 150);
    ck_assert_uint_lt(ms, 5000);
    sched_bucket_destroy(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sched");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, strict_priority);
    tcase_add_test(tc, fair_flows);
    tcase_add_test(tc, no_overtaking);
    tcase_add_test(tc, urgent);
    tcase_add_test(tc, urgent_one);
    tcase_add_test(tc, warm_yields);
    tcase_add_test(tc, held_warm_urgent);
    tcase_add_test(tc, fair_groups);
    tcase_add_test(tc, cap);
    tcase_add_test(tc, readahead_skip);
    tcase_add_test(tc, deadline_leaves_queue);
    tcase_add_test(tc, bucket);
    tcase_add_test(tc, bucket_take);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
