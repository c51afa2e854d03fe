/* base.h — the ground floor of flow: errors, allocation, growable buffers,
 * whole-file reads, XXH3-128 hashing, UTF-8, a seeded generator and a small
 * JSON reader.  Depends on nothing else of flow (only libc and xxHash);
 * every other library (cache, engine, kernels, stages, commands) builds on it.
 *
 * Conventions (see ../shared/docs/STYLE.md):
 *  - functions return 0 on success or a negative FLOW_E* code; error text is
 *    written into a caller-provided flow_err and always names its subject;
 *  - library code never exits; only the commands (engine/commands/main.c) do;
 *  - _init/_release act on caller storage, _new/_free allocate, _free(NULL)
 *    is a no-op.
 */
#ifndef FLOW_BASE_H
#define FLOW_BASE_H

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
/* The CUDA module (cuda_module.c).  The CUDA backend (kernels/cuda/) is a
 * shared module, libflow_cuda.so, that flow dlopen()s the first time a
 * build needs GPUs (the scheduler, to count them before it forks workers;
 * a worker whose node was granted some), never in a CPU-only run: cuBLAS
 * and cuBLASLt cost ~0.45 s at the start of any process that links them.
 * The module exports one table, `flow_cuda_api_v1`; its undefined symbols
 * (flow_fail, dp_*, bert_*) resolve against the loading program, which is
 * linked with -rdynamic.  Path: $FLOW_CUDA_MODULE, else libflow_cuda.so
 * beside the running program (/proc/self/exe). */
#define FLOW_CUDA_API_VERSION 1
typedef struct flow_cuda_api {
    char magic[8];              /* "FLOWCUDA" */
    uint32_t version;           /* FLOW_CUDA_API_VERSION */
    /* Devices CUDA reports, counted in a short-lived child process so the
     * caller never holds a CUDA context (a scheduler forks workers after);
     * CUDA_VISIBLE_DEVICES applies.  0 with why (why_len bytes) saying
     * what CUDA said when it finds none or fails (no driver, no device). */
    int (*device_count)(char *why, size_t why_len);
    /* The BERT backend table (kernels/bert_backend.h's bert_backend_ops),
     * or NULL while the module has none. */
    const void *bert_ops;
} flow_cuda_api;

/* The module's table, loaded on the first call (later calls return it);
 * NULL with FLOW_E_NOTFOUND naming the path and dlerror's reason when it
 * cannot be loaded (not built, missing library such as libcudart), or
 * FLOW_E_CORRUPT when it is not a module of this version. */
const flow_cuda_api *flow_cuda_load(flow_err *e);
/* A program that links the CUDA backend itself (the _gpu tests link the
 * static flow_cuda_ops) hands its own table over: flow_cuda_load then
 * returns it and loads no module (whose references to flow's symbols need
 * a program linked with -rdynamic, which the tests are not). */
void flow_cuda_use(const flow_cuda_api *api);
/* 1 once the module is loaded in this process (tests: a CPU-only run never
 * loads it). */
int flow_cuda_loaded(void);
/* The path flow_cuda_load opens, into buf. */
void flow_cuda_module_path(char *buf, size_t len);

/* ------------------------------------------------------------------ */
/* Part kinds: how the store compresses an artifact part (a stage says it
 * when writing; the store records it).  F32 parts are byte-shuffled into
 * planes when that is smaller. */
enum { FLOW_PART_BYTES = 0, FLOW_PART_F32 = 1 };

#endif
