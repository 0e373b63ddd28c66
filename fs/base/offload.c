/* Offload helpers (ic-offload.h). */
#include "config.h"

#include <pthread.h>
#include <unistd.h>

#include "ic-offload.h"

enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_MINE };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER; /* queue not empty */
static pthread_cond_t done = PTHREAD_COND_INITIALIZER; /* a job ended */
static struct offload_job *head, *tail;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int helpers; /* started; 0: every job runs on its caller */

static void *helper_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (head == NULL)
            pthread_cond_wait(&work, &lock);
        struct offload_job *j = head;
        head = j->next;
        if (head == NULL)
            tail = NULL;
        j->state = JOB_RUNNING;
        pthread_mutex_unlock(&lock);
        j->fn(j->arg);
        pthread_mutex_lock(&lock);
        j->state = JOB_DONE;
        pthread_cond_broadcast(&done);
    }
    return NULL;
}

static void start_helpers(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    long n = cpus > 1 ? cpus - 1 : 1;
    if (n > OFFLOAD_MAX_HELPERS)
        n = OFFLOAD_MAX_HELPERS;
    pthread_attr_t a;
    if (pthread_attr_init(&a) != 0)
        return;
    (void)pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    for (long i = 0; i < n; i++) {
        pthread_t th;
        if (pthread_create(&th, &a, helper_main, NULL) != 0)
            break;
        helpers++;
    }
    pthread_attr_destroy(&a);
}

void offload_post(struct offload_job *job)
{
    pthread_once(&once, start_helpers);
    job->next = NULL;
    pthread_mutex_lock(&lock);
    if (helpers == 0) {
        job->state = JOB_MINE; /* no helper: offload_wait runs it */
        pthread_mutex_unlock(&lock);
        return;
    }
    job->state = JOB_QUEUED;
    if (tail != NULL)
        tail->next = job;
    else
        head = job;
    tail = job;
    pthread_cond_signal(&work);
    pthread_mutex_unlock(&lock);
}

int offload_wait(struct offload_job *job)
{
    pthread_mutex_lock(&lock);
    if (job->state == JOB_QUEUED) { /* not taken: take it back */
        struct offload_job **p = &head, *prev = NULL;
        while (*p != job) {
            prev = *p;
            p = &(*p)->next;
        }
        *p = job->next;
        if (tail == job)
            tail = prev;
        job->state = JOB_MINE;
    }
    if (job->state == JOB_MINE) {
        pthread_mutex_unlock(&lock);
        job->fn(job->arg);
        return 0;
    }
    while (job->state != JOB_DONE)
        pthread_cond_wait(&done, &lock);
    pthread_mutex_unlock(&lock);
    return 1;
}
