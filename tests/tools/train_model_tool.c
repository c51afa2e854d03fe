/* train_model_tool.c — prints the logits of a stored bert model artifact
 * for id sequences, so tests can compare flow's model with transformers
 * (tests/export_hf_test.py).
 * usage: train_model_tool CACHE HASH mlm|cls < ids   (one sequence per
 * line, space-separated ids including [CLS]/[SEP]); prints per sequence one
 * line per position (mlm: V logits of every position) or one line (cls: C
 * logits), space-separated %.8g. */
#include "stages/model/clf_bert.h"
#include "cache/cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 4) { fprintf(stderr, "usage: %s CACHE HASH mlm|cls < ids\n", argv[0]); return 2; }
    int mlm = strcmp(argv[3], "mlm") == 0;
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
    if (!bm) { fprintf(stderr, "not a bert model\n"); return 1; }
    char *line = NULL;
    size_t cap = 0;
    int32_t ids[4096], lab[4096];
    while (getline(&line, &cap, stdin) > 0) {
        int T = 0;
        for (char *p = strtok(line, " \n"); p && T < 4096; p = strtok(NULL, " \n")) ids[T++] = atoi(p);
        if (T == 0 || T > bm->max_T) { fprintf(stderr, "sequence of %d ids (max %d)\n", T, bm->max_T); return 1; }
        for (int t = 0; t < T; t++) lab[t] = ids[t];
        bert_batch b = { .B = 1, .T = T, .ids = ids, .mlm_labels = mlm ? lab : NULL };
        bert_output o;
        if (bert_forward(bm, &b, mlm ? BERT_HEAD_MLM : BERT_HEAD_CLASSIFY, 0, &o, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        int rows = mlm ? T : 1, cols = mlm ? bm->cfg.vocab_size : bm->cfg.num_labels;
        for (int r = 0; r < rows; r++) {
            for (int k = 0; k < cols; k++) printf(k ? " %.8g" : "%.8g", (double)o.logits[(size_t)r * cols + k]);
            putchar('\n');
        }
    }
    free(line);
    clf_free(m);
    part_source_release(&src);
    store_close(s);
    return 0;
}
