/* qartifact_test.c — quantized weights in safetensors (stages/model/
 * qartifact.c): a round trip gives the same logits as the in-memory
 * quantized model, for int8, uint4 (sym/asym) and nf4; a truncated file, an
 * out-of-range zero, an int8 code of -128, a missing scale tensor and
 * another format version are each a clear error naming the tensor or the
 * version, never a model that predicts garbage. */
#include "stages/model/qartifact.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

enum { B = 3, T = 12 };

static bert_model *model(void)
{
    bert_config c;
    bert_config_default(&c);
    c.vocab_size = 90; c.hidden = 64; c.layers = 2; c.max_len = 16; c.num_labels = 4; c.mode = BERT_MODE_CLASSIFY;
    flow_err e;
    bert_model *m = NULL;
    if (bert_config_uniform(&c, 4, 128, &e) || bert_model_new(&c, B, T, &bert_device_cpu, &m, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        exit(1);
    }
    bert_init(m, 3, NULL);
    for (size_t i = 0; i < m->nparams; i++) m->params[i] *= 3.0f;
    return m;
}

static void logits(bert_model *m, float *out)
{
    int32_t ids[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = 5 + (i * 37) % 80;
    bert_batch b = { .B = B, .T = T, .ids = ids };
    bert_output o;
    flow_err e;
    if (bert_forward(m, &b, BERT_HEAD_CLASSIFY, 0, &o, &e)) { fprintf(stderr, "%s\n", e.msg); CHECK(0); return; }
    memcpy(out, o.logits, sizeof(float) * B * 4);
}

/* Serializes m with q's Linears quantized (meta = the quantization JSON). */
static void serialize(bert_model *m, bert_qmodel *q, int sym, const char *meta, const char *skip, flow_buf *out)
{
    st_file f;
    st_init(&f);
    st_set_meta(&f, "format", "pt");
    st_set_meta(&f, "quantization", meta);
    qart_stored st[32];
    int ns = 0;
    flow_err e;
    for (int i = 0; i < m->ntensors; i++) {
        const bert_tensor *t = &m->tensors[i];
        int found = 0;
        for (int l = 0; l < m->cfg.layers && !found; l++)
            for (int w = 0; w < BERT_LIN_COUNT && !found; w++)
                for (int p = 0; p < (w == BERT_LIN_QKV ? 3 : 1); p++) {
                    char n[256];
                    qart_weight_name(l, w, p, n, sizeof n);
                    if (strcmp(n, t->name)) continue;
                    CHECK_OK(qart_export(bert_qmodel_get(q, l, w), p * t->shape[0], t->shape[0], sym, &st[ns], &e), e);
                    qart_add(&f, t->name, &st[ns++]);
                    found = 1;
                    break;
                }
        if (!found) {
            int64_t d[2] = { t->shape[0], t->shape[1] };
            st_add(&f, t->name, ST_F32, t->ndim, d, m->params + t->offset);
        }
    }
    if (skip) {                                 /* drop one tensor: rebuild without it */
        st_file g;
        st_init(&g);
        st_set_meta(&g, "format", "pt");
        st_set_meta(&g, "quantization", meta);
        for (int i = 0; i < f.n; i++)
            if (strcmp(f.t[i].name, skip)) st_add(&g, f.t[i].name, f.t[i].dtype, f.t[i].ndim, f.t[i].shape, f.t[i].data);
        st_serialize(&g, out);
        st_release(&g);
    } else {
        st_serialize(&f, out);
    }
    st_release(&f);
    for (int i = 0; i < ns; i++) qart_stored_release(&st[i]);
}

static int load(bert_model *m, const char *data, size_t len, bert_qmodel **q, st_file *f, flow_err *e,
                void (*corrupt)(st_file *))
{
    st_init(f);
    char *raw = malloc(len);
    memcpy(raw, data, len);
    int rc = st_parse(f, raw, len, "test weights", e);
    if (rc) return rc;
    if (corrupt) corrupt(f);
    return qart_load(f, &m->cfg, q, NULL, "model 'x'", e);
}

static void set_zero16(st_file *f)
{
    const st_tensor *t = st_find(f, "bert.encoder.layer.1.intermediate.dense.weight_zero");
    ((uint8_t *)t->data)[5] = 16;
}
static void set_m128(st_file *f)
{
    const st_tensor *t = st_find(f, "bert.encoder.layer.0.attention.self.key.weight");
    ((int8_t *)t->data)[7] = -128;
}

int main(void)
{
    bert_model *m = model();
    float ref[B * 4], a[B * 4], b[B * 4];
    logits(m, ref);
    struct { bert_qspec sp; const char *meta; } cases[] = {
        { { 8, 0, 1, 0, 0, 0.01, 0 }, "{\"format\":\"flow-quant\",\"version\":1,\"scheme\":\"int8\",\"bits\":8,\"group\":0,\"sym\":true}" },
        { { 4, 32, 0, 0, 0, 0.01, 0 }, "{\"format\":\"flow-quant\",\"version\":1,\"scheme\":\"uint4\",\"bits\":4,\"group\":32,\"sym\":false}" },
        { { 4, 64, 1, 0, 0, 0.01, 0 }, "{\"format\":\"flow-quant\",\"version\":1,\"scheme\":\"uint4\",\"bits\":4,\"group\":64,\"sym\":true}" },
        { { 4, 32, 1, 1, 0, 0.01, 0 }, "{\"format\":\"flow-quant\",\"version\":1,\"scheme\":\"nf4\",\"bits\":4,\"group\":32,\"sym\":true}" },
    };
    flow_err e;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        bert_qmodel *q = bert_qmodel_new(m->cfg.layers);
        for (int l = 0; l < m->cfg.layers; l++) {
            int H = 64, I = 128, OC[4] = { 3 * H, H, I, H }, IC[4] = { H, H, H, I };
            for (int w = 0; w < BERT_LIN_COUNT; w++) {
                char n[256];
                qart_weight_name(l, w, 0, n, sizeof n);
                CHECK_OK(bert_qmodel_quantize(q, l, w, m->params + bert_find_tensor(m, n)->offset, OC[w], IC[w],
                                              &cases[c].sp, NULL, &e), e);
            }
        }
        bert_qmodel_attach(m, q);
        logits(m, a);
        flow_buf buf;
        buf_init(&buf);
        serialize(m, q, cases[c].sp.sym || cases[c].sp.bits == 8, cases[c].meta, NULL, &buf);
        bert_qmodel *q2 = NULL;
        st_file f;
        CHECK_OK(load(m, buf.data, buf.len, &q2, &f, &e, NULL), e);
        if (q2) {
            bert_qmodel_attach(m, q2);
            logits(m, b);
            CHECK_MSG(memcmp(a, b, sizeof a) == 0, "case %zu: round trip changes the logits", c);
            CHECK(memcmp(a, ref, sizeof a) != 0);
        }
        bert_qmodel_attach(m, NULL);
        bert_qmodel_free(q2);
        st_release(&f);
        /* truncated */
        CHECK(load(m, buf.data, buf.len - 100, &q2, &f, &e, NULL) == FLOW_E_CORRUPT);
        st_release(&f);
        if (c == 1) {
            CHECK(load(m, buf.data, buf.len, &q2, &f, &e, set_zero16) == FLOW_E_CORRUPT);
            CHECK_CONTAINS(e.msg, "zero point");
            CHECK_CONTAINS(e.msg, "layer.1.intermediate");
            st_release(&f);
            flow_buf nb;
            buf_init(&nb);
            serialize(m, q, 0, cases[c].meta, "bert.encoder.layer.0.output.dense.weight_scale", &nb);
            CHECK(load(m, nb.data, nb.len, &q2, &f, &e, NULL) == FLOW_E_CORRUPT);
            CHECK_CONTAINS(e.msg, "lack tensor 'bert.encoder.layer.0.output.dense.weight_scale'");
            st_release(&f);
            buf_release(&nb);
            buf_init(&nb);
            serialize(m, q, 0, "{\"format\":\"flow-quant\",\"version\":2,\"scheme\":\"uint4\",\"group\":32}", NULL, &nb);
            CHECK(load(m, nb.data, nb.len, &q2, &f, &e, NULL) == FLOW_E_CORRUPT);
            CHECK_CONTAINS(e.msg, "version 2");
            st_release(&f);
            buf_release(&nb);
        }
        if (c == 0) {
            CHECK(load(m, buf.data, buf.len, &q2, &f, &e, set_m128) == FLOW_E_CORRUPT);
            CHECK_CONTAINS(e.msg, "-128");
            st_release(&f);
        }
        buf_release(&buf);
        bert_qmodel_free(q);
    }
    bert_model_free(m);
    return test_summary("qartifact_test");
}
