/* attention_gemm.c — eval attention's two products with a fixed summation
 * order on AVX-512, AVX2+FMA or scalar code (attention_gemm.h), and the
 * choice of path. */
#include "attention_gemm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define AG_X86 1
#endif

size_t attn_scores_scratch(int T, int d)
{
    return (size_t)T * d;
}

/* kt[c,j] = k[j,c] (T keys of d floats), in 8x8 blocks */
static void transpose_keys(float *kt, const float *k, int ldk, int T, int d)
{
    for (int j0 = 0; j0 < T; j0 += 8)
        for (int c0 = 0; c0 < d; c0 += 8) {
            int j1 = j0 + 8 < T ? j0 + 8 : T, c1 = c0 + 8 < d ? c0 + 8 : d;
            for (int j = j0; j < j1; j++)
                for (int c = c0; c < c1; c++)
                    kt[(size_t)c * T + j] = k[(size_t)j * ldk + c];
        }
}

/* ---- the scalar twin: the same sums, one entry at a time --------------- */

/* columns [j0, cols) of C = scale A B (attention_gemm_body.h's product) */
static void product_scalar(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int n,
                           int cols, int K, float scale, int j0)
{
    for (int i = 0; i < n; i++)
        for (int j = j0; j < cols; j++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++)
                s = fmaf(A[(size_t)i * lda + k], B[(size_t)k * ldb + j], s);
            C[(size_t)i * ldc + j] = s * scale;
        }
}

#ifdef AG_X86
/* transpose_keys with 8x8 blocks in ymm registers (the partial blocks at the
 * edges as scalar copies): a copy, so the bits are the same */
__attribute__((target("avx2"))) static void transpose_keys_avx2(float *kt, const float *k, int ldk, int T, int d)
{
    int j0 = 0;
    for (; j0 + 8 <= T; j0 += 8) {
        int c0 = 0;
        for (; c0 + 8 <= d; c0 += 8) {
            __m256 r[8], t[8];
            for (int i = 0; i < 8; i++)
                r[i] = _mm256_loadu_ps(k + (size_t)(j0 + i) * ldk + c0);
            for (int i = 0; i < 8; i += 2) {
                t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
            }
            for (int i = 0; i < 8; i += 4) {
                r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
                r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
                r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
                r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
            }
            /* r[0..3]: columns 0, 1, 2, 3 of rows 0-3 (low) and 4-7 of the
             * same rows (high); r[4..7] the same for rows 4-7 */
            for (int i = 0; i < 4; i++) {
                _mm256_storeu_ps(kt + (size_t)(c0 + i) * T + j0, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
                _mm256_storeu_ps(kt + (size_t)(c0 + i + 4) * T + j0, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
            }
        }
        for (int j = j0; j < j0 + 8; j++)
            for (int c = c0; c < d; c++)
                kt[(size_t)c * T + j] = k[(size_t)j * ldk + c];
    }
    for (int j = j0; j < T; j++)
        for (int c = 0; c < d; c++)
            kt[(size_t)c * T + j] = k[(size_t)j * ldk + c];
}

/* ---- AVX2 + FMA: 8 lanes, tiles of 3 rows x 4 vectors (12 of the 16 ymm
 * registers accumulate) --------------------------------------------------- */
#define AG_V __m256
#define AG_W 8
#define AG_R 3
#define AG_LOAD(p) _mm256_loadu_ps(p)
#define AG_STORE(p, x) _mm256_storeu_ps(p, x)
#define AG_BCAST(x) _mm256_set1_ps(x)
#define AG_ZERO() _mm256_setzero_ps()
#define AG_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define AG_MUL(a, b) _mm256_mul_ps(a, b)
#define AG_FN __attribute__((target("avx2,fma")))
#define AG_S _avx2
#include "attention_gemm_body.h"

/* ---- AVX-512F: 16 lanes, tiles of 4 rows x 4 vectors (16 of 32 zmm) ---- */
#define AG_V __m512
#define AG_W 16
#define AG_R 4
#define AG_LOAD(p) _mm512_loadu_ps(p)
#define AG_STORE(p, x) _mm512_storeu_ps(p, x)
#define AG_BCAST(x) _mm512_set1_ps(x)
#define AG_ZERO() _mm512_setzero_ps()
#define AG_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define AG_MUL(a, b) _mm512_mul_ps(a, b)
#define AG_FN __attribute__((target("avx512f")))
#define AG_S _avx512
#include "attention_gemm_body.h"
#endif

/* ---- the path ------------------------------------------------------------ */

static int best_path(void)
{
    int best = ATTN_GEMM_SCALAR;
#ifdef AG_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        best = ATTN_GEMM_AVX2;
    if (__builtin_cpu_supports("avx512f"))
        best = ATTN_GEMM_AVX512;
#endif
    const char *cap = getenv("FLOW_CPU_SIMD");
    if (cap && strcmp(cap, "scalar") == 0)
        best = ATTN_GEMM_SCALAR;
    else if (cap && strcmp(cap, "avx2") == 0 && best > ATTN_GEMM_AVX2)
        best = ATTN_GEMM_AVX2;
    return best;
}

static int path_state = ATTN_GEMM_AUTO;   /* AUTO: not decided yet */

int attn_gemm_path(void)
{
    int p = __atomic_load_n(&path_state, __ATOMIC_RELAXED);
    if (p == ATTN_GEMM_AUTO) {      /* threads racing here all store the same value */
        p = best_path();
        __atomic_store_n(&path_state, p, __ATOMIC_RELAXED);
    }
    return p;
}

int attn_gemm_force(int path)
{
    int best = best_path();
    int p = path == ATTN_GEMM_AUTO || path > best ? best : path;
    __atomic_store_n(&path_state, p, __ATOMIC_RELAXED);
    return p;
}

/* C[n, cols] = scale A[n,K] B[K, cols] on the path in use */
static void product(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int n, int cols,
                    int K, float scale)
{
    int j = 0;
#ifdef AG_X86
    switch (attn_gemm_path()) {
    case ATTN_GEMM_AVX512: j = product_avx512(C, ldc, A, lda, B, ldb, n, cols, K, scale); break;
    case ATTN_GEMM_AVX2: j = product_avx2(C, ldc, A, lda, B, ldb, n, cols, K, scale); break;
    default: break;
    }
#endif
    product_scalar(C, ldc, A, lda, B, ldb, n, cols, K, scale, j);
}

void attn_scores(float *S, const float *q, int ldq, const float *k, int ldk, int n, int T, int d,
                 float scale, float *kt)
{
#ifdef AG_X86
    if (attn_gemm_path() >= ATTN_GEMM_AVX2) transpose_keys_avx2(kt, k, ldk, T, d);
    else
#endif
        transpose_keys(kt, k, ldk, T, d);
    product(S, T, q, ldq, kt, T, n, T, d, scale);
}

/* scale 1: the multiply is exact, so these are the plain sums */
void attn_context(float *ctx, int ldc, const float *P, int n, const float *v, int ldv, int T, int d)
{
    product(ctx, ldc, P, T, v, ldv, n, d, T, 1.0f);
}
