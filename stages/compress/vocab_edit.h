/* vocab_edit.h — what trim-vocab and extend-vocab share: reading a bert
 * model artifact (model.json, safetensors weights, its tokenizer) from an
 * input, and writing the edited artifact whose vocabulary follows a new
 * tokenizer through an id map.  Internal to stages/compress. */
#ifndef FLOW_VOCAB_EDIT_H
#define FLOW_VOCAB_EDIT_H

#include "kernels/kernels.h"
#include "stages/model/safetensors.h"
#include "stages/tokenizer/tokenizer.h"

typedef struct vocab_model {
    json_value *json;           /* model.json */
    bert_config cfg;
    st_file w;                  /* weights */
    tok_tokenizer *tok;         /* tokenizer/tokenizer.bin */
} vocab_model;

/* Reads the bert model artifact bound to port (kind bert-mlm or bert-cls,
 * float word embeddings).  Fails the node with a message naming the port. */
int vocab_model_read(flow_ctx *c, const char *port, vocab_model *m);
void vocab_model_release(vocab_model *m);

/* A bound `tokenizer` input must be the model's own tokenizer (same
 * tokenizer.bin bytes): else the node fails saying so. */
int vocab_check_tokenizer(flow_ctx *c, const char *port, const vocab_model *m);

/* Fills row[0..H) of a new id (new_to_old[id] == -1). */
typedef void (*vocab_row_fn)(void *arg, int new_id, float *row, int H);

/* Writes the edited artifact: tokenizer/ parts of nt (tokenizer.bin,
 * tokenizer.json, vocab.txt, merges.txt), weights with the rows of every
 * vocabulary-indexed tensor (word embeddings; the MLM output bias) taken
 * from old rows by new_to_old[0..nnew) (rows of -1: init_row, bias 0),
 * every other tensor unchanged, model.json with vocab_size nnew and the
 * edit recorded under training.edits, and the model's clean.json. */
int vocab_model_write(flow_ctx *c, const char *port, const vocab_model *m,
                      const tok_tokenizer *nt, const int *new_to_old, int nnew,
                      vocab_row_fn init_row, void *arg, const char *edit_json);

#endif
