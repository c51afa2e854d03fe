/* safetensors.c — the safetensors reader and writer (format and rules in
 * safetensors.h). */
#include "safetensors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *name; size_t size; } dtypes[ST_NDTYPES] = {
    [ST_F32] = { "F32", 4 }, [ST_F16] = { "F16", 2 }, [ST_BF16] = { "BF16", 2 },
    [ST_I8] = { "I8", 1 }, [ST_U8] = { "U8", 1 }, [ST_I32] = { "I32", 4 }, [ST_I64] = { "I64", 8 },
};

/* The header may not exceed this (HF's limit is 100 MB too). */
#define ST_MAX_HEADER (100u << 20)

const char *st_dtype_name(st_dtype t) { return (unsigned)t < ST_NDTYPES ? dtypes[t].name : "?"; }
size_t st_dtype_size(st_dtype t) { return (unsigned)t < ST_NDTYPES ? dtypes[t].size : 0; }

int st_dtype_parse(const char *name)
{
    for (int i = 0; i < ST_NDTYPES; i++)
        if (strcmp(dtypes[i].name, name) == 0) return i;
    return -1;
}

void st_init(st_file *f) { memset(f, 0, sizeof *f); }

void st_release(st_file *f)
{
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    for (int i = 0; i < f->nmeta; i++) {
        free(f->meta_key[i]);
        free(f->meta_val[i]);
    }
    free(f->t);
    free(f->meta_key);
    free(f->meta_val);
    free(f->raw);
    st_init(f);
}

static st_tensor *push_tensor(st_file *f)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 32;
        f->t = xrealloc(f->t, (size_t)f->cap * sizeof *f->t);
    }
    st_tensor *t = &f->t[f->n++];
    memset(t, 0, sizeof *t);
    return t;
}

void st_add(st_file *f, const char *name, st_dtype dt, int ndim, const int64_t *shape,
            const void *data)
{
    if ((unsigned)dt >= ST_NDTYPES || ndim < 0 || ndim > ST_MAXDIM)
        FLOW_BUG("tensor '%s': dtype %d ndim %d", name, (int)dt, ndim);
    if (st_find(f, name)) FLOW_BUG("tensor '%s' added twice", name);
    st_tensor *t = push_tensor(f);
    t->name = xstrdup(name);
    t->dtype = dt;
    t->ndim = ndim;
    t->numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) FLOW_BUG("tensor '%s': dimension %d is %lld", name, d, (long long)shape[d]);
        t->shape[d] = shape[d];
        t->numel *= (uint64_t)shape[d];
    }
    t->data = data;
}

void st_set_meta(st_file *f, const char *key, const char *value)
{
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_key[i], key) == 0) {
            free(f->meta_val[i]);
            f->meta_val[i] = xstrdup(value);
            return;
        }
    if (f->nmeta == f->meta_cap) {
        f->meta_cap = f->meta_cap ? 2 * f->meta_cap : 8;
        f->meta_key = xrealloc(f->meta_key, (size_t)f->meta_cap * sizeof *f->meta_key);
        f->meta_val = xrealloc(f->meta_val, (size_t)f->meta_cap * sizeof *f->meta_val);
    }
    f->meta_key[f->nmeta] = xstrdup(key);
    f->meta_val[f->nmeta++] = xstrdup(value);
}

/* Data layout: element size descending, insertion order within a size. */
static void assign_offsets(st_file *f)
{
    uint64_t off = 0;
    static const size_t sizes[] = { 8, 4, 2, 1 };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int i = 0; i < f->n; i++) {
            st_tensor *t = &f->t[i];
            if (st_dtype_size(t->dtype) != sizes[s]) continue;
            t->begin = off;
            t->end = off + t->numel * sizes[s];
            off = t->end;
        }
}

void st_header(st_file *f, flow_buf *out)
{
    assign_offsets(f);
    flow_buf h;
    buf_init(&h);
    buf_addc(&h, '{');
    if (f->nmeta) {
        buf_adds(&h, "\"__metadata__\":{");
        for (int i = 0; i < f->nmeta; i++) {
            if (i) buf_addc(&h, ',');
            buf_json_str(&h, f->meta_key[i], strlen(f->meta_key[i]));
            buf_addc(&h, ':');
            buf_json_str(&h, f->meta_val[i], strlen(f->meta_val[i]));
        }
        buf_addc(&h, '}');
    }
    for (int i = 0; i < f->n; i++) {
        const st_tensor *t = &f->t[i];
        if (i || f->nmeta) buf_addc(&h, ',');
        buf_json_str(&h, t->name, strlen(t->name));
        buf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) buf_printf(&h, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        buf_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)t->begin,
                   (unsigned long long)t->end);
    }
    buf_addc(&h, '}');
    while (h.len % 8) buf_addc(&h, ' ');
    unsigned char le[8];
    for (int k = 0; k < 8; k++) le[k] = (unsigned char)((uint64_t)h.len >> (8 * k));
    buf_add(out, le, 8);
    buf_add(out, h.data, h.len);
    buf_release(&h);
}

int st_write_stream(st_file *f, int (*write)(void *arg, const void *p, size_t n), void *arg)
{
    flow_buf h;
    buf_init(&h);
    st_header(f, &h);
    int rc = write(arg, h.data, h.len);
    buf_release(&h);
    static const size_t sizes[] = { 8, 4, 2, 1 };
    for (size_t s = 0; !rc && s < sizeof sizes / sizeof sizes[0]; s++)
        for (int i = 0; !rc && i < f->n; i++)
            if (st_dtype_size(f->t[i].dtype) == sizes[s] && f->t[i].end > f->t[i].begin)
                rc = write(arg, f->t[i].data, f->t[i].end - f->t[i].begin);
    return rc;
}

static int to_buf(void *arg, const void *p, size_t n)
{
    buf_add(arg, p, n);
    return 0;
}

void st_serialize(st_file *f, flow_buf *out)
{
    st_write_stream(f, to_buf, out);
}

/* ---- reader ------------------------------------------------------------ */

/* A JSON number that is a non-negative integer below 2^53. */
static int json_uint(const json_value *v, uint64_t *out)
{
    if (json_typeof(v) != JSON_NUM) return -1;
    double d = json_num(v, -1);
    if (!(d >= 0 && d < 9007199254740992.0) || floor(d) != d) return -1;
    *out = (uint64_t)d;
    return 0;
}

static int parse_tensor(st_file *f, const char *name, const json_value *v, uint64_t buflen,
                        const char *what, flow_err *err)
{
    if (json_typeof(v) != JSON_OBJ)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: safetensors entry '%s' is not an object", what, name);
    const json_value *dt = json_get(v, "dtype"), *sh = json_get(v, "shape"), *of = json_get(v, "data_offsets");
    int type = json_typeof(dt) == JSON_STR ? st_dtype_parse(json_str(dt, "")) : -1;
    if (type < 0)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: tensor '%s' has dtype %s, this flow reads F32 F16 BF16 I8 U8 I32 I64",
                         what, name, json_typeof(dt) == JSON_STR ? json_str(dt, "") : "(missing)");
    if (json_typeof(sh) != JSON_ARR || json_len(sh) > ST_MAXDIM)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: tensor '%s' has no valid shape (an array of at most %d sizes)",
                         what, name, ST_MAXDIM);
    if (json_typeof(of) != JSON_ARR || json_len(of) != 2)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: tensor '%s' has no data_offsets [begin, end]", what, name);
    st_tensor *t = push_tensor(f);
    t->name = xstrdup(name);
    t->dtype = (st_dtype)type;
    t->ndim = json_len(sh);
    t->numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        uint64_t s;
        if (json_uint(json_at(sh, d), &s) || s > (1ull << 40))
            return flow_fail(err, FLOW_E_CORRUPT, "%s: tensor '%s': dimension %d is not a size", what, name, d);
        t->shape[d] = (int64_t)s;
        t->numel *= s;
        if (t->numel > (1ull << 44))
            return flow_fail(err, FLOW_E_CORRUPT, "%s: tensor '%s' is too large", what, name);
    }
    if (json_uint(json_at(of, 0), &t->begin) || json_uint(json_at(of, 1), &t->end) || t->begin > t->end)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: tensor '%s' has invalid data_offsets", what, name);
    if (t->end - t->begin != t->numel * st_dtype_size(t->dtype))
        return flow_fail(err, FLOW_E_CORRUPT, "%s: tensor '%s' (%s, %llu elements) spans %llu bytes, expected %llu",
                         what, name, st_dtype_name(t->dtype), (unsigned long long)t->numel,
                         (unsigned long long)(t->end - t->begin),
                         (unsigned long long)(t->numel * st_dtype_size(t->dtype)));
    if (t->end > buflen)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: tensor '%s' ends at byte %llu of a %llu-byte data buffer (truncated?)",
                         what, name, (unsigned long long)t->end, (unsigned long long)buflen);
    return 0;
}

static int parse_meta(st_file *f, const json_value *m, const char *what, flow_err *err)
{
    if (json_typeof(m) != JSON_OBJ)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: safetensors __metadata__ is not an object", what);
    for (int i = 0; i < json_len(m); i++) {
        if (json_typeof(json_at(m, i)) != JSON_STR)
            return flow_fail(err, FLOW_E_CORRUPT, "%s: metadata '%s' is not a string", what, json_key_at(m, i));
        st_set_meta(f, json_key_at(m, i), json_str(json_at(m, i), ""));
    }
    return 0;
}

static const st_file *sort_file;
static int by_begin(const void *a, const void *b)
{
    const st_tensor *x = &sort_file->t[*(const int *)a], *y = &sort_file->t[*(const int *)b];
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}
static int by_name(const void *a, const void *b)
{
    return strcmp(sort_file->t[*(const int *)a].name, sort_file->t[*(const int *)b].name);
}

/* Names unique; tensors tile [0, buflen) exactly (empty tensors anywhere). */
static int check_layout(const st_file *f, uint64_t buflen, const char *what, flow_err *err)
{
    int *ord = xmalloc((size_t)(f->n ? f->n : 1) * sizeof *ord), rc = 0;
    for (int i = 0; i < f->n; i++) ord[i] = i;
    sort_file = f;   /* single-threaded use */
    qsort(ord, (size_t)f->n, sizeof *ord, by_name);
    for (int i = 1; i < f->n && !rc; i++)
        if (strcmp(f->t[ord[i]].name, f->t[ord[i - 1]].name) == 0)
            rc = flow_fail(err, FLOW_E_CORRUPT, "%s: tensor '%s' appears twice", what, f->t[ord[i]].name);
    qsort(ord, (size_t)f->n, sizeof *ord, by_begin);
    uint64_t at = 0;
    for (int i = 0; i < f->n && !rc; i++) {
        const st_tensor *t = &f->t[ord[i]];
        if (t->begin == t->end) continue;
        if (t->begin != at)
            rc = flow_fail(err, FLOW_E_CORRUPT, "%s: tensor '%s' starts at byte %llu, expected %llu (%s)", what,
                           t->name, (unsigned long long)t->begin, (unsigned long long)at,
                           t->begin > at ? "a hole in the data" : "overlapping tensors");
        at = t->end;
    }
    if (!rc && at != buflen)
        rc = flow_fail(err, FLOW_E_CORRUPT, "%s: the tensors cover %llu of %llu data bytes", what,
                       (unsigned long long)at, (unsigned long long)buflen);
    free(ord);
    return rc;
}

int st_parse(st_file *f, char *raw, size_t len, const char *what, flow_err *err)
{
    st_init(f);
    f->raw = raw;
    f->raw_len = len;
    uint64_t hl = 0;
    if (len >= 8)
        for (int k = 0; k < 8; k++) hl |= (uint64_t)(unsigned char)raw[k] << (8 * k);
    if (len < 8 || hl < 2 || hl > ST_MAX_HEADER || hl > len - 8 || raw[8] != '{') {
        st_release(f);
        return flow_fail(err, FLOW_E_CORRUPT, "%s: not a safetensors file (%zu bytes, header length %llu); "
                         "an artifact from an older flow has another weights format: rebuild it",
                         what, len, (unsigned long long)hl);
    }
    json_value *h = NULL;
    char hwhat[256];
    snprintf(hwhat, sizeof hwhat, "%s: safetensors header", what);
    int rc = json_parse(raw + 8, (size_t)hl, hwhat, &h, err);
    if (!rc && json_typeof(h) != JSON_OBJ)
        rc = flow_fail(err, FLOW_E_CORRUPT, "%s: the safetensors header is not a JSON object", what);
    uint64_t buflen = len - 8 - hl;
    for (int i = 0; !rc && i < json_len(h); i++) {
        const char *key = json_key_at(h, i);
        if (strcmp(key, "__metadata__") == 0) rc = parse_meta(f, json_at(h, i), what, err);
        else rc = parse_tensor(f, key, json_at(h, i), buflen, what, err);
    }
    json_free(h);
    if (!rc) rc = check_layout(f, buflen, what, err);
    if (rc) {
        st_release(f);
        return rc;
    }
    f->buffer = (const unsigned char *)raw + 8 + hl;
    for (int i = 0; i < f->n; i++) f->t[i].data = f->buffer + f->t[i].begin;
    return 0;
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

const char *st_meta(const st_file *f, const char *key)
{
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_key[i], key) == 0) return f->meta_val[i];
    return NULL;
}

static void shape_str(char *out, size_t cap, int ndim, const int64_t *shape)
{
    size_t n = (size_t)snprintf(out, cap, "[");
    for (int d = 0; d < ndim && n < cap; d++)
        n += (size_t)snprintf(out + n, cap - n, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (n < cap) snprintf(out + n, cap - n, "]");
}

int st_get_f32(const st_file *f, const char *name, int ndim, const int64_t *shape,
               const float **out, const char *what, flow_err *err)
{
    const st_tensor *t = st_find(f, name);
    if (!t) return flow_fail(err, FLOW_E_CORRUPT, "%s: tensor '%s' is missing from the weights", what, name);
    if (t->dtype != ST_F32)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: tensor '%s' is %s, expected F32", what, name, st_dtype_name(t->dtype));
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same) {
        char a[160], b[160];
        shape_str(a, sizeof a, t->ndim, t->shape);
        shape_str(b, sizeof b, ndim, shape);
        return flow_fail(err, FLOW_E_CORRUPT, "%s: tensor '%s' has shape %s, expected %s", what, name, a, b);
    }
    if ((uintptr_t)t->data % sizeof(float))
        return flow_fail(err, FLOW_E_CORRUPT, "%s: tensor '%s' is not 4-byte aligned in the file "
                         "(data offset %llu)", what, name, (unsigned long long)t->begin);
    *out = t->data;
    return 0;
}
