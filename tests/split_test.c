/* split_test.c — split_assign (stages/text/split.c): groups never straddle
 * splits (one assignment per group), labels are stratified, the result is a
 * function of the seed, and impossible requests fail. */
#include "test.h"
#include "stages/text/text.h"

#include <math.h>

#define NG 300
#define NL 4

/* Synthetic labelled groups: label l has groups of varied sizes, a few
 * large ones (a big law) among many small ones. */
static void make_counts(int *counts, unsigned seed)
{
    memset(counts, 0, sizeof(int) * NG * NL);
    for (int g = 0; g < NG; g++) {
        seed = seed * 1103515245u + 12345u;
        int l = g % NL;
        int size = 1 + (int)((seed >> 16) % 40);
        if (g % 37 == 0) size = 400;   /* big groups */
        counts[g * NL + l] = size;
        if (g % 11 == 0) counts[g * NL + (l + 1) % NL] += 3;   /* some mixed groups */
    }
}

int main(void)
{
    static int counts[NG * NL], a1[NG], a2[NG], a3[NG];
    make_counts(counts, 7);
    double ratios[3] = {0.8, 0.1, 0.1};
    flow_err err = {0, {0}};
    CHECK_OK(split_assign(NG, NL, counts, 3, ratios, 42, a1, &err), err);
    CHECK_OK(split_assign(NG, NL, counts, 3, ratios, 42, a2, &err), err);
    CHECK_OK(split_assign(NG, NL, counts, 3, ratios, 43, a3, &err), err);
    CHECK(memcmp(a1, a2, sizeof a1) == 0);          /* deterministic */
    CHECK(memcmp(a1, a3, sizeof a1) != 0);          /* the seed matters */

    /* stratification: per label, each split's share within 3 points of
     * its ratio (groups are at most ~10% of a label here) */
    for (int l = 0; l < NL; l++) {
        double tot = 0, per[3] = {0, 0, 0};
        for (int g = 0; g < NG; g++) {
            CHECK(a1[g] >= 0 && a1[g] < 3);
            tot += counts[g * NL + l];
            per[a1[g]] += counts[g * NL + l];
        }
        for (int s = 0; s < 3; s++)
            CHECK_MSG(fabs(per[s] / tot - ratios[s]) < 0.03, "label %d split %d share %.3f, want %.2f", l, s,
                      per[s] / tot, ratios[s]);
    }

    /* every split gets a group even when one group dominates */
    int few[3 * 1] = {1000, 1, 1};
    int fa[3];
    CHECK_OK(split_assign(3, 1, few, 3, ratios, 1, fa, &err), err);
    CHECK(fa[0] != fa[1] && fa[1] != fa[2] && fa[0] != fa[2]);

    /* a label with 3+ groups appears in every split, even when the greedy
     * pass would put all its (tiny) groups in train */
    int mix[8 * 2] = {100, 0, 100, 0, 100, 0, 100, 0, 100, 0, 0, 1, 0, 1, 0, 1};
    int ma[8];
    CHECK_OK(split_assign(8, 2, mix, 3, ratios, 5, ma, &err), err);
    int seen[3] = {0, 0, 0};
    for (int g = 5; g < 8; g++) seen[ma[g]] = 1;
    CHECK(seen[0] && seen[1] && seen[2]);

    /* two splits */
    double r2[2] = {0.5, 0.5};
    CHECK_OK(split_assign(NG, NL, counts, 2, r2, 9, a1, &err), err);
    for (int g = 0; g < NG; g++) CHECK(a1[g] == 0 || a1[g] == 1);

    /* fewer groups than splits */
    CHECK(split_assign(2, 1, few, 3, ratios, 1, fa, &err) == FLOW_E_PARAM);
    CHECK_CONTAINS(err.msg, "2 groups cannot fill 3 splits");
    return test_summary("split_test");
}
