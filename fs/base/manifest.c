/* Block manifests (include/ic-manifest.h).  Stub: the real module follows. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ic-error.h"
#include "ic-manifest.h"
#include "ic-util.h"

struct manifest {
    uint64_t file_size;
    uint64_t nblocks;
    uint32_t block_size;
};

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

int manifest_open(const char *path, struct manifest **out, char *err, size_t errlen)
{
    *out = NULL;
    set_err(err, errlen, "manifests not implemented yet");
    return -ENOSYS;
}

int manifest_open_mem(const void *buf, size_t len, struct manifest **out,
                      char *err, size_t errlen)
{
    *out = NULL;
    set_err(err, errlen, "manifests not implemented yet");
    return -ENOSYS;
}

void manifest_close(struct manifest *m)
{
    (void)m;
}

uint64_t manifest_file_size(const struct manifest *m) { return m->file_size; }
uint32_t manifest_block_size(const struct manifest *m) { return m->block_size; }
uint64_t manifest_nblocks(const struct manifest *m) { return m->nblocks; }

int manifest_entry(const struct manifest *m, uint64_t idx, uint8_t out[MANIFEST_HASH_LEN])
{
    return -ENOSYS;
}

void manifest_hash(const void *buf, size_t len, uint8_t out[MANIFEST_HASH_LEN])
{
    memset(out, 0, MANIFEST_HASH_LEN);
}

bool manifest_is_zero(const void *buf, size_t len)
{
    return buf_is_zero(buf, len);
}

int manifest_build(int fd, uint32_t block_size, int threads, const char *out_path,
                   char *err, size_t errlen)
{
    set_err(err, errlen, "manifests not implemented yet");
    return -ENOSYS;
}
