/* pretrain.c — the `pretrain` stage: masked-language-model training of a
 * BERT (kernels/kernels.h) on encoded units.
 *
 * Masking (BERT): mask_prob of each sequence's real tokens ([CLS]/[SEP]
 * excluded) become targets; of those 80% -> [MASK], 10% -> a random
 * non-special id, 10% unchanged.  Dynamic: drawn afresh every epoch from a
 * counter-based RNG keyed by (seed, epoch, sequence), so a resumed run
 * masks exactly as an uninterrupted one.  whole_term = true groups the
 * tokens of a mined term's span (terms input, encoded with the tokenizer)
 * into one unit that is masked entirely or not at all; forced terms are
 * single ids already, hence whole.
 *
 * Optimisation: AdamW with weight decay, linear warmup (warmup_ratio of
 * the steps) then linear decay to 0, global-norm clipping, gradient
 * accumulation over grad_accum micro-batches, epochs or max_steps.  The
 * data order of every step is a function of (seed, step), so the state to
 * resume is the model, the AdamW moments, the step, the dropout counter
 * and the loss curve: saved every checkpoint_every steps.  The result is
 * bit-identical whether or not the run was interrupted, and for any thread
 * count (a checkpoint written on 2 threads may resume on 1).
 *
 * Output: a model artifact of kind "bert-mlm" (classifier.h) and
 * loss_curve.tsv ("step \t loss \t lr \t grad_norm" per optimizer step). */
#include "clf_internal.h"
#include "trainer.h"
#include "stages/tokenizer/tokenizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const flow_param_def pretrain_params[] = {
    { "hidden", FLOW_P_INT, 0, "256", 8, 4096, NULL, "hidden size H" },
    { "layers", FLOW_P_INT, 0, "4", 1, 48, NULL, "transformer layers" },
    { "heads", FLOW_P_INT, 0, "4", 1, 64, NULL, "attention heads (H % heads == 0)" },
    { "intermediate", FLOW_P_INT, 0, "1024", 8, 16384, NULL, "FFN width" },
    { "max_len", FLOW_P_INT, 0, "128", 8, 4096, NULL, "longest sequence (position embeddings); longer ones are cut" },
    { "dropout", FLOW_P_FLOAT, 0, "0.1", 0, 0.9, NULL, "hidden and attention dropout" },
    { "batch", FLOW_P_INT, 0, "32", 1, 65536, NULL, "sequences per micro-batch" },
    { "grad_accum", FLOW_P_INT, 0, "1", 1, 1024, NULL, "micro-batches per optimizer step" },
    { "epochs", FLOW_P_INT, 0, "1", 1, 10000, NULL, "passes over train (when max_steps = 0)" },
    { "max_steps", FLOW_P_INT, 0, "0", 0, 1e9, NULL, "optimizer steps; 0 = epochs decide" },
    { "lr", FLOW_P_FLOAT, 0, "0.0005", 0, 10, NULL, "peak learning rate" },
    { "warmup_ratio", FLOW_P_FLOAT, 0, "0.06", 0, 1, NULL, "share of steps with linear warmup" },
    { "weight_decay", FLOW_P_FLOAT, 0, "0.01", 0, 10, NULL, "AdamW decoupled weight decay" },
    { "max_grad_norm", FLOW_P_FLOAT, 0, "1.0", 0, 1e6, NULL, "global-norm clipping (0 = off)" },
    { "mask_prob", FLOW_P_FLOAT, 0, "0.15", 0.01, 0.9, NULL, "share of tokens to predict" },
    { "whole_term", FLOW_P_BOOL, 0, "false", 0, -1, NULL, "mask mined terms' token spans as one unit" },
    { "seed", FLOW_P_INT, 0, "1", 0, 1e15, NULL, "initialisation, order, masking and dropout seed" },
    { "checkpoint_every", FLOW_P_INT, 0, "200", 0, 1e9, NULL, "steps between resumable checkpoints (0 = none); not in the key" },
    { "eval_every", FLOW_P_INT, 0, "0", 0, 1e9, NULL, "steps between dev evaluations (0 = at the end only)" },
    { "dev_max", FLOW_P_INT, 0, "2000", 1, 1e9, NULL, "dev sequences evaluated at most" },
    { "precision", FLOW_P_STRING, 0, "fp32", 0, -1, "fp32|bf16|fp16",
      "arithmetic of the Linear layers: fp32, or (on GPUs) bf16 / fp16 mixed precision (fp32 master "
      "weights and AdamW state; fp16 with dynamic loss scaling, skipped steps in train.skipped_steps); "
      "in the key when not fp32" },
    { "profile", FLOW_P_BOOL, 0, "false", 0, -1, NULL, "print the kernels profiler table to the log and report; not in the key" },
};

static const flow_input_def pretrain_inputs[] = {
    { "train", 0, 1, "encoded corpora to learn from, concatenated in the order given (encode.train, encoded unlabelled text such as extra/)" },
    { "dev", 1, 0, "encoded corpus for dev loss / MLM accuracy / perplexity (encode.dev)" },
    { "tokenizer", 0, 0, "the bpe node (copied into the artifact)" },
    { "terms", 1, 0, "mined terms (one per line, first TSV column) for whole_term masking" },
};

/* Parameters and inputs that matter only in some configurations. */
static const flow_applies_def pretrain_applies[] = {
    { "epochs", "max_steps", "0", "max_steps > 0 sets the length of training" },
    { "terms", "whole_term", "true", "terms are read only for whole-term masking" },
};

static const flow_output_def pretrain_outputs[] = {
    { "model.json", "kind bert-mlm, bert config, training summary" },
    { "weights", "safetensors, HuggingFace tensor names" },
    { "tokenizer", "the tokenizer parts" },
    { "loss_curve.tsv", "step, loss, lr, grad_norm per optimizer step" },
};

/* ---- whole-term spans -------------------------------------------------- */
typedef struct term_set {
    int n;
    int32_t **ids; int *len;    /* sorted by (first id, length descending) */
} term_set;

static int cmp_term(const void *a, const void *b, void *arg)
{
    const term_set *ts = arg;
    int x = *(const int *)a, y = *(const int *)b;
    if (ts->ids[x][0] != ts->ids[y][0]) return ts->ids[x][0] < ts->ids[y][0] ? -1 : 1;
    if (ts->len[x] != ts->len[y]) return ts->len[x] > ts->len[y] ? -1 : 1;
    return memcmp(ts->ids[x], ts->ids[y], (size_t)ts->len[x] * sizeof(int32_t));
}

static void terms_free(term_set *ts)
{
    for (int i = 0; i < ts->n; i++) free(ts->ids[i]);
    free(ts->ids);
    free(ts->len);
    memset(ts, 0, sizeof *ts);
}

/* Encodes every line (first TSV column) of every part of the terms input;
 * keeps those of 2+ tokens (single tokens are whole already). */
static int terms_load(flow_ctx *c, const tok_tokenizer *tok, term_set *ts)
{
    memset(ts, 0, sizeof *ts);
    int cap = 0;
    tok_out o;
    tok_out_init(&o);
    int np = flow_in_nparts(c, "terms", 0);
    for (int p = 0; p < np; p++) {
        char *data;
        size_t len;
        int rc = flow_in_read(c, "terms", 0, flow_in_part_name(c, "terms", 0, p), &data, &len);
        if (rc) { tok_out_release(&o); return rc; }
        char *line = data;
        while (line < data + len) {
            char *nl = memchr(line, '\n', (size_t)(data + len - line));
            size_t ll = nl ? (size_t)(nl - line) : (size_t)(data + len - line);
            char *tab = memchr(line, '\t', ll);
            size_t tl = tab ? (size_t)(tab - line) : ll;
            while (tl && (line[tl - 1] == '\r' || line[tl - 1] == ' ')) tl--;
            if (tl && line[0] != '#') {
                o.n = 0;
                tok_encode(tok, line, tl, &o);
                if (o.n >= 2) {
                    if (ts->n == cap) {
                        cap = cap ? 2 * cap : 256;
                        ts->ids = xrealloc(ts->ids, (size_t)cap * sizeof *ts->ids);
                        ts->len = xrealloc(ts->len, (size_t)cap * sizeof *ts->len);
                    }
                    ts->ids[ts->n] = xmalloc(o.n * sizeof(int32_t));
                    for (size_t k = 0; k < o.n; k++) ts->ids[ts->n][k] = (int32_t)o.ids[k];
                    ts->len[ts->n++] = (int)o.n;
                }
            }
            line += ll + 1;
        }
        free(data);
    }
    tok_out_release(&o);
    /* sort (indirectly) and dedupe */
    int *ord = xmalloc((size_t)(ts->n ? ts->n : 1) * sizeof *ord);
    for (int i = 0; i < ts->n; i++) ord[i] = i;
    qsort_r(ord, (size_t)ts->n, sizeof *ord, cmp_term, ts);
    int32_t **ids = xmalloc((size_t)(ts->n ? ts->n : 1) * sizeof *ids);
    int *lens = xmalloc((size_t)(ts->n ? ts->n : 1) * sizeof *lens), m = 0;
    for (int i = 0; i < ts->n; i++) {
        int k = ord[i];
        if (m && lens[m - 1] == ts->len[k] && memcmp(ids[m - 1], ts->ids[k], (size_t)ts->len[k] * 4) == 0) {
            free(ts->ids[k]);
            continue;
        }
        ids[m] = ts->ids[k];
        lens[m++] = ts->len[k];
    }
    free(ord);
    free(ts->ids);
    free(ts->len);
    ts->ids = ids;
    ts->len = lens;
    ts->n = m;
    return 0;
}

/* Length of the longest term starting at ids[i] (within n), or 1. */
static int term_at(const term_set *ts, const int32_t *ids, int i, int n)
{
    int lo = 0, hi = ts->n;
    while (lo < hi) {   /* first term whose first id >= ids[i] */
        int mid = (lo + hi) / 2;
        if (ts->ids[mid][0] < ids[i]) lo = mid + 1; else hi = mid;
    }
    for (int k = lo; k < ts->n && ts->ids[k][0] == ids[i]; k++)
        if (ts->len[k] <= n - i && memcmp(ts->ids[k], ids + i, (size_t)ts->len[k] * 4) == 0)
            return ts->len[k];
    return 1;
}

/* ---- masking ----------------------------------------------------------- */
typedef struct mask_ctx {
    double prob;
    int vocab;
    const term_set *terms;      /* NULL: token-level units */
    int *ustart, *ulen, *uord;  /* scratch [maxT] */
} mask_ctx;

/* Masks row (ids[0..len), [CLS] ... [SEP]) in place and writes targets
 * into mlm[0..len) (-100 where not predicted).  Returns targets. */
static int mask_row(mask_ctx *mc, int32_t *ids, int32_t *mlm, int len, uint64_t seed)
{
    uint64_t s = seed;
    int nu = 0, ntok = 0;
    for (int t = 0; t < len; t++) mlm[t] = BERT_IGNORE_INDEX;
    for (int t = 1; t < len - 1;) {
        int l = mc->terms ? term_at(mc->terms, ids, t, len - 1) : 1;
        mc->ustart[nu] = t;
        mc->ulen[nu] = l;
        mc->uord[nu] = nu;
        nu++;
        ntok += l;
        t += l;
    }
    if (ntok == 0) return 0;
    int budget = (int)(mc->prob * ntok + 0.5);
    if (budget < 1) budget = 1;
    for (int i = nu; i > 1; i--) {
        int j = (int)(tr_rng_next(&s) % (uint64_t)i);
        int tmp = mc->uord[i - 1]; mc->uord[i - 1] = mc->uord[j]; mc->uord[j] = tmp;
    }
    int masked = 0;
    for (int k = 0; k < nu && masked < budget; k++) {
        int u = mc->uord[k];
        if (masked + mc->ulen[u] > budget) continue;
        for (int t = mc->ustart[u]; t < mc->ustart[u] + mc->ulen[u]; t++) {
            mlm[t] = ids[t];
            double r = tr_uniform(&s);
            if (r < 0.8) ids[t] = TOK_MASK;
            else if (r < 0.9) ids[t] = TOK_NSPECIAL + (int32_t)(tr_rng_next(&s) % (uint64_t)(mc->vocab - TOK_NSPECIAL));
        }
        masked += mc->ulen[u];
    }
    return masked;
}

/* ---- data -------------------------------------------------------------- */
typedef struct pt_data {
    enc_view v;
    uint32_t *len;              /* [n] */
    uint32_t *usable; size_t nusable;
} pt_data;

static int data_load(flow_ctx *c, const char *port, int vocab, pt_data *d)
{
    memset(d, 0, sizeof *d);
    int rc = encv_read(c, port, 0, &d->v);
    if (rc) return rc;
    for (int k = 1; k < flow_in_count(c, port); k++) {   /* train may bind several */
        enc_view more;
        if ((rc = encv_read(c, port, k, &more))) return rc;
        encv_append(&d->v, &more);
        encv_release(&more);
    }
    for (uint64_t i = 0; i < d->v.nids; i++)
        if (d->v.ids[i] < 0 || d->v.ids[i] >= vocab)
            return flow_ctx_fail(c, FLOW_E_INPUT, "input '%s': token id %d at position %llu is outside the tokenizer's vocabulary of %d (encoded with another tokenizer?)",
                                 port, d->v.ids[i], (unsigned long long)i, vocab);
    d->len = xmalloc((d->v.n ? d->v.n : 1) * sizeof *d->len);
    d->usable = xmalloc((d->v.n ? d->v.n : 1) * sizeof *d->usable);
    for (size_t i = 0; i < d->v.n; i++) {
        d->len[i] = (uint32_t)(d->v.off[i + 1] - d->v.off[i]);
        if (d->len[i] >= 3) d->usable[d->nusable++] = (uint32_t)i;
    }
    return 0;
}

static void data_release(pt_data *d)
{
    encv_release(&d->v);
    free(d->len);
    free(d->usable);
}

/* Fills batch b with sequences seq[0..n), masked with seeds keyed by tag. */
static long fill_batch(tr_batch *b, const pt_data *d, const uint32_t *seq, size_t n,
                       mask_ctx *mc, uint64_t seed, uint64_t tag, int *lens)
{
    long targets = 0;
    for (size_t r = 0; r < n; r++) {
        uint32_t s = seq[r];
        lens[r] = tr_batch_row(b, (int)r, d->v.ids + d->v.off[s], (int)d->len[s]);
        targets += mask_row(mc, b->ids + r * (size_t)b->maxT, b->mlm + r * (size_t)b->maxT, lens[r],
                            tr_seed(seed, tag, s));
    }
    tr_batch_finish(b, (int)n, lens);
    return targets;
}

typedef struct dev_result { double loss, acc, ppl; long targets; } dev_result;

static int dev_eval(flow_ctx *c, bert_model *m, const pt_data *dev, size_t dev_max, int batch,
                    mask_ctx *mc, uint64_t seed, tr_batch *b, int *lens, dev_result *out)
{
    tr_epoch e;
    size_t n = dev->nusable < dev_max ? dev->nusable : dev_max;
    tr_epoch_build(&e, dev->usable, n, dev->len, batch, 0, 0);
    double sum = 0;
    long targets = 0, correct = 0;
    flow_err err = { 0 };
    int rc = 0;
    for (size_t k = 0; k < e.nbatches; k++) {
        long nt = fill_batch(b, dev, e.seq + e.start[k], e.count[k], mc, seed, 0xDE7DE7ull, lens);
        if (nt == 0) continue;
        bert_batch bb = { .B = b->B, .T = b->T, .ids = b->ids, .attn_mask = b->mask, .mlm_labels = b->mlm };
        bert_output o;
        if ((rc = bert_forward(m, &bb, BERT_HEAD_MLM, 0, &o, &err))) {
            rc = flow_ctx_fail(c, rc, "dev evaluation: %s", err.msg);
            break;
        }
        sum += (double)o.loss * o.n_targets;
        targets += o.n_targets;
        correct += o.n_correct;
    }
    tr_epoch_release(&e);
    out->targets = targets;
    out->loss = targets ? sum / targets : 0;
    out->acc = targets ? (double)correct / targets : 0;
    out->ppl = exp(out->loss);
    return rc;
}

/* ---- the masked-LM objective (tr_objective) ---------------------------- */
typedef struct pt_objective {
    flow_ctx *c;
    pt_data tr, dv;
    int has_dev, batch;
    size_t dev_max;
    uint64_t seed;
    mask_ctx mc;
    term_set terms;
    int *lens;                  /* [batch] */
    tr_batch devb;
    dev_result dres;            /* the last dev evaluation */
} pt_objective;

static int pt_fill(void *self, tr_batch *b, const uint32_t *seq, size_t n, long epoch, bert_batch *bb)
{
    pt_objective *p = self;
    long nt = fill_batch(b, &p->tr, seq, n, &p->mc, p->seed, 0x5EED0000ull + (uint64_t)epoch, p->lens);
    *bb = (bert_batch){ .B = b->B, .T = b->T, .ids = b->ids, .attn_mask = b->mask, .mlm_labels = b->mlm };
    return nt > 0;
}

static int pt_evaluate(void *self, bert_model *m, double *score, flow_buf *curve, flow_buf *log)
{
    pt_objective *p = self;
    int rc = dev_eval(p->c, m, &p->dv, p->dev_max, p->batch, &p->mc, p->seed, &p->devb, p->lens, &p->dres);
    if (rc) return rc;
    *score = -p->dres.loss;
    buf_printf(curve, "%.6f\t%.6f\n", p->dres.loss, p->dres.acc);
    buf_printf(log, "loss %.4f  MLM accuracy %.4f  perplexity %.2f", p->dres.loss, p->dres.acc, p->dres.ppl);
    return 0;
}

static void pt_release(pt_objective *p)
{
    free(p->mc.ustart);
    free(p->mc.ulen);
    free(p->mc.uord);
    free(p->lens);
    tr_batch_release(&p->devb);
    terms_free(&p->terms);
    data_release(&p->tr);
    data_release(&p->dv);
}

/* Data, masking and whole-term spans for config cfg. */
static int pt_setup(flow_ctx *c, const tok_tokenizer *tok, const bert_config *cfg, pt_objective *p)
{
    memset(p, 0, sizeof *p);
    p->c = c;
    p->batch = (int)flow_param_int(c, "batch");
    p->seed = (uint64_t)flow_param_int(c, "seed");
    p->dev_max = (size_t)flow_param_int(c, "dev_max");
    p->has_dev = flow_in_count(c, "dev") > 0;
    p->lens = xmalloc((size_t)p->batch * sizeof *p->lens);
    p->mc = (mask_ctx){ .prob = flow_param_float(c, "mask_prob"), .vocab = cfg->vocab_size };
    p->mc.ustart = xmalloc((size_t)cfg->max_len * sizeof(int));
    p->mc.ulen = xmalloc((size_t)cfg->max_len * sizeof(int));
    p->mc.uord = xmalloc((size_t)cfg->max_len * sizeof(int));
    tr_batch_init(&p->devb, p->batch, cfg->max_len);
    int rc;
    if ((rc = data_load(c, "train", cfg->vocab_size, &p->tr))) return rc;
    if (p->has_dev && (rc = data_load(c, "dev", cfg->vocab_size, &p->dv))) return rc;
    if (p->tr.nusable == 0)
        return flow_ctx_fail(c, FLOW_E_INPUT, "input 'train': no sequence has a token besides [CLS]/[SEP] (%zu sequences)", p->tr.v.n);
    if (flow_param_bool(c, "whole_term")) {
        if (flow_in_count(c, "terms") > 0 && (rc = terms_load(c, tok, &p->terms))) return rc;
        p->mc.terms = &p->terms;
        flow_log(c, "whole-term masking: %d multi-token terms (+%d forced terms, single ids)", p->terms.n, tok_nforced(tok));
    }
    return 0;
}

/* The model config from the parameters and the tokenizer. */
static int pt_config(flow_ctx *c, const tok_tokenizer *tok, bert_config *cfg)
{
    bert_config_default(cfg);
    cfg->vocab_size = tok_vocab_size(tok);
    cfg->hidden = (int)flow_param_int(c, "hidden");
    cfg->layers = (int)flow_param_int(c, "layers");
    cfg->max_len = (int)flow_param_int(c, "max_len");
    cfg->hidden_dropout = cfg->attn_dropout = (float)flow_param_float(c, "dropout");
    cfg->num_labels = 2;
    cfg->mode = BERT_MODE_MLM;
    flow_err err = { 0 };
    if (bert_config_uniform(cfg, (int)flow_param_int(c, "heads"), (int)flow_param_int(c, "intermediate"), &err) ||
        bert_config_validate(cfg, &err))
        return flow_ctx_fail(c, FLOW_E_PARAM, "%s", err.msg);
    return 0;
}

/* Metrics, report, model.json summary and the artifact's parts. */
static int pt_finish(flow_ctx *c, bert_model *m, const pt_objective *p, const tr_result *r)
{
    flow_buf rep, training;
    buf_init(&rep);
    buf_init(&training);
    buf_printf(&rep, "pretrain: %ld steps, %zu parameters, final train loss %.4f", r->total, m->nparams, (double)r->last_loss);
    buf_printf(&training, "{\"steps\":%ld,\"train_sequences\":%zu,\"tokens_seen\":%ld,\"final_train_loss\":",
               r->total, p->tr.nusable, r->tokens);
    buf_json_num(&training, r->last_loss);
    flow_metric(c, "train.loss", r->last_loss);
    flow_metric(c, "steps", (double)r->total);
    flow_metric(c, "parameters", (double)m->nparams);
    if (r->seconds > 0 && r->tokens_here > 0) flow_metric(c, "tok_per_s", r->tokens_here / r->seconds);
    if (p->has_dev) {
        const dev_result *d = &p->dres;
        flow_metric(c, "dev.loss", d->loss);
        flow_metric(c, "dev.mlm_accuracy", d->acc);
        flow_metric(c, "dev.perplexity", d->ppl);
        buf_printf(&rep, "; dev loss %.4f, MLM accuracy %.4f, perplexity %.2f (%ld targets)",
                   d->loss, d->acc, d->ppl, d->targets);
        buf_adds(&training, ",\"dev_loss\":");
        buf_json_num(&training, d->loss);
        buf_adds(&training, ",\"dev_mlm_accuracy\":");
        buf_json_num(&training, d->acc);
        buf_adds(&training, ",\"dev_perplexity\":");
        buf_json_num(&training, d->ppl);
    }
    buf_addc(&rep, '\n');
    buf_addc(&training, '}');
    flow_log(c, "%s", rep.data);
    if (flow_param_bool(c, "profile")) {
        char *pt = tr_profile_text(m);
        flow_log(c, "%s", pt);
        buf_adds(&rep, pt);
        free(pt);
    }
    flow_report(c, rep.data);
    int rc = bert_artifact_write(c, m, "bert-mlm", NULL, 0, training.data);
    if (!rc) rc = artifact_copy_tokenizer(c, "tokenizer");
    if (!rc) rc = flow_out_write(c, "loss_curve.tsv", FLOW_PART_BYTES, r->curve.data, r->curve.len);
    buf_release(&rep);
    buf_release(&training);
    return rc;
}

static int pretrain_run(flow_ctx *c)
{
    int rc;
    tok_tokenizer *tok = NULL;
    if ((rc = tok_load_input(c, "tokenizer", 0, &tok))) return rc;
    bert_config cfg;
    pt_objective p;
    memset(&p, 0, sizeof p);
    bert_model *m = NULL;
    tr_result res;
    memset(&res, 0, sizeof res);
    flow_err err = { 0 };
    if ((rc = pt_config(c, tok, &cfg)) || (rc = pt_setup(c, tok, &cfg, &p))) goto out;
    bert_device dev = tr_train_device(c);
    if ((rc = bert_model_new(&cfg, p.batch, cfg.max_len, &dev, &m, &err)) ||
        (rc = bert_init(m, p.seed, &err))) {
        rc = flow_ctx_fail(c, rc, "%s", err.msg);
        goto out;
    }
    if (flow_param_bool(c, "profile")) bert_profile_enable(m, 1);
    tr_options opt;
    tr_options_from_params(c, &opt);
    opt.log_every = 100;
    tr_objective obj = {
        .stage = "pretrain", .ckpt_tag = TR_CKPT_PRETRAIN, .head = BERT_HEAD_MLM,
        .usable = p.tr.usable, .nusable = p.tr.nusable, .len = p.tr.len, .order_tag = 0xE90C,
        .fill = pt_fill, .evaluate = p.has_dev ? pt_evaluate : NULL, .self = &p,
    };
    flow_log(c, "model: %zu parameters (V %d H %d L %d heads %d I %d max_len %d); train %zu sequences (%llu tokens), "
             "batches of %d, %d threads", m->nparams, cfg.vocab_size, cfg.hidden, cfg.layers, cfg.heads[0],
             cfg.ffn[0], cfg.max_len, p.tr.nusable, (unsigned long long)p.tr.v.nids, p.batch, flow_threads(c));
    if (!(rc = tr_train(c, m, &obj, &opt, &res))) rc = pt_finish(c, m, &p, &res);
out:
    tr_result_release(&res);
    bert_model_free(m);
    pt_release(&p);
    tok_free(tok);
    return rc;
}

const flow_stage stage_pretrain = {
    .name = "pretrain",
    .version = 7,   /* 2: dropout masks and vectorised exp/GELU/LayerNorm/AdamW/grad norm (dd5cdd1, 15e390e, fb250cf);
                     * 3: GEMMs and LayerNorm grads cut into fixed blocks (same bytes for any thread count);
                     * 4: model.json config with per-layer heads and FFN widths;
                     * 5: weights in safetensors (model.json version 2);
                     * 6: a step's micro-batch gradients computed apart and summed in micro-batch
                     *    order (the data-parallel reducer: workers = K gives the same bytes), the
                     *    dropout counter of micro-batch k of a step is its start + k (changes bytes
                     *    with grad_accum > 1 only);
                     * 7: dev evaluation's attention by query chunks on attention_gemm.c (was sgemm) */
    .help = "masked-LM pre-training of a BERT on encoded units (resumable, deterministic)",
    .params = pretrain_params, .nparams = sizeof pretrain_params / sizeof pretrain_params[0],
    .inputs = pretrain_inputs, .ninputs = sizeof pretrain_inputs / sizeof pretrain_inputs[0],
    .outputs = pretrain_outputs, .noutputs = sizeof pretrain_outputs / sizeof pretrain_outputs[0],
    .applies = pretrain_applies, .napplies = sizeof pretrain_applies / sizeof pretrain_applies[0],
    .not_in_key = "checkpoint_every profile",   /* same bytes (tests/train_e2e_test.sh) */
    .key_unless_default = "precision",          /* fp32 = what pretrain did before precision existed */
    .res = { .threads = 0, .gpus = 0, .cpu_fallback = 0, .gpu_capable = 1, .data_parallel = 1 },
    .run = pretrain_run,
};
