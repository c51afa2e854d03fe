/* tok_input.c — loads the tokenizer of a stage input (part tokenizer.bin of
 * a bpe node).  Kept apart from tokenizer.c so that the tokenizer library
 * itself does not depend on the stage API (tools and tests link it alone). */
#include "tokenizer.h"

#include <stdlib.h>

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
