/* originfs — a read-only passthrough FUSE filesystem that counts reads.
 *
 * Test helper: it models an NFS origin whose requests a test can count.
 * Usage: originfs SRC_DIR LOGFILE MOUNTPOINT [fuse options]
 *
 * Every file of SRC_DIR appears read-only under MOUNTPOINT.  Every read
 * request appends one line "<path> <offset> <size>\n" to LOGFILE (size is
 * the size requested).  Files are opened with direct_io and attributes are
 * never cached, so every read and every stat by a client reaches this
 * process: nothing is hidden by the kernel page cache, and a file replaced
 * in SRC_DIR is seen at once with its new inode, size and times (st_ino,
 * st_size, st_mtim and st_ctim pass through unchanged).  Stopping the
 * process (SIGSTOP) simulates a hung NFS server.
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static char src_dir[PATH_MAX];
static int log_fd = -1;
/* Serializes appends to log_fd so lines never interleave. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

/* Map a FUSE path ("/a/b") to the source path; -ENAMETOOLONG on overflow. */
static int src_path(const char *path, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "%s%s", src_dir, path);

    if (n < 0 || (size_t)n >= outsz)
        return -ENAMETOOLONG;
    return 0;
}

static void *ofs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    (void)conn;
    cfg->use_ino = 1;
    cfg->direct_io = 1;
    cfg->kernel_cache = 0;
    cfg->entry_timeout = 0;
    cfg->attr_timeout = 0;
    cfg->negative_timeout = 0;
    return NULL;
}

static int ofs_getattr(const char *path, struct stat *st,
                       struct fuse_file_info *fi)
{
    char p[PATH_MAX];
    int r;

    if (fi != NULL)
        r = fstat((int)fi->fh, st);
    else {
        r = src_path(path, p, sizeof p);
        if (r < 0)
            return r;
        r = lstat(p, st);
    }
    return r < 0 ? -errno : 0;
}

static int ofs_readdir(const char *path, void *buf, fuse_fill_dir_t filler,
                       off_t off, struct fuse_file_info *fi,
                       enum fuse_readdir_flags flags)
{
    char p[PATH_MAX];
    DIR *d;
    struct dirent *de;
    int r;

    (void)off;
    (void)fi;
    (void)flags;
    r = src_path(path, p, sizeof p);
    if (r < 0)
        return r;
    d = opendir(p);
    if (d == NULL)
        return -errno;
    while ((de = readdir(d)) != NULL) {
        struct stat st;

        memset(&st, 0, sizeof st);
        st.st_ino = de->d_ino;
        st.st_mode = (mode_t)DTTOIF(de->d_type);
        if (filler(buf, de->d_name, &st, 0, 0) != 0)
            break;
    }
    closedir(d);
    return 0;
}

static int ofs_open(const char *path, struct fuse_file_info *fi)
{
    char p[PATH_MAX];
    int fd, r;

    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
        return -EROFS;
    r = src_path(path, p, sizeof p);
    if (r < 0)
        return r;
    fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    fi->fh = (uint64_t)fd;
    fi->direct_io = 1;
    fi->keep_cache = 0;
    return 0;
}

static void log_read(const char *path, off_t off, size_t size)
{
    char line[PATH_MAX + 64];
    int n = snprintf(line, sizeof line, "%s %jd %zu\n", path, (intmax_t)off,
                     size);

    if (n < 0 || (size_t)n >= sizeof line)
        return;
    pthread_mutex_lock(&log_lock);
    if (write(log_fd, line, (size_t)n) != n)
        perror("originfs: write log");
    pthread_mutex_unlock(&log_lock);
}

static int ofs_read(const char *path, char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    size_t done = 0;
    int err = 0;

    while (done < size) {
        ssize_t n = pread((int)fi->fh, buf + done, size - done,
                          off + (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            err = errno;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    log_read(path, off, size);
    if (done == 0 && err != 0)
        return -err;
    return (int)done;
}

static int ofs_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    close((int)fi->fh);
    return 0;
}

static int ofs_statfs(const char *path, struct statvfs *sv)
{
    char p[PATH_MAX];
    int r = src_path(path, p, sizeof p);

    if (r < 0)
        return r;
    return statvfs(p, sv) < 0 ? -errno : 0;
}

static const struct fuse_operations ofs_ops = {
    .init = ofs_init,
    .getattr = ofs_getattr,
    .readdir = ofs_readdir,
    .open = ofs_open,
    .read = ofs_read,
    .release = ofs_release,
    .statfs = ofs_statfs,
};

int main(int argc, char **argv)
{
    char **fargv;
    int fargc = 0, i;
    struct stat st;

    if (argc < 4) {
        fprintf(stderr,
                "usage: originfs SRC_DIR LOGFILE MOUNTPOINT [fuse options]\n");
        return 2;
    }
    /* fuse_main daemonizes (chdir /) unless -f: resolve paths first. */
    if (realpath(argv[1], src_dir) == NULL || stat(src_dir, &st) < 0 ||
        !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "originfs: %s: not a directory\n", argv[1]);
        return 2;
    }
    log_fd = open(argv[2], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        fprintf(stderr, "originfs: %s: %s\n", argv[2], strerror(errno));
        return 2;
    }
    fargv = calloc((size_t)argc + 3, sizeof *fargv);
    if (fargv == NULL) {
        perror("originfs");
        return 1;
    }
    fargv[fargc++] = argv[0];
    fargv[fargc++] = "-o";
    fargv[fargc++] = "ro,fsname=originfs,subtype=originfs";
    fargv[fargc++] = argv[3];
    for (i = 4; i < argc; i++)
        fargv[fargc++] = argv[i];
    fargv[fargc] = NULL;
    i = fuse_main(fargc, fargv, &ofs_ops, NULL);
    free(fargv);
    close(log_fd);
    return i;
}
