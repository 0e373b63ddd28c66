/* Origin dispatch and helpers shared by the backends. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ic-conf.h"
#include "ic-http-check.h"
#include "ic-log.h"
#include "ic-manifest.h"
#include "ic-origin.h"
#include "ic-url.h"
#include "ic-util.h"

struct origin *origin_new(const char *location, const struct conf_net *net,
                          char *err, size_t errlen)
{
    struct origin *o;

    if (conf_origin_is_http(location))
        o = origin_http_new(location, net, err, errlen);
    else if (location[0] == '/')
        o = origin_file_new(location, err, errlen);
    else {
        snprintf(err, errlen, "unsupported origin '%s'", location);
        return NULL;
    }
    if (o != NULL && net != NULL) {
        o->timeout_ms = net->origin_timeout_ms;
        o->connect_timeout_ms = net->connect_timeout_ms;
    }
    return o;
}

void origin_free(struct origin *o)
{
    if (o != NULL)
        o->ops->destroy(o);
}

int origin_validator_eq(const char *a, const char *b)
{
    /* The HTTP backend's validators are tagged (http-check.c); the rest
     * are the file backend's. */
    if (httpc_validator_usable(a) || httpc_validator_usable(b))
        return strcmp(a, b) == 0;
    return origin_file_validator_eq(a, b);
}

static int add_name(char ***names, size_t *n, const char *name)
{
    char **v = realloc(*names, (*n + 1) * sizeof *v);
    if (v == NULL)
        return -ENOMEM;
    *names = v;
    v[*n] = strdup(name);
    if (v[*n] == NULL)
        return -ENOMEM;
    (*n)++;
    return 0;
}

/* Whether a directory entry may be served: a regular file, or with
 * follow a symlink resolving beneath the directory to one.  *link is set
 * for a symlink that is not served. */
static int entry_ok(int dfd, const char *name, int follow, int *link)
{
    struct stat st;
    *link = 0;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return 0;
    if (S_ISREG(st.st_mode))
        return 1;
    if (!S_ISLNK(st.st_mode))
        return 0; /* directories, devices, FIFOs: never templates */
    int ok = 0;
    if (follow) {
        /* The rule every read applies (origin-file.c). */
        int fd = origin_file_open_beneath(dfd, name, O_PATH, 1);
        ok = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
        if (fd >= 0)
            close(fd);
    }
    *link = !ok;
    return ok;
}

/* The skipped symlinks of one listing, for one log line. */
struct skipped {
    char text[512];
    size_t len, n;
};

static void skipped_add(struct skipped *sk, const char *name)
{
    sk->n++;
    if (!conf_name_valid(name))
        return; /* counted, not printed: no control bytes in the log */
    size_t room = sizeof sk->text - sk->len;
    int w = snprintf(sk->text + sk->len, room, "%s%s", sk->len ? ", " : "",
                     name);
    if (w > 0 && (size_t)w < room)
        sk->len += (size_t)w;
    else
        sk->text[sk->len] = '\0'; /* did not fit: left out */
}

static int list_local_dir(const char *path, unsigned flags, char ***names)
{
    DIR *d = opendir(path);
    size_t n = 0;
    struct dirent *de;
    struct skipped sk = {.len = 0};
    int follow = !!(flags & ORIGIN_FOLLOW_SYMLINKS);

    *names = NULL;
    if (d == NULL)
        return -errno;
    while ((de = readdir(d)) != NULL) {
        int link;
        /* Hidden files are skipped: editors and rsync use them as temps;
         * block manifests beside templates are not templates. */
        size_t nl = strlen(de->d_name), sl = strlen(MANIFEST_SUFFIX);
        if (de->d_name[0] == '.' ||
            (nl > sl && strcmp(de->d_name + nl - sl, MANIFEST_SUFFIX) == 0))
            continue;
        if (!entry_ok(dirfd(d), de->d_name, follow, &link)) {
            if (link)
                skipped_add(&sk, de->d_name);
            continue;
        }
        if (!conf_name_valid(de->d_name)) {
            log_warn("%s: skipping file with an invalid template name", path);
            continue;
        }
        if (add_name(names, &n, de->d_name) < 0)
            break;
    }
    closedir(d);
    if (sk.n == 0)
        return (int)n;
    /* One line per listing; listings happen at start, at reloads and in
     * the retries of an unlistable directory (quiet). */
    const char *why = follow ? "that do not resolve to a regular file "
                               "inside it"
                             : "(follow_symlinks = no)";
    if (flags & ORIGIN_QUIET)
        log_debug("%s: not serving %zu symbolic links %s: %s%s", path, sk.n,
                  why, sk.text, sk.len ? "" : "(names not printable)");
    else
        log_info("%s: not serving %zu symbolic links %s: %s%s", path, sk.n,
                 why, sk.text, sk.len ? "" : "(names not printable)");
    return (int)n;
}

/* A listing on a hard NFS mount that hangs would hang the start, a reload
 * or the retries (all under the config lock): it runs on its own thread,
 * and the caller walks away at connect_timeout, as from a stat.  A
 * directory whose abandoned listing is still stuck is not listed again
 * until that one returns: at most one stuck thread per directory.
 *
 * Locking: list_lock protects `stuck` and every job's done, abandoned,
 * result, names and next once its thread runs (path and flags are fixed).
 * A leaf: the listing itself runs with it released; under it only the
 * start of the listing thread and freeing memory.  The caller waits on
 * list_done with it, until connect_timeout. */
struct list_job {
    char *path;       /* path, flags: fixed */
    unsigned flags;
    int done, abandoned, result;
    char **names;
    struct list_job *next; /* on `stuck` once abandoned */
};

static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t list_done; /* CLOCK_MONOTONIC, see list_init */
static pthread_once_t list_once = PTHREAD_ONCE_INIT;
static struct list_job *stuck;   /* list_lock */

static void list_init(void)
{
    cond_init_mono(&list_done);
}

static void list_job_free(struct list_job *j)
{
    for (int i = 0; i < j->result; i++)
        free(j->names[i]);
    free(j->names);
    free(j->path);
    free(j);
}

static void *list_main(void *arg)
{
    struct list_job *j = arg;
    char **names;
    int r = list_local_dir(j->path, j->flags, &names);
    pthread_mutex_lock(&list_lock);
    j->result = r;
    j->names = names;
    j->done = 1;
    if (j->abandoned) {
        for (struct list_job **pp = &stuck; *pp; pp = &(*pp)->next)
            if (*pp == j) {
                *pp = j->next;
                break;
            }
        list_job_free(j);
    } else {
        pthread_cond_broadcast(&list_done);
    }
    pthread_mutex_unlock(&list_lock);
    return NULL;
}

static int list_bounded(const char *path, unsigned flags, uint64_t wait_ms,
                        char ***names)
{
    struct list_job *j = calloc(1, sizeof *j);
    pthread_t th;
    pthread_attr_t a;
    int r;

    *names = NULL;
    pthread_once(&list_once, list_init);
    if (j == NULL || (j->path = strdup(path)) == NULL) {
        free(j);
        return -ENOMEM;
    }
    j->flags = flags;
    pthread_mutex_lock(&list_lock);
    for (struct list_job *s = stuck; s; s = s->next)
        if (strcmp(s->path, path) == 0) {
            pthread_mutex_unlock(&list_lock);
            list_job_free(j);
            return -ETIMEDOUT; /* the last listing still hangs */
        }
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    r = pthread_create(&th, &a, list_main, j);
    pthread_attr_destroy(&a);
    if (r != 0) {
        pthread_mutex_unlock(&list_lock);
        list_job_free(j);
        return -r;
    }
    struct timespec ts = ms_timespec(mono_ms() + wait_ms);
    while (!j->done)
        if (pthread_cond_timedwait(&list_done, &list_lock, &ts) == ETIMEDOUT &&
            !j->done) {
            j->abandoned = 1;
            j->next = stuck;
            stuck = j;
            pthread_mutex_unlock(&list_lock);
            log_warn("%s: no answer to a listing within %llu ms", path,
                     (unsigned long long)wait_ms);
            return -ETIMEDOUT;
        }
    pthread_mutex_unlock(&list_lock);
    r = j->result;
    *names = j->names;
    j->names = NULL;
    j->result = 0;
    list_job_free(j);
    return r;
}

int origin_list_dir(const char *location, const struct conf_net *net,
                    unsigned flags, char ***names)
{
    if (conf_origin_is_http(location))
        return origin_http_list(location, net, names);
    return list_bounded(location, flags,
                        net ? net->connect_timeout_ms : 5000, names);
}

struct origin *origin_new_in_dir(const char *dir, const char *name,
                                 const struct conf_net *net, unsigned flags,
                                 char *err, size_t errlen)
{
    if (dir[0] != '/') {
        char *loc = url_join(dir, name);
        if (loc == NULL) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        struct origin *o = origin_new(loc, net, err, errlen);
        free(loc);
        return o;
    }
    struct origin *o = origin_file_new_in_dir(
        dir, name, !!(flags & ORIGIN_FOLLOW_SYMLINKS), err, errlen);
    if (o != NULL && net != NULL) {
        o->timeout_ms = net->origin_timeout_ms;
        o->connect_timeout_ms = net->connect_timeout_ms;
    }
    return o;
}

/* A file through the file backend (its reads bounded, on its workers: a
 * hung share holds a worker, not the caller), in chunks; the file must
 * keep its validator throughout. */
static int64_t fetch_path(const char *path, int fd, uint64_t max,
                          uint64_t deadline, struct origin_fetched *meta,
                          char *why, size_t whylen)
{
    char err[256];
    struct origin *o = origin_file_new(path, err, sizeof err);
    if (o == NULL) {
        snprintf(why, whylen, "%s", err);
        return -EINVAL;
    }
    struct origin_info info;
    int64_t r = origin_stat(o, &info, deadline);
    if (r == 0 && meta->validator[0] != '\0' &&
        origin_file_validator_eq(meta->validator, info.validator)) {
        origin_free(o);
        return -EALREADY; /* unchanged since the last copy */
    }
    if (r == 0) {
        meta->mtime_ns = info.mtime_ns;
        snprintf(meta->validator, sizeof meta->validator, "%s",
                 info.validator);
    }
    if (r == 0 && info.size > max) {
        snprintf(why, whylen, "larger than %llu bytes",
                 (unsigned long long)max);
        r = -EFBIG;
    }
    const size_t chunk = 1u << 20;
    char *buf = r == 0 ? malloc(chunk) : NULL;
    if (r == 0 && buf == NULL)
        r = -ENOMEM;
    if (r == 0 && ftruncate(fd, 0) < 0)
        r = -errno;
    for (uint64_t off = 0; r == 0 && off < info.size; off += chunk) {
        size_t n = info.size - off < chunk ? (size_t)(info.size - off)
                                           : chunk;
        r = origin_read(o, buf, off, n, &info, NULL, deadline);
        if (r == 0) {
            ssize_t w = pwrite_full(fd, buf, n, off);
            r = w < 0 ? w : 0;
        }
    }
    free(buf);
    if (r < 0 && why[0] == '\0')
        snprintf(why, whylen, "%s", r == -ENOENT ? "not found"
                                    : r == -ESTALE ? "changed while read"
                                                   : strerror((int)-r));
    origin_free(o);
    return r < 0 ? r : (int64_t)info.size;
}

int64_t origin_fetch(const char *location, const struct conf_net *net,
                     int fd, uint64_t max, uint64_t deadline,
                     struct origin_fetched *meta, char *why, size_t whylen)
{
    struct origin_fetched none = {0};
    why[0] = '\0';
    if (meta == NULL)
        meta = &none;
    if (conf_origin_is_http(location))
        return origin_http_fetch(location, net, fd, max, deadline, meta, why,
                                 whylen);
    return fetch_path(location, fd, max, deadline, meta, why, whylen);
}
