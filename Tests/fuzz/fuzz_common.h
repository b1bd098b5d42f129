/* Shared helpers of the libhla fuzz harnesses (header-only; each harness is one translation unit). */
#ifndef HLA_FUZZ_COMMON_H
#define HLA_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hla.h"

/* Abort with a message: libFuzzer saves the input as a crash. */
#define FUZZ_FAIL(...)                                                   \
    do {                                                                 \
        fprintf(stderr, "FUZZ FAILURE (%s:%d): ", __FILE__, __LINE__);   \
        fprintf(stderr, __VA_ARGS__);                                    \
        fprintf(stderr, "\n  hla_last_error: %s\n", hla_last_error());   \
        abort();                                                         \
    } while (0)

#define FUZZ_CHECK(cond, ...) \
    do { if (!(cond)) FUZZ_FAIL(__VA_ARGS__); } while (0)

/* A byte reader over the fuzz input: past the end every read returns 0. */
typedef struct {
    const uint8_t *p;
    size_t n, o;
} reader;

static inline uint8_t rd_u8(reader *r) { return r->o < r->n ? r->p[r->o++] : 0; }
static inline uint16_t rd_u16(reader *r) { uint16_t a = rd_u8(r); return (uint16_t)(a | (uint16_t)rd_u8(r) << 8); }
static inline uint32_t rd_u32(reader *r) { uint32_t a = rd_u16(r); return a | (uint32_t)rd_u16(r) << 16; }
static inline uint64_t rd_u64(reader *r) { uint64_t a = rd_u32(r); return a | (uint64_t)rd_u32(r) << 32; }

/* The checksum of the serialized format (docs/state-layout.md section 6). */
static inline uint64_t hla_fuzz_checksum(const uint8_t *p, size_t n) {
    static const uint64_t P = 0x100000001b3ULL;
    uint64_t h[8] = {0xcbf29ce484222325ULL, 0x84222325cbf29ce4ULL, 0x9e3779b97f4a7c15ULL, 0xbf58476d1ce4e5b9ULL,
                     0x94d049bb133111ebULL, 0x2545f4914f6cdd1dULL, 0x27bb2ee687b0b0fdULL, 0x6a09e667f3bcc909ULL};
    size_t o = 0;
    for (; o + 64 <= n; o += 64)
        for (int l = 0; l < 8; l++) {
            uint64_t w;
            memcpy(&w, p + o + 8 * l, 8);
            h[l] = (h[l] ^ w) * P;
        }
    for (; o < n; o++) h[0] = (h[0] ^ p[o]) * P;
    uint64_t x = (uint64_t)n;
    for (int l = 0; l < 8; l++) x = (x ^ h[l]) * P;
    return x;
}

/* An allocation made exactly as large as asked (malloc(0) for nothing), so that ASan reports any access
 * outside it. */
static inline void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p && n) abort();
    return p;
}

#endif
