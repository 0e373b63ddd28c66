/* powercut.so — an LD_PRELOAD shim that simulates a host power cut.
 *
 * Usage (test/t-powercut.sh):
 *   LD_PRELOAD=test/powercut.so IMGCACHE_POWERCUT_DIR=CACHE_DIR
 *       [IMGCACHE_POWERCUT_AFTER=N] [IMGCACHE_POWERCUT_TRIGGER=FILE]
 *       [IMGCACHE_POWERCUT_KEEP=PERCENT IMGCACHE_POWERCUT_SEED=S]
 *       imgcache -f CONFIG MOUNTPOINT
 *
 * The model.  A file's durable state is its state at its last successful
 * fsync/fdatasync (or when this process first saw it).  Writes are passed
 * through as usual, but before any byte below the durable size is changed
 * for the first time since the last sync, its pre-image (the bytes as they
 * were) is saved here; growth is remembered as the durable size.  At the
 * cut, every tracked file is set back to its durable size and every saved
 * pre-image is written back -- the page cache is "lost" -- and the process
 * ends at once with _exit(137), as if the host lost power.  Nothing the
 * process did after its last sync survives, exactly what a power cut does
 * to writes the kernel had not yet written back.
 *
 * What is tracked: regular files whose path (via /proc/self/fd) is under
 * IMGCACHE_POWERCUT_DIR: the data files, index.db, index.db-wal and
 * index.db-shm.  Files are keyed by (st_dev, st_ino), so fds obtained by
 * dup/fcntl(F_DUPFD) (the index writer syncs through its own dups) count.
 *
 * Intercepted: open, open64, openat, openat64, creat, creat64 (and the
 * _FORTIFY_SOURCE __open*_2 variants) to start tracking a file before it is
 * written; write, pwrite, pwrite64, writev, pwritev, pwritev64, pwritev2,
 * fallocate, fallocate64 (PUNCH_HOLE and ZERO_RANGE save the pre-image of
 * the range; COLLAPSE/INSERT_RANGE of the rest of the file), ftruncate,
 * ftruncate64, truncate, truncate64 (a shrink saves the cut-off bytes);
 * fsync, fdatasync, sync, syncfs (make the files durable); sync_file_range
 * (passed through: it flushes neither metadata nor the disk cache, so it
 * makes nothing durable); rename, renameat, renameat2, unlink, unlinkat,
 * close (passed through; checked for the trigger); splice, vmsplice
 * (passed through: only frozen during the cut, see below).
 *
 * When the cut happens: IMGCACHE_POWERCUT_AFTER=N cuts right after the
 * N-th write-like call (write, pwrite*, writev, pwritev*, fallocate,
 * ftruncate, truncate) on a tracked file, so that write is lost too.
 * IMGCACHE_POWERCUT_TRIGGER=FILE cuts when FILE exists; it is checked on
 * every intercepted call and by a thread every 2 ms (so an idle daemon is
 * cut too).  The cut holds the shim's lock, which every tracked write and
 * sync also holds: a write or a sync is either entirely before the cut or
 * not at all.  The cut first sets a flag that makes every intercepted
 * call block for good: while the pre-images are written back, the other
 * threads keep running, and a FUSE reply (writev on /dev/fuse) carrying
 * bytes read after the restore began must never reach a reader -- after a
 * real power cut nobody reads anything.  Reads of the cache files are not
 * intercepted; their results can only leave the process through an
 * intercepted call.
 *
 * IMGCACHE_POWERCUT_KEEP=P (0..100, default 0) models a disk that wrote
 * back part of the page cache before power went: each saved pre-image is
 * restored only with probability (100 - P)%, and each file keeps its
 * current size with probability P% (then whatever it was extended with
 * stays).  P=0 is the strict model: every non-durable write is lost.
 * IMGCACHE_POWERCUT_SEED seeds that choice.  IMGCACHE_POWERCUT_DIR must
 * exist when the process starts (else the shim exits 134 at once).
 *
 * Limits (also in test/FAULTS.md): directory operations (create, rename,
 * unlink) are durable at once; writes through shared memory maps (SQLite's
 * -shm) are not seen -- SQLite rebuilds the -shm from the WAL after a
 * crash, so its contents do not matter (a thread touching the mapped -shm
 * while the cut truncates it waits in a SIGBUS handler for the exit);
 * O_TRUNC at the first open of a file not yet tracked counts as durable;
 * writes through stdio or other non-interposable paths (glibc internal
 * calls) are not seen; the granularity of loss is a saved range, not a disk sector, and
 * no write is torn inside a range; a file unlinked while tracked is still
 * restored (harmless).  The process must not fork-and-continue (imgcache
 * -f does not); LD_PRELOAD is removed from the environment at load so that
 * helpers the process runs (fusermount3) do not load the shim.
 *
 * On the cut, one line goes to stderr:
 *   powercut: power cut after N tracked writes (M files, K ranges, B bytes
 *   restored)
 */
#define _GNU_SOURCE

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif
#ifndef FALLOC_FL_COLLAPSE_RANGE
#define FALLOC_FL_COLLAPSE_RANGE 0x08
#endif
#ifndef FALLOC_FL_ZERO_RANGE
#define FALLOC_FL_ZERO_RANGE 0x10
#endif
#ifndef FALLOC_FL_INSERT_RANGE
#define FALLOC_FL_INSERT_RANGE 0x20
#endif

#define EXPORT __attribute__((visibility("default")))
#define MAX_FILES 256
#define CUT_STATUS 137
#define POLL_NS 2000000L

/* One saved pre-image: the bytes [off, off + len) as they were at the last
 * sync.  A file's saves are sorted by off and never overlap. */
struct save {
    uint64_t off, len;
    unsigned char *data;
};

struct tfile {
    dev_t dev;
    ino_t ino;
    int fd;                /* our own fd on the inode, for restoring */
    char path[PATH_MAX];   /* as first seen, for messages */
    uint64_t durable_size; /* size at the last sync */
    struct save *v;        /* pre-images of bytes changed since then */
    size_t n, cap;
};

/* Everything below is protected by lock. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct tfile files[MAX_FILES];
static size_t nfiles;
static unsigned long nwrites;
static uint64_t rng_state;

/* Set by the cut before it restores anything: from then on every
 * intercepted call blocks for good, so no thread hands anyone (a FUSE
 * reply is a writev on /dev/fuse) bytes read after the restore began --
 * after a real power cut nobody reads anything. */
static atomic_int cutting;

/* Set once in the constructor, read-only afterwards. */
static int active;
static char dir[PATH_MAX];
static size_t dirlen;
static dev_t dir_dev;
static char trigger[PATH_MAX];
static unsigned long after;
static unsigned keep_pct;

/* ------------------------------------------------------ real functions */

#define REAL(name, ret, ...)                                                   \
    static ret (*real_##name)(__VA_ARGS__);                                    \
    static void resolve_##name(void)                                           \
    {                                                                          \
        if (real_##name == NULL)                                               \
            *(void **)&real_##name = dlsym(RTLD_NEXT, #name);                  \
    }

REAL(open, int, const char *, int, ...)
REAL(open64, int, const char *, int, ...)
REAL(openat, int, int, const char *, int, ...)
REAL(openat64, int, int, const char *, int, ...)
REAL(creat, int, const char *, mode_t)
REAL(creat64, int, const char *, mode_t)
REAL(__open_2, int, const char *, int)
REAL(__open64_2, int, const char *, int)
REAL(__openat_2, int, int, const char *, int)
REAL(__openat64_2, int, int, const char *, int)
REAL(write, ssize_t, int, const void *, size_t)
REAL(pwrite, ssize_t, int, const void *, size_t, off_t)
REAL(pwrite64, ssize_t, int, const void *, size_t, off_t)
REAL(writev, ssize_t, int, const struct iovec *, int)
REAL(pwritev, ssize_t, int, const struct iovec *, int, off_t)
REAL(pwritev64, ssize_t, int, const struct iovec *, int, off_t)
REAL(pwritev2, ssize_t, int, const struct iovec *, int, off_t, int)
REAL(fallocate, int, int, int, off_t, off_t)
REAL(fallocate64, int, int, int, off_t, off_t)
REAL(ftruncate, int, int, off_t)
REAL(ftruncate64, int, int, off_t)
REAL(truncate, int, const char *, off_t)
REAL(truncate64, int, const char *, off_t)
REAL(fsync, int, int)
REAL(fdatasync, int, int)
REAL(sync, void, void)
REAL(syncfs, int, int)
REAL(sync_file_range, int, int, off_t, off_t, unsigned int)
REAL(rename, int, const char *, const char *)
REAL(renameat, int, int, const char *, int, const char *)
REAL(renameat2, int, int, const char *, int, const char *, unsigned int)
REAL(unlink, int, const char *)
REAL(unlinkat, int, int, const char *, int)
REAL(close, int, int)
REAL(splice, ssize_t, int, loff_t *, int, loff_t *, size_t, unsigned int)
REAL(vmsplice, ssize_t, int, const struct iovec *, size_t, unsigned int)

/* ------------------------------------------------------------ messages */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* To stderr without going through our own write(). */
static void say(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof buf)
        n = sizeof buf - 1;
    resolve_write();
    if (real_write(STDERR_FILENO, buf, (size_t)n) < 0)
        return;
}

/* The shim cannot keep its promise (out of memory, a pre-image that cannot
 * be read): stop loudly rather than let a test pass on a weaker model. */
static void die(const char *what)
{
    say("powercut: %s: %s; aborting\n", what, strerror(errno));
    _exit(134);
}

/* -------------------------------------------------------------- random */

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));

    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Whether an event of probability keep_pct% happens. */
static int rng_keep(void)
{
    return keep_pct > 0 && rng_next() % 100 < keep_pct;
}

/* ------------------------------------------------------------ tracking */

static int fd_under_dir(int fd)
{
    char link[64], path[PATH_MAX];
    ssize_t n;

    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n < 0)
        return 0;
    path[n] = '\0';
    return strncmp(path, dir, dirlen) == 0 &&
           (path[dirlen] == '/' || path[dirlen] == '\0');
}

static struct tfile *find_file(dev_t dev, ino_t ino)
{
    for (size_t i = 0; i < nfiles; i++)
        if (files[i].dev == dev && files[i].ino == ino)
            return &files[i];
    return NULL;
}

/* Start tracking the regular file behind fd (lock held); its present state
 * is taken as durable.  NULL if it is not ours. */
static struct tfile *track_fd(int fd, const struct stat *st)
{
    struct tfile *f = find_file(st->st_dev, st->st_ino);
    char link[64];
    ssize_t n;

    if (f != NULL)
        return f;
    if (!fd_under_dir(fd))
        return NULL;
    if (nfiles == MAX_FILES) {
        errno = EMFILE;
        die("too many tracked files");
    }
    f = &files[nfiles];
    memset(f, 0, sizeof *f);
    f->dev = st->st_dev;
    f->ino = st->st_ino;
    f->durable_size = (uint64_t)st->st_size;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, f->path, sizeof f->path - 1);
    f->path[n > 0 ? n : 0] = '\0';
    resolve_open();
    f->fd = real_open(link, O_RDWR | O_CLOEXEC);
    if (f->fd < 0)
        die(f->path);
    nfiles++;
    return f;
}

/* Whether fd may be a file of ours: a regular file on the cache's
 * filesystem.  Needs no lock: sockets, pipes and /dev/fuse (every FUSE
 * reply is a write) cost one fstat. */
static int candidate(int fd, struct stat *st)
{
    return active && fstat(fd, st) == 0 && S_ISREG(st->st_mode) &&
           st->st_dev == dir_dev;
}

/* The tracked file behind fd, or NULL.  Lock held. */
static struct tfile *lookup_fd(int fd)
{
    struct stat st;

    return candidate(fd, &st) ? track_fd(fd, &st) : NULL;
}

/* Save the pre-image of [a, b) of f (lock held): the parts below the
 * durable size not saved since the last sync. */
static void save_range(struct tfile *f, uint64_t a, uint64_t b)
{
    size_t i = 0;
    uint64_t pos = a;

    if (b > f->durable_size)
        b = f->durable_size;
    while (i < f->n && f->v[i].off + f->v[i].len <= a)
        i++;
    while (pos < b) {
        if (i < f->n && f->v[i].off <= pos) {
            pos = f->v[i].off + f->v[i].len;
            i++;
            continue;
        }
        uint64_t end = i < f->n && f->v[i].off < b ? f->v[i].off : b;
        struct save s = {pos, end - pos, malloc(end - pos)};
        if (s.data == NULL)
            die("out of memory");
        /* Bytes past the current end (a shrink not seen) read as zeros,
         * which is what they would be after an extension. */
        ssize_t got = pread(f->fd, s.data, s.len, (off_t)s.off);
        if (got < 0)
            die(f->path);
        memset(s.data + got, 0, s.len - (uint64_t)got);
        if (f->n == f->cap) {
            size_t cap = f->cap ? f->cap * 2 : 64;
            struct save *v = realloc(f->v, cap * sizeof *v);
            if (v == NULL)
                die("out of memory");
            f->v = v;
            f->cap = cap;
        }
        memmove(&f->v[i + 1], &f->v[i], (f->n - i) * sizeof *f->v);
        f->v[i] = s;
        f->n++;
        i++;
        pos = end;
    }
}

/* After a successful sync of f: what it holds now is durable. */
static void make_durable(struct tfile *f)
{
    struct stat st;

    for (size_t i = 0; i < f->n; i++)
        free(f->v[i].data);
    f->n = 0;
    if (fstat(f->fd, &st) == 0)
        f->durable_size = (uint64_t)st.st_size;
}

static uint64_t cur_size(struct tfile *f)
{
    struct stat st;

    return fstat(f->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* ------------------------------------------------------------- the cut */

/* Called first by every intercepted function. */
static void freeze_if_cutting(void)
{
    if (atomic_load(&cutting))
        for (;;)
            pause();
}

static void hang(int sig)
{
    (void)sig;
    for (;;)
        pause();
}

/* Lock held; never returns. */
static void cut(void)
{
    unsigned long ranges = 0;
    uint64_t bytes = 0;
    struct sigaction sa = {.sa_handler = hang};

    atomic_store(&cutting, 1);
    /* Truncating a mapped file (SQLite maps the -shm) makes a thread that
     * touches the lost pages fault: it waits for the _exit instead of
     * ending the process before the restore is complete. */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);

    resolve_ftruncate();
    resolve_pwrite();
    for (size_t i = 0; i < nfiles; i++) {
        struct tfile *f = &files[i];
        if (!rng_keep() && real_ftruncate(f->fd, (off_t)f->durable_size) < 0)
            die(f->path);
        for (size_t k = 0; k < f->n; k++) {
            struct save *s = &f->v[k];
            if (rng_keep())
                continue;
            for (uint64_t done = 0; done < s->len;) {
                ssize_t w = real_pwrite(f->fd, s->data + done, s->len - done,
                                        (off_t)(s->off + done));
                if (w <= 0)
                    die(f->path);
                done += (uint64_t)w;
            }
            ranges++;
            bytes += s->len;
        }
    }
    say("powercut: power cut after %lu tracked writes (%zu files, %lu "
        "ranges, %llu bytes restored)\n",
        nwrites, nfiles, ranges, (unsigned long long)bytes);
    _exit(CUT_STATUS);
}

static int trigger_present(void)
{
    struct stat st;

    return trigger[0] != '\0' && stat(trigger, &st) == 0;
}

/* Lock held: cut now if the trigger file exists. */
static void check_trigger(void)
{
    if (active && trigger_present())
        cut();
}

/* Lock held: count a write-like call on a tracked file. */
static void count_write(void)
{
    nwrites++;
    if (after != 0 && nwrites >= after)
        cut();
    check_trigger();
}

/* Lock not held: cut (taking it) if the trigger file exists. */
static void cut_if_triggered(void)
{
    if (active && trigger_present()) {
        pthread_mutex_lock(&lock);
        cut();
    }
}

static void *watcher(void *arg)
{
    struct timespec ts = {0, POLL_NS};

    for (;;) {
        if (trigger_present()) {
            pthread_mutex_lock(&lock);
            cut();
        }
        nanosleep(&ts, NULL);
    }
    return arg;
}

__attribute__((constructor)) static void powercut_init(void)
{
    const char *d = getenv("IMGCACHE_POWERCUT_DIR");
    const char *s;
    struct stat st;
    pthread_t tid;

    unsetenv("LD_PRELOAD");
    if (d == NULL) {
        say("powercut: IMGCACHE_POWERCUT_DIR unset; inactive\n");
        return;
    }
    /* A shim asked for but unable to work must not let a test pass. */
    if (realpath(d, dir) == NULL || stat(dir, &st) < 0)
        die(d);
    dirlen = strlen(dir);
    dir_dev = st.st_dev;
    s = getenv("IMGCACHE_POWERCUT_AFTER");
    after = s ? strtoul(s, NULL, 10) : 0;
    s = getenv("IMGCACHE_POWERCUT_TRIGGER");
    if (s != NULL)
        snprintf(trigger, sizeof trigger, "%s", s);
    s = getenv("IMGCACHE_POWERCUT_KEEP");
    keep_pct = s ? (unsigned)strtoul(s, NULL, 10) : 0;
    if (keep_pct > 100)
        keep_pct = 100;
    s = getenv("IMGCACHE_POWERCUT_SEED");
    rng_state = s ? strtoull(s, NULL, 10) : 1;
    active = 1;
    if (trigger[0] != '\0' &&
        pthread_create(&tid, NULL, watcher, NULL) != 0)
        die("pthread_create");
}

/* ------------------------------------------------------------- opening */

/* Before an open with O_TRUNC: a tracked file about to be emptied keeps
 * its pre-image (lock held).  An untracked one is taken as durable. */
static void before_trunc_open(int dirfd, const char *path, int flags)
{
    struct stat st;
    struct tfile *f;

    if (!active || !(flags & O_TRUNC) ||
        fstatat(dirfd, path, &st, 0) < 0 || !S_ISREG(st.st_mode))
        return;
    f = find_file(st.st_dev, st.st_ino);
    if (f != NULL)
        save_range(f, 0, (uint64_t)st.st_size);
}

static void after_open(int fd)
{
    if (fd >= 0)
        lookup_fd(fd);
    check_trigger();
}

/* Every open variant: note a truncation, open, track.  The lock is held
 * across the open only with O_TRUNC (an open may block: a FIFO, a slow
 * origin on a FUSE mount). */
#define OPEN_BODY(call, dirfd, path, flags)                                    \
    freeze_if_cutting();                                                       \
    int trunc_ = ((flags) & O_TRUNC) != 0;                                     \
    if (trunc_) {                                                              \
        pthread_mutex_lock(&lock);                                             \
        before_trunc_open(dirfd, path, flags);                                 \
    }                                                                          \
    int fd_ = call;                                                            \
    int e_ = errno;                                                            \
    if (!trunc_)                                                               \
        pthread_mutex_lock(&lock);                                             \
    after_open(fd_);                                                           \
    pthread_mutex_unlock(&lock);                                               \
    errno = e_;                                                                \
    return fd_

static mode_t open_mode(int flags, va_list ap)
{
    int need = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;

    return need ? (mode_t)va_arg(ap, int) : 0;
}

EXPORT int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = open_mode(flags, ap);
    va_end(ap);
    resolve_open();
    OPEN_BODY(real_open(path, flags, mode), AT_FDCWD, path, flags);
}

EXPORT int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = open_mode(flags, ap);
    va_end(ap);
    resolve_open64();
    OPEN_BODY(real_open64(path, flags, mode), AT_FDCWD, path, flags);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = open_mode(flags, ap);
    va_end(ap);
    resolve_openat();
    OPEN_BODY(real_openat(dirfd, path, flags, mode), dirfd, path, flags);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = open_mode(flags, ap);
    va_end(ap);
    resolve_openat64();
    OPEN_BODY(real_openat64(dirfd, path, flags, mode), dirfd, path, flags);
}

EXPORT int creat(const char *path, mode_t mode)
{
    resolve_creat();
    OPEN_BODY(real_creat(path, mode), AT_FDCWD, path, O_TRUNC);
}

EXPORT int creat64(const char *path, mode_t mode)
{
    resolve_creat64();
    OPEN_BODY(real_creat64(path, mode), AT_FDCWD, path, O_TRUNC);
}

EXPORT int __open_2(const char *path, int flags)
{
    resolve___open_2();
    OPEN_BODY(real___open_2(path, flags), AT_FDCWD, path, flags);
}

EXPORT int __open64_2(const char *path, int flags)
{
    resolve___open64_2();
    OPEN_BODY(real___open64_2(path, flags), AT_FDCWD, path, flags);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
    resolve___openat_2();
    OPEN_BODY(real___openat_2(dirfd, path, flags), dirfd, path, flags);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
    resolve___openat64_2();
    OPEN_BODY(real___openat64_2(dirfd, path, flags), dirfd, path, flags);
}

/* ------------------------------------------------------------- writing */

/* Where a write() or writev() on fd will land. */
static uint64_t cur_offset(int fd, struct tfile *f)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl >= 0 && (fl & O_APPEND))
        return cur_size(f);
    off_t o = lseek(fd, 0, SEEK_CUR);
    return o < 0 ? 0 : (uint64_t)o;
}

/* An fd opened O_SYNC/O_DSYNC (or pwritev2 with RWF_DSYNC/RWF_SYNC) makes
 * each write durable when it returns. */
static int sync_writes(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    return fl >= 0 && (fl & (O_SYNC | O_DSYNC)) != 0;
}

static size_t iov_len(const struct iovec *iov, int n)
{
    size_t len = 0;

    for (int i = 0; i < n; i++)
        len += iov[i].iov_len;
    return len;
}

/* Every write variant: under the lock, save the pre-image of the range it
 * will change, write, count; a write to an untracked fd is passed through
 * with the lock held only for the fstat. */
#define WRITE_BODY(type, off_expr, len_expr, call)                             \
    WRITE_BODY_SYNC(type, off_expr, len_expr, call, 0)
#define WRITE_BODY_SYNC(type, off_expr, len_expr, call, dsync)                 \
    freeze_if_cutting();                                                       \
    struct stat st_;                                                           \
    if (!candidate(fd, &st_)) {                                                \
        cut_if_triggered();                                                    \
        return call;                                                           \
    }                                                                          \
    pthread_mutex_lock(&lock);                                                 \
    struct tfile *f_ = track_fd(fd, &st_);                                     \
    if (f_ == NULL) {                                                          \
        check_trigger();                                                       \
        pthread_mutex_unlock(&lock);                                           \
        return call;                                                           \
    }                                                                          \
    uint64_t o_ = (off_expr);                                                  \
    save_range(f_, o_, o_ + (uint64_t)(len_expr));                             \
    type r_ = call;                                                            \
    int e_ = errno;                                                            \
    if (r_ >= 0 && ((dsync) || sync_writes(fd)))                               \
        make_durable(f_);                                                      \
    count_write();                                                             \
    pthread_mutex_unlock(&lock);                                               \
    errno = e_;                                                                \
    return r_

EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
    resolve_write();
    WRITE_BODY(ssize_t, cur_offset(fd, f_), len, real_write(fd, buf, len));
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    resolve_pwrite();
    WRITE_BODY(ssize_t, (uint64_t)off, len, real_pwrite(fd, buf, len, off));
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    resolve_pwrite64();
    WRITE_BODY(ssize_t, (uint64_t)off, len, real_pwrite64(fd, buf, len, off));
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int n)
{
    resolve_writev();
    WRITE_BODY(ssize_t, cur_offset(fd, f_), iov_len(iov, n),
               real_writev(fd, iov, n));
}

EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    resolve_pwritev();
    WRITE_BODY(ssize_t, (uint64_t)off, iov_len(iov, n),
               real_pwritev(fd, iov, n, off));
}

EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int n, off_t off)
{
    resolve_pwritev64();
    WRITE_BODY(ssize_t, (uint64_t)off, iov_len(iov, n),
               real_pwritev64(fd, iov, n, off));
}

EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int n, off_t off,
                        int flags)
{
    resolve_pwritev2();
    WRITE_BODY_SYNC(ssize_t, off == -1 ? cur_offset(fd, f_) : (uint64_t)off,
                    iov_len(iov, n), real_pwritev2(fd, iov, n, off, flags),
                    (flags & (RWF_DSYNC | RWF_SYNC)) != 0);
}

/* The range whose bytes a fallocate may change (its length 0: none). */
static uint64_t falloc_end(struct tfile *f, int mode, off_t off, off_t len)
{
    if (mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE))
        return cur_size(f) > (uint64_t)off ? cur_size(f) : (uint64_t)off;
    if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
        return (uint64_t)off + (uint64_t)len;
    return (uint64_t)off; /* plain allocation: only the size may grow */
}

EXPORT int fallocate(int fd, int mode, off_t off, off_t len)
{
    resolve_fallocate();
    WRITE_BODY(int, (uint64_t)off,
               falloc_end(f_, mode, off, len) - (uint64_t)off,
               real_fallocate(fd, mode, off, len));
}

EXPORT int fallocate64(int fd, int mode, off_t off, off_t len)
{
    resolve_fallocate64();
    WRITE_BODY(int, (uint64_t)off,
               falloc_end(f_, mode, off, len) - (uint64_t)off,
               real_fallocate64(fd, mode, off, len));
}

/* A shrink to len changes the bytes [len, size). */
static uint64_t trunc_len(struct tfile *f, off_t len)
{
    uint64_t size = cur_size(f);

    return size > (uint64_t)len ? size - (uint64_t)len : 0;
}

EXPORT int ftruncate(int fd, off_t len)
{
    resolve_ftruncate();
    WRITE_BODY(int, (uint64_t)len, trunc_len(f_, len),
               real_ftruncate(fd, len));
}

EXPORT int ftruncate64(int fd, off_t len)
{
    resolve_ftruncate64();
    WRITE_BODY(int, (uint64_t)len, trunc_len(f_, len),
               real_ftruncate64(fd, len));
}

/* truncate(path): through an fd of our own, so the same code applies. */
static int truncate_path(const char *path, off_t len, int large)
{
    freeze_if_cutting();
    resolve_open();
    int fd = real_open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    int e;

    if (fd < 0)
        fd = -1;
    pthread_mutex_lock(&lock);
    struct tfile *f = fd >= 0 ? lookup_fd(fd) : NULL;
    if (f != NULL)
        save_range(f, (uint64_t)len, (uint64_t)len + trunc_len(f, len));
    if (large) {
        resolve_truncate64();
        e = real_truncate64(path, len);
    } else {
        resolve_truncate();
        e = real_truncate(path, len);
    }
    int err = errno;
    if (f != NULL)
        count_write();
    else
        check_trigger();
    pthread_mutex_unlock(&lock);
    if (fd >= 0) {
        resolve_close();
        real_close(fd);
    }
    errno = err;
    return e;
}

EXPORT int truncate(const char *path, off_t len)
{
    return truncate_path(path, len, 0);
}

EXPORT int truncate64(const char *path, off_t len)
{
    return truncate_path(path, len, 1);
}

/* ------------------------------------------------------------- syncing */

/* fsync/fdatasync: the sync runs under the lock, so the cut falls either
 * before it (nothing durable) or after it (everything written durable). */
#define SYNC_BODY(call)                                                        \
    freeze_if_cutting();                                                       \
    pthread_mutex_lock(&lock);                                                 \
    check_trigger();                                                           \
    struct tfile *f_ = lookup_fd(fd);                                          \
    int r_ = call;                                                             \
    int e_ = errno;                                                            \
    if (r_ == 0 && f_ != NULL)                                                 \
        make_durable(f_);                                                      \
    pthread_mutex_unlock(&lock);                                               \
    errno = e_;                                                                \
    return r_

EXPORT int fsync(int fd)
{
    resolve_fsync();
    SYNC_BODY(real_fsync(fd));
}

EXPORT int fdatasync(int fd)
{
    resolve_fdatasync();
    SYNC_BODY(real_fdatasync(fd));
}

/* sync(2) and syncfs(2) make every file durable. */
EXPORT void sync(void)
{
    resolve_sync();
    freeze_if_cutting();
    pthread_mutex_lock(&lock);
    check_trigger();
    real_sync();
    for (size_t i = 0; i < nfiles; i++)
        make_durable(&files[i]);
    pthread_mutex_unlock(&lock);
}

EXPORT int syncfs(int fd)
{
    resolve_syncfs();
    freeze_if_cutting();
    pthread_mutex_lock(&lock);
    check_trigger();
    int r = real_syncfs(fd);
    int e = errno;
    if (r == 0)
        for (size_t i = 0; i < nfiles; i++)
            make_durable(&files[i]);
    pthread_mutex_unlock(&lock);
    errno = e;
    return r;
}

/* Not a durability point: passed through. */
EXPORT int sync_file_range(int fd, off_t off, off_t len, unsigned int flags)
{
    resolve_sync_file_range();
    freeze_if_cutting();
    pthread_mutex_lock(&lock);
    check_trigger();
    pthread_mutex_unlock(&lock);
    return real_sync_file_range(fd, off, len, flags);
}

/* ------------------------------------------ names (durable at once) */

#define PASS_BODY(type, call)                                                  \
    freeze_if_cutting();                                                       \
    pthread_mutex_lock(&lock);                                                 \
    check_trigger();                                                           \
    type r_ = call;                                                            \
    int e_ = errno;                                                            \
    pthread_mutex_unlock(&lock);                                               \
    errno = e_;                                                                \
    return r_

EXPORT int rename(const char *from, const char *to)
{
    resolve_rename();
    PASS_BODY(int, real_rename(from, to));
}

EXPORT int renameat(int fd1, const char *from, int fd2, const char *to)
{
    resolve_renameat();
    PASS_BODY(int, real_renameat(fd1, from, fd2, to));
}

EXPORT int renameat2(int fd1, const char *from, int fd2, const char *to,
                     unsigned int flags)
{
    resolve_renameat2();
    PASS_BODY(int, real_renameat2(fd1, from, fd2, to, flags));
}

EXPORT int unlink(const char *path)
{
    resolve_unlink();
    PASS_BODY(int, real_unlink(path));
}

EXPORT int unlinkat(int dirfd, const char *path, int flags)
{
    resolve_unlinkat();
    PASS_BODY(int, real_unlinkat(dirfd, path, flags));
}

/* Closing makes nothing durable; only the trigger is checked. */
EXPORT int close(int fd)
{
    resolve_close();
    freeze_if_cutting();
    cut_if_triggered();
    return real_close(fd);
}

/* Replies may also leave by splice: frozen during the cut like writes. */
EXPORT ssize_t splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out,
                      size_t len, unsigned int flags)
{
    resolve_splice();
    freeze_if_cutting();
    cut_if_triggered();
    return real_splice(fd_in, off_in, fd_out, off_out, len, flags);
}

EXPORT ssize_t vmsplice(int fd, const struct iovec *iov, size_t n,
                        unsigned int flags)
{
    resolve_vmsplice();
    freeze_if_cutting();
    cut_if_triggered();
    return real_vmsplice(fd, iov, n, flags);
}
