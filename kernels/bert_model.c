/* bert_model.c — the public model API of kernels.h: create/free, HF
 * initialisation, tensor lookup, loading by name, threads, and the argument
 * checks in front of the backend's forward/backward (bert_backend.h).
 */
#include "bert_backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const bert_device bert_device_cpu = { -1, 0, BERT_FP32 };

const char *bert_precision_name(int precision)
{
    return precision == BERT_FP32 ? "fp32" : precision == BERT_BF16 ? "bf16" : precision == BERT_FP16 ? "fp16" : NULL;
}

int bert_precision_parse(const char *name)
{
    for (int p = BERT_FP32; p <= BERT_FP16; p++)
        if (strcmp(name, bert_precision_name(p)) == 0) return p;
    return -1;
}

/* The backend serving a device, or NULL (e filled) when none can: a GPU
 * needs the CUDA module (loaded on demand, base.h flow_cuda_load) and its
 * BERT backend table. */
static const bert_backend_ops *backend_ops(const bert_device *dev, bert_backend *be, flow_err *e)
{
    if (dev->gpu < 0) {
        *be = BERT_ON_CPU;
        return &bert_cpu_ops;
    }
    *be = BERT_ON_CUDA;
    flow_err le = { 0 };
    const flow_cuda_api *api = flow_cuda_load(&le);
    if (!api) {
        flow_fail(e, FLOW_E_PARAM, "model: GPU %d was granted but %s", dev->gpu, le.msg);
        return NULL;
    }
    if (!api->bert_ops) {
        flow_fail(e, FLOW_E_PARAM, "model: GPU %d was granted but the CUDA module has no BERT backend "
                  "(an old module? rebuild flow and libflow_cuda.so together)", dev->gpu);
        return NULL;
    }
    return (const bert_backend_ops *)api->bert_ops;
}

size_t bert_model_bytes(const bert_config *c, int max_B, int max_T)
{
    return 4 * bert_param_count(c) * sizeof(float) + bert_cpu_acts_bytes(c, max_B, max_T);
}

int bert_model_new(const bert_config *c, int max_B, int max_T, const bert_device *dev,
                   bert_model **out, flow_err *e)
{
    *out = NULL;
    int rc = bert_config_validate(c, e);
    if (rc)
        return rc;
    if (max_B < 1 || max_T < 1 || max_T > c->max_len)
        return flow_fail(e, FLOW_E_PARAM,
                         "model: batch %d x %d is invalid (need batch >= 1, 1 <= seq <= max_len %d)",
                         max_B, max_T, c->max_len);
    double heads = 0;
    for (int l = 0; l < c->layers; l++)
        heads += c->heads[l];
    if ((double)max_B * max_T * heads * max_T > 4e9)
        return flow_fail(e, FLOW_E_PARAM, "model: batch %d x %d needs too much attention memory",
                         max_B, max_T);
    if (!dev)
        return flow_fail(e, FLOW_E_PARAM, "model: no device given (the stage's tr_device, or &bert_device_cpu)");
    if (!bert_precision_name(dev->precision))
        return flow_fail(e, FLOW_E_PARAM, "model: precision %d is not fp32 (0), bf16 (1) or fp16 (2)", dev->precision);
    if (dev->precision != BERT_FP32 && dev->gpu < 0)
        return flow_fail(e, FLOW_E_PARAM, "model: precision %s needs a GPU: the CPU backend computes in fp32 "
                         "only (set gpus = 1, or precision = fp32)", bert_precision_name(dev->precision));
    bert_backend be;
    const bert_backend_ops *ops = backend_ops(dev, &be, e);
    if (!ops)
        return e ? e->code : FLOW_E_PARAM;
    if (dev->threads > 0)
        bert_set_threads(dev->threads);
    bert_model *m = calloc(1, sizeof *m);
    if (!m)
        return flow_fail(e, FLOW_E_NOMEM, "model: out of memory");
    m->cfg = *c;
    m->max_B = max_B;
    m->max_T = max_T;
    m->backend = be;
    m->gpu = be == BERT_ON_CUDA ? dev->gpu : -1;
    m->precision = dev->precision;
    m->ops = ops;
    rc = bert_tensor_table(c, &m->tensors, &m->ntensors, e);
    if (rc) {
        free(m);
        return rc;
    }
    m->nparams = bert_param_count(c);
    size_t bytes = m->nparams * sizeof(float);
    m->params = calloc(m->nparams, sizeof(float));
    m->grads = calloc(m->nparams, sizeof(float));
    m->adam_m = calloc(m->nparams, sizeof(float));
    m->adam_v = calloc(m->nparams, sizeof(float));
    m->opt_lo = 0;
    m->opt_hi = m->nparams;
    if (!m->params || !m->grads || !m->adam_m || !m->adam_v) {
        bert_model_free(m);
        return flow_fail(e, FLOW_E_NOMEM, "model: cannot allocate 4 x %.1f MiB of parameters",
                         bytes / 1048576.0);
    }
    rc = ops->alloc(m, e);
    if (rc) {
        bert_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void bert_model_free(bert_model *m)
{
    if (!m)
        return;
    if (m->ops && m->acts)
        m->ops->release(m);
    free(m->params);
    free(m->grads);
    free(m->adam_m);
    free(m->adam_v);
    free(m->tensors);
    free(m);
}

/* splitmix64 stream + Box-Muller: deterministic N(0,1) */
static uint64_t sm64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double unif(uint64_t *s)
{
    return ((sm64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);     /* (0,1) */
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

int bert_init(bert_model *m, uint64_t seed, flow_err *e)
{
    uint64_t s = seed * 0x2545F4914F6CDD1DULL + 0x1234567ULL;
    for (int i = 0; i < m->ntensors; i++) {
        const bert_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        if (t->decay) {     /* Linear and embedding weights */
            for (size_t k = 0; k < t->numel; k += 2) {
                double u1 = unif(&s), u2 = unif(&s), r = sqrt(-2.0 * log(u1));
                p[k] = (float)(0.02 * r * cos(6.283185307179586 * u2));
                if (k + 1 < t->numel)
                    p[k + 1] = (float)(0.02 * r * sin(6.283185307179586 * u2));
            }
        } else {
            float v = ends_with(t->name, "LayerNorm.weight") ? 1.0f : 0.0f;
            for (size_t k = 0; k < t->numel; k++)
                p[k] = v;
        }
    }
    /* padding_idx 0 */
    float *wte = bert_param_ptr(m, "bert.embeddings.word_embeddings.weight");
    memset(wte, 0, (size_t)m->cfg.hidden * sizeof(float));
    m->dropout_seed = sm64(&s);
    m->fwd_counter = 0;
    m->adam_t = 0;
    memset(m->grads, 0, m->nparams * sizeof(float));
    memset(m->adam_m, 0, (m->opt_hi - m->opt_lo) * sizeof(float));
    memset(m->adam_v, 0, (m->opt_hi - m->opt_lo) * sizeof(float));
    return bert_sync_to_device(m, e);
}

float *bert_param_ptr(bert_model *m, const char *name)
{
    const bert_tensor *t = bert_find_tensor(m, name);
    return t ? m->params + t->offset : NULL;
}

int bert_load_by_name(bert_model *m, const bert_config *src_cfg, const float *src,
                      size_t src_n, int *copied, flow_err *e)
{
    bert_tensor *st;
    int sn, rc = bert_tensor_table(src_cfg, &st, &sn, e);
    if (copied)
        *copied = 0;
    if (rc)
        return rc;
    size_t want = bert_param_count(src_cfg);
    if (src_n != want) {
        free(st);
        return flow_fail(e, FLOW_E_PARAM,
                         "load: source buffer has %zu floats, its config needs %zu", src_n, want);
    }
    int n = 0, encoder = 0;
    char mismatch[256] = "";
    for (int i = 0; i < sn; i++) {
        const bert_tensor *d = bert_find_tensor(m, st[i].name);
        if (!d)
            continue;
        if (d->shape[0] != st[i].shape[0] || d->shape[1] != st[i].shape[1]) {
            if (!mismatch[0])
                snprintf(mismatch, sizeof mismatch, "%s is [%d,%d] in the source, [%d,%d] here",
                         d->name, st[i].shape[0], st[i].shape[1], d->shape[0], d->shape[1]);
            continue;
        }
        memcpy(m->params + d->offset, src + st[i].offset, d->numel * sizeof(float));
        n++;
        encoder += strncmp(d->name, "bert.encoder.", 13) == 0;
    }
    free(st);
    if (copied)
        *copied = n;
    if (encoder == 0)
        return flow_fail(e, FLOW_E_PARAM, "load: no encoder tensor matched%s%s",
                         mismatch[0] ? "; first mismatch: " : "", mismatch);
    return bert_sync_to_device(m, e);
}

int bert_sync_to_host(bert_model *m, flow_err *e)
{
    return m->ops->sync_to_host(m, e);
}

int bert_sync_to_device(bert_model *m, flow_err *e)
{
    return m->ops->sync_to_device(m, e);
}

void bert_set_linear_hook(bert_model *m, bert_linear_fn fn, void *arg)
{
    m->linear_hook = fn;
    m->linear_hook_arg = fn ? arg : NULL;
    m->linear_rows = NULL;      /* a new hook says again whether it takes row blocks */
}

void bert_set_linear_rows(bert_model *m, int (*fn)(void *arg))
{
    m->linear_rows = fn;
}

int bert_forward(bert_model *m, const bert_batch *b, int head, int train,
                 bert_output *out, flow_err *e)
{
    const bert_config *c = &m->cfg;
    if (b->B < 1 || b->B > m->max_B || b->T < 1 || b->T > m->max_T)
        return flow_fail(e, FLOW_E_PARAM, "forward: batch %d x %d exceeds the model's %d x %d",
                         b->B, b->T, m->max_B, m->max_T);
    if (head == BERT_HEAD_MLM && !(c->mode & BERT_MODE_MLM))
        return flow_fail(e, FLOW_E_PARAM, "forward: the model has no MLM head (mode %d)", c->mode);
    if (head == BERT_HEAD_CLASSIFY && !(c->mode & BERT_MODE_CLASSIFY))
        return flow_fail(e, FLOW_E_PARAM, "forward: the model has no classifier (mode %d)", c->mode);
    if (head != BERT_HEAD_MLM && head != BERT_HEAD_CLASSIFY)
        return flow_fail(e, FLOW_E_PARAM, "forward: head %d is not MLM (1) or CLASSIFY (2)", head);
    if (!b->ids)
        return flow_fail(e, FLOW_E_PARAM, "forward: no token ids");
    if (head == BERT_HEAD_MLM && !b->mlm_labels)
        return flow_fail(e, FLOW_E_PARAM, "forward: MLM head needs mlm_labels");
    for (int i = 0; i < b->B; i++)
        for (int t = 0; t < b->T; t++) {
            size_t k = (size_t)i * b->T + t;
            if (b->ids[k] < 0 || b->ids[k] >= c->vocab_size)
                return flow_fail(e, FLOW_E_PARAM, "forward: token id %d at batch %d position %d "
                                 "is outside the vocabulary [0,%d)", b->ids[k], i, t, c->vocab_size);
            if (b->type_ids && (b->type_ids[k] < 0 || b->type_ids[k] >= c->type_vocab))
                return flow_fail(e, FLOW_E_PARAM, "forward: token type %d at batch %d position %d "
                                 "is outside [0,%d)", b->type_ids[k], i, t, c->type_vocab);
            if (head == BERT_HEAD_MLM && b->mlm_labels[k] != BERT_IGNORE_INDEX
                && (b->mlm_labels[k] < 0 || b->mlm_labels[k] >= c->vocab_size))
                return flow_fail(e, FLOW_E_PARAM, "forward: MLM label %d at batch %d position %d "
                                 "is neither -100 nor in [0,%d)", b->mlm_labels[k], i, t, c->vocab_size);
        }
    if (b->attn_mask)
        for (int i = 0; i < b->B; i++)
            if (!b->attn_mask[(size_t)i * b->T])
                return flow_fail(e, FLOW_E_PARAM, "forward: sequence %d has its first position "
                                 "([CLS]) masked out", i);
    if (head == BERT_HEAD_CLASSIFY && b->labels)
        for (int i = 0; i < b->B; i++)
            if (b->labels[i] < 0 || b->labels[i] >= c->num_labels)
                return flow_fail(e, FLOW_E_PARAM, "forward: label %d of sequence %d is outside [0,%d)",
                                 b->labels[i], i, c->num_labels);
    if (head == BERT_HEAD_CLASSIFY && b->class_weights)
        for (int k = 0; k < c->num_labels; k++)
            if (!(b->class_weights[k] >= 0) || !isfinite(b->class_weights[k]))
                return flow_fail(e, FLOW_E_PARAM, "forward: class weight %d is %g (need finite >= 0)",
                                 k, (double)b->class_weights[k]);
    return m->ops->forward(m, b, head, train, out, e);
}

int bert_backward(bert_model *m, float loss_scale, flow_err *e)
{
    /* the backend rejects a backward without a preceding forward */
    return m->ops->backward(m, loss_scale, NULL, NULL, e);
}

int bert_backward_ext(bert_model *m, const float *dlogits, const float *const *dhidden, flow_err *e)
{
    if (!dlogits)
        return flow_fail(e, FLOW_E_PARAM, "backward: no logit gradient given");
    return m->ops->backward(m, 1.0f, dlogits, dhidden, e);
}

const float *bert_hidden_states(const bert_model *m, int layer)
{
    if (!m->acts || layer < 0 || layer > m->cfg.layers)
        return NULL;
    return m->ops->hidden(m, layer);
}
