/* bpe.c — the `bpe` stage: trains the BPE tokenizer (bpe_train.c) on the
 * `text` parts of its corpora with the forced terms of its `terms` inputs,
 * and writes vocab.txt, merges.txt, tokenizer.json, tokenizer.bin and
 * chars.tsv (every training character with its count, most frequent first;
 * coverage builds its character-level baseline from it). */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const flow_param_def bpe_params[] = {
    {"vocab_size", FLOW_P_INT, 0, "8000", 6, 1 << 24, NULL,
     "tokens in all: specials 5 + forced terms + alphabet (+256 bytes) + merges"},
    {"character_coverage", FLOW_P_FLOAT, 0, "0.9995", 0.5, 1.0, NULL,
     "share of character occurrences the alphabet covers; rarer characters "
     "become [UNK] (or bytes)"},
    {"byte_fallback", FLOW_P_BOOL, 0, "false", 1, 0, NULL,
     "encode characters outside the alphabet as byte tokens <0x00>..<0xFF>"},
    {"max_token_chars", FLOW_P_INT, 0, "16", 1, TOK_MAX_RUN, NULL,
     "longest merged token in characters; longer forced terms are skipped"},
    {"min_frequency", FLOW_P_INT, 0, "2", 1, 1e9, NULL,
     "stop merging when the best pair occurs fewer times"},
    {"min_word_count", FLOW_P_INT, 0, "1", 1, 1e15, NULL,
     "pre-tokens counted fewer times are left out of the merges (their characters "
     "still make the alphabet); 1 = every pre-token"},
};

static const flow_input_def bpe_inputs[] = {
    {"text", 0, 1, "corpora to train on (part `text` of each)"},
    {"terms", 1, 1, "forced term lists: part `terms` if present, else every part"},
};

static const flow_output_def bpe_outputs[] = {
    {"vocab.txt", "one token per line, id = line number"},
    {"merges.txt", "one merge \"a b\" per line, rank order"},
    {"tokenizer.json", "HuggingFace tokenizers export"},
    {"tokenizer.bin", "compact tokenizer (tokenizer.h tok_load)"},
    {"chars.tsv", "training characters: codepoint(hex) \\t char \\t count"},
};

static int write_buf(flow_ctx *c, const char *part, flow_buf *b)
{
    int rc = flow_out_write(c, part, FLOW_PART_BYTES, b->data ? b->data : "", b->len);
    buf_release(b);
    if (rc)
        return flow_ctx_fail(c, rc, "cannot write part %s", part);
    return 0;
}

static void bpe_progress(void *arg, int done, int total, int64_t count)
{
    flow_progress(arg, (double)done / total, "merge %d/%d  pair count %lld", done, total,
                  (long long)count);
}

/* Physical memory of this machine (bytes), or 0 if unknown. */
static size_t machine_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
}

/* Streams every text input through the word counter in blocks of an
 * eighth of the memory budget (memory_mb).  Counting is exact in bounded
 * memory: past half of the budget the word table is written to a sorted
 * run in the temporary folder (flow_temp_dir) and cleared, the runs are
 * merged at the end.  The words kept for training (min_word_count) and
 * the merge state must fit the budget: when they would not, the node
 * stops with an error saying how much it needs and which min_word_count
 * would fit, instead of outgrowing it, swapping or being killed.  The
 * budget never changes the bytes (it is not in the key): a build either
 * fits and gives the same tokenizer as any larger budget, or fails. */
static int count_texts(flow_ctx *c, const tok_terms *terms, tok_train_opts *o,
                       tok_tokenizer **t, tok_train_stats *st)
{
    size_t budget = flow_memory_budget(c), block = budget / 8, ram = machine_memory();
    o->memory_limit = budget;
    if (ram && budget > ram - ram / 8) {
        o->memory_limit = ram - ram / 8;
        flow_log(c, "memory_mb %zu is more than 7/8 of this machine's %zu MB: training is "
                 "held to %zu MB", budget >> 20, ram >> 20, o->memory_limit >> 20);
    }
    o->spill_bytes = budget / 2;
    o->spill_dir = flow_temp_dir(c);
    tok_counter *k;
    flow_err err = {0};
    int rc = tok_counter_new(terms, o, &k, &err);
    if (rc)
        return flow_ctx_fail(c, rc, "%s", err.msg);
    int nt = flow_in_count(c, "text");
    for (int i = 0; i < nt && !rc; i++) {
        if (!flow_in_has(c, "text", i, "text")) {
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "text input %d has no part `text`; bind a "
                               "corpus (clean node) or one split (e.g. split.train)", i);
            break;
        }
        if ((rc = corpus_check(c, "text", i, "")) != 0)
            break;
        line_stream ls;
        if ((rc = line_stream_open(c, "text", i, "text", &ls)) != 0)
            break;
        char *text;
        size_t n;
        while (!(rc = line_stream_block(&ls, block, &text, &n)) && n) {
            if ((rc = tok_counter_add(k, text, n, &err)) != 0) {
                rc = flow_ctx_fail(c, rc, "%s", err.msg);
                break;
            }
            flow_progress(c, -1, "counted %llu distinct words in memory",
                          (unsigned long long)tok_counter_distinct(k));
        }
        line_stream_close(&ls);
    }
    if (!rc) {
        rc = tok_train_counted(k, terms, o, t, st, &err);
        flow_log(c, "word counts: %llu distinct words (%d sorted runs spilled, %llu MB written; "
                 "memory budget %zu MB, text blocks of %zu MB); min_word_count %lld left out "
                 "%llu distinct words with %llu occurrences", (unsigned long long)st->unique_words,
                 st->spills, (unsigned long long)(st->spilled_bytes >> 20), budget >> 20,
                 block >> 20, (long long)o->min_word_count,
                 (unsigned long long)st->dropped_words,
                 (unsigned long long)st->dropped_occurrences);
        if (rc)
            rc = flow_ctx_fail(c, rc, "%s", err.msg);
    }
    tok_counter_free(k);
    return rc;
}

static int bpe_run(flow_ctx *c)
{
    tok_train_opts o = {
        .vocab_size = (int)flow_param_int(c, "vocab_size"),
        .character_coverage = flow_param_float(c, "character_coverage"),
        .byte_fallback = flow_param_bool(c, "byte_fallback"),
        .max_token_chars = (int)flow_param_int(c, "max_token_chars"),
        .min_frequency = (int)flow_param_int(c, "min_frequency"),
        .min_word_count = flow_param_int(c, "min_word_count"),
        .threads = flow_threads(c),
        .progress = bpe_progress,
        .progress_arg = c,
    };
    tok_terms terms;
    tok_terms_init(&terms);
    int rc = tok_read_terms(c, "terms", &terms, o.max_token_chars);
    if (rc) {
        tok_terms_release(&terms);
        return rc;
    }
    if (terms.too_long)
        flow_log(c, "skipped %d forced terms longer than max_token_chars %d (first: %s)",
                 terms.too_long, o.max_token_chars, terms.too_long_example);
    tok_tokenizer *t = NULL;
    tok_train_stats st;
    memset(&st, 0, sizeof st);
    rc = count_texts(c, &terms, &o, &t, &st);
    if (!rc) {
        flow_buf b;
        buf_init(&b);
        rc = tok_write_parts(c, t, "");
        if (!rc) {
            for (int i = 0; i < st.distinct_chars; i++) {
                char u[5] = {0};
                uint32_t cp = st.char_cp[i];
                int k = utf8_encode(cp, u);
                u[k] = 0;
                /* control characters are printed only as code points */
                buf_printf(&b, "%04X\t%s\t%llu\n", cp, cp < 0x20 || cp == 0x7F ? "" : u,
                           (unsigned long long)st.char_count[i]);
            }
            rc = write_buf(c, "chars.tsv", &b);
        }
    }
    if (!rc && tok_vocab_size(t) < o.vocab_size)
        flow_log(c, "the vocabulary has %d tokens, fewer than vocab_size %d: %s",
                 tok_vocab_size(t), o.vocab_size, st.stopped_min_frequency
                 ? "the best remaining pair occurs fewer than min_frequency times"
                 : "no pair of tokens is left to merge (or all would exceed max_token_chars)");
    if (!rc) {
        flow_metric(c, "vocab_size", tok_vocab_size(t));
        flow_metric(c, "alphabet", st.alphabet);
        flow_metric(c, "distinct_chars", st.distinct_chars);
        flow_metric(c, "coverage_cut_count", st.coverage_cut_count);
        flow_metric(c, "train_char_coverage",
                    st.chars_total ? (double)st.chars_kept / (double)st.chars_total : 1.0);
        flow_metric(c, "merges", st.merges);
        flow_metric(c, "forced_terms", terms.n);
        flow_metric(c, "forced_terms_duplicate", terms.duplicates);
        flow_metric(c, "forced_terms_too_long", terms.too_long);
        flow_metric(c, "forced_occurrences", (double)st.forced_occurrences);
        flow_metric(c, "words", (double)st.words);
        flow_metric(c, "unique_words", (double)st.unique_words);
        flow_metric(c, "dropped_words", (double)st.dropped_words);
        flow_metric(c, "dropped_occurrences", (double)st.dropped_occurrences);
        flow_metric(c, "spills", st.spills);
        flow_metric(c, "byte_fallback", o.byte_fallback);
        flow_metric(c, "seconds_count", st.seconds_count);
        flow_metric(c, "seconds_merge", st.seconds_merge);
        flow_metric(c, "train_memory_mb", (double)st.memory_peak / 1048576.0);
        flow_log(c, "alphabet %d of %d characters (cut at count %u), %d merges%s, "
                 "%d forced terms, %llu unique words; count %.2fs merge %.2fs",
                 st.alphabet, st.distinct_chars, st.coverage_cut_count, st.merges,
                 st.stopped_min_frequency ? " (stopped at min_frequency)" : "",
                 terms.n, (unsigned long long)st.unique_words, st.seconds_count,
                 st.seconds_merge);
    }
    tok_train_stats_release(&st);
    tok_terms_release(&terms);
    tok_free(t);
    return rc;
}

const flow_stage stage_bpe = {
    .name = "bpe",
    .version = 2,   /* 2: skips dot-parts (.index) of term inputs (0d74546) */
    .help = "train a BPE tokenizer with forced terms (vocab.txt, merges.txt, "
            "tokenizer.json, tokenizer.bin)",
    .params = bpe_params, .nparams = sizeof bpe_params / sizeof *bpe_params,
    .inputs = bpe_inputs, .ninputs = sizeof bpe_inputs / sizeof *bpe_inputs,
    .outputs = bpe_outputs, .noutputs = sizeof bpe_outputs / sizeof *bpe_outputs,
    .key_unless_default = "min_word_count",     /* 1 = what bpe did before it existed */
    .res = {.threads = 0, .memory_mb = 512},
    .run = bpe_run,
};
