/* qgemm.c — the quantized Linear driver: checks shapes, picks the kernel
 * table of the path, and hands fixed tiles (QUANT_TILE_M rows x
 * QUANT_TILE_N channels) to OpenMP threads.  The tiling does not depend on
 * the thread count and each output element is computed by exactly one
 * microkernel call, so outputs are bit-identical for any number of threads.
 * quant_linear_x_on also quantizes the fp32 input: its work units are
 * blocks of rows, each quantized by the thread that then computes all of
 * its outputs (one parallel region per Linear, no barrier, the fresh rows
 * still in cache); the same tiles, so the same bits as the two calls.
 * Tiles run channel block outermost: the weights of one tile
 * (QUANT_TILE_N rows of K bytes, or K/2 for 4-bit) stay in L2 while the
 * row blocks pass; within a tile each panel is read once from L2 against
 * the tile's QUANT_TILE_M activation rows.
 */
#include "qgemm_internal.h"

#include <omp.h>

static const qgemm_kernels *kernels_of(quant_path p)
{
    switch (p) {
    case QUANT_PATH_SCALAR: return &qgemm_scalar_kernels;
    case QUANT_PATH_AVX2: return &qgemm_avx2_kernels;
    case QUANT_PATH_AVXVNNI: return &qgemm_avxvnni_kernels;
    case QUANT_PATH_AVX512VNNI: return &qgemm_avx512vnni_kernels;
    case QUANT_PATH_AMX: return &qgemm_amx_kernels;
    default: return NULL;
    }
}

static int check(quant_path p, const quant_weight *w, const quant_act *a, flow_err *e)
{
    if (p == QUANT_PATH_AUTO) p = quant_path_best();
    if (!quant_path_supported(p))
        return flow_fail(e, FLOW_E_PARAM, "quantized code path '%s' cannot run here (best here: %s)",
                         quant_path_name(p), quant_path_name(quant_path_best()));
    if (a->K != w->K)
        return flow_fail(e, FLOW_E_PARAM, "quantized linear: activations have width %d, weights [%d, %d]",
                         a->K, w->N, w->K);
    if (w->kind != QUANT_KIND_INT8 && a->group != w->group)
        return flow_fail(e, FLOW_E_PARAM,
                         "quantized linear: activations were quantized with group %d, weights need %d",
                         a->group, w->group);
    return 0;
}

static void run_tiles(const qgemm_kernels *k, const quant_weight *w, const quant_act *a,
                      const float *bias, float *Y, size_t ldy, int32_t *C, int threads)
{
    qgemm_tile_fn fn = w->kind == QUANT_KIND_INT8 ? k->int8_tile : k->u4_tile;
    int tm = (a->M + QUANT_TILE_M - 1) / QUANT_TILE_M;
    int tn = (w->N + QUANT_TILE_N - 1) / QUANT_TILE_N;
    long ntiles = (long)tm * tn;
    if (threads <= 0) threads = omp_get_max_threads();
    if (ntiles < threads) threads = (int)ntiles;
    if (threads < 1) threads = 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (long t = 0; t < ntiles; t++) {
        int bn = (int)(t / tm), bm = (int)(t % tm);
        int m0 = bm * QUANT_TILE_M, m1 = m0 + QUANT_TILE_M < a->M ? m0 + QUANT_TILE_M : a->M;
        int n0 = bn * QUANT_TILE_N, n1 = n0 + QUANT_TILE_N < w->N ? n0 + QUANT_TILE_N : w->N;
        fn(w, a, bias, m0, m1, n0, n1, Y, ldy, C);
    }
}

int quant_linear_on(quant_path p, const quant_weight *w, const quant_act *a, const float *bias,
                    float *Y, size_t ldy, int threads, flow_err *e)
{
    int rc = check(p, w, a, e);
    if (rc) return rc;
    if (ldy < (size_t)w->N)
        return flow_fail(e, FLOW_E_PARAM, "quantized linear: output stride %zu is below N %d", ldy, w->N);
    if (p == QUANT_PATH_AUTO) p = quant_path_best();
    run_tiles(kernels_of(p), w, a, bias, Y, ldy, NULL, threads);
    return 0;
}

int quant_linear(const quant_weight *w, const quant_act *a, const float *bias, float *Y,
                 size_t ldy, int threads, flow_err *e)
{
    return quant_linear_on(quant_path_active(), w, a, bias, Y, ldy, threads, e);
}

/* Rows per work unit of quant_linear_x_on: one tile high where rows are few
 * (work for both threads at batch 1), four where they are many (a unit's
 * 64 quantized rows stay in L2 while the weights pass: 4 row tiles per
 * channel block read from L2). */
static int unit_rows(int M) { return M <= 32 * QUANT_TILE_M ? QUANT_TILE_M : 4 * QUANT_TILE_M; }

/* Rows [r0, r1) of quant_linear_x_on: quantized, then every output
 * channel of them.  Returns the first non-finite row, or -1. */
static int x_unit(quant_path p, qgemm_tile_fn fn, const quant_weight *w, quant_act *a, const float *X,
                  size_t ldx, const float *bias, float *Y, size_t ldy, int r0, int r1)
{
    int bad = qact_rows(p, a, X, ldx, r0, r1);
    if (bad >= 0) return bad;           /* outputs of a failed call are undefined: stop this unit */
    for (int n0 = 0; n0 < w->N; n0 += QUANT_TILE_N) {
        int n1 = n0 + QUANT_TILE_N < w->N ? n0 + QUANT_TILE_N : w->N;
        for (int m0 = r0; m0 < r1; m0 += QUANT_TILE_M)
            fn(w, a, bias, m0, m0 + QUANT_TILE_M < r1 ? m0 + QUANT_TILE_M : r1, n0, n1, Y, ldy, NULL);
    }
    return -1;
}

int quant_linear_x_on(quant_path p, const quant_weight *w, quant_act *a, const float *X, int M,
                      size_t ldx, const float *bias, float *Y, size_t ldy, int threads, flow_err *e)
{
    if (p == QUANT_PATH_AUTO) p = quant_path_best();
    int rc = qact_prepare(p, a, M, w->K, ldx, w->kind == QUANT_KIND_INT8 ? 0 : w->group, e);
    if (rc) return rc;
    rc = check(p, w, a, e);
    if (rc) return rc;
    if (ldy < (size_t)w->N)
        return flow_fail(e, FLOW_E_PARAM, "quantized linear: output stride %zu is below N %d", ldy, w->N);
    const qgemm_kernels *k = kernels_of(p);
    qgemm_tile_fn fn = w->kind == QUANT_KIND_INT8 ? k->int8_tile : k->u4_tile;
    int ur = unit_rows(M), units = (M + ur - 1) / ur;
    if (threads <= 0) threads = omp_get_max_threads();
    if (units < threads) threads = units;
    if (threads < 1) threads = 1;
    int first_bad = M;
    if (threads == 1) {                 /* no team (and none nested in a caller's region) */
        for (int u = 0; u < units && first_bad == M; u++) {
            int bad = x_unit(p, fn, w, a, X, ldx, bias, Y, ldy, u * ur, u * ur + ur < M ? u * ur + ur : M);
            if (bad >= 0) first_bad = bad;
        }
    } else {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) reduction(min : first_bad)
        for (int u = 0; u < units; u++) {
            int bad = x_unit(p, fn, w, a, X, ldx, bias, Y, ldy, u * ur, u * ur + ur < M ? u * ur + ur : M);
            if (bad >= 0 && bad < first_bad) first_bad = bad;
        }
    }
    return first_bad < M ? qact_fail_row(a, X, ldx, first_bad, e) : 0;
}

int quant_linear_x(const quant_weight *w, quant_act *a, const float *X, int M, size_t ldx,
                   const float *bias, float *Y, size_t ldy, int threads, flow_err *e)
{
    return quant_linear_x_on(quant_path_active(), w, a, X, M, ldx, bias, Y, ldy, threads, e);
}

int quant_gemm_s32_on(quant_path p, const quant_weight *w, const quant_act *a, int32_t *C,
                      int threads, flow_err *e)
{
    int rc = check(p, w, a, e);
    if (rc) return rc;
    if (w->kind != QUANT_KIND_INT8)
        return flow_fail(e, FLOW_E_PARAM, "quant_gemm_s32_on: int8 weights only (got %s)",
                         quant_kind_name(w->kind));
    if (p == QUANT_PATH_AUTO) p = quant_path_best();
    run_tiles(kernels_of(p), w, a, NULL, NULL, 0, C, threads);
    return 0;
}
