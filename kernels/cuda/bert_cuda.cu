// bert_cuda.cu — the CUDA backend of the BERT model, fp32: device memory,
// the forward pass and the backward pass, composed from the ops of
// cuda_ops.h exactly as kernels/cpu/bert_cpu.c composes the CPU ops (the
// same order, the same dropout sites and keys, so masks are the CPU's);
// bert_cuda_optim.cu has the optimizer, sync and the table.
//
// Memory: everything is allocated once in bert_cuda_alloc for max_B x
// max_T, except the MLM logits, which grow (never shrink) to the largest
// number of labelled rows seen, as on the CPU: a cudaMalloc only when a
// batch has more labelled rows than any before.
//
// Host syncs on the hot path (each named SYNC below):
//   - the end of every forward: the loss read (logits, per-row losses and
//     hits come back to the host: bert_output's logits are host memory);
//   - bert_cuda_optim.cu: the gradient norm's block sums (one per step);
//   - distillation only: uploading the caller's dlogits / dhidden (pageable
//     host memory: the driver may wait while it stages them) and
//     downloading hidden states.
// The batch's inputs go up from pinned memory without a sync: the pinned
// region is rewritten only at the next forward, after this forward's SYNC.
//
// Written without a GPU at hand: it compiles (sm_86, sm_90); it has never run.
#include "bert_cuda.h"

#include <stdlib.h>
#include <string.h>

#define TRY(expr) do { int rc_ = (expr); if (rc_) return rc_; } while (0)

// Times one op when profiling (--profile): the stream is drained before and
// after, so these syncs exist only in profiled runs.
#define PROF(kind, fwd, flops, stmt) do { \
        double t0_ = 0; \
        if (m->prof.enabled) { cudaStreamSynchronize(A->c->stream); t0_ = bert_prof_now(); } \
        stmt; \
        if (m->prof.enabled) { cudaStreamSynchronize(A->c->stream); bert_prof_add(m, kind, fwd, t0_, flops); } \
    } while (0)

void bert_cuda_note(bert_model *m, cudaError_t rc, const char *what)
{
    struct bert_acts *A = m->acts;
    if (rc == cudaSuccess || A->failed) return;
    A->failed = 1;
    cuda_fail(&A->err, rc, what);
}

// ---- allocation ---------------------------------------------------------------

typedef struct cu_sizes {
    size_t B, T, N, H, L, SA, SNH, SI, Am, Im, maxnh, V, C, TV, mlm, cl, WI, WB, AS, LS, np;
} cu_sizes;

static cu_sizes sizes_of(const bert_model *m)
{
    const bert_config *c = &m->cfg;
    cu_sizes s;
    memset(&s, 0, sizeof s);
    s.B = (size_t)m->max_B;
    s.T = (size_t)m->max_T;
    s.N = s.B * s.T;
    s.H = (size_t)c->hidden;
    s.L = (size_t)c->layers;
    for (int l = 0; l < c->layers; l++) {
        size_t A = (size_t)bert_attn_width(c, l), I = (size_t)c->ffn[l], nh = (size_t)c->heads[l];
        s.SA += A;
        s.SNH += nh;
        s.SI += I;
        s.Am = A > s.Am ? A : s.Am;
        s.Im = I > s.Im ? I : s.Im;
        s.maxnh = nh > s.maxnh ? nh : s.maxnh;
    }
    s.V = (size_t)c->vocab_size;
    s.C = (size_t)c->num_labels;
    s.TV = (size_t)c->type_vocab;
    s.mlm = (c->mode & BERT_MODE_MLM) ? 1 : 0;
    s.cl = (c->mode & BERT_MODE_CLASSIFY) ? 1 : 0;
    s.WI = s.Im > s.H ? s.Im : s.H;
    s.WB = s.Im > s.C ? s.Im : s.C;
    s.AS = cuda_attention_scratch((int)s.B, (int)s.T, (int)s.maxnh, c->head_size);
    s.LS = cuda_layernorm_scratch((int)s.N, (int)s.H);
    s.np = m->nparams;
    return s;
}

// Every device float buffer: name, floats (as bert_cpu.c's BUFS, plus the
// flat buffers, the per-row losses, the hidden-gradient upload buffer dh
// and the LayerNorm backward's block partials).
#define DBUFS(X) \
    X(P, s.np) X(G, s.np) X(Mm, s.np) X(Vv, s.np) \
    X(emb, s.N * s.H) X(emb_mean, s.N) X(emb_rstd, s.N) \
    X(x, (s.L + 1) * s.N * s.H) X(qkv, s.N * 3 * s.SA) X(probs, s.B * s.SNH * s.T * s.T) \
    X(ctx, s.N * s.SA) X(res1, s.L * s.N * s.H) X(a, s.L * s.N * s.H) X(res2, s.L * s.N * s.H) \
    X(ln1_mean, s.L * s.N) X(ln1_rstd, s.L * s.N) X(ln2_mean, s.L * s.N) X(ln2_rstd, s.L * s.N) \
    X(fc1, s.N * s.SI) \
    X(h_sel, s.mlm * s.N * s.H) X(t, s.mlm * s.N * s.H) X(g, s.mlm * s.N * s.H) X(ln, s.mlm * s.N * s.H) \
    X(ln_mean, s.mlm * s.N) X(ln_rstd, s.mlm * s.N) X(lse, s.mlm * s.N) X(rowloss, s.N) X(wsum_d, 1) \
    X(cls_in, s.cl * s.B * s.H) X(pooled, s.cl * s.B * s.H) X(pooled_d, s.cl * s.B * s.H) \
    X(clogits, s.cl * s.B * s.C) X(clse, s.cl * s.B) X(d_cw, s.C) \
    X(tmp, s.N * s.WI) X(dx, s.N * s.H) X(dres, s.N * s.H) X(da, s.N * s.H) X(dctx, s.N * s.Am) \
    X(dqkv, s.N * 3 * s.Am) X(dbig, s.N * s.WB) X(dh, s.N * s.H) X(att_scratch, s.AS) \
    X(ln_scratch, s.LS)

static cu_inputs inputs_layout(const cu_sizes &s)
{
    cu_inputs in;
    size_t o = 0;
    in.ids = o; o += s.N;
    in.types = o; o += s.N;
    in.mask = o; o += s.N;
    in.rows = o; o += s.N;
    in.targets = o; o += s.N;
    in.clabels = o; o += s.B;
    in.w_uniq = o; o += s.N;
    in.w_off = o; o += s.N + 1;
    in.w_pos = o; o += s.N;
    in.y_uniq = o; o += s.TV;
    in.y_off = o; o += s.TV + 1;
    in.y_pos = o; o += s.N;
    in.p_uniq = o; o += s.T;
    in.p_off = o; o += s.T + 1;
    in.p_pos = o; o += s.N;
    in.total = o;
    return in;
}

void bert_cuda_release(bert_model *m)
{
    struct bert_acts *A = m->acts;
    if (!A) return;
    if (A->c) cudaStreamSynchronize(A->c->stream);     // nothing may still use the buffers
#define FREE(name, n) cuda_free(A->name);
    cu_sizes s = sizes_of(m);
    DBUFS(FREE)
#undef FREE
    (void)s;
    cuda_free(A->rowcorrect);
    cuda_free(A->d_in);
    cuda_free(A->logits);
    cuda_free(A->dlogits);
    cuda_free(A->part);
    if (A->h_in) cudaFreeHost(A->h_in);
    if (A->h_rowloss) cudaFreeHost(A->h_rowloss);
    if (A->h_rowcorrect) cudaFreeHost(A->h_rowcorrect);
    if (A->h_logits) cudaFreeHost(A->h_logits);
    free(A->h_hidden);
    free(A->count);
    free(A->h_cw);
    free(A->lay);
    cuda_ctx_free(A->c);
    free(A);
    m->acts = NULL;
}

static size_t need_off(bert_model *m, const char *name)
{
    const bert_tensor *t = bert_find_tensor(m, name);
    if (!t) FLOW_BUG("tensor %s missing from the table", name);
    return t->offset;
}

// Parameter and activation offsets (the same walk as bert_cpu.c's cpu_alloc).
static void offsets(bert_model *m, const cu_sizes &s)
{
    struct bert_acts *A = m->acts;
    const bert_config *c = &m->cfg;
    A->wte = need_off(m, "bert.embeddings.word_embeddings.weight");
    A->wpe = need_off(m, "bert.embeddings.position_embeddings.weight");
    A->wtt = need_off(m, "bert.embeddings.token_type_embeddings.weight");
    A->eln_g = need_off(m, "bert.embeddings.LayerNorm.weight");
    A->eln_b = need_off(m, "bert.embeddings.LayerNorm.bias");
    char nm[128];
#define LOFF(field, suffix) \
    (snprintf(nm, sizeof nm, "bert.encoder.layer.%zu.%s", l, suffix), o->field = need_off(m, nm))
    size_t aq = 0, ap = 0, ac = 0, af = 0;
    for (size_t l = 0; l < s.L; l++) {
        cu_layer *o = &A->lay[l];
        o->nh = c->heads[l];
        o->A = bert_attn_width(c, (int)l);
        o->I = c->ffn[l];
        o->act_qkv = aq;
        o->act_probs = ap;
        o->act_ctx = ac;
        o->act_fc1 = af;
        aq += s.N * 3 * (size_t)o->A;
        ap += s.B * (size_t)o->nh * s.T * s.T;
        ac += s.N * (size_t)o->A;
        af += s.N * (size_t)o->I;
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
    if (s.mlm) {
        A->mt_w = need_off(m, "cls.predictions.transform.dense.weight");
        A->mt_b = need_off(m, "cls.predictions.transform.dense.bias");
        A->mln_g = need_off(m, "cls.predictions.transform.LayerNorm.weight");
        A->mln_b = need_off(m, "cls.predictions.transform.LayerNorm.bias");
        A->mbias = need_off(m, "cls.predictions.bias");
    }
    if (s.cl) {
        A->pool_w = need_off(m, "bert.pooler.dense.weight");
        A->pool_b = need_off(m, "bert.pooler.dense.bias");
        A->cls_w = need_off(m, "classifier.weight");
        A->cls_b = need_off(m, "classifier.bias");
    }
}

int bert_cuda_alloc(bert_model *m, flow_err *e)
{
    cu_sizes s = sizes_of(m);
    struct bert_acts *A = (struct bert_acts *)calloc(1, sizeof *A);
    if (!A) return flow_fail(e, FLOW_E_NOMEM, "model: cannot allocate activations");
    m->acts = A;
    flow_err ce;
    memset(&ce, 0, sizeof ce);
    int rc = cuda_ctx_new(m->gpu, &A->c, &ce);
    if (rc) {
        bert_cuda_release(m);
        return flow_fail(e, rc, "model: GPU %d: %s", m->gpu, ce.msg);
    }
    cuda_set_precision(A->c, m->precision);     // the Linears' GEMMs (kernels.h BERT_FP32/BF16/FP16)
    size_t total = 0;
    int fail = 0;
    // zeroed like the host's calloc'd buffers; a zero-size buffer stays NULL
#define ALLOC(name, n) total += (n); \
    if (!fail && (n) > 0) { \
        if (cuda_alloc(A->c, (void **)&A->name, (n) * sizeof(float), e) || \
            cuda_memset0(A->c, A->name, (n) * sizeof(float), e)) fail = 1; }
    DBUFS(ALLOC)
#undef ALLOC
    A->in = inputs_layout(s);
    size_t nblk = (s.np + BERT_GRAD_BLOCK - 1) / BERT_GRAD_BLOCK + 1;
    if (!fail && (cuda_alloc(A->c, (void **)&A->rowcorrect, s.N * sizeof(int32_t), e) ||
                  cuda_alloc(A->c, (void **)&A->d_in, A->in.total * sizeof(int32_t), e) ||
                  cuda_alloc(A->c, (void **)&A->part, nblk * sizeof(double), e)))
        fail = 1;
    if (!fail && (cudaMallocHost((void **)&A->h_in, A->in.total * sizeof(int32_t)) != cudaSuccess ||
                  cudaMallocHost((void **)&A->h_rowloss, s.N * sizeof(float)) != cudaSuccess ||
                  cudaMallocHost((void **)&A->h_rowcorrect, s.N * sizeof(int32_t)) != cudaSuccess)) {
        fail = 1;
        flow_fail(e, FLOW_E_NOMEM, "model: cannot allocate pinned host memory for the batch");
    }
    size_t nc = s.V > s.TV ? s.V : s.TV;
    nc = nc > s.T ? nc : s.T;
    A->count = (int *)calloc(nc, sizeof(int));
    A->h_cw = (float *)calloc(s.C, sizeof(float));
    A->lay = (cu_layer *)calloc(s.L, sizeof(cu_layer));
    if (!fail && (!A->count || !A->h_cw || !A->lay)) {
        fail = 1;
        flow_fail(e, FLOW_E_NOMEM, "model: out of memory");
    }
    if (!fail) {
        memset(A->h_in, 0, A->in.total * sizeof(int32_t));
        rc = cuda_sync(A->c, e);    // the memsets done before the first upload
        fail = rc != 0;
    }
    if (fail) {
        int code = e ? e->code : FLOW_E_NOMEM;
        char why[sizeof e->msg] = "";
        if (e) snprintf(why, sizeof why, "%s", e->msg);
        bert_cuda_release(m);
        return flow_fail(e, code, "model: %s (GPU %d, %.1f MiB of device memory for batch %d x %d; "
                         "use a smaller batch or sequence length)", why, m->gpu, total * 4.0 / 1048576.0,
                         m->max_B, m->max_T);
    }
    offsets(m, s);
    return 0;
}

// ---- forward ---------------------------------------------------------------------

// Dropout sites: bert_cpu.c's, so the keys (and masks) are the CPU's.
#define SITE_EMB 0
#define SITE_ATT(l) (1 + 4 * (uint64_t)(l))
#define SITE_AOUT(l) (2 + 4 * (uint64_t)(l))
#define SITE_FOUT(l) (3 + 4 * (uint64_t)(l))
#define SITE_POOL ((uint64_t)1 << 40)

static uint64_t site_key(const bert_model *m, uint64_t site)
{
    return dropout_key(m->dropout_seed, m->acts->counter, site);
}

// Host: the row lists of one embedding table's backward.  key(n) is the
// table row position n adds to (skip: a key that adds nothing, the padding
// id, or -1).  uniq[u] are the rows present in increasing order, and
// pos[off[u] .. off[u+1]) their positions in increasing order: a counting
// sort, O(N + nkeys).  Returns the number of rows.
template <typename KeyFn>
static int build_rows(KeyFn key, int N, int nkeys, int skip, int *count, int32_t *uniq, int32_t *off,
                      int32_t *pos)
{
    memset(count, 0, (size_t)nkeys * sizeof *count);
    for (int n = 0; n < N; n++) {
        int k = key(n);
        if (k != skip) count[k]++;
    }
    int U = 0, run = 0;
    for (int k = 0; k < nkeys; k++)
        if (count[k]) {
            uniq[U] = k;
            off[U] = run;
            run += count[k];
            count[k] = off[U];      // now the next free slot of row k
            U++;
        }
    off[U] = run;
    for (int n = 0; n < N; n++) {
        int k = key(n);
        if (k != skip) pos[count[k]++] = n;
    }
    return U;
}

extern "C" int cuda_row_lists(const int32_t *keys, int N, int nkeys, int skip, int *count, int32_t *uniq,
                              int32_t *off, int32_t *pos)
{
    return build_rows([keys](int n) { return (int)keys[n]; }, N, nkeys, skip, count, uniq, off, pos);
}

// Host: the batch into the pinned input region (ids, types, mask, the MLM
// rows and targets, the labels, the embedding row lists).
static void stage_inputs(bert_model *m, const bert_batch *bt, int head)
{
    struct bert_acts *A = m->acts;
    const bert_config *c = &m->cfg;
    int B = bt->B, T = bt->T, N = B * T;
    int32_t *h = A->h_in;
    const cu_inputs &in = A->in;
    memcpy(h + in.ids, bt->ids, (size_t)N * sizeof(int32_t));
    A->has_types = bt->type_ids != NULL;
    if (A->has_types) memcpy(h + in.types, bt->type_ids, (size_t)N * sizeof(int32_t));
    A->has_mask = bt->attn_mask != NULL;
    if (A->has_mask) memcpy(h + in.mask, bt->attn_mask, (size_t)N * sizeof(int32_t));
    A->M = 0;
    if (head == BERT_HEAD_MLM)
        for (int n = 0; n < N; n++)
            if (bt->mlm_labels[n] != BERT_IGNORE_INDEX) {
                h[in.rows + A->M] = n;
                h[in.targets + A->M] = bt->mlm_labels[n];
                A->M++;
            }
    A->has_labels = head == BERT_HEAD_CLASSIFY && bt->labels != NULL;
    A->has_cw = head == BERT_HEAD_CLASSIFY && bt->class_weights != NULL;
    if (A->has_labels) memcpy(h + in.clabels, bt->labels, (size_t)B * sizeof(int32_t));
    if (A->has_cw) memcpy(A->h_cw, bt->class_weights, (size_t)c->num_labels * sizeof(float));
    const int32_t *ids = h + in.ids, *types = A->has_types ? h + in.types : NULL;
    A->nw = build_rows([ids](int n) { return (int)ids[n]; }, N, c->vocab_size, 0, A->count,
                       h + in.w_uniq, h + in.w_off, h + in.w_pos);
    A->ny = build_rows([types](int n) { return types ? (int)types[n] : 0; }, N, c->type_vocab, -1,
                       A->count, h + in.y_uniq, h + in.y_off, h + in.y_pos);
    A->np = build_rows([T](int n) { return n % T; }, N, T, -1, A->count, h + in.p_uniq, h + in.p_off,
                       h + in.p_pos);
}

#define DIN(field) (A->d_in + A->in.field)

// Grows the MLM logits (device, and the host copy) to hold M rows.
static int mlm_logits_reserve(bert_model *m, int M, flow_err *e)
{
    struct bert_acts *A = m->acts;
    size_t mN = (size_t)m->max_B * m->max_T, V = (size_t)m->cfg.vocab_size;
    if ((size_t)M <= A->logits_cap) return 0;
    size_t rows = (size_t)M + (size_t)M / 4;
    rows = rows < mN ? rows : mN;
    cuda_free(A->logits);       // cudaFree waits for the device: a high-water mark, rare
    cuda_free(A->dlogits);
    A->logits = A->dlogits = NULL;
    A->logits_cap = 0;
    if (cuda_alloc(A->c, (void **)&A->logits, rows * V * sizeof(float), e) ||
        cuda_alloc(A->c, (void **)&A->dlogits, rows * V * sizeof(float), e)) {
        cuda_free(A->logits);
        A->logits = NULL;
        return flow_fail(e, FLOW_E_NOMEM, "forward: cannot allocate %.1f MiB of MLM logits on GPU %d "
                         "for %d labelled positions", 2.0 * rows * V * 4 / 1048576.0, m->gpu, M);
    }
    A->logits_cap = rows;
    return 0;
}

static int host_logits_reserve(bert_model *m, size_t n, flow_err *e)
{
    struct bert_acts *A = m->acts;
    if (n <= A->h_logits_cap) return 0;
    if (A->h_logits) cudaFreeHost(A->h_logits);
    A->h_logits = NULL;
    A->h_logits_cap = 0;
    size_t cap = n + n / 4;
    if (cudaMallocHost((void **)&A->h_logits, cap * sizeof(float)) != cudaSuccess) {
        A->h_logits = NULL;
        return flow_fail(e, FLOW_E_NOMEM, "forward: cannot allocate %.1f MiB of pinned host memory "
                         "for the logits", cap * 4.0 / 1048576.0);
    }
    A->h_logits_cap = cap;
    return 0;
}

typedef struct layer_acts {
    float *x, *xo, *qkv, *probs, *ctx, *res1, *a, *res2, *fc1, *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd;
} layer_acts;

static layer_acts layer_view(const bert_model *m, int l)
{
    struct bert_acts *A = m->acts;
    const cu_layer *o = &A->lay[l];
    size_t mN = (size_t)m->max_B * m->max_T, H = (size_t)m->cfg.hidden;
    layer_acts v = {
        A->x + l * mN * H, A->x + (l + 1) * mN * H, A->qkv + o->act_qkv, A->probs + o->act_probs,
        A->ctx + o->act_ctx, A->res1 + l * mN * H, A->a + l * mN * H, A->res2 + l * mN * H,
        A->fc1 + o->act_fc1, A->ln1_mean + l * mN, A->ln1_rstd + l * mN, A->ln2_mean + l * mN,
        A->ln2_rstd + l * mN,
    };
    return v;
}

// x_{l+1} = encoder layer l (x_l): bert_cpu.c's layer_forward, op for op.
static int layer_forward(bert_model *m, int l, const int32_t *mask, float ph, float pa, flow_err *e)
{
    struct bert_acts *A = m->acts;
    cuda_ctx *cx = A->c;
    const cu_layer *o = &A->lay[l];
    const float *P = A->P;
    int B = A->B, T = A->T, N = B * T, H = m->cfg.hidden, Aw = o->A, I = o->I;
    size_t NH = (size_t)N * H;
    layer_acts v = layer_view(m, l);
    float *gel = A->dbig;   // scratch in forward
    int rc = 0;
    PROF(BERT_OP_MATMUL, 1, 2.0 * N * H * 3 * Aw,
         rc = cuda_linear_forward(cx, v.qkv, NULL, v.x, P + o->qkv_w, P + o->qkv_b, N, H, 3 * Aw, 0, e));
    if (rc) return rc;
    PROF(BERT_OP_ATTENTION, 1, 4.0 * B * T * T * Aw,
         rc = cuda_attention_forward(cx, v.ctx, v.probs, v.qkv, mask, B, T, o->nh, m->cfg.head_size, pa,
                                     site_key(m, SITE_ATT(l)), A->att_scratch, e));
    if (rc) return rc;
    PROF(BERT_OP_MATMUL, 1, 2.0 * N * H * Aw,
         rc = cuda_linear_forward(cx, A->tmp, NULL, v.ctx, P + o->o_w, P + o->o_b, N, Aw, H, 0, e));
    if (rc) return rc;
    // residual_dropout_forward: tmp = dropout(tmp), res1 = x + tmp
    PROF(BERT_OP_RESIDUAL, 1, 0, {
        cuda_dropout_forward(cx, A->tmp, A->tmp, NH, ph, site_key(m, SITE_AOUT(l)));
        cuda_residual_forward(cx, v.res1, v.x, A->tmp, NH);
    });
    PROF(BERT_OP_LAYERNORM, 1, 0,
         cuda_layernorm_forward(cx, v.a, v.ln1_mean, v.ln1_rstd, v.res1, P + o->ln1_g, P + o->ln1_b, N, H));
    // fc1 = a Wi^T + bi (kept, pre-GELU), gel = GELU(fc1)
    PROF(BERT_OP_MATMUL, 1, 2.0 * N * H * I,
         rc = cuda_linear_forward(cx, gel, v.fc1, v.a, P + o->i_w, P + o->i_b, N, H, I, 1, e));
    if (rc) return rc;
    PROF(BERT_OP_MATMUL, 1, 2.0 * N * H * I,
         rc = cuda_linear_forward(cx, A->tmp, NULL, gel, P + o->o2_w, P + o->o2_b, N, I, H, 0, e));
    if (rc) return rc;
    PROF(BERT_OP_RESIDUAL, 1, 0, {
        cuda_dropout_forward(cx, A->tmp, A->tmp, NH, ph, site_key(m, SITE_FOUT(l)));
        cuda_residual_forward(cx, v.res2, v.a, A->tmp, NH);
    });
    PROF(BERT_OP_LAYERNORM, 1, 0,
         cuda_layernorm_forward(cx, v.xo, v.ln2_mean, v.ln2_rstd, v.res2, P + o->ln2_g, P + o->ln2_b, N, H));
    return 0;
}

// MLM head on the labelled rows (bert_cpu.c's mlm_head_forward); the
// losses and logits come back at the forward's SYNC.
static int mlm_head_forward(bert_model *m, flow_err *e)
{
    struct bert_acts *A = m->acts;
    cuda_ctx *cx = A->c;
    const float *P = A->P;
    int M = A->M, H = m->cfg.hidden, V = m->cfg.vocab_size;
    const float *hL = A->x + (size_t)m->cfg.layers * m->max_B * m->max_T * H;
    A->wsum = M;    // no class weights: every labelled row weighs 1
    TRY(mlm_logits_reserve(m, M, e));
    TRY(host_logits_reserve(m, (size_t)M * V, e));
    if (M == 0) return 0;
    int rc = 0;
    PROF(BERT_OP_OTHER, 1, 0, cuda_gather_rows(cx, A->h_sel, hL, DIN(rows), M, H));
    // t = h_sel Wt^T + bt (kept), g = GELU(t)
    PROF(BERT_OP_MATMUL, 1, 2.0 * M * H * H,
         rc = cuda_linear_forward(cx, A->g, A->t, A->h_sel, P + A->mt_w, P + A->mt_b, M, H, H, 1, e));
    if (rc) return rc;
    PROF(BERT_OP_LAYERNORM, 1, 0,
         cuda_layernorm_forward(cx, A->ln, A->ln_mean, A->ln_rstd, A->g, P + A->mln_g, P + A->mln_b, M, H));
    PROF(BERT_OP_MATMUL, 1, 2.0 * M * H * V,
         rc = cuda_linear_forward(cx, A->logits, NULL, A->ln, P + A->wte, P + A->mbias, M, H, V, 0, e));
    if (rc) return rc;
    PROF(BERT_OP_XENT, 1, 0,
         cuda_xent_forward(cx, A->lse, A->rowloss, A->rowcorrect, A->wsum_d, A->logits, DIN(targets), NULL, M, V));
    cudaMemcpyAsync(A->h_logits, A->logits, (size_t)M * V * sizeof(float), cudaMemcpyDeviceToHost, cx->stream);
    cudaMemcpyAsync(A->h_rowloss, A->rowloss, (size_t)M * sizeof(float), cudaMemcpyDeviceToHost, cx->stream);
    cudaMemcpyAsync(A->h_rowcorrect, A->rowcorrect, (size_t)M * sizeof(int32_t), cudaMemcpyDeviceToHost,
                    cx->stream);
    return 0;
}

// Pooling, pooler, classifier (bert_cpu.c's cls_head_forward).
static int cls_head_forward(bert_model *m, float ph, flow_err *e)
{
    struct bert_acts *A = m->acts;
    cuda_ctx *cx = A->c;
    const float *P = A->P;
    int B = A->B, T = A->T, H = m->cfg.hidden, C = m->cfg.num_labels;
    const float *hL = A->x + (size_t)m->cfg.layers * m->max_B * m->max_T * H;
    TRY(host_logits_reserve(m, (size_t)B * C, e));
    int rc = 0;
    if (m->cfg.pooling == BERT_POOL_MEAN)
        PROF(BERT_OP_OTHER, 1, 0, cuda_mean_pool_forward(cx, A->cls_in, hL, A->has_mask ? DIN(mask) : NULL, B, T, H));
    else
        PROF(BERT_OP_OTHER, 1, 0, cuda_cls_pool_forward(cx, A->cls_in, hL, B, T, H));
    PROF(BERT_OP_MATMUL, 1, 2.0 * B * H * H,
         rc = cuda_linear_forward(cx, A->pooled, NULL, A->cls_in, P + A->pool_w, P + A->pool_b, B, H, H, 0, e));
    if (rc) return rc;
    PROF(BERT_OP_TANH, 1, 0, cuda_tanh_forward(cx, A->pooled, A->pooled, (size_t)B * H));
    PROF(BERT_OP_DROPOUT, 1, 0,
         cuda_dropout_forward(cx, A->pooled_d, A->pooled, (size_t)B * H, ph, site_key(m, SITE_POOL)));
    PROF(BERT_OP_MATMUL, 1, 2.0 * B * H * C,
         rc = cuda_linear_forward(cx, A->clogits, NULL, A->pooled_d, P + A->cls_w, P + A->cls_b, B, H, C, 0, e));
    if (rc) return rc;
    if (A->has_cw)
        cudaMemcpyAsync(A->d_cw, A->h_cw, (size_t)C * sizeof(float), cudaMemcpyHostToDevice, cx->stream);
    if (A->has_labels) {
        PROF(BERT_OP_XENT, 1, 0,
             cuda_xent_forward(cx, A->clse, A->rowloss, A->rowcorrect, A->wsum_d, A->clogits, DIN(clabels),
                               A->has_cw ? A->d_cw : NULL, B, C));
        cudaMemcpyAsync(A->h_rowloss, A->rowloss, (size_t)B * sizeof(float), cudaMemcpyDeviceToHost, cx->stream);
        cudaMemcpyAsync(A->h_rowcorrect, A->rowcorrect, (size_t)B * sizeof(int32_t), cudaMemcpyDeviceToHost,
                        cx->stream);
        const int32_t *y = A->h_in + A->in.clabels;
        A->wsum = 0;
        for (int b = 0; b < B; b++) A->wsum += A->has_cw ? A->h_cw[y[b]] : 1.0;
    }
    cudaMemcpyAsync(A->h_logits, A->clogits, (size_t)B * C * sizeof(float), cudaMemcpyDeviceToHost, cx->stream);
    return 0;
}

int bert_cuda_forward(bert_model *m, const bert_batch *bt, int head, int train, bert_output *out, flow_err *e)
{
    struct bert_acts *A = m->acts;
    const bert_config *c = &m->cfg;
    int B = bt->B, T = bt->T, N = B * T, H = c->hidden;
    float ph = train ? c->hidden_dropout : 0.0f, pa = train ? c->attn_dropout : 0.0f;
    A->valid = 0;
    if (A->failed) return flow_fail(e, A->err.code, "%s", A->err.msg);
    if (m->linear_hook && !train)
        return flow_fail(e, FLOW_E_PARAM, "forward: the CUDA backend has no quantized or observing Linear "
                         "layers (quantization and calibration run on the CPU)");
    cuda_ctx *cx = A->c;
    if (A->staged)      // the last forward failed before its SYNC: its upload may still read h_in
        TRY(cuda_sync(cx, e));
    A->B = B; A->T = T; A->head = head; A->train = train;
    A->counter = m->fwd_counter;
    if (train) m->fwd_counter++;
    stage_inputs(m, bt, head);
    cudaMemcpyAsync(A->d_in, A->h_in, A->in.total * sizeof(int32_t), cudaMemcpyHostToDevice, cx->stream);
    A->staged = 1;
    const int32_t *mask = A->has_mask ? DIN(mask) : NULL;
    const float *P = A->P;
    // embeddings -> x0
    PROF(BERT_OP_EMBED, 1, 0,
         cuda_embedding_forward(cx, A->emb, DIN(ids), A->has_types ? DIN(types) : NULL, P + A->wte, P + A->wpe,
                                P + A->wtt, B, T, H));
    PROF(BERT_OP_LAYERNORM, 1, 0,
         cuda_layernorm_forward(cx, A->x, A->emb_mean, A->emb_rstd, A->emb, P + A->eln_g, P + A->eln_b, N, H));
    PROF(BERT_OP_DROPOUT, 1, 0, cuda_dropout_forward(cx, A->x, A->x, (size_t)N * H, ph, site_key(m, SITE_EMB)));
    for (int l = 0; l < c->layers; l++) TRY(layer_forward(m, l, mask, ph, pa, e));
    TRY(head == BERT_HEAD_MLM ? mlm_head_forward(m, e) : cls_head_forward(m, ph, e));
    // SYNC: the loss read; the copies enqueued by the head arrive
    TRY(cuda_sync(cx, e));
    A->staged = 0;
    memset(out, 0, sizeof *out);
    int rows = head == BERT_HEAD_MLM ? A->M : A->has_labels ? B : 0;
    double num = 0;
    long correct = 0;
    for (int i = 0; i < rows; i++) {    // row order, in double (as xent_forward)
        num += A->h_rowloss[i];
        correct += A->h_rowcorrect[i];
    }
    if (head == BERT_HEAD_MLM || A->has_labels) {
        out->loss = (float)(A->wsum > 0 ? num / A->wsum : 0.0);
        out->n_targets = rows;
        out->n_correct = correct;
    }
    out->logits = A->h_logits;
    out->rows = head == BERT_HEAD_MLM ? A->h_in + A->in.rows : NULL;
    A->valid = 1;
    return 0;
}

// ---- backward -----------------------------------------------------------------------

// dx[N,H] = gradient at the final hidden states from the MLM head.
static int mlm_head_backward(bert_model *m, const float *ext, float scale, flow_err *e)
{
    struct bert_acts *A = m->acts;
    cuda_ctx *cx = A->c;
    const float *P = A->P;
    float *G = A->G;
    int M = A->M, H = m->cfg.hidden, V = m->cfg.vocab_size, rc = 0;
    if (M == 0) return 0;
    if (ext)    // SYNC (distillation only): pageable host memory
        cudaMemcpyAsync(A->dlogits, ext, (size_t)M * V * sizeof(float), cudaMemcpyHostToDevice, cx->stream);
    else
        PROF(BERT_OP_XENT, 0, 0,
             cuda_xent_backward(cx, A->dlogits, A->logits, A->lse, DIN(targets), NULL, A->wsum_d, M, V, scale));
    // decoder tied to the word embeddings: dwte += dlogits^T ln
    PROF(BERT_OP_MATMUL, 0, 4.0 * M * H * V,
         rc = cuda_linear_backward(cx, A->dres, G + A->wte, G + A->mbias, A->dlogits, A->ln, P + A->wte, M, H, V, 0, e));
    if (rc) return rc;
    PROF(BERT_OP_LAYERNORM, 0, 0,
         cuda_layernorm_backward(cx, A->da, G + A->mln_g, G + A->mln_b, A->dres, A->g, P + A->mln_g, A->ln_mean,
                                 A->ln_rstd, M, H, A->ln_scratch));
    PROF(BERT_OP_GELU, 0, 0, cuda_gelu_backward(cx, A->da, A->t, A->da, (size_t)M * H));
    PROF(BERT_OP_MATMUL, 0, 4.0 * M * H * H,
         rc = cuda_linear_backward(cx, A->dres, G + A->mt_w, G + A->mt_b, A->da, A->h_sel, P + A->mt_w, M, H, H, 0, e));
    if (rc) return rc;
    PROF(BERT_OP_OTHER, 0, 0, cuda_scatter_add_rows(cx, A->dx, A->dres, DIN(rows), M, H));
    return 0;
}

// dx = gradient at the final hidden states from the classifier.
static int cls_head_backward(bert_model *m, const float *ext, float scale, flow_err *e)
{
    struct bert_acts *A = m->acts;
    cuda_ctx *cx = A->c;
    const float *P = A->P;
    float *G = A->G;
    int B = A->B, T = A->T, H = m->cfg.hidden, C = m->cfg.num_labels, rc = 0;
    float ph = A->train ? m->cfg.hidden_dropout : 0.0f;
    float *dcl = A->dbig;   // [B,C]
    if (ext)    // SYNC (distillation only): pageable host memory
        cudaMemcpyAsync(dcl, ext, (size_t)B * C * sizeof(float), cudaMemcpyHostToDevice, cx->stream);
    else
        PROF(BERT_OP_XENT, 0, 0,
             cuda_xent_backward(cx, dcl, A->clogits, A->clse, DIN(clabels), A->has_cw ? A->d_cw : NULL, A->wsum_d,
                                B, C, scale));
    PROF(BERT_OP_MATMUL, 0, 4.0 * B * H * C,
         rc = cuda_linear_backward(cx, A->da, G + A->cls_w, G + A->cls_b, dcl, A->pooled_d, P + A->cls_w, B, H, C, 0, e));
    if (rc) return rc;
    PROF(BERT_OP_DROPOUT, 0, 0, cuda_dropout_backward(cx, A->da, A->da, (size_t)B * H, ph, site_key(m, SITE_POOL)));
    PROF(BERT_OP_TANH, 0, 0, cuda_tanh_backward(cx, A->da, A->pooled, A->da, (size_t)B * H));
    PROF(BERT_OP_MATMUL, 0, 4.0 * B * H * H,
         rc = cuda_linear_backward(cx, A->dres, G + A->pool_w, G + A->pool_b, A->da, A->cls_in, P + A->pool_w, B, H, H,
                                   0, e));
    if (rc) return rc;
    if (m->cfg.pooling == BERT_POOL_MEAN)
        PROF(BERT_OP_OTHER, 0, 0, cuda_mean_pool_backward(cx, A->dx, A->dres, A->has_mask ? DIN(mask) : NULL, B, T, H));
    else
        PROF(BERT_OP_OTHER, 0, 0, cuda_cls_pool_backward(cx, A->dx, A->dres, B, T, H));
    return 0;
}

// dx: gradient at x_{l+1} on entry, at x_l on return (bert_cpu.c's layer_backward).
static int layer_backward(bert_model *m, int l, flow_err *e)
{
    struct bert_acts *A = m->acts;
    cuda_ctx *cx = A->c;
    const cu_layer *o = &A->lay[l];
    const float *P = A->P;
    float *G = A->G;
    int B = A->B, T = A->T, N = B * T, H = m->cfg.hidden, Aw = o->A, I = o->I, rc = 0;
    float ph = A->train ? m->cfg.hidden_dropout : 0.0f, pa = A->train ? m->cfg.attn_dropout : 0.0f;
    layer_acts v = layer_view(m, l);
    float *gel = A->tmp;
    size_t NH = (size_t)N * H;
    // x' = LN2(res2), res2 = a + drop(gel W2^T + b2)
    PROF(BERT_OP_LAYERNORM, 0, 0,
         cuda_layernorm_backward(cx, A->dres, G + o->ln2_g, G + o->ln2_b, A->dx, v.res2, P + o->ln2_g, v.ln2_mean,
                                 v.ln2_rstd, N, H, A->ln_scratch));
    PROF(BERT_OP_RESIDUAL, 0, 0,
         cudaMemcpyAsync(A->da, A->dres, NH * sizeof(float), cudaMemcpyDeviceToDevice, cx->stream));
    PROF(BERT_OP_DROPOUT, 0, 0, cuda_dropout_backward(cx, A->dres, A->dres, NH, ph, site_key(m, SITE_FOUT(l))));
    PROF(BERT_OP_GELU, 0, 0, cuda_gelu_forward(cx, gel, v.fc1, (size_t)N * I));
    PROF(BERT_OP_MATMUL, 0, 4.0 * N * H * I,
         rc = cuda_linear_backward(cx, A->dbig, G + o->o2_w, G + o->o2_b, A->dres, gel, P + o->o2_w, N, I, H, 0, e));
    if (rc) return rc;
    PROF(BERT_OP_GELU, 0, 0, cuda_gelu_backward(cx, A->dbig, v.fc1, A->dbig, (size_t)N * I));
    PROF(BERT_OP_MATMUL, 0, 4.0 * N * H * I,
         rc = cuda_linear_backward(cx, A->da, G + o->i_w, G + o->i_b, A->dbig, v.a, P + o->i_w, N, H, I, 1, e));
    if (rc) return rc;
    // a = LN1(res1), res1 = x + drop(ctx Wo^T + bo)
    PROF(BERT_OP_LAYERNORM, 0, 0,
         cuda_layernorm_backward(cx, A->dres, G + o->ln1_g, G + o->ln1_b, A->da, v.res1, P + o->ln1_g, v.ln1_mean,
                                 v.ln1_rstd, N, H, A->ln_scratch));
    PROF(BERT_OP_RESIDUAL, 0, 0,
         cudaMemcpyAsync(A->dx, A->dres, NH * sizeof(float), cudaMemcpyDeviceToDevice, cx->stream));
    PROF(BERT_OP_DROPOUT, 0, 0, cuda_dropout_backward(cx, A->dres, A->dres, NH, ph, site_key(m, SITE_AOUT(l))));
    PROF(BERT_OP_MATMUL, 0, 4.0 * N * H * Aw,
         rc = cuda_linear_backward(cx, A->dctx, G + o->o_w, G + o->o_b, A->dres, v.ctx, P + o->o_w, N, Aw, H, 0, e));
    if (rc) return rc;
    PROF(BERT_OP_ATTENTION, 0, 8.0 * B * T * T * Aw,
         rc = cuda_attention_backward(cx, A->dqkv, A->dctx, v.qkv, v.probs, B, T, o->nh, m->cfg.head_size, pa,
                                      site_key(m, SITE_ATT(l)), A->att_scratch, e));
    if (rc) return rc;
    PROF(BERT_OP_MATMUL, 0, 4.0 * N * H * 3 * Aw,
         rc = cuda_linear_backward(cx, A->dx, G + o->qkv_w, G + o->qkv_b, A->dqkv, v.x, P + o->qkv_w, N, H, 3 * Aw, 1, e));
    return rc;
}

// dx += dh, an external gradient at a hidden state (host memory, may be NULL).
static void add_hidden_grad(bert_model *m, const float *dh)
{
    if (!dh) return;
    struct bert_acts *A = m->acts;
    size_t n = (size_t)A->B * A->T * m->cfg.hidden;
    // SYNC (distillation only): pageable host memory; dh is reused only
    // after the add below, in stream order
    cudaMemcpyAsync(A->dh, dh, n * sizeof(float), cudaMemcpyHostToDevice, A->c->stream);
    cuda_residual_forward(A->c, A->dx, A->dx, A->dh, n);
}

// GPU data parallelism's hook (kernels/dp.h, cuda_nccl.cu): backward
// stage s of m is done (1: heads, 1 + L - l: layer l, L + 2: all), so the
// buckets it made final may start their all-reduce on the communication
// stream; nothing unless dp_gpu_arm armed this backward.
#ifdef FLOW_HAVE_NCCL
extern "C" void cuda_dp_ready(bert_model *m, int stage);
#define DP_READY(m, s) do { if ((m)->dp_state) cuda_dp_ready((m), (s)); } while (0)
#else
#define DP_READY(m, s) do { } while (0)
#endif

int bert_cuda_backward(bert_model *m, float scale, const float *dlogits, const float *const *dhidden, flow_err *e)
{
    struct bert_acts *A = m->acts;
    const bert_config *c = &m->cfg;
    cuda_ctx *cx = A->c;
    int N = A->B * A->T, H = c->hidden;
    float ph = A->train ? c->hidden_dropout : 0.0f;
    if (A->failed) return flow_fail(e, A->err.code, "%s", A->err.msg);
    if (!A->valid) return flow_fail(e, FLOW_E_PARAM, "backward: no forward pass to differentiate");
    if (A->head == BERT_HEAD_CLASSIFY && !A->has_labels && !dlogits)
        return flow_fail(e, FLOW_E_PARAM, "backward: the last classification forward had no labels");
    const float *P = A->P;
    float *G = A->G;
    cudaMemsetAsync(A->dx, 0, (size_t)N * H * sizeof(float), cx->stream);
    TRY(A->head == BERT_HEAD_MLM ? mlm_head_backward(m, dlogits, scale, e) : cls_head_backward(m, dlogits, scale, e));
    DP_READY(m, 1);     // the heads' gradients are final: their buckets may go (cuda_nccl.cu)
    for (int l = c->layers - 1; l >= 0; l--) {
        add_hidden_grad(m, dhidden ? dhidden[l + 1] : NULL);
        TRY(layer_backward(m, l, e));
        DP_READY(m, 1 + c->layers - l);
    }
    add_hidden_grad(m, dhidden ? dhidden[0] : NULL);
    // x0 = drop(LN(emb))
    PROF(BERT_OP_DROPOUT, 0, 0, cuda_dropout_backward(cx, A->dx, A->dx, (size_t)N * H, ph, site_key(m, SITE_EMB)));
    PROF(BERT_OP_LAYERNORM, 0, 0,
         cuda_layernorm_backward(cx, A->dres, G + A->eln_g, G + A->eln_b, A->dx, A->emb, P + A->eln_g, A->emb_mean,
                                 A->emb_rstd, N, H, A->ln_scratch));
    // embedding_backward, row by row from the host-built lists (padding id 0 excluded)
    PROF(BERT_OP_EMBED, 0, 0, {
        cuda_rows_scatter_add(cx, G + A->wpe, DIN(p_uniq), DIN(p_off), DIN(p_pos), A->np, A->dres, H);
        cuda_rows_scatter_add(cx, G + A->wtt, DIN(y_uniq), DIN(y_off), DIN(y_pos), A->ny, A->dres, H);
        cuda_rows_scatter_add(cx, G + A->wte, DIN(w_uniq), DIN(w_off), DIN(w_pos), A->nw, A->dres, H);
    });
    DP_READY(m, c->layers + 2);
    cudaError_t rc = cudaGetLastError();    // launch errors only: no sync here
    return rc == cudaSuccess ? 0 : cuda_fail(e, rc, "backward");
}
