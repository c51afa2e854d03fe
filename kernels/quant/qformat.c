/* qformat.c — the stored weight formats and their round-to-nearest (RTN)
 * quantizers and dequantizers: INT8 per output channel, UINT4 group-wise
 * with scale and zero, NF4-style code books fitted to the weights.  The
 * reference every kernel and GPTQ builds on; formulas in quant.h.
 */
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void quant_int8_rtn(const float *W, int N, int K, int8_t *q, float *sw)
{
    for (int n = 0; n < N; n++) {
        const float *w = W + (size_t)n * K;
        float amax = 0.0f;
        for (int k = 0; k < K; k++) amax = fmaxf(amax, fabsf(w[k]));
        float s = amax / 127.0f;
        sw[n] = s;
        for (int k = 0; k < K; k++) {
            float r = s > 0.0f ? rintf(w[k] / s) : 0.0f;
            q[(size_t)n * K + k] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r);
        }
    }
}

void quant_int8_dequant(const int8_t *q, const float *sw, int N, int K, float *W)
{
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) W[(size_t)n * K + k] = sw[n] * (float)q[(size_t)n * K + k];
}

void quant_u4_params(const float *x, int n, int stride, int sym, float *s, uint8_t *z)
{
    float lo = 0.0f, hi = 0.0f;
    for (int i = 0; i < n; i++) {
        float v = x[(size_t)i * stride];
        lo = fminf(lo, v);
        hi = fmaxf(hi, v);
    }
    if (sym) {
        float amax = fmaxf(-lo, hi);
        *s = amax / 7.0f;
        *z = 8;
        return;
    }
    if (hi - lo == 0.0f) { *s = 0.0f; *z = 8; return; }
    *s = (hi - lo) / 15.0f;
    float r = rintf(-lo / *s);
    *z = (uint8_t)(r < 0.0f ? 0 : r > 15.0f ? 15 : (int)r);
}

void quant_u4_pack(const uint8_t *codes, int N, int K, int group, uint8_t *packed)
{
    int h = group / 2;
    for (int n = 0; n < N; n++) {
        const uint8_t *c = codes + (size_t)n * K;
        uint8_t *p = packed + (size_t)n * (K / 2);
        for (int j = 0; j < K / group; j++)
            for (int i = 0; i < h; i++)
                p[j * h + i] = (uint8_t)((c[j * group + i] & 15) | (c[j * group + h + i] << 4));
    }
}

void quant_u4_rtn(const float *W, int N, int K, int group, int sym, uint8_t *packed, float *s,
                  uint8_t *z)
{
    int G = K / group;
    uint8_t *codes = malloc((size_t)K);
    for (int n = 0; n < N; n++) {
        const float *w = W + (size_t)n * K;
        for (int j = 0; j < G; j++) {
            float sc; uint8_t zp;
            quant_u4_params(w + j * group, group, 1, sym, &sc, &zp);
            s[(size_t)n * G + j] = sc;
            if (z) z[(size_t)n * G + j] = zp;
            for (int i = 0; i < group; i++) codes[j * group + i] = (uint8_t)quant_u4_code(w[j * group + i], sc, zp);
        }
        quant_u4_pack(codes, 1, K, group, packed + (size_t)n * (K / 2));
    }
    free(codes);
}

void quant_u4_dequant(const uint8_t *packed, const float *s, const uint8_t *z, int N, int K,
                      int group, float *W)
{
    int G = K / group;
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            int j = k / group, c = quant_u4_get(packed + (size_t)n * (K / 2), group, k);
            int zp = z ? z[(size_t)n * G + j] : 8;
            W[(size_t)n * K + k] = s[(size_t)n * G + j] * (float)(c - zp);
        }
}

/* ---- NF4 code books ------------------------------------------------------- */

/* QLoRA's NF4 levels (quantiles of N(0,1) scaled to [-1, 1]). */
static const double nf4_levels[16] = {
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
};

int quant_nf4_code(float v, const int8_t L[16])
{
    int best = 0;
    float bd = fabsf(v - (float)L[0]);
    for (int i = 1; i < 16; i++) {
        float d = fabsf(v - (float)L[i]);
        if (d < bd) { bd = d; best = i; }
    }
    return best;
}

#define NF4_BINS 2541                           /* [-127, 127] in steps of 0.1 */

void quant_nf4_fit(const float *W, int N, int K, int group, int iters, int8_t L[16])
{
    /* Histogram of the group-normalized weights, then Lloyd on bin centres:
     * O(bins * iters) whatever the tensor size, and deterministic. */
    double *hist = calloc(NF4_BINS, sizeof(double));
    for (int n = 0; n < N; n++)
        for (int j = 0; j < K / group; j++) {
            const float *w = W + (size_t)n * K + (size_t)j * group;
            float amax = 0.0f;
            for (int i = 0; i < group; i++) amax = fmaxf(amax, fabsf(w[i]));
            if (amax == 0.0f) continue;
            for (int i = 0; i < group; i++) {
                int b = (int)lrint((w[i] / amax * 127.0f + 127.0f) * 10.0);
                hist[b < 0 ? 0 : b >= NF4_BINS ? NF4_BINS - 1 : b] += 1.0;
            }
        }
    double lv[16];
    for (int i = 0; i < 16; i++) lv[i] = nf4_levels[i] * 127.0;
    for (int it = 0; it < iters; it++) {
        double sum[16] = { 0 }, cnt[16] = { 0 };
        int c = 0;
        for (int b = 0; b < NF4_BINS; b++) {
            double v = b / 10.0 - 127.0;
            while (c < 15 && fabs(v - lv[c + 1]) < fabs(v - lv[c])) c++;
            sum[c] += hist[b] * v;
            cnt[c] += hist[b];
        }
        for (int i = 1; i < 15; i++)            /* endpoints stay at +-127 */
            if (cnt[i] > 0) lv[i] = sum[i] / cnt[i];
    }
    free(hist);
    /* Integer levels, strictly increasing, endpoints exact. */
    L[0] = -127;
    L[15] = 127;
    for (int i = 1; i < 15; i++) {
        long r = lrint(lv[i]);
        if (r <= L[i - 1]) r = L[i - 1] + 1;
        if (r > 127 - (15 - i)) r = 127 - (15 - i);
        L[i] = (int8_t)r;
    }
}

void quant_nf4_rtn(const float *W, int N, int K, int group, const int8_t L[16], uint8_t *packed,
                   float *s)
{
    int G = K / group;
    uint8_t *codes = malloc((size_t)K);
    for (int n = 0; n < N; n++) {
        const float *w = W + (size_t)n * K;
        for (int j = 0; j < G; j++) {
            float amax = 0.0f;
            for (int i = 0; i < group; i++) amax = fmaxf(amax, fabsf(w[j * group + i]));
            float sc = amax / 127.0f;
            s[(size_t)n * G + j] = sc;
            for (int i = 0; i < group; i++)
                codes[j * group + i] = (uint8_t)quant_nf4_code(sc > 0.0f ? w[j * group + i] / sc : 0.0f, L);
        }
        quant_u4_pack(codes, 1, K, group, packed + (size_t)n * (K / 2));
    }
    free(codes);
}

void quant_nf4_dequant(const uint8_t *packed, const float *s, const int8_t L[16], int N, int K,
                       int group, float *W)
{
    int G = K / group;
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            int c = quant_u4_get(packed + (size_t)n * (K / 2), group, k);
            W[(size_t)n * K + k] = s[(size_t)n * G + k / group] * (float)L[c];
        }
}
