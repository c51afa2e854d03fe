/* dp_reduce.c — the fixed-order gradient reducer of data-parallel
 * training (contract and the reasoning in dp.h): per round a reduce-scatter
 * that folds every worker's gradient into this rank's slice in global
 * worker order, at the step's end an all-gather of the slices.  The fold is
 * element-wise, so cutting it over OpenMP threads never changes a sum. */
#include "dp.h"

#include <stdlib.h>
#include <string.h>

#define FOLD_CHUNK 65536

int dp_reducer_init(dp_reducer *r, dp_group *g, size_t n, size_t align, flow_err *e)
{
    memset(r, 0, sizeof *r);
    r->g = g;
    r->world = dp_world(g);
    r->rank = dp_rank(g);
    r->n = n;
    if (align < 1) align = 1;
    size_t units = (n + align - 1) / align;
    r->slice = (units + (size_t)r->world - 1) / (size_t)r->world * align;
    r->lo = r->slice * (size_t)r->rank;
    if (r->lo > n) r->lo = n;
    r->hi = r->lo + r->slice < n ? r->lo + r->slice : n;
    r->acc = malloc((r->hi - r->lo + 1) * sizeof(float));
    if (r->world > 1) r->recv = malloc(((size_t)r->world * r->slice + 1) * sizeof(float));
    if (!r->acc || (r->world > 1 && !r->recv)) {
        dp_reducer_release(r);
        return flow_fail(e, FLOW_E_NOMEM, "data-parallel: cannot allocate %.1f MiB for the gradient sum",
                         (double)(n + (size_t)r->world * r->slice) * 4 / 1048576.0);
    }
    return 0;
}

void dp_reducer_release(dp_reducer *r)
{
    free(r->acc);
    free(r->recv);
    memset(r, 0, sizeof *r);
}

void dp_reducer_begin(dp_reducer *r)
{
    r->started = 0;
}

size_t dp_slice_lo(const dp_reducer *r, int q)
{
    size_t lo = r->slice * (size_t)q;
    return lo < r->n ? lo : r->n;
}

size_t dp_slice_hi(const dp_reducer *r, int q)
{
    size_t lo = dp_slice_lo(r, q);
    return lo + r->slice < r->n ? lo + r->slice : r->n;
}

static size_t slice_len(const dp_reducer *r, int q)
{
    return dp_slice_hi(r, q) - dp_slice_lo(r, q);
}

/* acc = src (first contribution) or acc += src, over m floats */
static void fold(float *acc, const float *src, size_t m, int copy)
{
    size_t nchunk = (m + FOLD_CHUNK - 1) / FOLD_CHUNK;
    #pragma omp parallel for schedule(static)
    for (size_t c = 0; c < nchunk; c++) {
        size_t s = c * FOLD_CHUNK, end = s + FOLD_CHUNK < m ? s + FOLD_CHUNK : m;
        if (copy)
            memcpy(acc + s, src + s, (end - s) * sizeof(float));
        else
            for (size_t i = s; i < end; i++)
                acc[i] += src[i];
    }
}

int dp_reducer_add(dp_reducer *r, const float *const *local, const int *present, int nlocal,
                   flow_err *e)
{
    size_t mine = r->hi - r->lo;
    for (int w = 0; w < nlocal; w++) {
        const float *from[64];
        if (r->world > 64)
            return flow_fail(e, FLOW_E_PARAM, "data-parallel: %d processes (at most 64)", r->world);
        if (r->world == 1) {
            from[0] = local[w];
        } else {
            const void *send[64];
            size_t send_len[64], recv_len[64];
            void *recv[64];
            int me_present = present[w * r->world + r->rank];
            for (int q = 0; q < r->world; q++) {
                send[q] = me_present ? (const void *)(local[w] + dp_slice_lo(r, q)) : NULL;
                send_len[q] = me_present ? slice_len(r, q) * sizeof(float) : 0;
                recv[q] = r->recv + (size_t)q * r->slice;
                recv_len[q] = present[w * r->world + q] ? mine * sizeof(float) : 0;
                from[q] = r->recv + (size_t)q * r->slice;
            }
            int rc = dp_exchange(r->g, send, send_len, recv, recv_len, e);
            if (rc) return rc;
        }
        for (int q = 0; q < r->world; q++) {
            if (!present[w * r->world + q]) continue;
            fold(r->acc, from[q] + (r->world == 1 ? r->lo : 0), mine, !r->started);
            r->started = 1;
        }
    }
    return 0;
}

int dp_reducer_end(dp_reducer *r, float *out, flow_err *e)
{
    if (!r->started) {
        memset(out, 0, r->n * sizeof(float));
        return 0;
    }
    if (r->world == 1) {
        fold(out, r->acc, r->n, 1);
        return 0;
    }
    const void *send[64];
    size_t send_len[64], recv_len[64];
    void *recv[64];
    for (int q = 0; q < r->world; q++) {
        send[q] = r->acc;
        send_len[q] = (r->hi - r->lo) * sizeof(float);
        recv[q] = out + dp_slice_lo(r, q);
        recv_len[q] = slice_len(r, q) * sizeof(float);
    }
    return dp_exchange(r->g, send, send_len, recv, recv_len, e);
}

int dp_reducer_end_shard(dp_reducer *r, float *out, flow_err *e)
{
    (void)e;
    if (!r->started)
        memset(out + r->lo, 0, (r->hi - r->lo) * sizeof(float));
    else
        fold(out + r->lo, r->acc, r->hi - r->lo, 1);
    return 0;
}
