/* train_dp.c — the data-parallel side of the training loop (trainer.h,
 * tr_dp_*): the node's K local workers (threads, each with its own model
 * replica, sharing the parameters) and the other processes of the
 * node's dp_group (kernels/dp.h), taking the micro-batches of every
 * optimizer step round-robin, with gradients summed by the fixed-order
 * reducer.  One worker in one process runs the same code: the bytes are
 * the same for every K and every process count (dp.h says why).
 *
 * Per step s with micro-batches k0..k1 (n = k1 - k0) and W = K * world
 * global workers, round r gives micro-batch k0 + r*W + g to global worker
 * g = w * world + rank.  Micro-batch k runs its forward with dropout
 * counter fwd_counter(step start) + (k - k0), skipped or not, so its masks
 * do not depend on who runs it; the step advances the counter by n.  The
 * loss is sum over present k, in k order, of loss_k / n; tokens are summed
 * over all workers of all ranks.
 *
 * Memory per extra local worker: a model's gradients and activations (its
 * optimizer shard is empty); per process the reducer's sum (a 1/world
 * slice of the gradient) and, with several processes, one gradient-sized
 * receive buffer.  Without zero every process keeps the full AdamW state
 * and runs the same update; with `zero = 1` (ZeRO-1, kernels/dp.h) process
 * q keeps the moments of its reducer slice only (2/world of them, slices
 * of whole BERT_GRAD_BLOCK blocks), clips and updates that slice, and the
 * params are all-gathered: the same bytes.  The K local workers of one
 * process share one copy of the params and of its optimizer shard, so
 * zero shards over processes (hosts, later one per GPU), not threads.
 * A checkpoint holds the whole moments (all-gathered when it is written),
 * so it resumes with any number of processes and workers, zero or not.
 *
 * CPU local replicas alias the first model's parameters (forwards only
 * read them, and the optimizer runs between rounds).
 *
 * On GPUs (the CUDA backend) a node granted K GPUs runs K local workers,
 * one per device (worker w on flow_gpu_id(w), driven by its own thread, as
 * the CPU workers are; the worker process was forked by a scheduler that
 * holds no CUDA context, so none is inherited), with the same round-robin
 * as above over W = K * world.  A GPU worker skips the host reducer: its
 * micro-batches accumulate their gradients in its device's buffer
 * (bert_backward adds, scaled 1/n), zeroed once per step.  With W > 1 the
 * devices' sums are added by NCCL (kernels/dp.h dp_gpu_*): each worker's
 * last backward of the step launches the gradient buckets as they become
 * final, on a communication stream, and every worker ends its last round
 * with dp_gpu_finish on its own thread.  Each GPU replica keeps its own
 * parameters and full AdamW state and runs the same update on the same
 * summed gradient (the norm is worker 0's: the sums are equal on every
 * device), so the replicas stay equal without a broadcast; they start from
 * worker 0's state after resume (tr_dp_agree).  NCCL's sum order is not
 * the micro-batch order: K GPUs match one GPU within rounding, so the GPU
 * count is in the key (engine/key.c).  `workers` and `zero = 1` stay
 * CPU-only.  The GPU paths compile; they have never run on a GPU. */
#include "trainer.h"
#include "kernels/dp.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define DP_LOCAL_MAX 64

typedef struct dp_job {
    bert_model *m;
    bert_batch bb;
    int head;
    int present;
    uint64_t counter;
    float scale;
    int accumulate;                     /* 1: add to the gradients (a GPU model), 0: zero them first */
    dp_gpu *gdp;                        /* GPU data parallelism: set in a step's last round */
    int w;                              /* the local worker */
    int threads;
    double loss;
    int rc;
    flow_err err;
} dp_job;

/* what each worker tells every rank after a round */
typedef struct dp_info {
    int32_t present, failed;
    int64_t tokens;
    double loss;
} dp_info;

struct tr_dp {
    flow_ctx *c;
    bert_model *m;                      /* worker 0's model: the node's */
    int nlocal, world, rank, threads;
    int zero;                           /* ZeRO-1: m's optimizer is red's slice */
    int on_device;                      /* m runs on a GPU: no host reducer (see the top) */
    /* fp16 dynamic loss scaling (torch.cuda.amp.GradScaler's rule): the
     * loss gradient is multiplied by ls (2^16 at the start); a step whose
     * gradients are not finite is skipped (no update, adam_t unchanged)
     * and halves ls; 2000 finite steps in a row double it.  ls = 1 for
     * fp32 and bf16 (bf16 has fp32's range). */
    tr_scaler sc;                       /* .scale, .good (finite steps in a row), .skipped */
    bert_model *rep[DP_LOCAL_MAX];      /* rep[0] = m */
    dp_gpu *gdp;                        /* NCCL over the W GPU workers (W > 1), else NULL */
    float *own_params[DP_LOCAL_MAX];    /* replicas' own buffers, restored before free */
    tr_batch b[DP_LOCAL_MAX];
    dp_job job[DP_LOCAL_MAX];
    dp_group *g;
    dp_reducer red;
    dp_info *info;                      /* [world * nlocal] */
    int *present;                       /* [nlocal * world] */
};

int tr_dp_world(const tr_dp *d) { return d->world * d->nlocal; }

void tr_dp_free(tr_dp *d)
{
    if (!d) return;
    dp_gpu_free(d->gdp);
    for (int w = 1; w < d->nlocal; w++)
        if (d->rep[w]) {
            d->rep[w]->params = d->own_params[w];
            bert_model_free(d->rep[w]);
        }
    for (int w = 0; w < d->nlocal; w++) tr_batch_release(&d->b[w]);
    dp_reducer_release(&d->red);
    dp_group_free(d->g);
    free(d->info);
    free(d->present);
    free(d);
}

int tr_dp_new(flow_ctx *c, bert_model *m, int batch, int has_ext_backward, tr_dp **out)
{
    *out = NULL;
    tr_dp *d = xcalloc(1, sizeof *d);
    d->c = c;
    d->m = m;
    int on_gpu = m->backend != BERT_ON_CPU;
    d->nlocal = on_gpu ? flow_gpu_count(c) : flow_workers(c);    /* one worker per granted GPU */
    d->zero = flow_zero(c);
    d->threads = flow_threads(c);
    flow_err err = { 0 };
    char hex[33];
    flow_node_key_hex(c, hex);
    int rc = 0;
    if (on_gpu && flow_workers(c) > 1)
        rc = flow_ctx_fail(c, FLOW_E_PARAM, "workers = %d: on GPUs the node runs one worker per granted "
                           "device (gpus = K); remove workers", flow_workers(c));
    else if (d->nlocal > DP_LOCAL_MAX)
        rc = flow_ctx_fail(c, FLOW_E_PARAM, "%d local data-parallel workers: at most %d", d->nlocal,
                           DP_LOCAL_MAX);
    else if (d->nlocal > 1 && has_ext_backward)
        rc = flow_ctx_fail(c, FLOW_E_PARAM, "workers = %d: an objective with its own backward "
                           "(distillation) shares its teacher between workers; use workers = 1", d->nlocal);
    else if (d->zero && m->backend != BERT_ON_CPU)
        rc = flow_ctx_fail(c, FLOW_E_PARAM, "zero = 1: the sharded optimizer step runs on the CPU backend "
                           "only (remove zero, or train on the CPU)");
    if (!rc && (rc = dp_group_from_env(hex, &d->g, &err)))
        rc = flow_ctx_fail(c, rc, "%s", err.msg);
    d->world = dp_world(d->g);
    d->rank = dp_rank(d->g);
    d->rep[0] = m;
    d->on_device = on_gpu;
    d->sc.scale = m->precision == BERT_FP16 ? 65536.0f : 1.0f;
    for (int w = 1; !rc && w < d->nlocal; w++) {
        bert_device dev = bert_device_cpu;
        if (on_gpu) dev = (bert_device){ flow_gpu_id(c, w), 0, m->precision };
        if ((rc = bert_model_new(&m->cfg, m->max_B, m->max_T, &dev, &d->rep[w], &err))) {
            rc = on_gpu ? flow_ctx_fail(c, rc, "gpus = %d: the replica on GPU %d: %s", d->nlocal, dev.gpu, err.msg)
                        : flow_ctx_fail(c, rc, "workers = %d: replica %d: %s", d->nlocal, w, err.msg);
            break;
        }
        d->own_params[w] = d->rep[w]->params;
        if (on_gpu) continue;       /* its own parameters and optimizer: it steps like worker 0 */
        d->rep[w]->params = m->params;
        if ((rc = bert_shard_optimizer(d->rep[w], 0, 0, &err)))   /* a replica never steps */
            rc = flow_ctx_fail(c, rc, "workers = %d: replica %d: %s", d->nlocal, w, err.msg);
    }
    if (!rc && on_gpu && d->nlocal * d->world > 1 &&
        (rc = dp_gpu_new(d->rep, d->nlocal, d->g, DP_BUCKET_FLOATS, &d->gdp, &err)))
        rc = flow_ctx_fail(c, rc, "%d GPU workers (%d per process x %d process%s): %s", d->nlocal * d->world,
                           d->nlocal, d->world, d->world == 1 ? "" : "es", err.msg);
    for (int w = 0; w < d->nlocal; w++) tr_batch_init(&d->b[w], batch, m->max_T);
    if (!rc && (rc = dp_reducer_init(&d->red, d->g, m->nparams, d->zero ? BERT_GRAD_BLOCK : 1, &err)))
        rc = flow_ctx_fail(c, rc, "%s", err.msg);
    if (!rc && d->zero && (rc = dp_zero_shard(&d->red, m, &err)))
        rc = flow_ctx_fail(c, rc, "%s", err.msg);
    if (rc) {
        tr_dp_free(d);
        return rc;
    }
    d->info = xcalloc((size_t)d->world * (size_t)d->nlocal, sizeof *d->info);
    d->present = xcalloc((size_t)d->world * (size_t)d->nlocal, sizeof *d->present);
    if (d->gdp) {
        char ids[256];
        int len = 0;
        for (int w = 0; w < d->nlocal && len < 200; w++) len += snprintf(ids + len, sizeof ids - (size_t)len, "%s%d", w ? "," : "", d->rep[w]->gpu);
        flow_log(c, "data-parallel on GPUs %s: %d worker%s per process x %d process%s (rank %d), gradients "
                 "all-reduced by NCCL in %d buckets of up to %.0f MiB, overlapped with the last backward",
                 ids, d->nlocal, d->nlocal == 1 ? "" : "s", d->world, d->world == 1 ? "" : "es", d->rank,
                 dp_gpu_buckets(d->gdp), (double)DP_BUCKET_FLOATS * 4.0 / 1048576.0);
    } else if (d->world > 1 || d->nlocal > 1)
        flow_log(c, "data-parallel: %d worker%s per process x %d process%s (rank %d), %d thread%s each",
                 d->nlocal, d->nlocal == 1 ? "" : "s", d->world, d->world == 1 ? "" : "es", d->rank,
                 d->threads / d->nlocal > 1 ? d->threads / d->nlocal : 1,
                 d->threads / d->nlocal > 1 ? "s" : "");
    if (d->zero)
        flow_log(c, "zero = 1: this process (rank %d of %d) keeps the AdamW moments of floats [%zu, %zu) "
                 "of %zu (%.1f of %.1f MiB) and updates them; the params are all-gathered", d->rank,
                 d->world, d->red.lo, d->red.hi, m->nparams, 8.0 * (double)(d->red.hi - d->red.lo) / 1048576.0,
                 8.0 * (double)m->nparams / 1048576.0);
    *out = d;
    return 0;
}

/* GPU replicas 1.. take worker 0's state (after resume): params, moments,
 * AdamW step and RNG counters, through the host. */
static int gpu_replicas_sync(tr_dp *d)
{
    flow_err err = { 0 };
    bert_model *m = d->m;
    if (d->nlocal > 1 && bert_sync_to_host(m, &err)) return flow_ctx_fail(d->c, FLOW_E_STAGE, "%s", err.msg);
    for (int w = 1; w < d->nlocal; w++) {
        bert_model *r = d->rep[w];
        memcpy(r->params, m->params, m->nparams * sizeof(float));
        memcpy(r->adam_m, m->adam_m, m->nparams * sizeof(float));
        memcpy(r->adam_v, m->adam_v, m->nparams * sizeof(float));
        r->adam_t = m->adam_t;
        r->dropout_seed = m->dropout_seed;
        r->fwd_counter = m->fwd_counter;
        if (bert_sync_to_device(r, &err))
            return flow_ctx_fail(d->c, FLOW_E_STAGE, "the replica on GPU %d: %s", r->gpu, err.msg);
    }
    return 0;
}

int tr_dp_agree(tr_dp *d, long step, long checkpoint_every)
{
    if (d->on_device) {
        int rc = gpu_replicas_sync(d);
        if (rc) return rc;
    }
    if (d->world == 1) return 0;
    int64_t mine[4] = { step, d->nlocal, d->zero, checkpoint_every };
    int64_t *all = xcalloc((size_t)d->world * 4, sizeof *all);
    flow_err err = { 0 };
    int rc = dp_allgather(d->g, mine, sizeof mine, all, &err);
    if (rc) rc = flow_ctx_fail(d->c, rc, "%s", err.msg);
    for (int q = 0; !rc && q < d->world; q++)
        if (all[4 * q + 1] != d->nlocal)
            rc = flow_ctx_fail(d->c, FLOW_E_PARAM, "data-parallel: rank %d has workers = %lld, this rank "
                               "(%d) workers = %d: give every rank the same graph", q,
                               (long long)all[4 * q + 1], d->rank, d->nlocal);
        else if (all[4 * q + 2] != d->zero)
            rc = flow_ctx_fail(d->c, FLOW_E_PARAM, "data-parallel: rank %d has zero = %lld, this rank "
                               "(%d) zero = %d: give every rank the same graph", q,
                               (long long)all[4 * q + 2], d->rank, d->zero);
        else if (d->zero && all[4 * q + 3] != checkpoint_every)   /* a checkpoint gathers the moments */
            rc = flow_ctx_fail(d->c, FLOW_E_PARAM, "data-parallel: rank %d has checkpoint_every = %lld, "
                               "this rank (%d) %ld: with zero = 1 every rank must checkpoint at the same "
                               "steps; give every rank the same graph", q, (long long)all[4 * q + 3],
                               d->rank, checkpoint_every);
        else if (all[4 * q] != step)
            rc = flow_ctx_fail(d->c, FLOW_E_STAGE, "data-parallel: rank %d starts at step %lld, this rank "
                               "(%d) at step %ld: every rank needs the same checkpoint (same cache state)",
                               q, (long long)all[4 * q], d->rank, step);
    free(all);
    return rc;
}

/* The end of a GPU worker's last round: the buckets its backward did not
 * launch, always (even after a failure: the other devices wait for them). */
static void gpu_finish(dp_job *j)
{
    if (!j->gdp) return;
    flow_err err = { 0 };
    int rc = dp_gpu_finish(j->gdp, j->w, &err);
    if (rc && !j->rc) {
        j->rc = rc;
        j->err = err;
    }
}

static void *run_job(void *arg)
{
    dp_job *j = arg;
    omp_set_num_threads(j->threads);
    bert_model *m = j->m;
    j->loss = 0;
    j->rc = 0;
    if (j->present) {
        if (!j->accumulate) bert_zero_grad(m);
        if (j->gdp) dp_gpu_arm(j->gdp, j->w);    /* its last backward of the step */
        m->fwd_counter = j->counter;
        bert_output out;
        j->rc = bert_forward(m, &j->bb, j->head, 1, &out, &j->err);
        if (!j->rc) j->rc = bert_backward(m, j->scale, &j->err);
        j->loss = out.loss;
    }
    gpu_finish(j);
    return NULL;
}

/* Runs the local jobs of a round: worker 0 on this thread, the others on
 * their own threads (each with its share of the node's threads). */
static void run_round(tr_dp *d, const tr_objective *obj)
{
    int tpw = d->threads / d->nlocal > 1 ? d->threads / d->nlocal : 1;
    pthread_t th[DP_LOCAL_MAX];
    int started[DP_LOCAL_MAX] = { 0 };
    for (int w = 0; w < d->nlocal; w++) {
        d->job[w].threads = tpw;
        d->rep[w]->dropout_seed = d->m->dropout_seed;
    }
    if (obj->backward) {    /* one local worker (tr_dp_new): the stage's own backward */
        dp_job *j = &d->job[0];
        j->rc = 0;
        j->loss = 0;
        if (j->present) {
            bert_output out;
            if (!j->accumulate) bert_zero_grad(d->m);
            if (j->gdp) dp_gpu_arm(j->gdp, 0);
            d->m->fwd_counter = j->counter;
            j->rc = bert_forward(d->m, &j->bb, obj->head, 1, &out, &j->err);
            if (!j->rc) j->rc = obj->backward(obj->self, d->m, &j->bb, &out, j->scale, &j->loss, &j->err);
        }
        gpu_finish(j);
        return;
    }
    for (int w = 1; w < d->nlocal; w++)
        started[w] = pthread_create(&th[w], NULL, run_job, &d->job[w]) == 0;
    int outer = omp_get_max_threads();
    run_job(&d->job[0]);
    omp_set_num_threads(outer);
    for (int w = 1; w < d->nlocal; w++) {
        if (started[w]) pthread_join(th[w], NULL);
        else run_job(&d->job[w]);   /* no thread to be had: run it here, same result */
    }
    omp_set_num_threads(outer);
}

int tr_dp_step(tr_dp *d, const tr_objective *obj, const tr_epoch *ep, size_t k0, size_t k1,
               long epoch, long s, double *loss, long *tokens)
{
    size_t n = k1 - k0, W = (size_t)d->nlocal * (size_t)d->world;
    float scale = d->sc.scale / (float)n;     /* ls = 1: 1/n, as ever */
    uint64_t base = d->m->fwd_counter;
    flow_err err = { 0 };
    *loss = 0;
    *tokens = 0;
    if (d->on_device)       /* the micro-batches add to it */
        for (int w = 0; w < d->nlocal; w++) bert_zero_grad(d->rep[w]);
    else
        dp_reducer_begin(&d->red);
    for (size_t r0 = k0; r0 < k1; r0 += W) {
        dp_info mine[DP_LOCAL_MAX];
        for (int w = 0; w < d->nlocal; w++) {
            size_t k = r0 + (size_t)dp_global_worker(w, d->rank, d->world);
            dp_job *j = &d->job[w];
            j->m = d->rep[w];
            j->scale = scale;
            j->accumulate = d->on_device;
            j->gdp = r0 + W >= k1 ? d->gdp : NULL;     /* the step's last round */
            j->w = w;
            j->head = obj->head;
            j->counter = base + (k - k0);
            j->present = k < k1 && obj->fill(obj->self, &d->b[w], ep->seq + ep->start[k], ep->count[k],
                                             epoch, &j->bb);
        }
        run_round(d, obj);
        int failed_here = -1;
        for (int w = 0; w < d->nlocal; w++) {
            dp_job *j = &d->job[w];
            mine[w] = (dp_info){ j->present, j->rc != 0, j->present ? d->b[w].tokens : 0, j->loss };
            if (j->rc && failed_here < 0) failed_here = w;
        }
        int rc = d->world > 1 ? dp_allgather(d->g, mine, (size_t)d->nlocal * sizeof *mine, d->info, &err) : 0;
        if (rc) return flow_ctx_fail(d->c, rc, "step %ld: %s", s, err.msg);
        if (d->world == 1) memcpy(d->info, mine, (size_t)d->nlocal * sizeof *mine);
        if (failed_here >= 0)
            return flow_ctx_fail(d->c, d->job[failed_here].rc, "step %ld: %s", s, d->job[failed_here].err.msg);
        for (int q = 0; q < d->world; q++)
            for (int w = 0; w < d->nlocal; w++)
                if (d->info[q * d->nlocal + w].failed)
                    return flow_ctx_fail(d->c, FLOW_E_STAGE, "step %ld: data-parallel rank %d failed "
                                         "(see its log)", s, q);
        const float *grads[DP_LOCAL_MAX];
        for (int w = 0; w < d->nlocal; w++) {
            grads[w] = d->rep[w]->grads;
            for (int q = 0; q < d->world; q++)
                d->present[w * d->world + q] = d->info[q * d->nlocal + w].present;
        }
        if (!d->on_device && (rc = dp_reducer_add(&d->red, grads, d->present, d->nlocal, &err)))
            return flow_ctx_fail(d->c, rc, "step %ld: %s", s, err.msg);
        for (size_t g = 0; g < W && r0 + g < k1; g++) {     /* micro-batch order */
            const dp_info *x = &d->info[(g % (size_t)d->world) * (size_t)d->nlocal + g / (size_t)d->world];
            if (!x->present) continue;
            *loss += x->loss / (double)n;
            *tokens += (long)x->tokens;
        }
    }
    int rc = d->on_device ? 0 : d->zero ? dp_reducer_end_shard(&d->red, d->m->grads, &err)
                                        : dp_reducer_end(&d->red, d->m->grads, &err);
    if (rc) return flow_ctx_fail(d->c, rc, "step %ld: %s", s, err.msg);
    d->m->fwd_counter = base + n;
    return 0;
}

/* The fp16 step: the norm of the scaled gradients decides (not finite:
 * skip and halve the scale); else one pass unscales and clips them. */
/* The update of GPU replicas 1.. (the same as worker 0's; see the top):
 * gradients scaled by f (1: none), then AdamW. */
static void replicas_step(tr_dp *d, const bert_adamw *hp, float lr, float f)
{
    if (!d->on_device) return;
    for (int w = 1; w < d->nlocal; w++) {
        if (f != 1.0f) bert_scale_grads(d->rep[w], f);
        bert_adamw_step(d->rep[w], hp, lr);
    }
}

static void fp16_update(tr_dp *d, const bert_adamw *hp, float lr, float max_norm, long s, float *norm)
{
    float scaled = bert_grad_norm(d->m);
    if (!isfinite(scaled)) {
        d->sc.skipped++;
        d->sc.good = 0;
        flow_log(d->c, "step %ld: fp16 gradients overflowed at loss scale %g: step skipped, scale halved",
                 s + 1, (double)d->sc.scale);
        d->sc.scale = d->sc.scale > 1.0f ? d->sc.scale / 2.0f : 1.0f;
        *norm = scaled;
        return;
    }
    *norm = scaled / d->sc.scale;
    float f = 1.0f / d->sc.scale;
    if (max_norm > 0 && max_norm / (*norm + 1e-6f) < 1.0f) f *= max_norm / (*norm + 1e-6f);
    bert_scale_grads(d->m, f);
    bert_adamw_step(d->m, hp, lr);
    replicas_step(d, hp, lr, f);
    if (++d->sc.good == 2000) {
        d->sc.scale *= 2.0f;
        d->sc.good = 0;
    }
}

long tr_dp_skipped(const tr_dp *d) { return d->sc.skipped; }

tr_scaler *tr_dp_scaler(tr_dp *d) { return &d->sc; }

void tr_scaler_pack(const tr_scaler *s, unsigned char out[TR_SCALER_BYTES])
{
    int32_t good = (int32_t)s->good;
    int64_t skipped = s->skipped;
    memcpy(out, "fp16ls01", 8);
    memcpy(out + 8, &s->scale, 4);
    memcpy(out + 12, &good, 4);
    memcpy(out + 16, &skipped, 8);
}

int tr_scaler_unpack(tr_scaler *s, const unsigned char *in, long step)
{
    float scale;
    int32_t good;
    int64_t skipped;
    memcpy(&scale, in + 8, 4);
    memcpy(&good, in + 12, 4);
    memcpy(&skipped, in + 16, 8);
    int e;
    if (memcmp(in, "fp16ls01", 8) != 0 || !isfinite(scale) || scale < 1.0f || frexpf(scale, &e) != 0.5f ||
        good < 0 || good >= 2000 || skipped < 0 || skipped > step)
        return -1;
    *s = (tr_scaler){ scale, good, (long)skipped };
    return 0;
}

int tr_dp_update(tr_dp *d, const bert_adamw *hp, float lr, float max_norm, long s, float *norm)
{
    if (d->m->precision == BERT_FP16) {     /* a GPU model: never zero (tr_dp_new) */
        fp16_update(d, hp, lr, max_norm, s, norm);
        return 0;
    }
    if (!d->zero) {
        *norm = bert_clip_grad_norm(d->m, max_norm);
        bert_adamw_step(d->m, hp, lr);
        /* bert_clip_grads_by's factor, for the replicas */
        float f = max_norm > 0 && max_norm / (*norm + 1e-6f) < 1.0f ? max_norm / (*norm + 1e-6f) : 1.0f;
        replicas_step(d, hp, lr, f);
        return 0;
    }
    flow_err err = { 0 };
    int rc = dp_zero_step(&d->red, d->m, hp, lr, max_norm, norm, &err);
    return rc ? flow_ctx_fail(d->c, rc, "step %ld: %s", s, err.msg) : 0;
}

int tr_dp_moments(tr_dp *d, void *mm, void *vv)
{
    const bert_model *m = d->m;
    if (!d->zero) {
        memcpy(mm, m->adam_m, m->nparams * sizeof(float));
        memcpy(vv, m->adam_v, m->nparams * sizeof(float));
        return 0;
    }
    flow_err err = { 0 };
    int rc = dp_zero_gather_moments(&d->red, m, mm, vv, &err);
    return rc ? flow_ctx_fail(d->c, rc, "checkpoint: %s", err.msg) : 0;
}
