/* extend_vocab.c — the `extend-vocab` stage: adds new domain terms to a
 * trained tokenizer and its bert model without retraining from scratch.
 *
 *   extended = extend-vocab { model = finetune  terms = [new_terms] }
 *
 * Each term becomes a forced term (one id in every occurrence, tok_extend
 * in stages/tokenizer/tok_edit.c); terms the tokenizer already encodes as
 * one token are skipped and counted.  A new term's embedding row starts as
 * the mean of the embedding rows of the pieces the old tokenizer cut it
 * into, so the model sees roughly what it saw before; a short continued
 * pre-training (pretrain with base = this node) can follow.  Text without
 * the new terms encodes as before (ids shifted by the number added). */
#include "vocab_edit.h"

#include <stdlib.h>
#include <string.h>

static const flow_input_def extend_inputs[] = {
    {"model", 0, 0, "a bert model artifact"},
    {"terms", 0, 1, "term lists: part `terms` of a terms node, else every part (one term a line)"},
    {"tokenizer", 1, 0, "the model's bpe node (optional: checked to be the model's own)"},
};

typedef struct mean_init {
    const tok_tokenizer *old, *nt;
    const float *emb;           /* old word embeddings [V_old, H] */
} mean_init;

/* row = mean of the old embeddings of the pieces of the new token's text. */
static void mean_of_pieces(void *arg, int new_id, float *row, int H)
{
    const mean_init *mi = arg;
    size_t len;
    const char *s = tok_token(mi->nt, new_id, &len);
    tok_out o;
    tok_out_init(&o);
    tok_encode(mi->old, s, len, &o);
    for (size_t k = 0; k < o.n; k++)
        for (int j = 0; j < H; j++) row[j] += mi->emb[(size_t)o.ids[k] * H + j];
    for (int j = 0; o.n && j < H; j++) row[j] /= (float)o.n;
    tok_out_release(&o);
}

static int extend_run(flow_ctx *c)
{
    vocab_model m;
    int rc = vocab_model_read(c, "model", &m);
    if (!rc) rc = vocab_check_tokenizer(c, "tokenizer", &m);
    tok_terms terms;
    tok_terms_init(&terms);
    if (!rc) rc = tok_read_terms(c, "terms", &terms, tok_max_token_chars(m.tok));
    if (!rc && terms.too_long)
        flow_log(c, "skipped %d terms longer than the tokenizer's max_token_chars %d (first: %s)",
                 terms.too_long, tok_max_token_chars(m.tok), terms.too_long_example);
    int n = rc ? 0 : tok_vocab_size(m.tok);
    int *new_to_old = xmalloc((size_t)(n + terms.n + 1) * sizeof *new_to_old), nnew = 0, skipped = 0;
    tok_tokenizer *nt = NULL;
    flow_err err = { 0 };
    if (!rc && (rc = tok_extend(m.tok, &terms, &nt, new_to_old, &nnew, &skipped, &err)))
        rc = flow_ctx_fail(c, rc, "%s", err.msg);
    if (!rc) {
        mean_init mi = { m.tok, nt, st_find(&m.w, "bert.embeddings.word_embeddings.weight")->data };
        char edit[256];
        snprintf(edit, sizeof edit, "{\"stage\":\"extend-vocab\",\"vocab_before\":%d,\"vocab_after\":%d}",
                 n, nnew);
        rc = vocab_model_write(c, "model", &m, nt, new_to_old, nnew, mean_of_pieces, &mi, edit);
        flow_metric(c, "terms_added", nnew - n);
        flow_metric(c, "terms_already_single", skipped);
        flow_metric(c, "vocab_after", nnew);
        char rep[256];
        snprintf(rep, sizeof rep, "extend-vocab: %d new terms (%d already one token), %d -> %d "
                 "tokens\n", nnew - n, skipped, n, nnew);
        flow_report(c, rep);
    }
    tok_free(nt);
    free(new_to_old);
    tok_terms_release(&terms);
    vocab_model_release(&m);
    return rc;
}

const flow_stage stage_extend_vocab = {
    .name = "extend-vocab",
    .version = 1,
    .help = "add domain terms to a trained tokenizer and bert model (new rows: mean of the old pieces)",
    .inputs = extend_inputs, .ninputs = sizeof extend_inputs / sizeof *extend_inputs,
    .res = {.threads = 1},
    .run = extend_run,
};
