/* evaluate.c — the `evaluate` stage: applies every bound classifier
 * artifact (any kind: tfidf-linear, bert-cls; each with its own cleaning,
 * tokenizer and weights) to a labelled corpus (split.test) and compares
 * them: accuracy, macro-F1, per-class precision / recall / F1 and the
 * confusion matrix.  The build ends with a table of the models side by
 * side (flow_report); metrics "<model>.accuracy" / "<model>.macro_f1" are
 * queryable later, and evaluation.json holds everything. */
#include "clf_internal.h"
#include "kernels/kernels.h"

#include <stdlib.h>
#include <string.h>

static const flow_param_def evaluate_params[] = {
    { "batch", FLOW_P_INT, 0, "256", 1, 1e6, NULL, "units predicted per call (memory bound for big models)" },
};

static const flow_input_def evaluate_inputs[] = {
    { "models", 0, 1, "classifier artifacts to compare (baseline, finetune, ...)" },
    { "test", 0, 0, "labelled corpus to score them on (split.test)" },
};

static const flow_output_def evaluate_outputs[] = {
    { "evaluation.json", "per model: accuracy, macro_f1, per-class precision/recall/f1/support, confusion matrix" },
    { "report.txt", "the side-by-side table" },
};

/* Display width of UTF-8 text: East Asian wide characters count 2. */
static int display_width(const char *s)
{
    int w = 0;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (k < 0) { k = 1; cp = '?'; }
        w += (cp >= 0x1100 && (cp <= 0x115F || (cp >= 0x2E80 && cp <= 0xA4CF) ||
                               (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) ||
                               (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60) ||
                               (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x20000 && cp <= 0x3FFFD))) ? 2 : 1;
        i += (size_t)k;
    }
    return w;
}

static void pad_cell(flow_buf *b, const char *s, int width, int right)
{
    int w = display_width(s);
    if (right) for (int i = w; i < width; i++) buf_addc(b, ' ');
    buf_adds(b, s);
    if (!right) for (int i = w; i < width; i++) buf_addc(b, ' ');
}

typedef struct model_eval {
    char name[128];
    char kind[32];
    clf_metrics m;
} model_eval;

/* Writes the side-by-side table: one column per model. */
static void side_by_side(flow_buf *b, model_eval *ev, int nm, char *const *classes, int ncls,
                         size_t nunits)
{
    int lw = 10, cw = 10;
    for (int k = 0; k < ncls; k++) {
        int w = display_width(classes[k]) + 3;
        if (w > lw) lw = w;
    }
    for (int i = 0; i < nm; i++) {
        int w = display_width(ev[i].name) + 2;
        if (w > cw) cw = w;
    }
    buf_printf(b, "evaluation on %zu test units, %d classes\n", nunits, ncls);
    pad_cell(b, "", lw, 0);
    for (int i = 0; i < nm; i++) pad_cell(b, ev[i].name, cw, 1);
    buf_addc(b, '\n');
    pad_cell(b, "", lw, 0);
    for (int i = 0; i < nm; i++) pad_cell(b, ev[i].kind, cw, 1);
    buf_addc(b, '\n');
    char cell[64];
    pad_cell(b, "accuracy", lw, 0);
    for (int i = 0; i < nm; i++) { snprintf(cell, sizeof cell, "%.4f", ev[i].m.accuracy); pad_cell(b, cell, cw, 1); }
    buf_addc(b, '\n');
    pad_cell(b, "macro-F1", lw, 0);
    for (int i = 0; i < nm; i++) { snprintf(cell, sizeof cell, "%.4f", ev[i].m.macro_f1); pad_cell(b, cell, cw, 1); }
    buf_addc(b, '\n');
    for (int k = 0; k < ncls; k++) {
        char lab[256];
        snprintf(lab, sizeof lab, "F1 %s", classes[k]);
        pad_cell(b, lab, lw, 0);
        for (int i = 0; i < nm; i++) { snprintf(cell, sizeof cell, "%.4f", ev[i].m.f1[k]); pad_cell(b, cell, cw, 1); }
        snprintf(cell, sizeof cell, "  (n=%lld)", nm ? (long long)ev[0].m.support[k] : 0LL);
        buf_adds(b, cell);
        buf_addc(b, '\n');
    }
}

static void per_model_log(flow_ctx *c, const model_eval *e, char *const *classes, int ncls)
{
    flow_buf b;
    buf_init(&b);
    buf_printf(&b, "model %s (%s): accuracy %.4f macro-F1 %.4f over %lld units\n",
               e->name, e->kind, e->m.accuracy, e->m.macro_f1, (long long)e->m.n);
    for (int k = 0; k < ncls; k++)
        buf_printf(&b, "  %-3d P %.4f R %.4f F1 %.4f n %-6lld %s\n", k, e->m.precision[k],
                   e->m.recall[k], e->m.f1[k], (long long)e->m.support[k], classes[k]);
    buf_adds(&b, "  confusion (rows gold, columns predicted, class ids as above):\n");
    for (int g = 0; g < ncls; g++) {
        buf_adds(&b, "   ");
        for (int p = 0; p < ncls; p++) buf_printf(&b, " %6lld", (long long)e->m.confusion[(size_t)g * ncls + p]);
        buf_addc(&b, '\n');
    }
    flow_log(c, "%s", b.data);
    buf_release(&b);
}

static void eval_json(flow_buf *b, const model_eval *ev, int nm, char *const *classes, int ncls)
{
    buf_adds(b, "{\"classes\":[");
    for (int k = 0; k < ncls; k++) {
        if (k) buf_addc(b, ',');
        buf_json_str(b, classes[k], strlen(classes[k]));
    }
    buf_adds(b, "],\"models\":[");
    for (int i = 0; i < nm; i++) {
        const clf_metrics *m = &ev[i].m;
        if (i) buf_addc(b, ',');
        buf_adds(b, "{\"name\":");
        buf_json_str(b, ev[i].name, strlen(ev[i].name));
        buf_adds(b, ",\"kind\":");
        buf_json_str(b, ev[i].kind, strlen(ev[i].kind));
        buf_printf(b, ",\"n\":%lld,\"accuracy\":", (long long)m->n);
        buf_json_num(b, m->accuracy);
        buf_adds(b, ",\"macro_f1\":");
        buf_json_num(b, m->macro_f1);
        buf_adds(b, ",\"per_class\":[");
        for (int k = 0; k < ncls; k++) {
            if (k) buf_addc(b, ',');
            buf_adds(b, "{\"precision\":");
            buf_json_num(b, m->precision[k]);
            buf_adds(b, ",\"recall\":");
            buf_json_num(b, m->recall[k]);
            buf_adds(b, ",\"f1\":");
            buf_json_num(b, m->f1[k]);
            buf_printf(b, ",\"support\":%lld}", (long long)m->support[k]);
        }
        buf_adds(b, "],\"confusion\":[");
        for (int g = 0; g < ncls; g++) {
            buf_adds(b, g ? ",[" : "[");
            for (int p = 0; p < ncls; p++) buf_printf(b, p ? ",%lld" : "%lld", (long long)m->confusion[(size_t)g * ncls + p]);
            buf_addc(b, ']');
        }
        buf_adds(b, "]}");
    }
    buf_adds(b, "]}\n");
}

/* Model i's label: its reference as written in this graph ("finetune",
 * "ft.model"), which the key covers (flow_key_input_refs); never the
 * producing node's name from its metadata, which another graph that built
 * the same content first may have chosen. */
static void model_name(flow_ctx *c, int i, char *out, size_t cap)
{
    flow_in_ref(c, "models", i, out, cap);
}

static int evaluate_run(flow_ctx *c)
{
    corpus_view te;
    int rc = cview_read(c, "test", 0, &te);
    if (rc) return rc;
    int nm = flow_in_count(c, "models");
    bert_set_threads(flow_threads(c));
    size_t batch = (size_t)flow_param_int(c, "batch");
    /* class set: the test corpus's labels, extended by model labels it lacks */
    int ncls = te.nlabels, capcls = te.nlabels + 16;
    char **classes = xmalloc((size_t)capcls * sizeof *classes);
    for (int k = 0; k < te.nlabels; k++) classes[k] = xstrdup(te.labels[k]);
    size_t nlab = 0;
    for (size_t i = 0; i < te.n; i++) nlab += te.label[i] >= 0;
    if (nlab == 0) {
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'test': no labelled units to evaluate on (bind a labelled split such as split.test)");
        goto out_classes;
    }
    model_eval *ev = xcalloc((size_t)nm, sizeof *ev);
    int *pred = xmalloc(te.n * sizeof *pred);
    int done = 0;
    for (int i = 0; i < nm; i++) {
        part_source src;
        part_source_ctx(&src, c, "models", i);
        model_name(c, i, ev[i].name, sizeof ev[i].name);
        snprintf(src.what, sizeof src.what, "model '%s'", ev[i].name);
        clf_model *m;
        flow_err err = { 0 };
        if ((rc = clf_load(&src, &m, &err))) {
            rc = flow_ctx_fail(c, rc, "%s", err.msg);
            break;
        }
        snprintf(ev[i].kind, sizeof ev[i].kind, "%s", clf_kind(m));
        int C = clf_nlabels(m);
        if (C < 1) {
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "model '%s' (%s) has no labels: it is not a classifier", ev[i].name, ev[i].kind);
            clf_free(m);
            break;
        }
        int *map = xmalloc((size_t)C * sizeof *map);   /* model label -> class id */
        for (int k = 0; k < C; k++) {
            map[k] = labels_find(classes, ncls, clf_label(m, k));
            if (map[k] < 0) {
                if (ncls == capcls) { capcls *= 2; classes = xrealloc(classes, (size_t)capcls * sizeof *classes); }
                classes[ncls] = xstrdup(clf_label(m, k));
                map[k] = ncls++;
            }
        }
        float *probs = xmalloc(batch * (size_t)C * sizeof *probs);
        for (size_t s = 0; s < te.n && !rc; s += batch) {
            size_t nb = te.n - s < batch ? te.n - s : batch;
            if ((rc = clf_predict(m, te.text + s, te.len + s, nb, 0, probs, &err))) {
                rc = flow_ctx_fail(c, rc, "%s", err.msg);
                break;
            }
            for (size_t r = 0; r < nb; r++) {
                int best = 0;
                for (int k = 1; k < C; k++) if (probs[r * (size_t)C + k] > probs[r * (size_t)C + best]) best = k;
                pred[s + r] = map[best];
            }
            flow_progress(c, ((double)i + (double)(s + nb) / (double)te.n) / nm, "%s: %zu/%zu units",
                          ev[i].name, s + nb, te.n);
        }
        free(probs);
        free(map);
        clf_free(m);
        if (rc) break;
        metrics_compute(&ev[i].m, te.label, pred, te.n, ncls);
        done++;
    }
    if (!rc) {
        flow_buf rep, js;
        buf_init(&rep);
        buf_init(&js);
        side_by_side(&rep, ev, nm, classes, ncls, nlab);
        for (int i = 0; i < nm; i++) {
            per_model_log(c, &ev[i], classes, ncls);
            char name[200];
            snprintf(name, sizeof name, "%s.accuracy", ev[i].name);
            flow_metric(c, name, ev[i].m.accuracy);
            snprintf(name, sizeof name, "%s.macro_f1", ev[i].name);
            flow_metric(c, name, ev[i].m.macro_f1);
        }
        flow_metric(c, "units", (double)nlab);
        flow_report(c, rep.data);
        eval_json(&js, ev, nm, classes, ncls);
        rc = flow_out_write(c, "evaluation.json", FLOW_PART_BYTES, js.data, js.len);
        if (!rc) rc = flow_out_write(c, "report.txt", FLOW_PART_BYTES, rep.data, rep.len);
        buf_release(&rep);
        buf_release(&js);
    }
    for (int i = 0; i < done; i++) metrics_release(&ev[i].m);
    free(ev);
    free(pred);
out_classes:
    for (int k = 0; k < ncls; k++) free(classes[k]);
    free(classes);
    cview_release(&te);
    return rc;
}

const flow_stage stage_evaluate = {
    .name = "evaluate",
    .version = 6,   /* 6: every model's attention by query chunks on kernels/cpu/attention_gemm.c
                     * (fp32 ones: was sgemm; quantized ones: was sgemm by chunks), and activation
                     * rows of amax below 1e-30 quantized as zeros;
                     * 5: quantized models' attention by 64-query chunks (their
                     * logits' low bits; kernels/cpu/bert_cpu.h ATT_QROWS);
                     * 4: models labelled by their reference as written in the graph
                     * (was: the producing node's name from its metadata), in the key;
                     * 3: GEMMs and LayerNorm grads cut into fixed blocks (same bytes for any
                     * thread count); 2: BERT inference numerics (vectorised exp/GELU/LayerNorm), length-sorted batches, threads */
    .help = "scores classifier artifacts on a labelled corpus and reports them side by side",
    .params = evaluate_params, .nparams = sizeof evaluate_params / sizeof evaluate_params[0],
    .inputs = evaluate_inputs, .ninputs = sizeof evaluate_inputs / sizeof evaluate_inputs[0],
    .outputs = evaluate_outputs, .noutputs = sizeof evaluate_outputs / sizeof evaluate_outputs[0],
    .res = { .threads = 0, .gpus = 0, .cpu_fallback = 1 },
    .run = evaluate_run,
    .key_extra = flow_key_input_refs,   /* the labels */
};
