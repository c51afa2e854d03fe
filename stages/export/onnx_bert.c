/* onnx_bert.c — the BERT sequence classifier (kernels/kernels.h, exactly
 * transformers' BertForSequenceClassification at inference) as an ONNX
 * graph of standard operators.  Shapes (B batch, T sequence, both dynamic;
 * H hidden; per layer nh heads of d, A = nh d, FFN width I; C labels):
 *   inputs  input_ids, attention_mask, token_type_ids   int64 [B, T]
 *   embeddings
 *     e   = Gather(word, input_ids) + Slice(position, 0..T) + Gather(type, token_type_ids)
 *     x   = LayerNormalization(e, axis -1, epsilon 1e-12)          [B, T, H]
 *     bias = Unsqueeze(Where(Cast(attention_mask, bool), 0, lowest float), [1, 2])
 *                                                                [B, 1, 1, T]
 *     (padded keys get the lowest float, so softmax gives them exactly 0
 *     as flow's masked softmax does; Where rather than transformers'
 *     (1 - mask) * lowest, which in fp16 (TensorRT) is 0 * -inf = NaN)
 *   per layer (Linears: onnx_linear.c, fp32 or the model's int8 / 4-bit)
 *     q, k, v = Split(Linear_qkv(x), [A, A, A], axis -1)          [B, T, A]
 *               (Q, K and V as one [H, 3A] matrix: one GEMM, as flow does)
 *     qh = Transpose(Reshape(q, [0, 0, nh, d]), [0, 2, 1, 3])     [B, nh, T, d]
 *     kh = Transpose(Reshape(k, [0, 0, nh, d]), [0, 2, 3, 1])     [B, nh, d, T]
 *     P   = Softmax(MatMul(qh, kh) * (1 / sqrt d) + bias, axis -1)
 *     ctx = Reshape(Transpose(MatMul(P, vh), [0, 2, 1, 3]), [0, 0, A])
 *     a   = LayerNormalization(x + Linear(ctx))
 *     x   = LayerNormalization(a + Linear(GELU(Linear(a))))
 *     GELU: the Gelu operator from opset 20, else its erf form
 *           x * 0.5 * (1 + Erf(x / sqrt 2)) (which ONNX Runtime fuses)
 *   head (pooling of the config: [CLS], or the mean over real positions)
 *     s = Gather(x, 0, axis 1)                                     [B, H]
 *     or, mean: w = Cast(Cast(attention_mask, bool), float)        [B, T]
 *         s = ReduceSum(x * Unsqueeze(w, [2]), [1]) / ReduceSum(w, [1], keepdims)
 *     pooled = Tanh(Linear(s))                                     [B, H]
 *     logits = Linear(pooled)                                     [B, C]
 * Every shape comes from the tensor table (pruned heads, narrower FFNs,
 * fewer layers and trimmed vocabularies are just other shapes); only the
 * head count of a layer comes from the config. */
#include "onnx_build.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Heads of layer l: the one number the graph needs that shapes do not
 * give (the attention width A is the query weight's rows, d = A / heads). */
static int layer_heads(const bert_config *c, int l)
{
    return c->heads[l];
}

static const char *layernorm(onnx_build *b, const char *x, const char *prefix, int H)
{
    onnx_graph *g = b->g;
    const char *wn = onnx_str(g, "%s.weight", prefix), *bn = onnx_str(g, "%s.bias", prefix);
    const float *w = onnx_param(b, wn, H, 0, NULL);
    const float *bias = onnx_param(b, bn, H, 0, NULL);
    if (!w || !bias) return "";
    int64_t dims[1] = { H };
    const char *in[3] = { x, onnx_initializer(g, wn, ONNX_FLOAT, 1, dims, w, (size_t)H * 4, NULL),
                          onnx_initializer(g, bn, ONNX_FLOAT, 1, dims, bias, (size_t)H * 4, NULL) };
    flow_buf a;
    buf_init(&a);
    onnx_attr_int(&a, "axis", -1);
    onnx_attr_float(&a, "epsilon", 1e-12f);
    const char *y = onnx_node(g, "LayerNormalization", NULL, in, 3, 1, NULL, &a);
    buf_release(&a);
    return y;
}

static const char *gelu(onnx_build *b, const char *x)
{
    onnx_graph *g = b->g;
    if (g->opset >= 20) return onnx_op(g, "Gelu", x, NULL);
    const char *t = onnx_op(g, "Div", x, onnx_const_f32(g, (float)M_SQRT2));
    t = onnx_op(g, "Add", onnx_op(g, "Erf", t, NULL), onnx_const_f32(g, 1.0f));
    return onnx_op(g, "Mul", onnx_op(g, "Mul", x, t), onnx_const_f32(g, 0.5f));
}

static const char *transpose(onnx_graph *g, const char *x, const int64_t *perm, int n)
{
    flow_buf a;
    buf_init(&a);
    onnx_attr_ints(&a, "perm", perm, n);
    const char *in[1] = { x };
    const char *y = onnx_node(g, "Transpose", NULL, in, 1, 1, NULL, &a);
    buf_release(&a);
    return y;
}

static const char *embeddings(onnx_build *b, int H)
{
    onnx_graph *g = b->g;
    const bert_config *c = &b->m->cfg;
    onnx_scope(g, "embeddings");
    const char *wn = "bert.embeddings.word_embeddings.weight";
    const char *pn = "bert.embeddings.position_embeddings.weight";
    const char *tn = "bert.embeddings.token_type_embeddings.weight";
    int V = 0;
    const float *word = onnx_param(b, wn, -1, H, &V);
    const float *pos = onnx_param(b, pn, c->max_len, H, NULL);
    const float *typ = onnx_param(b, tn, c->type_vocab, H, NULL);
    if (!word || !pos || !typ) return "";
    int64_t wd[2] = { V, H }, pd[2] = { c->max_len, H }, td[2] = { c->type_vocab, H };
    const char *W = onnx_initializer(g, wn, ONNX_FLOAT, 2, wd, word, (size_t)V * H * 4, NULL);
    const char *P = onnx_initializer(g, pn, ONNX_FLOAT, 2, pd, pos, (size_t)c->max_len * H * 4, NULL);
    const char *Y = onnx_initializer(g, tn, ONNX_FLOAT, 2, td, typ, (size_t)c->type_vocab * H * 4, NULL);
    const char *e = onnx_op(g, "Gather", W, "input_ids");
    /* T = Shape(input_ids)[1:2]; position rows 0..T */
    flow_buf a;
    buf_init(&a);
    onnx_attr_int(&a, "start", 1);
    onnx_attr_int(&a, "end", 2);
    const char *ids[1] = { "input_ids" };
    const char *T = onnx_node(g, "Shape", NULL, ids, 1, 1, NULL, &a);
    buf_release(&a);
    int64_t zero = 0;
    const char *z = onnx_const_i64(g, &zero, 1);
    const char *sl[4] = { P, z, T, z };
    const char *prow = onnx_node(g, "Slice", NULL, sl, 4, 1, NULL, NULL);
    e = onnx_op(g, "Add", e, prow);
    e = onnx_op(g, "Add", e, onnx_op(g, "Gather", Y, "token_type_ids"));
    return layernorm(b, e, "bert.embeddings.LayerNorm", H);
}

static const char *mask_bias(onnx_build *b)
{
    onnx_graph *g = b->g;
    onnx_scope(g, "mask");
    flow_buf a;
    buf_init(&a);
    onnx_attr_int(&a, "to", ONNX_BOOL);
    const char *in[1] = { "attention_mask" };
    const char *keep = onnx_node(g, "Cast", NULL, in, 1, 1, NULL, &a);
    buf_release(&a);
    const char *wh[3] = { keep, onnx_const_f32(g, 0.0f), onnx_const_f32(g, -FLT_MAX) };
    const char *bias = onnx_node(g, "Where", NULL, wh, 3, 1, NULL, NULL);
    int64_t axes[2] = { 1, 2 };
    return onnx_op(g, "Unsqueeze", bias, onnx_const_i64(g, axes, 2));
}

static const char *attention(onnx_build *b, const char *x, const char *bias, int l, int H)
{
    onnx_graph *g = b->g;
    onnx_scope(g, "layer.%d/attention", l);
    const char *pre = onnx_str(g, "bert.encoder.layer.%d.attention.", l);
    int N3 = 0;
    const char *qkv = onnx_encoder_linear(b, x, l, BERT_LIN_QKV, H, &N3);
    if (b->rc) return "";
    int nh = layer_heads(&b->m->cfg, l), A = N3 / 3;
    if (nh < 1 || N3 % 3 || A % nh) {
        b->rc = flow_fail(b->e, FLOW_E_CORRUPT, "layer %d: attention width %d does not split into %d heads",
                          l, A, nh);
        return "";
    }
    int64_t widths[3] = { A, A, A };
    const char *sp[2] = { qkv, onnx_const_i64(g, widths, 3) }, *qkv3[3];
    flow_buf sa;
    buf_init(&sa);
    onnx_attr_int(&sa, "axis", -1);
    onnx_node(g, "Split", NULL, sp, 2, 3, qkv3, &sa);
    buf_release(&sa);
    const char *q = qkv3[0], *k = qkv3[1], *v = qkv3[2];
    int d = A / nh;
    int64_t split[4] = { 0, 0, nh, d }, merge[3] = { 0, 0, A };
    int64_t p0213[4] = { 0, 2, 1, 3 }, p0231[4] = { 0, 2, 3, 1 };
    const char *shape = onnx_const_i64(g, split, 4);
    const char *qh = transpose(g, onnx_op(g, "Reshape", q, shape), p0213, 4);
    const char *kh = transpose(g, onnx_op(g, "Reshape", k, shape), p0231, 4);
    const char *vh = transpose(g, onnx_op(g, "Reshape", v, shape), p0213, 4);
    const char *s = onnx_op(g, "Mul", onnx_op(g, "MatMul", qh, kh), onnx_const_f32(g, 1.0f / sqrtf((float)d)));
    s = onnx_op(g, "Add", s, bias);
    flow_buf a;
    buf_init(&a);
    onnx_attr_int(&a, "axis", -1);
    const char *sin[1] = { s };
    const char *P = onnx_node(g, "Softmax", NULL, sin, 1, 1, NULL, &a);
    buf_release(&a);
    const char *ctx = transpose(g, onnx_op(g, "MatMul", P, vh), p0213, 4);
    ctx = onnx_op(g, "Reshape", ctx, onnx_const_i64(g, merge, 3));
    const char *o = onnx_encoder_linear(b, ctx, l, BERT_LIN_ATTN_OUT, A, NULL);
    return layernorm(b, onnx_op(g, "Add", x, o), onnx_str(g, "%soutput.LayerNorm", pre), H);
}

static const char *ffn(onnx_build *b, const char *x, int l, int H)
{
    onnx_graph *g = b->g;
    onnx_scope(g, "layer.%d/ffn", l);
    const char *pre = onnx_str(g, "bert.encoder.layer.%d.", l);
    int I = 0;
    const char *h = onnx_encoder_linear(b, x, l, BERT_LIN_FFN_IN, H, &I);
    if (b->rc) return "";
    h = onnx_encoder_linear(b, gelu(b, h), l, BERT_LIN_FFN_OUT, I, NULL);
    return layernorm(b, onnx_op(g, "Add", x, h), onnx_str(g, "%soutput.LayerNorm", pre), H);
}

/* x[:, 0]: a scalar index 0, so Gather drops the axis, [B, T, H] -> [B, H]. */
static const char *first_token(onnx_graph *g, const char *x)
{
    int64_t *zp = xcalloc(1, sizeof *zp);
    const char *first_idx = onnx_initializer(g, "head/first_token", ONNX_INT64, 0, NULL, zp, sizeof *zp, zp);
    flow_buf a;
    buf_init(&a);
    onnx_attr_int(&a, "axis", 1);
    const char *gin[2] = { x, first_idx };
    const char *first = onnx_node(g, "Gather", NULL, gin, 2, 1, NULL, &a);
    buf_release(&a);
    return first;
}

/* ReduceSum over axis 1 (axes as an input: opset >= 13), keepdims k. */
static const char *sum_axis1(onnx_graph *g, const char *x, int keepdims)
{
    int64_t one = 1;
    flow_buf a;
    buf_init(&a);
    onnx_attr_int(&a, "keepdims", keepdims);
    const char *in[2] = { x, onnx_const_i64(g, &one, 1) };
    const char *y = onnx_node(g, "ReduceSum", NULL, in, 2, 1, NULL, &a);
    buf_release(&a);
    return y;
}

/* The mean of x [B, T, H] over the real positions (attention_mask != 0,
 * the same test as the attention's), as flow's mean_pool_forward. */
static const char *mean_pool(onnx_graph *g, const char *x)
{
    flow_buf a;
    buf_init(&a);
    onnx_attr_int(&a, "to", ONNX_BOOL);
    const char *in[1] = { "attention_mask" };
    const char *real = onnx_node(g, "Cast", NULL, in, 1, 1, NULL, &a);
    buf_release(&a);
    buf_init(&a);
    onnx_attr_int(&a, "to", ONNX_FLOAT);
    const char *rin[1] = { real };
    const char *w = onnx_node(g, "Cast", NULL, rin, 1, 1, NULL, &a);      /* [B, T] 1 / 0 */
    buf_release(&a);
    int64_t last = 2;
    const char *w3 = onnx_op(g, "Unsqueeze", w, onnx_const_i64(g, &last, 1));   /* [B, T, 1] */
    const char *sum = sum_axis1(g, onnx_op(g, "Mul", x, w3), 0);                 /* [B, H] */
    return onnx_op(g, "Div", sum, sum_axis1(g, w, 1));                           /* / [B, 1] */
}

int onnx_bert_classifier(onnx_build *b)
{
    onnx_graph *g = b->g;
    const bert_config *c = &b->m->cfg;
    if (!(c->mode & BERT_MODE_CLASSIFY))
        return flow_fail(b->e, FLOW_E_PARAM, "the model has no classification head");
    int H = c->hidden;
    const char *bt[2] = { "batch", "sequence" };
    onnx_input(g, "input_ids", ONNX_INT64, 2, bt);
    onnx_input(g, "attention_mask", ONNX_INT64, 2, bt);
    onnx_input(g, "token_type_ids", ONNX_INT64, 2, bt);
    const char *x = embeddings(b, H);
    const char *bias = mask_bias(b);
    for (int l = 0; l < c->layers && !b->rc; l++) {
        x = attention(b, x, bias, l, H);
        x = ffn(b, x, l, H);
    }
    onnx_scope(g, "head");
    const char *s = c->pooling == BERT_POOL_MEAN ? mean_pool(g, x) : first_token(g, x);
    const char *pooled = onnx_op(g, "Tanh", onnx_linear(b, s, "bert.pooler.dense", H, NULL, NULL), NULL);
    int C = 0;
    onnx_linear(b, pooled, "classifier", H, &C, "logits");
    if (b->rc) return b->rc;
    if (C != c->num_labels)
        return flow_fail(b->e, FLOW_E_CORRUPT, "classifier has %d outputs, the config says %d labels", C, c->num_labels);
    const char *bc[2] = { "batch", onnx_str(g, "%d", C) };
    onnx_output(g, "logits", ONNX_FLOAT, 2, bc);
    return 0;
}
