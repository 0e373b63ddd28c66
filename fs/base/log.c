/* Logging to stderr (foreground) or syslog (daemonized). */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ic-log.h"

static int use_syslog;
static int tee_stderr; /* also stderr: a daemon still starting */
static int debug_on;
static const char *log_ident = "imgcache";

void log_init(const char *ident, int debug)
{
    log_ident = ident;
    debug_on = debug;
    if (getenv("IMGCACHE_DEBUG") != NULL)
        debug_on = 1;
}

void log_use_syslog(int on)
{
    if (on && !use_syslog)
        openlog(log_ident, LOG_PID, LOG_DAEMON);
    use_syslog = on;
    tee_stderr = 0;
}

void log_daemon_starting(void)
{
    log_use_syslog(1);
    tee_stderr = 1;
}

int log_debug_enabled(void) { return debug_on; }

static const char *prio_name(int prio)
{
    switch (prio) {
    case LOG_ERR: return "error";
    case LOG_WARNING: return "warning";
    case LOG_DEBUG: return "debug";
    default: return "info";
    }
}

void ic_log(int prio, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (use_syslog) {
        syslog(prio, "%s", msg);
        if (!tee_stderr)
            return;
    }
    /* One fprintf per line so concurrent threads never interleave a line. */
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%02d:%02d:%02d.%03ld %s: %s: %s\n", tm.tm_hour,
            tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, log_ident,
            prio_name(prio), msg);
}
