/* origin-get: drive one origin without the daemon, for tests.
 *
 *   origin-get [options] URL stat
 *   origin-get [options] URL read OFF LEN OUTFILE
 *   origin-get [options] URL list
 *   origin-get [options] URL stress THREADS COUNT BLOCK REFFILE
 *
 * read: origin_stat, then origin_read of LEN bytes at OFF into OUTFILE;
 * with --validator V --size N the stat is skipped and (V, N) expected.
 * stress: THREADS threads do COUNT random block-aligned reads of BLOCK
 * bytes in all and compare each with REFFILE (thread safety, pooling).
 *
 * Options: --timeout-ms N (each call's deadline, default 30000),
 * --connect-timeout-ms N, --mirror URL (repeatable), --max-connections N,
 * --proxy URL, --ca-file F, --netrc F, --validator V, --size N,
 * --mtime-ns N.  IMGCACHE_DEBUG=1 turns on debug logging.
 *
 * Exit 0 on success; otherwise "error: <strerror>" on stdout and exit 1
 * (2 for usage errors). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic-conf.h"
#include "ic-log.h"
#include "ic-origin.h"
#include "ic-util.h"

#define MAX_MIRRORS 15

struct opts {
    struct conf_net net;
    char *mirrors[MAX_MIRRORS];
    uint64_t timeout_ms;
    const char *validator;    /* --validator: skip the stat */
    uint64_t size;
    int64_t mtime_ns;
};

static void __attribute__((noreturn)) usage(void)
{
    fprintf(stderr,
            "usage: origin-get [--timeout-ms N] [--connect-timeout-ms N] "
            "[--mirror URL]... [--max-connections N] [--proxy URL] "
            "[--ca-file F] [--netrc F] [--validator V --size N "
            "[--mtime-ns N]]\n"
            "       URL stat | read OFF LEN OUTFILE | list | "
            "stress THREADS COUNT BLOCK REFFILE\n");
    exit(2);
}

static uint64_t num(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || end == s || *end != '\0')
        usage();
    return v;
}

static int fail(int err)
{
    printf("error: %s\n", strerror(-err));
    return 1;
}

/* Parse options; returns the index of the URL argument. */
static int parse_opts(int argc, char **argv, struct opts *op)
{
    int i = 1;
    op->timeout_ms = 30000;
    op->net.origin_timeout_ms = 30000;
    op->net.connect_timeout_ms = 5000;
    op->net.max_connections = 4;
    op->net.mirrors = op->mirrors;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL)
            usage();
        if (strcmp(k, "--timeout-ms") == 0)
            op->timeout_ms = op->net.origin_timeout_ms = num(v);
        else if (strcmp(k, "--connect-timeout-ms") == 0)
            op->net.connect_timeout_ms = num(v);
        else if (strcmp(k, "--max-connections") == 0)
            op->net.max_connections = (unsigned)num(v);
        else if (strcmp(k, "--mirror") == 0 && op->net.nmirrors < MAX_MIRRORS)
            op->mirrors[op->net.nmirrors++] = (char *)v;
        else if (strcmp(k, "--proxy") == 0)
            op->net.proxy = (char *)v;
        else if (strcmp(k, "--ca-file") == 0)
            op->net.ca_file = (char *)v;
        else if (strcmp(k, "--netrc") == 0)
            op->net.netrc = (char *)v;
        else if (strcmp(k, "--validator") == 0)
            op->validator = v;
        else if (strcmp(k, "--size") == 0)
            op->size = num(v);
        else if (strcmp(k, "--mtime-ns") == 0)
            op->mtime_ns = (int64_t)num(v);
        else
            usage();
    }
    return i;
}

static int get_info(struct origin *o, const struct opts *op,
                    struct origin_info *info)
{
    if (op->validator == NULL)
        return origin_stat(o, info, mono_ms() + op->timeout_ms);
    memset(info, 0, sizeof *info);
    snprintf(info->validator, sizeof info->validator, "%s", op->validator);
    info->size = op->size;
    info->mtime_ns = op->mtime_ns;
    return 0;
}

static int cmd_stat(struct origin *o, const struct opts *op)
{
    struct origin_info info;
    int err = get_info(o, op, &info);
    if (err != 0)
        return fail(err);
    printf("size %" PRIu64 "\nmtime_ns %" PRId64 "\nvalidator %s\n",
           info.size, info.mtime_ns, info.validator);
    return 0;
}

static int cmd_read(struct origin *o, const struct opts *op, char **args)
{
    struct origin_info info;
    uint64_t off = num(args[0]);
    size_t len = (size_t)num(args[1]);
    char *buf = malloc(len ? len : 1);
    int err = buf == NULL ? -ENOMEM : get_info(o, op, &info);

    if (err == 0)
        err = origin_read(o, buf, off, len, &info, NULL,
                          mono_ms() + op->timeout_ms);
    if (err == 0) {
        FILE *f = fopen(args[2], "wb");
        if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
            err = -EIO;
    }
    free(buf);
    return err != 0 ? fail(err) : 0;
}

static int cmd_list(const char *url, const struct opts *op)
{
    char **names = NULL;
    int n = origin_list_dir(url, &op->net, 0, &names);
    if (n < 0)
        return fail(n);
    for (int i = 0; i < n; i++) {
        printf("%s\n", names[i]);
        free(names[i]);
    }
    free(names);
    return 0;
}

/* ------------------------------------------------------------ stress */

struct stress {
    struct origin *o;
    const struct opts *op;
    struct origin_info info;
    FILE *ref;
    pthread_mutex_t lock;     /* protects ref, todo, failed, seed */
    unsigned todo, failed;
    unsigned seed;
    size_t block;
};

static int stress_one(struct stress *s, char *got, char *want)
{
    uint64_t nblocks = (s->info.size + s->block - 1) / s->block;
    pthread_mutex_lock(&s->lock);
    uint64_t b = (uint64_t)rand_r(&s->seed) % nblocks;
    uint64_t off = b * s->block;
    size_t len = s->info.size - off < s->block ? s->info.size - off : s->block;
    int ok = fseeko(s->ref, (off_t)off, SEEK_SET) == 0 &&
             fread(want, 1, len, s->ref) == len;
    pthread_mutex_unlock(&s->lock);
    if (!ok)
        return -EIO;
    int err = origin_read(s->o, got, off, len, &s->info, NULL,
                          mono_ms() + s->op->timeout_ms);
    if (err == 0 && memcmp(got, want, len) != 0) {
        fprintf(stderr, "origin-get: bytes differ at %" PRIu64 "\n", off);
        err = -EIO;
    }
    return err;
}

static void *stress_thread(void *arg)
{
    struct stress *s = arg;
    char *got = malloc(s->block), *want = malloc(s->block);
    for (;;) {
        pthread_mutex_lock(&s->lock);
        int more = s->todo > 0 && got && want;
        if (more)
            s->todo--;
        pthread_mutex_unlock(&s->lock);
        if (!more)
            break;
        int err = stress_one(s, got, want);
        if (err != 0) {
            fprintf(stderr, "origin-get: read: %s\n", strerror(-err));
            pthread_mutex_lock(&s->lock);
            s->failed++;
            pthread_mutex_unlock(&s->lock);
        }
    }
    free(got);
    free(want);
    return NULL;
}

static int cmd_stress(struct origin *o, const struct opts *op, char **args)
{
    struct stress s = {.o = o, .op = op, .seed = 12345};
    unsigned nthreads = (unsigned)num(args[0]);
    pthread_t tids[64];
    s.todo = (unsigned)num(args[1]);
    s.block = (size_t)num(args[2]);
    if (nthreads == 0 || nthreads > 64 || s.block == 0)
        usage();
    int err = get_info(o, op, &s.info);
    if (err != 0)
        return fail(err);
    if (s.info.size == 0 || (s.ref = fopen(args[3], "rb")) == NULL)
        return fail(-EINVAL);
    pthread_mutex_init(&s.lock, NULL);
    unsigned total = s.todo;
    for (unsigned i = 0; i < nthreads; i++)
        pthread_create(&tids[i], NULL, stress_thread, &s);
    for (unsigned i = 0; i < nthreads; i++)
        pthread_join(tids[i], NULL);
    fclose(s.ref);
    printf("%u reads, %u failed\n", total, s.failed);
    return s.failed ? fail(-EIO) : 0;
}

int main(int argc, char **argv)
{
    struct opts op;
    memset(&op, 0, sizeof op);
    char err[256];
    int i = parse_opts(argc, argv, &op);

    if (argc - i < 2)
        usage();
    log_init("origin-get", 0);
    const char *url = argv[i], *cmd = argv[i + 1];
    char **args = argv + i + 2;
    int nargs = argc - i - 2;
    if (strcmp(cmd, "list") == 0)
        return cmd_list(url, &op);
    struct origin *o = origin_new(url, &op.net, err, sizeof err);
    if (o == NULL) {
        printf("error: %s\n", err);
        return 1;
    }
    int rc;
    if (strcmp(cmd, "stat") == 0 && nargs == 0)
        rc = cmd_stat(o, &op);
    else if (strcmp(cmd, "read") == 0 && nargs == 3)
        rc = cmd_read(o, &op, args);
    else if (strcmp(cmd, "stress") == 0 && nargs == 4)
        rc = cmd_stress(o, &op, args);
    else
        usage();
    origin_free(o);
    return rc;
}
