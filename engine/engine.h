/* engine.h — the one public header of the engine library.
 *
 * The engine reads .graph files, resolves them against a registry of stage
 * kinds, computes content-hash keys, schedules nodes into forked workers and
 * records their artifacts in the cache (cache/cache.h).  Stages (stages/)
 * see only the "stage API" half of this header: a flow_ctx through which a
 * run function reads its parameters and inputs, writes output parts, logs,
 * reports metrics and progress, and checkpoints.
 *
 * Errors, buffers, hashing, UTF-8 and JSON come from the ground-floor
 * library (base/base.h), whose conventions this header follows.
 */
#ifndef FLOW_ENGINE_H
#define FLOW_ENGINE_H

#include "engine/base/base.h"

/* ------------------------------------------------------------------ */
/* Stage declarations.                                                 */

typedef enum flow_ptype {
    FLOW_P_INT,     /* int64 */
    FLOW_P_FLOAT,   /* double */
    FLOW_P_STRING,  /* quoted string, or a bare word */
    FLOW_P_BOOL,    /* true / false */
    FLOW_P_LIST,    /* [v, v, ...] of scalars; element type in elem */
    FLOW_P_PATH,    /* string resolved against the graph file's folder */
} flow_ptype;

typedef struct flow_param_def {
    const char *name;
    flow_ptype type;
    flow_ptype elem;        /* for FLOW_P_LIST: element type */
    const char *def;        /* default as graph-literal text; NULL = required */
    double min, max;        /* inclusive range for INT/FLOAT (and list
                             * elements); min > max means unbounded */
    const char *choices;    /* for STRING: "a|b|c", NULL = free text; for
                             * INT: the allowed values "4|8" (NULL = range) */
    const char *help;
} flow_param_def;

typedef struct flow_input_def {
    const char *name;
    int optional;           /* may be left unbound */
    int many;               /* accepts a list of references [a, b.out] */
    const char *help;
} flow_input_def;

typedef struct flow_output_def {
    const char *name;       /* parts "NAME" or "NAME/..."; addressed as node.NAME */
    const char *help;
} flow_output_def;

/* A parameter or input that a stage uses only in some configurations,
 * e.g. finetune's architecture parameters, used only when input `base` is
 * unbound.  Setting such a parameter (in the graph or with --set), or
 * binding such an input, when its condition does not hold is a graph error
 * naming both: it could neither change the output (so it must not rerun
 * the node) nor be silently ignored.  Left unset it keeps its default,
 * which is what the key holds. */
typedef struct flow_applies_def {
    const char *name;       /* the conditional parameter or input */
    const char *on;         /* the input or parameter it depends on */
    const char *when;       /* `on` an input: "bound" or "unbound"; `on` a
                             * parameter: the value, as a graph literal
                             * ("0", "true", "folders"), for which it applies */
    const char *why;        /* short reason, quoted in the error */
} flow_applies_def;

typedef struct flow_ctx flow_ctx;
struct flow_resolved_node;  /* engine-internal */

/* Resources a stage asks for. */
typedef struct flow_resources {
    int threads;            /* threads wanted; 0 = as many as -j allows */
    int gpus;               /* default GPUs wanted (a node may override with
                             * the reserved parameter `gpus`); -1 = all */
    int cpu_fallback;       /* may run on CPU when no GPU is free/present */
    int gpu_capable;        /* the stage uses GPUs it is granted (exec hands
                             * them to its command); for any other stage a
                             * GPU request is an error before anything runs
                             * (or, with device = auto, a CPU run that says so) */
    /* Default memory budget in MB of a stage that bounds its memory by
     * one (clean, encode, bpe: flow_memory_budget); a node may override it
     * with the reserved setting `memory_mb = N`.  0: the stage takes no
     * budget, and `memory_mb` on its nodes is an error.  Like threads it
     * is not in the key: a stage that takes it must give the same bytes
     * for every budget (its tests show it). */
    int memory_mb;
    /* The stage trains with data-parallel workers (stages/model/trainer.h):
     * a node may set the reserved `workers = K` (K model replicas, each
     * taking micro-batches of every optimizer step) and `zero = 0|1`
     * (ZeRO-1 optimizer-state sharding over its processes).  Neither is in
     * the key: such a stage gives the same bytes for every K and either
     * zero (tests/train_dp_test.sh, tests/train_zero_test.sh).  For any
     * other stage `workers` and `zero` are errors. */
    int data_parallel;
} flow_resources;

typedef struct flow_stage {
    const char *name;
    int version;            /* bump whenever behaviour changes */
    const char *help;
    const flow_param_def *params; int nparams;
    const flow_input_def *inputs; int ninputs;
    const flow_output_def *outputs; int noutputs;  /* 0 outputs = free-form parts */
    const flow_applies_def *applies; int napplies;  /* conditional params/inputs */
    /* Parameters left out of the node key, space-separated names, e.g.
     * "checkpoint_every profile": they change how the node runs (checkpoint
     * spacing, profiling) but never its output bytes, so changing one
     * reruns nothing and `flow why`/`flow status` do not list it; a cached
     * node keeps its artifact, log included.  Only for parameters whose
     * byte invariance is tested.  registry_add refuses an undeclared name.
     * NULL = every parameter is in the key. */
    const char *not_in_key;
    /* Parameters added to a stage after its nodes were cached, whose
     * default is the behaviour from before they existed (space-separated
     * names; STRING, INT or BOOL parameters): each enters the key only
     * when its value differs from the default, so a node that leaves it
     * at the default (or writes the default) keeps the key and the cached
     * artifact it had, and the golden table stays.  A value other than the
     * default enters the key exactly as any parameter does.  registry_add
     * refuses an undeclared name or another type.  NULL = none. */
    const char *key_unless_default;
    flow_resources res;
    /* Runs the node in a worker process.  Returns 0, or a negative code with
     * flow_ctx_fail() having set the message. */
    int (*run)(flow_ctx *ctx);
    /* Optional: extra bytes that go into the node key beyond params and
     * inputs (source: content hashes of the files it reads; exec: the
     * script's content).  Runs in the engine process before scheduling;
     * may use the stat cache through ctx.  NULL = nothing extra. */
    int (*key_extra)(flow_ctx *ctx, flow_hasher *h);
} flow_stage;

/* The registry of stage kinds.  stages/ fills it (stages_register_all). */
typedef struct flow_registry flow_registry;
flow_registry *registry_new(void);
void registry_free(flow_registry *r);
void registry_add(flow_registry *r, const flow_stage *s);
const flow_stage *registry_find(const flow_registry *r, const char *name);
int registry_count(const flow_registry *r);
const flow_stage *registry_at(const flow_registry *r, int i);

/* ------------------------------------------------------------------ */
/* The stage API: what a run function may call.                        */

/* Parameters (defaults already applied, types already checked). */
int64_t flow_param_int(flow_ctx *c, const char *name);
double flow_param_float(flow_ctx *c, const char *name);
int flow_param_bool(flow_ctx *c, const char *name);
/* Strings and resolved absolute paths; owned by ctx. */
const char *flow_param_str(flow_ctx *c, const char *name);
int flow_param_list_len(flow_ctx *c, const char *name);
const char *flow_param_list_str(flow_ctx *c, const char *name, int i);
int64_t flow_param_list_int(flow_ctx *c, const char *name, int i);
double flow_param_list_float(flow_ctx *c, const char *name, int i);
const char *flow_node_name(flow_ctx *c);
const char *flow_graph_dir(flow_ctx *c);   /* folder of the .graph file */
/* The folder for a node's temporary files: $TMPDIR when set, else /tmp;
 * never the store.  What a stage puts there is its own to remove on every
 * path (best: unlink a file as soon as it is created and keep only the
 * descriptor, so a killed worker leaves nothing). */
const char *flow_temp_dir(flow_ctx *c);

/* Inputs.  A port bound to `node` sees all parts of that node; bound to
 * `node.out` it sees the parts "out" and "out/..." with the "out/" prefix
 * stripped (so part "train/text" is read as "text").  many-ports have
 * several bindings, numbered from 0. */
int flow_in_count(flow_ctx *c, const char *port);   /* 0 if unbound */
/* The reference as written in the graph: "node" or "node.output" (owned
 * by the graph). */
const char *flow_in_name(flow_ctx *c, const char *port, int idx);
/* The same reference text written into out (snprintf's contract: returns
 * the length it needs, out always NUL-terminated); usable anywhere, also
 * in key_extra at key time, where flow_in_name (which needs a worker) is
 * not. */
int flow_in_ref(flow_ctx *c, const char *port, int idx, char *out, size_t cap);
/* Keys see inputs by content only, never by the name of the node that
 * made them.  A stage that writes its inputs' reference texts into its
 * output bytes (labels in a table: "finetune", "ft.model") must put them
 * in its key: this key_extra hashes every port's bindings as written
 * (port, count, then each reference text), so two graphs that name the
 * same content differently get different keys.  Use it as .key_extra, or
 * call it from the stage's own key_extra.  Never label outputs with the
 * producer's name from flow_in_meta: that is another graph's choice. */
int flow_key_input_refs(flow_ctx *c, flow_hasher *h);
int flow_in_nparts(flow_ctx *c, const char *port, int idx);
const char *flow_in_part_name(flow_ctx *c, const char *port, int idx, int part);
int flow_in_has(flow_ctx *c, const char *port, int idx, const char *part);
uint64_t flow_in_part_size(flow_ctx *c, const char *port, int idx, const char *part);
/* Reads a whole part into a malloc'd buffer (NUL-terminated for convenience;
 * *len excludes the NUL).  Caller frees. */
int flow_in_read(flow_ctx *c, const char *port, int idx, const char *part,
                 char **data, size_t *len);
/* Parts by view index (0 .. flow_in_nparts-1, the order of
 * flow_in_part_name): O(1), for stages that walk every part.  (By name,
 * flow_in_has / flow_in_read / flow_in_open bisect: O(log P).) */
int flow_in_read_at(flow_ctx *c, const char *port, int idx, int part, char **data, size_t *len);
uint64_t flow_in_part_size_at(flow_ctx *c, const char *port, int idx, int part);
/* Streams a part: repeated calls fill buf with up to cap bytes, return the
 * count read, 0 at the end, or a negative code. */
typedef struct flow_in_stream flow_in_stream;
int flow_in_open(flow_ctx *c, const char *port, int idx, const char *part,
                 flow_in_stream **out);
int flow_in_open_at(flow_ctx *c, const char *port, int idx, int part, flow_in_stream **out);
long long flow_in_stream_read(flow_in_stream *s, void *buf, size_t cap);
void flow_in_stream_close(flow_in_stream *s);
/* The producing node's metadata JSON (metrics etc.), owned by ctx. */
const char *flow_in_meta(flow_ctx *c, const char *port, int idx);

/* Outputs.  Part names are relative paths ("vocab.txt", "train/text").
 * kind tells the store how to compress: FLOW_PART_BYTES or FLOW_PART_F32
 * (base.h). */
int flow_out_write(flow_ctx *c, const char *part, int kind, const void *data, size_t len);
/* Streams: up to 8 open at once (text and units side by side), each with
 * bounded memory (two 2 MiB buffers) whatever the part's size; a part
 * written whole with flow_out_write may come between.  patch rewrites
 * bytes already written within the part's first 2 MiB: a header whose
 * counts are known only at the end. */
typedef struct flow_out_stream flow_out_stream;
int flow_out_open(flow_ctx *c, const char *part, int kind, flow_out_stream **out);
int flow_out_stream_write(flow_out_stream *s, const void *data, size_t len);
int flow_out_stream_patch(flow_out_stream *s, uint64_t offset, const void *data, size_t len);
int flow_out_stream_close(flow_out_stream *s);   /* finishes the part */

/* Log: goes to the node's stored log (and, with -v, the terminal). */
void flow_log(flow_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Metrics: numbers and strings stored in the artifact metadata, queryable
 * by `flow show` / JSON.  Names may be dotted ("split.train.units"). */
void flow_metric(flow_ctx *c, const char *name, double value);
void flow_metric_str(flow_ctx *c, const char *name, const char *value);
/* A table printed at the end of `flow build` (e.g. coverage, evaluation).
 * Plain text, already formatted; stored in metadata too. */
void flow_report(flow_ctx *c, const char *text);
/* Live progress: fraction in [0,1] (or <0 unknown) and a short status line
 * such as "step 1200/5000  loss 3.41  9.8k tok/s".  Cheap to call often;
 * the engine rate-limits what it forwards. */
void flow_progress(flow_ctx *c, double fraction, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Fails the node with a message naming the subject; returns FLOW_E_STAGE
 * (or code) for `return flow_ctx_fail(c, ...)`.  The engine prefixes the
 * node name. */
int flow_ctx_fail(flow_ctx *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Resources granted. */
int flow_threads(flow_ctx *c);
/* The node's memory budget in bytes (`memory_mb`, else the stage's
 * default); FLOW_BUG for a stage whose res.memory_mb is 0. */
size_t flow_memory_budget(flow_ctx *c);
int flow_gpu_count(flow_ctx *c);
int flow_gpu_id(flow_ctx *c, int i);   /* CUDA device ordinal */
/* Data-parallel workers of the node (`workers = K`; 1 when not set). */
int flow_workers(flow_ctx *c);
/* The node's `zero` setting: 1 = ZeRO-1, each data-parallel process keeps
 * only its shard of the optimizer state (stages/model/train_dp.c); 0 when
 * not set.  Not in the key: the bytes are the same either way. */
int flow_zero(flow_ctx *c);
/* The node's key in hex (32 characters and a NUL), e.g. to name a
 * rendezvous shared by the processes that train the same node. */
void flow_node_key_hex(flow_ctx *c, char hex[33]);

/* Checkpoints: intermediate state keyed by the node key, kept until the
 * node's artifact is committed.  load returns FLOW_E_NOTFOUND if none. */
int flow_checkpoint_save(flow_ctx *c, const void *data, size_t len);
int flow_checkpoint_load(flow_ctx *c, char **data, size_t *len);

/* Stat cache for key_extra functions: content hash of a file, rehashed only
 * when (size, mtime, inode) changed. */
int flow_file_hash(flow_ctx *c, const char *path, flow_hash *out);
/* The same for a file whose stat the caller already took (a folder walk
 * stats each entry relative to its open folder, fstatat, instead of
 * walking the whole path again): size, st_mtim in ns, inode. */
typedef struct flow_file_stat {
    uint64_t size;
    int64_t mtime_ns;
    uint64_t inode;
} flow_file_stat;
int flow_file_hash_stat(flow_ctx *c, const char *path, const flow_file_stat *st, flow_hash *out);
/* out[i] = flow_file_hash_stat(paths[i], st[i]) for n files, on up to 4
 * threads when n is large (lookups and hashing of misses in parallel, the
 * stat cache updated after); out does not depend on the thread count.  An
 * error names the first failing file in list order. */
int flow_file_hash_many(flow_ctx *c, char *const *paths, const flow_file_stat *st, int n, flow_hash *out);
/* Threads for such file-list work in a key: the CPUs this process may run
 * on (its affinity mask, so `taskset -c 0` gives 1), at most 4. */
int flow_file_threads(void);

/* Test hooks are not part of this API and not in the `flow` binary: the
 * training stages' kill-at-step hook (FLOW_TEST_KILL_AT) and the worker's
 * after-commit hook (FLOW_TEST_DROP_AFTER_COMMIT, internal.h) are linked
 * only into the test binary flow_testhooks (tests/hooks/). */

#endif
