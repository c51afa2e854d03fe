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

/* Splits data (modified in place) into lines; returns their count. */
static size_t split_lines(char *data, size_t len, char ***out)
{
    size_t n = 0, cap = 1024;
    char **v = xmalloc(cap * sizeof *v);
    for (size_t i = 0; i < len;) {
        char *nl = memchr(data + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - data) : len;
        if (n == cap) {
            cap *= 2;
            v = xrealloc(v, cap * sizeof *v);
        }
        v[n++] = data + i;
        data[e < len ? e : len] = 0;
        i = e + 1;
    }
    *out = v;
    return n;
}

/* Label and group ids of every unit from the `units` (and `labels`) parts. */
static int label_groups(flow_ctx *c, const char *prefix, uint64_t nseq,
                        int32_t *labels, int32_t *groups)
{
    char part[256];
    for (uint64_t i = 0; i < nseq; i++)
        labels[i] = groups[i] = -1;
    snprintf(part, sizeof part, "%sunits", prefix);
    if (!flow_in_has(c, "corpus", 0, part))
        return 0;
    char *units = NULL, *names = NULL;
    size_t ulen, nlen = 0;
    int rc = flow_in_read(c, "corpus", 0, part, &units, &ulen);
    if (rc)
        return flow_ctx_fail(c, rc, "cannot read corpus part %s", part);
    char **ulines, **nlines = NULL;
    size_t nu = split_lines(units, ulen, &ulines), nn = 0;
    snprintf(part, sizeof part, "%slabels", prefix);
    if (!flow_in_has(c, "corpus", 0, part))
        snprintf(part, sizeof part, "labels");  /* one list shared by every split */
    if (flow_in_has(c, "corpus", 0, part)) {
        rc = flow_in_read(c, "corpus", 0, part, &names, &nlen);
        if (rc) {
            free(units);
            free(ulines);
            return flow_ctx_fail(c, rc, "cannot read corpus part %s", part);
        }
        nn = split_lines(names, nlen, &nlines);
    }
    if (nu != nseq) {
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "corpus %sunits has %zu lines but %stext has %llu "
                           "units; the corpus is inconsistent, rebuild its producer",
                           prefix, nu, prefix, (unsigned long long)nseq);
        goto out;
    }
    /* groups: sorted distinct names */
    char **gsorted = xmalloc((nu ? nu : 1) * sizeof *gsorted);
    char **glab = xmalloc((nu ? nu : 1) * sizeof *glab);
    for (size_t i = 0; i < nu && !rc; i++) {
        char *lab = ulines[i], *tab = strchr(lab, '\t');
        if (!tab) {
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "corpus %sunits line %zu has no tab; expected "
                               "label\\tgroup\\tdoc", prefix, i + 1);
            break;
        }
        *tab = 0;
        char *grp = tab + 1, *tab2 = strchr(grp, '\t');
        if (tab2)
            *tab2 = 0;
        glab[i] = grp;
        gsorted[i] = grp;
        if (*lab) {
            for (size_t k = 0; k < nn; k++)
                if (strcmp(nlines[k], lab) == 0) {
                    labels[i] = (int32_t)k;
                    break;
                }
            if (labels[i] < 0)
                rc = flow_ctx_fail(c, FLOW_E_INPUT, "corpus %sunits line %zu: label '%s' is not "
                                   "in %slabels (%zu names)", prefix, i + 1, lab, prefix, nn);
        }
    }
    if (!rc) {
        qsort(gsorted, nu, sizeof *gsorted, cmp_str);
        size_t ng = 0;
        for (size_t i = 0; i < nu; i++)
            if (*gsorted[i] && (ng == 0 || strcmp(gsorted[ng - 1], gsorted[i]) != 0))
                gsorted[ng++] = gsorted[i];
        for (size_t i = 0; i < nu; i++) {
            if (!*glab[i])
                continue;
            size_t lo = 0, hi = ng;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (strcmp(gsorted[mid], glab[i]) < 0)
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
        if (!rc && names) {
            snprintf(part, sizeof part, "%slabel_names", prefix);
            /* names was split in place: rebuild it */
            for (size_t k = 0; k < nn; k++)
                buf_printf(&b, "%s\n", nlines[k]);
            rc = flow_out_write(c, part, FLOW_PART_BYTES, b.data ? b.data : "", b.len);
            buf_release(&b);
        }
        if (rc)
            rc = flow_ctx_fail(c, rc, "cannot write %s", part);
    }
    free(gsorted);
    free(glab);
out:
    free(units);
    free(ulines);
    free(names);
    free(nlines);
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
    free(text);
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
        rc = label_groups(c, prefix, b.nseq, labels, groups);
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
    .version = 1,
    .help = "encode corpus units into [CLS] ... [SEP] id sequences (ids, offsets, labels, groups)",
    .params = encode_params, .nparams = sizeof encode_params / sizeof *encode_params,
    .inputs = encode_inputs, .ninputs = sizeof encode_inputs / sizeof *encode_inputs,
    .outputs = encode_outputs, .noutputs = sizeof encode_outputs / sizeof *encode_outputs,
    .res = {.threads = 0},
    .run = encode_run,
};
