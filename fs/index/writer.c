/* Index writer thread: group commit of block records (see ic-writer.h).
 *
 * Jobs wait in `pending` (in the order they were queued) until the thread
 * swaps the batch out and runs it: fdatasync of the data files its ADDs
 * name, then the jobs in order, runs of block records in one transaction.
 * When the index is locked by another connection (-EBUSY) the thread stops
 * at the refused job, puts the rest back in front of `pending` and tries
 * again with backoff; only other errors drop records.
 *
 * Coalescing: a block record replaces a pending record of the same block
 * (tid, gen, blk), and counters replace pending counters of the same
 * template.  Only the last operation on a row decides what the row holds
 * (ADD is INSERT OR REPLACE, DEL a delete), so moving it to the earlier
 * one's place changes no outcome: records of other rows are independent,
 * and a J_DROP (delete every other generation's rows) between the two only
 * ever matters for a row of a generation it deletes, which ends absent
 * either way or, at worst, absent instead of a stale row the next start
 * drops.  This keeps what waits for a locked index bounded by the blocks
 * that changed, not by how often they changed. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ic-log.h"
#include "ic-util.h"
#include "ic-writer.h"

#define FLUSH_INTERVAL_MS 1000
#define FLUSH_THRESHOLD 4096
/* Our connection waits this long for a lock per attempt, then we back off
 * (RETRY_MIN_MS doubling to RETRY_MAX_MS) and try again. */
#define WRITER_BUSY_MS 1000
#define RETRY_MIN_MS 250
#define RETRY_MAX_MS 2000
/* Block records waiting at most (after coalescing): 131072 records are
 * 8 GiB of fills in 64K blocks, ~16 MB of memory.  Past it new ADDs are
 * dropped (the block stays served from memory; after a restart it is
 * fetched again); DELs are never dropped. */
#define PENDING_RECS_MAX 131072
#define PENDING_EVENTS_MAX 4096
/* A flusher waits at most FLUSH_BUSY_MS once the index is known to be
 * busy, FLUSH_MAX_MS in any case. */
#define FLUSH_BUSY_MS 1000
#define FLUSH_MAX_MS 30000
/* At stop, how long a locked index is retried before what waits is given
 * up: unmount must finish. */
#define STOP_MAX_MS 5000

enum job_kind { J_REC, J_TMPL, J_DROP, J_EVENT, J_COUNTERS, J_PINS };

/* struct job.file beside an index into batch.files. */
#define FILE_NONE (-1)   /* no data file: not an ADD */
#define FILE_SYNCED (-2) /* an ADD whose data file was fdatasync'd already */

/* What a job holds by kind: J_REC its rec; J_DROP rec.tid and rec.gen
 * (the generation kept); J_EVENT rec.tid, rec.blk (blocks), rec.atime
 * (bytes), ev_kind, data the detail string or NULL; J_TMPL data a struct
 * index_tmpl; J_COUNTERS rec.tid, data a struct index_counters; J_PINS
 * rec.tid, data n struct byte_range (NULL when n is 0).  data is the
 * job's own copy, made by enqueue(). */
struct job {
    enum job_kind kind;
    int file;               /* J_REC ADD: index into batch.files, FILE_* */
    int skip;               /* ADD whose fdatasync failed: never committed */
    struct index_rec rec;
    char ev_kind[16];
    void *data;
    size_t n;
};

static const char *const job_what[] = {
    [J_REC] = "a block record", [J_TMPL] = "a template row",
    [J_DROP] = "a generation drop", [J_EVENT] = "an event",
    [J_COUNTERS] = "counters", [J_PINS] = "pins",
};

struct file_ref {
    dev_t dev;
    ino_t ino;
    int fd;  /* our dup, closed after the batch's fdatasync */
    int bad; /* fdatasync failed: its rows must not be committed */
};

struct batch {
    struct job *jobs;
    size_t njobs, cap;
    struct file_ref *files;
    size_t nfiles, fcap;
    /* Coalescing map: open addressing, job index + 1 (0 empty), over the
     * J_REC and J_COUNTERS jobs.  A job missing from it (no memory) is
     * only not coalesced. */
    uint32_t *map;
    size_t mapcap, mapn;
    size_t nrecs, nevents; /* J_REC and J_EVENT jobs in the batch */
};

struct writer {
    struct index *ix;
    pthread_t thread;
    pthread_mutex_t lock;   /* protects everything below */
    pthread_cond_t wake;    /* writer thread: work or stop */
    pthread_cond_t done;    /* flushers: committed_seq or busy changed */
    struct batch pending;
    uint64_t queued_seq;    /* jobs queued so far */
    uint64_t committed_seq; /* jobs processed so far */
    int stop;
    uint64_t stop_at;       /* mono_ms() deadline for a busy index at stop */
    int flush_now;
    uint64_t failures; /* record commits that failed so far */
    size_t max_recs;   /* PENDING_RECS_MAX (tests lower it) */
    size_t inflight_recs; /* J_REC jobs of the batch being committed */
    /* The index refused the last attempt as locked: */
    int busy;
    uint64_t busy_since, retry_at, backoff; /* mono_ms() */
    uint64_t busy_recs;   /* records committed since it became busy */
    uint64_t dropped;     /* ADDs and events dropped past the bound ... */
    int drop_logged;      /* ... since the last full commit; logged once */
};

static void job_free(struct job *j)
{
    free(j->data);
}

/* ------------------------------------------------------------ batches */

static int batch_grow(struct batch *b)
{
    if (b->njobs < b->cap)
        return 0;
    size_t cap = b->cap ? b->cap * 2 : 256;
    struct job *j = realloc(b->jobs, cap * sizeof *j);
    if (j == NULL)
        return -ENOMEM;
    b->jobs = j;
    b->cap = cap;
    return 0;
}

/* Find or add the data file behind fd in this batch: its index, or
 * -errno. */
static int batch_file(struct batch *b, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    for (size_t i = 0; i < b->nfiles; i++)
        if (b->files[i].dev == st.st_dev && b->files[i].ino == st.st_ino)
            return (int)i;
    if (b->nfiles == b->fcap) {
        size_t cap = b->fcap ? b->fcap * 2 : 16;
        struct file_ref *f = realloc(b->files, cap * sizeof *f);
        if (f == NULL)
            return -ENOMEM;
        b->files = f;
        b->fcap = cap;
    }
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0)
        return -errno;
    b->files[b->nfiles] = (struct file_ref){st.st_dev, st.st_ino, dfd, 0};
    return (int)b->nfiles++;
}

static int coalescable(const struct job *j)
{
    return j->kind == J_REC || j->kind == J_COUNTERS;
}

static int same_key(const struct job *a, const struct job *b)
{
    if (a->kind != b->kind || a->rec.tid != b->rec.tid)
        return 0;
    return a->kind == J_COUNTERS ||
           (a->rec.gen == b->rec.gen && a->rec.blk == b->rec.blk);
}

static size_t key_hash(const struct job *j)
{
    uint64_t h = (uint64_t)j->rec.tid * 0x9e3779b97f4a7c15ull;
    if (j->kind == J_REC)
        h ^= (j->rec.gen * 0xc2b2ae3d27d4eb4full) ^
             (j->rec.blk * 0x165667b19e3779f9ull);
    h ^= (uint64_t)j->kind;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return (size_t)(h ^ (h >> 32));
}

/* The map slot holding j's key, or the empty slot where it would go. */
static uint32_t *map_slot(struct batch *b, const struct job *j)
{
    size_t mask = b->mapcap - 1;
    for (size_t i = key_hash(j) & mask;; i = (i + 1) & mask) {
        uint32_t *s = &b->map[i];
        if (*s == 0 || same_key(&b->jobs[*s - 1], j))
            return s;
    }
}

/* Room for one more key (load at most 1/2).  0 or -ENOMEM. */
static int map_reserve(struct batch *b)
{
    if (2 * (b->mapn + 1) <= b->mapcap)
        return 0;
    size_t cap = b->mapcap ? b->mapcap * 2 : 1024;
    uint32_t *m = calloc(cap, sizeof *m);
    if (m == NULL)
        return -ENOMEM;
    uint32_t *old = b->map;
    size_t oldcap = b->mapcap;
    b->map = m;
    b->mapcap = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i])
            *map_slot(b, &b->jobs[old[i] - 1]) = old[i];
    free(old);
    return 0;
}

static void map_clear(struct batch *b)
{
    if (b->map)
        memset(b->map, 0, b->mapcap * sizeof *b->map);
    b->mapn = 0;
}

/* The job coalesced with j, or NULL.  *slot is where j's key goes when it
 * is appended (NULL: not tracked). */
static struct job *batch_find(struct batch *b, const struct job *j,
                              uint32_t **slot)
{
    *slot = NULL;
    if (!coalescable(j))
        return NULL;
    /* Look before growing: when the map cannot grow (out of memory), a
     * job whose key is tracked must still coalesce, or an older job of
     * that key, replaced later, would end up after it (a DEL after an ADD
     * reversed).  One appended untracked has no earlier job of its key. */
    if (b->map != NULL) {
        uint32_t *s = map_slot(b, j);
        if (*s)
            return &b->jobs[*s - 1];
    }
    if (map_reserve(b) < 0)
        return NULL;
    *slot = map_slot(b, j); /* again: growing moved the slots */
    return NULL;
}

/* Append j (its key's slot from batch_find).  0 or -ENOMEM. */
static int batch_append(struct batch *b, const struct job *j, uint32_t *slot)
{
    if (batch_grow(b) < 0)
        return -ENOMEM;
    b->jobs[b->njobs++] = *j;
    if (slot) {
        *slot = (uint32_t)b->njobs;
        b->mapn++;
    }
    b->nrecs += j->kind == J_REC;
    b->nevents += j->kind == J_EVENT;
    return 0;
}

/* Forget the batch's jobs (their allocations are the caller's affair). */
static void batch_reset(struct batch *b)
{
    b->njobs = 0;
    b->nfiles = 0;
    b->nrecs = 0;
    b->nevents = 0;
    map_clear(b);
}

static void batch_free(struct batch *b)
{
    for (size_t i = 0; i < b->njobs; i++)
        job_free(&b->jobs[i]);
    for (size_t i = 0; i < b->nfiles; i++)
        close(b->files[i].fd);
    free(b->jobs);
    free(b->files);
    free(b->map);
    *b = (struct batch){0};
}

/* ------------------------------------------------------------ queueing */

/* Past the bound only what memory in the daemon makes up for is dropped:
 * an ADD (the block table still serves the block; the index learns of it
 * never, so it is fetched again after a restart) or an event (reports
 * undercount).  DELs, template rows, pins are always kept. */
static int over_bound(const struct writer *w, const struct job *j)
{
    if (j->kind == J_REC)
        return j->rec.op == INDEX_ADD &&
               w->pending.nrecs + w->inflight_recs >= w->max_recs;
    return j->kind == J_EVENT && w->pending.nevents >= PENDING_EVENTS_MAX;
}

static void drop_job(struct writer *w, struct job *j)
{
    job_free(j);
    w->dropped++;
    if (w->drop_logged)
        return;
    w->drop_logged = 1;
    log_err("index writer: %zu block records wait for the index (it is "
            "locked or too slow); dropping new fills and events until it "
            "catches up: those blocks are served, but will be fetched "
            "again after a restart", w->pending.nrecs + w->inflight_recs);
}

/* Queue a job (lock held), or free it: 0, -ENOBUFS past the bound (logged
 * once), -ENOMEM (logged). */
static int queue_job(struct writer *w, struct job *j)
{
    struct batch *b = &w->pending;
    uint32_t *slot;
    struct job *old = batch_find(b, j, &slot);

    w->queued_seq++;
    if (old != NULL) {
        job_free(old);
        *old = *j;
        return 0;
    }
    if (over_bound(w, j)) {
        drop_job(w, j);
        return -ENOBUFS;
    }
    if (batch_append(b, j, slot) < 0) {
        log_err("index writer: out of memory, dropping %s",
                job_what[j->kind]);
        job_free(j);
        return -ENOMEM;
    }
    if (b->njobs >= FLUSH_THRESHOLD)
        pthread_cond_signal(&w->wake);
    return 0;
}

/* The one way in, for every kind of job: copy the payload (size bytes at
 * data; none when size is 0) into j, track an ADD's data file, queue.
 * 0, or -errno with nothing queued (logged). */
static int enqueue(struct writer *w, struct job j, const void *data,
                   size_t size, int data_fd)
{
    int rc = 0;

    if (size > 0) {
        j.data = malloc(size);
        if (j.data == NULL) {
            log_err("index writer: out of memory, dropping %s",
                    job_what[j.kind]);
            return -ENOMEM;
        }
        memcpy(j.data, data, size);
    }
    pthread_mutex_lock(&w->lock);
    if (j.kind == J_REC && j.rec.op == INDEX_ADD) {
        rc = batch_file(&w->pending, data_fd);
        if (rc < 0)
            log_err("index writer: cannot track data file: %s",
                    strerror(-rc));
        else
            j.file = rc;
    }
    if (rc >= 0)
        rc = queue_job(w, &j);
    else
        job_free(&j);
    pthread_mutex_unlock(&w->lock);
    return rc;
}

int writer_add(struct writer *w, const struct index_rec *rec, int data_fd)
{
    struct job j = {.kind = J_REC, .file = FILE_NONE, .rec = *rec};
    return enqueue(w, j, NULL, 0, data_fd);
}

int writer_tmpl(struct writer *w, const struct index_tmpl *t)
{
    struct job j = {.kind = J_TMPL, .file = FILE_NONE};
    return enqueue(w, j, t, sizeof *t, -1);
}

int writer_drop_gens(struct writer *w, int64_t tid, uint64_t keep_gen,
                     uint64_t keep_also)
{
    struct job j = {.kind = J_DROP, .file = FILE_NONE};
    j.rec.tid = tid;
    j.rec.gen = keep_gen;
    j.rec.blk = keep_also;
    return enqueue(w, j, NULL, 0, -1);
}

int writer_event(struct writer *w, int64_t tid, const char *kind,
                 uint64_t blocks, uint64_t bytes, const char *detail)
{
    struct job j = {.kind = J_EVENT, .file = FILE_NONE};
    j.rec.tid = tid;
    j.rec.blk = blocks;
    j.rec.atime = bytes;
    snprintf(j.ev_kind, sizeof j.ev_kind, "%s", kind);
    return enqueue(w, j, detail, detail ? strlen(detail) + 1 : 0, -1);
}

int writer_counters(struct writer *w, int64_t tid,
                    const struct index_counters *c)
{
    struct job j = {.kind = J_COUNTERS, .file = FILE_NONE};
    j.rec.tid = tid;
    return enqueue(w, j, c, sizeof *c, -1);
}

int writer_pins(struct writer *w, int64_t tid, const struct class_range *r,
                size_t n)
{
    struct job j = {.kind = J_PINS, .file = FILE_NONE, .n = n};
    j.rec.tid = tid;
    return enqueue(w, j, r, n * sizeof *r, -1);
}

/* ------------------------------------------------------------ committing */

/* Make the batch's new bytes durable.  Afterwards no job refers to a file:
 * an ADD is FILE_SYNCED or skipped, so the jobs can wait through retries
 * and be merged with newer ones without their files. */
static void sync_files(struct batch *b)
{
    for (size_t i = 0; i < b->nfiles; i++) {
        if (fdatasync(b->files[i].fd) < 0) {
            log_err("index writer: fdatasync of a data file failed: %s; "
                    "its new blocks stay out of the index",
                    strerror(errno));
            b->files[i].bad = 1;
        }
        close(b->files[i].fd);
    }
    for (size_t i = 0; i < b->njobs; i++) {
        struct job *j = &b->jobs[i];
        if (j->kind != J_REC || j->file < 0)
            continue;
        j->skip = b->files[j->file].bad;
        j->file = FILE_SYNCED;
    }
    b->nfiles = 0;
}

/* Commit the run of consecutive J_REC jobs at *at in one transaction; *at
 * moves past it unless the index was busy (-EBUSY: retry from *at).
 * *recs counts the records committed. */
static int commit_recs(struct writer *w, struct batch *b, size_t *at,
                       struct index_rec *buf, uint64_t *recs)
{
    size_t n = 0, i = *at;
    int dels = 0;
    for (; i < b->njobs && b->jobs[i].kind == J_REC; i++) {
        struct job *j = &b->jobs[i];
        if (j->skip)
            continue;
        dels |= j->rec.op == INDEX_DEL;
        buf[n++] = j->rec;
    }
    int r = 0;
    if (n)
        r = dels ? index_apply_durable(w->ix, buf, n)
                 : index_apply(w->ix, buf, n);
    if (r == -EBUSY)
        return r;
    if (r < 0) {
        log_err("index writer: commit of %zu records failed; those blocks "
                "will be refetched after a restart", n);
        pthread_mutex_lock(&w->lock);
        w->failures++;
        pthread_mutex_unlock(&w->lock);
    } else {
        *recs += n;
    }
    *at = i;
    return 0;
}

/* Run one job that is not a block record.  -EBUSY to retry it. */
static int run_job(struct writer *w, struct job *j)
{
    int r = 0;
    switch (j->kind) {
    case J_TMPL: {
        struct index_tmpl *t = j->data;
        r = index_tmpl_put(w->ix, t);
        if (r < 0 && r != -EBUSY)
            log_err("index writer: cannot record template %s", t->name);
        break;
    }
    case J_DROP:
        r = index_drop_other_gens(w->ix, j->rec.tid, j->rec.gen,
                                  j->rec.blk);
        break;
    case J_EVENT:
        r = index_event(w->ix, j->rec.tid, j->ev_kind, j->rec.blk,
                        j->rec.atime, j->data);
        break;
    case J_COUNTERS:
        r = index_counters_put(w->ix, j->rec.tid, j->data);
        break;
    case J_PINS:
        r = index_pins_replace(w->ix, j->rec.tid, j->data, j->n);
        if (r < 0 && r != -EBUSY)
            log_err("index writer: cannot record pins");
        break;
    case J_REC:
        break;
    }
    return r == -EBUSY ? r : 0;
}

/* Sync the batch's files, then run its jobs in order from the first.
 * Returns 0 when every job ran (or was given up on an error), or -EBUSY
 * with *done jobs run: the rest must be tried again.  Jobs run are freed.
 * *recs counts the block records committed. */
static int process_batch(struct writer *w, struct batch *b, size_t *done,
                         uint64_t *recs)
{
    sync_files(b);
    struct index_rec *buf = malloc((b->nrecs ? b->nrecs : 1) * sizeof *buf);
    size_t i = 0;
    int r = 0;
    if (buf == NULL && b->nrecs) {
        /* A DEL among them may be an eviction's: it must hear of this. */
        log_err("index writer: out of memory; %zu block records will be "
                "refetched after a restart", b->nrecs);
        pthread_mutex_lock(&w->lock);
        w->failures++;
        pthread_mutex_unlock(&w->lock);
    }
    while (i < b->njobs && r == 0) {
        struct job *j = &b->jobs[i];
        if (j->kind == J_REC) {
            size_t from = i;
            if (buf != NULL) {
                r = commit_recs(w, b, &i, buf, recs);
            } else {
                while (i < b->njobs && b->jobs[i].kind == J_REC)
                    i++;
            }
            for (size_t k = from; k < i; k++)
                job_free(&b->jobs[k]);
            continue;
        }
        r = run_job(w, j);
        if (r == 0)
            job_free(&b->jobs[i++]);
    }
    free(buf);
    *done = i;
    return r;
}

/* Put the jobs of `work` from `from` on back in front of the pending ones
 * (lock held), coalescing as queue_job would.  work keeps no jobs. */
static void requeue(struct writer *w, struct batch *work, size_t from)
{
    struct batch nb = *work, newer = w->pending;

    memmove(nb.jobs, nb.jobs + from, (nb.njobs - from) * sizeof *nb.jobs);
    size_t n = nb.njobs - from;
    /* nb's file table is empty (sync_files); newer's moves over whole, so
     * the file indices of newer's ADDs stay valid. */
    free(nb.files);
    nb.files = newer.files;
    nb.nfiles = newer.nfiles;
    nb.fcap = newer.fcap;
    batch_reset(&nb);
    nb.nfiles = newer.nfiles;
    for (size_t i = 0; i < n; i++) {
        struct job j = nb.jobs[i];
        uint32_t *slot;
        nb.njobs = i;
        /* Unique keys already: only the map entry is needed. */
        batch_find(&nb, &j, &slot);
        batch_append(&nb, &j, slot); /* in place: cannot fail */
    }
    nb.njobs = n;
    for (size_t i = 0; i < newer.njobs; i++) {
        struct job *j = &newer.jobs[i];
        uint32_t *slot;
        struct job *old = batch_find(&nb, j, &slot);
        if (old != NULL) {
            job_free(old);
            *old = *j;
        } else if (batch_append(&nb, j, slot) < 0) {
            log_err("index writer: out of memory, dropping a record");
            job_free(j);
        }
    }
    free(newer.jobs);
    free(newer.map);
    w->pending = nb;
    *work = (struct batch){0};
}

static uint64_t count_recs(const struct batch *b, size_t from)
{
    uint64_t n = 0;
    for (size_t i = from; i < b->njobs; i++)
        n += b->jobs[i].kind == J_REC && !b->jobs[i].skip;
    return n;
}

/* The index refused `work` at job `at` as locked (lock held). */
static void note_busy(struct writer *w, struct batch *work, size_t at)
{
    uint64_t now = mono_ms();
    if (!w->busy) {
        w->busy = 1;
        w->busy_since = now;
        w->busy_recs = 0;
        w->backoff = RETRY_MIN_MS;
        log_warn("index writer: the index is locked by another process; "
                 "holding %llu block records (and what follows) until it "
                 "is free, retrying", (unsigned long long)
                 (count_recs(work, at) + w->pending.nrecs));
    } else if (w->backoff < RETRY_MAX_MS) {
        w->backoff *= 2;
    }
    w->retry_at = now + w->backoff;
    requeue(w, work, at);
    pthread_cond_broadcast(&w->done);
}

/* A whole batch ran (lock held). */
static void note_done(struct writer *w, uint64_t seq)
{
    if (w->busy) {
        log_info("index writer: the index is writable again after %.1f s; "
                 "committed %llu block records that waited%s",
                 (double)(mono_ms() - w->busy_since) / 1000.0,
                 (unsigned long long)w->busy_recs,
                 w->dropped ? " (some were dropped, see above)" : "");
        w->busy = 0;
    }
    if (w->drop_logged)
        log_info("index writer: caught up; %llu records had been dropped",
                 (unsigned long long)w->dropped);
    w->drop_logged = 0;
    w->dropped = 0;
    w->committed_seq = seq;
    pthread_cond_broadcast(&w->done);
}

/* Stopping, and the index is still locked past STOP_MAX_MS: give up what
 * waits, saying so (lock held). */
static void give_up(struct writer *w, struct batch *work, size_t at)
{
    uint64_t n = count_recs(work, at) + w->pending.nrecs;
    log_err("index writer: the index is still locked at exit (for %.1f s); "
            "%llu block records are not recorded: those blocks will be "
            "fetched again after a restart",
            (double)(mono_ms() - w->busy_since) / 1000.0,
            (unsigned long long)n);
    for (size_t i = at; i < work->njobs; i++)
        job_free(&work->jobs[i]);
    batch_reset(work);
    batch_free(&w->pending);
    w->failures++;
    w->committed_seq = w->queued_seq;
    pthread_cond_broadcast(&w->done);
}

/* Wait for the next attempt at a busy index, or for the stop deadline
 * (lock held). */
static void wait_retry(struct writer *w)
{
    for (;;) {
        uint64_t until = w->retry_at;
        if (w->stop && w->stop_at < until)
            until = w->stop_at;
        if (mono_ms() >= until)
            return;
        struct timespec ts = ms_timespec(until);
        pthread_cond_timedwait(&w->wake, &w->lock, &ts);
    }
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct batch work = {0};

    pthread_mutex_lock(&w->lock);
    for (;;) {
        if (w->pending.njobs == 0 && w->stop)
            break;
        if (w->busy) {
            wait_retry(w);
        } else if (w->pending.njobs < FLUSH_THRESHOLD && !w->flush_now &&
                   !w->stop) {
            struct timespec ts = ms_timespec(mono_ms() + FLUSH_INTERVAL_MS);
            pthread_cond_timedwait(&w->wake, &w->lock, &ts);
        }
        w->flush_now = 0;
        /* Swap batches so queueing continues while we commit. */
        struct batch tmp = w->pending;
        w->pending = work;
        work = tmp;
        map_clear(&w->pending);
        uint64_t seq = w->queued_seq, recs = 0;
        size_t done;
        w->inflight_recs = work.nrecs;
        pthread_mutex_unlock(&w->lock);
        int r = process_batch(w, &work, &done, &recs);
        pthread_mutex_lock(&w->lock);
        w->inflight_recs = 0;
        if (w->busy)
            w->busy_recs += recs;
        if (r == -EBUSY && w->stop && mono_ms() >= w->stop_at) {
            give_up(w, &work, done);
            break;
        }
        if (r == -EBUSY) {
            note_busy(w, &work, done);
            continue;
        }
        batch_reset(&work);
        note_done(w, seq);
    }
    pthread_mutex_unlock(&w->lock);
    batch_free(&work);
    return NULL;
}

int writer_start(struct index *ix, struct writer **out)
{
    struct writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return -ENOMEM;
    w->ix = ix;
    w->max_recs = PENDING_RECS_MAX;
    index_retry_busy(ix, WRITER_BUSY_MS);
    pthread_mutex_init(&w->lock, NULL);
    cond_init_mono(&w->wake);
    cond_init_mono(&w->done);
    int e = pthread_create(&w->thread, NULL, writer_main, w);
    if (e != 0) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        pthread_cond_destroy(&w->done);
        free(w);
        return -e;
    }
    *out = w;
    return 0;
}

void writer_set_max_pending(struct writer *w, size_t recs)
{
    pthread_mutex_lock(&w->lock);
    w->max_recs = recs;
    pthread_mutex_unlock(&w->lock);
}

uint64_t writer_mark(struct writer *w)
{
    pthread_mutex_lock(&w->lock);
    uint64_t f = w->failures;
    pthread_mutex_unlock(&w->lock);
    return f;
}

int writer_flush(struct writer *w)
{
    return writer_flush_since(w, writer_mark(w));
}

int writer_flush_since(struct writer *w, uint64_t mark)
{
    pthread_mutex_lock(&w->lock);
    uint64_t want = w->queued_seq, start = mono_ms();
    int ret = 0;
    w->flush_now = 1;
    pthread_cond_signal(&w->wake);
    while (w->committed_seq < want) {
        uint64_t now = mono_ms();
        if (w->busy && now >= start + FLUSH_BUSY_MS) {
            ret = -EBUSY;
            break;
        }
        if (now >= start + FLUSH_MAX_MS) {
            ret = -ETIMEDOUT;
            break;
        }
        /* Woken by a commit or a busy attempt; the bound is rechecked. */
        struct timespec ts = ms_timespec(
            start + (w->busy ? FLUSH_BUSY_MS : FLUSH_MAX_MS));
        pthread_cond_timedwait(&w->done, &w->lock, &ts);
    }
    if (ret == 0 && w->failures != mark)
        ret = -EIO;
    pthread_mutex_unlock(&w->lock);
    return ret;
}

void writer_stop(struct writer *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = 1;
    w->stop_at = mono_ms() + STOP_MAX_MS;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    batch_free(&w->pending);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->done);
    free(w);
}
