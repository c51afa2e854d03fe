/* tok_edit.c — editing a trained tokenizer without retraining it:
 * trimming the vocabulary to the tokens a domain uses (trim-vocab) and
 * adding forced terms (extend-vocab).  Both return the new tokenizer and
 * the id map new -> old, so the model's embedding rows can follow.
 *
 * Trimming keeps a set K closed under the merge tree: every special, every
 * byte token (the fallback path must stay complete), every token asked for,
 * and both inputs of the merge that makes any kept merged token (else that
 * token could never be formed).  A merge survives iff its result is in K.
 * Claim: a text whose encoding with the old tokenizer uses only kept ids
 * encodes to the same ids (mapped) with the trimmed one.  BPE applies, at
 * each step, the applicable merge of lowest rank; every merge that fired in
 * the old run made a token of some final token's merge tree, hence is kept;
 * a dropped merge never fired, so removing it from the candidates never
 * changes a step's minimum, and the final state has no applicable merge in
 * either run.  Forced terms and characters that are not kept are dropped
 * like any token: their text then falls back to the kept pieces, the byte
 * tokens or [UNK].
 *
 * Extension appends new forced terms after the old ones (ids shift up by
 * the number added); terms that already encode as one token are skipped
 * and counted, and a term whose text is a merged token that the merges do
 * not reach is refused with its name (it cannot be both a merge result and
 * a forced term). */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

/* Rebuilds a tokenizer from the old one's ids in new_to_old order (old ids
 * >= 0), with extra forced terms inserted after the kept forced ones.
 * Section sizes are counted from the map, which must list ids section by
 * section in the old order. */
typedef struct term_list { char **s; size_t *len; int n; } term_list;

static int rebuild(const tok_tokenizer *t, const int *new_to_old, int nnew,
                   const term_list *extra, tok_tokenizer **out, flow_err *err)
{
    int nextra = extra ? extra->n : 0, total = nnew + nextra;
    int old_forced_end = TOK_NSPECIAL + tok_nforced(t);
    int old_alpha_end = old_forced_end + tok_nalphabet(t);
    const char **tokens = xmalloc((size_t)total * sizeof *tokens);
    size_t *lens = xmalloc((size_t)total * sizeof *lens);
    int *old_to_new = xmalloc((size_t)tok_vocab_size(t) * sizeof *old_to_new);
    for (int i = 0; i < tok_vocab_size(t); i++) old_to_new[i] = -1;
    int nforced = 0, nalpha = 0, byte_base = -1, k = 0;
    for (int i = 0; i < nnew; i++) {
        int o = new_to_old[i];
        if (o >= old_forced_end && nextra) {       /* insert the new terms once */
            for (int e = 0; e < nextra; e++, k++) {
                tokens[k] = extra->s[e];
                lens[k] = extra->len[e];
            }
            nforced += nextra;
            nextra = 0;
        }
        if (o >= TOK_NSPECIAL && o < old_forced_end) nforced++;
        else if (o >= old_forced_end && o < old_alpha_end) nalpha++;
        else if (o == tok_byte_base(t)) byte_base = k;
        tokens[k] = tok_token(t, o, &lens[k]);
        old_to_new[o] = k++;
    }
    for (int e = 0; e < nextra; e++, k++) {       /* vocabulary of specials + forced only */
        tokens[k] = extra->s[e];
        lens[k] = extra->len[e];
        nforced++;
    }
    int nmerges = 0;
    uint32_t *merges = xmalloc((size_t)(tok_nmerges(t) + 1) * 3 * sizeof *merges);
    for (int i = 0; i < tok_nmerges(t); i++) {
        int a, b, r;
        tok_merge(t, i, &a, &b, &r);
        if (old_to_new[r] < 0) continue;
        if (old_to_new[a] < 0 || old_to_new[b] < 0)
            FLOW_BUG("kept merge %d has a dropped input", i);
        merges[3 * nmerges] = (uint32_t)old_to_new[a];
        merges[3 * nmerges + 1] = (uint32_t)old_to_new[b];
        merges[3 * nmerges + 2] = (uint32_t)old_to_new[r];
        nmerges++;
    }
    int rc = tok_build(out, k, tokens, lens, nforced, nalpha, byte_base,
                       tok_max_token_chars(t), nmerges, merges, err);
    free(tokens); free(lens); free(old_to_new); free(merges);
    return rc;
}

int tok_trim(const tok_tokenizer *t, const uint8_t *want, tok_tokenizer **out,
             int *new_to_old, int *nnew, flow_err *err)
{
    int n = tok_vocab_size(t), nm = tok_nmerges(t);
    uint8_t *keep = xcalloc((size_t)n, 1);
    for (int i = 0; i < n; i++) keep[i] = want[i] ? 1 : 0;
    for (int i = 0; i < TOK_NSPECIAL; i++) keep[i] = 1;
    if (tok_byte_base(t) >= 0)
        for (int b = 0; b < 256; b++) keep[tok_byte_base(t) + b] = 1;
    /* Close under the merge tree: a merge's inputs have lower ids than its
     * result, so one pass from the last merge down reaches every ancestor. */
    for (int i = nm - 1; i >= 0; i--) {
        int a, b, r;
        tok_merge(t, i, &a, &b, &r);
        if (keep[r]) keep[a] = keep[b] = 1;
    }
    int k = 0;
    for (int i = 0; i < n; i++)
        if (keep[i]) new_to_old[k++] = i;
    free(keep);
    *nnew = k;
    return rebuild(t, new_to_old, k, NULL, out, err);
}

int tok_extend(const tok_tokenizer *t, const tok_terms *terms, tok_tokenizer **out,
               int *new_to_old, int *nnew, int *skipped, flow_err *err)
{
    term_list fresh = { 0 };
    tok_out o;
    tok_out_init(&o);
    int rc = 0;
    *skipped = 0;
    for (int i = 0; i < terms->n && !rc; i++) {
        o.n = 0;
        tok_encode(t, terms->s[i], terms->len[i], &o);
        if (o.n == 1 && o.unk_chars == 0) { (*skipped)++; continue; }
        if (tok_token_id(t, terms->s[i], terms->len[i]) >= 0) {
            rc = flow_fail(err, FLOW_E_PARAM, "term '%.*s' is already a merged token that "
                           "the tokenizer's merges do not produce from its text; it cannot "
                           "also be a forced term (remove it from the list)",
                           (int)terms->len[i], terms->s[i]);
            break;
        }
        fresh.s = xrealloc(fresh.s, (size_t)(fresh.n + 1) * sizeof *fresh.s);
        fresh.len = xrealloc(fresh.len, (size_t)(fresh.n + 1) * sizeof *fresh.len);
        fresh.s[fresh.n] = xmalloc(terms->len[i] + 1);
        memcpy(fresh.s[fresh.n], terms->s[i], terms->len[i]);
        fresh.s[fresh.n][terms->len[i]] = 0;
        fresh.len[fresh.n++] = terms->len[i];
    }
    tok_out_release(&o);
    if (!rc) {
        int n = tok_vocab_size(t);
        int *old_ids = xmalloc((size_t)n * sizeof *old_ids);
        for (int i = 0; i < n; i++) old_ids[i] = i;
        rc = rebuild(t, old_ids, n, &fresh, out, err);
        if (!rc) {
            /* the map: old ids in order with -1 where the new terms went */
            int at = TOK_NSPECIAL + tok_nforced(t), k = 0;
            for (int i = 0; i < n + fresh.n; i++)
                new_to_old[i] = (i < at) ? i : (i < at + fresh.n ? -1 : at + k++);
            *nnew = n + fresh.n;
        }
        free(old_ids);
    }
    for (int i = 0; i < fresh.n; i++) free(fresh.s[i]);
    free(fresh.s); free(fresh.len);
    return rc;
}
