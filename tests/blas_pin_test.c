/* blas_pin_test.c — OpenBLAS runs the pinned AVX2 kernels on every x86-64
 * CPU with AVX2 and FMA, whatever OPENBLAS_CORETYPE the user set, and the
 * user's variable is given back (kernels/cpu/blas.c); the fp32 GEMM of
 * the CPU model then has the bytes recorded here, which were made by those
 * kernels on a Zen 4 (where OpenBLAS alone picks Cooper Lake's AVX-512
 * kernels, whose bytes differ).
 *
 * The process re-runs itself twice, without the variable and with it set
 * to another CPU's kernels, since the pin happens before main. */
#include "kernels/cpu/bert_ops.h"
#include "kernels/kernels.h"
#include "test.h"

#include <stdint.h>

extern char **environ;

/* C = A B^T at shapes with long K (several of OpenBLAS's K blocks) and edge
 * tiles, through the model's gemm(); FNV-1a of C's bytes */
static uint64_t gemm_digest(int M, int N, int K)
{
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * N * K), *C = malloc(sizeof(float) * M * N);
    uint32_t s = 12345;
    for (int i = 0; i < M * K; i++) { s = s * 1664525u + 1013904223u; A[i] = (float)(s >> 8) / 16777216.0f - 0.5f; }
    for (int i = 0; i < N * K; i++) { s = s * 1664525u + 1013904223u; B[i] = (float)(s >> 8) / 16777216.0f - 0.5f; }
    gemm(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
    uint64_t h = 1469598103934665603ull;
    const unsigned char *p = (const unsigned char *)C;
    for (size_t i = 0; i < sizeof(float) * (size_t)M * N; i++) { h ^= p[i]; h *= 1099511628211ull; }
    free(A); free(B); free(C);
    return h;
}

static int has_avx2_fma(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* what a child checks: the pinned kernels, the user's variable (or none)
 * back in the environment, and the recorded bytes */
static int child(const char *want_env)
{
    const char *v = getenv("OPENBLAS_CORETYPE");
    CHECK_MSG(blas_kernels_pinned(), "OpenBLAS runs its %s kernels, not the pinned ones", blas_kernels());
    if (want_env[0]) CHECK_MSG(v && !strcmp(v, want_env), "OPENBLAS_CORETYPE is %s, the user set %s", v ? v : "unset", want_env);
    else CHECK_MSG(!v, "OPENBLAS_CORETYPE is %s, the user set none", v);
    uint64_t d1 = gemm_digest(200, 150, 1000), d2 = gemm_digest(37, 61, 5000);
    CHECK_MSG(d1 == 0xc5374ef5fc004e8eull, "gemm 200 x 150 x 1000 bytes %016llx, not the pinned kernels'", (unsigned long long)d1);
    CHECK_MSG(d2 == 0x3c0d8cd4a21c3908ull, "gemm 37 x 61 x 5000 bytes %016llx, not the pinned kernels'", (unsigned long long)d2);
    return test_summary(want_env[0] ? "blas_pin_test (user variable)" : "blas_pin_test (no variable)");
}

static int run_child(const char *env_value)
{
    pid_t p = fork();
    if (p == 0) {
        if (env_value) setenv("OPENBLAS_CORETYPE", env_value, 1);
        else unsetenv("OPENBLAS_CORETYPE");
        char *argv[] = { "blas_pin_test", "child", (char *)(env_value ? env_value : ""), NULL };
        execve("/proc/self/exe", argv, environ);
        _exit(127);
    }
    pid_t pid[1] = { p };
    return test_wait_children(pid, 1);
}

int main(int argc, char **argv)
{
    gemm_threads_setup();
    if (argc == 3 && !strcmp(argv[1], "child")) return child(argv[2]);
    if (!has_avx2_fma()) {
        /* nothing to pin: the commands key such bytes apart (key_test) */
        printf("SKIP-PART: blas_pin_test:pin: this CPU has no AVX2+FMA, OpenBLAS runs %s\n", blas_kernels());
        return 77;
    }
    CHECK_MSG(run_child(NULL) == 0, "the run without OPENBLAS_CORETYPE failed");
    CHECK_MSG(run_child("SkylakeX") == 0, "the run with OPENBLAS_CORETYPE=SkylakeX failed");
    return test_summary("blas_pin_test");
}
