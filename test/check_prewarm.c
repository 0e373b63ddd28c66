/* Unit tests for fs/engine/prewarm.c: resolving pin specs (ranges,
 * profiles, qcow2-metadata), pre-warming (every pinned block fetched, and
 * only those), and the config's pins (applied in config-load order; a
 * range the spec drops is unpinned).
 *
 * The real engine on a config in the test's directory (ck-engine.h), file
 * origins of ck_byte() bytes (not a qcow2 image).  What is cached is read
 * back from the block table and the data file's extents (ck_cached). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../fs/engine/cache-priv.h" /* white-box: the engine's fields */
#include "ic-engine.h"
#include "ic-log.h"
#include "ic-pin.h"
#include "ic-prewarm.h"

#include "ck-tmpdir.h"

CK_TMPDIR_FIXTURES("check_prewarm")

#include "ck-engine.h"

static void start_one(struct ck_engine *e, int nblk)
{
    char path[PATH_MAX];
    ck_origin_write("a.img", (uint64_t)nblk * CK_BS, 1, path, sizeof path);
    ck_engine_start(e, NULL, "[template a.img]\norigin = %s\n", path);
}

static void pin_range(struct tmpl *t, uint64_t off, uint64_t len)
{
    struct byte_range r = {off, len};
    char err[256] = "";
    ck_assert_msg(pin_change(t, &r, 1, PIN_BOOT, 0, err, sizeof err) == 0, "pin: %s",
                  err);
}

/* Resolve spec, which must work, and compare with the n ranges given as
 * off, len pairs. */
static void resolve_is(struct tmpl *t, const char *spec, size_t n, ...)
{
    struct byte_range *sets[PIN_NCLASS];
    size_t ns[PIN_NCLASS];
    char err[512] = "";
    ck_assert_msg(prewarm_resolve(t, spec, PIN_BOOT, sets, ns, err,
                                  sizeof err) == 0,
                  "%s: %s", spec, err);
    struct byte_range *r = sets[PIN_BOOT];
    size_t nr = ns[PIN_BOOT];
    ck_assert_msg(nr == n, "%s: %zu ranges, want %zu", spec, nr, n);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        uint64_t off = va_arg(ap, uint64_t), len = va_arg(ap, uint64_t);
        ck_assert_msg(r[i].off == off && r[i].len == len,
                      "%s: range %zu is %llu+%llu, want %llu+%llu", spec, i,
                      (unsigned long long)r[i].off,
                      (unsigned long long)r[i].len, (unsigned long long)off,
                      (unsigned long long)len);
    }
    va_end(ap);
    free(r);
}

/* START-END and START+LEN, merged and sorted; a profile's ranges, with
 * the spec's own merged into them. */
START_TEST(test_resolve)
{
    struct ck_engine e;
    start_one(&e, 16);
    struct tmpl *t = ck_tmpl(&e, "a.img");
    resolve_is(t, "0-8K", 1, (uint64_t)0, (uint64_t)8192);
    resolve_is(t, "16K+4K, 0-8K", 2, (uint64_t)0, (uint64_t)8192,
               (uint64_t)16384, (uint64_t)4096);
    resolve_is(t, "0-8K,4K-12K,12K+1", 1, (uint64_t)0, (uint64_t)12289);

    char prof[PATH_MAX], spec[PATH_MAX + 32];
    snprintf(prof, sizeof prof, "%s/boot.profile", tmpdir);
    FILE *f = fopen(prof, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "# imgcache boot profile\n40960 4096\n8K-12K\n");
    ck_assert_int_eq(fclose(f), 0);
    snprintf(spec, sizeof spec, "profile:%s", prof);
    resolve_is(t, spec, 2, (uint64_t)8192, (uint64_t)4096, (uint64_t)40960,
               (uint64_t)4096);
    snprintf(spec, sizeof spec, "4K+4K,profile:%s", prof);
    resolve_is(t, spec, 2, (uint64_t)4096, (uint64_t)8192, (uint64_t)40960,
               (uint64_t)4096);
    ck_engine_stop(&e);
}
END_TEST

static void resolve_fails(struct tmpl *t, const char *spec, int want,
                          const char *msg_has)
{
    struct byte_range *sets[PIN_NCLASS];
    size_t ns[PIN_NCLASS];
    for (int k = 0; k < PIN_NCLASS; k++) {
        sets[k] = (struct byte_range *)&sets; /* must become NULL */
        ns[k] = 99;
    }
    char err[512] = "";
    int rc = prewarm_resolve(t, spec, PIN_BOOT, sets, ns, err, sizeof err);
    ck_assert_msg(rc == want, "%s: %d, want %d (%s)", spec, rc, want, err);
    for (int k = 0; k < PIN_NCLASS; k++) {
        ck_assert_ptr_null(sets[k]);
        ck_assert_uint_eq(ns[k], 0);
    }
    ck_assert_msg(strstr(err, msg_has) != NULL, "%s: message '%s' lacks '%s'",
                  spec, err, msg_has);
}

/* A bad spec is -EINVAL with a message naming the item; a profile that
 * is missing names its path; qcow2-metadata on a template that is not a
 * qcow2 image says so (and nothing is returned in each case). */
START_TEST(test_resolve_errors)
{
    struct ck_engine e;
    start_one(&e, 16);
    struct tmpl *t = ck_tmpl(&e, "a.img");
    resolve_fails(t, "8K-4K", -EINVAL, "8K-4K");
    resolve_fails(t, "0-4K,bogus", -EINVAL, "bogus");
    char spec[PATH_MAX + 32];
    snprintf(spec, sizeof spec, "0-4K,profile:%s/nothere", tmpdir);
    struct byte_range *r[PIN_NCLASS];
    size_t n[PIN_NCLASS];
    char err[512] = "";
    ck_assert_int_lt(prewarm_resolve(t, spec, PIN_BOOT, r, n, err,
                                     sizeof err), 0);
    ck_assert_ptr_null(r[PIN_BOOT]);
    ck_assert_uint_eq(n[PIN_BOOT], 0);
    ck_assert_msg(strstr(err, "nothere") != NULL, "message '%s'", err);
    err[0] = '\0';
    int rc = prewarm_resolve(t, "qcow2-metadata", PIN_BOOT, r, n, err,
                             sizeof err);
    ck_assert_int_lt(rc, 0);
    ck_assert_ptr_null(r[PIN_BOOT]);
    ck_assert_msg(strstr(err, "a.img") && strstr(err, "qcow2-metadata") &&
                      strstr(err, "not a qcow2 image"),
                  "message '%s'", err);
    ck_engine_stop(&e);
}
END_TEST

struct progress {
    uint64_t calls, last, total;
    int backwards;
};

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    struct progress *p = ctx;
    if (done < p->last || (p->calls > 0 && total != p->total) ||
        done > total)
        p->backwards = 1;
    p->calls++;
    p->last = done;
    p->total = total;
}

/* Pins over blocks 1-2, 5 and [1M, 2M+4K) of a 600-block template: a run
 * fetches exactly those blocks (every other block stays missing, in the
 * table and in the data file), reports its progress in order up to the
 * pinned bytes, and a second run has nothing left to fetch. */
START_TEST(test_run_fills_pins)
{
    struct ck_engine e;
    start_one(&e, 600);
    struct tmpl *t = ck_tmpl(&e, "a.img");
    pin_range(t, CK_BS, 2 * CK_BS);
    pin_range(t, 5 * CK_BS + 100, 10);
    pin_range(t, 1 << 20, (1 << 20) + CK_BS);
    const uint64_t pinned = 3 * CK_BS + (1 << 20) + CK_BS;
    struct progress p = {0};
    uint64_t failed = 99;
    ck_assert_int_eq(prewarm_run(t, PIN_NONE, 4, 0, on_progress, NULL, &p, &failed), 0);
    ck_assert_uint_eq(failed, 0);
    ck_assert(!p.backwards);
    ck_assert_uint_ge(p.calls, 3); /* one per chunk: the 1M pin is two */
    ck_assert_uint_eq(p.last, pinned);
    ck_assert_uint_eq(p.total, pinned);
    struct gen *g = ck_gen(&e, "a.img");
    for (uint64_t b = 0; b < 600; b++) {
        int want = b == 1 || b == 2 || b == 5 ||
                   (b >= 256 && b < 256 + 257);
        ck_assert_msg(ck_cached(g, b) == want, "block %llu %s",
                      (unsigned long long)b,
                      want ? "not fetched" : "fetched, not pinned");
    }
    ck_assert_uint_eq(g->bm.present_bytes, pinned);
    uint64_t reads = ck_stat(&t->st.origin_reads);
    ck_read_blk(g, 300, 1); /* the bytes are the origin's */
    ck_assert_uint_eq(ck_stat(&t->st.origin_reads), reads);
    failed = 99;
    ck_assert_int_eq(prewarm_run(t, PIN_NONE, 1, 0, NULL, NULL, NULL, &failed), 0);
    ck_assert_uint_eq(failed, 0);
    ck_assert_uint_eq(ck_stat(&t->st.origin_reads), reads);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* The origin vanished: a run is -EIO and *failed is the pinned bytes it
 * could not fetch (the block cached before is not among them). */
START_TEST(test_run_origin_gone)
{
    struct ck_engine e;
    start_one(&e, 16);
    struct tmpl *t = ck_tmpl(&e, "a.img");
    struct gen *g = ck_gen(&e, "a.img");
    ck_read_blk(g, 2, 1);
    pin_range(t, 0, 4 * CK_BS);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/origin/a.img", tmpdir);
    ck_assert_int_eq(unlink(path), 0);
    uint64_t failed = 0;
    ck_assert_int_eq(prewarm_run(t, PIN_NONE, 2, 0, NULL, NULL, NULL, &failed), -EIO);
    ck_assert_uint_eq(failed, 3 * CK_BS);
    ck_assert(ck_cached(g, 2));
    ck_assert(!ck_cached(g, 0) && !ck_cached(g, 1) && !ck_cached(g, 3));
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* The pin set as off+len pairs, "" when empty. */
static void pins_are(struct tmpl *t, const char *want)
{
    struct pin_status *v;
    size_t n;
    char got[256] = "";
    ck_assert_int_eq(pin_list(t, &v, &n), 0);
    for (size_t i = 0; i < n; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu+%llu",
                 i ? "," : "", (unsigned long long)v[i].off,
                 (unsigned long long)v[i].len);
    free(v);
    ck_assert_str_eq(got, want);
}

static int pinned(struct gen *g, uint64_t blk)
{
    pthread_mutex_lock(&g->lock);
    int p = (g->bm.v[blk].flags & BLK_PINNED) != 0;
    pthread_mutex_unlock(&g->lock);
    return p;
}

/* prewarm_config makes the pins those of the newest config load: seq 1
 * pins 0-8K; seq 3 names 16K+4K only, so 0-8K is unpinned; seq 2, older,
 * arriving late, changes nothing; a spec that does not resolve keeps the
 * pins; seq 5 without a pin = unpins all.  A pin made by other means
 * (imgcache-pin) is not the config's to drop. */
START_TEST(test_config)
{
    struct ck_engine e;
    start_one(&e, 16);
    struct tmpl *t = ck_tmpl(&e, "a.img");
    struct gen *g = ck_gen(&e, "a.img");
    pin_range(t, 40 * 1024, CK_BS); /* not the config's */
    prewarm_config(t, "0-8K", 1);
    pins_are(t, "0+8192,40960+4096");
    ck_assert(pinned(g, 0) && pinned(g, 1) && !pinned(g, 2));
    prewarm_config(t, "16K+4K", 3);
    pins_are(t, "16384+4096,40960+4096");
    ck_assert(!pinned(g, 0) && !pinned(g, 1) && pinned(g, 4));
    prewarm_config(t, "0-32K", 2);
    pins_are(t, "16384+4096,40960+4096");
    ck_assert(!pinned(g, 0));
    prewarm_config(t, "0-4K,bogus", 4);
    pins_are(t, "16384+4096,40960+4096");
    prewarm_config(t, NULL, 5);
    pins_are(t, "40960+4096");
    ck_assert(!pinned(g, 4) && pinned(g, 10));
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

/* BLK_CLASS of a block. */
static int blk_cls(struct gen *g, uint64_t blk)
{
    pthread_mutex_lock(&g->lock);
    int c = BLK_CLASS(g->bm.v[blk].flags);
    pthread_mutex_unlock(&g->lock);
    return c;
}

/* The config's pins and the tool's are separate sources, a block in the
 * strongest class of either: the tool's boot 0-8K stays boot under a
 * config "low:0-16K" (8K-16K low); the tool's unpin leaves the config's
 * low pin; a config load without the range leaves the tool's pin; a
 * legacy pin (from before sources) the config does not name becomes the
 * tool's at the config's next load. */
START_TEST(test_config_sources)
{
    struct ck_engine e;
    char err[256];
    start_one(&e, 16);
    struct tmpl *t = ck_tmpl(&e, "a.img");
    struct gen *g = ck_gen(&e, "a.img");
    pin_range(t, 0, 2 * CK_BS); /* the tool's, boot */
    prewarm_config(t, "low:0-16K", 1);
    ck_assert_int_eq(blk_cls(g, 0), PIN_BOOT);
    ck_assert_int_eq(blk_cls(g, 1), PIN_BOOT);
    ck_assert_int_eq(blk_cls(g, 2), PIN_LOW);
    struct byte_range r = {0, 2 * CK_BS};
    ck_assert_int_eq(pin_change(t, &r, 1, PIN_NONE, 1, err, sizeof err), 0);
    ck_assert_int_eq(blk_cls(g, 0), PIN_LOW);
    ck_assert_int_eq(pin_change(t, &r, 1, PIN_HIGH, 0, err, sizeof err), 0);
    prewarm_config(t, NULL, 2);
    ck_assert_int_eq(blk_cls(g, 0), PIN_HIGH);
    ck_assert_int_eq(blk_cls(g, 2), PIN_NONE);
    /* A legacy range (the index's empty source) as pin_load leaves it. */
    struct byte_range lr = {8 * CK_BS, CK_BS}, cr = {12 * CK_BS, CK_BS};
    struct byte_range *sets[PIN_NCLASS] = {0};
    size_t n[PIN_NCLASS] = {0};
    sets[PIN_BOOT] = &lr;
    n[PIN_BOOT] = 1;
    ck_assert_int_eq(pin_apply(t, PIN_SRC_LEGACY, PIN_OP_ADD, sets, n, err,
                               sizeof err), 0);
    sets[PIN_BOOT] = &cr;
    ck_assert_int_eq(pin_apply(t, PIN_SRC_LEGACY, PIN_OP_ADD, sets, n, err,
                               sizeof err), 0);
    prewarm_config(t, "low:48K+4K", 3); /* names the second one */
    pthread_mutex_lock(&t->lock);
    ck_assert_uint_eq(t->nsrc_pins[PIN_SRC_LEGACY][PIN_BOOT], 0);
    ck_assert_uint_eq(t->nsrc_pins[PIN_SRC_TOOL][PIN_BOOT], 1);
    ck_assert_uint_eq(t->src_pins[PIN_SRC_TOOL][PIN_BOOT][0].off, 8 * CK_BS);
    pthread_mutex_unlock(&t->lock);
    ck_assert_int_eq(blk_cls(g, 8), PIN_BOOT);
    ck_assert_int_eq(blk_cls(g, 12), PIN_LOW);
    cache_gen_put(g);
    ck_engine_stop(&e);
}
END_TEST

static Suite *prewarm_suite(void)
{
    const TTest *tests[] = {test_resolve, test_resolve_errors,
                            test_run_fills_pins, test_run_origin_gone,
                            test_config, test_config_sources};
    return ck_suite("prewarm", tests, CK_NTESTS(tests), setup, teardown, 60);
}

int main(void)
{
    log_init("check_prewarm", 0);
    return ck_run(prewarm_suite());
}
