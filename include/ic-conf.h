/* Configuration file (imgcache.conf(5)): parse and validate.
 *
 * Syntax: INI.  Sections "[global]", "[template NAME]", "[directory NAME]".
 * "key = value" lines; '#' starts a comment anywhere outside a value's
 * quotes (there are no quotes: '#' always starts a comment); blank lines
 * ignored; keys and section kinds are case-sensitive, lower case.
 * A value may be a comma separated list where documented (pin).
 *
 * Every error is reported as "FILE:LINE: message" in the caller's buffer
 * and returned as -errno: -EINVAL for a config that is wrong, -ENOMEM, or
 * the errno that kept the file from being read.  Nothing here logs. */
#ifndef IC_CONF_H
#define IC_CONF_H

#include <stddef.h>
#include <stdint.h>

/* Where the tools look for a config when given none.  SYSCONFDIR is
 * configure's sysconfdir (AM_CPPFLAGS): /etc for the prefixes /usr and
 * /usr/local (configure.ac), else PREFIX/etc, unless --sysconfdir says. */
#define CONF_DEFAULT_PATH SYSCONFDIR "/imgcache/imgcache.conf"
#define CONF_DEFAULT_CACHE_DIR "/var/cache/imgcache"
#define CONF_DEFAULT_READAHEAD (16u << 20)
/* The kernel's readahead for buffered readers of the mount: 0 leaves the
 * kernel's (128K).  1M saves CPU (one FUSE request for eight) but its
 * requests look like demand reads to us: a buffered reader that stops
 * has had up to 1 MiB more fetched from the origin, outside readahead's
 * accounting (t-fleet, t-dir-away saw it), so it is the operator's
 * choice. */
#define CONF_DEFAULT_KERNEL_READAHEAD 0
#define CONF_KERNEL_READAHEAD_MAX (64u << 20)

enum conf_kind { CONF_TEMPLATE, CONF_DIRECTORY };

/* Origin access settings; [global] sets defaults, sections override. */
struct conf_net {
    char **mirrors;              /* "mirror", repeatable, tried in order */
    size_t nmirrors;
    char *proxy;                 /* "proxy" URL or NULL (curl env then) */
    char *ca_file;               /* "ca_file" */
    char *netrc;                 /* "netrc" path */
    uint64_t origin_timeout_ms;  /* "origin_timeout", default 30s */
    uint64_t connect_timeout_ms; /* "connect_timeout", default 5s */
    uint64_t revalidate_ms;      /* "revalidate", default 60s */
    unsigned max_connections;    /* "origin_connections" (or its old name
                                    "max_connections"), default 4: HTTP
                                    transfers in flight per host */
    int require_strong_etag;     /* "require_strong_etag" yes/no, default no */
};

struct conf_source {
    enum conf_kind kind;
    char *name;          /* template name or directory section name */
    char *origin;        /* path or http(s) URL (required) */
    uint64_t quota;      /* "quota" bytes, 0 = unlimited (per file for dirs) */
    uint32_t block_size; /* "block_size", defaults to global */
    char *pin;           /* "pin" raw value (comma list), NULL if none */
    struct conf_net net; /* merged: section values over global ones */
    /* [directory] "follow_symlinks" yes/no, default no: serve symlinks
     * that resolve to regular files inside the directory. */
    int follow_symlinks;
    /* "manifest" (imgcache.conf(5) BLOCK MANIFESTS): where the block
     * manifest of the template is, per generation. */
    int manifest_mode;   /* CONF_MANIFEST_*, default AUTO */
    char *manifest;      /* CONF_MANIFEST_URL: path or http(s) URL */
    int line;            /* line of the section header */
};
enum { CONF_MANIFEST_AUTO = 0, CONF_MANIFEST_NONE = 1, CONF_MANIFEST_URL = 2 };

struct conf {
    char *path;
    char *cache_dir;     /* "cache_dir", default /var/cache/imgcache */
    uint64_t cache_max;  /* "cache_max" bytes, 0 = unlimited */
    uint64_t min_free;   /* "min_free": bytes, or percent if min_free_pct */
    int min_free_pct;    /* 1 when min_free was given with '%' (0..100) */
    uint32_t block_size; /* "block_size", default 64K */
    int data_direct_io;  /* "data_direct_io" yes/no: open data files O_DIRECT */
    int direct_fill;     /* "direct_fill" yes/no: fills write O_DIRECT */
    char *owner;         /* "owner" user name or uid of mount files, NULL=0 */
    char *group;         /* "group" group name or gid, NULL=0 */
    unsigned file_mode;  /* "mode" octal, default 0444; write bits refused */
    struct conf_net net; /* global defaults */
    struct conf_source *src;
    size_t nsrc;
    uint64_t readahead;  /* "readahead": max sequential window, 0 = off */
    uint64_t kernel_readahead; /* "kernel_readahead": the mount's
                                  read_ahead_kb in bytes, 0 = the
                                  kernel's (fs/daemon/bdi.c) */
    uint64_t warm_rate;  /* "warm_rate": pre-warm bytes/s, 0 = unlimited,
                            else >= WARM_RATE_MIN */
    int prewarm;         /* "prewarm" yes/no (default yes): the daemon
                            fetches pinned blocks that are not present,
                            after start-up and each reload */
};
#define WARM_RATE_MIN (64u << 10)
/* ... and at most this (1T/s: far above any link; keeps the token
 * bucket's arithmetic in range). */
#define WARM_RATE_MAX (1ull << 40)

/* Parse a file.  0, or -errno with "FILE:LINE: message" (or
 * "FILE: cannot read: reason" for an unreadable file) in err. */
int conf_load(const char *path, struct conf **out, char *err, size_t errlen);
/* Same for text in memory; `name` is used as FILE in messages. */
int conf_parse_string(const char *text, const char *name, struct conf **out,
                      char *err, size_t errlen);
void conf_free(struct conf *c);

/* A template name: non-empty, <= 255 bytes, no '/', not "." or "..",
 * no control characters (bytes < 0x20 and 0x7f).  Returns 1 if valid. */
int conf_name_valid(const char *name);
/* Whether an origin string is an http:// or https:// URL. */
int conf_origin_is_http(const char *origin);

#endif
