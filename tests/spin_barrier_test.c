/* spin_barrier_test.c — kernels/cpu/spin_barrier.h: over many phases every
 * thread sees every other thread's writes of the phase before, with teams
 * of 1 to 4 threads (more threads than cores: the yield path), and a
 * barrier of 1 never waits. */
#include "kernels/cpu/spin_barrier.h"
#include "test.h"

#include <omp.h>

static void test_team(int nt, int phases)
{
    spin_barrier b;
    spin_barrier_init(&b);
    int slot[4] = { 0 }, bad = 0, team_seen = 0;
    #pragma omp parallel num_threads(nt) reduction(+ : bad)
    {
        int gen = 0, team = omp_get_num_threads(), me = omp_get_thread_num();
        #pragma omp master
        team_seen = team;
        for (int p = 1; p <= phases; p++) {
            __atomic_store_n(&slot[me], p, __ATOMIC_RELAXED);
            spin_barrier_wait(&b, team, &gen);
            for (int t = 0; t < team; t++)          /* everyone wrote p before anyone passed */
                bad += __atomic_load_n(&slot[t], __ATOMIC_RELAXED) < p;
            spin_barrier_wait(&b, team, &gen);      /* nobody writes p + 1 before all have read */
        }
        bad += gen != 2 * phases;
    }
    CHECK_MSG(bad == 0 && team_seen >= 1, "team of %d: %d stale reads over %d phases", team_seen, bad, phases);
}

int main(void)
{
    for (int nt = 1; nt <= 4; nt++) test_team(nt, 2000);
    return test_summary("spin_barrier_test");
}
