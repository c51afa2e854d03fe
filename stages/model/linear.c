/* linear.c — multiclass linear models on sparse rows, trained by plain SGD
 * (the baseline's classifier).  Two losses: multinomial logistic
 * regression (softmax cross-entropy) and the Crammer-Singer multiclass
 * hinge (linear SVM).  L2 regularisation is applied lazily through a scalar
 * scale on W (W = s * V), so each step costs O(ncls * nnz(row)).  The step
 * size follows scikit-learn's "optimal" schedule
 * eta_t = 1 / (l2 * (t0 + t)).  Single-threaded and seeded: the same data,
 * options and seed give the same bytes. */
#include "classifier.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void linear_init(linear_model *m, int ncls, size_t dim)
{
    m->ncls = ncls;
    m->dim = dim;
    m->W = xcalloc((size_t)ncls * dim, sizeof *m->W);
    m->b = xcalloc((size_t)ncls, sizeof *m->b);
}

void linear_release(linear_model *m)
{
    free(m->W);
    free(m->b);
    memset(m, 0, sizeof *m);
}

void linear_copy(linear_model *dst, const linear_model *src)
{
    if (dst->ncls != src->ncls || dst->dim != src->dim) {
        linear_release(dst);
        linear_init(dst, src->ncls, src->dim);
    }
    memcpy(dst->W, src->W, (size_t)src->ncls * src->dim * sizeof *src->W);
    memcpy(dst->b, src->b, (size_t)src->ncls * sizeof *src->b);
}

void softmax_inplace(float *v, int n)
{
    float mx = v[0];
    for (int i = 1; i < n; i++) if (v[i] > mx) mx = v[i];
    double s = 0;
    for (int i = 0; i < n; i++) { v[i] = expf(v[i] - mx); s += v[i]; }
    for (int i = 0; i < n; i++) v[i] = (float)(v[i] / s);
}

void linear_scores(const linear_model *m, const sp_mat *x, size_t r, float *scores)
{
    for (int k = 0; k < m->ncls; k++) {
        const float *w = m->W + (size_t)k * m->dim;
        double z = m->b[k];
        for (size_t q = x->rowptr[r]; q < x->rowptr[r + 1]; q++) z += (double)w[x->idx[q]] * x->val[q];
        scores[k] = (float)z;
    }
}

void linear_predict(const linear_model *m, const sp_mat *x, int *pred)
{
    float *z = xmalloc((size_t)m->ncls * sizeof *z);
    for (size_t r = 0; r < x->nrows; r++) {
        linear_scores(m, x, r, z);
        int best = 0;
        for (int k = 1; k < m->ncls; k++) if (z[k] > z[best]) best = k;
        pred[r] = best;
    }
    free(z);
}

/* Adds a * x_r to row k of V. */
static void axpy_row(float *v, const sp_mat *x, size_t r, float a)
{
    for (size_t q = x->rowptr[r]; q < x->rowptr[r + 1]; q++) v[x->idx[q]] += a * x->val[q];
}

static void fold_scale(linear_model *m, double *scale)
{
    size_t total = (size_t)m->ncls * m->dim;
    float s = (float)*scale;
    for (size_t i = 0; i < total; i++) m->W[i] *= s;
    *scale = 1.0;
}

void linear_train(linear_model *m, const sp_mat *x, const int *y, const linear_opts *o)
{
    const int C = m->ncls;
    const double alpha = o->l2 > 0 ? o->l2 : 1e-12;
    /* scikit-learn's heuristic for the initial step (both losses have
     * |dloss| <= 1 at the typical weight, so eta0 = typw). */
    const double typw = sqrt(1.0 / sqrt(alpha));
    const double t0 = 1.0 / (alpha * typw);
    const float bias_decay = 0.01f;   /* smaller steps for the unregularised bias */
    size_t n = 0;
    for (size_t i = 0; i < x->nrows; i++) if (y[i] >= 0) n++;
    size_t *order = xmalloc((n ? n : 1) * sizeof *order);
    for (size_t i = 0, k = 0; i < x->nrows; i++) if (y[i] >= 0) order[k++] = i;
    float *z = xmalloc((size_t)C * sizeof *z);
    double scale = 1.0, t = 0;
    for (int ep = 0; ep < o->epochs; ep++) {
        uint64_t rs = o->seed * 0x2545f4914f6cdd1dull + (uint64_t)ep + 1;
        for (size_t i = n; i > 1; i--) {           /* Fisher-Yates, seeded per epoch */
            size_t j = (size_t)(splitmix64_next(&rs) % i);
            size_t tmp = order[i - 1]; order[i - 1] = order[j]; order[j] = tmp;
        }
        for (size_t s = 0; s < n; s++, t++) {
            size_t r = order[s];
            int yi = y[r];
            float cw = o->class_weight ? o->class_weight[yi] : 1.0f;
            double eta = 1.0 / (alpha * (t0 + t));
            for (int k = 0; k < C; k++) {
                const float *w = m->W + (size_t)k * m->dim;
                double acc = 0;
                for (size_t q = x->rowptr[r]; q < x->rowptr[r + 1]; q++) acc += (double)w[x->idx[q]] * x->val[q];
                z[k] = (float)(scale * acc + m->b[k]);
            }
            scale *= (1.0 - eta * alpha);
            if (scale < 1e-6) fold_scale(m, &scale);
            if (o->loss == LOSS_LOG) {
                softmax_inplace(z, C);
                for (int k = 0; k < C; k++) {
                    float g = cw * (z[k] - (k == yi ? 1.0f : 0.0f));
                    if (g == 0) continue;
                    axpy_row(m->W + (size_t)k * m->dim, x, r, (float)(-eta * g / scale));
                    m->b[k] -= (float)eta * bias_decay * g;
                }
            } else {
                int kbest = -1;
                for (int k = 0; k < C; k++)
                    if (k != yi && (kbest < 0 || z[k] > z[kbest])) kbest = k;
                if (kbest >= 0 && z[kbest] + 1.0f > z[yi]) {
                    axpy_row(m->W + (size_t)yi * m->dim, x, r, (float)(eta * cw / scale));
                    axpy_row(m->W + (size_t)kbest * m->dim, x, r, (float)(-eta * cw / scale));
                    m->b[yi] += (float)eta * bias_decay * cw;
                    m->b[kbest] -= (float)eta * bias_decay * cw;
                }
            }
        }
        fold_scale(m, &scale);
        if (o->on_epoch && o->on_epoch(o->arg, ep + 1, m)) break;
    }
    free(z);
    free(order);
}
