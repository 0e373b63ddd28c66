/* Data files: cache_dir/data/<template>.<generation>, sparse, block N at
 * offset N * block_size.  Mechanism only: no policy, no locking. */
#ifndef IC_STORE_H
#define IC_STORE_H

#include <stddef.h>
#include <stdint.h>

/* Create cache_dir/data (0700) if missing; cache_dir must exist (the
 * caller creates and checks it first).  0 or -errno. */
int store_init(const char *cache_dir);
/* The data file's path: cache_dir/data/<name>.<gen>.  0 or -ENAMETOOLONG. */
int store_path(char *out, size_t len, const char *cache_dir,
               const char *name, uint64_t gen);
/* Its block manifest's path: cache_dir/data/<name>.<gen>.imgcache-manifest
 * (removed with the data file by the unlink functions below).  0 or
 * -ENAMETOOLONG. */
int store_manifest_path(char *out, size_t len, const char *cache_dir,
                        const char *name, uint64_t gen);
/* Open (creating) the data file of a template generation, sized to `size`.
 * O_NOFOLLOW: a symlink planted in data/ is refused.  fd or -errno. */
int store_open(const char *cache_dir, const char *name, uint64_t gen,
               uint64_t size);
/* A second descriptor of an existing data file, O_DIRECT, for I/O that
 * bypasses the page cache (whole 4K pages only).  fd or -errno (quietly:
 * the caller falls back to the first descriptor). */
int store_open_direct(const char *cache_dir, const char *name, uint64_t gen);
/* Remove a generation's data file and manifest (missing is not an error).  0 or
 * -errno. */
int store_unlink(const char *cache_dir, const char *name, uint64_t gen);
/* Remove every data file of `name` except generation keep_gen, with its
 * manifest, and every manifest left half fetched (NAME.GEN.imgcache-
 * manifest.tmp: called at a template's start, when none is fetched); best
 * effort (a file that cannot be removed is left, not reported). */
void store_unlink_others(const char *cache_dir, const char *name,
                         uint64_t keep_gen);
/* Free a block's disk space, keeping the file size (evictions, zeros).
 * 0 or -errno (-EOPNOTSUPP where the filesystem cannot punch holes). */
int store_punch(int fd, uint64_t off, uint64_t len);
/* Bytes of disk the file occupies (st_blocks * 512), or -errno. */
int64_t store_allocated(int fd);
/* The same of a generation's stored manifest; 0 when it has none. */
uint64_t store_manifest_bytes(const char *cache_dir, const char *name,
                              uint64_t gen);

#endif
