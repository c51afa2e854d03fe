/* json.c — a small, strict JSON DOM reader and writer (API in engine.h).
 *
 * Artifact metadata is JSON written by the worker; `flow show`, `why`,
 * `status` and `ls` read it back through this DOM, and ML stages use it for
 * config files.  Recursive descent with a depth limit, so hostile input
 * cannot exhaust the stack; every error gives the byte offset.
 */
#include "base.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct json_value {
    json_type type;
    int b;
    double num;
    char *str; size_t slen;
    char **keys;                    /* OBJ */
    struct json_value **items;      /* ARR, OBJ values */
    int n, cap;
};

typedef struct jparser {
    const char *s, *p, *end;
    const char *what;
    flow_err *err;
} jparser;

#define JSON_MAX_DEPTH 256

static int jfail(jparser *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int jfail(jparser *j, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return flow_fail(j->err, FLOW_E_CORRUPT, "%s%sinvalid JSON at offset %ld: %s",
                     j->what ? j->what : "", j->what ? ": " : "", (long)(j->p - j->s), msg);
}

static void ws(jparser *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

void json_free(json_value *v)
{
    if (!v) return;
    for (int i = 0; i < v->n; i++) {
        if (v->keys) free(v->keys[i]);
        json_free(v->items[i]);
    }
    free(v->keys);
    free(v->items);
    free(v->str);
    free(v);
}

static int hex4(jparser *j, uint32_t *out)
{
    uint32_t v = 0;
    if (j->end - j->p < 4) return jfail(j, "truncated \\u escape");
    for (int i = 0; i < 4; i++) {
        char c = j->p[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) return jfail(j, "bad hex digit in \\u escape");
        v = v * 16 + (uint32_t)d;
    }
    j->p += 4;
    *out = v;
    return 0;
}

static int parse_string(jparser *j, char **out, size_t *outlen)
{
    flow_buf b;
    buf_init(&b);
    j->p++;     /* opening quote */
    int rc = 0;
    for (;;) {
        if (j->p >= j->end) { rc = jfail(j, "unterminated string"); break; }
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') { j->p++; break; }
        if (c < 0x20) { rc = jfail(j, "control character in string"); break; }
        if (c == '\\') {
            if (j->end - j->p < 2) { rc = jfail(j, "unterminated escape"); break; }
            char e = j->p[1];
            j->p += 2;
            switch (e) {
            case '"': buf_addc(&b, '"'); continue;
            case '\\': buf_addc(&b, '\\'); continue;
            case '/': buf_addc(&b, '/'); continue;
            case 'b': buf_addc(&b, '\b'); continue;
            case 'f': buf_addc(&b, '\f'); continue;
            case 'n': buf_addc(&b, '\n'); continue;
            case 'r': buf_addc(&b, '\r'); continue;
            case 't': buf_addc(&b, '\t'); continue;
            case 'u': {
                uint32_t cp;
                if ((rc = hex4(j, &cp))) break;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t lo;
                    if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u') {
                        rc = jfail(j, "unpaired surrogate");
                        break;
                    }
                    j->p += 2;
                    if ((rc = hex4(j, &lo))) break;
                    if (lo < 0xDC00 || lo > 0xDFFF) { rc = jfail(j, "bad low surrogate"); break; }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    rc = jfail(j, "unpaired surrogate");
                    break;
                }
                if (cp == 0) { rc = jfail(j, "\\u0000 is not supported"); break; }
                char u[4];
                buf_add(&b, u, (size_t)utf8_encode(cp, u));
                continue;
            }
            default:
                rc = jfail(j, "unknown escape");
                break;
            }
            break;
        }
        uint32_t cp;
        int n = utf8_decode((const unsigned char *)j->p, (size_t)(j->end - j->p), &cp);
        if (n < 0) { rc = jfail(j, "invalid UTF-8 in string"); break; }
        buf_add(&b, j->p, (size_t)n);
        j->p += n;
    }
    if (rc) { buf_release(&b); return rc; }
    if (!b.data) buf_adds(&b, "");
    *out = buf_detach(&b, outlen);
    return 0;
}

static int parse_value(jparser *j, json_value **out, int depth);

static void push(json_value *v, char *key, json_value *item)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 4;
        v->items = xrealloc(v->items, (size_t)v->cap * sizeof *v->items);
        if (v->type == JSON_OBJ) v->keys = xrealloc(v->keys, (size_t)v->cap * sizeof *v->keys);
    }
    if (v->type == JSON_OBJ) v->keys[v->n] = key;
    v->items[v->n++] = item;
}

static int parse_container(jparser *j, json_value *v, int depth)
{
    char close = v->type == JSON_ARR ? ']' : '}';
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == close) { j->p++; return 0; }
    for (;;) {
        char *key = NULL;
        int rc;
        if (v->type == JSON_OBJ) {
            ws(j);
            if (j->p >= j->end || *j->p != '"') return jfail(j, "expected a string key");
            if ((rc = parse_string(j, &key, NULL))) return rc;
            ws(j);
            if (j->p >= j->end || *j->p != ':') { free(key); return jfail(j, "expected ':'"); }
            j->p++;
        }
        json_value *item;
        if ((rc = parse_value(j, &item, depth + 1))) { free(key); return rc; }
        push(v, key, item);
        ws(j);
        if (j->p < j->end && *j->p == ',') { j->p++; continue; }
        if (j->p < j->end && *j->p == close) { j->p++; return 0; }
        return jfail(j, "expected ',' or '%c'", close);
    }
}

static int parse_value(jparser *j, json_value **out, int depth)
{
    *out = NULL;
    if (depth > JSON_MAX_DEPTH) return jfail(j, "nested deeper than %d", JSON_MAX_DEPTH);
    ws(j);
    if (j->p >= j->end) return jfail(j, "unexpected end of input");
    json_value *v = xcalloc(1, sizeof *v);
    int rc = 0;
    char c = *j->p;
    size_t left = (size_t)(j->end - j->p);
    if (c == '{' || c == '[') {
        v->type = c == '{' ? JSON_OBJ : JSON_ARR;
        rc = parse_container(j, v, depth);
    } else if (c == '"') {
        v->type = JSON_STR;
        rc = parse_string(j, &v->str, &v->slen);
    } else if (left >= 4 && memcmp(j->p, "true", 4) == 0) {
        v->type = JSON_BOOL; v->b = 1; j->p += 4;
    } else if (left >= 5 && memcmp(j->p, "false", 5) == 0) {
        v->type = JSON_BOOL; j->p += 5;
    } else if (left >= 4 && memcmp(j->p, "null", 4) == 0) {
        v->type = JSON_NULL; j->p += 4;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        const char *q = j->p;
        if (*q == '-') q++;
        if (q >= j->end || !(*q >= '0' && *q <= '9')) rc = jfail(j, "bad number");
        while (!rc && q < j->end && ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' ||
                                     *q == 'E' || *q == '+' || *q == '-')) q++;
        if (!rc) {
            char tmp[64];
            size_t n = (size_t)(q - j->p);
            if (n >= sizeof tmp) rc = jfail(j, "number too long");
            else {
                memcpy(tmp, j->p, n);
                tmp[n] = 0;
                char *endp;
                v->type = JSON_NUM;
                v->num = strtod(tmp, &endp);
                if (*endp) rc = jfail(j, "bad number '%s'", tmp);
                else j->p = q;
            }
        }
    } else {
        rc = jfail(j, "unexpected character '%c'", (c >= 32 && c < 127) ? c : '?');
    }
    if (rc) { json_free(v); return rc; }
    *out = v;
    return 0;
}

int json_parse(const char *text, size_t len, const char *what, json_value **out, flow_err *err)
{
    jparser j = { text, text, text + len, what, err };
    *out = NULL;
    json_value *v;
    int rc = parse_value(&j, &v, 0);
    if (rc) return rc;
    ws(&j);
    if (j.p != j.end) {
        json_free(v);
        return jfail(&j, "trailing characters after the value");
    }
    *out = v;
    return 0;
}

json_type json_typeof(const json_value *v) { return v ? v->type : JSON_NULL; }

const json_value *json_get(const json_value *v, const char *key)
{
    if (!v || v->type != JSON_OBJ) return NULL;
    for (int i = 0; i < v->n; i++)
        if (strcmp(v->keys[i], key) == 0) return v->items[i];
    return NULL;
}

const json_value *json_path(const json_value *v, const char *dotted)
{
    /* try the whole rest as one key first, so dotted metric names work */
    while (v && *dotted) {
        const json_value *whole = json_get(v, dotted);
        if (whole) return whole;
        const char *dot = strchr(dotted, '.');
        if (!dot) return NULL;
        char key[256];
        size_t n = (size_t)(dot - dotted);
        if (n >= sizeof key) return NULL;
        memcpy(key, dotted, n);
        key[n] = 0;
        v = json_get(v, key);
        dotted = dot + 1;
    }
    return v;
}

int json_len(const json_value *v)
{
    return v && (v->type == JSON_ARR || v->type == JSON_OBJ) ? v->n : 0;
}

const json_value *json_at(const json_value *v, int i)
{
    if (!v || (v->type != JSON_ARR && v->type != JSON_OBJ) || i < 0 || i >= v->n) return NULL;
    return v->items[i];
}

const char *json_key_at(const json_value *v, int i)
{
    if (!v || v->type != JSON_OBJ || i < 0 || i >= v->n) return NULL;
    return v->keys[i];
}

double json_num(const json_value *v, double def) { return v && v->type == JSON_NUM ? v->num : def; }
const char *json_str(const json_value *v, const char *def) { return v && v->type == JSON_STR ? v->str : def; }
int json_bool(const json_value *v, int def) { return v && v->type == JSON_BOOL ? v->b : def; }

static void indent_to(flow_buf *b, int indent, int level)
{
    buf_addc(b, '\n');
    for (int i = 0; i < indent * level; i++) buf_addc(b, ' ');
}

static void write_rec(flow_buf *b, const json_value *v, int indent, int level)
{
    if (!v) { buf_adds(b, "null"); return; }
    switch (v->type) {
    case JSON_NULL: buf_adds(b, "null"); return;
    case JSON_BOOL: buf_adds(b, v->b ? "true" : "false"); return;
    case JSON_NUM: buf_json_num(b, v->num); return;
    case JSON_STR: buf_json_str(b, v->str, v->slen); return;
    case JSON_ARR:
    case JSON_OBJ: {
        int obj = v->type == JSON_OBJ;
        buf_addc(b, obj ? '{' : '[');
        for (int i = 0; i < v->n; i++) {
            if (i) buf_addc(b, ',');
            if (indent > 0) indent_to(b, indent, level + 1);
            if (obj) {
                buf_json_str(b, v->keys[i], strlen(v->keys[i]));
                buf_adds(b, indent > 0 ? ": " : ":");
            }
            write_rec(b, v->items[i], indent, level + 1);
        }
        if (indent > 0 && v->n) indent_to(b, indent, level);
        buf_addc(b, obj ? '}' : ']');
        return;
    }
    }
}

void json_write(flow_buf *b, const json_value *v, int indent) { write_rec(b, v, indent, 0); }
