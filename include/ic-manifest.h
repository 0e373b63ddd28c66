/* Block manifests: a template's size, block size and, for every block, a
 * SHA-256 of its bytes, written by imgcache-manifest beside the template on
 * the image server and checked by the daemon against every block it
 * fetches.  Layer base; links libcrypto (OpenSSL EVP).
 *
 * File format (every integer little-endian)
 *
 *   offset  size  field
 *        0     8  magic      "ICMANIF1"
 *        8     4  version    1
 *       12     4  hash_alg   1 = SHA-256
 *       16     8  file_size  the template's size in bytes
 *       24     4  block_size a power of two, 4 KiB .. 16 MiB
 *       28     4  flags      bit 0 MANIFEST_F_MTIME: template_mtime is
 *                            set; every other bit 0 (else refused)
 *       32     8  nblocks    ceil(file_size / block_size)
 *       40     8  template_mtime  the template's st_mtim when it was
 *                            hashed, ns since the epoch (signed); 0
 *                            without MANIFEST_F_MTIME (else refused)
 *       48    16  reserved   all zero
 *       64  32*n  entries    entry i = SHA-256 of block i (the last block:
 *                            its real, short length); a block of only zero
 *                            bytes has an entry of 32 zero bytes instead
 *                            (no SHA-256 output is all zeros in practice,
 *                            so the marker cannot be confused with a hash)
 *   64+32n   32  trailer    SHA-256 of the 64 + 32*n bytes before it
 *
 * template_mtime binds the manifest to one version of the template: the
 * bytes of a template rewritten in place at the same size are another
 * version with another mtime, and the daemon trusts a manifest for bytes
 * the origin did not send (zero blocks, local copies) only when its
 * template_mtime is the origin's (ic-verify.h).  manifest_build records
 * the mtime it saw before and after hashing (it fails when they differ).
 *
 * The file's length must be exactly 64 + 32*nblocks + 32.  A manifest is
 * refused unless every field above holds; the message says which did not
 * ("bad magic", "truncated: N entries of M", "checksum mismatch", "block
 * size 3000 is not a power of two", ...).  A 100 GiB template with 64 KiB
 * blocks has a 50 MiB manifest: it is mmap'd, never copied into RAM.
 *
 * Errors: 0 or -errno per ic-error.h.  The open functions fill err with one
 * line on failure and never log; manifest_build and manifest_verify
 * likewise.  err does not repeat the manifest's path or URL: the caller,
 * who knows where it came from, puts it in front.
 *
 * manifest_open maps the file: the file must not be truncated while it is
 * open (a read past the new end is SIGBUS).  Whoever replaces a manifest
 * does it by rename, as manifest_build does, which leaves the mapped
 * inode alone.
 *
 * Threads: a struct manifest is immutable once opened; any number of
 * threads may call the accessors and manifest_entry on it at once, until
 * manifest_close.  manifest_hash and manifest_is_zero are pure. */
#ifndef IC_MANIFEST_H
#define IC_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MANIFEST_HASH_LEN 32            /* SHA-256 (OpenSSL libcrypto EVP; SHA-NI on this CPU) */
#define MANIFEST_SUFFIX ".imgcache-manifest"

#define MANIFEST_MAGIC "ICMANIF1"
#define MANIFEST_VERSION 1
#define MANIFEST_HASH_SHA256 1
#define MANIFEST_HEADER_LEN 64
#define MANIFEST_MIN_BLOCK (4u << 10)
#define MANIFEST_MAX_BLOCK (16u << 20)
#define MANIFEST_F_MTIME 1u             /* flags: template_mtime is set */

struct manifest;                          /* opened + validated; mmap'd read-only, never copied into RAM */

/* Open and validate the manifest at path (mmap'd read-only).  -EINVAL for
 * a file that is not a valid manifest (err says why), -ENOENT etc. from
 * open. */
int  manifest_open(const char *path, struct manifest **out, char *err, size_t errlen);
/* The same on a buffer, without a copy: buf must outlive *out (fuzzer,
 * tests, a manifest already in memory). */
int  manifest_open_mem(const void *buf, size_t len, struct manifest **out, char *err, size_t errlen);
/* NULL is a no-op. */
void manifest_close(struct manifest *m);

uint64_t manifest_file_size(const struct manifest *m);   /* the template's size in bytes */
uint32_t manifest_block_size(const struct manifest *m);  /* power of two, 4 KiB .. 16 MiB */
uint64_t manifest_nblocks(const struct manifest *m);     /* ceil(size / block size) */
/* Whether the manifest records the template's mtime (MANIFEST_F_MTIME);
 * if so, *ns = it (ns since the epoch; ns may be NULL). */
bool manifest_template_mtime(const struct manifest *m, int64_t *ns);

/* 1: block idx is all zeros (hash not copied); 0: hash copied to out; -ERANGE: idx out of range */
int  manifest_entry(const struct manifest *m, uint64_t idx, uint8_t out[MANIFEST_HASH_LEN]);

void manifest_hash(const void *buf, size_t len, uint8_t out[MANIFEST_HASH_LEN]);  /* SHA-256 of a block (the last block: its real, short length) */
bool manifest_is_zero(const void *buf, size_t len);

/* Hash the file on fd (size and mtime from fstat) with `threads` workers
 * and write a manifest to out_path via out_path.tmp.PID + fsync + rename:
 * out_path is either the old file or the whole new one, never half of
 * one.  The manifest records the file's mtime (MANIFEST_F_MTIME).
 * threads < 1 means 1.  -EINVAL for a block size the format refuses,
 * -ESTALE when the file's size or mtime changed while it was hashed.
 * Blocks wholly inside holes (lseek SEEK_DATA/SEEK_HOLE) are zero blocks
 * and are not read; the manifest is the one a dense copy of the same
 * bytes gives.  Without SEEK_DATA (EINVAL) every block is read.  The
 * scan moves fd's file offset (lseek) and reads with pread only.  If
 * bytes_read is not NULL it gets the bytes the scan read. */
int  manifest_build(int fd, uint32_t block_size, int threads, const char *out_path,
                    uint64_t *bytes_read, char *err, size_t errlen);

/* Hash every block of the file on fd with `threads` workers and compare
 * with m.  0 when the whole file was read: *nbad blocks differ, and the
 * smallest min(*nbad, max_first) of their indexes are in first_bad,
 * ascending.  Holes are skipped as by manifest_build.  -ESTALE when the
 * file's size is not the manifest's (err gives both) or changed during
 * the scan, other -errno when it cannot be read.  (An addition to the
 * lead's contract (C), for imgcache-manifest --verify.) */
int  manifest_verify(const struct manifest *m, int fd, int threads,
                     uint64_t *first_bad, size_t max_first, uint64_t *nbad,
                     char *err, size_t errlen);

#endif
