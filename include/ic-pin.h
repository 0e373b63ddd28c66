/* Pin sets: byte ranges of a template whose blocks are kept in preference
 * to others, by class, and boot-profile recording.  Resolving specs and
 * pre-warming, which read through the cache, are in ic-prewarm.h.
 *
 * Each template keeps, per pin source (ic-pinspec.h: the config, the tool,
 * legacy), one normalized set of byte ranges (sorted, merged) per pin
 * class (boot, high, low), a source's sets pairwise disjoint: pinning a
 * range with a class moves it out of that source's other classes, so
 * changing a range's class is one pin_change.  The sources together make
 * the template's pin sets: a range in the strongest class any source
 * gives it.  A source changes only its own pins: a reload replaces the
 * config's (prewarm_config), imgcache-pin adds to and removes from the
 * tool's, so a range the tool pinned boot stays boot whatever the config
 * says of it, and unpinning it with the tool leaves the config's pin.
 * Applied, the ranges are
 * rounded out to blocks: every block they touch gets its class in its
 * flags (BLK_CLASS, ic-blockmap.h) in the current generation (and in each
 * new one), the strongest class when ranges of two classes share a block.
 * The sets are persisted in the index (pins table, with their class and
 * source) by the writer.  Boot blocks are never evicted and count against the quota:
 * a change that would put more than the quota under boot pins is refused.
 * High and low blocks are evicted after every unpinned block (ic-evict.h);
 * pinning them is never refused, and they may be partly resident.
 *
 * Locking: the pin set is protected by tmpl.lock; the recording by
 * tmpl.rec_lock, a leaf.  pin_mark_gen() and pin_retarget() are called
 * with tmpl.lock held (by cache.c, as it switches generations); every
 * other function takes the locks it needs (tmpl.lock, then gen.lock, and
 * the writer's under them) and is called with no engine lock held but
 * tmpl.cfgpin_lock (prewarm_config's changes) or, for pin_record_note(),
 * gen.evict_rw (a zero-copy read).  None does origin or data-file I/O. */
#ifndef IC_PIN_H
#define IC_PIN_H

#include <stddef.h>
#include <stdint.h>

#include "ic-pinspec.h"

struct tmpl;
struct gen;

enum pin_op { PIN_OP_ADD = 0, PIN_OP_REMOVE = 1, PIN_OP_REPLACE = 2 };

/* One change of source src's pins, all classes at once: ADD puts sets[k]
 * in class k (taking them out of the source's other classes; a range in
 * two of sets ends in the stronger); REMOVE takes sets[k] out of class k
 * and sets[PIN_NONE] out of every class; REPLACE makes the source's sets
 * exactly sets.  The tool's ADD and REMOVE also take their ranges out of
 * the legacy pins, and the config's REPLACE gives the legacy pins it does
 * not name to the tool (ic-pinspec.h).  sets and n have PIN_NCLASS
 * entries (sets[PIN_NONE] is read by REMOVE only).  A change that asks
 * for boot ranges and would put more boot bytes than the quota (and than
 * now) under boot pins is refused whole, with -EDQUOT and a message "pin
 * of template X refused: asks N bytes, M already pinned, quota Q" (M: the
 * boot bytes): none of its classes is applied.  0 or -errno. */
int pin_apply(struct tmpl *t, int src, int op, struct byte_range *const *sets,
              const size_t *n, char *err, size_t errlen);

/* The tool's (imgcache-pin's) one-class change: add (unpin = 0) ranges to
 * class cls, or remove (unpin = 1) them from class cls, PIN_NONE: from
 * every class; pin_apply of PIN_SRC_TOOL.  0 or -errno. */
int pin_change(struct tmpl *t, const struct byte_range *r, size_t n, int cls,
               int unpin, char *err, size_t errlen);

/* Bytes of the blocks covered by the template's pins, any class. */
uint64_t pin_bytes(struct tmpl *t);

/* Per class (index enum pin_class; [PIN_NONE]: all classes together):
 * bytes of the blocks whose strongest pin is of that class, and of those
 * present in the cache.  A pass over the block table. */
struct pin_class_figures {
    uint64_t pinned[PIN_NCLASS];
    uint64_t present[PIN_NCLASS];
};
void pin_class_bytes(struct tmpl *t, struct pin_class_figures *f);

struct pin_status {
    uint64_t off, len;   /* one range of a class's pin set */
    int cls;             /* its class */
    uint64_t bytes;      /* bytes of the blocks it covers */
    uint64_t present;    /* of which present in the cache */
};
/* The pin sets with presence figures, boot ranges first, then high, then
 * low, each by offset; *out malloc'd.  0 or -ENOMEM. */
int pin_list(struct tmpl *t, struct pin_status **out, size_t *n);

/* Recording: note the byte ranges readers of t read, either as a boot
 * profile (PIN_REC_PROFILE: merged and sorted, what a pin needs) or as an
 * ordered trace (PIN_REC_TRACE: every read as it arrived, with its time,
 * never merged: what a replay of the boot needs, test/bench/replay).
 * begin fails with -EBUSY when a recording of t is already running. */
enum { PIN_REC_PROFILE = 1, PIN_REC_TRACE = 2 };
int pin_record_begin(struct tmpl *t, int mode);
/* Stop and return the normalized ranges read since begin (*out malloc'd;
 * none after a trace recording). */
int pin_record_end(struct tmpl *t, struct byte_range **out, size_t *n);
/* One read of a trace: t_us microseconds after the recording's first read
 * (CLOCK_MONOTONIC), its offset and length as the reader asked (clamped to
 * the end of the file only, not rounded to blocks). */
struct trace_read {
    uint64_t t_us, off, len;
};
/* At most this many reads are kept (24 MiB); later ones are counted in
 * *dropped. */
#define PIN_TRACE_MAX (1u << 20)
/* Stop and return the reads since begin in arrival order (*out malloc'd;
 * none after a profile recording). */
int pin_trace_end(struct tmpl *t, struct trace_read **out, size_t *n,
                  uint64_t *dropped);
/* Read-path hook for every read a reader (not a pre-warm) is served (cheap
 * when not recording). */
void pin_record_note(struct tmpl *t, uint64_t off, uint64_t len);

struct index;
/* At start, before the writer runs: load the persisted pin set and mark
 * the current generation.  Errors are logged. */
void pin_load(struct tmpl *t, struct index *ix);
/* Mark the classes in a generation's block table from t's pin sets
 * (tmpl.lock held; g not yet shared, or its lock taken inside). */
void pin_mark_gen(struct tmpl *t, struct gen *g);
/* After t->cur changed (tmpl.lock held): recount and re-mark. */
void pin_retarget(struct tmpl *t);

/* Range-set algebra on normalized sets (sorted, merged; see pinspec's
 * ranges_normalize).  *out malloc'd, normalized.  0 or -ENOMEM. */
int pin_set_union(const struct byte_range *a, size_t na,
                  const struct byte_range *b, size_t nb,
                  struct byte_range **out, size_t *n);
int pin_set_subtract(const struct byte_range *a, size_t na,
                     const struct byte_range *b, size_t nb,
                     struct byte_range **out, size_t *n);
/* The block interval [*b0, *b1) a range touches in a file of `size`
 * bytes: 0 when it touches none. */
int pin_range_blocks(const struct byte_range *r, uint64_t size, uint32_t bs,
                     uint64_t *b0, uint64_t *b1);
/* Bytes of the distinct blocks a normalized set covers. */
uint64_t pin_set_bytes(const struct byte_range *r, size_t n, uint64_t size,
                       uint32_t bs);

#endif
