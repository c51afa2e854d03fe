/* quant.h — the one public header of kernels/quant: integer kernels and
 * quantizers for quantized Linear layers (y = x W^T + b, W [N, K] in
 * PyTorch layout [out, in]).
 *
 * What lives in this folder (one concept per file):
 *   quant.h          this manual
 *   cpu_path.c       cpuid detection, the active code path, FLOW_QUANT_PATH
 *   act_quant.c      per-row dynamic quantization of fp32 activations
 *   qweight.c        prepared (run-time) weights: validation, sums
 *   qpack.c          the panel layouts every path reads, built at load, and
 *                    reading them back (stored packing, bytes)
 *   qgemm.c          the Linear driver: fixed tiles, threads, dispatch
 *   qgemm_scalar.c   scalar twins of every microkernel (the reference)
 *   qgemm_avx2.c     AVX2 microkernels (vpmaddubsw / vpmaddwd)
 *   qgemm_vnni.c     AVX-VNNI and AVX-512 VNNI microkernels (vpdpbusd) on the
 *                    panels, from one body (qgemm_vnni_body.h)
 *   qformat.c        formats: int8 per channel, 4-bit group-wise, NF4 code
 *                    books; round-to-nearest quantize and dequantize
 *   gptq.c           GPTQ (error compensation column by column)
 *   gptq_hessian.c   its calibration Hessian X^T X (scalar twin, blocked AVX2)
 *   qgemm_internal.h the microkernel table shared by the qgemm*.c files
 * Dependencies: libc, OpenMP and flow_err/flow_fail of the base utilities;
 * nothing of the engine's graph, the store or stages/.
 *
 * ---- numerics (every path computes the same bits) -------------------------
 * Activations: per row m, symmetric: sa[m] = max_k |x[m,k]| / 127,
 *   a[m,k] = rint(x[m,k] * (127 / amax)) in [-127, 127] (half to even);
 *   a row of zeros gets sa = 0 and a = 0.
 * INT8 weights: per output channel n, symmetric, q[n,k] in [-127, 127]
 *   (-128 is refused on load: see saturation below), scale sw[n]:
 *     acc      = sum_k a[m,k] q[n,k]                      (exact, int32)
 *     y[m,n]   = (float)acc * (sa[m] * sw[n]) + b[n]      (three IEEE ops)
 * 4-bit weights, group size g in {32, 64, 128} along K, G = K / g groups:
 *   UINT4: codes c in [0, 15], scale s[n,j] and zero z[n,j] in [0, 15] per
 *          group; w ~ s * (c - z).  Symmetric = zero fixed at 8.
 *   NF4:   codes index a 16-entry code book of int8 levels L (per tensor,
 *          fitted to the weights, in [-127, 127]); w ~ s * L[c].
 *     d_j    = sum_{k in group j} a[m,k] c[n,k] - z[n,j] * asum[m,j]   (int32)
 *              (NF4: sum a * L[c], no zero term; asum = sum of a over group)
 *     t      = 0; for j = 0..G-1 in order: t = t + s[n,j] * (float)d_j
 *     y[m,n] = t * sa[m] + b[n]
 * The integer parts are exact, and the float parts are the same IEEE
 * operations in the same order on every path (no FMA contraction), so the
 * SIMD paths are bit-identical to the scalar twin, for any thread count.
 *
 * ---- vpmaddubsw saturation (AVX2) ------------------------------------------
 * vpmaddubsw multiplies u8 x s8 and adds adjacent pairs into int16 WITH
 * saturation: 2 * 255 * 127 = 64770 would not fit.  INT8 and NF4 therefore
 * use the sign trick: vpmaddubsw(|a|, sign(q, a)) where |a| <= 128 and
 * |sign(q, a)| <= 127 (q != -128, hence the refusal), so a pair is at most
 * 2 * 128 * 127 = 32512 <= 32767: never saturates, exact.  UINT4 codes are
 * u8 in [0, 15] against s8 activations: pairs <= 2 * 15 * 128 = 3840, so up
 * to 8 vpmaddubsw results (32 k of one channel) are summed in int16 before
 * one vpmaddwd (tests/quant_test.c drives every group size to that bound).
 * VNNI (vpdpbusd) accumulates u8 x s8 straight into int32 with no
 * intermediate saturation; INT8 there uses the offset trick
 * sum (a + 128) q - 128 * sum q with sum q precomputed per channel, and
 * NF4 on zmm (no vpsignb there) sum (L[c] + 128) a - 128 * asum per group.
 *
 * ---- 4-bit packing (the stored layout; the AVX2 panels are below) ---------
 * Row n of a packed tensor is K/2 bytes; group j holds bytes
 * [j*g/2, (j+1)*g/2); byte i of a group holds code i in its low nibble and
 * code i + g/2 in its high nibble (ggml's Q4_0 order: one AND and one shift
 * unpack a register of consecutive codes).
 *
 * ---- threads ---------------------------------------------------------------
 * quant_linear splits the output into fixed tiles (QUANT_TILE_M rows x
 * QUANT_TILE_N channels) independent of the thread count; every output
 * element is computed by one microkernel call, so results do not depend on
 * threads or scheduling.
 *
 * Conventions: int-returning functions give 0 or a negative FLOW_E_* code
 * with e filled (e may be NULL); _init/_release act on caller storage.
 */
#ifndef FLOW_QUANT_H
#define FLOW_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include "engine/base/base.h"   /* flow_err, flow_fail */

/* ------------------------------------------------------------------ */
/* Code paths.                                                         */

typedef enum quant_path {
    QUANT_PATH_AUTO = 0,        /* best the CPU supports */
    QUANT_PATH_SCALAR,          /* portable C: the reference twin */
    QUANT_PATH_AVX2,            /* vpmaddubsw + vpmaddwd, sign trick */
    QUANT_PATH_AVXVNNI,         /* VEX vpdpbusd on ymm (Alder Lake+, Zen 5) */
    QUANT_PATH_AVX512VNNI,      /* EVEX vpdpbusd on zmm (Cascade Lake+, Zen 4) */
    QUANT_PATH_AMX,             /* INT8 on AMX tiles (tdpbssd; Sapphire Rapids+), 4-bit on zmm VNNI */
    QUANT_PATH_COUNT
} quant_path;

/* "auto", "scalar", "avx2", "avxvnni", "avx512vnni", "amx". */
const char *quant_path_name(quant_path p);
/* Parses a name above; FLOW_E_PARAM listing the choices otherwise. */
int quant_path_parse(const char *name, quant_path *out, flow_err *e);
/* 1 when this build has the path AND this CPU (cpuid + OS register state)
 * can run it.  SCALAR and AUTO are always supported. */
int quant_path_supported(quant_path p);
/* The best supported path (what AUTO means on this machine). */
quant_path quant_path_best(void);
/* The path quant_linear uses: set by quant_path_force, else from the
 * environment variable FLOW_QUANT_PATH (read once), else the best. */
quant_path quant_path_active(void);
/* Forces a path for this process (tests, benchmarks).  AUTO returns to the
 * best.  FLOW_E_PARAM when the CPU or build cannot run it: never a silent
 * fallback. */
int quant_path_force(quant_path p, flow_err *e);
/* Reads FLOW_QUANT_PATH now (unset or "auto" = best); FLOW_E_PARAM for an
 * unknown name or a path this CPU cannot run.  quant_path_active calls it
 * once and, on error, stays on SCALAR; commands call it first to report. */
int quant_path_from_env(flow_err *e);

/* ------------------------------------------------------------------ */
/* Activations: per-row dynamic quantization.                          */

#define QUANT_KPAD 64           /* K is zero-padded to a multiple of this */

typedef struct quant_act {
    int M, K, Kp;               /* rows, width, width padded to QUANT_KPAD */
    int group;                  /* group of gsum (0: no sums) */
    int8_t *q;                  /* [M, Kp] in [-127, 127], padding 0 */
    uint8_t *qa;                /* [M, Kp] |q| (the sign trick's unsigned operand,
                                 * made once here instead of per weight panel) */
    float *scale;               /* [M] sa */
    int32_t *gsum;              /* [M, K/group] sum of q per group (4-bit) */
    size_t cap_q, cap_qa, cap_m, cap_g; /* allocated elements (reused across calls) */
} quant_act;

void quant_act_init(quant_act *a);
void quant_act_release(quant_act *a);
/* Quantizes X [M, K] (row stride ldx floats) into a (grown as needed).
 * group > 0 also fills gsum (K % group == 0 required).  FLOW_E_PARAM for
 * bad sizes or a non-finite input (message gives row and column),
 * FLOW_E_NOMEM. */
int quant_act_quantize(quant_act *a, const float *X, int M, int K, size_t ldx,
                       int group, flow_err *e);
/* The same on an explicit path (the scalar twin or the SIMD rows of the
 * others: same bits) with `threads` OpenMP threads over rows (<= 0: the
 * OpenMP default; small inputs run on one).  quant_act_quantize is this on
 * the active path with one thread. */
int quant_act_quantize_on(quant_path p, quant_act *a, const float *X, int M, int K, size_t ldx,
                          int group, int threads, flow_err *e);
/* Refills qa from q: for a caller that wrote codes into q by hand (tests of
 * the extremes, e.g. a = -128, whose |a| is 128). */
void quant_act_sync_abs(quant_act *a);

/* ------------------------------------------------------------------ */
/* Weight formats (storage: what a model file holds).                  */

typedef enum quant_kind {
    QUANT_KIND_INT8 = 1,        /* per channel symmetric int8 */
    QUANT_KIND_UINT4 = 2,       /* group-wise 4-bit, scale + zero */
    QUANT_KIND_NF4 = 3,         /* group-wise 4-bit code book, scale */
} quant_kind;

const char *quant_kind_name(quant_kind k);      /* "int8", "uint4", "nf4" */

/* INT8 round to nearest: sw[n] = max|W[n,:]| / 127, q = rint(W / sw).
 * |W - sw q| <= sw / 2 per element.  W [N, K]; q [N, K]; sw [N]. */
void quant_int8_rtn(const float *W, int N, int K, int8_t *q, float *sw);
void quant_int8_dequant(const int8_t *q, const float *sw, int N, int K, float *W);

/* Group parameters of 4-bit uniform quantization for the values x[0..n):
 * symmetric: s = max|x| / 7, z = 8 (codes 1..15 used);
 * asymmetric: lo = min(min x, 0), hi = max(max x, 0), s = (hi - lo) / 15,
 *   z = clamp(rint(-lo / s), 0, 15).  An all-zero group gets s = 0, z = 8.
 * Codes c = clamp(rint(x / s) + z, 0, 15); |x - s (c - z)| <= s / 2. */
void quant_u4_params(const float *x, int n, int stride, int sym, float *s, uint8_t *z);
static inline int quant_u4_code(float x, float s, int z)
{
    if (s == 0.0f) return z;
    float r = __builtin_rintf(x / s) + (float)z;
    return r < 0.0f ? 0 : r > 15.0f ? 15 : (int)r;
}

/* UINT4 round to nearest.  W [N, K], K % group == 0, group in {32,64,128};
 * packed [N, K/2] (layout above), s [N, K/group], z [N, K/group]. */
void quant_u4_rtn(const float *W, int N, int K, int group, int sym,
                  uint8_t *packed, float *s, uint8_t *z);
void quant_u4_dequant(const uint8_t *packed, const float *s, const uint8_t *z,
                      int N, int K, int group, float *W);

/* 4-bit packing of codes c [N, K] (values 0..15) and back. */
void quant_u4_pack(const uint8_t *codes, int N, int K, int group, uint8_t *packed);
static inline int quant_u4_get(const uint8_t *packed_row, int group, int k)
{
    int j = k / group, i = k % group, h = group / 2;
    uint8_t b = packed_row[j * h + (i % h)];
    return i < h ? (b & 15) : (b >> 4);
}

/* NF4 code book: 16 sorted int8 levels in [-127, 127] with L[0] = -127 and
 * L[15] = 127, fitted by Lloyd iterations (1-D k-means, a fixed count) to the
 * group-normalized weights W / max|group| * 127, starting from the QLoRA NF4
 * levels.  Deterministic. */
void quant_nf4_fit(const float *W, int N, int K, int group, int iters, int8_t L[16]);
/* Nearest level index of v (ties to the lower index). */
int quant_nf4_code(float v, const int8_t L[16]);
/* NF4 round to nearest: s[n,j] = max|group| / 127, c = nearest level of
 * W / s.  Error <= s * (largest gap between adjacent levels) / 2. */
void quant_nf4_rtn(const float *W, int N, int K, int group, const int8_t L[16],
                   uint8_t *packed, float *s);
void quant_nf4_dequant(const uint8_t *packed, const float *s, const int8_t L[16],
                       int N, int K, int group, float *W);

/* ------------------------------------------------------------------ */
/* GPTQ (Frantar et al. 2022), scalar C, double precision.             */

typedef struct gptq_params {
    int bits;                   /* 4 (UINT4 / NF4) or 8 (INT8 per channel) */
    int group;                  /* 4-bit: 32, 64 or 128; 8-bit: 0 (= K) */
    int sym;                    /* UINT4: zero fixed at 8 */
    const int8_t *codebook;     /* 4-bit: NULL = UINT4, else NF4 levels */
    double damp;                /* added to the diagonal: damp * mean(diag H) (0.01) */
    int act_order;              /* columns in order of decreasing diag H */
    int block;                  /* lazy-update block width (128) */
} gptq_params;

/* Accumulates H += X^T X for calibration rows X [n, K] (double, [K, K],
 * full symmetric; gptq_hessian.c): per element, rows in order, a separate
 * multiply and add, rows whose x[r][i] is 0 skipped; the same bits on every
 * path and thread count.  gptq_hessian_add runs on the active path (SCALAR:
 * the twin; any other: the blocked AVX2 loop), _on on an explicit one. */
void gptq_hessian_add(double *H, const float *X, int n, int K);
void gptq_hessian_add_on(quant_path p, double *H, const float *X, int n, int K);

/* Quantizes W [N, K] with Hessian H [K, K] (not modified).  Outputs, by
 * format: bits 8 -> q8 [N, K], s [N]; UINT4 -> packed [N, K/2], s and z
 * [N, K/group]; NF4 -> packed, s.  Unused outputs may be NULL.
 * Group parameters: without act_order, found on the error-compensated
 * weights when the first column of a group is reached (as the reference
 * implementation); with act_order, found beforehand on the original
 * weights of each contiguous group ("static groups"), so that the storage
 * layout stays contiguous.  Columns whose diag H is 0 (never active) are
 * quantized as RTN without compensation.  FLOW_E_PARAM for bad params,
 * FLOW_E_INPUT when H + damping is not positive definite (message says to
 * raise damp), FLOW_E_NOMEM. */
int gptq_quantize(const float *W, int N, int K, const double *H, const gptq_params *p,
                  int8_t *q8, uint8_t *packed, float *s, uint8_t *z, flow_err *e);

/* ------------------------------------------------------------------ */
/* Prepared weights and the quantized Linear.                          */

/* Panel layouts (built once at load by qweight.c / qpack.c, never per
 * call; read by every path: the SIMD microkernels broadcast 4 activation
 * bytes against a vector of 8 channels so that no horizontal sums are
 * needed, the scalar twin indexes them through quant_weight_*_at):
 *   p8, INT8: panels of QUANT_P8 = 16 channels (N padded with zero rows to
 *     Np8); panel P, k-quad i (k = 4i..4i+3) is 64 bytes: channel c's 4
 *     codes at bytes 4c..4c+3.  Byte ((P * Kp/4 + i) * 16 + c) * 4 + b is
 *     q8[16P + c, 4i + b].
 *   p4, 4-bit: panels of QUANT_P4 = 8 channels (N padded to Np4); panel P,
 *     k-octet o (k = 8o..8o+7) is 32 bytes: byte ((P * K/8 + o) * 8 + c) * 4
 *     + b holds code k = 8o + b of channel 8P + c in its low nibble and code
 *     8o + 4 + b in its high nibble.
 *   pscale, pzero, 4-bit: [Np4/8][G][8] (a panel's 8 channels of one group
 *     are one vector); padding channels have scale 0 and zero 0.
 *   scale, INT8: [Np8], padding 0.
 * Nothing else of the weight is kept. */
#define QUANT_P8 16
#define QUANT_P4 8

typedef struct quant_weight {
    quant_kind kind;
    int N, K, Kp;               /* Kp: K padded to QUANT_KPAD (INT8 rows) */
    int group, G;               /* 4-bit: group size and K / group */
    int Np;                     /* N padded to the panel width (16 INT8, 8 4-bit) */
    /* the panels are the only copy of the weights held (no stored layout:
     * half the bytes); every path reads them, the scalar twin through the
     * accessors below */
    uint8_t *p8;                /* INT8 panels [Np/16][Kp/4][16][4] */
    float *scale;               /* INT8: [Np], padding 0 */
    int32_t *wsum;              /* INT8: [Np] sum_k q8 (VNNI offset trick), padding 0 */
    uint8_t *p4;                /* 4-bit panels [Np/8][K/8][8][4] */
    float *pscale;              /* 4-bit: [Np/8][G][8] */
    int32_t *pzero;             /* UINT4: [Np/8][G][8] */
    int8_t codebook[16];        /* NF4 */
} quant_weight;

/* The prepared weight read back element by element (the scalar twin, the
 * exporters): INT8 code q[n, k]; 4-bit code c[n, k] (0..15); the scale of
 * channel n (INT8, j = 0) or of its group j (4-bit); the UINT4 zero. */
static inline int quant_weight_int8_at(const quant_weight *w, int n, int k)
{
    return (int8_t)w->p8[((size_t)(n / QUANT_P8) * (w->Kp / 4) + k / 4) * (QUANT_P8 * 4) + (n % QUANT_P8) * 4 + k % 4];
}
static inline int quant_weight_code_at(const quant_weight *w, int n, int k)
{
    uint8_t b = w->p4[(((size_t)(n / QUANT_P4) * (w->K / 8) + k / 8) * QUANT_P4 + n % QUANT_P4) * 4 + k % 4];
    return k % 8 < 4 ? (b & 15) : (b >> 4);
}
static inline float quant_weight_scale_at(const quant_weight *w, int n, int j)
{
    if (w->kind == QUANT_KIND_INT8) return w->scale[n];
    return w->pscale[((size_t)(n / QUANT_P4) * w->G + j) * QUANT_P4 + n % QUANT_P4];
}
static inline int quant_weight_zero_at(const quant_weight *w, int n, int j)
{
    return w->pzero[((size_t)(n / QUANT_P4) * w->G + j) * QUANT_P4 + n % QUANT_P4];
}
/* Row n of a 4-bit weight in the stored packing (K/2 bytes, "4-bit
 * packing" above). */
void quant_weight_4bit_row(const quant_weight *w, int n, uint8_t *packed_row);
/* Bytes held by the prepared weight (panels, scales, zeros, sums). */
size_t quant_weight_bytes(const quant_weight *w);

/* Builds prepared weights from stored tensors (copied; the inputs may be
 * freed afterwards), validating them: INT8 values != -128, scales finite
 * and >= 0, UINT4 zeros <= 15, NF4 levels != -128, group in {32, 64, 128}
 * dividing K.  FLOW_E_CORRUPT naming `what` (e.g. the tensor name) for bad
 * values, FLOW_E_PARAM for bad sizes, FLOW_E_NOMEM. */
int quant_weight_init_int8(quant_weight *w, int N, int K, const int8_t *q,
                           const float *sw, const char *what, flow_err *e);
int quant_weight_init_u4(quant_weight *w, int N, int K, int group, const uint8_t *packed,
                         const float *s, const uint8_t *z, const char *what, flow_err *e);
int quant_weight_init_nf4(quant_weight *w, int N, int K, int group, const uint8_t *packed,
                          const float *s, const int8_t L[16], const char *what, flow_err *e);
void quant_weight_release(quant_weight *w);

/* Tiles of the driver (qgemm.c): few rows, many channels.  The tile's
 * activation rows (16 x Kp, plus |a|) stay in L1/L2 while its channels'
 * panels pass once, and consecutive tiles share the weight block (256 x K
 * bytes: L2).  Measured against 32 x 64 (one thread, 2026-12-01): int8 at
 * M = 4096 104-116 -> 124-141 GOP/s, UINT4 g64 107-127 -> 134-158; M = 128
 * unchanged (quant_model_bench's shapes). */
#define QUANT_TILE_M 16
#define QUANT_TILE_N 256

/* Y [M, N] (row stride ldy) = the quantized product of a (quantized with
 * group = w->group for 4-bit, any group for INT8) and w, plus bias [N]
 * (may be NULL), on the active path with `threads` OpenMP threads
 * (<= 0: the OpenMP default).  FLOW_E_PARAM for mismatched shapes. */
int quant_linear(const quant_weight *w, const quant_act *a, const float *bias,
                 float *Y, size_t ldy, int threads, flow_err *e);
/* The same on an explicit path (tests, benchmarks); FLOW_E_PARAM when the
 * path is not supported here. */
int quant_linear_on(quant_path p, const quant_weight *w, const quant_act *a,
                    const float *bias, float *Y, size_t ldy, int threads, flow_err *e);

/* Quantizes X [M, K = w->K] (row stride ldx; group = w->group for 4-bit
 * weights, none for INT8) into a and computes quant_linear's Y, in one
 * parallel region (qgemm.c): the same bits as quant_act_quantize_on followed
 * by quant_linear_on, the same errors (a non-finite input names its first
 * row and column; Y is then undefined). */
int quant_linear_x(const quant_weight *w, quant_act *a, const float *X, int M, size_t ldx,
                   const float *bias, float *Y, size_t ldy, int threads, flow_err *e);
int quant_linear_x_on(quant_path p, const quant_weight *w, quant_act *a, const float *X, int M,
                      size_t ldx, const float *bias, float *Y, size_t ldy, int threads, flow_err *e);

/* Integer-only GEMM for benchmarks and tests: C [M, N] int32 =
 * a.q [M, Kp] x w.q8^T (INT8 weights), on path p. */
int quant_gemm_s32_on(quant_path p, const quant_weight *w, const quant_act *a,
                      int32_t *C, int threads, flow_err *e);

#endif
