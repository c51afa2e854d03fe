/* engine.h — the one public header of the engine library.
 *
 * The engine reads .graph files, resolves them against a registry of stage
 * kinds, computes content-hash keys, schedules nodes into forked workers and
 * records their artifacts in the cache (cache/cache.h).  Stages (stages/)
 * see only the "stage API" half of this header: a flow_ctx through which a
 * run function reads its parameters and inputs, writes output parts, logs,
 * reports metrics and progress, and checkpoints.
 *
 * Conventions (see ../shared/docs/STYLE.md):
 *  - functions return 0 on success or a negative FLOW_E* code; error text is
 *    written into a caller-provided flow_err and always names its subject;
 *  - library code never exits; only engine/main.c does;
 *  - _init/_release act on caller storage, _new/_free allocate, _free(NULL)
 *    is a no-op.
 */
#ifndef FLOW_ENGINE_H
#define FLOW_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>

/* ------------------------------------------------------------------ */
/* Error codes: negative and far from errno values (LMDB uses -30799..). */
enum {
    FLOW_OK = 0,
    FLOW_E_USAGE = -31001,  /* bad command line or graph (exit 2) */
    FLOW_E_GRAPH = -31002,  /* graph file error (exit 2) */
    FLOW_E_IO = -31003,     /* file system error, message names the path */
    FLOW_E_STAGE = -31004,  /* a stage's run function failed (exit 1) */
    FLOW_E_CORRUPT = -31005,/* stored data fails its hash or format check */
    FLOW_E_NOTFOUND = -31006,
    FLOW_E_FULL = -31007,   /* disk or map full and could not grow */
    FLOW_E_NOMEM = -31008,
    FLOW_E_INPUT = -31009,  /* bad input data (invalid UTF-8, empty corpus...) */
    FLOW_E_PARAM = -31010,  /* impossible parameter combination */
    FLOW_E_INTERRUPTED = -31011,
    FLOW_E_AMBIGUOUS = -31012, /* abbreviated hash matches several */
    FLOW_E_BUSY = -31013,   /* a lease is held by another live process */
};

/* An error message buffer.  Functions that fail fill msg (NUL-terminated)
 * and return the code; callers pass it up or print it. */
typedef struct flow_err {
    int code;
    char msg[1024];
} flow_err;

/* Sets e->code and e->msg (printf-style) and returns code, so callers write
 * `return flow_fail(e, FLOW_E_IO, "cannot open '%s': %s", p, strerror(errno));`.
 * e may be NULL. */
int flow_fail(flow_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Broken invariant: print file:line and message, abort(). Never for bad input. */
#define FLOW_BUG(...) flow_bug_(__FILE__, __LINE__, __VA_ARGS__)
void flow_bug_(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

/* Allocation that aborts on out-of-memory (like git's xmalloc). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* ------------------------------------------------------------------ */
/* Growable byte buffer, used for building JSON, logs, part payloads.   */
typedef struct flow_buf {
    char *data;     /* always NUL-terminated when len < cap */
    size_t len, cap;
} flow_buf;

void buf_init(flow_buf *b);
void buf_release(flow_buf *b);                  /* frees data, resets */
void buf_reserve(flow_buf *b, size_t extra);
void buf_add(flow_buf *b, const void *p, size_t n);
void buf_adds(flow_buf *b, const char *s);
void buf_addc(flow_buf *b, char c);
void buf_printf(flow_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(flow_buf *b, const char *fmt, va_list ap);
/* Appends s as a JSON string literal with quotes and escapes. */
void buf_json_str(flow_buf *b, const char *s, size_t n);
/* Appends a double as JSON (finite: %.17g trimmed; non-finite: null). */
void buf_json_num(flow_buf *b, double v);
char *buf_detach(flow_buf *b, size_t *len);     /* caller frees */
/* Reads the whole file at path into a malloc'd buffer with a NUL after the
 * *len bytes (never NULL on success).  FLOW_E_IO naming the file if it
 * cannot be opened or read. */
int file_read_all(const char *path, char **data, size_t *len, flow_err *err);

/* ------------------------------------------------------------------ */
/* Hashes: XXH3-128, printed as 32 lowercase hex digits.                */
typedef struct flow_hash {
    uint8_t b[16];  /* big-endian high64 then low64, so hex order == byte order */
} flow_hash;

flow_hash flow_hash_bytes(const void *p, size_t n);
void flow_hash_hex(const flow_hash *h, char out[33]);
int flow_hash_parse(const char *hex, flow_hash *out); /* 0 or FLOW_E_USAGE */
int flow_hash_eq(const flow_hash *a, const flow_hash *b);
int flow_hash_is_zero(const flow_hash *h);

/* Streaming XXH3-128. */
typedef struct flow_hasher flow_hasher;
flow_hasher *flow_hasher_new(void);
void flow_hasher_update(flow_hasher *h, const void *p, size_t n);
flow_hash flow_hasher_digest(flow_hasher *h);
void flow_hasher_free(flow_hasher *h);

/* ------------------------------------------------------------------ */
/* UTF-8 helpers shared by the text stages.                            */
/* Decodes one code point from s[0..n).  Returns its length (1..4) and sets
 * *cp, or returns -1 for an invalid/overlong/surrogate/truncated sequence. */
int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
int utf8_encode(uint32_t cp, char out[4]);  /* returns length 1..4 */
/* Returns the byte offset of the first invalid sequence, or -1 if valid. */
long utf8_first_invalid(const unsigned char *s, size_t n);

/* splitmix64: a small seeded generator, the same stream on every platform
 * (split assignment, shuffles).  Advances *state and returns 64 bits. */
uint64_t splitmix64_next(uint64_t *state);

/* ------------------------------------------------------------------ */
/* A small JSON reader (DOM).  Used for artifact metadata (flow show/why/
 * status) and by stages to read config files.  Strict RFC 8259: one value,
 * no comments, no trailing commas; strings are returned as UTF-8 (escapes
 * decoded, \u0000 rejected); nesting deeper than 256 is an error.       */
typedef enum json_type {
    JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ
} json_type;
typedef struct json_value json_value;

/* Parses text[0..len).  Errors name the byte offset ("at offset 12: ...");
 * what (may be NULL) prefixes the message (e.g. a file name). */
int json_parse(const char *text, size_t len, const char *what, json_value **out, flow_err *err);
void json_free(json_value *v);
json_type json_typeof(const json_value *v);          /* JSON_NULL for NULL */
/* Object member by key (first match), or NULL if v is not an object or lacks it. */
const json_value *json_get(const json_value *v, const char *key);
/* Dotted path through objects: json_path(meta, "metrics.loss"). */
const json_value *json_path(const json_value *v, const char *dotted);
int json_len(const json_value *v);                   /* array/object size, else 0 */
const json_value *json_at(const json_value *v, int i);   /* array element or object value */
const char *json_key_at(const json_value *v, int i); /* object key, else NULL */
/* Typed reads with a fallback for absent / other-typed values. */
double json_num(const json_value *v, double def);
const char *json_str(const json_value *v, const char *def);  /* owned by the DOM */
int json_bool(const json_value *v, int def);
/* Appends v as JSON; indent > 0 pretty-prints with that many spaces. */
void json_write(flow_buf *b, const json_value *v, int indent);

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
    const char *choices;    /* for STRING: "a|b|c", NULL = free text */
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

typedef struct flow_ctx flow_ctx;
struct flow_resolved_node;  /* engine-internal */

/* Resources a stage asks for. */
typedef struct flow_resources {
    int threads;            /* threads wanted; 0 = as many as -j allows */
    int gpus;               /* default GPUs wanted (a node may override with
                             * the reserved parameter `gpus`); -1 = all */
    int cpu_fallback;       /* may run on CPU when no GPU is free/present */
} flow_resources;

typedef struct flow_stage {
    const char *name;
    int version;            /* bump whenever behaviour changes */
    const char *help;
    const flow_param_def *params; int nparams;
    const flow_input_def *inputs; int ninputs;
    const flow_output_def *outputs; int noutputs;  /* 0 outputs = free-form parts */
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

/* Inputs.  A port bound to `node` sees all parts of that node; bound to
 * `node.out` it sees the parts "out" and "out/..." with the "out/" prefix
 * stripped (so part "train/text" is read as "text").  many-ports have
 * several bindings, numbered from 0. */
int flow_in_count(flow_ctx *c, const char *port);   /* 0 if unbound */
/* The reference as written in the graph: "node" or "node.output" (owned
 * by the graph). */
const char *flow_in_name(flow_ctx *c, const char *port, int idx);
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
 * (byte-shuffled when that is smaller). */
enum { FLOW_PART_BYTES = 0, FLOW_PART_F32 = 1 };
int flow_out_write(flow_ctx *c, const char *part, int kind, const void *data, size_t len);
typedef struct flow_out_stream flow_out_stream;
int flow_out_open(flow_ctx *c, const char *part, int kind, flow_out_stream **out);
int flow_out_stream_write(flow_out_stream *s, const void *data, size_t len);
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
int flow_gpu_count(flow_ctx *c);
int flow_gpu_id(flow_ctx *c, int i);   /* CUDA device ordinal */

/* Checkpoints: intermediate state keyed by the node key, kept until the
 * node's artifact is committed.  load returns FLOW_E_NOTFOUND if none. */
int flow_checkpoint_save(flow_ctx *c, const void *data, size_t len);
int flow_checkpoint_load(flow_ctx *c, char **data, size_t *len);

/* Stat cache for key_extra functions: content hash of a file, rehashed only
 * when (size, mtime, inode) changed. */
int flow_file_hash(flow_ctx *c, const char *path, flow_hash *out);

/* Test hook: a stage may read FLOW_TEST_* environment knobs; none defined. */

#endif
