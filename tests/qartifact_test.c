/* qartifact_test.c — quantized weights in safetensors (stages/model/
 * qartifact.c): a round trip gives the same logits as the in-memory
 * quantized model, for int8, uint4 (sym/asym) and nf4; a truncated file, an
 * out-of-range zero, an int8 code of -128, a missing scale tensor and
 * another format version are each a clear error naming the tensor or the
 * version, never a model that predicts garbage.  Format 2: F16 scales
 * (the F16 conversion against every half value and known roundings; the
 * loaded scales are exactly the rounded ones; logits within a bound of the
 * F32-scale model), int8 word embeddings (rows = scale * code exactly, the
 * embedding error within scale / 2), and the loader refusing I8 tensors
 * the metadata does not account for and a query/key/value block quantized
 * in part; a bad value's message names the tensor once, whole.  Format 3:
 * word, position and token-type embeddings in int8 or uint4 (test_v3). */
#include "stages/model/qartifact.h"
#include "test.h"

#include <math.h>
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

enum { SER_F16 = 1, SER_EMB8 = 2, SER_QUERY_F32 = 4, SER_EMB_ALL = 8, SER_EMB_U4 = 16, SER_EMB_U4SYM = 32,
       SER_POS_F32 = 64 };
static int ser_flags;                           /* SER_*: how serialize stores (default 0) */

/* The embedding table serialize quantizes under ser_flags (-1: none):
 * SER_EMB8 the word embeddings in int8 (format 2); SER_EMB_ALL all three,
 * int8 or (SER_EMB_U4 / SER_EMB_U4SYM) uint4 with groups of 32, but the
 * position embeddings stay F32 with SER_POS_F32. */
static quant_kind emb_kind(const char *name)
{
    if ((ser_flags & SER_EMB8) && strcmp(name, QART_WORD_EMB) == 0) return QUANT_KIND_INT8;
    if (!(ser_flags & SER_EMB_ALL)) return 0;
    if ((ser_flags & SER_POS_F32) && strcmp(name, QART_POS_EMB) == 0) return 0;
    for (int k = 0; k < QART_NEMB; k++)
        if (strcmp(name, qart_emb_names[k]) == 0)
            return ser_flags & (SER_EMB_U4 | SER_EMB_U4SYM) ? QUANT_KIND_UINT4 : QUANT_KIND_INT8;
    return 0;
}

/* Serializes m with q's Linears quantized (meta = the quantization JSON). */
static void serialize(bert_model *m, bert_qmodel *q, int sym, const char *meta, const char *skip, flow_buf *out)
{
    st_file f;
    st_init(&f);
    st_set_meta(&f, "format", "pt");
    st_set_meta(&f, "quantization", meta);
    qart_stored st[33];
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
                    if ((ser_flags & SER_QUERY_F32) && l == 0 && w == BERT_LIN_QKV && p == 0) break;   /* left F32 */
                    CHECK_OK(qart_export(bert_qmodel_get(q, l, w), p * t->shape[0], t->shape[0], sym, &st[ns], &e), e);
                    if (ser_flags & SER_F16) CHECK_OK(qart_stored_f16(&st[ns], t->name, &e), e);
                    qart_add(&f, t->name, &st[ns++]);
                    found = 1;
                    break;
                }
        if (!found && emb_kind(t->name)) {
            CHECK_OK(qart_embed(m->params + t->offset, t->shape[0], t->shape[1], emb_kind(t->name), 32,
                                (ser_flags & SER_EMB_U4SYM) != 0, &st[ns], &e), e);
            if (ser_flags & SER_F16) CHECK_OK(qart_stored_f16(&st[ns], t->name, &e), e);
            qart_add(&f, t->name, &st[ns++]);
            found = 1;
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

/* IEEE binary16 conversion: every finite half converts to float and back
 * unchanged; known roundings (nearest, ties to even, overflow, subnormals). */
static void test_f16(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;     /* NaN */
        if (qart_f16_from_f32(qart_f32_from_f16((uint16_t)h)) != h) bad++;
    }
    CHECK_MSG(bad == 0, "%d half values do not survive a round trip", bad);
    struct { float x; uint16_t h; } k[] = {
        { 1.0f, 0x3c00 }, { -2.0f, 0xc000 }, { 65504.0f, 0x7bff }, { 65520.0f, 0x7c00 }, { 1e9f, 0x7c00 },
        { 0x1p-24f, 0x0001 }, { 0x1p-25f, 0x0000 }, { 0x1.8p-25f, 0x0001 }, { 0x1p-14f, 0x0400 },
        { 0.1f, 0x2e66 }, { 1.0f + 0x1p-11f, 0x3c00 }, { 1.0f + 0x3p-11f, 0x3c02 }, { 0.0f, 0x0000 },
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        CHECK_MSG(qart_f16_from_f32(k[i].x) == k[i].h, "f16(%a) = 0x%04x, expected 0x%04x", (double)k[i].x,
                  qart_f16_from_f32(k[i].x), k[i].h);
    qart_stored s = { .kind = QUANT_KIND_INT8, .N = 2, .K = 4 };
    float sc[2] = { 0.01f, 1e6f };
    s.scale = sc;
    flow_err e;
    CHECK(qart_stored_f16(&s, "w", &e) == FLOW_E_PARAM);
    CHECK_CONTAINS(e.msg, "use scales = f32");
    free(s.scale16);
}

/* One int8 model serialized with flags; the load result (rc) and message. */
static int load_flags(bert_model *m, bert_qmodel *q, int flags, const char *meta, bert_qmodel **q2, st_file *f,
                      flow_err *e)
{
    flow_buf buf;
    buf_init(&buf);
    ser_flags = flags;
    serialize(m, q, 1, meta, NULL, &buf);
    ser_flags = 0;
    int rc = load(m, buf.data, buf.len, q2, f, e, NULL);
    buf_release(&buf);
    return rc;
}

static void test_v3(bert_model *m, bert_qmodel *q);

/* Format 2: F16 scales, int8 word embeddings, refusals of the loader. */
static void test_v2(bert_model *m)
{
    static const char *m8 = "{\"format\":\"flow-quant\",\"version\":2,\"scheme\":\"int8\",\"bits\":8,\"group\":0,"
                            "\"sym\":true,\"scales\":\"%s\",\"embeddings\":\"%s\"}";
    char meta[256];
    flow_err e;
    bert_qspec s8 = { 8, 0, 1, 0, 0, 0.01, 0 };
    bert_qmodel *q = bert_qmodel_new(m->cfg.layers);
    for (int l = 0; l < m->cfg.layers; l++) {
        int H = 64, I = 128, OC[4] = { 3 * H, H, I, H }, IC[4] = { H, H, H, I };
        for (int w = 0; w < BERT_LIN_COUNT; w++) {
            char n[256];
            qart_weight_name(l, w, 0, n, sizeof n);
            CHECK_OK(bert_qmodel_quantize(q, l, w, m->params + bert_find_tensor(m, n)->offset, OC[w], IC[w], &s8, NULL, &e), e);
        }
    }
    float a[B * 4], b[B * 4];
    bert_qmodel_attach(m, q);
    logits(m, a);
    /* F16 scales: loaded scales are the F16-rounded ones, logits close */
    bert_qmodel *q2 = NULL;
    st_file f;
    snprintf(meta, sizeof meta, m8, "f16", "fp32");
    CHECK_OK(load_flags(m, q, SER_F16, meta, &q2, &f, &e), e);
    if (q2) {
        const quant_weight *w1 = bert_qmodel_get(q, 1, BERT_LIN_FFN_OUT), *w2 = bert_qmodel_get(q2, 1, BERT_LIN_FFN_OUT);
        int same = 1, rounded = 0;
        for (int n = 0; n < w1->N; n++) {
            float r = qart_f32_from_f16(qart_f16_from_f32(w1->scale[n]));
            same &= w2->scale[n] == r;
            rounded |= r != w1->scale[n];
        }
        CHECK_MSG(same && rounded, "F16 scales: loaded = rounded %d, some scale changed by rounding %d", same, rounded);
        bert_qmodel_attach(m, q2);
        logits(m, b);
        float md = 0, mx = 0;
        for (int i = 0; i < B * 4; i++) {
            md = fmaxf(md, fabsf(a[i] - b[i]));
            mx = fmaxf(mx, fabsf(a[i]));
        }
        /* scales change by <= 2^-11 relative, so every product by <= 2^-11 of its size */
        CHECK_MSG(md <= 0.01f * (1 + mx) && md > 0, "F16 scales move the logits by %g (max |logit| %g)", md, mx);
    }
    bert_qmodel_attach(m, NULL);
    bert_qmodel_free(q2);
    st_release(&f);
    /* int8 word embeddings: rows expanded to scale * code */
    const bert_tensor *t = bert_find_tensor(m, QART_WORD_EMB);
    size_t ne = t->numel;
    float *orig = malloc(ne * sizeof *orig);
    memcpy(orig, m->params + t->offset, ne * sizeof *orig);
    snprintf(meta, sizeof meta, m8, "f32", "int8");
    CHECK_OK(load_flags(m, q, SER_EMB8, meta, &q2, &f, &e), e);
    CHECK_OK(qart_load_rest(&f, m, "model 'x'", &e), e);
    int8_t *codes = malloc(ne);
    float sc[90];
    quant_int8_rtn(orig, t->shape[0], t->shape[1], codes, sc);
    int exact = 1, changed = 0, within = 1;
    for (size_t i = 0; i < ne; i++) {
        float v = m->params[t->offset + i], s = sc[i / (size_t)t->shape[1]];
        exact &= v == s * (float)codes[i];
        changed |= v != orig[i];
        within &= fabsf(v - orig[i]) <= 0.5f * s * (1 + 1e-6f);
    }
    CHECK_MSG(exact && changed && within, "int8 embeddings: exact %d changed %d within scale/2 %d", exact, changed, within);
    memcpy(m->params + t->offset, orig, ne * sizeof *orig);
    bert_qmodel_free(q2);
    st_release(&f);
    /* I8 word embeddings the metadata does not declare: refused, named */
    snprintf(meta, sizeof meta, m8, "f32", "fp32");
    CHECK_OK(load_flags(m, q, SER_EMB8, meta, &q2, &f, &e), e);
    CHECK(qart_load_rest(&f, m, "model 'x'", &e) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(e.msg, "'bert.embeddings.word_embeddings.weight' is stored I8");
    CHECK(memcmp(m->params + t->offset, orig, ne * sizeof *orig) == 0);
    bert_qmodel_free(q2);
    st_release(&f);
    /* a scale dtype other than the metadata's */
    snprintf(meta, sizeof meta, m8, "f32", "fp32");
    CHECK(load_flags(m, q, SER_F16, meta, &q2, &f, &e) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(e.msg, "is F16");
    st_release(&f);
    /* key and value quantized, query left F32: refused, not zero key and value */
    CHECK(load_flags(m, q, SER_QUERY_F32, meta, &q2, &f, &e) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(e.msg, "layer.0.attention.self.query.weight");
    st_release(&f);
    free(orig);
    free(codes);
    test_v3(m, q);
    bert_qmodel_free(q);
}

/* Format 3: the three embedding tables in int8 or uint4 (asym / sym, F32 or
 * F16 scales) expand to exactly the dequantized codes of their own RTN,
 * within scale / 2 of the fp32 values; a declared table left F32, a
 * quantized table the metadata does not declare, a zero point above 15,
 * uint4 in format 2 and a bad embedding group are refused, named. */
static void test_v3(bert_model *m, bert_qmodel *q)
{
    static const char *m3 = "{\"format\":\"flow-quant\",\"version\":%d,\"scheme\":\"int8\",\"bits\":8,\"group\":0,"
                            "\"sym\":true,\"scales\":\"%s\",\"embeddings\":\"%s\",\"embedding_group\":%d,"
                            "\"embedding_sym\":%s}";
    struct { int flags; const char *scales, *emb; int sym; } cases[] = {
        { SER_EMB_ALL, "f32", "int8", 1 }, { SER_EMB_ALL | SER_F16, "f16", "int8", 1 },
        { SER_EMB_ALL | SER_EMB_U4, "f32", "uint4", 0 }, { SER_EMB_ALL | SER_EMB_U4SYM | SER_F16, "f16", "uint4", 1 },
    };
    char meta[400];
    flow_err e;
    size_t total = 0, off[QART_NEMB];
    for (int k = 0; k < QART_NEMB; k++) { off[k] = total; total += bert_find_tensor(m, qart_emb_names[k])->numel; }
    float *orig = malloc(total * sizeof *orig);
    for (int k = 0; k < QART_NEMB; k++) {
        const bert_tensor *t = bert_find_tensor(m, qart_emb_names[k]);
        memcpy(orig + off[k], m->params + t->offset, t->numel * sizeof *orig);
    }
    bert_qmodel *q2 = NULL;
    st_file f;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int u4 = !strcmp(cases[c].emb, "uint4");
        snprintf(meta, sizeof meta, m3, 3, cases[c].scales, cases[c].emb, u4 ? 32 : 0, cases[c].sym ? "true" : "false");
        CHECK_OK(load_flags(m, q, cases[c].flags, meta, &q2, &f, &e), e);
        CHECK_OK(qart_load_rest(&f, m, "model 'x'", &e), e);
        for (int k = 0; k < QART_NEMB; k++) {
            const bert_tensor *t = bert_find_tensor(m, qart_emb_names[k]);
            int R = t->shape[0], H = t->shape[1], G = u4 ? H / 32 : 1;
            const float *o = orig + off[k], *v = m->params + t->offset;
            qart_stored st;                     /* the stored form, recomputed here */
            CHECK_OK(qart_embed(o, R, H, u4 ? QUANT_KIND_UINT4 : QUANT_KIND_INT8, 32, cases[c].sym, &st, &e), e);
            if (cases[c].flags & SER_F16) CHECK_OK(qart_stored_f16(&st, t->name, &e), e);
            int exact = 1, changed = 0, within = 1;
            for (int r = 0; r < R; r++)
                for (int i = 0; i < H; i++) {
                    size_t x = (size_t)r * H + i;
                    int j = i / (u4 ? 32 : H);
                    float s32 = st.scale[(size_t)r * G + j];
                    float s = st.scale16 ? qart_f32_from_f16(st.scale16[(size_t)r * G + j]) : s32;
                    int code = u4 ? quant_u4_get((const uint8_t *)st.codes + (size_t)r * (H / 2), 32, i)
                                    - (st.zero ? st.zero[(size_t)r * G + j] : u4 ? 8 : 0)
                                  : ((const int8_t *)st.codes)[x];
                    exact &= v[x] == s * (float)code;
                    changed |= v[x] != o[x];
                    /* RTN error s32 / 2, plus |code| * |s - s32| for the F16 rounding of s */
                    within &= fabsf(v[x] - o[x]) <= 0.5f * s32 * (1 + 1e-6f) + fabsf((float)code) * fabsf(s - s32) * 1.001f;
                }
            CHECK_MSG(exact && changed && within, "case %zu %s: exact %d changed %d within the bound %d", c, t->name,
                      exact, changed, within);
            qart_stored_release(&st);
            memcpy(m->params + t->offset, o, t->numel * sizeof *o);
        }
        bert_qmodel_free(q2);
        st_release(&f);
    }
    /* declared int8, but the position embeddings left F32 */
    snprintf(meta, sizeof meta, m3, 3, "f32", "int8", 0, "true");
    CHECK_OK(load_flags(m, q, SER_EMB_ALL | SER_POS_F32, meta, &q2, &f, &e), e);
    CHECK(qart_load_rest(&f, m, "model 'x'", &e) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(e.msg, "'bert.embeddings.position_embeddings.weight' is stored F32");
    bert_qmodel_free(q2);
    st_release(&f);
    /* format 2 "int8" is the word embeddings only: a quantized position table is undeclared */
    snprintf(meta, sizeof meta, m3, 2, "f32", "int8", 0, "true");
    CHECK_OK(load_flags(m, q, SER_EMB_ALL, meta, &q2, &f, &e), e);
    CHECK(qart_load_rest(&f, m, "model 'x'", &e) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(e.msg, "'bert.embeddings.position_embeddings.weight' is stored I8");
    bert_qmodel_free(q2);
    st_release(&f);
    /* uint4 embeddings in format 2, a bad embedding group */
    snprintf(meta, sizeof meta, m3, 2, "f32", "uint4", 32, "false");
    CHECK(load_flags(m, q, SER_EMB_ALL | SER_EMB_U4, meta, &q2, &f, &e) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(e.msg, "embeddings 'uint4' is not fp32 or int8 (format version 2)");
    st_release(&f);
    snprintf(meta, sizeof meta, m3, 3, "f32", "uint4", 48, "false");
    CHECK(load_flags(m, q, SER_EMB_ALL | SER_EMB_U4, meta, &q2, &f, &e) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(e.msg, "embedding_group 48 is not 32, 64 or 128");
    st_release(&f);
    /* declared group 64, stored 32: the scale shape is refused */
    snprintf(meta, sizeof meta, m3, 3, "f32", "uint4", 64, "false");
    CHECK_OK(load_flags(m, q, SER_EMB_ALL | SER_EMB_U4, meta, &q2, &f, &e), e);
    CHECK(qart_load_rest(&f, m, "model 'x'", &e) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(e.msg, "word_embeddings.weight_scale");
    bert_qmodel_free(q2);
    st_release(&f);
    /* a zero point of 16 in the token-type table */
    snprintf(meta, sizeof meta, m3, 3, "f32", "uint4", 32, "false");
    CHECK_OK(load_flags(m, q, SER_EMB_ALL | SER_EMB_U4, meta, &q2, &f, &e), e);
    ((uint8_t *)st_find(&f, QART_TYPE_EMB "_zero")->data)[1] = 16;
    CHECK(qart_load_rest(&f, m, "model 'x'", &e) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(e.msg, "'bert.embeddings.token_type_embeddings.weight_zero' row 0 holds 16");
    bert_qmodel_free(q2);
    st_release(&f);
    for (int k = 0; k < QART_NEMB; k++) {
        const bert_tensor *t = bert_find_tensor(m, qart_emb_names[k]);
        memcpy(m->params + t->offset, orig + off[k], t->numel * sizeof *orig);
    }
    free(orig);
}

int main(void)
{
    test_f16();
    bert_model *m = model();
    test_v2(m);
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
            serialize(m, q, 0, "{\"format\":\"flow-quant\",\"version\":4,\"scheme\":\"uint4\",\"group\":32}", NULL, &nb);
            CHECK(load(m, nb.data, nb.len, &q2, &f, &e, NULL) == FLOW_E_CORRUPT);
            CHECK_CONTAINS(e.msg, "version 4");
            st_release(&f);
            buf_release(&nb);
        }
        if (c == 0) {
            CHECK(load(m, buf.data, buf.len, &q2, &f, &e, set_m128) == FLOW_E_CORRUPT);
            CHECK_CONTAINS(e.msg, "-128");
            CHECK_CONTAINS(e.msg, "model 'x': bert.encoder.layer.0.attention.self.query.weight");
            st_release(&f);
        }
        buf_release(&buf);
        bert_qmodel_free(q);
    }
    bert_model_free(m);
    return test_summary("qartifact_test");
}
