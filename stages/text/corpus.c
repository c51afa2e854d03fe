/* corpus.c — the shared parser of the corpus format (stages.h): text,
 * units and labels parts produced by clean and split.  Consumers (terms,
 * bpe, encode, baseline, ...) call corpus_read (corpus_read.c) instead of
 * re-parsing.  Pure: no stage API here, so tests link it alone. */
#include "stages/stages.h"

#include <stdlib.h>
#include <string.h>

void corpus_format_json(flow_buf *b)
{
    buf_printf(b, "{\"format\":\"flow-corpus\",\"version\":%d}\n", CORPUS_FORMAT_VERSION);
}

int corpus_format_check(const char *json, size_t len, const char *what, flow_err *err)
{
    json_value *v = NULL;
    int rc = json_parse(json, len, what, &v, err);
    if (rc) return rc;
    const char *fmt = json_str(json_get(v, "format"), NULL);
    double ver = json_num(json_get(v, "version"), -1);
    if (!fmt || strcmp(fmt, "flow-corpus") != 0)
        rc = flow_fail(err, FLOW_E_CORRUPT, "%s: \"format\" is %s%s%s, expected \"flow-corpus\"", what,
                       fmt ? "\"" : "", fmt ? fmt : "missing", fmt ? "\"" : "");
    else if (ver != (double)(int)ver || ver < 1)
        rc = flow_fail(err, FLOW_E_CORRUPT, "%s: corpus format version %g is too old or invalid (this flow "
                       "reads 1..%d): rebuild the corpus's producer (clean, split) with this flow", what, ver,
                       CORPUS_FORMAT_VERSION);
    else if (ver > CORPUS_FORMAT_VERSION)
        rc = flow_fail(err, FLOW_E_CORRUPT, "%s: corpus format version %d is newer than this flow reads "
                       "(1..%d): update flow", what, (int)ver, CORPUS_FORMAT_VERSION);
    json_free(v);
    return rc;
}

void corpus_release(flow_corpus *c)
{
    free(c->text);
    free(c->units);
    free(c->labels_buf);
    free(c->unit_off);
    free(c->unit_len);
    free(c->label);
    free(c->group);
    free(c->doc);
    free(c->label_id);
    free(c->labels);
    memset(c, 0, sizeof *c);
}

static size_t count_lines(const char *s, size_t n)
{
    size_t k = 0;
    for (const char *p = s; (p = memchr(p, '\n', n - (size_t)(p - s))) != NULL; p++) k++;
    if (n && s[n - 1] != '\n') k++;
    return k;
}

static int find_label(const flow_corpus *c, const char *name)
{
    /* labels are few (classes); linear search is fine */
    for (int i = 0; i < c->nlabels; i++)
        if (strcmp(c->labels[i], name) == 0) return i;
    return -1;
}

int corpus_unit_parse(const flow_corpus *c, char *ul, size_t lineno, const char **label,
                      const char **group, const char **doc, int *label_id, flow_err *err)
{
    char *t1 = strchr(ul, '\t');
    char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
    if (!t1 || !t2 || strchr(t2 + 1, '\t'))
        return flow_fail(err, FLOW_E_CORRUPT,
                         "corpus part units line %zu: expected 3 tab-separated fields label \\t group \\t doc",
                         lineno);
    *t1 = 0, *t2 = 0;
    *label = ul, *group = t1 + 1, *doc = t2 + 1;
    if (*ul == 0) {
        *label_id = -1;
    } else if ((*label_id = find_label(c, ul)) < 0) {
        return flow_fail(err, FLOW_E_CORRUPT, "corpus part units line %zu: label '%s' is not in part labels",
                         lineno, ul);
    }
    return 0;
}

int corpus_parse(flow_corpus *c, char *text, size_t text_len, char *units, size_t units_len,
                 char *labels, size_t labels_len, flow_err *err)
{
    memset(c, 0, sizeof *c);
    c->text = text, c->text_len = text_len;
    c->units = units, c->units_len = units_len;
    c->labels_buf = labels;
    if (text_len && text[text_len - 1] != '\n') {
        flow_fail(err, FLOW_E_CORRUPT, "corpus part text does not end with a newline");
        goto fail;
    }
    size_t n = count_lines(text, text_len);
    size_t nu = count_lines(units, units_len);
    if (n != nu) {
        flow_fail(err, FLOW_E_CORRUPT, "corpus parts disagree: text has %zu lines, units has %zu", n, nu);
        goto fail;
    }
    if (n > (size_t)0x7fffffff) {
        flow_fail(err, FLOW_E_CORRUPT, "corpus has %zu units, more than this reader supports", n);
        goto fail;
    }
    c->n = (int)n;
    /* labels */
    if (labels && labels_len) {
        size_t nl = count_lines(labels, labels_len);
        c->labels = xcalloc(nl, sizeof *c->labels);
        char *p = labels, *end = labels + labels_len;
        while (p < end) {
            char *nl_ = memchr(p, '\n', (size_t)(end - p));
            if (nl_) *nl_ = 0;
            if (*p == 0) {
                flow_fail(err, FLOW_E_CORRUPT, "corpus part labels line %d is empty", c->nlabels + 1);
                goto fail;
            }
            if (find_label(c, p) >= 0) {
                flow_fail(err, FLOW_E_CORRUPT, "corpus part labels lists '%s' twice", p);
                goto fail;
            }
            c->labels[c->nlabels++] = p;
            if (!nl_) break;
            p = nl_ + 1;
        }
    }
    c->unit_off = xmalloc((n ? n : 1) * sizeof *c->unit_off);
    c->unit_len = xmalloc((n ? n : 1) * sizeof *c->unit_len);
    c->label = xmalloc((n ? n : 1) * sizeof *c->label);
    c->group = xmalloc((n ? n : 1) * sizeof *c->group);
    c->doc = xmalloc((n ? n : 1) * sizeof *c->doc);
    c->label_id = xmalloc((n ? n : 1) * sizeof *c->label_id);
    size_t tp = 0, up = 0;
    for (size_t i = 0; i < n; i++) {
        char *nl_ = memchr(text + tp, '\n', text_len - tp);
        size_t e = (size_t)(nl_ - text);
        if (memchr(text + tp, '\r', e - tp)) {
            flow_fail(err, FLOW_E_CORRUPT, "corpus part text line %zu contains a carriage return", i + 1);
            goto fail;
        }
        c->unit_off[i] = tp;
        c->unit_len[i] = e - tp;
        text[e] = 0;
        tp = e + 1;

        char *ul = units + up;
        char *ue = memchr(ul, '\n', units_len - up);
        size_t ulen = ue ? (size_t)(ue - ul) : units_len - up;
        ul[ulen] = 0;   /* the '\n' or, for a final unterminated line, the NUL byte past it */
        up += ulen + 1;
        if (corpus_unit_parse(c, ul, i + 1, &c->label[i], &c->group[i], &c->doc[i], &c->label_id[i],
                              err))
            goto fail;
    }
    return 0;
fail:
    corpus_release(c);
    return FLOW_E_CORRUPT;
}
