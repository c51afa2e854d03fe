// bert_cuda.h — what the CUDA BERT backend's two files share (internal to
// kernels/cuda, C++ only): bert_cuda.cu (activations, forward, backward)
// and bert_cuda_optim.cu (optimizer arithmetic, host <-> device sync,
// hidden states, the bert_backend_ops table).  The layout mirrors
// kernels/cpu/bert_cpu.c buffer for buffer, on the device.
#ifndef FLOW_BERT_CUDA_H
#define FLOW_BERT_CUDA_H

#include "cuda_internal.h"

extern "C" {
#include "kernels/bert_backend.h"
#include "kernels/cpu/bert_ops.h"
}

// One encoder layer: shape, parameter offsets (floats into the flat
// buffers) and offsets into the per-layer activation buffers (as bert_cpu.c).
typedef struct cu_layer {
    int nh, A, I;
    size_t qkv_w, qkv_b, o_w, o_b, ln1_g, ln1_b, i_w, i_b, o2_w, o2_b, ln2_g, ln2_b;
    size_t act_qkv, act_probs, act_ctx, act_fc1;
} cu_layer;

// The int32 inputs of one forward: one region in pinned host memory, copied
// to the device in one transfer.  Offsets in int32s, sized for max_B x
// max_T.  w_*, y_*, p_*: the embedding backward's row lists (word, token
// type, position; cuda_rows_scatter_add), built on the host from the batch.
typedef struct cu_inputs {
    size_t ids, types, mask, rows, targets, clabels;
    size_t w_uniq, w_off, w_pos, y_uniq, y_off, y_pos, p_uniq, p_off, p_pos;
    size_t total;
} cu_inputs;

struct bert_acts {
    cuda_ctx *c;
    // A CUDA failure inside an op that cannot return one (zero_grad,
    // scale_grads, adamw, grad_sumsq_blocks): kept here and returned by the
    // next forward or backward.
    int failed;
    flow_err err;

    // parameter offsets
    size_t wte, wpe, wtt, eln_g, eln_b;
    size_t mt_w, mt_b, mln_g, mln_b, mbias;
    size_t pool_w, pool_b, cls_w, cls_b;
    cu_layer *lay;

    // the last forward
    int valid, B, T, head, train, M, has_types, has_mask, has_labels, has_cw;
    int nw, ny, np;                 // rows of the three embedding row lists
    int staged;                     // h_in's upload enqueued, its forward's SYNC not reached (an error)
    uint64_t counter;
    double wsum;                    // sum of w[y] over the loss rows (host)
    cu_inputs in;
    int32_t *h_in, *d_in;           // [in.total] pinned host / device
    int *count;                     // host scratch of the row lists [max(V, type_vocab, max_T)]
    float *h_cw;                    // [C] class weights (host)
    float *h_rowloss;               // [N] pinned
    int32_t *h_rowcorrect;          // [N] pinned
    float *h_logits;                // pinned, h_logits_cap floats: [M,V] or [B,C]
    size_t h_logits_cap;
    float *h_hidden;                // host copies of the hidden states, allocated
                                    // by the first bert_hidden_states call: (L+1) x [N,H]

    // device: the flat buffers (the host's tensor order and offsets)
    float *P, *G, *Mm, *Vv;
    // device activations, named as in bert_cpu.c
    float *emb, *emb_mean, *emb_rstd, *x, *qkv, *probs, *ctx, *res1, *a, *res2;
    float *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd, *fc1;
    float *h_sel, *t, *g, *ln, *ln_mean, *ln_rstd, *lse, *rowloss, *wsum_d;
    int32_t *rowcorrect;
    float *logits, *dlogits;        // [logits_cap, V], grown to the largest M seen
    size_t logits_cap;
    float *cls_in, *pooled, *pooled_d, *clogits, *clse, *d_cw;
    float *tmp, *dx, *dres, *da, *dctx, *dqkv, *dbig, *dh, *att_scratch, *ln_scratch;
    double *part;                   // [blocks of BERT_GRAD_BLOCK] grad norm partials
};

// bert_cuda.cu
int bert_cuda_alloc(bert_model *m, flow_err *e);
void bert_cuda_release(bert_model *m);
int bert_cuda_forward(bert_model *m, const bert_batch *b, int head, int train, bert_output *out, flow_err *e);
int bert_cuda_backward(bert_model *m, float loss_scale, const float *dlogits, const float *const *dhidden,
                       flow_err *e);

// Records the first CUDA failure of an op that cannot return it (see
// bert_acts.failed).
void bert_cuda_note(bert_model *m, cudaError_t rc, const char *what);

#endif
