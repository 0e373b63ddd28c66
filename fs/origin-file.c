/* File origin: a local or NFS path.
 *
 * A hard NFS mount can block pread()/stat() forever, and the origin contract
 * says no call outlives its deadline.  So every syscall on the origin runs
 * on a small per-origin worker pool; the caller waits with a deadline and,
 * on timeout, walks away (the job then owns its buffer and is freed by the
 * worker whenever the syscall returns). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ic-fillbuf.h"
#include "ic-log.h"
#include "ic-origin.h"
#include "ic-util.h"

#define FILE_WORKERS_MAX 4
#define WORKER_IDLE_MS 30000

enum job_op { OP_STAT, OP_READ };

struct file_job {
    enum job_op op;
    uint64_t off;
    size_t len;
    char *buf;                      /* OP_READ: owned by the job */
    struct origin_info expect;
    struct origin_info info;        /* OP_STAT result */
    int result;                     /* 0 or -errno */
    int started, done, abandoned;
    struct file_job *next;
};

struct file_origin {
    char *path;
    pthread_mutex_t lock;           /* protects everything below */
    pthread_cond_t work;            /* workers: a job was queued */
    pthread_cond_t done;            /* callers: a job finished */
    struct file_job *head, *tail;
    int workers, idle, stopping;
};

static void make_validator(const struct stat *st, struct origin_info *out)
{
    out->size = (uint64_t)st->st_size;
    out->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 +
                    st->st_mtim.tv_nsec;
    int64_t ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 +
                       st->st_ctim.tv_nsec;
    snprintf(out->validator, sizeof out->validator, "%llx:%llx:%llu:%lld:%lld",
             (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
             (unsigned long long)st->st_size, (long long)out->mtime_ns,
             (long long)ctime_ns);
}

static int do_stat(const char *path, struct origin_info *out)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    make_validator(&st, out);
    return 0;
}

static int same_content(int fd, const struct origin_info *expect)
{
    struct stat st;
    struct origin_info now;
    if (fstat(fd, &st) < 0)
        return -errno;
    make_validator(&st, &now);
    return strcmp(now.validator, expect->validator) == 0 ? 0 : -ESTALE;
}

/* Read exactly len bytes of the expected content: the validator is checked
 * before and after the read so a file changed in place mid-read is caught. */
static int do_read(const char *path, struct file_job *j)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = same_content(fd, &j->expect);
    if (r == 0) {
        ssize_t n = pread_full(fd, j->buf, j->len, j->off);
        if (n < 0)
            r = (int)n;
        else if ((size_t)n != j->len)
            r = -ESTALE; /* shorter than its recorded size: it changed */
        else
            r = same_content(fd, &j->expect);
    }
    close(fd);
    return r;
}

static void run_job(struct file_origin *fo, struct file_job *j)
{
    if (j->op == OP_STAT)
        j->result = do_stat(fo->path, &j->info);
    else
        j->result = do_read(fo->path, j);
}

static void job_free(struct file_job *j)
{
    fillbuf_put(j->buf);
    free(j);
}

static struct file_job *next_job(struct file_origin *fo)
{
    while (fo->head == NULL && !fo->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += WORKER_IDLE_MS / 1000;
        fo->idle++;
        int e = pthread_cond_timedwait(&fo->work, &fo->lock, &ts);
        fo->idle--;
        if (e == ETIMEDOUT && fo->head == NULL)
            return NULL;
    }
    struct file_job *j = fo->head;
    if (j != NULL) {
        fo->head = j->next;
        if (fo->head == NULL)
            fo->tail = NULL;
        j->started = 1;
    }
    return j;
}

static void *worker_main(void *arg)
{
    struct file_origin *fo = arg;
    struct file_job *j;

    pthread_mutex_lock(&fo->lock);
    while ((j = next_job(fo)) != NULL) {
        pthread_mutex_unlock(&fo->lock);
        run_job(fo, j);
        pthread_mutex_lock(&fo->lock);
        j->done = 1;
        if (j->abandoned)
            job_free(j);
        else
            pthread_cond_broadcast(&fo->done);
    }
    fo->workers--;
    pthread_cond_broadcast(&fo->done);
    pthread_mutex_unlock(&fo->lock);
    return NULL;
}

/* Queue a job, starting a worker if none is idle (lock held). */
static void submit(struct file_origin *fo, struct file_job *j)
{
    if (fo->tail)
        fo->tail->next = j;
    else
        fo->head = j;
    fo->tail = j;
    if (fo->idle == 0 && fo->workers < FILE_WORKERS_MAX) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &a, worker_main, fo) == 0)
            fo->workers++;
        pthread_attr_destroy(&a);
    }
    pthread_cond_signal(&fo->work);
}

static void unqueue(struct file_origin *fo, struct file_job *j)
{
    struct file_job **pp = &fo->head, *prev = NULL;
    for (; *pp; prev = *pp, pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            if (fo->tail == j)
                fo->tail = prev;
            return;
        }
    }
}

/* Run a job with a deadline.  Returns the job's result, or -ETIMEDOUT after
 * which the job belongs to the worker (or is freed here if never started). */
static int run_bounded(struct file_origin *fo, struct file_job *j,
                       uint64_t deadline)
{
    struct timespec ts = ms_timespec(deadline);
    pthread_mutex_lock(&fo->lock);
    submit(fo, j);
    while (!j->done) {
        if (pthread_cond_timedwait(&fo->done, &fo->lock, &ts) == ETIMEDOUT &&
            !j->done) {
            if (!j->started) {
                unqueue(fo, j);
                job_free(j);
            } else {
                j->abandoned = 1;
            }
            pthread_mutex_unlock(&fo->lock);
            return -ETIMEDOUT;
        }
    }
    pthread_mutex_unlock(&fo->lock);
    int r = j->result;
    return r;
}

static int file_stat(struct origin *o, struct origin_info *out,
                     uint64_t deadline)
{
    struct file_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return -ENOMEM;
    j->op = OP_STAT;
    int r = run_bounded(o->priv, j, deadline);
    if (r == -ETIMEDOUT)
        return r;
    if (r == 0)
        *out = j->info;
    job_free(j);
    return r;
}

static int file_read(struct origin *o, void *buf, uint64_t off, size_t len,
                     const struct origin_info *expect, uint64_t deadline)
{
    struct file_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return -ENOMEM;
    /* The job's own buffer: a worker stuck past the deadline must not
     * write into the caller's.  Page-aligned (an origin on FUSE/NFS with
     * direct I/O then gets one request per read, not a split one) and
     * recycled (fresh pages cost more than the copy out of it). */
    j->buf = fillbuf_get(len);
    if (j->buf == NULL) {
        free(j);
        return -ENOMEM;
    }
    j->op = OP_READ;
    j->off = off;
    j->len = len;
    j->expect = *expect;
    int r = run_bounded(o->priv, j, deadline);
    if (r == -ETIMEDOUT)
        return r;
    if (r == 0)
        memcpy(buf, j->buf, len);
    job_free(j);
    return r;
}

/* Workers still stuck in a syscall keep fo alive: it is leaked rather than
 * freed under them (only happens at exit with a hung origin). */
static void file_destroy(struct origin *o)
{
    struct file_origin *fo = o->priv;
    pthread_mutex_lock(&fo->lock);
    fo->stopping = 1;
    pthread_cond_broadcast(&fo->work);
    uint64_t deadline = mono_ms() + 1000;
    while (fo->workers > 0 && mono_ms() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 50000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&fo->done, &fo->lock, &ts);
    }
    int busy = fo->workers > 0;
    pthread_mutex_unlock(&fo->lock);
    if (!busy) {
        free(fo->path);
        free(fo);
    }
    free(o->location);
    free(o->display);
    free(o);
}

static const struct origin_ops file_ops = {
    .kind = "file",
    .stat = file_stat,
    .read = file_read,
    .destroy = file_destroy,
};

struct origin *origin_file_new(const char *path, char *err, size_t errlen)
{
    struct origin *o = calloc(1, sizeof *o);
    struct file_origin *fo = calloc(1, sizeof *fo);
    if (o == NULL || fo == NULL)
        goto nomem;
    fo->path = strdup(path);
    o->location = strdup(path);
    o->display = strdup(path);
    if (fo->path == NULL || o->location == NULL || o->display == NULL)
        goto nomem;
    pthread_mutex_init(&fo->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&fo->work, &ca);
    pthread_cond_init(&fo->done, &ca);
    pthread_condattr_destroy(&ca);
    o->ops = &file_ops;
    o->priv = fo;
    o->timeout_ms = 30000;
    o->connect_timeout_ms = 5000;
    return o;
nomem:
    snprintf(err, errlen, "out of memory");
    if (fo)
        free(fo->path);
    free(fo);
    if (o) {
        free(o->location);
        free(o->display);
    }
    free(o);
    return NULL;
}
