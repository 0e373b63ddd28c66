/* File origin: a local or NFS path.
 *
 * A hard NFS mount can block pread()/stat() forever, and the origin contract
 * says no call outlives its deadline.  So every syscall on the origin runs
 * on a small per-origin worker pool; the caller waits with a deadline and,
 * on timeout, walks away (the job then owns its buffer and is freed by the
 * worker whenever the syscall returns).
 *
 * A file of a [directory] source is opened relative to its directory at
 * every stat and read, not just checked when listed: a file listed as
 * regular may later be replaced by a symlink pointing anywhere (a root-only
 * file, another tenant's image), and the mount may be open to other users
 * (allow_other).
 *
 * Scheduling: a free worker takes the oldest job of the highest class
 * (ic-sched.h), a class read when it picks: a pre-warm or readahead
 * read a reader waits on (urgent) counts as demand.  A readahead is
 * refused with -EAGAIN while a demand read is queued, and one that only
 * waited in the queue until its deadline (later demand reads went
 * first) ends with -EAGAIN too: a skip, not a failed fill that the
 * reader after it would meet as EIO.  There is no cap across the templates of one share: each
 * origin's workers are its bound, so that a file that hangs (a stuck
 * NFS server holds its callers in the kernel) holds only its own.
 *
 * Locking: file_origin.lock, one per origin, protects its job queue and
 * workers and each queued job's flags; syscalls on the origin run with it
 * released.  Held only for the bookkeeping, the start of a worker, and
 * the freeing of a job (fillbuf_put, whose pool_lock is a leaf): nothing
 * else is taken under it.  A caller waits on `done` until its deadline
 * (file_destroy for 1 s), a worker on `work` while idle. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ic-fillbuf.h"
#include "ic-log.h"
#include "ic-origin.h"
#include "ic-url.h"
#include "ic-util.h"

#define FILE_WORKERS_MAX 4
#define WORKER_IDLE_MS 30000

enum job_op { OP_STAT, OP_READ };

struct file_job {
    enum job_op op;
    enum fetch_class cls;           /* fixed */
    const int *urgent;              /* origin_req.urgent (may be NULL) */
    uint64_t off;
    size_t len;
    char *buf;                      /* OP_READ: owned by the job */
    struct origin_info expect;
    struct origin_info info;        /* OP_STAT result */
    int result;                     /* 0 or -errno */
    /* started, done, abandoned, next: fo->lock.  result, info and buf are
     * the worker's from started until done, then the caller's (or, if
     * abandoned, freed by the worker). */
    int started, done, abandoned;
    struct file_job *next;
};

struct file_origin {
    char *path;
    char *dir;                      /* [directory] file: its directory, */
    char *name;                     /* its name in it (else both NULL) */
    int follow;                     /* follow_symlinks */
    int refused;                    /* atomic: a refusal was logged */
    pthread_mutex_t lock;           /* protects everything below (the
                                       fields above are fixed) */
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

int origin_file_open_beneath(int dfd, const char *name, int flags,
                             int follow)
{
    /* openat2 refuses O_NOCTTY beside O_PATH. */
    int extra = (flags & O_PATH) ? 0 : O_NOCTTY;
    struct open_how how = {
        .flags = (uint64_t)(flags | extra | O_CLOEXEC),
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
                   (follow ? 0 : RESOLVE_NO_SYMLINKS),
    };
    long fd;
    /* EAGAIN: a rename raced a followed link's "..": try again. */
    for (int i = 0; i < 4; i++)
        if ((fd = syscall(SYS_openat2, dfd, name, &how, sizeof how)) >= 0 ||
            errno != EAGAIN)
            break;
    if (fd >= 0)
        return (int)fd;
    int e = errno;
    static int warned;
    /* EPERM: seccomp filters that refuse the call say so. */
    int none = e == ENOSYS || e == EPERM;
    if (none && !__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
        log_warn("openat2(2) is not available here (kernel older than 5.6, "
                 "a seccomp filter, valgrind): files of [directory] sources "
                 "are opened with O_NOFOLLOW, and follow_symlinks = yes "
                 "serves no symbolic link");
    if (!none)
        return e == EXDEV ? -ELOOP : -e; /* EXDEV: the link leads out */
    /* Without openat2: a name is one component, so O_NOFOLLOW refuses
     * every link, whatever follow_symlinks says.  With O_PATH it opens
     * the link itself instead of failing: refuse that too. */
    fd = openat(dfd, name, flags | extra | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    struct stat st;
    if ((flags & O_PATH) && (fstat((int)fd, &st) < 0 || S_ISLNK(st.st_mode))) {
        close((int)fd);
        return -ELOOP;
    }
    return (int)fd;
}

/* Open the file the way its source allows (O_PATH for a stat).  A FIFO put
 * in a listed file's place must not block the worker: O_NONBLOCK (no
 * effect on regular files). */
static int open_origin(struct file_origin *fo, int flags)
{
    if (fo->dir == NULL) {
        int fd = open(fo->path, flags | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
    }
    /* By path every time, no long-held fd: a remounted share is seen. */
    int dfd = open(fo->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    if (!(flags & O_PATH))
        flags |= O_NONBLOCK;
    int fd = origin_file_open_beneath(dfd, fo->name, flags, fo->follow);
    close(dfd);
    if (fd == -ELOOP) {
        if (!__atomic_exchange_n(&fo->refused, 1, __ATOMIC_RELAXED))
            log_warn("%s: a symbolic link %s; not reading through it",
                     fo->path,
                     fo->follow ? "that leads outside its directory (or "
                                  "openat2(2) is unavailable)"
                                : "(follow_symlinks is off)");
    } else if (fd >= 0) {
        __atomic_store_n(&fo->refused, 0, __ATOMIC_RELAXED);
    }
    return fd;
}

static int do_stat(struct file_origin *fo, struct origin_info *out)
{
    struct stat st;
    if (fo->dir == NULL) {
        if (stat(fo->path, &st) < 0)
            return -errno;
    } else {
        int fd = open_origin(fo, O_PATH);
        if (fd < 0)
            return fd;
        int r = fstat(fd, &st) < 0 ? -errno : 0;
        close(fd);
        if (r < 0)
            return r;
    }
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    make_validator(&st, out);
    return 0;
}

/* The device number leads the validator but does not count: an NFS or
 * FUSE share gets whatever anonymous device number is free when it is
 * mounted, so a remount (at host boot: after imgcache's own mount) would
 * make every template on it look changed, dropping the cache and failing
 * the reads of running VMs.  Inode, size, mtime and ctime (which no one
 * can set back) name one version of one path's file. */
int origin_file_validator_eq(const char *a, const char *b)
{
    const char *pa = strchr(a, ':'), *pb = strchr(b, ':');
    if (pa == NULL || pb == NULL)
        return strcmp(a, b) == 0;
    return strcmp(pa, pb) == 0;
}

static int same_content(int fd, const struct origin_info *expect)
{
    struct stat st;
    struct origin_info now;
    if (fstat(fd, &st) < 0)
        return -errno;
    make_validator(&st, &now);
    return origin_file_validator_eq(now.validator, expect->validator)
               ? 0 : -ESTALE;
}

/* Read exactly len bytes of the expected content: the validator is checked
 * before and after the read so a file changed in place mid-read is caught. */
static int do_read(struct file_origin *fo, struct file_job *j)
{
    int fd = open_origin(fo, O_RDONLY);
    if (fd < 0)
        return fd;
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
        j->result = do_stat(fo, &j->info);
    else
        j->result = do_read(fo, j);
}

static void job_free(struct file_job *j)
{
    fillbuf_put(j->buf);
    free(j);
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

/* The class a job is chosen as now: demand while a reader waits on it
 * (its urgent counter), else its own. */
static enum fetch_class job_class(const struct file_job *j)
{
    if (j->urgent != NULL && __atomic_load_n(j->urgent, __ATOMIC_RELAXED) > 0)
        return FETCH_DEMAND;
    return j->cls;
}

/* The first queued job of the highest class now (lock held).  The queue
 * is in arrival order, and a class is read when a worker picks, not when
 * the job is queued: a pre-warm read that a reader came to wait on is
 * demand from then on (ic-sched.h, urgent). */
static struct file_job *best_job(struct file_origin *fo)
{
    struct file_job *best = NULL;
    for (struct file_job *j = fo->head; j != NULL; j = j->next)
        if (best == NULL || job_class(j) < job_class(best))
            best = j;
    return best;
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
    struct file_job *j = best_job(fo);
    if (j != NULL) {
        unqueue(fo, j);
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

/* Queue a job (in arrival order: best_job picks), starting a worker if
 * none is idle (lock held). */
static void submit(struct file_origin *fo, struct file_job *j)
{
    j->next = NULL;
    if (fo->tail != NULL)
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

/* Whether a demand read (or one a reader waits on) is queued (lock
 * held): then a readahead is refused, as over HTTP. */
static int demand_queued(const struct file_origin *fo)
{
    for (const struct file_job *j = fo->head; j != NULL; j = j->next)
        if (job_class(j) == FETCH_DEMAND)
            return 1;
    return 0;
}

/* Run a job with a deadline.  Returns the job's result, or -ETIMEDOUT after
 * which the job belongs to the worker (or is freed here if never started);
 * a readahead refused, or a readahead or pre-warm that never started by
 * its deadline, is -EAGAIN (the job is the caller's to free). */
static int run_bounded(struct file_origin *fo, struct file_job *j,
                       uint64_t deadline)
{
    struct timespec ts = ms_timespec(deadline);
    enum fetch_class cls = j->cls; /* j may be freed below */
    pthread_mutex_lock(&fo->lock);
    if (j->cls == FETCH_READAHEAD && demand_queued(fo)) {
        pthread_mutex_unlock(&fo->lock);
        return -EAGAIN;
    }
    submit(fo, j);
    while (!j->done) {
        if (pthread_cond_timedwait(&fo->done, &fo->lock, &ts) == ETIMEDOUT &&
            !j->done) {
            int waited = !j->started;
            if (waited) {
                unqueue(fo, j);
                if (cls == FETCH_DEMAND) /* -EAGAIN: the caller's */
                    job_free(j);
            } else {
                j->abandoned = 1;
            }
            pthread_mutex_unlock(&fo->lock);
            /* A readahead or pre-warm that only waited (later demand
             * reads went first) asked nothing of the origin: a skip, not
             * a failure (which the reader after it would meet as EIO). */
            return waited && cls != FETCH_DEMAND ? -EAGAIN : -ETIMEDOUT;
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
                     const struct origin_info *expect,
                     const struct origin_req *rq, uint64_t deadline)
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
    j->cls = rq != NULL && (unsigned)rq->cls < FETCH_CLASSES ? rq->cls
                                                            : FETCH_DEMAND;
    j->urgent = rq != NULL ? rq->urgent : NULL;
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
        free(fo->dir);
        free(fo->name);
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

static struct origin *file_new(const char *path, const char *dir,
                               const char *name, int follow, char *err,
                               size_t errlen)
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
    if (dir != NULL) {
        fo->dir = strdup(dir);
        fo->name = strdup(name);
        fo->follow = follow;
        if (fo->dir == NULL || fo->name == NULL)
            goto nomem;
    }
    pthread_mutex_init(&fo->lock, NULL);
    cond_init_mono(&fo->work);
    cond_init_mono(&fo->done);
    o->ops = &file_ops;
    o->priv = fo;
    o->timeout_ms = 30000;
    o->connect_timeout_ms = 5000;
    return o;
nomem:
    snprintf(err, errlen, "out of memory");
    if (fo) {
        free(fo->path);
        free(fo->dir);
        free(fo->name);
    }
    free(fo);
    if (o) {
        free(o->location);
        free(o->display);
    }
    free(o);
    return NULL;
}

/* A path the operator named: followed like any path (symlinks too). */
struct origin *origin_file_new(const char *path, char *err, size_t errlen)
{
    return file_new(path, NULL, NULL, 0, err, errlen);
}

struct origin *origin_file_new_in_dir(const char *dir, const char *name,
                                      int follow, char *err, size_t errlen)
{
    char *path = url_join(dir, name);
    if (path == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    struct origin *o = file_new(path, dir, name, follow, err, errlen);
    free(path);
    return o;
}
