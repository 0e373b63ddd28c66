/* Fill buffers: page-aligned (for O_DIRECT) and recycled; fills and FUSE
 * replies use them.
 *
 * Why recycle: a fill or a reply touches every byte of a fresh buffer, and a fresh
 * anonymous page costs a fault and its clearing -- on a VM whose guest
 * memory the host backs lazily, several times the cost of the copy itself.
 * Buffers of up to FILLBUF_SIZE come from a small pool of mappings of that
 * size; larger ones (a block size over 4M) are mapped and unmapped each
 * time, small ones (up to FILLBUF_SMALL) come from malloc's heap.  Idle
 * pool buffers are returned to the system by fillbuf_trim, so the
 * daemon's RSS follows its load.
 *
 * Locking: pool_lock (fillbuf.c) protects the pool: its list, its count
 * and the header of each buffer in it.  A leaf, held for a few pointer
 * moves, never across mmap or munmap; callers may hold locks of their own
 * (origin-file.c frees an abandoned job's buffer under its lock). */
#ifndef IC_FILLBUF_H
#define IC_FILLBUF_H

#include <stdint.h>

#define FILLBUF_SIZE (4u << 20) /* the largest fill (FILL_MAX_BYTES) */
#define FILLBUF_SMALL (128u << 10) /* up to this, from malloc's heap */

/* A buffer of at least len bytes, 4096-aligned; NULL when out of memory. */
char *fillbuf_get(uint64_t len);
/* Give back a buffer from fillbuf_get (NULL is ignored). */
void fillbuf_put(char *buf);
/* Unmap pool buffers idle for longer than max_idle_ms. */
void fillbuf_trim(uint64_t now_ms, uint64_t max_idle_ms);
/* Pool buffers now idle (for tests). */
unsigned fillbuf_idle(void);

#endif
