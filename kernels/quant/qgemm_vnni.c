/* qgemm_vnni.c — the VNNI microkernels: AVX-VNNI (VEX vpdpbusd on ymm:
 * Alder Lake and later, Zen 5) and AVX-512 VNNI (EVEX vpdpbusd on zmm:
 * Cascade Lake and later, Zen 4).
 *
 * vpdpbusd adds four u8 x s8 products into each int32 lane with no
 * intermediate saturation.  INT8 uses the offset trick: a + 128 = a ^ 0x80
 * is a u8, and sum (a + 128) q - 128 * wsum[n] = sum a q exactly (wsum is
 * precomputed per channel in qweight.c; K padding is 0 in q, so it adds 0).
 * 4-bit shares the body qgemm_vnni_u4.h (codes are already u8).
 *
 * The development machine (Zen 3) has neither extension: these paths are
 * compiled and dispatched by cpuid, and their integer algebra is checked
 * by tests/quant_test.c through a scalar emulation of vpdpbusd; the
 * instructions themselves run only where cpuid reports them (quant_test
 * then compares them bit-exactly with the scalar twin).
 */
#include "qgemm_internal.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && \
    (__GNUC__ >= 11 || (defined(__clang_major__) && __clang_major__ >= 12))
#include <immintrin.h>

/* Exact integer d of one group j of one channel, scalar (odd last g = 32). */
static int32_t vnni_u4_dot_one(const quant_weight *w, const int8_t *x, const uint8_t *row, int j)
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

/* Writes one 2 x 4 INT8 block (acc already offset-corrected). */
static void int8_store(const quant_weight *w, const quant_act *a, const float *bias, int m,
                       int mr, int n, int32_t acc[2][4], float *Y, size_t ldy, int32_t *C)
{
    _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++)
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
            if (C) { C[(size_t)(m + r) * w->N + n + c] = acc[r][c]; continue; }
            float s = a->scale[m + r] * w->scale[n + c];
            float y = (float)acc[r][c] * s;
            Y[(size_t)(m + r) * ldy + n + c] = bias ? y + bias[n + c] : y;
        }
}

/* ---- AVX-VNNI ------------------------------------------------------------- */
#define AVXVNNI __attribute__((target("avx2,avxvnni")))

static inline __attribute__((always_inline)) AVXVNNI
void int8_block_avxvnni(const int8_t *x0, const int8_t *x1, const int8_t *const q[4],
                        int mr, int Kp, int32_t out[2][4])
{
    const __m256i off = _mm256_set1_epi8((char)0x80);
    __m256i acc[2][4];
    _Pragma("GCC unroll 4") for (int r = 0; r < 2; r++)
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) acc[r][c] = _mm256_setzero_si256();
    for (int k = 0; k < Kp; k += 32) {
        __m256i xu[2];
        xu[0] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(x0 + k)), off);
        xu[1] = mr > 1 ? _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(x1 + k)), off) : xu[0];
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
            __m256i wv = _mm256_loadu_si256((const __m256i *)(q[c] + k));
            _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) acc[r][c] = _mm256_dpbusd_avx_epi32(acc[r][c], xu[r], wv);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++)
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
            __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc[r][c]),
                                      _mm256_extracti128_si256(acc[r][c], 1));
            s = _mm_hadd_epi32(s, s);
            s = _mm_hadd_epi32(s, s);
            out[r][c] = _mm_cvtsi128_si32(s);
        }
}

static AVXVNNI void int8_tile_avxvnni(const quant_weight *w, const quant_act *a, const float *bias,
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
            if (mr == 2) int8_block_avxvnni(x0, x1, q, 2, w->Kp, acc);
            else int8_block_avxvnni(x0, x1, q, 1, w->Kp, acc);
            _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++)
                _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) acc[r][c] -= 128 * w->wsum[n + c];
            int8_store(w, a, bias, m, mr, n, acc, Y, ldy, C);
        }
    }
    if (n4 < n1) qgemm_scalar_kernels.int8_tile(w, a, bias, m0, m1, n4, n1, Y, ldy, C);
}

#define VNNI_TGT "avx2,avxvnni"
#define VNNI_DP _mm256_dpbusd_avx_epi32
#define VNNI_NAME avxvnni
#include "qgemm_vnni_u4.h"
#undef VNNI_TGT
#undef VNNI_DP
#undef VNNI_NAME

/* ---- AVX-512 VNNI --------------------------------------------------------- */
#define AVX512VNNI __attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512vnni")))

static inline __attribute__((always_inline)) AVX512VNNI
void int8_block_avx512(const int8_t *x0, const int8_t *x1, const int8_t *const q[4],
                       int mr, int Kp, int32_t out[2][4])
{
    const __m512i off = _mm512_set1_epi8((char)0x80);
    __m512i acc[2][4];
    _Pragma("GCC unroll 4") for (int r = 0; r < 2; r++)
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_si512();
    for (int k = 0; k < Kp; k += 64) {           /* Kp is a multiple of 64 */
        __m512i xu[2];
        xu[0] = _mm512_xor_si512(_mm512_loadu_si512((const void *)(x0 + k)), off);
        xu[1] = mr > 1 ? _mm512_xor_si512(_mm512_loadu_si512((const void *)(x1 + k)), off) : xu[0];
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
            __m512i wv = _mm512_loadu_si512((const void *)(q[c] + k));
            _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], xu[r], wv);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++)
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) out[r][c] = _mm512_reduce_add_epi32(acc[r][c]);
}

static AVX512VNNI void int8_tile_avx512(const quant_weight *w, const quant_act *a, const float *bias,
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
            if (mr == 2) int8_block_avx512(x0, x1, q, 2, w->Kp, acc);
            else int8_block_avx512(x0, x1, q, 1, w->Kp, acc);
            _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++)
                _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) acc[r][c] -= 128 * w->wsum[n + c];
            int8_store(w, a, bias, m, mr, n, acc, Y, ldy, C);
        }
    }
    if (n4 < n1) qgemm_scalar_kernels.int8_tile(w, a, bias, m0, m1, n4, n1, Y, ldy, C);
}

#define VNNI_TGT "avx2,avx512f,avx512bw,avx512vl,avx512vnni"
#define VNNI_DP _mm256_dpbusd_epi32
#define VNNI_NAME avx512
#include "qgemm_vnni_u4.h"
#undef VNNI_TGT
#undef VNNI_DP
#undef VNNI_NAME

const qgemm_kernels qgemm_avxvnni_kernels = { int8_tile_avxvnni, u4_tile_avxvnni };
const qgemm_kernels qgemm_avx512vnni_kernels = { int8_tile_avx512, u4_tile_avx512 };
const int qgemm_have_avxvnni_build = 1, qgemm_have_avx512vnni_build = 1;

#else
const qgemm_kernels qgemm_avxvnni_kernels = { 0, 0 };
const qgemm_kernels qgemm_avx512vnni_kernels = { 0, 0 };
const int qgemm_have_avxvnni_build = 0, qgemm_have_avx512vnni_build = 0;
#endif
