/* cmd_export.c — `flow export HASH --format hf|onnx -o DIR`.
 * --format onnx [--opset N] [--external-data]: the ONNX deployment folder
 * of a classifier (stages/export/onnx_export.h).
 * --format hf: writes a bert
 * model artifact as a HuggingFace model folder that transformers loads
 * with AutoModelForSequenceClassification (bert-cls) or
 * AutoModelForMaskedLM (bert-mlm) and AutoTokenizer:
 *   config.json              BertConfig (+ id2label / label2id)
 *   model.safetensors        the artifact's tensors (stages/model/safetensors.h)
 *                            copied, plus the tied aliases; a shrunk model
 *                            is zero-padded to transformers' one shape
 *                            (hf_config below)
 *   tokenizer.json           the tokenizer (tokenizers' format)
 *   tokenizer_config.json    PreTrainedTokenizerFast with the BERT specials
 *   special_tokens_map.json
 * The MLM decoder is tied to the word embeddings: both aliases
 * (cls.predictions.decoder.weight / .bias) are written as copies.  A
 * mean-pooled classifier (pooling = mean) is refused: transformers' BERT
 * classifier pools [CLS] only; its ONNX export is faithful. */
#include "cmd_model.h"
#include "stages/model/clf_bert.h"
#include "stages/tokenizer/tokenizer.h"
#include "stages/export/onnx_export.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return cli_usage_error("export: cannot write '%s': %s", tmp, strerror(errno));
    int ok = fwrite(data, 1, len, f) == len;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return cli_usage_error("export: cannot write '%s': %s", path, strerror(errno));
    }
    return 0;
}

/* transformers' BertConfig describes one head count and one FFN width for
 * every layer, with heads x head size = hidden (and transformers 5 no
 * longer loads `pruned_heads`).  A shrunk model (pruned heads, narrower
 * FFNs) is therefore written in that full shape with zeros: a padded head
 * has zero query/key/value weights and biases (its attention is uniform
 * over zero values, so its context is 0) and zero columns in the output
 * dense; a padded FFN neuron has zero input weights and bias (GELU(0) = 0)
 * and zero columns in the output dense.  The exported model computes
 * exactly the same function.  *full receives that config. */
static int hf_config(const bert_config *c, const char *hash, bert_config *full)
{
    *full = *c;
    if (c->hidden % c->head_size != 0)
        return cli_usage_error("export: %s has attention heads of %d, which do not divide hidden %d; "
                               "transformers' BERT needs heads x head size = hidden", hash, c->head_size, c->hidden);
    int nh = c->hidden / c->head_size, ffn = 0;
    for (int l = 0; l < c->layers; l++) {
        if (c->heads[l] > nh)
            return cli_usage_error("export: layer %d of %s has %d heads of %d, wider than hidden %d; "
                                   "transformers' BERT cannot hold it", l, hash, c->heads[l], c->head_size, c->hidden);
        ffn = c->ffn[l] > ffn ? c->ffn[l] : ffn;
    }
    for (int l = 0; l < c->layers; l++) {
        full->heads[l] = nh;
        full->ffn[l] = ffn;
    }
    return 0;
}

/* A [R, Cc] copy of src [r, cols] in its top-left corner, zeros elsewhere. */
static float *pad_matrix(const float *src, int r, int cols, int R, int Cc)
{
    float *d = xcalloc((size_t)R * (size_t)Cc, sizeof *d);
    for (int i = 0; i < r; i++) memcpy(d + (size_t)i * Cc, src + (size_t)i * cols, (size_t)cols * sizeof *d);
    return d;
}

static int file_write(void *arg, const void *p, size_t n)
{
    return fwrite(p, 1, n, arg) == n ? 0 : FLOW_E_IO;
}

/* model.safetensors: every tensor of the model (padded to full shape where
 * the model is shrunk) plus the tied decoder aliases. */
static int write_safetensors(const char *dir, const bert_model *bm, const bert_config *full)
{
    bert_tensor *ft;
    int fn;
    flow_err err = { 0 };
    if (bert_tensor_table(full, &ft, &fn, &err) || fn != bm->ntensors) FLOW_BUG("export table: %s", err.msg);
    st_file st;
    st_init(&st);
    st_set_meta(&st, "format", "pt");
    float **pads = xcalloc((size_t)fn + 1, sizeof *pads);
    for (int i = 0; i < fn; i++) {
        const bert_tensor *t = &bm->tensors[i], *f = &ft[i];
        const float *data = bm->params + t->offset;
        if (t->shape[0] != f->shape[0] || t->shape[1] != f->shape[1])
            data = pads[i] = pad_matrix(data, t->shape[0], t->shape[1], f->shape[0], f->shape[1]);
        int64_t shape[2] = { f->shape[0], f->shape[1] };
        st_add(&st, f->name, ST_F32, f->ndim, shape, data);
    }
    if (bm->cfg.mode & BERT_MODE_MLM) {
        const bert_tensor *w = bert_find_tensor(bm, "bert.embeddings.word_embeddings.weight");
        const bert_tensor *b = bert_find_tensor(bm, "cls.predictions.bias");
        if (!w || !b) FLOW_BUG("MLM model without embeddings or decoder bias");
        int64_t ws[2] = { w->shape[0], w->shape[1] }, bs[1] = { b->shape[0] };
        st_add(&st, "cls.predictions.decoder.weight", ST_F32, 2, ws, bm->params + w->offset);
        st_add(&st, "cls.predictions.decoder.bias", ST_F32, 1, bs, bm->params + b->offset);
    }
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int ok = f != NULL;
    /* float32 data: this flow only runs on little-endian hosts (x86-64, arm64) */
    if (ok) ok = st_write_stream(&st, file_write, f) == 0;
    if (f) ok &= fclose(f) == 0;
    for (int i = 0; i < fn; i++) free(pads[i]);
    free(pads);
    free(ft);
    st_release(&st);
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return cli_usage_error("export: cannot write '%s': %s", path, strerror(errno));
    }
    return 0;
}

static void config_json(flow_buf *b, const bert_config *c, char *const *labels, int nlabels)
{
    int cls = (c->mode & BERT_MODE_CLASSIFY) != 0;
    buf_printf(b, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"bert\",\n",
               cls ? "BertForSequenceClassification" : "BertForMaskedLM");
    buf_printf(b, "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"num_hidden_layers\": %d,\n"
               "  \"num_attention_heads\": %d,\n  \"intermediate_size\": %d,\n  \"hidden_act\": \"gelu\",\n"
               "  \"hidden_dropout_prob\": ", c->vocab_size, c->hidden, c->layers, c->heads[0], c->ffn[0]);
    buf_json_num(b, c->hidden_dropout);
    buf_adds(b, ",\n  \"attention_probs_dropout_prob\": ");
    buf_json_num(b, c->attn_dropout);
    buf_printf(b, ",\n  \"max_position_embeddings\": %d,\n  \"type_vocab_size\": %d,\n"
               "  \"initializer_range\": 0.02,\n  \"layer_norm_eps\": 1e-12,\n  \"pad_token_id\": %d,\n"
               "  \"position_embedding_type\": \"absolute\",\n  \"tie_word_embeddings\": true",
               c->max_len, c->type_vocab, TOK_PAD);
    if (cls) {
        buf_adds(b, ",\n  \"id2label\": {");
        for (int k = 0; k < nlabels; k++) {
            buf_printf(b, "%s\"%d\": ", k ? ", " : "", k);
            buf_json_str(b, labels[k], strlen(labels[k]));
        }
        buf_adds(b, "},\n  \"label2id\": {");
        for (int k = 0; k < nlabels; k++) {
            buf_adds(b, k ? ", " : "");
            buf_json_str(b, labels[k], strlen(labels[k]));
            buf_printf(b, ": %d", k);
        }
        buf_adds(b, "}");
    }
    buf_adds(b, "\n}\n");
}

static int make_dir(const char *dir)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return cli_usage_error("export: cannot create '%s': %s", dir, strerror(errno));
    return 0;
}

static int export_onnx(cmd_model *cm, const cli_args *a, int opset, int external)
{
    clf_model *m = cm->model;
    onnx_export_opts o = { .opset = opset, .external = external, .source = a->pos[0] };
    onnx_export_info info;
    flow_err err = { 0 };
    int rc = make_dir(a->out);
    if (rc) return rc;
    if ((rc = onnx_export(m, a->out, &o, &info, &err))) {
        if (rc == FLOW_E_PARAM) return cli_usage_error("export: %s", err.msg);
        return cli_fail(&err);
    }
    fprintf(stderr, "exported %s (%s, %s) to %s/model.onnx: opset %d, %d nodes, %d initializers, %.1f MB%s\n",
            a->pos[0], clf_kind(m), info.precision, a->out, info.opset, info.nodes, info.initializers,
            (double)info.weight_bytes / 1e6, info.external ? " in model.onnx.data" : "");
    return 0;
}

int hf_export_bert(const char *dir, bert_model *bm, char *const *labels, int nlabels, const char *what)
{
    bert_config full;
    flow_err err = { 0 };
    if ((bm->cfg.mode & BERT_MODE_CLASSIFY) && bm->cfg.pooling == BERT_POOL_MEAN)
        return cli_usage_error("export: %s is a mean-pooled classifier; transformers' BERT classifier pools "
                               "[CLS] only: use --format onnx", what);
    int rc = hf_config(&bm->cfg, what, &full);
    if (rc) return rc;
    if ((rc = bert_sync_to_host(bm, &err))) return cli_fail(&err);
    flow_buf b;
    buf_init(&b);
    config_json(&b, &full, labels, nlabels);
    rc = write_file(dir, "config.json", b.data, b.len);
    buf_release(&b);
    return rc ? rc : write_safetensors(dir, bm, &full);
}

/* Encoder Linears a quantize artifact holds as integer codes (0 for a
 * fp32 model or a quantize node with policy none). */
static int quantized_linears(const struct clf_bert *cb)
{
    int n = 0;
    for (int l = 0; cb->qmodel && l < cb->cfg.layers; l++)
        for (int w = 0; w < BERT_LIN_COUNT; w++) n += bert_qmodel_get(cb->qmodel, l, w) != NULL;
    return n;
}

/* "node 'NAME', stage STAGE" of the artifact, from its metadata (or
 * "node ?" when it has none). */
static void artifact_node(cmd_model *cm, char *out, size_t n)
{
    store_artifact *art = NULL;
    json_value *j = NULL;
    flow_err err = { 0 };
    snprintf(out, n, "node ?");
    if (store_get_summary(cm->store, &cm->key, &art, &err) == 0 && art->meta_json &&
        json_parse(art->meta_json, strlen(art->meta_json), "metadata", &j, &err) == 0)
        snprintf(out, n, "node '%s', stage %s", json_str(json_get(j, "node"), "?"),
                 json_str(json_get(j, "stage"), "?"));
    json_free(j);
    store_artifact_free(art);
}

static int export_hf(cmd_model *cm, const cli_args *a)
{
    clf_model *m = cm->model;
    int rc;
    if (!m->bert)
        return cli_usage_error("export: artifact %s is a %s model; --format hf exports bert-cls and bert-mlm models", a->pos[0], clf_kind(m));
    if ((m->bert->cfg.mode & BERT_MODE_CLASSIFY) && m->bert->cfg.pooling == BERT_POOL_MEAN) {
        /* BertForSequenceClassification's pooler reads the first token only:
         * its config has no pooling choice, so the folder would load without
         * error and compute another function than the one flow runs */
        char node[256];
        artifact_node(cm, node, sizeof node);
        return cli_usage_error("export: artifact %s (%s) is a mean-pooled classifier (pooling = mean); "
                               "transformers' BertForSequenceClassification pools the [CLS] token only, so "
                               "--format hf cannot express it: export it with --format onnx (the mean is "
                               "standard ONNX operators), or fine-tune with pooling = cls", a->pos[0], node);
    }
    if (quantized_linears(m->bert))
        /* its quantized Linears are integer codes: HF's fp32 safetensors would
         * need them dequantized, which is another model than the one flow runs */
        return cli_usage_error("export: artifact %s is a quantized model (its encoder Linears are int8/4-bit codes); "
                               "--format hf writes fp32 weights: export it with --format onnx, or export the fp32 "
                               "model it was quantized from", a->pos[0]);
    if ((rc = make_dir(a->out))) return rc;
    flow_buf b;
    buf_init(&b);
    rc = hf_export_bert(a->out, m->bert->model, m->labels, m->nlabels, a->pos[0]);
    if (!rc) {
        tok_export_hf_json(m->bert->tok, &b);
        rc = write_file(a->out, "tokenizer.json", b.data, b.len);
        buf_release(&b);
    }
    if (!rc) {
        buf_printf(&b, "{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n  \"model_max_length\": %d,\n"
                   "  \"pad_token\": \"[PAD]\",\n  \"unk_token\": \"[UNK]\",\n  \"cls_token\": \"[CLS]\",\n"
                   "  \"sep_token\": \"[SEP]\",\n  \"mask_token\": \"[MASK]\",\n  \"model_input_names\": [\"input_ids\", \"token_type_ids\", \"attention_mask\"]\n}\n",
                   m->bert->max_len);
        rc = write_file(a->out, "tokenizer_config.json", b.data, b.len);
        buf_release(&b);
    }
    if (!rc) {
        buf_adds(&b, "{\"pad_token\": \"[PAD]\", \"unk_token\": \"[UNK]\", \"cls_token\": \"[CLS]\", "
                     "\"sep_token\": \"[SEP]\", \"mask_token\": \"[MASK]\"}\n");
        rc = write_file(a->out, "special_tokens_map.json", b.data, b.len);
        buf_release(&b);
    }
    if (!rc) fprintf(stderr, "exported %s (%s, %zu parameters) to %s\n", a->pos[0], clf_kind(m), m->bert->model->nparams, a->out);
    return rc;
}

int cmd_export(int argc, char **argv)
{
    const char *format = "hf", *opset_s = NULL, *unused;
    if (cmd_take_flag(&argc, argv, "format", 1, &format) < 0) return cli_usage_error("export: --format needs a value (hf or onnx)");
    if (cmd_take_flag(&argc, argv, "opset", 1, &opset_s) < 0) return cli_usage_error("export: --opset needs a number (%d..%d)", ONNX_OPSET_MIN, ONNX_OPSET_MAX);
    int external = cmd_take_flag(&argc, argv, "external-data", 0, &unused) == 1;
    int onnx = strcmp(format, "onnx") == 0;
    if (!onnx && strcmp(format, "hf") != 0) return cli_usage_error("export: unknown --format '%s'; this flow writes hf and onnx", format);
    if (!onnx && (opset_s || external)) return cli_usage_error("export: --opset and --external-data are options of --format onnx");
    int opset = 0;
    if (opset_s) {
        char *end;
        long v = strtol(opset_s, &end, 10);
        if (!*opset_s || *end || v < 1 || v > 1000) return cli_usage_error("export: --opset '%s' is not an opset number (%d..%d)", opset_s, ONNX_OPSET_MIN, ONNX_OPSET_MAX);
        opset = (int)v;
    }
    cli_args a;
    int rc = cli_parse(argc, argv, "cache out", &a);
    if (rc) return rc;
    if (a.npos != 1 || !a.out) { cli_args_release(&a); return cli_usage_error("export: usage: flow export HASH --format hf|onnx [--opset N] [--external-data] -o DIR"); }
    cmd_model cm;
    if ((rc = cmd_model_open(&a, "export", &cm))) { cli_args_release(&a); return rc; }
    rc = onnx ? export_onnx(&cm, &a, opset, external) : export_hf(&cm, &a);
    cmd_model_close(&cm);
    cli_args_release(&a);
    return rc;
}
