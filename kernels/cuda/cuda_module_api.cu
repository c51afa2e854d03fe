// cuda_module_api.cu — the one table libflow_cuda.so exports
// (flow_cuda_api_v1, engine/base/base.h; engine/base/cuda_module.c finds it
// with dlsym): the device count (cuda_device.cu) and the BERT backend
// (bert_cuda.cu, bert_cuda_optim.cu).  The top of kernels/cuda: nothing
// here calls it but the loader.
#include "cuda_internal.h"

extern "C" {
#include "kernels/bert_backend.h"
}

static int api_device_count(char *why, size_t why_len)
{
    return cuda_device_count_forked(why, why_len);
}

extern "C" const bert_backend_ops bert_cuda_ops;

extern "C" const flow_cuda_api flow_cuda_api_v1 = {
    { 'F', 'L', 'O', 'W', 'C', 'U', 'D', 'A' }, FLOW_CUDA_API_VERSION, api_device_count, &bert_cuda_ops,
};
