/* registry_all.c — the list of built-in stage kinds.  Add one line per
 * stage file (keep alphabetical). */
#include "stages.h"

#define STAGES(X) \
    X(baseline) \
    X(bpe) \
    X(clean) \
    X(concat) \
    X(coverage) \
    X(distill) \
    X(encode) \
    X(evaluate) \
    X(exec) \
    X(extend_vocab) \
    X(finetune) \
    X(pretrain) \
    X(prune) \
    X(quantize) \
    X(report) \
    X(source) \
    X(split) \
    X(terms) \
    X(trim_vocab) \
    X(wordcount) \

#define DECLARE(name) extern const flow_stage stage_##name;
#define REGISTER(name) registry_add(r, &stage_##name);
STAGES(DECLARE)

void stages_register_all(flow_registry *r)
{
    (void)r;
    STAGES(REGISTER)
}
