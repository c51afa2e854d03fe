/* onnx_export.c — the ONNX deployment folder of a classifier artifact
 * (contents in onnx_export.h): checks that the model and opset can be
 * exported, builds the graph (onnx_bert.c), writes model.onnx,
 * tokenizer.json and config.json. */
#include "onnx_export.h"
#include "onnx_build.h"
#include "stages/model/clf_bert.h"
#include "stages/tokenizer/tokenizer.h"

#include <errno.h>
#include <string.h>

static int write_small(const char *dir, const char *name, const flow_buf *b, flow_err *e)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return flow_fail(e, FLOW_E_IO, "cannot write '%s': %s", tmp, strerror(errno));
    int ok = fwrite(b->data, 1, b->len, f) == b->len;
    int err = errno;
    if (fclose(f) != 0 && ok) { ok = 0; err = errno; }
    if (ok && rename(tmp, path) != 0) { ok = 0; err = errno; }
    if (!ok) {
        remove(tmp);
        return flow_fail(e, FLOW_E_IO, "cannot write '%s': %s", path, strerror(err));
    }
    return 0;
}

/* config.json's "quantization": the artifact's metadata object (JSON text
 * that qart_load parsed), or null. */
static void quant_json(flow_buf *b, const clf_model *m)
{
    const char *q = m->bert->qmodel ? st_meta(&m->w, "quantization") : NULL;
    buf_adds(b, "  \"quantization\": ");
    buf_adds(b, q ? q : "null");
    buf_adds(b, ",\n");
}

static void config_json(flow_buf *b, const clf_model *m, const onnx_export_info *info,
                        const onnx_export_opts *o)
{
    const bert_config *c = &m->bert->cfg;
    buf_printf(b, "{\n  \"format\": \"flow-onnx\",\n  \"version\": 1,\n  \"model\": \"model.onnx\",\n"
               "  \"kind\": \"%s\",\n  \"precision\": \"%s\",\n  \"opset\": %d,\n",
               clf_kind(m), info->precision, info->opset);
    quant_json(b, m);
    if (o->source) {
        buf_adds(b, "  \"source\": ");
        buf_json_str(b, o->source, strlen(o->source));
        buf_adds(b, ",\n");
    }
    buf_adds(b, "  \"labels\": [");
    for (int k = 0; k < m->nlabels; k++) {
        buf_adds(b, k ? ", " : "");
        buf_json_str(b, m->labels[k], strlen(m->labels[k]));
    }
    buf_adds(b, "],\n  \"id2label\": {");
    for (int k = 0; k < m->nlabels; k++) {
        buf_printf(b, "%s\"%d\": ", k ? ", " : "", k);
        buf_json_str(b, m->labels[k], strlen(m->labels[k]));
    }
    buf_printf(b, "},\n  \"max_length\": %d,\n  \"max_position_embeddings\": %d,\n"
               "  \"inputs\": [\"input_ids\", \"attention_mask\", \"token_type_ids\"],\n"
               "  \"input_dtype\": \"int64\",\n  \"outputs\": [\"logits\"],\n"
               "  \"pad_token_id\": %d,\n  \"cls_token_id\": %d,\n  \"sep_token_id\": %d,\n"
               "  \"pooling\": \"%s\",\n  \"cleaning\": %s\n}\n",
               m->bert->max_len, c->max_len, TOK_PAD, TOK_CLS, TOK_SEP,
               c->pooling == BERT_POOL_MEAN ? "mean" : "cls",
               m->has_clean ? "\"clean.json\"" : "null");
}


static int check_opset(int opset, flow_err *e)
{
    if (opset < ONNX_OPSET_MIN)
        return flow_fail(e, FLOW_E_PARAM,
                         "--opset %d is below what the model needs: LayerNormalization is an ONNX "
                         "operator from opset %d; use --opset %d..%d",
                         opset, ONNX_OPSET_MIN, ONNX_OPSET_MIN, ONNX_OPSET_MAX);
    if (opset > ONNX_OPSET_MAX)
        return flow_fail(e, FLOW_E_PARAM, "--opset %d: this flow writes opsets %d..%d", opset,
                         ONNX_OPSET_MIN, ONNX_OPSET_MAX);
    return 0;
}

static int check_request(const clf_model *m, int opset, flow_err *e)
{
    if (m->kind != CLF_BERT)
        return flow_fail(e, FLOW_E_PARAM,
                         "%s is a %s model, which has no ONNX mapping (character n-gram hashing is "
                         "not an ONNX operator); --format onnx exports bert-cls classifiers (finetune nodes)",
                         m->what, clf_kind(m));
    if (!(m->bert->cfg.mode & BERT_MODE_CLASSIFY))
        return flow_fail(e, FLOW_E_PARAM,
                         "%s is a %s model (a masked LM without a classification head); --format onnx "
                         "exports sequence classifiers: export a finetune node, or use --format hf",
                         m->what, clf_kind(m));
    return check_opset(opset, e);
}

/* Builds and writes model.onnx; metadata names the kind and source. */
static int write_model(const bert_model *bm, const bert_qmodel *q, const char *kind, const char *dir,
                       const onnx_export_opts *o, onnx_export_info *info, flow_err *e)
{
    int opset = o->opset ? o->opset : ONNX_OPSET_DEFAULT;
    int rc = check_opset(opset, e);
    if (rc) return rc;
    memset(info, 0, sizeof *info);
    info->opset = opset;
    onnx_graph g;
    onnx_graph_init(&g, opset);
    onnx_build b = { .g = &g, .m = bm, .q = q, .e = e };
    rc = onnx_bert_classifier(&b);
    if (!rc) rc = b.rc;
    if (b.n_int8 && b.n_uint4) snprintf(info->precision, sizeof info->precision, "int8+uint4-g%d", b.group);
    else if (b.n_uint4) snprintf(info->precision, sizeof info->precision, "uint4-g%d", b.group);
    else snprintf(info->precision, sizeof info->precision, "%s", b.n_int8 ? "int8" : "fp32");
    if (!rc) {
        onnx_meta(&g, "flow.kind", kind);
        onnx_meta(&g, "flow.precision", info->precision);
        if (o->source) onnx_meta(&g, "flow.source", o->source);
        info->nodes = g.nnodes;
        info->initializers = g.ninits;
        info->weight_bytes = onnx_init_bytes(&g);
        rc = onnx_graph_write(&g, dir, "model.onnx", o->external, &info->external, e);
    }
    onnx_graph_release(&g);
    return rc;
}

int onnx_export_model(const bert_model *m, const bert_qmodel *q, const char *dir,
                      const onnx_export_opts *o, onnx_export_info *info, flow_err *e)
{
    return write_model(m, q, "bert-cls", dir, o, info, e);
}

int onnx_export(clf_model *m, const char *dir, const onnx_export_opts *o, onnx_export_info *info,
                flow_err *e)
{
    int opset = o->opset ? o->opset : ONNX_OPSET_DEFAULT;
    int rc = check_request(m, opset, e);
    if (rc) return rc;
    if ((rc = bert_sync_to_host(m->bert->model, e))) return rc;
    if ((rc = write_model(m->bert->model, m->bert->qmodel, clf_kind(m), dir, o, info, e))) {
        if (rc != FLOW_E_IO) {
            char msg[sizeof e->msg];
            snprintf(msg, sizeof msg, "%s", e->msg);
            flow_fail(e, rc, "%s: %s", m->what, msg);
        }
        return rc;
    }
    flow_buf buf;
    buf_init(&buf);
    tok_export_hf_json(m->bert->tok, &buf);
    rc = write_small(dir, "tokenizer.json", &buf, e);
    if (!rc && m->has_clean) {
        /* the text cleaning flow applies before tokenizing (stages/text/text.h) */
        flow_buf cj = { .data = m->clean_json, .len = m->clean_len, .cap = m->clean_len };
        rc = write_small(dir, "clean.json", &cj, e);
    }
    if (!rc) {
        buf.len = 0;
        config_json(&buf, m, info, o);
        rc = write_small(dir, "config.json", &buf, e);
    }
    buf_release(&buf);
    return rc;
}
