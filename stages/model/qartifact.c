/* qartifact.c — quantized encoder Linears (and optionally int8 or 4-bit
 * embedding tables) in a model artifact's safetensors weights: from
 * prepared weights to stored tensors (qart_export, qart_embed,
 * qart_stored_f16, qart_add) and back, validated (qart_load,
 * qart_load_rest).  Format in qartifact.h. */
#include "stages/model/qartifact.h"

#include <stdlib.h>
#include <string.h>

static const char *const lin_suffix[BERT_LIN_COUNT] = {
    "attention.self.query.weight", "attention.output.dense.weight",
    "intermediate.dense.weight", "output.dense.weight",
};
const char *const qart_emb_names[QART_NEMB] = { QART_WORD_EMB, QART_POS_EMB, QART_TYPE_EMB };

static const char *const qkv_suffix[3] = {
    "attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
};

void qart_weight_name(int l, int which, int part, char *out, size_t cap)
{
    snprintf(out, cap, "bert.encoder.layer.%d.%s", l, which == BERT_LIN_QKV ? qkv_suffix[part] : lin_suffix[which]);
}

void qart_stored_release(qart_stored *s)
{
    if (!s) return;
    free(s->codes); free(s->scale); free(s->zero); free(s->scale16);
    memset(s, 0, sizeof *s);
}

uint16_t qart_f16_from_f32(float x)
{
    uint32_t b;
    memcpy(&b, &x, 4);
    uint32_t sign = (b >> 16) & 0x8000u, mant = b & 0x7fffffu;
    int exp = (int)((b >> 23) & 0xff);
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0));
    int e = exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);             /* overflow: inf */
    if (e <= 0) {                                               /* subnormal half */
        if (e < -10) return (uint16_t)sign;
        mant |= 0x800000u;
        int shift = 14 - e;                                     /* 14..24 */
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = sign | ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;     /* a carry into the exponent is right */
    return (uint16_t)h;
}

float qart_f32_from_f16(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 31, mant = h & 0x3ffu, b;
    if (exp == 0) {
        float v = (float)mant * 0x1p-24f;                       /* zero or subnormal, exact */
        return sign ? -v : v;
    }
    if (exp == 31) b = sign | 0x7f800000u | (mant << 13);
    else b = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    float v;
    memcpy(&v, &b, 4);
    return v;
}

int qart_embed(const float *W, int R, int H, quant_kind kind, int group, int sym, qart_stored *s, flow_err *e)
{
    memset(s, 0, sizeof *s);
    if (kind != QUANT_KIND_INT8 && (kind != QUANT_KIND_UINT4 || group <= 0 || H % group))
        return flow_fail(e, FLOW_E_PARAM, "embeddings [%d, %d]: %s with group %d is not an embedding format "
                         "(int8, or uint4 with a group dividing %d)", R, H, quant_kind_name(kind), group, H);
    int G = kind == QUANT_KIND_INT8 ? 1 : H / group;
    s->kind = kind; s->N = R; s->K = H; s->sym = kind == QUANT_KIND_INT8 || sym;
    s->group = kind == QUANT_KIND_INT8 ? 0 : group;
    s->codes = malloc(kind == QUANT_KIND_INT8 ? (size_t)R * H : (size_t)R * H / 2);
    s->scale = malloc((size_t)R * G * sizeof(float));
    if (kind == QUANT_KIND_UINT4 && !sym) s->zero = malloc((size_t)R * G);
    if (!s->codes || !s->scale || (kind == QUANT_KIND_UINT4 && !sym && !s->zero)) {
        qart_stored_release(s);
        return flow_fail(e, FLOW_E_NOMEM, "embeddings: out of memory");
    }
    if (kind == QUANT_KIND_INT8) quant_int8_rtn(W, R, H, (int8_t *)s->codes, s->scale);
    else quant_u4_rtn(W, R, H, group, sym, s->codes, s->scale, s->zero);
    return 0;
}

static size_t scale_count(const qart_stored *s)
{
    return s->kind == QUANT_KIND_INT8 ? (size_t)s->N : (size_t)s->N * (size_t)(s->K / s->group);
}

int qart_stored_f16(qart_stored *s, const char *name, flow_err *e)
{
    size_t n = scale_count(s);
    s->scale16 = malloc(n * sizeof *s->scale16);
    if (!s->scale16) return flow_fail(e, FLOW_E_NOMEM, "%s: out of memory", name);
    for (size_t i = 0; i < n; i++) {
        float v = s->scale[i], r = qart_f32_from_f16(s->scale16[i] = qart_f16_from_f32(v));
        if (!(r <= 65504.0f) || (v > 0 && (v - r > v * 0x1p-10f || r - v > v * 0x1p-10f)))
            return flow_fail(e, FLOW_E_PARAM, "%s: scale %d is %g, which F16 cannot hold (closest %g); "
                             "use scales = f32", name, (int)i, (double)v, (double)r);
    }
    return 0;
}

int qart_export(const quant_weight *w, int r0, int N, int sym, qart_stored *s, flow_err *e)
{
    memset(s, 0, sizeof *s);
    s->kind = w->kind; s->N = N; s->K = w->K; s->group = w->group; s->sym = sym;
    int K = w->K, G = w->G;
    if (w->kind == QUANT_KIND_INT8) {
        s->codes = malloc((size_t)N * K);
        s->scale = malloc((size_t)N * sizeof(float));
        if (!s->codes || !s->scale) goto nomem;
        for (int n = 0; n < N; n++) {
            for (int k = 0; k < K; k++) ((int8_t *)s->codes)[(size_t)n * K + k] = (int8_t)quant_weight_int8_at(w, r0 + n, k);
            s->scale[n] = w->scale[r0 + n];
        }
        return 0;
    }
    s->codes = malloc((size_t)N * K / 2);
    s->scale = malloc((size_t)N * G * sizeof(float));
    if (!s->codes || !s->scale) goto nomem;
    for (int n = 0; n < N; n++) {
        quant_weight_4bit_row(w, r0 + n, (uint8_t *)s->codes + (size_t)n * (K / 2));
        for (int j = 0; j < G; j++) s->scale[(size_t)n * G + j] = quant_weight_scale_at(w, r0 + n, j);
    }
    if (w->kind == QUANT_KIND_UINT4 && !sym) {
        s->zero = malloc((size_t)N * G);
        if (!s->zero) goto nomem;
        for (int n = 0; n < N; n++)
            for (int j = 0; j < G; j++) s->zero[(size_t)n * G + j] = (uint8_t)quant_weight_zero_at(w, r0 + n, j);
    }
    if (w->kind == QUANT_KIND_NF4) memcpy(s->codebook, w->codebook, 16);
    return 0;
nomem:
    qart_stored_release(s);
    return flow_fail(e, FLOW_E_NOMEM, "quantized weights: out of memory");
}

void qart_add(st_file *f, const char *name, const qart_stored *s)
{
    char n[320];
    int G = s->group ? s->K / s->group : 1;
    if (s->kind == QUANT_KIND_INT8) {
        int64_t sh[2] = { s->N, s->K }, ss[1] = { s->N };
        st_add(f, name, ST_I8, 2, sh, s->codes);
        snprintf(n, sizeof n, "%s_scale", name);
        st_add(f, n, s->scale16 ? ST_F16 : ST_F32, 1, ss, s->scale16 ? (const void *)s->scale16 : s->scale);
        return;
    }
    int64_t sh[2] = { s->N, s->K / 2 }, sg[2] = { s->N, G }, sc[1] = { 16 };
    st_add(f, name, ST_U8, 2, sh, s->codes);
    snprintf(n, sizeof n, "%s_scale", name);
    st_add(f, n, s->scale16 ? ST_F16 : ST_F32, 2, sg, s->scale16 ? (const void *)s->scale16 : s->scale);
    if (s->zero) {
        snprintf(n, sizeof n, "%s_zero", name);
        st_add(f, n, ST_U8, 2, sg, s->zero);
    }
    if (s->kind == QUANT_KIND_NF4) {
        snprintf(n, sizeof n, "%s_codebook", name);
        st_add(f, n, ST_I8, 1, sc, s->codebook);
    }
}

size_t qart_bytes(const qart_stored *s)
{
    size_t N = (size_t)s->N, K = (size_t)s->K, sc = scale_count(s) * (s->scale16 ? 2 : 4);
    if (s->kind == QUANT_KIND_INT8) return N * K + sc;
    return N * K / 2 + sc + (s->zero ? scale_count(s) : 0) + (s->kind == QUANT_KIND_NF4 ? 16 : 0);
}

int qart_is_quantized(const st_file *f, const char *name)
{
    const st_tensor *t = st_find(f, name);
    return t && (t->dtype == ST_I8 || t->dtype == ST_U8);
}

/* A tensor of exact dtype and shape, or FLOW_E_CORRUPT naming it. */
static const void *need(const st_file *f, const char *name, st_dtype dt, int ndim, const int64_t *shape,
                        const char *what, flow_err *e, int *rc)
{
    const st_tensor *t = st_find(f, name);
    if (!t) { *rc = flow_fail(e, FLOW_E_CORRUPT, "%s: quantized weights lack tensor '%s'", what, name); return NULL; }
    int ok = t->dtype == dt && t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        *rc = flow_fail(e, FLOW_E_CORRUPT, "%s: tensor '%s' is %s with %d dims (first %lld), expected %s [%lld%s%lld]",
                        what, name, st_dtype_name(t->dtype), t->ndim, t->ndim ? (long long)t->shape[0] : 0LL,
                        st_dtype_name(dt), (long long)shape[0], ndim > 1 ? ", " : "", ndim > 1 ? (long long)shape[1] : 0LL);
        return NULL;
    }
    return t->data;
}

/* Reads the stored weight NAME ([N, K] of scheme) into v (pointers into f);
 * sdt is the scale dtype (F32 or F16). */
typedef struct qart_view { const void *codes; const void *scale; const uint8_t *zero; const int8_t *cb; } qart_view;

static int view_one(const st_file *f, const char *name, quant_kind kind, int sym, st_dtype sdt, int N, int K, int g,
                    qart_view *v, const char *what, flow_err *e)
{
    char n[320];
    int rc = 0, G = kind == QUANT_KIND_INT8 ? 1 : K / g;
    memset(v, 0, sizeof *v);
    if (kind == QUANT_KIND_INT8) {
        int64_t sh[2] = { N, K }, ss[1] = { N };
        v->codes = need(f, name, ST_I8, 2, sh, what, e, &rc);
        snprintf(n, sizeof n, "%s_scale", name);
        if (!rc) v->scale = need(f, n, sdt, 1, ss, what, e, &rc);
        return rc;
    }
    int64_t sh[2] = { N, K / 2 }, sg[2] = { N, G }, sc[1] = { 16 };
    v->codes = need(f, name, ST_U8, 2, sh, what, e, &rc);
    snprintf(n, sizeof n, "%s_scale", name);
    if (!rc) v->scale = need(f, n, sdt, 2, sg, what, e, &rc);
    snprintf(n, sizeof n, "%s_zero", name);
    if (!rc && kind == QUANT_KIND_UINT4 && !sym) v->zero = need(f, n, ST_U8, 2, sg, what, e, &rc);
    snprintf(n, sizeof n, "%s_codebook", name);
    if (!rc && kind == QUANT_KIND_NF4) v->cb = need(f, n, ST_I8, 1, sc, what, e, &rc);
    return rc;
}

/* n scales of dtype sdt at src as F32 into dst. */
static void scales_f32(float *dst, const void *src, st_dtype sdt, size_t n)
{
    if (sdt == ST_F32) { memcpy(dst, src, n * sizeof(float)); return; }
    const unsigned char *b = src;               /* little-endian F16 */
    for (size_t i = 0; i < n; i++) dst[i] = qart_f32_from_f16((uint16_t)(b[2 * i] | b[2 * i + 1] << 8));
}

/* What the metadata says (validated). */
typedef struct qart_meta {
    quant_kind kind;
    int sym, group, version;
    st_dtype sdt;
    quant_kind emb_kind;        /* 0: fp32 embeddings */
    int emb_n;                  /* how many of qart_emb_names are quantized (v2 int8: the word embeddings) */
    int emb_group, emb_sym;     /* uint4 embeddings */
} qart_meta;

static int read_meta(const st_file *f, qart_meta *q, const char *what, flow_err *e)
{
    memset(q, 0, sizeof *q);
    const char *meta = st_meta(f, "quantization");
    if (!meta) return flow_fail(e, FLOW_E_CORRUPT, "%s: weights have no 'quantization' metadata", what);
    json_value *j;
    char w2[256];
    snprintf(w2, sizeof w2, "%s: quantization metadata", what);
    int rc = json_parse(meta, strlen(meta), w2, &j, e);
    if (rc) return e ? (e->code = FLOW_E_CORRUPT) : FLOW_E_CORRUPT;   /* json_parse's message names it */
    const char *fmt = json_str(json_get(j, "format"), "");
    q->version = (int)json_num(json_get(j, "version"), -1);
    const char *scheme = json_str(json_get(j, "scheme"), "");
    q->sym = json_bool(json_get(j, "sym"), 0);
    q->group = (int)json_num(json_get(j, "group"), 0);
    q->kind = strcmp(scheme, "int8") == 0 ? QUANT_KIND_INT8 : strcmp(scheme, "uint4") == 0 ? QUANT_KIND_UINT4
            : strcmp(scheme, "nf4") == 0 ? QUANT_KIND_NF4 : 0;
    const char *scales = json_str(json_get(j, "scales"), q->version == 1 ? "f32" : "");
    const char *emb = json_str(json_get(j, "embeddings"), q->version == 1 ? "fp32" : "");
    q->sdt = strcmp(scales, "f16") == 0 ? ST_F16 : ST_F32;
    q->emb_kind = strcmp(emb, "int8") == 0 ? QUANT_KIND_INT8 : strcmp(emb, "uint4") == 0 ? QUANT_KIND_UINT4 : 0;
    q->emb_n = !q->emb_kind ? 0 : q->version == 2 ? 1 : QART_NEMB;
    q->emb_group = (int)json_num(json_get(j, "embedding_group"), 0);
    q->emb_sym = json_bool(json_get(j, "embedding_sym"), 0);
    if (strcmp(fmt, QART_FORMAT) != 0)
        rc = flow_fail(e, FLOW_E_CORRUPT, "%s: quantization format '%s' is not %s", what, fmt, QART_FORMAT);
    else if (q->version < 1 || q->version > QART_VERSION)
        rc = flow_fail(e, FLOW_E_CORRUPT, "%s: quantization format version %d, this flow reads versions 1..%d; "
                       "rebuild the quantize node", what, q->version, QART_VERSION);
    else if (!q->kind)
        rc = flow_fail(e, FLOW_E_CORRUPT, "%s: unknown quantization scheme '%s' (int8, uint4, nf4)", what, scheme);
    else if (q->kind != QUANT_KIND_INT8 && q->group != 32 && q->group != 64 && q->group != 128)
        rc = flow_fail(e, FLOW_E_CORRUPT, "%s: quantization group %d is not 32, 64 or 128", what, q->group);
    else if (strcmp(scales, "f32") && strcmp(scales, "f16"))
        rc = flow_fail(e, FLOW_E_CORRUPT, "%s: quantization scales '%s' is not f32 or f16", what, scales);
    else if (strcmp(emb, "fp32") && strcmp(emb, "int8") && (q->version < 3 || strcmp(emb, "uint4")))
        rc = flow_fail(e, FLOW_E_CORRUPT, "%s: quantization embeddings '%s' is not fp32 or int8%s", what, emb,
                       q->version < 3 ? " (format version 2)" : " or uint4");
    else if (q->emb_kind == QUANT_KIND_UINT4 && q->emb_group != 32 && q->emb_group != 64 && q->emb_group != 128)
        rc = flow_fail(e, FLOW_E_CORRUPT, "%s: quantization embedding_group %d is not 32, 64 or 128", what,
                       q->emb_group);
    json_free(j);
    return rc;
}

/* Builds the prepared weight of (l, which) from 1 (or 3, QKV) stored parts. */
static int load_linear(const st_file *f, int l, int which, const qart_meta *qm, int OC, int IC, quant_weight *w,
                       const char *what, flow_err *e)
{
    quant_kind kind = qm->kind;
    int sym = qm->sym, group = qm->group;
    int parts = which == BERT_LIN_QKV ? 3 : 1, Np = OC / parts, G = kind == QUANT_KIND_INT8 ? 1 : IC / group;
    size_t cb = kind == QUANT_KIND_INT8 ? (size_t)IC : (size_t)IC / 2;
    uint8_t *codes = malloc((size_t)OC * cb), *zero = malloc((size_t)OC * G);
    float *scale = malloc((size_t)OC * G * sizeof(float));
    int8_t L[16] = { 0 };
    int rc = 0;
    if (!codes || !zero || !scale) { rc = flow_fail(e, FLOW_E_NOMEM, "%s: out of memory", what); goto out; }
    char name[256];
    for (int p = 0; p < parts && !rc; p++) {
        qart_weight_name(l, which, p, name, sizeof name);
        qart_view v;
        if ((rc = view_one(f, name, kind, sym, qm->sdt, Np, IC, group, &v, what, e))) break;
        memcpy(codes + (size_t)p * Np * cb, v.codes, (size_t)Np * cb);
        scales_f32(scale + (size_t)p * Np * G, v.scale, qm->sdt, (size_t)Np * G);
        if (v.zero) memcpy(zero + (size_t)p * Np * G, v.zero, (size_t)Np * G);
        if (v.cb) {
            if (p > 0 && memcmp(L, v.cb, 16))
                rc = flow_fail(e, FLOW_E_CORRUPT, "%s: '%s' has another code book than the query weights", what, name);
            memcpy(L, v.cb, 16);
        }
    }
    if (rc) goto out;
    qart_weight_name(l, which, 0, name, sizeof name);
    if (kind == QUANT_KIND_INT8) rc = quant_weight_init_int8(w, OC, IC, (const int8_t *)codes, scale, name, e);
    else if (kind == QUANT_KIND_NF4) rc = quant_weight_init_nf4(w, OC, IC, group, codes, scale, L, name, e);
    else rc = quant_weight_init_u4(w, OC, IC, group, codes, scale, sym ? NULL : zero, name, e);
    if (rc && e) {                              /* (a copy: flow_fail writes e->msg) */
        char why[sizeof e->msg];
        snprintf(why, sizeof why, "%s", e->msg);
        flow_fail(e, rc, "%s: %s", what, why);
    }
out:
    free(codes); free(zero); free(scale);
    return rc;
}

int qart_load(const st_file *f, const bert_config *cfg, bert_qmodel **out, unsigned char *quantized,
              const char *what, flow_err *e)
{
    *out = NULL;
    qart_meta qm;
    int rc = read_meta(f, &qm, what, e);
    if (rc) return rc;
    bert_qmodel *q = bert_qmodel_new(cfg->layers);
    if (!q) return flow_fail(e, FLOW_E_NOMEM, "%s: out of memory", what);
    if (quantized) memset(quantized, 0, (size_t)BERT_MAX_LAYERS * BERT_LIN_COUNT);
    for (int l = 0; l < cfg->layers && !rc; l++) {
        int H = cfg->hidden, A = bert_attn_width(cfg, l), I = cfg->ffn[l];
        int OC[BERT_LIN_COUNT] = { 3 * A, H, I, H }, IC[BERT_LIN_COUNT] = { H, A, H, I };
        for (int w = 0; w < BERT_LIN_COUNT && !rc; w++) {
            char name[256];
            int any = 0;                        /* QKV: any of the three parts */
            for (int p = 0; p < (w == BERT_LIN_QKV ? 3 : 1); p++) {
                qart_weight_name(l, w, p, name, sizeof name);
                any |= qart_is_quantized(f, name);
            }
            if (!any) continue;                 /* load_linear refuses a part left F32 */
            quant_weight qw;
            if ((rc = load_linear(f, l, w, &qm, OC[w], IC[w], &qw, what, e))) break;
            bert_qmodel_set(q, l, w, &qw);
            if (quantized) quantized[l * BERT_LIN_COUNT + w] = 1;
        }
    }
    if (rc) { bert_qmodel_free(q); return rc; }
    *out = q;
    return 0;
}

/* 1 when name is an encoder Linear weight of cfg. */
static int is_linear_weight(const bert_config *cfg, const char *name)
{
    char n[256];
    for (int l = 0; l < cfg->layers; l++)
        for (int w = 0; w < BERT_LIN_COUNT; w++)
            for (int p = 0; p < (w == BERT_LIN_QKV ? 3 : 1); p++) {
                qart_weight_name(l, w, p, n, sizeof n);
                if (strcmp(n, name) == 0) return 1;
            }
    return 0;
}

/* Index in qart_emb_names of name among the first n, else -1. */
static int emb_index(const char *name, int n)
{
    for (int i = 0; i < n; i++) if (strcmp(name, qart_emb_names[i]) == 0) return i;
    return -1;
}

/* Reads, validates and expands one declared embedding table into m. */
static int load_embedding(const st_file *f, bert_model *m, const char *name, const qart_meta *qm, const char *what,
                          flow_err *e)
{
    const bert_tensor *t = bert_find_tensor(m, name);
    if (!t) return flow_fail(e, FLOW_E_CORRUPT, "%s: the quantization metadata declares '%s', which the model "
                             "has not", what, name);
    int R = t->shape[0], H = t->shape[1], uint4 = qm->emb_kind == QUANT_KIND_UINT4, g = uint4 ? qm->emb_group : 0;
    if (uint4 && H % g)
        return flow_fail(e, FLOW_E_CORRUPT, "%s: embedding_group %d does not divide the hidden size %d", what, g, H);
    const st_tensor *st = st_find(f, name);
    if (st && st->dtype == ST_F32)
        return flow_fail(e, FLOW_E_CORRUPT, "%s: '%s' is stored F32, but the quantization metadata says the "
                         "embeddings are %s; rebuild the quantize node", what, name, quant_kind_name(qm->emb_kind));
    qart_view v;
    int rc = view_one(f, name, qm->emb_kind, qm->emb_sym, qm->sdt, R, H, g, &v, what, e);
    if (rc) return rc;
    int G = uint4 ? H / g : 1;
    float *sc = malloc((size_t)R * G * sizeof *sc), *dst = m->params + t->offset;
    if (!sc) return flow_fail(e, FLOW_E_NOMEM, "%s: out of memory", what);
    scales_f32(sc, v.scale, qm->sdt, (size_t)R * G);
    for (size_t i = 0; i < (size_t)R * G && !rc; i++)
        if (!(sc[i] >= 0.0f && sc[i] <= 3.4e38f))
            rc = flow_fail(e, FLOW_E_CORRUPT, "%s: '%s_scale' row %d is %g (scales are finite and >= 0)", what, name,
                           (int)(i / G), (double)sc[i]);
    for (size_t i = 0; uint4 && v.zero && i < (size_t)R * G && !rc; i++)
        if (v.zero[i] > 15)
            rc = flow_fail(e, FLOW_E_CORRUPT, "%s: '%s_zero' row %d holds %d (zero points are 0..15)", what, name,
                           (int)(i / G), v.zero[i]);
    if (!rc && uint4) quant_u4_dequant(v.codes, sc, v.zero, R, H, g, dst);
    const int8_t *q = v.codes;
    for (int r = 0; r < R && !rc && !uint4; r++)
        for (int k = 0; k < H && !rc; k++) {
            int8_t c = q[(size_t)r * H + k];
            if (c == -128)
                rc = flow_fail(e, FLOW_E_CORRUPT, "%s: '%s' row %d holds -128 (codes are -127..127)", what, name, r);
            dst[(size_t)r * H + k] = sc[r] * (float)c;
        }
    free(sc);
    return rc;
}

int qart_load_rest(const st_file *f, bert_model *m, const char *what, flow_err *e)
{
    qart_meta qm;
    int rc = read_meta(f, &qm, what, e);
    if (rc) return rc;
    for (int i = 0; i < m->ntensors; i++) {
        const bert_tensor *t = &m->tensors[i];
        if (!qart_is_quantized(f, t->name) || is_linear_weight(&m->cfg, t->name)) continue;
        if (emb_index(t->name, qm.emb_n) < 0)
            return flow_fail(e, FLOW_E_CORRUPT, "%s: tensor '%s' is stored %s, but the quantization metadata "
                             "quantizes only %s; rebuild the quantize node", what, t->name,
                             st_dtype_name(st_find(f, t->name)->dtype),
                             qm.emb_n == QART_NEMB ? "encoder Linear weights and the embeddings"
                             : qm.emb_n ? "encoder Linear weights and the word embeddings" : "encoder Linear weights");
    }
    for (int i = 0; i < qm.emb_n && !rc; i++) rc = load_embedding(f, m, qart_emb_names[i], &qm, what, e);
    return rc;
}
