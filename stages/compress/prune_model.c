/* prune_model.c — importance scores, the choice of what to keep and the
 * physical removal of attention heads and FFN neurons (contract and the
 * score's definition in prune.h). */
#include "prune.h"
#include "stages/model/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void prune_scores_release(prune_scores *s)
{
    for (int l = 0; l < BERT_MAX_LAYERS; l++) { free(s->head[l]); free(s->ffn[l]); }
    memset(s, 0, sizeof *s);
}

void prune_keep_release(prune_keep *k)
{
    for (int l = 0; l < BERT_MAX_LAYERS; l++) { free(k->head[l]); free(k->ffn[l]); }
    memset(k, 0, sizeof *k);
}

/* The tensor "bert.encoder.layer.<l>.<rest>" of m (it exists for every
 * layer of a valid table). */
static const bert_tensor *layer_tensor(const bert_model *m, int l, const char *rest)
{
    char name[96];
    snprintf(name, sizeof name, "bert.encoder.layer.%d.%s", l, rest);
    const bert_tensor *t = bert_find_tensor(m, name);
    if (!t) FLOW_BUG("prune: model has no tensor %s", name);
    return t;
}

/* sum of w*g over rows r0 .. r0+nr-1 of a [rows, width] tensor */
static double rows_dot(const float *w, const float *g, size_t r0, size_t nr, size_t width)
{
    double s = 0;
    for (size_t i = r0 * width; i < (r0 + nr) * width; i++) s += (double)w[i] * g[i];
    return s;
}

/* sum of w*g over columns c0 .. c0+nc-1 of a [rows, cols] tensor */
static double cols_dot(const float *w, const float *g, size_t rows, size_t cols, size_t c0, size_t nc)
{
    double s = 0;
    for (size_t r = 0; r < rows; r++)
        for (size_t k = c0; k < c0 + nc; k++) s += (double)w[r * cols + k] * g[r * cols + k];
    return s;
}

void prune_score_add(const bert_model *m, double weight, prune_scores *s)
{
    const bert_config *c = &m->cfg;
    const float *P = m->params, *G = m->grads;
    size_t H = (size_t)c->hidden, d = (size_t)c->head_size;
    for (int l = 0; l < c->layers; l++) {
        size_t A = (size_t)bert_attn_width(c, l), I = (size_t)c->ffn[l];
        /* query, key, value weights are one [3A, H] block, biases one [3A] */
        size_t qw = layer_tensor(m, l, "attention.self.query.weight")->offset;
        size_t qb = layer_tensor(m, l, "attention.self.query.bias")->offset;
        size_t ow = layer_tensor(m, l, "attention.output.dense.weight")->offset;
        for (int h = 0; h < c->heads[l]; h++) {
            double sum = cols_dot(P + ow, G + ow, H, A, (size_t)h * d, d);
            for (size_t part = 0; part < 3; part++) {
                sum += rows_dot(P + qw, G + qw, part * A + (size_t)h * d, d, H);
                sum += rows_dot(P + qb, G + qb, part * A + (size_t)h * d, d, 1);
            }
            s->head[l][h] += weight * fabs(sum);
        }
        size_t iw = layer_tensor(m, l, "intermediate.dense.weight")->offset;
        size_t ib = layer_tensor(m, l, "intermediate.dense.bias")->offset;
        size_t fw = layer_tensor(m, l, "output.dense.weight")->offset;
        for (size_t j = 0; j < I; j++) {
            double sum = rows_dot(P + iw, G + iw, j, 1, H) + (double)P[ib + j] * G[ib + j] +
                         cols_dot(P + fw, G + fw, H, I, j, 1);
            s->ffn[l][j] += weight * fabs(sum);
        }
    }
}

int prune_score(bert_model *m, const prune_data *d, int batch, prune_scores *s, flow_err *e)
{
    const bert_config *c = &m->cfg;
    memset(s, 0, sizeof *s);
    s->layers = c->layers;
    for (int l = 0; l < c->layers; l++) {
        s->head[l] = xcalloc((size_t)c->heads[l], sizeof *s->head[l]);
        s->ffn[l] = xcalloc((size_t)c->ffn[l], sizeof *s->ffn[l]);
    }
    if (c->hidden_dropout != 0 || c->attn_dropout != 0 || !(c->mode & BERT_MODE_CLASSIFY) || batch > m->max_B)
        return flow_fail(e, FLOW_E_PARAM, "prune_score: needs a classifier without dropout and batch <= %d", m->max_B);
    uint32_t *len = xmalloc((d->n ? d->n : 1) * sizeof *len), *use = xmalloc((d->n ? d->n : 1) * sizeof *use);
    size_t nuse = 0;
    for (size_t i = 0; i < d->n; i++) {
        len[i] = (uint32_t)(d->off[i + 1] - d->off[i]);
        if (d->label[i] >= 0 && len[i] >= 2) use[nuse++] = (uint32_t)i;
    }
    int rc = 0;
    if (nuse == 0) rc = flow_fail(e, FLOW_E_INPUT, "no labelled calibration sequence (of %zu) to score with", d->n);
    tr_epoch ep;
    tr_epoch_build(&ep, use, nuse, len, batch, 0, 0);
    tr_batch b;
    tr_batch_init(&b, batch, m->max_T);
    int *lens = xmalloc((size_t)batch * sizeof *lens);
    for (size_t q = 0; q < ep.nbatches && !rc; q++) {
        for (size_t r = 0; r < ep.count[q]; r++) {
            uint32_t i = ep.seq[ep.start[q] + r];
            lens[r] = tr_batch_row(&b, (int)r, d->ids + d->off[i], (int)len[i]);
            b.labels[r] = d->label[i];
        }
        tr_batch_finish(&b, (int)ep.count[q], lens);
        bert_batch bb = { .B = b.B, .T = b.T, .ids = b.ids, .attn_mask = b.mask, .labels = b.labels };
        bert_output o;
        bert_zero_grad(m);
        if ((rc = bert_forward(m, &bb, BERT_HEAD_CLASSIFY, 1, &o, e)) || (rc = bert_backward(m, 1.0f, e))) break;
        double w = (double)b.B / (double)nuse;
        prune_score_add(m, w, s);
        s->loss += w * o.loss;
    }
    s->sequences = (long)nuse;
    bert_zero_grad(m);
    if (!rc && !isfinite(s->loss))
        rc = flow_fail(e, FLOW_E_INPUT, "the calibration loss is %g: the model diverged", s->loss);
    free(lens);
    tr_batch_release(&b);
    tr_epoch_release(&ep);
    free(len);
    free(use);
    return rc;
}

typedef struct ranked { double score; int layer, idx; } ranked;

static int by_score(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? -1 : 1;
    if (x->layer != y->layer) return x->layer - y->layer;
    return x->idx - y->idx;
}

void prune_choose(int layers, const int *counts, double *const *score, const int *want,
                  long total, uint8_t **out)
{
    long all = 0;
    for (int l = 0; l < layers; l++) {
        memset(out[l], 1, (size_t)counts[l]);
        all += counts[l];
    }
    ranked *r = xmalloc((size_t)(all ? all : 1) * sizeof *r);
    if (total >= 0) {                  /* global: least important anywhere first */
        long n = 0, drop = all - total;
        int left[BERT_MAX_LAYERS];
        for (int l = 0; l < layers; l++) {
            left[l] = counts[l];
            for (int j = 0; j < counts[l]; j++) r[n++] = (ranked){ score[l][j], l, j };
        }
        qsort(r, (size_t)n, sizeof *r, by_score);
        for (long k = 0; k < n && drop > 0; k++)
            if (left[r[k].layer] > 1) {
                out[r[k].layer][r[k].idx] = 0;
                left[r[k].layer]--;
                drop--;
            }
    } else {
        for (int l = 0; l < layers; l++) {
            for (int j = 0; j < counts[l]; j++) r[j] = (ranked){ score[l][j], l, j };
            qsort(r, (size_t)counts[l], sizeof *r, by_score);
            for (int k = 0; k < counts[l] - want[l]; k++) out[l][r[k].idx] = 0;
        }
    }
    free(r);
}

/* dst = the rows (groups of g rows of `width` floats) of src whose keep
 * flag is set, in order. */
static float *keep_rows(float *dst, const float *src, const uint8_t *keep, int n, size_t g, size_t width)
{
    for (int k = 0; k < n; k++)
        if (keep[k]) {
            memcpy(dst, src + (size_t)k * g * width, g * width * sizeof *dst);
            dst += g * width;
        }
    return dst;
}

/* dst [rows, kept*g] = the kept column groups of src [rows, n*g]. */
static void keep_cols(float *dst, const float *src, size_t rows, const uint8_t *keep, int n, size_t g)
{
    size_t cols = (size_t)n * g;
    for (size_t r = 0; r < rows; r++)
        for (int k = 0; k < n; k++)
            if (keep[k]) {
                memcpy(dst, src + r * cols + (size_t)k * g, g * sizeof *dst);
                dst += g;
            }
}

/* Copies tensor i of the old table (src) into the new one (dst),
 * selecting what keep keeps when it is a pruned encoder tensor. */
static void copy_tensor(const bert_config *c, const bert_tensor *ot, const float *src, float *dst,
                        const prune_keep *keep)
{
    int l;
    char rest[80];
    size_t H = (size_t)c->hidden, d = (size_t)c->head_size;
    if (sscanf(ot->name, "bert.encoder.layer.%d.%79s", &l, rest) != 2) {
        memcpy(dst, src, ot->numel * sizeof *dst);
        return;
    }
    const uint8_t *kh = keep->head[l], *kf = keep->ffn[l];
    int nh = c->heads[l], I = c->ffn[l];
    if (!strcmp(rest, "attention.self.query.weight") || !strcmp(rest, "attention.self.key.weight") ||
        !strcmp(rest, "attention.self.value.weight"))
        keep_rows(dst, src, kh, nh, d, H);
    else if (!strcmp(rest, "attention.self.query.bias") || !strcmp(rest, "attention.self.key.bias") ||
             !strcmp(rest, "attention.self.value.bias"))
        keep_rows(dst, src, kh, nh, d, 1);
    else if (!strcmp(rest, "attention.output.dense.weight"))
        keep_cols(dst, src, H, kh, nh, d);
    else if (!strcmp(rest, "intermediate.dense.weight"))
        keep_rows(dst, src, kf, I, 1, H);
    else if (!strcmp(rest, "intermediate.dense.bias"))
        keep_rows(dst, src, kf, I, 1, 1);
    else if (!strcmp(rest, "output.dense.weight"))
        keep_cols(dst, src, H, kf, I, 1);
    else
        memcpy(dst, src, ot->numel * sizeof *dst);
}

int prune_shrink(const bert_config *c, const float *params, const prune_keep *keep,
                 bert_config *oc, float **out, flow_err *e)
{
    *out = NULL;
    *oc = *c;
    for (int l = 0; l < c->layers; l++) {
        int nh = 0, nf = 0;
        for (int h = 0; h < c->heads[l]; h++) nh += keep->head[l][h] != 0;
        for (int j = 0; j < c->ffn[l]; j++) nf += keep->ffn[l][j] != 0;
        if (nh < 1 || nf < 1)
            return flow_fail(e, FLOW_E_PARAM, "prune: layer %d would keep %d heads and %d FFN neurons; "
                             "every layer keeps at least one of each", l, nh, nf);
        oc->heads[l] = nh;
        oc->ffn[l] = nf;
    }
    bert_tensor *ot, *nt;
    int on, nn;
    if (bert_tensor_table(c, &ot, &on, e)) return FLOW_E_PARAM;
    if (bert_tensor_table(oc, &nt, &nn, e)) { free(ot); return FLOW_E_PARAM; }
    if (on != nn) FLOW_BUG("prune: tables of %d and %d tensors", on, nn);
    float *p = xmalloc(bert_param_count(oc) * sizeof *p);
    for (int i = 0; i < nn; i++) {
        if (strcmp(ot[i].name, nt[i].name)) FLOW_BUG("prune: tensor %d is %s and %s", i, ot[i].name, nt[i].name);
        copy_tensor(c, &ot[i], params + ot[i].offset, p + nt[i].offset, keep);
    }
    free(ot);
    free(nt);
    *out = p;
    return 0;
}
