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

    /* user term lists, merged in binding and part order */
    int nuser_in = flow_in_count(c, "user");
    term_list *lists = xcalloc((size_t)nuser_in + 1, sizeof *lists);
    int nlists = 0;
    long long dups = 0, too_long = 0, comments = 0, blank = 0;
    char **user = NULL;
    int nuser = 0, ucap = 0;
    for (int b = 0; b < nuser_in && !rc; b++) {
        int np = flow_in_nparts(c, "user", b);
        lists = xrealloc(lists, (size_t)(nlists + np + 1) * sizeof *lists);
        for (int k = 0; k < np && !rc; k++) {
            const char *part = flow_in_part_name(c, "user", b, k);
            if (part[0] == '.') continue;    /* .index of a labelled source */
            char *data;
            size_t dl;
            if ((rc = flow_in_read(c, "user", b, part, &data, &dl)) != 0) break;
            flow_err e = {0, {0}};
            term_list *t = &lists[nlists];
            if ((rc = term_list_parse(t, data, dl, max_chars, &e)) != 0) {
                rc = flow_ctx_fail(c, rc, "term list '%s': %s", part, e.msg);
                break;
            }
            nlists++;
            dups += t->duplicates, too_long += t->too_long, comments += t->comments, blank += t->blank;
            if (t->too_long)
                flow_log(c, "term list '%s': %d terms longer than max_chars = %d dropped (first: %s)", part,
                         t->too_long, max_chars, t->first_too_long);
            for (int i = 0; i < t->n; i++) {
                int seen = 0;   /* duplicates across lists */
                for (int j = 0; j < nuser && !seen; j++) seen = strcmp(user[j], t->term[i]) == 0;
                if (seen) { dups++; continue; }
                if (nuser == ucap) {
                    ucap = ucap ? 2 * ucap : 128;
                    user = xrealloc(user, (size_t)ucap * sizeof *user);
                }
                user[nuser++] = t->term[i];
            }
        }
    }
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
        flow_buf rk, out;
        buf_init(&rk);
        buf_init(&out);
        buf_adds(&rk, "term\tscore\tfreq\tpmi\tleft_entropy\tright_entropy\n");
        for (int i = 0; i < nm && i < ranked_max; i++)
            buf_printf(&rk, "%s\t%.4f\t%lld\t%.4f\t%.4f\t%.4f\n", m[i].text, m[i].score, (long long)m[i].freq,
                       m[i].pmi, m[i].left_entropy, m[i].right_entropy);
        int in_top = 0, in_all = 0, added = 0;
        for (int j = 0; j < nuser; j++) {
            buf_printf(&out, "%s\n", user[j]);
            for (int i = 0; i < nm; i++)
                if (strcmp(m[i].text, user[j]) == 0) {
                    in_all++;
                    in_top += i < top_k;
                    break;
                }
        }
        for (int i = 0; i < nm && added < top_k; i++) {
            int dup = 0;
            for (int j = 0; j < nuser && !dup; j++) dup = strcmp(user[j], m[i].text) == 0;
            if (dup) continue;
            buf_printf(&out, "%s\n", m[i].text);
            added++;
        }
        rc = flow_out_write(c, "ranked.tsv", FLOW_PART_BYTES, rk.data, rk.len);
        if (!rc) rc = flow_out_write(c, "terms", FLOW_PART_BYTES, out.data ? out.data : "", out.len);
        flow_metric(c, "candidates", nm);
        flow_metric(c, "user_terms", nuser);
        flow_metric(c, "user_duplicates", (double)dups);
        flow_metric(c, "user_too_long", (double)too_long);
        flow_metric(c, "user_comments", (double)comments);
        flow_metric(c, "user_blank", (double)blank);
        flow_metric(c, "user_terms_in_top_k", in_top);
        flow_metric(c, "user_terms_in_candidates", in_all);
        flow_metric(c, "top_k", top_k);
        flow_metric(c, "mined_added", added);
        flow_metric(c, "terms", nuser + added);
        flow_buf rep;
        buf_init(&rep);
        buf_printf(&rep, "terms: %d candidates; %d user terms (%lld duplicates, %lld too long dropped); "
                   "%d of them in the top %d mined, %d among all candidates; %d mined terms added\n  top:",
                   nm, nuser, dups, too_long, in_top, top_k, in_all, added);
        for (int i = 0; i < nm && i < 20; i++) buf_printf(&rep, " %s", m[i].text);
        buf_addc(&rep, '\n');
        flow_report(c, rep.data);
        buf_release(&rep);
        buf_release(&rk);
        buf_release(&out);
    }
    free(m);
    free(user);
    for (int i = 0; i < nlists; i++) term_list_release(&lists[i]);
    free(lists);
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
