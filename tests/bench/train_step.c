/* train_step.c — benchmark of one BERT MLM training step on the CPU
 * (forward + backward + clip + AdamW), run by train_step_bench.sh next to
 * train_step_torch.py (PyTorch, same config, batch and threads).
 *
 *   train_step [--hidden 256] [--layers 4] [--heads 4] [--inter 1024]
 *              [--vocab 8000] [--seq 128] [--batch 8] [--steps 5]
 *              [--threads 2] [--mask 0.15] [--profile]
 *
 * --mask 1 labels every position (the MLM head then does the same work as
 * transformers, which always computes logits at every position).
 * Also measures OpenBLAS sgemm peak (1024^3, split over the same threads)
 * so the step's achieved GFLOP/s can be read as a share of it.
 * Last line: RESULT tokens_per_s=... best_tokens_per_s=... gflops=... (mean
 * and best step) peak_gflops=... share=... (GFLOP/s / peak)
 */
#include "kernels/kernels.h"
#include "kernels/cpu/bert_ops.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

static double sgemm_peak(void)
{
    int n = 1024;
    float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4), *c = malloc((size_t)n * n * 4);
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    gemm(0, 1, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);     /* warm */
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = omp_get_wtime();
        gemm(0, 1, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double g = 2.0 * n * n * n / (omp_get_wtime() - t0) / 1e9;
        best = g > best ? g : best;
    }
    free(a); free(b); free(c);
    return best;
}

int main(int argc, char **argv)
{
    bert_config c;
    bert_config_default(&c);
    c.hidden = 256; c.layers = 4; c.vocab_size = 8000;
    int heads = 4, inter = 1024;
    int T = 128, B = 8, steps = 5, threads = 2, profile = 0;
    double mask_frac = 0.15;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "0";
        if (!strcmp(a, "--profile")) { profile = 1; continue; }
        if (!strcmp(a, "--hidden")) c.hidden = atoi(v);
        else if (!strcmp(a, "--layers")) c.layers = atoi(v);
        else if (!strcmp(a, "--heads")) heads = atoi(v);
        else if (!strcmp(a, "--inter")) inter = atoi(v);
        else if (!strcmp(a, "--vocab")) c.vocab_size = atoi(v);
        else if (!strcmp(a, "--seq")) T = atoi(v);
        else if (!strcmp(a, "--batch")) B = atoi(v);
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--mask")) mask_frac = atof(v);
        else { fprintf(stderr, "train_step: unknown option %s\n", a); return 2; }
        i++;
    }
    bert_set_threads(threads);
    double peak = sgemm_peak();
    bert_model *m;
    flow_err e;
    if (bert_config_uniform(&c, heads, inter, &e) || bert_model_new(&c, B, T, &bert_device_cpu, &m, &e)) {
        fprintf(stderr, "train_step: %s\n", e.msg);
        return 1;
    }
    bert_init(m, 1, NULL);
    int32_t *ids = malloc(sizeof(int32_t) * B * T), *lab = malloc(sizeof(int32_t) * B * T);
    uint64_t s = 12345;
    long n_mlm = 0;
    for (int i = 0; i < B * T; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        ids[i] = 5 + (int)((s >> 33) % (uint64_t)(c.vocab_size - 5));
        double u = ((s >> 11) & 0xFFFFF) / 1048576.0;
        lab[i] = (u < mask_frac || mask_frac >= 1) ? ids[i] : BERT_IGNORE_INDEX;
        n_mlm += lab[i] != BERT_IGNORE_INDEX;
    }
    bert_batch b = {B, T, ids, NULL, NULL, lab, NULL, NULL};
    bert_adamw hp = {0.9f, 0.999f, 1e-8f, 0.01f};
    bert_output o;
    double best = 1e30, total = 0;
    for (int st = 0; st <= steps; st++) {      /* step 0 warms up */
        if (st == 1 && profile)
            bert_profile_enable(m, 1);
        double t0 = omp_get_wtime();
        bert_zero_grad(m);
        if (bert_forward(m, &b, BERT_HEAD_MLM, 1, &o, &e) || bert_backward(m, 1.0f, &e)) {
            fprintf(stderr, "train_step: %s\n", e.msg);
            return 1;
        }
        bert_clip_grad_norm(m, 1.0f);
        bert_adamw_step(m, &hp, 1e-4f);
        double dt = omp_get_wtime() - t0;
        if (st > 0) {
            total += dt;
            best = dt < best ? dt : best;
        }
        fprintf(stderr, "step %d: %.1f ms loss %.4f\n", st, 1e3 * dt, (double)o.loss);
    }
    double mean = total / steps;
    double flops = bert_train_flops(&c, B, T, BERT_HEAD_MLM, n_mlm);
    if (profile)
        bert_profile_print(m, stdout);
    printf("config H=%d L=%d heads=%d I=%d V=%d B=%d T=%d threads=%d mlm_rows=%ld params=%zu\n",
           c.hidden, c.layers, heads, inter, c.vocab_size, B, T, threads, n_mlm,
           m->nparams);
    printf("step mean %.1f ms best %.1f ms; %.1f GFLOP/step\n", 1e3 * mean, 1e3 * best, flops / 1e9);
    printf("RESULT tokens_per_s=%.0f best_tokens_per_s=%.0f gflops=%.1f best_gflops=%.1f "
           "peak_gflops=%.1f share=%.2f best_share=%.2f\n",
           B * T / mean, B * T / best, flops / mean / 1e9, flops / best / 1e9, peak,
           flops / mean / 1e9 / peak, flops / best / 1e9 / peak);
    bert_model_free(m);
    free(ids);
    free(lab);
    return 0;
}
