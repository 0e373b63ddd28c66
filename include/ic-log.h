/* Logging: stderr in the foreground, syslog (daemon facility) when daemonized.
 * One line per event; callers must pass URLs through url_mask() first. */
#ifndef IC_LOG_H
#define IC_LOG_H

#include <syslog.h>

#include "ic-error.h" /* who logs a failure, and how often */

void log_init(const char *ident, int debug);
/* Switch to syslog (called once the daemon is up). */
void log_use_syslog(int on);
/* A daemon still starting: syslog and stderr both, so start-up lines reach
 * the terminal that started it and the system log (boot-time mounts). */
void log_daemon_starting(void);
int log_debug_enabled(void);
void ic_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) ic_log(LOG_ERR, __VA_ARGS__)
#define log_warn(...) ic_log(LOG_WARNING, __VA_ARGS__)
#define log_info(...) ic_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                         \
    do {                                                                       \
        if (log_debug_enabled())                                               \
            ic_log(LOG_DEBUG, __VA_ARGS__);                                    \
    } while (0)

#endif
