/* dp_zero.c — ZeRO-1 (contract and the reasoning in dp.h): the optimizer
 * step of data-parallel training with the AdamW moments and the update
 * sharded over the ranks.  Rank q owns floats [dp_slice_lo(q),
 * dp_slice_hi(q)) of the flat buffers (whole BERT_GRAD_BLOCK blocks, so the
 * blocks of the global norm never straddle two ranks); the three
 * all-gathers below move, per rank, its blocks' sums of squares (doubles),
 * its updated params, and at a checkpoint its moments. */
#include "dp.h"

#include <stdlib.h>
#include <string.h>

#define ZERO_MAX 64     /* ranks (dp_reducer_add's limit too) */

/* A variable all-gather: rank q's `mine` (units [a[q], b[q]) of the whole,
 * `unit` bytes each) lands at all + a[q] * unit on every rank. */
static int gather(const dp_reducer *r, const void *mine, void *all, size_t unit, const size_t *a,
                  const size_t *b, flow_err *e)
{
    const void *send[ZERO_MAX];
    void *recv[ZERO_MAX];
    size_t sl[ZERO_MAX], rl[ZERO_MAX];
    for (int q = 0; q < r->world; q++) {
        send[q] = mine;
        sl[q] = (b[r->rank] - a[r->rank]) * unit;
        recv[q] = (char *)all + a[q] * unit;
        rl[q] = (b[q] - a[q]) * unit;
    }
    return dp_exchange(r->g, send, sl, recv, rl, e);
}

/* Every rank's slice in floats (fl, fh) and in norm blocks (bl, bh). */
static void slices(const dp_reducer *r, size_t *fl, size_t *fh, size_t *bl, size_t *bh)
{
    for (int q = 0; q < r->world; q++) {
        fl[q] = dp_slice_lo(r, q);
        fh[q] = dp_slice_hi(r, q);
        bl[q] = fl[q] / BERT_GRAD_BLOCK;
        bh[q] = (fh[q] + BERT_GRAD_BLOCK - 1) / BERT_GRAD_BLOCK;
        if (fh[q] == fl[q]) bh[q] = bl[q];     /* an empty slice has no block */
    }
}

int dp_zero_shard(dp_reducer *r, bert_model *m, flow_err *e)
{
    if (r->world > ZERO_MAX)
        return flow_fail(e, FLOW_E_PARAM, "zero: %d processes (at most %d)", r->world, ZERO_MAX);
    if (r->n != m->nparams || r->slice % BERT_GRAD_BLOCK != 0)
        return flow_fail(e, FLOW_E_PARAM, "zero: the reducer's slices (%zu floats of %zu) are not "
                         "optimizer shards of this model (%zu floats, blocks of %d)", r->slice, r->n,
                         m->nparams, BERT_GRAD_BLOCK);
    return bert_shard_optimizer(m, r->lo, r->hi, e);
}

int dp_zero_step(dp_reducer *r, bert_model *m, const bert_adamw *hp, float lr, float max_norm,
                 float *norm, flow_err *e)
{
    size_t fl[ZERO_MAX], fh[ZERO_MAX], bl[ZERO_MAX], bh[ZERO_MAX];
    if (m->opt_lo != r->lo || m->opt_hi != r->hi)
        return flow_fail(e, FLOW_E_PARAM, "zero: the model's optimizer shard [%zu, %zu) is not this "
                         "rank's slice [%zu, %zu) (dp_zero_shard first)", m->opt_lo, m->opt_hi, r->lo, r->hi);
    slices(r, fl, fh, bl, bh);
    size_t nb = (r->n + BERT_GRAD_BLOCK - 1) / BERT_GRAD_BLOCK;     /* all blocks */
    double *part = calloc(nb + 1, sizeof *part);
    if (!part) return flow_fail(e, FLOW_E_NOMEM, "zero: out of memory (%zu norm blocks)", nb);
    double *mine = part + bl[r->rank];
    bert_grad_sumsq_blocks(m, r->lo, r->hi, mine);
    int rc = gather(r, mine, part, sizeof *part, bl, bh, e);
    if (!rc) {
        *norm = bert_grad_norm_of_blocks(part, nb);
        bert_clip_grads_by(m, r->lo, r->hi, *norm, max_norm);
        bert_adamw_step(m, hp, lr);
        rc = gather(r, m->params + r->lo, m->params, sizeof(float), fl, fh, e);
    }
    free(part);
    return rc;
}

int dp_zero_gather_moments(dp_reducer *r, const bert_model *m, void *mm, void *vv, flow_err *e)
{
    size_t fl[ZERO_MAX], fh[ZERO_MAX], bl[ZERO_MAX], bh[ZERO_MAX];
    slices(r, fl, fh, bl, bh);
    int rc = gather(r, m->adam_m, mm, sizeof(float), fl, fh, e);
    if (!rc) rc = gather(r, m->adam_v, vv, sizeof(float), fl, fh, e);
    return rc;
}
