/* Unit tests for fs/origin/proxy.c (and the syntax of fs/config/
 * proxyspec.c): which route each attempt takes for a `proxy` list, and how
 * failures back a route off and its return.  No server: time is the
 * test's own (the now_ms argument), outcomes are reported by hand.
 * Route entries are process-wide, so each test names its own proxies. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ck-tmpdir.h"
#include "ic-proxy.h"
#include "ic-proxyspec.h"

static struct proxy_chain *chain(const char *spec)
{
    struct proxy_chain *c;
    char err[256];
    ck_assert_msg(proxy_chain_new(spec, NULL, &c, err, sizeof err) == 0, "%s: %s",
                  spec, err);
    return c;
}

static const char *pick(struct proxy_chain *c, uint64_t now)
{
    return proxy_chain_display(c, proxy_pick(c, now));
}

/* Pick and report an outcome in one go. */
static const char *use(struct proxy_chain *c, uint64_t now, int failed)
{
    size_t i = proxy_pick(c, now);
    proxy_done(c, i, failed, now, now);
    return proxy_chain_display(c, i);
}

START_TEST(test_syntax)
{
    struct proxyspec ps;
    char err[256];

    ck_assert_int_eq(proxyspec_parse(" http://a:1 | http://b:1 ;http://c:1;"
                                     " direct ", &ps, err, sizeof err), 0);
    ck_assert_uint_eq(ps.n, 3);
    ck_assert_uint_eq(ps.ngroups, 2);
    ck_assert_str_eq(ps.url[1], "http://b:1");
    ck_assert_uint_eq(ps.group[0], 0);
    ck_assert_uint_eq(ps.group[1], 0);
    ck_assert_uint_eq(ps.group[2], 1);
    ck_assert_int_eq(ps.direct, 1);
    proxyspec_free(&ps);

    /* One URL: that proxy, never direct (what it always meant). */
    ck_assert_int_eq(proxyspec_parse("proxy.example:3128", &ps, err,
                                     sizeof err), 0);
    ck_assert_uint_eq(ps.n, 1);
    ck_assert_int_eq(ps.direct, 0);
    proxyspec_free(&ps);
    /* Empty and DIRECT alone: no proxy. */
    ck_assert_int_eq(proxyspec_parse("", &ps, err, sizeof err), 0);
    ck_assert_uint_eq(ps.n, 0);
    ck_assert_int_eq(ps.direct, 1);
    proxyspec_free(&ps);
    ck_assert_int_eq(proxyspec_parse("DIRECT", &ps, err, sizeof err), 0);
    ck_assert_uint_eq(ps.n, 0);
    ck_assert_int_eq(ps.direct, 1);
    proxyspec_free(&ps);

    static const char *const bad[][2] = {
        {"a:1;;b:1", "empty proxy name in group 2"},
        {"|a:1", "empty proxy name in group 1"},
        {"a:1|", "empty proxy name in group 1"},
        {"a:1||b:1", "empty proxy name in group 1"},
        {"a:1;", "empty proxy name in group 2"},
        {"a:1; ;b:1", "empty proxy name in group 2"},
        {";", "empty proxy name in group 1"},
        {"a:1;DIRECT;", "DIRECT must be the last group"},
        {"http://a b:1", "proxy 'http://a b:1' contains a blank or a "
                         "control character"},
        {"DIRECT;a:1", "DIRECT must be the last group"},
        {"a:1|DIRECT", "DIRECT cannot be part of a '|' group (group 1)"},
        {"DIRECT|a:1", "DIRECT cannot be part of a '|' group (group 1)"},
        {"http://", "proxy 'http://' has no host"},
        {"gopher://a:1", "proxy 'gopher://a:1' has a scheme other than "
                         "http, https, socks4(a) or socks5(h)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_int_eq(proxyspec_parse(bad[i][0], &ps, err, sizeof err),
                         -EINVAL);
        ck_assert_str_eq(err, bad[i][1]);
        proxyspec_free(&ps);
    }
    char many[1024] = "";
    for (int i = 0; i <= PROXYSPEC_MAX; i++)
        strcat(many, i ? "|p:1" : "p:1");
    ck_assert_int_eq(proxyspec_parse(many, &ps, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "more than 16 proxies");
    proxyspec_free(&ps);
}
END_TEST

/* A group spreads attempts over its proxies; the next group and DIRECT
 * stay unused while the first group answers. */
START_TEST(test_spread)
{
    struct proxy_chain *c = chain("http://s1:1|http://s2:1;http://s3:1;DIRECT");
    int n1 = 0, n2 = 0;

    ck_assert_uint_eq(proxy_chain_routes(c), 4);
    ck_assert_str_eq(proxy_chain_url(c, 3), "");
    ck_assert_str_eq(proxy_chain_display(c, 3), "DIRECT");
    for (int i = 0; i < 10; i++) {
        const char *d = use(c, 1000, 0);
        n1 += strcmp(d, "http://s1:1") == 0;
        n2 += strcmp(d, "http://s2:1") == 0;
    }
    ck_assert_int_eq(n1, 5);
    ck_assert_int_eq(n2, 5);
    proxy_chain_free(c);
}
END_TEST

/* Failures move to the group's other proxy, then the next group, then
 * DIRECT; backoff doubles per failure in a row and is capped; a proxy
 * whose backoff ran out gets one trial (the others keep the traffic while
 * it runs) and is back after a success. */
START_TEST(test_failover_backoff)
{
    struct proxy_chain *c = chain("http://f1:1|http://f2:1;http://f3:1;DIRECT");
    uint64_t t = 10000;

    ck_assert_str_eq(use(c, t, 1), "http://f1:1");
    ck_assert_str_eq(use(c, t, 1), "http://f2:1");
    ck_assert_str_eq(use(c, t, 1), "http://f3:1");
    ck_assert(!proxy_chain_all_failed(c, t));
    ck_assert_str_eq(use(c, t, 0), "DIRECT");
    ck_assert_str_eq(pick(c, t + PROXY_BACKOFF_FIRST_MS - 1), "DIRECT");

    struct proxy_info *v;
    int n = proxy_list(&v, t);
    int seen = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(v[i].display, "http://f1:1") == 0) {
            seen = 1;
            ck_assert_int_eq(v[i].backed_off, 1);
            ck_assert_uint_eq(v[i].errors, 1);
            ck_assert_uint_eq(v[i].retry_in_ms, PROXY_BACKOFF_FIRST_MS);
            ck_assert_int_eq(v[i].in_use, 0);
        } else if (strcmp(v[i].display, "DIRECT") == 0) {
            ck_assert_int_eq(v[i].in_use, 1);
        }
    ck_assert(seen);
    free(v);

    /* The backoffs end: f1 and f2 get one trial each; while those run,
     * the next pick goes on to the next group. */
    t += PROXY_BACKOFF_FIRST_MS;
    size_t a = proxy_pick(c, t), b = proxy_pick(c, t);
    ck_assert_uint_ne(a, b);
    ck_assert_uint_lt(a, 2);
    ck_assert_uint_lt(b, 2);
    ck_assert_str_eq(pick(c, t), "http://f3:1");
    /* Both trials fail: twice the backoff. */
    proxy_done(c, a, 1, t, t);
    proxy_done(c, b, 1, t, t);
    ck_assert_str_eq(pick(c, t + 2 * PROXY_BACKOFF_FIRST_MS - 1),
                     "http://f3:1");
    t += 2 * PROXY_BACKOFF_FIRST_MS;
    size_t k = proxy_pick(c, t);
    ck_assert_uint_lt(k, 2);
    proxy_done(c, k, 0, t, t);          /* back: group 1 has the traffic */
    for (int i = 0; i < 4; i++)
        ck_assert_uint_lt(proxy_pick(c, t), 2);

    /* The cap. */
    for (int i = 0; i < 20; i++) {
        t += PROXY_BACKOFF_MAX_MS;
        size_t j = proxy_pick(c, t);
        proxy_done(c, j, 1, t, t);
    }
    n = proxy_list(&v, t);
    for (int i = 0; i < n; i++)
        if (v[i].backed_off)
            ck_assert_uint_le(v[i].retry_in_ms, PROXY_BACKOFF_MAX_MS);
    free(v);
    proxy_chain_free(c);
}
END_TEST

/* Transfers in flight through a proxy when it dies all fail together:
 * one failure (one backoff period, not one doubling per transfer), and
 * none of them moves the backoff that the first one started; the trial
 * that follows decides alone. */
START_TEST(test_together)
{
    struct proxy_chain *c = chain("http://tg1:1;http://tg2:1");
    uint64_t t = 50000;
    size_t in_flight[8];

    for (int i = 0; i < 8; i++) {
        in_flight[i] = proxy_pick(c, t + (uint64_t)i);
        ck_assert_str_eq(proxy_chain_display(c, in_flight[i]),
                         "http://tg1:1");
    }
    for (int i = 0; i < 8; i++)
        proxy_done(c, in_flight[i], 1, t + (uint64_t)i, t + 100 + (uint64_t)i);
    struct proxy_info *v;
    int n = proxy_list(&v, t + 200);
    int seen = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(v[i].display, "http://tg1:1") == 0) {
            seen = 1;
            ck_assert_uint_eq(v[i].errors, 8);
            ck_assert_uint_eq(v[i].fails, 1);
            ck_assert_uint_eq(v[i].retry_in_ms,
                              PROXY_BACKOFF_FIRST_MS - 100);
        }
    ck_assert(seen);
    free(v);
    ck_assert_str_eq(pick(c, t + 200), "http://tg2:1");
    /* The trial fails: now twice; a late success of an attempt begun
     * before does not end that. */
    uint64_t t2 = t + 100 + PROXY_BACKOFF_FIRST_MS;
    size_t k = proxy_pick(c, t2);
    ck_assert_str_eq(proxy_chain_display(c, k), "http://tg1:1");
    proxy_done(c, k, 1, t2, t2 + 10);
    proxy_done(c, 0, 0, t2 - 1, t2 + 20);
    ck_assert_str_eq(pick(c, t2 + 20), "http://tg2:1");
    n = proxy_list(&v, t2 + 10);
    for (int i = 0; i < n; i++)
        if (strcmp(v[i].display, "http://tg1:1") == 0) {
            ck_assert_uint_eq(v[i].fails, 2);
            ck_assert_uint_eq(v[i].retry_in_ms, 2 * PROXY_BACKOFF_FIRST_MS);
        }
    free(v);
    proxy_chain_free(c);
}
END_TEST

/* DIRECT is per origin host: one host's failures going direct do not
 * back DIRECT off for the chain of a template on another host. */
START_TEST(test_direct_per_host)
{
    struct proxy_chain *a, *b;
    char err[256];
    uint64_t t = 70000;

    ck_assert_int_eq(proxy_chain_new("http://dh1:1;DIRECT", "http://ha:80",
                                     &a, err, sizeof err), 0);
    ck_assert_int_eq(proxy_chain_new("http://dh1:1;DIRECT", "http://hb:80",
                                     &b, err, sizeof err), 0);
    ck_assert_str_eq(use(a, t, 1), "http://dh1:1");
    ck_assert_str_eq(use(a, t + 1, 1), "DIRECT http://ha:80");
    ck_assert(proxy_chain_all_failed(a, t + 2));
    ck_assert(!proxy_chain_all_failed(b, t + 2));
    ck_assert_str_eq(pick(b, t + 2), "DIRECT http://hb:80");
    char d[128];
    proxy_chain_describe(b, d, sizeof d);
    ck_assert_str_eq(d, "http://dh1:1;DIRECT");
    proxy_chain_free(a);
    proxy_chain_free(b);
}
END_TEST

/* Credentials never show in the chain's description either. */
START_TEST(test_describe)
{
    struct proxy_chain *c =
        chain("http://u:pw1@ds1:1 | http://u:pw2@ds2:1;ds3:1;DIRECT");
    char d[256];

    proxy_chain_describe(c, d, sizeof d);
    ck_assert_str_eq(d, "http://***@ds1:1|http://***@ds2:1;ds3:1;DIRECT");
    proxy_chain_describe(c, d, 10);
    ck_assert_str_eq(d, "http://**");
    proxy_chain_free(c);

    struct proxyspec ps;
    char err[256];
    ck_assert_int_eq(proxyspec_parse("a:1;ftp://u:secret@h:1", &ps, err,
                                     sizeof err), -EINVAL);
    ck_assert_str_eq(err, "proxy 'ftp://***@h:1' has a scheme other than "
                          "http, https, socks4(a) or socks5(h)");
    proxyspec_free(&ps);
    ck_assert_int_eq(proxyspec_parse("a:1;ftp://u:s@cr@t@h:1/x", &ps, err,
                                     sizeof err), -EINVAL);
    ck_assert(strstr(err, "cr") == NULL);
    proxyspec_free(&ps);
}
END_TEST

/* Without DIRECT, never direct: when everything is backed off, the proxy
 * free soonest is tried anyway; a single proxy is always used. */
START_TEST(test_no_direct)
{
    struct proxy_chain *c = chain("http://n1:1;http://n2:1");
    uint64_t t = 5000;

    ck_assert_uint_eq(proxy_chain_routes(c), 2);
    ck_assert_str_eq(use(c, t, 1), "http://n1:1");
    ck_assert_str_eq(use(c, t + 10, 1), "http://n2:1");
    ck_assert(proxy_chain_all_failed(c, t + 10));
    ck_assert_str_eq(pick(c, t + 20), "http://n1:1");
    proxy_chain_free(c);

    c = chain("http://single:1");
    for (int i = 0; i < 5; i++)
        ck_assert_str_eq(use(c, t + (uint64_t)i, 1), "http://single:1");
    ck_assert_str_eq(use(c, t + 10, 0), "http://single:1");
    ck_assert(!proxy_chain_all_failed(c, t + 10));
    proxy_chain_free(c);
}
END_TEST

/* Entries are shared: one chain's failures steer another's picks; the
 * last chain's free removes them; credentials never show. */
START_TEST(test_shared)
{
    struct proxy_chain *a = chain("http://u:pw@sh1:1;http://sh2:1");
    struct proxy_chain *b = chain("http://u:pw@sh1:1;http://sh2:1");

    ck_assert_str_eq(use(a, 100, 1), "http://***@sh1:1");
    ck_assert_str_eq(pick(b, 100), "http://sh2:1");
    ck_assert_str_eq(proxy_chain_url(b, 0), "http://u:pw@sh1:1");
    proxy_chain_free(a);
    proxy_chain_free(b);
    struct proxy_info *v;
    int n = proxy_list(&v, 100);
    for (int i = 0; i < n; i++)
        ck_assert(strstr(v[i].display, "sh") == NULL);
    free(v);
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {test_syntax, test_spread,
                                         test_failover_backoff,
                                         test_no_direct, test_shared,
                                         test_together, test_describe,
                                         test_direct_per_host};
    Suite *s = suite_create("proxy");
    for (size_t i = 0; i < CK_NTESTS(tests); i++) {
        TCase *tc = tcase_create("proxy");
        tcase_add_test(tc, tests[i]);
        suite_add_tcase(s, tc);
    }
    return ck_run(s);
}
