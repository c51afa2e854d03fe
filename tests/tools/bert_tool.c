/* bert_tool.c — dumps one forward/backward of a small seeded BERT as raw
 * files, for tests/bert_torch_test.py to rebuild the same model in PyTorch
 * (transformers) and compare logits, loss and every gradient.
 *
 *   bert_tool OUTDIR mlm|cls [SEED] [shrunk]
 *
 * shrunk: 3 layers with unequal heads (4, 1, 3 heads of 8; hidden 32) and
 * FFN widths (64, 24, 40), the shape of a pruned model.
 *
 * Writes into OUTDIR (little-endian raw arrays):
 *   config.txt   key value lines (vocab_size hidden layers head_size
 *                max_len type_vocab num_labels B T mode), then
 *                "layer L HEADS FFN" per layer
 *   tensors.txt  name offset numel shape0 shape1, one tensor a line
 *   params.f32   flat parameters;  grads.f32  flat gradients (loss_scale 1)
 *   ids.i32 types.i32 mask.i32 [B,T]; mlm_labels.i32 [B,T]; labels.i32 [B];
 *   class_weights.f32 [C]
 *   logits.f32   MLM: [M,V] rows listed in rows.i32; cls: [B,C]
 *   loss.f32     one float
 *   hf/          the model as `flow export --format hf` writes it
 *                (config.json, model.safetensors; a shrunk model padded)
 * Dropout is off (the comparison is deterministic); exit 0 or 1.
 */
#include "kernels/kernels.h"
#include "engine/commands/cmd_model.h"
#include <sys/stat.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int dump(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes || fclose(f) != 0) {
        fprintf(stderr, "bert_tool: cannot write '%s': %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[2], "mlm") && strcmp(argv[2], "cls"))) {
        fprintf(stderr, "usage: bert_tool OUTDIR mlm|cls [SEED]\n");
        return 2;
    }
    const char *dir = argv[1];
    int mlm = strcmp(argv[2], "mlm") == 0;
    uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
    int shrunk = argc > 4 && strcmp(argv[4], "shrunk") == 0;
    bert_set_threads(2);

    bert_config c;
    bert_config_default(&c);
    c.vocab_size = 50; c.hidden = 32; c.layers = shrunk ? 3 : 2;
    bert_config_uniform(&c, 4, 64, NULL);
    if (shrunk) {
        int heads[3] = {4, 1, 3}, ffn[3] = {64, 24, 40};
        for (int l = 0; l < 3; l++) {
            c.heads[l] = heads[l];
            c.ffn[l] = ffn[l];
        }
    }
    c.max_len = 16; c.type_vocab = 2; c.num_labels = 3;
    c.hidden_dropout = c.attn_dropout = 0;
    c.mode = mlm ? BERT_MODE_MLM : BERT_MODE_CLASSIFY;
    enum { B = 3, T = 10 };
    bert_model *m;
    flow_err e;
    if (bert_model_new(&c, B, T, &bert_device_cpu, &m, &e)) {
        fprintf(stderr, "bert_tool: %s\n", e.msg);
        return 1;
    }
    if (bert_init(m, seed, &e)) {
        fprintf(stderr, "bert_tool: %s\n", e.msg);
        return 1;
    }
    /* non-trivial LayerNorm and bias values so every gradient is exercised */
    uint64_t s = seed * 2654435761ULL + 7;
    for (int i = 0; i < m->ntensors; i++) {
        const bert_tensor *t = &m->tensors[i];
        if (t->decay)
            continue;
        for (size_t k = 0; k < t->numel; k++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            m->params[t->offset + k] += 0.1f * (float)((s >> 40) / 8388608.0 - 1.0);
        }
    }
    int32_t ids[B * T], types[B * T], mask[B * T], mlm_labels[B * T], labels[B] = {2, 0, 1};
    int len[B] = {10, 7, 4};
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int i = b * T + t;
            mask[i] = t < len[b];
            ids[i] = t == 0 ? 2 : t == len[b] - 1 ? 3 : t < len[b] ? 5 + (b * 13 + t * 7) % 45 : 0;
            types[i] = t >= len[b] / 2 && t < len[b];
            mlm_labels[i] = (t % 3 == 1 && t < len[b]) ? 5 + (b * 11 + t * 3) % 45 : -100;
        }
    ids[1 * T + 3] = 4;     /* a [MASK] */
    float cw[3] = {1.0f, 0.5f, 2.0f};
    bert_batch bt = {B, T, ids, types, mask, mlm_labels, labels, cw};
    bert_output o;
    bert_zero_grad(m);
    if (bert_forward(m, &bt, mlm ? BERT_HEAD_MLM : BERT_HEAD_CLASSIFY, 1, &o, &e)
        || bert_backward(m, 1.0f, &e)) {
        fprintf(stderr, "bert_tool: %s\n", e.msg);
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/config.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "bert_tool: cannot write '%s': %s\n", path, strerror(errno));
        return 1;
    }
    fprintf(f, "vocab_size %d\nhidden %d\nlayers %d\nhead_size %d\nmax_len %d\n"
            "type_vocab %d\nnum_labels %d\nB %d\nT %d\nmode %s\n", c.vocab_size, c.hidden,
            c.layers, c.head_size, c.max_len, c.type_vocab, c.num_labels, B, T, argv[2]);
    for (int l = 0; l < c.layers; l++)
        fprintf(f, "layer %d %d %d\n", l, c.heads[l], c.ffn[l]);
    fclose(f);
    snprintf(path, sizeof path, "%s/tensors.txt", dir);
    f = fopen(path, "w");
    if (!f)
        return 1;
    for (int i = 0; i < m->ntensors; i++)
        fprintf(f, "%s %zu %zu %d %d\n", m->tensors[i].name, m->tensors[i].offset,
                m->tensors[i].numel, m->tensors[i].shape[0], m->tensors[i].shape[1]);
    fclose(f);
    size_t nl = mlm ? (size_t)o.n_targets * c.vocab_size : (size_t)B * c.num_labels;
    int rc = dump(dir, "params.f32", m->params, m->nparams * 4)
        | dump(dir, "grads.f32", m->grads, m->nparams * 4)
        | dump(dir, "ids.i32", ids, sizeof ids) | dump(dir, "types.i32", types, sizeof types)
        | dump(dir, "mask.i32", mask, sizeof mask)
        | dump(dir, "mlm_labels.i32", mlm_labels, sizeof mlm_labels)
        | dump(dir, "labels.i32", labels, sizeof labels)
        | dump(dir, "class_weights.f32", cw, sizeof cw)
        | dump(dir, "logits.f32", o.logits, nl * 4) | dump(dir, "loss.f32", &o.loss, 4)
        | dump(dir, "rows.i32", mlm ? o.rows : labels, mlm ? (size_t)o.n_targets * 4 : 0);
    snprintf(path, sizeof path, "%s/hf", dir);
    char *names[3] = { "L0", "L1", "L2" };
    if (!rc && (mkdir(path, 0777) != 0 || hf_export_bert(path, m, mlm ? NULL : names, mlm ? 0 : 3, "bert_tool")))
        rc = 1;
    bert_model_free(m);
    return rc ? 1 : 0;
}
