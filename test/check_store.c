/* Unit tests for fs/engine/store.c: data files (create, size, refuse what was
 * planted, remove) and hole punching, also on a full filesystem.
 *
 * The data files live on a small tmpfs mounted for each test in a mount
 * namespace of its own (ck_tmpfs_mount), so a full disk is cheap to make
 * and holes are exact.  Where this process may not mount, the program
 * exits 77 (skipped). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ic-log.h"
#include "ic-store.h"
#include "ic-util.h"

#include "ck-tmpdir.h"

CK_TMPDIR_FIXTURES("check_store")

#define BS 4096

/* With CK_FORK=no the tests share one process and its namespace: take the
 * test's tmpfs away before its directory is removed. */
static void teardown_store(void)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/cache", tmpdir);
    umount2(dir, MNT_DETACH);
    teardown();
}

/* tmpdir/cache on a tmpfs of `size` bytes, with data/ made by store_init. */
static const char *cache_on_tmpfs(unsigned long long size)
{
    static char dir[128];
    snprintf(dir, sizeof dir, "%s/cache", tmpdir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    ck_assert_int_eq(ck_tmpfs_mount(dir, size), 0);
    ck_assert_int_eq(store_init(dir), 0);
    return dir;
}

static const char *data_path(const char *cache, const char *file)
{
    static char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/data/%s", cache, file);
    return p;
}

static int exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* Whether [off, off+len) holds data (SEEK_DATA lands inside it). */
static int has_data(int fd, off_t off, off_t len)
{
    off_t at = lseek(fd, off, SEEK_DATA);
    return at >= 0 && at < off + len;
}

static void fill(int fd, off_t off, size_t len, int byte)
{
    char buf[BS];
    memset(buf, byte, sizeof buf);
    for (size_t done = 0; done < len; done += BS) {
        size_t n = len - done < BS ? len - done : BS;
        ck_assert_int_eq(pwrite_full(fd, buf, n, off + (off_t)done),
                         (ssize_t)n);
    }
}

/* store_init makes data/ private; store_open creates the file sparse at
 * its size, and sizes an existing one to what is asked, keeping bytes. */
START_TEST(test_open)
{
    const char *cache = cache_on_tmpfs(1 << 20);
    struct stat st;
    ck_assert_int_eq(stat(data_path(cache, ""), &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0700);
    ck_assert_int_eq(store_init(cache), 0); /* again: fine */
    int fd = store_open(cache, "a.img", 7, 10 * BS);
    ck_assert_int_ge(fd, 0);
    ck_assert(exists(data_path(cache, "a.img.7")));
    ck_assert_int_eq(fstat(fd, &st), 0);
    ck_assert_int_eq(st.st_size, 10 * BS);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(store_allocated(fd), 0);
    fill(fd, 0, BS, 'x');
    close(fd);
    fd = store_open(cache, "a.img", 7, 10 * BS);
    char c = 0;
    ck_assert_int_eq(pread(fd, &c, 1, 0), 1);
    ck_assert_int_eq(c, 'x');
    close(fd);
    fd = store_open(cache, "a.img", 7, 3 * BS);
    ck_assert_int_eq(fstat(fd, &st), 0);
    ck_assert_int_eq(st.st_size, 3 * BS);
    close(fd);
    char path[16];
    ck_assert_int_eq(store_path(path, sizeof path, cache, "a.img", 7),
                     -ENAMETOOLONG);
}
END_TEST

/* What another user could plant in data/ is not opened: a symlink (it
 * could point at any file) or a directory; the symlink's target stays
 * untouched. */
START_TEST(test_open_refuses)
{
    const char *cache = cache_on_tmpfs(1 << 20);
    char target[PATH_MAX];
    snprintf(target, sizeof target, "%s/target", cache);
    int fd = open(target, O_WRONLY | O_CREAT, 0600);
    ck_assert_int_ge(fd, 0);
    fill(fd, 0, 100, 'k');
    close(fd);
    ck_assert_int_eq(symlink(target, data_path(cache, "b.img.1")), 0);
    ck_assert_int_eq(store_open(cache, "b.img", 1, 10 * BS), -ELOOP);
    struct stat st;
    ck_assert_int_eq(stat(target, &st), 0);
    ck_assert_int_eq(st.st_size, 100);
    ck_assert_int_eq(mkdir(data_path(cache, "c.img.1"), 0700), 0);
    ck_assert_int_lt(store_open(cache, "c.img", 1, BS), 0);
}
END_TEST

/* store_unlink: a missing file is no error.  store_unlink_others removes
 * exactly NAME.<digits> other than the kept generation, with their
 * manifests, and every manifest a crash left half fetched (.tmp). */
START_TEST(test_unlink)
{
    const char *cache = cache_on_tmpfs(1 << 20);
    static const char *const keep[] = {"a.img.2", "a.img.x", "a.img.5x",
                                       "a.img.", "a.imgb.1", "b.img.1",
                                       "xa.img.1",
                                       "a.img.2.imgcache-manifest",
                                       "a.img.2.imgcache-manifest.x",
                                       "b.img.1.imgcache-manifest.tmp"};
    static const char *const gone[] = {"a.img.1", "a.img.3", "a.img.10",
                                       "a.img.1.imgcache-manifest",
                                       "a.img.1.imgcache-manifest.tmp",
                                       "a.img.2.imgcache-manifest.tmp"};
    ck_assert_int_eq(store_unlink(cache, "a.img", 99), 0);
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        close(open(data_path(cache, keep[i]), O_CREAT | O_WRONLY, 0600));
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
        close(open(data_path(cache, gone[i]), O_CREAT | O_WRONLY, 0600));
    store_unlink_others(cache, "a.img", 2);
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        ck_assert_msg(exists(data_path(cache, keep[i])), "%s removed",
                      keep[i]);
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
        ck_assert_msg(!exists(data_path(cache, gone[i])), "%s kept", gone[i]);
    ck_assert_int_eq(store_unlink(cache, "a.img", 2), 0);
    ck_assert(!exists(data_path(cache, "a.img.2")));
}
END_TEST

/* A punch frees a block (reads give zeros, the size stays); a short last
 * block is freed whole, though it ends inside a page (a punch of only its
 * length would just zero it and keep the page). */
START_TEST(test_punch)
{
    const char *cache = cache_on_tmpfs(1 << 20);
    const off_t size = 2 * BS + 100;
    int fd = store_open(cache, "a.img", 1, (uint64_t)size);
    ck_assert_int_ge(fd, 0);
    fill(fd, 0, (size_t)size, 'd');
    ck_assert_int_eq(store_allocated(fd), 3 * BS);
    ck_assert_int_eq(store_punch(fd, BS, BS), 0);
    ck_assert(!has_data(fd, BS, BS));
    ck_assert(has_data(fd, 0, BS));
    char buf[BS];
    ck_assert_int_eq(pread(fd, buf, BS, BS), BS);
    for (int i = 0; i < BS; i++)
        ck_assert_int_eq(buf[i], 0);
    ck_assert_int_eq(store_allocated(fd), 2 * BS);
    ck_assert_int_eq(store_punch(fd, 2 * BS, 100), 0);
    ck_assert(!has_data(fd, 2 * BS, BS));
    ck_assert_int_eq(store_allocated(fd), BS);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    ck_assert_int_eq(st.st_size, size);
    close(fd);
}
END_TEST

/* On a full filesystem a punch still works and gives the room back: the
 * next write into that block succeeds (what the read path relies on when
 * it evicts after ENOSPC). */
START_TEST(test_enospc)
{
    const char *cache = cache_on_tmpfs(64 * 1024);
    int fd = store_open(cache, "a.img", 1, 64 * BS);
    ck_assert_int_ge(fd, 0);
    char buf[BS];
    memset(buf, 'f', sizeof buf);
    int blk = 0;
    ssize_t w = 0;
    for (; blk < 64; blk++)
        if ((w = pwrite_full(fd, buf, BS, (off_t)blk * BS)) < 0)
            break;
    ck_assert_int_eq(w, -ENOSPC);
    ck_assert_int_gt(blk, 2);
    int64_t full = store_allocated(fd);
    ck_assert_int_eq(store_punch(fd, 1 * BS, BS), 0);
    ck_assert_int_eq(store_allocated(fd), full - BS);
    ck_assert_int_eq(pwrite_full(fd, buf, BS, (off_t)blk * BS), BS);
    ck_assert(has_data(fd, (off_t)blk * BS, BS));
    /* And full again: the next one fails as before. */
    ck_assert_int_eq(pwrite_full(fd, buf, BS, (off_t)(blk + 1) * BS),
                     -ENOSPC);
    close(fd);
}
END_TEST

/* Whether this process may mount a tmpfs (in a child: the namespace and
 * the mount go with it). */
static int can_mount(void)
{
    char dir[64];
    ck_tmpdir_make(dir, sizeof dir, "check_store-probe");
    pid_t pid = fork();
    if (pid == 0)
        _exit(ck_tmpfs_mount(dir, 1 << 20) == 0 ? 0 : 1);
    int status = 1;
    waitpid(pid, &status, 0);
    ck_tmpdir_remove(dir);
    return pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static Suite *store_suite(void)
{
    const TTest *tests[] = {test_open, test_open_refuses, test_unlink,
                            test_punch, test_enospc};
    return ck_suite("store", tests, CK_NTESTS(tests), setup, teardown_store, 60);
}

int main(void)
{
    log_init("check_store", 0);
    if (!can_mount()) {
        fprintf(stderr, "check_store: cannot mount a tmpfs here; skipped\n");
        return 77;
    }
    return ck_run(store_suite());
}
