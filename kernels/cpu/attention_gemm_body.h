/* attention_gemm_body.h — the register tiles of attention_gemm.c, one body
 * for each vector width.  attention_gemm.c includes it once per width with
 *   AG_V      the vector type (__m256, __m512), AG_W its float lanes
 *   AG_R      query rows per tile (the accumulators: AG_R x 4 vectors)
 *   AG_LOAD, AG_STORE, AG_BCAST, AG_ZERO, AG_FMA (a * b + c, one rounding),
 *   AG_MUL    the intrinsics
 *   AG_FN     the function attribute (target), AG_S the name suffix
 * and gets scores_AG_S and context_AG_S; it undefines them all at its end.  Each lane is one output entry
 * summed from 0 by AG_FMA in index order, the same operations as the scalar
 * twin's fmaf loop, so every width gives the same bits.  Not a header of
 * its own: only attention_gemm.c includes it.
 */
#define AG_CAT2(a, b) a##b
#define AG_CAT(a, b) AG_CAT2(a, b)
#define AG(f) AG_CAT(f, AG_S)
#define AG_AI static inline __attribute__((always_inline))

/* S[R, NV*W] (stride T) = scale * q[R,d] kt[d, NV*W] (kt row stride T) */
AG_AI AG_FN void AG(scores_tile)(float *S, const float *q, int ldq, const float *kt, int T, int d,
                           float scale, const int R, const int NV)
{
    AG_V acc[AG_R][4];
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = AG_ZERO();
    for (int c = 0; c < d; c++) {
        AG_V kv[4];
        #pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            kv[v] = AG_LOAD(kt + (size_t)c * T + v * AG_W);
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            AG_V qb = AG_BCAST(q[(size_t)r * ldq + c]);
            #pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[r][v] = AG_FMA(qb, kv[v], acc[r][v]);
        }
    }
    AG_V sc = AG_BCAST(scale);
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            AG_STORE(S + (size_t)r * T + v * AG_W, AG_MUL(acc[r][v], sc));
}

/* the whole-vector keys of S[n,T]: tiles of AG_R rows x 4 vectors, then
 * single vectors, then single rows; returns the keys done (a multiple of W) */
AG_FN static int AG(scores)(float *S, const float *q, int ldq, const float *kt, int n, int T, int d,
                            float scale)
{
    int j = 0;
    for (; j + 4 * AG_W <= T; j += 4 * AG_W) {
        int i = 0;
        for (; i + AG_R <= n; i += AG_R)
            AG(scores_tile)(S + (size_t)i * T + j, q + (size_t)i * ldq, ldq, kt + j, T, d, scale, AG_R, 4);
        for (; i < n; i++)
            AG(scores_tile)(S + (size_t)i * T + j, q + (size_t)i * ldq, ldq, kt + j, T, d, scale, 1, 4);
    }
    for (; j + AG_W <= T; j += AG_W) {
        int i = 0;
        for (; i + AG_R <= n; i += AG_R)
            AG(scores_tile)(S + (size_t)i * T + j, q + (size_t)i * ldq, ldq, kt + j, T, d, scale, AG_R, 1);
        for (; i < n; i++)
            AG(scores_tile)(S + (size_t)i * T + j, q + (size_t)i * ldq, ldq, kt + j, T, d, scale, 1, 1);
    }
    return j;
}

/* ctx[R, NV*W] (stride ldc) = P[R,T] (stride T) v[T, NV*W] (stride ldv) */
AG_AI AG_FN void AG(context_tile)(float *ctx, int ldc, const float *P, const float *v, int ldv, int T,
                            const int R, const int NV)
{
    AG_V acc[AG_R][4];
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int u = 0; u < NV; u++)
            acc[r][u] = AG_ZERO();
    for (int j = 0; j < T; j++) {
        AG_V vv[4];
        #pragma GCC unroll 4
        for (int u = 0; u < NV; u++)
            vv[u] = AG_LOAD(v + (size_t)j * ldv + u * AG_W);
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            AG_V pb = AG_BCAST(P[(size_t)r * T + j]);
            #pragma GCC unroll 4
            for (int u = 0; u < NV; u++)
                acc[r][u] = AG_FMA(pb, vv[u], acc[r][u]);
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int u = 0; u < NV; u++)
            AG_STORE(ctx + (size_t)r * ldc + u * AG_W, acc[r][u]);
}

/* the whole-vector columns of ctx[n,d]; returns the columns done */
AG_FN static int AG(context)(float *ctx, int ldc, const float *P, int n, const float *v, int ldv,
                             int T, int d)
{
    int c = 0;
    for (; c + 4 * AG_W <= d; c += 4 * AG_W) {
        int i = 0;
        for (; i + AG_R <= n; i += AG_R)
            AG(context_tile)(ctx + (size_t)i * ldc + c, ldc, P + (size_t)i * T, v + c, ldv, T, AG_R, 4);
        for (; i < n; i++)
            AG(context_tile)(ctx + (size_t)i * ldc + c, ldc, P + (size_t)i * T, v + c, ldv, T, 1, 4);
    }
    for (; c + AG_W <= d; c += AG_W) {
        int i = 0;
        for (; i + AG_R <= n; i += AG_R)
            AG(context_tile)(ctx + (size_t)i * ldc + c, ldc, P + (size_t)i * T, v + c, ldv, T, AG_R, 1);
        for (; i < n; i++)
            AG(context_tile)(ctx + (size_t)i * ldc + c, ldc, P + (size_t)i * T, v + c, ldv, T, 1, 1);
    }
    return c;
}

#undef AG_AI
#undef AG
#undef AG_CAT
#undef AG_CAT2
#undef AG_V
#undef AG_W
#undef AG_R
#undef AG_LOAD
#undef AG_STORE
#undef AG_BCAST
#undef AG_ZERO
#undef AG_FMA
#undef AG_MUL
#undef AG_FN
#undef AG_S
