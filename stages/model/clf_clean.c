/* clf_clean.c — applies a model's recorded cleaning settings (clean.json,
 * written by the clean stage) to raw text with the same cleaning library
 * (stages/text/text.h, text_clean_unit), so `flow classify` sees what the model
 * was trained on. */
#include "clf_internal.h"
#include "stages/text/text.h"

#include <stdlib.h>
#include <string.h>

int clf_clean_setup(clf_model *m, flow_err *err)
{
    text_opts *o = xmalloc(sizeof *o);
    flow_err e2 = { 0 };
    if (text_opts_from_json(m->clean_json, m->clean_len, o, &e2)) {
        free(o);
        return flow_fail(err, FLOW_E_CORRUPT, "%s: clean.json: %s", m->what, e2.msg);
    }
    m->clean_opts = o;
    m->has_clean = 1;
    return 0;
}

void clf_clean_free(clf_model *m)
{
    free(m->clean_opts);
    m->clean_opts = NULL;
}

char *clf_clean(const clf_model *m, const char *text, size_t len, size_t *outlen)
{
    flow_buf b;
    buf_init(&b);
    if (m->has_clean) {
        text_stats st;
        memset(&st, 0, sizeof st);
        flow_err e = { 0 };
        /* invalid UTF-8 with invalid = reject: classify the text as is
         * rather than nothing (the caller gets a prediction either way) */
        if (text_clean_unit(m->clean_opts, text, len, &b, &st, &e)) {
            buf_release(&b);
            buf_add(&b, text, len);
        }
    } else {
        buf_add(&b, text, len);
    }
    buf_addc(&b, 0);
    *outlen = b.len - 1;
    return buf_detach(&b, NULL);
}
