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

static int baseline_run(flow_ctx *c)
{
    tfidf_config tc = {
        .ngram_min = (int)flow_param_int(c, "ngram_min"),
        .ngram_max = (int)flow_param_int(c, "ngram_max"),
        .hash_bits = (int)flow_param_int(c, "hash_bits"),
        .sublinear_tf = flow_param_bool(c, "sublinear_tf"),
    };
    if (tc.ngram_max < tc.ngram_min)
        return flow_ctx_fail(c, FLOW_E_PARAM, "ngram_max %d is below ngram_min %d", tc.ngram_max, tc.ngram_min);
    int loss = strcmp(flow_param_str(c, "loss"), "svm") == 0 ? LOSS_HINGE : LOSS_LOG;
    int epochs = (int)flow_param_int(c, "epochs");
    int min_df = (int)flow_param_int(c, "min_df");
    uint64_t seed = (uint64_t)flow_param_int(c, "seed");
    int balanced = strcmp(flow_param_str(c, "class_weight"), "balanced") == 0;
    int nl2 = flow_param_list_len(c, "l2");
    if (nl2 < 1) return flow_ctx_fail(c, FLOW_E_PARAM, "l2 must list at least one strength");

    int rc = 0;
    corpus_view tr, dv, te;
    memset(&dv, 0, sizeof dv);
    memset(&te, 0, sizeof te);
    int has_dev = flow_in_count(c, "dev") > 0, has_test = flow_in_count(c, "test") > 0;
    if ((rc = cview_read(c, "train", 0, &tr))) return rc;
    if (has_dev && (rc = cview_read(c, "dev", 0, &dv))) goto out;
    if (has_test && (rc = cview_read(c, "test", 0, &te))) goto out;
    if (tr.nlabels < 2) {
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'train': a classifier needs at least 2 labels, the corpus has %d (is it a labelled split?)",
                           tr.nlabels);
        goto out;
    }
    if (has_dev && (rc = remap_labels(c, "dev", &dv, tr.labels, tr.nlabels))) goto out;
    if (has_test && (rc = remap_labels(c, "test", &te, tr.labels, tr.nlabels))) goto out;
    const int C = tr.nlabels;
    size_t ntrain = 0;
    int64_t *count = xcalloc((size_t)C, sizeof *count);
    for (size_t i = 0; i < tr.n; i++) if (tr.label[i] >= 0) { ntrain++; count[tr.label[i]]++; }
    if (ntrain == 0) {
        free(count);
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'train': no labelled units");
        goto out;
    }
    flow_log(c, "train %zu labelled units, %d classes; dev %zu; test %zu", ntrain, C, dv.n, te.n);

    /* features */
    size_t D = (size_t)1 << tc.hash_bits;
    float *idf = xmalloc(D * sizeof *idf);
    sp_mat xtr, xdv, xte;
    memset(&xdv, 0, sizeof xdv);
    memset(&xte, 0, sizeof xte);
    flow_progress(c, 0.0, "featurizing");
    tfidf_counts(&tc, tr.text, tr.len, tr.n, &xtr);
    tfidf_fit_idf(&tc, &xtr, min_df, idf);
    tfidf_transform(&tc, idf, &xtr);
    if (has_dev) featurize(&tc, idf, &dv, &xdv);
    if (has_test) featurize(&tc, idf, &te, &xte);
    size_t kept = 0;
    for (size_t j = 0; j < D; j++) kept += idf[j] > 0;
    flow_log(c, "features: %zu of %zu buckets used (min_df %d), %zu non-zeros in train",
             kept, D, min_df, xtr.nnz);
    flow_metric(c, "features", (double)kept);

    float *cw = NULL;
    if (balanced) {
        cw = xmalloc((size_t)C * sizeof *cw);
        for (int k = 0; k < C; k++)
            cw[k] = count[k] ? (float)((double)ntrain / ((double)C * (double)count[k])) : 0.0f;
    }

    sel_state s;
    memset(&s, 0, sizeof s);
    s.c = c;
    s.dev = has_dev ? &xdv : NULL;
    s.dev_y = dv.label;
    s.pred = xmalloc((dv.n + te.n + 1) * sizeof *s.pred);
    s.use_acc = strcmp(flow_param_str(c, "select"), "accuracy") == 0;
    s.best_score = -1;
    s.nruns = nl2;
    s.epochs = epochs;
    linear_init(&s.best, C, D);
    for (int r = 0; r < nl2; r++) {
        linear_model m;
        linear_init(&m, C, D);
        s.run = r;
        s.l2 = flow_param_list_float(c, "l2", r);
        linear_opts o = { .loss = loss, .l2 = s.l2, .epochs = epochs, .seed = seed,
                          .class_weight = cw, .on_epoch = on_epoch, .arg = &s };
        linear_train(&m, &xtr, tr.label, &o);
        linear_release(&m);
    }
    flow_log(c, "selected l2 %g, epoch %d", s.best_l2, s.best_epoch);
    flow_metric(c, "selected.l2", s.best_l2);
    flow_metric(c, "selected.epoch", s.best_epoch);

    flow_buf report, training, config;
    buf_init(&report);
    buf_init(&training);
    buf_init(&config);
    buf_printf(&report, "baseline (char %d-%d-gram TF-IDF, %s, l2 %g, epoch %d)\n",
               tc.ngram_min, tc.ngram_max, loss == LOSS_LOG ? "logreg" : "svm", s.best_l2, s.best_epoch);
    buf_printf(&training, "{\"train_units\":%zu,\"selected_l2\":", ntrain);
    buf_json_num(&training, s.best_l2);
    buf_printf(&training, ",\"selected_epoch\":%d", s.best_epoch);
    if (has_dev) {
        add_metrics(c, "dev", &s.best_dev);
        buf_printf(&report, "  dev   accuracy %.4f  macro-F1 %.4f  (%lld units)\n",
                   s.best_dev.accuracy, s.best_dev.macro_f1, (long long)s.best_dev.n);
        buf_adds(&training, ",\"dev_accuracy\":");
        buf_json_num(&training, s.best_dev.accuracy);
        buf_adds(&training, ",\"dev_macro_f1\":");
        buf_json_num(&training, s.best_dev.macro_f1);
    }
    if (has_test) {
        clf_metrics mt;
        linear_predict(&s.best, &xte, s.pred);
        metrics_compute(&mt, te.label, s.pred, te.n, C);
        add_metrics(c, "test", &mt);
        buf_printf(&report, "  test  accuracy %.4f  macro-F1 %.4f  (%lld units)\n",
                   mt.accuracy, mt.macro_f1, (long long)mt.n);
        buf_adds(&training, ",\"test_accuracy\":");
        buf_json_num(&training, mt.accuracy);
        buf_adds(&training, ",\"test_macro_f1\":");
        buf_json_num(&training, mt.macro_f1);
        metrics_release(&mt);
    }
    buf_addc(&training, '}');
    flow_report(c, report.data);
    buf_printf(&config, "{\"ngram_min\":%d,\"ngram_max\":%d,\"hash_bits\":%d,\"sublinear_tf\":%s,"
               "\"min_df\":%d,\"loss\":\"%s\",\"class_weight\":\"%s\"}",
               tc.ngram_min, tc.ngram_max, tc.hash_bits, tc.sublinear_tf ? "true" : "false",
               min_df, loss == LOSS_LOG ? "logreg" : "svm", balanced ? "balanced" : "none");

    flow_buf mj;
    buf_init(&mj);
    model_json_write(&mj, "tfidf-linear", config.data, tr.labels, C, training.data);
    rc = flow_out_write(c, "model.json", FLOW_PART_BYTES, mj.data, mj.len);
    if (!rc) {
        st_file w;
        st_init(&w);
        st_set_meta(&w, "format", "pt");
        int64_t dD[1] = { (int64_t)D }, dW[2] = { C, (int64_t)D }, dB[1] = { C };
        st_add(&w, "idf", ST_F32, 1, dD, idf);
        st_add(&w, "W", ST_F32, 2, dW, s.best.W);
        st_add(&w, "b", ST_F32, 1, dB, s.best.b);
        rc = st_write(&w, c, "weights");
        st_release(&w);
    }
    /* cleaning settings: from the clean node, else passed along by the split */
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
    buf_release(&report);
    buf_release(&training);
    buf_release(&config);
    linear_release(&s.best);
    metrics_release(&s.best_dev);
    free(s.pred);
    free(cw);
    free(count);
    free(idf);
    sp_release(&xtr);
    sp_release(&xdv);
    sp_release(&xte);
out:
    cview_release(&tr);
    cview_release(&dv);
    cview_release(&te);
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
