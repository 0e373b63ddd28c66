/* Unit tests: block maths, size/duration parsing, checksums, URL masking,
 * the block table. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ic-block.h"
#include "ic-blockmap.h"
#include "ic-checksum.h"
#include "ic-origin.h"
#include "ic-url.h"
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

START_TEST(checksums)
{
    char a[4096], b[4096];
    memset(a, 7, sizeof a);
    memcpy(b, a, sizeof b);
    ck_assert_uint_eq(checksum_block(a, sizeof a), checksum_block(b, sizeof b));
    b[4000] ^= 1;
    ck_assert_uint_ne(checksum_block(a, sizeof a), checksum_block(b, sizeof b));
    /* The same bytes in a shorter block are a different block. */
    ck_assert_uint_ne(checksum_block(a, 100), checksum_block(a, 101));
    memset(a, 0, sizeof a);
    ck_assert(buf_is_zero(a, sizeof a));
    a[sizeof a - 1] = 1;
    ck_assert(!buf_is_zero(a, sizeof a));
    ck_assert(buf_is_zero(a, 0));
}
END_TEST

static void mask(const char *in, const char *want)
{
    char out[256];
    url_mask(in, out, sizeof out);
    ck_assert_str_eq(out, want);
}

START_TEST(url_masking)
{
    mask("https://user:secret@host/a.img", "https://***@host/a.img");
    mask("http://host/a.img?token=secret", "http://host/a.img?***");
    mask("https://u:p@host/a?sig=x", "https://***@host/a?***");
    mask("http://host/path@odd/a.img", "http://host/path@odd/a.img");
    mask("/srv/images/a.img", "/srv/images/a.img");
    char small[8];
    url_mask("https://user:secret@host/a.img", small, sizeof small);
    ck_assert(strstr(small, "secret") == NULL);
}
END_TEST

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

START_TEST(blockmap_counts)
{
    struct blockmap bm;
    ck_assert_int_eq(blockmap_init(&bm, 10), 0);
    ck_assert_uint_eq(blockmap_missing_run(&bm, 0, 100), 10);
    ck_assert_uint_eq(blockmap_missing_run(&bm, 8, 100), 2);
    ck_assert_uint_eq(blockmap_missing_run(&bm, 0, 4), 4);
    blockmap_set_present(&bm, 3, 42, 0, 100);
    blockmap_set_present(&bm, 4, 43, BLK_ZERO, 100);
    ck_assert_uint_eq(bm.present, 2);
    ck_assert_uint_eq(bm.present_bytes, 100); /* zero blocks cost nothing */
    ck_assert_uint_eq(blockmap_missing_run(&bm, 0, 100), 3);
    uint16_t seq = bm.v[3].seq;
    blockmap_set_missing(&bm, 3, 100);
    ck_assert_uint_eq(bm.v[3].seq, (uint16_t)(seq + 1));
    ck_assert_uint_eq(bm.present, 1);
    ck_assert_uint_eq(bm.present_bytes, 0);
    /* Setting present twice must not double count. */
    blockmap_set_present(&bm, 4, 43, BLK_ZERO, 100);
    ck_assert_uint_eq(bm.present, 1);
    blockmap_free(&bm);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, block_maths);
    tcase_add_test(tc, sizes);
    tcase_add_test(tc, durations);
    tcase_add_test(tc, checksums);
    tcase_add_test(tc, url_masking);
    tcase_add_test(tc, blockmap_counts);
    tcase_add_test(tc, validator_equality);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
