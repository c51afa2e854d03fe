/* bert_backend.h — the backend interface of the BERT model (internal to
 * kernels/).  A backend is a table of functions; kernels.h's public bert_*
 * functions validate arguments, then dispatch through m->ops.  The CPU
 * backend (bert_cpu.c, bert_optim.c) is the reference; the CUDA backend
 * (kernels/cuda/bert_cuda.cu, bert_cuda_optim.cu: bert_cuda_ops) is the
 * module's flow_cuda_api_v1.bert_ops, which bert_model_new picks for a
 * GPU device, so stages never change.
 */
#ifndef FLOW_BERT_BACKEND_H
#define FLOW_BERT_BACKEND_H

#include "kernels.h"

struct dp_group;
struct dp_bucket_plan;

typedef struct bert_backend_ops {
    const char *name;
    /* Allocates m->acts (and device copies) for m->max_B x m->max_T. */
    int (*alloc)(bert_model *m, flow_err *e);
    void (*release)(bert_model *m);
    /* Arguments already validated by bert_forward / bert_backward. */
    int (*forward)(bert_model *m, const bert_batch *b, int head, int train,
                   bert_output *out, flow_err *e);
    /* dlogits NULL: from the forward's own loss, times loss_scale; else the
     * given gradient at the logits.  dhidden: NULL or L+1 entries (each
     * NULL or [B*T,H]) added at the hidden states. */
    int (*backward)(bert_model *m, float loss_scale, const float *dlogits,
                    const float *const *dhidden, flow_err *e);
    void (*zero_grad)(bert_model *m);
    /* bert_grad_sumsq_blocks: part[b] for the BERT_GRAD_BLOCK blocks of [lo, hi) */
    void (*grad_sumsq_blocks)(bert_model *m, size_t lo, size_t hi, double *part);
    /* grads[lo, hi) *= f */
    void (*scale_grads)(bert_model *m, size_t lo, size_t hi, float f);
    /* AdamW over the optimizer shard [m->opt_lo, m->opt_hi) */
    void (*adamw)(bert_model *m, const bert_adamw *hp, float lr);
    int (*sync_to_host)(bert_model *m, flow_err *e);
    int (*sync_to_device)(bert_model *m, flow_err *e);
    /* Host pointer to hidden state `layer` of the last forward. */
    const float *(*hidden)(const bert_model *m, int layer);
    /* GPU data parallelism (kernels/dp.h dp_gpu_*; kernels/cuda/cuda_nccl.cu).
     * NULL: this backend has none (the CPU's, which uses dp_reducer; a CUDA
     * module built without NCCL).  dp_new sets every rep[w]->dp_state. */
    int (*dp_new)(bert_model *const *rep, int nlocal, struct dp_group *g, const struct dp_bucket_plan *plan,
                  void **state, flow_err *e);
    void (*dp_free)(void *state);
    void (*dp_arm)(void *state, int w);
    int (*dp_finish)(void *state, int w, flow_err *e);
} bert_backend_ops;

extern const bert_backend_ops bert_cpu_ops;

/* Activation bytes the CPU backend needs (used by bert_model_bytes). */
size_t bert_cpu_acts_bytes(const bert_config *c, int B, int T);

/* CPU implementations shared with other backends' host fallbacks. */
void bert_cpu_zero_grad(bert_model *m);
void bert_cpu_grad_sumsq_blocks(bert_model *m, size_t lo, size_t hi, double *part);
void bert_cpu_scale_grads(bert_model *m, size_t lo, size_t hi, float f);
void bert_cpu_adamw(bert_model *m, const bert_adamw *hp, float lr);

/* Profiler hooks: time one op (fwd = 1 forward, 0 backward/optimizer). */
double bert_prof_now(void);
void bert_prof_add(bert_model *m, int kind, int fwd, double t0, double flops);

#endif
