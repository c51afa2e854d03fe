/* cmd_why.c — `flow why GRAPH NODE`: every difference between what the
 * node's key covers now and what it covered at its most recent build
 * (parameters old -> new, input contents, stage version, files read). */
#include "commands.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* For a source node whose files changed: which ones, against the parts of
 * its last build (added, removed, modified). */
static void source_changes(const flow_graph *g, flow_store *s, int node, const flow_hash *last)
{
    flow_ctx ctx;
    key_ctx_init(&ctx, g, node, s);
    char **rel = NULL, **abs = NULL;
    int n = 0, shown = 0, more = 0;
    store_handle *h = NULL;
    const store_artifact *a = NULL;
    flow_err err;
    if (source_files(&ctx, &rel, &abs, &n) != 0 || store_handle_open(s, last, &h, &err) != 0) {
        if (ctx.err.msg[0]) printf("  %s\n", ctx.err.msg);
        n = 0;
    }
    if (h) a = store_handle_artifact(h);
    char *seen = a ? xcalloc((size_t)a->nparts + 1, 1) : NULL;
    for (int i = 0; i < n && a; i++) {
        int j = store_part_find(a, rel[i]);
        const char *what = NULL;
        if (j < 0) {
            what = "added";
        } else {
            seen[j] = 1;
            char *old = NULL, *cur = NULL;
            size_t ol = 0, cl = 0;
            struct stat st;
            if (stat(abs[i], &st) != 0 || (uint64_t)st.st_size != a->parts[j].size ||
                file_read_all(abs[i], &cur, &cl, &err) != 0 ||
                store_handle_read(h, j, &old, &ol, &err) != 0 || ol != cl || memcmp(old, cur, cl))
                what = "modified";
            free(old);
            free(cur);
        }
        if (what && shown < 20) { printf("    file %s: %s\n", rel[i], what); shown++; }
        else if (what) more++;
    }
    for (int j = 0; a && j < a->nparts; j++)
        if (!seen[j] && a->parts[j].name[0] != '.') {
            if (shown < 20) { printf("    file %s: removed\n", a->parts[j].name); shown++; }
            else more++;
        }
    if (more) printf("    ... and %d more\n", more);
    for (int i = 0; i < n; i++) { free(rel[i]); free(abs[i]); }
    free(rel);
    free(abs);
    free(seen);
    store_handle_free(h);
}

int cmd_why(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse(argc, argv, "set cache", &a);
    if (!rc && a.npos != 2) rc = cli_usage_error("why: usage: flow why GRAPH NODE [--set ...]");
    cli_state st;
    memset(&st, 0, sizeof st);
    int node = -1;
    if (!rc) rc = cli_state_load(&st, &a, a.pos[0], cli_fail);
    if (!rc && (node = graph_find(st.g, a.pos[1])) < 0)
        rc = cli_usage_error("why: no node '%s' in %s; see 'flow dag %s'", a.pos[1], a.pos[0], a.pos[0]);
    flow_graph *g = st.g;
    flow_store *s = st.s;
    flow_hash *keys = st.keys;
    char *known = st.known, *built = st.built, **desc = st.desc;
    flow_err err;
    if (!rc) {
        const graph_node *nd = &g->nodes[node];
        char hex[33];
        flow_buf now;
        buf_init(&now);
        if (desc[node] && desc[node][0] == '!') {
            fprintf(stderr, "flow: error: %s\n", desc[node] + 1);
            rc = 1;
        } else if (known[node]) {
            buf_adds(&now, desc[node]);
        } else {
            /* an upstream node is stale: its inputs are unknown ("?"), the
             * others are read from the cache */
            int total = 0, flat = 0;
            for (int p = 0; p < nd->stage->ninputs; p++) total += nd->inputs[p].nrefs;
            flow_hash *content = xcalloc((size_t)total + 1, sizeof *content);
            for (int p = 0; p < nd->stage->ninputs; p++)
                for (int k = 0; k < nd->inputs[p].nrefs; k++, flat++) {
                    const graph_ref *r = &nd->inputs[p].refs[k];
                    store_artifact *art = NULL;
                    if (built[r->node] && store_get(s, &keys[r->node], &art, &err) == 0)
                        (void)ref_content(art, r->output, &content[flat]);
                    store_artifact_free(art);
                }
            node_key_describe(g, node, content, NULL, &now);
            free(content);
        }
        if (rc) {
        } else if (built[node]) {
            flow_hash_hex(&keys[node], hex);
            printf("%s (stage %s) is up to date: artifact %s\n", nd->name, nd->stage->name, hex);
        } else {
            flow_hash last;
            char **ch;
            int nch, lb = cli_last_build(g, s, node, now.data, &last, &ch, &nch);
            flow_hash_hex(&last, hex);
            if (lb == 0) {
                printf("%s (stage %s) was never built from %s\n", nd->name, nd->stage->name, g->path);
            } else if (lb == 2) {
                printf("%s (stage %s) is stale; its last build %.12s is no longer in the cache "
                       "(removed by gc?)\n", nd->name, nd->stage->name, hex);
            } else {
                printf("%s (stage %s) is stale; compared with its last build %.12s:\n", nd->name,
                       nd->stage->name, hex);
                for (int k = 0; k < nch; k++) {
                    /* the file hash line is "?" when the stage's key_extra could not run */
                    if (!known[node] && strstr(ch[k], "key_extra")) continue;
                    printf("  %s\n", ch[k]);
                    if (strstr(ch[k], "key_extra") && !strcmp(nd->stage->name, "source"))
                        source_changes(g, s, node, &last);
                }
                if (nch == 0) printf("  (no recorded difference; the key encoding changed)\n");
            }
            if (!known[node])
                for (int k = 0; k < nd->ndeps; k++)
                    if (!built[nd->deps[k]])
                        printf("  upstream %s is stale: flow why %s %s\n", g->nodes[nd->deps[k]].name,
                               a.pos[0], g->nodes[nd->deps[k]].name);
            cli_free_strings(ch, nch);
        }
        buf_release(&now);
    }
    cli_state_release(&st);
    cli_args_release(&a);
    return rc;
}
