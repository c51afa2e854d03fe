/* attention_gemm.h — the two small fp32 products of eval attention with a
 * fixed summation order (kernels/cpu/attention_gemm.c): scores = scale q k^T
 * and context = P v for one (sequence, head) and a run of query rows.
 *
 * Why not sgemm: at the shapes of one head (a 64-query chunk against 128
 * keys of 64 floats) OpenBLAS spends about a third of its time packing and
 * its result depends on which of its kernels the CPU gets; here k is
 * transposed once per call and the rest runs from registers.
 *
 * Every entry is a dot product accumulated from 0 by fused multiply-adds
 * in index order (the scores then multiplied once by scale): the AVX-512,
 * AVX2+FMA and scalar (fmaf) paths give the same bits, lane by lane, so the
 * path does not enter any key.  Internal to kernels/ and its tests.
 */
#ifndef FLOW_ATTENTION_GEMM_H
#define FLOW_ATTENTION_GEMM_H

#include <stddef.h>

/* S[n,T] (row stride T) = scale * q[n,d] k[T,d]^T: q and k row-major with
 * row strides ldq and ldk; kt: attn_scores_scratch(T, d) floats (k^T). */
void attn_scores(float *S, const float *q, int ldq, const float *k, int ldk, int n, int T, int d,
                 float scale, float *kt);
size_t attn_scores_scratch(int T, int d);

/* ctx[n,d] (row stride ldc) = P[n,T] (row stride T) v[T,d] (row stride ldv). */
void attn_context(float *ctx, int ldc, const float *P, int n, const float *v, int ldv, int T, int d);

/* The code paths, best first where the CPU has them; FLOW_CPU_SIMD=avx2 or
 * =scalar (read once) caps the choice, attn_gemm_force (tests) sets it:
 * ATTN_GEMM_AUTO returns to the best.  Returns the path now in use, which
 * is below the one asked for when this CPU lacks it. */
enum { ATTN_GEMM_AUTO = -1, ATTN_GEMM_SCALAR = 0, ATTN_GEMM_AVX2 = 1, ATTN_GEMM_AVX512 = 2 };
int attn_gemm_force(int path);
int attn_gemm_path(void);

#endif
