/* cls_train.h — what the classification training stages (finetune,
 * distill) share: encoded (labelled) sequences loaded for training, batch
 * filling, the dev macro-F1 score, the label names of an encoded split,
 * and a bert model artifact bound to an input as an initialisation.
 * Internal to the stages library. */
#ifndef FLOW_CLS_TRAIN_H
#define FLOW_CLS_TRAIN_H

#include "clf_internal.h"
#include "trainer.h"

/* Encoded sequences of one input binding, with their lengths and the
 * indices worth training on. */
typedef struct cls_data {
    enc_view v;
    uint32_t *len;              /* [v.n] ids per sequence */
    uint32_t *usable;           /* indices: labelled (when required) and >= 2 ids */
    size_t nusable;
} cls_data;

/* Reads binding idx of port: every id must be < vocab, every label <
 * nlabels.  labelled = 1: the input must have a labels part and only
 * labelled sequences are usable; 0: every sequence of >= 2 ids is (labels
 * kept when present, else -1).  Fails the node naming the input. */
int cls_data_load(flow_ctx *c, const char *port, int idx, int vocab, int nlabels, int labelled,
                  cls_data *d);
void cls_data_release(cls_data *d);

/* Label of sequence i (-1: none). */
static inline int cls_label(const cls_data *d, size_t i) { return d->v.label ? d->v.label[i] : -1; }

/* Fills b with sequences seq[0..n) of d (labels into b->labels, -1 for
 * unlabelled); lens is scratch [n]. */
void cls_fill(tr_batch *b, const cls_data *d, const uint32_t *seq, size_t n, int *lens);

/* Accuracy and macro-F1 of m's classification head on the usable
 * sequences of dev (eval mode, batches of `batch` sorted by length). */
int cls_dev_score(flow_ctx *c, bert_model *m, const cls_data *dev, int batch, tr_batch *b,
                  int *lens, clf_metrics *out);

/* The label names of an encoded split bound to port (part label_names)
 * into *labels[*n] (caller frees with cls_labels_free). */
int cls_read_labels(flow_ctx *c, const char *port, char ***labels, int *n);
void cls_labels_free(char **labels, int n);

/* The config (model.json) and weights (parsed into *w, st_init'ed by the
 * caller) of the bert model artifact bound to port; *json (when not NULL)
 * gets model.json (caller frees with json_free).  Fails the node naming
 * the input. */
int cls_artifact_config(flow_ctx *c, const char *port, bert_config *cfg, st_file *w,
                        json_value **json);
/* Copies every tensor of that artifact (config cfg, weights w) whose name
 * and shape match one of m's into m (bert_load_by_name); logs the count.
 * *copied may be NULL. */
int cls_artifact_load(flow_ctx *c, const char *port, bert_model *m, const bert_config *cfg,
                      const st_file *w, int *copied);

#endif
