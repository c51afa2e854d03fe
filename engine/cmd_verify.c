/* cmd_verify.c — `flow verify`: re-reads every chunk of every artifact and
 * checks its hash and format; names each damaged thing; exit 1 on any. */
#include "internal.h"

#include <stdlib.h>

static void report(const char *what, void *arg)
{
    (*(int *)arg)++;
    fprintf(stderr, "damaged: %s\n", what);
}

int cmd_verify(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse(argc, argv, "cache", &a);
    if (!rc && a.npos) rc = cli_usage_error("verify: usage: flow verify [--cache DIR]");
    flow_store *s = NULL;
    flow_err err;
    char *dir = NULL;
    if (!rc) {
        dir = cli_cache_dir(a.cache, NULL);
        if (cli_open_store(dir, 1, &s, &err)) rc = cli_fail(&err);
    }
    if (!rc) {
        int damaged = 0;
        int v = store_verify(s, report, &damaged, &err);
        if (v == 0 && damaged == 0) {
            printf("%s: every artifact and chunk verified\n", dir);
        } else if (v == FLOW_E_CORRUPT || (v == 0 && damaged)) {
            fprintf(stderr, "flow: error: %s: %d damaged item(s); run 'flow gc' to drop damaged "
                    "artifacts' references, or delete the cache and rebuild\n", dir, damaged);
            rc = 1;
        } else {
            rc = cli_fail(&err);
        }
    }
    if (s) store_close(s);
    free(dir);
    cli_args_release(&a);
    return rc;
}
