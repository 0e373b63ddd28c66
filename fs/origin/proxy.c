/* Proxy routes and their fail-over; the contract is in ic-proxy.h. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic-proxy.h"
#include "ic-proxyspec.h"
#include "ic-url.h"

struct route {
    struct route *next;       /* the table: protected by proxy_lock */
    char *key;                /* fixed: the URL; for DIRECT, "DIRECT "
                                 and what it connects to */
    char *url;                /* fixed; "" for DIRECT */
    char display[512];        /* fixed */
    unsigned refs;
    unsigned fails;           /* failures in a row */
    uint64_t until_ms;        /* backed off (or a trial runs) until */
    uint64_t since_ms;        /* when that backoff or trial began */
    uint64_t requests, errors;
    unsigned in_use;          /* chains whose current route this is */
};

struct proxy_chain {
    size_t n;                 /* routes */
    struct route *r[PROXYSPEC_MAX + 1];
    unsigned group[PROXYSPEC_MAX + 1];
    unsigned turn;            /* round robin: protected by proxy_lock */
    size_t current;           /* last success; n: none yet (proxy_lock) */
};

static pthread_mutex_t proxy_lock = PTHREAD_MUTEX_INITIALIZER;
static struct route *routes; /* protected by proxy_lock */

/* Find or create the entry of a proxy url, or with url NULL of DIRECT
 * to direct_key (NULL: unnamed) (proxy_lock held).  NULL: no memory. */
static struct route *route_get(const char *url, const char *direct_key)
{
    struct route *r;
    char *key;
    if (url != NULL)
        key = strdup(url);
    else if (asprintf(&key, "%s %s", PROXY_DIRECT_DISPLAY,
                      direct_key ? direct_key : "") < 0)
        key = NULL;
    if (key == NULL)
        return NULL;
    for (r = routes; r != NULL; r = r->next)
        if (strcmp(r->key, key) == 0) {
            r->refs++;
            free(key);
            return r;
        }
    r = calloc(1, sizeof *r);
    if (r == NULL || (r->url = strdup(url ? url : "")) == NULL) {
        free(r);
        free(key);
        return NULL;
    }
    r->key = key;
    if (url == NULL && direct_key != NULL)
        snprintf(r->display, sizeof r->display, "%s %s",
                 PROXY_DIRECT_DISPLAY, direct_key);
    else if (url == NULL)
        snprintf(r->display, sizeof r->display, "%s", PROXY_DIRECT_DISPLAY);
    else
        url_mask(url, r->display, sizeof r->display);
    r->refs = 1;
    r->next = routes;
    routes = r;
    return r;
}

static void route_put(struct route *r)
{
    if (r == NULL || --r->refs > 0)
        return;
    struct route **pp = &routes;
    while (*pp != r)
        pp = &(*pp)->next;
    *pp = r->next;
    free(r->key);
    free(r->url);
    free(r);
}

int proxy_chain_new(const char *spec, const char *direct_key,
                    struct proxy_chain **out, char *err, size_t errlen)
{
    struct proxyspec ps;
    int rc = proxyspec_parse(spec, &ps, err, errlen);

    *out = NULL;
    if (rc < 0) {
        proxyspec_free(&ps);
        return rc;
    }
    struct proxy_chain *c = calloc(1, sizeof *c);
    if (c == NULL) {
        proxyspec_free(&ps);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_lock(&proxy_lock);
    for (size_t i = 0; i < ps.n && rc == 0; i++) {
        c->group[c->n] = ps.group[i];
        if ((c->r[c->n] = route_get(ps.url[i], NULL)) == NULL)
            rc = -ENOMEM;
        else
            c->n++;
    }
    if (rc == 0 && ps.direct) {
        c->group[c->n] = ps.ngroups;
        if ((c->r[c->n] = route_get(NULL, direct_key)) == NULL)
            rc = -ENOMEM;
        else
            c->n++;
    }
    c->current = c->n;
    pthread_mutex_unlock(&proxy_lock);
    proxyspec_free(&ps);
    if (rc < 0) {
        proxy_chain_free(c);
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    *out = c;
    return 0;
}

void proxy_chain_free(struct proxy_chain *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&proxy_lock);
    if (c->current < c->n)
        c->r[c->current]->in_use--;
    for (size_t i = 0; i < c->n; i++)
        route_put(c->r[i]);
    pthread_mutex_unlock(&proxy_lock);
    free(c);
}

size_t proxy_chain_routes(const struct proxy_chain *c)
{
    return c->n;
}

const char *proxy_chain_url(const struct proxy_chain *c, size_t i)
{
    return c->r[i]->url;
}

const char *proxy_chain_display(const struct proxy_chain *c, size_t i)
{
    return c->r[i]->display;
}

void proxy_chain_describe(const struct proxy_chain *c, char *out,
                          size_t len)
{
    size_t pos = 0;

    if (len == 0)
        return;
    out[0] = '\0';
    for (size_t i = 0; i < c->n && pos < len; i++) {
        const char *sep = i == 0 ? ""
                          : c->group[i] == c->group[i - 1] ? "|" : ";";
        int k = snprintf(out + pos, len - pos, "%s%s", sep,
                         c->r[i]->url[0] == '\0' ? PROXY_DIRECT_DISPLAY
                                                 : c->r[i]->display);
        if (k < 0)
            break;
        pos += (size_t)k;
    }
}

static uint64_t backoff_of(unsigned fails)
{
    uint64_t ms = PROXY_BACKOFF_FIRST_MS;
    for (unsigned k = 1; k < fails && ms < PROXY_BACKOFF_MAX_MS; k++)
        ms *= 2;
    return ms < PROXY_BACKOFF_MAX_MS ? ms : PROXY_BACKOFF_MAX_MS;
}

size_t proxy_pick(struct proxy_chain *c, uint64_t now_ms)
{
    size_t pick = c->n;

    pthread_mutex_lock(&proxy_lock);
    for (size_t first = 0; first < c->n && pick == c->n;) {
        size_t end = first, avail = 0;
        while (end < c->n && c->group[end] == c->group[first])
            end++;
        for (size_t i = first; i < end; i++)
            avail += c->r[i]->until_ms <= now_ms;
        if (avail > 0) {
            size_t k = c->turn++ % avail;
            for (size_t i = first; i < end; i++)
                if (c->r[i]->until_ms <= now_ms && k-- == 0) {
                    pick = i;
                    break;
                }
        }
        first = end;
    }
    if (pick == c->n) { /* all backed off: the one free soonest */
        pick = 0;
        for (size_t i = 1; i < c->n; i++)
            if (c->r[i]->until_ms < c->r[pick]->until_ms)
                pick = i;
    }
    struct route *r = c->r[pick];
    if (r->fails > 0 && r->until_ms <= now_ms) {
        r->until_ms = now_ms + backoff_of(r->fails); /* the trial's lease */
        r->since_ms = now_ms;
    }
    r->requests++;
    pthread_mutex_unlock(&proxy_lock);
    return pick;
}

void proxy_done(struct proxy_chain *c, size_t i, int failed,
                uint64_t start_ms, uint64_t now_ms)
{
    pthread_mutex_lock(&proxy_lock);
    struct route *r = c->r[i];
    if (failed)
        r->errors++;
    if (r->fails > 0 && start_ms < r->since_ms) {
        /* Under way when the route was backed off: a failure is the one
         * already counted (a proxy dying fails every transfer through it
         * at once, which must not double its backoff once per transfer),
         * a success does not end a backoff that began after it started.
         * Only the trial and attempts begun since decide. */
    } else if (failed) {
        r->fails++;
        r->since_ms = now_ms;
        r->until_ms = now_ms + backoff_of(r->fails);
    } else {
        r->fails = 0;
        r->until_ms = 0;
        if (c->current != i) {
            if (c->current < c->n)
                c->r[c->current]->in_use--;
            c->current = i;
            r->in_use++;
        }
    }
    pthread_mutex_unlock(&proxy_lock);
}

int proxy_chain_all_failed(const struct proxy_chain *c, uint64_t now_ms)
{
    int all = 1;
    pthread_mutex_lock(&proxy_lock);
    for (size_t i = 0; i < c->n && all; i++)
        all = c->r[i]->fails > 0 && c->r[i]->until_ms > now_ms;
    pthread_mutex_unlock(&proxy_lock);
    return all;
}

int proxy_list(struct proxy_info **out, uint64_t now_ms)
{
    size_t n = 0, k = 0;

    *out = NULL;
    pthread_mutex_lock(&proxy_lock);
    for (struct route *r = routes; r != NULL; r = r->next)
        n++;
    struct proxy_info *v = calloc(n ? n : 1, sizeof *v);
    if (v == NULL) {
        pthread_mutex_unlock(&proxy_lock);
        return -ENOMEM;
    }
    for (struct route *r = routes; r != NULL; r = r->next, k++) {
        struct proxy_info *p = &v[n - 1 - k]; /* in creation order */
        snprintf(p->display, sizeof p->display, "%s", r->display);
        p->fails = r->fails;
        p->backed_off = r->fails > 0 && r->until_ms > now_ms;
        /* A chain whose last success went this way moves on meanwhile. */
        p->in_use = r->in_use > 0 && !p->backed_off;
        p->retry_in_ms = p->backed_off ? r->until_ms - now_ms : 0;
        p->requests = r->requests;
        p->errors = r->errors;
    }
    pthread_mutex_unlock(&proxy_lock);
    *out = v;
    return (int)n;
}
