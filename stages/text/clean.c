/* clean.c — the `clean` stage: source documents -> corpus (stages.h).
 *
 * Input `input`: one or more source nodes; every part is a document named
 * by its relative path, except `.index` (relpath \t label \t group, written
 * by `source` with labels = folders), which gives each document its label
 * and group.  Documents are read in bounded batches (a quarter of the
 * memory budget, `memory_mb`, of raw text each), cleaned and segmented by text.c (rules in text.h) on
 * flow_threads() threads, then merged in input order with exact duplicate
 * units removed (first occurrence kept) and streamed into `text` and
 * `units`, so memory stays within the budget plus the duplicate set (16
 * bytes per unit slot) and the .index, whatever the corpus size.  The
 * output bytes do not depend on the budget (tests/text_e2e_test.sh).
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
/* Documents per batch at most: each costs ~2 KB of bookkeeping (its units
 * buffers, stats) beside its bytes, which matters for one-line files. */
#define BATCH_DOCS 8192

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

/* The one per-unit memory of the stage: 16 bytes per slot (the all-zero
 * hash marks an empty slot; a unit whose hash is zero is stored as 1),
 * grown at 3/4 load. */
typedef struct hset {
    flow_hash *slot;
    size_t cap, n;
} hset;

static uint64_t h64(const flow_hash *h)
{
    uint64_t v = 0;
    for (int i = 8; i < 16; i++) v = v << 8 | h->b[i];
    return v;
}

static int hset_add(hset *s, const flow_hash *h0);

static void hset_grow(hset *s)
{
    hset t = {NULL, s->cap ? 2 * s->cap : 1024, 0};
    t.slot = xcalloc(t.cap, sizeof *t.slot);
    for (size_t i = 0; i < s->cap; i++)
        if (!flow_hash_is_zero(&s->slot[i])) hset_add(&t, &s->slot[i]);
    free(s->slot);
    *s = t;
}

/* Inserts h; returns 1 if it was new, 0 if present. */
static int hset_add(hset *s, const flow_hash *h0)
{
    flow_hash h = *h0;
    if (flow_hash_is_zero(&h)) h.b[15] = 1;
    if (4 * (s->n + 1) > 3 * s->cap) hset_grow(s);
    size_t i = (size_t)h64(&h) & (s->cap - 1);
    while (!flow_hash_is_zero(&s->slot[i])) {
        if (flow_hash_eq(&s->slot[i], &h)) return 0;
        i = (i + 1) & (s->cap - 1);
    }
    s->slot[i] = h;
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

/* Everything one clean node carries from batch to batch. */
typedef struct clean_run_state {
    flow_ctx *c;
    text_opts o;
    int binary_reject, dedup, nin, nth;
    size_t batch_bytes;         /* raw document bytes per batch */
    doc_index *ix;
    flow_out_stream *text, *units;
    flow_buf tbuf, ubuf;        /* pending bytes of the two streams */
    text_stats st;
    hset seen;
    const char **labels;        /* distinct label names (point into ix) */
    int nlabels, caplabels;
    long long ndocs, skipped, nunits, dups, dup_chars, docs_with_units, total_docs;
    long long bad_logged, bad_unlisted, bad_files;
} clean_run_state;

static void add_label(clean_run_state *R, const char *label)
{
    /* documents of one label are mostly contiguous: check the last first */
    if (R->nlabels && strcmp(R->labels[R->nlabels - 1], label) == 0) return;
    for (int i = 0; i < R->nlabels; i++)
        if (strcmp(R->labels[i], label) == 0) return;
    if (R->nlabels == R->caplabels) {
        R->caplabels = R->caplabels ? 2 * R->caplabels : 16;
        R->labels = xrealloc(R->labels, (size_t)R->caplabels * sizeof *R->labels);
    }
    R->labels[R->nlabels++] = label;
}

/* Flushes the pending stream bytes once they pass 1 MiB (or at the end). */
static int flush_streams(clean_run_state *R, int all)
{
    int rc = 0;
    if (R->tbuf.len && (all || R->tbuf.len >= (1u << 20))) {
        rc = flow_out_stream_write(R->text, R->tbuf.data, R->tbuf.len);
        R->tbuf.len = 0;
    }
    if (!rc && R->ubuf.len && (all || R->ubuf.len >= (1u << 20))) {
        rc = flow_out_stream_write(R->units, R->ubuf.data, R->ubuf.len);
        R->ubuf.len = 0;
    }
    return rc;
}

/* Merges one cleaned document into the output, in document order. */
static int merge_doc(clean_run_state *R, doc *d)
{
    flow_ctx *c = R->c;
    if (d->binary) {
        const char *z = memchr(d->data, 0, d->len);
        size_t off = (size_t)(z - d->data);
        if (R->binary_reject)
            return flow_ctx_fail(c, FLOW_E_INPUT, "document '%s' is binary (NUL byte at offset %zu); "
                                 "binary = skip skips such files", d->name, off);
        flow_log(c, "skipped binary file '%s' (NUL byte at offset %zu)", d->name, off);
        R->skipped++;
        return 0;
    }
    if (d->rc) return flow_ctx_fail(c, d->rc, "document '%s': %s", d->name, d->err.msg);
    text_stats_add(&R->st, &d->st);
    /* invalid = replace: say where, so the user can fix the file */
    long long unlisted = 0;
    for (long long b = 0; b < d->nbad; b++) {
        if (R->bad_logged < BAD_LOG && b < BAD_KEEP) {
            flow_log(c, "invalid UTF-8 in '%s' at byte offset %zu: replaced by U+FFFD (dropped)", d->name,
                     d->bad_off[b]);
            R->bad_logged++;
        } else {
            unlisted++;
        }
    }
    if (unlisted) R->bad_unlisted += unlisted, R->bad_files++;
    const index_entry *ie = index_find(&R->ix[d->input], d->name);
    const char *label = ie ? ie->label : "", *group = ie ? ie->group : "";
    if (R->ix[d->input].n && !ie) flow_log(c, "'%s' is not in its source's .index: left unlabelled", d->name);
    if (*label) add_label(R, label);
    long long before = R->nunits;
    for (int u = 0; u < d->units.n; u++) {
        const char *s = d->units.text.data + d->units.off[u];
        size_t len = d->units.off[u + 1] - d->units.off[u];
        flow_hash h = flow_hash_bytes(s, len);
        if (R->dedup && !hset_add(&R->seen, &h)) {
            R->dups++;
            /* its characters were counted as kept: move them */
            size_t q = 0;
            while (q < len) {
                uint32_t cp;
                int k = utf8_decode((const unsigned char *)s + q, len - q, &cp);
                if (k < 0) FLOW_BUG("cleaned unit of '%s' is not UTF-8", d->name);
                R->st.kept[text_char_class(cp)]--;
                R->dup_chars++;
                q += (size_t)k;
            }
            continue;
        }
        buf_add(&R->tbuf, s, len);
        buf_addc(&R->tbuf, '\n');
        add_field(&R->ubuf, label);
        buf_addc(&R->ubuf, '\t');
        add_field(&R->ubuf, group);
        buf_addc(&R->ubuf, '\t');
        add_field(&R->ubuf, d->name);
        buf_addc(&R->ubuf, '\n');
        R->nunits++;
    }
    if (R->nunits > before) R->docs_with_units++;
    return flush_streams(R, 0);
}

/* Cleans docs[0..n) on R->nth threads, then merges them in order. */
static int clean_batch(clean_run_state *R, doc *docs, int n)
{
    int nth = R->nth < n ? R->nth : n;
    pool p = {&R->o, docs, n, 0, PTHREAD_MUTEX_INITIALIZER};
    pthread_t *th = xcalloc((size_t)nth + 1, sizeof *th);
    int started = 0;
    for (int t = 1; t < nth; t++)
        if (pthread_create(&th[t], NULL, worker, &p) == 0) started++;
        else break;
    worker(&p);
    for (int t = 1; t <= started; t++) pthread_join(th[t], NULL);
    free(th);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) rc = merge_doc(R, &docs[i]);
    for (int i = 0; i < n; i++) {
        free(docs[i].data);
        text_units_release(&docs[i].units);
    }
    return rc;
}

static int load_indexes(clean_run_state *R)
{
    for (int b = 0; b < R->nin; b++) {
        if (!flow_in_has(R->c, "input", b, ".index")) continue;
        char *buf;
        size_t len;
        int rc = flow_in_read(R->c, "input", b, ".index", &buf, &len);
        if (rc) return rc;
        flow_err e = {0, {0}};
        if ((rc = index_parse(&R->ix[b], buf, len, &e)) != 0)
            return flow_ctx_fail(R->c, rc, "input %d: %s", b, e.msg);
    }
    return 0;
}

/* Reads the documents in bounded batches (about batch_bytes of raw text
 * and at most BATCH_DOCS documents each; a larger document is a batch of
 * its own), cleans each batch in
 * parallel and streams it out in document order. */
static int clean_all(clean_run_state *R)
{
    flow_ctx *c = R->c;
    doc *docs = NULL;
    int n = 0, cap = 0, rc = 0;
    size_t bytes = 0;
    for (int b = 0; b < R->nin; b++) {
        int np = flow_in_nparts(c, "input", b);
        for (int k = 0; k < np; k++)
            R->total_docs += strcmp(flow_in_part_name(c, "input", b, k), ".index") != 0;
    }
    for (int b = 0; b < R->nin && !rc; b++) {
        int np = flow_in_nparts(c, "input", b);
        for (int k = 0; k < np && !rc; k++) {
            const char *name = flow_in_part_name(c, "input", b, k);
            if (strcmp(name, ".index") == 0) continue;
            size_t sz = (size_t)flow_in_part_size_at(c, "input", b, k);
            if (n && (bytes + sz > R->batch_bytes || n == BATCH_DOCS)) {
                rc = clean_batch(R, docs, n);
                n = 0, bytes = 0;
                flow_progress(c, (double)R->ndocs / (double)R->total_docs, "cleaned %lld/%lld documents",
                              R->ndocs, R->total_docs);
                if (rc) break;
            }
            if (n == cap) {
                cap = cap ? 2 * cap : 256;
                docs = xrealloc(docs, (size_t)cap * sizeof *docs);
            }
            doc *d = &docs[n];
            memset(d, 0, sizeof *d);
            d->name = name;
            d->input = b;
            text_units_init(&d->units);
            if ((rc = flow_in_read_at(c, "input", b, k, &d->data, &d->len)) != 0) break;
            n++;
            R->ndocs++;
            bytes += sz;
        }
    }
    if (!rc && n) rc = clean_batch(R, docs, n);
    else
        for (int i = 0; i < n; i++) free(docs[i].data);
    free(docs);
    return rc;
}

static void clean_metrics(clean_run_state *R, int nuniq)
{
    flow_ctx *c = R->c;
    const text_stats *st = &R->st;
    uint64_t kept = 0, dropped = 0;
    for (int k = 0; k < TC_NCLASS; k++) {
        char name[64];
        snprintf(name, sizeof name, "chars.kept.%s", text_class_names[k]);
        flow_metric(c, name, (double)st->kept[k]);
        snprintf(name, sizeof name, "chars.dropped.%s", text_class_names[k]);
        flow_metric(c, name, (double)st->dropped[k]);
        kept += st->kept[k];
        dropped += st->dropped[k];
    }
    flow_metric(c, "documents", (double)R->ndocs);
    flow_metric(c, "documents_with_units", (double)R->docs_with_units);
    flow_metric(c, "skipped_files", (double)R->skipped);
    flow_metric(c, "units", (double)R->nunits);
    flow_metric(c, "labels", nuniq);
    flow_metric(c, "units.articles", (double)st->articles);
    flow_metric(c, "units.items", (double)st->items);
    flow_metric(c, "units.paragraphs", (double)st->paragraphs);
    flow_metric(c, "chars.kept", (double)kept);
    flow_metric(c, "chars.dropped", (double)dropped);
    flow_metric(c, "chars.normalised", (double)st->normalised);
    flow_metric(c, "invalid_sequences", (double)st->invalid_sequences);
    flow_metric(c, "structure_bytes", (double)st->structure_bytes);
    flow_metric(c, "short_units", (double)st->short_units);
    flow_metric(c, "short_chars", (double)st->short_chars);
    flow_metric(c, "duplicates", (double)R->dups);
    flow_metric(c, "duplicate_chars", (double)R->dup_chars);
    flow_metric_str(c, "preset", R->o.preset == TEXT_PRESET_STRICT ? "strict" : "legal");

    flow_buf rep;
    buf_init(&rep);
    buf_printf(&rep, "clean: %lld documents (%lld skipped) -> %lld units (%llu articles, %llu items, "
               "%llu paragraphs before dedup), %d labels\n", R->ndocs, R->skipped, R->nunits,
               (unsigned long long)st->articles, (unsigned long long)st->items,
               (unsigned long long)st->paragraphs, nuniq);
    buf_printf(&rep, "  chars kept %llu, dropped %llu, in short units %llu, in duplicates %lld "
               "(%lld duplicate units), invalid sequences %llu\n", (unsigned long long)kept,
               (unsigned long long)dropped, (unsigned long long)st->short_chars, R->dup_chars,
               R->dups, (unsigned long long)st->invalid_sequences);
    buf_adds(&rep, "  class      kept     dropped\n");
    for (int k = 0; k < TC_NCLASS; k++)
        buf_printf(&rep, "  %-8s %10llu %10llu\n", text_class_names[k],
                   (unsigned long long)st->kept[k], (unsigned long long)st->dropped[k]);
    flow_report(c, rep.data);
    buf_release(&rep);
}

/* The parts written whole at the end: labels, clean.json, corpus.json. */
static int clean_finish(clean_run_state *R)
{
    flow_ctx *c = R->c;
    if (R->bad_unlisted)
        flow_log(c, "%lld more invalid UTF-8 sequences in %lld file(s) not listed (each replaced by U+FFFD); "
                 "invalid_utf8 = reject stops at the first one", R->bad_unlisted, R->bad_files);
    if (R->ndocs == 0)
        return flow_ctx_fail(c, FLOW_E_INPUT, "empty corpus: the %d bound source(s) hold no documents", R->nin);
    if (R->nunits == 0)
        return flow_ctx_fail(c, FLOW_E_INPUT,
                             "empty corpus: %lld documents gave no units (%lld skipped as binary, %llu "
                             "units shorter than min_chars = %d)", R->ndocs, R->skipped,
                             (unsigned long long)R->st.short_units, R->o.min_chars);
    if (R->nlabels) qsort(R->labels, (size_t)R->nlabels, sizeof *R->labels, label_cmp);
    flow_buf lb, js;
    buf_init(&lb);
    buf_init(&js);
    for (int i = 0; i < R->nlabels; i++) {
        add_field(&lb, R->labels[i]);
        buf_addc(&lb, '\n');
    }
    text_opts_to_json(&R->o, &js);
    int rc = flow_out_write(c, "labels", FLOW_PART_BYTES, lb.data ? lb.data : "", lb.len);
    if (!rc) rc = flow_out_write(c, "clean.json", FLOW_PART_BYTES, js.data, js.len);
    if (!rc) rc = corpus_write_format(c, "");
    if (!rc) clean_metrics(R, R->nlabels);
    buf_release(&lb);
    buf_release(&js);
    return rc;
}

static int clean_run(flow_ctx *c)
{
    clean_run_state R;
    memset(&R, 0, sizeof R);
    R.c = c;
    text_opts_default(&R.o);
    R.o.preset = strcmp(flow_param_str(c, "preset"), "strict") == 0 ? TEXT_PRESET_STRICT : TEXT_PRESET_LEGAL;
    R.o.invalid = strcmp(flow_param_str(c, "invalid_utf8"), "reject") == 0 ? TEXT_INVALID_REJECT
                                                                           : TEXT_INVALID_REPLACE;
    R.o.strip_article_label = strcmp(flow_param_str(c, "article_label"), "keep") != 0;
    R.o.min_chars = (int)flow_param_int(c, "min_chars");
    R.binary_reject = strcmp(flow_param_str(c, "binary"), "reject") == 0;
    R.dedup = flow_param_bool(c, "dedup");
    /* a batch's raw bytes, its cleaned units and the per-thread work stay
     * within about a quarter of the budget each */
    R.batch_bytes = flow_memory_budget(c) / 4;
    R.nth = flow_threads(c) < 1 ? 1 : flow_threads(c);
    R.nin = flow_in_count(c, "input");
    if (R.nin == 0) return flow_ctx_fail(c, FLOW_E_INPUT, "input 'input' is unbound: bind it to a source node");
    R.ix = xcalloc((size_t)R.nin, sizeof *R.ix);
    buf_init(&R.tbuf);
    buf_init(&R.ubuf);
    int rc = load_indexes(&R);
    if (!rc) rc = flow_out_open(c, "text", FLOW_PART_BYTES, &R.text);
    if (!rc) rc = flow_out_open(c, "units", FLOW_PART_BYTES, &R.units);
    if (!rc) rc = clean_all(&R);
    if (!rc) rc = flush_streams(&R, 1);
    if (!rc) rc = clean_finish(&R);
    if (R.text) {
        int rc2 = flow_out_stream_close(R.text);
        if (!rc) rc = rc2;
    }
    if (R.units) {
        int rc2 = flow_out_stream_close(R.units);
        if (!rc) rc = rc2;
    }
    buf_release(&R.tbuf);
    buf_release(&R.ubuf);
    free(R.labels);
    free(R.seen.slot);
    for (int b = 0; b < R.nin; b++) index_release(&R.ix[b]);
    free(R.ix);
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
    .res = {.threads = 0, .gpus = 0, .cpu_fallback = 1, .memory_mb = 512},
    .run = clean_run,
};
