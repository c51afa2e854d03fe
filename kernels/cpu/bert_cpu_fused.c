/* bert_cpu_fused.c — the fused eval encoder of the CPU backend: when the
 * Linear hook takes row blocks (the quantized model, bert_set_linear_rows),
 * the embeddings and every encoder layer run as one OpenMP parallel region
 * of row-block and attention-chunk phases, on the same row ops as the
 * op-at-a-time forward of bert_cpu.c, with the same bits.
 */
#include "bert_cpu.h"
#include "spin_barrier.h"

#include <omp.h>

/* out = a + b, n floats (the eval residual: residual_dropout_forward at
 * p = 0, on the calling thread) */
static void add_serial(float *restrict out, const float *restrict a, const float *restrict b, size_t n)
{
    #pragma omp simd
    for (size_t k = 0; k < n; k++)
        out[k] = a[k] + b[k];
}

/* Rows per block of the fused eval layer: one quantized row tile, or four
 * where a layer's largest Linear (hidden x FFN) outgrows L2 (the reference
 * config's 768 x 3072: each block streams every weight of the layer, so
 * bigger blocks stream them less often; with the AMX kernel's channel-outer
 * order, reference int8 forward 12.6 -> 12.2 ms at batch 1, 385 -> 370 ms
 * at batch 32, 2 threads).  Rows are computed independently, so the block
 * size changes no bits (bert_quant_test). */
static int fused_rows(const bert_model *m)
{
    int I = 0;
    for (int l = 0; l < m->cfg.layers; l++)
        I = m->cfg.ffn[l] > I ? m->cfg.ffn[l] : I;
    return (size_t)m->cfg.hidden * I > (1u << 20) ? 64 : 16;
}

/* Rows [r0, r1) of encoder layer l after attention, on the calling thread
 * (eval: no dropout): the output Linear, residual, LN1, FFN, residual,
 * LN2, then layer l + 1's QKV Linear of the same rows.  Each op computes
 * a row as its whole-batch form does (the Linears through the hook, which
 * takes row blocks: bert_set_linear_rows), so the bits are those of
 * layer_forward's op-at-a-time path.  Rows per block: one quantized row
 * tile or more (fused_rows). */
static int layer_rows_tail(bert_model *m, int l, int r0, int r1, flow_err *e)
{
    struct bert_acts *A = m->acts;
    const layer_off *o = &A->lay[l];
    const float *P = m->params;
    int n = r1 - r0, H = m->cfg.hidden, Aw = o->A, I = o->I;
    layer_acts v = layer_view(m, l);
    size_t rh = (size_t)r0 * H, ri = (size_t)r0 * I;
    /* FFN rows: the up-projection and its GELU in place in the shared
     * scratch (the fused forward keeps no activations for a backward) */
    float *tmp = A->tmp + rh, *gel = A->dbig + ri, *fc1 = gel;
    int rc = enc_linear(m, 0, l, BERT_LIN_ATTN_OUT, tmp, v.ctx + (size_t)r0 * Aw, P + o->o_w, P + o->o_b,
                        n, Aw, H, e);
    if (rc) return rc;
    add_serial(v.res1 + rh, v.x + rh, tmp, (size_t)n * H);
    layernorm_forward_serial(v.a + rh, v.ln1_mean + r0, v.ln1_rstd + r0, v.res1 + rh,
                             P + o->ln1_g, P + o->ln1_b, n, H);
    if ((rc = enc_linear(m, 0, l, BERT_LIN_FFN_IN, fc1, v.a + rh, P + o->i_w, P + o->i_b, n, H, I, e)))
        return rc;
    gelu_forward_serial(gel, fc1, (size_t)n * I);
    if ((rc = enc_linear(m, 0, l, BERT_LIN_FFN_OUT, tmp, gel, P + o->o2_w, P + o->o2_b, n, I, H, e)))
        return rc;
    add_serial(v.res2 + rh, v.a + rh, tmp, (size_t)n * H);
    layernorm_forward_serial(v.xo + rh, v.ln2_mean + r0, v.ln2_rstd + r0, v.res2 + rh,
                             P + o->ln2_g, P + o->ln2_b, n, H);
    if (l + 1 < m->cfg.layers) {
        const layer_off *o1 = &A->lay[l + 1];
        layer_acts v1 = layer_view(m, l + 1);
        rc = enc_linear(m, 0, l + 1, BERT_LIN_QKV, v1.qkv + (size_t)r0 * 3 * o1->A, v.xo + rh,
                        P + o1->qkv_w, P + o1->qkv_b, n, H, 3 * o1->A, e);
    }
    return rc;
}

/* Records the first failure of a block in the fused encoder. */
static void fused_fail(int *failed, flow_err *e, int rc, const flow_err *be)
{
    #pragma omp critical(bert_fused_err)
    if (!*failed) {
        *failed = rc;
        if (e) *e = *be;
    }
}

/* The encoder of an eval forward as one parallel region of nt threads
 * (where the hook takes row blocks: bert_set_linear_rows): the embeddings,
 * their LayerNorm and layer 0's QKV by row blocks, then per layer the
 * attention chunks (attention_forward_chunks' pieces) and layer_rows_tail
 * by row blocks, each phase a worksharing loop (nowait) whose closing
 * spin_barrier makes its outputs whole for the next.  One fork and 2L + 1
 * barriers, where the op-at-a-time forward forks a team per op: on this
 * 2-core VM a fork and join costs ~55 us and libgomp's barrier ~27 us when
 * the threads sleep between (OMP_WAIT_POLICY=passive), against a 0.34 ms
 * legal-shape forward; spin_barrier spins through the phases' gaps.
 * Blocks are fixed by the batch and the model alone, so the bits do not
 * depend on the thread count.  The first failing block's error. */
int bert_cpu_encoder_fused(bert_model *m, const int32_t *mask, int nt, flow_err *e)
{
    struct bert_acts *A = m->acts;
    const float *P = m->params;
    int N = A->B * A->T, FR = fused_rows(m), nb = (N + FR - 1) / FR, H = m->cfg.hidden, failed = 0;
    const int32_t *types = A->has_types ? A->types : NULL;
    spin_barrier bar;
    spin_barrier_init(&bar);
    #pragma omp parallel num_threads(nt)
    {
        int gen = 0, team = omp_get_num_threads();   /* may be below nt (nested, limits) */
        const layer_off *o0 = &A->lay[0];
        float *scratch = A->att_scratch + (size_t)omp_get_thread_num() * attention_scratch_slice(A->T, m->cfg.head_size);
        layer_acts v0 = layer_view(m, 0);
        #pragma omp for schedule(dynamic, 1) nowait
        for (int b = 0; b < nb; b++) {
            if (__atomic_load_n(&failed, __ATOMIC_RELAXED)) continue;
            int r0 = b * FR, n = N - r0 < FR ? N - r0 : FR;
            /* x0 = LN(embeddings) of the block (eval: no dropout) */
            embedding_forward_rows(A->emb, A->ids, types, P + A->wte, P + A->wpe, P + A->wtt, A->T, H,
                                   r0, r0 + n);
            layernorm_forward_serial(A->x + (size_t)r0 * H, A->emb_mean + r0, A->emb_rstd + r0,
                                     A->emb + (size_t)r0 * H, P + A->eln_g, P + A->eln_b, n, H);
            flow_err be = { 0 };
            int rc = enc_linear(m, 0, 0, BERT_LIN_QKV, v0.qkv + (size_t)r0 * 3 * o0->A, v0.x + (size_t)r0 * H,
                                P + o0->qkv_w, P + o0->qkv_b, n, H, 3 * o0->A, &be);
            if (rc) fused_fail(&failed, e, rc, &be);
        }
        spin_barrier_wait(&bar, team, &gen);
        for (int l = 0; l < m->cfg.layers; l++) {
            const layer_off *o = &A->lay[l];
            layer_acts v = layer_view(m, l);
            #pragma omp for schedule(dynamic, 1) nowait
            for (int c = 0; c < attention_chunks(A->B, A->T, o->nh, ATT_QROWS); c++)
                if (!__atomic_load_n(&failed, __ATOMIC_RELAXED))
                    attention_forward_chunk(v.ctx, NULL, v.qkv, mask, A->T, o->nh, m->cfg.head_size,
                                            ATT_QROWS, c, scratch);
            spin_barrier_wait(&bar, team, &gen);
            #pragma omp for schedule(dynamic, 1) nowait
            for (int b = 0; b < nb; b++) {
                if (__atomic_load_n(&failed, __ATOMIC_RELAXED)) continue;
                int r0 = b * FR, r1 = N - r0 < FR ? N : r0 + FR;
                flow_err be = { 0 };
                int rc = layer_rows_tail(m, l, r0, r1, &be);
                if (rc) fused_fail(&failed, e, rc, &be);
            }
            spin_barrier_wait(&bar, team, &gen);
        }
    }
    return failed;
}
