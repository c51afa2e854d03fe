/* coverage.c — the `coverage` stage: how well a tokenizer fits held-out
 * text, against a plain character-level vocabulary of the same size.
 *
 * Figures, over every unit of the `corpus` input (part `text`; bind it to
 * split.test):
 *  - character coverage: share of characters not mapped to [UNK] (with
 *    byte_fallback nothing is: 100%; the share outside the alphabet is
 *    reported as well);
 *  - forced-term integrity: every occurrence of a forced term, found by an
 *    independent all-matches scan, must be exactly one token with the
 *    term's id.  Occurrences overlapping another forced term chosen by the
 *    leftmost-longest rule (e.g. 民法 inside 民法典) are "shadowed" and left
 *    out.  Anything below 100% fails the node: it is a tokenizer bug;
 *  - mined-term integrity (optional `terms` input, first TSV column): share
 *    of occurrences encoded as exactly one token;
 *  - characters per token and vocabulary utilisation (distinct ids used /
 *    vocabulary size).
 * Baseline: [PAD]..[MASK] + the vocab_size - 5 most frequent training
 * characters (bpe's chars.tsv), one token per character.
 */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

static const flow_param_def coverage_params[] = {
    {"min_coverage", FLOW_P_FLOAT, 0, "0.95", 0, 1, NULL,
     "fail when the character coverage is lower"},
};

static const flow_input_def coverage_inputs[] = {
    {"corpus", 0, 0, "held-out corpus (part `text`), e.g. split.test"},
    {"tokenizer", 0, 0, "a bpe node"},
    {"terms", 1, 0, "mined term list: a terms node (its ranked.tsv), else part `terms` or "
     "every part; first TSV column"},
};

static const flow_output_def coverage_outputs[] = {
    {"report.txt", "the coverage table"},
};

typedef struct cov {
    uint64_t units, chars, unk_chars, outside_chars, tokens;
    uint64_t forced_occ, forced_intact, forced_shadowed, forced_broken;
    uint64_t forced_single_char;    /* baseline: 1-character forced occurrences */
    uint64_t mined_occ, mined_intact, mined_single_char;
    uint64_t base_chars_in;         /* baseline coverage */
    uint8_t *used;                  /* per id */
    uint8_t *base_used;             /* per baseline char rank, + [UNK] */
} cov;

/* Character -> rank in the baseline vocabulary (open addressing). */
typedef struct cmap { uint32_t *key; uint32_t *val; size_t cap; } cmap;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33;
    return x;
}

static int64_t cmap_get(const cmap *m, uint32_t cp)
{
    if (!m->cap)
        return -1;
    for (size_t i = mix(cp) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->key[i] == cp + 1)
            return m->val[i];
        if (!m->key[i])
            return -1;
    }
}

static int read_baseline(flow_ctx *c, int vocab, cmap *m, int *nbase)
{
    *nbase = 0;
    if (!flow_in_has(c, "tokenizer", 0, "chars.tsv"))
        return flow_ctx_fail(c, FLOW_E_INPUT, "tokenizer input has no chars.tsv; bind a bpe node");
    char *d;
    size_t len;
    int rc = flow_in_read(c, "tokenizer", 0, "chars.tsv", &d, &len);
    if (rc)
        return flow_ctx_fail(c, rc, "cannot read chars.tsv of the tokenizer input");
    int want = vocab - TOK_NSPECIAL;
    m->cap = 16;
    while (m->cap < (size_t)want * 2 + 2)
        m->cap *= 2;
    m->key = xcalloc(m->cap, sizeof *m->key);
    m->val = xmalloc(m->cap * sizeof *m->val);
    for (char *p = d; *p && *nbase < want;) {
        char *nl = strchr(p, '\n');
        uint32_t cp = (uint32_t)strtoul(p, NULL, 16);
        size_t i = mix(cp) & (m->cap - 1);
        while (m->key[i])
            i = (i + 1) & (m->cap - 1);
        m->key[i] = cp + 1;
        m->val[i] = (uint32_t)(*nbase)++;
        if (!nl)
            break;
        p = nl + 1;
    }
    free(d);
    return 0;
}

static int read_mined(flow_ctx *c, tok_matcher *m, int *n)
{
    *n = 0;
    if (!flow_in_count(c, "terms"))
        return 0;
    /* a terms node: its ranked.tsv (all mined candidates); else part
     * `terms`; else every part */
    const char *only = flow_in_has(c, "terms", 0, "ranked.tsv") ? "ranked.tsv"
                     : flow_in_has(c, "terms", 0, "terms") ? "terms" : NULL;
    int np = flow_in_nparts(c, "terms", 0);
    for (int p = 0; p < np; p++) {
        const char *part = flow_in_part_name(c, "terms", 0, p);
        if ((only && strcmp(part, only)) || part[0] == '.')
            continue;
        char *d;
        size_t len;
        int rc = flow_in_read(c, "terms", 0, part, &d, &len);
        if (rc)
            return flow_ctx_fail(c, rc, "cannot read part %s of the terms input", part);
        size_t i = len >= 3 && !memcmp(d, "\xEF\xBB\xBF", 3) ? 3 : 0;
        while (i < len) {
            char *nl = memchr(d + i, '\n', len - i);
            size_t e = nl ? (size_t)(nl - d) : len, f = i;
            while (f < e && d[f] != '\t' && d[f] != '\r')
                f++;
            int header = i == 0 && f - i == 4 && !memcmp(d, "term", 4);  /* ranked.tsv */
            if (f > i && !header && d[i] != '#' && utf8_first_invalid((unsigned char *)d + i, f - i) < 0 &&
                tok_matcher_add(m, d + i, f - i, *n) == 0)
                (*n)++;
            i = e + 1;
        }
        free(d);
    }
    return 0;
}

static int chars_in(const char *s, size_t n)
{
    int k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* One unit: encode with token starts, then scan every position for forced
 * and mined term occurrences. */
static void cover_unit(const tok_tokenizer *t, const tok_matcher *forced, const tok_matcher *mined,
                       const cmap *base, int nbase, const char *s, size_t n, tok_out *o,
                       int32_t **tok_at, uint8_t **in_forced, size_t *cap, cov *r)
{
    if (n + 1 > *cap) {
        *cap = (n + 1) * 2;
        *tok_at = xrealloc(*tok_at, *cap * sizeof **tok_at);
        *in_forced = xrealloc(*in_forced, *cap);
    }
    uint64_t unk0 = o->unk_chars;
    o->n = 0;
    tok_encode(t, s, n, o);
    r->units++;
    r->tokens += o->n;
    r->outside_chars += o->unk_chars - unk0;
    int nforced_end = TOK_NSPECIAL + tok_nforced(t);
    for (size_t i = 0; i < n; i++) {
        (*tok_at)[i] = -1;
        (*in_forced)[i] = 0;
    }
    for (size_t k = 0; k < o->n; k++) {
        uint32_t id = o->ids[k];
        r->used[id] = 1;
        r->unk_chars += id == TOK_UNK;
        if ((*tok_at)[o->starts[k]] < 0)
            (*tok_at)[o->starts[k]] = (int32_t)k;
        if (id >= TOK_NSPECIAL && id < (uint32_t)nforced_end) {
            size_t len;
            tok_token(t, (int)id, &len);
            memset(*in_forced + o->starts[k], 1, len);
        }
    }
    int vals[64];
    size_t lens[64];
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int cl = tok_next_char(s + i, n - i, &cp);
        r->chars++;
        int64_t rank = cp == 0xFFFFFFFFu ? -1 : cmap_get(base, cp);
        if (rank >= 0) {
            r->base_chars_in++;
            r->base_used[rank] = 1;
        } else
            r->base_used[nbase] = 1;
        int nf = tok_matcher_prefixes(forced, s + i, n - i, vals, lens, 64);
        for (int j = 0; j < nf && j < 64; j++) {
            if (vals[j] < TOK_NSPECIAL)
                continue;
            r->forced_occ++;
            int32_t k = (*tok_at)[i];
            size_t tl = 0;
            if (k >= 0)
                tok_token(t, (int)o->ids[k], &tl);
            if (k >= 0 && o->ids[k] == (uint32_t)vals[j] && tl == lens[j]) {
                r->forced_intact++;
                r->forced_single_char += chars_in(s + i, lens[j]) == 1;
                continue;
            }
            /* shadowed: overlaps a forced token other than this term */
            int shadow = 0;
            for (size_t b = i; b < i + lens[j] && !shadow; b++)
                shadow = (*in_forced)[b];
            if (shadow) {
                r->forced_occ--;
                r->forced_shadowed++;
            } else
                r->forced_broken++;
        }
        if (mined) {
            int nm = tok_matcher_prefixes(mined, s + i, n - i, vals, lens, 64);
            for (int j = 0; j < nm && j < 64; j++) {
                r->mined_occ++;
                int32_t k = (*tok_at)[i];
                size_t tl = 0;
                if (k >= 0 && o->ids[k] != TOK_UNK)
                    tok_token(t, (int)o->ids[k], &tl);
                /* one token spanning exactly the occurrence */
                int one = k >= 0 && ((size_t)k + 1 == o->n ? n : o->starts[k + 1]) == i + lens[j] &&
                          (o->ids[k] == TOK_UNK || tl == lens[j]);
                r->mined_intact += one;
                r->mined_single_char += chars_in(s + i, lens[j]) == 1;
            }
        }
        i += (size_t)cl;
    }
}

static double pct(uint64_t a, uint64_t b) { return b ? 100.0 * (double)a / (double)b : 100.0; }

/* Walks the corpus text unit by unit (one per line) through cover_unit;
 * the forced matcher is filled from the tokenizer's forced terms. */
static void cover_text(flow_ctx *c, const tok_tokenizer *t, tok_matcher *forced,
                       const tok_matcher *mined, const cmap *base, int nbase,
                       const char *text, size_t len, cov *r)
{
    for (int i = TOK_NSPECIAL; i < TOK_NSPECIAL + tok_nforced(t); i++) {
        size_t n;
        const char *s = tok_token(t, i, &n);
        tok_matcher_add(forced, s, n, i);
    }
    tok_out o;
    tok_out_init(&o);
    o.want_starts = 1;
    int32_t *tok_at = NULL;
    uint8_t *in_forced = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - text) : len;
        cover_unit(t, forced, mined, base, nbase, text + i, e - i, &o,
                   &tok_at, &in_forced, &cap, r);
        i = e + 1;
        if ((r->units & 1023) == 0)
            flow_progress(c, (double)i / (double)len, "%llu units", (unsigned long long)r->units);
    }
    free(tok_at);
    free(in_forced);
    tok_out_release(&o);
}

/* What the counts come to, for the bpe tokenizer and the character
 * baseline of the same vocabulary size. */
typedef struct cov_summary {
    double coverage, base_cov;
    uint64_t used, base_used;   /* vocabulary entries used */
} cov_summary;

static cov_summary summarize(const tok_tokenizer *t, const cov *r, int V, int nbase)
{
    cov_summary m;
    m.coverage = tok_byte_fallback(t) ? 1.0 : 1.0 - (double)r->unk_chars / (double)(r->chars ? r->chars : 1);
    m.base_cov = (double)r->base_chars_in / (double)(r->chars ? r->chars : 1);
    m.used = m.base_used = 0;
    for (int i = 0; i < V; i++)
        m.used += r->used[i];
    for (int i = 0; i <= nbase; i++)
        m.base_used += r->base_used[i];
    return m;
}

/* report.txt: one row per figure, bpe beside the character baseline. */
static void coverage_report(const tok_tokenizer *t, const cov *r, const cov_summary *m, int V,
                            int nmined, flow_buf *b)
{
    buf_printf(b, "tokenizer coverage on %llu units, %llu characters (vocabulary %d, %d forced terms%s)\n",
               (unsigned long long)r->units, (unsigned long long)r->chars, V, tok_nforced(t),
               tok_byte_fallback(t) ? ", byte fallback" : "");
    buf_printf(b, "  %-44s %12s %14s\n", "", "bpe", "char baseline");
    buf_printf(b, "  %-44s %11.3f%% %13.3f%%\n", "character coverage", 100 * m->coverage, 100 * m->base_cov);
    buf_printf(b, "  %-44s %11.3f%% %13s\n", "characters outside the alphabet",
               pct(r->outside_chars, r->chars), "");
    buf_printf(b, "  %-44s %12.3f %14.3f\n", "characters per token",
               r->tokens ? (double)r->chars / (double)r->tokens : 0.0, 1.0);
    char label[96];
    snprintf(label, sizeof label, "forced-term integrity (%llu occurrences)",
             (unsigned long long)r->forced_occ);
    buf_printf(b, "  %-44s %11.2f%% %13.2f%%\n", label, pct(r->forced_intact, r->forced_occ),
               pct(r->forced_single_char, r->forced_occ));
    if (r->forced_shadowed)
        buf_printf(b, "  %-44s %12llu\n", "  shadowed by a longer/earlier forced term",
                   (unsigned long long)r->forced_shadowed);
    if (nmined) {
        snprintf(label, sizeof label, "mined-term integrity (%d terms, %llu occ.)", nmined,
                 (unsigned long long)r->mined_occ);
        buf_printf(b, "  %-44s %11.2f%% %13.2f%%\n", label, pct(r->mined_intact, r->mined_occ),
                   pct(r->mined_single_char, r->mined_occ));
    }
    buf_printf(b, "  %-44s %11.2f%% %13.2f%%\n", "vocabulary utilisation",
               pct(m->used, (uint64_t)V), pct(m->base_used, (uint64_t)V));
}

static void coverage_metrics(flow_ctx *c, const cov *r, const cov_summary *m, int V, int nmined)
{
    flow_metric(c, "units", (double)r->units);
    flow_metric(c, "chars", (double)r->chars);
    flow_metric(c, "coverage", m->coverage);
    flow_metric(c, "outside_alphabet", (double)r->outside_chars / (double)(r->chars ? r->chars : 1));
    flow_metric(c, "chars_per_token", r->tokens ? (double)r->chars / (double)r->tokens : 0.0);
    flow_metric(c, "forced.occurrences", (double)r->forced_occ);
    flow_metric(c, "forced.shadowed", (double)r->forced_shadowed);
    flow_metric(c, "forced.integrity", pct(r->forced_intact, r->forced_occ) / 100);
    if (nmined) {
        flow_metric(c, "mined.terms", nmined);
        flow_metric(c, "mined.occurrences", (double)r->mined_occ);
        flow_metric(c, "mined.integrity", pct(r->mined_intact, r->mined_occ) / 100);
        flow_metric(c, "baseline.mined_integrity", pct(r->mined_single_char, r->mined_occ) / 100);
    }
    flow_metric(c, "utilisation", (double)m->used / V);
    flow_metric(c, "baseline.coverage", m->base_cov);
    flow_metric(c, "baseline.chars_per_token", 1.0);
    flow_metric(c, "baseline.forced_integrity", pct(r->forced_single_char, r->forced_occ) / 100);
    flow_metric(c, "baseline.utilisation", (double)m->base_used / V);
}

static int coverage_run(flow_ctx *c)
{
    tok_tokenizer *t;
    int rc = tok_load_input(c, "tokenizer", 0, &t);
    if (rc)
        return rc;
    double min_cov = flow_param_float(c, "min_coverage");
    int V = tok_vocab_size(t);
    cmap base = {0};
    int nbase = 0, nmined = 0;
    tok_matcher *forced = tok_matcher_new(), *mined = tok_matcher_new();
    char *text = NULL;
    size_t len = 0;
    cov r;
    memset(&r, 0, sizeof r);
    r.used = xcalloc((size_t)V, 1);
    rc = read_baseline(c, V, &base, &nbase);
    r.base_used = xcalloc((size_t)nbase + 1, 1);
    if (!rc)
        rc = read_mined(c, mined, &nmined);
    if (!rc && !flow_in_has(c, "corpus", 0, "text"))
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'corpus' has no part `text`; bind one "
                           "corpus such as split.test");
    if (!rc)
        rc = corpus_check(c, "corpus", 0, "");
    if (!rc && (rc = flow_in_read(c, "corpus", 0, "text", &text, &len)))
        rc = flow_ctx_fail(c, rc, "cannot read the corpus text");
    if (!rc)
        cover_text(c, t, forced, nmined ? mined : NULL, &base, nbase, text, len, &r);
    if (!rc) {
        cov_summary m = summarize(t, &r, V, nbase);
        flow_buf b;
        buf_init(&b);
        coverage_report(t, &r, &m, V, nmined, &b);
        flow_report(c, b.data);
        rc = flow_out_write(c, "report.txt", FLOW_PART_BYTES, b.data, b.len);
        buf_release(&b);
        if (rc)
            rc = flow_ctx_fail(c, rc, "cannot write report.txt");
        coverage_metrics(c, &r, &m, V, nmined);
        if (!rc && r.forced_broken)
            rc = flow_ctx_fail(c, FLOW_E_STAGE, "%llu of %llu forced-term occurrences are not "
                               "encoded as their single id: tokenizer bug, please report",
                               (unsigned long long)r.forced_broken,
                               (unsigned long long)(r.forced_occ));
        if (!rc && m.coverage < min_cov)
            rc = flow_ctx_fail(c, FLOW_E_STAGE, "character coverage %.4f is below min_coverage "
                               "%.4f: %llu of %llu test characters map to [UNK]; raise the bpe "
                               "node's character_coverage or vocab_size, or set byte_fallback",
                               m.coverage, min_cov, (unsigned long long)r.unk_chars,
                               (unsigned long long)r.chars);
    }
    free(text);
    free(r.used);
    free(r.base_used);
    free(base.key);
    free(base.val);
    tok_matcher_free(forced);
    tok_matcher_free(mined);
    tok_free(t);
    return rc;
}

const flow_stage stage_coverage = {
    .name = "coverage",
    .version = 2,   /* 2: reads a terms node's ranked.tsv, skips dot-parts (0d74546) */
    .help = "tokenizer coverage, term integrity and utilisation on held-out text, vs a "
            "character vocabulary of the same size",
    .params = coverage_params, .nparams = sizeof coverage_params / sizeof *coverage_params,
    .inputs = coverage_inputs, .ninputs = sizeof coverage_inputs / sizeof *coverage_inputs,
    .outputs = coverage_outputs, .noutputs = sizeof coverage_outputs / sizeof *coverage_outputs,
    .res = {.threads = 1},
    .run = coverage_run,
};
