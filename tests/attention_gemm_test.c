/* attention_gemm_test.c — eval attention's products (kernels/cpu/attention_gemm.c):
 * every code path this CPU has gives the scalar twin's bits on shapes with
 * and without vector tails (keys, columns and query rows that are not
 * whole tiles), and the twin stays within a derived bound of a double
 * reference; eval attention by chunks equals, within that bound,
 * attention_forward (sgemm) on the same inputs, with padded keys.
 */
#include "kernels/cpu/attention_gemm.h"
#include "kernels/cpu/bert_ops.h"
#include "test.h"

#include <float.h>
#include <math.h>
#include <stdint.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float urand(void)   /* uniform in [-1, 1) */
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) * (1.0 / 8388608.0) - 1.0);
}
static float *rnd(size_t n)
{
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = urand();
    return p;
}

static const char *path_name(int p)
{
    return p == ATTN_GEMM_AVX512 ? "avx512" : p == ATTN_GEMM_AVX2 ? "avx2" : "scalar";
}

/* scores and context of one shape on every path against the scalar twin
 * (memcmp) and a double reference: a sum of K products each under 1 in
 * size, summed by K roundings of relative 2^-24, is within K * K * 2^-24
 * (|partial sums| <= K) of the exact sum */
static void test_shape(int n, int T, int d, int ldq)
{
    float *q = rnd((size_t)n * ldq), *k = rnd((size_t)T * ldq), *v = rnd((size_t)T * ldq);
    float *P = rnd((size_t)n * T);
    for (size_t i = 0; i < (size_t)n * T; i++) P[i] = fabsf(P[i]);
    float *kt = malloc(attn_scores_scratch(T, d) * sizeof(float));
    float *S[3], *C[3];
    float scale = 1.0f / sqrtf((float)d);
    int best = attn_gemm_force(ATTN_GEMM_AUTO);
    for (int p = 0; p <= best; p++) {
        CHECK(attn_gemm_force(p) == p);
        S[p] = malloc((size_t)n * T * sizeof(float));
        C[p] = malloc((size_t)n * d * sizeof(float));
        attn_scores(S[p], q, ldq, k, ldq, n, T, d, scale, kt);
        attn_context(C[p], d, P, n, v, ldq, T, d);
        if (p == ATTN_GEMM_SCALAR) continue;
        CHECK_MSG(memcmp(S[p], S[0], (size_t)n * T * sizeof(float)) == 0,
                  "scores n %d T %d d %d: path %s differs from scalar", n, T, d, path_name(p));
        CHECK_MSG(memcmp(C[p], C[0], (size_t)n * d * sizeof(float)) == 0,
                  "context n %d T %d d %d: path %s differs from scalar", n, T, d, path_name(p));
    }
    attn_gemm_force(ATTN_GEMM_AUTO);
    double worst_s = 0, worst_c = 0, bound_s = (double)d * d * FLT_EPSILON, bound_c = (double)T * T * FLT_EPSILON;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < T; j++) {
            double s = 0;
            for (int c = 0; c < d; c++) s += (double)q[(size_t)i * ldq + c] * k[(size_t)j * ldq + c];
            double err = fabs(S[0][(size_t)i * T + j] / scale - s);
            worst_s = err > worst_s ? err : worst_s;
        }
        for (int c = 0; c < d; c++) {
            double s = 0;
            for (int j = 0; j < T; j++) s += (double)P[(size_t)i * T + j] * v[(size_t)j * ldq + c];
            double err = fabs(C[0][(size_t)i * d + c] - s);
            worst_c = err > worst_c ? err : worst_c;
        }
    }
    CHECK_MSG(worst_s <= bound_s, "scores n %d T %d d %d: error %.3g over the bound %.3g", n, T, d, worst_s, bound_s);
    CHECK_MSG(worst_c <= bound_c, "context n %d T %d d %d: error %.3g over the bound %.3g", n, T, d, worst_c, bound_c);
    for (int p = 0; p <= best; p++) { free(S[p]); free(C[p]); }
    free(q); free(k); free(v); free(P); free(kt);
}

/* A planted difference must be seen: the twin's scores with one key
 * changed differ from the path's scores without it (the memcmp above can
 * fail). */
static void test_planted(void)
{
    int n = 5, T = 40, d = 24;
    float *q = rnd((size_t)n * d), *k = rnd((size_t)T * d), *a = malloc((size_t)n * T * 4), *b = malloc((size_t)n * T * 4);
    float *kt = malloc(attn_scores_scratch(T, d) * sizeof(float));
    attn_scores(a, q, d, k, d, n, T, d, 1.0f, kt);
    k[17 * d + 3] += 0.25f;
    attn_gemm_force(ATTN_GEMM_SCALAR);
    attn_scores(b, q, d, k, d, n, T, d, 1.0f, kt);
    attn_gemm_force(ATTN_GEMM_AUTO);
    CHECK(memcmp(a, b, (size_t)n * T * 4) != 0);
    CHECK(a[2 * T + 17] != b[2 * T + 17] && a[2 * T + 16] == b[2 * T + 16]);
    free(q); free(k); free(a); free(b); free(kt);
}

/* Eval attention by chunks (these products, softmax, padded keys) against
 * attention_forward at p = 0 (sgemm): the same probabilities and context
 * within float rounding; and the chunking does not change the bits. */
static void test_chunks(void)
{
    int B = 2, T = 70, nh = 3, d = 20, H = nh * d;
    size_t nq = (size_t)B * T * 3 * H, nc = (size_t)B * T * H, np = (size_t)B * nh * T * T;
    float *qkv = rnd(nq), *scr = malloc(attention_scratch(T, d) * sizeof(float));
    float *c0 = malloc(nc * 4), *p0 = malloc(np * 4), *c1 = malloc(nc * 4), *p1 = malloc(np * 4),
          *c2 = malloc(nc * 4), *p2 = malloc(np * 4);
    int32_t mask[2 * 70];
    for (int i = 0; i < B * T; i++) mask[i] = i < T || i % T < 51;     /* sequence 1: 19 padded keys */
    for (size_t i = 0; i < nq; i++) qkv[i] *= 3.0f;
    attention_forward(c0, p0, qkv, mask, B, T, nh, d, 0.0f, 1, scr);
    attention_forward_chunks(c1, p1, qkv, mask, B, T, nh, d, 64, scr);
    attention_forward_chunks(c2, p2, qkv, mask, B, T, nh, d, 16, scr);
    CHECK_MSG(memcmp(c1, c2, nc * 4) == 0 && memcmp(p1, p2, np * 4) == 0, "chunks of 64 and 16 differ");
    double wp = 0, wc = 0;
    for (size_t i = 0; i < np; i++) wp = fmax(wp, fabs((double)p1[i] - p0[i]));
    for (size_t i = 0; i < nc; i++) wc = fmax(wc, fabs((double)c1[i] - c0[i]));
    CHECK_MSG(wp < 1e-5 && wc < 1e-5, "chunked eval attention vs attention_forward: probs %.3g ctx %.3g", wp, wc);
    int zero = 1;
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < T; i++)
            for (int j = 51; j < T; j++) zero &= p1[(((size_t)1 * nh + h) * T + i) * T + j] == 0.0f;
    CHECK_MSG(zero, "padded keys got probability");
    free(qkv); free(scr); free(c0); free(p0); free(c1); free(p1); free(c2); free(p2);
}

int main(void)
{
    printf("attention_gemm_test: best path here %s\n", path_name(attn_gemm_force(ATTN_GEMM_AUTO)));
    test_shape(64, 128, 64, 3 * 128);   /* the legal model's chunk: whole tiles */
    test_shape(7, 37, 13, 13);          /* tails everywhere: rows, keys, columns */
    test_shape(22, 150, 64, 3 * 768);   /* the last chunk of 150 queries */
    test_shape(1, 8, 8, 8);
    test_shape(9, 16, 48, 50);
    test_planted();
    test_chunks();
    return test_summary("attention_gemm_test");
}
