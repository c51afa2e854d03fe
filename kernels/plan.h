/* plan.h — the memory planner: per-device memory and per-module parameter
 * and FLOP tables of a BERT training run, before anything is allocated.
 *
 * It plans for a data-parallel GPU run (the CUDA backend, issue 14): every
 * device holds a full replica (no sharding), gradients are all-reduced in
 * NCCL buckets.  Nothing here has been checked against a measured GPU
 * peak yet (no GPU was available when it was written): the estimate is
 * the model below, not a measurement.
 *
 * Memory per device (bytes; P = bert_param_count, e = 4 for fp32, 2 for
 * bf16/fp16):
 *   params    e*P  (the working copy the GEMMs read)
 *   grads     e*P
 *   master    4*P  for bf16/fp16 (fp32 master weights), 0 for fp32
 *   moments   8*P  (AdamW m and v, always fp32)
 *   acts      what the backward keeps for one micro-batch (plan_activations)
 *   workspace transient backward buffers + 32 MiB GEMM library workspace
 *   nccl      2 x 25 MiB gradient buckets when gpus > 1 (DDP's default)
 * A plan "fits" when the total is at most 90% of gpu_mem: the rest is left
 * for the CUDA context and allocator fragmentation. */
#ifndef FLOW_PLAN_H
#define FLOW_PLAN_H

#include "kernels/kernels.h"

typedef enum plan_precision { PLAN_FP32 = 0, PLAN_BF16 = 1, PLAN_FP16 = 2 } plan_precision;

/* "fp32" / "bf16" / "fp16" -> 0 and *out, else -1. */
int plan_precision_parse(const char *s, plan_precision *out);
const char *plan_precision_name(plan_precision p);

/* Strict byte sizes: a number (digits, optionally .digits) and a unit:
 * K/KiB, M/MiB, G/GiB, T/TiB (powers of 1024) or KB/MB/GB/TB (powers of
 * 1000).  "8GiB", "8000MiB", "8G", "1.5GiB".  Returns 0, or FLOW_E_USAGE
 * naming what (e.g. "--gpu-mem") and the value. */
int plan_parse_bytes(const char *s, const char *what, uint64_t *out, flow_err *e);

/* One row of the module table. */
typedef struct plan_module {
    char name[32];          /* "embeddings", "layer.0", ..., "mlm_head", "cls_head" */
    size_t params;          /* floats of its tensors in the tensor table */
    double flops;           /* training FLOPs (fwd + bwd = 3x fwd GEMMs) per micro-batch */
} plan_module;

/* What to plan. */
typedef struct plan_request {
    bert_config cfg;        /* the model (mode selects the head) */
    int head;               /* BERT_HEAD_MLM or BERT_HEAD_CLASSIFY */
    int seq;                /* T, <= cfg.max_len */
    int batch;              /* requested sequences per micro-batch per device */
    int accum;              /* requested micro-batches per step */
    double mlm_rows;        /* MLM head: predicted rows per sequence (mask_prob * T) */
    plan_precision prec;
    int gpus;               /* >= 1 */
    uint64_t gpu_mem;       /* bytes per device; 0 = do not fit, just estimate */
} plan_request;

typedef struct plan_memory {
    uint64_t params, grads, master, moments, acts, workspace, nccl, total;
} plan_memory;

/* Per-module table for micro-batch B (malloc'd *out, caller frees).  The
 * params of the rows sum to bert_param_count; the FLOPs to
 * bert_train_flops(cfg, B, T, head, round(B * mlm_rows)). */
int plan_modules(const plan_request *r, int B, plan_module **out, int *n, flow_err *e);

/* Bytes the backward keeps for one micro-batch of B sequences of r->seq
 * ids, with (recompute = 1) or without per-layer activation recomputation. */
uint64_t plan_activations(const plan_request *r, int B, int recompute);

/* The whole per-device estimate for micro-batch B. */
void plan_memory_estimate(const plan_request *r, int B, int recompute, plan_memory *m);

typedef struct plan_result {
    int micro_batch, accum; /* chosen; micro_batch * accum = batch * accum requested */
    int recompute;          /* 1: activation recomputation chosen */
    int fits;               /* 0: nothing fits gpu_mem (or gpu_mem = 0: not checked) */
    int changed;            /* 1: micro_batch/accum/recompute differ from the request */
    plan_memory requested;  /* the estimate of the request as written */
    plan_memory mem;        /* the estimate of the choice */
    uint64_t recompute_saving;   /* activation bytes recomputation saves at micro_batch */
} plan_result;

/* Validates r (FLOW_E_PARAM naming the field) and fits: the request if it
 * fits; else the largest divisor of batch*accum below batch that fits
 * without recomputation; else the largest that fits with it; else fits = 0
 * with the micro-batch 1 + recomputation estimate. */
int plan_fit(const plan_request *r, plan_result *out, flow_err *e);

#endif
