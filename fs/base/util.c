/* Size/duration parsing, monotonic time and full-length I/O. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "ic-util.h"

/* 0 with *shift for "", "K", "KB", "KiB" ... "E" (case-insensitive), else
 * -EINVAL. */
static int suffix_shift(const char *s, unsigned *shift)
{
    static const char units[] = "KMGTPE";
    if (*s == '\0') {
        *shift = 0;
        return 0;
    }
    const char *u = strchr(units, toupper((unsigned char)*s));
    if (u == NULL)
        return -EINVAL;
    *shift = 10 * (unsigned)(u - units + 1);
    s++;
    /* Accept "K", "KB", "KiB" alike: all mean 1024. */
    if (strcasecmp(s, "") == 0 || strcasecmp(s, "b") == 0 ||
        strcasecmp(s, "ib") == 0)
        return 0;
    return -EINVAL;
}

/* The number both parsers start with: decimal digits (a sign or a blank
 * first is refused, which strtoull alone would accept), *end at the unit.
 * 0, -EINVAL or -ERANGE. */
static int leading_number(const char *s, unsigned long long *v, char **end)
{
    if (s == NULL || !isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    *v = strtoull(s, end, 10);
    return errno == ERANGE ? -ERANGE : 0;
}

int parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    unsigned shift;
    int rc = leading_number(s, &v, &end);

    if (rc < 0)
        return rc;
    if (*end == 'b' || *end == 'B') {
        if (end[1] != '\0')
            return -EINVAL;
        shift = 0;
    } else if (suffix_shift(end, &shift) < 0) {
        return -EINVAL;
    }
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)v << shift;
    return 0;
}

int parse_duration_ms(const char *s, uint64_t *out_ms)
{
    char *end;
    unsigned long long v;
    uint64_t mult;
    int rc = leading_number(s, &v, &end);

    if (rc < 0)
        return rc;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else
        return -EINVAL;
    if (v > UINT64_MAX / mult)
        return -ERANGE;
    *out_ms = v * mult;
    return 0;
}

int parse_bool(const char *s)
{
    static const char *yes[] = {"yes", "true", "on", "1"};
    static const char *no[] = {"no", "false", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -EINVAL;
}

uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct timespec ms_timespec(uint64_t ms)
{
    return (struct timespec){.tv_sec = (time_t)(ms / 1000),
                             .tv_nsec = (long)(ms % 1000) * 1000000L};
}

void cond_init_mono(pthread_cond_t *cond)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &ca);
    pthread_condattr_destroy(&ca);
}

ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done,
                          (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

ssize_t pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, (const char *)buf + done, len - done,
                           (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

int buf_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    if (len == 0)
        return 1;
    /* Compare the buffer with itself shifted by one: fast memcmp path. */
    return p[0] == 0 && memcmp(p, p + 1, len - 1) == 0;
}

int ratelimit_allow(struct ratelimit *rl, uint32_t burst, uint64_t window_ms,
                    uint64_t *dropped)
{
    uint64_t w = mono_ms() / (window_ms ? window_ms : 1);
    uint64_t cur = __atomic_load_n(&rl->window, __ATOMIC_RELAXED);
    *dropped = 0;
    /* Only forward: a thread that read the clock before another moved
     * the window on must not move it back (and reset its count). */
    if (w > cur && __atomic_compare_exchange_n(&rl->window, &cur, w, 0,
                                               __ATOMIC_RELAXED,
                                               __ATOMIC_RELAXED))
        __atomic_store_n(&rl->n, 0, __ATOMIC_RELAXED);
    if (__atomic_add_fetch(&rl->n, 1, __ATOMIC_RELAXED) > burst) {
        __atomic_add_fetch(&rl->dropped, 1, __ATOMIC_RELAXED);
        return 0;
    }
    *dropped = __atomic_exchange_n(&rl->dropped, 0, __ATOMIC_RELAXED);
    return 1;
}
