/* The fetch scheduler: which waiting origin request gets a host's next
 * transfer slot, and the token bucket that paces pre-warms.
 *
 * One struct sched per admission domain (origin-http.c: one per
 * scheme://host:port, shared by every template and mirror that goes
 * there) holds `cap` slots: at most cap transfers in flight.  A request
 * asks for a slot with sched_acquire() and gives it back with
 * sched_release() once its transfer is over; the slot is held across the
 * transfer, the scheduler's lock is not.
 *
 * Policy, in this order:
 *  - Classes are strict: a slot goes to a waiting FETCH_DEMAND (a reader
 *    is waiting for the bytes) before any FETCH_WARM (pin pre-warm), and
 *    to a FETCH_WARM before any FETCH_READAHEAD.  A freed slot is handed
 *    to its next owner directly, so no later arrival overtakes a waiter,
 *    and a lower class delays a higher one only by the transfers already
 *    in flight when it came.
 *  - Within a class, fair between templates, then between flows of one
 *    template: the slot goes to the waiter whose group (template) was
 *    served least recently, among its waiters to the flow (a handle, a
 *    warm run) served least recently, and within a flow to the oldest.
 *    "Served" is remembered for the last SCHED_STAMPS groups and flows;
 *    one forgotten counts as never served (it had not been served for
 *    longer than any remembered one anyway).  A flow counts as served no
 *    earlier than its waiter arrived: within a template, a waiter is
 *    passed only by waiters queued before it, or by others once its own
 *    flow has been served meanwhile (a flow's other requests).  Flows
 *    come and go and their keys are reused (a handle's address), so a
 *    new, forgotten or reused one must not pass a waiter that has been
 *    queued longer (check_sched: no_overtaking); groups are templates,
 *    few, and a quiet one goes first.
 *  - A pre-warm yields the host to its readers: while a FETCH_DEMAND
 *    transfer is in flight on the host, and for SCHED_DEMAND_QUIET_MS
 *    after the last one ended, no FETCH_WARM transfer starts (an urgent
 *    one does: it is chosen as demand).  A pre-warm's transfers already in
 *    flight finish, and a lower class still delays a reader by at most
 *    those; but a boot's burst of misses no longer shares the origin, the
 *    link and the host's CPUs with a pre-warm's next requests.  Readahead
 *    is not held back (it needs a free slot, below): it is the reader's
 *    own stream running ahead, and holding it while that reader's misses
 *    are in flight would turn a sequential read into demand misses.
 *  - FETCH_READAHEAD never waits: it gets a slot only when one is free
 *    and owed to nobody (freed slots are handed over; a warm held back by
 *    the readers is owed none yet), else -EAGAIN at once, and the caller
 *    drops the prefetch.  So readahead stops as soon as demand reads (or
 *    a warm free to start) wait for the host.
 *  - A waiter whose deadline passes leaves the queue with -ETIMEDOUT.
 *    The origins turn that into -EAGAIN for a pre-warm or readahead
 *    request (it asked nothing of the origin), which the engine treats
 *    as a skip: blocks given back, no failed-fill memory, no fill_errors.
 *  - A waiter whose request is urgent (origin_req.urgent) is chosen as
 *    a FETCH_DEMAND one, for as long as it is: no priority inversion
 *    when a reader waits for a block a pre-warm has claimed.  Urgency is
 *    per request, never per template: only the requests whose own flag
 *    is raised move up (check_sched: urgent_one).
 *
 * Pacing: a struct sched_bucket is a token bucket in bytes per second
 * (QEMU's block-stream speed).  Its owner takes tokens before it asks
 * for a slot, never while holding one (prewarm.c: before each chunk).
 *
 * Locking: sched.lock (one per sched) protects its waiters, counters and
 * stamps; a leaf: nothing is taken under it, and it is never held across
 * a transfer.  sched_acquire waits with it on the waiter's own condition
 * variable, at most until the deadline.  sched_bucket.lock is a leaf too,
 * never held while sleeping. */
#ifndef IC_SCHED_H
#define IC_SCHED_H

#include <pthread.h>
#include <stdint.h>

enum fetch_class {
    FETCH_DEMAND = 0,    /* a reader waits for these bytes */
    FETCH_WARM = 1,      /* pin pre-warm (imgcache-pin) */
    FETCH_READAHEAD = 2, /* sequential readahead: never waits */
};
#define FETCH_CLASSES 3

/* What an origin request is, for the scheduler (origin_read's caller
 * says; NULL there means a demand read of group 0, flow 0). */
struct origin_req {
    enum fetch_class cls;
    uint64_t group; /* fairness between templates: one value per template */
    uint64_t flow;  /* and between flows of one template: per handle, per
                       warm run */
    /* Optional: while *urgent > 0 (read atomically) a waiting request
     * counts as FETCH_DEMAND.  Each flag belongs to one request: the
     * engine gives every pre-warm or readahead run its own (read.c's
     * tickets), and a reader that waits for blocks of that run raises
     * that one, so the fetch a reader depends on is not starved by other
     * demand reads, while the pre-warm's other fetches keep their class
     * (a warm never competes with its template's readers as a whole). */
    const int *urgent;
    /* Optional, for reads whose bytes the caller verifies (a block
     * manifest): the sources (bit i: the origin's source i, see
     * origin_source_name in ic-origin.h) not to ask while another is
     * left, and where the index of the source that answered is stored. */
    uint32_t avoid;
    int *source;
    /* Not the scheduler's: for the cache, a fill of the daemon's own
     * background pre-warm, which takes only free room or blocks of pin
     * classes weaker than its own (ic-evict.h, EVICT_BACKGROUND). */
    int background;
};

#define SCHED_STAMPS 64

struct sched_stamp {
    uint64_t group, flow; /* flow: UINT64_MAX for a group's own stamp */
    uint64_t served;      /* the grant counter when last served */
};

struct sched_waiter;

struct sched_stats {
    unsigned cap, active;            /* slots, slots in use */
    unsigned waiting[FETCH_CLASSES]; /* waiters now */
    uint64_t granted[FETCH_CLASSES]; /* slots handed out */
    uint64_t skipped;                /* FETCH_READAHEAD refused */
    uint64_t timeouts;               /* waiters that hit their deadline */
};

/* How long after the host's last demand transfer a pre-warm may start
 * one: longer than the gap between a reader's back-to-back misses, so
 * that a burst of them keeps the host to itself; short beside a boot's
 * pauses, in which pre-warms go on. */
#define SCHED_DEMAND_QUIET_MS 20

struct sched {
    pthread_mutex_t lock;  /* protects everything below */
    unsigned cap, active;
    unsigned demand_active;   /* slots held by FETCH_DEMAND requests */
    uint64_t demand_quiet_ms; /* mono_ms() from which a warm may start */
    struct sched_waiter *head[FETCH_CLASSES], *tail[FETCH_CLASSES];
    uint64_t grants;       /* the stamps' clock */
    struct sched_stamp stamps[SCHED_STAMPS];
    struct sched_stats st; /* counters (cap, active, waiting derived) */
};

/* cap >= 1. */
void sched_init(struct sched *s, unsigned cap);
/* No waiter may be left (their owners are threads inside acquire). */
void sched_destroy(struct sched *s);
/* Lower the cap (the smallest configured value for a shared host wins);
 * a higher value is ignored.  Slots in flight above it finish. */
void sched_lower_cap(struct sched *s, unsigned cap);

/* Take a slot for rq (NULL: DEMAND, group 0, flow 0), waiting at most
 * until deadline (mono_ms()).  0: the slot is the caller's until
 * sched_release; -ETIMEDOUT at the deadline; -EAGAIN for a READAHEAD
 * that found no free slot (immediately). */
int sched_acquire(struct sched *s, const struct origin_req *rq,
                  uint64_t deadline);
/* Give back the slot sched_acquire gave for rq (the same rq, or NULL). */
void sched_release(struct sched *s, const struct origin_req *rq);
void sched_get_stats(struct sched *s, struct sched_stats *out);

/* ------------------------------------------------------------ pacing */

struct sched_bucket {
    pthread_mutex_t lock; /* protects tokens, last_ms */
    uint64_t rate;        /* bytes per second, fixed; 0 = unlimited */
    uint64_t burst;       /* most tokens kept, fixed */
    int64_t tokens;       /* may go negative: a debt the next take waits
                             out */
    uint64_t last_ms;     /* when tokens were last refilled */
};

/* rate 0: unlimited (sched_bucket_take never waits).  Starts full; the
 * burst is one second's worth (at least 64 KiB). */
void sched_bucket_init(struct sched_bucket *b, uint64_t rate, uint64_t now_ms);
void sched_bucket_destroy(struct sched_bucket *b);
/* The pure step, with the clock given: take `bytes` if the bucket is not
 * in debt at now_ms and return 0, else take nothing and return the ms to
 * wait before asking again.  A take may leave a debt: what is taken
 * beyond the tokens delays the next one, so over any time T no more than
 * rate * T + burst + one take's bytes pass. */
uint64_t sched_bucket_try(struct sched_bucket *b, uint64_t bytes,
                          uint64_t now_ms);
/* Wait (sleeping, no lock held) until `bytes` could be taken, and take
 * them.  Bounded: a debt is at most one take's bytes, waited out at
 * `rate`. */
void sched_bucket_take(struct sched_bucket *b, uint64_t bytes);

/* The lower of two rates, 0 meaning unlimited. */
static inline uint64_t sched_rate_min(uint64_t a, uint64_t b)
{
    return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

#endif
