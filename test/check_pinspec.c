/* Unit tests for fs/config/pinspec.c: pin specs, boot profiles, range sets. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ic-pinspec.h"

static char err[256];

/* ------------------------------------------------------------ pin specs */

/* Parse a spec that must fail with -EINVAL and a message containing want. */
static void spec_fails(const char *spec, const char *want)
{
    struct pin_item *it = (struct pin_item *)1;
    size_t n = 99;

    err[0] = '\0';
    ck_assert_int_eq(pinspec_parse(spec, &it, &n, err, sizeof err), -EINVAL);
    ck_assert_msg(strstr(err, want) != NULL, "spec '%s': got '%s', want '%s'",
                  spec, err, want);
    ck_assert_ptr_null(it);
    ck_assert_uint_eq(n, 0);
}

static void check_range(const struct pin_item *it, uint64_t off, uint64_t len)
{
    ck_assert_int_eq(it->kind, PIN_RANGE);
    ck_assert_uint_eq(it->off, off);
    ck_assert_uint_eq(it->len, len);
    ck_assert_ptr_null(it->path);
}

START_TEST(spec_ranges)
{
    struct pin_item *it;
    size_t n;

    ck_assert_int_eq(pinspec_parse("0-16M", &it, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 1);
    check_range(&it[0], 0, 16u << 20);
    pinspec_free(it, n);

    ck_assert_int_eq(pinspec_parse("1G+64K,4096+4096,10-11", &it, &n, err,
                                   sizeof err),
                     0);
    ck_assert_uint_eq(n, 3);
    check_range(&it[0], 1ull << 30, 65536);
    check_range(&it[1], 4096, 4096);
    check_range(&it[2], 10, 1);
    pinspec_free(it, n);

    /* Blanks around items and around the operator are ignored. */
    ck_assert_int_eq(pinspec_parse(" 1M - 2M ,\t3M + 1K ", &it, &n, err,
                                   sizeof err),
                     0);
    ck_assert_uint_eq(n, 2);
    check_range(&it[0], 1u << 20, 1u << 20);
    check_range(&it[1], 3u << 20, 1024);
    pinspec_free(it, n);
}
END_TEST

START_TEST(spec_mixture)
{
    struct pin_item *it;
    size_t n;
    const char *spec = "0-16M, 1G+64K, profile:/etc/imgcache/ubuntu.boot,"
                       "  qcow2-metadata  , profile: /srv/my boot.prof ";

    ck_assert_int_eq(pinspec_parse(spec, &it, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 5);
    check_range(&it[0], 0, 16u << 20);
    check_range(&it[1], 1ull << 30, 65536);
    ck_assert_int_eq(it[2].kind, PIN_PROFILE);
    ck_assert_str_eq(it[2].path, "/etc/imgcache/ubuntu.boot");
    ck_assert_int_eq(it[3].kind, PIN_QCOW2);
    ck_assert_ptr_null(it[3].path);
    ck_assert_int_eq(it[4].kind, PIN_PROFILE);
    ck_assert_str_eq(it[4].path, "/srv/my boot.prof"); /* inner blank kept */
    pinspec_free(it, n);
}
END_TEST

/* A CLASS: prefix on any item; none is PIN_NONE (the caller's default);
 * "profile:" is not a class. */
START_TEST(spec_classes)
{
    struct pin_item *it;
    size_t n;
    const char *spec = "low:0-16M, high: profile:/p/a.boot, boot:qcow2-metadata,"
                       " 1G+64K, profile:/p/b";

    ck_assert_int_eq(pinspec_parse(spec, &it, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 5);
    check_range(&it[0], 0, 16u << 20);
    ck_assert_int_eq(it[0].cls, PIN_LOW);
    ck_assert_int_eq(it[1].kind, PIN_PROFILE);
    ck_assert_str_eq(it[1].path, "/p/a.boot");
    ck_assert_int_eq(it[1].cls, PIN_HIGH);
    ck_assert_int_eq(it[2].kind, PIN_QCOW2);
    ck_assert_int_eq(it[2].cls, PIN_BOOT);
    ck_assert_int_eq(it[3].cls, PIN_NONE);
    ck_assert_int_eq(it[4].cls, PIN_NONE);
    ck_assert_str_eq(it[4].path, "/p/b");
    pinspec_free(it, n);
    ck_assert_str_eq(pin_class_name(PIN_HIGH), "high");
    ck_assert_str_eq(pin_class_name(PIN_NONE), "none");
    ck_assert_int_eq(pin_class_parse("boot", 4), PIN_BOOT);
    ck_assert_int_eq(pin_class_parse("Boot", 4), -EINVAL);
    ck_assert_int_eq(pin_class_parse("bo", 2), -EINVAL);
    spec_fails("medium:0-1M", "bad pin item 'medium:0-1M': unknown pin class");
    spec_fails("low:", "empty item after its class");
    spec_fails("low:high:0-1M", "unknown item");
}
END_TEST

START_TEST(spec_empty)
{
    struct pin_item *it = (struct pin_item *)1;
    size_t n = 7;

    ck_assert_int_eq(pinspec_parse("", &it, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(it);
    ck_assert_int_eq(pinspec_parse(" \t ", &it, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 0);
    pinspec_free(it, n); /* NULL is fine */
}
END_TEST

START_TEST(spec_errors)
{
    spec_fails("0-1M,,qcow2-metadata", "bad pin item '': empty item");
    spec_fails("0-1M,", "bad pin item '': empty item");
    spec_fails(",0-1M", "empty item");
    spec_fails("5-3", "bad pin item '5-3': end must be greater than start");
    spec_fails("5-5", "end must be greater than start");
    spec_fails("1X-2", "bad pin item '1X-2': bad size '1X'");
    spec_fails("1-2Q", "bad size '2Q'");
    spec_fails("1-", "bad size ''");
    spec_fails("1M+0", "length must not be zero");
    spec_fails("8E+8E", "range ends past 2^64");
    spec_fails("99999999999T-1", "too large");
    spec_fails("16M", "bad pin item '16M': expected START-END or "
                      "START+LENGTH");
    spec_fails("profile:", "bad pin item 'profile:': empty path");
    spec_fails("profile:   ", "empty path");
    spec_fails("qcow2", "bad pin item 'qcow2': unknown item");
    spec_fails("everything", "unknown item");
    spec_fails("qcow2-metadata-x", "unknown item");
    spec_fails("QCOW2-METADATA", "unknown item");
    spec_fails("0-1M, bogus", "bad pin item 'bogus'");
}
END_TEST

/* ------------------------------------------------------------ profiles */

static void profile_fails(const char *text, const char *want)
{
    struct byte_range *r = (struct byte_range *)1;
    size_t n = 99;

    err[0] = '\0';
    ck_assert_int_eq(profile_parse(text, strlen(text), "boot.prof", &r, &n,
                                   err, sizeof err),
                     -EINVAL);
    ck_assert_msg(strstr(err, want) != NULL, "got '%s', want '%s'", err,
                  want);
    ck_assert_ptr_null(r);
    ck_assert_uint_eq(n, 0);
}

START_TEST(profile_formats)
{
    const char text[] = "# imgcache boot profile\n"
                        "\n"
                        "0 4096\n"
                        "  1M   64K   # trailing comment\n"
                        "2M-3M\r\n"
                        "\t#indented comment\n"
                        "4G+1\n"
                        "   \r\n"
                        "8192\t512"; /* no final newline */
    struct byte_range *r;
    size_t n;

    ck_assert_int_eq(profile_parse(text, strlen(text), "p", &r, &n, err,
                                   sizeof err),
                     0);
    ck_assert_uint_eq(n, 5);
    ck_assert_uint_eq(r[0].off, 0);
    ck_assert_uint_eq(r[0].len, 4096);
    ck_assert_uint_eq(r[1].off, 1u << 20);
    ck_assert_uint_eq(r[1].len, 65536);
    ck_assert_uint_eq(r[2].off, 2u << 20);
    ck_assert_uint_eq(r[2].len, 1u << 20);
    ck_assert_uint_eq(r[3].off, 4ull << 30);
    ck_assert_uint_eq(r[3].len, 1);
    ck_assert_uint_eq(r[4].off, 8192);
    ck_assert_uint_eq(r[4].len, 512);
    free(r);

    /* Comments only: no ranges, no allocation. */
    ck_assert_int_eq(profile_parse("# x\n\n", 5, "p", &r, &n, err, sizeof err),
                     0);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(r);
}
END_TEST

START_TEST(profile_not_nul_terminated)
{
    /* Only len bytes count: the "9" after them must not be seen. */
    const char text[] = "0 4096\n1 2\n9";
    struct byte_range *r;
    size_t n;

    ck_assert_int_eq(profile_parse(text, 11, "p", &r, &n, err, sizeof err),
                     0);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(r[1].off, 1);
    ck_assert_uint_eq(r[1].len, 2);
    free(r);

    /* A NUL byte inside a line is an error, not an early end. */
    const char nul[] = "0 4096\n1\0002\n";
    ck_assert_int_eq(profile_parse(nul, sizeof nul - 1, "p", &r, &n, err,
                                   sizeof err),
                     -EINVAL);
    ck_assert_msg(strstr(err, "p:2:") != NULL, "%s", err);
}
END_TEST

START_TEST(profile_errors)
{
    profile_fails("0 4096\nfoo bar\n", "boot.prof:2: bad size 'foo'");
    profile_fails("0 4096\r\n\r\n# c\r\n5-3\r\n",
                  "boot.prof:4: end must be greater than start");
    profile_fails("4096\n", "boot.prof:1: expected 'OFFSET LENGTH' or "
                            "'START-END'");
    profile_fails("1 2 3\n", "boot.prof:1: bad size '2 3'");
    profile_fails("\n\n\n1M 0\n", "boot.prof:4: length must not be zero");
    profile_fails("8E 8E\n", "boot.prof:1: range ends past 2^64");
    profile_fails("0 1X", "boot.prof:1: bad size '1X'");
}
END_TEST

START_TEST(profile_line_limit)
{
    size_t lines = PROFILE_MAX_LINES + 1;
    char *text = malloc(lines);
    struct byte_range *r;
    size_t n;

    ck_assert_ptr_nonnull(text);
    memset(text, '\n', lines);
    ck_assert_int_eq(profile_parse(text, lines - 1, "p", &r, &n, err,
                                   sizeof err),
                     0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(profile_parse(text, lines, "p", &r, &n, err, sizeof err),
                     -EINVAL);
    ck_assert_msg(strstr(err, "p:1000001: more than 1000000 lines") != NULL,
                  "%s", err);
    free(text);
}
END_TEST

START_TEST(profile_round_trip)
{
    struct byte_range in[] = {
        {0, 4096}, {1u << 20, 65536}, {123456789, 1}, {UINT64_MAX - 10, 10},
    };
    size_t nin = sizeof in / sizeof in[0];
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(profile_write(f, in, nin), 0);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_msg(strncmp(buf, "# imgcache boot profile\n0 4096\n", 31) == 0,
                  "%s", buf);

    struct byte_range *out;
    size_t n;
    ck_assert_int_eq(profile_parse(buf, len, "mem", &out, &n, err, sizeof err),
                     0);
    ck_assert_uint_eq(n, nin);
    for (size_t i = 0; i < nin; i++) {
        ck_assert_uint_eq(out[i].off, in[i].off);
        ck_assert_uint_eq(out[i].len, in[i].len);
    }
    free(out);
    free(buf);
}
END_TEST

START_TEST(profile_load_file)
{
    char path[] = "/tmp/check_pinspec.XXXXXX";
    int fd = mkstemp(path);
    struct byte_range *r;
    size_t n;

    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    struct byte_range in[] = {{512, 512}, {1u << 30, 1u << 20}};
    ck_assert_int_eq(profile_write(f, in, 2), 0);
    fputs("oops\n", f);
    ck_assert_int_eq(fclose(f), 0);

    ck_assert_int_eq(profile_load(path, &r, &n, err, sizeof err), -EINVAL);
    char want[128];
    snprintf(want, sizeof want, "%s:4: expected", path);
    ck_assert_msg(strstr(err, want) != NULL, "%s", err);

    ck_assert_int_eq(truncate(path, 0), 0);
    f = fopen(path, "w");
    ck_assert_int_eq(profile_write(f, in, 2), 0);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(profile_load(path, &r, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(r[1].off, 1u << 30);
    free(r);
    unlink(path);

    ck_assert_int_eq(profile_load(path, &r, &n, err, sizeof err), -ENOENT);
    ck_assert_msg(strstr(err, path) != NULL, "%s", err);
    ck_assert_int_eq(profile_load("/", &r, &n, err, sizeof err), -EISDIR);
}
END_TEST

START_TEST(profile_load_too_big)
{
    char path[] = "/tmp/check_pinspec.XXXXXX";
    int fd = mkstemp(path);
    struct byte_range *r;
    size_t n;

    ck_assert_int_ge(fd, 0);
    /* Sparse: one byte past the cap costs no disk space. */
    ck_assert_int_eq(ftruncate(fd, (off_t)PROFILE_MAX_BYTES + 1), 0);
    close(fd);
    ck_assert_int_eq(profile_load(path, &r, &n, err, sizeof err), -EFBIG);
    ck_assert_msg(strstr(err, "larger than 64 MiB") != NULL, "%s", err);
    unlink(path);
}
END_TEST

/* ------------------------------------------------------------ range sets */

START_TEST(normalize_merges)
{
    struct byte_range r[] = {
        {100, 10}, {0, 10},  {10, 5},   /* adjacent to [0,10) */
        {50, 0},                        /* empty: dropped */
        {105, 20},                      /* overlaps [100,110) */
        {200, 10}, {202, 3},            /* contained */
        {300, 1},  {UINT64_MAX - 5, 100}, /* end clamped */
    };
    size_t n = sizeof r / sizeof r[0];

    ranges_normalize(r, &n);
    ck_assert_uint_eq(n, 5);
    ck_assert_uint_eq(r[0].off, 0);
    ck_assert_uint_eq(r[0].len, 15);
    ck_assert_uint_eq(r[1].off, 100);
    ck_assert_uint_eq(r[1].len, 25);
    ck_assert_uint_eq(r[2].off, 200);
    ck_assert_uint_eq(r[2].len, 10);
    ck_assert_uint_eq(r[3].off, 300);
    ck_assert_uint_eq(r[3].len, 1);
    ck_assert_uint_eq(r[4].off, UINT64_MAX - 5);
    ck_assert_uint_eq(r[4].len, 5);

    size_t zero = 0;
    ranges_normalize(r, &zero);
    ck_assert_uint_eq(zero, 0);
    struct byte_range e[] = {{5, 0}, {7, 0}};
    size_t ne = 2;
    ranges_normalize(e, &ne);
    ck_assert_uint_eq(ne, 0);
}
END_TEST

START_TEST(block_counting)
{
    const uint32_t bs = 4096;
    const uint64_t size = 10 * 4096 + 100; /* 11 blocks, last one short */
    struct byte_range r[] = {
        {0, 1},          /* block 0 */
        {4000, 200},     /* blocks 0 and 1: block 0 counted once */
        {3 * 4096, 4096}, /* block 3 exactly */
        {5 * 4096 - 1, 2}, /* blocks 4 and 5 */
        {5 * 4096 + 10, 1}, /* block 5 again */
    };

    ck_assert_uint_eq(ranges_block_count(r, 5, bs, size), 5);
    /* The short last block, and a range running past EOF clipped to it. */
    struct byte_range tail[] = {{10 * 4096 + 50, 1u << 20}};
    ck_assert_uint_eq(ranges_block_count(tail, 1, bs, size), 1);
    struct byte_range across[] = {{9 * 4096, 1ull << 40}};
    ck_assert_uint_eq(ranges_block_count(across, 1, bs, size), 2);
    /* Entirely past EOF, empty, or at EOF exactly: nothing. */
    struct byte_range past[] = {{size, 10}, {size + 5000, 1}, {0, 0}};
    ck_assert_uint_eq(ranges_block_count(past, 3, bs, size), 0);
    /* Whole file, however it is described. */
    struct byte_range all[] = {{0, UINT64_MAX}};
    ck_assert_uint_eq(ranges_block_count(all, 1, bs, size), 11);
    /* Sorted but overlapping, with one range inside another. */
    struct byte_range nest[] = {{0, 8 * 4096}, {4096, 10}, {7 * 4096, 8192}};
    ck_assert_uint_eq(ranges_block_count(nest, 3, bs, size), 9);
    ck_assert_uint_eq(ranges_block_count(r, 5, bs, 0), 0);
    ck_assert_uint_eq(ranges_block_count(r, 0, bs, size), 0);
}
END_TEST

START_TEST(normalize_then_count)
{
    /* Unsorted input, as a recording might produce: normalize, then count. */
    struct byte_range r[] = {{65536 * 3, 10}, {0, 65536}, {65536 * 3 + 5, 70000},
                             {65535, 2}};
    size_t n = 4;

    ranges_normalize(r, &n);
    ck_assert_uint_eq(n, 2);
    /* [0, 65537) -> blocks 0,1; [196608, 266613) -> blocks 3,4 */
    ck_assert_uint_eq(ranges_block_count(r, n, 65536, 1ull << 30), 4);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pinspec");
    TCase *tc = tcase_create("spec");
    tcase_add_test(tc, spec_ranges);
    tcase_add_test(tc, spec_mixture);
    tcase_add_test(tc, spec_empty);
    tcase_add_test(tc, spec_errors);
    tcase_add_test(tc, spec_classes);
    suite_add_tcase(s, tc);

    tc = tcase_create("profile");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, profile_formats);
    tcase_add_test(tc, profile_not_nul_terminated);
    tcase_add_test(tc, profile_errors);
    tcase_add_test(tc, profile_line_limit);
    tcase_add_test(tc, profile_round_trip);
    tcase_add_test(tc, profile_load_file);
    tcase_add_test(tc, profile_load_too_big);
    suite_add_tcase(s, tc);

    tc = tcase_create("ranges");
    tcase_add_test(tc, normalize_merges);
    tcase_add_test(tc, block_counting);
    tcase_add_test(tc, normalize_then_count);
    suite_add_tcase(s, tc);

    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
