/* util.c — small shared helpers: errors, allocation, growable buffers with
 * JSON escaping, XXH3-128 hashing, UTF-8 decoding and a seeded generator
 * (splitmix64).  Everything in the
 * project links this; nothing here knows about graphs or stages. */
#include "engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

int flow_fail(flow_err *e, int code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

void flow_bug_(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "flow: BUG at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

static void out_of_memory(size_t n)
{
    fprintf(stderr, "flow: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) out_of_memory(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) out_of_memory(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) out_of_memory(n);
    return q;
}

char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

/* ---- flow_buf ---- */

void buf_init(flow_buf *b) { b->data = NULL; b->len = b->cap = 0; }

void buf_release(flow_buf *b)
{
    free(b->data);
    buf_init(b);
}

void buf_reserve(flow_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void buf_add(flow_buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

void buf_adds(flow_buf *b, const char *s) { buf_add(b, s, strlen(s)); }
void buf_addc(flow_buf *b, char c) { buf_add(b, &c, 1); }

void buf_vprintf(flow_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) FLOW_BUG("vsnprintf failed for format '%s'", fmt);
    buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void buf_printf(flow_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void buf_json_str(flow_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    buf_reserve(b, n + 2);
    buf_addc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': buf_adds(b, "\\\""); break;
        case '\\': buf_adds(b, "\\\\"); break;
        case '\n': buf_adds(b, "\\n"); break;
        case '\r': buf_adds(b, "\\r"); break;
        case '\t': buf_adds(b, "\\t"); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                buf_add(b, e, 6);
            } else {
                buf_addc(b, (char)c);
            }
        }
    }
    buf_addc(b, '"');
}

void buf_json_num(flow_buf *b, double v)
{
    if (!isfinite(v)) { buf_adds(b, "null"); return; }
    if (v == (double)(long long)v && fabs(v) < 9e15) { buf_printf(b, "%lld", (long long)v); return; }
    char tmp[40];
    /* shortest representation that round-trips */
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    buf_adds(b, tmp);
}

char *buf_detach(flow_buf *b, size_t *len)
{
    if (!b->data) buf_reserve(b, 0), b->data[0] = 0;
    char *p = b->data;
    if (len) *len = b->len;
    buf_init(b);
    return p;
}

int file_read_all(const char *path, char **data, size_t *len, flow_err *err)
{
    *data = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return flow_fail(err, FLOW_E_IO, "cannot open '%s': %s", path, strerror(errno));
    flow_buf b;
    buf_init(&b);
    char tmp[1 << 16];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) buf_add(&b, tmp, n);
    int bad = ferror(f), e = errno;
    fclose(f);
    if (bad) {
        buf_release(&b);
        return flow_fail(err, FLOW_E_IO, "cannot read '%s': %s", path, strerror(e));
    }
    *data = buf_detach(&b, len);
    return 0;
}

/* ---- hashing ---- */

static flow_hash from_xxh128(XXH128_hash_t x)
{
    flow_hash h;
    for (int i = 0; i < 8; i++) {
        h.b[i] = (uint8_t)(x.high64 >> (56 - 8 * i));
        h.b[8 + i] = (uint8_t)(x.low64 >> (56 - 8 * i));
    }
    return h;
}

flow_hash flow_hash_bytes(const void *p, size_t n) { return from_xxh128(XXH3_128bits(p, n)); }

void flow_hash_hex(const flow_hash *h, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[h->b[i] >> 4];
        out[2 * i + 1] = hex[h->b[i] & 15];
    }
    out[32] = 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int flow_hash_parse(const char *hex, flow_hash *out)
{
    if (strlen(hex) != 32) return FLOW_E_USAGE;
    for (int i = 0; i < 16; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return FLOW_E_USAGE;
        out->b[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int flow_hash_eq(const flow_hash *a, const flow_hash *b) { return memcmp(a->b, b->b, 16) == 0; }

int flow_hash_is_zero(const flow_hash *h)
{
    for (int i = 0; i < 16; i++) if (h->b[i]) return 0;
    return 1;
}

struct flow_hasher { XXH3_state_t *st; };

flow_hasher *flow_hasher_new(void)
{
    flow_hasher *h = xmalloc(sizeof *h);
    h->st = XXH3_createState();
    if (!h->st) out_of_memory(sizeof(XXH3_state_t));
    XXH3_128bits_reset(h->st);
    return h;
}

void flow_hasher_update(flow_hasher *h, const void *p, size_t n) { XXH3_128bits_update(h->st, p, n); }
flow_hash flow_hasher_digest(flow_hasher *h) { return from_xxh128(XXH3_128bits_digest(h->st)); }

void flow_hasher_free(flow_hasher *h)
{
    if (!h) return;
    XXH3_freeState(h->st);
    free(h);
}

/* ---- UTF-8 ---- */

int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0) return -1;
    unsigned char c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    int len;
    uint32_t v, min;
    if ((c & 0xe0) == 0xc0) { len = 2; v = c & 0x1f; min = 0x80; }
    else if ((c & 0xf0) == 0xe0) { len = 3; v = c & 0x0f; min = 0x800; }
    else if ((c & 0xf8) == 0xf0) { len = 4; v = c & 0x07; min = 0x10000; }
    else return -1;
    if ((size_t)len > n) return -1;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return -1;
        v = v << 6 | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return -1;
    *cp = v;
    return len;
}

int utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

long utf8_first_invalid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        uint32_t cp;
        int k = utf8_decode(s + i, n - i, &cp);
        if (k < 0) return (long)i;
        i += (size_t)k;
    }
    return -1;
}

uint64_t splitmix64_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
