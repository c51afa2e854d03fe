/* cmd_model.h — shared by the model commands (cmd_classify.c, cmd_eval.c,
 * cmd_export.c): opening a model artifact by hash from the cache, and
 * taking command-specific flags out of argv before the engine's cli_parse
 * sees them. */
#ifndef FLOW_CMD_MODEL_H
#define FLOW_CMD_MODEL_H

#include "stages/model/clf_internal.h"
#include "commands.h"

typedef struct cmd_model {
    flow_store *store;
    flow_hash key;
    part_source src;
    clf_model *model;
} cmd_model;

/* Resolves a->pos[0] in the cache (a->cache / FLOW_CACHE / .flow) and loads
 * the model.  Returns 0, or an exit code (message printed). */
int cmd_model_open(const cli_args *a, const char *cmd, cmd_model *cm);
void cmd_model_close(cmd_model *cm);

/* Removes "--NAME" (has_value = 0) or "--NAME VALUE" / "--NAME=VALUE"
 * from argv (compacting it, *argc updated).  Returns 1 if found; *value
 * gets the value.  -1 when the value is missing. */
int cmd_take_flag(int *argc, char **argv, const char *name, int has_value, const char **value);

/* Writes config.json and model.safetensors of a bert model for
 * transformers into dir (which exists): the tensors copied, the tied
 * aliases added, a shrunk model zero-padded to transformers' one shape
 * (cmd_export.c).  labels: id2label (NULL/0 for an MLM).  what names the
 * model in messages.  Returns 0 or an exit code (message printed). */
struct bert_model;
int hf_export_bert(const char *dir, struct bert_model *bm, char *const *labels, int nlabels, const char *what);

#endif
