/* Unit tests for fs/base/checksum.c: block checksums tell blocks apart. */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ic-checksum.h"

#include "ck-tmpdir.h"

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
    /* Two blocks that differ only by where their bytes are. */
    memset(b, 7, sizeof b);
    b[0] = 1;
    memcpy(a, b + 1, sizeof a - 1);
    a[sizeof a - 1] = 1;
    ck_assert_uint_ne(checksum_block(a, sizeof a), checksum_block(b, sizeof b));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("checksum");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, checksums);
    suite_add_tcase(s, tc);
    return ck_run(s);
}
