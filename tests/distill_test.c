/* distill_test.c — the distillation objective (stages/compress/distill_loss.h):
 * the layer map; the gradients of the KL, cross-entropy and hidden-state
 * MSE terms and of the projection against central differences, on raw
 * tensors and through a real student BERT below a wider, deeper teacher;
 * zero gradient for alpha = 1 with teacher = student (and a non-zero one
 * once labels weigh in); the ensemble's soft labels against the weighted
 * mean of its members' softened distributions. */
#include "test.h"
#include "stages/compress/distill_loss.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdint.h>

static uint64_t rng_state = 7;
static float frand(void)        /* uniform in [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng_state >> 40) / 8388608.0 - 1.0);
}
static float *fvec(size_t n, float scale)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}

typedef double (*loss_fn)(void *ctx);
static int grad_check(const char *what, loss_fn f, void *ctx, float *x, const float *g, size_t n,
                      int samples, float eps, double atol, double rtol)
{
    int bad = 0;
    size_t step = samples >= (int)n ? 1 : n / (size_t)samples;
    for (size_t i = 0; i < n; i += step) {
        float keep = x[i];
        x[i] = keep + eps;
        double lp = f(ctx);
        x[i] = keep - eps;
        double lm = f(ctx);
        x[i] = keep;
        double num = (lp - lm) / (2.0 * eps), err = fabs(num - g[i]);
        if (err > atol + rtol * fabs(num) && bad++ < 3)
            fprintf(stderr, "%s[%zu]: analytic %.6g numeric %.6g\n", what, i, (double)g[i], num);
    }
    CHECK_MSG(bad == 0, "%s: %d gradient entries off", what, bad);
    return bad;
}

static void test_layer_map(void)
{
    for (int L = 1; L <= 6; L++)
        for (int l = 1; l <= L; l++) CHECK(distill_layer_map(l, L, L) == l);
    CHECK(distill_layer_map(1, 2, 4) == 2 && distill_layer_map(2, 2, 4) == 4);
    CHECK(distill_layer_map(1, 1, 6) == 6);
    CHECK(distill_layer_map(1, 3, 4) == 1 && distill_layer_map(2, 3, 4) == 3 && distill_layer_map(3, 3, 4) == 4);
    for (int Ls = 1; Ls <= 7; Ls++)
        for (int Lt = 1; Lt <= 7; Lt++) {
            CHECK(distill_layer_map(Ls, Ls, Lt) == Lt);
            for (int l = 1; l <= Ls; l++) {
                int m = distill_layer_map(l, Ls, Lt);
                CHECK(m >= 1 && m <= Lt && (l == 1 || m >= distill_layer_map(l - 1, Ls, Lt)));
            }
        }
}

/* ---- the loss on raw tensors -------------------------------------------- */
enum { B = 3, T = 4, C = 5, LS = 2, LT = 3 };
struct raw {
    distill_spec spec;
    distill_batch b;
    float *s, *t, *hs[LS + 1], *ht[LT + 1], *proj;
    int32_t labels[B], mask[B * T];
    float cw[C];
};
static double raw_loss(void *p)
{
    struct raw *r = p;
    return distill_loss(&r->spec, &r->b, r->proj, 1.0f, NULL, NULL, NULL, NULL);
}

static void raw_setup(struct raw *r, int Hs, int Ht)
{
    memset(r, 0, sizeof *r);
    r->spec = (distill_spec){ .temperature = 2.0f, .alpha = 0.6f, .beta = 0.8f, .C = C, .Ls = LS, .Lt = LT,
                              .Hs = Hs, .Ht = Ht, .class_weights = r->cw };
    r->s = fvec(B * C, 2);
    r->t = fvec(B * C, 2);
    for (int k = 0; k < C; k++) r->cw[k] = 0.5f + 0.25f * k;
    int32_t lab[B] = { 2, -1, 4 };
    memcpy(r->labels, lab, sizeof lab);
    for (int i = 0; i < B * T; i++) r->mask[i] = !(i / T == 1 && i % T >= 2) && !(i / T == 2 && i % T == 3);
    for (int l = 0; l <= LS; l++) r->hs[l] = fvec((size_t)B * T * Hs, 1);
    for (int l = 0; l <= LT; l++) r->ht[l] = fvec((size_t)B * T * Ht, 1);
    size_t np = distill_proj_count(&r->spec);
    r->proj = calloc(np + 1, sizeof(float));
    uint8_t *decay = calloc(np + 1, 1);
    distill_proj_init(&r->spec, r->proj, decay, 5);
    for (size_t i = 0; i < np; i++) r->proj[i] += 0.1f * frand();   /* biases too */
    free(decay);
    r->b = (distill_batch){ .B = B, .T = T, .s_logits = r->s, .t_logits = r->t, .labels = r->labels,
                            .mask = r->mask, .s_hidden = (const float *const *)r->hs,
                            .t_hidden = (const float *const *)r->ht };
}

static void raw_free(struct raw *r)
{
    free(r->s); free(r->t); free(r->proj);
    for (int l = 0; l <= LS; l++) free(r->hs[l]);
    for (int l = 0; l <= LT; l++) free(r->ht[l]);
}

static void test_raw_grads(int Hs, int Ht)
{
    struct raw r;
    raw_setup(&r, Hs, Ht);
    size_t np = distill_proj_count(&r.spec);
    CHECK(np == (Hs == Ht ? 0 : (size_t)LS * (Ht * Hs + Ht)));
    float *dl = calloc(B * C, sizeof *dl), *dh[LS + 1] = { NULL }, *dp = calloc(np + 1, sizeof *dp);
    for (int l = 1; l <= LS; l++) dh[l] = calloc((size_t)B * T * Hs, sizeof(float));
    distill_terms terms;
    double loss = distill_loss(&r.spec, &r.b, r.proj, 1.0f, dl, dh, dp, &terms);
    CHECK(loss == raw_loss(&r) && terms.loss == loss);
    CHECK(terms.kl > 0 && terms.ce > 0 && terms.mse > 0 && terms.labelled == 2);
    CHECK(fabs(loss - (r.spec.alpha * terms.kl + (1.0 - r.spec.alpha) * terms.ce + r.spec.beta * terms.mse)) < 1e-12);
    char what[64];
    snprintf(what, sizeof what, "dlogits (Hs %d Ht %d)", Hs, Ht);
    grad_check(what, raw_loss, &r, r.s, dl, B * C, 100, 1e-3f, 1e-5, 1e-2);
    for (int l = 1; l <= LS; l++) {
        snprintf(what, sizeof what, "dhidden[%d] (Hs %d Ht %d)", l, Hs, Ht);
        grad_check(what, raw_loss, &r, r.hs[l], dh[l], (size_t)B * T * Hs, 1000, 1e-3f, 1e-5, 1e-2);
    }
    /* padded positions: no gradient, and the numeric check above saw none */
    CHECK(dh[1][(1 * T + 3) * Hs] == 0 && dh[2][(2 * T + 3) * Hs + Hs - 1] == 0);
    if (np) {
        snprintf(what, sizeof what, "dproj (Hs %d Ht %d)", Hs, Ht);
        grad_check(what, raw_loss, &r, r.proj, dp, np, 1000, 1e-3f, 1e-5, 1e-2);
        /* dproj accumulates; dlogits and dhidden are written */
        float *dp2 = malloc(np * sizeof *dp2);
        memcpy(dp2, dp, np * sizeof *dp2);
        distill_loss(&r.spec, &r.b, r.proj, 1.0f, dl, dh, dp, NULL);
        float big = 0;
        for (size_t i = 0; i < np; i++) big = fmaxf(big, fabsf(dp2[i]));
        int twice = big > 0;
        for (size_t i = 0; i < np; i++) twice &= fabsf(dp[i] - 2 * dp2[i]) <= 1e-5f * big;
        CHECK(twice);
        free(dp2);
    }
    /* scale multiplies every gradient */
    float *dl3 = calloc(B * C, sizeof *dl3);
    distill_loss(&r.spec, &r.b, r.proj, 0.25f, dl3, dh, dp, NULL);
    int scaled = 1;
    for (int i = 0; i < B * C; i++) scaled &= fabsf(dl3[i] * 4 - dl[i]) <= 1e-6f + 1e-5f * fabsf(dl[i]);
    CHECK(scaled);
    /* alpha = 1, beta = 0: the soft-target loss alone; no labels: no CE */
    r.spec.alpha = 1;
    r.spec.beta = 0;
    CHECK(fabs(raw_loss(&r) - bert_soft_target_loss(r.s, r.t, B, C, 2.0f, 1.0f, NULL)) < 1e-12);
    r.spec.alpha = 0;
    r.b.labels = NULL;
    CHECK(raw_loss(&r) == 0);
    free(dl); free(dl3); free(dp);
    for (int l = 1; l <= LS; l++) free(dh[l]);
    raw_free(&r);
}

static void test_mix(void)
{
    enum { R = 4, K = 3 };
    float *z[K], out[R * C];
    for (int k = 0; k < K; k++) z[k] = fvec(R * C, 3);
    double w1[1] = { 1 }, w[K] = { 0.2, 0.5, 0.3 };
    float Tm = 1.7f;
    distill_mix_teachers((const float *const *)z, w1, 1, R, C, Tm, out);
    double err = 0;
    for (int r = 0; r < R; r++) {   /* one member: the same softened distribution */
        double za = 0, zb = 0;
        for (int j = 0; j < C; j++) { za += exp(out[r * C + j] / Tm); zb += exp(z[0][r * C + j] / Tm); }
        for (int j = 0; j < C; j++)
            err = fmax(err, fabs(exp(out[r * C + j] / Tm) / za - exp(z[0][r * C + j] / Tm) / zb));
    }
    CHECK_MSG(err < 1e-6, "one member: %.3g", err);
    distill_mix_teachers((const float *const *)z, w, K, R, C, Tm, out);
    err = 0;
    for (int r = 0; r < R; r++) {
        double p[C] = { 0 }, zo = 0;
        for (int k = 0; k < K; k++) {
            double zs = 0;
            for (int j = 0; j < C; j++) zs += exp(z[k][r * C + j] / Tm);
            for (int j = 0; j < C; j++) p[j] += w[k] * exp(z[k][r * C + j] / Tm) / zs;
        }
        for (int j = 0; j < C; j++) zo += exp(out[r * C + j] / Tm);
        for (int j = 0; j < C; j++) err = fmax(err, fabs(exp(out[r * C + j] / Tm) / zo - p[j]));
    }
    CHECK_MSG(err < 1e-6, "three members: %.3g", err);
    for (int k = 0; k < K; k++) free(z[k]);
}

/* ---- through the model ---------------------------------------------------- */
static bert_config cls_config(int hidden, int layers, int heads, int ffn)
{
    bert_config c;
    bert_config_default(&c);
    c.vocab_size = 23;
    c.hidden = hidden;
    c.layers = layers;
    bert_config_uniform(&c, heads, ffn, NULL);
    c.max_len = 8;
    c.num_labels = 3;
    c.mode = BERT_MODE_CLASSIFY;
    c.hidden_dropout = c.attn_dropout = 0;
    return c;
}

enum { MB = 3, MT = 6 };
static int32_t m_ids[MB * MT] = { 2, 7, 8, 9, 10, 3, 2, 11, 12, 3, 0, 0, 2, 13, 5, 6, 3, 0 };
static int32_t m_mask[MB * MT] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0 };
static int32_t m_labels[MB] = { 1, -1, 2 };

struct mctx {
    bert_model *s, *t;
    distill_spec spec;
    float *proj, *tlogits, *th[BERT_MAX_LAYERS + 1];
};

/* Student forward and the loss against the teacher's stored outputs;
 * with dl: the gradients into s->grads and dproj. */
static double model_loss_grad(struct mctx *c, float *dl, float **dh, float *dproj)
{
    bert_batch bb = { .B = MB, .T = MT, .ids = m_ids, .attn_mask = m_mask };
    bert_output o;
    flow_err e = { 0 };
    c->s->fwd_counter = 9;
    if (bert_forward(c->s, &bb, BERT_HEAD_CLASSIFY, 1, &o, &e)) FLOW_BUG("%s", e.msg);
    const float *sh[BERT_MAX_LAYERS + 1];
    for (int l = 0; l <= c->spec.Ls; l++) sh[l] = bert_hidden_states(c->s, l);
    distill_batch db = { .B = MB, .T = MT, .s_logits = o.logits, .t_logits = c->tlogits, .labels = m_labels,
                         .mask = m_mask, .s_hidden = sh, .t_hidden = (const float *const *)c->th };
    double loss = distill_loss(&c->spec, &db, c->proj, 1.0f, dl, dh, dproj, NULL);
    if (dl && bert_backward_ext(c->s, dl, c->spec.beta > 0 ? (const float *const *)dh : NULL, &e))
        FLOW_BUG("%s", e.msg);
    return loss;
}
static double model_loss(void *p) { return model_loss_grad(p, NULL, NULL, NULL); }

/* Runs the teacher once and keeps its logits and hidden states. */
static void teacher_outputs(struct mctx *c)
{
    bert_batch bb = { .B = MB, .T = MT, .ids = m_ids, .attn_mask = m_mask };
    bert_output o;
    flow_err e = { 0 };
    CHECK_OK(bert_forward(c->t, &bb, BERT_HEAD_CLASSIFY, 0, &o, &e), e);
    int H = c->t->cfg.hidden;
    c->tlogits = malloc(MB * 3 * sizeof(float));
    memcpy(c->tlogits, o.logits, MB * 3 * sizeof(float));
    for (int l = 0; l <= c->t->cfg.layers; l++) {
        c->th[l] = malloc((size_t)MB * MT * H * sizeof(float));
        memcpy(c->th[l], bert_hidden_states(c->t, l), (size_t)MB * MT * H * sizeof(float));
    }
}

static void mctx_free(struct mctx *c)
{
    for (int l = 0; l <= c->t->cfg.layers; l++) free(c->th[l]);
    free(c->tlogits);
    free(c->proj);
    bert_model_free(c->s);
    bert_model_free(c->t);
}

static float **dh_new(const bert_model *s)
{
    float **dh = calloc((size_t)s->cfg.layers + 1, sizeof *dh);
    for (int l = 1; l <= s->cfg.layers; l++) dh[l] = calloc((size_t)MB * MT * s->cfg.hidden, sizeof(float));
    return dh;
}
static void dh_free(float **dh, int L)
{
    for (int l = 1; l <= L; l++) free(dh[l]);
    free(dh);
}

/* alpha = 1, teacher = student (same weights, no dropout): zero loss and
 * zero gradient, with and without the hidden-state term; alpha < 1 with
 * labels gives a gradient, so the check can see one. */
static void test_teacher_is_student(void)
{
    bert_config cfg = cls_config(12, 2, 3, 20);
    struct mctx c = { 0 };
    flow_err e = { 0 };
    CHECK_OK(bert_model_new(&cfg, MB, MT, &bert_device_cpu, &c.s, &e), e);
    CHECK_OK(bert_model_new(&cfg, MB, MT, &bert_device_cpu, &c.t, &e), e);
    if (!c.s || !c.t) return;
    bert_init(c.s, 3, NULL);
    for (size_t i = 0; i < c.s->nparams; i++) c.s->params[i] += 0.05f * frand();
    memcpy(c.t->params, c.s->params, c.s->nparams * sizeof(float));
    teacher_outputs(&c);
    float dl[MB * 3], **dh = dh_new(c.s);
    for (int beta = 0; beta <= 1; beta++) {
        c.spec = (distill_spec){ .temperature = 3.0f, .alpha = 1.0f, .beta = (float)beta, .C = 3, .Ls = 2, .Lt = 2,
                                 .Hs = 12, .Ht = 12 };
        bert_zero_grad(c.s);
        double loss = model_loss_grad(&c, dl, dh, NULL);
        double gmax = 0;
        for (size_t i = 0; i < c.s->nparams; i++) gmax = fmax(gmax, fabs(c.s->grads[i]));
        CHECK_MSG(fabs(loss) < 1e-9 && gmax == 0, "beta %d: loss %.3g, largest gradient %.3g", beta, loss, gmax);
    }
    c.spec.alpha = 0.5f;
    bert_zero_grad(c.s);
    model_loss_grad(&c, dl, dh, NULL);
    double gmax = 0;
    for (size_t i = 0; i < c.s->nparams; i++) gmax = fmax(gmax, fabs(c.s->grads[i]));
    CHECK_MSG(gmax > 1e-4, "alpha 0.5: largest gradient %.3g", gmax);
    dh_free(dh, 2);
    mctx_free(&c);
}

/* A narrower, shallower student below the teacher: the whole objective's
 * gradient through bert_backward_ext, and the projection's. */
static void test_model_grads(void)
{
    bert_config tc = cls_config(12, 2, 3, 20), sc = cls_config(8, 1, 2, 12);
    struct mctx c = { 0 };
    flow_err e = { 0 };
    CHECK_OK(bert_model_new(&sc, MB, MT, &bert_device_cpu, &c.s, &e), e);
    CHECK_OK(bert_model_new(&tc, MB, MT, &bert_device_cpu, &c.t, &e), e);
    if (!c.s || !c.t) return;
    bert_init(c.s, 4, NULL);
    bert_init(c.t, 5, NULL);
    for (size_t i = 0; i < c.s->nparams; i++) c.s->params[i] += 0.1f * frand();
    for (size_t i = 0; i < c.t->nparams; i++) c.t->params[i] += 0.3f * frand();
    teacher_outputs(&c);
    c.spec = (distill_spec){ .temperature = 2.0f, .alpha = 0.7f, .beta = 2.0f, .C = 3, .Ls = 1, .Lt = 2,
                             .Hs = 8, .Ht = 12 };
    size_t np = distill_proj_count(&c.spec);
    CHECK(np == 12 * 8 + 12);
    c.proj = calloc(np, sizeof(float));
    uint8_t decay[12 * 8 + 12];
    distill_proj_init(&c.spec, c.proj, decay, 6);
    CHECK(decay[0] == 1 && decay[12 * 8 - 1] == 1 && decay[12 * 8] == 0 && c.proj[12 * 8] == 0);
    float dl[MB * 3], **dh = dh_new(c.s), *dp = calloc(np, sizeof(float));
    bert_zero_grad(c.s);
    double loss = model_loss_grad(&c, dl, dh, dp);
    CHECK(loss > 0);
    const char *names[] = { "bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.attention.self.query.weight",
                            "bert.encoder.layer.0.output.dense.weight", "bert.encoder.layer.0.output.LayerNorm.bias",
                            "bert.pooler.dense.weight", "classifier.weight" };
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        const bert_tensor *t = bert_find_tensor(c.s, names[k]);
        CHECK(t != NULL);
        if (!t) continue;
        size_t skip = strstr(names[k], "word_embeddings") ? 8 : 0;   /* the padding row */
        grad_check(names[k], model_loss, &c, c.s->params + t->offset + skip, c.s->grads + t->offset + skip,
                   t->numel - skip, 30, 3e-3f, 3e-4, 3e-2);
    }
    grad_check("projection through the model", model_loss, &c, c.proj, dp, np, 60, 3e-3f, 3e-4, 3e-2);
    free(dp);
    dh_free(dh, 1);
    mctx_free(&c);
}

int main(void)
{
    bert_set_threads(2);
    test_layer_map();
    test_raw_grads(5, 7);
    test_raw_grads(6, 6);
    test_mix();
    test_teacher_is_student();
    test_model_grads();
    return test_summary("distill_test");
}
