/* Helpers shared by the libFuzzer harnesses of test/fuzz/.
 *
 * A harness defines LLVMFuzzerTestOneInput(); FUZZ_CHECK() states an
 * invariant and aborts (which libFuzzer reports as a crash, saving the
 * input) when it does not hold: assert() would vanish under NDEBUG.
 * struct fdp hands out the input piece by piece, like LLVM's C++
 * FuzzedDataProvider: fixed-size values from the front, and whatever is
 * left as a blob, so every prefix of an input is still a valid input. */
#ifndef IC_FUZZ_H
#define IC_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,         \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

struct fdp {
    const uint8_t *p;
    size_t n;
};

/* The next byte, or 0 once the input is used up. */
static inline uint8_t fdp_u8(struct fdp *f)
{
    if (f->n == 0)
        return 0;
    f->n--;
    return *f->p++;
}

/* The next k <= 8 bytes as a little-endian number (missing bytes are 0). */
static inline uint64_t fdp_uint(struct fdp *f, unsigned k)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < k; i++)
        v |= (uint64_t)fdp_u8(f) << (8 * i);
    return v;
}

/* A malloc'd, NUL-terminated copy of len bytes: an exact-size heap block,
 * so that AddressSanitizer sees any read past the end.  NULL: no memory. */
static inline char *fuzz_strndup(const uint8_t *p, size_t len)
{
    char *s = malloc(len + 1);
    if (s != NULL) {
        memcpy(s, p, len);
        s[len] = '\0';
    }
    return s;
}

/* Whether s is a NUL-terminated string within a buffer of len bytes. */
static inline int fuzz_terminated(const char *s, size_t len)
{
    return memchr(s, '\0', len) != NULL;
}

#endif
