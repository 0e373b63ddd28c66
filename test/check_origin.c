/* Unit tests for the origins (fs/origin/origin.c, fs/origin/origin-file.c,
 * fs/origin/origin-http.c; contract in include/ic-origin.h): URL masking and
 * joining, validator equality, the file backend (stat, reads, a change
 * seen, opening beneath a [directory]), and the HTTP backend against the
 * tiny server of ck-httpd.h (206 with Content-Range, 404, 412). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ic-conf.h"
#include "ic-health.h"
#include "ic-log.h"
#include "ic-origin.h"
#include "ic-util.h"

#include "ck-tmpdir.h"

CK_TMPDIR_FIXTURES("check_origin")

#include "ck-engine.h"
#include "ck-httpd.h"

START_TEST(validator_equality)
{
    /* File validators: the device number does not count (a share's
     * device number changes with each mount), the rest does. */
    ck_assert(origin_validator_eq("2a:1f:100:5:6", "2b:1f:100:5:6"));
    ck_assert(!origin_validator_eq("2a:1f:100:5:6", "2a:20:100:5:6"));
    ck_assert(!origin_validator_eq("2a:1f:100:5:6", "2a:1f:101:5:6"));
    ck_assert(!origin_validator_eq("2a:1f:100:5:6", "2a:1f:100:7:6"));
    ck_assert(!origin_validator_eq("2a:1f:100:5:6", "2a:1f:100:5:7"));
    /* HTTP ones compare whole: "etag:..." is not a device field. */
    ck_assert(origin_validator_eq("etag:\"a\"", "etag:\"a\""));
    ck_assert(!origin_validator_eq("etag:\"a\"", "etag:\"b\""));
    ck_assert(!origin_validator_eq("lm:x:y", "lm:z:y"));
    ck_assert(!origin_validator_eq("etag:\"a\"", "2a:1f:100:5:6"));
}
END_TEST

/* ------------------------------------------------------------- file */

/* stat gives size and a validator; a read returns exactly the bytes
 * asked; a read past the end is an error, not short data; a change of the
 * file is -ESTALE to a read that expects the old content; a missing file
 * is -ENOENT. */
START_TEST(file_origin)
{
    char path[PATH_MAX], err[256] = "";
    const uint64_t size = 3 * CK_BS + 10;
    ck_origin_write("a.img", size, 3, path, sizeof path);
    struct origin *o = origin_file_new(path, err, sizeof err);
    ck_assert_msg(o != NULL, "%s", err);
    struct origin_info info, again;
    uint64_t dl = mono_ms() + 10000;
    ck_assert_int_eq(origin_stat(o, &info, dl), 0);
    ck_assert_uint_eq(info.size, size);
    ck_assert(info.validator[0] != '\0');
    ck_assert_int_eq(origin_stat(o, &again, dl), 0);
    ck_assert(origin_validator_eq(info.validator, again.validator));

    char buf[2 * CK_BS];
    ck_assert_int_eq(origin_read(o, buf, 100, sizeof buf, &info, NULL, dl), 0);
    for (size_t i = 0; i < sizeof buf; i++)
        ck_assert_uint_eq((unsigned char)buf[i], ck_byte(100 + i, 3));
    ck_assert_int_lt(origin_read(o, buf, size - 5, 10, &info, NULL, dl), 0);

    /* Another version of the file: the validator moves, old reads fail. */
    int fd = open(path, O_WRONLY | O_APPEND);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "x", 1), 1);
    close(fd);
    ck_assert_int_eq(origin_stat(o, &again, dl), 0);
    ck_assert_uint_eq(again.size, size + 1);
    ck_assert(!origin_validator_eq(info.validator, again.validator));
    ck_assert_int_eq(origin_read(o, buf, 0, 100, &info, NULL, dl), -ESTALE);
    ck_assert_int_eq(origin_read(o, buf, 0, 100, &again, NULL, dl), 0);

    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(origin_stat(o, &again, dl), -ENOENT);
    origin_free(o);
}
END_TEST

/* Whether openat2(2) works here (not under valgrind, nor some seccomp
 * filters): without it, no symlink is ever followed. */
static int have_openat2(void)
{
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC};
    long fd = syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof how);
    if (fd >= 0)
        close((int)fd);
    return fd >= 0;
}

/* A [directory]'s files open beneath it: a plain file always; a symlink
 * only with follow, and then only when it resolves inside.  (Names are
 * one component, valid template names: no "..", no '/'.) */
START_TEST(file_beneath)
{
    char dir[96], p[PATH_MAX], err[256] = ""; /* tmpdir is short */
    ck_origin_write("f.img", 100, 1, p, sizeof p);
    snprintf(dir, sizeof dir, "%s/origin", tmpdir);
    snprintf(p, sizeof p, "%s/in.img", dir);
    ck_assert_int_eq(symlink("f.img", p), 0);
    snprintf(p, sizeof p, "%s/out.img", dir);
    ck_assert_int_eq(symlink("../imgcache.conf", p), 0);
    snprintf(p, sizeof p, "%s/imgcache.conf", tmpdir); /* outside dir */
    close(open(p, O_WRONLY | O_CREAT, 0600));
    int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(dfd, 0);

    int fd = origin_file_open_beneath(dfd, "f.img", O_RDONLY, 0);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(origin_file_open_beneath(dfd, "in.img", O_RDONLY, 0),
                     -ELOOP);
    ck_assert_int_eq(origin_file_open_beneath(dfd, "in.img", O_PATH, 0),
                     -ELOOP);
    ck_assert_int_lt(origin_file_open_beneath(dfd, "out.img", O_RDONLY, 1),
                     0);
    if (have_openat2()) {
        fd = origin_file_open_beneath(dfd, "in.img", O_RDONLY, 1);
        ck_assert_int_ge(fd, 0);
        close(fd);
        ck_assert_int_eq(origin_file_open_beneath(dfd, "out.img", O_RDONLY,
                                                  1), -ELOOP);
    }
    close(dfd);

    /* The same rule through an origin of the directory. */
    struct origin_info info;
    uint64_t dl = mono_ms() + 10000;
    struct origin *o = origin_file_new_in_dir(dir, "in.img", 0, err,
                                              sizeof err);
    ck_assert_msg(o != NULL, "%s", err);
    ck_assert_int_eq(origin_stat(o, &info, dl), -ELOOP);
    origin_free(o);
    o = origin_file_new_in_dir(dir, "f.img", 0, err, sizeof err);
    ck_assert_msg(o != NULL, "%s", err);
    ck_assert_int_eq(origin_stat(o, &info, dl), 0);
    ck_assert_uint_eq(info.size, 100);
    origin_free(o);
}
END_TEST

/* ------------------------------------------------------------- http */

static struct conf_net test_net(void)
{
    return (struct conf_net){.origin_timeout_ms = 10000,
                             .connect_timeout_ms = 5000,
                             .revalidate_ms = 60000,
                             .max_connections = 2};
}

static struct origin *http_origin(struct ck_httpd *h, const char *path)
{
    char url[128], err[256] = "";
    struct conf_net net = test_net();
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", h->port, path);
    struct origin *o = origin_http_new(url, &net, err, sizeof err);
    ck_assert_msg(o != NULL, "%s", err);
    return o;
}

/* HEAD gives size and the ETag; a read is one Range GET answered 206 with
 * the range asked, and its bytes are the server's. */
START_TEST(http_read)
{
    struct ck_httpd h;
    ck_httpd_start(&h, 5 * CK_BS, 4);
    struct origin *o = http_origin(&h, "/a.img");
    struct origin_info info;
    uint64_t dl = mono_ms() + 10000;
    ck_assert_int_eq(origin_stat(o, &info, dl), 0);
    ck_assert_uint_eq(info.size, 5 * CK_BS);
    ck_assert_str_eq(info.validator, "etag:\"v1\"");
    char buf[CK_BS];
    ck_assert_int_eq(origin_read(o, buf, 100, sizeof buf, &info, NULL, dl), 0);
    for (size_t i = 0; i < sizeof buf; i++)
        ck_assert_uint_eq((unsigned char)buf[i], ck_byte(100 + i, 4));
    ck_assert_int_eq(ck_httpd_count(&h, &h.gets), 1);
    ck_assert_str_eq(h.ranges[0], "bytes=100-4195");
    origin_free(o);
    ck_httpd_stop(&h);
}
END_TEST

/* 404 is "gone" (-ENOENT), to a HEAD and to a read. */
START_TEST(http_404)
{
    struct ck_httpd h;
    ck_httpd_start(&h, 5 * CK_BS, 4);
    struct origin *o = http_origin(&h, "/nothing.img");
    struct origin_info info = {.size = 5 * CK_BS};
    uint64_t dl = mono_ms() + 10000;
    ck_assert_int_eq(origin_stat(o, &info, dl), -ENOENT);
    snprintf(info.validator, sizeof info.validator, "etag:\"v1\"");
    info.size = 5 * CK_BS;
    char buf[100];
    ck_assert_int_eq(origin_read(o, buf, 0, sizeof buf, &info, NULL, dl),
                     -ENOENT);
    origin_free(o);
    ck_httpd_stop(&h);
}
END_TEST

/* The server's content changed (another ETag): a read conditional on the
 * old one gets 412, which is -ESTALE; the next stat gives the new ETag. */
START_TEST(http_412)
{
    struct ck_httpd h;
    ck_httpd_start(&h, 5 * CK_BS, 4);
    struct origin *o = http_origin(&h, "/a.img");
    struct origin_info info;
    uint64_t dl = mono_ms() + 10000;
    ck_assert_int_eq(origin_stat(o, &info, dl), 0);
    pthread_mutex_lock(&h.lock);
    snprintf(h.etag, sizeof h.etag, "\"v2\"");
    pthread_mutex_unlock(&h.lock);
    char buf[100];
    ck_assert_int_eq(origin_read(o, buf, 0, sizeof buf, &info, NULL, dl),
                     -ESTALE);
    ck_assert_int_ge(ck_httpd_count(&h, &h.answered412), 1);
    ck_assert_int_eq(origin_stat(o, &info, dl), 0);
    ck_assert_str_eq(info.validator, "etag:\"v2\"");
    ck_assert_int_eq(origin_read(o, buf, 0, sizeof buf, &info, NULL, dl), 0);
    origin_free(o);
    ck_httpd_stop(&h);
}
END_TEST

static Suite *origin_suite(void)
{
    const TTest *tests[] = {validator_equality, file_origin, file_beneath,
                            http_read,          http_404,    http_412};
    return ck_suite("origin", tests, CK_NTESTS(tests), setup, teardown, 60);
}

int main(void)
{
    log_init("check_origin", 0);
    ck_httpd_no_proxy();
    int r = ck_run(origin_suite());
    health_stop();
    return r;
}
