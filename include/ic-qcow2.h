/* qcow2 metadata walker (pure: no FUSE, no SQLite, no global state).
 *
 * Finds the byte ranges of a qcow2 template that QEMU reads as metadata, so
 * they can be pinned in the cache (`pin = qcow2-metadata`).  The image is
 * untrusted: every header field and table entry is checked against
 * file_size before it is used or anything is allocated for it, and a bad
 * image yields -EINVAL with a message, never a crash or a huge allocation.
 *
 * Pinned, as whole clusters (cluster_size = 1 << cluster_bits):
 *   - cluster 0: the header, its extensions and the backing file name
 *     (QEMU requires all three to lie in the first cluster);
 *   - the active L1 table and every L2 table it references;
 *   - the refcount table and every refcount block it references;
 *   - the snapshot table and each snapshot's L1 table.  The L2 tables of a
 *     snapshot are NOT walked: QEMU reads them only to revert to or read a
 *     snapshot, and the ones still shared with the active image (the usual
 *     case for a template) are pinned through the active L1 anyway.
 * Not pinned: data clusters (compressed or not, and with an external data
 * file there are none here), the bitmap directory and bitmap tables, the
 * LUKS header of an encrypted image.
 *
 * Version 2 and 3 images are accepted, cluster_bits 9..21, and the
 * incompatible features QEMU 7 knows (dirty, corrupt, external data file,
 * compression type, extended L2); an unknown incompatible feature bit is
 * refused, as QEMU does, since the layout may then differ.
 *
 * Reads go through `rd` only, at most QCOW2_READ_MAX bytes per call, and
 * only inside [0, file_size).  Tables that are only pinned (L2 tables,
 * refcount blocks, snapshot L1 tables) are never read. */
#ifndef IC_QCOW2_H
#define IC_QCOW2_H

#include <stddef.h>
#include <stdint.h>

#include "ic-pinspec.h" /* struct byte_range */

/* Read exactly len bytes at off into buf: 0 or -errno (a short read is an
 * error: the walker never asks for bytes past file_size). */
typedef int (*qcow2_read_fn)(void *ctx, void *buf, uint64_t off, size_t len);

#define QCOW2_READ_MAX (1u << 20)

/* Limits beyond which an image is refused (QEMU's are at most these). */
#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES (32u << 20)
#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_MAX_SNAPSHOT_TABLE_BYTES (64u << 20)
#define QCOW2_MAX_SNAPSHOT_EXTRA 1024

/* On success: 0, *out a malloc'd array of *n ranges, sorted, merged
 * (no two overlap or touch), each starting on a cluster boundary and
 * covering whole clusters except that a range reaching the end of the
 * file is cut at file_size (qemu-img leaves the last cluster short).
 * On failure: -EINVAL (not qcow2, unsupported, or damaged), -ENOMEM, or
 * the error rd returned; *out is NULL, *n is 0 and err holds one line,
 * e.g. "not a qcow2 image (bad magic)". */
int qcow2_metadata_ranges(qcow2_read_fn rd, void *ctx, uint64_t file_size,
                          struct byte_range **out, size_t *n, char *err,
                          size_t errlen);

/* The guest-to-host cluster mapping, for readahead (fs/engine/qmap.c):
 * the header and the active L1 table, read through rd; the caller reads
 * the L2 tables it wants (cluster_size bytes at l1[i], when not 0) and
 * hands each to qcow2_l2_reverse.  A hint, not a verdict: an L1 entry
 * that is misaligned or points past the file reads as unallocated. */
struct qcow2_map {
    uint32_t cluster_bits;
    uint32_t l2_entries;  /* entries per L2 table */
    uint32_t l2e_bytes;   /* 8, or 16 with extended L2 entries */
    uint64_t l1_size;     /* entries */
    uint64_t *l1;         /* L2 table offsets, 0: none (malloc'd) */
};

/* 0, -EINVAL (not qcow2, unsupported, an external data file: no data
 * clusters here), -ENOMEM or rd's error, with err as for
 * qcow2_metadata_ranges. */
int qcow2_map_open(qcow2_read_fn rd, void *ctx, uint64_t file_size,
                   struct qcow2_map *m, char *err, size_t errlen);
void qcow2_map_close(struct qcow2_map *m);

/* For L2 table l1i (its cluster_size bytes in l2): rev[h] = guest cluster
 * + 1 for every host cluster h < nclusters that it maps as plain data (not
 * compressed, not a zero cluster, cluster-aligned); guest clusters beyond
 * 2^32 - 2 are left out. */
void qcow2_l2_reverse(const struct qcow2_map *m, uint64_t l1i,
                      const void *l2, uint32_t *rev, uint64_t nclusters);

#endif
