/* clf_bert.c — applying bert-cls model artifacts (and loading bert-mlm
 * ones for export): tokenizer/tokenizer.bin encodes the (cleaned) text as
 * [CLS] tokens [SEP], cut to the length the model was fine-tuned with,
 * exactly as the encode stage does; the CPU BERT gives the logits;
 * softmax gives the probabilities. */
#include "clf_internal.h"
#include "clf_bert.h"
#include "stages/model/qartifact.h"
#include "stages/tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#define CLF_BATCH 32

void clf_bert_free(clf_model *m)
{
    if (!m || !m->bert) return;
    bert_model_free(m->bert->model);
    bert_qmodel_free(m->bert->qmodel);
    tok_free(m->bert->tok);
    free(m->bert);
    m->bert = NULL;
}

int clf_bert_load(clf_model *m, part_source *src, flow_err *err)
{
    m->bert = xcalloc(1, sizeof *m->bert);
    struct clf_bert *cb = m->bert;
    int rc = bert_config_parse(json_get(m->json, "config"), &cb->cfg, m->what, err);
    if (rc) return rc;
    int want_mode = strcmp(m->kind_name, "bert-cls") == 0 ? BERT_MODE_CLASSIFY
                  : strcmp(m->kind_name, "bert-mlm") == 0 ? BERT_MODE_MLM : 0;
    if (!want_mode || (cb->cfg.mode & want_mode) == 0)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: kind '%s' does not match its config mode %d", m->what, m->kind_name, cb->cfg.mode);
    if (want_mode == BERT_MODE_CLASSIFY && m->nlabels != cb->cfg.num_labels)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: %d label names for num_labels %d", m->what, m->nlabels, cb->cfg.num_labels);
    cb->max_len = (int)json_num(json_get(json_get(m->json, "training"), "max_len"), cb->cfg.max_len);
    if (cb->max_len < 2 || cb->max_len > cb->cfg.max_len) cb->max_len = cb->cfg.max_len;

    char *data;
    size_t len;
    if ((rc = src->read(src->arg, "tokenizer/tokenizer.bin", &data, &len, err))) return rc;
    rc = tok_load(&cb->tok, data, len, err);
    free(data);
    if (rc) return rc;
    if (tok_vocab_size(cb->tok) != cb->cfg.vocab_size)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: tokenizer has %d tokens but the model's vocab_size is %d",
                         m->what, tok_vocab_size(cb->tok), cb->cfg.vocab_size);
    if ((rc = bert_model_new(&cb->cfg, CLF_BATCH, cb->max_len, &bert_device_cpu, &cb->model, err))) return rc;
    bert_model *bm = cb->model;
    int quantized = st_meta(&m->w, "quantization") != NULL;
    for (int i = 0; i < bm->ntensors; i++) {
        const bert_tensor *t = &bm->tensors[i];
        const float *p;
        if (quantized && qart_is_quantized(&m->w, t->name)) continue;   /* qart_load reads it */
        int64_t shape[2] = { t->shape[0], t->shape[1] };
        if ((rc = st_get_f32(&m->w, t->name, t->ndim, shape, &p, m->what, err))) return rc;
        memcpy(bm->params + t->offset, p, t->numel * sizeof(float));
    }
    if (quantized) {
        /* integer kernels for the encoder Linears; FLOW_QUANT_PATH errors surface here */
        if ((rc = quant_path_from_env(err))) return rc;
        if ((rc = qart_load(&m->w, &cb->cfg, &cb->qmodel, NULL, m->what, err))) return rc;
        /* int8 word embeddings expanded to fp32 rows; any other I8/U8 tensor refused */
        if ((rc = qart_load_rest(&m->w, bm, m->what, err))) return rc;
        bert_qmodel_attach(bm, cb->qmodel);
    }
    return bert_sync_to_device(bm, err);   /* the host copy was written */
}

int clf_bert_encode(const clf_model *m, const char *text, size_t len, int32_t *ids)
{
    const struct clf_bert *cb = m->bert;
    tok_out o;
    tok_out_init(&o);
    tok_encode(cb->tok, text, len, &o);
    int n = 0;
    ids[n++] = TOK_CLS;
    for (size_t k = 0; k < o.n && n < cb->max_len - 1; k++) ids[n++] = (int32_t)o.ids[k];
    ids[n++] = TOK_SEP;
    tok_out_release(&o);
    return n;
}

static const int *sort_lens;
static int by_len(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    if (sort_lens[x] != sort_lens[y]) return sort_lens[x] < sort_lens[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

int clf_bert_predict(clf_model *m, const char *const *text, const size_t *len, size_t n,
                     float *probs, flow_err *err)
{
    struct clf_bert *cb = m->bert;
    if (!cb || !(cb->cfg.mode & BERT_MODE_CLASSIFY))
        return flow_fail(err, FLOW_E_INPUT, "%s: a %s model has no classification head", m->what, m->kind_name);
    const int T = cb->max_len, C = cb->cfg.num_labels;
    /* encode everything, then run batches of similar length (less padding) */
    int32_t *all = xmalloc((n ? n : 1) * (size_t)T * sizeof *all);
    int *lens = xmalloc((n ? n : 1) * sizeof *lens), *ord = xmalloc((n ? n : 1) * sizeof *ord);
    for (size_t i = 0; i < n; i++) {
        lens[i] = clf_bert_encode(m, text[i], len[i], all + i * (size_t)T);
        ord[i] = (int)i;
    }
    sort_lens = lens;
    qsort(ord, n, sizeof *ord, by_len);
    int32_t *ids = xmalloc((size_t)CLF_BATCH * T * sizeof *ids), *mask = xmalloc((size_t)CLF_BATCH * T * sizeof *mask);
    int rc = 0;
    for (size_t s = 0; s < n && !rc; s += CLF_BATCH) {
        int B = n - s < CLF_BATCH ? (int)(n - s) : CLF_BATCH, maxl = 1;
        for (int r = 0; r < B; r++) if (lens[ord[s + r]] > maxl) maxl = lens[ord[s + r]];
        for (int r = 0; r < B; r++) {
            int i = ord[s + r];
            for (int t = 0; t < maxl; t++) {
                ids[(size_t)r * maxl + t] = t < lens[i] ? all[(size_t)i * T + t] : TOK_PAD;
                mask[(size_t)r * maxl + t] = t < lens[i];
            }
        }
        bert_batch bb = { .B = B, .T = maxl, .ids = ids, .attn_mask = mask };
        bert_output o;
        if ((rc = bert_forward(cb->model, &bb, BERT_HEAD_CLASSIFY, 0, &o, err))) break;
        for (int r = 0; r < B; r++) {
            float *p = probs + (size_t)ord[s + r] * (size_t)C;
            memcpy(p, o.logits + (size_t)r * C, (size_t)C * sizeof *p);
            softmax_inplace(p, C);
        }
    }
    free(all);
    free(lens);
    free(ord);
    free(ids);
    free(mask);
    return rc;
}
