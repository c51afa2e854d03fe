/* registry_all.c — the list of built-in stage kinds.  Add one line per
 * stage file (keep alphabetical). */
#include "stages.h"

#define STAGES(X) \
    X(baseline) \
    X(bpe) \
    X(clean) \
    X(coverage) \
    X(encode) \
    X(evaluate) \
    X(exec) \
    X(finetune) \
    X(pretrain) \
    X(split) \
    X(terms) \

#define DECLARE(name) extern const flow_stage stage_##name;
#define REGISTER(name) registry_add(r, &stage_##name);
STAGES(DECLARE)

void stages_register_all(flow_registry *r)
{
    (void)r;
    STAGES(REGISTER)
}
