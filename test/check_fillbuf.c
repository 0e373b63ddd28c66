/* Unit tests for fs/base/fillbuf.c: fill buffers are 4096-aligned and as
 * long as asked, pool-sized ones (over FILLBUF_SMALL, up to FILLBUF_SIZE)
 * are recycled, most recently given back first, and fillbuf_trim returns
 * the ones idle too long to the system.
 *
 * The pool is process-wide: each test counts relative to fillbuf_idle()
 * at its start and empties the pool at its end. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ic-fillbuf.h"
#include "ic-log.h"
#include "ic-util.h"

#include "ck-tmpdir.h"

static void pool_empty(void)
{
    fillbuf_trim(UINT64_MAX, 0);
    ck_assert_uint_eq(fillbuf_idle(), 0);
}

/* Whether the page at p is mapped (mincore fails with ENOMEM if not). */
static int mapped(const void *p)
{
    unsigned char vec;
    void *page = (void *)((uintptr_t)p & ~(uintptr_t)4095);
    if (mincore(page, 4096, &vec) == 0)
        return 1;
    ck_assert_int_eq(errno, ENOMEM);
    return 0;
}

/* Every size class: aligned, every byte writable and kept. */
START_TEST(test_aligned)
{
    static const uint64_t sizes[] = {0, 1, 100, 4096, 4097,
                                     FILLBUF_SMALL, FILLBUF_SMALL + 1,
                                     1 << 20, FILLBUF_SIZE, FILLBUF_SIZE + 1,
                                     (5u << 20) + 3};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint64_t len = sizes[i];
        char *b = fillbuf_get(len);
        ck_assert_ptr_nonnull(b);
        ck_assert_msg((uintptr_t)b % 4096 == 0, "%llu bytes at %p",
                      (unsigned long long)len, (void *)b);
        memset(b, 0x5a, len);
        for (uint64_t k = 0; k < len; k += 4093)
            ck_assert_int_eq(b[k], 0x5a);
        if (len)
            ck_assert_int_eq(b[len - 1], 0x5a);
        fillbuf_put(b);
    }
    fillbuf_put(NULL);
    pool_empty();
}
END_TEST

/* A pool buffer given back is idle, and the next get of that class has
 * it again, whatever size within the class is asked: the last one given
 * back first.  Small and oversized buffers are not pooled. */
START_TEST(test_recycled)
{
    pool_empty();
    char *a = fillbuf_get(FILLBUF_SMALL + 1);
    char *b = fillbuf_get(FILLBUF_SIZE);
    ck_assert_ptr_ne(a, b);
    fillbuf_put(a);
    ck_assert_uint_eq(fillbuf_idle(), 1);
    fillbuf_put(b);
    ck_assert_uint_eq(fillbuf_idle(), 2);
    char *c = fillbuf_get(1 << 20);
    ck_assert_ptr_eq(c, b);
    ck_assert_uint_eq(fillbuf_idle(), 1);
    char *d = fillbuf_get(FILLBUF_SIZE);
    ck_assert_ptr_eq(d, a);
    ck_assert_uint_eq(fillbuf_idle(), 0);
    memset(d, 1, FILLBUF_SIZE); /* a pool buffer is FILLBUF_SIZE long */
    fillbuf_put(c);
    fillbuf_put(d);
    ck_assert_uint_eq(fillbuf_idle(), 2);

    char *s = fillbuf_get(4096), *big = fillbuf_get(FILLBUF_SIZE + 1);
    fillbuf_put(s);
    fillbuf_put(big);
    ck_assert_uint_eq(fillbuf_idle(), 2);
    ck_assert(!mapped(big));
    pool_empty();
}
END_TEST

/* fillbuf_trim unmaps the buffers idle for longer than max_idle_ms and
 * keeps the others: a given back before b's time, b at it; a trim at
 * b's time with max_idle 0 takes a only, and a later one b too. */
START_TEST(test_trim)
{
    pool_empty();
    char *a = fillbuf_get(FILLBUF_SIZE), *b = fillbuf_get(FILLBUF_SIZE);
    fillbuf_put(a);
    uint64_t after_a = mono_ms();
    while (mono_ms() <= after_a) /* the clock moves on: b is younger */
        usleep(500);
    uint64_t before_b = mono_ms();
    fillbuf_put(b);
    ck_assert_uint_eq(fillbuf_idle(), 2);

    fillbuf_trim(mono_ms(), 60000);
    ck_assert_uint_eq(fillbuf_idle(), 2);
    ck_assert(mapped(a) && mapped(b));

    fillbuf_trim(before_b, 0);
    ck_assert_uint_eq(fillbuf_idle(), 1);
    ck_assert(!mapped(a));
    ck_assert(mapped(b));
    char *c = fillbuf_get(FILLBUF_SIZE);
    ck_assert_ptr_eq(c, b);
    fillbuf_put(c);

    fillbuf_trim(mono_ms() + 10000, 5000);
    ck_assert_uint_eq(fillbuf_idle(), 0);
    ck_assert(!mapped(b));
}
END_TEST

static Suite *fillbuf_suite(void)
{
    Suite *s = suite_create("fillbuf");
    const TTest *tests[] = {test_aligned, test_recycled, test_trim};

    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        TCase *tc = tcase_create("fillbuf");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, tests[i]);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    log_init("check_fillbuf", 0);
    return ck_run(fillbuf_suite());
}
