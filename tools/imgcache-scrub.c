/* imgcache-scrub: check every present block of the cache against its
 * checksum, offline, and with --repair forget the bad ones so the daemon
 * fetches them again.  See imgcache-scrub(8).
 *
 * For each template of the index (or those named), the blocks the index
 * holds for its current generation are read from
 * cache_dir/data/<name>.<generation> and their XXH3-64 compared with the
 * index's.  All-zero blocks (kept as holes, never read by the daemon) must
 * carry the checksum of zeros.  A bad block is reported as
 *   NAME: block N at offset OFF (LEN bytes): REASON
 * With --repair the index rows of the bad blocks are deleted (one
 * transaction per chunk), the index is closed -- which checkpoints it, so
 * the deletions are on disk -- and only then are the blocks' bytes punched
 * out of the data file: the index never claims a block whose bytes were
 * punched.
 *
 * The daemon must be stopped: its in-memory block table is authoritative
 * and it rewrites the index behind a scrub's back.  A cache whose
 * ctl.sock accepts a connection is refused.
 *
 * Exit status: 0 every block good, 1 bad blocks found (even if repaired),
 * 2 usage error, the daemon runs, or something could not be read. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ic-block.h"
#include "ic-checksum.h"
#include "ic-store.h"
#include "ic-conf.h"
#include "ic-ctlproto.h"
#include "ic-index.h"
#include "ic-index-scrub.h"
#include "ic-log.h"
#include "ic-tool.h"
#include "ic-util.h"

#define PROG "imgcache-scrub"
#define EXIT_BAD 1
#define EXIT_TROUBLE 2
/* Rows deleted per transaction. */
#define DEL_CHUNK 1024

struct opts {
    struct tool_opts t;    /* --config, --cache-dir */
    int repair;
    char **names;          /* templates to check; all when nnames is 0 */
    int nnames;
};

/* One template being checked. */
struct tscan {
    struct index_tmpl t;
    char path[PATH_MAX];   /* its data file */
    int fd;                /* -1 when the data file is missing */
    char *buf;             /* one block */
    char *zeros;           /* one block of zeros */
    struct index_rec *bad; /* rows to delete (op INDEX_DEL) */
    size_t nbad, cap;
    uint64_t checked, zero;
    int error;             /* a block could not be recorded */
};

struct totals {
    uint64_t templates, checked, zero, bad, removed;
    int trouble;
};

/* ------------------------------------------------------------- options */

static void usage(FILE *f)
{
    fputs("Usage: " PROG " [OPTIONS] [TEMPLATE...]\n"
          "Check every cached block against its checksum (imgcache must "
          "be stopped).\n"
          "Exit 0 all good, 1 bad blocks found, 2 error.\n\n"
          TOOL_USAGE_DIRS
          "  -r, --repair          remove bad blocks from the index and "
          "punch them\n"
          "                        out of the data file (refetched on "
          "next read)\n"
          TOOL_USAGE_HELP, f);
}

/* 0 to go on, 1 to exit 0 (help, version), -EINVAL to exit 2.  In this
 * file every int function that can fail returns 0 or -errno and has
 * said why on stderr ("reported"); main turns that into the exit
 * status. */
static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option lopts[] = {
        TOOL_LONGOPTS,
        {"repair", no_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    int c;

    o->t.prog = PROG;
    while ((c = getopt_long(argc, argv, TOOL_OPTSTRING "r", lopts, NULL)) !=
           -1) {
        if (c == 'r') {
            o->repair = 1;
            continue;
        }
        int r = tool_opt(&o->t, c, optarg, usage);
        if (r == 1)
            return 1;
        if (r < 0) {
            usage(stderr);
            return -EINVAL;
        }
    }
    o->names = argv + optind;
    o->nnames = argc - optind;
    return 0;
}

/* -------------------------------------------------------------- daemon */

/* Refuse to run beside a live daemon: 0 when cache_dir/ctl.sock is absent
 * or refuses connections (a stale socket of a dead daemon), -EBUSY when a
 * daemon answers, -errno when we cannot tell (reported).  A daemon
 * started after this check is not detected. */
static int daemon_stopped(const char *cache_dir)
{
    int fd = ctlproto_connect(cache_dir);

    if (fd == -ENOENT || fd == -ECONNREFUSED)
        return 0;
    if (fd >= 0) {
        close(fd);
        fprintf(stderr, PROG ": imgcache is running on %s (%s/%s answers); "
                "stop it first: the daemon's block table is authoritative "
                "while it runs\n", cache_dir, cache_dir, CTL_SOCK_NAME);
    } else if (fd == -ENAMETOOLONG) {
        fprintf(stderr, PROG ": %s/%s: path too long to check whether "
                "imgcache runs\n", cache_dir, CTL_SOCK_NAME);
    } else {
        fprintf(stderr, PROG ": cannot tell whether imgcache runs on %s: "
                "%s/%s: %s\n", cache_dir, cache_dir, CTL_SOCK_NAME,
                strerror(-fd));
    }
    return fd >= 0 ? -EBUSY : fd;
}

/* -------------------------------------------------------------- checks */

static int add_bad(struct tscan *s, const struct index_rec *rec)
{
    if (s->nbad == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        struct index_rec *v = realloc(s->bad, cap * sizeof *v);
        if (v == NULL)
            return -ENOMEM;
        s->bad = v;
        s->cap = cap;
    }
    s->bad[s->nbad] = *rec;
    s->bad[s->nbad].op = INDEX_DEL;
    s->nbad++;
    return 0;
}

/* Why block rec is bad, or NULL if it is good.  why is scratch space. */
static const char *block_fault(struct tscan *s, const struct index_rec *rec,
                               char *why, size_t whylen)
{
    uint32_t bs = s->t.block_size;
    uint64_t off = block_start(rec->blk, bs);
    size_t len = block_len(rec->blk, s->t.size, bs);

    if (len == 0) {
        snprintf(why, whylen, "past the end of the template (%" PRIu64
                 " bytes)", s->t.size);
        return why;
    }
    if (rec->flags & INDEX_BLK_ZERO) {
        s->zero++;
        return checksum_block(s->zeros, len) == rec->csum
                   ? NULL : "all-zero block with a wrong checksum";
    }
    if (s->fd < 0)
        return "data file missing";
    ssize_t n = pread_full(s->fd, s->buf, len, off);
    if (n < 0) {
        snprintf(why, whylen, "read error: %s", strerror((int)-n));
        return why;
    }
    if ((size_t)n < len)
        return "data file ends inside the block";
    return checksum_block(s->buf, len) == rec->csum ? NULL
                                                    : "checksum mismatch";
}

static int check_block(void *ctx, const struct index_rec *rec)
{
    struct tscan *s = ctx;
    char why[160];
    const char *fault = block_fault(s, rec, why, sizeof why);
    uint32_t bs = s->t.block_size;

    s->checked++;
    if (fault == NULL)
        return 0;
    printf("%s: block %" PRIu64 " at offset %" PRIu64 " (%" PRIu32
           " bytes): %s\n", s->t.name, rec->blk, block_start(rec->blk, bs),
           block_len(rec->blk, s->t.size, bs), fault);
    if (add_bad(s, rec) < 0) {
        fprintf(stderr, PROG ": out of memory\n");
        s->error = 1;
        return -ENOMEM;
    }
    return 0;
}

/* Open the template's data file (read-write for --repair).  0 (fd -1 when
 * there is none), or -errno when it exists but cannot be opened
 * (reported). */
static int open_data(struct tscan *s, const char *cache_dir, int repair)
{
    int rc = store_path(s->path, sizeof s->path, cache_dir, s->t.name,
                        s->t.generation);

    if (rc < 0) {
        fprintf(stderr, PROG ": %s: data file name too long\n", s->t.name);
        return rc;
    }
    s->fd = open(s->path, (repair ? O_RDWR : O_RDONLY) | O_NOFOLLOW |
                              O_CLOEXEC);
    if (s->fd < 0 && errno != ENOENT) {
        int e = errno;
        fprintf(stderr, PROG ": %s: %s\n", s->path, strerror(e));
        return -e;
    }
    return 0;
}

/* Check one template.  0, or -errno on trouble (reported). */
static int scan_template(struct index *ix, const char *cache_dir, int repair,
                         struct tscan *s)
{
    uint32_t bs = s->t.block_size;

    if (!conf_name_valid(s->t.name)) {
        fprintf(stderr, PROG ": the index names a template '%s': not a valid "
                "name; skipped\n", s->t.name);
        return -EINVAL;
    }
    if (!block_size_valid(bs)) {
        fprintf(stderr, PROG ": %s: block size %" PRIu32 " in the index is "
                "not a power of two in 4K..16M; skipped\n", s->t.name, bs);
        return -EINVAL;
    }
    int rc = open_data(s, cache_dir, repair);
    if (rc < 0)
        return rc;
    s->buf = malloc(bs);
    s->zeros = calloc(1, bs);
    if (s->buf == NULL || s->zeros == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        return -ENOMEM;
    }
    rc = index_blocks_load(ix, s->t.id, s->t.generation, check_block, s);
    if (rc < 0 || s->error) {
        fprintf(stderr, PROG ": %s: cannot read the block list\n", s->t.name);
        return rc < 0 ? rc : -ENOMEM; /* s->error: a bad block not kept */
    }
    printf("%s: generation %" PRIu64 ", %" PRIu64 " blocks checked (%" PRIu64
           " all-zero), %zu bad%s\n", s->t.name, s->t.generation, s->checked,
           s->zero, s->nbad, s->fd < 0 && s->checked > s->zero
                                 ? " (data file missing)" : "");
    return 0;
}

/* Delete the rows of the bad blocks.  0 or -errno (reported). */
static int remove_rows(struct index *ix, const struct tscan *s)
{
    for (size_t i = 0; i < s->nbad; i += DEL_CHUNK) {
        size_t n = s->nbad - i < DEL_CHUNK ? s->nbad - i : DEL_CHUNK;
        int rc = index_apply(ix, s->bad + i, n);
        if (rc < 0) {
            fprintf(stderr, PROG ": %s: cannot remove bad blocks from the "
                    "index\n", s->t.name);
            return rc;
        }
    }
    return 0;
}

/* After the rows are gone from the index on disk: free the bad blocks'
 * space.  Only the disk space is at stake, so failures are warnings. */
static void punch_bad(const struct tscan *s)
{
    uint32_t bs = s->t.block_size;

    if (s->fd < 0 || s->nbad == 0)
        return;
    for (size_t i = 0; i < s->nbad; i++) {
        const struct index_rec *r = &s->bad[i];
        uint32_t len = block_len(r->blk, s->t.size, bs);
        if ((r->flags & INDEX_BLK_ZERO) || len == 0)
            continue;
        int e = store_punch(s->fd, block_start(r->blk, bs), len);
        if (e < 0) {
            fprintf(stderr, PROG ": warning: %s: cannot punch block %" PRIu64
                    ": %s\n", s->path, r->blk, strerror(-e));
            return;
        }
    }
    if (fdatasync(s->fd) < 0)
        fprintf(stderr, PROG ": warning: %s: fdatasync: %s\n", s->path,
                strerror(errno));
}

static void tscan_free(struct tscan *s)
{
    if (s->fd >= 0)
        close(s->fd);
    free(s->buf);
    free(s->zeros);
    free(s->bad);
}

/* ------------------------------------------------------------ the run */

/* The templates to check: all of the index, or the named ones (each must
 * be there: -ENOENT).  *out malloc'd.  0 or -errno (reported). */
static int pick_templates(struct index *ix, const struct opts *o,
                          struct tscan **out, size_t *n)
{
    struct index_tmpl *all = NULL;
    size_t nall = 0, cnt = 0;
    int ret = index_tmpl_list(ix, &all, &nall);

    *out = NULL;
    *n = 0;
    if (ret < 0) {
        fprintf(stderr, PROG ": cannot list the templates of the index\n");
        return ret;
    }
    for (int k = 0; k < o->nnames; k++) {
        size_t i = 0;
        while (i < nall && strcmp(all[i].name, o->names[k]) != 0)
            i++;
        if (i == nall) {
            fprintf(stderr, PROG ": no template '%s' in the index\n",
                    o->names[k]);
            ret = -ENOENT;
        }
    }
    struct tscan *v = calloc(nall ? nall : 1, sizeof *v);
    if (v == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        ret = -ENOMEM;
    }
    for (size_t i = 0; ret == 0 && i < nall; i++) {
        int want = o->nnames == 0;
        for (int k = 0; !want && k < o->nnames; k++)
            want = strcmp(all[i].name, o->names[k]) == 0;
        if (want) {
            v[cnt].t = all[i];
            v[cnt++].fd = -1;
        }
    }
    free(all);
    if (ret < 0) {
        free(v);
        return ret;
    }
    *out = v;
    *n = cnt;
    return 0;
}

/* Open the index: read-only to check; read-write for --repair, only once
 * a read-only open found it sound (index_open would move a damaged index
 * aside, as the daemon does at start).  0 or -errno (reported). */
static int open_index(const char *cache_dir, int repair, struct index **ix)
{
    int rc = index_open_ro(cache_dir, ix);

    if (rc == -ENOENT) {
        fprintf(stderr, PROG ": no cache index %s/%s (wrong cache_dir, or "
                "imgcache never ran?)\n", cache_dir, INDEX_FILE);
        return rc;
    }
    if (rc < 0) {
        fprintf(stderr, PROG ": cannot read %s/%s: %s\n", cache_dir,
                INDEX_FILE, strerror(-rc));
        return rc;
    }
    if (!repair)
        return 0;
    index_close(*ix);
    rc = index_open(cache_dir, ix);
    if (rc < 0) {
        fprintf(stderr, PROG ": cannot open %s/%s for writing: %s\n",
                cache_dir, INDEX_FILE, strerror(-rc));
        return rc;
    }
    if (index_moved_aside(*ix) != NULL) {
        fprintf(stderr, PROG ": %s/%s was damaged and has been moved aside "
                "to %s; the cache starts empty\n", cache_dir, INDEX_FILE,
                index_moved_aside(*ix));
        index_close(*ix);
        *ix = NULL;
        return -EIO;
    }
    return 0;
}

/* Check (and repair) the templates; trouble with one of them is counted
 * in tot, not returned.  0 or -errno (reported). */
static int run(const struct opts *o, const char *cache_dir, struct totals *tot)
{
    struct index *ix = NULL;
    struct tscan *v = NULL;
    size_t n = 0;

    if (index_is_empty(cache_dir) == 1 && o->nnames == 0) {
        printf("%s/%s is empty: nothing cached\n", cache_dir, INDEX_FILE);
        return 0;
    }
    int rc = open_index(cache_dir, o->repair, &ix);
    if (rc < 0)
        return rc;
    rc = pick_templates(ix, o, &v, &n);
    if (rc < 0) {
        index_close(ix);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (scan_template(ix, cache_dir, o->repair, &v[i]) < 0) {
            tot->trouble = 1;
            continue;
        }
        tot->templates++;
        tot->checked += v[i].checked;
        tot->zero += v[i].zero;
        tot->bad += v[i].nbad;
        if (o->repair && v[i].nbad > 0) {
            if (remove_rows(ix, &v[i]) < 0)
                tot->trouble = 1;
            else
                tot->removed += v[i].nbad;
        }
    }
    /* The last connection's close checkpoints the WAL into index.db and
     * syncs it: the deletions are durable before any byte is punched. */
    index_close(ix);
    for (size_t i = 0; i < n; i++) {
        if (o->repair && tot->removed > 0)
            punch_bad(&v[i]);
        tscan_free(&v[i]);
    }
    free(v);
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = {0};
    struct totals tot = {0};
    char cache_dir[PATH_MAX];
    int rc;

    log_init(PROG, 0);
    rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : EXIT_TROUBLE;
    if (tool_cache_dir(&o.t, NULL, cache_dir, sizeof cache_dir) < 0 ||
        daemon_stopped(cache_dir) < 0 || run(&o, cache_dir, &tot) < 0)
        return EXIT_TROUBLE;
    printf(PROG ": %" PRIu64 " template%s, %" PRIu64 " blocks checked (%"
           PRIu64 " all-zero), %" PRIu64 " bad", tot.templates,
           tot.templates == 1 ? "" : "s", tot.checked, tot.zero, tot.bad);
    if (o.repair)
        printf(", %" PRIu64 " removed from the index", tot.removed);
    printf("\n");
    if (fflush(stdout) != 0)
        return EXIT_TROUBLE;
    if (tot.trouble)
        return EXIT_TROUBLE;
    return tot.bad > 0 ? EXIT_BAD : 0;
}
