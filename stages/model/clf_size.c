/* clf_size.c — how big a loaded classifier is, for the report stage:
 * the number of weights it computes with, whatever their storage (an int8
 * or 4-bit model has as many weights as its fp32 original; their bytes
 * differ, which the report takes from the artifact's `weights` part). */
#include "clf_internal.h"
#include "clf_bert.h"

uint64_t clf_param_count(const clf_model *m)
{
    if (m->kind == CLF_TFIDF) {
        uint64_t D = 1ull << m->tc.hash_bits, C = (uint64_t)m->nlabels;
        return D + C * D + C;           /* idf [D], W [C, D], b [C] */
    }
    if (m->kind == CLF_BERT && m->bert && m->bert->model) return m->bert->model->nparams;
    FLOW_BUG("clf_param_count: model kind %d has no parameter count", m->kind);
    return 0;
}
