/* bert_ops.c — CPU forward/backward ops of the BERT model (see bert_ops.h).
 *
 * Matmuls go to OpenBLAS sgemm in large calls (all B*T rows at once); the
 * rest are OpenMP loops over rows with static schedules.  Pointwise math
 * that dominates after the GEMMs (exp in softmax, erf in GELU) uses small
 * polynomial approximations written so the compiler vectorises them
 * (relative error ~1e-7, below fp32 rounding of the surrounding sums).
 */
#include "bert_ops.h"
#include "attention_gemm.h"
#include "kernels/kernels.h"

#include "blas.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Fast, vectorisable exp and normal CDF.                              */

/* Written on GCC vector types (8 floats) with bitwise selects, so they
 * compile to straight-line SIMD on any x86-64 (two SSE halves by default,
 * AVX2 in the target_clones chunks below) — no branch, no libm call. */
/* the v8f helpers are always_inline (also at -O0): a v8f never crosses a
 * call boundary, where the AVX2 clones and the default code would disagree
 * on how it is passed */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) v8f vload(const float *p)
{
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline __attribute__((always_inline)) void vstore(float *p, v8f v)
{
    memcpy(p, &v, sizeof v);
}
#define V8(x) ((v8f){x, x, x, x, x, x, x, x})

/* vsel, vexp, vphi on 8 lanes, and vsel16, vexp16, vphi16 on 16 (the
 * AVX-512 kernels below): one body, the same bits per lane */
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
#define VM_F v8f
#define VM_I v8i
#define VM_S
#include "vmath_body.h"
#undef VM_F
#undef VM_I
#undef VM_S
#define VM_F v16f
#define VM_I v16i
#define VM_S 16
#include "vmath_body.h"
#undef VM_F
#undef VM_I
#undef VM_S

/* The widest vectors of this CPU for the pointwise kernels: 16 lanes
 * (AVX-512F) or 8 (the AVX2 and default clones).  Same bits either way;
 * FLOW_CPU_SIMD=avx2 (read once) or bert_ops_force_narrow keeps 8. */
static int wide_state = -1;     /* -1: not decided yet */

static int wide(void)
{
    int w = __atomic_load_n(&wide_state, __ATOMIC_RELAXED);
    if (w < 0) {            /* threads racing here all store the same value */
        const char *v = getenv("FLOW_CPU_SIMD");
        int ok = 0;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx512f");
#endif
        w = ok && !(v && strcmp(v, "avx2") == 0);
        __atomic_store_n(&wide_state, w, __ATOMIC_RELAXED);
    }
    return w;
}

void bert_ops_force_narrow(int on)
{
    __atomic_store_n(&wide_state, on ? 0 : -1, __ATOMIC_RELAXED);
}

/* Pointwise and row-wise ops under this many floats run on the calling
 * thread: waking the others costs more than the work (a few microseconds,
 * far more when other processes hold the cores), and every element is
 * computed the same way whichever thread has it, so the bits do not change. */
#define PAR_MIN_FLOATS 65536

/* Splits [0,n) into blocks of PAR_BLOCK floats (whole 8-float vectors)
 * that the threads claim in turn (one thread below PAR_MIN_FLOATS): a thread
 * that another process keeps off its core no longer holds back the others
 * with a fixed half of the work.  Each element is computed the same way in
 * any block, so the bits do not depend on the split. */
#define PAR_BLOCK 16384
#define PAR_CHUNKS(n, body) do { \
        size_t par_n_ = (n), par_nb_ = (par_n_ + PAR_BLOCK - 1) / PAR_BLOCK; \
        _Pragma("omp parallel for schedule(dynamic, 1) if (par_n_ >= PAR_MIN_FLOATS)") \
        for (size_t par_i_ = 0; par_i_ < par_nb_; par_i_++) { \
            size_t s = par_i_ * PAR_BLOCK, e = s + PAR_BLOCK < par_n_ ? s + PAR_BLOCK : par_n_; \
            body; \
        } \
    } while (0)

/* Scalar forms for tails: the same math, one lane used. */
static inline float fexp(float x)
{
    return vexp(V8(x))[0];
}

/* dst[j] = exp(src[j] - mx) for j < n; returns the sum (fixed order).
 * Both clones run the same lane-wise IEEE operations (no FMA), so they
 * give the same bits; the default one is two SSE halves per vector. */
__attribute__((target_clones("avx2", "default")))
static float exp_row8(float *dst, const float *src, float mx, int n)
{
    v8f acc = V8(0.0f);
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        v8f e = vexp(vload(src + j) - V8(mx));
        vstore(dst + j, e);
        acc += e;
    }
    float s = 0;
    for (; j < n; j++) {
        dst[j] = fexp(src[j] - mx);
        s += dst[j];
    }
    return s + ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* out = x Phi(x) */
__attribute__((target_clones("avx2", "default")))
static void gelu_chunk8(float *out, const float *inp, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f x = vload(inp + i);
        vstore(out + i, x * vphi(x));
    }
    if (i < n) {
        float buf[8] = {0};
        memcpy(buf, inp + i, (n - i) * sizeof(float));
        v8f x = vload(buf);
        vstore(buf, x * vphi(x));
        memcpy(out + i, buf, (n - i) * sizeof(float));
    }
}

/* dinp = dout (Phi(x) + x phi(x)) */
__attribute__((target_clones("avx2", "default")))
static void gelu_grad_chunk8(float *dinp, const float *inp, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        size_t k = n - i < 8 ? n - i : 8;
        v8f x, d;
        if (k == 8) {
            x = vload(inp + i);
            d = vload(dout + i);
        } else {
            float bx[8] = {0}, bd[8] = {0};
            memcpy(bx, inp + i, k * sizeof(float));
            memcpy(bd, dout + i, k * sizeof(float));
            x = vload(bx);
            d = vload(bd);
        }
        v8f pdf = V8(0.3989422804014327f) * vexp(V8(-0.5f) * x * x);
        v8f r = d * (vphi(x) + x * pdf);
        if (k == 8) {
            vstore(dinp + i, r);
        } else {
            float br[8];
            vstore(br, r);
            memcpy(dinp + i, br, k * sizeof(float));
        }
    }
}

/* The same three on 16 lanes (AVX-512F; Zen 4 runs a zmm operation as two
 * 256-bit halves but issues it once: GELU 1.03 -> 0.78 ns per float, one
 * core, measured 2026-12-02), the tails on the 8-lane code: the same
 * operations per lane, so the same bits (kernels_test compares).  fp-contract
 * off: AVX-512F has 512-bit FMA, and a fused multiply-add rounds once where
 * the 8-lane code rounds twice. */
#define WIDE __attribute__((target("avx512f"), optimize("fp-contract=off")))
static inline __attribute__((always_inline)) v16f vload16(const float *p)
{
    v16f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline __attribute__((always_inline)) void vstore16(float *p, v16f v)
{
    memcpy(p, &v, sizeof v);
}

/* the 8-lane accumulator of exp_row8 gets the two halves in element order */
WIDE static float exp_row16(float *dst, const float *src, float mx, int n)
{
    v8f acc = V8(0.0f);
    int j = 0;
    for (; j + 32 <= n; j += 32) {     /* two vectors in flight; the same sum order */
        v16f e0 = vexp16(vload16(src + j) - mx), e1 = vexp16(vload16(src + j + 16) - mx);
        vstore16(dst + j, e0);
        vstore16(dst + j + 16, e1);
        acc += vload(dst + j);
        acc += vload(dst + j + 8);
        acc += vload(dst + j + 16);
        acc += vload(dst + j + 24);
    }
    for (; j + 16 <= n; j += 16) {
        v16f e = vexp16(vload16(src + j) - mx);
        vstore16(dst + j, e);
        acc += vload(dst + j);
        acc += vload(dst + j + 8);
    }
    for (; j + 8 <= n; j += 8) {
        v8f e = vexp(vload(src + j) - V8(mx));
        vstore(dst + j, e);
        acc += e;
    }
    float s = 0;
    for (; j < n; j++) {
        dst[j] = fexp(src[j] - mx);
        s += dst[j];
    }
    return s + ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

WIDE static void gelu_chunk16(float *out, const float *inp, size_t n)
{
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        v16f x = vload16(inp + i), y = vload16(inp + i + 16);
        vstore16(out + i, x * vphi16(x));
        vstore16(out + i + 16, y * vphi16(y));
    }
    for (; i + 16 <= n; i += 16) {
        v16f x = vload16(inp + i);
        vstore16(out + i, x * vphi16(x));
    }
    if (i < n) gelu_chunk8(out + i, inp + i, n - i);
}

WIDE static void gelu_grad_chunk16(float *dinp, const float *inp, const float *dout, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v16f x = vload16(inp + i), d = vload16(dout + i);
        v16f pdf = 0.3989422804014327f * vexp16(-0.5f * x * x);
        vstore16(dinp + i, d * (vphi16(x) + x * pdf));
    }
    if (i < n) gelu_grad_chunk8(dinp + i, inp + i, dout + i, n - i);
}
#undef WIDE

static float exp_row(float *dst, const float *src, float mx, int n)
{
    return wide() ? exp_row16(dst, src, mx, n) : exp_row8(dst, src, mx, n);
}

static void gelu_chunk(float *out, const float *inp, size_t n)
{
    if (wide()) gelu_chunk16(out, inp, n);
    else gelu_chunk8(out, inp, n);
}

static void gelu_grad_chunk(float *dinp, const float *inp, const float *dout, size_t n)
{
    if (wide()) gelu_grad_chunk16(dinp, inp, dout, n);
    else gelu_grad_chunk8(dinp, inp, dout, n);
}

/* ------------------------------------------------------------------ */
/* gemm                                                                */

/* C[r0..r1) x [c0..c1) = bias[c] (bias may be NULL: nothing) */
static void fill_bias(float *C, int ldc, const float *bias, int r0, int r1, int c0, int c1)
{
    if (!bias)
        return;
    for (int r = r0; r < r1; r++)
        memcpy(C + (size_t)r * ldc + c0, bias + c0, (size_t)(c1 - c0) * sizeof(float));
}

/* The output is cut into blocks by its shape alone, never by the thread
 * count: every block is the same sgemm call (same shapes, so the same
 * OpenBLAS kernels and edge kernels) whichever thread runs it, and C is
 * bit-identical for any number of threads.  Blocks run along the longer side
 * of C, at least GEMM_MIN_BLOCK wide (each call repacks the other operand, so
 * narrower blocks cost packing time), at most GEMM_MAX_BLOCKS of them (enough
 * to balance 2, 3, 4 or 8 threads), starting on multiples of 16 (aligned
 * panels).  Products under GEMM_SPLIT_FLOPS multiply-adds are one call. */
#define GEMM_MIN_BLOCK 64
#define GEMM_MAX_BLOCKS 32
#define GEMM_SPLIT_FLOPS 1e6

static int gemm_nblocks(int len)
{
    int nb = len / GEMM_MIN_BLOCK;
    return nb < 1 ? 1 : nb > GEMM_MAX_BLOCKS ? GEMM_MAX_BLOCKS : nb;
}

/* first index of block b of nb over [0, len) */
static int gemm_block_start(int b, int nb, int len)
{
    return b >= nb ? len : (int)((int64_t)b * len / nb) & ~15;
}

/* gemm with an optional row bias: C = bias (broadcast over rows) + op(A)op(B)
 * when bias != NULL (beta is then ignored); each block is filled and
 * multiplied by the thread that owns it, in one parallel region. */
static void gemm_bias(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc, const float *bias)
{
    enum CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE TB = tb ? CblasTrans : CblasNoTrans;
    if (M <= 0 || N <= 0)
        return;
    if (bias)
        beta = 1.0f;
    if (K <= 0) {       /* C = beta C (sgemm would do the same) */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
                C[(size_t)i * ldc + j] = bias ? bias[j] : beta == 0 ? 0 : beta * C[(size_t)i * ldc + j];
        return;
    }
    if (blas.get_num_threads() != 1)
        blas.set_num_threads(1);    /* OpenMP owns the cores */
    int by_rows = M >= N, len = by_rows ? M : N;
    int nb = (double)M * N * K < GEMM_SPLIT_FLOPS ? 1 : gemm_nblocks(len);
    if (nb == 1) {
        fill_bias(C, ldc, bias, 0, M, 0, N);
        blas.sgemm(CblasRowMajor, TA, TB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* inside another parallel region this runs the same blocks serially */
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < nb; b++) {
        int s = gemm_block_start(b, nb, len), e = gemm_block_start(b + 1, nb, len);
        if (by_rows) {
            const float *a = ta ? A + s : A + (size_t)s * lda;
            fill_bias(C, ldc, bias, s, e, 0, N);
            blas.sgemm(CblasRowMajor, TA, TB, e - s, N, K, alpha, a, lda, B, ldb,
                        beta, C + (size_t)s * ldc, ldc);
        } else {
            const float *bm = tb ? B + (size_t)s * ldb : B + s;
            fill_bias(C, ldc, bias, 0, M, s, e);
            blas.sgemm(CblasRowMajor, TA, TB, M, e - s, K, alpha, A, lda, bm, ldb,
                        beta, C + s, ldc);
        }
    }
}

void gemm_threads_setup(void)
{
    if (blas.get_num_threads() != 1)
        blas.set_num_threads(1);    /* OpenMP owns the cores */
}

void bert_set_threads(int n)
{
    if (n <= 0)
        n = omp_get_num_procs();
    omp_set_num_threads(n);
    blas.set_num_threads(1);    /* gemm() splits work over OpenMP threads */
}

int bert_get_threads(void)
{
    return omp_get_max_threads();
}

void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc)
{
    gemm_bias(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
}

/* ------------------------------------------------------------------ */
/* linear                                                              */

void linear_forward(float *out, const float *inp, const float *W, const float *b,
                    int N, int IC, int OC)
{
    gemm_bias(0, 1, N, OC, IC, 1.0f, inp, IC, W, IC, 0.0f, out, OC, b);
}

/* db[C] += column sums of x[N,C]; threads own column slices. */
static void colsum_acc(float *db, const float *x, int N, int C)
{
    #pragma omp parallel
    {
        int i = omp_get_thread_num(), n = omp_get_num_threads();
        int per = ((C + n - 1) / n + 15) / 16 * 16;
        int s = i * per, e = s + per < C ? s + per : C;
        for (int r = 0; r < N && s < e; r++) {
            const float *row = x + (size_t)r * C;
            for (int c = s; c < e; c++)
                db[c] += row[c];
        }
    }
}

void linear_backward(float *dinp, float *dW, float *db, const float *dout,
                     const float *inp, const float *W, int N, int IC, int OC, int acc)
{
    if (dinp)
        gemm(0, 0, N, IC, OC, 1.0f, dout, OC, W, IC, acc ? 1.0f : 0.0f, dinp, IC);
    gemm(1, 0, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dW, IC);
    if (db)
        colsum_acc(db, dout, N, OC);
}

/* ------------------------------------------------------------------ */
/* embeddings                                                          */

void embedding_forward_rows(float *out, const int32_t *ids, const int32_t *types,
                            const float *wte, const float *wpe, const float *wtt,
                            int T, int H, int r0, int r1)
{
    for (int n = r0; n < r1; n++) {
        const float *w = wte + (size_t)ids[n] * H;
        const float *p = wpe + (size_t)(n % T) * H;
        const float *y = wtt + (size_t)(types ? types[n] : 0) * H;
        float *o = out + (size_t)n * H;
        for (int c = 0; c < H; c++)
            o[c] = w[c] + p[c] + y[c];
    }
}

void embedding_forward(float *out, const int32_t *ids, const int32_t *types,
                       const float *wte, const float *wpe, const float *wtt,
                       int B, int T, int H)
{
    #pragma omp parallel for schedule(static) if ((size_t)B * T * H >= PAR_MIN_FLOATS)
    for (int n = 0; n < B * T; n++)
        embedding_forward_rows(out, ids, types, wte, wpe, wtt, T, H, n, n + 1);
}

void embedding_backward(float *dwte, float *dwpe, float *dwtt, const float *dout,
                        const int32_t *ids, const int32_t *types,
                        int B, int T, int H, int pad_id)
{
    #pragma omp parallel
    {
        int i = omp_get_thread_num(), nt = omp_get_num_threads();
        int per = ((H + nt - 1) / nt + 15) / 16 * 16;
        int s = i * per, e = s + per < H ? s + per : H;
        for (int n = 0; n < B * T && s < e; n++) {
            const float *d = dout + (size_t)n * H;
            float *p = dwpe + (size_t)(n % T) * H;
            float *y = dwtt + (size_t)(types ? types[n] : 0) * H;
            for (int c = s; c < e; c++) {
                p[c] += d[c];
                y[c] += d[c];
            }
            if (ids[n] != pad_id) {
                float *w = dwte + (size_t)ids[n] * H;
                for (int c = s; c < e; c++)
                    w[c] += d[c];
            }
        }
    }
}

/* ------------------------------------------------------------------ */
/* layernorm                                                           */

static inline __attribute__((always_inline)) float hsum(v8f a)
{
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* rows [n0,n1) of layernorm_forward */
__attribute__((target_clones("avx2", "default")))
static void ln_fwd_rows(float *out, float *mean, float *rstd, const float *inp,
                        const float *g, const float *b, int n0, int n1, int C)
{
    for (int n = n0; n < n1; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        v8f acc = V8(0.0f);
        int c = 0;
        for (; c + 8 <= C; c += 8)
            acc += vload(x + c);
        float m = 0;
        for (int k = c; k < C; k++)
            m += x[k];
        m = (m + hsum(acc)) / C;
        acc = V8(0.0f);
        for (c = 0; c + 8 <= C; c += 8) {
            v8f d = vload(x + c) - V8(m);
            acc += d * d;
        }
        float v = 0;
        for (int k = c; k < C; k++)
            v += (x[k] - m) * (x[k] - m);
        v = (v + hsum(acc)) / C;
        float rs = 1.0f / sqrtf(v + BERT_LN_EPS);
        for (c = 0; c + 8 <= C; c += 8)
            vstore(o + c, (vload(x + c) - V8(m)) * V8(rs) * vload(g + c) + vload(b + c));
        for (; c < C; c++)
            o[c] = (x[c] - m) * rs * g[c] + b[c];
        mean[n] = m;
        rstd[n] = rs;
    }
}

/* rows [n0,n1) of layernorm_backward; pg/pb: this thread's partial dg/db */
__attribute__((target_clones("avx2", "default")))
static void ln_bwd_rows(float *dinp, float *pg, float *pb, const float *dout,
                        const float *inp, const float *g, const float *mean,
                        const float *rstd, int n0, int n1, int C)
{
    for (int n = n0; n < n1; n++) {
        const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
        float *di = dinp + (size_t)n * C;
        float m = mean[n], s = rstd[n];
        v8f ad = V8(0.0f), adx = V8(0.0f);
        int c = 0;
        for (; c + 8 <= C; c += 8) {
            v8f xh = (vload(x + c) - V8(m)) * V8(s), dv = vload(d + c);
            v8f dn = dv * vload(g + c);
            ad += dn;
            adx += dn * xh;
            vstore(pg + c, vload(pg + c) + dv * xh);
            vstore(pb + c, vload(pb + c) + dv);
        }
        float sum_d = 0, sum_dx = 0;
        for (int k = c; k < C; k++) {
            float xh = (x[k] - m) * s, dn = d[k] * g[k];
            sum_d += dn;
            sum_dx += dn * xh;
            pg[k] += d[k] * xh;
            pb[k] += d[k];
        }
        sum_d = (sum_d + hsum(ad)) / C;
        sum_dx = (sum_dx + hsum(adx)) / C;
        for (c = 0; c + 8 <= C; c += 8) {
            v8f xh = (vload(x + c) - V8(m)) * V8(s);
            vstore(di + c, (vload(d + c) * vload(g + c) - V8(sum_d) - xh * V8(sum_dx)) * V8(s));
        }
        for (; c < C; c++) {
            float xh = (x[c] - m) * s;
            di[c] = (d[c] * g[c] - sum_d - xh * sum_dx) * s;
        }
    }
}

void layernorm_forward_serial(float *out, float *mean, float *rstd, const float *inp,
                              const float *g, const float *b, int N, int C)
{
    ln_fwd_rows(out, mean, rstd, inp, g, b, 0, N, C);
}

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *g, const float *b, int N, int C)
{
    /* blocks of 8 rows claimed in turn (see PAR_CHUNKS); rows are independent */
    #pragma omp parallel for schedule(dynamic, 1) if ((size_t)N * C >= PAR_MIN_FLOATS)
    for (int n0 = 0; n0 < N; n0 += 8)
        ln_fwd_rows(out, mean, rstd, inp, g, b, n0, n0 + 8 < N ? n0 + 8 : N, C);
}

/* Rows per block of layernorm_backward's dg/db partials: the blocks are
 * fixed by N alone and their partials summed in block order, so dg and db
 * do not depend on the thread count. */
#define LN_BWD_ROWS 64

void layernorm_backward(float *dinp, float *dg, float *db, const float *dout,
                        const float *inp, const float *g, const float *mean,
                        const float *rstd, int N, int C)
{
    int nblk = (N + LN_BWD_ROWS - 1) / LN_BWD_ROWS;
    float *part = calloc((size_t)(nblk ? nblk : 1) * 2 * C, sizeof(float));   /* [nblk][dg|db] */
    if (!part)
        abort();
    #pragma omp parallel for schedule(static)
    for (int k = 0; k < nblk; k++) {
        int n0 = k * LN_BWD_ROWS, n1 = n0 + LN_BWD_ROWS < N ? n0 + LN_BWD_ROWS : N;
        float *pg = part + (size_t)k * 2 * C;
        ln_bwd_rows(dinp, pg, pg + C, dout, inp, g, mean, rstd, n0, n1, C);
    }
    for (int k = 0; k < nblk; k++) {
        const float *pg = part + (size_t)k * 2 * C, *pb = pg + C;
        for (int c = 0; c < C; c++) {
            dg[c] += pg[c];
            db[c] += pb[c];
        }
    }
    free(part);
}

/* ------------------------------------------------------------------ */
/* dropout                                                             */

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t dropout_key(uint64_t seed, uint64_t counter, uint64_t site)
{
    return mix64(mix64(seed + 0x9E3779B97F4A7C15ULL) ^ mix64(counter * 0xD1B54A32D192ED03ULL + 1)
                 ^ mix64(site * 0x8CB92BA72F3D8DD7ULL + 2));
}

/* The per-element hash works on 32-bit lanes so it vectorises: two rounds
 * of a 32-bit finaliser over (index, key).  Indices are taken mod 2^32
 * within a site (a site never has 2^32 elements at realistic sizes). */
typedef uint32_t v8u __attribute__((vector_size(32)));

static inline uint32_t drop_threshold(float p)
{
    double t = (double)p * 4294967296.0;
    return t >= 4294967295.0 ? 4294967295u : (uint32_t)t;
}

static inline uint32_t hash32(uint32_t x)
{
    x ^= x >> 16; x *= 0x7feb352dU; x ^= x >> 15; x *= 0x846ca68bU; x ^= x >> 16;
    return x;
}

static inline __attribute__((always_inline)) v8u vhash32(v8u x)
{
    x ^= x >> 16; x *= 0x7feb352dU; x ^= x >> 15; x *= 0x846ca68bU; x ^= x >> 16;
    return x;
}

int dropout_keep(uint64_t key, uint64_t i, float p)
{
    uint32_t h = hash32(hash32((uint32_t)i ^ (uint32_t)key) + (uint32_t)(key >> 32));
    return h >= drop_threshold(p);
}

/* dst[i] = keep(key, base+i) ? src[i]/(1-p) : 0 for i < n (may alias). */
__attribute__((target_clones("avx2", "default")))
static void dropout_apply(float *dst, const float *src, size_t n, float p, uint64_t key,
                          uint64_t base)
{
    uint32_t thr = drop_threshold(p), klo = (uint32_t)key, khi = (uint32_t)(key >> 32);
    float scale = 1.0f / (1.0f - p);
    v8u lane = {0, 1, 2, 3, 4, 5, 6, 7};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8u idx = lane + (uint32_t)(base + i);
        v8u h = vhash32(vhash32(idx ^ klo) + khi);
        v8i keep = (v8i)(h >= thr);
        vstore(dst + i, vsel(keep, vload(src + i) * V8(scale), V8(0.0f)));
    }
    for (; i < n; i++)
        dst[i] = dropout_keep(key, base + i, p) ? src[i] * scale : 0.0f;
}

void dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t key)
{
    if (p <= 0) {
        if (out != inp)
            memcpy(out, inp, n * sizeof(float));
        return;
    }
    PAR_CHUNKS(n, dropout_apply(out + s, inp + s, e - s, p, key, s));
}

void dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t key)
{
    dropout_forward(dinp, dout, n, p, key);     /* same mask, same scale */
}

void residual_dropout_forward(float *out, const float *x, float *y, size_t n, float p,
                              uint64_t key)
{
    PAR_CHUNKS(n, {
        if (p > 0)
            dropout_apply(y + s, y + s, e - s, p, key, s);
        for (size_t k = s; k < e; k++)
            out[k] = x[k] + y[k];
    });
}

/* ------------------------------------------------------------------ */
/* attention                                                           */

/* row[0..T) = softmax over the positions j with mk[j] != 0 (mk NULL: all),
 * 0 elsewhere.  The maximum is order-free (exact; NaN never wins, as in the
 * scalar compare), the exp sum is exp_row's fixed order, the masked lanes'
 * exp(-inf) terms are taken off in position order, and the scaling is
 * lane-wise: the same bits as the plain loops this replaced, on both clones. */
__attribute__((target_clones("avx2", "default")))
static void softmax_row(float *row, const int32_t *mk, int T)
{
    v8f vm = V8(-INFINITY);
    int j = 0;
    for (; j + 8 <= T; j += 8) {
        v8f x = vload(row + j);
        v8i take = x > vm;
        if (mk) {
            v8i mv;
            memcpy(&mv, mk + j, sizeof mv);
            take &= mv != 0;
            vstore(row + j, vsel(mv != 0, x, V8(-INFINITY)));
        }
        vm = vsel(take, x, vm);
    }
    float mx = -INFINITY;
    for (int k = 0; k < 8; k++)
        mx = vm[k] > mx ? vm[k] : mx;
    for (; j < T; j++) {
        if (!mk || mk[j])
            mx = row[j] > mx ? row[j] : mx;
        if (mk && !mk[j])
            row[j] = -INFINITY;
    }
    float sum = exp_row(row, row, mx, T);
    if (mk)
        for (j = 0; j < T; j++)
            if (!mk[j]) {
                sum -= row[j];
                row[j] = 0.0f;
            }
    float inv = 1.0f / sum;
    for (j = 0; j + 8 <= T; j += 8)
        vstore(row + j, vload(row + j) * V8(inv));
    for (; j < T; j++)
        row[j] *= inv;
}

size_t attention_scratch_slice(int T, int d)
{
    size_t pd = 2 * (size_t)T * T, kt = attn_scores_scratch(T, d) + (size_t)T * T;
    return pd > kt ? pd : kt;
}

size_t attention_scratch(int T, int d)
{
    return (size_t)omp_get_max_threads() * attention_scratch_slice(T, d);
}

/* Sequence b, head h of attention_forward (training): P = softmax(scale q
 * k^T), then ctx = dropout(P) v (pd: T*T floats of scratch when p_drop > 0). */
static void attention_pair(float *ctx, float *probs, const float *qkv, const int32_t *mask,
                           int T, int nh, int d, int bh, float p_drop, uint64_t key, float *pd)
{
    int H = nh * d, ld = 3 * H;     /* H: the attention width A here */
    float scale = 1.0f / sqrtf((float)d);
    int b = bh / nh, h = bh % nh;
    const float *q = qkv + (size_t)b * T * ld + h * d;
    const float *k = q + H, *v = k + H;
    float *P = probs + (size_t)bh * T * T;
    /* P[T,T] = scale * q[T,d] k[T,d]^T */
    blas.sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, d, scale,
                q, ld, k, ld, 0.0f, P, T);
    const int32_t *mk = mask ? mask + (size_t)b * T : NULL;
    for (int i = 0; i < T; i++)
        softmax_row(P + (size_t)i * T, mk, T);
    const float *A = P;
    if (p_drop > 0) {
        dropout_apply(pd, P, (size_t)T * T, p_drop, key, (uint64_t)bh * T * T);
        A = pd;
    }
    /* ctx[T,d] (row stride H) = A[T,T] v[T,d] */
    blas.sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, d, T, 1.0f,
                A, T, v, ld, 0.0f, ctx + (size_t)b * T * H + h * d, H);
}

void attention_forward(float *ctx, float *probs, const float *qkv, const int32_t *mask,
                       int B, int T, int nh, int d, float p_drop, uint64_t key,
                       float *scratch)
{
    #pragma omp parallel
    {
        float *pd = scratch + (size_t)omp_get_thread_num() * attention_scratch_slice(T, d);
        /* (sequence, head) pairs claimed in turn: a late thread does not
         * hold back the others; each pair's result does not depend on who
         * computes it */
        #pragma omp for schedule(dynamic, 1)
        for (int bh = 0; bh < B * nh; bh++)
            attention_pair(ctx, probs, qkv, mask, T, nh, d, bh, p_drop, key, pd);
    }
}

int attention_chunks(int B, int T, int nh, int qrows)
{
    return B * nh * ((T + qrows - 1) / qrows);
}

void attention_forward_chunk(float *ctx, float *probs, const float *qkv, const int32_t *mask,
                             int T, int nh, int d, int qrows, int c, float *scratch)
{
    int nq = (T + qrows - 1) / qrows, bh = c / nq, b = bh / nh, h = bh % nh;
    int i0 = c % nq * qrows, i1 = i0 + qrows < T ? i0 + qrows : T, n = i1 - i0;
    int H = nh * d, ld = 3 * H;     /* H: the attention width A here */
    const float *q = qkv + ((size_t)b * T + i0) * ld + h * d;
    const float *k = qkv + (size_t)b * T * ld + H + h * d, *v = k + H;
    float *kt = scratch, *P = probs ? probs + ((size_t)bh * T + i0) * T : scratch + attn_scores_scratch(T, d);
    const int32_t *mk = mask ? mask + (size_t)b * T : NULL;
    /* P[n,T] = softmax(scale q[n,d] k[T,d]^T), ctx[n,d] (row stride H) = P v[T,d] */
    attn_scores(P, q, ld, k, ld, n, T, d, 1.0f / sqrtf((float)d), kt);
    for (int i = 0; i < n; i++)
        softmax_row(P + (size_t)i * T, mk, T);
    attn_context(ctx + ((size_t)b * T + i0) * H + h * d, H, P, n, v, ld, T, d);
}

void attention_forward_chunks(float *ctx, float *probs, const float *qkv, const int32_t *mask,
                              int B, int T, int nh, int d, int qrows, float *scratch)
{
    #pragma omp parallel
    {
        float *sl = scratch + (size_t)omp_get_thread_num() * attention_scratch_slice(T, d);
        #pragma omp for schedule(dynamic, 1)
        for (int c = 0; c < attention_chunks(B, T, nh, qrows); c++)
            attention_forward_chunk(ctx, probs, qkv, mask, T, nh, d, qrows, c, sl);
    }
}

void attention_backward(float *dqkv, const float *dctx, const float *qkv,
                        const float *probs, int B, int T, int nh, int d,
                        float p_drop, uint64_t key, float *scratch)
{
    int H = nh * d, ld = 3 * H;     /* H: the attention width A here */
    float scale = 1.0f / sqrtf((float)d);
    #pragma omp parallel
    {
        float *pd = scratch + (size_t)omp_get_thread_num() * attention_scratch_slice(T, d);
        float *dP = pd + (size_t)T * T;
        #pragma omp for schedule(static)
        for (int bh = 0; bh < B * nh; bh++) {
            int b = bh / nh, h = bh % nh;
            const float *q = qkv + (size_t)b * T * ld + h * d;
            const float *k = q + H, *v = q + 2 * H;
            float *dq = dqkv + (size_t)b * T * ld + h * d;
            float *dk = dq + H, *dv = dq + 2 * H;
            const float *P = probs + (size_t)bh * T * T;
            const float *dc = dctx + (size_t)b * T * H + h * d;
            uint64_t base = (uint64_t)bh * T * T;
            const float *A = P;
            if (p_drop > 0) {
                dropout_apply(pd, P, (size_t)T * T, p_drop, key, base);
                A = pd;
            }
            /* dv[T,d] = A^T[T,T] dc[T,d] */
            blas.sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, d, T, 1.0f,
                        A, T, dc, H, 0.0f, dv, ld);
            /* dA[T,T] = dc[T,d] v^T */
            blas.sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, d, 1.0f,
                        dc, H, v, ld, 0.0f, dP, T);
            /* through dropout, then softmax: dS = P (dP - sum_j P dP) */
            for (int i = 0; i < T; i++) {
                float *r = dP + (size_t)i * T;
                const float *p = P + (size_t)i * T;
                if (p_drop > 0) {
                    uint64_t rb = base + (uint64_t)i * T;
                    dropout_apply(r, r, T, p_drop, key, rb);
                }
                float dot = 0;
                for (int j = 0; j < T; j++)
                    dot += p[j] * r[j];
                for (int j = 0; j < T; j++)
                    r[j] = p[j] * (r[j] - dot);
            }
            /* dq[T,d] = scale dS k;  dk[T,d] = scale dS^T q */
            blas.sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, d, T, scale,
                        dP, T, k, ld, 0.0f, dq, ld);
            blas.sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, d, T, scale,
                        dP, T, q, ld, 0.0f, dk, ld);
        }
    }
}

/* ------------------------------------------------------------------ */
/* pointwise                                                           */

void gelu_forward(float *out, const float *inp, size_t n)
{
    PAR_CHUNKS(n, gelu_chunk(out + s, inp + s, e - s));
}

void gelu_forward_serial(float *out, const float *inp, size_t n)
{
    gelu_chunk(out, inp, n);
}

void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    PAR_CHUNKS(n, gelu_grad_chunk(dinp + s, inp + s, dout + s, e - s));
}

void tanh_forward(float *out, const float *inp, size_t n)
{
    #pragma omp parallel for schedule(static) if (n >= PAR_MIN_FLOATS)
    for (size_t i = 0; i < n; i++)
        out[i] = tanhf(inp[i]);
}

void tanh_backward(float *dinp, const float *out, const float *dout, size_t n)
{
    #pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        dinp[i] = dout[i] * (1.0f - out[i] * out[i]);
}

void residual_forward(float *out, const float *a, const float *b, size_t n)
{
    #pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void residual_backward(float *da, float *db, const float *dout, size_t n)
{
    #pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
}

/* ------------------------------------------------------------------ */
/* cross-entropy                                                       */

double xent_forward(float *lse, const float *logits, const int32_t *targets,
                    const float *w, int M, int V, long *correct)
{
    /* per-row terms summed serially afterwards: an OpenMP reduction would
     * combine partial sums in an unspecified order */
    double *nll = malloc(((size_t)M + 1) * sizeof(double));
    char *hit = malloc((size_t)M + 1);
    int nt = omp_get_max_threads();
    float *scratch = malloc((size_t)nt * V * sizeof(float));   /* exp values, per thread */
    if (!nll || !hit || !scratch)
        abort();
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (int m = 0; m < M; m++) {
        float *tmp = scratch + (size_t)omp_get_thread_num() * V;
        const float *r = logits + (size_t)m * V;
        float mx = r[0];
        int arg = 0;
        for (int v = 1; v < V; v++)
            if (r[v] > mx) {
                mx = r[v];
                arg = v;
            }
        float l = mx + logf(exp_row(tmp, r, mx, V));
        lse[m] = l;
        nll[m] = (double)l - r[targets[m]];
        hit[m] = arg == targets[m];
    }
    double num = 0, den = 0;
    long ok = 0;
    for (int m = 0; m < M; m++) {
        double wy = w ? w[targets[m]] : 1.0;
        num += wy * nll[m];
        den += wy;
        ok += hit[m];
    }
    free(nll);
    free(hit);
    free(scratch);
    if (correct)
        *correct = ok;
    return den > 0 ? num / den : 0.0;
}

void xent_backward(float *dlogits, const float *logits, const float *lse,
                   const int32_t *targets, const float *w, int M, int V, float scale)
{
    double den = 0;
    for (int m = 0; m < M; m++)
        den += w ? w[targets[m]] : 1.0f;
    if (den <= 0)
        den = 1;
    #pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *r = logits + (size_t)m * V;
        float *d = dlogits + (size_t)m * V;
        float f = (float)((w ? w[targets[m]] : 1.0f) * scale / den), l = lse[m];
        exp_row(d, r, l, V);
        for (int v = 0; v < V; v++)
            d[v] *= f;
        d[targets[m]] -= f;
    }
}

/* ------------------------------------------------------------------ */
/* soft targets (distillation)                                         */

/* p[n] = softmax(x[n] / T) in double; returns log-sum-exp of x/T. */
static double soft_row(double *p, const float *x, int n, float T)
{
    double mx = -INFINITY;
    for (int j = 0; j < n; j++)
        mx = x[j] / (double)T > mx ? x[j] / (double)T : mx;
    double sum = 0;
    for (int j = 0; j < n; j++) {
        p[j] = exp(x[j] / (double)T - mx);
        sum += p[j];
    }
    for (int j = 0; j < n; j++)
        p[j] /= sum;
    return mx + log(sum);
}

double soft_target_forward(const float *s, const float *t, int M, int V, float T)
{
    double *kl = malloc(((size_t)M + 1) * sizeof(double));
    int nt = omp_get_max_threads();
    double *scr = malloc((size_t)nt * 2 * (size_t)V * sizeof(double));
    if (!kl || !scr)
        abort();
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (int m = 0; m < M; m++) {
        double *ps = scr + (size_t)omp_get_thread_num() * 2 * V, *pt = ps + V;
        const float *sr = s + (size_t)m * V, *tr = t + (size_t)m * V;
        double ls = soft_row(ps, sr, V, T), lt = soft_row(pt, tr, V, T), acc = 0;
        for (int j = 0; j < V; j++)
            if (pt[j] > 0)
                acc += pt[j] * ((tr[j] / (double)T - lt) - (sr[j] / (double)T - ls));
        kl[m] = acc;
    }
    double sum = 0;
    for (int m = 0; m < M; m++)     /* fixed order */
        sum += kl[m];
    free(kl);
    free(scr);
    return M > 0 ? (double)T * T * sum / M : 0.0;
}

void soft_target_backward(float *ds, const float *s, const float *t, int M, int V, float T,
                          float scale)
{
    int nt = omp_get_max_threads();
    double *scr = malloc((size_t)nt * 2 * (size_t)V * sizeof(double) + 1);
    if (!scr)
        abort();
    double f = M > 0 ? (double)scale * T / M : 0.0;
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (int m = 0; m < M; m++) {
        double *ps = scr + (size_t)omp_get_thread_num() * 2 * V, *pt = ps + V;
        soft_row(ps, s + (size_t)m * V, V, T);
        soft_row(pt, t + (size_t)m * V, V, T);
        float *d = ds + (size_t)m * V;
        for (int j = 0; j < V; j++)
            d[j] = (float)(f * (ps[j] - pt[j]));
    }
    free(scr);
}

/* The public soft-target loss (kernels.h): host math on host logits. */
double bert_soft_target_loss(const float *student, const float *teacher, int rows, int n,
                             float temperature, float scale, float *dstudent)
{
    if (dstudent)
        soft_target_backward(dstudent, student, teacher, rows, n, temperature, scale);
    return soft_target_forward(student, teacher, rows, n, temperature);
}
