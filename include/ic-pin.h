/* Pins: byte ranges of a template whose blocks are never evicted, plus
 * pre-warming and boot-profile recording.
 *
 * Each template keeps its pins as a normalized set of byte ranges (sorted,
 * merged), rounded out to blocks when applied: every block they touch gets
 * BLK_PINNED in the current generation (and in each new one).  The set is
 * persisted in the index (pins table) by the writer.  Pinned bytes count
 * against the quota; a change that would put more than the quota under
 * pins is refused.
 *
 * Locking: the pin set is protected by tmpl.lock; functions here take the
 * locks they need and are called with none held. */
#ifndef IC_PIN_H
#define IC_PIN_H

#include <stddef.h>
#include <stdint.h>

#include "ic-pinspec.h"

struct tmpl;
struct gen;

/* Turn a pin spec (comma list: START-END, START+LENGTH, profile:PATH,
 * qcow2-metadata) into a normalized range set.  qcow2-metadata reads the
 * template's header and tables through the cache (fetching them if
 * needed).  0, or -errno with a one-line message in err. */
int pin_resolve(struct tmpl *t, const char *spec, struct byte_range **out,
                size_t *n, char *err, size_t errlen);

/* Add (unpin = 0) or remove (unpin = 1) ranges.  Adding is refused with
 * -EDQUOT and a message "pin of template X refused: asks N bytes, M
 * already pinned, quota Q" when the pinned blocks would exceed the quota.
 * 0 or -errno. */
int pin_change(struct tmpl *t, const struct byte_range *r, size_t n,
               int unpin, char *err, size_t errlen);

/* Bytes of the blocks covered by the template's pins. */
uint64_t pin_bytes(struct tmpl *t);

struct pin_status {
    uint64_t off, len;   /* one range of the pin set */
    uint64_t bytes;      /* bytes of the blocks it covers */
    uint64_t present;    /* of which present in the cache */
};
/* The pin set with presence figures; *out malloc'd.  0 or -ENOMEM. */
int pin_list(struct tmpl *t, struct pin_status **out, size_t *n);

/* Fill every missing pinned block, `parallel` fetches at a time (1..16).
 * progress (may be NULL) is called from any thread, serialised, with bytes
 * done and total.  Returns 0 when every pinned block is present, -EIO when
 * some could not be fetched (*failed = their bytes). */
typedef void (*pin_progress_fn)(void *ctx, uint64_t done, uint64_t total);
int pin_warm(struct tmpl *t, unsigned parallel, pin_progress_fn progress,
             void *ctx, uint64_t *failed);

/* Recording: note the byte ranges readers of t read.  begin fails with
 * -EBUSY when a recording of t is already running. */
int pin_record_begin(struct tmpl *t);
/* Stop and return the normalized ranges read since begin (*out malloc'd). */
int pin_record_end(struct tmpl *t, struct byte_range **out, size_t *n);
/* Read-path hook (cheap when not recording). */
void pin_record_note(struct tmpl *t, uint64_t off, uint64_t len);

struct index;
/* At start, before the writer runs: load the persisted pin set and mark
 * the current generation.  Errors are logged. */
void pin_load(struct tmpl *t, struct index *ix);
/* After the mount is up: add the config's `pin =` items (they may need
 * origin reads, e.g. qcow2-metadata).  Errors are logged. */
void pin_config(struct tmpl *t);
/* Mark BLK_PINNED in a generation's block table from t's pin set
 * (tmpl.lock held; g not yet shared, or its lock taken inside). */
void pin_mark_gen(struct tmpl *t, struct gen *g);
/* After t->cur changed (tmpl.lock held): recount and re-mark. */
void pin_retarget(struct tmpl *t);

#endif
