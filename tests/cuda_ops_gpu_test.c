/* cuda_ops_gpu_test.c — every CUDA op of kernels/cuda/cuda_ops.h against
 * its CPU twin (kernels/cpu/bert_ops.h) on fresh random inputs (never
 * zeros; a new seed per run, printed), fp32 tolerances: Linear (bias, GELU)
 * forward and backward, LayerNorm forward/backward, GELU, dropout (the
 * SAME mask bit for bit), attention with a padding mask and dropout
 * forward/backward, cross-entropy on labelled rows, the device-side
 * gradient norm and clipping, AdamW (NCCL: bert_cuda_gpu_test's test_dp).
 * Exit 77 (skipped) in a build without CUDA or on a machine without a GPU.
 * Written without a GPU at hand: it has compiled, never run. */
#include "test.h"
#include "kernels/cpu/bert_ops.h"

#ifndef FLOW_HAVE_CUDA
int main(void)
{
    printf("skip: this build has no CUDA backend (nvcc not found or FLOW_CUDA=OFF)\n");
    return 77;
}
#else
#include "kernels/cuda/cuda_ops.h"
#include "kernels/kernels.h"

#include <math.h>
#include <time.h>

static uint64_t rng;
static float urand(void) { return (float)((splitmix64_next(&rng) >> 40) * 0x1.0p-24) * 2.0f - 1.0f; }
static float *rnd(size_t n, float scale)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = urand() * scale;
    return x;
}

static cuda_ctx *C;
static flow_err E;

static float *dev(const float *h, size_t n)
{
    void *p = NULL;
    CHECK_OK(cuda_alloc(C, &p, n * sizeof(float) + 4, &E), E);
    if (h) CHECK_OK(cuda_upload(C, p, h, n * sizeof(float), &E), E);
    else CHECK_OK(cuda_memset0(C, p, n * sizeof(float), &E), E);
    return p;
}

static int32_t *devi(const int32_t *h, size_t n)
{
    void *p = NULL;
    CHECK_OK(cuda_alloc(C, &p, n * sizeof(int32_t) + 4, &E), E);
    CHECK_OK(cuda_upload(C, p, h, n * sizeof(int32_t), &E), E);
    return p;
}

static float *host(const float *d, size_t n)
{
    float *h = malloc(n * sizeof *h + 4);
    CHECK_OK(cuda_sync(C, &E), E);
    CHECK_OK(cuda_download(C, h, d, n * sizeof(float), &E), E);
    return h;
}

/* max |a-b| / (atol + rtol |b|) <= 1 */
static void close_to(const char *what, const float *gpu, const float *cpu, size_t n, float atol, float rtol)
{
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double diff = fabs((double)gpu[i] - cpu[i]), den = atol + rtol * fabs(cpu[i]);
        double r = diff == 0 ? 0 : diff / den;     /* den 0: any difference fails */
        if (!(r <= worst)) { worst = r; at = i; }
    }
    CHECK_MSG(worst <= 1.0, "%s: element %zu: gpu %g cpu %g (%.2f x tolerance)", what, at,
              (double)gpu[at], (double)cpu[at], worst);
}

static void test_linear(void)
{
    int N = 37, IC = 70, OC = 45;
    float *x = rnd((size_t)N * IC, 1), *W = rnd((size_t)OC * IC, 0.2f), *b = rnd(OC, 0.5f);
    float *dout = rnd((size_t)N * OC, 1), *out = malloc((size_t)N * OC * 4), *gel = malloc((size_t)N * OC * 4);
    linear_forward(out, x, W, b, N, IC, OC);
    gelu_forward(gel, out, (size_t)N * OC);
    float *dx = dev(x, (size_t)N * IC), *dW = dev(W, (size_t)OC * IC), *db = dev(b, OC);
    float *dout_d = dev(NULL, (size_t)N * OC), *dpre = dev(NULL, (size_t)N * OC);
    CHECK_OK(cuda_linear_forward(C, dout_d, NULL, dx, dW, db, N, IC, OC, 0, &E), E);
    float *g = host(dout_d, (size_t)N * OC);
    close_to("linear forward (bias epilogue)", g, out, (size_t)N * OC, 1e-5f, 1e-4f);
    free(g);
    CHECK_OK(cuda_linear_forward(C, dout_d, dpre, dx, dW, db, N, IC, OC, 1, &E), E);
    g = host(dout_d, (size_t)N * OC);
    close_to("linear forward + GELU", g, gel, (size_t)N * OC, 1e-5f, 1e-4f);
    free(g);
    /* backward, accumulating onto non-zero gradients */
    float *gx = rnd((size_t)N * IC, 1), *gW = rnd((size_t)OC * IC, 1), *gb = rnd(OC, 1);
    float *ddo = dev(dout, (size_t)N * OC), *dgx = dev(gx, (size_t)N * IC), *dgW = dev(gW, (size_t)OC * IC),
          *dgb = dev(gb, OC);
    linear_backward(gx, gW, gb, dout, x, W, N, IC, OC, 1);
    CHECK_OK(cuda_linear_backward(C, dgx, dgW, dgb, ddo, dx, dW, N, IC, OC, 1, &E), E);
    float *h1 = host(dgx, (size_t)N * IC), *h2 = host(dgW, (size_t)OC * IC), *h3 = host(dgb, OC);
    close_to("linear backward dinp (acc)", h1, gx, (size_t)N * IC, 1e-5f, 1e-4f);
    close_to("linear backward dW (+=)", h2, gW, (size_t)OC * IC, 1e-5f, 1e-4f);
    close_to("linear backward db (+=)", h3, gb, OC, 1e-5f, 1e-4f);
    free(h1); free(h2); free(h3);
    cuda_free(dx); cuda_free(dW); cuda_free(db); cuda_free(dout_d); cuda_free(dpre);
    cuda_free(ddo); cuda_free(dgx); cuda_free(dgW); cuda_free(dgb);
    free(x); free(W); free(b); free(dout); free(out); free(gel); free(gx); free(gW); free(gb);
}

static void test_layernorm_gelu_dropout(void)
{
    int N = 130, Cc = 300;
    size_t n = (size_t)N * Cc;
    float *x = rnd(n, 2), *g = rnd(Cc, 1), *b = rnd(Cc, 1), *dout = rnd(n, 1);
    float *out = malloc(n * 4), *mean = malloc(N * 4), *rstd = malloc(N * 4), *dx = malloc(n * 4);
    float *dg = rnd(Cc, 1), *dbb = rnd(Cc, 1);
    float *d_x = dev(x, n), *d_g = dev(g, Cc), *d_b = dev(b, Cc), *d_out = dev(NULL, n), *d_mean = dev(NULL, N),
          *d_rstd = dev(NULL, N), *d_do = dev(dout, n), *d_dx = dev(NULL, n), *d_dg = dev(dg, Cc),
          *d_db = dev(dbb, Cc), *scr = dev(NULL, cuda_layernorm_scratch(N, Cc));
    layernorm_forward(out, mean, rstd, x, g, b, N, Cc);
    layernorm_backward(dx, dg, dbb, dout, x, g, mean, rstd, N, Cc);
    cuda_layernorm_forward(C, d_out, d_mean, d_rstd, d_x, d_g, d_b, N, Cc);
    cuda_layernorm_backward(C, d_dx, d_dg, d_db, d_do, d_x, d_g, d_mean, d_rstd, N, Cc, scr);
    float *h;
    h = host(d_out, n); close_to("layernorm forward", h, out, n, 1e-5f, 1e-4f); free(h);
    h = host(d_rstd, N); close_to("layernorm rstd", h, rstd, N, 1e-5f, 1e-4f); free(h);
    h = host(d_dx, n); close_to("layernorm backward dinp", h, dx, n, 1e-4f, 1e-3f); free(h);
    h = host(d_dg, Cc); close_to("layernorm backward dg (+=)", h, dg, Cc, 1e-4f, 1e-4f); free(h);
    h = host(d_db, Cc); close_to("layernorm backward db (+=)", h, dbb, Cc, 1e-4f, 1e-4f); free(h);
    /* GELU */
    gelu_forward(out, x, n);
    gelu_backward(dx, x, dout, n);
    cuda_gelu_forward(C, d_out, d_x, n);
    cuda_gelu_backward(C, d_dx, d_x, d_do, n);
    h = host(d_out, n); close_to("gelu forward", h, out, n, 1e-6f, 1e-5f); free(h);
    h = host(d_dx, n); close_to("gelu backward", h, dx, n, 1e-6f, 1e-5f); free(h);
    /* dropout: the same mask and the same values, exactly */
    uint64_t key = dropout_key(splitmix64_next(&rng), 7, 3);
    dropout_forward(out, x, n, 0.3f, key);
    cuda_dropout_forward(C, d_out, d_x, n, 0.3f, key);
    h = host(d_out, n);
    size_t differ = 0, dropped = 0;
    for (size_t i = 0; i < n; i++) {
        differ += memcmp(&h[i], &out[i], 4) != 0;
        dropped += out[i] == 0;
    }
    CHECK_MSG(differ == 0, "dropout: %zu of %zu elements differ from the CPU mask", differ, n);
    CHECK_MSG(dropped > n / 5 && dropped < n * 2 / 5, "dropout p = 0.3 dropped %zu of %zu", dropped, n);
    free(h);
    dropout_backward(dx, dout, n, 0.3f, key);
    cuda_dropout_backward(C, d_dx, d_do, n, 0.3f, key);
    h = host(d_dx, n); close_to("dropout backward", h, dx, n, 0, 0 + 1e-7f); free(h);
    float *pl[] = { d_x, d_g, d_b, d_out, d_mean, d_rstd, d_do, d_dx, d_dg, d_db, scr };
    for (size_t i = 0; i < sizeof pl / sizeof *pl; i++) cuda_free(pl[i]);
    free(x); free(g); free(b); free(dout); free(out); free(mean); free(rstd); free(dx); free(dg); free(dbb);
}

static void test_attention(void)
{
    int B = 3, T = 19, nh = 2, d = 8, A = nh * d;
    size_t nq = (size_t)B * T * 3 * A, nc = (size_t)B * T * A, np = (size_t)B * nh * T * T;
    float *qkv = rnd(nq, 1), *dctx = rnd(nc, 1), *ctx = malloc(nc * 4), *probs = malloc(np * 4),
          *dqkv = malloc(nq * 4), *scratch = malloc(attention_scratch(T, d) * 64 * 4);
    int32_t mask[3 * 19];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) mask[b * T + t] = t < T - 5 * b;    /* 0, 5, 10 padded */
    uint64_t key = dropout_key(splitmix64_next(&rng), 1, 9);
    bert_set_threads(1);
    attention_forward(ctx, probs, qkv, mask, B, T, nh, d, 0.1f, key, scratch);
    attention_backward(dqkv, dctx, qkv, probs, B, T, nh, d, 0.1f, key, scratch);
    float *d_qkv = dev(qkv, nq), *d_ctx = dev(NULL, nc), *d_p = dev(NULL, np), *d_dctx = dev(dctx, nc),
          *d_dqkv = dev(NULL, nq), *d_s = dev(NULL, cuda_attention_scratch(B, T, nh, d));
    int32_t *d_mask = devi(mask, (size_t)B * T);
    CHECK_OK(cuda_attention_forward(C, d_ctx, d_p, d_qkv, d_mask, B, T, nh, d, 0.1f, key, d_s, &E), E);
    CHECK_OK(cuda_attention_backward(C, d_dqkv, d_dctx, d_qkv, d_p, B, T, nh, d, 0.1f, key, d_s, &E), E);
    float *h;
    h = host(d_p, np); close_to("attention probabilities (padding mask)", h, probs, np, 1e-6f, 1e-4f); free(h);
    h = host(d_ctx, nc); close_to("attention forward ctx (dropout)", h, ctx, nc, 1e-5f, 1e-4f); free(h);
    h = host(d_dqkv, nq); close_to("attention backward dqkv", h, dqkv, nq, 1e-5f, 1e-3f); free(h);
    cuda_free(d_qkv); cuda_free(d_ctx); cuda_free(d_p); cuda_free(d_dctx); cuda_free(d_dqkv); cuda_free(d_s);
    cuda_free(d_mask);
    free(qkv); free(dctx); free(ctx); free(probs); free(dqkv); free(scratch);
}

static void test_xent(void)
{
    int M = 23, V = 517;
    float *lg = rnd((size_t)M * V, 4), *w = rnd(V, 1), *lse = malloc(M * 4), *dl = malloc((size_t)M * V * 4);
    int32_t y[23];
    for (int i = 0; i < V; i++) w[i] = fabsf(w[i]) + 0.1f;
    for (int m = 0; m < M; m++) y[m] = (int32_t)(splitmix64_next(&rng) % (uint64_t)V);
    long correct = 0;
    double loss = xent_forward(lse, lg, y, w, M, V, &correct);
    xent_backward(dl, lg, lse, y, w, M, V, 0.5f);
    float *d_lg = dev(lg, (size_t)M * V), *d_w = dev(w, V), *d_lse = dev(NULL, M), *d_rl = dev(NULL, M),
          *d_ws = dev(NULL, 1), *d_dl = dev(NULL, (size_t)M * V);
    int32_t *d_y = devi(y, M), *d_rc = devi(y, M);
    cuda_xent_forward(C, d_lse, d_rl, d_rc, d_ws, d_lg, d_y, d_w, M, V);
    cuda_xent_backward(C, d_dl, d_lg, d_lse, d_y, d_w, d_ws, M, V, 0.5f);
    float *rl = host(d_rl, M), *ws = host(d_ws, 1), *h;
    int32_t rc[23];
    CHECK_OK(cuda_download(C, rc, d_rc, sizeof rc, &E), E);
    double gl = 0;
    long gc = 0;
    for (int m = 0; m < M; m++) { gl += rl[m]; gc += rc[m]; }
    gl /= ws[0];
    CHECK_MSG(fabs(gl - loss) <= 1e-5 * fabs(loss) + 1e-6, "xent loss gpu %g cpu %g", gl, loss);
    CHECK_MSG(gc == correct, "xent correct gpu %ld cpu %ld", gc, correct);
    h = host(d_lse, M); close_to("xent lse", h, lse, M, 1e-5f, 1e-5f); free(h);
    h = host(d_dl, (size_t)M * V); close_to("xent backward", h, dl, (size_t)M * V, 1e-7f, 1e-4f); free(h);
    free(rl); free(ws);
    cuda_free(d_lg); cuda_free(d_w); cuda_free(d_lse); cuda_free(d_rl); cuda_free(d_ws); cuda_free(d_dl);
    cuda_free(d_y); cuda_free(d_rc);
    free(lg); free(w); free(lse); free(dl);
}

/* grad norm, clipping, AdamW through a CPU model's flat buffers */
static void test_optim(void)
{
    size_t n = 300001;
    float *g = rnd(n, 0.01f), *p = rnd(n, 1), *m = rnd(n, 0.01f), *v = rnd(n, 0.001f);
    for (size_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    float *d_g = dev(g, n), *d_p = dev(p, n), *d_m = dev(m, n), *d_v = dev(v, n);
    double *d_ss = NULL, *d_scr = NULL, got = 0;
    CHECK_OK(cuda_alloc(C, (void **)&d_ss, sizeof(double), &E), E);
    CHECK_OK(cuda_alloc(C, (void **)&d_scr, cuda_sumsq_scratch(n) * sizeof(double), &E), E);
    cuda_sumsq(C, d_ss, d_g, n, d_scr);
    CHECK_OK(cuda_sync(C, &E), E);
    CHECK_OK(cuda_download(C, &got, d_ss, sizeof got, &E), E);
    CHECK_MSG(fabs(got - ss) <= 1e-9 * ss, "device grad sumsq %.12g, host %.12g", got, ss);
    float norm = (float)sqrt(ss), maxn = norm / 3, f = maxn / (norm + 1e-6f);
    cuda_clip(C, d_g, n, d_ss, maxn);
    for (size_t i = 0; i < n; i++) g[i] *= f;
    float *h = host(d_g, n);
    close_to("clip", h, g, n, 0, 1e-6f);
    free(h);
    /* AdamW: the CPU formula of cpu_optim.c, step 5, with decay */
    float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.01f;
    float bc1 = (float)(1.0 - pow(b1, 5)), bc2 = (float)(1.0 - pow(b2, 5)), step = lr / bc1, bc2s = sqrtf(bc2);
    cuda_adamw(C, d_p, d_g, d_m, d_v, n, lr, b1, b2, eps, wd, 1, 5);
    for (size_t i = 0; i < n; i++) {
        float mi = b1 * m[i] + (1 - b1) * g[i], vi = b2 * v[i] + (1 - b2) * g[i] * g[i];
        m[i] = mi; v[i] = vi;
        p[i] = p[i] * (1 - lr * wd) - step * mi / (sqrtf(vi) / bc2s + eps);
    }
    h = host(d_p, n); close_to("adamw params", h, p, n, 1e-7f, 1e-5f); free(h);
    h = host(d_v, n); close_to("adamw v", h, v, n, 1e-12f, 1e-5f); free(h);
    cuda_free(d_g); cuda_free(d_p); cuda_free(d_m); cuda_free(d_v); cuda_free(d_ss); cuda_free(d_scr);
    free(g); free(p); free(m); free(v);
}

int main(void)
{
    char why[256];
    int n = cuda_device_count_forked(why, sizeof why);
    if (n <= 0) {
        printf("skip: no GPU (%s)\n", why);
        return 77;
    }
    char name[256];
    int maj = 0, min = 0;
    size_t mem = 0;
    CHECK_OK(cuda_device_info(0, name, sizeof name, &maj, &min, &mem, &E), E);
    rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    printf("cuda_ops_gpu_test: %s (sm_%d%d, %.1f GiB), seed %llu\n", name, maj, min, mem / 1073741824.0,
           (unsigned long long)rng);
    CHECK_OK(cuda_ctx_new(0, &C, &E), E);
    if (!C) return test_summary("cuda_ops_gpu_test");
    test_linear();
    test_layernorm_gelu_dropout();
    test_attention();
    test_xent();
    test_optim();
    CHECK_OK(cuda_sync(C, &E), E);
    cuda_ctx_free(C);
    return test_summary("cuda_ops_gpu_test");
}
#endif
