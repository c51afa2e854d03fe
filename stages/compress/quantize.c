/* quantize.c — the `quantize` stage: a bert-cls model artifact in, the same
 * model with its encoder Linear weights in int8 (per output channel,
 * symmetric) or 4-bit (group-wise uniform with scale and zero, or an NF4
 * code book), out.  Round to nearest, or GPTQ with Hessians from
 * `calibration_sequences` units of the calibration corpus chosen by seed.
 * The artifact runs on the integer kernels in evaluate, flow classify and
 * flow eval (stages/model/clf_bert.c); its format is in qartifact.h.
 *
 * Policy: `policy = encoder` quantizes every encoder Linear weight (none:
 * everything stays fp32); `embeddings = int8` adds the three embedding
 * tables (word, position, token type), int8 per row, and `embeddings =
 * uint4` the same in 4 bits per row with the node's `group` and `sym`
 * (round to nearest: a lookup has no Hessian); LayerNorm, biases, pooler
 * and classifier stay fp32.  `scales = f16` stores every scale as F16.  The report and the
 * metrics say what was quantized, the format, bits per weight and bytes
 * by tensor class (flow show prints both).
 *
 * Bytes: RTN output depends only on the model; GPTQ's also on the
 * calibration Hessians, which come from the fp32 forward (the same bits for
 * any thread count, README "Threads") and gptq_hessian_add (fixed order).
 *
 * Checks before any work: bits and group at graph load (their choices),
 * then at node start, once the model is known, that the group divides
 * every Linear's input width and that GPTQ has calibration data.
 */
#include "stages/model/clf_internal.h"
#include "stages/model/clf_bert.h"
#include "stages/model/qartifact.h"

#include <stdlib.h>
#include <string.h>

static const flow_param_def quantize_params[] = {
    { "bits", FLOW_P_INT, 0, "8", 4, 8, "4|8", "8: int8 per output channel; 4: group-wise 4-bit" },
    { "group", FLOW_P_INT, 0, "64", 32, 128, "32|64|128", "4-bit: weights per scale along the input width (and along the hidden size for embeddings = uint4)" },
    { "sym", FLOW_P_BOOL, 0, "false", 1, 0, NULL, "4-bit uniform: zero fixed at 8 (no zeros stored)" },
    { "codebook", FLOW_P_STRING, 0, "uniform", 1, 0, "uniform|nf4", "4-bit levels: uniform, or NF4 fitted per tensor" },
    { "method", FLOW_P_STRING, 0, "gptq", 1, 0, "gptq|rtn", "gptq: error compensation from calibration; rtn: round to nearest" },
    { "act_order", FLOW_P_BOOL, 0, "false", 1, 0, NULL, "GPTQ: columns by decreasing Hessian diagonal (static groups)" },
    { "damp", FLOW_P_FLOAT, 0, "0.01", 0, 1, NULL, "GPTQ: damping, a fraction of the mean Hessian diagonal" },
    { "calibration_sequences", FLOW_P_INT, 0, "128", 1, 1e6, NULL, "GPTQ: units of the calibration corpus used" },
    { "seed", FLOW_P_INT, 0, "1", 0, 1e15, NULL, "which calibration units" },
    { "policy", FLOW_P_STRING, 0, "encoder", 1, 0, "encoder|none",
      "encoder: every encoder Linear weight; none: keep everything fp32. LayerNorm, biases, pooler, classifier stay fp32" },
    { "embeddings", FLOW_P_STRING, 0, "fp32", 1, 0, "fp32|int8|uint4",
      "word, position and token-type embeddings: fp32, int8 per row (symmetric), or uint4 per row (groups of `group`, `sym`)" },
    { "scales", FLOW_P_STRING, 0, "f32", 1, 0, "f32|f16", "dtype of the stored scales" },
};

static const flow_input_def quantize_inputs[] = {
    { "model", 0, 0, "a bert-cls model artifact (finetune)" },
    { "calibration", 1, 0, "corpus whose units calibrate GPTQ (split.train)" },
};

static const flow_output_def quantize_outputs[] = {
    { "model.json", "the input's, plus the quantization settings" },
    { "weights", "safetensors: I8 / U8 codes, F32 or F16 scales, U8 zeros, F32 for the rest" },
    { "tokenizer", "the tokenizer parts (copied)" },
    { "clean.json", "cleaning settings (copied, when present)" },
};

typedef struct qopts {
    bert_qspec spec;
    const char *method, *policy, *scheme, *scales;
    int nseq, f16;
    quant_kind emb;                 /* 0: fp32 embeddings; QUANT_KIND_INT8 / QUANT_KIND_UINT4 */
    uint64_t seed;
} qopts;

/* Widths a group must divide, checked before any work. */
static int check_widths(flow_ctx *c, const bert_config *cfg, int group)
{
    static const char *names[BERT_LIN_COUNT] = { "attention.self (query/key/value)", "attention.output.dense",
                                                 "intermediate.dense", "output.dense" };
    for (int l = 0; l < cfg->layers; l++) {
        int IC[BERT_LIN_COUNT] = { cfg->hidden, bert_attn_width(cfg, l), cfg->hidden, cfg->ffn[l] };
        for (int w = 0; w < BERT_LIN_COUNT; w++)
            if (IC[w] % group)
                return flow_ctx_fail(c, FLOW_E_PARAM, "group %d does not divide the input width %d of layer %d %s; "
                                     "choose a group that divides it", group, IC[w], l, names[w]);
    }
    return 0;
}

/* Hessians of every encoder Linear from nseq calibration units (seeded). */
static int calibrate(flow_ctx *c, clf_model *m, const qopts *o, bert_calib *cal)
{
    corpus_view cv;
    int rc = cview_read(c, "calibration", 0, &cv);
    if (rc) return rc;
    if (cv.n == 0) { cview_release(&cv); return flow_ctx_fail(c, FLOW_E_INPUT, "input 'calibration' has no units"); }
    size_t n = (size_t)o->nseq < cv.n ? (size_t)o->nseq : cv.n;
    size_t *ord = xmalloc(cv.n * sizeof *ord);
    for (size_t i = 0; i < cv.n; i++) ord[i] = i;
    uint64_t st = o->seed;
    for (size_t i = 0; i < n; i++) {            /* partial Fisher-Yates */
        size_t j = i + (size_t)(splitmix64_next(&st) % (cv.n - i));
        size_t t = ord[i]; ord[i] = ord[j]; ord[j] = t;
    }
    struct clf_bert *cb = m->bert;
    int T = cb->max_len, Bmax = cb->model->max_B;
    int32_t *ids = xmalloc((size_t)Bmax * T * sizeof *ids), *mask = xmalloc((size_t)Bmax * T * sizeof *mask);
    int32_t *one = xmalloc((size_t)T * sizeof *one);
    long tokens = 0;
    flow_err err = { 0 };
    for (size_t s = 0; s < n && !rc; s += (size_t)Bmax) {
        int B = n - s < (size_t)Bmax ? (int)(n - s) : Bmax, maxl = 1;
        int lens[256];
        for (int r = 0; r < B; r++) {
            size_t u = ord[s + r];
            lens[r] = clf_bert_encode(m, cv.text[u], cv.len[u], one);
            memcpy(ids + (size_t)r * T, one, (size_t)lens[r] * sizeof *one);
            if (lens[r] > maxl) maxl = lens[r];
        }
        for (int r = 0; r < B; r++)             /* repack rows to stride maxl (in place: */
            for (int t = 0; t < maxl; t++) {    /* destinations never pass their sources) */
                int32_t v = t < lens[r] ? ids[(size_t)r * T + t] : TOK_PAD;
                ids[(size_t)r * maxl + t] = v;
                mask[(size_t)r * maxl + t] = t < lens[r];
                if (t < lens[r]) tokens++;
            }
        bert_batch bb = { .B = B, .T = maxl, .ids = ids, .attn_mask = mask };
        bert_output out;
        bert_calib_attach(cb->model, cal, &bb);
        rc = bert_forward(cb->model, &bb, BERT_HEAD_CLASSIFY, 0, &out, &err);
        bert_calib_attach(cb->model, NULL, NULL);
        if (rc) rc = flow_ctx_fail(c, rc, "calibration forward: %s", err.msg);
        flow_progress(c, 0.5 * (double)(s + B) / n, "calibration %zu/%zu units", s + B, n);
    }
    flow_log(c, "calibration: %zu units, %ld tokens (of %zu units; seed %llu)", n, tokens, cv.n,
             (unsigned long long)o->seed);
    flow_metric(c, "quant.calibration_units", (double)n);
    flow_metric(c, "quant.calibration_tokens", (double)tokens);
    free(ids); free(mask); free(one); free(ord);
    cview_release(&cv);
    return rc;
}

/* Byte counts by tensor class, for metrics and the report. */
typedef struct qsizes {
    double lin_q, lin_fp32, lin_params;     /* encoder Linear weights: as stored, as fp32, count */
    double emb, emb_fp32, other;            /* embeddings (word, position, type) as stored and as fp32; rest */
    double scales;                          /* of which scales, zeros and code books */
    int tensors;                            /* tensors stored quantized */
} qsizes;

static int is_embedding(const char *name) { return strstr(name, "embeddings.") && !strstr(name, "LayerNorm"); }

/* 1 for the embedding tables `embeddings` quantizes (qart_emb_names). */
static int is_table(const char *name)
{
    for (int k = 0; k < QART_NEMB; k++) if (strcmp(name, qart_emb_names[k]) == 0) return 1;
    return 0;
}

static const char *emb_name(const qopts *o)
{
    return o->emb == QUANT_KIND_INT8 ? "int8" : o->emb == QUANT_KIND_UINT4 ? "uint4" : "fp32";
}

/* Writes weights (quantized Linears + F32 rest) and fills sizes. */
static int write_weights(flow_ctx *c, bert_model *bm, bert_qmodel *q, const qopts *o, const char *qjson,
                         qsizes *sz)
{
    st_file f;
    st_init(&f);
    st_set_meta(&f, "format", "pt");
    st_set_meta(&f, "quantization", qjson);
    const bert_config *cfg = &bm->cfg;
    qart_stored *stored = xcalloc((size_t)cfg->layers * BERT_LIN_COUNT * 3 + QART_NEMB, sizeof *stored);
    int nst = 0, rc = 0;
    memset(sz, 0, sizeof *sz);
    flow_err err = { 0 };
    for (int i = 0; i < bm->ntensors && !rc; i++) {
        const bert_tensor *t = &bm->tensors[i];
        int l = -1, which = -1, part = 0;
        for (int ll = 0; ll < cfg->layers && which < 0; ll++)
            for (int w = 0; w < BERT_LIN_COUNT && which < 0; w++)
                for (int p = 0; p < (w == BERT_LIN_QKV ? 3 : 1); p++) {
                    char n[256];
                    qart_weight_name(ll, w, p, n, sizeof n);
                    if (strcmp(n, t->name) == 0) { l = ll; which = w; part = p; break; }
                }
        const quant_weight *qw = which >= 0 ? bert_qmodel_get(q, l, which) : NULL;
        if (which >= 0) { sz->lin_fp32 += 4.0 * t->numel; sz->lin_params += (double)t->numel; }
        if (is_embedding(t->name)) sz->emb_fp32 += 4.0 * t->numel;
        if (o->emb && is_table(t->name)) {          /* word, position, token type */
            qart_stored *s = &stored[nst++];
            rc = qart_embed(bm->params + t->offset, t->shape[0], t->shape[1], o->emb, o->spec.group, o->spec.sym,
                            s, &err);
            if (!rc && o->f16) rc = qart_stored_f16(s, t->name, &err);
            if (rc) { rc = flow_ctx_fail(c, rc, "%s", err.msg); break; }
            qart_add(&f, t->name, s);
            size_t codes = o->emb == QUANT_KIND_INT8 ? (size_t)s->N * s->K : (size_t)s->N * s->K / 2;
            sz->emb += (double)qart_bytes(s);
            sz->scales += (double)(qart_bytes(s) - codes);
            sz->tensors++;
            continue;
        }
        if (!qw) {
            int64_t dims[2] = { t->shape[0], t->shape[1] };
            st_add(&f, t->name, ST_F32, t->ndim, dims, bm->params + t->offset);
            if (which >= 0) sz->lin_q += 4.0 * t->numel;
            else if (is_embedding(t->name)) sz->emb += 4.0 * t->numel;
            else sz->other += 4.0 * t->numel;
            continue;
        }
        qart_stored *s = &stored[nst++];
        rc = qart_export(qw, part * t->shape[0], t->shape[0], o->spec.sym, s, &err);
        if (!rc && o->f16) rc = qart_stored_f16(s, t->name, &err);
        if (rc) { rc = flow_ctx_fail(c, rc, "%s", err.msg); break; }
        qart_add(&f, t->name, s);
        size_t codes = s->kind == QUANT_KIND_INT8 ? (size_t)s->N * s->K : (size_t)s->N * s->K / 2;
        sz->lin_q += (double)qart_bytes(s);
        sz->scales += (double)(qart_bytes(s) - codes);
        sz->tensors++;
    }
    if (!rc) rc = st_write(&f, c, "weights");
    st_release(&f);
    for (int i = 0; i < nst; i++) qart_stored_release(&stored[i]);
    free(stored);
    return rc;
}

static void quant_json(flow_buf *b, const qopts *o, bert_qmodel *q, const bert_config *cfg)
{
    buf_printf(b, "{\"format\":\"%s\",\"version\":%d,\"scheme\":\"%s\",\"bits\":%d,\"group\":%d,\"sym\":%s,"
               "\"method\":\"%s\",\"act_order\":%s,\"damp\":", QART_FORMAT, QART_VERSION, o->scheme, o->spec.bits,
               o->spec.bits == 4 ? o->spec.group : 0, o->spec.bits == 8 || o->spec.sym ? "true" : "false",
               o->method, o->spec.act_order ? "true" : "false");
    buf_json_num(b, o->spec.damp);
    buf_printf(b, ",\"calibration_sequences\":%d,\"policy\":\"%s\",\"scales\":\"%s\",\"embeddings\":\"%s\","
               "\"embedding_group\":%d,\"embedding_sym\":%s,\"quantized\":[", o->spec.gptq ? o->nseq : 0, o->policy,
               o->scales, emb_name(o), o->emb == QUANT_KIND_UINT4 ? o->spec.group : 0,
               o->emb == QUANT_KIND_INT8 || (o->emb == QUANT_KIND_UINT4 && o->spec.sym) ? "true" : "false");
    int first = 1;
    for (int k = 0; k < QART_NEMB && o->emb; k++) {
        buf_printf(b, "%s\"%s\"", first ? "" : ",", qart_emb_names[k]);
        first = 0;
    }
    for (int l = 0; l < cfg->layers; l++)
        for (int w = 0; w < BERT_LIN_COUNT; w++) {
            if (!bert_qmodel_get(q, l, w)) continue;
            for (int p = 0; p < (w == BERT_LIN_QKV ? 3 : 1); p++) {
                char n[256];
                qart_weight_name(l, w, p, n, sizeof n);
                buf_printf(b, "%s\"%s\"", first ? "" : ",", n);
                first = 0;
            }
        }
    buf_adds(b, "]}");
}

static int read_options(flow_ctx *c, qopts *o)
{
    memset(o, 0, sizeof *o);
    o->spec.bits = (int)flow_param_int(c, "bits");
    o->spec.group = (int)flow_param_int(c, "group");
    o->spec.sym = flow_param_bool(c, "sym");
    o->spec.nf4 = o->spec.bits == 4 && strcmp(flow_param_str(c, "codebook"), "nf4") == 0;
    o->method = flow_param_str(c, "method");
    o->spec.gptq = strcmp(o->method, "gptq") == 0;
    o->spec.act_order = flow_param_bool(c, "act_order");
    o->spec.damp = flow_param_float(c, "damp");
    o->nseq = (int)flow_param_int(c, "calibration_sequences");
    o->seed = (uint64_t)flow_param_int(c, "seed");
    o->policy = flow_param_str(c, "policy");
    const char *emb = flow_param_str(c, "embeddings");
    o->emb = strcmp(emb, "int8") == 0 ? QUANT_KIND_INT8 : strcmp(emb, "uint4") == 0 ? QUANT_KIND_UINT4 : 0;
    o->scales = flow_param_str(c, "scales");
    o->f16 = strcmp(o->scales, "f16") == 0;
    o->scheme = o->spec.bits == 8 ? "int8" : o->spec.nf4 ? "nf4" : "uint4";
    if (o->spec.bits == 8 && strcmp(flow_param_str(c, "codebook"), "uniform") != 0)
        return flow_ctx_fail(c, FLOW_E_PARAM, "codebook nf4 needs bits = 4 (int8 is uniform)");
    if (o->emb && strcmp(o->policy, "none") == 0)
        return flow_ctx_fail(c, FLOW_E_PARAM, "embeddings = %s with policy = none: policy none keeps "
                             "everything fp32; use policy = encoder", emb);
    return 0;
}

/* Metrics and the report: what was quantized, the format, bits per weight
 * and bytes by tensor class (what `flow show` prints). */
static void report_sizes(flow_ctx *c, const qopts *o, int quantize, const qsizes *sz)
{
    double bpw = sz->lin_params > 0 ? 8.0 * sz->lin_q / sz->lin_params : 0;
    double total = sz->lin_q + sz->emb + sz->other, fp32 = sz->lin_fp32 + sz->emb_fp32 + sz->other;
    char what[160], fmt[64];
    char embw[96];
    if (o->emb == QUANT_KIND_UINT4)
        snprintf(embw, sizeof embw, ", word/position/type embeddings (uint4 per row, group %d%s)", o->spec.group,
                 o->spec.sym ? ", symmetric" : "");
    else
        snprintf(embw, sizeof embw, "%s", o->emb ? ", word/position/type embeddings (int8 per row)" : "");
    snprintf(what, sizeof what, "%s%s", quantize ? "every encoder Linear weight" : "nothing (policy none: all fp32)",
             embw);
    snprintf(fmt, sizeof fmt, "%s v%d, %s scales", QART_FORMAT, QART_VERSION, o->f16 ? "F16" : "F32");
    flow_metric_str(c, "quant.format", fmt);
    flow_metric_str(c, "quant.quantized", what);
    flow_metric_str(c, "quant.scheme", quantize ? o->scheme : "none");
    flow_metric_str(c, "quant.method", o->method);
    flow_metric_str(c, "quant.scales", o->scales);
    flow_metric_str(c, "quant.embeddings", emb_name(o));
    flow_metric(c, "quant.bits", quantize ? o->spec.bits : 32);
    flow_metric(c, "quant.group", o->spec.bits == 4 ? o->spec.group : 0);
    flow_metric(c, "quant.tensors", sz->tensors);
    flow_metric(c, "quant.bits_per_weight", bpw);
    flow_metric(c, "quant.encoder_linear_bytes", sz->lin_q);
    flow_metric(c, "quant.encoder_linear_fp32_bytes", sz->lin_fp32);
    flow_metric(c, "quant.embedding_bytes", sz->emb);
    flow_metric(c, "quant.embedding_fp32_bytes", sz->emb_fp32);
    flow_metric(c, "quant.scale_bytes", sz->scales);
    flow_metric(c, "quant.other_bytes", sz->other);
    flow_metric(c, "quant.total_bytes", total);
    flow_metric(c, "quant.total_fp32_bytes", fp32);
    flow_buf r;
    buf_init(&r);
    buf_printf(&r, "quantize: %s %s, format %s\n  quantized: %s (%d tensors)\n", quantize ? o->scheme : "none (fp32)",
               o->method, fmt, what, sz->tensors);
    if (o->spec.bits == 4 && quantize)
        buf_printf(&r, "  group %d, %s%s\n", o->spec.group, o->spec.nf4 ? "NF4 code book" : o->spec.sym ? "symmetric" : "scale + zero",
                   o->spec.act_order ? ", act-order" : "");
    buf_printf(&r, "  %-26s %12s %12s\n", "tensor class", "bytes", "fp32 bytes");
    buf_printf(&r, "  %-26s %12.0f %12.0f  %.3f bits/weight with scales%s, 1/%.2f\n", "encoder Linear weights",
               sz->lin_q, sz->lin_fp32, bpw, o->spec.bits == 4 && !o->spec.sym && !o->spec.nf4 ? " and zeros" : "",
               sz->lin_q > 0 ? sz->lin_fp32 / sz->lin_q : 0);
    buf_printf(&r, "  %-26s %12.0f %12.0f  %s\n", "embeddings", sz->emb, sz->emb_fp32,
               o->emb ? (o->emb == QUANT_KIND_INT8 ? "word, position, type int8" : "word, position, type uint4") : "fp32");
    buf_printf(&r, "  %-26s %12.0f %12.0f\n", "LN, biases, pooler, head", sz->other, sz->other);
    buf_printf(&r, "  %-26s %12.0f %12.0f  1/%.2f (scales, zeros, code books: %.0f bytes)\n", "total", total, fp32,
               total > 0 ? fp32 / total : 0, sz->scales);
    flow_report(c, r.data);
    buf_release(&r);
}

static int quantize_run(flow_ctx *c)
{
    qopts o;
    int rc = read_options(c, &o);
    if (rc) return rc;
    bert_set_threads(flow_threads(c));
    part_source src;
    part_source_ctx(&src, c, "model", 0);
    snprintf(src.what, sizeof src.what, "input 'model'");
    clf_model *m;
    flow_err err = { 0 };
    if ((rc = clf_load(&src, &m, &err))) return flow_ctx_fail(c, rc, "%s", err.msg);
    if (m->kind != CLF_BERT || !(m->bert->cfg.mode & BERT_MODE_CLASSIFY)) {
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'model' is a %s model; quantize takes a bert-cls model (finetune)",
                           m->kind_name);
        goto out;
    }
    if (m->bert->qmodel) {
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'model' is already quantized; bind the fp32 model");
        goto out;
    }
    bert_model *bm = m->bert->model;
    const bert_config *cfg = &bm->cfg;
    int quantize = strcmp(o.policy, "none") != 0;
    if (quantize && o.spec.bits == 4 && (rc = check_widths(c, cfg, o.spec.group))) goto out;
    if (o.emb == QUANT_KIND_UINT4 && cfg->hidden % o.spec.group) {
        rc = flow_ctx_fail(c, FLOW_E_PARAM, "embeddings = uint4: group %d does not divide the hidden size %d; "
                           "choose a group that divides it", o.spec.group, cfg->hidden);
        goto out;
    }
    if (quantize && o.spec.gptq && flow_in_count(c, "calibration") == 0) {
        rc = flow_ctx_fail(c, FLOW_E_PARAM, "method gptq needs the calibration input (e.g. calibration = split.train), "
                           "or use method = rtn");
        goto out;
    }
    bert_calib *cal = NULL;
    bert_qmodel *q = bert_qmodel_new(cfg->layers);
    if (quantize && o.spec.gptq) {
        cal = bert_calib_new(cfg->layers);
        if ((rc = calibrate(c, m, &o, cal))) goto out_q;
    }
    for (int l = 0; l < cfg->layers && quantize && !rc; l++) {
        int H = cfg->hidden, A = bert_attn_width(cfg, l), I = cfg->ffn[l];
        int OC[BERT_LIN_COUNT] = { 3 * A, H, I, H }, IC[BERT_LIN_COUNT] = { H, A, H, I };
        for (int w = 0; w < BERT_LIN_COUNT && !rc; w++) {
            char name[256];
            qart_weight_name(l, w, 0, name, sizeof name);
            const bert_tensor *t = bert_find_tensor(bm, name);   /* QKV: Q, K, V contiguous */
            const double *Hs = cal ? bert_calib_hessian(cal, l, w, NULL, NULL) : NULL;
            if ((rc = bert_qmodel_quantize(q, l, w, bm->params + t->offset, OC[w], IC[w], &o.spec, Hs, &err)))
                rc = flow_ctx_fail(c, rc, "%s", err.msg);
            flow_progress(c, 0.5 + 0.5 * (l * BERT_LIN_COUNT + w + 1) / (double)(cfg->layers * BERT_LIN_COUNT),
                          "quantizing layer %d", l);
        }
    }
    if (rc) goto out_q;
    flow_buf qj, mj;
    buf_init(&qj);
    buf_init(&mj);
    quant_json(&qj, &o, q, cfg);
    qsizes sz;
    rc = write_weights(c, bm, q, &o, qj.data, &sz);
    char *mjson = NULL;
    size_t mlen = 0;
    if (!rc && (rc = src.read(src.arg, "model.json", &mjson, &mlen, &err))) rc = flow_ctx_fail(c, rc, "%s", err.msg);
    if (!rc) {                                  /* the input's model.json plus "quantization" */
        while (mlen && mjson[mlen - 1] != '}') mlen--;
        buf_add(&mj, mjson, mlen ? mlen - 1 : 0);
        buf_printf(&mj, ",\"quantization\":%s}\n", qj.data);
        rc = flow_out_write(c, "model.json", FLOW_PART_BYTES, mj.data, mj.len);
    }
    free(mjson);
    if (!rc) rc = artifact_copy_tokenizer(c, "model");
    if (!rc) rc = artifact_copy_clean(c, "model");
    if (!rc) report_sizes(c, &o, quantize, &sz);
    buf_release(&qj);
    buf_release(&mj);
out_q:
    bert_calib_free(cal);
    bert_qmodel_free(q);
out:
    clf_free(m);
    return rc;
}

const flow_stage stage_quantize = {
    .name = "quantize",
    .version = 4,   /* 4: GPTQ's calibration forwards with attention by query chunks on
                     * kernels/cpu/attention_gemm.c (was sgemm);
                     * 3: flow-quant v3 (embeddings int8 = word, position and type; uint4) */
    .help = "int8 or 4-bit (RTN or GPTQ) encoder Linears of a bert-cls model, run on integer kernels",
    .params = quantize_params, .nparams = sizeof quantize_params / sizeof quantize_params[0],
    .inputs = quantize_inputs, .ninputs = sizeof quantize_inputs / sizeof quantize_inputs[0],
    .outputs = quantize_outputs, .noutputs = sizeof quantize_outputs / sizeof quantize_outputs[0],
    .res = { .threads = 0, .gpus = 0, .cpu_fallback = 0 },
    .run = quantize_run,
};
