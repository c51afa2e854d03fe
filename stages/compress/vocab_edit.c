/* vocab_edit.c — reading a bert model artifact and writing it back with
 * its vocabulary changed (see vocab_edit.h).  The vocabulary-indexed
 * tensors are the word embeddings [V, H] and, in MLM models, the output
 * bias cls.predictions.bias [V] (the decoder weight is tied to the word
 * embeddings, so it follows them); nothing else depends on V. */
#include "vocab_edit.h"
#include "stages/model/classifier.h"
#include "stages/model/clf_internal.h"

#include <stdlib.h>
#include <string.h>

#define WORD_EMB "bert.embeddings.word_embeddings.weight"
#define MLM_BIAS "cls.predictions.bias"

void vocab_model_release(vocab_model *m)
{
    json_free(m->json);
    st_release(&m->w);
    tok_free(m->tok);
    memset(m, 0, sizeof *m);
}

static int read_part(flow_ctx *c, const char *port, const char *part, char **data, size_t *len)
{
    if (!flow_in_has(c, port, 0, part))
        return flow_ctx_fail(c, FLOW_E_INPUT, "input '%s' has no part %s: bind it to a bert "
                             "model (pretrain, finetune, or a compress stage)", port, part);
    int rc = flow_in_read(c, port, 0, part, data, len);
    return rc ? flow_ctx_fail(c, rc, "input '%s': cannot read %s", port, part) : 0;
}

int vocab_model_read(flow_ctx *c, const char *port, vocab_model *m)
{
    memset(m, 0, sizeof *m);
    st_init(&m->w);
    char what[128], *data;
    size_t len;
    flow_err err = { 0 };
    snprintf(what, sizeof what, "input '%s'", port);
    int rc = read_part(c, port, "model.json", &data, &len);
    if (rc) return rc;
    rc = json_parse(data, len, what, &m->json, &err);
    free(data);
    if (!rc) rc = model_json_check(m->json, what, &err);
    const char *kind = json_str(json_get(m->json, "kind"), "");
    if (!rc && strcmp(kind, "bert-mlm") && strcmp(kind, "bert-cls"))
        rc = flow_fail(&err, FLOW_E_INPUT, "%s is a '%s' model; only bert models can be "
                       "edited", what, kind);
    if (!rc) rc = bert_config_parse(json_get(m->json, "config"), &m->cfg, what, &err);
    if (rc) return flow_ctx_fail(c, rc, "%s", err.msg);
    if ((rc = read_part(c, port, "weights", &data, &len))) return rc;
    if ((rc = st_parse(&m->w, data, len, what, &err))) return flow_ctx_fail(c, rc, "%s", err.msg);
    const st_tensor *e = st_find(&m->w, WORD_EMB);
    if (!e || e->dtype != ST_F32)
        return flow_ctx_fail(c, FLOW_E_INPUT, "%s: %s is %s; edit the vocabulary before "
                             "quantizing", what, WORD_EMB, e ? st_dtype_name(e->dtype) : "missing");
    if ((rc = read_part(c, port, "tokenizer/tokenizer.bin", &data, &len))) return rc;
    rc = tok_load(&m->tok, data, len, &err);
    free(data);
    if (rc) return flow_ctx_fail(c, rc, "%s: tokenizer/tokenizer.bin: %s", what, err.msg);
    if (tok_vocab_size(m->tok) != m->cfg.vocab_size)
        return flow_ctx_fail(c, FLOW_E_INPUT, "%s: the tokenizer has %d tokens but the model "
                             "%d word embeddings", what, tok_vocab_size(m->tok), m->cfg.vocab_size);
    return 0;
}

int vocab_check_tokenizer(flow_ctx *c, const char *port, const vocab_model *m)
{
    if (flow_in_count(c, port) == 0) return 0;
    tok_tokenizer *t = NULL;
    int rc = tok_load_input(c, port, 0, &t);
    if (rc) return rc;
    flow_buf a, b;
    buf_init(&a); buf_init(&b);
    tok_serialize(t, &a);
    tok_serialize(m->tok, &b);
    int same = a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
    buf_release(&a); buf_release(&b);
    tok_free(t);
    if (!same)
        return flow_ctx_fail(c, FLOW_E_INPUT, "input '%s' is not the tokenizer the model was "
                             "trained with; bind the model's bpe node or leave it unbound", port);
    return 0;
}

/* rows[new] = old rows by the map (width w floats per row); new ids get
 * init_row (w > 1) or zeros. */
static float *gather_rows(const float *old, int w, const int *new_to_old, int nnew,
                          vocab_row_fn init_row, void *arg)
{
    float *rows = xcalloc((size_t)nnew * (size_t)w, sizeof *rows);
    for (int i = 0; i < nnew; i++) {
        if (new_to_old[i] >= 0)
            memcpy(rows + (size_t)i * w, old + (size_t)new_to_old[i] * w, (size_t)w * sizeof *rows);
        else if (w > 1 && init_row)
            init_row(arg, i, rows + (size_t)i * w, w);
    }
    return rows;
}

static int write_model_json(flow_ctx *c, const vocab_model *m, int nnew, const char *edit_json)
{
    bert_config cfg = m->cfg;
    cfg.vocab_size = nnew;
    const json_value *jl = json_get(m->json, "labels");
    int nl = json_len(jl);
    char **labels = nl ? xcalloc((size_t)nl, sizeof *labels) : NULL;
    for (int i = 0; i < nl; i++) labels[i] = (char *)json_str(json_at(jl, i), "");
    flow_buf cj, tj, mj;
    buf_init(&cj); buf_init(&tj); buf_init(&mj);
    bert_config_json(&cfg, &cj);
    buf_adds(&tj, "{\"base\":");
    const json_value *old = json_get(m->json, "training");
    if (old) json_write(&tj, old, 0); else buf_adds(&tj, "{}");
    buf_printf(&tj, ",\"edit\":%s}", edit_json);
    model_json_write(&mj, json_str(json_get(m->json, "kind"), ""), cj.data, nl ? labels : NULL,
                     nl, tj.data);
    int rc = flow_out_write(c, "model.json", FLOW_PART_BYTES, mj.data, mj.len);
    buf_release(&cj); buf_release(&tj); buf_release(&mj);
    free(labels);
    return rc;
}

int vocab_model_write(flow_ctx *c, const char *port, const vocab_model *m,
                      const tok_tokenizer *nt, const int *new_to_old, int nnew,
                      vocab_row_fn init_row, void *arg, const char *edit_json)
{
    int H = m->cfg.hidden, rc;
    if ((rc = write_model_json(c, m, nnew, edit_json))) return rc;
    st_file w;
    st_init(&w);
    for (int i = 0; i < m->w.nmeta; i++) st_set_meta(&w, m->w.meta_key[i], m->w.meta_val[i]);
    float *emb = NULL, *bias = NULL;
    for (int i = 0; i < m->w.n; i++) {
        const st_tensor *t = &m->w.t[i];
        if (!strcmp(t->name, WORD_EMB)) {
            emb = gather_rows(t->data, H, new_to_old, nnew, init_row, arg);
            int64_t shape[2] = { nnew, H };
            st_add(&w, t->name, ST_F32, 2, shape, emb);
        } else if (!strcmp(t->name, MLM_BIAS) && t->dtype == ST_F32) {
            bias = gather_rows(t->data, 1, new_to_old, nnew, NULL, NULL);
            int64_t shape[1] = { nnew };
            st_add(&w, t->name, ST_F32, 1, shape, bias);
        } else {
            st_add(&w, t->name, t->dtype, t->ndim, t->shape, t->data);
        }
    }
    rc = st_write(&w, c, "weights");
    st_release(&w);
    free(emb); free(bias);
    if (!rc) rc = tok_write_parts(c, nt, "tokenizer/");
    if (!rc) rc = artifact_copy_clean(c, port);
    return rc;
}
