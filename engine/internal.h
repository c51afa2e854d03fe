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
 */
#ifndef FLOW_ENGINE_INTERNAL_H
#define FLOW_ENGINE_INTERNAL_H

#include "engine.h"
#include "cache/cache.h"

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
    int device_gpu;         /* `device = gpu` was written (for messages) */
    int threads;            /* `threads = N`, 0 = stage default */
    int memory_mb;          /* `memory_mb = N`, 0 = stage default */
    int workers;            /* `workers = K` data-parallel workers, 0 = 1 */
    int zero;               /* `zero = 1`: ZeRO-1 optimizer-state sharding */
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
/* The GPU architecture ("sm_86") in the keys of GPU training nodes
 * (key.c: nvidia-smi's compute_cap, asked once per process, all GPUs
 * alike); FLOW_E_GRAPH naming node and the reason when it cannot be told.
 * key_gpu_arch_set fixes it instead (tests). */
int key_gpu_arch(const char *node, char *arch, size_t len, flow_err *e);
void key_gpu_arch_set(const char *arch);
/* Where this process's fp32 GEMM differs from every other machine's (the
 * commands set it from kernels' blas_kernels_pinned), tag ("openblas X")
 * enters every node's key as 'B' (key.c); NULL or "" for none, the default. */
void key_set_platform(const char *tag);
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
                                 * module reports (flow_cuda_load, base.h;
                                 * loaded only when a wanted node asks for
                                 * GPUs, see build.c detect_gpus) */
    int fake_gpus;              /* hidden --fake-gpus N, a test switch
                                 * (sched_test.c, engine_e2e_test.sh):
                                 * pretend devices 0..N-1 exist, even
                                 * without a CUDA backend; overrides the
                                 * above.  Never for real builds: a stage
                                 * granted a fake GPU has none to use */
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

/* Called by the worker right after it committed node `node`'s artifact
 * under key, when the program defines it (a weak reference: `flow` does
 * not; the test binary flow_testhooks does, tests/hooks/drop_after_commit.c,
 * to delete the artifact as a foreign process could). */
void flow_test_commit_hook(flow_store *s, const flow_hash *key, const char *node) __attribute__((weak));

#endif
