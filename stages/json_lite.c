/* json_lite.c — recursive-descent JSON parser behind json_lite.h.  Strict
 * (RFC 8259): rejects trailing garbage, control characters in strings and
 * lone surrogates; nesting is limited to 64 levels. */
#include "json_lite.h"

#include <stdlib.h>
#include <string.h>

typedef struct jl_parser {
    const char *s;
    size_t n, i;
    const char *what;
    flow_err *err;
} jl_parser;

static int jl_error(jl_parser *p, const char *msg)
{
    return flow_fail(p->err, FLOW_E_CORRUPT, "%s: invalid JSON at byte %zu: %s",
                     p->what, p->i, msg);
}

static void skip_ws(jl_parser *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' ||
                           p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int hex4(jl_parser *p, uint32_t *out)
{
    if (p->i + 4 > p->n) return jl_error(p, "truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return jl_error(p, "bad hex digit in \\u escape");
    }
    *out = v;
    return 0;
}

static int parse_string(jl_parser *p, char **out, size_t *outlen)
{
    flow_buf b;
    buf_init(&b);
    p->i++;   /* opening quote */
    for (;;) {
        if (p->i >= p->n) { buf_release(&b); return jl_error(p, "unterminated string"); }
        unsigned char c = (unsigned char)p->s[p->i];
        if (c == '"') { p->i++; break; }
        if (c < 0x20) { buf_release(&b); return jl_error(p, "control character in string"); }
        if (c != '\\') { buf_addc(&b, (char)c); p->i++; continue; }
        p->i++;
        if (p->i >= p->n) { buf_release(&b); return jl_error(p, "truncated escape"); }
        char e = p->s[p->i++];
        switch (e) {
        case '"': buf_addc(&b, '"'); break;
        case '\\': buf_addc(&b, '\\'); break;
        case '/': buf_addc(&b, '/'); break;
        case 'b': buf_addc(&b, '\b'); break;
        case 'f': buf_addc(&b, '\f'); break;
        case 'n': buf_addc(&b, '\n'); break;
        case 'r': buf_addc(&b, '\r'); break;
        case 't': buf_addc(&b, '\t'); break;
        case 'u': {
            uint32_t cp, lo;
            if (hex4(p, &cp)) { buf_release(&b); return FLOW_E_CORRUPT; }
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (p->i + 2 > p->n || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u') {
                    buf_release(&b);
                    return jl_error(p, "lone high surrogate");
                }
                p->i += 2;
                if (hex4(p, &lo)) { buf_release(&b); return FLOW_E_CORRUPT; }
                if (lo < 0xDC00 || lo > 0xDFFF) { buf_release(&b); return jl_error(p, "bad low surrogate"); }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                buf_release(&b);
                return jl_error(p, "lone low surrogate");
            }
            char u[4];
            buf_add(&b, u, (size_t)utf8_encode(cp, u));
            break;
        }
        default: buf_release(&b); return jl_error(p, "unknown escape");
        }
    }
    buf_addc(&b, 0);
    *outlen = b.len - 1;
    *out = buf_detach(&b, NULL);
    return 0;
}

static int parse_value(jl_parser *p, jl_value *v, int depth);

static int parse_container(jl_parser *p, jl_value *v, int depth, int obj)
{
    int cap = 0;
    char close = obj ? '}' : ']';
    p->i++;
    v->t = obj ? JL_OBJ : JL_ARR;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == close) { p->i++; return 0; }
    for (;;) {
        if (v->n == cap) {
            cap = cap ? 2 * cap : 4;
            v->items = xrealloc(v->items, (size_t)cap * sizeof *v->items);
            if (obj) v->keys = xrealloc(v->keys, (size_t)cap * sizeof *v->keys);
        }
        skip_ws(p);
        if (obj) {
            size_t kl;
            if (p->i >= p->n || p->s[p->i] != '"') return jl_error(p, "expected object key");
            if (parse_string(p, &v->keys[v->n], &kl)) return FLOW_E_CORRUPT;
            skip_ws(p);
            if (p->i >= p->n || p->s[p->i] != ':') { free(v->keys[v->n]); return jl_error(p, "expected ':'"); }
            p->i++;
        }
        memset(&v->items[v->n], 0, sizeof v->items[v->n]);
        int rc = parse_value(p, &v->items[v->n], depth + 1);
        v->n++;   /* counted even on failure so jl_free releases it */
        if (rc) return rc;
        skip_ws(p);
        if (p->i >= p->n) return jl_error(p, "unterminated container");
        if (p->s[p->i] == ',') { p->i++; continue; }
        if (p->s[p->i] == close) { p->i++; return 0; }
        return jl_error(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int parse_value(jl_parser *p, jl_value *v, int depth)
{
    if (depth > 64) return jl_error(p, "nesting deeper than 64");
    skip_ws(p);
    if (p->i >= p->n) return jl_error(p, "expected a value");
    char c = p->s[p->i];
    if (c == '{' || c == '[') return parse_container(p, v, depth, c == '{');
    if (c == '"') { v->t = JL_STR; return parse_string(p, &v->str, &v->slen); }
    if (p->n - p->i >= 4 && memcmp(p->s + p->i, "true", 4) == 0) { v->t = JL_BOOL; v->b = 1; p->i += 4; return 0; }
    if (p->n - p->i >= 5 && memcmp(p->s + p->i, "false", 5) == 0) { v->t = JL_BOOL; p->i += 5; return 0; }
    if (p->n - p->i >= 4 && memcmp(p->s + p->i, "null", 4) == 0) { v->t = JL_NULL; p->i += 4; return 0; }
    if (c == '-' || (c >= '0' && c <= '9')) {
        char tmp[64];
        size_t k = 0;
        while (p->i < p->n && k < sizeof tmp - 1 && strchr("+-0123456789.eE", p->s[p->i]))
            tmp[k++] = p->s[p->i++];
        tmp[k] = 0;
        char *end;
        v->t = JL_NUM;
        v->num = strtod(tmp, &end);
        if (*end) return jl_error(p, "bad number");
        return 0;
    }
    return jl_error(p, "unexpected character");
}

static void jl_release(jl_value *v)
{
    free(v->str);
    for (int i = 0; i < v->n; i++) {
        jl_release(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
}

void jl_free(jl_value *v)
{
    if (!v) return;
    jl_release(v);
    free(v);
}

int jl_parse(const char *s, size_t n, const char *what, jl_value **out, flow_err *err)
{
    jl_parser p = { s, n, 0, what, err };
    jl_value *v = xcalloc(1, sizeof *v);
    int rc = parse_value(&p, v, 0);
    if (!rc) {
        skip_ws(&p);
        if (p.i != p.n) rc = jl_error(&p, "trailing characters");
    }
    if (rc) { jl_free(v); *out = NULL; return rc; }
    *out = v;
    return 0;
}

const jl_value *jl_get(const jl_value *obj, const char *key)
{
    if (!obj || obj->t != JL_OBJ) return NULL;
    for (int i = 0; i < obj->n; i++)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

const jl_value *jl_at(const jl_value *arr, int i)
{
    if (!arr || (arr->t != JL_ARR && arr->t != JL_OBJ) || i < 0 || i >= arr->n) return NULL;
    return &arr->items[i];
}

double jl_num(const jl_value *v, double def) { return v && v->t == JL_NUM ? v->num : def; }
int64_t jl_int(const jl_value *v, int64_t def) { return v && v->t == JL_NUM ? (int64_t)v->num : def; }
int jl_bool(const jl_value *v, int def) { return v && v->t == JL_BOOL ? v->b : def; }
const char *jl_str(const jl_value *v, const char *def) { return v && v->t == JL_STR ? v->str : def; }
