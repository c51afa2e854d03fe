/* clf_bert.h — the bert part of a loaded classifier (clf_bert.c), shared
 * with cmd_export.c which writes the same model for transformers. */
#ifndef FLOW_CLF_BERT_H
#define FLOW_CLF_BERT_H

#include "clf_internal.h"
#include "kernels/kernels.h"

struct tok_tokenizer;

struct clf_bert {
    bert_config cfg;
    int max_len;                /* ids per sequence at prediction (fine-tuning length) */
    struct tok_tokenizer *tok;
    bert_model *model;
    bert_qmodel *qmodel;        /* quantized encoder Linears (attached), or NULL */
};

/* [CLS] tokens [SEP] of text, cut to max_len; ids has room for max_len.
 * Returns the count. */
int clf_bert_encode(const clf_model *m, const char *text, size_t len, int32_t *ids);

#endif
