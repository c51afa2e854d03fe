// bert_cuda_optim.cu — the rest of the CUDA BERT backend (bert_cuda.h):
// the optimizer arithmetic over the device's flat buffers (the twins of
// kernels/cpu/cpu_optim.c: zero_grad, the per-block sums of squares of
// the global norm, scaling, AdamW over the optimizer shard), host <-> device
// sync of the flat buffers (one copy each: same tensor order and offsets),
// the hidden states for distillation, and the bert_backend_ops table that
// the module exports (flow_cuda_api_v1.bert_ops, cuda_device.cu).
// Compiled for sm_86 and sm_90; never run on a GPU yet.
#include "bert_cuda.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void cu_zero_grad(bert_model *m)
{
    struct bert_acts *A = m->acts;
    bert_cuda_note(m, cudaMemsetAsync(A->G, 0, m->nparams * sizeof(float), A->c->stream), "zero_grad");
}

// part[b] for the BERT_GRAD_BLOCK blocks of [lo, hi): computed on the
// device in double (each block's floats squared in double, summed in a
// fixed tree), then SYNC: the block sums come back for the host to add in
// block order (bert_grad_norm_of_blocks) — the one sync of an optimizer step.
static void cu_grad_sumsq_blocks(bert_model *m, size_t lo, size_t hi, double *part)
{
    struct bert_acts *A = m->acts;
    size_t nb = (hi - lo + BERT_GRAD_BLOCK - 1) / BERT_GRAD_BLOCK;
    if (nb == 0) return;
    cuda_sumsq_blocks(A->c, A->part, A->G + lo, hi - lo);
    cudaError_t rc = cudaMemcpyAsync(part, A->part, nb * sizeof(double), cudaMemcpyDeviceToHost, A->c->stream);
    if (rc == cudaSuccess) rc = cudaStreamSynchronize(A->c->stream);
    if (rc == cudaSuccess) rc = cudaGetLastError();
    if (rc != cudaSuccess) {
        bert_cuda_note(m, rc, "gradient norm");
        for (size_t b = 0; b < nb; b++) part[b] = NAN;  // the next forward reports the error
    }
}

static void cu_scale_grads(bert_model *m, size_t lo, size_t hi, float f)
{
    struct bert_acts *A = m->acts;
    if (hi > lo) cuda_scale(A->c, A->G + lo, hi - lo, f);
    bert_cuda_note(m, cudaGetLastError(), "scale_grads");
}

// bert_cpu_adamw's update of params [opt_lo, opt_hi), tensor by tensor
// (weight decay per tensor), moments indexed from opt_lo; m->adam_t was
// incremented by bert_adamw_step.
static void cu_adamw(bert_model *m, const bert_adamw *hp, float lr)
{
    struct bert_acts *A = m->acts;
    size_t lo = m->opt_lo, hi = m->opt_hi;
    for (int k = 0; k < m->ntensors; k++) {
        const bert_tensor *tt = &m->tensors[k];
        size_t s = tt->offset, e = tt->offset + tt->numel;
        if (s < lo) s = lo;
        if (e > hi) e = hi;
        if (s >= e) continue;
        cuda_adamw(A->c, A->P + s, A->G + s, A->Mm + (s - lo), A->Vv + (s - lo), e - s, lr, hp->beta1, hp->beta2,
                   hp->eps, hp->weight_decay, tt->decay, m->adam_t);
    }
    bert_cuda_note(m, cudaGetLastError(), "adamw");
}

// Host <- device: params, grads and the shard's moments (adam_t,
// dropout_seed and fwd_counter live on the host already).  A sync, by
// contract: checkpoints, best weights, artifacts.
static int cu_sync_to_host(bert_model *m, flow_err *e)
{
    struct bert_acts *A = m->acts;
    cudaStream_t st = A->c->stream;
    size_t n = m->nparams * sizeof(float), no = (m->opt_hi - m->opt_lo) * sizeof(float);
    cudaError_t rc = cudaMemcpyAsync(m->params, A->P, n, cudaMemcpyDeviceToHost, st);
    if (rc == cudaSuccess) rc = cudaMemcpyAsync(m->grads, A->G, n, cudaMemcpyDeviceToHost, st);
    if (rc == cudaSuccess && no) rc = cudaMemcpyAsync(m->adam_m, A->Mm, no, cudaMemcpyDeviceToHost, st);
    if (rc == cudaSuccess && no) rc = cudaMemcpyAsync(m->adam_v, A->Vv, no, cudaMemcpyDeviceToHost, st);
    if (rc == cudaSuccess) rc = cudaStreamSynchronize(st);
    if (rc == cudaSuccess) rc = cudaGetLastError();
    return rc == cudaSuccess ? 0 : cuda_fail(e, rc, "model sync to the host");
}

// Device <- host: params and the shard's moments (the device's grads stay:
// they are the device's own during training).  A sync, by contract.
static int cu_sync_to_device(bert_model *m, flow_err *e)
{
    struct bert_acts *A = m->acts;
    if (A->failed) return flow_fail(e, A->err.code, "%s", A->err.msg);
    cudaStream_t st = A->c->stream;
    size_t n = m->nparams * sizeof(float), no = (m->opt_hi - m->opt_lo) * sizeof(float);
    cudaError_t rc = cudaMemcpyAsync(A->P, m->params, n, cudaMemcpyHostToDevice, st);
    if (rc == cudaSuccess && no) rc = cudaMemcpyAsync(A->Mm, m->adam_m, no, cudaMemcpyHostToDevice, st);
    if (rc == cudaSuccess && no) rc = cudaMemcpyAsync(A->Vv, m->adam_v, no, cudaMemcpyHostToDevice, st);
    if (rc == cudaSuccess) rc = cudaStreamSynchronize(st);
    if (rc == cudaSuccess) rc = cudaGetLastError();
    return rc == cudaSuccess ? 0 : cuda_fail(e, rc, "model sync to the device");
}

// Host copy of hidden state `layer` of the last forward, [B*T, H]
// (distillation's hidden-state loss).  SYNC: one download per call.  The
// host buffer is allocated on the first call; NULL when that fails or
// CUDA does (the error is kept for the next forward).
static const float *cu_hidden(const bert_model *mc, int layer)
{
    bert_model *m = (bert_model *)mc;   // the acts are the backend's own state
    struct bert_acts *A = m->acts;
    size_t mN = (size_t)m->max_B * m->max_T, H = (size_t)m->cfg.hidden;
    if (!A->h_hidden) {
        A->h_hidden = (float *)malloc((size_t)(m->cfg.layers + 1) * mN * H * sizeof(float));
        if (!A->h_hidden) return NULL;
    }
    float *dst = A->h_hidden + (size_t)layer * mN * H;
    cudaError_t rc = cudaMemcpyAsync(dst, A->x + (size_t)layer * mN * H, (size_t)A->B * A->T * H * sizeof(float),
                                     cudaMemcpyDeviceToHost, A->c->stream);
    if (rc == cudaSuccess) rc = cudaStreamSynchronize(A->c->stream);
    if (rc != cudaSuccess) {
        bert_cuda_note(m, rc, "hidden states");
        return NULL;
    }
    return dst;
}

// The table's entries bind the model's device first: the current device
// is per host thread, and GPU data parallelism drives one device per thread
// (stages/model/train_dp.c) and the optimizer of every replica from one.
// cudaSetDevice on the current device costs next to nothing.
#define BIND(m) cudaSetDevice((m)->gpu)
static int b_alloc(bert_model *m, flow_err *e) { BIND(m); return bert_cuda_alloc(m, e); }
static void b_release(bert_model *m) { BIND(m); bert_cuda_release(m); }
static int b_forward(bert_model *m, const bert_batch *b, int head, int train, bert_output *out, flow_err *e)
{
    BIND(m);
    return bert_cuda_forward(m, b, head, train, out, e);
}
static int b_backward(bert_model *m, float s, const float *dl, const float *const *dh, flow_err *e)
{
    BIND(m);
    return bert_cuda_backward(m, s, dl, dh, e);
}
static void b_zero_grad(bert_model *m) { BIND(m); cu_zero_grad(m); }
static void b_sumsq(bert_model *m, size_t lo, size_t hi, double *part) { BIND(m); cu_grad_sumsq_blocks(m, lo, hi, part); }
static void b_scale(bert_model *m, size_t lo, size_t hi, float f) { BIND(m); cu_scale_grads(m, lo, hi, f); }
static void b_adamw(bert_model *m, const bert_adamw *hp, float lr) { BIND(m); cu_adamw(m, hp, lr); }
static int b_to_host(bert_model *m, flow_err *e) { BIND(m); return cu_sync_to_host(m, e); }
static int b_to_device(bert_model *m, flow_err *e) { BIND(m); return cu_sync_to_device(m, e); }
static const float *b_hidden(const bert_model *m, int layer) { BIND(m); return cu_hidden(m, layer); }

#ifdef FLOW_HAVE_NCCL
extern "C" int cuda_dp_new(bert_model *const *rep, int nlocal, struct dp_group *g, const struct dp_bucket_plan *plan,
                           void **state, flow_err *e);
extern "C" void cuda_dp_free(void *state);
extern "C" void cuda_dp_arm(void *state, int w);
extern "C" int cuda_dp_finish(void *state, int w, flow_err *e);
#define CUDA_DP cuda_dp_new, cuda_dp_free, cuda_dp_arm, cuda_dp_finish
#else
#define CUDA_DP NULL, NULL, NULL, NULL      // dp_gpu_new says NCCL is missing
#endif

extern "C" const bert_backend_ops bert_cuda_ops = {
    "cuda",
    b_alloc,
    b_release,
    b_forward,
    b_backward,
    b_zero_grad,
    b_sumsq,
    b_scale,
    b_adamw,
    b_to_host,
    b_to_device,
    b_hidden,
    CUDA_DP,
};
