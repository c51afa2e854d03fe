// cuda_gemm.cu — the GEMMs of kernels/cuda (cuda_ops.h): Linear forward
// and backward through cuBLASLt (a plan per shape: descriptor, layouts and
// the heuristic's algorithm made once and cached in the context; the bias
// is a BIAS epilogue), and attention as cuBLAS strided-batched GEMMs
// around the fused masked softmax of cuda_ops.cu.
//
// Row-major C = A B is computed as column-major C^T = B^T A^T, so each
// call below names the column-major operands.  fp32 (no TF32), or, after
// cuda_set_precision, the Linears' operands as bf16 / fp16 copies with
// fp32 accumulation and fp32 output (mixed precision; attention stays fp32).
//
// Why not the GELU epilogue: cuBLASLt's GELU epilogues are the tanh
// approximation; BERT (HF and the CPU twin) uses the erf form, so the
// forward uses the BIAS epilogue into `pre` and cuda_gelu_forward after it.
// Why not the BGRADB epilogue: it writes the bias gradient, ours
// accumulates over micro-batches, so cuda_ops.cu's column-sum adds it.
// Compiled for sm_86 / sm_90; never run on a GPU yet.
#include "cuda_internal.h"

#include <string.h>

// kernels of cuda_ops.cu used here
void cuda_colsum_acc(cuda_ctx *c, float *db, const float *dout, int N, int OC);
void cuda_attn_softmax(cuda_ctx *c, float *P, const int32_t *mask, int B, int nh, int T);
void cuda_attn_softmax_backward(cuda_ctx *c, float *dS, const float *P, int B, int nh, int T);

// Finds or makes the plan for column-major D[m,n] = op(A) op(B) (+ bias).
// align: the byte alignment every pointer of the call has (16 or 4): the
// heuristic otherwise assumes 256-byte aligned pointers, and the model's
// tensors and activation slices sit at any float offset of their buffers.
// prec: the operands' type (0 fp32, 1 bf16, 2 fp16); C and D are fp32.
static int plan_get(cuda_ctx *c, int ta, int tb, int m, int n, int k, int lda, int ldb, int ldc,
                    int bias, int align, int prec, cuda_plan **out, flow_err *e)
{
    int epi = bias ? (int)CUBLASLT_EPILOGUE_BIAS : (int)CUBLASLT_EPILOGUE_DEFAULT;
    cuda_plan *p = NULL;
    for (int i = 0; i < CUDA_PLANS; i++) {
        cuda_plan *q = &c->plans[i];
        if (q->used && q->ta == ta && q->tb == tb && q->m == m && q->n == n && q->k == k &&
            q->lda == lda && q->ldb == ldb && q->ldc == ldc && q->epilogue == epi && q->align == align && q->prec == prec) {
            *out = q;
            return 0;
        }
        if (!q->used && !p) p = q;
    }
    if (!p) {
        // Every slot used: a model sees a new M (MLM rows) or T (length
        // buckets) now and then, so the cache evicts round robin.  A
        // descriptor is host state that cublasLtMatmul reads when called,
        // so destroying one after earlier calls were enqueued is safe.
        p = &c->plans[c->plan_evict++ % CUDA_PLANS];
        cublasLtMatrixLayoutDestroy(p->a);
        cublasLtMatrixLayoutDestroy(p->b);
        cublasLtMatrixLayoutDestroy(p->c);
        cublasLtMatmulDescDestroy(p->desc);
    }
    memset(p, 0, sizeof *p);
    cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtEpilogue_t ep = (cublasLtEpilogue_t)epi;
    cublasStatus_t s = cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (!s) s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa);
    if (!s) s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb);
    if (!s) s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep);
    cudaDataType_t ab = prec == 1 ? CUDA_R_16BF : prec == 2 ? CUDA_R_16F : CUDA_R_32F;
    if (!s && bias && prec) {   // the bias stays fp32 (the default follows D, fp32: said explicitly)
        cudaDataType_t bt = CUDA_R_32F;
        s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt);
    }
    if (!s) s = cublasLtMatrixLayoutCreate(&p->a, ab, ta ? k : m, ta ? m : k, lda);
    if (!s) s = cublasLtMatrixLayoutCreate(&p->b, ab, tb ? n : k, tb ? k : n, ldb);
    if (!s) s = cublasLtMatrixLayoutCreate(&p->c, CUDA_R_32F, m, n, ldc);
    cublasLtMatmulPreference_t pref = NULL;
    size_t ws = CUDA_WORKSPACE;
    if (!s) s = cublasLtMatmulPreferenceCreate(&pref);
    if (!s) s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    uint32_t al = (uint32_t)align;
    if (!s) s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, sizeof al);
    if (!s) s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al, sizeof al);
    if (!s) s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al, sizeof al);
    if (!s) s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al, sizeof al);
    cublasLtMatmulHeuristicResult_t h;
    int found = 0;
    if (!s) s = cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->a, p->b, p->c, p->c, pref, 1, &h, &found);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (s || found < 1) {
        if (p->a) cublasLtMatrixLayoutDestroy(p->a);
        if (p->b) cublasLtMatrixLayoutDestroy(p->b);
        if (p->c) cublasLtMatrixLayoutDestroy(p->c);
        if (p->desc) cublasLtMatmulDescDestroy(p->desc);
        memset(p, 0, sizeof *p);
        return flow_fail(e, FLOW_E_STAGE, "cublasLt: no algorithm for %dx%dx%d (status %d)", m, n, k, (int)s);
    }
    p->algo = h.algo;
    p->used = 1;
    p->ta = ta; p->tb = tb; p->m = m; p->n = n; p->k = k;
    p->lda = lda; p->ldb = ldb; p->ldc = ldc; p->epilogue = epi; p->align = align; p->prec = prec;
    *out = p;
    return 0;
}

extern "C" void cuda_set_precision(cuda_ctx *c, int precision)
{
    c->precision = precision;
}

// The 16-bit copy of one operand: the column-major matrix of rows x cols
// with leading dimension ld spans (cols - 1) ld + rows elements from its
// start, all cast (the gaps too, so the copy keeps ld).
static int cast_operand(cuda_ctx *c, int slot, const float *src, int rows, int cols, int ld, const void **out,
                        flow_err *e)
{
    size_t n = (size_t)(cols - 1) * ld + rows;
    if (n > c->cast_cap[slot]) {   // a new high-water mark: cudaFree waits for the device
        if (c->cast[slot]) cudaFree(c->cast[slot]);
        c->cast[slot] = NULL;
        c->cast_cap[slot] = 0;
        size_t cap = n + n / 4;
        cudaError_t rc = cudaMalloc(&c->cast[slot], cap * 2);
        if (rc != cudaSuccess) {
            c->cast[slot] = NULL;
            return flow_fail(e, FLOW_E_NOMEM, "cuda: cannot allocate %.1f MiB for a 16-bit GEMM operand: %s",
                             cap * 2 / 1048576.0, cudaGetErrorString(rc));
        }
        c->cast_cap[slot] = cap;
    }
    if (c->precision == 1) cuda_cast_bf16(c, c->cast[slot], src, n);
    else cuda_cast_fp16(c, c->cast[slot], src, n);
    *out = c->cast[slot];
    return 0;
}

static int lt_gemm(cuda_ctx *c, int ta, int tb, int m, int n, int k, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc, const float *bias,
                   flow_err *e)
{
    cuda_plan *p;
    const void *a = A, *b = B;
    int prec = c->precision;
    if (prec) {     // mixed precision: 16-bit copies of A and B, fp32 C
        int rc = cast_operand(c, 0, A, ta ? k : m, ta ? m : k, lda, &a, e);
        if (!rc) rc = cast_operand(c, 1, B, tb ? n : k, tb ? k : n, ldb, &b, e);
        if (rc) return rc;
    }
    uintptr_t any = (uintptr_t)a | (uintptr_t)b | (uintptr_t)C | (uintptr_t)bias;
    int rc = plan_get(c, ta, tb, m, n, k, lda, ldb, ldc, bias != NULL, any % 16 == 0 ? 16 : 4, prec, &p, e);
    if (rc) return rc;
    if (bias) {     // a host-side attribute write per call, no device work
        cublasStatus_t s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                          &bias, sizeof bias);
        if (s) return cublas_fail(e, (int)s, "bias pointer");
    }
    float alpha = 1.0f;
    cublasStatus_t s = cublasLtMatmul(c->lt, p->desc, &alpha, a, p->a, b, p->b, &beta, C, p->c, C, p->c,
                                      &p->algo, c->workspace, CUDA_WORKSPACE, c->stream);
    return s ? cublas_fail(e, (int)s, "cublasLtMatmul") : 0;
}

extern "C" int cuda_linear_forward(cuda_ctx *c, float *out, float *pre, const float *inp, const float *W,
                                   const float *b, int N, int IC, int OC, int gelu, flow_err *e)
{
    // out^T[OC,N] = W^T'[OC,IC] (W row-major = col-major [IC,OC], op T) x inp^T [IC,N]
    float *dst = gelu ? pre : out;
    int rc = lt_gemm(c, 1, 0, OC, N, IC, W, IC, inp, IC, 0.0f, dst, OC, b, e);
    if (!rc && gelu) cuda_gelu_forward(c, out, pre, (size_t)N * OC);
    return rc;
}

extern "C" int cuda_linear_backward(cuda_ctx *c, float *dinp, float *dW, float *db, const float *dout,
                                    const float *inp, const float *W, int N, int IC, int OC, int acc,
                                    flow_err *e)
{
    int rc = 0;
    // dinp^T[IC,N] = W (col-major [IC,OC]) x dout^T [OC,N]
    if (dinp) rc = lt_gemm(c, 0, 0, IC, N, OC, W, IC, dout, OC, acc ? 1.0f : 0.0f, dinp, IC, NULL, e);
    // dW^T[IC,OC] += inp^T [IC,N] x (dout^T [OC,N])^T
    if (!rc) rc = lt_gemm(c, 0, 1, IC, OC, N, inp, IC, dout, OC, 1.0f, dW, IC, NULL, e);
    if (!rc && db) cuda_colsum_acc(c, db, dout, N, OC);
    return rc;
}

// ---- attention ------------------------------------------------------------
extern "C" size_t cuda_attention_scratch(int B, int T, int nh, int d)
{
    (void)d;
    return 2 * (size_t)B * nh * T * T;  // dropped probabilities | their gradient
}

// per sequence b: nh GEMMs strided by d (heads) in one call
static int sbatched(cuda_ctx *c, int ta, int tb, int m, int n, int k, float alpha, const float *A,
                    int lda, long long sa, const float *B, int ldb, long long sb, float beta, float *C,
                    int ldc, long long sc, int count, flow_err *e)
{
    cublasStatus_t s = cublasSgemmStridedBatched(c->blas, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                                 tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, A, lda,
                                                 sa, B, ldb, sb, &beta, C, ldc, sc, count);
    return s ? cublas_fail(e, (int)s, "cublasSgemmStridedBatched") : 0;
}

extern "C" int cuda_attention_forward(cuda_ctx *c, float *ctx, float *probs, const float *qkv,
                                      const int32_t *mask, int B, int T, int nh, int d, float p_drop,
                                      uint64_t key, float *scratch, flow_err *e)
{
    int A = nh * d, ld = 3 * A;
    float scale = 1.0f / sqrtf((float)d);
    size_t TT = (size_t)T * T;
    for (int b = 0; b < B; b++) {
        const float *q = qkv + (size_t)b * T * ld, *k = q + A;
        // S^T[Tk,Tq] = (K col-major [d,Tk])^T x Q [d,Tq]  -> row-major S[Tq][Tk] = scale q k^T
        int rc = sbatched(c, 1, 0, T, T, d, scale, k, ld, d, q, ld, d, 0.0f, probs + (size_t)b * nh * TT, T,
                          (long long)TT, nh, e);
        if (rc) return rc;
    }
    cuda_attn_softmax(c, probs, mask, B, nh, T);
    const float *Pd = probs;
    if (p_drop > 0) {
        cuda_dropout_forward(c, scratch, probs, (size_t)B * nh * TT, p_drop, key);
        Pd = scratch;
    }
    for (int b = 0; b < B; b++) {
        const float *v = qkv + (size_t)b * T * ld + 2 * A;
        // ctx^T[d,Tq] = V [d,Tk] x Pd^T [Tk,Tq]
        int rc = sbatched(c, 0, 0, d, T, T, 1.0f, v, ld, d, Pd + (size_t)b * nh * TT, T, (long long)TT, 0.0f,
                          ctx + (size_t)b * T * A, A, d, nh, e);
        if (rc) return rc;
    }
    return 0;
}

extern "C" int cuda_attention_backward(cuda_ctx *c, float *dqkv, const float *dctx, const float *qkv,
                                       const float *probs, int B, int T, int nh, int d, float p_drop,
                                       uint64_t key, float *scratch, flow_err *e)
{
    int A = nh * d, ld = 3 * A;
    float scale = 1.0f / sqrtf((float)d);
    size_t TT = (size_t)T * T, n = (size_t)B * nh * TT;
    float *Pd = scratch, *dP = scratch + n;
    const float *P1 = probs;
    if (p_drop > 0) {
        cuda_dropout_forward(c, Pd, probs, n, p_drop, key);
        P1 = Pd;
    }
    int rc = 0;
    for (int b = 0; !rc && b < B; b++) {
        const float *v = qkv + (size_t)b * T * ld + 2 * A, *dc = dctx + (size_t)b * T * A;
        float *dv = dqkv + (size_t)b * T * ld + 2 * A;
        // dPd[Tq][Tk] = dctx v^T: col-major dPd^T[Tk,Tq] = (V [d,Tk])^T x dctx [d,Tq]
        rc = sbatched(c, 1, 0, T, T, d, 1.0f, v, ld, d, dc, A, d, 0.0f, dP + (size_t)b * nh * TT, T,
                      (long long)TT, nh, e);
        // dV = Pd^T dctx: col-major dV^T[d,Tk] = dctx [d,Tq] x (Pd^T col-major [Tk,Tq])^T
        if (!rc) rc = sbatched(c, 0, 1, d, T, T, 1.0f, dc, A, d, P1 + (size_t)b * nh * TT, T, (long long)TT,
                               0.0f, dv, ld, d, nh, e);
    }
    if (rc) return rc;
    if (p_drop > 0) cuda_dropout_backward(c, dP, dP, n, p_drop, key);
    cuda_attn_softmax_backward(c, dP, probs, B, nh, T);     // dP -> dS in place
    for (int b = 0; !rc && b < B; b++) {
        const float *q = qkv + (size_t)b * T * ld, *k = q + A, *dS = dP + (size_t)b * nh * TT;
        float *dq = dqkv + (size_t)b * T * ld, *dk = dq + A;
        // dQ = scale dS K: col-major dQ^T[d,Tq] = K [d,Tk] x dS^T [Tk,Tq]
        rc = sbatched(c, 0, 0, d, T, T, scale, k, ld, d, dS, T, (long long)TT, 0.0f, dq, ld, d, nh, e);
        // dK = scale dS^T Q: col-major dK^T[d,Tk] = Q [d,Tq] x (dS^T [Tk,Tq])^T
        if (!rc) rc = sbatched(c, 0, 1, d, T, T, scale, q, ld, d, dS, T, (long long)TT, 0.0f, dk, ld, d, nh, e);
    }
    return rc;
}
