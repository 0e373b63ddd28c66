/* qcow2 metadata walker; see ic-qcow2.h for what is pinned and why.
 *
 * Layout reference: QEMU docs/interop/qcow2.txt.  All header fields and
 * table entries are big-endian. */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic-error.h"
#include "ic-qcow2.h"

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */
#define HDR_V2_LEN 72
#define HDR_V3_LEN 104
#define MIN_CLUSTER_BITS 9
#define MAX_CLUSTER_BITS 21

/* Incompatible feature bits QEMU 7 knows: dirty, corrupt, external data
 * file, compression type, extended L2 entries.  None changes where the
 * tables we pin live or how big they are. */
#define KNOWN_INCOMPAT 0x1fu

/* Offset bits of an L1 entry (bit 63 is "copied", bits 0-8 reserved) and
 * of a refcount table entry (bits 0-8 reserved). */
#define L1E_OFFSET_MASK 0x00fffffffffffe00ull
#define REFT_OFFSET_MASK 0xfffffffffffffe00ull

/* Fixed part of a snapshot table entry; extra data, id and name follow. */
#define SNAP_FIXED_LEN 40

struct header {
    uint32_t version;
    uint32_t cluster_bits;
    uint32_t l1_size; /* entries */
    uint64_t l1_off;
    uint64_t reftable_off;
    uint32_t reftable_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_off;
    uint64_t incompat; /* 0 for version 2 */
};

struct walk {
    qcow2_read_fn rd;
    void *ctx;
    uint64_t file_size;
    uint64_t cs; /* cluster size */
    /* Ranges found so far: unsorted until the end, may contain duplicates
     * between compactions.  Never more than max slots: merged ranges start
     * on distinct clusters of the file, so there are at most as many as
     * the file has clusters. */
    struct byte_range *v;
    size_t n, cap, max;
    char *err;
    size_t errlen;
};

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return be32toh(v);
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return be64toh(v);
}

static uint16_t get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return be16toh(v);
}

__attribute__((format(printf, 2, 3))) static int bad(struct walk *w,
                                                     const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(w->err, w->errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int wread(struct walk *w, void *buf, uint64_t off, size_t len)
{
    int rc = w->rd(w->ctx, buf, off, len);

    if (rc < 0) {
        snprintf(w->err, w->errlen,
                 "reading %zu bytes at offset %#" PRIx64 ": %s", len, off,
                 strerror(-rc));
        return rc;
    }
    return 0;
}

/* ------------------------------------------------------------ ranges */

/* Merge what we have; grow only if that did not free enough room, so that
 * an image pointing a million L1 entries at one L2 table stays small. */
static int make_room(struct walk *w)
{
    if (w->n > 0) {
        ranges_normalize(w->v, &w->n);
        if (w->n < w->cap && (w->n <= w->cap / 2 || w->cap == w->max))
            return 0;
    }
    if (w->cap >= w->max)
        return bad(w, "more metadata ranges than clusters in the file");
    size_t cap = w->cap ? w->cap * 2 : 64;
    if (cap > w->max)
        cap = w->max;
    struct byte_range *v = reallocarray(w->v, cap, sizeof *v);
    if (v == NULL) {
        snprintf(w->err, w->errlen, "out of memory");
        return -ENOMEM;
    }
    w->v = v;
    w->cap = cap;
    return 0;
}

/* Pin [off, off + len) rounded out to whole clusters and cut at the end
 * of the file.  off is cluster-aligned and inside the file (checked). */
static int add_range(struct walk *w, uint64_t off, uint64_t len)
{
    /* len is at most a capped table size, so rounding cannot wrap. */
    uint64_t want = (len + w->cs - 1) & ~(w->cs - 1);
    uint64_t end = off + (want < w->file_size - off ? want : w->file_size - off);

    /* Tables often follow each other: extend the last range in place. */
    if (w->n > 0) {
        struct byte_range *last = &w->v[w->n - 1];
        if (off >= last->off && off <= last->off + last->len) {
            if (end > last->off + last->len)
                last->len = end - last->off;
            return 0;
        }
    }
    if (w->n == w->cap) {
        int rc = make_room(w);
        if (rc != 0)
            return rc;
    }
    w->v[w->n].off = off;
    w->v[w->n].len = end - off;
    w->n++;
    return 0;
}

/* ------------------------------------------------------------ checks */

/* A table we read or pin: cluster-aligned, bytes entirely inside the file. */
static int check_table(struct walk *w, const char *what, uint64_t off,
                       uint64_t bytes)
{
    uint64_t end;

    if (off & (w->cs - 1))
        return bad(w, "%s offset %#" PRIx64 " is not cluster-aligned", what,
                   off);
    if (__builtin_add_overflow(off, bytes, &end) || end > w->file_size)
        return bad(w,
                   "%s (offset %#" PRIx64 ", %" PRIu64 " bytes) lies "
                   "outside the file (%" PRIu64 " bytes)",
                   what, off, bytes, w->file_size);
    return 0;
}

/* entries * 8 bytes, within cap.  The callers' counts are 32-bit, but the
 * check is spelled out so that no product is trusted. */
static int table_bytes(struct walk *w, const char *what, uint64_t entries,
                       uint64_t cap, uint64_t *bytes)
{
    if (__builtin_mul_overflow(entries, (uint64_t)8, bytes) || *bytes > cap)
        return bad(w, "%s too large (%" PRIu64 " entries, limit %" PRIu64
                      " bytes)",
                   what, entries, cap);
    return 0;
}

/* ------------------------------------------------------------ header */

static int check_version(struct walk *w, const uint8_t *b, size_t got,
                         struct header *h)
{
    if (got < 8 || get32(b) != QCOW2_MAGIC)
        return bad(w, "not a qcow2 image (bad magic)");
    h->version = get32(b + 4);
    if (h->version != 2 && h->version != 3)
        return bad(w, "unsupported qcow2 version %" PRIu32
                      " (only 2 and 3)",
                   h->version);
    if (got < (h->version == 2 ? HDR_V2_LEN : HDR_V3_LEN))
        return bad(w, "truncated qcow2 header (file is %" PRIu64 " bytes)",
                   w->file_size);
    return 0;
}

static int read_header(struct walk *w, struct header *h)
{
    uint8_t b[HDR_V3_LEN];
    size_t got = w->file_size < sizeof b ? (size_t)w->file_size : sizeof b;
    int rc;

    memset(h, 0, sizeof *h);
    if (got > 0 && (rc = wread(w, b, 0, got)) != 0)
        return rc;
    if ((rc = check_version(w, b, got, h)) != 0)
        return rc;
    h->cluster_bits = get32(b + 20);
    h->l1_size = get32(b + 36);
    h->l1_off = get64(b + 40);
    h->reftable_off = get64(b + 48);
    h->reftable_clusters = get32(b + 56);
    h->nb_snapshots = get32(b + 60);
    h->snapshots_off = get64(b + 64);
    if (h->version == 3)
        h->incompat = get64(b + 72);

    if (h->cluster_bits < MIN_CLUSTER_BITS ||
        h->cluster_bits > MAX_CLUSTER_BITS)
        return bad(w, "bad cluster_bits %" PRIu32 " (must be %d..%d)",
                   h->cluster_bits, MIN_CLUSTER_BITS, MAX_CLUSTER_BITS);
    if (h->incompat & ~(uint64_t)KNOWN_INCOMPAT)
        return bad(w, "unsupported qcow2 incompatible features %#" PRIx64,
                   h->incompat & ~(uint64_t)KNOWN_INCOMPAT);
    return 0;
}

/* Every table the header names, checked before anything is allocated. */
static int check_header_tables(struct walk *w, const struct header *h)
{
    uint64_t bytes;
    int rc;

    if (h->l1_size > 0) {
        if ((rc = table_bytes(w, "L1 table", h->l1_size, QCOW2_MAX_L1_BYTES,
                              &bytes)) != 0 ||
            (rc = check_table(w, "L1 table", h->l1_off, bytes)) != 0)
            return rc;
    }
    if (h->reftable_clusters == 0)
        return bad(w, "image has no refcount table");
    /* clusters << cluster_bits: 32 + 21 bits, cannot wrap 64. */
    bytes = (uint64_t)h->reftable_clusters << h->cluster_bits;
    if (bytes > QCOW2_MAX_REFTABLE_BYTES)
        return bad(w, "refcount table too large (%" PRIu32 " clusters)",
                   h->reftable_clusters);
    if ((rc = check_table(w, "refcount table", h->reftable_off, bytes)) != 0)
        return rc;
    if (h->nb_snapshots > QCOW2_MAX_SNAPSHOTS)
        return bad(w, "too many snapshots (%" PRIu32 ", limit %d)",
                   h->nb_snapshots, QCOW2_MAX_SNAPSHOTS);
    if (h->nb_snapshots > 0)
        return check_table(w, "snapshot table", h->snapshots_off,
                           SNAP_FIXED_LEN);
    return 0;
}

/* ------------------------------------------------------------ pointer tables */

/* Walk a table of `entries` big-endian pointers at off (already checked),
 * pinning the cluster each non-zero entry points at.  Read in chunks so a
 * 32 MiB L1 table never sits in memory whole. */
static int scan_pointers(struct walk *w, uint64_t off, uint64_t entries,
                         uint64_t mask, const char *table, const char *target)
{
    uint64_t total = entries * 8; /* checked by the caller */
    size_t bufsz = total < QCOW2_READ_MAX ? (size_t)total : QCOW2_READ_MAX;
    uint8_t *buf = malloc(bufsz);
    uint64_t idx = 0;
    int rc = 0;

    if (buf == NULL) {
        snprintf(w->err, w->errlen, "out of memory");
        return -ENOMEM;
    }
    for (uint64_t done = 0; done < total && rc == 0; done += bufsz) {
        size_t len = total - done < bufsz ? (size_t)(total - done) : bufsz;
        if ((rc = wread(w, buf, off + done, len)) != 0)
            break;
        for (size_t i = 0; i < len && rc == 0; i += 8, idx++) {
            uint64_t p = get64(buf + i) & mask;
            if (p == 0) /* unallocated */
                continue;
            if (p & (w->cs - 1))
                rc = bad(w, "%s entry %" PRIu64 ": %s offset %#" PRIx64
                            " is not cluster-aligned",
                         table, idx, target, p);
            else if (p >= w->file_size)
                rc = bad(w, "%s entry %" PRIu64 ": %s offset %#" PRIx64
                            " is past the end of the file (%" PRIu64
                            " bytes)",
                         table, idx, target, p, w->file_size);
            else
                /* Only the cluster's start must be in the file: QEMU reads
                 * a short last cluster as zeros, and we never read it. */
                rc = add_range(w, p, w->cs);
        }
    }
    free(buf);
    return rc;
}

/* ------------------------------------------------------------ snapshots */

/* A read window over the snapshot table.  A refill reads up to the end of
 * the cluster holding the wanted bytes: that cluster belongs to the table,
 * so the cache is never asked for anything we do not pin anyway. */
struct window {
    uint8_t *buf;
    size_t size; /* allocated */
    uint64_t off;
    size_t len; /* valid bytes at off */
};

static int window_get(struct walk *w, struct window *win, uint64_t off,
                      void *dst, size_t need, uint64_t limit)
{
    if (off < win->off || off - win->off + need > win->len) {
        uint64_t cluster_end = (off | (w->cs - 1)) + 1;
        uint64_t len = cluster_end - off;
        if (len < need)
            len = need;
        if (len > win->size)
            len = win->size;
        if (len > limit - off) /* limit - off >= need: checked */
            len = limit - off;
        int rc = wread(w, win->buf, off, (size_t)len);
        if (rc != 0)
            return rc;
        win->off = off;
        win->len = (size_t)len;
    }
    memcpy(dst, win->buf + (off - win->off), need);
    return 0;
}

/* One snapshot table entry at *pos; pins its L1 table, advances *pos. */
static int walk_snapshot(struct walk *w, struct window *win, uint32_t i,
                         uint64_t *pos, uint64_t limit)
{
    uint8_t e[SNAP_FIXED_LEN];
    uint64_t bytes;
    int rc;

    if (limit - *pos < SNAP_FIXED_LEN)
        return bad(w, "snapshot table entry %" PRIu32 " at %#" PRIx64
                      " runs past the end of the table or file",
                   i, *pos);
    if ((rc = window_get(w, win, *pos, e, sizeof e, limit)) != 0)
        return rc;
    uint64_t l1_off = get64(e);
    uint32_t l1_size = get32(e + 8);
    uint32_t extra = get32(e + 36);
    if (extra > QCOW2_MAX_SNAPSHOT_EXTRA)
        return bad(w, "snapshot %" PRIu32 ": %" PRIu32 " bytes of extra data"
                      " (limit %d)",
                   i, extra, QCOW2_MAX_SNAPSHOT_EXTRA);
    /* 40 + 1024 + 2 * 65535 + 7: no overflow possible. */
    uint64_t len = SNAP_FIXED_LEN + (uint64_t)extra + get16(e + 12) +
                   get16(e + 14);
    if (len > limit - *pos)
        return bad(w, "snapshot table entry %" PRIu32 " at %#" PRIx64
                      " runs past the end of the table or file",
                   i, *pos);
    /* Entries are padded to 8 bytes, but QEMU does not write the last
     * entry's padding: the file may end inside it. */
    len = (len + 7) & ~(uint64_t)7;
    *pos = len < limit - *pos ? *pos + len : limit;
    if (l1_size == 0)
        return 0;
    if ((rc = table_bytes(w, "snapshot L1 table", l1_size,
                          QCOW2_MAX_L1_BYTES, &bytes)) != 0 ||
        (rc = check_table(w, "snapshot L1 table", l1_off, bytes)) != 0)
        return rc;
    return add_range(w, l1_off, bytes);
}

static int walk_snapshots(struct walk *w, const struct header *h)
{
    uint64_t start = h->snapshots_off, pos = start;
    /* The table ends wherever its last entry does: bound it by the file
     * and by QEMU's limit on its size. */
    uint64_t limit = w->file_size - start < QCOW2_MAX_SNAPSHOT_TABLE_BYTES
                         ? w->file_size
                         : start + QCOW2_MAX_SNAPSHOT_TABLE_BYTES;
    struct window win = {0};
    int rc = 0;

    if (h->nb_snapshots == 0)
        return 0;
    win.size = w->cs < QCOW2_READ_MAX ? (size_t)w->cs : QCOW2_READ_MAX;
    if (win.size > limit - start)
        win.size = (size_t)(limit - start);
    win.buf = malloc(win.size);
    if (win.buf == NULL) {
        snprintf(w->err, w->errlen, "out of memory");
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < h->nb_snapshots && rc == 0; i++)
        rc = walk_snapshot(w, &win, i, &pos, limit);
    free(win.buf);
    return rc ? rc : add_range(w, start, pos - start);
}

/* ------------------------------------------------------------ entry point */

static int walk_all(struct walk *w, const struct header *h)
{
    uint64_t reftable_bytes = (uint64_t)h->reftable_clusters << h->cluster_bits;
    int rc;

    if ((rc = add_range(w, 0, w->cs)) != 0 ||
        (rc = add_range(w, h->reftable_off, reftable_bytes)) != 0)
        return rc;
    if (h->l1_size > 0 &&
        (rc = add_range(w, h->l1_off, (uint64_t)h->l1_size * 8)) != 0)
        return rc;
    if ((rc = walk_snapshots(w, h)) != 0)
        return rc;
    if ((rc = scan_pointers(w, h->reftable_off, reftable_bytes / 8,
                            REFT_OFFSET_MASK, "refcount table",
                            "refcount block")) != 0)
        return rc;
    if (h->l1_size > 0)
        rc = scan_pointers(w, h->l1_off, h->l1_size, L1E_OFFSET_MASK,
                           "L1 table", "L2 table");
    return rc;
}

int qcow2_metadata_ranges(qcow2_read_fn rd, void *ctx, uint64_t file_size,
                          struct byte_range **out, size_t *n, char *err,
                          size_t errlen)
{
    struct walk w = {
        .rd = rd, .ctx = ctx, .file_size = file_size,
        .err = err, .errlen = errlen,
    };
    struct header h;
    int rc;

    *out = NULL;
    *n = 0;
    if ((rc = read_header(&w, &h)) != 0)
        return rc;
    w.cs = (uint64_t)1 << h.cluster_bits;
    if ((rc = check_header_tables(&w, &h)) != 0)
        return rc;

    uint64_t clusters = file_size / w.cs + (file_size % w.cs != 0);
    w.max = clusters < SIZE_MAX / sizeof *w.v ? (size_t)clusters
                                               : SIZE_MAX / sizeof *w.v;
    if ((rc = walk_all(&w, &h)) != 0) {
        free(w.v);
        return rc;
    }
    ranges_normalize(w.v, &w.n);
    *out = w.v;
    *n = w.n;
    return 0;
}

/* ------------------------------------------------------------ guest map */

#define INCOMPAT_DATA_FILE 0x4u
#define INCOMPAT_EXTL2 0x10u
#define L2E_OFFSET_MASK 0x00fffffffffffe00ull
#define L2E_COMPRESSED (1ull << 62)
#define L2E_ZERO 0x1ull /* version 3: reads as zeros, host not read */

int qcow2_map_open(qcow2_read_fn rd, void *ctx, uint64_t file_size,
                   struct qcow2_map *m, char *err, size_t errlen)
{
    struct walk w = {
        .rd = rd, .ctx = ctx, .file_size = file_size,
        .err = err, .errlen = errlen,
    };
    struct header h;
    uint64_t bytes = 0;
    int rc;

    memset(m, 0, sizeof *m);
    if ((rc = read_header(&w, &h)) != 0)
        return rc;
    w.cs = (uint64_t)1 << h.cluster_bits;
    if (h.incompat & INCOMPAT_DATA_FILE)
        return bad(&w, "external data file: no data clusters here");
    if (h.l1_size > 0 &&
        ((rc = table_bytes(&w, "L1 table", h.l1_size, QCOW2_MAX_L1_BYTES,
                           &bytes)) != 0 ||
         (rc = check_table(&w, "L1 table", h.l1_off, bytes)) != 0))
        return rc;
    uint8_t *buf = bytes ? malloc(bytes < QCOW2_READ_MAX ? bytes
                                                         : QCOW2_READ_MAX)
                         : NULL;
    m->l1 = calloc(h.l1_size ? h.l1_size : 1, sizeof *m->l1);
    if (m->l1 == NULL || (bytes && buf == NULL)) {
        free(buf);
        free(m->l1);
        m->l1 = NULL;
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (uint64_t done = 0; done < bytes && rc == 0;) {
        size_t len = bytes - done < QCOW2_READ_MAX ? (size_t)(bytes - done)
                                                    : QCOW2_READ_MAX;
        if ((rc = wread(&w, buf, h.l1_off + done, len)) != 0)
            break;
        for (size_t i = 0; i < len; i += 8) {
            uint64_t p = get64(buf + i) & L1E_OFFSET_MASK;
            if ((p & (w.cs - 1)) == 0 && p < file_size &&
                file_size - p >= w.cs)
                m->l1[(done + i) / 8] = p;
        }
        done += len;
    }
    free(buf);
    if (rc != 0) {
        qcow2_map_close(m);
        return rc;
    }
    m->cluster_bits = h.cluster_bits;
    m->l2e_bytes = (h.incompat & INCOMPAT_EXTL2) ? 16 : 8;
    m->l2_entries = (uint32_t)(w.cs / m->l2e_bytes);
    m->l1_size = h.l1_size;
    return 0;
}

void qcow2_map_close(struct qcow2_map *m)
{
    free(m->l1);
    memset(m, 0, sizeof *m);
}

void qcow2_l2_reverse(const struct qcow2_map *m, uint64_t l1i,
                      const void *l2, uint32_t *rev, uint64_t nclusters)
{
    const uint8_t *b = l2;
    uint64_t cs = (uint64_t)1 << m->cluster_bits;
    for (uint32_t j = 0; j < m->l2_entries; j++) {
        uint64_t e = get64(b + (size_t)j * m->l2e_bytes);
        uint64_t off = e & L2E_OFFSET_MASK;
        if ((e & L2E_COMPRESSED) || (e & L2E_ZERO) || off == 0 ||
            (off & (cs - 1)))
            continue;
        uint64_t hc = off >> m->cluster_bits;
        uint64_t guest = l1i * m->l2_entries + j;
        if (hc < nclusters && guest < UINT32_MAX - 1)
            rev[hc] = (uint32_t)(guest + 1);
    }
}
