/* HTTP response checks of the HTTP origin (pure: no curl, no I/O, no
 * logging, no global state; safe from any thread on its own data).
 *
 * origin-http.c moves bytes; this module decides whether what a server
 * said is what was asked.  Keeping the decisions here lets unit tests and
 * a fuzzer (test/fuzz/fuzz_http.c) drive them with any response at all.
 *
 * A response is described by struct http_resp, filled line by line from
 * the raw header lines (httpc_resp_line) or field by field; a request by
 * struct http_expect.  The rules, for a Range GET (HTTPC_RANGE):
 *   - 206 only, no content coding, Content-Range exactly "bytes
 *     OFF-(OFF+LEN-1)/SIZE" with SIZE the size we know, a Content-Length
 *     (if any) of exactly LEN, no validator other than the expected one,
 *     and a body of exactly LEN bytes;
 *   - a 200 means the server ignored Range (-EIO) or, when If-Range was
 *     sent and the validator differs, that the content changed (-ESTALE);
 *   - any other status is mapped by httpc_status_errno().
 * Errors are -errno: -ESTALE (content changed), -ENOENT (gone), -EIO
 * (anything else).  Where a function takes `why`, a refusal worth a log
 * line leaves a one-line reason there (without the URL); "" otherwise. */
#ifndef IC_HTTP_CHECK_H
#define IC_HTTP_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "ic-origin.h" /* struct origin_info */

#define HTTPC_ETAG_MAX 200          /* longer ETags are not used */
#define HTTPC_HDR_MAX 128           /* other header values we keep */
#define HTTPC_LINE_MAX 1024         /* longer header lines are cut */
#define HTTPC_MAX_SIZE (1ULL << 50) /* a larger size is a lie */

/* Returned by httpc_check_headers: the headers say all we need (a stat),
 * the body may be dropped. */
#define HTTPC_STOP 1

enum httpc_kind {
    HTTPC_HEAD,  /* stat */
    HTTPC_PROBE, /* stat fallback: GET bytes=0-0 */
    HTTPC_RANGE, /* read: GET bytes=off-(off+len-1) */
    HTTPC_WHOLE, /* list: GET of a body of at most len bytes */
};

/* What a server answered: the headers of interest of the last response
 * (a status line, e.g. after a redirect or a 1xx, starts afresh). */
struct http_resp {
    long status;                 /* 0 before any status line */
    char etag[HTTPC_ETAG_MAX];
    char last_modified[HTTPC_HDR_MAX];
    char content_range[HTTPC_HDR_MAX];
    char content_encoding[HTTPC_HDR_MAX];
    int etag_too_long;           /* the ETag did not fit: unusable */
    int lm_too_long;             /* same for Last-Modified */
    int have_length;             /* a Content-Length was given ... */
    int length_bad;              /* ... but was not a plain number */
    uint64_t length;
    long retry_after;            /* seconds, -1 when absent or a date */
};

/* What was asked. */
struct http_expect {
    enum httpc_kind kind;
    uint64_t off;                /* RANGE: first byte asked */
    size_t len;                  /* RANGE/PROBE: bytes asked; WHOLE: limit */
    const struct origin_info *info; /* RANGE: the content we know */
    char if_range[HTTPC_HDR_MAX]; /* RANGE: the If-Range value sent, or "" */
};

/* ------------------------------------------------------------ parsing */

/* Strict unsigned decimal: digits only, no sign, no blanks, no overflow.
 * 0 with *end after the digits, -EINVAL (no digit) or -ERANGE. */
int httpc_parse_u64(const char *s, const char **end, uint64_t *out);
/* The same, and nothing may follow the digits (-EINVAL). */
int httpc_parse_u64_all(const char *s, uint64_t *out);
/* "bytes FIRST-LAST/TOTAL" (FIRST <= LAST, FIRST <= INT64_MAX), or
 * "bytes *\/TOTAL" reported as *first = -1, *last = 0.  "bytes" is
 * case-insensitive and followed by exactly one space; TOTAL "*" (unknown
 * size) is refused.  0 or -EINVAL. */
int httpc_parse_content_range(const char *s, int64_t *first, uint64_t *last,
                              uint64_t *total);
/* Whether a Content-Encoding value means "not coded" ("" or identity). */
int httpc_is_identity(const char *coding);
/* Weak ETag comparison (RFC 9110 8.8.3.2): W/ prefixes ignored. */
int httpc_etag_weak_equal(const char *a, const char *b);

/* ------------------------------------------------------------ responses */

void httpc_resp_reset(struct http_resp *r);
/* One raw header line as curl hands it over (len bytes, not
 * NUL-terminated, CRLF included): a status line resets r, a header of
 * interest is stored, anything else is ignored. */
void httpc_resp_line(struct http_resp *r, const char *data, size_t len);
/* One header by name (case-insensitive) and value (already trimmed). */
void httpc_resp_header(struct http_resp *r, const char *name,
                       const char *value);

/* ------------------------------------------------------------ verdicts */

/* The one place an HTTP status becomes an errno (success statuses are
 * judged by httpc_check_headers, which knows what was asked); *retry says
 * whether another attempt may succeed. */
int httpc_status_errno(long status, int *retry);
/* Whether the response carries a validator other than the expected one
 * `v` ("etag:..." or "lm:..."; "size:..." never differs). */
int httpc_validator_differs(const struct http_resp *r, const char *v);
/* Judge the headers against the request: 0 (take the body), HTTPC_STOP
 * (success without the body) or -errno, *retry as httpc_status_errno. */
int httpc_check_headers(const struct http_resp *r,
                        const struct http_expect *e, int *retry, char *why,
                        size_t whylen);
/* Whether n more body bytes after got still fit what was asked. */
int httpc_body_fits(const struct http_expect *e, size_t got, size_t n);
/* Whether a body of got bytes is complete (RANGE and PROBE: exactly len;
 * a short body is worth a retry). */
int httpc_body_complete(const struct http_expect *e, size_t got);
/* A whole transfer that ended without a transport error and delivered
 * body_len bytes: httpc_check_headers, then the body length, as
 * origin-http.c applies them.  0 or -errno. */
int httpc_judge(const struct http_resp *r, const struct http_expect *e,
                size_t body_len, int *retry, char *why, size_t whylen);

/* ------------------------------------------------------------ stat */

/* The size and validator of a HEAD (200) or probe (206/416) response:
 * validator "etag:ETAG", else "lm:DATE", else "size:SIZE" (weak: a change
 * that keeps the size goes unnoticed); a value that was cut or holds a CR
 * is passed over, so the result always passes httpc_validator_usable().
 * filetime: seconds since the epoch
 * of the Last-Modified that curl parsed, or <= 0.  0 or -EIO. */
int httpc_info(const struct http_resp *r, int64_t filetime,
               struct origin_info *out, char *why, size_t whylen);
/* Whether a validator is one httpc_info makes (anything else, e.g. another
 * backend's or a damaged index row, cannot prove the content). */
int httpc_validator_usable(const char *v);
/* Whether a validator names one exact content (a strong ETag): only then
 * is every change of the bytes sure to change it. */
int httpc_validator_strong(const char *v);
/* The precondition that ties a range to the content we know, for a
 * HTTPC_RANGE expectation: fills e->if_range and puts the request header
 * line ("If-Match: ..." or "If-Range: ...") in hdr, or "" when there is
 * nothing to send. */
void httpc_conditions(struct http_expect *e, char *hdr, size_t hdrlen);
/* An HTTP-date (RFC 9110 5.6.7) of a time, independent of the locale. */
void httpc_date(int64_t mtime_ns, char *out, size_t outlen);

/* ------------------------------------------------------------ manifest */

/* The manifest of a [directory] URL: one name per line; blank lines and
 * '#' comments skipped, blanks around a name and a CR before the LF
 * dropped.  Names that conf_name_valid() refuses, or holding a NUL, are
 * skipped and counted in *skipped.  Returns the count (names in *names, a
 * malloc'd array of malloc'd strings, NULL when 0) or -ENOMEM. */
int httpc_manifest_parse(const char *body, size_t len, char ***names,
                         size_t *skipped);

#endif
