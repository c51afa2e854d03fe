/* quant_model_bench.c — flow's BERT classifier forward in fp32, int8 and
 * 4-bit (UINT4 g64; GPTQ has the same format and speed as RTN), at the
 * reference config (hidden 768, 6 layers, 12 heads, FFN 3072, vocab 8000,
 * seq 128; random weights), batch 1 latency and batch 32 throughput, all
 * three in one run with the same threads and inputs (round-robin, best of
 * each).  Prints lines in the format of quant_model_bench.py so
 * quant_model_bench.sh can put them beside the peers.
 *
 * usage: quant_model_bench [threads] [seconds] [batches, e.g. 1,32] [layers] [profile]
 *        quant_model_bench --artifacts CACHE FP32 INT8 UINT4 [threads] [seconds] [batches]
 * (profile: a second of profiled forwards per variant and batch after the
 * timed ones, their summed op table printed)
 * QBENCH_ONLY=NAME runs only the variants whose name contains NAME (e.g.
 * int8, for perf record).
 * QBENCH_SHAPE=hidden,heads,ffn[,head_size] sets another random-weight shape
 * (speed does not depend on the weights' values), e.g. 128,2,512 (the
 * legal.graph model) or 128,1,256,64 (its pruned variant: 1 head of 64).
 * Each variant gets the best wall time and the mean process CPU time of its
 * forwards (on a shared machine the CPU time says what the work costs when
 * other jobs take the cores), and the encoder Linears' GOP/s over the whole
 * forward time (2 ops per multiply-add).
 * --artifacts: the three variants are stored model artifacts instead (a
 * finetune node and two quantize nodes of it, int8 and uniform 4-bit), run
 * as flow classify runs them (their own codes and scales on the integer
 * kernels), at their config and seq = min(128, max_position_embeddings);
 * the 4-bit line is named flow-uint4-gG by its group.
 * With QBENCH_ONNX_DIR set, the random-weight variants are also exported
 * there as DIR/<name>/model.onnx (stages/export, the same weights and
 * scales) for quant_model_bench.py --flow-onnx DIR: ONNX Runtime on flow's
 * own models (artifacts are exported by quant_model_bench.sh with `flow
 * export --format onnx`).
 */
#include "kernels/kernels.h"
#include "kernels/quant/quant.h"
#include "stages/export/onnx_export.h"
#include "stages/model/clf_bert.h"
#include "cache/cache.h"

#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu_now(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

static const float *lin_w(bert_model *m, int l, int which, int *OC, int *IC)
{
    static const char *names[] = { "attention.self.query.weight", "attention.output.dense.weight",
                                   "intermediate.dense.weight", "output.dense.weight" };
    char n[128];
    snprintf(n, sizeof n, "bert.encoder.layer.%d.%s", l, names[which]);
    const bert_tensor *t = bert_find_tensor(m, n);
    *OC = which == BERT_LIN_QKV ? 3 * t->shape[0] : t->shape[0];
    *IC = t->shape[1];
    return m->params + t->offset;
}

/* The three variants measured: a model and its quantized Linears each
 * (random weights: one model, three bert_qmodels). */
typedef struct bench_set {
    bert_model *m[3];
    bert_qmodel *q[3];
    char names[3][48];
    int T;
    /* artifact mode: what keeps the loaded artifacts alive */
    flow_store *store;
    part_source src[3];
    clf_model *art[3];
    int nart;
} bench_set;

/* Random weights at the reference config (layers may be fewer): RTN int8
 * and UINT4 g64 of every encoder Linear, exported to QBENCH_ONNX_DIR. */
static int random_set(bench_set *bs, int layers, int maxB, int threads, flow_err *e)
{
    bert_config c;
    bert_config_default(&c);
    c.layers = layers; c.num_labels = 7; c.mode = BERT_MODE_CLASSIFY;
    const char *shape = getenv("QBENCH_SHAPE");
    int heads = 12, ffn = 3072, head_size = 0;
    if (shape && sscanf(shape, "%d,%d,%d,%d", &c.hidden, &heads, &ffn, &head_size) < 3)
        return flow_fail(e, FLOW_E_PARAM, "QBENCH_SHAPE=%s: expected hidden,heads,ffn[,head_size]", shape);
    if (bert_config_uniform(&c, heads, ffn, e)) return -1;
    if (head_size > 0) c.head_size = head_size;
    if (bert_config_validate(&c, e)) return -1;
    bert_model *m;
    bs->T = 128;
    if (bert_model_new(&c, maxB, bs->T, &bert_device_cpu, &m, e) || bert_init(m, 1, e)) return -1;
    bert_qspec s8 = { 8, 0, 1, 0, 0, 0.01, 0 }, s4 = { 4, 64, 0, 0, 0, 0.01, 0 };
    bert_qmodel *q8 = bert_qmodel_new(c.layers), *q4 = bert_qmodel_new(c.layers);
    for (int l = 0; l < c.layers; l++)
        for (int w = 0; w < BERT_LIN_COUNT; w++) {
            int OC, IC;
            const float *W = lin_w(m, l, w, &OC, &IC);
            if (bert_qmodel_quantize(q8, l, w, W, OC, IC, &s8, NULL, e) ||
                bert_qmodel_quantize(q4, l, w, W, OC, IC, &s4, NULL, e)) return -1;
        }
    bert_qmodel_set_threads(q8, threads);
    bert_qmodel_set_threads(q4, threads);
    bert_qmodel *qs[3] = { NULL, q8, q4 };
    const char *names[3] = { "flow-fp32", "flow-int8", "flow-uint4-g64" };
    for (int v = 0; v < 3; v++) {
        bs->m[v] = m;
        bs->q[v] = qs[v];
        snprintf(bs->names[v], sizeof bs->names[v], "%s", names[v]);
    }
    const char *onnx_dir = getenv("QBENCH_ONNX_DIR");
    for (int v = 0; onnx_dir && v < 3; v++) {
        char d[4096];
        snprintf(d, sizeof d, "%s/%s", onnx_dir, names[v]);
        mkdir(d, 0777);
        onnx_export_opts o = { 0 };
        onnx_export_info info;
        if (onnx_export_model(m, qs[v], d, &o, &info, e)) return -1;
    }
    return 0;
}

/* The artifacts hash[0..2] of store dir (fp32, int8, uniform 4-bit), each
 * in a model of capacity maxB x T with its own parameters and quantized
 * Linears (as clf_load gives them to flow classify). */
static int artifact_set(bench_set *bs, const char *dir, char **hash, int maxB, int threads, flow_err *e)
{
    store_options so;
    memset(&so, 0, sizeof so);
    if (store_open(&bs->store, dir, &so, e)) return -1;
    static const quant_kind want[3] = { 0, QUANT_KIND_INT8, QUANT_KIND_UINT4 };
    for (int v = 0; v < 3; v++) {
        flow_hash key;
        if (store_resolve(bs->store, hash[v], &key, e) || part_source_store(&bs->src[v], bs->store, &key, "", e))
            return -1;
        bs->nart++;
        if (clf_load(&bs->src[v], &bs->art[v], e)) return -1;
        clf_model *a = bs->art[v];
        if (!a->bert || !(a->bert->cfg.mode & BERT_MODE_CLASSIFY))
            return flow_fail(e, FLOW_E_PARAM, "%s is not a bert classifier", hash[v]);
        const bert_model *bm = a->bert->model;
        const quant_weight *w0 = a->bert->qmodel ? bert_qmodel_get(a->bert->qmodel, 0, BERT_LIN_QKV) : NULL;
        if (v == 0 ? w0 != NULL : !w0 || w0->kind != want[v])
            return flow_fail(e, FLOW_E_PARAM, "%s: expected %s", hash[v],
                             v == 0 ? "a fp32 model" : v == 1 ? "an int8 quantize node" : "a uniform 4-bit quantize node");
        if (v && (bm->cfg.hidden != bs->m[0]->cfg.hidden || bm->cfg.layers != bs->m[0]->cfg.layers ||
                  bm->cfg.vocab_size != bs->m[0]->cfg.vocab_size))
            return flow_fail(e, FLOW_E_PARAM, "%s has another shape than %s", hash[v], hash[0]);
        bs->T = bm->cfg.max_len < 128 ? bm->cfg.max_len : 128;
        if (bert_sync_to_host(a->bert->model, e) ||
            bert_model_new(&bm->cfg, maxB, bs->T, &bert_device_cpu, &bs->m[v], e)) return -1;
        memcpy(bs->m[v]->params, bm->params, bm->nparams * sizeof(float));
        if (bert_sync_to_device(bs->m[v], e)) return -1;
        bs->q[v] = a->bert->qmodel;
        if (bs->q[v]) bert_qmodel_set_threads(bs->q[v], threads);
        if (v == 2) snprintf(bs->names[v], sizeof bs->names[v], "flow-uint4-g%d", w0->group);
        else snprintf(bs->names[v], sizeof bs->names[v], "%s", v ? "flow-int8" : "flow-fp32");
    }
    return 0;
}

static void bench_set_release(bench_set *bs)
{
    if (!bs->nart) {
        bert_qmodel_attach(bs->m[0], NULL);
        bert_qmodel_free(bs->q[1]);
        bert_qmodel_free(bs->q[2]);
        bert_model_free(bs->m[0]);
        return;
    }
    for (int v = 0; v < 3; v++) {
        if (bs->m[v]) { bert_qmodel_attach(bs->m[v], NULL); bert_model_free(bs->m[v]); }
        clf_free(bs->art[v]);
        if (v < bs->nart) part_source_release(&bs->src[v]);
    }
    store_close(bs->store);
}

int main(int argc, char **argv)
{
    bench_set bs;
    memset(&bs, 0, sizeof bs);
    char **art = NULL;
    const char *cache = NULL;
    if (argc > 1 && strcmp(argv[1], "--artifacts") == 0) {
        if (argc < 6) { fprintf(stderr, "usage: %s --artifacts CACHE FP32 INT8 UINT4 [threads] [seconds] [batches]\n", argv[0]); return 2; }
        cache = argv[2];
        art = argv + 3;
        argv += 5;
        argc -= 5;
    }
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    double secs = argc > 2 ? atof(argv[2]) : 3.0;
    const char *batches = argc > 3 ? argv[3] : "1,32";
    int layers = argc > 4 ? atoi(argv[4]) : 6;
    int maxB = 1;
    for (const char *p = batches; *p;) { int v = atoi(p); if (v > maxB) maxB = v; p = strchr(p, ','); if (!p) break; p++; }
    bert_set_threads(threads);
    const char *only = getenv("QBENCH_ONLY");  /* one variant (profiling with perf) */
    if (only && !*only) only = NULL;
    flow_err e = { 0 };
    if (art ? artifact_set(&bs, cache, art, maxB, threads, &e) : random_set(&bs, layers, maxB, threads, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        bench_set_release(&bs);
        return 1;
    }
    int T = bs.T, V = bs.m[0]->cfg.vocab_size;
    const bert_config *cf = &bs.m[0]->cfg;
    printf("flow quantized path: %s; %s, seq %d\n", quant_path_name(quant_path_active()),
           art ? "stored artifacts" : "random weights", T);
    printf("shape: hidden %d, %d layers, heads %d of %d, ffn %d, vocab %d, seq %d\n", cf->hidden, cf->layers,
           cf->heads[0], cf->head_size, cf->ffn[0], cf->vocab_size, T);
    int32_t *ids = malloc(sizeof(int32_t) * maxB * T);
    srand(1);
    for (int i = 0; i < maxB * T; i++) ids[i] = 5 + rand() % (V - 5);
    for (const char *p = batches; p && *p;) {
        int B = atoi(p);
        bert_batch b = { 0 };
        b.B = B; b.T = T; b.ids = ids;
        /* cpu: the mean process CPU time of the timed calls; a best-of
         * would under-count, as a running sibling thread's time reaches the
         * process clock only at scheduler ticks (a 0.2 ms 2-thread forward
         * showed CPU = wall) */
        double best[3] = { 1e30, 1e30, 1e30 }, csum[3] = { 0, 0, 0 }, cbest[3], start = now();
        long ncalls[3] = { 0, 0, 0 };
        for (int round = 0; round < 2 || now() - start < secs * 3; round++)
            for (int v = 0; v < 3; v++) {
                if (only && !strstr(bs.names[v], only)) continue;
                bert_qmodel_attach(bs.m[v], bs.q[v]);
                bert_output o;
                double t0 = now(), c0 = cpu_now();
                if (bert_forward(bs.m[v], &b, BERT_HEAD_CLASSIFY, 0, &o, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
                double dt = now() - t0, dc = cpu_now() - c0;
                if (round > 0 && dt < best[v]) best[v] = dt;   /* round 0 warms up */
                if (round > 0) { csum[v] += dc; ncalls[v]++; }
            }
        for (int v = 0; v < 3; v++) cbest[v] = ncalls[v] ? csum[v] / ncalls[v] : 0;
        for (int v = 0; v < 3 && !art && argc > 5; v++) {
            if (only && !strstr(bs.names[v], only)) continue;
            bert_qmodel_attach(bs.m[v], bs.q[v]);
            bert_profile_enable(bs.m[v], 1);
            bert_output o;
            /* as many profiled forwards as one second holds (at least 3): the
             * table is their sum, so one slow forward on a shared machine
             * does not decide it */
            double p0 = now();
            for (int i = 0; i < 3 || now() - p0 < 1.0; i++)
                if (bert_forward(bs.m[v], &b, BERT_HEAD_CLASSIFY, 0, &o, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
            printf("profile %s batch %d (matmul GFLOP/s = integer GOP/s for the quantized variants)\n", bs.names[v], B);
            bert_profile_print(bs.m[v], stdout);
            bert_profile_enable(bs.m[v], 0);
        }
        for (int v = 0; v < 3; v++)
            if (!only || strstr(bs.names[v], only))
                printf("peer %s batch %d seq %d threads %d ms_per_batch %.3f seq_per_s %.1f cpu_ms %.3f\n", bs.names[v],
                   B, T, threads, best[v] * 1e3, B / best[v], cbest[v] * 1e3);
        /* encoder Linear multiply-adds x 2 per forward, over the whole forward's time */
        double ops = 0;
        for (int l = 0; l < cf->layers; l++) {
            double H = cf->hidden, A = bert_attn_width(cf, l), I = cf->ffn[l];
            ops += 2.0 * B * T * (3 * A * H + H * A + 2 * I * H);
        }
        for (int v = 0; v < 3; v++)
            if (!only || strstr(bs.names[v], only))
                printf("gops %s batch %d encoder_linear_GOP_per_s %.1f (%.3f GOP per forward / whole forward time)\n",
                   bs.names[v], B, ops / best[v] * 1e-9, ops * 1e-9);
        p = strchr(p, ',');
        if (p) p++;
    }
    bench_set_release(&bs);
    free(ids);
    return 0;
}
