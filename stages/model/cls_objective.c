/* cls_objective.c — finetune's classification objective as a
 * tr_objective (see cls_objective.h). */
#include "cls_objective.h"

#include <stdlib.h>
#include <string.h>

static int co_fill(void *self, tr_batch *b, const uint32_t *seq, size_t n, long epoch, bert_batch *bb)
{
    cls_objective *f = self;
    (void)epoch;
    cls_fill(b, &f->tr, seq, n, f->lens);
    *bb = (bert_batch){ .B = b->B, .T = b->T, .ids = b->ids, .attn_mask = b->mask, .labels = b->labels,
                        .class_weights = f->cw };
    return 1;
}

int cls_objective_dev(cls_objective *f, bert_model *m, clf_metrics *out)
{
    return cls_dev_score(f->c, m, &f->dv, f->batch, &f->devb, f->lens, out);
}

static int co_evaluate(void *self, bert_model *m, double *score, flow_buf *curve, flow_buf *log)
{
    cls_objective *f = self;
    clf_metrics mt;
    int rc = cls_objective_dev(f, m, &mt);
    if (rc) return rc;
    *score = mt.macro_f1;
    buf_printf(curve, "%.6f\t%.6f\n", mt.accuracy, mt.macro_f1);
    buf_printf(log, "accuracy %.4f macro-F1 %.4f", mt.accuracy, mt.macro_f1);
    metrics_release(&mt);
    return 0;
}

int cls_objective_init(flow_ctx *c, cls_objective *f, cls_data *train, cls_data *dev, int num_labels,
                       int batch, int T, int balanced)
{
    int C = num_labels;
    memset(f, 0, sizeof *f);
    f->c = c;
    if (train) {
        f->tr = *train;
        memset(train, 0, sizeof *train);
    }
    f->dv = *dev;
    memset(dev, 0, sizeof *dev);
    f->batch = batch;
    f->lens = xmalloc((size_t)f->batch * sizeof *f->lens);
    tr_batch_init(&f->devb, f->batch, T);
    if ((train && f->tr.nusable == 0) || f->dv.nusable == 0)
        return flow_ctx_fail(c, FLOW_E_INPUT, "need labelled sequences in train and dev (have %zu and %zu)",
                             f->tr.nusable, f->dv.nusable);
    if (balanced) {
        f->cw = xcalloc((size_t)C, sizeof *f->cw);
        for (size_t i = 0; i < f->tr.nusable; i++) f->cw[f->tr.v.label[f->tr.usable[i]]] += 1;
        for (int k = 0; k < C; k++)
            f->cw[k] = f->cw[k] > 0 ? (float)((double)f->tr.nusable / ((double)C * f->cw[k])) : 0.0f;
    }
    return 0;
}

void cls_objective_release(cls_objective *f)
{
    cls_data_release(&f->tr);
    cls_data_release(&f->dv);
    free(f->lens);
    free(f->cw);
    tr_batch_release(&f->devb);
    memset(f, 0, sizeof *f);
}

tr_objective cls_objective_bind(cls_objective *f, const char *stage, int ckpt_tag)
{
    tr_objective obj = {
        .stage = stage, .ckpt_tag = ckpt_tag, .head = BERT_HEAD_CLASSIFY,
        .usable = f->tr.usable, .nusable = f->tr.nusable, .len = f->tr.len, .order_tag = 0xF17E,
        .fill = co_fill, .evaluate = co_evaluate, .self = f,
    };
    return obj;
}
