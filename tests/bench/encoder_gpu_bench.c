/* encoder_gpu_bench.c — flow's CUDA ops (kernels/cuda/cuda_ops.h) put
 * together as a BERT encoder training step in fp32: per layer the fused
 * QKV Linear, attention with a padding mask and dropout, the output
 * Linear, dropout + residual + LayerNorm, the FFN (Linear + GELU, Linear),
 * dropout + residual + LayerNorm, then the same backward (no embeddings,
 * no MLM head, no optimizer).  Reference config by default: hidden 768, 6
 * layers, 12 heads, FFN 3072, seq 512.  Prints tokens/s and TFLOP/s (the
 * FLOPs of bert_train_flops' encoder part); tests/gpu/torch_bench.py
 * measures transformers' BertEncoder on the same work in the same check.sh
 * run.  Not a test.  Written without a GPU: it has compiled, never run.
 *
 *   encoder_gpu_bench [--batch 8] [--seq 512] [--iters 10] */
#include "engine/base/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FLOW_HAVE_CUDA
int main(void)
{
    printf("flow encoder: this build has no CUDA\n");
    return 77;
}
#else
#include "kernels/cuda/cuda_ops.h"

#include <math.h>
#include <time.h>

enum { H = 768, L = 6, NH = 12, D = 64, I = 3072 };

typedef struct layer {
    float *Wqkv, *bqkv, *Wo, *bo, *g1, *b1, *Wi, *bi, *Wo2, *bo2, *g2, *b2;     /* params */
    float *dWqkv, *dbqkv, *dWo, *dbo, *dg1, *db1, *dWi, *dbi, *dWo2, *dbo2, *dg2, *db2;
    float *x, *qkv, *probs, *ctx, *ao, *a, *m1, *r1, *pre, *h1, *o2, *m2, *r2;   /* saved acts */
} layer;

static cuda_ctx *C;
static flow_err E;
static int failed;
static uint64_t seed = 42;

static float *alloc_f(size_t n, float scale)
{
    void *p = NULL;
    if (cuda_alloc(C, &p, n * sizeof(float), &E)) {
        fprintf(stderr, "%s\n", E.msg);
        exit(1);
    }
    float *h = malloc(n * sizeof *h);
    for (size_t i = 0; i < n; i++)
        h[i] = scale == 1.0f ? 1.0f : (float)(((splitmix64_next(&seed) >> 40) * 0x1.0p-24) - 0.5) * scale;
    if (scale == 0) memset(h, 0, n * sizeof *h);
    cuda_upload(C, p, h, n * sizeof(float), &E);
    free(h);
    return p;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define OK(x) do { if (x) { fprintf(stderr, "%s\n", E.msg); failed = 1; return; } } while (0)

/* y [N,H] = the layer's output (LayerNorm 2) */
static void forward(layer *ly, int B, int T, const int32_t *mask, float *att_s, uint64_t key, float *y)
{
    int N = B * T;
    size_t nh = (size_t)N * H;
    OK(cuda_linear_forward(C, ly->qkv, NULL, ly->x, ly->Wqkv, ly->bqkv, N, H, 3 * H, 0, &E));
    OK(cuda_attention_forward(C, ly->ctx, ly->probs, ly->qkv, mask, B, T, NH, D, 0.1f, key + 1, att_s, &E));
    OK(cuda_linear_forward(C, ly->ao, NULL, ly->ctx, ly->Wo, ly->bo, N, H, H, 0, &E));
    cuda_dropout_forward(C, ly->ao, ly->ao, nh, 0.1f, key + 2);
    cuda_residual_forward(C, ly->r1, ly->x, ly->ao, nh);
    cuda_layernorm_forward(C, ly->a, ly->m1, ly->m1 + N, ly->r1, ly->g1, ly->b1, N, H);
    OK(cuda_linear_forward(C, ly->h1, ly->pre, ly->a, ly->Wi, ly->bi, N, H, I, 1, &E));
    OK(cuda_linear_forward(C, ly->o2, NULL, ly->h1, ly->Wo2, ly->bo2, N, I, H, 0, &E));
    cuda_dropout_forward(C, ly->o2, ly->o2, nh, 0.1f, key + 3);
    cuda_residual_forward(C, ly->r2, ly->a, ly->o2, nh);
    cuda_layernorm_forward(C, y, ly->m2, ly->m2 + N, ly->r2, ly->g2, ly->b2, N, H);
}

/* dout [N,H] at the layer's output; the gradient at its input is left in
 * t2 (t1, dI, dqkv, dctx, ln_s, att_s: scratch; dout may be t2) */
static void backward(layer *ly, int B, int T, const float *dout, float *t1, float *t2, float *dI,
                     float *dqkv, float *dctx, float *ln_s, float *att_s, uint64_t key)
{
    int N = B * T;
    size_t nh = (size_t)N * H;
    /* t1 = d r2, going to a (residual) and through dropout to o2 */
    cuda_layernorm_backward(C, t1, ly->dg2, ly->db2, dout, ly->r2, ly->g2, ly->m2, ly->m2 + N, N, H, ln_s);
    cuda_dropout_backward(C, t2, t1, nh, 0.1f, key + 3);
    OK(cuda_linear_backward(C, dI, ly->dWo2, ly->dbo2, t2, ly->h1, ly->Wo2, N, I, H, 0, &E));
    cuda_gelu_backward(C, dI, ly->pre, dI, (size_t)N * I);
    OK(cuda_linear_backward(C, t1, ly->dWi, ly->dbi, dI, ly->a, ly->Wi, N, H, I, 1, &E));   /* t1 = d a */
    /* t2 = d r1, going to x (residual) and through dropout to ao */
    cuda_layernorm_backward(C, t2, ly->dg1, ly->db1, t1, ly->r1, ly->g1, ly->m1, ly->m1 + N, N, H, ln_s);
    cuda_dropout_backward(C, t1, t2, nh, 0.1f, key + 2);
    OK(cuda_linear_backward(C, dctx, ly->dWo, ly->dbo, t1, ly->ctx, ly->Wo, N, H, H, 0, &E));
    OK(cuda_attention_backward(C, dqkv, dctx, ly->qkv, ly->probs, B, T, NH, D, 0.1f, key + 1, att_s, &E));
    OK(cuda_linear_backward(C, t2, ly->dWqkv, ly->dbqkv, dqkv, ly->x, ly->Wqkv, N, H, 3 * H, 1, &E));
}

int main(int argc, char **argv)
{
    int B = 8, T = 512, iters = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--batch")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seq")) T = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--iters")) iters = atoi(argv[i + 1]);
    }
    char why[256];
    if (cuda_device_count_forked(why, sizeof why) <= 0) {
        printf("flow encoder: no GPU (%s)\n", why);
        return 77;
    }
    if (cuda_ctx_new(0, &C, &E)) {
        fprintf(stderr, "%s\n", E.msg);
        return 1;
    }
    int N = B * T;
    size_t nh = (size_t)N * H;
    layer ly[L];
    for (int l = 0; l < L; l++) {
        layer *y = &ly[l];
        y->Wqkv = alloc_f((size_t)3 * H * H, 0.04f); y->bqkv = alloc_f(3 * H, 0.04f);
        y->Wo = alloc_f((size_t)H * H, 0.04f); y->bo = alloc_f(H, 0.04f);
        y->g1 = alloc_f(H, 1); y->b1 = alloc_f(H, 0.04f);
        y->Wi = alloc_f((size_t)I * H, 0.04f); y->bi = alloc_f(I, 0.04f);
        y->Wo2 = alloc_f((size_t)H * I, 0.04f); y->bo2 = alloc_f(H, 0.04f);
        y->g2 = alloc_f(H, 1); y->b2 = alloc_f(H, 0.04f);
        y->dWqkv = alloc_f((size_t)3 * H * H, 0); y->dbqkv = alloc_f(3 * H, 0);
        y->dWo = alloc_f((size_t)H * H, 0); y->dbo = alloc_f(H, 0);
        y->dg1 = alloc_f(H, 0); y->db1 = alloc_f(H, 0);
        y->dWi = alloc_f((size_t)I * H, 0); y->dbi = alloc_f(I, 0);
        y->dWo2 = alloc_f((size_t)H * I, 0); y->dbo2 = alloc_f(H, 0);
        y->dg2 = alloc_f(H, 0); y->db2 = alloc_f(H, 0);
        y->x = alloc_f(nh, l == 0 ? 2.0f : 0.0f);
        y->qkv = alloc_f(3 * nh, 0); y->probs = alloc_f((size_t)B * NH * T * T, 0);
        y->ctx = alloc_f(nh, 0); y->ao = alloc_f(nh, 0); y->a = alloc_f(nh, 0);
        y->m1 = alloc_f(2 * (size_t)N, 0); y->r1 = alloc_f(nh, 0);
        y->pre = alloc_f((size_t)N * I, 0); y->h1 = alloc_f((size_t)N * I, 0);
        y->o2 = alloc_f(nh, 0); y->m2 = alloc_f(2 * (size_t)N, 0); y->r2 = alloc_f(nh, 0);
    }
    float *out = alloc_f(nh, 0), *dout = alloc_f(nh, 2), *t1 = alloc_f(nh, 0),
          *t2 = alloc_f(nh, 0), *dI = alloc_f((size_t)N * I, 0), *dqkv = alloc_f(3 * nh, 0),
          *ln_s = alloc_f(cuda_layernorm_scratch(N, H), 0),
          *att_s = alloc_f(cuda_attention_scratch(B, T, NH, D), 0), *dctx = alloc_f(nh, 0);
    int32_t *mask = NULL, *hm = malloc((size_t)N * sizeof *hm);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) hm[b * T + t] = t == 0 || t < T - (37 * b) % (T / 2);
    cuda_alloc(C, (void **)&mask, (size_t)N * sizeof *mask, &E);
    cuda_upload(C, mask, hm, (size_t)N * sizeof *hm, &E);
    double t0 = 0;
    for (int it = 0; it < iters + 2 && !failed; it++) {
        if (it == 2) {      /* two warm-up steps (cuBLASLt plans are made there) */
            cuda_sync(C, &E);
            t0 = now_s();
        }
        for (int l = 0; l < L && !failed; l++)
            forward(&ly[l], B, T, mask, att_s, (uint64_t)(it * 16 + l) << 8, l + 1 < L ? ly[l + 1].x : out);
        const float *g = dout;
        for (int l = L - 1; l >= 0 && !failed; l--) {
            backward(&ly[l], B, T, g, t1, t2, dI, dqkv, dctx, ln_s, att_s, (uint64_t)(it * 16 + l) << 8);
            g = t2;
        }
    }
    if (cuda_sync(C, &E)) {
        fprintf(stderr, "%s\n", E.msg);
        failed = 1;
    }
    double s = (now_s() - t0) / iters;
    double fl = 3.0 * L * (2.0 * N * H * (4.0 * H + 2.0 * I) + 4.0 * B * T * T * H);
    if (!failed)
        printf("flow encoder fp32 (CUDA ops, cuBLASLt + cuBLAS batched attention): %.0f tokens/s, %.2f TFLOP/s "
               "(%.1f ms/step); bf16/fp16: not implemented\n", N / s, fl / s / 1e12, s * 1e3);
    cuda_ctx_free(C);
    return failed;
}
#endif
