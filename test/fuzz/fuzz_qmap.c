/* libFuzzer harness: the qcow2 guest map readahead follows
 * (qcow2_map_open, qcow2_l2_reverse, ic-qcow2.h; fs/engine/qmap.c builds
 * its host-to-guest array with them from the origin's bytes).
 *
 * Build (as `make fuzz` does; or by hand from the source tree, after
 * ./configure has written config.h):
 *   clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined \
 *     -fno-sanitize-recover=all -I. -Iinclude -Itest/fuzz \
 *     -o test/fuzz/fuzz_qmap test/fuzz/fuzz_qmap.c fs/config/qcow2.c \
 *     fs/config/pinspec.c fs/base/util.c
 * Run on a copy of the qcow2 seeds:
 *   cp -R test/fuzz/corpus/qcow2 /tmp/c-qmap
 *   test/fuzz/fuzz_qmap -max_total_time=300 -timeout=10 /tmp/c-qmap
 *
 * The input is the image, opened twice: as a file of exactly its length,
 * and as the start of a file 1 GiB longer whose remaining bytes read as
 * zeros (so an L1 may lie anywhere a real template's could).  Promises
 * checked: every read inside the file and at most QCOW2_READ_MAX; an
 * open returns 0, -EINVAL with a message, or -ENOMEM, and leaves no table
 * when it fails; on success cluster_bits is 9..21, l2e_bytes 8 or 16,
 * l2_entries = cluster size / l2e_bytes, and every L1 entry is 0 or a
 * cluster-aligned offset with a whole cluster inside the file.  Then
 * every L2 table named (the first 256) is reversed into an array of at
 * most 64 Ki host clusters, sized exactly (ASan sees a write past it),
 * and every entry set is a guest cluster + 1 that the table can map. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "ic-qcow2.h"

#define EXTRA_SIZE (1ull << 30)
#define MAX_REV (64u << 10)
#define MAX_TABLES 256

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

static void reverse_all(const struct image *im, const struct qcow2_map *m)
{
    uint64_t cs = 1ull << m->cluster_bits;
    uint64_t n = im->file_size / cs + (im->file_size % cs != 0);
    if (n > MAX_REV)
        n = MAX_REV;
    uint32_t *rev = calloc(n, sizeof *rev);
    uint8_t *l2 = malloc(cs);
    FUZZ_CHECK(rev != NULL && l2 != NULL);
    unsigned tables = 0;
    for (uint64_t i = 0; i < m->l1_size && tables < MAX_TABLES; i++) {
        if (m->l1[i] == 0)
            continue;
        tables++;
        /* qmap.c reads a table in one cluster-sized read; pieces here, as
         * the contract allows no more per call. */
        for (uint64_t done = 0; done < cs; done += QCOW2_READ_MAX) {
            uint64_t len = cs - done < QCOW2_READ_MAX ? cs - done
                                                      : QCOW2_READ_MAX;
            image_read((void *)im, l2 + done, m->l1[i] + done, (size_t)len);
        }
        memset(rev, 0, n * sizeof *rev);
        qcow2_l2_reverse(m, i, l2, rev, n);
        for (uint64_t h = 0; h < n; h++) {
            if (rev[h] == 0)
                continue;
            uint64_t guest = (uint64_t)rev[h] - 1;
            FUZZ_CHECK(guest >= i * m->l2_entries &&
                       guest < (i + 1) * m->l2_entries);
            FUZZ_CHECK(guest < UINT32_MAX - 1);
        }
    }
    free(l2);
    free(rev);
}

static void open_map(const struct image *im)
{
    char err[256];
    struct qcow2_map m;

    err[0] = '\0';
    memset(&m, 0xa5, sizeof m); /* must be overwritten */
    int rc = qcow2_map_open(image_read, (void *)im, im->file_size, &m, err,
                            sizeof err);
    if (rc != 0) {
        FUZZ_CHECK(rc == -EINVAL || rc == -ENOMEM);
        FUZZ_CHECK(m.l1 == NULL);
        FUZZ_CHECK(err[0] != '\0' && fuzz_terminated(err, sizeof err));
        qcow2_map_close(&m);
        return;
    }
    FUZZ_CHECK(m.cluster_bits >= 9 && m.cluster_bits <= 21);
    FUZZ_CHECK(m.l2e_bytes == 8 || m.l2e_bytes == 16);
    uint64_t cs = 1ull << m.cluster_bits;
    FUZZ_CHECK(m.l2_entries == cs / m.l2e_bytes);
    FUZZ_CHECK(m.l1_size <= QCOW2_MAX_L1_BYTES / 8);
    FUZZ_CHECK(m.l1_size == 0 || m.l1 != NULL);
    for (uint64_t i = 0; i < m.l1_size; i++) {
        uint64_t p = m.l1[i];
        FUZZ_CHECK(p % cs == 0);
        FUZZ_CHECK(p == 0 || (p < im->file_size && im->file_size - p >= cs));
    }
    reverse_all(im, &m);
    qcow2_map_close(&m);
    FUZZ_CHECK(m.l1 == NULL && m.l1_size == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct image im = {.data = data, .size = size, .file_size = size};

    open_map(&im);
    im.file_size = size + EXTRA_SIZE;
    open_map(&im);
    return 0;
}
