/* libFuzzer harness: the HTTP response checks (ic-http-check.h).
 *
 * Input layout (struct fdp, missing bytes read as 0):
 *   byte 0      bit 7 set: the rest is a manifest (httpc_manifest_parse);
 *               else bits 0-1 the request kind, bits 2-3 the validator we
 *               know, bit 4 whether we know a modification time
 *   byte 1      body length: 0 exact, 1 one short, 2 one more, 3 raw
 *   bytes 2-4   raw body length
 *   bytes 5-12  a time: for httpc_date (ns), as curl's filetime (s)
 *   the rest    raw header lines, split after each '\n'
 * The request is fixed per kind (a 64 KiB block of a 16 MiB + 12345 byte
 * template, a 1-byte probe, a HEAD, a 1 MiB manifest), so the invariant
 * can be stated exactly: httpc_judge() succeeds if and only if an
 * independent oracle below, written from the rules in ic-http-check.h,
 * says the response is acceptable.  Content-Range parsing is compared
 * with its own oracle on every input, and a stat result must be usable
 * as an expectation without letting a header line break. */
#include "config.h"

#include <errno.h>
#include <strings.h>

#include "fuzz.h"
#include "ic-conf.h"
#include "ic-http-check.h"

#define T_SIZE (16ull * 1048576 + 12345)
#define T_OFF 65536ull
#define T_LEN 65536u
#define T_LIST_MAX (1u << 20)
#define T_ETAG "\"5f3c-1000c39\""
#define T_LM "Tue, 14 Nov 2023 22:13:20 GMT"
#define T_MTIME_NS (1700000000ll * 1000000000ll)

static const char *const validators[4] = {
    "etag:" T_ETAG, "etag:W/" T_ETAG, "lm:" T_LM, "size:16789561",
};

/* ------------------------------------------------------------ oracles */

/* One or more digits, no overflow. */
static int o_number(const char **s, uint64_t *v)
{
    const char *p = *s;
    *v = 0;
    while (*p >= '0' && *p <= '9') {
        if (__builtin_mul_overflow(*v, 10, v) ||
            __builtin_add_overflow(*v, (uint64_t)(*p - '0'), v))
            return -1;
        p++;
    }
    if (p == *s)
        return -1;
    *s = p;
    return 0;
}

static int o_content_range(const char *s, int64_t *first, uint64_t *last,
                           uint64_t *total)
{
    uint64_t a;
    if (strncasecmp(s, "bytes ", 6) != 0)
        return -1;
    s += 6;
    if (s[0] == '*' && s[1] == '/') {
        s += 2;
        *first = -1;
        *last = 0;
        return o_number(&s, total) == 0 && *s == '\0' ? 0 : -1;
    }
    if (o_number(&s, &a) != 0 || *s++ != '-' || o_number(&s, last) != 0 ||
        *s++ != '/' || o_number(&s, total) != 0 || *s != '\0')
        return -1;
    if (a > (uint64_t)INT64_MAX || *last < a)
        return -1;
    *first = (int64_t)a;
    return 0;
}

static int o_identity(const struct http_resp *r)
{
    return r->content_encoding[0] == '\0' ||
           strcasecmp(r->content_encoding, "identity") == 0;
}

static const char *strip_weak(const char *t)
{
    return strncmp(t, "W/", 2) == 0 ? t + 2 : t;
}

/* The response names the content we know, or no content at all. */
static int o_same_content(const struct http_resp *r, unsigned vv)
{
    switch (vv) {
    case 0: /* strong ETag: compared strongly */
        return !r->etag_too_long &&
               (r->etag[0] == '\0' || strcmp(r->etag, T_ETAG) == 0);
    case 1: /* weak ETag: W/ ignored on both sides */
        return !r->etag_too_long &&
               (r->etag[0] == '\0' || strcmp(strip_weak(r->etag), T_ETAG) == 0);
    case 2:
        return r->last_modified[0] == '\0' ||
               strcmp(r->last_modified, T_LM) == 0;
    default:
        return 1;
    }
}

static int o_range_ok(const struct http_resp *r, unsigned vv, size_t body)
{
    int64_t first;
    uint64_t last, total;

    return r->status == 206 && o_identity(r) && o_same_content(r, vv) &&
           o_content_range(r->content_range, &first, &last, &total) == 0 &&
           first == (int64_t)T_OFF && last == T_OFF + T_LEN - 1 &&
           total == T_SIZE &&
           (!r->have_length || (!r->length_bad && r->length == T_LEN)) &&
           body == T_LEN;
}

static int o_probe_ok(const struct http_resp *r, size_t body)
{
    int64_t first;
    uint64_t last, total;
    int cr = o_content_range(r->content_range, &first, &last, &total) == 0;

    if (r->status == 200 && o_identity(r))
        return r->have_length && !r->length_bad; /* the body is dropped */
    if (r->status == 416) /* an empty file; a 416 without a body is not */
        return body > 0 && cr && first < 0;
    return r->status == 206 && o_identity(r) && cr && first == 0 &&
           last == 0 && body == 1;
}

static int o_ok(const struct http_resp *r, enum httpc_kind kind, unsigned vv,
                size_t body)
{
    switch (kind) {
    case HTTPC_HEAD:
        return r->status == 200 && o_identity(r) && body == 0;
    case HTTPC_PROBE:
        return o_probe_ok(r, body);
    case HTTPC_WHOLE:
        return r->status == 200 && o_identity(r) &&
               (!r->have_length ||
                (!r->length_bad && r->length <= T_LIST_MAX)) &&
               body <= T_LIST_MAX;
    case HTTPC_RANGE:
        break;
    }
    return o_range_ok(r, vv, body);
}

/* ------------------------------------------------------------ checks */

static void check_content_range(const struct http_resp *r)
{
    int64_t f1 = 7, f2 = 7;
    uint64_t l1 = 7, l2 = 7, t1 = 7, t2 = 7;
    int a = httpc_parse_content_range(r->content_range, &f1, &l1, &t1);
    int b = o_content_range(r->content_range, &f2, &l2, &t2);

    FUZZ_CHECK(a == 0 || a == -EINVAL);
    FUZZ_CHECK((a == 0) == (b == 0));
    if (a == 0)
        FUZZ_CHECK(f1 == f2 && l1 == l2 && t1 == t2);
}

/* A stat's result becomes the expectation of later reads: it must be
 * usable, and the condition header built from it a single line. */
static void check_info(const struct http_resp *r, int64_t filetime)
{
    struct origin_info info;
    char why[256], hdr[ORIGIN_VALIDATOR_MAX + 32];

    if (httpc_info(r, filetime, &info, why, sizeof why) != 0) {
        FUZZ_CHECK(fuzz_terminated(why, sizeof why));
        return;
    }
    FUZZ_CHECK(info.size <= HTTPC_MAX_SIZE);
    FUZZ_CHECK(fuzz_terminated(info.validator, sizeof info.validator));
    FUZZ_CHECK(httpc_validator_usable(info.validator));
    struct http_expect e = {.kind = HTTPC_RANGE, .off = 0, .len = 1,
                            .info = &info};
    httpc_conditions(&e, hdr, sizeof hdr);
    FUZZ_CHECK(strpbrk(hdr, "\r\n") == NULL);
    FUZZ_CHECK(fuzz_terminated(e.if_range, sizeof e.if_range));
}

static void check_date(int64_t t)
{
    char out[64];
    httpc_date(t, out, sizeof out);
    size_t n = strlen(out);
    FUZZ_CHECK(n >= 4 && strcmp(out + n - 4, " GMT") == 0);
}

static void fuzz_manifest(const uint8_t *p, size_t len)
{
    char **names = (char **)&names; /* must be replaced */
    size_t skipped = 99, lines = 1;
    int n = httpc_manifest_parse((const char *)p, len, &names, &skipped);

    FUZZ_CHECK(n >= 0); /* -ENOMEM aside, which a fuzzer does not cause */
    FUZZ_CHECK((n == 0) == (names == NULL));
    for (size_t i = 0; i < len; i++)
        lines += p[i] == '\n';
    FUZZ_CHECK((size_t)n + skipped <= lines);
    for (int i = 0; i < n; i++) {
        FUZZ_CHECK(conf_name_valid(names[i]));
        free(names[i]);
    }
    free(names);
}

/* ------------------------------------------------------------ driver */

static size_t body_length(struct fdp *f, size_t want)
{
    uint8_t sel = fdp_u8(f);
    size_t raw = (size_t)fdp_uint(f, 3);

    switch (sel % 4) {
    case 0:
        return want;
    case 1:
        return want > 0 ? want - 1 : 0;
    case 2:
        return want + 1;
    default:
        return raw;
    }
}

static void feed_headers(struct http_resp *r, const uint8_t *p, size_t n)
{
    httpc_resp_reset(r);
    while (n > 0) {
        const uint8_t *nl = memchr(p, '\n', n);
        size_t len = nl != NULL ? (size_t)(nl - p) + 1 : n;
        httpc_resp_line(r, (const char *)p, len);
        p += len;
        n -= len;
    }
}

static void expectation(struct http_expect *e, struct origin_info *info,
                        enum httpc_kind kind, unsigned vv, int with_time)
{
    static const size_t lens[4] = {
        [HTTPC_HEAD] = 0, [HTTPC_PROBE] = 1, [HTTPC_RANGE] = T_LEN,
        [HTTPC_WHOLE] = T_LIST_MAX};
    char hdr[ORIGIN_VALIDATOR_MAX + 32];

    memset(info, 0, sizeof *info);
    info->size = T_SIZE;
    info->mtime_ns = with_time ? T_MTIME_NS : 0;
    snprintf(info->validator, sizeof info->validator, "%s", validators[vv]);
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->off = kind == HTTPC_RANGE ? T_OFF : 0;
    e->len = lens[kind];
    e->info = info;
    if (kind == HTTPC_RANGE)
        httpc_conditions(e, hdr, sizeof hdr); /* fills e->if_range */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fdp f = {data, size};
    uint8_t b0 = fdp_u8(&f);

    if (b0 & 0x80) {
        fuzz_manifest(f.p, f.n);
        return 0;
    }
    enum httpc_kind kind = (enum httpc_kind)(b0 & 3);
    unsigned vv = (b0 >> 2) & 3;
    struct origin_info info;
    struct http_expect e;
    struct http_resp r;
    char why[256];
    int retry = 7;

    expectation(&e, &info, kind, vv, (b0 >> 4) & 1);
    size_t body = body_length(&f, e.len);
    int64_t t = (int64_t)fdp_uint(&f, 8); /* a date, and curl's filetime */
    check_date(t);
    feed_headers(&r, f.p, f.n);
    check_content_range(&r);

    int v = httpc_judge(&r, &e, body, &retry, why, sizeof why);
    FUZZ_CHECK(v == 0 || v == -EIO || v == -ESTALE || v == -ENOENT);
    FUZZ_CHECK(retry == 0 || retry == 1);
    FUZZ_CHECK(fuzz_terminated(why, sizeof why));
    FUZZ_CHECK((v == 0) == o_ok(&r, kind, vv, body));
    /* What origin-http.c's stat does with a HEAD or probe it accepted. */
    if (v == 0 && kind == HTTPC_HEAD && r.have_length && !r.length_bad)
        check_info(&r, t);
    if (v == 0 && kind == HTTPC_PROBE)
        check_info(&r, t);
    return 0;
}
