/* Offload: hand one piece of CPU work to an idle helper thread, or do it
 * on the caller when no helper takes it in time.
 *
 * Why: a fill checks its bytes against the manifest (SHA-256, about
 * 0.6 ms per MiB on one CPU) while its reader waits; splitting a large
 * span over two CPUs halves that wait.  A thread created per span cost a
 * clone, a join and their context switches on every 2 MiB readahead job;
 * these helpers live as long as the process and sleep when idle.
 *
 * The promise: offload_wait returns only once the job's function has run
 * to its end, exactly once, on a helper or on the caller.  A job no helper
 * has taken yet when the caller comes to wait for it is taken back and run
 * by the caller: a busy (or absent) helper never makes a caller wait for
 * work it could do itself, so the caller waits at most for one job a
 * helper is already running.
 *
 * Helpers: started on the first post, one fewer than the CPUs online (at
 * least 1, at most OFFLOAD_MAX_HELPERS); if none can be started, every job
 * runs on its caller.
 *
 * Locking: offload.c's one mutex protects the queue and each job's state;
 * a leaf, never held while a job runs.  Jobs may run concurrently with
 * their caller and with each other: the function must not touch what the
 * caller is changing meanwhile. */
#ifndef IC_OFFLOAD_H
#define IC_OFFLOAD_H

#define OFFLOAD_MAX_HELPERS 3

struct offload_job {
    void (*fn)(void *arg);
    void *arg;
    /* private to offload.c */
    int state;
    struct offload_job *next;
};

/* Queue job (fn and arg set) for a helper.  The job must stay valid
 * until offload_wait(job) returns. */
void offload_post(struct offload_job *job);
/* Run the job here unless a helper took it; return once it has run.
 * Returns 1 when a helper ran it, 0 when the caller did. */
int offload_wait(struct offload_job *job);

#endif
