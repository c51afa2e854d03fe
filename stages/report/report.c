/* report.c — the `report` stage: every model variant bound to `models`
 * (any kind the classifier runtime loads: tfidf-linear, bert-cls, and the
 * trimmed / pruned / distilled / quantized variants, which are ordinary
 * model artifacts) scored on the test split beside the `teacher`:
 * parameters, bytes, bits per weight, compression, accuracy and macro-F1
 * and their change, KL divergence and top-1 agreement with the teacher,
 * CPU latency at batch 1 and throughput at batch 32.  Then the seed's
 * gates (coverage, size, accuracy drop) and the outputs of report.h.
 *
 * Every model predicts all test units in one clf_predict call, as
 * `flow eval` does, so the two give the same numbers.  Timings are not a
 * function of the key: they go to metrics and to the volatile parts only.
 */
#include "report.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const flow_param_def report_params[] = {
    { "gates", FLOW_P_STRING, 0, "fail", 0, -1, "fail|warn",
      "fail: a violated gate fails the node (saying which and by how much); warn: report only" },
    { "min_coverage", FLOW_P_FLOAT, 0, "0.95", 0, 1, NULL,
      "gate: vocabulary coverage of the test text (from the `coverage` input) at least this" },
    { "min_size_ratio", FLOW_P_FLOAT, 0, "0.1", 0, 1e6, NULL,
      "gate: the final model's bytes at least this share of the teacher's" },
    { "max_size_ratio", FLOW_P_FLOAT, 0, "0.2", 0, 1e6, NULL,
      "gate: the final model's bytes at most this share of the teacher's" },
    { "max_accuracy_drop", FLOW_P_FLOAT, 0, "0.05", 0, 1, NULL,
      "gate: (teacher accuracy - final accuracy) / teacher accuracy at most this" },
    { "final", FLOW_P_STRING, 0, "\"\"", 0, -1, NULL,
      "the node of `models` that is the final model (\"\": the last one)" },
    { "timing_units", FLOW_P_INT, 0, "64", 0, 1e6, NULL,
      "test units timed per model (batch-1 latency; batch-32 throughput over at least 32); 0: no timings" },
};

static const flow_input_def report_inputs[] = {
    { "models", 0, 1, "the model variants to compare (baseline, finetune, trimmed, pruned, quantized ...)" },
    { "teacher", 1, 0, "the model the variants are compared with (compression, deltas, KL, agreement)" },
    { "test", 0, 0, "labelled corpus to score them on (split.test)" },
    { "training", 1, 1, "training nodes whose loss_curve.tsv / dev_curve.tsv to plot" },
    { "coverage", 1, 0, "a coverage node: its `coverage` metric is the vocabulary-coverage gate" },
};

static const flow_output_def report_outputs[] = {
    { "report.md", "the table and the gates (deterministic)" },
    { "report.json", "every figure but the timings (deterministic)" },
    { "report.html", "self-contained page with SVG plots and the timings (volatile: host, date)" },
    { "timings.json", "batch-1 latency and batch-32 throughput per model (volatile)" },
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* An input's label: its reference as written in this graph, which the key
 * covers (flow_key_input_refs); never the producing node's name from its
 * metadata (another graph that built the same content first named it). */
static void input_node(flow_ctx *c, const char *port, int i, char *out, size_t cap)
{
    flow_in_ref(c, port, i, out, cap);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median batch-1 latency over the first k units, then throughput at batch
 * 32 over max(k, 32) units (cycling through the test set). */
static int time_model(clf_model *m, const corpus_view *te, int k, rp_variant *v, flow_err *err)
{
    int C = clf_nlabels(m);
    float *p = xmalloc(32 * (size_t)C * sizeof *p);
    double *lat = xmalloc((size_t)k * sizeof *lat);
    int rc = clf_predict(m, te->text, te->len, 1, 0, p, err);       /* warm-up */
    for (int i = 0; i < k && !rc; i++) {
        double t0 = now_s();
        rc = clf_predict(m, te->text + i, te->len + i, 1, 0, p, err);
        lat[i] = now_s() - t0;
    }
    if (!rc) {
        qsort(lat, (size_t)k, sizeof *lat, cmp_double);
        v->latency_ms_b1 = 1e3 * (k % 2 ? lat[k / 2] : 0.5 * (lat[k / 2 - 1] + lat[k / 2]));
    }
    const char *bt[32];
    size_t bl[32];
    int total = k < 32 ? 32 : (k + 31) / 32 * 32;
    double t0 = now_s();
    for (int s = 0; s < total && !rc; s += 32) {
        for (int r = 0; r < 32; r++) {
            size_t u = (size_t)(s + r) % te->n;
            bt[r] = te->text[u];
            bl[r] = te->len[u];
        }
        rc = clf_predict(m, bt, bl, 32, 0, p, err);
    }
    double dt = now_s() - t0;
    if (!rc) v->throughput_b32 = dt > 0 ? total / dt : NAN;
    free(lat);
    free(p);
    return rc;
}

/* Scores model i of port (idx) on the test units: probabilities mapped
 * to class ids (probs [n][ncls], 0 for classes the model lacks), the
 * predictions, metrics, sizes and timings.  Grows the class list with
 * labels the test set lacks. */
typedef struct scored {
    float *probs;               /* [n][nlabels], the model's label order */
    int *pred;
    int nlabels;                /* the model's own label count */
    int *label_class;           /* model label -> class id */
} scored;

static int score_model(flow_ctx *c, const char *port, int idx, const corpus_view *te, rp_report *r,
                       int *capcls, rp_variant *v, scored *sc, int timing_units)
{
    part_source src;
    part_source_ctx(&src, c, port, idx);
    input_node(c, port, idx, v->name, sizeof v->name);
    snprintf(src.what, sizeof src.what, "model '%s'", v->name);
    clf_model *m;
    flow_err err = { 0 };
    int rc = clf_load(&src, &m, &err);
    if (rc) return flow_ctx_fail(c, rc, "%s", err.msg);
    snprintf(v->kind, sizeof v->kind, "%s", clf_kind(m));
    int C = clf_nlabels(m);
    if (C < 1) {
        clf_free(m);
        return flow_ctx_fail(c, FLOW_E_INPUT, "model '%s' (%s) has no labels: it is not a classifier",
                             v->name, v->kind);
    }
    if (!flow_in_has(c, port, idx, "weights")) {
        clf_free(m);
        return flow_ctx_fail(c, FLOW_E_INPUT, "model '%s' has no part `weights`", v->name);
    }
    v->params = clf_param_count(m);
    v->bytes = flow_in_part_size(c, port, idx, "weights");
    v->bits_per_weight = v->params ? 8.0 * (double)v->bytes / (double)v->params : NAN;
    sc->nlabels = C;
    sc->label_class = xmalloc((size_t)C * sizeof *sc->label_class);
    for (int k = 0; k < C; k++) {
        int id = labels_find(r->classes, r->nclasses, clf_label(m, k));
        if (id < 0) {
            if (r->nclasses == *capcls) {
                *capcls *= 2;
                r->classes = xrealloc(r->classes, (size_t)*capcls * sizeof *r->classes);
            }
            r->classes[r->nclasses] = xstrdup(clf_label(m, k));
            id = r->nclasses++;
        }
        sc->label_class[k] = id;
    }
    size_t n = te->n;
    float *p = xmalloc((n ? n : 1) * (size_t)C * sizeof *p);
    flow_progress(c, -1, "%s: predicting %zu units", v->name, n);
    rc = clf_predict(m, te->text, te->len, n, 0, p, &err);
    if (!rc) {
        sc->pred = xmalloc((n ? n : 1) * sizeof *sc->pred);
        for (size_t i = 0; i < n; i++) {
            int best = 0;
            for (int k = 1; k < C; k++) if (p[i * (size_t)C + k] > p[i * (size_t)C + best]) best = k;
            sc->pred[i] = sc->label_class[best];
        }
        sc->probs = p;
    } else {
        free(p);
    }
    v->latency_ms_b1 = v->throughput_b32 = NAN;
    if (!rc && timing_units > 0 && n > 0) {
        flow_progress(c, -1, "%s: timing", v->name);
        rc = time_model(m, te, timing_units < (int)n ? timing_units : (int)n, v, &err);
    }
    clf_free(m);
    if (rc) return flow_ctx_fail(c, rc, "%s", err.msg);
    return 0;
}

/* KL(teacher || variant) and top-1 agreement over the labelled units.
 * KL needs every teacher label among the variant's (else NAN); a variant
 * probability below 1e-30 counts as 1e-30 (a float softmax can underflow
 * to 0). */
static void compare_teacher(const corpus_view *te, const scored *t, const scored *s, rp_variant *v)
{
    int ncls = 0;
    for (int k = 0; k < t->nlabels; k++) if (t->label_class[k] + 1 > ncls) ncls = t->label_class[k] + 1;
    for (int k = 0; k < s->nlabels; k++) if (s->label_class[k] + 1 > ncls) ncls = s->label_class[k] + 1;
    int *of = xmalloc((size_t)ncls * sizeof *of);      /* class id -> variant label, -1 */
    for (int k = 0; k < ncls; k++) of[k] = -1;
    for (int k = 0; k < s->nlabels; k++) of[s->label_class[k]] = k;
    int covered = 1;
    for (int k = 0; k < t->nlabels; k++) if (of[t->label_class[k]] < 0) covered = 0;
    double kl = 0;
    size_t n = 0, agree = 0;
    for (size_t i = 0; i < te->n; i++) {
        if (te->label[i] < 0) continue;
        n++;
        agree += t->pred[i] == s->pred[i];
        if (!covered) continue;
        double sum = 0;
        for (int k = 0; k < t->nlabels; k++) {
            double pt = t->probs[i * (size_t)t->nlabels + k];
            if (pt <= 0) continue;
            double q = s->probs[i * (size_t)s->nlabels + of[t->label_class[k]]];
            if (q < 1e-30) q = 1e-30;
            sum += pt * log(pt / q);
        }
        kl += sum;
    }
    v->kl = covered && n ? kl / (double)n : NAN;
    v->agreement = n ? (double)agree / (double)n : NAN;
    free(of);
}

static void gate_bounds(rp_gate *g, const char *name, double value, double lo, double hi)
{
    g->name = name;
    g->value = value;
    g->lo = lo;
    g->hi = hi;
    g->status = (isnan(lo) || value >= lo) && (isnan(hi) || value <= hi) ? GATE_PASS : GATE_FAIL;
}

/* The three gates of the seed.  Returns 0 or a failure (bad coverage input). */
static int eval_gates(flow_ctx *c, rp_report *r)
{
    char a[32], b[32];
    rp_gate *g = &r->gates[0];
    memset(r->gates, 0, sizeof r->gates);
    /* coverage */
    double minc = flow_param_float(c, "min_coverage");
    if (flow_in_count(c, "coverage") == 0) {
        g->name = "coverage";
        g->status = GATE_SKIPPED;
        g->value = g->hi = NAN;
        g->lo = minc;
        snprintf(g->detail, sizeof g->detail, "no coverage input bound");
    } else {
        char node[128];
        input_node(c, "coverage", 0, node, sizeof node);
        const char *meta = flow_in_meta(c, "coverage", 0);
        json_value *mv = NULL;
        double cov = NAN;
        if (meta && json_parse(meta, strlen(meta), "metadata", &mv, NULL) == 0)
            cov = json_num(json_get(json_get(mv, "metrics"), "coverage"), NAN);
        json_free(mv);
        if (isnan(cov))
            return flow_ctx_fail(c, FLOW_E_INPUT, "input 'coverage' (%s) has no `coverage` metric: "
                                 "bind a coverage node", node);
        gate_bounds(g, "coverage", cov, minc, NAN);
        snprintf(g->detail, sizeof g->detail, "character coverage of the test text %.2f%% (node %s); "
                 "the gate wants at least %.2f%%", 100 * cov, node, 100 * minc);
        if (g->status == GATE_FAIL)
            snprintf(g->detail + strlen(g->detail), sizeof g->detail - strlen(g->detail),
                     ": %.2f points short", 100 * (minc - cov));
    }
    const rp_variant *f = &r->v[r->final];
    const rp_variant *t = r->teacher >= 0 ? &r->v[r->teacher] : NULL;
    /* size */
    g = &r->gates[1];
    double lo = flow_param_float(c, "min_size_ratio"), hi = flow_param_float(c, "max_size_ratio");
    if (!t) {
        g->name = "size";
        g->status = GATE_SKIPPED;
        g->value = NAN;
        g->lo = lo;
        g->hi = hi;
        snprintf(g->detail, sizeof g->detail, "no teacher bound");
    } else {
        double ratio = t->bytes ? (double)f->bytes / (double)t->bytes : NAN;
        gate_bounds(g, "size", ratio, lo, hi);
        rp_bytes(f->bytes, a, sizeof a);
        rp_bytes(t->bytes, b, sizeof b);
        snprintf(g->detail, sizeof g->detail, "final model '%s' is %.4f of the teacher's bytes "
                 "(%s vs %s; 1/%.2f); the gate wants %.4f..%.4f", f->name, ratio, a, b,
                 ratio > 0 ? 1 / ratio : INFINITY, lo, hi);
        size_t l = strlen(g->detail);
        if (ratio > hi) snprintf(g->detail + l, sizeof g->detail - l, ": %.4f above the upper bound", ratio - hi);
        else if (ratio < lo) snprintf(g->detail + l, sizeof g->detail - l, ": %.4f below the lower bound", lo - ratio);
    }
    /* accuracy drop, relative to the teacher */
    g = &r->gates[2];
    double maxd = flow_param_float(c, "max_accuracy_drop");
    if (!t) {
        g->name = "accuracy_drop";
        g->status = GATE_SKIPPED;
        g->value = g->lo = NAN;
        g->hi = maxd;
        snprintf(g->detail, sizeof g->detail, "no teacher bound");
    } else {
        double drop = t->m.accuracy > 0 ? (t->m.accuracy - f->m.accuracy) / t->m.accuracy : 0;
        gate_bounds(g, "accuracy_drop", drop, NAN, maxd);
        if (drop >= 0)
            snprintf(g->detail, sizeof g->detail, "final model '%s' accuracy %.4f vs the teacher's "
                     "%.4f: a relative drop of %.2f%%; the gate allows %.2f%%", f->name, f->m.accuracy,
                     t->m.accuracy, 100 * drop, 100 * maxd);
        else
            snprintf(g->detail, sizeof g->detail, "final model '%s' accuracy %.4f vs the teacher's "
                     "%.4f: no drop (%.2f%% better); the gate allows a drop of %.2f%%", f->name,
                     f->m.accuracy, t->m.accuracy, -100 * drop, 100 * maxd);
        if (g->status == GATE_FAIL) {
            size_t l = strlen(g->detail);
            snprintf(g->detail + l, sizeof g->detail - l, ": %.2f points over", 100 * (drop - maxd));
        }
    }
    return 0;
}

static void set_metrics(flow_ctx *c, const rp_report *r)
{
    char name[200];
    for (int i = 0; i < r->nv; i++) {
        const rp_variant *v = &r->v[i];
        struct { const char *k; double x; } m[] = {
            { "accuracy", v->m.accuracy }, { "macro_f1", v->m.macro_f1 },
            { "params", (double)v->params }, { "bytes", (double)v->bytes },
            { "bits_per_weight", v->bits_per_weight }, { "compression", v->compression },
            { "kl", v->kl }, { "agreement", v->agreement },
            { "latency_ms_b1", v->latency_ms_b1 }, { "throughput_b32", v->throughput_b32 },
        };
        for (size_t k = 0; k < sizeof m / sizeof m[0]; k++) {
            if (!isfinite(m[k].x)) continue;
            snprintf(name, sizeof name, "%s.%s", v->name, m[k].k);
            flow_metric(c, name, m[k].x);
        }
    }
    for (int g = 0; g < RP_NGATES; g++) {
        if (!isfinite(r->gates[g].value)) continue;
        snprintf(name, sizeof name, "gate.%s", r->gates[g].name);
        flow_metric(c, name, r->gates[g].value);
    }
    flow_metric(c, "gates_failed", rp_gates_failed(r));
    flow_metric(c, "units", (double)r->units);
}

static int write_outputs(flow_ctx *c, const rp_report *r)
{
    flow_buf b;
    buf_init(&b);
    rp_write_md(r, &b);
    int rc = flow_out_write(c, "report.md", FLOW_PART_BYTES, b.data, b.len);
    b.len = 0;
    rp_write_json(r, &b);
    if (!rc) rc = flow_out_write(c, "report.json", FLOW_PART_BYTES, b.data, b.len);
    b.len = 0;
    rp_write_html(r, &b);
    if (!rc) rc = flow_out_write(c, "report.html", FLOW_PART_BYTES, b.data, b.len);
    b.len = 0;
    rp_write_timings(r, &b);
    if (!rc) rc = flow_out_write(c, "timings.json", FLOW_PART_BYTES, b.data, b.len);
    b.len = 0;
    rp_write_table(r, &b);
    flow_report(c, b.data);
    buf_release(&b);
    return rc;
}

/* Finds the final model among the variants (param `final`; "" = the row
 * of the last bound model). */
static int pick_final(flow_ctx *c, rp_report *r, int last_row)
{
    const char *want = flow_param_str(c, "final");
    if (!want || !*want) { r->final = last_row; return 0; }
    for (int i = 0; i < r->nv; i++)
        if (!strcmp(r->v[i].name, want)) { r->final = i; return 0; }
    flow_buf b;
    buf_init(&b);
    for (int i = 0; i < r->nv; i++) buf_printf(&b, "%s%s", i ? ", " : "", r->v[i].name);
    int rc = flow_ctx_fail(c, FLOW_E_INPUT, "final = \"%s\" is not one of the models bound to "
                           "`models` or `teacher` (%s)", want, b.data);
    buf_release(&b);
    return rc;
}

static void report_release(rp_report *r, scored *sc)
{
    for (int i = 0; i < r->nv; i++) {
        metrics_release(&r->v[i].m);
        if (sc) { free(sc[i].probs); free(sc[i].pred); free(sc[i].label_class); }
    }
    free(r->v);
    for (int i = 0; i < r->nc; i++) rp_curve_release(&r->c[i]);
    free(r->c);
    for (int k = 0; k < r->nclasses; k++) free(r->classes[k]);
    free(r->classes);
}

static int report_run(flow_ctx *c)
{
    corpus_view te;
    int rc = cview_read(c, "test", 0, &te);
    if (rc) return rc;
    rp_report r;
    memset(&r, 0, sizeof r);
    r.warn = !strcmp(flow_param_str(c, "gates"), "warn");
    r.threads = flow_threads(c);
    bert_set_threads(r.threads);
    int capcls = te.nlabels + 16;
    r.classes = xmalloc((size_t)capcls * sizeof *r.classes);
    for (int k = 0; k < te.nlabels; k++) r.classes[r.nclasses++] = xstrdup(te.labels[k]);
    for (size_t i = 0; i < te.n; i++) r.units += te.label[i] >= 0;
    int nm = flow_in_count(c, "models"), has_t = flow_in_count(c, "teacher") > 0;
    int timing = (int)flow_param_int(c, "timing_units");
    r.v = xcalloc((size_t)nm + 1, sizeof *r.v);
    scored *sc = xcalloc((size_t)nm + 1, sizeof *sc);
    r.teacher = -1;
    if (r.units == 0) {
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'test': no labelled units to score on (bind a "
                           "labelled split such as split.test)");
        goto out;
    }
    /* the teacher is row 0; a model that is the teacher's node shares its row */
    int last_row = 0;
    if (has_t) {
        if ((rc = score_model(c, "teacher", 0, &te, &r, &capcls, &r.v[0], &sc[0], timing))) goto out;
        r.nv = 1;
        r.teacher = 0;
        r.v[0].is_teacher = 1;
    }
    for (int i = 0; i < nm; i++) {
        flow_progress(c, (double)i / nm, "model %d/%d", i + 1, nm);
        char name[128];
        input_node(c, "models", i, name, sizeof name);
        if (has_t && !strcmp(name, r.v[0].name)) { last_row = 0; continue; }
        for (int j = has_t; j < r.nv; j++)
            if (!strcmp(name, r.v[j].name)) {
                rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'models': node '%s' is bound twice; "
                                   "list each model once", name);
                goto out;
            }
        if ((rc = score_model(c, "models", i, &te, &r, &capcls, &r.v[r.nv], &sc[r.nv], timing))) goto out;
        last_row = r.nv++;
    }
    if ((rc = pick_final(c, &r, last_row))) goto out;
    for (int i = 0; i < r.nv; i++) {
        rp_variant *v = &r.v[i];
        metrics_compute(&v->m, te.label, sc[i].pred, te.n, r.nclasses);
        v->is_final = i == r.final;
        v->compression = v->acc_delta = v->f1_delta = v->kl = v->agreement = NAN;
    }
    r.best = 0;
    for (int i = 1; i < r.nv; i++) if (r.v[i].m.macro_f1 > r.v[r.best].m.macro_f1) r.best = i;
    if (r.teacher >= 0) {
        const rp_variant *t = &r.v[r.teacher];
        for (int i = 0; i < r.nv; i++) {
            rp_variant *v = &r.v[i];
            v->compression = v->bytes ? (double)t->bytes / (double)v->bytes : NAN;
            v->acc_delta = v->m.accuracy - t->m.accuracy;
            v->f1_delta = v->m.macro_f1 - t->m.macro_f1;
            compare_teacher(&te, &sc[r.teacher], &sc[i], v);
        }
    }
    int nt = flow_in_count(c, "training");
    r.c = xcalloc((size_t)(nt ? nt : 1), sizeof *r.c);
    for (int i = 0; i < nt && !rc; i++) {
        rc = rp_curve_read(c, i, &r.c[i]);
        r.nc = i + 1;
    }
    if (rc || (rc = eval_gates(c, &r))) goto out;
    /* volatile labels of the timings */
    if (gethostname(r.host, sizeof r.host - 1) != 0) snprintf(r.host, sizeof r.host, "unknown");
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(r.date, sizeof r.date, "%Y-%m-%d %H:%M UTC", &tm);
    set_metrics(c, &r);
    if ((rc = write_outputs(c, &r))) goto out;
    flow_buf why;
    buf_init(&why);
    int failed = 0;
    for (int g = 0; g < RP_NGATES; g++)
        if (r.gates[g].status == GATE_FAIL) {
            buf_printf(&why, "%sgate '%s' failed: %s", failed ? "; " : "", r.gates[g].name, r.gates[g].detail);
            failed++;
        }
    if (failed && r.warn) {
        flow_log(c, "warning (gates = warn): %s\n", why.data);
    } else if (failed) {
        rc = flow_ctx_fail(c, FLOW_E_STAGE, "%d of %d gates failed: %s (set gates = warn to keep the "
                           "report without failing)", failed, RP_NGATES, why.data);
    }
    buf_release(&why);
out:
    report_release(&r, sc);
    free(sc);
    cview_release(&te);
    return rc;
}

const flow_stage stage_report = {
    .name = "report",
    .version = 4,   /* 4: every model's attention by query chunks on kernels/cpu/attention_gemm.c;
                     * 3: quantized models' attention by 64-query chunks (their
                     * probabilities' low bits: KL, agreement);
                     * 2: inputs labelled by their reference as written in the graph
                     * (was: the producing node's name from its metadata), in the key */
    .help = "every model variant side by side on the test split: size, accuracy, agreement with "
            "the teacher, speed; the seed's gates; report.md / .json / .html with SVG plots",
    .params = report_params, .nparams = sizeof report_params / sizeof report_params[0],
    .inputs = report_inputs, .ninputs = sizeof report_inputs / sizeof report_inputs[0],
    .outputs = report_outputs, .noutputs = sizeof report_outputs / sizeof report_outputs[0],
    .res = { .threads = 0, .gpus = 0, .cpu_fallback = 1 },
    .run = report_run,
    .key_extra = flow_key_input_refs,   /* the labels */
};
