/* finetune.c — the `finetune` stage: sequence classification (BERT +
 * pooler + linear head, as transformers' BertForSequenceClassification)
 * on an encoded labelled corpus, starting from a pretrained model artifact
 * (`base`, kind bert-mlm or bert-cls) or, with base unbound, from a random
 * initialisation of the architecture given by the parameters (ablation).
 *
 * Each epoch (and every eval_every steps) the model is scored on dev; the
 * weights with the best dev macro-F1 are the ones written.  Optional class
 * weights (balanced: n / (C * count)) for the cross-entropy.  AdamW with
 * linear warmup/decay, clipping, gradient accumulation as in pretrain;
 * resumable: the checkpoint also holds the best weights so far and the
 * curves, so an interrupted run ends with the same bytes.
 *
 * Output: a model artifact of kind "bert-cls" (classifier.h): model.json
 * (config, labels, training summary), weights, tokenizer/..., clean.json,
 * plus loss_curve.tsv and dev_curve.tsv ("step \t accuracy \t macro_f1"). */
#include "clf_internal.h"
#include "trainer.h"
#include "stages/tokenizer/tokenizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const flow_param_def finetune_params[] = {
    { "epochs", FLOW_P_INT, 0, "3", 1, 10000, NULL, "passes over train (when max_steps = 0)" },
    { "max_steps", FLOW_P_INT, 0, "0", 0, 1e9, NULL, "optimizer steps; 0 = epochs decide" },
    { "batch", FLOW_P_INT, 0, "32", 1, 65536, NULL, "sequences per micro-batch" },
    { "grad_accum", FLOW_P_INT, 0, "1", 1, 1024, NULL, "micro-batches per optimizer step" },
    { "lr", FLOW_P_FLOAT, 0, "0.0001", 0, 10, NULL, "peak learning rate" },
    { "warmup_ratio", FLOW_P_FLOAT, 0, "0.1", 0, 1, NULL, "share of steps with linear warmup" },
    { "weight_decay", FLOW_P_FLOAT, 0, "0.01", 0, 10, NULL, "AdamW decoupled weight decay" },
    { "max_grad_norm", FLOW_P_FLOAT, 0, "1.0", 0, 1e6, NULL, "global-norm clipping (0 = off)" },
    { "dropout", FLOW_P_FLOAT, 0, "0.1", 0, 0.9, NULL, "hidden and attention dropout" },
    { "class_weights", FLOW_P_STRING, 0, "none", 0, -1, "none|balanced", "cross-entropy class weights" },
    { "max_len", FLOW_P_INT, 0, "0", 0, 4096, NULL, "cut sequences to this many ids (0 = the model's max_len)" },
    { "seed", FLOW_P_INT, 0, "1", 0, 1e15, NULL, "head initialisation, order and dropout seed" },
    { "checkpoint_every", FLOW_P_INT, 0, "200", 0, 1e9, NULL, "steps between resumable checkpoints (0 = none)" },
    { "eval_every", FLOW_P_INT, 0, "0", 0, 1e9, NULL, "steps between dev evaluations besides each epoch end (0 = epochs only)" },
    /* architecture, used only when base is unbound */
    { "hidden", FLOW_P_INT, 0, "256", 8, 4096, NULL, "hidden size (random init only)" },
    { "layers", FLOW_P_INT, 0, "4", 1, 48, NULL, "layers (random init only)" },
    { "heads", FLOW_P_INT, 0, "4", 1, 64, NULL, "attention heads (random init only)" },
    { "intermediate", FLOW_P_INT, 0, "1024", 8, 16384, NULL, "FFN width (random init only)" },
    { "model_max_len", FLOW_P_INT, 0, "128", 8, 4096, NULL, "position embeddings (random init only)" },
    { "profile", FLOW_P_BOOL, 0, "false", 0, -1, NULL, "print the kernels profiler table" },
};

static const flow_input_def finetune_inputs[] = {
    { "train", 0, 0, "encoded labelled corpus (encode.train)" },
    { "dev", 0, 0, "encoded labelled corpus for model selection (encode.dev)" },
    { "base", 1, 0, "pretrained model artifact (pretrain); unbound = random init" },
    { "tokenizer", 1, 0, "bpe node (needed when base is unbound)" },
    { "clean", 1, 0, "node whose clean.json records the cleaning settings (clean)" },
};

static const flow_output_def finetune_outputs[] = {
    { "model.json", "kind bert-cls, config, labels, training summary" },
    { "weights", "FLOWWTS, HuggingFace tensor names" },
    { "tokenizer", "the tokenizer parts" },
    { "clean.json", "cleaning settings (when known)" },
    { "loss_curve.tsv", "step, loss, lr, grad_norm per optimizer step" },
    { "dev_curve.tsv", "step, dev accuracy, dev macro-F1 at each evaluation" },
};

/* With base bound, the architecture and the tokenizer come from the base
 * model: setting them then would change the key but not the output. */
static const flow_applies_def finetune_applies[] = {
    { "hidden", "base", "unbound", "the base model fixes the architecture" },
    { "layers", "base", "unbound", "the base model fixes the architecture" },
    { "heads", "base", "unbound", "the base model fixes the architecture" },
    { "intermediate", "base", "unbound", "the base model fixes the architecture" },
    { "model_max_len", "base", "unbound", "the base model fixes the architecture" },
    { "tokenizer", "base", "unbound", "the base model's tokenizer is used" },
    { "epochs", "max_steps", "0", "max_steps > 0 sets the length of training" },
};

typedef struct ft_data {
    enc_view v;
    uint32_t *len, *usable;
    size_t nusable;
} ft_data;

static int ft_load(flow_ctx *c, const char *port, int vocab, int nlabels, ft_data *d)
{
    memset(d, 0, sizeof *d);
    int rc = encv_read(c, port, 0, &d->v);
    if (rc) return rc;
    if (!d->v.label)
        return flow_ctx_fail(c, FLOW_E_INPUT, "input '%s' has no labels part: bind a labelled encoded split (encode.train)", port);
    for (uint64_t i = 0; i < d->v.nids; i++)
        if (d->v.ids[i] < 0 || d->v.ids[i] >= vocab)
            return flow_ctx_fail(c, FLOW_E_INPUT, "input '%s': token id %d is outside the model's vocabulary of %d (another tokenizer?)",
                                 port, d->v.ids[i], vocab);
    d->len = xmalloc((d->v.n ? d->v.n : 1) * sizeof *d->len);
    d->usable = xmalloc((d->v.n ? d->v.n : 1) * sizeof *d->usable);
    for (size_t i = 0; i < d->v.n; i++) {
        d->len[i] = (uint32_t)(d->v.off[i + 1] - d->v.off[i]);
        if (d->v.label[i] >= nlabels)
            return flow_ctx_fail(c, FLOW_E_INPUT, "input '%s': sequence %zu has label id %d but there are %d label names",
                                 port, i, d->v.label[i], nlabels);
        if (d->v.label[i] >= 0 && d->len[i] >= 2) d->usable[d->nusable++] = (uint32_t)i;
    }
    return 0;
}

static void ft_release(ft_data *d)
{
    encv_release(&d->v);
    free(d->len);
    free(d->usable);
}

static void fill(tr_batch *b, const ft_data *d, const uint32_t *seq, size_t n, int *lens)
{
    for (size_t r = 0; r < n; r++) {
        lens[r] = tr_batch_row(b, (int)r, d->v.ids + d->v.off[seq[r]], (int)d->len[seq[r]]);
        b->labels[r] = d->v.label[seq[r]];
    }
    tr_batch_finish(b, (int)n, lens);
}

static int dev_score(flow_ctx *c, bert_model *m, const ft_data *dev, int batch, tr_batch *b,
                     int *lens, clf_metrics *out)
{
    tr_epoch e;
    tr_epoch_build(&e, dev->usable, dev->nusable, dev->len, batch, 0, 0);
    int *gold = xmalloc((dev->nusable + 1) * sizeof *gold), *pred = xmalloc((dev->nusable + 1) * sizeof *pred);
    size_t k = 0;
    int rc = 0, C = m->cfg.num_labels;
    flow_err err = { 0 };
    for (size_t q = 0; q < e.nbatches && !rc; q++) {
        fill(b, dev, e.seq + e.start[q], e.count[q], lens);
        bert_batch bb = { .B = b->B, .T = b->T, .ids = b->ids, .attn_mask = b->mask };
        bert_output o;
        if ((rc = bert_forward(m, &bb, BERT_HEAD_CLASSIFY, 0, &o, &err))) {
            rc = flow_ctx_fail(c, rc, "dev evaluation: %s", err.msg);
            break;
        }
        for (int r = 0; r < b->B; r++, k++) {
            int best = 0;
            for (int j = 1; j < C; j++) if (o.logits[(size_t)r * C + j] > o.logits[(size_t)r * C + best]) best = j;
            pred[k] = best;
            gold[k] = b->labels[r];
        }
    }
    if (!rc) metrics_compute(out, gold, pred, k, C);
    tr_epoch_release(&e);
    free(gold);
    free(pred);
    return rc;
}

/* Copies the base artifact's weights into m (matching names and shapes). */
static int load_base(flow_ctx *c, bert_model *m, const bert_config *bc, const wts_file *w)
{
    bert_tensor *tab;
    int nt;
    flow_err err = { 0 };
    if (bert_tensor_table(bc, &tab, &nt, &err)) return flow_ctx_fail(c, FLOW_E_INPUT, "input 'base': %s", err.msg);
    size_t n = bert_param_count(bc);
    float *src = xcalloc(n, sizeof *src);
    int rc = 0;
    for (int i = 0; i < nt && !rc; i++) {
        const wts_tensor *t = wts_find(w, tab[i].name);
        if (!t || t->count != tab[i].numel)
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'base': tensor '%s' is %s in the weights",
                               tab[i].name, t ? "of another size" : "missing");
        else
            memcpy(src + tab[i].offset, t->ptr, tab[i].numel * sizeof(float));
    }
    int copied = 0;
    if (!rc && (rc = bert_load_by_name(m, bc, src, n, &copied, &err)))
        rc = flow_ctx_fail(c, rc, "input 'base': %s", err.msg);
    if (!rc) flow_log(c, "initialised %d of %d tensors from base", copied, m->ntensors);
    free(src);
    free(tab);
    return rc;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Checkpoint extra: f64 best score, i64 best step, u64 curve len, u64 dev
 * curve len, the two curves, then the best params. */
static void pack_extra(flow_buf *x, double best, long best_step, const flow_buf *curve,
                       const flow_buf *devc, const float *bestp, size_t np)
{
    int64_t bs = best_step;
    uint64_t cl = curve->len, dl = devc->len;
    buf_add(x, &best, 8);
    buf_add(x, &bs, 8);
    buf_add(x, &cl, 8);
    buf_add(x, &dl, 8);
    buf_add(x, curve->data, cl);
    buf_add(x, devc->data, dl);
    buf_add(x, bestp, np * sizeof(float));
}

static int unpack_extra(const char *x, size_t len, double *best, long *best_step, flow_buf *curve,
                        flow_buf *devc, float *bestp, size_t np)
{
    if (len < 32) return -1;
    int64_t bs;
    uint64_t cl, dl;
    memcpy(best, x, 8);
    memcpy(&bs, x + 8, 8);
    memcpy(&cl, x + 16, 8);
    memcpy(&dl, x + 24, 8);
    if (len != 32 + cl + dl + np * sizeof(float)) return -1;
    *best_step = (long)bs;
    buf_add(curve, x + 32, cl);
    buf_add(devc, x + 32 + cl, dl);
    memcpy(bestp, x + 32 + cl + dl, np * sizeof(float));
    return 0;
}

static int finetune_run(flow_ctx *c)
{
    int rc = 0;
    flow_err err = { 0 };
    int has_base = flow_in_count(c, "base") > 0;
    const char *tok_port = has_base ? "base" : "tokenizer";
    if (!has_base && flow_in_count(c, "tokenizer") == 0)
        return flow_ctx_fail(c, FLOW_E_PARAM, "bind 'base' (a pretrained model) or, for a random init, 'tokenizer' (the bpe node)");

    /* label names */
    char *names = NULL;
    size_t nlen;
    if (!flow_in_has(c, "train", 0, "label_names"))
        return flow_ctx_fail(c, FLOW_E_INPUT, "input 'train' has no label_names part: bind an encoded labelled split (encode.train)");
    if ((rc = flow_in_read(c, "train", 0, "label_names", &names, &nlen))) return rc;
    int C = 0;
    char **labels = xmalloc((nlen + 2) * sizeof *labels);
    for (char *p = names; p < names + nlen;) {
        char *nl = memchr(p, '\n', (size_t)(names + nlen - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(names + nlen - p);
        labels[C] = xmalloc(l + 1);
        memcpy(labels[C], p, l);
        labels[C++][l] = 0;
        p += l + 1;
    }
    free(names);

    /* the model: base config or parameters */
    bert_config cfg;
    bert_config_default(&cfg);
    wts_file bw;
    wts_init(&bw);
    json_value *bj = NULL;
    if (has_base) {
        char *mj, *wd;
        size_t ml, wl;
        if ((rc = flow_in_read(c, "base", 0, "model.json", &mj, &ml))) {
            rc = flow_ctx_fail(c, rc, "input 'base' is not a model artifact (no model.json)");
            goto out_labels;
        }
        rc = json_parse(mj, ml, "input 'base': model.json", &bj, &err);
        free(mj);
        if (!rc) rc = bert_config_parse(json_get(bj, "config"), &cfg, "input 'base'", &err);
        if (rc) { rc = flow_ctx_fail(c, rc, "%s", err.msg); goto out_labels; }
        if ((rc = flow_in_read(c, "base", 0, "weights", &wd, &wl))) goto out_labels;
        if ((rc = wts_parse(&bw, wd, wl, "input 'base': weights", &err))) { rc = flow_ctx_fail(c, rc, "%s", err.msg); goto out_labels; }
    } else {
        tok_tokenizer *tok;
        if ((rc = tok_load_input(c, "tokenizer", 0, &tok))) goto out_labels;
        cfg.vocab_size = tok_vocab_size(tok);
        tok_free(tok);
        cfg.hidden = (int)flow_param_int(c, "hidden");
        cfg.layers = (int)flow_param_int(c, "layers");
        cfg.heads = (int)flow_param_int(c, "heads");
        cfg.intermediate = (int)flow_param_int(c, "intermediate");
        cfg.max_len = (int)flow_param_int(c, "model_max_len");
    }
    bert_config base_cfg = cfg;
    cfg.mode = BERT_MODE_CLASSIFY;
    cfg.num_labels = C;
    cfg.hidden_dropout = cfg.attn_dropout = (float)flow_param_float(c, "dropout");
    if (bert_config_validate(&cfg, &err)) { rc = flow_ctx_fail(c, FLOW_E_PARAM, "%s", err.msg); goto out_labels; }
    int T = (int)flow_param_int(c, "max_len");
    if (T <= 0 || T > cfg.max_len) T = cfg.max_len;

    const int batch = (int)flow_param_int(c, "batch"), accum = (int)flow_param_int(c, "grad_accum");
    const uint64_t seed = (uint64_t)flow_param_int(c, "seed");
    const long ckpt_every = (long)flow_param_int(c, "checkpoint_every");
    const long eval_every = (long)flow_param_int(c, "eval_every");
    const float peak = (float)flow_param_float(c, "lr"), clip = (float)flow_param_float(c, "max_grad_norm");
    const bert_adamw hp = { 0.9f, 0.999f, 1e-8f, (float)flow_param_float(c, "weight_decay") };

    ft_data tr, dv;
    memset(&tr, 0, sizeof tr);
    memset(&dv, 0, sizeof dv);
    bert_model *m = NULL;
    tr_batch b;
    memset(&b, 0, sizeof b);
    tr_epoch ep;
    memset(&ep, 0, sizeof ep);
    int *lens = xmalloc((size_t)batch * sizeof *lens);
    float *cw = NULL, *bestp = NULL;
    flow_buf curve, devc;
    buf_init(&curve);
    buf_init(&devc);
    if ((rc = ft_load(c, "train", cfg.vocab_size, C, &tr)) || (rc = ft_load(c, "dev", cfg.vocab_size, C, &dv))) goto out;
    if (tr.nusable == 0 || dv.nusable == 0) {
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "need labelled sequences in train and dev (have %zu and %zu)", tr.nusable, dv.nusable);
        goto out;
    }
    if (strcmp(flow_param_str(c, "class_weights"), "balanced") == 0) {
        cw = xcalloc((size_t)C, sizeof *cw);
        for (size_t i = 0; i < tr.nusable; i++) cw[tr.v.label[tr.usable[i]]] += 1;
        for (int k = 0; k < C; k++) cw[k] = cw[k] > 0 ? (float)((double)tr.nusable / ((double)C * cw[k])) : 0.0f;
    }
    bert_set_threads(flow_threads(c));
    if ((rc = bert_model_new(&cfg, batch, T, BERT_BACKEND_CPU, &m, &err))) { rc = flow_ctx_fail(c, rc, "%s", err.msg); goto out; }
    bert_init(m, seed);
    if (has_base && (rc = load_base(c, m, &base_cfg, &bw))) goto out;
    if (flow_param_bool(c, "profile")) bert_profile_enable(m, 1);
    tr_batch_init(&b, batch, T);
    bestp = xmalloc(m->nparams * sizeof *bestp);
    memcpy(bestp, m->params, m->nparams * sizeof *bestp);

    const size_t nb = (tr.nusable + (size_t)batch - 1) / (size_t)batch;
    const long steps_per_epoch = (long)((nb + (size_t)accum - 1) / (size_t)accum);
    const long max_steps = (long)flow_param_int(c, "max_steps");
    const long total = max_steps > 0 ? max_steps : steps_per_epoch * (long)flow_param_int(c, "epochs");
    const long warmup = (long)(flow_param_float(c, "warmup_ratio") * total + 0.5);
    flow_log(c, "model: %zu parameters, %d classes, T %d; train %zu, dev %zu sequences; %ld steps (%ld per epoch), %s init",
             m->nparams, C, T, tr.nusable, dv.nusable, total, steps_per_epoch, has_base ? "pretrained" : "random");

    long step = 0, best_step = -1;
    double best = -1;
    char *extra = NULL;
    size_t extra_len = 0;
    rc = tr_ckpt_load(c, TR_CKPT_FINETUNE, &step, m, &extra, &extra_len);
    if (rc == 0) {
        int bad = unpack_extra(extra, extra_len, &best, &best_step, &curve, &devc, bestp, m->nparams);
        free(extra);
        if (bad) { rc = flow_ctx_fail(c, FLOW_E_CORRUPT, "the checkpoint's finetune state is damaged"); goto out; }
        flow_log(c, "resumed from the checkpoint at step %ld/%ld", step, total);
    } else if (rc != FLOW_E_NOTFOUND) {
        goto out;
    }
    rc = 0;

    double t0 = now_s(), win = 0;
    long tokens = 0, nwin = 0, cur_epoch = -1;
    for (; step < total; step++) {
        long epoch = step / steps_per_epoch, j = step % steps_per_epoch;
        if (epoch != cur_epoch) {
            tr_epoch_release(&ep);
            tr_epoch_build(&ep, tr.usable, tr.nusable, tr.len, batch, tr_seed(seed, 0xF17E, (uint64_t)epoch), 1);
            cur_epoch = epoch;
        }
        size_t k0 = (size_t)j * (size_t)accum, k1 = k0 + (size_t)accum < nb ? k0 + (size_t)accum : nb;
        double step_loss = 0;
        bert_zero_grad(m);
        for (size_t k = k0; k < k1; k++) {
            fill(&b, &tr, ep.seq + ep.start[k], ep.count[k], lens);
            bert_batch bb = { .B = b.B, .T = b.T, .ids = b.ids, .attn_mask = b.mask, .labels = b.labels, .class_weights = cw };
            bert_output o;
            if ((rc = bert_forward(m, &bb, BERT_HEAD_CLASSIFY, 1, &o, &err)) ||
                (rc = bert_backward(m, 1.0f / (float)(k1 - k0), &err))) {
                rc = flow_ctx_fail(c, rc, "step %ld: %s", step, err.msg);
                goto out;
            }
            step_loss += o.loss / (double)(k1 - k0);
            tokens += b.tokens;
        }
        if (!isfinite(step_loss)) {
            rc = flow_ctx_fail(c, FLOW_E_STAGE, "step %ld: loss is %g (diverged); lower lr (now %g)", step, step_loss, (double)peak);
            goto out;
        }
        float gn = bert_clip_grad_norm(m, clip);
        float lr = bert_lr_linear(peak, step, warmup, total);
        bert_adamw_step(m, &hp, lr);
        win += step_loss;
        nwin++;
        buf_printf(&curve, "%ld\t%.6f\t%.6g\t%.4f\n", step + 1, step_loss, (double)lr, (double)gn);
        double el = now_s() - t0;
        flow_progress(c, (double)(step + 1) / total, "step %ld/%ld  loss %.3f  %.1fk tok/s  best dev F1 %.3f",
                      step + 1, total, win / nwin, el > 0 ? tokens / el / 1000 : 0.0, best < 0 ? 0 : best);
        int end_epoch = (step + 1) % steps_per_epoch == 0 || step + 1 == total;
        if (end_epoch || (eval_every > 0 && (step + 1) % eval_every == 0)) {
            clf_metrics mt;
            if ((rc = dev_score(c, m, &dv, batch, &b, lens, &mt))) goto out;
            flow_log(c, "step %ld (epoch %.2f): train loss %.4f, dev accuracy %.4f macro-F1 %.4f%s", step + 1,
                     (double)(step + 1) / steps_per_epoch, win / nwin, mt.accuracy, mt.macro_f1,
                     mt.macro_f1 > best ? "  (best)" : "");
            buf_printf(&devc, "%ld\t%.6f\t%.6f\n", step + 1, mt.accuracy, mt.macro_f1);
            if (mt.macro_f1 > best) {
                best = mt.macro_f1;
                best_step = step + 1;
                if ((rc = bert_sync_to_host(m, &err))) { metrics_release(&mt); rc = flow_ctx_fail(c, rc, "%s", err.msg); goto out; }
                memcpy(bestp, m->params, m->nparams * sizeof *bestp);
            }
            metrics_release(&mt);
            win = 0;
            nwin = 0;
        }
        if (ckpt_every > 0 && (step + 1) % ckpt_every == 0 && step + 1 < total) {
            flow_buf x;
            buf_init(&x);
            pack_extra(&x, best, best_step, &curve, &devc, bestp, m->nparams);
            if (!(rc = bert_sync_to_host(m, &err))) rc = tr_ckpt_save(c, TR_CKPT_FINETUNE, step + 1, m, x.data, x.len);
            else rc = flow_ctx_fail(c, rc, "%s", err.msg);
            buf_release(&x);
            if (rc) goto out;
        }
        tr_test_kill("finetune", step + 1);
    }
    /* the best weights are the model */
    memcpy(m->params, bestp, m->nparams * sizeof *bestp);
    if ((rc = bert_sync_to_device(m, &err))) { rc = flow_ctx_fail(c, rc, "%s", err.msg); goto out; }
    clf_metrics fin;
    if ((rc = dev_score(c, m, &dv, batch, &b, &lens[0], &fin))) goto out;
    flow_metric(c, "dev.accuracy", fin.accuracy);
    flow_metric(c, "dev.macro_f1", fin.macro_f1);
    flow_metric(c, "best_step", (double)best_step);
    flow_metric(c, "steps", (double)total);
    double secs = now_s() - t0;
    if (secs > 0 && tokens > 0) flow_metric(c, "tok_per_s", tokens / secs);
    flow_buf rep, training;
    buf_init(&rep);
    buf_init(&training);
    buf_printf(&rep, "finetune (%s init): %ld steps, best dev macro-F1 %.4f (accuracy %.4f) at step %ld\n",
               has_base ? "pretrained" : "random", total, fin.macro_f1, fin.accuracy, best_step);
    if (flow_param_bool(c, "profile")) {
        char *pt = tr_profile_text(m);
        flow_log(c, "%s", pt);
        buf_adds(&rep, pt);
        free(pt);
    }
    flow_report(c, rep.data);
    buf_printf(&training, "{\"init\":\"%s\",\"steps\":%ld,\"best_step\":%ld,\"train_sequences\":%zu,\"dev_accuracy\":",
               has_base ? "pretrained" : "random", total, best_step, tr.nusable);
    buf_json_num(&training, fin.accuracy);
    buf_adds(&training, ",\"dev_macro_f1\":");
    buf_json_num(&training, fin.macro_f1);
    buf_printf(&training, ",\"max_len\":%d}", T);
    metrics_release(&fin);
    rc = bert_artifact_write(c, m, "bert-cls", labels, C, training.data);
    if (!rc) rc = artifact_copy_tokenizer(c, tok_port);
    if (!rc) rc = artifact_copy_clean(c, flow_in_count(c, "clean") > 0 ? "clean" : (has_base ? "base" : "clean"));
    if (!rc) rc = flow_out_write(c, "loss_curve.tsv", FLOW_PART_BYTES, curve.data, curve.len);
    if (!rc) rc = flow_out_write(c, "dev_curve.tsv", FLOW_PART_BYTES, devc.data, devc.len);
    buf_release(&rep);
    buf_release(&training);
out:
    tr_epoch_release(&ep);
    tr_batch_release(&b);
    bert_model_free(m);
    ft_release(&tr);
    ft_release(&dv);
    free(lens);
    free(cw);
    free(bestp);
    buf_release(&curve);
    buf_release(&devc);
out_labels:
    wts_release(&bw);
    json_free(bj);
    for (int k = 0; k < C; k++) free(labels[k]);
    free(labels);
    return rc;
}

const flow_stage stage_finetune = {
    .name = "finetune",
    .version = 3,   /* 3: GEMMs and LayerNorm grads cut into fixed blocks (same bytes for any
                     * thread count); 2: dropout masks and vectorised exp/GELU/LayerNorm/AdamW/grad norm (dd5cdd1, 15e390e, fb250cf) */
    .help = "sequence classification from a pretrained BERT (or random init), best dev macro-F1 kept",
    .params = finetune_params, .nparams = sizeof finetune_params / sizeof finetune_params[0],
    .inputs = finetune_inputs, .ninputs = sizeof finetune_inputs / sizeof finetune_inputs[0],
    .outputs = finetune_outputs, .noutputs = sizeof finetune_outputs / sizeof finetune_outputs[0],
    .applies = finetune_applies, .napplies = sizeof finetune_applies / sizeof finetune_applies[0],
    .res = { .threads = 0, .gpus = 0, .cpu_fallback = 0 },
    .run = finetune_run,
};
