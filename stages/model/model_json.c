/* model_json.c — the model.json part of every model artifact (format in
 * classifier.h): writing it (format, version, kind, config, labels,
 * training summary) and reading a bert config back.  Below both the
 * writers (model_out.c, baseline.c) and the loader (classifier.c,
 * clf_bert.c), so neither depends on the other. */
#include "clf_internal.h"
#include "kernels/kernels.h"

#include <stdlib.h>
#include <string.h>

void model_json_write(flow_buf *out, const char *kind, const char *config_json,
                      char *const *labels, int nlabels, const char *training_json)
{
    buf_printf(out, "{\"format\":\"%s\",\"version\":%d,\"kind\":", FLOW_MODEL_FORMAT, FLOW_MODEL_VERSION);
    buf_json_str(out, kind, strlen(kind));
    buf_printf(out, ",\"config\":%s", config_json ? config_json : "{}");
    if (labels) {
        buf_adds(out, ",\"labels\":[");
        for (int i = 0; i < nlabels; i++) {
            if (i) buf_addc(out, ',');
            buf_json_str(out, labels[i], strlen(labels[i]));
        }
        buf_addc(out, ']');
    }
    buf_printf(out, ",\"training\":%s}\n", training_json ? training_json : "{}");
}

int model_json_check(const json_value *j, const char *what, flow_err *err)
{
    const char *fmt = json_str(json_get(j, "format"), "");
    int64_t ver = (int64_t)json_num(json_get(j, "version"), -1);
    if (strcmp(fmt, FLOW_MODEL_FORMAT) != 0)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: model.json format is '%s', expected '%s'", what, fmt,
                         FLOW_MODEL_FORMAT);
    if (ver < FLOW_MODEL_VERSION)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: model format version %lld is older than this flow's %d "
                         "(weights in FLOWWTS, not safetensors); rebuild the model with this flow "
                         "(flow build re-runs its node)", what, (long long)ver, FLOW_MODEL_VERSION);
    if (ver > FLOW_MODEL_VERSION)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: model format version %lld is newer than this flow's %d; "
                         "use a newer flow or rebuild the model", what, (long long)ver, FLOW_MODEL_VERSION);
    return 0;
}

void bert_config_json(const bert_config *c, flow_buf *out)
{
    buf_printf(out, "{\"vocab_size\":%d,\"hidden\":%d,\"layers\":%d,\"head_size\":%d,\"layer_heads\":[",
               c->vocab_size, c->hidden, c->layers, c->head_size);
    for (int l = 0; l < c->layers; l++) buf_printf(out, l ? ",%d" : "%d", c->heads[l]);
    buf_adds(out, "],\"layer_ffn\":[");
    for (int l = 0; l < c->layers; l++) buf_printf(out, l ? ",%d" : "%d", c->ffn[l]);
    buf_printf(out, "],\"max_len\":%d,\"type_vocab\":%d,\"num_labels\":%d,\"hidden_dropout\":",
               c->max_len, c->type_vocab, c->num_labels);
    buf_json_num(out, c->hidden_dropout);
    buf_adds(out, ",\"attn_dropout\":");
    buf_json_num(out, c->attn_dropout);
    buf_printf(out, ",\"mode\":%d", c->mode);
    /* written only when not the default, so a [CLS] model's model.json keeps
     * the bytes it had before pooling existed (same keys downstream) */
    if (c->pooling == BERT_POOL_MEAN) buf_adds(out, ",\"pooling\":\"mean\"");
    buf_addc(out, '}');
}

/* One per-layer array of model.json's config into v[0..layers). */
static int layer_array(const json_value *cfg, const char *key, int layers, int *v, const char *what,
                       flow_err *err)
{
    const json_value *a = json_get(cfg, key);
    if (json_typeof(a) != JSON_ARR || json_len(a) != layers)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: model.json config needs \"%s\", an array of %d numbers (one per layer)",
                         what, key, layers);
    for (int l = 0; l < layers; l++) v[l] = (int)json_num(json_at(a, l), 0);
    return 0;
}

int bert_config_parse(const json_value *cfg, bert_config *c, const char *what, flow_err *err)
{
    if (json_typeof(cfg) != JSON_OBJ)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: model.json has no config object", what);
    memset(c, 0, sizeof *c);
    c->vocab_size = (int)json_num(json_get(cfg, "vocab_size"), 0);
    c->hidden = (int)json_num(json_get(cfg, "hidden"), 0);
    c->layers = (int)json_num(json_get(cfg, "layers"), 0);
    c->head_size = (int)json_num(json_get(cfg, "head_size"), 0);
    if (c->layers < 1 || c->layers > BERT_MAX_LAYERS)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: model.json config has %d layers (1..%d)", what, c->layers,
                         BERT_MAX_LAYERS);
    int rc = layer_array(cfg, "layer_heads", c->layers, c->heads, what, err);
    if (!rc) rc = layer_array(cfg, "layer_ffn", c->layers, c->ffn, what, err);
    if (rc) return rc;
    c->max_len = (int)json_num(json_get(cfg, "max_len"), 0);
    c->type_vocab = (int)json_num(json_get(cfg, "type_vocab"), 2);
    c->num_labels = (int)json_num(json_get(cfg, "num_labels"), 1);
    c->hidden_dropout = (float)json_num(json_get(cfg, "hidden_dropout"), 0.1);
    c->attn_dropout = (float)json_num(json_get(cfg, "attn_dropout"), 0.1);
    c->mode = (int)json_num(json_get(cfg, "mode"), 0);
    const json_value *pool = json_get(cfg, "pooling");
    const char *ps = json_str(pool, "?");
    if (!pool || !strcmp(ps, "cls")) c->pooling = BERT_POOL_CLS;
    else if (!strcmp(ps, "mean")) c->pooling = BERT_POOL_MEAN;
    else
        return flow_fail(err, FLOW_E_CORRUPT, "%s: model.json config has pooling '%s'; this flow knows "
                         "\"cls\" and \"mean\" (a newer flow's model?)", what, ps);
    flow_err e2 = { 0 };
    if (bert_config_validate(c, &e2))
        return flow_fail(err, FLOW_E_CORRUPT, "%s: model.json config is invalid: %s", what, e2.msg);
    return 0;
}
