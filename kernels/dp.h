/* dp.h — data-parallel training's communication (library flow_kernels):
 * the group of processes that train one node together (a TCP mesh set up
 * through a file or TCP rendezvous), the gradient reducer that sums
 * the micro-batch gradients of an optimizer step in ONE fixed order, and
 * the ZeRO-1 optimizer step sharded over the processes.
 *
 * ---- why a fixed order ---------------------------------------------------
 * A step's gradient is the sum of its micro-batches' gradients G_0 .. G_{n-1}
 * (each computed into a zeroed buffer, loss scale 1/n inside).  The reducer
 * folds them element-wise in micro-batch order, acc = ((G_0 + G_1) + G_2) ...,
 * whoever computed them: K workers (threads of one process, processes, or
 * both) take the micro-batches of a step round-robin, round r giving micro-
 * batch r*K + g to global worker g, and each round is folded in g order.  The
 * sequence of float additions per element is therefore the same for every K,
 * and K workers give the same bytes as 1 (tests/train_dp_test.sh).  The first
 * present contribution is copied, not added to zero, so a step of one
 * micro-batch is exactly its gradient.
 *
 * ---- who holds what ----------------------------------------------------------
 * Between rounds each rank keeps only its slice of the running sum (floats
 * [lo, hi) of the flat gradient, slices in rank order): a round is a reduce-
 * scatter (every rank sends slice p of its buffers to rank p, which folds the
 * world's contributions in order), the step's end an all-gather of the slices.
 * Global worker g = w * world + rank for the process's local worker w, so a
 * rank folds after each local worker's exchange with a buffer of one slice
 * per rank.
 *
 * ---- environment (several processes) ------------------------------------------
 *   FLOW_DP_WORLD, FLOW_DP_RANK   processes and this one's rank; when unset,
 *                                 Open MPI's OMPI_COMM_WORLD_SIZE/_RANK or
 *                                 PMI_SIZE/PMI_RANK (mpirun, srun) are used
 *   FLOW_DP_RENDEZVOUS            file:DIR (a folder every rank can write,
 *                                 e.g. on NFS) or tcp:HOST:PORT (rank 0
 *                                 listens there)
 *   FLOW_DP_ADDR                  the address other ranks reach this one at
 *                                 (default: the first IPv4 address of the
 *                                 host name, else 127.0.0.1)
 *   FLOW_DP_TIMEOUT               seconds to wait for peers (default 600)
 * The tag (the node's key) names the rendezvous: every rank must train the
 * same node, or the rendezvous fails naming both keys.
 */
#ifndef FLOW_DP_H
#define FLOW_DP_H

#include <stddef.h>
#include "engine/base/base.h"
#include "kernels/kernels.h"

typedef struct dp_group dp_group;

/* Joins the group described by the environment; *out = NULL (and 0) when
 * it describes one process.  FLOW_E_PARAM for a malformed environment
 * (names the variable), FLOW_E_IO when peers are not reached in time. */
int dp_group_from_env(const char *tag, dp_group **out, flow_err *e);
/* rendezvous "file:DIR" or "tcp:HOST:PORT"; world >= 2, 0 <= rank < world. */
int dp_group_join(const char *rendezvous, int rank, int world, const char *tag,
                  double timeout_s, dp_group **out, flow_err *e);
void dp_group_free(dp_group *g);
int dp_rank(const dp_group *g);     /* 0 for NULL */
int dp_world(const dp_group *g);    /* 1 for NULL */

/* Every rank sends send[p] (send_len[p] bytes) to rank p and receives rank
 * q's into recv[q] (recv_len[q] bytes, which must be what q sends); the
 * rank's own entry is copied.  All ranks call it together. */
int dp_exchange(dp_group *g, const void *const *send, const size_t *send_len,
                void *const *recv, const size_t *recv_len, flow_err *e);
/* all[q*len .. (q+1)*len) = rank q's mine[len] on every rank. */
int dp_allgather(dp_group *g, const void *mine, size_t len, void *all, flow_err *e);
/* buf[len] of rank root replaces buf on every rank (e.g. rank 0's NCCL
 * unique id: kernels/cuda/cuda_nccl.cu).  A group of one (NULL): nothing. */
int dp_broadcast(dp_group *g, int root, void *buf, size_t len, flow_err *e);

/* The global worker (and NCCL rank) of local worker w of process rank of
 * world: w * world + rank, the numbering the round-robin of the training
 * loop and the GPU communicators share (so global worker 0, the NCCL root,
 * is process 0's worker 0). */
static inline int dp_global_worker(int w, int rank, int world) { return w * world + rank; }

/* ---- the fixed-order gradient reducer ------------------------------------ */
typedef struct dp_reducer {
    dp_group *g;            /* NULL: one process */
    int world, rank;
    size_t n;               /* floats of the flat gradient */
    size_t slice;           /* floats per rank slice (the last may be shorter) */
    size_t lo, hi;          /* this rank's slice */
    float *acc;             /* [hi - lo] running sum of the step */
    float *recv;            /* [world * slice] one round's slices (world > 1) */
    int started;            /* some contribution folded in this step */
} dp_reducer;

/* Slices of ceil(n / align / world) * align floats in rank order (the last
 * ones shorter or empty): align 1 balances the fold, BERT_GRAD_BLOCK
 * makes the slices ZeRO-1 optimizer shards (below). */
int dp_reducer_init(dp_reducer *r, dp_group *g, size_t n, size_t align, flow_err *e);
void dp_reducer_release(dp_reducer *r);
/* A new optimizer step. */
void dp_reducer_begin(dp_reducer *r);
/* One round: local[w] [n] is the gradient of this process's local worker
 * w (w < nlocal, the same nlocal on every rank); present[w * world + q] says
 * whether rank q's worker w had a micro-batch (the same array on every rank,
 * see dp_allgather).  Absent buffers are neither sent nor read. */
int dp_reducer_add(dp_reducer *r, const float *const *local, const int *present, int nlocal,
                   flow_err *e);
/* The step's sum into out[n] on every rank (zeros when nothing was present). */
int dp_reducer_end(dp_reducer *r, float *out, flow_err *e);
/* ZeRO-1: only this rank's slice of the sum, into out[lo, hi) (no
 * exchange; the rest of out is left as it is). */
int dp_reducer_end_shard(dp_reducer *r, float *out, flow_err *e);
/* Rank q's slice [dp_slice_lo, dp_slice_hi). */
size_t dp_slice_lo(const dp_reducer *r, int q);
size_t dp_slice_hi(const dp_reducer *r, int q);

/* ---- ZeRO-1: the optimizer step sharded over the ranks (dp_zero.c) -------
 * Each rank keeps the AdamW moments of its slice only (a reducer made with
 * align = BERT_GRAD_BLOCK: slice q = floats [dp_slice_lo(q), dp_slice_hi(q))
 * of the flat buffers in the tensor order of kernels.h, whole blocks of the
 * grad norm, the last slices shorter or empty) and updates only those
 * params.  A step, after dp_reducer_end_shard(r, m->grads):
 *   1. each rank sums the squares of its slice's gradient blocks
 *      (bert_grad_sumsq_blocks); the sums are all-gathered: in rank order
 *      they are the blocks of the whole buffer in block order, so every
 *      rank adds the same doubles in the same order as bert_grad_norm of
 *      the all-reduced gradient would;
 *   2. each rank clips its slice by that norm and runs AdamW on it: element-
 *      wise, so each float gets the value of the unsharded step;
 *   3. the updated params are all-gathered (slice q from rank q).
 * Every rank ends the step with the params of the unsharded step, bit for
 * bit, while holding 2/world of the moments; per step it moves the same
 * bytes as the unsharded all-reduce (gradient reduce-scatter + parameter
 * all-gather instead of + gradient all-gather) plus 8 bytes per block. */
/* Shards m's optimizer to r's slice (bert_shard_optimizer; r made with
 * align = BERT_GRAD_BLOCK, else FLOW_E_PARAM). */
int dp_zero_shard(dp_reducer *r, bert_model *m, flow_err *e);
/* Steps 1-3 above with learning rate lr (adam_t incremented); *norm = the
 * global norm before clipping (max_norm <= 0: no clipping). */
int dp_zero_step(dp_reducer *r, bert_model *m, const bert_adamw *hp, float lr, float max_norm,
                 float *norm, flow_err *e);
/* The whole moments, nparams floats each, into the bytes at mm and vv on
 * every rank (any alignment: e.g. straight into a checkpoint payload that
 * any number of ranks, sharded or not, can resume). */
int dp_zero_gather_moments(dp_reducer *r, const bert_model *m, void *mm, void *vv, flow_err *e);

/* ---- GPU data parallelism: gradient buckets (dp_buckets.c) -----------------
 * One worker per granted GPU (train_dp.c); after each optimizer step's
 * micro-batches the devices' gradients are summed by an NCCL all-reduce
 * (kernels/cuda/cuda_nccl.cu) in buckets of the flat gradient, launched on a
 * communication stream as soon as the backward has made them final (the
 * stage rule of dp_buckets.c), so they overlap the backward of the layers
 * below.  NCCL's ring sums in its own order, not the micro-batch order of
 * the CPU reducer: K GPUs match one GPU within the precision's rounding,
 * not bit for bit, so the GPU count is in a GPU training node's key. */
#define DP_BUCKET_ALIGN 64          /* floats: inner cuts on 256-byte boundaries */
#define DP_BUCKET_FLOATS (25u << 18)   /* 25 MiB of fp32 (PyTorch DDP's default bucket) */
typedef struct dp_bucket_plan {
    size_t n;               /* floats of the flat gradient */
    int nb;                 /* buckets, launched in index order */
    size_t *lo, *hi;        /* [nb]: bucket b = floats [lo[b], hi[b]), hi[0] = n, descending */
    int nstages;            /* layers + 3 */
    size_t *ready;          /* [nstages]: after backward stage s every gradient at
                             * or above ready[s] is final (dp_buckets.c) */
} dp_bucket_plan;
/* The plan for config c with buckets of at most cap floats (cap >=
 * DP_BUCKET_ALIGN, else FLOW_E_PARAM; an invalid config: its error). */
int dp_bucket_plan_init(const bert_config *c, size_t cap, dp_bucket_plan *p, flow_err *e);
void dp_bucket_plan_release(dp_bucket_plan *p);
/* How many buckets (a prefix) may be launched once backward stage `stage`
 * is done: 1 = the head(s), 1 + L - l = layer l, L + 2 (or more) = all. */
int dp_buckets_ready(const dp_bucket_plan *p, int stage);

/* ---- GPU data parallelism: the devices' communicator (dp_gpu.c) ------------
 * rep[w] (w < nlocal) is local worker w's model, each on its own GPU (its
 * ordinal in rep[w]->gpu), all of one config; g the process group (NULL:
 * this process alone).  Global worker w * world + rank is NCCL rank
 * w * world + rank of W = nlocal * world, the round-robin numbering of
 * train_dp.c, so micro-batch k of a step runs on the same global worker
 * whatever the mix of processes and devices.  Process rank 0's NCCL unique
 * id reaches the others through dp_broadcast (the file or TCP rendezvous of
 * dp_group; no MPI needed).  FLOW_E_PARAM when the backend has no NCCL (a
 * CPU model, or a CUDA module built without NCCL), naming the reason. */
typedef struct dp_gpu dp_gpu;
int dp_gpu_new(bert_model *const *rep, int nlocal, dp_group *g, size_t bucket_floats, dp_gpu **out,
               flow_err *e);
void dp_gpu_free(dp_gpu *d);
/* Worker w's next backward is its last of the step: it launches each bucket
 * as soon as it is final (the hook in the backend's backward). */
void dp_gpu_arm(dp_gpu *d, int w);
/* Ends worker w's step: launches the buckets not launched yet (all of them
 * for a worker without a micro-batch in the last round) and makes the
 * device's compute stream wait for the sums.  Called once per step by
 * every local worker, each on its own thread (one thread per communicator,
 * so no NCCL call waits on a thread that has not reached it). */
int dp_gpu_finish(dp_gpu *d, int w, flow_err *e);
int dp_gpu_buckets(const dp_gpu *d);

#endif
