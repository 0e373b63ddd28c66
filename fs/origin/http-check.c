/* HTTP response checks; the contract is in ic-http-check.h.
 *
 * Everything here is a pure function of its arguments, so that the
 * decisions that keep a lying server from handing us wrong bytes can be
 * unit-tested and fuzzed without a server.  Reasons for a refusal go to
 * the caller's `why` buffer; origin-http.c logs them with the URL. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ic-conf.h"
#include "ic-error.h"
#include "ic-http-check.h"

/* Leave a reason in `why` (may be NULL); returns err for tail calls. */
static int __attribute__((format(printf, 4, 5)))
refuse(int err, char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    if (why == NULL || whylen == 0)
        return err;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return err;
}

/* ------------------------------------------------------------ parsing */

int httpc_parse_u64(const char *s, const char **end, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            return -ERANGE;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (p == s)
        return -EINVAL;
    *end = p;
    *out = v;
    return 0;
}

int httpc_parse_u64_all(const char *s, uint64_t *out)
{
    const char *end;
    int rc = httpc_parse_u64(s, &end, out);

    if (rc < 0)
        return rc;
    return *end == '\0' ? 0 : -EINVAL;
}

int httpc_parse_content_range(const char *s, int64_t *first, uint64_t *last,
                              uint64_t *total)
{
    const char *p;
    uint64_t a;
    if (strncasecmp(s, "bytes ", 6) != 0)
        return -EINVAL;
    s += 6;
    if (s[0] == '*' && s[1] == '/') {
        *first = -1;
        *last = 0;
        return httpc_parse_u64_all(s + 2, total) < 0 ? -EINVAL : 0;
    }
    /* first must fit the signed type that also carries "unsatisfied". */
    if (httpc_parse_u64(s, &p, &a) != 0 || *p != '-' || a > INT64_MAX)
        return -EINVAL;
    if (httpc_parse_u64(p + 1, &p, last) != 0 || *p != '/' || *last < a)
        return -EINVAL;
    *first = (int64_t)a;
    return httpc_parse_u64_all(p + 1, total) < 0 ? -EINVAL : 0;
}

int httpc_is_identity(const char *coding)
{
    return coding[0] == '\0' || strcasecmp(coding, "identity") == 0;
}

int httpc_etag_weak_equal(const char *a, const char *b)
{
    if (strncmp(a, "W/", 2) == 0)
        a += 2;
    if (strncmp(b, "W/", 2) == 0)
        b += 2;
    return strcmp(a, b) == 0;
}

/* ------------------------------------------------------------ responses */

void httpc_resp_reset(struct http_resp *r)
{
    r->status = 0;
    r->etag[0] = r->last_modified[0] = '\0';
    r->content_range[0] = r->content_encoding[0] = '\0';
    r->etag_too_long = r->lm_too_long = 0;
    r->have_length = r->length_bad = 0;
    r->length = 0;
    r->retry_after = -1;
}

/* Copy a header value; report values that do not fit, since a cut
 * validator must not be compared as if it were whole. */
static void keep_value(char *dst, size_t dstlen, const char *v, int *too_long)
{
    size_t n = strlen(v);
    if (n >= dstlen) {
        if (too_long != NULL)
            *too_long = 1;
        n = dstlen - 1;
    }
    memcpy(dst, v, n);
    dst[n] = '\0';
}

void httpc_resp_header(struct http_resp *r, const char *name,
                       const char *value)
{
    uint64_t n;
    if (strcasecmp(name, "etag") == 0) {
        keep_value(r->etag, sizeof r->etag, value, &r->etag_too_long);
    } else if (strcasecmp(name, "last-modified") == 0) {
        keep_value(r->last_modified, sizeof r->last_modified, value,
                   &r->lm_too_long);
    } else if (strcasecmp(name, "content-range") == 0) {
        keep_value(r->content_range, sizeof r->content_range, value, NULL);
    } else if (strcasecmp(name, "content-encoding") == 0) {
        keep_value(r->content_encoding, sizeof r->content_encoding, value,
                   NULL);
    } else if (strcasecmp(name, "content-length") == 0) {
        r->have_length = 1;
        r->length_bad = httpc_parse_u64_all(value, &r->length) != 0;
    } else if (strcasecmp(name, "retry-after") == 0) {
        /* Only delta-seconds; a date falls back to our own backoff. */
        r->retry_after =
            httpc_parse_u64_all(value, &n) == 0 && n < 86400 ? (long)n : -1;
    }
}

void httpc_resp_line(struct http_resp *r, const char *data, size_t len)
{
    char line[HTTPC_LINE_MAX];
    size_t n = len < sizeof line ? len : sizeof line - 1;

    memcpy(line, data, n);
    line[n] = '\0';
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n' ||
                     line[n - 1] == ' ' || line[n - 1] == '\t'))
        line[--n] = '\0';
    /* Each status line (redirect, 1xx, final) starts a new response. */
    if (strncmp(line, "HTTP/", 5) == 0) {
        const char *sp = strchr(line, ' ');
        httpc_resp_reset(r);
        r->status = sp != NULL ? strtol(sp + 1, NULL, 10) : 0;
        return;
    }
    char *colon = strchr(line, ':');
    if (colon == NULL)
        return;
    *colon = '\0';
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    httpc_resp_header(r, line, v);
}

/* ------------------------------------------------------------ verdicts */

int httpc_status_errno(long status, int *retry)
{
    *retry = 0;
    switch (status) {
    case 404:
    case 410:
        return -ENOENT;
    case 412: /* If-Match failed */
    case 416: /* our range, inside the known size, no longer exists */
        return -ESTALE;
    case 408:
    case 429:
        *retry = 1;
        return -EIO;
    case 501: /* not implemented, HTTP version: not transient */
    case 505:
        return -EIO;
    default:
        *retry = status >= 500 && status <= 599;
        return -EIO;
    }
}

int httpc_validator_differs(const struct http_resp *r, const char *v)
{
    if (strncmp(v, "etag:", 5) == 0) {
        if (r->etag_too_long)
            return 1;
        if (r->etag[0] == '\0')
            return 0;
        /* A strong ETag promises these very bytes: compare it strongly. */
        if (strncmp(v + 5, "W/", 2) != 0)
            return strcmp(v + 5, r->etag) != 0;
        return !httpc_etag_weak_equal(v + 5, r->etag);
    }
    if (strncmp(v, "lm:", 3) == 0)
        return r->last_modified[0] != '\0' &&
               strcmp(v + 3, r->last_modified) != 0;
    return 0;
}

static int check_206(const struct http_resp *r, const struct http_expect *e,
                     char *why, size_t whylen)
{
    int64_t first;
    uint64_t last, total;
    uint64_t want_last = e->off + e->len - 1;

    if (!httpc_is_identity(r->content_encoding))
        return refuse(-EIO, why, whylen,
                      "server sent a Content-Encoding for a Range request");
    if (httpc_validator_differs(r, e->info->validator))
        return -ESTALE;
    if (httpc_parse_content_range(r->content_range, &first, &last,
                                  &total) != 0 || first < 0)
        return refuse(-EIO, why, whylen, "206 without a valid Content-Range");
    if (total != e->info->size)
        return -ESTALE; /* the size changed: so did the content */
    if ((uint64_t)first != e->off || last != want_last)
        return refuse(-EIO, why, whylen,
                      "asked bytes %" PRIu64 "-%" PRIu64 ", got %" PRId64
                      "-%" PRIu64, e->off, want_last, first, last);
    if (r->have_length && (r->length_bad || r->length != e->len))
        return refuse(-EIO, why, whylen,
                      "Content-Length disagrees with Content-Range");
    return 0;
}

/* A 200 to a Range request.  With If-Range it means "changed" unless the
 * server simply ignores Range (same validator in the response): telling
 * the two apart avoids a new generation at every read from such a server. */
static int check_range_ignored(const struct http_resp *r,
                               const struct http_expect *e, char *why,
                               size_t whylen)
{
    const char *v = e->info->validator;
    int same = 0;

    if (e->if_range[0] != '\0') {
        if (strncmp(v, "etag:", 5) == 0)
            same = r->etag[0] != '\0' && !r->etag_too_long &&
                   httpc_etag_weak_equal(v + 5, r->etag);
        else
            same = strcmp(e->if_range, r->last_modified) == 0;
        if (!same)
            return -ESTALE;
    }
    return refuse(-EIO, why, whylen, "server ignores Range requests");
}

static int check_range(const struct http_resp *r, const struct http_expect *e,
                       int *retry, char *why, size_t whylen)
{
    if (r->status == 206)
        return check_206(r, e, why, whylen);
    if (r->status == 200)
        return check_range_ignored(r, e, why, whylen);
    return httpc_status_errno(r->status, retry);
}

static int check_head(const struct http_resp *r, int *retry, char *why,
                      size_t whylen)
{
    if (r->status != 200)
        return httpc_status_errno(r->status, retry);
    if (!httpc_is_identity(r->content_encoding))
        return refuse(-EIO, why, whylen,
                      "server declares a Content-Encoding");
    return 0;
}

static int check_probe(const struct http_resp *r, int *retry, char *why,
                       size_t whylen)
{
    int64_t first;
    uint64_t last, total;

    /* A 200 has the size in Content-Length: no need for its body. */
    if (r->status == 200 && httpc_is_identity(r->content_encoding))
        return r->have_length && !r->length_bad ? HTTPC_STOP : -EIO;
    if (r->status == 416) /* empty file: "bytes *\/0" */
        return httpc_parse_content_range(r->content_range, &first, &last,
                                         &total) == 0 && first < 0
                   ? HTTPC_STOP : -EIO;
    if (r->status != 206)
        return httpc_status_errno(r->status, retry);
    if (!httpc_is_identity(r->content_encoding) ||
        httpc_parse_content_range(r->content_range, &first, &last,
                                  &total) != 0 ||
        first != 0 || last != 0)
        return refuse(-EIO, why, whylen,
                      "bad answer to a 1-byte Range request");
    return 0;
}

static int check_whole(const struct http_resp *r, const struct http_expect *e,
                       int *retry, char *why, size_t whylen)
{
    if (r->status != 200)
        return httpc_status_errno(r->status, retry);
    if (!httpc_is_identity(r->content_encoding))
        return refuse(-EIO, why, whylen, "server sent a Content-Encoding");
    if (r->have_length && (r->length_bad || r->length > e->len))
        return refuse(-EIO, why, whylen, "larger than %zu bytes", e->len);
    return 0;
}

int httpc_check_headers(const struct http_resp *r,
                        const struct http_expect *e, int *retry, char *why,
                        size_t whylen)
{
    *retry = 0;
    if (why != NULL && whylen > 0)
        why[0] = '\0';
    switch (e->kind) {
    case HTTPC_HEAD:
        return check_head(r, retry, why, whylen);
    case HTTPC_PROBE:
        return check_probe(r, retry, why, whylen);
    case HTTPC_WHOLE:
        return check_whole(r, e, retry, why, whylen);
    case HTTPC_RANGE:
        break;
    }
    return check_range(r, e, retry, why, whylen);
}

int httpc_body_fits(const struct http_expect *e, size_t got, size_t n)
{
    return got <= e->len && n <= e->len - got;
}

int httpc_body_complete(const struct http_expect *e, size_t got)
{
    if (e->kind == HTTPC_RANGE || e->kind == HTTPC_PROBE)
        return got == e->len;
    return 1;
}

/* The order is origin-http.c's: the headers are judged at the first body
 * byte, or after the transfer when there was no body, in which case an
 * error status speaks for itself. */
int httpc_judge(const struct http_resp *r, const struct http_expect *e,
                size_t body_len, int *retry, char *why, size_t whylen)
{
    int v;

    if (why != NULL && whylen > 0)
        why[0] = '\0';
    if (body_len == 0 && r->status >= 400)
        return httpc_status_errno(r->status, retry);
    v = httpc_check_headers(r, e, retry, why, whylen);
    if (v != 0)
        return v == HTTPC_STOP ? 0 : v;
    if (!httpc_body_fits(e, 0, body_len))
        return refuse(-EIO, why, whylen,
                      "more bytes than asked for, transfer stopped");
    if (!httpc_body_complete(e, body_len)) {
        *retry = 1; /* a cut connection: another attempt may do better */
        return refuse(-EIO, why, whylen, "short body (%zu of %zu bytes)",
                      body_len, e->len);
    }
    return 0;
}

/* ------------------------------------------------------------ stat */

/* A header value fit to become a validator: whole, and without a CR
 * (a bare CR can survive curl's line split), which
 * httpc_validator_usable() would refuse at every read: -ESTALE forever. */
static int value_usable(const char *v, int too_long)
{
    return v[0] != '\0' && !too_long && strpbrk(v, "\r\n") == NULL;
}

/* Pick the strongest validator the response offers. */
static void pick_validator(const struct http_resp *r, uint64_t size,
                           struct origin_info *out)
{
    if (value_usable(r->etag, r->etag_too_long))
        snprintf(out->validator, sizeof out->validator, "etag:%s", r->etag);
    else if (value_usable(r->last_modified, r->lm_too_long))
        snprintf(out->validator, sizeof out->validator, "lm:%s",
                 r->last_modified);
    else
        snprintf(out->validator, sizeof out->validator, "size:%" PRIu64,
                 size);
}

int httpc_info(const struct http_resp *r, int64_t filetime,
               struct origin_info *out, char *why, size_t whylen)
{
    int64_t first;
    uint64_t last, size = r->length;

    if (why != NULL && whylen > 0)
        why[0] = '\0';
    /* A probe's answer: the total of its Content-Range is the size. */
    if (r->status == 206 || r->status == 416) {
        if (httpc_parse_content_range(r->content_range, &first, &last,
                                      &size) != 0)
            return -EIO;
    }
    if (size > HTTPC_MAX_SIZE)
        return refuse(-EIO, why, whylen, "absurd size %" PRIu64 " refused",
                      size);
    memset(out, 0, sizeof *out);
    out->size = size;
    /* Bounded so that the multiplication cannot overflow. */
    out->mtime_ns = filetime > 0 && filetime < INT64_MAX / 1000000000
                        ? filetime * 1000000000 : 0;
    pick_validator(r, size, out);
    return 0;
}

int httpc_validator_usable(const char *v)
{
    /* A CR or LF would let a damaged validator inject request headers. */
    if (strpbrk(v, "\r\n") != NULL)
        return 0;
    return strncmp(v, "etag:", 5) == 0 || strncmp(v, "lm:", 3) == 0 ||
           strncmp(v, "size:", 5) == 0;
}

int httpc_validator_strong(const char *v)
{
    return strncmp(v, "etag:", 5) == 0 && strncmp(v + 5, "W/", 2) != 0 &&
           v[5] != '\0';
}

void httpc_date(int64_t mtime_ns, char *out, size_t outlen)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                    "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr",
                                       "May", "Jun", "Jul", "Aug",
                                       "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(mtime_ns / 1000000000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL) {
        snprintf(out, outlen, "Thu, 01 Jan 1970 00:00:00 GMT");
        return;
    }
    snprintf(out, outlen, "%s, %02d %s %04d %02d:%02d:%02d GMT",
             days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* If-Match for a strong ETag; If-Range with the date otherwise (If-Range
 * may not carry a weak ETag).  The response's validator is checked too. */
void httpc_conditions(struct http_expect *e, char *hdr, size_t hdrlen)
{
    const char *v = e->info->validator;

    e->if_range[0] = '\0';
    hdr[0] = '\0';
    if (strncmp(v, "etag:", 5) == 0 && strncmp(v + 5, "W/", 2) != 0) {
        snprintf(hdr, hdrlen, "If-Match: %s", v + 5);
        return;
    }
    if (strncmp(v, "etag:", 5) == 0) {
        if (e->info->mtime_ns <= 0)
            return; /* weak ETag, no date: the response ETag decides */
        httpc_date(e->info->mtime_ns, e->if_range, sizeof e->if_range);
    } else if (strncmp(v, "lm:", 3) == 0) {
        keep_value(e->if_range, sizeof e->if_range, v + 3, NULL);
    } else {
        return; /* "size:": nothing but the total to check */
    }
    snprintf(hdr, hdrlen, "If-Range: %s", e->if_range);
}

/* ------------------------------------------------------------ manifest */

static int names_add(char ***names, size_t *n, const char *s, size_t len)
{
    char **v = realloc(*names, (*n + 1) * sizeof *v);
    if (v == NULL)
        return -ENOMEM;
    *names = v;
    v[*n] = strndup(s, len);
    if (v[*n] == NULL)
        return -ENOMEM;
    (*n)++;
    return 0;
}

static void names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Trim [*s, *e) of blanks, and of the CR of a CRLF line end. */
static void trim_line(const char **s, const char **e)
{
    while (*s < *e && (**s == ' ' || **s == '\t'))
        (*s)++;
    while (*e > *s && ((*e)[-1] == '\r' || (*e)[-1] == ' ' ||
                       (*e)[-1] == '\t'))
        (*e)--;
}

int httpc_manifest_parse(const char *body, size_t len, char ***names,
                         size_t *skipped)
{
    size_t n = 0;
    const char *p = body, *end = body + len;

    *names = NULL;
    *skipped = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl != NULL ? nl : end;
        const char *s = p;
        p = nl != NULL ? nl + 1 : end;
        trim_line(&s, &e);
        if (s == e || *s == '#')
            continue;
        if (names_add(names, &n, s, (size_t)(e - s)) != 0)
            goto nomem;
        /* A NUL inside the line shortens the copy: refuse, don't truncate;
         * the names become file names, hence conf_name_valid(). */
        if (strlen((*names)[n - 1]) != (size_t)(e - s) ||
            !conf_name_valid((*names)[n - 1])) {
            free((*names)[--n]);
            (*skipped)++;
        }
    }
    if (n == 0) {
        free(*names);
        *names = NULL;
    }
    return (int)n;
nomem:
    names_free(*names, n);
    *names = NULL;
    return -ENOMEM;
}
