/* Configuration parser for imgcache.conf(5); the contract is in ic-conf.h.
 *
 * Hand-written rather than libinih: we need '#' comments anywhere on a line,
 * repeatable keys (mirror), and the exact line of every error, including
 * errors only detectable when a section ends (missing origin). */
#include "config.h"

#include "ic-conf.h"
#include "ic-block.h"
#include "ic-proxyspec.h"
#include "ic-util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define NAME_MAX_BYTES 255
/* A config is a few KiB; the cap only stops e.g. /dev/zero eating memory. */
#define CONF_MAX_BYTES (64u << 20)
/* Room for a user string in a message: 255 bytes, some masked, plus "...". */
#define MASK_LEN 320

#define DEF_ORIGIN_TIMEOUT_MS 30000u
#define DEF_CONNECT_TIMEOUT_MS 5000u
#define DEF_REVALIDATE_MS 60000u
#define DEF_MAX_CONNECTIONS 4u
#define MAX_CONNECTIONS 64u
#define DEF_FILE_MODE 0444u

/* Where a key may appear; also the kind of the section being parsed. */
enum { IN_GLOBAL = 1, IN_TEMPLATE = 2, IN_DIRECTORY = 4 };
#define IN_SOURCE (IN_TEMPLATE | IN_DIRECTORY)
#define IN_ANY (IN_GLOBAL | IN_SOURCE)

/* Key ids double as bit numbers in the per-section "seen" masks. */
enum key_id {
    K_CACHE_DIR, K_CACHE_MAX, K_MIN_FREE, K_DATA_DIRECT_IO, K_DIRECT_FILL,
    K_READAHEAD, K_OWNER,
    K_GROUP, K_MODE, K_BLOCK_SIZE, K_ORIGIN, K_QUOTA, K_PIN, K_MIRROR,
    K_PROXY, K_CA_FILE, K_NETRC, K_ORIGIN_TIMEOUT, K_CONNECT_TIMEOUT,
    K_REVALIDATE, K_MAX_CONNECTIONS, K_REQUIRE_STRONG_ETAG, K_FOLLOW_SYMLINKS,
    K_MANIFEST,
    K_ORIGIN_CONNECTIONS, K_WARM_RATE, K_PREWARM, K_KERNEL_READAHEAD,
    K_COUNT
};
#define KBIT(k) (1u << (k))
_Static_assert(K_COUNT <= 32, "seen masks are 32-bit");

struct parser {
    struct conf *c;
    const char *file;
    char *err;
    size_t errlen;
    int line;
    int where;          /* IN_* kind of the current section, 0 before any */
    unsigned seen;      /* KBIT()s of keys given in the current section */
    unsigned *src_seen; /* each source's `seen`, kept for the final merge */
    int global_line;    /* line of the [global] header, 0 if none yet */
};

struct key_def {
    const char *name;
    int where;      /* IN_* mask of sections accepting the key */
    int repeatable; /* may be given more than once in a section */
    int empty_ok;   /* an empty value means something (proxy: none) */
    int (*set)(struct parser *p, const char *key, const char *val);
};

/* ------------------------------------------------------------ messages
 * Every refusal is fail(): the "FILE:LINE: " message and -EINVAL, so a
 * setter can `return fail(...)` and its callers hand the result on. */

static int __attribute__((format(printf, 2, 3)))
fail(struct parser *p, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!p->err || !p->errlen)
        return -EINVAL;
    n = snprintf(p->err, p->errlen, "%s:%d: ", p->file, p->line);
    if (n < 0 || (size_t)n >= p->errlen)
        return -EINVAL; /* already truncated; snprintf terminated it */
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int oom(struct parser *p)
{
    fail(p, "out of memory");
    return -ENOMEM;
}

/* Copy of a user string fit for a message: control bytes become \xNN so a
 * config cannot forge log lines or send terminal escapes; long input is cut
 * with "...". */
static const char *mask(const char *in, char *out, size_t outlen)
{
    size_t o = 0;

    for (; *in; in++) {
        unsigned char ch = (unsigned char)*in;
        int ctl = ch < 0x20 || ch == 0x7f;
        if (o + (ctl ? 4 : 1) + 4 > outlen) {
            memcpy(out + o, "...", 4);
            return out;
        }
        if (ctl)
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", ch);
        else
            out[o++] = (char)ch;
    }
    out[o] = '\0';
    return out;
}

static const char *kind_name(enum conf_kind k)
{
    return k == CONF_TEMPLATE ? "template" : "directory";
}

/* ------------------------------------------------------------ helpers */

static char *trim(char *s)
{
    char *e;

    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        e--;
    *e = '\0';
    return s;
}

static int has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

/* NULL if the name is a valid template name, else why not. */
static const char *name_problem(const char *s)
{
    size_t n = strlen(s);

    if (n == 0)
        return "empty";
    if (n > NAME_MAX_BYTES)
        return "longer than 255 bytes";
    if (!strcmp(s, ".") || !strcmp(s, ".."))
        return "'.' and '..' are not file names";
    if (strchr(s, '/'))
        return "contains '/'";
    if (has_ctl(s))
        return "contains a control character";
    return NULL;
}

int conf_name_valid(const char *name)
{
    return name && !name_problem(name);
}

int conf_origin_is_http(const char *origin)
{
    return origin && (!strncasecmp(origin, "http://", 7) ||
                      !strncasecmp(origin, "https://", 8));
}

/* An origin or mirror: absolute path, or an http(s) URL with a host part. */
static int location_ok(const char *s)
{
    if (s[0] == '/')
        return 1;
    if (!conf_origin_is_http(s))
        return 0;
    /* "http://" is 7 bytes, "https://" 8; something must follow. */
    return s[(s[4] == ':') ? 7 : 8] != '\0';
}

static struct conf_source *cur_src(struct parser *p)
{
    return &p->c->src[p->c->nsrc - 1];
}

static struct conf_net *cur_net(struct parser *p)
{
    return p->where == IN_GLOBAL ? &p->c->net : &cur_src(p)->net;
}

static int set_string(struct parser *p, char **dst, const char *val)
{
    char *s = strdup(val);

    if (!s)
        return oom(p);
    free(*dst);
    *dst = s;
    return 0;
}

static int push_string(char ***arr, size_t *n, const char *val)
{
    char **a = realloc(*arr, (*n + 1) * sizeof *a);

    if (!a)
        return -ENOMEM;
    *arr = a;
    if (!(a[*n] = strdup(val)))
        return -ENOMEM;
    (*n)++;
    return 0;
}

/* ------------------------------------------------------------ value parsers */

static int get_size(struct parser *p, const char *key, const char *val,
                    uint64_t *out)
{
    char m[MASK_LEN];

    if (parse_size(val, out) < 0)
        return fail(p, "bad size '%s' for key '%s'", mask(val, m, sizeof m),
                    key);
    return 0;
}

static int get_duration(struct parser *p, const char *key, const char *val,
                        int zero_ok, uint64_t *out)
{
    char m[MASK_LEN];

    if (parse_duration_ms(val, out) < 0)
        return fail(p, "bad duration '%s' for key '%s'",
                    mask(val, m, sizeof m), key);
    if (!zero_ok && *out == 0)
        return fail(p, "%s must be greater than 0", key);
    return 0;
}

/* Digits only, into an unsigned long; -EINVAL on anything else or
 * overflow (the callers' messages say what the key wants). */
static int get_ulong(const char *val, int base, unsigned long *out)
{
    char *end;

    if (!isdigit((unsigned char)val[0]))
        return -EINVAL;
    errno = 0;
    *out = strtoul(val, &end, base);
    return (*end || errno) ? -EINVAL : 0;
}

/* ------------------------------------------------------------ [global] keys */

static int set_cache_dir(struct parser *p, const char *key, const char *val)
{
    (void)key;
    if (val[0] != '/')
        return fail(p, "cache_dir must be an absolute path");
    return set_string(p, &p->c->cache_dir, val);
}

static int set_cache_max(struct parser *p, const char *key, const char *val)
{
    return get_size(p, key, val, &p->c->cache_max);
}

/* A size, or "N%" of the cache filesystem with N a whole number 0..100. */
static int set_min_free(struct parser *p, const char *key, const char *val)
{
    char num[32], m[MASK_LEN];
    size_t n = strlen(val);
    unsigned long pct = 0;
    int ok;

    if (val[n - 1] != '%') {
        p->c->min_free_pct = 0;
        return get_size(p, key, val, &p->c->min_free);
    }
    ok = n <= sizeof num;
    if (ok) {
        memcpy(num, val, n - 1);
        num[n - 1] = '\0';
        ok = get_ulong(num, 10, &pct) == 0 && pct <= 100;
    }
    if (!ok)
        return fail(p, "bad min_free '%s': a percentage must be from 0%% "
                       "to 100%%", mask(val, m, sizeof m));
    p->c->min_free = pct;
    p->c->min_free_pct = 1;
    return 0;
}

static int get_bool(struct parser *p, const char *key, const char *val,
                    int *out)
{
    char m[MASK_LEN];
    int b = parse_bool(val);

    if (b < 0)
        return fail(p, "bad boolean '%s' for key '%s' (use yes or no)",
                    mask(val, m, sizeof m), key);
    *out = b;
    return 0;
}

static int set_data_direct_io(struct parser *p, const char *key,
                              const char *val)
{
    return get_bool(p, key, val, &p->c->data_direct_io);
}

static int set_direct_fill(struct parser *p, const char *key, const char *val)
{
    return get_bool(p, key, val, &p->c->direct_fill);
}

static int set_prewarm(struct parser *p, const char *key, const char *val)
{
    return get_bool(p, key, val, &p->c->prewarm);
}

static int set_readahead(struct parser *p, const char *key, const char *val)
{
    return get_size(p, key, val, &p->c->readahead);
}

static int set_owner(struct parser *p, const char *key, const char *val)
{
    (void)key;
    return set_string(p, &p->c->owner, val);
}

static int set_group(struct parser *p, const char *key, const char *val)
{
    (void)key;
    return set_string(p, &p->c->group, val);
}

/* Permission bits only; the mount is read-only, so write bits would lie. */
static int set_mode(struct parser *p, const char *key, const char *val)
{
    char m[MASK_LEN];
    unsigned long mode;

    (void)key;
    if (get_ulong(val, 8, &mode) < 0 || mode > 0777)
        return fail(p, "bad mode '%s': expected octal permission bits such "
                       "as 0444", mask(val, m, sizeof m));
    if (mode & 0222)
        return fail(p, "mode %04lo would allow writes; the mount is "
                       "read-only", mode);
    p->c->file_mode = (unsigned)mode;
    return 0;
}

/* ------------------------------------------------------------ shared keys */

static int set_block_size(struct parser *p, const char *key, const char *val)
{
    char m[MASK_LEN];
    uint64_t bs;
    int rc = get_size(p, key, val, &bs);

    if (rc < 0)
        return rc;
    if (!block_size_valid(bs))
        return fail(p, "block_size '%s' must be a power of two from 4K to 16M",
                    mask(val, m, sizeof m));
    if (p->where == IN_GLOBAL)
        p->c->block_size = (uint32_t)bs;
    else
        cur_src(p)->block_size = (uint32_t)bs;
    return 0;
}

static int set_origin(struct parser *p, const char *key, const char *val)
{
    (void)key;
    /* The value is never echoed: a URL may carry credentials. */
    if (!location_ok(val))
        return fail(p, "origin must be an absolute path or an http(s) URL");
    if (has_ctl(val))
        return fail(p, "origin contains a control character");
    return set_string(p, &cur_src(p)->origin, val);
}

static int set_mirror(struct parser *p, const char *key, const char *val)
{
    struct conf_net *net = cur_net(p);

    (void)key;
    if (!location_ok(val))
        return fail(p, "mirror must be an absolute path or an http(s) URL");
    if (has_ctl(val))
        return fail(p, "mirror contains a control character");
    if (push_string(&net->mirrors, &net->nmirrors, val) < 0)
        return oom(p);
    return 0;
}

static int set_quota(struct parser *p, const char *key, const char *val)
{
    return get_size(p, key, val, &cur_src(p)->quota);
}

/* Stored raw: the pin syntax is parsed where pins are applied. */
static int set_pin(struct parser *p, const char *key, const char *val)
{
    (void)key;
    return set_string(p, &cur_src(p)->pin, val);
}

/* auto (the default: the origin's location + MANIFEST_SUFFIX), none, or
 * the manifest's own location (a [template] only: a [directory]'s files
 * each have their own). */
static int set_manifest(struct parser *p, const char *key, const char *val)
{
    struct conf_source *s = cur_src(p);
    (void)key;
    free(s->manifest);
    s->manifest = NULL;
    if (strcmp(val, "auto") == 0) {
        s->manifest_mode = CONF_MANIFEST_AUTO;
        return 0;
    }
    if (strcmp(val, "none") == 0) {
        s->manifest_mode = CONF_MANIFEST_NONE;
        return 0;
    }
    if (s->kind == CONF_DIRECTORY)
        return fail(p, "manifest in a [directory] must be auto or none");
    if (!location_ok(val))
        return fail(p, "manifest must be auto, none, an absolute path or "
                       "an http(s) URL");
    if (has_ctl(val))
        return fail(p, "manifest contains a control character");
    s->manifest_mode = CONF_MANIFEST_URL;
    return set_string(p, &s->manifest, val);
}

/* Checked here (file:line on a bad list), kept as written: the origin
 * parses it again into its routes (ic-proxy.h). */
static int set_proxy(struct parser *p, const char *key, const char *val)
{
    struct proxyspec ps;
    char why[256];

    (void)key;
    int rc = proxyspec_parse(val, &ps, why, sizeof why);
    proxyspec_free(&ps);
    if (rc == -ENOMEM)
        return oom(p);
    if (rc < 0)
        return fail(p, "proxy: %s", why);
    return set_string(p, &cur_net(p)->proxy, val);
}

static int set_ca_file(struct parser *p, const char *key, const char *val)
{
    (void)key;
    return set_string(p, &cur_net(p)->ca_file, val);
}

static int set_netrc(struct parser *p, const char *key, const char *val)
{
    (void)key;
    return set_string(p, &cur_net(p)->netrc, val);
}

static int set_origin_timeout(struct parser *p, const char *key,
                              const char *val)
{
    return get_duration(p, key, val, 0, &cur_net(p)->origin_timeout_ms);
}

static int set_connect_timeout(struct parser *p, const char *key,
                               const char *val)
{
    return get_duration(p, key, val, 0, &cur_net(p)->connect_timeout_ms);
}

/* 0 is allowed: revalidate on every open. */
static int set_revalidate(struct parser *p, const char *key, const char *val)
{
    return get_duration(p, key, val, 1, &cur_net(p)->revalidate_ms);
}

static int set_require_strong_etag(struct parser *p, const char *key,
                                   const char *val)
{
    return get_bool(p, key, val, &cur_net(p)->require_strong_etag);
}

/* origin_connections, and max_connections, its older name. */
static int set_max_connections(struct parser *p, const char *key,
                               const char *val)
{
    char m[MASK_LEN];
    unsigned long n;

    if ((p->seen & KBIT(K_ORIGIN_CONNECTIONS)) &&
        (p->seen & KBIT(K_MAX_CONNECTIONS)))
        return fail(p, "max_connections is the old name of "
                       "origin_connections: give only one of them");
    if (get_ulong(val, 10, &n) < 0)
        return fail(p, "bad number '%s' for key '%s'", mask(val, m, sizeof m),
                    key);
    if (n < 1 || n > MAX_CONNECTIONS)
        return fail(p, "%s must be from 1 to %u", key, MAX_CONNECTIONS);
    cur_net(p)->max_connections = (unsigned)n;
    return 0;
}

static int set_warm_rate(struct parser *p, const char *key, const char *val)
{
    int rc = get_size(p, key, val, &p->c->warm_rate);
    if (rc == 0 && p->c->warm_rate != 0 &&
        (p->c->warm_rate < WARM_RATE_MIN || p->c->warm_rate > WARM_RATE_MAX))
        return fail(p, "warm_rate must be 0 (unlimited) or from 64K to 1T "
                       "(bytes per second)");
    return rc;
}

static int set_kernel_readahead(struct parser *p, const char *key,
                                const char *val)
{
    int rc = get_size(p, key, val, &p->c->kernel_readahead);
    if (rc == 0 && (p->c->kernel_readahead % 4096 != 0 ||
                    p->c->kernel_readahead > CONF_KERNEL_READAHEAD_MAX))
        return fail(p, "kernel_readahead must be 0 (the kernel's) or a "
                       "multiple of 4K up to 64M");
    return rc;
}

static int set_follow_symlinks(struct parser *p, const char *key,
                               const char *val)
{
    return get_bool(p, key, val, &cur_src(p)->follow_symlinks);
}

/* Indexed by enum key_id. */
static const struct key_def keys[K_COUNT] = {
    [K_CACHE_DIR] = {"cache_dir", IN_GLOBAL, 0, 0, set_cache_dir},
    [K_CACHE_MAX] = {"cache_max", IN_GLOBAL, 0, 0, set_cache_max},
    [K_MIN_FREE] = {"min_free", IN_GLOBAL, 0, 0, set_min_free},
    [K_DATA_DIRECT_IO] = {"data_direct_io", IN_GLOBAL, 0, 0, set_data_direct_io},
    [K_DIRECT_FILL] = {"direct_fill", IN_GLOBAL, 0, 0, set_direct_fill},
    [K_READAHEAD] = {"readahead", IN_GLOBAL, 0, 0, set_readahead},
    [K_OWNER] = {"owner", IN_GLOBAL, 0, 0, set_owner},
    [K_GROUP] = {"group", IN_GLOBAL, 0, 0, set_group},
    [K_MODE] = {"mode", IN_GLOBAL, 0, 0, set_mode},
    [K_BLOCK_SIZE] = {"block_size", IN_ANY, 0, 0, set_block_size},
    [K_ORIGIN] = {"origin", IN_SOURCE, 0, 0, set_origin},
    [K_QUOTA] = {"quota", IN_SOURCE, 0, 0, set_quota},
    [K_PIN] = {"pin", IN_SOURCE, 0, 0, set_pin},
    [K_MIRROR] = {"mirror", IN_ANY, 1, 0, set_mirror},
    [K_PROXY] = {"proxy", IN_ANY, 0, 1, set_proxy},
    [K_CA_FILE] = {"ca_file", IN_ANY, 0, 0, set_ca_file},
    [K_NETRC] = {"netrc", IN_ANY, 0, 0, set_netrc},
    [K_ORIGIN_TIMEOUT] = {"origin_timeout", IN_ANY, 0, 0, set_origin_timeout},
    [K_CONNECT_TIMEOUT] = {"connect_timeout", IN_ANY, 0, 0, set_connect_timeout},
    [K_REVALIDATE] = {"revalidate", IN_ANY, 0, 0, set_revalidate},
    [K_MAX_CONNECTIONS] = {"max_connections", IN_ANY, 0, 0, set_max_connections},
    [K_ORIGIN_CONNECTIONS] = {"origin_connections", IN_ANY, 0, 0,
                              set_max_connections},
    [K_WARM_RATE] = {"warm_rate", IN_GLOBAL, 0, 0, set_warm_rate},
    [K_KERNEL_READAHEAD] = {"kernel_readahead", IN_GLOBAL, 0, 0,
                            set_kernel_readahead},
    [K_PREWARM] = {"prewarm", IN_GLOBAL, 0, 0, set_prewarm},
    [K_REQUIRE_STRONG_ETAG] = {"require_strong_etag", IN_ANY, 0, 0,
                               set_require_strong_etag},
    [K_FOLLOW_SYMLINKS] = {"follow_symlinks", IN_DIRECTORY, 0, 0,
                           set_follow_symlinks},
    [K_MANIFEST] = {"manifest", IN_SOURCE, 0, 0, set_manifest},
};

/* The key's id, or -ENOENT for a key we do not know. */
static int find_key(const char *name)
{
    for (int i = 0; i < K_COUNT; i++)
        if (!strcmp(keys[i].name, name))
            return i;
    return -ENOENT;
}

/* ------------------------------------------------------------ sections */

/* "[global]" or "[template NAME]", for messages. */
static const char *section_label(struct parser *p, char *buf, size_t len)
{
    if (p->where == IN_GLOBAL)
        return "[global]";
    snprintf(buf, len, "[%s %s]", kind_name(cur_src(p)->kind),
             cur_src(p)->name);
    return buf;
}

/* Checks only possible once a section is complete; keeps its seen mask. */
static int close_section(struct parser *p)
{
    struct conf_source *s;
    int line = p->line;

    if (!(p->where & IN_SOURCE))
        return 0;
    s = cur_src(p);
    p->src_seen[p->c->nsrc - 1] = p->seen;
    if (s->origin && s->follow_symlinks && conf_origin_is_http(s->origin)) {
        p->line = s->line;
        int rc = fail(p, "directory '%s': follow_symlinks applies to a path "
                         "origin only", s->name);
        p->line = line;
        return rc;
    }
    if (s->origin)
        return 0;
    p->line = s->line; /* the operator looks for the header */
    int rc = fail(p, "%s '%s' has no origin", kind_name(s->kind), s->name);
    p->line = line;
    return rc;
}

static int open_global(struct parser *p, const char *name)
{
    if (*name)
        return fail(p, "[global] takes no name");
    if (p->global_line)
        return fail(p, "duplicate [global] section (first defined at line %d)",
                    p->global_line);
    p->global_line = p->line;
    p->where = IN_GLOBAL;
    p->seen = 0;
    return 0;
}

static int check_source_name(struct parser *p, enum conf_kind kind,
                             const char *name)
{
    char m[MASK_LEN];
    const char *why = name_problem(name);

    if (!*name)
        return fail(p, "missing name: expected [%s NAME]", kind_name(kind));
    if (why)
        return fail(p, "invalid %s name '%s': %s", kind_name(kind),
                    mask(name, m, sizeof m), why);
    for (size_t i = 0; i < p->c->nsrc; i++) {
        const struct conf_source *s = &p->c->src[i];
        if (s->kind == kind && !strcmp(s->name, name))
            return fail(p, "duplicate %s '%s' (first defined at line %d)",
                        kind_name(kind), name, s->line);
    }
    return 0;
}

/* Room for one more source in both src and src_seen. */
static int grow_sources(struct parser *p)
{
    size_t n = p->c->nsrc + 1;
    struct conf_source *src = realloc(p->c->src, n * sizeof *src);
    unsigned *seen;

    if (!src)
        return -ENOMEM;
    p->c->src = src;
    seen = realloc(p->src_seen, n * sizeof *seen);
    if (!seen)
        return -ENOMEM;
    p->src_seen = seen;
    return 0;
}

static int open_source(struct parser *p, enum conf_kind kind, const char *name)
{
    struct conf_source *s;
    int rc = check_source_name(p, kind, name);

    if (rc < 0)
        return rc;
    if (grow_sources(p) < 0)
        return oom(p);
    s = &p->c->src[p->c->nsrc];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->line = p->line;
    if (!(s->name = strdup(name)))
        return oom(p);
    p->c->nsrc++;
    p->where = kind == CONF_TEMPLATE ? IN_TEMPLATE : IN_DIRECTORY;
    p->seen = 0;
    return 0;
}

/* "[kind NAME]", comment and outer blanks already stripped. */
static int parse_header(struct parser *p, char *line)
{
    char m[MASK_LEN];
    size_t n = strlen(line);
    char *kind, *name;
    int rc;

    if (line[n - 1] != ']')
        return fail(p, "expected ']' at the end of the section header");
    line[n - 1] = '\0';
    kind = trim(line + 1);
    for (name = kind; *name && !isspace((unsigned char)*name); name++)
        ;
    if (*name)
        *name++ = '\0';
    name = trim(name);
    if ((rc = close_section(p)) < 0)
        return rc;
    if (!strcmp(kind, "global"))
        return open_global(p, name);
    if (!strcmp(kind, "template"))
        return open_source(p, CONF_TEMPLATE, name);
    if (!strcmp(kind, "directory"))
        return open_source(p, CONF_DIRECTORY, name);
    return fail(p, "unknown section kind '%s' (expected global, template or "
                   "directory)", mask(kind, m, sizeof m));
}

static int parse_pair(struct parser *p, char *line)
{
    char m[MASK_LEN], lab[MASK_LEN + 16];
    char *eq = strchr(line, '='), *key, *val;
    int k;

    if (!eq)
        return fail(p, "expected 'key = value'");
    *eq = '\0';
    key = trim(line);
    val = trim(eq + 1);
    if (!*key)
        return fail(p, "expected 'key = value'");
    if (!p->where)
        return fail(p, "key '%s' before any section header",
                    mask(key, m, sizeof m));
    k = find_key(key);
    if (k < 0)
        return fail(p, "unknown key '%s' in %s", mask(key, m, sizeof m),
                    section_label(p, lab, sizeof lab));
    if (!(keys[k].where & p->where))
        return fail(p, "key '%s' is not allowed in %s", key,
                    section_label(p, lab, sizeof lab));
    if (!keys[k].repeatable && (p->seen & KBIT(k)))
        return fail(p, "duplicate key '%s'", key);
    if (!*val && !keys[k].empty_ok)
        return fail(p, "missing value for key '%s'", key);
    p->seen |= KBIT(k);
    return keys[k].set(p, key, val);
}

static int parse_line(struct parser *p, char *line)
{
    char *hash = strchr(line, '#');

    if (hash)
        *hash = '\0';
    line = trim(line); /* also drops the '\r' of CRLF files */
    if (!*line)
        return 0;
    if (*line == '[')
        return parse_header(p, line);
    return parse_pair(p, line);
}

/* buf holds len bytes plus one spare byte, so every line can be terminated
 * in place, even a last one without '\n'. */
static int parse_lines(struct parser *p, char *buf, size_t len)
{
    size_t off = 0;

    if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3))
        off = 3; /* UTF-8 byte order mark from some editors */
    while (off < len) {
        char *line = buf + off;
        char *nl = memchr(line, '\n', len - off);
        size_t n = nl ? (size_t)(nl - line) : len - off;

        p->line++;
        if (memchr(line, '\0', n))
            return fail(p, "NUL byte in line");
        line[n] = '\0';
        int rc = parse_line(p, line);
        if (rc < 0)
            return rc;
        off += n + 1;
    }
    return 0;
}

/* ------------------------------------------------------------ merge */

static int copy_opt(char **dst, const char *src)
{
    if (!src)
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : -ENOMEM;
}

/* Fill what a section did not set from [global]; the global section may
 * come after the templates, which is why this runs at the end.  0 or
 * -ENOMEM. */
static int merge_net(struct conf_net *dst, const struct conf_net *g,
                     unsigned seen)
{
    if (!(seen & KBIT(K_ORIGIN_TIMEOUT)))
        dst->origin_timeout_ms = g->origin_timeout_ms;
    if (!(seen & KBIT(K_CONNECT_TIMEOUT)))
        dst->connect_timeout_ms = g->connect_timeout_ms;
    if (!(seen & KBIT(K_REVALIDATE)))
        dst->revalidate_ms = g->revalidate_ms;
    if (!(seen & (KBIT(K_MAX_CONNECTIONS) | KBIT(K_ORIGIN_CONNECTIONS))))
        dst->max_connections = g->max_connections;
    if (!(seen & KBIT(K_REQUIRE_STRONG_ETAG)))
        dst->require_strong_etag = g->require_strong_etag;
    if ((!(seen & KBIT(K_PROXY)) && copy_opt(&dst->proxy, g->proxy) < 0) ||
        (!(seen & KBIT(K_CA_FILE)) && copy_opt(&dst->ca_file, g->ca_file) < 0) ||
        (!(seen & KBIT(K_NETRC)) && copy_opt(&dst->netrc, g->netrc) < 0))
        return -ENOMEM;
    if (dst->nmirrors)
        return 0; /* the section's own list replaces the global one */
    /* Copies, so conf_free can free every source's list on its own. */
    for (size_t i = 0; i < g->nmirrors; i++)
        if (push_string(&dst->mirrors, &dst->nmirrors, g->mirrors[i]) < 0)
            return -ENOMEM;
    return 0;
}

static int finish(struct parser *p)
{
    struct conf *c = p->c;
    int rc = close_section(p);

    if (rc < 0)
        return rc;
    if (!c->cache_dir && !(c->cache_dir = strdup(CONF_DEFAULT_CACHE_DIR)))
        return oom(p);
    for (size_t i = 0; i < c->nsrc; i++) {
        if (!(p->src_seen[i] & KBIT(K_BLOCK_SIZE)))
            c->src[i].block_size = c->block_size;
        if (merge_net(&c->src[i].net, &c->net, p->src_seen[i]) < 0)
            return oom(p);
    }
    return 0;
}

/* ------------------------------------------------------------ entry points */

static struct conf *conf_new(const char *name)
{
    struct conf *c = calloc(1, sizeof *c);

    if (!c)
        return NULL;
    if (!(c->path = strdup(name))) {
        free(c);
        return NULL;
    }
    c->block_size = IC_BS_DEFAULT;
    c->readahead = CONF_DEFAULT_READAHEAD;
    c->kernel_readahead = CONF_DEFAULT_KERNEL_READAHEAD;
    c->direct_fill = 1;
    c->prewarm = 1;
    c->file_mode = DEF_FILE_MODE;
    c->net.origin_timeout_ms = DEF_ORIGIN_TIMEOUT_MS;
    c->net.connect_timeout_ms = DEF_CONNECT_TIMEOUT_MS;
    c->net.revalidate_ms = DEF_REVALIDATE_MS;
    c->net.max_connections = DEF_MAX_CONNECTIONS;
    return c;
}

/* Takes buf (len bytes + 1 spare), parses it in place. */
static int parse_buf(char *buf, size_t len, const char *name,
                     struct conf **out, char *err, size_t errlen)
{
    struct parser p = {.file = name, .err = err, .errlen = errlen};
    int rc;

    *out = NULL;
    if (!(p.c = conf_new(name)))
        rc = oom(&p);
    else if ((rc = parse_lines(&p, buf, len)) == 0)
        rc = finish(&p);
    free(p.src_seen);
    if (rc < 0)
        conf_free(p.c);
    else
        *out = p.c;
    return rc;
}

int conf_parse_string(const char *text, const char *name, struct conf **out,
                      char *err, size_t errlen)
{
    size_t len = strlen(text);
    char *buf = malloc(len + 1);
    int rc;

    if (!buf) {
        *out = NULL;
        if (err && errlen)
            snprintf(err, errlen, "%s: out of memory", name);
        return -ENOMEM;
    }
    memcpy(buf, text, len + 1);
    rc = parse_buf(buf, len, name, out, err, errlen);
    free(buf);
    return rc;
}

/* Whole file into *bufp, malloc'd (NUL bytes included, so they can be
 * reported) with one spare byte.  0 or -errno (-EFBIG past the cap). */
static int read_all(int fd, char **bufp, size_t *lenp)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap), *nb;
    ssize_t r;
    int rc = -ENOMEM;

    while (buf) {
        if (len + 1 == cap) {
            if (cap > CONF_MAX_BYTES) {
                rc = -EFBIG;
                break;
            }
            if (!(nb = realloc(buf, cap * 2))) {
                rc = -ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        r = read(fd, buf + len, cap - 1 - len);
        if (r == 0) {
            *bufp = buf;
            *lenp = len;
            return 0;
        }
        if (r > 0) {
            len += (size_t)r;
        } else if (errno != EINTR) {
            rc = -errno;
            break;
        }
    }
    free(buf);
    return rc;
}

int conf_load(const char *path, struct conf **out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc;
    size_t len = 0;
    char *buf = NULL;

    if (fd < 0) {
        rc = -errno;
    } else {
        rc = read_all(fd, &buf, &len);
        close(fd);
    }
    if (rc < 0) {
        *out = NULL;
        if (err && errlen)
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(-rc));
        return rc;
    }
    rc = parse_buf(buf, len, path, out, err, errlen);
    free(buf);
    return rc;
}

static void net_free(struct conf_net *n)
{
    for (size_t i = 0; i < n->nmirrors; i++)
        free(n->mirrors[i]);
    free(n->mirrors);
    free(n->proxy);
    free(n->ca_file);
    free(n->netrc);
}

void conf_free(struct conf *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nsrc; i++) {
        free(c->src[i].name);
        free(c->src[i].origin);
        free(c->src[i].pin);
        free(c->src[i].manifest);
        net_free(&c->src[i].net);
    }
    free(c->src);
    net_free(&c->net);
    free(c->path);
    free(c->cache_dir);
    free(c->owner);
    free(c->group);
    free(c);
}
