/* qgemm_avx2.c — AVX2 microkernels of the quantized Linear, on the panel
 * layouts of quant.h (built once at load by qpack.c).
 *
 * Form: 8 output channels per ymm.  For each k-step, 4 bytes of an
 * activation row are broadcast to every 32-bit lane (vpbroadcastd) and
 * multiplied against [8 channels x 4 k] weight bytes with vpmaddubsw, so
 * every int32 lane belongs to one channel: no horizontal sums, and the
 * rescale, bias and store are lane-wise.
 *
 * INT8, 4 rows x 16 channels (8 int32 accumulators), per k-quad:
 *     p = vpmaddubsw(|a|, sign(q, a))    int16 pairs, |p| <= 2*128*127, exact
 *   (|a| is broadcast from quant_act.qa, made once per row by the activation
 *   quantizer: no vpabsb per row and panel, 4 vector ops per 32 MACs)
 *     acc += vpmaddwd(p, 1)               (sign trick, see quant.h)
 * UINT4, 4 rows x 8 channels, per k-octet (one 32-byte load = 64 codes):
 *     lo = w & 15 (k 0..3), hi = (w >> 4) & 15 (k 4..7)
 *     s16 += vpmaddubsw(lo, a[k..k+3]) + vpmaddubsw(hi, a[k+4..k+7])
 *   codes <= 15 against |a| <= 128: one octet adds at most 4*15*128 = 7680
 *   to an int16 lane, so 4 octets (32 k, 30720 <= 32767) are summed in
 *   int16 before one vpmaddwd into int32: exact.  Per group, the zero
 *   correction d - z * asum (vpmulld) and t = t + s * (float)d lane-wise.
 * NF4: codes -> int8 levels with vpshufb (the code book), then the INT8
 *   sign trick per octet (pairs up to 2*128*127: vpmaddwd each time).
 * The float operations are the scalar twin's, in its order (quant.h), so
 * the results are bit-identical; a partial last vector of channels (N not
 * a multiple of 8) is computed on padded panels and only the real lanes
 * are stored.
 */
#include "qgemm_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2")))
#define INLINE static inline __attribute__((always_inline))

INLINE AVX2 __m256i bcast4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* Stores 8 lanes of row y (channels n..n+7, of which `nv` are real):
 * y = v (+ bias) lane-wise, the same single IEEE add as the scalar twin. */
INLINE AVX2 void store8(float *y, __m256 v, const float *bias, int n, int nv)
{
    if (nv == 8) {
        if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + n));
        _mm256_storeu_ps(y + n, v);
        return;
    }
    float t[8];
    _mm256_storeu_ps(t, v);
    for (int i = 0; i < nv; i++) y[n + i] = bias ? t[i] + bias[n + i] : t[i];
}

/* ---- INT8 ----------------------------------------------------------------- */

/* acc[r][h] (channels 8h..8h+7 of panel pw) over all Kp/4 k-quads, mr rows. */
INLINE AVX2 void int8_micro(const uint8_t *pw, const int8_t *const x[4], const uint8_t *const xa[4], int mr,
                            int kq, __m256i acc[4][2])
{
    const __m256i ones = _mm256_set1_epi16(1);
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int i = 0; i < kq; i++) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(pw + (size_t)i * 64));
        __m256i w1 = _mm256_loadu_si256((const __m256i *)(pw + (size_t)i * 64 + 32));
        _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
            __m256i av = bcast4(x[r] + 4 * i), aa = bcast4((const int8_t *)xa[r] + 4 * i);
            __m256i p0 = _mm256_maddubs_epi16(aa, _mm256_sign_epi8(w0, av));
            __m256i p1 = _mm256_maddubs_epi16(aa, _mm256_sign_epi8(w1, av));
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(p0, ones));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(p1, ones));
        }
    }
}

INLINE AVX2 void int8_panel_rows(const quant_weight *w, const quant_act *a, const float *bias, int m,
                                 int mr, int n, float *Y, size_t ldy, int32_t *C)
{
    const int8_t *x[4];
    const uint8_t *xa[4];
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
        size_t at = (size_t)(m + (r < mr ? r : 0)) * a->Kp;
        x[r] = a->q + at;
        xa[r] = a->qa + at;
    }
    const uint8_t *pw = w->p8 + (size_t)(n / QUANT_P8) * w->Kp * QUANT_P8;
    __m256i acc[4][2];
    int8_micro(pw, x, xa, mr, w->Kp / 4, acc);
    _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++)
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
            int c0 = n + 8 * h, nv = w->N - c0 < 8 ? w->N - c0 : 8;
            if (nv <= 0) continue;
            if (C) {
                int32_t t[8];
                _mm256_storeu_si256((__m256i *)t, acc[r][h]);
                memcpy(C + (size_t)(m + r) * w->N + c0, t, (size_t)nv * sizeof(int32_t));
                continue;
            }
            __m256 s = _mm256_mul_ps(_mm256_set1_ps(a->scale[m + r]), _mm256_loadu_ps(w->scale + c0));
            __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[r][h]), s);
            store8(Y + (size_t)(m + r) * ldy, y, bias, c0, nv);
        }
}

static AVX2 void int8_tile_avx2(const quant_weight *w, const quant_act *a, const float *bias,
                                int m0, int m1, int n0, int n1, float *Y, size_t ldy,
                                int32_t *C)
{
    /* n0 is a multiple of QUANT_TILE_N, hence of the panel width 16 */
    for (int n = n0; n < n1; n += QUANT_P8)     /* one panel stays in L1 across the rows */
        for (int m = m0; m < m1; m += 4) {
            switch (m1 - m) {
            case 1: int8_panel_rows(w, a, bias, m, 1, n, Y, ldy, C); break;
            case 2: int8_panel_rows(w, a, bias, m, 2, n, Y, ldy, C); break;
            case 3: int8_panel_rows(w, a, bias, m, 3, n, Y, ldy, C); break;
            default: int8_panel_rows(w, a, bias, m, 4, n, Y, ldy, C); break;
            }
        }
}

/* ---- 4-bit ---------------------------------------------------------------- */

/* Integer part of octets [o0, o0 + no) (no <= 4 for UINT4) of panel pw for
 * mr rows: UINT4 summed in int16 and widened once; NF4 widened per octet. */
INLINE AVX2 void u4_octets(const uint8_t *pw, const int8_t *const x[4], const uint8_t *const xa[4], int mr,
                           int nf4, __m256i cb, int o0, int no, __m256i d[4])
{
    const __m256i m0f = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    __m256i s16[4];
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) s16[r] = _mm256_setzero_si256();
    for (int o = o0; o < o0 + no; o++) {
        __m256i wv = _mm256_loadu_si256((const __m256i *)(pw + (size_t)o * 32));
        __m256i lo = _mm256_and_si256(wv, m0f);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(wv, 4), m0f);
        if (nf4) {
            lo = _mm256_shuffle_epi8(cb, lo);
            hi = _mm256_shuffle_epi8(cb, hi);
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
            __m256i al = bcast4(x[r] + 8 * o), ah = bcast4(x[r] + 8 * o + 4);
            if (nf4) {
                __m256i bl = bcast4((const int8_t *)xa[r] + 8 * o), bh = bcast4((const int8_t *)xa[r] + 8 * o + 4);
                __m256i pl = _mm256_maddubs_epi16(bl, _mm256_sign_epi8(lo, al));
                __m256i ph = _mm256_maddubs_epi16(bh, _mm256_sign_epi8(hi, ah));
                d[r] = _mm256_add_epi32(d[r], _mm256_add_epi32(_mm256_madd_epi16(pl, ones),
                                                               _mm256_madd_epi16(ph, ones)));
            } else {
                s16[r] = _mm256_add_epi16(s16[r], _mm256_add_epi16(_mm256_maddubs_epi16(lo, al),
                                                                   _mm256_maddubs_epi16(hi, ah)));
            }
        }
    }
    if (!nf4)
        _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++)
            d[r] = _mm256_add_epi32(d[r], _mm256_madd_epi16(s16[r], ones));
}

/* t[r] (8 channels of panel P) = sum over groups of s * (float)d, mr rows. */
INLINE AVX2 void u4_micro(const quant_weight *w, const quant_act *a, int m, int mr, int nf4, int P,
                          __m256 t[4])
{
    const int g = w->group, G = w->G, og = g / 8;
    const __m256i cb = nf4 ? _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w->codebook))
                           : _mm256_setzero_si256();
    const uint8_t *pw = w->p4 + (size_t)P * (w->K / 8) * 32;
    const float *ps = w->pscale + (size_t)P * G * QUANT_P4;
    const int32_t *pz = nf4 ? NULL : w->pzero + (size_t)P * G * QUANT_P4;
    const int8_t *x[4];
    const uint8_t *xa[4];
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
        size_t at = (size_t)(m + (r < mr ? r : 0)) * a->Kp;
        x[r] = a->q + at;
        xa[r] = a->qa + at;
        t[r] = _mm256_setzero_ps();
    }
    for (int j = 0; j < G; j++) {
        __m256i d[4];
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) d[r] = _mm256_setzero_si256();
        for (int o = j * og; o < (j + 1) * og; o += 4)      /* 32 k per int16 flush */
            u4_octets(pw, x, xa, mr, nf4, cb, o, 4, d);
        __m256 s = _mm256_loadu_ps(ps + (size_t)j * QUANT_P4);
        __m256i z = nf4 ? _mm256_setzero_si256() : _mm256_loadu_si256((const __m256i *)(pz + (size_t)j * QUANT_P4));
        _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
            __m256i dr = d[r];
            if (!nf4)
                dr = _mm256_sub_epi32(dr, _mm256_mullo_epi32(z, _mm256_set1_epi32(a->gsum[(size_t)(m + r) * G + j])));
            t[r] = _mm256_add_ps(t[r], _mm256_mul_ps(s, _mm256_cvtepi32_ps(dr)));
        }
    }
}

INLINE AVX2 void u4_panel_rows(const quant_weight *w, const quant_act *a, const float *bias, int m,
                               int mr, int nf4, int n, float *Y, size_t ldy)
{
    __m256 t[4];
    u4_micro(w, a, m, mr, nf4, n / QUANT_P4, t);
    int nv = w->N - n < 8 ? w->N - n : 8;
    _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++)
        store8(Y + (size_t)(m + r) * ldy, _mm256_mul_ps(t[r], _mm256_set1_ps(a->scale[m + r])), bias, n, nv);
}

static AVX2 void u4_tile_avx2(const quant_weight *w, const quant_act *a, const float *bias,
                              int m0, int m1, int n0, int n1, float *Y, size_t ldy,
                              int32_t *C)
{
    (void)C;
    int nf4 = w->kind == QUANT_KIND_NF4;
    for (int n = n0; n < n1; n += QUANT_P4)     /* one panel stays in L1 across the rows */
        for (int m = m0; m < m1; m += 4) {
            int mr = m1 - m < 4 ? m1 - m : 4;
            if (nf4) {
                if (mr == 4) u4_panel_rows(w, a, bias, m, 4, 1, n, Y, ldy);
                else if (mr == 3) u4_panel_rows(w, a, bias, m, 3, 1, n, Y, ldy);
                else if (mr == 2) u4_panel_rows(w, a, bias, m, 2, 1, n, Y, ldy);
                else u4_panel_rows(w, a, bias, m, 1, 1, n, Y, ldy);
            } else {
                if (mr == 4) u4_panel_rows(w, a, bias, m, 4, 0, n, Y, ldy);
                else if (mr == 3) u4_panel_rows(w, a, bias, m, 3, 0, n, Y, ldy);
                else if (mr == 2) u4_panel_rows(w, a, bias, m, 2, 0, n, Y, ldy);
                else u4_panel_rows(w, a, bias, m, 1, 0, n, Y, ldy);
            }
        }
}

const qgemm_kernels qgemm_avx2_kernels = { int8_tile_avx2, u4_tile_avx2 };

#else
const qgemm_kernels qgemm_avx2_kernels = { 0, 0 };
#endif
