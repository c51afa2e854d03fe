/* cmd_export.c — `flow export HASH --format hf|onnx -o DIR`.
 * --format onnx [--opset N] [--external-data]: the ONNX deployment folder
 * of a classifier (stages/export/onnx_export.h).
 * --format hf: writes a bert
 * model artifact as a HuggingFace model folder that transformers loads
 * with AutoModelForSequenceClassification (bert-cls) or
 * AutoModelForMaskedLM (bert-mlm) and AutoTokenizer:
 *   config.json              BertConfig (+ id2label / label2id)
 *   model.safetensors        written here: u64 little-endian header length,
 *                            JSON header {name: {dtype F32, shape,
 *                            data_offsets}}, padded with spaces to 8 bytes,
 *                            then the raw little-endian float32 data
 *   tokenizer.json           the tokenizer (tokenizers' format)
 *   tokenizer_config.json    PreTrainedTokenizerFast with the BERT specials
 *   special_tokens_map.json
 * The MLM decoder is tied to the word embeddings: both aliases
 * (cls.predictions.decoder.weight / .bias) are written as copies. */
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

typedef struct st_entry { const char *name; const float *data; int ndim; int64_t shape[2]; size_t n; } st_entry;

static void st_add(st_entry *e, int *n, const char *name, const float *data, int ndim, int s0, int s1, size_t numel)
{
    e[*n].name = name;
    e[*n].data = data;
    e[*n].ndim = ndim;
    e[*n].shape[0] = s0;
    e[*n].shape[1] = s1;
    e[*n].n = numel;
    (*n)++;
}

static int write_safetensors(const char *dir, const bert_model *bm)
{
    st_entry *e = xmalloc((size_t)(bm->ntensors + 2) * sizeof *e);
    int n = 0;
    for (int i = 0; i < bm->ntensors; i++) {
        const bert_tensor *t = &bm->tensors[i];
        st_add(e, &n, t->name, bm->params + t->offset, t->ndim, t->shape[0], t->shape[1], t->numel);
    }
    if (bm->cfg.mode & BERT_MODE_MLM) {
        const bert_tensor *w = bert_find_tensor(bm, "bert.embeddings.word_embeddings.weight");
        const bert_tensor *b = bert_find_tensor(bm, "cls.predictions.bias");
        if (!w || !b) FLOW_BUG("MLM model without embeddings or decoder bias");
        st_add(e, &n, "cls.predictions.decoder.weight", bm->params + w->offset, 2, w->shape[0], w->shape[1], w->numel);
        st_add(e, &n, "cls.predictions.decoder.bias", bm->params + b->offset, 1, b->shape[0], 1, b->numel);
    }
    flow_buf h;
    buf_init(&h);
    buf_adds(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        buf_addc(&h, ',');
        buf_json_str(&h, e[i].name, strlen(e[i].name));
        buf_adds(&h, ":{\"dtype\":\"F32\",\"shape\":[");
        if (e[i].ndim == 1) buf_printf(&h, "%lld", (long long)e[i].shape[0]);
        else buf_printf(&h, "%lld,%lld", (long long)e[i].shape[0], (long long)e[i].shape[1]);
        buf_printf(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + e[i].n * sizeof(float));
        off += e[i].n * sizeof(float);
    }
    buf_addc(&h, '}');
    while (h.len % 8) buf_addc(&h, ' ');
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) { free(e); buf_release(&h); return cli_usage_error("export: cannot write '%s': %s", tmp, strerror(errno)); }
    uint64_t hl = h.len;
    unsigned char le[8];
    for (int k = 0; k < 8; k++) le[k] = (unsigned char)(hl >> (8 * k));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(h.data, 1, h.len, f) == h.len;
    /* float32 data: this flow only runs on little-endian hosts (x86-64, arm64) */
    for (int i = 0; i < n && ok; i++) ok = fwrite(e[i].data, sizeof(float), e[i].n, f) == e[i].n;
    ok &= fclose(f) == 0;
    free(e);
    buf_release(&h);
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return cli_usage_error("export: cannot write '%s': %s", path, strerror(errno));
    }
    return 0;
}

static void config_json(flow_buf *b, const clf_model *m)
{
    const bert_config *c = &m->bert->cfg;
    int cls = (c->mode & BERT_MODE_CLASSIFY) != 0;
    buf_printf(b, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"bert\",\n",
               cls ? "BertForSequenceClassification" : "BertForMaskedLM");
    buf_printf(b, "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"num_hidden_layers\": %d,\n"
               "  \"num_attention_heads\": %d,\n  \"intermediate_size\": %d,\n  \"hidden_act\": \"gelu\",\n"
               "  \"hidden_dropout_prob\": ", c->vocab_size, c->hidden, c->layers, c->hidden / c->head_size, c->ffn[0]);
    buf_json_num(b, c->hidden_dropout);
    buf_adds(b, ",\n  \"attention_probs_dropout_prob\": ");
    buf_json_num(b, c->attn_dropout);
    buf_printf(b, ",\n  \"max_position_embeddings\": %d,\n  \"type_vocab_size\": %d,\n"
               "  \"initializer_range\": 0.02,\n  \"layer_norm_eps\": 1e-12,\n  \"pad_token_id\": %d,\n"
               "  \"position_embedding_type\": \"absolute\",\n  \"tie_word_embeddings\": true",
               c->max_len, c->type_vocab, TOK_PAD);
    if (cls) {
        buf_adds(b, ",\n  \"id2label\": {");
        for (int k = 0; k < m->nlabels; k++) {
            buf_printf(b, "%s\"%d\": ", k ? ", " : "", k);
            buf_json_str(b, m->labels[k], strlen(m->labels[k]));
        }
        buf_adds(b, "},\n  \"label2id\": {");
        for (int k = 0; k < m->nlabels; k++) {
            buf_adds(b, k ? ", " : "");
            buf_json_str(b, m->labels[k], strlen(m->labels[k]));
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
    if ((rc = onnx_export(m, NULL, a->out, &o, &info, &err))) {
        if (rc == FLOW_E_PARAM) return cli_usage_error("export: %s", err.msg);
        return cli_fail(&err);
    }
    fprintf(stderr, "exported %s (%s, %s) to %s/model.onnx: opset %d, %d nodes, %d initializers, %.1f MB%s\n",
            a->pos[0], clf_kind(m), info.precision, a->out, info.opset, info.nodes, info.initializers,
            (double)info.weight_bytes / 1e6, info.external ? " in model.onnx.data" : "");
    return 0;
}

static int export_hf(cmd_model *cm, const cli_args *a)
{
    clf_model *m = cm->model;
    int rc;
    if (!m->bert)
        return cli_usage_error("export: artifact %s is a %s model; --format hf exports bert-cls and bert-mlm models", a->pos[0], clf_kind(m));
    if ((rc = make_dir(a->out))) return rc;
    flow_err err = { 0 };
    if ((rc = bert_sync_to_host(m->bert->model, &err))) return cli_fail(&err);
    flow_buf b;
    buf_init(&b);
    config_json(&b, m);
    rc = write_file(a->out, "config.json", b.data, b.len);
    buf_release(&b);
    if (!rc) rc = write_safetensors(a->out, m->bert->model);
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
