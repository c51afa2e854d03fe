/* blas.c — loads OpenBLAS with one set of kernels on every x86-64 machine,
 * so that fp32 GEMM, and with it every trained model, has the same bytes
 * whatever the CPU.
 *
 * Debian's OpenBLAS is built for all CPUs and picks its kernels when it is
 * loaded: the AVX2 "Haswell" kernels on Haswell..Comet Lake and Zen 1-3
 * (OpenBLAS's "Zen" runs the same kernels and blocking: bit-identical
 * results, checked from 128^3 up to 4096 x 3072 x 768 and K = 9000), and
 * AVX-512 kernels on Skylake-X, Cooper Lake, Sapphire Rapids and Zen 4,
 * whose sums round differently.  A pretrain node on a Zen 4 therefore wrote
 * other weights than the same key on a Zen 3 (golden_test failed on the
 * first Zen 4 machine, 2026-12-02).  Every CPU with AVX2 and FMA can run
 * the Haswell kernels (on a Zen 4 they cost ~5% of a training step's CPU
 * time), so flow asks OpenBLAS for them through OPENBLAS_CORETYPE.
 *
 * OpenBLAS reads that variable once, in its constructor, so the library is
 * not linked but loaded here, by a constructor of the program (which runs
 * before main, single-threaded, after the linked libraries' constructors):
 * set the variable, dlopen, resolve the four functions flow calls, give the
 * user's value back, so the commands of exec nodes see the environment flow
 * was given.  bert_ops.c calls through `blas`, which links this file into
 * every program that runs the CPU model.
 *
 * Where the pin cannot hold (no AVX2/FMA, not x86-64, an OpenBLAS built
 * for one CPU, a user's preloaded library), blas_kernels names what runs
 * instead and the commands keep such bytes apart (engine/commands/main.c:
 * key_set_platform).  A missing library ends the program at start with
 * what to install, as the dynamic loader did when flow linked it.
 */
#include "blas.h"
#include "kernels/kernels.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define PINNED_CORE "Haswell"

blas_fns blas;

static int cpu_runs_pinned_kernels(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static void *resolve(void *lib, const char *name)
{
    void *f = dlsym(lib, name);
    if (!f) {
        fprintf(stderr, "flow: OpenBLAS has no %s (%s): install Debian's libopenblas0-pthread\n", name, dlerror());
        _exit(127);
    }
    return f;
}

__attribute__((constructor))
static void blas_load(void)
{
    int pin = cpu_runs_pinned_kernels();
    char *user = NULL;
    if (pin) {
        const char *v = getenv("OPENBLAS_CORETYPE");
        user = v ? strdup(v) : NULL;
        setenv("OPENBLAS_CORETYPE", PINNED_CORE, 1);
    }
    /* the same search as the dynamic loader's (RUNPATH, LD_LIBRARY_PATH,
     * ld.so.cache), then the library CMake found */
    void *lib = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen(FLOW_OPENBLAS_PATH, RTLD_NOW | RTLD_LOCAL);
    if (pin) {
        if (user) setenv("OPENBLAS_CORETYPE", user, 1);
        else unsetenv("OPENBLAS_CORETYPE");
        free(user);
    }
    if (!lib) {
        fprintf(stderr, "flow: cannot load OpenBLAS (libopenblas.so.0 or %s): %s; install Debian's "
                "libopenblas0-pthread\n", FLOW_OPENBLAS_PATH, dlerror());
        _exit(127);
    }
    *(void **)&blas.sgemm = resolve(lib, "cblas_sgemm");
    *(void **)&blas.get_num_threads = resolve(lib, "openblas_get_num_threads");
    *(void **)&blas.set_num_threads = resolve(lib, "openblas_set_num_threads");
    *(void **)&blas.get_corename = resolve(lib, "openblas_get_corename");
}

const char *blas_kernels(void)
{
    const char *core = blas.get_corename();
    return core && *core ? core : "unknown";
}

int blas_kernels_pinned(void)
{
    return strcasecmp(blas_kernels(), PINNED_CORE) == 0;   /* "HASWELL" in a one-CPU build */
}
