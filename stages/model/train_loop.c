/* train_loop.c — the one training loop of every training stage (tr_train,
 * contract in trainer.h): steps of accumulated micro-batches, clipping,
 * schedule, AdamW, loss curve, dev evaluation with best-weights selection,
 * checkpoints and resume.  The stage's objective plugs in (tr_objective). */
#include "trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void tr_options_from_params(flow_ctx *c, tr_options *o)
{
    memset(o, 0, sizeof *o);
    o->batch = (int)flow_param_int(c, "batch");
    o->accum = (int)flow_param_int(c, "grad_accum");
    o->epochs = (long)flow_param_int(c, "epochs");
    o->max_steps = (long)flow_param_int(c, "max_steps");
    o->lr = (float)flow_param_float(c, "lr");
    o->warmup_ratio = (float)flow_param_float(c, "warmup_ratio");
    o->max_grad_norm = (float)flow_param_float(c, "max_grad_norm");
    o->adamw = (bert_adamw){ 0.9f, 0.999f, 1e-8f, (float)flow_param_float(c, "weight_decay") };
    o->seed = (uint64_t)flow_param_int(c, "seed");
    o->checkpoint_every = (long)flow_param_int(c, "checkpoint_every");
    o->eval_every = (long)flow_param_int(c, "eval_every");
}

void tr_result_release(tr_result *r)
{
    buf_release(&r->curve);
    buf_release(&r->dev_curve);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Everything one run of the loop carries. */
typedef struct loop {
    flow_ctx *c;
    bert_model *m;
    const tr_objective *obj;
    const tr_options *opt;
    tr_result *res;
    size_t nbatches;            /* micro-batches per epoch */
    tr_epoch ep;
    long cur_epoch;
    tr_dp *dp;                  /* the data-parallel workers (one by default) */
    float *best;                /* keep_best: the best weights so far */
    double t0, win;             /* loss window for logs */
    long nwin;
} loop;

/* ---- checkpoint state: i64 tokens, f64 best score, i64 best step, u64
 * curve bytes, u64 dev curve bytes, the two curves, then (keep_best) the
 * best weights ------------------------------------------------------------ */
static void pack_state(const loop *L, flow_buf *x)
{
    const tr_result *r = L->res;
    int64_t tk = r->tokens, bs = r->best_step;
    uint64_t cl = r->curve.len, dl = r->dev_curve.len;
    buf_add(x, &tk, 8);
    buf_add(x, &r->best_score, 8);
    buf_add(x, &bs, 8);
    buf_add(x, &cl, 8);
    buf_add(x, &dl, 8);
    buf_add(x, r->curve.data, cl);
    buf_add(x, r->dev_curve.data, dl);
    if (L->best) buf_add(x, L->best, L->m->nparams * sizeof(float));
    const tr_aux *a = L->obj->aux;
    if (a) {
        buf_add(x, a->params, a->n * sizeof(float));
        buf_add(x, a->adam_m, a->n * sizeof(float));
        buf_add(x, a->adam_v, a->n * sizeof(float));
    }
    if (L->m->precision == BERT_FP16) {     /* the loss scale goes on where it was */
        unsigned char sc[TR_SCALER_BYTES];
        tr_scaler_pack(tr_dp_scaler(L->dp), sc);
        buf_add(x, sc, sizeof sc);
    }
}

/* -1: damaged.  An fp16 node's state ends with its loss scale (24 bytes,
 * tr_scaler_pack); one without it (written before the scale was kept,
 * never by a released run: fp16 had not run then) is damaged too, since
 * resuming it would give other bytes than an uninterrupted run. */
static int unpack_state(loop *L, const char *x, size_t len, long step)
{
    tr_result *r = L->res;
    size_t np = L->best ? L->m->nparams * sizeof(float) : 0;
    const tr_aux *a = L->obj->aux;
    size_t na = a ? a->n * sizeof(float) : 0;
    int64_t tk, bs;
    uint64_t cl, dl;
    if (len < 40) return -1;
    memcpy(&tk, x, 8);
    memcpy(&r->best_score, x + 8, 8);
    memcpy(&bs, x + 16, 8);
    memcpy(&cl, x + 24, 8);
    memcpy(&dl, x + 32, 8);
    size_t base = 40 + cl + dl + np + 3 * na;
    int fp16 = L->m->precision == BERT_FP16;
    if (cl > len || dl > len || len != base + (fp16 ? TR_SCALER_BYTES : 0)) return -1;
    if (fp16 && tr_scaler_unpack(tr_dp_scaler(L->dp), (const unsigned char *)x + base, step)) return -1;
    r->tokens = (long)tk;
    r->best_step = (long)bs;
    buf_add(&r->curve, x + 40, cl);
    buf_add(&r->dev_curve, x + 40 + cl, dl);
    if (L->best) memcpy(L->best, x + 40 + cl + dl, np);
    if (a) {
        const char *q = x + 40 + cl + dl + np;
        memcpy(a->params, q, na);
        memcpy(a->adam_m, q + na, na);
        memcpy(a->adam_v, q + 2 * na, na);
    }
    return 0;
}

/* Resumes from the node's checkpoint when there is one; *step is where. */
static int resume(loop *L, long *step)
{
    char *extra = NULL;
    size_t extra_len = 0;
    int rc = tr_ckpt_load(L->c, L->obj->ckpt_tag, step, L->m, &extra, &extra_len);
    if (rc == FLOW_E_NOTFOUND) {
        *step = 0;
        return 0;
    }
    if (rc) return rc;
    int bad = unpack_state(L, extra, extra_len, *step);
    free(extra);
    if (bad) return flow_ctx_fail(L->c, FLOW_E_CORRUPT, "the checkpoint's %s state is damaged", L->obj->stage);
    flow_log(L->c, "resumed from the checkpoint at step %ld/%ld", *step, L->res->total);
    if (L->m->precision == BERT_FP16)
        flow_log(L->c, "fp16: loss scale %g restored (%ld finite steps in a row, %ld skipped so far)",
                 (double)tr_dp_scaler(L->dp)->scale, tr_dp_scaler(L->dp)->good, tr_dp_scaler(L->dp)->skipped);
    return 0;
}

/* tr_ckpt_save's moments callback: the data-parallel group's moments */
static int dp_moments(void *dp, void *adam_m, void *adam_v)
{
    return tr_dp_moments(dp, adam_m, adam_v);
}

static int checkpoint(loop *L, long done)
{
    flow_err err = { 0 };
    if (bert_sync_to_host(L->m, &err)) return flow_ctx_fail(L->c, FLOW_E_STAGE, "%s", err.msg);
    flow_buf x;
    buf_init(&x);
    pack_state(L, &x);
    int rc = tr_ckpt_save(L->c, L->obj->ckpt_tag, done, L->m, dp_moments, L->dp, x.data, x.len);
    buf_release(&x);
    return rc;
}

/* Forward/backward over the micro-batches of step s, spread over the
 * data-parallel workers (train_dp.c); *loss = their mean. */
static int micro_batches(loop *L, long s, double *loss)
{
    const tr_objective *obj = L->obj;
    const tr_options *o = L->opt;
    long epoch = s / L->res->steps_per_epoch, j = s % L->res->steps_per_epoch;
    if (epoch != L->cur_epoch) {
        tr_epoch_release(&L->ep);
        tr_epoch_build(&L->ep, obj->usable, obj->nusable, obj->len, o->batch,
                       tr_seed(o->seed, obj->order_tag, (uint64_t)epoch), 1);
        L->cur_epoch = epoch;
    }
    size_t k0 = (size_t)j * (size_t)o->accum;
    size_t k1 = k0 + (size_t)o->accum < L->nbatches ? k0 + (size_t)o->accum : L->nbatches;
    long tokens = 0;
    if (obj->aux) memset(obj->aux->grads, 0, obj->aux->n * sizeof(float));   /* the hook adds to them */
    int rc = tr_dp_step(L->dp, obj, &L->ep, k0, k1, epoch, s, loss, &tokens);
    if (rc) return rc;
    L->res->tokens += tokens;
    L->res->tokens_here += tokens;
    if (!isfinite(*loss))
        return flow_ctx_fail(L->c, FLOW_E_STAGE, "step %ld: loss is %g (diverged); lower lr (now %g) or raise warmup_ratio",
                             s, *loss, (double)o->lr);
    return 0;
}

/* Dev evaluation after step `done`; keeps the best weights. */
static int evaluate(loop *L, long done)
{
    tr_result *r = L->res;
    double score = 0;
    flow_buf line;
    buf_init(&line);
    buf_printf(&r->dev_curve, "%ld\t", done);
    int rc = L->obj->evaluate(L->obj->self, L->m, &score, &r->dev_curve, &line);
    if (rc) {
        buf_release(&line);
        return rc;
    }
    int best = score > r->best_score;
    flow_log(L->c, "step %ld (epoch %.2f): train loss %.4f, dev %s%s", done,
             (double)done / r->steps_per_epoch, L->nwin ? L->win / L->nwin : 0.0,
             line.data ? line.data : "", best && L->opt->keep_best ? "  (best)" : "");
    buf_release(&line);
    L->win = 0;
    L->nwin = 0;
    if (!best) return 0;
    r->best_score = score;
    r->best_step = done;
    if (!L->best) return 0;
    flow_err err = { 0 };
    if (bert_sync_to_host(L->m, &err)) return flow_ctx_fail(L->c, FLOW_E_STAGE, "%s", err.msg);
    memcpy(L->best, L->m->params, L->m->nparams * sizeof(float));
    return 0;
}

/* Curve, progress, logs, evaluation and checkpoint after step s. */
static int after_step(loop *L, long s, double loss, float lr, float gn)
{
    tr_result *r = L->res;
    const tr_options *o = L->opt;
    long done = s + 1;
    r->last_loss = (float)loss;
    L->win += loss;
    L->nwin++;
    buf_printf(&r->curve, "%ld\t%.6f\t%.6g\t%.4f\n", done, loss, (double)lr, (double)gn);
    double el = now_s() - L->t0, tps = el > 0 ? r->tokens_here / el : 0.0;
    if (L->obj->evaluate)
        flow_progress(L->c, (double)done / r->total, "step %ld/%ld  loss %.3f  %.1fk tok/s  best dev %.3f",
                      done, r->total, L->win / L->nwin, tps / 1000, r->best_step < 0 ? 0 : r->best_score);
    else
        flow_progress(L->c, (double)done / r->total, "step %ld/%ld  loss %.3f  %.1fk tok/s",
                      done, r->total, L->win / L->nwin, tps / 1000);
    if (o->log_every > 0 && (done % o->log_every == 0 || done == r->total)) {
        flow_log(L->c, "step %ld/%ld  loss %.4f  lr %.3g  grad norm %.3f  %.0f tok/s",
                 done, r->total, L->win / L->nwin, (double)lr, (double)gn, tps);
        L->win = 0;
        L->nwin = 0;
    }
    int end_epoch = done % r->steps_per_epoch == 0 || done == r->total;
    int rc = 0;
    if (L->obj->evaluate && ((o->eval_every > 0 && done % o->eval_every == 0) ||
                             (o->eval_each_epoch && end_epoch) || done == r->total))
        rc = evaluate(L, done);
    if (!rc && o->checkpoint_every > 0 && done % o->checkpoint_every == 0 && done < r->total)
        rc = checkpoint(L, done);
    tr_test_kill(L->obj->stage, done);
    return rc;
}

/* The aux group's step after the model's (adam_t already incremented):
 * its own clipping, then torch AdamW in double, element by element. */
static void aux_step(const tr_aux *a, const tr_options *o, float lr, long t)
{
    double ss = 0;
    for (size_t i = 0; i < a->n; i++) ss += (double)a->grads[i] * a->grads[i];
    double f = 1.0, norm = sqrt(ss);
    if (o->max_grad_norm > 0 && o->max_grad_norm / (norm + 1e-6) < 1.0) f = o->max_grad_norm / (norm + 1e-6);
    double b1 = o->adamw.beta1, b2 = o->adamw.beta2, bc1 = 1.0 - pow(b1, (double)t),
           bc2 = sqrt(1.0 - pow(b2, (double)t));
    for (size_t i = 0; i < a->n; i++) {
        double g = a->grads[i] * f;
        double mi = b1 * a->adam_m[i] + (1.0 - b1) * g, vi = b2 * a->adam_v[i] + (1.0 - b2) * g * g;
        a->adam_m[i] = (float)mi;
        a->adam_v[i] = (float)vi;
        double p = a->params[i];
        if (a->decay[i]) p *= 1.0 - (double)lr * o->adamw.weight_decay;
        a->params[i] = (float)(p - (double)lr / bc1 * mi / (sqrt(vi) / bc2 + o->adamw.eps));
    }
}

static void plan(loop *L)
{
    const tr_options *o = L->opt;
    tr_result *r = L->res;
    L->nbatches = (L->obj->nusable + (size_t)o->batch - 1) / (size_t)o->batch;
    r->steps_per_epoch = (long)((L->nbatches + (size_t)o->accum - 1) / (size_t)o->accum);
    r->total = o->max_steps > 0 ? o->max_steps : r->steps_per_epoch * o->epochs;
    r->warmup = (long)(o->warmup_ratio * r->total + 0.5);
    r->best_step = -1;
    r->best_score = -INFINITY;
}

int tr_train(flow_ctx *c, bert_model *m, const tr_objective *obj, const tr_options *opt,
             tr_result *res)
{
    memset(res, 0, sizeof *res);
    buf_init(&res->curve);
    buf_init(&res->dev_curve);
    loop L = { .c = c, .m = m, .obj = obj, .opt = opt, .res = res, .cur_epoch = -1 };
    plan(&L);
    if (obj->nusable == 0 || res->total <= 0)
        return flow_ctx_fail(c, FLOW_E_INPUT, "%s: nothing to train on (%zu sequences, %ld steps)", obj->stage,
                             obj->nusable, res->total);
    if (opt->keep_best) {
        L.best = xmalloc(m->nparams * sizeof *L.best);
        memcpy(L.best, m->params, m->nparams * sizeof *L.best);
    }
    long step = 0;
    if (m->backend == BERT_ON_CUDA)     /* a CPU run's log stays as it was */
        flow_log(c, "%s: training on GPU %d (the CUDA backend, %s)", obj->stage, m->gpu,
                 bert_precision_name(m->precision));
    int rc = tr_dp_new(c, m, opt->batch, obj->backward != NULL, &L.dp);
    if (!rc) rc = resume(&L, &step);
    if (!rc) rc = tr_dp_agree(L.dp, step, opt->checkpoint_every);
    if (!rc && obj->aux && tr_dp_world(L.dp) > 1)
        rc = flow_ctx_fail(c, FLOW_E_PARAM, "%s: its extra trainable parameters (the hidden-state projection) are "
                           "not reduced across %d data-parallel processes yet; run one process", obj->stage,
                           tr_dp_world(L.dp));
    L.t0 = now_s();
    for (; !rc && step < res->total; step++) {
        double loss;
        if ((rc = micro_batches(&L, step, &loss))) break;
        float gn, lr = bert_lr_linear(opt->lr, step, res->warmup, res->total);
        if ((rc = tr_dp_update(L.dp, &opt->adamw, lr, opt->max_grad_norm, step, &gn))) break;
        if (obj->aux) aux_step(obj->aux, opt, lr, m->adam_t);
        rc = after_step(&L, step, loss, lr, gn);
    }
    res->seconds = now_s() - L.t0;
    if (m->precision == BERT_FP16 && L.dp) {
        flow_metric(c, "train.skipped_steps", (double)tr_dp_skipped(L.dp));
        flow_log(c, "fp16: %ld of %ld steps skipped (gradient overflow at the loss scale)", tr_dp_skipped(L.dp),
                 res->total);
    }
    flow_err err = { 0 };
    if (!rc && L.best) {
        memcpy(m->params, L.best, m->nparams * sizeof *L.best);
        if (bert_sync_to_device(m, &err)) rc = flow_ctx_fail(c, FLOW_E_STAGE, "%s", err.msg);
    } else if (!rc && bert_sync_to_host(m, &err)) {
        rc = flow_ctx_fail(c, FLOW_E_STAGE, "%s", err.msg);
    }
    tr_epoch_release(&L.ep);
    tr_dp_free(L.dp);
    free(L.best);
    return rc;
}
