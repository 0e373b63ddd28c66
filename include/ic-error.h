/* The error convention of every imgcache module: the engine, the daemon,
 * the tools.  Included by ic-util.h and ic-log.h, and directly by the few
 * modules that include neither, so every fs/ and tools/ file sees it.
 *
 * Results
 *  - A function returning an int (or ssize_t, int64_t) status returns 0 on
 *    success, or a non-negative count or value where its header says so,
 *    and -errno on failure: -EINVAL for input it refuses, -ENOMEM, -EIO
 *    when nothing better says what went wrong.  Never -1 with errno set,
 *    never a bare -1; errno after a call means nothing to the caller.
 *    A header contract says "0 or -errno", and names the errnos a caller
 *    acts on (-ENOENT: gone, -ESTALE: changed, -EBUSY: try again, ...).
 *  - A predicate ("whether ...") returns 1 or 0; one that can also fail
 *    says so and fails with -errno.
 *  - A function returning a pointer returns NULL on failure, and its
 *    header says why it can ("NULL on out of memory").  When a caller must
 *    tell causes apart the function returns an int status instead and
 *    hands the pointer back through an out parameter.
 *  - A static helper that hands on another library's code (an SQLite
 *    result, a CURLcode) says so in its comment; the code becomes an errno
 *    in one place per library (index.c's ix_db_fail, origin-http.c's
 *    curl_errno) before it leaves the module.
 *
 * Messages
 *  - A function with a message buffer (char *err, size_t errlen; `why` in
 *    the HTTP checks) fills it on failure with one line naming what is
 *    wrong: the file and line, the key, the value, the path.  No program
 *    name and no newline (the caller adds its own prefix), no credentials
 *    (URLs go through url_mask), control bytes escaped.  The buffer
 *    may be NULL or errlen 0; the result is the same -errno either way.
 *
 * Logging
 *  - The function that has the context (which template, path, block, URL)
 *    logs the failure, once, with that context and strerror(-rc).  Its
 *    callers hand the -errno on, or act on it (retry, fail the read with
 *    it, exit), and do not log the same failure again.
 *  - A function with a message buffer does not log: its caller decides
 *    (the daemon logs the message, a tool prints "PROGRAM: message" on
 *    stderr).  Pure modules (parsers, checks) never log.
 *  - A tool's exit status is what its man page documents, not an errno. */
#ifndef IC_ERROR_H
#define IC_ERROR_H

#include <errno.h>

/* -errno after a failed library call, or fallback when the library failed
 * without setting errno (stdio, some allocators). */
static inline int ic_neg_errno(int fallback)
{
    return errno > 0 ? -errno : -fallback;
}

#endif
