/* terms.c — the `terms` stage: mines domain terms (2-8 Han characters) from
 * a training corpus and merges the user's term lists into the forced-term
 * list the tokenizer (bpe) keeps whole.
 *
 * Inputs: corpus (a corpus, e.g. split.train: only its text is read) and
 * optional many-port user (source nodes holding term lists such as
 * terms.txt; every part is parsed by term_list_parse).
 * Outputs: ranked.tsv  "term \t score \t freq \t pmi \t left_entropy \t
 *                      right_entropy", best first, header line first;
 *          terms       user terms (in list order), then the top_k mined
 *                      terms not already listed; one per line.
 * The mining itself is terms_mine (terms_mine.c). */
#include "stages/stages.h"
#include "text.h"

#include <stdlib.h>
#include <string.h>

/* The user's term lists, merged in binding and part order; a term in
 * several lists is kept once (its first place) and counted as a duplicate. */
typedef struct user_terms {
    term_list *lists;
    int nlists;
    long long dups, too_long, comments, blank;
    char **user;            /* into lists */
    int nuser, ucap;
} user_terms;

static void user_terms_release(user_terms *U)
{
    free(U->user);
    for (int i = 0; i < U->nlists; i++) term_list_release(&U->lists[i]);
    free(U->lists);
}

/* Appends the terms of list t not already taken. */
static void merge_list(user_terms *U, const term_list *t)
{
    for (int i = 0; i < t->n; i++) {
        int seen = 0;   /* duplicates across lists */
        for (int j = 0; j < U->nuser && !seen; j++) seen = strcmp(U->user[j], t->term[i]) == 0;
        if (seen) { U->dups++; continue; }
        if (U->nuser == U->ucap) {
            U->ucap = U->ucap ? 2 * U->ucap : 128;
            U->user = xrealloc(U->user, (size_t)U->ucap * sizeof *U->user);
        }
        U->user[U->nuser++] = t->term[i];
    }
}

/* Parses every part of every node bound to `user` (but dot-parts, such as
 * a labelled source's .index). */
static int read_user_terms(flow_ctx *c, int max_chars, user_terms *U)
{
    int rc = 0;
    int nuser_in = flow_in_count(c, "user");
    U->lists = xcalloc((size_t)nuser_in + 1, sizeof *U->lists);
    for (int b = 0; b < nuser_in && !rc; b++) {
        int np = flow_in_nparts(c, "user", b);
        U->lists = xrealloc(U->lists, (size_t)(U->nlists + np + 1) * sizeof *U->lists);
        for (int k = 0; k < np && !rc; k++) {
            const char *part = flow_in_part_name(c, "user", b, k);
            if (part[0] == '.') continue;    /* .index of a labelled source */
            char *data;
            size_t dl;
            if ((rc = flow_in_read(c, "user", b, part, &data, &dl)) != 0) break;
            flow_err e = {0, {0}};
            term_list *t = &U->lists[U->nlists];
            if ((rc = term_list_parse(t, data, dl, max_chars, &e)) != 0) {
                rc = flow_ctx_fail(c, rc, "term list '%s': %s", part, e.msg);
                break;
            }
            U->nlists++;
            U->dups += t->duplicates, U->too_long += t->too_long, U->comments += t->comments, U->blank += t->blank;
            if (t->too_long)
                flow_log(c, "term list '%s': %d terms longer than max_chars = %d dropped (first: %s)", part,
                         t->too_long, max_chars, t->first_too_long);
            merge_list(U, t);
        }
    }
    return rc;
}

/* How the user terms and the mined ones met, for metrics and the report. */
typedef struct terms_tally {
    int in_top, in_all, added;
} terms_tally;

/* ranked.tsv (the best ranked_max candidates) and terms (user terms, then
 * the top_k mined terms not among them). */
static int write_terms(flow_ctx *c, const user_terms *U, const mined_term *m, int nm, int top_k,
                       int ranked_max, terms_tally *tl)
{
    flow_buf rk, out;
    buf_init(&rk);
    buf_init(&out);
    buf_adds(&rk, "term\tscore\tfreq\tpmi\tleft_entropy\tright_entropy\n");
    for (int i = 0; i < nm && i < ranked_max; i++)
        buf_printf(&rk, "%s\t%.4f\t%lld\t%.4f\t%.4f\t%.4f\n", m[i].text, m[i].score, (long long)m[i].freq,
                   m[i].pmi, m[i].left_entropy, m[i].right_entropy);
    tl->in_top = tl->in_all = tl->added = 0;
    for (int j = 0; j < U->nuser; j++) {
        buf_printf(&out, "%s\n", U->user[j]);
        for (int i = 0; i < nm; i++)
            if (strcmp(m[i].text, U->user[j]) == 0) {
                tl->in_all++;
                tl->in_top += i < top_k;
                break;
            }
    }
    for (int i = 0; i < nm && tl->added < top_k; i++) {
        int dup = 0;
        for (int j = 0; j < U->nuser && !dup; j++) dup = strcmp(U->user[j], m[i].text) == 0;
        if (dup) continue;
        buf_printf(&out, "%s\n", m[i].text);
        tl->added++;
    }
    int rc = flow_out_write(c, "ranked.tsv", FLOW_PART_BYTES, rk.data, rk.len);
    if (!rc) rc = flow_out_write(c, "terms", FLOW_PART_BYTES, out.data ? out.data : "", out.len);
    buf_release(&rk);
    buf_release(&out);
    return rc;
}

static void terms_summary(flow_ctx *c, const user_terms *U, const mined_term *m, int nm, int top_k,
                          const terms_tally *tl)
{
    flow_metric(c, "candidates", nm);
    flow_metric(c, "user_terms", U->nuser);
    flow_metric(c, "user_duplicates", (double)U->dups);
    flow_metric(c, "user_too_long", (double)U->too_long);
    flow_metric(c, "user_comments", (double)U->comments);
    flow_metric(c, "user_blank", (double)U->blank);
    flow_metric(c, "user_terms_in_top_k", tl->in_top);
    flow_metric(c, "user_terms_in_candidates", tl->in_all);
    flow_metric(c, "top_k", top_k);
    flow_metric(c, "mined_added", tl->added);
    flow_metric(c, "terms", U->nuser + tl->added);
    flow_buf rep;
    buf_init(&rep);
    buf_printf(&rep, "terms: %d candidates; %d user terms (%lld duplicates, %lld too long dropped); "
               "%d of them in the top %d mined, %d among all candidates; %d mined terms added\n  top:",
               nm, U->nuser, U->dups, U->too_long, tl->in_top, top_k, tl->in_all, tl->added);
    for (int i = 0; i < nm && i < 20; i++) buf_printf(&rep, " %s", m[i].text);
    buf_addc(&rep, '\n');
    flow_report(c, rep.data);
    buf_release(&rep);
}

static int terms_run(flow_ctx *c)
{
    mine_opts mo;
    mine_opts_default(&mo);
    mo.min_len = (int)flow_param_int(c, "min_len");
    mo.max_len = (int)flow_param_int(c, "max_len");
    mo.min_freq = (int)flow_param_int(c, "min_freq");
    mo.min_pmi = flow_param_float(c, "min_pmi");
    mo.min_entropy = flow_param_float(c, "min_entropy");
    int top_k = (int)flow_param_int(c, "top_k");
    int max_chars = (int)flow_param_int(c, "max_chars");
    int ranked_max = (int)flow_param_int(c, "ranked_max");
    if (mo.min_len > mo.max_len)
        return flow_ctx_fail(c, FLOW_E_PARAM, "min_len %d > max_len %d", mo.min_len, mo.max_len);

    if (!flow_in_has(c, "corpus", 0, "text"))
        return flow_ctx_fail(c, FLOW_E_INPUT, "input 'corpus' has no part 'text': bind it to a corpus "
                             "such as split.train or a clean node");
    char *text;
    size_t len;
    int rc = corpus_check(c, "corpus", 0, "");
    if (rc) return rc;
    if ((rc = flow_in_read(c, "corpus", 0, "text", &text, &len)) != 0) return rc;

    user_terms U;
    memset(&U, 0, sizeof U);
    rc = read_user_terms(c, max_chars, &U);
    mined_term *m = NULL;
    int nm = 0;
    if (!rc) {
        flow_progress(c, -1, "mining terms from %zu bytes", len);
        flow_err e = {0, {0}};
        if ((rc = terms_mine(&mo, text, len, &m, &nm, &e)) != 0) rc = flow_ctx_fail(c, rc, "%s", e.msg);
    }
    if (!rc && nm == 0)
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "no term candidates in %zu bytes of text (min_freq %d, "
                           "min_pmi %g, min_entropy %g): is the corpus Chinese, and large enough?",
                           len, mo.min_freq, mo.min_pmi, mo.min_entropy);
    if (!rc) {
        terms_tally tl;
        rc = write_terms(c, &U, m, nm, top_k, ranked_max, &tl);
        terms_summary(c, &U, m, nm, top_k, &tl);
    }
    free(m);
    user_terms_release(&U);
    free(text);
    return rc;
}

static const flow_param_def terms_params[] = {
    {"top_k", FLOW_P_INT, 0, "200", 0, 1000000, NULL, "mined terms added after the user terms"},
    {"min_freq", FLOW_P_INT, 0, "5", 1, 1000000000, NULL, "minimum occurrences of a candidate"},
    {"min_len", FLOW_P_INT, 0, "2", 1, 8, NULL, "shortest candidate (Han characters)"},
    {"max_len", FLOW_P_INT, 0, "8", 1, 8, NULL, "longest candidate (Han characters)"},
    {"min_pmi", FLOW_P_FLOAT, 0, "1.0", 1, 0, NULL, "minimum cohesion: min over split points of ln p(w)/(p(a)p(b))"},
    {"min_entropy", FLOW_P_FLOAT, 0, "1.0", 1, 0, NULL, "minimum of left and right branching entropy (nats)"},
    {"max_chars", FLOW_P_INT, 0, "16", 1, 1000, NULL, "user terms longer than this are dropped and counted"},
    {"ranked_max", FLOW_P_INT, 0, "5000", 1, 100000000, NULL, "rows kept in ranked.tsv"},
};

static const flow_input_def terms_inputs[] = {
    {"corpus", 0, 0, "training corpus (e.g. split.train)"},
    {"user", 1, 1, "source node(s) holding term lists, one term per line, # comments"},
};

static const flow_output_def terms_outputs[] = {
    {"ranked.tsv", "term, score, freq, pmi, left/right entropy, best first"},
    {"terms", "forced terms for bpe: user terms, then the top_k mined"},
};

const flow_stage stage_terms = {
    .name = "terms",
    .version = 1,
    .help = "mine domain terms (frequency, PMI, branching entropy) and merge user term lists",
    .params = terms_params, .nparams = sizeof terms_params / sizeof *terms_params,
    .inputs = terms_inputs, .ninputs = 2,
    .outputs = terms_outputs, .noutputs = 2,
    .res = {.threads = 1, .gpus = 0, .cpu_fallback = 1},
    .run = terms_run,
};
