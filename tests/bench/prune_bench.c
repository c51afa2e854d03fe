/* prune_bench.c — CPU classifier throughput at batch 32 of a model pruned
 * to half its heads and half its FFN neurons against the same model
 * unpruned (the peer), measured in one run, alternating, best of rounds.
 * Configs (random weights; throughput depends on the shapes only):
 *   legal      hidden 128, 2 layers, 2 heads of 64, FFN 512, vocab 8000
 *              (graphs/legal.graph's model)
 *   reference  hidden 768, 6 layers, 12 heads of 64, FFN 3072, vocab 8000
 * The pruned model is made by the library the stage uses: importance on
 * 64 random labelled sequences, global targets of half the heads and
 * neurons (so layers may differ), physical removal (prune.h).
 *
 * usage: prune_bench [legal|reference|both] [threads] [seconds per variant] [seq]
 * prints per config: params, seq/s of each variant, the ratio pruned/unpruned. */
#include "kernels/kernels.h"
#include "stages/compress/prune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 32

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int die(const flow_err *e) { fprintf(stderr, "prune_bench: %s\n", e->msg); exit(1); }

/* The half-pruned twin of m (scored on random labelled data). */
static bert_model *half_pruned(bert_model *m, int T)
{
    flow_err e = { 0 };
    bert_config sc = m->cfg;
    enum { N = 64 };
    int32_t *ids = malloc(sizeof *ids * N * T), lab[N];
    uint64_t off[N + 1], s = 3;
    for (int i = 0; i < N; i++) {
        off[i] = (uint64_t)i * T;
        ids[i * T] = 2;
        for (int t = 1; t < T - 1; t++) ids[i * T + t] = 5 + (int)(splitmix64_next(&s) % (uint64_t)(sc.vocab_size - 5));
        ids[i * T + T - 1] = 3;
        lab[i] = i % sc.num_labels;
    }
    off[N] = (uint64_t)N * T;
    prune_data d = { ids, off, lab, N };
    prune_scores ps;
    if (prune_score(m, &d, 16, &ps, &e)) die(&e);
    prune_keep k = { .layers = sc.layers };
    long th = 0, tf = 0;
    for (int l = 0; l < sc.layers; l++) {
        k.head[l] = malloc((size_t)sc.heads[l]);
        k.ffn[l] = malloc((size_t)sc.ffn[l]);
        th += sc.heads[l];
        tf += sc.ffn[l];
    }
    prune_choose(sc.layers, sc.heads, ps.head, NULL, th / 2, k.head);
    prune_choose(sc.layers, sc.ffn, ps.ffn, NULL, tf / 2, k.ffn);
    bert_config oc;
    float *np;
    if (prune_shrink(&sc, m->params, &k, &oc, &np, &e)) die(&e);
    bert_model *p;
    if (bert_model_new(&oc, BATCH, T, &bert_device_cpu, &p, &e)) die(&e);
    memcpy(p->params, np, p->nparams * sizeof *np);
    free(np);
    free(ids);
    prune_keep_release(&k);
    prune_scores_release(&ps);
    return p;
}

/* Seconds of one eval forward of batch B x T (the best of what fits in secs). */
static double best_forward(bert_model *m, const bert_batch *b, double secs)
{
    flow_err e = { 0 };
    bert_output o;
    double best = 1e30, t0 = now();
    do {
        double t = now();
        if (bert_forward(m, b, BERT_HEAD_CLASSIFY, 0, &o, &e)) die(&e);
        t = now() - t;
        if (t < best) best = t;
    } while (now() - t0 < secs);
    return best;
}

static void bench(const char *name, int T, double secs)
{
    bert_config c;
    bert_config_default(&c);
    c.num_labels = 7;
    c.mode = BERT_MODE_CLASSIFY;
    c.hidden_dropout = c.attn_dropout = 0;
    c.max_len = T > 128 ? T : 128;
    flow_err e = { 0 };
    if (!strcmp(name, "legal")) {
        c.hidden = 128;
        c.layers = 2;
        if (bert_config_uniform(&c, 2, 512, &e)) die(&e);
    }
    bert_model *m;
    if (bert_model_new(&c, BATCH, T, &bert_device_cpu, &m, &e) || bert_init(m, 1, &e)) die(&e);
    bert_model *p = half_pruned(m, T);
    int32_t *ids = malloc(sizeof *ids * BATCH * T);
    uint64_t s = 9;
    for (int i = 0; i < BATCH * T; i++) ids[i] = i % T == 0 ? 2 : 5 + (int)(splitmix64_next(&s) % 7000);
    bert_batch b = { .B = BATCH, .T = T, .ids = ids };
    double tm = 1e30, tp = 1e30;
    for (int round = 0; round < 3; round++) {      /* alternate: load changes hit both */
        double a = best_forward(m, &b, secs / 3), q = best_forward(p, &b, secs / 3);
        if (a < tm) tm = a;
        if (q < tp) tp = q;
    }
    printf("%-9s heads", name);
    for (int l = 0; l < p->cfg.layers; l++) printf(" %d", p->cfg.heads[l]);
    printf(" (of %d each), FFN", c.heads[0]);
    for (int l = 0; l < p->cfg.layers; l++) printf(" %d", p->cfg.ffn[l]);
    printf(" (of %d); params %zu -> %zu\n", c.ffn[0], m->nparams, p->nparams);
    printf("%-9s batch %d x %d: unpruned %.1f seq/s, pruned %.1f seq/s, ratio %.2fx\n", name, BATCH, T,
           BATCH / tm, BATCH / tp, tm / tp);
    free(ids);
    bert_model_free(p);
    bert_model_free(m);
}

int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "both";
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    double secs = argc > 3 ? atof(argv[3]) : 6.0;
    int T = argc > 4 ? atoi(argv[4]) : 128;
    bert_set_threads(threads);
    printf("prune_bench: %d threads, %.0f s per variant and config, seq %d\n", threads, secs, T);
    if (!strcmp(which, "legal") || !strcmp(which, "both")) bench("legal", T, secs);
    if (!strcmp(which, "reference") || !strcmp(which, "both")) bench("reference", T, secs);
    return 0;
}
