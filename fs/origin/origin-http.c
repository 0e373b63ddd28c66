/* HTTP(S) origin (libcurl): HEAD for the validator, Range GETs for blocks.
 *
 * The origin is not trusted.  A read succeeds only on a 206 whose
 * Content-Range is exactly the range asked, whose total is the size we know,
 * without content coding, carrying no other validator, with exactly the
 * bytes asked: a server that ignores Range, sends an endless or short body,
 * lies about lengths or compresses is an error, never wrong bytes.  The
 * write callback stops a transfer as soon as it would exceed the buffer.
 *
 * One call (stat, read, list) is a series of attempts: the primary URL,
 * then each mirror, in rounds separated by exponential backoff with full
 * jitter, until success, an error that retrying cannot fix, or the deadline.
 * Each attempt is bounded by the time left (CURLOPT_TIMEOUT_MS), its
 * connect phase by connect_timeout, and a stalled transfer by a low-speed
 * limit so that a mirror still gets its turn.
 *
 * Mirrors must serve the same bytes.  They receive the same conditional
 * headers as the primary, so they must also share its validator (an rsync
 * that keeps mtimes behind nginx or Apache does).  A mirror that answers
 * "changed" (412, other ETag) or "gone" is skipped for the rest of the call:
 * only the primary decides that the template changed or went away.  (A
 * validator that a stat took from a mirror while the primary was down is
 * then "changed" for the primary once it is back: one new generation.)
 * Retry-After (429, 503) is honoured when it ends before the deadline;
 * otherwise that URL is given up with -ETIMEDOUT.
 *
 * Connections: each origin keeps idle curl handles (which keep their
 * connections alive); a process-wide table of hosts caps the transfers in
 * flight per scheme://host:port at origin_connections (the smallest value
 * configured for that host).  Who gets a host's next slot is the fetch
 * scheduler's choice (ic-sched.h): demand reads before pre-warm before
 * readahead, fair between templates and handles; a waiter waits with the
 * call's deadline, a readahead not at all (-EAGAIN).
 *
 * Reachability: each URL also holds the health entry (ic-health.h) of
 * what its requests connect to: its proxy when it goes through one (the
 * `proxy` option, or the environment's proxy as libcurl would pick it),
 * else its scheme://host:port.  An attempt that could not reach it at all
 * (refused, unresolved, connect timed out: no connection was made, no
 * request sent) counts towards marking it down; any other outcome, an
 * HTTP error status, a stalled or slow body, a TLS failure, means it is
 * there.  URLs whose entry is down are skipped without an attempt, so a
 * call with a mirror on a healthy host goes on with the mirror, and a
 * call with none left ends at once with -EHOSTDOWN.  The probe of a down
 * entry is a connect-only request (DNS, TCP, TLS, proxy tunnel; nothing
 * asked of the server), with the origin's proxy and TLS settings.
 *
 * Secrets: URLs may carry user:password@ and ?token=; only masked URLs
 * (url_mask) are logged, and header values are never logged.
 *
 * What a response must look like is decided in http-check.c (pure, unit
 * tested and fuzzed); this file moves the bytes and logs the verdicts.
 *
 * Locking: two leaves, never held across a transfer nor while the other
 * is taken:
 *   hosts_lock        the host table and every http_host field marked so.
 *                     The slots are the host's struct sched (its own leaf
 *                     lock, taken without hosts_lock): one is held across
 *                     each transfer, no lock is.
 *   http_origin.lock  one origin's idle pool; curl handles are created
 *                     and cleaned up with it released.
 * Health reports (ic-health.h) are made with neither held.  A curl easy
 * handle is used by one thread at a time. */
#include "config.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "ic-conf.h"
#include "ic-health.h"
#include "ic-http-check.h"
#include "ic-log.h"
#include "ic-origin.h"
#include "ic-proxy.h"
#include "ic-proxyspec.h"
#include "ic-url.h"
#include "ic-util.h"

#define HTTP_MAX_URLS 16          /* primary + mirrors */
#define HTTP_LIST_MAX (1u << 20)  /* manifest size limit */
#define HTTP_MAX_REDIRS 5L
#define HTTP_BACKOFF_FIRST_MS 100
#define HTTP_BACKOFF_MAX_MS 2000
/* Below 1 KiB/s for 5 s is a stall: give the next URL its turn. */
#define HTTP_LOW_SPEED_LIMIT 1024L
#define HTTP_LOW_SPEED_TIME 5L
#define HTTP_DEFAULT_CONNS 4u
#define HTTP_DEFAULT_TIMEOUT_MS 30000u
#define HTTP_DEFAULT_CONNECT_MS 5000u
#define HTTP_DISPLAY_MAX 1024

/* ------------------------------------------------------------ hosts */

struct http_host {
    struct http_host *next;   /* protected by hosts_lock */
    char *key;                /* "scheme://host:port": no credentials;
                                 fixed */
    unsigned refs;            /* protected by hosts_lock */
    struct sched slots;       /* the transfer slots (its own lock) */
};

static pthread_mutex_t hosts_lock = PTHREAD_MUTEX_INITIALIZER;
static struct http_host *hosts; /* protected by hosts_lock */

static struct http_host *host_new(const char *key, unsigned limit)
{
    struct http_host *hh = calloc(1, sizeof *hh);
    if (hh == NULL)
        return NULL;
    hh->key = strdup(key);
    if (hh->key == NULL) {
        free(hh);
        return NULL;
    }
    sched_init(&hh->slots, limit);
    return hh;
}

/* Find or create the entry of a host; the smallest limit wins, since
 * origin_connections is a politeness bound towards a shared server. */
static struct http_host *host_get(const char *key, unsigned limit)
{
    struct http_host *hh;
    pthread_mutex_lock(&hosts_lock);
    for (hh = hosts; hh != NULL; hh = hh->next)
        if (strcmp(hh->key, key) == 0)
            break;
    if (hh == NULL) {
        hh = host_new(key, limit);
        if (hh != NULL) {
            hh->next = hosts;
            hosts = hh;
        }
    } else {
        sched_lower_cap(&hh->slots, limit);
    }
    if (hh != NULL)
        hh->refs++;
    pthread_mutex_unlock(&hosts_lock);
    return hh;
}

static void host_put(struct http_host *hh)
{
    if (hh == NULL)
        return;
    pthread_mutex_lock(&hosts_lock);
    int last = --hh->refs == 0;
    if (last) {
        struct http_host **pp = &hosts;
        while (*pp != hh)
            pp = &(*pp)->next;
        *pp = hh->next;
    }
    pthread_mutex_unlock(&hosts_lock);
    if (last) {
        sched_destroy(&hh->slots);
        free(hh->key);
        free(hh);
    }
}

/* ------------------------------------------------------------ origin */

struct http_url {
    char *url;                /* as configured: may hold credentials */
    char *display;            /* masked: the only form that is logged */
    int https;                /* https URL: redirects may not leave TLS */
    struct http_host *host;
    struct health *health;    /* what its requests connect to */
    struct proxy_chain *chain; /* the routes of the origin's proxy
                                  (ic-proxy.h), DIRECT to this URL's
                                  host; NULL without a proxy value */
};

struct http_origin {
    struct http_url urls[HTTP_MAX_URLS]; /* [0] primary, then mirrors */
    size_t nurls;
    char *proxy;              /* NULL: libcurl reads the proxy environment */
    char *ca_file;
    char *netrc;
    uint64_t connect_ms;      /* connect_timeout, for probes */
    pthread_mutex_t lock;     /* protects idle, nidle (the rest is fixed) */
    CURL **idle;              /* idle handles, each with its connections */
    size_t nidle, idle_max;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_ALL);
}

static CURL *pool_get(struct http_origin *h)
{
    CURL *c = NULL;
    pthread_mutex_lock(&h->lock);
    if (h->nidle > 0)
        c = h->idle[--h->nidle];
    pthread_mutex_unlock(&h->lock);
    return c != NULL ? c : curl_easy_init();
}

static void pool_put(struct http_origin *h, CURL *c)
{
    pthread_mutex_lock(&h->lock);
    if (h->nidle < h->idle_max) {
        h->idle[h->nidle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&h->lock);
    if (c != NULL)
        curl_easy_cleanup(c);
}

/* ------------------------------------------------------------ errors */

/* The one place a CURLcode becomes an errno; *retry says whether another
 * attempt (this URL later, or a mirror) may succeed. */
static int curl_errno(CURLcode rc, int *retry)
{
    *retry = 0;
    switch (rc) {
    case CURLE_OK:
        return 0;
    case CURLE_OPERATION_TIMEDOUT: /* also the low-speed limit */
        *retry = 1;
        return -ETIMEDOUT;
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE: /* short body */
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR: /* handshakes also fail on resets */
    case CURLE_OUT_OF_MEMORY:
        *retry = 1;
        return -EIO;
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_UNSUPPORTED_PROTOCOL: /* includes a refused redirect */
    case CURLE_URL_MALFORMAT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_LOGIN_DENIED:
    case CURLE_FILESIZE_EXCEEDED:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_WRITE_ERROR:
    default:
        return -EIO;
    }
}

/* ------------------------------------------------------------ transfers */

struct xfer {
    struct http_expect want;   /* what this transfer asks for */
    const char *display;       /* masked URL of this attempt */
    char *buf;                 /* RANGE/PROBE: caller's; WHOLE: grown */
    size_t cap;                /* WHOLE: allocated size of buf */
    size_t got;                /* body bytes stored */
    int sink, sink_fd;         /* WHOLE with sink: the body goes to
                                  sink_fd (from offset 0), not to buf */
    const char *if_none_match; /* WHOLE: a strong ETag, or NULL */
    struct http_resp resp;     /* reset at every status line (redirects, 1xx) */
    int64_t filetime;          /* from CURLINFO_FILETIME_T, -1 unknown */
    int refresh;               /* RANGE: ask caches on the way for a copy
                                  fresh from the origin */

    /* Set by the first body byte or, without a body, after the transfer. */
    int checked;
    int verdict;               /* 0, HTTPC_STOP or -errno */
    int retry;
    char errbuf[CURL_ERROR_SIZE];
};

static size_t on_header(char *data, size_t size, size_t nitems, void *arg)
{
    struct xfer *x = arg;
    size_t total = size * nitems;

    httpc_resp_line(&x->resp, data, total);
    return total;
}

/* Judge the response headers: 0 (take the body), HTTPC_STOP or -errno;
 * the reason of a refusal is logged here, with the (masked) URL. */
static int check_headers(const struct xfer *x, int *retry)
{
    char why[256];
    int v = httpc_check_headers(&x->resp, &x->want, retry, why, sizeof why);

    if (why[0] != '\0')
        log_warn("%s: %s", x->display, why);
    return v;
}

/* Grow the list buffer; the limit is checked by the caller.  0 or
 * -ENOMEM. */
static int whole_reserve(struct xfer *x, size_t need)
{
    if (need <= x->cap)
        return 0;
    size_t cap = x->cap ? x->cap : 16384;
    while (cap < need)
        cap *= 2;
    char *p = realloc(x->buf, cap);
    if (p == NULL)
        return -ENOMEM;
    x->buf = p;
    x->cap = cap;
    return 0;
}

/* Body bytes go straight to their destination; one byte more than asked
 * stops the transfer (returning less than given makes curl abort). */
static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct xfer *x = arg;
    size_t n = size * nmemb;

    if (!x->checked) {
        x->checked = 1;
        x->verdict = check_headers(x, &x->retry);
    }
    if (x->verdict != 0)
        return 0;
    if (!httpc_body_fits(&x->want, x->got, n)) {
        log_warn("%s: more bytes than asked for, transfer stopped",
                 x->display);
        x->verdict = -EIO;
        x->retry = 0;
        return 0;
    }
    if (x->sink) {
        if (pwrite_full(x->sink_fd, data, n, (off_t)x->got) < 0) {
            x->verdict = -EIO;
            x->retry = 0;
            return 0;
        }
        x->got += n;
        return n;
    }
    if (x->want.kind == HTTPC_WHOLE &&
        whole_reserve(x, x->got + n + 1) != 0) {
        x->verdict = -EIO;
        x->retry = 1;
        return 0;
    }
    memcpy(x->buf + x->got, data, n);
    x->got += n;
    return n;
}

/* curl's message, unless it might quote a URL (with its secrets). */
static const char *safe_curl_msg(const struct xfer *x, CURLcode rc)
{
    const char *m = x->errbuf;
    if (m[0] == '\0' || strpbrk(m, "@?") != NULL || strstr(m, "://") != NULL)
        return curl_easy_strerror(rc);
    return m;
}

/* The outcome of a finished transfer: 0 or -errno, *retry as curl_errno. */
static int xfer_verdict(struct xfer *x, CURLcode rc, int *retry)
{
    *retry = 0;
    if (x->checked && x->verdict != 0) {
        *retry = x->retry;
        return x->verdict == HTTPC_STOP ? 0 : x->verdict;
    }
    /* An error status explains a broken transfer better than curl does. */
    if (x->resp.status >= 400)
        return httpc_status_errno(x->resp.status, retry);
    if (rc != CURLE_OK) {
        int err = curl_errno(rc, retry);
        if (*retry)
            log_debug("%s: %s", x->display, safe_curl_msg(x, rc));
        else
            log_warn("%s: %s", x->display, safe_curl_msg(x, rc));
        return err;
    }
    if (!x->checked) {
        int v = check_headers(x, retry);
        if (v != 0)
            return v == HTTPC_STOP ? 0 : v;
    }
    if (!httpc_body_complete(&x->want, x->got)) {
        log_debug("%s: short body (%zu of %zu bytes)", x->display, x->got,
                  x->want.len);
        *retry = 1;
        return -EIO;
    }
    return 0;
}

/* ------------------------------------------------------------ requests */

#define SETOPT(c, opt, val)                                                    \
    do {                                                                       \
        CURLcode rc_ = curl_easy_setopt((c), (opt), (val));                    \
        if (rc_ != CURLE_OK) {                                                 \
            log_err("curl option " #opt ": %s", curl_easy_strerror(rc_));      \
            return -EIO;                                                       \
        }                                                                      \
    } while (0)

static int set_protocols(CURL *c, int https_only)
{
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85: the _STR options */
    SETOPT(c, CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(c, CURLOPT_REDIR_PROTOCOLS_STR, https_only ? "https" : "http,https");
#else
    SETOPT(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    SETOPT(c, CURLOPT_REDIR_PROTOCOLS,
           https_only ? (long)CURLPROTO_HTTPS
                      : (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    return 0;
}

/* What every request does: redirects, TLS, keep-alive, limits, settings. */
static int set_common(CURL *c, const struct http_origin *h,
                      const struct http_url *u)
{
    SETOPT(c, CURLOPT_URL, u->url);
    SETOPT(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for timeouts */
    if (set_protocols(c, u->https) != 0)
        return -EIO;
    SETOPT(c, CURLOPT_FOLLOWLOCATION, 1L);
    SETOPT(c, CURLOPT_MAXREDIRS, HTTP_MAX_REDIRS);
    SETOPT(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
    SETOPT(c, CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(c, CURLOPT_SSL_VERIFYHOST, 2L);
    SETOPT(c, CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(c, CURLOPT_TCP_KEEPIDLE, 30L);
    SETOPT(c, CURLOPT_TCP_KEEPINTVL, 15L);
    SETOPT(c, CURLOPT_LOW_SPEED_LIMIT, HTTP_LOW_SPEED_LIMIT);
    SETOPT(c, CURLOPT_LOW_SPEED_TIME, HTTP_LOW_SPEED_TIME);
    /* Never decode: a coded body is refused, not silently inflated. */
    SETOPT(c, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    SETOPT(c, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    SETOPT(c, CURLOPT_USERAGENT, "imgcache/" PACKAGE_VERSION);
    /* CAINFO replaces libcurl's default CA bundle file; a default CA
     * directory (Debian: CAPATH /etc/ssl/certs) stays trusted, so there
     * ca_file adds a CA.  Builds without a CA path trust only ca_file. */
    if (h->ca_file != NULL)
        SETOPT(c, CURLOPT_CAINFO, h->ca_file);
    if (h->netrc != NULL) {
        SETOPT(c, CURLOPT_NETRC, (long)CURL_NETRC_OPTIONAL);
        SETOPT(c, CURLOPT_NETRC_FILE, h->netrc);
    }
    return 0;
}

/* Bound this attempt by what is left of the call's deadline; *clamped
 * says whether that cut its connect phase to under a second (a slot got
 * late in a read's life: its timing out says little of the host).
 * others: another URL or proxy route could serve the call.  Then a
 * connect that hangs (a proxy or host dropping SYNs) gets at most half of
 * what is left, so that the next one has its turn before the deadline
 * instead of the reader failing with a live route unused (connect_timeout
 * above origin_timeout / 2).  Only the connect phase: a slow transfer
 * keeps the whole deadline (ic-proxy.h). */
static int set_timeouts(CURL *c, uint64_t connect_ms, uint64_t deadline,
                        int others, int *clamped)
{
    uint64_t now = mono_ms();
    *clamped = 0;
    if (now >= deadline)
        return -ETIMEDOUT;
    uint64_t left = deadline - now;
    uint64_t room = others && left > 1 ? left / 2 : left;
    if (connect_ms == 0 || connect_ms > room) {
        *clamped = connect_ms != 0 && room < 1000;
        connect_ms = room;
    }
    SETOPT(c, CURLOPT_TIMEOUT_MS, (long)left);
    SETOPT(c, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
    return 0;
}

static int slist_add(struct curl_slist **l, const char *s)
{
    struct curl_slist *n = curl_slist_append(*l, s);
    if (n == NULL)
        return -EIO;
    *l = n;
    return 0;
}

/* If-Match or If-Range: see httpc_conditions(). */
static int add_conditions(struct xfer *x, struct curl_slist **hdrs)
{
    char line[ORIGIN_VALIDATOR_MAX + 32];

    httpc_conditions(&x->want, line, sizeof line);
    return line[0] != '\0' ? slist_add(hdrs, line) : 0;
}

#define HTTP_RECV_BUFFER (128L << 10)

static int set_request(CURL *c, struct xfer *x, struct curl_slist **hdrs)
{
    const struct http_expect *w = &x->want;
    char range[64];

    SETOPT(c, CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(c, CURLOPT_HEADERDATA, x);
    SETOPT(c, CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(c, CURLOPT_WRITEDATA, x);
    /* Fewer, larger receives than curl's 16K default: about 15% less
     * daemon CPU on a cold sequential read (fewer recv calls and ACKs). */
    SETOPT(c, CURLOPT_BUFFERSIZE, HTTP_RECV_BUFFER);
    SETOPT(c, CURLOPT_ERRORBUFFER, x->errbuf);
    SETOPT(c, CURLOPT_FILETIME, 1L);
    /* Explicit identity: a compressed body would not be the bytes asked. */
    if (slist_add(hdrs, "Accept-Encoding: identity") != 0)
        return -EIO;
    if (w->kind == HTTPC_HEAD)
        SETOPT(c, CURLOPT_NOBODY, 1L);
    /* What has no validator to check it by must come from the origin
     * (max-age=0 lets a cache on the way, Squid or nginx: README
     * "Fleets", revalidate with a 304 instead of refetching), not from a
     * copy that may predate a change: a stat decides the generation, a
     * directory's name list which templates exist, and a block manifest
     * (WHOLE too) checks every block of the generation it is fetched
     * for, so an older one of the same size would refuse all the new
     * blocks.  A range is taken from the cache (its validator guards
     * it) unless refresh says that copy just failed us. */
    if ((w->kind == HTTPC_HEAD || w->kind == HTTPC_PROBE ||
         w->kind == HTTPC_WHOLE) &&
        slist_add(hdrs, "Cache-Control: max-age=0") != 0)
        return -EIO;
    if (x->refresh && (slist_add(hdrs, "Cache-Control: no-cache") != 0 ||
                       slist_add(hdrs, "Pragma: no-cache") != 0))
        return -EIO;
    if (w->kind == HTTPC_RANGE || w->kind == HTTPC_PROBE) {
        snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, w->off,
                 w->off + w->len - 1);
        SETOPT(c, CURLOPT_RANGE, range);
    }
    if (w->kind == HTTPC_RANGE && add_conditions(x, hdrs) != 0)
        return -EIO;
    if (w->kind == HTTPC_WHOLE)
        SETOPT(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)w->len);
    if (w->kind == HTTPC_WHOLE && x->if_none_match != NULL) {
        char line[HTTPC_ETAG_MAX + 32];
        snprintf(line, sizeof line, "If-None-Match: %s", x->if_none_match);
        if (slist_add(hdrs, line) != 0)
            return -EIO;
    }
    SETOPT(c, CURLOPT_HTTPHEADER, *hdrs);
    return 0;
}

/* Whether a finished attempt never reached its endpoint: no status line,
 * no connection made, no request sent.  A refused or unroutable connect
 * is COULDNT_CONNECT, an unknown name COULDNT_RESOLVE_*, a connect that
 * timed out OPERATION_TIMEDOUT before any connection.  A proxy refusing
 * a CONNECT tunnel is COULDNT_CONNECT too, but after a connection (the
 * proxy answered); a server that accepted and then hung has sent its
 * request (pretransfer time set): neither is unreachable. */
static int unreachable(CURL *c, CURLcode rc, long status)
{
    curl_off_t ct = 0, pt = 0;

    if (status > 0)
        return 0;
    if (rc != CURLE_COULDNT_CONNECT && rc != CURLE_COULDNT_RESOLVE_HOST &&
        rc != CURLE_COULDNT_RESOLVE_PROXY && rc != CURLE_OPERATION_TIMEDOUT)
        return 0;
    if (curl_easy_getinfo(c, CURLINFO_CONNECT_TIME_T, &ct) != CURLE_OK ||
        curl_easy_getinfo(c, CURLINFO_PRETRANSFER_TIME_T, &pt) != CURLE_OK)
        return 0;
    return ct == 0 && pt == 0;
}

/* clamped: see set_timeouts. */
static void note_health(struct health *hl, CURL *c, CURLcode rc, long status,
                        uint64_t start, int clamped)
{
    if (unreachable(c, rc, status)) {
        if (!(clamped && rc == CURLE_OPERATION_TIMEDOUT))
            health_unreachable(hl, start, curl_easy_strerror(rc));
    } else {
        health_answered(hl);
    }
}

/* Whether an attempt through a route failed it: no connection, the
 * connection lost before an answer, a timeout (the call's own deadline
 * or a stalled transfer: no tighter one, ic-proxy.h), or a 5xx, which a
 * proxy sends when it cannot serve (502, 503, 504). */
static int route_failed(CURLcode rc, long status, int clamped)
{
    if (status >= 500)
        return 1;
    if (status > 0)
        return 0;
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return !clamped;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
        return 1;
    default:
        return 0;
    }
}

/* The outcome of an attempt through a proxy list: to its route, and to
 * the URL's health entry, which stands for the whole chain (more than
 * one route) and hears "unreachable" only once every route is backed
 * off: one dead proxy of a group is the policy's business, not a reason
 * to mark the origin down. */
static void note_route(struct http_url *u, CURL *c, CURLcode rc,
                       long status, size_t route, uint64_t picked,
                       uint64_t start, int clamped)
{
    uint64_t now = mono_ms();
    int failed = route_failed(rc, status, clamped);

    proxy_done(u->chain, route, failed, picked, now);
    if (failed && status == 0)
        log_debug("%s: through %s: %s", u->display,
                  proxy_chain_display(u->chain, route),
                  curl_easy_strerror(rc));
    if (proxy_chain_routes(u->chain) == 1 ||
        proxy_chain_all_failed(u->chain, now))
        note_health(u->health, c, rc, status, start, clamped);
    else
        health_answered(u->health);
}

/* One request to one URL.  *retry: whether trying again may help;
 * *retry_after: the server's Retry-After in seconds, or -1. */
static int http_perform(struct origin *o, size_t ui, struct xfer *x,
                        const struct origin_req *rq, uint64_t deadline,
                        int *retry, long *retry_after)
{
    struct http_origin *h = o->priv;
    struct http_url *u = &h->urls[ui];
    struct curl_slist *hdrs = NULL;
    int err;

    *retry = 0;
    *retry_after = -1;
    x->display = u->display;
    httpc_resp_reset(&x->resp);
    x->filetime = -1;
    struct timespec asked, got;
    int trace = log_debug_enabled() && x->want.kind == HTTPC_RANGE;
    if (trace) {
        clock_gettime(CLOCK_MONOTONIC, &asked);
        /* t-sched (f) waits for a pre-warm's request to be queued. */
        log_debug("%s: range bytes=%" PRIu64 "-%" PRIu64 " (class %d): "
                  "asking for a slot", u->display, x->want.off,
                  x->want.off + x->want.len - 1,
                  rq != NULL ? (int)rq->cls : FETCH_DEMAND);
    }
    err = sched_acquire(&u->host->slots, rq, deadline);
    /* When a range waited for its slot, on the clock a server on this
     * host traces with (t-sched: what a demand read waited behind is
     * counted over that wait, not from when its reader started). */
    if (trace) {
        clock_gettime(CLOCK_MONOTONIC, &got);
        log_debug("%s: range bytes=%" PRIu64 "-%" PRIu64 " (class %d): slot "
                  "asked at %lld.%06ld, %s at %lld.%06ld (CLOCK_MONOTONIC)",
                  u->display, x->want.off, x->want.off + x->want.len - 1,
                  rq != NULL ? (int)rq->cls : FETCH_DEMAND,
                  (long long)asked.tv_sec, asked.tv_nsec / 1000,
                  err ? strerror(-err) : "granted", (long long)got.tv_sec,
                  got.tv_nsec / 1000);
    }
    /* A pre-warm or readahead that only waited for a slot asked nothing
     * of the origin: not its failure (-EAGAIN, the caller gives the
     * blocks back). */
    if (err == -ETIMEDOUT && rq != NULL && rq->cls != FETCH_DEMAND)
        return -EAGAIN;
    if (err != 0)
        return err;
    CURL *c = pool_get(h);
    if (c == NULL) {
        sched_release(&u->host->slots, rq);
        *retry = 1;
        return -EIO;
    }
    curl_easy_reset(c); /* keeps the handle's live connections */
    err = set_common(c, h, u);
    int clamped = 0;
    size_t route = 0;
    uint64_t picked = mono_ms();
    if (err == 0 && u->chain != NULL) {
        route = proxy_pick(u->chain, picked);
        if (curl_easy_setopt(c, CURLOPT_PROXY,
                             proxy_chain_url(u->chain, route)) != CURLE_OK)
            err = -EIO;
    }
    if (err == 0)
        err = set_timeouts(c, o->connect_timeout_ms, deadline,
                           h->nurls > 1 || (u->chain != NULL &&
                                            proxy_chain_routes(u->chain) > 1),
                           &clamped);
    if (err == 0)
        err = set_request(c, x, &hdrs);
    if (err == 0) {
        uint64_t start = mono_ms();
        CURLcode rc = curl_easy_perform(c);
        if (u->chain != NULL)
            note_route(u, c, rc, x->resp.status, route, picked, start,
                       clamped);
        else
            note_health(u->health, c, rc, x->resp.status, start, clamped);
        curl_off_t ft = -1;
        if (curl_easy_getinfo(c, CURLINFO_FILETIME_T, &ft) == CURLE_OK)
            x->filetime = ft;
        err = xfer_verdict(x, rc, retry);
        *retry_after = x->resp.retry_after;
        log_debug("%s: %s -> HTTP %ld, %s", u->display,
                  x->want.kind == HTTPC_HEAD ? "HEAD" : "GET",
                  x->resp.status,
                  err ? strerror(-err) : "ok");
    }
    curl_slist_free_all(hdrs);
    pool_put(h, c);
    sched_release(&u->host->slots, rq);
    return err;
}

/* ------------------------------------------------------------ retries */

typedef int (*attempt_fn)(struct origin *o, size_t ui, void *arg,
                          uint64_t deadline, int *retry, long *retry_after);

struct url_state {
    int err;                  /* permanent error of this URL, or 0 */
    uint64_t not_before;      /* Retry-After: no attempt before this */
};

static uint64_t full_jitter(uint64_t max_ms)
{
    static __thread unsigned seed;
    if (seed == 0)
        seed = (unsigned)mono_ms() ^ (unsigned)(uintptr_t)&seed ^ 1u;
    return 1 + (uint64_t)rand_r(&seed) % max_ms;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = ms_timespec(ms);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Record a failed attempt; returns nonzero when the call must end now. */
static int note_failure(struct url_state *st, size_t ui, int err, int retry,
                        long retry_after, uint64_t deadline)
{
    if (err == -ESTALE || err == -ENOENT) {
        st->err = err;
        return ui == 0; /* only the primary's word is final */
    }
    if (!retry) {
        st->err = err;
        return 0;
    }
    if (retry_after >= 0) {
        uint64_t at = mono_ms() + (uint64_t)retry_after * 1000;
        if (at >= deadline)
            st->err = -ETIMEDOUT; /* asked to wait past our deadline */
        else
            st->not_before = at;
    }
    return 0;
}

/* How long to wait before the next round, or UINT64_MAX if no URL is
 * left.  Waits at least for the earliest Retry-After. */
static uint64_t round_wait(const struct url_state *st, size_t n,
                           uint64_t *backoff)
{
    uint64_t now = mono_ms(), earliest = UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        if (st[i].err == 0 && st[i].not_before < earliest)
            earliest = st[i].not_before;
    if (earliest == UINT64_MAX)
        return UINT64_MAX;
    uint64_t wait = full_jitter(*backoff);
    *backoff = *backoff * 2 > HTTP_BACKOFF_MAX_MS ? HTTP_BACKOFF_MAX_MS
                                                  : *backoff * 2;
    if (earliest > now && earliest - now > wait)
        wait = earliest - now;
    return wait;
}

/* URLs whose host went down are out of this call (ic-health.h). */
static void skip_down(const struct http_origin *h, struct url_state *st)
{
    for (size_t i = 0; i < h->nurls; i++)
        if (st[i].err == 0 && health_is_down(h->urls[i].health))
            st[i].err = -EHOSTDOWN;
}

/* Run attempts over the primary and mirrors until one succeeds, none is
 * left, or the deadline comes.  Never sleeps past the deadline. */
static int http_run_from(struct origin *o, const char *what, attempt_fn fn,
                         void *arg, uint64_t deadline, uint32_t avoid,
                         int *used)
{
    struct http_origin *h = o->priv;
    struct url_state st[HTTP_MAX_URLS] = {{0}};
    uint64_t backoff = HTTP_BACKOFF_FIRST_MS;
    unsigned attempts = 0, skips = 0;
    int last = -ETIMEDOUT;

    /* Sources the caller does not trust for this read (their bytes
     * failed its check) are out of the call, unless no other is left. */
    uint32_t all = h->nurls >= 32 ? UINT32_MAX : (1u << h->nurls) - 1;
    if ((avoid & all) != all)
        for (size_t i = 0; i < h->nurls; i++)
            if (avoid & (1u << i))
                st[i].err = -EIO;
    for (;;) {
        for (size_t i = 0; i < h->nurls; i++) {
            skip_down(h, st);
            if (st[i].err != 0 || st[i].not_before > mono_ms())
                continue;
            if (mono_ms() >= deadline)
                goto timeout;
            int retry;
            long ra;
            int err = fn(o, i, arg, deadline, &retry, &ra);
            if (err == 0) {
                if (used != NULL)
                    *used = (int)i;
                return 0;
            }
            if (err == -EAGAIN) /* no slot: this URL was not asked */
                skips++;
            else
                attempts++;
            last = err;
            if (note_failure(&st[i], i, err, retry, ra, deadline))
                return err;
        }
        skip_down(h, st);
        uint64_t wait = round_wait(st, h->nurls, &backoff);
        if (wait == UINT64_MAX)
            return st[0].err; /* every URL failed for good */
        if (mono_ms() + wait >= deadline)
            goto timeout;
        sleep_ms(wait);
    }
timeout:
    /* A pre-warm that only waited for slots (a mirror's turn came after
     * the primary's wait used the deadline up) asked nothing of any
     * origin: a skip, as from one URL, not a failure. */
    if (attempts == 0 && skips > 0)
        return -EAGAIN;
    log_warn("%s: %s: giving up at the deadline after %u attempts (last: %s)",
             o->display, what, attempts, strerror(-last));
    return -ETIMEDOUT;
}

static int http_run(struct origin *o, const char *what, attempt_fn fn,
                    void *arg, uint64_t deadline)
{
    return http_run_from(o, what, fn, arg, deadline, 0, NULL);
}

/* ------------------------------------------------------------ stat */

/* Size and validator of a HEAD or probe response.  (What a validator
 * weaker than a strong ETag cannot see is the engine's to say, once per
 * template: cache.c.) */
static int info_from(struct origin *o, const struct xfer *x,
                     struct origin_info *out)
{
    char why[256];

    (void)o;
    if (httpc_info(&x->resp, x->filetime, out, why, sizeof why) != 0) {
        if (why[0] != '\0')
            log_warn("%s: %s", x->display, why);
        return -EIO;
    }
    return 0;
}

static int stat_attempt(struct origin *o, size_t ui, void *arg,
                        uint64_t deadline, int *retry, long *retry_after)
{
    struct origin_info *out = arg;
    struct xfer x = {.want = {.kind = HTTPC_HEAD}};
    char byte;

    int err = http_perform(o, ui, &x, NULL, deadline, retry, retry_after);
    if (err == 0 && x.resp.have_length && !x.resp.length_bad)
        return info_from(o, &x, out);
    /* No HEAD, or no length in it: ask for one byte instead. */
    if (err != 0 && x.resp.status != 405 && x.resp.status != 501)
        return err;
    struct xfer g = {.want = {.kind = HTTPC_PROBE, .off = 0, .len = 1},
                     .buf = &byte};
    err = http_perform(o, ui, &g, NULL, deadline, retry, retry_after);
    return err != 0 ? err : info_from(o, &g, out);
}

static int http_stat(struct origin *o, struct origin_info *out,
                     uint64_t deadline)
{
    return http_run(o, "stat", stat_attempt, out, deadline);
}

/* ------------------------------------------------------------ read */

struct read_req {
    void *buf;
    uint64_t off;
    size_t len;
    const struct origin_info *expect;
    const struct origin_req *rq;
};

static int read_attempt(struct origin *o, size_t ui, void *arg,
                        uint64_t deadline, int *retry, long *retry_after)
{
    struct read_req *r = arg;
    struct xfer x = {.want = {.kind = HTTPC_RANGE, .off = r->off,
                              .len = r->len, .info = r->expect},
                     .buf = r->buf};
    int err = http_perform(o, ui, &x, r->rq, deadline, retry, retry_after);
    /* "Changed" (412, another validator) or a 206 cut short (nginx's
     * slice module ends a response whose slices carry different ETags)
     * may come from a cache on the way holding an older copy: ask once
     * more for one fresh from the origin, which also replaces that copy.
     * Only the second answer is believed; each is checked as ever, so no
     * answer can mix versions. */
    if (err == -ESTALE || (err == -EIO && *retry && x.resp.status == 206)) {
        log_debug("%s: asking the caches on the way for a fresh copy",
                  x.display);
        struct xfer y = {.want = x.want, .buf = r->buf, .refresh = 1};
        err = http_perform(o, ui, &y, r->rq, deadline, retry, retry_after);
    }
    return err;
}

static int http_read(struct origin *o, void *buf, uint64_t off, size_t len,
                     const struct origin_info *expect,
                     const struct origin_req *rq, uint64_t deadline)
{
    struct read_req r = {.buf = buf, .off = off, .len = len, .expect = expect,
                         .rq = rq};

    /* Only validators that http_stat makes are sent. */
    if (!httpc_validator_usable(expect->validator))
        return -ESTALE;
    if (off > expect->size || len > expect->size - off)
        return -EIO; /* the caller's bug; never ask the server */
    if (len == 0)
        return 0;
    return http_run_from(o, "read", read_attempt, &r, deadline,
                         rq != NULL ? rq->avoid : 0,
                         rq != NULL ? rq->source : NULL);
}

static int http_nsources(struct origin *o)
{
    const struct http_origin *h = o->priv;
    return (int)h->nurls;
}

static const char *http_source_name(struct origin *o, int i)
{
    const struct http_origin *h = o->priv;
    return h->urls[i].display;
}

/* ------------------------------------------------------------ health */

static int dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    if (src == NULL)
        return 0;
    *dst = strdup(src);
    return *dst == NULL ? -ENOMEM : 0;
}

/* What a down entry's probe needs: its own copies, since the entry may
 * outlive the origin that created it. */
struct http_probe {
    char *url;                /* scheme://host:port/: no credentials */
    char *proxy[PROXYSPEC_MAX + 1]; /* the routes, as the origin's (may
                                  hold credentials; "": direct) */
    size_t nproxies;          /* 0: the proxy environment */
    char *ca_file;
    uint64_t connect_ms;
};

static void probe_free(void *arg)
{
    struct http_probe *p = arg;
    if (p == NULL)
        return;
    free(p->url);
    for (size_t i = 0; i < p->nproxies; i++)
        free(p->proxy[i]);
    free(p->ca_file);
    free(p);
}

/* Connect only: name, TCP, TLS and any proxy tunnel, as a real request
 * would, but nothing is asked of the server.  proxy NULL: the
 * environment's. */
static int probe_route(const struct http_probe *p, const char *proxy,
                       uint64_t deadline)
{
    uint64_t now = mono_ms();
    uint64_t left = deadline > now ? deadline - now : 1;
    uint64_t cms = p->connect_ms && p->connect_ms < left ? p->connect_ms
                                                         : left;
    CURL *c = curl_easy_init();
    int reached = 0;

    if (c == NULL)
        return 0;
    if (curl_easy_setopt(c, CURLOPT_URL, p->url) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)left) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)cms) ==
            CURLE_OK &&
        (proxy == NULL ||
         curl_easy_setopt(c, CURLOPT_PROXY, proxy) == CURLE_OK) &&
        (p->ca_file == NULL ||
         curl_easy_setopt(c, CURLOPT_CAINFO, p->ca_file) == CURLE_OK)) {
        CURLcode rc = curl_easy_perform(c);
        reached = !unreachable(c, rc, 0);
        log_debug("%s: probe: %s", p->url, curl_easy_strerror(rc));
    }
    curl_easy_cleanup(c);
    return reached;
}

/* Reached when one route is. */
static int probe_run(void *arg, uint64_t deadline)
{
    struct http_probe *p = arg;

    if (p->nproxies == 0)
        return probe_route(p, NULL, deadline);
    for (size_t i = 0; i < p->nproxies && mono_ms() < deadline; i++)
        if (probe_route(p, p->proxy[i], deadline))
            return 1;
    return 0;
}

/* Whether no_proxy (libcurl's syntax: "*", or names and domains separated
 * by commas, a leading dot optional) exempts host. */
static int no_proxy_match(const char *list, const char *host)
{
    size_t hl = strlen(host);

    while (*list != '\0') {
        list += strspn(list, ", \t");
        size_t n = strcspn(list, ", \t");
        const char *e = list;
        size_t en = n;
        list += n;
        if (en == 1 && *e == '*')
            return 1;
        if (en > 0 && *e == '.') {
            e++;
            en--;
        }
        if (en > 0 && en <= hl && strncasecmp(host + hl - en, e, en) == 0 &&
            (hl == en || host[hl - en - 1] == '.'))
            return 1;
    }
    return 0;
}

/* The proxy libcurl takes from the environment for a URL (lib/url.c's
 * rules, without no_proxy's CIDR ranges: a miss only means the state is
 * kept per host instead of per proxy), or NULL. */
static const char *env_proxy(int https, const char *host)
{
    const char *np = getenv("no_proxy");
    if (np == NULL || *np == '\0')
        np = getenv("NO_PROXY");
    if (np != NULL && no_proxy_match(np, host))
        return NULL;
    const char *p = getenv(https ? "https_proxy" : "http_proxy");
    if ((p == NULL || *p == '\0') && https)
        p = getenv("HTTPS_PROXY");
    if (p == NULL || *p == '\0')
        p = getenv("all_proxy");
    if (p == NULL || *p == '\0')
        p = getenv("ALL_PROXY");
    return p != NULL && *p != '\0' ? p : NULL;
}

/* "proxy scheme://host:port" of a proxy string (no credentials). */
static void proxy_key(const char *proxy, char *key, size_t len)
{
    CURLU *cu = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;

    if (cu != NULL &&
        curl_url_set(cu, CURLUPART_URL, proxy,
                     CURLU_DEFAULT_SCHEME | CURLU_NON_SUPPORT_SCHEME) ==
            CURLUE_OK &&
        curl_url_get(cu, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(cu, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        if (curl_url_get(cu, CURLUPART_PORT, &port, 0) != CURLUE_OK)
            port = NULL; /* libcurl's proxy default, not the scheme's */
        snprintf(key, len, "proxy %s://%s:%s", scheme, host,
                 port ? port
                      : strcasecmp(scheme, "https") == 0 ? "443" : "1080");
    } else {
        char m[HTTP_DISPLAY_MAX];
        url_mask(proxy, m, sizeof m);
        snprintf(key, len, "proxy %s", m);
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(cu);
}

/* The health entry of what a URL's requests connect to.  url_key is its
 * "scheme://host:port". */
static struct health *url_health(const struct http_origin *h,
                                 const struct proxy_chain *chain,
                                 const char *url_key, int https)
{
    const char *hs = strstr(url_key, "://") + 3;
    const char *colon = strrchr(hs, ':');
    char host[512], key[1100];
    const char *proxy = h->proxy;
    size_t nroutes = chain != NULL ? proxy_chain_routes(chain) : 0;

    snprintf(host, sizeof host, "%.*s", (int)(colon - hs), hs);
    if (nroutes == 1)
        proxy = proxy_chain_url(chain, 0);
    else if (proxy == NULL)
        proxy = env_proxy(https, host);
    if (nroutes > 1) {
        /* One entry for the chain (ic-proxy.h); with DIRECT, its
         * reachability is also the origin host's. */
        char m[HTTP_DISPLAY_MAX];
        proxy_chain_describe(chain, m, sizeof m);
        if (strcmp(proxy_chain_url(chain, nroutes - 1), "") == 0)
            snprintf(key, sizeof key, "proxies %.500s for %.500s", m,
                     url_key);
        else
            snprintf(key, sizeof key, "proxies %.1000s", m);
    } else if (proxy != NULL && *proxy != '\0') {
        proxy_key(proxy, key, sizeof key);
    } else {
        snprintf(key, sizeof key, "%s", url_key);
    }

    struct http_probe *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->connect_ms = h->connect_ms;
    if (asprintf(&p->url, "%s/", url_key) < 0) {
        p->url = NULL;
        goto nomem;
    }
    for (size_t i = 0; i < nroutes; i++) {
        if (dup_opt(&p->proxy[i], proxy_chain_url(chain, i)) != 0)
            goto nomem;
        p->nproxies++;
    }
    if (dup_opt(&p->ca_file, h->ca_file) != 0)
        goto nomem;
    return health_get(key, key, probe_run, p, probe_free);
nomem:
    probe_free(p);
    return NULL;
}

static int http_state(struct origin *o, int64_t *since)
{
    struct http_origin *h = o->priv;
    size_t down = 0;

    *since = 0;
    for (size_t i = 0; i < h->nurls; i++) {
        int64_t s = health_down_since(h->urls[i].health);
        if (s == 0)
            continue;
        down++;
        if (*since == 0 || s < *since)
            *since = s;
    }
    return down == 0 ? HEALTH_UP : down == h->nurls ? HEALTH_DOWN
                                                    : HEALTH_DEGRADED;
}

/* ------------------------------------------------------------ life */

static void http_origin_free(struct http_origin *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->nurls; i++) {
        free(h->urls[i].url);
        free(h->urls[i].display);
        host_put(h->urls[i].host);
        health_put(h->urls[i].health);
        proxy_chain_free(h->urls[i].chain);
    }
    for (size_t i = 0; h->idle != NULL && i < h->nidle; i++)
        curl_easy_cleanup(h->idle[i]);
    free(h->idle);
    free(h->proxy);
    free(h->ca_file);
    free(h->netrc);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

static void http_destroy(struct origin *o)
{
    http_origin_free(o->priv);
    free(o->location);
    free(o->display);
    free(o);
}

static const struct origin_ops http_ops = {
    .kind = "http",
    .stat = http_stat,
    .read = http_read,
    .destroy = http_destroy,
    .state = http_state,
    .nsources = http_nsources,
    .source_name = http_source_name,
};

static char *masked(const char *url)
{
    char buf[HTTP_DISPLAY_MAX];
    url_mask(url, buf, sizeof buf);
    return strdup(buf);
}

/* Check a URL and find its host key "scheme://host:port".  0, -EINVAL
 * or -ENOMEM. */
static int url_host_key(const char *url, char *key, size_t keylen, int *https)
{
    CURLU *cu = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    int err = -EINVAL;

    if (cu == NULL)
        return -ENOMEM;
    if (curl_url_set(cu, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(cu, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(cu, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(cu, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) !=
            CURLUE_OK)
        goto out;
    if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)
        goto out;
    *https = strcasecmp(scheme, "https") == 0;
    for (char *p = host; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    snprintf(key, keylen, "%s://%s:%s", *https ? "https" : "http", host, port);
    err = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(cu);
    return err;
}

/* 0, or -EINVAL / -ENOMEM with the reason in err. */
static int add_url(struct http_origin *h, const char *url, unsigned limit,
                   char *err, size_t errlen)
{
    struct http_url *u = &h->urls[h->nurls];
    char key[512];

    u->display = masked(url);
    if (u->display == NULL)
        goto nomem;
    int rc = url_host_key(url, key, sizeof key, &u->https);
    if (rc < 0) {
        snprintf(err, errlen, "%s: not a valid http(s) URL", u->display);
        free(u->display);
        return rc;
    }
    if (h->proxy != NULL) {
        char why[256];
        rc = proxy_chain_new(h->proxy, key, &u->chain, why, sizeof why);
        if (rc < 0) {
            snprintf(err, errlen, "proxy: %s", why);
            free(u->display);
            return rc;
        }
    }
    u->url = strdup(url);
    u->host = host_get(key, limit);
    u->health = url_health(h, u->chain, key, u->https);
    h->nurls++; /* from here http_origin_free owns u */
    if (u->url == NULL || u->host == NULL || u->health == NULL)
        goto nomem;
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
}

static struct http_origin *http_origin_new(const char *url,
                                           const struct conf_net *net,
                                           char *err, size_t errlen)
{
    size_t nmirrors = net != NULL ? net->nmirrors : 0;
    unsigned limit = net != NULL && net->max_connections > 0
                         ? net->max_connections : HTTP_DEFAULT_CONNS;

    if (nmirrors + 1 > HTTP_MAX_URLS) {
        snprintf(err, errlen, "at most %d mirrors", HTTP_MAX_URLS - 1);
        return NULL;
    }
    struct http_origin *h = calloc(1, sizeof *h);
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&h->lock, NULL);
    h->connect_ms = net != NULL ? net->connect_timeout_ms
                                : HTTP_DEFAULT_CONNECT_MS;
    h->idle_max = limit;
    h->idle = calloc(h->idle_max, sizeof *h->idle);
    /* Before the URLs: their health entries depend on the proxy. */
    if (h->idle == NULL ||
        dup_opt(&h->proxy, net ? net->proxy : NULL) != 0 ||
        dup_opt(&h->ca_file, net ? net->ca_file : NULL) != 0 ||
        dup_opt(&h->netrc, net ? net->netrc : NULL) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (add_url(h, url, limit, err, errlen) != 0)
        goto fail;
    for (size_t i = 0; i < nmirrors; i++)
        if (add_url(h, net->mirrors[i], limit, err, errlen) != 0)
            goto fail;
    return h;
fail:
    http_origin_free(h);
    return NULL;
}

struct origin *origin_http_new(const char *url, const struct conf_net *net,
                               char *err, size_t errlen)
{
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK) {
        snprintf(err, errlen, "libcurl initialisation failed: %s",
                 curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    struct origin *o = calloc(1, sizeof *o);
    if (o == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    o->ops = &http_ops;
    o->location = strdup(url);
    o->display = masked(url);
    o->timeout_ms = net != NULL && net->origin_timeout_ms > 0
                        ? net->origin_timeout_ms : HTTP_DEFAULT_TIMEOUT_MS;
    o->connect_timeout_ms = net != NULL ? net->connect_timeout_ms
                                        : HTTP_DEFAULT_CONNECT_MS;
    if (o->location == NULL || o->display == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    o->priv = http_origin_new(url, net, err, errlen);
    if (o->priv == NULL)
        goto fail;
    return o;
fail:
    free(o->location);
    free(o->display);
    free(o);
    return NULL;
}

/* ------------------------------------------------------------ list */

/* dir URL + "/manifest", keeping credentials and query in place. */
static char *manifest_url(const char *dir)
{
    CURLU *cu = curl_url();
    char *path = NULL, *out = NULL, *np = NULL;

    if (cu == NULL)
        return NULL;
    if (curl_url_set(cu, CURLUPART_URL, dir, 0) != CURLUE_OK ||
        curl_url_get(cu, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        goto out;
    size_t n = strlen(path);
    if (asprintf(&np, "%s%smanifest", path,
                 n > 0 && path[n - 1] == '/' ? "" : "/") < 0) {
        np = NULL;
        goto out;
    }
    if (curl_url_set(cu, CURLUPART_PATH, np, 0) != CURLUE_OK ||
        curl_url_get(cu, CURLUPART_URL, &out, 0) != CURLUE_OK)
        out = NULL;
out:
    free(np);
    curl_free(path);
    curl_url_cleanup(cu);
    return out;
}

struct list_req {
    char *body;
    size_t len;
};

static int list_attempt(struct origin *o, size_t ui, void *arg,
                        uint64_t deadline, int *retry, long *retry_after)
{
    struct list_req *r = arg;
    struct xfer x = {.want = {.kind = HTTPC_WHOLE, .len = HTTP_LIST_MAX}};

    int err = http_perform(o, ui, &x, NULL, deadline, retry, retry_after);
    if (err != 0) {
        free(x.buf);
        return err;
    }
    if (x.buf == NULL && whole_reserve(&x, 1) != 0)
        return -EIO;
    x.buf[x.got] = '\0';
    r->body = x.buf;
    r->len = x.got;
    return 0;
}

/* Names that would not be valid file names are skipped, with a warning. */
static int parse_manifest(const char *display, const char *body, size_t len,
                          char ***names)
{
    size_t skipped;
    int n = httpc_manifest_parse(body, len, names, &skipped);

    if (skipped == 1)
        log_warn("%s: skipping an invalid template name", display);
    else if (skipped > 1)
        log_warn("%s: skipping %zu invalid template names", display, skipped);
    return n;
}

/* An origin whose URLs are the manifests of the directory and mirrors. */
static struct origin *manifest_origin(const char *url,
                                      const struct conf_net *net)
{
    struct conf_net mn = {0};
    char *murls[HTTP_MAX_URLS] = {0};
    char *primary = manifest_url(url);
    struct origin *o = NULL;
    char err[256];

    if (net != NULL)
        mn = *net;
    if (primary == NULL || mn.nmirrors + 1 > HTTP_MAX_URLS)
        goto out;
    for (size_t i = 0; i < mn.nmirrors; i++)
        if ((murls[i] = manifest_url(net->mirrors[i])) == NULL)
            goto out;
    mn.mirrors = murls;
    o = origin_http_new(primary, &mn, err, sizeof err);
    if (o == NULL)
        log_err("manifest: %s", err);
out:
    for (size_t i = 0; i < HTTP_MAX_URLS; i++)
        curl_free(murls[i]);
    curl_free(primary);
    return o;
}

int origin_http_list(const char *url, const struct conf_net *net,
                     char ***names)
{
    struct list_req r = {0};
    struct origin *o = manifest_origin(url, net);

    *names = NULL;
    if (o == NULL)
        return -EINVAL;
    int err = http_run(o, "list", list_attempt, &r, mono_ms() + o->timeout_ms);
    if (err == 0)
        err = parse_manifest(o->display, r.body, r.len, names);
    free(r.body);
    http_destroy(o);
    return err;
}

/* ------------------------------------------------------------ fetch */

struct fetch_req {
    int fd;
    uint64_t max;
    size_t got;
    int big;
    struct origin_fetched *meta;
};

static int fetch_attempt(struct origin *o, size_t ui, void *arg,
                         uint64_t deadline, int *retry, long *retry_after)
{
    struct fetch_req *r = arg;
    const char *v = r->meta->validator;
    /* One byte over the limit tells "too large" from "exactly max". */
    struct xfer x = {.want = {.kind = HTTPC_WHOLE, .len = r->max + 1},
                     .sink = 1, .sink_fd = r->fd,
                     .if_none_match = strncmp(v, "etag:", 5) == 0 ? v + 5
                                                                 : NULL};

    if (ftruncate(r->fd, 0) < 0)
        return -errno;
    int err = http_perform(o, ui, &x, NULL, deadline, retry, retry_after);
    if (x.resp.status == 304 && x.if_none_match != NULL) {
        *retry = 0;
        return -EALREADY; /* our copy is still the file */
    }
    if (err == 0 && x.got > r->max) {
        r->big = 1;
        *retry = 0;
        return -EFBIG;
    }
    r->got = x.got;
    if (err == 0) {
        /* A strong ETag only: a weak one does not promise these bytes. */
        int strong = x.resp.etag[0] == '"' && !x.resp.etag_too_long;
        snprintf(r->meta->validator, sizeof r->meta->validator, "%s%s",
                 strong ? "etag:" : "", strong ? x.resp.etag : "");
        r->meta->mtime_ns = x.filetime > 0 ? x.filetime * 1000000000LL : 0;
    }
    return err;
}

int64_t origin_http_fetch(const char *url, const struct conf_net *net,
                          int fd, uint64_t max, uint64_t deadline,
                          struct origin_fetched *meta, char *why,
                          size_t whylen)
{
    struct conf_net one = {0};
    char err[256];
    if (net != NULL)
        one = *net;
    one.mirrors = NULL;
    one.nmirrors = 0;
    struct origin *o = origin_http_new(url, &one, err, sizeof err);
    if (o == NULL) {
        snprintf(why, whylen, "%s", err);
        return -EINVAL;
    }
    struct fetch_req r = {.fd = fd, .max = max, .meta = meta};
    int rc = http_run(o, "fetch", fetch_attempt, &r, deadline);
    if (rc == -EFBIG || r.big)
        snprintf(why, whylen, "larger than %llu bytes",
                 (unsigned long long)max);
    else if (rc < 0 && rc != -EALREADY)
        snprintf(why, whylen, "%s", rc == -ENOENT ? "not found"
                                                  : strerror(-rc));
    http_destroy(o);
    return rc < 0 ? rc : (int64_t)r.got;
}
