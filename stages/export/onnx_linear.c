/* onnx_linear.c — the model's parameters as ONNX initializers, and a Linear
 * layer y = x W^T + b as ONNX nodes.  fp32: W is stored transposed, [K, N]
 * (ONNX MatMul multiplies x [..., K] by [K, N]), then MatMul + Add, which
 * ONNX Runtime fuses into one GEMM with bias and TensorRT maps to a
 * fully-connected layer. */
#include "onnx_build.h"

#include <stdlib.h>
#include <string.h>

const float *onnx_param(onnx_build *b, const char *name, int n0, int n1, int *rows)
{
    if (b->rc) return NULL;
    const bert_tensor *t = bert_find_tensor(b->m, name);
    if (!t) {
        b->rc = flow_fail(b->e, FLOW_E_CORRUPT, "the model has no tensor '%s'", name);
        return NULL;
    }
    int ndim = n1 ? 2 : 1;
    if (t->ndim != ndim || (n0 >= 0 && t->shape[0] != n0) || (n1 && t->shape[1] != n1)) {
        b->rc = flow_fail(b->e, FLOW_E_CORRUPT, "tensor '%s' is [%d, %d] where the graph needs [%d, %d]",
                          name, t->shape[0], t->ndim == 2 ? t->shape[1] : 0, n0, n1);
        return NULL;
    }
    if (rows) *rows = t->shape[0];
    return b->m->params + t->offset;
}

const char *onnx_linear(onnx_build *b, const char *x, const char *prefix, int K, int *n,
                        const char *out_name)
{
    onnx_graph *g = b->g;
    const char *wn = onnx_str(g, "%s.weight", prefix), *bn = onnx_str(g, "%s.bias", prefix);
    int N = 0;
    const float *W = onnx_param(b, wn, -1, K, &N);
    const float *bias = W ? onnx_param(b, bn, N, 0, NULL) : NULL;
    if (!bias) return "";
    if (n) *n = N;
    /* W [N, K] -> W^T [K, N] */
    float *wt = xmalloc((size_t)K * N * sizeof *wt);
    for (int r = 0; r < N; r++)
        for (int c = 0; c < K; c++) wt[(size_t)c * N + r] = W[(size_t)r * K + c];
    int64_t wdims[2] = { K, N }, bdims[1] = { N };
    const char *wname = onnx_initializer(g, onnx_str(g, "%s.T", wn), ONNX_FLOAT, 2, wdims, wt,
                                         (size_t)K * N * sizeof *wt, wt);
    const char *bname = onnx_initializer(g, bn, ONNX_FLOAT, 1, bdims, bias, (size_t)N * sizeof *bias, NULL);
    const char *y = onnx_op(g, "MatMul", x, wname);
    const char *in[2] = { y, bname };
    return out_name ? onnx_node_named(g, "Add", NULL, in, 2, out_name, NULL) : onnx_op(g, "Add", y, bname);
}
