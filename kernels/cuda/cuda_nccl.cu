// cuda_nccl.cu — the multi-GPU gradient all-reduce of kernels/cuda
// (cuda_ops.h; built only when CMake finds NCCL: FLOW_HAVE_NCCL): one NCCL
// rank per process, bootstrapped through the data-parallel group of
// kernels/dp.h (rank 0's ncclUniqueId reaches every rank over the file or
// TCP rendezvous, so MPI is not needed), and an in-place sum in buckets on
// the context's stream.  Unlike the CPU reducer (dp.h), NCCL's ring order
// is not the sequential micro-batch order: GPU data parallelism matches
// one device within tolerance, not bit for bit.  Compiled here; never run
// on a GPU yet, and the training loop does not call it yet.
#include "cuda_internal.h"

extern "C" {
#include "kernels/dp.h"
}
#include <nccl.h>

#include <stdlib.h>

struct cuda_nccl {
    cuda_ctx *c;
    ncclComm_t comm;
    int rank, world;
};

extern "C" int cuda_nccl_new(cuda_ctx *c, struct dp_group *g, cuda_nccl **out, flow_err *e)
{
    *out = NULL;
    int world = dp_world(g), rank = dp_rank(g);
    ncclUniqueId id, *all = (ncclUniqueId *)calloc((size_t)world, sizeof id);
    if (!all) return flow_fail(e, FLOW_E_NOMEM, "nccl: out of memory");
    ncclResult_t r = ncclSuccess;
    if (rank == 0) r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) {
        free(all);
        return flow_fail(e, FLOW_E_STAGE, "nccl: ncclGetUniqueId: %s", ncclGetErrorString(r));
    }
    int rc = dp_allgather(g, &id, sizeof id, all, e);     // everyone takes rank 0's
    id = all[0];
    free(all);
    if (rc) return rc;
    cuda_nccl *n = (cuda_nccl *)calloc(1, sizeof *n);
    if (!n) return flow_fail(e, FLOW_E_NOMEM, "nccl: out of memory");
    n->c = c;
    n->rank = rank;
    n->world = world;
    cudaSetDevice(c->dev);
    r = ncclCommInitRank(&n->comm, world, id, rank);
    if (r != ncclSuccess) {
        free(n);
        return flow_fail(e, FLOW_E_STAGE, "nccl: ncclCommInitRank (rank %d of %d): %s", rank, world,
                         ncclGetErrorString(r));
    }
    *out = n;
    return 0;
}

extern "C" void cuda_nccl_free(cuda_nccl *n)
{
    if (!n) return;
    ncclCommDestroy(n->comm);
    free(n);
}

extern "C" int cuda_nccl_allreduce(cuda_nccl *nc, float *g, size_t n, size_t bucket, flow_err *e)
{
    if (bucket == 0) bucket = n;
    for (size_t s = 0; s < n; s += bucket) {
        size_t len = n - s < bucket ? n - s : bucket;
        ncclResult_t r = ncclAllReduce(g + s, g + s, len, ncclFloat, ncclSum, nc->comm, nc->c->stream);
        if (r != ncclSuccess)
            return flow_fail(e, FLOW_E_STAGE, "nccl: all-reduce of %zu floats: %s", len, ncclGetErrorString(r));
    }
    return 0;
}
