/* graph.c — syntax tree + stage registry -> resolved flow_graph.
 *
 * Gives each entry of a block its meaning from the stage declaration:
 * an input port (node references), a parameter (typed, range- and
 * choice-checked, defaults applied) or a reserved node setting (gpus,
 * device, threads).  Then resolves references, rejects cycles and computes
 * a deterministic topological order (depth-first post-order, roots and
 * dependencies visited in file order).
 *
 * Every error names file:line:col (or the --set argument) and says what
 * was expected; on any error nothing is returned (never a partial graph).
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- small helpers ---------------------------------------------------- */

static int edit_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 64 || m > 64) return 1000;
    int d[65][65];
    for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[n][m];
}

/* Keeps the closest candidate to word in *best (if close enough). */
static void closest(const char *word, const char *cand, const char **best, int *bestd)
{
    int d = edit_distance(word, cand);
    int lim = (int)strlen(word) / 3 + 1;
    if (lim < 2) lim = 2;
    if (d <= lim && d < *bestd) { *best = cand; *bestd = d; }
}

/* Lexically cleans a path: removes "." and "x/.." pairs and double slashes. */
static char *path_clean(const char *p)
{
    size_t n = strlen(p);
    char *out = xmalloc(n + 2);
    int abs = p[0] == '/';
    size_t len = 0;
    /* segment start offsets in out, for popping */
    size_t *segs = xmalloc((n + 1) * sizeof *segs);
    int nseg = 0, nup = 0;   /* nup: leading ".." kept for relative paths */
    if (abs) out[len++] = '/';
    const char *s = p;
    while (*s) {
        while (*s == '/') s++;
        if (!*s) break;
        const char *e = s;
        while (*e && *e != '/') e++;
        size_t sl = (size_t)(e - s);
        if (sl == 1 && s[0] == '.') { s = e; continue; }
        if (sl == 2 && s[0] == '.' && s[1] == '.') {
            if (nseg > nup) {
                len = segs[--nseg];
                if (len > (size_t)abs && out[len - 1] == '/') len--;
                if (len == 0 && abs) len = 1;
                s = e;
                continue;
            }
            if (abs) { s = e; continue; }
            nup++;
        }
        if (len > (size_t)abs) out[len++] = '/';
        segs[nseg++] = len;
        memcpy(out + len, s, sl);
        len += sl;
        s = e;
    }
    if (len == 0) out[len++] = '.';
    out[len] = 0;
    free(segs);
    return out;
}

static const char *ptype_name(flow_ptype t)
{
    switch (t) {
    case FLOW_P_INT: return "integer";
    case FLOW_P_FLOAT: return "number";
    case FLOW_P_STRING: return "string";
    case FLOW_P_BOOL: return "true/false";
    case FLOW_P_LIST: return "list";
    case FLOW_P_PATH: return "path";
    }
    return "?";
}

static const char *ast_kind_name(ast_kind k)
{
    switch (k) {
    case AST_INT: return "an integer";
    case AST_FLOAT: return "a float";
    case AST_STRING: return "a string";
    case AST_WORD: return "a word";
    case AST_BOOL: return "true/false";
    case AST_LIST: return "a list";
    }
    return "?";
}

/* ---- name table (open addressing, for duplicate checks and lookups) --- */
typedef struct name_table {
    int *slot; size_t cap;  /* node index + 1, 0 = empty */
} name_table;

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int table_find(const name_table *t, char **names, const char *s)
{
    if (!t->cap) return -1;
    for (size_t i = name_hash(s) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (!t->slot[i]) return -1;
        if (strcmp(names[t->slot[i] - 1], s) == 0) return t->slot[i] - 1;
    }
}

static void table_add(name_table *t, const char *s, int idx)
{
    for (size_t i = name_hash(s) & (t->cap - 1);; i = (i + 1) & (t->cap - 1))
        if (!t->slot[i]) { t->slot[i] = idx + 1; return; }
}

/* ---- resolution context ----------------------------------------------- */
typedef struct resolver {
    const char *fname;      /* as the user gave it, for messages */
    flow_graph *g;
    ast_file ast;
    const flow_registry *reg;
    name_table names;
    char **node_names;
    flow_err *err;
} resolver;

static int fail_at(resolver *r, const ast_entry *e, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail_at(resolver *r, const ast_entry *e, int line, int col, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (e && e->set) {
        const char *eq = strchr(e->set, '=');
        int n = eq ? (int)(eq - e->set) : (int)strlen(e->set);
        return flow_fail(r->err, FLOW_E_GRAPH, "--set %.*s: error: %s", n, e->set, msg);
    }
    return flow_fail(r->err, FLOW_E_GRAPH, "%s:%d:%d: error: %s", r->fname, line, col, msg);
}

/* Converts one scalar (or list) value to type t for parameter d. */
/* An INT parameter may list its allowed values in choices ("4|8"). */
static int int_among(const char *choices, long long v)
{
    for (const char *c = choices; *c;) {
        char *end;
        long long x = strtoll(c, &end, 10);
        if (end != c && x == v) return 1;
        c = strchr(c, '|');
        if (!c) break;
        c++;
    }
    return 0;
}

static int convert(resolver *r, const ast_entry *e, const ast_value *v, const flow_param_def *d,
                   flow_ptype t, const char *node, graph_value *out)
{
    memset(out, 0, sizeof *out);
    out->type = t;
    out->line = v->line;
    out->col = v->col;
    if (t == FLOW_P_LIST) {
        const ast_value *items = v->kind == AST_LIST ? v->items : v;
        int n = v->kind == AST_LIST ? v->nitems : 1;
        out->items = xcalloc((size_t)(n ? n : 1), sizeof *out->items);
        for (int i = 0; i < n; i++) {
            int rc = convert(r, e, &items[i], d, d->elem == FLOW_P_LIST ? FLOW_P_STRING : d->elem,
                             node, &out->items[i]);
            out->nitems = i + (rc == 0);
            if (rc) return rc;
        }
        out->nitems = n;
        return 0;
    }
    if (v->kind == AST_LIST)
        return fail_at(r, e, v->line, v->col, "node '%s': parameter '%s' takes one %s, not a list",
                       node, d->name, ptype_name(t));
    int ranged = d->min <= d->max;
    switch (t) {
    case FLOW_P_INT:
        if (v->kind != AST_INT)
            return fail_at(r, e, v->line, v->col, "node '%s': parameter '%s' expects an integer, "
                           "got %s '%s'", node, d->name, ast_kind_name(v->kind), v->s);
        if (ranged && ((double)v->i < d->min || (double)v->i > d->max))
            return fail_at(r, e, v->line, v->col, "node '%s': %s = %lld is out of range; expected "
                           "%.17g..%.17g", node, d->name, (long long)v->i, d->min, d->max);
        if (d->choices && !int_among(d->choices, v->i))
            return fail_at(r, e, v->line, v->col, "node '%s': %s = %lld is not allowed; expected one of %s",
                           node, d->name, (long long)v->i, d->choices);
        out->i = v->i;
        return 0;
    case FLOW_P_FLOAT:
        if (v->kind != AST_INT && v->kind != AST_FLOAT)
            return fail_at(r, e, v->line, v->col, "node '%s': parameter '%s' expects a number, "
                           "got %s '%s'", node, d->name, ast_kind_name(v->kind), v->s);
        if (ranged && (v->f < d->min || v->f > d->max))
            return fail_at(r, e, v->line, v->col, "node '%s': %s = %s is out of range; expected "
                           "%.17g..%.17g", node, d->name, v->s, d->min, d->max);
        out->f = v->f;
        return 0;
    case FLOW_P_BOOL:
        if (v->kind != AST_BOOL)
            return fail_at(r, e, v->line, v->col, "node '%s': parameter '%s' expects true or false, "
                           "got %s '%s'", node, d->name, ast_kind_name(v->kind), v->s);
        out->i = v->i;
        return 0;
    case FLOW_P_STRING:
        if (v->kind == AST_INT || v->kind == AST_FLOAT)
            return fail_at(r, e, v->line, v->col, "node '%s': parameter '%s' expects a string, got "
                           "the number %s; quote it: \"%s\"", node, d->name, v->s, v->s);
        if (d->choices) {
            const char *c = d->choices, *best = NULL;
            int found = 0, bestd = 1000;
            size_t wl = strlen(v->s);
            char cand[256], bestbuf[256] = "";
            while (*c) {
                const char *bar = strchr(c, '|');
                size_t cl = bar ? (size_t)(bar - c) : strlen(c);
                if (cl == wl && memcmp(c, v->s, wl) == 0) found = 1;
                snprintf(cand, sizeof cand, "%.*s", (int)cl, c);
                const char *prev = best;
                closest(v->s, cand, &best, &bestd);
                if (best != prev) { snprintf(bestbuf, sizeof bestbuf, "%s", cand); best = bestbuf; }
                c += cl + (bar != NULL);
                if (!bar) break;
            }
            if (!found)
                return fail_at(r, e, v->line, v->col, "node '%s': '%s' is not a valid value for '%s'; "
                               "expected one of %s%s%s%s", node, v->s, d->name, d->choices,
                               best ? " (did you mean '" : "", best ? best : "", best ? "'?)" : "");
        }
        out->s = xstrdup(v->s);
        return 0;
    case FLOW_P_PATH: {
        if (v->kind != AST_STRING && v->kind != AST_WORD)
            return fail_at(r, e, v->line, v->col, "node '%s': parameter '%s' expects a path "
                           "(a \"string\"), got %s", node, d->name, ast_kind_name(v->kind));
        if (!v->s[0])
            return fail_at(r, e, v->line, v->col, "node '%s': parameter '%s' is an empty path",
                           node, d->name);
        out->raw = path_clean(v->s);
        if (v->s[0] == '/') {
            out->s = xstrdup(out->raw);
        } else {
            char *joined = xmalloc(strlen(r->g->dir) + strlen(v->s) + 2);
            sprintf(joined, "%s/%s", r->g->dir, v->s);
            out->s = path_clean(joined);
            free(joined);
        }
        return 0;
    }
    case FLOW_P_LIST:
        break;
    }
    FLOW_BUG("unhandled parameter type %d", (int)t);
}

static void value_release(graph_value *v)
{
    free(v->s);
    free(v->raw);
    for (int i = 0; i < v->nitems; i++) value_release(&v->items[i]);
    free(v->items);
}

/* Binds an input port from a value: a word or a list of words. */
static int bind_input(resolver *r, const ast_entry *e, const flow_input_def *in,
                      const char *node, graph_binding *b)
{
    const ast_value *v = &e->v;
    const ast_value *items = v->kind == AST_LIST ? v->items : v;
    int n = v->kind == AST_LIST ? v->nitems : 1;
    if (v->kind == AST_LIST && !in->many)
        return fail_at(r, e, v->line, v->col, "node '%s': input '%s' takes one node, not a list; "
                       "expected NODE or NODE.OUTPUT", node, in->name);
    if (n == 0 && !in->optional)
        return fail_at(r, e, v->line, v->col, "node '%s': input '%s' needs at least one node",
                       node, in->name);
    b->refs = xcalloc((size_t)(n ? n : 1), sizeof *b->refs);
    for (int i = 0; i < n; i++) {
        const ast_value *it = &items[i];
        if (it->kind != AST_WORD)
            return fail_at(r, e, it->line, it->col, "node '%s': input '%s' expects a node reference "
                           "(NODE or NODE.OUTPUT, unquoted), got %s '%s'", node, in->name,
                           ast_kind_name(it->kind), it->s);
        const char *dot = strchr(it->s, '.');
        if (dot && (strchr(dot + 1, '.') || dot == it->s || !dot[1]))
            return fail_at(r, e, it->line, it->col, "node '%s': '%s' is not a valid reference; "
                           "expected NODE or NODE.OUTPUT", node, it->s);
        char *name = dot ? xstrdup(it->s) : NULL;
        if (name) name[dot - it->s] = 0;
        const char *nm = name ? name : it->s;
        int idx = table_find(&r->names, r->node_names, nm);
        if (idx < 0) {
            const char *best = NULL;
            int bestd = 1000;
            for (int k = 0; k < r->g->n; k++) closest(nm, r->node_names[k], &best, &bestd);
            int rc = fail_at(r, e, it->line, it->col, "node '%s': input '%s' refers to undefined "
                             "node '%s'; expected the name of a node in this file%s%s%s", node,
                             in->name, nm, best ? " (did you mean '" : "", best ? best : "",
                             best ? "'?)" : "");
            free(name);
            return rc;
        }
        free(name);
        b->refs[i].node = idx;
        b->refs[i].line = it->line;
        b->refs[i].col = it->col;
        b->nrefs = i + 1;
        if (dot) {
            const flow_stage *st = r->g->nodes[idx].stage;
            const char *out = dot + 1;
            if (st && st->noutputs > 0) {
                int ok = 0;
                flow_buf list;
                buf_init(&list);
                for (int k = 0; k < st->noutputs; k++) {
                    if (strcmp(st->outputs[k].name, out) == 0) ok = 1;
                    buf_printf(&list, "%s%s", k ? ", " : "", st->outputs[k].name);
                }
                if (!ok) {
                    int rc = fail_at(r, e, it->line, it->col, "node '%s': '%s' (stage %s) has no "
                                     "output '%s'; its outputs are: %s", node, r->node_names[idx],
                                     st->name, out, list.data);
                    buf_release(&list);
                    return rc;
                }
                buf_release(&list);
            }
            b->refs[i].output = xstrdup(out);
        }
    }
    b->nrefs = n;
    return 0;
}

static int reserved(resolver *r, const ast_entry *e, graph_node *nd)
{
    const ast_value *v = &e->v;
    if (strcmp(e->key, "gpus") == 0) {
        if (v->kind == AST_WORD && strcmp(v->s, "all") == 0) { nd->gpus = -1; return 0; }
        if (v->kind == AST_INT && v->i >= 0 && v->i <= 1024) { nd->gpus = (int)v->i; return 0; }
        return fail_at(r, e, v->line, v->col, "node '%s': gpus = %s is invalid; expected a count "
                       "0..1024 or 'all'", nd->name, v->s ? v->s : "[...]");
    }
    if (strcmp(e->key, "device") == 0) {
        if (v->kind == AST_WORD || v->kind == AST_STRING) {
            if (strcmp(v->s, "auto") == 0) { nd->device_auto = 1; return 0; }
            if (strcmp(v->s, "cpu") == 0) { nd->gpus = 0; nd->device_auto = 1; return 0; }
            if (strcmp(v->s, "gpu") == 0) {
                nd->device_auto = 0;
                nd->device_gpu = 1;
                if (nd->gpus == 0) nd->gpus = 1;
                return 0;
            }
        }
        return fail_at(r, e, v->line, v->col, "node '%s': device = %s is invalid; expected one of "
                       "auto|cpu|gpu", nd->name, v->s ? v->s : "[...]");
    }
    if (strcmp(e->key, "threads") == 0) {
        if (v->kind == AST_INT && v->i >= 1 && v->i <= 4096) { nd->threads = (int)v->i; return 0; }
        return fail_at(r, e, v->line, v->col, "node '%s': threads = %s is invalid; expected an "
                       "integer 1..4096", nd->name, v->s ? v->s : "[...]");
    }
    if (strcmp(e->key, "workers") == 0) {
        if (!nd->stage->res.data_parallel)
            return fail_at(r, e, v->line, v->col, "node '%s': stage '%s' does not train with "
                           "data-parallel workers (workers is for pretrain and finetune); remove it",
                           nd->name, nd->stage->name);
        if (v->kind == AST_INT && v->i >= 1 && v->i <= 64) { nd->workers = (int)v->i; return 0; }
        return fail_at(r, e, v->line, v->col, "node '%s': workers = %s is invalid; expected an "
                       "integer 1..64", nd->name, v->s ? v->s : "[...]");
    }
    if (strcmp(e->key, "zero") == 0) {
        if (!nd->stage->res.data_parallel)
            return fail_at(r, e, v->line, v->col, "node '%s': stage '%s' does not train with "
                           "data-parallel workers (zero, the optimizer-state sharding, is for pretrain "
                           "and finetune); remove it", nd->name, nd->stage->name);
        if (v->kind == AST_INT && (v->i == 0 || v->i == 1)) { nd->zero = (int)v->i; return 0; }
        if (v->kind == AST_INT && (v->i == 2 || v->i == 3))
            return fail_at(r, e, v->line, v->col, "node '%s': zero = %lld is not implemented: only "
                           "ZeRO stage 1 (AdamW moments and the update sharded over the processes) "
                           "exists; use zero = 1", nd->name, (long long)v->i);
        return fail_at(r, e, v->line, v->col, "node '%s': zero = %s is invalid; expected 0 (every "
                       "process keeps the whole optimizer state) or 1 (ZeRO-1: each keeps its shard)",
                       nd->name, v->s ? v->s : "[...]");
    }
    if (strcmp(e->key, "memory_mb") == 0) {
        if (nd->stage->res.memory_mb == 0)
            return fail_at(r, e, v->line, v->col, "node '%s': stage '%s' takes no memory budget "
                           "(memory_mb is for the stages that stream: clean, encode, bpe); remove it",
                           nd->name, nd->stage->name);
        if (v->kind == AST_INT && v->i >= 1 && v->i <= (1 << 22)) { nd->memory_mb = (int)v->i; return 0; }
        return fail_at(r, e, v->line, v->col, "node '%s': memory_mb = %s is invalid; expected an "
                       "integer 1..4194304 (megabytes)", nd->name, v->s ? v->s : "[...]");
    }
    return 1;   /* not reserved */
}

static int is_reserved(const char *k)
{
    return !strcmp(k, "gpus") || !strcmp(k, "device") || !strcmp(k, "threads") ||
           !strcmp(k, "memory_mb") || !strcmp(k, "workers") || !strcmp(k, "zero");
}

static int param_index(const flow_stage *st, const char *name)
{
    for (int k = 0; k < st->nparams; k++)
        if (strcmp(st->params[k].name, name) == 0) return k;
    return -1;
}

static int input_index(const flow_stage *st, const char *name)
{
    for (int k = 0; k < st->ninputs; k++)
        if (strcmp(st->inputs[k].name, name) == 0) return k;
    return -1;
}

/* Does parameter k of node nd have the value written as literal text? */
static int param_is(resolver *r, const graph_node *nd, int k, const char *text)
{
    const flow_param_def *d = &nd->stage->params[k];
    ast_value av;
    flow_err perr;
    if (ast_parse_value(text, d->name, &av, &perr))
        FLOW_BUG("stage '%s': bad condition value '%s' for '%s'", nd->stage->name, text, d->name);
    graph_value want;
    ast_entry de = { .key = (char *)d->name, .v = av };
    flow_err *saved = r->err, cerr;
    r->err = &cerr;
    if (convert(r, &de, &av, d, d->type, nd->name, &want))
        FLOW_BUG("stage '%s': condition value '%s' rejected for '%s'", nd->stage->name, text, d->name);
    r->err = saved;
    const graph_value *have = &nd->params[k];
    int eq;
    switch (d->type) {
    case FLOW_P_INT: case FLOW_P_BOOL: eq = have->i == want.i; break;
    case FLOW_P_FLOAT: eq = have->f == want.f; break;
    case FLOW_P_STRING: case FLOW_P_PATH: eq = strcmp(have->s, want.s) == 0; break;
    default: FLOW_BUG("stage '%s': condition on list parameter '%s'", nd->stage->name, d->name);
    }
    value_release(&want);
    ast_value_release(&av);
    return eq;
}

/* The stage's conditional parameters and inputs (flow_applies_def): one that
 * was set or bound while its condition does not hold is an error at the
 * place it was set, naming the condition. */
static int check_applies(resolver *r, const ast_block *b, graph_node *nd)
{
    const flow_stage *st = nd->stage;
    for (int a = 0; a < st->napplies; a++) {
        const flow_applies_def *ap = &st->applies[a];
        const ast_entry *e = NULL;
        for (int j = 0; j < b->n; j++)
            if (strcmp(b->entries[j].key, ap->name) == 0) e = &b->entries[j];
        if (!e) continue;   /* left at its default: nothing to say */
        int on_in = input_index(st, ap->on), on_par = param_index(st, ap->on);
        if ((input_index(st, ap->name) < 0 && param_index(st, ap->name) < 0) ||
            (on_in < 0 && on_par < 0))
            FLOW_BUG("stage '%s': condition names an unknown '%s' or '%s'", st->name, ap->name, ap->on);
        const char *kind = input_index(st, ap->name) >= 0 ? "input" : "parameter";
        int holds;
        char cond[200];
        if (on_in >= 0) {
            int want_bound = strcmp(ap->when, "bound") == 0;
            if (!want_bound && strcmp(ap->when, "unbound") != 0)
                FLOW_BUG("stage '%s': condition on input '%s' must be bound|unbound", st->name, ap->on);
            holds = (nd->inputs[on_in].nrefs > 0) == want_bound;
            snprintf(cond, sizeof cond, "input '%s' is %s", ap->on, ap->when);
        } else {
            holds = param_is(r, nd, on_par, ap->when);
            snprintf(cond, sizeof cond, "%s = %s", ap->on, ap->when);
        }
        if (holds) continue;
        return fail_at(r, e, e->line, e->col, "node '%s': %s '%s' is used only when %s (%s), so "
                       "here it would be ignored; remove it, or %s", nd->name, kind, ap->name,
                       cond, ap->why, on_in >= 0 ? (strcmp(ap->when, "bound") == 0 ?
                       "bind that input" : "unbind that input") : "change that parameter");
    }
    return 0;
}

/* Gives every entry of block bi its meaning. */
static int resolve_block(resolver *r, int bi)
{
    ast_block *b = &r->ast.blocks[bi];
    graph_node *nd = &r->g->nodes[bi];
    const flow_stage *st = nd->stage;
    char *pseen = xcalloc((size_t)st->nparams + 1, 1), *iseen = xcalloc((size_t)st->ninputs + 1, 1);
    int rc = 0;
    nd->gpus = st->res.gpus;
    nd->device_auto = st->res.cpu_fallback;
    /* the device entry depends on gpus: apply gpus first */
    for (int pass = 0; pass < 2 && !rc; pass++)
        for (int j = 0; j < b->n && !rc; j++) {
            ast_entry *e = &b->entries[j];
            if (!is_reserved(e->key)) continue;
            if ((strcmp(e->key, "gpus") == 0) != (pass == 0)) continue;
            rc = reserved(r, e, nd);
        }
    for (int j = 0; j < b->n && !rc; j++) {
        ast_entry *e = &b->entries[j];
        for (int k = 0; k < j; k++)
            if (strcmp(b->entries[k].key, e->key) == 0) {
                rc = fail_at(r, e, e->line, e->col, "node '%s': '%s' is set twice (first at line "
                             "%d); remove one", nd->name, e->key, b->entries[k].line);
                goto out;
            }
        if (is_reserved(e->key)) continue;
        int found = 0;
        for (int k = 0; k < st->ninputs; k++)
            if (strcmp(st->inputs[k].name, e->key) == 0) {
                rc = bind_input(r, e, &st->inputs[k], nd->name, &nd->inputs[k]);
                iseen[k] = 1;
                found = 1;
                break;
            }
        for (int k = 0; !found && k < st->nparams; k++)
            if (strcmp(st->params[k].name, e->key) == 0) {
                rc = convert(r, e, &e->v, &st->params[k], st->params[k].type, nd->name, &nd->params[k]);
                pseen[k] = 1;
                found = 1;
            }
        if (!found) {
            const char *best = NULL;
            int bestd = 1000;
            flow_buf list;
            buf_init(&list);
            for (int k = 0; k < st->ninputs; k++) {
                closest(e->key, st->inputs[k].name, &best, &bestd);
                buf_printf(&list, "%s%s", list.len ? ", " : "", st->inputs[k].name);
            }
            for (int k = 0; k < st->nparams; k++) {
                closest(e->key, st->params[k].name, &best, &bestd);
                buf_printf(&list, "%s%s", list.len ? ", " : "", st->params[k].name);
            }
            rc = fail_at(r, e, e->line, e->col, "node '%s': stage '%s' has no parameter or input "
                         "'%s'%s%s%s; expected one of: %s (or gpus, device, threads%s)", nd->name,
                         st->name, e->key, best ? " (did you mean '" : "", best ? best : "",
                         best ? "'?)" : "", list.len ? list.data : "(none)",
                         st->res.memory_mb ? ", memory_mb" : "");
            buf_release(&list);
        }
    }
    /* defaults, required parameters and inputs */
    for (int k = 0; k < st->nparams && !rc; k++) {
        if (pseen[k]) continue;
        const flow_param_def *d = &st->params[k];
        if (!d->def) {
            rc = fail_at(r, NULL, b->line, b->col, "node '%s' (stage %s): missing required "
                         "parameter '%s' (%s%s%s); add `%s = ...`", nd->name, st->name, d->name,
                         ptype_name(d->type), d->help ? ": " : "", d->help ? d->help : "", d->name);
            break;
        }
        ast_value dv;
        flow_err derr;
        if (ast_parse_value(d->def, d->name, &dv, &derr))
            FLOW_BUG("stage '%s': bad default for '%s': %s", st->name, d->name, derr.msg);
        ast_entry de = { .key = (char *)d->name, .v = dv, .line = b->line, .col = b->col };
        rc = convert(r, &de, &dv, d, d->type, nd->name, &nd->params[k]);
        if (rc) FLOW_BUG("stage '%s': default of '%s' rejected: %s", st->name, d->name, r->err->msg);
        nd->params[k].line = nd->params[k].col = 0;
        ast_value_release(&dv);
    }
    for (int k = 0; k < st->ninputs && !rc; k++)
        if (!iseen[k] && !st->inputs[k].optional)
            rc = fail_at(r, NULL, b->line, b->col, "node '%s' (stage %s): input '%s' is not bound%s%s%s; "
                         "add `%s = NODE`", nd->name, st->name, st->inputs[k].name,
                         st->inputs[k].help ? " (" : "", st->inputs[k].help ? st->inputs[k].help : "",
                         st->inputs[k].help ? ")" : "", st->inputs[k].name);
    if (!rc) rc = check_applies(r, b, nd);
out:
    free(pseen);
    free(iseen);
    return rc;
}

/* Applies one --set NODE.PARAM=VALUE to the syntax tree. */
static int apply_set(resolver *r, const char *arg)
{
    const char *eq = strchr(arg, '=');
    const char *dot = strchr(arg, '.');
    if (!eq || !dot || dot > eq || dot == arg || dot + 1 == eq)
        return flow_fail(r->err, FLOW_E_USAGE, "--set %s: error: expected NODE.PARAM=VALUE, as in "
                         "--set tok.vocab_size=8000", arg);
    char *node = xstrdup(arg);
    node[dot - arg] = 0;
    char *key = node + (dot - arg) + 1;
    key[eq - dot - 1] = 0;
    int bi = -1;
    for (int i = 0; i < r->ast.n; i++)
        if (strcmp(r->ast.blocks[i].name, node) == 0) { bi = i; break; }
    if (bi < 0) {
        const char *best = NULL;
        int bestd = 1000;
        for (int i = 0; i < r->ast.n; i++) closest(node, r->ast.blocks[i].name, &best, &bestd);
        int rc = flow_fail(r->err, FLOW_E_GRAPH, "--set %.*s: error: no node '%s' in %s%s%s%s",
                           (int)(eq - arg), arg, node, r->fname, best ? " (did you mean '" : "",
                           best ? best : "", best ? "'?)" : "");
        free(node);
        return rc;
    }
    char what[300];
    snprintf(what, sizeof what, "--set %.*s", (int)(eq - arg) > 250 ? 250 : (int)(eq - arg), arg);
    ast_value v;
    int rc = ast_parse_value(eq + 1, what, &v, r->err);
    if (rc) { free(node); return rc; }
    ast_block *b = &r->ast.blocks[bi];
    ast_entry *e = NULL;
    for (int j = 0; j < b->n; j++)
        if (strcmp(b->entries[j].key, key) == 0) e = &b->entries[j];
    if (e) {
        ast_value_release(&e->v);
    } else {
        b->entries = xrealloc(b->entries, (size_t)(b->n + 1) * sizeof *b->entries);
        e = &b->entries[b->n++];
        memset(e, 0, sizeof *e);
        e->key = xstrdup(key);
        e->line = b->line;
        e->col = b->col;
    }
    e->v = v;
    e->set = arg;
    free(node);
    return 0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Fills deps/users (sorted, distinct). */
static void link_nodes(flow_graph *g)
{
    int *nusers = xcalloc((size_t)g->n + 1, sizeof *nusers);
    for (int i = 0; i < g->n; i++) {
        graph_node *nd = &g->nodes[i];
        int cnt = 0;
        for (int p = 0; p < nd->stage->ninputs; p++) cnt += nd->inputs[p].nrefs;
        nd->deps = xmalloc((size_t)(cnt ? cnt : 1) * sizeof *nd->deps);
        for (int p = 0; p < nd->stage->ninputs; p++)
            for (int k = 0; k < nd->inputs[p].nrefs; k++) nd->deps[nd->ndeps++] = nd->inputs[p].refs[k].node;
        qsort(nd->deps, (size_t)nd->ndeps, sizeof *nd->deps, cmp_int);
        int m = 0;
        for (int k = 0; k < nd->ndeps; k++)
            if (m == 0 || nd->deps[m - 1] != nd->deps[k]) nd->deps[m++] = nd->deps[k];
        nd->ndeps = m;
        for (int k = 0; k < m; k++) nusers[nd->deps[k]]++;
    }
    for (int i = 0; i < g->n; i++) g->nodes[i].users = xmalloc((size_t)(nusers[i] ? nusers[i] : 1) * sizeof(int));
    for (int i = 0; i < g->n; i++)     /* ascending i keeps users sorted */
        for (int k = 0; k < g->nodes[i].ndeps; k++) {
            graph_node *u = &g->nodes[g->nodes[i].deps[k]];
            u->users[u->nusers++] = i;
        }
    free(nusers);
}

/* Iterative depth-first post-order; reports the first cycle found. */
static int toposort(resolver *r)
{
    flow_graph *g = r->g;
    char *color = xcalloc((size_t)g->n + 1, 1);      /* 0 new, 1 on stack, 2 done */
    int *stack = xmalloc((size_t)(g->n + 1) * sizeof *stack);
    int *next = xcalloc((size_t)g->n + 1, sizeof *next);  /* next dep to visit */
    int nt = 0, rc = 0;
    g->topo = xmalloc((size_t)(g->n + 1) * sizeof *g->topo);
    for (int root = 0; root < g->n && !rc; root++) {
        if (color[root]) continue;
        int sp = 0;
        stack[sp++] = root;
        color[root] = 1;
        while (sp && !rc) {
            int v = stack[sp - 1];
            graph_node *nd = &g->nodes[v];
            if (next[v] < nd->ndeps) {
                int w = nd->deps[next[v]++];
                if (color[w] == 0) { color[w] = 1; stack[sp++] = w; continue; }
                if (color[w] == 1) {
                    int from = sp - 1;
                    while (stack[from] != w) from--;
                    flow_buf cyc;
                    buf_init(&cyc);
                    for (int k = from; k < sp; k++)
                        buf_printf(&cyc, "%s (line %d) -> ", g->nodes[stack[k]].name, g->nodes[stack[k]].line);
                    buf_printf(&cyc, "%s (line %d)", g->nodes[w].name, g->nodes[w].line);
                    rc = fail_at(r, NULL, g->nodes[w].line, g->nodes[w].col, "cycle: %s; a node cannot "
                                 "depend on its own output; remove one of these inputs", cyc.data);
                    buf_release(&cyc);
                }
                continue;
            }
            color[v] = 2;
            g->topo[nt++] = v;
            sp--;
        }
    }
    free(color);
    free(stack);
    free(next);
    return rc;
}

void graph_free(flow_graph *g)
{
    if (!g) return;
    for (int i = 0; i < g->n; i++) {
        graph_node *nd = &g->nodes[i];
        free(nd->name);
        if (nd->stage) {
            if (nd->params)
                for (int k = 0; k < nd->stage->nparams; k++) value_release(&nd->params[k]);
            if (nd->inputs)
                for (int k = 0; k < nd->stage->ninputs; k++) {
                    for (int j = 0; j < nd->inputs[k].nrefs; j++) free(nd->inputs[k].refs[j].output);
                    free(nd->inputs[k].refs);
                }
        }
        free(nd->params);
        free(nd->inputs);
        free(nd->deps);
        free(nd->users);
    }
    free(g->nodes);
    free(g->topo);
    free(g->path);
    free(g->dir);
    free(g->id);
    free(g);
}

int graph_find(const flow_graph *g, const char *name)
{
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->nodes[i].name, name) == 0) return i;
    return -1;
}

static int resolve(resolver *r, char *const *sets, int nsets)
{
    flow_graph *g = r->g;
    int rc = 0;
    /* an empty graph would build nothing and look like success */
    if (r->ast.n == 0)
        return fail_at(r, NULL, 1, 1, "no nodes declared; a graph needs at least one node such as "
                       "`src = source { path = \"data\" }`");
    for (int i = 0; i < nsets && !rc; i++) rc = apply_set(r, sets[i]);
    if (rc) return rc;
    g->n = r->ast.n;
    g->nodes = xcalloc((size_t)g->n + 1, sizeof *g->nodes);
    r->node_names = xcalloc((size_t)g->n + 1, sizeof *r->node_names);
    r->names.cap = 16;
    while (r->names.cap < 2 * (size_t)g->n) r->names.cap *= 2;
    r->names.slot = xcalloc(r->names.cap, sizeof *r->names.slot);
    /* pass 1: names and stages */
    for (int i = 0; i < g->n; i++) {
        ast_block *b = &r->ast.blocks[i];
        graph_node *nd = &g->nodes[i];
        nd->name = xstrdup(b->name);
        nd->line = b->line;
        nd->col = b->col;
        r->node_names[i] = nd->name;
        int prev = table_find(&r->names, r->node_names, b->name);
        if (prev >= 0)
            return fail_at(r, NULL, b->line, b->col, "duplicate node '%s'; first defined at %s:%d:%d; "
                           "rename one of them", b->name, r->fname, g->nodes[prev].line,
                           g->nodes[prev].col);
        table_add(&r->names, b->name, i);
        nd->stage = registry_find(r->reg, b->stage);
        if (!nd->stage) {
            const char *best = NULL;
            int bestd = 1000;
            flow_buf list;
            buf_init(&list);
            for (int k = 0; k < registry_count(r->reg); k++) {
                const char *sn = registry_at(r->reg, k)->name;
                closest(b->stage, sn, &best, &bestd);
                buf_printf(&list, "%s%s", k ? ", " : "", sn);
            }
            rc = fail_at(r, NULL, b->sline, b->scol, "node '%s': unknown stage '%s'%s%s%s; known "
                         "stages: %s", b->name, b->stage, best ? " (did you mean '" : "",
                         best ? best : "", best ? "'?)" : "", list.len ? list.data : "(none)");
            buf_release(&list);
            return rc;
        }
        nd->params = xcalloc((size_t)nd->stage->nparams + 1, sizeof *nd->params);
        nd->inputs = xcalloc((size_t)nd->stage->ninputs + 1, sizeof *nd->inputs);
    }
    /* pass 2: entries */
    for (int i = 0; i < g->n && !rc; i++) rc = resolve_block(r, i);
    if (rc) return rc;
    link_nodes(g);
    return toposort(r);
}

int graph_load(flow_graph **out, const char *path, const flow_registry *reg,
               char *const *sets, int nsets, flow_err *err)
{
    *out = NULL;
    char *text;
    size_t len;
    int rc = file_read_all(path, &text, &len, err);
    if (rc) {
        flow_err e = *err;
        return flow_fail(err, FLOW_E_GRAPH, "graph: %s", e.msg);
    }
    flow_graph *g = xcalloc(1, sizeof *g);
    char *abs = realpath(path, NULL);
    if (!abs) {
        free(text);
        free(g);
        return flow_fail(err, FLOW_E_GRAPH, "cannot resolve graph path '%s': %s", path, strerror(errno));
    }
    g->path = xstrdup(abs);
    free(abs);
    g->dir = xstrdup(g->path);
    char *slash = strrchr(g->dir, '/');
    if (slash == g->dir) slash[1] = 0;
    else if (slash) *slash = 0;
    flow_hash id = flow_hash_bytes(g->path, strlen(g->path));
    g->id = xmalloc(33);
    flow_hash_hex(&id, g->id);

    resolver r = { .fname = path, .g = g, .reg = reg, .err = err };
    rc = ast_parse(text, len, path, &r.ast, err);
    free(text);
    if (rc == 0) rc = resolve(&r, sets, nsets);
    ast_release(&r.ast);
    free(r.names.slot);
    free(r.node_names);
    if (rc) {
        graph_free(g);
        if (err) err->code = FLOW_E_GRAPH;
        return FLOW_E_GRAPH;
    }
    *out = g;
    return 0;
}

int graph_locate(const char *arg, char **path, flow_err *err)
{
    struct stat st;
    *path = NULL;
    if (stat(arg, &st) == 0) {
        if (S_ISREG(st.st_mode)) { *path = xstrdup(arg); return 0; }
        if (strchr(arg, '/') || S_ISDIR(st.st_mode) == 0)
            return flow_fail(err, FLOW_E_USAGE, "'%s' is not a .graph file; give the path of one "
                             "(or a name in ./graphs/)", arg);
    }
    if (!strchr(arg, '/')) {
        const char *fmts[] = { "graphs/%s", "graphs/%s.graph", "%s.graph" };
        char buf[PATH_MAX];
        for (int i = 0; i < 3; i++) {
            snprintf(buf, sizeof buf, fmts[i], arg);
            if (stat(buf, &st) == 0 && S_ISREG(st.st_mode)) { *path = xstrdup(buf); return 0; }
        }
        return flow_fail(err, FLOW_E_USAGE, "graph '%s' not found (tried ./%s, ./graphs/%s, "
                         "./graphs/%s.graph); give the path of a .graph file", arg, arg, arg, arg);
    }
    return flow_fail(err, FLOW_E_USAGE, "graph '%s' not found: %s; give the path of a .graph file",
                     arg, strerror(errno));
}
