/* cuda_ops.h — the CUDA twins of the BERT ops of kernels/cpu/bert_ops.h
 * (built only where nvcc exists, FLOW_HAVE_CUDA: into the module
 * libflow_cuda.so that flow loads on demand, and the static flow_cuda_ops
 * that the _gpu tests link).
 *
 * STATUS, honestly: these kernels and the fp32 BERT backend built from
 * them (bert_cuda.cu, bert_cuda_optim.cu: the bert_backend_ops table the
 * module exports as flow_cuda_api_v1.bert_ops) compile (sm_86 and sm_90
 * SASS, -Werror), and tests/cuda_ops_gpu_test.c (op by op),
 * tests/bert_cuda_gpu_test.c (model by model) and tests/train_gpu_test.sh
 * (pretrain/finetune with gpus = 1) compare them with the CPU, but as of
 * this writing they have NEVER RUN ON A GPU (the development machine has
 * none; tests/gpu/check.sh is the script to run on one).  fp32, and bf16 /
 * fp16 mixed precision in the Linear GEMMs (cuda_set_precision); K GPUs
 * per node through cuda_nccl.cu (kernels/dp.h dp_gpu_*).  The `flow` binary does not link them (CMakeLists.txt
 * says why): it loads the module when a node is granted a GPU.
 *
 * Conventions: every pointer is device memory; ops run asynchronously on
 * the context's stream (one per context; the hot path never synchronises
 * or allocates: cudaMalloc happens in cuda_alloc only, cuBLASLt
 * descriptors and layouts are created once per GEMM shape and cached, one
 * workspace per context).  Shapes are row-major like the CPU ops.
 * Parameter gradients ACCUMULATE (+=), input gradients are written unless
 * an op says acc — as in bert_ops.h.  Reductions over rows (LayerNorm
 * dg/db, bias gradients, the gradient norm) sum fixed blocks in a fixed
 * order, so they are deterministic run to run (not bitwise equal to the
 * CPU: the tests use tolerances).  Functions returning int give 0 or a
 * negative FLOW_E_* with e filled.
 */
#ifndef FLOW_CUDA_OPS_H
#define FLOW_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "engine/base/base.h"

/* Devices, counted in a short-lived child process so that the caller (the
 * scheduler, before it forks workers) never holds a CUDA context; 0 with
 * why saying what CUDA said when there is none or the runtime fails (no
 * driver).  The scheduler reaches it through the module's table
 * (flow_cuda_api_v1, base.h): `flow` loads libflow_cuda.so only when a
 * node asks for GPUs. */
int cuda_device_count_forked(char *why, size_t why_len);
/* Name, compute capability and memory of device dev (in this process). */
int cuda_device_info(int dev, char *name, size_t name_len, int *major, int *minor,
                     size_t *mem_bytes, flow_err *e);

typedef struct cuda_ctx cuda_ctx;
/* Binds device dev to this thread and creates a stream, a cuBLAS and a
 * cuBLASLt handle and the GEMM workspace. */
int cuda_ctx_new(int dev, cuda_ctx **out, flow_err *e);
void cuda_ctx_free(cuda_ctx *c);
int cuda_sync(cuda_ctx *c, flow_err *e);    /* waits for the stream; reports async errors */

int cuda_alloc(cuda_ctx *c, void **p, size_t bytes, flow_err *e);
void cuda_free(void *p);
int cuda_upload(cuda_ctx *c, void *dst, const void *src, size_t bytes, flow_err *e);
int cuda_download(cuda_ctx *c, void *dst, const void *src, size_t bytes, flow_err *e);
int cuda_memset0(cuda_ctx *c, void *p, size_t bytes, flow_err *e);

/* ---- GEMMs (cuBLASLt) ------------------------------------------------- */
/* The Linear GEMMs' arithmetic: 0 fp32 (the default), 1 bf16, 2 fp16
 * (kernels.h BERT_FP32/BF16/FP16): each operand is cast to a 16-bit copy
 * (two scratch buffers of the context, grown to the largest operand seen:
 * a cudaMalloc only at a new high-water mark), multiplied with fp32
 * accumulation into the fp32 output.  The attention GEMMs stay fp32. */
void cuda_set_precision(cuda_ctx *c, int precision);
/* out[n] = in[n] rounded to bf16 (to nearest even) / fp16 (to nearest; beyond
 * 65504: inf, which fp16 loss scaling detects) */
void cuda_cast_bf16(cuda_ctx *c, void *out, const float *in, size_t n);
void cuda_cast_fp16(cuda_ctx *c, void *out, const float *in, size_t n);
/* out[N,OC] = inp[N,IC] W[OC,IC]^T + b[OC] (b may be NULL; cuBLASLt's BIAS
 * epilogue); with gelu, pre[N,OC] receives the pre-activation and out =
 * GELU(pre) by cuda_gelu_forward (erf form: cuBLASLt's GELU epilogues are
 * the tanh approximation, which the CPU twin and HF BERT are not). */
int cuda_linear_forward(cuda_ctx *c, float *out, float *pre, const float *inp, const float *W,
                        const float *b, int N, int IC, int OC, int gelu, flow_err *e);
/* dinp[N,IC] = dout W (acc: +=; NULL: skipped); dW[OC,IC] += dout^T inp;
 * db[OC] += column sums of dout (NULL: skipped; the BGRADB epilogue). */
int cuda_linear_backward(cuda_ctx *c, float *dinp, float *dW, float *db, const float *dout,
                         const float *inp, const float *W, int N, int IC, int OC, int acc,
                         flow_err *e);

/* ---- LayerNorm, GELU, dropout, residual --------------------------------- */
void cuda_layernorm_forward(cuda_ctx *c, float *out, float *mean, float *rstd, const float *inp,
                            const float *g, const float *b, int N, int C);
/* dinp written; dg, db += (fixed 64-row blocks summed in block order;
 * scratch: cuda_layernorm_scratch(N, C) floats) */
size_t cuda_layernorm_scratch(int N, int C);
void cuda_layernorm_backward(cuda_ctx *c, float *dinp, float *dg, float *db, const float *dout,
                             const float *inp, const float *g, const float *mean,
                             const float *rstd, int N, int C, float *scratch);
void cuda_gelu_forward(cuda_ctx *c, float *out, const float *inp, size_t n);
void cuda_gelu_backward(cuda_ctx *c, float *dinp, const float *inp, const float *dout, size_t n);
/* same mask as the CPU's dropout_keep(key, i, p) */
void cuda_dropout_forward(cuda_ctx *c, float *out, const float *inp, size_t n, float p, uint64_t key);
void cuda_dropout_backward(cuda_ctx *c, float *dinp, const float *dout, size_t n, float p, uint64_t key);
void cuda_residual_forward(cuda_ctx *c, float *out, const float *a, const float *b, size_t n);

/* ---- attention (cuBLAS strided-batched GEMMs + a fused masked softmax) ----
 * Not a flash-attention kernel: P [B,nh,T,T] is materialised in global
 * memory (the CPU layout), which the backward reads.  qkv[B*T,3A] = Q|K|V,
 * ctx[B*T,A]; scratch: cuda_attention_scratch(B, T, nh, d) floats. */
size_t cuda_attention_scratch(int B, int T, int nh, int d);
int cuda_attention_forward(cuda_ctx *c, float *ctx, float *probs, const float *qkv,
                           const int32_t *mask, int B, int T, int nh, int d, float p_drop,
                           uint64_t key, float *scratch, flow_err *e);
int cuda_attention_backward(cuda_ctx *c, float *dqkv, const float *dctx, const float *qkv,
                            const float *probs, int B, int T, int nh, int d, float p_drop,
                            uint64_t key, float *scratch, flow_err *e);

/* ---- losses -------------------------------------------------------------- */
/* logits[M,V], targets[M]; w[V] or NULL.  lse[M] saved; rowloss[M] =
 * w[y] * nll and rowcorrect[M] (argmax == y) written for the host to sum
 * in row order; wsum[1] = sum w[y] (device). */
void cuda_xent_forward(cuda_ctx *c, float *lse, float *rowloss, int32_t *rowcorrect, float *wsum,
                       const float *logits, const int32_t *targets, const float *w, int M, int V);
/* dlogits = scale * w[y] (softmax - onehot) / wsum  (wsum on the device) */
void cuda_xent_backward(cuda_ctx *c, float *dlogits, const float *logits, const float *lse,
                        const int32_t *targets, const float *w, const float *wsum, int M, int V,
                        float scale);

/* ---- model-level ops (cuda_model_ops.cu), twins of bert_ops.h / pool_ops.c --- */
/* out[B*T,H] = wte[ids] + wpe[t] + wtt[types] (types NULL: 0) */
void cuda_embedding_forward(cuda_ctx *c, float *out, const int32_t *ids, const int32_t *types,
                            const float *wte, const float *wpe, const float *wtt, int B, int T, int H);
/* The embedding backward, deterministic and without atomics: for each of
 * nuniq table rows uniq[u], table[uniq[u]] += src[pos[k]] for k in
 * [off[u], off[u+1]) in that order (the host builds the lists from the
 * batch; positions in increasing order give the CPU's additions). */
void cuda_rows_scatter_add(cuda_ctx *c, float *table, const int32_t *uniq, const int32_t *off,
                           const int32_t *pos, int nuniq, const float *src, int H);
/* Host code (bert_cuda.cu builds the lists with it; runs without a GPU):
 * the lists for keys[N] in [0, nkeys) (skip: a key that adds nothing, the
 * padding id, or -1): uniq[U] the keys present in increasing order,
 * pos[off[u] .. off[u+1]) their positions in increasing order; count:
 * nkeys ints of scratch.  Returns U. */
int cuda_row_lists(const int32_t *keys, int N, int nkeys, int skip, int *count, int32_t *uniq,
                   int32_t *off, int32_t *pos);
/* dst[M,H] = src[rows[i]];  dst[rows[i]] += src[i] (rows distinct) */
void cuda_gather_rows(cuda_ctx *c, float *dst, const float *src, const int32_t *rows, int M, int H);
void cuda_scatter_add_rows(cuda_ctx *c, float *dst, const float *src, const int32_t *rows, int M, int H);
/* pooling of pool_ops.c; mask [B*T] or NULL; backward accumulates */
void cuda_cls_pool_forward(cuda_ctx *c, float *out, const float *h, int B, int T, int H);
void cuda_cls_pool_backward(cuda_ctx *c, float *dh, const float *dout, int B, int T, int H);
void cuda_mean_pool_forward(cuda_ctx *c, float *out, const float *h, const int32_t *mask, int B, int T, int H);
void cuda_mean_pool_backward(cuda_ctx *c, float *dh, const float *dout, const int32_t *mask, int B, int T, int H);
void cuda_tanh_forward(cuda_ctx *c, float *out, const float *inp, size_t n);
/* dinp = dout * (1 - out^2) (may alias dout) */
void cuda_tanh_backward(cuda_ctx *c, float *dinp, const float *out, const float *dout, size_t n);
/* g[n] *= f */
void cuda_scale(cuda_ctx *c, float *g, size_t n, float f);

/* ---- optimizer and the gradient norm ---------------------------------------- */
/* sum of squares of g[n] into *out (device double): fixed 65536-element
 * chunks, partials summed in chunk order by one block; scratch:
 * cuda_sumsq_scratch(n) doubles */
size_t cuda_sumsq_scratch(size_t n);
void cuda_sumsq(cuda_ctx *c, double *out, const float *g, size_t n, double *scratch);
/* part[b] = sum of squares of chunk b (65536 floats = BERT_GRAD_BLOCK) of g[n] */
void cuda_sumsq_blocks(cuda_ctx *c, double *part, const float *g, size_t n);
/* g *= min(1, max_norm / (sqrt(*sumsq) + 1e-6)) on the device (no host sync) */
void cuda_clip(cuda_ctx *c, float *g, size_t n, const double *sumsq, float max_norm);
/* AdamW over one tensor (bert_adamw semantics; step = adam_t after ++) */
void cuda_adamw(cuda_ctx *c, float *p, const float *g, float *m, float *v, size_t n, float lr,
                float beta1, float beta2, float eps, float weight_decay, int decay, long step);

/* NCCL (cuda_nccl.cu; FLOW_HAVE_NCCL): the bert_backend_ops dp_* entries
 * behind kernels/dp.h's dp_gpu_* (GPU data parallelism). */

#ifdef __cplusplus
}
#endif
#endif
