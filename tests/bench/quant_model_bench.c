/* quant_model_bench.c — flow's BERT classifier forward in fp32, int8 and
 * 4-bit (UINT4 g64; GPTQ has the same format and speed as RTN), at the
 * reference config (hidden 768, 6 layers, 12 heads, FFN 3072, vocab 8000,
 * seq 128; random weights), batch 1 latency and batch 32 throughput, all
 * three in one run with the same threads and inputs (round-robin, best of
 * each).  Prints lines in the format of quant_model_bench.py so
 * quant_model_bench.sh can put them beside the peers.
 *
 * usage: quant_model_bench [threads] [seconds] [batches, e.g. 1,32] [layers] [profile]
 * (profile: one profiled forward per variant and batch, op table printed)
 * With QBENCH_ONNX_DIR set, the three variants are also exported there as
 * DIR/<name>/model.onnx (stages/export, the same weights and scales) for
 * quant_model_bench.py --flow-onnx DIR: ONNX Runtime on flow's own models.
 */
#include "kernels/kernels.h"
#include "kernels/quant/quant.h"
#include "stages/export/onnx_export.h"

#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

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

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    double secs = argc > 2 ? atof(argv[2]) : 3.0;
    const char *batches = argc > 3 ? argv[3] : "1,32";
    int layers = argc > 4 ? atoi(argv[4]) : 6;
    int T = 128, maxB = 1;
    for (const char *p = batches; *p;) { int v = atoi(p); if (v > maxB) maxB = v; p = strchr(p, ','); if (!p) break; p++; }
    bert_set_threads(threads);
    bert_config c;
    bert_config_default(&c);
    c.layers = layers; c.num_labels = 7; c.mode = BERT_MODE_CLASSIFY;
    bert_model *m;
    flow_err e;
    if (bert_model_new(&c, maxB, T, &bert_device_cpu, &m, &e) || bert_init(m, 1, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    bert_qspec s8 = { 8, 0, 1, 0, 0, 0.01, 0 }, s4 = { 4, 64, 0, 0, 0, 0.01, 0 };
    bert_qmodel *q8 = bert_qmodel_new(c.layers), *q4 = bert_qmodel_new(c.layers);
    for (int l = 0; l < c.layers; l++)
        for (int w = 0; w < BERT_LIN_COUNT; w++) {
            int OC, IC;
            const float *W = lin_w(m, l, w, &OC, &IC);
            if (bert_qmodel_quantize(q8, l, w, W, OC, IC, &s8, NULL, &e) ||
                bert_qmodel_quantize(q4, l, w, W, OC, IC, &s4, NULL, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
        }
    bert_qmodel_set_threads(q8, threads);
    bert_qmodel_set_threads(q4, threads);
    printf("flow quantized path: %s\n", quant_path_name(quant_path_active()));
    int32_t *ids = malloc(sizeof(int32_t) * maxB * T);
    srand(1);
    for (int i = 0; i < maxB * T; i++) ids[i] = 5 + rand() % (c.vocab_size - 5);
    bert_qmodel *variants[3] = { NULL, q8, q4 };
    const char *names[3] = { "flow-fp32", "flow-int8", "flow-uint4-g64" };
    const char *onnx_dir = getenv("QBENCH_ONNX_DIR");
    for (int v = 0; onnx_dir && v < 3; v++) {
        char d[4096];
        snprintf(d, sizeof d, "%s/%s", onnx_dir, names[v]);
        mkdir(d, 0777);
        onnx_export_opts o = { 0 };
        onnx_export_info info;
        if (onnx_export_model(m, variants[v], d, &o, &info, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    }
    for (const char *p = batches; p && *p;) {
        int B = atoi(p);
        bert_batch b = { 0 };
        b.B = B; b.T = T; b.ids = ids;
        double best[3] = { 1e30, 1e30, 1e30 }, start = now();
        for (int round = 0; round < 2 || now() - start < secs * 3; round++)
            for (int v = 0; v < 3; v++) {
                bert_qmodel_attach(m, variants[v]);
                bert_output o;
                double t0 = now();
                if (bert_forward(m, &b, BERT_HEAD_CLASSIFY, 0, &o, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
                double dt = now() - t0;
                if (round > 0 && dt < best[v]) best[v] = dt;   /* round 0 warms up */
            }
        for (int v = 0; v < 3 && argc > 5; v++) {
            bert_qmodel_attach(m, variants[v]);
            bert_profile_enable(m, 1);
            bert_output o;
            if (bert_forward(m, &b, BERT_HEAD_CLASSIFY, 0, &o, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
            printf("profile %s batch %d (matmul GFLOP/s = integer GOP/s for the quantized variants)\n", names[v], B);
            bert_profile_print(m, stdout);
            bert_profile_enable(m, 0);
        }
        for (int v = 0; v < 3; v++)
            printf("peer %s batch %d seq %d threads %d ms_per_batch %.2f seq_per_s %.1f\n", names[v], B, T,
                   threads, best[v] * 1e3, B / best[v]);
        p = strchr(p, ',');
        if (p) p++;
    }
    bert_qmodel_attach(m, NULL);
    bert_qmodel_free(q8); bert_qmodel_free(q4);
    bert_model_free(m);
    free(ids);
    return 0;
}
