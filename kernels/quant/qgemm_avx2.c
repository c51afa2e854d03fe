/* qgemm_avx2.c — AVX2 microkernels of the quantized Linear.
 *
 * Blocking: 2 rows x 4 channels per microkernel call (8 ymm accumulators),
 * over the whole K; a lone last row uses the 1-row variant, channels beyond
 * a multiple of 4 use the scalar twin (same bits by definition).
 *
 * INT8 (sign trick, see quant.h): per 32 bytes of K,
 *     p = vpmaddubsw(|a|, sign(q, a))   int16 pairs, |p| <= 2*128*127, exact
 *     acc += vpmaddwd(p, 1)              int32
 * UINT4: codes unpacked with one AND / one shift+AND; vpmaddubsw(codes, a)
 *     pairs <= 2*15*128, so the lo/hi products of a whole group (up to 8
 *     results for g = 128: 4) are summed in int16 before one vpmaddwd.
 * NF4: codes -> int8 levels with one vpshufb (the 16-entry code book), then
 *     the INT8 sign trick.
 * Per group, the 4 channels' int32 lanes are reduced with three vphaddd
 * into one vector (g = 32: two groups, one per 128-bit half), the zero
 * correction and the float scale are applied lane-wise per channel: the
 * same operations as the scalar twin, in the same order.
 */
#include "qgemm_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))
#define INLINE static inline __attribute__((always_inline))

INLINE AVX2 int32_t hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_hadd_epi32(s, s);
    s = _mm_hadd_epi32(s, s);
    return _mm_cvtsi128_si32(s);
}

/* acc[r][c] = sum_k x_r[k] q_c[k] over Kp (multiple of 32) for mr rows x 4. */
INLINE AVX2 void int8_block(const int8_t *x0, const int8_t *x1, const int8_t *const q[4],
                            int mr, int Kp, int32_t out[2][4])
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[2][4];
    _Pragma("GCC unroll 4") for (int r = 0; r < 2; r++)
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) acc[r][c] = _mm256_setzero_si256();
    for (int k = 0; k < Kp; k += 32) {
        __m256i ax[2], aa[2];
        ax[0] = _mm256_loadu_si256((const __m256i *)(x0 + k));
        aa[0] = _mm256_sign_epi8(ax[0], ax[0]);
        if (mr > 1) {
            ax[1] = _mm256_loadu_si256((const __m256i *)(x1 + k));
            aa[1] = _mm256_sign_epi8(ax[1], ax[1]);
        }
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
            __m256i wv = _mm256_loadu_si256((const __m256i *)(q[c] + k));
            _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
                __m256i p = _mm256_maddubs_epi16(aa[r], _mm256_sign_epi8(wv, ax[r]));
                acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(p, ones));
            }
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++)
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) out[r][c] = hsum_epi32(acc[r][c]);
}

static AVX2 void int8_tile_avx2(const quant_weight *w, const quant_act *a, const float *bias,
                                int m0, int m1, int n0, int n1, float *Y, size_t ldy,
                                int32_t *C)
{
    int n4 = n0 + (n1 - n0) / 4 * 4;
    for (int n = n0; n < n4; n += 4) {     /* 4 channels stay in L1 across the rows */
        for (int m = m0; m < m1; m += 2) {
            int mr = m1 - m >= 2 ? 2 : 1;
            const int8_t *x0 = a->q + (size_t)m * a->Kp, *x1 = x0 + a->Kp;
            const int8_t *q[4];
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) q[c] = w->q8 + (size_t)(n + c) * w->Kp;
            int32_t acc[2][4];
            if (mr == 2) int8_block(x0, x1, q, 2, w->Kp, acc);
            else int8_block(x0, x1, q, 1, w->Kp, acc);
            _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++)
                _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
                    if (C) { C[(size_t)(m + r) * w->N + n + c] = acc[r][c]; continue; }
                    float s = a->scale[m + r] * w->scale[n + c];
                    float y = (float)acc[r][c] * s;
                    Y[(size_t)(m + r) * ldy + n + c] = bias ? y + bias[n + c] : y;
                }
        }
    }
    if (n4 < n1) qgemm_scalar_kernels.int8_tile(w, a, bias, m0, m1, n4, n1, Y, ldy, C);
}

/* ---- 4-bit ---------------------------------------------------------------- */

/* Reduces 4 channels' int32 lanes: low half = lanes 0..3, high = lanes 4..7. */
INLINE AVX2 __m256i reduce4(const __m256i v[4])
{
    return _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
}

/* Integer products of one 32-byte chunk of packed codes of one channel (64
 * codes: lo nibbles against alo, hi nibbles against ahi) for mr rows, into
 * acc[r]: int16 pairs for UINT4, int32 for NF4 (aabs = |a| for the sign
 * trick). */
INLINE AVX2 void u4_chunk(__m256i wv, const __m256i alo[2], const __m256i ahi[2],
                          const __m256i albs[2], const __m256i ahbs[2], int mr, int nf4,
                          __m256i cb, __m256i *acc0, __m256i *acc1)
{
    const __m256i m0f = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    __m256i lo = _mm256_and_si256(wv, m0f);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(wv, 4), m0f);
    __m256i *acc[2] = { acc0, acc1 };
    if (!nf4) {
        _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++)
            *acc[r] = _mm256_add_epi16(*acc[r], _mm256_add_epi16(
                _mm256_maddubs_epi16(lo, alo[r]), _mm256_maddubs_epi16(hi, ahi[r])));
        return;
    }
    lo = _mm256_shuffle_epi8(cb, lo);
    hi = _mm256_shuffle_epi8(cb, hi);
    _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
        __m256i p = _mm256_maddubs_epi16(albs[r], _mm256_sign_epi8(lo, alo[r]));
        __m256i q = _mm256_maddubs_epi16(ahbs[r], _mm256_sign_epi8(hi, ahi[r]));
        *acc[r] = _mm256_add_epi32(*acc[r], _mm256_add_epi32(_mm256_madd_epi16(p, ones),
                                                             _mm256_madd_epi16(q, ones)));
    }
}

INLINE AVX2 __m256i load2x128(const int8_t *lo, const int8_t *hi)
{
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)lo)),
                                   _mm_loadu_si128((const __m128i *)hi), 1);
}

/* Exact integer d for one group j, 4 channels, scalar (odd last g = 32 group). */
static int32_t u4_dot_one(const quant_weight *w, const int8_t *x, const uint8_t *row, int j)
{
    int g = w->group, h = g / 2;
    int32_t d = 0;
    for (int i = 0; i < h; i++) {
        uint8_t b = row[j * h + i];
        int lo = b & 15, hi = b >> 4;
        if (w->kind == QUANT_KIND_NF4) { lo = w->codebook[lo]; hi = w->codebook[hi]; }
        d += (int32_t)x[j * g + i] * lo + (int32_t)x[j * g + h + i] * hi;
    }
    return d;
}

/* Applies zero correction and scale of group j to the 4-channel ints d of
 * row m, accumulating into t (lane c = channel n + c). */
INLINE AVX2 __m128 u4_apply(const quant_weight *w, const quant_act *a, int m, int j, int n,
                            __m128i d, __m128 t)
{
    if (w->kind == QUANT_KIND_UINT4) {
        __m128i z = _mm_loadu_si128((const __m128i *)(w->zero + (size_t)j * w->N + n));
        d = _mm_sub_epi32(d, _mm_mullo_epi32(z, _mm_set1_epi32(a->gsum[(size_t)m * w->G + j])));
    }
    __m128 s = _mm_loadu_ps(w->scale + (size_t)j * w->N + n);
    return _mm_add_ps(t, _mm_mul_ps(s, _mm_cvtepi32_ps(d)));
}

/* mr and nf4 are compile-time constants at every call (always inlined), so
 * each variant gets its own register allocation. */
INLINE AVX2 void u4_block(const quant_weight *w, const quant_act *a, int m, int mr, int nf4,
                          int n, __m128 t[2])
{
    const int g = w->group, h = g / 2;
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i cb = nf4 ? _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w->codebook))
                           : _mm256_setzero_si256();
    const int8_t *x[2] = { a->q + (size_t)m * a->Kp, a->q + (size_t)(m + mr - 1) * a->Kp };
    const uint8_t *row[4];
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) row[c] = w->q4 + (size_t)(n + c) * (w->K / 2);
    t[0] = t[1] = _mm_setzero_ps();
    int step = g == 32 ? 2 : 1;                 /* groups per outer step */
    int jend = g == 32 ? w->G / 2 * 2 : w->G;
    for (int j = 0; j < jend; j += step) {
        __m256i acc[2][4];
        _Pragma("GCC unroll 4") for (int r = 0; r < 2; r++)
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) acc[r][c] = _mm256_setzero_si256();
        for (int i = 0; i < (g == 32 ? 32 : h); i += 32) {
            /* g = 32: one chunk holds groups j and j + 1 (one per 128-bit half) */
            __m256i alo[2], ahi[2], albs[2], ahbs[2];
            _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
                if (g == 32) {
                    alo[r] = load2x128(x[r] + j * 32, x[r] + j * 32 + 32);
                    ahi[r] = load2x128(x[r] + j * 32 + 16, x[r] + j * 32 + 48);
                } else {
                    alo[r] = _mm256_loadu_si256((const __m256i *)(x[r] + j * g + i));
                    ahi[r] = _mm256_loadu_si256((const __m256i *)(x[r] + j * g + h + i));
                }
                albs[r] = ahbs[r] = _mm256_setzero_si256();
                if (nf4) {
                    albs[r] = _mm256_sign_epi8(alo[r], alo[r]);
                    ahbs[r] = _mm256_sign_epi8(ahi[r], ahi[r]);
                }
            }
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
                __m256i wv = _mm256_loadu_si256((const __m256i *)(row[c] + j * h + i));
                u4_chunk(wv, alo, ahi, albs, ahbs, mr, nf4, cb, &acc[0][c], &acc[1][c]);
            }
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
            if (!nf4)
                _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) acc[r][c] = _mm256_madd_epi16(acc[r][c], ones);
            __m256i v = reduce4(acc[r]);
            __m128i vlo = _mm256_castsi256_si128(v), vhi = _mm256_extracti128_si256(v, 1);
            if (g == 32) {
                t[r] = u4_apply(w, a, m + r, j, n, vlo, t[r]);
                t[r] = u4_apply(w, a, m + r, j + 1, n, vhi, t[r]);
            } else {
                t[r] = u4_apply(w, a, m + r, j, n, _mm_add_epi32(vlo, vhi), t[r]);
            }
        }
    }
    for (int j = jend; j < w->G; j++)           /* odd last group of g = 32 */
        _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
            int32_t d[4];
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) d[c] = u4_dot_one(w, x[r], row[c], j);
            t[r] = u4_apply(w, a, m + r, j, n, _mm_loadu_si128((const __m128i *)d), t[r]);
        }
}

static AVX2 void u4_tile_avx2(const quant_weight *w, const quant_act *a, const float *bias,
                              int m0, int m1, int n0, int n1, float *Y, size_t ldy,
                              int32_t *C)
{
    int n4 = n0 + (n1 - n0) / 4 * 4;
    for (int n = n0; n < n4; n += 4) {     /* 4 channels stay in L1 across the rows */
        for (int m = m0; m < m1; m += 2) {
            int mr = m1 - m >= 2 ? 2 : 1;
            __m128 t[2];
            if (w->kind == QUANT_KIND_NF4) {
                if (mr == 2) u4_block(w, a, m, 2, 1, n, t);
                else u4_block(w, a, m, 1, 1, n, t);
            } else {
                if (mr == 2) u4_block(w, a, m, 2, 0, n, t);
                else u4_block(w, a, m, 1, 0, n, t);
            }
            __m128 b = bias ? _mm_loadu_ps(bias + n) : _mm_setzero_ps();
            _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
                __m128 y = _mm_mul_ps(t[r], _mm_set1_ps(a->scale[m + r]));
                if (bias) y = _mm_add_ps(y, b);
                _mm_storeu_ps(Y + (size_t)(m + r) * ldy + n, y);
            }
        }
    }
    if (n4 < n1) qgemm_scalar_kernels.u4_tile(w, a, bias, m0, m1, n4, n1, Y, ldy, C);
}

const qgemm_kernels qgemm_avx2_kernels = { int8_tile_avx2, u4_tile_avx2 };

#else
const qgemm_kernels qgemm_avx2_kernels = { 0, 0 };
#endif
