/* Control protocol framing, both ends (contract in ic-ctlproto.h). */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ic-ctlproto.h"
#include "ic-util.h"

int ctlproto_addr(const char *cache_dir, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    int n = snprintf(sa->sun_path, sizeof sa->sun_path, "%s/%s", cache_dir,
                     CTL_SOCK_NAME);
    if (n < 0 || (size_t)n >= sizeof sa->sun_path)
        return -ENAMETOOLONG;
    return 0;
}

int ctlproto_connect(const char *cache_dir)
{
    struct sockaddr_un sa;
    int rc = ctlproto_addr(cache_dir, &sa);

    if (rc != 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int ctlproto_send(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void ctlproto_sanitize(char *s)
{
    for (; *s != '\0'; s++)
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
            *s = '?';
}

int ctlproto_split(char *line, char **f, int max)
{
    int n = 0;

    f[n++] = line;
    while (n < max) {
        char *tab = strchr(f[n - 1], '\t');
        if (tab == NULL)
            break;
        *tab = '\0';
        f[n++] = tab + 1;
    }
    return n;
}

int ctlproto_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    char *end;

    /* strtoul alone would take " 1", "+1" and "-1" (as ULONG_MAX). */
    if (*s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

enum ctl_answer ctlproto_answer(char *const *f, int nf)
{
    if (nf >= 1 && strcmp(f[0], "ok") == 0)
        return CTL_ANSWER_OK;
    if (nf >= 1 && strcmp(f[0], "error") == 0)
        return CTL_ANSWER_ERROR;
    return CTL_ANSWER_INFO;
}

/* ------------------------------------------------------------ reader */

void ctl_reader_init(struct ctl_reader *r, int fd, size_t max)
{
    *r = (struct ctl_reader){.fd = fd, .max = max};
}

void ctl_reader_free(struct ctl_reader *r)
{
    free(r->buf);
    r->buf = NULL;
    r->cap = r->off = r->len = 0;
}

/* Room for more input: the returned line is consumed first, then the
 * buffer grows, up to max. */
static int reader_room(struct ctl_reader *r)
{
    if (r->off > 0) {
        memmove(r->buf, r->buf + r->off, r->len - r->off);
        r->len -= r->off;
        r->off = 0;
    }
    if (r->len < r->cap)
        return 0;
    if (r->len >= r->max)
        return -EMSGSIZE;
    size_t ncap = r->cap ? r->cap * 2 : 4096;
    if (ncap > r->max)
        ncap = r->max;
    char *nb = realloc(r->buf, ncap);
    if (nb == NULL)
        return -ENOMEM;
    r->buf = nb;
    r->cap = ncap;
    return 0;
}

/* Receive more bytes before deadline (mono_ms).  1 got some, 0 end of
 * input, or -errno. */
static int reader_recv(struct ctl_reader *r, uint64_t deadline)
{
    for (;;) {
        uint64_t now = mono_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        uint64_t left = deadline - now;
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        int n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            continue; /* the deadline is checked above */
        ssize_t got = recv(r->fd, r->buf + r->len, r->cap - r->len,
                           MSG_DONTWAIT);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got < 0)
            return -errno;
        if (got == 0)
            return 0;
        r->len += (size_t)got;
        return 1;
    }
}

int ctl_reader_line(struct ctl_reader *r, uint64_t timeout_ms, char **line)
{
    uint64_t deadline = mono_ms() + timeout_ms;
    size_t scanned = r->off;

    for (;;) {
        /* buf is NULL before the first recv. */
        char *nl = r->len > scanned
                       ? memchr(r->buf + scanned, '\n', r->len - scanned)
                       : NULL;
        if (nl != NULL) {
            *nl = '\0';
            if (nl > r->buf + r->off && nl[-1] == '\r')
                nl[-1] = '\0';
            *line = r->buf + r->off;
            r->off = (size_t)(nl - r->buf) + 1;
            return 1;
        }
        size_t pending = r->len - r->off;
        int rc = reader_room(r);
        if (rc != 0)
            return rc;
        scanned = pending; /* reader_room moved the pending bytes to 0 */
        rc = reader_recv(r, deadline);
        if (rc <= 0)
            return rc;
    }
}
