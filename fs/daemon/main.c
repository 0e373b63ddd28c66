/* imgcache: argv + config -> FUSE session.
 *
 * Start-up order matters: the config is checked before anything else (exit
 * 2 on error), then we fork (unless -f) *before* any thread exists, and the
 * parent waits for the child to report that the mount is up, so every
 * start-up error still reaches the terminal and the exit status. */
#define FUSE_USE_VERSION 312
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <grp.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ic-cache.h"
#include "ic-engine.h"
#include "ic-conf.h"
#include "ic-ctl.h"
#include "ic-fuse-ops.h"
#include "ic-log.h"

struct opts {
    int foreground, debug, help, version, direct_io;
    char *config, *mountpoint;
    int nonopt;
};

enum { KEY_HELP, KEY_VERSION, KEY_FG, KEY_DEBUG };

static const struct fuse_opt opt_spec[] = {
    FUSE_OPT_KEY("-h", KEY_HELP),
    FUSE_OPT_KEY("--help", KEY_HELP),
    FUSE_OPT_KEY("-V", KEY_VERSION),
    FUSE_OPT_KEY("--version", KEY_VERSION),
    FUSE_OPT_KEY("-f", KEY_FG),
    FUSE_OPT_KEY("-d", KEY_DEBUG),
    {"direct_io", offsetof(struct opts, direct_io), 1},
    FUSE_OPT_END,
};

/* fuse_opt_proc_t's own results: -1 error (not an errno: fuse_opt_parse
 * takes any other negative value for "keep"), 0 discard, 1 keep. */
#define OPT_ERROR (-1)
#define OPT_DISCARD 0
#define OPT_KEEP 1

static int opt_proc(void *data, const char *arg, int key,
                    struct fuse_args *outargs)
{
    struct opts *o = data;
    switch (key) {
    case KEY_HELP: o->help = 1; return OPT_DISCARD;
    case KEY_VERSION: o->version = 1; return OPT_DISCARD;
    case KEY_FG: o->foreground = 1; return OPT_DISCARD;
    case KEY_DEBUG: o->debug = 1; return OPT_DISCARD;
    case FUSE_OPT_KEY_NONOPT:
        if (o->nonopt == 0)
            o->config = strdup(arg);
        else if (o->nonopt == 1)
            o->mountpoint = strdup(arg);
        else {
            fprintf(stderr, "imgcache: unexpected argument '%s'\n", arg);
            return OPT_ERROR;
        }
        o->nonopt++;
        return OPT_DISCARD;
    default:
        return OPT_KEEP; /* for FUSE (e.g. -o allow_other) */
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: imgcache [-f] [-d] [-o OPTS] CONFIG MOUNTPOINT\n"
            "\n"
            "Mount VM image templates through a persistent block cache.\n"
            "\n"
            "  -f              stay in the foreground, log to stderr\n"
            "  -d              log debug messages\n"
            "  -o direct_io    bypass the kernel page cache on every open\n"
            "  -o allow_other  let other users (e.g. qemu) use the mount\n"
            "  -o OPT          other FUSE mount options\n"
            "  -h, --help      this help\n"
            "  -V, --version   print the version\n"
            "\nSee imgcache(8) and imgcache.conf(5).\n");
}

/* The owner and group of the mount's files.  0, or -EINVAL for a name
 * that is no user or group (said on stderr: the daemon is not yet up). */
static int resolve_owner(const struct conf *c, struct ic_fs *fs)
{
    fs->uid = 0;
    fs->gid = 0;
    fs->mode = c->file_mode ? c->file_mode : 0444;
    if (c->owner) {
        struct passwd *pw = getpwnam(c->owner);
        char *end;
        unsigned long v = strtoul(c->owner, &end, 10);
        if (pw == NULL && *end != '\0') {
            fprintf(stderr, "imgcache: %s: unknown owner '%s'\n", c->path,
                    c->owner);
            return -EINVAL;
        }
        fs->uid = pw ? pw->pw_uid : (uid_t)v;
    }
    if (c->group) {
        struct group *gr = getgrnam(c->group);
        char *end;
        unsigned long v = strtoul(c->group, &end, 10);
        if (gr == NULL && *end != '\0') {
            fprintf(stderr, "imgcache: %s: unknown group '%s'\n", c->path,
                    c->group);
            return -EINVAL;
        }
        fs->gid = gr ? gr->gr_gid : (gid_t)v;
    }
    return 0;
}

/* Fork; the parent exits with the status the child reports on the pipe.
 * 0 in the child, or -errno (no child). */
static int daemon_fork(int *report_fd)
{
    int p[2];
    if (pipe(p) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return -e;
    }
    if (pid > 0) {
        unsigned char st = 1;
        close(p[1]);
        if (read(p[0], &st, 1) != 1)
            st = 1;
        _exit(st);
    }
    close(p[0]);
    setsid();
    *report_fd = p[1];
    return 0;
}

static void daemon_ready(int report_fd, unsigned char status)
{
    if (report_fd < 0)
        return;
    if (status == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
            if (null > 2)
                close(null);
        }
        log_use_syslog(1);
        if (chdir("/") < 0)
            log_warn("chdir /: %s", strerror(errno));
    }
    if (write(report_fd, &status, 1) != 1)
        log_warn("cannot report start-up status");
    close(report_fd);
}

/* SIGHUP: the handler only writes a byte to a pipe; a thread does the
 * reload, outside signal context. */
static int hup_pipe[2] = {-1, -1};

static void on_hup(int sig)
{
    char b = (char)sig;
    int saved = errno;
    if (write(hup_pipe[1], &b, 1) < 0) {
        /* pipe full: a reload is already pending */
    }
    errno = saved;
}

struct reloader {
    struct cache *c;
    const char *config;
    pthread_t th;
    int running;
};

static void *reload_main(void *arg)
{
    struct reloader *r = arg;
    char b[64];
    ssize_t n;
    /* Signals that queued up during a reload need one more reload, not one
     * each; a 0 byte (stop) among them ends at once. */
    while ((n = read(hup_pipe[0], b, sizeof b)) > 0) {
        if (memchr(b, 0, (size_t)n) != NULL)
            break;
        log_info("SIGHUP: reloading %s", r->config);
        engine_reload(r->c, r->config);
    }
    return NULL;
}

static void reloader_start(struct reloader *r)
{
    struct sigaction sa = {.sa_handler = on_hup};
    int e = pipe2(hup_pipe, O_CLOEXEC) < 0 ? errno : 0;
    /* pthread_create returns its error; it does not set errno. */
    if (e == 0 && (e = pthread_create(&r->th, NULL, reload_main, r)) != 0) {
        close(hup_pipe[0]);
        close(hup_pipe[1]);
    }
    if (e != 0) {
        log_warn("SIGHUP reload unavailable: %s", strerror(e));
        return;
    }
    r->running = 1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    /* Replaces libfuse's handler, which would unmount on SIGHUP. */
    sigaction(SIGHUP, &sa, NULL);
}

static void reloader_stop(struct reloader *r)
{
    char zero = 0;
    if (!r->running)
        return;
    signal(SIGHUP, SIG_IGN);
    if (write(hup_pipe[1], &zero, 1) == 1)
        pthread_join(r->th, NULL);
    close(hup_pipe[0]);
    close(hup_pipe[1]);
    r->running = 0;
}

/* Mount, serve until unmounted or signalled, unmount.  The process's exit
 * status: 0, or 1 when the session could not be set up or failed. */
static int run_session(struct fuse_args *args, struct ic_fs *fs,
                       const char *mnt, const char *config, int report_fd)
{
    struct fuse_session *se;
    struct reloader rl = {.c = fs->c, .config = config};
    int r = 1;

    se = fuse_session_new(args, &ic_fuse_ops, sizeof ic_fuse_ops, fs);
    if (se == NULL)
        return 1;
    fs->se = se;
    if (fuse_set_signal_handlers(se) != 0)
        goto out_destroy;
    if (fuse_session_mount(se, mnt) != 0)
        goto out_signals;
    struct tmpl **v;
    log_info("mounted %s with %zu templates", mnt, cache_snapshot(fs->c, &v));
    if (engine_start_housekeeping(fs->c) < 0)
        log_warn("cannot start housekeeping: counters are saved at exit only");
    reloader_start(&rl);
    struct ctl *ctl = NULL;
    if (ctl_start(fs->c, cache_conf(fs->c)->cache_dir, &ctl) < 0)
        log_warn("no control socket: imgcache-pin will not work");
    daemon_ready(report_fd, 0);
    struct fuse_loop_config *lc = fuse_loop_cfg_create();
    /* A read waits on its origin in the worker that took it, for at most
     * origin_timeout; a request finding no idle worker waits in the
     * kernel, before its deadline starts, and so does every stat, open
     * and read of the other templates behind it.  So there must always
     * be a worker to spare: IC_MAX_THREADS is far above what blocked
     * readers take (every background request the kernel lets through,
     * IC_MAX_BACKGROUND, and as many synchronous ones again).  Measured:
     * 200 readers blocked on a hung origin took 211 threads and 7 MB of
     * RSS more than idle (the buffers are mostly untouched); the threads
     * beyond a few idle ones exit after the burst. */
    fuse_loop_cfg_set_max_threads(lc, IC_MAX_THREADS);
    fuse_loop_cfg_set_idle_threads(lc, 8);
    /* A positive result is the signal (SIGTERM/SIGINT) that ended the
     * loop: a requested, clean shutdown. */
    int lr = fuse_session_loop_mt(se, lc);
    r = lr < 0;
    if (lr > 0)
        log_info("signal %d: unmounting", lr);
    fuse_loop_cfg_destroy(lc);
    /* A pre-warm still running after the grace period keeps using the
     * templates: then exit without freeing them (the index is committed
     * by the writer either way). */
    fs->busy = ctl_stop(ctl);
    reloader_stop(&rl);
    fuse_session_unmount(se);
    log_info("unmounted %s", mnt);
out_signals:
    fuse_remove_signal_handlers(se);
out_destroy:
    fuse_session_destroy(se);
    return r;
}

/* The exit status of imgcache(8): 0, 2 for a config it cannot use, 1 for
 * anything else. */
static int start(struct opts *o, struct conf *conf, struct fuse_args *args)
{
    struct ic_fs fs = {.force_direct_io = o->direct_io};
    int report_fd = -1, rc;

    if (resolve_owner(conf, &fs) < 0)
        return 2;
    if (!o->foreground && (rc = daemon_fork(&report_fd)) < 0) {
        fprintf(stderr, "imgcache: cannot fork: %s\n", strerror(-rc));
        return 1;
    }
    if (!o->foreground)
        log_daemon_starting();
    /* Everything we create is private: index.db holds origin URLs, which
     * may carry credentials.  Set before any thread exists. */
    umask(077);
    /* Read replies and fills use buffers of up to a few megabytes from up
     * to 64 threads: a few shared arenas keep the freed ones reused rather
     * than one arena's worth kept per thread.  (Forcing them into mmap
     * instead kept RSS lowest but cost 40% of cold read throughput in page
     * faults and page clearing.) */
    mallopt(M_ARENA_MAX, 4);
    if (engine_open(conf, &fs.c) < 0) {
        daemon_ready(report_fd, 1);
        return 1;
    }
    /* Read-only, and the kernel enforces the files' modes for us. */
    fuse_opt_add_arg(args, "-oro,default_permissions,fsname=imgcache,"
                           "subtype=imgcache");
    /* Resolved now: once mounted, resolving it asks the mount itself. */
    if (realpath(o->mountpoint, fs.mnt) == NULL)
        fs.mnt[0] = '\0';
    int r = run_session(args, &fs, o->mountpoint, o->config, report_fd);
    if (r != 0)
        daemon_ready(report_fd, 1);
    if (fs.busy > 0) {
        log_warn("%d control requests still running; exiting without "
                 "waiting for them", fs.busy);
        engine_flush_and_exit(fs.c, r);
    }
    engine_close(fs.c);
    return r;
}

int main(int argc, char **argv)
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct opts o = {0};
    struct conf *conf;
    char err[1024];

    if (fuse_opt_parse(&args, &o, opt_spec, opt_proc) != 0)
        return 2;
    if (o.help || o.version) {
        if (o.help)
            usage(stdout);
        else
            printf("imgcache %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (o.config == NULL || o.mountpoint == NULL) {
        usage(stderr);
        return 2;
    }
    log_init("imgcache", o.debug);
    if (conf_load(o.config, &conf, err, sizeof err) < 0) {
        fprintf(stderr, "imgcache: %s\n", err);
        return 2;
    }
    /* The daemon chdirs to /: keep an absolute path for SIGHUP reloads. */
    char *abs = realpath(o.config, NULL);
    if (abs != NULL) {
        free(o.config);
        o.config = abs;
    }
    int r = start(&o, conf, &args);
    conf_free(conf);
    fuse_opt_free_args(&args);
    free(o.config);
    free(o.mountpoint);
    return r;
}
