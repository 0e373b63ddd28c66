/* Origin dispatch and helpers shared by the backends. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ic-conf.h"
#include "ic-log.h"
#include "ic-origin.h"

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

/* For a URL the name goes before any query string: the query often
 * carries a token that must stay at the end (…/dir/NAME?tok=x). */
char *origin_join(const char *dir, const char *name)
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

static int list_local_dir(const char *path, char ***names)
{
    DIR *d = opendir(path);
    size_t n = 0;
    struct dirent *de;

    *names = NULL;
    if (d == NULL)
        return -errno;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        /* Hidden files are skipped: editors and rsync use them as temps. */
        if (fstatat(dirfd(d), de->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (!conf_name_valid(de->d_name)) {
            log_warn("%s: skipping file with an invalid template name", path);
            continue;
        }
        if (add_name(names, &n, de->d_name) < 0)
            break;
    }
    closedir(d);
    return (int)n;
}

int origin_list_dir(const char *location, const struct conf_net *net,
                    char ***names)
{
    if (conf_origin_is_http(location))
        return origin_http_list(location, net, names);
    return list_local_dir(location, names);
}

/* Replace [scheme://]user:pass@ and ?query with *** so logs never carry
 * credentials or signed-URL tokens. */
void origin_mask_url(const char *url, char *out, size_t outlen)
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
