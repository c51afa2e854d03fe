/* qgemm_int8_epilogue.h — the INT8 float epilogue of one row of 16 channels
 * on zmm, shared by the AVX-512 VNNI (qgemm_vnni.c) and AMX (qgemm_amx.c)
 * kernels: the scalar twin's operations lane-wise, y = (float)acc * (sa[m] *
 * sw[n]) then + bias, or the exact int32 sums when C is given.  x86 only;
 * its target is a subset of both callers', so it inlines into either.
 */
#ifndef FLOW_QGEMM_INT8_EPILOGUE_H
#define FLOW_QGEMM_INT8_EPILOGUE_H

#include "qgemm_internal.h"

#include <immintrin.h>

/* row m, channels [c0, c0 + 16) masked by k; sw: their scales, b: their
 * biases (used when bias), v: the exact sums */
static inline __attribute__((always_inline, target("avx2,avx512f,avx512bw,avx512vl")))
void qgemm_int8_row_z512(const quant_weight *w, const quant_act *a, int bias, int m, int c0, __mmask16 k,
                         __m512 sw, __m512 b, __m512i v, float *Y, size_t ldy, int32_t *C)
{
    if (C) {
        _mm512_mask_storeu_epi32(C + (size_t)m * w->N + c0, k, v);
        return;
    }
    __m512 s = _mm512_mul_ps(_mm512_set1_ps(a->scale[m]), sw);
    __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(v), s);
    if (bias) y = _mm512_add_ps(y, b);
    _mm512_mask_storeu_ps(Y + (size_t)m * ldy + c0, k, y);
}

#endif
