/* cpu_optim.c — the CPU backend's optimizer arithmetic over the flat
 * buffers (bert_backend.h): zero_grad, the per-block sums of squares of
 * the global norm (fixed blocks, combined in block order by bert_optim.c:
 * the same sum for any thread count or shard), scaling, and the AdamW
 * update of the optimizer shard, vectorised. */
#include "kernels/bert_backend.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Fixed chunking of the update (per tensor); the norm's blocks are
 * BERT_GRAD_BLOCK floats of the flat buffer: same sums for any thread
 * count and any shard. */
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

void bert_cpu_grad_sumsq_blocks(bert_model *m, size_t lo, size_t hi, double *part)
{
    size_t nchunk = (hi - lo + BERT_GRAD_BLOCK - 1) / BERT_GRAD_BLOCK;
    const float *g = m->grads;
    #pragma omp parallel for schedule(static)
    for (size_t c = 0; c < nchunk; c++) {
        size_t s = lo + c * BERT_GRAD_BLOCK, e = s + BERT_GRAD_BLOCK < hi ? s + BERT_GRAD_BLOCK : hi;
        part[c] = sumsq_chunk(g + s, e - s);
    }
}

void bert_cpu_scale_grads(bert_model *m, size_t lo, size_t hi, float f)
{
    float *g = m->grads;
    #pragma omp parallel for simd schedule(static)
    for (size_t i = lo; i < hi; i++)
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

/* The update of params [lo, hi) with moments mm/vv indexed from m->opt_lo.
 * Cut as the whole update is (per tensor, 64k-element chunks from the
 * tensor's start) and clipped to the shard: each float's arithmetic is the
 * same whichever pieces it falls in (element-wise; -std=c11 contracts no
 * FMA, and vector and scalar sqrtf/division are exact). */
void bert_cpu_adamw(bert_model *m, const bert_adamw *hp, float lr)
{
    double t = (double)m->adam_t;
    float b1 = hp->beta1, b2 = hp->beta2, eps = hp->eps;
    float bc1 = (float)(1.0 - pow(b1, t)), bc2 = (float)(1.0 - pow(b2, t));
    float step = lr / bc1, bc2s = sqrtf(bc2);
    size_t lo = m->opt_lo, hi = m->opt_hi;
    /* one parallel region over fixed 64k-element chunks of every tensor */
    #pragma omp parallel
    for (int k = 0; k < m->ntensors; k++) {
        const bert_tensor *tt = &m->tensors[k];
        size_t o = tt->offset, nchunk = (tt->numel + CHUNK - 1) / CHUNK;
        if (o >= hi || o + tt->numel <= lo) continue;   /* the same for every thread */
        float decay = tt->decay ? 1.0f - lr * hp->weight_decay : 1.0f;
        #pragma omp for schedule(static) nowait
        for (size_t c = 0; c < nchunk; c++) {
            size_t s = o + c * CHUNK, e = s + CHUNK < o + tt->numel ? s + CHUNK : o + tt->numel;
            if (s < lo) s = lo;
            if (e > hi) e = hi;
            if (s >= e) continue;
            adamw_chunk(m->params + s, m->grads + s, m->adam_m + (s - lo), m->adam_v + (s - lo), e - s,
                        b1, b2, eps, decay, step, bc2s);
        }
    }
}
