/* weights.c — the FLOWWTS tensor file (format in classifier.h): a flat
 * float32 buffer with a self-describing table of named tensors, the
 * `weights` part of every model artifact. */
#include "classifier.h"

#include <stdlib.h>
#include <string.h>

#define WTS_MAGIC "FLOWWTS"
#define WTS_VERSION 1u

void wts_init(wts_file *w) { memset(w, 0, sizeof *w); }

void wts_release(wts_file *w)
{
    for (int i = 0; i < w->n; i++) free(w->t[i].name);
    free(w->t);
    free(w->raw);
    wts_init(w);
}

void wts_add(wts_file *w, const char *name, int ndim, const int64_t *dims, const float *data)
{
    if (ndim < 1 || ndim > WTS_MAXDIM) FLOW_BUG("tensor '%s': ndim %d", name, ndim);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->t = xrealloc(w->t, (size_t)w->cap * sizeof *w->t);
    }
    wts_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    t->ndim = ndim;
    t->count = 1;
    for (int d = 0; d < ndim; d++) {
        t->dims[d] = dims[d];
        t->count *= (uint64_t)dims[d];
    }
    t->offset = w->n ? w->t[w->n - 1].offset + w->t[w->n - 1].count : 0;
    t->ptr = data;
    w->n++;
}

static void put_u32(flow_buf *b, uint32_t v) { buf_add(b, &v, 4); }
static void put_u64(flow_buf *b, uint64_t v) { buf_add(b, &v, 8); }

void wts_header(const wts_file *w, flow_buf *h)
{
    buf_add(h, WTS_MAGIC, 8);   /* includes the NUL */
    put_u32(h, WTS_VERSION);
    put_u32(h, (uint32_t)w->n);
    size_t off_pos = h->len;
    put_u64(h, 0);
    for (int i = 0; i < w->n; i++) {
        const wts_tensor *t = &w->t[i];
        uint32_t l = (uint32_t)strlen(t->name);
        put_u32(h, l);
        buf_add(h, t->name, l);
        put_u32(h, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) put_u64(h, (uint64_t)t->dims[d]);
        put_u64(h, t->offset);
        put_u64(h, t->count);
    }
    while (h->len % 64) buf_addc(h, 0);
    uint64_t d = h->len;
    memcpy(h->data + off_pos, &d, 8);
}

void wts_serialize(const wts_file *w, flow_buf *out)
{
    wts_header(w, out);
    for (int i = 0; i < w->n; i++)
        buf_add(out, w->t[i].ptr, w->t[i].count * sizeof(float));
}

static int get_u32(const char *raw, size_t len, size_t *pos, uint32_t *v)
{
    if (*pos + 4 > len) return -1;
    memcpy(v, raw + *pos, 4);
    *pos += 4;
    return 0;
}

static int get_u64(const char *raw, size_t len, size_t *pos, uint64_t *v)
{
    if (*pos + 8 > len) return -1;
    memcpy(v, raw + *pos, 8);
    *pos += 8;
    return 0;
}

int wts_parse(wts_file *w, char *raw, size_t len, const char *what, flow_err *err)
{
    wts_init(w);
    w->raw = raw;
    if (len < 24 || memcmp(raw, WTS_MAGIC, 8) != 0) {
        wts_release(w);
        return flow_fail(err, FLOW_E_CORRUPT, "%s: not a FLOWWTS tensor file (bad magic)", what);
    }
    size_t pos = 8;
    uint32_t ver, n;
    uint64_t data_off;
    get_u32(raw, len, &pos, &ver);
    get_u32(raw, len, &pos, &n);
    get_u64(raw, len, &pos, &data_off);
    if (ver != WTS_VERSION) {
        wts_release(w);
        return flow_fail(err, FLOW_E_CORRUPT, "%s: FLOWWTS version %u is %s than this flow's %u; rebuild the model",
                         what, ver, ver > WTS_VERSION ? "newer" : "older", WTS_VERSION);
    }
    if (data_off > len || data_off % 64 || n > 1000000) goto bad;
    uint64_t nfloats = (len - data_off) / 4;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t l, nd;
        if (get_u32(raw, len, &pos, &l) || pos + l > data_off) goto bad;
        char *name = xmalloc(l + 1);
        memcpy(name, raw + pos, l);
        name[l] = 0;
        pos += l;
        if (get_u32(raw, len, &pos, &nd) || nd < 1 || nd > WTS_MAXDIM) { free(name); goto bad; }
        if (w->n == w->cap) {
            w->cap = w->cap ? 2 * w->cap : 16;
            w->t = xrealloc(w->t, (size_t)w->cap * sizeof *w->t);
        }
        wts_tensor *t = &w->t[w->n++];
        memset(t, 0, sizeof *t);
        t->name = name;
        t->ndim = (int)nd;
        uint64_t prod = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t v;
            if (get_u64(raw, len, &pos, &v) || v > (1ull << 40)) goto bad;
            t->dims[d] = (int64_t)v;
            prod *= v;
        }
        if (get_u64(raw, len, &pos, &t->offset) || get_u64(raw, len, &pos, &t->count)) goto bad;
        if (t->count != prod || t->offset > nfloats || t->count > nfloats - t->offset) goto bad;
    }
    if (pos > data_off) goto bad;
    w->data = (const float *)(const void *)(raw + data_off);
    for (int i = 0; i < w->n; i++) w->t[i].ptr = w->data + w->t[i].offset;
    return 0;
bad:
    wts_release(w);
    return flow_fail(err, FLOW_E_CORRUPT, "%s: FLOWWTS tensor table is damaged (%zu bytes)", what, len);
}

const wts_tensor *wts_find(const wts_file *w, const char *name)
{
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0) return &w->t[i];
    return NULL;
}

int wts_get(const wts_file *w, const char *name, uint64_t count, const float **out,
            const char *what, flow_err *err)
{
    const wts_tensor *t = wts_find(w, name);
    if (!t) return flow_fail(err, FLOW_E_CORRUPT, "%s: tensor '%s' is missing from the weights", what, name);
    if (t->count != count)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: tensor '%s' has %llu values, expected %llu",
                         what, name, (unsigned long long)t->count, (unsigned long long)count);
    *out = t->ptr;
    return 0;
}
