/* quant_gemm_bench.c — int8 / 4-bit GEMM throughput of kernels/quant against
 * (a) the integer peak of this CPU, measured here by register-only loops of
 * the instructions the int8 kernels need (vpmaddubsw + vpmaddwd + vpaddd
 * per 32 MACs on AVX2, also vpmaddubsw alone; zmm vpdpbusd per 64 MACs
 * where AVX-512 VNNI exists, the peak the avx512vnni path is held to), and (b) Debian oneDNN's s8 x s8
 * -> s32 matmul (when built with it), on the same data, threads and shapes,
 * in one run.  Also checks that oneDNN's int32 results equal ours (exact).
 * Driven by quant_gemm_bench.sh; not a test.
 *
 * usage: quant_gemm_bench [threads] [min_seconds_per_point] [shape index | peak]
 * (peak: only the integer peak loops, one line)
 * GOP/s counts 2 ops (multiply + add) per MAC: 2 M N K per GEMM.
 */
#include "../../kernels/quant/quant.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef FLOW_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu_now(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

/* ---- integer peak: register-only loops in inline asm (so the compiler can
 * neither share products nor spill accumulators).  peak_mix: 8 independent
 * chains of vpmaddubsw -> vpmaddwd(1) -> vpaddd, the exact int32 u8 x s8
 * sequence (32 MACs each); peak_maddubs: 8 independent vpmaddubsw. ------- */
#define PEAK_ITERS 200000L
#define MIX(acc, x, t) "vpmaddubsw %%ymm12, %%ymm" #x ", %%ymm" #t "\n\t" \
    "vpmaddwd %%ymm13, %%ymm" #t ", %%ymm" #t "\n\t" "vpaddd %%ymm" #t ", %%ymm" #acc ", %%ymm" #acc "\n\t"

__attribute__((target("avx2"), noinline)) static long peak_mix(long iters, int32_t *sink)
{
    int32_t out[8];
    __asm__ volatile(
        "vpcmpeqb %%ymm12, %%ymm12, %%ymm12\n\t"          /* s8 -1 */
        "vpabsw %%ymm12, %%ymm13\n\t"                      /* int16 1 */
        "vpabsb %%ymm12, %%ymm8\n\t vpaddb %%ymm8, %%ymm8, %%ymm9\n\t"
        "vpaddb %%ymm8, %%ymm9, %%ymm10\n\t vpaddb %%ymm9, %%ymm9, %%ymm11\n\t"
        "vpxor %%ymm0, %%ymm0, %%ymm0\n\t vpxor %%ymm1, %%ymm1, %%ymm1\n\t"
        "vpxor %%ymm2, %%ymm2, %%ymm2\n\t vpxor %%ymm3, %%ymm3, %%ymm3\n\t"
        "vpxor %%ymm4, %%ymm4, %%ymm4\n\t vpxor %%ymm5, %%ymm5, %%ymm5\n\t"
        "vpxor %%ymm6, %%ymm6, %%ymm6\n\t vpxor %%ymm7, %%ymm7, %%ymm7\n\t"
        "1:\n\t"
        MIX(0, 8, 14) MIX(1, 9, 15) MIX(2, 10, 14) MIX(3, 11, 15)
        MIX(4, 8, 14) MIX(5, 9, 15) MIX(6, 10, 14) MIX(7, 11, 15)
        "dec %0\n\t jnz 1b\n\t"
        "vpaddd %%ymm1, %%ymm0, %%ymm0\n\t vpaddd %%ymm3, %%ymm2, %%ymm2\n\t"
        "vpaddd %%ymm5, %%ymm4, %%ymm4\n\t vpaddd %%ymm7, %%ymm6, %%ymm6\n\t"
        "vpaddd %%ymm2, %%ymm0, %%ymm0\n\t vpaddd %%ymm6, %%ymm4, %%ymm4\n\t"
        "vpaddd %%ymm4, %%ymm0, %%ymm0\n\t vmovdqu %%ymm0, (%1)\n\t vzeroupper\n\t"
        : "+r"(iters) : "r"(out) : "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
          "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    *sink = out[0];
    return PEAK_ITERS * 8 * 32;                 /* MACs */
}

#define MUB(d, x) "vpmaddubsw %%ymm12, %%ymm" #x ", %%ymm" #d "\n\t"
__attribute__((target("avx2"), noinline)) static long peak_maddubs(long iters, int32_t *sink)
{
    int32_t out[8];
    __asm__ volatile(
        "vpcmpeqb %%ymm12, %%ymm12, %%ymm12\n\t vpabsb %%ymm12, %%ymm8\n\t"
        "vpaddb %%ymm8, %%ymm8, %%ymm9\n\t"
        "1:\n\t"
        MUB(0, 8) MUB(1, 9) MUB(2, 8) MUB(3, 9) MUB(4, 8) MUB(5, 9) MUB(6, 8) MUB(7, 9)
        "dec %0\n\t jnz 1b\n\t"
        "vpaddw %%ymm1, %%ymm0, %%ymm0\n\t vmovdqu %%ymm0, (%1)\n\t vzeroupper\n\t"
        : "+r"(iters) : "r"(out) : "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
          "xmm7", "xmm8", "xmm9", "xmm12");
    *sink = out[0];
    return PEAK_ITERS * 8 * 32;
}

/* peak_vnni512: 12 independent chains of zmm vpdpbusd (64 MACs each, the
 * AVX-512 VNNI kernels' instruction; 12 chains cover its latency), for
 * CPUs that have it (quant_path_supported(QUANT_PATH_AVX512VNNI)). */
#define DPB(d) "vpdpbusd %%zmm13, %%zmm12, %%zmm" #d "\n\t"
__attribute__((target("avx512f,avx512vnni"), noinline)) static long peak_vnni512(long iters, int32_t *sink)
{
    int32_t out[16];
    __asm__ volatile(
        "vpternlogd $0xff, %%zmm12, %%zmm12, %%zmm12\n\t vpabsb %%zmm12, %%zmm13\n\t"
        "vpxord %%zmm0, %%zmm0, %%zmm0\n\t vpxord %%zmm1, %%zmm1, %%zmm1\n\t"
        "vpxord %%zmm2, %%zmm2, %%zmm2\n\t vpxord %%zmm3, %%zmm3, %%zmm3\n\t"
        "vpxord %%zmm4, %%zmm4, %%zmm4\n\t vpxord %%zmm5, %%zmm5, %%zmm5\n\t"
        "vpxord %%zmm6, %%zmm6, %%zmm6\n\t vpxord %%zmm7, %%zmm7, %%zmm7\n\t"
        "vpxord %%zmm8, %%zmm8, %%zmm8\n\t vpxord %%zmm9, %%zmm9, %%zmm9\n\t"
        "vpxord %%zmm10, %%zmm10, %%zmm10\n\t vpxord %%zmm11, %%zmm11, %%zmm11\n\t"
        "1:\n\t"
        DPB(0) DPB(1) DPB(2) DPB(3) DPB(4) DPB(5) DPB(6) DPB(7) DPB(8) DPB(9) DPB(10) DPB(11)
        "dec %0\n\t jnz 1b\n\t"
        "vpaddd %%zmm1, %%zmm0, %%zmm0\n\t vpaddd %%zmm11, %%zmm0, %%zmm0\n\t"
        "vmovdqu32 %%zmm0, (%1)\n\t vzeroupper\n\t"
        : "+r"(iters) : "r"(out) : "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
          "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13");
    *sink = out[0];
    return PEAK_ITERS * 12 * 64;
}

typedef struct peak_ctx { long (*fn)(long, int32_t *); int threads; long macs; } peak_ctx;

static void run_peak(void *p)
{
    peak_ctx *c = p;
    long macs = 0;
#pragma omp parallel num_threads(c->threads) reduction(+ : macs)
    {
        int32_t sink;
        macs += c->fn(PEAK_ITERS, &sink);
        if (sink == 42) fprintf(stderr, " ");
    }
    c->macs = macs;
}

/* ---- timing helper ------------------------------------------------------- */
typedef void (*run_fn)(void *ctx);

/* Round-robin timing: every entry runs once per round, rounds repeat for
 * min_s seconds (at least 5), and each keeps its best time.  On a machine
 * shared with other jobs the best times are the runs that got a core, and
 * alternating keeps the entries' chances equal. */
#define MAXRUN 10
/* cbest: the best process CPU time of each entry (what a run costs the
 * machine's cores when other jobs share them; equals wall x threads on an
 * idle machine). */
static void time_round_robin(int n, run_fn *fn, void **ctx, double *best, double *cbest, double min_s)
{
    for (int i = 0; i < n; i++) { fn[i](ctx[i]); best[i] = cbest[i] = 1e30; }
    double start = now();
    for (int round = 0; round < 5 || now() - start < min_s; round++)
        for (int i = 0; i < n; i++) {
            double t0 = now(), c0 = cpu_now();
            fn[i](ctx[i]);
            double dt = now() - t0, dc = cpu_now() - c0;
            if (dt < best[i]) best[i] = dt;
            if (dc < cbest[i]) cbest[i] = dc;
        }
}

typedef struct ctx {
    quant_weight *w;
    quant_act *a;
    int32_t *C;
    float *Y;
    int threads;
    quant_path path;
#ifdef FLOW_HAVE_DNNL
    dnnl_primitive_t prim;
    dnnl_stream_t stream;
    dnnl_exec_arg_t args[3];
    int32_t *Cd;                /* oneDNN's int32 output */
#endif
} ctx;

static void run_ours_s32(void *p)
{
    ctx *c = p;
    flow_err e;
    if (quant_gemm_s32_on(c->path, c->w, c->a, c->C, c->threads, &e)) { fprintf(stderr, "%s\n", e.msg); exit(1); }
}

static void run_ours_linear(void *p)
{
    ctx *c = p;
    flow_err e;
    if (quant_linear_on(c->path, c->w, c->a, NULL, c->Y, c->w->N, c->threads, &e)) { fprintf(stderr, "%s\n", e.msg); exit(1); }
}

#ifdef FLOW_HAVE_DNNL
static void run_dnnl(void *p)
{
    ctx *c = p;
    if (dnnl_primitive_execute(c->prim, c->stream, 3, c->args) != dnnl_success) { fprintf(stderr, "dnnl execute failed\n"); exit(1); }
    dnnl_stream_wait(c->stream);
}

/* What oneDNN behind our scalar twin would cost: its int32 GEMM, then our
 * epilogue y = (float)acc * (sa[m] * sw[n]) (quant.h's numerics, so the
 * same bits as ours-lin), parallel over rows on the same threads, the
 * rows vectorized (AVX2 lanes: the same IEEE operations per element). */
__attribute__((target("avx2"))) static void run_dnnl_lin(void *p)
{
    ctx *c = p;
    run_dnnl(c);
    int M = c->a->M, N = c->w->N;
#pragma omp parallel for schedule(static) num_threads(c->threads)
    for (int m = 0; m < M; m++) {
        const int32_t *cr = c->Cd + (size_t)m * N;
        float *yr = c->Y + (size_t)m * N, sa = c->a->scale[m];
        const float *sw = c->w->scale;
#pragma omp simd
        for (int n = 0; n < N; n++) yr[n] = (float)cr[n] * (sa * sw[n]);
    }
}

#define DN(x) do { dnnl_status_t st_ = (x); if (st_ != dnnl_success) { \
    fprintf(stderr, "oneDNN: %s failed (%d)\n", #x, (int)st_); return -1; } } while (0)

/* s8 [M,K] x s8 [K,N] (our W [N,K] = tag ba) -> s32 [M,N]; weights reordered
 * once into oneDNN's preferred layout (not timed, as ours are prepared). */
static int dnnl_setup(ctx *c, dnnl_engine_t eng, const int8_t *A, int lda, const int8_t *W, int M, int N,
                      int K, int32_t *C, void **wbuf)
{
    dnnl_memory_desc_t a_md, b_any, b_plain, c_md;
    dnnl_dims_t ad = { M, K }, bd = { K, N }, cd = { M, N }, astr = { lda, 1 };
    DN(dnnl_memory_desc_init_by_strides(&a_md, 2, ad, dnnl_s8, astr));
    DN(dnnl_memory_desc_init_by_tag(&b_any, 2, bd, dnnl_s8, dnnl_format_tag_any));
    DN(dnnl_memory_desc_init_by_tag(&b_plain, 2, bd, dnnl_s8, dnnl_ba));
    DN(dnnl_memory_desc_init_by_tag(&c_md, 2, cd, dnnl_s32, dnnl_ab));
    dnnl_matmul_desc_t md;
    DN(dnnl_matmul_desc_init(&md, &a_md, &b_any, NULL, &c_md));
    dnnl_primitive_desc_t pd;
    DN(dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL));
    const char *impl = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    printf("  oneDNN implementation: %s\n", impl ? impl : "?");
    const dnnl_memory_desc_t *b_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    DN(dnnl_primitive_create(&c->prim, pd));
    dnnl_memory_t am, bm_plain, bm, cm;
    DN(dnnl_memory_create(&am, &a_md, eng, (void *)A));
    DN(dnnl_memory_create(&bm_plain, &b_plain, eng, (void *)W));
    size_t bsz = dnnl_memory_desc_get_size(b_md);
    *wbuf = aligned_alloc(64, (bsz + 63) / 64 * 64);
    DN(dnnl_memory_create(&bm, b_md, eng, *wbuf));
    DN(dnnl_memory_create(&cm, &c_md, eng, C));
    dnnl_primitive_desc_t rpd;
    DN(dnnl_reorder_primitive_desc_create(&rpd, &b_plain, eng, b_md, eng, NULL));
    dnnl_primitive_t reorder;
    DN(dnnl_primitive_create(&reorder, rpd));
    dnnl_exec_arg_t rargs[2] = { { DNNL_ARG_FROM, bm_plain }, { DNNL_ARG_TO, bm } };
    DN(dnnl_primitive_execute(reorder, c->stream, 2, rargs));
    dnnl_stream_wait(c->stream);
    c->args[0] = (dnnl_exec_arg_t){ DNNL_ARG_SRC, am };
    c->args[1] = (dnnl_exec_arg_t){ DNNL_ARG_WEIGHTS, bm };
    c->args[2] = (dnnl_exec_arg_t){ DNNL_ARG_DST, cm };
    return 0;
}
#endif

static const char *dims_of(int M, int N, int K)
{
    static char b[48];
    snprintf(b, sizeof b, "%dx%dx%d", M, N, K);
    return b;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    double min_s = argc > 2 ? atof(argv[2]) : 0.5;
    omp_set_num_threads(threads);
    quant_path path = quant_path_best();
    printf("quant_gemm_bench: threads %d, path %s\n", threads, quant_path_name(path));
    double pk_mix = 0, pk_mb = 0, pk_vnni = 0;     /* best peaks seen so far in this run */
    int have_vnni = quant_path_supported(QUANT_PATH_AVX512VNNI);
#ifdef FLOW_HAVE_DNNL
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    if (dnnl_engine_create(&eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&stream, eng, dnnl_stream_default_flags) != dnnl_success) {
        fprintf(stderr, "oneDNN: no CPU engine\n");
        return 1;
    }
#else
    printf("oneDNN: not built in (libdnnl-dev absent at configure time)\n");
#endif
    /* BERT Linear shapes at the reference config (H 768, I 3072) for
     * batch 1 x seq 128 (M = 128) and batch 32 x seq 128 (M = 4096), then
     * the legal.graph model's (H 128, QKV 384, FFN 512). */
    static const int shapes[][3] = {
        { 128, 768, 768 }, { 128, 3072, 768 }, { 128, 768, 3072 },
        { 4096, 768, 768 }, { 4096, 3072, 768 }, { 4096, 768, 3072 },
        { 128, 384, 128 }, { 4096, 384, 128 }, { 4096, 512, 128 }, { 4096, 128, 512 },
    };
    int only = argc > 3 ? atoi(argv[3]) : -1;     /* one shape by index (tuning) */
    if (argc > 3 && strcmp(argv[3], "peak") == 0) {  /* the peak loops alone */
        peak_ctx pm = { peak_mix, threads, 0 }, pb = { peak_maddubs, threads, 0 }, pv = { peak_vnni512, threads, 0 };
        run_fn fns[3] = { run_peak, run_peak, run_peak };
        void *ctxs[3] = { &pm, &pb, &pv };
        double best[3], cbest[3];
        time_round_robin(have_vnni ? 3 : 2, fns, ctxs, best, cbest, min_s);
        printf("integer peak (%d threads): vpmaddubsw+vpmaddwd+vpaddd %.1f GOP/s wall (%.1f per CPU second x %d); "
               "vpmaddubsw alone %.1f GOP/s", threads, 2.0 * pm.macs / best[0] / 1e9,
               2.0 * pm.macs / cbest[0] / 1e9 * threads, threads, 2.0 * pb.macs / best[1] / 1e9);
        if (have_vnni)
            printf("; vpdpbusd zmm (AVX-512 VNNI%s) %.1f GOP/s wall (%.1f per CPU second x %d)",
                   quant_path_active() == QUANT_PATH_AMX ? ": the 4-bit kernels' path here; int8 runs AMX tiles, "
                                                           "no peak loop of theirs"
                                                         : ", the kernels' path here",
                   2.0 * pv.macs / best[2] / 1e9, 2.0 * pv.macs / cbest[2] / 1e9 * threads, threads);
        printf("\n");
        return 0;
    }
    printf("%-18s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s  %s\n", "M x N x K", "peak", "ours", "ours-lin",
           "oneDNN", "vs dnnl", "dnnl-lin", "lin/dlin", "vs peak", "u4g64", "nf4g64", "ours-cpu", "dnnl-cpu", "u4-cpu", "exact");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        if (only >= 0 && (int)s != only) continue;
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *X = malloc((size_t)M * K * 4), *W = malloc((size_t)N * K * 4);
        srand(7);
        for (size_t i = 0; i < (size_t)M * K; i++) X[i] = (float)rand() / RAND_MAX - 0.5f;
        for (size_t i = 0; i < (size_t)N * K; i++) W[i] = ((float)rand() / RAND_MAX - 0.5f) * 0.1f;
        int8_t *q = malloc((size_t)N * K);
        float *sw = malloc((size_t)N * 4);
        quant_int8_rtn(W, N, K, q, sw);
        quant_weight w, w4;
        quant_act a, a4;
        flow_err e;
        quant_act_init(&a); quant_act_init(&a4);
        if (quant_weight_init_int8(&w, N, K, q, sw, "bench", &e) || quant_act_quantize(&a, X, M, K, K, 0, &e) ||
            quant_act_quantize(&a4, X, M, K, K, 64, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
        uint8_t *pk = malloc((size_t)N * K / 2), *z = malloc((size_t)N * K / 64);
        float *s4 = malloc((size_t)N * K / 64 * 4);
        quant_u4_rtn(W, N, K, 64, 0, pk, s4, z);
        if (quant_weight_init_u4(&w4, N, K, 64, pk, s4, z, "bench4", &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
        int8_t L[16];                   /* NF4 g64: the same activations as UINT4 g64 */
        quant_weight wn;
        quant_nf4_fit(W, N, K, 64, 10, L);
        quant_nf4_rtn(W, N, K, 64, L, pk, s4);
        if (quant_weight_init_nf4(&wn, N, K, 64, pk, s4, L, "benchnf4", &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
        int32_t *C = malloc((size_t)M * N * 4), *Cd = calloc((size_t)M * N, 4);
        float *Y = malloc((size_t)M * N * 4);
        ctx c;
        memset(&c, 0, sizeof c);
        c.w = &w; c.a = &a; c.C = C; c.Y = Y; c.threads = threads; c.path = path;
        double ops = 2.0 * M * N * K;
        ctx c4 = c;
        c4.w = &w4; c4.a = &a4; c4.C = NULL;
        peak_ctx pm = { peak_mix, threads, 0 }, pb = { peak_maddubs, threads, 0 }, pv = { peak_vnni512, threads, 0 };
        run_fn fns[MAXRUN] = { run_peak, run_peak, run_ours_s32, run_ours_linear, run_ours_linear, run_peak };
        void *ctxs[MAXRUN] = { &pm, &pb, &c, &c, &c4, &pv };
        ctx cn = c4;
        cn.w = &wn;
        int nrun = have_vnni ? 6 : 5, i_nf4 = nrun;
        fns[nrun] = run_ours_linear; ctxs[nrun] = &cn; nrun++;
        int i_dnnl = nrun;
        double g_dnnl = 0, gc_dnnl = 0, g_dnnl_lin = 0, best[MAXRUN], cbest[MAXRUN];
        char exact[64] = "-";
#ifdef FLOW_HAVE_DNNL
        void *wbuf = NULL;
        c.stream = stream;
        int have_dnnl = dnnl_setup(&c, eng, a.q, a.Kp, q, M, N, K, Cd, &wbuf) == 0;
        c.Cd = Cd;
        if (have_dnnl) {
            fns[nrun] = run_dnnl; ctxs[nrun] = &c; nrun++;
            fns[nrun] = run_dnnl_lin; ctxs[nrun] = &c; nrun++;
        }
#endif
        time_round_robin(nrun, fns, ctxs, best, cbest, min_s);
        double g_mix = 2.0 * pm.macs / best[0] / 1e9, g_mub = 2.0 * pb.macs / best[1] / 1e9;
        double t_s32 = best[2], t_lin = best[3], t_u4 = best[4];
#ifdef FLOW_HAVE_DNNL
        if (have_dnnl) {
            g_dnnl = ops / best[i_dnnl] / 1e9;
            g_dnnl_lin = ops / best[i_dnnl + 1] / 1e9;
            run_ours_linear(&c);            /* ours-lin and oneDNN + our epilogue: the same bits */
            float *Yo = malloc((size_t)M * N * 4);
            memcpy(Yo, Y, (size_t)M * N * 4);
            run_dnnl_lin(&c);
            if (memcmp(Yo, Y, (size_t)M * N * 4) != 0) { fprintf(stderr, "oneDNN + epilogue: outputs differ from ours-lin\n"); return 1; }
            free(Yo);
            gc_dnnl = ops / cbest[i_dnnl] / 1e9 * threads;
            run_ours_s32(&c);
            long bad = 0; long maxd = 0;
            for (size_t i = 0; i < (size_t)M * N; i++)
                if (C[i] != Cd[i]) { bad++; long d = labs((long)C[i] - Cd[i]); if (d > maxd) maxd = d; }
            if (bad) snprintf(exact, sizeof exact, "NO: %ld differ, max %ld", bad, maxd);
            else snprintf(exact, sizeof exact, "yes");
        }
        free(wbuf);
        if (have_dnnl && s == 0) {
            /* Probe of the cause: with 7-bit weights (|q| <= 63) a u8 x s8
             * vpmaddubsw pair cannot saturate; exact then = saturation before. */
            int8_t *q7 = malloc((size_t)N * K);
            for (size_t i = 0; i < (size_t)N * K; i++) q7[i] = (int8_t)(q[i] / 2);
            quant_weight w7;
            ctx c7 = c;
            if (quant_weight_init_int8(&w7, N, K, q7, sw, "bench7", &e) == 0 &&
                dnnl_setup(&c7, eng, a.q, a.Kp, q7, M, N, K, Cd, &wbuf) == 0) {
                c7.w = &w7;
                run_dnnl(&c7);
                run_ours_s32(&c7);
                printf("  7-bit weight probe (%s): oneDNN int32 results %s ours\n", dims_of(M, N, K),
                       memcmp(C, Cd, (size_t)M * N * 4) == 0 ? "equal" : "still differ from");
                quant_weight_release(&w7);
            }
            free(wbuf); free(q7);
        }
#endif
        double g_vnni = have_vnni ? 2.0 * pv.macs / best[5] / 1e9 : 0.0;
        /* the path's own instruction (amx: its 4-bit kernels' vpdpbusd zmm; no tile peak loop
         * here, so its int8 columns may exceed 1 in "vs peak") */
        double g_peak = path == QUANT_PATH_AVX512VNNI || path == QUANT_PATH_AMX ? g_vnni : g_mix;
        pk_mix = pk_mix > g_mix ? pk_mix : g_mix;
        pk_mb = pk_mb > g_mub ? pk_mb : g_mub;
        pk_vnni = pk_vnni > g_vnni ? pk_vnni : g_vnni;
        char dims[32];
        snprintf(dims, sizeof dims, "%dx%dx%d", M, N, K);
        double g = ops / t_s32 / 1e9;
        printf("%-18s %8.1f %8.1f %8.1f %8.1f %8.2f %8.1f %8.2f %8.2f %8.1f %8.1f %8.1f %8.1f %8.1f  %s\n", dims, g_peak, g,
               ops / t_lin / 1e9, g_dnnl, g_dnnl > 0 ? g / g_dnnl : 0.0, g_dnnl_lin,
               g_dnnl_lin > 0 ? ops / t_lin / 1e9 / g_dnnl_lin : 0.0, g / g_peak, ops / t_u4 / 1e9, ops / best[i_nf4] / 1e9,
               ops / cbest[2] / 1e9 * threads, gc_dnnl, ops / cbest[4] / 1e9 * threads, exact);
        free(X); free(W); free(q); free(sw); free(pk); free(z); free(s4); free(C); free(Cd); free(Y);
        quant_weight_release(&w); quant_weight_release(&w4); quant_weight_release(&wn);
        quant_act_release(&a); quant_act_release(&a4);
    }
    printf("integer peak, best of this run (%d threads): vpmaddubsw+vpmaddwd+vpaddd %.1f GOP/s; vpmaddubsw alone %.1f GOP/s",
           threads, pk_mix, pk_mb);
    if (have_vnni) printf("; vpdpbusd zmm %.1f GOP/s", pk_vnni);
    printf("\n");
    printf("columns: GOP/s of the peak loop of the path's instruction timed alongside (vpdpbusd zmm on the avx512vnni\n"
           "path, else the vpmaddubsw+vpmaddwd+vpaddd mix), our int32 GEMM (ours), with the float rescale (ours-lin),\n"
           "oneDNN s8s8s32 matmul, ratio ours/oneDNN (int32 both), oneDNN's int32 GEMM + our float epilogue (dnnl-lin:\n"
           "what oneDNN behind our twin would cost; its outputs are checked equal to ours-lin) and ours-lin/dnnl-lin,\n"
           "ours/peak, our UINT4 g64 and NF4 g64 Linears; -cpu: the same per CPU\n"
           "second x threads (best process CPU time: what the work costs when other jobs share the cores); exact:\n"
           "oneDNN's int32 results equal ours\n");
    return 0;
}
