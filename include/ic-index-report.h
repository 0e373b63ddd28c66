/* The index's read side for imgcache-report (fs/index/index-report.c),
 * on an index_open_ro() handle. */
#ifndef IC_INDEX_REPORT_H
#define IC_INDEX_REPORT_H

#include <stdint.h>

#include "ic-index.h"

/* All return 0 or -errno (-EIO for a failed query, logged). */

/* meta keys: the last event id a report covered, and when it ran. */
#define INDEX_META_CURSOR "report_cursor"
#define INDEX_META_CURSOR_TS "report_cursor_ts"

/* Make the following queries see one consistent state of the index (a
 * read transaction); end it promptly, it holds back WAL checkpoints. */
int index_snapshot_begin(struct index *ix);
void index_snapshot_end(struct index *ix);

/* What the current generation (t->generation) holds. */
struct index_usage {
    uint64_t cached_blocks;         /* present blocks with data */
    uint64_t cached_bytes;          /* their bytes (last block may be short) */
    uint64_t zero_blocks;           /* present all-zero blocks (holes) */
    uint64_t pinned_blocks;         /* blocks touched by the pin ranges */
    uint64_t pinned_bytes;          /* ... and their bytes */
    uint64_t pinned_present_blocks; /* of those, present (zero ones too) */
    uint64_t pinned_present_bytes;
    /* Per pin class (enum pin_class, [PIN_LOW..PIN_BOOT]): bytes of the
     * blocks whose strongest pin is of that class, and of those present. */
    uint64_t class_pinned_bytes[PIN_NCLASS];
    uint64_t class_present_bytes[PIN_NCLASS];
};
int index_usage_get(struct index *ix, const struct index_tmpl *t,
                    struct index_usage *out);

/* Events with after_id < id <= upto_id and ts >= since_ts. */
struct index_window {
    int64_t after_id, upto_id, since_ts;
};
struct index_event_sum {
    uint64_t evict_events, evicted_blocks, evicted_bytes;
    uint64_t error_events, error_blocks, error_bytes;
    uint64_t generations;  /* "generation" events: origin changed */
    int64_t last_error_ts; /* newest "error" event in the window, 0 = none */
    char last_error[256];  /* ... and its detail text */
    /* "verify" events: fetched blocks that failed their manifest check,
     * one row per source and save interval with the count in blocks
     * (older daemons: one row per block, blocks = 1).  Summed per source
     * (the event's detail: a masked URL), the most failures first, at
     * most INDEX_VERIFY_SOURCES of them. */
    uint64_t verify_events, verify_blocks;
    size_t nverify;
    struct {
        char source[256];
        uint64_t count;
    } verify[8];
};
#define INDEX_VERIFY_SOURCES 8
int index_events_sum(struct index *ix, int64_t tid,
                     const struct index_window *w,
                     struct index_event_sum *out);
/* Largest event id (0 when there are none). */
int index_events_last_id(struct index *ix, int64_t *id);
/* The report cursor: 0 and 0 when no report has advanced it yet. */
int index_report_cursor(struct index *ix, int64_t *id, int64_t *ts);
/* Open the EXISTING cache_dir/index.db read-write just for this (never
 * creating or moving anything aside), in one transaction: move the cursor
 * up to id (never back), record now as its time, delete events with
 * ts < prune_before (0: none; the newest event is always kept).
 * -ENOENT when there is no index. */
int index_report_advance(const char *cache_dir, int64_t id, int64_t now,
                         int64_t prune_before);

#endif
