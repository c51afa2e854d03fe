/* plan.c — the memory planner (plan.h): per-module parameter/FLOP table,
 * per-device memory estimate, and the micro-batch / recomputation choice. */
#include "kernels/plan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int plan_precision_parse(const char *s, plan_precision *out)
{
    static const char *names[] = { "fp32", "bf16", "fp16" };
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, names[i])) { *out = (plan_precision)i; return 0; }
    return -1;
}

const char *plan_precision_name(plan_precision p)
{
    return p == PLAN_BF16 ? "bf16" : p == PLAN_FP16 ? "fp16" : "fp32";
}

int plan_parse_bytes(const char *s, const char *what, uint64_t *out, flow_err *e)
{
    static const struct { const char *u; double mul; } units[] = {
        { "K", 1024.0 }, { "KiB", 1024.0 }, { "M", 1048576.0 }, { "MiB", 1048576.0 },
        { "G", 1073741824.0 }, { "GiB", 1073741824.0 }, { "T", 1099511627776.0 },
        { "TiB", 1099511627776.0 }, { "KB", 1e3 }, { "MB", 1e6 }, { "GB", 1e9 }, { "TB", 1e12 },
    };
    const char *p = s;
    double v = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') { v = v * 10 + (*p++ - '0'); digits++; }
    if (*p == '.') {
        p++;
        double f = 0.1;
        int frac = 0;
        while (*p >= '0' && *p <= '9') { v += f * (*p++ - '0'); f /= 10; frac++; }
        if (!frac) digits = 0;
    }
    if (!digits)
        return flow_fail(e, FLOW_E_USAGE, "%s: '%s' is not a size (write e.g. 8GiB, 8000MiB or 8G)", what, s);
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(p, units[i].u)) {
            double b = v * units[i].mul;
            if (b < 1 || b > 1.8e19)
                return flow_fail(e, FLOW_E_USAGE, "%s: '%s' is out of range", what, s);
            *out = (uint64_t)llround(b);
            return 0;
        }
    return flow_fail(e, FLOW_E_USAGE, "%s: '%s' has %s unit (use K/KiB, M/MiB, G/GiB, T/TiB or KB/MB/GB/TB)",
                     what, s, *p ? "an unknown" : "no");
}

static int plan_check(const plan_request *r, flow_err *e)
{
    int rc = bert_config_validate(&r->cfg, e);
    if (rc) return rc;
    if (r->head != BERT_HEAD_MLM && r->head != BERT_HEAD_CLASSIFY)
        return flow_fail(e, FLOW_E_PARAM, "plan: head %d is neither MLM nor classifier", r->head);
    if (!(r->cfg.mode & (r->head == BERT_HEAD_MLM ? BERT_MODE_MLM : BERT_MODE_CLASSIFY)))
        return flow_fail(e, FLOW_E_PARAM, "plan: the config's mode %d has no such head", r->cfg.mode);
    if (r->seq < 1 || r->seq > r->cfg.max_len)
        return flow_fail(e, FLOW_E_PARAM, "plan: sequence length %d is outside 1..max_len %d", r->seq, r->cfg.max_len);
    if (r->batch < 1 || r->accum < 1)
        return flow_fail(e, FLOW_E_PARAM, "plan: batch %d x grad_accum %d (need both >= 1)", r->batch, r->accum);
    if (r->gpus < 1)
        return flow_fail(e, FLOW_E_PARAM, "plan: gpus %d (need >= 1)", r->gpus);
    if (r->head == BERT_HEAD_MLM && (r->mlm_rows < 0 || r->mlm_rows > r->seq))
        return flow_fail(e, FLOW_E_PARAM, "plan: %g MLM rows per sequence of %d", r->mlm_rows, r->seq);
    return 0;
}

/* Floats of encoder layer l, in tensor-table order (kernels.h): attention
 * width A = heads x head size, FFN width I. */
static size_t layer_params(const bert_config *c, int l)
{
    size_t H = (size_t)c->hidden, A = (size_t)bert_attn_width(c, l), I = (size_t)c->ffn[l];
    return 3 * A * H + 3 * A + H * A + H + 2 * H + I * H + I + H * I + H + 2 * H;
}

int plan_modules(const plan_request *r, int B, plan_module **out, int *n, flow_err *e)
{
    int rc = plan_check(r, e);
    if (rc) return rc;
    const bert_config *c = &r->cfg;
    size_t H = (size_t)c->hidden, V = (size_t)c->vocab_size, C = (size_t)c->num_labels;
    double N = (double)B * r->seq, T = r->seq, Hd = (double)H;
    int count = 1 + c->layers + 1;
    plan_module *m = xcalloc((size_t)count, sizeof *m);
    snprintf(m[0].name, sizeof m[0].name, "embeddings");
    m[0].params = V * H + (size_t)c->max_len * H + (size_t)c->type_vocab * H + 2 * H;
    m[0].flops = 0;         /* lookups and adds: no GEMM FLOPs (like bert_train_flops) */
    for (int l = 0; l < c->layers; l++) {
        plan_module *x = &m[1 + l];
        snprintf(x->name, sizeof x->name, "layer.%d", l);
        x->params = layer_params(c, l);
        /* QKV [N,H]x[H,3A], out [N,A]x[A,H], FFN 2x [N,H]x[H,I];
         * scores and P.v: 2 x B*nh*T*T*d = 2*B*T*T*A mult-adds */
        double A = bert_attn_width(c, l), I = c->ffn[l];
        x->flops = 3 * (2 * N * Hd * (4 * A + 2 * I) + 4.0 * B * T * T * A);
    }
    plan_module *h = &m[count - 1];
    if (r->head == BERT_HEAD_MLM) {
        snprintf(h->name, sizeof h->name, "mlm_head");
        h->params = H * H + H + 2 * H + V;  /* decoder tied to the word embeddings */
        double M = (double)llround(B * r->mlm_rows);
        h->flops = 3 * 2.0 * M * Hd * (Hd + (double)V);
    } else {
        snprintf(h->name, sizeof h->name, "cls_head");
        h->params = H * H + H + C * H + C;
        h->flops = 3 * 2.0 * B * Hd * (Hd + (double)C);
    }
    /* the other head exists in BOTH mode: parameters, no FLOPs this run */
    if (c->mode == BERT_MODE_BOTH) {
        m = xrealloc(m, (size_t)(count + 1) * sizeof *m);
        plan_module *o = &m[count++];
        memset(o, 0, sizeof *o);
        if (r->head == BERT_HEAD_MLM) {
            snprintf(o->name, sizeof o->name, "cls_head");
            o->params = H * H + H + C * H + C;
        } else {
            snprintf(o->name, sizeof o->name, "mlm_head");
            o->params = H * H + H + 2 * H + V;
        }
    }
    *out = m;
    *n = count;
    return 0;
}

/* Bytes one encoder layer keeps for its backward (N = B*T rows, a = bytes
 * per activation element, masks 1 byte per element, LayerNorm mean and
 * rstd fp32):
 *   x [N,H] (QKV GEMM input), q k v 3x[N,H] (attention GEMM inputs),
 *   P [B,nh,T,T] (softmax output) and, with attention dropout, its mask and
 *   the dropped P (the P.v GEMM input), ctx [N,H] (output GEMM input),
 *   dropout mask [N,H], LN1 input [N,H] + stats [N]x2, a [N,H] (FFN-in
 *   input), GELU input [N,I], GELU output [N,I] (FFN-out input), dropout
 *   mask [N,H], LN2 input [N,H] + stats. */
static double layer_acts(const plan_request *r, int l, int B, double a)
{
    const bert_config *c = &r->cfg;
    double N = (double)B * r->seq, H = c->hidden, A = bert_attn_width(c, l), I = c->ffn[l];
    double TT = (double)B * c->heads[l] * r->seq * r->seq;
    double hid_mask = c->hidden_dropout > 0 ? N * H : 0;
    double bytes = a * N * H + a * N * A * 3         /* x, q, k, v */
                 + a * TT                            /* P */
                 + (c->attn_dropout > 0 ? TT + a * TT : 0)   /* mask, dropped P */
                 + a * N * A                         /* ctx */
                 + hid_mask + a * N * H + 8 * N      /* dropout mask, LN1 input, stats */
                 + a * N * H                         /* a */
                 + 2 * a * N * I                     /* GELU input, output */
                 + hid_mask + a * N * H + 8 * N;     /* dropout mask, LN2 input, stats */
    return bytes;
}

uint64_t plan_activations(const plan_request *r, int B, int recompute)
{
    const bert_config *c = &r->cfg;
    double a = r->prec == PLAN_FP32 ? 4 : 2;
    double N = (double)B * r->seq, H = c->hidden;
    /* embeddings: ids + token types (int32), LN input + stats, dropout mask;
     * the last layer's output [N,H] (head input) */
    double emb = 8 * N + a * N * H + 8 * N + (c->hidden_dropout > 0 ? N * H : 0);
    double out = a * N * H;
    double head;
    if (r->head == BERT_HEAD_MLM) {
        /* M gathered rows: h, transform output (GELU input), GELU output,
         * LN stats, LN output (decoder input) [M,H]; logits/probabilities
         * [M,V] fp32 for the cross-entropy backward */
        double M = (double)llround(B * r->mlm_rows);
        head = a * M * H * 4 + 8 * M + 4 * M * c->vocab_size;
    } else {
        /* h[:,0], pooled (tanh output), dropout mask [B,H], logits [B,C] fp32 */
        head = a * B * H * 2 + (c->hidden_dropout > 0 ? B * H : 0) + 4.0 * B * c->num_labels;
    }
    /* per-layer checkpoints when recomputing: each layer's input, plus the
     * largest layer's full set while it is recomputed for its backward */
    double all = 0, widest = 0;
    for (int l = 0; l < c->layers; l++) {
        double x = layer_acts(r, l, B, a);
        all += x;
        widest = x > widest ? x : widest;
    }
    double layers = recompute ? c->layers * a * N * H + widest : all;
    return (uint64_t)llround(emb + layers + out + head);
}

void plan_memory_estimate(const plan_request *r, int B, int recompute, plan_memory *m)
{
    const bert_config *c = &r->cfg;
    uint64_t P = bert_param_count(c);
    uint64_t e = r->prec == PLAN_FP32 ? 4 : 2;
    memset(m, 0, sizeof *m);
    m->params = e * P;
    m->grads = e * P;
    m->master = r->prec == PLAN_FP32 ? 0 : 4 * P;
    m->moments = 8 * P;
    m->acts = plan_activations(r, B, recompute);
    /* backward transients: d(output) and d(input) of the widest GEMM
     * ([N, max(3H, I)] each), dP of one layer [B,nh,T,T] fp32; 32 MiB of
     * cuBLAS(Lt) workspace */
    double N = (double)B * r->seq;
    double wide = 0, nh = 0;
    for (int l = 0; l < c->layers; l++) {
        double w = c->ffn[l] > 3 * bert_attn_width(c, l) ? c->ffn[l] : 3 * bert_attn_width(c, l);
        wide = w > wide ? w : wide;
        nh = c->heads[l] > nh ? c->heads[l] : nh;
    }
    wide = wide > c->hidden ? wide : c->hidden;
    m->workspace = (uint64_t)llround(2 * (double)e * N * wide
                                     + 4.0 * B * nh * r->seq * r->seq) + (32u << 20);
    m->nccl = r->gpus > 1 ? 2 * (25u << 20) : 0;
    m->total = m->params + m->grads + m->master + m->moments + m->acts + m->workspace + m->nccl;
}

static int fits(const plan_request *r, const plan_memory *m)
{
    return (double)m->total <= 0.9 * (double)r->gpu_mem;
}

int plan_fit(const plan_request *r, plan_result *out, flow_err *e)
{
    int rc = plan_check(r, e);
    if (rc) return rc;
    memset(out, 0, sizeof *out);
    plan_memory_estimate(r, r->batch, 0, &out->requested);
    out->micro_batch = r->batch;
    out->accum = r->accum;
    out->mem = out->requested;
    if (!r->gpu_mem) goto done;
    if (fits(r, &out->requested)) { out->fits = 1; goto done; }
    long total = (long)r->batch * r->accum;   /* sequences per device per step: kept */
    for (int rec = 0; rec <= 1 && !out->fits; rec++)
        for (long mb = rec ? r->batch : r->batch - 1; mb >= 1; mb--) {
            if (total % mb) continue;
            plan_memory m;
            plan_memory_estimate(r, (int)mb, rec, &m);
            if (fits(r, &m)) {
                out->micro_batch = (int)mb;
                out->accum = (int)(total / mb);
                out->recompute = rec;
                out->mem = m;
                out->fits = 1;
                break;
            }
        }
    if (!out->fits) {       /* the smallest thing there is, for the message */
        out->micro_batch = 1;
        out->accum = (int)total;
        out->recompute = 1;
        plan_memory_estimate(r, 1, 1, &out->mem);
    }
    out->changed = out->micro_batch != r->batch || out->recompute;
done:
    out->recompute_saving = plan_activations(r, out->micro_batch, 0) - plan_activations(r, out->micro_batch, 1);
    return 0;
}
