/* Data files: creation, removal, hole punching. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ic-log.h"
#include "ic-manifest.h"
#include "ic-store.h"

int store_init(const char *cache_dir)
{
    char path[PATH_MAX];

    snprintf(path, sizeof path, "%s/data", cache_dir);
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int store_path(char *out, size_t len, const char *cache_dir,
               const char *name, uint64_t gen)
{
    int n = snprintf(out, len, "%s/data/%s.%llu", cache_dir, name,
                     (unsigned long long)gen);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int store_manifest_path(char *out, size_t len, const char *cache_dir,
                        const char *name, uint64_t gen)
{
    int n = snprintf(out, len, "%s/data/%s.%llu" MANIFEST_SUFFIX, cache_dir,
                     name, (unsigned long long)gen);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int store_open(const char *cache_dir, const char *name, uint64_t gen,
               uint64_t size)
{
    char path[PATH_MAX];
    int flags = O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC;
    int rc = store_path(path, sizeof path, cache_dir, name, gen);

    if (rc < 0) {
        log_err("data file of %s: path too long under %s/data", name,
                cache_dir);
        return rc;
    }
    int fd = open(path, flags, 0600);
    if (fd < 0) {
        int e = errno;
        log_err("cannot open data file %s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        log_err("data file %s is not a regular file", path);
        close(fd);
        return -EINVAL;
    }
    if ((uint64_t)st.st_size != size && ftruncate(fd, (off_t)size) < 0) {
        int e = errno;
        log_err("cannot size data file %s: %s", path, strerror(e));
        close(fd);
        return -e;
    }
    return fd;
}

int store_open_direct(const char *cache_dir, const char *name, uint64_t gen)
{
    char path[PATH_MAX];
    int rc = store_path(path, sizeof path, cache_dir, name, gen);

    if (rc < 0)
        return rc;
    int fd = open(path, O_RDWR | O_DIRECT | O_NOFOLLOW | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int store_unlink(const char *cache_dir, const char *name, uint64_t gen)
{
    char path[PATH_MAX];
    int rc = store_path(path, sizeof path, cache_dir, name, gen);

    if (rc < 0)
        return rc; /* never unlink a cut path: it names another file */
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    if (store_manifest_path(path, sizeof path, cache_dir, name, gen) == 0)
        unlink(path); /* its manifest, if it has one */
    return 0;
}

/* Whether d_name is "<name>.<digits>" (or its manifest, or a manifest
 * being fetched: *tmp) and, if so, which generation. */
static int parse_data_name(const char *d_name, const char *name,
                           uint64_t *gen, int *tmp)
{
    size_t n = strlen(name);
    if (strncmp(d_name, name, n) != 0 || d_name[n] != '.' ||
        d_name[n + 1] == '\0')
        return 0;
    char *end;
    unsigned long long g = strtoull(d_name + n + 1, &end, 10);
    *tmp = strcmp(end, MANIFEST_SUFFIX ".tmp") == 0;
    if (*end != '\0' && strcmp(end, MANIFEST_SUFFIX) != 0 && !*tmp)
        return 0;
    *gen = g;
    return 1;
}

void store_unlink_others(const char *cache_dir, const char *name,
                         uint64_t keep_gen)
{
    char path[PATH_MAX];
    uint64_t gen;
    int tmp;

    snprintf(path, sizeof path, "%s/data", cache_dir);
    DIR *d = opendir(path);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!parse_data_name(de->d_name, name, &gen, &tmp))
            continue;
        /* At start no manifest is being fetched: a .tmp is a crash's. */
        int n = snprintf(path, sizeof path, "%s/data/%s", cache_dir,
                         de->d_name);
        if (tmp && n > 0 && (size_t)n < sizeof path)
            unlink(path);
        else if (!tmp && gen != keep_gen)
            store_unlink(cache_dir, name, gen);
    }
    closedir(d);
}

int store_punch(int fd, uint64_t off, uint64_t len)
{
    /* A short last block ends inside a filesystem block, which a punch up
     * to EOF only zeroes: punch past EOF (blocks are 4K-aligned) to free
     * it. */
    len = (len + 4095) & ~(uint64_t)4095;
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                  (off_t)len) < 0)
        return -errno;
    return 0;
}

int64_t store_allocated(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    return (int64_t)st.st_blocks * 512;
}

uint64_t store_manifest_bytes(const char *cache_dir, const char *name,
                              uint64_t gen)
{
    char path[PATH_MAX];
    struct stat st;
    if (store_manifest_path(path, sizeof path, cache_dir, name, gen) < 0 ||
        lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
        return 0;
    return (uint64_t)st.st_blocks * 512;
}
