/* Locations as text: joining a directory location and a file name, and
 * masking what a URL must not show in logs.  Pure string functions, below
 * every origin backend. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ic-conf.h"
#include "ic-url.h"

/* For a URL the name goes before any query string: the query often
 * carries a token that must stay at the end (…/dir/NAME?tok=x). */
char *url_join(const char *dir, const char *name)
{
    const char *q = conf_origin_is_http(dir) ? strchr(dir, '?') : NULL;
    size_t n = q ? (size_t)(q - dir) : strlen(dir);
    char *s;
    int sep = n > 0 && dir[n - 1] == '/';
    if (asprintf(&s, "%.*s%s%s%s", (int)n, dir, sep ? "" : "/", name,
                 q ? q : "") < 0)
        return NULL;
    return s;
}

/* Replace [scheme://]user:pass@ and ?query with *** so logs never carry
 * credentials or signed-URL tokens. */
void url_mask(const char *url, char *out, size_t outlen)
{
    const char *p = strstr(url, "://");
    const char *host = p ? p + 3 : url;
    const char *slash = strchr(host, '/');
    const char *at = strchr(host, '@');
    const char *q = strchr(url, '?');
    size_t pos = 0;

    if (outlen == 0)
        return;
    out[0] = '\0';
    if (at != NULL && (slash == NULL || at < slash)) {
        pos += snprintf(out, outlen, "%.*s***@", (int)(host - url), url);
        url = at + 1;
        q = strchr(url, '?');
    }
    if (pos >= outlen)
        return;
    if (q != NULL)
        snprintf(out + pos, outlen - pos, "%.*s?***", (int)(q - url), url);
    else
        snprintf(out + pos, outlen - pos, "%s", url);
}
