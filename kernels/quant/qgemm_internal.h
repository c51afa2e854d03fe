/* qgemm_internal.h — the microkernel table shared by qgemm.c (the driver)
 * and the per-path files qgemm_scalar.c, qgemm_avx2.c, qgemm_vnni.c.
 *
 * A tile function computes the outputs of rows [m0, m1) x channels [n0, n1)
 * completely (all of K), following the numerics in quant.h, so that the
 * driver may hand tiles to threads in any order.  For INT8, C != NULL asks
 * for the exact int32 accumulators C[m * N + n] instead of float outputs
 * (benchmarks and the bit-exact tests of the integer part).
 */
#ifndef FLOW_QGEMM_INTERNAL_H
#define FLOW_QGEMM_INTERNAL_H

#include "quant.h"

typedef void (*qgemm_tile_fn)(const quant_weight *w, const quant_act *a, const float *bias,
                              int m0, int m1, int n0, int n1, float *Y, size_t ldy,
                              int32_t *C);

typedef struct qgemm_kernels {
    qgemm_tile_fn int8_tile;    /* QUANT_KIND_INT8 */
    qgemm_tile_fn u4_tile;      /* QUANT_KIND_UINT4 and QUANT_KIND_NF4 */
} qgemm_kernels;

extern const qgemm_kernels qgemm_scalar_kernels;
extern const qgemm_kernels qgemm_avx2_kernels;
/* Present only when the compiler can emit the instructions (see qgemm_vnni.c). */
extern const qgemm_kernels qgemm_avxvnni_kernels;
extern const qgemm_kernels qgemm_avx512vnni_kernels;
extern const int qgemm_have_avxvnni_build, qgemm_have_avx512vnni_build;
/* qgemm_amx.c: the INT8 tile on AMX (built where GCC has the intrinsics);
 * the table pairs it with the zmm VNNI 4-bit kernel (qgemm_vnni.c). */
extern const qgemm_kernels qgemm_amx_kernels;
extern const int qgemm_have_amx_build;
void qgemm_int8_tile_amx(const quant_weight *w, const quant_act *a, const float *bias, int m0, int m1,
                         int n0, int n1, float *Y, size_t ldy, int32_t *C);
/* The VNNI body on an exact AVX2 emulation of vpdpbusd: never dispatched,
 * run by tests/quant_test.c on CPUs without VNNI (qgemm_vnni.c). */
extern const qgemm_kernels qgemm_vnni_emul_kernels;
/* The body's ymm kernels on AVX-512 VNNI, which the zmm kernels of
 * qgemm_avx512vnni_kernels replaced (tests compare both to the scalar twin). */
extern const qgemm_kernels qgemm_avx512vnni_ymm_kernels;

/* qpack.c: builds the panel layouts (p8, padded scale and wsum; p4, pscale,
 * pzero) from the stored tensors (INT8 q [N, K]; 4-bit packed [N, K/2],
 * s and z [N, G], z NULL = 8); -1 when out of memory (the caller releases
 * w and reports). */
int qpack_int8(quant_weight *w, const int8_t *q);
int qpack_4bit(quant_weight *w, const uint8_t *packed, const float *s, const uint8_t *z);

/* act_quant.c, for drivers that quantize rows inside their own parallel
 * region (quant_linear_x_on): qact_prepare checks the shape and path and
 * grows a for M rows of width K (no row written); qact_rows quantizes rows
 * [m0, m1) of X on path p (the same bits as quant_act_quantize_on) and
 * returns the first row holding a non-finite value, or -1; qact_fail_row
 * reports that row's first non-finite column. */
int qact_prepare(quant_path p, quant_act *a, int M, int K, size_t ldx, int group, flow_err *e);
int qact_rows(quant_path p, quant_act *a, const float *X, size_t ldx, int m0, int m1);
int qact_fail_row(const quant_act *a, const float *X, size_t ldx, int m, flow_err *e);

#endif
