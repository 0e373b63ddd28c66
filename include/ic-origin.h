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
 *    down, see ic-health.h: nothing was tried), -EIO (anything else).
 *    A reader sees every failed fill as EIO (read.c).
 *  - Safe to call from several threads at once. */
#ifndef IC_ORIGIN_H
#define IC_ORIGIN_H

#include <stddef.h>
#include <stdint.h>

#include "ic-health.h"

struct conf_net;

#define ORIGIN_VALIDATOR_MAX 256

struct origin_info {
    uint64_t size;
    int64_t mtime_ns;  /* modification time (ns since epoch), 0 if unknown */
    /* Opaque text that changes whenever the content may have changed:
     * file: "dev:ino:size:mtime_ns:ctime_ns"; http: ETag or Last-Modified. */
    char validator[ORIGIN_VALIDATOR_MAX];
};

struct origin;

struct origin_ops {
    const char *kind; /* "file", "http" */
    int (*stat)(struct origin *o, struct origin_info *out, uint64_t deadline);
    int (*read)(struct origin *o, void *buf, uint64_t off, size_t len,
                const struct origin_info *expect, uint64_t deadline);
    void (*destroy)(struct origin *o);
    /* Optional: an enum health_state for the origin's URLs together, and
     * *since, when the first of its down hosts went down (0 when up). */
    int (*state)(struct origin *o, int64_t *since);
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
                              uint64_t deadline)
{
    return o->ops->read(o, buf, off, len, expect, deadline);
}

/* Reachability of the origin's hosts; a backend that does not track it
 * is always HEALTH_UP. */
static inline enum health_state origin_state(struct origin *o, int64_t *since)
{
    *since = 0;
    return o->ops->state ? (enum health_state)o->ops->state(o, since)
                         : HEALTH_UP;
}

/* List the template names of a [directory] origin: regular files of a
 * directory, or the lines of URL/manifest for http(s).  Names that fail
 * conf_name_valid() are skipped with a warning.  Returns count or -errno;
 * *names is a malloc'd array of malloc'd strings. */
int origin_list_dir(const char *location, const struct conf_net *net,
                    char ***names);
/* Join a directory location and a file name (path or URL). malloc'd. */
char *origin_join(const char *dir, const char *name);

/* Copy url into out with userinfo and query string replaced by "***". */
void origin_mask_url(const char *url, char *out, size_t outlen);

/* Backends (origin.c dispatches on the location). */
struct origin *origin_file_new(const char *path, char *err, size_t errlen);
struct origin *origin_http_new(const char *url, const struct conf_net *net,
                               char *err, size_t errlen);
int origin_http_list(const char *url, const struct conf_net *net,
                     char ***names);

#endif
