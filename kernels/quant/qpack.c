/* qpack.c — the panel layouts of prepared weights (quant.h, "Panel
 * layouts"), built once when a quant_weight is made from its stored
 * tensors, so that no kernel call packs, unpacks or allocates; and reading
 * a prepared weight back in the stored packing (exporters) and its bytes.
 *
 * Why panels: the SIMD microkernels hold 8 output channels per vector and
 * broadcast 4 bytes of an activation row against them (vpmaddubsw or
 * vpdpbusd on [8 channels x 4 k]); the int32 lanes are then already per
 * channel, so the rescale is lane-wise and there is no horizontal reduction
 * per output.  A panel's bytes are read in order, one vector per k-step.
 * The panels are the only copy kept (every path, the scalar twin too, reads
 * them), so a prepared weight holds its codes once.
 */
#include "qgemm_internal.h"

#include <stdlib.h>
#include <string.h>

int qpack_int8(quant_weight *w, const int8_t *q)
{
    int Np = (w->N + QUANT_P8 - 1) / QUANT_P8 * QUANT_P8, Kq = w->Kp / 4, K = w->K;
    w->Np = Np;
    w->p8 = calloc((size_t)Np * w->Kp, 1);
    float *sc = calloc((size_t)Np, sizeof(float));
    int32_t *ws = calloc((size_t)Np, sizeof(int32_t));
    if (!w->p8 || !sc || !ws) { free(sc); free(ws); return -1; }
    memcpy(sc, w->scale, (size_t)w->N * sizeof(float));
    memcpy(ws, w->wsum, (size_t)w->N * sizeof(int32_t));
    free(w->scale);
    free(w->wsum);
    w->scale = sc;
    w->wsum = ws;
    for (int n = 0; n < w->N; n++) {
        const int8_t *row = q + (size_t)n * K;
        uint8_t *dst = w->p8 + (size_t)(n / QUANT_P8) * Kq * QUANT_P8 * 4 + (size_t)(n % QUANT_P8) * 4;
        for (int i = 0; i < Kq && 4 * i < K; i++)      /* k >= K stays 0 */
            memcpy(dst + (size_t)i * QUANT_P8 * 4, row + 4 * i, (size_t)(K - 4 * i < 4 ? K - 4 * i : 4));
    }
    return 0;
}

int qpack_4bit(quant_weight *w, const uint8_t *packed, const float *s, const uint8_t *z)
{
    int N = w->N, K = w->K, G = w->G, g = w->group, Ko = K / 8;
    int Np = (N + QUANT_P4 - 1) / QUANT_P4 * QUANT_P4;
    w->Np = Np;
    w->p4 = calloc((size_t)Np * K / 2, 1);
    w->pscale = calloc((size_t)Np * G, sizeof(float));
    if (w->kind == QUANT_KIND_UINT4) w->pzero = calloc((size_t)Np * G, sizeof(int32_t));
    if (!w->p4 || !w->pscale || (w->kind == QUANT_KIND_UINT4 && !w->pzero)) return -1;
    for (int n = 0; n < N; n++) {
        const uint8_t *row = packed + (size_t)n * (K / 2);
        int P = n / QUANT_P4, c = n % QUANT_P4;
        for (int o = 0; o < Ko; o++)
            for (int b = 0; b < 4; b++) {
                int lo = quant_u4_get(row, g, 8 * o + b), hi = quant_u4_get(row, g, 8 * o + 4 + b);
                w->p4[(((size_t)P * Ko + o) * QUANT_P4 + c) * 4 + b] = (uint8_t)(lo | hi << 4);
            }
        for (int j = 0; j < G; j++) {
            size_t at = ((size_t)P * G + j) * QUANT_P4 + c;
            w->pscale[at] = s[(size_t)n * G + j];
            if (w->pzero) w->pzero[at] = z ? z[(size_t)n * G + j] : 8;
        }
    }
    return 0;
}

void quant_weight_4bit_row(const quant_weight *w, int n, uint8_t *packed_row)
{
    int g = w->group, h = g / 2;
    memset(packed_row, 0, (size_t)w->K / 2);
    for (int k = 0; k < w->K; k++) {
        int j = k / g, i = k % g, c = quant_weight_code_at(w, n, k);
        packed_row[j * h + i % h] |= (uint8_t)(i < h ? c : c << 4);
    }
}

size_t quant_weight_bytes(const quant_weight *w)
{
    if (w->kind == QUANT_KIND_INT8)
        return (size_t)w->Np * w->Kp + (size_t)w->Np * (sizeof(float) + sizeof(int32_t));
    return (size_t)w->Np * w->K / 2 + (size_t)w->Np * w->G * (sizeof(float) + (w->pzero ? sizeof(int32_t) : 0));
}
