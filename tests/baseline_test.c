/* baseline_test.c — the baseline's pieces: char n-gram TF-IDF features,
 * the SGD linear classifiers (logreg and SVM) on separable synthetic text
 * (high held-out accuracy), determinism (same seed -> same weight bytes),
 * and the artifact round trip through the shared loader (safetensors
 * weights; older and newer artifact versions refused). */
#include "stages/model/classifier.h"
#include "stages/model/clf_internal.h"
#include "test.h"

#include <math.h>

static uint64_t rng = 12345;
static uint32_t rnd(uint32_t n)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33) % n;
}

/* Class k draws from a shared pool of Han characters plus 4 characters of
 * its own, so the classes are separable by unigrams and bigrams. */
static void make_corpus(size_t n, int ncls, char ***text, size_t **len, int **y)
{
    *text = malloc(n * sizeof **text);
    *len = malloc(n * sizeof **len);
    *y = malloc(n * sizeof **y);
    for (size_t i = 0; i < n; i++) {
        int k = (int)(i % (size_t)ncls);
        flow_buf b;
        buf_init(&b);
        int L = 20 + (int)rnd(30);
        for (int t = 0; t < L; t++) {
            uint32_t cp = rnd(5) == 0 ? 0x4e00 + 200 + (uint32_t)k * 4 + rnd(4) : 0x4e00 + rnd(150);
            char u[4];
            buf_add(&b, u, (size_t)utf8_encode(cp, u));
        }
        buf_addc(&b, 0);
        (*len)[i] = b.len - 1;
        (*text)[i] = buf_detach(&b, NULL);
        (*y)[i] = k;
    }
}

static void free_corpus(size_t n, char **text, size_t *len, int *y)
{
    for (size_t i = 0; i < n; i++) free(text[i]);
    free(text);
    free(len);
    free(y);
}

static void test_features(void)
{
    tfidf_config tc = { 1, 3, 12, 1 };
    const char *t[2] = { "abcab", "" };
    size_t l[2] = { 5, 0 };
    sp_mat x;
    tfidf_counts(&tc, t, l, 2, &x);
    /* "abcab": unigrams a,b,c (a and b twice), bigrams ab(2) bc ca,
     * trigrams abc bca cab: 11 n-grams, 8 distinct (collisions aside). */
    float total = 0;
    for (size_t q = x.rowptr[0]; q < x.rowptr[1]; q++) total += x.val[q];
    CHECK(fabsf(total - 12.0f) < 1e-6f);   /* 5 + 4 + 3 n-grams */
    CHECK(x.rowptr[1] - x.rowptr[0] <= 9 && x.rowptr[1] - x.rowptr[0] >= 7);
    CHECK(x.rowptr[2] == x.rowptr[1]);     /* empty text, empty row */
    for (size_t q = x.rowptr[0] + 1; q < x.rowptr[1]; q++) CHECK(x.idx[q - 1] < x.idx[q]);
    float *idf = malloc(((size_t)1 << tc.hash_bits) * sizeof *idf);
    tfidf_fit_idf(&tc, &x, 1, idf);
    tfidf_transform(&tc, idf, &x);
    double ss = 0;
    for (size_t q = x.rowptr[0]; q < x.rowptr[1]; q++) ss += (double)x.val[q] * x.val[q];
    CHECK(fabs(ss - 1.0) < 1e-5);          /* rows are L2-normalised */
    /* min_df 2 drops everything seen in one unit only */
    tfidf_fit_idf(&tc, &x, 2, idf);
    for (size_t q = x.rowptr[0]; q < x.rowptr[1]; q++) CHECK(idf[x.idx[q]] == 0.0f);
    free(idf);
    sp_release(&x);
}

static double train_and_score(int loss, uint64_t seed, linear_model *out)
{
    const int C = 4;
    size_t ntr = 400, nte = 200;
    char **ttr, **tte;
    size_t *ltr, *lte;
    int *ytr, *yte;
    make_corpus(ntr, C, &ttr, &ltr, &ytr);
    make_corpus(nte, C, &tte, &lte, &yte);
    tfidf_config tc = { 1, 2, 14, 1 };
    size_t D = (size_t)1 << tc.hash_bits;
    float *idf = malloc(D * sizeof *idf);
    sp_mat xtr, xte;
    tfidf_counts(&tc, (const char *const *)ttr, ltr, ntr, &xtr);
    tfidf_fit_idf(&tc, &xtr, 2, idf);
    tfidf_transform(&tc, idf, &xtr);
    tfidf_counts(&tc, (const char *const *)tte, lte, nte, &xte);
    tfidf_transform(&tc, idf, &xte);
    linear_init(out, C, D);
    linear_opts o = { .loss = loss, .l2 = 1e-4, .epochs = 5, .seed = seed };
    linear_train(out, &xtr, ytr, &o);
    int *pred = malloc(nte * sizeof *pred);
    linear_predict(out, &xte, pred);
    clf_metrics m;
    metrics_compute(&m, yte, pred, nte, C);
    double acc = m.accuracy;
    metrics_release(&m);
    free(pred);
    free(idf);
    sp_release(&xtr);
    sp_release(&xte);
    free_corpus(ntr, ttr, ltr, ytr);
    free_corpus(nte, tte, lte, yte);
    return acc;
}

static void test_training(void)
{
    for (int loss = LOSS_LOG; loss <= LOSS_HINGE; loss++) {
        linear_model a, b, c;
        rng = 777;
        double acc = train_and_score(loss, 1, &a);
        CHECK_MSG(acc > 0.95, "loss %d: held-out accuracy %.3f on separable data", loss, acc);
        rng = 777;
        double acc2 = train_and_score(loss, 1, &b);
        CHECK(acc == acc2);
        CHECK(memcmp(a.W, b.W, (size_t)a.ncls * a.dim * sizeof(float)) == 0);
        CHECK(memcmp(a.b, b.b, (size_t)a.ncls * sizeof(float)) == 0);
        rng = 777;
        train_and_score(loss, 2, &c);   /* another shuffling seed: other weights */
        CHECK(memcmp(a.W, c.W, (size_t)a.ncls * a.dim * sizeof(float)) != 0);
        linear_release(&a);
        linear_release(&b);
        linear_release(&c);
    }
}

/* An in-memory artifact: parts by name. */
typedef struct mem_art { const char *names[4]; flow_buf data[4]; int n; } mem_art;

static int mem_read(void *arg, const char *part, char **data, size_t *len, flow_err *err)
{
    mem_art *a = arg;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->names[i], part) == 0) {
            *data = malloc(a->data[i].len + 1);
            memcpy(*data, a->data[i].data, a->data[i].len);
            (*data)[a->data[i].len] = 0;
            *len = a->data[i].len;
            return 0;
        }
    return flow_fail(err, FLOW_E_NOTFOUND, "no part '%s'", part);
}

/* A tfidf-linear artifact written the way the baseline stage writes it,
 * loaded back by the shared loader: same scores as the linear model,
 * probabilities that sum to 1, versions checked. */
static void test_artifact_roundtrip(void)
{
    tfidf_config tc = { 1, 2, 10, 1 };
    size_t D = (size_t)1 << tc.hash_bits;
    float *idf = malloc(D * sizeof *idf);
    for (size_t j = 0; j < D; j++) idf[j] = 1.0f + (float)(j % 7) * 0.1f;
    linear_model lm;
    linear_init(&lm, 2, D);
    for (size_t j = 0; j < 2 * D; j++) lm.W[j] = (float)((int)(j * 2654435761u % 201) - 100) / 50.0f;
    lm.b[0] = 0.25f; lm.b[1] = -0.5f;
    char *labels[2] = { "甲", "乙" };
    mem_art a = { { "model.json", "weights" }, { { 0 } }, 2 };
    for (int version = 1; version <= 3; version++) {
        buf_init(&a.data[0]);
        buf_init(&a.data[1]);
        model_json_write(&a.data[0], "tfidf-linear",
                         "{\"ngram_min\":1,\"ngram_max\":2,\"hash_bits\":10,\"sublinear_tf\":true}",
                         labels, 2, NULL);
        char *v = strstr(a.data[0].data, "\"version\":2");
        CHECK(v != NULL);
        if (v) v[10] = (char)('0' + version);
        st_file w;
        st_init(&w);
        int64_t dD[1] = { (int64_t)D }, dW[2] = { 2, (int64_t)D }, dB[1] = { 2 };
        st_add(&w, "idf", ST_F32, 1, dD, idf);
        st_add(&w, "W", ST_F32, 2, dW, lm.W);
        st_add(&w, "b", ST_F32, 1, dB, lm.b);
        st_serialize(&w, &a.data[1]);
        st_release(&w);
        part_source src;
        memset(&src, 0, sizeof src);
        src.read = mem_read;
        src.arg = &a;
        snprintf(src.what, sizeof src.what, "memory");
        clf_model *m = NULL;
        flow_err err = { 0 };
        int rc = clf_load(&src, &m, &err);
        if (version != 2) {
            CHECK(rc == FLOW_E_CORRUPT);
            CHECK_CONTAINS(err.msg, version == 1 ? "older" : "newer");
            CHECK_CONTAINS(err.msg, "rebuild");
        } else {
            CHECK_OK(rc, err);
            CHECK_STREQ(clf_kind(m), "tfidf-linear");
            CHECK(clf_nlabels(m) == 2);
            CHECK_STREQ(clf_label(m, 1), "乙");
            const char *t[2] = { "甲乙丙丁", "乙乙乙" };
            size_t l[2] = { strlen(t[0]), strlen(t[1]) };
            float p[4];
            CHECK_OK(clf_predict(m, t, l, 2, 1, p, &err), err);
            sp_mat x;
            tfidf_counts(&tc, t, l, 2, &x);
            tfidf_transform(&tc, idf, &x);
            for (int r = 0; r < 2; r++) {
                float z[2];
                linear_scores(&lm, &x, (size_t)r, z);
                softmax_inplace(z, 2);
                CHECK(fabsf(p[2 * r] + p[2 * r + 1] - 1.0f) < 1e-6f);
                CHECK(fabsf(p[2 * r] - z[0]) < 1e-6f && fabsf(p[2 * r + 1] - z[1]) < 1e-6f);
            }
            sp_release(&x);
            clf_free(m);
        }
        buf_release(&a.data[0]);
        buf_release(&a.data[1]);
    }
    linear_release(&lm);
    free(idf);
}

int main(void)
{
    test_features();
    test_training();
    test_artifact_roundtrip();
    return test_summary("baseline_test");
}
