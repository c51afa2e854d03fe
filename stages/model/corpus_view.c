/* corpus_view.c — a labelled corpus (text + units + labels, format in
 * stages.h) as the classifiers want it: arrays of unit texts, lengths and
 * label ids.  Parsing is the shared corpus reader's (corpus_read). */
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
    free((void *)cv->text);
    free(cv->len);
    free(cv->label);
    for (int i = 0; i < cv->nlabels; i++) free(cv->labels[i]);
    free(cv->labels);
    memset(cv, 0, sizeof *cv);
}

int cview_read(flow_ctx *c, const char *port, int idx, corpus_view *cv)
{
    memset(cv, 0, sizeof *cv);
    flow_corpus fc;
    int rc = corpus_read(c, port, idx, "", &fc);
    if (rc) return rc;
    cv->n = fc.n > 0 ? (size_t)fc.n : 0;
    size_t n1 = cv->n ? cv->n : 1;
    cv->text = xmalloc(n1 * sizeof *cv->text);
    cv->len = xmalloc(n1 * sizeof *cv->len);
    cv->label = xmalloc(n1 * sizeof *cv->label);
    /* the texts are copied into one buffer owned by the view */
    cv->text_buf = xmalloc(fc.text_len + 1);
    memcpy(cv->text_buf, fc.text, fc.text_len);
    cv->text_buf[fc.text_len] = 0;
    for (size_t i = 0; i < cv->n; i++) {
        cv->text[i] = cv->text_buf + fc.unit_off[i];
        cv->len[i] = fc.unit_len[i];
        cv->label[i] = fc.label_id ? fc.label_id[i] : -1;
    }
    if (fc.labels) {
        cv->nlabels = fc.nlabels;
        cv->labels = xmalloc((size_t)(fc.nlabels ? fc.nlabels : 1) * sizeof *cv->labels);
        for (int k = 0; k < fc.nlabels; k++) cv->labels[k] = xstrdup(fc.labels[k]);
    }
    corpus_release(&fc);
    return 0;
}
