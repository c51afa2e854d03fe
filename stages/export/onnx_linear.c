/* onnx_linear.c — the model's parameters as ONNX initializers, and a Linear
 * layer y = x W^T + b (W [N, K], PyTorch layout) per weight format:
 *
 * fp32   W stored transposed, [K, N] (ONNX MatMul multiplies x [..., K] by
 *        [K, N]); MatMul + Add, which ONNX Runtime fuses into one GEMM with
 *        bias and TensorRT maps to a fully-connected layer.
 * int8   flow's own numerics (kernels/quant/quant.h), in standard operators:
 *          amax = ReduceMax(Abs(x), axis -1, keepdims)         [..., 1]
 *          inv  = Where(amax == 0, 0, 127 / amax)
 *          a    = Cast(Round(x * inv), int8)                    (half to even)
 *          acc  = MatMulInteger(a, Wq)      Wq = the model's int8 q^T [K, N]
 *          y    = (Cast(acc, float) * sw) * (amax / 127) + b    sw [N]
 *        i.e. per-row symmetric activations and per-channel weights with
 *        the model's own scales, nothing requantized.  flow rounds
 *        acc * (sa * sw) instead (one rounding apart): ONNX Runtime's
 *        MatMulIntegerToFloatFusion rewrites Mul(Cast(acc), Mul(sa, sw))
 *        with sa taken as one scale per tensor, which is wrong for per-row
 *        scales (measured: logits off by 0.08); this order is not fused
 *        that way (logits within 1e-6 of flow's).  Activations stay
 *        int8 (no zero point): uint8 activations with zero point 128 would
 *        be the same integers, but ONNX Runtime's AVX2 U8S8 kernel
 *        saturates its pair sums (vpmaddubsw) on them (measured: off by
 *        5e5 on +-127 inputs), while its S8S8 path is exact.
 *        Not DynamicQuantizeLinear (uint8, one scale and zero point per
 *        tensor, ONNX Runtime's own dynamic quantization): measured on
 *        tests/onnx_export_test.py's model it puts ONNX Runtime's int8
 *        logits at relative MSE 1.1e-3 from flow's (above the int8 bound
 *        of the quantization tests, and 600x flow's own int8 error), and a
 *        sequence's logits would depend on the rest of its batch.  ONNX
 *        Runtime is faster that way (tests/bench/onnx_bench.py).
 * uint4  com.microsoft MatMulNBits (bits 4, block_size = the group, K, N,
 *        accuracy_level 4: activations quantized to int8 per block, as
 *        flow quantizes them per row) with the model's codes, scales and
 *        zeros repacked to its layout: B [N, K/g, g/2] with code i of a
 *        block in byte i/2 (low nibble first), scales [N * K/g] float,
 *        zero_points [N, ceil((K/g)/2)] two 4-bit zeros per byte.  Then
 *        Add of the fp32 bias.
 * nf4    no ONNX operator runs a 4-bit code book: an error. */
#include "onnx_build.h"
#include "kernels/quant/quant.h"

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

/* MatMul by W^T where W [N, K] is the row blocks W[p] (rows[p] rows each). */
static const char *fp32_matmul(onnx_build *b, const char *x, const char *name, const float *const *W,
                               const int *rows, int parts, int K, int N)
{
    float *wt = xmalloc((size_t)K * N * sizeof *wt);
    for (int p = 0, r0 = 0; p < parts; r0 += rows[p], p++)
        for (int r = 0; r < rows[p]; r++)
            for (int c = 0; c < K; c++) wt[(size_t)c * N + r0 + r] = W[p][(size_t)r * K + c];
    int64_t dims[2] = { K, N };
    const char *w = onnx_initializer(b->g, name, ONNX_FLOAT, 2, dims, wt, (size_t)K * N * sizeof *wt, wt);
    return onnx_op(b->g, "MatMul", x, w);
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
    const char *y = fp32_matmul(b, x, onnx_str(g, "%s.T", wn), &W, &N, 1, K, N);
    int64_t bdims[1] = { N };
    const char *bname = onnx_initializer(g, bn, ONNX_FLOAT, 1, bdims, bias, (size_t)N * sizeof *bias, NULL);
    const char *in[2] = { y, bname };
    return out_name ? onnx_node_named(g, "Add", NULL, in, 2, out_name, NULL) : onnx_op(g, "Add", y, bname);
}

/* int8: flow's per-row activation quantization + MatMulInteger (top). */
static const char *int8_matmul(onnx_build *b, const char *x, const char *name, const quant_weight *w)
{
    onnx_graph *g = b->g;
    int N = w->N, K = w->K;
    int8_t *wq = xmalloc((size_t)K * N);
    for (int r = 0; r < N; r++)
        for (int c = 0; c < K; c++) wq[(size_t)c * N + r] = (int8_t)quant_weight_int8_at(w, r, c);
    float *sw = xmalloc((size_t)N * sizeof *sw);
    memcpy(sw, w->scale, (size_t)N * sizeof *sw);
    int64_t wd[2] = { K, N }, sd[1] = { N };
    const char *W = onnx_initializer(g, onnx_str(g, "%s.int8.T", name), ONNX_INT8, 2, wd, wq, (size_t)K * N, wq);
    const char *S = onnx_initializer(g, onnx_str(g, "%s.scale", name), ONNX_FLOAT, 1, sd, sw, (size_t)N * sizeof *sw, sw);
    /* amax per row: ReduceMax's axes are an attribute up to opset 17, an input from 18 */
    const char *ax = onnx_op(g, "Abs", x, NULL), *amax;
    flow_buf a;
    buf_init(&a);
    onnx_attr_int(&a, "keepdims", 1);
    int64_t last = -1;
    if (g->opset < 18) {
        onnx_attr_ints(&a, "axes", &last, 1);
        const char *in[1] = { ax };
        amax = onnx_node(g, "ReduceMax", NULL, in, 1, 1, NULL, &a);
    } else {
        const char *in[2] = { ax, onnx_const_i64(g, &last, 1) };
        amax = onnx_node(g, "ReduceMax", NULL, in, 2, 1, NULL, &a);
    }
    buf_release(&a);
    const char *zero = onnx_const_f32(g, 0.0f), *c127 = onnx_const_f32(g, 127.0f);
    const char *wh[3] = { onnx_op(g, "Equal", amax, zero), zero, onnx_op(g, "Div", c127, amax) };
    const char *inv = onnx_node(g, "Where", NULL, wh, 3, 1, NULL, NULL);
    const char *r = onnx_op(g, "Round", onnx_op(g, "Mul", x, inv), NULL);
    buf_init(&a);
    onnx_attr_int(&a, "to", ONNX_INT8);
    const char *cin[1] = { r };
    const char *aq = onnx_node(g, "Cast", NULL, cin, 1, 1, NULL, &a);
    buf_release(&a);
    const char *acc = onnx_op(g, "MatMulInteger", aq, W);
    buf_init(&a);
    onnx_attr_int(&a, "to", ONNX_FLOAT);
    cin[0] = acc;
    const char *accf = onnx_node(g, "Cast", NULL, cin, 1, 1, NULL, &a);
    buf_release(&a);
    const char *sa = onnx_op(g, "Div", amax, c127);
    return onnx_op(g, "Mul", onnx_op(g, "Mul", accf, S), sa);
}

/* uint4: MatMulNBits with the model's codes, scales and zeros (top). */
static const char *uint4_matmul(onnx_build *b, const char *x, const char *name, const quant_weight *w)
{
    onnx_graph *g = b->g;
    int N = w->N, K = w->K, gs = w->group, G = w->G, zb = (G + 1) / 2;
    size_t nb = (size_t)N * K / 2;
    uint8_t *B = xcalloc(nb, 1), *Z = xcalloc((size_t)N * zb, 1);
    float *S = xmalloc((size_t)N * G * sizeof *S);
    for (int n = 0; n < N; n++) {
        for (int k = 0; k < K; k++) {
            int code = quant_weight_code_at(w, n, k);
            B[(size_t)n * (K / 2) + k / 2] |= (uint8_t)(code << (4 * (k % 2)));
        }
        for (int j = 0; j < G; j++) {
            S[(size_t)n * G + j] = quant_weight_scale_at(w, n, j);
            Z[(size_t)n * zb + j / 2] |= (uint8_t)((quant_weight_zero_at(w, n, j) & 15) << (4 * (j % 2)));
        }
    }
    int64_t bd[3] = { N, G, gs / 2 }, sd[1] = { (int64_t)N * G }, zd[1] = { (int64_t)N * zb };
    const char *in[4] = {
        x,
        onnx_initializer(g, onnx_str(g, "%s.uint4", name), ONNX_UINT8, 3, bd, B, nb, B),
        onnx_initializer(g, onnx_str(g, "%s.scales", name), ONNX_FLOAT, 1, sd, S, (size_t)N * G * sizeof *S, S),
        onnx_initializer(g, onnx_str(g, "%s.zeros", name), ONNX_UINT8, 1, zd, Z, (size_t)N * zb, Z),
    };
    flow_buf a;
    buf_init(&a);
    onnx_attr_int(&a, "K", K);
    onnx_attr_int(&a, "N", N);
    onnx_attr_int(&a, "bits", 4);
    onnx_attr_int(&a, "block_size", gs);
    onnx_attr_int(&a, "accuracy_level", 4);
    g->ms_opset = 1;
    const char *y = onnx_node(g, "MatMulNBits", "com.microsoft", in, 4, 1, NULL, &a);
    buf_release(&a);
    return y;
}

static const char *const lin_part[BERT_LIN_COUNT][3] = {
    { "attention.self.query", "attention.self.key", "attention.self.value" },
    { "attention.output.dense" }, { "intermediate.dense" }, { "output.dense" },
};

const char *onnx_encoder_linear(onnx_build *b, const char *x, int l, int which, int K, int *n)
{
    onnx_graph *g = b->g;
    int parts = which == BERT_LIN_QKV ? 3 : 1, N = 0, rows[3];
    const float *W[3], *bias[3];
    for (int p = 0; p < parts; p++) {
        W[p] = onnx_param(b, onnx_str(g, "bert.encoder.layer.%d.%s.weight", l, lin_part[which][p]), -1, K, &rows[p]);
        bias[p] = W[p] ? onnx_param(b, onnx_str(g, "bert.encoder.layer.%d.%s.bias", l, lin_part[which][p]), rows[p], 0, NULL) : NULL;
        if (b->rc) return "";
        N += rows[p];
    }
    const char *name = parts == 3 ? onnx_str(g, "bert.encoder.layer.%d.attention.self.qkv", l)
                                  : onnx_str(g, "bert.encoder.layer.%d.%s", l, lin_part[which][0]);
    const quant_weight *qw = b->q ? bert_qmodel_get(b->q, l, which) : NULL;
    const char *y;
    if (!qw) {
        y = fp32_matmul(b, x, onnx_str(g, "%s.weight.T", name), W, rows, parts, K, N);
    } else if (qw->N != N || qw->K != K) {
        b->rc = flow_fail(b->e, FLOW_E_CORRUPT, "quantized %s is [%d, %d], the model's is [%d, %d]",
                          name, qw->N, qw->K, N, K);
        return "";
    } else if (qw->kind == QUANT_KIND_INT8) {
        y = int8_matmul(b, x, name, qw);
        b->n_int8++;
    } else if (qw->kind == QUANT_KIND_UINT4) {
        y = uint4_matmul(b, x, name, qw);
        b->n_uint4++;
        b->group = qw->group;
    } else {
        b->rc = flow_fail(b->e, FLOW_E_PARAM,
                          "%s is NF4 (a 4-bit code book), which no ONNX operator runs 4-bit (MatMulNBits "
                          "is uniform); quantize with uniform 4-bit levels (codebook = uniform) to export it",
                          name);
        return "";
    }
    float *bc = xmalloc((size_t)N * sizeof *bc);
    for (int p = 0, r0 = 0; p < parts; r0 += rows[p], p++)
        memcpy(bc + r0, bias[p], (size_t)rows[p] * sizeof *bc);
    int64_t bd[1] = { N };
    const char *bn = onnx_str(g, "%s.bias", name);
    if (n) *n = N;
    return onnx_op(g, "Add", y, onnx_initializer(g, bn, ONNX_FLOAT, 1, bd, bc, (size_t)N * sizeof *bc, bc));
}
