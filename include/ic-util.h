/* Small pure helpers: size and duration parsing, time, full-length I/O. */
#ifndef IC_UTIL_H
#define IC_UTIL_H

#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "ic-error.h" /* 0 or -errno: the convention of every module */

/* "64K", "2G", "1048576", "4T": binary multiples (K = 1024).
 * 0, -EINVAL (syntax) or -ERANGE (overflow). */
int parse_size(const char *s, uint64_t *out);
/* "30s", "500ms", "5m", "1h", plain number = seconds.
 * 0, -EINVAL or -ERANGE. */
int parse_duration_ms(const char *s, uint64_t *out_ms);
/* "yes/no/true/false/on/off/1/0" -> 1/0; -EINVAL if none of those. */
int parse_bool(const char *s);

/* Monotonic clock in milliseconds (for deadlines). */
uint64_t mono_ms(void);
/* Milliseconds as a timespec: a mono_ms() deadline for
 * pthread_cond_timedwait on a CLOCK_MONOTONIC condition, or a duration. */
struct timespec ms_timespec(uint64_t ms);
/* Initialise a condition variable whose timed waits take ms_timespec()
 * deadlines (CLOCK_MONOTONIC: a wall-clock step cannot stretch a wait). */
void cond_init_mono(pthread_cond_t *cond);

/* pread/pwrite that loop over short transfers and EINTR.
 * Return bytes transferred (short only at EOF for pread) or -errno. */
ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off);
ssize_t pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/* Whether all len bytes are zero. */
int buf_is_zero(const void *buf, size_t len);

/* A log line that can repeat per block (a mirror serving a wrong image
 * fails every block it sends) is said at most `burst` times per window of
 * `window_ms`.  Zero-initialised; any thread (atomics, no lock).  Whether
 * to log now; *dropped: the lines held back since the last window that
 * logged, to say once (0 mostly).  Counts are approximate at the edges of
 * a window, which only moves a line from one window to the next. */
struct ratelimit {
    uint64_t window;  /* mono_ms() / window_ms of the current window */
    uint32_t n;       /* lines asked for in it */
    uint64_t dropped; /* held back and not said yet */
};
int ratelimit_allow(struct ratelimit *rl, uint32_t burst, uint64_t window_ms,
                    uint64_t *dropped);

#endif
