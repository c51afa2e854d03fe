/* bert_ops.h — the CPU ops of the BERT model (internal to kernels/ and its
 * tests; stages use kernels.h only).
 *
 * Every op has its forward beside its backward with the same argument order.
 * Shapes are row-major.  Conventions for backward:
 *   - parameter gradients (dW, db, dg...) are ACCUMULATED (+=);
 *   - input gradients are WRITTEN unless the op says "acc".
 * Everything runs on OpenMP threads; OpenBLAS itself is kept single-threaded
 * (bert_set_threads) and gemm() splits the output across threads, so the
 * two thread pools never fight over the cores.  Work is cut into blocks
 * fixed by the shapes alone and reductions combine them in block order, so
 * results are bit-identical for any thread count.
 */
#ifndef FLOW_BERT_OPS_H
#define FLOW_BERT_OPS_H

#include <stddef.h>
#include <stdint.h>

#define BERT_LN_EPS 1e-12f

/* C[M,N] = alpha * op(A)[M,K] op(B)[K,N] + beta * C, row-major (cblas
 * conventions: ta/tb nonzero = transposed, lda/ldb/ldc row strides); the
 * output is cut into blocks by its shape alone (bert_ops.c: gemm_bias),
 * which the OpenMP threads share out. */
/* Keeps OpenBLAS single-threaded (called when a CPU model is created). */
void gemm_threads_setup(void);
void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc);

/* ---- linear (matmul + bias) ----------------------------------------- */
/* out[N,OC] = inp[N,IC] W[OC,IC]^T + b[OC]   (b may be NULL) */
void linear_forward(float *out, const float *inp, const float *W, const float *b,
                    int N, int IC, int OC);
/* dinp[N,IC] = dout W (acc: +=; dinp NULL: skipped)
 * dW[OC,IC] += dout^T inp;  db[OC] += column sums of dout (db may be NULL) */
void linear_backward(float *dinp, float *dW, float *db, const float *dout,
                     const float *inp, const float *W, int N, int IC, int OC, int acc);

/* ---- embeddings ------------------------------------------------------- */
/* out[B*T,H] = wte[ids] + wpe[t] + wtt[types]; types may be NULL (= 0). */
void embedding_forward(float *out, const int32_t *ids, const int32_t *types,
                       const float *wte, const float *wpe, const float *wtt,
                       int B, int T, int H);
/* Rows [r0, r1) of embedding_forward (of the flattened [B*T] batch) on the
 * calling thread: the same bits. */
void embedding_forward_rows(float *out, const int32_t *ids, const int32_t *types,
                            const float *wte, const float *wpe, const float *wtt,
                            int T, int H, int r0, int r1);
/* dwte[ids] += dout (except rows with id == pad_id), dwpe[t] += dout,
 * dwtt[types] += dout.  Threads own column slices: no races, fixed order. */
void embedding_backward(float *dwte, float *dwpe, float *dwtt, const float *dout,
                        const int32_t *ids, const int32_t *types,
                        int B, int T, int H, int pad_id);

/* ---- layernorm -------------------------------------------------------- */
/* out[N,C] = (inp - mean) * rstd * g + b;  mean[N], rstd[N] saved. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *g, const float *b, int N, int C);
/* The same rows on the calling thread only (inside a parallel region):
 * the same bits, row by row. */
void layernorm_forward_serial(float *out, float *mean, float *rstd, const float *inp,
                              const float *g, const float *b, int N, int C);
/* dinp[N,C] written (may not alias dout); dg[C], db[C] += */
void layernorm_backward(float *dinp, float *dg, float *db, const float *dout,
                        const float *inp, const float *g, const float *mean,
                        const float *rstd, int N, int C);

/* ---- attention -------------------------------------------------------- */
/* nh heads of size d; A = nh*d is the attention width.
 * qkv[B*T, 3A] holds Q | K | V per row (head h is columns h*d .. h*d+d).
 * probs[B,nh,T,T] = softmax(Q K^T / sqrt(d) with padded keys (mask[b,j] == 0)
 * excluded); ctx[B*T,A] = dropout(probs) V.  mask may be NULL.  Dropout of
 * the probabilities uses (key, index in probs).  scratch: attention_scratch
 * floats. */
size_t attention_scratch(int T, int d);
/* One thread's slice of it (the dropout mask; an eval chunk's k^T and, when
 * it keeps no probabilities, its probability rows). */
size_t attention_scratch_slice(int T, int d);
void attention_forward(float *ctx, float *probs, const float *qkv, const int32_t *mask,
                       int B, int T, int nh, int d, float p_drop, uint64_t key,
                       float *scratch);
/* Eval attention (no dropout) by chunks of qrows query rows: each
 * (sequence, head, chunk) one piece of work for the threads, so a batch of
 * one sequence of one head keeps two threads busy.  Its products are
 * attention_gemm.h's (a fixed summation order on every CPU path), so they
 * are not attention_forward's sgemm bits; the bits depend on neither the
 * chunking nor the thread count.  scratch: attention_scratch floats. */
void attention_forward_chunks(float *ctx, float *probs, const float *qkv, const int32_t *mask,
                              int B, int T, int nh, int d, int qrows, float *scratch);
/* The pieces of attention_forward_chunks: their count, and piece c
 * (sequence c / (nh nq), head c / nq % nh, query chunk c % nq, nq = T /
 * qrows rounded up) on the calling thread.  One definition of the chunks
 * for the op-at-a-time forward and the fused one (same bits); scratch: the
 * calling thread's attention_scratch_slice; probs NULL: the chunk's
 * probabilities stay in scratch (an eval forward that keeps none). */
int attention_chunks(int B, int T, int nh, int qrows);
void attention_forward_chunk(float *ctx, float *probs, const float *qkv, const int32_t *mask,
                             int T, int nh, int d, int qrows, int c, float *scratch);
/* dqkv[B*T,3A] written. */
void attention_backward(float *dqkv, const float *dctx, const float *qkv,
                        const float *probs, int B, int T, int nh, int d,
                        float p_drop, uint64_t key, float *scratch);

/* ---- pointwise -------------------------------------------------------- */
/* GELU, exact erf form: 0.5 x (1 + erf(x / sqrt 2)); out may be inp. */
void gelu_forward(float *out, const float *inp, size_t n);
/* The same on the calling thread only: the same bits, element by element. */
void gelu_forward_serial(float *out, const float *inp, size_t n);
/* Keeps the pointwise kernels (GELU, its gradient, softmax's and the
 * cross-entropy's exp) on 8 lanes (on = 1) or returns them to the widest
 * the CPU has (0; FLOW_CPU_SIMD=avx2 in the environment keeps 8): the same
 * bits either way (tests compare). */
void bert_ops_force_narrow(int on);
/* dinp = dout * gelu'(inp); dinp may alias dout. */
void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);
void tanh_forward(float *out, const float *inp, size_t n);
/* dinp = dout * (1 - out^2), from the forward OUTPUT; may alias dout. */
void tanh_backward(float *dinp, const float *out, const float *dout, size_t n);
/* out = a + b */
void residual_forward(float *out, const float *a, const float *b, size_t n);
/* da += dout; db += dout */
void residual_backward(float *da, float *db, const float *dout, size_t n);

/* Dropout with probability p from a counter-based RNG: element i is kept
 * iff dropout_keep(key, i, p), kept values scaled by 1/(1-p).  out may alias
 * inp.  p == 0 copies. */
int dropout_keep(uint64_t key, uint64_t i, float p);
void dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t key);
/* dinp = mask * dout / (1-p); may alias. */
void dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t key);
/* Fused post-LN residual: y = dropout(y) (in place, same mask as
 * dropout_forward with this key), out = x + y.  Backward: residual_backward
 * then dropout_backward. */
void residual_dropout_forward(float *out, const float *x, float *y, size_t n, float p,
                              uint64_t key);
/* Key for one dropout site: mixes seed, forward-call counter and site id. */
uint64_t dropout_key(uint64_t seed, uint64_t counter, uint64_t site);

/* ---- pooling (the classifier's input; kernels/cpu/pool_ops.c) --------- */
/* h[B*T, H] the final hidden states, out[B, H].  mask[B*T]: nonzero = a
 * real position (the attention mask), NULL = every position real;
 * position 0 is always real (bert_forward checks), so a count is >= 1.
 *   cls:  out[b] = h[b*T]                                  ([CLS])
 *   mean: out[b] = (sum over real t, in order t = 0..T-1, of h[b*T+t]) / n_b
 *         with n_b the number of real positions ([CLS] and [SEP] included)
 * One sequence per thread, each summed in position order: the same bytes
 * for any thread count. */
void cls_pool_forward(float *out, const float *h, int B, int T, int H);
/* dh[b*T] += dout[b]   (acc) */
void cls_pool_backward(float *dh, const float *dout, int B, int T, int H);
void mean_pool_forward(float *out, const float *h, const int32_t *mask, int B, int T, int H);
/* dh[b*T+t] += dout[b] / n_b for every real t   (acc) */
void mean_pool_backward(float *dh, const float *dout, const int32_t *mask, int B, int T, int H);

/* ---- cross-entropy ---------------------------------------------------- */
/* logits[M,V], targets[M] in [0,V); w[V] class weights or NULL.
 * lse[M] saved.  Returns the loss sum w[y]*nll / sum w[y] (0 when M == 0);
 * *correct = rows whose argmax (first max) equals the target. */
double xent_forward(float *lse, const float *logits, const int32_t *targets,
                    const float *w, int M, int V, long *correct);
/* dlogits[M,V] = scale * w[y] (softmax - onehot) / sum w[y]   (written) */
void xent_backward(float *dlogits, const float *logits, const float *lse,
                   const int32_t *targets, const float *w, int M, int V, float scale);

/* ---- soft targets (distillation) ------------------------------------ */
/* student s[M,V], teacher t[M,V] logits, temperature T > 0:
 *   loss = T^2 / M * sum_m KL(softmax(t_m/T) || softmax(s_m/T))
 * (Hinton et al.; the T^2 keeps gradient scales independent of T).  Row
 * terms in double, summed in row order. */
double soft_target_forward(const float *s, const float *t, int M, int V, float T);
/* ds[M,V] = scale * T / M * (softmax(s/T) - softmax(t/T))   (written) */
void soft_target_backward(float *ds, const float *s, const float *t, int M, int V, float T,
                          float scale);

#endif
