/* split.c — the `split` stage: a labelled corpus -> train/dev/test corpora,
 * split BY GROUP (a law with all its versions, the Civil Code's books),
 * never by unit, stratified by label as far as the groups allow, seeded
 * and deterministic.  The assignment itself is split_assign
 * (split_assign.c, declared in text.h), a pure function the tests drive
 * directly.
 *
 * Streamed, with memory bounded by the number of groups, not by bytes or
 * units: pass 1 reads the units part line by line and counts each group's
 * labels (the group table below); the groups, renumbered in name order,
 * are assigned; pass 2 reads text and units side by side and appends each
 * unit to its split's parts through the store's streaming writer, so every
 * part is byte for byte what reading the corpus whole gave (version 3).
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

/* ---- groups: name -> id, by open addressing ----------------------------
 * The one thing split keeps per group (not per unit, not per byte): the
 * name, its label counts and later its split.  Ids are given in order of
 * first appearance; split_run renumbers them in name order. */
typedef struct group_table {
    uint32_t *slot;     /* id + 1, 0 = empty; cap slots, a power of 2 */
    size_t cap;
    flow_buf pool;      /* the names, NUL-terminated */
    size_t *off;        /* name of id i: pool.data + off[i] */
    int *counts;        /* id i, label column l: counts[i * ncols + l] */
    int n, capn, ncols;
} group_table;

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ^ (h >> 29);
}

static const char *group_name(const group_table *t, int id) { return t->pool.data + t->off[id]; }

/* Slot of name: its id's slot, or the empty slot where it goes. */
static size_t group_slot(const group_table *t, const char *name)
{
    size_t i = name_hash(name) & (t->cap - 1);
    while (t->slot[i] && strcmp(group_name(t, (int)t->slot[i] - 1), name) != 0) i = (i + 1) & (t->cap - 1);
    return i;
}

static void group_grow(group_table *t)
{
    uint32_t *old = t->slot;
    size_t oldcap = t->cap;
    t->cap = oldcap ? 2 * oldcap : 1024;
    t->slot = xcalloc(t->cap, sizeof *t->slot);
    for (size_t i = 0; i < oldcap; i++)
        if (old[i]) t->slot[group_slot(t, group_name(t, (int)old[i] - 1))] = old[i];
    free(old);
}

/* The id of name, or -1 if absent (add = 0). */
static int group_id(group_table *t, const char *name, int add)
{
    if (add && (size_t)(t->n + 1) * 2 > t->cap) group_grow(t);
    if (!t->cap) return -1;
    size_t i = group_slot(t, name);
    if (t->slot[i]) return (int)t->slot[i] - 1;
    if (!add) return -1;
    if (t->n == t->capn) {
        t->capn = t->capn ? 2 * t->capn : 1024;
        t->off = xrealloc(t->off, (size_t)t->capn * sizeof *t->off);
        t->counts = xrealloc(t->counts, (size_t)t->capn * (size_t)t->ncols * sizeof *t->counts);
    }
    t->off[t->n] = t->pool.len;
    buf_add(&t->pool, name, strlen(name) + 1);
    memset(t->counts + (size_t)t->n * (size_t)t->ncols, 0, (size_t)t->ncols * sizeof *t->counts);
    t->slot[i] = (uint32_t)++t->n;
    return t->n - 1;
}

static void group_table_release(group_table *t)
{
    free(t->slot);
    buf_release(&t->pool);
    free(t->off);
    free(t->counts);
    memset(t, 0, sizeof *t);
}

/* The group a unit belongs to: its group column, or its document when it
 * has none (or when splitting by document). */
static const char *unit_key(int by_doc, const char *group, const char *doc)
{
    return by_doc || !*group ? doc : group;
}

/* The corpus split reads: its labels (lab.labels, lab.nlabels; units are
 * streamed, never held). */
static int read_labels(flow_ctx *c, flow_corpus *lab)
{
    memset(lab, 0, sizeof *lab);
    int rc = corpus_check(c, "corpus", 0, "");
    if (rc) return rc;
    const char *need[2] = {"text", "units"};
    for (int k = 0; k < 2; k++)
        if (!flow_in_has(c, "corpus", 0, need[k]))
            return flow_ctx_fail(c, FLOW_E_INPUT, "input 'corpus' has no part '%s': bind it to a corpus "
                                 "(a clean node, or a split output such as split.train)", need[k]);
    char *labels = NULL;
    size_t len = 0;
    if (flow_in_has(c, "corpus", 0, "labels") && (rc = flow_in_read(c, "corpus", 0, "labels", &labels, &len)))
        return rc;
    flow_err err = {0, {0}};
    /* corpus_parse with no units: only the labels part is parsed */
    rc = corpus_parse(lab, xstrdup(""), 0, xstrdup(""), 0, labels, len, &err);
    return rc ? flow_ctx_fail(c, rc, "input 'corpus': %s", err.msg) : 0;
}

/* Pass 1 over the units part: every unit's group and label counted into
 * t; *n = the number of units. */
static int count_groups(flow_ctx *c, const flow_corpus *lab, int by_doc, group_table *t, size_t *n)
{
    line_stream ls;
    int rc = line_stream_open(c, "corpus", 0, "units", &ls), got = 0;
    char *line;
    *n = 0;
    while (!rc && !(rc = line_stream_line(&ls, &line, &got)) && got) {
        const char *label, *group, *doc;
        int lid;
        flow_err err = {0, {0}};
        if (corpus_unit_parse(lab, line, *n + 1, &label, &group, &doc, &lid, &err)) {
            rc = flow_ctx_fail(c, FLOW_E_CORRUPT, "input 'corpus': %s", err.msg);
            break;
        }
        int g = group_id(t, unit_key(by_doc, group, doc), 1);
        t->counts[(size_t)g * (size_t)t->ncols + (size_t)(lid < 0 ? lab->nlabels : lid)]++;
        if (++*n > 0x7fffffff)
            rc = flow_ctx_fail(c, FLOW_E_CORRUPT, "input 'corpus': corpus has more than %d units, more "
                               "than this reader supports", 0x7fffffff);
    }
    line_stream_close(&ls);
    return rc;
}

typedef struct named {
    const char *name;
    int id;
} named;

static int named_cmp(const void *a, const void *b)
{
    return strcmp(((const named *)a)->name, ((const named *)b)->name);   /* names are distinct */
}

/* Pass 2: text and units side by side, each unit appended to the text
 * and units parts of its group's split (so each part holds its units in
 * corpus order, exactly as if the corpus were read whole); su counts
 * units per split and label column. */
static int write_splits(flow_ctx *c, const flow_corpus *lab, int by_doc, group_table *t, const int *split_of,
                        int nsplits, size_t n, int *su)
{
    flow_out_stream *out[6] = {0};
    line_stream tx, un;
    int rc = line_stream_open(c, "corpus", 0, "text", &tx);
    if (!rc) rc = line_stream_open(c, "corpus", 0, "units", &un);
    for (int k = 0; k < 2 * nsplits && !rc; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s/%s", split_names[k / 2], k % 2 ? "units" : "text");
        rc = flow_out_open(c, name, FLOW_PART_BYTES, &out[k]);
    }
    size_t i = 0;
    for (; i < n && !rc; i++) {
        char *text, *units;
        int got = 0;
        if ((rc = line_stream_line(&tx, &text, &got)) || !got) break;
        size_t tlen = tx.line_len;
        if (memchr(text, '\r', tlen)) {
            rc = flow_ctx_fail(c, FLOW_E_CORRUPT, "input 'corpus': corpus part text line %zu contains a "
                               "carriage return", i + 1);
            break;
        }
        if (!tx.newline) {
            rc = flow_ctx_fail(c, FLOW_E_CORRUPT, "input 'corpus': corpus part text does not end with a newline");
            break;
        }
        if ((rc = line_stream_line(&un, &units, &got)) || !got) break;   /* pass 1 counted n lines */
        size_t ulen = un.line_len;
        const char *label, *group, *doc;
        int lid;
        flow_err err = {0, {0}};
        if (corpus_unit_parse(lab, units, i + 1, &label, &group, &doc, &lid, &err)) {
            rc = flow_ctx_fail(c, FLOW_E_CORRUPT, "input 'corpus': %s", err.msg);
            break;
        }
        int s = split_of[group_id(t, unit_key(by_doc, group, doc), 0)];
        for (size_t k = 0; k < ulen; k++)      /* the two tabs the parse cut */
            if (!units[k]) units[k] = '\t';
        units[ulen] = '\n';
        text[tlen] = '\n';
        rc = flow_out_stream_write(out[2 * s], text, tlen + 1);
        if (!rc) rc = flow_out_stream_write(out[2 * s + 1], units, ulen + 1);
        su[s * (lab->nlabels + 1) + (lid < 0 ? lab->nlabels : lid)]++;
    }
    if (!rc) {      /* the text part must end with the units: count what it has left */
        size_t nt = i;
        char *line;
        int got = 0;
        while (!(rc = line_stream_line(&tx, &line, &got)) && got) nt++;
        if (!rc && nt != n)
            rc = flow_ctx_fail(c, FLOW_E_CORRUPT, "input 'corpus': corpus parts disagree: text has %zu lines, "
                               "units has %zu", nt, n);
    }
    for (int k = 0; k < 2 * nsplits; k++)
        if (out[k]) {
            int rc2 = flow_out_stream_close(out[k]);
            if (!rc) rc = rc2;
        }
    line_stream_close(&tx);
    line_stream_close(&un);
    return rc;
}
/* Reads the ratios; fails naming a bad one. */
static int read_ratios(flow_ctx *c, double *ratios, int *nsplits)
{
    *nsplits = flow_param_list_len(c, "ratios");
    if (*nsplits < 2 || *nsplits > 3)
        return flow_ctx_fail(c, FLOW_E_PARAM, "ratios has %d values: give 2 (train, dev) or 3 (train, dev, test)",
                             *nsplits);
    for (int s = 0; s < *nsplits; s++) {
        ratios[s] = flow_param_list_float(c, "ratios", s);
        if (!(ratios[s] > 0))
            return flow_ctx_fail(c, FLOW_E_PARAM, "ratios[%d] = %g: every ratio must be > 0", s, ratios[s]);
    }
    return 0;
}

/* The table printed after the build, and the per-split metrics. */
static void split_report(flow_ctx *c, const flow_corpus *corp, int by_doc, int ngroups, int n, uint64_t seed,
                         int nsplits, const int *su, const int *sg)
{
    int ncols = corp->nlabels + 1;
    flow_buf rep;
    buf_init(&rep);
    buf_printf(&rep, "split by %s: %d groups, %d units, seed %llu\n", by_doc ? "doc" : "group", ngroups,
               n, (unsigned long long)seed);
    buf_printf(&rep, "  %-24s", "label: units (groups)");
    for (int s = 0; s < nsplits; s++) buf_printf(&rep, " %16s", split_names[s]);
    buf_addc(&rep, '\n');
    for (int l = 0; l < ncols; l++) {
        const char *ln = l < corp->nlabels ? corp->labels[l] : "(unlabelled)";
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
    flow_metric(c, "units", n);
    flow_report(c, rep.data);
    buf_release(&rep);
}

/* Memory: the labels, one entry per group (name, label counts, split) and
 * the stream buffers; the text and the units are streamed twice (units)
 * and once (text), never held, whatever the corpus's size. */
static int split_run(flow_ctx *c)
{
    double ratios[3];
    int nsplits, rc = read_ratios(c, ratios, &nsplits);
    if (rc) return rc;
    uint64_t seed = (uint64_t)flow_param_int(c, "seed");
    int by_doc = strcmp(flow_param_str(c, "by"), "doc") == 0;

    flow_corpus corp;   /* the labels only */
    if ((rc = read_labels(c, &corp))) return rc;
    int ncols = corp.nlabels + 1;   /* last column: unlabelled units */
    group_table t = {.ncols = ncols};
    size_t nunits = 0;
    if ((rc = count_groups(c, &corp, by_doc, &t, &nunits))) goto out0;
    if (corp.nlabels == 0 || nunits == 0) {
        if (nunits == 0)
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "the corpus has no units: nothing to split; see the clean "
                                                "node's report (was every document filtered out?)");
        else
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "the corpus has %zu units but no labels: split stratifies by "
                                                "label; clean a source with labels = folders", nunits);
        goto out0;
    }
    /* group ids in name order, so they do not depend on unit order */
    int ngroups = t.n, n = (int)nunits;
    named *order = xmalloc((size_t)ngroups * sizeof *order);
    for (int g = 0; g < ngroups; g++) order[g] = (named){group_name(&t, g), g};
    qsort(order, (size_t)ngroups, sizeof *order, named_cmp);
    int *counts = xmalloc((size_t)ngroups * (size_t)ncols * sizeof *counts);
    for (int r = 0; r < ngroups; r++)
        memcpy(counts + (size_t)r * ncols, t.counts + (size_t)order[r].id * ncols, (size_t)ncols * sizeof *counts);
    int *assign = xmalloc((size_t)ngroups * sizeof *assign), *split_of = xmalloc((size_t)ngroups * sizeof *split_of);
    int *su = xcalloc((size_t)nsplits * (size_t)ncols, sizeof *su);
    int *sg = xcalloc((size_t)nsplits * (size_t)ncols, sizeof *sg);
    flow_buf lb;
    buf_init(&lb);
    flow_err err = {0, {0}};
    if ((rc = split_assign(ngroups, ncols, counts, nsplits, ratios, seed, assign, &err)) != 0) {
        rc = flow_ctx_fail(c, rc, "%s (by = %s)", err.msg, by_doc ? "doc" : "group");
        goto out;
    }
    for (int r = 0; r < ngroups; r++) split_of[order[r].id] = assign[r];
    if ((rc = write_splits(c, &corp, by_doc, &t, split_of, nsplits, nunits, su))) goto out;
    for (int l = 0; l < corp.nlabels; l++) buf_printf(&lb, "%s\n", corp.labels[l]);
    for (int s = 0; s < nsplits && !rc; s++) {
        char name[64];
        snprintf(name, sizeof name, "%s/labels", split_names[s]);
        rc = flow_out_write(c, name, FLOW_PART_BYTES, lb.data ? lb.data : "", lb.len);
        snprintf(name, sizeof name, "%s/", split_names[s]);
        if (!rc) rc = corpus_write_format(c, name);
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
    if (!rc) split_report(c, &corp, by_doc, ngroups, n, seed, nsplits, su, sg);
out:
    free(su);
    free(sg);
    buf_release(&lb);
    free(assign);
    free(split_of);
    free(counts);
    free(order);
out0:
    group_table_release(&t);
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
