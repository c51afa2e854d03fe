/* tfidf.c — character n-gram features for the `baseline` classifier.
 * N-grams of ngram_min..ngram_max code points are hashed into 2^hash_bits
 * buckets (no vocabulary to store; collisions are rare at 2^20), weighted
 * by (sublinear) term frequency times inverse document frequency, and each
 * row is L2-normalised.  The same code featurizes at training and at
 * prediction time, so the classifier artifact needs only the idf vector. */
#include "classifier.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void sp_release(sp_mat *m)
{
    free(m->rowptr);
    free(m->idx);
    free(m->val);
    memset(m, 0, sizeof *m);
}

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void sp_push(sp_mat *m, uint32_t j, float v)
{
    if (m->nnz == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 4096;
        m->idx = xrealloc(m->idx, m->cap * sizeof *m->idx);
        m->val = xrealloc(m->val, m->cap * sizeof *m->val);
    }
    m->idx[m->nnz] = j;
    m->val[m->nnz++] = v;
}

void tfidf_counts(const tfidf_config *cfg, const char *const *text, const size_t *len,
                  size_t n, sp_mat *out)
{
    memset(out, 0, sizeof *out);
    out->nrows = n;
    out->rowptr = xmalloc((n + 1) * sizeof *out->rowptr);
    out->rowptr[0] = 0;
    uint32_t mask = (uint32_t)((1ull << cfg->hash_bits) - 1);
    size_t cpcap = 0, bcap = 0;
    uint32_t *cps = NULL, *buckets = NULL;
    for (size_t r = 0; r < n; r++) {
        const unsigned char *s = (const unsigned char *)text[r];
        size_t L = len[r], ncp = 0;
        if (L + 1 > cpcap) { cpcap = 2 * (L + 1); cps = xrealloc(cps, cpcap * sizeof *cps); }
        for (size_t i = 0; i < L;) {
            uint32_t cp;
            int k = utf8_decode(s + i, L - i, &cp);
            if (k < 0) { cp = 0x110000u + s[i]; k = 1; }   /* stray byte: its own symbol */
            cps[ncp++] = cp;
            i += (size_t)k;
        }
        size_t need = ncp * (size_t)(cfg->ngram_max - cfg->ngram_min + 1) + 1;
        if (need > bcap) { bcap = 2 * need; buckets = xrealloc(buckets, bcap * sizeof *buckets); }
        size_t nb = 0;
        for (int g = cfg->ngram_min; g <= cfg->ngram_max; g++) {
            for (size_t i = 0; i + (size_t)g <= ncp; i++) {
                uint64_t h = 0x9e3779b97f4a7c15ull * (uint64_t)g;
                for (int k = 0; k < g; k++) h = (h ^ cps[i + (size_t)k]) * 0x100000001b3ull;
                buckets[nb++] = (uint32_t)mix64(h) & mask;
            }
        }
        qsort(buckets, nb, sizeof *buckets, cmp_u32);
        for (size_t i = 0; i < nb;) {
            size_t j = i;
            while (j < nb && buckets[j] == buckets[i]) j++;
            sp_push(out, buckets[i], (float)(j - i));
            i = j;
        }
        out->rowptr[r + 1] = out->nnz;
    }
    free(cps);
    free(buckets);
}

void tfidf_fit_idf(const tfidf_config *cfg, const sp_mat *counts, int min_df, float *idf)
{
    size_t D = (size_t)1 << cfg->hash_bits;
    uint32_t *df = xcalloc(D, sizeof *df);
    for (size_t k = 0; k < counts->nnz; k++) df[counts->idx[k]]++;
    double N = (double)counts->nrows;
    for (size_t j = 0; j < D; j++)
        idf[j] = (df[j] == 0 || (int)df[j] < min_df) ? 0.0f
               : (float)(log((1.0 + N) / (1.0 + df[j])) + 1.0);
    free(df);
}

void tfidf_transform(const tfidf_config *cfg, const float *idf, sp_mat *m)
{
    for (size_t r = 0; r < m->nrows; r++) {
        double ss = 0;
        for (size_t k = m->rowptr[r]; k < m->rowptr[r + 1]; k++) {
            float tf = m->val[k];
            if (cfg->sublinear_tf) tf = 1.0f + logf(tf);
            m->val[k] = tf * idf[m->idx[k]];
            ss += (double)m->val[k] * m->val[k];
        }
        if (ss > 0) {
            float inv = (float)(1.0 / sqrt(ss));
            for (size_t k = m->rowptr[r]; k < m->rowptr[r + 1]; k++) m->val[k] *= inv;
        }
    }
}
