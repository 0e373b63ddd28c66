/* Origin host health: whether an origin endpoint can be reached at all.
 *
 * One entry per endpoint key (what a connection is actually made to: an
 * origin's "scheme://host:port", or its proxy's), shared by every origin
 * and mirror URL that goes there and reference counted by them.
 *
 * The backend reports each attempt's outcome: health_answered() when the
 * endpoint accepted a connection or answered at all (any HTTP status, a
 * slow or stalled body, a TLS error: the host is there), and
 * health_unreachable() only when it could not be reached (connection
 * refused, no route, name not resolved, connect timeout).  An entry goes
 * down when its unbroken run of unreachable attempts reaches
 * HEALTH_DOWN_FAILS or has lasted HEALTH_DOWN_MS (from the start of the
 * run's first attempt, so one connect timeout is enough): one refused
 * connect may be a restart in progress; three in a row, which one call's
 * retries make within a few hundred ms, are not.
 *
 * While an entry is down the backend skips its URLs without trying them
 * (a call whose every URL is down fails at once with -EHOSTDOWN), and one
 * probe thread, shared by all entries, calls each down entry's probe with
 * exponential backoff (HEALTH_PROBE_FIRST_MS doubling to HEALTH_PROBE_MAX_MS,
 * each wait drawn between half and all of the interval).  A probe that
 * reaches the endpoint, or any real attempt that does (one started before
 * the entry went down), marks it up again.
 * One log line when an entry goes down, one when it comes back; only the
 * display form (no credentials) is logged.
 *
 * Locking: health_lock (in health.c) protects the entry list and every
 * field of every entry but its key, display, probe and arg (fixed);
 * `down` and `fails` are also read without it (written with atomic stores
 * under it) on the fast path.  A leaf: callers hold no lock of theirs
 * (origin-http.c reports after a transfer, with none), and under it run
 * only memory, log lines, the start of the probe thread and, when
 * health_get runs out of memory, arg_free (which must only free).  Probes
 * and an entry's last arg_free run with no lock held, the probe holding a
 * reference on its entry.  The probe thread waits on health_wake until a
 * probe is due; health_stop() waits at most a probe's timeout. */
#ifndef IC_HEALTH_H
#define IC_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#define HEALTH_DOWN_FAILS 3
#define HEALTH_DOWN_MS 1000
#define HEALTH_PROBE_FIRST_MS 1000
#define HEALTH_PROBE_MAX_MS 30000

struct health;

/* Try to reach the endpoint once, within deadline (mono_ms time).  1 when
 * it answered, 0 when it could not be reached. */
typedef int (*health_probe_fn)(void *arg, uint64_t deadline);

/* Find or create the entry for key (no credentials in key or display).
 * probe/arg/arg_free: how to probe a new entry; arg is owned by the entry
 * from here on (freed at once, by arg_free, when the entry already exists,
 * or on failure).  NULL on out of memory. */
struct health *health_get(const char *key, const char *display,
                          health_probe_fn probe, void *arg,
                          void (*arg_free)(void *));
void health_put(struct health *h);

/* Lock-free: whether the entry is down now. */
int health_is_down(const struct health *h);

/* Outcome of one attempt; start_ms: mono_ms() when the attempt began;
 * why: a short reason for the log ("Couldn't connect to server"). */
void health_answered(struct health *h);
void health_unreachable(struct health *h, uint64_t start_ms, const char *why);
/* At exit: stop the probe thread (waiting at most for its probe in flight)
 * and start no other; hosts stay as they are. */
void health_stop(void);

/* Wall-clock time (s since the epoch) the entry went down, 0 while up. */
int64_t health_down_since(const struct health *h);

/* A snapshot of every entry, for the control socket. */
struct health_info {
    char key[512];
    int down;
    int64_t since;            /* wall clock, 0 when up */
    unsigned fails;           /* unreachable attempts in the current run */
    uint64_t next_probe_in_ms; /* down: until the next probe */
};
/* Fills a malloc'd array (*out, to free) and returns its length, or -errno. */
int health_list(struct health_info **out);

/* Per-origin state, as the xattr and the report say it. */
enum health_state { HEALTH_UP, HEALTH_DEGRADED, HEALTH_DOWN };
/* "up", "degraded since 2026-05-01T10:00:00Z" (a mirror's or the
 * primary's host is down, another is up), "down since ..." */
void health_format(enum health_state s, int64_t since, char *buf,
                   size_t len);
const char *health_state_name(enum health_state s);

#endif
