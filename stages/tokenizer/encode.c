/* encode.c — the `encode` stage: turns every corpus found in its `corpus`
 * input (prefix "" for a plain corpus; "train/", "dev/", "test/" for a
 * split: any prefix holding a `text` part) into the ENCODED format of
 * stages.h under the same prefix: ids, offsets, labels, groups, plus
 * label_names (copy of the corpus `labels`, so downstream knows the class
 * names) and group_names (the sorted group names that group ids index).
 * Streams: text and units are read in blocks of an eighth of the memory
 * budget (`memory_mb`), each block encoded in parallel over units
 * (tok_batch.c) and appended to the four streamed parts, whose header
 * counts are patched at the end; one first pass over units collects the
 * distinct group names.  Memory: the budget plus the group names, whatever
 * the corpus size; the bytes do not depend on the budget. */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

static const flow_param_def encode_params[] = {
    {"max_len", FLOW_P_INT, 0, "512", 2, 1 << 24, NULL,
     "ids per sequence at most, [CLS] and [SEP] included; longer units are truncated"},
};

static const flow_input_def encode_inputs[] = {
    {"corpus", 0, 0, "a corpus (clean) or a split (split): every prefix with a `text` part"},
    {"tokenizer", 0, 0, "a bpe node"},
};

static const flow_output_def encode_outputs[] = {
    {"ids", "FLOWIDS: concatenated sequences (also under train/ dev/ test/)"},
    {"offsets", "FLOWOFF: sequence boundaries"},
    {"labels", "FLOWLAB: label id per sequence, -1 if none"},
    {"groups", "FLOWGRP: group id per sequence (index into group_names), -1 if none"},
    {"label_names", "label names, one per line (ids = line numbers)"},
    {"group_names", "sorted group names, one per line"},
    {"train", "the same parts for the train split (input bound to a split node)"},
    {"dev", "the same parts for the dev split"},
    {"test", "the same parts for the test split"},
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ---- group names: a set of strings, then sorted ------------------------ */

typedef struct str_set {
    char **slot;
    size_t n, cap;
} str_set;

static size_t ss_pos(char *const *slot, size_t cap, const char *s)
{
    flow_hash h = flow_hash_bytes(s, strlen(s));
    uint64_t v;
    memcpy(&v, h.b + 8, 8);
    size_t i = (size_t)v & (cap - 1);
    while (slot[i] && strcmp(slot[i], s) != 0) i = (i + 1) & (cap - 1);
    return i;
}

static void ss_add(str_set *ss, const char *s)
{
    if (2 * (ss->n + 1) > ss->cap) {
        size_t cap = ss->cap ? 2 * ss->cap : 256;
        char **t = xcalloc(cap, sizeof *t);
        for (size_t i = 0; i < ss->cap; i++)
            if (ss->slot[i]) t[ss_pos(t, cap, ss->slot[i])] = ss->slot[i];
        free(ss->slot);
        ss->slot = t;
        ss->cap = cap;
    }
    size_t i = ss_pos(ss->slot, ss->cap, s);
    if (!ss->slot[i]) ss->slot[i] = xstrdup(s), ss->n++;
}

/* ---- one corpus -------------------------------------------------------- */

typedef struct enc_state {
    flow_ctx *c;
    const char *prefix;
    int has_units, have_names;
    flow_corpus lab;            /* only its labels (the `labels` part) */
    char **groups; size_t ngroups;   /* sorted distinct group names */
    line_stream units;
    uint64_t nunits;            /* units lines */
    flow_out_stream *out[4];    /* ids offsets labels groups */
} enc_state;

static void prefixed(char *out, size_t n, const char *prefix, const char *name)
{
    snprintf(out, n, "%s%s", prefix, name);
}

/* Labels part and the sorted distinct group names (one pass over units). */
static int read_labels_groups(enc_state *E)
{
    flow_ctx *c = E->c;
    char part[256], lpart[256];
    char *names = NULL;
    size_t nlen = 0;
    prefixed(lpart, sizeof lpart, E->prefix, "labels");
    if (!flow_in_has(c, "corpus", 0, lpart)) snprintf(lpart, sizeof lpart, "labels");  /* shared list */
    E->have_names = flow_in_has(c, "corpus", 0, lpart);
    int rc = E->have_names ? flow_in_read(c, "corpus", 0, lpart, &names, &nlen) : 0;
    if (rc) return flow_ctx_fail(c, rc, "cannot read corpus part %s", lpart);
    flow_err err = {0, {0}};
    if ((rc = corpus_parse(&E->lab, xstrdup(""), 0, xstrdup(""), 0, names, nlen, &err)) != 0)
        return flow_ctx_fail(c, rc, "corpus %s: %s", *E->prefix ? E->prefix : "(root)", err.msg);
    prefixed(part, sizeof part, E->prefix, "units");
    line_stream ls;
    if ((rc = line_stream_open(c, "corpus", 0, part, &ls))) return rc;
    str_set ss = {NULL, 0, 0};
    char *line;
    int got;
    while (!(rc = line_stream_line(&ls, &line, &got)) && got) {
        const char *label, *group, *doc;
        int id;
        if ((rc = corpus_unit_parse(&E->lab, line, ++E->nunits, &label, &group, &doc, &id, &err)))
            rc = flow_ctx_fail(c, rc, "corpus %s: %s", *E->prefix ? E->prefix : "(root)", err.msg);
        else if (*group)
            ss_add(&ss, group);
        if (rc) break;
    }
    line_stream_close(&ls);
    E->groups = xmalloc((ss.n ? ss.n : 1) * sizeof *E->groups);
    for (size_t i = 0; i < ss.cap; i++)
        if (ss.slot[i]) E->groups[E->ngroups++] = ss.slot[i];
    free(ss.slot);
    qsort(E->groups, E->ngroups, sizeof *E->groups, cmp_str);
    return rc;
}

static int32_t group_id(const enc_state *E, const char *g)
{
    if (!*g) return -1;
    size_t lo = 0, hi = E->ngroups;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(E->groups[mid], g) < 0) lo = mid + 1;
        else hi = mid;
    }
    return (int32_t)lo;
}

/* Labels and groups of the block's nseq units, from the next units lines. */
static int block_labels(enc_state *E, uint64_t seq0, uint64_t nseq, flow_buf *lab, flow_buf *grp)
{
    for (uint64_t i = 0; i < nseq; i++) {
        int32_t l = -1, g = -1;
        if (E->has_units) {
            char *line;
            int got, id;
            const char *label, *group, *doc;
            flow_err err = {0, {0}};
            int rc = line_stream_line(&E->units, &line, &got);
            if (rc) return rc;
            if (!got)
                return flow_ctx_fail(E->c, FLOW_E_INPUT, "corpus %s: parts disagree: text has more "
                                     "lines than units (%llu); the corpus is inconsistent, rebuild "
                                     "its producer", *E->prefix ? E->prefix : "(root)",
                                     (unsigned long long)E->nunits);
            if ((rc = corpus_unit_parse(&E->lab, line, seq0 + i + 1, &label, &group, &doc, &id, &err)))
                return flow_ctx_fail(E->c, rc, "corpus %s: %s", *E->prefix ? E->prefix : "(root)", err.msg);
            l = id;
            g = group_id(E, group);
        }
        buf_add(lab, &l, 4);
        buf_add(grp, &g, 4);
    }
    return 0;
}

static void enc_release(enc_state *E)
{
    corpus_release(&E->lab);
    for (size_t i = 0; i < E->ngroups; i++) free(E->groups[i]);
    free(E->groups);
    if (E->units.in) line_stream_close(&E->units);
}

/* Writes the four streamed parts' headers (counts patched at the end). */
static int open_outputs(enc_state *E, int width)
{
    static const char *const names[4] = {"ids", "offsets", "labels", "groups"};
    static const char magic[4][9] = {"FLOWIDS", "FLOWOFF", "FLOWLAB", "FLOWGRP"};
    for (int k = 0; k < 4; k++) {
        char part[256];
        prefixed(part, sizeof part, E->prefix, names[k]);
        int rc = flow_out_open(E->c, part, FLOW_PART_BYTES, &E->out[k]);
        if (rc) return rc;
        flow_buf h;
        buf_init(&h);
        tok_write_header(&h, magic[k], k == 0 ? (uint32_t)width : 0, 0);
        if (k == 1) {
            uint64_t zero = 0;
            buf_add(&h, &zero, 8);      /* offsets[0] */
        }
        rc = flow_out_stream_write(E->out[k], h.data, h.len);
        buf_release(&h);
        if (rc) return rc;
    }
    return 0;
}

static int close_outputs(enc_state *E, uint64_t nids, uint64_t nseq, int ok)
{
    uint64_t count[4] = {nids, nseq + 1, nseq, nseq};
    int rc = 0;
    for (int k = 0; k < 4; k++) {
        if (!E->out[k]) continue;
        if (ok && !rc) rc = flow_out_stream_patch(E->out[k], 16, &count[k], 8);
        int rc2 = flow_out_stream_close(E->out[k]);
        if (!rc) rc = rc2;
    }
    return rc;
}

/* Encodes text in blocks of about block_bytes, streaming the four parts. */
static int encode_stream(enc_state *E, const tok_tokenizer *t, int max_len, int threads,
                         size_t block_bytes, tok_batch *sum)
{
    flow_ctx *c = E->c;
    char part[256];
    prefixed(part, sizeof part, E->prefix, "text");
    line_stream text;
    int rc = line_stream_open(c, "corpus", 0, part, &text);
    if (rc) return rc;
    int width = tok_ids_width(tok_vocab_size(t));
    if (!rc) rc = open_outputs(E, width);
    flow_buf ids, offs, lab, grp;
    buf_init(&ids), buf_init(&offs), buf_init(&lab), buf_init(&grp);
    char *block;
    size_t n;
    while (!rc && !(rc = line_stream_block(&text, block_bytes, &block, &n)) && n) {
        const char *cr = memchr(block, '\r', n);
        if (cr) {
            uint64_t line = sum->nseq + 1;
            for (const char *p = block; p < cr; p++) line += *p == '\n';
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "corpus part %s line %llu contains a carriage return",
                               part, (unsigned long long)line);
            break;
        }
        tok_batch b;
        tok_encode_lines(t, block, n, max_len, threads, &b);
        tok_write_ids_payload(&ids, b.ids, b.nids, width);
        for (uint64_t i = 1; i <= b.nseq; i++) {
            uint64_t o = sum->nids + b.offsets[i];
            buf_add(&offs, &o, 8);
        }
        rc = block_labels(E, sum->nseq, b.nseq, &lab, &grp);
        flow_buf *bufs[4] = {&ids, &offs, &lab, &grp};
        for (int k = 0; k < 4 && !rc; k++) {
            rc = flow_out_stream_write(E->out[k], bufs[k]->data, bufs[k]->len);
            bufs[k]->len = 0;
        }
        sum->nseq += b.nseq;
        sum->nids += b.nids;
        sum->truncated += b.truncated;
        sum->unk_tokens += b.unk_tokens;
        sum->chars += b.chars;
        sum->content_tokens += b.content_tokens;
        tok_batch_release(&b);
        flow_progress(c, -1, "encoding %s: %llu sequences", part, (unsigned long long)sum->nseq);
    }
    if (!rc && E->has_units && sum->nseq != E->nunits)
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "corpus %sunits has %llu lines but %stext has %llu "
                           "units; the corpus is inconsistent, rebuild its producer", E->prefix,
                           (unsigned long long)E->nunits, E->prefix, (unsigned long long)sum->nseq);
    int rc2 = close_outputs(E, sum->nids, sum->nseq, !rc);
    if (!rc) rc = rc2;
    buf_release(&ids), buf_release(&offs), buf_release(&lab), buf_release(&grp);
    line_stream_close(&text);
    return rc;
}

/* group_names (with units) and label_names (with a labels part). */
static int write_names(enc_state *E)
{
    char part[256];
    flow_buf b;
    buf_init(&b);
    int rc = 0;
    if (E->has_units) {
        for (size_t i = 0; i < E->ngroups; i++) buf_printf(&b, "%s\n", E->groups[i]);
        prefixed(part, sizeof part, E->prefix, "group_names");
        rc = flow_out_write(E->c, part, FLOW_PART_BYTES, b.data ? b.data : "", b.len);
        b.len = 0;
    }
    if (!rc && E->has_units && E->have_names) {
        for (int k = 0; k < E->lab.nlabels; k++) buf_printf(&b, "%s\n", E->lab.labels[k]);
        prefixed(part, sizeof part, E->prefix, "label_names");
        rc = flow_out_write(E->c, part, FLOW_PART_BYTES, b.data ? b.data : "", b.len);
    }
    buf_release(&b);
    return rc ? flow_ctx_fail(E->c, rc, "cannot write %s", part) : 0;
}

static int encode_prefix(flow_ctx *c, const tok_tokenizer *t, const char *prefix, int max_len,
                         int threads, tok_batch *total)
{
    int rc = corpus_check(c, "corpus", 0, prefix);   /* corpus.json, when a corpus */
    if (rc)
        return rc;
    enc_state E;
    memset(&E, 0, sizeof E);
    E.c = c;
    E.prefix = prefix;
    char part[256];
    prefixed(part, sizeof part, prefix, "units");
    E.has_units = flow_in_has(c, "corpus", 0, part);
    if (E.has_units) rc = read_labels_groups(&E);
    if (!rc && E.has_units) rc = line_stream_open(c, "corpus", 0, part, &E.units);
    /* text blocks of an eighth of the budget: the block, its ids and the
     * tokenizer's per-thread work stay well inside it */
    tok_batch b;
    memset(&b, 0, sizeof b);
    if (!rc) rc = encode_stream(&E, t, max_len, threads, flow_memory_budget(c) / 8, &b);
    if (!rc) rc = write_names(&E);
    enc_release(&E);
    if (!rc) {
        char name[256];
        const char *p = *prefix ? prefix : "";
        uint64_t l = strlen(p);
        char dot[64];
        snprintf(dot, sizeof dot, "%.*s%s", (int)(l ? l - 1 : 0), p, l ? "." : "");
#define M(n, v) (snprintf(name, sizeof name, "%s%s", dot, n), flow_metric(c, name, (double)(v)))
        M("sequences", b.nseq);
        M("tokens", b.nids);
        M("truncated", b.truncated);
        M("unk", b.unk_tokens);
        M("chars_per_token", b.content_tokens ? (double)b.chars / (double)b.content_tokens : 0);
#undef M
        flow_log(c, "%s: %llu sequences, %llu ids, %llu truncated to %d, %llu [UNK], %.3f chars/token",
                 *prefix ? prefix : "corpus", (unsigned long long)b.nseq,
                 (unsigned long long)b.nids, (unsigned long long)b.truncated, max_len,
                 (unsigned long long)b.unk_tokens,
                 b.content_tokens ? (double)b.chars / (double)b.content_tokens : 0.0);
        total->nseq += b.nseq;
        total->nids += b.nids;
        total->truncated += b.truncated;
        total->unk_tokens += b.unk_tokens;
        total->chars += b.chars;
        total->content_tokens += b.content_tokens;
    }
    return rc;
}

static int encode_run(flow_ctx *c)
{
    tok_tokenizer *t;
    int rc = tok_load_input(c, "tokenizer", 0, &t);
    if (rc)
        return rc;
    int max_len = (int)flow_param_int(c, "max_len");
    int threads = flow_threads(c);
    tok_batch total;
    memset(&total, 0, sizeof total);
    static const char *const prefixes[] = {"", "train/", "dev/", "test/"};
    int found = 0;
    for (int i = 0; i < 4 && !rc; i++) {
        const char *prefix = prefixes[i];
        char name[64];
        snprintf(name, sizeof name, "%stext", prefix);
        if (!flow_in_has(c, "corpus", 0, name))
            continue;
        found++;
        flow_progress(c, -1, "encoding %s", name);
        rc = encode_prefix(c, t, prefix, max_len, threads, &total);
    }
    if (!rc && !found)
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'corpus' has no `text` part (nor train/text, "
                           "dev/text, test/text); bind a clean or split node");
    if (!rc) {
        flow_metric(c, "total.sequences", (double)total.nseq);
        flow_metric(c, "total.tokens", (double)total.nids);
        flow_metric(c, "total.truncated", (double)total.truncated);
        flow_metric(c, "total.unk", (double)total.unk_tokens);
        flow_metric(c, "total.chars_per_token",
                    total.content_tokens ? (double)total.chars / (double)total.content_tokens : 0);
        flow_metric(c, "vocab_size", tok_vocab_size(t));
        flow_metric(c, "id_width", tok_ids_width(tok_vocab_size(t)));
    }
    tok_free(t);
    return rc;
}

const flow_stage stage_encode = {
    .name = "encode",
    .version = 2,   /* 2: merge heap sized for 3k entries (0d74546: the old one overflowed) */
    .help = "encode corpus units into [CLS] ... [SEP] id sequences (ids, offsets, labels, groups)",
    .params = encode_params, .nparams = sizeof encode_params / sizeof *encode_params,
    .inputs = encode_inputs, .ninputs = sizeof encode_inputs / sizeof *encode_inputs,
    .outputs = encode_outputs, .noutputs = sizeof encode_outputs / sizeof *encode_outputs,
    .res = {.threads = 0, .memory_mb = 512},
    .run = encode_run,
};
