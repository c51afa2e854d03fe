/* dp.h — data-parallel training's communication (library flow_kernels):
 * the group of processes that train one node together (a TCP mesh set up
 * through a file or TCP rendezvous), and the gradient reducer that sums
 * the micro-batch gradients of an optimizer step in ONE fixed order.
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

int dp_reducer_init(dp_reducer *r, dp_group *g, size_t n, flow_err *e);
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

#endif
