/* commands.h — the `flow` commands: one file per command (cmd_NAME.c),
 * the shared command-line helpers (cli.c) and the dispatch table (main.c).
 * The top layer: commands may use every library below them (engine,
 * stages, kernels, cache, base); nothing below includes this header. */
#ifndef FLOW_COMMANDS_H
#define FLOW_COMMANDS_H

#include "engine/internal.h"
#include "stages/stages.h"

/* ---- command line (main.c, cli.c, cmd_*.c) ----------------------------
 * Each command is `int cmd_NAME(int argc, char **argv)` with argv[0] the
 * command name; it returns the process exit code: 0 ok, 1 build failure or
 * damage found, 2 usage or graph error (130 interrupted). */
int cmd_build(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_why(int argc, char **argv);
int cmd_dag(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_cat(int argc, char **argv);
int cmd_log(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_verify(int argc, char **argv);
/* model commands: apply or export a model artifact */
int cmd_classify(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_export(int argc, char **argv);
/* reports: the report stage's table and page, metrics across builds */
int cmd_report(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
/* memory planner: parameter/FLOP table and per-device memory plan */
int cmd_plan(int argc, char **argv);

/* Options common to the read-only commands, parsed by cli_parse. */
typedef struct cli_args {
    char **pos; int npos;       /* positional arguments */
    char **sets; int nsets;     /* --set NODE.PARAM=VALUE */
    const char *cache;          /* --cache DIR */
    const char *out;            /* -o FILE */
    int json, dot;              /* --json, --dot */
    int repair;                 /* --repair (verify) */
    int parts;                  /* --parts (show: list every part) */
    long keep_last;             /* --keep-last N (-1 if absent) */
} cli_args;
/* allowed: the options the command takes, as a list of names such as
 * "set cache json" (from: set cache json dot out keep-last repair parts).  Prints the
 * error and returns 2 on a bad command line.  cli_args_release frees. */
int cli_parse(int argc, char **argv, const char *allowed, cli_args *a);
void cli_args_release(cli_args *a);

/* Prints "flow: error: ..." to stderr; returns 2. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints err's message ("flow: error: MSG") and returns the exit code for
 * its code (2 for USAGE/GRAPH, 130 for INTERRUPTED, else 1). */
int cli_fail(const flow_err *err);
int cli_exit_code(int rc);
/* --json variant of cli_fail: prints one line to stdout,
 * {"event":"error","file":F,"line":L,"col":C,"message":M} (file/line/col
 * null when the error has no location; a --set error adds "set":"NODE.PARAM"),
 * and returns the same exit code. */
int cli_fail_json(const flow_err *err);
/* Opens the existing cache named by --cache / FLOW_CACHE / ./.flow (*dir
 * gets its path, caller frees); prints the error and returns the exit code
 * if there is none or it cannot be opened. */
int cli_open_cache(const cli_args *a, char **dir, flow_store **s);

/* What status and why start from: the graph (with --set), its cache if one
 * exists (they never create one) and every node's current key with its
 * description (cli_current_keys).  cli_state_load prints an error through
 * fail (cli_fail or cli_fail_json) and returns its exit code, else 0;
 * cli_state_release frees whatever was loaded. */
typedef struct cli_state {
    flow_registry *reg;
    flow_graph *g;
    flow_store *s;              /* NULL: no cache yet */
    char *dir;
    flow_hash *keys;
    char *known, *built, **desc;
} cli_state;
int cli_state_load(cli_state *st, const cli_args *a, const char *graph,
                   int (*fail)(const flow_err *));
void cli_state_release(cli_state *st);

/* The value of option opt at argv[*i] ("--opt V" or "--opt=V"); NULL if
 * argv[*i] is not opt.  Sets *missing when the value is absent. */
const char *cli_optval(int argc, char **argv, int *i, const char *opt, int *missing);
/* Cache folder: --cache DIR, else $FLOW_CACHE, else `.flow` beside the
 * graph (graph_path may be NULL: then ./.flow or ./graphs/.flow, whichever
 * exists).  Caller frees. */
char *cli_cache_dir(const char *opt_cache, const char *graph_path);
int cli_cache_exists(const char *dir);
/* Opens the store; must_exist: fail (naming the folder) rather than create. */
int cli_open_store(const char *dir, int must_exist, flow_store **s, flow_err *err);
/* graph_locate + registry + graph_load. */
int cli_load_graph(const char *arg, char *const *sets, int nsets, flow_registry **reg,
                   flow_graph **g, flow_err *err);
/* Current key of every node as far as the cache allows: known[i] = 1 when
 * all of i's upstream nodes are built with their current keys (then
 * keys[i] is i's current key and desc[i], if desc, its description);
 * built[i] = 1 when, in addition, keys[i]'s artifact is in the cache.
 * s may be NULL (no cache yet: nothing is built).
 * With desc, a node whose key cannot be computed (say a source folder is
 * gone) gets desc[i] = "!" + the message and the walk goes on; without,
 * that error is returned. */
int cli_current_keys(const flow_graph *g, flow_store *s, flow_hash *keys, char *known,
                     char *built, char **desc, flow_err *err);
/* Compares two node_key_describe texts; *changes receives one readable
 * line per difference ("parameter vocab_size: 8000 -> 9000", "input
 * text[0] (from cleaned): content changed"); returns their number.  Free
 * with cli_free_strings. */
int cli_desc_diff(const char *old_desc, const char *new_desc, char ***changes);
void cli_free_strings(char **v, int n);
/* The node's most recent build in this graph's history, compared with
 * desc_now: returns 0 if it was never built, 1 with *last and the
 * changes filled, 2 if the last build's artifact (or its key_desc) is gone. */
int cli_last_build(const flow_graph *g, flow_store *s, int node, const char *desc_now,
                   flow_hash *last, char ***changes, int *nchanges);
/* Opens the cache of a's options and resolves a->pos[0] (a hash prefix);
 * returns an exit code (0 = ok). */
int cli_open_artifact(const cli_args *a, const char *cmd, flow_store **s, flow_hash *key);
/* 1536 -> "1.5K". */
void cli_human_size(uint64_t n, char out[16]);
/* Reads the metadata JSON of artifact key (NULL if absent or unreadable). */
json_value *cli_meta(flow_store *s, const flow_hash *key);

#endif
