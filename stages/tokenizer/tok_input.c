/* tok_input.c — what stages read through the stage API for the tokenizer
 * library: the tokenizer of an input (part tokenizer.bin of a bpe node) and
 * the forced-term lists bound to a port; and a tokenizer written as output parts.  Kept apart from tokenizer.c so that the tokenizer library
 * itself does not depend on the stage API (tools and tests link it alone). */
#include "tokenizer.h"

#include <stdio.h>
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

int tok_write_parts(flow_ctx *c, const tok_tokenizer *t, const char *prefix)
{
    static const char *const names[] = { "vocab.txt", "merges.txt", "tokenizer.json", "tokenizer.bin" };
    void (*const write[])(const tok_tokenizer *, flow_buf *) = {
        tok_export_vocab_txt, tok_export_merges_txt, tok_export_hf_json, tok_serialize };
    flow_buf b;
    buf_init(&b);
    int rc = 0;
    for (int i = 0; i < 4 && !rc; i++) {
        char part[256];
        snprintf(part, sizeof part, "%s%s", prefix, names[i]);
        b.len = 0;
        write[i](t, &b);
        rc = flow_out_write(c, part, FLOW_PART_BYTES, b.data ? b.data : "", b.len);
        if (rc)
            rc = flow_ctx_fail(c, rc, "cannot write part %s", part);
    }
    buf_release(&b);
    return rc;
}
