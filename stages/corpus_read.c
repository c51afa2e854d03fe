/* corpus_read.c — corpus_read: loads a corpus (text, units, labels under a
 * prefix) from a node input through the stage API and parses it with
 * corpus_parse (corpus.c). */
#include "stages.h"

#include <stdlib.h>
#include <string.h>

int corpus_read(flow_ctx *ctx, const char *port, int idx, const char *prefix, flow_corpus *c)
{
    char name[3][256];
    const char *base[3] = {"text", "units", "labels"};
    char *data[3] = {NULL, NULL, NULL};
    size_t len[3] = {0, 0, 0};
    memset(c, 0, sizeof *c);
    for (int k = 0; k < 3; k++) {
        snprintf(name[k], sizeof name[k], "%s%s", prefix, base[k]);
        if (k == 2 && !flow_in_has(ctx, port, idx, name[k])) break;
        if (!flow_in_has(ctx, port, idx, name[k])) {
            for (int j = 0; j < k; j++) free(data[j]);
            return flow_ctx_fail(ctx, FLOW_E_INPUT,
                                 "input '%s' has no part '%s': bind it to a corpus (a clean node, "
                                 "or a split output such as split.train)", port, name[k]);
        }
        int rc = flow_in_read(ctx, port, idx, name[k], &data[k], &len[k]);
        if (rc) {
            for (int j = 0; j < k; j++) free(data[j]);
            return rc;
        }
    }
    flow_err err = {0, {0}};
    /* units needs one spare byte for an unterminated last line: flow_in_read
     * NUL-terminates, so units[len] exists */
    int rc = corpus_parse(c, data[0], len[0], data[1], len[1], data[2], len[2], &err);
    if (rc) return flow_ctx_fail(ctx, rc, "input '%s': %s", port, err.msg);
    return 0;
}
