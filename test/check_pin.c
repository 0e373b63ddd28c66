/* Unit tests for fs/engine/pin.c through its API (include/ic-pin.h): the pin
 * set's algebra (union, subtraction, rounding to blocks), presence
 * figures, the quota refusal, and boot-profile recording.
 *
 * A real template of the engine (ck-engine.h) carries the pin set, so the
 * flags pinning sets in its block table can be checked too. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fs/engine/cache-priv.h" /* white-box: the engine's fields */
#include "ic-engine.h"
#include "ic-log.h"
#include "ic-pin.h"

#include "ck-tmpdir.h"

CK_TMPDIR_FIXTURES("check_pin")

#include "ck-engine.h"

static struct tmpl *start(struct ck_engine *e, uint64_t size,
                          const char *extra)
{
    char path[PATH_MAX];
    ck_origin_write("a.img", size, 1, path, sizeof path);
    ck_engine_start(e, NULL, "[template a.img]\norigin = %s\n%s\n", path,
                    extra);
    return ck_tmpl(e, "a.img");
}

static int change(struct tmpl *t, uint64_t off, uint64_t len, int unpin)
{
    struct byte_range r = {off, len};
    char err[256] = "";
    int rc = pin_change(t, &r, 1, unpin ? PIN_NONE : PIN_BOOT, unpin, err,
                        sizeof err);
    ck_assert_msg(rc == 0 || err[0] != '\0', "error %d without a message",
                  rc);
    return rc;
}

/* The pin set as "OFF+LEN OFF+LEN ..." (from pin_list). */
static void set_str(struct tmpl *t, char *out, size_t len)
{
    struct pin_status *v;
    size_t n, used = 0;
    ck_assert_int_eq(pin_list(t, &v, &n), 0);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(out + used, len - used, "%s%llu+%llu",
                                 i ? " " : "", (unsigned long long)v[i].off,
                                 (unsigned long long)v[i].len);
    free(v);
}

#define ck_assert_set(t, want)                                                 \
    do {                                                                       \
        char got_[512];                                                        \
        set_str((t), got_, sizeof got_);                                       \
        ck_assert_str_eq(got_, (want));                                        \
    } while (0)

static int pinned_flag(struct tmpl *t, uint64_t blk)
{
    struct gen *g = cache_cur_gen(t);
    pthread_mutex_lock(&g->lock);
    int f = (g->bm.v[blk].flags & BLK_PINNED) != 0;
    pthread_mutex_unlock(&g->lock);
    cache_gen_put(g);
    return f;
}

/* Adding merges overlapping and adjacent ranges and keeps others apart;
 * pinned bytes are those of the distinct blocks touched. */
START_TEST(test_union)
{
    struct ck_engine e;
    struct tmpl *t = start(&e, 16 * CK_BS, "");
    ck_assert_int_eq(change(t, 0, 100, 0), 0);
    ck_assert_int_eq(change(t, 50, 150, 0), 0);
    ck_assert_set(t, "0+200");
    ck_assert_int_eq(change(t, 200, 100, 0), 0);
    ck_assert_set(t, "0+300");
    ck_assert_int_eq(change(t, 2 * CK_BS, 100, 0), 0);
    ck_assert_set(t, "0+300 8192+100");
    ck_assert_uint_eq(pin_bytes(t), 2 * CK_BS);
    ck_assert(pinned_flag(t, 0) && !pinned_flag(t, 1) && pinned_flag(t, 2));
    /* Two ranges inside one block are that block once. */
    ck_assert_int_eq(change(t, 2 * CK_BS + 1000, 10, 0), 0);
    ck_assert_set(t, "0+300 8192+100 9192+10");
    ck_assert_uint_eq(pin_bytes(t), 2 * CK_BS);
    ck_engine_stop(&e);
}
END_TEST

/* Removing subtracts: a range in the middle splits the set, the blocks
 * no longer touched lose their pin, a block still touched keeps it. */
START_TEST(test_unpin)
{
    struct ck_engine e;
    struct tmpl *t = start(&e, 16 * CK_BS, "");
    ck_assert_int_eq(change(t, 0, 10 * CK_BS, 0), 0);
    ck_assert_uint_eq(pin_bytes(t), 10 * CK_BS);
    ck_assert_int_eq(change(t, 2 * CK_BS, CK_BS, 1), 0);
    ck_assert_set(t, "0+8192 12288+28672");
    ck_assert_uint_eq(pin_bytes(t), 9 * CK_BS);
    ck_assert(!pinned_flag(t, 2));
    ck_assert(pinned_flag(t, 1) && pinned_flag(t, 3));
    ck_assert_int_eq(change(t, 100, 100, 1), 0);
    ck_assert_set(t, "0+100 200+7992 12288+28672");
    ck_assert_uint_eq(pin_bytes(t), 9 * CK_BS);
    ck_assert(pinned_flag(t, 0));
    /* Removing what is not pinned changes nothing; removing all empties. */
    ck_assert_int_eq(change(t, 15 * CK_BS, CK_BS, 1), 0);
    ck_assert_uint_eq(pin_bytes(t), 9 * CK_BS);
    ck_assert_int_eq(change(t, 0, 16 * CK_BS, 1), 0);
    ck_assert_set(t, "");
    ck_assert_uint_eq(pin_bytes(t), 0);
    ck_assert(!pinned_flag(t, 0) && !pinned_flag(t, 9));
    ck_engine_stop(&e);
}
END_TEST

/* Rounding: a byte pins its block; a range across a boundary both; past
 * the end of the file nothing more than the (short) last block. */
START_TEST(test_rounding)
{
    struct ck_engine e;
    struct tmpl *t = start(&e, 3 * CK_BS + 100, "");
    ck_assert_int_eq(change(t, CK_BS - 1, 1, 0), 0);
    ck_assert_uint_eq(pin_bytes(t), CK_BS);
    ck_assert_int_eq(change(t, CK_BS - 1, 2, 0), 0);
    ck_assert_uint_eq(pin_bytes(t), 2 * CK_BS);
    ck_assert_int_eq(change(t, 0, 1 << 30, 0), 0);
    ck_assert_uint_eq(pin_bytes(t), 3 * CK_BS + 100);
    ck_assert(pinned_flag(t, 3));
    ck_engine_stop(&e);
}
END_TEST

/* pin_list: per range, the bytes of its blocks and how many of them are
 * present. */
START_TEST(test_list_presence)
{
    struct ck_engine e;
    struct tmpl *t = start(&e, 16 * CK_BS, "");
    struct gen *g = ck_gen(&e, "a.img");
    ck_read_blk(g, 1, 1);
    ck_read_blk(g, 9, 1);
    ck_assert_int_eq(change(t, 100, 3 * CK_BS, 0), 0); /* blocks 0..3 */
    ck_assert_int_eq(change(t, 8 * CK_BS, 2 * CK_BS, 0), 0);
    struct pin_status *v;
    size_t n;
    ck_assert_int_eq(pin_list(t, &v, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(v[0].bytes, 4 * CK_BS);
    ck_assert_uint_eq(v[0].present, CK_BS);
    ck_assert_uint_eq(v[1].bytes, 2 * CK_BS);
    ck_assert_uint_eq(v[1].present, CK_BS);
    free(v);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* More pinned than the quota is refused with -EDQUOT and a message naming
 * the figures, and the set stays as it was; removing is always allowed. */
START_TEST(test_quota)
{
    struct ck_engine e;
    struct tmpl *t = start(&e, 16 * CK_BS, "quota = 16K");
    struct byte_range r = {2 * CK_BS, 3 * CK_BS};
    char err[256] = "";
    ck_assert_int_eq(change(t, 0, 2 * CK_BS, 0), 0);
    ck_assert_int_eq(pin_change(t, &r, 1, PIN_BOOT, 0, err, sizeof err),
                     -EDQUOT);
    ck_assert_str_eq(err, "pin of template a.img refused: asks 12288 bytes, "
                          "8192 already pinned, quota 16384");
    ck_assert_set(t, "0+8192");
    ck_assert_uint_eq(pin_bytes(t), 2 * CK_BS);
    ck_assert(!pinned_flag(t, 2));
    /* Exactly the quota is fine. */
    ck_assert_int_eq(change(t, 2 * CK_BS, 2 * CK_BS, 0), 0);
    ck_assert_uint_eq(pin_bytes(t), 4 * CK_BS);
    ck_assert_int_eq(change(t, 0, CK_BS, 1), 0);
    ck_assert_uint_eq(pin_bytes(t), 3 * CK_BS);
    ck_engine_stop(&e);
}
END_TEST

/* Trace: every read in arrival order, unmerged and unsorted, times from
 * the first read; a profile recording and a trace exclude each other. */
START_TEST(test_trace)
{
    struct ck_engine e;
    struct tmpl *t = start(&e, 16 * CK_BS, "");
    struct gen *g = ck_gen(&e, "a.img");
    struct trace_read *v;
    struct byte_range *r;
    size_t n;
    uint64_t dropped;

    ck_assert_int_eq(pin_record_begin(t, 3), -EINVAL);
    ck_assert_int_eq(pin_record_begin(t, PIN_REC_TRACE), 0);
    ck_assert_int_eq(pin_record_begin(t, PIN_REC_PROFILE), -EBUSY);
    pin_record_note(t, 8192, 10);
    pin_record_note(t, 100, 100);
    pin_record_note(t, 200, 100); /* adjacent: kept apart */
    pin_record_note(t, 100, 100); /* again: kept */
    pin_record_note(t, 300, 0);   /* empty */
    ck_read_blk(g, 5, 1);
    ck_assert_int_eq(pin_trace_end(t, &v, &n, &dropped), 0);
    ck_assert_uint_eq(n, 5);
    ck_assert_uint_eq(dropped, 0);
    const uint64_t want[5][2] = {{8192, 10}, {100, 100}, {200, 100},
                                 {100, 100}, {5 * CK_BS, CK_BS}};
    for (size_t i = 0; i < 5; i++) {
        ck_assert_uint_eq(v[i].off, want[i][0]);
        ck_assert_uint_eq(v[i].len, want[i][1]);
        if (i > 0)
            ck_assert_uint_ge(v[i].t_us, v[i - 1].t_us);
    }
    ck_assert_uint_eq(v[0].t_us, 0);
    free(v);
    /* Ended: notes are dropped, and a profile now records nothing of it. */
    pin_record_note(t, 0, 10);
    ck_assert_int_eq(pin_record_begin(t, PIN_REC_PROFILE), 0);
    ck_assert_int_eq(pin_trace_end(t, &v, &n, &dropped), 0);
    ck_assert_uint_eq(n, 0);
    free(v);
    ck_assert_int_eq(pin_record_end(t, &r, &n), 0);
    ck_assert_uint_eq(n, 0);
    free(r);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* Recording: one at a time, reads (and notes) in between come out sorted
 * and merged, a note outside a recording is not kept. */
START_TEST(test_record)
{
    struct ck_engine e;
    struct tmpl *t = start(&e, 16 * CK_BS, "");
    struct gen *g = ck_gen(&e, "a.img");
    struct byte_range *r;
    size_t n;

    pin_record_note(t, 0, 4096); /* not recording: dropped */
    ck_assert_int_eq(pin_record_begin(t, PIN_REC_PROFILE), 0);
    ck_assert_int_eq(pin_record_begin(t, PIN_REC_PROFILE), -EBUSY);
    pin_record_note(t, 8192, 10);
    pin_record_note(t, 100, 100);
    pin_record_note(t, 200, 100); /* adjacent */
    pin_record_note(t, 150, 10);  /* inside */
    pin_record_note(t, 300, 0);   /* empty */
    ck_read_blk(g, 5, 1);         /* the read path notes what it serves */
    ck_assert_int_eq(pin_record_end(t, &r, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(r[0].off, 100);
    ck_assert_uint_eq(r[0].len, 200);
    ck_assert_uint_eq(r[1].off, 8192);
    ck_assert_uint_eq(r[1].len, 10);
    ck_assert_uint_eq(r[2].off, 5 * CK_BS);
    ck_assert_uint_eq(r[2].len, CK_BS);
    free(r);
    /* Ended: a new one may start, and starts empty. */
    pin_record_note(t, 0, 10);
    ck_assert_int_eq(pin_record_begin(t, PIN_REC_PROFILE), 0);
    ck_assert_int_eq(pin_record_end(t, &r, &n), 0);
    ck_assert_uint_eq(n, 0);
    free(r);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST


static int cchange(struct tmpl *t, uint64_t off, uint64_t len, int cls,
                   int unpin)
{
    struct byte_range r = {off, len};
    char err[256] = "";
    return pin_change(t, &r, 1, cls, unpin, err, sizeof err);
}

static int blk_class(struct tmpl *t, uint64_t blk)
{
    struct gen *g = cache_cur_gen(t);
    pthread_mutex_lock(&g->lock);
    int c = BLK_CLASS(g->bm.v[blk].flags);
    pthread_mutex_unlock(&g->lock);
    cache_gen_put(g);
    return c;
}

/* The sets with their classes, "CLASS:OFF+LEN ..." (from pin_list). */
static void cset_str(struct tmpl *t, char *out, size_t len)
{
    struct pin_status *v;
    size_t n, used = 0;
    ck_assert_int_eq(pin_list(t, &v, &n), 0);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(out + used, len - used, "%s%s:%llu+%llu",
                                 i ? " " : "", pin_class_name(v[i].cls),
                                 (unsigned long long)v[i].off,
                                 (unsigned long long)v[i].len);
    free(v);
}

#define ck_assert_cset(t, want)                                                \
    do {                                                                       \
        char got_[512];                                                        \
        cset_str((t), got_, sizeof got_);                                      \
        ck_assert_str_eq(got_, (want));                                        \
    } while (0)

/* Classes: pinning a range with a class moves it out of the others (one
 * call changes a range's class); a block shared by ranges of two classes
 * is the stronger's, in the flags and in the per-class bytes; an unpin
 * with a class leaves the other classes alone, PIN_NONE takes any. */
START_TEST(test_classes)
{
    struct ck_engine e;
    struct tmpl *t = start(&e, 16 * CK_BS, "");
    struct pin_class_figures f;
    ck_assert_int_eq(cchange(t, 0, 4 * CK_BS, PIN_BOOT, 0), 0);
    ck_assert_int_eq(cchange(t, 2 * CK_BS, 4 * CK_BS, PIN_LOW, 0), 0);
    ck_assert_cset(t, "boot:0+8192 low:8192+16384");
    ck_assert_int_eq(blk_class(t, 1), PIN_BOOT);
    ck_assert_int_eq(blk_class(t, 2), PIN_LOW);
    ck_assert_int_eq(blk_class(t, 6), PIN_NONE);
    /* 100 bytes of block 4 go high: block 4 is high, the rest stays low. */
    ck_assert_int_eq(cchange(t, 4 * CK_BS + 10, 100, PIN_HIGH, 0), 0);
    ck_assert_cset(t, "boot:0+8192 high:16394+100 "
                      "low:8192+8202 low:16494+8082");
    ck_assert_int_eq(blk_class(t, 4), PIN_HIGH);
    ck_assert_int_eq(blk_class(t, 5), PIN_LOW);
    pin_class_bytes(t, &f);
    ck_assert_uint_eq(f.pinned[PIN_BOOT], 2 * CK_BS);
    ck_assert_uint_eq(f.pinned[PIN_HIGH], CK_BS);
    ck_assert_uint_eq(f.pinned[PIN_LOW], 3 * CK_BS);
    ck_assert_uint_eq(f.pinned[PIN_NONE], 6 * CK_BS);
    ck_assert_uint_eq(pin_bytes(t), 6 * CK_BS);
    /* Present bytes per class, from the block table. */
    struct gen *g = ck_gen(&e, "a.img");
    ck_read_blk(g, 0, 1);
    ck_read_blk(g, 4, 1);
    ck_read_blk(g, 5, 1);
    ck_read_blk(g, 9, 1);
    cache_gen_put(g);
    pin_class_bytes(t, &f);
    ck_assert_uint_eq(f.present[PIN_BOOT], CK_BS);
    ck_assert_uint_eq(f.present[PIN_HIGH], CK_BS);
    ck_assert_uint_eq(f.present[PIN_LOW], CK_BS);
    ck_assert_uint_eq(f.present[PIN_NONE], 3 * CK_BS);
    /* An unpin of the wrong class does nothing; of any class, all. */
    ck_assert_int_eq(cchange(t, 0, 4 * CK_BS, PIN_LOW, 1), 0);
    ck_assert_cset(t, "boot:0+8192 high:16394+100 low:16384+10 "
                      "low:16494+8082");
    ck_assert_int_eq(cchange(t, 0, 16 * CK_BS, PIN_NONE, 1), 0);
    ck_assert_cset(t, "");
    ck_assert_int_eq(blk_class(t, 0), PIN_NONE);
    ck_assert_int_eq(cchange(t, 0, 1, PIN_NONE, 0), -EINVAL);
    ck_engine_stop(&e);
}
END_TEST

/* Only boot counts against the quota: a softer pin larger than it is
 * accepted; a boot pin past it refused with the boot figures; moving a
 * range from low to boot is checked like any boot pin. */
START_TEST(test_class_quota)
{
    struct ck_engine e;
    struct tmpl *t = start(&e, 16 * CK_BS, "quota = 16K");
    struct byte_range r = {2 * CK_BS, 3 * CK_BS};
    char err[256] = "";
    ck_assert_int_eq(cchange(t, 0, 16 * CK_BS, PIN_LOW, 0), 0);
    ck_assert_int_eq(cchange(t, 0, 2 * CK_BS, PIN_HIGH, 0), 0);
    ck_assert_int_eq(cchange(t, 0, 2 * CK_BS, PIN_BOOT, 0), 0);
    ck_assert_int_eq(pin_change(t, &r, 1, PIN_BOOT, 0, err, sizeof err),
                     -EDQUOT);
    ck_assert_str_eq(err, "pin of template a.img refused: asks 12288 bytes, "
                          "8192 already pinned, quota 16384");
    ck_assert_cset(t, "boot:0+8192 low:8192+57344");
    ck_assert_int_eq(cchange(t, 2 * CK_BS, 2 * CK_BS, PIN_BOOT, 0), 0);
    ck_assert_cset(t, "boot:0+16384 low:16384+49152");
    ck_engine_stop(&e);
}
END_TEST

/* Classes persist: after a restart the sets and the marks are back. */
START_TEST(test_class_persist)
{
    struct ck_engine e;
    struct tmpl *t = start(&e, 16 * CK_BS, "");
    ck_assert_int_eq(cchange(t, 0, CK_BS, PIN_BOOT, 0), 0);
    ck_assert_int_eq(cchange(t, 2 * CK_BS, CK_BS, PIN_HIGH, 0), 0);
    ck_assert_int_eq(cchange(t, 4 * CK_BS, 2 * CK_BS, PIN_LOW, 0), 0);
    ck_engine_stop(&e);
    t = start(&e, 16 * CK_BS, "");
    ck_assert_cset(t, "boot:0+4096 high:8192+4096 low:16384+8192");
    ck_assert_int_eq(blk_class(t, 0), PIN_BOOT);
    ck_assert_int_eq(blk_class(t, 2), PIN_HIGH);
    ck_assert_int_eq(blk_class(t, 5), PIN_LOW);
    ck_engine_stop(&e);
}
END_TEST

static Suite *pin_suite(void)
{
    const TTest *tests[] = {test_union,         test_unpin, test_rounding,
                            test_list_presence, test_quota, test_record, test_trace,
                            test_classes,       test_class_quota,
                            test_class_persist};
    return ck_suite("pin", tests, CK_NTESTS(tests), setup, teardown, 60);
}

int main(void)
{
    log_init("check_pin", 0);
    return ck_run(pin_suite());
}
