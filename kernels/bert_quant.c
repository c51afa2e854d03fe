/* bert_quant.c — quantized encoder Linears for the BERT model, and the
 * calibration that GPTQ needs, both through the Linear hook of the fp32
 * forward (bert_set_linear_hook): everything else of the forward
 * (embeddings, attention, softmax, LayerNorm, GELU, pooler, classifier)
 * stays the fp32 code, unchanged.
 *
 * bert_qmodel: per (layer, Linear) an optional prepared quant_weight; the
 *   hook quantizes the Linear's input rows per row (quant_act) and runs
 *   the integer GEMM + one rescale + fp32 bias, both in quant_linear_x.  The fused QKV
 *   block [3A, H] is one weight: per-channel scales and K-groups make that
 *   identical to quantizing Q, K and V apart.
 * bert_calib: an observing hook that adds X^T X of each Linear's input
 *   rows of real tokens (attention mask 1) to that Linear's Hessian.
 *   Hessians come from the fp32 model for every layer at once (the inputs
 *   are not re-derived from already quantized layers).
 */
#include "kernels.h"
#include "kernels/quant/quant.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

struct bert_qmodel {
    int layers;
    quant_weight *w;            /* [layers * BERT_LIN_COUNT] */
    unsigned char *present;
    quant_act act;              /* scratch: the Linear input, quantized */
    int threads;
    quant_act *tact;            /* [ntact] per-thread scratch of row-block calls made
                                 * from inside the forward's parallel region */
    int ntact;
};

bert_qmodel *bert_qmodel_new(int layers)
{
    bert_qmodel *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->layers = layers;
    q->w = calloc((size_t)layers * BERT_LIN_COUNT, sizeof *q->w);
    q->present = calloc((size_t)layers * BERT_LIN_COUNT, 1);
    if (!q->w || !q->present) { free(q->w); free(q->present); free(q); return NULL; }
    quant_act_init(&q->act);
    return q;
}

void bert_qmodel_free(bert_qmodel *q)
{
    if (!q) return;
    for (int i = 0; i < q->layers * BERT_LIN_COUNT; i++)
        if (q->present[i]) quant_weight_release(&q->w[i]);
    quant_act_release(&q->act);
    for (int i = 0; i < q->ntact; i++) quant_act_release(&q->tact[i]);
    free(q->tact);
    free(q->w);
    free(q->present);
    free(q);
}

void bert_qmodel_set_threads(bert_qmodel *q, int threads) { q->threads = threads; }

void bert_qmodel_set(bert_qmodel *q, int layer, int which, quant_weight *w)
{
    int i = layer * BERT_LIN_COUNT + which;
    if (q->present[i]) quant_weight_release(&q->w[i]);
    q->w[i] = *w;
    q->present[i] = 1;
    memset(w, 0, sizeof *w);
}

const quant_weight *bert_qmodel_get(const bert_qmodel *q, int layer, int which)
{
    if (layer < 0 || layer >= q->layers || which < 0 || which >= BERT_LIN_COUNT) return NULL;
    int i = layer * BERT_LIN_COUNT + which;
    return q->present[i] ? &q->w[i] : NULL;
}

static const char *const lin_names[BERT_LIN_COUNT] = { "qkv", "attention.output", "intermediate", "output" };

int bert_qmodel_quantize(bert_qmodel *q, int layer, int which, const float *W, int OC, int IC,
                         const bert_qspec *sp, const double *H, flow_err *e)
{
    char what[96];
    snprintf(what, sizeof what, "layer %d %s [%d, %d]", layer, lin_names[which], OC, IC);
    if (layer < 0 || layer >= q->layers || which < 0 || which >= BERT_LIN_COUNT)
        return flow_fail(e, FLOW_E_PARAM, "quantize: no Linear %d of layer %d", which, layer);
    if (sp->bits != 4 && sp->bits != 8)
        return flow_fail(e, FLOW_E_PARAM, "quantize %s: bits %d is not 4 or 8", what, sp->bits);
    if (sp->bits == 4 && (IC % sp->group || (sp->group != 32 && sp->group != 64 && sp->group != 128)))
        return flow_fail(e, FLOW_E_PARAM, "quantize %s: group size %d does not divide the input width %d "
                         "(or is not 32, 64, 128)", what, sp->group, IC);
    if (sp->gptq && !H)
        return flow_fail(e, FLOW_E_PARAM, "quantize %s: GPTQ needs calibration data (no Hessian)", what);
    size_t n = (size_t)OC * IC;
    int G = sp->bits == 4 ? IC / sp->group : 1;
    int8_t *q8 = sp->bits == 8 ? malloc(n) : NULL;
    uint8_t *pk = sp->bits == 4 ? malloc(n / 2) : NULL;
    uint8_t *z = malloc((size_t)OC * G);
    float *s = malloc((size_t)OC * G * sizeof(float));
    int rc = 0;
    if ((sp->bits == 8 && !q8) || (sp->bits == 4 && !pk) || !z || !s) {
        rc = flow_fail(e, FLOW_E_NOMEM, "quantize %s: out of memory", what);
        goto out;
    }
    int8_t L[16];
    if (sp->bits == 4 && sp->nf4) quant_nf4_fit(W, OC, IC, sp->group, 20, L);
    gptq_params gp = { sp->bits, sp->bits == 4 ? sp->group : 0, sp->sym, sp->nf4 ? L : NULL,
                       sp->damp, sp->act_order, 128 };
    if (sp->gptq) rc = gptq_quantize(W, OC, IC, H, &gp, q8, pk, s, z, e);
    else if (sp->bits == 8) quant_int8_rtn(W, OC, IC, q8, s);
    else if (sp->nf4) quant_nf4_rtn(W, OC, IC, sp->group, L, pk, s);
    else quant_u4_rtn(W, OC, IC, sp->group, sp->sym, pk, s, z);
    if (rc) goto out;
    quant_weight w;
    if (sp->bits == 8) rc = quant_weight_init_int8(&w, OC, IC, q8, s, what, e);
    else if (sp->nf4) rc = quant_weight_init_nf4(&w, OC, IC, sp->group, pk, s, L, what, e);
    else rc = quant_weight_init_u4(&w, OC, IC, sp->group, pk, s, sp->sym ? NULL : z, what, e);
    if (!rc) bert_qmodel_set(q, layer, which, &w);
out:
    free(q8); free(pk); free(z); free(s);
    return rc;
}

static int qmodel_hook(void *arg, int layer, int which, const float *in, int N, int IC, int OC,
                       const float *W, const float *b, float *out, flow_err *e)
{
    (void)W;
    bert_qmodel *q = arg;
    const quant_weight *w = bert_qmodel_get(q, layer, which);
    if (!w) return 0;
    if (w->N != OC || w->K != IC)
        return flow_fail(e, FLOW_E_PARAM, "quantized layer %d %s is [%d, %d], the model needs [%d, %d]",
                         layer, lin_names[which], w->N, w->K, OC, IC);
    int rc, t = omp_in_parallel() ? omp_get_thread_num() : -1;
    if (t >= 0 && t < q->ntact) {   /* a block of rows, on this thread (see qmodel_rows_threads) */
        rc = quant_linear_x(w, &q->tact[t], in, N, (size_t)IC, b, out, (size_t)OC, 1, e);
    } else {
        rc = quant_linear_x(w, &q->act, in, N, (size_t)IC, b, out, (size_t)OC, q->threads, e);
    }
    return rc ? rc : 1;
}

/* The forward may hand blocks of rows to the hook from a parallel region
 * of this many threads when every encoder Linear is quantized (the fused
 * eval encoder of kernels/cpu/bert_cpu_fused.c); 0 when some Linear stays fp32 or
 * the per-thread scratch cannot be had. */
static int qmodel_rows_threads(void *arg)
{
    bert_qmodel *q = arg;
    for (int i = 0; i < q->layers * BERT_LIN_COUNT; i++)
        if (!q->present[i]) return 0;
    int nt = q->threads > 0 ? q->threads : omp_get_max_threads();
    if (nt > q->ntact) {
        quant_act *p = realloc(q->tact, (size_t)nt * sizeof *p);
        if (!p) return 0;
        for (int i = q->ntact; i < nt; i++) quant_act_init(&p[i]);
        q->tact = p;
        q->ntact = nt;
    }
    return nt;
}

void bert_qmodel_attach(bert_model *m, bert_qmodel *q)
{
    bert_set_linear_hook(m, q ? qmodel_hook : NULL, q);
    bert_set_linear_rows(m, q ? qmodel_rows_threads : NULL);
}

/* ---- calibration ----------------------------------------------------------- */

struct bert_calib {
    int layers;
    double **H;                 /* [layers * BERT_LIN_COUNT] -> [IC, IC] or NULL */
    int *width;
    long *rows;
    const int32_t *mask;        /* of the current batch, or NULL (all real) */
    float *sel;                 /* scratch: the real rows */
    size_t sel_cap;
};

bert_calib *bert_calib_new(int layers)
{
    bert_calib *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->layers = layers;
    c->H = calloc((size_t)layers * BERT_LIN_COUNT, sizeof *c->H);
    c->width = calloc((size_t)layers * BERT_LIN_COUNT, sizeof *c->width);
    c->rows = calloc((size_t)layers * BERT_LIN_COUNT, sizeof *c->rows);
    if (!c->H || !c->width || !c->rows) { bert_calib_free(c); return NULL; }
    return c;
}

void bert_calib_free(bert_calib *c)
{
    if (!c) return;
    if (c->H)
        for (int i = 0; i < c->layers * BERT_LIN_COUNT; i++) free(c->H[i]);
    free(c->H); free(c->width); free(c->rows); free(c->sel);
    free(c);
}

static int calib_hook(void *arg, int layer, int which, const float *in, int N, int IC, int OC,
                      const float *W, const float *b, float *out, flow_err *e)
{
    (void)OC; (void)W; (void)b; (void)out;
    bert_calib *c = arg;
    int i = layer * BERT_LIN_COUNT + which;
    if (!c->H[i]) {
        c->H[i] = calloc((size_t)IC * IC, sizeof(double));
        if (!c->H[i]) return flow_fail(e, FLOW_E_NOMEM, "calibration: no memory for a [%d, %d] Hessian", IC, IC);
        c->width[i] = IC;
    }
    if (c->width[i] != IC)
        return flow_fail(e, FLOW_E_PARAM, "calibration: layer %d %s changed width %d -> %d",
                         layer, lin_names[which], c->width[i], IC);
    const float *X = in;
    int n = N;
    if (c->mask) {
        size_t need = (size_t)N * IC;
        if (need > c->sel_cap) {
            float *p = realloc(c->sel, need * sizeof(float));
            if (!p) return flow_fail(e, FLOW_E_NOMEM, "calibration: out of memory");
            c->sel = p;
            c->sel_cap = need;
        }
        n = 0;
        for (int r = 0; r < N; r++)
            if (c->mask[r]) memcpy(c->sel + (size_t)n++ * IC, in + (size_t)r * IC, (size_t)IC * sizeof(float));
        X = c->sel;
    }
    gptq_hessian_add(c->H[i], X, n, IC);
    c->rows[i] += n;
    return 0;                   /* observe only: the fp32 Linear runs */
}

void bert_calib_attach(bert_model *m, bert_calib *c, const bert_batch *b)
{
    if (c) c->mask = b ? b->attn_mask : NULL;
    bert_set_linear_hook(m, c ? calib_hook : NULL, c);
}

const double *bert_calib_hessian(const bert_calib *c, int layer, int which, int *width, long *rows)
{
    if (layer < 0 || layer >= c->layers || which < 0 || which >= BERT_LIN_COUNT) return NULL;
    int i = layer * BERT_LIN_COUNT + which;
    if (width) *width = c->width[i];
    if (rows) *rows = c->rows[i];
    return c->H[i];
}
