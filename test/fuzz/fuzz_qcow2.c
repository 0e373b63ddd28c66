/* libFuzzer harness: the qcow2 metadata walker (qcow2_metadata_ranges,
 * ic-qcow2.h).
 *
 * The input is the image.  Each input is walked twice: as a file of
 * exactly its length, and as the start of a file 1 GiB longer whose
 * remaining bytes read as zeros (so tables may lie anywhere a real
 * template's could).  The walker must keep its read contract (inside the
 * file, at most QCOW2_READ_MAX per call) and return either well-formed
 * ranges or -EINVAL with a message. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "ic-qcow2.h"

#define EXTRA_SIZE (1ull << 30)

struct image {
    const uint8_t *data;
    size_t size;        /* bytes that exist */
    uint64_t file_size; /* bytes declared; the rest reads as zeros */
};

static int image_read(void *ctx, void *buf, uint64_t off, size_t len)
{
    const struct image *im = ctx;

    FUZZ_CHECK(len <= QCOW2_READ_MAX);
    FUZZ_CHECK(off <= im->file_size && len <= im->file_size - off);
    size_t have = off < im->size ? im->size - (size_t)off : 0;
    if (have > len)
        have = len;
    if (have > 0)
        memcpy(buf, im->data + off, have);
    memset((char *)buf + have, 0, len - have);
    return 0;
}

static uint32_t be32_at(const struct image *im, uint64_t off)
{
    uint8_t b[4];
    image_read((void *)im, b, off, sizeof b);
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
           b[3];
}

/* The promises of qcow2_metadata_ranges() on success. */
static void check_ranges(const struct image *im, const struct byte_range *r,
                         size_t n)
{
    uint32_t bits = be32_at(im, 20); /* cluster_bits: the header was valid */
    FUZZ_CHECK(bits >= 9 && bits <= 21);
    uint64_t cs = 1ull << bits;

    FUZZ_CHECK(n > 0 && r != NULL);
    FUZZ_CHECK(r[0].off == 0); /* the header cluster */
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(r[i].len > 0);
        FUZZ_CHECK(r[i].off < im->file_size);
        FUZZ_CHECK(r[i].len <= im->file_size - r[i].off);
        FUZZ_CHECK(r[i].off % cs == 0);
        FUZZ_CHECK(r[i].len % cs == 0 ||
                   r[i].off + r[i].len == im->file_size);
        if (i > 0) /* sorted, neither overlapping nor touching */
            FUZZ_CHECK(r[i - 1].off + r[i - 1].len < r[i].off);
    }
}

static void walk(const struct image *im)
{
    char err[256];
    struct byte_range *r = (struct byte_range *)&err; /* must be replaced */
    size_t n = 99;

    err[0] = '\0';
    int rc = qcow2_metadata_ranges(image_read, (void *)im, im->file_size, &r,
                                   &n, err, sizeof err);
    if (rc == 0) {
        check_ranges(im, r, n);
        free(r);
        return;
    }
    FUZZ_CHECK(rc == -EINVAL || rc == -ENOMEM);
    FUZZ_CHECK(r == NULL && n == 0);
    FUZZ_CHECK(err[0] != '\0' && fuzz_terminated(err, sizeof err));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct image im = {.data = data, .size = size, .file_size = size};

    walk(&im);
    im.file_size = size + EXTRA_SIZE;
    walk(&im);
    return 0;
}
