/* Origins: where template bytes come from.  One interface, two backends
 * (origin-file.c: local/NFS path; origin-http.c: HTTP(S) with libcurl).
 *
 * Contract for every backend:
 *  - Never block past the deadline given (absolute mono_ms() time); return
 *    -ETIMEDOUT instead.  A backend whose syscalls can hang (hard NFS) must
 *    run them where the caller can walk away from them.
 *  - read() returns 0 only when exactly `len` bytes at `off` were copied into
 *    buf and they belong to the content described by `expect` (same
 *    validator).  If the origin changed, return -ESTALE.  Nothing else is a
 *    success: short data, extra data, wrong ranges are errors.
 *  - Errors are negative errno values: -ENOENT (template gone), -ESTALE
 *    (content changed), -ETIMEDOUT, -EHOSTDOWN (every URL's host is marked
 *    down, see ic-health.h: nothing was tried), -ELOOP (a [directory] file
 *    became a symlink it may not follow), -EIO (anything else).
 *    A reader sees every failed fill as EIO (read.c).
 *  - Safe to call from several threads at once.
 *  - read() takes what the request is for (struct origin_req, ic-sched.h:
 *    its class, template and flow; NULL is a demand read) and passes it to
 *    the scheduler of the transfer slots it needs: origin-http.c's per
 *    host (a cap, origin_connections), origin-file.c's per origin (its
 *    worker queue, no cap beyond its workers).  A FETCH_READAHEAD that
 *    would have to wait for a slot fails at once with -EAGAIN (nothing was
 *    asked of the origin); no other request ever gets -EAGAIN.  stat()
 *    and listings count as demand (someone opens or mounts).
 *
 * Locking: the backends' locks (origin.c's list_lock, origin-file.c's
 * per-origin lock, origin-http.c's hosts_lock and pool locks, and
 * health.c's) are taken last, each described where it is defined: none
 * is held across the I/O, and the only other lock taken under one is
 * fillbuf's pool_lock (a leaf, under origin-file.c's).  The scheduler's
 * sched.lock (ic-sched.h) is a leaf taken with none of them held.  The engine calls
 * origins with no lock held but cache.cfg_lock (stats and listings of a
 * config load) or tmpl.cfgpin_lock (reads for config pins); see
 * fs/engine/cache-priv.h. */
#ifndef IC_ORIGIN_H
#define IC_ORIGIN_H

#include <stddef.h>
#include <stdint.h>

#include "ic-health.h"
#include "ic-sched.h"

struct conf_net;

#define ORIGIN_VALIDATOR_MAX 256

struct origin_info {
    uint64_t size;
    int64_t mtime_ns;  /* modification time (ns since epoch), 0 if unknown */
    /* Opaque text that changes whenever the content may have changed:
     * file: "dev:ino:size:mtime_ns:ctime_ns" (dev not compared, see
     * origin_file_validator_eq); http: ETag or Last-Modified. */
    char validator[ORIGIN_VALIDATOR_MAX];
};

struct origin;

struct origin_ops {
    const char *kind; /* "file", "http" */
    int (*stat)(struct origin *o, struct origin_info *out, uint64_t deadline);
    int (*read)(struct origin *o, void *buf, uint64_t off, size_t len,
                const struct origin_info *expect,
                const struct origin_req *rq, uint64_t deadline);
    void (*destroy)(struct origin *o);
    /* Optional: an enum health_state for the origin's URLs together, and
     * *since, when the first of its down hosts went down (0 when up). */
    int (*state)(struct origin *o, int64_t *since);
    /* Optional: the sources a read may come from (HTTP: the primary URL,
     * then each mirror, in order) and source i's masked name.  Without
     * them an origin is one source, named by its display. */
    int (*nsources)(struct origin *o);
    const char *(*source_name)(struct origin *o, int i);
};

struct origin {
    const struct origin_ops *ops;
    char *location;     /* path or URL as configured (may hold secrets) */
    char *display;      /* location with credentials/query masked: log this */
    uint64_t timeout_ms;         /* origin_timeout */
    uint64_t connect_timeout_ms; /* connect_timeout */
    void *priv;
};

/* Create the origin for a location (path or http(s) URL).  Returns NULL and
 * a message in err on failure (bad URL, unsupported scheme). */
struct origin *origin_new(const char *location, const struct conf_net *net,
                          char *err, size_t errlen);
void origin_free(struct origin *o);

static inline int origin_stat(struct origin *o, struct origin_info *out,
                              uint64_t deadline)
{
    return o->ops->stat(o, out, deadline);
}
static inline int origin_read(struct origin *o, void *buf, uint64_t off,
                              size_t len, const struct origin_info *expect,
                              const struct origin_req *rq, uint64_t deadline)
{
    return o->ops->read(o, buf, off, len, expect, rq, deadline);
}

/* Reachability of the origin's hosts; a backend that does not track it
 * is always HEALTH_UP. */
static inline enum health_state origin_state(struct origin *o, int64_t *since)
{
    *since = 0;
    return o->ops->state ? (enum health_state)o->ops->state(o, since)
                         : HEALTH_UP;
}

static inline int origin_nsources(struct origin *o)
{
    return o->ops->nsources ? o->ops->nsources(o) : 1;
}
/* Masked: fit for logs and reports. */
static inline const char *origin_source_name(struct origin *o, int i)
{
    return o->ops->source_name && i >= 0 && i < origin_nsources(o)
               ? o->ops->source_name(o, i)
               : o->display;
}

/* What origin_fetch learnt of the file it copied; validator is also an
 * input: non-empty, the copy is made only if the file changed since. */
struct origin_fetched {
    int64_t mtime_ns;                     /* 0 when unknown */
    char validator[ORIGIN_VALIDATOR_MAX]; /* "" when none */
};

/* Copy the whole file at location (an absolute path, or an http(s) URL
 * fetched with one GET, through net's proxy and TLS settings but not its
 * mirrors) into fd from offset 0, by the deadline.  Returns its length, or
 * -ENOENT when there is no such file (ENOENT, 404, 410), -EFBIG when it is
 * longer than max, -EALREADY when meta->validator was given and the file
 * still has it (HTTP: If-None-Match answered 304; fd untouched), another
 * -errno otherwise (why says what, masked).  meta (may be NULL) gets the
 * file's mtime and validator.  Block manifests (fs/engine/verify.c). */
int64_t origin_fetch(const char *location, const struct conf_net *net,
                     int fd, uint64_t max, uint64_t deadline,
                     struct origin_fetched *meta, char *why, size_t whylen);
int64_t origin_http_fetch(const char *url, const struct conf_net *net,
                          int fd, uint64_t max, uint64_t deadline,
                          struct origin_fetched *meta, char *why,
                          size_t whylen);

/* Flags for the [directory] functions below. */
#define ORIGIN_FOLLOW_SYMLINKS 0x1 /* path: serve symlinks resolving to
                                      regular files inside the directory */
#define ORIGIN_QUIET 0x2           /* listing: skipped entries at debug */

/* List the template names of a [directory] origin: the regular files
 * inside a directory (symlinks only with ORIGIN_FOLLOW_SYMLINKS, and then
 * only those that resolve beneath it), or the lines of URL/manifest for
 * http(s).  Names that fail conf_name_valid() are skipped with a warning;
 * skipped symlinks are named in one log line (info, or debug with
 * ORIGIN_QUIET).  A path listing that does not end within
 * net->connect_timeout_ms (a hung NFS mount) is left to finish on its own
 * thread: -ETIMEDOUT, and again at once while it is still stuck.  Returns
 * count or -errno; *names is a malloc'd array of malloc'd strings. */
int origin_list_dir(const char *location, const struct conf_net *net,
                    unsigned flags, char ***names);
/* The origin of file `name` of a [directory] origin.  For a path, every
 * open resolves `name` beneath the directory under the listing's rule
 * (see origin_file_new_in_dir); an http(s) one is url_join's URL. */
struct origin *origin_new_in_dir(const char *dir, const char *name,
                                 const struct conf_net *net, unsigned flags,
                                 char *err, size_t errlen);
/* Whether two validators name the same content (of one location): not
 * always strcmp, see origin_file_validator_eq. */
int origin_validator_eq(const char *a, const char *b);
int origin_file_validator_eq(const char *a, const char *b);

/* Backends (origin.c dispatches on the location). */
struct origin *origin_file_new(const char *path, char *err, size_t errlen);
/* A file of directory `dir`: every stat and read opens dir by path (a
 * remounted share is seen) and then `name` inside it with openat2(2):
 * never through a magic link, through a symlink only with follow and then
 * only if it resolves beneath dir; the stat is an fstat of what was
 * opened.  A refused symlink fails with -ELOOP. */
struct origin *origin_file_new_in_dir(const char *dir, const char *name,
                                      int follow, char *err, size_t errlen);
/* Open `name` (one path component) in the directory dfd under that rule;
 * flags as for open(2) (O_PATH allowed).  fd or -errno. */
int origin_file_open_beneath(int dfd, const char *name, int flags,
                             int follow);
struct origin *origin_http_new(const char *url, const struct conf_net *net,
                               char *err, size_t errlen);
int origin_http_list(const char *url, const struct conf_net *net,
                     char ***names);

#endif
