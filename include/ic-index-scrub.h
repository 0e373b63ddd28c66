/* What imgcache-scrub asks of the index file (fs/index/index-scrub.c). */
#ifndef IC_INDEX_SCRUB_H
#define IC_INDEX_SCRUB_H

/* Whether cache_dir/index.db holds no tables: an empty file, or a
 * database whose schema never reached the disk (a power cut right after it
 * was created).  The daemon creates the schema in it at its next start.
 * 1 empty, 0 not, -ENOENT missing, -EIO unreadable (not logged). */
int index_is_empty(const char *cache_dir);

#endif
