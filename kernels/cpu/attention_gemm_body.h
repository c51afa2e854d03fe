/* attention_gemm_body.h — the register tiles of attention_gemm.c, one body
 * for each vector width.  attention_gemm.c includes it once per width with
 *   AG_V      the vector type (__m256, __m512), AG_W its float lanes
 *   AG_R      query rows per tile (the accumulators: AG_R x 4 vectors)
 *   AG_LOAD, AG_STORE, AG_BCAST, AG_ZERO, AG_FMA (a * b + c, one rounding),
 *   AG_MUL    the intrinsics
 *   AG_FN     the function attribute (target), AG_S the name suffix
 * and gets product_AG_S (both attention products are one: C = scale A B);
 * it undefines them all at its end.  Each lane is one output entry summed
 * from 0 by AG_FMA in index order, then multiplied by scale, the same
 * operations as the scalar twin's fmaf loop, so every width gives the same
 * bits.  Not a header of
 * its own: only attention_gemm.c includes it.
 */
#define AG_CAT2(a, b) a##b
#define AG_CAT(a, b) AG_CAT2(a, b)
#define AG(f) AG_CAT(f, AG_S)
#define AG_AI static inline __attribute__((always_inline))

/* C[R, NV*W] (row stride ldc) = scale * A[R,K] (row stride lda) B[K, NV*W]
 * (row stride ldb) */
AG_AI AG_FN void AG(tile)(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int K,
                          float scale, const int R, const int NV)
{
    AG_V acc[AG_R][4];
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = AG_ZERO();
    for (int k = 0; k < K; k++) {
        AG_V bv[4];
        #pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            bv[v] = AG_LOAD(B + (size_t)k * ldb + v * AG_W);
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            AG_V ab = AG_BCAST(A[(size_t)r * lda + k]);
            #pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[r][v] = AG_FMA(ab, bv[v], acc[r][v]);
        }
    }
    AG_V sc = AG_BCAST(scale);
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            AG_STORE(C + (size_t)r * ldc + v * AG_W, AG_MUL(acc[r][v], sc));
}

/* the whole-vector columns of C[n, cols]: tiles of AG_R rows x 4 vectors,
 * then single vectors, then single rows; returns the columns done (a
 * multiple of W) */
AG_FN static int AG(product)(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int n,
                             int cols, int K, float scale)
{
    int j = 0;
    for (; j + 4 * AG_W <= cols; j += 4 * AG_W) {
        int i = 0;
        for (; i + AG_R <= n; i += AG_R)
            AG(tile)(C + (size_t)i * ldc + j, ldc, A + (size_t)i * lda, lda, B + j, ldb, K, scale, AG_R, 4);
        for (; i < n; i++)
            AG(tile)(C + (size_t)i * ldc + j, ldc, A + (size_t)i * lda, lda, B + j, ldb, K, scale, 1, 4);
    }
    for (; j + AG_W <= cols; j += AG_W) {
        int i = 0;
        for (; i + AG_R <= n; i += AG_R)
            AG(tile)(C + (size_t)i * ldc + j, ldc, A + (size_t)i * lda, lda, B + j, ldb, K, scale, AG_R, 1);
        for (; i < n; i++)
            AG(tile)(C + (size_t)i * ldc + j, ldc, A + (size_t)i * lda, lda, B + j, ldb, K, scale, 1, 1);
    }
    return j;
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
