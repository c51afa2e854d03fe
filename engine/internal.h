/* internal.h — data structures shared inside the engine library (not by
 * stages): the resolved graph, node keys, the worker context and the build
 * entry point.
 *
 *   parse.c     .graph text -> syntax tree with file:line:col positions
 *   graph.c     syntax tree + registry -> flow_graph (types, defaults,
 *               ranges, references, cycles, topological order)
 *   key.c       canonical encoding and XXH3-128 node keys
 *   params.c    flow_param_* accessors of the stage API
 *   build.c     scheduler: decides what runs where and when
 *   worker.c    forked worker: runs one stage, implements the rest of the
 *               stage API (inputs, outputs, log, metrics, progress,
 *               checkpoints) and commits the artifact
 *   cmd_*.c     one file per CLI command; main.c dispatches
 */
#ifndef FLOW_ENGINE_INTERNAL_H
#define FLOW_ENGINE_INTERNAL_H

#include "engine.h"
#include "../cache/cache.h"

/* A parameter value after type checking and defaults. */
typedef struct graph_value {
    flow_ptype type;
    int64_t i;              /* INT, BOOL (0/1) */
    double f;               /* FLOAT */
    char *s;                /* STRING; PATH: absolute, resolved against the graph folder */
    struct graph_value *items; int nitems;   /* LIST */
    int line, col;          /* where it was written (0 = default) */
    char *raw;              /* PATH only: the path as written, lexically
                             * cleaned (what the key encodes, so moving the
                             * checkout does not change keys) */
} graph_value;

/* A reference to another node, or to one named output of it. */
typedef struct graph_ref {
    int node;               /* index into flow_graph.nodes */
    char *output;           /* NULL = the whole node */
    int line, col;
} graph_ref;

typedef struct graph_binding {
    graph_ref *refs; int nrefs;     /* 0 = unbound (optional input) */
} graph_binding;

typedef struct graph_node {
    char *name;
    int line, col;
    const flow_stage *stage;
    graph_value *params;    /* aligned with stage->params[] */
    graph_binding *inputs;  /* aligned with stage->inputs[] */
    int *deps; int ndeps;   /* distinct upstream nodes, ascending */
    int *users; int nusers; /* distinct downstream nodes, ascending */
    /* reserved node settings, not part of the key: */
    int gpus;               /* GPUs wanted (-1 = all), from `gpus = K|all` */
    int device_auto;        /* `device = auto`: CPU fallback allowed */
    int threads;            /* `threads = N`, 0 = stage default */
} graph_node;

typedef struct flow_graph {
    char *path;             /* absolute path of the .graph file */
    char *dir;              /* its folder */
    char *id;               /* stable id for node history (hex of path hash) */
    graph_node *nodes; int n;
    int *topo;              /* node indices in a deterministic topological order */
} flow_graph;

/* ---- syntax tree (parse.c) --------------------------------------------
 * A graph file is a list of blocks `NAME = STAGE { KEY = VALUE ... }`.  The
 * parser knows nothing about stages: graph.c gives the entries meaning. */
typedef enum ast_kind {
    AST_INT, AST_FLOAT, AST_STRING, AST_WORD, AST_BOOL, AST_LIST
} ast_kind;

typedef struct ast_value {
    ast_kind kind;
    int64_t i;              /* INT, BOOL */
    double f;               /* FLOAT (and INT, converted) */
    char *s;                /* STRING (unescaped), WORD, and the literal text
                             * of INT/FLOAT/BOOL */
    struct ast_value *items; int nitems;     /* LIST (never nested) */
    int line, col;
} ast_value;

typedef struct ast_entry {
    char *key;
    int line, col;
    ast_value v;
    const char *set;        /* non-NULL: came from --set (the argument) */
} ast_entry;

typedef struct ast_block {
    char *name; int line, col;
    char *stage; int sline, scol;
    ast_entry *entries; int n;
} ast_block;

typedef struct ast_file {
    ast_block *blocks; int n;
} ast_file;

/* Parses graph text (any bytes; len may include NULs, which are errors).
 * fname is used in messages "fname:line:col: error: ...".  On error *out is
 * left empty.  Columns count bytes from 1. */
int ast_parse(const char *text, size_t len, const char *fname, ast_file *out, flow_err *err);
/* Parses one value with the graph grammar (for --set); what prefixes the
 * error message (e.g. "--set tok.vocab_size"). */
int ast_parse_value(const char *text, const char *what, ast_value *out, flow_err *err);
void ast_value_release(ast_value *v);
void ast_release(ast_file *f);

/* Loads and resolves a graph.  sets: "NODE.PARAM=VALUE" overrides.  All
 * errors are "file:line:col: message" (sets: "--set NODE.PARAM: ...").
 * Returns FLOW_E_GRAPH on any error; never a partial graph. */
int graph_load(flow_graph **out, const char *path, const flow_registry *reg,
               char *const *sets, int nsets, flow_err *err);
void graph_free(flow_graph *g);
int graph_find(const flow_graph *g, const char *name);   /* -1 if absent */
/* Finds the .graph: a path, or a bare name looked up in ./graphs/. */
int graph_locate(const char *arg, char **path, flow_err *err);

/* Content hash of what a reference sees in artifact a: the whole artifact's
 * content hash (output NULL), or the hash over the parts "out" and "out/..."
 * (names relative to the output, and their content hashes).  FLOW_E_NOTFOUND
 * if the output has no parts. */
int ref_content(const store_artifact *a, const char *output, flow_hash *out);

/* Node key: XXH3-128 over the canonical encoding of stage name, version,
 * every parameter (sorted by name, typed), key_extra bytes, and the input
 * content hashes (per input port in stage order, per ref in order).
 * input_content holds the refs' content hashes flattened in that order.
 * extra: the hash from the stage's key_extra (NULL if it has none). */
flow_hash node_key(const flow_graph *g, int node, const flow_hash *input_content,
                   const flow_hash *extra);

/* Human-readable canonical description of a node's key inputs (one
 * "name = value" line per parameter and input), stored in artifact
 * metadata so `flow why` and `flow status` can say what changed.
 * input_content may be NULL, and an all-zero entry, for inputs not known
 * yet (written as "?"). */
void node_key_describe(const flow_graph *g, int node, const flow_hash *input_content,
                       const flow_hash *extra, flow_buf *out);

/* The key of node i when every upstream node j it depends on is built with
 * key keys[j] (other entries ignored): loads those artifacts' manifests,
 * computes each ref's content (ref_content), runs the stage's key_extra in
 * this process and returns node_key().  describe (may be NULL) receives
 * node_key_describe().  FLOW_E_NOTFOUND if an upstream artifact is missing.
 * Used by build (just before running/looking up a node), status and why. */
int key_for_node(const flow_graph *g, flow_store *s, int node, const flow_hash *keys,
                 flow_hash *key, flow_buf *describe, flow_err *err);
/* A stage context for work done outside a build (key_extra, source_files):
 * graph, node and store set, no progress pipe. */
void key_ctx_init(flow_ctx *ctx, const flow_graph *g, int node, flow_store *s);

/* ---- the worker context (the stage API's flow_ctx) -------------------- */
struct flow_ctx {
    const flow_graph *g;
    int node;
    flow_store *store;          /* opened in the process that uses it */
    flow_hash key;
    /* inputs: one artifact per ref, per port (aligned with stage->inputs);
     * each opened once (its manifest parsed once) for all its parts' reads */
    store_handle ***in_h;       /* [port][ref] */
    const store_artifact ***in_art;   /* [port][ref], owned by in_h */
    /* outputs and reports */
    store_writer *writer;
    flow_buf log, metrics, report;
    int threads;
    int *gpu_ids; int ngpus;
    int progress_fd;            /* pipe to the scheduler, -1 if none */
    double last_progress;       /* time of the last forwarded progress */
    flow_err err;
    struct worker_state *ws;    /* worker.c's private state; NULL outside a
                                 * worker (e.g. key_extra in the engine) */
};

/* ---- building ---------------------------------------------------------- */
typedef struct build_options {
    int jobs;                   /* -j: CPU slots; <= 0 = number of CPUs */
    int *gpu_ids; int ngpus;    /* usable GPU ordinals (only if gpus_given) */
    int gpus_given;             /* 1: --gpus was given (gpu_ids, possibly
                                 * none); 0: use the devices the CUDA
                                 * runtime reports (none without CUDA):
                                 * build.c calls `int flow_cuda_device_count
                                 * (void)` (a weak reference) when the CUDA
                                 * backend defines it in an object file that
                                 * the binary links */
    int fake_gpus;              /* hidden --fake-gpus N (tests): pretend
                                 * devices 0..N-1 exist; overrides the above */
    int keep_going;             /* default 1 */
    int json;                   /* newline-delimited JSON events on stdout */
    int verbose;
    int live;                   /* live terminal display */
    char **targets; int ntargets;   /* empty = all sinks */
} build_options;

typedef struct build_result {
    int ran, cached, failed, skipped;
    double seconds;
} build_result;

/* Builds the targets.  Returns 0 if every node succeeded, FLOW_E_STAGE if
 * some failed (the result counts them), FLOW_E_INTERRUPTED after SIGINT /
 * SIGTERM (running workers were stopped, nothing partial stored; main
 * exits 130), another code for engine errors (unknown target, a node
 * asking for more GPUs than exist: nothing ran).  Prints per-node lines
 * and the summary itself (stdout; --json: JSON events only). */
int build_run(flow_graph *g, flow_store *s, const build_options *opt,
              build_result *res, flow_err *err);

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
