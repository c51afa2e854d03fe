/* bert_cpu.c — the CPU backend of the BERT model: activation memory, the
 * forward pass and the backward pass, composed from the ops in bert_ops.c.
 *
 * Activations are kept per layer for backward (llm.c style), sized for the
 * model's max_B x max_T; dropout masks are not stored: backward regenerates
 * them from the counter-based keys of the forward call.
 */
#include "bert_cpu.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* allocation                                                          */

/* One list describes every float buffer: count, then allocation. */
#define BUFS(X) \
    X(emb, N * H) X(emb_mean, N) X(emb_rstd, N) \
    X(x, (L + 1) * N * H) X(qkv, N * 3 * SA) X(probs, B * SNH * T * T) \
    X(ctx, N * SA) X(res1, L * N * H) X(a, L * N * H) X(res2, L * N * H) \
    X(ln1_mean, L * N) X(ln1_rstd, L * N) X(ln2_mean, L * N) X(ln2_rstd, L * N) \
    X(fc1, N * SI) \
    X(h_sel, mlm * N * H) X(t, mlm * N * H) X(g, mlm * N * H) X(ln, mlm * N * H) \
    X(ln_mean, mlm * N) X(ln_rstd, mlm * N) \
    X(lse, mlm * N) \
    X(cls_in, cl * B * H) X(pooled, cl * B * H) X(pooled_d, cl * B * H) \
    X(clogits, cl * B * C) X(clse, cl * B) \
    X(tmp, N * WI) X(dx, N * H) X(dres, N * H) X(da, N * H) X(dctx, N * Am) \
    X(dqkv, N * 3 * Am) X(dbig, N * WB) X(att_scratch, AS)

/* Sums and maxima of the per-layer widths. */
typedef struct layer_sums { size_t SA, SNH, SI, Am, Im; } layer_sums;

static layer_sums sum_layers(const bert_config *c)
{
    layer_sums s = { 0, 0, 0, 0, 0 };
    for (int l = 0; l < c->layers; l++) {
        size_t A = (size_t)bert_attn_width(c, l), I = (size_t)c->ffn[l];
        s.SA += A;
        s.SNH += (size_t)c->heads[l];
        s.SI += I;
        s.Am = A > s.Am ? A : s.Am;
        s.Im = I > s.Im ? I : s.Im;
    }
    return s;
}

#define SIZES_DECL(c, B_, T_) \
    layer_sums ls_ = sum_layers(c); \
    size_t B = (size_t)(B_), T = (size_t)(T_), N = B * T, H = (size_t)(c)->hidden, \
           L = (size_t)(c)->layers, SA = ls_.SA, SNH = ls_.SNH, SI = ls_.SI, Am = ls_.Am, \
           V = (size_t)(c)->vocab_size, C = (size_t)(c)->num_labels, \
           mlm = ((c)->mode & BERT_MODE_MLM) ? 1 : 0, cl = ((c)->mode & BERT_MODE_CLASSIFY) ? 1 : 0, \
           WI = ls_.Im > H ? ls_.Im : H, WB = ls_.Im > C ? ls_.Im : C, AS = attention_scratch((int)T, (c)->head_size)

size_t bert_cpu_acts_bytes(const bert_config *c, int B_, int T_)
{
    SIZES_DECL(c, B_, T_);
    size_t total = 0;
#define COUNT(name, n) total += (n);
    BUFS(COUNT)
#undef COUNT
    /* int buffers: ids, types, mask, rows, targets [N], clabels [B] */
    /* + MLM logits and their gradient, upper bound (every position labelled) */
    return (total + 2 * mlm * N * V) * sizeof(float) + (5 * N + B) * sizeof(int32_t)
           + C * sizeof(float);
}

static size_t need_off(bert_model *m, const char *name)
{
    const bert_tensor *t = bert_find_tensor(m, name);
    if (!t)
        FLOW_BUG("tensor %s missing from the table", name);
    return t->offset;
}

static void cpu_release(bert_model *m)
{
    struct bert_acts *A = m->acts;
    if (!A)
        return;
#define FREE(name, n) free(A->name);
    BUFS(FREE)
#undef FREE
    free(A->logits); free(A->dlogits);
    free(A->ids); free(A->types); free(A->mask); free(A->rows); free(A->targets);
    free(A->clabels); free(A->cw); free(A->lay);
    free(A);
    m->acts = NULL;
}

static int cpu_alloc(bert_model *m, flow_err *e)
{
    const bert_config *c = &m->cfg;
    SIZES_DECL(c, m->max_B, m->max_T);
    struct bert_acts *A = calloc(1, sizeof *A);
    if (!A)
        return flow_fail(e, FLOW_E_NOMEM, "model: cannot allocate activations");
    m->acts = A;
    int fail = 0;
    /* 64-byte aligned, zeroed; a zero-size buffer stays NULL */
#define ALLOC(name, n) if ((n) > 0) { \
        if (posix_memalign((void **)&A->name, 64, (n) * sizeof(float))) { A->name = NULL; fail = 1; } \
        else memset(A->name, 0, (n) * sizeof(float)); }
    BUFS(ALLOC)
#undef ALLOC
    A->ids = calloc(N, sizeof(int32_t));
    A->types = calloc(N, sizeof(int32_t));
    A->mask = calloc(N, sizeof(int32_t));
    A->rows = calloc(N, sizeof(int32_t));
    A->targets = calloc(N, sizeof(int32_t));
    A->clabels = calloc(B, sizeof(int32_t));
    A->cw = calloc(C, sizeof(float));
    A->lay = calloc(L, sizeof(layer_off));
    gemm_threads_setup();
    if (fail || !A->ids || !A->types || !A->mask || !A->rows || !A->targets || !A->clabels
        || !A->cw || !A->lay) {
        size_t bytes = bert_cpu_acts_bytes(c, m->max_B, m->max_T);
        cpu_release(m);
        return flow_fail(e, FLOW_E_NOMEM,
                         "model: cannot allocate %.1f MiB of activations for batch %d x %d; "
                         "use a smaller batch or sequence length",
                         bytes / 1048576.0, m->max_B, m->max_T);
    }
    (void)V; (void)SA; (void)SNH; (void)SI;
    A->att_scratch_n = AS;
    A->wte = need_off(m, "bert.embeddings.word_embeddings.weight");
    A->wpe = need_off(m, "bert.embeddings.position_embeddings.weight");
    A->wtt = need_off(m, "bert.embeddings.token_type_embeddings.weight");
    A->eln_g = need_off(m, "bert.embeddings.LayerNorm.weight");
    A->eln_b = need_off(m, "bert.embeddings.LayerNorm.bias");
    char nm[128];
#define LOFF(field, suffix) \
    (snprintf(nm, sizeof nm, "bert.encoder.layer.%zu.%s", l, suffix), A->lay[l].field = need_off(m, nm))
    size_t aq = 0, ap = 0, ac = 0, af = 0;
    for (size_t l = 0; l < L; l++) {
        layer_off *o = &A->lay[l];
        o->nh = c->heads[l];
        o->A = bert_attn_width(c, (int)l);
        o->I = c->ffn[l];
        o->act_qkv = aq;
        o->act_probs = ap;
        o->act_ctx = ac;
        o->act_fc1 = af;
        aq += N * 3 * (size_t)o->A;
        ap += B * (size_t)o->nh * T * T;
        ac += N * (size_t)o->A;
        af += N * (size_t)o->I;
        LOFF(qkv_w, "attention.self.query.weight");
        LOFF(qkv_b, "attention.self.query.bias");
        LOFF(o_w, "attention.output.dense.weight");
        LOFF(o_b, "attention.output.dense.bias");
        LOFF(ln1_g, "attention.output.LayerNorm.weight");
        LOFF(ln1_b, "attention.output.LayerNorm.bias");
        LOFF(i_w, "intermediate.dense.weight");
        LOFF(i_b, "intermediate.dense.bias");
        LOFF(o2_w, "output.dense.weight");
        LOFF(o2_b, "output.dense.bias");
        LOFF(ln2_g, "output.LayerNorm.weight");
        LOFF(ln2_b, "output.LayerNorm.bias");
    }
#undef LOFF
    if (mlm) {
        A->mt_w = need_off(m, "cls.predictions.transform.dense.weight");
        A->mt_b = need_off(m, "cls.predictions.transform.dense.bias");
        A->mln_g = need_off(m, "cls.predictions.transform.LayerNorm.weight");
        A->mln_b = need_off(m, "cls.predictions.transform.LayerNorm.bias");
        A->mbias = need_off(m, "cls.predictions.bias");
    }
    if (cl) {
        A->pool_w = need_off(m, "bert.pooler.dense.weight");
        A->pool_b = need_off(m, "bert.pooler.dense.bias");
        A->cls_w = need_off(m, "classifier.weight");
        A->cls_b = need_off(m, "classifier.bias");
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* forward                                                             */

/* Dropout sites: 0 embeddings, 1 + 4l + {0 attention probs, 1 attention
 * output, 2 FFN output}, and the classifier's pooled dropout last. */
#define SITE_EMB 0
#define SITE_ATT(l) (1 + 4 * (uint64_t)(l))
#define SITE_AOUT(l) (2 + 4 * (uint64_t)(l))
#define SITE_FOUT(l) (3 + 4 * (uint64_t)(l))
#define SITE_POOL ((uint64_t)1 << 40)

#define PROF(kind, fwd, flops, stmt) do { \
        double t0_ = m->prof.enabled ? bert_prof_now() : 0; \
        stmt; \
        if (m->prof.enabled) bert_prof_add(m, kind, fwd, t0_, flops); \
    } while (0)

static uint64_t site_key(const bert_model *m, uint64_t site)
{
    return dropout_key(m->dropout_seed, m->acts->counter, site);
}

/* Attention keeps one scratch slice per OpenMP thread; bert_set_threads
 * may raise the thread count after the model was allocated, and the fused
 * encoder runs a team of its own size (nt, 0 when none). */
static int att_scratch_fit(bert_model *m, int nt, flow_err *e)
{
    struct bert_acts *A = m->acts;
    int threads = omp_get_max_threads() > nt ? omp_get_max_threads() : nt;
    size_t need = (size_t)threads * attention_scratch_slice(m->max_T, m->cfg.head_size);
    if (need <= A->att_scratch_n)
        return 0;
    float *p = NULL;
    if (posix_memalign((void **)&p, 64, need * sizeof(float)))
        return flow_fail(e, FLOW_E_NOMEM, "model: cannot allocate %.1f MiB of attention scratch "
                         "for %d threads", need * 4.0 / 1048576.0, omp_get_max_threads());
    free(A->att_scratch);
    A->att_scratch = p;
    A->att_scratch_n = need;
    return 0;
}

/* dst[M,H] = src[rows[i]] */
static void gather_rows(float *dst, const float *src, const int32_t *rows, int M, int H)
{
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++)
        memcpy(dst + (size_t)i * H, src + (size_t)rows[i] * H, (size_t)H * sizeof(float));
}

/* x_{l+1} = encoder layer l (x_l), for the batch of the current forward,
 * one op at a time; the four Linears go through enc_linear (the quantized
 * hook, if any). */
static int layer_forward(bert_model *m, int l, const int32_t *mask, int train, float ph, float pa,
                         flow_err *e)
{
    struct bert_acts *A = m->acts;
    const layer_off *o = &A->lay[l];
    const float *P = m->params;
    int B = A->B, T = A->T, N = B * T, H = m->cfg.hidden, Aw = o->A, I = o->I;
    layer_acts v = layer_view(m, l);
    float *gel = A->dbig;   /* scratch in forward */
    int rc = 0;
    PROF(BERT_OP_MATMUL, 1, 2.0 * N * H * 3 * Aw,
         rc = enc_linear(m, train, l, BERT_LIN_QKV, v.qkv, v.x, P + o->qkv_w, P + o->qkv_b, N, H, 3 * Aw, e));
    if (rc) return rc;
    if (A->att_chunks)
        PROF(BERT_OP_ATTENTION, 1, 4.0 * B * T * T * Aw,
             attention_forward_chunks(v.ctx, v.probs, v.qkv, mask, B, T, o->nh, m->cfg.head_size, ATT_QROWS,
                                      A->att_scratch));
    else
        PROF(BERT_OP_ATTENTION, 1, 4.0 * B * T * T * Aw,
             attention_forward(v.ctx, v.probs, v.qkv, mask, B, T, o->nh, m->cfg.head_size, pa,
                               site_key(m, SITE_ATT(l)), A->att_scratch));
    PROF(BERT_OP_MATMUL, 1, 2.0 * N * H * Aw,
         rc = enc_linear(m, train, l, BERT_LIN_ATTN_OUT, A->tmp, v.ctx, P + o->o_w, P + o->o_b, N, Aw, H, e));
    if (rc) return rc;
    PROF(BERT_OP_RESIDUAL, 1, 0,
         residual_dropout_forward(v.res1, v.x, A->tmp, (size_t)N * H, ph, site_key(m, SITE_AOUT(l))));
    PROF(BERT_OP_LAYERNORM, 1, 0,
         layernorm_forward(v.a, v.ln1_mean, v.ln1_rstd, v.res1, P + o->ln1_g, P + o->ln1_b, N, H));
    PROF(BERT_OP_MATMUL, 1, 2.0 * N * H * I,
         rc = enc_linear(m, train, l, BERT_LIN_FFN_IN, v.fc1, v.a, P + o->i_w, P + o->i_b, N, H, I, e));
    if (rc) return rc;
    PROF(BERT_OP_GELU, 1, 0, gelu_forward(gel, v.fc1, (size_t)N * I));
    PROF(BERT_OP_MATMUL, 1, 2.0 * N * H * I,
         rc = enc_linear(m, train, l, BERT_LIN_FFN_OUT, A->tmp, gel, P + o->o2_w, P + o->o2_b, N, I, H, e));
    if (rc) return rc;
    PROF(BERT_OP_RESIDUAL, 1, 0,
         residual_dropout_forward(v.res2, v.a, A->tmp, (size_t)N * H, ph, site_key(m, SITE_FOUT(l))));
    PROF(BERT_OP_LAYERNORM, 1, 0,
         layernorm_forward(v.xo, v.ln2_mean, v.ln2_rstd, v.res2, P + o->ln2_g, P + o->ln2_b, N, H));
    return 0;
}

/* Grows the MLM logits (and their gradient) to hold M rows. */
static int mlm_logits_reserve(bert_model *m, int M, flow_err *e)
{
    struct bert_acts *A = m->acts;
    size_t mN = (size_t)m->max_B * m->max_T, V = (size_t)m->cfg.vocab_size;
    if ((size_t)M <= A->logits_cap)
        return 0;
    /* the MLM logits and their gradient only need M rows (~15% of B*T when
     * pretraining): grown here, never shrunk */
    size_t rows = (size_t)M + (size_t)M / 4;
    rows = rows < mN ? rows : mN;
    free(A->logits);
    free(A->dlogits);
    A->logits = A->dlogits = NULL;
    A->logits_cap = 0;
    if (posix_memalign((void **)&A->logits, 64, rows * V * sizeof(float))
        || posix_memalign((void **)&A->dlogits, 64, rows * V * sizeof(float))) {
        free(A->logits);
        A->logits = NULL;
        A->dlogits = NULL;
        return flow_fail(e, FLOW_E_NOMEM, "forward: cannot allocate %.1f MiB of MLM logits "
                         "for %d labelled positions", 2.0 * rows * V * 4 / 1048576.0, M);
    }
    A->logits_cap = rows;
    return 0;
}

/* MLM head on the labelled rows of the final hidden states. */
static int mlm_head_forward(bert_model *m, const bert_batch *bt, bert_output *out, flow_err *e)
{
    struct bert_acts *A = m->acts;
    const float *P = m->params;
    int N = A->B * A->T, H = m->cfg.hidden, V = m->cfg.vocab_size;
    const float *hL = A->x + (size_t)m->cfg.layers * m->max_B * m->max_T * H;
    int M = 0;
    for (int n = 0; n < N; n++)
        if (bt->mlm_labels[n] != BERT_IGNORE_INDEX) {
            A->rows[M] = n;
            A->targets[M] = bt->mlm_labels[n];
            M++;
        }
    A->M = M;
    int rc = mlm_logits_reserve(m, M, e);
    if (rc)
        return rc;
    double loss = 0;
    long correct = 0;
    if (M > 0) {
        PROF(BERT_OP_OTHER, 1, 0, gather_rows(A->h_sel, hL, A->rows, M, H));
        PROF(BERT_OP_MATMUL, 1, 2.0 * M * H * H,
             linear_forward(A->t, A->h_sel, P + A->mt_w, P + A->mt_b, M, H, H));
        PROF(BERT_OP_GELU, 1, 0, gelu_forward(A->g, A->t, (size_t)M * H));
        PROF(BERT_OP_LAYERNORM, 1, 0,
             layernorm_forward(A->ln, A->ln_mean, A->ln_rstd, A->g, P + A->mln_g, P + A->mln_b, M, H));
        PROF(BERT_OP_MATMUL, 1, 2.0 * M * H * V,
             linear_forward(A->logits, A->ln, P + A->wte, P + A->mbias, M, H, V));
        PROF(BERT_OP_XENT, 1, 0,
             loss = xent_forward(A->lse, A->logits, A->targets, NULL, M, V, &correct));
    }
    out->loss = (float)loss;
    out->n_targets = M;
    out->n_correct = correct;
    out->logits = A->logits;
    out->rows = A->rows;
    return 0;
}

/* Pooling (the [CLS] rows or the mean over real positions: cfg.pooling),
 * pooler and classifier. */
static void cls_head_forward(bert_model *m, const bert_batch *bt, float ph, bert_output *out)
{
    struct bert_acts *A = m->acts;
    const float *P = m->params;
    int B = A->B, T = A->T, H = m->cfg.hidden, C = m->cfg.num_labels;
    const float *hL = A->x + (size_t)m->cfg.layers * m->max_B * m->max_T * H;
    if (m->cfg.pooling == BERT_POOL_MEAN)
        PROF(BERT_OP_OTHER, 1, 0, mean_pool_forward(A->cls_in, hL, A->has_mask ? A->mask : NULL, B, T, H));
    else
        PROF(BERT_OP_OTHER, 1, 0, cls_pool_forward(A->cls_in, hL, B, T, H));
    PROF(BERT_OP_MATMUL, 1, 2.0 * B * H * H,
         linear_forward(A->pooled, A->cls_in, P + A->pool_w, P + A->pool_b, B, H, H));
    PROF(BERT_OP_TANH, 1, 0, tanh_forward(A->pooled, A->pooled, (size_t)B * H));
    PROF(BERT_OP_DROPOUT, 1, 0,
         dropout_forward(A->pooled_d, A->pooled, (size_t)B * H, ph, site_key(m, SITE_POOL)));
    PROF(BERT_OP_MATMUL, 1, 2.0 * B * H * C,
         linear_forward(A->clogits, A->pooled_d, P + A->cls_w, P + A->cls_b, B, H, C));
    A->has_labels = bt->labels != NULL;
    A->has_cw = bt->class_weights != NULL;
    if (A->has_cw)
        memcpy(A->cw, bt->class_weights, (size_t)C * sizeof(float));
    if (A->has_labels) {
        memcpy(A->clabels, bt->labels, (size_t)B * sizeof(int32_t));
        long correct = 0;
        double loss = 0;
        PROF(BERT_OP_XENT, 1, 0,
             loss = xent_forward(A->clse, A->clogits, A->clabels, A->has_cw ? A->cw : NULL,
                                 B, C, &correct));
        out->loss = (float)loss;
        out->n_targets = B;
        out->n_correct = correct;
    }
    out->logits = A->clogits;
    out->rows = NULL;
}

static int cpu_forward(bert_model *m, const bert_batch *bt, int head, int train,
                       bert_output *out, flow_err *e)
{
    struct bert_acts *A = m->acts;
    const bert_config *c = &m->cfg;
    const float *P = m->params;
    int B = bt->B, T = bt->T, N = B * T, H = c->hidden;
    float ph = train ? c->hidden_dropout : 0.0f, pa = train ? c->attn_dropout : 0.0f;
    int rc = 0;

    /* eval with a hook that takes row blocks: (the profiler off: its op
     * table times ops one at a time) the embeddings and the encoder as one
     * parallel region of fused threads */
    int fused = !train && m->linear_hook && m->linear_rows ? m->linear_rows(m->linear_hook_arg) : 0;
    A->valid = 0;
    if (att_scratch_fit(m, fused, e))
        return FLOW_E_NOMEM;
    A->B = B; A->T = T; A->head = head; A->train = train;
    A->counter = m->fwd_counter;
    if (train)
        m->fwd_counter++;
    memcpy(A->ids, bt->ids, (size_t)N * sizeof(int32_t));
    A->has_types = bt->type_ids != NULL;
    if (A->has_types)
        memcpy(A->types, bt->type_ids, (size_t)N * sizeof(int32_t));
    A->has_mask = bt->attn_mask != NULL;
    if (A->has_mask)
        memcpy(A->mask, bt->attn_mask, (size_t)N * sizeof(int32_t));
    const int32_t *types = A->has_types ? A->types : NULL;
    const int32_t *mask = A->has_mask ? A->mask : NULL;

    /* eval attention (every model) by query chunks on attention_gemm.c;
     * training keeps attention_forward, whose probabilities backward and
     * dropout use */
    A->att_chunks = !train;
    A->fused = fused && !m->prof.enabled;
    if (A->fused) {
        if ((rc = bert_cpu_encoder_fused(m, mask, fused, e)))
            return rc;
    } else {
        /* embeddings -> x0 */
        PROF(BERT_OP_EMBED, 1, 0,
             embedding_forward(A->emb, A->ids, types, P + A->wte, P + A->wpe, P + A->wtt, B, T, H));
        PROF(BERT_OP_LAYERNORM, 1, 0,
             layernorm_forward(A->x, A->emb_mean, A->emb_rstd, A->emb, P + A->eln_g, P + A->eln_b, N, H));
        PROF(BERT_OP_DROPOUT, 1, 0,
             dropout_forward(A->x, A->x, (size_t)N * H, ph, site_key(m, SITE_EMB)));
        for (int l = 0; l < c->layers; l++)
            if ((rc = layer_forward(m, l, mask, train, ph, pa, e)))
                return rc;
    }

    memset(out, 0, sizeof *out);
    if (head == BERT_HEAD_MLM) {
        int rc = mlm_head_forward(m, bt, out, e);
        if (rc)
            return rc;
    } else {
        cls_head_forward(m, bt, ph, out);
    }
    A->valid = 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* backward                                                            */

/* dx[N,H] = gradient at the final hidden states, from the MLM head given
 * dlogits [M,V] (A->dlogits; computed from the loss when ext is NULL). */
static void mlm_head_backward(bert_model *m, const float *ext, float scale)
{
    struct bert_acts *A = m->acts;
    const float *P = m->params;
    float *G = m->grads;
    int M = A->M, H = m->cfg.hidden, V = m->cfg.vocab_size;
    if (M == 0)
        return;
    const float *dl = A->dlogits;
    if (ext)
        dl = ext;
    else
        PROF(BERT_OP_XENT, 0, 0,
             xent_backward(A->dlogits, A->logits, A->lse, A->targets, NULL, M, V, scale));
    /* decoder tied to the word embeddings: dwte += dlogits^T ln */
    PROF(BERT_OP_MATMUL, 0, 4.0 * M * H * V,
         linear_backward(A->dres, G + A->wte, G + A->mbias, dl, A->ln, P + A->wte, M, H, V, 0));
    PROF(BERT_OP_LAYERNORM, 0, 0,
         layernorm_backward(A->da, G + A->mln_g, G + A->mln_b, A->dres, A->g, P + A->mln_g,
                            A->ln_mean, A->ln_rstd, M, H));
    PROF(BERT_OP_GELU, 0, 0, gelu_backward(A->da, A->t, A->da, (size_t)M * H));
    PROF(BERT_OP_MATMUL, 0, 4.0 * M * H * H,
         linear_backward(A->dres, G + A->mt_w, G + A->mt_b, A->da, A->h_sel, P + A->mt_w, M, H, H, 0));
    PROF(BERT_OP_OTHER, 0, 0, {
        for (int i = 0; i < M; i++) {
            float *d = A->dx + (size_t)A->rows[i] * H;
            const float *s = A->dres + (size_t)i * H;
            for (int k = 0; k < H; k++)
                d[k] += s[k];
        }
    });
}

/* dx = gradient at the final hidden states from the classifier (through
 * the pooling of the forward), given dlogits [B,C] (from the loss when ext
 * is NULL). */
static void cls_head_backward(bert_model *m, const float *ext, float scale)
{
    struct bert_acts *A = m->acts;
    const float *P = m->params;
    float *G = m->grads;
    int B = A->B, T = A->T, H = m->cfg.hidden, C = m->cfg.num_labels;
    float ph = A->train ? m->cfg.hidden_dropout : 0.0f;
    const float *dcl = ext;
    if (!ext) {
        PROF(BERT_OP_XENT, 0, 0,
             xent_backward(A->dbig, A->clogits, A->clse, A->clabels, A->has_cw ? A->cw : NULL, B, C, scale));
        dcl = A->dbig;  /* [B,C] */
    }
    PROF(BERT_OP_MATMUL, 0, 4.0 * B * H * C,
         linear_backward(A->da, G + A->cls_w, G + A->cls_b, dcl, A->pooled_d, P + A->cls_w, B, H, C, 0));
    PROF(BERT_OP_DROPOUT, 0, 0,
         dropout_backward(A->da, A->da, (size_t)B * H, ph, site_key(m, SITE_POOL)));
    PROF(BERT_OP_TANH, 0, 0, tanh_backward(A->da, A->pooled, A->da, (size_t)B * H));
    PROF(BERT_OP_MATMUL, 0, 4.0 * B * H * H,
         linear_backward(A->dres, G + A->pool_w, G + A->pool_b, A->da, A->cls_in, P + A->pool_w, B, H, H, 0));
    if (m->cfg.pooling == BERT_POOL_MEAN)
        PROF(BERT_OP_OTHER, 0, 0, mean_pool_backward(A->dx, A->dres, A->has_mask ? A->mask : NULL, B, T, H));
    else
        PROF(BERT_OP_OTHER, 0, 0, cls_pool_backward(A->dx, A->dres, B, T, H));
}

/* dx: gradient at x_{l+1} on entry, at x_l on return. */
static void layer_backward(bert_model *m, int l)
{
    struct bert_acts *A = m->acts;
    const layer_off *o = &A->lay[l];
    const float *P = m->params;
    float *G = m->grads;
    int B = A->B, T = A->T, N = B * T, H = m->cfg.hidden, Aw = o->A, I = o->I;
    float ph = A->train ? m->cfg.hidden_dropout : 0.0f, pa = A->train ? m->cfg.attn_dropout : 0.0f;
    layer_acts v = layer_view(m, l);
    float *gel = A->tmp;
    size_t NH = (size_t)N * H;
    /* x' = LN2(res2), res2 = a + drop(gel W2^T + b2) */
    PROF(BERT_OP_LAYERNORM, 0, 0,
         layernorm_backward(A->dres, G + o->ln2_g, G + o->ln2_b, A->dx, v.res2, P + o->ln2_g,
                            v.ln2_mean, v.ln2_rstd, N, H));
    PROF(BERT_OP_RESIDUAL, 0, 0, memcpy(A->da, A->dres, NH * sizeof(float)));
    PROF(BERT_OP_DROPOUT, 0, 0, dropout_backward(A->dres, A->dres, NH, ph, site_key(m, SITE_FOUT(l))));
    PROF(BERT_OP_GELU, 0, 0, gelu_forward(gel, v.fc1, (size_t)N * I));
    PROF(BERT_OP_MATMUL, 0, 4.0 * N * H * I,
         linear_backward(A->dbig, G + o->o2_w, G + o->o2_b, A->dres, gel, P + o->o2_w, N, I, H, 0));
    PROF(BERT_OP_GELU, 0, 0, gelu_backward(A->dbig, v.fc1, A->dbig, (size_t)N * I));
    PROF(BERT_OP_MATMUL, 0, 4.0 * N * H * I,
         linear_backward(A->da, G + o->i_w, G + o->i_b, A->dbig, v.a, P + o->i_w, N, H, I, 1));
    /* a = LN1(res1), res1 = x + drop(ctx Wo^T + bo) */
    PROF(BERT_OP_LAYERNORM, 0, 0,
         layernorm_backward(A->dres, G + o->ln1_g, G + o->ln1_b, A->da, v.res1, P + o->ln1_g,
                            v.ln1_mean, v.ln1_rstd, N, H));
    PROF(BERT_OP_RESIDUAL, 0, 0, memcpy(A->dx, A->dres, NH * sizeof(float)));
    PROF(BERT_OP_DROPOUT, 0, 0, dropout_backward(A->dres, A->dres, NH, ph, site_key(m, SITE_AOUT(l))));
    PROF(BERT_OP_MATMUL, 0, 4.0 * N * H * Aw,
         linear_backward(A->dctx, G + o->o_w, G + o->o_b, A->dres, v.ctx, P + o->o_w, N, Aw, H, 0));
    PROF(BERT_OP_ATTENTION, 0, 8.0 * B * T * T * Aw,
         attention_backward(A->dqkv, A->dctx, v.qkv, v.probs, B, T, o->nh, m->cfg.head_size, pa,
                            site_key(m, SITE_ATT(l)), A->att_scratch));
    PROF(BERT_OP_MATMUL, 0, 4.0 * N * H * 3 * Aw,
         linear_backward(A->dx, G + o->qkv_w, G + o->qkv_b, A->dqkv, v.x, P + o->qkv_w, N, H, 3 * Aw, 1));
}

/* dx += dh (an external gradient at a hidden state; dh may be NULL). */
static void add_hidden_grad(bert_model *m, const float *dh)
{
    if (!dh)
        return;
    struct bert_acts *A = m->acts;
    size_t n = (size_t)A->B * A->T * m->cfg.hidden;
    float *dx = A->dx;
    #pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        dx[i] += dh[i];
}

static int cpu_backward(bert_model *m, float scale, const float *dlogits,
                        const float *const *dhidden, flow_err *e)
{
    struct bert_acts *A = m->acts;
    const bert_config *c = &m->cfg;
    const float *P = m->params;
    float *G = m->grads;
    int N = A->B * A->T, H = c->hidden;
    float ph = A->train ? c->hidden_dropout : 0.0f;

    if (!A->valid)
        return flow_fail(e, FLOW_E_PARAM, "backward: no forward pass to differentiate");
    if (A->fused)
        return flow_fail(e, FLOW_E_PARAM, "backward: the last forward was a quantized model's fused eval "
                         "forward, which keeps no activations (train = 1 runs op at a time)");
    if (A->head == BERT_HEAD_CLASSIFY && !A->has_labels && !dlogits)
        return flow_fail(e, FLOW_E_PARAM, "backward: the last classification forward had no labels");
    if (att_scratch_fit(m, 0, e))
        return FLOW_E_NOMEM;

    memset(A->dx, 0, (size_t)N * H * sizeof(float));
    if (A->head == BERT_HEAD_MLM)
        mlm_head_backward(m, dlogits, scale);
    else
        cls_head_backward(m, dlogits, scale);
    for (int l = c->layers - 1; l >= 0; l--) {
        add_hidden_grad(m, dhidden ? dhidden[l + 1] : NULL);
        layer_backward(m, l);
    }
    add_hidden_grad(m, dhidden ? dhidden[0] : NULL);
    /* x0 = drop(LN(emb)) */
    PROF(BERT_OP_DROPOUT, 0, 0,
         dropout_backward(A->dx, A->dx, (size_t)N * H, ph, site_key(m, SITE_EMB)));
    PROF(BERT_OP_LAYERNORM, 0, 0,
         layernorm_backward(A->dres, G + A->eln_g, G + A->eln_b, A->dx, A->emb, P + A->eln_g,
                            A->emb_mean, A->emb_rstd, N, H));
    PROF(BERT_OP_EMBED, 0, 0,
         embedding_backward(G + A->wte, G + A->wpe, G + A->wtt, A->dres, A->ids,
                            A->has_types ? A->types : NULL, A->B, A->T, H, 0));
    return 0;
}

static const float *cpu_hidden(const bert_model *m, int layer)
{
    return m->acts->x + (size_t)layer * m->max_B * m->max_T * m->cfg.hidden;
}

static int cpu_sync(bert_model *m, flow_err *e)
{
    (void)m; (void)e;
    return 0;   /* host memory is the model's memory */
}

const bert_backend_ops bert_cpu_ops = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .release = cpu_release,
    .forward = cpu_forward,
    .backward = cpu_backward,
    .zero_grad = bert_cpu_zero_grad,
    .grad_sumsq_blocks = bert_cpu_grad_sumsq_blocks,
    .scale_grads = bert_cpu_scale_grads,
    .adamw = bert_cpu_adamw,
    .sync_to_host = cpu_sync,
    .sync_to_device = cpu_sync,
    .hidden = cpu_hidden,
};
