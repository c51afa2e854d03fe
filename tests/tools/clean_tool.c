/* clean_tool.c — the cleaning library (stages/text/text.h) as a filter, for
 * tests that cross-check it against independent implementations
 * (tests/clean_regex_test.py).
 * Usage: clean_tool unit|doc [legal|strict] < in > out
 *   unit: the whole input is one unit (text_clean_unit), printed + '\n';
 *   doc:  the input is a document (text_clean_document), one unit a line.
 * Exit 1 with the message on stderr when cleaning fails. */
#include "stages/text/text.h"

#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "unit") && strcmp(argv[1], "doc"))) {
        fprintf(stderr, "usage: clean_tool unit|doc [legal|strict] < in > out\n");
        return 2;
    }
    text_opts o;
    text_opts_default(&o);
    if (argc > 2 && strcmp(argv[2], "strict") == 0) o.preset = TEXT_PRESET_STRICT;
    flow_buf in;
    buf_init(&in);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) buf_add(&in, chunk, n);
    if (!in.data) buf_reserve(&in, 0);
    flow_err err = {0, {0}};
    int rc;
    if (strcmp(argv[1], "unit") == 0) {
        flow_buf out;
        buf_init(&out);
        rc = text_clean_unit(&o, in.data, in.len, &out, NULL, &err);
        if (!rc) fwrite(out.data, 1, out.len, stdout), fputc('\n', stdout);
        buf_release(&out);
    } else {
        text_units u;
        text_units_init(&u);
        text_stats st;
        memset(&st, 0, sizeof st);
        rc = text_clean_document(&o, in.data, in.len, &u, &st, &err);
        for (int i = 0; !rc && i < u.n; i++) {
            fwrite(u.text.data + u.off[i], 1, u.off[i + 1] - u.off[i], stdout);
            fputc('\n', stdout);
        }
        text_units_release(&u);
    }
    buf_release(&in);
    if (rc) {
        fprintf(stderr, "clean_tool: %s\n", err.msg);
        return 1;
    }
    return 0;
}
