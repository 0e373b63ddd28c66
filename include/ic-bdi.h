/* The mount's backing device (the kernel's bdi): its readahead.
 *
 * Why: a buffered reader of the mount (QEMU with cache=writeback, cp, dd,
 * imgcache's own users of the page cache) gets kernel readahead of the
 * bdi's read_ahead_kb, 128 KiB for a FUSE mount, so a sequential read
 * reaches the daemon as 128 KiB requests.  Each request costs a round
 * trip through /dev/fuse and its context switches: at 1 MiB, eight times
 * fewer (measured: the daemon's CPU per GiB of a cold read, cache on
 * tmpfs, 2.4-2.8 s against 3.1-3.8 at 128 KiB).  The kernel's readahead
 * starts small and grows only while a stream stays sequential, so random
 * readers do not read more; but a stream that stops has had up to the
 * window more fetched (ic-conf.h: hence off by default).  FUSE's INIT can only lower the bdi's
 * readahead, and it is set on mount to 128 KiB: it is raised through
 * sysfs once INIT is done, i.e. from the first request after it.
 *
 * Errors: 0 or -errno (ic-error.h); the caller logs and goes on (a
 * container's read-only sysfs, an unprivileged daemon: the kernel's
 * readahead stays). */
#ifndef IC_BDI_H
#define IC_BDI_H

#include <stddef.h>
#include <stdint.h>

/* The "MAJOR:MINOR" of the imgcache filesystem (type fuse.imgcache)
 * mounted on mnt (an absolute path, as the kernel has it), from
 * /proc/self/mountinfo: the last such mount there.
 * 0, -ENOENT when nothing is mounted on mnt, -ENAMETOOLONG, -errno. */
int bdi_of_mount(const char *mnt, char *out, size_t len);
/* Set the readahead of bdi (a bdi_of_mount name) to bytes (a multiple of
 * 4K).  0 or -errno. */
int bdi_set_readahead(const char *bdi, uint64_t bytes);

#endif
