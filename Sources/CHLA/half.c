/* bfloat16 and float16 rows to and from float32 on AVX2 and F16C (Strided.gather and Strided.store,
 * Sources/HLA/Core/Tensor.swift): the same bits as the element-by-element conversions of `Half`
 * (Sources/HLA/Core/DType.swift), eight elements per instruction sequence.
 *
 * Widening is exact (bfloat16: the 16 bits become the top half of a float32; float16: vcvtph2ps, the instruction the
 * Swift conversion compiles to with -target-cpu haswell), then the product with `mul` in float32, as the scalar code
 * forms it. Narrowing multiplies by `mul` first, then rounds to nearest even: bfloat16 as `Half.floatToBF16` (a NaN
 * keeps its sign and top payload bits and is made quiet), float16 with vcvtps2ph (the Swift conversion's instruction).
 * Tests/HLATests/HalfPrecisionTests.swift compares both directions with `Half` on every 16-bit pattern and on float32
 * patterns around every rounding boundary.
 *
 * The element-by-element loops they replace summed x * 0 into one scalar for the finiteness test (a chain of
 * dependent additions, one per element): the bfloat16 chunked forward took 1.20-1.38x the float32 one on a Zen 3
 * host (docs/benchmarks.md, stop 51 before this file). Called only where hla_private_avx2 is set (which requires
 * F16C beside AVX2 and FMA: every CPU with AVX2 has it). */
#pragma STDC FP_CONTRACT OFF
#include <immintrin.h>
#include <string.h>
#include "hla_private.h"

#define HLA_HALF __attribute__((target("avx2,fma,f16c")))

static inline float bits_float(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
static inline uint32_t float_bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

/* Whether no lane of the x * 0 sums is NaN (all written values finite). */
static inline HLA_HALF int all_finite(__m256 acc0, __m256 acc1, float tail) {
    const __m256 a = _mm256_add_ps(acc0, acc1);
    return _mm256_movemask_ps(_mm256_cmp_ps(a, a, _CMP_UNORD_Q)) == 0 && tail == tail;
}

HLA_HALF int hla_private_widen_bf16(const uint16_t *src, float *dst, ptrdiff_t n, float mul) {
    const __m256 m = _mm256_set1_ps(mul), z = _mm256_setzero_ps();
    __m256 acc0 = z, acc1 = z;
    ptrdiff_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m256i h = _mm256_loadu_si256((const __m256i *)(src + j));
        const __m256 x0 = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm256_castsi256_si128(h)), 16)), m);
        const __m256 x1 = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1)), 16)), m);
        _mm256_storeu_ps(dst + j, x0);
        _mm256_storeu_ps(dst + j + 8, x1);
        acc0 = _mm256_add_ps(acc0, _mm256_mul_ps(x0, z));
        acc1 = _mm256_add_ps(acc1, _mm256_mul_ps(x1, z));
    }
    float tail = 0;
    for (; j < n; j++) { const float x = bits_float((uint32_t)src[j] << 16) * mul; dst[j] = x; tail += x * 0.0f; }
    return all_finite(acc0, acc1, tail);
}

HLA_HALF int hla_private_widen_f16(const uint16_t *src, float *dst, ptrdiff_t n, float mul) {
    const __m256 m = _mm256_set1_ps(mul), z = _mm256_setzero_ps();
    __m256 acc0 = z, acc1 = z;
    ptrdiff_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m256 x0 = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + j))), m);
        const __m256 x1 = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + j + 8))), m);
        _mm256_storeu_ps(dst + j, x0);
        _mm256_storeu_ps(dst + j + 8, x1);
        acc0 = _mm256_add_ps(acc0, _mm256_mul_ps(x0, z));
        acc1 = _mm256_add_ps(acc1, _mm256_mul_ps(x1, z));
    }
    float tail = 0;
    for (; j < n; j++) {
        const float x = _cvtsh_ss(src[j]) * mul;
        dst[j] = x; tail += x * 0.0f;
    }
    return all_finite(acc0, acc1, tail);
}

/* Eight float32 values rounded to bfloat16 as Half.floatToBF16: (b + 0x7FFF + lsb) >> 16, a NaN (b >> 16) | 0x40. */
static inline HLA_HALF __m128i round_bf16(__m256 y) {
    const __m256i b = _mm256_castps_si256(y);
    const __m256i hi = _mm256_srli_epi32(b, 16);
    const __m256i lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(0x7FFF)), lsb), 16);
    const __m256i nan = _mm256_or_si256(hi, _mm256_set1_epi32(0x40));
    const __m256i v = _mm256_blendv_epi8(r, nan, _mm256_castps_si256(_mm256_cmp_ps(y, y, _CMP_UNORD_Q)));
    return _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

static inline uint16_t round_bf16_1(float y) {
    const uint32_t b = float_bits(y);
    if (y != y) return (uint16_t)((b >> 16) | 0x40);
    return (uint16_t)((b + 0x7FFF + ((b >> 16) & 1)) >> 16);
}

HLA_HALF void hla_private_narrow_bf16(const float *src, uint16_t *dst, ptrdiff_t n, float mul) {
    const __m256 m = _mm256_set1_ps(mul);
    ptrdiff_t j = 0;
    for (; j + 8 <= n; j += 8) _mm_storeu_si128((__m128i *)(dst + j), round_bf16(_mm256_mul_ps(_mm256_loadu_ps(src + j), m)));
    for (; j < n; j++) dst[j] = round_bf16_1(src[j] * mul);
}

HLA_HALF void hla_private_narrow_f16(const float *src, uint16_t *dst, ptrdiff_t n, float mul) {
    const __m256 m = _mm256_set1_ps(mul);
    ptrdiff_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm_storeu_si128((__m128i *)(dst + j), _mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(src + j), m), _MM_FROUND_CUR_DIRECTION));
    for (; j < n; j++) dst[j] = _cvtss_sh(src[j] * mul, _MM_FROUND_CUR_DIRECTION);
}
