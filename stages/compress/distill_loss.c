/* distill_loss.c — the distillation objective of one micro-batch and its
 * gradients (formulas in distill_loss.h): soft-target KL, cross-entropy
 * on the labelled rows, hidden-state MSE through the learned projection,
 * and the ensemble's soft labels. */
#include "distill_loss.h"
#include "engine/base/base.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int distill_layer_map(int l, int Ls, int Lt)
{
    int m = (int)(((long)2 * l * Lt + Ls) / (2L * Ls));   /* round(l * Lt / Ls), halves up */
    return m < 1 ? 1 : m > Lt ? Lt : m;
}

size_t distill_proj_count(const distill_spec *s)
{
    if (s->Hs == s->Ht) return 0;
    return (size_t)s->Ls * ((size_t)s->Ht * s->Hs + (size_t)s->Ht);
}

void distill_proj_init(const distill_spec *s, float *proj, uint8_t *decay, uint64_t seed)
{
    if (distill_proj_count(s) == 0) return;
    size_t per = (size_t)s->Ht * s->Hs + (size_t)s->Ht, nP = (size_t)s->Ht * s->Hs;
    double sd = 1.0 / sqrt((double)s->Hs);
    uint64_t st = seed ^ 0xD157111ull;
    for (int l = 0; l < s->Ls; l++) {
        float *p = proj + (size_t)l * per;
        for (size_t i = 0; i < nP; i++) {   /* Box-Muller on two uniforms */
            double u1 = ((double)(splitmix64_next(&st) >> 11) + 0.5) * 0x1.0p-53;
            double u2 = (double)(splitmix64_next(&st) >> 11) * 0x1.0p-53;
            p[i] = (float)(sd * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
            decay[(size_t)l * per + i] = 1;
        }
        for (size_t i = nP; i < per; i++) {
            p[i] = 0;
            decay[(size_t)l * per + i] = 0;
        }
    }
}

/* CE on the labelled rows: returns sum_r w nll / B; adds its gradient
 * times f to d (when d). */
static double ce_term(const distill_spec *s, const distill_batch *b, double f, float *d, long *nlab)
{
    int C = s->C;
    double sum = 0;
    *nlab = 0;
    if (!b->labels) return 0;
    for (int r = 0; r < b->B; r++) {
        int y = b->labels[r];
        if (y < 0) continue;
        const float *x = b->s_logits + (size_t)r * C;
        double mx = x[0], z = 0, w = s->class_weights ? s->class_weights[y] : 1.0;
        for (int j = 1; j < C; j++) mx = fmax(mx, x[j]);
        for (int j = 0; j < C; j++) z += exp(x[j] - mx);
        sum += w * (mx + log(z) - x[y]);
        (*nlab)++;
        if (!d) continue;
        for (int j = 0; j < C; j++)
            d[(size_t)r * C + j] += (float)(f * w * (exp(x[j] - mx) / z - (j == y)) / b->B);
    }
    return sum / b->B;
}

/* One layer's sum of squared residuals over the real tokens; with dh:
 * dh [N, Hs] = g * d/dh, dP/db += g * d/dP, d/db (g = scale*beta/(Ls*Nreal*Ht)). */
static double mse_layer(const distill_spec *s, const distill_batch *b, const float *hs,
                        const float *ht, const float *P, const float *bias, const float *Pt,
                        double g, float *dh, float *dP, float *db)
{
    int Hs = s->Hs, Ht = s->Ht, N = b->B * b->T;
    float *y = xmalloc((size_t)Ht * sizeof *y), *dy = xmalloc((size_t)Ht * sizeof *dy);
    double sum = 0;
    for (int i = 0; i < N; i++) {
        const float *h = hs + (size_t)i * Hs, *t = ht + (size_t)i * Ht;
        float *dhi = dh ? dh + (size_t)i * Hs : NULL;
        if (b->mask && !b->mask[i]) {
            if (dhi) memset(dhi, 0, (size_t)Hs * sizeof *dhi);
            continue;
        }
        if (P) {                    /* y = P h + b, as axpys over the columns of P */
            memcpy(y, bias, (size_t)Ht * sizeof *y);
            for (int k = 0; k < Hs; k++) {
                const float *col = Pt + (size_t)k * Ht;
                float hk = h[k];
                for (int o = 0; o < Ht; o++) y[o] += col[o] * hk;
            }
        } else {
            memcpy(y, h, (size_t)Ht * sizeof *y);
        }
        for (int o = 0; o < Ht; o++) {
            double r = (double)y[o] - t[o];
            sum += r * r;
            dy[o] = (float)(2.0 * g * r);
        }
        if (!dhi) continue;
        if (!P) {
            memcpy(dhi, dy, (size_t)Hs * sizeof *dhi);
            continue;
        }
        memset(dhi, 0, (size_t)Hs * sizeof *dhi);
        for (int o = 0; o < Ht; o++) {  /* dh = P^T dy; dP += dy h^T; db += dy */
            const float *row = P + (size_t)o * Hs;
            float *drow = dP + (size_t)o * Hs, d = dy[o];
            for (int k = 0; k < Hs; k++) dhi[k] += d * row[k];
            for (int k = 0; k < Hs; k++) drow[k] += d * h[k];
            db[o] += d;
        }
    }
    free(y);
    free(dy);
    return sum;
}

static double mse_term(const distill_spec *s, const distill_batch *b, const float *proj, float scale,
                       float *const *dhidden, float *dproj)
{
    int N = b->B * b->T, Hs = s->Hs, Ht = s->Ht;
    long real = 0;
    for (int i = 0; i < N; i++) real += b->mask ? b->mask[i] != 0 : 1;
    if (real == 0) return 0;
    size_t per = (size_t)Ht * Hs + (size_t)Ht;
    int has_proj = Hs != Ht;
    float *Pt = has_proj ? xmalloc((size_t)Hs * Ht * sizeof *Pt) : NULL;
    double norm = (double)s->Ls * (double)real * Ht, g = (double)scale * s->beta / norm, sum = 0;
    for (int l = 1; l <= s->Ls; l++) {
        const float *P = has_proj ? proj + (size_t)(l - 1) * per : NULL;
        const float *bias = P ? P + (size_t)Ht * Hs : NULL;
        float *dP = dhidden && has_proj ? dproj + (size_t)(l - 1) * per : NULL;
        if (P)
            for (int o = 0; o < Ht; o++)
                for (int k = 0; k < Hs; k++) Pt[(size_t)k * Ht + o] = P[(size_t)o * Hs + k];
        sum += mse_layer(s, b, b->s_hidden[l], b->t_hidden[distill_layer_map(l, s->Ls, s->Lt)], P, bias, Pt, g,
                         dhidden ? dhidden[l] : NULL, dP, dP ? dP + (size_t)Ht * Hs : NULL);
    }
    free(Pt);
    return sum / norm;
}

double distill_loss(const distill_spec *s, const distill_batch *b, const float *proj,
                    float scale, float *dlogits, float *const *dhidden, float *dproj,
                    distill_terms *terms)
{
    distill_terms t = { 0 };
    t.kl = bert_soft_target_loss(b->s_logits, b->t_logits, b->B, s->C, s->temperature,
                                 scale * s->alpha, dlogits);
    t.ce = ce_term(s, b, (double)scale * (1.0 - s->alpha), dlogits, &t.labelled);
    if (s->beta > 0)
        t.mse = mse_term(s, b, proj, scale, dlogits ? dhidden : NULL, dproj);
    t.loss = s->alpha * t.kl + (1.0 - s->alpha) * t.ce + s->beta * t.mse;
    if (terms) *terms = t;
    return t.loss;
}

void distill_mix_teachers(const float *const *z, const double *w, int K, int rows, int C,
                          float T, float *out)
{
    double *p = xmalloc((size_t)C * sizeof *p);
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < C; j++) p[j] = 0;
        for (int k = 0; k < K; k++) {
            const float *x = z[k] + (size_t)r * C;
            double mx = x[0] / (double)T, sum = 0;
            for (int j = 1; j < C; j++) mx = fmax(mx, x[j] / (double)T);
            for (int j = 0; j < C; j++) sum += exp(x[j] / (double)T - mx);
            for (int j = 0; j < C; j++) p[j] += w[k] * exp(x[j] / (double)T - mx) / sum;
        }
        for (int j = 0; j < C; j++)
            out[(size_t)r * C + j] = (float)(T * log(p[j] > 1e-300 ? p[j] : 1e-300));
    }
    free(p);
}
