/* Block manifests (contract and file format in include/ic-manifest.h).
 *
 * A manifest is untrusted input (it comes from an origin, a mirror or a
 * proxy): open validates every header field and the trailer checksum over
 * the exact length before any accessor can run, so the accessors need no
 * checks of their own beyond an index bound.  Building and verifying share
 * one scan: worker threads take chunks of consecutive blocks from an
 * atomic counter (so the file is read nearly in order, which keeps the
 * kernel's readahead useful), pread each chunk whole, and hash its blocks
 * into 32-byte entries.  A block wholly inside a hole (SEEK_DATA/SEEK_HOLE)
 * is all zeros by definition and is not read: a sparse 100 GiB image with
 * 2 GiB of data costs 2 GiB of reads. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "ic-error.h"
#include "ic-manifest.h"
#include "ic-util.h"

#define TRAILER_LEN MANIFEST_HASH_LEN
/* Bytes a worker reads per pread: large enough for the disk, small enough
 * that 2 x threads of them are no burden. */
#define CHUNK_BYTES (4u << 20)
#define MAX_THREADS 256

struct manifest {
    const uint8_t *base;  /* the whole file, validated */
    size_t len;
    void *map;            /* manifest_open's mapping, NULL for _open_mem */
    uint64_t file_size;
    uint64_t nblocks;
    uint32_t block_size;
    int has_mtime;        /* MANIFEST_F_MTIME */
    int64_t mtime_ns;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

/* The SHA-256 implementation, fetched from OpenSSL's provider once: with
 * EVP_sha256() every EVP_Digest fetches it again under a lock, which costs
 * a fifth of the speed on 4 KiB blocks.  Kept for the process's life. */
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static const EVP_MD *md_sha256;

static void md_fetch(void)
{
    md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (md_sha256 == NULL)
        md_sha256 = EVP_sha256(); /* the implicit fetch, slower */
}

/* SHA-256 of buf.  0, or -ENOMEM when OpenSSL could not set up a digest
 * context (its only way to fail here). */
static int sha256(const void *buf, size_t len, uint8_t out[MANIFEST_HASH_LEN])
{
    unsigned int n = 0;

    pthread_once(&md_once, md_fetch);
    if (EVP_Digest(buf, len, out, &n, md_sha256, NULL) != 1 ||
        n != MANIFEST_HASH_LEN)
        return -ENOMEM;
    return 0;
}

#define MAP_CHUNK (4u << 20)

/* The same of a file mapping (page-aligned), in chunks, each dropped from
 * our page tables once hashed: the checksum reads every page of the
 * manifest (50 MB for a 100 GiB template), which then stays in the page
 * cache, not in the daemon's resident set; the few entries a read checks
 * fault back in from the page cache.  0 or -ENOMEM, as sha256(). */
static int sha256_mapped(const uint8_t *map, size_t len,
                         uint8_t out[MANIFEST_HASH_LEN])
{
    unsigned int n = 0;
    int ok;

    pthread_once(&md_once, md_fetch);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    ok = ctx != NULL && EVP_DigestInit_ex(ctx, md_sha256, NULL) == 1;
    for (size_t off = 0; ok && off < len; off += MAP_CHUNK) {
        size_t l = len - off < MAP_CHUNK ? len - off : MAP_CHUNK;
        ok = EVP_DigestUpdate(ctx, map + off, l) == 1;
        (void)madvise((void *)(map + off), l, MADV_DONTNEED);
    }
    ok = ok && EVP_DigestFinal_ex(ctx, out, &n) == 1 &&
         n == MANIFEST_HASH_LEN;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -ENOMEM;
}

void manifest_hash(const void *buf, size_t len, uint8_t out[MANIFEST_HASH_LEN])
{
    /* A failed digest must not look like any block's hash, and above all
     * not like the zero-block marker: all 0xff matches no real block, so
     * a check against it fails (refetch, EIO), never passes. */
    if (sha256(buf, len, out) < 0)
        memset(out, 0xff, MANIFEST_HASH_LEN);
}

bool manifest_is_zero(const void *buf, size_t len)
{
    return buf_is_zero(buf, len);
}

static int block_size_ok(uint32_t bs, char *err, size_t errlen)
{
    if (bs == 0 || (bs & (bs - 1)) != 0) {
        set_err(err, errlen, "block size %" PRIu32 " is not a power of two",
                bs);
        return -EINVAL;
    }
    if (bs < MANIFEST_MIN_BLOCK || bs > MANIFEST_MAX_BLOCK) {
        set_err(err, errlen, "block size %" PRIu32 " is out of range (%u .. %u)",
                bs, MANIFEST_MIN_BLOCK, MANIFEST_MAX_BLOCK);
        return -EINVAL;
    }
    return 0;
}

/* ---------------------------------------------------------------- open */

/* Check buf as a whole manifest and fill m.  0 or -EINVAL (err says why).
 * Every read is inside [buf, buf + len): the header only once len >= 64,
 * the entries and trailer only once len is exactly their sum. */
static int validate(const uint8_t *buf, size_t len, int mapped,
                    struct manifest *m, char *err, size_t errlen)
{
    if (len < MANIFEST_HEADER_LEN) {
        set_err(err, errlen, "truncated: %zu bytes, shorter than the %d-byte "
                "header", len, MANIFEST_HEADER_LEN);
        return -EINVAL;
    }
    if (memcmp(buf, MANIFEST_MAGIC, 8) != 0) {
        set_err(err, errlen, "bad magic (not an imgcache manifest)");
        return -EINVAL;
    }
    uint32_t version = le32(buf + 8), alg = le32(buf + 12);
    uint64_t size = le64(buf + 16);
    uint32_t bs = le32(buf + 24), flags = le32(buf + 28);
    uint64_t nblocks = le64(buf + 32);

    if (version != MANIFEST_VERSION) {
        set_err(err, errlen, "unsupported version %" PRIu32 " (this imgcache "
                "reads version %d)", version, MANIFEST_VERSION);
        return -EINVAL;
    }
    if (alg != MANIFEST_HASH_SHA256) {
        set_err(err, errlen, "unknown hash algorithm %" PRIu32 " (1 = SHA-256)",
                alg);
        return -EINVAL;
    }
    int rc = block_size_ok(bs, err, errlen);
    if (rc < 0)
        return rc;
    if ((flags & ~MANIFEST_F_MTIME) != 0) {
        set_err(err, errlen, "unknown flags 0x%" PRIx32,
                flags & ~MANIFEST_F_MTIME);
        return -EINVAL;
    }
    uint64_t mtime = le64(buf + 40);
    if (!(flags & MANIFEST_F_MTIME) && mtime != 0) {
        set_err(err, errlen, "template mtime set without its flag");
        return -EINVAL;
    }
    if (!buf_is_zero(buf + 48, MANIFEST_HEADER_LEN - 48)) {
        set_err(err, errlen, "reserved header bytes are not zero");
        return -EINVAL;
    }
    uint64_t want = size / bs + (size % bs != 0);
    if (nblocks != want) {
        set_err(err, errlen, "wrong nblocks %" PRIu64 ": a file of %" PRIu64
                " bytes in blocks of %" PRIu32 " has %" PRIu64, nblocks, size,
                bs, want);
        return -EINVAL;
    }
    /* nblocks <= 2^64 / 4096, so 32 * nblocks cannot wrap a uint64_t;
     * the sum is compared as uint64_t before it is ever a size_t. */
    uint64_t need = MANIFEST_HEADER_LEN + nblocks * MANIFEST_HASH_LEN +
                    TRAILER_LEN;
    if ((uint64_t)len < need) {
        uint64_t have = (len - MANIFEST_HEADER_LEN) / MANIFEST_HASH_LEN;
        if (have >= nblocks)
            set_err(err, errlen, "truncated: %" PRIu64 " entries of %" PRIu64
                    ", checksum missing", nblocks, nblocks);
        else
            set_err(err, errlen, "truncated: %" PRIu64 " entries of %" PRIu64,
                    have, nblocks);
        return -EINVAL;
    }
    if ((uint64_t)len > need) {
        set_err(err, errlen, "%" PRIu64 " extra bytes after the checksum "
                "(%zu bytes, %" PRIu64 " expected for %" PRIu64 " blocks)",
                (uint64_t)len - need, len, need, nblocks);
        return -EINVAL;
    }
    uint8_t sum[MANIFEST_HASH_LEN];
    size_t body = len - TRAILER_LEN;
    if ((mapped ? sha256_mapped(buf, body, sum)
                : sha256(buf, body, sum)) < 0) {
        set_err(err, errlen, "out of memory computing the checksum");
        return -ENOMEM;
    }
    if (memcmp(sum, buf + body, TRAILER_LEN) != 0) {
        set_err(err, errlen, "checksum mismatch (the manifest is damaged)");
        return -EINVAL;
    }
    m->base = buf;
    m->len = len;
    m->file_size = size;
    m->block_size = bs;
    m->nblocks = nblocks;
    m->has_mtime = (flags & MANIFEST_F_MTIME) != 0;
    m->mtime_ns = (int64_t)mtime; /* two's complement, as written */
    return 0;
}

static int open_buf(const void *buf, size_t len, int mapped,
                    struct manifest **out, char *err, size_t errlen)
{
    struct manifest *m = calloc(1, sizeof *m);

    *out = NULL;
    if (m == NULL) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = validate(buf, len, mapped, m, err, errlen);
    if (rc < 0) {
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int manifest_open_mem(const void *buf, size_t len, struct manifest **out,
                      char *err, size_t errlen)
{
    return open_buf(buf, len, 0, out, err, errlen);
}

int manifest_open(const char *path, struct manifest **out, char *err,
                  size_t errlen)
{
    struct stat st;
    int rc;

    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        set_err(err, errlen, "%s", strerror(-rc));
        return rc;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        set_err(err, errlen, "fstat: %s", strerror(-rc));
        close(fd);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, errlen, "not a regular file");
        close(fd);
        return -EINVAL;
    }
    if ((uint64_t)st.st_size < MANIFEST_HEADER_LEN) {
        /* mmap cannot map 0 bytes; validate words the message and reads
         * nothing of a buffer this short. */
        close(fd);
        return manifest_open_mem(NULL, (size_t)st.st_size, out, err, errlen);
    }
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    rc = map == MAP_FAILED ? -errno : 0;
    close(fd);
    if (rc < 0) {
        set_err(err, errlen, "mmap: %s", strerror(-rc));
        return rc;
    }
    rc = open_buf(map, len, 1, out, err, errlen);
    if (rc < 0) {
        munmap(map, len);
        return rc;
    }
    (*out)->map = map;
    return 0;
}

void manifest_close(struct manifest *m)
{
    if (m == NULL)
        return;
    if (m->map != NULL)
        munmap(m->map, m->len);
    free(m);
}

uint64_t manifest_file_size(const struct manifest *m) { return m->file_size; }
uint32_t manifest_block_size(const struct manifest *m) { return m->block_size; }
uint64_t manifest_nblocks(const struct manifest *m) { return m->nblocks; }

bool manifest_template_mtime(const struct manifest *m, int64_t *ns)
{
    if (m->has_mtime && ns != NULL)
        *ns = m->mtime_ns;
    return m->has_mtime;
}

static const uint8_t *entry_at(const struct manifest *m, uint64_t idx)
{
    return m->base + MANIFEST_HEADER_LEN + idx * MANIFEST_HASH_LEN;
}

int manifest_entry(const struct manifest *m, uint64_t idx,
                   uint8_t out[MANIFEST_HASH_LEN])
{
    if (idx >= m->nblocks)
        return -ERANGE;
    const uint8_t *e = entry_at(m, idx);
    if (buf_is_zero(e, MANIFEST_HASH_LEN))
        return 1;
    memcpy(out, e, MANIFEST_HASH_LEN);
    return 0;
}

/* ---------------------------------------------------------------- scan */

struct scan;
/* Called by a worker with the entries of blocks first .. first + n - 1
 * (n * 32 bytes).  0 or -errno with s->err filled. */
typedef int (*chunk_fn)(struct scan *s, uint64_t first, uint64_t n,
                        const uint8_t *entries);

struct scan {
    int fd;
    uint64_t size;
    uint32_t bs;
    uint64_t nblocks;
    uint64_t chunk_blocks;
    chunk_fn done;
    void *ctx;                /* the caller's, for done */
    atomic_uint_fast64_t next; /* the next chunk to take */
    atomic_int stop;          /* set with the first error */
    atomic_int no_holes;      /* SEEK_DATA failed: read every block */
    int read_all;             /* read every block, holes too (--verify) */
    atomic_uint_fast64_t bytes_read;
    pthread_mutex_t mu;       /* protects rc and err */
    int rc;
    char err[256];
};

static void scan_fail(struct scan *s, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record the first failure; the others only stop. */
static void scan_fail(struct scan *s, int rc, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&s->mu);
    if (s->rc == 0) {
        s->rc = rc;
        va_start(ap, fmt);
        vsnprintf(s->err, sizeof s->err, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&s->mu);
    atomic_store(&s->stop, 1);
}

/* The hole search gave up: the chunk is read whole, as before SEEK_DATA. */
static void all_data(struct scan *s, uint8_t *need, uint64_t n)
{
    atomic_store(&s->no_holes, 1);
    memset(need, 1, (size_t)n);
}

/* Set need[i] for each block i of the n blocks of the chunk [off, end)
 * that holds any data; the others lie wholly in holes.  A filesystem
 * without SEEK_DATA (EINVAL) or any other failure of lseek means every
 * block is read.  lseek moves the fd's offset: the scan reads by pread
 * only, so that is harmless, even shared between workers. */
static void find_data(struct scan *s, uint64_t off, uint64_t end,
                      uint8_t *need, uint64_t n)
{
    if (atomic_load(&s->no_holes)) {
        memset(need, 1, (size_t)n);
        return;
    }
    memset(need, 0, (size_t)n);
    for (uint64_t pos = off; pos < end;) {
        off_t d = lseek(s->fd, (off_t)pos, SEEK_DATA);
        if (d < 0) {
            /* ENXIO: no data from pos to the end.  A file truncated
             * under the scan also says so; the callers' fstat after the
             * scan catches that. */
            if (errno != ENXIO)
                all_data(s, need, n);
            return;
        }
        if ((uint64_t)d < pos) { /* no filesystem should: trust nothing */
            all_data(s, need, n);
            return;
        }
        if ((uint64_t)d >= end)
            return;
        off_t h = lseek(s->fd, d, SEEK_HOLE);
        if (h < 0 || h <= d) {
            all_data(s, need, n);
            return;
        }
        uint64_t he = (uint64_t)h < end ? (uint64_t)h : end;
        uint64_t b0 = ((uint64_t)d - off) / s->bs;
        uint64_t b1 = (he - off + s->bs - 1) / s->bs;
        for (uint64_t b = b0; b < b1 && b < n; b++)
            need[b] = 1;
        pos = he;
    }
}

static void *scan_worker(void *arg)
{
    struct scan *s = arg;
    size_t cap = (size_t)(s->chunk_blocks * s->bs);
    /* Page-aligned: the kernel's copy from the page cache into a buffer
     * 16 bytes off a page boundary (plain malloc of 4 MiB) runs at a
     * third of the speed here, and costs more than the hashing. */
    uint8_t *buf = aligned_alloc(4096, cap);
    uint8_t *ent = malloc((size_t)s->chunk_blocks * MANIFEST_HASH_LEN);
    uint8_t *need = malloc((size_t)s->chunk_blocks);

    if (buf == NULL || ent == NULL || need == NULL) {
        scan_fail(s, -ENOMEM, "out of memory");
        goto out;
    }
    while (!atomic_load(&s->stop)) {
        uint64_t c = atomic_fetch_add(&s->next, 1);
        uint64_t first = c * s->chunk_blocks;
        if (first >= s->nblocks)
            break;
        uint64_t n = s->nblocks - first < s->chunk_blocks
                         ? s->nblocks - first : s->chunk_blocks;
        uint64_t off = first * s->bs;
        size_t len = (size_t)(s->size - off < cap ? s->size - off : cap);
        find_data(s, off, off + len, need, n);
        /* Each run of blocks with data in one pread, as the whole chunk
         * was before holes were skipped. */
        for (uint64_t a = 0; a < n;) {
            if (!need[a]) {
                a++;
                continue;
            }
            uint64_t b = a + 1;
            while (b < n && need[b])
                b++;
            size_t ro = (size_t)(a * s->bs);
            size_t rl = (size_t)(b * s->bs) < len ? (size_t)(b * s->bs) - ro
                                                  : len - ro;
            ssize_t got = pread_full(s->fd, buf + ro, rl, off + ro);
            if (got < 0) {
                scan_fail(s, (int)got, "read at offset %" PRIu64 ": %s",
                          off + ro, strerror((int)-got));
                goto out;
            }
            if ((size_t)got < rl) {
                scan_fail(s, -ESTALE, "the file ends at %" PRIu64 " bytes, "
                          "not %" PRIu64 ": it changed while being read",
                          off + ro + (uint64_t)got, s->size);
                goto out;
            }
            atomic_fetch_add(&s->bytes_read, rl);
            a = b;
        }
        for (uint64_t i = 0; i < n; i++) {
            size_t o = (size_t)(i * s->bs);
            size_t bl = len - o < s->bs ? len - o : s->bs;
            uint8_t *e = ent + i * MANIFEST_HASH_LEN;
            if (!need[i] || buf_is_zero(buf + o, bl))
                memset(e, 0, MANIFEST_HASH_LEN);
            else if (sha256(buf + o, bl, e) < 0) {
                scan_fail(s, -ENOMEM, "out of memory hashing");
                goto out;
            }
        }
        if (s->done(s, first, n, ent) < 0)
            break;
    }
out:
    free(buf);
    free(ent);
    free(need);
    return NULL;
}

/* Hash every block of s->fd with `threads` workers, handing each chunk's
 * entries to s->done.  0 or -errno with s->err filled. */
static int scan_run(struct scan *s, int threads)
{
    pthread_t tid[MAX_THREADS];
    int started = 0;

    s->chunk_blocks = CHUNK_BYTES / s->bs ? CHUNK_BYTES / s->bs : 1;
    uint64_t nchunks = s->nblocks / s->chunk_blocks +
                       (s->nblocks % s->chunk_blocks != 0);
    if (threads < 1)
        threads = 1;
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if ((uint64_t)threads > nchunks)
        threads = nchunks > 0 ? (int)nchunks : 1;
    atomic_init(&s->next, 0);
    atomic_init(&s->stop, 0);
    atomic_init(&s->no_holes, s->read_all);
    atomic_init(&s->bytes_read, 0);
    pthread_mutex_init(&s->mu, NULL);
    s->rc = 0;
    s->err[0] = '\0';
    /* Many workers read the file front to back together. */
    (void)posix_fadvise(s->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    for (int i = 0; i < threads; i++) {
        int e = pthread_create(&tid[i], NULL, scan_worker, s);
        if (e != 0) {
            if (started == 0) {
                scan_fail(s, -e, "cannot start a thread: %s", strerror(e));
                break;
            }
            break; /* fewer workers do the same work */
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    pthread_mutex_destroy(&s->mu);
    return s->rc;
}

/* The file's size, from fstat; -EINVAL for anything but a regular file. */
static int file_size_of(int fd, struct stat *st, char *err, size_t errlen)
{
    if (fstat(fd, st) < 0) {
        int rc = -errno;
        set_err(err, errlen, "fstat: %s", strerror(-rc));
        return rc;
    }
    if (!S_ISREG(st->st_mode)) {
        set_err(err, errlen, "not a regular file");
        return -EINVAL;
    }
    return 0;
}

/* --------------------------------------------------------------- build */

/* build: each chunk's entries go straight to their place in the .tmp. */
static int build_chunk(struct scan *s, uint64_t first, uint64_t n,
                       const uint8_t *entries)
{
    int out = *(int *)s->ctx;
    ssize_t w = pwrite_full(out, entries, (size_t)n * MANIFEST_HASH_LEN,
                            MANIFEST_HEADER_LEN + first * MANIFEST_HASH_LEN);
    if (w < 0) {
        scan_fail(s, (int)w, "write: %s", strerror((int)-w));
        return (int)w;
    }
    return 0;
}

/* SHA-256 of the first len bytes of fd, read back through the page cache
 * (bounded memory however large the manifest).  0 or -errno. */
static int hash_file_prefix(int fd, uint64_t len, uint8_t out[MANIFEST_HASH_LEN],
                            char *err, size_t errlen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t cap = 1u << 20;
    uint8_t *buf = aligned_alloc(4096, cap); /* see scan_worker */
    int rc = 0;

    pthread_once(&md_once, md_fetch);
    if (ctx == NULL || buf == NULL ||
        EVP_DigestInit_ex(ctx, md_sha256, NULL) != 1) {
        set_err(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    for (uint64_t off = 0; off < len;) {
        size_t want = len - off < cap ? (size_t)(len - off) : cap;
        ssize_t got = pread_full(fd, buf, want, off);
        if (got < 0 || (size_t)got != want) {
            rc = got < 0 ? (int)got : -EIO;
            set_err(err, errlen, "reading back: %s", strerror(-rc));
            goto out;
        }
        if (EVP_DigestUpdate(ctx, buf, want) != 1) {
            set_err(err, errlen, "out of memory");
            rc = -ENOMEM;
            goto out;
        }
        off += want;
    }
    if (EVP_DigestFinal_ex(ctx, out, NULL) != 1) {
        set_err(err, errlen, "out of memory");
        rc = -ENOMEM;
    }
out:
    EVP_MD_CTX_free(ctx);
    free(buf);
    return rc;
}

/* fsync the directory holding path, so that the rename is durable. */
static int sync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else if ((size_t)(slash - path) < sizeof dir)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    else
        return -ENAMETOOLONG;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int manifest_build(int fd, uint32_t block_size, int threads,
                   const char *out_path, uint64_t *bytes_read, char *err,
                   size_t errlen)
{
    struct stat st, st2;
    char tmp[PATH_MAX];
    uint8_t hdr[MANIFEST_HEADER_LEN] = {0};
    uint8_t sum[MANIFEST_HASH_LEN];
    int rc = block_size_ok(block_size, err, errlen);

    if (rc < 0)
        return rc;
    rc = file_size_of(fd, &st, err, errlen);
    if (rc < 0)
        return rc;
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out_path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) {
        set_err(err, errlen, "%s: name too long", out_path);
        return -ENAMETOOLONG;
    }
    uint64_t size = (uint64_t)st.st_size;
    uint64_t nblocks = size / block_size + (size % block_size != 0);
    uint64_t body = MANIFEST_HEADER_LEN + nblocks * MANIFEST_HASH_LEN;

    int out = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        rc = -errno;
        set_err(err, errlen, "%s: %s", tmp, strerror(-rc));
        return rc;
    }
    memcpy(hdr, MANIFEST_MAGIC, 8);
    put_le32(hdr + 8, MANIFEST_VERSION);
    put_le32(hdr + 12, MANIFEST_HASH_SHA256);
    put_le64(hdr + 16, size);
    put_le32(hdr + 24, block_size);
    /* The version hashed: checked unchanged after the scan below. */
    int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 +
                    st.st_mtim.tv_nsec;
    put_le32(hdr + 28, MANIFEST_F_MTIME);
    put_le64(hdr + 32, nblocks);
    put_le64(hdr + 40, (uint64_t)mtime);
    ssize_t w = pwrite_full(out, hdr, sizeof hdr, 0);
    if (w < 0) {
        rc = (int)w;
        set_err(err, errlen, "%s: write: %s", tmp, strerror(-rc));
        goto fail;
    }

    struct scan s = {.fd = fd, .size = size, .bs = block_size,
                     .nblocks = nblocks, .done = build_chunk, .ctx = &out};
    rc = scan_run(&s, threads);
    if (rc < 0) {
        set_err(err, errlen, "%s", s.err);
        goto fail;
    }
    if (bytes_read != NULL)
        *bytes_read = atomic_load(&s.bytes_read);
    /* A file rewritten while we read it would give a manifest of no
     * version of it, under the mtime of one. */
    if (fstat(fd, &st2) < 0) {
        rc = -errno;
        set_err(err, errlen, "fstat: %s", strerror(-rc));
        goto fail;
    }
    if (st2.st_size != st.st_size || st2.st_mtim.tv_sec != st.st_mtim.tv_sec ||
        st2.st_mtim.tv_nsec != st.st_mtim.tv_nsec) {
        set_err(err, errlen, "the file changed while being read");
        rc = -ESTALE;
        goto fail;
    }
    rc = hash_file_prefix(out, body, sum, err, errlen);
    if (rc < 0)
        goto fail;
    w = pwrite_full(out, sum, sizeof sum, body);
    if (w < 0) {
        rc = (int)w;
        set_err(err, errlen, "%s: write: %s", tmp, strerror(-rc));
        goto fail;
    }
    if (fsync(out) < 0) {
        rc = -errno;
        set_err(err, errlen, "%s: fsync: %s", tmp, strerror(-rc));
        goto fail;
    }
    if (close(out) < 0) {
        out = -1;
        rc = -errno;
        set_err(err, errlen, "%s: close: %s", tmp, strerror(-rc));
        goto fail;
    }
    out = -1;
    if (rename(tmp, out_path) < 0) {
        rc = -errno;
        set_err(err, errlen, "rename to %s: %s", out_path, strerror(-rc));
        goto fail;
    }
    rc = sync_parent(out_path);
    if (rc < 0) {
        set_err(err, errlen, "%s: fsync of its directory: %s", out_path,
                strerror(-rc));
        return rc;
    }
    return 0;
fail:
    if (out >= 0)
        close(out);
    unlink(tmp);
    return rc;
}

/* -------------------------------------------------------------- verify */

struct verify_ctx {
    const struct manifest *m;
    pthread_mutex_t mu;     /* protects the fields below */
    uint64_t nbad;
    uint64_t *first_bad;    /* the smallest indexes, ascending */
    size_t max_first, nfirst;
};

/* Keep idx if it is among the max_first smallest.  Caller holds v->mu. */
static void keep_bad(struct verify_ctx *v, uint64_t idx)
{
    size_t i = v->nfirst;

    if (v->max_first == 0)
        return;
    if (i == v->max_first) {
        if (idx >= v->first_bad[i - 1])
            return;
        i--;
    } else {
        v->nfirst++;
    }
    while (i > 0 && v->first_bad[i - 1] > idx) {
        v->first_bad[i] = v->first_bad[i - 1];
        i--;
    }
    v->first_bad[i] = idx;
}

static int verify_chunk(struct scan *s, uint64_t first, uint64_t n,
                        const uint8_t *entries)
{
    struct verify_ctx *v = s->ctx;

    for (uint64_t i = 0; i < n; i++) {
        if (memcmp(entries + i * MANIFEST_HASH_LEN, entry_at(v->m, first + i),
                   MANIFEST_HASH_LEN) == 0)
            continue;
        pthread_mutex_lock(&v->mu);
        v->nbad++;
        keep_bad(v, first + i);
        pthread_mutex_unlock(&v->mu);
    }
    return 0;
}

int manifest_verify(const struct manifest *m, int fd, int threads,
                    uint64_t *first_bad, size_t max_first, uint64_t *nbad,
                    char *err, size_t errlen)
{
    struct stat st;
    int rc = file_size_of(fd, &st, err, errlen);

    *nbad = 0;
    if (rc < 0)
        return rc;
    if ((uint64_t)st.st_size != m->file_size) {
        set_err(err, errlen, "the file has %" PRIu64 " bytes, the manifest "
                "describes %" PRIu64, (uint64_t)st.st_size, m->file_size);
        return -ESTALE;
    }
    struct verify_ctx v = {.m = m, .first_bad = first_bad,
                           .max_first = max_first};
    pthread_mutex_init(&v.mu, NULL);
    struct scan s = {.fd = fd, .size = m->file_size, .bs = m->block_size,
                     .nblocks = m->nblocks, .done = verify_chunk, .ctx = &v};
    /* The check reads every block, holes too: it must not trust the
     * hole search the build trusted (a filesystem that reports a hole over
     * data would make both agree on zeros). */
    s.read_all = 1;
    rc = scan_run(&s, threads);
    pthread_mutex_destroy(&v.mu);
    if (rc < 0) {
        set_err(err, errlen, "%s", s.err);
        return rc;
    }
    /* A file cut short under the scan reads as holes past its new end
     * (SEEK_DATA: ENXIO), which a zero block's entry would match. */
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        set_err(err, errlen, "fstat: %s", strerror(-rc));
        return rc;
    }
    if ((uint64_t)st.st_size != m->file_size) {
        set_err(err, errlen, "the file changed while being read");
        return -ESTALE;
    }
    *nbad = v.nbad;
    return 0;
}
