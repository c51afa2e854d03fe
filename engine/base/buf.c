/* buf.c — growable byte buffers with JSON escaping, and whole-file reads. */
#include "base.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
