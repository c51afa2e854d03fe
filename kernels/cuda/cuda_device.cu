// cuda_device.cu — devices and the per-thread context of kernels/cuda
// (cuda_ops.h): counting GPUs without a CUDA context in the caller, device
// info, context create/free (stream, cuBLAS, cuBLASLt, workspace: all
// created once) and memory (the module's table is cuda_module_api.cu).
// Compiled here; never run on a GPU yet.
#include "cuda_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

// The count comes from a child process: cudaGetDeviceCount initialises the
// driver in the calling process, and a scheduler that forks workers after
// that hands them a CUDA state they cannot use.  The child writes the
// count and CUDA's error text to a pipe and exits; CUDA_VISIBLE_DEVICES
// applies as usual.
typedef struct count_msg {
    int n;
    char why[200];
} count_msg;

extern "C" int cuda_device_count_forked(char *why, size_t why_len)
{
    if (why_len) why[0] = 0;
    int fd[2];
    if (pipe(fd) != 0) {
        snprintf(why, why_len, "pipe: %s", strerror(errno));
        return 0;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, why_len, "fork: %s", strerror(errno));
        close(fd[0]);
        close(fd[1]);
        return 0;
    }
    if (pid == 0) {
        close(fd[0]);
        count_msg m;
        memset(&m, 0, sizeof m);
        cudaError_t rc = cudaGetDeviceCount(&m.n);
        if (rc != cudaSuccess) {
            m.n = 0;
            snprintf(m.why, sizeof m.why, "cudaGetDeviceCount: %s", cudaGetErrorString(rc));
        } else if (m.n == 0) {
            snprintf(m.why, sizeof m.why, "cudaGetDeviceCount reports 0 devices");
        }
        ssize_t w = write(fd[1], &m, sizeof m);
        _exit(w == (ssize_t)sizeof m ? 0 : 1);
    }
    close(fd[1]);
    count_msg m;
    memset(&m, 0, sizeof m);
    ssize_t r = read(fd[0], &m, sizeof m);
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (r != (ssize_t)sizeof m) {
        snprintf(why, why_len, "the process counting the devices died (status %d)", st);
        return 0;
    }
    m.why[sizeof m.why - 1] = 0;
    snprintf(why, why_len, "%s", m.why);
    return m.n;
}

extern "C" int cuda_device_info(int dev, char *name, size_t name_len, int *major, int *minor,
                                size_t *mem_bytes, flow_err *e)
{
    cudaDeviceProp p;
    cudaError_t rc = cudaGetDeviceProperties(&p, dev);
    if (rc != cudaSuccess) return cuda_fail(e, rc, "cudaGetDeviceProperties");
    snprintf(name, name_len, "%s", p.name);
    *major = p.major;
    *minor = p.minor;
    *mem_bytes = p.totalGlobalMem;
    return 0;
}

extern "C" int cuda_ctx_new(int dev, cuda_ctx **out, flow_err *e)
{
    *out = NULL;
    cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof *c);
    if (!c) return flow_fail(e, FLOW_E_NOMEM, "cuda: out of memory");
    c->dev = dev;
    cudaError_t rc = cudaSetDevice(dev);
    if (rc == cudaSuccess) rc = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (rc != cudaSuccess) {
        free(c);
        return cuda_fail(e, rc, "device setup");
    }
    cublasStatus_t bs = cublasCreate(&c->blas);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(c->blas, c->stream);
    // fp32 GEMMs stay fp32 (no TF32): the tests compare with the CPU
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetMathMode(c->blas, CUBLAS_PEDANTIC_MATH);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasLtCreate(&c->lt);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        cuda_ctx_free(c);
        return cublas_fail(e, (int)bs, "handles");
    }
    rc = cudaMalloc(&c->workspace, CUDA_WORKSPACE);
    if (rc != cudaSuccess) {
        cuda_ctx_free(c);
        return cuda_fail(e, rc, "GEMM workspace");
    }
    *out = c;
    return 0;
}

extern "C" void cuda_ctx_free(cuda_ctx *c)
{
    if (!c) return;
    for (int i = 0; i < CUDA_PLANS; i++) {
        cuda_plan *p = &c->plans[i];
        if (!p->used) continue;
        cublasLtMatrixLayoutDestroy(p->a);
        cublasLtMatrixLayoutDestroy(p->b);
        cublasLtMatrixLayoutDestroy(p->c);
        cublasLtMatmulDescDestroy(p->desc);
    }
    if (c->workspace) cudaFree(c->workspace);
    for (int i = 0; i < 2; i++)
        if (c->cast[i]) cudaFree(c->cast[i]);
    if (c->lt) cublasLtDestroy(c->lt);
    if (c->blas) cublasDestroy(c->blas);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

extern "C" int cuda_sync(cuda_ctx *c, flow_err *e)
{
    cudaError_t rc = cudaStreamSynchronize(c->stream);
    if (rc == cudaSuccess) rc = cudaGetLastError();
    return rc == cudaSuccess ? 0 : cuda_fail(e, rc, "stream");
}

extern "C" int cuda_alloc(cuda_ctx *c, void **p, size_t bytes, flow_err *e)
{
    (void)c;
    cudaError_t rc = cudaMalloc(p, bytes ? bytes : 4);
    if (rc != cudaSuccess)
        return flow_fail(e, FLOW_E_NOMEM, "cuda: cannot allocate %.1f MiB on the device: %s",
                         bytes / 1048576.0, cudaGetErrorString(rc));
    return 0;
}

extern "C" void cuda_free(void *p)
{
    if (p) cudaFree(p);
}

extern "C" int cuda_upload(cuda_ctx *c, void *dst, const void *src, size_t bytes, flow_err *e)
{
    cudaError_t rc = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream);
    if (rc == cudaSuccess) rc = cudaStreamSynchronize(c->stream);
    return rc == cudaSuccess ? 0 : cuda_fail(e, rc, "upload");
}

extern "C" int cuda_download(cuda_ctx *c, void *dst, const void *src, size_t bytes, flow_err *e)
{
    cudaError_t rc = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream);
    if (rc == cudaSuccess) rc = cudaStreamSynchronize(c->stream);
    return rc == cudaSuccess ? 0 : cuda_fail(e, rc, "download");
}

extern "C" int cuda_memset0(cuda_ctx *c, void *p, size_t bytes, flow_err *e)
{
    cudaError_t rc = cudaMemsetAsync(p, 0, bytes, c->stream);
    return rc == cudaSuccess ? 0 : cuda_fail(e, rc, "memset");
}

