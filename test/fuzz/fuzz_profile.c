/* libFuzzer harness: pin specs and boot profiles (ic-pinspec.h).
 *
 * The input is split at its first NUL: the part before is a pin spec,
 * the part after is profile text (without a NUL, both get the whole
 * input).  Each parser must return 0 with well-formed results or -EINVAL
 * with a message and nothing returned; the range-set helpers then run on
 * what the profile gave. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "ic-pinspec.h"

#define PROFILE_NAME "fuzz.prof"

static void check_items(const struct pin_item *it, size_t n)
{
    FUZZ_CHECK(n == 0 || it != NULL);
    for (size_t i = 0; i < n; i++) {
        switch (it[i].kind) {
        case PIN_RANGE:
            FUZZ_CHECK(it[i].len > 0);
            FUZZ_CHECK(it[i].len <= UINT64_MAX - it[i].off); /* no wrap */
            FUZZ_CHECK(it[i].path == NULL);
            break;
        case PIN_PROFILE:
            FUZZ_CHECK(it[i].path != NULL && it[i].path[0] != '\0');
            FUZZ_CHECK(strchr(it[i].path, ',') == NULL);
            break;
        case PIN_QCOW2:
            FUZZ_CHECK(it[i].path == NULL);
            break;
        default:
            FUZZ_CHECK(!"unknown pin kind");
        }
    }
}

static void fuzz_spec(const uint8_t *p, size_t len)
{
    char err[256];
    struct pin_item *it = (struct pin_item *)&err; /* must be replaced */
    size_t n = 99;
    char *spec = fuzz_strndup(p, len);

    if (spec == NULL)
        return;
    err[0] = '\0';
    int rc = pinspec_parse(spec, &it, &n, err, sizeof err);
    if (rc == 0) {
        check_items(it, n);
        pinspec_free(it, n);
    } else {
        FUZZ_CHECK(rc == -EINVAL || rc == -ENOMEM);
        FUZZ_CHECK(it == NULL && n == 0);
        FUZZ_CHECK(err[0] != '\0' && fuzz_terminated(err, sizeof err));
    }
    free(spec);
}

/* After ranges_normalize: sorted, non-empty, neither overlapping nor
 * touching; and the block count cannot exceed the blocks of the file. */
static void check_normalized(struct byte_range *r, size_t n)
{
    const uint32_t bs = 65536;
    const uint64_t file_size = 10ull << 30;

    ranges_normalize(r, &n);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(r[i].len > 0);
        FUZZ_CHECK(r[i].len <= UINT64_MAX - r[i].off); /* clamped */
        if (i > 0)
            FUZZ_CHECK(r[i - 1].off + r[i - 1].len < r[i].off);
    }
    FUZZ_CHECK(ranges_block_count(r, n, bs, file_size) <=
               file_size / bs + (file_size % bs != 0));
}

static void fuzz_profile(const uint8_t *p, size_t len)
{
    char err[256];
    struct byte_range *r = (struct byte_range *)&err; /* must be replaced */
    size_t n = 99;
    /* An exact-size copy: the parser must not read past len. */
    char *text = malloc(len ? len : 1);

    if (text == NULL)
        return;
    memcpy(text, p, len);
    err[0] = '\0';
    int rc = profile_parse(text, len, PROFILE_NAME, &r, &n, err, sizeof err);
    if (rc == 0) {
        FUZZ_CHECK(n == 0 || r != NULL);
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(r[i].len <= UINT64_MAX - r[i].off); /* no wrap */
        check_normalized(r, n);
        free(r);
    } else {
        FUZZ_CHECK(rc == -EINVAL || rc == -ENOMEM);
        FUZZ_CHECK(r == NULL && n == 0);
        FUZZ_CHECK(fuzz_terminated(err, sizeof err));
        FUZZ_CHECK(strncmp(err, PROFILE_NAME ":", strlen(PROFILE_NAME) + 1) ==
                   0);
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);

    if (nul == NULL) {
        fuzz_spec(data, size);
        fuzz_profile(data, size);
        return 0;
    }
    fuzz_spec(data, (size_t)(nul - data));
    fuzz_profile(nul + 1, size - (size_t)(nul - data) - 1);
    return 0;
}
