/* The engine as a whole: start it on a configuration, reload it, stop it.
 * What it serves is in ic-cache.h. */
#ifndef IC_ENGINE_H
#define IC_ENGINE_H

struct cache;
struct conf;

/* Start the engine: create cache_dir, open the index, stat every origin,
 * pick each template's generation and load its present blocks, start the
 * index writer.  Templates whose origin is unreachable and unknown to the
 * index are left out with a warning; a [directory] that cannot be listed
 * keeps the templates it listed last.  0 or -errno (logged). */
int engine_open(struct conf *conf, struct cache **out);
/* Start background work once the mount is up: config pins, periodic
 * saving of counters.  0 or -errno. */
int engine_start_housekeeping(struct cache *c);
/* Commit what is queued for the index and _exit(status) without freeing
 * (threads that cannot be stopped still use the templates). */
void engine_flush_and_exit(struct cache *c, int status)
    __attribute__((noreturn));
/* Commit the index and free everything. */
void engine_close(struct cache *c);

/* Re-read the config (SIGHUP): add new templates, hide removed ones
 * (open handles keep working), apply new quotas.  The new config pins
 * are applied after it returns, by the housekeeping thread (they may read
 * the origin), which logs "config pins applied" when they are.  An invalid
 * config is logged with FILE:LINE and the running one kept.  Called from
 * one thread at a time.  0 or -errno. */
int engine_reload(struct cache *c, const char *path);

#endif
