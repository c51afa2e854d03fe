/* tok_input.c — what stages read through the stage API for the tokenizer
 * library: the tokenizer of an input (part tokenizer.bin of a bpe node) and
 * the forced-term lists bound to a port.  Kept apart from tokenizer.c so that the tokenizer library
 * itself does not depend on the stage API (tools and tests link it alone). */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

int tok_load_input(flow_ctx *c, const char *port, int idx, tok_tokenizer **out)
{
    char *data;
    size_t len;
    *out = NULL;
    if (!flow_in_has(c, port, idx, "tokenizer.bin"))
        return flow_ctx_fail(c, FLOW_E_INPUT, "input '%s' has no part tokenizer.bin; "
                             "bind it to a bpe node", port);
    int rc = flow_in_read(c, port, idx, "tokenizer.bin", &data, &len);
    if (rc)
        return flow_ctx_fail(c, rc, "cannot read tokenizer.bin of input '%s'", port);
    flow_err err = {0};
    rc = tok_load(out, data, len, &err);
    free(data);
    if (rc)
        return flow_ctx_fail(c, rc, "input '%s': %s", port, err.msg);
    return 0;
}

int tok_read_terms(flow_ctx *c, const char *port, tok_terms *terms, int max_chars)
{
    int nb = flow_in_count(c, port);
    for (int i = 0; i < nb; i++) {
        int np = flow_in_nparts(c, port, i);
        int has_terms = flow_in_has(c, port, i, "terms");
        for (int p = 0; p < np; p++) {
            const char *part = flow_in_part_name(c, port, i, p);
            if ((has_terms && strcmp(part, "terms") != 0) || part[0] == '.')
                continue;   /* .index and such are not term lists */
            char *data;
            size_t len;
            int rc = flow_in_read(c, port, i, part, &data, &len);
            if (rc)
                return flow_ctx_fail(c, rc, "cannot read part '%s' of %s input %d", part, port, i);
            char name[512];
            snprintf(name, sizeof name, "%s[%d]/%s", port, i, part);
            flow_err err = {0};
            rc = tok_terms_parse(terms, data, len, name, max_chars, &err);
            free(data);
            if (rc)
                return flow_ctx_fail(c, rc, "%s", err.msg);
        }
    }
    return 0;
}
