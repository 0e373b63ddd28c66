/* Unit tests for fs/ctlproto.c: the control socket's wire format (fields,
 * numbers, sanitizing, answers, the socket address) and the line reader's
 * bounds (line length, per-line deadline, partial lines, end of input). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ck-tmpdir.h"
#include "ic-ctlproto.h"
#include "ic-util.h"

CK_TMPDIR_FIXTURES("check_ctlproto")

/* ------------------------------------------------------------ fields */

START_TEST(split_fields)
{
    char line[64], *f[4];

    strcpy(line, "pin\tdisk.img\t0-16M");
    ck_assert_int_eq(ctlproto_split(line, f, 4), 3);
    ck_assert_str_eq(f[0], "pin");
    ck_assert_str_eq(f[1], "disk.img");
    ck_assert_str_eq(f[2], "0-16M");

    /* The last field keeps further TABs: a verb sees too many fields. */
    strcpy(line, "a\tb\tc\td\te");
    ck_assert_int_eq(ctlproto_split(line, f, 3), 3);
    ck_assert_str_eq(f[2], "c\td\te");

    strcpy(line, "");
    ck_assert_int_eq(ctlproto_split(line, f, 4), 1);
    ck_assert_str_eq(f[0], "");

    strcpy(line, "list\t");
    ck_assert_int_eq(ctlproto_split(line, f, 4), 2);
    ck_assert_str_eq(f[0], "list");
    ck_assert_str_eq(f[1], "");

    strcpy(line, "one\ttwo");
    ck_assert_int_eq(ctlproto_split(line, f, 1), 1);
    ck_assert_str_eq(f[0], "one\ttwo");
}
END_TEST

START_TEST(uint_bounds)
{
    static const char *const bad[] = {
        "", "+1", "-1", " 1", "1 ", "0x10", "1e3", "17", "x",
        "99999999999999999999999",
    };
    unsigned v = 0;

    ck_assert_int_eq(ctlproto_uint("1", 1, 16, &v), 0);
    ck_assert_uint_eq(v, 1);
    ck_assert_int_eq(ctlproto_uint("16", 1, 16, &v), 0);
    ck_assert_uint_eq(v, 16);
    ck_assert_int_eq(ctlproto_uint("007", 1, 16, &v), 0);
    ck_assert_uint_eq(v, 7);
    ck_assert_int_eq(ctlproto_uint("0", 1, 16, &v), -EINVAL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 42;
        ck_assert_msg(ctlproto_uint(bad[i], 1, 16, &v) == -EINVAL,
                      "'%s' taken", bad[i]);
        ck_assert_uint_eq(v, 42); /* untouched on failure */
    }
}
END_TEST

START_TEST(sanitize_controls)
{
    char s[] = "a\nb\rc\td\x7f" "e\x01" "f\x1b[K";

    ctlproto_sanitize(s);
    ck_assert_str_eq(s, "a?b?c\td?e?f?[K");
}
END_TEST

START_TEST(answer_kinds)
{
    static const struct {
        const char *line;
        enum ctl_answer want;
    } cases[] = {
        {"ok", CTL_ANSWER_OK},         {"ok\tpinned\t42", CTL_ANSWER_OK},
        {"error\tno template", CTL_ANSWER_ERROR},
        {"okay", CTL_ANSWER_INFO},     {"progress\t1\t2", CTL_ANSWER_INFO},
        {"errors", CTL_ANSWER_INFO},   {"", CTL_ANSWER_INFO},
    };
    char line[64], *f[4];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(line, sizeof line, "%s", cases[i].line);
        int nf = ctlproto_split(line, f, 4);
        ck_assert_msg(ctlproto_answer(f, nf) == cases[i].want, "'%s'",
                      cases[i].line);
    }
}
END_TEST

/* ------------------------------------------------------------ socket */

START_TEST(addr_length)
{
    struct sockaddr_un sa;
    char dir[sizeof sa.sun_path + 8];
    /* dir + "/ctl.sock" + NUL must fit in sun_path. */
    size_t fits = sizeof sa.sun_path - 1 - strlen("/" CTL_SOCK_NAME);

    ck_assert_int_eq(ctlproto_addr("/var/cache/imgcache", &sa), 0);
    ck_assert_int_eq(sa.sun_family, AF_UNIX);
    ck_assert_str_eq(sa.sun_path, "/var/cache/imgcache/ctl.sock");

    memset(dir, 'd', fits);
    dir[0] = '/';
    dir[fits] = '\0';
    ck_assert_int_eq(ctlproto_addr(dir, &sa), 0);
    ck_assert_uint_eq(strlen(sa.sun_path), sizeof sa.sun_path - 1);
    dir[fits] = 'd';
    dir[fits + 1] = '\0';
    ck_assert_int_eq(ctlproto_addr(dir, &sa), -ENAMETOOLONG);
}
END_TEST

START_TEST(connect_states)
{
    struct sockaddr_un sa;

    /* No socket file: no daemon. */
    ck_assert_int_eq(ctlproto_connect(tmpdir), -ENOENT);

    ck_assert_int_eq(ctlproto_addr(tmpdir, &sa), 0);
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(l, 0);
    ck_assert_int_eq(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(l, 1), 0);
    int fd = ctlproto_connect(tmpdir);
    ck_assert_int_ge(fd, 0);
    close(fd);

    /* The file of a daemon that died: refused, not hung. */
    close(l);
    ck_assert_int_eq(ctlproto_connect(tmpdir), -ECONNREFUSED);
}
END_TEST

/* ------------------------------------------------------------ reader */

static int sp[2]; /* sp[0] read by the reader, sp[1] written by the test */

static void pair_open(void)
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
}

static void put(const char *s)
{
    ck_assert_int_eq(ctlproto_send(sp[1], s, strlen(s)), 0);
}

START_TEST(reader_lines)
{
    struct ctl_reader r;
    char *line;

    pair_open();
    ctl_reader_init(&r, sp[0], 64);
    put("first\nsecond\r\n\nlast\tfield\n");
    ck_assert_int_eq(ctl_reader_line(&r, 1000, &line), 1);
    ck_assert_str_eq(line, "first");
    ck_assert_int_eq(ctl_reader_line(&r, 1000, &line), 1);
    ck_assert_str_eq(line, "second"); /* the '\r' is dropped */
    ck_assert_int_eq(ctl_reader_line(&r, 1000, &line), 1);
    ck_assert_str_eq(line, "");
    ck_assert_int_eq(ctl_reader_line(&r, 1000, &line), 1);
    ck_assert_str_eq(line, "last\tfield");
    /* An incomplete last line is not a line. */
    put("cut off");
    close(sp[1]);
    ck_assert_int_eq(ctl_reader_line(&r, 1000, &line), 0);
    ctl_reader_free(&r);
    close(sp[0]);
}
END_TEST

/* A partial line waits in the buffer across a timeout and completes. */
START_TEST(reader_partial)
{
    struct ctl_reader r;
    char *line;

    pair_open();
    ctl_reader_init(&r, sp[0], 64);
    put("hal");
    ck_assert_int_eq(ctl_reader_line(&r, 50, &line), -ETIMEDOUT);
    put("f a li");
    ck_assert_int_eq(ctl_reader_line(&r, 50, &line), -ETIMEDOUT);
    put("ne\nnext\n");
    ck_assert_int_eq(ctl_reader_line(&r, 1000, &line), 1);
    ck_assert_str_eq(line, "half a line");
    ck_assert_int_eq(ctl_reader_line(&r, 1000, &line), 1);
    ck_assert_str_eq(line, "next");
    ctl_reader_free(&r);
    close(sp[0]);
    close(sp[1]);
}
END_TEST

/* max counts the '\n': a line of max - 1 bytes fits, one byte more does
 * not, and is refused without waiting for the rest. */
START_TEST(reader_max)
{
    struct ctl_reader r;
    char *line, buf[32];

    pair_open();
    ctl_reader_init(&r, sp[0], 16);
    memset(buf, 'x', 15);
    buf[15] = '\n';
    buf[16] = '\0';
    put(buf);
    ck_assert_int_eq(ctl_reader_line(&r, 1000, &line), 1);
    ck_assert_uint_eq(strlen(line), 15);
    buf[15] = 'x';
    put(buf); /* 16 bytes without a '\n' */
    uint64_t t0 = mono_ms();
    ck_assert_int_eq(ctl_reader_line(&r, 5000, &line), -EMSGSIZE);
    ck_assert_uint_lt(mono_ms() - t0, 2500);
    ctl_reader_free(&r);
    close(sp[0]);
    close(sp[1]);
}
END_TEST

/* Lines longer than the first allocation, and many lines in one read. */
START_TEST(reader_grows)
{
    enum { LONG = 100000, MANY = 2000 };
    struct ctl_reader r;
    char *line, *big = malloc(LONG + 2);

    ck_assert_ptr_nonnull(big);
    pair_open();
    ctl_reader_init(&r, sp[0], CTL_LINE_MAX);
    for (size_t i = 0; i < LONG; i++)
        big[i] = (char)('a' + i % 26);
    big[LONG] = '\n';
    big[LONG + 1] = '\0';
    /* Written by a child: more than the socket buffer may hold. */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char l[32];
        ctlproto_send(sp[1], big, LONG + 1);
        for (int i = 0; i < MANY; i++) {
            snprintf(l, sizeof l, "line %d\n", i);
            ctlproto_send(sp[1], l, strlen(l));
        }
        _exit(0);
    }
    close(sp[1]);
    ck_assert_int_eq(ctl_reader_line(&r, 10000, &line), 1);
    ck_assert_uint_eq(strlen(line), LONG);
    big[LONG] = '\0';
    ck_assert(strcmp(line, big) == 0);
    for (int i = 0; i < MANY; i++) {
        char want[32];
        snprintf(want, sizeof want, "line %d", i);
        ck_assert_int_eq(ctl_reader_line(&r, 10000, &line), 1);
        ck_assert_str_eq(line, want);
    }
    ck_assert_int_eq(ctl_reader_line(&r, 10000, &line), 0);
    ctl_reader_free(&r);
    close(sp[0]);
    free(big);
}
END_TEST

static void *trickle(void *arg)
{
    (void)arg;
    /* A byte every 20 ms: 100 bytes take 2 s, never a '\n'. */
    for (int i = 0; i < 100; i++) {
        if (ctlproto_send(sp[1], "t", 1) != 0)
            break;
        usleep(20000);
    }
    return NULL;
}

/* The deadline is per line, not per recv: a peer that keeps sending
 * without ever ending the line is cut off at the deadline. */
START_TEST(reader_deadline_per_line)
{
    struct ctl_reader r;
    pthread_t th;
    char *line;

    pair_open();
    ctl_reader_init(&r, sp[0], 4096);
    ck_assert_int_eq(pthread_create(&th, NULL, trickle, NULL), 0);
    uint64_t t0 = mono_ms();
    ck_assert_int_eq(ctl_reader_line(&r, 300, &line), -ETIMEDOUT);
    uint64_t took = mono_ms() - t0;
    ck_assert_uint_ge(took, 300);
    ck_assert_uint_lt(took, 1500); /* not the 2 s of the whole trickle */
    shutdown(sp[1], SHUT_RDWR);
    pthread_join(th, NULL);
    ctl_reader_free(&r);
    close(sp[0]);
    close(sp[1]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ctlproto");
    TCase *tc = tcase_create("format");
    tcase_add_test(tc, split_fields);
    tcase_add_test(tc, uint_bounds);
    tcase_add_test(tc, sanitize_controls);
    tcase_add_test(tc, answer_kinds);
    tcase_add_test(tc, addr_length);
    suite_add_tcase(s, tc);

    tc = tcase_create("connect");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_add_test(tc, connect_states);
    suite_add_tcase(s, tc);

    tc = tcase_create("reader");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, reader_lines);
    tcase_add_test(tc, reader_partial);
    tcase_add_test(tc, reader_max);
    tcase_add_test(tc, reader_grows);
    tcase_add_test(tc, reader_deadline_per_line);
    suite_add_tcase(s, tc);
    return ck_run(s);
}
