// cuda_ops.cu — the element-wise, row-wise and reduction kernels of
// kernels/cuda (cuda_ops.h), each the twin of a CPU op of
// kernels/cpu/bert_ops.h (same formula, same layout; the dropout hash is
// bit-for-bit the CPU's, so masks are identical).  Compiled for sm_86 and
// sm_90; never run on a GPU yet (tests/cuda_ops_gpu_test.c is the check).
#include "cuda_internal.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

#define TPB 256

// ---- block reductions (blockDim.x == TPB) ------------------------------------
__device__ static float block_sum(float v, float *sh)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    float t = 0;
    if (threadIdx.x == 0) {
        for (int i = 0; i < TPB / 32; i++) t += sh[i];     // warps in order
        sh[0] = t;
    }
    __syncthreads();
    return sh[0];
}

__device__ static float block_max(float v, float *sh)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = sh[0];
        for (int i = 1; i < TPB / 32; i++) t = fmaxf(t, sh[i]);
        sh[0] = t;
    }
    __syncthreads();
    return sh[0];
}

__device__ static double block_sum_d(double v, double *sh)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0;
        for (int i = 0; i < TPB / 32; i++) t += sh[i];
        sh[0] = t;
    }
    __syncthreads();
    return sh[0];
}

// ---- GELU (erf form), residual ---------------------------------------------------
__global__ static void k_gelu_fwd(float *out, const float *x, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

__global__ static void k_gelu_bwd(float *dx, const float *x, const float *dout, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i], cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
    float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
    dx[i] = dout[i] * (cdf + v * pdf);
}

__global__ static void k_add(float *out, const float *a, const float *b, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}

extern "C" void cuda_gelu_forward(cuda_ctx *c, float *out, const float *inp, size_t n)
{
    k_gelu_fwd<<<cuda_blocks(n, TPB), TPB, 0, c->stream>>>(out, inp, n);
}

extern "C" void cuda_gelu_backward(cuda_ctx *c, float *dinp, const float *inp, const float *dout, size_t n)
{
    k_gelu_bwd<<<cuda_blocks(n, TPB), TPB, 0, c->stream>>>(dinp, inp, dout, n);
}

extern "C" void cuda_residual_forward(cuda_ctx *c, float *out, const float *a, const float *b, size_t n)
{
    k_add<<<cuda_blocks(n, TPB), TPB, 0, c->stream>>>(out, a, b, n);
}

// ---- casts for the mixed-precision GEMMs (cuda_gemm.cu) -------------------------------
__global__ static void k_cast_bf16(__nv_bfloat16 *out, const float *x, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2bfloat16_rn(x[i]);
}

__global__ static void k_cast_fp16(__half *out, const float *x, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2half_rn(x[i]);
}

extern "C" void cuda_cast_bf16(cuda_ctx *c, void *out, const float *in, size_t n)
{
    if (n) k_cast_bf16<<<cuda_blocks(n, TPB), TPB, 0, c->stream>>>((__nv_bfloat16 *)out, in, n);
}

extern "C" void cuda_cast_fp16(cuda_ctx *c, void *out, const float *in, size_t n)
{
    if (n) k_cast_fp16<<<cuda_blocks(n, TPB), TPB, 0, c->stream>>>((__half *)out, in, n);
}

// ---- dropout: the CPU's dropout_keep bit for bit ----------------------------------------
__device__ static uint32_t hash32(uint32_t x)
{
    x ^= x >> 16; x *= 0x7feb352dU; x ^= x >> 15; x *= 0x846ca68bU; x ^= x >> 16;
    return x;
}

static uint32_t drop_threshold(float p)
{
    double t = (double)p * 4294967296.0;
    return t >= 4294967295.0 ? 4294967295u : (uint32_t)t;
}

__global__ static void k_dropout(float *out, const float *x, size_t n, uint32_t thr, uint32_t klo,
                                 uint32_t khi, float scale)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    uint32_t h = hash32(hash32((uint32_t)i ^ klo) + khi);
    out[i] = h >= thr ? x[i] * scale : 0.0f;
}

extern "C" void cuda_dropout_forward(cuda_ctx *c, float *out, const float *inp, size_t n, float p, uint64_t key)
{
    if (p <= 0) {
        if (out != inp) cudaMemcpyAsync(out, inp, n * sizeof(float), cudaMemcpyDeviceToDevice, c->stream);
        return;
    }
    k_dropout<<<cuda_blocks(n, TPB), TPB, 0, c->stream>>>(out, inp, n, drop_threshold(p), (uint32_t)key,
                                                           (uint32_t)(key >> 32), 1.0f / (1.0f - p));
}

extern "C" void cuda_dropout_backward(cuda_ctx *c, float *dinp, const float *dout, size_t n, float p, uint64_t key)
{
    cuda_dropout_forward(c, dinp, dout, n, p, key);     // the same mask and scale
}

// ---- LayerNorm --------------------------------------------------------------------
__global__ static void k_ln_fwd(float *out, float *mean, float *rstd, const float *x, const float *g,
                                const float *b, int C)
{
    __shared__ float sh[TPB / 32];
    const float *r = x + (size_t)blockIdx.x * C;
    float s = 0;
    for (int j = threadIdx.x; j < C; j += TPB) s += r[j];
    float mu = block_sum(s, sh) / C;
    float q = 0;
    for (int j = threadIdx.x; j < C; j += TPB) q += (r[j] - mu) * (r[j] - mu);
    float rs = rsqrtf(block_sum(q, sh) / C + BERT_LN_EPS_F);
    float *o = out + (size_t)blockIdx.x * C;
    for (int j = threadIdx.x; j < C; j += TPB) o[j] = (r[j] - mu) * rs * g[j] + b[j];
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = mu;
        rstd[blockIdx.x] = rs;
    }
}

#define LN_BWD_ROWS 64

// dinp per row; per 64-row block the partial dg | db into part[blk][2C]
__global__ static void k_ln_bwd(float *dx, float *part, const float *dout, const float *x, const float *g,
                                const float *mean, const float *rstd, int N, int C)
{
    __shared__ float sh[TPB / 32];
    int blk = blockIdx.x, n0 = blk * LN_BWD_ROWS, n1 = min(n0 + LN_BWD_ROWS, N);
    float *pg = part + (size_t)blk * 2 * C, *pb = pg + C;
    for (int j = threadIdx.x; j < C; j += TPB) pg[j] = pb[j] = 0;
    for (int n = n0; n < n1; n++) {
        const float *dr = dout + (size_t)n * C, *xr = x + (size_t)n * C;
        float mu = mean[n], rs = rstd[n], a = 0, bsum = 0;
        for (int j = threadIdx.x; j < C; j += TPB) {
            float xh = (xr[j] - mu) * rs, dxh = dr[j] * g[j];
            a += dxh;
            bsum += dxh * xh;
            pg[j] += dr[j] * xh;    // each column owned by one thread: rows in order
            pb[j] += dr[j];
        }
        float ma = block_sum(a, sh) / C, mb = block_sum(bsum, sh) / C;
        for (int j = threadIdx.x; j < C; j += TPB) {
            float xh = (xr[j] - mu) * rs;
            dx[(size_t)n * C + j] = rs * (dr[j] * g[j] - ma - xh * mb);
        }
    }
}

__global__ static void k_ln_bwd_sum(float *dg, float *db, const float *part, int nblk, int C)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= C) return;
    float sg = 0, sb = 0;
    for (int k = 0; k < nblk; k++) {    // blocks in order
        sg += part[(size_t)k * 2 * C + j];
        sb += part[(size_t)k * 2 * C + C + j];
    }
    dg[j] += sg;
    db[j] += sb;
}

extern "C" void cuda_layernorm_forward(cuda_ctx *c, float *out, float *mean, float *rstd, const float *inp,
                                       const float *g, const float *b, int N, int C)
{
    k_ln_fwd<<<N, TPB, 0, c->stream>>>(out, mean, rstd, inp, g, b, C);
}

extern "C" size_t cuda_layernorm_scratch(int N, int C)
{
    return (size_t)((N + LN_BWD_ROWS - 1) / LN_BWD_ROWS) * 2 * C;
}

extern "C" void cuda_layernorm_backward(cuda_ctx *c, float *dinp, float *dg, float *db, const float *dout,
                                        const float *inp, const float *g, const float *mean,
                                        const float *rstd, int N, int C, float *scratch)
{
    int nblk = (N + LN_BWD_ROWS - 1) / LN_BWD_ROWS;
    k_ln_bwd<<<nblk, TPB, 0, c->stream>>>(dinp, scratch, dout, inp, g, mean, rstd, N, C);
    k_ln_bwd_sum<<<cuda_blocks((size_t)C, TPB), TPB, 0, c->stream>>>(dg, db, scratch, nblk, C);
}

// ---- bias gradient: db[j] += sum_i dout[i][j], rows in order -------------------------
__global__ static void k_colsum(float *db, const float *dout, int N, int OC)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= OC) return;
    float s = 0;
    for (int i = 0; i < N; i++) s += dout[(size_t)i * OC + j];
    db[j] += s;
}

void cuda_colsum_acc(cuda_ctx *c, float *db, const float *dout, int N, int OC)
{
    k_colsum<<<cuda_blocks((size_t)OC, TPB), TPB, 0, c->stream>>>(db, dout, N, OC);
}

// ---- attention softmax over keys, padded keys excluded (probability 0) -------------------
__global__ static void k_softmax(float *P, const int32_t *mask, int nh, int T)
{
    __shared__ float sh[TPB / 32];
    size_t row = blockIdx.x;                       // (b*nh + h)*T + i
    int b = (int)(row / ((size_t)nh * T));
    float *r = P + row * T;
    const int32_t *mk = mask ? mask + (size_t)b * T : NULL;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < T; j += TPB)
        if (!mk || mk[j]) mx = fmaxf(mx, r[j]);
    mx = block_max(mx, sh);
    float s = 0;
    for (int j = threadIdx.x; j < T; j += TPB) {
        float v = (!mk || mk[j]) ? expf(r[j] - mx) : 0.0f;
        r[j] = v;
        s += v;
    }
    float inv = 1.0f / block_sum(s, sh);
    for (int j = threadIdx.x; j < T; j += TPB) r[j] *= inv;
}

// dS = P (dP - sum_j dP P), in place in dP
__global__ static void k_softmax_bwd(float *dP, const float *P, int T)
{
    __shared__ float sh[TPB / 32];
    size_t row = blockIdx.x;
    float *d = dP + row * T;
    const float *p = P + row * T;
    float s = 0;
    for (int j = threadIdx.x; j < T; j += TPB) s += d[j] * p[j];
    s = block_sum(s, sh);
    for (int j = threadIdx.x; j < T; j += TPB) d[j] = p[j] * (d[j] - s);
}

void cuda_attn_softmax(cuda_ctx *c, float *P, const int32_t *mask, int B, int nh, int T)
{
    k_softmax<<<(unsigned)((size_t)B * nh * T), TPB, 0, c->stream>>>(P, mask, nh, T);
}

void cuda_attn_softmax_backward(cuda_ctx *c, float *dS, const float *P, int B, int nh, int T)
{
    k_softmax_bwd<<<(unsigned)((size_t)B * nh * T), TPB, 0, c->stream>>>(dS, P, T);
}

// ---- cross-entropy on labelled rows ------------------------------------------------------
__global__ static void k_xent_fwd(float *lse, float *rowloss, int32_t *rowcorrect, const float *logits,
                                  const int32_t *targets, const float *w, int V)
{
    __shared__ float sh[TPB / 32];
    __shared__ int shi[TPB];
    int m = blockIdx.x;
    const float *r = logits + (size_t)m * V;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < V; j += TPB) mx = fmaxf(mx, r[j]);
    mx = block_max(mx, sh);
    int first = V;      // first index holding the max (argmax as the CPU: first max)
    for (int j = threadIdx.x; j < V; j += TPB)
        if (r[j] == mx) { first = j; break; }
    shi[threadIdx.x] = first;
    __syncthreads();
    for (int s = TPB / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) shi[threadIdx.x] = min(shi[threadIdx.x], shi[threadIdx.x + s]);
        __syncthreads();
    }
    float s = 0;
    for (int j = threadIdx.x; j < V; j += TPB) s += expf(r[j] - mx);
    s = block_sum(s, sh);
    if (threadIdx.x == 0) {
        int y = targets[m];
        float l = mx + logf(s);
        lse[m] = l;
        rowloss[m] = (w ? w[y] : 1.0f) * (l - r[y]);
        rowcorrect[m] = shi[0] == y;
    }
}

__global__ static void k_wsum(float *wsum, const int32_t *targets, const float *w, int M)
{
    float s = 0;
    for (int m = 0; m < M; m++) s += w ? w[targets[m]] : 1.0f;
    *wsum = s;
}

__global__ static void k_xent_bwd(float *dl, const float *logits, const float *lse, const int32_t *targets,
                                  const float *w, const float *wsum, int M, int V, float scale)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= V) return;
    for (int m = blockIdx.y; m < M; m += gridDim.y) {   // grid.y is at most 65535
        int y = targets[m];
        float f = *wsum > 0 ? scale * (w ? w[y] : 1.0f) / *wsum : 0.0f;
        size_t k = (size_t)m * V + j;
        dl[k] = f * (expf(logits[k] - lse[m]) - (j == y ? 1.0f : 0.0f));
    }
}

extern "C" void cuda_xent_forward(cuda_ctx *c, float *lse, float *rowloss, int32_t *rowcorrect, float *wsum,
                                  const float *logits, const int32_t *targets, const float *w, int M, int V)
{
    if (M > 0) k_xent_fwd<<<M, TPB, 0, c->stream>>>(lse, rowloss, rowcorrect, logits, targets, w, V);
    k_wsum<<<1, 1, 0, c->stream>>>(wsum, targets, w, M);
}

extern "C" void cuda_xent_backward(cuda_ctx *c, float *dlogits, const float *logits, const float *lse,
                                   const int32_t *targets, const float *w, const float *wsum, int M, int V,
                                   float scale)
{
    if (M <= 0) return;
    dim3 grid(cuda_blocks((size_t)V, TPB), (unsigned)(M < 65535 ? M : 65535));
    k_xent_bwd<<<grid, TPB, 0, c->stream>>>(dlogits, logits, lse, targets, w, wsum, M, V, scale);
}

// ---- gradient norm (device side), clipping, AdamW -------------------------------------
#define SUMSQ_CHUNK 65536

__global__ static void k_sumsq_part(double *part, const float *g, size_t n)
{
    __shared__ double sh[TPB / 32];
    size_t s = (size_t)blockIdx.x * SUMSQ_CHUNK, e = s + SUMSQ_CHUNK < n ? s + SUMSQ_CHUNK : n;
    double a = 0;
    for (size_t i = s + threadIdx.x; i < e; i += TPB) a += (double)g[i] * g[i];
    a = block_sum_d(a, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = a;
}

__global__ static void k_sumsq_total(double *out, const double *part, size_t nchunk)
{
    double t = 0;
    for (size_t k = 0; k < nchunk; k++) t += part[k];   // chunks in order
    *out = t;
}

extern "C" size_t cuda_sumsq_scratch(size_t n)
{
    return (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK + 1;
}

extern "C" void cuda_sumsq(cuda_ctx *c, double *out, const float *g, size_t n, double *scratch)
{
    size_t nchunk = (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
    if (nchunk) k_sumsq_part<<<(unsigned)nchunk, TPB, 0, c->stream>>>(scratch, g, n);
    k_sumsq_total<<<1, 1, 0, c->stream>>>(out, scratch, nchunk);
}

extern "C" void cuda_sumsq_blocks(cuda_ctx *c, double *part, const float *g, size_t n)
{
    size_t nchunk = (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
    if (nchunk) k_sumsq_part<<<(unsigned)nchunk, TPB, 0, c->stream>>>(part, g, n);
}

__global__ static void k_clip(float *g, size_t n, const double *sumsq, float max_norm)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    float f = max_norm / ((float)sqrt(*sumsq) + 1e-6f);
    if (i < n && f < 1.0f) g[i] *= f;
}

extern "C" void cuda_clip(cuda_ctx *c, float *g, size_t n, const double *sumsq, float max_norm)
{
    if (max_norm > 0) k_clip<<<cuda_blocks(n, TPB), TPB, 0, c->stream>>>(g, n, sumsq, max_norm);
}

__global__ static void k_adamw(float *p, const float *g, float *m, float *v, size_t n, float b1, float b2,
                               float eps, float decay, float step, float bc2s)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i];
    float mi = b1 * m[i] + (1.0f - b1) * gi;
    float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step * mi / (sqrtf(vi) / bc2s + eps);
}

extern "C" void cuda_adamw(cuda_ctx *c, float *p, const float *g, float *m, float *v, size_t n, float lr,
                           float beta1, float beta2, float eps, float weight_decay, int decay, long step)
{
    double t = (double)step;
    float bc1 = (float)(1.0 - pow(beta1, t)), bc2 = (float)(1.0 - pow(beta2, t));
    k_adamw<<<cuda_blocks(n, TPB), TPB, 0, c->stream>>>(p, g, m, v, n, beta1, beta2, eps,
                                                         decay ? 1.0f - lr * weight_decay : 1.0f,
                                                         lr / bc1, sqrtf(bc2));
}
