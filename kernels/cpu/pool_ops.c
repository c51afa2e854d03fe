/* pool_ops.c — the classification head's pooling ops (bert_ops.h): the
 * [CLS] row (transformers' BertPooler input) or the mean of the final
 * hidden states over the real positions of each sequence.  Forward beside
 * backward; each sequence is one unit of work summed in position order, so
 * the bytes do not depend on the thread count. */
#include "bert_ops.h"

#include <string.h>

void cls_pool_forward(float *out, const float *h, int B, int T, int H)
{
    for (int b = 0; b < B; b++)
        memcpy(out + (size_t)b * H, h + (size_t)b * T * H, (size_t)H * sizeof(float));
}

void cls_pool_backward(float *dh, const float *dout, int B, int T, int H)
{
    for (int b = 0; b < B; b++) {
        float *d = dh + (size_t)b * T * H;
        const float *s = dout + (size_t)b * H;
        for (int k = 0; k < H; k++)
            d[k] += s[k];
    }
}

/* Real positions of sequence b (>= 1: position 0 is real). */
static int real_count(const int32_t *mask, int b, int T)
{
    if (!mask)
        return T;
    int n = 0;
    for (int t = 0; t < T; t++)
        n += mask[(size_t)b * T + t] != 0;
    return n;
}

void mean_pool_forward(float *out, const float *h, const int32_t *mask, int B, int T, int H)
{
    /* one sequence per thread; a small batch on the caller (a fork costs more:
     * ~55 us with sleeping threads against ~4 us of sums at batch 1) */
    #pragma omp parallel for schedule(static) if ((size_t)B * T * H >= 65536 && B > 1)
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * H;
        memset(o, 0, (size_t)H * sizeof(float));
        for (int t = 0; t < T; t++) {
            if (mask && !mask[(size_t)b * T + t])
                continue;
            const float *x = h + ((size_t)b * T + t) * H;
            for (int k = 0; k < H; k++)
                o[k] += x[k];
        }
        /* a division, not a multiplication by 1/n: what ONNX's Div and a
         * torch reference compute, so exports agree to the last bits more often */
        float n = (float)real_count(mask, b, T);
        for (int k = 0; k < H; k++)
            o[k] /= n;
    }
}

void mean_pool_backward(float *dh, const float *dout, const int32_t *mask, int B, int T, int H)
{
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float n = (float)real_count(mask, b, T);
        const float *s = dout + (size_t)b * H;
        for (int t = 0; t < T; t++) {
            if (mask && !mask[(size_t)b * T + t])
                continue;
            float *d = dh + ((size_t)b * T + t) * H;
            for (int k = 0; k < H; k++)
                d[k] += s[k] / n;
        }
    }
}
