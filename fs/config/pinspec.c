/* Pin specs, boot profiles and byte-range sets; see ic-pinspec.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ic-pinspec.h"
#include "ic-util.h"

/* Long enough for any reason below plus a quoted size token. */
#define WHY_LEN 160
/* Longest item text quoted back in an error message. */
#define QUOTE_MAX 200

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
           c == '\f';
}

/* Narrow [*p, *p + *n) to its non-blank middle. */
static void trim(const char **p, size_t *n)
{
    while (*n > 0 && is_blank(**p)) {
        (*p)++;
        (*n)--;
    }
    while (*n > 0 && is_blank((*p)[*n - 1]))
        (*n)--;
}

static int quote_len(size_t n) { return n > QUOTE_MAX ? QUOTE_MAX : (int)n; }

/* One size token of n bytes (not NUL-terminated).  parse_size() wants a C
 * string; a token longer than any valid size is refused rather than cut. */
static int size_token(const char *p, size_t n, uint64_t *v, char *why)
{
    char tok[32];

    if (n == 0 || n >= sizeof tok || memchr(p, '\0', n) != NULL)
        goto bad;
    memcpy(tok, p, n);
    tok[n] = '\0';
    int rc = parse_size(tok, v);
    if (rc == 0)
        return 0;
    if (rc == -ERANGE) {
        snprintf(why, WHY_LEN, "size '%.*s' is too large", quote_len(n), p);
        return -EINVAL;
    }
bad:
    snprintf(why, WHY_LEN, "bad size '%.*s'", quote_len(n), p);
    return -EINVAL;
}

/* Build [x, x+y) for op '+' or ' ' (offset and length) or [x, y) for '-'. */
static int make_range(char op, uint64_t x, uint64_t y, struct byte_range *r,
                      char *why)
{
    if (op == '-') {
        if (y <= x) {
            snprintf(why, WHY_LEN, "end must be greater than start");
            return -EINVAL;
        }
        y -= x;
    } else if (y == 0) {
        snprintf(why, WHY_LEN, "length must not be zero");
        return -EINVAL;
    }
    uint64_t end;
    if (__builtin_add_overflow(x, y, &end)) {
        snprintf(why, WHY_LEN, "range ends past 2^64");
        return -EINVAL;
    }
    r->off = x;
    r->len = y;
    return 0;
}

/* "A-B", "A+L" and, when pair_ok (profiles), "A L".  The text is already
 * trimmed and not empty.  0, or -EINVAL with a reason in why. */
static int parse_range(const char *p, size_t n, int pair_ok,
                       struct byte_range *r, char *why)
{
    size_t i = 0;

    while (i < n && p[i] != '-' && p[i] != '+')
        i++;
    if (i == n && pair_ok) {
        i = 0;
        while (i < n && !is_blank(p[i]))
            i++;
    }
    if (i == n) {
        snprintf(why, WHY_LEN, pair_ok ? "expected 'OFFSET LENGTH' or "
                                         "'START-END'"
                                       : "expected START-END or "
                                         "START+LENGTH");
        return -EINVAL;
    }
    const char *a = p, *b = p + i + 1;
    size_t an = i, bn = n - i - 1;
    uint64_t x, y;

    trim(&a, &an);
    trim(&b, &bn);
    if (size_token(a, an, &x, why) != 0 || size_token(b, bn, &y, why) != 0)
        return -EINVAL;
    return make_range(is_blank(p[i]) ? ' ' : p[i], x, y, r, why);
}

/* ------------------------------------------------------------ pin specs */

static int has_prefix(const char *p, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && memcmp(p, prefix, k) == 0;
}

static int item_error(const char *p, size_t n, const char *why, char *err,
                      size_t errlen)
{
    snprintf(err, errlen, "bad pin item '%.*s': %s", quote_len(n), p, why);
    return -EINVAL;
}

static int parse_profile_item(const char *p, size_t n, struct pin_item *it,
                              char *err, size_t errlen)
{
    const char *path = p + strlen("profile:");
    size_t pn = n - strlen("profile:");

    trim(&path, &pn);
    if (pn == 0)
        return item_error(p, n, "empty path", err, errlen);
    it->path = strndup(path, pn);
    if (it->path == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    it->kind = PIN_PROFILE;
    return 0;
}

static const char *const class_names[PIN_NCLASS] = {
    [PIN_NONE] = "none", [PIN_LOW] = "low", [PIN_HIGH] = "high",
    [PIN_BOOT] = "boot"};

const char *pin_class_name(int cls)
{
    return cls > PIN_NONE && cls < PIN_NCLASS ? class_names[cls] : "none";
}

int pin_class_parse(const char *s, size_t n)
{
    for (int c = PIN_LOW; c < PIN_NCLASS; c++)
        if (n == strlen(class_names[c]) && memcmp(s, class_names[c], n) == 0)
            return c;
    return -EINVAL;
}

/* A leading "CLASS:" (a word of letters then a colon, and not "profile",
 * whose colon is its own): its class in it->cls, *p and *n past it.
 * -EINVAL for a word that is no class. */
static int parse_class_prefix(const char **p, size_t *n, struct pin_item *it,
                              char *err, size_t errlen)
{
    size_t k = 0;
    while (k < *n && (*p)[k] >= 'a' && (*p)[k] <= 'z')
        k++;
    if (k == 0 || k == *n || (*p)[k] != ':' ||
        (k == strlen("profile") && has_prefix(*p, k, "profile")))
        return 0;
    int c = pin_class_parse(*p, k);
    if (c < 0)
        return item_error(*p, *n,
                          "unknown pin class (expected boot, high or low)",
                          err, errlen);
    it->cls = c;
    *p += k + 1;
    *n -= k + 1;
    trim(p, n);
    return 0;
}

/* One comma-free item of n bytes at p. */
static int parse_item(const char *p, size_t n, struct pin_item *it, char *err,
                      size_t errlen)
{
    char why[WHY_LEN];
    struct byte_range r;

    trim(&p, &n);
    memset(it, 0, sizeof *it);
    if (n == 0)
        return item_error(p, n, "empty item", err, errlen);
    if (parse_class_prefix(&p, &n, it, err, errlen) != 0)
        return -EINVAL;
    if (n == 0)
        return item_error(p, n, "empty item after its class", err, errlen);
    if (n == strlen("qcow2-metadata") && has_prefix(p, n, "qcow2-metadata")) {
        it->kind = PIN_QCOW2;
        return 0;
    }
    if (has_prefix(p, n, "profile:"))
        return parse_profile_item(p, n, it, err, errlen);
    /* Every range starts with a digit; anything else is a word we do not
     * know, and saying so beats complaining about a "bad size". */
    if (*p < '0' || *p > '9')
        return item_error(p, n,
                          "unknown item (expected [CLASS:] and START-END, "
                          "START+LENGTH, profile:PATH or qcow2-metadata)",
                          err, errlen);
    if (parse_range(p, n, 0, &r, why) != 0)
        return item_error(p, n, why, err, errlen);
    it->kind = PIN_RANGE;
    it->off = r.off;
    it->len = r.len;
    return 0;
}

static int all_blank(const char *s)
{
    while (*s != '\0' && is_blank(*s))
        s++;
    return *s == '\0';
}

int pinspec_parse(const char *spec, struct pin_item **items, size_t *n,
                  char *err, size_t errlen)
{
    *items = NULL;
    *n = 0;
    if (spec == NULL || all_blank(spec))
        return 0;

    /* One item per comma plus one: the exact count, known up front. */
    size_t cap = 1;
    for (const char *c = spec; (c = strchr(c, ',')) != NULL; c++)
        cap++;
    struct pin_item *v = calloc(cap, sizeof *v);
    if (v == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }

    size_t k = 0;
    for (const char *p = spec;; k++) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        int rc = parse_item(p, len, &v[k], err, errlen);
        if (rc != 0) {
            pinspec_free(v, k);
            return rc;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    *items = v;
    *n = k + 1;
    return 0;
}

void pinspec_free(struct pin_item *items, size_t n)
{
    if (items == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(items[i].path);
    free(items);
}

/* ------------------------------------------------------------ profiles */

/* A growing array of ranges. */
struct rvec {
    struct byte_range *v;
    size_t n, cap;
};

static int rvec_push(struct rvec *rv, struct byte_range r)
{
    if (rv->n == rv->cap) {
        size_t cap = rv->cap ? rv->cap * 2 : 64;
        struct byte_range *v = reallocarray(rv->v, cap, sizeof *v);
        if (v == NULL)
            return -ENOMEM;
        rv->v = v;
        rv->cap = cap;
    }
    rv->v[rv->n++] = r;
    return 0;
}

/* 1 and *r for a range line, 0 for a blank or comment line, -EINVAL with
 * a reason in why. */
static int parse_profile_line(const char *p, size_t n, struct byte_range *r,
                              char *why)
{
    const char *hash = memchr(p, '#', n);

    if (hash != NULL)
        n = (size_t)(hash - p);
    trim(&p, &n); /* also drops the '\r' of a CRLF line end */
    if (n == 0)
        return 0;
    int rc = parse_range(p, n, 1, r, why);
    return rc < 0 ? rc : 1;
}

int profile_parse(const char *text, size_t len, const char *path,
                  struct byte_range **out, size_t *n, char *err,
                  size_t errlen)
{
    struct rvec rv = {0};
    const char *p = text, *end = text + len;
    size_t line = 0;
    char why[WHY_LEN];
    int rc = 0;

    *out = NULL;
    *n = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        struct byte_range r;

        if (++line > PROFILE_MAX_LINES) {
            snprintf(err, errlen, "%s:%zu: more than %d lines", path, line,
                     PROFILE_MAX_LINES);
            rc = -EINVAL;
            break;
        }
        int got = parse_profile_line(p, (size_t)(le - p), &r, why);
        if (got < 0) {
            snprintf(err, errlen, "%s:%zu: %s", path, line, why);
            rc = -EINVAL;
            break;
        }
        if (got > 0 && rvec_push(&rv, r) != 0) {
            snprintf(err, errlen, "%s:%zu: out of memory", path, line);
            rc = -ENOMEM;
            break;
        }
        p = nl ? nl + 1 : end;
    }
    if (rc != 0) {
        free(rv.v);
        return rc;
    }
    *out = rv.v;
    *n = rv.n;
    return 0;
}

/* Whole file into a malloc'd buffer.  Reads until EOF instead of trusting
 * st_size, so a FIFO or a file growing meanwhile still ends at the cap. */
static int slurp(int fd, const char *path, char **buf, size_t *len,
                 char *err, size_t errlen)
{
    size_t cap = 0, got = 0;
    char *b = NULL;

    for (;;) {
        if (got == cap) {
            size_t ncap = cap ? cap * 2 : 65536;
            if (ncap > (size_t)PROFILE_MAX_BYTES + 1)
                ncap = (size_t)PROFILE_MAX_BYTES + 1;
            if (ncap == cap) {
                free(b);
                snprintf(err, errlen, "%s: larger than %u MiB", path,
                         PROFILE_MAX_BYTES >> 20);
                return -EFBIG;
            }
            char *nb = realloc(b, ncap);
            if (nb == NULL) {
                free(b);
                snprintf(err, errlen, "%s: out of memory", path);
                return -ENOMEM;
            }
            b = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, b + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(b);
            snprintf(err, errlen, "%s: %s", path, strerror(e));
            return -e;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    *buf = b;
    *len = got;
    return 0;
}

int profile_load(const char *path, struct byte_range **out, size_t *n,
                 char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;

    *out = NULL;
    *n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    int rc = slurp(fd, path, &text, &len, err, errlen);
    close(fd);
    if (rc != 0)
        return rc;
    rc = profile_parse(text, len, path, out, n, err, errlen);
    free(text);
    return rc;
}

/* stdio reports failures through errno, but not always: fall back to EIO. */
static int stdio_error(void) { return ic_neg_errno(EIO); }

int profile_write(FILE *f, const struct byte_range *r, size_t n)
{
    errno = 0;
    if (fputs("# imgcache boot profile\n", f) == EOF)
        return stdio_error();
    for (size_t i = 0; i < n; i++) {
        if (fprintf(f, "%" PRIu64 " %" PRIu64 "\n", r[i].off, r[i].len) < 0)
            return stdio_error();
    }
    return ferror(f) ? stdio_error() : 0;
}

/* ------------------------------------------------------------ range sets */

static int range_cmp(const void *a, const void *b)
{
    const struct byte_range *x = a, *y = b;

    if (x->off != y->off)
        return x->off < y->off ? -1 : 1;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return 0;
}

static uint64_t range_end(const struct byte_range *r)
{
    uint64_t end;
    return __builtin_add_overflow(r->off, r->len, &end) ? UINT64_MAX : end;
}

void ranges_normalize(struct byte_range *r, size_t *n)
{
    size_t w = 0;
    uint64_t cur_end = 0;

    if (*n == 0)
        return;
    qsort(r, *n, sizeof *r, range_cmp);
    for (size_t i = 0; i < *n; i++) {
        if (r[i].len == 0)
            continue;
        uint64_t end = range_end(&r[i]);
        if (w > 0 && r[i].off <= cur_end) {
            if (end > cur_end) /* overlapping or adjacent: extend */
                cur_end = end;
            r[w - 1].len = cur_end - r[w - 1].off;
            continue;
        }
        r[w].off = r[i].off;
        r[w].len = end - r[i].off;
        cur_end = end;
        w++;
    }
    *n = w;
}

uint64_t ranges_block_count(const struct byte_range *r, size_t n, uint32_t bs,
                            uint64_t file_size)
{
    uint64_t count = 0, next = 0; /* next: first block not yet counted */

    if (bs == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].len == 0 || r[i].off >= file_size)
            continue;
        uint64_t end = range_end(&r[i]);
        if (end > file_size)
            end = file_size;
        uint64_t first = r[i].off / bs, last = (end - 1) / bs;
        if (first < next)
            first = next;
        if (first > last)
            continue;
        count += last - first + 1;
        next = last + 1;
    }
    return count;
}
