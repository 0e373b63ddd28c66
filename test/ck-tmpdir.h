/* Shared by the unit tests that need files: a private directory per test,
 * and the runner every test program ends with.
 *
 * Use CK_TMPDIR_FIXTURES("check_foo") once at file scope: it defines
 * `tmpdir` and the fixtures setup() and teardown(), to register with
 * tcase_add_unchecked_fixture.  Unchecked fixtures run in the parent
 * around each forked test, so the directory is removed even when a failed
 * assertion ends the test early; each test has its own TCase, hence its
 * own directory. */
#ifndef IC_CK_TMPDIR_H
#define IC_CK_TMPDIR_H

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>

static inline int ck_rm_one(const char *p, const struct stat *sb, int flag,
                            struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* Make the directory /tmp/NAME.XXXXXX in dir (size at least 64). */
static inline void ck_tmpdir_make(char *dir, size_t size, const char *name)
{
    snprintf(dir, size, "/tmp/%s.XXXXXX", name);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        exit(EXIT_FAILURE);
    }
}

static inline void ck_tmpdir_remove(char *dir)
{
    if (dir[0] != '\0')
        nftw(dir, ck_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    dir[0] = '\0';
}

/* tmpdir is short: paths built from it cannot truncate. */
#define CK_TMPDIR_FIXTURES(name)                                               \
    static char tmpdir[64];                                                    \
    static void setup(void) { ck_tmpdir_make(tmpdir, sizeof tmpdir, name); }  \
    static void teardown(void) { ck_tmpdir_remove(tmpdir); }

/* Mount a tmpfs of `size` bytes on dir, in a mount namespace of this
 * process's own: the mount goes with the (forked) test, whatever ends it.
 * 0, or -errno when this process may not mount (not root, no
 * CAP_SYS_ADMIN, a container): the caller skips. */
static inline int ck_tmpfs_mount(const char *dir, unsigned long long size)
{
    char opt[64];
    snprintf(opt, sizeof opt, "size=%llu,mode=0700", size);
    if (unshare(CLONE_NEWNS) < 0 ||
        mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("tmpfs", dir, "tmpfs", 0, opt) < 0)
        return -errno;
    return 0;
}

/* A suite of one TCase per test (so each has its own directory), each
 * between the fixtures su and td and bounded by timeout_s. */
static inline Suite *ck_suite(const char *name, const TTest *const *tests,
                              size_t n, void (*su)(void), void (*td)(void),
                              double timeout_s)
{
    Suite *s = suite_create(name);
    for (size_t i = 0; i < n; i++) {
        TCase *tc = tcase_create(name);
        tcase_add_unchecked_fixture(tc, su, td);
        tcase_set_timeout(tc, timeout_s);
        tcase_add_test(tc, tests[i]);
        suite_add_tcase(s, tc);
    }
    return s;
}
#define CK_NTESTS(v) (sizeof(v) / sizeof((v)[0]))

/* Run every test of s; the program's exit status. */
static inline int ck_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
