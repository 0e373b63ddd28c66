/* Block manifests in the engine: each generation's manifest, the check of
 * fetched bytes, zero blocks, and local copies (delta fills).  Contract
 * and locks: include/ic-verify.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "cache-priv.h"
#include "ic-block.h"
#include "ic-evict.h"
#include "ic-index.h"
#include "ic-log.h"
#include "ic-manifest.h"
#include "ic-offload.h"
#include "ic-store.h"
#include "ic-url.h"
#include "ic-util.h"
#include "ic-verify.h"
#include "ic-writer.h"

/* ------------------------------------------------------------ location */

/* Where the manifest of t is (malloc'd), or NULL for none.  auto: the
 * origin's location with the suffix appended to its path (before a
 * query string, which may carry a token). */
static char *manifest_location(const struct tmpl *t)
{
    if (t->manifest_mode == CONF_MANIFEST_NONE)
        return NULL;
    if (t->manifest_mode == CONF_MANIFEST_URL)
        return strdup(t->manifest_loc);
    const char *loc = t->location;
    size_t n = strcspn(loc, conf_origin_is_http(loc) ? "?#" : "");
    char *out;
    if (asprintf(&out, "%.*s%s%s", (int)n, loc, MANIFEST_SUFFIX, loc + n) < 0)
        return NULL;
    return out;
}

/* The largest manifest a template of `size` bytes can have: one entry per
 * 4 KiB, the smallest block size. */
static uint64_t manifest_max(uint64_t size)
{
    return MANIFEST_HEADER_LEN + 32 +
           (size + MANIFEST_MIN_BLOCK - 1) / MANIFEST_MIN_BLOCK *
               (uint64_t)MANIFEST_HASH_LEN;
}

/* Whether the opened manifest fits generation g; warns when not. */
static int manifest_fits(const struct gen *g, const struct manifest *m,
                         const char *where)
{
    uint32_t mb = manifest_block_size(m);
    if (manifest_file_size(m) != g->info.size) {
        log_warn("template %s: manifest %s is stale (it describes %llu "
                 "bytes, the template has %llu); ignoring it", g->t->name,
                 where, (unsigned long long)manifest_file_size(m),
                 (unsigned long long)g->info.size);
        return 0;
    }
    if (mb % g->bs != 0 && g->bs % mb != 0) {
        log_warn("template %s: manifest %s has blocks of %u bytes, neither "
                 "a multiple nor a divisor of block_size %u; ignoring it",
                 g->t->name, where, mb, g->bs);
        return 0;
    }
    return 1;
}

/* Whole seconds of ns, rounded down (before the epoch too). */
static int64_t secs_of(int64_t ns)
{
    return ns >= 0 ? ns / 1000000000 : -((-(ns + 1)) / 1000000000) - 1;
}

/* ns as UTC, with the nanoseconds when whole is 0. */
static void fmt_mtime(int64_t ns, int whole, char *out, size_t len)
{
    time_t t = (time_t)secs_of(ns);
    struct tm tm;
    char d[32];
    if (gmtime_r(&t, &tm) == NULL ||
        strftime(d, sizeof d, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(out, len, "%lld ns", (long long)ns);
    else if (whole)
        snprintf(out, len, "%s UTC", d);
    else
        snprintf(out, len, "%s.%09lld UTC", d,
                 (long long)(ns - secs_of(ns) * 1000000000));
}

/* Whether m was made from generation g's version of the template: the
 * mtime imgcache-manifest saw is the origin's for g (st_mtim for a file
 * origin; Last-Modified, whole seconds, for HTTP).  The size alone binds
 * nothing: an image published again at the same size before its manifest
 * (the usual order) would take the old version's, and its hashes would
 * let the old version's cached blocks stand in for the new one's.  With
 * loud, says why not (once per generation: at settle). */
static int manifest_bound(const struct gen *g, const struct manifest *m,
                          int loud)
{
    int64_t mt = 0, ot = g->info.mtime_ns;
    int http = conf_origin_is_http(g->t->location);
    char why[200], a[64], b[64];
    if (!manifest_template_mtime(m, &mt)) {
        snprintf(why, sizeof why, "manifest records no template mtime "
                 "(written by an older imgcache-manifest)");
    } else if (ot == 0) {
        snprintf(why, sizeof why, "the origin gives no modification time "
                 "to bind the manifest to");
    } else if (http ? secs_of(mt) == secs_of(ot) : mt == ot) {
        return 1;
    } else {
        fmt_mtime(mt, http, a, sizeof a);
        fmt_mtime(ot, http, b, sizeof b);
        snprintf(why, sizeof why, "manifest of another version of the "
                 "template (mtime %s, origin's %s)", a, b);
    }
    if (loud)
        log_warn("template %s: generation %llu: %s: verifying fetched blocks "
                 "only (no local copies, no zero blocks skipped)",
                 g->t->name, (unsigned long long)g->number, why);
    return 0;
}

/* A manifest reference of refs references around m. */
static struct vmf *vmf_new(const struct gen *g, struct manifest *m,
                           const struct origin_fetched *meta,
                           const char *where)
{
    struct vmf *v = calloc(1, sizeof *v);
    if (v == NULL) {
        manifest_close(m);
        return NULL;
    }
    v->m = m;
    v->refs = 1;
    v->meta = *meta;
    /* Believed for bytes the origin does not send (zero blocks, local
     * copies) only when made from this generation's version: the size
     * binds nothing (manifest_bound).  Said once per manifest taken. */
    (void)where;
    v->spare = manifest_bound(g, m, 1);
    return v;
}

/* The origin's validator of a stored manifest, on the file itself: set
 * before the rename, so the name never holds a manifest with another's
 * validator (a sidecar file could be left behind by a crash). */
#define VALIDATOR_XATTR "user.imgcache.validator"

/* The stored validator of the manifest at path into out ("" when none:
 * the refresh is unconditional). */
static void stored_validator(const char *path, char *out, size_t len)
{
    ssize_t n = getxattr(path, VALIDATOR_XATTR, out, len - 1);
    out[n > 0 ? n : 0] = '\0';
}

/* Fetch the manifest to path via path.tmp: opened and checked there, then
 * renamed (a crash leaves no half manifest under the real name, and a
 * manifest already mapped from path keeps its bytes: never truncated in
 * place).  meta: in, a validator for a conditional fetch ("" none); out,
 * the new one's.  0 with *out a reference to the new manifest; -ENOENT
 * when the origin has none, -EBADMSG when the one it has is refused or
 * does not fit g (both the origin's answer: what it publishes now is no
 * manifest of g); -EALREADY when it is unchanged (meta's validator);
 * another -errno when it could not be fetched or stored (a timeout, 5xx,
 * EIO, ENOSPC: nothing known of the origin's manifest). */
static int fetch_manifest(struct gen *g, const char *path, uint64_t deadline,
                          struct origin_fetched *meta, struct vmf **out)
{
    struct tmpl *t = g->t;
    *out = NULL;
    char *loc = manifest_location(t);
    if (loc == NULL)
        return -ENOMEM; /* manifest = none never comes here */
    char shown[1024], why[256] = "", tmp[PATH_MAX];
    if (conf_origin_is_http(loc))
        url_mask(loc, shown, sizeof shown);
    else
        snprintf(shown, sizeof shown, "%s", loc);
    struct manifest *m = NULL;
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = n > 0 && (size_t)n < sizeof tmp
                 ? open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW |
                                 O_CLOEXEC, 0600)
                 : -1;
    if (fd < 0) {
        int e = n > 0 && (size_t)n < sizeof tmp ? errno : ENAMETOOLONG;
        log_warn("template %s: cannot store manifest %s: %s", t->name, shown,
                 strerror(e));
        free(loc);
        return -e;
    }
    int64_t r = origin_fetch(loc, &t->net, fd, manifest_max(g->info.size),
                             deadline, meta, why, sizeof why);
    if (r >= 0 && fdatasync(fd) < 0)
        r = -errno;
    /* The origin's mtime on our copy: what a restart judges it by (the
     * epoch for an unknown one, which a restart reads as unknown again,
     * not as the time of our fetch). */
    if (r >= 0) {
        struct timespec ts[2] = {
            {.tv_nsec = UTIME_OMIT},
            {.tv_sec = meta->mtime_ns / 1000000000,
             .tv_nsec = meta->mtime_ns % 1000000000}};
        if (futimens(fd, ts) < 0)
            r = -errno; /* a restart would believe our fetch's time */
    }
    /* Without it (a filesystem with no user xattrs) the first refresh
     * after a restart asks unconditionally: one GET more, nothing wrong. */
    if (r >= 0 && meta->validator[0] != '\0' &&
        fsetxattr(fd, VALIDATOR_XATTR, meta->validator,
                  strlen(meta->validator), 0) < 0)
        log_debug("template %s: cannot keep the validator of manifest %s: "
                  "%s", t->name, shown, strerror(errno));
    close(fd);
    int rc = r < 0 ? (int)r : 0;
    if (r == -ENOENT) {
        log_debug("template %s: no manifest at %s", t->name, shown);
    } else if (r == -EALREADY) {
        log_info("template %s: manifest %s unchanged", t->name, shown);
    } else if (r < 0) {
        log_warn("template %s: manifest %s: %s; verifying nothing for "
                 "generation %llu", t->name, shown,
                 why[0] ? why : strerror((int)-r),
                 (unsigned long long)g->number);
        if (r == -EFBIG)
            rc = -EBADMSG; /* no manifest of g's size can be that long */
    } else {
        char err[256];
        int o = manifest_open(tmp, &m, err, sizeof err);
        if (o < 0) {
            log_warn("template %s: manifest %s refused: %s; the template "
                     "is served without it", t->name, shown, err);
            rc = o == -EINVAL ? -EBADMSG : o;
        } else if (!manifest_fits(g, m, shown)) {
            manifest_close(m);
            rc = -EBADMSG;
        } else if (rename(tmp, path) < 0) {
            rc = -errno;
            log_warn("template %s: cannot store manifest %s: %s", t->name,
                     shown, strerror(-rc));
            manifest_close(m);
        } else {
            log_info("template %s: generation %llu verified against "
                     "manifest %s (%llu blocks of %u bytes)", t->name,
                     (unsigned long long)g->number, shown,
                     (unsigned long long)manifest_nblocks(m),
                     manifest_block_size(m));
            *out = vmf_new(g, m, meta, shown);
            rc = *out != NULL ? 0 : -ENOMEM;
        }
    }
    unlink(tmp);
    free(loc);
    return rc;
}

/* What g's stored manifest takes on disk now, for evict.c. */
static void account_manifest(struct gen *g)
{
    __atomic_store_n(&g->mf_bytes,
                     store_manifest_bytes(cache_conf(g->t->c)->cache_dir,
                                          g->t->name, g->number),
                     __ATOMIC_RELAXED);
}

/* The stored manifest of g, or the fetched one. */
static struct vmf *find_manifest(struct gen *g, uint64_t deadline)
{
    struct tmpl *t = g->t;
    char path[PATH_MAX], err[256];
    struct origin_fetched meta = {0};
    if (store_manifest_path(path, sizeof path, cache_conf(t->c)->cache_dir,
                            t->name, g->number) < 0)
        return NULL;
    if (t->manifest_mode == CONF_MANIFEST_NONE) {
        /* One stored while the template had a manifest would count in
         * the cache's disk use for good, and never be used. */
        if (unlink(path) == 0) {
            log_info("template %s: manifest = none: removed the stored "
                     "manifest %s", t->name, path);
            account_manifest(g);
        }
        return NULL;
    }
    struct manifest *m = NULL;
    struct vmf *f = NULL;
    struct stat sb;
    if (manifest_open(path, &m, err, sizeof err) == 0) {
        if (!manifest_fits(g, m, path)) {
            manifest_close(m);
            return NULL; /* fetched for this generation already */
        }
        /* Its mtime and validator are the origin's (0, "": unknown), see
         * fetch_manifest: a refresh asks conditionally after a restart. */
        if (stat(path, &sb) == 0 && sb.st_mtim.tv_sec > 0)
            meta.mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 +
                            sb.st_mtim.tv_nsec;
        stored_validator(path, meta.validator, sizeof meta.validator);
        if (!manifest_bound(g, m, 0)) {
            /* Stored before the origin had this version's (a restart
             * since): ask again.  A fetch that fails keeps the stored one
             * for checking; an origin that has none now, or one that is
             * not g's, is believed: the stored one goes (kept, it would
             * fail every block it does not describe, for good).  Asked
             * conditionally: an unchanged one (-EALREADY) is kept. */
            struct origin_fetched fm = meta;
            int r = fetch_manifest(g, path, deadline, &fm, &f);
            if (r == 0) {
                manifest_close(m);
                return f;
            }
            /* Only the origin's own word (404, 410, no file) withdraws
             * it: a refused one may be a transfer damaged on the way (a
             * proxy's cut reply), which must not turn checking off. */
            if (r == -ENOENT) {
                log_info("template %s: generation %llu: the origin has no "
                         "manifest now; removing the stored manifest %s, "
                         "not bound to this version, and serving the "
                         "generation without one", t->name,
                         (unsigned long long)g->number, path);
                manifest_close(m);
                unlink(path);
                return NULL;
            }
        }
        return vmf_new(g, m, &meta, path);
    }
    if (access(path, F_OK) == 0) {
        log_warn("template %s: stored manifest %s refused (%s); fetching "
                 "it again", t->name, path, err);
        unlink(path);
    }
    (void)fetch_manifest(g, path, deadline, &meta, &f);
    return f;
}

void verify_settle(struct gen *g, uint64_t deadline)
{
    struct timespec ts = ms_timespec(deadline);
    pthread_mutex_lock(&g->lock);
    while (g->mf_state == MF_FETCHING)
        if (pthread_cond_timedwait(&g->filled, &g->lock, &ts) == ETIMEDOUT)
            break;
    int mine = g->mf_state == MF_UNSET;
    if (mine)
        g->mf_state = MF_FETCHING;
    pthread_mutex_unlock(&g->lock);
    if (!mine)
        return;
    /* One fetch per generation: bounded by origin_timeout, not by the
     * first reader's deadline alone (the others wait for it). */
    uint64_t lim = mono_ms() + __atomic_load_n(&g->t->timeout_ms,
                                               __ATOMIC_RELAXED);
    struct vmf *v = find_manifest(g, lim > deadline ? lim : deadline);
    account_manifest(g);
    pthread_mutex_lock(&g->lock);
    g->mf = v;
    __atomic_store_n(&g->mf_state, MF_SETTLED, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&g->filled);
    pthread_mutex_unlock(&g->lock);
}

struct vmf *verify_get(struct gen *g)
{
    pthread_mutex_lock(&g->lock);
    struct vmf *v = g->mf;
    if (v != NULL)
        v->refs++;
    pthread_mutex_unlock(&g->lock);
    return v;
}

/* gen.lock held; whether v is to be freed (after the lock). */
static int vmf_unref(struct vmf *v)
{
    return v != NULL && --v->refs == 0;
}

static void vmf_free(struct vmf *v)
{
    manifest_close(v->m);
    free(v);
}

void verify_put(struct gen *g, struct vmf *v)
{
    pthread_mutex_lock(&g->lock);
    int last = vmf_unref(v);
    pthread_mutex_unlock(&g->lock);
    if (last)
        vmf_free(v);
}

int verify_refresh(struct gen *g, struct vmf *old, uint64_t deadline,
                   struct vmf **fresh)
{
    struct tmpl *t = g->t;
    char path[PATH_MAX];
    struct timespec ts = ms_timespec(deadline);
    struct vmf *v = NULL;
    *fresh = NULL;
    pthread_mutex_lock(&g->lock);
    for (;;) {
        if (g->mf != old) { /* a fresher one came, or it was withdrawn */
            v = g->mf;
            if (v != NULL)
                v->refs++;
            pthread_mutex_unlock(&g->lock);
            *fresh = v;
            return v != NULL ? 0 : -ENOENT;
        }
        if (!g->mf_refreshing)
            break;
        if (pthread_cond_timedwait(&g->filled, &g->lock, &ts) == ETIMEDOUT) {
            pthread_mutex_unlock(&g->lock);
            return -EAGAIN;
        }
    }
    uint64_t now = mono_ms();
    uint64_t last = __atomic_load_n(&t->mf_refresh_ms, __ATOMIC_RELAXED);
    if ((last != 0 && now - last < VERIFY_REFRESH_MS) || now >= deadline ||
        !__atomic_compare_exchange_n(&t->mf_refresh_ms, &last, now, 0,
                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED) ||
        store_manifest_path(path, sizeof path, cache_conf(t->c)->cache_dir,
                            t->name, g->number) < 0) {
        pthread_mutex_unlock(&g->lock);
        return -EAGAIN;
    }
    g->mf_refreshing = 1;
    struct origin_fetched meta = old != NULL ? old->meta
                                             : (struct origin_fetched){0};
    pthread_mutex_unlock(&g->lock);
    log_info("template %s: a block of generation %llu failed its check on "
             "every source; fetching its manifest again", t->name,
             (unsigned long long)g->number);
    int r = fetch_manifest(g, path, deadline, &meta, &v);
    /* The origin has no manifest of g now: the generation's goes, or it
     * would fail every block it does not describe until a restart; our
     * copy too (a mapping of it keeps its bytes), or a restart would take
     * it up again. */
    /* Only the origin's own word: a refused one (-EBADMSG) may have been
     * damaged on the way, and keeps the old one, as a failure does. */
    int gone = r == -ENOENT;
    if (gone)
        unlink(path);
    account_manifest(g);
    pthread_mutex_lock(&g->lock);
    struct vmf *drop = NULL;
    if (v != NULL || gone) {
        /* Only the generation's reference goes: a fill holding old (or
         * any earlier one) keeps its own, and the last put frees it. */
        drop = vmf_unref(g->mf) ? g->mf : NULL;
        g->mf = v;
        if (v != NULL)
            v->refs++; /* the generation's, and the caller's */
    }
    g->mf_refreshing = 0;
    pthread_cond_broadcast(&g->filled);
    pthread_mutex_unlock(&g->lock);
    if (drop != NULL)
        vmf_free(drop);
    if (gone) {
        log_info("template %s: the origin has no manifest now; "
                 "generation %llu is served without a manifest from now on",
                 t->name, (unsigned long long)g->number);
        return -ENOENT;
    }
    *fresh = v;
    return v != NULL ? 0 : -EAGAIN;
}

/* ------------------------------------------------------------ checking */

/* Manifest entries [*a, *b) covering template block blk. */
static void entries_of(const struct gen *g, const struct manifest *m,
                       uint64_t blk, uint64_t *a, uint64_t *b)
{
    uint32_t mb = manifest_block_size(m);
    uint64_t off = block_start(blk, g->bs);
    uint64_t end = off + block_len(blk, g->info.size, g->bs);
    *a = off / mb;
    *b = (end + mb - 1) / mb;
}

int verify_zero(const struct gen *g, const struct vmf *v, uint64_t blk)
{
    if (v == NULL || !v->spare)
        return 0;
    uint64_t a, b;
    uint8_t h[MANIFEST_HASH_LEN];
    entries_of(g, v->m, blk, &a, &b);
    for (uint64_t e = a; e < b; e++)
        if (manifest_entry(v->m, e, h) != 1)
            return 0;
    return 1;
}

int verify_block_sha(const struct gen *g, const struct vmf *v, uint64_t blk,
                     uint8_t sha[MANIFEST_HASH_LEN])
{
    if (v == NULL || manifest_block_size(v->m) != g->bs)
        return 0;
    return manifest_entry(v->m, blk, sha) == 0;
}

void verify_span(const struct gen *g, const struct vmf *v, uint64_t *off,
                 uint64_t *len)
{
    if (v == NULL || manifest_block_size(v->m) <= g->bs)
        return;
    uint32_t mb = manifest_block_size(v->m);
    uint64_t s = *off / mb * mb;
    uint64_t e = (*off + *len + mb - 1) / mb * mb;
    if (e > g->info.size)
        e = g->info.size;
    *off = s;
    *len = e - s;
}

/* Manifest entries [e0, e1) checked against the data at off: ok[e - e0]
 * set for each that matches (its bytes hash to the entry, or are zeros
 * for a zero entry). */
struct check_part {
    const struct gen *g;
    const struct vmf *v;
    const char *data;
    uint64_t off, e0, e1;
    uint8_t *ok;
};

static void check_entries(const struct check_part *cp)
{
    const struct gen *g = cp->g;
    uint32_t mb = manifest_block_size(cp->v->m);
    uint8_t want[MANIFEST_HASH_LEN], got[MANIFEST_HASH_LEN];
    for (uint64_t e = cp->e0; e < cp->e1; e++) {
        uint64_t s = e * mb;
        uint64_t l = g->info.size - s < mb ? g->info.size - s : mb;
        int z = manifest_entry(cp->v->m, e, want);
        const char *p = cp->data + (s - cp->off);
        cp->ok[e - cp->e0] = z == 1 ? buf_is_zero(p, l)
                             : z == 0 ? (manifest_hash(p, l, got),
                                         memcmp(got, want, sizeof got) == 0)
                                      : 0;
    }
}

static void check_job(void *arg)
{
    check_entries(arg);
}

/* A span of at least this many bytes is checked on two CPUs (the upper
 * half offered to a helper, ic-offload.h): SHA-256 costs about 0.6 ms per
 * MiB on one CPU, on the fill's critical path (a reader waits for the
 * span). */
#define CHECK_SPLIT_BYTES (1u << 20)

uint64_t verify_check(const struct gen *g, const struct vmf *v,
                      const char *data, uint64_t off, uint64_t len,
                      uint64_t first, uint64_t n, uint8_t *bad)
{
    uint32_t mb = manifest_block_size(v->m);
    uint64_t nbad = 0;
    memset(bad, 0, n);
    /* Every manifest block the data covers whole (all of them, as
     * verify_span widened the fetch). */
    uint64_t e0 = (off + mb - 1) / mb, e1 = e0;
    while (e1 * mb < off + len) {
        uint64_t s = e1 * mb;
        uint64_t l = g->info.size - s < mb ? g->info.size - s : mb;
        if (s + l > off + len)
            break;
        e1++;
    }
    /* In windows of up to 1024 entries (one 4 MiB fill in 4K blocks:
     * a fill is never more, except one widened to a single larger manifest
     * block), each on two threads when it is large enough. */
    uint8_t ok[1024];
    for (uint64_t w0 = e0; w0 < e1; w0 += sizeof ok) {
        uint64_t w1 = e1 - w0 < sizeof ok ? e1 : w0 + sizeof ok;
        struct check_part whole = {g, v, data, off, w0, w1, ok};
        uint64_t half = w0 + (w1 - w0) / 2;
        uint64_t wbytes = (w1 - w0) * mb;
        if (wbytes >= CHECK_SPLIT_BYTES && half > w0) {
            struct check_part lo = whole, hi = whole;
            lo.e1 = half;
            hi.e0 = half;
            hi.ok = ok + (half - w0);
            struct offload_job job = {.fn = check_job, .arg = &hi};
            offload_post(&job);
            check_entries(&lo);
            (void)offload_wait(&job);
        } else {
            check_entries(&whole);
        }
        for (uint64_t e = w0; e < w1; e++) {
            if (ok[e - w0])
                continue;
            /* The template blocks it overlaps, among first..first+n-1. */
            uint64_t s = e * mb;
            uint64_t l = g->info.size - s < mb ? g->info.size - s : mb;
            uint64_t b0 = s / g->bs, b1 = (s + l - 1) / g->bs;
            for (uint64_t b = b0; b <= b1; b++)
                if (b >= first && b < first + n && !bad[b - first]) {
                    bad[b - first] = 1;
                    nbad++;
                }
        }
    }
    return nbad;
}

void verify_note_failure(struct gen *g, int src, uint64_t blk, int retried)
{
    struct tmpl *t = g->t;
    const char *name = origin_source_name(t->origin, src);
    __atomic_add_fetch(&t->st.verify_failed, 1, __ATOMIC_RELAXED);
    if (src >= 0 && src < VERIFY_MAX_SOURCES)
        __atomic_add_fetch(&t->vfail[src], 1, __ATOMIC_RELAXED);
    /* Every failure is counted (above: the report, the xattrs); the log
     * says the first few per 10 s and how many it held back. */
    uint64_t held;
    if (ratelimit_allow(&t->vfail_log, 8, 10000, &held)) {
        char more[80] = "";
        if (held)
            snprintf(more, sizeof more, " (and %llu failures before it not "
                     "logged)", (unsigned long long)held);
        log_warn("template %s: block %llu of generation %llu from %s does "
                 "not match the manifest; %s%s", t->name,
                 (unsigned long long)blk, (unsigned long long)g->number,
                 name, retried ? "no source left to ask: EIO"
                               : "asking another source", more);
    }
    /* The index's "verify" event rows (the report's per-source figures,
     * imgcache-report(8)) come from vfail at each counters save, one row
     * per source with the failures since the last: one row per block
     * would flood the index when a mirror serves a wrong 100 GiB image.
     * No origin has more sources than vfail has slots (HTTP_MAX_URLS);
     * should one, its failures keep a row each. */
    if (src < 0 || src >= VERIFY_MAX_SOURCES)
        (void)writer_event(t->c->w, t->tid, "verify", 1, g->bs, name);
}

/* ------------------------------------------------------------ copies */

/* Copy len bytes at soff of sfd to doff of dfd: a reflink where the
 * filesystem shares extents, else copy_file_range.  0 or -errno. */
static int copy_bytes(struct cache *c, int sfd, uint64_t soff, int dfd,
                      uint64_t doff, uint64_t len)
{
    if (!__atomic_load_n(&c->no_reflink, __ATOMIC_RELAXED)) {
        struct file_clone_range r = {.src_fd = sfd, .src_offset = soff,
                                     .src_length = len, .dest_offset = doff};
        if (ioctl(dfd, FICLONERANGE, &r) == 0)
            return 0;
        if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EXDEV ||
            errno == ENOSYS)
            __atomic_store_n(&c->no_reflink, 1, __ATOMIC_RELAXED);
        /* EINVAL: an unaligned tail; copy that one. */
    }
    loff_t si = (loff_t)soff, di = (loff_t)doff;
    uint64_t done = 0;
    while (done < len) {
        ssize_t n = copy_file_range(sfd, &si, dfd, &di, len - done, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        done += (uint64_t)n;
    }
    return 0;
}

/* Copy block sblk of sg into block blk of g and check the result against
 * want (the bytes land in buf).  0, or -errno with nothing kept. */
static int copy_from(struct gen *g, uint64_t blk, struct gen *sg,
                     uint64_t sblk, const uint8_t *want, char *buf)
{
    uint32_t len = block_len(blk, g->info.size, g->bs);
    if (sg->bs != g->bs || sblk >= sg->bm.nblocks ||
        block_len(sblk, sg->info.size, sg->bs) != len)
        return -EINVAL;
    pthread_rwlock_rdlock(&sg->evict_rw);
    pthread_mutex_lock(&sg->lock);
    const struct blk *b = &sg->bm.v[sblk];
    int present = b->state == BLK_PRESENT && !(b->flags & BLK_ZERO);
    pthread_mutex_unlock(&sg->lock);
    int r = present ? copy_bytes(g->t->c, sg->fd, block_start(sblk, sg->bs),
                                 g->fd, block_start(blk, g->bs), len)
                    : -ENOENT;
    pthread_rwlock_unlock(&sg->evict_rw);
    if (r == 0 && pread_full(g->fd, buf, len, block_start(blk, g->bs)) !=
                      (ssize_t)len)
        r = -EIO;
    uint8_t got[MANIFEST_HASH_LEN];
    if (r == 0) {
        manifest_hash(buf, len, got);
        if (memcmp(got, want, sizeof got) != 0)
            r = -EBADMSG; /* the index was wrong, or the disk: fetch it */
    }
    if (r < 0 && r != -ENOENT && r != -EINVAL)
        store_punch(g->fd, block_start(blk, g->bs), len);
    return r;
}

int verify_copy_local(struct gen *g, const struct vmf *v, uint64_t blk,
                      char *buf, uint64_t *reserved)
{
    struct cache *c = g->t->c;
    uint8_t want[MANIFEST_HASH_LEN];
    struct index_rec cand[4];
    *reserved = 0;
    if (c->lookup_ix == NULL || v == NULL || !v->spare ||
        !verify_block_sha(g, v, blk, want))
        return 0;
    pthread_mutex_lock(&c->lookup_lock);
    int n = index_sha_find(c->lookup_ix, want, cand, 4);
    pthread_mutex_unlock(&c->lookup_lock);
    if (n < 0) {
        /* The block is fetched instead: said once per 10 s (an sqlite3
         * shell holding the index would say it per block). */
        static struct ratelimit said;
        uint64_t held;
        if (ratelimit_allow(&said, 1, 10000, &held))
            log_warn("template %s: looking up a local copy of block %llu "
                     "failed (%s); fetching it from the origin", g->t->name,
                     (unsigned long long)blk, strerror(-n));
    }
    if (n <= 0)
        return 0;
    uint32_t len = block_len(blk, g->info.size, g->bs);
    uint64_t cost = (len + 4095) & ~4095u;
    int cls = BLK_CLASS(__atomic_load_n(&g->bm.v[blk].flags,
                                        __ATOMIC_RELAXED));
    if (evict_make_room(g, cost, cls) < 0)
        return 0; /* a fetch would not be stored either: let it serve */
    for (int i = 0; i < n; i++) {
        struct gen *sg = cand[i].tid == g->t->tid && cand[i].gen == g->number
                             ? (cache_gen_ref(g), g)
                             : cache_gen_find(c, cand[i].tid, cand[i].gen);
        if (sg == NULL)
            continue;
        int r = copy_from(g, blk, sg, cand[i].blk, want, buf);
        cache_gen_put(sg);
        if (r == 0) {
            __atomic_add_fetch(&g->t->st.local_blocks, 1, __ATOMIC_RELAXED);
            __atomic_add_fetch(&g->t->st.local_bytes, len, __ATOMIC_RELAXED);
            *reserved = cost;
            return 1;
        }
    }
    evict_unreserve(g, cost);
    return 0;
}
