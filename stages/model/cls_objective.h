/* cls_objective.h — finetune's training objective (cross-entropy on
 * labelled sequences, optional balanced class weights, dev macro-F1 for
 * model selection) as a tr_objective, so every stage that fine-tunes a
 * classifier through the one training loop uses the same pieces:
 * finetune, and prune's recovery fine-tune.  Built on cls_train.h.
 * Internal to the stages library. */
#ifndef FLOW_CLS_OBJECTIVE_H
#define FLOW_CLS_OBJECTIVE_H

#include "cls_train.h"

typedef struct cls_objective {
    flow_ctx *c;
    cls_data tr, dv;
    int batch;
    int *lens;                  /* [batch] */
    float *cw;                  /* [C] class weights or NULL */
    tr_batch devb;              /* dev batches of at most T tokens */
} cls_objective;

/* Takes train and dev over (zeroed in the caller; released with f).
 * train NULL: dev scoring only (cls_objective_dev), no training.  batch
 * sequences per micro-batch and per dev batch of at most T tokens;
 * balanced = 1: class weights n / (C * count) from train.  Fails the node
 * when train (if given) or dev has no usable sequence. */
int cls_objective_init(flow_ctx *c, cls_objective *f, cls_data *train, cls_data *dev, int num_labels,
                       int batch, int T, int balanced);
void cls_objective_release(cls_objective *f);
/* The tr_objective for tr_train; stage and ckpt_tag name the caller. */
tr_objective cls_objective_bind(cls_objective *f, const char *stage, int ckpt_tag);
/* Accuracy and macro-F1 of m on the dev sequences. */
int cls_objective_dev(cls_objective *f, bert_model *m, clf_metrics *out);

#endif
