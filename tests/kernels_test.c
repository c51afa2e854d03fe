/* kernels_test.c — tests of the BERT kernels (kernels/).
 *
 *  - finite-difference gradient checks of every op (loss = sum(out * r));
 *  - the pooling ops: mean against a scalar reference, its backward by
 *    finite differences, the same bytes on 1 and 3 threads;
 *  - finite-difference checks of the whole small model, MLM and classifier
 *    heads ([CLS] and mean pooling), with padding, token types and dropout
 *    on (the dropout masks are pinned by resetting the forward counter);
 *  - determinism: same seed and threads give identical loss bytes;
 *  - a tiny model overfits a tiny labelled set to 100% accuracy;
 *  - AdamW against a hand-computed step; grad clipping; lr schedule;
 *  - config validation messages, tensor table, loading by name.
 */
#include "kernels/kernels.h"
#include "kernels/cpu/bert_ops.h"
#include "test.h"

#include <math.h>
#include <stdint.h>

static uint64_t rng_state = 42;
static float frand(void)        /* uniform in [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng_state >> 40) / 8388608.0 - 1.0);
}
static void fill(float *p, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        p[i] = frand() * scale;
}
static float *fvec(size_t n, float scale)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    fill(p, n, scale);
    return p;
}
static double dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* Compares an analytic gradient with central differences of f at up to
 * `samples` entries of x (all when samples >= n). */
typedef double (*loss_fn)(void *ctx);
static double worst;
static int grad_check(const char *what, loss_fn f, void *ctx, float *x, const float *g,
                      size_t n, int samples, float eps, double atol, double rtol)
{
    int bad = 0;
    size_t step = samples >= (int)n ? 1 : n / samples;
    for (size_t i = 0; i < n; i += step) {
        float keep = x[i];
        x[i] = keep + eps;
        double lp = f(ctx);
        x[i] = keep - eps;
        double lm = f(ctx);
        x[i] = keep;
        double num = (lp - lm) / (2.0 * eps), err = fabs(num - g[i]);
        double lim = atol + rtol * fabs(num);
        if (err / lim > worst)
            worst = err / lim;
        if (err > lim && bad++ < 3)
            fprintf(stderr, "%s[%zu]: analytic %.6g numeric %.6g\n", what, i, (double)g[i], num);
    }
    CHECK_MSG(bad == 0, "%s: %d gradient entries off", what, bad);
    return bad;
}

/* ---- linear ---------------------------------------------------------- */
struct lin { int N, IC, OC; float *inp, *W, *b, *out, *r; };
static double lin_loss(void *p)
{
    struct lin *c = p;
    linear_forward(c->out, c->inp, c->W, c->b, c->N, c->IC, c->OC);
    return dot(c->out, c->r, (size_t)c->N * c->OC);
}
static void test_linear(void)
{
    struct lin c = {70, 33, 40, 0, 0, 0, 0, 0};    /* big enough to split over threads */
    size_t ni = (size_t)c.N * c.IC, nw = (size_t)c.OC * c.IC, no = (size_t)c.N * c.OC;
    c.inp = fvec(ni, 1); c.W = fvec(nw, 0.5f); c.b = fvec(c.OC, 0.5f);
    c.out = fvec(no, 0); c.r = fvec(no, 1);
    float *di = fvec(ni, 0), *dW = fvec(nw, 0), *db = fvec(c.OC, 0);
    lin_loss(&c);
    linear_backward(di, dW, db, c.r, c.inp, c.W, c.N, c.IC, c.OC, 0);
    grad_check("linear.dinp", lin_loss, &c, c.inp, di, ni, 60, 1e-2f, 2e-3, 1e-2);
    grad_check("linear.dW", lin_loss, &c, c.W, dW, nw, 60, 1e-2f, 2e-3, 1e-2);
    grad_check("linear.db", lin_loss, &c, c.b, db, c.OC, 40, 1e-2f, 2e-3, 1e-2);
    /* acc = 1 adds */
    float *di2 = fvec(ni, 0);
    memcpy(di2, di, ni * sizeof(float));
    linear_backward(di2, dW, NULL, c.r, c.inp, c.W, c.N, c.IC, c.OC, 1);
    CHECK(fabsf(di2[5] - 2 * di[5]) <= 1e-5f * fabsf(di[5]) + 1e-6f);
    free(c.inp); free(c.W); free(c.b); free(c.out); free(c.r); free(di); free(dW); free(db); free(di2);
}

/* ---- layernorm --------------------------------------------------------- */
struct lnc { int N, C; float *inp, *g, *b, *out, *mean, *rstd, *r; };
static double ln_loss(void *p)
{
    struct lnc *c = p;
    layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->g, c->b, c->N, c->C);
    return dot(c->out, c->r, (size_t)c->N * c->C);
}
static void test_layernorm(void)
{
    struct lnc c = {9, 24, 0, 0, 0, 0, 0, 0, 0};
    size_t n = (size_t)c.N * c.C;
    c.inp = fvec(n, 2); c.g = fvec(c.C, 1); c.b = fvec(c.C, 1); c.out = fvec(n, 0);
    c.mean = fvec(c.N, 0); c.rstd = fvec(c.N, 0); c.r = fvec(n, 1);
    float *di = fvec(n, 0), *dg = fvec(c.C, 0), *db = fvec(c.C, 0);
    ln_loss(&c);
    layernorm_backward(di, dg, db, c.r, c.inp, c.g, c.mean, c.rstd, c.N, c.C);
    grad_check("layernorm.dinp", ln_loss, &c, c.inp, di, n, 80, 1e-2f, 2e-3, 1e-2);
    grad_check("layernorm.dg", ln_loss, &c, c.g, dg, c.C, 24, 1e-2f, 2e-3, 1e-2);
    grad_check("layernorm.db", ln_loss, &c, c.b, db, c.C, 24, 1e-2f, 2e-3, 1e-2);
    /* saved statistics are the row's mean and 1/std */
    double mu = 0, var = 0;
    for (int k = 0; k < c.C; k++)
        mu += c.inp[k];
    mu /= c.C;
    for (int k = 0; k < c.C; k++)
        var += (c.inp[k] - mu) * (c.inp[k] - mu);
    var /= c.C;
    CHECK(fabs(c.mean[0] - mu) < 1e-5 && fabs(c.rstd[0] - 1 / sqrt(var)) < 1e-4 * c.rstd[0]);
    free(c.inp); free(c.g); free(c.b); free(c.out); free(c.mean); free(c.rstd); free(c.r);
    free(di); free(dg); free(db);
}

/* ---- attention --------------------------------------------------------- */
struct att { int B, T, H, nh; float p; int32_t *mask; float *qkv, *ctx, *probs, *r, *scr; };
static double att_loss(void *p)
{
    struct att *c = p;   /* H: the attention width nh * d */
    attention_forward(c->ctx, c->probs, c->qkv, c->mask, c->B, c->T, c->nh, c->H / c->nh, c->p, 77, c->scr);
    return dot(c->ctx, c->r, (size_t)c->B * c->T * c->H);
}
static void test_attention(float p)
{
    struct att c = {2, 5, 8, 2, p, 0, 0, 0, 0, 0, 0};
    int32_t mask[10] = {1, 1, 1, 0, 0, 1, 1, 1, 1, 1};
    c.mask = mask;
    size_t n3 = (size_t)c.B * c.T * 3 * c.H, n = (size_t)c.B * c.T * c.H;
    c.qkv = fvec(n3, 1.5f); c.ctx = fvec(n, 0); c.r = fvec(n, 1);
    c.probs = fvec((size_t)c.B * c.nh * c.T * c.T, 0);
    c.scr = fvec(attention_scratch(c.T, c.H / c.nh), 0);
    float *dq = fvec(n3, 0);
    att_loss(&c);
    /* softmax rows sum to 1; masked keys get 0 */
    double rs = 0;
    for (int j = 0; j < c.T; j++)
        rs += c.probs[j];
    CHECK(fabs(rs - 1) < 1e-5);
    CHECK(c.probs[3] == 0 && c.probs[4] == 0);
    attention_backward(dq, c.r, c.qkv, c.probs, c.B, c.T, c.nh, c.H / c.nh, c.p, 77, c.scr);
    grad_check(p > 0 ? "attention+dropout.dqkv" : "attention.dqkv", att_loss, &c, c.qkv, dq,
               n3, 1000, 1e-2f, 2e-3, 1e-2);
    /* padded keys get no gradient through K and V */
    CHECK(dq[3 * c.H * 3 + c.H] == 0 && dq[3 * c.H * 4 + 2 * c.H + 1] == 0);
    free(c.qkv); free(c.ctx); free(c.r); free(c.probs); free(c.scr); free(dq);
}

/* ---- pointwise ---------------------------------------------------------- */
enum { PW_GELU, PW_TANH, PW_DROP };
struct pw { int kind; size_t n; float *inp, *out, *r; };
static double pw_loss(void *p)
{
    struct pw *c = p;
    if (c->kind == PW_GELU)
        gelu_forward(c->out, c->inp, c->n);
    else if (c->kind == PW_TANH)
        tanh_forward(c->out, c->inp, c->n);
    else
        dropout_forward(c->out, c->inp, c->n, 0.3f, 1234);
    return dot(c->out, c->r, c->n);
}
static void test_pointwise(void)
{
    struct pw c = {0, 200, fvec(200, 4), fvec(200, 0), fvec(200, 1)};
    float *d = fvec(c.n, 0);
    const char *names[] = {"gelu", "tanh", "dropout"};
    for (int k = 0; k < 3; k++) {
        c.kind = k;
        pw_loss(&c);
        if (k == PW_GELU)
            gelu_backward(d, c.inp, c.r, c.n);
        else if (k == PW_TANH)
            tanh_backward(d, c.out, c.r, c.n);
        else
            dropout_backward(d, c.r, c.n, 0.3f, 1234);
        grad_check(names[k], pw_loss, &c, c.inp, d, c.n, 200, 1e-3f, 2e-3, 1e-2);
    }
    /* gelu against the exact erf form */
    double maxerr = 0;
    for (int i = -800; i <= 800; i++) {
        float x = i / 100.0f, y;
        gelu_forward(&y, &x, 1);
        double ref = 0.5 * x * (1 + erf(x / sqrt(2.0)));
        maxerr = fmax(maxerr, fabs(y - ref));
    }
    CHECK_MSG(maxerr < 1e-6, "gelu max error %g", maxerr);
    /* dropout: for several rates, the share of kept elements is 1-p within
     * 5 binomial standard deviations (an independent count of non-zeros),
     * each kept element is exactly x * (1/(1-p)) and each dropped one 0,
     * the mask is the scalar dropout_keep(key, i, p) element by element (the
     * vectorised path against its twin), backward reuses the mask, and
     * another key gives another mask. */
    {
        enum { DN = 100003 };   /* odd, so the scalar tail runs too */
        float *x = fvec(DN, 1), *o = malloc(DN * sizeof *o), *o2 = malloc(DN * sizeof *o2);
        const float rates[] = {0.1f, 0.3f, 0.5f};
        for (int r = 0; r < 3; r++) {
            float p = rates[r];
            for (int i = 0; i < DN; i++)
                if (x[i] == 0) x[i] = 0.5f;     /* a dropped element must be told from a zero input */
            dropout_forward(o, x, DN, p, 99 + r);
            long kept = 0, bad_scale = 0, bad_mask = 0;
            for (int i = 0; i < DN; i++) {
                int k = o[i] != 0;
                kept += k;
                bad_mask += k != dropout_keep(99 + r, (uint64_t)i, p);
                double want = (double)x[i] / (1.0 - (double)p);
                if (k && fabs(o[i] - want) > 1e-6 * fabs(want)) bad_scale++;
            }
            double rate = (double)kept / DN, sd = sqrt(p * (1.0 - p) / DN);
            CHECK_MSG(fabs(rate - (1.0 - p)) < 5 * sd, "dropout p=%.1f kept %.5f of elements, expected %.5f +- %.5f",
                      p, rate, 1.0 - p, 5 * sd);
            CHECK_MSG(bad_scale == 0, "dropout p=%.1f: %ld kept elements not scaled by 1/(1-p)", p, bad_scale);
            CHECK_MSG(bad_mask == 0, "dropout p=%.1f: %ld elements differ from dropout_keep", p, bad_mask);
            dropout_backward(o2, x, DN, p, 99 + r);
            CHECK_MSG(memcmp(o, o2, DN * sizeof *o) == 0, "dropout p=%.1f: backward mask differs from forward", p);
            dropout_forward(o2, x, DN, p, 1000 + r);
            long same = 0;
            for (int i = 0; i < DN; i++) same += (o[i] != 0) == (o2[i] != 0);
            /* independent masks agree on p^2 + (1-p)^2 of the elements */
            double agree = (double)same / DN, want = p * p + (1.0 - p) * (1.0 - p);
            CHECK_MSG(fabs(agree - want) < 0.01, "dropout p=%.1f: masks of two keys agree on %.4f, expected %.4f", p, agree, want);
        }
        dropout_forward(o, x, DN, 0.0f, 5);
        CHECK_MSG(memcmp(o, x, DN * sizeof *o) == 0, "dropout p=0 must be the identity");
        free(x); free(o); free(o2);
    }
    /* fused residual + dropout == dropout then residual, bit for bit */
    {
        float y1[37], y2[37], x[37], o1[37], o2[37];
        for (int i = 0; i < 37; i++) {
            x[i] = frand();
            y1[i] = y2[i] = frand();
        }
        residual_dropout_forward(o1, x, y1, 37, 0.3f, 4242);
        dropout_forward(y2, y2, 37, 0.3f, 4242);
        residual_forward(o2, x, y2, 37);
        CHECK(memcmp(o1, o2, sizeof o1) == 0 && memcmp(y1, y2, sizeof y1) == 0);
    }
    /* residual */
    float a[4] = {1, 2, 3, 4}, b[4] = {1, 1, 1, 1}, r[4], da[4] = {0}, db[4] = {0};
    residual_forward(r, a, b, 4);
    residual_backward(da, db, a, 4);
    CHECK(r[3] == 5 && da[2] == 3 && db[2] == 3);
    free(c.inp); free(c.out); free(c.r); free(d);
}

/* ---- embeddings --------------------------------------------------------- */
struct emb { int B, T, H; int32_t *ids, *types; float *wte, *wpe, *wtt, *out, *r; };
static double emb_loss(void *p)
{
    struct emb *c = p;
    embedding_forward(c->out, c->ids, c->types, c->wte, c->wpe, c->wtt, c->B, c->T, c->H);
    return dot(c->out, c->r, (size_t)c->B * c->T * c->H);
}
static void test_embedding(void)
{
    int32_t ids[8] = {2, 5, 5, 0, 2, 7, 1, 0}, types[8] = {0, 0, 1, 1, 0, 1, 1, 1};
    struct emb c = {2, 4, 6, ids, types, fvec(8 * 6, 1), fvec(4 * 6, 1), fvec(2 * 6, 1),
                    fvec(8 * 6, 0), fvec(8 * 6, 1)};
    float *dwte = fvec(8 * 6, 0), *dwpe = fvec(4 * 6, 0), *dwtt = fvec(2 * 6, 0);
    emb_loss(&c);
    /* pad_id = -1: every row gets its gradient (checked numerically) */
    embedding_backward(dwte, dwpe, dwtt, c.r, ids, types, c.B, c.T, c.H, -1);
    grad_check("embedding.wte", emb_loss, &c, c.wte, dwte, 48, 48, 1e-2f, 1e-3, 1e-2);
    grad_check("embedding.wpe", emb_loss, &c, c.wpe, dwpe, 24, 24, 1e-2f, 1e-3, 1e-2);
    grad_check("embedding.wtt", emb_loss, &c, c.wtt, dwtt, 12, 12, 1e-2f, 1e-3, 1e-2);
    /* pad_id = 0: row 0 gets nothing (nn.Embedding padding_idx) */
    memset(dwte, 0, 48 * sizeof(float));
    embedding_backward(dwte, dwpe, dwtt, c.r, ids, types, c.B, c.T, c.H, 0);
    int zero = 1;
    for (int k = 0; k < 6; k++)
        zero &= dwte[k] == 0;
    CHECK(zero && dwte[2 * 6] != 0);
    free(c.wte); free(c.wpe); free(c.wtt); free(c.out); free(c.r); free(dwte); free(dwpe); free(dwtt);
}

/* ---- cross-entropy ------------------------------------------------------ */
struct xe { int M, V; const int32_t *y; const float *w; float *logits, *lse; };
static double xe_loss(void *p)
{
    struct xe *c = p;
    return xent_forward(c->lse, c->logits, c->y, c->w, c->M, c->V, NULL);
}
static void test_xent(void)
{
    int32_t y[5] = {0, 3, 2, 2, 1};
    float w[4] = {1.0f, 2.0f, 0.5f, 3.0f};
    struct xe c = {5, 4, y, NULL, fvec(20, 3), fvec(5, 0)};
    float *d = fvec(20, 0);
    for (int k = 0; k < 2; k++) {
        c.w = k ? w : NULL;
        xe_loss(&c);
        xent_backward(d, c.logits, c.lse, y, c.w, c.M, c.V, 1.0f);
        grad_check(k ? "xent(weighted)" : "xent", xe_loss, &c, c.logits, d, 20, 20, 1e-3f, 1e-3, 1e-2);
    }
    /* uniform logits: loss = log V, argmax = first */
    float u[8] = {0};
    int32_t yy[2] = {0, 1};
    long ok = -1;
    double l = xent_forward(c.lse, u, yy, NULL, 2, 4, &ok);
    CHECK(fabs(l - log(4.0)) < 1e-6 && ok == 1);
    free(c.logits); free(c.lse); free(d);
}

/* ---- pointwise kernels on 16 lanes against 8 --------------------------- */
/* GELU, its gradient, softmax (attention) and cross-entropy (exp_row) on
 * the widest vectors of this CPU give the 8-lane clones' bits exactly, on
 * lengths off the vector widths and on special values (signed zeros,
 * infinities, NaN, the exp clamps, denormals, rounding-sensitive values). */
static void test_wide_pointwise(void)
{
    enum { PN = 1037, AT = 37, AB = 2, AH = 2, AD = 8 };
    static const float special[] = { 0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e30f, -1e30f, 88.5f, -88.5f,
                                     87.0f, -87.0f, 1e-40f, -1e-40f, 5.5f, -5.5f, 1.0f, -1.0f };
    float *x = fvec(PN, 6), *dy = fvec(PN, 1);
    memcpy(x, special, sizeof special);
    memcpy(x + PN - 5, special + 2, 5 * sizeof(float));
    float *out[2], *din[2], *lse[2], *ctx[2], *probs[2];
    double loss[2];
    int32_t tgt[7] = { 1, 5, 140, 9, 0, 155, 3 }, mask[AB * AT];
    float *logits = fvec(7 * 156, 8);      /* rows of 156: 16 x 9 + 8 + 4 */
    float *qkv = fvec((size_t)AB * AT * 3 * AH * AD, 2);
    for (int i = 0; i < AB * AT; i++) mask[i] = i % AT < 30 || i < AT;
    float *scr = fvec(attention_scratch(AT, AD), 0);
    for (int w = 0; w < 2; w++) {
        bert_ops_force_narrow(w == 0);
        out[w] = fvec(PN, 0); din[w] = fvec(PN, 0); lse[w] = fvec(7, 0);
        ctx[w] = fvec((size_t)AB * AT * AH * AD, 0); probs[w] = fvec((size_t)AB * AH * AT * AT, 0);
        gelu_forward(out[w], x, PN);
        gelu_backward(din[w], x, dy, PN);
        loss[w] = xent_forward(lse[w], logits, tgt, NULL, 7, 156, NULL);
        attention_forward(ctx[w], probs[w], qkv, mask, AB, AT, AH, AD, 0.0f, 5, scr);
    }
    bert_ops_force_narrow(0);
    CHECK_MSG(memcmp(out[0], out[1], PN * sizeof(float)) == 0, "gelu: 16 lanes differ from 8");
    CHECK_MSG(memcmp(din[0], din[1], PN * sizeof(float)) == 0, "gelu backward: 16 lanes differ from 8");
    CHECK_MSG(memcmp(lse[0], lse[1], 7 * sizeof(float)) == 0 && loss[0] == loss[1],
              "cross-entropy: 16 lanes differ from 8");
    CHECK_MSG(memcmp(probs[0], probs[1], (size_t)AB * AH * AT * AT * sizeof(float)) == 0 &&
              memcmp(ctx[0], ctx[1], (size_t)AB * AT * AH * AD * sizeof(float)) == 0,
              "softmax: 16 lanes differ from 8");
    for (int w = 0; w < 2; w++) { free(out[w]); free(din[w]); free(lse[w]); free(ctx[w]); free(probs[w]); }
    free(x); free(dy); free(logits); free(qkv); free(scr);
}

/* ---- soft targets ------------------------------------------------------- */
struct st { int M, V; float T; float *s, *t; };
static double st_loss(void *p)
{
    struct st *c = p;
    return bert_soft_target_loss(c->s, c->t, c->M, c->V, c->T, 1.0f, NULL);
}
static void test_soft_targets(void)
{
    for (int k = 0; k < 2; k++) {
        struct st c = {4, 7, k ? 2.5f : 1.0f, fvec(28, 3), fvec(28, 3)};
        float *d = fvec(28, 0);
        double l = bert_soft_target_loss(c.s, c.t, c.M, c.V, c.T, 1.0f, d);
        CHECK(l > 0 && l == st_loss(&c));
        grad_check(k ? "soft targets T=2.5" : "soft targets T=1", st_loss, &c, c.s, d, 28, 28, 1e-3f, 1e-3, 1e-2);
        /* student == teacher: zero loss and zero gradient */
        double z = bert_soft_target_loss(c.t, c.t, c.M, c.V, c.T, 1.0f, d);
        double dmax = 0;
        for (int i = 0; i < 28; i++)
            dmax = fmax(dmax, fabs(d[i]));
        CHECK(fabs(z) < 1e-12 && dmax < 1e-7);
        free(c.s); free(c.t); free(d);
    }
}

/* ---- pooling ------------------------------------------------------------ */
struct poolc { int B, T, H; const int32_t *mask; float *h, *out, *r; };
static double pool_loss(void *p)
{
    struct poolc *c = p;
    mean_pool_forward(c->out, c->h, c->mask, c->B, c->T, c->H);
    return dot(c->out, c->r, (size_t)c->B * c->H);
}
/* The scalar reference: the mean over real positions, in double. */
static double pool_ref(const float *h, const int32_t *mask, int b, int T, int H, int k)
{
    double s = 0;
    int n = 0;
    for (int t = 0; t < T; t++)
        if (!mask || mask[b * T + t]) {
            s += h[((size_t)b * T + t) * H + k];
            n++;
        }
    return s / n;
}
static void test_pooling(void)
{
    /* 37 sequences: the forward's and backward's loops split over threads */
    struct poolc c = {37, 9, 5, NULL, 0, 0, 0};
    size_t nh = (size_t)c.B * c.T * c.H, no = (size_t)c.B * c.H;
    int32_t *mask = malloc((size_t)c.B * c.T * sizeof *mask);
    for (int b = 0; b < c.B; b++)           /* lengths 1..9; mask values other than 1 are real too */
        for (int t = 0; t < c.T; t++)
            mask[b * c.T + t] = t <= b % c.T ? 1 + (t == 2) : 0;
    c.h = fvec(nh, 1); c.out = fvec(no, 0); c.r = fvec(no, 1);
    float *dh = fvec(nh, 0), *d0 = fvec(nh, 0.5f), *out2 = fvec(no, 0);
    for (int masked = 0; masked < 2; masked++) {
        c.mask = masked ? mask : NULL;
        double err = 0;
        mean_pool_forward(c.out, c.h, c.mask, c.B, c.T, c.H);
        for (int b = 0; b < c.B; b++)
            for (int k = 0; k < c.H; k++)
                err = fmax(err, fabs(c.out[b * c.H + k] - pool_ref(c.h, c.mask, b, c.T, c.H, k)));
        CHECK_MSG(err < 1e-6, "mean pooling%s vs the scalar reference: %.3g", masked ? " (masked)" : "", err);
        /* padded positions get no gradient; the backward accumulates */
        memcpy(dh, d0, nh * sizeof *dh);
        mean_pool_backward(dh, c.r, c.mask, c.B, c.T, c.H);
        int pad_clean = 1;
        for (size_t i = 0; i < nh; i++) {
            if (c.mask && !c.mask[i / c.H])
                pad_clean &= dh[i] == d0[i];
            dh[i] -= d0[i];
        }
        CHECK(pad_clean);
        grad_check(masked ? "mean pool (masked)" : "mean pool", pool_loss, &c, c.h, dh, nh, 120,
                   1e-2f, 1e-4, 1e-3);
        /* the same bytes on 1 and 3 threads */
        bert_set_threads(1);
        mean_pool_forward(out2, c.h, c.mask, c.B, c.T, c.H);
        bert_set_threads(3);
        mean_pool_forward(c.out, c.h, c.mask, c.B, c.T, c.H);
        CHECK(memcmp(out2, c.out, no * sizeof *out2) == 0);
        bert_set_threads(2);
    }
    /* [CLS] pooling: row 0 of each sequence, its gradient there only */
    cls_pool_forward(c.out, c.h, c.B, c.T, c.H);
    CHECK(memcmp(c.out + 4 * c.H, c.h + (size_t)4 * c.T * c.H, c.H * sizeof(float)) == 0);
    memset(dh, 0, nh * sizeof *dh);
    cls_pool_backward(dh, c.r, c.B, c.T, c.H);
    CHECK(dh[(size_t)4 * c.T * c.H + 2] == c.r[4 * c.H + 2] && dh[(size_t)4 * c.T * c.H + c.H] == 0);
    free(mask); free(c.h); free(c.out); free(c.r); free(dh); free(d0); free(out2);
}

/* ---- whole model -------------------------------------------------------- */
static bert_config tiny_config(int mode)
{
    bert_config c;
    bert_config_default(&c);
    c.vocab_size = 23; c.hidden = 12; c.layers = 2;
    bert_config_uniform(&c, 3, 20, NULL);
    c.max_len = 10; c.num_labels = 3; c.mode = mode;
    return c;
}

/* A shrunk model: heads of 4, unequal heads and FFN widths per layer
 * (attention width 12, 4 and 8 against hidden 12). */
static bert_config shrunk_config(int mode)
{
    bert_config c = tiny_config(mode);
    c.layers = 3;
    c.head_size = 4;
    int heads[3] = {3, 1, 2}, ffn[3] = {20, 7, 13};
    for (int l = 0; l < 3; l++) {
        c.heads[l] = heads[l];
        c.ffn[l] = ffn[l];
    }
    return c;
}

struct mctx { bert_model *m; bert_batch b; int head, train; uint64_t counter; };
static double model_loss(void *p)
{
    struct mctx *c = p;
    bert_output o;
    flow_err e;
    c->m->fwd_counter = c->counter;         /* same dropout masks every call */
    if (bert_forward(c->m, &c->b, c->head, c->train, &o, &e))
        FLOW_BUG("%s", e.msg);
    return o.loss;
}

static void test_model_grads(int head, int shrunk, int pooling)
{
    bert_config cfg = shrunk ? shrunk_config(BERT_MODE_BOTH) : tiny_config(BERT_MODE_BOTH);
    cfg.pooling = pooling;
    bert_model *m = NULL;
    flow_err e;
    CHECK_OK(bert_model_new(&cfg, 3, 7, &bert_device_cpu, &m, &e), e);
    if (!m)
        return;
    bert_init(m, 7, NULL);
    /* perturb every tensor so LayerNorm weights, biases etc. are not trivial */
    for (size_t i = 0; i < m->nparams; i++)
        m->params[i] += 0.1f * frand();
    int B = 3, T = 7;
    int32_t ids[21], types[21], mask[21], mlm[21], labels[3] = {2, 0, 1};
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int)(i * 7 % cfg.vocab_size);
        types[i] = (i % T) >= 4;
        mask[i] = !((i / T == 1 && i % T >= 5) || (i / T == 2 && i % T == 6));
        mlm[i] = i % 3 == 1 ? (int)((i * 5 + 3) % cfg.vocab_size) : BERT_IGNORE_INDEX;
    }
    ids[4] = 0;     /* a pad token in the input: row 0 keeps only its decoder gradient */
    float cw[3] = {1.0f, 0.5f, 2.0f};
    struct mctx c = {m, {B, T, ids, types, mask, mlm, labels, cw}, head, 1, 5};
    bert_zero_grad(m);
    model_loss(&c);
    CHECK_OK(bert_backward(m, 1.0f, &e), e);
    char what[160];
    for (int t = 0; t < m->ntensors; t++) {
        const bert_tensor *tt = &m->tensors[t];
        int head_mlm = strncmp(tt->name, "cls.", 4) == 0;
        int head_cls = strncmp(tt->name, "classifier", 10) == 0 || strstr(tt->name, "pooler");
        if ((head == BERT_HEAD_MLM && head_cls) || (head == BERT_HEAD_CLASSIFY && head_mlm))
            continue;
        snprintf(what, sizeof what, "%s%s%s %s", shrunk ? "shrunk " : "", pooling ? "mean-pooled " : "",
                 head == BERT_HEAD_MLM ? "mlm" : "cls", tt->name);
        /* word embedding row 0 is the padding row: like nn.Embedding's
         * padding_idx it gets no lookup gradient (torch test checks it) */
        size_t skip = strstr(tt->name, "word_embeddings") ? (size_t)cfg.hidden : 0;
        grad_check(what, model_loss, &c, m->params + tt->offset + skip,
                   m->grads + tt->offset + skip, tt->numel - skip, 12, 3e-3f, 3e-4, 3e-2);
    }
    bert_model_free(m);
}

/* Backward from external gradients: the classifier's own cross-entropy
 * given as dlogits reproduces bert_backward, and a gradient at a hidden
 * state matches finite differences of <r, hidden_l>. */
struct hctx { bert_model *m; bert_batch b; int layer; const float *r; uint64_t counter; };
static double hidden_loss(void *p)
{
    struct hctx *c = p;
    bert_output o;
    flow_err e;
    c->m->fwd_counter = c->counter;
    if (bert_forward(c->m, &c->b, BERT_HEAD_CLASSIFY, 1, &o, &e))
        FLOW_BUG("%s", e.msg);
    return dot(bert_hidden_states(c->m, c->layer), c->r, (size_t)c->b.B * c->b.T * c->m->cfg.hidden);
}
static void test_backward_ext(void)
{
    bert_config cfg = shrunk_config(BERT_MODE_CLASSIFY);
    bert_model *m = NULL;
    flow_err e;
    CHECK_OK(bert_model_new(&cfg, 2, 5, &bert_device_cpu, &m, &e), e);
    if (!m)
        return;
    CHECK_OK(bert_init(m, 11, &e), e);
    int B = 2, T = 5, C = cfg.num_labels, H = cfg.hidden;
    int32_t ids[10] = {2, 7, 8, 9, 3, 2, 11, 12, 3, 0}, mask[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0};
    int32_t labels[2] = {1, 2};
    bert_batch b = {B, T, ids, NULL, mask, NULL, labels, NULL};
    bert_output o;
    m->fwd_counter = 3;
    bert_zero_grad(m);
    CHECK_OK(bert_forward(m, &b, BERT_HEAD_CLASSIFY, 1, &o, &e), e);
    CHECK_OK(bert_backward(m, 1.0f, &e), e);
    float *g1 = malloc(m->nparams * sizeof *g1), dl[6];
    memcpy(g1, m->grads, m->nparams * sizeof *g1);
    for (int r = 0; r < B; r++) {   /* d mean CE / d logits = (softmax - onehot) / B */
        double mx = -1e30, z = 0;
        for (int k = 0; k < C; k++) mx = fmax(mx, o.logits[r * C + k]);
        for (int k = 0; k < C; k++) z += exp(o.logits[r * C + k] - mx);
        for (int k = 0; k < C; k++)
            dl[r * C + k] = (float)((exp(o.logits[r * C + k] - mx) / z - (k == labels[r])) / B);
    }
    bert_zero_grad(m);
    m->fwd_counter = 3;
    bert_batch nolab = b;
    nolab.labels = NULL;            /* external gradients need no labels */
    CHECK_OK(bert_forward(m, &nolab, BERT_HEAD_CLASSIFY, 1, &o, &e), e);
    CHECK(bert_backward(m, 1.0f, &e) == FLOW_E_PARAM);
    CHECK_OK(bert_backward_ext(m, dl, NULL, &e), e);
    double err = 0, scale = 0;
    for (size_t i = 0; i < m->nparams; i++) {
        err = fmax(err, fabs(m->grads[i] - g1[i]));
        scale = fmax(scale, fabs(g1[i]));
    }
    CHECK_MSG(err <= 1e-5 * scale, "backward_ext vs backward: max diff %.3g (scale %.3g)", err, scale);
    CHECK(bert_hidden_states(m, -1) == NULL && bert_hidden_states(m, cfg.layers + 1) == NULL);
    /* a gradient at hidden state 2 (output of layer 1) only */
    float *r = fvec((size_t)B * T * H, 1), zero[6] = {0};
    const float *dh[4] = {NULL, NULL, r, NULL};
    struct hctx c = {m, nolab, 2, r, 3};
    bert_zero_grad(m);
    hidden_loss(&c);
    CHECK_OK(bert_backward_ext(m, zero, dh, &e), e);
    const bert_tensor *t = bert_find_tensor(m, "bert.encoder.layer.1.attention.self.query.weight");
    const bert_tensor *t2 = bert_find_tensor(m, "bert.encoder.layer.2.intermediate.dense.weight");
    grad_check("hidden-state gradient", hidden_loss, &c, m->params + t->offset, m->grads + t->offset,
               t->numel, 24, 3e-3f, 3e-4, 3e-2);
    int untouched = 1;
    for (size_t i = 0; i < t2->numel; i++)
        untouched &= m->grads[t2->offset + i] == 0;
    CHECK(untouched);   /* layer 2 comes after hidden state 2 */
    free(r);
    free(g1);
    bert_model_free(m);
}

/* ---- determinism -------------------------------------------------------- */
static void run_steps(float *losses, float *final_param, int steps)
{
    bert_config cfg = tiny_config(BERT_MODE_MLM);
    bert_model *m = NULL;
    flow_err e;
    if (bert_model_new(&cfg, 4, 8, &bert_device_cpu, &m, &e))
        FLOW_BUG("%s", e.msg);
    bert_init(m, 1234, NULL);
    int32_t ids[32], mlm[32];
    for (int i = 0; i < 32; i++) {
        ids[i] = 5 + (i * 11) % 18;
        mlm[i] = i % 4 == 2 ? ids[i] : BERT_IGNORE_INDEX;
    }
    bert_batch b = {4, 8, ids, NULL, NULL, mlm, NULL, NULL};
    bert_adamw hp = {0.9f, 0.999f, 1e-8f, 0.01f};
    for (int s = 0; s < steps; s++) {
        bert_output o;
        bert_zero_grad(m);
        if (bert_forward(m, &b, BERT_HEAD_MLM, 1, &o, &e) || bert_backward(m, 1.0f, &e))
            FLOW_BUG("%s", e.msg);
        bert_clip_grad_norm(m, 1.0f);
        bert_adamw_step(m, &hp, 1e-3f);
        losses[s] = o.loss;
    }
    *final_param = m->params[m->nparams / 2];
    bert_model_free(m);
}

static void test_determinism(void)
{
    float a[4], b[4], pa, pb;
    run_steps(a, &pa, 4);
    run_steps(b, &pb, 4);
    CHECK(memcmp(a, b, sizeof a) == 0 && memcmp(&pa, &pb, sizeof pa) == 0);
    CHECK(a[3] < a[0]);     /* and it learns */
}

/* ---- overfit ------------------------------------------------------------ */
static void test_overfit(void)
{
    bert_config cfg = tiny_config(BERT_MODE_CLASSIFY);
    cfg.hidden = 32; cfg.num_labels = 4;
    bert_config_uniform(&cfg, 4, 64, NULL);
    cfg.hidden_dropout = cfg.attn_dropout = 0;     /* memorising, not generalising */
    bert_model *m = NULL;
    flow_err e;
    CHECK_OK(bert_model_new(&cfg, 8, 6, &bert_device_cpu, &m, &e), e);
    if (!m)
        return;
    bert_init(m, 3, NULL);
    /* 8 sequences, label = a function of the tokens at positions 1..2 */
    int32_t ids[48], labels[8], mask[48];
    for (int b = 0; b < 8; b++) {
        for (int t = 0; t < 6; t++) {
            ids[b * 6 + t] = t == 0 ? 2 : 5 + (b * 5 + t * 7) % 18;
            mask[b * 6 + t] = t < 4 + (b % 3);
        }
        labels[b] = b % 4;
    }
    bert_batch bt = {8, 6, ids, NULL, mask, NULL, labels, NULL};
    bert_adamw hp = {0.9f, 0.999f, 1e-8f, 0.0f};
    bert_output o = {0};
    for (int s = 0; s < 300; s++) {
        bert_zero_grad(m);
        if (bert_forward(m, &bt, BERT_HEAD_CLASSIFY, 1, &o, &e) || bert_backward(m, 1, &e))
            break;
        bert_adamw_step(m, &hp, 2e-3f);
        if (getenv("KT_VERBOSE") && s % 20 == 0)
            fprintf(stderr, "overfit step %d loss %.4f correct %ld\n", s, (double)o.loss, o.n_correct);
    }
    CHECK_OK(bert_forward(m, &bt, BERT_HEAD_CLASSIFY, 0, &o, &e), e);
    CHECK_MSG(o.n_correct == 8 && o.n_targets == 8 && o.loss < 0.1f, "overfit: %ld of 8 correct, loss %g",
              o.n_correct, (double)o.loss);
    bert_model_free(m);
}

/* ---- AdamW, clipping, schedule ------------------------------------------ */
static void test_adamw(void)
{
    bert_config cfg = tiny_config(BERT_MODE_MLM);
    bert_model *m = NULL;
    flow_err e;
    CHECK_OK(bert_model_new(&cfg, 1, 4, &bert_device_cpu, &m, &e), e);
    if (!m)
        return;
    bert_init(m, 5, NULL);
    const bert_tensor *w = bert_find_tensor(m, "bert.encoder.layer.1.intermediate.dense.weight");
    const bert_tensor *bb = bert_find_tensor(m, "bert.encoder.layer.1.intermediate.dense.bias");
    CHECK(w && w->decay == 1 && bb && bb->decay == 0);
    bert_adamw hp = {0.9f, 0.99f, 1e-6f, 0.1f};
    float lr = 0.01f;
    size_t iw = w->offset + 3, ib = bb->offset + 1;
    double p[2] = {m->params[iw], m->params[ib]}, mm[2] = {0, 0}, vv[2] = {0, 0};
    float gs[2][2] = {{0.5f, -0.25f}, {-0.125f, 2.0f}};
    for (int t = 1; t <= 2; t++) {
        bert_zero_grad(m);
        m->grads[iw] = gs[t - 1][0];
        m->grads[ib] = gs[t - 1][1];
        bert_adamw_step(m, &hp, lr);
        for (int k = 0; k < 2; k++) {
            double g = gs[t - 1][k];
            if (k == 0)
                p[k] -= lr * 0.1 * p[k];
            mm[k] = 0.9 * mm[k] + 0.1 * g;
            vv[k] = 0.99 * vv[k] + 0.01 * g * g;
            double mh = mm[k] / (1 - pow(0.9, t)), vh = vv[k] / (1 - pow(0.99, t));
            p[k] -= lr * mh / (sqrt(vh) + 1e-6);
        }
        CHECK_MSG(fabs(m->params[iw] - p[0]) < 1e-6 && fabs(m->params[ib] - p[1]) < 1e-6,
                  "adamw step %d: got %.8f %.8f want %.8f %.8f", t, (double)m->params[iw],
                  (double)m->params[ib], p[0], p[1]);
    }
    /* a zero-gradient LayerNorm weight is untouched (no decay) */
    const bert_tensor *lnw = bert_find_tensor(m, "bert.embeddings.LayerNorm.weight");
    CHECK(lnw && lnw->decay == 0 && m->params[lnw->offset] == 1.0f);
    /* clipping */
    bert_zero_grad(m);
    m->grads[0] = 3;
    m->grads[m->nparams - 1] = 4;
    CHECK(fabsf(bert_grad_norm(m) - 5) < 1e-6f);
    float before = bert_clip_grad_norm(m, 1.0f);
    CHECK(fabsf(before - 5) < 1e-6f && fabsf(bert_grad_norm(m) - 1) < 1e-5f);
    /* schedule */
    CHECK(fabsf(bert_lr_linear(1.0f, 0, 10, 110)) == 0);
    CHECK(fabsf(bert_lr_linear(1.0f, 5, 10, 110) - 0.5f) < 1e-7f);
    CHECK(fabsf(bert_lr_linear(1.0f, 10, 10, 110) - 1.0f) < 1e-7f);
    CHECK(fabsf(bert_lr_linear(1.0f, 60, 10, 110) - 0.5f) < 1e-7f);
    CHECK(bert_lr_linear(1.0f, 200, 10, 110) == 0);
    bert_model_free(m);
}

/* ---- config, table, load by name, errors -------------------------------- */
static void test_config(void)
{
    flow_err e;
    bert_config c;
    bert_config_default(&c);
    CHECK_OK(bert_config_validate(&c, &e), e);
    c.hidden = 100;
    CHECK(bert_config_uniform(&c, 12, 3072, &e) == FLOW_E_PARAM);
    CHECK_CONTAINS(e.msg, "hidden 100 is not a multiple of heads 12");
    bert_config_default(&c);
    c.hidden_dropout = 1.0f;
    CHECK(bert_config_validate(&c, &e) == FLOW_E_PARAM);
    CHECK_CONTAINS(e.msg, "dropout");
    bert_config_default(&c);
    c.layers = 0;
    CHECK(bert_config_validate(&c, &e) == FLOW_E_PARAM);
    CHECK_CONTAINS(e.msg, "layers is 0");
    /* reference config: 6 layers of 7,087,872 + embeddings + MLM head */
    bert_config_default(&c);
    size_t H = 768, I = 3072, V = 8000;
    size_t want = (V + 512 + 2 + 2) * H + 6 * (4 * H * H + 2 * H * I + 9 * H + I) + H * H + 3 * H + V;
    CHECK(bert_param_count(&c) == want);
    bert_tensor *t;
    int n;
    CHECK_OK(bert_tensor_table(&c, &t, &n, &e), e);
    CHECK(n == 5 + 6 * 16 + 5);
    CHECK_STREQ(t[5].name, "bert.encoder.layer.0.attention.self.query.weight");
    CHECK(t[6].offset == t[5].offset + H * H && t[8].offset == t[5].offset + 3 * H * H);
    CHECK(t[n - 1].offset + t[n - 1].numel == want);
    free(t);
    /* per-layer shapes: layer 1 of the shrunk config has 1 head of 4 and FFN 7 */
    bert_config sc = shrunk_config(BERT_MODE_MLM);
    CHECK_OK(bert_config_validate(&sc, &e), e);
    CHECK(!bert_config_is_uniform(&sc) && bert_config_is_uniform(&c));
    CHECK_OK(bert_tensor_table(&sc, &t, &n, &e), e);
    CHECK_STREQ(t[5 + 16].name, "bert.encoder.layer.1.attention.self.query.weight");
    CHECK(t[5 + 16].shape[0] == 4 && t[5 + 16].shape[1] == 12);
    CHECK(t[5 + 16 + 6].shape[0] == 12 && t[5 + 16 + 6].shape[1] == 4);     /* output.dense [H, A] */
    CHECK(t[5 + 16 + 10].shape[0] == 7 && t[5 + 16 + 14 - 2].shape[1] == 7);
    size_t sum = 0;
    for (int i = 0; i < n; i++)
        sum += t[i].numel;
    CHECK(sum == bert_param_count(&sc));
    free(t);
    sc.heads[2] = 0;
    CHECK(bert_config_validate(&sc, &e) == FLOW_E_PARAM);
    CHECK_CONTAINS(e.msg, "layer 2 has 0 attention heads");
    bert_config_default(&c);
    CHECK(c.pooling == BERT_POOL_CLS);
    c.pooling = 2;
    CHECK(bert_config_validate(&c, &e) == FLOW_E_PARAM);
    CHECK_CONTAINS(e.msg, "pooling 2");

    /* classifier from an MLM checkpoint */
    bert_config mc = tiny_config(BERT_MODE_MLM), cc = tiny_config(BERT_MODE_CLASSIFY);
    bert_model *mm = NULL, *cm = NULL;
    CHECK_OK(bert_model_new(&mc, 1, 4, &bert_device_cpu, &mm, &e), e);
    CHECK_OK(bert_model_new(&cc, 1, 4, &bert_device_cpu, &cm, &e), e);
    if (mm && cm) {
        bert_init(mm, 1, NULL);
        bert_init(cm, 2, NULL);
        int copied = 0;
        CHECK_OK(bert_load_by_name(cm, &mc, mm->params, mm->nparams, &copied, &e), e);
        CHECK(copied == 5 + 2 * 16);
        CHECK(memcmp(bert_param_ptr(cm, "bert.encoder.layer.1.output.dense.weight"),
                     bert_param_ptr(mm, "bert.encoder.layer.1.output.dense.weight"),
                     sizeof(float) * 12 * 20) == 0);
        CHECK(bert_find_tensor(cm, "cls.predictions.bias") == NULL);
        CHECK(bert_load_by_name(cm, &mc, mm->params, mm->nparams - 1, NULL, &e) == FLOW_E_PARAM);
        /* forward errors name the subject */
        int32_t ids[4] = {2, 99, 3, 0}, lab[1] = {0};
        bert_batch b = {1, 4, ids, NULL, NULL, NULL, lab, NULL};
        bert_output o;
        CHECK(bert_forward(cm, &b, BERT_HEAD_CLASSIFY, 0, &o, &e) == FLOW_E_PARAM);
        CHECK_CONTAINS(e.msg, "token id 99 at batch 0 position 1");
        CHECK(bert_forward(cm, &b, BERT_HEAD_MLM, 0, &o, &e) == FLOW_E_PARAM);
        CHECK_CONTAINS(e.msg, "no MLM head");
        b.B = 2;
        CHECK(bert_forward(cm, &b, BERT_HEAD_CLASSIFY, 0, &o, &e) == FLOW_E_PARAM);
        bert_model *fresh = NULL;
        CHECK_OK(bert_model_new(&cc, 1, 4, &bert_device_cpu, &fresh, &e), e);
        CHECK(fresh && bert_backward(fresh, 1, &e) == FLOW_E_PARAM);
        bert_model_free(fresh);
    }
    bert_model *bad = NULL;
    CHECK(bert_model_new(&mc, 1, 11, &bert_device_cpu, &bad, &e) == FLOW_E_PARAM && !bad);
    bert_device gpu0 = { 0, 0, BERT_FP32 };
    CHECK(bert_model_new(&mc, 1, 4, &gpu0, &bad, &e) == FLOW_E_PARAM && !bad);
    CHECK_CONTAINS(e.msg, "cuda");
    /* mixed precision is the CUDA backend's: on the CPU a clear error */
    bert_device cpu_bf16 = { -1, 0, BERT_BF16 }, cpu_odd = { -1, 0, 7 };
    CHECK(bert_model_new(&mc, 1, 4, &cpu_bf16, &bad, &e) == FLOW_E_PARAM && !bad);
    CHECK_CONTAINS(e.msg, "precision bf16 needs a GPU: the CPU backend computes in fp32 only");
    CHECK(bert_model_new(&mc, 1, 4, &cpu_odd, &bad, &e) == FLOW_E_PARAM && !bad);
    CHECK_CONTAINS(e.msg, "precision 7 is not fp32");
    CHECK(bert_precision_parse("fp16") == BERT_FP16 && bert_precision_parse("tf32") == -1);
    bert_model_free(mm);
    bert_model_free(cm);
    bert_model_free(NULL);
}

#include <omp.h>
#define TIMED(call) do { double t0_ = omp_get_wtime(); call; \
        if (getenv("KT_VERBOSE")) fprintf(stderr, "%-40s %.2f s\n", #call, omp_get_wtime() - t0_); } while (0)

int main(void)
{
    bert_set_threads(2);
    TIMED(test_config());
    TIMED(test_linear());
    TIMED(test_layernorm());
    TIMED(test_attention(0.0f));
    TIMED(test_attention(0.25f));
    TIMED(test_pointwise());
    TIMED(test_wide_pointwise());
    TIMED(test_embedding());
    TIMED(test_xent());
    TIMED(test_pooling());
    TIMED(test_adamw());
    /* ~1000 tiny forwards each: one thread keeps them fast on a busy
     * machine (the threaded paths are covered by the op tests above and
     * the determinism test below) */
    bert_set_threads(1);
    TIMED(test_soft_targets());
    TIMED(test_model_grads(BERT_HEAD_MLM, 0, BERT_POOL_CLS));
    TIMED(test_model_grads(BERT_HEAD_CLASSIFY, 0, BERT_POOL_CLS));
    TIMED(test_model_grads(BERT_HEAD_MLM, 1, BERT_POOL_CLS));
    TIMED(test_model_grads(BERT_HEAD_CLASSIFY, 1, BERT_POOL_CLS));
    TIMED(test_model_grads(BERT_HEAD_CLASSIFY, 0, BERT_POOL_MEAN));
    TIMED(test_model_grads(BERT_HEAD_CLASSIFY, 1, BERT_POOL_MEAN));
    TIMED(test_backward_ext());
    TIMED(test_overfit());
    bert_set_threads(2);
    TIMED(test_determinism());
    printf("worst gradient error / tolerance: %.3f\n", worst);
    return test_summary("kernels_test");
}
