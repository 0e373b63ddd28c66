/* Unit tests for fs/origin/health.c: the per-endpoint down state machine
 * of ic-health.h.  An entry goes down after HEALTH_DOWN_FAILS unreachable
 * attempts in a row, or after one whose run has lasted HEALTH_DOWN_MS;
 * while down further failures change nothing and the probe thread probes
 * it; an answered request or a probe that reaches it marks it up; an
 * attempt begun before it was last seen up does not count.
 *
 * Mostly no server: the probe is the test's own function, told what to
 * answer.  The last test runs the HTTP backend against a port nothing
 * listens on, then a listening socket there for its probe.
 * The module's state is process-wide (one list, one probe thread), so
 * each test uses its own keys and puts its entries back; health_stop(),
 * which ends probing for good, runs only at the end of main. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ic-health.h"
#include "ic-conf.h"
#include "ic-log.h"
#include "ic-origin.h"
#include "ic-util.h"

#include "ck-tmpdir.h"

struct probe {
    int answer; /* what the probe says (atomic) */
    int calls;  /* probes so far (atomic) */
    int freed;
};

static int probe_fn(void *arg, uint64_t deadline)
{
    struct probe *p = arg;
    (void)deadline;
    __atomic_add_fetch(&p->calls, 1, __ATOMIC_SEQ_CST);
    return __atomic_load_n(&p->answer, __ATOMIC_SEQ_CST);
}

static void probe_free(void *arg)
{
    struct probe *p = arg;
    p->freed++;
}

static int calls(struct probe *p)
{
    return __atomic_load_n(&p->calls, __ATOMIC_SEQ_CST);
}

/* The health_list entry of key (copied into out); 0 when not listed. */
static int listed(const char *key, struct health_info *out)
{
    struct health_info *v;
    int n = health_list(&v);
    int found = 0;
    ck_assert_int_ge(n, 0);
    for (int i = 0; i < n; i++)
        if (strcmp(v[i].key, key) == 0) {
            *out = v[i];
            found = 1;
        }
    free(v);
    return found;
}

static struct health *get(const char *key, struct probe *p)
{
    struct health *h = health_get(key, key, probe_fn, p, probe_free);
    ck_assert_ptr_nonnull(h);
    return h;
}

/* Two refused connects leave it up (a restart in progress?), counted;
 * the third marks it down: down since now, the next probe within
 * HEALTH_PROBE_FIRST_MS.  While down, failures change nothing; an
 * answered request marks it up with nothing left of the run. */
START_TEST(test_down_after_fails)
{
    struct probe p = {.answer = 0};
    struct health *h = get("http://h1.test:80", &p);
    struct health_info hi;
    ck_assert(listed("http://h1.test:80", &hi));
    ck_assert_int_eq(hi.down, 0);
    ck_assert_uint_eq(hi.fails, 0);
    for (int i = 1; i < HEALTH_DOWN_FAILS; i++) {
        health_unreachable(h, mono_ms(), "Connection refused");
        ck_assert(!health_is_down(h));
        ck_assert(listed("http://h1.test:80", &hi));
        ck_assert_uint_eq(hi.fails, (unsigned)i);
        ck_assert_int_eq(hi.down, 0);
        ck_assert_int_eq(health_down_since(h), 0);
    }
    int64_t t0 = (int64_t)time(NULL);
    health_unreachable(h, mono_ms(), "Connection refused");
    ck_assert(health_is_down(h));
    int64_t since = health_down_since(h);
    ck_assert(since >= t0 && since <= (int64_t)time(NULL));
    ck_assert(listed("http://h1.test:80", &hi));
    ck_assert_int_eq(hi.down, 1);
    ck_assert_int_eq(hi.since, since);
    ck_assert_uint_eq(hi.fails, HEALTH_DOWN_FAILS);
    ck_assert_uint_le(hi.next_probe_in_ms, HEALTH_PROBE_FIRST_MS);

    health_unreachable(h, mono_ms(), "Connection refused");
    ck_assert(listed("http://h1.test:80", &hi));
    ck_assert_uint_eq(hi.fails, HEALTH_DOWN_FAILS);
    ck_assert(health_is_down(h));

    health_answered(h);
    ck_assert(!health_is_down(h));
    ck_assert_int_eq(health_down_since(h), 0);
    ck_assert(listed("http://h1.test:80", &hi));
    ck_assert_int_eq(hi.down, 0);
    ck_assert_int_eq(hi.since, 0);
    ck_assert_uint_eq(hi.fails, 0);
    ck_assert_uint_eq(hi.next_probe_in_ms, 0);

    /* An answer between failures breaks the run. */
    health_unreachable(h, mono_ms(), "Connection refused");
    health_unreachable(h, mono_ms(), "Connection refused");
    health_answered(h);
    health_unreachable(h, mono_ms(), "Connection refused");
    ck_assert(!health_is_down(h));
    ck_assert(listed("http://h1.test:80", &hi));
    ck_assert_uint_eq(hi.fails, 1);
    health_put(h);
    ck_assert(!listed("http://h1.test:80", &hi));
    ck_assert_int_eq(p.freed, 1);
}
END_TEST

/* One attempt that took HEALTH_DOWN_MS (a connect timeout) is enough. */
START_TEST(test_down_after_long_attempt)
{
    struct probe p = {.answer = 0};
    struct health *h = get("http://h2.test:80", &p);
    health_unreachable(h, mono_ms() - HEALTH_DOWN_MS - 10, "Timeout");
    ck_assert(health_is_down(h));
    struct health_info hi;
    ck_assert(listed("http://h2.test:80", &hi));
    ck_assert_uint_eq(hi.fails, 1);
    health_put(h);
}
END_TEST

/* While down, the probe thread probes it: a probe that fails leaves it
 * down with the next probe further off (the interval doubled); one that
 * reaches it marks it up, and then probing stops.  Polled, 10 s at most
 * each (the first probe comes within HEALTH_PROBE_FIRST_MS, the second
 * within twice that). */
START_TEST(test_probe)
{
    struct probe p = {.answer = 0};
    struct health *h = get("http://h3.test:80", &p);
    for (int i = 0; i < HEALTH_DOWN_FAILS; i++)
        health_unreachable(h, mono_ms(), "Connection refused");
    ck_assert(health_is_down(h));
    uint64_t until = mono_ms() + 10000;
    while (calls(&p) == 0 && mono_ms() < until)
        usleep(10000);
    ck_assert_int_eq(calls(&p), 1);
    struct health_info hi;
    until = mono_ms() + 2000; /* the failed probe's bookkeeping */
    for (;;) {
        ck_assert(listed("http://h3.test:80", &hi));
        if (hi.next_probe_in_ms != 0 || mono_ms() >= until)
            break;
        usleep(1000);
    }
    ck_assert_int_eq(calls(&p), 1);
    ck_assert(health_is_down(h));
    ck_assert_uint_le(hi.next_probe_in_ms, 2 * HEALTH_PROBE_FIRST_MS);
    ck_assert_uint_gt(hi.next_probe_in_ms, 0);
    ck_assert_uint_eq(hi.fails, HEALTH_DOWN_FAILS); /* probes are not runs */

    __atomic_store_n(&p.answer, 1, __ATOMIC_SEQ_CST);
    until = mono_ms() + 10000;
    while (health_is_down(h) && mono_ms() < until)
        usleep(10000);
    ck_assert(!health_is_down(h));
    ck_assert_int_eq(calls(&p), 2);
    ck_assert(listed("http://h3.test:80", &hi));
    ck_assert_uint_eq(hi.fails, 0);
    ck_assert_int_eq(hi.since, 0);
    health_put(h);
}
END_TEST

/* An attempt begun before the entry was last marked up failed against
 * the old outage: it does not count, however many there are. */
START_TEST(test_old_attempts)
{
    struct probe p = {.answer = 0};
    struct health *h = get("http://h4.test:80", &p);
    uint64_t begun = mono_ms();
    for (int i = 0; i < HEALTH_DOWN_FAILS; i++)
        health_unreachable(h, mono_ms(), "Connection refused");
    ck_assert(health_is_down(h));
    usleep(2000); /* mono_ms() moves on: up_ms > begun */
    health_answered(h);
    ck_assert(!health_is_down(h));
    for (int i = 0; i < 2 * HEALTH_DOWN_FAILS; i++)
        health_unreachable(h, begun, "Connection refused");
    ck_assert(!health_is_down(h));
    struct health_info hi;
    ck_assert(listed("http://h4.test:80", &hi));
    ck_assert_uint_eq(hi.fails, 0);
    health_put(h);
}
END_TEST

/* One entry per key, shared and counted: a second get returns it and
 * frees its own probe argument at once; the entry goes with the last
 * put, its argument freed then.  Another key is another entry, with its
 * own state. */
START_TEST(test_shared)
{
    struct probe p1 = {0}, p2 = {0}, p3 = {0};
    struct health *a = get("http://h5.test:80", &p1);
    struct health *b = get("http://h5.test:80", &p2);
    struct health *c = get("http://h6.test:8080", &p3);
    ck_assert_ptr_eq(a, b);
    ck_assert_ptr_ne(a, c);
    ck_assert_int_eq(p2.freed, 1);
    ck_assert_int_eq(p1.freed, 0);
    for (int i = 0; i < HEALTH_DOWN_FAILS; i++)
        health_unreachable(b, mono_ms(), "Connection refused");
    ck_assert(health_is_down(a));
    ck_assert(!health_is_down(c));
    struct health_info hi;
    ck_assert(listed("http://h6.test:8080", &hi));
    ck_assert_int_eq(hi.down, 0);
    health_put(a);
    ck_assert(listed("http://h5.test:80", &hi));
    ck_assert_int_eq(hi.down, 1);
    ck_assert_int_eq(p1.freed, 0);
    health_answered(b); /* up: the probe thread lets go of it */
    health_put(b);
    ck_assert(!listed("http://h5.test:80", &hi));
    ck_assert_int_eq(p1.freed, 1);
    health_put(c);
    ck_assert_int_eq(p3.freed, 1);
}
END_TEST

/* A listening socket on 127.0.0.1:port (0: any free one), its fd; the
 * port in *port. */
static int listen_on(int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)*port)};
    socklen_t sl = sizeof sa;
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
                                sizeof one), 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* As the HTTP backend uses it: a host refusing connections goes down
 * within one call (its retries), which ends -EHOSTDOWN; the next call is
 * -EHOSTDOWN at once, without an attempt (well within 1 s).  Once
 * something listens on the port, the backend's connect-only probe marks
 * the host up (polled, 15 s at most). */
START_TEST(test_http_backend)
{
    static const char *vars[] = {"http_proxy", "HTTP_PROXY", "https_proxy",
                                 "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    int port = 0;
    close(listen_on(&port)); /* a port nothing listens on */
    char url[64], key[64], err[256] = "";
    snprintf(url, sizeof url, "http://127.0.0.1:%d/a.img", port);
    snprintf(key, sizeof key, "http://127.0.0.1:%d", port);
    struct conf_net net = {.origin_timeout_ms = 10000,
                           .connect_timeout_ms = 2000,
                           .revalidate_ms = 60000,
                           .max_connections = 2};
    struct origin *o = origin_new(url, &net, err, sizeof err);
    ck_assert_msg(o != NULL, "%s", err);
    struct origin_info info;
    struct health_info hi;
    ck_assert_int_eq(origin_stat(o, &info, mono_ms() + 10000), -EHOSTDOWN);
    ck_assert(listed(key, &hi));
    ck_assert_int_eq(hi.down, 1);
    ck_assert_uint_eq(hi.fails, HEALTH_DOWN_FAILS);
    /* Down: refused without an attempt (the failure count, not a time: a
     * refused connect to a closed port is as quick as no attempt, and
     * valgrind on a loaded machine makes any bound a guess). */
    ck_assert_int_eq(origin_stat(o, &info, mono_ms() + 10000), -EHOSTDOWN);
    ck_assert(listed(key, &hi));
    ck_assert_uint_eq(hi.fails, HEALTH_DOWN_FAILS); /* no attempt made */

    int fd = listen_on(&port);
    uint64_t until = mono_ms() + 15000;
    while (listed(key, &hi) && hi.down && mono_ms() < until)
        usleep(20000);
    ck_assert(listed(key, &hi));
    ck_assert_int_eq(hi.down, 0);
    ck_assert_uint_eq(hi.fails, 0);
    origin_free(o);
    ck_assert(!listed(key, &hi));
    close(fd);
}
END_TEST

/* The state as the xattr and the report say it. */
START_TEST(test_format)
{
    char buf[64];
    health_format(HEALTH_UP, 0, buf, sizeof buf);
    ck_assert_str_eq(buf, "up");
    health_format(HEALTH_DOWN, 1777629600, buf, sizeof buf);
    ck_assert_str_eq(buf, "down since 2026-05-01T10:00:00Z");
    health_format(HEALTH_DEGRADED, 1777629600, buf, sizeof buf);
    ck_assert_str_eq(buf, "degraded since 2026-05-01T10:00:00Z");
    ck_assert_str_eq(health_state_name(HEALTH_DEGRADED), "degraded");
}
END_TEST

static Suite *health_suite(void)
{
    Suite *s = suite_create("health");
    const TTest *tests[] = {test_down_after_fails, test_down_after_long_attempt,
                            test_probe, test_old_attempts, test_shared,
                            test_format, test_http_backend};

    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        TCase *tc = tcase_create("health");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, tests[i]);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    log_init("check_health", 0);
    int r = ck_run(health_suite());
    health_stop();
    return r;
}
