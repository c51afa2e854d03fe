/* qgemm_vnni.c — the VNNI microkernels: AVX-VNNI (VEX vpdpbusd on ymm:
 * Alder Lake and later, Zen 5) and AVX-512 VNNI (its EVEX ymm form, with
 * AVX512VL: Cascade Lake and later, Zen 4), on the same panel layouts as
 * the AVX2 kernels (quant.h), from one body (qgemm_vnni_body.h).
 *
 * vpdpbusd adds four u8 x s8 products into each int32 lane with no
 * intermediate saturation, so INT8 needs neither the sign trick nor
 * vpmaddwd: one instruction per 32 multiply-adds (the offset trick of the
 * body's header), and UINT4 accumulates straight into int32.
 *
 * The development machine (Zen 3) has neither extension: the two real
 * paths are compiled and dispatched by cpuid, and the tests run them
 * (bit-exact against the scalar twin) only where cpuid reports them.  The
 * body is also instantiated a third time with an exact AVX2 emulation of
 * vpdpbusd (qgemm_vnni_emul_kernels, never dispatched: quant_test runs it
 * here), so its panel walk, offset correction, group corrections and float
 * order are checked on every machine.
 */
#include "qgemm_internal.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && \
    (__GNUC__ >= 11 || (defined(__clang_major__) && __clang_major__ >= 12))
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

#define VNNI_TGT "avx2"
#define VNNI_DP(acc, u, s) dpbusd_emul(acc, u, s)
#define VNNI_NAME emul
#include "qgemm_vnni_body.h"
#undef VNNI_TGT
#undef VNNI_DP
#undef VNNI_NAME

const qgemm_kernels qgemm_avxvnni_kernels = { int8_tile_avxvnni, u4_tile_avxvnni };
const qgemm_kernels qgemm_avx512vnni_kernels = { int8_tile_avx512, u4_tile_avx512 };
const qgemm_kernels qgemm_vnni_emul_kernels = { int8_tile_emul, u4_tile_emul };
const int qgemm_have_avxvnni_build = 1, qgemm_have_avx512vnni_build = 1;

#else
const qgemm_kernels qgemm_avxvnni_kernels = { 0, 0 };
const qgemm_kernels qgemm_avx512vnni_kernels = { 0, 0 };
const qgemm_kernels qgemm_vnni_emul_kernels = { 0, 0 };
const int qgemm_have_avxvnni_build = 0, qgemm_have_avx512vnni_build = 0;
#endif
