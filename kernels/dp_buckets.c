/* dp_buckets.c — the gradient buckets of GPU data parallelism (dp.h,
 * dp_bucket_plan_init): which ranges of the flat gradient are all-reduced
 * together, in the order their gradients become final during backward, so
 * a bucket's all-reduce can start while the backward of the layers below it
 * still runs.  Host arithmetic only (tested here, tests/dp_buckets_test.c);
 * kernels/cuda/cuda_nccl.cu launches the buckets.
 *
 * The backward (bert_cpu.c, bert_cuda.cu) runs the head(s) first, then the
 * encoder layers L-1 .. 0, then the embeddings.  In the flat tensor order
 * of kernels.h the embeddings come first, then layers 0 .. L-1, then the
 * heads, so after the backward's stage s (s = 1: heads done; s = 1 + L - l:
 * layer l done; s = L + 2: embeddings done) every gradient at or above
 * ready[s] is final:
 *   ready[0] = n, ready[1] = the first head float, ready[1 + L - l] = the
 *   first float of layer l, ready[L + 2] = 0.
 * The word embeddings are not final before the end although the tied MLM
 * decoder writes them first: they lie below every boundary but the last.
 *
 * Buckets are cut from the top down, `cap` floats each (the last, at 0,
 * shorter): each cut is rounded up to a multiple of DP_BUCKET_ALIGN floats
 * (256-byte aligned NCCL buffers), so a bucket holds between
 * cap - DP_BUCKET_ALIGN + 1 and cap floats.  Cuts ignore the stages: a
 * bucket that spans a stage boundary waits for the lower stage.
 * Bucket b = [lo[b], hi[b]) with hi[0] = n, lo[nb-1] = 0, lo[b] = hi[b+1];
 * it may be launched once the backward has reached a stage s with
 * ready[s] <= lo[b]. */
#include "dp.h"

#include <stdlib.h>
#include <string.h>

void dp_bucket_plan_release(dp_bucket_plan *p)
{
    free(p->lo);
    free(p->hi);
    free(p->ready);
    memset(p, 0, sizeof *p);
}

/* The stage boundaries ready[0 .. L+2] from the tensor table (see the top). */
static int stage_boundaries(const bert_config *c, size_t *ready, flow_err *e)
{
    bert_tensor *t = NULL;
    int nt = 0, L = c->layers;
    int rc = bert_tensor_table(c, &t, &nt, e);
    if (rc) return rc;
    size_t n = bert_param_count(c), heads_lo = 0;
    for (int l = 0; l < L; l++) ready[1 + L - l] = n;
    for (int i = 0; i < nt; i++) {
        int l = -1;
        char rest[80];
        if (sscanf(t[i].name, "bert.encoder.layer.%d.%79s", &l, rest) != 2 || l < 0 || l >= L) continue;
        if (t[i].offset < ready[1 + L - l]) ready[1 + L - l] = t[i].offset;
        if (t[i].offset + t[i].numel > heads_lo) heads_lo = t[i].offset + t[i].numel;
    }
    free(t);
    ready[0] = n;
    ready[1] = heads_lo;
    ready[L + 2] = 0;
    for (int s = 1; s <= L + 2; s++)
        if (ready[s] > ready[s - 1])
            return flow_fail(e, FLOW_E_PARAM, "gradient buckets: the tensor table is not in layer order "
                             "(stage %d starts at float %zu, above stage %d's %zu)", s, ready[s], s - 1,
                             ready[s - 1]);
    return 0;
}

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

int dp_bucket_plan_init(const bert_config *c, size_t cap, dp_bucket_plan *p, flow_err *e)
{
    memset(p, 0, sizeof *p);
    if (cap < DP_BUCKET_ALIGN)
        return flow_fail(e, FLOW_E_PARAM, "gradient buckets of %zu floats: at least %d", cap, DP_BUCKET_ALIGN);
    int rc = bert_config_validate(c, e);
    if (rc) return rc;
    p->nstages = c->layers + 3;
    p->ready = xcalloc((size_t)p->nstages, sizeof *p->ready);
    if ((rc = stage_boundaries(c, p->ready, e))) {
        dp_bucket_plan_release(p);
        return rc;
    }
    size_t n = p->ready[0];
    p->n = n;
    size_t maxb = n / (cap - DP_BUCKET_ALIGN + 1) + 2;
    p->lo = xcalloc(maxb, sizeof *p->lo);
    p->hi = xcalloc(maxb, sizeof *p->hi);
    size_t top = n;
    while (top > 0) {
        size_t cut = top > cap ? round_up(top - cap, DP_BUCKET_ALIGN) : 0;
        p->lo[p->nb] = cut;
        p->hi[p->nb] = top;
        p->nb++;
        top = cut;
    }
    return 0;
}

int dp_buckets_ready(const dp_bucket_plan *p, int stage)
{
    if (stage >= p->nstages - 1) return p->nb;
    size_t boundary = p->ready[stage < 0 ? 0 : stage];
    int b = 0;
    while (b < p->nb && p->lo[b] >= boundary) b++;
    return b;
}
