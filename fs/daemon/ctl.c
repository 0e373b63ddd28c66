/* Control socket server for imgcache-pin; protocol in ic-ctl.h.
 *
 * Threads: one accept thread; one detached worker per connection.  The
 * struct ctl is reference counted (ctl_start's reference plus one per
 * worker), so a worker that outlives ctl_stop() never touches freed
 * memory of ours. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ic-cache.h"
#include "ic-conf.h"
#include "ic-ctl.h"
#include "ic-ctlproto.h"
#include "ic-health.h"
#include "ic-proxy.h"
#include "ic-origin.h"
#include "ic-log.h"
#include "ic-pin.h"
#include "ic-prewarm.h"
#include "ic-pinspec.h"
#include "ic-util.h"

/* Longest answer line we format (a request's fields are echoed cut). */
#define REPLY_MAX 1024
/* Progress lines: at most one per PROGRESS_MS. */
#define PROGRESS_MS 200
#define MAX_FIELDS 5

struct ctl {
    struct cache *c;
    char *dir;
    char *path;
    dev_t sock_dev;          /* the socket file we bound: unlinked at */
    ino_t sock_ino;          /* stop only if it is still ours */
    int lfd;
    int wake[2];             /* self-pipe: ctl_stop wakes the acceptor */
    pthread_t acceptor;
    pthread_mutex_t lock;    /* protects everything below */
    pthread_cond_t idle;     /* broadcast when a worker ends */
    int refs;                /* ctl_start's + one per worker */
    unsigned nconn;
    int fds[CTL_MAX_CONN];   /* running workers' sockets, -1 = free slot */
};

/* One connection, owned by its worker thread. */
struct conn {
    struct ctl *ctl;
    int slot;
    int fd;
    int dead;                /* a send failed: the client is gone */
    uid_t uid;
    struct ctl_reader rd;    /* request lines */
};

static void ctl_unref_locked(struct ctl *ctl, int *last)
{
    *last = --ctl->refs == 0;
}

static void ctl_free(struct ctl *ctl)
{
    pthread_mutex_destroy(&ctl->lock);
    pthread_cond_destroy(&ctl->idle);
    free(ctl->dir);
    free(ctl->path);
    free(ctl);
}

/* ------------------------------------------------------------ output */

static int send_all(struct conn *k, const char *p, size_t n)
{
    /* EPIPE, or EAGAIN after SO_SNDTIMEO: a client that does not read its
     * answers is dropped, not waited for. */
    if (!k->dead && ctlproto_send(k->fd, p, n) != 0)
        k->dead = 1;
    return k->dead ? -ECONNRESET : 0;
}

/* Send one line (fmt without the '\n').  0, or -ECONNRESET once the
 * client is gone or does not read (then every later reply fails too). */
__attribute__((format(printf, 2, 3))) static int reply(struct conn *k,
                                                       const char *fmt, ...)
{
    char line[REPLY_MAX + 1];
    va_list ap;

    va_start(ap, fmt);
    int r = vsnprintf(line, REPLY_MAX, fmt, ap);
    va_end(ap);
    if (r < 0)
        return -EINVAL;
    /* A message may quote client input or an engine string. */
    ctlproto_sanitize(line);
    size_t n = strlen(line);
    line[n++] = '\n';
    return send_all(k, line, n);
}

static int reply_err(struct conn *k, const char *msg)
{
    return reply(k, "error\t%s", msg);
}

/* ------------------------------------------------------------ input */

/* Next request line into *line (valid until the next call), within
 * CTL_IO_TIMEOUT_S: the deadline is per line, so a client trickling a byte
 * now and then cannot keep a slot.  1 got a line, 0 end of input, timeout
 * or error, -EMSGSIZE too long (answered). */
static int read_line(struct conn *k, char **line)
{
    int rc = ctl_reader_line(&k->rd, CTL_IO_TIMEOUT_S * 1000, line);

    if (rc == -EMSGSIZE) {
        reply(k, "error\trequest longer than %u bytes", CTL_LINE_MAX);
        return -EMSGSIZE;
    }
    return rc == 1;
}

/* ------------------------------------------------------------ verbs */

static struct tmpl *find_tmpl(struct conn *k, const char *name)
{
    struct tmpl *t = cache_find(k->ctl->c, name);
    if (t == NULL)
        reply(k, "error\tno template '%s'", name);
    return t;
}

/* The daemon may run as root: it opens no file named by a client.  0, or
 * -EINVAL (a bad spec) or -EPERM (a profile item), answered. */
static int refuse_profiles(struct conn *k, const char *spec)
{
    struct pin_item *items;
    size_t n;
    char err[256];

    if (pinspec_parse(spec, &items, &n, err, sizeof err) != 0) {
        reply_err(k, err);
        return -EINVAL;
    }
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad |= items[i].kind == PIN_PROFILE;
    pinspec_free(items, n);
    if (bad)
        reply_err(k, "profile: items are read by imgcache-pin, not the "
                     "daemon; send their ranges");
    return bad ? -EPERM : 0;
}

/* Apply resolved sets as the tool's pins, every class in one change (a
 * range named in two ends in the stronger): a request whose boot part is
 * refused over the quota leaves nothing of it applied.  An unpin's
 * sets[PIN_NONE] comes out of every class. */
static int change_sets(struct tmpl *t, struct byte_range **sets, size_t *n,
                       int unpin, char *err, size_t errlen)
{
    return pin_apply(t, PIN_SRC_TOOL, unpin ? PIN_OP_REMOVE : PIN_OP_ADD,
                     sets, n, err, errlen);
}

static int do_change(struct conn *k, char **f, int nf, int unpin)
{
    struct byte_range *sets[PIN_NCLASS];
    size_t n[PIN_NCLASS];
    char err[512];
    /* Without a CLASS field (a client from before classes): pins are
     * boot, unpins take the ranges out of whatever class holds them. */
    int cls = unpin ? PIN_NONE : PIN_BOOT;

    if (nf < 3 || nf > 4 || strchr(f[2], '\t') != NULL ||
        (nf == 4 && (cls = pin_class_parse(f[3], strlen(f[3]))) < 0))
        return reply_err(k, "usage: pin|unpin TEMPLATE SPEC "
                            "[boot|high|low]");
    struct tmpl *t = find_tmpl(k, f[1]);
    if (t == NULL || refuse_profiles(k, f[2]) != 0)
        return 0;
    err[0] = '\0';
    int rc = prewarm_resolve(t, f[2], cls, sets, n, err, sizeof err);
    if (rc == 0)
        rc = change_sets(t, sets, n, unpin, err, sizeof err);
    prewarm_sets_free(sets, n);
    if (rc != 0) {
        if (err[0] == '\0')
            snprintf(err, sizeof err, "%s of %s failed: %s",
                     unpin ? "unpin" : "pin", cache_tmpl_name(t),
                     strerror(-rc));
        log_info("ctl: uid %u: %s", (unsigned)k->uid, err);
        return reply_err(k, err);
    }
    uint64_t pinned = pin_bytes(t);
    log_info("ctl: uid %u: %s %s %.200s: %" PRIu64 " bytes pinned",
             (unsigned)k->uid, unpin ? "unpin" : "pin", cache_tmpl_name(t),
             f[2], pinned);
    return reply(k, "ok\t%s\t%" PRIu64, unpin ? "unpinned" : "pinned",
                 pinned);
}

static int do_pin(struct conn *k, char **f, int nf)
{
    return do_change(k, f, nf, 0);
}

static int do_unpin(struct conn *k, char **f, int nf)
{
    return do_change(k, f, nf, 1);
}

/* prewarm_run runs in a helper thread so that the fill threads calling the
 * progress callback never block on a slow client's socket: the callback
 * only stores figures, the worker sends them. */
struct warm {
    struct tmpl *t;
    int fd;                  /* the client's socket, watched for hang-ups */
    int cls;                 /* the class to warm, PIN_NONE: every class */
    unsigned parallel;
    uint64_t rate;           /* bytes/s, 0: unlimited */
    pthread_mutex_t lock;    /* protects the fields below */
    pthread_cond_t cond;
    uint64_t done, total, failed;
    int finished, rc;
};

static void warm_progress(void *ctx, uint64_t done, uint64_t total)
{
    struct warm *w = ctx;

    pthread_mutex_lock(&w->lock);
    w->done = done;
    w->total = total;
    pthread_mutex_unlock(&w->lock);
}

/* The client hung up (or ctl_stop shut its socket down): nobody waits for
 * the warm any more, and it stops, so a killed imgcache-pin does not
 * leave its pre-warm fetching. */
static int warm_cancelled(void *ctx)
{
    const struct warm *w = ctx;
    struct pollfd p = {.fd = w->fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 &&
           (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static void *warm_main(void *arg)
{
    struct warm *w = arg;
    uint64_t failed = 0;

    int rc = prewarm_run(w->t, w->cls, w->parallel, w->rate, warm_progress,
                         warm_cancelled, w, &failed);
    pthread_mutex_lock(&w->lock);
    w->rc = rc;
    w->failed = failed;
    w->finished = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void deadline_in(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Send w's figures and note them as sent (w->lock held; the socket write
 * happens without it). */
static void send_progress(struct conn *k, struct warm *w, uint64_t *done,
                          uint64_t *total)
{
    *done = w->done;
    *total = w->total;
    pthread_mutex_unlock(&w->lock);
    reply(k, "progress\t%" PRIu64 "\t%" PRIu64, *done, *total);
    pthread_mutex_lock(&w->lock);
}

/* Send progress lines until the warm ends: on change at most every
 * PROGRESS_MS, unchanged every CTL_HEARTBEAT_MS (the client's idle timeout
 * then only fires when the daemon is really stuck); then the last figures,
 * so a progress bar always ends complete (a short warm may end before the
 * first PROGRESS_MS).  w->lock held. */
static void warm_watch(struct conn *k, struct warm *w)
{
    uint64_t sent_done = 0, sent_total = 0, last_ms = 0;

    while (!w->finished) {
        struct timespec ts;
        deadline_in(&ts, PROGRESS_MS);
        pthread_cond_timedwait(&w->cond, &w->lock, &ts);
        if (w->finished)
            break;
        uint64_t now = mono_ms();
        int changed = w->done != sent_done || w->total != sent_total;
        if (!changed && now - last_ms < CTL_HEARTBEAT_MS)
            continue;
        last_ms = now;
        send_progress(k, w, &sent_done, &sent_total);
    }
    if (w->done != sent_done || w->total != sent_total)
        send_progress(k, w, &sent_done, &sent_total);
}

/* Run the warm (in a helper thread when one can be had); w->rc etc. set. */
static void warm_run(struct conn *k, struct warm *w)
{
    pthread_t th;

    cond_init_mono(&w->cond);
    pthread_mutex_init(&w->lock, NULL);
    if (pthread_create(&th, NULL, warm_main, w) != 0) {
        warm_main(w); /* no progress lines, still a correct answer */
    } else {
        pthread_mutex_lock(&w->lock);
        warm_watch(k, w);
        pthread_mutex_unlock(&w->lock);
        pthread_join(th, NULL);
    }
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
}

static int do_warm(struct conn *k, char **f, int nf)
{
    struct warm w = {.cls = PIN_NONE};

    if (nf < 3 || nf > 5 ||
        ctlproto_uint(f[2], 1, CTL_PARALLEL_MAX, &w.parallel) != 0 ||
        (nf >= 4 && (parse_size(f[3], &w.rate) != 0 ||
                     (w.rate != 0 && (w.rate < WARM_RATE_MIN ||
                                      w.rate > WARM_RATE_MAX)))) ||
        (nf == 5 && (w.cls = pin_class_parse(f[4], strlen(f[4]))) < 0))
        return reply(k, "error\tusage: warm TEMPLATE PARALLEL (1..%d) "
                        "[RATE (bytes/s, 0 or from 64K to 1T) "
                        "[boot|high|low]]",
                     CTL_PARALLEL_MAX);
    w.t = find_tmpl(k, f[1]);
    if (w.t == NULL)
        return 0;
    w.fd = k->fd;
    warm_run(k, &w);
    if (w.rc == -ECANCELED) {
        log_info("ctl: uid %u: warm of %s cancelled: the client went away",
                 (unsigned)k->uid, cache_tmpl_name(w.t));
        return 0;
    }
    if (w.rc == -EIO)
        return reply(k,
                     "error\t%" PRIu64 " bytes of pinned blocks could not "
                     "be fetched",
                     w.failed);
    if (w.rc != 0)
        return reply(k, "error\twarm of %s failed: %s", cache_tmpl_name(w.t),
                     strerror(-w.rc));
    return reply(k, "ok\twarm\t%" PRIu64, w.total ? w.total : pin_bytes(w.t));
}

static int list_tmpl(struct conn *k, struct tmpl *t)
{
    struct pin_status *s;
    size_t n;

    if (pin_list(t, &s, &n) != 0)
        return reply_err(k, "out of memory");
    /* A boot row without its class: what a client from before classes
     * reads (it skips rows of another length). */
    for (size_t i = 0; i < n && !k->dead; i++)
        reply(k,
              "pin\t%s\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64
              "%s%s",
              cache_tmpl_name(t), s[i].off, s[i].len, s[i].bytes,
              s[i].present, s[i].cls == PIN_BOOT ? "" : "\t",
              s[i].cls == PIN_BOOT ? "" : pin_class_name(s[i].cls));
    free(s);
    return k->dead ? -ECONNRESET : 1; /* 1: no final line sent yet */
}

static int do_list(struct conn *k, char **f, int nf)
{
    struct tmpl **v;

    if (nf > 2)
        return reply_err(k, "usage: list [TEMPLATE]");
    if (nf == 2) {
        struct tmpl *t = find_tmpl(k, f[1]);
        if (t == NULL || list_tmpl(k, t) != 1)
            return 0;
        return reply(k, "ok");
    }
    /* Lock-free snapshot: a reload may append templates meanwhile. */
    size_t n = cache_snapshot(k->ctl->c, &v);
    for (size_t i = 0; i < n; i++)
        if (!cache_tmpl_removed(v[i]) &&
            list_tmpl(k, v[i]) != 1)
            return 0;
    return reply(k, "ok");
}

/* Wait up to ms; return early when the client hangs up or ctl_stop shuts
 * the socket down (both show as POLLRDHUP/POLLHUP).  0 when the full time
 * passed, -ECONNRESET when cut short (-errno when poll fails). */
static int record_wait(struct conn *k, uint64_t ms)
{
    uint64_t end = mono_ms() + ms;

    for (;;) {
        uint64_t now = mono_ms();
        if (now >= end)
            return 0;
        struct pollfd p = {.fd = k->fd, .events = POLLRDHUP};
        int r = poll(&p, 1, (int)(end - now > 60000 ? 60000 : end - now));
        if (r < 0 && errno != EINTR)
            return -errno;
        if (r > 0)
            return -ECONNRESET;
    }
}

/* The ordered trace: a header with what the replayer's user needs to
 * know of the template, then every read as it arrived. */
static int send_trace(struct conn *k, struct tmpl *t)
{
    struct trace_read *v;
    size_t n;
    uint64_t dropped, size;
    int64_t mtime;

    int rc = pin_trace_end(t, &v, &n, &dropped);
    if (rc != 0)
        return reply(k, "error\trecording %s: %s", cache_tmpl_name(t),
                     strerror(-rc));
    cache_tmpl_attr(t, &size, &mtime);
    reply(k, "trace\t%" PRIu64 "\t%" PRIu32 "\t%" PRIu64, size,
          cache_tmpl_bs(t), dropped);
    for (size_t i = 0; i < n && !k->dead; i++)
        reply(k, "read\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64, v[i].t_us,
              v[i].off, v[i].len);
    free(v);
    if (dropped)
        log_warn("ctl: trace of %s: %" PRIu64 " reads past the first %u "
                 "were not kept", cache_tmpl_name(t), dropped,
                 PIN_TRACE_MAX);
    return reply(k, "ok");
}

static int do_record(struct conn *k, char **f, int nf)
{
    unsigned secs;
    struct byte_range *r;
    size_t n;
    int trace = nf == 4 && strcmp(f[3], "trace") == 0;

    if ((nf != 3 && !trace) ||
        ctlproto_uint(f[2], 1, CTL_RECORD_MAX_S, &secs) != 0)
        return reply(k, "error\tusage: record TEMPLATE SECONDS (1..%d) "
                        "[trace]", CTL_RECORD_MAX_S);
    struct tmpl *t = find_tmpl(k, f[1]);
    if (t == NULL)
        return 0;
    int rc = pin_record_begin(t, trace ? PIN_REC_TRACE : PIN_REC_PROFILE);
    if (rc == -EBUSY)
        return reply(k, "error\ta recording of %s is already running",
                     cache_tmpl_name(t));
    if (rc != 0)
        return reply(k, "error\trecording %s: %s", cache_tmpl_name(t),
                     strerror(-rc));
    log_info("ctl: uid %u: recording %s of %s for %u s", (unsigned)k->uid,
             trace ? "a trace of the reads" : "reads", cache_tmpl_name(t),
             secs);
    int cut = record_wait(k, (uint64_t)secs * 1000);
    if (trace && !cut)
        return send_trace(k, t);
    rc = pin_record_end(t, &r, &n);
    if (rc != 0)
        return reply(k, "error\trecording %s: %s", cache_tmpl_name(t),
                     strerror(-rc));
    if (cut) {
        free(r);
        return reply_err(k, "recording abandoned (daemon stopping)");
    }
    for (size_t i = 0; i < n && !k->dead; i++)
        reply(k, "range\t%" PRIu64 "\t%" PRIu64, r[i].off, r[i].len);
    free(r);
    return reply(k, "ok");
}

/* Origin reachability (ic-health.h): every host entry, then the state of
 * every configured template's origin. */
static int do_origins(struct conn *k, char **f, int nf)
{
    struct health_info *hv;
    struct tmpl **v;

    (void)f;
    if (nf != 1)
        return reply_err(k, "usage: origins");
    int n = health_list(&hv);
    if (n < 0)
        return reply_err(k, "out of memory");
    for (int i = 0; i < n && !k->dead; i++)
        reply(k, "host\t%s\t%s\t%lld\t%u\t%" PRIu64, hv[i].key,
              hv[i].down ? "down" : "up", (long long)hv[i].since,
              hv[i].fails, hv[i].next_probe_in_ms);
    free(hv);
    struct proxy_info *pv;
    n = proxy_list(&pv, mono_ms());
    if (n < 0)
        return reply_err(k, "out of memory");
    for (int i = 0; i < n && !k->dead; i++)
        reply(k, "proxy\t%s\t%s\t%d\t%" PRIu64 "\t%" PRIu64 "\t%u\t%" PRIu64,
              pv[i].display, pv[i].backed_off ? "backoff" : "ok",
              pv[i].in_use, pv[i].requests, pv[i].errors, pv[i].fails,
              pv[i].retry_in_ms);
    free(pv);
    size_t nt = cache_snapshot(k->ctl->c, &v);
    for (size_t i = 0; i < nt && !k->dead; i++) {
        int64_t since;
        if (cache_tmpl_removed(v[i]))
            continue;
        enum health_state st = origin_state(cache_tmpl_origin(v[i]), &since);
        reply(k, "tmpl\t%s\t%s\t%lld", cache_tmpl_name(v[i]),
              health_state_name(st), (long long)since);
    }
    return reply(k, "ok");
}

static const struct verb {
    const char *name;
    int (*fn)(struct conn *k, char **f, int nf);
} verbs[] = {
    {"pin", do_pin},   {"unpin", do_unpin},   {"warm", do_warm},
    {"list", do_list}, {"record", do_record}, {"origins", do_origins},
};

/* Answer one request line.  -errno (-ECONNRESET) when the connection
 * should end. */
static int dispatch(struct conn *k, char *line)
{
    char *f[MAX_FIELDS];
    int nf = ctlproto_split(line, f, MAX_FIELDS);

    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(f[0], verbs[i].name) == 0) {
            verbs[i].fn(k, f, nf);
            return k->dead ? -ECONNRESET : 0;
        }
    reply(k, "error\tunknown request '%.40s'", f[0]);
    return k->dead ? -ECONNRESET : 0;
}

/* ------------------------------------------------------------ workers */

/* Root, or whoever owns cache_dir (the daemon's own user, usually). */
static int peer_allowed(struct conn *k)
{
    struct ucred cr;
    socklen_t len = sizeof cr;
    struct stat st;

    if (getsockopt(k->fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0)
        return 0;
    k->uid = cr.uid;
    if (cr.uid == 0)
        return 1;
    return stat(k->ctl->dir, &st) == 0 && st.st_uid == cr.uid;
}

static void conn_end(struct conn *k)
{
    struct ctl *ctl = k->ctl;
    int last;

    ctl_reader_free(&k->rd);
    pthread_mutex_lock(&ctl->lock);
    /* Closed under the lock: ctl_stop never shuts down a reused fd. */
    close(k->fd);
    ctl->fds[k->slot] = -1;
    ctl->nconn--;
    pthread_cond_broadcast(&ctl->idle);
    ctl_unref_locked(ctl, &last);
    pthread_mutex_unlock(&ctl->lock);
    if (last)
        ctl_free(ctl);
    free(k);
}

static void *conn_main(void *arg)
{
    struct conn *k = arg;
    char *line;

    if (!peer_allowed(k)) {
        log_warn("ctl: refused a connection from uid %u", (unsigned)k->uid);
        reply_err(k, "permission denied");
    } else {
        while (read_line(k, &line) == 1)
            if (dispatch(k, line) != 0)
                break;
    }
    conn_end(k);
    return NULL;
}

/* Sends block at most this long on a client that does not read; reads
 * are bounded by read_line()'s deadline. */
static void set_send_timeout(int fd)
{
    struct timeval tv = {.tv_sec = CTL_IO_TIMEOUT_S};

    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
        log_warn("ctl: cannot set a send timeout: %s", strerror(errno));
}

/* Take a slot and a reference for a new connection (ctl.lock held).
 * The slot, or -EBUSY when all CTL_MAX_CONN slots are busy. */
static int slot_take(struct ctl *ctl, int fd)
{
    for (int i = 0; i < CTL_MAX_CONN; i++)
        if (ctl->fds[i] < 0) {
            ctl->fds[i] = fd;
            ctl->nconn++;
            ctl->refs++;
            return i;
        }
    return -EBUSY;
}

static void slot_give_back(struct ctl *ctl, int slot)
{
    int last;

    pthread_mutex_lock(&ctl->lock);
    ctl->fds[slot] = -1;
    ctl->nconn--;
    ctl_unref_locked(ctl, &last); /* never the last: ctl_start's remains */
    pthread_mutex_unlock(&ctl->lock);
}

static void conn_start(struct ctl *ctl, int fd)
{
    static const char busy[] = "error\ttoo many connections\n";
    pthread_attr_t attr;
    pthread_t th;

    pthread_mutex_lock(&ctl->lock);
    int slot = slot_take(ctl, fd);
    pthread_mutex_unlock(&ctl->lock);
    if (slot < 0) {
        /* Never block the acceptor on a client: best effort. */
        if (send(fd, busy, sizeof busy - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
            log_debug("ctl: cannot tell a client we are busy");
        close(fd);
        return;
    }
    struct conn *k = calloc(1, sizeof *k);
    if (k == NULL)
        goto fail;
    *k = (struct conn){.ctl = ctl, .slot = slot, .fd = fd};
    ctl_reader_init(&k->rd, fd, CTL_LINE_MAX);
    set_send_timeout(fd);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &attr, conn_main, k);
    pthread_attr_destroy(&attr);
    if (rc == 0)
        return;
    log_warn("ctl: cannot start a worker: %s", strerror(rc));
    free(k);
fail:
    slot_give_back(ctl, slot);
    close(fd);
}

static void *accept_main(void *arg)
{
    struct ctl *ctl = arg;
    struct pollfd p[2] = {{.fd = ctl->lfd, .events = POLLIN},
                          {.fd = ctl->wake[0], .events = POLLIN}};

    for (;;) {
        if (poll(p, 2, -1) < 0 && errno != EINTR) {
            log_err("ctl: poll: %s", strerror(errno));
            return NULL;
        }
        if (p[1].revents != 0)
            return NULL;
        if (!(p[0].revents & POLLIN))
            continue;
        int fd = accept4(ctl->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_start(ctl, fd);
        } else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                   errno == ENOMEM) {
            /* The pending connection stays queued and would make poll
             * spin; back off instead of burning a CPU. */
            log_warn("ctl: accept: %s", strerror(errno));
            poll(NULL, 0, 100);
        }
    }
}

/* ------------------------------------------------------------ start/stop */

/* 1 when a daemon answers on path (someone else serves this cache_dir). */
static int sock_live(const struct sockaddr_un *sa)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int live = connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0;
    close(fd);
    return live;
}

static int sock_bind(struct ctl *ctl)
{
    struct sockaddr_un sa;
    struct stat st;

    if (ctlproto_addr(ctl->dir, &sa) != 0) {
        log_err("ctl: socket path %s is too long", ctl->path);
        return -ENAMETOOLONG;
    }
    if (sock_live(&sa)) {
        log_err("ctl: %s is served by another process", ctl->path);
        return -EADDRINUSE;
    }
    if (unlink(ctl->path) != 0 && errno != ENOENT)
        log_warn("ctl: cannot remove stale %s: %s", ctl->path,
                 strerror(errno));
    ctl->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ctl->lfd < 0)
        return -errno;
    /* Linux creates the socket file with the socket inode's mode minus the
     * umask: setting it here gives 0600 from the start without changing
     * the process-wide umask under the other threads' feet. */
    if (fchmod(ctl->lfd, 0600) != 0)
        log_debug("ctl: fchmod socket: %s", strerror(errno));
    if (bind(ctl->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        chmod(ctl->path, 0600) != 0 || listen(ctl->lfd, CTL_MAX_CONN) != 0 ||
        stat(ctl->path, &st) != 0) {
        int e = errno;
        log_err("ctl: %s: %s", ctl->path, strerror(e));
        return -e;
    }
    ctl->sock_dev = st.st_dev;
    ctl->sock_ino = st.st_ino;
    return 0;
}

static struct ctl *ctl_new(struct cache *c, const char *cache_dir)
{
    struct ctl *ctl = calloc(1, sizeof *ctl);
    if (ctl == NULL)
        return NULL;
    ctl->c = c;
    ctl->lfd = ctl->wake[0] = ctl->wake[1] = -1;
    ctl->refs = 1;
    for (int i = 0; i < CTL_MAX_CONN; i++)
        ctl->fds[i] = -1;
    cond_init_mono(&ctl->idle);
    pthread_mutex_init(&ctl->lock, NULL);
    ctl->dir = strdup(cache_dir);
    if (ctl->dir == NULL ||
        asprintf(&ctl->path, "%s/%s", cache_dir, CTL_SOCK_NAME) < 0) {
        ctl->path = NULL;
        ctl_free(ctl);
        return NULL;
    }
    return ctl;
}

static void ctl_close_fds(struct ctl *ctl)
{
    if (ctl->lfd >= 0)
        close(ctl->lfd);
    if (ctl->wake[0] >= 0)
        close(ctl->wake[0]);
    if (ctl->wake[1] >= 0)
        close(ctl->wake[1]);
}

int ctl_start(struct cache *c, const char *cache_dir, struct ctl **out)
{
    struct ctl *ctl = ctl_new(c, cache_dir);
    int rc;

    *out = NULL;
    if (ctl == NULL)
        return -ENOMEM;
    rc = sock_bind(ctl);
    if (rc == 0 && pipe2(ctl->wake, O_CLOEXEC) != 0)
        rc = -errno;
    if (rc == 0) {
        rc = -pthread_create(&ctl->acceptor, NULL, accept_main, ctl);
        if (rc != 0)
            log_err("ctl: cannot start the accept thread: %s",
                    strerror(-rc));
    }
    if (rc != 0) {
        if (ctl->lfd >= 0)
            unlink(ctl->path);
        ctl_close_fds(ctl);
        ctl_free(ctl);
        return rc;
    }
    log_info("ctl: listening on %s", ctl->path);
    *out = ctl;
    return 0;
}

/* Remove the socket file only if it is still the one we bound. */
static void sock_unlink(struct ctl *ctl)
{
    struct stat st;

    if (stat(ctl->path, &st) == 0 && st.st_dev == ctl->sock_dev &&
        st.st_ino == ctl->sock_ino)
        unlink(ctl->path);
}

/* Shut every client socket down (ctl.lock held): blocked reads and sends
 * fail at once, a record_wait() returns. */
static void shutdown_clients(struct ctl *ctl)
{
    for (int i = 0; i < CTL_MAX_CONN; i++)
        if (ctl->fds[i] >= 0)
            shutdown(ctl->fds[i], SHUT_RDWR);
}

int ctl_stop(struct ctl *ctl)
{
    struct timespec ts;
    int last;

    if (ctl == NULL)
        return 0;
    if (write(ctl->wake[1], "x", 1) != 1)
        log_warn("ctl: cannot wake the accept thread: %s", strerror(errno));
    pthread_join(ctl->acceptor, NULL);
    sock_unlink(ctl);
    ctl_close_fds(ctl);
    deadline_in(&ts, CTL_STOP_WAIT_MS);
    pthread_mutex_lock(&ctl->lock);
    shutdown_clients(ctl);
    while (ctl->nconn > 0)
        if (pthread_cond_timedwait(&ctl->idle, &ctl->lock, &ts) == ETIMEDOUT)
            break;
    int left = (int)ctl->nconn;
    ctl_unref_locked(ctl, &last);
    pthread_mutex_unlock(&ctl->lock);
    if (left > 0)
        log_warn("ctl: abandoning %d running control requests", left);
    if (last)
        ctl_free(ctl);
    return left;
}
