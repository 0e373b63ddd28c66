/* imgcache-manifest: write, check or show the block manifest of a template
 * file (format in include/ic-manifest.h).  See imgcache-manifest(1).
 *
 *   imgcache-manifest [-o OUT] [-b SIZE] [-j N] FILE
 *   imgcache-manifest --verify MANIFEST FILE [-j N]
 *   imgcache-manifest --dump MANIFEST
 *
 * Run on the image server beside each template (from the job that
 * publishes images): the daemon fetches FILE.imgcache-manifest with the
 * template and checks every block against it.  The manifest is written to
 * OUT.tmp.PID and renamed, so a web server never serves half of one.
 *
 * Exit status: 0 done (--verify: every block matches), 1 --verify found
 * blocks that differ (or a file of another size), 2 usage error, a file
 * that cannot be read or written, or a manifest that is refused. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ic-block.h"
#include "ic-manifest.h"
#include "ic-tool.h"
#include "ic-util.h"

#define PROG "imgcache-manifest"
#define EXIT_DIFF 1
#define EXIT_TROUBLE 2
/* Mismatching blocks named one by one by --verify; the rest are counted. */
#define SHOW_BAD 10

enum mode { BUILD, VERIFY, DUMP };

struct opts {
    struct tool_opts t;
    enum mode mode;
    const char *out;
    uint32_t block_size;
    int threads;
    const char *manifest; /* --verify, --dump */
    const char *file;     /* the template */
};

static void usage(FILE *f)
{
    fputs("Usage: " PROG " [-o OUT] [-b SIZE] [-j N] FILE\n"
          "       " PROG " --verify MANIFEST FILE [-j N]\n"
          "       " PROG " --dump MANIFEST\n"
          "Write the block manifest of a template file (SHA-256 of every "
          "block),\ncheck a file against one, or print one.\n"
          "Exit 0 done, 1 --verify found differences, 2 error.\n\n"
          "  -o, --output OUT      where to write (default FILE"
          MANIFEST_SUFFIX ")\n"
          "  -b, --block-size SIZE block size, a power of two in 4K..16M "
          "(default 64K)\n"
          "  -j, --threads N       hashing threads (default: the online "
          "CPUs)\n"
          "      --verify MANIFEST check FILE against MANIFEST\n"
          "      --dump MANIFEST   print the header and one line per block\n"
          TOOL_USAGE_HELP, f);
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

/* 0 to go on, 1 to exit 0 (help, version), -EINVAL to exit 2. */
static int parse_args(int argc, char **argv, struct opts *o)
{
    enum { OPT_VERIFY = 256, OPT_DUMP };
    static const struct option lopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"output", required_argument, NULL, 'o'},
        {"block-size", required_argument, NULL, 'b'},
        {"threads", required_argument, NULL, 'j'},
        {"verify", required_argument, NULL, OPT_VERIFY},
        {"dump", required_argument, NULL, OPT_DUMP},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int c;

    o->t.prog = PROG;
    o->block_size = IC_BS_DEFAULT;
    o->threads = online_cpus();
    while ((c = getopt_long(argc, argv, "hVo:b:j:", lopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            o->out = optarg;
            break;
        case 'b':
            if (parse_size(optarg, &v) < 0 || !block_size_valid(v)) {
                fprintf(stderr, PROG ": --block-size %s: not a power of two "
                        "in 4K..16M\n", optarg);
                return -EINVAL;
            }
            o->block_size = (uint32_t)v;
            break;
        case 'j': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || n < 1 || n > 256) {
                fprintf(stderr, PROG ": --threads %s: not a number in "
                        "1..256\n", optarg);
                return -EINVAL;
            }
            o->threads = (int)n;
            break;
        }
        case OPT_VERIFY:
        case OPT_DUMP:
            if (o->manifest != NULL) {
                fprintf(stderr, PROG ": --verify and --dump: one of them, "
                        "once\n");
                return -EINVAL;
            }
            o->mode = c == OPT_VERIFY ? VERIFY : DUMP;
            o->manifest = optarg;
            break;
        default: {
            int r = tool_opt(&o->t, c, optarg, usage);
            if (r == 1)
                return 1;
            usage(stderr);
            return -EINVAL;
        }
        }
    }
    int want = o->mode == DUMP ? 0 : 1;
    if (argc - optind != want) {
        if (want == 0)
            fprintf(stderr, PROG ": --dump takes no FILE\n");
        else
            fprintf(stderr, PROG ": one template FILE expected\n");
        usage(stderr);
        return -EINVAL;
    }
    if (o->mode != BUILD && o->out != NULL) {
        fprintf(stderr, PROG ": -o goes with building a manifest only\n");
        return -EINVAL;
    }
    o->file = want ? argv[optind] : NULL;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU seconds this process used: with wall time, tells whether the disk
 * or the hashing was the limit. */
static double cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) < 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double mib_per_s(uint64_t bytes, double secs)
{
    return secs > 0 ? (double)bytes / (1 << 20) / secs : 0;
}

/* The template, read-only.  fd or -1 (reported). */
static int open_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
    return fd;
}

/* Open and validate a manifest.  NULL when refused (reported). */
static struct manifest *open_manifest(const char *path)
{
    struct manifest *m = NULL;
    char err[512];

    if (manifest_open(path, &m, err, sizeof err) < 0) {
        fprintf(stderr, PROG ": %s: %s\n", path, err);
        return NULL;
    }
    return m;
}

static uint64_t count_zero(const struct manifest *m)
{
    uint8_t h[MANIFEST_HASH_LEN];
    uint64_t z = 0;

    for (uint64_t i = 0; i < manifest_nblocks(m); i++)
        z += manifest_entry(m, i, h) == 1;
    return z;
}

/* mtime (ns since the epoch) as UTC with nanoseconds. */
static void fmt_mtime(int64_t ns, char *out, size_t len)
{
    int64_t sec = ns / 1000000000, frac = ns % 1000000000;
    if (frac < 0) {
        sec--;
        frac += 1000000000;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    char d[32];
    if (gmtime_r(&t, &tm) == NULL || strftime(d, sizeof d, "%Y-%m-%dT%H:%M:%S",
                                              &tm) == 0)
        snprintf(out, len, "%" PRId64 " ns", ns);
    else
        snprintf(out, len, "%s.%09" PRId64 "Z", d, frac);
}

/* -------------------------------------------------------------- build */

static int build(const struct opts *o)
{
    char out[PATH_MAX], err[512];
    struct stat fst, ost;

    int n = o->out != NULL
                ? snprintf(out, sizeof out, "%s", o->out)
                : snprintf(out, sizeof out, "%s" MANIFEST_SUFFIX, o->file);
    if (n < 0 || (size_t)n >= sizeof out) {
        fprintf(stderr, PROG ": %s: output name too long\n",
                o->out != NULL ? o->out : o->file);
        return EXIT_TROUBLE;
    }
    int fd = open_file(o->file);
    if (fd < 0)
        return EXIT_TROUBLE;
    /* -o FILE would rename the manifest over the template. */
    if (fstat(fd, &fst) == 0 && stat(out, &ost) == 0 &&
        fst.st_dev == ost.st_dev && fst.st_ino == ost.st_ino) {
        fprintf(stderr, PROG ": %s: the output is the template itself\n", out);
        close(fd);
        return EXIT_TROUBLE;
    }
    double t0 = now_s(), c0 = cpu_s();
    uint64_t nread = 0;
    int rc = manifest_build(fd, o->block_size, o->threads, out, &nread, err,
                            sizeof err);
    double secs = now_s() - t0, cpu = cpu_s() - c0;
    close(fd);
    if (rc < 0) {
        fprintf(stderr, PROG ": %s: %s\n", o->file, err);
        return EXIT_TROUBLE;
    }
    struct manifest *m = open_manifest(out);
    if (m == NULL)
        return EXIT_TROUBLE;
    /* The bytes read: less than the size by the holes skipped. */
    printf("%s: %" PRIu64 " bytes, %" PRIu64 " blocks of %" PRIu32 " (%" PRIu64
           " all-zero), %" PRIu64 " bytes read, %d thread%s, %.2f s (%.2f s "
           "CPU), %.0f MiB/s: wrote %s\n", o->file, manifest_file_size(m),
           manifest_nblocks(m), manifest_block_size(m), count_zero(m), nread,
           o->threads, o->threads == 1 ? "" : "s", secs, cpu,
           mib_per_s(manifest_file_size(m), secs), out);
    manifest_close(m);
    return fflush(stdout) == 0 ? 0 : EXIT_TROUBLE;
}

/* ------------------------------------------------------------- verify */

static int verify(const struct opts *o)
{
    uint64_t bad[SHOW_BAD], nbad = 0;
    char err[512];
    struct manifest *m = open_manifest(o->manifest);

    if (m == NULL)
        return EXIT_TROUBLE;
    int fd = open_file(o->file);
    if (fd < 0) {
        manifest_close(m);
        return EXIT_TROUBLE;
    }
    double t0 = now_s(), c0 = cpu_s();
    int rc = manifest_verify(m, fd, o->threads, bad, SHOW_BAD, &nbad, err,
                             sizeof err);
    double secs = now_s() - t0, cpu = cpu_s() - c0;
    close(fd);
    if (rc == -ESTALE) {
        printf("%s: %s (%s)\n", o->file, err, o->manifest);
        manifest_close(m);
        return EXIT_DIFF;
    }
    if (rc < 0) {
        fprintf(stderr, PROG ": %s: %s\n", o->file, err);
        manifest_close(m);
        return EXIT_TROUBLE;
    }
    uint32_t bs = manifest_block_size(m);
    uint64_t size = manifest_file_size(m), n = manifest_nblocks(m);
    /* The bytes may match while the daemon still will not copy blocks or
     * skip zeros on this manifest's word: it binds it to the mtime. */
    int64_t mt;
    struct stat fst;
    if (!manifest_template_mtime(m, &mt)) {
        printf("%s: note: %s records no template mtime: the daemon uses it "
               "to check fetched blocks only\n", o->file, o->manifest);
    } else if (stat(o->file, &fst) == 0 &&
               (int64_t)fst.st_mtim.tv_sec * 1000000000 + fst.st_mtim.tv_nsec !=
                   mt) {
        char a[64], b[64];
        fmt_mtime(mt, a, sizeof a);
        fmt_mtime((int64_t)fst.st_mtim.tv_sec * 1000000000 +
                      fst.st_mtim.tv_nsec, b, sizeof b);
        printf("%s: note: its mtime %s is not the manifest's %s: the daemon "
               "uses the manifest to check fetched blocks only (build it "
               "again)\n", o->file, b, a);
    }
    for (uint64_t i = 0; i < nbad && i < SHOW_BAD; i++)
        printf("%s: block %" PRIu64 " at offset %" PRIu64 " (%" PRIu32
               " bytes) differs\n", o->file, bad[i], block_start(bad[i], bs),
               block_len(bad[i], size, bs));
    if (nbad > SHOW_BAD)
        printf("%s: ... and %" PRIu64 " more\n", o->file, nbad - SHOW_BAD);
    if (nbad > 0)
        printf("%s: %" PRIu64 " of %" PRIu64 " blocks differ from %s\n",
               o->file, nbad, n, o->manifest);
    else
        printf("%s: all %" PRIu64 " blocks match %s (%.2f s, %.2f s CPU, "
               "%.0f MiB/s)\n", o->file, n, o->manifest, secs, cpu,
               mib_per_s(size, secs));
    manifest_close(m);
    if (fflush(stdout) != 0)
        return EXIT_TROUBLE;
    return nbad > 0 ? EXIT_DIFF : 0;
}

/* --------------------------------------------------------------- dump */

static int dump(const struct opts *o)
{
    uint8_t h[MANIFEST_HASH_LEN];
    struct manifest *m = open_manifest(o->manifest);

    if (m == NULL)
        return EXIT_TROUBLE;
    uint32_t bs = manifest_block_size(m);
    uint64_t size = manifest_file_size(m), n = manifest_nblocks(m);
    int64_t mt;
    char when[64] = "none";
    if (manifest_template_mtime(m, &mt)) {
        char d[48];
        fmt_mtime(mt, d, sizeof d);
        snprintf(when, sizeof when, "%" PRId64 " %s", mt, d);
    }
    printf("# imgcache manifest version %d, SHA-256\n"
           "file_size %" PRIu64 "\nblock_size %" PRIu32 "\nnblocks %" PRIu64
           "\nzero_blocks %" PRIu64 "\ntemplate_mtime %s\n"
           "# block offset length sha256|zero\n",
           MANIFEST_VERSION, size, bs, n, count_zero(m), when);
    for (uint64_t i = 0; i < n; i++) {
        printf("%" PRIu64 " %" PRIu64 " %" PRIu32 " ", i, block_start(i, bs),
               block_len(i, size, bs));
        if (manifest_entry(m, i, h) == 1) {
            fputs("zero\n", stdout);
            continue;
        }
        for (int k = 0; k < MANIFEST_HASH_LEN; k++)
            printf("%02x", h[k]);
        putchar('\n');
    }
    manifest_close(m);
    return fflush(stdout) == 0 ? 0 : EXIT_TROUBLE;
}

int main(int argc, char **argv)
{
    struct opts o = {0};
    int rc = parse_args(argc, argv, &o);

    if (rc != 0)
        return rc > 0 ? 0 : EXIT_TROUBLE;
    switch (o.mode) {
    case VERIFY:
        return verify(&o);
    case DUMP:
        return dump(&o);
    default:
        return build(&o);
    }
}
