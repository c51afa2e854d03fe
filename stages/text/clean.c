/* clean.c — the `clean` stage: source documents -> corpus (stages.h).
 *
 * Input `input`: one or more source nodes; every part is a document named
 * by its relative path, except `.index` (relpath \t label \t group, written
 * by `source` with labels = folders), which gives each document its label
 * and group.  Documents are cleaned and segmented by text.c (rules in
 * text.h) on flow_threads() threads, then merged in input order with exact
 * duplicate units removed (first occurrence kept).
 *
 * Outputs: text, units, labels (the corpus format) and clean.json (the
 * cleaning settings, so a model can clean new input the same way). */
#include "stages/stages.h"
#include "text.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- the .index of a labelled source ----------------------------------- */

typedef struct index_entry {
    const char *path, *label, *group;
} index_entry;

typedef struct doc_index {
    char *buf;
    index_entry *e; int n;
} doc_index;

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const index_entry *)a)->path, ((const index_entry *)b)->path);
}

/* Parses the .index part (takes ownership of buf). */
static int index_parse(doc_index *ix, char *buf, size_t len, flow_err *err)
{
    ix->buf = buf;
    ix->e = NULL;
    ix->n = 0;
    int cap = 0, line = 0;
    char *p = buf, *end = buf + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl) *nl = 0;
        line++;
        if (*p) {
            char *t1 = strchr(p, '\t');
            char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
            if (!t1 || !t2)
                return flow_fail(err, FLOW_E_CORRUPT,
                                 "part .index line %d: expected relpath \\t label \\t group", line);
            *t1 = 0, *t2 = 0;
            if (ix->n == cap) {
                cap = cap ? 2 * cap : 256;
                ix->e = xrealloc(ix->e, (size_t)cap * sizeof *ix->e);
            }
            ix->e[ix->n++] = (index_entry){p, t1 + 1, t2 + 1};
        }
        if (!nl) break;
        p = nl + 1;
    }
    if (ix->n) qsort(ix->e, (size_t)ix->n, sizeof *ix->e, entry_cmp);
    return 0;
}

static const index_entry *index_find(const doc_index *ix, const char *path)
{
    if (!ix->n) return NULL;
    index_entry key = {path, NULL, NULL};
    return bsearch(&key, ix->e, (size_t)ix->n, sizeof *ix->e, entry_cmp);
}

static void index_release(doc_index *ix)
{
    free(ix->buf);
    free(ix->e);
}

/* ---- documents and workers ------------------------------------------- */

typedef struct doc {
    const char *name;       /* part name (owned by ctx) */
    int input;              /* binding index */
    char *data; size_t len;
    text_units units;
    text_stats st;
    int binary;             /* has a NUL byte: skipped or rejected */
    int rc;
    flow_err err;
    /* invalid = replace: raw byte offsets of the first BAD_KEEP invalid
     * UTF-8 sequences of the file, and how many it has in all */
    size_t bad_off[8];
    long long nbad;
} doc;

#define BAD_KEEP 8          /* offsets remembered per document */
#define BAD_LOG 20          /* log lines about invalid UTF-8 per node, then a count */

/* Finds the invalid UTF-8 sequences of d->data (a sequence = a bad lead
 * byte and the continuation bytes after it, as text.c replaces them). */
static void find_invalid(doc *d)
{
    const unsigned char *s = (const unsigned char *)d->data;
    size_t i = 0;
    long off;
    while (i < d->len && (off = utf8_first_invalid(s + i, d->len - i)) >= 0) {
        i += (size_t)off;
        if (d->nbad < BAD_KEEP) d->bad_off[d->nbad] = i;
        d->nbad++;
        i++;
        while (i < d->len && (s[i] & 0xc0) == 0x80) i++;
    }
}

typedef struct pool {
    const text_opts *o;
    doc *docs; int n;
    int next;               /* next document to take */
    pthread_mutex_t mu;
} pool;

static void *worker(void *arg)
{
    pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int i = p->next++;
        pthread_mutex_unlock(&p->mu);
        if (i >= p->n) return NULL;
        doc *d = &p->docs[i];
        d->binary = memchr(d->data, 0, d->len) != NULL;
        if (!d->binary)
            d->rc = text_clean_document(p->o, d->data, d->len, &d->units, &d->st, &d->err);
        if (!d->binary && !d->rc && d->st.invalid_sequences) find_invalid(d);
        if (!d->binary) {
            free(d->data);
            d->data = NULL;
        }
    }
}

/* ---- duplicate set: 128-bit hashes, open addressing ---------------------- */

typedef struct hset {
    flow_hash *slot;
    uint8_t *used;
    size_t cap, n;
} hset;

static uint64_t h64(const flow_hash *h)
{
    uint64_t v = 0;
    for (int i = 8; i < 16; i++) v = v << 8 | h->b[i];
    return v;
}

/* Inserts h; returns 1 if it was new, 0 if present. */
static int hset_add(hset *s, const flow_hash *h)
{
    if (2 * (s->n + 1) > s->cap) {
        hset t = {NULL, NULL, s->cap ? 2 * s->cap : 1024, 0};
        t.slot = xmalloc(t.cap * sizeof *t.slot);
        t.used = xcalloc(t.cap, 1);
        for (size_t i = 0; i < s->cap; i++)
            if (s->used[i]) hset_add(&t, &s->slot[i]);
        free(s->slot);
        free(s->used);
        *s = t;
    }
    size_t i = (size_t)h64(h) & (s->cap - 1);
    while (s->used[i]) {
        if (flow_hash_eq(&s->slot[i], h)) return 0;
        i = (i + 1) & (s->cap - 1);
    }
    s->used[i] = 1;
    s->slot[i] = *h;
    s->n++;
    return 1;
}

/* ---- the stage ----------------------------------------------------- */

static int label_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* TSV fields must not contain tabs or newlines. */
static void add_field(flow_buf *b, const char *s)
{
    for (; *s; s++) buf_addc(b, (*s == '\t' || *s == '\n' || *s == '\r') ? ' ' : *s);
}

static int clean_run(flow_ctx *c)
{
    text_opts o;
    text_opts_default(&o);
    o.preset = strcmp(flow_param_str(c, "preset"), "strict") == 0 ? TEXT_PRESET_STRICT : TEXT_PRESET_LEGAL;
    o.invalid = strcmp(flow_param_str(c, "invalid_utf8"), "reject") == 0 ? TEXT_INVALID_REJECT
                                                                         : TEXT_INVALID_REPLACE;
    o.strip_article_label = strcmp(flow_param_str(c, "article_label"), "keep") != 0;
    o.min_chars = (int)flow_param_int(c, "min_chars");
    int binary_reject = strcmp(flow_param_str(c, "binary"), "reject") == 0;
    int dedup = flow_param_bool(c, "dedup");

    int nin = flow_in_count(c, "input");
    if (nin == 0) return flow_ctx_fail(c, FLOW_E_INPUT, "input 'input' is unbound: bind it to a source node");
    doc_index *ix = xcalloc((size_t)nin, sizeof *ix);
    doc *docs = NULL;
    int ndocs = 0, cap = 0, rc = 0;
    long long skipped = 0;

    /* read every document (the stage API is used from this thread only) */
    for (int b = 0; b < nin && !rc; b++) {
        int np = flow_in_nparts(c, "input", b);
        if (flow_in_has(c, "input", b, ".index")) {
            char *buf;
            size_t len;
            if ((rc = flow_in_read(c, "input", b, ".index", &buf, &len)) != 0) break;
            flow_err e = {0, {0}};
            if ((rc = index_parse(&ix[b], buf, len, &e)) != 0) {
                rc = flow_ctx_fail(c, rc, "input %d: %s", b, e.msg);
                break;
            }
        }
        for (int k = 0; k < np; k++) {
            const char *name = flow_in_part_name(c, "input", b, k);
            if (strcmp(name, ".index") == 0) continue;
            if (ndocs == cap) {
                cap = cap ? 2 * cap : 256;
                docs = xrealloc(docs, (size_t)cap * sizeof *docs);
            }
            doc *d = &docs[ndocs];
            memset(d, 0, sizeof *d);
            d->name = name;
            d->input = b;
            text_units_init(&d->units);
            if ((rc = flow_in_read_at(c, "input", b, k, &d->data, &d->len)) != 0) break;
            ndocs++;
        }
    }
    if (!rc && ndocs == 0)
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "empty corpus: the %d bound source(s) hold no documents", nin);
    if (rc) goto out;

    /* clean in parallel */
    int nth = flow_threads(c);
    if (nth < 1) nth = 1;
    if (nth > ndocs) nth = ndocs;
    pool p = {&o, docs, ndocs, 0, PTHREAD_MUTEX_INITIALIZER};
    flow_progress(c, 0.0, "cleaning %d documents on %d threads", ndocs, nth);
    pthread_t *th = xcalloc((size_t)nth, sizeof *th);
    int started = 0;
    for (int t = 1; t < nth; t++)
        if (pthread_create(&th[t], NULL, worker, &p) == 0) started++;
        else break;
    worker(&p);
    for (int t = 1; t <= started; t++) pthread_join(th[t], NULL);
    free(th);

    /* merge in document order */
    flow_buf text, units;
    buf_init(&text);
    buf_init(&units);
    text_stats st;
    memset(&st, 0, sizeof st);
    hset seen = {NULL, NULL, 0, 0};
    long long nunits = 0, dups = 0, dup_chars = 0, docs_with_units = 0;
    long long bad_logged = 0, bad_unlisted = 0, bad_files = 0;
    const char **labels = xcalloc((size_t)ndocs + 1, sizeof *labels);
    int nlabels = 0;
    for (int i = 0; i < ndocs && !rc; i++) {
        doc *d = &docs[i];
        if (d->binary) {
            const char *z = memchr(d->data, 0, d->len);
            size_t off = (size_t)(z - d->data);
            if (binary_reject) {
                rc = flow_ctx_fail(c, FLOW_E_INPUT, "document '%s' is binary (NUL byte at offset %zu); "
                                   "binary = skip skips such files", d->name, off);
                break;
            }
            flow_log(c, "skipped binary file '%s' (NUL byte at offset %zu)", d->name, off);
            skipped++;
            continue;
        }
        if (d->rc) {
            rc = flow_ctx_fail(c, d->rc, "document '%s': %s", d->name, d->err.msg);
            break;
        }
        text_stats_add(&st, &d->st);
        /* invalid = replace: say where, so the user can fix the file */
        long long unlisted = 0;
        for (long long b = 0; b < d->nbad; b++) {
            if (bad_logged < BAD_LOG && b < BAD_KEEP) {
                flow_log(c, "invalid UTF-8 in '%s' at byte offset %zu: replaced by U+FFFD (dropped)", d->name,
                         d->bad_off[b]);
                bad_logged++;
            } else {
                unlisted++;
            }
        }
        if (unlisted) bad_unlisted += unlisted, bad_files++;
        const index_entry *ie = index_find(&ix[d->input], d->name);
        const char *label = ie ? ie->label : "", *group = ie ? ie->group : "";
        if (ix[d->input].n && !ie) flow_log(c, "'%s' is not in its source's .index: left unlabelled", d->name);
        if (*label) labels[nlabels++] = label;
        int before = (int)nunits;
        for (int u = 0; u < d->units.n; u++) {
            const char *s = d->units.text.data + d->units.off[u];
            size_t len = d->units.off[u + 1] - d->units.off[u];
            flow_hash h = flow_hash_bytes(s, len);
            if (dedup && !hset_add(&seen, &h)) {
                dups++;
                /* its characters were counted as kept: move them */
                size_t q = 0;
                while (q < len) {
                    uint32_t cp;
                    int k = utf8_decode((const unsigned char *)s + q, len - q, &cp);
                    if (k < 0) FLOW_BUG("cleaned unit of '%s' is not UTF-8", d->name);
                    st.kept[text_char_class(cp)]--;
                    dup_chars++;
                    q += (size_t)k;
                }
                continue;
            }
            buf_add(&text, s, len);
            buf_addc(&text, '\n');
            add_field(&units, label);
            buf_addc(&units, '\t');
            add_field(&units, group);
            buf_addc(&units, '\t');
            add_field(&units, d->name);
            buf_addc(&units, '\n');
            nunits++;
        }
        if ((int)nunits > before) docs_with_units++;
        text_units_release(&d->units);
        flow_progress(c, 0.5 + 0.5 * (i + 1) / ndocs, "merged %d/%d documents", i + 1, ndocs);
    }
    if (bad_unlisted)
        flow_log(c, "%lld more invalid UTF-8 sequences in %lld file(s) not listed (each replaced by U+FFFD); "
                 "invalid_utf8 = reject stops at the first one", bad_unlisted, bad_files);
    if (!rc && nunits == 0)
        rc = flow_ctx_fail(c, FLOW_E_INPUT,
                           "empty corpus: %d documents gave no units (%lld skipped as binary, %llu "
                           "units shorter than min_chars = %d)", ndocs, skipped,
                           (unsigned long long)st.short_units, o.min_chars);
    if (!rc) {
        /* labels: sorted, unique */
        qsort(labels, (size_t)nlabels, sizeof *labels, label_cmp);
        flow_buf lb;
        buf_init(&lb);
        int nuniq = 0;
        for (int i = 0; i < nlabels; i++) {
            if (i && strcmp(labels[i], labels[i - 1]) == 0) continue;
            add_field(&lb, labels[i]);
            buf_addc(&lb, '\n');
            nuniq++;
        }
        flow_buf js;
        buf_init(&js);
        text_opts_to_json(&o, &js);
        if (!rc) rc = flow_out_write(c, "text", FLOW_PART_BYTES, text.data ? text.data : "", text.len);
        if (!rc) rc = flow_out_write(c, "units", FLOW_PART_BYTES, units.data ? units.data : "", units.len);
        if (!rc) rc = flow_out_write(c, "labels", FLOW_PART_BYTES, lb.data ? lb.data : "", lb.len);
        if (!rc) rc = flow_out_write(c, "clean.json", FLOW_PART_BYTES, js.data, js.len);
        if (!rc) rc = corpus_write_format(c, "");

        uint64_t kept = 0, dropped = 0;
        for (int k = 0; k < TC_NCLASS; k++) {
            char name[64];
            snprintf(name, sizeof name, "chars.kept.%s", text_class_names[k]);
            flow_metric(c, name, (double)st.kept[k]);
            snprintf(name, sizeof name, "chars.dropped.%s", text_class_names[k]);
            flow_metric(c, name, (double)st.dropped[k]);
            kept += st.kept[k];
            dropped += st.dropped[k];
        }
        flow_metric(c, "documents", ndocs);
        flow_metric(c, "documents_with_units", (double)docs_with_units);
        flow_metric(c, "skipped_files", (double)skipped);
        flow_metric(c, "units", (double)nunits);
        flow_metric(c, "labels", nuniq);
        flow_metric(c, "units.articles", (double)st.articles);
        flow_metric(c, "units.items", (double)st.items);
        flow_metric(c, "units.paragraphs", (double)st.paragraphs);
        flow_metric(c, "chars.kept", (double)kept);
        flow_metric(c, "chars.dropped", (double)dropped);
        flow_metric(c, "chars.normalised", (double)st.normalised);
        flow_metric(c, "invalid_sequences", (double)st.invalid_sequences);
        flow_metric(c, "structure_bytes", (double)st.structure_bytes);
        flow_metric(c, "short_units", (double)st.short_units);
        flow_metric(c, "short_chars", (double)st.short_chars);
        flow_metric(c, "duplicates", (double)dups);
        flow_metric(c, "duplicate_chars", (double)dup_chars);
        flow_metric_str(c, "preset", o.preset == TEXT_PRESET_STRICT ? "strict" : "legal");

        flow_buf rep;
        buf_init(&rep);
        buf_printf(&rep, "clean: %d documents (%lld skipped) -> %lld units (%llu articles, %llu items, "
                   "%llu paragraphs before dedup), %d labels\n", ndocs, skipped, nunits,
                   (unsigned long long)st.articles, (unsigned long long)st.items,
                   (unsigned long long)st.paragraphs, nuniq);
        buf_printf(&rep, "  chars kept %llu, dropped %llu, in short units %llu, in duplicates %lld "
                   "(%lld duplicate units), invalid sequences %llu\n", (unsigned long long)kept,
                   (unsigned long long)dropped, (unsigned long long)st.short_chars, dup_chars, dups,
                   (unsigned long long)st.invalid_sequences);
        buf_adds(&rep, "  class      kept     dropped\n");
        for (int k = 0; k < TC_NCLASS; k++)
            buf_printf(&rep, "  %-8s %10llu %10llu\n", text_class_names[k],
                       (unsigned long long)st.kept[k], (unsigned long long)st.dropped[k]);
        flow_report(c, rep.data);
        buf_release(&rep);
        buf_release(&lb);
        buf_release(&js);
    }
    free(labels);
    free(seen.slot);
    free(seen.used);
    buf_release(&text);
    buf_release(&units);
out:
    for (int i = 0; i < ndocs; i++) {
        free(docs[i].data);
        text_units_release(&docs[i].units);
    }
    free(docs);
    for (int b = 0; b < nin; b++) index_release(&ix[b]);
    free(ix);
    return rc;
}

static const flow_param_def clean_params[] = {
    {"preset", FLOW_P_STRING, 0, "legal", 1, 0, "legal|strict",
     "characters kept: legal = Han, ASCII letters/digits and legal punctuation; strict = "
     "U+4E00-9FA5, ASCII letters/digits, ( ) ·"},
    {"min_chars", FLOW_P_INT, 0, "5", 0, 100000, NULL, "units with fewer code points are dropped"},
    {"invalid_utf8", FLOW_P_STRING, 0, "replace", 1, 0, "replace|reject",
     "invalid UTF-8: replace with U+FFFD (then dropped; counted, and logged with file and byte "
     "offset) or fail naming file and offset"},
    {"binary", FLOW_P_STRING, 0, "skip", 1, 0, "skip|reject",
     "files with NUL bytes: skip (counted in skipped_files) or fail"},
    {"article_label", FLOW_P_STRING, 0, "strip", 1, 0, "strip|keep",
     "drop the 第X条 label from article units, or keep it"},
    {"dedup", FLOW_P_BOOL, 0, "true", 1, 0, NULL, "remove exact duplicate units (first kept)"},
};

static const flow_input_def clean_inputs[] = {
    {"input", 0, 1, "source node(s); a source with labels = folders gives labels and groups"},
};

static const flow_output_def clean_outputs[] = {
    {"text", "one cleaned unit per line"},
    {"units", "label \\t group \\t doc per unit"},
    {"labels", "label names, sorted, one per line"},
    {"clean.json", "the cleaning settings, for cleaning new input the same way"},
    {"corpus.json", "the corpus format marker {\"format\":\"flow-corpus\",\"version\":1} (stages.h)"},
};

const flow_stage stage_clean = {
    .name = "clean",
    /* the cleaning rules and the corpus format are the stage's behaviour
     * (102: corpus.json added) */
    .version = 100 * CORPUS_FORMAT_VERSION + TEXT_CLEAN_VERSION,
    .help = "Markdown-aware cleaning and segmentation into articles/paragraphs (corpus)",
    .params = clean_params, .nparams = sizeof clean_params / sizeof *clean_params,
    .inputs = clean_inputs, .ninputs = 1,
    .outputs = clean_outputs, .noutputs = 5,
    .res = {.threads = 0, .gpus = 0, .cpu_fallback = 1},
    .run = clean_run,
};
