/* bert_cpu.h — internal to the CPU backend (kernels/cpu/): the activation
 * memory of a model (struct bert_acts, one encoder layer's offsets and
 * pointers) and the pieces the op-at-a-time forward (bert_cpu.c) and the
 * fused quantized encoder (bert_cpu_fused.c) share.
 */
#ifndef FLOW_KERNELS_CPU_BERT_CPU_H
#define FLOW_KERNELS_CPU_BERT_CPU_H

#include "kernels/bert_backend.h"
#include "bert_ops.h"

/* One encoder layer: its shape, parameter offsets (floats into the flat
 * buffers) and activation offsets (floats into the per-layer buffers qkv,
 * probs, ctx, fc1, whose slots differ in width from layer to layer). */
typedef struct layer_off {
    int nh, A, I;               /* heads, attention width nh*d, FFN width */
    size_t qkv_w, qkv_b, o_w, o_b, ln1_g, ln1_b, i_w, i_b, o2_w, o2_b, ln2_g, ln2_b;
    size_t act_qkv, act_probs, act_ctx, act_fc1;
} layer_off;

struct bert_acts {
    /* parameter offsets */
    size_t wte, wpe, wtt, eln_g, eln_b;
    size_t mt_w, mt_b, mln_g, mln_b, mbias;     /* MLM head */
    size_t pool_w, pool_b, cls_w, cls_b;        /* classification head */
    layer_off *lay;
    int att_chunks;             /* forward: attention by query chunks (ATT_QROWS): eval */
    int fused;                  /* the last forward ran bert_cpu_encoder_fused: no
                                 * probabilities or FFN activations kept */

    /* the last forward */
    int valid, B, T, head, train, M, has_types, has_mask, has_labels, has_cw;
    uint64_t counter;
    int32_t *ids, *types, *mask, *rows, *targets, *clabels;
    float *cw;

    /* stored activations; per-layer slots sized for max_N = max_B*max_T
     * (widths per layer: layer_off.act_*) */
    float *emb, *emb_mean, *emb_rstd;   /* [N,H], [N], [N] */
    float *x;                           /* [(L+1), N, H] layer inputs/outputs */
    float *qkv;                         /* per layer [N, 3A_l] */
    float *probs;                       /* per layer [B, nh_l, T, T] */
    float *ctx;                         /* per layer [N, A_l] */
    float *res1, *a, *res2;             /* [L, N, H] */
    float *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd;   /* [L, N] */
    float *fc1;                         /* per layer [N, I_l] pre-GELU; GELU(fc1)
                                         * is recomputed in backward */
    /* MLM head over M <= N rows */
    float *h_sel, *t, *g, *ln, *ln_mean, *ln_rstd;      /* [N,H] / [N] */
    float *logits, *dlogits, *lse;      /* [cap,V], [cap,V], [N]: logits rows */
    size_t logits_cap;                  /* grow on demand to the largest M seen */
    /* classification head */
    float *cls_in, *pooled, *pooled_d, *clogits, *clse; /* [B,H] / [B,C] / [B] */

    /* scratch (Am, Im: the widest layer's attention and FFN width) */
    float *tmp;                         /* [N, max(H,Im)] */
    float *dx, *dres, *da;              /* [N,H] */
    float *dctx;                        /* [N,Am] */
    float *dqkv;                        /* [N,3Am] */
    float *dbig;                        /* [N, max(Im, C)] */
    float *att_scratch;
    size_t att_scratch_n;               /* floats: attention_scratch(max_T) at
                                         * the thread count of the last growth */
};

/* Query rows per attention chunk of an eval forward
 * (attention_forward_chunks; the bits do not depend on it): at batch 1
 * with one head (the pruned legal model) two chunks keep both threads
 * busy; legal-shape 4-bit forward at batch 1, 1 head: 0.29 -> 0.24 ms
 * spinning, 0.37 -> 0.28 passive (32 rows: no better; 128 rows with 2
 * heads: no better either). */
#define ATT_QROWS 64

/* Per-layer activation pointers of layer l. */
typedef struct layer_acts {
    float *x, *xo, *qkv, *probs, *ctx, *res1, *a, *res2, *fc1, *ln1_mean, *ln1_rstd,
          *ln2_mean, *ln2_rstd;
} layer_acts;

static inline layer_acts layer_view(const bert_model *m, int l)
{
    struct bert_acts *A = m->acts;
    const layer_off *o = &A->lay[l];
    size_t mN = (size_t)m->max_B * m->max_T, H = (size_t)m->cfg.hidden;
    layer_acts v = {
        .x = A->x + l * mN * H, .xo = A->x + (l + 1) * mN * H,
        .qkv = A->qkv + o->act_qkv, .probs = A->probs + o->act_probs, .ctx = A->ctx + o->act_ctx,
        .res1 = A->res1 + l * mN * H, .a = A->a + l * mN * H, .res2 = A->res2 + l * mN * H,
        .fc1 = A->fc1 + o->act_fc1,
        .ln1_mean = A->ln1_mean + l * mN, .ln1_rstd = A->ln1_rstd + l * mN,
        .ln2_mean = A->ln2_mean + l * mN, .ln2_rstd = A->ln2_rstd + l * mN,
    };
    return v;
}

/* An encoder Linear: the hook's (quantized or observing) on eval forwards,
 * else fp32. */
static inline int enc_linear(bert_model *m, int train, int layer, int which, float *out, const float *in,
                             const float *W, const float *b, int N, int IC, int OC, flow_err *e)
{
    if (m->linear_hook && !train) {
        int rc = m->linear_hook(m->linear_hook_arg, layer, which, in, N, IC, OC, W, b, out, e);
        if (rc < 0) return rc;
        if (rc == 1) return 0;
    }
    linear_forward(out, in, W, b, N, IC, OC);
    return 0;
}

/* The embeddings and the encoder of an eval forward as one parallel region
 * of nt threads (bert_cpu_fused.c), for a hook that takes row blocks. */
int bert_cpu_encoder_fused(bert_model *m, const int32_t *mask, int nt, flow_err *e);

#endif
