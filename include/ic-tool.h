/* What the command-line tools (tools/) share: the options each of them
 * takes, and which cache directory and config they work on.
 *
 * Every tool takes --config FILE, --cache-dir DIR, --help and --version
 * with the same meaning: cache_dir is --cache-dir, else the config's
 * cache_dir (--config, else CONF_DEFAULT_PATH when that file exists), else
 * CONF_DEFAULT_CACHE_DIR.  imgcache-report and imgcache-scrub spell them
 * -c/-C/-h/-V (TOOL_OPTSTRING, TOOL_LONGOPTS, TOOL_USAGE_*); imgcache-pin
 * keeps its older -d for --cache-dir.
 *
 * Messages go to stderr as "PROG: message".  Errors: 0 or -errno, the
 * message already printed.  Not thread-safe (getopt). */
#ifndef IC_TOOL_H
#define IC_TOOL_H

#include <getopt.h>
#include <stddef.h>
#include <stdio.h>

#include "ic-conf.h"

struct tool_opts {
    const char *prog;      /* "imgcache-report": message prefix */
    const char *config;    /* --config FILE, or NULL */
    const char *cache_dir; /* --cache-dir DIR, or NULL */
};

#define TOOL_OPTSTRING "c:C:hV"
#define TOOL_LONGOPTS                                                          \
    {"config", required_argument, NULL, 'c'},                                  \
        {"cache-dir", required_argument, NULL, 'C'},                           \
        {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}
/* The lines of --help for those options: first the two, last the two. */
#define TOOL_USAGE_DIRS                                                        \
    "  -c, --config FILE     imgcache.conf (default " CONF_DEFAULT_PATH       \
    " if present)\n"                                                           \
    "  -C, --cache-dir DIR   cache directory (overrides the config)\n"
#define TOOL_USAGE_HELP                                                        \
    "  -h, --help            this help\n"                                      \
    "  -V, --version         print the version\n"

/* Take option c of TOOL_LONGOPTS (optarg arg).  0 taken; 1 help (usage
 * printed to stdout) or version printed: exit 0; -EINVAL not one of ours. */
int tool_opt(struct tool_opts *t, int c, const char *arg,
             void (*usage)(FILE *));

/* The cache directory into dir (len bytes), as the header says.  With cf
 * not NULL the config is read even when --cache-dir is given (a tool that
 * wants its limits too) and handed back in *cf (NULL when there is none;
 * conf_free() it).  0, or -errno: the config cannot be read (-EINVAL), the
 * name is too long (-ENAMETOOLONG). */
int tool_cache_dir(const struct tool_opts *t, struct conf **cf, char *dir,
                   size_t len);

#endif
