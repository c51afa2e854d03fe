/* metrics.c — classification metrics shared by baseline, finetune,
 * evaluate and `flow eval`: confusion matrix, accuracy, per-class
 * precision / recall / F1 and macro-F1. */
#include "classifier.h"

#include <stdlib.h>
#include <string.h>

void metrics_compute(clf_metrics *m, const int *gold, const int *pred, size_t n, int ncls)
{
    memset(m, 0, sizeof *m);
    m->ncls = ncls;
    m->confusion = xcalloc((size_t)ncls * (size_t)ncls, sizeof *m->confusion);
    m->support = xcalloc((size_t)ncls, sizeof *m->support);
    m->precision = xcalloc((size_t)ncls, sizeof(double));
    m->recall = xcalloc((size_t)ncls, sizeof(double));
    m->f1 = xcalloc((size_t)ncls, sizeof(double));
    for (size_t i = 0; i < n; i++) {
        if (gold[i] < 0) continue;
        if (gold[i] >= ncls || pred[i] < 0 || pred[i] >= ncls)
            FLOW_BUG("metrics: label %d / prediction %d outside [0,%d)", gold[i], pred[i], ncls);
        m->confusion[(size_t)gold[i] * ncls + pred[i]]++;
        m->support[gold[i]]++;
        m->n++;
        if (gold[i] == pred[i]) m->correct++;
    }
    m->accuracy = m->n ? (double)m->correct / (double)m->n : 0.0;
    int counted = 0;
    double sum = 0;
    for (int k = 0; k < ncls; k++) {
        int64_t tp = m->confusion[(size_t)k * ncls + k], predicted = 0;
        for (int g = 0; g < ncls; g++) predicted += m->confusion[(size_t)g * ncls + k];
        m->precision[k] = predicted ? (double)tp / (double)predicted : 0.0;
        m->recall[k] = m->support[k] ? (double)tp / (double)m->support[k] : 0.0;
        double pr = m->precision[k] + m->recall[k];
        m->f1[k] = pr > 0 ? 2 * m->precision[k] * m->recall[k] / pr : 0.0;
        if (m->support[k] || predicted) { sum += m->f1[k]; counted++; }
    }
    m->macro_f1 = counted ? sum / counted : 0.0;
}

void metrics_release(clf_metrics *m)
{
    free(m->confusion);
    free(m->support);
    free(m->precision);
    free(m->recall);
    free(m->f1);
    memset(m, 0, sizeof *m);
}
