/* lat — latency of first-touch random reads (a `make bench` helper).
 *
 * usage: lat [-n COUNT] [-s SEED] [-b BLOCK] [-r SIZE] [-B] [-v] FILE
 *
 * Picks COUNT (default 64) distinct random blocks of BLOCK bytes (default
 * 64K) in FILE, and reads SIZE bytes (default 4K) at a random SIZE-aligned
 * offset inside each, one at a time, with pread on a descriptor opened
 * O_DIRECT (-B: without O_DIRECT).  Each read is timed with
 * clock_gettime(CLOCK_MONOTONIC).  Distinct blocks make every read of a
 * freshly emptied block cache a miss: the figure is what a VM's first touch
 * of a block costs.
 *
 * Prints one line:
 *     n=COUNT median_us=M p99_us=P min_us=A max_us=Z mean_us=E
 * (p99 by nearest rank), and with -v every latency in microseconds, in read
 * order, on stderr.  Exits 0 on success, 1 on a read error or short read,
 * 2 on usage errors.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void usage(void)
{
    fprintf(stderr, "usage: lat [-n COUNT] [-s SEED] [-b BLOCK] [-r SIZE] "
                    "[-B] [-v] FILE\n");
    exit(2);
}

/* SIZE with an optional K/M/G suffix (powers of 1024). */
static uint64_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        usage();
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    default: break;
    }
    if (*end)
        usage();
    return v;
}

/* splitmix64: small, seedable, good enough to scatter offsets. */
static uint64_t rng_state;
static uint64_t rng(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
    uint64_t count = 64, seed = 1, block = 65536, size = 4096;
    int direct = 1, verbose = 0, c;

    while ((c = getopt(argc, argv, "n:s:b:r:Bv")) != -1) {
        switch (c) {
        case 'n': count = parse_size(optarg); break;
        case 's': seed = parse_size(optarg); break;
        case 'b': block = parse_size(optarg); break;
        case 'r': size = parse_size(optarg); break;
        case 'B': direct = 0; break;
        case 'v': verbose = 1; break;
        default: usage();
        }
    }
    if (optind != argc - 1 || count == 0 || size == 0 || block < size ||
        block % size)
        usage();
    const char *path = argv[optind];

    int fd = open(path, O_RDONLY | (direct ? O_DIRECT : 0));
    if (fd < 0) {
        fprintf(stderr, "lat: %s: %s\n", path, strerror(errno));
        return 1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fprintf(stderr, "lat: fstat %s: %s\n", path, strerror(errno));
        return 1;
    }
    /* Only whole blocks, so every read is full-sized. */
    uint64_t nblocks = (uint64_t)st.st_size / block;
    if (nblocks < count) {
        fprintf(stderr, "lat: %s has %" PRIu64 " whole blocks of %" PRIu64
                        ", fewer than %" PRIu64 "\n",
                path, nblocks, block, count);
        return 1;
    }

    /* COUNT distinct blocks: a partial Fisher-Yates shuffle, kept sparse
     * (a 100 GiB file has 1.6M blocks; an array of them is fine). */
    uint64_t *perm = malloc(nblocks * sizeof *perm);
    uint64_t *lat = malloc(count * sizeof *lat);
    void *buf = NULL;
    if (!perm || !lat || posix_memalign(&buf, 4096, size) != 0) {
        fprintf(stderr, "lat: out of memory\n");
        return 1;
    }
    for (uint64_t i = 0; i < nblocks; i++)
        perm[i] = i;
    rng_state = seed;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t j = i + rng() % (nblocks - i);
        uint64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }

    double sum = 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t off = perm[i] * block + (rng() % (block / size)) * size;
        double t0 = now_us();
        ssize_t n = pread(fd, buf, size, (off_t)off);
        double t1 = now_us();
        if (n < 0 || (uint64_t)n != size) {
            fprintf(stderr, "lat: pread %s at %" PRIu64 ": %s\n", path, off,
                    n < 0 ? strerror(errno) : "short read");
            return 1;
        }
        lat[i] = (uint64_t)llround(t1 - t0);
        sum += t1 - t0;
        if (verbose)
            fprintf(stderr, "%" PRIu64 "\n", lat[i]);
    }
    close(fd);

    qsort(lat, count, sizeof *lat, cmp_u64);
    /* median: mean of the two middle values for an even count. */
    double median = count % 2 ? (double)lat[count / 2]
                              : ((double)lat[count / 2 - 1] +
                                 (double)lat[count / 2]) / 2;
    /* p99, nearest rank: the ceil(0.99 * n)-th smallest. */
    uint64_t rank = (uint64_t)ceil(0.99 * (double)count);
    if (rank < 1)
        rank = 1;
    printf("n=%" PRIu64 " median_us=%.0f p99_us=%" PRIu64 " min_us=%" PRIu64
           " max_us=%" PRIu64 " mean_us=%.0f\n",
           count, median, lat[rank - 1], lat[0], lat[count - 1],
           sum / (double)count);
    free(perm);
    free(lat);
    free(buf);
    return 0;
}
