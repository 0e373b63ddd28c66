/* Shared option handling of the tools (contract in ic-tool.h). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ic-conf.h"
#include "ic-tool.h"

int tool_opt(struct tool_opts *t, int c, const char *arg,
             void (*usage)(FILE *))
{
    switch (c) {
    case 'c':
        t->config = arg;
        return 0;
    case 'C':
        t->cache_dir = arg;
        return 0;
    case 'h':
        usage(stdout);
        return 1;
    case 'V':
        printf("%s %s\n", t->prog, PACKAGE_VERSION);
        return 1;
    default:
        return -EINVAL;
    }
}

int tool_cache_dir(const struct tool_opts *t, struct conf **cf, char *dir,
                   size_t len)
{
    const char *path = t->config;
    struct conf *c = NULL;
    char err[1024];

    if (cf != NULL)
        *cf = NULL;
    /* Without --config the default file is optional: a host may run the
     * tools on a cache_dir given by hand. */
    if (path == NULL && access(CONF_DEFAULT_PATH, F_OK) == 0)
        path = CONF_DEFAULT_PATH;
    if (path != NULL && (cf != NULL || t->cache_dir == NULL) &&
        conf_load(path, &c, err, sizeof err) < 0) {
        fprintf(stderr, "%s: %s\n", t->prog, err);
        return -EINVAL;
    }
    const char *d = t->cache_dir ? t->cache_dir
                    : c          ? c->cache_dir
                                 : CONF_DEFAULT_CACHE_DIR;
    int n = snprintf(dir, len, "%s", d);
    if (n < 0 || (size_t)n >= len) {
        fprintf(stderr, "%s: cache directory name too long\n", t->prog);
        conf_free(c);
        return -ENAMETOOLONG;
    }
    if (cf != NULL)
        *cf = c;
    else
        conf_free(c);
    return 0;
}
