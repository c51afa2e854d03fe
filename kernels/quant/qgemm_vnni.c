/* qgemm_vnni.c — the VNNI microkernels: AVX-VNNI (VEX vpdpbusd on ymm:
 * Alder Lake and later, Zen 5) and AVX-512 VNNI (Cascade Lake and later,
 * Zen 4), on the same panel layouts as the AVX2 kernels (quant.h): the
 * AVX-VNNI path and AVX-512 NF4 from one ymm body (qgemm_vnni_body.h),
 * AVX-512 INT8 and UINT4 on zmm (below: 16 channels per vpdpbusd).
 *
 * vpdpbusd adds four u8 x s8 products into each int32 lane with no
 * intermediate saturation, so INT8 needs neither the sign trick nor
 * vpmaddwd: one instruction per 32 (ymm) or 64 (zmm) multiply-adds (the
 * offset trick of the body's header), and UINT4 accumulates straight into
 * int32.
 *
 * The paths are compiled and dispatched by cpuid, and the tests run them
 * (bit-exact against the scalar twin) where cpuid reports them: AVX-512
 * VNNI on the Zen 4 machine of 2026-12-02, AVX-VNNI nowhere yet.  The body
 * is also instantiated with an exact AVX2 emulation of vpdpbusd
 * (qgemm_vnni_emul_kernels, never dispatched: quant_test runs it), so its
 * panel walk, offset correction, group corrections and float order are
 * checked on every AVX2 machine.
 */
#include "qgemm_internal.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && \
    (__GNUC__ >= 11 || (defined(__clang_major__) && __clang_major__ >= 12))
#include "qgemm_int8_epilogue.h"

#include <immintrin.h>
#include <string.h>

/* acc + per 32-bit lane sum_{b<4} u[4l+b] * s[4l+b] (u unsigned, s signed
 * bytes), exactly: even and odd bytes widened to int16, two vpmaddwd. */
static inline __attribute__((always_inline, target("avx2")))
__m256i dpbusd_emul(__m256i acc, __m256i u, __m256i s)
{
    const __m256i lo8 = _mm256_set1_epi16(0x00ff);
    __m256i ue = _mm256_and_si256(u, lo8), uo = _mm256_srli_epi16(u, 8);
    __m256i se = _mm256_srai_epi16(_mm256_slli_epi16(s, 8), 8), so = _mm256_srai_epi16(s, 8);
    return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(ue, se), _mm256_madd_epi16(uo, so)));
}

#define VNNI_TGT "avx2,avxvnni"
#define VNNI_DP(acc, u, s) _mm256_dpbusd_avx_epi32(acc, u, s)
#define VNNI_NAME avxvnni
#include "qgemm_vnni_body.h"
#undef VNNI_TGT
#undef VNNI_DP
#undef VNNI_NAME

#define VNNI_TGT "avx2,avx512f,avx512bw,avx512vl,avx512vnni"
#define VNNI_DP(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#define VNNI_NAME avx512
#include "qgemm_vnni_body.h"
#undef VNNI_TGT
#undef VNNI_DP
#undef VNNI_NAME

/* ---- AVX-512 VNNI on zmm, INT8 ---------------------------------------------
 * A panel's k-quad is 64 bytes (16 channels x 4 codes): one zmm.  Each call
 * takes up to 4 rows x 2 panels (32 channels, 8 zmm accumulators): per
 * k-quad 2 panel loads, and per row one broadcast of 4 activation bytes,
 * one xor (the offset trick of the body's header) and 2 vpdpbusd of 64
 * multiply-adds each, half the instructions of the ymm body per
 * multiply-add.  The epilogue is the body's, lane-wise on 16 channels
 * (masked where the channels end): the same IEEE operations, the same bits. */
#define Z512_TGT "avx2,avx512f,avx512bw,avx512vl,avx512vnni"
#define Z512_AI static inline __attribute__((always_inline, target(Z512_TGT)))

Z512_AI __m512i z512_bcast4(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

Z512_AI void z512_int8_rows(const quant_weight *w, const quant_act *a, const float *bias, int m, int mr,
                            int n, int np, float *Y, size_t ldy, int32_t *C)
{
    const __m512i off = _mm512_set1_epi8((char)0x80);
    const int8_t *x[4];
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) x[r] = a->q + (size_t)(m + (r < mr ? r : 0)) * a->Kp;
    const uint8_t *pw = w->p8 + (size_t)(n / QUANT_P8) * w->Kp * QUANT_P8;
    const size_t next = (size_t)w->Kp * QUANT_P8;              /* bytes to the next panel */
    __m512i acc[4][2];
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
    for (int i = 0; i < w->Kp / 4; i++) {
        __m512i w0 = _mm512_loadu_si512(pw + (size_t)i * 64);
        __m512i w1 = np == 2 ? _mm512_loadu_si512(pw + next + (size_t)i * 64) : w0;
        _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
            __m512i u = _mm512_xor_si512(z512_bcast4(x[r] + 4 * i), off);
            acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], u, w0);
            if (np == 2) acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], u, w1);
        }
    }
    _Pragma("GCC unroll 2") for (int h = 0; h < np; h++) {
        int c0 = n + QUANT_P8 * h, nv = w->N - c0 < QUANT_P8 ? w->N - c0 : QUANT_P8;
        if (nv <= 0) continue;
        __mmask16 k = (__mmask16)((1u << nv) - 1);
        /* wsum and scale are padded to Np: whole loads */
        __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512(w->wsum + c0), 7);     /* 128 wsum */
        __m512 sw = _mm512_loadu_ps(w->scale + c0);
        __m512 b = bias ? _mm512_maskz_loadu_ps(k, bias + c0) : _mm512_setzero_ps();
        _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++)
            qgemm_int8_row_z512(w, a, bias != NULL, m + r, c0, k, sw, b, _mm512_sub_epi32(acc[r][h], corr),
                                Y, ldy, C);
    }
}

static __attribute__((target(Z512_TGT))) void int8_tile_z512(const quant_weight *w, const quant_act *a,
                                                             const float *bias, int m0, int m1, int n0, int n1,
                                                             float *Y, size_t ldy, int32_t *C)
{
    for (int n = n0; n < n1; n += 2 * QUANT_P8) {   /* n0: a multiple of the panel width */
        int np = n1 - n > QUANT_P8 ? 2 : 1;
        for (int m = m0; m < m1; m += 4) {
            int mr = m1 - m < 4 ? m1 - m : 4;
#define Z512_ROWS(R) (np == 2 ? z512_int8_rows(w, a, bias, m, R, n, 2, Y, ldy, C) \
                              : z512_int8_rows(w, a, bias, m, R, n, 1, Y, ldy, C))
            switch (mr) {
            case 1: Z512_ROWS(1); break;
            case 2: Z512_ROWS(2); break;
            case 3: Z512_ROWS(3); break;
            default: Z512_ROWS(4); break;
            }
#undef Z512_ROWS
        }
    }
}

/* ---- AVX-512 VNNI on zmm, UINT4 ---------------------------------------------
 * Two 8-channel panels side by side in one zmm (the low 256 bits panel P,
 * the high panel P + 1: 16 channels), up to 8 rows per call: per k-octet
 * two 32-byte loads, the nibble unpack, and per row 2 broadcasts and 2
 * vpdpbusd of 64 multiply-adds; the group corrections and the float order
 * are the body's, lane-wise on 16 channels.  NF4 (no zmm vpsignb for the
 * body's sign trick) takes the offset trick instead: vpshufb maps the codes
 * to the unsigned levels L + 128 (in [1, 255]), so
 *   dp(L[c] + 128, a) - 128 gsum = sum a L[c]   (exact)
 * and the correction is UINT4's with every zero 128. */
Z512_AI __m512i z512_pair256(const void *lo, const void *hi)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)lo)),
                              _mm256_loadu_si256((const __m256i *)hi), 1);
}

#define Z512_U4_ROWS 8      /* rows per call: each unpacked weight zmm serves 8 */
Z512_AI void z512_u4_rows(const quant_weight *w, const quant_act *a, const float *bias, int m, int mr,
                          int nf4, int n, int np, float *Y, size_t ldy)
{
    const int G = w->G, og = w->group / 8, P = n / QUANT_P4, P1 = np == 2 ? P + 1 : P;
    const __m512i m0f = _mm512_set1_epi8(0x0f);
    /* NF4: the 16 levels + 128 as unsigned bytes, in every 128-bit lane */
    const __m512i cb = nf4 ? _mm512_xor_si512(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)w->codebook)),
                                              _mm512_set1_epi8((char)0x80))
                           : _mm512_setzero_si512();
    const uint8_t *pw = w->p4 + (size_t)P * (w->K / 8) * 32, *pw1 = w->p4 + (size_t)P1 * (w->K / 8) * 32;
    const float *ps = w->pscale + (size_t)P * G * QUANT_P4, *ps1 = w->pscale + (size_t)P1 * G * QUANT_P4;
    const int32_t *pz = nf4 ? NULL : w->pzero + (size_t)P * G * QUANT_P4;
    const int32_t *pz1 = nf4 ? NULL : w->pzero + (size_t)P1 * G * QUANT_P4;
    const int8_t *x[Z512_U4_ROWS];
    __m512 t[Z512_U4_ROWS];
    _Pragma("GCC unroll 8") for (int r = 0; r < Z512_U4_ROWS; r++) {
        x[r] = a->q + (size_t)(m + (r < mr ? r : 0)) * a->Kp;
        t[r] = _mm512_setzero_ps();
    }
    for (int j = 0; j < G; j++) {
        __m512i d[Z512_U4_ROWS];
        _Pragma("GCC unroll 8") for (int r = 0; r < Z512_U4_ROWS; r++) d[r] = _mm512_setzero_si512();
        for (int o = j * og; o < (j + 1) * og; o++) {
            __m512i wv = z512_pair256(pw + (size_t)o * 32, pw1 + (size_t)o * 32);
            __m512i lo = _mm512_and_si512(wv, m0f);
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(wv, 4), m0f);
            if (nf4) {
                lo = _mm512_shuffle_epi8(cb, lo);
                hi = _mm512_shuffle_epi8(cb, hi);
            }
            _Pragma("GCC unroll 8") for (int r = 0; r < mr; r++) {
                d[r] = _mm512_dpbusd_epi32(d[r], lo, z512_bcast4(x[r] + 8 * o));
                d[r] = _mm512_dpbusd_epi32(d[r], hi, z512_bcast4(x[r] + 8 * o + 4));
            }
        }
        __m512 s = _mm512_castsi512_ps(z512_pair256(ps + (size_t)j * QUANT_P4, ps1 + (size_t)j * QUANT_P4));
        /* d - z gsum in float, exactly: |d| <= 255 * 128 * 128 (NF4's
         * unsigned levels; UINT4 15 * 128 * 128), |z gsum| <= 128 * 128 * 128,
         * and their difference are integers below 2^24, so the converts, the
         * product and the one rounding of the fused subtract are exact: the
         * integer twin's value, without a vpmulld per row and group */
        __m512 zf = nf4 ? _mm512_set1_ps(128.0f)
                        : _mm512_cvtepi32_ps(z512_pair256(pz + (size_t)j * QUANT_P4, pz1 + (size_t)j * QUANT_P4));
        _Pragma("GCC unroll 8") for (int r = 0; r < mr; r++) {
            __m512 dr = _mm512_fnmadd_ps(zf, _mm512_set1_ps((float)a->gsum[(size_t)(m + r) * G + j]),
                                         _mm512_cvtepi32_ps(d[r]));
            t[r] = _mm512_add_ps(t[r], _mm512_mul_ps(s, dr));
        }
    }
    int nv = w->N - n < 2 * QUANT_P4 ? w->N - n : 2 * QUANT_P4;
    if (np == 1 && nv > QUANT_P4) nv = QUANT_P4;
    __mmask16 k = (__mmask16)((1u << nv) - 1);
    __m512 b = bias ? _mm512_maskz_loadu_ps(k, bias + n) : _mm512_setzero_ps();
    _Pragma("GCC unroll 8") for (int r = 0; r < mr; r++) {
        __m512 y = _mm512_mul_ps(t[r], _mm512_set1_ps(a->scale[m + r]));
        if (bias) y = _mm512_add_ps(y, b);
        _mm512_mask_storeu_ps(Y + (size_t)(m + r) * ldy + n, k, y);
    }
}

static __attribute__((target(Z512_TGT))) void u4_tile_z512(const quant_weight *w, const quant_act *a,
                                                           const float *bias, int m0, int m1, int n0, int n1,
                                                           float *Y, size_t ldy, int32_t *C)
{
    (void)C;
    int nf4 = w->kind == QUANT_KIND_NF4;
    for (int n = n0; n < n1; n += 2 * QUANT_P4) {   /* n0: a multiple of the panel width */
        int np = n1 - n > QUANT_P4 ? 2 : 1;
        for (int m = m0; m < m1; m += Z512_U4_ROWS) {
            int mr = m1 - m < Z512_U4_ROWS ? m1 - m : Z512_U4_ROWS;
#define Z512_ROWS1(R, F) (np == 2 ? z512_u4_rows(w, a, bias, m, R, F, n, 2, Y, ldy) \
                                  : z512_u4_rows(w, a, bias, m, R, F, n, 1, Y, ldy))
#define Z512_ROWS(R) (nf4 ? Z512_ROWS1(R, 1) : Z512_ROWS1(R, 0))
            switch (mr) {
            case 1: Z512_ROWS(1); break;
            case 2: Z512_ROWS(2); break;
            case 3: Z512_ROWS(3); break;
            case 4: Z512_ROWS(4); break;
            case 5: Z512_ROWS(5); break;
            case 6: Z512_ROWS(6); break;
            case 7: Z512_ROWS(7); break;
            default: Z512_ROWS(8); break;
            }
#undef Z512_ROWS
#undef Z512_ROWS1
        }
    }
}

#define VNNI_TGT "avx2"
#define VNNI_DP(acc, u, s) dpbusd_emul(acc, u, s)
#define VNNI_NAME emul
#include "qgemm_vnni_body.h"
#undef VNNI_TGT
#undef VNNI_DP
#undef VNNI_NAME

const qgemm_kernels qgemm_avxvnni_kernels = { int8_tile_avxvnni, u4_tile_avxvnni };
const qgemm_kernels qgemm_avx512vnni_kernels = { int8_tile_z512, u4_tile_z512 };
/* the ymm body on AVX-512 VNNI: kept for the tests' comparison */
const qgemm_kernels qgemm_avx512vnni_ymm_kernels = { int8_tile_avx512, u4_tile_avx512 };
const qgemm_kernels qgemm_vnni_emul_kernels = { int8_tile_emul, u4_tile_emul };
const int qgemm_have_avxvnni_build = 1, qgemm_have_avx512vnni_build = 1;
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
const qgemm_kernels qgemm_amx_kernels = { qgemm_int8_tile_amx, u4_tile_z512 };
#else
const qgemm_kernels qgemm_amx_kernels = { 0, 0 };
#endif

#else
const qgemm_kernels qgemm_avxvnni_kernels = { 0, 0 };
const qgemm_kernels qgemm_avx512vnni_kernels = { 0, 0 };
const qgemm_kernels qgemm_vnni_emul_kernels = { 0, 0 };
const qgemm_kernels qgemm_avx512vnni_ymm_kernels = { 0, 0 };
const qgemm_kernels qgemm_amx_kernels = { 0, 0 };
const int qgemm_have_avxvnni_build = 0, qgemm_have_avx512vnni_build = 0;
#endif
