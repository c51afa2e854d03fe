/* kernels_threads_test.c — the model's bytes do not depend on the thread
 * count.  The same training steps (MLM and classification heads, dropout,
 * padding, class weights, clipping, AdamW) and an eval forward run with 1, 2,
 * 3 and 8 OpenMP threads; every loss, logit, gradient, norm, parameter and
 * AdamW moment must be bit-identical to the 1-thread run.  Two shapes: a
 * small odd one (edge blocks everywhere) and the legal.graph pretraining
 * shape (hidden 128, FFN 512, 4096 rows), whose GEMMs are large enough to be
 * split over threads; and the small one with the mean-pooled classifier.
 */
#include "kernels/kernels.h"
#include "tests/test.h"

#include <stdint.h>

/* everything one run produced, in order, with a label per piece */
typedef struct trace {
    unsigned char *b;
    size_t n, cap;
    char names[64][48];
    size_t ends[64];
    int nparts;
} trace;

static void put(trace *t, const char *name, const void *p, size_t bytes)
{
    if (t->n + bytes > t->cap) {
        t->cap = (t->n + bytes) * 2;
        t->b = realloc(t->b, t->cap);
        if (!t->b)
            abort();
    }
    memcpy(t->b + t->n, p, bytes);
    t->n += bytes;
    if (t->nparts < 64) {
        snprintf(t->names[t->nparts], sizeof t->names[0], "%s", name);
        t->ends[t->nparts++] = t->n;
    }
}

typedef struct shape {
    const char *name;
    int V, H, L, nh, I, C, B, T, steps;
    int pooling;                /* BERT_POOL_* of the classifier head */
} shape;

static uint64_t lcg;
static uint32_t next_u32(void)
{
    lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(lcg >> 33);
}

/* alloc_threads: the thread count when the model is allocated (its
 * per-thread scratch is sized then); threads: the count it runs with */
static void run(const shape *s, int alloc_threads, int threads, trace *tr)
{
    bert_set_threads(alloc_threads);
    bert_config cfg;
    bert_config_default(&cfg);
    cfg.vocab_size = s->V; cfg.hidden = s->H; cfg.layers = s->L;
    bert_config_uniform(&cfg, s->nh, s->I, NULL);
    cfg.max_len = s->T; cfg.num_labels = s->C;
    cfg.mode = BERT_MODE_BOTH;
    cfg.pooling = s->pooling;
    bert_model *m = NULL;
    flow_err e;
    if (bert_model_new(&cfg, s->B, s->T, &bert_device_cpu, &m, &e) || bert_init(m, 99, &e))
        FLOW_BUG("%s", e.msg);
    bert_set_threads(threads);
    int N = s->B * s->T;
    int32_t *ids = malloc(N * sizeof *ids), *types = malloc(N * sizeof *types);
    int32_t *mask = malloc(N * sizeof *mask), *mlm = malloc(N * sizeof *mlm);
    int32_t *labels = malloc(s->B * sizeof *labels);
    float *cw = malloc(s->C * sizeof *cw);
    lcg = 7;
    for (int b = 0; b < s->B; b++) {
        int len = s->T - (int)(next_u32() % (s->T / 3 + 1));     /* padded tail */
        labels[b] = (int)(next_u32() % s->C);
        for (int t = 0; t < s->T; t++) {
            int i = b * s->T + t;
            mask[i] = t < len;
            ids[i] = t < len ? 5 + (int)(next_u32() % (s->V - 5)) : 0;
            types[i] = t >= len / 2;
            mlm[i] = t < len && next_u32() % 100 < 15 ? 5 + (int)(next_u32() % (s->V - 5))
                                                       : BERT_IGNORE_INDEX;
        }
    }
    for (int c = 0; c < s->C; c++)
        cw[c] = 0.5f + 0.25f * c;
    bert_batch mb = {s->B, s->T, ids, types, mask, mlm, NULL, NULL};
    bert_batch cb = {s->B, s->T, ids, types, mask, NULL, labels, cw};
    bert_adamw hp = {0.9f, 0.999f, 1e-8f, 0.01f};
    for (int step = 0; step < s->steps; step++) {
        bert_output o;
        bert_zero_grad(m);
        if (bert_forward(m, &mb, BERT_HEAD_MLM, 1, &o, &e))
            FLOW_BUG("%s", e.msg);
        put(tr, "mlm loss", &o.loss, sizeof o.loss);
        put(tr, "mlm logits", o.logits, (size_t)o.n_targets * s->V * sizeof(float));
        if (bert_backward(m, 0.5f, &e))
            FLOW_BUG("%s", e.msg);
        if (bert_forward(m, &cb, BERT_HEAD_CLASSIFY, 1, &o, &e))
            FLOW_BUG("%s", e.msg);
        put(tr, "cls loss", &o.loss, sizeof o.loss);
        put(tr, "cls logits", o.logits, (size_t)s->B * s->C * sizeof(float));
        if (bert_backward(m, 0.5f, &e))
            FLOW_BUG("%s", e.msg);
        put(tr, "grads", m->grads, m->nparams * sizeof(float));
        float norm = bert_clip_grad_norm(m, 0.5f);
        put(tr, "grad norm", &norm, sizeof norm);
        put(tr, "clipped grads", m->grads, m->nparams * sizeof(float));
        bert_adamw_step(m, &hp, 1e-3f);
        put(tr, "params", m->params, m->nparams * sizeof(float));
        put(tr, "adam m", m->adam_m, m->nparams * sizeof(float));
        put(tr, "adam v", m->adam_v, m->nparams * sizeof(float));
    }
    bert_output o;
    if (bert_forward(m, &cb, BERT_HEAD_CLASSIFY, 0, &o, &e))
        FLOW_BUG("%s", e.msg);
    put(tr, "eval logits", o.logits, (size_t)s->B * s->C * sizeof(float));
    bert_model_free(m);
    free(ids); free(types); free(mask); free(mlm); free(labels); free(cw);
}

static void check_shape(const shape *s)
{
    /* the last run allocates with 1 thread and then runs with 8 */
    static const int counts[] = {1, 2, 3, 8, 8}, alloc[] = {1, 2, 3, 8, 1};
    trace ref = {0};
    run(s, 1, 1, &ref);
    for (size_t k = 1; k < sizeof counts / sizeof counts[0]; k++) {
        trace t = {0};
        run(s, alloc[k], counts[k], &t);
        CHECK_MSG(t.n == ref.n, "%s: %d threads wrote %zu bytes, 1 thread %zu", s->name,
                  counts[k], t.n, ref.n);
        if (t.n == ref.n && memcmp(t.b, ref.b, t.n) != 0) {
            size_t i = 0;
            while (t.b[i] == ref.b[i])
                i++;
            int p = 0, step = 0;
            while (p < ref.nparts && ref.ends[p] <= i)
                step += strcmp(ref.names[p++], "adam v") == 0;
            CHECK_MSG(0, "%s: %d threads differ from 1 thread first in '%s' of step %d "
                      "(byte %zu)", s->name, counts[k], p < ref.nparts ? ref.names[p] : "?",
                      step, i);
        }
        free(t.b);
    }
    free(ref.b);
}

int main(void)
{
    /* odd sizes: GEMM edge blocks, vector tails, a head dimension of 16 */
    static const shape small = {"small", 301, 48, 2, 3, 100, 5, 6, 50, 3, BERT_POOL_CLS};
    /* legal.graph's pretraining shape (batch 32 x 128 = 4096 rows) */
    static const shape legal = {"legal", 2000, 128, 2, 2, 512, 7, 32, 128, 1, BERT_POOL_CLS};
    /* the mean-pooled head (one sequence per thread in its forward and backward) */
    static const shape mean = {"small, mean pooling", 301, 48, 2, 3, 100, 5, 6, 50, 3, BERT_POOL_MEAN};
    check_shape(&small);
    check_shape(&legal);
    check_shape(&mean);
    return test_summary("kernels_threads_test");
}
