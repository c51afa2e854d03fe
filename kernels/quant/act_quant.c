/* act_quant.c — per-row dynamic quantization of fp32 activations to int8.
 *
 * Row m of X [M, K]: amax = max_k |x| (0 below 1e-30, where 127 / amax
 * would overflow), sa[m] = amax / 127,
 * a[m,k] = rint(x[m,k] * (127 / amax)) in [-127, 127] (round half to even;
 * |x| <= amax keeps it in range), zero-padded to Kp = K rounded up to
 * QUANT_KPAD so the SIMD loops need no tails.  With group > 0, gsum[m, j]
 * is the sum of a over group j (the zero-point correction of 4-bit
 * weights).  One definition: the scalar row below is the twin, the AVX2
 * row computes the same bits (max is exact; x * inv is the same IEEE
 * multiply; vroundps with round-to-nearest-even is rintf in the default
 * rounding mode; the clamp and the integer sums are exact), so outputs do
 * not depend on the code path or thread count.  Rows are independent and
 * are split over OpenMP threads for large inputs; a non-finite input is
 * reported at its first row and column, as a sequential scan would.
 */
#include "qgemm_internal.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

void quant_act_init(quant_act *a) { memset(a, 0, sizeof *a); }

void quant_act_release(quant_act *a)
{
    if (!a) return;
    free(a->q);
    free(a->qa);
    free(a->scale);
    free(a->gsum);
    memset(a, 0, sizeof *a);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem, flow_err *e)
{
    if (need <= *cap) return 0;
    void *n = realloc(*p, need * elem);
    if (!n) return flow_fail(e, FLOW_E_NOMEM, "quantized activations: cannot allocate %zu bytes", need * elem);
    *p = n;
    *cap = need;
    return 0;
}

/* The scalar twin: row x [K] -> q [Kp] (padding 0), *scale, gsum [K/group]
 * (group 0: none).  Returns the first non-finite column, or -1. */
/* A row whose amax is below this is quantized as zeros (scale 0): 127 /
 * amax must be finite for every path's multiply and convert to agree. */
#define ACT_AMAX_MIN 1e-30f
static inline float amax_floor(float amax) { return amax < ACT_AMAX_MIN ? 0.0f : amax; }

static int row_scalar(const float *x, int K, int Kp, int group, int8_t *q, uint8_t *qa, float *scale,
                      int32_t *gsum)
{
    float amax = 0.0f;
    for (int k = 0; k < K; k++) {
        if (!isfinite(x[k])) return k;
        float v = fabsf(x[k]);
        if (v > amax) amax = v;
    }
    amax = amax_floor(amax);
    *scale = amax / 127.0f;
    float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int k = 0; k < K; k++) {
        float r = rintf(x[k] * inv);
        q[k] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r);
    }
    memset(q + K, 0, (size_t)(Kp - K));
    for (int k = 0; k < Kp; k++) qa[k] = (uint8_t)abs(q[k]);
    for (int j = 0; group > 0 && j < K / group; j++) {
        int32_t s = 0;
        for (int i = 0; i < group; i++) s += q[j * group + i];
        gsum[j] = s;
    }
    return -1;
}

#if defined(__x86_64__) || defined(__i386__)
#define AVX2 __attribute__((target("avx2")))

static AVX2 int32_t hsum8(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* Values [k, K) of row x quantized with inv = 127 / amax (k a multiple of
 * the group, or of 32 for group 0; group 0 or a multiple of 32), their
 * group sums: row_avx2's second pass, also the tail of row_avx512. */
static AVX2 void quant_avx2(const float *x, int k, int K, float inv, int group, int8_t *q, uint8_t *qa,
                            int32_t *gsum)
{
    const __m256 vinv = _mm256_set1_ps(inv), hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i gacc = _mm256_setzero_si256();
    for (; k + 32 <= K; k += 32) {
        __m256i v[4];
        for (int u = 0; u < 4; u++) {
            __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * u), vinv),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v[u] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
        }
        __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
        b = _mm256_permutevar8x32_epi32(b, order);
        _mm256_storeu_si256((__m256i *)(q + k), b);
        _mm256_storeu_si256((__m256i *)(qa + k), _mm256_abs_epi8(b));
        if (group) {
            gacc = _mm256_add_epi32(gacc, _mm256_add_epi32(_mm256_add_epi32(v[0], v[1]), _mm256_add_epi32(v[2], v[3])));
            if ((k + 32) % group == 0) {
                gsum[(k + 32) / group - 1] = hsum8(gacc);
                gacc = _mm256_setzero_si256();
            }
        }
    }
    for (; k < K; k++) {                        /* group 0 only: group | K, 32 | group */
        float r = rintf(x[k] * inv);
        q[k] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r);
        qa[k] = (uint8_t)abs(q[k]);
    }
}

/* The AVX2 row: the same bits as row_scalar (group is 0 or a multiple of
 * 32).  Returns -1, or -2 when the row holds a non-finite value (the caller
 * asks row_scalar for the column). */
static AVX2 int row_avx2(const float *x, int K, int Kp, int group, int8_t *q, uint8_t *qa, float *scale,
                         int32_t *gsum)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), big = _mm256_set1_ps(FLT_MAX);
    __m256 vmax = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 av = _mm256_and_ps(_mm256_loadu_ps(x + k), absmask);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(av, big, _CMP_NLE_UQ));     /* inf or NaN */
        vmax = _mm256_max_ps(vmax, av);
    }
    if (_mm256_movemask_ps(bad)) return -2;
    float m8[8], amax = 0.0f;
    _mm256_storeu_ps(m8, vmax);
    for (int i = 0; i < 8; i++) if (m8[i] > amax) amax = m8[i];
    for (; k < K; k++) {
        if (!isfinite(x[k])) return -2;
        float v = fabsf(x[k]);
        if (v > amax) amax = v;
    }
    amax = amax_floor(amax);
    *scale = amax / 127.0f;
    quant_avx2(x, 0, K, amax > 0.0f ? 127.0f / amax : 0.0f, group, q, qa, gsum);
    memset(q + K, 0, (size_t)(Kp - K));
    memset(qa + K, 0, (size_t)(Kp - K));
    return -1;
}

/* The AVX-512 row (the AVX512VNNI path): the same bits as row_scalar on 16
 * lanes, 64 values per step (max exact; the same multiply and
 * round-to-nearest-even; the clamp makes vpmovsdb's saturation exact; the
 * group sums are exact integers).  group is 0 or a multiple of 32: a
 * 64-value step holds two groups of 32, or lies inside one group of 64 or
 * 128; a last 32 values (K % 64 == 32) take row_avx2's step.  Returns -1,
 * or -2 for a non-finite value. */
#define AVX512 __attribute__((target("avx2,avx512f,avx512bw,avx512vl")))

static AVX512 int row_avx512(const float *x, int K, int Kp, int group, int8_t *q, uint8_t *qa, float *scale,
                             int32_t *gsum)
{
    const __m512 big = _mm512_set1_ps(FLT_MAX);
    __m512 vmax = _mm512_setzero_ps();
    __mmask16 bad = 0;
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 av = _mm512_abs_ps(_mm512_loadu_ps(x + k));
        bad |= _mm512_cmp_ps_mask(av, big, _CMP_NLE_UQ);                  /* inf or NaN */
        vmax = _mm512_max_ps(vmax, av);
    }
    if (bad) return -2;
    float amax = _mm512_reduce_max_ps(vmax);
    for (; k < K; k++) {
        if (!isfinite(x[k])) return -2;
        float v = fabsf(x[k]);
        if (v > amax) amax = v;
    }
    amax = amax_floor(amax);
    *scale = amax / 127.0f;
    float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    const __m512 vinv = _mm512_set1_ps(inv);
    /* the packs work within 128-bit lanes: dword 4 L + u of packs(packs(v0,
     * v1), packs(v2, v3)) holds values 4 L .. 4 L + 3 of v[u]; output dword
     * j takes dword 4 (j % 4) + j / 4 */
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    for (k = 0; k + 64 <= K; k += 64) {
        __m512i v[4];
        /* x * inv rounded to nearest even by the convert (the default
         * rounding mode, as rintf): |x| <= amax, so |x * inv| <= 127 (1 +
         * 2^-24)^2 < 127.5 and the twin's clamp never acts; the packs'
         * saturation does not either */
        for (int u = 0; u < 4; u++)
            v[u] = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + k + 16 * u), vinv));
        __m512i b = _mm512_permutexvar_epi32(order, _mm512_packs_epi16(_mm512_packs_epi32(v[0], v[1]),
                                                                       _mm512_packs_epi32(v[2], v[3])));
        _mm512_storeu_si512(q + k, b);
        _mm512_storeu_si512(qa + k, _mm512_abs_epi8(b));
        if (group == 32) {
            gsum[k / 32] = _mm512_reduce_add_epi32(_mm512_add_epi32(v[0], v[1]));
            gsum[k / 32 + 1] = _mm512_reduce_add_epi32(_mm512_add_epi32(v[2], v[3]));
        } else if (group) {
            int32_t t = _mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_add_epi32(v[0], v[1]),
                                                                 _mm512_add_epi32(v[2], v[3])));
            if (k % group == 0) gsum[k / group] = t;
            else gsum[k / group] += t;
        }
    }
    quant_avx2(x, k, K, inv, group, q, qa, gsum);   /* the last K % 64 values */
    memset(q + K, 0, (size_t)(Kp - K));
    memset(qa + K, 0, (size_t)(Kp - K));
    return -1;
}
#undef AVX512
#endif

int qact_prepare(quant_path p, quant_act *a, int M, int K, size_t ldx, int group, flow_err *e)
{
    if (M < 0 || K <= 0 || ldx < (size_t)K)
        return flow_fail(e, FLOW_E_PARAM, "quantized activations: bad shape M %d K %d ldx %zu", M, K, ldx);
    if (group < 0 || (group > 0 && K % group != 0))
        return flow_fail(e, FLOW_E_PARAM, "quantized activations: group %d does not divide K %d", group, K);
    if (p == QUANT_PATH_AUTO) p = quant_path_best();
    if (!quant_path_supported(p))
        return flow_fail(e, FLOW_E_PARAM, "quantized activations: code path '%s' cannot run here (best here: %s)",
                         quant_path_name(p), quant_path_name(quant_path_best()));
    int Kp = (K + QUANT_KPAD - 1) / QUANT_KPAD * QUANT_KPAD;
    int G = group > 0 ? K / group : 0;
    int rc = grow((void **)&a->q, &a->cap_q, (size_t)M * Kp, 1, e);
    if (!rc) rc = grow((void **)&a->qa, &a->cap_qa, (size_t)M * Kp, 1, e);
    if (!rc) rc = grow((void **)&a->scale, &a->cap_m, (size_t)M, sizeof(float), e);
    if (!rc && G) rc = grow((void **)&a->gsum, &a->cap_g, (size_t)M * G, sizeof(int32_t), e);
    if (rc) return rc;
    a->M = M; a->K = K; a->Kp = Kp; a->group = group;
    return 0;
}

int qact_rows(quant_path p, quant_act *a, const float *X, size_t ldx, int m0, int m1)
{
    if (p == QUANT_PATH_AUTO) p = quant_path_best();
    /* SIMD rows need group % 32 == 0 (every 4-bit group size is) */
    int simd = p != QUANT_PATH_SCALAR && a->group % 32 == 0;
    int K = a->K, Kp = a->Kp, G = a->group > 0 ? K / a->group : 0;
    for (int m = m0; m < m1; m++) {
        const float *x = X + (size_t)m * ldx;
        int8_t *q = a->q + (size_t)m * Kp;
        uint8_t *qa = a->qa + (size_t)m * Kp;
        int32_t *gs = G ? a->gsum + (size_t)m * G : NULL;
        int r;
#if defined(__x86_64__) || defined(__i386__)
        if (simd && (p == QUANT_PATH_AVX512VNNI || p == QUANT_PATH_AMX)) r = row_avx512(x, K, Kp, a->group, q, qa, &a->scale[m], gs);
        else if (simd) r = row_avx2(x, K, Kp, a->group, q, qa, &a->scale[m], gs);
        else
#endif
            r = row_scalar(x, K, Kp, a->group, q, qa, &a->scale[m], gs);
        (void)simd;
        if (r != -1) return m;
    }
    return -1;
}

int qact_fail_row(const quant_act *a, const float *X, size_t ldx, int m, flow_err *e)
{
    const float *x = X + (size_t)m * ldx;
    int k = 0;
    while (k < a->K && isfinite(x[k])) k++;
    return flow_fail(e, FLOW_E_PARAM, "quantized activations: row %d column %d is not finite (%g)",
                     m, k, (double)x[k]);
}

int quant_act_quantize_on(quant_path p, quant_act *a, const float *X, int M, int K, size_t ldx, int group,
                          int threads, flow_err *e)
{
    int rc = qact_prepare(p, a, M, K, ldx, group, e);
    if (rc) return rc;
    if (threads <= 0) threads = omp_get_max_threads();
    if ((size_t)M * K < 65536) threads = 1;     /* a fork costs more than the work */
    int first_bad = M;
#pragma omp parallel for schedule(static) num_threads(threads) reduction(min : first_bad)
    for (int m = 0; m < M; m++) {
        int r = qact_rows(p, a, X, ldx, m, m + 1);
        if (r >= 0 && r < first_bad) first_bad = r;
    }
    return first_bad < M ? qact_fail_row(a, X, ldx, first_bad, e) : 0;
}

int quant_act_quantize(quant_act *a, const float *X, int M, int K, size_t ldx, int group, flow_err *e)
{
    return quant_act_quantize_on(quant_path_active(), a, X, M, K, ldx, group, 1, e);
}

void quant_act_sync_abs(quant_act *a)
{
    for (size_t i = 0; i < (size_t)a->M * a->Kp; i++) a->qa[i] = (uint8_t)abs(a->q[i]);
}
