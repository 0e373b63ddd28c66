/* Control socket: how imgcache-pin talks to the running daemon.
 *
 * A Unix stream socket at cache_dir/ctl.sock, mode 0600 (and cache_dir is
 * 0700).  Each connection's peer credentials (SO_PEERCRED) are checked:
 * only uid 0 and the owner of cache_dir are served.  At most CTL_MAX_CONN
 * connections at a time, one detached worker thread each.
 *
 * Protocol: TAB-separated text lines, framed as ic-ctlproto.h says (the
 * one implementation of the wire format, shared with the clients).  A
 * client sends one request line at a time (several in sequence on one
 * connection are fine); the answer is zero or more informational lines,
 * then exactly one final line "ok[\tFIELD...]" or "error\tMESSAGE".
 * Requests:
 *
 *   pin\tT\tSPEC[\tCLASS]
 *                       SPEC: comma list of START-END, START+LENGTH,
 *                       qcow2-metadata, each optionally CLASS: prefixed
 *                       (profile:PATH is refused: the tool reads profiles
 *                       itself, so the daemon never opens a file on a
 *                       client's behalf); CLASS (boot, high, low) is the
 *                       class of items without a prefix, boot when absent
 *                       (what a client from before classes means).  The
 *                       ranges move to that class from any other of the
 *                       tool's pins (the config's are apart, ic-pin.h).
 *                       All classes are applied together or, when the
 *                       boot ranges are refused over the quota, none.
 *                       -> ok\tpinned\tPINNED_BYTES (all classes)
 *   unpin\tT\tSPEC[\tCLASS]
 *                       the ranges out of CLASS of the tool's pins;
 *                       without one, out of every class -> ok\tunpinned\tPINNED_BYTES (what
 *                       remains)
 *   warm\tT\tPARALLEL[\tRATE[\tCLASS]]
 *                       fill every missing pinned block (of CLASS only,
 *                       when given: the figures and the answer are then
 *                       that class's), PARALLEL (1..16)
 *                       fetches at a time, at most RATE bytes a second
 *                       (0 or absent: unlimited; warm_rate, when lower,
 *                       still applies)
 *                       -> progress\tDONE\tTOTAL ... (at most 5 a second,
 *                          and at least every CTL_HEARTBEAT_MS)
 *                       -> ok\twarm\tTOTAL
 *                        | error\tN bytes of pinned blocks could not be
 *                          fetched
 *   list[\tT]           -> pin\tT\tOFF\tLEN\tBYTES\tPRESENT[\tCLASS] ... -> ok
 *                       (boot ranges first, then high, low; a boot row has
 *                       no CLASS field, so clients from before classes
 *                       still read it and skip the others)
 *   record\tT\tSECONDS  note the ranges readers of T read for SECONDS
 *                       (1..3600) -> range\tOFF\tLEN ... -> ok
 *                       (merged and sorted: a boot profile)
 *   record\tT\tSECONDS\ttrace
 *                       every read readers of T were served in SECONDS, in
 *                       arrival order, not merged (ic-pin.h)
 *                       -> trace\tSIZE\tBLOCK_SIZE\tDROPPED
 *                       -> read\tT_US\tOFF\tLEN ... -> ok
 *                       (T_US: microseconds since the first read; DROPPED:
 *                       reads past PIN_TRACE_MAX, not listed)
 *   origins             reachability of the origin hosts (ic-health.h)
 *                       -> host\tHOST\tup|down\tSINCE\tFAILS\tNEXT_PROBE_MS
 *                          ... (HOST: "scheme://host:port" or "proxy
 *                          scheme://host:port"; SINCE: unix seconds, 0
 *                          while up; FAILS: unreachable attempts in a row)
 *                       -> proxy\tPROXY\tok|backoff\tIN_USE\tREQUESTS\tERRORS
 *                          \tFAILS\tRETRY_IN_MS ... (every route of a proxy
 *                          list, ic-proxy.h: PROXY masked, or DIRECT;
 *                          IN_USE 1 when some origin's last success went
 *                          through it; FAILS: failures in a row)
 *                       -> tmpl\tT\tup|degraded|down\tSINCE ...
 *                          (degraded: some of T's URLs are on a down host)
 *                       -> ok
 *
 * Numbers are decimal.  Errors: "error\tno template 'T'", "error\tpermission
 * denied", "error\ttoo many connections", "error\tunknown request 'X'", and
 * the engine's messages (e.g. a pin refused over quota).
 *
 * Limits, so a misbehaving client cannot hang or bloat the daemon: a
 * request line is at most CTL_LINE_MAX bytes, a client has CTL_IO_TIMEOUT_S
 * to send a request line (once connected, and between requests) and to
 * take each answer line.
 *
 * Locking (ctl.c), outermost first; requests call the engine with neither
 * held, and both are leaves:
 *   ctl.lock   the connection slots (fds, nconn) and the references.
 *              Held only for close() of a worker's socket and shutdown()
 *              of every one (neither blocks), and by ctl_stop's wait for
 *              the workers (bounded, CTL_STOP_WAIT_MS); never across a
 *              request or a socket read or write.
 *   warm.lock  one warm request's figures (done, total, failed, rc).
 *              Taken by prewarm_run's progress callback under prewarm.c's
 *              own lock, so it stays a leaf: the worker waits on it at
 *              most PROGRESS_MS at a time and sends each progress line
 *              with it released. */
#ifndef IC_CTL_H
#define IC_CTL_H

#include "ic-ctlproto.h" /* CTL_SOCK_NAME, CTL_LINE_MAX */

#define CTL_MAX_CONN 16
#define CTL_IO_TIMEOUT_S 10
#define CTL_HEARTBEAT_MS 5000
#define CTL_RECORD_MAX_S 3600
#define CTL_PARALLEL_MAX 16

struct cache;
struct ctl;

/* Create cache_dir/ctl.sock (replacing a stale one) and start serving it.
 * 0, or -errno (logged). */
int ctl_start(struct cache *c, const char *cache_dir, struct ctl **out);

/* Stop accepting, unlink the socket, and end the running requests: their
 * sockets are shut down, so a request waiting for input or a recording
 * ends at once.  Waits up to CTL_STOP_WAIT_MS for the workers and returns
 * how many are still running then (0 normally).  Such a worker is inside
 * pin_warm() (which has no cancel path) or a pin reading qcow2 metadata
 * from a slow origin; it keeps the struct ctl alive by its reference, but
 * it still uses the cache's templates: with a non-zero result, do not
 * free the cache (cache_close()) under it, just exit.  NULL is ignored. */
#define CTL_STOP_WAIT_MS 5000
int ctl_stop(struct ctl *ctl);

#endif
