/* bert_optim.c — gradients and the optimizer over the flat buffers:
 * zero_grad, global norm + clipping, AdamW (torch.optim.AdamW semantics,
 * weight decay masked by the tensor table), and the profiler that times
 * every op kind of forward, backward and optimizer.
 */
#include "bert_backend.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Fixed chunking for reductions: same sum for any thread count. */
#define CHUNK 65536

void bert_cpu_zero_grad(bert_model *m)
{
    memset(m->grads, 0, m->nparams * sizeof(float));
}

/* sum of squares of one chunk: 8 float lanes (vectorised), then double */
__attribute__((target_clones("avx2", "default")))
static double sumsq_chunk(const float *g, size_t n)
{
    float lane[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            lane[k] += g[i + k] * g[i + k];
    double acc = 0;
    for (; i < n; i++)
        acc += (double)g[i] * g[i];
    for (int k = 0; k < 8; k++)
        acc += lane[k];
    return acc;
}

double bert_cpu_grad_sumsq(bert_model *m)
{
    size_t n = m->nparams, nchunk = (n + CHUNK - 1) / CHUNK;
    double *part = calloc(nchunk + 1, sizeof(double));
    if (!part)
        abort();
    const float *g = m->grads;
    #pragma omp parallel for schedule(static)
    for (size_t c = 0; c < nchunk; c++) {
        size_t s = c * CHUNK, e = s + CHUNK < n ? s + CHUNK : n;
        part[c] = sumsq_chunk(g + s, e - s);
    }
    double total = 0;
    for (size_t c = 0; c < nchunk; c++)
        total += part[c];
    free(part);
    return total;
}

void bert_cpu_scale_grads(bert_model *m, float f)
{
    float *g = m->grads;
    #pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < m->nparams; i++)
        g[i] *= f;
}

/* One tensor's AdamW update.  no-math-errno lets sqrtf vectorise (v >= 0
 * always, errno is never set here). */
__attribute__((optimize("no-math-errno"), target_clones("avx2", "default")))
static void adamw_chunk(float *p, const float *g, float *mm, float *vv, size_t n, float b1,
                        float b2, float eps, float decay, float step, float bc2s)
{
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = b1 * mm[i] + (1.0f - b1) * gi;
        float vi = b2 * vv[i] + (1.0f - b2) * gi * gi;
        mm[i] = mi;
        vv[i] = vi;
        p[i] = p[i] * decay - step * mi / (sqrtf(vi) / bc2s + eps);
    }
}

void bert_cpu_adamw(bert_model *m, const bert_adamw *hp, float lr)
{
    double t = (double)m->adam_t;
    float b1 = hp->beta1, b2 = hp->beta2, eps = hp->eps;
    float bc1 = (float)(1.0 - pow(b1, t)), bc2 = (float)(1.0 - pow(b2, t));
    float step = lr / bc1, bc2s = sqrtf(bc2);
    /* one parallel region over fixed 64k-element chunks of every tensor */
    #pragma omp parallel
    for (int k = 0; k < m->ntensors; k++) {
        const bert_tensor *tt = &m->tensors[k];
        size_t o = tt->offset, nchunk = (tt->numel + CHUNK - 1) / CHUNK;
        float decay = tt->decay ? 1.0f - lr * hp->weight_decay : 1.0f;
        #pragma omp for schedule(static) nowait
        for (size_t c = 0; c < nchunk; c++) {
            size_t s = c * CHUNK, len = s + CHUNK < tt->numel ? CHUNK : tt->numel - s;
            adamw_chunk(m->params + o + s, m->grads + o + s, m->adam_m + o + s,
                        m->adam_v + o + s, len, b1, b2, eps, decay, step, bc2s);
        }
    }
}

/* ------------------------------------------------------------------ */
/* public wrappers                                                     */

void bert_zero_grad(bert_model *m)
{
    m->ops->zero_grad(m);
}

float bert_grad_norm(bert_model *m)
{
    double t0 = m->prof.enabled ? bert_prof_now() : 0;
    double n = sqrt(m->ops->grad_sumsq(m));
    if (m->prof.enabled)
        bert_prof_add(m, BERT_OP_GRADNORM, 0, t0, 0);
    return (float)n;
}

float bert_clip_grad_norm(bert_model *m, float max_norm)
{
    float norm = bert_grad_norm(m);
    if (max_norm > 0) {
        float f = max_norm / (norm + 1e-6f);
        if (f < 1.0f) {
            double t0 = m->prof.enabled ? bert_prof_now() : 0;
            m->ops->scale_grads(m, f);
            if (m->prof.enabled)
                bert_prof_add(m, BERT_OP_GRADNORM, 0, t0, 0);
        }
    }
    return norm;
}

void bert_adamw_step(bert_model *m, const bert_adamw *hp, float lr)
{
    double t0 = m->prof.enabled ? bert_prof_now() : 0;
    m->adam_t++;
    m->ops->adamw(m, hp, lr);
    if (m->prof.enabled)
        bert_prof_add(m, BERT_OP_ADAMW, 0, t0, 0);
}

/* ------------------------------------------------------------------ */
/* profiler                                                            */

double bert_prof_now(void)
{
    return omp_get_wtime();
}

void bert_prof_add(bert_model *m, int kind, int fwd, double t0, double flops)
{
    double dt = omp_get_wtime() - t0;
    if (fwd)
        m->prof.fwd_s[kind] += dt;
    else
        m->prof.bwd_s[kind] += dt;
    m->prof.flops[kind] += flops;
    if (fwd && kind == BERT_OP_EMBED)
        m->prof.calls++;
}

void bert_profile_reset(bert_model *m)
{
    int on = m->prof.enabled;
    memset(&m->prof, 0, sizeof m->prof);
    m->prof.enabled = on;
}

void bert_profile_enable(bert_model *m, int on)
{
    memset(&m->prof, 0, sizeof m->prof);
    m->prof.enabled = on;
}

void bert_profile_print(const bert_model *m, FILE *f)
{
    static const char *names[BERT_OP_COUNT] = {
        "embed", "layernorm", "matmul", "attention", "gelu", "tanh", "residual",
        "dropout", "xent", "gradnorm", "adamw", "other",
    };
    const bert_profile *p = &m->prof;
    double total = 0;
    for (int k = 0; k < BERT_OP_COUNT; k++)
        total += p->fwd_s[k] + p->bwd_s[k];
    fprintf(f, "%-10s %10s %10s %7s %9s\n", "op", "fwd ms", "bwd ms", "share", "GFLOP/s");
    for (int k = 0; k < BERT_OP_COUNT; k++) {
        double s = p->fwd_s[k] + p->bwd_s[k];
        if (s == 0)
            continue;
        fprintf(f, "%-10s %10.1f %10.1f %6.1f%% ", names[k], 1e3 * p->fwd_s[k],
                1e3 * p->bwd_s[k], total > 0 ? 100 * s / total : 0);
        if (p->flops[k] > 0)
            fprintf(f, "%9.1f\n", p->flops[k] / s / 1e9);
        else
            fprintf(f, "%9s\n", "-");
    }
    double fl = 0;
    for (int k = 0; k < BERT_OP_COUNT; k++)
        fl += p->flops[k];
    fprintf(f, "%-10s %10s %10s %7s %9.1f   (%.1f ms over %ld forward calls)\n", "total", "", "",
            "", total > 0 ? fl / total / 1e9 : 0, 1e3 * total, p->calls);
}

double bert_train_flops(const bert_config *c, int B, int T, int head, long n_mlm)
{
    double N = (double)B * T, H = c->hidden, fwd = 0;
    for (int l = 0; l < c->layers; l++) {
        double A = bert_attn_width(c, l), I = c->ffn[l];
        fwd += 2 * N * H * (4 * A + 2 * I) + 4.0 * B * T * T * A;
    }
    if (head == BERT_HEAD_MLM)
        fwd += 2.0 * n_mlm * H * (H + c->vocab_size);
    else
        fwd += 2.0 * B * H * (H + c->num_labels);
    return 3 * fwd;
}
