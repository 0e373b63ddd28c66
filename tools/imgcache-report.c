/* imgcache-report: per-template usage, hit ratios and what was evicted or
 * failed since the last report, for people (table), programs (--json) and
 * Prometheus (node_exporter textfile format).  See imgcache-report(8).
 *
 * It reads the index (read-only, in one snapshot), so it works the same
 * whether the daemon runs or not; the daemon saves its counters every few
 * seconds, so figures of a running daemon lag by that much.  What only the
 * running daemon knows, whether its origin hosts can be reached, it asks
 * over the control socket ("origins", ic-ctl.h); without an answer (no
 * daemon, not allowed) that is reported as unknown, not as trouble.  The
 * only write is moving the report cursor (and pruning old events) after a
 * report went out completely, on a short read-write connection.
 *
 * Exit status: 0 all well, 1 something needs attention, 2 usage error or
 * the cache cannot be read (or the cursor cannot be moved). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "ic-conf.h"
#include "ic-ctl.h"
#include "ic-ctlproto.h"
#include "ic-health.h"
#include "ic-index.h"
#include "ic-index-report.h"
#include "ic-log.h"
#include "ic-origin.h"
#include "ic-url.h"
#include "ic-tool.h"

#define PROG "imgcache-report"
#define EXIT_ATTENTION 1
#define EXIT_TROUBLE 2
#define DAY_S (24 * 3600)
#define DEFAULT_RETENTION_S (30 * DAY_S)
/* Long options without a short one. */
#define OPT_CLASS 256

enum format { FMT_TABLE, FMT_JSON, FMT_PROM };

struct opts {
    struct tool_opts t;    /* --config, --cache-dir */
    enum format fmt;
    int no_advance;
    int since_given;
    int64_t since_ts;
    int64_t retention_s;   /* 0: never prune */
    int check_pinned;
    const char *check_tmpl; /* --check-pinned TEMPLATE, NULL = all */
    int check_cls;          /* --class, PIN_NONE: every class */
};

/* One template as reported. */
struct trow {
    struct index_tmpl t;
    char origin[1024]; /* masked: never print credentials */
    struct index_usage u;
    struct index_counters c;
    struct index_event_sum ev;
    int over_quota, pins_missing, attention;
    int boot_missing;        /* boot-pinned bytes missing: attention (the
                                softer classes may be partly resident by
                                design) */
    int ostate;              /* enum health_state, -1 unknown */
    int64_t odown_since;     /* its first down host's, 0 when up */
};

/* An origin host as the daemon sees it. */
struct rhost {
    char key[512];
    int down;
    int64_t since;
    unsigned fails;
};

/* One route of a proxy list (ic-proxy.h), as the daemon sees it. */
struct rproxy {
    char name[512];
    int backoff, in_use;
    uint64_t requests, errors, retry_in_ms;
    unsigned fails;
};

struct report {
    time_t now;
    char cache_dir[PATH_MAX];
    /* From the config; have_conf = 0 means unknown. */
    int have_conf;
    uint64_t cache_max;      /* 0 = unlimited */
    uint64_t min_free_bytes; /* resolved against the filesystem size */
    int min_free_pct;        /* -1 when given in bytes */
    /* statvfs of cache_dir; have_fs = 0 when it failed. */
    int have_fs;
    uint64_t fs_size, fs_free;
    /* The event window. */
    struct index_window win;
    const char *win_source; /* "last_report", "since" or "all" */
    int64_t win_from_ts;    /* 0 = from the oldest retained event */
    struct trow *rows;
    size_t n;
    uint64_t used;
    int over_cache_max, low_space, attention;
    /* From the daemon; have_origins = 0 when it did not answer. */
    int have_origins;
    struct rhost *hosts;
    size_t nhosts;
    int hosts_down;
    struct rproxy *proxies;
    size_t nproxies;
};

/* ------------------------------------------------------------ parsing */

static void usage(FILE *f)
{
    fputs("Usage: " PROG " [OPTIONS]\n"
          "       " PROG " --check-pinned [TEMPLATE]\n"
          "Report imgcache usage; exit 0 all well, 1 needs attention, "
          "2 error.\n\n"
          TOOL_USAGE_DIRS
          "  -j, --json            one JSON document\n"
          "  -p, --prometheus      node_exporter textfile format\n"
          "  -s, --since WHEN      events since WHEN (1h, 30m, 2d, unix "
          "seconds,\n"
          "                        or 2026-11-22T10:00:00) instead of the "
          "last report\n"
          "  -n, --no-advance      do not move the last-report cursor\n"
          "  -r, --retention DUR   prune events older than DUR (default "
          "30d; 0: never)\n"
          "  -k, --check-pinned    exit 0 only if every pinned block is "
          "present\n"
          "      --class CLASS     with --check-pinned: only the pins of "
          "CLASS\n"
          "                        (boot, high or low)\n"
            TOOL_USAGE_HELP, f);
}

/* "90s", "30m", "1h", "2d", "1w" (a unit is required, so a bare number
 * can mean unix seconds in --since).  0, -EINVAL or -ERANGE. */
static int parse_dur_s(const char *s, int64_t *out)
{
    static const struct { const char *u; int64_t mult; } units[] = {
        {"s", 1}, {"m", 60}, {"min", 60}, {"h", 3600}, {"d", DAY_S},
        {"w", 7 * DAY_S},
    };
    char *end;

    if (!isdigit((unsigned char)s[0]))
        return -EINVAL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0)
        return -ERANGE;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].u) != 0)
            continue;
        if (v > INT64_MAX / units[i].mult)
            return -ERANGE;
        *out = v * units[i].mult;
        return 0;
    }
    return -EINVAL;
}

static int all_digits(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

/* ISO 8601 date and time, local time unless it ends in 'Z'.  0 or
 * -EINVAL. */
static int parse_iso(const char *s, int64_t *out)
{
    static const char *const fmts[] = {
        "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M", "%Y-%m-%d",
    };
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        struct tm tm = {0};
        const char *end = strptime(s, fmts[i], &tm);
        if (end == NULL)
            continue;
        int utc = strcmp(end, "Z") == 0;
        if (*end != '\0' && !utc)
            continue;
        tm.tm_isdst = -1;
        time_t t = utc ? timegm(&tm) : mktime(&tm);
        if (t == (time_t)-1)
            return -EINVAL;
        *out = (int64_t)t;
        return 0;
    }
    return -EINVAL;
}

/* --since: a duration back from now, unix seconds, or an ISO time.  0,
 * -EINVAL or -ERANGE. */
static int parse_since(const char *s, time_t now, int64_t *out)
{
    int64_t d;

    if (all_digits(s)) {
        errno = 0;
        long long v = strtoll(s, NULL, 10);
        *out = v;
        return errno == 0 ? 0 : -ERANGE;
    }
    if (parse_dur_s(s, &d) == 0) {
        *out = (int64_t)now - d;
        return 0;
    }
    return parse_iso(s, out);
}

static int bad_arg(const char *opt, const char *val)
{
    fprintf(stderr, PROG ": bad %s '%s'\n", opt, val);
    return -EINVAL;
}

/* One option: 0; 1 when done (help, version: exit 0); -EINVAL, said on
 * stderr (exit 2). */
static int parse_opt(int c, struct opts *o, time_t now)
{
    switch (c) {
    case 'j':
        o->fmt = FMT_JSON;
        return 0;
    case 'p':
        o->fmt = FMT_PROM;
        return 0;
    case 'n':
        o->no_advance = 1;
        return 0;
    case 's':
        o->since_given = 1;
        return parse_since(optarg, now, &o->since_ts) < 0
                   ? bad_arg("--since", optarg) : 0;
    case 'r':
        if (strcmp(optarg, "0") == 0) {
            o->retention_s = 0;
            return 0;
        }
        return parse_dur_s(optarg, &o->retention_s) < 0
                   ? bad_arg("--retention", optarg) : 0;
    case 'k':
        o->check_pinned = 1;
        o->check_tmpl = optarg;
        return 0;
    case OPT_CLASS:
        o->check_cls = pin_class_parse(optarg, strlen(optarg));
        return o->check_cls > 0 ? 0 : bad_arg("--class", optarg);
    default: {
        int r = tool_opt(&o->t, c, optarg, usage);
        if (r < 0)
            usage(stderr);
        return r;
    }
    }
}

/* --check-pinned TEMPLATE may be written with a blank, so its argument
 * is the one positional argument allowed.  As parse_opt. */
static int parse_args(int argc, char **argv, struct opts *o, time_t now)
{
    static const struct option lopts[] = {
        TOOL_LONGOPTS,
        {"json", no_argument, NULL, 'j'},
        {"prometheus", no_argument, NULL, 'p'},
        {"since", required_argument, NULL, 's'},
        {"no-advance", no_argument, NULL, 'n'},
        {"retention", required_argument, NULL, 'r'},
        {"check-pinned", optional_argument, NULL, 'k'},
        {"class", required_argument, NULL, OPT_CLASS},
        {NULL, 0, NULL, 0},
    };
    int c;

    o->t.prog = PROG;
    while ((c = getopt_long(argc, argv, TOOL_OPTSTRING "jps:nr:k", lopts,
                            NULL)) != -1) {
        int r = parse_opt(c, o, now);
        if (r != 0)
            return r;
    }
    if (o->check_pinned && o->check_tmpl == NULL && optind < argc)
        o->check_tmpl = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    if (o->check_cls && !o->check_pinned) {
        fprintf(stderr, PROG ": --class goes with --check-pinned\n");
        return -EINVAL;
    }
    if (o->check_pinned && (o->fmt != FMT_TABLE || o->since_given)) {
        fprintf(stderr, PROG ": --check-pinned takes no format or --since\n");
        return -EINVAL;
    }
    return 0;
}

/* ------------------------------------------------------------ gathering */

/* cache_dir and the limits from the config; without a config the limits
 * are unknown and cache_dir is --cache-dir or the compiled-in default.
 * In this file every int function that can fail returns 0 or -errno and
 * has said why on stderr; main turns that into the exit status. */
static int load_config(const struct opts *o, struct report *r)
{
    struct conf *cf;
    int rc = tool_cache_dir(&o->t, &cf, r->cache_dir, sizeof r->cache_dir);

    if (rc < 0)
        return rc;
    if (cf != NULL) {
        r->have_conf = 1;
        r->cache_max = cf->cache_max;
        r->min_free_bytes = cf->min_free;
        r->min_free_pct = cf->min_free_pct ? (int)cf->min_free : -1;
    }
    conf_free(cf);
    return 0;
}

/* Free space as an unprivileged writer sees it (f_bavail): what the
 * daemon can actually use. */
static void stat_fs(struct report *r)
{
    struct statvfs sv;

    if (statvfs(r->cache_dir, &sv) < 0)
        return;
    r->have_fs = 1;
    r->fs_size = (uint64_t)sv.f_blocks * sv.f_frsize;
    r->fs_free = (uint64_t)sv.f_bavail * sv.f_frsize;
    if (r->have_conf && r->min_free_pct >= 0)
        r->min_free_bytes = r->fs_size / 100 * (uint64_t)r->min_free_pct;
}

static int open_index(const struct report *r, struct index **ix)
{
    int rc = index_open_ro(r->cache_dir, ix);

    if (rc == -ENOENT)
        fprintf(stderr, PROG ": no cache index %s/%s (wrong cache_dir, or "
                "imgcache never ran?)\n", r->cache_dir, INDEX_FILE);
    else if (rc < 0)
        fprintf(stderr, PROG ": cannot read the cache index %s/%s: %s\n",
                r->cache_dir, INDEX_FILE, strerror(-rc));
    return rc;
}

/* The window: events after the cursor, or since --since. */
static int set_window(struct index *ix, const struct opts *o,
                      struct report *r)
{
    int64_t last, cur_id, cur_ts;
    int rc = index_events_last_id(ix, &last);

    if (rc == 0)
        rc = index_report_cursor(ix, &cur_id, &cur_ts);
    if (rc < 0)
        return rc;
    r->win.upto_id = last;
    if (o->since_given) {
        r->win.since_ts = o->since_ts;
        r->win_from_ts = o->since_ts;
        r->win_source = "since";
        return 0;
    }
    /* A cursor past the newest event: the events table was emptied by
     * hand; report all there is rather than nothing. */
    if (cur_id > last)
        cur_id = 0;
    r->win.after_id = cur_id;
    r->win_from_ts = cur_id ? cur_ts : 0;
    r->win_source = cur_id ? "last_report" : "all";
    return 0;
}

static void judge_row(struct trow *w)
{
    w->over_quota = w->t.quota && w->u.cached_bytes > w->t.quota;
    w->pins_missing = w->u.pinned_present_blocks < w->u.pinned_blocks;
    w->boot_missing = w->u.class_present_bytes[PIN_BOOT] <
                      w->u.class_pinned_bytes[PIN_BOOT];
    w->attention = w->over_quota || w->boot_missing || w->ev.error_events;
}

static int gather_row(struct index *ix, struct report *r, struct trow *w)
{
    int rc = index_usage_get(ix, &w->t, &w->u);

    if (rc == 0)
        rc = index_counters_get(ix, w->t.id, &w->c);
    if (rc == 0)
        rc = index_events_sum(ix, w->t.id, &r->win, &w->ev);
    url_mask(w->t.origin, w->origin, sizeof w->origin);
    judge_row(w);
    return rc;
}

static int gather_rows(struct index *ix, struct report *r)
{
    struct index_tmpl *t;
    size_t n;
    int rc = index_tmpl_list(ix, &t, &n);

    if (rc < 0)
        return rc;
    r->rows = calloc(n ? n : 1, sizeof *r->rows);
    if (r->rows == NULL) {
        free(t);
        return -ENOMEM;
    }
    r->n = n;
    for (size_t i = 0; i < n && rc == 0; i++) {
        r->rows[i].t = t[i];
        rc = gather_row(ix, r, &r->rows[i]);
        r->used += r->rows[i].u.cached_bytes;
        r->attention |= r->rows[i].attention;
    }
    free(t);
    return rc;
}

static void judge_cache(struct report *r)
{
    r->over_cache_max = r->have_conf && r->cache_max && r->used > r->cache_max;
    r->low_space = r->have_conf && r->have_fs &&
                   r->fs_free < r->min_free_bytes;
    r->attention |= r->over_cache_max || r->low_space;
}

/* ------------------------------------------------------------ daemon */

/* One informational answer line of "origins", split into f[0..nf). */
static void origins_line(struct report *r, char **f, int nf)
{
    if (nf == 6 && strcmp(f[0], "host") == 0) {
        struct rhost *v = realloc(r->hosts, (r->nhosts + 1) * sizeof *v);
        if (v == NULL)
            return;
        r->hosts = v;
        struct rhost *h = &v[r->nhosts++];
        snprintf(h->key, sizeof h->key, "%s", f[1]);
        h->down = strcmp(f[2], "down") == 0;
        h->since = strtoll(f[3], NULL, 10);
        h->fails = (unsigned)strtoul(f[4], NULL, 10);
        r->hosts_down += h->down;
    } else if (nf == 8 && strcmp(f[0], "proxy") == 0) {
        struct rproxy *v = realloc(r->proxies,
                                   (r->nproxies + 1) * sizeof *v);
        if (v == NULL)
            return;
        r->proxies = v;
        struct rproxy *p = &v[r->nproxies++];
        snprintf(p->name, sizeof p->name, "%s", f[1]);
        p->backoff = strcmp(f[2], "backoff") == 0;
        p->in_use = strcmp(f[3], "1") == 0;
        p->requests = strtoull(f[4], NULL, 10);
        p->errors = strtoull(f[5], NULL, 10);
        p->fails = (unsigned)strtoul(f[6], NULL, 10);
        p->retry_in_ms = strtoull(f[7], NULL, 10);
    } else if (nf == 4 && strcmp(f[0], "tmpl") == 0) {
        for (size_t i = 0; i < r->n; i++) {
            struct trow *w = &r->rows[i];
            if (strcmp(w->t.name, f[1]) != 0)
                continue;
            w->ostate = strcmp(f[2], "down") == 0       ? HEALTH_DOWN
                        : strcmp(f[2], "degraded") == 0 ? HEALTH_DEGRADED
                                                        : HEALTH_UP;
            w->odown_since = strtoll(f[3], NULL, 10);
        }
    }
}

/* Ask the running daemon about its origins: 0 when it answered, else
 * -errno (not said: no daemon is a normal case, the report then has no
 * origin columns). */
static int ask_origins(struct report *r)
{
    struct timeval tv = {.tv_sec = CTL_IO_TIMEOUT_S};
    static const char req[] = "origins\n";
    struct ctl_reader rd;
    char *line, *f[8];
    int rc = -EPROTO; /* no final line */

    int fd = ctlproto_connect(r->cache_dir);
    if (fd < 0)
        return fd;
    ctl_reader_init(&rd, fd, 8192); /* longer than any line it sends */
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
        ctlproto_send(fd, req, sizeof req - 1) != 0)
        goto out;
    while (ctl_reader_line(&rd, CTL_IO_TIMEOUT_S * 1000, &line) == 1) {
        int nf = ctlproto_split(line, f, 8);
        enum ctl_answer a = ctlproto_answer(f, nf);
        if (a == CTL_ANSWER_OK)
            rc = 0;
        else if (a != CTL_ANSWER_INFO)
            rc = -EOPNOTSUPP; /* "error": a daemon without "origins" */
        if (a != CTL_ANSWER_INFO)
            break;
        origins_line(r, f, nf);
    }
out:
    ctl_reader_free(&rd);
    close(fd);
    return rc;
}

static void gather_origins(struct report *r)
{
    for (size_t i = 0; i < r->n; i++)
        r->rows[i].ostate = -1;
    if (ask_origins(r) != 0) {
        for (size_t i = 0; i < r->n; i++)
            r->rows[i].ostate = -1;
        free(r->hosts);
        r->hosts = NULL;
        r->nhosts = 0;
        r->hosts_down = 0;
        free(r->proxies);
        r->proxies = NULL;
        r->nproxies = 0;
        return;
    }
    r->have_origins = 1;
    r->attention |= r->hosts_down > 0;
}

/* Everything from one snapshot of the index, so the window's upper bound
 * (which becomes the next cursor) matches the sums reported. */
static int gather(const struct opts *o, struct report *r)
{
    struct index *ix;
    int rc = open_index(r, &ix);

    if (rc < 0)
        return rc;
    rc = index_snapshot_begin(ix);
    if (rc == 0)
        rc = set_window(ix, o, r);
    if (rc == 0)
        rc = gather_rows(ix, r);
    index_snapshot_end(ix);
    index_close(ix);
    if (rc < 0) {
        fprintf(stderr, PROG ": cannot read the cache index in %s: %s\n",
                r->cache_dir, strerror(-rc));
        return rc;
    }
    stat_fs(r);
    judge_cache(r);
    gather_origins(r);
    return 0;
}

/* ------------------------------------------------------------ text helpers */

/* 1536 -> "1.5K"; below 1K the plain number. */
static const char *human(char *buf, size_t len, uint64_t v)
{
    static const char units[] = "KMGTPE";
    double d = (double)v;
    int u = -1;

    if (v < 1024) {
        snprintf(buf, len, "%" PRIu64, v);
        return buf;
    }
    while (d >= 1024 && u < 5) {
        d /= 1024;
        u++;
    }
    snprintf(buf, len, "%.1f%c", d, units[u]);
    return buf;
}

static const char *fmt_time(char *buf, size_t len, int64_t ts)
{
    time_t t = (time_t)ts;
    struct tm tm;

    if (localtime_r(&t, &tm) == NULL ||
        strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(buf, len, "@%" PRId64, ts);
    return buf;
}

/* Names and error texts come from the index: keep control characters
 * out of a terminal. */
static void printable(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

/* Blocks of class k evicted (cumulative); boot never is. */
static uint64_t class_evicted(const struct index_counters *c, int k)
{
    return k == PIN_LOW ? c->evicted_low : k == PIN_HIGH ? c->evicted_high
                                                         : 0;
}

/* hits / (hits + misses), or -1 (not a status: "no reads yet"). */
static double hit_ratio(const struct index_counters *c)
{
    uint64_t all = c->hits + c->misses;
    return all ? (double)c->hits / (double)all : -1;
}

/* ------------------------------------------------------------ table */

enum col {
    C_NAME, C_SIZE, C_GEN, C_CACHED, C_PINNED, C_PRESENT, C_QUOTA, C_USE,
    C_HITS, C_MISSES, C_HITR, C_FETCHED, C_LOCAL, C_VFAIL, C_EVBLK,
    C_EVBYTES, C_ERRORS, C_RA, C_STATE, C_ORIGIN, NCOLS
};

static const char *const col_head[NCOLS] = {
    "TEMPLATE", "SIZE", "GEN", "CACHED", "PINNED", "PRESENT", "QUOTA",
    "USE%", "HITS", "MISSES", "HIT%", "FETCHED", "LOCAL", "VFAIL", "EV.BLK",
    "EVICTED", "ERRORS", "RA.READ", "STATE", "ORIGIN",
};

/* Wide enough for a template name (255 bytes). */
#define CELL 260

static void row_cells(const struct trow *w, char cell[NCOLS][CELL])
{
    double hr = hit_ratio(&w->c);

    snprintf(cell[C_NAME], CELL, "%s", w->t.name);
    printable(cell[C_NAME]);
    human(cell[C_SIZE], CELL, w->t.size);
    snprintf(cell[C_GEN], CELL, "%" PRIu64, w->t.generation);
    human(cell[C_CACHED], CELL, w->u.cached_bytes);
    human(cell[C_PINNED], CELL, w->u.pinned_bytes);
    human(cell[C_PRESENT], CELL, w->u.pinned_present_bytes);
    if (w->t.quota) {
        human(cell[C_QUOTA], CELL, w->t.quota);
        snprintf(cell[C_USE], CELL, "%.0f%%",
                 100.0 * (double)w->u.cached_bytes / (double)w->t.quota);
    } else {
        snprintf(cell[C_QUOTA], CELL, "-");
        snprintf(cell[C_USE], CELL, "-");
    }
    snprintf(cell[C_HITS], CELL, "%" PRIu64, w->c.hits);
    snprintf(cell[C_MISSES], CELL, "%" PRIu64, w->c.misses);
    if (hr < 0)
        snprintf(cell[C_HITR], CELL, "-");
    else
        snprintf(cell[C_HITR], CELL, "%.1f%%", 100 * hr);
    human(cell[C_FETCHED], CELL, w->c.origin_bytes);
    human(cell[C_LOCAL], CELL, w->c.local_bytes);
    snprintf(cell[C_VFAIL], CELL, "%" PRIu64, w->c.verify_failed);
    snprintf(cell[C_EVBLK], CELL, "%" PRIu64, w->ev.evicted_blocks);
    human(cell[C_EVBYTES], CELL, w->ev.evicted_bytes);
    snprintf(cell[C_ERRORS], CELL, "%" PRIu64, w->ev.error_events);
    if (w->c.ra_fetched == 0)
        snprintf(cell[C_RA], CELL, "-");
    else
        snprintf(cell[C_RA], CELL, "%.0f%%",
                 100.0 * (double)w->c.ra_used / (double)w->c.ra_fetched);
    snprintf(cell[C_STATE], CELL, "%s",
             w->ostate < 0 ? "-" : health_state_name(w->ostate));
    cell[C_ORIGIN][0] = '\0'; /* printed whole, last: may exceed CELL */
}

static void print_cells(char cell[NCOLS][CELL], const int *width,
                        const char *origin)
{
    for (int c = 0; c < C_ORIGIN; c++) {
        /* Names, states and origins left-aligned, figures right-aligned. */
        if (c == C_NAME)
            printf("%-*s", width[c], cell[c]);
        else if (c == C_STATE)
            printf("  %-*s", width[c], cell[c]);
        else
            printf("  %*s", width[c], cell[c]);
    }
    printf("  %s\n", origin);
}

static void print_window_head(const struct report *r)
{
    char t1[64], t2[64];

    printf("imgcache report for %s at %s\n", r->cache_dir,
           fmt_time(t1, sizeof t1, r->now));
    /* Say which columns are windowed: the others are cumulative. */
    if (strcmp(r->win_source, "all") == 0)
        printf("EV.BLK, EVICTED, ERRORS: all recorded events (no earlier "
               "report)\n\n");
    else
        printf("EV.BLK, EVICTED, ERRORS: since %s%s\n\n",
               fmt_time(t2, sizeof t2, r->win_from_ts),
               strcmp(r->win_source, "since") == 0 ? "" : " (last report)");
}

static void print_rows(const struct report *r)
{
    char(*cells)[NCOLS][CELL] = calloc(r->n + 1, sizeof *cells);
    int width[NCOLS] = {0};

    if (cells == NULL) {
        printf("(out of memory)\n");
        return;
    }
    for (int c = 0; c < NCOLS; c++)
        snprintf(cells[0][c], CELL, "%s", col_head[c]);
    for (size_t i = 0; i < r->n; i++)
        row_cells(&r->rows[i], cells[i + 1]);
    for (size_t i = 0; i <= r->n; i++)
        for (int c = 0; c < NCOLS; c++) {
            int l = (int)strlen(cells[i][c]);
            width[c] = l > width[c] ? l : width[c];
        }
    for (size_t i = 0; i <= r->n; i++) {
        char origin[1024];
        snprintf(origin, sizeof origin, "%s",
                 i ? r->rows[i - 1].origin : col_head[C_ORIGIN]);
        printable(origin);
        print_cells(cells[i], width, origin);
    }
    free(cells);
}

static void print_window_totals(const struct report *r)
{
    uint64_t blk = 0, bytes = 0, errs = 0, gens = 0;
    char a[32];

    for (size_t i = 0; i < r->n; i++) {
        blk += r->rows[i].ev.evicted_blocks;
        bytes += r->rows[i].ev.evicted_bytes;
        errs += r->rows[i].ev.error_events;
        gens += r->rows[i].ev.generations;
    }
    printf("events: %" PRIu64 " blocks (%s) evicted, %" PRIu64
           " fill errors, %" PRIu64 " origin changes\n",
           blk, human(a, sizeof a, bytes), errs, gens);
}

static void print_totals(const struct report *r)
{
    char a[32], b[32], c[32];

    printf("\ncache: %s used", human(a, sizeof a, r->used));
    if (!r->have_conf)
        printf(", cache_max unknown (no config)");
    else if (r->cache_max)
        printf(" of cache_max %s (%.0f%%)", human(b, sizeof b, r->cache_max),
               100.0 * (double)r->used / (double)r->cache_max);
    else
        printf(", no cache_max");
    printf("\n");
    print_window_totals(r);
    if (!r->have_origins)
        printf("origin hosts: unknown (imgcache is not running, or its "
               "control socket did not answer)\n");
    else
        printf("origin hosts: %zu, %d down\n", r->nhosts, r->hosts_down);
    for (size_t i = 0; i < r->nproxies; i++) {
        const struct rproxy *p = &r->proxies[i];
        char name[512];
        snprintf(name, sizeof name, "%s", p->name);
        printable(name);
        printf("proxy %s: %s%s, %" PRIu64 " requests, %" PRIu64 " errors",
               name, p->in_use ? "in use, " : "",
               p->backoff ? "backed off" : "ok", p->requests, p->errors);
        if (p->backoff)
            printf(" (%u in a row, retried in %.1f s)", p->fails,
                   (double)p->retry_in_ms / 1000.0);
        printf("\n");
    }
    if (!r->have_fs)
        printf("filesystem: cannot stat %s\n", r->cache_dir);
    else
        printf("filesystem: %s free of %s, min_free %s\n",
               human(a, sizeof a, r->fs_free), human(b, sizeof b, r->fs_size),
               r->have_conf ? human(c, sizeof c, r->min_free_bytes)
                            : "unknown");
}

/* ------------------------------------------------------------ reasons */

/* Why a report needs attention, one sentence each, shared by the table
 * (so a mailed cron report says what to look at) and the JSON. */
typedef void (*reason_fn)(void *ctx, const char *line);

static void say(reason_fn fn, void *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(reason_fn fn, void *ctx, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fn(ctx, line);
}

static void row_reasons(const struct trow *w, reason_fn fn, void *ctx)
{
    char a[32], b[32];

    if (w->over_quota)
        say(fn, ctx, "%s: %s cached, over quota %s", w->t.name,
            human(a, sizeof a, w->u.cached_bytes),
            human(b, sizeof b, w->t.quota));
    if (w->boot_missing)
        say(fn, ctx, "%s: %s of %s pinned missing (boot)", w->t.name,
            human(a, sizeof a, w->u.class_pinned_bytes[PIN_BOOT] -
                                   w->u.class_present_bytes[PIN_BOOT]),
            human(b, sizeof b, w->u.class_pinned_bytes[PIN_BOOT]));
    if (w->ev.error_events)
        say(fn, ctx, "%s: %" PRIu64 " fill errors (last: %s)", w->t.name,
            w->ev.error_events, w->ev.last_error);
    if (w->ostate == HEALTH_DOWN)
        say(fn, ctx, "%s: every origin URL is on a down host: uncached "
            "blocks cannot be read", w->t.name);
}

static void reasons(const struct report *r, reason_fn fn, void *ctx)
{
    char a[32], b[32];

    if (r->over_cache_max)
        say(fn, ctx, "cache: %s used, over cache_max %s",
            human(a, sizeof a, r->used), human(b, sizeof b, r->cache_max));
    if (r->low_space)
        say(fn, ctx, "cache: %s free, below min_free %s",
            human(a, sizeof a, r->fs_free),
            human(b, sizeof b, r->min_free_bytes));
    for (size_t i = 0; i < r->nhosts; i++)
        if (r->hosts[i].down)
            say(fn, ctx, "origin host %s down since %s: misses that need it "
                "fail at once", r->hosts[i].key,
                fmt_time(a, sizeof a, r->hosts[i].since));
    for (size_t i = 0; i < r->n; i++)
        row_reasons(&r->rows[i], fn, ctx);
}

static void print_reason(void *ctx, const char *line)
{
    char buf[1024];

    (void)ctx;
    snprintf(buf, sizeof buf, "%s", line);
    printable(buf);
    printf("  %s\n", buf);
}

static void print_attention(const struct report *r)
{
    if (!r->attention) {
        printf("\nall well\n");
        return;
    }
    printf("\nneeds attention:\n");
    reasons(r, print_reason, NULL);
}

/* Per template and class: pinned, present, evicted (cumulative). */
static void print_classes(const struct report *r)
{
    int w = (int)strlen("TEMPLATE"), any = 0;
    char a[32], b[32], name[256];

    for (size_t i = 0; i < r->n; i++) {
        int l = (int)strlen(r->rows[i].t.name);
        w = l > w ? l : w;
        any |= r->rows[i].u.pinned_bytes > 0;
    }
    if (!any)
        return;
    printf("\n%-*s  %-5s  %10s  %10s  %4s  %8s\n", w, "TEMPLATE", "CLASS",
           "PINNED", "PRESENT", "%", "EV.BLK");
    for (size_t i = 0; i < r->n; i++) {
        const struct trow *t = &r->rows[i];
        for (int k = PIN_BOOT; k >= PIN_LOW; k--) {
            uint64_t p = t->u.class_pinned_bytes[k];
            if (p == 0)
                continue;
            snprintf(name, sizeof name, "%s", t->t.name);
            printable(name);
            printf("%-*s  %-5s  %10s  %10s  %3u%%  %8" PRIu64 "\n", w, name,
                   pin_class_name(k), human(a, sizeof a, p),
                   human(b, sizeof b, t->u.class_present_bytes[k]),
                   (unsigned)(t->u.class_present_bytes[k] * 100 / p),
                   class_evicted(&t->c, k));
        }
    }
}

static void print_table(const struct report *r)
{
    print_window_head(r);
    if (r->n == 0)
        printf("no templates in the index\n");
    else
        print_rows(r);
    print_classes(r);
    print_totals(r);
    print_attention(r);
}

/* ------------------------------------------------------------ JSON */

/* json-c escapes control characters and quotes but passes other bytes
 * through; a byte that is not valid UTF-8 would make the document invalid,
 * so such bytes become '?'. */
static size_t utf8_len(const unsigned char *s)
{
    size_t n = s[0] < 0x80 ? 1 : (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3
               : (s[0] >> 3) == 30 ? 4 : 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

static json_object *jstr(const char *s)
{
    char buf[1024];
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)s;
         *p && o + 5 < sizeof buf;) {
        size_t n = utf8_len(p);
        if (n == 0) {
            buf[o++] = '?';
            p++;
            continue;
        }
        memcpy(buf + o, p, n);
        o += n;
        p += n;
    }
    buf[o] = '\0';
    return json_object_new_string(buf);
}

static json_object *ju64(uint64_t v) { return json_object_new_uint64(v); }

/* A ratio with a readable fixed precision rather than %.17g noise. */
static json_object *jratio(double v, int prec)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%.*f", prec, v);
    return json_object_new_double_s(v, buf);
}

static void jadd(json_object *o, const char *k, json_object *v)
{
    json_object_object_add(o, k, v);
}

static void json_reason(void *ctx, const char *line)
{
    json_object_array_add(ctx, jstr(line));
}

static json_object *json_window_row(const struct index_event_sum *e)
{
    json_object *o = json_object_new_object();

    jadd(o, "evicted_blocks", ju64(e->evicted_blocks));
    jadd(o, "evicted_bytes", ju64(e->evicted_bytes));
    jadd(o, "evict_events", ju64(e->evict_events));
    jadd(o, "fill_errors", ju64(e->error_events));
    jadd(o, "fill_error_blocks", ju64(e->error_blocks));
    jadd(o, "generations", ju64(e->generations));
    jadd(o, "last_error", e->error_events ? jstr(e->last_error) : NULL);
    jadd(o, "last_error_time",
         e->error_events ? json_object_new_int64(e->last_error_ts) : NULL);
    return o;
}

static void json_usage(json_object *o, const struct trow *w)
{
    jadd(o, "cached_bytes", ju64(w->u.cached_bytes));
    jadd(o, "cached_blocks", ju64(w->u.cached_blocks));
    jadd(o, "zero_blocks", ju64(w->u.zero_blocks));
    jadd(o, "pinned_bytes", ju64(w->u.pinned_bytes));
    jadd(o, "pinned_blocks", ju64(w->u.pinned_blocks));
    jadd(o, "pinned_present_bytes", ju64(w->u.pinned_present_bytes));
    jadd(o, "pinned_present_blocks", ju64(w->u.pinned_present_blocks));
    jadd(o, "pinned_missing_bytes",
         ju64(w->u.pinned_bytes - w->u.pinned_present_bytes));
    jadd(o, "quota", ju64(w->t.quota));
    jadd(o, "quota_used_percent",
         w->t.quota ? jratio(100.0 * (double)w->u.cached_bytes /
                                 (double)w->t.quota, 1)
                    : NULL);
    jadd(o, "over_quota", json_object_new_boolean(w->over_quota));
}

static void json_counters(json_object *o, const struct trow *w)
{
    double hr = hit_ratio(&w->c);

    jadd(o, "hits", ju64(w->c.hits));
    jadd(o, "misses", ju64(w->c.misses));
    jadd(o, "hit_ratio", hr < 0 ? NULL : jratio(hr, 4));
    jadd(o, "origin_bytes", ju64(w->c.origin_bytes));
    jadd(o, "origin_reads", ju64(w->c.origin_reads));
    jadd(o, "fill_errors", ju64(w->c.fill_errors));
    jadd(o, "evicted_blocks", ju64(w->c.evictions));
    jadd(o, "evicted_bytes", ju64(w->c.evicted_bytes));
    jadd(o, "uncached_blocks", ju64(w->c.uncached));
    jadd(o, "readahead_fetched_bytes", ju64(w->c.ra_fetched));
    jadd(o, "readahead_used_bytes", ju64(w->c.ra_used));
    jadd(o, "readahead_used_ratio",
         w->c.ra_fetched ? jratio((double)w->c.ra_used /
                                      (double)w->c.ra_fetched, 4)
                         : NULL);
    jadd(o, "local_bytes", ju64(w->c.local_bytes));
    jadd(o, "local_blocks", ju64(w->c.local_blocks));
    jadd(o, "verified_blocks", ju64(w->c.verified));
    jadd(o, "verify_failures", ju64(w->c.verify_failed));
    jadd(o, "zero_blocks_skipped", ju64(w->c.zero_skipped));
    /* Windowed, like the events: which sources served wrong bytes. */
    json_object *src = json_object_new_object();
    for (size_t i = 0; i < w->ev.nverify; i++)
        jadd(src, w->ev.verify[i].source, ju64(w->ev.verify[i].count));
    jadd(o, "verify_failures_by_source", src);
    /* Seconds since the epoch; null for a template never read. */
    jadd(o, "last_used", w->c.last_used ? ju64(w->c.last_used) : NULL);
}

/* "classes": {"boot": {...}, "high": {...}, "low": {...}}, every class
 * listed (zeros when it has no pins). */
static json_object *json_classes(const struct trow *w)
{
    json_object *o = json_object_new_object();

    for (int k = PIN_BOOT; k >= PIN_LOW; k--) {
        json_object *c = json_object_new_object();
        uint64_t p = w->u.class_pinned_bytes[k];
        uint64_t q = w->u.class_present_bytes[k];
        jadd(c, "pinned_bytes", ju64(p));
        jadd(c, "present_bytes", ju64(q));
        jadd(c, "missing_bytes", ju64(p - q));
        jadd(c, "evicted_blocks", ju64(class_evicted(&w->c, k)));
        jadd(o, pin_class_name(k), c);
    }
    return o;
}

static json_object *json_row(const struct trow *w)
{
    json_object *o = json_object_new_object();

    jadd(o, "name", jstr(w->t.name));
    jadd(o, "origin", jstr(w->origin));
    jadd(o, "size", ju64(w->t.size));
    jadd(o, "generation", ju64(w->t.generation));
    jadd(o, "block_size", ju64(w->t.block_size));
    json_usage(o, w);
    jadd(o, "classes", json_classes(w));
    json_counters(o, w);
    jadd(o, "window", json_window_row(&w->ev));
    jadd(o, "origin_state", w->ostate < 0 ? NULL
                            : json_object_new_string(
                                  health_state_name(w->ostate)));
    jadd(o, "origin_down_since",
         w->ostate > 0 ? json_object_new_int64(w->odown_since) : NULL);
    jadd(o, "attention", json_object_new_boolean(w->attention ||
                                                 w->ostate == HEALTH_DOWN));
    return o;
}

static json_object *json_window(const struct report *r)
{
    json_object *o = json_object_new_object();
    struct index_event_sum tot = {0};

    for (size_t i = 0; i < r->n; i++) {
        tot.evicted_blocks += r->rows[i].ev.evicted_blocks;
        tot.evicted_bytes += r->rows[i].ev.evicted_bytes;
        tot.error_events += r->rows[i].ev.error_events;
        tot.generations += r->rows[i].ev.generations;
    }
    jadd(o, "source", json_object_new_string(r->win_source));
    jadd(o, "from_time",
         r->win_from_ts ? json_object_new_int64(r->win_from_ts) : NULL);
    jadd(o, "after_event_id", json_object_new_int64(r->win.after_id));
    jadd(o, "last_event_id", json_object_new_int64(r->win.upto_id));
    jadd(o, "evicted_blocks", ju64(tot.evicted_blocks));
    jadd(o, "evicted_bytes", ju64(tot.evicted_bytes));
    jadd(o, "fill_errors", ju64(tot.error_events));
    jadd(o, "generations", ju64(tot.generations));
    return o;
}

static json_object *json_cache(const struct report *r)
{
    json_object *o = json_object_new_object();

    jadd(o, "templates", ju64(r->n));
    jadd(o, "used_bytes", ju64(r->used));
    jadd(o, "cache_max_bytes", r->have_conf ? ju64(r->cache_max) : NULL);
    jadd(o, "min_free_bytes", r->have_conf ? ju64(r->min_free_bytes) : NULL);
    jadd(o, "min_free_percent", r->have_conf && r->min_free_pct >= 0
                                    ? json_object_new_int(r->min_free_pct)
                                    : NULL);
    jadd(o, "fs_size_bytes", r->have_fs ? ju64(r->fs_size) : NULL);
    jadd(o, "fs_free_bytes", r->have_fs ? ju64(r->fs_free) : NULL);
    jadd(o, "over_cache_max", json_object_new_boolean(r->over_cache_max));
    jadd(o, "low_space", json_object_new_boolean(r->low_space));
    return o;
}

/* null when the daemon did not answer: unknown, not "none down". */
static json_object *json_hosts(const struct report *r)
{
    if (!r->have_origins)
        return NULL;
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < r->nhosts; i++) {
        const struct rhost *h = &r->hosts[i];
        json_object *o = json_object_new_object();
        jadd(o, "host", jstr(h->key));
        jadd(o, "state", json_object_new_string(h->down ? "down" : "up"));
        jadd(o, "down_since", h->down ? json_object_new_int64(h->since)
                                      : NULL);
        jadd(o, "consecutive_failures", json_object_new_int64(h->fails));
        json_object_array_add(a, o);
    }
    return a;
}

static json_object *json_proxies(const struct report *r)
{
    if (!r->have_origins)
        return NULL;
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < r->nproxies; i++) {
        const struct rproxy *p = &r->proxies[i];
        json_object *o = json_object_new_object();
        jadd(o, "proxy", jstr(p->name));
        jadd(o, "state", json_object_new_string(p->backoff ? "backoff"
                                                           : "ok"));
        jadd(o, "in_use", json_object_new_boolean(p->in_use));
        jadd(o, "requests", ju64(p->requests));
        jadd(o, "errors", ju64(p->errors));
        jadd(o, "consecutive_failures", json_object_new_int64(p->fails));
        jadd(o, "retry_in_ms", p->backoff ? ju64(p->retry_in_ms) : NULL);
        json_object_array_add(a, o);
    }
    return a;
}

static int print_json(const struct report *r)
{
    json_object *doc = json_object_new_object();
    json_object *rows = json_object_new_array();

    jadd(doc, "version", json_object_new_int(1));
    jadd(doc, "report_time", json_object_new_int64(r->now));
    jadd(doc, "cache_dir", jstr(r->cache_dir));
    jadd(doc, "status", json_object_new_int(r->attention ? 1 : 0));
    json_object *why = json_object_new_array();
    reasons(r, json_reason, why);
    jadd(doc, "attention_reasons", why);
    jadd(doc, "cache", json_cache(r));
    jadd(doc, "window", json_window(r));
    for (size_t i = 0; i < r->n; i++)
        json_object_array_add(rows, json_row(&r->rows[i]));
    jadd(doc, "templates", rows);
    jadd(doc, "origin_hosts", json_hosts(r));
    jadd(doc, "proxies", json_proxies(r));
    const char *s = json_object_to_json_string_ext(
        doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                 JSON_C_TO_STRING_NOSLASHESCAPE);
    /* NULL: json-c could not build the text (out of memory). */
    int rc = s != NULL && printf("%s\n", s) >= 0 ? 0 : ic_neg_errno(EIO);
    json_object_put(doc);
    return rc;
}

/* ------------------------------------------------------------ Prometheus */

/* Label values escape \, " and newline (the exposition format's rule). */
static void prom_label(const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            printf("\\%c", *s);
        else if (*s == '\n')
            printf("\\n");
        else
            putchar(*s);
    }
}

static void prom_head(const char *name, const char *type, const char *help)
{
    printf("# HELP imgcache_%s %s\n# TYPE imgcache_%s %s\n", name, help, name,
           type);
}

/* A per-template metric: HELP/TYPE once, then one sample per template. */
struct prom_metric {
    const char *name, *type, *help;
    uint64_t (*get)(const struct trow *w);
};

#define PROM_GET(fn, expr)                                                     \
    static uint64_t fn(const struct trow *w) { return (expr); }
PROM_GET(pg_size, w->t.size)
PROM_GET(pg_gen, w->t.generation)
PROM_GET(pg_cached, w->u.cached_bytes)
PROM_GET(pg_pinned, w->u.pinned_bytes)
PROM_GET(pg_present, w->u.pinned_present_bytes)
PROM_GET(pg_missing, w->u.pinned_bytes - w->u.pinned_present_bytes)
PROM_GET(pg_quota, w->t.quota)
PROM_GET(pg_over, (uint64_t)w->over_quota)
PROM_GET(pg_hits, w->c.hits)
PROM_GET(pg_misses, w->c.misses)
PROM_GET(pg_obytes, w->c.origin_bytes)
PROM_GET(pg_oreads, w->c.origin_reads)
PROM_GET(pg_errors, w->c.fill_errors)
PROM_GET(pg_evblk, w->c.evictions)
PROM_GET(pg_evbytes, w->c.evicted_bytes)
PROM_GET(pg_uncached, w->c.uncached)
PROM_GET(pg_rafetched, w->c.ra_fetched)
PROM_GET(pg_raused, w->c.ra_used)
PROM_GET(pg_local, w->c.local_bytes)
PROM_GET(pg_verified, w->c.verified)
PROM_GET(pg_vfail, w->c.verify_failed)
PROM_GET(pg_zero, w->c.zero_skipped)

static const struct prom_metric prom_tmpl[] = {
    {"size_bytes", "gauge", "Template size in bytes.", pg_size},
    {"generation", "gauge", "Template generation (bumped when the origin "
     "changes).", pg_gen},
    {"cached_bytes", "gauge", "Bytes of the template held in the cache.",
     pg_cached},
    {"pinned_bytes", "gauge", "Bytes of the blocks covered by pins.",
     pg_pinned},
    {"pinned_present_bytes", "gauge", "Pinned bytes present in the cache.",
     pg_present},
    {"pinned_missing_bytes", "gauge", "Pinned bytes not in the cache.",
     pg_missing},
    {"quota_bytes", "gauge", "Template quota in bytes (0: none).", pg_quota},
    {"over_quota", "gauge", "1 when the template is over its quota.", pg_over},
    {"hits_total", "counter", "Blocks served from the cache.", pg_hits},
    {"misses_total", "counter", "Blocks fetched from the origin.", pg_misses},
    {"origin_bytes_total", "counter", "Bytes fetched from the origin.",
     pg_obytes},
    {"origin_reads_total", "counter", "Read requests sent to the origin.",
     pg_oreads},
    {"fill_errors_total", "counter", "Failed fills from the origin.",
     pg_errors},
    {"evicted_blocks_total", "counter", "Blocks evicted.", pg_evblk},
    {"evicted_bytes_total", "counter", "Bytes evicted.", pg_evbytes},
    {"uncached_blocks_total", "counter", "Blocks served without caching "
     "(no room).", pg_uncached},
    {"readahead_fetched_bytes_total", "counter", "Bytes readahead fetched "
     "from the origin.", pg_rafetched},
    {"readahead_used_bytes_total", "counter", "Bytes readahead fetched that "
     "a reader then read (each block once).", pg_raused},
    {"local_bytes_total", "counter", "Bytes filled from local copies of "
     "identical blocks (delta fills) instead of the origin.", pg_local},
    {"verified_blocks_total", "counter", "Fetched blocks that matched the "
     "block manifest.", pg_verified},
    {"verify_failures_total", "counter", "Fetched blocks that did not match "
     "the block manifest (any source).", pg_vfail},
    {"zero_blocks_skipped_total", "counter", "Zero blocks the manifest "
     "spared a fetch.", pg_zero},
};

static void prom_scalar(const char *name, const char *help, uint64_t v)
{
    prom_head(name, "gauge", help);
    printf("imgcache_%s %" PRIu64 "\n", name, v);
}

/* Attention from the state alone: Prometheus sees fill errors as increases
 * of imgcache_fill_errors_total, not through a report window. */
static int state_attention(const struct report *r)
{
    int a = r->over_cache_max || r->low_space;

    for (size_t i = 0; i < r->n; i++)
        a |= r->rows[i].over_quota || r->rows[i].boot_missing;
    return a || r->hosts_down;
}

static void prom_cache(const struct report *r)
{
    prom_scalar("templates", "Templates in the cache index.", r->n);
    prom_scalar("used_bytes", "Bytes cached, all templates.", r->used);
    if (r->have_conf) {
        prom_scalar("cache_max_bytes", "cache_max (0: unlimited).",
                    r->cache_max);
        prom_scalar("min_free_bytes", "min_free of the cache filesystem.",
                    r->min_free_bytes);
    }
    if (r->have_fs) {
        prom_scalar("fs_size_bytes", "Size of the cache filesystem.",
                    r->fs_size);
        prom_scalar("fs_free_bytes", "Free bytes on the cache filesystem.",
                    r->fs_free);
    }
    prom_scalar("attention", "1 when a template is over quota, boot-pinned "
                "blocks are missing, an origin host is down, or the cache "
                "is over cache_max or below min_free.",
                (uint64_t)state_attention(r));
}

/* Only from a daemon that answered: no sample is better than a guess. */
static void prom_origins(const struct report *r)
{
    if (!r->have_origins)
        return;
    if (r->n > 0) {
        prom_head("origin_up", "gauge", "1 when some URL of the template's "
                  "origin is on a reachable host (0: misses fail).");
        for (size_t i = 0; i < r->n; i++) {
            if (r->rows[i].ostate < 0)
                continue; /* not loaded by the daemon */
            printf("imgcache_origin_up{template=\"");
            prom_label(r->rows[i].t.name);
            printf("\"} %d\n", r->rows[i].ostate != HEALTH_DOWN);
        }
    }
    if (r->nhosts > 0) {
        prom_head("origin_host_up", "gauge", "1 when the origin host (or "
                  "proxy) can be reached, 0 while it is marked down.");
        for (size_t i = 0; i < r->nhosts; i++) {
            printf("imgcache_origin_host_up{host=\"");
            prom_label(r->hosts[i].key);
            printf("\"} %d\n", !r->hosts[i].down);
        }
    }
    if (r->nproxies > 0) {
        static const struct {
            const char *name, *type, *help;
        } m[] = {
            {"proxy_up", "gauge", "1 unless the proxy (or DIRECT) of a "
             "proxy list is backed off after failures."},
            {"proxy_in_use", "gauge", "1 when some origin's last successful "
             "request went through this route."},
            {"proxy_requests_total", "counter", "Requests sent through the "
             "route."},
            {"proxy_errors_total", "counter", "Requests through the route "
             "that failed it (no connection, timeout, 5xx)."},
        };
        for (size_t k = 0; k < sizeof m / sizeof *m; k++) {
            prom_head(m[k].name, m[k].type, m[k].help);
            for (size_t i = 0; i < r->nproxies; i++) {
                const struct rproxy *p = &r->proxies[i];
                uint64_t v = k == 0 ? (uint64_t)!p->backoff
                             : k == 1 ? (uint64_t)p->in_use
                             : k == 2 ? p->requests : p->errors;
                printf("imgcache_%s{proxy=\"", m[k].name);
                prom_label(p->name);
                printf("\"} %" PRIu64 "\n", v);
            }
        }
    }
}

/* Per template and class: the same figures as json_classes. */
static void prom_classes(const struct report *r)
{
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"class_pinned_bytes", "gauge",
         "Bytes of the blocks whose strongest pin is of the class."},
        {"class_present_bytes", "gauge",
         "Of those, bytes present in the cache."},
        {"class_evicted_blocks_total", "counter",
         "Blocks of the class evicted (boot never is)."},
    };
    if (r->n == 0)
        return;
    for (size_t j = 0; j < sizeof m / sizeof m[0]; j++) {
        prom_head(m[j].name, m[j].type, m[j].help);
        for (size_t i = 0; i < r->n; i++)
            for (int k = PIN_BOOT; k >= PIN_LOW; k--) {
                const struct trow *w = &r->rows[i];
                uint64_t v = j == 0   ? w->u.class_pinned_bytes[k]
                             : j == 1 ? w->u.class_present_bytes[k]
                                      : class_evicted(&w->c, k);
                printf("imgcache_%s{template=\"", m[j].name);
                prom_label(w->t.name);
                printf("\",class=\"%s\"} %" PRIu64 "\n",
                       pin_class_name(k), v);
            }
    }
}

static int print_prom(const struct report *r)
{
    for (size_t m = 0; m < sizeof prom_tmpl / sizeof prom_tmpl[0]; m++) {
        const struct prom_metric *pm = &prom_tmpl[m];
        if (r->n == 0)
            continue;
        prom_head(pm->name, pm->type, pm->help);
        for (size_t i = 0; i < r->n; i++) {
            printf("imgcache_%s{template=\"", pm->name);
            prom_label(r->rows[i].t.name);
            printf("\"} %" PRIu64 "\n", pm->get(&r->rows[i]));
        }
    }
    prom_classes(r);
    prom_cache(r);
    prom_origins(r);
    return 0;
}

/* ------------------------------------------------------------ main flows */

/* One class's line of a template missing some of its blocks (--class). */
static int check_class(const struct trow *w, int k)
{
    char a[32], b[32], name[256];
    uint64_t p = w->u.class_pinned_bytes[k], q = w->u.class_present_bytes[k];

    if (q >= p)
        return 0;
    snprintf(name, sizeof name, "%s", w->t.name);
    printable(name);
    printf("%s: %" PRIu64 " %s pinned bytes missing (%s of %s)\n", name,
           p - q, pin_class_name(k), human(a, sizeof a, p - q),
           human(b, sizeof b, p));
    return 1;
}

/* One line per template missing pinned blocks (of class cls, PIN_NONE:
 * any); 0 when none is. */
static int check_pinned(const struct report *r, const char *only, int cls)
{
    char a[32], b[32], name[256];
    int found = 0, missing = 0;

    for (size_t i = 0; i < r->n; i++) {
        const struct trow *w = &r->rows[i];
        if (only && strcmp(only, w->t.name) != 0)
            continue;
        found = 1;
        if (cls != PIN_NONE) {
            missing |= check_class(w, cls);
            continue;
        }
        if (!w->pins_missing)
            continue;
        missing = 1;
        snprintf(name, sizeof name, "%s", w->t.name);
        printable(name);
        printf("%s: %" PRIu64 " pinned bytes missing (%s of %s; %" PRIu64
               " of %" PRIu64 " blocks)\n", name,
               w->u.pinned_bytes - w->u.pinned_present_bytes,
               human(a, sizeof a,
                     w->u.pinned_bytes - w->u.pinned_present_bytes),
               human(b, sizeof b, w->u.pinned_bytes),
               w->u.pinned_blocks - w->u.pinned_present_blocks,
               w->u.pinned_blocks);
    }
    if (only && !found) {
        fprintf(stderr, PROG ": no template '%s' in the cache index\n", only);
        return EXIT_TROUBLE;
    }
    return missing ? EXIT_ATTENTION : 0;
}

static int emit(const struct opts *o, const struct report *r)
{
    int rc = 0;

    if (o->fmt == FMT_JSON)
        rc = print_json(r);
    else if (o->fmt == FMT_PROM)
        rc = print_prom(r);
    else
        print_table(r);
    /* A report that did not reach its reader must not move the cursor. */
    if (fflush(stdout) != 0 || ferror(stdout))
        rc = ic_neg_errno(EIO);
    if (rc < 0) {
        fprintf(stderr, PROG ": cannot write the report: %s\n",
                strerror(-rc));
        return rc;
    }
    return 0;
}

/* --since looks back without consuming; Prometheus scrapes use the
 * cumulative counters and must not eat the window of the mailed report. */
static int advance(const struct opts *o, const struct report *r)
{
    if (o->no_advance || o->since_given || o->fmt == FMT_PROM)
        return 0;
    int64_t prune = o->retention_s ? (int64_t)r->now - o->retention_s : 0;
    int rc = index_report_advance(r->cache_dir, r->win.upto_id, r->now,
                                  prune);
    if (rc < 0)
        fprintf(stderr, PROG ": cannot record the report in %s/%s: %s "
                "(use --no-advance to report without recording)\n",
                r->cache_dir, INDEX_FILE, strerror(-rc));
    return rc;
}

static void report_free(struct report *r)
{
    free(r->rows);
    free(r->hosts);
    free(r->proxies);
}

int main(int argc, char **argv)
{
    struct opts o = {.retention_s = DEFAULT_RETENTION_S};
    struct report r = {.now = time(NULL)};
    int rc;

    log_init(PROG, 0);
    rc = parse_args(argc, argv, &o, r.now);
    if (rc != 0)
        return rc > 0 ? 0 : EXIT_TROUBLE;
    if (load_config(&o, &r) < 0 || gather(&o, &r) < 0) {
        report_free(&r);
        return EXIT_TROUBLE;
    }
    if (o.check_pinned)
        rc = check_pinned(&r, o.check_tmpl, o.check_cls);
    else if (emit(&o, &r) < 0 || advance(&o, &r) < 0)
        rc = EXIT_TROUBLE;
    /* Prometheus output is published by `... && mv`: a cache that needs
     * attention must still publish (imgcache_attention says so). */
    else
        rc = r.attention && o.fmt != FMT_PROM ? EXIT_ATTENTION : 0;
    report_free(&r);
    return rc;
}
