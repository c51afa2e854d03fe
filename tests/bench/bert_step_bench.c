/* bert_step_bench.c — times one MLM / classification training step of the
 * CPU BERT for a graph-sized config, to size graphs/legal.graph.
 * usage: bert_step_bench H L heads I V B T threads */
#include "kernels/kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(int argc, char **argv)
{
    bert_config c;
    bert_config_default(&c);
    c.hidden = argc > 1 ? atoi(argv[1]) : 256;
    c.layers = argc > 2 ? atoi(argv[2]) : 4;
    int heads = argc > 3 ? atoi(argv[3]) : 4, inter = argc > 4 ? atoi(argv[4]) : 1024;
    flow_err e;
    if (bert_config_uniform(&c, heads, inter, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    c.vocab_size = argc > 5 ? atoi(argv[5]) : 8000;
    int B = argc > 6 ? atoi(argv[6]) : 32, T = argc > 7 ? atoi(argv[7]) : 128;
    bert_set_threads(argc > 8 ? atoi(argv[8]) : 2);
    c.max_len = T;
    c.mode = BERT_MODE_BOTH;
    c.num_labels = 7;
    bert_model *m;
    if (bert_model_new(&c, B, T, &bert_device_cpu, &m, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    bert_init(m, 1, NULL);
    int32_t *ids = malloc(sizeof(int32_t) * B * T), *lab = malloc(sizeof(int32_t) * B * T), cl[4096];
    for (int i = 0; i < B * T; i++) { ids[i] = 5 + rand() % (c.vocab_size - 5); lab[i] = (rand() % 100 < 15) ? ids[i] : -100; }
    for (int i = 0; i < B; i++) cl[i] = i % 7;
    bert_adamw hp = { 0.9f, 0.999f, 1e-8f, 0.01f };
    for (int head = BERT_HEAD_MLM; head <= BERT_HEAD_CLASSIFY; head++) {
        double t0 = 0; int n = 4;
        for (int it = 0; it < n + 1; it++) {
            if (it == 1) t0 = now();
            bert_batch b = { .B = B, .T = T, .ids = ids, .mlm_labels = lab, .labels = cl };
            bert_output o;
            bert_zero_grad(m);
            if (bert_forward(m, &b, head, 1, &o, &e) || bert_backward(m, 1, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
            bert_clip_grad_norm(m, 1);
            bert_adamw_step(m, &hp, 1e-4f);
        }
        double dt = (now() - t0) / n;
        printf("%s: %zu params, B %d T %d: %.3f s/step, %.0f tok/s, %.1f GFLOP/s\n", head == 1 ? "mlm" : "cls",
               m->nparams, B, T, dt, B * T / dt, bert_train_flops(&c, B, T, head, (long)(0.15 * B * T)) / dt / 1e9);
    }
    bert_model_free(m);
    return 0;
}
