/* Control protocol: the wire format of the control socket (ic-ctl.h lists
 * the requests), one implementation for both ends -- the daemon's server
 * (ctl.c) and its clients (imgcache-pin, imgcache-report, imgcache-scrub).
 *
 * Where: cache_dir/CTL_SOCK_NAME, a Unix stream socket (ctlproto_addr).
 *
 * Framing: text lines ending in '\n' (a '\r' before it is dropped), at
 * most CTL_LINE_MAX bytes with the '\n'.  Fields are separated by TAB and
 * are neither quoted nor escaped: a field never holds a TAB or another
 * control character (template names cannot, conf_name_valid; a sender
 * passes free text such as a message through ctlproto_sanitize).  The last
 * field of a split keeps any further TABs, so a verb that takes N fields
 * sees a TAB in its last one as too many fields.  Numbers are unsigned
 * decimal, digits only (ctlproto_uint).
 *
 * Answers: zero or more informational lines, then exactly one final line,
 * "ok[\tFIELD...]" or "error\tMESSAGE" (ctlproto_answer).
 *
 * Errors: 0 (or the documented value) or -errno, as everywhere.  Nothing
 * here is shared between threads: a struct ctl_reader belongs to the one
 * thread that reads its socket; there are no locks. */
#ifndef IC_CTLPROTO_H
#define IC_CTLPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>

#define CTL_SOCK_NAME "ctl.sock"
/* Large enough for a boot profile of ~40000 merged ranges sent inline. */
#define CTL_LINE_MAX (1u << 20)

/* cache_dir/CTL_SOCK_NAME as a socket address.  0, or -ENAMETOOLONG when
 * the path does not fit in sun_path. */
int ctlproto_addr(const char *cache_dir, struct sockaddr_un *sa);
/* A connected client socket (SOCK_CLOEXEC) to cache_dir's daemon: the fd,
 * or -errno (-ENOENT or -ECONNREFUSED: no daemon; -EACCES/-EPERM: not
 * allowed; -ENAMETOOLONG). */
int ctlproto_connect(const char *cache_dir);

/* Send all n bytes (EINTR retried, no SIGPIPE).  0, or -errno: -EPIPE when
 * the peer is gone, -EAGAIN when a send timeout (SO_SNDTIMEO) expired. */
int ctlproto_send(int fd, const char *p, size_t n);
/* Replace control characters other than TAB (bytes < 0x20, 0x7f) by '?',
 * so that text cannot break the framing. */
void ctlproto_sanitize(char *s);

/* Split a line at TABs in place into at most max fields (max >= 1); the
 * last keeps any further TABs.  Returns the field count (>= 1; an empty
 * line is one empty field). */
int ctlproto_split(char *line, char **f, int max);
/* A decimal number in [lo, hi]: digits only (no sign, blank or base
 * prefix).  0, or -EINVAL (not a number, or out of range). */
int ctlproto_uint(const char *s, unsigned lo, unsigned hi, unsigned *out);

enum ctl_answer { CTL_ANSWER_INFO, CTL_ANSWER_OK, CTL_ANSWER_ERROR };
/* What an answer line, split into f[0..nf), is: "ok" final, "error" final,
 * or an informational line (any other first field). */
enum ctl_answer ctlproto_answer(char *const *f, int nf);

/* Reading lines from a socket with a bound on the line and on the wait. */
struct ctl_reader {
    int fd;
    size_t max;   /* longest line taken, '\n' included */
    char *buf;    /* grows up to max */
    size_t cap;
    size_t off;   /* buf[off, len): received, not yet returned */
    size_t len;
};

void ctl_reader_init(struct ctl_reader *r, int fd, size_t max);
/* The next line in *line: NUL-terminated, without its '\n' (and a '\r'
 * before it), valid until the next call.  The whole line must arrive
 * within timeout_ms of the call: a peer trickling a byte now and then
 * cannot hold the reader longer.  1 a line; 0 end of input (an incomplete
 * last line is dropped); -ETIMEDOUT; -EMSGSIZE when the line is longer
 * than max (the stream cannot be resynchronised: end the connection);
 * -ENOMEM; or -errno of poll/recv. */
int ctl_reader_line(struct ctl_reader *r, uint64_t timeout_ms, char **line);
/* Free the buffer (the fd is the caller's). */
void ctl_reader_free(struct ctl_reader *r);

#endif
