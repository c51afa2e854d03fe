/* split.c — the `split` stage: a labelled corpus -> train/dev/test corpora,
 * split BY GROUP (a law with all its versions, the Civil Code's books),
 * never by unit, stratified by label as far as the groups allow, seeded
 * and deterministic.  The assignment itself is split_assign
 * (split_assign.c, declared in text.h), a pure function the tests drive
 * directly.
 *
 * Output parts: train/text, train/units, train/labels, train/corpus.json,
 * dev/..., test/...
 * (so `split.train` is a corpus) and clean.json passed through at root. */
#include "stages/stages.h"
#include "text.h"

#include <stdlib.h>
#include <string.h>

/* ---- the stage ----------------------------------------------------- */

/* Majority label column of group g. */
static int major(const int *counts, int ncols, int g)
{
    int best = 0;
    for (int l = 1; l < ncols; l++)
        if (counts[g * ncols + l] > counts[g * ncols + best]) best = l;
    return best;
}

/* Appends s left-aligned in a column `width` terminal cells wide (Han and
 * full-width characters take two cells). */
static void add_padded(flow_buf *b, const char *s, int width)
{
    int cells = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        uint32_t cp;
        int k = utf8_decode(p, strlen((const char *)p), &cp);
        if (k < 0) k = 1, cp = '?';
        cells += (cp >= 0x1100 && (cp <= 0x115f || (cp >= 0x2e80 && cp <= 0xa4cf) ||
                                   (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) ||
                                   (cp >= 0xff00 && cp <= 0xff60))) ? 2 : 1;
        p += k;
    }
    buf_adds(b, s);
    for (; cells < width; cells++) buf_addc(b, ' ');
}

static const char *const split_names[3] = {"train", "dev", "test"};

typedef struct keyed {
    const char *key;
    int unit;
} keyed;

static int keyed_cmp(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : x->unit - y->unit;
}

static int split_run(flow_ctx *c)
{
    int nsplits = flow_param_list_len(c, "ratios");
    if (nsplits < 2 || nsplits > 3)
        return flow_ctx_fail(c, FLOW_E_PARAM, "ratios has %d values: give 2 (train, dev) or 3 (train, dev, test)",
                             nsplits);
    double ratios[3];
    for (int s = 0; s < nsplits; s++) {
        ratios[s] = flow_param_list_float(c, "ratios", s);
        if (!(ratios[s] > 0))
            return flow_ctx_fail(c, FLOW_E_PARAM, "ratios[%d] = %g: every ratio must be > 0", s, ratios[s]);
    }
    uint64_t seed = (uint64_t)flow_param_int(c, "seed");
    int by_doc = strcmp(flow_param_str(c, "by"), "doc") == 0;

    flow_corpus corp;
    int rc = corpus_read(c, "corpus", 0, "", &corp);
    if (rc) return rc;
    if (corp.nlabels == 0 || corp.n == 0) {
        /* the message reads corp.n: build it before corpus_release zeroes it */
        if (corp.n == 0)
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "the corpus has no units: nothing to split; see the clean "
                                                "node's report (was every document filtered out?)");
        else
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "the corpus has %d units but no labels: split stratifies by "
                                                "label; clean a source with labels = folders", corp.n);
        corpus_release(&corp);
        return rc;
    }
    /* groups: sorted by name, so ids do not depend on unit order */
    keyed *k = xmalloc((size_t)corp.n * sizeof *k);
    for (int i = 0; i < corp.n; i++) {
        const char *g = by_doc ? corp.doc[i] : corp.group[i];
        k[i] = (keyed){*g ? g : corp.doc[i], i};
    }
    qsort(k, (size_t)corp.n, sizeof *k, keyed_cmp);
    int *unit_group = xmalloc((size_t)corp.n * sizeof *unit_group);
    const char **gname = xmalloc((size_t)corp.n * sizeof *gname);
    int ngroups = 0;
    for (int i = 0; i < corp.n; i++) {
        if (i == 0 || strcmp(k[i].key, k[i - 1].key) != 0) gname[ngroups++] = k[i].key;
        unit_group[k[i].unit] = ngroups - 1;
    }
    int ncols = corp.nlabels + 1;   /* last column: unlabelled units */
    int *counts = xcalloc((size_t)ngroups * (size_t)ncols, sizeof *counts);
    for (int i = 0; i < corp.n; i++) {
        int l = corp.label_id[i] < 0 ? corp.nlabels : corp.label_id[i];
        counts[unit_group[i] * ncols + l]++;
    }
    int *assign = xmalloc((size_t)ngroups * sizeof *assign);
    flow_err err = {0, {0}};
    if ((rc = split_assign(ngroups, ncols, counts, nsplits, ratios, seed, assign, &err)) != 0) {
        rc = flow_ctx_fail(c, rc, "%s (by = %s)", err.msg, by_doc ? "doc" : "group");
        goto out;
    }
    /* write the splits */
    flow_buf lb;
    buf_init(&lb);
    for (int l = 0; l < corp.nlabels; l++) buf_printf(&lb, "%s\n", corp.labels[l]);
    int *su = xcalloc((size_t)nsplits * (size_t)ncols, sizeof *su);
    int *sg = xcalloc((size_t)nsplits * (size_t)ncols, sizeof *sg);
    for (int s = 0; s < nsplits && !rc; s++) {
        flow_buf text, units;
        buf_init(&text);
        buf_init(&units);
        for (int i = 0; i < corp.n; i++) {
            if (assign[unit_group[i]] != s) continue;
            buf_add(&text, corp.text + corp.unit_off[i], corp.unit_len[i]);
            buf_addc(&text, '\n');
            buf_printf(&units, "%s\t%s\t%s\n", corp.label[i], corp.group[i], corp.doc[i]);
            su[s * ncols + (corp.label_id[i] < 0 ? corp.nlabels : corp.label_id[i])]++;
        }
        char name[64];
        snprintf(name, sizeof name, "%s/text", split_names[s]);
        rc = flow_out_write(c, name, FLOW_PART_BYTES, text.data ? text.data : "", text.len);
        snprintf(name, sizeof name, "%s/units", split_names[s]);
        if (!rc) rc = flow_out_write(c, name, FLOW_PART_BYTES, units.data ? units.data : "", units.len);
        snprintf(name, sizeof name, "%s/labels", split_names[s]);
        if (!rc) rc = flow_out_write(c, name, FLOW_PART_BYTES, lb.data ? lb.data : "", lb.len);
        snprintf(name, sizeof name, "%s/", split_names[s]);
        if (!rc) rc = corpus_write_format(c, name);
        buf_release(&text);
        buf_release(&units);
    }
    for (int g = 0; g < ngroups; g++) sg[assign[g] * ncols + major(counts, ncols, g)]++;
    if (!rc && flow_in_has(c, "corpus", 0, "clean.json")) {
        char *js;
        size_t len;
        if ((rc = flow_in_read(c, "corpus", 0, "clean.json", &js, &len)) == 0) {
            rc = flow_out_write(c, "clean.json", FLOW_PART_BYTES, js, len);
            free(js);
        }
    }
    if (!rc) {
        flow_buf rep;
        buf_init(&rep);
        buf_printf(&rep, "split by %s: %d groups, %d units, seed %llu\n", by_doc ? "doc" : "group", ngroups,
                   corp.n, (unsigned long long)seed);
        buf_printf(&rep, "  %-24s", "label: units (groups)");
        for (int s = 0; s < nsplits; s++) buf_printf(&rep, " %16s", split_names[s]);
        buf_addc(&rep, '\n');
        for (int l = 0; l < ncols; l++) {
            const char *ln = l < corp.nlabels ? corp.labels[l] : "(unlabelled)";
            int any = 0;
            for (int s = 0; s < nsplits; s++) any |= su[s * ncols + l];
            if (!any) continue;
            buf_adds(&rep, "  ");
            add_padded(&rep, ln, 24);
            for (int s = 0; s < nsplits; s++) {
                char cell[40];
                snprintf(cell, sizeof cell, "%d (%d)", su[s * ncols + l], sg[s * ncols + l]);
                buf_printf(&rep, " %16s", cell);
                char m[256];
                snprintf(m, sizeof m, "%s.units.%s", split_names[s], ln);
                flow_metric(c, m, su[s * ncols + l]);
                snprintf(m, sizeof m, "%s.groups.%s", split_names[s], ln);
                flow_metric(c, m, sg[s * ncols + l]);
            }
            buf_addc(&rep, '\n');
        }
        buf_printf(&rep, "  %-24s", "total");
        for (int s = 0; s < nsplits; s++) {
            int u = 0, g = 0;
            for (int l = 0; l < ncols; l++) u += su[s * ncols + l], g += sg[s * ncols + l];
            char cell[40], m[64];
            snprintf(cell, sizeof cell, "%d (%d)", u, g);
            buf_printf(&rep, " %16s", cell);
            snprintf(m, sizeof m, "%s.units", split_names[s]);
            flow_metric(c, m, u);
            snprintf(m, sizeof m, "%s.groups", split_names[s]);
            flow_metric(c, m, g);
        }
        buf_addc(&rep, '\n');
        flow_metric(c, "groups", ngroups);
        flow_metric(c, "units", corp.n);
        flow_report(c, rep.data);
        buf_release(&rep);
    }
    free(su);
    free(sg);
    buf_release(&lb);
out:
    free(assign);
    free(counts);
    free(gname);
    free(unit_group);
    free(k);
    corpus_release(&corp);
    return rc;
}

static const flow_param_def split_params[] = {
    {"ratios", FLOW_P_LIST, FLOW_P_FLOAT, "[0.8, 0.1, 0.1]", 0, 1, NULL,
     "train, dev[, test] shares of the units (normalised to sum 1)"},
    {"seed", FLOW_P_INT, 0, "1", 0, 9007199254740991.0, NULL, "seed of the group order"},
    {"by", FLOW_P_STRING, 0, "group", 1, 0, "group|doc",
     "unit of splitting: the group column (a law and its versions; documents without one are "
     "their own group) or the document"},
};

static const flow_input_def split_inputs[] = {
    {"corpus", 0, 0, "a labelled corpus (a clean node)"},
};

static const flow_output_def split_outputs[] = {
    {"train", "corpus: train/text, train/units, train/labels, train/corpus.json"},
    {"dev", "corpus: dev/text, dev/units, dev/labels, dev/corpus.json"},
    {"test", "corpus: test/text, test/units, test/labels, test/corpus.json (when 3 ratios)"},
    {"clean.json", "the cleaning settings, passed through"},
};

const flow_stage stage_split = {
    .name = "split",
    .version = 3,   /* 2: best of 32 seeded passes; 3: corpus.json per split */
    .help = "train/dev/test split by group, stratified by label, seeded",
    .params = split_params, .nparams = sizeof split_params / sizeof *split_params,
    .inputs = split_inputs, .ninputs = 1,
    .outputs = split_outputs, .noutputs = 4,
    .res = {.threads = 1, .gpus = 0, .cpu_fallback = 1},
    .run = split_run,
};
