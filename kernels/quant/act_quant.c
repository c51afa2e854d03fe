/* act_quant.c — per-row dynamic quantization of fp32 activations to int8.
 *
 * Row m of X [M, K]: amax = max_k |x|, sa[m] = amax / 127,
 * a[m,k] = rint(x[m,k] * (127 / amax)) in [-127, 127] (round half to even;
 * |x| <= amax keeps it in range), zero-padded to Kp = K rounded up to
 * QUANT_KPAD so the SIMD loops need no tails.  With group > 0, gsum[m, j]
 * is the sum of a over group j (the zero-point correction of 4-bit
 * weights).  One definition, used by every path: outputs do not depend on
 * the code path or thread count.
 */
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void quant_act_init(quant_act *a) { memset(a, 0, sizeof *a); }

void quant_act_release(quant_act *a)
{
    if (!a) return;
    free(a->q);
    free(a->scale);
    free(a->gsum);
    memset(a, 0, sizeof *a);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem, flow_err *e)
{
    if (need <= *cap) return 0;
    void *n = realloc(*p, need * elem);
    if (!n) return flow_fail(e, FLOW_E_NOMEM, "quantized activations: cannot allocate %zu bytes", need * elem);
    *p = n;
    *cap = need;
    return 0;
}

int quant_act_quantize(quant_act *a, const float *X, int M, int K, size_t ldx, int group,
                       flow_err *e)
{
    if (M < 0 || K <= 0 || ldx < (size_t)K)
        return flow_fail(e, FLOW_E_PARAM, "quantized activations: bad shape M %d K %d ldx %zu", M, K, ldx);
    if (group < 0 || (group > 0 && K % group != 0))
        return flow_fail(e, FLOW_E_PARAM, "quantized activations: group %d does not divide K %d", group, K);
    int Kp = (K + QUANT_KPAD - 1) / QUANT_KPAD * QUANT_KPAD;
    int G = group > 0 ? K / group : 0;
    int rc = grow((void **)&a->q, &a->cap_q, (size_t)M * Kp, 1, e);
    if (!rc) rc = grow((void **)&a->scale, &a->cap_m, (size_t)M, sizeof(float), e);
    if (!rc && G) rc = grow((void **)&a->gsum, &a->cap_g, (size_t)M * G, sizeof(int32_t), e);
    if (rc) return rc;
    a->M = M; a->K = K; a->Kp = Kp; a->group = group;
    for (int m = 0; m < M; m++) {
        const float *x = X + (size_t)m * ldx;
        int8_t *q = a->q + (size_t)m * Kp;
        float amax = 0.0f;
        for (int k = 0; k < K; k++) {
            if (!isfinite(x[k]))
                return flow_fail(e, FLOW_E_PARAM, "quantized activations: row %d column %d is not finite (%g)",
                                 m, k, (double)x[k]);
            float v = fabsf(x[k]);
            if (v > amax) amax = v;
        }
        a->scale[m] = amax / 127.0f;
        float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        for (int k = 0; k < K; k++) {
            float r = rintf(x[k] * inv);
            q[k] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r);
        }
        memset(q + K, 0, (size_t)(Kp - K));
        for (int j = 0; j < G; j++) {
            int32_t s = 0;
            for (int i = 0; i < group; i++) s += q[j * group + i];
            a->gsum[(size_t)m * G + j] = s;
        }
    }
    return 0;
}
