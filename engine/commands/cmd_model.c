/* cmd_model.c — helpers of the model commands (see cmd_model.h). */
#include "cmd_model.h"

#include <stdlib.h>
#include <string.h>

int cmd_model_open(const cli_args *a, const char *cmd, cmd_model *cm)
{
    memset(cm, 0, sizeof *cm);
    int rc = cli_open_artifact(a, cmd, &cm->store, &cm->key);
    if (rc) return rc;
    flow_err err = { 0 };
    if (part_source_store(&cm->src, cm->store, &cm->key, "", &err) ||
        clf_load(&cm->src, &cm->model, &err)) {
        cmd_model_close(cm);
        return cli_fail(&err);
    }
    return 0;
}

void cmd_model_close(cmd_model *cm)
{
    clf_free(cm->model);
    part_source_release(&cm->src);
    if (cm->store) store_close(cm->store);
    memset(cm, 0, sizeof *cm);
}

int cmd_take_flag(int *argc, char **argv, const char *name, int has_value, const char **value)
{
    size_t n = strlen(name);
    for (int i = 1; i < *argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0 || strncmp(argv[i] + 2, name, n) != 0) continue;
        const char *rest = argv[i] + 2 + n;
        int used = 0;
        if (!has_value && *rest == 0) used = 1;
        else if (has_value && *rest == '=') { *value = rest + 1; used = 1; }
        else if (has_value && *rest == 0) {
            if (i + 1 >= *argc) return -1;
            *value = argv[i + 1];
            used = 2;
        }
        if (!used) continue;
        memmove(argv + i, argv + i + used, (size_t)(*argc - i - used + 1) * sizeof *argv);
        *argc -= used;
        return 1;
    }
    return 0;
}
