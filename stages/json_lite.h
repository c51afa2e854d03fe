/* json_lite.h — a small JSON reader (DOM) for the training-side stages and
 * commands: model.json, clean.json, tokenizer settings.  Internal to the
 * stages library.  Values are owned by the root returned by jl_parse and
 * freed by jl_free(root). */
#ifndef FLOW_JSON_LITE_H
#define FLOW_JSON_LITE_H

#include "../engine/engine.h"

typedef enum jl_type { JL_NULL, JL_BOOL, JL_NUM, JL_STR, JL_ARR, JL_OBJ } jl_type;

typedef struct jl_value {
    jl_type t;
    int b;                      /* JL_BOOL */
    double num;                 /* JL_NUM */
    char *str; size_t slen;     /* JL_STR: decoded UTF-8, NUL-terminated */
    struct jl_value *items;     /* JL_ARR / JL_OBJ: n values */
    char **keys;                /* JL_OBJ: n keys */
    int n;
} jl_value;

/* Parses s[0..n).  what names the document in error messages
 * ("model.json of 3f2a...").  Returns 0 or FLOW_E_CORRUPT. */
int jl_parse(const char *s, size_t n, const char *what, jl_value **out, flow_err *err);
void jl_free(jl_value *v);

/* Lookups that tolerate NULL and wrong types (returning NULL / def). */
const jl_value *jl_get(const jl_value *obj, const char *key);
const jl_value *jl_at(const jl_value *arr, int i);
double jl_num(const jl_value *v, double def);
int64_t jl_int(const jl_value *v, int64_t def);
int jl_bool(const jl_value *v, int def);
const char *jl_str(const jl_value *v, const char *def);

#endif
