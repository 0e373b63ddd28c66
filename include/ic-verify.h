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
 * manifest can only cost refetches and EIO when it checks fetched bytes;
 * but a manifest that spares a fetch (a zero block never fetched, a local
 * copy checked against its hash) is believed, so it must be of this
 * generation's version of the template (vmf.spare): it records the
 * template's mtime when it was made (ic-manifest.h), and only when that
 * is the origin's mtime for the generation (a file origin's st_mtim;
 * HTTP: Last-Modified, whole seconds) may it spare.  Another version's
 * (the previous one, left in place while the image was published first,
 * the common order; or one uploaded before its image), one without an
 * mtime, or an origin that gives none: it only checks fetched blocks, said
 * once per manifest taken.  Every manifest a generation takes is judged
 * so: opened from the stored copy (a stored one that is not bound is
 * fetched again first: the origin may have the version's own by now),
 * fetched, or fetched again to heal.
 *
 * Healing: a block that fails on every source has the manifest fetched
 * again (verify_refresh: conditional, If-None-Match or the file's
 * validator, kept with the stored copy as its user.imgcache.validator
 * xattr, set before the rename, so that a restart asks conditionally too;
 * at most once per VERIFY_REFRESH_MS per template, by the reader's
 * deadline) and, when a newer one came, fetched and checked
 * against that.  The fresh manifest replaces the generation's (gen.mf) for
 * the fills that start after; a fill keeps the reference it started with
 * (struct vmf), so nothing it reads is unmapped under it.  An origin that
 * answers it has no manifest (ENOENT, 404, 410) is believed: gen.mf
 * becomes NULL (fills after it check nothing; those holding a reference
 * keep it) and the stored copy is removed.  So is a stored one not bound
 * to the generation that a restart asks for again.  A failure, or a
 * manifest refused or not of the generation's size (it may have been
 * damaged on the way: a proxy's cut reply), keeps the one there is, for
 * checking: never is checking turned off but by the origin's word.
 *
 * Locking: verify_settle waits on gen.filled under gen.lock (bounded by
 * the caller's deadline) and fetches with no lock held; so does
 * verify_refresh.  vmf.refs and gen.mf are gen.lock's.  A local copy
 * takes cache.lookup_lock (a leaf, one query, busy timeout short: a
 * locked index means fetch instead) with no other lock held, then the
 * source template's tmpl.lock and the source generation's gen.lock (each
 * alone) to take a reference, then the source's evict_rw shared across
 * the copy (room is made before: an eviction under it could wait for
 * ourselves).  The caller holds no engine lock. */
#ifndef IC_VERIFY_H
#define IC_VERIFY_H

#include <stdint.h>
#include <stdlib.h>

#include "ic-manifest.h"
#include "ic-origin.h"

struct gen;
struct tmpl;

#define VERIFY_MAX_SOURCES 16
/* A failing block fetches the manifest again at most this often per
 * template. */
#define VERIFY_REFRESH_MS 30000

/* A generation's manifest as fills use it (gen.mf, and one reference per
 * fill using it). */
struct vmf {
    struct manifest *m;
    int refs;                   /* gen.lock */
    int spare;                  /* may spare fetches (see above): fixed */
    struct origin_fetched meta; /* its mtime and validator: fixed */
};

/* Settle g's manifest (open the stored copy or fetch it), single-flight,
 * by the deadline.  After it, gen.mf_state is MF_SETTLED. */
void verify_settle(struct gen *g, uint64_t deadline);
/* A reference to g's current manifest (NULL: none); put it back. */
struct vmf *verify_get(struct gen *g);
void verify_put(struct gen *g, struct vmf *v);
/* Drop a reference no other thread can see (gen.mf at the generation's
 * end); inline, so that cache.c below verify.c may. */
static inline void vmf_release(struct vmf *v)
{
    if (v != NULL && --v->refs == 0) {
        manifest_close(v->m);
        free(v);
    }
}
/* A manifest newer than old for g: the one another fill fetched since,
 * or the one fetched now (see Healing).  0 with *fresh a reference to
 * it; -ENOENT when g has none any more (the origin answered that it has
 * none, or one that is not g's: gen.mf was dropped, the stored copy
 * removed); -EAGAIN when none came (too soon, unchanged, unreachable, the
 * deadline).  old stays the caller's reference to put either way. */
int verify_refresh(struct gen *g, struct vmf *old, uint64_t deadline,
                   struct vmf **fresh);

/* Whether block blk is known to be all zeros (only where v may spare). */
int verify_zero(const struct gen *g, const struct vmf *v, uint64_t blk);
/* The manifest's hash of block blk when it is one manifest block (the
 * sizes agree) and not a zero block: 1 with sha set, else 0. */
int verify_block_sha(const struct gen *g, const struct vmf *v, uint64_t blk,
                     uint8_t sha[MANIFEST_HASH_LEN]);

/* The byte range a fetch of [off, off+len) must cover to be checkable:
 * widened to whole manifest blocks (larger than the template's). */
void verify_span(const struct gen *g, const struct vmf *v, uint64_t *off,
                 uint64_t *len);
/* Check fetched bytes data = [off, off+len) (as verify_span gave them)
 * against the manifest.  bad[i] = 1 for template block first+i (of n)
 * that does not match (a manifest block failing marks every template
 * block it covers); the count of bad blocks. */
uint64_t verify_check(const struct gen *g, const struct vmf *v,
                      const char *data, uint64_t off, uint64_t len,
                      uint64_t first, uint64_t n, uint8_t *bad);

/* Fill block blk of g (claimed FILLING by the caller) from a present
 * block with the same SHA-256, anywhere in the cache (one indexed query;
 * only where v may spare): copy into g's data file, read back, check.  1
 * when done: the block's bytes are in buf (its whole length) and on
 * disk, for the caller to publish, and *reserved is the room taken for it
 * (evict_unreserve once published); 0 when no copy could be made (nothing
 * changed). */
int verify_copy_local(struct gen *g, const struct vmf *v, uint64_t blk,
                      char *buf, uint64_t *reserved);

/* A block fetched from source src (origin_source_name) failed its
 * check: count and log it. */
void verify_note_failure(struct gen *g, int src, uint64_t blk, int retried);

#endif
