/* The `proxy` option's syntax (CernVM-FS's CVMFS_HTTP_PROXY): pure text,
 * no I/O, no state; the policy that uses it is in ic-proxy.h.
 *
 *   proxy = http://a:3128|http://b:3128;http://c:3128;DIRECT
 *
 * ';' separates groups, tried in order (fail-over); '|' separates the
 * proxies of one group, over which requests are spread (load balance).
 * DIRECT, alone as the last group, lets requests go straight to the
 * origin once every proxy before it has failed; without it a request
 * never goes direct.  Blanks around names are ignored.  A single URL
 * means what it always meant: that one proxy, never direct.  An empty
 * value (or DIRECT alone) means no proxy at all, the environment's
 * included. */
#ifndef IC_PROXYSPEC_H
#define IC_PROXYSPEC_H

#include <stddef.h>

#define PROXYSPEC_MAX 16 /* proxies in one value */

struct proxyspec {
    size_t n;                      /* proxies (DIRECT not counted) */
    char *url[PROXYSPEC_MAX];      /* as written: may hold credentials */
    unsigned group[PROXYSPEC_MAX]; /* group of each, 0.., nondecreasing */
    unsigned ngroups;              /* groups of proxies (DIRECT not counted) */
    int direct;                    /* may go direct after the last group */
};

/* Parse s into *out (freed with proxyspec_free, also after a failure).
 * 0, -EINVAL with the reason in err ("empty proxy name in group 2",
 * "DIRECT must be the last group", ...), or -ENOMEM. */
int proxyspec_parse(const char *s, struct proxyspec *out, char *err,
                    size_t errlen);
void proxyspec_free(struct proxyspec *ps);

#endif
