/* Pin specs, boot profiles and byte-range sets (pure: no FUSE, no SQLite,
 * no locks; every function is safe to call from any thread on its own data).
 *
 * A pin spec is the value of the config key `pin` and the arguments of
 * imgcache-pin: items separated by commas, blanks around items ignored:
 *
 *     START-END        bytes [START, END), END > START     0-16M
 *     START+LENGTH     bytes [START, START+LENGTH), LENGTH > 0   1G+64K
 *     profile:PATH     ranges listed in a boot profile file
 *     qcow2-metadata   header, L1, L2, refcount and snapshot tables
 *
 * Any item may start with a pin class and a colon (boot:0-16M,
 * low:qcow2-metadata, high:profile:PATH); an item without one takes the
 * caller's default (boot for the config and imgcache-pin without
 * --class).  Classes, strongest first: boot (never evicted, counted
 * against the quota), high, low (kept in preference to every unpinned
 * block, evicted lowest class first).
 *
 * Sizes are parse_size() sizes (K, M, G, T = binary multiples).  A PATH
 * cannot contain a comma; blanks inside it are kept.
 *
 * A boot profile is text, one range per line, in file order (the order a
 * guest read them in, useful for pre-warming):
 *
 *     # imgcache boot profile
 *     OFFSET LENGTH          two sizes separated by blanks
 *     START-END              as in a pin spec (START+LENGTH works too)
 *
 * '#' starts a comment, blank lines are ignored, CRLF line ends are
 * accepted.  At most PROFILE_MAX_LINES lines; a file at most
 * PROFILE_MAX_BYTES.
 *
 * Errors: functions return 0 or -errno (-EINVAL for bad input, -ENOMEM,
 * or the errno of a failed system call) and, where they take `err`, put a
 * one-line message there: "bad pin item 'x': reason" for specs,
 * "PATH:LINE: reason" for profiles.  On error nothing is returned through
 * the output pointers (they are left NULL / 0). */
#ifndef IC_PINSPEC_H
#define IC_PINSPEC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Bytes [off, off + len) of a template.  off + len never wraps for ranges
 * produced by this module or by qcow2_metadata_ranges(). */
struct byte_range {
    uint64_t off, len;
};

enum pin_kind { PIN_RANGE, PIN_PROFILE, PIN_QCOW2 };

/* Pin classes, ordered: a block's class is the strongest of the pins
 * covering it, and eviction takes weaker classes first.  The values are
 * stored in a block's flags (ic-blockmap.h, BLK_CLASS) and compared as
 * numbers.  PIN_NONE is an unpinned block, or "no class given". */
enum pin_class { PIN_NONE = 0, PIN_LOW = 1, PIN_HIGH = 2, PIN_BOOT = 3 };
#define PIN_NCLASS 4

/* "boot", "high", "low"; "none" for PIN_NONE (and anything else). */
const char *pin_class_name(int cls);
/* The class named by the n bytes at s (exactly one of the three names),
 * or -EINVAL. */
int pin_class_parse(const char *s, size_t n);

/* Who made a pin.  A block's class is the strongest any source gives it;
 * each source changes only its own pins: a reload replaces the config's,
 * imgcache-pin (the ctl verbs) adds and removes the tool's.  Legacy pins
 * were persisted before sources were told apart (the index's empty
 * source): the tool's to change, and at the first config load those the
 * config does not name become the tool's (ic-pin.h). */
enum pin_source { PIN_SRC_TOOL = 0, PIN_SRC_CONFIG = 1, PIN_SRC_LEGACY = 2 };
#define PIN_NSRC 3

/* A range of one class: how pin sets are persisted and listed. */
struct class_range {
    uint64_t off, len;
    int cls; /* enum pin_class, never PIN_NONE */
    int src; /* enum pin_source (ic-pin.h): who pinned it */
};

struct pin_item {
    enum pin_kind kind;
    int cls;           /* the item's CLASS: prefix, PIN_NONE without one */
    uint64_t off, len; /* PIN_RANGE only, len > 0 */
    char *path;        /* PIN_PROFILE only (malloc'd), else NULL */
};

#define PROFILE_MAX_LINES 1000000
#define PROFILE_MAX_BYTES (64u << 20)

/* Parse a pin spec into a malloc'd array (NULL when *n is 0: a spec that is
 * empty or all blanks pins nothing).  Free with pinspec_free(). */
int pinspec_parse(const char *spec, struct pin_item **items, size_t *n,
                  char *err, size_t errlen);
void pinspec_free(struct pin_item *items, size_t n);

/* Parse profile text (len bytes, need not be NUL-terminated); `path` only
 * names the source in error messages.  *out is malloc'd (NULL when *n is
 * 0), ranges in file order, not normalized. */
int profile_parse(const char *text, size_t len, const char *path,
                  struct byte_range **out, size_t *n, char *err,
                  size_t errlen);
/* Read the file at `path` (at most PROFILE_MAX_BYTES) and parse it. */
int profile_load(const char *path, struct byte_range **out, size_t *n,
                 char *err, size_t errlen);
/* Write "# imgcache boot profile" and one "OFFSET LENGTH" line (decimal)
 * per range.  0 or -errno; the caller checks fclose()/fflush() too. */
int profile_write(FILE *f, const struct byte_range *r, size_t n);

/* Sort by offset, drop empty ranges, merge overlapping and adjacent ones,
 * in place.  Ends that would pass 2^64 are clamped to UINT64_MAX. */
void ranges_normalize(struct byte_range *r, size_t *n);
/* Distinct blocks of size bs touched by the ranges, after clipping them to
 * file_size (a range partly in the last, short block counts that block).
 * r must be sorted by offset (ranges_normalize() does that); overlaps and
 * several ranges in one block are counted once. */
uint64_t ranges_block_count(const struct byte_range *r, size_t n, uint32_t bs,
                            uint64_t file_size);

#endif
