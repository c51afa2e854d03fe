/* encode.c — the `encode` stage: turns every corpus found in its `corpus`
 * input (prefix "" for a plain corpus; "train/", "dev/", "test/" for a
 * split: any prefix holding a `text` part) into the ENCODED format of
 * stages.h under the same prefix: ids, offsets, labels, groups, plus
 * label_names (copy of the corpus `labels`, so downstream knows the class
 * names) and group_names (the sorted group names that group ids index).
 * Encoding runs in parallel over units (tok_batch.c). */
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

/* Label and group ids of every unit, from the corpus parts units and
 * labels (prefix's own, else the root `labels`), parsed by the shared
 * corpus reader (corpus_parse, which takes ownership of text and checks
 * that it is aligned with units).  Without a units part (plain text) every
 * id stays -1 and neither label_names nor group_names is written. */
static int label_groups(flow_ctx *c, const char *prefix, char *text, size_t tlen, uint64_t nseq,
                        int32_t *labels, int32_t *groups)
{
    char part[256];
    for (uint64_t i = 0; i < nseq; i++)
        labels[i] = groups[i] = -1;
    snprintf(part, sizeof part, "%sunits", prefix);
    if (!flow_in_has(c, "corpus", 0, part)) {
        free(text);
        return 0;
    }
    char *units = NULL, *names = NULL;
    size_t ulen, nlen = 0;
    int rc = flow_in_read(c, "corpus", 0, part, &units, &ulen);
    if (rc) {
        free(text);
        return flow_ctx_fail(c, rc, "cannot read corpus part %s", part);
    }
    snprintf(part, sizeof part, "%slabels", prefix);
    if (!flow_in_has(c, "corpus", 0, part))
        snprintf(part, sizeof part, "labels");  /* one list shared by every split */
    int have_names = flow_in_has(c, "corpus", 0, part);
    if (have_names && (rc = flow_in_read(c, "corpus", 0, part, &names, &nlen))) {
        free(text);
        free(units);
        return flow_ctx_fail(c, rc, "cannot read corpus part %s", part);
    }
    flow_corpus corp;
    flow_err err = {0, {0}};
    if ((rc = corpus_parse(&corp, text, tlen, units, ulen, names, nlen, &err)) != 0)
        return flow_ctx_fail(c, rc, "corpus %s: %s", *prefix ? prefix : "(root)", err.msg);
    if ((uint64_t)corp.n != nseq) {
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "corpus %sunits has %d lines but %stext has %llu "
                           "units; the corpus is inconsistent, rebuild its producer",
                           prefix, corp.n, prefix, (unsigned long long)nseq);
        corpus_release(&corp);
        return rc;
    }
    /* groups: sorted distinct names */
    size_t nu = (size_t)corp.n, ng = 0;
    const char **gsorted = xmalloc((nu ? nu : 1) * sizeof *gsorted);
    memcpy(gsorted, corp.group, nu * sizeof *gsorted);
    qsort(gsorted, nu, sizeof *gsorted, cmp_str);
    for (size_t i = 0; i < nu; i++)
        if (*gsorted[i] && (ng == 0 || strcmp(gsorted[ng - 1], gsorted[i]) != 0))
            gsorted[ng++] = gsorted[i];
    for (size_t i = 0; i < nu; i++) {
        labels[i] = corp.label_id[i];
        if (!*corp.group[i])
            continue;
        size_t lo = 0, hi = ng;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (strcmp(gsorted[mid], corp.group[i]) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        groups[i] = (int32_t)lo;
    }
    flow_buf b;
    buf_init(&b);
    for (size_t i = 0; i < ng; i++)
        buf_printf(&b, "%s\n", gsorted[i]);
    snprintf(part, sizeof part, "%sgroup_names", prefix);
    rc = flow_out_write(c, part, FLOW_PART_BYTES, b.data ? b.data : "", b.len);
    buf_release(&b);
    if (!rc && have_names) {
        snprintf(part, sizeof part, "%slabel_names", prefix);
        for (int k = 0; k < corp.nlabels; k++)
            buf_printf(&b, "%s\n", corp.labels[k]);
        rc = flow_out_write(c, part, FLOW_PART_BYTES, b.data ? b.data : "", b.len);
        buf_release(&b);
    }
    if (rc)
        rc = flow_ctx_fail(c, rc, "cannot write %s", part);
    free(gsorted);
    corpus_release(&corp);
    return rc;
}

static int write_part(flow_ctx *c, const char *prefix, const char *name, flow_buf *b)
{
    char part[256];
    snprintf(part, sizeof part, "%s%s", prefix, name);
    int rc = flow_out_write(c, part, FLOW_PART_BYTES, b->data ? b->data : "", b->len);
    buf_release(b);
    return rc ? flow_ctx_fail(c, rc, "cannot write part %s", part) : 0;
}

static int encode_prefix(flow_ctx *c, const tok_tokenizer *t, const char *prefix, int max_len,
                         int threads, tok_batch *total)
{
    char part[256];
    snprintf(part, sizeof part, "%stext", prefix);
    char *text;
    size_t len;
    int rc = corpus_check(c, "corpus", 0, prefix);   /* corpus.json, when a corpus */
    if (rc)
        return rc;
    rc = flow_in_read(c, "corpus", 0, part, &text, &len);
    if (rc)
        return flow_ctx_fail(c, rc, "cannot read corpus part %s", part);
    tok_batch b;
    tok_encode_lines(t, text, len, max_len, threads, &b);
    flow_buf out;
    buf_init(&out);
    tok_write_ids(&out, b.ids, b.nids, tok_ids_width(tok_vocab_size(t)));
    rc = write_part(c, prefix, "ids", &out);
    if (!rc) {
        tok_write_offsets(&out, b.offsets, b.nseq);
        rc = write_part(c, prefix, "offsets", &out);
    }
    int32_t *labels = xmalloc((b.nseq ? b.nseq : 1) * sizeof *labels);
    int32_t *groups = xmalloc((b.nseq ? b.nseq : 1) * sizeof *groups);
    if (!rc)
        rc = label_groups(c, prefix, text, len, b.nseq, labels, groups);   /* takes text */
    else
        free(text);
    if (!rc) {
        tok_write_i32(&out, "FLOWLAB\0", labels, b.nseq);
        rc = write_part(c, prefix, "labels", &out);
    }
    if (!rc) {
        tok_write_i32(&out, "FLOWGRP\0", groups, b.nseq);
        rc = write_part(c, prefix, "groups", &out);
    }
    free(labels);
    free(groups);
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
    tok_batch_release(&b);
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
    .res = {.threads = 0},
    .run = encode_run,
};
