/* FUSE low-level operations: a flat, read-only directory of templates.
 * Every operation ends in exactly one fuse_reply_*. */
#define FUSE_USE_VERSION 312
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ic-cache.h"
#include "ic-fillbuf.h"
#include "ic-fuse-ops.h"
#include "ic-health.h"
#include "ic-origin.h"
#include "ic-log.h"
#include "ic-bdi.h"
#include "ic-conf.h"
#include "ic-pin.h"
#include "ic-readahead.h"
#include "ic-sched.h"
#include "ic-util.h"
#include "ic-verify.h"

/* A name's inode changes with a new generation: the kernel keeps the
 * name's entry for a second at most, so a new size shows within one.  An
 * inode's own attributes never change (a generation's size and mtime). */
#define ENTRY_TIMEOUT 1.0
#define ATTR_TIMEOUT 60.0
#define XATTR_PREFIX "user.imgcache."

static struct ic_fs *fs_of(fuse_req_t req) { return fuse_req_userdata(req); }

/* An open file: the generation it reads, and its readahead detector. */
struct handle {
    struct gen *g;
    struct ra_state ra;
};

static struct handle *handle_of(struct fuse_file_info *fi)
{
    return (struct handle *)(uintptr_t)fi->fh;
}

static void fill_root_attr(struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = FUSE_ROOT_ID;
    st->st_mode = S_IFDIR | 0555;
    st->st_nlink = 2;
}

/* The attributes of one generation's inode (they never change). */
static void fill_attr(struct ic_fs *fs, const struct gen *g, struct stat *st)
{
    struct cache_gen_attr a;
    cache_gen_attr(g, &a);
    uint64_t size = a.size;
    int64_t mtime_ns = a.mtime_ns;
    memset(st, 0, sizeof *st);
    st->st_ino = a.ino;
    st->st_mode = S_IFREG | fs->mode;
    st->st_nlink = 1;
    st->st_uid = fs->uid;
    st->st_gid = fs->gid;
    st->st_size = (off_t)size;
    st->st_blksize = a.bs;
    st->st_blocks = (blkcnt_t)((size + 511) / 512);
    st->st_mtim.tv_sec = mtime_ns / 1000000000;
    st->st_mtim.tv_nsec = mtime_ns % 1000000000;
    st->st_ctim = st->st_mtim;
    st->st_atim = st->st_mtim;
}

/* Raise the kernel's readahead for the mount to kernel_readahead
 * (ic-bdi.h), once, before any file is opened: a file takes the bdi's
 * readahead when it is opened, for good.  From the first lookup or open
 * (every open of a path follows a lookup), since INIT, done by then, can
 * only lower it; concurrent first callers wait for the write. */
static pthread_mutex_t ra_lock = PTHREAD_MUTEX_INITIALIZER;
static void tune_readahead(struct ic_fs *fs)
{
    if (__atomic_load_n(&fs->ra_tuned, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&ra_lock);
    if (!fs->ra_tuned) {
        uint64_t want = cache_conf(fs->c)->kernel_readahead;
        char bdi[32];
        int r = want == 0         ? 0 /* the kernel's stays, as asked */
                : fs->mnt[0] == '\0' ? -ENOENT
                                    : bdi_of_mount(fs->mnt, bdi, sizeof bdi);
        if (r == 0 && want != 0)
            r = bdi_set_readahead(bdi, want);
        if (want == 0)
            ;
        else if (r == 0)
            log_info("kernel readahead of %s: %" PRIu64 " KiB (bdi %s)",
                     fs->mnt, want / 1024, bdi);
        else
            log_info("cannot set the kernel readahead of the mount %s to "
                     "%" PRIu64 " KiB: %s; it stays the kernel's",
                     fs->mnt[0] ? fs->mnt : "(its path unknown)",
                     want / 1024, strerror(-r));
        __atomic_store_n(&fs->ra_tuned, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&ra_lock);
}

static void ic_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct ic_fs *fs = fs_of(req);
    tune_readahead(fs);
    struct fuse_entry_param e;
    struct tmpl *t;

    if (parent != FUSE_ROOT_ID || (t = cache_find(fs->c, name)) == NULL ||
        !cache_tmpl_visible(t)) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    struct gen *g = cache_cur_gen(t);
    memset(&e, 0, sizeof e);
    fill_attr(fs, g, &e.attr);
    e.ino = e.attr.st_ino;
    e.attr_timeout = ATTR_TIMEOUT;
    e.entry_timeout = ENTRY_TIMEOUT;
    cache_gen_put(g);
    fuse_reply_entry(req, &e);
}

static void ic_getattr(fuse_req_t req, fuse_ino_t ino,
                       struct fuse_file_info *fi)
{
    struct ic_fs *fs = fs_of(req);
    struct stat st;

    if (ino == FUSE_ROOT_ID) {
        fill_root_attr(&st);
        fuse_reply_attr(req, &st, ATTR_TIMEOUT);
        return;
    }
    struct gen *g = cache_gen_get_ino(fs->c, ino);
    if (g == NULL) {
        /* A superseded generation nothing holds open any more: ESTALE
         * makes the kernel look the name up again (stat(2) retries with
         * LOOKUP_REVAL), finding the current inode. */
        fuse_reply_err(req, cache_find_ino(fs->c, ino) ? ESTALE : ENOENT);
        return;
    }
    fill_attr(fs, g, &st);
    cache_gen_put(g);
    fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

static void ic_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
                       int to_set, struct fuse_file_info *fi)
{
    fuse_reply_err(req, EROFS);
}

/* Add one entry; returns 0 when the buffer is full. */
static size_t add_entry(fuse_req_t req, char *buf, size_t size, size_t pos,
                        const char *name, fuse_ino_t ino, mode_t mode,
                        off_t next)
{
    struct stat st = {.st_ino = ino, .st_mode = mode};
    size_t need = fuse_add_direntry(req, NULL, 0, name, NULL, 0);
    if (pos + need > size)
        return 0;
    fuse_add_direntry(req, buf + pos, size - pos, name, &st, next);
    return need;
}

static void ic_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    struct ic_fs *fs = fs_of(req);
    char *buf;
    size_t pos = 0, n;

    if (ino != FUSE_ROOT_ID) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    buf = malloc(size);
    if (buf == NULL) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    /* Offsets: 0 ".", 1 "..", 2+i template i (the array only grows). */
    struct tmpl **v;
    size_t nt = cache_snapshot(fs->c, &v);
    for (off_t i = off; i < (off_t)nt + 2; i++) {
        struct tmpl *t = i >= 2 ? v[i - 2] : NULL;
        /* A gone template is rechecked (at most once per revalidate),
         * so a listing alone shows it again once it is back. */
        if (t && (cache_tmpl_removed(t) ||
                  !cache_tmpl_visible(t)))
            continue;
        const char *name = i == 0 ? "." : i == 1 ? ".." : cache_tmpl_name(t);
        fuse_ino_t e_ino = t ? cache_tmpl_ino(t) : FUSE_ROOT_ID;
        n = add_entry(req, buf, size, pos, name, e_ino,
                      t ? S_IFREG : S_IFDIR, i + 1);
        if (n == 0)
            break;
        pos += n;
    }
    fuse_reply_buf(req, buf, pos);
    free(buf);
}

static void ic_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct ic_fs *fs = fs_of(req);
    tune_readahead(fs);
    struct tmpl *t = cache_find_ino(fs->c, ino);
    struct gen *g;

    if (t == NULL || cache_tmpl_removed(t) ||
        !cache_tmpl_visible(t)) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if ((fi->flags & O_ACCMODE) != O_RDONLY ||
        (fi->flags & (O_TRUNC | O_APPEND))) {
        fuse_reply_err(req, EROFS);
        return;
    }
    struct handle *h = malloc(sizeof *h);
    if (h == NULL) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    /* -ESTALE for a superseded generation's inode: the kernel looks the
     * name up again and opens the current one (see ic-cache.h). */
    int r = cache_gen_open(t, ino, &g);
    if (r < 0) {
        free(h);
        fuse_reply_err(req, -r);
        return;
    }
    h->g = g;
    ra_state_init(&h->ra);
    fi->fh = (uintptr_t)h;
    /* O_DIRECT (QEMU cache=none) must reach us on every read. */
    fi->direct_io = fs->force_direct_io || (fi->flags & O_DIRECT);
    /* An inode's pages are its generation's, which never change. */
    fi->keep_cache = !fi->direct_io;
    if (fuse_reply_open(req, fi) != 0) {
        /* The open was interrupted: no release follows. */
        ra_state_destroy(&h->ra);
        cache_gen_put(g);
        free(h);
    }
}

/* Replies of SPLICE_MIN..SPLICE_MAX bytes from a data file are spliced:
 * its page cache pages go into a pipe, and from there the kernel copies
 * them into the reader's pages, one copy instead of a pread into a buffer
 * and a write of it (at N = 32 concurrent warm boot replays, 25% less
 * daemon CPU).  Below, the extra syscalls cost more than the copy (4K
 * random reads measured no better); above, libfuse's pipe cannot hold a
 * reply (it falls back to a fresh buffer per reply: twice the CPU of a
 * pooled one for 1 MiB O_DIRECT reads). */
#define SPLICE_MIN (32u << 10)
#define SPLICE_MAX FILLBUF_SMALL

/* Each worker's pipe, made on its first spliced reply and closed when the
 * worker exits (libfuse ends idle workers). */
static pthread_key_t splice_key;
static pthread_once_t splice_once = PTHREAD_ONCE_INIT;
struct splice_pipe {
    int fd[2];
};

static void splice_pipe_free(void *arg)
{
    struct splice_pipe *p = arg;
    close(p->fd[0]);
    close(p->fd[1]);
    free(p);
}

static void splice_key_make(void)
{
    if (pthread_key_create(&splice_key, splice_pipe_free) != 0)
        splice_key = (pthread_key_t)-1;
}

static struct splice_pipe *splice_pipe_get(void)
{
    pthread_once(&splice_once, splice_key_make);
    if (splice_key == (pthread_key_t)-1)
        return NULL;
    struct splice_pipe *p = pthread_getspecific(splice_key);
    if (p != NULL)
        return p;
    if ((p = malloc(sizeof *p)) == NULL)
        return NULL;
    if (pipe2(p->fd, O_CLOEXEC | O_NONBLOCK) < 0) {
        free(p);
        return NULL;
    }
    if (fcntl(p->fd[1], F_SETPIPE_SZ, (int)SPLICE_MAX) < (int)SPLICE_MAX ||
        pthread_setspecific(splice_key, p) != 0) {
        splice_pipe_free(p);
        return NULL;
    }
    return p;
}

/* A pipe left holding bytes is of no further use. */
static void splice_pipe_drop(struct splice_pipe *p)
{
    pthread_setspecific(splice_key, NULL);
    splice_pipe_free(p);
}

/* Reply with len bytes at off of the data file fd through the worker's
 * pipe: 1 when replied, 0 when nothing was (no pipe, or the file gave
 * fewer bytes: the caller takes the checked path, which reads again,
 * verifies and refetches what it must; a reply never has a short read the
 * file does not). */
static int reply_spliced(fuse_req_t req, int fd, size_t len, off_t off)
{
    struct splice_pipe *p = splice_pipe_get();
    if (p == NULL)
        return 0;
    loff_t pos = off;
    size_t got = 0;
    while (got < len) {
        ssize_t n = splice(fd, &pos, p->fd[1], NULL, len - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < len) {
        splice_pipe_drop(p);
        return 0;
    }
    struct fuse_bufvec bv = FUSE_BUFVEC_INIT(len);
    bv.buf[0].flags = FUSE_BUF_IS_FD;
    bv.buf[0].fd = p->fd[0];
    (void)fuse_reply_data(req, &bv, 0);
    int left = 0;
    if (ioctl(p->fd[0], FIONREAD, &left) != 0 || left != 0)
        splice_pipe_drop(p); /* the reply failed half-way */
    return 1;
}

/* Fast path for present, verified blocks: straight from a staged fill
 * when one holds the whole range, else spliced from the data file (see
 * SPLICE_MIN), else one pread of the range into the reply buffer (a
 * pooled one: a fresh 1 MiB buffer per request costs more in page faults
 * than the copy). */
static int read_direct(fuse_req_t req, struct gen *g, size_t size, off_t off)
{
    size_t len;
    if (!cache_read_fd_begin(g, (uint64_t)off, size, &len))
        return 0;
    const char *data;
    void *ref;
    if (cache_stage_peek(g, (uint64_t)off, len, &data, &ref)) {
        cache_read_fd_end(g); /* staged bytes are immune to eviction */
        fuse_reply_buf(req, data, len);
        cache_stage_unref(g, ref);
        return 1;
    }
    int sfd = len >= SPLICE_MIN && len <= SPLICE_MAX ? cache_splice_fd(g)
                                                     : -1;
    if (sfd >= 0 && reply_spliced(req, sfd, len, off)) {
        cache_read_fd_end(g);
        return 1;
    }
    char *buf = fillbuf_get(len);
    int r = buf ? cache_pread_present(g, buf, (uint64_t)off, len) : -ENOMEM;
    cache_read_fd_end(g);
    if (r < 0) {
        fillbuf_put(buf);
        return 0; /* let the checked path sort it out */
    }
    fuse_reply_buf(req, buf, len);
    fillbuf_put(buf);
    return 1;
}

static void ic_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    struct handle *h = handle_of(fi);
    struct gen *g = h->g;

    if (off >= 0)
        ra_note(cache_readahead(fs_of(req)->c), &h->ra, g, (uint64_t)off, size);
    if (off >= 0 && read_direct(req, g, size, off))
        return;
    /* Blocks another reader is filling: wait for them here, then serve
     * them as hits (one deadline for both waits). */
    uint64_t deadline = cache_read_deadline(g);
    int w = off >= 0 ? cache_wait_filling(g, (uint64_t)off, size, deadline)
                     : 0;
    if (w < 0) {
        fuse_reply_err(req, EIO);
        return;
    }
    if (w == 1 && read_direct(req, g, size, off))
        return;
    char *buf = fillbuf_get(size);
    if (buf == NULL) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    /* A reader waits: demand, one flow per handle (ic-sched.h). */
    const struct origin_req who = {.cls = FETCH_DEMAND,
                                   .flow = (uint64_t)(uintptr_t)h};
    ssize_t n = off < 0 ? -EINVAL
                        : cache_read_until(g, buf, (uint64_t)off, size, &who,
                                           deadline);
    if (n < 0)
        fuse_reply_err(req, (int)-n);
    else
        fuse_reply_buf(req, buf, (size_t)n);
    fillbuf_put(buf);
}

static void ic_release(fuse_req_t req, fuse_ino_t ino,
                       struct fuse_file_info *fi)
{
    struct handle *h = handle_of(fi);
    uint64_t issued, read;
    ra_state_figures(&h->ra, &issued, &read);
    if (issued != 0)
        log_debug("template %s: a handle closed; its readahead asked for "
                  "%" PRIu64 " bytes, of which it read %" PRIu64,
                  cache_tmpl_name(cache_gen_tmpl(h->g)), issued, read);
    ra_state_destroy(&h->ra);
    cache_gen_put(h->g);
    free(h);
    fuse_reply_err(req, 0);
}

static void ic_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct ic_fs *fs = fs_of(req);
    struct statvfs sv;
    uint64_t total = 0;

    struct tmpl **v;
    size_t nt = cache_snapshot(fs->c, &v);
    for (size_t i = 0; i < nt; i++) {
        uint64_t size;
        int64_t mtime;
        cache_tmpl_attr(v[i], &size, &mtime);
        total += size;
    }
    memset(&sv, 0, sizeof sv);
    sv.f_bsize = 4096;
    sv.f_frsize = 4096;
    sv.f_blocks = (fsblkcnt_t)((total + 4095) / 4096);
    sv.f_files = nt + 1;
    sv.f_namemax = 255;
    fuse_reply_statfs(req, &sv);
}

/* ----------------------------------------------------------- xattrs */

static const char *const xattr_names[] = {
    "origin", "generation", "cached_bytes", "pinned_bytes", "quota",
    "hits", "misses", "origin_bytes", "origin_state", "readahead_skipped",
    "readahead_fetched", "readahead_used", "joined_reads",
    "pinned_bytes.boot", "pinned_bytes.high", "pinned_bytes.low",
    "pinned_present_bytes.boot", "pinned_present_bytes.high",
    "pinned_present_bytes.low",
    "local_bytes", "verified_blocks", "verify_failures",
    "verify_failures_by_source", "zero_blocks_skipped",
};

/* "SOURCE COUNT" lines, one per source that failed a check. */
static int failures_by_source(struct tmpl *t, char *out, size_t len)
{
    uint64_t n[VERIFY_MAX_SOURCES];
    int ns = cache_tmpl_verify_failures(t, n, VERIFY_MAX_SOURCES);
    size_t pos = 0;
    out[0] = '\0';
    for (int i = 0; i < ns; i++) {
        if (n[i] == 0)
            continue;
        int w = snprintf(out + pos, len - pos, "%s %" PRIu64 "\n",
                         origin_source_name(cache_tmpl_origin(t), i), n[i]);
        if (w < 0 || (size_t)w >= len - pos)
            break; /* what fits */
        pos += (size_t)w;
    }
    return (int)pos;
}

/* "pinned_bytes.CLASS", "pinned_present_bytes.CLASS": the figures of
 * pin_class_bytes, -ENODATA for another key. */
static int class_xattr(struct tmpl *t, const char *key, char *out,
                       size_t len)
{
    const char *dot = strchr(key, '.');
    int present;
    if (dot == NULL)
        return -ENODATA;
    if ((size_t)(dot - key) == strlen("pinned_bytes") &&
        strncmp(key, "pinned_bytes", strlen("pinned_bytes")) == 0)
        present = 0;
    else if ((size_t)(dot - key) == strlen("pinned_present_bytes") &&
             strncmp(key, "pinned_present_bytes",
                     strlen("pinned_present_bytes")) == 0)
        present = 1;
    else
        return -ENODATA;
    int cls = pin_class_parse(dot + 1, strlen(dot + 1));
    if (cls < 0)
        return -ENODATA;
    struct pin_class_figures f;
    pin_class_bytes(t, &f);
    return snprintf(out, len, "%" PRIu64,
                    present ? f.present[cls] : f.pinned[cls]);
}
#define N_XATTRS (sizeof xattr_names / sizeof xattr_names[0])

static int xattr_value(struct tmpl *t, struct gen *g, const char *key,
                       char *out, size_t len)
{
    struct tmpl_stats st;
    cache_tmpl_stats(t, &st);
    if (strcmp(key, "origin") == 0)
        return snprintf(out, len, "%s", cache_tmpl_origin(t)->display);
    if (strcmp(key, "quota") == 0)
        return snprintf(out, len, "%" PRIu64, cache_tmpl_quota(t));
    if (strcmp(key, "hits") == 0)
        return snprintf(out, len, "%" PRIu64, st.hits);
    if (strcmp(key, "misses") == 0)
        return snprintf(out, len, "%" PRIu64, st.misses);
    if (strcmp(key, "origin_bytes") == 0)
        return snprintf(out, len, "%" PRIu64, st.origin_bytes);
    if (strcmp(key, "readahead_skipped") == 0)
        return snprintf(out, len, "%" PRIu64, st.ra_skipped);
    if (strcmp(key, "joined_reads") == 0)
        return snprintf(out, len, "%" PRIu64, st.joined);
    if (strcmp(key, "local_bytes") == 0)
        return snprintf(out, len, "%" PRIu64, st.local_bytes);
    if (strcmp(key, "verified_blocks") == 0)
        return snprintf(out, len, "%" PRIu64, st.verified);
    if (strcmp(key, "verify_failures") == 0)
        return snprintf(out, len, "%" PRIu64, st.verify_failed);
    if (strcmp(key, "zero_blocks_skipped") == 0)
        return snprintf(out, len, "%" PRIu64, st.zero_skipped);
    if (strcmp(key, "verify_failures_by_source") == 0)
        return failures_by_source(t, out, len);
    if (strcmp(key, "pinned_bytes") == 0)
        return snprintf(out, len, "%" PRIu64, pin_bytes(t));
    if (strchr(key, '.') != NULL)
        return class_xattr(t, key, out, len);
    if (strcmp(key, "origin_state") == 0) {
        int64_t since;
        health_format(origin_state(cache_tmpl_origin(t), &since), since, out,
                      len);
        return (int)strlen(out);
    }
    /* Of the inode's own generation, like its size. */
    struct cache_gen_attr a;
    cache_gen_attr(g, &a);
    if (strcmp(key, "generation") == 0)
        return snprintf(out, len, "%" PRIu64, a.number);
    if (strcmp(key, "cached_bytes") == 0)
        return snprintf(out, len, "%" PRIu64, cache_gen_cached_bytes(g));
    uint64_t ra_fetched, ra_used;
    cache_gen_readahead(g, &ra_fetched, &ra_used);
    if (strcmp(key, "readahead_fetched") == 0)
        return snprintf(out, len, "%" PRIu64, ra_fetched);
    if (strcmp(key, "readahead_used") == 0)
        return snprintf(out, len, "%" PRIu64, ra_used);
    return -ENODATA;
}

static void ic_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                        size_t size)
{
    struct gen *g = cache_gen_get_ino(fs_of(req)->c, ino);
    char val[1100];
    int n = -ENODATA;

    if (g != NULL && strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0)
        n = xattr_value(cache_gen_tmpl(g), g, name + strlen(XATTR_PREFIX),
                        val, sizeof val);
    if (g != NULL)
        cache_gen_put(g);
    if (g == NULL) /* a superseded generation's: as in ic_getattr */
        fuse_reply_err(req, cache_find_ino(fs_of(req)->c, ino) ? ESTALE
                                                               : ENODATA);
    else if (n < 0)
        fuse_reply_err(req, ENODATA);
    else if (size == 0)
        fuse_reply_xattr(req, (size_t)n);
    else if (size < (size_t)n)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, val, (size_t)n);
}

/* Room for every "user.imgcache.NAME\0" with names up to 48 bytes: sized
 * by the number of names, not a hand-counted total (a fixed 512 bytes was
 * outgrown by 18 names, 521 bytes, and the list ran past the buffer). */
#define XATTR_LIST_MAX (N_XATTRS * (sizeof XATTR_PREFIX + 48))

static void ic_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    char buf[XATTR_LIST_MAX];
    size_t pos = 0;

    struct gen *g = cache_gen_get_ino(fs_of(req)->c, ino);
    if (g == NULL) {
        if (cache_find_ino(fs_of(req)->c, ino) != NULL)
            fuse_reply_err(req, ESTALE);
        else
            fuse_reply_xattr(req, 0);
        return;
    }
    cache_gen_put(g);
    for (size_t i = 0; i < N_XATTRS; i++) {
        int n = snprintf(buf + pos, sizeof buf - pos, "%s%s", XATTR_PREFIX,
                         xattr_names[i]);
        if (n < 0 || (size_t)n >= sizeof buf - pos) {
            /* Cannot happen (sized above); never list a cut name. */
            log_err("listxattr: the attribute names do not fit");
            fuse_reply_err(req, EIO);
            return;
        }
        pos += (size_t)n + 1;
    }
    if (size == 0)
        fuse_reply_xattr(req, pos);
    else if (size < pos)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, buf, pos);
}

/* ------------------------------------------------- read-only refusals */

static void ic_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                        const char *value, size_t size, int flags)
{
    fuse_reply_err(req, EROFS);
}

static void ic_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    fuse_reply_err(req, EROFS);
}

static void ic_create(fuse_req_t req, fuse_ino_t parent, const char *name,
                      mode_t mode, struct fuse_file_info *fi)
{
    fuse_reply_err(req, EROFS);
}

static void ic_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
                     mode_t mode, dev_t rdev)
{
    fuse_reply_err(req, EROFS);
}

static void ic_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
                     size_t size, off_t off, struct fuse_file_info *fi)
{
    fuse_reply_err(req, EROFS);
}

static void ic_init(void *userdata, struct fuse_conn_info *conn)
{
    /* Reads of one file may overlap: the engine is thread-safe. */
    if (conn->capable & FUSE_CAP_ASYNC_READ)
        conn->want |= FUSE_CAP_ASYNC_READ;
    /* Replies of SPLICE_MIN..SPLICE_MAX bytes are spliced from the data
     * files (read_direct); no SPLICE_MOVE: the pages are the data file's
     * page cache, not ours to give away. */
    conn->want &= ~(unsigned)FUSE_CAP_SPLICE_MOVE;
    if (conn->capable & FUSE_CAP_SPLICE_WRITE)
        conn->want |= FUSE_CAP_SPLICE_WRITE;
    else
        conn->want &= ~(unsigned)FUSE_CAP_SPLICE_WRITE;
    /* Let the kernel drop cached pages when mtime/size change. */
    /* No FUSE_CAP_AUTO_INVAL_DATA: an inode's pages never go stale (one
     * generation each), and it would cost a GETATTR per buffered read
     * once the attributes expire. */
    conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
    /* Buffered reads (the kernel's readahead) and asynchronous O_DIRECT
     * (QEMU's aio=native, io_uring) are background requests: beyond
     * max_background the kernel holds them in one queue for the whole
     * mount, unseen by us, so with the default 12 a dozen readers of a
     * hung origin held every other template's reads there, and their own
     * deadlines started only once they reached us.  IC_MAX_BACKGROUND
     * leaves room for hundreds of blocked ones; each reaching us takes a
     * worker (main.c: IC_MAX_THREADS is larger still).  The kernel caps
     * it for an unprivileged daemon (fuse's max_user_bgreq). */
    conn->max_background = IC_MAX_BACKGROUND;
    conn->congestion_threshold = IC_MAX_BACKGROUND * 3 / 4;
}

const struct fuse_lowlevel_ops ic_fuse_ops = {
    .init = ic_init,
    .lookup = ic_lookup,
    .getattr = ic_getattr,
    .setattr = ic_setattr,
    .readdir = ic_readdir,
    .open = ic_open,
    .read = ic_read,
    .release = ic_release,
    .statfs = ic_statfs,
    .getxattr = ic_getxattr,
    .listxattr = ic_listxattr,
    .setxattr = ic_setxattr,
    .removexattr = ic_removexattr,
    .create = ic_create,
    .mknod = ic_mknod,
    .write = ic_write,
};
