/* onnx_quant_tool.c — flow's BERT classifier in shapes and formats that
 * are not artifacts (round-to-nearest bert_qmodel of a fp32 artifact, a
 * pruned shape) beside its ONNX export, for tests/onnx_export_test.py and
 * tests/bench/onnx_bench.py.
 * usage:
 *   onnx_quant_tool CACHE HASH SPEC export DIR [OPSET]
 *   onnx_quant_tool CACHE HASH SPEC logits < batches
 *   onnx_quant_tool CACHE HASH SPEC time B T THREADS SECONDS
 * SPEC: fp32, int8, u4gG (asymmetric 4-bit, group G), u4gGs (symmetric),
 * nf4gG.  Every encoder Linear of the stored fp32 classifier HASH is
 * quantized by round to nearest (kernels.h bert_qmodel_quantize).
 * SPEC+pruned (e.g. fp32+pruned, int8+pruned): first the shape of a pruned
 * model, cut from HASH's trained weights: layer l keeps the heads h with
 * h % (l + 2) != 1 and the FFN neurons j with j % (l + 2) == 0 (4 heads,
 * FFN 128: layer 0 2 heads and 64 neurons, layer 1 3 heads and 43), so
 * layers have unequal attention and FFN widths, as the prune stage makes.
 * export: writes the ONNX folder (stages/export) of fp32 HASH, or only
 * DIR/model.onnx of a quantized or pruned model (not artifacts; a quantize
 * artifact exports with `flow export`).
 * logits: batches as clf_logits_tool ("B T", B lines of ids, of token
 *   types, of mask); prints B lines of logits of flow's quantized forward.
 * time: best-of wall time of flow's forward on B x T random ids (every
 *   token real), printed as "flow SPEC batch B seq T threads N ms_per_batch X". */
#include "stages/model/clf_bert.h"
#include "stages/export/onnx_export.h"
#include "cache/cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char *const lin_part[BERT_LIN_COUNT][3] = {
    { "attention.self.query", "attention.self.key", "attention.self.value" },
    { "attention.output.dense" }, { "intermediate.dense" }, { "output.dense" },
};

static int parse_spec(const char *spec, bert_qspec *q, int *fp32, int *pruned)
{
    char s[64];
    snprintf(s, sizeof s, "%s", spec);
    char *plus = strchr(s, '+');
    *pruned = plus && strcmp(plus, "+pruned") == 0;
    if (plus && !*pruned) return -1;
    if (plus) *plus = 0;
    memset(q, 0, sizeof *q);
    *fp32 = strcmp(s, "fp32") == 0;
    if (*fp32) return 0;
    if (strcmp(s, "int8") == 0) { q->bits = 8; return 0; }
    char sym = 0;
    if (sscanf(s, "u4g%d%c", &q->group, &sym) >= 1) { q->bits = 4; q->sym = sym == 's'; return 0; }
    if (sscanf(s, "nf4g%d", &q->group) == 1) { q->bits = 4; q->nf4 = 1; return 0; }
    return -1;
}

/* Kept heads and FFN neurons of layer l of the pruned shape (top). */
static int keep_head(int l, int h) { return h % (l + 2) != 1; }
static int keep_neuron(int l, int j) { return j % (l + 2) == 0; }

/* Index map of kept rows of a dimension of n: heads of d rows (d > 0) or
 * single neurons (d = 0); returns the kept count. */
static int kept_index(int l, int n, int d, int *idx)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (d ? keep_head(l, i / d) : keep_neuron(l, i)) idx[k++] = i;
    return k;
}

/* The pruned shape of bm (top) with its weights: query/key/value rows and
 * attention output columns of the kept heads, intermediate rows and output
 * columns of the kept neurons; every other tensor as it is. */
static bert_model *prune(const bert_model *bm, flow_err *e)
{
    bert_config c = bm->cfg;
    int *idx = malloc(sizeof(int) * 65536);
    for (int l = 0; l < c.layers; l++) {
        c.heads[l] = kept_index(l, bm->cfg.heads[l], 1, idx);
        c.ffn[l] = kept_index(l, bm->cfg.ffn[l], 0, idx);
    }
    bert_model *p = NULL;
    if (bert_model_new(&c, 1, c.max_len, &bert_device_cpu, &p, e)) { free(idx); return NULL; }
    int *cols = malloc(sizeof(int) * 65536);
    for (int i = 0; i < p->ntensors; i++) {
        const bert_tensor *t = &p->tensors[i], *o = bert_find_tensor(bm, t->name);
        if (!o) { fprintf(stderr, "no tensor %s\n", t->name); exit(1); }
        int l = -1, R = t->shape[0], C = t->ndim == 2 ? t->shape[1] : 1;
        char part[80] = "";
        sscanf(t->name, "bert.encoder.layer.%d.%79s", &l, part);
        for (int r = 0; r < R; r++) idx[r] = r;
        for (int k = 0; k < C; k++) cols[k] = k;
        if (strstr(part, "attention.self.")) kept_index(l, o->shape[0], c.head_size, idx);
        if (strcmp(part, "attention.output.dense.weight") == 0) kept_index(l, o->shape[1], c.head_size, cols);
        if (strstr(part, "intermediate.dense.")) kept_index(l, o->shape[0], 0, idx);
        if (strcmp(part, "output.dense.weight") == 0) kept_index(l, o->shape[1], 0, cols);
        int OC = o->ndim == 2 ? o->shape[1] : 1;
        for (int r = 0; r < R; r++)
            for (int k = 0; k < C; k++)
                p->params[t->offset + (size_t)r * C + k] = bm->params[o->offset + (size_t)idx[r] * OC + cols[k]];
    }
    free(idx);
    free(cols);
    return p;
}

/* Quantizes every encoder Linear of bm (QKV as one [3A, H] block). */
static bert_qmodel *quantize(bert_model *bm, const bert_qspec *spec, flow_err *e)
{
    bert_qmodel *q = bert_qmodel_new(bm->cfg.layers);
    for (int l = 0; q && l < bm->cfg.layers; l++)
        for (int which = 0; which < BERT_LIN_COUNT; which++) {
            int parts = which == BERT_LIN_QKV ? 3 : 1, N = 0, K = 0;
            const bert_tensor *t[3];
            for (int p = 0; p < parts; p++) {
                char name[128];
                snprintf(name, sizeof name, "bert.encoder.layer.%d.%s.weight", l, lin_part[which][p]);
                t[p] = bert_find_tensor(bm, name);
                if (!t[p]) { fprintf(stderr, "no tensor %s\n", name); exit(1); }
                N += t[p]->shape[0];
                K = t[p]->shape[1];
            }
            float *W = malloc((size_t)N * K * sizeof *W);
            for (int p = 0, r0 = 0; p < parts; r0 += t[p]->shape[0], p++)
                memcpy(W + (size_t)r0 * K, bm->params + t[p]->offset, t[p]->numel * sizeof *W);
            int rc = bert_qmodel_quantize(q, l, which, W, N, K, spec, NULL, e);
            free(W);
            if (rc) { bert_qmodel_free(q); return NULL; }
        }
    return q;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int read_ints(int32_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        long v;
        if (scanf("%ld", &v) != 1) return -1;
        dst[i] = (int32_t)v;
    }
    return 0;
}

/* One forward of B x T on a model made for it, with q attached (may be NULL). */
static int forward(const bert_model *bm, bert_qmodel *q, const bert_batch *b, float *logits, flow_err *e)
{
    bert_model *w = NULL;
    int rc = bert_model_new(&bm->cfg, b->B, b->T, &bert_device_cpu, &w, e);
    if (rc) return rc;
    memcpy(w->params, bm->params, bm->nparams * sizeof(float));
    bert_qmodel_attach(w, q);
    bert_output o;
    rc = bert_sync_to_device(w, e);
    if (!rc) rc = bert_forward(w, b, BERT_HEAD_CLASSIFY, 0, &o, e);
    if (!rc) memcpy(logits, o.logits, (size_t)b->B * bm->cfg.num_labels * sizeof(float));
    bert_model_free(w);
    return rc;
}

static int run_logits(const bert_model *bm, bert_qmodel *q, flow_err *e)
{
    int B, T, C = bm->cfg.num_labels;
    while (scanf("%d %d", &B, &T) == 2) {
        if (B < 1 || T < 1) return flow_fail(e, FLOW_E_INPUT, "bad batch size");
        size_t n = (size_t)B * T;
        int32_t *ids = malloc(n * 4), *types = malloc(n * 4), *mask = malloc(n * 4);
        float *lg = malloc((size_t)B * C * sizeof *lg);
        int rc = read_ints(ids, n) || read_ints(types, n) || read_ints(mask, n)
                     ? flow_fail(e, FLOW_E_INPUT, "bad batch input") : 0;
        bert_batch b = { .B = B, .T = T, .ids = ids, .type_ids = types, .attn_mask = mask };
        if (!rc) rc = forward(bm, q, &b, lg, e);
        for (int r = 0; !rc && r < B; r++)
            for (int k = 0; k < C; k++) printf(k + 1 < C ? "%.9g " : "%.9g\n", (double)lg[(size_t)r * C + k]);
        free(ids); free(types); free(mask); free(lg);
        if (rc) return rc;
    }
    return 0;
}

static int run_time(const bert_model *bm, bert_qmodel *q, const char *spec, int B, int T, int threads,
                    double seconds, flow_err *e)
{
    bert_set_threads(threads);
    if (q) bert_qmodel_set_threads(q, threads);
    bert_model *w = NULL;
    int rc = bert_model_new(&bm->cfg, B, T, &bert_device_cpu, &w, e);
    if (rc) return rc;
    memcpy(w->params, bm->params, bm->nparams * sizeof(float));
    bert_qmodel_attach(w, q);
    int32_t *ids = malloc((size_t)B * T * 4);
    uint64_t r = 1;
    for (int i = 0; i < B * T; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = 5 + (int32_t)((r >> 33) % (uint64_t)(bm->cfg.vocab_size - 5));
    }
    bert_batch b = { .B = B, .T = T, .ids = ids };
    bert_output o;
    double best = 1e30, start = now();
    int n = 0;
    rc = bert_sync_to_device(w, e);
    if (!rc) rc = bert_forward(w, &b, BERT_HEAD_CLASSIFY, 0, &o, e);   /* warm-up */
    while (!rc && (n < 3 || now() - start < seconds)) {
        double t0 = now();
        rc = bert_forward(w, &b, BERT_HEAD_CLASSIFY, 0, &o, e);
        double t = now() - t0;
        best = t < best ? t : best;
        n++;
    }
    if (!rc) printf("flow %s batch %d seq %d threads %d ms_per_batch %.2f\n", spec, B, T, threads, best * 1e3);
    free(ids);
    bert_model_free(w);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s CACHE HASH SPEC export DIR [OPSET] | logits | time B T THREADS SECONDS\n", argv[0]);
        return 2;
    }
    bert_qspec spec;
    int fp32, pruned;
    if (parse_spec(argv[3], &spec, &fp32, &pruned)) { fprintf(stderr, "bad SPEC '%s'\n", argv[3]); return 2; }
    flow_err err = { 0 };
    flow_store *s;
    store_options so;
    memset(&so, 0, sizeof so);
    flow_hash key;
    part_source src;
    clf_model *m;
    if (store_open(&s, argv[1], &so, &err) || store_resolve(s, argv[2], &key, &err) ||
        part_source_store(&src, s, &key, "", &err) || clf_load(&src, &m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    bert_model *bm = m->bert ? m->bert->model : NULL;
    if (!bm || !(bm->cfg.mode & BERT_MODE_CLASSIFY)) { fprintf(stderr, "not a bert classifier\n"); return 1; }
    if (m->bert->qmodel) { fprintf(stderr, "%s is quantized already: give its fp32 model\n", argv[2]); return 1; }
    bert_qmodel *q = NULL;
    bert_model *cut = NULL;
    int rc = bert_sync_to_host(bm, &err);
    if (!rc && pruned && !(bm = cut = prune(bm, &err))) rc = err.code ? err.code : FLOW_E_NOMEM;
    if (!rc && !fp32 && !(q = quantize(bm, &spec, &err))) rc = err.code ? err.code : FLOW_E_NOMEM;
    if (!rc && strcmp(argv[4], "export") == 0 && argc >= 6) {
        onnx_export_opts o = { .opset = argc > 6 ? atoi(argv[6]) : 0, .source = argv[2] };
        onnx_export_info info;
        mkdir(argv[5], 0777);
        rc = cut || q ? onnx_export_model(bm, q, argv[5], &o, &info, &err) : onnx_export(m, argv[5], &o, &info, &err);
        if (!rc) fprintf(stderr, "exported %s as %s, opset %d\n", argv[2], info.precision, info.opset);
    } else if (!rc && strcmp(argv[4], "logits") == 0) {
        rc = run_logits(bm, q, &err);
    } else if (!rc && strcmp(argv[4], "time") == 0 && argc == 9) {
        rc = run_time(bm, q, argv[3], atoi(argv[5]), atoi(argv[6]), atoi(argv[7]), atof(argv[8]), &err);
    } else if (!rc) {
        fprintf(stderr, "unknown mode '%s'\n", argv[4]);
        rc = 2;
    }
    if (rc && rc != 2) fprintf(stderr, "%s\n", err.msg);
    bert_qmodel_free(q);
    bert_model_free(cut);
    clf_free(m);
    part_source_release(&src);
    store_close(s);
    return rc == 0 ? 0 : rc == 2 ? 2 : 1;
}
