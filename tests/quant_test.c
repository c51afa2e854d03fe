/* quant_test.c — kernels/quant: every code path bit-exact against the scalar
 * twin (INT8, UINT4 sym/asym, NF4, all group sizes, ragged shapes, the
 * saturation extremes), thread-count invariance, error bounds against an fp32
 * reference, quantize/dequantize bounds per format, GPTQ against RTN on a
 * layer with planted outlier columns, validation of stored tensors, and a
 * scalar emulation of the VNNI offset algebra (the development CPU lacks
 * VNNI; where cpuid reports it, the real instructions are compared too). */
#include "kernels/quant/quant.h"
#include "kernels/quant/qgemm_internal.h"   /* the VNNI body on its AVX2 emulation */
#include "test.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>

static uint64_t rng_state = 12345;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float gauss(void)
{
    double u = ((rnd() >> 11) + 0.5) * (1.0 / 9007199254740992.0), v = (rnd() >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}
static float *randn(size_t n, float sd)
{
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = gauss() * sd;
    return p;
}

/* A quantized weight of the given kind for W [N, K], and its dequantized
 * form (Wd, caller frees) and per-element error bound (ebound [N, K]). */
typedef struct wcase { const char *name; quant_kind kind; int group, sym; } wcase;

static int make_weight(const wcase *c, const float *W, int N, int K, quant_weight *qw, float **Wd,
                       float **eb)
{
    flow_err e;
    *Wd = malloc((size_t)N * K * sizeof(float));
    *eb = malloc((size_t)N * K * sizeof(float));
    int rc;
    if (c->kind == QUANT_KIND_INT8) {
        int8_t *q = malloc((size_t)N * K);
        float *s = malloc((size_t)N * sizeof(float));
        quant_int8_rtn(W, N, K, q, s);
        quant_int8_dequant(q, s, N, K, *Wd);
        for (size_t i = 0; i < (size_t)N * K; i++) (*eb)[i] = s[i / K] * 0.5f;
        rc = quant_weight_init_int8(qw, N, K, q, s, "w", &e);
        free(q); free(s);
    } else {
        int G = K / c->group;
        uint8_t *p = malloc((size_t)N * K / 2), *z = malloc((size_t)N * G);
        float *s = malloc((size_t)N * G * sizeof(float));
        if (c->kind == QUANT_KIND_UINT4) {
            quant_u4_rtn(W, N, K, c->group, c->sym, p, s, z);
            quant_u4_dequant(p, s, z, N, K, c->group, *Wd);
            for (size_t i = 0; i < (size_t)N * K; i++) (*eb)[i] = s[(i / K) * G + (i % K) / c->group] * 0.5f;
            rc = quant_weight_init_u4(qw, N, K, c->group, p, s, c->sym ? NULL : z, "w", &e);
        } else {
            int8_t L[16];
            quant_nf4_fit(W, N, K, c->group, 20, L);
            int gap = 0;
            for (int i = 1; i < 16; i++) if (L[i] - L[i - 1] > gap) gap = L[i] - L[i - 1];
            quant_nf4_rtn(W, N, K, c->group, L, p, s);
            quant_nf4_dequant(p, s, L, N, K, c->group, *Wd);
            for (size_t i = 0; i < (size_t)N * K; i++) (*eb)[i] = s[(i / K) * G + (i % K) / c->group] * gap * 0.5f;
            rc = quant_weight_init_nf4(qw, N, K, c->group, p, s, L, "w", &e);
        }
        free(p); free(z); free(s);
    }
    if (rc) fprintf(stderr, "make_weight %s: %s\n", c->name, e.msg);
    return rc;
}

static const wcase cases[] = {
    { "int8", QUANT_KIND_INT8, 0, 1 },
    { "uint4 sym g32", QUANT_KIND_UINT4, 32, 1 }, { "uint4 asym g32", QUANT_KIND_UINT4, 32, 0 },
    { "uint4 sym g64", QUANT_KIND_UINT4, 64, 1 }, { "uint4 asym g64", QUANT_KIND_UINT4, 64, 0 },
    { "uint4 asym g128", QUANT_KIND_UINT4, 128, 0 }, { "uint4 sym g128", QUANT_KIND_UINT4, 128, 1 },
    { "nf4 g32", QUANT_KIND_NF4, 32, 1 }, { "nf4 g64", QUANT_KIND_NF4, 64, 1 },
    { "nf4 g128", QUANT_KIND_NF4, 128, 1 },
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* Prepared weights keep only the panels: reading them back (the scalar
 * twin's and the exporters' accessors) gives the stored tensors exactly,
 * for N and K off the panel sizes; the bytes held are the panels' (half of
 * keeping the stored layout beside them). */
static void test_panels_round_trip(void)
{
    static const int shapes[][2] = { { 13, 96 }, { 40, 256 }, { 7, 640 } };
    flow_err e;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int N = shapes[si][0], K = shapes[si][1];
        float *W = randn((size_t)N * K, 0.1f);
        int8_t *q = malloc((size_t)N * K);
        float *s = malloc((size_t)N * K * sizeof(float));
        uint8_t *p = malloc((size_t)N * K / 2), *z = malloc((size_t)N * K), *row = malloc((size_t)K / 2);
        quant_weight w;
        quant_int8_rtn(W, N, K, q, s);
        CHECK_OK(quant_weight_init_int8(&w, N, K, q, s, "rt", &e), e);
        int bad = 0;
        for (int n = 0; n < N; n++) {
            bad += quant_weight_scale_at(&w, n, 0) != s[n];
            for (int k = 0; k < K; k++) bad += quant_weight_int8_at(&w, n, k) != q[(size_t)n * K + k];
        }
        CHECK_MSG(bad == 0, "int8 [%d, %d]: %d elements read back wrong from the panels", N, K, bad);
        CHECK(quant_weight_bytes(&w) == (size_t)w.Np * w.Kp + (size_t)w.Np * 8);
        quant_weight_release(&w);
        for (int g = 32; g <= 128; g *= 2) {
            if (K % g) continue;
            int G = K / g;
            for (int kind = 0; kind < 3; kind++) {     /* uint4 asym, uint4 sym, nf4 */
                int8_t L[16];
                if (kind < 2) {
                    quant_u4_rtn(W, N, K, g, kind, p, s, z);
                    CHECK_OK(quant_weight_init_u4(&w, N, K, g, p, s, kind ? NULL : z, "rt", &e), e);
                } else {
                    quant_nf4_fit(W, N, K, g, 5, L);
                    quant_nf4_rtn(W, N, K, g, L, p, s);
                    CHECK_OK(quant_weight_init_nf4(&w, N, K, g, p, s, L, "rt", &e), e);
                }
                bad = 0;
                for (int n = 0; n < N; n++) {
                    quant_weight_4bit_row(&w, n, row);
                    bad += memcmp(row, p + (size_t)n * (K / 2), (size_t)K / 2) != 0;
                    for (int k = 0; k < K; k++)
                        bad += quant_weight_code_at(&w, n, k) != quant_u4_get(p + (size_t)n * (K / 2), g, k);
                    for (int j = 0; j < G; j++) {
                        bad += quant_weight_scale_at(&w, n, j) != s[(size_t)n * G + j];
                        if (kind < 2) bad += quant_weight_zero_at(&w, n, j) != (kind ? 8 : z[(size_t)n * G + j]);
                    }
                }
                CHECK_MSG(bad == 0, "4-bit kind %d g%d [%d, %d]: %d read back wrong from the panels", kind, g, N, K, bad);
                CHECK(quant_weight_bytes(&w) == (size_t)w.Np * K / 2 + (size_t)w.Np * G * (kind < 2 ? 8 : 4));
                quant_weight_release(&w);
            }
        }
        free(W); free(q); free(s); free(p); free(z); free(row);
    }
}

/* Quantized formats: element-wise bounds of quantize/dequantize. */
static void test_format_bounds(void)
{
    int N = 37, K = 256;
    float *W = randn((size_t)N * K, 0.05f);
    for (int i = 0; i < 40; i++) W[rnd() % ((size_t)N * K)] *= 12.0f;   /* outliers */
    for (int k = 0; k < K; k++) W[5 * K + k] = 0.0f;                    /* an all-zero row */
    for (int c = 0; c < NCASES; c++) {
        quant_weight qw; float *Wd, *eb;
        CHECK(make_weight(&cases[c], W, N, K, &qw, &Wd, &eb) == 0);
        int bad = 0; double worst = 0;
        for (size_t i = 0; i < (size_t)N * K; i++) {
            double err = fabs((double)W[i] - Wd[i]);
            if (err > eb[i] * (1 + 1e-5) + 1e-12) bad++;
            if (eb[i] > 0) worst = fmax(worst, err / eb[i]);
        }
        CHECK_MSG(bad == 0, "%s: %d elements beyond the bound", cases[c].name, bad);
        CHECK_MSG(worst > 0.3, "%s: bound never approached (worst %.3f): is it the right bound?", cases[c].name, worst);
        for (int k = 0; k < K; k++) CHECK(Wd[5 * K + k] == 0.0f);
        quant_weight_release(&qw); free(Wd); free(eb);
    }
    /* Activations: |x - sa a| <= sa / 2. */
    quant_act a; quant_act_init(&a);
    flow_err e;
    CHECK_OK(quant_act_quantize(&a, W, N, K, K, 64, &e), e);
    int bad = 0;
    for (int m = 0; m < N; m++)
        for (int k = 0; k < K; k++) {
            float x = W[(size_t)m * K + k], xr = a.scale[m] * a.q[(size_t)m * a.Kp + k];
            if (fabsf(x - xr) > a.scale[m] * 0.5f * (1 + 1e-5f) + 1e-12f) bad++;
            if (a.q[(size_t)m * a.Kp + k] == -128) bad++;
        }
    CHECK(bad == 0);
    float nanrow[64] = { 0 };
    nanrow[7] = NAN;
    CHECK(quant_act_quantize(&a, nanrow, 1, 64, 64, 0, &e) == FLOW_E_PARAM);
    CHECK_CONTAINS(e.msg, "row 0 column 7");
    quant_act_release(&a);
    free(W);
}

/* One case of the bit-exact tests: the quantized weight and activations of
 * X [M,K] and W [N,K], and the scalar twin's outputs y0 [M,N] (with bias b)
 * and, for INT8, its int32 accumulators c0 [M,N]; y1 / c1 are zeroed room
 * for the path under test. */
typedef struct scalar_ref {
    quant_weight qw;
    quant_act a;
    float *Wd, *eb, *y0, *y1;
    int32_t *c0, *c1;       /* NULL unless INT8 */
} scalar_ref;

static int scalar_ref_init(scalar_ref *r, const wcase *c, const float *X, const float *W,
                           const float *b, int M, int N, int K)
{
    memset(r, 0, sizeof *r);
    quant_act_init(&r->a);
    if (make_weight(c, W, N, K, &r->qw, &r->Wd, &r->eb)) return -1;
    flow_err e;
    CHECK_OK(quant_act_quantize(&r->a, X, M, K, K, c->group, &e), e);
    r->y0 = calloc((size_t)M * N, 4);
    r->y1 = calloc((size_t)M * N, 4);
    CHECK_OK(quant_linear_on(QUANT_PATH_SCALAR, &r->qw, &r->a, b, r->y0, N, 1, &e), e);
    if (c->kind == QUANT_KIND_INT8) {
        r->c0 = calloc((size_t)M * N, 4);
        r->c1 = calloc((size_t)M * N, 4);
        CHECK_OK(quant_gemm_s32_on(QUANT_PATH_SCALAR, &r->qw, &r->a, r->c0, 1, &e), e);
    }
    return 0;
}

/* Only the quantized weight (and room y1 for M = 1024 rows' outputs). */
static int scalar_ref_init_weight_only(scalar_ref *r, const wcase *c, const float *W, int N, int K)
{
    memset(r, 0, sizeof *r);
    quant_act_init(&r->a);
    if (make_weight(c, W, N, K, &r->qw, &r->Wd, &r->eb)) return -1;
    r->y1 = calloc((size_t)1024 * N, 4);
    return 0;
}

static void scalar_ref_release(scalar_ref *r)
{
    free(r->Wd); free(r->eb); free(r->y0); free(r->y1); free(r->c0); free(r->c1);
    quant_act_release(&r->a);
    quant_weight_release(&r->qw);
}

/* Every supported SIMD path against the scalar twin, bit for bit. */
static void test_paths_bit_exact(void)
{
    static const int shapes[][3] = {  /* M, N, K */
        { 1, 4, 128 }, { 7, 13, 96 }, { 33, 70, 192 }, { 66, 129, 384 }, { 3, 8, 32 }, { 2, 5, 640 },
    };
    int paths_run = 0;
    for (int p = QUANT_PATH_AVX2; p < QUANT_PATH_COUNT; p++) {
        if (!quant_path_supported((quant_path)p)) {
            printf("quant_test: path %s not supported on this CPU/build: skipped\n", quant_path_name(p));
            continue;
        }
        paths_run++;
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
            float *X = randn((size_t)M * K, 1.0f), *W = randn((size_t)N * K, 0.1f), *b = randn((size_t)N, 0.1f);
            for (int c = 0; c < NCASES; c++) {
                if (cases[c].group && K % cases[c].group) continue;
                scalar_ref r;
                if (scalar_ref_init(&r, &cases[c], X, W, b, M, N, K)) { CHECK(0); scalar_ref_release(&r); continue; }
                flow_err e;
                CHECK_OK(quant_linear_on((quant_path)p, &r.qw, &r.a, b, r.y1, N, 2, &e), e);
                CHECK_MSG(memcmp(r.y0, r.y1, (size_t)M * N * 4) == 0, "path %s, %s, M %d N %d K %d: differs from scalar",
                          quant_path_name(p), cases[c].name, M, N, K);
                if (r.c0) {
                    CHECK_OK(quant_gemm_s32_on((quant_path)p, &r.qw, &r.a, r.c1, 3, &e), e);
                    CHECK(memcmp(r.c0, r.c1, (size_t)M * N * 4) == 0);
                }
                scalar_ref_release(&r);
            }
            free(X); free(W); free(b);
        }
    }
    CHECK(paths_run >= 1 || !quant_path_supported(QUANT_PATH_AVX2));
}

/* quant_linear_x_on (quantize and multiply in one parallel region, work
 * units of row blocks) against the scalar twin's two calls, on every path
 * and thread count, bit for bit: the outputs and the quantized rows left in
 * the activations; rows past one unit of 64 (M > 512) and off the 16-row
 * tiles; a non-finite input reports the first bad row and column, as
 * quant_act_quantize does, whichever thread meets it first. */
static void test_fused_linear(void)
{
    static const int shapes[][3] = { { 1, 4, 128 }, { 37, 70, 192 }, { 600, 24, 64 }, { 700, 264, 128 } };
    for (int p = QUANT_PATH_SCALAR; p < QUANT_PATH_COUNT; p++) {
        if (!quant_path_supported((quant_path)p)) continue;
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
            float *X = randn((size_t)M * K, 1.0f), *W = randn((size_t)N * K, 0.1f), *b = randn((size_t)N, 0.1f);
            for (int c = 0; c < NCASES; c++) {
                if (cases[c].group && K % cases[c].group) continue;
                scalar_ref r;
                if (scalar_ref_init(&r, &cases[c], X, W, b, M, N, K)) { CHECK(0); scalar_ref_release(&r); continue; }
                for (int th = 1; th <= 3; th++) {
                    quant_act a;
                    quant_act_init(&a);
                    flow_err e;
                    memset(r.y1, 0, (size_t)M * N * 4);
                    CHECK_OK(quant_linear_x_on((quant_path)p, &r.qw, &a, X, M, K, b, r.y1, N, th, &e), e);
                    CHECK_MSG(memcmp(r.y0, r.y1, (size_t)M * N * 4) == 0,
                              "fused path %s, %s, M %d N %d K %d, %d threads: differs from scalar",
                              quant_path_name(p), cases[c].name, M, N, K, th);
                    CHECK(a.M == M && a.Kp == r.a.Kp && memcmp(a.q, r.a.q, (size_t)M * a.Kp) == 0
                          && memcmp(a.scale, r.a.scale, (size_t)M * 4) == 0);
                    quant_act_release(&a);
                }
                scalar_ref_release(&r);
            }
            if (M > 100) {                      /* two bad rows in different units */
                X[(size_t)520 * K + 5] = INFINITY;
                X[(size_t)70 * K + 9] = NAN;
                scalar_ref r;
                if (!scalar_ref_init_weight_only(&r, &cases[0], W, N, K)) {
                    for (int th = 1; th <= 3; th++) {
                        quant_act a;
                        quant_act_init(&a);
                        flow_err e;
                        CHECK(quant_linear_x_on((quant_path)p, &r.qw, &a, X, M, K, b, r.y1, N, th, &e) == FLOW_E_PARAM);
                        CHECK_CONTAINS(e.msg, "row 70 column 9");
                        quant_act_release(&a);
                    }
                }
                scalar_ref_release(&r);
            }
            free(X); free(W); free(b);
        }
    }
}

/* The VNNI kernels' body on the exact AVX2 emulation of vpdpbusd (runs on
 * any AVX2 CPU, so the panel walk, the INT8 offset correction, the 4-bit
 * group corrections and the float order of the VNNI paths are checked where
 * the instruction itself does not exist): bit-identical to the scalar twin,
 * the int32 accumulators of INT8 too.  One tile call over the whole output,
 * rows and channels not multiples of the 4 x 16 / 4 x 8 blocks. */
static void test_vnni_body_emulated(void)
{
    if (!quant_path_supported(QUANT_PATH_AVX2) || !qgemm_vnni_emul_kernels.int8_tile) {
        printf("quant_test: VNNI body emulation needs AVX2: skipped\n");
        return;
    }
    static const int shapes[][3] = { { 1, 4, 128 }, { 7, 13, 96 }, { 33, 70, 192 }, { 6, 24, 640 } };
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
        float *X = randn((size_t)M * K, 1.0f), *W = randn((size_t)N * K, 0.1f), *b = randn((size_t)N, 0.1f);
        for (int c = 0; c < NCASES; c++) {
            if (cases[c].group && K % cases[c].group) continue;
            scalar_ref r;
            if (scalar_ref_init(&r, &cases[c], X, W, b, M, N, K)) { CHECK(0); scalar_ref_release(&r); continue; }
            qgemm_tile_fn fn = r.c0 ? qgemm_vnni_emul_kernels.int8_tile : qgemm_vnni_emul_kernels.u4_tile;
            fn(&r.qw, &r.a, b, 0, M, 0, N, r.y1, N, NULL);
            CHECK_MSG(memcmp(r.y0, r.y1, (size_t)M * N * 4) == 0, "VNNI body (emulated), %s, M %d N %d K %d: differs from scalar",
                      cases[c].name, M, N, K);
            if (r.c0) {
                fn(&r.qw, &r.a, NULL, 0, M, 0, N, NULL, 0, r.c1);
                CHECK(memcmp(r.c0, r.c1, (size_t)M * N * 4) == 0);
            }
            /* the body on real AVX-512 VNNI (superseded by the zmm kernels, kept) */
            if (qgemm_avx512vnni_ymm_kernels.int8_tile && quant_path_supported(QUANT_PATH_AVX512VNNI)) {
                qgemm_tile_fn ymm = r.c0 ? qgemm_avx512vnni_ymm_kernels.int8_tile : qgemm_avx512vnni_ymm_kernels.u4_tile;
                memset(r.y1, 0, (size_t)M * N * 4);
                ymm(&r.qw, &r.a, b, 0, M, 0, N, r.y1, N, NULL);
                CHECK_MSG(memcmp(r.y0, r.y1, (size_t)M * N * 4) == 0, "VNNI body (avx512 ymm), %s, M %d N %d K %d: differs",
                          cases[c].name, M, N, K);
            }
            scalar_ref_release(&r);
        }
        free(X); free(W); free(b);
    }
}

/* Activation quantization: every SIMD path and thread count gives the
 * scalar twin's codes, scales and group sums, bit for bit (tails of K that
 * are not a multiple of 8 or 32, zero rows, values on the rounding ties);
 * a non-finite value is reported at its first row and column. */
static void test_act_paths(void)
{
    static const int shapes[][3] = {  /* M, K, group */
        { 1, 64, 0 }, { 5, 13, 0 }, { 9, 100, 0 }, { 300, 384, 64 }, { 70, 256, 32 }, { 40, 1024, 128 },
        { 260, 300, 0 }, { 7, 96, 32 }, { 3, 160, 32 },  /* K % 64 == 32: the AVX-512 row's last group on the AVX2 step */
    };
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int M = shapes[si][0], K = shapes[si][1], g = shapes[si][2];
        float *X = randn((size_t)M * K, 2.0f);
        for (int k = 0; k < K; k++) X[k] = 0.0f;                              /* a zero row */
        if (M > 2) {        /* amax 127, so x * inv = x: halves are rounding ties */
            for (int k = 0; k < K; k++) X[(size_t)2 * K + k] = (float)((k % 9) - 4) * 0.5f;
            X[(size_t)2 * K + K - 1] = 127.0f;
        }
        if (M > 5) {        /* 127 / amax overflows (row 4: zeros) or just does not (row 5) */
            for (int k = 0; k < K; k++) X[(size_t)4 * K + k] = (float)((k % 5) - 2) * 1e-37f;
            for (int k = 0; k < K; k++) X[(size_t)5 * K + k] = (float)((k % 7) - 3) * 1e-30f;
        }
        flow_err e;
        quant_act a0, a1; quant_act_init(&a0); quant_act_init(&a1);
        CHECK_OK(quant_act_quantize_on(QUANT_PATH_SCALAR, &a0, X, M, K, K, g, 1, &e), e);
        int abs_bad = 0;
        for (size_t i = 0; i < (size_t)M * a0.Kp; i++) abs_bad += a0.qa[i] != abs(a0.q[i]);
        CHECK_MSG(abs_bad == 0, "activations M %d K %d: %d of qa are not |q|", M, K, abs_bad);
        if (M > 5) {
            int nz = 0;
            for (int k = 0; k < a0.Kp; k++) nz += a0.q[(size_t)4 * a0.Kp + k] != 0;
            CHECK_MSG(nz == 0 && a0.scale[4] == 0.0f, "a row of amax 2e-37: %d codes not 0, scale %g", nz, a0.scale[4]);
            CHECK_MSG(a0.q[(size_t)5 * a0.Kp + 6] == 127 && a0.scale[5] > 0.0f, "a row of amax 3e-30: code %d",
                      a0.q[(size_t)5 * a0.Kp + 6]);
        }
        for (int p = QUANT_PATH_SCALAR; p < QUANT_PATH_COUNT; p++) {
            if (!quant_path_supported((quant_path)p)) continue;
            for (int th = 1; th <= 3; th += 2) {
                /* poisoned: every code, |code|, scale and sum must be written by this path */
                if (a1.q) memset(a1.q, 0x5a, a1.cap_q);
                if (a1.qa) memset(a1.qa, 0x5a, a1.cap_qa);
                if (a1.scale) memset(a1.scale, 0x5a, a1.cap_m * sizeof(float));
                if (a1.gsum) memset(a1.gsum, 0x5a, a1.cap_g * sizeof(int32_t));
                CHECK_OK(quant_act_quantize_on((quant_path)p, &a1, X, M, K, K, g, th, &e), e);
                CHECK_MSG(memcmp(a0.q, a1.q, (size_t)M * a0.Kp) == 0 && memcmp(a0.qa, a1.qa, (size_t)M * a0.Kp) == 0 &&
                          memcmp(a0.scale, a1.scale, (size_t)M * 4) == 0 &&
                          (!g || memcmp(a0.gsum, a1.gsum, (size_t)M * (K / g) * 4) == 0),
                          "activations on %s, %d threads, M %d K %d group %d differ from scalar",
                          quant_path_name(p), th, M, K, g);
            }
        }
        if (M > 3) {
            X[(size_t)(M - 1) * K + K - 1] = INFINITY;
            X[(size_t)3 * K + K / 2] = NAN;
            for (int p = QUANT_PATH_SCALAR; p < QUANT_PATH_COUNT; p++) {
                if (!quant_path_supported((quant_path)p)) continue;
                char want[64];
                snprintf(want, sizeof want, "row 3 column %d is not finite", K / 2);
                CHECK(quant_act_quantize_on((quant_path)p, &a1, X, M, K, K, g, 3, &e) == FLOW_E_PARAM);
                CHECK_CONTAINS(e.msg, want);
            }
        }
        quant_act_release(&a0); quant_act_release(&a1);
        free(X);
    }
}

/* The saturation extremes of vpmaddubsw: |a| = 128 (a = -128 is set by hand:
 * the quantizer never makes it) against q = +-127, and a = +-127 against
 * codes 15 / levels +-127.  Exact int32 results must match the scalar twin. */
static void test_saturation_extremes(void)
{
    int M = 4, N = 8, K = 256;
    quant_act a; quant_act_init(&a);
    flow_err e;
    float *X = calloc((size_t)M * K, sizeof(float));
    for (int i = 0; i < M * K; i++) X[i] = (i & 1) ? 1.0f : -1.0f;
    CHECK_OK(quant_act_quantize(&a, X, M, K, K, 32, &e), e);
    for (int k = 0; k < K; k++) a.q[k] = -128;               /* row 0 */
    for (int k = 0; k < K; k++) a.q[a.Kp + k] = 127;         /* row 1 */
    for (int j = 0; j < K / 32; j++) { a.gsum[j] = -128 * 32; a.gsum[K / 32 + j] = 127 * 32; }
    quant_act_sync_abs(&a);
    int8_t *q = malloc((size_t)N * K);
    float *s = malloc(N * sizeof(float));
    for (int n = 0; n < N; n++) {
        s[n] = 1.0f;
        for (int k = 0; k < K; k++) q[n * K + k] = (int8_t)((n & 1) ? -127 : 127);
    }
    quant_weight qw;
    CHECK_OK(quant_weight_init_int8(&qw, N, K, q, s, "sat", &e), e);
    int32_t *c0 = calloc((size_t)M * N, 4), *c1 = calloc((size_t)M * N, 4);
    CHECK_OK(quant_gemm_s32_on(QUANT_PATH_SCALAR, &qw, &a, c0, 1, &e), e);
    CHECK(c0[0] == -128 * 127 * K && c0[1] == 128 * 127 * K && c0[N] == 127 * 127 * K);
    for (int p = QUANT_PATH_AVX2; p < QUANT_PATH_COUNT; p++) {
        if (!quant_path_supported((quant_path)p)) continue;
        memset(c1, 0, (size_t)M * N * 4);
        CHECK_OK(quant_gemm_s32_on((quant_path)p, &qw, &a, c1, 1, &e), e);
        CHECK_MSG(memcmp(c0, c1, (size_t)M * N * 4) == 0, "path %s saturates", quant_path_name(p));
    }
    if (qgemm_vnni_emul_kernels.int8_tile && quant_path_supported(QUANT_PATH_AVX2)) {
        memset(c1, 0, (size_t)M * N * 4);
        qgemm_vnni_emul_kernels.int8_tile(&qw, &a, NULL, 0, M, 0, N, NULL, 0, c1);
        CHECK_MSG(memcmp(c0, c1, (size_t)M * N * 4) == 0, "VNNI body (emulated) at the int8 extremes");
    }
    /* 4-bit: codes 15 everywhere, zero 0 (UINT4) and levels +-127 (NF4), for
     * every group size (the int16 sums of the UINT4 kernels span 32 k). */
    uint8_t *pk = malloc((size_t)N * K / 2), *z = calloc((size_t)N * K / 32, 1);
    float *s4 = malloc((size_t)N * K / 32 * sizeof(float));
    memset(pk, 0xff, (size_t)N * K / 2);
    for (int i = 0; i < N * K / 32; i++) s4[i] = 1.0f;
    int8_t L[16] = { -127, -100, -80, -60, -40, -20, -10, 0, 10, 20, 40, 60, 80, 100, 120, 127 };
    for (int kind = 0; kind < 6; kind++) {
        int g = 32 << (kind / 2);
        CHECK_OK(quant_act_quantize(&a, X, M, K, K, g, &e), e);
        for (int k = 0; k < K; k++) { a.q[k] = -128; a.q[a.Kp + k] = 127; }
        for (int j = 0; j < K / g; j++) { a.gsum[j] = -128 * g; a.gsum[K / g + j] = 127 * g; }
        quant_act_sync_abs(&a);
        quant_weight w4;
        if (kind % 2 == 0) CHECK_OK(quant_weight_init_u4(&w4, N, K, g, pk, s4, z, "sat4", &e), e);
        else CHECK_OK(quant_weight_init_nf4(&w4, N, K, g, pk, s4, L, "sat4", &e), e);
        float *y0 = calloc((size_t)M * N, 4), *y1 = calloc((size_t)M * N, 4);
        CHECK_OK(quant_linear_on(QUANT_PATH_SCALAR, &w4, &a, NULL, y0, N, 1, &e), e);
        float want = (float)(kind % 2 == 0 ? -128 * 15 * K : -128 * 127 * K) * a.scale[0];
        CHECK_MSG(y0[0] == want, "4-bit extreme: %g, want %g", (double)y0[0], (double)want);
        for (int p = QUANT_PATH_AVX2; p < QUANT_PATH_COUNT; p++) {
            if (!quant_path_supported((quant_path)p)) continue;
            CHECK_OK(quant_linear_on((quant_path)p, &w4, &a, NULL, y1, N, 1, &e), e);
            CHECK_MSG(memcmp(y0, y1, (size_t)M * N * 4) == 0, "4-bit path %s saturates (%s g%d)", quant_path_name(p),
                      kind % 2 ? "nf4" : "uint4", g);
        }
        if (qgemm_vnni_emul_kernels.u4_tile && quant_path_supported(QUANT_PATH_AVX2)) {
            qgemm_vnni_emul_kernels.u4_tile(&w4, &a, NULL, 0, M, 0, N, y1, N, NULL);
            CHECK_MSG(memcmp(y0, y1, (size_t)M * N * 4) == 0, "VNNI body (emulated) at the 4-bit extremes (%s g%d)",
                      kind % 2 ? "nf4" : "uint4", g);
        }
        free(y0); free(y1);
        quant_weight_release(&w4);
    }
    free(pk); free(z); free(s4); free(c0); free(c1); free(q); free(s); free(X);
    quant_weight_release(&qw); quant_act_release(&a);
}

/* Same bits for 1, 2, 3 and 7 threads. */
static void test_threads(void)
{
    int M = 70, N = 200, K = 256;
    float *X = randn((size_t)M * K, 1.0f), *W = randn((size_t)N * K, 0.1f);
    for (int c = 0; c < NCASES; c += 3) {
        quant_weight qw; float *Wd, *eb;
        if (make_weight(&cases[c], W, N, K, &qw, &Wd, &eb)) { CHECK(0); continue; }
        quant_act a; quant_act_init(&a);
        flow_err e;
        CHECK_OK(quant_act_quantize(&a, X, M, K, K, cases[c].group, &e), e);
        float *y1 = malloc((size_t)M * N * 4), *yt = malloc((size_t)M * N * 4);
        CHECK_OK(quant_linear(&qw, &a, NULL, y1, N, 1, &e), e);
        int th[] = { 2, 3, 7 };
        for (int t = 0; t < 3; t++) {
            CHECK_OK(quant_linear(&qw, &a, NULL, yt, N, th[t], &e), e);
            CHECK_MSG(memcmp(y1, yt, (size_t)M * N * 4) == 0, "%s: %d threads differ", cases[c].name, th[t]);
        }
        free(y1); free(yt); free(Wd); free(eb);
        quant_act_release(&a); quant_weight_release(&qw);
    }
    free(X); free(W);
}

/* Against the fp32 product: |y - x.w| <= sum_k |x_k| eb_k + (sa/2) |w^_k|
 * + float rounding slack (a few ulp of sum |x||w|). */
static void test_float_reference(void)
{
    int M = 9, N = 24, K = 384;
    float *X = randn((size_t)M * K, 1.0f), *W = randn((size_t)N * K, 0.05f), *b = randn(N, 0.1f);
    for (int c = 0; c < NCASES; c++) {
        quant_weight qw; float *Wd, *eb;
        if (make_weight(&cases[c], W, N, K, &qw, &Wd, &eb)) { CHECK(0); continue; }
        quant_act a; quant_act_init(&a);
        flow_err e;
        CHECK_OK(quant_act_quantize(&a, X, M, K, K, cases[c].group, &e), e);
        float *y = malloc((size_t)M * N * 4);
        CHECK_OK(quant_linear(&qw, &a, b, y, N, 2, &e), e);
        int bad = 0; double ratio = 0;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double ref = b[n], bound = 0, mag = 0;
                for (int k = 0; k < K; k++) {
                    double x = X[(size_t)m * K + k], w = W[(size_t)n * K + k];
                    ref += x * w;
                    bound += fabs(x) * eb[(size_t)n * K + k] + 0.5 * a.scale[m] * fabs(Wd[(size_t)n * K + k]);
                    mag += fabs(x * w);
                }
                bound += 1e-5 * (mag + fabs(b[n]));
                double err = fabs(y[(size_t)m * N + n] - ref);
                if (err > bound) bad++;
                ratio = fmax(ratio, err / bound);
            }
        CHECK_MSG(bad == 0, "%s: %d outputs beyond the derived bound (worst ratio %.3f)", cases[c].name, bad, ratio);
        free(y); free(Wd); free(eb);
        quant_act_release(&a); quant_weight_release(&qw);
    }
    free(X); free(W); free(b);
}

/* Output error ||X (W - W^)^T||^2 over the calibration rows. */
static double out_err(const float *X, int n, const float *W, const float *Wq, int N, int K)
{
    double s = 0;
    for (int r = 0; r < n; r++)
        for (int o = 0; o < N; o++) {
            double d = 0;
            for (int k = 0; k < K; k++) d += (double)X[(size_t)r * K + k] * (W[(size_t)o * K + k] - Wq[(size_t)o * K + k]);
            s += d * d;
        }
    return s;
}

/* The calibration Hessian: the blocked AVX2 loop gives the scalar twin's
 * bits (accumulated over two calls, 1 and 3 threads) for widths that are
 * not multiples of its 4 x 12 tiles, row counts around its 128-row chunks,
 * exact zeros (the twin skips x[r][i] == 0: with an infinity in the row,
 * 0 * inf would be NaN) and negative zeros. */
static void test_hessian_paths(void)
{
    static const int shapes[][2] = { { 1, 1 }, { 5, 3 }, { 129, 13 }, { 128, 24 }, { 300, 50 }, { 257, 131 } };
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int n = shapes[si][0], K = shapes[si][1];
        float *X = randn((size_t)n * K, 1.0f);
        for (size_t i = 0; i < (size_t)n * K; i += 7) X[i] = 0.0f;
        for (size_t i = 3; i < (size_t)n * K; i += 11) X[i] = -0.0f;
        if (n > 4 && K > 2) { X[(size_t)4 * K + 1] = 0.0f; X[(size_t)4 * K + 2] = INFINITY; }
        double *H0 = calloc((size_t)K * K, sizeof(double)), *H1 = calloc((size_t)K * K, sizeof(double));
        gptq_hessian_add_on(QUANT_PATH_SCALAR, H0, X, n / 2, K);
        gptq_hessian_add_on(QUANT_PATH_SCALAR, H0, X + (size_t)(n / 2) * K, n - n / 2, K);
        for (int p = QUANT_PATH_AVX2; p < QUANT_PATH_COUNT; p++) {
            if (!quant_path_supported((quant_path)p)) continue;
            for (int th = 1; th <= 3; th += 2) {
                omp_set_num_threads(th);
                memset(H1, 0, (size_t)K * K * sizeof(double));
                gptq_hessian_add_on((quant_path)p, H1, X, n / 2, K);
                gptq_hessian_add_on((quant_path)p, H1, X + (size_t)(n / 2) * K, n - n / 2, K);
                CHECK_MSG(memcmp(H0, H1, (size_t)K * K * sizeof(double)) == 0,
                          "hessian on %s, %d threads, n %d K %d differs from the scalar twin",
                          quant_path_name(p), th, n, K);
            }
        }
        omp_set_num_threads(2);
        if (K > 1) CHECK(H0[1] == H0[K]);                                   /* mirrored */
        free(H0); free(H1); free(X);
    }
}

/* GPTQ vs RTN on a layer whose inputs have correlated features and a few
 * planted outlier columns (x20), for every format. */
static void test_gptq_vs_rtn(void)
{
    int n = 512, N = 48, K = 128, Z = 32;
    float *A = randn((size_t)Z * K, 1.0f), *Zs = randn((size_t)n * Z, 1.0f);
    float *X = malloc((size_t)n * K * sizeof(float));
    for (int r = 0; r < n; r++)
        for (int k = 0; k < K; k++) {
            double v = 0.3 * gauss();
            for (int z = 0; z < Z; z++) v += Zs[(size_t)r * Z + z] * A[(size_t)z * K + k] / sqrt(Z);
            X[(size_t)r * K + k] = (float)v;
        }
    int outl[] = { 3, 40, 77, 101 };
    for (int r = 0; r < n; r++) for (int i = 0; i < 4; i++) X[(size_t)r * K + outl[i]] *= 20.0f;
    float *W = randn((size_t)N * K, 0.05f);
    double *H = calloc((size_t)K * K, sizeof(double));
    gptq_hessian_add(H, X, n / 2, K);
    gptq_hessian_add(H, X + (size_t)(n / 2) * K, n - n / 2, K);     /* accumulates */
    double *H1 = calloc((size_t)K * K, sizeof(double));
    gptq_hessian_add(H1, X, n, K);
    CHECK(memcmp(H, H1, (size_t)K * K * sizeof(double)) == 0);  /* same order of additions */
    free(H1);
    float *Wr = malloc((size_t)N * K * 4), *Wg = malloc((size_t)N * K * 4);
    uint8_t *pk = malloc((size_t)N * K / 2), *z = malloc((size_t)N * K);
    float *s = malloc((size_t)N * K * 4);
    int8_t *q8 = malloc((size_t)N * K);
    int8_t L[16];
    quant_nf4_fit(W, N, K, 32, 20, L);
    struct { const char *name; gptq_params p; } gc[] = {
        { "uint4 asym g32", { 4, 32, 0, NULL, 0.01, 0, 128 } },
        { "uint4 sym g64", { 4, 64, 1, NULL, 0.01, 0, 128 } },
        { "uint4 asym g64 act-order", { 4, 64, 0, NULL, 0.01, 1, 128 } },
        { "uint4 asym g128", { 4, 128, 0, NULL, 0.01, 0, 128 } },
        { "nf4 g64", { 4, 64, 1, L, 0.01, 0, 128 } },
        { "int8", { 8, 0, 1, NULL, 0.01, 0, 128 } },
    };
    for (size_t c = 0; c < sizeof gc / sizeof gc[0]; c++) {
        const gptq_params *p = &gc[c].p;
        flow_err e;
        if (p->bits == 8) {
            quant_int8_rtn(W, N, K, q8, s); quant_int8_dequant(q8, s, N, K, Wr);
            CHECK_OK(gptq_quantize(W, N, K, H, p, q8, NULL, s, NULL, &e), e);
            quant_int8_dequant(q8, s, N, K, Wg);
        } else if (p->codebook) {
            quant_nf4_rtn(W, N, K, p->group, L, pk, s); quant_nf4_dequant(pk, s, L, N, K, p->group, Wr);
            CHECK_OK(gptq_quantize(W, N, K, H, p, NULL, pk, s, NULL, &e), e);
            quant_nf4_dequant(pk, s, L, N, K, p->group, Wg);
        } else {
            quant_u4_rtn(W, N, K, p->group, p->sym, pk, s, z); quant_u4_dequant(pk, s, p->sym ? NULL : z, N, K, p->group, Wr);
            CHECK_OK(gptq_quantize(W, N, K, H, p, NULL, pk, s, z, &e), e);
            quant_u4_dequant(pk, s, p->sym ? NULL : z, N, K, p->group, Wg);
        }
        double er = out_err(X, n, W, Wr, N, K), eg = out_err(X, n, W, Wg, N, K);
        printf("quant_test: gptq %-26s output error %.4g vs RTN %.4g (ratio %.3f)\n", gc[c].name, eg, er, eg / er);
        CHECK_MSG(eg < 0.9 * er, "%s: GPTQ %.4g not below RTN %.4g", gc[c].name, eg, er);
    }
    /* Same codes whatever the thread count. */
    gptq_params p = { 4, 64, 0, NULL, 0.01, 1, 128 };
    flow_err e;
    uint8_t *pk2 = malloc((size_t)N * K / 2);
    omp_set_num_threads(1);
    CHECK_OK(gptq_quantize(W, N, K, H, &p, NULL, pk, s, z, &e), e);
    omp_set_num_threads(3);
    CHECK_OK(gptq_quantize(W, N, K, H, &p, NULL, pk2, s, z, &e), e);
    CHECK(memcmp(pk, pk2, (size_t)N * K / 2) == 0);
    /* Impossible parameters and a singular Hessian. */
    p.group = 48;
    CHECK(gptq_quantize(W, N, K, H, &p, NULL, pk, s, z, &e) == FLOW_E_PARAM);
    CHECK_CONTAINS(e.msg, "group size 48");
    p.group = 64; p.bits = 3;
    CHECK(gptq_quantize(W, N, K, H, &p, NULL, pk, s, z, &e) == FLOW_E_PARAM);
    p.bits = 4; p.damp = -1e-300;
    for (size_t i = 0; i < (size_t)K * K; i++) H[i] = -1.0;   /* not PD */
    for (int i = 0; i < K; i++) H[(size_t)i * K + i] = 0.5;
    p.damp = 0.0;
    CHECK(gptq_quantize(W, N, K, H, &p, NULL, pk, s, z, &e) == FLOW_E_INPUT);
    CHECK_CONTAINS(e.msg, "not positive definite");
    free(pk2); free(A); free(Zs); free(X); free(W); free(H); free(Wr); free(Wg); free(pk); free(z); free(s); free(q8);
}

/* Corrupted stored tensors and impossible shapes are errors naming them. */
static void test_validation(void)
{
    flow_err e;
    quant_weight w;
    int8_t q[2 * 64] = { 0 };
    float s[4] = { 1, 1, 1, 1 };
    q[70] = -128;
    CHECK(quant_weight_init_int8(&w, 2, 64, q, s, "layer.0.query", &e) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(e.msg, "layer.0.query");
    CHECK_CONTAINS(e.msg, "[1, 6]");
    q[70] = 0; s[1] = NAN;
    CHECK(quant_weight_init_int8(&w, 2, 64, q, s, "x", &e) == FLOW_E_CORRUPT);
    uint8_t pk[64] = { 0 }, z[4] = { 0, 3, 16, 0 };
    float s4[4] = { 1, 1, 1, 1 };
    CHECK(quant_weight_init_u4(&w, 2, 64, 32, pk, s4, z, "t", &e) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(e.msg, "zero point [1, 0] is 16");
    CHECK(quant_weight_init_u4(&w, 2, 64, 48, pk, s4, NULL, "t", &e) == FLOW_E_PARAM);
    CHECK(quant_weight_init_u4(&w, 1, 96, 64, pk, s4, NULL, "t", &e) == FLOW_E_PARAM);
    CHECK_CONTAINS(e.msg, "does not divide the input width 96");
    int8_t L[16] = { -128 };
    CHECK(quant_weight_init_nf4(&w, 2, 64, 32, pk, s4, L, "t", &e) == FLOW_E_CORRUPT);
    /* Mismatched activations. */
    CHECK_OK(quant_weight_init_u4(&w, 2, 64, 32, pk, s4, NULL, "t", &e), e);
    quant_act a; quant_act_init(&a);
    float x[64] = { 1 };
    CHECK_OK(quant_act_quantize(&a, x, 1, 64, 64, 64, &e), e);
    float y[2];
    CHECK(quant_linear(&w, &a, NULL, y, 2, 1, &e) == FLOW_E_PARAM);
    CHECK_CONTAINS(e.msg, "group 64");
    quant_act_release(&a); quant_weight_release(&w);
}

/* Path selection: names, forcing, and the refusal of paths this CPU lacks. */
static void test_path_selection(void)
{
    flow_err e;
    quant_path p;
    CHECK(quant_path_parse("avx2", &p, &e) == 0 && p == QUANT_PATH_AVX2);
    CHECK(quant_path_parse("sse9", &p, &e) == FLOW_E_PARAM);
    CHECK_CONTAINS(e.msg, "avx512vnni");
    for (int i = 1; i < QUANT_PATH_COUNT; i++) {
        int rc = quant_path_force((quant_path)i, &e);
        CHECK(quant_path_supported((quant_path)i) ? rc == 0 && (int)quant_path_active() == i : rc == FLOW_E_PARAM);
    }
    CHECK(quant_path_force(QUANT_PATH_AUTO, &e) == 0 && quant_path_active() == quant_path_best());
    setenv("FLOW_QUANT_PATH", "scalar", 1);
    CHECK(quant_path_from_env(&e) == 0 && quant_path_active() == QUANT_PATH_SCALAR);
    setenv("FLOW_QUANT_PATH", "bogus", 1);
    CHECK(quant_path_from_env(&e) == FLOW_E_PARAM);
    CHECK_CONTAINS(e.msg, "FLOW_QUANT_PATH");
    unsetenv("FLOW_QUANT_PATH");
    CHECK(quant_path_from_env(&e) == 0 && quant_path_active() == quant_path_best());
    printf("quant_test: best path here: %s\n", quant_path_name(quant_path_best()));
}

/* vpdpbusd emulated in scalar: each int32 lane += sum of 4 u8 x s8 products.
 * Checks the VNNI INT8 offset algebra (a ^ 0x80, minus 128 * wsum) on random
 * and extreme data, the part of the VNNI kernels this CPU cannot execute. */
static void test_vnni_offset_algebra(void)
{
    int K = 192;
    int8_t a[192], q[192];
    for (int t = 0; t < 200; t++) {
        for (int k = 0; k < K; k++) {
            a[k] = t < 2 ? (int8_t)(t ? 127 : -128) : (int8_t)(rnd() % 256 - 128);
            q[k] = t < 2 ? (int8_t)(t ? -127 : 127) : (int8_t)(rnd() % 255 - 127);
        }
        int32_t lanes[16] = { 0 }, wsum = 0, ref = 0;
        for (int k = 0; k < K; k++) {
            uint8_t u = (uint8_t)(a[k] ^ 0x80);
            lanes[(k / 4) % 16] += (int32_t)u * q[k];      /* vpdpbusd lane k/4 (64-byte zmm) */
            wsum += q[k];
            ref += a[k] * q[k];
        }
        int32_t acc = 0;
        for (int l = 0; l < 16; l++) acc += lanes[l];
        CHECK(acc - 128 * wsum == ref);
    }
}

int main(void)
{
    test_path_selection();
    test_format_bounds();
    test_panels_round_trip();
    test_act_paths();
    test_paths_bit_exact();
    test_fused_linear();
    test_vnni_body_emulated();
    test_saturation_extremes();
    test_threads();
    test_float_reference();
    test_hessian_paths();
    test_gptq_vs_rtn();
    test_validation();
    test_vnni_offset_algebra();
    return test_summary("quant_test");
}
