/* cmd_metrics.c — `flow metrics GRAPH [--json]`: every node's metrics from
 * the cache (its current artifact, else its last build, marked stale),
 * running nothing; and `flow metrics diff A B [--json]` / `flow metrics
 * diff GRAPH [--json]`: the metrics that changed between two artifacts, or
 * between the most recent build of a graph and the build before it (the
 * build marks of cache.h tell which history entries the last build wrote),
 * with old, new and delta, like `dvc metrics diff`. */
#include "commands.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HIST_MAX 20

/* Text output rounds numbers to 6 significant digits (--json has them all). */
static void value_text(flow_buf *b, const json_value *v)
{
    if (!v) { buf_adds(b, "-"); return; }
    switch (json_typeof(v)) {
    case JSON_NUM: buf_printf(b, "%.6g", json_num(v, 0)); break;
    case JSON_STR: buf_adds(b, json_str(v, "")); break;
    case JSON_BOOL: buf_adds(b, json_bool(v, 0) ? "true" : "false"); break;
    default: buf_adds(b, "null");
    }
}

static void value_json(flow_buf *b, const json_value *v)
{
    if (!v) { buf_adds(b, "null"); return; }
    if (json_typeof(v) == JSON_STR) { const char *s = json_str(v, ""); buf_json_str(b, s, strlen(s)); }
    else if (json_typeof(v) == JSON_NUM) buf_json_num(b, json_num(v, 0));
    else value_text(b, v);
}

/* ---- flow metrics GRAPH ------------------------------------------------ */

static int metrics_show(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse(argc, argv, "set cache json", &a);
    if (!rc && a.npos != 1) rc = cli_usage_error("metrics: usage: flow metrics GRAPH [--json] | flow metrics diff A B | flow metrics diff GRAPH");
    cli_state st;
    memset(&st, 0, sizeof st);
    if (!rc) rc = cli_state_load(&st, &a, a.pos[0], a.json ? cli_fail_json : cli_fail);
    if (rc) { cli_state_release(&st); cli_args_release(&a); return rc; }
    const flow_graph *g = st.g;
    flow_buf out;
    buf_init(&out);
    int w = 6;
    for (int i = 0; i < g->n; i++) if ((int)strlen(g->nodes[i].name) > w) w = (int)strlen(g->nodes[i].name);
    if (a.json) buf_adds(&out, "[");
    for (int t = 0; t < g->n; t++) {
        int i = g->topo[t];
        const graph_node *nd = &g->nodes[i];
        flow_hash key;
        const char *state = "never built";
        int have = 0, nk = 0;
        flow_err err;
        if (st.built[i]) { key = st.keys[i]; state = "fresh"; have = 1; }
        else if (st.s && store_last_builds(st.s, g->id, nd->name, &key, 1, &nk, &err) == 0 && nk == 1) {
            state = "stale";
            have = 1;
        }
        json_value *meta = have ? cli_meta(st.s, &key) : NULL;
        if (have && !meta) state = "gone";
        const json_value *m = json_get(meta, "metrics");
        char hex[33] = "";
        if (have) flow_hash_hex(&key, hex);
        if (a.json) {
            buf_adds(&out, t ? ",\n{\"node\":" : "\n{\"node\":");
            buf_json_str(&out, nd->name, strlen(nd->name));
            buf_printf(&out, ",\"stage\":\"%s\",\"state\":\"%s\",\"key\":", nd->stage->name,
                       !strcmp(state, "never built") ? "never" : state);
            if (have) buf_printf(&out, "\"%s\"", hex); else buf_adds(&out, "null");
            buf_adds(&out, ",\"metrics\":{");
            for (int k = 0; k < json_len(m); k++) {
                if (k) buf_addc(&out, ',');
                const char *name = json_key_at(m, k);
                buf_json_str(&out, name, strlen(name));
                buf_addc(&out, ':');
                value_json(&out, json_at(m, k));
            }
            buf_adds(&out, "}}");
        } else {
            buf_printf(&out, "%-*s  %-10s %s%s%.12s%s\n", w, nd->name, nd->stage->name,
                       strcmp(state, "fresh") ? state : "", strcmp(state, "fresh") && have ? " (last build " : "",
                       have ? hex : "", strcmp(state, "fresh") && have ? ")" : "");
            for (int k = 0; k < json_len(m); k++) {
                buf_printf(&out, "  %-*s  ", w + 20, json_key_at(m, k));
                value_text(&out, json_at(m, k));
                buf_addc(&out, '\n');
            }
        }
        json_free(meta);
    }
    if (a.json) buf_adds(&out, "\n]\n");
    fwrite(out.data ? out.data : "", 1, out.len, stdout);
    buf_release(&out);
    cli_state_release(&st);
    cli_args_release(&a);
    return 0;
}

/* ---- flow metrics diff ------------------------------------------------- */

typedef struct diff_out {
    flow_buf b;
    int json, n;
} diff_out;

static int same_value(const json_value *x, const json_value *y)
{
    if (!x || !y || json_typeof(x) != json_typeof(y)) return 0;
    if (json_typeof(x) == JSON_NUM) {
        double a = json_num(x, 0), b = json_num(y, 0);
        return a == b || (isnan(a) && isnan(b));
    }
    if (json_typeof(x) == JSON_STR) return !strcmp(json_str(x, ""), json_str(y, ""));
    if (json_typeof(x) == JSON_BOOL) return json_bool(x, 0) == json_bool(y, 0);
    return json_typeof(x) == JSON_NULL;
}

static void emit(diff_out *d, const char *node, const char *metric, const json_value *o,
                 const json_value *n)
{
    int nums = o && n && json_typeof(o) == JSON_NUM && json_typeof(n) == JSON_NUM;
    double delta = nums ? json_num(n, 0) - json_num(o, 0) : NAN;
    if (d->json) {
        buf_adds(&d->b, d->n ? ",\n{\"node\":" : "\n{\"node\":");
        buf_json_str(&d->b, node, strlen(node));
        buf_adds(&d->b, ",\"metric\":");
        buf_json_str(&d->b, metric, strlen(metric));
        buf_adds(&d->b, ",\"old\":");
        value_json(&d->b, o);
        buf_adds(&d->b, ",\"new\":");
        value_json(&d->b, n);
        buf_adds(&d->b, ",\"delta\":");
        buf_json_num(&d->b, delta);
        buf_addc(&d->b, '}');
    } else {
        buf_printf(&d->b, "%-16s %-32s ", node, metric);
        flow_buf t;
        buf_init(&t);
        value_text(&t, o);
        buf_printf(&d->b, "%-14s ", t.data);
        t.len = 0;
        value_text(&t, n);
        buf_printf(&d->b, "%-14s ", t.data);
        if (nums) {
            buf_printf(&d->b, "%+.6g", delta);
        } else {
            buf_adds(&d->b, "-");
        }
        buf_addc(&d->b, '\n');
        buf_release(&t);
    }
    d->n++;
}

/* Changed metrics between two metadata objects (either may be NULL:
 * every metric of the other side is then a change). */
static void diff_meta(diff_out *d, const char *node, const json_value *old_meta,
                      const json_value *new_meta)
{
    const json_value *o = json_get(old_meta, "metrics"), *n = json_get(new_meta, "metrics");
    for (int k = 0; k < json_len(o); k++) {
        const char *name = json_key_at(o, k);
        const json_value *nv = json_get(n, name);
        if (!same_value(json_at(o, k), nv)) emit(d, node, name, json_at(o, k), nv);
    }
    for (int k = 0; k < json_len(n); k++) {
        const char *name = json_key_at(n, k);
        if (!json_get(o, name)) emit(d, node, name, NULL, json_at(n, k));
    }
}

static int resolve(flow_store *s, const char *prefix, flow_hash *key)
{
    flow_err err;
    return store_resolve(s, prefix, key, &err) ? cli_fail(&err) : 0;
}

static int diff_artifacts(const cli_args *a, diff_out *d)
{
    char *dir;
    flow_store *s;
    int rc = cli_open_cache(a, &dir, &s);
    free(dir);
    if (rc) return rc;
    flow_hash ka, kb;
    if ((rc = resolve(s, a->pos[1], &ka)) || (rc = resolve(s, a->pos[2], &kb))) { store_close(s); return rc; }
    json_value *ma = cli_meta(s, &ka), *mb = cli_meta(s, &kb);
    if (!ma || !mb) {
        rc = cli_usage_error("metrics diff: the metadata of %s is unreadable", ma ? a->pos[2] : a->pos[1]);
    } else {
        const char *na = json_str(json_get(ma, "node"), "?"), *nb = json_str(json_get(mb, "node"), "?");
        char node[256];
        if (strcmp(na, nb)) snprintf(node, sizeof node, "%s->%s", na, nb);
        else snprintf(node, sizeof node, "%s", nb);
        diff_meta(d, node, ma, mb);
    }
    json_free(ma);
    json_free(mb);
    store_close(s);
    return rc;
}

/* The most recent build of the graph (that changed anything) against the
 * one before: every node whose newest history entry the last build wrote,
 * against its newest entry before that build's mark. */
static int diff_graph(const cli_args *a, diff_out *d)
{
    cli_state st;
    int rc = cli_state_load(&st, a, a->pos[1], a->json ? cli_fail_json : cli_fail);
    if (rc) { cli_state_release(&st); return rc; }
    const flow_graph *g = st.g;
    flow_hash keys[HIST_MAX];
    int64_t t[HIST_MAX];
    int n = 0;
    flow_err err;
    if (!st.s || store_node_history(st.s, g->id, STORE_BUILD_MARK, keys, t, 1, &n, &err) != 0 || n == 0) {
        rc = cli_usage_error("metrics diff: %s has no recorded build that built anything%s; run "
                             "flow build first", g->path, st.s ? "" : " (no cache)");
        cli_state_release(&st);
        return rc;
    }
    int64_t mark = t[0];
    for (int o = 0; o < g->n && !rc; o++) {
        int i = g->topo[o];
        const char *name = g->nodes[i].name;
        if (store_node_history(st.s, g->id, name, keys, t, HIST_MAX, &n, &err) != 0) { rc = cli_fail(&err); break; }
        if (n == 0 || t[0] < mark) continue;            /* untouched by the last build */
        int prev = -1;
        for (int k = 1; k < n && prev < 0; k++) if (t[k] < mark) prev = k;
        json_value *mn = cli_meta(st.s, &keys[0]), *mo = prev >= 0 ? cli_meta(st.s, &keys[prev]) : NULL;
        if (!mn) fprintf(stderr, "flow: warning: metrics diff: node %s: its last build is no longer in the cache\n", name);
        else if (prev >= 0 && !mo) fprintf(stderr, "flow: warning: metrics diff: node %s: the build before is no longer in the cache\n", name);
        diff_meta(d, name, mo, mn);
        json_free(mn);
        json_free(mo);
    }
    cli_state_release(&st);
    return rc;
}

static int metrics_diff(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse(argc, argv, "set cache json", &a);
    if (rc) return rc;
    /* a.pos[0] is "diff" */
    if (a.npos != 2 && a.npos != 3) {
        cli_args_release(&a);
        return cli_usage_error("metrics diff: usage: flow metrics diff HASH_A HASH_B | flow metrics diff GRAPH [--json]");
    }
    diff_out d;
    memset(&d, 0, sizeof d);
    buf_init(&d.b);
    d.json = a.json;
    if (!d.json) buf_printf(&d.b, "%-16s %-32s %-14s %-14s %s\n", "node", "metric", "old", "new", "delta");
    rc = a.npos == 3 ? diff_artifacts(&a, &d) : diff_graph(&a, &d);
    if (!rc) {
        if (d.json) printf("[%s\n]\n", d.b.data ? d.b.data : "");
        else if (d.n == 0) printf("no metric changed\n");
        else fwrite(d.b.data, 1, d.b.len, stdout);
    }
    buf_release(&d.b);
    cli_args_release(&a);
    return rc;
}

int cmd_metrics(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "diff")) return metrics_diff(argc, argv);
    return metrics_show(argc, argv);
}
