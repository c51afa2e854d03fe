/* prune.c — the `prune` stage: structured pruning of a bert-cls model's
 * attention heads and FFN neurons by importance, in rounds, with an
 * optional recovery fine-tune.
 *
 *   p = prune { model = ft  dev = s.dev  head_ratio = 0.5  ffn_ratio = 0.5  rounds = 3 }
 *   p = prune { model = ft  calibration = s.train  dev = s.dev  train = s.train
 *               heads = 4  ffn = 256  scope = layer  epochs = 2 }
 *
 * Inputs are corpora (split.dev, split.train), encoded here with the
 * model's own tokenizer at the length the model was fine-tuned with, so
 * a model whose vocabulary was trimmed or extended is scored on its own
 * ids.  Importance (prune.h) is the classification loss's first-order
 * estimate per head / neuron on `calibration` (default: `dev`).
 *
 * Targets (one of each pair; the other left at its default):
 *   heads = N | head_ratio = r     attention heads kept
 *   ffn = N   | ffn_ratio = r      FFN neurons kept
 *   scope = global: N (or round(r x all)) in the whole model, the least
 *           important heads/neurons of any layer going first;
 *   scope = layer:  N (or round(r x the layer's count)) in every layer.
 * Every layer keeps at least one head and one neuron: a target that asks
 * for less (a global total below the layer count, a per-layer count of 0)
 * fails at node start, as does one above what the model has.  Ratios are
 * in (0, 1] (graph load).  Rounds: round k of R re-scores the current
 * model and removes down to all - (all - target) * k / R (floored), so
 * each round removes about the same share and the scores follow the
 * removals.  Rows and columns are removed physically (prune_shrink): the
 * result is an ordinary, smaller, dense bert-cls artifact (per-layer
 * heads and FFN widths in model.json), which classify, eval, evaluate,
 * report and both exports accept.
 *
 * A target that keeps everything, without recovery, is an exact no-op:
 * every part of the input is copied byte for byte.
 *
 * Recovery: with `train` bound (and `dev`, for selecting the best
 * weights) the pruned model is fine-tuned through the one training loop
 * with finetune's objective (stages/model/cls_objective.h) and options;
 * the best dev macro-F1 is kept.  Resumable like finetune.  Importance
 * is always scored with the input's classifier head (its pooling);
 * `pooling = cls|mean` re-heads the model for the recovery (default
 * `model`: the input's pooling throughout).
 *
 * Metrics and report: heads and FFN neurons per layer before and after,
 * parameters before and after, calibration loss, dev accuracy/macro-F1 of
 * the input, the pruned and (with recovery) the recovered model. */
#include "prune.h"
#include "vocab_edit.h"
#include "stages/model/clf_internal.h"
#include "stages/model/cls_objective.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const flow_param_def prune_params[] = {
    {"heads", FLOW_P_INT, 0, "0", 0, 1e6, NULL, "attention heads to keep (scope decides where); 0 = head_ratio decides"},
    {"head_ratio", FLOW_P_FLOAT, 0, "1", 1e-9, 1, NULL, "share of attention heads to keep, in (0, 1]"},
    {"ffn", FLOW_P_INT, 0, "0", 0, 1e9, NULL, "FFN neurons to keep (scope decides where); 0 = ffn_ratio decides"},
    {"ffn_ratio", FLOW_P_FLOAT, 0, "1", 1e-9, 1, NULL, "share of FFN neurons to keep, in (0, 1]"},
    {"scope", FLOW_P_STRING, 0, "global", 0, -1, "global|layer", "targets for the whole model or for every layer"},
    {"rounds", FLOW_P_INT, 0, "3", 1, 100, NULL, "score-and-remove rounds"},
    {"calib_batch", FLOW_P_INT, 0, "16", 1, 4096, NULL, "sequences per scoring batch"},
    /* recovery fine-tune (train bound): finetune's options */
    {"epochs", FLOW_P_INT, 0, "1", 1, 10000, NULL, "recovery: passes over train (when max_steps = 0)"},
    {"max_steps", FLOW_P_INT, 0, "0", 0, 1e9, NULL, "recovery: optimizer steps; 0 = epochs decide"},
    {"batch", FLOW_P_INT, 0, "32", 1, 65536, NULL, "recovery: sequences per micro-batch"},
    {"grad_accum", FLOW_P_INT, 0, "1", 1, 1024, NULL, "recovery: micro-batches per optimizer step"},
    {"lr", FLOW_P_FLOAT, 0, "0.00005", 0, 10, NULL, "recovery: peak learning rate"},
    {"warmup_ratio", FLOW_P_FLOAT, 0, "0.1", 0, 1, NULL, "recovery: share of steps with linear warmup"},
    {"weight_decay", FLOW_P_FLOAT, 0, "0.01", 0, 10, NULL, "recovery: AdamW decoupled weight decay"},
    {"max_grad_norm", FLOW_P_FLOAT, 0, "1.0", 0, 1e6, NULL, "recovery: global-norm clipping (0 = off)"},
    {"class_weights", FLOW_P_STRING, 0, "none", 0, -1, "none|balanced", "recovery: cross-entropy class weights"},
    {"seed", FLOW_P_INT, 0, "1", 0, 1e15, NULL, "recovery: order and dropout seed"},
    {"checkpoint_every", FLOW_P_INT, 0, "200", 0, 1e9, NULL, "recovery: steps between checkpoints (0 = none)"},
    {"eval_every", FLOW_P_INT, 0, "0", 0, 1e9, NULL, "recovery: steps between dev evaluations besides epoch ends"},
    {"pooling", FLOW_P_STRING, 0, "model", 0, -1, "model|cls|mean",
     "recovery: the classifier's pooling from then on (model = the input's; scores always use the input's)"},
};

static const flow_input_def prune_inputs[] = {
    {"model", 0, 0, "a bert-cls model artifact (finetune, trim-vocab, extend-vocab, prune, distill)"},
    {"calibration", 1, 0, "labelled corpus to score importance on (split.train or split.dev); default: dev"},
    {"dev", 1, 0, "labelled corpus (split.dev): dev scores, recovery's model selection, default calibration"},
    {"train", 1, 0, "labelled corpus (split.train): bound = recovery fine-tune after pruning"},
};

#define RECOVERY(name) {name, "train", "bound", "recovery fine-tune options; bind train to fine-tune"}
static const flow_applies_def prune_applies[] = {
    {"heads", "head_ratio", "1", "give heads or head_ratio, not both"},
    {"head_ratio", "heads", "0", "give heads or head_ratio, not both"},
    {"ffn", "ffn_ratio", "1", "give ffn or ffn_ratio, not both"},
    {"ffn_ratio", "ffn", "0", "give ffn or ffn_ratio, not both"},
    RECOVERY("epochs"), RECOVERY("max_steps"), RECOVERY("batch"), RECOVERY("grad_accum"),
    RECOVERY("lr"), RECOVERY("warmup_ratio"), RECOVERY("weight_decay"), RECOVERY("max_grad_norm"),
    RECOVERY("class_weights"), RECOVERY("seed"), RECOVERY("checkpoint_every"), RECOVERY("eval_every"),
    RECOVERY("pooling"),
    {"epochs", "max_steps", "0", "max_steps > 0 sets the length of training"},
};

/* The final target of one kind (heads or FFN neurons): per layer want[l]
 * (scope = layer) or *total (global; want unused).  Fails the node when
 * it is impossible. */
static int target(flow_ctx *c, const char *what, const char *nparam, const char *rparam,
                  const int *count, int layers, int per_layer, int *want, long *total)
{
    int64_t n = flow_param_int(c, nparam);
    double r = flow_param_float(c, rparam);
    long all = 0;
    for (int l = 0; l < layers; l++) all += count[l];
    *total = -1;
    if (!per_layer) {
        long t = n > 0 ? (long)n : (long)floor(r * (double)all + 0.5);
        if (t > all)
            return flow_ctx_fail(c, FLOW_E_PARAM, "%s = %lld but the model has %ld %s in %d layers",
                                 nparam, (long long)n, all, what, layers);
        if (t < layers)
            return flow_ctx_fail(c, FLOW_E_PARAM, "%s keeps %ld %s (%s = %lld, %s = %g) but each of the %d "
                                 "layers keeps at least one; ask for at least %d", what, t, what, nparam,
                                 (long long)n, rparam, r, layers, layers);
        *total = t;
        return 0;
    }
    for (int l = 0; l < layers; l++) {
        long t = n > 0 ? (long)n : (long)floor(r * (double)count[l] + 0.5);
        if (t > count[l])
            return flow_ctx_fail(c, FLOW_E_PARAM, "%s = %lld but layer %d has %d %s (scope = layer)",
                                 nparam, (long long)n, l, count[l], what);
        if (t < 1)
            return flow_ctx_fail(c, FLOW_E_PARAM, "%s = %g keeps none of layer %d's %d %s; every layer keeps "
                                 "at least one (raise it, or use scope = global)", rparam, r, l, count[l], what);
        want[l] = (int)t;
    }
    return 0;
}

/* What one round keeps of the current counts cur[], heading for the
 * final target (want / total) from the start counts c0[]: round k of R. */
static void round_target(const int *c0, int layers, const int *want, long total, int k, int R,
                         int *want_k, long *total_k)
{
    long all0 = 0;
    for (int l = 0; l < layers; l++) all0 += c0[l];
    *total_k = total < 0 ? -1 : all0 - (all0 - total) * k / R;
    for (int l = 0; l < layers && total < 0; l++)
        want_k[l] = c0[l] - (int)((long)(c0[l] - want[l]) * k / R);
}

/* A labelled corpus (text + units + labels) of input port encoded with the
 * model's tokenizer as [CLS] ids [SEP] of at most T ids, labels mapped to
 * the model's label ids by name. */
static int encode_corpus(flow_ctx *c, const char *port, const vocab_model *vm, int T, cls_data *d)
{
    memset(d, 0, sizeof *d);
    flow_corpus fc;
    int rc = corpus_read(c, port, 0, "", &fc);
    if (rc) return rc;
    const json_value *jl = json_get(vm->json, "labels");
    int C = json_len(jl);
    enc_view v = { 0 };
    v.n = (size_t)(fc.n > 0 ? fc.n : 0);
    v.label = xmalloc((v.n ? v.n : 1) * sizeof *v.label);
    for (size_t i = 0; i < v.n && !rc; i++) {
        v.label[i] = -1;
        if (!fc.label_id || fc.label_id[i] < 0) continue;
        const char *name = fc.labels[fc.label_id[i]];
        for (int k = 0; k < C && v.label[i] < 0; k++)
            if (!strcmp(json_str(json_at(jl, k), ""), name)) v.label[i] = k;
        if (v.label[i] < 0)
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "input '%s': unit %zu has label '%s', which is not one of the "
                               "model's %d labels", port, i, name, C);
    }
    tok_batch b;
    memset(&b, 0, sizeof b);
    if (!rc) {
        /* corpus_parse cut the units in place: give them back their '\n' */
        for (size_t i = 0; i < v.n; i++) fc.text[fc.unit_off[i] + fc.unit_len[i]] = '\n';
        tok_encode_lines(vm->tok, fc.text, fc.text_len, T, flow_threads(c), &b);
        if (b.nseq != v.n)
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "input '%s': %llu text lines for %zu units", port,
                               (unsigned long long)b.nseq, v.n);
    }
    if (!rc) {
        v.nids = b.nids;
        v.ids = xmalloc((size_t)(b.nids ? b.nids : 1) * sizeof *v.ids);
        for (uint64_t i = 0; i < b.nids; i++) v.ids[i] = (int32_t)b.ids[i];
        v.off = xmalloc((v.n + 1) * sizeof *v.off);
        memcpy(v.off, b.offsets, (v.n + 1) * sizeof *v.off);
        /* ids come from the model's tokenizer and labels are the model's:
         * usable = labelled with at least [CLS] [SEP] */
        d->v = v;
        memset(&v, 0, sizeof v);
        d->len = xmalloc((d->v.n ? d->v.n : 1) * sizeof *d->len);
        d->usable = xmalloc((d->v.n ? d->v.n : 1) * sizeof *d->usable);
        for (size_t i = 0; i < d->v.n; i++) {
            d->len[i] = (uint32_t)(d->v.off[i + 1] - d->v.off[i]);
            if (d->v.label[i] >= 0 && d->len[i] >= 2) d->usable[d->nusable++] = (uint32_t)i;
        }
    }
    encv_release(&v);
    tok_batch_release(&b);
    corpus_release(&fc);
    return rc;
}

/* Every part of the input, byte for byte (the keep-everything target). */
static int copy_all(flow_ctx *c)
{
    int n = flow_in_nparts(c, "model", 0), rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const char *name = flow_in_part_name(c, "model", 0, i);
        char *data;
        size_t len;
        if ((rc = flow_in_read_at(c, "model", 0, i, &data, &len)))
            return flow_ctx_fail(c, rc, "input 'model': cannot read part %s", name);
        rc = flow_out_write(c, name, strcmp(name, "weights") ? FLOW_PART_BYTES : FLOW_PART_F32, data, len);
        free(data);
    }
    return rc;
}

/* The weights of vm as one flat buffer in its config's table order. */
static int flat_params(flow_ctx *c, const vocab_model *vm, float **out)
{
    bert_tensor *tab;
    int nt;
    flow_err err = { 0 };
    *out = NULL;
    if (bert_tensor_table(&vm->cfg, &tab, &nt, &err)) return flow_ctx_fail(c, FLOW_E_INPUT, "input 'model': %s", err.msg);
    float *p = xmalloc(bert_param_count(&vm->cfg) * sizeof *p);
    int rc = 0;
    for (int i = 0; i < nt && !rc; i++) {
        const float *src;
        int64_t shape[2] = { tab[i].shape[0], tab[i].shape[1] };
        if ((rc = st_get_f32(&vm->w, tab[i].name, tab[i].ndim, shape, &src, "input 'model'", &err)))
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "%s (prune works on fp32 models: prune before quantizing)", err.msg);
        else
            memcpy(p + tab[i].offset, src, tab[i].numel * sizeof *p);
    }
    free(tab);
    if (rc) free(p); else *out = p;
    return rc;
}

/* A model of config cfg (dropout as given) holding params. */
static int model_with(flow_ctx *c, const bert_config *cfg, const float *params, int B, int T, bert_model **m)
{
    flow_err err = { 0 };
    bert_device dev = tr_device(c);
    int rc = bert_model_new(cfg, B, T, &dev, m, &err);
    if (!rc) {
        memcpy((*m)->params, params, (*m)->nparams * sizeof(float));
        rc = bert_sync_to_device(*m, &err);
    }
    return rc ? flow_ctx_fail(c, rc, "%s", err.msg) : 0;
}

/* Everything one run carries. */
typedef struct prune_run {
    flow_ctx *c;
    vocab_model vm;
    int T, per_layer, C;
    bert_config cfg;            /* current (pruned so far), the input's dropout */
    float *params;              /* [bert_param_count(&cfg)] */
    cls_data calib;
    double loss0;               /* calibration loss of the input model */
} prune_run;

/* Rounds of scoring and removal down to the final targets. */
static int prune_rounds(prune_run *P, const int *want_h, long total_h, const int *want_f, long total_f)
{
    flow_ctx *c = P->c;
    int R = (int)flow_param_int(c, "rounds"), L = P->cfg.layers, batch = (int)flow_param_int(c, "calib_batch");
    int h0[BERT_MAX_LAYERS], f0[BERT_MAX_LAYERS];
    memcpy(h0, P->cfg.heads, sizeof h0);
    memcpy(f0, P->cfg.ffn, sizeof f0);
    prune_data pd = { P->calib.v.ids, P->calib.v.off, P->calib.v.label, P->calib.v.n };
    int rc = 0;
    for (int k = 1; k <= R && !rc; k++) {
        flow_progress(c, (double)(k - 1) / R, "round %d/%d: scoring %zu parameters", k, R, bert_param_count(&P->cfg));
        bert_config sc = P->cfg;
        sc.hidden_dropout = sc.attn_dropout = 0;
        bert_model *m = NULL;
        if ((rc = model_with(c, &sc, P->params, batch, P->T, &m))) break;
        prune_scores s;
        flow_err err = { 0 };
        rc = prune_score(m, &pd, batch, &s, &err);
        bert_model_free(m);
        if (rc) { prune_scores_release(&s); return flow_ctx_fail(c, rc, "input 'calibration': %s", err.msg); }
        if (k == 1) P->loss0 = s.loss;
        int wh[BERT_MAX_LAYERS], wf[BERT_MAX_LAYERS];
        long th, tf;
        round_target(h0, L, want_h, total_h, k, R, wh, &th);
        round_target(f0, L, want_f, total_f, k, R, wf, &tf);
        prune_keep keep = { .layers = L };
        for (int l = 0; l < L; l++) {
            keep.head[l] = xmalloc((size_t)P->cfg.heads[l]);
            keep.ffn[l] = xmalloc((size_t)P->cfg.ffn[l]);
        }
        prune_choose(L, P->cfg.heads, s.head, wh, th, keep.head);
        prune_choose(L, P->cfg.ffn, s.ffn, wf, tf, keep.ffn);
        bert_config oc;
        float *np;
        if ((rc = prune_shrink(&P->cfg, P->params, &keep, &oc, &np, &err))) rc = flow_ctx_fail(c, rc, "%s", err.msg);
        else {
            free(P->params);
            P->params = np;
            P->cfg = oc;
            flow_log(c, "round %d/%d: calibration loss %.4f on %ld sequences; %zu parameters kept", k, R,
                     s.loss, s.sequences, bert_param_count(&oc));
        }
        prune_keep_release(&keep);
        prune_scores_release(&s);
    }
    return rc;
}

/* Dev accuracy / macro-F1 of params under cfg into the metrics "dev.NAME.*". */
static int dev_metrics(prune_run *P, cls_objective *f, const bert_config *cfg, const float *params,
                       const char *name, clf_metrics *mt)
{
    bert_model *m = NULL;
    int rc = model_with(P->c, cfg, params, f->batch, P->T, &m);
    if (!rc) rc = cls_objective_dev(f, m, mt);
    bert_model_free(m);
    if (rc) return rc;
    char key[64];
    snprintf(key, sizeof key, "dev.%s.accuracy", name);
    flow_metric(P->c, key, mt->accuracy);
    snprintf(key, sizeof key, "dev.%s.macro_f1", name);
    flow_metric(P->c, key, mt->macro_f1);
    return 0;
}

static void json_ints(flow_buf *b, const char *key, const int *v, int n)
{
    buf_printf(b, ",\"%s\":[", key);
    for (int i = 0; i < n; i++) buf_printf(b, i ? ",%d" : "%d", v[i]);
    buf_addc(b, ']');
}

/* Metrics, report and the training summary (appended to tj). */
static void summarize(prune_run *P, const bert_config *in, const char *dev_text, flow_buf *tj)
{
    flow_ctx *c = P->c;
    const bert_config *o = &P->cfg;
    long hb = 0, ha = 0, fb = 0, fa = 0;
    flow_buf rep;
    buf_init(&rep);
    buf_printf(&rep, "prune (%s targets, %lld rounds): layer  heads  FFN neurons\n", P->per_layer ? "per-layer" : "global",
               (long long)flow_param_int(c, "rounds"));
    for (int l = 0; l < in->layers; l++) {
        char key[64];
        hb += in->heads[l]; ha += o->heads[l]; fb += in->ffn[l]; fa += o->ffn[l];
        buf_printf(&rep, "  %5d  %2d -> %-2d  %5d -> %d\n", l, in->heads[l], o->heads[l], in->ffn[l], o->ffn[l]);
        snprintf(key, sizeof key, "layer.%d.heads", l);
        flow_metric(c, key, o->heads[l]);
        snprintf(key, sizeof key, "layer.%d.heads_before", l);
        flow_metric(c, key, in->heads[l]);
        snprintf(key, sizeof key, "layer.%d.ffn", l);
        flow_metric(c, key, o->ffn[l]);
        snprintf(key, sizeof key, "layer.%d.ffn_before", l);
        flow_metric(c, key, in->ffn[l]);
    }
    size_t pb = bert_param_count(in), pa = bert_param_count(o);
    buf_printf(&rep, "  total  %ld -> %ld  %ld -> %ld; parameters %zu -> %zu (%.1f%%)\n", hb, ha, fb, fa, pb, pa,
               100.0 * (double)pa / (double)pb);
    if (dev_text && dev_text[0]) buf_printf(&rep, "%s\n", dev_text);
    flow_report(c, rep.data);
    buf_release(&rep);
    flow_metric(c, "heads_before", (double)hb);
    flow_metric(c, "heads_after", (double)ha);
    flow_metric(c, "ffn_before", (double)fb);
    flow_metric(c, "ffn_after", (double)fa);
    flow_metric(c, "params_before", (double)pb);
    flow_metric(c, "params_after", (double)pa);
    flow_metric(c, "calibration_loss", P->loss0);
    buf_printf(tj, "\"edit\":{\"stage\":\"prune\",\"scope\":\"%s\",\"rounds\":%lld", P->per_layer ? "layer" : "global",
               (long long)flow_param_int(c, "rounds"));
    json_ints(tj, "heads_before", in->heads, in->layers);
    json_ints(tj, "heads_after", o->heads, o->layers);
    json_ints(tj, "ffn_before", in->ffn, in->layers);
    json_ints(tj, "ffn_after", o->ffn, o->layers);
    buf_printf(tj, ",\"params_before\":%zu,\"params_after\":%zu}", pb, pa);
}

/* Recovery fine-tune of the pruned model (train bound); curves into res. */
static int recover(prune_run *P, cls_objective *f, bert_model **mout, tr_result *res, flow_buf *tj)
{
    flow_ctx *c = P->c;
    const char *pooling = flow_param_str(c, "pooling");
    if (strcmp(pooling, "model")) P->cfg.pooling = strcmp(pooling, "mean") ? BERT_POOL_CLS : BERT_POOL_MEAN;
    int rc = model_with(c, &P->cfg, P->params, f->batch, P->T, mout);
    if (rc) return rc;
    tr_options opt;
    tr_options_from_params(c, &opt);
    opt.eval_each_epoch = 1;
    opt.keep_best = 1;
    tr_objective obj = cls_objective_bind(f, "prune", TR_CKPT_PRUNE);
    flow_log(c, "recovery fine-tune: %zu parameters, train %zu, dev %zu sequences", (*mout)->nparams,
             f->tr.nusable, f->dv.nusable);
    if ((rc = tr_train(c, *mout, &obj, &opt, res))) return rc;
    buf_printf(tj, ",\"recovery\":{\"steps\":%ld,\"best_step\":%ld,\"train_sequences\":%zu}", res->total,
               res->best_step, f->tr.nusable);
    flow_metric(c, "recovery.steps", (double)res->total);
    flow_metric(c, "recovery.best_step", (double)res->best_step);
    return 0;
}

/* Reads the model, checks it and the targets; *noop when nothing is removed. */
static int prune_setup(prune_run *P, int *want_h, long *total_h, int *want_f, long *total_f, int *noop)
{
    flow_ctx *c = P->c;
    if (flow_in_count(c, "calibration") == 0 && flow_in_count(c, "dev") == 0)
        return flow_ctx_fail(c, FLOW_E_PARAM, "bind 'calibration' or 'dev' (a labelled corpus such as split.dev) to score importance on");
    if (flow_in_count(c, "train") > 0 && flow_in_count(c, "dev") == 0)
        return flow_ctx_fail(c, FLOW_E_PARAM, "the recovery fine-tune (train bound) needs 'dev' to select the best weights");
    int rc = vocab_model_read(c, "model", &P->vm);
    if (rc) return rc;
    const char *kind = json_str(json_get(P->vm.json, "kind"), "");
    if (strcmp(kind, "bert-cls"))
        return flow_ctx_fail(c, FLOW_E_INPUT, "input 'model' is a '%s' model; prune scores importance with the "
                             "classification loss: bind a bert-cls model (finetune)", kind);
    P->cfg = P->vm.cfg;
    P->C = P->cfg.num_labels;
    P->per_layer = strcmp(flow_param_str(c, "scope"), "layer") == 0;
    P->T = (int)json_num(json_get(json_get(P->vm.json, "training"), "max_len"), P->cfg.max_len);
    if (P->T < 2 || P->T > P->cfg.max_len) P->T = P->cfg.max_len;
    int L = P->cfg.layers;
    if ((rc = target(c, "attention heads", "heads", "head_ratio", P->cfg.heads, L, P->per_layer, want_h, total_h)) ||
        (rc = target(c, "FFN neurons", "ffn", "ffn_ratio", P->cfg.ffn, L, P->per_layer, want_f, total_f)))
        return rc;
    long ah = 0, af = 0;
    int same = 1;
    for (int l = 0; l < L; l++) {
        ah += P->cfg.heads[l];
        af += P->cfg.ffn[l];
        if (P->per_layer) same &= want_h[l] == P->cfg.heads[l] && want_f[l] == P->cfg.ffn[l];
    }
    if (!P->per_layer) same = *total_h == ah && *total_f == af;
    *noop = same && flow_in_count(c, "train") == 0;
    return 0;
}

static int prune_run_stage(flow_ctx *c)
{
    prune_run P;
    memset(&P, 0, sizeof P);
    P.c = c;
    int want_h[BERT_MAX_LAYERS], want_f[BERT_MAX_LAYERS], noop = 0;
    long total_h, total_f;
    cls_objective f;
    memset(&f, 0, sizeof f);
    tr_result res;
    memset(&res, 0, sizeof res);
    bert_model *m = NULL;
    flow_buf tj, devtxt;
    buf_init(&tj); buf_init(&devtxt);
    int rc = prune_setup(&P, want_h, &total_h, want_f, &total_f, &noop);
    if (!rc && noop) {
        flow_log(c, "the target keeps every head and neuron: the output is the input, byte for byte");
        flow_report(c, "prune: the target keeps every head and FFN neuron; the model is unchanged\n");
        rc = copy_all(c);
        goto out;
    }
    bert_config in_cfg = P.cfg;
    const char *cport = flow_in_count(c, "calibration") ? "calibration" : "dev";
    if (!rc) rc = flat_params(c, &P.vm, &P.params);
    if (!rc) rc = encode_corpus(c, cport, &P.vm, P.T, &P.calib);
    int has_dev = flow_in_count(c, "dev") > 0, has_train = flow_in_count(c, "train") > 0;
    if (!rc && has_dev) {
        cls_data tr, dv;
        memset(&tr, 0, sizeof tr);
        if ((rc = encode_corpus(c, "dev", &P.vm, P.T, &dv)) || (has_train && (rc = encode_corpus(c, "train", &P.vm, P.T, &tr)))) {
            cls_data_release(&dv);
            cls_data_release(&tr);
        } else {
            int batch = has_train ? (int)flow_param_int(c, "batch") : 32;
            int bal = has_train && strcmp(flow_param_str(c, "class_weights"), "balanced") == 0;
            rc = cls_objective_init(c, &f, has_train ? &tr : NULL, &dv, P.C, batch, P.T, bal);
        }
    }
    clf_metrics mt;
    if (!rc && has_dev && !(rc = dev_metrics(&P, &f, &P.cfg, P.params, "input", &mt))) {
        buf_printf(&devtxt, "  dev accuracy / macro-F1: input %.4f / %.4f", mt.accuracy, mt.macro_f1);
        metrics_release(&mt);
    }
    if (!rc) rc = prune_rounds(&P, want_h, total_h, want_f, total_f);
    if (!rc && has_dev && !(rc = dev_metrics(&P, &f, &P.cfg, P.params, "pruned", &mt))) {
        buf_printf(&devtxt, ", pruned %.4f / %.4f", mt.accuracy, mt.macro_f1);
        metrics_release(&mt);
    }
    if (rc) goto out;
    buf_printf(&tj, "{\"max_len\":%d,\"base\":", P.T);
    const json_value *old = json_get(P.vm.json, "training");
    if (old) json_write(&tj, old, 0); else buf_adds(&tj, "{}");
    buf_addc(&tj, ',');
    if (has_train) {
        flow_buf rj;
        buf_init(&rj);
        rc = recover(&P, &f, &m, &res, &rj);
        if (!rc && !(rc = cls_objective_dev(&f, m, &mt))) {
            buf_printf(&devtxt, ", recovered %.4f / %.4f", mt.accuracy, mt.macro_f1);
            flow_metric(c, "dev.recovered.accuracy", mt.accuracy);
            flow_metric(c, "dev.recovered.macro_f1", mt.macro_f1);
            metrics_release(&mt);
        }
        if (!rc) {
            summarize(&P, &in_cfg, devtxt.data, &tj);
            buf_add(&tj, rj.data, rj.len);
        }
        buf_release(&rj);
    } else {
        rc = model_with(c, &P.cfg, P.params, 1, 2, &m);
        if (!rc) summarize(&P, &in_cfg, devtxt.data, &tj);
    }
    if (rc) goto out;
    buf_addc(&tj, '}');
    const json_value *jl = json_get(P.vm.json, "labels");
    char **labels = xcalloc((size_t)P.C, sizeof *labels);
    for (int i = 0; i < P.C; i++) labels[i] = (char *)json_str(json_at(jl, i), "");
    rc = bert_artifact_write(c, m, "bert-cls", labels, P.C, tj.data);
    free(labels);
    if (!rc) rc = artifact_copy_tokenizer(c, "model");
    if (!rc) rc = artifact_copy_clean(c, "model");
    if (!rc && has_train) rc = flow_out_write(c, "loss_curve.tsv", FLOW_PART_BYTES, res.curve.data, res.curve.len);
    if (!rc && has_train) rc = flow_out_write(c, "dev_curve.tsv", FLOW_PART_BYTES, res.dev_curve.data, res.dev_curve.len);
out:
    tr_result_release(&res);
    bert_model_free(m);
    cls_objective_release(&f);
    cls_data_release(&P.calib);
    free(P.params);
    vocab_model_release(&P.vm);
    buf_release(&tj);
    buf_release(&devtxt);
    return rc;
}

const flow_stage stage_prune = {
    .name = "prune",
    .version = 2,   /* 2: dev evaluation's attention by query chunks on kernels/cpu/attention_gemm.c (was sgemm) */
    .help = "remove the least important attention heads and FFN neurons of a bert-cls model (optional recovery fine-tune)",
    .params = prune_params, .nparams = sizeof prune_params / sizeof *prune_params,
    .inputs = prune_inputs, .ninputs = sizeof prune_inputs / sizeof *prune_inputs,
    .applies = prune_applies, .napplies = sizeof prune_applies / sizeof *prune_applies,
    .key_unless_default = "pooling",    /* model = what prune did before pooling existed */
    .res = {.threads = 0},
    .run = prune_run_stage,
};
