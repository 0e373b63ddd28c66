/* Origin host health: up/down per endpoint, shared by every origin that
 * connects there, with one background probe thread.  See ic-health.h. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ic-health.h"
#include "ic-log.h"
#include "ic-util.h"

/* A probe never takes longer than this (its own connect timeout may be
 * shorter): the thread probes the down entries one after another. */
#define HEALTH_PROBE_TIMEOUT_MS 10000

struct health {
    struct health *next;
    char *key;
    char *display;
    unsigned refs;
    int down;                 /* written atomically: read without the lock */
    unsigned fails;           /* unreachable attempts since the last answer
                               * (as down) */
    uint64_t run_start_ms;    /* start of the first of them */
    uint64_t last_fail_ms;    /* when the last of them ended */
    uint64_t up_ms;           /* when it was last marked up */
    int64_t since;            /* wall clock when it went down */
    uint64_t down_ms;         /* mono_ms() when it went down */
    uint64_t backoff_ms;      /* down: the current probe interval */
    uint64_t next_probe_ms;   /* down: mono_ms() of the next probe */
    int probing;
    health_probe_fn probe;
    void *arg;
    void (*arg_free)(void *);
};

static pthread_mutex_t health_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t health_wake; /* CLOCK_MONOTONIC; a host went down */
static pthread_once_t health_once = PTHREAD_ONCE_INIT;
static struct health *entries;     /* health_lock */
static int prober_running;         /* health_lock */
static int prober_stop;            /* health_lock: health_stop() was called */

static void init_once(void)
{
    cond_init_mono(&health_wake);
}

/* Between half and all of ms: probes of many hosts (and of many daemons
 * probing one origin) spread out, and none comes much sooner than due. */
static uint64_t jitter(uint64_t ms)
{
    static __thread unsigned seed;
    if (seed == 0)
        seed = (unsigned)mono_ms() ^ (unsigned)(uintptr_t)&seed ^ 1u;
    return ms / 2 + (uint64_t)rand_r(&seed) % (ms / 2 + 1);
}

static void entry_free(struct health *h)
{
    if (h->arg_free != NULL)
        h->arg_free(h->arg);
    free(h->key);
    free(h->display);
    free(h);
}

/* Drop a reference (health_lock held); returns the entry if it must be
 * freed once the lock is released. */
static struct health *unref_locked(struct health *h)
{
    if (--h->refs != 0)
        return NULL;
    struct health **pp = &entries;
    while (*pp != h)
        pp = &(*pp)->next;
    *pp = h->next;
    return h;
}

struct health *health_get(const char *key, const char *display,
                          health_probe_fn probe, void *arg,
                          void (*arg_free)(void *))
{
    struct health *h;

    pthread_once(&health_once, init_once);
    pthread_mutex_lock(&health_lock);
    for (h = entries; h != NULL; h = h->next)
        if (strcmp(h->key, key) == 0)
            break;
    if (h != NULL) {
        h->refs++;
        pthread_mutex_unlock(&health_lock);
        if (arg_free != NULL)
            arg_free(arg);
        return h;
    }
    h = calloc(1, sizeof *h);
    if (h != NULL) {
        h->key = strdup(key);
        h->display = strdup(display);
        h->probe = probe;
        h->arg = arg;
        h->arg_free = arg_free;
        if (h->key == NULL || h->display == NULL) {
            entry_free(h);
            h = NULL;
        }
    } else if (arg_free != NULL) {
        arg_free(arg);
    }
    if (h != NULL) {
        h->refs = 1;
        h->next = entries;
        entries = h;
    }
    pthread_mutex_unlock(&health_lock);
    return h;
}

void health_put(struct health *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&health_lock);
    struct health *dead = unref_locked(h);
    pthread_mutex_unlock(&health_lock);
    if (dead != NULL)
        entry_free(dead);
}

int health_is_down(const struct health *h)
{
    return __atomic_load_n(&h->down, __ATOMIC_RELAXED);
}

/* health_lock held. */
static void mark_up_locked(struct health *h, const char *how)
{
    __atomic_store_n(&h->fails, 0, __ATOMIC_RELAXED);
    if (!h->down)
        return;
    __atomic_store_n(&h->down, 0, __ATOMIC_RELAXED);
    h->up_ms = mono_ms();
    log_info("origin host %s is up again (%s) after %.1f s down", h->display,
             how, (double)(mono_ms() - h->down_ms) / 1000);
    h->since = 0;
}

void health_answered(struct health *h)
{
    /* The common case, once per transfer: no lock when nothing changes. */
    if (!__atomic_load_n(&h->down, __ATOMIC_RELAXED) &&
        __atomic_load_n(&h->fails, __ATOMIC_RELAXED) == 0)
        return;
    pthread_mutex_lock(&health_lock);
    mark_up_locked(h, "a request was answered");
    pthread_mutex_unlock(&health_lock);
}

static void *prober(void *arg);

/* Start the probe thread unless it runs (health_lock held).  0, -ESHUTDOWN
 * once health_stop() ran, or pthread_create's -errno (logged). */
static int prober_start_locked(void)
{
    pthread_t th;
    pthread_attr_t at;

    if (prober_running)
        return 0;
    if (prober_stop)
        return -ESHUTDOWN;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int e = pthread_create(&th, &at, prober, NULL);
    pthread_attr_destroy(&at);
    if (e != 0) {
        log_warn("cannot start the origin probe thread: %s", strerror(e));
        return -e;
    }
    prober_running = 1;
    return 0;
}

void health_unreachable(struct health *h, uint64_t start_ms, const char *why)
{
    uint64_t now = mono_ms();

    pthread_mutex_lock(&health_lock);
    /* An attempt begun before the host was last seen up says nothing of
     * it now (it may have failed against the old outage). */
    if (h->down || start_ms < h->up_ms) {
        pthread_mutex_unlock(&health_lock);
        return;
    }
    /* Failures far apart are not one outage: a rarely tried mirror's one
     * refusal today and another next week must not add up. */
    if (h->fails > 0 && now - h->last_fail_ms > HEALTH_DOWN_MS)
        __atomic_store_n(&h->fails, 0, __ATOMIC_RELAXED);
    h->last_fail_ms = now;
    if (__atomic_add_fetch(&h->fails, 1, __ATOMIC_RELAXED) == 1 ||
        start_ms < h->run_start_ms)
        h->run_start_ms = start_ms;
    if (h->fails < HEALTH_DOWN_FAILS &&
        now - h->run_start_ms < HEALTH_DOWN_MS) {
        pthread_mutex_unlock(&health_lock);
        return;
    }
    /* Without a prober nothing would ever mark it up: stay "up" (every
     * miss then costs its retries, as without this module). */
    if (prober_start_locked() == 0) {
        __atomic_store_n(&h->down, 1, __ATOMIC_RELAXED);
        h->since = (int64_t)time(NULL);
        h->down_ms = now;
        h->backoff_ms = HEALTH_PROBE_FIRST_MS;
        h->next_probe_ms = now + jitter(h->backoff_ms);
        log_warn("origin host %s is down (%s; %u attempts in %llu ms): "
                 "misses that need it fail at once until a probe reaches it",
                 h->display, why, h->fails,
                 (unsigned long long)(now - h->run_start_ms));
        pthread_cond_signal(&health_wake);
    }
    pthread_mutex_unlock(&health_lock);
}

int64_t health_down_since(const struct health *h)
{
    pthread_mutex_lock(&health_lock);
    int64_t s = h->down ? h->since : 0;
    pthread_mutex_unlock(&health_lock);
    return s;
}

/* The down entry to probe next, or NULL when none is down. */
static struct health *next_due(void)
{
    struct health *best = NULL;
    for (struct health *h = entries; h != NULL; h = h->next)
        if (h->down && !h->probing &&
            (best == NULL || h->next_probe_ms < best->next_probe_ms))
            best = h;
    return best;
}

static void *prober(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&health_lock);
    for (;;) {
        struct health *h = prober_stop ? NULL : next_due();
        if (h == NULL)
            break; /* nothing down: the next outage starts a new thread */
        uint64_t now = mono_ms();
        if (h->next_probe_ms > now) {
            struct timespec ts = ms_timespec(h->next_probe_ms);
            pthread_cond_timedwait(&health_wake, &health_lock, &ts);
            continue;
        }
        h->refs++;
        h->probing = 1;
        pthread_mutex_unlock(&health_lock);
        int ok = h->probe(h->arg, now + HEALTH_PROBE_TIMEOUT_MS);
        pthread_mutex_lock(&health_lock);
        h->probing = 0;
        if (ok) {
            mark_up_locked(h, "probe");
        } else if (h->down) {
            uint64_t b = h->backoff_ms * 2;
            h->backoff_ms = b > HEALTH_PROBE_MAX_MS ? HEALTH_PROBE_MAX_MS : b;
            h->next_probe_ms = mono_ms() + jitter(h->backoff_ms);
            log_debug("origin host %s: probe failed; next in about %llu s",
                      h->display,
                      (unsigned long long)(h->backoff_ms / 1000));
        }
        struct health *dead = unref_locked(h);
        if (dead != NULL) {
            pthread_mutex_unlock(&health_lock);
            entry_free(dead);
            pthread_mutex_lock(&health_lock);
        }
    }
    prober_running = 0;
    pthread_cond_broadcast(&health_wake); /* health_stop() may wait */
    pthread_mutex_unlock(&health_lock);
    return NULL;
}

void health_stop(void)
{
    pthread_once(&health_once, init_once);
    pthread_mutex_lock(&health_lock);
    prober_stop = 1;
    pthread_cond_broadcast(&health_wake);
    /* A probe in flight ends within its own timeout. */
    struct timespec ts = ms_timespec(mono_ms() + HEALTH_PROBE_TIMEOUT_MS +
                                     1000);
    while (prober_running)
        if (pthread_cond_timedwait(&health_wake, &health_lock, &ts) ==
            ETIMEDOUT)
            break;
    if (prober_running)
        log_warn("origin probe still running at exit");
    pthread_mutex_unlock(&health_lock);
}

int health_list(struct health_info **out)
{
    size_t n = 0, i = 0;
    uint64_t now = mono_ms();

    pthread_mutex_lock(&health_lock);
    for (struct health *h = entries; h != NULL; h = h->next)
        n++;
    struct health_info *v = calloc(n ? n : 1, sizeof *v);
    if (v == NULL) {
        pthread_mutex_unlock(&health_lock);
        return -ENOMEM;
    }
    for (struct health *h = entries; h != NULL; h = h->next, i++) {
        snprintf(v[i].key, sizeof v[i].key, "%s", h->display);
        v[i].down = h->down;
        v[i].since = h->down ? h->since : 0;
        v[i].fails = h->fails;
        v[i].next_probe_in_ms =
            h->down && h->next_probe_ms > now ? h->next_probe_ms - now : 0;
    }
    pthread_mutex_unlock(&health_lock);
    *out = v;
    return (int)n;
}

const char *health_state_name(enum health_state s)
{
    return s == HEALTH_DOWN ? "down" : s == HEALTH_DEGRADED ? "degraded"
                                                            : "up";
}

void health_format(enum health_state s, int64_t since, char *buf, size_t len)
{
    char when[32];
    time_t t = (time_t)since;
    struct tm tm;

    if (s == HEALTH_UP) {
        snprintf(buf, len, "up");
        return;
    }
    if (gmtime_r(&t, &tm) == NULL ||
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(when, sizeof when, "@%lld", (long long)since);
    snprintf(buf, len, "%s since %s", health_state_name(s), when);
}
