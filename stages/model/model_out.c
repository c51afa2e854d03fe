/* model_out.c — writing BERT model artifacts (format in classifier.h):
 * model.json with the bert config, the weights under their HuggingFace
 * names straight from the model's flat buffer, and the tokenizer and
 * cleaning settings that make the artifact self-contained.  Shared by
 * pretrain and finetune; read back by clf_bert.c and cmd_export.c. */
#include "clf_internal.h"
#include "kernels/kernels.h"

#include <stdlib.h>
#include <string.h>

int bert_artifact_write(flow_ctx *c, const bert_model *m, const char *kind,
                        char *const *labels, int nlabels, const char *training_json)
{
    flow_buf cfg, mj;
    buf_init(&cfg);
    buf_init(&mj);
    bert_config_json(&m->cfg, &cfg);
    model_json_write(&mj, kind, cfg.data, labels, nlabels, training_json);
    int rc = flow_out_write(c, "model.json", FLOW_PART_BYTES, mj.data, mj.len);
    buf_release(&cfg);
    buf_release(&mj);
    if (rc) return rc;
    st_file w;
    st_init(&w);
    st_set_meta(&w, "format", "pt");
    for (int i = 0; i < m->ntensors; i++) {
        const bert_tensor *t = &m->tensors[i];
        int64_t dims[2] = { t->shape[0], t->shape[1] };
        st_add(&w, t->name, ST_F32, t->ndim, dims, m->params + t->offset);
    }
    rc = st_write(&w, c, "weights");
    st_release(&w);
    return rc;
}

int artifact_copy_tokenizer(flow_ctx *c, const char *port)
{
    part_source src;
    part_source_ctx(&src, c, port, 0);
    flow_err err = { 0 };
    /* a model artifact carries tokenizer/...; a bpe node has the parts at top level */
    const char *from = flow_in_has(c, port, 0, "tokenizer/tokenizer.bin") ? "tokenizer/" : "";
    if (!flow_in_has(c, port, 0, from[0] ? "tokenizer/tokenizer.bin" : "tokenizer.bin"))
        return flow_ctx_fail(c, FLOW_E_INPUT, "input '%s' has no tokenizer.bin (bind it to the bpe node or a model artifact)", port);
    int n = flow_in_nparts(c, port, 0), rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const char *name = flow_in_part_name(c, port, 0, i);
        if (strncmp(name, from, strlen(from)) != 0) continue;
        const char *rest = name + strlen(from);
        /* from a bpe node copy its tokenizer files only (they are few and small) */
        if (!from[0] && strcmp(rest, "tokenizer.bin") && strcmp(rest, "tokenizer.json") &&
            strcmp(rest, "vocab.txt") && strcmp(rest, "merges.txt"))
            continue;
        char *data;
        size_t len;
        if ((rc = src.read(src.arg, name, &data, &len, &err))) return flow_ctx_fail(c, rc, "%s", err.msg);
        char dst[512];
        snprintf(dst, sizeof dst, "tokenizer/%s", rest);
        rc = flow_out_write(c, dst, FLOW_PART_BYTES, data, len);
        free(data);
    }
    return rc;
}

int artifact_copy_clean(flow_ctx *c, const char *port)
{
    if (flow_in_count(c, port) == 0 || !flow_in_has(c, port, 0, "clean.json")) return 0;
    char *data;
    size_t len;
    int rc = flow_in_read(c, port, 0, "clean.json", &data, &len);
    if (rc) return flow_ctx_fail(c, rc, "input '%s': cannot read clean.json", port);
    rc = flow_out_write(c, "clean.json", FLOW_PART_BYTES, data, len);
    free(data);
    return rc;
}
