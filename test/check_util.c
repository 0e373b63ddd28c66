/* Unit tests for fs/base/util.c and the block maths of ic-block.h: size and
 * duration parsing, zero detection.  (The block table, checksums and the
 * origins' names have their own programs: check_blockmap, check_checksum,
 * check_origin.) */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ic-block.h"
#include "ic-util.h"

START_TEST(block_maths)
{
    const uint32_t bs = 65536;
    ck_assert(block_size_valid(4096));
    ck_assert(block_size_valid(16u << 20));
    ck_assert(!block_size_valid(2048));
    ck_assert(!block_size_valid(32u << 20));
    ck_assert(!block_size_valid(3 * 4096));
    ck_assert_uint_eq(block_count(0, bs), 0);
    ck_assert_uint_eq(block_count(1, bs), 1);
    ck_assert_uint_eq(block_count(bs, bs), 1);
    ck_assert_uint_eq(block_count(bs + 1, bs), 2);
    /* Offsets past 4 GiB must not wrap in 32 bits. */
    uint64_t big = (5ull << 30) + 123;
    ck_assert_uint_eq(block_of(big, bs), big / bs);
    ck_assert_uint_eq(block_start(block_of(big, bs), bs), big - big % bs);
    ck_assert_uint_eq(block_len(1, bs + 10, bs), 10);
    ck_assert_uint_eq(block_len(0, bs + 10, bs), bs);
    ck_assert_uint_eq(block_len(2, bs + 10, bs), 0);
    ck_assert_uint_eq(block_clamp(100, 50, 120), 20);
    ck_assert_uint_eq(block_clamp(120, 50, 120), 0);
    ck_assert_uint_eq(block_clamp(0, 50, 120), 50);
}
END_TEST

START_TEST(sizes)
{
    uint64_t v;
    ck_assert_int_eq(parse_size("64K", &v), 0);
    ck_assert_uint_eq(v, 65536);
    ck_assert_int_eq(parse_size("2G", &v), 0);
    ck_assert_uint_eq(v, 2ull << 30);
    ck_assert_int_eq(parse_size("1t", &v), 0);
    ck_assert_uint_eq(v, 1ull << 40);
    ck_assert_int_eq(parse_size("64KiB", &v), 0);
    ck_assert_uint_eq(v, 65536);
    ck_assert_int_eq(parse_size("512", &v), 0);
    ck_assert_uint_eq(v, 512);
    ck_assert_int_eq(parse_size("", &v), -EINVAL);
    ck_assert_int_eq(parse_size("K", &v), -EINVAL);
    ck_assert_int_eq(parse_size("-1", &v), -EINVAL);
    ck_assert_int_eq(parse_size(" 1", &v), -EINVAL);
    ck_assert_int_eq(parse_size("12X", &v), -EINVAL);
    ck_assert_int_eq(parse_size("12BB", &v), -EINVAL);
    ck_assert_int_eq(parse_size("99999999999T", &v), -ERANGE);
    ck_assert_int_eq(parse_size("99999999999999999999", &v), -ERANGE);
}
END_TEST

START_TEST(durations)
{
    uint64_t ms;
    ck_assert_int_eq(parse_duration_ms("30s", &ms), 0);
    ck_assert_uint_eq(ms, 30000);
    ck_assert_int_eq(parse_duration_ms("30", &ms), 0);
    ck_assert_uint_eq(ms, 30000);
    ck_assert_int_eq(parse_duration_ms("250ms", &ms), 0);
    ck_assert_uint_eq(ms, 250);
    ck_assert_int_eq(parse_duration_ms("2m", &ms), 0);
    ck_assert_uint_eq(ms, 120000);
    ck_assert_int_eq(parse_duration_ms("1h", &ms), 0);
    ck_assert_uint_eq(ms, 3600000);
    ck_assert_int_eq(parse_duration_ms("5x", &ms), -EINVAL);
    ck_assert_int_eq(parse_duration_ms("s", &ms), -EINVAL);
    ck_assert_int_eq(parse_duration_ms("-5s", &ms), -EINVAL);
    ck_assert_int_eq(parse_duration_ms("9999999999999999h", &ms), -ERANGE);
    ck_assert_int_eq(parse_duration_ms("99999999999999999999", &ms),
                     -ERANGE);
    ck_assert_int_eq(parse_bool("yes"), 1);
    ck_assert_int_eq(parse_bool("Off"), 0);
    ck_assert_int_eq(parse_bool("maybe"), -EINVAL);
}
END_TEST

/* At most burst lines per window; the lines held back are handed to the
 * first one allowed in a later window, once. */
START_TEST(ratelimit)
{
    struct ratelimit rl = {0};
    uint64_t held = 99;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(ratelimit_allow(&rl, 3, 60000, &held), 1);
        ck_assert_uint_eq(held, 0);
    }
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(ratelimit_allow(&rl, 3, 60000, &held), 0);
    /* The next window (forced: as if a minute had passed). */
    rl.window--;
    ck_assert_int_eq(ratelimit_allow(&rl, 3, 60000, &held), 1);
    ck_assert_uint_eq(held, 5);
    ck_assert_int_eq(ratelimit_allow(&rl, 3, 60000, &held), 1);
    ck_assert_uint_eq(held, 0);
}
END_TEST

START_TEST(zeros)
{
    char a[4096];
    memset(a, 0, sizeof a);
    ck_assert(buf_is_zero(a, sizeof a));
    a[sizeof a - 1] = 1;
    ck_assert(!buf_is_zero(a, sizeof a));
    ck_assert(buf_is_zero(a, 0));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, block_maths);
    tcase_add_test(tc, sizes);
    tcase_add_test(tc, durations);
    tcase_add_test(tc, zeros);
    tcase_add_test(tc, ratelimit);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
