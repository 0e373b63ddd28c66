/* FUSE low-level operations (fuse-ops.c is the only file that includes
 * fuse_lowlevel.h besides main.c). */
#ifndef IC_FUSE_OPS_H
#define IC_FUSE_OPS_H

#include <sys/types.h>

/* FUSE requests in flight that a hung origin may hold without the other
 * templates waiting (fuse-ops.c's init, main.c's session loop):
 * background requests the kernel sends us at once, and worker threads
 * (every background request, and as many synchronous ones again). */
#define IC_MAX_BACKGROUND 512
#define IC_MAX_THREADS 1024

struct cache;
struct fuse_session;

struct ic_fs {
    struct cache *c;
    int force_direct_io; /* -o direct_io: every open bypasses the page cache */
    uid_t uid;           /* owner of the files in the mount */
    gid_t gid;
    unsigned mode;       /* permission bits of the files, e.g. 0444 */
    struct fuse_session *se; /* for invalidation notices */
    int busy;            /* control requests still running at exit */
    char mnt[4096];      /* the mount point, absolute ("": unknown) */
    int ra_tuned;        /* atomic: the kernel's readahead was set */
};

struct fuse_lowlevel_ops;
extern const struct fuse_lowlevel_ops ic_fuse_ops;

#endif
