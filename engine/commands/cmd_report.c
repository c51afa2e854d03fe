/* cmd_report.c — `flow report [GRAPH] [--open] [-o FILE]`: prints the
 * table of the last report (the `report` stage, stages/report/report.h):
 * for GRAPH, each report node's current artifact, else its last build
 * (said so); without GRAPH, the newest report artifact in the cache.
 * --open writes its report.html to FILE (default: flow-report-HASH.html in
 * $TMPDIR or /tmp) and prints the path. */
#include "commands.h"
#include "cmd_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct newest { flow_hash key; int64_t created; int found; } newest;

static int find_newest(const store_artifact *a, void *arg)
{
    newest *n = arg;
    json_value *m = NULL;
    if (!a->meta_json || json_parse(a->meta_json, strlen(a->meta_json), "metadata", &m, NULL)) return 0;
    if (!strcmp(json_str(json_get(m, "stage"), ""), "report") &&
        (!n->found || a->created > n->created ||
         (a->created == n->created && memcmp(a->key.b, n->key.b, 16) > 0))) {
        n->key = a->key;
        n->created = a->created;
        n->found = 1;
    }
    json_free(m);
    return 0;
}

/* Prints one report artifact; with open, writes its page. */
static int show_one(flow_store *s, const flow_hash *key, const char *note, int open, const char *out)
{
    json_value *m = cli_meta(s, key);
    char hex[33];
    flow_hash_hex(key, hex);
    if (!m) return cli_usage_error("report: the metadata of artifact %.12s is unreadable", hex);
    const char *node = json_str(json_get(m, "node"), "?");
    time_t t = (time_t)json_num(json_get(m, "end"), 0);
    struct tm tm;
    char date[32];
    localtime_r(&t, &tm);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M", &tm);
    int rc = 0;
    if (!open) {
        const char *rep = json_str(json_get(m, "report"), "");
        printf("%s: artifact %.12s, built %s%s\n%s", node, hex, date, note, rep);
        if (*rep && rep[strlen(rep) - 1] != '\n') putchar('\n');
    } else {
        char *html;
        size_t len;
        flow_err err;
        char path[4096];
        if (out) snprintf(path, sizeof path, "%s", out);
        else snprintf(path, sizeof path, "%s/flow-report-%.12s.html",
                      getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", hex);
        if (store_read_part(s, key, "report.html", &html, &len, &err)) {
            rc = cli_fail(&err);
        } else {
            FILE *f = fopen(path, "wb");
            if (!f || fwrite(html, 1, len, f) != len || fclose(f) != 0) {
                if (f) fclose(f);
                rc = cli_usage_error("report: cannot write '%s'", path);
            } else {
                printf("%s\n", path);
            }
            free(html);
        }
    }
    json_free(m);
    return rc;
}

int cmd_report(int argc, char **argv)
{
    const char *unused;
    int open = cmd_take_flag(&argc, argv, "open", 0, &unused) == 1;
    cli_args a;
    int rc = cli_parse(argc, argv, "set cache out", &a);
    if (!rc && a.npos > 1) rc = cli_usage_error("report: usage: flow report [GRAPH] [--open] [-o FILE]");
    if (!rc && a.out && !open) rc = cli_usage_error("report: -o goes with --open (where to write the page)");
    if (rc) { cli_args_release(&a); return rc; }
    if (a.npos == 0) {
        char *dir;
        flow_store *s;
        if ((rc = cli_open_cache(&a, &dir, &s))) { cli_args_release(&a); return rc; }
        newest n = { 0 };
        flow_err err;
        if (store_foreach(s, find_newest, &n, &err)) rc = cli_fail(&err);
        else if (!n.found) rc = cli_usage_error("report: no report in the cache %s; add a `report` node to the graph and build it", dir);
        else rc = show_one(s, &n.key, "", open, a.out);
        free(dir);
        store_close(s);
        cli_args_release(&a);
        return rc;
    }
    cli_state st;
    if ((rc = cli_state_load(&st, &a, a.pos[0], cli_fail))) { cli_state_release(&st); cli_args_release(&a); return rc; }
    const flow_graph *g = st.g;
    int nrep = 0, shown = 0;
    for (int t = 0; t < g->n && !rc; t++) {
        int i = g->topo[t];
        if (strcmp(g->nodes[i].stage->name, "report")) continue;
        nrep++;
        flow_hash key;
        int nk = 0;
        flow_err err;
        if (st.built[i]) {
            rc = show_one(st.s, &st.keys[i], "", open, a.out);
            shown++;
        } else if (st.s && store_last_builds(st.s, g->id, g->nodes[i].name, &key, 1, &nk, &err) == 0 &&
                   nk == 1 && store_has(st.s, &key)) {
            rc = show_one(st.s, &key, " (stale: the graph changed since; `flow build` makes the current one)",
                          open, a.out);
            shown++;
        } else {
            fprintf(stderr, "flow: report: node %s was never built; run flow build %s\n",
                    g->nodes[i].name, a.pos[0]);
        }
    }
    if (!rc && nrep == 0) rc = cli_usage_error("report: %s has no `report` node", g->path);
    else if (!rc && shown == 0) rc = 1;
    cli_state_release(&st);
    cli_args_release(&a);
    return rc;
}
