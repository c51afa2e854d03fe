/* trainer.h — pieces shared by the training stages (pretrain, finetune,
 * distill):
 * a counter-based RNG (so any step's randomness can be recomputed after a
 * resume), the per-epoch data order with length bucketing, batch assembly
 * with padding, and the resumable checkpoint of a model + AdamW state.
 * Internal to the stages library.
 *
 * ---- checkpoint (flow_checkpoint_save payload), "FLOWCKPT" version 2 ----
 *   bytes 0..7  magic "FLOWCKPT"; u32 version = 2; u32 stage tag
 *               (1 pretrain, 2 finetune)
 *   u64 step (optimizer steps done), u64 nparams, i64 adam_t,
 *   u64 fwd_counter (dropout RNG counter), u64 dropout_seed,
 *   u64 extra bytes E, E bytes of the training loop's state (train_loop.c:
 *   tokens, best score and step, loss and dev curves so far, the best
 *   weights), then params, adam_m, adam_v (nparams f32 each; the whole
 *   moments also under zero = 1, gathered from every process).
 * The node key names the checkpoint, so config and data are the same as
 * when it was written; nparams is checked anyway.
 */
#ifndef FLOW_TRAINER_H
#define FLOW_TRAINER_H

#include "classifier.h"
#include "kernels/kernels.h"

/* The device this node was granted by the engine: its first GPU when it
 * has any, else the CPU; with the node's thread count.  bert_model_new picks
 * the backend from it, so no stage names one. */
bert_device tr_device(flow_ctx *c);
/* The same with the node's `precision` parameter (pretrain, finetune:
 * fp32, bf16, fp16); bert_model_new refuses a mixed one on the CPU. */
bert_device tr_train_device(flow_ctx *c);

/* splitmix64 step, and a seed from several words (counter-based: the same
 * words always give the same stream). */
uint64_t tr_rng_next(uint64_t *s);
uint64_t tr_seed(uint64_t a, uint64_t b, uint64_t c);
static inline double tr_uniform(uint64_t *s) { return (double)(tr_rng_next(s) >> 11) * 0x1.0p-53; }

/* One epoch's batches: sequence indices grouped so that a batch holds
 * sequences of similar length (less padding): shuffle, sort chunks of
 * 64 batches by length, cut into batches, shuffle the batch order. */
typedef struct tr_epoch {
    size_t nseq;
    uint32_t *seq;              /* [nseq] sequence indices in batch order */
    size_t nbatches;
    size_t *start, *count;      /* [nbatches] into seq */
} tr_epoch;

/* usable: indices of the sequences to train on; len: each sequence's
 * length (indexed by sequence index).  shuffle = 0 keeps the order sorted
 * by length (evaluation). */
void tr_epoch_build(tr_epoch *e, const uint32_t *usable, size_t n, const uint32_t *len,
                    int batch, uint64_t seed, int shuffle);
void tr_epoch_release(tr_epoch *e);

/* Batch buffers for bert_forward: [B, T] ids / mask / mlm labels, [B] labels. */
typedef struct tr_batch {
    int B, T, maxB, maxT;
    int32_t *ids, *mask, *mlm, *labels;
    long tokens;                /* real tokens in the batch */
} tr_batch;

void tr_batch_init(tr_batch *b, int maxB, int maxT);
void tr_batch_release(tr_batch *b);
/* Copies sequence seq (ids[0..len)) into row r, truncated to maxT tokens
 * (the last kept token replaced by [SEP]); returns the length used. */
int tr_batch_row(tr_batch *b, int r, const int32_t *ids, int len);
/* Sets B and T (= longest row) and zero-pads; call after the rows. */
void tr_batch_finish(tr_batch *b, int B, const int *lens);

/* Checkpoints. */
#define TR_CKPT_PRETRAIN 1
#define TR_CKPT_FINETUNE 2
#define TR_CKPT_DISTILL 3
#define TR_CKPT_PRUNE 4         /* prune's recovery fine-tune */
/* The AdamW moments are written by `moments` (train_loop passes
 * tr_dp_moments: the whole moments even when the optimizer is sharded, so
 * any process count resumes it); a callback, so that this file does not
 * depend on the data-parallel layer above it. */
typedef int (*tr_moments_fn)(void *arg, void *adam_m, void *adam_v);
int tr_ckpt_save(flow_ctx *c, int tag, long step, const bert_model *m, tr_moments_fn moments,
                 void *moments_arg, const void *extra, size_t extra_len);
/* Returns 0 and fills (step, model state, *extra malloc'd) when a
 * checkpoint exists; FLOW_E_NOTFOUND when none; another code (with the
 * node failed) when it is damaged.  A sharded optimizer (bert_shard_optimizer)
 * takes the moments of its shard. */
int tr_ckpt_load(flow_ctx *c, int tag, long *step, bert_model *m, char **extra, size_t *extra_len);

/* Test hook: after optimizer step STEP of a STAGE node ("pretrain",
 * "finetune") the trainer calls tr_test_kill, which calls
 * flow_test_step_hook(stage, step) if the program defines it.  Only the
 * test binary flow_testhooks does (tests/hooks/kill_at.c: FLOW_TEST_KILL_AT
 * kills the build there, for tests/train_e2e_test.sh); in `flow` the weak
 * reference is NULL and tr_test_kill does nothing, whatever the
 * environment says. */
void flow_test_step_hook(const char *stage, long step) __attribute__((weak));
void tr_test_kill(const char *stage, long step);

/* Captures bert_profile_print into a string (caller frees). */
char *tr_profile_text(const bert_model *m);

/* ---- the training loop (train_loop.c) -----------------------------------
 * One loop for every training stage: epochs of length-bucketed batches,
 * micro-batching with gradient accumulation, global-norm clipping, linear
 * warmup/decay, AdamW, the loss curve, dev evaluation (optionally keeping
 * the best weights), resumable checkpoints and the kill test hook.  The
 * stage supplies the data and the objective; everything else is here, so
 * a resumed run is bit-identical to an uninterrupted one for every stage.
 *
 * Per optimizer step s (0-based) of epoch e = s / steps_per_epoch:
 *   the epoch order is tr_epoch_build(usable, len, batch,
 *   tr_seed(seed, order_tag, e), shuffle); micro-batches j*accum ..
 *   (j+1)*accum-1 of it (j = s % steps_per_epoch, the last step of an
 *   epoch may have fewer); each is filled by obj->fill, run forward
 *   (train = 1, dropout counter = the step's first + its index in the step)
 *   and backward with loss scale 1/(micro-batches of the step) into zeroed
 *   gradients, spread over the data-parallel workers (train_dp.c), and the
 *   micro-batch gradients are summed in micro-batch order (kernels/dp.h);
 *   then clip, lr = bert_lr_linear(lr, s, warmup, total), AdamW.
 * loss_curve: "step \t loss \t lr \t grad_norm\n" per step (step 1-based).
 * Evaluation after step s+1 when eval_every divides it, at each epoch end
 * when eval_each_epoch, and after the last step; dev_curve gets
 * "step \t <obj->evaluate's text>" each time.  keep_best: the weights of the
 * best score (> strictly, the first best wins) are restored at the end. */

/* Trainable parameters outside the model (distillation's hidden-state
 * projection): n floats in each of params, grads, adam_m, adam_v, owned by
 * the stage; decay[i] = 1 where AdamW weight decay applies.  The loop
 * zeroes grads with the model's before each step, clips them by their
 * own global norm (same max_grad_norm; the model's norm is not mixed in,
 * so a stage without aux trains exactly as before), steps them with
 * AdamW at the model's lr and adam_t (scalar, in a fixed order), and
 * saves params and moments in every checkpoint after the loop's state.
 * One data-parallel process only: a group of several is refused (their
 * aux gradients are not reduced yet). */
typedef struct tr_aux {
    size_t n;
    float *params, *grads, *adam_m, *adam_v;
    const uint8_t *decay;
} tr_aux;

typedef struct tr_objective {
    const char *stage;          /* "pretrain", "finetune": hook and messages */
    int ckpt_tag;               /* TR_CKPT_*: a checkpoint of another stage is refused */
    int head;                   /* BERT_HEAD_* run by forward */
    /* the training sequences */
    const uint32_t *usable; size_t nusable;
    const uint32_t *len;        /* [any sequence index] its length */
    uint64_t order_tag;         /* mixed into each epoch's order seed */
    /* Fills b (tr_batch_row / tr_batch_finish) with train sequences
     * seq[0..n) of epoch `epoch` and *bb from it.  Returns 0 when the
     * micro-batch has nothing to learn (it is skipped), 1 otherwise. */
    int (*fill)(void *self, tr_batch *b, const uint32_t *seq, size_t n, long epoch,
                bert_batch *bb);
    /* Optional objective computed outside the model (distillation): given
     * the forward's output, returns the loss and calls bert_backward_ext
     * with its gradients times scale.  NULL: the model's own loss and
     * bert_backward(m, scale). */
    int (*backward)(void *self, bert_model *m, const bert_batch *bb, const bert_output *o,
                    float scale, double *loss, flow_err *e);
    /* Dev evaluation (NULL = none): *score, higher is better; appends a
     * dev_curve text ("acc \t f1\n") to curve and a log phrase to log.
     * Returns 0 or the node failure. */
    int (*evaluate)(void *self, bert_model *m, double *score, flow_buf *curve, flow_buf *log);
    void *self;
    tr_aux *aux;                /* NULL: the model's parameters only */
} tr_objective;

typedef struct tr_options {
    int batch, accum;           /* sequences per micro-batch, micro-batches per step */
    long epochs, max_steps;     /* max_steps > 0 overrides epochs */
    float lr, warmup_ratio, max_grad_norm;
    bert_adamw adamw;
    uint64_t seed;              /* order seed (with order_tag) */
    long checkpoint_every, eval_every;  /* 0 = never (eval: see above) */
    int eval_each_epoch, keep_best;
    int log_every;              /* a log line every N steps (0 = at evaluations) */
} tr_options;

/* Reads the options every training stage shares from its parameters
 * (batch, grad_accum, epochs, max_steps, lr, warmup_ratio, weight_decay,
 * max_grad_norm, seed, checkpoint_every, eval_every). */
void tr_options_from_params(flow_ctx *c, tr_options *o);

typedef struct tr_result {
    long total, steps_per_epoch, warmup;
    long best_step;             /* step of the best evaluation, -1 if none */
    double best_score;
    float last_loss;            /* the last step's loss */
    long tokens;                /* train tokens over the whole run (resumes included) */
    long tokens_here;           /* ... in this run, all data-parallel workers (for tok/s) */
    double seconds;             /* wall time of the steps run here */
    flow_buf curve, dev_curve;
} tr_result;

/* Trains m (created and initialised by the stage) with obj.  On return
 * (0) m holds the final weights (the best ones with keep_best), synced to
 * the host.  Returns 0 or the node failure. */
int tr_train(flow_ctx *c, bert_model *m, const tr_objective *obj, const tr_options *opt,
             tr_result *res);
void tr_result_release(tr_result *r);

/* ---- data-parallel workers (train_dp.c) ----------------------------------
 * How the micro-batches of a step are spread over the node's workers
 * (`workers = K` threads) and processes (kernels/dp.h environment) and
 * summed in a fixed order: see train_dp.c.  tr_train is the only user. */
typedef struct tr_dp tr_dp;
/* Replicas of m for the node's workers, the process group from the
 * environment; has_ext_backward: the objective has its own backward. */
int tr_dp_new(flow_ctx *c, bert_model *m, int batch, int has_ext_backward, tr_dp **out);
void tr_dp_free(tr_dp *d);
/* Global workers (local workers x processes). */
int tr_dp_world(const tr_dp *d);
/* Fails unless every process starts (resumes) at the same step with the
 * same workers, zero and (with zero) checkpoint_every. */
int tr_dp_agree(tr_dp *d, long step, long checkpoint_every);
/* Forward/backward of micro-batches k0..k1 of epoch order ep (epoch
 * `epoch`, step s), their summed gradient left in the model's grads,
 * *loss their mean loss, *tokens their real tokens (all processes). */
int tr_dp_step(tr_dp *d, const tr_objective *obj, const tr_epoch *ep, size_t k0, size_t k1,
               long epoch, long s, double *loss, long *tokens);
/* The optimizer step s after tr_dp_step: clipping to max_norm and AdamW
 * at lr, whole or (zero = 1) sharded over the processes; *norm = the
 * global gradient norm before clipping.  Every process calls it. */
int tr_dp_update(tr_dp *d, const bert_adamw *hp, float lr, float max_norm, long s, float *norm);
/* fp16: the steps skipped so far because the gradients overflowed
 * (dynamic loss scaling, train_dp.c); 0 for fp32 and bf16. */
long tr_dp_skipped(const tr_dp *d);
/* fp16 dynamic loss scaling's state (train_dp.c): the scale, the finite
 * steps in a row since it last changed, the steps skipped so far.  A
 * checkpoint keeps it (tr_scaler_pack: 24 bytes "fp16ls01", f32 scale,
 * i32 good, i64 skipped, little-endian as the host), so a resumed fp16 run
 * goes on with the scale it had and gives the bytes of an uninterrupted
 * one.  tr_scaler_unpack: 0, or -1 for a record that is not one (tag) or
 * impossible at step `step` (scale not a power of two >= 1, good outside
 * [0, 2000), skipped outside [0, step]); *s untouched then. */
typedef struct tr_scaler {
    float scale;
    long good, skipped;
} tr_scaler;
#define TR_SCALER_BYTES 24
void tr_scaler_pack(const tr_scaler *s, unsigned char out[TR_SCALER_BYTES]);
int tr_scaler_unpack(tr_scaler *s, const unsigned char *in, long step);
tr_scaler *tr_dp_scaler(tr_dp *d);
/* The model's whole AdamW moments, nparams floats each, into the bytes at
 * mm and vv (any alignment; with zero = 1 gathered from every process,
 * which all call it). */
int tr_dp_moments(tr_dp *d, void *mm, void *vv);

#endif
