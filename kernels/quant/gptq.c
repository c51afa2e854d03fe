/* gptq.c — GPTQ quantization (Frantar et al., "GPTQ: Accurate Post-Training
 * Quantization for Generative Pre-trained Transformers", 2022), scalar C in
 * double precision.
 *
 * For a Linear W [N, K] and calibration inputs X [n, K], H = X^T X.  Columns
 * are quantized one at a time; the rounding error of column i is spread
 * over the columns not yet quantized through the upper Cholesky factor U of
 * H^-1 (H^-1 = U^T U):  err = (w_i - q_i) / U[i,i];  w_j -= err U[i,j], j > i.
 * This minimises ||X W^T - X Q^T|| greedily, the reference algorithm.
 *
 * U without forming H^-1: with J the reversal permutation, if J H J = M M^T
 * (lower Cholesky) then H^-1 = (J M^-1 J)^T (J M^-1 J) and J M^-1 J is upper
 * triangular with a positive diagonal, i.e. it is U.  One Cholesky and one
 * triangular inverse, 2/3 K^3 flops.
 *
 * Rows of W are independent given U, so rows are processed in blocks of
 * GPTQ_ROWS (each U row read once per block) split over OpenMP threads;
 * every row's arithmetic is the same sequence whatever the thread count.
 */
#include "quant.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define GPTQ_ROWS 16

/* In-place lower Cholesky of A [K, K] (upper part ignored); -1 if not PD. */
static int cholesky_lower(double *A, int K)
{
    for (int j = 0; j < K; j++) {
        double *aj = A + (size_t)j * K;
        double d = aj[j];
        for (int k = 0; k < j; k++) d -= aj[k] * aj[k];
        if (!(d > 0.0)) return -1;
        d = sqrt(d);
        aj[j] = d;
#pragma omp parallel for schedule(static)
        for (int i = j + 1; i < K; i++) {
            double *ai = A + (size_t)i * K;
            double s = ai[j];
            for (int k = 0; k < j; k++) s -= ai[k] * aj[k];
            ai[j] = s / d;
        }
    }
    return 0;
}

/* In-place inverse of a lower triangular L [K, K] (forward substitution
 * per column; column c of the inverse only needs rows >= c). */
static void lower_inverse(double *L, int K, double *tmp)
{
    /* tmp = L^-1, computed column by column, then copied back. */
    memset(tmp, 0, (size_t)K * K * sizeof(double));
#pragma omp parallel for schedule(dynamic, 8)
    for (int c = 0; c < K; c++) {
        for (int i = c; i < K; i++) {
            double s = i == c ? 1.0 : 0.0;
            const double *li = L + (size_t)i * K;
            for (int k = c; k < i; k++) s -= li[k] * tmp[(size_t)k * K + c];
            tmp[(size_t)i * K + c] = s / li[i];
        }
    }
    memcpy(L, tmp, (size_t)K * K * sizeof(double));
}

/* Quantization grid of one group of one row: what the column loop needs. */
typedef struct grid { float s; uint8_t z; } grid;

static grid find_grid(const gptq_params *p, const double *w, int n)
{
    grid g = { 0.0f, 8 };
    float buf[128];
    double amax = 0.0;
    for (int i = 0; i < n; i++) amax = fmax(amax, fabs(w[i]));
    if (p->bits == 8) { g.s = (float)(amax / 127.0); g.z = 0; return g; }
    if (p->codebook) { g.s = (float)(amax / 127.0); g.z = 0; return g; }
    for (int i = 0; i < n; i++) buf[i] = (float)w[i];
    quant_u4_params(buf, n, 1, p->sym, &g.s, &g.z);
    return g;
}

/* Code of value v on grid g, and its dequantized value in *dq. */
static int quantize_one(const gptq_params *p, grid g, double v, double *dq)
{
    if (p->bits == 8) {
        double r = g.s > 0.0f ? rint(v / g.s) : 0.0;
        int c = r > 127 ? 127 : r < -127 ? -127 : (int)r;
        *dq = (double)g.s * c;
        return c;
    }
    if (p->codebook) {
        int c = quant_nf4_code(g.s > 0.0f ? (float)(v / g.s) : 0.0f, p->codebook);
        *dq = (double)g.s * p->codebook[c];
        return c;
    }
    int c = quant_u4_code((float)v, g.s, g.z);
    *dq = (double)g.s * (c - g.z);
    return c;
}

static int check_params(const gptq_params *p, int N, int K, flow_err *e)
{
    if (N <= 0 || K <= 0) return flow_fail(e, FLOW_E_PARAM, "gptq: bad shape [%d, %d]", N, K);
    if (p->bits != 4 && p->bits != 8)
        return flow_fail(e, FLOW_E_PARAM, "gptq: bits %d is not 4 or 8", p->bits);
    if (p->bits == 4 && p->group != 32 && p->group != 64 && p->group != 128)
        return flow_fail(e, FLOW_E_PARAM, "gptq: group size %d is not 32, 64 or 128", p->group);
    if (p->bits == 4 && K % p->group)
        return flow_fail(e, FLOW_E_PARAM, "gptq: group size %d does not divide the input width %d",
                         p->group, K);
    if (!(p->damp >= 0.0) || p->damp > 1.0)
        return flow_fail(e, FLOW_E_PARAM, "gptq: damp %g is outside [0, 1]", p->damp);
    return 0;
}

/* Builds U (upper Cholesky factor of (P H P^T + damp I)^-1) into U. */
static int inverse_factor(const double *H, int K, const int *perm, double damp_rel, double *U,
                          flow_err *e)
{
    double *R = malloc((size_t)K * K * sizeof(double));
    double *tmp = malloc((size_t)K * K * sizeof(double));
    if (!R || !tmp) { free(R); free(tmp); return flow_fail(e, FLOW_E_NOMEM, "gptq: no memory for [%d, %d]", K, K); }
    double mean = 0.0;
    for (int i = 0; i < K; i++) {
        double d = H[(size_t)perm[i] * K + perm[i]];
        mean += d == 0.0 ? 1.0 : d;
    }
    double damp = damp_rel * mean / K;
    /* R = J (P H P^T + damp I) J, dead columns (diag 0) get diag 1. */
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) {
            int a = perm[K - 1 - i], b = perm[K - 1 - j];
            double v = H[(size_t)a * K + b];
            if (i == j) v = (v == 0.0 ? 1.0 : v) + damp;
            R[(size_t)i * K + j] = v;
        }
    if (cholesky_lower(R, K)) {
        free(R); free(tmp);
        return flow_fail(e, FLOW_E_INPUT,
                         "gptq: the calibration Hessian plus damping (damp %g) is not positive definite; "
                         "raise damp or use more calibration sequences", damp_rel);
    }
    for (int i = 0; i < K; i++)                 /* clear the upper part */
        for (int j = i + 1; j < K; j++) R[(size_t)i * K + j] = 0.0;
    lower_inverse(R, K, tmp);
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) U[(size_t)i * K + j] = R[(size_t)(K - 1 - i) * K + (K - 1 - j)];
    free(R); free(tmp);
    return 0;
}

int gptq_quantize(const float *W, int N, int K, const double *H, const gptq_params *p,
                  int8_t *q8, uint8_t *packed, float *s, uint8_t *z, flow_err *e)
{
    int rc = check_params(p, N, K, e);
    if (rc) return rc;
    int g = p->bits == 8 ? K : p->group, G = K / g;
    int *perm = malloc((size_t)K * sizeof(int));
    double *U = malloc((size_t)K * K * sizeof(double));
    uint8_t *codes = p->bits == 4 ? malloc((size_t)N * K) : NULL;
    if (!perm || !U || (p->bits == 4 && !codes)) {
        free(perm); free(U); free(codes);
        return flow_fail(e, FLOW_E_NOMEM, "gptq: no memory for [%d, %d]", N, K);
    }
    for (int i = 0; i < K; i++) perm[i] = i;
    if (p->act_order) {                         /* stable: ties keep index order */
        for (int i = 1; i < K; i++) {
            int v = perm[i], j = i;
            double dv = H[(size_t)v * K + v];
            while (j > 0 && H[(size_t)perm[j - 1] * K + perm[j - 1]] < dv) { perm[j] = perm[j - 1]; j--; }
            perm[j] = v;
        }
    }
    rc = inverse_factor(H, K, perm, p->damp, U, e);
    if (rc) { free(perm); free(U); free(codes); return rc; }

    int nblocks = (N + GPTQ_ROWS - 1) / GPTQ_ROWS;
#pragma omp parallel
    {
        double *w = malloc((size_t)GPTQ_ROWS * K * sizeof(double));   /* permuted rows */
        double *orig = malloc((size_t)K * sizeof(double));
        grid *gr = malloc((size_t)GPTQ_ROWS * G * sizeof(grid));
#pragma omp for schedule(dynamic, 1)
        for (int b = 0; b < nblocks; b++) {
            int r0 = b * GPTQ_ROWS, nr = N - r0 < GPTQ_ROWS ? N - r0 : GPTQ_ROWS;
            for (int r = 0; r < nr; r++) {
                const float *src = W + (size_t)(r0 + r) * K;
                for (int i = 0; i < K; i++) w[(size_t)r * K + i] = src[perm[i]];
                if (p->act_order) {             /* static groups on the original row */
                    for (int j = 0; j < G; j++) {
                        for (int i = 0; i < g; i++) orig[i] = src[j * g + i];
                        gr[r * G + j] = find_grid(p, orig, g);
                    }
                }
            }
            for (int i = 0; i < K; i++) {
                int col = perm[i], j = col / g;
                double d = U[(size_t)i * K + i];
                const double *urow = U + (size_t)i * K;
                for (int r = 0; r < nr; r++) {
                    double *wr = w + (size_t)r * K;
                    if (!p->act_order && i % g == 0) gr[r * G + j] = find_grid(p, wr + i, g);
                    double dq;
                    int c = quantize_one(p, gr[r * G + j], wr[i], &dq);
                    size_t at = (size_t)(r0 + r) * K + col;
                    if (p->bits == 8) q8[at] = (int8_t)c;
                    else codes[at] = (uint8_t)c;
                    double err = (wr[i] - dq) / d;
                    for (int k = i + 1; k < K; k++) wr[k] -= err * urow[k];
                }
            }
            for (int r = 0; r < nr; r++)
                for (int j = 0; j < G; j++) {
                    s[(size_t)(r0 + r) * G + j] = gr[r * G + j].s;
                    if (z) z[(size_t)(r0 + r) * G + j] = gr[r * G + j].z;
                }
        }
        free(w); free(orig); free(gr);
    }
    if (p->bits == 4) quant_u4_pack(codes, N, K, g, packed);
    free(perm); free(U); free(codes);
    return 0;
}
