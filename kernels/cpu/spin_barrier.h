/* spin_barrier.h — a barrier for the phases of one parallel region that
 * spins briefly before it yields, whatever OMP_WAIT_POLICY says.
 *
 * Why: the fused eval encoder (bert_cpu_fused.c) closes 2L + 1 phases of
 * 20-130 us each per forward.  Under OMP_WAIT_POLICY=passive (libgomp's
 * default when the threads outnumber nothing else) a thread that reaches
 * libgomp's barrier first sleeps in the kernel, and waking it costs ~27 us
 * on the 2-core VM: a fifth of a legal-shape batch-1 forward.  Here a
 * waiter spins with pause for about SPIN_BARRIER_SPINS rounds (~100 us),
 * then calls sched_yield until the last thread arrives, so a loaded
 * machine gets its cores back.  Memory: the last arrival's acq_rel
 * increment takes every earlier arrival's writes, its release store of
 * the new generation hands them to the waiters' acquire loads.
 */
#ifndef FLOW_SPIN_BARRIER_H
#define FLOW_SPIN_BARRIER_H

#include <sched.h>
#include <stdatomic.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SPIN_BARRIER_PAUSE() _mm_pause()
#else
#define SPIN_BARRIER_PAUSE() ((void)0)
#endif

#define SPIN_BARRIER_SPINS 4096

typedef struct spin_barrier {
    atomic_int arrived;         /* threads at the barrier of this generation */
    atomic_int generation;      /* bumped by the last arrival */
} spin_barrier;

static inline void spin_barrier_init(spin_barrier *b)
{
    atomic_init(&b->arrived, 0);
    atomic_init(&b->generation, 0);
}

/* threads: the team's size (the same in every caller); *gen: the caller's
 * count of barriers passed (0 at the start). */
static inline void spin_barrier_wait(spin_barrier *b, int threads, int *gen)
{
    int g = *gen;
    *gen = g + 1;
    if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) == threads - 1) {
        atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
        atomic_store_explicit(&b->generation, g + 1, memory_order_release);
        return;
    }
    for (long spins = 0; atomic_load_explicit(&b->generation, memory_order_acquire) == g; spins++) {
        if (spins < SPIN_BARRIER_SPINS) SPIN_BARRIER_PAUSE();
        else sched_yield();
    }
}

#endif
