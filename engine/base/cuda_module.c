/* cuda_module.c — loading the CUDA backend on demand (base.h,
 * flow_cuda_load): libflow_cuda.so (kernels/cuda/, built where nvcc
 * exists) is dlopen()ed the first time something needs a GPU, so CPU-only
 * runs never map cuBLAS.  Only the loader lives here (base is the one
 * layer both the scheduler and the kernels reach); what the module does is
 * kernels/cuda/'s. */
#include "base.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const flow_cuda_api *loaded;

void flow_cuda_module_path(char *buf, size_t len)
{
    const char *env = getenv("FLOW_CUDA_MODULE");
    if (env && *env) {
        snprintf(buf, len, "%s", env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        snprintf(buf, len, "libflow_cuda.so");     /* the loader's search path */
        return;
    }
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    snprintf(buf, len, "%s/libflow_cuda.so", exe);
}

const flow_cuda_api *flow_cuda_load(flow_err *e)
{
    if (loaded) return loaded;
    char path[PATH_MAX + 32];
    flow_cuda_module_path(path, sizeof path);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        flow_fail(e, FLOW_E_NOTFOUND, "the CUDA module cannot be loaded: %s (a build with CUDA makes "
                  "libflow_cuda.so beside the flow binary; FLOW_CUDA_MODULE names another)",
                  why ? why : path);
        return NULL;
    }
    const flow_cuda_api *a = dlsym(h, "flow_cuda_api_v1");
    if (!a || memcmp(a->magic, "FLOWCUDA", 8) != 0 || a->version != FLOW_CUDA_API_VERSION) {
        unsigned v = a ? a->version : 0;
        dlclose(h);
        flow_fail(e, FLOW_E_CORRUPT, "%s is not a flow CUDA module of this version (%s%u, this flow "
                  "needs %u): rebuild flow and the module together", path, a ? "api " : "no table, ", v,
                  FLOW_CUDA_API_VERSION);
        return NULL;
    }
    loaded = a;
    return a;
}

void flow_cuda_use(const flow_cuda_api *api)
{
    loaded = api;
}

int flow_cuda_loaded(void)
{
    return loaded != NULL;
}
