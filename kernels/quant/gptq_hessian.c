/* gptq_hessian.c — the calibration Hessian of GPTQ, H += X^T X (double),
 * for calibration rows X [n, K] (float): the scalar twin and a blocked AVX2
 * loop that computes the same bits.
 *
 * The definition (the scalar twin): every element H[i][j], j >= i, is
 *     for r = 0..n-1 in order: if x[r][i] != 0: h = h + x[r][i] * x[r][j]
 * in double, a separate multiply and add (no FMA: ISO C, and the AVX2
 * target here has no fma), then the upper triangle is mirrored.  Skipping
 * x[r][i] == 0 is part of the definition (0 * inf would otherwise make NaN).
 *
 * The AVX2 loop keeps that order per element, so its H is bit-identical to
 * the twin's for any input and any thread count:
 *   - rows are taken in chunks of HESS_ROWS (ascending); a chunk is packed
 *     once into doubles, column blocks of 4 (the i side, one broadcast per
 *     row) and panels of 12 (the j side, three vectors per row), so the
 *     tile loop reads both contiguously;
 *   - a tile of 4 x 12 elements of H stays in 12 registers across the rows
 *     of a chunk; each row adds xi * xj to all 12 (the fast path when the
 *     four xi are non-zero; otherwise the rows with xi == 0 are skipped, as
 *     the twin does);
 *   - threads split the 4-row blocks of H within a chunk (each element is
 *     one thread's), chunks run one after the other.
 * Cost: K^2 n / 2 multiply-adds (77 G for the 3072-wide FFN output with
 * 16k calibration rows), 12 per 4 + 3 vector instructions on the packed
 * data instead of one scalar multiply-add each.
 */
#include "quant.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

static void mirror_upper(double *H, int K)
{
    for (int i = 0; i < K; i++)
        for (int j = i + 1; j < K; j++) H[(size_t)j * K + i] = H[(size_t)i * K + j];
}

/* The scalar twin (the definition above); threads split rows of H. */
static void hessian_scalar(double *H, const float *X, int n, int K)
{
#pragma omp parallel for schedule(dynamic, 8)
    for (int i = 0; i < K; i++) {
        double *h = H + (size_t)i * K;
        for (int r = 0; r < n; r++) {
            const float *x = X + (size_t)r * K;
            double xi = x[i];
            if (xi == 0.0) continue;
            for (int j = i; j < K; j++) h[j] += xi * (double)x[j];
        }
    }
    mirror_upper(H, K);
}

#if defined(__x86_64__) || defined(__i386__)
#define AVX2 __attribute__((target("avx2")))
#define HESS_ROWS 128           /* rows per chunk: both packings ~3 MB at K = 3072 */
#define HESS_I 4                /* H rows per tile (one broadcast each) */
#define HESS_J 12               /* H columns per tile (three 4-double vectors) */

/* Tile H[i0.., j0..] (ni <= 4 rows, nj <= 12 columns stored) over the nr
 * packed rows: pi [nr][4] (xi of the block), pj [nr][12] (xj of the panel). */
static AVX2 void tile_4x12(double *H, int K, int i0, int ni, int j0, int nj, const double *pi,
                           const double *pj, int nr)
{
    __m256d acc[HESS_I][3];
    for (int a = 0; a < HESS_I; a++)
        for (int b = 0; b < 3; b++) {
            double t[4] = { 0, 0, 0, 0 };
            if (a < ni)
                for (int c = 0; c < 4 && 4 * b + c < nj; c++) t[c] = H[(size_t)(i0 + a) * K + j0 + 4 * b + c];
            acc[a][b] = _mm256_loadu_pd(t);
        }
    for (int r = 0; r < nr; r++) {
        const double *xi = pi + (size_t)r * HESS_I, *xj = pj + (size_t)r * HESS_J;
        __m256d x0 = _mm256_loadu_pd(xj), x1 = _mm256_loadu_pd(xj + 4), x2 = _mm256_loadu_pd(xj + 8);
        if (xi[0] != 0.0 && xi[1] != 0.0 && xi[2] != 0.0 && xi[3] != 0.0) {
            _Pragma("GCC unroll 4") for (int a = 0; a < HESS_I; a++) {
                __m256d v = _mm256_broadcast_sd(xi + a);
                acc[a][0] = _mm256_add_pd(acc[a][0], _mm256_mul_pd(v, x0));
                acc[a][1] = _mm256_add_pd(acc[a][1], _mm256_mul_pd(v, x1));
                acc[a][2] = _mm256_add_pd(acc[a][2], _mm256_mul_pd(v, x2));
            }
        } else {
            _Pragma("GCC unroll 4") for (int a = 0; a < HESS_I; a++) {
                if (xi[a] == 0.0) continue;     /* the twin skips this row for element row i0 + a */
                __m256d v = _mm256_broadcast_sd(xi + a);
                acc[a][0] = _mm256_add_pd(acc[a][0], _mm256_mul_pd(v, x0));
                acc[a][1] = _mm256_add_pd(acc[a][1], _mm256_mul_pd(v, x1));
                acc[a][2] = _mm256_add_pd(acc[a][2], _mm256_mul_pd(v, x2));
            }
        }
    }
    for (int a = 0; a < ni; a++)
        for (int b = 0; b < 3; b++) {
            double t[4];
            _mm256_storeu_pd(t, acc[a][b]);
            for (int c = 0; c < 4 && 4 * b + c < nj; c++) H[(size_t)(i0 + a) * K + j0 + 4 * b + c] = t[c];
        }
}

/* 0: done; -1: out of memory (the caller falls back to the twin). */
static int hessian_avx2(double *H, const float *X, int n, int K)
{
    int nib = (K + HESS_I - 1) / HESS_I, njp = (K + HESS_J - 1) / HESS_J;
    /* pi [nib][HESS_ROWS][4], pj [njp][HESS_ROWS][12]; padding columns are
     * 1 on the i side (keeps the fast path; never stored) and 0 on the j side */
    double *pi = malloc((size_t)nib * HESS_ROWS * HESS_I * sizeof(double));
    double *pj = malloc((size_t)njp * HESS_ROWS * HESS_J * sizeof(double));
    if (!pi || !pj) { free(pi); free(pj); return -1; }
    for (int r0 = 0; r0 < n; r0 += HESS_ROWS) {
        int nr = n - r0 < HESS_ROWS ? n - r0 : HESS_ROWS;
#pragma omp parallel
        {
#pragma omp for schedule(static)
            for (int r = 0; r < nr; r++) {
                const float *x = X + (size_t)(r0 + r) * K;
                for (int b = 0; b < nib; b++)
                    for (int c = 0; c < HESS_I; c++) {
                        int k = b * HESS_I + c;
                        pi[((size_t)b * HESS_ROWS + r) * HESS_I + c] = k < K ? (double)x[k] : 1.0;
                    }
                for (int b = 0; b < njp; b++)
                    for (int c = 0; c < HESS_J; c++) {
                        int k = b * HESS_J + c;
                        pj[((size_t)b * HESS_ROWS + r) * HESS_J + c] = k < K ? (double)x[k] : 0.0;
                    }
            }
            /* block ib: rows [4 ib, 4 ib + 4), panels from the one holding 4 ib */
#pragma omp for schedule(dynamic, 1)
            for (int ib = 0; ib < nib; ib++) {
                int i0 = ib * HESS_I, ni = K - i0 < HESS_I ? K - i0 : HESS_I;
                for (int jb = i0 / HESS_J; jb < njp; jb++) {
                    int j0 = jb * HESS_J, nj = K - j0 < HESS_J ? K - j0 : HESS_J;
                    tile_4x12(H, K, i0, ni, j0, nj, pi + (size_t)ib * HESS_ROWS * HESS_I,
                              pj + (size_t)jb * HESS_ROWS * HESS_J, nr);
                }
            }
        }
    }
    free(pi);
    free(pj);
    mirror_upper(H, K);     /* also overwrites the lower elements the diagonal tiles touched */
    return 0;
}
#endif

void gptq_hessian_add_on(quant_path p, double *H, const float *X, int n, int K)
{
    if (p == QUANT_PATH_AUTO) p = quant_path_best();
#if defined(__x86_64__) || defined(__i386__)
    /* every path above scalar implies AVX2 (cpu_path.c) */
    if (p != QUANT_PATH_SCALAR && quant_path_supported(QUANT_PATH_AVX2) && hessian_avx2(H, X, n, K) == 0)
        return;
#endif
    hessian_scalar(H, X, n, K);
}

void gptq_hessian_add(double *H, const float *X, int n, int K)
{
    gptq_hessian_add_on(quant_path_active(), H, X, n, K);
}
