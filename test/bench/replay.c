/* replay — replay an ordered read trace as N concurrent readers (a
 * `make bench-storm` helper).
 *
 * usage: replay [-j N] [-l LATFILE] [-b] [-c REF] FILE TRACE
 *
 * TRACE is an imgcache-trace v1 file, as `imgcache-pin --record --trace`
 * writes it: a first line "# imgcache-trace v1", further "#" comment lines,
 * then one line "T_US OFFSET LENGTH" per read in the order the reads
 * arrived.  Each of N threads (default 1) opens FILE and reads every range
 * of TRACE in recorded order, back to back: no think time, so the figure is
 * what the storage costs, not what the guest spent computing between reads.
 * Reads use O_DIRECT with an aligned buffer, as QEMU with cache=none does; a
 * range whose offset or length is not a multiple of 512 cannot be read
 * O_DIRECT and is read from a second, buffered descriptor.  -b reads
 * everything buffered.  The threads start together (a barrier after every
 * open), so N replayers are N VMs booting at the same moment.
 *
 * A pread returning less than asked is continued for the rest, as QEMU's
 * file driver does; end of file or an error before the range is complete
 * fails that replayer, which stops there.
 *
 * Prints one line per replayer
 *     replayer I elapsed_us E bytes B reads R
 * then the median and p99 (nearest rank) of the replayers' elapsed times:
 *     median_us M p99_us P
 * -c REF compares every read's bytes with REF's at the same offset (the
 * time spent comparing is taken out of the figures, though it still spaces
 * one replayer's reads apart), so a bench
 * that replays through a cache also proves it served the origin's bytes.
 * -l writes every read's latency in microseconds, one per line (replayer 0's
 * reads in trace order, then replayer 1's, ...), to LATFILE.
 * Exits 0 if every read of every replayer returned its full length, 1
 * otherwise (the first failing range of each failing replayer is named on
 * stderr), 2 on usage errors or a bad trace.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TRACE_MAGIC "# imgcache-trace v1"
#define ALIGN 4096
#define DIRECT_ALIGN 512
/* One range is one pread, as the guest asked for it; above this it is read
 * in pieces so that 32 replayers of a trace with a huge range stay small. */
#define MAX_PREAD (64u << 20)

struct range {
    uint64_t off;
    uint64_t len;
};

struct replayer {
    int idx;
    pthread_t tid;
    int fd_direct; /* -1 with -b */
    int fd_buffered;
    void *buf;
    uint64_t *lat; /* one per range */
    uint64_t elapsed_us;
    uint64_t bytes;
    uint64_t reads;
    int failed;
    void *ref; /* -c: REF's bytes of the range being checked */
};

static const char *file_path;
static int ref_fd = -1;
static struct range *ranges;
static size_t nranges;
static pthread_barrier_t start_barrier;

static void usage(void)
{
    fprintf(stderr, "usage: replay [-j N] [-l LATFILE] [-b] [-c REF] "
                    "FILE TRACE\n");
    exit(2);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A decimal field with nothing else in it: "12x" or "-1" is a bad trace,
 * not a silent zero. */
static int parse_u64(const char *s, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* Loads TRACE into ranges[]; on a bad trace names the line and exits 2. */
static void load_trace(const char *path, uint64_t *max_len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    char *line = NULL;
    size_t cap = 0, alloc = 0;
    ssize_t n;
    unsigned long lineno = 0;
    *max_len = 0;
    while ((n = getline(&line, &cap, f)) != -1) {
        lineno++;
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        if (lineno == 1) {
            if (strcmp(line, TRACE_MAGIC) != 0) {
                fprintf(stderr, "replay: %s:1: not an imgcache trace "
                                "(expected \"%s\")\n", path, TRACE_MAGIC);
                exit(2);
            }
            continue;
        }
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char *f1 = strtok(line, " \t"), *f2 = strtok(NULL, " \t"),
             *f3 = strtok(NULL, " \t"), *f4 = strtok(NULL, " \t");
        uint64_t t, off, len;
        if (!f1 || !f2 || !f3 || f4 || parse_u64(f1, &t) ||
            parse_u64(f2, &off) || parse_u64(f3, &len)) {
            fprintf(stderr, "replay: %s:%lu: expected \"T_US OFFSET "
                            "LENGTH\" (three decimal numbers)\n",
                    path, lineno);
            exit(2);
        }
        if (len == 0 || off + len < off) {
            fprintf(stderr, "replay: %s:%lu: length %" PRIu64
                            " at offset %" PRIu64 " is not a read\n",
                    path, lineno, len, off);
            exit(2);
        }
        if (nranges == alloc) {
            alloc = alloc ? alloc * 2 : 1024;
            ranges = realloc(ranges, alloc * sizeof *ranges);
            if (!ranges) {
                fprintf(stderr, "replay: out of memory\n");
                exit(2);
            }
        }
        ranges[nranges].off = off;
        ranges[nranges].len = len;
        nranges++;
        if (len > *max_len)
            *max_len = len;
    }
    if (ferror(f)) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    if (lineno == 0) {
        fprintf(stderr, "replay: %s: empty, not an imgcache trace\n", path);
        exit(2);
    }
    free(line);
    fclose(f);
}

/* -c: the got bytes just read at range i + done against REF's. */
static int check_bytes(struct replayer *r, size_t i, uint64_t done,
                       size_t got)
{
    const struct range *rg = &ranges[i];
    off_t at = (off_t)(rg->off + done);
    size_t have = 0;
    while (have < got) {
        ssize_t n = pread(ref_fd, (char *)r->ref + have, got - have,
                          at + (off_t)have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    if (have == got && memcmp(r->buf, r->ref, got) == 0)
        return 0;
    size_t k = 0;
    while (k < have && ((const char *)r->buf)[k] == ((const char *)r->ref)[k])
        k++;
    fprintf(stderr, "replay: replayer %d: range %zu (offset %" PRIu64
                    " length %" PRIu64 "): %s at offset %" PRIu64 "\n",
            r->idx, i + 1, rg->off, rg->len,
            have == got ? "bytes differ from REF" : "REF is shorter",
            (uint64_t)at + k);
    r->failed = 1;
    return -1;
}

static void *run(void *arg)
{
    struct replayer *r = arg;
    pthread_barrier_wait(&start_barrier);
    uint64_t t0 = now_us(), check_us = 0;
    for (size_t i = 0; i < nranges; i++) {
        const struct range *rg = &ranges[i];
        int direct = r->fd_direct >= 0 && rg->off % DIRECT_ALIGN == 0 &&
                     rg->len % DIRECT_ALIGN == 0;
        int fd = direct ? r->fd_direct : r->fd_buffered;
        uint64_t done = 0, t1 = now_us(), check_before = check_us;
        while (done < rg->len) {
            uint64_t want = rg->len - done;
            if (want > MAX_PREAD)
                want = MAX_PREAD;
            ssize_t got = pread(fd, r->buf, want, (off_t)(rg->off + done));
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                fprintf(stderr, "replay: replayer %d: range %zu (offset %"
                                PRIu64 " length %" PRIu64 "%s): %s after %"
                                PRIu64 " bytes\n",
                        r->idx, i + 1, rg->off, rg->len,
                        direct ? ", O_DIRECT" : ", buffered",
                        got < 0 ? strerror(errno) : "short read (end of file)",
                        done);
                r->failed = 1;
                break;
            }
            if (r->ref != NULL) {
                uint64_t c0 = now_us();
                int bad = check_bytes(r, i, done, (size_t)got);
                check_us += now_us() - c0;
                if (bad)
                    break;
            }
            done += (uint64_t)got;
        }
        r->lat[i] = now_us() - t1 - (check_us - check_before);
        r->bytes += done;
        if (r->failed)
            break;
        r->reads++;
    }
    r->elapsed_us = now_us() - t0 - check_us;
    return NULL;
}

int main(int argc, char **argv)
{
    int jobs = 1, buffered = 0, c;
    const char *latfile = NULL, *ref_path = NULL;

    while ((c = getopt(argc, argv, "j:l:bc:")) != -1) {
        switch (c) {
        case 'j': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 4096)
                usage();
            jobs = (int)v;
            break;
        }
        case 'l': latfile = optarg; break;
        case 'b': buffered = 1; break;
        case 'c': ref_path = optarg; break;
        default: usage();
        }
    }
    if (optind != argc - 2)
        usage();
    file_path = argv[optind];

    uint64_t max_len;
    load_trace(argv[optind + 1], &max_len);
    size_t buflen = (size_t)(max_len < MAX_PREAD ? max_len : MAX_PREAD);
    buflen = (buflen + ALIGN - 1) / ALIGN * ALIGN;
    if (buflen == 0)
        buflen = ALIGN;

    if (ref_path != NULL && (ref_fd = open(ref_path, O_RDONLY)) < 0) {
        fprintf(stderr, "replay: %s: %s\n", ref_path, strerror(errno));
        return 2;
    }
    struct replayer *rs = calloc((size_t)jobs, sizeof *rs);
    if (!rs) {
        fprintf(stderr, "replay: out of memory\n");
        return 2;
    }
    /* Every open before the barrier: N VMs start reading at one moment,
     * and an open's own cost is not part of the replay. */
    for (int i = 0; i < jobs; i++) {
        struct replayer *r = &rs[i];
        r->idx = i;
        r->fd_direct = -1;
        if (!buffered) {
            r->fd_direct = open(file_path, O_RDONLY | O_DIRECT);
            if (r->fd_direct < 0) {
                fprintf(stderr, "replay: open %s O_DIRECT: %s%s\n", file_path,
                        strerror(errno),
                        errno == EINVAL ? " (no O_DIRECT here: use -b)" : "");
                return 1;
            }
        }
        r->fd_buffered = open(file_path, O_RDONLY);
        if (r->fd_buffered < 0) {
            fprintf(stderr, "replay: open %s: %s\n", file_path,
                    strerror(errno));
            return 1;
        }
        r->lat = calloc(nranges ? nranges : 1, sizeof *r->lat);
        if (ref_path != NULL && (r->ref = malloc(buflen)) == NULL) {
            fprintf(stderr, "replay: out of memory\n");
            return 2;
        }
        if (!r->lat || posix_memalign(&r->buf, ALIGN, buflen) != 0) {
            fprintf(stderr, "replay: out of memory\n");
            return 2;
        }
    }
    pthread_barrier_init(&start_barrier, NULL, (unsigned)jobs);
    for (int i = 0; i < jobs; i++) {
        int e = pthread_create(&rs[i].tid, NULL, run, &rs[i]);
        if (e) {
            /* The barrier would never open: nothing to wait for. */
            fprintf(stderr, "replay: pthread_create: %s\n", strerror(e));
            return 2;
        }
    }
    int failed = 0;
    uint64_t *el = malloc((size_t)jobs * sizeof *el);
    if (!el) {
        fprintf(stderr, "replay: out of memory\n");
        return 2;
    }
    for (int i = 0; i < jobs; i++) {
        pthread_join(rs[i].tid, NULL);
        failed |= rs[i].failed;
        el[i] = rs[i].elapsed_us;
    }
    for (int i = 0; i < jobs; i++)
        printf("replayer %d elapsed_us %" PRIu64 " bytes %" PRIu64
               " reads %" PRIu64 "\n",
               i, rs[i].elapsed_us, rs[i].bytes, rs[i].reads);
    qsort(el, (size_t)jobs, sizeof *el, cmp_u64);
    double median = jobs % 2 ? (double)el[jobs / 2]
                             : ((double)el[jobs / 2 - 1] +
                                (double)el[jobs / 2]) / 2;
    size_t rank = (size_t)ceil(0.99 * (double)jobs);
    if (rank < 1)
        rank = 1;
    printf("median_us %.0f p99_us %" PRIu64 "\n", median, el[rank - 1]);

    if (latfile) {
        FILE *lf = fopen(latfile, "w");
        if (!lf) {
            fprintf(stderr, "replay: %s: %s\n", latfile, strerror(errno));
            return 1;
        }
        for (int i = 0; i < jobs; i++) {
            /* A failed replayer's failing read is timed too: how long a
             * reader waited for its EIO is a figure of its own. */
            uint64_t n = rs[i].reads + (rs[i].failed ? 1 : 0);
            for (uint64_t k = 0; k < n; k++)
                fprintf(lf, "%" PRIu64 "\n", rs[i].lat[k]);
        }
        if (fclose(lf) != 0) {
            fprintf(stderr, "replay: %s: %s\n", latfile, strerror(errno));
            return 1;
        }
    }
    for (int i = 0; i < jobs; i++) {
        if (rs[i].fd_direct >= 0)
            close(rs[i].fd_direct);
        close(rs[i].fd_buffered);
        free(rs[i].buf);
        free(rs[i].ref);
        free(rs[i].lat);
    }
    free(rs);
    free(el);
    free(ranges);
    return failed ? 1 : 0;
}
