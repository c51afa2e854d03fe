/* onnx_graph.c — building an ONNX graph and writing it as a ModelProto
 * (messages and field numbers in onnx_graph.h). */
#include "onnx_graph.h"
#include "onnx_pb.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The protobuf limit is 2^31 - 1 bytes; stay clearly below it. */
#define ONNX_INLINE_LIMIT 2000000000ull
#define ONNX_EXTERNAL_MIN 1024
#define ONNX_EXTERNAL_ALIGN 4096

void onnx_graph_init(onnx_graph *g, int opset)
{
    memset(g, 0, sizeof *g);
    g->opset = opset;
    buf_init(&g->nodes);
    buf_init(&g->inputs);
    buf_init(&g->outputs);
    buf_init(&g->meta);
}

void onnx_graph_release(onnx_graph *g)
{
    buf_release(&g->nodes);
    buf_release(&g->inputs);
    buf_release(&g->outputs);
    buf_release(&g->meta);
    for (int i = 0; i < g->ninits; i++) {
        free(g->inits[i].name);
        free(g->inits[i].owned);
    }
    free(g->inits);
    for (int i = 0; i < g->nstrs; i++) free(g->strs[i]);
    free(g->strs);
    memset(g, 0, sizeof *g);
}

static const char *keep_str(onnx_graph *g, char *s)
{
    if (g->nstrs == g->cstrs) {
        g->cstrs = g->cstrs ? 2 * g->cstrs : 256;
        g->strs = xrealloc(g->strs, (size_t)g->cstrs * sizeof *g->strs);
    }
    g->strs[g->nstrs++] = s;
    return s;
}

const char *onnx_str(onnx_graph *g, const char *fmt, ...)
{
    flow_buf b;
    buf_init(&b);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    buf_addc(&b, 0);
    return keep_str(g, buf_detach(&b, NULL));
}

void onnx_scope(onnx_graph *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->scope, sizeof g->scope, fmt, ap);
    va_end(ap);
}

/* ---- attributes (AttributeProto, NodeProto field 5) --------------------- */

static void attr_emit(flow_buf *a, const flow_buf *body)
{
    pb_msg(a, 5, body);
}

void onnx_attr_int(flow_buf *a, const char *name, int64_t v)
{
    flow_buf b;
    buf_init(&b);
    pb_str(&b, 1, name);
    pb_int(&b, 3, v);
    pb_int(&b, 20, 2);
    attr_emit(a, &b);
    buf_release(&b);
}

void onnx_attr_float(flow_buf *a, const char *name, float v)
{
    flow_buf b;
    buf_init(&b);
    pb_str(&b, 1, name);
    pb_float(&b, 2, v);
    pb_int(&b, 20, 1);
    attr_emit(a, &b);
    buf_release(&b);
}

void onnx_attr_ints(flow_buf *a, const char *name, const int64_t *v, int n)
{
    flow_buf b;
    buf_init(&b);
    pb_str(&b, 1, name);
    for (int i = 0; i < n; i++) pb_int(&b, 8, v[i]);
    pb_int(&b, 20, 7);
    attr_emit(a, &b);
    buf_release(&b);
}

void onnx_attr_str(flow_buf *a, const char *name, const char *s)
{
    flow_buf b;
    buf_init(&b);
    pb_str(&b, 1, name);
    pb_str(&b, 4, s);
    pb_int(&b, 20, 3);
    attr_emit(a, &b);
    buf_release(&b);
}

/* ---- nodes ---------------------------------------------------------------- */

static const char *node(onnx_graph *g, const char *op, const char *domain, const char *const *in,
                        int nin, int nout, const char **out, const char *named, const flow_buf *attrs)
{
    flow_buf n;
    buf_init(&n);
    int id = g->counter++;
    const char *first = NULL;
    for (int i = 0; i < nin; i++) pb_str(&n, 1, in[i] ? in[i] : "");
    for (int k = 0; k < nout; k++) {
        const char *name = named ? onnx_str(g, "%s", named)
                         : nout == 1 ? onnx_str(g, "%s/%s_%d", g->scope, op, id)
                                     : onnx_str(g, "%s/%s_%d:%d", g->scope, op, id, k);
        if (out) out[k] = name;
        if (!first) first = name;
        pb_str(&n, 2, name);
    }
    pb_str(&n, 3, onnx_str(g, "%s/%s_%d", g->scope, op, id));
    pb_str(&n, 4, op);
    if (attrs && attrs->len) buf_add(&n, attrs->data, attrs->len);
    if (domain && *domain) pb_str(&n, 7, domain);
    pb_msg(&g->nodes, 1, &n);
    buf_release(&n);
    g->nnodes++;
    return first;
}

const char *onnx_node(onnx_graph *g, const char *op, const char *domain, const char *const *in,
                      int nin, int nout, const char **out, const flow_buf *attrs)
{
    return node(g, op, domain, in, nin, nout, out, NULL, attrs);
}

const char *onnx_node_named(onnx_graph *g, const char *op, const char *domain,
                            const char *const *in, int nin, const char *name,
                            const flow_buf *attrs)
{
    return node(g, op, domain, in, nin, 1, NULL, name, attrs);
}

const char *onnx_op(onnx_graph *g, const char *op, const char *a, const char *b)
{
    const char *in[2] = { a, b };
    return onnx_node(g, op, NULL, in, b ? 2 : 1, 1, NULL, NULL);
}

/* ---- initializers ---------------------------------------------------------- */

const char *onnx_initializer(onnx_graph *g, const char *name, int dtype, int ndim,
                             const int64_t *dims, const void *data, size_t nbytes, void *owned)
{
    if (ndim < 0 || ndim > ONNX_MAXDIM) FLOW_BUG("onnx initializer '%s' with %d dims", name, ndim);
    if (g->ninits == g->cinits) {
        g->cinits = g->cinits ? 2 * g->cinits : 64;
        g->inits = xrealloc(g->inits, (size_t)g->cinits * sizeof *g->inits);
    }
    onnx_init *t = &g->inits[g->ninits++];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->dims[d] = dims[d];
    t->data = data;
    t->nbytes = nbytes;
    t->owned = owned;
    return t->name;
}

const char *onnx_const_f32(onnx_graph *g, float v)
{
    float *p = xmalloc(sizeof *p);
    *p = v;
    return onnx_initializer(g, onnx_str(g, "%s/const_%d", g->scope, g->counter++), ONNX_FLOAT, 0,
                            NULL, p, sizeof *p, p);
}

const char *onnx_const_i64(onnx_graph *g, const int64_t *v, int n)
{
    int64_t *p = xmalloc((size_t)n * sizeof *p);
    memcpy(p, v, (size_t)n * sizeof *p);
    int64_t dims[1] = { n };
    return onnx_initializer(g, onnx_str(g, "%s/const_%d", g->scope, g->counter++), ONNX_INT64, 1,
                            dims, p, (size_t)n * sizeof *p, p);
}

uint64_t onnx_init_bytes(const onnx_graph *g)
{
    uint64_t n = 0;
    for (int i = 0; i < g->ninits; i++) n += g->inits[i].nbytes;
    return n;
}

/* ---- inputs, outputs, metadata --------------------------------------------- */

static void value_info(flow_buf *dst, int field, const char *name, int dtype, int ndim,
                       const char *const *dims)
{
    flow_buf shape, tensor, type, vi;
    buf_init(&shape); buf_init(&tensor); buf_init(&type); buf_init(&vi);
    for (int d = 0; d < ndim; d++) {
        flow_buf dim;
        buf_init(&dim);
        char *end;
        long long v = strtoll(dims[d], &end, 10);
        if (*dims[d] && !*end) pb_int(&dim, 1, v);
        else pb_str(&dim, 2, dims[d]);
        pb_msg(&shape, 1, &dim);
        buf_release(&dim);
    }
    pb_int(&tensor, 1, dtype);
    pb_msg(&tensor, 2, &shape);
    pb_msg(&type, 1, &tensor);
    pb_str(&vi, 1, name);
    pb_msg(&vi, 2, &type);
    pb_msg(dst, field, &vi);
    buf_release(&shape); buf_release(&tensor); buf_release(&type); buf_release(&vi);
}

void onnx_input(onnx_graph *g, const char *name, int dtype, int ndim, const char *const *dims)
{
    value_info(&g->inputs, 11, name, dtype, ndim, dims);
}

void onnx_output(onnx_graph *g, const char *name, int dtype, int ndim, const char *const *dims)
{
    value_info(&g->outputs, 12, name, dtype, ndim, dims);
}

static void string_entry(flow_buf *dst, int field, const char *key, const char *value)
{
    flow_buf b;
    buf_init(&b);
    pb_str(&b, 1, key);
    pb_str(&b, 2, value);
    pb_msg(dst, field, &b);
    buf_release(&b);
}

void onnx_meta(onnx_graph *g, const char *key, const char *value)
{
    string_entry(&g->meta, 14, key, value);
}

/* ---- writing ----------------------------------------------------------------- */

/* IR version that goes with an opset of the default domain (the table of
 * onnx.helper.VERSION_TABLE: opset 17-18 -> IR 8, 19-20 -> 9, 21-22 -> 10). */
static int ir_version_for(int opset)
{
    return opset <= 18 ? 8 : opset <= 20 ? 9 : 10;
}

/* TensorProto of t without its payload; inline payloads follow it as the
 * raw_data field (its prefix is the last thing written here). */
static void tensor_header(flow_buf *h, const onnx_init *t, int ext, uint64_t off, const char *loc)
{
    for (int d = 0; d < t->ndim; d++) pb_int(h, 1, t->dims[d]);
    pb_int(h, 2, t->dtype);
    pb_str(h, 8, t->name);
    if (ext) {
        char num[32];
        string_entry(h, 13, "location", loc);
        snprintf(num, sizeof num, "%llu", (unsigned long long)off);
        string_entry(h, 13, "offset", num);
        snprintf(num, sizeof num, "%zu", t->nbytes);
        string_entry(h, 13, "length", num);
        pb_int(h, 14, 1);
    } else {
        pb_len_prefix(h, 9, t->nbytes);
    }
}

typedef struct writer {
    FILE *f;
    const char *path;
    int ok;
} writer;

static void wr(writer *w, const void *p, size_t n)
{
    if (w->ok && n && fwrite(p, 1, n, w->f) != n) w->ok = 0;
}

static int open_tmp(writer *w, const char *path, char *tmp, size_t cap, flow_err *e)
{
    snprintf(tmp, cap, "%s.tmp", path);
    w->path = path;
    w->ok = 1;
    w->f = fopen(tmp, "wb");
    if (!w->f) return flow_fail(e, FLOW_E_IO, "cannot write '%s': %s", tmp, strerror(errno));
    return 0;
}

static int close_tmp(writer *w, const char *tmp, flow_err *e)
{
    int ok = w->ok;
    int err = ok ? 0 : errno;
    if (fclose(w->f) != 0 && ok) { ok = 0; err = errno; }
    if (ok && rename(tmp, w->path) != 0) { ok = 0; err = errno; }
    if (!ok) {
        remove(tmp);
        return flow_fail(e, FLOW_E_IO, "cannot write '%s': %s", w->path, strerror(err ? err : EIO));
    }
    return 0;
}

/* Writes the side file of external initializers; off[i] gets each offset
 * (UINT64_MAX: inline). */
static int write_external(const onnx_graph *g, const char *path, uint64_t *off, flow_err *e)
{
    writer w;
    char tmp[4200];
    int rc = open_tmp(&w, path, tmp, sizeof tmp, e);
    if (rc) return rc;
    static const char zeros[ONNX_EXTERNAL_ALIGN];
    uint64_t pos = 0;
    for (int i = 0; i < g->ninits; i++) {
        const onnx_init *t = &g->inits[i];
        off[i] = UINT64_MAX;
        if (t->nbytes < ONNX_EXTERNAL_MIN) continue;
        uint64_t pad = (ONNX_EXTERNAL_ALIGN - pos % ONNX_EXTERNAL_ALIGN) % ONNX_EXTERNAL_ALIGN;
        wr(&w, zeros, pad);
        pos += pad;
        off[i] = pos;
        wr(&w, t->data, t->nbytes);
        pos += t->nbytes;
    }
    return close_tmp(&w, tmp, e);
}

int onnx_graph_write(const onnx_graph *g, const char *dir, const char *file, int external,
                     int *used_external, flow_err *e)
{
    char path[4096], dpath[4096], loc[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    snprintf(loc, sizeof loc, "%s.data", file);
    snprintf(dpath, sizeof dpath, "%s/%s", dir, loc);
    uint64_t inline_size = g->nodes.len + g->inputs.len + g->outputs.len + g->meta.len;
    for (int i = 0; i < g->ninits; i++)
        inline_size += g->inits[i].nbytes + 256 + strlen(g->inits[i].name);
    uint64_t limit = ONNX_INLINE_LIMIT;
    uint64_t test_limit = flow_test_onnx_inline_limit ? flow_test_onnx_inline_limit() : 0;
    if (test_limit) limit = test_limit;
    int ext = external || inline_size > limit;
    if (used_external) *used_external = ext;
    uint64_t *off = xcalloc((size_t)g->ninits + 1, sizeof *off);
    int rc = 0;
    if (ext) rc = write_external(g, dpath, off, e);
    else if (remove(dpath) != 0 && errno != ENOENT)
        rc = flow_fail(e, FLOW_E_IO, "cannot remove the stale '%s': %s", dpath, strerror(errno));
    if (rc) { free(off); return rc; }

    /* Every initializer's header first, to know the graph's length. */
    flow_buf *hdr = xcalloc((size_t)g->ninits + 1, sizeof *hdr);
    flow_buf name;
    buf_init(&name);
    pb_str(&name, 2, "flow");
    uint64_t graph_len = g->nodes.len + name.len + g->inputs.len + g->outputs.len;
    for (int i = 0; i < g->ninits; i++) {
        int te = ext && off[i] != UINT64_MAX;
        buf_init(&hdr[i]);
        tensor_header(&hdr[i], &g->inits[i], te, off[i], loc);
        uint64_t body = hdr[i].len + (te ? 0 : g->inits[i].nbytes);
        graph_len += pb_len_prefix_size(5, body) + body;
    }
    flow_buf m;
    buf_init(&m);
    pb_int(&m, 1, ir_version_for(g->opset));
    pb_str(&m, 2, "flow");
    pb_str(&m, 3, "1");
    flow_buf os;
    buf_init(&os);
    pb_str(&os, 1, "");
    pb_int(&os, 2, g->opset);
    pb_msg(&m, 8, &os);
    if (g->ms_opset) {
        os.len = 0;
        pb_str(&os, 1, "com.microsoft");
        pb_int(&os, 2, g->ms_opset);
        pb_msg(&m, 8, &os);
    }
    buf_release(&os);
    buf_add(&m, g->meta.data, g->meta.len);
    pb_len_prefix(&m, 7, graph_len);

    writer w;
    char tmp[4200];
    rc = open_tmp(&w, path, tmp, sizeof tmp, e);
    if (!rc) {
        wr(&w, m.data, m.len);
        wr(&w, g->nodes.data, g->nodes.len);
        wr(&w, name.data, name.len);
        for (int i = 0; i < g->ninits; i++) {
            int te = ext && off[i] != UINT64_MAX;
            uint64_t body = hdr[i].len + (te ? 0 : g->inits[i].nbytes);
            flow_buf p;
            buf_init(&p);
            pb_len_prefix(&p, 5, body);
            wr(&w, p.data, p.len);
            buf_release(&p);
            wr(&w, hdr[i].data, hdr[i].len);
            if (!te) wr(&w, g->inits[i].data, g->inits[i].nbytes);
        }
        wr(&w, g->inputs.data, g->inputs.len);
        wr(&w, g->outputs.data, g->outputs.len);
        rc = close_tmp(&w, tmp, e);
    }
    for (int i = 0; i < g->ninits; i++) buf_release(&hdr[i]);
    free(hdr);
    free(off);
    buf_release(&name);
    buf_release(&m);
    return rc;
}
