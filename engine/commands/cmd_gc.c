/* cmd_gc.c — `flow gc [GRAPH...] [--keep-last N]`: deletes every artifact
 * that the given graphs (default: every .graph in ./graphs) do not reach with
 * their current keys — with --keep-last N, also keeps each node's last N
 * builds from its history — then the chunks nobody references; reports
 * what was freed. */
#include "commands.h"

#include <glob.h>
#include <stdlib.h>
#include <string.h>

int cmd_gc(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse(argc, argv, "cache keep-last", &a);
    glob_t gl;
    memset(&gl, 0, sizeof gl);
    char **graphs = a.pos;
    int ngraphs = a.npos;
    if (!rc && ngraphs == 0) {
        if (glob("graphs/*.graph", 0, NULL, &gl) != 0 || gl.gl_pathc == 0)
            rc = cli_usage_error("gc: which graphs are in use? give them (flow gc GRAPH...); "
                                 "./graphs/*.graph has none");
        graphs = gl.gl_pathv;
        ngraphs = (int)gl.gl_pathc;
    }
    flow_store *s = NULL;
    flow_err err;
    char *dir = NULL;
    flow_hash *keep = NULL;
    size_t nkeep = 0, capkeep = 0;
    for (int gi = 0; gi < ngraphs && !rc; gi++) {
        flow_registry *reg;
        flow_graph *g;
        if (cli_load_graph(graphs[gi], NULL, 0, &reg, &g, &err)) { rc = cli_fail(&err); break; }
        if (!s) {
            dir = cli_cache_dir(a.cache, g->path);
            if (cli_open_store(dir, 1, &s, &err)) rc = cli_fail(&err);
        }
        flow_hash *keys = xcalloc((size_t)g->n + 1, sizeof *keys);
        char *known = xcalloc((size_t)g->n + 1, 1), *built = xcalloc((size_t)g->n + 1, 1);
        if (!rc && cli_current_keys(g, s, keys, known, built, NULL, &err)) rc = cli_fail(&err);
        int last_max = a.keep_last > 0 ? (int)(a.keep_last < 1000 ? a.keep_last : 1000) : 0;
        flow_hash *hist = xcalloc((size_t)last_max + 1, sizeof *hist);
        for (int i = 0; i < g->n && !rc; i++) {
            int nh = 0;
            if (last_max && store_last_builds(s, g->id, g->nodes[i].name, hist, last_max, &nh, &err))
                rc = cli_fail(&err);
            if (nkeep + (size_t)nh + 1 > capkeep) {
                capkeep = 2 * (nkeep + (size_t)nh + 1);
                keep = xrealloc(keep, capkeep * sizeof *keep);
            }
            if (built[i]) keep[nkeep++] = keys[i];
            for (int k = 0; k < nh; k++) keep[nkeep++] = hist[k];
        }
        free(hist);
        free(keys);
        free(known);
        free(built);
        graph_free(g);
        registry_free(reg);
    }
    if (!rc) {
        store_gc_stats st;
        memset(&st, 0, sizeof st);
        /* Chunks not yet referenced may belong to a build in progress.  A
         * running build holds a lease on its node key from before it
         * writes chunks until after it commits, so with no lease held only
         * chunks written from now on are at risk: a few seconds of grace
         * covers them.  With leases held, keep 10 minutes' worth.
         * FLOW_GC_GRACE (seconds) overrides. */
        store_stats sst;
        int grace = store_stats_get(s, &sst, &err) == 0 && sst.leases == 0 ? 5 : 600;
        const char *ge = getenv("FLOW_GC_GRACE");
        if (ge && *ge) grace = atoi(ge);
        if (store_gc(s, keep, nkeep, grace, &st, &err)) rc = cli_fail(&err);
        else {
            char fr[16];
            cli_human_size(st.bytes_freed, fr);
            printf("gc: kept %zu artifact key(s) in use; removed %llu artifact(s) and %llu chunk(s), "
                   "freed %s (%llu bytes)\n", nkeep, (unsigned long long)st.artifacts_removed,
                   (unsigned long long)st.chunks_removed, fr, (unsigned long long)st.bytes_freed);
        }
    }
    free(keep);
    if (s) store_close(s);
    free(dir);
    globfree(&gl);
    cli_args_release(&a);
    return rc;
}
