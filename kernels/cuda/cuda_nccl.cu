// cuda_nccl.cu — the multi-GPU gradient all-reduce of kernels/cuda (the
// bert_backend_ops dp_* entries behind kernels/dp.h's dp_gpu_*; built only
// when CMake finds NCCL: FLOW_HAVE_NCCL).
//
// One NCCL communicator per local worker (one per granted device, all in
// the node's process: train_dp.c runs a thread per device), W = nlocal *
// world ranks over the processes of the dp_group, global rank w * world +
// rank.  Process rank 0's ncclUniqueId reaches the other processes through
// dp_broadcast (the file or TCP rendezvous of kernels/dp.h; no MPI).
//
// Per optimizer step each worker's gradients G (accumulated over its
// micro-batches on its compute stream) are summed in place by
// ncclAllReduce, bucket by bucket in the plan's order (dp_buckets.c), on a
// separate communication stream: during the worker's last backward of the
// step (dp_arm) the backward calls cuda_dp_ready after each stage, which
// records an event on the compute stream, makes the communication stream
// wait for it and launches the buckets that stage made final; they run
// while the layers below are differentiated.  dp_finish launches what is
// left and makes the compute stream wait for the sums (an event, no host
// sync), so the optimizer reads summed gradients.  Every worker launches the
// same buckets in the same order, each from its own thread.
//
// NCCL's ring/tree sums in its own order, not the micro-batch order of the
// CPU reducer (dp.h): K GPUs match one GPU within rounding, not bit for bit.
// Compiled (sm_86, sm_90, -Werror) and never run on a GPU yet.
#include "bert_cuda.h"

extern "C" {
#include "kernels/dp.h"
}
#include <nccl.h>

#include <stdlib.h>
#include <string.h>

typedef struct cu_dp_worker {
    bert_model *m;
    cudaStream_t comm;              // the communication stream
    cudaEvent_t ready, done;        // compute -> comm (launch), comm -> compute (finish)
    ncclComm_t nccl;
    int armed, next;                // next: buckets launched this step
    int failed;
    flow_err err;
} cu_dp_worker;

typedef struct cu_dp {
    int nlocal, world, rank;
    const dp_bucket_plan *plan;     // owned by dp_gpu (outlives this)
    cu_dp_worker *w;
} cu_dp;

static int nccl_fail(flow_err *e, ncclResult_t r, const char *what, int rank, int W)
{
    return flow_fail(e, FLOW_E_STAGE, "nccl: %s (rank %d of %d): %s", what, rank, W, ncclGetErrorString(r));
}

static void free_state(cu_dp *d)
{
    for (int w = 0; w < d->nlocal; w++) {
        cu_dp_worker *x = &d->w[w];
        if (!x->m) continue;
        cudaSetDevice(x->m->gpu);
        if (x->nccl) ncclCommDestroy(x->nccl);
        if (x->ready) cudaEventDestroy(x->ready);
        if (x->done) cudaEventDestroy(x->done);
        if (x->comm) cudaStreamDestroy(x->comm);
        x->m->dp_state = NULL;
    }
    free(d->w);
    free(d);
}

extern "C" int cuda_dp_new(bert_model *const *rep, int nlocal, struct dp_group *g, const struct dp_bucket_plan *plan,
                           void **state, flow_err *e)
{
    *state = NULL;
    int world = dp_world(g), rank = dp_rank(g), W = nlocal * world;
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) return nccl_fail(e, r, "ncclGetUniqueId", 0, W);
    }
    int rc = dp_broadcast(g, 0, &id, sizeof id, e);     // process 0's id to every process
    if (rc) return rc;
    cu_dp *d = (cu_dp *)calloc(1, sizeof *d);
    cu_dp_worker *ws = (cu_dp_worker *)calloc((size_t)nlocal, sizeof *ws);
    if (!d || !ws) {
        free(d);
        free(ws);
        return flow_fail(e, FLOW_E_NOMEM, "nccl: out of memory");
    }
    d->nlocal = nlocal;
    d->world = world;
    d->rank = rank;
    d->plan = plan;
    d->w = ws;
    cudaError_t cr = cudaSuccess;
    for (int w = 0; w < nlocal && cr == cudaSuccess; w++) {
        cu_dp_worker *x = &ws[w];
        x->m = rep[w];
        cr = cudaSetDevice(rep[w]->gpu);
        if (cr == cudaSuccess) cr = cudaStreamCreateWithFlags(&x->comm, cudaStreamNonBlocking);
        if (cr == cudaSuccess) cr = cudaEventCreateWithFlags(&x->ready, cudaEventDisableTiming);
        if (cr == cudaSuccess) cr = cudaEventCreateWithFlags(&x->done, cudaEventDisableTiming);
    }
    if (cr != cudaSuccess) {
        free_state(d);
        return cuda_fail(e, cr, "data-parallel streams and events");
    }
    // several devices of one process: their communicators in one group
    ncclResult_t r = ncclGroupStart();
    for (int w = 0; w < nlocal && r == ncclSuccess; w++) {
        cudaSetDevice(rep[w]->gpu);
        r = ncclCommInitRank(&ws[w].nccl, W, id, dp_global_worker(w, rank, world));
    }
    ncclResult_t r2 = ncclGroupEnd();
    if (r == ncclSuccess) r = r2;
    if (r != ncclSuccess) {
        for (int w = 0; w < nlocal; w++) ws[w].nccl = NULL;    // not (fully) made: nothing to destroy
        free_state(d);
        return nccl_fail(e, r, "ncclCommInitRank", rank, W);
    }
    for (int w = 0; w < nlocal; w++) {
        rep[w]->dp_state = d;
        rep[w]->dp_worker = w;
    }
    *state = d;
    return 0;
}

extern "C" void cuda_dp_free(void *state)
{
    if (state) free_state((cu_dp *)state);
}

extern "C" void cuda_dp_arm(void *state, int w)
{
    ((cu_dp *)state)->w[w].armed = 1;
}

// Launches buckets next .. upto-1 of worker x after what its compute
// stream has enqueued so far.
static void launch(cu_dp *d, cu_dp_worker *x, int upto)
{
    if (upto <= x->next || x->failed) return;
    struct bert_acts *A = x->m->acts;
    int W = d->nlocal * d->world, rank = dp_global_worker(x->m->dp_worker, d->rank, d->world);
    cudaError_t cr = cudaEventRecord(x->ready, A->c->stream);
    if (cr == cudaSuccess) cr = cudaStreamWaitEvent(x->comm, x->ready, 0);
    if (cr != cudaSuccess) {
        x->failed = 1;
        cuda_fail(&x->err, cr, "gradient all-reduce: stream order");
        return;
    }
    for (int b = x->next; b < upto; b++) {
        size_t lo = d->plan->lo[b], len = d->plan->hi[b] - lo;
        ncclResult_t r = ncclAllReduce(A->G + lo, A->G + lo, len, ncclFloat, ncclSum, x->nccl, x->comm);
        if (r != ncclSuccess) {
            x->failed = 1;
            nccl_fail(&x->err, r, "gradient all-reduce", rank, W);
            return;
        }
    }
    x->next = upto;
}

// The backward's hook (bert_cuda.cu): backward stage `stage` of m is done.
extern "C" void cuda_dp_ready(bert_model *m, int stage)
{
    cu_dp *d = (cu_dp *)m->dp_state;
    cu_dp_worker *x = &d->w[m->dp_worker];
    if (x->armed) launch(d, x, dp_buckets_ready(d->plan, stage));
}

extern "C" int cuda_dp_finish(void *state, int w, flow_err *e)
{
    cu_dp *d = (cu_dp *)state;
    cu_dp_worker *x = &d->w[w];
    cudaSetDevice(x->m->gpu);     // a worker thread's current device is its own
    launch(d, x, d->plan->nb);
    x->armed = 0;
    x->next = 0;
    if (x->failed) {
        x->failed = 0;
        return flow_fail(e, x->err.code, "%s", x->err.msg);
    }
    cudaError_t cr = cudaEventRecord(x->done, x->comm);
    if (cr == cudaSuccess) cr = cudaStreamWaitEvent(x->m->acts->c->stream, x->done, 0);
    return cr == cudaSuccess ? 0 : cuda_fail(e, cr, "gradient all-reduce: stream order");
}
