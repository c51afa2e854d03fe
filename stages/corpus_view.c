/* corpus_view.c — reads a labelled corpus (text + units + labels, format in
 * stages.h) from a stage input into memory for the classifiers: unit texts
 * and their label ids. */
#include "classifier.h"

#include <stdlib.h>
#include <string.h>

int labels_find(char *const *labels, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(labels[i], name) == 0) return i;
    return -1;
}

void cview_release(corpus_view *cv)
{
    free(cv->text_buf);
    free(cv->text);
    free(cv->len);
    free(cv->label);
    for (int i = 0; i < cv->nlabels; i++) free(cv->labels[i]);
    free(cv->labels);
    memset(cv, 0, sizeof *cv);
}

/* Splits buf (NUL-terminated, len bytes) into lines in place; returns count. */
static size_t split_lines(char *buf, size_t len, char ***lines)
{
    size_t n = 0, cap = 0;
    char **v = NULL;
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != '\n') continue;
        buf[i] = 0;
        if (n == cap) { cap = cap ? 2 * cap : 1024; v = xrealloc(v, cap * sizeof *v); }
        v[n++] = buf + start;
        start = i + 1;
    }
    if (start < len) {   /* last line without '\n' */
        if (n == cap) { cap = cap ? 2 * cap : 1024; v = xrealloc(v, cap * sizeof *v); }
        v[n++] = buf + start;
    }
    *lines = v;
    return n;
}

int cview_read(flow_ctx *c, const char *port, int idx, corpus_view *cv)
{
    memset(cv, 0, sizeof *cv);
    size_t len;
    int rc = flow_in_read(c, port, idx, "text", &cv->text_buf, &len);
    if (rc) return flow_ctx_fail(c, rc, "input '%s': cannot read part 'text' (is it bound to a corpus such as split.train?)", port);
    char **lines;
    cv->n = split_lines(cv->text_buf, len, &lines);
    cv->text = (const char **)lines;
    cv->len = xmalloc((cv->n ? cv->n : 1) * sizeof *cv->len);
    cv->label = xmalloc((cv->n ? cv->n : 1) * sizeof *cv->label);
    for (size_t i = 0; i < cv->n; i++) {
        cv->len[i] = strlen(cv->text[i]);
        cv->label[i] = -1;
    }
    if (!flow_in_has(c, port, idx, "labels") || !flow_in_has(c, port, idx, "units")) return 0;

    char *lbuf, *ubuf;
    size_t llen, ulen;
    if ((rc = flow_in_read(c, port, idx, "labels", &lbuf, &llen))) {
        cview_release(cv);
        return flow_ctx_fail(c, rc, "input '%s': cannot read part 'labels'", port);
    }
    char **lv;
    size_t nl = split_lines(lbuf, llen, &lv);
    cv->nlabels = (int)nl;
    cv->labels = xmalloc((nl ? nl : 1) * sizeof *cv->labels);
    for (size_t i = 0; i < nl; i++) cv->labels[i] = xstrdup(lv[i]);
    free(lv);
    free(lbuf);

    if ((rc = flow_in_read(c, port, idx, "units", &ubuf, &ulen))) {
        cview_release(cv);
        return flow_ctx_fail(c, rc, "input '%s': cannot read part 'units'", port);
    }
    char **uv;
    size_t nu = split_lines(ubuf, ulen, &uv);
    if (nu != cv->n) {
        free(uv);
        free(ubuf);
        size_t n = cv->n;
        cview_release(cv);
        return flow_ctx_fail(c, FLOW_E_INPUT, "input '%s': 'units' has %zu lines but 'text' has %zu units",
                             port, nu, n);
    }
    for (size_t i = 0; i < nu; i++) {
        char *tab = strchr(uv[i], '\t');
        if (tab) *tab = 0;
        if (!uv[i][0]) continue;
        cv->label[i] = labels_find(cv->labels, cv->nlabels, uv[i]);
        if (cv->label[i] < 0) {
            flow_ctx_fail(c, FLOW_E_INPUT, "input '%s': unit %zu has label '%s' which is not in 'labels'",
                          port, i + 1, uv[i]);
            free(uv);
            free(ubuf);
            cview_release(cv);
            return FLOW_E_INPUT;
        }
    }
    free(uv);
    free(ubuf);
    return 0;
}
