/* qartifact.c — quantized encoder Linears in a model artifact's safetensors
 * weights: from prepared weights to stored tensors (qart_export, qart_add)
 * and back, validated (qart_load).  Format in qartifact.h. */
#include "stages/model/qartifact.h"

#include <stdlib.h>
#include <string.h>

static const char *const lin_suffix[BERT_LIN_COUNT] = {
    "attention.self.query.weight", "attention.output.dense.weight",
    "intermediate.dense.weight", "output.dense.weight",
};
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
    free(s->codes); free(s->scale); free(s->zero);
    memset(s, 0, sizeof *s);
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
            memcpy((int8_t *)s->codes + (size_t)n * K, w->q8 + (size_t)(r0 + n) * w->Kp, (size_t)K);
            s->scale[n] = w->scale[r0 + n];
        }
        return 0;
    }
    s->codes = malloc((size_t)N * K / 2);
    s->scale = malloc((size_t)N * G * sizeof(float));
    if (!s->codes || !s->scale) goto nomem;
    memcpy(s->codes, w->q4 + (size_t)r0 * (K / 2), (size_t)N * K / 2);
    for (int n = 0; n < N; n++)
        for (int j = 0; j < G; j++) s->scale[(size_t)n * G + j] = w->scale[(size_t)j * w->N + r0 + n];
    if (w->kind == QUANT_KIND_UINT4 && !sym) {
        s->zero = malloc((size_t)N * G);
        if (!s->zero) goto nomem;
        for (int n = 0; n < N; n++)
            for (int j = 0; j < G; j++) s->zero[(size_t)n * G + j] = (uint8_t)w->zero[(size_t)j * w->N + r0 + n];
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
        st_add(f, n, ST_F32, 1, ss, s->scale);
        return;
    }
    int64_t sh[2] = { s->N, s->K / 2 }, sg[2] = { s->N, G }, sc[1] = { 16 };
    st_add(f, name, ST_U8, 2, sh, s->codes);
    snprintf(n, sizeof n, "%s_scale", name);
    st_add(f, n, ST_F32, 2, sg, s->scale);
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
    size_t N = (size_t)s->N, K = (size_t)s->K, G = s->group ? K / s->group : 1;
    if (s->kind == QUANT_KIND_INT8) return N * K + N * 4;
    return N * K / 2 + N * G * 4 + (s->zero ? N * G : 0) + (s->kind == QUANT_KIND_NF4 ? 16 : 0);
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

/* Reads the stored weight NAME ([N, K] of scheme) into s (pointers into f). */
typedef struct qart_view { const void *codes; const float *scale; const uint8_t *zero; const int8_t *cb; } qart_view;

static int view_one(const st_file *f, const char *name, quant_kind kind, int sym, int N, int K, int g,
                    qart_view *v, const char *what, flow_err *e)
{
    char n[320];
    int rc = 0, G = kind == QUANT_KIND_INT8 ? 1 : K / g;
    memset(v, 0, sizeof *v);
    if (kind == QUANT_KIND_INT8) {
        int64_t sh[2] = { N, K }, ss[1] = { N };
        v->codes = need(f, name, ST_I8, 2, sh, what, e, &rc);
        snprintf(n, sizeof n, "%s_scale", name);
        if (!rc) v->scale = need(f, n, ST_F32, 1, ss, what, e, &rc);
        return rc;
    }
    int64_t sh[2] = { N, K / 2 }, sg[2] = { N, G }, sc[1] = { 16 };
    v->codes = need(f, name, ST_U8, 2, sh, what, e, &rc);
    snprintf(n, sizeof n, "%s_scale", name);
    if (!rc) v->scale = need(f, n, ST_F32, 2, sg, what, e, &rc);
    snprintf(n, sizeof n, "%s_zero", name);
    if (!rc && kind == QUANT_KIND_UINT4 && !sym) v->zero = need(f, n, ST_U8, 2, sg, what, e, &rc);
    snprintf(n, sizeof n, "%s_codebook", name);
    if (!rc && kind == QUANT_KIND_NF4) v->cb = need(f, n, ST_I8, 1, sc, what, e, &rc);
    return rc;
}

/* Builds the prepared weight of (l, which) from 1 (or 3, QKV) stored parts. */
static int load_linear(const st_file *f, int l, int which, quant_kind kind, int sym, int group,
                       int OC, int IC, quant_weight *w, const char *what, flow_err *e)
{
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
        if ((rc = view_one(f, name, kind, sym, Np, IC, group, &v, what, e))) break;
        memcpy(codes + (size_t)p * Np * cb, v.codes, (size_t)Np * cb);
        memcpy(scale + (size_t)p * Np * G, v.scale, (size_t)Np * G * sizeof(float));
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
    if (rc) rc = flow_fail(e, rc, "%s: %s", what, e ? e->msg : "bad quantized tensor");
out:
    free(codes); free(zero); free(scale);
    return rc;
}

int qart_load(const st_file *f, const bert_config *cfg, bert_qmodel **out, unsigned char *quantized,
              const char *what, flow_err *e)
{
    *out = NULL;
    const char *meta = st_meta(f, "quantization");
    if (!meta) return flow_fail(e, FLOW_E_CORRUPT, "%s: weights have no 'quantization' metadata", what);
    json_value *j;
    char w2[256];
    snprintf(w2, sizeof w2, "%s: quantization metadata", what);
    int rc = json_parse(meta, strlen(meta), w2, &j, e);
    if (rc) return flow_fail(e, FLOW_E_CORRUPT, "%s", e ? e->msg : "bad quantization metadata");
    const char *fmt = json_str(json_get(j, "format"), "");
    int version = (int)json_num(json_get(j, "version"), -1);
    const char *scheme = json_str(json_get(j, "scheme"), "");
    int sym = json_bool(json_get(j, "sym"), 0), group = (int)json_num(json_get(j, "group"), 0);
    quant_kind kind = strcmp(scheme, "int8") == 0 ? QUANT_KIND_INT8 : strcmp(scheme, "uint4") == 0 ? QUANT_KIND_UINT4
                    : strcmp(scheme, "nf4") == 0 ? QUANT_KIND_NF4 : 0;
    if (strcmp(fmt, QART_FORMAT) != 0)
        rc = flow_fail(e, FLOW_E_CORRUPT, "%s: quantization format '%s' is not %s", what, fmt, QART_FORMAT);
    else if (version != QART_VERSION)
        rc = flow_fail(e, FLOW_E_CORRUPT, "%s: quantization format version %d, this flow reads version %d; "
                       "rebuild the quantize node", what, version, QART_VERSION);
    else if (!kind)
        rc = flow_fail(e, FLOW_E_CORRUPT, "%s: unknown quantization scheme '%s' (int8, uint4, nf4)", what, scheme);
    else if (kind != QUANT_KIND_INT8 && group != 32 && group != 64 && group != 128)
        rc = flow_fail(e, FLOW_E_CORRUPT, "%s: quantization group %d is not 32, 64 or 128", what, group);
    json_free(j);
    if (rc) return rc;
    bert_qmodel *q = bert_qmodel_new(cfg->layers);
    if (!q) return flow_fail(e, FLOW_E_NOMEM, "%s: out of memory", what);
    if (quantized) memset(quantized, 0, (size_t)BERT_MAX_LAYERS * BERT_LIN_COUNT);
    for (int l = 0; l < cfg->layers && !rc; l++) {
        int H = cfg->hidden, A = bert_attn_width(cfg, l), I = cfg->ffn[l];
        int OC[BERT_LIN_COUNT] = { 3 * A, H, I, H }, IC[BERT_LIN_COUNT] = { H, A, H, I };
        for (int w = 0; w < BERT_LIN_COUNT && !rc; w++) {
            char name[256];
            qart_weight_name(l, w, 0, name, sizeof name);
            if (!qart_is_quantized(f, name)) continue;
            quant_weight qw;
            if ((rc = load_linear(f, l, w, kind, sym, group, OC[w], IC[w], &qw, what, e))) break;
            bert_qmodel_set(q, l, w, &qw);
            if (quantized) quantized[l * BERT_LIN_COUNT + w] = 1;
        }
    }
    if (rc) { bert_qmodel_free(q); return rc; }
    *out = q;
    return 0;
}
