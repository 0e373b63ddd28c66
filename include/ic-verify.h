/* Block manifests in the engine (fs/engine/verify.c): each generation's
 * manifest (ic-manifest.h) fetched once and kept beside its data file,
 * the check of fetched bytes against it, zero blocks known without a
 * fetch, and delta fills: a block whose hash matches a present block
 * anywhere in the cache is copied from that block's data file instead of
 * fetched.  Engine-private (fs/engine/ only).
 *
 * The manifest of generation N of template T is
 * cache_dir/data/T.N.imgcache-manifest, fetched from the template's
 * `manifest` location (auto: the origin's location + MANIFEST_SUFFIX) the
 * first time a fill of N needs it, and removed with the data file.  A
 * manifest whose file_size is not N's size is stale, one whose block size
 * neither divides nor is a multiple of the template's is unusable: both
 * are ignored with a warning, as are refused or unreachable ones; a
 * missing one (ENOENT, 404, 410) means none, quietly.
 *
 * Bytes never trusted: every fetched byte is checked against the manifest
 * before it is stored or served, a local copy after it is made.  A wrong
 * manifest checking fetched bytes can only cost refetches and EIO.
 *
 * Binding: a manifest that stands in for bytes the origin does not send
 * (a zero block never fetched, a local copy checked against its hash) is
 * believed, so it must be of this generation's version of the template:
 * it records the template's mtime when it was made (ic-manifest.h), and
 * only when that is the origin's mtime for the generation (a file origin's
 * st_mtim; HTTP: Last-Modified, whole seconds) is it bound (gen.mf_bound).
 * An unbound one (another version's, published the image first; without
 * an mtime; an origin that gives none) only checks fetched blocks, said
 * once per generation.  Every manifest that becomes a generation's is
 * judged so, whether opened from the stored copy or fetched (a stored
 * unbound one is fetched again first: the origin may have the version's
 * own by now); a later fetch of it for the same generation (healing a
 * stale one) must pass the same rule before copies are trusted.
 *
 * Locking: verify_settle waits on gen.filled under gen.lock (bounded by
 * the caller's deadline) and fetches with no lock held.  A local copy
 * takes cache.lookup_lock (a leaf, one query) with no other lock held,
 * then the source template's tmpl.lock and the source generation's
 * gen.lock (each alone) to take a reference, then the source's evict_rw
 * shared across the copy (room is made before: an eviction under it
 * could wait for ourselves).  The caller holds no engine lock. */
#ifndef IC_VERIFY_H
#define IC_VERIFY_H

#include <stdint.h>

#include "ic-manifest.h"

struct gen;
struct tmpl;

#define VERIFY_MAX_SOURCES 16

/* Settle g's manifest (open the stored copy or fetch it), single-flight,
 * by the deadline.  After it, g->mf is fixed (NULL: none). */
void verify_settle(struct gen *g, uint64_t deadline);

/* With a settled, bound manifest: whether block blk is known to be all
 * zeros (0 when the manifest is not bound). */
int verify_zero(const struct gen *g, uint64_t blk);
/* The manifest's hash of block blk when it is one manifest block (the
 * sizes agree) and not a zero block: 1 with sha set, else 0. */
int verify_block_sha(const struct gen *g, uint64_t blk,
                     uint8_t sha[MANIFEST_HASH_LEN]);

/* The byte range a fetch of [off, off+len) must cover to be checkable:
 * widened to whole manifest blocks (larger than the template's). */
void verify_span(const struct gen *g, uint64_t *off, uint64_t *len);
/* Check fetched bytes data = [off, off+len) (as verify_span gave them)
 * against the manifest.  bad[i] = 1 for template block first+i (of n)
 * that does not match (a manifest block failing marks every template
 * block it covers); the count of bad blocks. */
uint64_t verify_check(const struct gen *g, const char *data, uint64_t off,
                      uint64_t len, uint64_t first, uint64_t n,
                      uint8_t *bad);

/* Fill block blk of g (claimed FILLING by the caller) from a present
 * block with the same SHA-256, anywhere in the cache (one indexed query;
 * never with an unbound manifest):
 * copy into g's data file, read back, check.  1 when done: the block's
 * bytes are in buf (its whole length) and on disk, for the caller to
 * publish, and *reserved is the room taken for it (evict_unreserve once
 * published); 0 when no copy could be made (nothing changed). */
int verify_copy_local(struct gen *g, uint64_t blk, char *buf,
                      uint64_t *reserved);

/* A block fetched from source src (origin_source_name) failed its
 * check: count and log it. */
void verify_note_failure(struct gen *g, int src, uint64_t blk, int retried);

#endif
