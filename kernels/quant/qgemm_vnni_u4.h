/* qgemm_vnni_u4.h — the 4-bit microkernel body shared by the two VNNI
 * paths of qgemm_vnni.c, which include it twice with
 *   VNNI_TGT    the target attribute ("avx2,avxvnni" or "...,avx512vl")
 *   VNNI_DP     the 256-bit u8 x s8 -> int32 dot instruction (vpdpbusd)
 *   VNNI_NAME   the suffix of the generated functions
 * Same blocking and order of float operations as qgemm_avx2.c (2 rows x 4
 * channels, groups reduced with vphaddd, g = 32 two groups per chunk), but
 * vpdpbusd accumulates straight into int32: no int16 stage, no vpmaddwd.
 * NF4 levels are signed, so they use the sign trick: vpdpbusd(|a|, sign(L, a)).
 * Not a header of its own: only qgemm_vnni.c includes it.
 */
#define VNNI_CAT2(a, b) a##b
#define VNNI_CAT(a, b) VNNI_CAT2(a, b)

static inline __attribute__((always_inline, target(VNNI_TGT)))
__m256i VNNI_CAT(vnni_load2x128_, VNNI_NAME)(const int8_t *lo, const int8_t *hi)
{
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)lo)),
                                   _mm_loadu_si128((const __m128i *)hi), 1);
}

static inline __attribute__((always_inline, target(VNNI_TGT)))
__m128 VNNI_CAT(vnni_apply_, VNNI_NAME)(const quant_weight *w, const quant_act *a, int m, int j,
                                        int n, __m128i d, __m128 t)
{
    if (w->kind == QUANT_KIND_UINT4) {
        __m128i z = _mm_loadu_si128((const __m128i *)(w->zero + (size_t)j * w->N + n));
        d = _mm_sub_epi32(d, _mm_mullo_epi32(z, _mm_set1_epi32(a->gsum[(size_t)m * w->G + j])));
    }
    __m128 s = _mm_loadu_ps(w->scale + (size_t)j * w->N + n);
    return _mm_add_ps(t, _mm_mul_ps(s, _mm_cvtepi32_ps(d)));
}

static inline __attribute__((always_inline, target(VNNI_TGT)))
void VNNI_CAT(vnni_u4_block_, VNNI_NAME)(const quant_weight *w, const quant_act *a, int m, int mr,
                                         int nf4, int n, __m128 t[2])
{
    const int g = w->group, h = g / 2;
    const __m256i m0f = _mm256_set1_epi8(0x0f);
    const __m256i cb = nf4 ? _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w->codebook))
                           : _mm256_setzero_si256();
    const int8_t *x[2] = { a->q + (size_t)m * a->Kp, a->q + (size_t)(m + mr - 1) * a->Kp };
    const uint8_t *row[4];
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) row[c] = w->q4 + (size_t)(n + c) * (w->K / 2);
    t[0] = t[1] = _mm_setzero_ps();
    int step = g == 32 ? 2 : 1, jend = g == 32 ? w->G / 2 * 2 : w->G;
    for (int j = 0; j < jend; j += step) {
        __m256i acc[2][4];
        _Pragma("GCC unroll 4") for (int r = 0; r < 2; r++)
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) acc[r][c] = _mm256_setzero_si256();
        for (int i = 0; i < (g == 32 ? 32 : h); i += 32) {
            __m256i alo[2], ahi[2], albs[2], ahbs[2];
            _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
                if (g == 32) {
                    alo[r] = VNNI_CAT(vnni_load2x128_, VNNI_NAME)(x[r] + j * 32, x[r] + j * 32 + 32);
                    ahi[r] = VNNI_CAT(vnni_load2x128_, VNNI_NAME)(x[r] + j * 32 + 16, x[r] + j * 32 + 48);
                } else {
                    alo[r] = _mm256_loadu_si256((const __m256i *)(x[r] + j * g + i));
                    ahi[r] = _mm256_loadu_si256((const __m256i *)(x[r] + j * g + h + i));
                }
                albs[r] = ahbs[r] = _mm256_setzero_si256();
                if (nf4) {
                    albs[r] = _mm256_sign_epi8(alo[r], alo[r]);
                    ahbs[r] = _mm256_sign_epi8(ahi[r], ahi[r]);
                }
            }
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
                __m256i wv = _mm256_loadu_si256((const __m256i *)(row[c] + j * h + i));
                __m256i lo = _mm256_and_si256(wv, m0f);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(wv, 4), m0f);
                if (nf4) {
                    lo = _mm256_shuffle_epi8(cb, lo);
                    hi = _mm256_shuffle_epi8(cb, hi);
                    _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
                        acc[r][c] = VNNI_DP(acc[r][c], albs[r], _mm256_sign_epi8(lo, alo[r]));
                        acc[r][c] = VNNI_DP(acc[r][c], ahbs[r], _mm256_sign_epi8(hi, ahi[r]));
                    }
                } else {
                    _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
                        acc[r][c] = VNNI_DP(acc[r][c], lo, alo[r]);
                        acc[r][c] = VNNI_DP(acc[r][c], hi, ahi[r]);
                    }
                }
            }
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
            __m256i v = _mm256_hadd_epi32(_mm256_hadd_epi32(acc[r][0], acc[r][1]),
                                          _mm256_hadd_epi32(acc[r][2], acc[r][3]));
            __m128i vlo = _mm256_castsi256_si128(v), vhi = _mm256_extracti128_si256(v, 1);
            if (g == 32) {
                t[r] = VNNI_CAT(vnni_apply_, VNNI_NAME)(w, a, m + r, j, n, vlo, t[r]);
                t[r] = VNNI_CAT(vnni_apply_, VNNI_NAME)(w, a, m + r, j + 1, n, vhi, t[r]);
            } else {
                t[r] = VNNI_CAT(vnni_apply_, VNNI_NAME)(w, a, m + r, j, n, _mm_add_epi32(vlo, vhi), t[r]);
            }
        }
    }
    for (int j = jend; j < w->G; j++)           /* odd last group of g = 32 */
        _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
            int32_t d[4];
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) d[c] = vnni_u4_dot_one(w, x[r], row[c], j);
            t[r] = VNNI_CAT(vnni_apply_, VNNI_NAME)(w, a, m + r, j, n,
                                                     _mm_loadu_si128((const __m128i *)d), t[r]);
        }
}

static __attribute__((target(VNNI_TGT)))
void VNNI_CAT(u4_tile_, VNNI_NAME)(const quant_weight *w, const quant_act *a, const float *bias,
                                   int m0, int m1, int n0, int n1, float *Y, size_t ldy, int32_t *C)
{
    int n4 = n0 + (n1 - n0) / 4 * 4;
    for (int n = n0; n < n4; n += 4) {     /* 4 channels stay in L1 across the rows */
        for (int m = m0; m < m1; m += 2) {
            int mr = m1 - m >= 2 ? 2 : 1;
            __m128 t[2];
            int nf4 = w->kind == QUANT_KIND_NF4;
            if (nf4 && mr == 2) VNNI_CAT(vnni_u4_block_, VNNI_NAME)(w, a, m, 2, 1, n, t);
            else if (nf4) VNNI_CAT(vnni_u4_block_, VNNI_NAME)(w, a, m, 1, 1, n, t);
            else if (mr == 2) VNNI_CAT(vnni_u4_block_, VNNI_NAME)(w, a, m, 2, 0, n, t);
            else VNNI_CAT(vnni_u4_block_, VNNI_NAME)(w, a, m, 1, 0, n, t);
            __m128 b = bias ? _mm_loadu_ps(bias + n) : _mm_setzero_ps();
            _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
                __m128 y = _mm_mul_ps(t[r], _mm_set1_ps(a->scale[m + r]));
                if (bias) y = _mm_add_ps(y, b);
                _mm_storeu_ps(Y + (size_t)(m + r) * ldy + n, y);
            }
        }
    }
    if (n4 < n1) qgemm_scalar_kernels.u4_tile(w, a, bias, m0, m1, n4, n1, Y, ldy, C);
}

#undef VNNI_CAT
#undef VNNI_CAT2
