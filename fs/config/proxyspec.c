/* The `proxy` option's syntax; the contract is in ic-proxyspec.h. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ic-proxyspec.h"

static const char blanks[] = " \t";

/* One name of a group, blanks trimmed: [*s, *s + *n). */
static void trim(const char **s, size_t *n)
{
    while (*n > 0 && strchr(blanks, (*s)[0]) != NULL) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && strchr(blanks, (*s)[*n - 1]) != NULL)
        (*n)--;
}

static int is_direct(const char *s, size_t n)
{
    return n == 6 && strncasecmp(s, "DIRECT", 6) == 0;
}

/* Whether a proxy name looks like one libcurl takes: no blanks inside
 * and, when it names a scheme, one curl speaks to a proxy. */
static const char *bad_name(const char *s, size_t n)
{
    static const char *const schemes[] = {"http://", "https://", "socks4://",
                                          "socks4a://", "socks5://",
                                          "socks5h://"};
    for (size_t i = 0; i < n; i++)
        if (s[i] == ' ' || s[i] == '\t' || (unsigned char)s[i] < 0x20)
            return "contains a blank or a control character";
    const char *sep = memmem(s, n, "://", 3);
    if (sep == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof schemes / sizeof *schemes; i++)
        if (strncasecmp(s, schemes[i], strlen(schemes[i])) == 0)
            return (size_t)(sep - s) + 3 < n ? NULL : "has no host";
    return "has a scheme other than http, https, socks4(a) or socks5(h)";
}

/* A name as an error may show it: user:password@ as "***@" (the config
 * parser's messages are logged; url_mask is a layer above). */
static void shown(const char *s, size_t n, char *out, size_t outlen)
{
    const char *sep = memmem(s, n, "://", 3);
    size_t host = sep != NULL ? (size_t)(sep - s) + 3 : 0, at = n;

    for (size_t i = host; i < n && s[i] != '/'; i++)
        if (s[i] == '@')
            at = i;
    if (at < n)
        snprintf(out, outlen, "%.*s***%.*s", (int)host, s,
                 (int)(n - at > 200 ? 200 : n - at), s + at);
    else
        snprintf(out, outlen, "%.*s", (int)(n > 200 ? 200 : n), s);
}

int proxyspec_parse(const char *s, struct proxyspec *out, char *err,
                    size_t errlen)
{
    memset(out, 0, sizeof *out);
    err[0] = '\0';
    const char *p = s;
    size_t left = strlen(s);
    trim(&p, &left);
    if (left == 0) {
        out->direct = 1; /* "proxy =": none, not even the environment's */
        return 0;
    }
    unsigned g = 0;
    for (;;) {
        size_t glen = strcspn(p, ";");
        const char *gend = p + glen;
        size_t members = 0;
        const char *m = p;
        for (;;) {
            size_t mlen = strcspn(m, "|;");
            const char *name = m;
            size_t n = mlen;
            trim(&name, &n);
            if (n == 0) {
                snprintf(err, errlen, "empty proxy name in group %u", g + 1);
                return -EINVAL;
            }
            if (is_direct(name, n)) {
                if (members > 0 || m[mlen] == '|') {
                    snprintf(err, errlen, "DIRECT cannot be part of a "
                             "'|' group (group %u)", g + 1);
                    return -EINVAL;
                }
                if (*gend != '\0') {
                    snprintf(err, errlen, "DIRECT must be the last group");
                    return -EINVAL;
                }
                out->direct = 1;
                return 0;
            }
            const char *why = bad_name(name, n);
            if (why != NULL) {
                char masked[256];
                shown(name, n, masked, sizeof masked);
                snprintf(err, errlen, "proxy '%s' %s", masked, why);
                return -EINVAL;
            }
            if (out->n == PROXYSPEC_MAX) {
                snprintf(err, errlen, "more than %d proxies", PROXYSPEC_MAX);
                return -EINVAL;
            }
            out->url[out->n] = strndup(name, n);
            if (out->url[out->n] == NULL)
                return -ENOMEM;
            out->group[out->n++] = g;
            members++;
            m += mlen;
            if (*m != '|')
                break;
            m++;
        }
        g++;
        out->ngroups = g;
        if (*gend == '\0')
            return 0;
        p = gend + 1;
    }
}

void proxyspec_free(struct proxyspec *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        free(ps->url[i]);
    memset(ps, 0, sizeof *ps);
}
