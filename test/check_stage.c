/* Unit tests: the stage (recent fills kept for readers) and the fill
 * buffer pool. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ic-fillbuf.h"
#include "ic-stage.h"

static unsigned released;
static void release(char *buf)
{
    released++;
    free(buf);
}

/* A buffer holding bytes [off, off+len) of "file" key: byte i is
 * (key * 31 + off + i) & 0xff, so bytes of different keys differ. */
static char *bytes_of(uint64_t key, uint64_t off, uint64_t len)
{
    char *b = malloc(len);
    for (uint64_t i = 0; i < len; i++)
        b[i] = (char)((key * 31 + off + i) & 0xff);
    return b;
}

/* The gap reader: fills with 0xEE and counts what it was asked. */
static uint64_t gap_bytes, gap_calls;
static int gap_fill(void *arg, char *dst, uint64_t off, uint64_t len)
{
    (void)arg;
    (void)off;
    memset(dst, 0xEE, len);
    gap_bytes += len;
    gap_calls++;
    return 0;
}
static int gap_fail(void *arg, char *dst, uint64_t off, uint64_t len)
{
    (void)arg, (void)dst, (void)off, (void)len;
    return -EIO;
}

static void setup(void)
{
    released = 0;
    gap_bytes = gap_calls = 0;
}

/* Put [off, off+len) of key; the caller's reference is dropped at once. */
static int put(struct stage *s, uint64_t key, uint64_t off, uint64_t len)
{
    char *b = bytes_of(key, off, len);
    void *ref = stage_put(s, key, off, b, len);
    if (ref == NULL) {
        free(b);
        return 0;
    }
    stage_unref(s, ref);
    return 1;
}

START_TEST(read_spans_entries_and_gaps)
{
    struct stage *s = stage_new(1 << 20, release);
    ck_assert(put(s, 7, 0, 4096));
    ck_assert(put(s, 7, 8192, 4096));
    char dst[12288];
    /* A read inside one entry, not at its start. */
    int64_t n = stage_read(s, 7, dst, 8200, 100, gap_fill, NULL);
    ck_assert_int_eq(n, 100);
    char *want = bytes_of(7, 8192, 4096);
    ck_assert(memcmp(dst, want + 8, 100) == 0);
    free(want);
    ck_assert_uint_eq(released, 0); /* partly read: kept */
    n = stage_read(s, 7, dst, 0, sizeof dst, gap_fill, NULL);
    ck_assert_int_eq(n, 8192);
    ck_assert_uint_eq(gap_bytes, 4096);
    ck_assert_uint_eq(gap_calls, 1);
    want = bytes_of(7, 0, 4096);
    ck_assert(memcmp(dst, want, 4096) == 0);
    free(want);
    for (int i = 4096; i < 8192; i++)
        ck_assert_int_eq((unsigned char)dst[i], 0xEE);
    want = bytes_of(7, 8192, 4096);
    ck_assert(memcmp(dst + 8192, want, 4096) == 0);
    free(want);
    /* Every byte of both entries was handed out: both are released. */
    ck_assert_uint_eq(released, 2);
    ck_assert_uint_eq(stage_bytes(s), 0);
    stage_free(s);
    ck_assert_uint_eq(released, 2);
}
END_TEST

START_TEST(keys_never_mix)
{
    struct stage *s = stage_new(1 << 20, release);
    ck_assert(put(s, 1, 0, 4096));
    char dst[4096];
    ck_assert_int_eq(stage_read(s, 2, dst, 0, 4096, gap_fill, NULL), 0);
    ck_assert_uint_eq(gap_bytes, 4096);
    const char *data;
    void *ref;
    ck_assert(!stage_peek(s, 2, 0, 4096, &data, &ref));
    stage_forget(s, 1);
    ck_assert_uint_eq(released, 1);
    ck_assert_uint_eq(stage_bytes(s), 0);
    ck_assert_int_eq(stage_read(s, 1, dst, 0, 4096, gap_fill, NULL), 0);
    stage_free(s);
}
END_TEST

START_TEST(cap_drops_oldest_first)
{
    struct stage *s = stage_new(3 * 4096, release);
    ck_assert(put(s, 1, 0, 4096));
    ck_assert(put(s, 1, 4096, 4096));
    ck_assert(put(s, 1, 8192, 4096));
    ck_assert(put(s, 1, 12288, 4096)); /* pushes out [0, 4096) */
    ck_assert_uint_eq(released, 1);
    ck_assert_uint_eq(stage_bytes(s), 3 * 4096);
    /* One byte of each (a partial read keeps an entry). */
    char dst[1];
    for (uint64_t o = 0; o < 16384; o += 4096)
        ck_assert_int_eq(stage_read(s, 1, dst, o, 1, gap_fill, NULL),
                         o == 0 ? 0 : 1);
    ck_assert_uint_eq(gap_bytes, 1);
    /* Larger than the cap: refused, the buffer stays the caller's. */
    char *big = bytes_of(1, 0, 4 * 4096);
    ck_assert_ptr_null(stage_put(s, 1, 0, big, 4 * 4096));
    free(big);
    ck_assert_uint_eq(stage_bytes(s), 3 * 4096);
    /* A smaller cap on reload drops what no longer fits. */
    stage_set_cap(s, 4096);
    ck_assert_uint_eq(stage_bytes(s), 4096);
    ck_assert_uint_eq(released, 3);
    stage_set_cap(s, 0);
    ck_assert_uint_eq(stage_bytes(s), 0);
    ck_assert(!put(s, 1, 0, 4096));
    stage_free(s);
}
END_TEST

START_TEST(references_outlive_drops)
{
    struct stage *s = stage_new(4096, release);
    char *b = bytes_of(3, 0, 4096);
    void *put_ref = stage_put(s, 3, 0, b, 4096);
    ck_assert_ptr_nonnull(put_ref);
    const char *data;
    void *ref;
    ck_assert(stage_peek(s, 3, 100, 200, &data, &ref));
    ck_assert_ptr_eq(data, b + 100);
    ck_assert(!stage_peek(s, 3, 4000, 200, &data, &ref)); /* not whole */
    /* No room while both references hold the only entry: refused, and
     * the held entry is still found. */
    ck_assert(!put(s, 3, 4096, 4096));
    ck_assert_uint_eq(released, 0);
    stage_unref(s, put_ref);
    ck_assert_int_eq((unsigned char)data[0], (3 * 31 + 100) & 0xff);
    char one[1];
    ck_assert_int_eq(stage_read(s, 3, one, 100, 1, gap_fill, NULL), 1);
    ck_assert_int_eq(one[0], data[0]);
    /* A lower cap while it is referenced: out of the stage at once, freed
     * by its last reader. */
    stage_set_cap(s, 0);
    ck_assert_uint_eq(released, 0);
    ck_assert_int_eq(stage_read(s, 3, one, 100, 1, gap_fill, NULL), 0);
    stage_unref(s, ref);
    ck_assert_uint_eq(released, 1);
    ck_assert_uint_eq(stage_bytes(s), 0);
    stage_set_cap(s, 4096);
    ck_assert(put(s, 3, 4096, 4096));
    ck_assert(put(s, 3, 0, 4096)); /* unreferenced: pushed out */
    ck_assert_uint_eq(released, 2);
    /* A dropped entry is no longer found. */
    char dst[4096];
    ck_assert_int_eq(stage_read(s, 3, dst, 4096, 4096, gap_fill, NULL), 0);
    stage_free(s);
    ck_assert_uint_eq(released, 3);
}
END_TEST

START_TEST(age_and_gap_failure)
{
    struct stage *s = stage_new(1 << 20, release);
    ck_assert(put(s, 5, 0, 4096));
    ck_assert(put(s, 5, 8192, 4096));
    char dst[12288];
    /* The gap comes first: the read fails before it copies anything. */
    ck_assert_int_eq(stage_read(s, 5, dst, 4096, 8192, gap_fail, NULL), -EIO);
    stage_age(s, 0, 1000); /* a clock behind the entries drops nothing */
    ck_assert_uint_eq(stage_bytes(s), 8192);
    stage_age(s, UINT64_MAX, 1000);
    ck_assert_uint_eq(stage_bytes(s), 0);
    ck_assert_uint_eq(released, 2);
    /* Empty: one gap read of the whole range, no copy. */
    gap_calls = gap_bytes = 0;
    ck_assert_int_eq(stage_read(s, 5, dst, 0, 12288, gap_fill, NULL), 0);
    ck_assert_uint_eq(gap_calls, 1);
    ck_assert_uint_eq(gap_bytes, 12288);
    ck_assert_int_eq(stage_read(s, 5, dst, 0, 12288, gap_fail, NULL), -EIO);
    const char *data;
    void *ref;
    ck_assert(!stage_peek(s, 5, 0, 4096, &data, &ref));
    stage_free(s);
}
END_TEST

START_TEST(fillbuf_aligned_and_recycled)
{
    fillbuf_trim(UINT64_MAX, 0);
    ck_assert_uint_eq(fillbuf_idle(), 0);
    char *small = fillbuf_get(4096); /* from the heap, never pooled */
    ck_assert_ptr_nonnull(small);
    ck_assert_uint_eq((uintptr_t)small % 4096, 0);
    memset(small, 3, 4096);
    fillbuf_put(small);
    ck_assert_uint_eq(fillbuf_idle(), 0);
    char *a = fillbuf_get(FILLBUF_SMALL + 1);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq((uintptr_t)a % 4096, 0);
    memset(a, 1, FILLBUF_SIZE); /* the whole class size is usable */
    fillbuf_put(a);
    ck_assert_uint_eq(fillbuf_idle(), 1);
    char *b = fillbuf_get(FILLBUF_SIZE);
    ck_assert_ptr_eq(a, b); /* the warm buffer comes back */
    ck_assert_uint_eq(fillbuf_idle(), 0);
    char *big = fillbuf_get(FILLBUF_SIZE + 1);
    ck_assert_ptr_nonnull(big);
    ck_assert_uint_eq((uintptr_t)big % 4096, 0);
    memset(big, 2, FILLBUF_SIZE + 1);
    fillbuf_put(big); /* not pooled */
    ck_assert_uint_eq(fillbuf_idle(), 0);
    fillbuf_put(b);
    fillbuf_put(NULL);
    fillbuf_trim(0, 0); /* a clock behind: nothing is idle long enough */
    ck_assert_uint_eq(fillbuf_idle(), 1);
    fillbuf_trim(UINT64_MAX, 1000);
    ck_assert_uint_eq(fillbuf_idle(), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("stage");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, read_spans_entries_and_gaps);
    tcase_add_test(tc, keys_never_mix);
    tcase_add_test(tc, cap_drops_oldest_first);
    tcase_add_test(tc, references_outlive_drops);
    tcase_add_test(tc, age_and_gap_failure);
    tcase_add_test(tc, fillbuf_aligned_and_recycled);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
