/* distill_loss.h — the distillation objective on one micro-batch, apart
 * from the stage (distill.c) so that tests/distill_test.c can check every
 * gradient by finite differences.
 *
 * For a micro-batch of B sequences (T positions, mask 1 on real tokens):
 *   loss = alpha * T^2 * (1/B) sum_r KL(softmax(t_r / T) || softmax(s_r / T))
 *        + (1 - alpha) * (1/B) sum_{r labelled} w[y_r] * CE(s_r, y_r)
 *        + beta * (1/Ls) sum_{l=1..Ls} (1/(N_real * Ht))
 *                 sum_{real tokens i} || P_l h^s_l[i] + b_l - h^t_{m(l)}[i] ||^2
 * s_r, t_r: student and teacher logits [C]; w: class weights (1 when none);
 * unlabelled rows (y = -1) have no CE term but count in B, so a labelled
 * sequence weighs the same in a batch with or without unlabelled ones.
 * h^s_l: the student's hidden state l ([B*T, Hs], bert_hidden_states: the
 * output of encoder layer l), h^t: the teacher's ([B*T, Ht]).
 * Layer map m(l) = round(l * Lt / Ls) (halves up), at least 1: uniform,
 * last layer to last layer (Ls = 2, Lt = 4: 2 and 4; Ls = Lt: identity);
 * the embedding outputs (hidden state 0) are not matched.
 * Projection: when Hs != Ht, a learned linear map per student layer, P_l
 * [Ht, Hs] (PyTorch Linear layout) and b_l [Ht], trained with the student
 * and not part of its artifact; with equal widths, none (identity).
 * Flat projection buffer: for l = 1..Ls, P_l then b_l
 * (distill_proj_count floats).
 *
 * Arithmetic: single-threaded plain loops in a fixed order (projection
 * sums in float along fixed rows, loss terms in double), so the result is
 * the same for any thread count; the KL term is bert_soft_target_loss. */
#ifndef FLOW_DISTILL_LOSS_H
#define FLOW_DISTILL_LOSS_H

#include <stddef.h>
#include <stdint.h>

typedef struct distill_spec {
    float temperature, alpha, beta;
    int C;                      /* classes */
    int Ls, Lt;                 /* student and teacher encoder layers */
    int Hs, Ht;                 /* student and teacher hidden widths */
    const float *class_weights; /* [C] for the CE term, or NULL (all 1) */
} distill_spec;

/* The teacher hidden state matched to student hidden state l (1..Ls). */
int distill_layer_map(int l, int Ls, int Lt);

/* Floats of the projections (0 when Hs == Ht). */
size_t distill_proj_count(const distill_spec *s);
/* Seeded init: P ~ N(0, 1/Hs) (so a projected LayerNorm output starts
 * at unit scale), b = 0; decay[i] = 1 on P, 0 on b. */
void distill_proj_init(const distill_spec *s, float *proj, uint8_t *decay, uint64_t seed);

typedef struct distill_batch {
    int B, T;
    const float *s_logits;      /* [B, C] */
    const float *t_logits;      /* [B, C] */
    const int32_t *labels;      /* [B], -1 = unlabelled; NULL: none labelled */
    const int32_t *mask;        /* [B*T] 1 = real token */
    const float *const *s_hidden;   /* [Ls + 1], entries 1..Ls read when beta > 0 */
    const float *const *t_hidden;   /* [Lt + 1], entries m(l) read when beta > 0 */
} distill_batch;

typedef struct distill_terms {
    double kl, ce, mse;         /* the three terms before their weights */
    double loss;                /* alpha*kl + (1-alpha)*ce + beta*mse */
    long labelled;              /* rows with a CE term */
} distill_terms;

/* The loss of the batch (also in *terms when not NULL).  With dlogits
 * (NULL: loss only): dlogits [B, C] = scale * dloss/ds (written); when
 * beta > 0, dhidden[l] [B*T, Hs] = scale * dloss/dh^s_l for l = 1..Ls
 * (written; dhidden[0] untouched) and dproj += scale * dloss/dproj. */
double distill_loss(const distill_spec *s, const distill_batch *b, const float *proj,
                    float scale, float *dlogits, float *const *dhidden, float *dproj,
                    distill_terms *terms);

/* The soft labels of an ensemble at temperature T as logits: for row r,
 *   out_r = T * log( sum_k w_k softmax(z_{k,r} / T) ),   sum_k w_k = 1,
 * so softmax(out_r / T) is the weighted mean of the members' softened
 * distributions.  z[k] is [rows, C] (a probability model gives log p).
 * Double inside, deterministic. */
void distill_mix_teachers(const float *const *z, const double *w, int K, int rows, int C,
                          float T, float *out);

#endif
