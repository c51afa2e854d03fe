/* cmd_build.c — `flow build GRAPH [TARGET...] [options]`: parses every
 * build option into build_options and runs build_run (build.c). */
#include "commands.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Parses "0,1,3" or "none" into ids. */
static int parse_gpus(const char *v, build_options *o)
{
    o->gpus_given = 1;
    o->ngpus = 0;
    if (!strcmp(v, "none")) return 0;
    o->gpu_ids = xcalloc(strlen(v) + 1, sizeof *o->gpu_ids);
    const char *p = v;
    while (*p) {
        char *end;
        long id = strtol(p, &end, 10);
        if (end == p || id < 0 || id > 1023 || (*end && *end != ','))
            return cli_usage_error("--gpus %s: expected a list of device numbers such as 0,1 or 'none'", v);
        o->gpu_ids[o->ngpus++] = (int)id;
        p = *end ? end + 1 : end;
    }
    if (!o->ngpus) return cli_usage_error("--gpus: expected a list of device numbers or 'none'");
    return 0;
}

/* Closes the store, then gives the space back when the build left a third
 * or more of data.mdb, and at least 1 MiB, free (typically the checkpoints
 * a training node released; LMDB only reuses such pages) and no other
 * process has the cache open (store_compact skips otherwise). */
static void compact_after_build(flow_store *s, const char *dir, int json)
{
    uint64_t free_b = 0, file_b = 0;
    flow_err err;
    int worth = store_free_space(s, &free_b, &file_b, &err) == 0 && free_b >= (1u << 20) &&
                free_b * 3 >= file_b;
    store_close(s);
    store_compact_stats cs;
    if (!worth || store_compact(dir, 33, &cs, &err) != 0 || !cs.compacted || json) return;
    char before[16], after[16];
    cli_human_size(cs.file_before, before);
    cli_human_size(cs.file_after, after);
    printf("flow: compacted the cache: data.mdb %s -> %s (free pages given back)\n", before, after);
}

int cmd_build(int argc, char **argv)
{
    build_options o;
    memset(&o, 0, sizeof o);
    o.keep_going = 1;
    const char *graph = NULL, *cache = NULL;
    char **sets = xcalloc((size_t)argc, sizeof *sets);
    int nsets = 0, rc = 0;
    o.targets = xcalloc((size_t)argc, sizeof *o.targets);
    for (int i = 1; i < argc && !rc; i++) {
        const char *v;
        int miss;
        char *a = argv[i];
        if ((v = cli_optval(argc, argv, &i, "--set", &miss))) {
            if (miss) rc = cli_usage_error("--set needs NODE.PARAM=VALUE");
            else sets[nsets++] = (char *)v;
        } else if ((v = cli_optval(argc, argv, &i, "--cache", &miss))) {
            if (miss) rc = cli_usage_error("--cache needs a folder");
            cache = v;
        } else if ((v = cli_optval(argc, argv, &i, "-j", &miss)) ||
                   (v = cli_optval(argc, argv, &i, "--jobs", &miss))) {
            char *end;
            long j = strtol(v, &end, 10);
            if (miss || *end || j < 1 || j > 4096) rc = cli_usage_error("-j needs a number of jobs 1..4096");
            o.jobs = (int)j;
        } else if ((v = cli_optval(argc, argv, &i, "--gpus", &miss))) {
            if (miss) rc = cli_usage_error("--gpus needs a list such as 0,1 or 'none'");
            else rc = parse_gpus(v, &o);
        } else if ((v = cli_optval(argc, argv, &i, "--fake-gpus", &miss))) {
            char *end;
            long n = strtol(v, &end, 10);
            if (miss || *end || n < 0 || n > 64) rc = cli_usage_error("--fake-gpus needs a count 0..64");
            o.fake_gpus = (int)n;
        } else if (!strcmp(a, "--json")) {
            o.json = 1;
        } else if (!strcmp(a, "--keep-going") || !strcmp(a, "-k")) {
            o.keep_going = 1;
        } else if (!strcmp(a, "--fail-fast")) {
            o.keep_going = 0;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o.verbose = 1;
        } else if (a[0] == '-' && a[1]) {
            rc = cli_usage_error("build: unknown option '%s'; see 'flow build --help'", a);
        } else if (!graph) {
            graph = a;
        } else {
            o.targets[o.ntargets++] = a;
        }
    }
    if (!rc && !graph) rc = cli_usage_error("build: which graph? usage: flow build GRAPH [TARGET...]");
    flow_registry *reg = NULL;
    flow_graph *g = NULL;
    flow_store *s = NULL;
    flow_err err = { 0, "" };
    char *dir = NULL;
    /* --json: errors are events on stdout too */
    int (*fail)(const flow_err *) = o.json ? cli_fail_json : cli_fail;
    if (!rc && cli_load_graph(graph, sets, nsets, &reg, &g, &err)) rc = fail(&err);
    for (int t = 0; !rc && t < o.ntargets; t++)
        if (graph_find(g, o.targets[t]) < 0) {
            flow_fail(&err, FLOW_E_USAGE, "build: no node '%s' in %s; see 'flow dag %s'",
                      o.targets[t], graph, graph);
            rc = fail(&err);
        }
    if (!rc) {
        dir = cli_cache_dir(cache, g->path);
        if (cli_open_store(dir, 0, &s, &err)) rc = fail(&err);
    }
    if (!rc) {
        o.live = !o.json && !o.verbose && isatty(STDOUT_FILENO);
        build_result res;
        int b = build_run(g, s, &o, &res, &err);
        if (b && b != FLOW_E_STAGE) {
            err.code = b;   /* the exit code follows the return value (130 on Ctrl-C) */
            rc = fail(&err);
        }
        else if (b) rc = 1;
    }
    if (s) compact_after_build(s, dir, o.json);
    graph_free(g);
    registry_free(reg);
    free(dir);
    free(sets);
    free(o.targets);
    free(o.gpu_ids);
    return rc;
}
