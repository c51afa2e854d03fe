/* kernels.h — the one public header of the kernels library: the BERT model.
 *
 * What it is: exactly the HuggingFace `transformers` BERT architecture
 * (BertForMaskedLM / BertForSequenceClassification), in fp32, with forward
 * and backward passes written by hand (llm.c style: every op's forward beside
 * its backward, all parameters in one flat buffer).  The CPU implementation
 * (kernels/cpu/: OpenBLAS sgemm + OpenMP) is the reference every later backend (CUDA) is
 * tested against.  Stages (pretrain, finetune, export) use only this header.
 *
 * ---- architecture ------------------------------------------------------
 *   x0   = Dropout(LayerNorm(word[ids] + position[t] + token_type[type]))
 *   per layer l (post-LN), with nh_l heads of size d (A_l = nh_l d, equal
 *   to H in an unpruned BERT) and FFN width I_l:
 *     q,k,v = x Wq^T+bq, x Wk^T+bk, x Wv^T+bv       [B,T,A_l] (heads split A_l=nh_l*d)
 *     P     = softmax(q k^T / sqrt(d) + mask)       [B,nh_l,T,T], padded keys -> 0
 *     ctx   = Dropout_attn(P) v                     [B,T,A_l]
 *     a     = LayerNorm(x + Dropout(ctx Wo^T + bo))          Wo [H, A_l]
 *     x'    = LayerNorm(a + Dropout(GELU(a Wi^T + bi) Wo2^T + bo2))   Wi [I_l, H], GELU = erf form
 *   MLM head (rows whose label != -100 only, see bert_forward):
 *     logits = LayerNorm(GELU(h Wt^T + bt)) word^T + cls.predictions.bias  [M,V]
 *   classification head, with s = the pooled final hidden states [B,H]:
 *     pooling CLS  (transformers): s[b] = h[b,0]
 *     pooling MEAN: s[b] = sum_t mask[b,t] h[b,t] / sum_t mask[b,t], the mean
 *                   over the real (unpadded) positions, [CLS] and [SEP] included
 *     pooled = tanh(s Wp^T + bp); logits = Dropout(pooled) Wc^T + bc  [B,C]
 *   (mean pooling keeps the pooler dense + tanh: the same tensors for both
 *   poolings, so every reader, exporter, pruner and quantizer of the tensor
 *   table is unchanged, and a model can be re-headed with either)
 *   LayerNorm eps = 1e-12; padding token id 0 (TOK_PAD): like nn.Embedding's
 *   padding_idx, row 0 of the word embeddings gets no gradient from the
 *   embedding lookup (it still gets the tied MLM decoder's gradient).
 *
 * ---- flat buffers and the tensor table ---------------------------------
 * params, grads, adam_m, adam_v are each ONE float array of bert_param_count
 * floats.  The tensor table (bert_tensors) lists every tensor with its
 * HuggingFace state-dict name, its shape in PyTorch layout ([out, in] for a
 * Linear weight, [rows, hidden] for an embedding, [n] for vectors), its
 * offset (in floats) into the flat buffers and its weight-decay flag (1 for
 * Linear/embedding weights, 0 for biases and LayerNorm weights/biases).
 * Export to transformers is therefore a copy per tensor.  Table order:
 *   bert.embeddings.word_embeddings.weight        [V, H]
 *   bert.embeddings.position_embeddings.weight    [max_len, H]
 *   bert.embeddings.token_type_embeddings.weight  [type_vocab, H]
 *   bert.embeddings.LayerNorm.weight / .bias      [H]
 *   for each layer i, prefix bert.encoder.layer.i.:
 *     attention.self.query.weight, .key.weight, .value.weight   [A_i, H] each,
 *         contiguous (one [3A_i, H] block: Q, K, V are one sgemm)
 *     attention.self.query.bias, .key.bias, .value.bias         [A_i] each, contiguous
 *     attention.output.dense.weight [H, A_i], .bias [H]
 *     attention.output.LayerNorm.weight, .bias                  [H]
 *     intermediate.dense.weight [I_i, H], .bias [I_i]
 *     output.dense.weight [H, I_i], .bias [H]
 *     output.LayerNorm.weight, .bias                            [H]
 *   mode has MLM:
 *     cls.predictions.transform.dense.weight [H, H], .bias [H]
 *     cls.predictions.transform.LayerNorm.weight, .bias [H]
 *     cls.predictions.bias [V]
 *   mode has CLASSIFY:
 *     bert.pooler.dense.weight [H, H], .bias [H]
 *     classifier.weight [C, H], classifier.bias [C]
 * The MLM decoder is tied to the word embeddings: an HF state dict also has
 * cls.predictions.decoder.weight (= bert.embeddings.word_embeddings.weight)
 * and cls.predictions.decoder.bias (= cls.predictions.bias); an exporter
 * writes those two aliases, an importer ignores them.
 *
 * ---- initialising a classifier from a pretrained MLM checkpoint --------
 * Create the model in BERT_MODE_CLASSIFY (or BOTH), bert_init() it with a
 * seed (this gives the pooler and classifier their fresh N(0,0.02) weights,
 * as transformers does: an MLM checkpoint has no pooler), then
 * bert_load_by_name() with the checkpoint's config and flat buffer: every
 * tensor whose name and shape match is copied (embeddings, encoder); the MLM
 * head is simply not in the classifier's table.
 *
 * ---- determinism and threads --------------------------------------------
 * Results are bit-identical for the same seed and inputs, whatever the
 * thread count (tests/kernels_threads_test.c: 1, 2, 3, 8).  Dropout uses a counter-based hash RNG keyed by (dropout seed, forward call
 * counter, site, element index), so masks do not depend on scheduling and
 * backward regenerates them instead of storing them.  Work is cut into
 * blocks whose size depends on the shapes only, never on the thread count:
 * each GEMM block is the same sgemm call (so OpenBLAS uses the same kernels
 * and edge kernels) whichever thread runs it, and reductions (LayerNorm
 * dg/db, grad norm) sum fixed blocks' partials in block order.  To resume a
 * run bit-exactly, a checkpoint must keep params, adam_m, adam_v, adam_t,
 * dropout_seed and fwd_counter.
 *
 * Threads: bert_set_threads keeps OpenBLAS single-threaded and splits every
 * large sgemm over the OpenMP threads itself, so the two thread pools never
 * fight.  On a machine shared with other busy processes, set
 * OMP_WAIT_POLICY=passive in the environment (read by libgomp at start):
 * spinning OpenMP threads then cost up to 3x per step.
 *
 * Memory (bert_model_bytes): 4 flat buffers (the moments less under
 * bert_shard_optimizer) of bert_param_count floats plus
 * activations ~ sum_l B*T*(4H + 4A_l + I_l) + B*nh_l*T*T floats (+ B*T*V for MLM logits
 * and their gradient), all sized for max_B x max_T at creation.
 *
 * ---- backends ----------------------------------------------------------
 * bert_model_new takes the bert_device the stage was granted and picks the
 * backend serving it: the CPU (kernels/cpu/) or, for a GPU, the CUDA
 * backend of the module libflow_cuda.so (kernels/cuda/bert_cuda.cu, fp32;
 * compiled, never run on a GPU yet); a GPU the binary cannot serve is an
 * error, never a silent CPU run.  m->params etc. are the
 * HOST copies: see bert_sync_to_host / bert_sync_to_device for who syncs
 * when (both are no-ops on the CPU), so stages never need to know where the
 * model runs.  A backend is a table of function pointers (bert_backend_ops,
 * internal to kernels/); stages call the bert_* wrappers.
 *
 * Conventions: functions returning int give 0 or a negative FLOW_E_* code
 * with e filled (e may be NULL); _new/_free allocate, _free(NULL) is a no-op.
 */
#ifndef FLOW_KERNELS_H
#define FLOW_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "engine/base/base.h"

/* ------------------------------------------------------------------ */
/* Configuration.                                                      */

/* Which heads exist (bit set). */
enum { BERT_MODE_MLM = 1, BERT_MODE_CLASSIFY = 2, BERT_MODE_BOTH = 3 };

/* What the classification head pools (see the architecture at the top). */
enum { BERT_POOL_CLS = 0, BERT_POOL_MEAN = 1 };

#define BERT_MAX_LAYERS 64

typedef struct bert_config {
    int vocab_size;         /* V: word embedding rows (tokenizer vocab) */
    int hidden;             /* H */
    int layers;             /* L <= BERT_MAX_LAYERS */
    int head_size;          /* d: width of every attention head */
    int heads[BERT_MAX_LAYERS];  /* nh_l >= 1: heads of layer l; its attention
                             * width is A_l = nh_l * d (equal to H only in an
                             * unpruned model) */
    int ffn[BERT_MAX_LAYERS];    /* I_l >= 1: FFN width of layer l */
    int max_len;            /* position embedding rows; T <= max_len */
    int type_vocab;         /* token type rows (2 like BERT) */
    int num_labels;         /* C: classifier outputs (CLASSIFY mode; >= 1) */
    float hidden_dropout;   /* hidden_dropout_prob, in [0,1) */
    float attn_dropout;     /* attention_probs_dropout_prob, in [0,1) */
    int mode;               /* BERT_MODE_* */
    int pooling;            /* BERT_POOL_*: the classifier's input; CLS (0,
                             * the zero of a memset config) = transformers' */
} bert_config;

/* Fills the reference config: V 8000, H 768, L 6, 12 heads of 64, FFN 3072
 * in every layer, max_len 512, type_vocab 2, num_labels 2, dropout
 * 0.1/0.1, mode MLM.  Entries of heads/ffn beyond L are ignored. */
void bert_config_default(bert_config *c);

/* The unpruned BERT shape for c->hidden: every layer (all BERT_MAX_LAYERS
 * entries, so c->layers may still change) gets `heads` heads of
 * hidden/heads and FFN width `intermediate`.  FLOW_E_PARAM
 * "model config: hidden 100 is not a multiple of heads 12" when it does not
 * divide, or when layers is outside [1, BERT_MAX_LAYERS]. */
int bert_config_uniform(bert_config *c, int heads, int intermediate, flow_err *e);

/* Attention width A_l = heads[l] * head_size. */
static inline int bert_attn_width(const bert_config *c, int l) { return c->heads[l] * c->head_size; }

/* 1 when every layer has the same heads and FFN width and heads x head_size
 * = hidden (the shape transformers' BertConfig describes). */
int bert_config_is_uniform(const bert_config *c);

/* Checks every field (positive sizes, layers <= BERT_MAX_LAYERS, heads and
 * FFN width >= 1 in every layer, dropout in [0,1), mode 1..3, num_labels
 * >= 1 when CLASSIFY, pooling a BERT_POOL_*, total size fits).  Returns
 * 0 or FLOW_E_PARAM with a message naming the field and its value, e.g.
 * "model config: layer 2 has 0 attention heads". */
int bert_config_validate(const bert_config *c, flow_err *e);

/* ------------------------------------------------------------------ */
/* Tensor table.                                                       */

typedef struct bert_tensor {
    char name[80];          /* HF state-dict name */
    int ndim;               /* 1 or 2 */
    int shape[2];           /* PyTorch layout; shape[1] = 1 when ndim == 1 */
    size_t offset;          /* in floats, into every flat buffer */
    size_t numel;
    int decay;              /* 1: AdamW weight decay applies */
} bert_tensor;

/* Number of floats in each flat buffer for a (valid) config. */
size_t bert_param_count(const bert_config *c);

/* Builds the table for a config into a malloc'd array (*out, caller frees),
 * *n entries, in the order documented above.  Returns 0 or FLOW_E_PARAM
 * (invalid config). */
int bert_tensor_table(const bert_config *c, bert_tensor **out, int *n, flow_err *e);

/* ------------------------------------------------------------------ */
/* The model.                                                          */

/* The backend a model runs on (m->backend; chosen by bert_model_new from
 * the device, never named by callers). */
typedef enum bert_backend { BERT_ON_CPU = 0, BERT_ON_CUDA = 1 } bert_backend;

/* Where a model runs: the device a stage was granted by the engine (a stage
 * fills it from flow_gpu_count / flow_gpu_id / flow_threads, see
 * stages/model/trainer.h model_device) and the threads for host work.
 * bert_model_new picks the backend from it; no caller names a backend. */
typedef struct bert_device {
    int gpu;                /* CUDA device ordinal, or -1: the CPU */
    int threads;            /* CPU threads (process-wide, bert_set_threads);
                             * <= 0: leave the current setting */
    int precision;          /* BERT_FP32 (0) or, on a GPU only, BERT_BF16 / BERT_FP16 */
} bert_device;
extern const bert_device bert_device_cpu;   /* { -1, 0, BERT_FP32 } */

/* The arithmetic of a model (bert_device.precision, m->precision).  fp32:
 * everything.  bf16 / fp16 mixed precision (the CUDA backend only): the
 * Linear layers' GEMMs multiply 16-bit copies of their operands (inputs,
 * weights, output gradients) and accumulate in fp32; the parameters (the
 * fp32 master weights), gradients, AdamW moments, activations, LayerNorm,
 * softmax and the attention GEMMs stay fp32.  fp16 also needs dynamic loss
 * scaling, which the training loop does (stages/model/train_dp.c). */
enum { BERT_FP32 = 0, BERT_BF16 = 1, BERT_FP16 = 2 };
/* "fp32", "bf16", "fp16" (NULL for another value); the parse returns -1
 * for a name that is none of them. */
const char *bert_precision_name(int precision);
int bert_precision_parse(const char *name);

/* Op kinds timed by the profiler. */
enum {
    BERT_OP_EMBED, BERT_OP_LAYERNORM, BERT_OP_MATMUL, BERT_OP_ATTENTION,
    BERT_OP_GELU, BERT_OP_TANH, BERT_OP_RESIDUAL, BERT_OP_DROPOUT,
    BERT_OP_XENT, BERT_OP_GRADNORM, BERT_OP_ADAMW, BERT_OP_OTHER, BERT_OP_COUNT
};

typedef struct bert_profile {
    int enabled;                        /* set by bert_profile_enable */
    double fwd_s[BERT_OP_COUNT];        /* seconds in forward per op kind */
    double bwd_s[BERT_OP_COUNT];        /* seconds in backward (and optimizer) */
    double flops[BERT_OP_COUNT];        /* floating-point ops counted (matmul
                                         * and attention GEMMs: 2*m*n*k) */
    long calls;                         /* forward calls profiled */
} bert_profile;

struct bert_acts;       /* activations, internal */
struct bert_backend_ops;

/* The encoder's Linear layers, as a hook sees them (see bert_set_linear_hook). */
enum { BERT_LIN_QKV, BERT_LIN_ATTN_OUT, BERT_LIN_FFN_IN, BERT_LIN_FFN_OUT, BERT_LIN_COUNT };
/* out [N, OC] = in [N, IC] W^T + b for encoder layer `layer`, Linear `which`
 * (QKV is the fused [3A, H] block).  Returns 1 when it computed out itself,
 * 0 to let the fp32 Linear run (an observer), or a negative code with e set. */
typedef int (*bert_linear_fn)(void *arg, int layer, int which, const float *in, int N, int IC,
                              int OC, const float *W, const float *b, float *out, flow_err *e);

typedef struct bert_model {
    bert_config cfg;
    int max_B, max_T;           /* activation capacity given to bert_model_new */
    bert_tensor *tensors; int ntensors;
    size_t nparams;             /* floats per flat buffer */
    float *params;              /* [nparams] host copy (see backends above) */
    float *grads;               /* [nparams] accumulated by bert_backward */
    float *adam_m, *adam_v;     /* [opt_hi - opt_lo] AdamW moments of the
                                 * optimizer shard (all nparams unless
                                 * bert_shard_optimizer was called) */
    size_t opt_lo, opt_hi;      /* the optimizer shard: floats [opt_lo, opt_hi)
                                 * of the flat buffers, moment i - opt_lo */
    long adam_t;                /* AdamW steps taken (bias correction) */
    uint64_t dropout_seed;      /* set by bert_init; may be changed */
    uint64_t fwd_counter;       /* forward calls with train=1 (RNG counter) */
    bert_backend backend;
    int gpu;                    /* the CUDA device ordinal (BERT_ON_CUDA), -1 on the CPU */
    int precision;              /* BERT_FP32 / BF16 / FP16 (bert_device.precision) */
    const struct bert_backend_ops *ops;
    struct bert_acts *acts;
    bert_profile prof;
    bert_linear_fn linear_hook;     /* eval forwards only; see bert_set_linear_hook */
    void *linear_hook_arg;
    int (*linear_rows)(void *arg);  /* see bert_set_linear_rows */
    void *dp_state;             /* GPU data parallelism (kernels/dp.h dp_gpu_new): the
                                 * backend's communicator state, NULL when none */
    int dp_worker;              /* this model's local worker in it */
} bert_model;

/* Allocates a model for config c (validated) with activation space for
 * batches up to max_B sequences of max_T tokens (max_T <= c->max_len), on
 * the backend serving dev (the CPU for gpu = -1, CUDA for a GPU).
 * params/grads/moments are zeroed; call bert_init or load weights next.
 * Returns 0 and *out, or FLOW_E_PARAM (bad config or sizes, or a device no
 * backend of this binary serves: "GPU 0 was granted but the cuda backend
 * is not available in this build") / FLOW_E_NOMEM (message gives the bytes
 * needed; "model: precision bf16 needs a GPU ..." for a mixed precision
 * on the CPU). */
int bert_model_new(const bert_config *c, int max_B, int max_T, const bert_device *dev,
                   bert_model **out, flow_err *e);
void bert_model_free(bert_model *m);

/* Bytes the model will allocate (params+grads+moments+activations), for
 * planning batch sizes before bert_model_new. */
size_t bert_model_bytes(const bert_config *c, int max_B, int max_T);

/* HF initialisation, seeded (deterministic): Linear and embedding weights
 * ~ N(0, 0.02), biases 0, LayerNorm weight 1 bias 0, word embedding row
 * TOK_PAD (0) zeroed (padding_idx).  Also sets dropout_seed from seed, resets
 * adam moments, adam_t and fwd_counter, then syncs to the device. */
int bert_init(bert_model *m, uint64_t seed, flow_err *e);

/* Finds a tensor by HF name; NULL if absent in this model's mode. */
const bert_tensor *bert_find_tensor(const bert_model *m, const char *name);
/* Pointer to the tensor's parameters (host copy) or NULL. */
float *bert_param_ptr(bert_model *m, const char *name);

/* Copies every tensor of a source model, given by its config and flat
 * parameter buffer src[src_n], whose name and shape equal one of m's
 * tensors.  *copied (may be NULL) receives the number of tensors copied.
 * Returns FLOW_E_PARAM when the src config is invalid, src_n does not match
 * it, or no encoder tensor at all matched (message names the first shape
 * mismatch if any).  Typical use: classifier from an MLM checkpoint (see top). */
int bert_load_by_name(bert_model *m, const bert_config *src_cfg, const float *src,
                      size_t src_n, int *copied, flow_err *e);

/* Host <-> device copies of params, adam_m, adam_v (and adam_t,
 * dropout_seed, fwd_counter); no-ops on the CPU.  The rule: the device copy
 * is the truth while training.  Whoever WRITES the host copy calls
 * bert_sync_to_device afterwards (bert_init and bert_load_by_name do it
 * themselves; so must a checkpoint restore or any direct write through
 * bert_param_ptr); whoever READS it (checkpoint save, best-weights copy,
 * artifact writing, export) calls bert_sync_to_host first.  grads are
 * device-only during training (bert_grad_norm reads them there);
 * bert_sync_to_host also copies them to the host (for tests and
 * inspection), bert_sync_to_device never sends them. */
int bert_sync_to_host(bert_model *m, flow_err *e);
int bert_sync_to_device(bert_model *m, flow_err *e);

/* Threads of the CPU backend (OpenMP loops; OpenBLAS is kept at 1 and
 * gemm splits work itself), process-wide. n <= 0: all cores. */
void bert_set_threads(int n);
int bert_get_threads(void);

/* The OpenBLAS kernels this process runs (openblas_get_corename: "Haswell",
 * "Cooperlake", ...), and whether they are the pinned AVX2 ones that give
 * every x86-64 machine with AVX2 and FMA the same fp32 GEMM bytes
 * (kernels/cpu/blas.c). */
const char *blas_kernels(void);
int blas_kernels_pinned(void);

/* Installs fn (NULL removes it) for the encoder Linear layers of every
 * eval forward (train = 0); training forwards never call it.  The
 * quantized model (bert_qmodel_*) computes the Linears on integers through
 * it; calibration observes their inputs through it.  Attention, softmax,
 * LayerNorm, embeddings, pooler and classifier stay fp32. */
void bert_set_linear_hook(bert_model *m, bert_linear_fn fn, void *arg);
/* fn(hook arg), asked before each eval forward on the CPU: > 0 when the
 * hook computes any block of rows on the calling thread, also from inside
 * an OpenMP parallel region of that many threads (it returns the number;
 * 0: not now; the quantized model: when every encoder Linear is
 * quantized).  The forward then runs the whole encoder as one parallel
 * region (kernels/cpu/bert_cpu_fused.c): the embeddings and layer 0's QKV by blocks
 * of 16 rows, then per layer attention by (sequence, head, 64 query rows)
 * and the rest of the layer (output Linear, residual, LayerNorm, FFN,
 * residual, LayerNorm, the next layer's QKV) by blocks of 16 rows: one
 * fork and a barrier per phase instead of a fork per op, each block's
 * activations in cache.  The bits are those of the same forward op at a
 * time (what the profiler runs): every op computes a row the same way in
 * any block, and attention is chunked by queries both ways.  NULL (the
 * default, and for bert_set_linear_hook's observers): op at a time with
 * whole-sequence attention, the fp32 model's bits. */
void bert_set_linear_rows(bert_model *m, int (*fn)(void *arg));

/* ------------------------------------------------------------------ */
/* Forward / backward.                                                 */

enum { BERT_HEAD_MLM = 1, BERT_HEAD_CLASSIFY = 2 };
#define BERT_IGNORE_INDEX (-100)

typedef struct bert_batch {
    int B, T;                   /* B <= max_B, T <= max_T */
    const int32_t *ids;         /* [B,T] token ids in [0,V) */
    const int32_t *type_ids;    /* [B,T] in [0,type_vocab), or NULL = all 0 */
    const int32_t *attn_mask;   /* [B,T] 1 = real token, 0 = padding (keys
                                 * masked out, like HF attention_mask), or
                                 * NULL = all real.  Position 0 must be real. */
    const int32_t *mlm_labels;  /* MLM: [B,T] target ids, or -100 = ignored */
    const int32_t *labels;      /* CLASSIFY: [B] class ids in [0,C), or NULL
                                 * (no loss; logits only) */
    const float *class_weights; /* CLASSIFY: [C] or NULL: loss =
                                 * sum w[y] nll / sum w[y] (torch CrossEntropyLoss) */
} bert_batch;

typedef struct bert_output {
    float loss;                 /* mean loss (0 when no targets) */
    long n_targets;             /* MLM: positions with a label; CLASSIFY: B with labels */
    long n_correct;             /* argmax == label among those */
    /* Logits, owned by the model, valid until the next forward:
     *   MLM: [n_targets, V] for the target rows only, in row-major (b,t)
     *        order; rows[i] = b*T+t of row i (also owned by the model).
     *        The MLM head is computed only where a label is given, which
     *        gives the same loss and gradients as HF at a fraction of the
     *        cost; to get every position's logits, label every position.
     *   CLASSIFY: [B, C]; rows = NULL. */
    const float *logits;
    const int32_t *rows;
} bert_output;

/* Runs the model on a batch with one head.  train = 1 applies dropout (and
 * advances fwd_counter) and keeps what backward needs; train = 0 is eval
 * (no dropout).  Errors (FLOW_E_PARAM): batch over capacity, id/label out of
 * range (message gives b, t and the value), head absent from the mode. */
int bert_forward(bert_model *m, const bert_batch *b, int head, int train,
                 bert_output *out, flow_err *e);

/* Accumulates d(loss_scale * loss)/d(params) into m->grads for the last
 * forward (which must have been train = 1 or at least not followed by
 * another forward).  loss_scale = 1 for one batch; 1/k for k accumulated
 * micro-batches.  Returns FLOW_E_PARAM when no forward precedes it. */
int bert_backward(bert_model *m, float loss_scale, flow_err *e);

/* Backward from gradients an objective computed outside the model
 * (distillation): dlogits is d(objective)/d(out->logits) of the last
 * forward, in its layout ([n_targets, V] labelled rows for MLM, [B, C] for
 * CLASSIFY; a classification forward needs no labels for this), already
 * scaled for accumulation.  dhidden is NULL or L+1 pointers, each NULL or
 * [B*T, H]: gradients at bert_hidden_states(m, l) (hidden-state MSE).  The
 * forward's own loss is not differentiated.  Accumulates into m->grads. */
int bert_backward_ext(bert_model *m, const float *dlogits, const float *const *dhidden, flow_err *e);

/* Hidden states of the last forward, [B*T, H] row-major (host memory,
 * valid until the next forward): layer 0 is the embedding output (after
 * LayerNorm and dropout), layer l in 1..L the output of encoder layer l.
 * NULL for a layer outside [0, L]. */
const float *bert_hidden_states(const bert_model *m, int layer);

/* Soft-target (distillation) loss and its gradient on rows of logits:
 *   loss = T^2 / rows * sum_r KL(softmax(teacher_r / T) || softmax(student_r / T))
 *   dstudent[rows, n] = scale * T / rows * (softmax(student/T) - softmax(teacher/T))
 * (written; NULL: loss only).  temperature > 0.  Deterministic for any
 * thread count (row terms in double, summed in row order).  Feed dstudent
 * (plus any other term) to bert_backward_ext. */
double bert_soft_target_loss(const float *student, const float *teacher, int rows, int n,
                             float temperature, float scale, float *dstudent);

/* Sets grads to 0. */
void bert_zero_grad(bert_model *m);
/* grads *= f (all of them; fp16 loss scaling undoes its scale with it) */
void bert_scale_grads(bert_model *m, float f);

/* Global L2 norm of all grads (computed in double): the sum of squares of
 * each block of BERT_GRAD_BLOCK floats of the flat buffer (the last one
 * shorter), the blocks' sums added in block order. */
float bert_grad_norm(bert_model *m);
/* Scales grads so their norm is <= max_norm (torch clip_grad_norm_:
 * factor max_norm/(norm+1e-6) when smaller than 1).  Returns the norm before
 * clipping. max_norm <= 0 only measures. */
float bert_clip_grad_norm(bert_model *m, float max_norm);

/* ---- pieces of the above for a sharded optimizer step (ZeRO-1,
 * kernels/dp.h: each process holds the summed gradient of its shard only) */
#define BERT_GRAD_BLOCK 65536
/* part[b] = sum of squares of grads block lo/BERT_GRAD_BLOCK + b, for the
 * blocks of [lo, hi) (lo a multiple of the block, hi one too or nparams):
 * the terms bert_grad_norm adds, so concatenating every shard's part[] and
 * adding in order gives its sum exactly. */
void bert_grad_sumsq_blocks(bert_model *m, size_t lo, size_t hi, double *part);
/* The norm from all blocks' sums (in order), as bert_grad_norm computes it. */
float bert_grad_norm_of_blocks(const double *part, size_t nblocks);
/* Clips grads [lo, hi) as bert_clip_grad_norm would for a global norm `norm`. */
void bert_clip_grads_by(bert_model *m, size_t lo, size_t hi, float norm, float max_norm);

/* Shrinks the optimizer to floats [lo, hi) of the flat buffers (lo a
 * multiple of BERT_GRAD_BLOCK; hi too, or nparams; lo == hi: no optimizer
 * state at all, e.g. a data-parallel replica that only computes gradients):
 * adam_m/adam_v are reallocated to hi - lo floats, keeping the moments of
 * the floats the old shard had, and bert_adamw_step then updates only
 * params [lo, hi).  FLOW_E_PARAM for a misaligned or out-of-range shard,
 * FLOW_E_NOMEM. */
int bert_shard_optimizer(bert_model *m, size_t lo, size_t hi, flow_err *e);

/* ------------------------------------------------------------------ */
/* Optimizer.                                                          */

typedef struct bert_adamw {
    float beta1, beta2, eps, weight_decay;  /* e.g. 0.9, 0.999, 1e-8, 0.01 */
} bert_adamw;

/* One torch.optim.AdamW step with learning rate lr over the optimizer
 * shard (all params unless sharded; adam_t is incremented first, bias
 * correction uses it; element-wise, so a shard's floats get exactly the
 * values the whole step gives them):
 *   p -= lr*wd*p  (only tensors with decay = 1)
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps) */
void bert_adamw_step(bert_model *m, const bert_adamw *hp, float lr);

/* transformers' get_linear_schedule_with_warmup: lr at step (0-based)
 * = peak*step/warmup while step < warmup, then
 *   peak*max(0, (total-step)/(total-warmup)). */
float bert_lr_linear(float peak, long step, long warmup, long total);

/* ------------------------------------------------------------------ */
/* Profiler (`--profile`).                                             */

void bert_profile_enable(bert_model *m, int on);   /* also resets */
void bert_profile_reset(bert_model *m);
/* Prints a table: op kind, forward ms, backward ms, share of total, GFLOP/s. */
void bert_profile_print(const bert_model *m, FILE *f);

/* FLOPs of one training step (forward + backward, matmuls and attention
 * GEMMs only, 2*m*n*k each; backward = 2x forward) for B x T tokens with
 * n_mlm MLM target rows (head = BERT_HEAD_MLM) or the classifier. */
double bert_train_flops(const bert_config *c, int B, int T, int head, long n_mlm);

/* ------------------------------------------------------------------ */
/* Quantized encoder Linears (kernels/quant underneath: bert_quant.c).  */

struct quant_weight;
typedef struct bert_qmodel bert_qmodel;

typedef struct bert_qspec {
    int bits;                   /* 8 (INT8 per channel) or 4 */
    int group;                  /* 4-bit: 32, 64 or 128 */
    int sym;                    /* 4-bit uniform: zero fixed at 8 */
    int nf4;                    /* 4-bit: NF4 code book fitted per tensor */
    int gptq;                   /* 0 = round to nearest; 1 = GPTQ (needs Hessians) */
    double damp;                /* GPTQ damping (relative, 0.01) */
    int act_order;              /* GPTQ column order by decreasing diag H */
} bert_qspec;

/* An empty quantized model for layers encoder layers (every Linear fp32
 * until set).  Returns NULL when out of memory. */
bert_qmodel *bert_qmodel_new(int layers);
void bert_qmodel_free(bert_qmodel *q);
/* Quantizes Linear `which` of `layer` from the fp32 weights W [OC, IC] with
 * spec (H = [IC, IC] Hessian X^T X of its calibration inputs, required when
 * spec->gptq).  Replaces what was there.  FLOW_E_PARAM naming the layer for
 * impossible specs (group not dividing IC, ...). */
int bert_qmodel_quantize(bert_qmodel *q, int layer, int which, const float *W, int OC, int IC,
                         const bert_qspec *spec, const double *H, flow_err *e);
/* Sets an already quantized weight (loaded from a file); q takes it over
 * (the struct is copied, its buffers owned by q). */
void bert_qmodel_set(bert_qmodel *q, int layer, int which, struct quant_weight *w);
/* The weight of (layer, which), or NULL when that Linear is fp32. */
const struct quant_weight *bert_qmodel_get(const bert_qmodel *q, int layer, int which);
/* Threads for the integer GEMMs (<= 0: OpenMP default). */
void bert_qmodel_set_threads(bert_qmodel *q, int threads);
/* Makes m's eval forwards use q's quantized Linears (q must outlive the
 * attachment); NULL detaches.  Shapes are checked at each call. */
void bert_qmodel_attach(bert_model *m, bert_qmodel *q);

/* Calibration: accumulates, for every encoder Linear, H += X^T X over the
 * inputs X of real (unmasked) tokens of the eval forwards run while
 * attached.  Hessians are [IC, IC] doubles, allocated on first use. */
typedef struct bert_calib bert_calib;
bert_calib *bert_calib_new(int layers);
void bert_calib_free(bert_calib *c);
/* Call before each forward with the batch (its attention mask selects rows). */
void bert_calib_attach(bert_model *m, bert_calib *c, const bert_batch *b);
/* The Hessian of (layer, which) and its width, or NULL if never seen. */
const double *bert_calib_hessian(const bert_calib *c, int layer, int which, int *width, long *rows);

#endif
