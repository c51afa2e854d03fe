/* worker.c — one forked worker process per node, and the stage API it
 * offers (engine.h's stage API except flow_param_*, flow_node_name,
 * flow_graph_dir, flow_temp_dir (params.c) and flow_file_hash
 * (filehash.c)).
 *
 * The scheduler (build.c) forks; the child becomes the leader of its own
 * process group, opens its OWN flow_store (an LMDB environment must never
 * be used across fork), loads the input artifacts, runs the stage, writes
 * its parts through a store_writer and commits the artifact with metadata
 * and log itself, then exits.  A failing, crashing or killed worker commits
 * nothing.  The child reports back over two pipes: framed messages
 * (sched.h: progress, error, metrics, report, done) and its raw
 * stdout/stderr, which also carries every flow_log line, so the parent
 * still has the log tail of a worker that died on a signal.
 *
 * Resource usage (wall, CPU, peak RSS) is measured by the worker itself
 * just before the commit (getrusage of itself and its children), so the
 * artifact is written once, atomically, with its final metadata.
 */
#include "sched.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>

/* The view one input binding gives of its artifact: the parts it sees and
 * the names it sees them under. */
typedef struct in_view {
    int n;
    int *part;              /* index into the artifact's parts */
    const char **vis;       /* visible name (points into the part name) */
} in_view;

typedef struct metric {
    char *name;
    char *json;             /* the value as JSON text */
} metric;

struct flow_out_stream {
    flow_ctx *c;
    int open;
    int part;               /* the writer's part index */
    char name[512];
};

struct flow_in_stream {
    store_reader *r;
    flow_ctx *c;
};

struct worker_state {
    const worker_spec *spec;
    int msg_fd;
    in_view **views;        /* [port][ref] */
    const char ***in_names; /* [port][ref], made on demand */
    metric *m; int nm;
    /* part names written, for uniqueness: open addressing on their hash
     * (a source node writes one part per file, 500k of them) */
    char **outs; size_t nouts, capouts;
    struct flow_out_stream streams[STORE_MAX_OPEN_PARTS];   /* open output streams */
    int out_failed;         /* a store write failed: the node fails */
    double start;
    double run_s;           /* time inside the stage's run function */
};

double sched_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- messages ---------------------------------------------------------- */

void wmsg_send(int fd, int type, const void *data, size_t len)
{
    if (fd < 0) return;
    const char *p = data;
    do {
        size_t n = len > WMSG_MAX - WMSG_HDR ? WMSG_MAX - WMSG_HDR : len;
        unsigned char frame[WMSG_MAX];
        frame[0] = (unsigned char)type;
        frame[1] = (unsigned char)(n & 0xff);
        frame[2] = (unsigned char)((n >> 8) & 0xff);
        frame[3] = (unsigned char)((n >> 16) & 0xff);
        frame[4] = (unsigned char)((n >> 24) & 0xff);
        if (n) memcpy(frame + WMSG_HDR, p, n);
        size_t tot = n + WMSG_HDR, off = 0;
        while (off < tot) {
            ssize_t w = write(fd, frame + off, tot - off);
            if (w < 0) {
                if (errno == EINTR) continue;
                return;     /* parent gone: nothing to tell */
            }
            off += (size_t)w;
        }
        p += n;
        len -= n;
    } while (len > 0);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

/* ---- failing ----------------------------------------------------------- */

static int ctx_vfail(flow_ctx *c, int code, const char *fmt, va_list ap)
{
    char msg[sizeof c->err.msg];
    vsnprintf(msg, sizeof msg, fmt, ap);
    const char *name = c->g ? c->g->nodes[c->node].name : "?";
    /* keep the first failure: later ones are usually consequences */
    if (c->err.code == 0) {
        flow_buf b;
        buf_init(&b);
        buf_printf(&b, "node '%s': %s", name, msg);
        size_t n = b.len < sizeof c->err.msg - 1 ? b.len : sizeof c->err.msg - 1;
        memcpy(c->err.msg, b.data, n);
        c->err.msg[n] = 0;
        buf_release(&b);
        c->err.code = code ? code : FLOW_E_STAGE;
    }
    return code ? code : FLOW_E_STAGE;
}

static int ctx_fail(flow_ctx *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int ctx_fail(flow_ctx *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = ctx_vfail(c, code, fmt, ap);
    va_end(ap);
    return rc;
}

int flow_ctx_fail(flow_ctx *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = ctx_vfail(c, code, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- node info, resources ---------------------------------------------- */

int flow_threads(flow_ctx *c) { return c->threads > 0 ? c->threads : 1; }
int flow_gpu_count(flow_ctx *c) { return c->ngpus; }

int flow_workers(flow_ctx *c)
{
    int k = c->g ? c->g->nodes[c->node].workers : 0;
    return k > 0 ? k : 1;
}

int flow_zero(flow_ctx *c)
{
    return c->g ? c->g->nodes[c->node].zero : 0;
}

void flow_node_key_hex(flow_ctx *c, char hex[33]) { flow_hash_hex(&c->key, hex); }

size_t flow_memory_budget(flow_ctx *c)
{
    const graph_node *nd = &c->g->nodes[c->node];
    if (!nd->stage->res.memory_mb)
        FLOW_BUG("stage '%s' asks for a memory budget but declares none", nd->stage->name);
    return (size_t)(nd->memory_mb ? nd->memory_mb : nd->stage->res.memory_mb) << 20;
}

int flow_gpu_id(flow_ctx *c, int i)
{
    if (i < 0 || i >= c->ngpus)
        FLOW_BUG("node '%s': flow_gpu_id(%d) but %d GPUs granted",
                 flow_node_name(c), i, c->ngpus);
    return c->gpu_ids[i];
}

/* ---- inputs ------------------------------------------------------------ */

static int port_index(flow_ctx *c, const char *port)
{
    const flow_stage *st = c->g->nodes[c->node].stage;
    for (int i = 0; i < st->ninputs; i++)
        if (strcmp(st->inputs[i].name, port) == 0) return i;
    FLOW_BUG("stage '%s' has no input port '%s'", st->name, port);
}

int flow_in_count(flow_ctx *c, const char *port)
{
    int p = port_index(c, port);
    return c->g->nodes[c->node].inputs[p].nrefs;
}

const char *flow_in_name(flow_ctx *c, const char *port, int idx)
{
    int p = port_index(c, port);
    const graph_binding *bd = &c->g->nodes[c->node].inputs[p];
    if (!c->ws || idx < 0 || idx >= bd->nrefs)
        FLOW_BUG("node '%s': input '%s'[%d] does not exist (%d bound)", flow_node_name(c),
                 port, idx, bd->nrefs);
    const char **names = c->ws->in_names[p];
    if (!names[idx]) {
        const graph_ref *r = &bd->refs[idx];
        flow_buf b;
        buf_init(&b);
        buf_adds(&b, c->g->nodes[r->node].name);
        if (r->output) buf_printf(&b, ".%s", r->output);
        names[idx] = buf_detach(&b, NULL);
    }
    return names[idx];
}

int flow_in_ref(flow_ctx *c, const char *port, int idx, char *out, size_t cap)
{
    int p = port_index(c, port);
    const graph_binding *bd = &c->g->nodes[c->node].inputs[p];
    if (idx < 0 || idx >= bd->nrefs)
        FLOW_BUG("node '%s': input '%s'[%d] does not exist (%d bound)", flow_node_name(c),
                 port, idx, bd->nrefs);
    const graph_ref *r = &bd->refs[idx];
    const char *node = c->g->nodes[r->node].name;
    return r->output ? snprintf(out, cap, "%s.%s", node, r->output) : snprintf(out, cap, "%s", node);
}

static const in_view *view_of(flow_ctx *c, const char *port, int idx)
{
    int p = port_index(c, port);
    if (!c->ws || idx < 0 || idx >= c->g->nodes[c->node].inputs[p].nrefs)
        FLOW_BUG("node '%s': input '%s'[%d] does not exist (%d bound)",
                 flow_node_name(c), port, idx, c->g->nodes[c->node].inputs[p].nrefs);
    return &c->ws->views[p][idx];
}

static const store_artifact *art_of(flow_ctx *c, const char *port, int idx)
{
    return c->in_art[port_index(c, port)][idx];
}

int flow_in_nparts(flow_ctx *c, const char *port, int idx)
{
    return view_of(c, port, idx)->n;
}

const char *flow_in_part_name(flow_ctx *c, const char *port, int idx, int part)
{
    const in_view *v = view_of(c, port, idx);
    if (part < 0 || part >= v->n)
        FLOW_BUG("node '%s': input '%s'[%d] part %d of %d", flow_node_name(c), port,
                 idx, part, v->n);
    return v->vis[part];
}

/* The artifact part index a visible name refers to, or -1.  Binary search:
 * a view's visible names are sorted (see load_inputs). */
static int find_part(flow_ctx *c, const char *port, int idx, const char *name)
{
    const in_view *v = view_of(c, port, idx);
    int lo = 0, hi = v->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int cmp = strcmp(v->vis[mid], name);
        if (cmp == 0) return v->part[mid];
        if (cmp < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* The artifact part index of visible part number `part`. */
static int part_at(flow_ctx *c, const char *port, int idx, int part)
{
    const in_view *v = view_of(c, port, idx);
    if (part < 0 || part >= v->n)
        FLOW_BUG("node '%s': input '%s'[%d] part %d of %d", flow_node_name(c), port,
                 idx, part, v->n);
    return v->part[part];
}

int flow_in_has(flow_ctx *c, const char *port, int idx, const char *part)
{
    return find_part(c, port, idx, part) >= 0;
}

uint64_t flow_in_part_size(flow_ctx *c, const char *port, int idx, const char *part)
{
    int k = find_part(c, port, idx, part);
    return k < 0 ? 0 : art_of(c, port, idx)->parts[k].size;
}

static int missing_part(flow_ctx *c, const char *port, int idx, const char *part)
{
    const graph_ref *r = &c->g->nodes[c->node].inputs[port_index(c, port)].refs[idx];
    const in_view *v = view_of(c, port, idx);
    flow_buf names;
    buf_init(&names);
    for (int i = 0; i < v->n && names.len < 300; i++)
        buf_printf(&names, "%s'%s'", i ? ", " : "", v->vis[i]);
    int rc = ctx_fail(c, FLOW_E_NOTFOUND,
                      "input '%s' (from '%s%s%s') has no part '%s' (it has %d: %s)",
                      port, c->g->nodes[r->node].name, r->output ? "." : "",
                      r->output ? r->output : "", part, v->n, names.len ? names.data : "none");
    buf_release(&names);
    return rc;
}

static int read_at(flow_ctx *c, const char *port, int idx, int k, const char *part,
                   char **data, size_t *len)
{
    flow_err e = {0};
    int rc = store_handle_read(c->in_h[port_index(c, port)][idx], k, data, len, &e);
    if (rc) return ctx_fail(c, rc, "reading input '%s' part '%s': %s", port, part, e.msg);
    return 0;
}

static int open_at(flow_ctx *c, const char *port, int idx, int k, const char *part,
                   flow_in_stream **out)
{
    flow_err e = {0};
    store_reader *r;
    int rc = store_handle_reader(c->in_h[port_index(c, port)][idx], k, &r, &e);
    if (rc) return ctx_fail(c, rc, "opening input '%s' part '%s': %s", port, part, e.msg);
    flow_in_stream *s = xcalloc(1, sizeof *s);
    s->r = r;
    s->c = c;
    *out = s;
    return 0;
}

int flow_in_read(flow_ctx *c, const char *port, int idx, const char *part,
                 char **data, size_t *len)
{
    int k = find_part(c, port, idx, part);
    if (k < 0) return missing_part(c, port, idx, part);
    return read_at(c, port, idx, k, part, data, len);
}

int flow_in_read_at(flow_ctx *c, const char *port, int idx, int part, char **data, size_t *len)
{
    return read_at(c, port, idx, part_at(c, port, idx, part),
                   flow_in_part_name(c, port, idx, part), data, len);
}

int flow_in_open(flow_ctx *c, const char *port, int idx, const char *part,
                 flow_in_stream **out)
{
    int k = find_part(c, port, idx, part);
    if (k < 0) return missing_part(c, port, idx, part);
    return open_at(c, port, idx, k, part, out);
}

int flow_in_open_at(flow_ctx *c, const char *port, int idx, int part, flow_in_stream **out)
{
    return open_at(c, port, idx, part_at(c, port, idx, part),
                   flow_in_part_name(c, port, idx, part), out);
}

uint64_t flow_in_part_size_at(flow_ctx *c, const char *port, int idx, int part)
{
    return art_of(c, port, idx)->parts[part_at(c, port, idx, part)].size;
}

long long flow_in_stream_read(flow_in_stream *s, void *buf, size_t cap)
{
    flow_err e = {0};
    long long n = store_reader_read(s->r, buf, cap, &e);
    if (n < 0) return ctx_fail(s->c, (int)n, "reading input: %s", e.msg);
    return n;
}

void flow_in_stream_close(flow_in_stream *s)
{
    if (!s) return;
    store_reader_free(s->r);
    free(s);
}

const char *flow_in_meta(flow_ctx *c, const char *port, int idx)
{
    view_of(c, port, idx);  /* bounds check */
    return art_of(c, port, idx)->meta_json;
}

/* ---- outputs ----------------------------------------------------------- */

static size_t outs_slot(char *const *outs, size_t cap, const char *name)
{
    flow_hash h = flow_hash_bytes(name, strlen(name));
    uint64_t v;
    memcpy(&v, h.b + 8, 8);
    size_t i = (size_t)v & (cap - 1);
    while (outs[i] && strcmp(outs[i], name) != 0) i = (i + 1) & (cap - 1);
    return i;
}

static int outs_has(const struct worker_state *ws, const char *name)
{
    return ws->capouts && ws->outs[outs_slot(ws->outs, ws->capouts, name)];
}

static void outs_add(struct worker_state *ws, char *name)
{
    if (2 * (ws->nouts + 1) > ws->capouts) {
        size_t cap = ws->capouts ? 2 * ws->capouts : 64;
        char **t = xcalloc(cap, sizeof *t);
        for (size_t i = 0; i < ws->capouts; i++)
            if (ws->outs[i]) t[outs_slot(t, cap, ws->outs[i])] = ws->outs[i];
        free(ws->outs);
        ws->outs = t;
        ws->capouts = cap;
    }
    ws->outs[outs_slot(ws->outs, ws->capouts, name)] = name;
    ws->nouts++;
}

static int check_part_name(flow_ctx *c, const char *part)
{
    const flow_stage *st = c->g->nodes[c->node].stage;
    size_t n = strlen(part);
    if (n == 0 || n > 400 || part[0] == '/' || part[n - 1] == '/' || strstr(part, "//") ||
        strcmp(part, "..") == 0 || strncmp(part, "../", 3) == 0 || strstr(part, "/../") ||
        (n >= 3 && strcmp(part + n - 3, "/..") == 0) || strcmp(part, ".") == 0 ||
        strncmp(part, "./", 2) == 0 || strstr(part, "/./"))
        return ctx_fail(c, FLOW_E_STAGE, "bad output part name '%s' (need a relative "
                        "path without '.', '..' or empty components)", part);
    if (st->noutputs > 0) {
        int ok = 0;
        for (int i = 0; i < st->noutputs && !ok; i++) {
            size_t k = strlen(st->outputs[i].name);
            ok = strncmp(part, st->outputs[i].name, k) == 0 && (part[k] == 0 || part[k] == '/');
        }
        if (!ok)
            return ctx_fail(c, FLOW_E_STAGE, "output part '%s' is under none of the "
                            "outputs stage '%s' declares", part, st->name);
    }
    struct worker_state *ws = c->ws;
    if (outs_has(ws, part))
        return ctx_fail(c, FLOW_E_STAGE, "output part '%s' written twice", part);
    outs_add(ws, xstrdup(part));
    return 0;
}

static int out_err(flow_ctx *c, int rc, const char *part, const flow_err *e)
{
    c->ws->out_failed = 1;
    return ctx_fail(c, rc, "writing output part '%s': %s", part, e->msg);
}

int flow_out_write(flow_ctx *c, const char *part, int kind, const void *data, size_t len)
{
    if (!c->ws) FLOW_BUG("flow_out_write outside a worker");
    int rc = check_part_name(c, part);
    if (rc) return rc;
    flow_err e = {0};
    if ((rc = store_part_begin(c->writer, part, kind, &e)) ||
        (len && (rc = store_part_write(c->writer, data, len, &e))) ||
        (rc = store_part_end(c->writer, &e)))
        return out_err(c, rc, part, &e);
    return 0;
}

int flow_out_open(flow_ctx *c, const char *part, int kind, flow_out_stream **out)
{
    if (!c->ws) FLOW_BUG("flow_out_open outside a worker");
    struct worker_state *ws = c->ws;
    flow_out_stream *st = NULL;
    for (int i = 0; i < STORE_MAX_OPEN_PARTS && !st; i++)
        if (!ws->streams[i].open) st = &ws->streams[i];
    if (!st)
        return ctx_fail(c, FLOW_E_STAGE, "output part '%s' opened while %d streams are open "
                        "(at most %d at once)", part, STORE_MAX_OPEN_PARTS, STORE_MAX_OPEN_PARTS);
    int rc = check_part_name(c, part);
    if (rc) return rc;
    flow_err e = {0};
    if ((rc = store_part_open(c->writer, part, kind, &st->part, &e))) return out_err(c, rc, part, &e);
    st->c = c;
    st->open = 1;
    snprintf(st->name, sizeof st->name, "%s", part);
    *out = st;
    return 0;
}

int flow_out_stream_write(flow_out_stream *s, const void *data, size_t len)
{
    if (!s->open) FLOW_BUG("write to a closed output stream");
    if (!len) return 0;
    flow_err e = {0};
    int rc = store_part_append(s->c->writer, s->part, data, len, &e);
    return rc ? out_err(s->c, rc, s->name, &e) : 0;
}

int flow_out_stream_patch(flow_out_stream *s, uint64_t offset, const void *data, size_t len)
{
    if (!s->open) FLOW_BUG("patch of a closed output stream");
    flow_err e = {0};
    int rc = store_part_patch(s->c->writer, s->part, offset, data, len, &e);
    return rc ? out_err(s->c, rc, s->name, &e) : 0;
}

int flow_out_stream_close(flow_out_stream *s)
{
    if (!s->open) FLOW_BUG("output stream closed twice");
    s->open = 0;
    flow_err e = {0};
    int rc = store_part_close(s->c->writer, s->part, &e);
    return rc ? out_err(s->c, rc, s->name, &e) : 0;
}

/* ---- log, metrics, report, progress ------------------------------------ */

void flow_log(flow_ctx *c, const char *fmt, ...)
{
    size_t at = c->log.len;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&c->log, fmt, ap);
    va_end(ap);
    if (c->log.len == at || c->log.data[c->log.len - 1] != '\n') buf_addc(&c->log, '\n');
    /* the worker's stderr is the pipe to the scheduler: the parent keeps the
     * tail (for failures, even after a crash) and echoes it with -v */
    if (c->ws) write_all(2, c->log.data + at, c->log.len - at);
}

static void metric_set(flow_ctx *c, const char *name, const char *json)
{
    struct worker_state *ws = c->ws;
    if (!ws) return;
    for (int i = 0; i < ws->nm; i++)
        if (strcmp(ws->m[i].name, name) == 0) {
            free(ws->m[i].json);
            ws->m[i].json = xstrdup(json);
            return;
        }
    ws->m = xrealloc(ws->m, (size_t)(ws->nm + 1) * sizeof *ws->m);
    ws->m[ws->nm].name = xstrdup(name);
    ws->m[ws->nm].json = xstrdup(json);
    ws->nm++;
}

void flow_metric(flow_ctx *c, const char *name, double value)
{
    flow_buf b;
    buf_init(&b);
    buf_json_num(&b, value);
    metric_set(c, name, b.data);
    buf_release(&b);
}

void flow_metric_str(flow_ctx *c, const char *name, const char *value)
{
    flow_buf b;
    buf_init(&b);
    buf_json_str(&b, value, strlen(value));
    metric_set(c, name, b.data);
    buf_release(&b);
}

void flow_report(flow_ctx *c, const char *text)
{
    buf_adds(&c->report, text);
    if (c->report.len && c->report.data[c->report.len - 1] != '\n') buf_addc(&c->report, '\n');
}

void flow_progress(flow_ctx *c, double fraction, const char *fmt, ...)
{
    if (c->progress_fd < 0) return;
    double now = sched_now();
    /* forward at most 10 per second, but always the end */
    if (now - c->last_progress < 0.1 && fraction < 1.0) return;
    c->last_progress = now;
    char msg[512];
    int n = snprintf(msg, sizeof msg, "%.6f ", fraction < 0 ? -1.0 : fraction > 1 ? 1.0 : fraction);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t' || *p == 033) *p = ' ';
    wmsg_send(c->progress_fd, WMSG_PROGRESS, msg, strlen(msg));
}

/* ---- checkpoints -------------------------------------------- */

int flow_checkpoint_save(flow_ctx *c, const void *data, size_t len)
{
    flow_err e = {0};
    int rc = store_checkpoint_put(c->store, &c->key, data, len, &e);
    return rc ? ctx_fail(c, rc, "saving checkpoint (%zu bytes): %s", len, e.msg) : 0;
}

int flow_checkpoint_load(flow_ctx *c, char **data, size_t *len)
{
    flow_err e = {0};
    int rc = store_checkpoint_get(c->store, &c->key, data, len, &e);
    if (rc == FLOW_E_NOTFOUND) return rc;
    return rc ? ctx_fail(c, rc, "loading checkpoint: %s", e.msg) : 0;
}

/* ---- the child ---------------------------------------------------------- */

static void param_json(flow_buf *b, const graph_value *v)
{
    switch (v->type) {
    case FLOW_P_INT: buf_printf(b, "%lld", (long long)v->i); break;
    case FLOW_P_FLOAT: buf_json_num(b, v->f); break;
    case FLOW_P_BOOL: buf_adds(b, v->i ? "true" : "false"); break;
    case FLOW_P_STRING:
    case FLOW_P_PATH: buf_json_str(b, v->s ? v->s : "", v->s ? strlen(v->s) : 0); break;
    case FLOW_P_LIST:
        buf_addc(b, '[');
        for (int i = 0; i < v->nitems; i++) {
            if (i) buf_addc(b, ',');
            param_json(b, &v->items[i]);
        }
        buf_addc(b, ']');
        break;
    }
}

static void json_s(flow_buf *b, const char *s) { buf_json_str(b, s, strlen(s)); }

static void metrics_json(const struct worker_state *ws, flow_buf *b)
{
    buf_addc(b, '{');
    for (int i = 0; i < ws->nm; i++) {
        if (i) buf_addc(b, ',');
        json_s(b, ws->m[i].name);
        buf_addc(b, ':');
        buf_adds(b, ws->m[i].json);
    }
    buf_addc(b, '}');
}

/* The artifact metadata (see the brief in sched.h's users: flow show / why
 * / status read these fields). */
static void meta_json(flow_ctx *c, const worker_spec *sp, double end, double cpu_s,
                      long rss_kb, flow_buf *b)
{
    const graph_node *n = &c->g->nodes[c->node];
    const flow_stage *st = n->stage;
    char hex[33], host[256] = "";
    flow_hash_hex(&c->key, hex);
    gethostname(host, sizeof host - 1);
    buf_adds(b, "{\"node\":");
    json_s(b, n->name);
    buf_adds(b, ",\"stage\":");
    json_s(b, st->name);
    buf_printf(b, ",\"version\":%d,\"graph\":", st->version);
    json_s(b, c->g->path ? c->g->path : "");
    buf_adds(b, ",\"graph_id\":");
    json_s(b, c->g->id ? c->g->id : "");
    buf_printf(b, ",\"key\":\"%s\",\"params\":{", hex);
    for (int i = 0; i < st->nparams; i++) {
        if (i) buf_addc(b, ',');
        json_s(b, st->params[i].name);
        buf_addc(b, ':');
        param_json(b, &n->params[i]);
    }
    buf_adds(b, "},\"inputs\":{");
    for (int p = 0; p < st->ninputs; p++) {
        if (p) buf_addc(b, ',');
        json_s(b, st->inputs[p].name);
        buf_adds(b, ":[");
        for (int r = 0; r < n->inputs[p].nrefs; r++) {
            const graph_ref *ref = &n->inputs[p].refs[r];
            flow_hash h;
            char ch[33] = "";
            if (ref_content(c->in_art[p][r], ref->output, &h) == 0) flow_hash_hex(&h, ch);
            buf_adds(b, r ? ",{\"node\":" : "{\"node\":");
            json_s(b, c->g->nodes[ref->node].name);
            buf_adds(b, ",\"output\":");
            if (ref->output) json_s(b, ref->output);
            else buf_adds(b, "null");
            buf_printf(b, ",\"content\":\"%s\"}", ch);
        }
        buf_addc(b, ']');
    }
    buf_adds(b, "},\"key_desc\":");
    json_s(b, sp->key_desc ? sp->key_desc : "");
    buf_printf(b, ",\"start\":%.3f,\"end\":%.3f,\"duration_s\":%.6f,\"run_s\":%.6f,"
               "\"cpu_s\":%.6f,\"peak_rss_kb\":%ld,\"threads\":%d,\"host\":",
               c->ws->start, end, end - c->ws->start, c->ws->run_s, cpu_s, rss_kb, c->threads);
    json_s(b, host);
    buf_adds(b, ",\"metrics\":");
    metrics_json(c->ws, b);
    buf_adds(b, ",\"report\":");
    buf_json_str(b, c->report.data ? c->report.data : "", c->report.len);
    buf_adds(b, ",\"gpus\":[");
    for (int i = 0; i < c->ngpus; i++) buf_printf(b, i ? ",%d" : "%d", c->gpu_ids[i]);
    buf_adds(b, "]}");
}

typedef struct usage {
    double cpu_s;           /* user + system of the worker and its children */
} usage;

static void usage_now(usage *u)
{
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    u->cpu_s = self.ru_utime.tv_sec + self.ru_utime.tv_usec * 1e-6 + self.ru_stime.tv_sec +
               self.ru_stime.tv_usec * 1e-6 + kids.ru_utime.tv_sec + kids.ru_utime.tv_usec * 1e-6 +
               kids.ru_stime.tv_sec + kids.ru_stime.tv_usec * 1e-6;
}

/* Peak RSS since the last reset: VmHWM, which writing "5" to clear_refs
 * resets (so a reused worker measures each node on its own); falls back
 * to the process-lifetime ru_maxrss. */
static void hwm_reset(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;
    if (write(fd, "5", 1) < 0) {}
    close(fd);
}

static long peak_rss_kb(void)
{
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "re");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "VmHWM:", 6) == 0) { kb = strtol(line + 6, NULL, 10); break; }
        fclose(f);
    }
    struct rusage kids;
    getrusage(RUSAGE_CHILDREN, &kids);
    if (kb < 0) {
        struct rusage self;
        getrusage(RUSAGE_SELF, &self);
        kb = self.ru_maxrss;
    }
    return kids.ru_maxrss > kb ? kids.ru_maxrss : kb;
}

static void __attribute__((noreturn)) child_fail(int msg_fd, const char *msg)
{
    fflush(stdout);
    wmsg_send(msg_fd, WMSG_ERROR, msg, strlen(msg));
    _exit(1);
}

/* A worker keeps serving nodes only after quick, successful, CPU-only runs
 * (where the fork it saves matters); after anything heavy it exits, so a
 * big heap, GPU context or thread pool never carries over. */
enum { REUSE_MAX_JOBS = 1000 };
#define REUSE_MAX_S 1.0
#define REUSE_MAX_RSS_KB (512L * 1024)

/* The parts of input artifact a that reference ref shows the stage, by
 * the names it sees ("" for the output itself, the rest below it; every
 * part without an output).  Kept sorted, so find_part can bisect. */
static void input_view(const graph_node *n, const graph_ref *ref, const store_artifact *a,
                       in_view *v)
{
    v->part = xcalloc((size_t)a->nparts + 1, sizeof *v->part);
    v->vis = xcalloc((size_t)a->nparts + 1, sizeof *v->vis);
    size_t ol = ref->output ? strlen(ref->output) : 0;
    for (int k = 0; k < a->nparts; k++) {
        const char *name = a->parts[k].name;
        if (!ref->output) {
            v->vis[v->n] = name;
        } else if (strncmp(name, ref->output, ol) == 0 && name[ol] == 0) {
            v->vis[v->n] = name + ol;           /* the output itself: "" */
        } else if (strncmp(name, ref->output, ol) == 0 && name[ol] == '/') {
            v->vis[v->n] = name + ol + 1;
        } else {
            continue;
        }
        /* the artifact's names are sorted and the view keeps a
         * sorted run of them minus a common prefix: still sorted,
         * so find_part can bisect */
        if (v->n && strcmp(v->vis[v->n - 1], v->vis[v->n]) >= 0)
            FLOW_BUG("input view of '%s' is not sorted at '%s'", n->name, name);
        v->part[v->n++] = k;
    }
}

/* Opens every input artifact of the node (once each) and its view; a
 * failure is sent as the node's error and the worker exits. */
static void open_inputs(const worker_spec *sp, flow_ctx *c, struct worker_state *ws, int msg_fd)
{
    const graph_node *n = &sp->g->nodes[sp->node];
    const flow_stage *st = n->stage;
    flow_err e = {0};
    char msg[sizeof e.msg + 128];
    c->in_h = xcalloc((size_t)st->ninputs + 1, sizeof *c->in_h);
    c->in_art = xcalloc((size_t)st->ninputs + 1, sizeof *c->in_art);
    ws->views = xcalloc((size_t)st->ninputs + 1, sizeof *ws->views);
    ws->in_names = xcalloc((size_t)st->ninputs + 1, sizeof *ws->in_names);
    for (int p = 0; p < st->ninputs; p++) {
        const graph_binding *bd = &n->inputs[p];
        c->in_h[p] = xcalloc((size_t)bd->nrefs + 1, sizeof **c->in_h);
        c->in_art[p] = xcalloc((size_t)bd->nrefs + 1, sizeof **c->in_art);
        ws->views[p] = xcalloc((size_t)bd->nrefs + 1, sizeof **ws->views);
        ws->in_names[p] = xcalloc((size_t)bd->nrefs + 1, sizeof **ws->in_names);
        for (int r = 0; r < bd->nrefs; r++) {
            const graph_ref *ref = &bd->refs[r];
            if (store_handle_open(c->store, &sp->keys[ref->node], &c->in_h[p][r], &e)) {
                snprintf(msg, sizeof msg, "node '%s': input '%s' from node '%s': %s",
                         n->name, st->inputs[p].name, sp->g->nodes[ref->node].name, e.msg);
                child_fail(msg_fd, msg);
            }
            const store_artifact *a = c->in_art[p][r] = store_handle_artifact(c->in_h[p][r]);
            input_view(n, ref, a, &ws->views[p][r]);
        }
    }
}

/* After the stage returned: an output stream left open or a swallowed
 * write error fails it too; a failure is sent and the worker exits. */
static void check_run(flow_ctx *c, struct worker_state *ws, const graph_node *n, int rc, int msg_fd)
{
    const flow_stage *st = n->stage;
    for (int i = 0; i < STORE_MAX_OPEN_PARTS && rc == 0; i++)
        if (ws->streams[i].open)
            rc = ctx_fail(c, FLOW_E_STAGE, "stage '%s' returned with output part '%s' still "
                          "open", st->name, ws->streams[i].name);
    if (rc == 0 && (ws->out_failed || c->err.code))
        rc = c->err.code ? c->err.code : FLOW_E_STAGE;   /* a swallowed write error */
    if (rc != 0) {
        if (c->err.code == 0)
            snprintf(c->err.msg, sizeof c->err.msg, "node '%s': stage '%s' failed (code %d) "
                     "without a message", n->name, st->name, rc);
        child_fail(msg_fd, c->err.msg);
    }
}

/* Frees what run_node built for the node (a failed node never gets here). */
static void node_state_release(flow_ctx *c, struct worker_state *ws, const graph_node *n)
{
    const flow_stage *st = n->stage;
    store_writer_free(c->writer);
    for (int p = 0; p < st->ninputs; p++) {
        for (int r = 0; r < n->inputs[p].nrefs; r++) {
            store_handle_free(c->in_h[p][r]);
            free(ws->views[p][r].part);
            free(ws->views[p][r].vis);
            free((char *)ws->in_names[p][r]);
        }
        free(c->in_art[p]);
        free(c->in_h[p]);
        free(ws->views[p]);
        free(ws->in_names[p]);
    }
    free(c->in_art);
    free(c->in_h);
    free(ws->views);
    free(ws->in_names);
    for (int i = 0; i < ws->nm; i++) {
        free(ws->m[i].name);
        free(ws->m[i].json);
    }
    free(ws->m);
    for (size_t i = 0; i < ws->capouts; i++) free(ws->outs[i]);
    free(ws->outs);
    buf_release(&c->log);
    buf_release(&c->metrics);
    buf_release(&c->report);
}

/* Runs one node with an open store.  On failure sends the error and exits;
 * on success sends M/R/D and returns whether this worker may be reused. */
static int run_node(const worker_spec *sp, flow_store *store, int msg_fd, int jobs_done)
{
    const graph_node *n = &sp->g->nodes[sp->node];
    const flow_stage *st = n->stage;
    struct worker_state ws = {0};
    ws.spec = sp;
    ws.msg_fd = msg_fd;
    ws.start = sched_now();
    usage u0;
    usage_now(&u0);
    hwm_reset();
    flow_ctx c = {0};
    c.g = sp->g;
    c.node = sp->node;
    c.key = sp->key;
    c.threads = sp->threads;
    c.gpu_ids = (int *)sp->gpu_ids;
    c.ngpus = sp->ngpus;
    c.progress_fd = msg_fd;
    c.store = store;
    c.ws = &ws;
    buf_init(&c.log);
    buf_init(&c.metrics);
    buf_init(&c.report);

    flow_err e = {0};
    char msg[sizeof e.msg + 128];
    open_inputs(sp, &c, &ws, msg_fd);
    if (store_writer_new(c.store, &c.writer, &e)) {
        snprintf(msg, sizeof msg, "node '%s': %s", n->name, e.msg);
        child_fail(msg_fd, msg);
    }

    double run0 = sched_now();
    int rc = st->run(&c);
    ws.run_s = sched_now() - run0;
    check_run(&c, &ws, n, rc, msg_fd);

    usage u1;
    usage_now(&u1);
    double cpu_s = u1.cpu_s - u0.cpu_s;
    long rss_kb = peak_rss_kb();
    double end = sched_now();
    flow_buf meta;
    buf_init(&meta);
    meta_json(&c, sp, end, cpu_s, rss_kb, &meta);
    if (store_writer_commit(c.writer, &c.key, meta.data, c.log.data ? c.log.data : "",
                            c.log.len, &e)) {
        snprintf(msg, sizeof msg, "node '%s': storing its artifact: %s", n->name, e.msg);
        child_fail(msg_fd, msg);
    }
    /* the artifact is there: the checkpoint has served its purpose */
    store_checkpoint_drop(c.store, &c.key, &e);
    if (flow_test_commit_hook) flow_test_commit_hook(c.store, &c.key, n->name);
    int reuse = end - ws.start < REUSE_MAX_S && c.ngpus == 0 && rss_kb < REUSE_MAX_RSS_KB &&
                jobs_done + 1 < REUSE_MAX_JOBS;
    flow_buf m;
    buf_init(&m);
    metrics_json(&ws, &m);
    wmsg_send(msg_fd, WMSG_METRICS, m.data, m.len);
    if (c.report.len) wmsg_send(msg_fd, WMSG_REPORT, c.report.data, c.report.len);
    fflush(stdout);
    char done[160];
    snprintf(done, sizeof done, "%.6f %.6f %ld %.6f %d", end - ws.start, cpu_s, rss_kb,
             ws.run_s, reuse);
    wmsg_send(msg_fd, WMSG_DONE, done, strlen(done));

    node_state_release(&c, &ws, n);
    buf_release(&meta);
    buf_release(&m);
    return reuse;
}

/* ---- jobs for a reused worker -------------------------------------------
 * [u32 len] then: i32 node, i32 threads, i32 ngpus, i32 gpu[ngpus],
 * key[16], i32 ndeps, (i32 dep, key[16]) x ndeps, desc (the rest). */

static void put32(flow_buf *b, int32_t v) { buf_add(b, &v, 4); }

int worker_send_job(int cmd_fd, const worker_spec *sp)
{
    const graph_node *n = &sp->g->nodes[sp->node];
    flow_buf b;
    buf_init(&b);
    put32(&b, 0);
    put32(&b, sp->node);
    put32(&b, sp->threads);
    put32(&b, sp->ngpus);
    for (int i = 0; i < sp->ngpus; i++) put32(&b, sp->gpu_ids[i]);
    buf_add(&b, sp->key.b, 16);
    put32(&b, n->ndeps);
    for (int d = 0; d < n->ndeps; d++) {
        put32(&b, n->deps[d]);
        buf_add(&b, sp->keys[n->deps[d]].b, 16);
    }
    if (sp->key_desc) buf_adds(&b, sp->key_desc);
    uint32_t len = (uint32_t)(b.len - 4);
    memcpy(b.data, &len, 4);
    size_t off = 0;
    int rc = 0;
    while (off < b.len) {
        ssize_t w = write(cmd_fd, b.data + off, b.len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) { rc = -1; break; }
        off += (size_t)w;
    }
    buf_release(&b);
    return rc;
}

static int read_full(int fd, void *p, size_t n)
{
    char *q = p;
    while (n > 0) {
        ssize_t r = read(fd, q, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        q += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Reads the next job into *sp (gpu ids, keys and desc into the buffers
 * given); -1 at the end (the scheduler closed the pipe). */
static int read_job(int cmd_fd, worker_spec *sp, flow_hash *keys, int *gpus, char **desc)
{
    uint32_t len;
    if (read_full(cmd_fd, &len, 4) != 0) return -1;
    char *p = xmalloc((size_t)len + 1), *q = p, *end = p + len;
    if (read_full(cmd_fd, p, len) != 0) { free(p); return -1; }
    int32_t v[3];
    memcpy(v, q, 12);
    q += 12;
    sp->node = v[0];
    sp->threads = v[1];
    sp->ngpus = v[2] < 64 ? v[2] : 64;
    for (int i = 0; i < v[2]; i++, q += 4)
        if (i < 64) memcpy(&gpus[i], q, 4);
    sp->gpu_ids = gpus;
    memcpy(sp->key.b, q, 16);
    q += 16;
    int32_t nd;
    memcpy(&nd, q, 4);
    q += 4;
    for (int d = 0; d < nd; d++, q += 20) {
        int32_t j;
        memcpy(&j, q, 4);
        if (j >= 0 && j < sp->g->n) memcpy(keys[j].b, q + 4, 16);
    }
    free(*desc);
    *desc = xmalloc((size_t)(end - q) + 1);
    memcpy(*desc, q, (size_t)(end - q));
    (*desc)[end - q] = 0;
    sp->key_desc = *desc;
    free(p);
    return 0;
}

/* The worker process: opens its own store, runs the first node, then more
 * nodes sent over cmd_fd for as long as reuse is allowed.  Never returns. */
static void __attribute__((noreturn)) worker_main(const worker_spec *first, int msg_fd,
                                                  int cmd_fd)
{
    flow_err e = {0};
    flow_store *store;
    if (store_open(&store, first->store_dir, first->store_opt, &e)) {
        char msg[sizeof e.msg + 128];
        snprintf(msg, sizeof msg, "node '%s': cannot open the cache: %s",
                 first->g->nodes[first->node].name, e.msg);
        child_fail(msg_fd, msg);
    }
    worker_spec sp = *first;
    flow_hash *keys = xcalloc((size_t)first->g->n + 1, sizeof *keys);
    memcpy(keys, first->keys, (size_t)first->g->n * sizeof *keys);
    sp.keys = keys;
    int gpus[64];
    char *desc = NULL;
    for (int jobs = 0;; jobs++) {
        if (!run_node(&sp, store, msg_fd, jobs)) break;
        if (read_job(cmd_fd, &sp, keys, gpus, &desc) != 0) break;
    }
    /* no store_close: the store is in STORE_SYNC_NONE mode and closing
     * would fsync; the scheduler syncs once at the end of the build.
     * _exit: no atexit handlers, no flushing of stdio buffers inherited
     * from the parent, no leak check of memory the process drops */
    fflush(stdout);
    _exit(0);
}

static int pipe_cloexec(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    return 0;
}

int worker_spawn(const worker_spec *sp, pid_t *pid, int *msg_fd, int *out_fd, int *cmd_fd,
                 flow_err *err)
{
    int mp[2], op[2], cp[2];
    const char *name = sp->g->nodes[sp->node].name;
    if (pipe_cloexec(mp) != 0)
        return flow_fail(err, FLOW_E_IO, "node '%s': cannot create a pipe: %s", name,
                         strerror(errno));
    if (pipe_cloexec(op) != 0 || pipe2(cp, O_CLOEXEC) != 0) {
        int er = errno;
        close(mp[0]);
        close(mp[1]);
        return flow_fail(err, FLOW_E_IO, "node '%s': cannot create a pipe: %s", name,
                         strerror(er));
    }
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t p = fork();
    if (p < 0) {
        int er = errno;
        close(mp[0]); close(mp[1]); close(op[0]); close(op[1]); close(cp[0]); close(cp[1]);
        return flow_fail(err, FLOW_E_IO, "node '%s': cannot fork a worker: %s", name,
                         strerror(er));
    }
    if (p == 0) {
        setpgid(0, 0);
        /* die with the scheduler: an orphaned worker could commit after
         * another build took over its lease */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGCHLD, &sa, NULL);
        sigaction(SIGPIPE, &sa, NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int i = 0; i < sp->nclose; i++) close(sp->close_fds[i]);
        close(mp[0]);
        close(op[0]);
        close(cp[1]);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, 0);
            if (devnull != 0) close(devnull);
        }
        dup2(op[1], 1);
        dup2(op[1], 2);
        close(op[1]);
        worker_main(sp, mp[1], cp[0]);
    }
    setpgid(p, p);  /* also here: whichever runs first wins the race */
    close(mp[1]);
    close(op[1]);
    close(cp[0]);
    *pid = p;
    *msg_fd = mp[0];
    *out_fd = op[0];
    *cmd_fd = cp[1];
    return 0;
}
