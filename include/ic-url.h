/* Locations as text (paths and URLs); no I/O, no state. */
#ifndef IC_URL_H
#define IC_URL_H

#include <stddef.h>

/* Join a directory location and a file name (path or URL; for a URL the
 * name goes before any query string).  malloc'd, or NULL. */
char *url_join(const char *dir, const char *name);

/* Copy url into out with userinfo and query string replaced by "***". */
void url_mask(const char *url, char *out, size_t outlen);

#endif
