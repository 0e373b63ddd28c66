/* The stage: recent fill buffers kept for readers (see ic-stage.h). */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ic-stage.h"
#include "ic-util.h"

/* key, off, len, buf and t_ms are fixed once put; the rest is the
 * stage's lock's. */
struct entry {
    uint64_t key, off, len;
    char *buf;
    uint64_t t_ms;
    uint64_t served; /* bytes handed to readers */
    int refs;
    int detached; /* out of the list; freed by its last unref */
    struct entry *next;
};

struct stage {
    pthread_mutex_t lock;      /* protects the fields below but release */
    struct entry *head, *tail; /* oldest first */
    unsigned listed;           /* entries in the list (atomic stores under
                                  the lock; peeked at without it) */
    struct entry *dead;        /* dropped, released once unlocked */
    uint64_t bytes;            /* of every entry not yet released */
    uint64_t cap;
    void (*release)(char *buf); /* fixed */
};

struct stage *stage_new(uint64_t cap, void (*release)(char *buf))
{
    struct stage *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    pthread_mutex_init(&s->lock, NULL);
    s->cap = cap;
    s->release = release;
    return s;
}

/* Release e at the next unlock_release, or mark it for its last reader
 * (lock held). */
static void drop(struct stage *s, struct entry *e)
{
    if (e->refs > 0) {
        e->detached = 1;
        return;
    }
    s->bytes -= e->len;
    e->next = s->dead;
    s->dead = e;
}

/* Unlock, then release what was dropped: a release may unmap 4 MiB (a TLB
 * shootdown), which must not stall every reader waiting on the lock. */
static void unlock_release(struct stage *s)
{
    struct entry *dead = s->dead;
    s->dead = NULL;
    pthread_mutex_unlock(&s->lock);
    while (dead) {
        struct entry *next = dead->next;
        s->release(dead->buf);
        free(dead);
        dead = next;
    }
}

/* Unlink e, whose predecessor is prev (NULL: the head), and drop it. */
static void unlink_drop(struct stage *s, struct entry *prev, struct entry *e)
{
    if (prev)
        prev->next = e->next;
    else
        s->head = e->next;
    if (s->tail == e)
        s->tail = prev;
    __atomic_store_n(&s->listed, s->listed - 1, __ATOMIC_RELAXED);
    drop(s, e);
}

/* Drop the oldest entries until the cap is kept; referenced ones go when
 * their last reader is done (lock held). */
static void shrink(struct stage *s)
{
    while (s->head != NULL && s->bytes > s->cap)
        unlink_drop(s, NULL, s->head);
}

/* Drop the oldest unreferenced entries until `room` more bytes fit: 0, or
 * -ENOSPC with nothing dropped when they cannot (lock held). */
static int make_room(struct stage *s, uint64_t room)
{
    uint64_t freeable = 0;
    for (struct entry *e = s->head; e; e = e->next)
        if (e->refs == 0)
            freeable += e->len;
    if (s->bytes - freeable + room > s->cap)
        return -ENOSPC;
    struct entry *prev = NULL, *e = s->head;
    while (e != NULL && s->bytes + room > s->cap) {
        struct entry *next = e->next;
        if (e->refs == 0)
            unlink_drop(s, prev, e);
        else
            prev = e;
        e = next;
    }
    return 0;
}

void stage_free(struct stage *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    while (s->head)
        unlink_drop(s, NULL, s->head);
    unlock_release(s);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

void stage_set_cap(struct stage *s, uint64_t cap)
{
    pthread_mutex_lock(&s->lock);
    s->cap = cap;
    shrink(s);
    unlock_release(s);
}

void *stage_put(struct stage *s, uint64_t key, uint64_t off, char *buf,
                uint64_t len)
{
    struct entry *e = malloc(sizeof *e);
    pthread_mutex_lock(&s->lock);
    if (e == NULL || len == 0 || make_room(s, len) < 0) {
        unlock_release(s);
        free(e);
        return NULL;
    }
    *e = (struct entry){.key = key, .off = off, .len = len, .buf = buf,
                        .t_ms = mono_ms(), .refs = 1};
    if (s->tail)
        s->tail->next = e;
    else
        s->head = e;
    s->tail = e;
    s->bytes += len;
    __atomic_store_n(&s->listed, s->listed + 1, __ATOMIC_RELAXED);
    unlock_release(s);
    return e;
}

/* The entry of key holding byte p, else NULL and *next_off = where the
 * first entry of key after p (below lim) starts, or lim (lock held). */
static struct entry *find(struct stage *s, uint64_t key, uint64_t p,
                          uint64_t lim, uint64_t *next_off)
{
    *next_off = lim;
    for (struct entry *e = s->head; e; e = e->next) {
        if (e->key != key)
            continue;
        if (e->off <= p && p < e->off + e->len)
            return e;
        if (e->off > p && e->off < *next_off)
            *next_off = e->off;
    }
    return NULL;
}

/* Count n bytes of e handed to a reader; once all of it was, drop it: a
 * stream reads each byte once, and what it has read only takes the room
 * of what it reads next (lock held). */
static void consume(struct stage *s, struct entry *e, uint64_t n)
{
    e->served += n;
    if (e->served < e->len || e->detached)
        return;
    struct entry *prev = NULL;
    for (struct entry *x = s->head; x != e; x = x->next)
        prev = x;
    unlink_drop(s, prev, e);
}

static void unref_locked(struct stage *s, struct entry *e)
{
    if (--e->refs == 0 && e->detached)
        drop(s, e);
}

void stage_unref(struct stage *s, void *ref)
{
    pthread_mutex_lock(&s->lock);
    unref_locked(s, ref);
    unlock_release(s);
}

int64_t stage_read(struct stage *s, uint64_t key, char *dst, uint64_t off,
                   uint64_t len, stage_gap_fn gap, void *arg)
{
    uint64_t p = off, end = off + len, next;
    int64_t copied = 0;
    int rc;
    if (__atomic_load_n(&s->listed, __ATOMIC_RELAXED) == 0) {
        rc = gap(arg, dst, off, len); /* the common case */
        return rc < 0 ? rc : 0;
    }
    while (p < end) {
        pthread_mutex_lock(&s->lock);
        struct entry *e = find(s, key, p, end, &next);
        if (e)
            e->refs++;
        pthread_mutex_unlock(&s->lock);
        if (e == NULL) {
            rc = gap(arg, dst + (p - off), p, next - p);
            if (rc < 0)
                return rc;
            p = next;
            continue;
        }
        uint64_t e_end = e->off + e->len, n = (e_end < end ? e_end : end) - p;
        memcpy(dst + (p - off), e->buf + (p - e->off), n);
        pthread_mutex_lock(&s->lock);
        consume(s, e, n);
        unref_locked(s, e);
        unlock_release(s);
        copied += (int64_t)n;
        p += n;
    }
    return copied;
}

int stage_empty(struct stage *s)
{
    return __atomic_load_n(&s->listed, __ATOMIC_RELAXED) == 0;
}

int stage_peek(struct stage *s, uint64_t key, uint64_t off, uint64_t len,
               const char **data, void **ref)
{
    uint64_t next;
    if (__atomic_load_n(&s->listed, __ATOMIC_RELAXED) == 0)
        return 0;
    pthread_mutex_lock(&s->lock);
    struct entry *e = find(s, key, off, off + len, &next);
    int whole = e != NULL && off + len <= e->off + e->len;
    if (whole) {
        e->refs++;
        *data = e->buf + (off - e->off);
        *ref = e;
        consume(s, e, len); /* freed at the caller's unref */
    }
    pthread_mutex_unlock(&s->lock);
    return whole;
}

void stage_forget(struct stage *s, uint64_t key)
{
    pthread_mutex_lock(&s->lock);
    struct entry *prev = NULL, *e = s->head;
    while (e) {
        struct entry *next = e->next;
        if (e->key == key)
            unlink_drop(s, prev, e);
        else
            prev = e;
        e = next;
    }
    unlock_release(s);
}

void stage_age(struct stage *s, uint64_t now_ms, uint64_t max_age_ms)
{
    pthread_mutex_lock(&s->lock);
    while (s->head && now_ms > s->head->t_ms &&
           now_ms - s->head->t_ms > max_age_ms)
        unlink_drop(s, NULL, s->head);
    unlock_release(s);
}

uint64_t stage_bytes(struct stage *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t b = s->bytes;
    pthread_mutex_unlock(&s->lock);
    return b;
}
