/* qgemm_vnni_body.h — the VNNI microkernels on the panel layouts of quant.h,
 * one body for three instantiations in qgemm_vnni.c, which includes it with
 *   VNNI_TGT    the target attribute ("avx2,avxvnni", "...,avx512vl,avx512vnni",
 *               or "avx2" for the emulation)
 *   VNNI_DP     acc + the u8 x s8 dot of each 32-bit lane (vpdpbusd, or the
 *               exact AVX2 emulation the tests run where no VNNI exists)
 *   VNNI_NAME   the suffix of the generated functions
 * Blocking and float order are those of qgemm_avx2.c (4 rows x 16 channels
 * for INT8, 4 rows x 8 channels for 4-bit, lane-wise rescale), so the
 * results are bit-identical to it and to the scalar twin.  vpdpbusd adds
 * four u8 x s8 products into each int32 lane without saturation:
 *   INT8:  u = a ^ 0x80 = a + 128 (u8), acc = sum u q, then
 *          acc - 128 * wsum[n] = sum a q exactly (wsum padded to Np);
 *   UINT4: codes are already u8: d += dp(codes, a), no int16 stage;
 *   NF4:   levels are signed: dp(|a|, sign(L, a)) with |a| from quant_act.qa.
 * Not a header of its own: only qgemm_vnni.c includes it.
 */
#define VNNI_CAT2(a, b) a##b
#define VNNI_CAT(a, b) VNNI_CAT2(a, b)
#define VN(f) VNNI_CAT(f, VNNI_NAME)
#define VNNI_AI static inline __attribute__((always_inline, target(VNNI_TGT)))

VNNI_AI __m256i VN(vnni_bcast4_)(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* y[n..n+nv) = v (+ bias): the single IEEE add of the scalar twin. */
VNNI_AI void VN(vnni_store8_)(float *y, __m256 v, const float *bias, int n, int nv)
{
    if (nv == 8) {
        if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + n));
        _mm256_storeu_ps(y + n, v);
        return;
    }
    float t[8];
    _mm256_storeu_ps(t, v);
    for (int i = 0; i < nv; i++) y[n + i] = bias ? t[i] + bias[n + i] : t[i];
}

/* ---- INT8 ----------------------------------------------------------------- */

VNNI_AI void VN(vnni_int8_rows_)(const quant_weight *w, const quant_act *a, const float *bias, int m, int mr,
                                 int n, float *Y, size_t ldy, int32_t *C)
{
    const __m256i off = _mm256_set1_epi8((char)0x80);
    const int8_t *x[4];
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) x[r] = a->q + (size_t)(m + (r < mr ? r : 0)) * a->Kp;
    const uint8_t *pw = w->p8 + (size_t)(n / QUANT_P8) * w->Kp * QUANT_P8;
    __m256i acc[4][2];
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int i = 0; i < w->Kp / 4; i++) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(pw + (size_t)i * 64));
        __m256i w1 = _mm256_loadu_si256((const __m256i *)(pw + (size_t)i * 64 + 32));
        _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
            __m256i u = _mm256_xor_si256(VN(vnni_bcast4_)(x[r] + 4 * i), off);
            acc[r][0] = VNNI_DP(acc[r][0], u, w0);
            acc[r][1] = VNNI_DP(acc[r][1], u, w1);
        }
    }
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
        int c0 = n + 8 * h, nv = w->N - c0 < 8 ? w->N - c0 : 8;
        if (nv <= 0) continue;
        __m256i corr = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(w->wsum + c0)), 7);  /* 128 wsum */
        _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
            __m256i v = _mm256_sub_epi32(acc[r][h], corr);
            if (C) {
                int32_t t[8];
                _mm256_storeu_si256((__m256i *)t, v);
                memcpy(C + (size_t)(m + r) * w->N + c0, t, (size_t)nv * sizeof(int32_t));
                continue;
            }
            __m256 s = _mm256_mul_ps(_mm256_set1_ps(a->scale[m + r]), _mm256_loadu_ps(w->scale + c0));
            VN(vnni_store8_)(Y + (size_t)(m + r) * ldy, _mm256_mul_ps(_mm256_cvtepi32_ps(v), s), bias, c0, nv);
        }
    }
}

static __attribute__((target(VNNI_TGT))) void VN(int8_tile_)(const quant_weight *w, const quant_act *a,
                                                            const float *bias, int m0, int m1, int n0, int n1,
                                                            float *Y, size_t ldy, int32_t *C)
{
    for (int n = n0; n < n1; n += QUANT_P8)     /* n0: a multiple of the panel width */
        for (int m = m0; m < m1; m += 4) {
            switch (m1 - m) {
            case 1: VN(vnni_int8_rows_)(w, a, bias, m, 1, n, Y, ldy, C); break;
            case 2: VN(vnni_int8_rows_)(w, a, bias, m, 2, n, Y, ldy, C); break;
            case 3: VN(vnni_int8_rows_)(w, a, bias, m, 3, n, Y, ldy, C); break;
            default: VN(vnni_int8_rows_)(w, a, bias, m, 4, n, Y, ldy, C); break;
            }
        }
}

/* ---- 4-bit ---------------------------------------------------------------- */

VNNI_AI void VN(vnni_u4_rows_)(const quant_weight *w, const quant_act *a, const float *bias, int m, int mr,
                               int nf4, int n, float *Y, size_t ldy)
{
    const int G = w->G, og = w->group / 8, P = n / QUANT_P4;
    const __m256i m0f = _mm256_set1_epi8(0x0f);
    const __m256i cb = nf4 ? _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w->codebook))
                           : _mm256_setzero_si256();
    const uint8_t *pw = w->p4 + (size_t)P * (w->K / 8) * 32;
    const float *ps = w->pscale + (size_t)P * G * QUANT_P4;
    const int32_t *pz = nf4 ? NULL : w->pzero + (size_t)P * G * QUANT_P4;
    const int8_t *x[4];
    const uint8_t *xa[4];
    __m256 t[4];
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
        size_t at = (size_t)(m + (r < mr ? r : 0)) * a->Kp;
        x[r] = a->q + at;
        xa[r] = a->qa + at;
        t[r] = _mm256_setzero_ps();
    }
    for (int j = 0; j < G; j++) {
        __m256i d[4];
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) d[r] = _mm256_setzero_si256();
        for (int o = j * og; o < (j + 1) * og; o++) {
            __m256i wv = _mm256_loadu_si256((const __m256i *)(pw + (size_t)o * 32));
            __m256i lo = _mm256_and_si256(wv, m0f);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(wv, 4), m0f);
            if (nf4) {
                lo = _mm256_shuffle_epi8(cb, lo);
                hi = _mm256_shuffle_epi8(cb, hi);
            }
            _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
                __m256i al = VN(vnni_bcast4_)(x[r] + 8 * o), ah = VN(vnni_bcast4_)(x[r] + 8 * o + 4);
                if (nf4) {
                    d[r] = VNNI_DP(d[r], VN(vnni_bcast4_)(xa[r] + 8 * o), _mm256_sign_epi8(lo, al));
                    d[r] = VNNI_DP(d[r], VN(vnni_bcast4_)(xa[r] + 8 * o + 4), _mm256_sign_epi8(hi, ah));
                } else {
                    d[r] = VNNI_DP(d[r], lo, al);
                    d[r] = VNNI_DP(d[r], hi, ah);
                }
            }
        }
        __m256 s = _mm256_loadu_ps(ps + (size_t)j * QUANT_P4);
        __m256i z = nf4 ? _mm256_setzero_si256() : _mm256_loadu_si256((const __m256i *)(pz + (size_t)j * QUANT_P4));
        _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++) {
            __m256i dr = d[r];
            if (!nf4)
                dr = _mm256_sub_epi32(dr, _mm256_mullo_epi32(z, _mm256_set1_epi32(a->gsum[(size_t)(m + r) * G + j])));
            t[r] = _mm256_add_ps(t[r], _mm256_mul_ps(s, _mm256_cvtepi32_ps(dr)));
        }
    }
    int nv = w->N - n < 8 ? w->N - n : 8;
    _Pragma("GCC unroll 4") for (int r = 0; r < mr; r++)
        VN(vnni_store8_)(Y + (size_t)(m + r) * ldy, _mm256_mul_ps(t[r], _mm256_set1_ps(a->scale[m + r])), bias, n, nv);
}

static __attribute__((target(VNNI_TGT))) void VN(u4_tile_)(const quant_weight *w, const quant_act *a,
                                                          const float *bias, int m0, int m1, int n0, int n1,
                                                          float *Y, size_t ldy, int32_t *C)
{
    (void)C;
    int nf4 = w->kind == QUANT_KIND_NF4;
    for (int n = n0; n < n1; n += QUANT_P4)
        for (int m = m0; m < m1; m += 4) {
            int mr = m1 - m < 4 ? m1 - m : 4;
            if (nf4) {
                if (mr == 4) VN(vnni_u4_rows_)(w, a, bias, m, 4, 1, n, Y, ldy);
                else if (mr == 3) VN(vnni_u4_rows_)(w, a, bias, m, 3, 1, n, Y, ldy);
                else if (mr == 2) VN(vnni_u4_rows_)(w, a, bias, m, 2, 1, n, Y, ldy);
                else VN(vnni_u4_rows_)(w, a, bias, m, 1, 1, n, Y, ldy);
            } else {
                if (mr == 4) VN(vnni_u4_rows_)(w, a, bias, m, 4, 0, n, Y, ldy);
                else if (mr == 3) VN(vnni_u4_rows_)(w, a, bias, m, 3, 0, n, Y, ldy);
                else if (mr == 2) VN(vnni_u4_rows_)(w, a, bias, m, 2, 0, n, Y, ldy);
                else VN(vnni_u4_rows_)(w, a, bias, m, 1, 0, n, Y, ldy);
            }
        }
}

#undef VNNI_AI
#undef VN
#undef VNNI_CAT
#undef VNNI_CAT2
