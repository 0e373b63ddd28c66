/* Unit tests for fs/origin/url.c: joining a directory location and a
 * file name, and masking credentials in URLs for logs. */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ic-url.h"

static void mask(const char *in, const char *want)
{
    char out[256];
    url_mask(in, out, sizeof out);
    ck_assert_str_eq(out, want);
}

START_TEST(masking)
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

static void join(const char *dir, const char *name, const char *want)
{
    char *s = url_join(dir, name);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, want);
    free(s);
}

/* A URL's query string stays at the end (it often carries a token); a
 * path's '?' is just a character. */
START_TEST(joining)
{
    join("/srv/images", "a.img", "/srv/images/a.img");
    join("/srv/images/", "a.img", "/srv/images/a.img");
    join("http://h/dir", "a.img", "http://h/dir/a.img");
    join("http://h/dir/", "a.img", "http://h/dir/a.img");
    join("https://h/dir?tok=x", "a.img", "https://h/dir/a.img?tok=x");
    join("https://h/dir/?tok=x&y=1", "a.img", "https://h/dir/a.img?tok=x&y=1");
    join("/srv/odd?dir", "a.img", "/srv/odd?dir/a.img");
}
END_TEST

static Suite *url_suite(void)
{
    Suite *s = suite_create("url");
    TCase *tc = tcase_create("url");
    tcase_add_test(tc, masking);
    tcase_add_test(tc, joining);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(url_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
