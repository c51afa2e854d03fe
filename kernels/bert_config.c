/* bert_config.c — BERT configuration checks and the tensor table.
 *
 * The tensor table is the single description of the flat parameter buffer
 * (llm.c's fill_in_parameter_sizes): names are HuggingFace state-dict names,
 * shapes are PyTorch layout, offsets are in floats.  Everything else (init,
 * weight decay, export, loading by name) walks this table.
 */
#include "kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bert_config_default(bert_config *c)
{
    memset(c, 0, sizeof *c);
    c->vocab_size = 8000;
    c->hidden = 768;
    c->layers = 6;
    bert_config_uniform(c, 12, 3072, NULL);
    c->max_len = 512;
    c->type_vocab = 2;
    c->num_labels = 2;
    c->hidden_dropout = 0.1f;
    c->attn_dropout = 0.1f;
    c->mode = BERT_MODE_MLM;
}

int bert_config_uniform(bert_config *c, int heads, int intermediate, flow_err *e)
{
    if (c->layers < 1 || c->layers > BERT_MAX_LAYERS)
        return flow_fail(e, FLOW_E_PARAM, "model config: layers is %d, must be in [1, %d]",
                         c->layers, BERT_MAX_LAYERS);
    if (heads <= 0 || c->hidden <= 0 || c->hidden % heads != 0)
        return flow_fail(e, FLOW_E_PARAM,
                         "model config: hidden %d is not a multiple of heads %d", c->hidden, heads);
    c->head_size = c->hidden / heads;
    for (int l = 0; l < BERT_MAX_LAYERS; l++) {     /* every entry: layers may change later */
        c->heads[l] = heads;
        c->ffn[l] = intermediate;
    }
    return 0;
}

int bert_config_is_uniform(const bert_config *c)
{
    for (int l = 1; l < c->layers; l++)
        if (c->heads[l] != c->heads[0] || c->ffn[l] != c->ffn[0])
            return 0;
    return c->heads[0] * c->head_size == c->hidden;
}

int bert_config_validate(const bert_config *c, flow_err *e)
{
    struct { const char *name; int v; } pos[] = {
        {"vocab_size", c->vocab_size}, {"hidden", c->hidden}, {"layers", c->layers},
        {"head_size", c->head_size}, {"max_len", c->max_len}, {"type_vocab", c->type_vocab},
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0)
            return flow_fail(e, FLOW_E_PARAM, "model config: %s is %d, must be positive",
                             pos[i].name, pos[i].v);
    if (c->layers > BERT_MAX_LAYERS)
        return flow_fail(e, FLOW_E_PARAM, "model config: %d layers, at most %d", c->layers,
                         BERT_MAX_LAYERS);
    double total = 0, H = c->hidden;
    for (int l = 0; l < c->layers; l++) {
        if (c->heads[l] < 1)
            return flow_fail(e, FLOW_E_PARAM, "model config: layer %d has %d attention heads, needs at least 1",
                             l, c->heads[l]);
        if (c->ffn[l] < 1)
            return flow_fail(e, FLOW_E_PARAM, "model config: layer %d has FFN width %d, needs at least 1",
                             l, c->ffn[l]);
        double A = (double)c->heads[l] * c->head_size, I = c->ffn[l];
        if (A > 1e6)
            return flow_fail(e, FLOW_E_PARAM, "model config: layer %d attention width %.0f is too large", l, A);
        total += 4 * A * H + 2 * H * I + 3 * A + 6 * H + I;
    }
    if (c->mode < BERT_MODE_MLM || c->mode > BERT_MODE_BOTH)
        return flow_fail(e, FLOW_E_PARAM, "model config: mode %d is not 1 (mlm), 2 (classify) or 3 (both)",
                         c->mode);
    if (c->pooling != BERT_POOL_CLS && c->pooling != BERT_POOL_MEAN)
        return flow_fail(e, FLOW_E_PARAM, "model config: pooling %d is not 0 (cls) or 1 (mean)", c->pooling);
    if ((c->mode & BERT_MODE_CLASSIFY) && c->num_labels < 1)
        return flow_fail(e, FLOW_E_PARAM, "model config: num_labels %d, a classifier needs at least 1",
                         c->num_labels);
    if (!(c->hidden_dropout >= 0.0f && c->hidden_dropout < 1.0f))
        return flow_fail(e, FLOW_E_PARAM, "model config: hidden dropout %g is outside [0,1)",
                         (double)c->hidden_dropout);
    if (!(c->attn_dropout >= 0.0f && c->attn_dropout < 1.0f))
        return flow_fail(e, FLOW_E_PARAM, "model config: attention dropout %g is outside [0,1)",
                         (double)c->attn_dropout);
    /* keep every index computation in range: the largest tensor and the
     * whole buffer must fit comfortably */
    total += ((double)c->vocab_size + c->max_len + c->type_vocab + 2) * H;
    total += 2 * H * H + (double)c->vocab_size + (double)c->num_labels * (H + 1) + 4 * H;
    if (total > 4e9 || (double)c->vocab_size * H > 2e9)
        return flow_fail(e, FLOW_E_PARAM,
                         "model config: %.3g parameters is too large (limit 4e9)", total);
    return 0;
}

/* Appends one table entry; off advances. */
static void add(bert_tensor *t, int *n, size_t *off, int decay, int r, int cols,
                const char *fmt, int layer)
{
    bert_tensor *x = &t[*n];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, fmt, layer);
    x->ndim = cols > 0 ? 2 : 1;
    x->shape[0] = r;
    x->shape[1] = cols > 0 ? cols : 1;
    x->numel = (size_t)r * (size_t)x->shape[1];
    x->offset = *off;
    x->decay = decay;
    *off += x->numel;
    (*n)++;
}

/* Fills t (may be NULL to count) and returns the number of entries. */
static int build_table(const bert_config *c, bert_tensor *t, size_t *total)
{
    bert_tensor scratch;
    int n = 0, H = c->hidden;
    size_t off = 0;
    /* With t == NULL every add writes into scratch: count only. */
#define ADD(decay, r, cols, fmt, l) do { \
        if (t) add(t, &n, &off, decay, r, cols, fmt, l); \
        else { int z = 0; add(&scratch, &z, &off, decay, r, cols, fmt, l); n++; } \
    } while (0)
    ADD(1, c->vocab_size, H, "bert.embeddings.word_embeddings.weight", 0);
    ADD(1, c->max_len, H, "bert.embeddings.position_embeddings.weight", 0);
    ADD(1, c->type_vocab, H, "bert.embeddings.token_type_embeddings.weight", 0);
    ADD(0, H, 0, "bert.embeddings.LayerNorm.weight", 0);
    ADD(0, H, 0, "bert.embeddings.LayerNorm.bias", 0);
    for (int l = 0; l < c->layers; l++) {
        int A = bert_attn_width(c, l), I = c->ffn[l];
        ADD(1, A, H, "bert.encoder.layer.%d.attention.self.query.weight", l);
        ADD(1, A, H, "bert.encoder.layer.%d.attention.self.key.weight", l);
        ADD(1, A, H, "bert.encoder.layer.%d.attention.self.value.weight", l);
        ADD(0, A, 0, "bert.encoder.layer.%d.attention.self.query.bias", l);
        ADD(0, A, 0, "bert.encoder.layer.%d.attention.self.key.bias", l);
        ADD(0, A, 0, "bert.encoder.layer.%d.attention.self.value.bias", l);
        ADD(1, H, A, "bert.encoder.layer.%d.attention.output.dense.weight", l);
        ADD(0, H, 0, "bert.encoder.layer.%d.attention.output.dense.bias", l);
        ADD(0, H, 0, "bert.encoder.layer.%d.attention.output.LayerNorm.weight", l);
        ADD(0, H, 0, "bert.encoder.layer.%d.attention.output.LayerNorm.bias", l);
        ADD(1, I, H, "bert.encoder.layer.%d.intermediate.dense.weight", l);
        ADD(0, I, 0, "bert.encoder.layer.%d.intermediate.dense.bias", l);
        ADD(1, H, I, "bert.encoder.layer.%d.output.dense.weight", l);
        ADD(0, H, 0, "bert.encoder.layer.%d.output.dense.bias", l);
        ADD(0, H, 0, "bert.encoder.layer.%d.output.LayerNorm.weight", l);
        ADD(0, H, 0, "bert.encoder.layer.%d.output.LayerNorm.bias", l);
    }
    if (c->mode & BERT_MODE_MLM) {
        ADD(1, H, H, "cls.predictions.transform.dense.weight", 0);
        ADD(0, H, 0, "cls.predictions.transform.dense.bias", 0);
        ADD(0, H, 0, "cls.predictions.transform.LayerNorm.weight", 0);
        ADD(0, H, 0, "cls.predictions.transform.LayerNorm.bias", 0);
        ADD(0, c->vocab_size, 0, "cls.predictions.bias", 0);
    }
    if (c->mode & BERT_MODE_CLASSIFY) {
        ADD(1, H, H, "bert.pooler.dense.weight", 0);
        ADD(0, H, 0, "bert.pooler.dense.bias", 0);
        ADD(1, c->num_labels, H, "classifier.weight", 0);
        ADD(0, c->num_labels, 0, "classifier.bias", 0);
    }
#undef ADD
    if (total)
        *total = off;
    return n;
}

/* Here, beside the table it searches, rather than in bert_model.c: the
 * backends (kernels/cpu/) look tensors up, and bert_model.c picks the
 * backend, so the lookup sits below both. */
const bert_tensor *bert_find_tensor(const bert_model *m, const char *name)
{
    for (int i = 0; i < m->ntensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0)
            return &m->tensors[i];
    return NULL;
}

size_t bert_param_count(const bert_config *c)
{
    size_t total = 0;
    build_table(c, NULL, &total);
    return total;
}

int bert_tensor_table(const bert_config *c, bert_tensor **out, int *n, flow_err *e)
{
    int rc = bert_config_validate(c, e);
    if (rc)
        return rc;
    int count = build_table(c, NULL, NULL);
    bert_tensor *t = xcalloc((size_t)count, sizeof *t);
    build_table(c, t, NULL);
    *out = t;
    *n = count;
    return 0;
}

float bert_lr_linear(float peak, long step, long warmup, long total)
{
    if (step < warmup)
        return peak * (float)step / (float)(warmup > 1 ? warmup : 1);
    long span = total - warmup;
    double f = (double)(total - step) / (double)(span > 1 ? span : 1);
    return peak * (float)(f > 0 ? f : 0);
}
