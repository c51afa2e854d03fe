/* prune_test.c — the pruning library (stages/compress/prune.h) on a tiny
 * classifier trained here for 80 steps on synthetic labelled
 * sequences (2 layers, 8 heads of 2, FFN 16, 3 classes):
 *   - a head or neuron whose output columns are zero scores exactly 0,
 *     and removing it leaves the logits unchanged;
 *   - physical removal of any set of heads and neurons gives the logits
 *     of the unpruned model with those heads' and neurons' output
 *     columns zeroed (masking);
 *   - the importance ranking agrees with brute-force ablation (the
 *     change of the mean loss over the data when each head / neuron
 *     alone is removed): Spearman correlation and the overlap of the
 *     least important quarter, thresholds justified at the check;
 *   - prune_choose: global and per-layer targets, at least one per layer,
 *     ties by position.
 */
#include "tests/test.h"
#include "stages/compress/prune.h"

#include <math.h>

#define NSEQ 48
#define SEQT 12
#define NCLS 3

static int32_t ids[NSEQ * SEQT], labels[NSEQ];
static uint64_t offs[NSEQ + 1];

/* Sequences [CLS] x.. [SEP] of varied lengths; the label is the class
 * (token id mod 3) most of the content tokens fall in, so it is learnable. */
static void make_data(void)
{
    uint64_t s = 12345;
    offs[0] = 0;
    for (int i = 0; i < NSEQ; i++) {
        int len = 6 + (int)(splitmix64_next(&s) % (SEQT - 5)), cls = i % NCLS;
        int32_t *row = ids + offs[i];
        row[0] = 2;
        for (int t = 1; t < len - 1; t++) {
            int tok = 5 + (int)(splitmix64_next(&s) % 24);
            if (splitmix64_next(&s) % 4 != 0) tok = 5 + 3 * (int)(splitmix64_next(&s) % 8) + cls;
            row[t] = tok;
        }
        row[len - 1] = 3;
        labels[i] = cls;
        offs[i + 1] = offs[i] + (uint64_t)len;
    }
}

static void tiny_config(bert_config *c)
{
    bert_config_default(c);
    c->vocab_size = 29;
    c->hidden = 16;
    c->layers = 2;
    c->max_len = SEQT;
    bert_config_uniform(c, 8, 16, NULL);
    c->num_labels = NCLS;
    c->hidden_dropout = c->attn_dropout = 0;
    c->mode = BERT_MODE_CLASSIFY;
}

/* The whole data set as one padded batch. */
static int32_t bids[NSEQ * SEQT], bmask[NSEQ * SEQT];
static bert_batch full_batch(void)
{
    for (int i = 0; i < NSEQ; i++)
        for (int t = 0; t < SEQT; t++) {
            int real = (uint64_t)t < offs[i + 1] - offs[i];
            bids[i * SEQT + t] = real ? ids[offs[i] + t] : 0;
            bmask[i * SEQT + t] = real;
        }
    return (bert_batch){ .B = NSEQ, .T = SEQT, .ids = bids, .attn_mask = bmask, .labels = labels };
}

static double full_loss(bert_model *m, float *logits)
{
    bert_batch b = full_batch();
    bert_output o;
    flow_err e = { 0 };
    CHECK_OK(bert_forward(m, &b, BERT_HEAD_CLASSIFY, 0, &o, &e), e);
    if (logits) memcpy(logits, o.logits, sizeof(float) * NSEQ * NCLS);
    return o.loss;
}

static bert_model *new_model(const bert_config *c, const float *params)
{
    bert_model *m = NULL;
    flow_err e = { 0 };
    CHECK_OK(bert_model_new(c, NSEQ, SEQT, &bert_device_cpu, &m, &e), e);
    if (params) memcpy(m->params, params, m->nparams * sizeof(float));
    return m;
}

static bert_model *trained_model(void)
{
    bert_config c;
    tiny_config(&c);
    bert_model *m = new_model(&c, NULL);
    flow_err e = { 0 };
    CHECK_OK(bert_init(m, 7, &e), e);
    bert_adamw hp = { 0.9f, 0.999f, 1e-8f, 0.0f };
    bert_batch b = full_batch();
    double first = 0, last = 0;
    for (int step = 0; step < 80; step++) {
        bert_output o;
        bert_zero_grad(m);
        CHECK_OK(bert_forward(m, &b, BERT_HEAD_CLASSIFY, 1, &o, &e), e);
        CHECK_OK(bert_backward(m, 1.0f, &e), e);
        bert_adamw_step(m, &hp, 3e-3f);
        if (step == 0) first = o.loss;
        last = o.loss;
    }
    CHECK_MSG(last < 0.7 * first, "the tiny model did not learn (loss %.3f -> %.3f)", first, last);
    return m;
}

static float *wo_col(bert_model *m, int l, const char *which)
{
    char name[96];
    snprintf(name, sizeof name, "bert.encoder.layer.%d.%s", l, which);
    return bert_param_ptr(m, name);
}

/* Zeroes the output columns of head h of layer l (group d) or neuron j. */
static void zero_head(bert_model *m, int l, int h)
{
    const bert_config *c = &m->cfg;
    float *W = wo_col(m, l, "attention.output.dense.weight");
    int A = bert_attn_width(c, l);
    for (int r = 0; r < c->hidden; r++)
        for (int k = h * c->head_size; k < (h + 1) * c->head_size; k++) W[r * A + k] = 0;
}

static void zero_neuron(bert_model *m, int l, int j)
{
    float *W = wo_col(m, l, "output.dense.weight");
    for (int r = 0; r < m->cfg.hidden; r++) W[r * m->cfg.ffn[l] + j] = 0;
}

static void keep_alloc(prune_keep *k, const bert_config *c)
{
    memset(k, 0, sizeof *k);
    k->layers = c->layers;
    for (int l = 0; l < c->layers; l++) {
        k->head[l] = malloc((size_t)c->heads[l]);
        k->ffn[l] = malloc((size_t)c->ffn[l]);
        memset(k->head[l], 1, (size_t)c->heads[l]);
        memset(k->ffn[l], 1, (size_t)c->ffn[l]);
    }
}

static double max_rel_diff(const float *a, const float *b, int n)
{
    double d = 0, s = 1e-6;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)a[i]));
    }
    return d / s;
}

static prune_data data(void) { return (prune_data){ ids, offs, labels, NSEQ }; }

/* Zero output weights: score 0, removal leaves the logits unchanged. */
static void test_zero_head(bert_model *base)
{
    bert_model *m = new_model(&base->cfg, base->params);
    zero_head(m, 0, 5);
    zero_neuron(m, 1, 3);
    prune_scores s;
    flow_err e = { 0 };
    prune_data d = data();
    CHECK_OK(prune_score(m, &d, 16, &s, &e), e);
    CHECK_MSG(s.head[0][5] == 0.0, "zeroed head scores %g", s.head[0][5]);
    CHECK_MSG(s.ffn[1][3] == 0.0, "zeroed neuron scores %g", s.ffn[1][3]);
    CHECK(s.head[0][4] > 0 && s.ffn[1][2] > 0);
    float before[NSEQ * NCLS], after[NSEQ * NCLS];
    full_loss(m, before);
    prune_keep k;
    keep_alloc(&k, &m->cfg);
    k.head[0][5] = 0;
    k.ffn[1][3] = 0;
    bert_config oc;
    float *np;
    CHECK_OK(prune_shrink(&m->cfg, m->params, &k, &oc, &np, &e), e);
    CHECK(oc.heads[0] == 7 && oc.heads[1] == 8 && oc.ffn[0] == 16 && oc.ffn[1] == 15);
    CHECK(bert_param_count(&oc) == bert_param_count(&m->cfg) - (4 * 2 * 16 + 3 * 2) - (16 + 1 + 16));
    bert_model *p = new_model(&oc, np);
    full_loss(p, after);
    double d2 = max_rel_diff(before, after, NSEQ * NCLS);
    CHECK_MSG(d2 < 1e-5, "logits changed by %.3g (relative) when removing a zeroed head and neuron", d2);
    bert_model_free(p);
    free(np);
    prune_keep_release(&k);
    prune_scores_release(&s);
    bert_model_free(m);
}

/* Physical removal of a random selection = masking its output columns;
 * also a second removal from an already pruned model. */
static void test_shrink_equals_mask(bert_model *base)
{
    uint64_t r = 99;
    const bert_config *c = &base->cfg;
    prune_keep k;
    keep_alloc(&k, c);
    bert_model *mask = new_model(c, base->params);
    for (int l = 0; l < c->layers; l++) {
        for (int h = 0; h < c->heads[l]; h++)
            if (h != l && splitmix64_next(&r) % 2) { k.head[l][h] = 0; zero_head(mask, l, h); }
        for (int j = 0; j < c->ffn[l]; j++)
            if (j != 0 && splitmix64_next(&r) % 3 == 0) { k.ffn[l][j] = 0; zero_neuron(mask, l, j); }
    }
    float want[NSEQ * NCLS], got[NSEQ * NCLS];
    full_loss(mask, want);
    bert_config oc;
    float *np;
    flow_err e = { 0 };
    CHECK_OK(prune_shrink(c, base->params, &k, &oc, &np, &e), e);
    CHECK(oc.heads[0] < 8 && oc.heads[1] < 8 && oc.ffn[0] < 16);
    bert_model *p = new_model(&oc, np);
    full_loss(p, got);
    double d = max_rel_diff(want, got, NSEQ * NCLS);
    CHECK_MSG(d < 1e-5, "pruned logits differ from masked ones by %.3g (relative)", d);
    /* prune the pruned model again: its first head of layer 1 and last neuron of layer 0 */
    prune_keep k2;
    keep_alloc(&k2, &oc);
    k2.head[1][0] = 0;
    k2.ffn[0][oc.ffn[0] - 1] = 0;
    zero_head(p, 1, 0);
    zero_neuron(p, 0, oc.ffn[0] - 1);
    full_loss(p, want);
    bert_config oc2;
    float *np2;
    CHECK_OK(prune_shrink(&oc, np, &k2, &oc2, &np2, &e), e);
    bert_model *p2 = new_model(&oc2, np2);
    full_loss(p2, got);
    d = max_rel_diff(want, got, NSEQ * NCLS);
    CHECK_MSG(d < 1e-5, "second pruning: logits differ from masked ones by %.3g", d);
    /* a layer left without a head is refused */
    k2.head[1][0] = 1;
    memset(k2.head[0], 0, (size_t)oc.heads[0]);
    float *bad = NULL;
    CHECK(prune_shrink(&oc, np, &k2, &oc2, &bad, &e) == FLOW_E_PARAM && bad == NULL);
    CHECK_CONTAINS(e.msg, "layer 0 would keep 0 heads");
    bert_model_free(p2);
    free(np2);
    prune_keep_release(&k2);
    bert_model_free(p);
    free(np);
    bert_model_free(mask);
    prune_keep_release(&k);
}

/* Spearman rank correlation (average ranks for ties). */
static void ranks(const double *v, int n, double *rk)
{
    for (int i = 0; i < n; i++) {
        int less = 0, eq = 0;
        for (int j = 0; j < n; j++) { less += v[j] < v[i]; eq += v[j] == v[i]; }
        rk[i] = less + (eq - 1) / 2.0;
    }
}

static double spearman(const double *a, const double *b, int n)
{
    double ra[64], rb[64], ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    ranks(a, n, ra);
    ranks(b, n, rb);
    for (int i = 0; i < n; i++) { ma += ra[i] / n; mb += rb[i] / n; }
    for (int i = 0; i < n; i++) {
        sab += (ra[i] - ma) * (rb[i] - mb);
        saa += (ra[i] - ma) * (ra[i] - ma);
        sbb += (rb[i] - mb) * (rb[i] - mb);
    }
    return sab / sqrt(saa * sbb);
}

/* How many of the k lowest of a are among the k lowest of b. */
static int bottom_overlap(const double *a, const double *b, int n, int k)
{
    double ra[64], rb[64];
    ranks(a, n, ra);
    ranks(b, n, rb);
    int hit = 0;
    for (int i = 0; i < n; i++) hit += ra[i] < k && rb[i] < k;
    return hit;
}

/* Importance vs brute-force ablation.  Ablation: |mean loss over the data
 * with the head / neuron removed (its output columns zeroed, the same
 * function as removal: test_shrink_equals_mask) - mean loss|.  Importance:
 * prune_score in one batch of all the data (then the score is exactly the
 * first-order estimate of that loss change) and in batches of 8 (what the
 * stage does with calib_batch; per-batch absolute values). */
static void test_ablation(bert_model *base)
{
    const bert_config *c = &base->cfg;
    double L0 = full_loss(base, NULL);
    int nh = c->layers * c->heads[0], nf = c->layers * c->ffn[0];
    double abl_h[64], abl_f[64], imp_h[64], imp_f[64], imp8_h[64], imp8_f[64];
    bert_model *m = new_model(c, base->params);
    for (int l = 0; l < c->layers; l++) {
        for (int h = 0; h < c->heads[l]; h++) {
            memcpy(m->params, base->params, m->nparams * sizeof(float));
            zero_head(m, l, h);
            abl_h[l * c->heads[0] + h] = fabs(full_loss(m, NULL) - L0);
        }
        for (int j = 0; j < c->ffn[l]; j++) {
            memcpy(m->params, base->params, m->nparams * sizeof(float));
            zero_neuron(m, l, j);
            abl_f[l * c->ffn[0] + j] = fabs(full_loss(m, NULL) - L0);
        }
    }
    flow_err e = { 0 };
    prune_data d = data();
    for (int pass = 0; pass < 2; pass++) {
        memcpy(m->params, base->params, m->nparams * sizeof(float));
        prune_scores s;
        CHECK_OK(prune_score(m, &d, pass ? 8 : NSEQ, &s, &e), e);
        CHECK_MSG(fabs(s.loss - L0) < 1e-5 * (1 + L0), "scoring loss %.6f vs %.6f", s.loss, L0);
        CHECK(s.sequences == NSEQ);
        double *ih = pass ? imp8_h : imp_h, *iff = pass ? imp8_f : imp_f;
        for (int l = 0; l < c->layers; l++) {
            for (int h = 0; h < c->heads[l]; h++) ih[l * c->heads[0] + h] = s.head[l][h];
            for (int j = 0; j < c->ffn[l]; j++) iff[l * c->ffn[0] + j] = s.ffn[l][j];
        }
        prune_scores_release(&s);
    }
    bert_model_free(m);
    double rh = spearman(imp_h, abl_h, nh), rf = spearman(imp_f, abl_f, nf);
    double rh8 = spearman(imp8_h, abl_h, nh), rf8 = spearman(imp8_f, abl_f, nf);
    int oh = bottom_overlap(imp_h, abl_h, nh, nh / 4), of = bottom_overlap(imp_f, abl_f, nf, nf / 4);
    printf("importance vs ablation: Spearman heads %.3f (batches of 8: %.3f), neurons %.3f (%.3f); "
           "least important quarter shared: heads %d/%d, neurons %d/%d\n", rh, rh8, rf, rf8, oh, nh / 4, of, nf / 4);
    /* Thresholds.  A random order has Spearman 0 with standard deviation
     * 1/sqrt(n-1): 0.26 for the 16 heads, 0.18 for the 32 neurons; 0.8 is
     * 3.1 and 4.5 of those (measured: 0.99 and 0.94-0.96).  The least important quarter: a random pick of
     * 4 of 16 (8 of 32) shares 1 (2) on average; we ask for 3 (5). */
    CHECK_MSG(rh >= 0.8, "heads: Spearman %.3f with ablation", rh);
    CHECK_MSG(rf >= 0.8, "neurons: Spearman %.3f with ablation", rf);
    CHECK_MSG(rh8 >= 0.8, "heads, batches of 8: Spearman %.3f with ablation", rh8);
    CHECK_MSG(rf8 >= 0.8, "neurons, batches of 8: Spearman %.3f with ablation", rf8);
    CHECK_MSG(oh >= 3, "heads: %d of the 4 least important agree with ablation", oh);
    CHECK_MSG(of >= 5, "neurons: %d of the 8 least important agree with ablation", of);
}

static void test_choose(void)
{
    int counts[2] = { 3, 2 }, want[2] = { 1, 1 };
    double s0[3] = { 0.5, 0.1, 0.9 }, s1[2] = { 0.05, 0.06 };
    double *score[2] = { s0, s1 };
    uint8_t k0[3], k1[2], *out[2] = { k0, k1 };
    /* global 3 of 5: drop the two lowest, but layer 1 keeps one */
    prune_choose(2, counts, score, NULL, 3, out);
    CHECK(k0[0] == 1 && k0[1] == 0 && k0[2] == 1 && k1[0] == 0 && k1[1] == 1);
    /* global 2: layer 1 keeps its best, layer 0 its best */
    prune_choose(2, counts, score, NULL, 2, out);
    CHECK(k0[0] == 0 && k0[1] == 0 && k0[2] == 1 && k1[0] == 0 && k1[1] == 1);
    /* per layer: 1 each */
    prune_choose(2, counts, score, want, -1, out);
    CHECK(k0[0] == 0 && k0[1] == 0 && k0[2] == 1 && k1[0] == 0 && k1[1] == 1);
    /* keep everything */
    prune_choose(2, counts, score, NULL, 5, out);
    CHECK(k0[0] && k0[1] && k0[2] && k1[0] && k1[1]);
    /* ties: the lower position goes first */
    double t0[3] = { 1, 1, 1 }, t1[2] = { 1, 1 };
    double *ts[2] = { t0, t1 };
    prune_choose(2, counts, ts, NULL, 3, out);
    CHECK(k0[0] == 0 && k0[1] == 0 && k0[2] == 1 && k1[0] == 1 && k1[1] == 1);
}

int main(void)
{
    bert_set_threads(2);
    make_data();
    test_choose();
    bert_model *base = trained_model();
    test_zero_head(base);
    test_shrink_equals_mask(base);
    test_ablation(base);
    bert_model_free(base);
    return test_summary("prune_test");
}
