/* cls_train.c — the pieces finetune and distill share (cls_train.h):
 * encoded sequences for training, batches, the dev score, label names and
 * a bert artifact as an initialisation. */
#include "cls_train.h"

#include <stdlib.h>
#include <string.h>

/* "input 'train'", or "input 'unlabelled' #2" for a many-port's 2nd binding. */
static void input_name(flow_ctx *c, const char *port, int idx, char *out, size_t n)
{
    if (flow_in_count(c, port) > 1) snprintf(out, n, "input '%s' #%d", port, idx + 1);
    else snprintf(out, n, "input '%s'", port);
}

int cls_data_load(flow_ctx *c, const char *port, int idx, int vocab, int nlabels, int labelled,
                  cls_data *d)
{
    memset(d, 0, sizeof *d);
    char what[96];
    input_name(c, port, idx, what, sizeof what);
    int rc = encv_read(c, port, idx, &d->v);
    if (rc) return rc;
    if (labelled && !d->v.label)
        return flow_ctx_fail(c, FLOW_E_INPUT, "%s has no labels part: bind a labelled encoded split (encode.train)", what);
    for (uint64_t i = 0; i < d->v.nids; i++)
        if (d->v.ids[i] < 0 || d->v.ids[i] >= vocab)
            return flow_ctx_fail(c, FLOW_E_INPUT, "%s: token id %d is outside the model's vocabulary of %d (another tokenizer?)",
                                 what, d->v.ids[i], vocab);
    d->len = xmalloc((d->v.n ? d->v.n : 1) * sizeof *d->len);
    d->usable = xmalloc((d->v.n ? d->v.n : 1) * sizeof *d->usable);
    for (size_t i = 0; i < d->v.n; i++) {
        d->len[i] = (uint32_t)(d->v.off[i + 1] - d->v.off[i]);
        int y = cls_label(d, i);
        if (y >= nlabels)
            return flow_ctx_fail(c, FLOW_E_INPUT, "%s: sequence %zu has label id %d but there are %d label names",
                                 what, i, y, nlabels);
        if ((y >= 0 || !labelled) && d->len[i] >= 2) d->usable[d->nusable++] = (uint32_t)i;
    }
    return 0;
}

void cls_data_release(cls_data *d)
{
    encv_release(&d->v);
    free(d->len);
    free(d->usable);
    memset(d, 0, sizeof *d);
}

void cls_fill(tr_batch *b, const cls_data *d, const uint32_t *seq, size_t n, int *lens)
{
    for (size_t r = 0; r < n; r++) {
        lens[r] = tr_batch_row(b, (int)r, d->v.ids + d->v.off[seq[r]], (int)d->len[seq[r]]);
        b->labels[r] = cls_label(d, seq[r]);
    }
    tr_batch_finish(b, (int)n, lens);
}

int cls_dev_score(flow_ctx *c, bert_model *m, const cls_data *dev, int batch, tr_batch *b,
                  int *lens, clf_metrics *out)
{
    tr_epoch e;
    tr_epoch_build(&e, dev->usable, dev->nusable, dev->len, batch, 0, 0);
    int *gold = xmalloc((dev->nusable + 1) * sizeof *gold), *pred = xmalloc((dev->nusable + 1) * sizeof *pred);
    size_t k = 0;
    int rc = 0, C = m->cfg.num_labels;
    flow_err err = { 0 };
    for (size_t q = 0; q < e.nbatches && !rc; q++) {
        cls_fill(b, dev, e.seq + e.start[q], e.count[q], lens);
        bert_batch bb = { .B = b->B, .T = b->T, .ids = b->ids, .attn_mask = b->mask };
        bert_output o;
        if ((rc = bert_forward(m, &bb, BERT_HEAD_CLASSIFY, 0, &o, &err))) {
            rc = flow_ctx_fail(c, rc, "dev evaluation: %s", err.msg);
            break;
        }
        for (int r = 0; r < b->B; r++, k++) {
            int best = 0;
            for (int j = 1; j < C; j++) if (o.logits[(size_t)r * C + j] > o.logits[(size_t)r * C + best]) best = j;
            pred[k] = best;
            gold[k] = b->labels[r];
        }
    }
    if (!rc) metrics_compute(out, gold, pred, k, C);
    tr_epoch_release(&e);
    free(gold);
    free(pred);
    return rc;
}

int cls_read_labels(flow_ctx *c, const char *port, char ***labels, int *n)
{
    char *names = NULL;
    size_t nlen;
    *labels = NULL;
    *n = 0;
    if (!flow_in_has(c, port, 0, "label_names"))
        return flow_ctx_fail(c, FLOW_E_INPUT, "input '%s' has no label_names part: bind an encoded labelled split (encode.train)", port);
    int rc = flow_in_read(c, port, 0, "label_names", &names, &nlen);
    if (rc) return rc;
    *labels = xmalloc((nlen + 2) * sizeof **labels);
    for (char *p = names; p < names + nlen;) {
        char *nl = memchr(p, '\n', (size_t)(names + nlen - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(names + nlen - p);
        (*labels)[*n] = xmalloc(l + 1);
        memcpy((*labels)[*n], p, l);
        (*labels)[(*n)++][l] = 0;
        p += l + 1;
    }
    free(names);
    return 0;
}

void cls_labels_free(char **labels, int n)
{
    for (int k = 0; k < n; k++) free(labels[k]);
    free(labels);
}

int cls_artifact_config(flow_ctx *c, const char *port, bert_config *cfg, st_file *w,
                        json_value **json)
{
    flow_err err = { 0 };
    char what[96], *mj, *wd;
    size_t ml, wl;
    json_value *bj = NULL;
    snprintf(what, sizeof what, "input '%s'", port);
    bert_config_default(cfg);
    int rc = flow_in_read(c, port, 0, "model.json", &mj, &ml);
    if (rc) return flow_ctx_fail(c, rc, "%s is not a model artifact (no model.json)", what);
    rc = json_parse(mj, ml, what, &bj, &err);
    free(mj);
    if (!rc) rc = model_json_check(bj, what, &err);
    const char *kind = json_str(json_get(bj, "kind"), "");
    if (!rc && strncmp(kind, "bert-", 5) != 0)
        rc = flow_fail(&err, FLOW_E_INPUT, "%s (%s) is a '%s' model; bind a bert model (pretrain, finetune or a "
                       "compress stage)", what, flow_in_name(c, port, 0), kind);
    if (!rc) rc = bert_config_parse(json_get(bj, "config"), cfg, what, &err);
    if (json && !rc) *json = bj;
    else json_free(bj);
    if (rc) return flow_ctx_fail(c, rc, "%s", err.msg);
    if ((rc = flow_in_read(c, port, 0, "weights", &wd, &wl))) return rc;
    if ((rc = st_parse(w, wd, wl, what, &err))) return flow_ctx_fail(c, rc, "%s", err.msg);
    return 0;
}

int cls_artifact_load(flow_ctx *c, const char *port, bert_model *m, const bert_config *cfg,
                      const st_file *w, int *copied)
{
    bert_tensor *tab;
    int nt, ncopied = 0;
    flow_err err = { 0 };
    char what[96];
    snprintf(what, sizeof what, "input '%s'", port);
    if (bert_tensor_table(cfg, &tab, &nt, &err)) return flow_ctx_fail(c, FLOW_E_INPUT, "%s: %s", what, err.msg);
    size_t n = bert_param_count(cfg);
    float *src = xcalloc(n, sizeof *src);
    int rc = 0;
    for (int i = 0; i < nt && !rc; i++) {
        const float *p;
        int64_t shape[2] = { tab[i].shape[0], tab[i].shape[1] };
        if ((rc = st_get_f32(w, tab[i].name, tab[i].ndim, shape, &p, what, &err)))
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "%s", err.msg);
        else
            memcpy(src + tab[i].offset, p, tab[i].numel * sizeof(float));
    }
    if (!rc && (rc = bert_load_by_name(m, cfg, src, n, &ncopied, &err)))
        rc = flow_ctx_fail(c, rc, "%s: %s", what, err.msg);
    if (!rc) flow_log(c, "initialised %d of %d tensors from %s", ncopied, m->ntensors, port);
    if (copied) *copied = ncopied;
    free(src);
    free(tab);
    return rc;
}
