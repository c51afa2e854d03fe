/* qpack.c — the panel layouts of prepared weights (quant.h, "Panel
 * layouts"), built once when a quant_weight is made from its stored
 * tensors, so that no kernel call packs, unpacks or allocates.
 *
 * Why panels: the AVX2 microkernels hold 8 output channels per vector and
 * broadcast 4 bytes of an activation row against them (vpmaddubsw on
 * [8 channels x 4 k]); the int32 lanes are then already per channel, so
 * the rescale is lane-wise and there is no horizontal reduction per
 * output.  A panel's bytes are read in order, one vector per k-step.
 */
#include "qgemm_internal.h"

#include <stdlib.h>
#include <string.h>

int qpack_int8(quant_weight *w)
{
    int Np = (w->N + QUANT_P8 - 1) / QUANT_P8 * QUANT_P8, Kq = w->Kp / 4;
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
        const int8_t *row = w->q8 + (size_t)n * w->Kp;
        uint8_t *dst = w->p8 + (size_t)(n / QUANT_P8) * Kq * QUANT_P8 * 4 + (size_t)(n % QUANT_P8) * 4;
        for (int i = 0; i < Kq; i++) memcpy(dst + (size_t)i * QUANT_P8 * 4, row + 4 * i, 4);
    }
    return 0;
}

int qpack_4bit(quant_weight *w)
{
    int N = w->N, K = w->K, G = w->G, g = w->group, Ko = K / 8;
    int Np = (N + QUANT_P4 - 1) / QUANT_P4 * QUANT_P4;
    w->Np = Np;
    w->p4 = calloc((size_t)Np * K / 2, 1);
    w->pscale = calloc((size_t)Np * G, sizeof(float));
    if (w->kind == QUANT_KIND_UINT4) w->pzero = calloc((size_t)Np * G, sizeof(int32_t));
    if (!w->p4 || !w->pscale || (w->kind == QUANT_KIND_UINT4 && !w->pzero)) return -1;
    for (int n = 0; n < N; n++) {
        const uint8_t *row = w->q4 + (size_t)n * (K / 2);
        int P = n / QUANT_P4, c = n % QUANT_P4;
        for (int o = 0; o < Ko; o++)
            for (int b = 0; b < 4; b++) {
                int lo = quant_u4_get(row, g, 8 * o + b), hi = quant_u4_get(row, g, 8 * o + 4 + b);
                w->p4[(((size_t)P * Ko + o) * QUANT_P4 + c) * 4 + b] = (uint8_t)(lo | hi << 4);
            }
        for (int j = 0; j < G; j++) {
            size_t at = ((size_t)P * G + j) * QUANT_P4 + c;
            w->pscale[at] = w->scale[(size_t)j * N + n];
            if (w->pzero) w->pzero[at] = w->zero[(size_t)j * N + n];
        }
    }
    return 0;
}
