// cuda_model_ops.cu — the CUDA twins of the model-level CPU ops that the
// BERT backend (bert_cuda.cu) needs beyond cuda_ops.cu: the embedding
// gather and its scatter-add backward, row gather/scatter (the MLM head's
// labelled rows), the two poolings of the classifier (pool_ops.c), tanh,
// and gradient scaling.  Each kernel is the CPU loop with one thread per
// output element (or per output column), adding in the CPU's order, so
// the embedding, pooling and row kernels give the CPU's bits for the same
// inputs.  Compiled for sm_86 and sm_90; never run on a GPU yet.
#include "cuda_internal.h"

#define TPB 256

// ---- embeddings ------------------------------------------------------------
// out[n,c] = wte[ids[n],c] + wpe[n % T,c] + wtt[types[n],c]  (embedding_forward)
__global__ static void k_embed(float *out, const int32_t *ids, const int32_t *types, const float *wte,
                               const float *wpe, const float *wtt, int T, int H, size_t total)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= total) return;
    size_t n = i / (size_t)H;
    int c = (int)(i % (size_t)H);
    int t = (int)(n % (size_t)T), y = types ? types[n] : 0;
    out[i] = wte[(size_t)ids[n] * H + c] + wpe[(size_t)t * H + c] + wtt[(size_t)y * H + c];
}

extern "C" void cuda_embedding_forward(cuda_ctx *c, float *out, const int32_t *ids, const int32_t *types,
                                       const float *wte, const float *wpe, const float *wtt, int B, int T, int H)
{
    size_t total = (size_t)B * T * H;
    k_embed<<<cuda_blocks(total, TPB), TPB, 0, c->stream>>>(out, ids, types, wte, wpe, wtt, T, H, total);
}

// One thread per (table row u, column): table[uniq[u]] += src[pos[k]] for
// k = off[u] .. off[u+1]-1 in order — the CPU's sequence of additions
// (embedding_backward adds the positions of a row in increasing order).
__global__ static void k_rows_scatter(float *table, const int32_t *uniq, const int32_t *off,
                                      const int32_t *pos, const float *src, int H)
{
    int u = blockIdx.x, col = blockIdx.y * blockDim.x + threadIdx.x;
    if (col >= H) return;
    float *w = table + (size_t)uniq[u] * H + col;
    float acc = *w;
    for (int k = off[u]; k < off[u + 1]; k++) acc += src[(size_t)pos[k] * H + col];
    *w = acc;
}

extern "C" void cuda_rows_scatter_add(cuda_ctx *c, float *table, const int32_t *uniq, const int32_t *off,
                                      const int32_t *pos, int nuniq, const float *src, int H)
{
    if (nuniq <= 0) return;
    dim3 grid((unsigned)nuniq, cuda_blocks((size_t)H, TPB));
    k_rows_scatter<<<grid, TPB, 0, c->stream>>>(table, uniq, off, pos, src, H);
}

// ---- rows: dst[i] = src[rows[i]]; dst[rows[i]] += src[i] (rows distinct) -----
__global__ static void k_gather(float *dst, const float *src, const int32_t *rows, int H, size_t total)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= total) return;
    size_t r = i / (size_t)H, col = i % (size_t)H;
    dst[i] = src[(size_t)rows[r] * H + col];
}

__global__ static void k_scatter_add(float *dst, const float *src, const int32_t *rows, int H, size_t total)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= total) return;
    size_t r = i / (size_t)H, col = i % (size_t)H;
    dst[(size_t)rows[r] * H + col] += src[i];
}

extern "C" void cuda_gather_rows(cuda_ctx *c, float *dst, const float *src, const int32_t *rows, int M, int H)
{
    size_t total = (size_t)M * H;
    if (total) k_gather<<<cuda_blocks(total, TPB), TPB, 0, c->stream>>>(dst, src, rows, H, total);
}

extern "C" void cuda_scatter_add_rows(cuda_ctx *c, float *dst, const float *src, const int32_t *rows, int M, int H)
{
    size_t total = (size_t)M * H;
    if (total) k_scatter_add<<<cuda_blocks(total, TPB), TPB, 0, c->stream>>>(dst, src, rows, H, total);
}

// ---- pooling (pool_ops.c) ------------------------------------------------------
// cls: out[b] = h[b*T]; backward dh[b*T] += dout[b]
__global__ static void k_cls_pool(float *out, const float *h, int T, int H, size_t total)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= total) return;
    size_t b = i / (size_t)H, col = i % (size_t)H;
    out[i] = h[b * T * H + col];
}

__global__ static void k_cls_pool_bwd(float *dh, const float *dout, int T, int H, size_t total)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= total) return;
    size_t b = i / (size_t)H, col = i % (size_t)H;
    dh[b * T * H + col] += dout[i];
}

// real positions of sequence b (>= 1: position 0 is real)
__device__ static int real_count(const int32_t *mask, int b, int T)
{
    if (!mask) return T;
    int n = 0;
    for (int t = 0; t < T; t++) n += mask[(size_t)b * T + t] != 0;
    return n;
}

// one thread per (b, column): the sum over real t in position order, then / n
__global__ static void k_mean_pool(float *out, const float *h, const int32_t *mask, int B, int T, int H)
{
    int b = blockIdx.y, col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= H || b >= B) return;
    float o = 0;
    for (int t = 0; t < T; t++) {
        if (mask && !mask[(size_t)b * T + t]) continue;
        o += h[((size_t)b * T + t) * H + col];
    }
    out[(size_t)b * H + col] = o / (float)real_count(mask, b, T);
}

__global__ static void k_mean_pool_bwd(float *dh, const float *dout, const int32_t *mask, int B, int T, int H)
{
    int b = blockIdx.y, col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= H || b >= B) return;
    float n = (float)real_count(mask, b, T), s = dout[(size_t)b * H + col];
    for (int t = 0; t < T; t++) {
        if (mask && !mask[(size_t)b * T + t]) continue;
        dh[((size_t)b * T + t) * H + col] += s / n;
    }
}

extern "C" void cuda_cls_pool_forward(cuda_ctx *c, float *out, const float *h, int B, int T, int H)
{
    size_t total = (size_t)B * H;
    k_cls_pool<<<cuda_blocks(total, TPB), TPB, 0, c->stream>>>(out, h, T, H, total);
}

extern "C" void cuda_cls_pool_backward(cuda_ctx *c, float *dh, const float *dout, int B, int T, int H)
{
    size_t total = (size_t)B * H;
    k_cls_pool_bwd<<<cuda_blocks(total, TPB), TPB, 0, c->stream>>>(dh, dout, T, H, total);
}

extern "C" void cuda_mean_pool_forward(cuda_ctx *c, float *out, const float *h, const int32_t *mask, int B, int T,
                                       int H)
{
    dim3 grid(cuda_blocks((size_t)H, TPB), (unsigned)B);
    k_mean_pool<<<grid, TPB, 0, c->stream>>>(out, h, mask, B, T, H);
}

extern "C" void cuda_mean_pool_backward(cuda_ctx *c, float *dh, const float *dout, const int32_t *mask, int B,
                                        int T, int H)
{
    dim3 grid(cuda_blocks((size_t)H, TPB), (unsigned)B);
    k_mean_pool_bwd<<<grid, TPB, 0, c->stream>>>(dh, dout, mask, B, T, H);
}

// ---- tanh, scaling -------------------------------------------------------------------
__global__ static void k_tanh(float *out, const float *x, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = tanhf(x[i]);
}

// dinp = dout * (1 - out^2), from the forward output (may alias dout)
__global__ static void k_tanh_bwd(float *dx, const float *y, const float *dout, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) dx[i] = dout[i] * (1.0f - y[i] * y[i]);
}

__global__ static void k_scale(float *g, size_t n, float f)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) g[i] *= f;
}

extern "C" void cuda_tanh_forward(cuda_ctx *c, float *out, const float *inp, size_t n)
{
    if (n) k_tanh<<<cuda_blocks(n, TPB), TPB, 0, c->stream>>>(out, inp, n);
}

extern "C" void cuda_tanh_backward(cuda_ctx *c, float *dinp, const float *out, const float *dout, size_t n)
{
    if (n) k_tanh_bwd<<<cuda_blocks(n, TPB), TPB, 0, c->stream>>>(dinp, out, dout, n);
}

extern "C" void cuda_scale(cuda_ctx *c, float *g, size_t n, float f)
{
    if (n) k_scale<<<cuda_blocks(n, TPB), TPB, 0, c->stream>>>(g, n, f);
}
