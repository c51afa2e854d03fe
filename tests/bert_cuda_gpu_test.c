/* bert_cuda_gpu_test.c — the CUDA BERT backend (kernels/cuda/bert_cuda.cu)
 * against the CPU backend, model for model: the same config, the same
 * fresh random weights (bert_init, then every parameter perturbed, so no
 * bias or LayerNorm weight is 0 or 1), the same random batches (padding,
 * token types, labels, class weights) and the same dropout seed and
 * counter, with dropout on (0.1), so a mask that differs shows.  Checked:
 *   - MLM forward (loss, logits of the labelled rows, hits, every hidden
 *     state) and the full gradient buffer after backward;
 *   - the classifier with [CLS] pooling (labels and class weights) and
 *     with mean pooling, forward and gradients;
 *   - a pruned config (uneven heads[l] and ffn[l], heads x head_size != H);
 *   - bert_backward_ext with external dlogits and hidden-state gradients
 *     (distillation);
 *   - an eval forward without labels (logits only);
 *   - three training steps (forward, backward, clip, AdamW) and the params;
 *   - bf16 and fp16 mixed precision against fp32: logits, loss, gradients
 *     within the 16-bit formats' bounds, and farther than fp32 (the mixed
 *     path is taken).
 * Tolerances (fp32; the bounds are derived where they are used) are
 * printed with the measured errors, so a run shows its margins.
 * Before it looks for a GPU it checks the host half of the embedding
 * backward (cuda_row_lists, no GPU needed): replaying the row lists as
 * the kernel does gives embedding_backward's gradients bit for bit.
 * Exit 77 (skipped) in a build without CUDA or on a machine without a GPU.
 * Written without a GPU at hand: it has compiled, never run. */
#include "test.h"
#include "kernels/kernels.h"
#include "kernels/cpu/bert_ops.h"

#ifndef FLOW_HAVE_CUDA
int main(void)
{
    printf("skip: this build has no CUDA backend (nvcc not found or FLOW_CUDA=OFF)\n");
    return 77;
}
#else
#include "kernels/cuda/cuda_ops.h"
#include "kernels/dp.h"
#include <pthread.h>

#include <math.h>
#include <time.h>

extern const flow_cuda_api flow_cuda_api_v1;   /* linked in (flow_cuda_ops) */

static uint64_t rng;
static float urand(void) { return (float)((splitmix64_next(&rng) >> 40) * 0x1.0p-24) * 2.0f - 1.0f; }
static int irand(int n) { return (int)(splitmix64_next(&rng) % (uint64_t)n); }
static flow_err E;

/* ---- comparisons --------------------------------------------------------
 * Error measures: rel = ||gpu - cpu||_2 / ||cpu||_2 over a vector, and the
 * worst element against rtol * (|cpu| + rms(cpu)) (an element much smaller
 * than its vector's scale is held to the scale's precision). */
static double norm_rel(const float *g, const float *c, size_t n, double *worst_el, size_t *at)
{
    double d2 = 0, c2 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)g[i] - c[i];
        d2 += d * d;
        c2 += (double)c[i] * c[i];
    }
    double rms = sqrt(c2 / (n ? n : 1)), worst = 0;
    *at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)g[i] - c[i]), den = fabs(c[i]) + rms;
        double r = d == 0 ? 0 : den > 0 ? d / den : INFINITY;
        if (!(r <= worst)) { worst = r; *at = i; }
    }
    *worst_el = worst;
    return c2 > 0 ? sqrt(d2 / c2) : (d2 > 0 ? INFINITY : 0);
}

/* the vector within tol (norm-relative) and every element within 10 tol */
static void close_vec(const char *what, const float *g, const float *c, size_t n, double tol)
{
    double worst;
    size_t at;
    double rel = norm_rel(g, c, n, &worst, &at);
    printf("  %-48s rel %.2e  worst element %.2e  (tol %.0e)\n", what, rel, worst, tol);
    CHECK_MSG(rel <= tol && worst <= 10 * tol, "%s: norm-relative error %.3g (tol %.3g), element %zu: "
              "gpu %.9g cpu %.9g (%.3g, tol %.3g)", what, rel, tol, at, (double)g[at], (double)c[at], worst,
              10 * tol);
}

/* ---- models ------------------------------------------------------------------ */
typedef struct pair { bert_model *cpu, *gpu; } pair;

static pair pair_new_prec(const bert_config *cfg, int B, int T, int precision)
{
    pair p = { NULL, NULL };
    bert_device g = { 0, 0, precision };
    CHECK_OK(bert_model_new(cfg, B, T, &bert_device_cpu, &p.cpu, &E), E);
    CHECK_OK(bert_model_new(cfg, B, T, &g, &p.gpu, &E), E);
    if (!p.cpu || !p.gpu) return p;
    CHECK_MSG(p.gpu->backend == BERT_ON_CUDA, "a model on GPU 0 runs on the %s backend", p.gpu->ops ? "cpu" : "?");
    CHECK_OK(bert_init(p.cpu, splitmix64_next(&rng), &E), E);
    for (size_t i = 0; i < p.cpu->nparams; i++) p.cpu->params[i] += 0.05f * urand();
    memcpy(p.gpu->params, p.cpu->params, p.cpu->nparams * sizeof(float));
    p.gpu->dropout_seed = p.cpu->dropout_seed;
    CHECK_OK(bert_sync_to_device(p.gpu, &E), E);
    return p;
}

static pair pair_new(const bert_config *cfg, int B, int T)
{
    return pair_new_prec(cfg, B, T, BERT_FP32);
}

static void pair_free(pair *p)
{
    bert_model_free(p->cpu);
    bert_model_free(p->gpu);
}

typedef struct batch {
    int B, T;
    int32_t *ids, *types, *mask, *mlm, *labels;
    float *cw;
} batch;

/* ids in [1, V) with some padding id 0 inside (no gradient row), types
 * 0/1, sequence b padded after its random length (position 0 real), about
 * 30% of the real positions labelled for MLM, class labels and weights. */
static batch batch_new(const bert_config *c, int B, int T)
{
    batch b = { B, T, malloc((size_t)B * T * 4), malloc((size_t)B * T * 4), malloc((size_t)B * T * 4),
                malloc((size_t)B * T * 4), malloc((size_t)B * 4), malloc((size_t)c->num_labels * 4) };
    for (int s = 0; s < B; s++) {
        int len = s == 0 ? T : 1 + irand(T);
        for (int t = 0; t < T; t++) {
            size_t k = (size_t)s * T + t;
            b.ids[k] = irand(10) == 0 ? 0 : 1 + irand(c->vocab_size - 1);
            b.types[k] = t >= len / 2;
            b.mask[k] = t < len;
            b.mlm[k] = t < len && irand(10) < 3 ? irand(c->vocab_size) : BERT_IGNORE_INDEX;
        }
        b.mlm[(size_t)s * T] = irand(c->vocab_size);    /* at least one labelled row each */
        b.labels[s] = irand(c->num_labels);
    }
    for (int k = 0; k < c->num_labels; k++) b.cw[k] = 0.5f + fabsf(urand());
    return b;
}

static void batch_free(batch *b)
{
    free(b->ids); free(b->types); free(b->mask); free(b->mlm); free(b->labels); free(b->cw);
}

static bert_batch as_bert(const batch *b, int with_labels)
{
    bert_batch x = { b->B, b->T, b->ids, b->types, b->mask, b->mlm, with_labels ? b->labels : NULL,
                     with_labels ? b->cw : NULL };
    return x;
}

/* Rows whose top two CPU logits are closer than gap: their argmax may
 * differ between two correct fp32 computations. */
static long near_ties(const float *lg, long rows, int n, float gap)
{
    long k = 0;
    for (long r = 0; r < rows; r++) {
        const float *x = lg + (size_t)r * n;
        float a = -INFINITY, b = -INFINITY;
        for (int j = 0; j < n; j++)
            if (x[j] > a) { b = a; a = x[j]; }
            else if (x[j] > b) b = x[j];
        k += a - b < gap;
    }
    return k;
}

/* Tolerances.  fp32 rounding u = 6e-8 per operation; the two backends sum
 * in different orders (cuBLAS vs OpenBLAS blocks, warp trees vs 8-lane
 * vectors) and use different exp/erf (libdevice vs the CPU's polynomials,
 * relative error ~1e-7).  A dot product of length K then differs by about
 * sqrt(K) u relative (K <= 128 here: ~7e-7), and a forward chains ~10 such
 * ops per layer (LayerNorm renormalises, so errors add, not multiply):
 * ~2e-5 for 2 layers and the head.  Logits and hidden states: 1e-4
 * (5x margin); the loss (a mean of log-sum-exps of those logits): 1e-5.
 * Backward chains twice the ops and adds over rows (bias, LayerNorm and
 * embedding gradients: N <= 60 terms): 3e-4 over the whole buffer, 1e-3
 * for each tensor (a small tensor whose sum cancels has fewer digits). */
#define TOL_FWD 1e-4
#define TOL_LOSS 1e-5
#define TOL_GRAD 3e-4
#define TOL_GRAD_TENSOR 1e-3

static void compare_grads(const char *what, pair *p)
{
    CHECK_OK(bert_sync_to_host(p->gpu, &E), E);
    char name[160];
    snprintf(name, sizeof name, "%s: the whole gradient buffer", what);
    close_vec(name, p->gpu->grads, p->cpu->grads, p->cpu->nparams, TOL_GRAD);
    double worst = 0;
    int wt = 0;
    for (int k = 0; k < p->cpu->ntensors; k++) {
        const bert_tensor *t = &p->cpu->tensors[k];
        double el;
        size_t at;
        double rel = norm_rel(p->gpu->grads + t->offset, p->cpu->grads + t->offset, t->numel, &el, &at);
        if (!(rel <= worst)) { worst = rel; wt = k; }
    }
    printf("  %-48s rel %.2e  (%s; tol %.0e)\n", "  worst tensor", worst, p->cpu->tensors[wt].name, TOL_GRAD_TENSOR);
    CHECK_MSG(worst <= TOL_GRAD_TENSOR, "%s: gradient of %s: norm-relative error %.3g (tol %.3g)", what,
              p->cpu->tensors[wt].name, worst, TOL_GRAD_TENSOR);
    float nc = bert_grad_norm(p->cpu), ng = bert_grad_norm(p->gpu);
    CHECK_MSG(fabs((double)ng - nc) <= TOL_GRAD * nc, "%s: grad norm gpu %.9g cpu %.9g", what, ng, nc);
}

/* forward with a head on both, compare, backward, compare gradients */
static void forward_backward(const char *what, pair *p, const batch *b, int head, int train)
{
    bert_batch x = as_bert(b, 1);
    bert_output oc, og;
    printf("%s\n", what);
    bert_zero_grad(p->cpu);
    bert_zero_grad(p->gpu);
    CHECK_OK(bert_forward(p->cpu, &x, head, train, &oc, &E), E);
    CHECK_OK(bert_forward(p->gpu, &x, head, train, &og, &E), E);
    CHECK_MSG(og.n_targets == oc.n_targets, "%s: targets gpu %ld cpu %ld", what, og.n_targets, oc.n_targets);
    if (og.n_targets != oc.n_targets || !og.logits) return;
    int n = head == BERT_HEAD_MLM ? p->cpu->cfg.vocab_size : p->cpu->cfg.num_labels;
    long rows = head == BERT_HEAD_MLM ? oc.n_targets : b->B;
    printf("  loss gpu %.9g cpu %.9g\n", og.loss, oc.loss);
    CHECK_MSG(fabs((double)og.loss - oc.loss) <= TOL_LOSS * fabs(oc.loss), "%s: loss gpu %.9g cpu %.9g",
              what, og.loss, oc.loss);
    close_vec("logits", og.logits, oc.logits, (size_t)rows * n, TOL_FWD);
    if (head == BERT_HEAD_MLM)
        CHECK_MSG(memcmp(og.rows, oc.rows, (size_t)rows * sizeof(int32_t)) == 0, "%s: MLM rows differ", what);
    long ties = near_ties(oc.logits, rows, n, 1e-3f);
    CHECK_MSG(labs(og.n_correct - oc.n_correct) <= ties, "%s: hits gpu %ld cpu %ld (%ld near ties)", what,
              og.n_correct, oc.n_correct, ties);
    for (int l = 0; l <= p->cpu->cfg.layers; l++) {
        char nm[64];
        snprintf(nm, sizeof nm, "hidden state %d", l);
        const float *hg = bert_hidden_states(p->gpu, l), *hc = bert_hidden_states(p->cpu, l);
        CHECK_MSG(hg != NULL, "%s: no hidden state %d from the GPU", what, l);
        if (hg) close_vec(nm, hg, hc, (size_t)b->B * b->T * p->cpu->cfg.hidden, TOL_FWD);
    }
    CHECK_OK(bert_backward(p->cpu, 0.5f, &E), E);
    CHECK_OK(bert_backward(p->gpu, 0.5f, &E), E);
    compare_grads(what, p);
}

static bert_config small_config(int mode, int pooling)
{
    bert_config c;
    bert_config_default(&c);
    c.vocab_size = 97;
    c.hidden = 48;
    c.layers = 2;
    c.max_len = 24;
    c.num_labels = 3;
    c.mode = mode;
    c.pooling = pooling;
    c.hidden_dropout = 0.1f;
    c.attn_dropout = 0.1f;
    CHECK_OK(bert_config_uniform(&c, 4, 96, &E), E);     /* head_size 12 */
    return c;
}

static void test_mlm_and_cls(int pooling)
{
    bert_config c = small_config(BERT_MODE_BOTH, pooling);
    int B = 3, T = 17;
    pair p = pair_new(&c, B, T);
    if (!p.gpu) return;
    batch b = batch_new(&c, B, T);
    if (pooling == BERT_POOL_CLS)
        forward_backward("MLM forward + backward (train, dropout 0.1)", &p, &b, BERT_HEAD_MLM, 1);
    forward_backward(pooling == BERT_POOL_CLS ? "classifier, [CLS] pooling, class weights (train)"
                                              : "classifier, mean pooling, class weights (train)",
                     &p, &b, BERT_HEAD_CLASSIFY, 1);
    /* eval forward without labels: logits only */
    bert_batch x = as_bert(&b, 0);
    bert_output oc, og;
    CHECK_OK(bert_forward(p.cpu, &x, BERT_HEAD_CLASSIFY, 0, &oc, &E), E);
    CHECK_OK(bert_forward(p.gpu, &x, BERT_HEAD_CLASSIFY, 0, &og, &E), E);
    if (og.logits) close_vec("eval classifier logits (no labels)", og.logits, oc.logits, (size_t)B * c.num_labels, TOL_FWD);
    batch_free(&b);
    pair_free(&p);
}

static void test_pruned(void)
{
    bert_config c = small_config(BERT_MODE_BOTH, BERT_POOL_MEAN);
    c.head_size = 8;
    c.heads[0] = 3;     /* A_0 = 24 */
    c.heads[1] = 1;     /* A_1 = 8 */
    c.ffn[0] = 80;
    c.ffn[1] = 24;
    CHECK_OK(bert_config_validate(&c, &E), E);
    int B = 2, T = 13;
    pair p = pair_new(&c, B, T);
    if (!p.gpu) return;
    batch b = batch_new(&c, B, T);
    forward_backward("pruned (heads 3/1 of 8, ffn 80/24): MLM", &p, &b, BERT_HEAD_MLM, 1);
    forward_backward("pruned: classifier, mean pooling", &p, &b, BERT_HEAD_CLASSIFY, 1);
    batch_free(&b);
    pair_free(&p);
}

/* distillation's backward: external dlogits and hidden-state gradients */
static void test_backward_ext(void)
{
    bert_config c = small_config(BERT_MODE_MLM, BERT_POOL_CLS);
    int B = 2, T = 11;
    pair p = pair_new(&c, B, T);
    if (!p.gpu) return;
    batch b = batch_new(&c, B, T);
    bert_batch x = as_bert(&b, 1);
    bert_output oc, og;
    printf("bert_backward_ext: dlogits + hidden-state gradients at layers 0 and 2\n");
    bert_zero_grad(p.cpu);
    bert_zero_grad(p.gpu);
    CHECK_OK(bert_forward(p.cpu, &x, BERT_HEAD_MLM, 1, &oc, &E), E);
    CHECK_OK(bert_forward(p.gpu, &x, BERT_HEAD_MLM, 1, &og, &E), E);
    size_t nl = (size_t)oc.n_targets * c.vocab_size, nh = (size_t)B * T * c.hidden;
    float *dl = malloc(nl * 4), *h0 = malloc(nh * 4), *h2 = malloc(nh * 4);
    for (size_t i = 0; i < nl; i++) dl[i] = 0.01f * urand();
    for (size_t i = 0; i < nh; i++) { h0[i] = 0.01f * urand(); h2[i] = 0.01f * urand(); }
    const float *dh[3] = { h0, NULL, h2 };
    CHECK_OK(bert_backward_ext(p.cpu, dl, dh, &E), E);
    CHECK_OK(bert_backward_ext(p.gpu, dl, dh, &E), E);
    compare_grads("backward_ext", &p);
    free(dl); free(h0); free(h2);
    batch_free(&b);
    pair_free(&p);
}

/* Three steps of forward, backward, clip (max norm 1), AdamW.  eps = 1e-3
 * (not 1e-8): with a tiny eps AdamW's update is ~lr sign(g), so a gradient
 * element within rounding of 0 can flip a whole lr between two correct
 * backends; with eps = 1e-3 the update is Lipschitz in g (constant lr/eps)
 * and the params differ by about lr/eps x the gradient error: TOL_GRAD x
 * (grad scale / eps) of the update, well under the 1e-2 allowed here
 * (measured against the update p - p0, not against p). */
static void test_train_steps(void)
{
    bert_config c = small_config(BERT_MODE_MLM, BERT_POOL_CLS);
    int B = 3, T = 15;
    pair p = pair_new(&c, B, T);
    if (!p.gpu) return;
    float *p0 = malloc(p.cpu->nparams * sizeof(float));
    memcpy(p0, p.cpu->params, p.cpu->nparams * sizeof(float));
    bert_adamw hp = { 0.9f, 0.999f, 1e-3f, 0.01f };
    printf("three training steps (AdamW lr 1e-3, eps 1e-3, wd 0.01, clip 1)\n");
    for (int s = 0; s < 3; s++) {
        batch b = batch_new(&c, B, T);
        bert_batch x = as_bert(&b, 1);
        bert_output oc, og;
        pair *q = &p;
        bert_zero_grad(q->cpu);
        bert_zero_grad(q->gpu);
        CHECK_OK(bert_forward(q->cpu, &x, BERT_HEAD_MLM, 1, &oc, &E), E);
        CHECK_OK(bert_forward(q->gpu, &x, BERT_HEAD_MLM, 1, &og, &E), E);
        CHECK_OK(bert_backward(q->cpu, 1.0f, &E), E);
        CHECK_OK(bert_backward(q->gpu, 1.0f, &E), E);
        float nc = bert_clip_grad_norm(q->cpu, 1.0f), ng = bert_clip_grad_norm(q->gpu, 1.0f);
        printf("  step %d: loss gpu %.7g cpu %.7g, grad norm gpu %.7g cpu %.7g\n", s + 1, og.loss, oc.loss, ng, nc);
        CHECK_MSG(fabs((double)ng - nc) <= TOL_GRAD * nc, "step %d: grad norm gpu %g cpu %g", s + 1, ng, nc);
        bert_adamw_step(q->cpu, &hp, 1e-3f);
        bert_adamw_step(q->gpu, &hp, 1e-3f);
        batch_free(&b);
    }
    CHECK_OK(bert_sync_to_host(p.gpu, &E), E);
    size_t n = p.cpu->nparams;
    float *uc = malloc(n * 4), *ug = malloc(n * 4);
    for (size_t i = 0; i < n; i++) {
        uc[i] = p.cpu->params[i] - p0[i];
        ug[i] = p.gpu->params[i] - p0[i];
    }
    double worst;
    size_t at;
    double rel = norm_rel(ug, uc, n, &worst, &at);
    printf("  %-48s rel %.2e  (tol 1e-02)\n", "params after 3 steps (relative to the update)", rel);
    CHECK_MSG(rel <= 1e-2, "params after 3 AdamW steps: the updates differ by %.3g (norm-relative)", rel);
    close_vec("AdamW first moments after 3 steps", p.gpu->adam_m, p.cpu->adam_m, n, 1e-3);
    CHECK_MSG(p.gpu->adam_t == 3 && p.gpu->fwd_counter == p.cpu->fwd_counter, "step/counter bookkeeping");
    free(uc); free(ug); free(p0);
    pair_free(&p);
}

/* The embedding backward's row lists (host code, no GPU): the kernel
 * k_rows_scatter replayed on the host over the lists gives the CPU's
 * embedding_backward bit for bit (word rows without the padding id 0,
 * token types, positions), since both add each row's positions in
 * increasing order; and the lists cover every position once. */
static void test_row_lists(void)
{
    int B = 5, T = 23, H = 7, V = 41, TV = 2, N = B * T;
    int32_t *ids = malloc(N * 4), *types = malloc(N * 4), *pos = malloc(N * 4), *key = malloc(N * 4);
    int32_t *uniq = malloc((N + 1) * 4), *off = malloc((N + 2) * 4), *lst = malloc(N * 4);
    int *count = malloc((V + T) * sizeof(int));
    float *d = malloc((size_t)N * H * 4);
    float *cw = calloc((size_t)V * H, 4), *cp = calloc((size_t)T * H, 4), *ct = calloc((size_t)TV * H, 4);
    float *gw = calloc((size_t)V * H, 4), *gp = calloc((size_t)T * H, 4), *gt = calloc((size_t)TV * H, 4);
    for (int n = 0; n < N; n++) {
        ids[n] = irand(6) == 0 ? 0 : irand(V);  /* repeats and padding */
        types[n] = irand(TV);
        pos[n] = n % T;
    }
    for (size_t i = 0; i < (size_t)N * H; i++) d[i] = urand();
    for (size_t i = 0; i < (size_t)V * H; i++) cw[i] = gw[i] = urand();   /* accumulate onto non-zeros */
    bert_set_threads(1);
    embedding_backward(cw, cp, ct, d, ids, types, B, T, H, 0);
    struct { const int32_t *k; int nk, skip; float *g; } tab[3] = {
        { ids, V, 0, gw }, { types, TV, -1, gt }, { pos, T, -1, gp } };
    for (int k = 0; k < 3; k++) {
        int U = cuda_row_lists(tab[k].k, N, tab[k].nk, tab[k].skip, count, uniq, off, lst);
        int covered = 0, ordered = 1;
        for (int u = 0; u < U; u++) {
            ordered &= u == 0 || uniq[u] > uniq[u - 1];
            for (int j = off[u]; j < off[u + 1]; j++) {
                ordered &= tab[k].k[lst[j]] == uniq[u] && (j == off[u] || lst[j] > lst[j - 1]);
                covered++;
            }
            for (int c = 0; c < H; c++) {       /* k_rows_scatter's loop */
                float acc = tab[k].g[(size_t)uniq[u] * H + c];
                for (int j = off[u]; j < off[u + 1]; j++) acc += d[(size_t)lst[j] * H + c];
                tab[k].g[(size_t)uniq[u] * H + c] = acc;
            }
        }
        int want = 0;
        for (int n = 0; n < N; n++) want += tab[k].k[n] != tab[k].skip;
        CHECK_MSG(ordered && covered == want && off[0] == 0, "row lists %d: ordered %d, %d of %d positions",
                  k, ordered, covered, want);
    }
    CHECK_MSG(memcmp(gw, cw, (size_t)V * H * 4) == 0, "word embedding gradient from the row lists != the CPU's");
    CHECK_MSG(memcmp(gt, ct, (size_t)TV * H * 4) == 0, "token type gradient from the row lists != the CPU's");
    CHECK_MSG(memcmp(gp, cp, (size_t)T * H * 4) == 0, "position gradient from the row lists != the CPU's");
    free(ids); free(types); free(pos); free(key); free(uniq); free(off); free(lst); free(count); free(d);
    free(cw); free(cp); free(ct); free(gw); free(gp); free(gt);
}

/* Mixed precision on the GPU against fp32 on the CPU.  bf16 keeps 8
 * significant bits (unit roundoff u = 2^-9 = 2e-3), fp16 11 (2^-12 =
 * 2.4e-4).  Rounding both operands of a product costs 2u; a dot product of
 * K random-sign terms keeps about that relative error; some 15 GEMMs
 * chain from the embeddings to the logits (LayerNorms renormalise, errors
 * add): ~sqrt(15) 2u = 1.5e-2 for bf16, 2e-3 for fp16.  Tolerances 5e-2
 * and 1e-2 on logits, twice that on the gradients (backward chains twice
 * the GEMMs).  The error must also exceed fp32's (> 1e-5): else the mixed
 * path was not taken.  fp16's backward runs with a loss scale of 1024,
 * undone by bert_scale_grads, as the training loop does. */
static void test_mixed(int precision)
{
    const char *name = precision == BERT_BF16 ? "bf16" : "fp16";
    double tol = precision == BERT_BF16 ? 5e-2 : 1e-2;
    bert_config c = small_config(BERT_MODE_MLM, BERT_POOL_CLS);
    int B = 3, T = 17;
    pair p = pair_new_prec(&c, B, T, precision);
    if (!p.gpu) return;
    CHECK(p.gpu->precision == precision);
    batch b = batch_new(&c, B, T);
    bert_batch x = as_bert(&b, 1);
    bert_output oc, og;
    printf("%s mixed precision (GPU) against fp32 (CPU): MLM, train\n", name);
    bert_zero_grad(p.cpu);
    bert_zero_grad(p.gpu);
    CHECK_OK(bert_forward(p.cpu, &x, BERT_HEAD_MLM, 1, &oc, &E), E);
    CHECK_OK(bert_forward(p.gpu, &x, BERT_HEAD_MLM, 1, &og, &E), E);
    if (!og.logits || og.n_targets != oc.n_targets) {
        CHECK_MSG(0, "%s: no logits or other targets", name);
    } else {
        size_t n = (size_t)oc.n_targets * c.vocab_size;
        double worst;
        size_t at;
        double rel = norm_rel(og.logits, oc.logits, n, &worst, &at);
        printf("  %-48s rel %.2e  (tol %.0e, and above 1e-5)\n", "logits", rel, tol);
        CHECK_MSG(rel <= tol && rel > 1e-5, "%s logits: norm-relative error %.3g (want (1e-5, %.3g])", name, rel, tol);
        printf("  loss gpu %.7g cpu %.7g\n", og.loss, oc.loss);
        CHECK_MSG(fabs((double)og.loss - oc.loss) <= tol * fabs(oc.loss), "%s loss gpu %g cpu %g", name, og.loss,
                  oc.loss);
    }
    float ls = precision == BERT_FP16 ? 1024.0f : 1.0f;
    CHECK_OK(bert_backward(p.cpu, 0.5f, &E), E);
    CHECK_OK(bert_backward(p.gpu, 0.5f * ls, &E), E);
    bert_scale_grads(p.gpu, 1.0f / ls);
    CHECK_OK(bert_sync_to_host(p.gpu, &E), E);
    double worst;
    size_t at;
    double rel = norm_rel(p.gpu->grads, p.cpu->grads, p.cpu->nparams, &worst, &at);
    printf("  %-48s rel %.2e  (tol %.0e)\n", "the whole gradient buffer", rel, 2 * tol);
    CHECK_MSG(rel <= 2 * tol && rel > 1e-5, "%s gradients: norm-relative error %.3g (want (1e-5, %.3g])", name, rel,
              2 * tol);
    batch_free(&b);
    pair_free(&p);
}

/* GPU data parallelism on the devices present (kernels/dp.h dp_gpu_*):
 * with one device, the armed backward launches its buckets (cap 4096
 * floats: many, most launched during the backward) and the all-reduce over
 * a world of one leaves the gradient exactly as an unarmed backward makes
 * it; with K >= 2 devices, K replicas of one model, each given a different
 * batch, end with the same summed gradient, equal to the sum of their
 * unarmed gradients within fp32 rounding. */
typedef struct dp_job {
    bert_model *m;
    dp_gpu *d;
    int w;
    bert_batch x;
    int rc;
    flow_err err;
} dp_job;

static void *dp_job_run(void *arg)
{
    dp_job *j = arg;
    bert_output o;
    bert_zero_grad(j->m);
    j->m->fwd_counter = 5;
    dp_gpu_arm(j->d, j->w);
    j->rc = bert_forward(j->m, &j->x, BERT_HEAD_MLM, 1, &o, &j->err);
    if (!j->rc) j->rc = bert_backward(j->m, 1.0f, &j->err);
    int rc = dp_gpu_finish(j->d, j->w, &j->err);     /* always: the peers wait for its buckets */
    if (!j->rc) j->rc = rc;
    return NULL;
}

static void test_dp(int ndev)
{
    printf("GPU data parallelism over %d device%s\n", ndev > 2 ? 2 : ndev, ndev > 1 ? "s" : "");
    bert_config c = small_config(BERT_MODE_MLM, BERT_POOL_CLS);
    int K = ndev >= 2 ? 2 : 1, B = 3, T = 16;
    bert_model *rep[2] = { NULL, NULL };
    float *want = NULL;
    batch bt[2];
    size_t n = 0;
    for (int w = 0; w < K; w++) {
        bert_device dev = { w, 0, BERT_FP32 };
        CHECK_OK(bert_model_new(&c, B, T, &dev, &rep[w], &E), E);
        if (!rep[w]) goto out;
        bt[w] = batch_new(&c, B, T);
    }
    n = rep[0]->nparams;
    CHECK_OK(bert_init(rep[0], 7, &E), E);
    for (int w = 1; w < K; w++) {
        memcpy(rep[w]->params, rep[0]->params, n * sizeof(float));
        rep[w]->dropout_seed = rep[0]->dropout_seed;
        CHECK_OK(bert_sync_to_device(rep[w], &E), E);
    }
    want = calloc(n, sizeof *want);
    for (int w = 0; w < K; w++) {   /* unarmed: each replica's own gradient, summed on the host */
        bert_batch x = as_bert(&bt[w], 1);
        bert_output o;
        bert_zero_grad(rep[w]);
        rep[w]->fwd_counter = 5;
        CHECK_OK(bert_forward(rep[w], &x, BERT_HEAD_MLM, 1, &o, &E), E);
        CHECK_OK(bert_backward(rep[w], 1.0f, &E), E);
        CHECK_OK(bert_sync_to_host(rep[w], &E), E);
        for (size_t i = 0; i < n; i++) want[i] += rep[w]->grads[i];
    }
    dp_gpu *d = NULL;
    CHECK_OK(dp_gpu_new(rep, K, NULL, 4096, &d, &E), E);
    if (!d) goto out;
    CHECK_MSG(dp_gpu_buckets(d) > 4, "%d buckets of 4096 floats for %zu floats", dp_gpu_buckets(d), n);
    dp_job jobs[2];
    pthread_t th[2];
    for (int w = 0; w < K; w++) {   /* one thread per device, as train_dp.c runs them */
        jobs[w] = (dp_job){ rep[w], d, w, as_bert(&bt[w], 1), 0, { 0 } };
        pthread_create(&th[w], NULL, dp_job_run, &jobs[w]);
    }
    for (int w = 0; w < K; w++) {
        pthread_join(th[w], NULL);
        CHECK_OK(jobs[w].rc, jobs[w].err);
    }
    for (int w = 0; w < K; w++) {
        CHECK_OK(bert_sync_to_host(rep[w], &E), E);
        if (K == 1)
            CHECK_MSG(memcmp(rep[0]->grads, want, n * sizeof(float)) == 0,
                      "all-reduce over one device changed the gradient");
        else
            close_vec("summed gradient", rep[w]->grads, want, n, 1e-6);
    }
    if (K == 2)
        CHECK_MSG(memcmp(rep[0]->grads, rep[1]->grads, n * sizeof(float)) == 0,
                  "the two devices hold different sums");
    dp_gpu_free(d);
out:
    for (int w = 0; w < K; w++)
        if (rep[w]) {
            bert_model_free(rep[w]);
            batch_free(&bt[w]);
        }
    free(want);
}

int main(void)
{
    rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    test_row_lists();
    if (test_failures) return test_summary("bert_cuda_gpu_test (host part)");
    char why[256];
    int n = cuda_device_count_forked(why, sizeof why);
    if (n <= 0) {
        printf("skip: no GPU (%s); the host part passed (%d checks)\n", why, test_checks);
        return 77;
    }
    /* the test links the backend itself: no module to dlopen */
    flow_cuda_use(&flow_cuda_api_v1);
    printf("bert_cuda_gpu_test: seed %llu\n", (unsigned long long)rng);
    bert_set_threads(2);
    test_mlm_and_cls(BERT_POOL_CLS);
    test_mlm_and_cls(BERT_POOL_MEAN);
    test_pruned();
    test_backward_ext();
    test_train_steps();
    test_mixed(BERT_BF16);
    test_mixed(BERT_FP16);
#ifdef FLOW_HAVE_NCCL
    test_dp(n);
#else
    printf("skip: GPU data parallelism (this CUDA build has no NCCL)\n");
#endif
    return test_summary("bert_cuda_gpu_test");
}
#endif
