/* libFuzzer harness: the block manifest parser (manifest_open_mem and the
 * accessors, ic-manifest.h).
 *
 * The input is a manifest file, as imgcache-manifest writes it (the seeds
 * in corpus/manifest/ are such files).  Each input is opened three ways,
 * each from an exact-size heap copy so that AddressSanitizer sees a read
 * one byte past the end:
 *   1. as it is;
 *   2. with its last 32 bytes replaced by the SHA-256 of the rest, so the
 *      checks behind the trailer checksum are reached by mutated headers;
 *   3. "repaired": the input's first 64 bytes as the header, but nblocks
 *      set to ceil(file_size / block_size) when the block size is valid
 *      (file_size capped so that there are at most 4096 blocks), the
 *      input's remaining bytes as the entries (zero-padded or cut to
 *      exactly nblocks entries) and a correct trailer: the accessors run on
 *      accepted manifests of every shape the other header fields allow.
 * Promises checked: an accepted manifest's fields obey the format (block
 * size a power of two in range, nblocks = ceil(size / bs), length exact,
 * no flag but MANIFEST_F_MTIME, the template mtime read back as written
 * and only with its flag),
 * every entry reads back as the bytes at its place with zero entries
 * reported as such, indexes past the end give -ERANGE; a refused one gives
 * -EINVAL, no manifest, and a one-line message. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "ic-manifest.h"

#define MAX_REPAIRED_BLOCKS 4096

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static void wr64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

static void check_accepted(const struct manifest *m, const uint8_t *buf,
                           size_t len)
{
    uint64_t size = manifest_file_size(m), n = manifest_nblocks(m);
    uint32_t bs = manifest_block_size(m);
    uint8_t h[MANIFEST_HASH_LEN], sum[MANIFEST_HASH_LEN];

    FUZZ_CHECK(len >= MANIFEST_HEADER_LEN + MANIFEST_HASH_LEN);
    FUZZ_CHECK(memcmp(buf, MANIFEST_MAGIC, 8) == 0);
    FUZZ_CHECK(rd32(buf + 8) == MANIFEST_VERSION);
    FUZZ_CHECK(rd32(buf + 12) == MANIFEST_HASH_SHA256);
    uint32_t flags = rd32(buf + 28);
    FUZZ_CHECK((flags & ~MANIFEST_F_MTIME) == 0);
    FUZZ_CHECK(all_zero(buf + 48, 16));
    int64_t mt = 7;
    FUZZ_CHECK(manifest_template_mtime(m, &mt) ==
               ((flags & MANIFEST_F_MTIME) != 0));
    if (flags & MANIFEST_F_MTIME)
        FUZZ_CHECK((uint64_t)mt == rd64(buf + 40));
    else
        FUZZ_CHECK(mt == 7 && all_zero(buf + 40, 8));
    FUZZ_CHECK(manifest_template_mtime(m, NULL) ==
               ((flags & MANIFEST_F_MTIME) != 0));
    FUZZ_CHECK(size == rd64(buf + 16) && bs == rd32(buf + 24) &&
               n == rd64(buf + 32));
    FUZZ_CHECK(bs >= MANIFEST_MIN_BLOCK && bs <= MANIFEST_MAX_BLOCK &&
               (bs & (bs - 1)) == 0);
    FUZZ_CHECK(n == size / bs + (size % bs != 0));
    FUZZ_CHECK(n == (len - MANIFEST_HEADER_LEN - MANIFEST_HASH_LEN) /
                        MANIFEST_HASH_LEN &&
               (len - MANIFEST_HEADER_LEN) % MANIFEST_HASH_LEN == 0);
    manifest_hash(buf, len - MANIFEST_HASH_LEN, sum);
    FUZZ_CHECK(memcmp(sum, buf + len - MANIFEST_HASH_LEN, sizeof sum) == 0);

    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *e = buf + MANIFEST_HEADER_LEN + i * MANIFEST_HASH_LEN;
        memset(h, 0xa5, sizeof h);
        int rc = manifest_entry(m, i, h);
        if (all_zero(e, MANIFEST_HASH_LEN)) {
            FUZZ_CHECK(rc == 1);
        } else {
            FUZZ_CHECK(rc == 0);
            FUZZ_CHECK(memcmp(h, e, sizeof h) == 0);
        }
    }
    FUZZ_CHECK(manifest_entry(m, n, h) == -ERANGE);
    FUZZ_CHECK(manifest_entry(m, n + 1, h) == -ERANGE);
    FUZZ_CHECK(manifest_entry(m, UINT64_MAX, h) == -ERANGE);
}

/* Open an exact-size copy of p; check what comes back. */
static void open_one(const uint8_t *p, size_t len)
{
    char err[256];
    struct manifest *m = (struct manifest *)err; /* must be replaced */
    uint8_t *buf = malloc(len ? len : 1);

    if (buf == NULL)
        return;
    memcpy(buf, p, len);
    err[0] = '\0';
    int rc = manifest_open_mem(buf, len, &m, err, sizeof err);
    if (rc == 0) {
        FUZZ_CHECK(m != NULL);
        check_accepted(m, buf, len);
        manifest_close(m);
    } else {
        FUZZ_CHECK(rc == -EINVAL || rc == -ENOMEM);
        FUZZ_CHECK(m == NULL);
        FUZZ_CHECK(err[0] != '\0' && fuzz_terminated(err, sizeof err));
        FUZZ_CHECK(strchr(err, '\n') == NULL);
    }
    /* A NULL message buffer changes nothing but the message. */
    int rc2 = manifest_open_mem(buf, len, &m, NULL, 0);
    FUZZ_CHECK(rc2 == rc);
    manifest_close(m);
    free(buf);
}

static void resigned(const uint8_t *p, size_t len)
{
    if (len < MANIFEST_HASH_LEN)
        return;
    uint8_t *b = malloc(len);
    if (b == NULL)
        return;
    memcpy(b, p, len);
    manifest_hash(b, len - MANIFEST_HASH_LEN, b + len - MANIFEST_HASH_LEN);
    open_one(b, len);
    free(b);
}

static void repaired(const uint8_t *p, size_t len)
{
    uint8_t hdr[MANIFEST_HEADER_LEN] = {0};
    size_t hl = len < sizeof hdr ? len : sizeof hdr;

    memcpy(hdr, p, hl);
    uint32_t bs = rd32(hdr + 24);
    uint64_t size = rd64(hdr + 16), n = rd64(hdr + 32);
    if (bs != 0 && (bs & (bs - 1)) == 0 && bs >= MANIFEST_MIN_BLOCK &&
        bs <= MANIFEST_MAX_BLOCK) {
        size %= (uint64_t)bs * MAX_REPAIRED_BLOCKS + 1;
        wr64(hdr + 16, size);
        n = size / bs + (size % bs != 0);
        wr64(hdr + 32, n);
    } else if (n > MAX_REPAIRED_BLOCKS) {
        n %= MAX_REPAIRED_BLOCKS + 1;
    }
    size_t total = MANIFEST_HEADER_LEN + (size_t)n * MANIFEST_HASH_LEN +
                   MANIFEST_HASH_LEN;
    uint8_t *b = calloc(1, total);
    if (b == NULL)
        return;
    memcpy(b, hdr, sizeof hdr);
    size_t rest = len - hl, ent = (size_t)n * MANIFEST_HASH_LEN;
    memcpy(b + MANIFEST_HEADER_LEN, p + hl, rest < ent ? rest : ent);
    manifest_hash(b, total - MANIFEST_HASH_LEN, b + total - MANIFEST_HASH_LEN);
    open_one(b, total);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    open_one(data, size);
    resigned(data, size);
    repaired(data, size);
    return 0;
}
