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
#include <time.h>

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
    { "checkpoint_every", FLOW_P_INT, 0, "200", 0, 1e9, NULL, "steps between resumable checkpoints (0 = none)" },
    { "eval_every", FLOW_P_INT, 0, "0", 0, 1e9, NULL, "steps between dev evaluations (0 = at the end only)" },
    { "dev_max", FLOW_P_INT, 0, "2000", 1, 1e9, NULL, "dev sequences evaluated at most" },
    { "profile", FLOW_P_BOOL, 0, "false", 0, -1, NULL, "print the kernels profiler table to the log and report" },
};

static const flow_input_def pretrain_inputs[] = {
    { "train", 0, 0, "encoded corpus to learn from (encode.train or an encoded unlabelled corpus)" },
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
    { "weights", "FLOWWTS, HuggingFace tensor names" },
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

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int pretrain_run(flow_ctx *c)
{
    int rc;
    tok_tokenizer *tok = NULL;
    if ((rc = tok_load_input(c, "tokenizer", 0, &tok))) return rc;
    bert_config cfg;
    bert_config_default(&cfg);
    cfg.vocab_size = tok_vocab_size(tok);
    cfg.hidden = (int)flow_param_int(c, "hidden");
    cfg.layers = (int)flow_param_int(c, "layers");
    cfg.heads = (int)flow_param_int(c, "heads");
    cfg.intermediate = (int)flow_param_int(c, "intermediate");
    cfg.max_len = (int)flow_param_int(c, "max_len");
    cfg.hidden_dropout = cfg.attn_dropout = (float)flow_param_float(c, "dropout");
    cfg.num_labels = 2;
    cfg.mode = BERT_MODE_MLM;
    const int batch = (int)flow_param_int(c, "batch"), accum = (int)flow_param_int(c, "grad_accum");
    const uint64_t seed = (uint64_t)flow_param_int(c, "seed");
    const long ckpt_every = (long)flow_param_int(c, "checkpoint_every");
    const long eval_every = (long)flow_param_int(c, "eval_every");
    const float peak = (float)flow_param_float(c, "lr"), clip = (float)flow_param_float(c, "max_grad_norm");
    const bert_adamw hp = { 0.9f, 0.999f, 1e-8f, (float)flow_param_float(c, "weight_decay") };
    const int profile = flow_param_bool(c, "profile");
    flow_err err = { 0 };
    if (bert_config_validate(&cfg, &err)) { tok_free(tok); return flow_ctx_fail(c, FLOW_E_PARAM, "%s", err.msg); }

    pt_data tr, dv;
    memset(&dv, 0, sizeof dv);
    int has_dev = flow_in_count(c, "dev") > 0;
    term_set terms;
    memset(&terms, 0, sizeof terms);
    bert_model *m = NULL;
    tr_batch b;
    memset(&b, 0, sizeof b);
    int *lens = xmalloc((size_t)batch * sizeof *lens);
    flow_buf curve;
    buf_init(&curve);
    mask_ctx mc = { .prob = flow_param_float(c, "mask_prob"), .vocab = cfg.vocab_size };
    mc.ustart = xmalloc((size_t)cfg.max_len * sizeof(int));
    mc.ulen = xmalloc((size_t)cfg.max_len * sizeof(int));
    mc.uord = xmalloc((size_t)cfg.max_len * sizeof(int));
    tr_epoch ep;
    memset(&ep, 0, sizeof ep);

    if ((rc = data_load(c, "train", cfg.vocab_size, &tr))) goto out;
    if (has_dev && (rc = data_load(c, "dev", cfg.vocab_size, &dv))) goto out;
    if (tr.nusable == 0) {
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'train': no sequence has a token besides [CLS]/[SEP] (%zu sequences)", tr.v.n);
        goto out;
    }
    if (flow_param_bool(c, "whole_term")) {
        if (flow_in_count(c, "terms") > 0 && (rc = terms_load(c, tok, &terms))) goto out;
        mc.terms = &terms;
        flow_log(c, "whole-term masking: %d multi-token terms (+%d forced terms, single ids)", terms.n, tok_nforced(tok));
    }
    bert_set_threads(flow_threads(c));
    if ((rc = bert_model_new(&cfg, batch, cfg.max_len, BERT_BACKEND_CPU, &m, &err))) {
        rc = flow_ctx_fail(c, rc, "%s", err.msg);
        goto out;
    }
    bert_init(m, seed);
    if (profile) bert_profile_enable(m, 1);
    tr_batch_init(&b, batch, cfg.max_len);

    const size_t nb = (tr.nusable + (size_t)batch - 1) / (size_t)batch;
    const long steps_per_epoch = (long)((nb + (size_t)accum - 1) / (size_t)accum);
    const long max_steps = (long)flow_param_int(c, "max_steps");
    const long total = max_steps > 0 ? max_steps : steps_per_epoch * (long)flow_param_int(c, "epochs");
    const long warmup = (long)(flow_param_float(c, "warmup_ratio") * total + 0.5);
    flow_log(c, "model: %zu parameters (V %d H %d L %d heads %d I %d max_len %d); train %zu sequences (%llu tokens), "
             "%zu batches of %d, %ld steps (%ld per epoch), warmup %ld, %d threads",
             m->nparams, cfg.vocab_size, cfg.hidden, cfg.layers, cfg.heads, cfg.intermediate, cfg.max_len,
             tr.nusable, (unsigned long long)tr.v.nids, nb, batch, total, steps_per_epoch, warmup, flow_threads(c));

    long step = 0;
    char *extra = NULL;
    size_t extra_len = 0;
    rc = tr_ckpt_load(c, TR_CKPT_PRETRAIN, &step, m, &extra, &extra_len);
    long tokens = 0;   /* tokens seen, kept across resumes (it is in model.json) */
    if (rc == 0) {
        if (extra_len < 8) {
            free(extra);
            rc = flow_ctx_fail(c, FLOW_E_CORRUPT, "the checkpoint's pretrain state is damaged");
            goto out;
        }
        int64_t tk;
        memcpy(&tk, extra, 8);
        tokens = (long)tk;
        buf_add(&curve, extra + 8, extra_len - 8);
        free(extra);
        flow_log(c, "resumed from the checkpoint at step %ld/%ld", step, total);
    } else if (rc != FLOW_E_NOTFOUND) {
        goto out;
    }
    rc = 0;

    double t0 = now_s(), loss_window = 0;
    long tokens_start = tokens, window_n = 0, cur_epoch = -1;
    float last_loss = 0;
    dev_result dres = { 0 };
    for (; step < total; step++) {
        long epoch = step / steps_per_epoch, j = step % steps_per_epoch;
        if (epoch != cur_epoch) {
            tr_epoch_release(&ep);
            tr_epoch_build(&ep, tr.usable, tr.nusable, tr.len, batch, tr_seed(seed, 0xE90C, (uint64_t)epoch), 1);
            cur_epoch = epoch;
        }
        size_t k0 = (size_t)j * (size_t)accum, k1 = k0 + (size_t)accum < nb ? k0 + (size_t)accum : nb;
        double step_loss = 0;
        bert_zero_grad(m);
        for (size_t k = k0; k < k1; k++) {
            long nt = fill_batch(&b, &tr, ep.seq + ep.start[k], ep.count[k], &mc, seed, 0x5EED0000ull + (uint64_t)epoch, lens);
            if (nt == 0) continue;
            bert_batch bb = { .B = b.B, .T = b.T, .ids = b.ids, .attn_mask = b.mask, .mlm_labels = b.mlm };
            bert_output o;
            if ((rc = bert_forward(m, &bb, BERT_HEAD_MLM, 1, &o, &err)) ||
                (rc = bert_backward(m, 1.0f / (float)(k1 - k0), &err))) {
                rc = flow_ctx_fail(c, rc, "step %ld: %s", step, err.msg);
                goto out;
            }
            step_loss += o.loss / (double)(k1 - k0);
            tokens += b.tokens;
        }
        if (!isfinite(step_loss)) {
            rc = flow_ctx_fail(c, FLOW_E_STAGE, "step %ld: loss is %g (diverged); lower lr (now %g) or raise warmup_ratio",
                               step, step_loss, (double)peak);
            goto out;
        }
        float gn = bert_clip_grad_norm(m, clip);
        float lr = bert_lr_linear(peak, step, warmup, total);
        bert_adamw_step(m, &hp, lr);
        last_loss = (float)step_loss;
        loss_window += step_loss;
        window_n++;
        buf_printf(&curve, "%ld\t%.6f\t%.6g\t%.4f\n", step + 1, step_loss, (double)lr, (double)gn);
        double el = now_s() - t0;
        flow_progress(c, (double)(step + 1) / total, "step %ld/%ld  loss %.3f  %.1fk tok/s",
                      step + 1, total, loss_window / window_n, el > 0 ? (tokens - tokens_start) / el / 1000 : 0.0);
        if ((step + 1) % 100 == 0 || step + 1 == total) {
            flow_log(c, "step %ld/%ld  loss %.4f  lr %.3g  grad norm %.3f  %.0f tok/s",
                     step + 1, total, loss_window / window_n, (double)lr, (double)gn, el > 0 ? (tokens - tokens_start) / el : 0.0);
            loss_window = 0;
            window_n = 0;
        }
        if (has_dev && eval_every > 0 && (step + 1) % eval_every == 0 && step + 1 < total) {
            if ((rc = dev_eval(c, m, &dv, (size_t)flow_param_int(c, "dev_max"), batch, &mc, seed, &b, lens, &dres))) goto out;
            flow_log(c, "step %ld: dev loss %.4f  MLM accuracy %.4f  perplexity %.2f", step + 1, dres.loss, dres.acc, dres.ppl);
        }
        if (ckpt_every > 0 && (step + 1) % ckpt_every == 0 && step + 1 < total) {
            if ((rc = bert_sync_to_host(m, &err))) { rc = flow_ctx_fail(c, rc, "%s", err.msg); goto out; }
            flow_buf x;
            buf_init(&x);
            int64_t tk = tokens;
            buf_add(&x, &tk, 8);
            buf_add(&x, curve.data, curve.len);
            rc = tr_ckpt_save(c, TR_CKPT_PRETRAIN, step + 1, m, x.data, x.len);
            buf_release(&x);
            if (rc) goto out;
        }
        tr_test_kill("pretrain", step + 1);
    }
    double secs = now_s() - t0;
    if ((rc = bert_sync_to_host(m, &err))) { rc = flow_ctx_fail(c, rc, "%s", err.msg); goto out; }

    flow_buf rep, training;
    buf_init(&rep);
    buf_init(&training);
    buf_printf(&rep, "pretrain: %ld steps, %zu parameters, final train loss %.4f", total, m->nparams, (double)last_loss);
    buf_printf(&training, "{\"steps\":%ld,\"train_sequences\":%zu,\"tokens_seen\":%ld,\"final_train_loss\":",
               total, tr.nusable, tokens);
    buf_json_num(&training, last_loss);
    flow_metric(c, "train.loss", last_loss);
    flow_metric(c, "steps", (double)total);
    flow_metric(c, "parameters", (double)m->nparams);
    if (secs > 0 && tokens > tokens_start) flow_metric(c, "tok_per_s", (tokens - tokens_start) / secs);
    if (has_dev) {
        if ((rc = dev_eval(c, m, &dv, (size_t)flow_param_int(c, "dev_max"), batch, &mc, seed, &b, lens, &dres))) {
            buf_release(&rep);
            buf_release(&training);
            goto out;
        }
        flow_metric(c, "dev.loss", dres.loss);
        flow_metric(c, "dev.mlm_accuracy", dres.acc);
        flow_metric(c, "dev.perplexity", dres.ppl);
        buf_printf(&rep, "; dev loss %.4f, MLM accuracy %.4f, perplexity %.2f (%ld targets)",
                   dres.loss, dres.acc, dres.ppl, dres.targets);
        buf_adds(&training, ",\"dev_loss\":");
        buf_json_num(&training, dres.loss);
        buf_adds(&training, ",\"dev_mlm_accuracy\":");
        buf_json_num(&training, dres.acc);
        buf_adds(&training, ",\"dev_perplexity\":");
        buf_json_num(&training, dres.ppl);
    }
    buf_addc(&rep, '\n');
    buf_addc(&training, '}');
    flow_log(c, "%s", rep.data);
    if (profile) {
        char *pt = tr_profile_text(m);
        flow_log(c, "%s", pt);
        buf_adds(&rep, pt);
        free(pt);
    }
    flow_report(c, rep.data);
    rc = bert_artifact_write(c, m, "bert-mlm", NULL, 0, training.data);
    if (!rc) rc = artifact_copy_tokenizer(c, "tokenizer");
    if (!rc) rc = flow_out_write(c, "loss_curve.tsv", FLOW_PART_BYTES, curve.data, curve.len);
    buf_release(&rep);
    buf_release(&training);
out:
    tr_epoch_release(&ep);
    free(mc.ustart);
    free(mc.ulen);
    free(mc.uord);
    buf_release(&curve);
    free(lens);
    tr_batch_release(&b);
    bert_model_free(m);
    terms_free(&terms);
    data_release(&tr);
    data_release(&dv);
    tok_free(tok);
    return rc;
}

const flow_stage stage_pretrain = {
    .name = "pretrain",
    .version = 3,   /* 3: GEMMs and LayerNorm grads cut into fixed blocks (same bytes for any
                     * thread count); 2: dropout masks and vectorised exp/GELU/LayerNorm/AdamW/grad norm (dd5cdd1, 15e390e, fb250cf) */
    .help = "masked-LM pre-training of a BERT on encoded units (resumable, deterministic)",
    .params = pretrain_params, .nparams = sizeof pretrain_params / sizeof pretrain_params[0],
    .inputs = pretrain_inputs, .ninputs = sizeof pretrain_inputs / sizeof pretrain_inputs[0],
    .outputs = pretrain_outputs, .noutputs = sizeof pretrain_outputs / sizeof pretrain_outputs[0],
    .applies = pretrain_applies, .napplies = sizeof pretrain_applies / sizeof pretrain_applies[0],
    .res = { .threads = 0, .gpus = 0, .cpu_fallback = 0 },
    .run = pretrain_run,
};
