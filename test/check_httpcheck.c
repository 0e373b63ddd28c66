/* Unit tests for fs/origin/http-check.c: what the HTTP origin accepts from a
 * server.  Every case states a response and the verdict it must get. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ic-http-check.h"

/* The template of every range test: 16 MiB + 12345 bytes; the read asks
 * for its second 64 KiB block. */
#define SIZE 16789561ull
#define OFF 65536ull
#define LEN 65536u
#define ETAG "\"5f3c-1000c39\""
#define LM "Tue, 14 Nov 2023 22:13:20 GMT"
#define GOOD_RANGE "bytes 65536-131071/16789561"

static struct origin_info info;
static char why[256];

/* ------------------------------------------------------------ helpers */

/* A response from header lines (CRLF added), as curl hands them over. */
static void resp(struct http_resp *r, const char *const *lines)
{
    char buf[HTTPC_LINE_MAX + 4];

    httpc_resp_reset(r);
    for (; *lines != NULL; lines++) {
        int n = snprintf(buf, sizeof buf, "%s\r\n", *lines);
        httpc_resp_line(r, buf, (size_t)n);
    }
}

/* A range read of the block at OFF, of the template with validator v. */
static struct http_expect range_of(const char *v)
{
    struct http_expect e = {.kind = HTTPC_RANGE, .off = OFF, .len = LEN,
                            .info = &info};
    char hdr[ORIGIN_VALIDATOR_MAX + 32];

    memset(&info, 0, sizeof info);
    info.size = SIZE;
    snprintf(info.validator, sizeof info.validator, "%s", v);
    httpc_conditions(&e, hdr, sizeof hdr);
    return e;
}

/* The verdict on a complete transfer of `body` bytes; *retry out. */
static int judge(const char *const *lines, const struct http_expect *e,
                 size_t body, int *retry)
{
    struct http_resp r;
    resp(&r, lines);
    return httpc_judge(&r, e, body, retry, why, sizeof why);
}

/* A 206 to the range read of a strong-ETag template, with one header
 * replaced (or added when `name` is new); "" as value drops it. */
static int judge_206_with(const char *name, const char *value, size_t body)
{
    const char *base[][2] = {
        {"Content-Range", GOOD_RANGE}, {"Content-Length", "65536"},
        {"ETag", ETAG}, {"Last-Modified", LM}, {NULL, NULL}};
    char lines[8][HTTPC_LINE_MAX];
    const char *ptrs[9];
    size_t n = 0;
    int replaced = 0, retry;

    ptrs[n] = "HTTP/1.1 206 Partial Content";
    strcpy(lines[n++], ptrs[0]);
    for (size_t i = 0; base[i][0] != NULL; i++) {
        const char *v = base[i][1];
        if (name != NULL && strcasecmp(name, base[i][0]) == 0) {
            v = value;
            replaced = 1;
        }
        if (v[0] != '\0')
            snprintf(lines[n++], sizeof lines[0], "%s: %s", base[i][0], v);
    }
    if (name != NULL && !replaced)
        snprintf(lines[n++], sizeof lines[0], "%s: %s", name, value);
    for (size_t i = 0; i < n; i++)
        ptrs[i] = lines[i];
    ptrs[n] = NULL;
    struct http_expect e = range_of("etag:" ETAG);
    return judge(ptrs, &e, body, &retry);
}

static int cr_ok(const char *s, int64_t first, uint64_t last, uint64_t total)
{
    int64_t f;
    uint64_t l, t;
    return httpc_parse_content_range(s, &f, &l, &t) == 0 && f == first &&
           l == last && t == total;
}

static int cr_bad(const char *s)
{
    int64_t f;
    uint64_t l, t;
    return httpc_parse_content_range(s, &f, &l, &t) == -EINVAL;
}

/* ------------------------------------------------------------ parsing */

START_TEST(numbers)
{
    uint64_t v;
    const char *end;

    ck_assert_int_eq(httpc_parse_u64_all("0", &v), 0);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(httpc_parse_u64_all("0065536", &v), 0);
    ck_assert_uint_eq(v, 65536);
    ck_assert_int_eq(httpc_parse_u64_all("18446744073709551615", &v), 0);
    ck_assert_uint_eq(v, UINT64_MAX);
    /* Overflow, signs, blanks, hex, empty: all refused. */
    ck_assert_int_eq(httpc_parse_u64_all("18446744073709551616", &v), -ERANGE);
    ck_assert_int_eq(httpc_parse_u64_all("99999999999999999999", &v), -ERANGE);
    ck_assert_int_eq(httpc_parse_u64_all("+1", &v), -EINVAL);
    ck_assert_int_eq(httpc_parse_u64_all("-1", &v), -EINVAL);
    ck_assert_int_eq(httpc_parse_u64_all(" 1", &v), -EINVAL);
    ck_assert_int_eq(httpc_parse_u64_all("1 ", &v), -EINVAL);
    ck_assert_int_eq(httpc_parse_u64_all("0x10", &v), -EINVAL);
    ck_assert_int_eq(httpc_parse_u64_all("", &v), -EINVAL);
    ck_assert_int_eq(httpc_parse_u64("12-34", &end, &v), 0);
    ck_assert_uint_eq(v, 12);
    ck_assert_str_eq(end, "-34");
}
END_TEST

START_TEST(content_range_accepted)
{
    ck_assert(cr_ok("bytes 0-0/1", 0, 0, 1));
    ck_assert(cr_ok(GOOD_RANGE, 65536, 131071, SIZE));
    ck_assert(cr_ok("BYTES 1-2/3", 1, 2, 3)); /* the unit is case-blind */
    ck_assert(cr_ok("bytes */0", -1, 0, 0));  /* unsatisfiable: size only */
    ck_assert(cr_ok("bytes */16789561", -1, 0, SIZE));
    ck_assert(cr_ok("bytes 9223372036854775807-9223372036854775807/"
                    "18446744073709551615",
                    INT64_MAX, INT64_MAX, UINT64_MAX));
}
END_TEST

START_TEST(content_range_rejected)
{
    ck_assert(cr_bad(""));
    ck_assert(cr_bad("bytes "));
    ck_assert(cr_bad("bytes=0-1/2"));
    ck_assert(cr_bad("bytes  0-1/2")); /* exactly one space */
    ck_assert(cr_bad("bytes 0 -1/2"));
    ck_assert(cr_bad("bytes 0- 1/2"));
    ck_assert(cr_bad("bytes 0-1 /2"));
    ck_assert(cr_bad("bytes 0-1/ 2"));
    ck_assert(cr_bad("bytes 0-1/2 "));
    ck_assert(cr_bad("bytes 0-1/*")); /* unknown size: we must know it */
    ck_assert(cr_bad("bytes */*"));
    ck_assert(cr_bad("bytes *"));
    ck_assert(cr_bad("bytes 5-4/10")); /* last before first */
    ck_assert(cr_bad("bytes -1-2/3"));
    ck_assert(cr_bad("bytes +1-2/3"));
    ck_assert(cr_bad("bytes 0x1-0x2/3"));
    ck_assert(cr_bad("bytes 1-2"));
    ck_assert(cr_bad("bytes 1/2"));
    ck_assert(cr_bad("items 0-1/2"));
    ck_assert(cr_bad("bytes 0-1/18446744073709551616")); /* overflow */
    ck_assert(cr_bad("bytes 0-18446744073709551616/1"));
    /* first must fit an int64_t, the type that also says "unsatisfied" */
    ck_assert(cr_bad("bytes 9223372036854775808-9223372036854775808/"
                     "18446744073709551615"));
}
END_TEST

START_TEST(identity_encodings)
{
    ck_assert(httpc_is_identity(""));
    ck_assert(httpc_is_identity("identity"));
    ck_assert(httpc_is_identity("IDENTITY"));
    ck_assert(httpc_is_identity("Identity"));
    ck_assert(!httpc_is_identity("gzip"));
    ck_assert(!httpc_is_identity("br"));
    ck_assert(!httpc_is_identity("identity, gzip"));
    ck_assert(!httpc_is_identity("gzip, identity"));
    ck_assert(!httpc_is_identity("identityx"));
}
END_TEST

/* ------------------------------------------------------------ headers */

START_TEST(header_lines)
{
    struct http_resp r;
    const char *const lines[] = {
        "HTTP/1.1 302 Found", "ETag: \"old\"", "Content-Length: 5",
        "HTTP/1.1 206 Partial Content", /* a new response: forget the 302 */
        "content-range:\t" GOOD_RANGE "  ", "CONTENT-LENGTH: 65536",
        "Retry-After: 120", "X-Other: ignored", "no colon here", NULL};

    resp(&r, lines);
    ck_assert_int_eq(r.status, 206);
    ck_assert_str_eq(r.etag, "");
    ck_assert_str_eq(r.content_range, GOOD_RANGE);
    ck_assert(r.have_length && !r.length_bad);
    ck_assert_uint_eq(r.length, 65536);
    ck_assert_int_eq(r.retry_after, 120);

    const char *const odd[] = {"HTTP/1.1 200 OK", "Content-Length: 12x",
                               "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT",
                               NULL};
    resp(&r, odd);
    ck_assert(r.have_length && r.length_bad);
    ck_assert_int_eq(r.retry_after, -1); /* a date: our own backoff */
}
END_TEST

START_TEST(long_validators)
{
    struct http_resp r;
    char etag[HTTPC_ETAG_MAX + 10];

    memset(etag, 'a', sizeof etag - 1);
    etag[sizeof etag - 1] = '\0';
    httpc_resp_reset(&r);
    httpc_resp_header(&r, "ETag", etag);
    ck_assert(r.etag_too_long);
    ck_assert_uint_eq(strlen(r.etag), HTTPC_ETAG_MAX - 1);
    /* A cut ETag never matches: it could hide a change. */
    ck_assert(httpc_validator_differs(&r, "etag:\"x\""));
}
END_TEST

/* ------------------------------------------------------------ ETags */

START_TEST(etag_comparison)
{
    struct http_resp r;

    ck_assert(httpc_etag_weak_equal("\"a\"", "W/\"a\""));
    ck_assert(httpc_etag_weak_equal("W/\"a\"", "W/\"a\""));
    ck_assert(httpc_etag_weak_equal("W/\"a\"", "\"a\""));
    ck_assert(!httpc_etag_weak_equal("\"a\"", "\"b\""));
    ck_assert(!httpc_etag_weak_equal("W/\"a\"", "W/\"b\""));

    httpc_resp_reset(&r);
    ck_assert(!httpc_validator_differs(&r, "etag:" ETAG)); /* none sent */
    httpc_resp_header(&r, "ETag", ETAG);
    ck_assert(!httpc_validator_differs(&r, "etag:" ETAG));
    ck_assert(!httpc_validator_differs(&r, "etag:W/" ETAG));
    httpc_resp_header(&r, "ETag", "W/" ETAG);
    /* A strong ETag promises these very bytes: a weak one does not. */
    ck_assert(httpc_validator_differs(&r, "etag:" ETAG));
    ck_assert(!httpc_validator_differs(&r, "etag:W/" ETAG));
    httpc_resp_header(&r, "ETag", "\"other\"");
    ck_assert(httpc_validator_differs(&r, "etag:" ETAG));
    ck_assert(httpc_validator_differs(&r, "etag:W/" ETAG));
    /* "size:" has nothing to compare; "lm:" compares the date only. */
    ck_assert(!httpc_validator_differs(&r, "size:16789561"));
    ck_assert(!httpc_validator_differs(&r, "lm:" LM));
    httpc_resp_header(&r, "Last-Modified", LM);
    ck_assert(!httpc_validator_differs(&r, "lm:" LM));
    httpc_resp_header(&r, "Last-Modified", "Wed, 15 Nov 2023 00:00:00 GMT");
    ck_assert(httpc_validator_differs(&r, "lm:" LM));
}
END_TEST

/* ------------------------------------------------------------ 206 */

START_TEST(range_206_accepted)
{
    ck_assert_int_eq(judge_206_with(NULL, NULL, LEN), 0);
    ck_assert_str_eq(why, "");
    ck_assert_int_eq(judge_206_with("Content-Length", "", LEN), 0);
    ck_assert_int_eq(judge_206_with("ETag", "", LEN), 0);
    ck_assert_int_eq(judge_206_with("Content-Encoding", "identity", LEN), 0);
    ck_assert_int_eq(judge_206_with("Content-Range",
                                    "Bytes 65536-131071/16789561", LEN), 0);
}
END_TEST

START_TEST(range_206_refused)
{
    ck_assert_int_eq(judge_206_with("Content-Range",
                                    "bytes 0-65535/16789561", LEN), -EIO);
    ck_assert(strstr(why, "asked bytes 65536-131071, got 0-65535") != NULL);
    ck_assert_int_eq(judge_206_with("Content-Range",
                                    "bytes 65536-131072/16789561", LEN), -EIO);
    ck_assert_int_eq(judge_206_with("Content-Range",
                                    "bytes 65536-131070/16789561", LEN), -EIO);
    ck_assert_int_eq(judge_206_with("Content-Range", "bytes */16789561", LEN),
                     -EIO);
    ck_assert_int_eq(judge_206_with("Content-Range",
                                    "bytes 65536-131071/*", LEN), -EIO);
    ck_assert_int_eq(judge_206_with("Content-Range", "", LEN), -EIO);
    ck_assert_str_eq(why, "206 without a valid Content-Range");
    ck_assert_int_eq(judge_206_with("Content-Length", "65535", LEN), -EIO);
    ck_assert_int_eq(judge_206_with("Content-Length", "65536x", LEN), -EIO);
    ck_assert_int_eq(judge_206_with("Content-Encoding", "gzip", LEN), -EIO);
}
END_TEST

START_TEST(range_206_changed)
{
    /* Another total or validator: the content changed. */
    ck_assert_int_eq(judge_206_with("Content-Range",
                                    "bytes 65536-131071/16789562", LEN),
                     -ESTALE);
    ck_assert_int_eq(judge_206_with("ETag", "\"other\"", LEN), -ESTALE);
    ck_assert_int_eq(judge_206_with("ETag", "W/" ETAG, LEN), -ESTALE);
}
END_TEST

START_TEST(range_body_length)
{
    int retry;
    const char *const ok[] = {"HTTP/1.1 206 Partial Content",
                              "Content-Range: " GOOD_RANGE, NULL};
    struct http_expect e = range_of("etag:" ETAG);

    ck_assert_int_eq(judge(ok, &e, LEN, &retry), 0);
    /* Short: the connection broke, another attempt may do better. */
    ck_assert_int_eq(judge(ok, &e, LEN - 1, &retry), -EIO);
    ck_assert_int_eq(retry, 1);
    ck_assert_int_eq(judge(ok, &e, 0, &retry), -EIO);
    /* Long: the server is wrong; never more bytes than asked. */
    ck_assert_int_eq(judge(ok, &e, LEN + 1, &retry), -EIO);
    ck_assert_int_eq(retry, 0);
    ck_assert(!httpc_body_fits(&e, LEN - 10, 11));
    ck_assert(httpc_body_fits(&e, LEN - 10, 10));
}
END_TEST

START_TEST(range_200)
{
    int retry;
    const char *const same_lm[] = {"HTTP/1.1 200 OK", "Last-Modified: " LM,
                                   NULL};
    const char *const new_lm[] = {"HTTP/1.1 200 OK",
                                  "Last-Modified: Wed, 15 Nov 2023 "
                                  "00:00:00 GMT", NULL};
    struct http_expect e = range_of("lm:" LM);

    /* If-Range sent: a 200 with our date ignores Range, else changed. */
    ck_assert_str_eq(e.if_range, LM);
    ck_assert_int_eq(judge(same_lm, &e, SIZE, &retry), -EIO);
    ck_assert_str_eq(why, "server ignores Range requests");
    ck_assert_int_eq(judge(new_lm, &e, SIZE, &retry), -ESTALE);
    /* If-Match sent (strong ETag): a 200 can only be Range ignored. */
    e = range_of("etag:" ETAG);
    ck_assert_int_eq(judge(new_lm, &e, SIZE, &retry), -EIO);
    /* Weak ETag and a date: If-Range; the ETag tells the two apart. */
    e = range_of("etag:W/" ETAG);
    info.mtime_ns = 1700000000ll * 1000000000ll;
    char hdr[ORIGIN_VALIDATOR_MAX + 32];
    httpc_conditions(&e, hdr, sizeof hdr);
    const char *const same_etag[] = {"HTTP/1.1 200 OK", "ETag: " ETAG, NULL};
    ck_assert_int_eq(judge(same_etag, &e, SIZE, &retry), -EIO);
    ck_assert_int_eq(judge(new_lm, &e, SIZE, &retry), -ESTALE);
}
END_TEST

START_TEST(statuses)
{
    int retry;
    struct { long status; int err, retry; } t[] = {
        {404, -ENOENT, 0}, {410, -ENOENT, 0}, {412, -ESTALE, 0},
        {416, -ESTALE, 0}, {408, -EIO, 1},    {429, -EIO, 1},
        {500, -EIO, 1},    {503, -EIO, 1},    {501, -EIO, 0},
        {505, -EIO, 0},    {403, -EIO, 0},    {304, -EIO, 0},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        ck_assert_int_eq(httpc_status_errno(t[i].status, &retry), t[i].err);
        ck_assert_int_eq(retry, t[i].retry);
    }
    /* An error status without a body speaks for itself. */
    const char *const gone[] = {"HTTP/1.1 404 Not Found", NULL};
    struct http_expect e = range_of("etag:" ETAG);
    ck_assert_int_eq(judge(gone, &e, 0, &retry), -ENOENT);
    ck_assert_int_eq(judge(gone, &e, 153, &retry), -ENOENT);
}
END_TEST

/* ------------------------------------------------------------ stat */

START_TEST(head_and_probe)
{
    int retry;
    struct http_expect head = {.kind = HTTPC_HEAD};
    struct http_expect probe = {.kind = HTTPC_PROBE, .len = 1};
    const char *const h200[] = {"HTTP/1.1 200 OK", "Content-Length: 5", NULL};
    const char *const hgz[] = {"HTTP/1.1 200 OK", "Content-Encoding: gzip",
                               NULL};
    const char *const p206[] = {"HTTP/1.1 206 Partial Content",
                                "Content-Range: bytes 0-0/5", NULL};
    const char *const p206bad[] = {"HTTP/1.1 206 Partial Content",
                                   "Content-Range: bytes 0-1/5", NULL};
    const char *const p416[] = {"HTTP/1.1 416 Range Not Satisfiable",
                                "Content-Range: bytes */0", NULL};

    ck_assert_int_eq(judge(h200, &head, 0, &retry), 0);
    ck_assert_int_eq(judge(hgz, &head, 0, &retry), -EIO);
    ck_assert_int_eq(judge(p206, &probe, 1, &retry), 0);
    ck_assert_int_eq(judge(p206bad, &probe, 1, &retry), -EIO);
    ck_assert_int_eq(judge(p416, &probe, 100, &retry), 0); /* empty file */
    ck_assert_int_eq(judge(h200, &probe, 100, &retry), 0); /* has a size */
    const char *const nolen[] = {"HTTP/1.1 200 OK", NULL};
    ck_assert_int_eq(judge(nolen, &probe, 100, &retry), -EIO);
}
END_TEST

START_TEST(whole_limit)
{
    int retry;
    struct http_expect w = {.kind = HTTPC_WHOLE, .len = 100};
    const char *const big[] = {"HTTP/1.1 200 OK", "Content-Length: 101",
                               NULL};
    const char *const fine[] = {"HTTP/1.1 200 OK", NULL};

    ck_assert_int_eq(judge(big, &w, 0, &retry), -EIO);
    ck_assert_str_eq(why, "larger than 100 bytes");
    ck_assert_int_eq(judge(fine, &w, 100, &retry), 0);
    ck_assert_int_eq(judge(fine, &w, 101, &retry), -EIO);
}
END_TEST

static const char *info_validator(const char *const *lines, uint64_t *size)
{
    static struct origin_info out;
    struct http_resp r;

    resp(&r, lines);
    if (httpc_info(&r, 1700000000, &out, why, sizeof why) != 0)
        return NULL;
    *size = out.size;
    ck_assert(httpc_validator_usable(out.validator));
    return out.validator;
}

START_TEST(stat_validators)
{
    uint64_t size;
    const char *const both[] = {"HTTP/1.1 200 OK", "Content-Length: 5",
                                "ETag: " ETAG, "Last-Modified: " LM, NULL};
    const char *const lm[] = {"HTTP/1.1 200 OK", "Content-Length: 5",
                              "Last-Modified: " LM, NULL};
    const char *const none[] = {"HTTP/1.1 200 OK", "Content-Length: 5", NULL};
    /* Found by fuzz_http: a bare CR inside an ETag made a validator that
     * every read refused with -ESTALE; now the date is used instead. */
    const char *const cr[] = {"HTTP/1.1 200 OK", "Content-Length: 5",
                              "ETag: \"a\"\r\"b\"", "Last-Modified: " LM,
                              NULL};
    const char *const probe[] = {"HTTP/1.1 206 Partial Content",
                                 "Content-Range: bytes 0-0/16789561", NULL};
    const char *const absurd[] = {"HTTP/1.1 200 OK",
                                  "Content-Length: 1125899906842625", NULL};

    ck_assert_str_eq(info_validator(both, &size), "etag:" ETAG);
    ck_assert_uint_eq(size, 5);
    ck_assert_str_eq(info_validator(lm, &size), "lm:" LM);
    ck_assert_str_eq(info_validator(none, &size), "size:5");
    ck_assert_str_eq(info_validator(cr, &size), "lm:" LM);
    ck_assert_str_eq(info_validator(probe, &size), "size:16789561");
    ck_assert_uint_eq(size, SIZE);
    ck_assert_ptr_null(info_validator(absurd, &size));
    ck_assert_str_eq(why, "absurd size 1125899906842625 refused");
}
END_TEST

START_TEST(usable_validators)
{
    ck_assert(httpc_validator_usable("etag:\"a\""));
    ck_assert(httpc_validator_usable("lm:" LM));
    ck_assert(httpc_validator_usable("size:5"));
    ck_assert(!httpc_validator_usable("1:2:3:4:5")); /* the file backend's */
    ck_assert(!httpc_validator_usable(""));
    ck_assert(!httpc_validator_usable("etag:\"a\"\r\nX-Evil: 1"));
}
END_TEST

START_TEST(strong_validators)
{
    ck_assert(httpc_validator_strong("etag:\"a\""));
    ck_assert(!httpc_validator_strong("etag:W/\"a\""));
    ck_assert(!httpc_validator_strong("etag:"));
    ck_assert(!httpc_validator_strong("lm:" LM));
    ck_assert(!httpc_validator_strong("size:5"));
    ck_assert(!httpc_validator_strong("1:2:3:4:5"));
}
END_TEST

START_TEST(conditions)
{
    char hdr[ORIGIN_VALIDATOR_MAX + 32];
    struct http_expect e = range_of("etag:" ETAG);

    httpc_conditions(&e, hdr, sizeof hdr);
    ck_assert_str_eq(hdr, "If-Match: " ETAG);
    ck_assert_str_eq(e.if_range, "");
    e = range_of("lm:" LM);
    httpc_conditions(&e, hdr, sizeof hdr);
    ck_assert_str_eq(hdr, "If-Range: " LM);
    e = range_of("etag:W/" ETAG);
    httpc_conditions(&e, hdr, sizeof hdr);
    ck_assert_str_eq(hdr, ""); /* weak ETag, no date: nothing to send */
    info.mtime_ns = 1700000000ll * 1000000000ll;
    httpc_conditions(&e, hdr, sizeof hdr);
    ck_assert_str_eq(hdr, "If-Range: " LM);
    e = range_of("size:16789561");
    httpc_conditions(&e, hdr, sizeof hdr);
    ck_assert_str_eq(hdr, "");
}
END_TEST

START_TEST(dates)
{
    char d[64];

    httpc_date(0, d, sizeof d);
    ck_assert_str_eq(d, "Thu, 01 Jan 1970 00:00:00 GMT");
    httpc_date(1700000000ll * 1000000000ll, d, sizeof d);
    ck_assert_str_eq(d, LM);
}
END_TEST

/* ------------------------------------------------------------ manifest */

START_TEST(manifest)
{
    static const char body[] = "# templates of dir\n\na.img\r\n  b.img  \n"
                               "../evil\nc/d\n#x.img\nbad\0nul\nlast.img";
    char **names;
    size_t skipped;

    int n = httpc_manifest_parse(body, sizeof body - 1, &names, &skipped);
    ck_assert_int_eq(n, 3);
    ck_assert_uint_eq(skipped, 3);
    ck_assert_str_eq(names[0], "a.img");
    ck_assert_str_eq(names[1], "b.img");
    ck_assert_str_eq(names[2], "last.img");
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);

    ck_assert_int_eq(httpc_manifest_parse("# none\n\n", 8, &names, &skipped),
                     0);
    ck_assert_ptr_null(names);
    ck_assert_int_eq(httpc_manifest_parse("..\n", 3, &names, &skipped), 0);
    ck_assert_ptr_null(names);
    ck_assert_uint_eq(skipped, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("http-check");
    TCase *tc = tcase_create("parsing");
    tcase_add_test(tc, numbers);
    tcase_add_test(tc, content_range_accepted);
    tcase_add_test(tc, content_range_rejected);
    tcase_add_test(tc, identity_encodings);
    tcase_add_test(tc, header_lines);
    tcase_add_test(tc, long_validators);
    tcase_add_test(tc, etag_comparison);
    suite_add_tcase(s, tc);

    tc = tcase_create("verdicts");
    tcase_add_test(tc, range_206_accepted);
    tcase_add_test(tc, range_206_refused);
    tcase_add_test(tc, range_206_changed);
    tcase_add_test(tc, range_body_length);
    tcase_add_test(tc, range_200);
    tcase_add_test(tc, statuses);
    tcase_add_test(tc, head_and_probe);
    tcase_add_test(tc, whole_limit);
    suite_add_tcase(s, tc);

    tc = tcase_create("stat");
    tcase_add_test(tc, stat_validators);
    tcase_add_test(tc, usable_validators);
    tcase_add_test(tc, strong_validators);
    tcase_add_test(tc, conditions);
    tcase_add_test(tc, dates);
    tcase_add_test(tc, manifest);
    suite_add_tcase(s, tc);

    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
