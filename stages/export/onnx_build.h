/* onnx_build.h — internal to stages/export: the state shared by the graph
 * builders onnx_bert.c and onnx_linear.c.  Errors are sticky: after the
 * first failure every builder call is a no-op that returns "", and the
 * caller checks rc once at the end. */
#ifndef FLOW_ONNX_BUILD_H
#define FLOW_ONNX_BUILD_H

#include "onnx_graph.h"
#include "kernels/kernels.h"

typedef struct onnx_build {
    onnx_graph *g;
    const bert_model *m;        /* host parameters (synced) */
    const bert_qmodel *q;       /* quantized encoder Linears, or NULL (fp32) */
    int n_int8, n_uint4;        /* quantized Linears written, by format */
    int group;                  /* 4-bit group size seen (0 = none) */
    int rc;                     /* first error, 0 = none */
    flow_err *e;
} onnx_build;

/* The parameters of tensor `name`, checking its shape is [n0] (n1 = 0) or
 * [n0, n1]; n0 = -1 accepts any first dimension.  NULL after recording an
 * error. */
const float *onnx_param(onnx_build *b, const char *name, int n0, int n1, int *rows);
/* y [..., N] = x [..., K] W^T + bias for the fp32 Linear `prefix`
 * (prefix.weight [N, K], prefix.bias [N]): pooler and classifier.  K is
 * checked, N returned in *n.  out_name NULL: a generated name. */
const char *onnx_linear(onnx_build *b, const char *x, const char *prefix, int K, int *n,
                        const char *out_name);
/* Encoder Linear `which` (BERT_LIN_*) of layer l on x [..., K]: fp32, or
 * the quantized weight b->q holds for it, with the model's fp32 bias.
 * BERT_LIN_QKV is the fused [3A, H] block: y is [..., 3A] (Q, K, V). */
const char *onnx_encoder_linear(onnx_build *b, const char *x, int l, int which, int K, int *n);
/* The BERT sequence classifier (onnx_bert.c). */
int onnx_bert_classifier(onnx_build *b);

#endif
