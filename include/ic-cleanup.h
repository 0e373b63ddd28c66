/* Scope-bound cleanup helpers (gnu11 __attribute__((cleanup))). */
#ifndef IC_CLEANUP_H
#define IC_CLEANUP_H

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static inline void ic_cleanup_free(void *p) { free(*(void **)p); }
static inline void ic_cleanup_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}
static inline void ic_cleanup_unlock(pthread_mutex_t **m)
{
    if (*m)
        pthread_mutex_unlock(*m);
}

#define CLEANUP_FREE __attribute__((cleanup(ic_cleanup_free)))
#define CLEANUP_CLOSE __attribute__((cleanup(ic_cleanup_close)))

#define IC_CONCAT_(a, b) a##b
#define IC_CONCAT(a, b) IC_CONCAT_(a, b)
/* Holds the mutex until the end of the enclosing scope. */
#define LOCK_FOR_SCOPE(m)                                                      \
    pthread_mutex_t *IC_CONCAT(ic_lock_, __LINE__)                             \
        __attribute__((cleanup(ic_cleanup_unlock))) = (m);                     \
    pthread_mutex_lock(IC_CONCAT(ic_lock_, __LINE__))

#define WARN_UNUSED __attribute__((warn_unused_result))

#endif
