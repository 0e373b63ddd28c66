/* Unit tests for fs/daemon/ctl.c, the control socket server (protocol in
 * include/ic-ctl.h), driven through the socket as imgcache-pin would: a
 * real engine (ck-engine.h), ctl_start() on its cache_dir, a client that
 * sends request lines and reads the answer lines.
 *
 * What is checked is the protocol's promise: each request gets zero or
 * more informational lines and exactly one final "ok..." or "error\t...",
 * a malformed line is answered with a clear error and the connection
 * (and the server) go on serving. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../fs/engine/cache-priv.h" /* white-box: the engine's fields */
#include "ic-engine.h"
#include "ic-ctl.h"
#include "ic-log.h"
#include "ic-pin.h"

#include "ck-tmpdir.h"

CK_TMPDIR_FIXTURES("check_ctl")

#include "ck-engine.h"

struct client {
    int fd;
    char buf[1 << 16];
    size_t len;
};

struct server {
    struct ck_engine e;
    struct ctl *ctl;
};

static void srv_start(struct server *s)
{
    char path[PATH_MAX];
    ck_origin_write("a.img", 16 * CK_BS, 1, path, sizeof path);
    ck_engine_start(&s->e, NULL, "[template a.img]\norigin = %s\n", path);
    ck_assert_int_eq(ctl_start(s->e.c, s->e.cache_dir, &s->ctl), 0);
}

static void srv_stop(struct server *s)
{
    ck_assert_int_eq(ctl_stop(s->ctl), 0);
    ck_engine_stop(&s->e);
}

static void cl_open(struct server *s, struct client *k)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    (void)s; /* its cache_dir is tmpdir/cache: short (ck-tmpdir.h) */
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/cache/%s", tmpdir,
             CTL_SOCK_NAME);
    k->len = 0;
    k->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(k->fd, 0);
    ck_assert_int_eq(connect(k->fd, (struct sockaddr *)&sa, sizeof sa), 0);
}

static void cl_send(struct client *k, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(k->fd, p, n, MSG_NOSIGNAL);
        ck_assert_int_gt(w, 0);
        p += w;
        n -= (size_t)w;
    }
}

/* The next answer line (without '\n') into out; 0 at end of input.  Waits
 * 20 s at most (the server's own bound is CTL_IO_TIMEOUT_S). */
static int cl_line(struct client *k, char *out, size_t outlen)
{
    uint64_t end = mono_ms() + 20000;
    for (;;) {
        char *nl = memchr(k->buf, '\n', k->len);
        if (nl != NULL) {
            size_t n = (size_t)(nl - k->buf);
            ck_assert_uint_lt(n, outlen);
            memcpy(out, k->buf, n);
            out[n] = '\0';
            memmove(k->buf, nl + 1, k->len - n - 1);
            k->len -= n + 1;
            return 1;
        }
        ck_assert_msg(mono_ms() < end, "no answer line within 20 s");
        struct pollfd p = {.fd = k->fd, .events = POLLIN};
        if (poll(&p, 1, 1000) <= 0)
            continue;
        ck_assert_uint_lt(k->len, sizeof k->buf);
        ssize_t r = recv(k->fd, k->buf + k->len, sizeof k->buf - k->len, 0);
        if (r <= 0)
            return 0;
        k->len += (size_t)r;
    }
}

/* Send one request; collect every answer line up to and including the
 * final one, "|"-joined, into out. */
static void ask(struct client *k, const char *req, char *out, size_t outlen)
{
    char line[4096];
    size_t used = 0;
    cl_send(k, req, strlen(req));
    cl_send(k, "\n", 1);
    out[0] = '\0';
    for (;;) {
        ck_assert_msg(cl_line(k, line, sizeof line), "'%s': connection "
                      "closed before a final line", req);
        used += (size_t)snprintf(out + used, outlen - used, "%s%s",
                                 used ? "|" : "", line);
        if (strncmp(line, "ok", 2) == 0 || strncmp(line, "error\t", 6) == 0)
            return;
    }
}

#define ck_ask(k, req, want)                                                   \
    do {                                                                       \
        char got_[8192];                                                       \
        ask((k), (req), got_, sizeof got_);                                    \
        ck_assert_str_eq(got_, (want));                                        \
    } while (0)

/* pin, list, unpin and origins answer in the documented format, and what
 * they change is the engine's pin set. */
START_TEST(test_verbs)
{
    struct server s;
    struct client k;
    srv_start(&s);
    cl_open(&s, &k);
    ck_ask(&k, "list\ta.img", "ok");
    ck_ask(&k, "pin\ta.img\t0-8192", "ok\tpinned\t8192");
    ck_ask(&k, "pin\ta.img\t100+50,20000-20001", "ok\tpinned\t12288");
    ck_ask(&k, "list\ta.img",
           "pin\ta.img\t0\t8192\t8192\t0|pin\ta.img\t20000\t1\t4096\t0|ok");
    ck_ask(&k, "list", /* every template */
           "pin\ta.img\t0\t8192\t8192\t0|pin\ta.img\t20000\t1\t4096\t0|ok");
    ck_ask(&k, "unpin\ta.img\t4096-8192", "ok\tunpinned\t8192");
    /* Classes: a CLASS field or an item's prefix; a range pinned with a
     * new class moves to it (one request), a boot row has no class
     * field, an unpin with a class leaves other classes' ranges. */
    ck_ask(&k, "pin\ta.img\t20000-20001\tlow", "ok\tpinned\t8192");
    ck_ask(&k, "list\ta.img",
           "pin\ta.img\t0\t4096\t4096\t0|"
           "pin\ta.img\t20000\t1\t4096\t0\tlow|ok");
    ck_ask(&k, "pin\ta.img\thigh:0-4096", "ok\tpinned\t8192");
    ck_ask(&k, "list\ta.img",
           "pin\ta.img\t0\t4096\t4096\t0\thigh|"
           "pin\ta.img\t20000\t1\t4096\t0\tlow|ok");
    ck_ask(&k, "unpin\ta.img\t0-4096\tlow", "ok\tunpinned\t8192");
    ck_ask(&k, "unpin\ta.img\t0-4096", "ok\tunpinned\t4096");
    ck_ask(&k, "pin\ta.img\t0-1\tmedium",
           "error\tusage: pin|unpin TEMPLATE SPEC [boot|high|low]");
    ck_ask(&k, "origins", "tmpl\ta.img\tup\t0|ok");
    close(k.fd);
    srv_stop(&s);
}
END_TEST

/* Malformed requests: each gets one clear error line, and the same
 * connection then still answers. */
START_TEST(test_malformed)
{
    struct server s;
    struct client k;
    srv_start(&s);
    cl_open(&s, &k);
    ck_ask(&k, "bogus", "error\tunknown request 'bogus'");
    ck_ask(&k, "", "error\tunknown request ''");
#define PIN_USAGE "error\tusage: pin|unpin TEMPLATE SPEC [boot|high|low]"
    ck_ask(&k, "pin", PIN_USAGE);
    ck_ask(&k, "pin\ta.img", PIN_USAGE);
    ck_ask(&k, "pin\ta.img\t0-1\textra", PIN_USAGE);
    ck_ask(&k, "pin\ta.img\t0-1\tlow\textra", PIN_USAGE);
    ck_ask(&k, "pin\tnope.img\t0-1", "error\tno template 'nope.img'");
    ck_ask(&k, "pin\ta\x01" "b\t0-1", "error\tno template 'a?b'");
    ck_ask(&k, "pin\ta.img\tprofile:/etc/passwd",
           "error\tprofile: items are read by imgcache-pin, not the daemon; "
           "send their ranges");
    char got[1024];
    ask(&k, "pin\ta.img\t5-2", got, sizeof got);
    ck_assert_msg(strncmp(got, "error\t", 6) == 0 && strchr(got, '|') == NULL,
                  "a bad range: '%s'", got);
#define WARM_USAGE                                                             \
    "error\tusage: warm TEMPLATE PARALLEL (1..16) [RATE (bytes/s, 0 or "      \
    "from 64K to 1T) [boot|high|low]]"
    ck_ask(&k, "warm\ta.img\t99", WARM_USAGE);
    ck_ask(&k, "warm\ta.img", WARM_USAGE);
    ck_ask(&k, "warm\ta.img\t4\t1000", WARM_USAGE);
    ck_ask(&k, "warm\ta.img\t4\t8E", WARM_USAGE); /* past 1T/s */
    ck_ask(&k, "warm\ta.img\t4\tfast", WARM_USAGE);
    ck_ask(&k, "warm\ta.img\t4\t1M\tx", WARM_USAGE);
    ck_ask(&k, "warm\ta.img\t4\t0\tlow\textra", WARM_USAGE);
    ck_ask(&k, "record\ta.img\t0",
           "error\tusage: record TEMPLATE SECONDS (1..3600) [trace]");
    ck_ask(&k, "record\ta.img\t-5",
           "error\tusage: record TEMPLATE SECONDS (1..3600) [trace]");
    ck_ask(&k, "list\ta.img\tx", "error\tusage: list [TEMPLATE]");
    ck_ask(&k, "origins\tx", "error\tusage: origins");
    ck_ask(&k, "pin\ta.img\t0-4096", "ok\tpinned\t4096");
    ck_ask(&k, "list\ta.img\r", "pin\ta.img\t0\t4096\t4096\t0|ok"); /* CRLF */
    close(k.fd);
    srv_stop(&s);
}
END_TEST

/* A line longer than CTL_LINE_MAX is refused and its connection ended;
 * the server goes on serving new ones. */
START_TEST(test_long_line)
{
    struct server s;
    struct client k;
    char line[256];
    srv_start(&s);
    cl_open(&s, &k);
    size_t n = CTL_LINE_MAX + 4096;
    char *big = malloc(n);
    ck_assert_ptr_nonnull(big);
    memset(big, 'x', n);
    /* The server may stop reading (and close) before all of it is sent. */
    for (size_t off = 0; off < n;) {
        ssize_t w = send(k.fd, big + off, n - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    free(big);
    ck_assert(cl_line(&k, line, sizeof line));
    ck_assert_str_eq(line, "error\trequest longer than 1048576 bytes");
    ck_assert_int_eq(cl_line(&k, line, sizeof line), 0);
    close(k.fd);
    cl_open(&s, &k);
    ck_ask(&k, "list\ta.img", "ok");
    close(k.fd);
    srv_stop(&s);
}
END_TEST

/* warm fills every pinned block and ends with its total; list then shows
 * them present. */
START_TEST(test_warm)
{
    struct server s;
    struct client k;
    char got[4096];
    srv_start(&s);
    cl_open(&s, &k);
    ck_ask(&k, "pin\ta.img\t0-16384", "ok\tpinned\t16384");
    ask(&k, "warm\ta.img\t2", got, sizeof got);
    const char *last = strrchr(got, '|');
    ck_assert_str_eq(last ? last + 1 : got, "ok\twarm\t16384");
    ck_ask(&k, "list\ta.img", "pin\ta.img\t0\t16384\t16384\t16384|ok");
    struct gen *g = ck_gen(&s.e, "a.img");
    for (uint64_t b = 0; b < 4; b++)
        ck_assert(ck_cached(g, b));
    ck_assert(!ck_cached(g, 4));
    cache_gen_put(g);
    close(k.fd);
    srv_stop(&s);
}
END_TEST

/* warm with a class fills only that class's blocks, and its total is
 * that class's: boot 0-8K, low 8K-16K; a boot warm leaves the low blocks
 * missing and answers ok. */
START_TEST(test_warm_class)
{
    struct server s;
    struct client k;
    char got[4096];
    srv_start(&s);
    cl_open(&s, &k);
    ck_ask(&k, "pin\ta.img\t0-8192", "ok\tpinned\t8192");
    ck_ask(&k, "pin\ta.img\t8192-16384\tlow", "ok\tpinned\t16384");
    ask(&k, "warm\ta.img\t2\t0\tboot", got, sizeof got);
    const char *last = strrchr(got, '|');
    ck_assert_str_eq(last ? last + 1 : got, "ok\twarm\t8192");
    struct gen *g = ck_gen(&s.e, "a.img");
    ck_assert(ck_cached(g, 0) && ck_cached(g, 1));
    ck_assert(!ck_cached(g, 2) && !ck_cached(g, 3));
    ask(&k, "warm\ta.img\t2\t0\tlow", got, sizeof got);
    last = strrchr(got, '|');
    ck_assert_str_eq(last ? last + 1 : got, "ok\twarm\t8192");
    ck_assert(ck_cached(g, 2) && ck_cached(g, 3));
    cache_gen_put(g);
    close(k.fd);
    srv_stop(&s);
}
END_TEST

/* A request naming several classes is applied whole or not at all: with
 * the boot part over the quota, its low part is not pinned either. */
START_TEST(test_mixed_all_or_nothing)
{
    struct server s;
    struct client k;
    char got[1024];
    srv_start(&s);
    struct gen *g = ck_gen(&s.e, "a.img");
    __atomic_store_n(&g->t->quota, 8192, __ATOMIC_RELAXED);
    cache_gen_put(g);
    cl_open(&s, &k);
    ask(&k, "pin\ta.img\tlow:32768-40960,boot:0-16384", got, sizeof got);
    ck_assert_msg(strncmp(got, "error\tpin of template a.img refused",
                          strlen("error\tpin of template a.img refused")) ==
                      0, "got '%s'", got);
    ck_ask(&k, "list\ta.img", "ok");
    ck_ask(&k, "pin\ta.img\tlow:32768-40960,boot:0-8192",
           "ok\tpinned\t16384");
    ck_ask(&k, "list\ta.img", "pin\ta.img\t0\t8192\t8192\t0|"
                              "pin\ta.img\t32768\t8192\t8192\t0\tlow|ok");
    close(k.fd);
    srv_stop(&s);
}
END_TEST

/* record: the ranges read during the recording come back as range lines. */
START_TEST(test_record)
{
    struct server s;
    struct client k;
    char got[4096];
    srv_start(&s);
    cl_open(&s, &k);
    struct gen *g = ck_gen(&s.e, "a.img");
    cl_send(&k, "record\ta.img\t1\n", 15);
    /* Read once the recording runs (bounded: 5 s). */
    uint64_t end = mono_ms() + 5000;
    while (!__atomic_load_n(&g->t->recording, __ATOMIC_ACQUIRE) &&
           mono_ms() < end)
        usleep(1000);
    ck_assert(__atomic_load_n(&g->t->recording, __ATOMIC_ACQUIRE));
    ck_read_blk(g, 3, 1);
    size_t used = 0;
    got[0] = '\0';
    for (;;) {
        char line[256];
        ck_assert(cl_line(&k, line, sizeof line));
        used += (size_t)snprintf(got + used, sizeof got - used, "%s%s",
                                 used ? "|" : "", line);
        if (strncmp(line, "ok", 2) == 0 || strncmp(line, "error", 5) == 0)
            break;
    }
    ck_assert_str_eq(got, "range\t12288\t4096|ok");
    ck_ask(&k, "record\tnope\t1", "error\tno template 'nope'");
    cache_gen_put(g);
    close(k.fd);
    srv_stop(&s);
}
END_TEST

/* record ... trace: a header line, then every read in arrival order. */
START_TEST(test_record_trace)
{
    struct server s;
    struct client k;
    char got[4096];
    srv_start(&s);
    cl_open(&s, &k);
    struct gen *g = ck_gen(&s.e, "a.img");
    cl_send(&k, "record\ta.img\t1\ttrace\n", 21);
    uint64_t end = mono_ms() + 5000;
    while (!__atomic_load_n(&g->t->recording, __ATOMIC_ACQUIRE) &&
           mono_ms() < end)
        usleep(1000);
    ck_assert_int_eq(__atomic_load_n(&g->t->recording, __ATOMIC_ACQUIRE),
                     PIN_REC_TRACE);
    ck_read_blk(g, 3, 1);
    ck_read_blk(g, 1, 1);
    size_t used = 0;
    got[0] = '\0';
    for (;;) {
        char line[256];
        ck_assert(cl_line(&k, line, sizeof line));
        /* The times are the clock's: keep only "read" and off/len. */
        char *f = line;
        if (strncmp(line, "read\t", 5) == 0) {
            char *t = strchr(line + 5, '\t');
            ck_assert_ptr_nonnull(t);
            memmove(line + 5, t + 1, strlen(t + 1) + 1);
        }
        used += (size_t)snprintf(got + used, sizeof got - used, "%s%s",
                                 used ? "|" : "", f);
        if (strncmp(line, "ok", 2) == 0 || strncmp(line, "error", 5) == 0)
            break;
    }
    char want[256];
    snprintf(want, sizeof want,
             "trace\t%" PRIu64 "\t%u\t0|read\t12288\t4096|read\t4096\t4096|ok",
             g->info.size, (unsigned)g->bs);
    ck_assert_str_eq(got, want);
    ck_ask(&k, "record\ta.img\t1\tnope",
           "error\tusage: record TEMPLATE SECONDS (1..3600) [trace]");
    cache_gen_put(g);
    close(k.fd);
    srv_stop(&s);
}
END_TEST

static Suite *ctl_suite(void)
{
    const TTest *tests[] = {test_verbs, test_malformed, test_long_line,
                            test_warm, test_warm_class, test_mixed_all_or_nothing,
                            test_record, test_record_trace};
    return ck_suite("ctl", tests, CK_NTESTS(tests), setup, teardown, 60);
}

int main(void)
{
    log_init("check_ctl", 0);
    return ck_run(ctl_suite());
}
