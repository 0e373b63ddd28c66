/* Shared by the unit tests that run the real engine (check_evict,
 * check_read, check_readahead, check_pin, check_ctl, check_cache,
 * check_prewarm, check_engine): origin files and a config file in the
 * test's directory, engine_open() on it, and ways to look
 * at what the engine holds (block table, the data file's extents).
 *
 * Include after ck-tmpdir.h and CK_TMPDIR_FIXTURES (uses `tmpdir`).
 * Origin bytes follow ck_byte(): never zero, so no block is stored as a
 * hole (zero blocks are never evicted, which would hide what a test means
 * to see), and a block served from the wrong offset shows. */
#ifndef IC_CK_ENGINE_H
#define IC_CK_ENGINE_H

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ic-block.h"
#include "../fs/engine/cache-priv.h" /* white-box: the engine's fields */
#include "ic-engine.h"
#include "ic-conf.h"
#include "ic-util.h"

#define CK_BS 4096u

struct ck_engine {
    struct conf *conf;
    struct cache *c;
    char conf_path[PATH_MAX];
    char cache_dir[PATH_MAX];
};

/* The origin byte at off of template file `salt` (one per file, so two
 * templates' blocks differ). */
static inline unsigned char ck_byte(uint64_t off, unsigned salt)
{
    return (unsigned char)(1 + (off * 7 + off / CK_BS * 13 + salt * 31) % 251);
}

/* tmpdir/origin/NAME, `size` bytes of ck_byte(., salt); its path in out. */
static inline void ck_origin_write(const char *name, uint64_t size,
                                   unsigned salt, char *out, size_t outlen)
{
    char dir[96]; /* tmpdir is short (ck-tmpdir.h) */
    snprintf(dir, sizeof dir, "%s/origin", tmpdir);
    ck_assert(mkdir(dir, 0700) == 0 || errno == EEXIST);
    snprintf(out, outlen, "%s/%s", dir, name);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    char *buf = malloc(1 << 16);
    ck_assert_ptr_nonnull(buf);
    for (uint64_t off = 0; off < size;) {
        size_t n = size - off < (1 << 16) ? (size_t)(size - off) : 1 << 16;
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)ck_byte(off + i, salt);
        ck_assert_int_eq(pwrite_full(fd, buf, n, off), (ssize_t)n);
        off += n;
    }
    free(buf);
    close(fd);
}

/* Write tmpdir/imgcache.conf: a [global] with cache_dir tmpdir/cache,
 * 4K blocks and no revalidation during a test, plus the lines `global`
 * (NULL: "readahead = 0", so no background fill disturbs what a test
 * counts), then `sections`.  Load it and start the engine. */
static inline void ck_engine_start(struct ck_engine *e, const char *global,
                                   const char *sections_fmt, ...)
{
    char sections[4096], err[512] = "";
    va_list ap;

    va_start(ap, sections_fmt);
    vsnprintf(sections, sizeof sections, sections_fmt, ap);
    va_end(ap);
    memset(e, 0, sizeof *e);
    snprintf(e->conf_path, sizeof e->conf_path, "%s/imgcache.conf", tmpdir);
    snprintf(e->cache_dir, sizeof e->cache_dir, "%s/cache", tmpdir);
    FILE *f = fopen(e->conf_path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "[global]\ncache_dir = %s\nblock_size = 4K\nrevalidate = 1h\n"
               "%s\n%s",
            e->cache_dir, global ? global : "readahead = 0\n", sections);
    fclose(f);
    ck_assert_msg(conf_load(e->conf_path, &e->conf, err, sizeof err) == 0,
                  "config: %s", err);
    ck_assert_int_eq(engine_open(e->conf, &e->c), 0);
}

static inline void ck_engine_stop(struct ck_engine *e)
{
    engine_close(e->c);
    conf_free(e->conf);
    e->c = NULL;
    e->conf = NULL;
}

static inline struct tmpl *ck_tmpl(struct ck_engine *e, const char *name)
{
    struct tmpl *t = cache_find(e->c, name);
    ck_assert_msg(t != NULL, "no template %s", name);
    return t;
}

/* A reference to the template's current generation (cache_gen_put it). */
static inline struct gen *ck_gen(struct ck_engine *e, const char *name)
{
    struct gen *g = NULL;
    ck_assert_int_eq(cache_gen_open(ck_tmpl(e, name), 0, &g), 0);
    return g;
}

/* Read [off, off+len) through the engine and compare with the origin's
 * bytes; returns what cache_read returned. */
static inline ssize_t ck_read_salt(struct gen *g, uint64_t off, size_t len,
                                   unsigned salt)
{
    char *buf = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(buf);
    ssize_t r = cache_read(g, buf, off, len, NULL);
    for (ssize_t i = 0; i < r; i++)
        if ((unsigned char)buf[i] != ck_byte(off + (uint64_t)i, salt))
            ck_abort_msg("byte %llu: %u, origin has %u",
                         (unsigned long long)(off + (uint64_t)i),
                         (unsigned char)buf[i], ck_byte(off + (uint64_t)i, salt));
    free(buf);
    return r;
}

/* Read whole block blk of a template written with salt; must succeed. */
static inline void ck_read_blk(struct gen *g, uint64_t blk, unsigned salt)
{
    uint64_t len = block_len(blk, g->info.size, g->bs);
    ck_assert_int_eq(ck_read_salt(g, blk * g->bs, CK_BS, salt), (ssize_t)len);
}

static inline int ck_state(struct gen *g, uint64_t blk)
{
    pthread_mutex_lock(&g->lock);
    int s = g->bm.v[blk].state;
    pthread_mutex_unlock(&g->lock);
    return s;
}

/* Whether the data file has bytes allocated at block blk (SEEK_DATA from
 * the block's start lands inside it). */
static inline int ck_has_data(struct gen *g, uint64_t blk)
{
    off_t at = lseek(g->fd, (off_t)(blk * g->bs), SEEK_DATA);
    return at >= 0 && (uint64_t)at < (blk + 1) * g->bs;
}

/* Present in the table and in the data file, or missing from both: a block
 * recorded one way and stored the other is a test failure of its own. */
static inline int ck_cached(struct gen *g, uint64_t blk)
{
    int present = ck_state(g, blk) == BLK_PRESENT;
    int data = ck_has_data(g, blk);
    ck_assert_msg(present == data,
                  "block %llu: table says %s, data file %s",
                  (unsigned long long)blk, present ? "present" : "missing",
                  data ? "has bytes" : "has a hole");
    return present;
}

static inline uint64_t ck_stat(const uint64_t *counter)
{
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

#endif
