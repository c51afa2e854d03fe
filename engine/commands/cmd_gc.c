/* cmd_gc.c — `flow gc [GRAPH...] [--set N.P=V] [--keep-last N]`: deletes
 * every artifact that nothing roots, then the chunks nobody references,
 * then gives the freed space back to the filesystem.  Roots:
 *   - the current keys of the given graphs (default: every .graph in
 *     ./graphs), with the --set overrides applied to each (same grammar as
 *     build), and with --keep-last N each node's last N builds;
 *   - every running build's live set (store_roots_put: the nodes it runs or
 *     waits for and their inputs), whatever graph or variant it builds;
 *   - every artifact committed after gc listed the candidates (their keys
 *     may be ones the graphs could not compute yet).
 * Reports what it kept for live builds, what it removed and freed, and the
 * file size before and after compaction. */
#include "commands.h"

#include <glob.h>
#include <stdlib.h>
#include <string.h>

typedef struct keyset { flow_hash *k; size_t n, cap; } keyset;

static void ks_add(keyset *ks, const flow_hash *h)
{
    if (ks->n == ks->cap) {
        ks->cap = ks->cap ? 2 * ks->cap : 64;
        ks->k = xrealloc(ks->k, ks->cap * sizeof *ks->k);
    }
    ks->k[ks->n++] = *h;
}

/* Adds graph g's roots: the built current keys, and with keep_last the
 * last builds of each node. */
static int graph_roots(const flow_graph *g, flow_store *s, int keep_last, keyset *keep,
                       flow_err *err)
{
    size_t n = (size_t)g->n + 1;
    flow_hash *keys = xcalloc(n, sizeof *keys), *hist = xcalloc((size_t)keep_last + 1, sizeof *hist);
    char *known = xcalloc(n, 1), *built = xcalloc(n, 1);
    int rc = cli_current_keys(g, s, keys, known, built, NULL, err);
    for (int i = 0; i < g->n && !rc; i++) {
        int nh = 0;
        if (keep_last) rc = store_last_builds(s, g->id, g->nodes[i].name, hist, keep_last, &nh, err);
        if (built[i]) ks_add(keep, &keys[i]);
        for (int k = 0; k < nh; k++) ks_add(keep, &hist[k]);
    }
    free(keys);
    free(hist);
    free(known);
    free(built);
    return rc;
}

/* Chunks not yet referenced may belong to a build in progress.  A running
 * build holds a lease on its node key from before it writes chunks until
 * after it commits, so with no lease held only chunks written from now on
 * are at risk: a few seconds of grace covers them.  With leases held, keep
 * 10 minutes' worth.  FLOW_GC_GRACE (seconds) overrides. */
static int grace_seconds(flow_store *s)
{
    uint64_t leases;
    flow_err err;
    int grace = store_leases_count(s, &leases, &err) == 0 && leases == 0 ? 5 : 600;
    const char *ge = getenv("FLOW_GC_GRACE");
    if (ge && *ge) grace = atoi(ge);
    return grace;
}

static void report(const store_gc_stats *st, size_t nkeep)
{
    for (int b = 0; b < st->nbuilds && b < STORE_GC_MAX_BUILDS; b++)
        printf("gc: kept %llu artifact%s in use by build pid %d on %s\n",
               (unsigned long long)st->builds[b].artifacts, st->builds[b].artifacts == 1 ? "" : "s",
               st->builds[b].pid, st->builds[b].host);
    if (st->nbuilds > STORE_GC_MAX_BUILDS)
        printf("gc: and the live sets of %d more builds\n", st->nbuilds - STORE_GC_MAX_BUILDS);
    if (st->artifacts_recent)
        printf("gc: kept %llu artifact%s committed while gc ran\n",
               (unsigned long long)st->artifacts_recent, st->artifacts_recent == 1 ? "" : "s");
    if (st->stale_records)
        printf("gc: removed %llu lease/live-set record%s of processes that are gone\n",
               (unsigned long long)st->stale_records, st->stale_records == 1 ? "" : "s");
    char fr[16];
    cli_human_size(st->bytes_freed, fr);
    printf("gc: kept %zu artifact key(s) in use; removed %llu artifact(s) and %llu chunk(s), "
           "freed %s (%llu bytes)\n", nkeep, (unsigned long long)st->artifacts_removed,
           (unsigned long long)st->chunks_removed, fr, (unsigned long long)st->bytes_freed);
}

/* Compacts the cache (no handle of ours may be open) and says how big the
 * file was before and after. */
static int compact(const char *dir)
{
    store_compact_stats cs;
    flow_err err;
    if (store_compact(dir, 10, &cs, &err)) return cli_fail(&err);
    char before[16], after[16];
    cli_human_size(cs.file_before, before);
    cli_human_size(cs.file_after, after);
    if (cs.compacted)
        printf("gc: compacted data.mdb: %s -> %s (%llu -> %llu bytes)\n", before, after,
               (unsigned long long)cs.file_before, (unsigned long long)cs.file_after);
    else
        printf("gc: data.mdb stays %s (%llu bytes): not compacted: %s\n", before,
               (unsigned long long)cs.file_before, cs.why);
    return 0;
}

/* Lists the candidates, collects the roots of every graph, collects. */
static int collect(const cli_args *a, char **graphs, int ngraphs, char **dir)
{
    flow_store *s = NULL;
    flow_err err;
    keyset keep = {0};
    flow_hash *cand = NULL;
    size_t ncand = 0;
    int keep_last = a->keep_last > 0 ? (int)(a->keep_last < 1000 ? a->keep_last : 1000) : 0;
    int rc = 0;
    for (int gi = 0; gi < ngraphs && !rc; gi++) {
        flow_registry *reg;
        flow_graph *g;
        if (cli_load_graph(graphs[gi], a->sets, a->nsets, &reg, &g, &err)) {
            rc = cli_fail(&err);
            break;
        }
        if (!s) {
            *dir = cli_cache_dir(a->cache, g->path);
            if (cli_open_store(*dir, 1, &s, &err) || store_list_artifacts(s, &cand, &ncand, &err))
                rc = cli_fail(&err);
        }
        if (!rc && graph_roots(g, s, keep_last, &keep, &err)) rc = cli_fail(&err);
        graph_free(g);
        registry_free(reg);
    }
    store_gc_stats st;
    if (!rc && store_gc(s, keep.k, keep.n, cand, ncand, grace_seconds(s), &st, &err))
        rc = cli_fail(&err);
    if (!rc) report(&st, keep.n);
    free(keep.k);
    free(cand);
    if (s) store_close(s);
    return rc;
}

int cmd_gc(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse(argc, argv, "cache keep-last set", &a);
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
    char *dir = NULL;
    if (!rc) rc = collect(&a, graphs, ngraphs, &dir);
    if (!rc) rc = compact(dir);
    free(dir);
    globfree(&gl);
    cli_args_release(&a);
    return rc;
}
