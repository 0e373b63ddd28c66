/* Proxies with fail-over: the policy behind the `proxy` option's groups
 * (syntax in ic-proxyspec.h: "a|b;c;DIRECT").
 *
 * An HTTP origin with a proxy list has a chain: its routes in the order
 * written, each a group index, then DIRECT when allowed (a route whose
 * URL is "": no proxy).  Every attempt asks proxy_pick() for its route
 * and reports the outcome with proxy_done():
 *
 *   - the first group with a route not backed off is used; within it,
 *     the routes not backed off take turns (round robin per attempt), so
 *     a group spreads the load over its proxies;
 *   - a failed attempt (no connection, a timeout, a 5xx: the caller
 *     decides) backs its route off for PROXY_BACKOFF_FIRST_MS, doubling
 *     with each failure in a row (of attempts begun since the last one:
 *     transfers failing together count once) up to
 *     PROXY_BACKOFF_MAX_MS; the next
 *     pick therefore goes to the group's other proxies, then to the next
 *     group, then DIRECT;
 *   - when a route's backoff has run out, the next pick that reaches its
 *     group takes it for a trial, and holds it off from the other picks
 *     for one more backoff period while the trial runs: one success
 *     brings it back for everyone (and, being earlier in the order, it
 *     takes the traffic back), a failure doubles its backoff;
 *   - when every route is backed off, the one whose backoff ends first is
 *     used anyway: without DIRECT a request never goes direct, and a
 *     single proxy behaves exactly as it did before lists existed.
 * No deadline here is tighter than the caller's (origin_timeout): a slow
 * proxy that delivers is not failed over (CernVM-FS issue 4445).
 *
 * Route entries are process-wide, keyed by URL (DIRECT: by the host it
 * goes to) and reference counted by the chains that name them, so one
 * template's failures through a proxy steer every template's requests.  "In use" is, per chain, the route of its last
 * successful attempt; an entry is in use while some chain says so and
 * it is not backed off.
 *
 * Locking: proxy_lock (proxy.c) protects the entry table, every entry
 * field but url and display (fixed), and each chain's turn counter and
 * current route.  A leaf: taken by pick, done and list for memory work
 * only; callers hold no lock of theirs across them (origin-http.c calls
 * them with none). */
#ifndef IC_PROXY_H
#define IC_PROXY_H

#include <stddef.h>
#include <stdint.h>

#define PROXY_BACKOFF_FIRST_MS 2000
#define PROXY_BACKOFF_MAX_MS 120000
#define PROXY_DIRECT_DISPLAY "DIRECT"

struct proxy_chain;

/* Build the chain of a `proxy` value for requests to direct_key (the
 * origin URL's scheme://host:port, no credentials; NULL: unnamed): its
 * DIRECT entry is that host's, so one origin host that fails does not
 * back DIRECT off for the others.  0; -EINVAL with the reason in err (the
 * config parser has already said so with file:line); -ENOMEM. */
int proxy_chain_new(const char *spec, const char *direct_key,
                    struct proxy_chain **out, char *err, size_t errlen);
void proxy_chain_free(struct proxy_chain *c);

/* Routes (proxies, then DIRECT when allowed), at least 1. */
size_t proxy_chain_routes(const struct proxy_chain *c);
/* Route i's URL for CURLOPT_PROXY: "" is DIRECT (and disables the proxy
 * environment); may hold credentials. */
const char *proxy_chain_url(const struct proxy_chain *c, size_t i);
/* Route i's display form (credentials masked); for direct "DIRECT" and
 * its direct_key. */
const char *proxy_chain_display(const struct proxy_chain *c, size_t i);

/* The whole chain in the `proxy` syntax, each proxy in its display form
 * (user:password@ shown as ***@), then ";DIRECT" when allowed; truncated
 * to len - 1 bytes. */
void proxy_chain_describe(const struct proxy_chain *c, char *out,
                          size_t len);

/* The route of one attempt starting at now_ms (mono_ms time). */
size_t proxy_pick(struct proxy_chain *c, uint64_t now_ms);
/* The outcome at now_ms of an attempt through route i picked at
 * start_ms.  An attempt begun before the route's current backoff (or
 * trial) began changes nothing but the error count: the transfers in
 * flight when a proxy dies fail together, and count as one failure. */
void proxy_done(struct proxy_chain *c, size_t i, int failed,
                uint64_t start_ms, uint64_t now_ms);
/* Whether every route is backed off at now_ms: what the host health
 * (ic-health.h) then hears about is the whole chain's failure. */
int proxy_chain_all_failed(const struct proxy_chain *c, uint64_t now_ms);

/* A snapshot of every route entry, for the control socket. */
struct proxy_info {
    char display[512];
    int in_use;               /* the current route of some chain */
    int backed_off;           /* avoided now */
    unsigned fails;           /* failures in a row */
    uint64_t requests;        /* attempts through it */
    uint64_t errors;          /* failed attempts through it */
    uint64_t retry_in_ms;     /* backed off: until it is tried again */
};
/* Fills a malloc'd array (*out, to free) and returns its length, or
 * -errno. */
int proxy_list(struct proxy_info **out, uint64_t now_ms);

#endif
