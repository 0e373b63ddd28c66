/* Index writer thread: group commit of block records (see ic-writer.h). */
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
#include "ic-writer.h"

#define FLUSH_INTERVAL_MS 1000
#define FLUSH_THRESHOLD 4096

enum job_kind { J_REC, J_TMPL, J_DROP, J_EVENT, J_COUNTERS, J_PINS };

struct job {
    enum job_kind kind;
    int file;               /* J_REC ADD: index into batch.files, else -1 */
    struct index_rec rec;   /* J_REC; J_DROP uses rec.tid/rec.gen */
    struct index_tmpl *tmpl;
    char *detail;           /* J_EVENT */
    char ev_kind[16];
    struct index_counters *cnt;   /* J_COUNTERS */
    struct byte_range *ranges;    /* J_PINS */
    size_t nranges;
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
};

struct writer {
    struct index *ix;
    pthread_t thread;
    pthread_mutex_t lock;   /* protects everything below */
    pthread_cond_t wake;    /* writer thread: work or stop */
    pthread_cond_t done;    /* flushers: committed_seq advanced */
    struct batch pending;
    uint64_t queued_seq;    /* jobs queued so far */
    uint64_t committed_seq; /* jobs processed so far */
    int stop;
    int flush_now;
    uint64_t failures; /* record commits that failed so far */
};

static int batch_grow(struct batch *b)
{
    if (b->njobs < b->cap)
        return 0;
    size_t cap = b->cap ? b->cap * 2 : 256;
    struct job *j = realloc(b->jobs, cap * sizeof *j);
    if (j == NULL)
        return -1;
    b->jobs = j;
    b->cap = cap;
    return 0;
}

/* Find or add the data file behind fd in this batch; -1 on failure. */
static int batch_file(struct batch *b, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -1;
    for (size_t i = 0; i < b->nfiles; i++)
        if (b->files[i].dev == st.st_dev && b->files[i].ino == st.st_ino)
            return (int)i;
    if (b->nfiles == b->fcap) {
        size_t cap = b->fcap ? b->fcap * 2 : 16;
        struct file_ref *f = realloc(b->files, cap * sizeof *f);
        if (f == NULL)
            return -1;
        b->files = f;
        b->fcap = cap;
    }
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0)
        return -1;
    b->files[b->nfiles] = (struct file_ref){st.st_dev, st.st_ino, dfd, 0};
    return (int)b->nfiles++;
}

/* Append a job (lock held).  A job that cannot be queued is dropped with a
 * log line: losing an index row only costs a refetch later. */
static void queue_job(struct writer *w, struct job *j)
{
    if (batch_grow(&w->pending) < 0) {
        log_err("index writer: out of memory, dropping a record");
        free(j->tmpl);
        free(j->detail);
        free(j->cnt);
        free(j->ranges);
        return;
    }
    w->pending.jobs[w->pending.njobs++] = *j;
    w->queued_seq++;
    if (w->pending.njobs >= FLUSH_THRESHOLD)
        pthread_cond_signal(&w->wake);
}

void writer_add(struct writer *w, const struct index_rec *rec, int data_fd)
{
    struct job j = {.kind = J_REC, .file = -1, .rec = *rec};
    pthread_mutex_lock(&w->lock);
    if (rec->op == INDEX_ADD) {
        j.file = batch_file(&w->pending, data_fd);
        if (j.file < 0) {
            log_err("index writer: cannot track data file: %s",
                    strerror(errno));
            pthread_mutex_unlock(&w->lock);
            return;
        }
    }
    queue_job(w, &j);
    pthread_mutex_unlock(&w->lock);
}

void writer_tmpl(struct writer *w, const struct index_tmpl *t)
{
    struct job j = {.kind = J_TMPL, .file = -1};
    j.tmpl = malloc(sizeof *j.tmpl);
    if (j.tmpl == NULL)
        return;
    *j.tmpl = *t;
    pthread_mutex_lock(&w->lock);
    queue_job(w, &j);
    pthread_mutex_unlock(&w->lock);
}

void writer_drop_gens(struct writer *w, int64_t tid, uint64_t keep_gen)
{
    struct job j = {.kind = J_DROP, .file = -1};
    j.rec.tid = tid;
    j.rec.gen = keep_gen;
    pthread_mutex_lock(&w->lock);
    queue_job(w, &j);
    pthread_mutex_unlock(&w->lock);
}

void writer_event(struct writer *w, int64_t tid, const char *kind,
                  uint64_t blocks, uint64_t bytes, const char *detail)
{
    struct job j = {.kind = J_EVENT, .file = -1};
    j.rec.tid = tid;
    j.rec.blk = blocks;
    j.rec.atime = bytes;
    snprintf(j.ev_kind, sizeof j.ev_kind, "%s", kind);
    j.detail = detail ? strdup(detail) : NULL;
    pthread_mutex_lock(&w->lock);
    queue_job(w, &j);
    pthread_mutex_unlock(&w->lock);
}

void writer_counters(struct writer *w, int64_t tid,
                     const struct index_counters *c)
{
    struct job j = {.kind = J_COUNTERS, .file = -1};
    j.rec.tid = tid;
    j.cnt = malloc(sizeof *j.cnt);
    if (j.cnt == NULL)
        return;
    *j.cnt = *c;
    pthread_mutex_lock(&w->lock);
    queue_job(w, &j);
    pthread_mutex_unlock(&w->lock);
}

int writer_pins(struct writer *w, int64_t tid, const struct byte_range *r,
                size_t n)
{
    struct job j = {.kind = J_PINS, .file = -1, .nranges = n};
    j.rec.tid = tid;
    j.ranges = malloc((n ? n : 1) * sizeof *r);
    if (j.ranges == NULL)
        return -ENOMEM;
    if (n)
        memcpy(j.ranges, r, n * sizeof *r);
    pthread_mutex_lock(&w->lock);
    queue_job(w, &j);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

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
}

/* Commit a run of consecutive J_REC jobs in one transaction. */
static size_t commit_recs(struct writer *w, struct batch *b, size_t from,
                          struct index_rec *buf)
{
    size_t n = 0, i = from;
    int dels = 0;
    for (; i < b->njobs && b->jobs[i].kind == J_REC; i++) {
        struct job *j = &b->jobs[i];
        if (j->rec.op == INDEX_ADD && b->files[j->file].bad)
            continue;
        dels |= j->rec.op == INDEX_DEL;
        buf[n++] = j->rec;
    }
    if (n == 0)
        return i;
    int r = dels ? index_apply_durable(w->ix, buf, n)
                 : index_apply(w->ix, buf, n);
    if (r < 0) {
        log_err("index writer: commit of %zu records failed; those blocks "
                "will be refetched after a restart", n);
        pthread_mutex_lock(&w->lock);
        w->failures++;
        pthread_mutex_unlock(&w->lock);
    }
    return i;
}

static void process_batch(struct writer *w, struct batch *b)
{
    sync_files(b);
    struct index_rec *buf = malloc((b->njobs ? b->njobs : 1) * sizeof *buf);
    for (size_t i = 0; i < b->njobs;) {
        struct job *j = &b->jobs[i];
        if (j->kind == J_REC && buf != NULL) {
            i = commit_recs(w, b, i, buf);
            continue;
        }
        if (j->kind == J_TMPL && index_tmpl_put(w->ix, j->tmpl) < 0)
            log_err("index writer: cannot record template %s", j->tmpl->name);
        if (j->kind == J_DROP)
            index_drop_other_gens(w->ix, j->rec.tid, j->rec.gen);
        if (j->kind == J_EVENT)
            index_event(w->ix, j->rec.tid, j->ev_kind, j->rec.blk,
                        j->rec.atime, j->detail);
        if (j->kind == J_COUNTERS)
            index_counters_put(w->ix, j->rec.tid, j->cnt);
        if (j->kind == J_PINS &&
            index_pins_replace(w->ix, j->rec.tid, j->ranges, j->nranges) < 0)
            log_err("index writer: cannot record pins");
        free(j->tmpl);
        free(j->detail);
        free(j->cnt);
        free(j->ranges);
        i++;
    }
    free(buf);
    b->njobs = 0;
    b->nfiles = 0;
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct batch work = {0};

    pthread_mutex_lock(&w->lock);
    for (;;) {
        if (w->pending.njobs == 0 && w->stop)
            break;
        if (w->pending.njobs < FLUSH_THRESHOLD && !w->flush_now && !w->stop) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += FLUSH_INTERVAL_MS / 1000;
            pthread_cond_timedwait(&w->wake, &w->lock, &ts);
        }
        w->flush_now = 0;
        /* Swap batches so queueing continues while we commit. */
        struct batch tmp = w->pending;
        w->pending = work;
        work = tmp;
        uint64_t seq = w->queued_seq;
        pthread_mutex_unlock(&w->lock);
        process_batch(w, &work);
        pthread_mutex_lock(&w->lock);
        w->committed_seq = seq;
        pthread_cond_broadcast(&w->done);
    }
    pthread_mutex_unlock(&w->lock);
    free(work.jobs);
    free(work.files);
    return NULL;
}

int writer_start(struct index *ix, struct writer **out)
{
    struct writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return -ENOMEM;
    w->ix = ix;
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&w->done, NULL);
    int e = pthread_create(&w->thread, NULL, writer_main, w);
    if (e != 0) {
        free(w);
        return -e;
    }
    *out = w;
    return 0;
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
    uint64_t want = w->queued_seq, failed = mark;
    w->flush_now = 1;
    pthread_cond_signal(&w->wake);
    while (w->committed_seq < want)
        pthread_cond_wait(&w->done, &w->lock);
    int ret = w->failures != failed ? -EIO : 0;
    pthread_mutex_unlock(&w->lock);
    return ret;
}

void writer_stop(struct writer *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = 1;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    free(w->pending.jobs);
    free(w->pending.files);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->done);
    free(w);
}
