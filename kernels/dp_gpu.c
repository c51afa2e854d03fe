/* dp_gpu.c — GPU data parallelism's host side (dp.h, dp_gpu_*): checks the
 * replicas, makes the bucket plan (dp_buckets.c) and hands both to the
 * backend's communicator (bert_backend_ops.dp_new: kernels/cuda/cuda_nccl.cu,
 * NCCL).  The arithmetic is the backend's; this file only validates and
 * dispatches, so it runs (and its errors are tested) without a GPU. */
#include "dp.h"
#include "bert_backend.h"

#include <stdlib.h>

struct dp_gpu {
    const bert_backend_ops *ops;
    void *state;
    dp_bucket_plan plan;
};

int dp_gpu_new(bert_model *const *rep, int nlocal, dp_group *g, size_t bucket_floats, dp_gpu **out,
               flow_err *e)
{
    *out = NULL;
    if (nlocal < 1 || !rep[0])
        return flow_fail(e, FLOW_E_PARAM, "GPU data parallelism: %d local workers", nlocal);
    const bert_backend_ops *ops = rep[0]->ops;
    for (int w = 0; w < nlocal; w++) {
        if (rep[w]->backend != BERT_ON_CUDA)
            return flow_fail(e, FLOW_E_PARAM, "GPU data parallelism: worker %d's model runs on the CPU "
                             "(the CPU path sums gradients with dp_reducer)", w);
        if (rep[w]->ops != ops || rep[w]->nparams != rep[0]->nparams)
            return flow_fail(e, FLOW_E_PARAM, "GPU data parallelism: worker %d's model is not worker 0's "
                             "(%zu floats, backend %s; worker 0: %zu, %s)", w, rep[w]->nparams,
                             rep[w]->ops->name, rep[0]->nparams, ops->name);
        for (int v = 0; v < w; v++)
            if (rep[v]->gpu == rep[w]->gpu)
                return flow_fail(e, FLOW_E_PARAM, "GPU data parallelism: workers %d and %d both on GPU %d "
                                 "(one worker per device)", v, w, rep[w]->gpu);
    }
    if (!ops->dp_new)
        return flow_fail(e, FLOW_E_PARAM, "GPU data parallelism needs NCCL, and this CUDA module was "
                         "built without it (CMake found no nccl.h / libnccl: install NCCL and rebuild, "
                         "or use gpus = 1)");
    dp_gpu *d = xcalloc(1, sizeof *d);
    d->ops = ops;
    int rc = dp_bucket_plan_init(&rep[0]->cfg, bucket_floats, &d->plan, e);
    if (!rc) rc = ops->dp_new(rep, nlocal, g, &d->plan, &d->state, e);
    if (rc) {
        dp_bucket_plan_release(&d->plan);
        free(d);
        return rc;
    }
    *out = d;
    return 0;
}

void dp_gpu_free(dp_gpu *d)
{
    if (!d) return;
    d->ops->dp_free(d->state);
    dp_bucket_plan_release(&d->plan);
    free(d);
}

void dp_gpu_arm(dp_gpu *d, int w) { d->ops->dp_arm(d->state, w); }

int dp_gpu_finish(dp_gpu *d, int w, flow_err *e) { return d->ops->dp_finish(d->state, w, e); }

int dp_gpu_buckets(const dp_gpu *d) { return d->plan.nb; }
