/* split_assign.c — the group-to-split assignment behind the `split` stage
 * (split.c): seeded order, greedy best fit of per-label deficits, then
 * fix-ups so no split is empty and well-represented labels reach every
 * split; the best of SPLIT_RESTARTS such passes (orders drawn from the
 * seed) is kept.  Pure (no stage API), declared in text.h. */
#include "text.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Greedy passes tried per split (each from its own seeded order). */
#define SPLIT_RESTARTS 32
/* Groups ahead whose counts row the greedy pass prefetches. */
#define PREFETCH_AHEAD 16

/* Majority label column of group g. */
static int major(const int *counts, int ncols, int g)
{
    int best = 0;
    for (int l = 1; l < ncols; l++)
        if (counts[g * ncols + l] > counts[g * ncols + best]) best = l;
    return best;
}

static int gsize(const int *counts, int ncols, int g)
{
    int t = 0;
    for (int l = 0; l < ncols; l++) t += counts[g * ncols + l];
    return t;
}

/* Moves one group of label column l (or any group when l < 0) into split
 * `to` from the split holding the most such groups (needs >= 2 there and
 * the donor must keep >= 1 group overall); picks the smallest such group. */
static int move_one(int ngroups, int ncols, const int *counts, const int *maj, int nsplits, int *assign,
                    int l, int to)
{
    int *have = xcalloc((size_t)nsplits, sizeof *have), *all = xcalloc((size_t)nsplits, sizeof *all);
    for (int g = 0; g < ngroups; g++) {
        all[assign[g]]++;
        if (l < 0 || maj[g] == l) have[assign[g]]++;
    }
    int donor = -1;
    for (int s = 0; s < nsplits; s++)
        if (s != to && have[s] >= 2 && all[s] >= 2 && (donor < 0 || have[s] > have[donor])) donor = s;
    int pick = -1;
    if (donor >= 0)
        for (int g = 0; g < ngroups; g++)
            if (assign[g] == donor && (l < 0 || maj[g] == l) &&
                (pick < 0 || gsize(counts, ncols, g) < gsize(counts, ncols, pick)))
                pick = g;
    if (pick >= 0) assign[pick] = to;
    free(have);
    free(all);
    return pick >= 0;
}

/* One greedy pass in the order drawn from `seed`, then the fix-ups. */
static void one_pass(int ngroups, int ncols, const int *counts, const int *maj, int nsplits,
                     const double *target, uint64_t seed, int *assign)
{
    double *cur = xcalloc((size_t)nsplits * (size_t)ncols, sizeof *cur);
    /* seeded order: Fisher-Yates over the group ids */
    int *order = xmalloc((size_t)ngroups * sizeof *order);
    for (int g = 0; g < ngroups; g++) order[g] = g;
    uint64_t st = seed;
    for (int i = ngroups - 1; i > 0; i--) {
        int j = (int)(splitmix64_next(&st) % (uint64_t)(i + 1));
        int t = order[i]; order[i] = order[j]; order[j] = t;
    }
    for (int i = 0; i < ngroups; i++) {
        /* the order is random: fetch a group's counts row ahead of its
         * turn (500k groups: 16 MB of rows, beyond the caches) */
        if (i + PREFETCH_AHEAD < ngroups)
            __builtin_prefetch(&counts[(size_t)order[i + PREFETCH_AHEAD] * (size_t)ncols]);
        int g = order[i], best = 0;
        double best_gain = -INFINITY, best_rel = -INFINITY;
        for (int s = 0; s < nsplits; s++) {
            double gain = 0, rel = 0;
            for (int l = 0; l < ncols; l++) {
                double c = counts[g * ncols + l];
                if (c == 0) continue;
                double d = target[s * ncols + l] - cur[s * ncols + l];
                gain += fabs(d) - fabs(d - c);
                rel += c * d / (target[s * ncols + l] > 1e-9 ? target[s * ncols + l] : 1e-9);
            }
            if (gain > best_gain + 1e-9 || (fabs(gain - best_gain) <= 1e-9 && rel > best_rel + 1e-12)) {
                best = s, best_gain = gain, best_rel = rel;
            }
        }
        assign[g] = best;
        for (int l = 0; l < ncols; l++) cur[best * ncols + l] += counts[g * ncols + l];
    }
    /* fix-ups: no empty split; every well-represented label in every split */
    for (int s = 0; s < nsplits; s++) {
        int any = 0;
        for (int g = 0; g < ngroups && !any; g++) any = assign[g] == s;
        if (!any) move_one(ngroups, ncols, counts, maj, nsplits, assign, -1, s);
    }
    int *ng = xcalloc((size_t)ncols, sizeof *ng);     /* groups per majority label */
    for (int g = 0; g < ngroups; g++) ng[maj[g]]++;
    for (int l = 0; l < ncols; l++) {
        if (ng[l] < nsplits) continue;
        for (int s = 0; s < nsplits; s++) {
            int any = 0;
            for (int g = 0; g < ngroups && !any; g++) any = assign[g] == s && maj[g] == l;
            if (!any) move_one(ngroups, ncols, counts, maj, nsplits, assign, l, s);
        }
    }
    free(ng);
    free(order);
    free(cur);
}

/* Distance of an assignment from the targets: per label, the units away
 * from target summed over splits, relative to the label's size (so small
 * classes weigh as much as large ones). */
static double assign_error(int ngroups, int ncols, const int *counts, int nsplits, const double *target,
                           const double *total, const int *assign)
{
    double *cur = xcalloc((size_t)nsplits * (size_t)ncols, sizeof *cur);
    for (int g = 0; g < ngroups; g++)
        for (int l = 0; l < ncols; l++) cur[assign[g] * ncols + l] += counts[g * ncols + l];
    double e = 0;
    for (int l = 0; l < ncols; l++)
        for (int s = 0; s < nsplits; s++)
            e += fabs(cur[s * ncols + l] - target[s * ncols + l]) / (total[l] > 1 ? total[l] : 1);
    free(cur);
    return e;
}

int split_assign(int ngroups, int ncols, const int *counts, int nsplits, const double *ratios,
                 uint64_t seed, int *assign, flow_err *err)
{
    if (ngroups < nsplits)
        return flow_fail(err, FLOW_E_PARAM, "%d groups cannot fill %d splits: every split needs a group",
                         ngroups, nsplits);
    double *target = xcalloc((size_t)nsplits * (size_t)ncols, sizeof *target);
    double *total = xcalloc((size_t)ncols, sizeof *total);
    double rsum = 0;
    for (int s = 0; s < nsplits; s++) rsum += ratios[s];
    for (int l = 0; l < ncols; l++) {
        for (int g = 0; g < ngroups; g++) total[l] += counts[g * ncols + l];
        for (int s = 0; s < nsplits; s++) target[s * ncols + l] = total[l] * ratios[s] / rsum;
    }
    /* SPLIT_RESTARTS orders drawn from the seed; the closest result wins
     * (the first on ties), so the outcome is still a function of the seed */
    int *trial = xmalloc((size_t)ngroups * sizeof *trial);
    int *maj = xmalloc((size_t)ngroups * sizeof *maj);     /* the same in every pass */
    for (int g = 0; g < ngroups; g++) maj[g] = major(counts, ncols, g);
    double best = INFINITY;
    uint64_t st = seed;
    for (int r = 0; r < SPLIT_RESTARTS; r++) {
        one_pass(ngroups, ncols, counts, maj, nsplits, target, splitmix64_next(&st), trial);
        double e = assign_error(ngroups, ncols, counts, nsplits, target, total, trial);
        if (e < best - 1e-12) {
            best = e;
            memcpy(assign, trial, (size_t)ngroups * sizeof *assign);
        }
    }
    free(trial);
    free(maj);
    free(target);
    free(total);
    return 0;
}
