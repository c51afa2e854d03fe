/* trim_vocab.c — the `trim-vocab` stage: drops the tokens a domain corpus
 * does not use from a bert model and its tokenizer.
 *
 *   trimmed = trim-vocab { model = finetune  corpus = split.train  coverage = 0.999 }
 *
 * The corpus (every unit of its `text` part) is encoded with the model's
 * tokenizer and each id counted.  Kept: the ids with count >= min_count,
 * and among them the most frequent ones (ties: lower id first) that cover
 * `coverage` of all token occurrences; both rules always apply (defaults:
 * used at all, 99.9% of occurrences).  tok_trim then adds what the kept
 * ids need (specials, byte tokens, merge-tree ancestors), drops every
 * merge whose result is dropped and remaps the ids; the word-embedding
 * and MLM-bias rows follow (vocab_edit.c).  Text made of kept tokens
 * encodes to the same ids modulo the map, so the model's logits on it are
 * unchanged; a dropped token's text falls back to kept pieces, the byte
 * tokens or [UNK].
 *
 * Metrics and report: tokens before and after, embedding parameters saved,
 * the share of the corpus's token occurrences kept, and the character
 * coverage of the corpus under the trimmed tokenizer. */
#include "vocab_edit.h"

#include <stdlib.h>
#include <string.h>

static const flow_param_def trim_params[] = {
    {"coverage", FLOW_P_FLOAT, 0, "0.999", 1e-9, 1, NULL,
     "keep the most frequent tokens covering this share of the corpus's token occurrences"},
    {"min_count", FLOW_P_INT, 0, "1", 1, 2147483647, NULL,
     "keep only tokens seen at least this often in the corpus"},
};

static const flow_input_def trim_inputs[] = {
    {"model", 0, 0, "a bert model artifact (pretrain, finetune, prune, distill)"},
    {"corpus", 0, 0, "the domain corpus whose token use decides (part `text`), e.g. split.train"},
    {"tokenizer", 1, 0, "the model's bpe node (optional: checked to be the model's own)"},
};

typedef struct id_count { uint64_t n; int id; } id_count;

static int by_count_desc(const void *a, const void *b)
{
    const id_count *x = a, *y = b;
    if (x->n != y->n) return x->n > y->n ? -1 : 1;
    return x->id - y->id;
}

/* want[id] = 1 for the ids the rules keep; returns occurrences kept. */
static uint64_t choose(const uint64_t *count, int n, double coverage, int64_t min_count,
                       uint64_t total, uint8_t *want)
{
    id_count *v = xmalloc((size_t)n * sizeof *v);
    for (int i = 0; i < n; i++) v[i] = (id_count){ count[i], i };
    qsort(v, (size_t)n, sizeof *v, by_count_desc);
    uint64_t kept = 0;
    for (int i = 0; i < n && v[i].n >= (uint64_t)min_count; i++) {
        if ((double)kept >= coverage * (double)total) break;
        want[v[i].id] = 1;
        kept += v[i].n;
    }
    free(v);
    return kept;
}

static int trim_run(flow_ctx *c)
{
    vocab_model m;
    int rc = vocab_model_read(c, "model", &m);
    if (!rc) rc = vocab_check_tokenizer(c, "tokenizer", &m);
    char *text = NULL;
    size_t len = 0;
    if (!rc && (rc = flow_in_read(c, "corpus", 0, "text", &text, &len)))
        rc = flow_ctx_fail(c, rc, "input 'corpus' has no part text: bind it to a corpus (split.train)");
    if (rc) { vocab_model_release(&m); return rc; }
    int n = tok_vocab_size(m.tok);
    tok_batch b;
    tok_encode_lines(m.tok, text, len, 1 << 30, flow_threads(c), &b);
    uint64_t *count = xcalloc((size_t)n, sizeof *count), total = 0;
    for (uint64_t s = 0; s < b.nseq; s++)      /* content ids, without [CLS] [SEP] */
        for (uint64_t i = b.offsets[s] + 1; i + 1 < b.offsets[s + 1]; i++, total++)
            count[b.ids[i]]++;
    tok_batch_release(&b);
    uint8_t *want = xcalloc((size_t)n, 1);
    uint64_t kept = choose(count, n, flow_param_float(c, "coverage"), flow_param_int(c, "min_count"),
                           total, want);
    int *new_to_old = xmalloc((size_t)n * sizeof *new_to_old), nnew = 0;
    tok_tokenizer *nt = NULL;
    flow_err err = { 0 };
    rc = tok_trim(m.tok, want, &nt, new_to_old, &nnew, &err);
    if (rc) rc = flow_ctx_fail(c, rc, "trimming the tokenizer: %s", err.msg);
    if (!rc) {
        tok_batch t2;
        tok_encode_lines(nt, text, len, 1 << 30, flow_threads(c), &t2);
        double char_cov = t2.chars ? 1.0 - (double)t2.unk_chars / (double)t2.chars : 1.0;
        tok_batch_release(&t2);
        double tok_cov = total ? (double)kept / (double)total : 1.0;
        long long saved = (long long)(n - nnew) * m.cfg.hidden;
        char edit[256];
        snprintf(edit, sizeof edit, "{\"stage\":\"trim-vocab\",\"vocab_before\":%d,\"vocab_after\":%d}", n, nnew);
        rc = vocab_model_write(c, "model", &m, nt, new_to_old, nnew, NULL, NULL, edit);
        flow_metric(c, "vocab_before", n);
        flow_metric(c, "vocab_after", nnew);
        flow_metric(c, "embedding_params_saved", (double)saved);
        flow_metric(c, "token_coverage", tok_cov);
        flow_metric(c, "char_coverage", char_cov);
        char rep[512];
        snprintf(rep, sizeof rep, "trim-vocab: %d -> %d tokens (%.1f%% dropped), %lld embedding "
                 "parameters saved; kept tokens cover %.4f of the corpus's %llu token "
                 "occurrences; character coverage with the trimmed vocabulary %.4f\n",
                 n, nnew, 100.0 * (n - nnew) / n, saved, tok_cov, (unsigned long long)total, char_cov);
        flow_report(c, rep);
    }
    tok_free(nt);
    free(new_to_old); free(want); free(count); free(text);
    vocab_model_release(&m);
    return rc;
}

const flow_stage stage_trim_vocab = {
    .name = "trim-vocab",
    .version = 1,
    .help = "drop the tokens a domain corpus does not use from a bert model and its tokenizer",
    .params = trim_params, .nparams = sizeof trim_params / sizeof *trim_params,
    .inputs = trim_inputs, .ninputs = sizeof trim_inputs / sizeof *trim_inputs,
    .res = {.threads = 0},
    .run = trim_run,
};
