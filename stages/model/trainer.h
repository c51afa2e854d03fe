/* trainer.h — pieces shared by the training stages pretrain and finetune:
 * a counter-based RNG (so any step's randomness can be recomputed after a
 * resume), the per-epoch data order with length bucketing, batch assembly
 * with padding, and the resumable checkpoint of a model + AdamW state.
 * Internal to the stages library.
 *
 * ---- checkpoint (flow_checkpoint_save payload), "FLOWCKPT" version 1 ----
 *   bytes 0..7  magic "FLOWCKPT"; u32 version = 1; u32 stage tag
 *               (1 pretrain, 2 finetune)
 *   u64 step (optimizer steps done), u64 nparams, i64 adam_t,
 *   u64 fwd_counter (dropout RNG counter), u64 dropout_seed,
 *   u64 extra bytes E, E bytes stage-specific state (loss curve so far,
 *   best dev score...), then params, adam_m, adam_v (nparams f32 each).
 * The node key names the checkpoint, so config and data are the same as
 * when it was written; nparams is checked anyway.
 */
#ifndef FLOW_TRAINER_H
#define FLOW_TRAINER_H

#include "classifier.h"
#include "kernels/kernels.h"

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
int tr_ckpt_save(flow_ctx *c, int tag, long step, const bert_model *m, const void *extra, size_t extra_len);
/* Returns 0 and fills (step, model state, *extra malloc'd) when a
 * checkpoint exists; FLOW_E_NOTFOUND when none; another code (with the
 * node failed) when it is damaged. */
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

#endif
