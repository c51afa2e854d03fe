/* qgemm_amx.c — the INT8 Linear on AMX tiles (Sapphire Rapids and later):
 * tdpbssd multiplies a 16-row x 64-byte tile of activations by a 64 x 16
 * tile of weights into 16 x 16 int32 in one instruction, 16 times the
 * multiply-adds of a zmm vpdpbusd.
 *
 * The INT8 panels of quant.h ([Np/16][Kp/4][16 channels][4 codes]) are
 * already AMX's B layout: 16 consecutive k-quads of a panel (1 KiB) are one
 * tile, rows of 64 bytes.  A call takes 16 rows (fewer at the end: the
 * tiles are configured with that many rows, nothing is read past them) by
 * up to 4 panels (64 channels, 4 accumulator tiles), walks K by 64, stores
 * the exact int32 sums and applies the scalar twin's float epilogue
 * lane-wise, y = (float)acc * (sa[m] * sw[n]) (+ bias): the same IEEE
 * operations, so the same bits as every other path (quant_test).  Signed x
 * signed (tdpbssd), so no offset correction.  4-bit weights keep the
 * AVX-512 VNNI kernels (qgemm_amx_kernels in qgemm_vnni.c).
 *
 * Linux grants the tile state per process on request (cpu_path.c asks
 * before the path can be chosen).
 */
#include "qgemm_internal.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#include "qgemm_int8_epilogue.h"

#include <immintrin.h>
#include <string.h>

#define AMX_TGT "avx2,avx512f,avx512bw,avx512vl,amx-tile,amx-int8"

/* ldtilecfg's 64-byte operand (palette 1) */
typedef struct amx_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_config;

/* tmm0-3: accumulators [rows][16 int32]; tmm4: activations [rows][64 bytes];
 * tmm5-7: weight tiles [16 k-quads][64 bytes] */
static void amx_config_rows(amx_config *c, int rows)
{
    memset(c, 0, sizeof *c);
    c->palette = 1;
    for (int t = 0; t < 8; t++) {
        c->colsb[t] = 64;
        c->rows[t] = (uint8_t)(t < 5 ? rows : 16);
    }
}

/* the epilogue of channels [c0, c0 + 16) for rows [m, m + mr) from acc[r][16] */
static inline __attribute__((always_inline, target(AMX_TGT)))
void amx_store(const quant_weight *w, const quant_act *a, const float *bias, int m, int mr, int c0,
               const int32_t *acc, float *Y, size_t ldy, int32_t *C)
{
    int nv = w->N - c0 < QUANT_P8 ? w->N - c0 : QUANT_P8;
    if (nv <= 0) return;
    __mmask16 k = (__mmask16)((1u << nv) - 1);
    __m512 sw = _mm512_loadu_ps(w->scale + c0);            /* padded to Np */
    __m512 b = bias ? _mm512_maskz_loadu_ps(k, bias + c0) : _mm512_setzero_ps();
    for (int r = 0; r < mr; r++)
        qgemm_int8_row_z512(w, a, bias != NULL, m + r, c0, k, sw, b, _mm512_loadu_si512(acc + r * 16), Y, ldy, C);
}

__attribute__((target(AMX_TGT))) void qgemm_int8_tile_amx(const quant_weight *w, const quant_act *a,
                                                          const float *bias, int m0, int m1, int n0, int n1,
                                                          float *Y, size_t ldy, int32_t *C)
{
    const int Kp = w->Kp;
    const size_t panel = (size_t)Kp * QUANT_P8;             /* bytes of one panel */
    int32_t acc[4][16 * 16] __attribute__((aligned(64)));
    amx_config cfg;
    int cfg_rows = 0;
    /* channels outermost: a group's 4 panels (Kp x 64 bytes) come from L2
     * for every row tile after the first */
    for (int n = n0; n < n1; n += 4 * QUANT_P8) {           /* n0: a multiple of the panel width */
        int np = (n1 - n + QUANT_P8 - 1) / QUANT_P8;
        np = np > 4 ? 4 : np;
        const uint8_t *pw = w->p8 + (size_t)(n / QUANT_P8) * panel;
        for (int m = m0; m < m1; m += 16) {
            int mr = m1 - m < 16 ? m1 - m : 16;
            if (mr != cfg_rows) {
                amx_config_rows(&cfg, mr);
                _tile_loadconfig(&cfg);
                cfg_rows = mr;
            }
            const int8_t *x = a->q + (size_t)m * a->Kp;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int k = 0; k < Kp; k += 64) {
                const uint8_t *pk = pw + (size_t)k * QUANT_P8;     /* k-quad k/4 of the first panel */
                _tile_loadd(4, x + k, a->Kp);
                _tile_loadd(5, pk, 64);
                _tile_dpbssd(0, 4, 5);
                if (np > 1) { _tile_loadd(6, pk + panel, 64); _tile_dpbssd(1, 4, 6); }
                if (np > 2) { _tile_loadd(7, pk + 2 * panel, 64); _tile_dpbssd(2, 4, 7); }
                if (np > 3) { _tile_loadd(5, pk + 3 * panel, 64); _tile_dpbssd(3, 4, 5); }
            }
            _tile_stored(0, acc[0], 64);
            if (np > 1) _tile_stored(1, acc[1], 64);
            if (np > 2) _tile_stored(2, acc[2], 64);
            if (np > 3) _tile_stored(3, acc[3], 64);
            for (int p = 0; p < np; p++)
                amx_store(w, a, bias, m, mr, n + p * QUANT_P8, acc[p], Y, ldy, C);
        }
    }
    _tile_release();
}
const int qgemm_have_amx_build = 1;
#else
const int qgemm_have_amx_build = 0;
#endif
