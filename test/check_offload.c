/* Unit tests for fs/base/offload.c: every job runs exactly once and has
 * ended when offload_wait returns; a job no helper has taken is run by its
 * caller instead of waiting behind a busy helper. */
#include "config.h"

#include <check.h>
#include <pthread.h>
#include <stdlib.h>

#include "ic-offload.h"
#include "ic-util.h"

struct count_arg {
    int runs;  /* atomic: times the job ran */
    int ended; /* atomic: set as the job's last step */
};

static void count_job(void *arg)
{
    struct count_arg *c = arg;
    __atomic_add_fetch(&c->runs, 1, __ATOMIC_SEQ_CST);
    volatile unsigned x = 0;
    for (unsigned i = 0; i < 20000; i++) /* long enough to overlap */
        x += i;
    __atomic_store_n(&c->ended, 1, __ATOMIC_SEQ_CST);
}

#define POSTERS 4
#define JOBS 2000

static void *poster_main(void *arg)
{
    struct count_arg *c = arg;
    for (int i = 0; i < JOBS; i++) {
        struct offload_job j = {.fn = count_job, .arg = &c[i]};
        offload_post(&j);
        count_job(&(struct count_arg){0}); /* the caller's own half */
        (void)offload_wait(&j);
        /* The job has ended, on a helper or here. */
        ck_assert_int_eq(__atomic_load_n(&c[i].ended, __ATOMIC_SEQ_CST), 1);
    }
    return NULL;
}

START_TEST(each_job_once)
{
    struct count_arg *c = calloc(POSTERS * JOBS, sizeof *c);
    ck_assert_ptr_nonnull(c);
    pthread_t th[POSTERS];
    for (int p = 0; p < POSTERS; p++)
        ck_assert_int_eq(pthread_create(&th[p], NULL, poster_main,
                                        c + p * JOBS), 0);
    for (int p = 0; p < POSTERS; p++)
        pthread_join(th[p], NULL);
    for (int i = 0; i < POSTERS * JOBS; i++)
        ck_assert_int_eq(c[i].runs, 1);
    free(c);
}
END_TEST

/* Jobs that hold a helper until the test opens the gate. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond;
static int gate_open, gate_holding;

static void gate_job(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&gate_lock);
    gate_holding++;
    pthread_cond_broadcast(&gate_cond);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
}

START_TEST(busy_helpers_run_it_here)
{
    cond_init_mono(&gate_cond);
    /* As many gate jobs as there can be helpers: every helper is held
     * (those no helper takes stay queued). */
    struct offload_job g[OFFLOAD_MAX_HELPERS];
    for (int i = 0; i < OFFLOAD_MAX_HELPERS; i++) {
        g[i] = (struct offload_job){.fn = gate_job};
        offload_post(&g[i]);
    }
    /* Until a helper holds one (bounded: a helper that never starts a
     * job fails here, not by hanging). */
    uint64_t until = mono_ms() + 10000;
    pthread_mutex_lock(&gate_lock);
    while (gate_holding == 0 && mono_ms() < until) {
        struct timespec ts = ms_timespec(until);
        pthread_cond_timedwait(&gate_cond, &gate_lock, &ts);
    }
    int held = gate_holding;
    pthread_mutex_unlock(&gate_lock);
    ck_assert_int_ge(held, 1);
    /* With every helper held, a new job runs on its caller, at once. */
    struct count_arg c = {0};
    struct offload_job j = {.fn = count_job, .arg = &c};
    offload_post(&j);
    ck_assert_int_eq(offload_wait(&j), 0);
    ck_assert_int_eq(c.runs, 1);
    ck_assert_int_eq(c.ended, 1);
    pthread_mutex_lock(&gate_lock);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
    int by_helper = 0;
    for (int i = 0; i < OFFLOAD_MAX_HELPERS; i++)
        by_helper += offload_wait(&g[i]);
    /* The held ones ended on helpers (which may have taken the queued
     * ones too once the gate opened); every gate job ran once. */
    ck_assert_int_ge(by_helper, held);
    ck_assert_int_eq(gate_holding, OFFLOAD_MAX_HELPERS);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("offload");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, each_job_once);
    tcase_add_test(tc, busy_helpers_run_it_here);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
