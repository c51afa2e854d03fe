/* corpus_read.c — corpus_read: loads a corpus (text, units, labels under a
 * prefix) from a node input through the stage API, validates its
 * corpus.json (corpus_check) and parses it with corpus_parse (corpus.c);
 * corpus_write_format writes the corpus.json of a producer. */
#include "stages/stages.h"

#include <stdlib.h>
#include <string.h>

int corpus_check(flow_ctx *ctx, const char *port, int idx, const char *prefix)
{
    char name[256], units[256];
    snprintf(name, sizeof name, "%scorpus.json", prefix);
    snprintf(units, sizeof units, "%sunits", prefix);
    if (!flow_in_has(ctx, port, idx, name)) {
        if (!flow_in_has(ctx, port, idx, units)) return 0;   /* plain text, not a corpus */
        return flow_ctx_fail(ctx, FLOW_E_INPUT,
                             "input '%s': corpus part %s has no %s beside it: the corpus was written by an "
                             "older flow (unversioned format); rebuild its producer (clean, split) with this "
                             "flow, or, for a corpus made by an exec node, also write %s containing "
                             "{\"format\":\"flow-corpus\",\"version\":%d}",
                             port, units, name, name, CORPUS_FORMAT_VERSION);
    }
    char *js;
    size_t len;
    int rc = flow_in_read(ctx, port, idx, name, &js, &len);
    if (rc) return rc;
    char what[300];
    snprintf(what, sizeof what, "input '%s' part %s", port, name);
    flow_err err = {0, {0}};
    rc = corpus_format_check(js, len, what, &err);
    free(js);
    return rc ? flow_ctx_fail(ctx, rc, "%s", err.msg) : 0;
}

int corpus_write_format(flow_ctx *ctx, const char *prefix)
{
    char name[256];
    snprintf(name, sizeof name, "%scorpus.json", prefix);
    flow_buf b;
    buf_init(&b);
    corpus_format_json(&b);
    int rc = flow_out_write(ctx, name, FLOW_PART_BYTES, b.data, b.len);
    buf_release(&b);
    return rc;
}

int corpus_read(flow_ctx *ctx, const char *port, int idx, const char *prefix, flow_corpus *c)
{
    char name[3][256];
    const char *base[3] = {"text", "units", "labels"};
    char *data[3] = {NULL, NULL, NULL};
    size_t len[3] = {0, 0, 0};
    memset(c, 0, sizeof *c);
    int rc0 = corpus_check(ctx, port, idx, prefix);
    if (rc0) return rc0;
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
