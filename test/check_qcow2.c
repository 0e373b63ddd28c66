/* Unit tests for fs/config/qcow2.c (the qcow2 metadata walker, and the
 * guest map readahead follows: qcow2_map_open, qcow2_l2_reverse).
 *
 * Two sources of images:
 *   - a synthetic image built here byte by byte (always available), whose
 *     metadata clusters are known by construction;
 *   - real images made by qemu-img and written to by qemu-io, checked
 *     against a small independent reference reader below and against
 *     `qemu-img map` (no data cluster may be pinned).  These tests are left
 *     out, with a note, when qemu-img or qemu-io is missing.
 * Every read the walker makes is checked: inside the file, at most
 * QCOW2_READ_MAX bytes.  Each test runs in its own mkdtemp directory,
 * removed by an unchecked fixture even when an assertion fails. */
#include "config.h"

#include <check.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ic-qcow2.h"
#include "ic-util.h"

#include "ck-tmpdir.h"

static char err[512];

/* ------------------------------------------------------------ fixtures */

CK_TMPDIR_FIXTURES("check_qcow2")

static const char *tpath(const char *name)
{
    static char buf[4][PATH_MAX];
    static int k;
    char *p = buf[k++ % 4];

    snprintf(p, PATH_MAX, "%s/%s", tmpdir, name);
    return p;
}

/* Run a shell command (cwd = the test directory); it must succeed. */
__attribute__((format(printf, 1, 2))) static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[2200];
    snprintf(full, sizeof full, "cd '%s' && { %s; } >/dev/null", tmpdir, cmd);
    ck_assert_msg(system(full) == 0, "command failed: %s", cmd);
}

/* ------------------------------------------------------------ readers */

struct mem {
    uint8_t *p;
    uint64_t size;
    unsigned calls;
    size_t max_len;
    int fail_at; /* call number that returns -EIO, 0 = never */
};

static int mem_rd(void *ctx, void *buf, uint64_t off, size_t len)
{
    struct mem *m = ctx;

    m->calls++;
    ck_assert_uint_le(len, QCOW2_READ_MAX);
    ck_assert_uint_gt(len, 0);
    ck_assert_uint_le(off, m->size);
    ck_assert_uint_le(len, m->size - off);
    if (len > m->max_len)
        m->max_len = len;
    if (m->fail_at != 0 && (int)m->calls == m->fail_at)
        return -EIO;
    memcpy(buf, m->p + off, len);
    return 0;
}

struct file {
    int fd;
    uint64_t size;
    size_t max_len;
};

static int file_rd(void *ctx, void *buf, uint64_t off, size_t len)
{
    struct file *f = ctx;

    ck_assert_uint_le(len, QCOW2_READ_MAX);
    ck_assert_uint_le(off, f->size);
    ck_assert_uint_le(len, f->size - off);
    if (len > f->max_len)
        f->max_len = len;
    ssize_t got = pread_full(f->fd, buf, len, off);
    if (got < 0)
        return (int)got;
    return (size_t)got == len ? 0 : -EIO;
}

static void load(const char *path, struct mem *m)
{
    int fd = open(path, O_RDONLY);
    struct stat st;

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fstat(fd, &st), 0);
    memset(m, 0, sizeof *m);
    m->size = (uint64_t)st.st_size;
    m->p = malloc(m->size ? m->size : 1);
    ck_assert_ptr_nonnull(m->p);
    ck_assert_int_eq(pread_full(fd, m->p, m->size, 0), (ssize_t)m->size);
    close(fd);
}

static void save(const char *path, const struct mem *m)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite_full(fd, m->p, m->size, 0), (ssize_t)m->size);
    close(fd);
}

/* Parse an image file through pread, the way the daemon reads through the
 * cache. */
static int parse_path(const char *path, struct byte_range **r, size_t *n,
                      size_t *max_len)
{
    struct file f = {.fd = open(path, O_RDONLY)};
    struct stat st;

    ck_assert_int_ge(f.fd, 0);
    ck_assert_int_eq(fstat(f.fd, &st), 0);
    f.size = (uint64_t)st.st_size;
    err[0] = '\0';
    int rc = qcow2_metadata_ranges(file_rd, &f, f.size, r, n, err, sizeof err);
    close(f.fd);
    if (max_len)
        *max_len = f.max_len;
    return rc;
}

static int parse_mem(struct mem *m, struct byte_range **r, size_t *n)
{
    m->calls = 0;
    err[0] = '\0';
    return qcow2_metadata_ranges(mem_rd, m, m->size, r, n, err, sizeof err);
}

/* Parse must fail with -EINVAL and a message containing want. */
static void mem_fails(struct mem *m, const char *want)
{
    struct byte_range *r = (struct byte_range *)1;
    size_t n = 42;

    ck_assert_int_eq(parse_mem(m, &r, &n), -EINVAL);
    ck_assert_msg(strstr(err, want) != NULL, "got '%s', want '%s'", err,
                  want);
    ck_assert_ptr_null(r);
    ck_assert_uint_eq(n, 0);
}

/* ------------------------------------------------------------ byte access */

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return be64toh(v);
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return be32toh(v);
}

static uint16_t rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return be16toh(v);
}

static void wr64(uint8_t *p, uint64_t v)
{
    v = htobe64(v);
    memcpy(p, &v, 8);
}

static void wr32(uint8_t *p, uint32_t v)
{
    v = htobe32(v);
    memcpy(p, &v, 4);
}

static void wr16(uint8_t *p, uint16_t v)
{
    v = htobe16(v);
    memcpy(p, &v, 2);
}

/* ------------------------------------------------------------ checks */

/* Sorted, merged (not even touching), cluster-aligned, whole clusters
 * except a range ending exactly at EOF, inside the file. */
static void check_wellformed(const struct byte_range *r, size_t n,
                             uint64_t size, uint64_t cs)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t end = r[i].off + r[i].len;
        ck_assert_uint_gt(r[i].len, 0);
        ck_assert_uint_eq(r[i].off % cs, 0);
        ck_assert_uint_le(end, size);
        ck_assert_msg(end % cs == 0 || end == size,
                      "range %zu ends at %" PRIu64 " mid-cluster", i, end);
        if (i > 0)
            ck_assert_uint_lt(r[i - 1].off + r[i - 1].len, r[i].off);
    }
}

static int covered(const struct byte_range *r, size_t n, uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        if (off >= r[i].off && off - r[i].off < r[i].len)
            return 1;
    return 0;
}

/* ------------------------------------------------------------ reference */

/* An independent, simple (trusting) reader of a valid image in memory:
 * one flag per cluster, set for each metadata cluster. */
struct ref {
    uint64_t cs, nclusters;
    uint8_t *meta;
    uint64_t l1_off, l2_count, snap_l1[8];
    uint32_t nsnap;
};

static void ref_mark(struct ref *f, uint64_t off, uint64_t len)
{
    for (uint64_t c = off / f->cs; c * f->cs < off + len; c++) {
        ck_assert_uint_lt(c, f->nclusters);
        f->meta[c] = 1;
    }
}

static void ref_snapshots(struct ref *f, const struct mem *m)
{
    uint32_t nsnap = rd32(m->p + 60);
    uint64_t start = rd64(m->p + 64), pos = start;

    f->nsnap = nsnap;
    for (uint32_t i = 0; i < nsnap; i++) {
        const uint8_t *e = m->p + pos;
        uint64_t l1 = rd64(e);
        if (i < 8)
            f->snap_l1[i] = l1;
        ref_mark(f, l1, (uint64_t)rd32(e + 8) * 8);
        pos += (40 + rd32(e + 36) + rd16(e + 12) + rd16(e + 14) + 7) / 8 * 8;
    }
    if (pos > m->size) /* the last entry's padding is not written */
        pos = m->size;
    if (nsnap)
        ref_mark(f, start, pos - start);
}

static void ref_build(struct ref *f, const struct mem *m)
{
    const uint8_t *h = m->p;

    memset(f, 0, sizeof *f);
    f->cs = 1ull << rd32(h + 20);
    f->nclusters = (m->size + f->cs - 1) / f->cs;
    f->meta = calloc(f->nclusters, 1);
    ck_assert_ptr_nonnull(f->meta);
    f->meta[0] = 1;

    uint64_t rt = rd64(h + 48), rtlen = (uint64_t)rd32(h + 56) * f->cs;
    ref_mark(f, rt, rtlen);
    for (uint64_t i = 0; i < rtlen; i += 8) {
        uint64_t b = rd64(m->p + rt + i) & ~0x1ffull;
        if (b)
            ref_mark(f, b, f->cs);
    }
    uint32_t l1n = rd32(h + 36);
    f->l1_off = rd64(h + 40);
    ref_mark(f, f->l1_off, (uint64_t)l1n * 8);
    for (uint32_t i = 0; i < l1n; i++) {
        uint64_t l2 = rd64(m->p + f->l1_off + 8 * i) & 0x00fffffffffffe00ull;
        if (l2) {
            ref_mark(f, l2, f->cs);
            f->l2_count++;
        }
    }
    ref_snapshots(f, m);
}

/* The walker's ranges mark exactly the reference's clusters. */
static void check_against_ref(const struct ref *f, const struct byte_range *r,
                              size_t n)
{
    uint8_t *got = calloc(f->nclusters, 1);

    ck_assert_ptr_nonnull(got);
    for (size_t i = 0; i < n; i++)
        for (uint64_t c = r[i].off / f->cs; c * f->cs < r[i].off + r[i].len;
             c++)
            got[c] = 1;
    for (uint64_t c = 0; c < f->nclusters; c++)
        ck_assert_msg(got[c] == f->meta[c],
                      "cluster %" PRIu64 " (offset %#" PRIx64 "): walker %d, "
                      "reference %d",
                      c, c * f->cs, got[c], f->meta[c]);
    free(got);
}

/* No cluster holding guest data (per `qemu-img map`) is pinned. */
static void check_no_data_pinned(const char *img, const struct byte_range *r,
                                 size_t n)
{
    char cmd[PATH_MAX + 64], line[PATH_MAX + 128];
    unsigned mapped = 0;

    snprintf(cmd, sizeof cmd, "qemu-img map -f qcow2 '%s'", img);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    while (fgets(line, sizeof line, p)) {
        uint64_t voff, len, host;
        if (sscanf(line, "%" SCNx64 " %" SCNx64 " %" SCNx64, &voff, &len,
                   &host) != 3)
            continue; /* the title line */
        mapped++;
        for (uint64_t o = host; o < host + len; o += 512)
            ck_assert_msg(!covered(r, n, o),
                          "data at host offset %#" PRIx64 " is pinned", o);
    }
    ck_assert_int_eq(pclose(p), 0);
    ck_assert_uint_gt(mapped, 0);
}

/* Parse a real image, compare with the reference and qemu-img map. */
static void check_image(const char *name, int data_in_image,
                        struct ref *f_out)
{
    const char *img = tpath(name);
    struct byte_range *r;
    size_t n, max_len;
    struct mem m;
    struct ref f;

    ck_assert_msg(parse_path(img, &r, &n, &max_len) == 0, "%s", err);
    load(img, &m);
    ref_build(&f, &m);
    check_wellformed(r, n, m.size, f.cs);
    ck_assert(covered(r, n, 0));
    ck_assert(covered(r, n, f.l1_off));
    check_against_ref(&f, r, n);
    if (data_in_image)
        check_no_data_pinned(img, r, n);
    ck_assert_uint_le(max_len, QCOW2_READ_MAX);
    free(r);
    free(m.p);
    if (f_out)
        *f_out = f;
    else
        free(f.meta);
}

/* ------------------------------------------------------------ synthetic */

/* A small v3 image with 4 KiB clusters, laid out by hand:
 *   0 header   1 refcount table   2 refcount block   3 L1 (4 entries)
 *   4 data     5 L2 (from L1[0])  6 snapshot table (2 entries)
 *   7 snapshot L1   8 L2 (from L1[2])   9 L2 only a snapshot uses
 *   10 data, short (the file ends 1000 bytes before its end)
 * Metadata: clusters 0-3 and 5-8; 4, 9 and 10 are not pinned. */
#define SCS 4096u
#define SYN_SIZE (11 * SCS - 1000)

static void synth(struct mem *m)
{
    memset(m, 0, sizeof *m);
    m->size = SYN_SIZE;
    m->p = calloc(1, SYN_SIZE);
    ck_assert_ptr_nonnull(m->p);
    uint8_t *p = m->p;

    wr32(p, 0x514649fb);
    wr32(p + 4, 3);
    wr32(p + 20, 12);          /* cluster_bits */
    wr64(p + 24, 8ull << 20);  /* virtual size: 4 L2 tables' worth */
    wr32(p + 36, 4);           /* l1_size */
    wr64(p + 40, 3 * SCS);     /* l1_table_offset */
    wr64(p + 48, 1 * SCS);     /* refcount_table_offset */
    wr32(p + 56, 1);           /* refcount_table_clusters */
    wr32(p + 60, 2);           /* nb_snapshots */
    wr64(p + 64, 6 * SCS);     /* snapshots_offset */
    wr32(p + 96, 4);           /* refcount_order */
    wr32(p + 100, 104);        /* header_length */

    wr64(p + 1 * SCS, 2 * SCS);
    for (int c = 0; c < 11; c++)
        wr16(p + 2 * SCS + 2 * c, 1);
    wr64(p + 3 * SCS, (1ull << 63) | 5 * SCS); /* "copied" flag set */
    wr64(p + 3 * SCS + 16, 8 * SCS);
    wr64(p + 5 * SCS, (1ull << 63) | 4 * SCS);
    wr64(p + 8 * SCS, (1ull << 63) | 10 * SCS);

    uint8_t *e = p + 6 * SCS; /* 40 + 16 extra + "1" + "s1" -> 64 bytes */
    wr64(e, 7 * SCS);
    wr32(e + 8, 4);
    wr16(e + 12, 1);
    wr16(e + 14, 2);
    wr32(e + 36, 16);
    memcpy(e + 56, "1s1", 3);
    e += 64; /* 40 + "2" + "s2" -> 48 bytes */
    wr64(e, 7 * SCS);
    wr32(e + 8, 1);
    wr16(e + 12, 1);
    wr16(e + 14, 2);
    memcpy(e + 40, "2s2", 3);
    wr64(p + 7 * SCS, 9 * SCS);
    wr64(p + 9 * SCS, (1ull << 63) | 10 * SCS);
}

START_TEST(synthetic_exact)
{
    struct mem m;
    struct byte_range *r;
    size_t n;

    synth(&m);
    ck_assert_msg(parse_mem(&m, &r, &n) == 0, "%s", err);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(r[0].off, 0);
    ck_assert_uint_eq(r[0].len, 4 * SCS);
    ck_assert_uint_eq(r[1].off, 5 * SCS);
    ck_assert_uint_eq(r[1].len, 4 * SCS);
    check_wellformed(r, n, m.size, SCS);
    free(r);

    /* The reference agrees with the construction. */
    struct ref f;
    ref_build(&f, &m);
    ck_assert(!f.meta[9]); /* snapshot-only L2: reference skips it too */
    free(f.meta);

    /* Version 2: the same image with a 72-byte header. */
    wr32(m.p + 4, 2);
    memset(m.p + 72, 0xee, 32); /* v3 fields are ignored in v2 */
    ck_assert_msg(parse_mem(&m, &r, &n) == 0, "%s", err);
    ck_assert_uint_eq(n, 2);
    free(r);
    free(m.p);
}
END_TEST

START_TEST(synthetic_short_last_cluster)
{
    /* An L2 table in the short last cluster: pinned up to EOF only. */
    struct mem m;
    struct byte_range *r;
    size_t n;

    synth(&m);
    wr64(m.p + 3 * SCS + 24, 10 * SCS);
    ck_assert_msg(parse_mem(&m, &r, &n) == 0, "%s", err);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(r[2].off, 10 * SCS);
    ck_assert_uint_eq(r[2].off + r[2].len, SYN_SIZE);
    free(r);
    free(m.p);
}
END_TEST

START_TEST(synthetic_no_snapshots_no_l1)
{
    struct mem m;
    struct byte_range *r;
    size_t n;

    synth(&m);
    wr32(m.p + 60, 0);       /* no snapshots: the offset is not looked at */
    wr64(m.p + 64, 12345);
    wr32(m.p + 36, 0);       /* empty image: no L1 at all */
    wr64(m.p + 40, 0);
    ck_assert_msg(parse_mem(&m, &r, &n) == 0, "%s", err);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(r[0].off, 0);
    ck_assert_uint_eq(r[0].len, 3 * SCS); /* header, reftable, refblock */
    free(r);
    free(m.p);
}
END_TEST

START_TEST(header_errors)
{
    struct mem m;

    synth(&m);
    wr32(m.p + 4, 1);
    mem_fails(&m, "unsupported qcow2 version 1 (only 2 and 3)");
    wr32(m.p + 4, 4);
    mem_fails(&m, "unsupported qcow2 version 4");
    wr32(m.p + 4, 3);

    wr32(m.p + 20, 8);
    mem_fails(&m, "bad cluster_bits 8 (must be 9..21)");
    wr32(m.p + 20, 22);
    mem_fails(&m, "bad cluster_bits 22 (must be 9..21)");
    wr32(m.p + 20, 0xffffffff);
    mem_fails(&m, "bad cluster_bits");
    wr32(m.p + 20, 12);

    wr64(m.p + 72, 1ull << 5);
    mem_fails(&m, "unsupported qcow2 incompatible features 0x20");
    wr64(m.p + 72, 0x1f); /* every known feature: accepted */
    struct byte_range *r;
    size_t n;
    ck_assert_msg(parse_mem(&m, &r, &n) == 0, "%s", err);
    free(r);
    wr64(m.p + 72, 0);

    wr64(m.p + 40, 3 * SCS + 512);
    mem_fails(&m, "L1 table offset 0x3200 is not cluster-aligned");
    wr64(m.p + 40, 11 * SCS);
    mem_fails(&m, "L1 table (offset 0xb000, 32 bytes) lies outside the file");
    wr64(m.p + 40, 10 * SCS); /* starts inside, ends past EOF */
    wr32(m.p + 36, 500);
    mem_fails(&m, "L1 table (offset 0xa000, 4000 bytes) lies outside");
    wr32(m.p + 36, 4);
    wr64(m.p + 40, UINT64_MAX & ~(uint64_t)(SCS - 1)); /* end wraps */
    mem_fails(&m, "lies outside the file");
    wr64(m.p + 40, 3 * SCS);
    wr32(m.p + 36, 0xffffffff);
    mem_fails(&m, "L1 table too large");
    wr32(m.p + 36, (32u << 20) / 8); /* at the cap: now it is the file */
    mem_fails(&m, "L1 table (offset 0x3000, 33554432 bytes) lies outside");
    wr32(m.p + 36, 4);

    wr32(m.p + 56, 0);
    mem_fails(&m, "image has no refcount table");
    wr32(m.p + 56, 0xffffffff);
    mem_fails(&m, "refcount table too large");
    wr32(m.p + 56, 11);
    mem_fails(&m, "refcount table (offset 0x1000, 45056 bytes) lies outside"
                  " the file (44056 bytes)");
    wr32(m.p + 56, 1);
    wr64(m.p + 48, 7);
    mem_fails(&m, "refcount table offset 0x7 is not cluster-aligned");
    wr64(m.p + 48, SCS);

    wr32(m.p + 60, 65537);
    mem_fails(&m, "too many snapshots (65537, limit 65536)");
    wr32(m.p + 60, 2);
    wr64(m.p + 64, 6 * SCS + 8);
    mem_fails(&m, "snapshot table offset 0x6008 is not cluster-aligned");
    wr64(m.p + 64, 11 * SCS);
    mem_fails(&m, "snapshot table (offset 0xb000");
    free(m.p);
}
END_TEST

START_TEST(not_qcow2)
{
    struct mem m = {0};
    uint8_t small[104];

    m.p = small;
    memset(small, 'x', sizeof small);
    for (uint64_t size = 0; size <= sizeof small; size += 13) {
        m.size = size;
        mem_fails(&m, "not a qcow2 image (bad magic)");
    }

    /* A file shorter than the header its version needs. */
    wr32(small, 0x514649fb);
    wr32(small + 4, 3);
    m.size = 103;
    mem_fails(&m, "truncated qcow2 header (file is 103 bytes)");
    wr32(small + 4, 2);
    m.size = 71;
    mem_fails(&m, "truncated qcow2 header");
    m.size = 6;
    mem_fails(&m, "not a qcow2 image (bad magic)");

    /* Through a real file: a text file. */
    FILE *f = fopen(tpath("readme.txt"), "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 10000; i++)
        fputs("this is not a disk image\n", f);
    ck_assert_int_eq(fclose(f), 0);
    struct byte_range *r;
    size_t n;
    ck_assert_int_eq(parse_path(tpath("readme.txt"), &r, &n, NULL), -EINVAL);
    ck_assert_str_eq(err, "not a qcow2 image (bad magic)");
    close(open(tpath("empty"), O_CREAT | O_WRONLY, 0600));
    ck_assert_int_eq(parse_path(tpath("empty"), &r, &n, NULL), -EINVAL);
    ck_assert_str_eq(err, "not a qcow2 image (bad magic)");
}
END_TEST

START_TEST(entry_errors)
{
    struct mem m;

    synth(&m);
    wr64(m.p + 3 * SCS + 8, 11 * SCS);
    mem_fails(&m, "L1 table entry 1: L2 table offset 0xb000 is past the end "
                  "of the file");
    wr64(m.p + 3 * SCS + 8, 4 * SCS + 1024);
    mem_fails(&m, "L1 table entry 1: L2 table offset 0x4400 is not "
                  "cluster-aligned");
    /* Reserved low bits and the "copied" flag are not part of the offset. */
    wr64(m.p + 3 * SCS + 8, (1ull << 63) | 4 * SCS | 0x1ff);
    struct byte_range *r;
    size_t n;
    ck_assert_msg(parse_mem(&m, &r, &n) == 0, "%s", err);
    ck_assert(covered(r, n, 4 * SCS));
    free(r);
    /* Bits 56-62 are reserved in L1 entries: masked off, so this points
     * at cluster 4 as well. */
    wr64(m.p + 3 * SCS + 8, (0x7full << 56) | 4 * SCS);
    ck_assert_msg(parse_mem(&m, &r, &n) == 0, "%s", err);
    free(r);
    wr64(m.p + 3 * SCS + 8, 0);

    wr64(m.p + SCS + 8 * 100, 1ull << 40);
    mem_fails(&m, "refcount table entry 100: refcount block offset "
                  "0x10000000000 is past the end");
    wr64(m.p + SCS + 8 * 100, 0);

    uint8_t *e = m.p + 6 * SCS;
    wr32(e + 36, 1025);
    mem_fails(&m, "snapshot 0: 1025 bytes of extra data (limit 1024)");
    wr32(e + 36, 16);
    wr64(e, 7 * SCS + 8);
    mem_fails(&m, "snapshot L1 table offset 0x7008 is not cluster-aligned");
    wr64(e, 12 * SCS);
    mem_fails(&m, "snapshot L1 table (offset 0xc000, 32 bytes) lies outside");
    wr64(e, 7 * SCS);
    wr32(e + 64 + 8, 0x10000000);
    mem_fails(&m, "snapshot L1 table too large");
    wr32(e + 64 + 8, 1);
    /* More snapshots than entries fit in the rest of the file. */
    wr32(m.p + 60, 65536);
    mem_fails(&m, "runs past the end of the table or file");
    free(m.p);
}
END_TEST

START_TEST(snapshot_table_at_eof)
{
    /* A snapshot table whose last entry's name runs past EOF. */
    struct mem m;

    synth(&m);
    m.size = 6 * SCS + 100; /* second entry (64..112) is cut */
    wr64(m.p + 3 * SCS + 16, 0);
    wr64(m.p + 6 * SCS, 0); /* snapshot L1s are past the new EOF */
    wr32(m.p + 6 * SCS + 8, 0);
    wr32(m.p + 6 * SCS + 64 + 8, 0);
    mem_fails(&m, "snapshot table entry 1 at 0x6040 runs past the end");
    struct byte_range *r;
    size_t n;
    /* Exactly fits; or ends inside the last entry's padding (43 of 48
     * bytes), which is how QEMU writes it. */
    for (m.size = 6 * SCS + 112; m.size >= 6 * SCS + 107; m.size -= 5) {
        ck_assert_msg(parse_mem(&m, &r, &n) == 0, "%s", err);
        ck_assert_uint_eq(r[n - 1].off + r[n - 1].len, m.size);
        free(r);
    }
    m.size = 6 * SCS + 106; /* the name itself is cut */
    mem_fails(&m, "snapshot table entry 1 at 0x6040 runs past the end");
    free(m.p);
}
END_TEST

START_TEST(read_errors_propagate)
{
    struct mem m;
    struct byte_range *r = NULL;
    size_t n = 0;

    synth(&m);
    ck_assert_int_eq(parse_mem(&m, &r, &n), 0);
    free(r);
    unsigned calls = m.calls;
    ck_assert_uint_ge(calls, 4);
    for (unsigned k = 1; k <= calls; k++) {
        m.fail_at = (int)k;
        ck_assert_int_eq(parse_mem(&m, &r, &n), -EIO);
        ck_assert_msg(strstr(err, "reading ") != NULL &&
                          strstr(err, "Input/output error") != NULL,
                      "%s", err);
        ck_assert_ptr_null(r);
        ck_assert_uint_eq(n, 0);
    }
    free(m.p);
}
END_TEST

START_TEST(duplicate_l2_pointers)
{
    /* 512-byte clusters, 2M L1 entries (16 MiB of L1) all naming one L2
     * table: the result is tiny and memory stays bounded by merging. */
    const uint64_t cs = 512, entries = 2u << 20;
    const uint64_t l1 = 4 * cs, size = l1 + entries * 8 + cs;
    struct mem m = {.size = size, .p = calloc(1, size)};
    struct byte_range *r;
    size_t n;

    ck_assert_ptr_nonnull(m.p);
    wr32(m.p, 0x514649fb);
    wr32(m.p + 4, 3);
    wr32(m.p + 20, 9);
    wr32(m.p + 36, (uint32_t)entries);
    wr64(m.p + 40, l1);
    wr64(m.p + 48, cs);
    wr32(m.p + 56, 1);
    wr64(m.p + cs, 2 * cs);
    for (uint64_t i = 0; i < entries; i++)
        wr64(m.p + l1 + 8 * i, i % 2 ? 3 * cs : size - cs);
    ck_assert_msg(parse_mem(&m, &r, &n) == 0, "%s", err);
    ck_assert_uint_eq(n, 1); /* all of it is metadata, contiguous */
    ck_assert_uint_eq(r[0].len, size);
    ck_assert_uint_eq(m.max_len, QCOW2_READ_MAX); /* chunked reads */
    free(r);

    /* Scattered pointers: every other cluster of a large data area. */
    const uint64_t data = 1u << 16, big = l1 + entries * 8 + data * cs;
    free(m.p);
    m.size = big;
    m.p = calloc(1, big);
    ck_assert_ptr_nonnull(m.p);
    wr32(m.p, 0x514649fb);
    wr32(m.p + 4, 3);
    wr32(m.p + 20, 9);
    wr32(m.p + 36, (uint32_t)entries);
    wr64(m.p + 40, l1);
    wr64(m.p + 48, cs);
    wr32(m.p + 56, 1);
    uint64_t base = l1 + entries * 8;
    for (uint64_t i = 0; i < entries; i++)
        wr64(m.p + l1 + 8 * i, base + (i % (data / 2)) * 2 * cs);
    ck_assert_msg(parse_mem(&m, &r, &n) == 0, "%s", err);
    ck_assert_uint_eq(n, 1 + data / 2);
    check_wellformed(r, n, m.size, cs);
    free(r);
    free(m.p);
}
END_TEST

/* ------------------------------------------------------------ fuzzing */

static uint64_t rng_state;

static uint64_t rng(void)
{
    /* xorshift64*: deterministic, good enough to pick bytes. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

/* Mutate `iters` times inside [lo, hi) of m (restored after each run):
 * the walker returns 0 or -EINVAL, and any result is well-formed.
 * Returns how many mutants parsed. */
static unsigned fuzz(struct mem *m, uint64_t lo, uint64_t hi, unsigned iters)
{
    uint8_t *orig = malloc(hi - lo);
    unsigned ok = 0;

    ck_assert_ptr_nonnull(orig);
    memcpy(orig, m->p + lo, hi - lo);
    for (unsigned it = 0; it < iters; it++) {
        unsigned flips = 1 + rng() % 6;
        for (unsigned k = 0; k < flips; k++) {
            /* Half the flips hit the 104 header bytes that hold fields. */
            uint64_t span = (rng() & 1) && hi - lo > 104 && lo == 0
                                ? 104
                                : hi - lo;
            uint64_t at = lo + rng() % span;
            uint64_t v = rng();
            m->p[at] = (v & 0x100) ? (uint8_t)v : m->p[at] ^ (1u << (v & 7));
        }
        struct byte_range *r = NULL;
        size_t n = 0;
        int rc = parse_mem(m, &r, &n);
        ck_assert_msg(rc == 0 || rc == -EINVAL, "iteration %u: rc %d (%s)",
                      it, rc, err);
        if (rc == 0) {
            uint64_t ccs = 1ull << rd32(m->p + 20);
            check_wellformed(r, n, m->size, ccs);
            ok++;
        } else {
            ck_assert_ptr_null(r);
            ck_assert(err[0] != '\0');
        }
        free(r);
        memcpy(m->p + lo, orig, hi - lo);
    }
    free(orig);
    return ok;
}

START_TEST(fuzz_synthetic)
{
    struct mem m;

    synth(&m);
    rng_state = 0x1c0ffee;
    unsigned ok = fuzz(&m, 0, 512, 2000);
    /* Both outcomes must occur, or the fuzzing did not reach the tables. */
    ck_assert_uint_gt(ok, 0);
    ck_assert_uint_lt(ok, 2000);
    /* The tables too: L1, refcount table and snapshot table. */
    ok = fuzz(&m, 3 * SCS, 3 * SCS + 32, 1000);
    ck_assert_uint_gt(ok, 0);
    ok = fuzz(&m, 1 * SCS, 1 * SCS + 64, 1000);
    ck_assert_uint_gt(ok, 0);
    ok = fuzz(&m, 6 * SCS, 6 * SCS + 112, 2000);
    ck_assert_uint_gt(ok, 0);
    free(m.p);
}
END_TEST

/* ------------------------------------------------------------ guest map */

/* qcow2_map_open on m through mem_rd (which checks every read's bounds
 * and size). */
static int map_mem(struct mem *m, struct qcow2_map *qm)
{
    err[0] = '\0';
    m->calls = 0;
    return qcow2_map_open(mem_rd, m, m->size, qm, err, sizeof err);
}

/* The reverse map of every L2 table the map names, over nclusters host
 * clusters (the caller frees). */
static uint32_t *map_reverse(const struct mem *m, const struct qcow2_map *qm,
                             uint64_t nclusters)
{
    uint64_t cs = 1ull << qm->cluster_bits;
    uint32_t *rev = calloc(nclusters ? nclusters : 1, sizeof *rev);
    ck_assert_ptr_nonnull(rev);
    for (uint64_t i = 0; i < qm->l1_size; i++) {
        if (qm->l1[i] == 0)
            continue;
        /* The promise: aligned, one whole cluster inside the file. */
        ck_assert_uint_eq(qm->l1[i] % cs, 0);
        ck_assert_uint_le(qm->l1[i] + cs, m->size);
        qcow2_l2_reverse(qm, i, m->p + qm->l1[i], rev, nclusters);
    }
    return rev;
}

/* The synthetic image: L1[0] -> L2 at 5 (guest 0 -> host 4), L1[2] -> L2
 * at 8 (guest 1024 -> host 10, the short last cluster). */
START_TEST(map_synthetic)
{
    struct mem m;
    struct qcow2_map qm;

    synth(&m);
    ck_assert_int_eq(map_mem(&m, &qm), 0);
    ck_assert_uint_eq(qm.cluster_bits, 12);
    ck_assert_uint_eq(qm.l1_size, 4);
    ck_assert_uint_eq(qm.l2e_bytes, 8);
    ck_assert_uint_eq(qm.l2_entries, SCS / 8);
    ck_assert_uint_eq(qm.l1[0], 5 * SCS); /* the "copied" bit is gone */
    ck_assert_uint_eq(qm.l1[1], 0);
    ck_assert_uint_eq(qm.l1[2], 8 * SCS);
    ck_assert_uint_eq(qm.l1[3], 0);
    uint32_t *rev = map_reverse(&m, &qm, 11);
    for (unsigned h = 0; h < 11; h++)
        ck_assert_uint_eq(rev[h], h == 4 ? 1 : h == 10 ? 2 * 512 + 1 : 0);
    free(rev);
    qcow2_map_close(&qm);
    ck_assert_ptr_null(qm.l1);
    free(m.p);
}
END_TEST

/* Scattered clusters: guest 0..2 at host 9, 4, 2 (out of order), then
 * entries that map no plain data: compressed, a zero cluster (v3 bit 0,
 * with and without a host offset), misaligned, past the reverse map's
 * end, and guest 7 -> host 9 again (the later entry wins: a hint). */
START_TEST(map_scattered)
{
    struct mem m;
    struct qcow2_map qm;

    synth(&m);
    uint8_t *l2 = m.p + 5 * SCS;
    wr64(l2 + 0, (1ull << 63) | 9 * SCS);
    wr64(l2 + 8, 4 * SCS);
    wr64(l2 + 16, (1ull << 63) | 2 * SCS);
    wr64(l2 + 24, (1ull << 62) | (3ull << 54) | 7 * SCS); /* compressed */
    wr64(l2 + 32, 1);                                    /* zero */
    wr64(l2 + 40, (1ull << 63) | 7 * SCS | 1);           /* zero, alloc */
    wr64(l2 + 48, 7 * SCS + 512);                        /* misaligned */
    wr64(l2 + 56, 4000ull * SCS);                        /* past the end */
    wr64(l2 + 64, 9 * SCS);
    ck_assert_int_eq(map_mem(&m, &qm), 0);
    uint32_t *rev = map_reverse(&m, &qm, 11);
    ck_assert_uint_eq(rev[2], 3);
    ck_assert_uint_eq(rev[4], 2);
    ck_assert_uint_eq(rev[9], 9);
    ck_assert_uint_eq(rev[7], 0);
    ck_assert_uint_eq(rev[10], 2 * 512 + 1);
    for (unsigned h = 0; h < 11; h++)
        if (h != 2 && h != 4 && h != 9 && h != 10)
            ck_assert_uint_eq(rev[h], 0);
    free(rev);
    qcow2_map_close(&qm);
    free(m.p);
}
END_TEST

/* Extended L2 entries: 16 bytes each, the second half a subcluster
 * bitmap (not an offset). */
START_TEST(map_extended_l2)
{
    struct mem m;
    struct qcow2_map qm;

    synth(&m);
    wr64(m.p + 72, 0x10); /* incompatible: extended L2 */
    uint8_t *l2 = m.p + 5 * SCS;
    memset(l2, 0, SCS);
    wr64(l2 + 0, 4 * SCS);
    wr64(l2 + 8, 9 * SCS); /* bitmap, must not be taken as an entry */
    wr64(l2 + 16, 9 * SCS);
    ck_assert_int_eq(map_mem(&m, &qm), 0);
    ck_assert_uint_eq(qm.l2e_bytes, 16);
    ck_assert_uint_eq(qm.l2_entries, SCS / 16);
    uint32_t *rev = map_reverse(&m, &qm, 11);
    ck_assert_uint_eq(rev[4], 1);
    ck_assert_uint_eq(rev[9], 2);
    ck_assert_uint_eq(rev[10], 2 * 256 + 1);
    free(rev);
    qcow2_map_close(&qm);
    free(m.p);
}
END_TEST

/* L1 entries that cannot name an L2 table read as unallocated: past the
 * file, in the short last cluster (not a whole cluster), misaligned. */
START_TEST(map_bad_l1_entries)
{
    struct mem m;
    struct qcow2_map qm;

    synth(&m);
    wr64(m.p + 3 * SCS + 8, 500ull * SCS);
    wr64(m.p + 3 * SCS + 16, 10 * SCS);
    wr64(m.p + 3 * SCS + 24, 6 * SCS + 512);
    ck_assert_int_eq(map_mem(&m, &qm), 0);
    ck_assert_uint_eq(qm.l1[0], 5 * SCS);
    ck_assert_uint_eq(qm.l1[1], 0);
    ck_assert_uint_eq(qm.l1[2], 0);
    ck_assert_uint_eq(qm.l1[3], 0);
    qcow2_map_close(&qm);
    free(m.p);
}
END_TEST

/* A broken header or L1 table: -EINVAL with a reason, no map, every read
 * inside the file (mem_rd checks), nothing huge allocated first. */
START_TEST(map_header_errors)
{
    static const struct {
        unsigned off, width;
        uint64_t v;
        const char *why;
    } cases[] = {
        {20, 4, 8, "cluster_bits"},
        {20, 4, 22, "cluster_bits"},
        {20, 4, 0xffffffffu, "cluster_bits"},
        {36, 4, 0xffffffffu, "L1 table too large"},
        {36, 4, (32u << 20) / 8, "outside the file"},    /* at the limit */
        {40, 8, 100ull * SCS, "outside the file"},       /* L1 past EOF */
        {40, 8, UINT64_MAX & ~(uint64_t)(SCS - 1), "outside the file"},
        {40, 8, 3 * SCS + 8, "not cluster-aligned"},
        {72, 8, 0x4, "external data file"},
        {72, 8, 0x100, "incompatible features"},
        {4, 4, 4, "version"},
        {0, 4, 0x514649fa, "bad magic"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mem m;
        struct qcow2_map qm;
        synth(&m);
        if (cases[i].width == 4)
            wr32(m.p + cases[i].off, (uint32_t)cases[i].v);
        else
            wr64(m.p + cases[i].off, cases[i].v);
        ck_assert_int_eq(map_mem(&m, &qm), -EINVAL);
        ck_assert_msg(strstr(err, cases[i].why) != NULL,
                      "case %zu: '%s' lacks '%s'", i, err, cases[i].why);
        ck_assert_ptr_null(qm.l1);
        qcow2_map_close(&qm); /* harmless on a failed open */
        free(m.p);
    }
    /* Truncated: shorter than the header, and empty. */
    for (uint64_t size = 0; size < 104; size += 13) {
        struct mem m;
        struct qcow2_map qm;
        synth(&m);
        m.size = size;
        ck_assert_int_eq(map_mem(&m, &qm), -EINVAL);
        ck_assert_ptr_null(qm.l1);
        free(m.p);
    }
    /* No L1 at all: a map with no tables. */
    struct mem m;
    struct qcow2_map qm;
    synth(&m);
    wr32(m.p + 36, 0);
    ck_assert_int_eq(map_mem(&m, &qm), 0);
    ck_assert_uint_eq(qm.l1_size, 0);
    qcow2_map_close(&qm);
    free(m.p);
}
END_TEST

/* The reader's errors come back as they are (-EAGAIN: qmap.c's "not
 * cached yet"), with nothing left allocated. */
static int eagain_rd(void *ctx, void *buf, uint64_t off, size_t len)
{
    struct mem *m = ctx;
    if (off >= 3 * SCS) /* the header is there, the L1 is not */
        return -EAGAIN;
    return mem_rd(m, buf, off, len);
}

START_TEST(map_read_errors)
{
    struct mem m;
    struct qcow2_map qm;

    synth(&m);
    ck_assert_int_eq(qcow2_map_open(eagain_rd, &m, m.size, &qm, err,
                                    sizeof err), -EAGAIN);
    ck_assert_ptr_null(qm.l1);
    m.fail_at = 2; /* the L1 read */
    m.calls = 0;
    ck_assert_int_eq(qcow2_map_open(mem_rd, &m, m.size, &qm, err,
                                    sizeof err), -EIO);
    ck_assert_ptr_null(qm.l1);
    free(m.p);
}
END_TEST

/* Guest clusters past 2^32 - 2 do not fit rev: left out, never wrapped
 * onto small ones. */
START_TEST(map_guest_overflow)
{
    struct mem m;
    struct qcow2_map qm;

    synth(&m);
    ck_assert_int_eq(map_mem(&m, &qm), 0);
    uint32_t rev[11] = {0};
    uint64_t l1i = (UINT32_MAX / qm.l2_entries) + 1;
    qcow2_l2_reverse(&qm, l1i, m.p + 5 * SCS, rev, 11);
    for (unsigned h = 0; h < 11; h++)
        ck_assert_uint_eq(rev[h], 0);
    qcow2_map_close(&qm);
    free(m.p);
}
END_TEST

/* Mutants of the header, the L1 and an L2 table: 0 or -EINVAL, and on
 * success every L1 entry keeps the promise (map_reverse checks it) and
 * the reverse map stays inside its array (ASan/valgrind would see). */
START_TEST(map_fuzz)
{
    struct mem m;
    synth(&m);
    rng_state = 0xfeedbeef;
    uint8_t *orig = malloc(m.size);
    ck_assert_ptr_nonnull(orig);
    memcpy(orig, m.p, m.size);
    unsigned ok = 0, iters = 4000;
    static const uint64_t spans[][2] = {
        {0, 104}, {3 * SCS, 3 * SCS + 32}, {5 * SCS, 5 * SCS + 64}};
    for (unsigned it = 0; it < iters; it++) {
        const uint64_t *sp = spans[it % 3];
        for (unsigned k = 1 + rng() % 6; k > 0; k--) {
            uint64_t at = sp[0] + rng() % (sp[1] - sp[0]);
            uint64_t v = rng();
            m.p[at] = (v & 0x100) ? (uint8_t)v : m.p[at] ^ (1u << (v & 7));
        }
        struct qcow2_map qm;
        int rc = map_mem(&m, &qm);
        ck_assert_msg(rc == 0 || rc == -EINVAL, "iteration %u: rc %d (%s)",
                      it, rc, err);
        if (rc == 0) {
            uint64_t cs = 1ull << qm.cluster_bits;
            free(map_reverse(&m, &qm, m.size / cs + 1));
            ok++;
        }
        qcow2_map_close(&qm);
        memcpy(m.p, orig, m.size);
    }
    ck_assert_uint_gt(ok, 0);
    ck_assert_uint_lt(ok, iters);
    free(orig);
    free(m.p);
}
END_TEST

/* ------------------------------------------------------------ qemu images */

#define QIO "qemu-io -f qcow2"

START_TEST(qemu_default)
{
    struct ref f;

    sh("qemu-img create -q -f qcow2 a.qcow2 1G");
    check_image("a.qcow2", 0, NULL);
    sh(QIO " -c 'write -P 0xab 0 1M' -c 'write 100M 64k' "
           "-c 'write -P 0x11 900M 4k' a.qcow2");
    check_image("a.qcow2", 1, &f);
    ck_assert_uint_eq(f.cs, 65536);
    ck_assert_uint_eq(f.l2_count, 2); /* 0-512M and 512M-1G */
    free(f.meta);
}
END_TEST

START_TEST(qemu_cluster_4k)
{
    struct ref f;

    sh("qemu-img create -q -f qcow2 -o cluster_size=4096 b.qcow2 4G");
    sh(QIO " -c 'write 0 64k' -c 'write 100M 4k' -c 'write 1G 1M' "
           "-c 'write 4095M 1M' b.qcow2");
    check_image("b.qcow2", 1, &f);
    ck_assert_uint_eq(f.cs, 4096);
    ck_assert_uint_eq(f.l2_count, 4);
    free(f.meta);
}
END_TEST

START_TEST(qemu_cluster_2m)
{
    struct byte_range *r;
    size_t n;
    struct stat st;

    /* Fresh: header, refcount table and block, then an 8-byte L1 table
     * that ends the file mid-cluster.  One range, cut at EOF. */
    sh("qemu-img create -q -f qcow2 -o cluster_size=2M c.qcow2 1G");
    ck_assert_int_eq(stat(tpath("c.qcow2"), &st), 0);
    ck_assert_int_ne(st.st_size % (2 << 20), 0);
    ck_assert_msg(parse_path(tpath("c.qcow2"), &r, &n, NULL) == 0, "%s", err);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(r[0].off, 0);
    ck_assert_uint_eq(r[0].len, (uint64_t)st.st_size);
    free(r);
    sh(QIO " -c 'write -P 1 0 3M' -c 'write 700M 1k' c.qcow2");
    check_image("c.qcow2", 1, NULL);
}
END_TEST

START_TEST(qemu_cluster_512_big_l1)
{
    /* 512-byte clusters and 16G: a 4 MiB L1 table, read in 1 MiB chunks. */
    struct byte_range *r;
    size_t n, max_len;
    struct ref f;

    sh("qemu-img create -q -f qcow2 -o cluster_size=512 d.qcow2 16G");
    sh(QIO " -c 'write 0 64k' -c 'write 8G 512' -c 'write 16383M 1M' "
           "d.qcow2");
    ck_assert_msg(parse_path(tpath("d.qcow2"), &r, &n, &max_len) == 0, "%s",
                  err);
    ck_assert_uint_eq(max_len, QCOW2_READ_MAX);
    free(r);
    check_image("d.qcow2", 1, &f);
    ck_assert_uint_eq(f.l2_count, 2 + 1 + 32);
    free(f.meta);
}
END_TEST

START_TEST(qemu_snapshots)
{
    struct byte_range *r;
    size_t n;
    struct ref f;

    sh("qemu-img create -q -f qcow2 e.qcow2 2G");
    sh(QIO " -c 'write -P 1 0 1M' -c 'write -P 2 1G 64k' e.qcow2");
    sh("qemu-img snapshot -c s1 e.qcow2");
    /* Copy-on-write: the active image gets new L2 tables. */
    sh(QIO " -c 'write -P 3 0 64k' -c 'write -P 4 1536M 64k' e.qcow2");
    sh("qemu-img snapshot -c second-snapshot-with-a-longer-name e.qcow2");
    sh(QIO " -c 'write -P 5 1G 64k' e.qcow2");
    check_image("e.qcow2", 1, &f);
    ck_assert_uint_eq(f.nsnap, 2);
    ck_assert_msg(parse_path(tpath("e.qcow2"), &r, &n, NULL) == 0, "%s", err);
    for (uint32_t i = 0; i < f.nsnap; i++) {
        ck_assert_uint_ne(f.snap_l1[i], f.l1_off);
        ck_assert(covered(r, n, f.snap_l1[i]));
    }
    free(r);
    free(f.meta);

    /* Deleting a snapshot leaves a one-entry table. */
    sh("qemu-img snapshot -d s1 e.qcow2");
    check_image("e.qcow2", 1, &f);
    ck_assert_uint_eq(f.nsnap, 1);
    free(f.meta);
}
END_TEST

START_TEST(qemu_compat_v2)
{
    struct mem m;

    sh("qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1G");
    sh(QIO " -c 'write 0 1M' -c 'write 600M 64k' v2.qcow2");
    sh("qemu-img snapshot -c s1 v2.qcow2");
    sh(QIO " -c 'write 0 64k' v2.qcow2");
    load(tpath("v2.qcow2"), &m);
    ck_assert_uint_eq(rd32(m.p + 4), 2);
    free(m.p);
    check_image("v2.qcow2", 1, NULL);
}
END_TEST

START_TEST(qemu_external_data_file)
{
    struct mem m;

    sh("qemu-img create -q -f qcow2 -o data_file=%s/data.raw f.qcow2 1G",
       tmpdir);
    sh(QIO " -c 'write -P 7 0 1M' -c 'write 700M 64k' f.qcow2");
    load(tpath("f.qcow2"), &m);
    ck_assert_uint_ne(rd64(m.p + 72) & 4, 0); /* external data file bit */
    free(m.p);
    check_image("f.qcow2", 0, NULL); /* qemu-img map names data.raw */
}
END_TEST

START_TEST(qemu_extended_l2_compressed)
{
    sh("qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=128k "
       "g.qcow2 1G");
    sh(QIO " -c 'write -P 9 0 256k' -c 'write -c 512M 128k' "
           "-c 'write -z 900M 64k' g.qcow2");
    check_image("g.qcow2", 0, NULL);
}
END_TEST

START_TEST(qemu_truncated)
{
    struct byte_range *r;
    size_t n;
    struct mem m;

    sh("qemu-img create -q -f qcow2 t.qcow2 1G");
    load(tpath("t.qcow2"), &m);
    uint64_t l1 = rd64(m.p + 40);
    /* Cut the file just before the L1 table. */
    ck_assert_int_eq(truncate(tpath("t.qcow2"), (off_t)l1), 0);
    ck_assert_int_eq(parse_path(tpath("t.qcow2"), &r, &n, NULL), -EINVAL);
    ck_assert_msg(strstr(err, "L1 table") && strstr(err, "outside the file"),
                  "%s", err);

    /* Header says L1 is far beyond EOF. */
    wr64(m.p + 40, 1ull << 30);
    save(tpath("t.qcow2"), &m);
    ck_assert_int_eq(parse_path(tpath("t.qcow2"), &r, &n, NULL), -EINVAL);
    ck_assert_msg(strstr(err, "L1 table (offset 0x40000000") != NULL, "%s",
                  err);
    free(m.p);

    /* Data written, then the L2 table cut off. */
    sh("qemu-img create -q -f qcow2 u.qcow2 1G");
    sh(QIO " -c 'write 0 64k' u.qcow2");
    load(tpath("u.qcow2"), &m);
    uint64_t l2 = rd64(m.p + rd64(m.p + 40)) & 0x00fffffffffffe00ull;
    free(m.p);
    ck_assert_int_eq(truncate(tpath("u.qcow2"), (off_t)l2), 0);
    ck_assert_int_eq(parse_path(tpath("u.qcow2"), &r, &n, NULL), -EINVAL);
    ck_assert_msg(strstr(err, "L2 table offset") &&
                      strstr(err, "past the end of the file"),
                  "%s", err);
}
END_TEST

START_TEST(fuzz_qemu_image)
{
    struct mem m;

    sh("qemu-img create -q -f qcow2 -o cluster_size=4096 z.qcow2 256M");
    sh(QIO " -c 'write 0 64k' -c 'write 100M 4k' z.qcow2");
    sh("qemu-img snapshot -c s1 z.qcow2");
    sh(QIO " -c 'write 0 4k' z.qcow2");
    load(tpath("z.qcow2"), &m);
    rng_state = 42;
    unsigned ok = fuzz(&m, 0, 512, 2000);
    ck_assert_uint_gt(ok, 0);
    ck_assert_uint_lt(ok, 2000);
    uint64_t snap = rd64(m.p + 64);
    ok = fuzz(&m, snap, snap + 64, 1000);
    ck_assert_uint_gt(ok, 0);
    free(m.p);
}
END_TEST

/* ------------------------------------------------------------ main */

static int have_qemu(void)
{
    return system("qemu-img --version >/dev/null 2>&1 && "
                  "qemu-io --version >/dev/null 2>&1") == 0;
}

static void add(Suite *s, const char *name, const TTest *t)
{
    TCase *tc = tcase_create(name);

    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, t);
    suite_add_tcase(s, tc);
}

int main(void)
{
    Suite *s = suite_create("qcow2");
    const TTest *always[] = {
        synthetic_exact, synthetic_short_last_cluster,
        synthetic_no_snapshots_no_l1, header_errors, not_qcow2,
        entry_errors, snapshot_table_at_eof, read_errors_propagate,
        duplicate_l2_pointers, fuzz_synthetic, map_synthetic,
        map_scattered, map_extended_l2, map_bad_l1_entries,
        map_header_errors, map_read_errors, map_guest_overflow, map_fuzz,
    };
    const TTest *qemu[] = {
        qemu_default, qemu_cluster_4k, qemu_cluster_2m,
        qemu_cluster_512_big_l1, qemu_snapshots, qemu_compat_v2,
        qemu_external_data_file, qemu_extended_l2_compressed,
        qemu_truncated, fuzz_qemu_image,
    };

    for (size_t i = 0; i < sizeof always / sizeof always[0]; i++)
        add(s, "synthetic", always[i]);
    if (have_qemu()) {
        for (size_t i = 0; i < sizeof qemu / sizeof qemu[0]; i++)
            add(s, "qemu", qemu[i]);
    } else {
        fprintf(stderr, "check_qcow2: qemu-img/qemu-io not found, "
                        "skipping the tests on real images\n");
    }
    return ck_run(s);
}
