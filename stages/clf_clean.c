/* clf_clean.c — applies a model's recorded cleaning settings (clean.json)
 * to raw text.  Waits for the text library (stages/text.h): until then a
 * model that carries clean.json is refused rather than fed uncleaned text. */
#include "clf_internal.h"

#include <stdlib.h>
#include <string.h>

int clf_clean_setup(clf_model *m, flow_err *err)
{
    return flow_fail(err, FLOW_E_INPUT, "%s: the model records cleaning settings (clean.json) but this flow has no cleaning library yet",
                     m->what);
}

void clf_clean_free(clf_model *m) { (void)m; }

char *clf_clean(const clf_model *m, const char *text, size_t len, size_t *outlen)
{
    (void)m;
    char *s = xmalloc(len + 1);
    memcpy(s, text, len);
    s[len] = 0;
    *outlen = len;
    return s;
}
