/* bert_optim.c — gradients and the optimizer over the flat buffers, as
 * the public API sees them: zero_grad, global norm + clipping (whole,
 * or in the pieces a sharded step needs), the optimizer shard, AdamW
 * (torch.optim.AdamW semantics, weight decay masked by the tensor table;
 * the backend does the arithmetic, cpu/cpu_optim.c on the CPU), and the
 * profiler that times every op kind of forward, backward and optimizer.
 */
#include "bert_backend.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* public wrappers                                                     */

void bert_zero_grad(bert_model *m)
{
    m->ops->zero_grad(m);
}

void bert_scale_grads(bert_model *m, float f)
{
    m->ops->scale_grads(m, 0, m->nparams, f);
}

void bert_grad_sumsq_blocks(bert_model *m, size_t lo, size_t hi, double *part)
{
    m->ops->grad_sumsq_blocks(m, lo, hi, part);
}

float bert_grad_norm_of_blocks(const double *part, size_t nblocks)
{
    double total = 0;
    for (size_t b = 0; b < nblocks; b++)
        total += part[b];
    return (float)sqrt(total);
}

float bert_grad_norm(bert_model *m)
{
    double t0 = m->prof.enabled ? bert_prof_now() : 0;
    size_t nb = (m->nparams + BERT_GRAD_BLOCK - 1) / BERT_GRAD_BLOCK;
    double *part = malloc((nb + 1) * sizeof *part);
    if (!part)
        abort();
    m->ops->grad_sumsq_blocks(m, 0, m->nparams, part);
    float n = bert_grad_norm_of_blocks(part, nb);
    free(part);
    if (m->prof.enabled)
        bert_prof_add(m, BERT_OP_GRADNORM, 0, t0, 0);
    return n;
}

void bert_clip_grads_by(bert_model *m, size_t lo, size_t hi, float norm, float max_norm)
{
    if (max_norm <= 0)
        return;
    float f = max_norm / (norm + 1e-6f);
    if (f < 1.0f && hi > lo) {
        double t0 = m->prof.enabled ? bert_prof_now() : 0;
        m->ops->scale_grads(m, lo, hi, f);
        if (m->prof.enabled)
            bert_prof_add(m, BERT_OP_GRADNORM, 0, t0, 0);
    }
}

float bert_clip_grad_norm(bert_model *m, float max_norm)
{
    float norm = bert_grad_norm(m);
    bert_clip_grads_by(m, 0, m->nparams, norm, max_norm);
    return norm;
}

int bert_shard_optimizer(bert_model *m, size_t lo, size_t hi, flow_err *e)
{
    if (lo > hi || hi > m->nparams || (lo < hi && (lo % BERT_GRAD_BLOCK != 0 ||
        (hi % BERT_GRAD_BLOCK != 0 && hi != m->nparams))))
        return flow_fail(e, FLOW_E_PARAM, "optimizer shard [%zu, %zu) of %zu floats: the ends must be "
                         "multiples of %d (or the end of the buffer)", lo, hi, m->nparams, BERT_GRAD_BLOCK);
    float *mm = calloc(hi - lo + 1, sizeof *mm), *vv = calloc(hi - lo + 1, sizeof *vv);
    if (!mm || !vv) {
        free(mm);
        free(vv);
        return flow_fail(e, FLOW_E_NOMEM, "optimizer shard: cannot allocate 2 x %.1f MiB of moments",
                         (double)(hi - lo) * sizeof(float) / 1048576.0);
    }
    size_t a = lo > m->opt_lo ? lo : m->opt_lo, b = hi < m->opt_hi ? hi : m->opt_hi;
    if (a < b) {    /* the floats both shards hold keep their moments */
        memcpy(mm + (a - lo), m->adam_m + (a - m->opt_lo), (b - a) * sizeof *mm);
        memcpy(vv + (a - lo), m->adam_v + (a - m->opt_lo), (b - a) * sizeof *vv);
    }
    free(m->adam_m);
    free(m->adam_v);
    m->adam_m = mm;
    m->adam_v = vv;
    m->opt_lo = lo;
    m->opt_hi = hi;
    return m->ops->sync_to_device(m, e);    /* = bert_sync_to_device, which lives in bert_model.c above */
}

void bert_adamw_step(bert_model *m, const bert_adamw *hp, float lr)
{
    double t0 = m->prof.enabled ? bert_prof_now() : 0;
    m->adam_t++;
    m->ops->adamw(m, hp, lr);
    if (m->prof.enabled)
        bert_prof_add(m, BERT_OP_ADAMW, 0, t0, 0);
}

/* ------------------------------------------------------------------ */
/* profiler                                                            */

double bert_prof_now(void)
{
    return omp_get_wtime();
}

void bert_prof_add(bert_model *m, int kind, int fwd, double t0, double flops)
{
    double dt = omp_get_wtime() - t0;
    if (fwd)
        m->prof.fwd_s[kind] += dt;
    else
        m->prof.bwd_s[kind] += dt;
    m->prof.flops[kind] += flops;
    if (fwd && kind == BERT_OP_EMBED)
        m->prof.calls++;
}

void bert_profile_reset(bert_model *m)
{
    int on = m->prof.enabled;
    memset(&m->prof, 0, sizeof m->prof);
    m->prof.enabled = on;
}

void bert_profile_enable(bert_model *m, int on)
{
    memset(&m->prof, 0, sizeof m->prof);
    m->prof.enabled = on;
}

void bert_profile_print(const bert_model *m, FILE *f)
{
    static const char *names[BERT_OP_COUNT] = {
        "embed", "layernorm", "matmul", "attention", "gelu", "tanh", "residual",
        "dropout", "xent", "gradnorm", "adamw", "other",
    };
    const bert_profile *p = &m->prof;
    double total = 0;
    for (int k = 0; k < BERT_OP_COUNT; k++)
        total += p->fwd_s[k] + p->bwd_s[k];
    fprintf(f, "%-10s %10s %10s %7s %9s\n", "op", "fwd ms", "bwd ms", "share", "GFLOP/s");
    for (int k = 0; k < BERT_OP_COUNT; k++) {
        double s = p->fwd_s[k] + p->bwd_s[k];
        if (s == 0)
            continue;
        fprintf(f, "%-10s %10.1f %10.1f %6.1f%% ", names[k], 1e3 * p->fwd_s[k],
                1e3 * p->bwd_s[k], total > 0 ? 100 * s / total : 0);
        if (p->flops[k] > 0)
            fprintf(f, "%9.1f\n", p->flops[k] / s / 1e9);
        else
            fprintf(f, "%9s\n", "-");
    }
    double fl = 0;
    for (int k = 0; k < BERT_OP_COUNT; k++)
        fl += p->flops[k];
    fprintf(f, "%-10s %10s %10s %7s %9.1f   (%.1f ms over %ld forward calls)\n", "total", "", "",
            "", total > 0 ? fl / total / 1e9 : 0, 1e3 * total, p->calls);
}

double bert_train_flops(const bert_config *c, int B, int T, int head, long n_mlm)
{
    double N = (double)B * T, H = c->hidden, fwd = 0;
    for (int l = 0; l < c->layers; l++) {
        double A = bert_attn_width(c, l), I = c->ffn[l];
        fwd += 2 * N * H * (4 * A + 2 * I) + 4.0 * B * T * T * A;
    }
    if (head == BERT_HEAD_MLM)
        fwd += 2.0 * n_mlm * H * (H + c->vocab_size);
    else
        fwd += 2.0 * B * H * (H + c->num_labels);
    return 3 * fwd;
}
