/* baseline.c — the `baseline` stage: character n-gram TF-IDF features with
 * a linear classifier (multinomial logistic regression or linear SVM),
 * trained on a labelled corpus (split.train), with the regularisation
 * strength and the number of epochs chosen on dev by macro-F1 (or
 * accuracy), then scored on test when bound.  Output: a self-contained
 * classifier artifact of kind "tfidf-linear" (format in classifier.h) —
 * the floor every neural model must beat. */
#include "clf_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const flow_param_def baseline_params[] = {
    { "ngram_min", FLOW_P_INT, 0, "1", 1, 8, NULL, "shortest character n-gram (code points)" },
    { "ngram_max", FLOW_P_INT, 0, "3", 1, 8, NULL, "longest character n-gram (code points)" },
    { "hash_bits", FLOW_P_INT, 0, "20", 8, 26, NULL, "feature space 2^hash_bits hashed buckets" },
    { "min_df", FLOW_P_INT, 0, "2", 1, 1e9, NULL, "drop features seen in fewer training units" },
    { "sublinear_tf", FLOW_P_BOOL, 0, "true", 0, -1, NULL, "tf -> 1 + ln(tf)" },
    { "loss", FLOW_P_STRING, 0, "logreg", 0, -1, "logreg|svm",
      "logreg: multinomial logistic regression; svm: multiclass linear SVM (hinge)" },
    { "l2", FLOW_P_LIST, FLOW_P_FLOAT, "[0.00001, 0.00003]", 1e-9, 1.0, NULL,
      "L2 strengths tried; the best on dev is kept" },
    { "epochs", FLOW_P_INT, 0, "8", 1, 1000, NULL, "SGD epochs (the best epoch on dev is kept)" },
    { "class_weight", FLOW_P_STRING, 0, "none", 0, -1, "none|balanced",
      "balanced: weight classes by n / (classes * count)" },
    { "select", FLOW_P_STRING, 0, "macro_f1", 0, -1, "macro_f1|accuracy", "model selection metric on dev" },
    { "seed", FLOW_P_INT, 0, "1", 0, 1e15, NULL, "shuffling seed" },
};

static const flow_input_def baseline_inputs[] = {
    { "train", 0, 0, "labelled corpus to train on (split.train)" },
    { "dev", 1, 0, "labelled corpus for model selection (split.dev)" },
    { "test", 1, 0, "labelled corpus scored at the end (split.test)" },
    { "clean", 1, 0, "node whose part clean.json records the cleaning settings (clean)" },
};

static const flow_output_def baseline_outputs[] = {
    { "model.json", "kind tfidf-linear, config, labels, training summary" },
    { "weights", "safetensors: idf [D], W [C, D], b [C]" },
    { "clean.json", "cleaning settings applied to raw text before featurizing (when known)" },
};

typedef struct sel_state {
    flow_ctx *c;
    const sp_mat *dev;
    const int *dev_y;
    int *pred;
    int use_acc;
    double l2;
    int run, nruns, epochs;
    /* best so far */
    double best_score, best_l2;
    int best_epoch;
    linear_model best;
    clf_metrics best_dev;
} sel_state;

static int on_epoch(void *arg, int epoch, const linear_model *m)
{
    sel_state *s = arg;
    double frac = ((double)s->run * s->epochs + epoch) / ((double)s->nruns * s->epochs);
    if (!s->dev) {
        /* no dev: keep the last epoch of the first strength */
        if (s->run == 0) { linear_copy(&s->best, m); s->best_epoch = epoch; s->best_l2 = s->l2; }
        flow_progress(s->c, frac, "l2 %g epoch %d/%d", s->l2, epoch, s->epochs);
        return 0;
    }
    linear_predict(m, s->dev, s->pred);
    clf_metrics mt;
    metrics_compute(&mt, s->dev_y, s->pred, s->dev->nrows, m->ncls);
    double score = s->use_acc ? mt.accuracy : mt.macro_f1;
    flow_log(s->c, "l2 %g epoch %d: dev accuracy %.4f macro-F1 %.4f", s->l2, epoch, mt.accuracy, mt.macro_f1);
    flow_progress(s->c, frac, "l2 %g epoch %d/%d  dev acc %.3f f1 %.3f", s->l2, epoch, s->epochs,
                  mt.accuracy, mt.macro_f1);
    if (score > s->best_score) {
        s->best_score = score;
        s->best_epoch = epoch;
        s->best_l2 = s->l2;
        linear_copy(&s->best, m);
        metrics_release(&s->best_dev);
        s->best_dev = mt;
    } else {
        metrics_release(&mt);
    }
    return 0;
}

/* Maps a corpus's label ids onto the training label list by name. */
static int remap_labels(flow_ctx *c, const char *port, corpus_view *cv, char *const *labels, int n)
{
    for (size_t i = 0; i < cv->n; i++) {
        if (cv->label[i] < 0) continue;
        int k = labels_find(labels, n, cv->labels[cv->label[i]]);
        if (k < 0)
            return flow_ctx_fail(c, FLOW_E_INPUT, "input '%s': label '%s' (unit %zu) does not occur in the training labels",
                                 port, cv->labels[cv->label[i]], i + 1);
        cv->label[i] = k;
    }
    return 0;
}

static void featurize(const tfidf_config *tc, const float *idf, const corpus_view *cv, sp_mat *x)
{
    tfidf_counts(tc, cv->text, cv->len, cv->n, x);
    tfidf_transform(tc, idf, x);
}

static void add_metrics(flow_ctx *c, const char *prefix, const clf_metrics *m)
{
    char name[64];
    snprintf(name, sizeof name, "%s.accuracy", prefix);
    flow_metric(c, name, m->accuracy);
    snprintf(name, sizeof name, "%s.macro_f1", prefix);
    flow_metric(c, name, m->macro_f1);
    snprintf(name, sizeof name, "%s.units", prefix);
    flow_metric(c, name, (double)m->n);
}

/* One run of the stage: its parameters, the splits, features, the chosen
 * model; everything owned here is released by bl_release. */
typedef struct bl_run {
    flow_ctx *c;
    tfidf_config tc;
    int loss, epochs, min_df, balanced, nl2;
    uint64_t seed;
    corpus_view tr, dv, te;
    int has_dev, has_test, C;
    size_t ntrain, D;
    int64_t *count;             /* labelled train units per class */
    float *idf, *cw;            /* cw: balanced class weights, or NULL */
    sp_mat xtr, xdv, xte;
    sel_state s;
} bl_run;

static int bl_params(bl_run *B)
{
    flow_ctx *c = B->c;
    B->tc = (tfidf_config){
        .ngram_min = (int)flow_param_int(c, "ngram_min"),
        .ngram_max = (int)flow_param_int(c, "ngram_max"),
        .hash_bits = (int)flow_param_int(c, "hash_bits"),
        .sublinear_tf = flow_param_bool(c, "sublinear_tf"),
    };
    if (B->tc.ngram_max < B->tc.ngram_min)
        return flow_ctx_fail(c, FLOW_E_PARAM, "ngram_max %d is below ngram_min %d", B->tc.ngram_max, B->tc.ngram_min);
    B->loss = strcmp(flow_param_str(c, "loss"), "svm") == 0 ? LOSS_HINGE : LOSS_LOG;
    B->epochs = (int)flow_param_int(c, "epochs");
    B->min_df = (int)flow_param_int(c, "min_df");
    B->seed = (uint64_t)flow_param_int(c, "seed");
    B->balanced = strcmp(flow_param_str(c, "class_weight"), "balanced") == 0;
    B->nl2 = flow_param_list_len(c, "l2");
    if (B->nl2 < 1) return flow_ctx_fail(c, FLOW_E_PARAM, "l2 must list at least one strength");
    return 0;
}

/* Reads train (and dev, test when bound) with dev/test labels mapped onto
 * train's; counts the labelled train units per class. */
static int bl_read(bl_run *B)
{
    flow_ctx *c = B->c;
    int rc;
    B->has_dev = flow_in_count(c, "dev") > 0;
    B->has_test = flow_in_count(c, "test") > 0;
    if ((rc = cview_read(c, "train", 0, &B->tr))) return rc;
    if (B->has_dev && (rc = cview_read(c, "dev", 0, &B->dv))) return rc;
    if (B->has_test && (rc = cview_read(c, "test", 0, &B->te))) return rc;
    if (B->tr.nlabels < 2)
        return flow_ctx_fail(c, FLOW_E_INPUT, "input 'train': a classifier needs at least 2 labels, the corpus has %d (is it a labelled split?)",
                             B->tr.nlabels);
    if (B->has_dev && (rc = remap_labels(c, "dev", &B->dv, B->tr.labels, B->tr.nlabels))) return rc;
    if (B->has_test && (rc = remap_labels(c, "test", &B->te, B->tr.labels, B->tr.nlabels))) return rc;
    B->C = B->tr.nlabels;
    B->count = xcalloc((size_t)B->C, sizeof *B->count);
    for (size_t i = 0; i < B->tr.n; i++)
        if (B->tr.label[i] >= 0) { B->ntrain++; B->count[B->tr.label[i]]++; }
    if (B->ntrain == 0) return flow_ctx_fail(c, FLOW_E_INPUT, "input 'train': no labelled units");
    flow_log(c, "train %zu labelled units, %d classes; dev %zu; test %zu", B->ntrain, B->C, B->dv.n, B->te.n);
    return 0;
}

/* TF-IDF: idf fitted on train (min_df), every split transformed. */
static void bl_features(bl_run *B)
{
    flow_ctx *c = B->c;
    B->D = (size_t)1 << B->tc.hash_bits;
    B->idf = xmalloc(B->D * sizeof *B->idf);
    flow_progress(c, 0.0, "featurizing");
    tfidf_counts(&B->tc, B->tr.text, B->tr.len, B->tr.n, &B->xtr);
    tfidf_fit_idf(&B->tc, &B->xtr, B->min_df, B->idf);
    tfidf_transform(&B->tc, B->idf, &B->xtr);
    if (B->has_dev) featurize(&B->tc, B->idf, &B->dv, &B->xdv);
    if (B->has_test) featurize(&B->tc, B->idf, &B->te, &B->xte);
    size_t kept = 0;
    for (size_t j = 0; j < B->D; j++) kept += B->idf[j] > 0;
    flow_log(c, "features: %zu of %zu buckets used (min_df %d), %zu non-zeros in train",
             kept, B->D, B->min_df, B->xtr.nnz);
    flow_metric(c, "features", (double)kept);
}

/* One model per l2 strength; on_epoch keeps the best epoch of all (by dev
 * accuracy or macro-F1) in B->s. */
static void bl_select(bl_run *B)
{
    flow_ctx *c = B->c;
    if (B->balanced) {
        B->cw = xmalloc((size_t)B->C * sizeof *B->cw);
        for (int k = 0; k < B->C; k++)
            B->cw[k] = B->count[k] ? (float)((double)B->ntrain / ((double)B->C * (double)B->count[k])) : 0.0f;
    }
    sel_state *s = &B->s;
    s->c = c;
    s->dev = B->has_dev ? &B->xdv : NULL;
    s->dev_y = B->dv.label;
    s->pred = xmalloc((B->dv.n + B->te.n + 1) * sizeof *s->pred);
    s->use_acc = strcmp(flow_param_str(c, "select"), "accuracy") == 0;
    s->best_score = -1;
    s->nruns = B->nl2;
    s->epochs = B->epochs;
    linear_init(&s->best, B->C, B->D);
    for (int r = 0; r < B->nl2; r++) {
        linear_model m;
        linear_init(&m, B->C, B->D);
        s->run = r;
        s->l2 = flow_param_list_float(c, "l2", r);
        linear_opts o = { .loss = B->loss, .l2 = s->l2, .epochs = B->epochs, .seed = B->seed,
                          .class_weight = B->cw, .on_epoch = on_epoch, .arg = s };
        linear_train(&m, &B->xtr, B->tr.label, &o);
        linear_release(&m);
    }
    flow_log(c, "selected l2 %g, epoch %d", s->best_l2, s->best_epoch);
    flow_metric(c, "selected.l2", s->best_l2);
    flow_metric(c, "selected.epoch", s->best_epoch);
}

/* The report and the training summary (JSON): selection, dev and test
 * metrics (the test split scored with the chosen model). */
static void bl_summary(bl_run *B, flow_buf *report, flow_buf *training)
{
    flow_ctx *c = B->c;
    const sel_state *s = &B->s;
    buf_printf(report, "baseline (char %d-%d-gram TF-IDF, %s, l2 %g, epoch %d)\n",
               B->tc.ngram_min, B->tc.ngram_max, B->loss == LOSS_LOG ? "logreg" : "svm", s->best_l2, s->best_epoch);
    buf_printf(training, "{\"train_units\":%zu,\"selected_l2\":", B->ntrain);
    buf_json_num(training, s->best_l2);
    buf_printf(training, ",\"selected_epoch\":%d", s->best_epoch);
    if (B->has_dev) {
        add_metrics(c, "dev", &s->best_dev);
        buf_printf(report, "  dev   accuracy %.4f  macro-F1 %.4f  (%lld units)\n",
                   s->best_dev.accuracy, s->best_dev.macro_f1, (long long)s->best_dev.n);
        buf_adds(training, ",\"dev_accuracy\":");
        buf_json_num(training, s->best_dev.accuracy);
        buf_adds(training, ",\"dev_macro_f1\":");
        buf_json_num(training, s->best_dev.macro_f1);
    }
    if (B->has_test) {
        clf_metrics mt;
        linear_predict(&s->best, &B->xte, s->pred);
        metrics_compute(&mt, B->te.label, s->pred, B->te.n, B->C);
        add_metrics(c, "test", &mt);
        buf_printf(report, "  test  accuracy %.4f  macro-F1 %.4f  (%lld units)\n",
                   mt.accuracy, mt.macro_f1, (long long)mt.n);
        buf_adds(training, ",\"test_accuracy\":");
        buf_json_num(training, mt.accuracy);
        buf_adds(training, ",\"test_macro_f1\":");
        buf_json_num(training, mt.macro_f1);
        metrics_release(&mt);
    }
    buf_addc(training, '}');
}

/* The artifact: model.json, weights (safetensors: idf, W, b) and the
 * cleaning settings (from the clean node, else passed along by the split). */
static int bl_write(bl_run *B, const char *training)
{
    flow_ctx *c = B->c;
    flow_buf config, mj;
    buf_init(&config);
    buf_init(&mj);
    buf_printf(&config, "{\"ngram_min\":%d,\"ngram_max\":%d,\"hash_bits\":%d,\"sublinear_tf\":%s,"
               "\"min_df\":%d,\"loss\":\"%s\",\"class_weight\":\"%s\"}",
               B->tc.ngram_min, B->tc.ngram_max, B->tc.hash_bits, B->tc.sublinear_tf ? "true" : "false",
               B->min_df, B->loss == LOSS_LOG ? "logreg" : "svm", B->balanced ? "balanced" : "none");
    model_json_write(&mj, "tfidf-linear", config.data, B->tr.labels, B->C, training);
    int rc = flow_out_write(c, "model.json", FLOW_PART_BYTES, mj.data, mj.len);
    if (!rc) {
        st_file w;
        st_init(&w);
        st_set_meta(&w, "format", "pt");
        int64_t dD[1] = { (int64_t)B->D }, dW[2] = { B->C, (int64_t)B->D }, dB[1] = { B->C };
        st_add(&w, "idf", ST_F32, 1, dD, B->idf);
        st_add(&w, "W", ST_F32, 2, dW, B->s.best.W);
        st_add(&w, "b", ST_F32, 1, dB, B->s.best.b);
        rc = st_write(&w, c, "weights");
        st_release(&w);
    }
    if (!rc) {
        const char *port = flow_in_count(c, "clean") > 0 ? "clean" : "train";
        if (flow_in_has(c, port, 0, "clean.json")) {
            char *cj;
            size_t cl;
            rc = flow_in_read(c, port, 0, "clean.json", &cj, &cl);
            if (!rc) rc = flow_out_write(c, "clean.json", FLOW_PART_BYTES, cj, cl);
            free(cj);
        } else if (flow_in_count(c, "clean") > 0) {
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'clean' has no part clean.json (bind it to the clean node)");
        }
    }
    buf_release(&mj);
    buf_release(&config);
    return rc;
}

static void bl_release(bl_run *B)
{
    linear_release(&B->s.best);
    metrics_release(&B->s.best_dev);
    free(B->s.pred);
    free(B->cw);
    free(B->count);
    free(B->idf);
    sp_release(&B->xtr);
    sp_release(&B->xdv);
    sp_release(&B->xte);
    cview_release(&B->tr);
    cview_release(&B->dv);
    cview_release(&B->te);
}

static int baseline_run(flow_ctx *c)
{
    bl_run B;
    memset(&B, 0, sizeof B);
    B.c = c;
    int rc = bl_params(&B);
    if (rc) return rc;
    if (!(rc = bl_read(&B))) {
        bl_features(&B);
        bl_select(&B);
        flow_buf report, training;
        buf_init(&report);
        buf_init(&training);
        bl_summary(&B, &report, &training);
        flow_report(c, report.data);
        rc = bl_write(&B, training.data);
        buf_release(&report);
        buf_release(&training);
    }
    bl_release(&B);
    return rc;
}

const flow_stage stage_baseline = {
    .name = "baseline",
    .version = 2,   /* 2: weights in safetensors, model.json version 2 */
    .help = "char n-gram TF-IDF + linear classifier (logreg or SVM), selected on dev: the floor",
    .params = baseline_params, .nparams = sizeof baseline_params / sizeof baseline_params[0],
    .inputs = baseline_inputs, .ninputs = sizeof baseline_inputs / sizeof baseline_inputs[0],
    .outputs = baseline_outputs, .noutputs = sizeof baseline_outputs / sizeof baseline_outputs[0],
    .res = { .threads = 1, .gpus = 0, .cpu_fallback = 1 },
    .run = baseline_run,
};
