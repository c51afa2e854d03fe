/* key.c — node keys: XXH3-128 over a canonical, typed encoding.
 *
 * A node's key names its artifact in the cache.  It covers exactly what can
 * change the node's output and nothing else (not the node's name, not the
 * reserved settings gpus/device/threads/memory_mb/workers/zero, not
 * upstream keys):
 *
 *   "flowkey" 0x00, u32 encoding version (1)
 *   'S' str(stage name) u32(stage version)
 *   for each parameter, sorted by name (bytewise), defaults applied,
 *   except those the stage lists in not_in_key, and those it lists in
 *   key_unless_default whose value is the default (engine.h):
 *       'P' str(name) value
 *   'D' str(device)                only for a training node that asks for
 *                                  GPUs (a data-parallel stage with GPU code
 *                                  and gpus != 0): "cuda sm_XY x W", since
 *                                  the CUDA backend's bytes are not the
 *                                  CPU's, cuBLASLt picks its GEMM algorithms
 *                                  by the GPU architecture (compute
 *                                  capability X.Y, key_gpu_arch), and
 *                                  NCCL's sum over W GPUs is not one GPU's
 *                                  (W = gpus x the data-parallel processes
 *                                  of FLOW_DP_WORLD / OMPI_COMM_WORLD_SIZE /
 *                                  PMI_SIZE, kernels/dp.h).  CPU nodes'
 *                                  keys never hold a device.
 *   'B' str(platform)              only where this process's fp32 GEMM is
 *                                  not the one every other machine runs
 *                                  (key_set_platform: OpenBLAS's kernels
 *                                  could not be pinned to the AVX2 ones,
 *                                  kernels/cpu/blas.c), e.g. "openblas
 *                                  NEOVERSEN1": such a machine's bytes are
 *                                  kept apart, in every node's key, rather
 *                                  than stored under keys another machine
 *                                  fills differently.
 *   'E' 0x00                       no key_extra
 *   'E' 0x01 hash[16]              the stage's key_extra digest
 *   for each input port in stage declaration order:
 *       'I' str(port) u32(nrefs) then nrefs content hashes [16 each]
 *
 *   str   = u32 byte length, bytes
 *   value = type byte then:
 *       'i' INT     i64
 *       'f' FLOAT   f64 bits (-0.0 written as +0.0; ints given for a float
 *                   parameter are converted first, so 1 and 1.0 agree)
 *       's' STRING  str
 *       'b' BOOL    u8
 *       'p' PATH    str(path as written, lexically cleaned — not the
 *                   absolute path, so a moved checkout keeps its keys; the
 *                   file contents enter through key_extra)
 *       'l' LIST    u32(count) then count values
 *   all integers little-endian.
 *
 * Inputs enter by CONTENT hash (ref_content), never by upstream key: an
 * upstream node that reruns but produces identical bytes leaves its
 * dependents' keys unchanged (early cutoff).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

typedef struct enc {
    flow_hasher *h;
} enc;

static void put(enc *e, const void *p, size_t n) { flow_hasher_update(e->h, p, n); }

static void put_u32(enc *e, uint32_t v)
{
    uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
    put(e, b, 4);
}

static void put_u64(enc *e, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    put(e, b, 8);
}

static void put_str(enc *e, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    put_u32(e, (uint32_t)n);
    put(e, s, n);
}

static void put_value(enc *e, const graph_value *v)
{
    char t;
    switch (v->type) {
    case FLOW_P_INT: t = 'i'; put(e, &t, 1); put_u64(e, (uint64_t)v->i); break;
    case FLOW_P_FLOAT: {
        double f = v->f == 0 ? 0.0 : v->f;
        uint64_t bits;
        memcpy(&bits, &f, 8);
        t = 'f'; put(e, &t, 1); put_u64(e, bits);
        break;
    }
    case FLOW_P_STRING: t = 's'; put(e, &t, 1); put_str(e, v->s); break;
    case FLOW_P_BOOL: { t = 'b'; put(e, &t, 1); uint8_t b = v->i != 0; put(e, &b, 1); break; }
    case FLOW_P_PATH: t = 'p'; put(e, &t, 1); put_str(e, v->raw ? v->raw : v->s); break;
    case FLOW_P_LIST:
        t = 'l'; put(e, &t, 1);
        put_u32(e, (uint32_t)v->nitems);
        for (int i = 0; i < v->nitems; i++) put_value(e, &v->items[i]);
        break;
    }
}

/* Whether the space-separated list names the parameter. */
static int listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *w = list; w && (w = strstr(w, name)); w += n)
        if ((w == list || w[-1] == ' ') && (w[n] == 0 || w[n] == ' ')) return 1;
    return 0;
}

/* Whether v is parameter d's default (STRING, INT or BOOL: registry.c). */
static int at_default(const flow_param_def *d, const graph_value *v)
{
    ast_value dv;
    flow_err err;
    if (ast_parse_value(d->def, d->name, &dv, &err)) FLOW_BUG("bad default of '%s': %s", d->name, err.msg);
    int same = d->type == FLOW_P_STRING ? dv.s && v->s && strcmp(dv.s, v->s) == 0 : dv.i == v->i;
    ast_value_release(&dv);
    return same;
}

/* Whether parameter k of node nd enters the key: not named in the stage's
 * not_in_key, and not a key_unless_default one left at its default. */
static int param_in_key(const flow_stage *st, const graph_node *nd, int k)
{
    const char *name = st->params[k].name;
    if (listed(st->not_in_key, name)) return 0;
    return !listed(st->key_unless_default, name) || !at_default(&st->params[k], &nd->params[k]);
}

/* Parameter indices sorted by name (insertion sort: stages have few). */
static void sorted_params(const flow_stage *st, int *order)
{
    for (int i = 0; i < st->nparams; i++) {
        int j = i;
        while (j > 0 && strcmp(st->params[order[j - 1]].name, st->params[i].name) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
}

/* ---- the GPU architecture (the 'D' entry) ---------------------------------
 * Detected once per process, in the parent, without a CUDA context:
 * `nvidia-smi --query-gpu=compute_cap --format=csv,noheader` (driver 510
 * or newer) prints one "X.Y" per GPU.  Every GPU must have the same one
 * (a node's key holds one architecture, and the scheduler may grant any of
 * the devices).  key_gpu_arch_set overrides it (tests). */
static char gpu_arch[32];
static char gpu_arch_err[600];
static int gpu_arch_state;      /* 0 not asked, 1 known, -1 failed (gpu_arch_err) */

void key_gpu_arch_set(const char *arch)
{
    snprintf(gpu_arch, sizeof gpu_arch, "%s", arch);
    gpu_arch_state = 1;
}

static void detect_arch(void)
{
    FILE *f = popen("nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>&1", "r");
    if (!f) {
        snprintf(gpu_arch_err, sizeof gpu_arch_err, "nvidia-smi could not be started");
        gpu_arch_state = -1;
        return;
    }
    char line[256], first[256] = "";
    int n = 0, bad = 0;
    gpu_arch[0] = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!first[0]) snprintf(first, sizeof first, "%s", line);
        int major, minor;
        char tail;
        char arch[32];
        if (sscanf(line, " %d.%d %c", &major, &minor, &tail) != 2 || major < 1 || major > 99 || minor < 0 ||
            minor > 9) {
            bad = 1;
            continue;
        }
        snprintf(arch, sizeof arch, "sm_%d%d", major, minor);
        if (n++ == 0) {
            snprintf(gpu_arch, sizeof gpu_arch, "%s", arch);
        } else if (strcmp(arch, gpu_arch) != 0 && !bad) {
            snprintf(gpu_arch_err, sizeof gpu_arch_err, "this machine has GPUs of different architectures "
                     "(%s and %s); a node's key holds one, and flow hands out any of the GPUs: build on a "
                     "machine whose GPUs are all alike", gpu_arch, arch);
            bad = 2;
        }
    }
    int st = pclose(f);
    int code = st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    gpu_arch_state = -1;
    if (bad == 2) return;
    if (code == 127)
        snprintf(gpu_arch_err, sizeof gpu_arch_err, "nvidia-smi was not found on PATH");
    else if (code != 0 || bad || n == 0)
        snprintf(gpu_arch_err, sizeof gpu_arch_err, "`nvidia-smi --query-gpu=compute_cap` %s (exit %d%s%s); "
                 "it needs NVIDIA driver 510 or newer", n == 0 && !bad ? "listed no GPU" : "did not answer",
                 code, first[0] ? ": " : "", first);
    else
        gpu_arch_state = 1;
}

int key_gpu_arch(const char *node, char *arch, size_t len, flow_err *e)
{
    if (gpu_arch_state == 0) detect_arch();
    if (gpu_arch_state < 0)
        return flow_fail(e, FLOW_E_GRAPH, "node '%s' trains on a GPU, and its key holds the GPU architecture "
                         "(the CUDA backend's bytes depend on it), but %s", node, gpu_arch_err);
    snprintf(arch, len, "%s", gpu_arch);
    return 0;
}

/* 'B' (see the top): empty on every machine whose fp32 GEMM is the pinned one. */
static char platform[96];

void key_set_platform(const char *tag)
{
    snprintf(platform, sizeof platform, "%s", tag ? tag : "");
}

/* The processes training one node together (kernels/dp.h reads the same
 * variables in dp_group_from_env; a malformed one fails there). */
static int dp_world_env(void)
{
    const char *names[3] = { "FLOW_DP_WORLD", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE" };
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(names[i]);
        if (v && *v) {
            long w = strtol(v, NULL, 10);
            return w >= 1 && w <= 1 << 20 ? (int)w : 1;
        }
    }
    return 1;
}

static int is_gpu_training(const graph_node *nd)
{
    const flow_stage *st = nd->stage;
    return nd->gpus != 0 && st->res.gpu_capable && st->res.data_parallel;
}

/* The device a node's bytes depend on into buf, or NULL (see 'D' at the
 * top).  build.c never lets such a node fall back to the CPU (device =
 * auto), refuses gpus = all for it, and asks key_gpu_arch before anything
 * runs; "sm_?" only when nothing asked (unreachable through key_for_node). */
static const char *key_device(const graph_node *nd, char *buf, size_t len)
{
    if (!is_gpu_training(nd)) return NULL;
    char gpus[32];
    if (nd->gpus > 0) snprintf(gpus, sizeof gpus, "%ld", (long)nd->gpus * dp_world_env());
    else snprintf(gpus, sizeof gpus, "all");
    snprintf(buf, len, "cuda %s x %s", gpu_arch_state == 1 ? gpu_arch : "sm_?", gpus);
    return buf;
}

flow_hash node_key(const flow_graph *g, int node, const flow_hash *input_content,
                   const flow_hash *extra)
{
    const graph_node *nd = &g->nodes[node];
    const flow_stage *st = nd->stage;
    enc e = { flow_hasher_new() };
    put(&e, "flowkey", 8);
    put_u32(&e, 1);
    put(&e, "S", 1);
    put_str(&e, st->name);
    put_u32(&e, (uint32_t)st->version);
    int order_buf[64];
    int *order = st->nparams <= 64 ? order_buf : xmalloc((size_t)st->nparams * sizeof *order);
    sorted_params(st, order);
    for (int k = 0; k < st->nparams; k++) {
        if (!param_in_key(st, nd, order[k])) continue;
        put(&e, "P", 1);
        put_str(&e, st->params[order[k]].name);
        put_value(&e, &nd->params[order[k]]);
    }
    if (order != order_buf) free(order);
    char dev[96];
    if (key_device(nd, dev, sizeof dev)) {
        put(&e, "D", 1);
        put_str(&e, dev);
    }
    if (platform[0]) {
        put(&e, "B", 1);
        put_str(&e, platform);
    }
    if (extra) {
        put(&e, "E\1", 2);
        put(&e, extra->b, 16);
    } else {
        put(&e, "E\0", 2);
    }
    int flat = 0;
    for (int p = 0; p < st->ninputs; p++) {
        put(&e, "I", 1);
        put_str(&e, st->inputs[p].name);
        put_u32(&e, (uint32_t)nd->inputs[p].nrefs);
        for (int k = 0; k < nd->inputs[p].nrefs; k++) put(&e, input_content[flat++].b, 16);
    }
    flow_hash h = flow_hasher_digest(e.h);
    flow_hasher_free(e.h);
    return h;
}

/* Writes a value in graph-literal form (so it reads like the .graph). */
static void describe_value(flow_buf *b, const graph_value *v)
{
    switch (v->type) {
    case FLOW_P_INT: buf_printf(b, "%lld", (long long)v->i); break;
    case FLOW_P_FLOAT: buf_printf(b, "%.17g", v->f); break;
    case FLOW_P_STRING: buf_json_str(b, v->s, strlen(v->s)); break;
    case FLOW_P_BOOL: buf_adds(b, v->i ? "true" : "false"); break;
    case FLOW_P_PATH: {
        const char *p = v->raw ? v->raw : v->s;
        buf_json_str(b, p, strlen(p));
        break;
    }
    case FLOW_P_LIST:
        buf_addc(b, '[');
        for (int i = 0; i < v->nitems; i++) {
            if (i) buf_adds(b, ", ");
            describe_value(b, &v->items[i]);
        }
        buf_addc(b, ']');
        break;
    }
}

void node_key_describe(const flow_graph *g, int node, const flow_hash *input_content,
                       const flow_hash *extra, flow_buf *out)
{
    const graph_node *nd = &g->nodes[node];
    const flow_stage *st = nd->stage;
    char hex[33];
    buf_printf(out, "stage = %s\nversion = %d\n", st->name, st->version);
    int order_buf[64];
    int *order = st->nparams <= 64 ? order_buf : xmalloc((size_t)st->nparams * sizeof *order);
    sorted_params(st, order);
    for (int k = 0; k < st->nparams; k++) {
        if (!param_in_key(st, nd, order[k])) continue;
        buf_printf(out, "param.%s = ", st->params[order[k]].name);
        describe_value(out, &nd->params[order[k]]);
        buf_addc(out, '\n');
    }
    if (order != order_buf) free(order);
    char dev[96];
    if (key_device(nd, dev, sizeof dev)) buf_printf(out, "device = %s\n", dev);
    if (platform[0]) buf_printf(out, "platform = %s\n", platform);
    if (extra) {
        flow_hash_hex(extra, hex);
        buf_printf(out, "extra = %s\n", hex);
    } else {
        buf_adds(out, "extra = none\n");
    }
    int flat = 0;
    for (int p = 0; p < st->ninputs; p++) {
        const graph_binding *bd = &nd->inputs[p];
        if (bd->nrefs == 0) buf_printf(out, "input.%s = unbound\n", st->inputs[p].name);
        for (int k = 0; k < bd->nrefs; k++, flat++) {
            const graph_ref *r = &bd->refs[k];
            if (input_content && !flow_hash_is_zero(&input_content[flat])) {
                flow_hash_hex(&input_content[flat], hex);
                buf_printf(out, "input.%s[%d] = %s", st->inputs[p].name, k, hex);
            } else {
                buf_printf(out, "input.%s[%d] = ?", st->inputs[p].name, k);
            }
            buf_printf(out, "  # from %s%s%s\n", g->nodes[r->node].name, r->output ? "." : "",
                       r->output ? r->output : "");
        }
    }
}

static int cmp_part(const void *a, const void *b)
{
    const store_part_info *x = *(const store_part_info *const *)a;
    const store_part_info *y = *(const store_part_info *const *)b;
    return strcmp(x->name, y->name);
}

int ref_content(const store_artifact *a, const char *output, flow_hash *out)
{
    if (!output) { *out = a->content; return 0; }
    size_t ol = strlen(output);
    const store_part_info **sel = xmalloc((size_t)(a->nparts + 1) * sizeof *sel);
    int n = 0;
    for (int i = 0; i < a->nparts; i++) {
        const char *nm = a->parts[i].name;
        if (strncmp(nm, output, ol) == 0 && (nm[ol] == 0 || nm[ol] == '/')) sel[n++] = &a->parts[i];
    }
    if (n == 0) { free(sel); return FLOW_E_NOTFOUND; }
    qsort(sel, (size_t)n, sizeof *sel, cmp_part);
    enc e = { flow_hasher_new() };
    put(&e, "flowref", 8);
    put_u32(&e, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        const char *rel = sel[i]->name + ol + (sel[i]->name[ol] == '/');
        put_str(&e, rel);
        put(&e, sel[i]->content.b, 16);
    }
    *out = flow_hasher_digest(e.h);
    flow_hasher_free(e.h);
    free(sel);
    return 0;
}

void key_ctx_init(flow_ctx *ctx, const flow_graph *g, int node, flow_store *s)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->g = g;
    ctx->node = node;
    ctx->store = s;
    ctx->progress_fd = -1;
}

int flow_key_input_refs(flow_ctx *c, flow_hasher *h)
{
    const graph_node *nd = &c->g->nodes[c->node];
    for (int p = 0; p < nd->stage->ninputs; p++) {
        const graph_binding *bd = &nd->inputs[p];
        const char *port = nd->stage->inputs[p].name;
        uint32_t n = (uint32_t)bd->nrefs;
        flow_hasher_update(h, port, strlen(port) + 1);
        flow_hasher_update(h, &n, sizeof n);
        for (int i = 0; i < bd->nrefs; i++) {
            const graph_ref *r = &bd->refs[i];
            const char *node = c->g->nodes[r->node].name;
            /* "node" NUL "output" NUL: "a.b" and node "a.b" cannot collide */
            flow_hasher_update(h, node, strlen(node) + 1);
            flow_hasher_update(h, r->output ? r->output : "", r->output ? strlen(r->output) + 1 : 1);
        }
    }
    return 0;
}

int key_for_node(const flow_graph *g, flow_store *s, int node, const flow_hash *keys,
                 flow_hash *key, flow_buf *describe, flow_err *err)
{
    const graph_node *nd = &g->nodes[node];
    const flow_stage *st = nd->stage;
    char arch[32];
    if (is_gpu_training(nd)) {
        int rc = key_gpu_arch(nd->name, arch, sizeof arch, err);
        if (rc) return rc;
    }
    int total = 0;
    for (int p = 0; p < st->ninputs; p++) total += nd->inputs[p].nrefs;
    flow_hash *content = xcalloc((size_t)total + 1, sizeof *content);
    int flat = 0, rc = 0;
    for (int p = 0; p < st->ninputs && !rc; p++)
        for (int k = 0; k < nd->inputs[p].nrefs && !rc; k++, flat++) {
            const graph_ref *r = &nd->inputs[p].refs[k];
            store_artifact *a = NULL;
            char hex[33];
            flow_hash_hex(&keys[r->node], hex);
            /* a whole-artifact reference needs only its content hash: the
             * summary skips the parts (a source may have 500k of them) */
            rc = r->output ? store_get(s, &keys[r->node], &a, err)
                           : store_get_summary(s, &keys[r->node], &a, err);
            if (rc == FLOW_E_NOTFOUND) {
                rc = flow_fail(err, FLOW_E_NOTFOUND, "node '%s': upstream '%s' has no artifact %s "
                               "in the cache; build it first", nd->name, g->nodes[r->node].name, hex);
                break;
            }
            if (rc) break;
            rc = ref_content(a, r->output, &content[flat]);
            if (rc == FLOW_E_NOTFOUND)
                rc = flow_fail(err, FLOW_E_STAGE, "node '%s': upstream '%s' (artifact %s) has no "
                               "output '%s' (no part '%s' or '%s/...'); check its stage", nd->name,
                               g->nodes[r->node].name, hex, r->output, r->output, r->output);
            store_artifact_free(a);
        }
    flow_hash extra, *extrap = NULL;
    if (!rc && st->key_extra) {
        flow_ctx ctx;
        key_ctx_init(&ctx, g, node, s);
        flow_hasher *h = flow_hasher_new();
        rc = st->key_extra(&ctx, h);
        extra = flow_hasher_digest(h);
        flow_hasher_free(h);
        if (rc) {
            /* flow_ctx_fail names the node already; flow_file_hash does not */
            char prefix[300];
            snprintf(prefix, sizeof prefix, "node '%s': ", nd->name);
            const char *msg = ctx.err.msg[0] ? ctx.err.msg : "computing its key (key_extra) failed";
            rc = flow_fail(err, rc, "%s%s", strncmp(msg, prefix, strlen(prefix)) ? prefix : "", msg);
        }
        extrap = &extra;
    }
    if (!rc) {
        *key = node_key(g, node, content, extrap);
        if (describe) node_key_describe(g, node, content, extrap, describe);
    }
    free(content);
    return rc;
}
