/* evaluate_test.c — classification metrics against hand-computed
 * confusion matrices: accuracy, per-class precision / recall / F1, macro-F1
 * over the classes present in gold or predictions, unlabelled units
 * skipped. */
#include "stages/model/classifier.h"
#include "test.h"

#include <math.h>

#define NEAR(a, b) (fabs((a) - (b)) < 1e-9)

static void test_three_classes(void)
{
    int gold[] = { 0, 0, 0, 1, 1, 2, 2, 2, 2, 0, -1 };
    int pred[] = { 0, 1, 0, 1, 2, 2, 2, 0, 2, 0, 1 };
    clf_metrics m;
    metrics_compute(&m, gold, pred, 11, 3);
    /* gold x pred: [3 1 0; 0 1 1; 1 0 3] */
    int64_t expect[9] = { 3, 1, 0, 0, 1, 1, 1, 0, 3 };
    for (int i = 0; i < 9; i++) CHECK_MSG(m.confusion[i] == expect[i], "cell %d: %lld", i, (long long)m.confusion[i]);
    CHECK(m.n == 10 && m.correct == 7);
    CHECK(NEAR(m.accuracy, 0.7));
    CHECK(NEAR(m.precision[0], 0.75) && NEAR(m.precision[1], 0.5) && NEAR(m.precision[2], 0.75));
    CHECK(NEAR(m.recall[0], 0.75) && NEAR(m.recall[1], 0.5) && NEAR(m.recall[2], 0.75));
    CHECK(NEAR(m.f1[0], 0.75) && NEAR(m.f1[1], 0.5) && NEAR(m.f1[2], 0.75));
    CHECK(NEAR(m.macro_f1, 2.0 / 3.0));
    CHECK(m.support[0] == 4 && m.support[1] == 2 && m.support[2] == 4);
    metrics_release(&m);
}

static void test_uneven(void)
{
    /* gold x pred: [1 1; 2 0]: class 0 P 1/3 R 1/2 F1 0.4; class 1 P 0 R 0 F1 0 */
    int gold[] = { 0, 0, 1, 1 };
    int pred[] = { 0, 1, 0, 0 };
    clf_metrics m;
    metrics_compute(&m, gold, pred, 4, 2);
    CHECK(NEAR(m.accuracy, 0.25));
    CHECK(NEAR(m.precision[0], 1.0 / 3.0) && NEAR(m.recall[0], 0.5) && NEAR(m.f1[0], 0.4));
    CHECK(m.f1[1] == 0.0);
    CHECK(NEAR(m.macro_f1, 0.2));
    metrics_release(&m);
}

static void test_absent_classes(void)
{
    /* 4 classes declared; class 3 never occurs: macro over 0..2.  Class 2
     * occurs only as a prediction: it counts with F1 0 (as scikit-learn). */
    int gold[] = { 0, 0, 1, 1 };
    int pred[] = { 0, 2, 1, 1 };
    clf_metrics m;
    metrics_compute(&m, gold, pred, 4, 4);
    CHECK(NEAR(m.f1[0], 2.0 / 3.0) && NEAR(m.f1[1], 1.0) && m.f1[2] == 0.0 && m.f1[3] == 0.0);
    CHECK(NEAR(m.macro_f1, (2.0 / 3.0 + 1.0 + 0.0) / 3.0));
    CHECK(NEAR(m.accuracy, 0.75));
    metrics_release(&m);

    /* nothing labelled */
    int g2[] = { -1, -1 }, p2[] = { 0, 1 };
    metrics_compute(&m, g2, p2, 2, 2);
    CHECK(m.n == 0 && m.accuracy == 0.0 && m.macro_f1 == 0.0);
    metrics_release(&m);
}

static void test_perfect(void)
{
    int gold[] = { 2, 1, 0, 2 };
    clf_metrics m;
    metrics_compute(&m, gold, gold, 4, 3);
    CHECK(m.accuracy == 1.0 && m.macro_f1 == 1.0);
    metrics_release(&m);
}

int main(void)
{
    test_three_classes();
    test_uneven();
    test_absent_classes();
    test_perfect();
    return test_summary("evaluate_test");
}
