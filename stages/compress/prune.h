/* prune.h — structured pruning of a BERT classifier, the library half of
 * the `prune` stage (prune.c): importance scores of attention heads and
 * FFN neurons, the choice of what to keep for a target, and the physical
 * removal that gives a smaller dense model.  Pure functions of a model
 * and data (no flow_ctx), so tests/prune_test.c checks them directly.
 * Internal to stages/compress.
 *
 * ---- importance ----------------------------------------------------------
 * For a group G of parameters (a head, an FFN neuron) and one calibration
 * batch b with mean classification loss L_b:
 *     s_G(b) = | sum_{w in G} w * dL_b/dw |
 *     I_G    = sum_b (n_b / N) s_G(b)          (n_b sequences of N in all)
 * The sum inside |.| is the first-order Taylor estimate of the loss change
 * when the whole group is set to zero (L(0) - L(w) ~ -sum w dL/dw), and
 * for the value rows and output columns of a head exactly the derivative
 * of L with respect to a gate multiplying that head's output (Michel et
 * al. 2019, "Are sixteen heads really better than one?"); the absolute
 * value per batch keeps groups whose effect changes sign across data
 * (Molchanov et al. 2019).  Since it is in loss units, scores of
 * different layers compare, which a global target needs.
 *   head h of layer l (head size d, rows/columns h*d .. h*d+d-1):
 *       query, key, value: weight rows and bias entries;
 *       attention.output.dense.weight: columns.
 *   FFN neuron j of layer l: intermediate.dense.weight row j and bias j,
 *       output.dense.weight column j.
 * Dropout is off while scoring (the model is scored as it classifies).
 *
 * ---- physical removal ----------------------------------------------------
 * prune_shrink keeps, in their original order, the heads and neurons
 * marked in keep: the rows/columns above are selected, every other tensor
 * (embeddings, LayerNorms, output biases, pooler, classifier) is copied.
 * Removing a head or neuron is the same function as zeroing its output
 * columns in the unpruned model (tests/prune_test.c checks the logits).
 */
#ifndef FLOW_PRUNE_H
#define FLOW_PRUNE_H

#include "kernels/kernels.h"

/* Labelled calibration sequences: sequence i is ids[off[i] .. off[i+1]),
 * label[i] in [0, num_labels) (or < 0: skipped); at most T ids are used
 * (the last kept one replaced by [SEP]). */
typedef struct prune_data {
    const int32_t *ids;
    const uint64_t *off;
    const int32_t *label;
    size_t n;
} prune_data;

/* Scores per layer: head[l][h] (h < cfg.heads[l]) and ffn[l][j]
 * (j < cfg.ffn[l]), malloc'd per layer. */
typedef struct prune_scores {
    int layers;
    double *head[BERT_MAX_LAYERS];
    double *ffn[BERT_MAX_LAYERS];
    double loss;                /* mean calibration loss */
    long sequences;             /* calibration sequences used */
} prune_scores;

void prune_scores_release(prune_scores *s);

/* Scores every head and neuron of m (a CLASSIFY model whose dropout is 0,
 * created with max_B >= batch) on d in batches of `batch` sequences of
 * similar length (fixed order: by length, then index).  Overwrites
 * m->grads.  FLOW_E_INPUT when d has no usable sequence. */
int prune_score(bert_model *m, const prune_data *d, int batch, prune_scores *s, flow_err *e);

/* Group sums of one gradient: adds |sum w*g| * weight to each head's and
 * neuron's score (what prune_score does per batch; m's params and grads). */
void prune_score_add(const bert_model *m, double weight, prune_scores *s);

/* What a target keeps: per layer, keep_head[l][h] / keep_ffn[l][j] in 0/1. */
typedef struct prune_keep {
    int layers;
    uint8_t *head[BERT_MAX_LAYERS];
    uint8_t *ffn[BERT_MAX_LAYERS];
} prune_keep;

void prune_keep_release(prune_keep *k);

/* Keeps, of n groups per layer counts[l] with scores score[l][...], the
 * most important ones so that layer l keeps want[l] (per-layer target,
 * total < 0) or the whole model keeps `total` (global target: the least
 * important groups anywhere go first, a layer's last group never; ties
 * go by layer then index, the lower one removed first).  out[l] must hold
 * counts[l] bytes.  The caller has checked feasibility (1 <= want[l] <=
 * counts[l]; layers <= total <= sum counts). */
void prune_choose(int layers, const int *counts, double *const *score, const int *want,
                  long total, uint8_t **out);

/* The shrunk model: *oc is c with heads[l] / ffn[l] = what keep keeps;
 * *out (malloc'd, bert_param_count(oc) floats, in oc's table order)
 * holds params (c's flat buffer) with the removed rows and columns gone.
 * FLOW_E_PARAM when keep leaves a layer without a head or neuron. */
int prune_shrink(const bert_config *c, const float *params, const prune_keep *keep,
                 bert_config *oc, float **out, flow_err *e);

#endif
