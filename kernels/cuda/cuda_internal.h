/* cuda_internal.h — what the .cu files of kernels/cuda share: the context
 * (device, stream, cuBLAS/cuBLASLt handles, the GEMM workspace and the
 * cache of cuBLASLt plans) and the error helpers.  C++ (nvcc) only. */
#ifndef FLOW_CUDA_INTERNAL_H
#define FLOW_CUDA_INTERNAL_H

#include "cuda_ops.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#define CUDA_PLANS 128            /* cached GEMM shapes; the oldest is evicted when full */
#define CUDA_WORKSPACE (32u << 20)     /* cuBLASLt workspace: 32 MiB, allocated once */
#define BERT_LN_EPS_F 1e-12f            /* = BERT_LN_EPS of kernels/cpu/bert_ops.h */

/* one cuBLASLt GEMM shape: descriptor, layouts and the algorithm chosen
 * once by the heuristic */
typedef struct cuda_plan {
    int used;
    int ta, tb, m, n, k, lda, ldb, ldc, epilogue, align, prec;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} cuda_plan;

struct cuda_ctx {
    int dev;
    cudaStream_t stream;
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    void *workspace;
    cuda_plan plans[CUDA_PLANS];
    unsigned plan_evict;        /* next slot to evict (round robin) when every slot is used */
    int precision;              /* of the Linear GEMMs: 0 fp32, 1 bf16, 2 fp16 (cuda_set_precision) */
    void *cast[2];              /* 16-bit copies of a GEMM's two operands (mixed precision) */
    size_t cast_cap[2];         /* their capacity in elements: the largest operand so far */
};

static inline int cuda_fail(flow_err *e, cudaError_t rc, const char *what)
{
    return flow_fail(e, FLOW_E_STAGE, "cuda: %s: %s", what, cudaGetErrorString(rc));
}

static inline int cublas_fail(flow_err *e, int rc, const char *what)
{
    return flow_fail(e, FLOW_E_STAGE, "cublas: %s: status %d", what, rc);
}

/* ceil(n / b) as a grid size */
static inline unsigned cuda_blocks(size_t n, unsigned b) { return (unsigned)((n + b - 1) / b); }

#endif
