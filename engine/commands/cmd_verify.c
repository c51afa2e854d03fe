/* cmd_verify.c — `flow verify [--repair]`: re-reads every chunk of every
 * artifact and checks its hash and format; names each damaged thing; exit 1
 * on any.  With --repair (store_repair, cache/repair.c) it instead removes
 * every artifact and checkpoint that a damaged or missing chunk makes
 * unusable, and the damaged chunks, so the next `flow build` rebuilds
 * exactly those nodes; exit 0 once the cache is consistent again. */
#include "commands.h"

#include <stdlib.h>

static void report(const char *what, void *arg)
{
    (*(int *)arg)++;
    fprintf(stderr, "damaged: %s\n", what);
}

static void repair_report(const char *what, void *arg)
{
    (void)arg;
    printf("repair: %s\n", what);
}

static int repair(flow_store *s, const char *dir)
{
    store_repair_stats st;
    flow_err err;
    if (store_repair(s, repair_report, NULL, &st, &err)) return cli_fail(&err);
    printf("repair: %s: removed %llu artifact(s), %llu checkpoint(s) and %llu damaged chunk(s)%s\n",
           dir, (unsigned long long)st.artifacts_removed, (unsigned long long)st.checkpoints_removed,
           (unsigned long long)st.chunks_removed,
           st.artifacts_removed || st.checkpoints_removed ? "; `flow build` rebuilds those nodes" : "");
    return 0;
}

int cmd_verify(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse(argc, argv, "cache repair", &a);
    if (!rc && a.npos) rc = cli_usage_error("verify: usage: flow verify [--repair] [--cache DIR]");
    flow_store *s = NULL;
    flow_err err;
    char *dir = NULL;
    if (!rc) rc = cli_open_cache(&a, &dir, &s);
    if (!rc && a.repair) {
        rc = repair(s, dir);
    } else if (!rc) {
        int damaged = 0;
        int v = store_verify(s, report, &damaged, &err);
        if (v == 0 && damaged == 0) {
            printf("%s: every artifact and chunk verified\n", dir);
        } else if (v == FLOW_E_CORRUPT || (v == 0 && damaged)) {
            fprintf(stderr, "flow: error: %s: %d damaged item(s); run 'flow verify --repair' to remove "
                    "them and what references them, then 'flow build' rebuilds those nodes\n", dir, damaged);
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
