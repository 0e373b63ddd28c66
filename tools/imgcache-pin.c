/* imgcache-pin: pin, unpin, pre-warm, list and record boot profiles
 * through the running daemon's control socket (protocol in ic-ctl.h).
 *
 * Exit status: 0 done, 1 the operation failed (daemon error, pin refused
 * over quota, blocks that could not be fetched, no daemon), 2 usage or bad
 * input (a bad item, a malformed profile). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ic-conf.h"
#include "ic-ctl.h"
#include "ic-ctlproto.h"
#include "ic-pinspec.h"
#include "ic-tool.h"
#include "ic-util.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2
/* Answers of pin/unpin/list come fast, except that a qcow2-metadata pin
 * may wait for origin reads (origin_timeout each). */
#define REQUEST_TIMEOUT_S 120
/* Warm: longest silence between two lines (the daemon sends a heartbeat
 * every CTL_HEARTBEAT_MS). */
#define WARM_IDLE_S 60
/* Record: the daemon answers SECONDS after the request, plus this. */
#define RECORD_SLACK_S 30
#define ANSWER_LINE_MAX 4096
#define DEFAULT_PARALLEL 4
/* Long options without a short one. */
#define OPT_RATE 256
#define OPT_CLASS 257
#define OPT_TRACE 258

struct opts {
    const char *cache_dir, *config, *output;
    int no_fetch, unpin, wait, list, help, version, trace;
    unsigned parallel, record;
    uint64_t rate;            /* --rate: bytes/s, 0 = unlimited */
    int cls;                  /* --class, PIN_NONE when not given */
    char **args; /* positional: TEMPLATE [ITEM...] */
    int nargs;
};

struct client {
    int fd;
    int timeout_s;            /* longest wait for one answer line */
    int quiet;                /* no messages from client_line() */
    struct ctl_reader rd;
};

/* Called with each informational line's fields; non-zero stops. */
typedef int (*line_fn)(void *ctx, char **f, int nf);

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    va_list ap;

    fputs("imgcache-pin: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int usage_error(const char *msg)
{
    say("%s", msg);
    fputs("Try 'imgcache-pin --help'.\n", stderr);
    return EXIT_USAGE;
}

static void help(void)
{
    printf(
        "usage: imgcache-pin [OPTIONS] TEMPLATE [ITEM...]\n"
        "       imgcache-pin [--cache-dir DIR] --list [TEMPLATE]\n"
        "       imgcache-pin [--cache-dir DIR] --record SECONDS "
        "[--trace] --output FILE TEMPLATE\n"
        "\n"
        "Pin byte ranges of a template served by imgcache and fetch them\n"
        "now.  ITEM: START-END, START+LENGTH, profile:FILE or\n"
        "qcow2-metadata (sizes take K, M, G, T), optionally after CLASS:.\n"
        "Without ITEMs, fetch the blocks already pinned.\n"
        "\n"
        "  -d, --cache-dir DIR   the daemon's cache_dir (default: from the\n"
        "                        config, else " CONF_DEFAULT_CACHE_DIR ")\n"
        "  -c, --config FILE     read cache_dir from FILE (default "
        CONF_DEFAULT_PATH ")\n"
        "  -n, --no-fetch        pin without fetching\n"
        "  -u, --unpin           remove the ranges from the pins (of\n"
        "                        every class, or of --class)\n"
        "      --class CLASS     boot (never evicted, the default), high or\n"
        "                        low (evicted after unpinned blocks, low\n"
        "                        first); pinning a pinned range moves it\n"
        "                        to CLASS; with --list, only CLASS\n"
        "  -w, --wait            return when every pinned block is present\n"
        "                        (the default; exit 1 if some cannot be)\n"
        "  -j, --parallel N      fetches at a time, 1..16 (default 4)\n"
        "      --rate RATE       fetch at most RATE bytes a second (K, M,\n"
        "                        G; 0 or at least 64K; the daemon's\n"
        "                        warm_rate applies too, the lower wins)\n"
        "  -l, --list            show pins and how much of each is present\n"
        "  -r, --record SECONDS  note the ranges read during SECONDS\n"
        "  -o, --output FILE     write the recorded boot profile to FILE\n"
        "      --trace           with --record: write every read in the\n"
        "                        order it arrived, with its time (an\n"
        "                        imgcache-trace v1, for replaying a boot),\n"
        "                        not the merged profile\n"
        "  -h, --help            this help\n"
        "  -V, --version         print the version\n"
        "\n"
        "Exit status: 0 done, 1 failed, 2 usage or bad input.\n"
        "See imgcache-pin(8).\n");
}

/* ------------------------------------------------------------ options */

static int parse_opt(struct opts *o, int c, const char *arg)
{
    switch (c) {
    case 'd': o->cache_dir = arg; return 0;
    case 'c': o->config = arg; return 0;
    case 'n': o->no_fetch = 1; return 0;
    case 'u': o->unpin = 1; return 0;
    case 'w': o->wait = 1; return 0;
    case 'l': o->list = 1; return 0;
    case 'o': o->output = arg; return 0;
    case 'h': o->help = 1; return 0;
    case 'V': o->version = 1; return 0;
    case OPT_TRACE: o->trace = 1; return 0;
    case 'j':
        if (ctlproto_uint(arg, 1, CTL_PARALLEL_MAX, &o->parallel) == 0)
            return 0;
        return usage_error("--parallel takes a number from 1 to 16");
    case OPT_CLASS:
        o->cls = pin_class_parse(arg, strlen(arg));
        if (o->cls > 0)
            return 0;
        return usage_error("--class takes boot, high or low");
    case OPT_RATE:
        if (parse_size(arg, &o->rate) == 0 &&
            (o->rate == 0 ||
             (o->rate >= WARM_RATE_MIN && o->rate <= WARM_RATE_MAX)))
            return 0;
        return usage_error("--rate takes a size in bytes per second: 0 "
                           "(unlimited) or from 64K to 1T");
    case 'r':
        if (ctlproto_uint(arg, 1, CTL_RECORD_MAX_S, &o->record) == 0)
            return 0;
        return usage_error("--record takes a number of seconds from 1 to "
                           "3600");
    default: return usage_error("bad option");
    }
}

/* Combinations that make no sense are refused rather than guessed. */
static int check_modes(const struct opts *o)
{
    int pinning = o->no_fetch || o->unpin || o->wait || o->rate;

    if (o->cache_dir && o->config)
        return usage_error("--cache-dir and --config exclude each other");
    if (o->cls && (o->record || o->output))
        return usage_error("--class does not go with --record");
    if (o->trace && !o->record)
        return usage_error("--trace goes with --record");
    if (o->list && (pinning || o->record || o->output))
        return usage_error("--list takes no other action options");
    if (o->list)
        return o->nargs <= 1 ? 0 : usage_error("--list takes at most one "
                                               "TEMPLATE");
    if (o->record || o->output) {
        if (!o->record || !o->output)
            return usage_error("--record and --output go together");
        if (pinning || o->nargs != 1)
            return usage_error("--record takes exactly one TEMPLATE and no "
                               "pin options");
        return 0;
    }
    if (o->nargs < 1)
        return usage_error("no TEMPLATE given");
    if (o->no_fetch && o->wait)
        return usage_error("--no-fetch and --wait exclude each other");
    if (o->rate && (o->no_fetch || o->unpin))
        return usage_error("--rate paces fetching: not with --no-fetch or "
                           "--unpin");
    if (o->unpin && o->nargs < 2)
        return usage_error("--unpin needs at least one ITEM");
    if (o->no_fetch && !o->unpin && o->nargs < 2)
        return usage_error("--no-fetch without ITEMs does nothing");
    return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"cache-dir", required_argument, NULL, 'd'},
        {"config", required_argument, NULL, 'c'},
        {"no-fetch", no_argument, NULL, 'n'},
        {"unpin", no_argument, NULL, 'u'},
        {"wait", no_argument, NULL, 'w'},
        {"parallel", required_argument, NULL, 'j'},
        {"rate", required_argument, NULL, OPT_RATE},
        {"class", required_argument, NULL, OPT_CLASS},
        {"list", no_argument, NULL, 'l'},
        {"record", required_argument, NULL, 'r'},
        {"output", required_argument, NULL, 'o'},
        {"trace", no_argument, NULL, OPT_TRACE},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c;

    o->parallel = DEFAULT_PARALLEL;
    opterr = 0; /* our own one-line messages */
    while ((c = getopt_long(argc, argv, "d:c:nuwj:lr:o:hV", lo, NULL)) != -1) {
        if (c == '?' || c == ':') {
            say("bad or incomplete option '%s'", argv[optind - 1]);
            fputs("Try 'imgcache-pin --help'.\n", stderr);
            return EXIT_USAGE;
        }
        int rc = parse_opt(o, c, optarg);
        if (rc != 0)
            return rc;
    }
    o->args = argv + optind;
    o->nargs = argc - optind;
    if (o->help || o->version)
        return 0;
    if (o->nargs > 0 && !conf_name_valid(o->args[0])) {
        say("bad template name '%s'", o->args[0]);
        return EXIT_USAGE;
    }
    return check_modes(o);
}

/* The daemon's cache_dir, as every tool finds it (ic-tool.h). */
static int cache_dir_of(const struct opts *o, char *dir, size_t len)
{
    struct tool_opts t = {.prog = "imgcache-pin", .config = o->config,
                          .cache_dir = o->cache_dir};

    return tool_cache_dir(&t, NULL, dir, len) == 0 ? 0 : EXIT_USAGE;
}

/* ------------------------------------------------------------ client */

static int client_connect(struct client *cl, const char *dir)
{
    memset(cl, 0, sizeof *cl);
    cl->fd = ctlproto_connect(dir);
    if (cl->fd >= 0) {
        ctl_reader_init(&cl->rd, cl->fd, ANSWER_LINE_MAX);
        return 0;
    }
    int e = -cl->fd;
    if (e == ENAMETOOLONG)
        say("cannot connect to %s/%s: path too long", dir, CTL_SOCK_NAME);
    else if (e == EACCES || e == EPERM)
        say("cannot connect to %s/%s: %s (only root and the owner of %s "
            "may)", dir, CTL_SOCK_NAME, strerror(e), dir);
    else
        say("cannot connect to %s/%s: %s (is imgcache running?)", dir,
            CTL_SOCK_NAME, strerror(e));
    cl->fd = -1;
    return EXIT_FAIL;
}

static void client_close(struct client *cl)
{
    ctl_reader_free(&cl->rd);
    close(cl->fd);
}

/* Next answer line (NUL-terminated), or NULL with a message. */
static char *client_line(struct client *cl)
{
    char *line;
    int rc = ctl_reader_line(&cl->rd, (uint64_t)cl->timeout_s * 1000, &line);

    if (rc == 1)
        return line;
    if (cl->quiet)
        return NULL;
    if (rc == -ETIMEDOUT)
        say("no answer from the daemon for %d s", cl->timeout_s);
    else if (rc == -EMSGSIZE)
        say("answer line from the daemon too long");
    else if (rc == 0)
        say("the daemon closed the connection");
    else
        say("the daemon closed the connection: %s", strerror(-rc));
    return NULL;
}

#define MAX_FIELDS 8

/* Send one request line and read its answer: informational lines go to
 * fn, the final "ok" line's fields to ok[] (up to nok, may be NULL).
 * 0 ok; EXIT_FAIL on "error" (its message printed) or a broken exchange. */
static int request(struct client *cl, const char *req, line_fn fn, void *ctx,
                   char **ok, int nok)
{
    char *f[MAX_FIELDS];

    /* A daemon that refuses us (permission, too many connections) answers
     * and hangs up, maybe before our request is sent: read its answer. */
    int send_err = -ctlproto_send(cl->fd, req, strlen(req));
    cl->quiet = send_err != 0;
    for (;;) {
        char *line = client_line(cl);
        if (line == NULL) {
            if (send_err != 0)
                say("cannot send to the daemon: %s", strerror(send_err));
            return EXIT_FAIL;
        }
        int nf = ctlproto_split(line, f, MAX_FIELDS);
        enum ctl_answer a = ctlproto_answer(f, nf);
        if (a == CTL_ANSWER_OK && send_err == 0) {
            for (int i = 0; i < nok; i++)
                ok[i] = i + 1 < nf ? f[i + 1] : NULL;
            return 0;
        }
        if (a == CTL_ANSWER_ERROR) {
            say("%s", nf > 1 ? f[1] : "the daemon reported an error");
            return EXIT_FAIL;
        }
        if (send_err == 0 && fn != NULL && fn(ctx, f, nf) != 0)
            return EXIT_FAIL;
    }
}

static uint64_t to_u64(const char *s)
{
    return s ? strtoull(s, NULL, 10) : 0;
}

/* ------------------------------------------------------------ sizes */

static const char *human(uint64_t v, char *buf, size_t len)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB",
                                       "PiB"};
    double d = (double)v;
    int u = 0;

    while (d >= 1024 && u < 5) {
        d /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%" PRIu64 " B", v);
    else
        snprintf(buf, len, "%.1f %s", d, unit[u]);
    return buf;
}

/* ------------------------------------------------------------ progress */

struct progress {
    int tty;
    uint64_t t0;              /* when the warm was asked for */
    uint64_t done, total;
    int drawn;
};

static void progress_draw(struct progress *p)
{
    char a[32], b[32], r[32], eta[32] = "--:--";
    uint64_t ms = mono_ms() - p->t0;
    double rate = ms ? (double)p->done * 1000.0 / (double)ms : 0;
    unsigned pct = p->total ? (unsigned)(p->done * 100 / p->total) : 100;

    if (rate > 0 && p->total >= p->done) {
        uint64_t s = (uint64_t)((double)(p->total - p->done) / rate);
        snprintf(eta, sizeof eta, "%" PRIu64 ":%02" PRIu64, s / 60, s % 60);
    }
    /* "\033[K": erase what a longer previous line left. */
    fprintf(stderr, "\r%s / %s  %3u%%  %s/s  ETA %s\033[K",
            human(p->done, a, sizeof a), human(p->total, b, sizeof b), pct,
            human((uint64_t)rate, r, sizeof r), eta);
    fflush(stderr);
    p->drawn = 1;
}

static int on_progress(void *ctx, char **f, int nf)
{
    struct progress *p = ctx;

    if (nf != 3 || strcmp(f[0], "progress") != 0)
        return 0; /* lines we do not know: newer daemon, ignore */
    p->done = to_u64(f[1]);
    p->total = to_u64(f[2]);
    if (p->tty)
        progress_draw(p);
    return 0;
}

static int warm(struct client *cl, const char *name, unsigned parallel,
                uint64_t rate, int cls)
{
    struct progress p = {.tty = isatty(STDERR_FILENO), .t0 = mono_ms()};
    char req[512], *ok[2];
    char a[32];

    /* The rate and class only when given: a daemon that predates them
     * still warms. */
    if (cls != PIN_NONE)
        snprintf(req, sizeof req, "warm\t%s\t%u\t%" PRIu64 "\t%s\n", name,
                 parallel, rate, pin_class_name(cls));
    else if (rate != 0)
        snprintf(req, sizeof req, "warm\t%s\t%u\t%" PRIu64 "\n", name,
                 parallel, rate);
    else
        snprintf(req, sizeof req, "warm\t%s\t%u\n", name, parallel);
    cl->timeout_s = WARM_IDLE_S;
    int rc = request(cl, req, on_progress, &p, ok, 2);
    if (p.drawn)
        fputc('\n', stderr);
    if (rc == 0 && p.tty)
        say("%s: %s of pinned blocks present", name,
            human(to_u64(ok[1]), a, sizeof a));
    return rc;
}

/* ------------------------------------------------------------ pin */

/* A growing string. */
struct sbuf {
    char *s;
    size_t len, cap;
};

static int sbuf_add(struct sbuf *b, const char *s)
{
    size_t n = strlen(s);

    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (ns == NULL)
            return -ENOMEM;
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
    return 0;
}

/* The ranges and qcow2 flag of all ITEMs. */
struct pinset {
    struct byte_range *r;
    size_t n, cap;
    int qcow2;
};

static int pinset_add(struct pinset *ps, const struct byte_range *r,
                      size_t n)
{
    if (ps->n + n > ps->cap) {
        size_t cap = ps->cap ? ps->cap : 64;
        while (cap < ps->n + n)
            cap *= 2;
        struct byte_range *v = reallocarray(ps->r, cap, sizeof *v);
        if (v == NULL)
            return -ENOMEM;
        ps->r = v;
        ps->cap = cap;
    }
    memcpy(ps->r + ps->n, r, n * sizeof *r);
    ps->n += n;
    return 0;
}

/* Profiles are read here, by the user, and sent as ranges: the daemon
 * (maybe root) never opens a file a client names. */
static int add_item(struct pinset *ps, const struct pin_item *it)
{
    struct byte_range one = {it->off, it->len}, *r;
    size_t n;
    char err[1024];

    switch (it->kind) {
    case PIN_QCOW2: ps->qcow2 = 1; return 0;
    case PIN_RANGE: return pinset_add(ps, &one, 1) ? EXIT_FAIL : 0;
    case PIN_PROFILE: break;
    }
    if (profile_load(it->path, &r, &n, err, sizeof err) != 0) {
        say("%s", err);
        return EXIT_USAGE;
    }
    int rc = pinset_add(ps, r, n) ? EXIT_FAIL : 0;
    free(r);
    return rc;
}

/* One class per request: an item's CLASS: prefix must agree with
 * --class and with the other items' (the profiles' ranges are merged
 * into one set before they are sent). */
static int item_class(int *cls, const struct pin_item *it, int given)
{
    if (it->cls == PIN_NONE || it->cls == *cls)
        return 0;
    if (*cls == PIN_NONE && !given) {
        *cls = it->cls;
        return 0;
    }
    say("items of different classes (%s, %s): one class per command",
        pin_class_name(*cls), pin_class_name(it->cls));
    return EXIT_USAGE;
}

static int collect_items(char **args, int nargs, struct pinset *ps, int *cls)
{
    char err[1024];
    int given = *cls != PIN_NONE;
    int plain = 0, prefixed = 0; /* items without and with CLASS: */

    for (int i = 0; i < nargs; i++) {
        struct pin_item *items;
        size_t n;
        int rc = 0;

        if (pinspec_parse(args[i], &items, &n, err, sizeof err) != 0) {
            say("%s", err);
            return EXIT_USAGE;
        }
        for (size_t j = 0; j < n && rc == 0; j++) {
            plain += items[j].cls == PIN_NONE;
            prefixed += items[j].cls != PIN_NONE;
            if ((rc = item_class(cls, &items[j], given)) == 0)
                rc = add_item(ps, &items[j]);
        }
        pinspec_free(items, n);
        if (rc != 0)
            return rc;
    }
    /* An item without a prefix is a boot pin (as in the config): next to
     * a prefixed one it would silently take that one's class. */
    if (!given && plain && prefixed) {
        say("items with and without a CLASS: prefix: one class per "
            "command (give it with --class, or on every item)");
        return EXIT_USAGE;
    }
    ranges_normalize(ps->r, &ps->n);
    return 0;
}

/* "VERB\tTEMPLATE\tSPEC[\tCLASS]\n" with the ranges as START+LENGTH
 * items.  No CLASS field for what a daemon from before classes does
 * without one (a boot pin, an unpin of any class): such a daemon still
 * understands the request. */
static int build_request(const char *verb, const char *name,
                         const struct pinset *ps, int cls, struct sbuf *b)
{
    char item[64];
    int first = 1;

    if (sbuf_add(b, verb) || sbuf_add(b, "\t") || sbuf_add(b, name) ||
        sbuf_add(b, "\t"))
        return -ENOMEM;
    if (ps->qcow2) {
        if (sbuf_add(b, "qcow2-metadata"))
            return -ENOMEM;
        first = 0;
    }
    for (size_t i = 0; i < ps->n; i++, first = 0) {
        snprintf(item, sizeof item, "%s%" PRIu64 "+%" PRIu64,
                 first ? "" : ",", ps->r[i].off, ps->r[i].len);
        if (sbuf_add(b, item))
            return -ENOMEM;
    }
    if (cls != PIN_NONE && !(cls == PIN_BOOT && strcmp(verb, "pin") == 0) &&
        (sbuf_add(b, "\t") || sbuf_add(b, pin_class_name(cls))))
        return -ENOMEM;
    return sbuf_add(b, "\n");
}

/* Send the pin or unpin request for the collected ITEMs. */
static int change(struct client *cl, const struct opts *o,
                  const struct pinset *ps, int cls)
{
    struct sbuf b = {0};
    char *ok[2], a[32];
    const char *name = o->args[0];
    int rc = 0;

    if (build_request(o->unpin ? "unpin" : "pin", name, ps, cls, &b) != 0) {
        say("out of memory");
        rc = EXIT_FAIL;
    } else if (b.len > CTL_LINE_MAX) {
        say("%s: %zu ranges after merging are more than one request can "
            "carry (%u bytes)", name, ps->n, CTL_LINE_MAX);
        rc = EXIT_USAGE;
    } else {
        cl->timeout_s = REQUEST_TIMEOUT_S;
        rc = request(cl, b.s, NULL, NULL, ok, 2);
    }
    if (rc == 0 && isatty(STDERR_FILENO))
        say("%s: %s pinned in all", name, human(to_u64(ok[1]), a, sizeof a));
    free(b.s);
    return rc;
}

static int do_pin(const struct opts *o, const char *dir)
{
    struct pinset ps = {0};
    struct client cl;

    /* Every ITEM is checked (and profiles read) before we talk to the
     * daemon: bad input is exit 2 whether or not the daemon runs. */
    int cls = o->cls;
    int rc = collect_items(o->args + 1, o->nargs - 1, &ps, &cls);
    int have = ps.n > 0 || ps.qcow2;
    if (rc == 0 && o->nargs > 1 && !have)
        say("%s: nothing to %s (empty profile)", o->args[0],
            o->unpin ? "unpin" : "pin");
    if (rc == 0)
        rc = client_connect(&cl, dir);
    if (rc != 0) {
        free(ps.r);
        return rc;
    }
    if (have)
        rc = change(&cl, o, &ps, cls);
    /* What was pinned is what is warmed, and judged: pinning a boot range
     * does not fail for low pins that do not fit.  Without items, the
     * --class given, else every class. */
    int warm_cls = have ? (cls == PIN_NONE ? PIN_BOOT : cls) : o->cls;
    if (rc == 0 && !o->unpin && !o->no_fetch)
        rc = warm(&cl, o->args[0], o->parallel, o->rate, warm_cls);
    client_close(&cl);
    free(ps.r);
    return rc;
}

/* ------------------------------------------------------------ list */

struct row {
    char *name;
    uint64_t off, len, bytes, present;
    int cls;
};

struct table {
    struct row *v;
    size_t n, cap;
    int cls; /* only rows of this class (PIN_NONE: all) */
};

static int on_pin_row(void *ctx, char **f, int nf)
{
    struct table *t = ctx;

    /* A row without a class is boot (and all a daemon from before
     * classes sends). */
    int cls = nf == 7 ? pin_class_parse(f[6], strlen(f[6])) : PIN_BOOT;
    if (nf < 6 || nf > 7 || strcmp(f[0], "pin") != 0 || cls < 0 ||
        (t->cls != PIN_NONE && cls != t->cls))
        return 0;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        struct row *v = reallocarray(t->v, cap, sizeof *v);
        if (v == NULL)
            return -ENOMEM;
        t->v = v;
        t->cap = cap;
    }
    struct row *r = &t->v[t->n];
    r->name = strdup(f[1]);
    if (r->name == NULL)
        return -ENOMEM;
    r->off = to_u64(f[2]);
    r->len = to_u64(f[3]);
    r->bytes = to_u64(f[4]);
    r->present = to_u64(f[5]);
    r->cls = cls;
    t->n++;
    return 0;
}

static void print_row(const struct row *r, int wname)
{
    char range[48], size[32], pres[32], pct[8] = "-";

    snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, r->off,
             r->off + r->len);
    if (r->bytes > 0)
        snprintf(pct, sizeof pct, "%u%%",
                 (unsigned)(r->present * 100 / r->bytes));
    printf("%-*s  %-27s  %-5s  %10s  %10s  %4s\n", wname, r->name, range,
           pin_class_name(r->cls), human(r->bytes, size, sizeof size),
           human(r->present, pres, sizeof pres), pct);
}

static void print_table(const struct table *t)
{
    int w = (int)strlen("TEMPLATE");

    if (t->n == 0) {
        printf("no pinned ranges\n");
        return;
    }
    for (size_t i = 0; i < t->n; i++)
        if ((int)strlen(t->v[i].name) > w)
            w = (int)strlen(t->v[i].name);
    printf("%-*s  %-27s  %-5s  %10s  %10s  %4s\n", w, "TEMPLATE", "RANGE",
           "CLASS", "PINNED", "PRESENT", "%");
    for (size_t i = 0; i < t->n; i++)
        print_row(&t->v[i], w);
}

static int do_list(const struct opts *o, const char *dir)
{
    struct client cl;
    struct table t = {.cls = o->cls};
    char req[512];

    int rc = client_connect(&cl, dir);
    if (rc != 0)
        return rc;
    if (o->nargs == 1)
        snprintf(req, sizeof req, "list\t%s\n", o->args[0]);
    else
        snprintf(req, sizeof req, "list\n");
    cl.timeout_s = REQUEST_TIMEOUT_S;
    rc = request(&cl, req, on_pin_row, &t, NULL, 0);
    client_close(&cl);
    if (rc == 0)
        print_table(&t);
    for (size_t i = 0; i < t.n; i++)
        free(t.v[i].name);
    free(t.v);
    return rc;
}

/* ------------------------------------------------------------ record */

static int on_range(void *ctx, char **f, int nf)
{
    struct pinset *ps = ctx;
    struct byte_range r;

    if (nf != 3 || strcmp(f[0], "range") != 0)
        return 0;
    r.off = to_u64(f[1]);
    r.len = to_u64(f[2]);
    return pinset_add(ps, &r, 1);
}

/* Write the profile to tmp (already open as fd), then rename it over
 * path: a reader never sees half a profile. */
/* End an output written to tmp through f (NULL: fdopen of fd failed,
 * rc says why): synced, closed and renamed over path, so that a reader
 * never sees half of one; else tmp removed and the error said.  0 or
 * EXIT_FAIL. */
static int finish_output(FILE *f, int fd, int rc, const char *tmp,
                         const char *path)
{
    if (f != NULL) {
        if (rc == 0 &&
            (ferror(f) || fflush(f) != 0 || fsync(fileno(f)) != 0))
            rc = -(errno ? errno : EIO);
        if (fclose(f) != 0 && rc == 0)
            rc = -errno;
    } else {
        close(fd);
    }
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0) {
        say("cannot write %s: %s", path, strerror(-rc));
        unlink(tmp);
        return EXIT_FAIL;
    }
    return 0;
}

/* Write the profile to tmp (already open as fd), then over path. */
static int write_profile(int fd, const char *tmp, const char *path,
                         const struct pinset *ps)
{
    FILE *f = fdopen(fd, "w");
    int rc = f ? profile_write(f, ps->r, ps->n) : -errno;
    return finish_output(f, fd, rc, tmp, path);
}

/* The ordered trace (test/bench/replay reads it), as the daemon sends it:
 * its header, then every read in arrival order. */
struct trace {
    uint64_t size, dropped;
    uint32_t bs;
    int have_header;
    struct trace_line {
        uint64_t t_us, off, len;
    } *v;
    size_t n, cap;
    int oom;
};

static int on_read(void *ctx, char **f, int nf)
{
    struct trace *tr = ctx;

    if (nf == 4 && strcmp(f[0], "trace") == 0) {
        tr->size = to_u64(f[1]);
        tr->bs = (uint32_t)to_u64(f[2]);
        tr->dropped = to_u64(f[3]);
        tr->have_header = 1;
        return 0;
    }
    if (nf != 4 || strcmp(f[0], "read") != 0)
        return 0;
    if (tr->n == tr->cap) {
        size_t cap = tr->cap ? tr->cap * 2 : 1024;
        void *nv = realloc(tr->v, cap * sizeof *tr->v);
        if (nv == NULL) {
            tr->oom = 1;
            return 1;
        }
        tr->v = nv;
        tr->cap = cap;
    }
    tr->v[tr->n++] = (struct trace_line){to_u64(f[1]), to_u64(f[2]),
                                         to_u64(f[3])};
    return 0;
}

static int write_trace(int fd, const char *tmp, const char *path,
                       const char *name, const struct trace *tr)
{
    FILE *f = fdopen(fd, "w");
    int rc = f ? 0 : -errno;

    if (f != NULL) {
        fprintf(f, "# imgcache-trace v1\n");
        if (tr->have_header)
            fprintf(f, "# template %s size %" PRIu64 " block %" PRIu32 "\n",
                    name, tr->size, tr->bs);
        if (tr->dropped)
            fprintf(f, "# incomplete: %" PRIu64 " later reads were not "
                       "kept\n", tr->dropped);
        fprintf(f, "# T_US OFFSET LENGTH, in arrival order\n");
        for (size_t i = 0; i < tr->n; i++)
            fprintf(f, "%" PRIu64 " %" PRIu64 " %" PRIu64 "\n", tr->v[i].t_us,
                    tr->v[i].off, tr->v[i].len);
    }
    return finish_output(f, fd, rc, tmp, path);
}

static int record_trace_to(struct client *cl, const struct opts *o, int fd,
                           const char *tmp)
{
    struct trace tr = {0};
    char req[512], a[32];
    uint64_t sum = 0;

    snprintf(req, sizeof req, "record\t%s\t%u\ttrace\n", o->args[0],
             o->record);
    cl->timeout_s = (int)o->record + RECORD_SLACK_S;
    if (isatty(STDERR_FILENO))
        say("%s: recording a trace of the reads for %u s", o->args[0],
            o->record);
    int rc = request(cl, req, on_read, &tr, NULL, 0);
    if (tr.oom) {
        say("out of memory for the trace");
        rc = EXIT_FAIL;
    }
    if (rc != 0) {
        close(fd);
        unlink(tmp);
        free(tr.v);
        return rc;
    }
    if (tr.n == 0)
        say("warning: no reads of %s were seen; the trace is empty",
            o->args[0]);
    if (tr.dropped)
        say("warning: the trace holds the first %zu reads; %" PRIu64
            " later ones were not kept", tr.n, tr.dropped);
    rc = write_trace(fd, tmp, o->output, o->args[0], &tr);
    for (size_t i = 0; i < tr.n; i++)
        sum += tr.v[i].len;
    if (rc == 0 && isatty(STDERR_FILENO))
        say("%s: %zu reads, %s, written to %s", o->args[0], tr.n,
            human(sum, a, sizeof a), o->output);
    free(tr.v);
    return rc;
}

static int record_to(struct client *cl, const struct opts *o, int fd,
                     const char *tmp)
{
    struct pinset ps = {0};
    char req[512], a[32];
    uint64_t sum = 0;

    snprintf(req, sizeof req, "record\t%s\t%u\n", o->args[0], o->record);
    cl->timeout_s = (int)o->record + RECORD_SLACK_S;
    if (isatty(STDERR_FILENO))
        say("%s: recording reads for %u s", o->args[0], o->record);
    int rc = request(cl, req, on_range, &ps, NULL, 0);
    if (rc != 0) {
        close(fd);
        unlink(tmp);
        free(ps.r);
        return rc;
    }
    if (ps.n == 0)
        say("warning: no reads of %s were seen; the profile is empty",
            o->args[0]);
    rc = write_profile(fd, tmp, o->output, &ps);
    for (size_t i = 0; i < ps.n; i++)
        sum += ps.r[i].len;
    if (rc == 0 && isatty(STDERR_FILENO))
        say("%s: %zu ranges, %s, written to %s", o->args[0], ps.n,
            human(sum, a, sizeof a), o->output);
    free(ps.r);
    return rc;
}

static int do_record(const struct opts *o, const char *dir)
{
    struct client cl;
    char *tmp;

    if (asprintf(&tmp, "%s.tmp", o->output) < 0)
        return EXIT_FAIL;
    /* Opened first: a bad output path fails before the recording, not
     * after the user booted a VM for it. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        say("cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return EXIT_FAIL;
    }
    int rc = client_connect(&cl, dir);
    if (rc == 0) {
        rc = o->trace ? record_trace_to(&cl, o, fd, tmp)
                      : record_to(&cl, o, fd, tmp);
        client_close(&cl);
    } else {
        close(fd);
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    struct opts o = {0};
    char dir[PATH_MAX];

    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc;
    if (o.help || o.version) {
        if (o.help)
            help();
        else
            printf("imgcache-pin %s\n", PACKAGE_VERSION);
        return 0;
    }
    rc = cache_dir_of(&o, dir, sizeof dir);
    if (rc != 0)
        return rc;
    if (o.list)
        rc = do_list(&o, dir);
    else if (o.record)
        rc = do_record(&o, dir);
    else
        rc = do_pin(&o, dir);
    return rc;
}
