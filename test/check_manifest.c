/* Unit tests for fs/base/manifest.c: a built manifest describes its file
 * exactly (every block's SHA-256, zero blocks marked, the short last
 * block), and open refuses every deviation from the format with a message
 * saying which. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ic-manifest.h"
#include "ic-util.h"

#include "ck-tmpdir.h"

CK_TMPDIR_FIXTURES("check_manifest")

#define BS 4096u
/* More than one 4 MiB scan chunk, so that several workers share the file,
 * and a short last block. */
#define FSIZE ((uint64_t)(5u << 20) + 1000)

static void path_in(char *p, size_t len, const char *name)
{
    snprintf(p, len, "%s/%s", tmpdir, name);
}

/* The test file: pseudo-random bytes, blocks 3 and 1100 all zeros, block 7
 * a copy of block 6, and a short last block.  Returns its bytes. */
static uint8_t *make_file(const char *path)
{
    uint8_t *b = malloc(FSIZE);
    uint32_t x = 12345;

    ck_assert_ptr_nonnull(b);
    for (uint64_t i = 0; i < FSIZE; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = (uint8_t)(x >> 16);
    }
    memset(b + 3 * BS, 0, BS);
    memset(b + 1100 * BS, 0, BS);
    memcpy(b + 7 * BS, b + 6 * BS, BS);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite_full(fd, b, FSIZE, 0), (ssize_t)FSIZE);
    close(fd);
    return b;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fstat(fd, &st), 0);
    uint8_t *b = malloc(st.st_size + 64);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(pread_full(fd, b, st.st_size, 0), st.st_size);
    close(fd);
    *len = st.st_size;
    return b;
}

static void build(const char *file, const char *out, uint32_t bs, int threads)
{
    char err[256] = "";
    int fd = open(file, O_RDONLY);

    ck_assert_int_ge(fd, 0);
    int rc = manifest_build(fd, bs, threads, out, NULL, err, sizeof err);
    ck_assert_msg(rc == 0, "build: %d %s", rc, err);
    close(fd);
}

/* How many entries tmpdir has (to see that no .tmp is left behind). */
static int dir_entries(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

START_TEST(round_trip)
{
    char file[128], out[128], err[256] = "";
    struct manifest *m = NULL;
    uint8_t h[MANIFEST_HASH_LEN], want[MANIFEST_HASH_LEN];

    path_in(file, sizeof file, "t.img");
    path_in(out, sizeof out, "t.img" MANIFEST_SUFFIX);
    uint8_t *b = make_file(file);
    build(file, out, BS, 3);
    ck_assert_int_eq(dir_entries(), 2);

    ck_assert_int_eq(manifest_open(out, &m, err, sizeof err), 0);
    ck_assert_uint_eq(manifest_file_size(m), FSIZE);
    /* Bound to the version hashed: its mtime to the nanosecond. */
    struct stat st;
    int64_t ns = 0;
    ck_assert_int_eq(stat(file, &st), 0);
    ck_assert(manifest_template_mtime(m, &ns));
    ck_assert_int_eq(ns, (int64_t)st.st_mtim.tv_sec * 1000000000 +
                             st.st_mtim.tv_nsec);
    ck_assert_uint_eq(manifest_block_size(m), BS);
    uint64_t n = manifest_nblocks(m);
    ck_assert_uint_eq(n, FSIZE / BS + 1);
    for (uint64_t i = 0; i < n; i++) {
        size_t len = i + 1 < n ? BS : FSIZE % BS;
        int rc = manifest_entry(m, i, h);
        if (i == 3 || i == 1100) {
            ck_assert_int_eq(rc, 1);
            ck_assert(manifest_is_zero(b + i * BS, len));
            continue;
        }
        ck_assert_msg(rc == 0, "block %llu", (unsigned long long)i);
        manifest_hash(b + i * BS, len, want);
        ck_assert_mem_eq(h, want, MANIFEST_HASH_LEN);
    }
    /* Same bytes, same entry; the short last block is hashed short. */
    uint8_t h6[MANIFEST_HASH_LEN];
    manifest_entry(m, 6, h6);
    manifest_entry(m, 7, h);
    ck_assert_mem_eq(h, h6, MANIFEST_HASH_LEN);
    uint8_t padded[BS] = {0};
    memcpy(padded, b + (n - 1) * BS, FSIZE % BS);
    manifest_hash(padded, BS, want);
    manifest_entry(m, n - 1, h);
    ck_assert_mem_ne(h, want, MANIFEST_HASH_LEN);
    ck_assert_int_eq(manifest_entry(m, n, h), -ERANGE);
    ck_assert_int_eq(manifest_entry(m, UINT64_MAX, h), -ERANGE);
    manifest_close(m);

    /* The number of workers changes nothing in the output. */
    char out1[128];
    path_in(out1, sizeof out1, "one");
    build(file, out1, BS, 1);
    size_t l1, l3;
    uint8_t *m1 = slurp(out1, &l1), *m3 = slurp(out, &l3);
    ck_assert_uint_eq(l1, l3);
    ck_assert_uint_eq(l1, 64 + 32 * n + 32);
    ck_assert_mem_eq(m1, m3, l1);
    free(m1);
    free(m3);
    free(b);
}
END_TEST

START_TEST(sha256_known)
{
    /* FIPS 180-2's "abc", so the entries are SHA-256 and nothing else. */
    static const uint8_t abc[MANIFEST_HASH_LEN] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
        0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
        0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    uint8_t h[MANIFEST_HASH_LEN];

    manifest_hash("abc", 3, h);
    ck_assert_mem_eq(h, abc, MANIFEST_HASH_LEN);
    char z[100] = {0};
    ck_assert(manifest_is_zero(z, sizeof z));
    z[99] = 1;
    ck_assert(!manifest_is_zero(z, sizeof z));
    ck_assert(manifest_is_zero(z, 0));
}
END_TEST

START_TEST(verify)
{
    char file[128], out[128], err[256] = "";
    struct manifest *m = NULL;
    uint64_t bad[4], nbad = 99;

    path_in(file, sizeof file, "t.img");
    path_in(out, sizeof out, "t.img" MANIFEST_SUFFIX);
    free(make_file(file));
    build(file, out, BS, 2);
    ck_assert_int_eq(manifest_open(out, &m, err, sizeof err), 0);
    int fd = open(file, O_RDWR);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(manifest_verify(m, fd, 2, bad, 4, &nbad, err, sizeof err),
                     0);
    ck_assert_uint_eq(nbad, 0);

    /* One byte in block 1200, then one in the (zero) block 3, one in the
     * short last block, and three more: the smallest four, in order. */
    uint64_t flip[] = {1200 * BS + 17, 3 * BS, FSIZE - 1, 9 * BS,
                       1201 * BS, 1202 * BS};
    for (size_t i = 0; i < sizeof flip / sizeof flip[0]; i++) {
        uint8_t c;
        ck_assert_int_eq(pread_full(fd, &c, 1, flip[i]), 1);
        c ^= 0x40;
        ck_assert_int_eq(pwrite_full(fd, &c, 1, flip[i]), 1);
    }
    ck_assert_int_eq(manifest_verify(m, fd, 3, bad, 4, &nbad, err, sizeof err),
                     0);
    ck_assert_uint_eq(nbad, 6);
    ck_assert_uint_eq(bad[0], 3);
    ck_assert_uint_eq(bad[1], 9);
    ck_assert_uint_eq(bad[2], 1200);
    ck_assert_uint_eq(bad[3], 1201);

    /* A file of another size is not checked block by block. */
    ck_assert_int_eq(ftruncate(fd, FSIZE + 1), 0);
    ck_assert_int_eq(manifest_verify(m, fd, 1, bad, 4, &nbad, err, sizeof err),
                     -ESTALE);
    ck_assert_msg(strstr(err, "describes") != NULL, "%s", err);
    close(fd);
    manifest_close(m);
}
END_TEST

/* Recompute the trailer of a manifest image, so that a test reaches the
 * check it means instead of stopping at the checksum. */
static void resign(uint8_t *b, size_t len)
{
    manifest_hash(b, len - MANIFEST_HASH_LEN, b + len - MANIFEST_HASH_LEN);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

/* open_mem refuses b (len bytes) with an err containing want. */
static void refused(const uint8_t *b, size_t len, const char *want)
{
    char err[256] = "";
    struct manifest *m = (struct manifest *)err;

    /* An exact-size copy: a read past the end is a fault under ASan. */
    uint8_t *c = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(c);
    memcpy(c, b, len);
    int rc = manifest_open_mem(c, len, &m, err, sizeof err);
    ck_assert_msg(rc == -EINVAL, "'%s': rc %d", want, rc);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err, want) != NULL, "want '%s', got '%s'", want, err);
    free(c);
}

START_TEST(refusals)
{
    char file[128], out[128];
    size_t len;

    path_in(file, sizeof file, "t.img");
    path_in(out, sizeof out, "m");
    free(make_file(file));
    build(file, out, BS, 2);
    uint8_t *good = slurp(out, &len);
    uint8_t *b = malloc(len + 64);
    struct manifest *m = NULL;
    char err[256];

    ck_assert_int_eq(manifest_open_mem(good, len, &m, err, sizeof err), 0);
    manifest_close(m);

#define FRESH() memcpy(b, good, len)
    FRESH();
    memcpy(b, "ICMANIF2", 8);
    resign(b, len);
    refused(b, len, "bad magic");

    FRESH();
    put32(b + 8, 2);
    resign(b, len);
    refused(b, len, "unsupported version 2");

    FRESH();
    put32(b + 12, 7);
    resign(b, len);
    refused(b, len, "unknown hash algorithm 7");

    FRESH();
    put32(b + 24, 3000);
    resign(b, len);
    refused(b, len, "block size 3000 is not a power of two");
    put32(b + 24, 0);
    resign(b, len);
    refused(b, len, "block size 0 is not a power of two");
    put32(b + 24, 2048);
    resign(b, len);
    refused(b, len, "block size 2048 is out of range");
    put32(b + 24, 32u << 20);
    resign(b, len);
    refused(b, len, "block size 33554432 is out of range");

    /* A block size the format allows but the entry count does not fit. */
    FRESH();
    put32(b + 24, 8192);
    resign(b, len);
    refused(b, len, "wrong nblocks");

    FRESH();
    put32(b + 28, 3);
    resign(b, len);
    refused(b, len, "unknown flags 0x2");
    put32(b + 28, 0x80000001u);
    resign(b, len);
    refused(b, len, "unknown flags 0x80000000");

    /* Without its flag the mtime must be 0; with it, any value. */
    FRESH();
    put32(b + 28, 0);
    resign(b, len);
    refused(b, len, "template mtime set without its flag");
    put64(b + 40, 0);
    resign(b, len);
    ck_assert_int_eq(manifest_open_mem(b, len, &m, err, sizeof err), 0);
    int64_t ns = 5;
    ck_assert(!manifest_template_mtime(m, &ns));
    ck_assert_int_eq(ns, 5);
    manifest_close(m);
    put32(b + 28, 1);
    put64(b + 40, (uint64_t)-1500000000LL); /* before the epoch */
    resign(b, len);
    ck_assert_int_eq(manifest_open_mem(b, len, &m, err, sizeof err), 0);
    ck_assert(manifest_template_mtime(m, &ns));
    ck_assert_int_eq(ns, -1500000000LL);
    manifest_close(m);

    FRESH();
    b[63] = 1;
    resign(b, len);
    refused(b, len, "reserved header bytes are not zero");
    FRESH();
    b[48] = 1;
    resign(b, len);
    refused(b, len, "reserved header bytes are not zero");

    FRESH();
    put64(b + 32, FSIZE / BS + 2);
    resign(b, len);
    refused(b, len, "wrong nblocks");

    /* nblocks and file_size agreeing with each other, not with the
     * length; and the largest values, whose sizes must not wrap. */
    FRESH();
    put64(b + 16, FSIZE + BS);
    put64(b + 32, FSIZE / BS + 2);
    resign(b, len);
    refused(b, len, "truncated: 1282 entries of 1282, checksum missing");
    FRESH();
    put64(b + 16, UINT64_MAX);
    put64(b + 32, UINT64_MAX / BS + 1);
    resign(b, len);
    refused(b, len, "truncated");
    put32(b + 24, MANIFEST_MAX_BLOCK);
    put64(b + 32, UINT64_MAX / MANIFEST_MAX_BLOCK + 1);
    resign(b, len);
    refused(b, len, "truncated");

    refused(good, 0, "truncated: 0 bytes");
    refused(good, 63, "truncated: 63 bytes");
    refused(good, 64, "truncated: 0 entries of 1281");
    refused(good, 64 + 32 * 100 + 5, "truncated: 100 entries of 1281");
    refused(good, len - 32, "truncated: 1281 entries of 1281, checksum missing");
    refused(good, len - 1, "checksum missing");

    FRESH();
    memset(b + len, 0, 64);
    refused(b, len + 1, "1 extra bytes after the checksum");
    refused(b, len + 64, "64 extra bytes");

    FRESH();
    b[64 + 32 * 10 + 5] ^= 1;
    refused(b, len, "checksum mismatch");
    FRESH();
    b[len - 1] ^= 0x80;
    refused(b, len, "checksum mismatch");
    FRESH();
    put64(b + 16, FSIZE - 1); /* same nblocks, no resign */
    refused(b, len, "checksum mismatch");
#undef FRESH
    free(b);
    free(good);
}
END_TEST

START_TEST(open_files)
{
    char p[128], err[256];
    struct manifest *m = NULL;

    path_in(p, sizeof p, "absent");
    ck_assert_int_eq(manifest_open(p, &m, err, sizeof err), -ENOENT);
    ck_assert_ptr_null(m);
    ck_assert_int_eq(manifest_open(tmpdir, &m, err, sizeof err), -EINVAL);
    ck_assert_msg(strstr(err, "not a regular file") != NULL, "%s", err);
    path_in(p, sizeof p, "empty");
    int fd = open(p, O_WRONLY | O_CREAT, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(manifest_open(p, &m, err, sizeof err), -EINVAL);
    ck_assert_msg(strstr(err, "truncated: 0 bytes") != NULL, "%s", err);
    ck_assert_int_eq(write(fd, "ICMANIF1", 8), 8);
    ck_assert_int_eq(manifest_open(p, &m, err, sizeof err), -EINVAL);
    ck_assert_msg(strstr(err, "truncated: 8 bytes") != NULL, "%s", err);
    close(fd);
    /* NULL err buffer: the same answer. */
    ck_assert_int_eq(manifest_open(p, &m, NULL, 0), -EINVAL);
    manifest_close(NULL);
}
END_TEST

START_TEST(build_edges)
{
    char file[128], out[128], err[256];
    struct manifest *m = NULL;
    uint8_t h[MANIFEST_HASH_LEN];

    /* An empty template: no entries, still a checksummed manifest. */
    path_in(file, sizeof file, "empty.img");
    path_in(out, sizeof out, "empty.m");
    close(open(file, O_WRONLY | O_CREAT, 0644));
    build(file, out, 65536, 4);
    ck_assert_int_eq(manifest_open(out, &m, err, sizeof err), 0);
    ck_assert_uint_eq(manifest_nblocks(m), 0);
    ck_assert_uint_eq(manifest_file_size(m), 0);
    ck_assert_int_eq(manifest_entry(m, 0, h), -ERANGE);
    manifest_close(m);

    /* A refused block size leaves nothing behind. */
    int before = dir_entries();
    int fd = open(file, O_RDONLY);
    ck_assert_int_eq(manifest_build(fd, 3000, 1, out, NULL, err, sizeof err),
                     -EINVAL);
    ck_assert_msg(strstr(err, "not a power of two") != NULL, "%s", err);
    ck_assert_int_eq(manifest_build(fd, 1u << 25, 1, out, NULL, err, sizeof err),
                     -EINVAL);
    close(fd);
    /* Not a regular file. */
    fd = open(tmpdir, O_RDONLY | O_DIRECTORY);
    ck_assert_int_eq(manifest_build(fd, BS, 1, out, NULL, err, sizeof err), -EINVAL);
    close(fd);
    /* The output's directory does not exist: no .tmp, no output. */
    char bad_out[160];
    snprintf(bad_out, sizeof bad_out, "%s/no/such/dir/m", tmpdir);
    fd = open(file, O_RDONLY);
    ck_assert_int_eq(manifest_build(fd, BS, 1, bad_out, NULL, err, sizeof err),
                     -ENOENT);
    close(fd);
    ck_assert_int_eq(dir_entries(), before);

    /* A file of one short block, one block exactly, and all zeros. */
    uint8_t blk[BS];
    memset(blk, 0, sizeof blk);
    path_in(file, sizeof file, "z.img");
    fd = open(file, O_RDWR | O_CREAT, 0644);
    ck_assert_int_eq(pwrite_full(fd, blk, 100, 0), 100);
    build(file, out, BS, 2);
    ck_assert_int_eq(manifest_open(out, &m, err, sizeof err), 0);
    ck_assert_uint_eq(manifest_nblocks(m), 1);
    ck_assert_int_eq(manifest_entry(m, 0, h), 1);
    manifest_close(m);
    blk[BS - 1] = 9;
    ck_assert_int_eq(pwrite_full(fd, blk, BS, 0), (ssize_t)BS);
    close(fd);
    build(file, out, BS, 2);
    ck_assert_int_eq(manifest_open(out, &m, err, sizeof err), 0);
    ck_assert_uint_eq(manifest_nblocks(m), 1);
    ck_assert_int_eq(manifest_entry(m, 0, h), 0);
    uint8_t want[MANIFEST_HASH_LEN];
    manifest_hash(blk, BS, want);
    ck_assert_mem_eq(h, want, MANIFEST_HASH_LEN);
    manifest_close(m);
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {round_trip, sha256_known, verify,
                                         refusals, open_files, build_edges};
    return ck_run(ck_suite("manifest", tests, sizeof tests / sizeof tests[0],
                           setup, teardown, 60));
}
