/* blas.h — OpenBLAS as the CPU backend calls it: through the functions that
 * blas.c resolved when it loaded the library with its kernels pinned.
 * (Nothing links libopenblas directly: the library must not load, and pick
 * its kernels, before blas.c has asked for the pinned ones.) */
#ifndef FLOW_KERNELS_CPU_BLAS_H
#define FLOW_KERNELS_CPU_BLAS_H

#include <cblas.h>

typedef struct blas_fns {
    __typeof__(cblas_sgemm) *sgemm;
    __typeof__(openblas_get_num_threads) *get_num_threads;
    __typeof__(openblas_set_num_threads) *set_num_threads;
    __typeof__(openblas_get_corename) *get_corename;
} blas_fns;

extern blas_fns blas;

#endif
