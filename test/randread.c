/* randread — compare random reads of a file through a mount with its origin.
 *
 * usage: randread [-n COUNT] [-s SEED] [-j THREADS] [-d] [-b MAXSIZE]
 *                 FILE_THROUGH_MOUNT ORIGIN_FILE
 *
 * Each of THREADS threads (default 1) opens both files and performs COUNT
 * (default 1000) preads at random offsets with random sizes 1..MAXSIZE
 * (default 1M; suffixes K, M, G) on both, and compares lengths and bytes.
 * Offsets mix uniform picks over the whole file, picks near the end (reads
 * crossing EOF and the short last block), picks straddling 64 KiB
 * boundaries, and, for files larger than 4 GiB, picks past 4 GiB.  Sizes are
 * log-uniform so that small and large reads are both common.  With -d the
 * mount file is opened O_DIRECT and offsets, sizes and buffers are 4 KiB
 * aligned.  The sequence is a function of SEED (default 1) and the thread
 * number.
 *
 * Prints "randread: N reads, M bytes, K mismatches"; exits 0 when all reads
 * matched, 1 on a mismatch or read error (the first one is described on
 * stderr), 2 on usage errors.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ALIGN 4096u
#define BOUNDARY (64u * 1024u)
#define GIB4 (UINT64_C(4) << 30)

struct opts {
    uint64_t count;
    uint64_t seed;
    unsigned threads;
    bool direct;
    uint64_t maxsize;
    const char *mnt_path;
    const char *origin_path;
    uint64_t file_size;
};

struct worker {
    pthread_t tid;
    unsigned index;
    const struct opts *o;
    uint64_t reads;
    uint64_t bytes;
    uint64_t mismatches;
    int error; /* 1 when a read failed or mismatched */
};

static atomic_bool stop_all;
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;
static bool reported; /* protected by report_lock */

static void usage(void)
{
    fprintf(stderr,
            "usage: randread [-n COUNT] [-s SEED] [-j THREADS] [-d] "
            "[-b MAXSIZE] FILE_THROUGH_MOUNT ORIGIN_FILE\n");
    exit(2);
}

/* splitmix64: small, fast and good enough for choosing offsets. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));

    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform in [0, n); n > 0. */
static uint64_t rng_below(uint64_t *state, uint64_t n)
{
    return rng_next(state) % n;
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s)
        return -1;
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    default: break;
    }
    if (*end == 'i' && end[1] == 'B')
        end += 2;
    else if (*end == 'B')
        end++;
    if (*end != '\0')
        return -1;
    *out = v;
    return 0;
}

static uint64_t clamp_offset(uint64_t off, uint64_t size)
{
    return size == 0 ? 0 : (off >= size ? size - 1 : off);
}

/* Pick (offset, length) for one read. */
static void pick(uint64_t *st, const struct opts *o, uint64_t *off,
                 uint64_t *len)
{
    uint64_t size = o->file_size, r = rng_below(st, 100), bits;

    if (size == 0)
        *off = 0;
    else if (r < 45)
        *off = rng_below(st, size);
    else if (r < 60) {
        /* near the end: reads crossing EOF and the short last block */
        uint64_t span = 2 * o->maxsize + BOUNDARY;
        *off = size > span ? size - 1 - rng_below(st, span)
                           : rng_below(st, size);
    } else if (r < 80) {
        /* straddle a 64 KiB block boundary */
        uint64_t b = rng_below(st, size / BOUNDARY + 1) * BOUNDARY;
        uint64_t back = rng_below(st, o->maxsize < BOUNDARY ? o->maxsize
                                                            : BOUNDARY);
        *off = clamp_offset(b > back ? b - back : 0, size);
    } else if (r < 90 && size > GIB4)
        *off = GIB4 + rng_below(st, size - GIB4);
    else if (r < 95)
        *off = rng_below(st, size < 4 * o->maxsize ? size : 4 * o->maxsize);
    else
        *off = rng_below(st, size);

    /* log-uniform size in 1..maxsize */
    bits = 64 - (uint64_t)__builtin_clzll(o->maxsize);
    bits = rng_below(st, bits) + 1;
    *len = rng_below(st, UINT64_C(1) << bits) + 1;
    if (*len > o->maxsize)
        *len = o->maxsize;

    if (o->direct) {
        *off &= ~(uint64_t)(ALIGN - 1);
        *len = (*len + ALIGN - 1) & ~(uint64_t)(ALIGN - 1);
    }
}

/* Read up to len bytes at off, looping over short reads; stops at EOF.
 * Returns bytes read, or -1 with errno set. */
static ssize_t read_full(int fd, void *buf, uint64_t len, uint64_t off)
{
    uint64_t done = 0;

    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done,
                          (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        done += (uint64_t)n;
    }
    return (ssize_t)done;
}

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void report(const char *fmt, ...)
{
    va_list ap;

    atomic_store(&stop_all, true);
    pthread_mutex_lock(&report_lock);
    if (!reported) {
        reported = true;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&report_lock);
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    const struct opts *o = w->o;
    uint64_t st = o->seed * UINT64_C(1000003) + w->index;
    void *mbuf = NULL, *obuf = NULL;
    int mfd, ofd;
    uint64_t i;
    size_t bufsz = (size_t)o->maxsize + ALIGN;

    mfd = open(o->mnt_path, O_RDONLY | O_CLOEXEC | (o->direct ? O_DIRECT : 0));
    if (mfd < 0) {
        report("randread: open %s: %s\n", o->mnt_path, strerror(errno));
        w->error = 1;
        return NULL;
    }
    ofd = open(o->origin_path, O_RDONLY | O_CLOEXEC);
    if (ofd < 0) {
        report("randread: open %s: %s\n", o->origin_path, strerror(errno));
        w->error = 1;
        close(mfd);
        return NULL;
    }
    if (posix_memalign(&mbuf, ALIGN, bufsz) != 0 ||
        posix_memalign(&obuf, ALIGN, bufsz) != 0) {
        report("randread: out of memory\n");
        w->error = 1;
        goto out;
    }

    for (i = 0; i < o->count && !atomic_load(&stop_all); i++) {
        uint64_t off, len, k;
        ssize_t mn, on;

        pick(&st, o, &off, &len);
        on = read_full(ofd, obuf, len, off);
        if (on < 0) {
            report("randread: %s: read offset %" PRIu64 " size %" PRIu64
                   ": %s\n", o->origin_path, off, len, strerror(errno));
            w->error = 1;
            break;
        }
        mn = read_full(mfd, mbuf, len, off);
        if (mn < 0) {
            report("randread: %s: read offset %" PRIu64 " size %" PRIu64
                   ": %s\n", o->mnt_path, off, len, strerror(errno));
            w->error = 1;
            break;
        }
        w->reads++;
        w->bytes += (uint64_t)mn;
        if (mn != on) {
            report("randread: mismatch at offset %" PRIu64 " size %" PRIu64
                   ": mount returned %zd bytes, origin %zd (thread %u, "
                   "read %" PRIu64 ")\n", off, len, mn, on, w->index, i);
            w->mismatches++;
            w->error = 1;
            break;
        }
        if (memcmp(mbuf, obuf, (size_t)mn) != 0) {
            for (k = 0; k < (uint64_t)mn; k++)
                if (((unsigned char *)mbuf)[k] != ((unsigned char *)obuf)[k])
                    break;
            report("randread: mismatch at offset %" PRIu64 " size %" PRIu64
                   ": first differing byte at file offset %" PRIu64
                   " (mount 0x%02x, origin 0x%02x; thread %u, read %"
                   PRIu64 ")\n", off, len, off + k,
                   ((unsigned char *)mbuf)[k], ((unsigned char *)obuf)[k],
                   w->index, i);
            w->mismatches++;
            w->error = 1;
            break;
        }
    }
out:
    free(mbuf);
    free(obuf);
    close(mfd);
    close(ofd);
    return NULL;
}

int main(int argc, char **argv)
{
    struct opts o = { .count = 1000, .seed = 1, .threads = 1,
                      .maxsize = 1u << 20 };
    struct worker *w;
    struct stat ms, os;
    uint64_t reads = 0, bytes = 0, mism = 0, v;
    int c, err = 0;
    unsigned t;

    while ((c = getopt(argc, argv, "n:s:j:db:")) != -1) {
        switch (c) {
        case 'n':
            if (parse_size(optarg, &o.count) < 0)
                usage();
            break;
        case 's':
            if (parse_size(optarg, &o.seed) < 0)
                usage();
            break;
        case 'j':
            if (parse_size(optarg, &v) < 0 || v < 1 || v > 1024)
                usage();
            o.threads = (unsigned)v;
            break;
        case 'd':
            o.direct = true;
            break;
        case 'b':
            if (parse_size(optarg, &o.maxsize) < 0 || o.maxsize < 1 ||
                o.maxsize > (UINT64_C(1) << 30))
                usage();
            break;
        default:
            usage();
        }
    }
    if (argc - optind != 2)
        usage();
    o.mnt_path = argv[optind];
    o.origin_path = argv[optind + 1];
    if (o.direct && o.maxsize < ALIGN)
        o.maxsize = ALIGN;

    if (stat(o.mnt_path, &ms) < 0 || stat(o.origin_path, &os) < 0) {
        fprintf(stderr, "randread: stat: %s\n", strerror(errno));
        return 1;
    }
    if (ms.st_size != os.st_size) {
        fprintf(stderr, "randread: size mismatch: %s is %jd bytes, %s is %jd\n",
                o.mnt_path, (intmax_t)ms.st_size, o.origin_path,
                (intmax_t)os.st_size);
        return 1;
    }
    o.file_size = (uint64_t)os.st_size;

    w = calloc(o.threads, sizeof *w);
    if (w == NULL) {
        perror("randread");
        return 1;
    }
    for (t = 0; t < o.threads; t++) {
        w[t].index = t;
        w[t].o = &o;
        if (pthread_create(&w[t].tid, NULL, worker_run, &w[t]) != 0) {
            fprintf(stderr, "randread: pthread_create failed\n");
            return 1;
        }
    }
    for (t = 0; t < o.threads; t++) {
        pthread_join(w[t].tid, NULL);
        reads += w[t].reads;
        bytes += w[t].bytes;
        mism += w[t].mismatches;
        err |= w[t].error;
    }
    free(w);
    printf("randread: %" PRIu64 " reads, %" PRIu64 " bytes, %" PRIu64
           " mismatches\n", reads, bytes, mism);
    return err ? 1 : 0;
}
