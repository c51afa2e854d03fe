/* classifier.c — loads a model artifact of any kind (format in
 * classifier.h) and turns text into label probabilities.  The one place
 * that knows how each kind goes from text to logits, shared by evaluate,
 * finetune (dev scoring happens in-stage), and the classify / eval / export
 * commands.  The bert kinds live in clf_bert.c. */
#include "classifier.h"
#include "clf_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *clf_kind(const clf_model *m) { return m->kind_name; }
int clf_nlabels(const clf_model *m) { return m->nlabels; }
const char *clf_label(const clf_model *m, int i) { return m->labels[i]; }

void clf_free(clf_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->nlabels; i++) free(m->labels[i]);
    free(m->labels);
    free(m->clean_json);
    clf_clean_free(m);
    st_release(&m->w);
    clf_bert_free(m);
    json_free(m->json);
    free(m);
}

static int load_tfidf(clf_model *m, flow_err *err)
{
    const json_value *cfg = json_get(m->json, "config");
    m->tc.ngram_min = (int)json_num(json_get(cfg, "ngram_min"), 0);
    m->tc.ngram_max = (int)json_num(json_get(cfg, "ngram_max"), 0);
    m->tc.hash_bits = (int)json_num(json_get(cfg, "hash_bits"), 0);
    m->tc.sublinear_tf = json_bool(json_get(cfg, "sublinear_tf"), 1);
    if (m->tc.ngram_min < 1 || m->tc.ngram_max < m->tc.ngram_min || m->tc.ngram_max > 8 ||
        m->tc.hash_bits < 8 || m->tc.hash_bits > 28)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: model.json has an invalid tfidf config (ngram %d..%d, hash_bits %d)",
                         m->what, m->tc.ngram_min, m->tc.ngram_max, m->tc.hash_bits);
    int64_t D = (int64_t)1 << m->tc.hash_bits, C = m->nlabels, sD[1] = { D }, sW[2] = { C, D }, sB[1] = { C };
    int rc;
    if ((rc = st_get_f32(&m->w, "idf", 1, sD, &m->idf, m->what, err)) ||
        (rc = st_get_f32(&m->w, "W", 2, sW, &m->W, m->what, err)) ||
        (rc = st_get_f32(&m->w, "b", 1, sB, &m->b, m->what, err)))
        return rc;
    return 0;
}

int clf_load(part_source *src, clf_model **out, flow_err *err)
{
    *out = NULL;
    clf_model *m = xcalloc(1, sizeof *m);
    snprintf(m->what, sizeof m->what, "%s", src->what);
    char *data;
    size_t len;
    int rc = src->read(src->arg, "model.json", &data, &len, err);
    if (rc) {
        flow_fail(err, rc == FLOW_E_NOTFOUND ? FLOW_E_INPUT : rc,
                  "%s is not a model artifact (no part model.json): %s", m->what, err ? err->msg : "");
        goto fail;
    }
    char what[256];
    snprintf(what, sizeof what, "%s: model.json", m->what);
    rc = json_parse(data, len, what, &m->json, err);
    free(data);
    if (rc) goto fail;
    if ((rc = model_json_check(m->json, m->what, err))) goto fail;
    snprintf(m->kind_name, sizeof m->kind_name, "%s", json_str(json_get(m->json, "kind"), "?"));
    const json_value *labels = json_get(m->json, "labels");
    if (json_typeof(labels) == JSON_ARR) {
        m->nlabels = json_len(labels);
        m->labels = xcalloc((size_t)(m->nlabels ? m->nlabels : 1), sizeof *m->labels);
        for (int i = 0; i < m->nlabels; i++) m->labels[i] = xstrdup(json_str(json_at(labels, i), ""));
    }
    rc = src->read(src->arg, "clean.json", &m->clean_json, &m->clean_len, err);
    if (rc && rc != FLOW_E_NOTFOUND) goto fail;
    if (rc == 0 && (rc = clf_clean_setup(m, err))) goto fail;
    rc = src->read(src->arg, "weights", &data, &len, err);
    if (rc) goto fail;
    snprintf(what, sizeof what, "%s: weights", m->what);
    if ((rc = st_parse(&m->w, data, len, what, err))) goto fail;

    if (strcmp(m->kind_name, "tfidf-linear") == 0) {
        m->kind = CLF_TFIDF;
        if (m->nlabels < 1) {
            rc = flow_fail(err, FLOW_E_CORRUPT, "%s: model.json has no labels", m->what);
            goto fail;
        }
        rc = load_tfidf(m, err);
    } else if (strncmp(m->kind_name, "bert-", 5) == 0) {
        m->kind = CLF_BERT;
        rc = clf_bert_load(m, src, err);
    } else {
        rc = flow_fail(err, FLOW_E_INPUT, "%s: unknown model kind '%s' (this flow knows tfidf-linear, bert-cls, bert-mlm)",
                       m->what, m->kind_name);
    }
    if (rc) goto fail;
    *out = m;
    return 0;
fail:
    clf_free(m);
    return rc ? rc : FLOW_E_CORRUPT;
}

static void predict_tfidf(const clf_model *m, const char *const *text, const size_t *len,
                          size_t n, float *probs)
{
    sp_mat x;
    tfidf_counts(&m->tc, text, len, n, &x);
    tfidf_transform(&m->tc, m->idf, &x);
    size_t D = (size_t)1 << m->tc.hash_bits;
    for (size_t r = 0; r < n; r++) {
        float *z = probs + r * (size_t)m->nlabels;
        for (int k = 0; k < m->nlabels; k++) {
            const float *w = m->W + (size_t)k * D;
            double acc = m->b[k];
            for (size_t q = x.rowptr[r]; q < x.rowptr[r + 1]; q++) acc += (double)w[x.idx[q]] * x.val[q];
            z[k] = (float)acc;
        }
        softmax_inplace(z, m->nlabels);
    }
    sp_release(&x);
}

int clf_predict(clf_model *m, const char *const *text, const size_t *len, size_t n,
                int raw, float *probs, flow_err *err)
{
    char **cleaned = NULL;
    size_t *clen = NULL;
    if (raw && m->has_clean) {
        cleaned = xmalloc((n ? n : 1) * sizeof *cleaned);
        clen = xmalloc((n ? n : 1) * sizeof *clen);
        for (size_t i = 0; i < n; i++) cleaned[i] = clf_clean(m, text[i], len[i], &clen[i]);
        text = (const char *const *)cleaned;
        len = clen;
    }
    int rc = 0;
    if (m->kind == CLF_TFIDF) predict_tfidf(m, text, len, n, probs);
    else rc = clf_bert_predict(m, text, len, n, probs, err);
    if (cleaned) {
        for (size_t i = 0; i < n; i++) free(cleaned[i]);
        free(cleaned);
        free(clen);
    }
    return rc;
}
