/* qweight.c — prepared (run-time) weights of a quantized Linear: the stored
 * tensors validated and rearranged for the kernels.
 *
 * INT8: wsum[n] = sum_k q[n,k] for the VNNI offset trick; K zero-padded to
 *   Kp so SIMD loops need no tails.
 * Both: the panel layouts (qpack.c), built here once: they are the only
 *   copy kept (the stored tensors are the caller's and may be freed).
 * Validation is what makes a corrupted file an error instead of garbage:
 * -128 in INT8 codes or NF4 levels would break the saturation-free sign
 * trick (quant.h), zeros above 15 are impossible for 4-bit, scales must be
 * finite and non-negative.
 */
#include "qgemm_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *quant_kind_name(quant_kind k)
{
    switch (k) {
    case QUANT_KIND_INT8: return "int8";
    case QUANT_KIND_UINT4: return "uint4";
    case QUANT_KIND_NF4: return "nf4";
    }
    return "?";
}

void quant_weight_release(quant_weight *w)
{
    if (!w) return;
    free(w->wsum);
    free(w->scale);
    free(w->p8);
    free(w->p4);
    free(w->pscale);
    free(w->pzero);
    memset(w, 0, sizeof *w);
}

static int check_scales(const float *s, size_t n, const char *what, flow_err *e)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(s[i]) || s[i] < 0.0f)
            return flow_fail(e, FLOW_E_CORRUPT, "%s: scale %zu is %g (must be finite and >= 0)",
                             what, i, (double)s[i]);
    return 0;
}

int quant_weight_init_int8(quant_weight *w, int N, int K, const int8_t *q, const float *sw,
                           const char *what, flow_err *e)
{
    memset(w, 0, sizeof *w);
    if (N <= 0 || K <= 0)
        return flow_fail(e, FLOW_E_PARAM, "%s: bad int8 weight shape [%d, %d]", what, N, K);
    int rc = check_scales(sw, (size_t)N, what, e);
    if (rc) return rc;
    w->kind = QUANT_KIND_INT8;
    w->N = N; w->K = K;
    w->Kp = (K + QUANT_KPAD - 1) / QUANT_KPAD * QUANT_KPAD;
    w->wsum = malloc((size_t)N * sizeof(int32_t));
    w->scale = malloc((size_t)N * sizeof(float));
    if (!w->wsum || !w->scale) {
        quant_weight_release(w);
        return flow_fail(e, FLOW_E_NOMEM, "%s: cannot allocate int8 weights [%d, %d]", what, N, K);
    }
    memcpy(w->scale, sw, (size_t)N * sizeof(float));
    for (int n = 0; n < N; n++) {
        int32_t s = 0;
        for (int k = 0; k < K; k++) {
            int8_t v = q[(size_t)n * K + k];
            if (v == -128) {
                quant_weight_release(w);
                return flow_fail(e, FLOW_E_CORRUPT,
                                 "%s: int8 weight [%d, %d] is -128 (valid codes are -127..127)", what, n, k);
            }
            s += v;
        }
        w->wsum[n] = s;
    }
    if (qpack_int8(w, q)) {
        quant_weight_release(w);
        return flow_fail(e, FLOW_E_NOMEM, "%s: cannot allocate int8 weight panels [%d, %d]", what, N, K);
    }
    return 0;
}

/* The panel layouts of a 4-bit weight from its validated stored tensors. */
static int pack_4bit(quant_weight *w, const uint8_t *packed, const float *s, const uint8_t *z,
                     const char *what, flow_err *e)
{
    if (!qpack_4bit(w, packed, s, z)) return 0;
    int N = w->N, K = w->K;
    quant_weight_release(w);
    return flow_fail(e, FLOW_E_NOMEM, "%s: cannot allocate 4-bit weight panels [%d, %d]", what, N, K);
}

/* Common part of the two 4-bit kinds: shape and scale checks. */
static int init_4bit(quant_weight *w, quant_kind kind, int N, int K, int group, const float *s,
                     const char *what, flow_err *e)
{
    memset(w, 0, sizeof *w);
    if (N <= 0 || K <= 0)
        return flow_fail(e, FLOW_E_PARAM, "%s: bad 4-bit weight shape [%d, %d]", what, N, K);
    if (group != 32 && group != 64 && group != 128)
        return flow_fail(e, FLOW_E_PARAM, "%s: group size %d is not 32, 64 or 128", what, group);
    if (K % group)
        return flow_fail(e, FLOW_E_PARAM, "%s: group size %d does not divide the input width %d",
                         what, group, K);
    int G = K / group;
    int rc = check_scales(s, (size_t)N * G, what, e);
    if (rc) return rc;
    w->kind = kind;
    w->N = N; w->K = K; w->Kp = K; w->group = group; w->G = G;
    return 0;
}

int quant_weight_init_u4(quant_weight *w, int N, int K, int group, const uint8_t *packed,
                         const float *s, const uint8_t *z, const char *what, flow_err *e)
{
    int rc = init_4bit(w, QUANT_KIND_UINT4, N, K, group, s, what, e);
    if (rc) return rc;
    int G = w->G;
    for (int n = 0; z && n < N; n++)
        for (int j = 0; j < G; j++)
            if (z[(size_t)n * G + j] > 15) {
                int zv = z[(size_t)n * G + j];
                quant_weight_release(w);
                return flow_fail(e, FLOW_E_CORRUPT, "%s: zero point [%d, %d] is %d (valid: 0..15)",
                                 what, n, j, zv);
            }
    return pack_4bit(w, packed, s, z, what, e);
}

int quant_weight_init_nf4(quant_weight *w, int N, int K, int group, const uint8_t *packed,
                          const float *s, const int8_t L[16], const char *what, flow_err *e)
{
    for (int i = 0; i < 16; i++)
        if (L[i] == -128)
            return flow_fail(e, FLOW_E_CORRUPT, "%s: code book level %d is -128 (valid: -127..127)", what, i);
    int rc = init_4bit(w, QUANT_KIND_NF4, N, K, group, s, what, e);
    if (rc) return rc;
    memcpy(w->codebook, L, 16);
    return pack_4bit(w, packed, s, NULL, what, e);
}
