/* bert_quant_test.c — the quantized BERT forward (kernels/bert_quant.c):
 * an empty quantized model gives the fp32 logits bit for bit; int8 and
 * 4-bit models stay close to fp32 and agree on the argmax; every code path
 * and thread count gives the same logits; calibration counts exactly the
 * real tokens; GPTQ from calibration beats RTN at 4 bits on the model's
 * own outputs; impossible specs and shape mismatches are errors. */
#include "kernels/kernels.h"
#include "kernels/quant/quant.h"
#include "test.h"

#include <math.h>

enum { B = 6, T = 16 };

static bert_model *small_model(void)
{
    bert_config c;
    bert_config_default(&c);
    c.vocab_size = 120; c.hidden = 64; c.layers = 2;
    bert_config_uniform(&c, 4, 128, NULL);
    c.max_len = 32; c.num_labels = 5; c.mode = BERT_MODE_CLASSIFY;
    bert_model *m = NULL;
    flow_err e;
    if (bert_model_new(&c, B, T, &bert_device_cpu, &m, &e)) { fprintf(stderr, "%s\n", e.msg); exit(1); }
    bert_init(m, 7, NULL);
    /* Larger-than-init weights so that the logits spread (argmax is meaningful). */
    for (size_t i = 0; i < m->nparams; i++) m->params[i] *= 3.0f;
    return m;
}

static void batch_of(int seed, int32_t *ids, int32_t *mask, bert_batch *b)
{
    uint32_t s = (uint32_t)seed * 2654435761u + 1;
    for (int i = 0; i < B; i++) {
        int len = 6 + (i * 3 + seed) % (T - 5);
        for (int t = 0; t < T; t++) {
            s = s * 1664525u + 1013904223u;
            ids[i * T + t] = t < len ? 5 + (int)(s >> 8) % 115 : 0;
            mask[i * T + t] = t < len;
        }
    }
    memset(b, 0, sizeof *b);
    b->B = B; b->T = T; b->ids = ids; b->attn_mask = mask;
}

static void logits(bert_model *m, const bert_batch *b, float *out)
{
    bert_output o;
    flow_err e;
    int rc = bert_forward(m, b, BERT_HEAD_CLASSIFY, 0, &o, &e);
    if (rc) { fprintf(stderr, "forward: %s\n", e.msg); CHECK(0); return; }
    memcpy(out, o.logits, sizeof(float) * B * m->cfg.num_labels);
}

/* Linear `which` of layer l: weights pointer and [OC, IC]. */
static const float *lin_w(bert_model *m, int l, int which, int *OC, int *IC)
{
    static const char *names[] = { "attention.self.query.weight", "attention.output.dense.weight",
                                   "intermediate.dense.weight", "output.dense.weight" };
    char n[128];
    snprintf(n, sizeof n, "bert.encoder.layer.%d.%s", l, names[which]);
    const bert_tensor *t = bert_find_tensor(m, n);
    *OC = which == BERT_LIN_QKV ? 3 * t->shape[0] : t->shape[0];
    *IC = t->shape[1];
    return m->params + t->offset;     /* QKV: Q, K, V contiguous = [3H, H] */
}

static bert_qmodel *quantize_all(bert_model *m, const bert_qspec *sp, bert_calib *cal)
{
    bert_qmodel *q = bert_qmodel_new(m->cfg.layers);
    flow_err e;
    for (int l = 0; l < m->cfg.layers; l++)
        for (int w = 0; w < BERT_LIN_COUNT; w++) {
            int OC, IC;
            const float *W = lin_w(m, l, w, &OC, &IC);
            const double *H = cal ? bert_calib_hessian(cal, l, w, NULL, NULL) : NULL;
            CHECK_OK(bert_qmodel_quantize(q, l, w, W, OC, IC, sp, H, &e), e);
        }
    return q;
}

static double mse(const float *a, const float *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)(a[i] - b[i]) * (a[i] - b[i]);
    return s / n;
}

static int argmax_agree(const float *a, const float *b, int rows, int C)
{
    int agree = 0;
    for (int r = 0; r < rows; r++) {
        int ia = 0, ib = 0;
        for (int c = 1; c < C; c++) {
            if (a[r * C + c] > a[r * C + ia]) ia = c;
            if (b[r * C + c] > b[r * C + ib]) ib = c;
        }
        agree += ia == ib;
    }
    return agree;
}

/* A classifier of vocabulary 120 and 3 labels for batches up to B x T. */
static bert_model *classifier(int hidden, int layers, int heads, int ffn, int B_, int T_, uint64_t seed)
{
    bert_config c;
    bert_config_default(&c);
    c.vocab_size = 120; c.hidden = hidden; c.layers = layers;
    bert_config_uniform(&c, heads, ffn, NULL);
    c.max_len = T_; c.num_labels = 3; c.mode = BERT_MODE_CLASSIFY;
    bert_model *m = NULL;
    flow_err e;
    if (bert_model_new(&c, B_, T_, &bert_device_cpu, &m, &e)) { fprintf(stderr, "%s\n", e.msg); exit(1); }
    bert_init(m, seed, NULL);
    return m;
}

/* m's final hidden states on b with q attached into h[0] (the fused
 * encoder) and h[1] (profiled: op at a time); 1 when they are the same
 * bits.  Leaves q detached and the profiler off. */
static int fused_is_plain(bert_model *m, bert_qmodel *q, const bert_batch *b, float *h[2])
{
    size_t nh = (size_t)b->B * b->T * m->cfg.hidden;
    for (int way = 0; way < 2; way++) {
        bert_qmodel_attach(m, q);
        bert_profile_enable(m, way);
        bert_output o;
        flow_err e;
        CHECK_OK(bert_forward(m, b, BERT_HEAD_CLASSIFY, 0, &o, &e), e);
        memcpy(h[way], bert_hidden_states(m, m->cfg.layers), nh * sizeof(float));
    }
    bert_profile_enable(m, 0);
    bert_qmodel_attach(m, NULL);
    return memcmp(h[0], h[1], nh * sizeof(float)) == 0;
}

int main(void)
{
    bert_model *m = small_model();
    int C = m->cfg.num_labels;
    int32_t ids[B * T], mask[B * T];
    bert_batch b;
    float ref[B * 8], got[B * 8], alt[B * 8];
    enum { NB = 4 };
    float refs[NB][B * 8];
    for (int k = 0; k < NB; k++) { batch_of(k, ids, mask, &b); logits(m, &b, refs[k]); }
    batch_of(0, ids, mask, &b);
    logits(m, &b, ref);

    /* Keep-everything-fp32 policy: an empty quantized model changes nothing. */
    bert_qmodel *none = bert_qmodel_new(m->cfg.layers);
    bert_qmodel_attach(m, none);
    logits(m, &b, got);
    CHECK(memcmp(got, ref, sizeof(float) * B * C) == 0);
    bert_qmodel_attach(m, NULL);
    bert_qmodel_free(none);

    /* int8 and 4-bit RTN: close to fp32; same logits on every path and thread count. */
    bert_qspec specs[] = {
        { 8, 0, 1, 0, 0, 0.01, 0 }, { 4, 32, 0, 0, 0, 0.01, 0 }, { 4, 64, 1, 0, 0, 0.01, 0 },
        { 4, 64, 0, 1, 0, 0.01, 0 },
    };
    double var = 0;
    for (int i = 0; i < B * C; i++) var += (double)ref[i] * ref[i];
    var /= B * C;
    double err8 = 0;
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        bert_qmodel *q = quantize_all(m, &specs[s], NULL);
        bert_qmodel_attach(m, q);
        CHECK_OK(quant_path_force(QUANT_PATH_SCALAR, &(flow_err){0}), (flow_err){0});
        bert_qmodel_set_threads(q, 1);
        logits(m, &b, got);
        for (int p = QUANT_PATH_AVX2; p < QUANT_PATH_COUNT; p++) {
            if (!quant_path_supported((quant_path)p)) continue;
            quant_path_force((quant_path)p, NULL);
            bert_qmodel_set_threads(q, 3);
            logits(m, &b, alt);
            CHECK_MSG(memcmp(got, alt, sizeof(float) * B * C) == 0, "spec %zu: path %s differs from scalar",
                      s, quant_path_name(p));
        }
        quant_path_force(QUANT_PATH_AUTO, NULL);
        double rel = mse(got, ref, B * C) / var;
        int agree = argmax_agree(got, ref, B, C);
        printf("bert_quant_test: spec %zu (bits %d group %d): relative logit MSE %.2e, argmax agreement %d/%d\n",
               s, specs[s].bits, specs[s].group, rel, agree, B);
        if (s == 0) { err8 = rel; CHECK(rel < 1e-3); CHECK(agree >= B - 1); }
        else { CHECK(rel < 0.05); CHECK(rel > err8); }
        CHECK(rel > 0);                       /* it really ran quantized */
        bert_qmodel_attach(m, NULL);
        bert_qmodel_free(q);
    }

    /* The fused eval encoder (one parallel region, bert_set_linear_rows)
     * gives the op-at-a-time bits (the profiler's forward): every hidden state
     * of a batch of 5 x 11 rows (3 whole blocks and a tail of 7), int8 and
     * 4-bit, 1 and 3 threads. */
    for (size_t s = 0; s < 2; s++) {
        enum { B2 = 5, T2 = 11 };
        int32_t ids2[B2 * T2], mask2[B2 * T2];
        for (int i = 0; i < B2 * T2; i++) { ids2[i] = 5 + (i * 37) % 110; mask2[i] = i % T2 < 4 + i / T2; }
        bert_batch b2 = { .B = B2, .T = T2, .ids = ids2, .attn_mask = mask2 };
        bert_qmodel *q = quantize_all(m, &specs[s == 0 ? 0 : 2], NULL);
        int L = m->cfg.layers, H = m->cfg.hidden;
        size_t nh = (size_t)B2 * T2 * H;
        float *fused = malloc((L + 1) * nh * sizeof(float)), *plain = malloc((L + 1) * nh * sizeof(float));
        for (int th = 1; th <= 3; th += 2) {
            bert_qmodel_set_threads(q, th);
            for (int way = 0; way < 2; way++) {
                bert_qmodel_attach(m, q);
                bert_profile_enable(m, way);    /* profiled: op at a time */
                bert_output o;
                flow_err e;
                CHECK_OK(bert_forward(m, &b2, BERT_HEAD_CLASSIFY, 0, &o, &e), e);
                for (int l = 0; l <= L; l++)
                    memcpy((way ? plain : fused) + l * nh, bert_hidden_states(m, l), nh * sizeof(float));
                if (way == 0) {     /* the fused forward keeps no activations: no backward */
                    CHECK(bert_backward(m, 1.0f, &e) == FLOW_E_PARAM);
                    CHECK_CONTAINS(e.msg, "keeps no activations");
                }
            }
            bert_profile_enable(m, 0);
            for (int l = 0; l <= L; l++)
                CHECK_MSG(memcmp(fused + l * nh, plain + l * nh, nh * sizeof(float)) == 0,
                          "spec %zu, %d threads: fused layer output %d differs from op at a time", s, th, l);
        }
        /* an attached quantized model takes row blocks (the fused path is what it runs) */
        bert_qmodel_attach(m, q);
        CHECK(m->linear_rows != NULL && m->linear_rows(m->linear_hook_arg) > 0);
        bert_qmodel_attach(m, NULL);
        free(fused); free(plain);
        bert_qmodel_free(q);
    }

    /* The same over sequences longer than attention's query chunks (2 x
     * 150 rows: chunks of 64, 64 and 22 queries per head); and a model with
     * no quantized Linear still gives the fp32 bits there (the same eval
     * attention, op at a time). */
    {
        enum { B3 = 2, T3 = 150 };
        bert_model *ml = classifier(64, 2, 2, 128, B3, T3 + 10, 11);
        int32_t ids3[B3 * T3], mask3[B3 * T3];
        for (int i = 0; i < B3 * T3; i++) { ids3[i] = 5 + (i * 53) % 110; mask3[i] = i % T3 < 140 - 30 * (i / T3); }
        bert_batch b3 = { .B = B3, .T = T3, .ids = ids3, .attn_mask = mask3 };
        bert_qmodel *q = quantize_all(ml, &specs[0], NULL);
        size_t nh = (size_t)B3 * T3 * ml->cfg.hidden;
        float *h[2] = { malloc(nh * sizeof(float)), malloc(nh * sizeof(float)) };
        CHECK_MSG(fused_is_plain(ml, q, &b3, h), "150-row sequences: fused output differs");
        bert_qmodel *none = bert_qmodel_new(ml->cfg.layers);
        bert_output o;
        flow_err e;
        CHECK_OK(bert_forward(ml, &b3, BERT_HEAD_CLASSIFY, 0, &o, &e), e);
        memcpy(h[0], bert_hidden_states(ml, ml->cfg.layers), nh * sizeof(float));
        bert_qmodel_attach(ml, none);
        CHECK_OK(bert_forward(ml, &b3, BERT_HEAD_CLASSIFY, 0, &o, &e), e);
        CHECK_MSG(memcmp(h[0], bert_hidden_states(ml, ml->cfg.layers), nh * sizeof(float)) == 0,
                  "150-row sequences: an empty quantized model changes the fp32 outputs");
        bert_qmodel_attach(ml, NULL);
        bert_qmodel_free(none);
        free(h[0]); free(h[1]);
        bert_qmodel_free(q);
        bert_model_free(ml);
    }

    /* A layer whose FFN outgrows L2 (hidden x FFN > 2^20) takes fused
     * blocks of 64 rows: still the op-at-a-time bits (5 x 30 rows: two whole
     * blocks and a tail), int8 and 4-bit. */
    for (int s = 0; s < 2; s++) {
        enum { B4 = 5, T4 = 30 };
        bert_model *mb = classifier(128, 1, 2, 8256, B4, T4 + 2, 13);
        int32_t ids4[B4 * T4], mask4[B4 * T4];
        for (int i = 0; i < B4 * T4; i++) { ids4[i] = 5 + (i * 41) % 110; mask4[i] = i % T4 < 30 - 4 * (i / T4); }
        bert_batch b4 = { .B = B4, .T = T4, .ids = ids4, .attn_mask = mask4 };
        bert_qmodel *q = quantize_all(mb, &specs[s == 0 ? 0 : 2], NULL);
        size_t nh = (size_t)B4 * T4 * mb->cfg.hidden;
        float *h[2] = { malloc(nh * sizeof(float)), malloc(nh * sizeof(float)) };
        CHECK_MSG(fused_is_plain(mb, q, &b4, h), "64-row fused blocks, spec %d: output differs", s);
        bert_qmodel_free(q);
        free(h[0]); free(h[1]);
        bert_model_free(mb);
    }

    /* Calibration: rows counted are the real tokens; GPTQ beats RTN at 4 bits. */
    bert_calib *cal = bert_calib_new(m->cfg.layers);
    long real = 0;
    for (int k = 0; k < NB; k++) {
        batch_of(k, ids, mask, &b);
        for (int i = 0; i < B * T; i++) real += mask[i];
        bert_calib_attach(m, cal, &b);
        logits(m, &b, got);
        CHECK(memcmp(got, refs[k], sizeof(float) * B * C) == 0);   /* observing changes nothing */
    }
    bert_calib_attach(m, NULL, NULL);
    int width; long rows;
    CHECK(bert_calib_hessian(cal, 1, BERT_LIN_FFN_OUT, &width, &rows) != NULL);
    CHECK(width == 128 && rows == real);
    bert_qspec rtn = { 4, 32, 0, 0, 0, 0.01, 0 }, gq = rtn;
    gq.gptq = 1;
    double e_rtn = 0, e_gptq = 0;
    for (int pass = 0; pass < 2; pass++) {
        bert_qmodel *q = quantize_all(m, pass ? &gq : &rtn, pass ? cal : NULL);
        bert_qmodel_attach(m, q);
        double s = 0;
        for (int k = 0; k < NB; k++) { batch_of(k, ids, mask, &b); logits(m, &b, got); s += mse(got, refs[k], B * C); }
        *(pass ? &e_gptq : &e_rtn) = s;
        bert_qmodel_attach(m, NULL);
        bert_qmodel_free(q);
    }
    printf("bert_quant_test: 4-bit g32 logit MSE on calibration batches: GPTQ %.3e, RTN %.3e\n", e_gptq, e_rtn);
    CHECK(e_gptq < e_rtn);

    /* Impossible specs and mismatched shapes. */
    flow_err e;
    bert_qmodel *q = bert_qmodel_new(m->cfg.layers);
    int OC, IC;
    const float *W = lin_w(m, 0, BERT_LIN_FFN_OUT, &OC, &IC);
    bert_qspec bad = { 4, 48, 0, 0, 0, 0.01, 0 };
    CHECK(bert_qmodel_quantize(q, 0, BERT_LIN_FFN_OUT, W, OC, IC, &bad, NULL, &e) == FLOW_E_PARAM);
    CHECK_CONTAINS(e.msg, "layer 0 output");
    bad.group = 64; bad.gptq = 1;
    CHECK(bert_qmodel_quantize(q, 0, BERT_LIN_FFN_OUT, W, OC, IC, &bad, NULL, &e) == FLOW_E_PARAM);
    CHECK_CONTAINS(e.msg, "calibration");
    bad.gptq = 0;
    /* FFN out weights [H, I] put where FFN in [I, H] belongs: forward error, no garbage. */
    CHECK_OK(bert_qmodel_quantize(q, 0, BERT_LIN_FFN_IN, W, OC, IC, &bad, NULL, &e), e);
    bert_qmodel_attach(m, q);
    bert_output o;
    batch_of(0, ids, mask, &b);
    CHECK(bert_forward(m, &b, BERT_HEAD_CLASSIFY, 0, &o, &e) == FLOW_E_PARAM);
    CHECK_CONTAINS(e.msg, "the model needs [128, 64]");
    bert_qmodel_attach(m, NULL);
    bert_qmodel_free(q);
    bert_calib_free(cal);
    bert_model_free(m);
    return test_summary("bert_quant_test");
}
