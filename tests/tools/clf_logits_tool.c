/* clf_logits_tool.c — flow's own forward of a stored bert classifier on
 * padded batches, so tests/onnx_export_test.py can compare ONNX Runtime's
 * logits with flow's for the same input_ids / token_type_ids /
 * attention_mask.
 * usage: clf_logits_tool CACHE HASH < batches
 * stdin: per batch a line "B T", then B lines of T ids, B lines of T token
 * type ids, B lines of T mask values (1 real, 0 padding); stdout: per batch
 * B lines of C logits (%.9g).  The model is created for each batch's B x T
 * (the artifact's own capacity is its fine-tuning length) with the
 * artifact's parameters (and a quantize artifact's quantized Linears, as
 * flow classify runs them). */
#include "stages/model/clf_bert.h"
#include "cache/cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_ints(int32_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        long v;
        if (scanf("%ld", &v) != 1) return -1;
        dst[i] = (int32_t)v;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) { fprintf(stderr, "usage: %s CACHE HASH < batches\n", argv[0]); return 2; }
    flow_err err = { 0 };
    flow_store *s;
    store_options so;
    memset(&so, 0, sizeof so);
    flow_hash key;
    part_source src;
    clf_model *m;
    if (store_open(&s, argv[1], &so, &err) || store_resolve(s, argv[2], &key, &err) ||
        part_source_store(&src, s, &key, "", &err) || clf_load(&src, &m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    bert_model *bm = m->bert ? m->bert->model : NULL;
    if (!bm || !(bm->cfg.mode & BERT_MODE_CLASSIFY)) { fprintf(stderr, "not a bert classifier\n"); return 1; }
    if (bert_sync_to_host(bm, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    int B, T, rc = 0;
    while (rc == 0 && scanf("%d %d", &B, &T) == 2) {
        size_t n = (size_t)B * T;
        int32_t *ids = malloc(n * 4), *types = malloc(n * 4), *mask = malloc(n * 4);
        bert_model *w = NULL;
        if (B < 1 || T < 1 || read_ints(ids, n) || read_ints(types, n) || read_ints(mask, n)) {
            fprintf(stderr, "bad batch input\n");
            rc = 1;
        } else if (bert_model_new(&bm->cfg, B, T, &bert_device_cpu, &w, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            rc = 1;
        } else {
            memcpy(w->params, bm->params, bm->nparams * sizeof(float));
            bert_qmodel_attach(w, m->bert->qmodel);   /* a quantize artifact: its integer Linears */
            bert_batch b = { .B = B, .T = T, .ids = ids, .type_ids = types, .attn_mask = mask };
            bert_output o;
            if (bert_sync_to_device(w, &err) || bert_forward(w, &b, BERT_HEAD_CLASSIFY, 0, &o, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                rc = 1;
            } else {
                int C = bm->cfg.num_labels;
                for (int r = 0; r < B; r++)
                    for (int k = 0; k < C; k++) printf(k + 1 < C ? "%.9g " : "%.9g\n", (double)o.logits[(size_t)r * C + k]);
            }
        }
        bert_model_free(w);
        free(ids); free(types); free(mask);
    }
    clf_free(m);
    part_source_release(&src);
    store_close(s);
    return rc;
}
