/* qgemm_scalar.c — scalar twins of the quantized Linear microkernels.
 *
 * These loops ARE the definition of the numerics in quant.h: exact int32
 * dot products, then the float rescale in a fixed order with separate
 * multiply and add (ISO C mode: no FMA contraction).  They read the weight
 * element by element through quant_weight_*_at (the panels are the only
 * copy held; tests check those accessors against the stored tensors).  Every SIMD path is
 * tested bit-exact against them, and they run wherever no SIMD path does.
 */
#include "qgemm_internal.h"

static void int8_tile_scalar(const quant_weight *w, const quant_act *a, const float *bias,
                             int m0, int m1, int n0, int n1, float *Y, size_t ldy,
                             int32_t *C)
{
    for (int m = m0; m < m1; m++) {
        const int8_t *x = a->q + (size_t)m * a->Kp;
        for (int n = n0; n < n1; n++) {
            int32_t acc = 0;
            for (int k = 0; k < w->K; k++) acc += (int32_t)x[k] * quant_weight_int8_at(w, n, k);
            if (C) { C[(size_t)m * w->N + n] = acc; continue; }
            float s = a->scale[m] * w->scale[n];
            float y = (float)acc * s;
            Y[(size_t)m * ldy + n] = bias ? y + bias[n] : y;
        }
    }
}

/* One group's integer part d_j for 4-bit weights (UINT4 or NF4). */
static int32_t u4_group_dot(const quant_weight *w, const int8_t *x, int j, int32_t asum, int n)
{
    int g = w->group;
    int32_t d = 0;
    for (int i = 0; i < g; i++) {
        int c = quant_weight_code_at(w, n, j * g + i);
        int v = w->kind == QUANT_KIND_NF4 ? w->codebook[c] : c;
        d += (int32_t)x[j * g + i] * v;
    }
    if (w->kind == QUANT_KIND_UINT4) d -= quant_weight_zero_at(w, n, j) * asum;
    return d;
}

static void u4_tile_scalar(const quant_weight *w, const quant_act *a, const float *bias,
                           int m0, int m1, int n0, int n1, float *Y, size_t ldy,
                           int32_t *C)
{
    (void)C;
    for (int m = m0; m < m1; m++) {
        const int8_t *x = a->q + (size_t)m * a->Kp;
        const int32_t *asum = a->gsum + (size_t)m * w->G;
        for (int n = n0; n < n1; n++) {
            float t = 0.0f;
            for (int j = 0; j < w->G; j++) {
                int32_t d = u4_group_dot(w, x, j, asum[j], n);
                t = t + quant_weight_scale_at(w, n, j) * (float)d;
            }
            float y = t * a->scale[m];
            Y[(size_t)m * ldy + n] = bias ? y + bias[n] : y;
        }
    }
}

const qgemm_kernels qgemm_scalar_kernels = { int8_tile_scalar, u4_tile_scalar };
