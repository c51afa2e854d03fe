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

void bert_config_json(const bert_config *c, flow_buf *out)
{
    buf_printf(out, "{\"vocab_size\":%d,\"hidden\":%d,\"layers\":%d,\"heads\":%d,\"intermediate\":%d,"
               "\"max_len\":%d,\"type_vocab\":%d,\"num_labels\":%d,\"hidden_dropout\":",
               c->vocab_size, c->hidden, c->layers, c->heads, c->intermediate, c->max_len,
               c->type_vocab, c->num_labels);
    buf_json_num(out, c->hidden_dropout);
    buf_adds(out, ",\"attn_dropout\":");
    buf_json_num(out, c->attn_dropout);
    buf_printf(out, ",\"mode\":%d}", c->mode);
}

int bert_config_parse(const json_value *cfg, bert_config *c, const char *what, flow_err *err)
{
    if (json_typeof(cfg) != JSON_OBJ)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: model.json has no config object", what);
    memset(c, 0, sizeof *c);
    c->vocab_size = (int)json_num(json_get(cfg, "vocab_size"), 0);
    c->hidden = (int)json_num(json_get(cfg, "hidden"), 0);
    c->layers = (int)json_num(json_get(cfg, "layers"), 0);
    c->heads = (int)json_num(json_get(cfg, "heads"), 0);
    c->intermediate = (int)json_num(json_get(cfg, "intermediate"), 0);
    c->max_len = (int)json_num(json_get(cfg, "max_len"), 0);
    c->type_vocab = (int)json_num(json_get(cfg, "type_vocab"), 2);
    c->num_labels = (int)json_num(json_get(cfg, "num_labels"), 1);
    c->hidden_dropout = (float)json_num(json_get(cfg, "hidden_dropout"), 0.1);
    c->attn_dropout = (float)json_num(json_get(cfg, "attn_dropout"), 0.1);
    c->mode = (int)json_num(json_get(cfg, "mode"), 0);
    flow_err e2 = { 0 };
    if (bert_config_validate(c, &e2))
        return flow_fail(err, FLOW_E_CORRUPT, "%s: model.json config is invalid: %s", what, e2.msg);
    return 0;
}
